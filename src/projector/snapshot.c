/*
 * snapshot.c - the projection saved at a seq and rebuilt from it, so that a restart
 * replays only the events after that seq instead of the whole journal.
 *
 * What is saved is the input, not the derived state: every live object (its last valid
 * version, as journaled, plus the bookkeeping the history gave it: first seq, version,
 * validation error) and the few numbers that depend on history rather than on the objects
 * (zone serials, serial floors, the order in which a record joined its zones). Restoring
 * feeds the objects through proj_apply in first-seq order, which rebuilds zones, conflicts,
 * memberships and catalogs with the same code as a replay, then sets those numbers. The
 * derived structures are therefore never serialised, and cannot disagree with the code
 * that reads them after an upgrade.
 *
 * The text is JSON, one compact value per line (schema/journal-format.md, "Snapshots"):
 * a restore parses one object at a time, so it never holds a second copy of the state.
 */
#include <stdlib.h>
#include <string.h>

#include "proj_int.h"
#include "sort.h"

#define SNAP_FORMAT "bindy-projector-snapshot"
#define SNAP_VERSION 1
/* No JSON_SORT_KEYS: the lines are built in a fixed key order and the objects come from
 * the journal's canonical (sorted) encoding, so insertion order is deterministic already;
 * sorting would cost an allocation and a sort per object for nothing. */
#define DUMP_FLAGS (JSON_COMPACT | JSON_ENSURE_ASCII)

/* ---- output ------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
} sbuf_t;

static int sbuf_put(const char *d, size_t n, void *arg)
{
    sbuf_t *b = arg;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL)
            return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
    return 0;
}

/* Append v and a newline; takes the reference. Returns BD_OK or BD_ENOMEM. */
static int put_line(sbuf_t *b, json_t *v)
{
    char *text = v ? json_dumps(v, DUMP_FLAGS) : NULL;
    int rc = text == NULL || sbuf_put(text, strlen(text), b) != 0 || sbuf_put("\n", 1, b) != 0 ? BD_ENOMEM : BD_OK;
    free(text);
    json_decref(v);
    return rc;
}

/* ---- capture: what a snapshot needs, copied out of the projector ---------------------- */

/* One object as the snapshot saves it (everything but the object itself, which render
 * fetches). */
typedef struct {
    char *key, *invalid, *message;
    char **contribs; /* zone, owner, zone, owner, ... (only when more than one) */
    size_t ncontribs;
    uint64_t first_seq, valid_seq, version;
    bool has_res, keep_status, ready;
    const char *reason;
} snap_obj_t;

struct proj_snap {
    uint64_t seq;
    char *catalog_suffix;
    snap_obj_t *objs; /* in first-seq order */
    size_t nobj;
    char **names;        /* zones, then floors */
    uint32_t *serials;
    size_t nz, nf;
};

void proj_snap_free(proj_snap_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nobj; i++) {
        snap_obj_t *o = &s->objs[i];
        free(o->key);
        free(o->invalid);
        free(o->message);
        for (size_t k = 0; k < 2 * o->ncontribs; k++)
            free(o->contribs[k]);
        free(o->contribs);
    }
    for (size_t i = 0; i < s->nz + s->nf; i++)
        free(s->names[i]);
    free(s->objs);
    free(s->names);
    free(s->serials);
    free(s->catalog_suffix);
    free(s);
}

uint64_t proj_snap_seq(const proj_snap_t *s) { return s->seq; }

static int cmp_first_seq(const void *a, const void *b)
{
    const obj_t *x = *(const obj_t *const *)a, *y = *(const obj_t *const *)b;
    return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

/* Copy s (NULL stays NULL); false only when the copy failed. */
static bool dup_opt(const char *s, char **out)
{
    *out = s ? strdup(s) : NULL;
    return s == NULL || *out != NULL;
}

static bool capture_obj(const obj_t *o, snap_obj_t *so)
{
    so->first_seq = o->first_seq;
    so->valid_seq = o->valid_seq;
    so->version = o->version;
    so->has_res = o->res != NULL;
    /* the history-dependent part of a status (see the file comment) */
    so->keep_status = o->reason != NULL && (o->invalid_msg != NULL || o->ncontribs > 1);
    so->ready = o->ready;
    so->reason = o->reason;
    if (!dup_opt(o->key, &so->key) || !dup_opt(o->invalid_msg, &so->invalid) ||
        !dup_opt(so->keep_status ? (o->message ? o->message : "") : NULL, &so->message))
        return false;
    if (o->ncontribs > 1) {
        if ((so->contribs = calloc(2 * o->ncontribs, sizeof(*so->contribs))) == NULL)
            return false;
        so->ncontribs = o->ncontribs;
        for (size_t k = 0; k < o->ncontribs; k++)
            if (!dup_opt(o->contribs[k].zone, &so->contribs[2 * k]) ||
                !dup_opt(o->contribs[k].owner, &so->contribs[2 * k + 1]))
                return false;
    }
    return true;
}

int proj_snapshot_capture(const proj_t *p, proj_snap_t **out, bd_err_t *err)
{
    obj_t **objs = NULL;
    const char **znames = NULL, **fnames = NULL;
    size_t nz = 0, nf = 0;
    *out = NULL;
    if (p->oom)
        return bd_err_set(err, BD_ENOMEM, "projector snapshot: the projector ran out of memory earlier");
    if (bd_hmap_count(p->pending) != 0 || bd_hmap_count(p->status_dirty) != 0 ||
        bd_hmap_count(p->inst_changed) != 0)
        return bd_err_set(err, BD_EINVAL, "projector snapshot at seq %llu: changes not taken yet",
                          (unsigned long long)p->seq);
    proj_snap_t *s = calloc(1, sizeof(*s));
    size_t nobj = bd_hmap_count(p->objs);
    znames = bd_hmap_keys_sorted(p->zones, &nz);
    fnames = bd_hmap_keys_sorted(p->floors, &nf);
    objs = calloc(nobj ? nobj : 1, sizeof(*objs));
    if (s == NULL || objs == NULL || (nz > 0 && znames == NULL) || (nf > 0 && fnames == NULL))
        goto nomem;
    s->seq = p->seq;
    if ((s->catalog_suffix = strdup(p->catalog_suffix)) == NULL ||
        (s->objs = calloc(nobj ? nobj : 1, sizeof(*s->objs))) == NULL ||
        (s->names = calloc(nz + nf + 1, sizeof(*s->names))) == NULL ||
        (s->serials = calloc(nz + nf + 1, sizeof(*s->serials))) == NULL)
        goto nomem;
    size_t pos = 0, k = 0;
    obj_t *o;
    while (k < nobj && bd_hmap_next(p->objs, &pos, NULL, (void **)&o))
        objs[k++] = o;
    /* first seqs are unique (one event creates at most one object): a total order */
    bd_qsort(objs, nobj, sizeof(*objs), cmp_first_seq);
    for (size_t i = 0; i < nobj; i++, s->nobj++)
        if (!capture_obj(objs[i], &s->objs[i])) {
            s->nobj++; /* partly filled: freed with the rest */
            goto nomem;
        }
    for (size_t i = 0; i < nz; i++, s->nz++) {
        s->serials[i] = ((const proj_zone_t *)bd_hmap_get(p->zones, znames[i]))->serial;
        if ((s->names[i] = strdup(znames[i])) == NULL)
            goto nomem;
    }
    for (size_t i = 0; i < nf; i++, s->nf++) {
        s->serials[nz + i] = (uint32_t)((uintptr_t)bd_hmap_get(p->floors, fnames[i]) - 1);
        if ((s->names[nz + i] = strdup(fnames[i])) == NULL)
            goto nomem;
    }
    *out = s;
    s = NULL;
    free(objs);
    free(znames);
    free(fnames);
    return BD_OK;
nomem:
    proj_snap_free(s);
    free(objs);
    free(znames);
    free(fnames);
    return bd_err_set(err, BD_ENOMEM, "projector snapshot: out of memory");
}

/* ---- render: the capture and the fetched objects as text ------------------------------ */

/* Does a fetched object name the object key ("Kind/namespace/name")? */
static bool same_object(const char *key, const json_t *obj)
{
    const json_t *meta = json_object_get(obj, "metadata");
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    const char *ns = json_string_value(json_object_get(meta, "namespace"));
    const char *name = json_string_value(json_object_get(meta, "name"));
    if (kind == NULL || name == NULL)
        return false;
    if (ns == NULL || *ns == '\0')
        ns = "default";
    size_t kl = strlen(kind), nl = strlen(ns);
    return strncmp(key, kind, kl) == 0 && key[kl] == '/' && strncmp(key + kl + 1, ns, nl) == 0 &&
           key[kl + 1 + nl] == '/' && strcmp(key + kl + nl + 2, name) == 0;
}

static json_t *obj_line(const snap_obj_t *o, json_t *object)
{
    json_t *v = json_pack("{s:s, s:I, s:I, s:I, s:o, s:o}", "key", o->key, "first_seq", (json_int_t)o->first_seq,
                          "valid_seq", (json_int_t)o->valid_seq, "version", (json_int_t)o->version, "invalid",
                          o->invalid ? json_string(o->invalid) : json_null(), "object",
                          object ? json_incref(object) : json_null());
    if (v != NULL && o->ncontribs > 1) {
        json_t *c = json_array();
        for (size_t i = 0; c != NULL && i < o->ncontribs; i++)
            json_array_append_new(c, json_pack("[s, s]", o->contribs[2 * i], o->contribs[2 * i + 1]));
        json_object_set_new(v, "contribs", c);
    }
    if (v != NULL && o->keep_status)
        json_object_set_new(v, "status", json_pack("[b, s, s]", o->ready, o->reason, o->message));
    return v;
}

int proj_snapshot_render(const proj_snap_t *s, proj_fetch_fn fetch, void *arg, char **out, size_t *len, bd_err_t *err)
{
    sbuf_t b = {0};
    int rc = BD_OK;
    *out = NULL;
    *len = 0;
    if (put_line(&b, json_pack("{s:s, s:i, s:I, s:s, s:I, s:I, s:I}", "format", SNAP_FORMAT, "version",
                               SNAP_VERSION, "seq", (json_int_t)s->seq, "catalog_suffix", s->catalog_suffix,
                               "objects", (json_int_t)s->nobj, "zones", (json_int_t)s->nz, "floors",
                               (json_int_t)s->nf)) != BD_OK)
        goto nomem;
    for (size_t i = 0; i < s->nobj; i++) {
        const snap_obj_t *o = &s->objs[i];
        json_t *object = NULL;
        if (o->has_res) {
            bd_err_clear(err);
            if ((object = fetch(arg, o->valid_seq, err)) == NULL) {
                rc = err && err->code ? err->code
                                      : bd_err_set(err, BD_ENOTFOUND, "projector snapshot: no object at seq %llu",
                                                   (unsigned long long)o->valid_seq);
                goto out;
            }
            if (!same_object(o->key, object)) {
                json_decref(object);
                rc = bd_err_set(err, BD_ECORRUPT, "projector snapshot: the event at seq %llu is not %s",
                                (unsigned long long)o->valid_seq, o->key);
                goto out;
            }
        }
        rc = put_line(&b, obj_line(o, object));
        json_decref(object);
        if (rc != BD_OK)
            goto nomem;
    }
    for (size_t i = 0; i < s->nz + s->nf; i++)
        if (put_line(&b, json_pack("{s:s, s:I}", i < s->nz ? "zone" : "floor", s->names[i], "serial",
                                   (json_int_t)s->serials[i])) != BD_OK)
            goto nomem;
    *out = b.p;
    *len = b.len;
    b.p = NULL;
    goto out;
nomem:
    rc = bd_err_set(err, BD_ENOMEM, "projector snapshot: out of memory");
out:
    free(b.p);
    return rc;
}

int proj_snapshot(const proj_t *p, proj_fetch_fn fetch, void *arg, char **out, size_t *len, bd_err_t *err)
{
    proj_snap_t *s = NULL;
    *out = NULL;
    *len = 0;
    int rc = proj_snapshot_capture(p, &s, err);
    if (rc == BD_OK)
        rc = proj_snapshot_render(s, fetch, arg, out, len, err);
    proj_snap_free(s);
    return rc;
}

/* ---- input ------------------------------------------------------------------------- */

typedef struct {
    const char *buf;
    size_t len, pos;
    unsigned line;
} lines_t;

/* The next line parsed (new reference), or NULL with err set. */
static json_t *next_line(lines_t *l, bd_err_t *err)
{
    if (l->pos >= l->len) {
        bd_err_set(err, BD_ECORRUPT, "projector snapshot: ends at line %u", l->line);
        return NULL;
    }
    const char *s = l->buf + l->pos, *nl = memchr(s, '\n', l->len - l->pos);
    size_t n = nl ? (size_t)(nl - s) : l->len - l->pos;
    l->pos += n + 1;
    l->line++;
    json_error_t je;
    json_t *v = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(v)) {
        json_decref(v);
        bd_err_set(err, BD_ECORRUPT, "projector snapshot: line %u: %s", l->line, v ? "not an object" : je.text);
        return NULL;
    }
    return v;
}

static bool get_u64(const json_t *o, const char *key, uint64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Statuses point at constant reason strings: map the saved text back to one. */
static const char *intern_reason(const char *s)
{
    static const char *const known[] = {"Ready",         "InvalidSpec",    "NoInstancesSelected", "DuplicateZone",
                                        "CnameConflict", "RecordConflict", "NotSelected"};
    for (size_t i = 0; s != NULL && i < sizeof(known) / sizeof(*known); i++)
        if (strcmp(s, known[i]) == 0)
            return known[i];
    return NULL;
}

/* An object that never had a valid version: nothing to feed, only its status to keep. */
static int add_invalid_only(proj_t *t, const char *key, uint64_t first_seq, bd_err_t *err)
{
    char kind[64];
    const char *slash = strchr(key, '/'), *slash2 = slash ? strchr(slash + 1, '/') : NULL;
    res_kind_t rk;
    if (slash == NULL || slash2 == NULL || (size_t)(slash - key) >= sizeof(kind))
        return bd_err_set(err, BD_ECORRUPT, "projector snapshot: bad object key %s", key);
    memcpy(kind, key, (size_t)(slash - key));
    kind[slash - key] = '\0';
    if (res_kind_from_name(kind, &rk) != BD_OK)
        return bd_err_set(err, BD_ECORRUPT, "projector snapshot: %s: unknown kind", key);
    obj_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return bd_err_set(err, BD_ENOMEM, "projector snapshot: out of memory");
    o->key = strdup(key);
    o->ns = strndup(slash + 1, (size_t)(slash2 - slash - 1));
    o->name = strdup(slash2 + 1);
    o->kind = rk;
    o->first_seq = first_seq;
    if (o->key == NULL || o->ns == NULL || o->name == NULL || bd_hmap_put(t->objs, key, o, NULL) != BD_OK) {
        free(o->key);
        free(o->ns);
        free(o->name);
        free(o);
        return bd_err_set(err, BD_ENOMEM, "projector snapshot: out of memory");
    }
    return BD_OK;
}

/* Feed one object line into t; lines with history-dependent extras go to later. */
static int restore_obj(proj_t *t, const json_t *line, uint64_t *prev_first, json_t *later, bd_err_t *err)
{
    const char *key = json_string_value(json_object_get(line, "key"));
    const json_t *object = json_object_get(line, "object"), *inv = json_object_get(line, "invalid");
    uint64_t first = 0, valid = 0, version = 0;
    if (key == NULL || !get_u64(line, "first_seq", &first) || !get_u64(line, "valid_seq", &valid) ||
        !get_u64(line, "version", &version) || (!json_is_object(object) && !json_is_null(object)) ||
        (!json_is_string(inv) && !json_is_null(inv)))
        return bd_err_set(err, BD_ECORRUPT, "projector snapshot: malformed object entry");
    if (first <= *prev_first)
        return bd_err_set(err, BD_ECORRUPT, "projector snapshot: %s: objects out of first-seq order", key);
    *prev_first = first;
    int rc;
    if (json_is_object(object)) {
        jnl_event_t ev = jnl_event_of(JNL_SRC_RESTORE, JNL_ADDED, (json_t *)object);
        ev.seq = first;
        if ((rc = proj_apply(t, &ev, err)) != BD_OK)
            return rc;
    } else if (json_is_null(inv)) {
        return bd_err_set(err, BD_ECORRUPT, "projector snapshot: %s: neither an object nor an error", key);
    } else if ((rc = add_invalid_only(t, key, first, err)) != BD_OK) {
        return rc;
    }
    obj_t *o = bd_hmap_get(t->objs, key);
    if (o == NULL || (json_is_object(object) && o->res == NULL))
        return bd_err_set(err, BD_ECORRUPT, "projector snapshot: %s is not valid any more", key);
    o->version = version;
    o->valid_seq = valid;
    free(o->invalid_msg);
    o->invalid_msg = json_is_string(inv) ? strdup(json_string_value(inv)) : NULL;
    if (json_is_string(inv) && o->invalid_msg == NULL)
        return bd_err_set(err, BD_ENOMEM, "projector snapshot: out of memory");
    if ((json_object_get(line, "status") || json_object_get(line, "contribs")) &&
        json_array_append(later, (json_t *)line) != 0)
        return bd_err_set(err, BD_ENOMEM, "projector snapshot: out of memory");
    return BD_OK;
}

/* Put o's contributions in the saved order (the order the history attached them in). */
static void reorder_contribs(obj_t *o, const json_t *saved)
{
    size_t i;
    const json_t *c;
    json_array_foreach(saved, i, c) {
        const char *zone = json_string_value(json_array_get(c, 0)), *owner = json_string_value(json_array_get(c, 1));
        for (size_t j = i; zone && owner && i < o->ncontribs && j < o->ncontribs; j++) {
            if (strcmp(o->contribs[j].zone, zone) == 0 && strcmp(o->contribs[j].owner, owner) == 0) {
                contrib_t tmp = o->contribs[i];
                o->contribs[i] = o->contribs[j];
                o->contribs[j] = tmp;
                break;
            }
        }
    }
}

static int apply_later(proj_t *t, const json_t *line, bd_err_t *err)
{
    obj_t *o = bd_hmap_get(t->objs, json_string_value(json_object_get(line, "key")));
    const json_t *contribs = json_object_get(line, "contribs"), *st = json_object_get(line, "status");
    if (o == NULL)
        return bd_err_set(err, BD_ECORRUPT, "projector snapshot: an object vanished during the restore");
    if (json_is_array(contribs))
        reorder_contribs(o, contribs);
    if (st != NULL) {
        const char *reason = intern_reason(json_string_value(json_array_get(st, 1)));
        const char *msg = json_string_value(json_array_get(st, 2));
        if (!json_is_boolean(json_array_get(st, 0)) || reason == NULL || msg == NULL)
            return bd_err_set(err, BD_ECORRUPT, "projector snapshot: %s: malformed status", o->key);
        char *m = strdup(msg);
        if (m == NULL || bd_hmap_put(t->status_dirty, o->key, (void *)1, NULL) != BD_OK) {
            free(m);
            return bd_err_set(err, BD_ENOMEM, "projector snapshot: out of memory");
        }
        o->ready = json_is_true(json_array_get(st, 0));
        o->reason = reason;
        free(o->message);
        o->message = m;
    }
    return BD_OK;
}

/* Zone serials, instance versions and floors: the numbers the history decided. */
static int restore_numbers(proj_t *t, lines_t *l, uint64_t nz, uint64_t nf, bd_err_t *err)
{
    for (size_t i = 0; i < t->ninstances; i++) {
        proj_instance_t *in = t->instances[i];
        char key[1024];
        snprintf(key, sizeof(key), "%s/%s", res_kind_name(RES_BIND9INSTANCE), in->key);
        const obj_t *o = bd_hmap_get(t->objs, key);
        if (o != NULL && o->res == in->res)
            in->version = o->version;
    }
    if (bd_hmap_count(t->zones) != nz)
        return bd_err_set(err, BD_ECORRUPT, "projector snapshot: rebuilds %zu zones, lists %llu",
                          bd_hmap_count(t->zones), (unsigned long long)nz);
    for (uint64_t i = 0; i < nz + nf; i++) {
        json_t *v = next_line(l, err);
        if (v == NULL)
            return BD_ECORRUPT;
        const char *name = json_string_value(json_object_get(v, i < nz ? "zone" : "floor"));
        uint64_t serial = 0;
        int rc = BD_OK;
        if (name == NULL || !get_u64(v, "serial", &serial) || serial > UINT32_MAX) {
            rc = bd_err_set(err, BD_ECORRUPT, "projector snapshot: line %u: malformed", l->line);
        } else if (i < nz) {
            proj_zone_t *z = bd_hmap_get(t->zones, name);
            if (z == NULL)
                rc = bd_err_set(err, BD_ECORRUPT, "projector snapshot: zone %s is not rebuilt", name);
            else
                z->serial = z->taken_serial = (uint32_t)serial;
        } else if (bd_hmap_put(t->floors, name, (void *)((uintptr_t)serial + 1), NULL) != BD_OK) {
            rc = bd_err_set(err, BD_ENOMEM, "projector snapshot: out of memory");
        }
        json_decref(v);
        if (rc != BD_OK)
            return rc;
    }
    return BD_OK;
}

int proj_restore(proj_t *p, const char *buf, size_t len, bd_err_t *err)
{
    proj_t *t = NULL;
    json_t *hdr = NULL, *later = NULL;
    lines_t l = {buf, len, 0, 0};
    uint64_t seq = 0, nobj = 0, nz = 0, nf = 0, prev_first = 0;
    int rc;
    if (p->seq != 0 || bd_hmap_count(p->objs) != 0)
        return bd_err_set(err, BD_EINVAL, "projector restore: the projector is not empty");
    if ((hdr = next_line(&l, err)) == NULL)
        return BD_ECORRUPT;
    const char *fmt = json_string_value(json_object_get(hdr, "format"));
    const char *suffix = json_string_value(json_object_get(hdr, "catalog_suffix"));
    if (fmt == NULL || strcmp(fmt, SNAP_FORMAT) != 0) {
        rc = bd_err_set(err, BD_ECORRUPT, "projector restore: not a projector snapshot");
        goto out;
    }
    if (json_integer_value(json_object_get(hdr, "version")) != SNAP_VERSION) {
        rc = bd_err_set(err, BD_EVERSION, "projector restore: snapshot format version %lld, want %d",
                        (long long)json_integer_value(json_object_get(hdr, "version")), SNAP_VERSION);
        goto out;
    }
    if (!get_u64(hdr, "seq", &seq) || !get_u64(hdr, "objects", &nobj) || !get_u64(hdr, "zones", &nz) ||
        !get_u64(hdr, "floors", &nf) || suffix == NULL) {
        rc = bd_err_set(err, BD_ECORRUPT, "projector restore: malformed header");
        goto out;
    }
    if (strcmp(suffix, p->catalog_suffix) != 0) {
        rc = bd_err_set(err, BD_EINVAL, "projector restore: snapshot made with catalog suffix %s, not %s", suffix,
                        p->catalog_suffix);
        goto out;
    }
    proj_opts_t po = {.catalog_suffix = p->catalog_suffix};
    if ((rc = proj_new(&po, &t, err)) != BD_OK)
        goto out;
    if ((later = json_array()) == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "projector restore: out of memory");
        goto out;
    }
    for (uint64_t i = 0; i < nobj; i++) {
        json_t *line = next_line(&l, err);
        if (line == NULL) {
            rc = BD_ECORRUPT;
            goto out;
        }
        rc = restore_obj(t, line, &prev_first, later, err);
        json_decref(line);
        if (rc != BD_OK)
            goto out;
    }
    size_t i;
    json_t *line;
    json_array_foreach(later, i, line) {
        if ((rc = apply_later(t, line, err)) != BD_OK)
            goto out;
    }
    if ((rc = restore_numbers(t, &l, nz, nf, err)) != BD_OK)
        goto out;
    if (l.pos < l.len) {
        rc = bd_err_set(err, BD_ECORRUPT, "projector restore: stray data after line %u", l.line);
        goto out;
    }
    if (t->oom) {
        rc = bd_err_set(err, BD_ENOMEM, "projector restore: out of memory");
        goto out;
    }
    t->seq = seq;
    /* The caller's handle is shared: move the rebuilt state into it, the empty one out. */
    struct proj swap = *p;
    *p = *t;
    *t = swap;
out:
    proj_free(t);
    json_decref(hdr);
    json_decref(later);
    return rc;
}
