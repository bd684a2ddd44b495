/*
 * kube.c - the Kubernetes API server as an event source (see kube.h).
 *
 * One "ref" per (kind, watched namespace) owns a reflector and the objects it has
 * journaled ("ns/name" -> resourceVersion, uid, last object), seeded from the journal's
 * state at start. Hooks turn what the reflector delivers into journal operations:
 *   event     -> ADDED/MODIFIED/DELETED unless it repeats the version journaled, then
 *                the resume point;
 *   bookmark  -> the resume point;
 *   list      -> the difference from what the ref holds, between RELIST markers (the
 *                RELIST_BEGIN is emitted lazily, at the first difference), then the
 *                resume point.
 * The ref's map is updated when an operation is decided, not when it reaches the
 * journal: the journal is the only thing that may lag behind.
 *
 * Every operation goes through one FIFO. jnl_append() refuses with BD_EBUSY when the
 * journal's queue is full; the operation then waits at the head of the FIFO (everything
 * after it waits too, so nothing is reordered) and a short timer retries. Resume points
 * go through the same FIFO, so one is never handed to the journal before the events it
 * covers.
 */
#include "kube.h"

#include <ctype.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "log.h"
#include "reflector.h"
#include "resource.h"

#define KSRC_GROUP "bindy.firestoned.io"
#define KSRC_VERSION "v1beta1"
#define KSRC_API_VERSION KSRC_GROUP "/" KSRC_VERSION
#define KSRC_RETRY_BUSY_S 0.005 /* the journal's queue was full */
#define KSRC_RETRY_FULL_S 1.0   /* the journal reached its size limit */
#define KSRC_MAX_NS 256         /* BINDY_WATCH_NAMESPACES entries */

typedef struct kobj {
    char *rv, *uid;
    char *last;  /* the last version journaled, compact JSON: a relist that finds the object
                  * gone journals it with its DELETED (a parsed tree would cost ~7x) */
    uint64_t seen; /* list generation that saw it */
} kobj_t;

typedef struct kref {
    struct ksrc *s;
    res_kind_t kind;
    k8s_res_t res;
    char *ns;      /* NULL: all namespaces */
    char *key;     /* resume point key */
    k8s_refl_t *r;
    bd_hmap_t *objs; /* "ns/name" -> kobj_t */
    uint64_t gen;    /* list generation */
    unsigned lists;
    bool relist_open; /* RELIST_BEGIN queued for the list being journaled */
    bool synced_once;
    char *resume;     /* the last resume point queued */
} kref_t;

typedef enum { OP_EVENT, OP_RESUME } op_kind_t;

typedef struct op {
    struct op *next;
    op_kind_t k;
    jnl_type_t type;
    const char *kind; /* static */
    char *ns, *name, *uid, *rv;
    int64_t generation;
    json_t *obj;
    char *rkey; /* OP_RESUME: the key (rv in rv) */
} op_t;

struct ksrc {
    k8s_client_t *c;
    jnl_t *j;
    struct ev_loop *loop;
    kref_t *refs;
    size_t nrefs;
    op_t *qhead, *qtail;
    size_t qlen;
    ev_timer retry;
    bool retry_init;
    ksrc_stats_t st;
};

/* ---- the operation FIFO ------------------------------------------------------------- */

static void op_free(op_t *op)
{
    if (op == NULL)
        return;
    free(op->ns);
    free(op->name);
    free(op->uid);
    free(op->rv);
    free(op->rkey);
    json_decref(op->obj);
    free(op);
}

/* Hand one operation to the journal. BD_OK: done (appended, or dropped with an error
 * logged); BD_EBUSY / BD_EFULL: try again later. */
static int op_try(ksrc_t *s, op_t *op)
{
    bd_err_t err = {0};
    int rc;
    if (op->k == OP_RESUME) {
        rc = jnl_resume_set(s->j, op->rkey, op->rv, &err);
        if (rc != BD_OK)
            bd_error("journal: resume point %s=%s: %s", op->rkey, op->rv, err.msg);
        return BD_OK;
    }
    jnl_event_t ev = {
        .source = JNL_SRC_KUBERNETES,
        .type = op->type,
        .api_version = KSRC_API_VERSION,
        .kind = op->kind,
        .ns = op->ns,
        .name = op->name,
        .uid = op->uid,
        .resource_version = op->rv,
        .generation = op->generation,
        .object = op->obj,
    };
    uint64_t seq = 0;
    rc = jnl_append(s->j, &ev, &seq, &err);
    if (rc == BD_OK) {
        s->st.appended++;
        s->st.last_seq = seq;
        return BD_OK;
    }
    if (rc == BD_EBUSY || rc == BD_EFULL) {
        s->st.busy++;
        return rc;
    }
    if (op->name != NULL)
        bd_error("%s/%s %s: %s resourceVersion %s not journaled: %s", op->ns, op->name, op->kind,
                 jnl_type_name(op->type), op->rv ? op->rv : "", err.msg);
    else
        bd_error("%s %s: not journaled: %s", op->kind, jnl_type_name(op->type), err.msg);
    return BD_OK;
}

static void retry_arm(ksrc_t *s, int why)
{
    if (ev_is_active(&s->retry))
        return;
    ev_timer_set(&s->retry, why == BD_EFULL ? KSRC_RETRY_FULL_S : KSRC_RETRY_BUSY_S, 0.);
    ev_timer_start(s->loop, &s->retry);
}

/* Hand the FIFO to the journal until it refuses. */
static void drain(ksrc_t *s)
{
    while (s->qhead != NULL) {
        op_t *op = s->qhead;
        int rc = op_try(s, op);
        if (rc != BD_OK) {
            retry_arm(s, rc);
            return;
        }
        s->qhead = op->next;
        if (s->qhead == NULL)
            s->qtail = NULL;
        s->qlen--;
        op_free(op);
    }
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    drain(w->data);
}

static void submit(ksrc_t *s, op_t *op)
{
    op->next = NULL;
    if (s->qhead == NULL) {
        int rc = op_try(s, op);
        if (rc == BD_OK) {
            op_free(op);
            return;
        }
        s->qhead = s->qtail = op;
        s->qlen = 1;
        retry_arm(s, rc);
        return;
    }
    s->qtail->next = op;
    s->qtail = op;
    s->qlen++;
}

static bool oom(const char *what)
{
    bd_error("kubernetes source: out of memory (%s)", what);
    return false;
}

static bool submit_event(kref_t *f, jnl_type_t type, const char *ns, const char *name, json_t *obj)
{
    op_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return oom("event");
    const json_t *meta = json_object_get(obj, "metadata");
    const char *uid = json_string_value(json_object_get(meta, "uid"));
    const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
    op->k = OP_EVENT;
    op->type = type;
    op->kind = f->res.kind;
    op->generation = json_integer_value(json_object_get(meta, "generation"));
    op->obj = json_incref(obj);
    if ((op->ns = strdup(ns ? ns : "")) == NULL || (name && (op->name = strdup(name)) == NULL) ||
        (uid && (op->uid = strdup(uid)) == NULL) || (rv && (op->rv = strdup(rv)) == NULL)) {
        op_free(op);
        return oom("event");
    }
    submit(f->s, op);
    return true;
}

static void submit_resume(kref_t *f, const char *rv)
{
    if (rv == NULL || *rv == '\0' || (f->resume != NULL && strcmp(f->resume, rv) == 0))
        return;
    op_t *op = calloc(1, sizeof(*op));
    char *keep = strdup(rv);
    if (op == NULL || keep == NULL || (op->rkey = strdup(f->key)) == NULL || (op->rv = strdup(rv)) == NULL) {
        free(keep);
        op_free(op);
        oom("resume point");
        return;
    }
    op->k = OP_RESUME;
    free(f->resume);
    f->resume = keep;
    submit(f->s, op);
}

static void relist_mark(kref_t *f, jnl_type_t type)
{
    op_t *op = calloc(1, sizeof(*op));
    if (op == NULL || (op->ns = strdup(f->ns ? f->ns : "")) == NULL) {
        op_free(op);
        oom("relist marker");
        return;
    }
    op->k = OP_EVENT;
    op->type = type;
    op->kind = f->res.kind;
    submit(f->s, op);
}

/* ---- the objects a ref has journaled ----------------------------------------------------- */

static void kobj_free(kobj_t *o)
{
    if (o == NULL)
        return;
    free(o->rv);
    free(o->uid);
    free(o->last);
    free(o);
}

/* The last version journaled, parsed (new reference), or NULL. */
static json_t *kobj_last(const kobj_t *o)
{
    return o->last ? json_loads(o->last, 0, NULL) : NULL;
}

static char *obj_key(const char *ns, const char *name)
{
    char *k = NULL;
    if (asprintf(&k, "%s/%s", ns ? ns : "", name) < 0)
        return NULL;
    return k;
}

/* Record (key -> this version). false on allocation failure (the map keeps the old). */
static bool kobj_set(kref_t *f, const char *key, kobj_t *have, const char *rv, const char *uid, json_t *obj)
{
    kobj_t *o = have;
    char *nrv = strdup(rv ? rv : ""), *nuid = uid ? strdup(uid) : NULL;
    char *nlast = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    if (nrv == NULL || (uid && nuid == NULL) || (obj && nlast == NULL) ||
        (o == NULL && (o = calloc(1, sizeof(*o))) == NULL)) {
        free(nrv);
        free(nuid);
        free(nlast);
        return oom("object map");
    }
    if (have == NULL && bd_hmap_put(f->objs, key, o, NULL) != BD_OK) {
        free(nrv);
        free(nuid);
        free(nlast);
        free(o);
        return oom("object map");
    }
    free(o->rv);
    free(o->uid);
    free(o->last);
    o->rv = nrv;
    o->uid = nuid;
    o->last = nlast;
    o->seen = f->gen;
    return true;
}

static void kobj_del(kref_t *f, const char *key)
{
    kobj_free(bd_hmap_del(f->objs, key));
}

/* ---- reflector hooks ------------------------------------------------------------------- */

typedef struct ident {
    const char *ns, *name, *rv, *uid;
} ident_t;

static bool ident_of(kref_t *f, json_t *obj, ident_t *id)
{
    const json_t *meta = json_object_get(obj, "metadata");
    id->ns = json_string_value(json_object_get(meta, "namespace"));
    id->name = json_string_value(json_object_get(meta, "name"));
    id->rv = json_string_value(json_object_get(meta, "resourceVersion"));
    id->uid = json_string_value(json_object_get(meta, "uid"));
    if (id->ns == NULL)
        id->ns = "";
    if (id->name == NULL || *id->name == '\0' || id->rv == NULL) {
        bd_warn("%s: an object without metadata.name or resourceVersion ignored", f->res.kind);
        return false;
    }
    if (f->ns != NULL && strcmp(f->ns, id->ns) != 0) {
        bd_warn("%s/%s %s: not in the watched namespace %s: ignored", id->ns, id->name, f->res.kind, f->ns);
        return false;
    }
    return true;
}

/* Journal obj as the next version of its object (ADDED or MODIFIED; a new uid under a
 * known name is the old object's DELETED, then ADDED). Returns false when it repeats the
 * version journaled. */
static bool put_version(kref_t *f, const ident_t *id, const char *key, json_t *obj)
{
    kobj_t *have = bd_hmap_get(f->objs, key);
    if (have != NULL && strcmp(have->rv, id->rv) == 0) {
        have->seen = f->gen;
        return false;
    }
    if (have != NULL && have->uid != NULL && id->uid != NULL && strcmp(have->uid, id->uid) != 0) {
        json_t *last = kobj_last(have);
        submit_event(f, JNL_DELETED, id->ns, id->name, last);
        json_decref(last);
        kobj_del(f, key);
        have = NULL;
    }
    submit_event(f, have ? JNL_MODIFIED : JNL_ADDED, id->ns, id->name, obj);
    kobj_set(f, key, have, id->rv, id->uid, obj);
    return true;
}

static void h_list_begin(void *arg)
{
    kref_t *f = arg;
    f->gen++;
    f->relist_open = false;
    if (f->lists++ > 0)
        f->s->st.relists++;
}

static void open_relist(kref_t *f)
{
    if (!f->relist_open) {
        relist_mark(f, JNL_RELIST_BEGIN);
        f->relist_open = true;
    }
}

static void h_list_item(void *arg, json_t *obj)
{
    kref_t *f = arg;
    ident_t id;
    if (!ident_of(f, obj, &id))
        return;
    char *key = obj_key(id.ns, id.name);
    if (key == NULL) {
        oom("list item");
        return;
    }
    kobj_t *have = bd_hmap_get(f->objs, key);
    if (have != NULL && strcmp(have->rv, id.rv) == 0) {
        have->seen = f->gen;
    } else {
        open_relist(f);
        put_version(f, &id, key, obj);
    }
    free(key);
}

static void h_list_end(void *arg, const char *rv)
{
    kref_t *f = arg;
    size_t n = 0;
    const char **keys = bd_hmap_keys_sorted(f->objs, &n);
    if (keys == NULL && n > 0) {
        oom("list end"); /* deletions wait for the next relist */
    }
    for (size_t i = 0; keys != NULL && i < n; i++) {
        kobj_t *o = bd_hmap_get(f->objs, keys[i]);
        if (o->seen == f->gen)
            continue;
        open_relist(f);
        json_t *last = kobj_last(o);
        const json_t *meta = json_object_get(last, "metadata");
        const char *ns = json_string_value(json_object_get(meta, "namespace"));
        const char *name = json_string_value(json_object_get(meta, "name"));
        char *key = strdup(keys[i]);
        if (key == NULL) {
            json_decref(last);
            oom("list end");
            break;
        }
        if (name == NULL) {
            /* an object without metadata (should not be): its key says who it is */
            char *slash = strchr(key, '/');
            ns = "";
            name = key;
            if (slash != NULL) {
                *slash = '\0';
                ns = key;
                name = slash + 1;
            }
        }
        submit_event(f, JNL_DELETED, ns, name, last);
        json_decref(last);
        kobj_del(f, keys[i]);
        free(key);
    }
    free(keys);
    if (f->relist_open) {
        relist_mark(f, JNL_RELIST_END);
        f->relist_open = false;
    }
    submit_resume(f, rv);
}

static void h_event(void *arg, const char *type, json_t *obj)
{
    kref_t *f = arg;
    ident_t id;
    if (!ident_of(f, obj, &id))
        return;
    char *key = obj_key(id.ns, id.name);
    if (key == NULL) {
        oom("event");
        return;
    }
    bool fresh;
    if (strcmp(type, "DELETED") == 0) {
        kobj_t *have = bd_hmap_get(f->objs, key);
        fresh = have != NULL;
        if (fresh) {
            submit_event(f, JNL_DELETED, id.ns, id.name, obj);
            kobj_del(f, key);
        }
    } else {
        fresh = put_version(f, &id, key, obj);
    }
    if (!fresh) {
        f->s->st.duplicates++;
        bd_debug("%s/%s %s: %s resourceVersion %s already journaled", id.ns, id.name, f->res.kind, type, id.rv);
    }
    free(key);
    submit_resume(f, id.rv);
}

static void h_bookmark(void *arg, const char *rv)
{
    submit_resume(arg, rv);
}

static void h_state(void *arg, bool synced, const char *why)
{
    kref_t *f = arg;
    if (synced && !f->synced_once) {
        f->synced_once = true;
        bd_info("%s%s%s: synced (%s)", f->res.plural, f->ns ? " in " : "", f->ns ? f->ns : "", why);
    }
}

/* ---- options -------------------------------------------------------------------------- */

/* A namespace name: a DNS-1123 label. */
static bool ns_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

int ksrc_opts_from_env(ksrc_opts_t *o, bd_err_t *err)
{
    static char buf[8192];
    static const char *v[KSRC_MAX_NS];
    memset(o, 0, sizeof(*o));
    const char *env = getenv("BINDY_WATCH_NAMESPACES");
    if (env == NULL)
        return BD_OK;
    if (strlen(env) >= sizeof(buf))
        return bd_err_set(err, BD_EINVAL, "BINDY_WATCH_NAMESPACES: longer than %zu bytes", sizeof(buf) - 1);
    char tmp[sizeof(buf)];
    snprintf(tmp, sizeof(tmp), "%s", env);
    size_t n = 0, used = 0;
    char *save = NULL;
    for (char *t = strtok_r(tmp, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*t))
            t++;
        char *e = t + strlen(t);
        while (e > t && isspace((unsigned char)e[-1]))
            *--e = '\0';
        if (*t == '\0')
            continue;
        if (!ns_valid(t))
            return bd_err_set(err, BD_EINVAL, "BINDY_WATCH_NAMESPACES: \"%.253s\" is not a namespace name", t);
        bool dup = false;
        for (size_t i = 0; i < n && !dup; i++)
            dup = strcmp(v[i], t) == 0;
        if (dup)
            continue;
        if (n == KSRC_MAX_NS)
            return bd_err_set(err, BD_EINVAL, "BINDY_WATCH_NAMESPACES: more than %d namespaces", KSRC_MAX_NS);
        size_t len = strlen(t) + 1;
        memcpy(buf + used, t, len);
        v[n++] = buf + used;
        used += len;
    }
    if (n > 0) {
        o->namespaces = v;
        o->nnamespaces = n;
    }
    return BD_OK;
}

/* ---- start and stop -------------------------------------------------------------------- */

static void ref_deinit(kref_t *f)
{
    size_t pos = 0;
    const char *k;
    void *v;
    while (f->objs != NULL && bd_hmap_next(f->objs, &pos, &k, &v))
        kobj_free(v);
    bd_hmap_free(f->objs);
    free(f->ns);
    free(f->key);
    free(f->resume);
}

static kref_t *ref_for(ksrc_t *s, res_kind_t kind, const char *ns)
{
    for (size_t i = 0; i < s->nrefs; i++) {
        kref_t *f = &s->refs[i];
        if (f->kind == kind && (f->ns == NULL || strcmp(f->ns, ns) == 0))
            return f;
    }
    return NULL;
}

/* Seed every ref with what the journal holds from this source. Blocks (one read). */
static int load_state(ksrc_t *s, bd_err_t *err)
{
    uint64_t last = 0;
    jnl_state_t *st = NULL;
    int rc = jnl_bounds(s->j, NULL, &last, err);
    if (rc != BD_OK || last == 0)
        return rc;
    if ((rc = jnl_state_at(s->j, JNL_SEQ_LAST, &st, err)) != BD_OK)
        return rc;
    size_t n = jnl_state_count(st), seeded = 0;
    for (size_t i = 0; i < n && rc == BD_OK; i++) {
        const jnl_event_t *ev = jnl_state_get(st, i);
        res_kind_t kind;
        if (ev->source != JNL_SRC_KUBERNETES || strcmp(ev->api_version, KSRC_API_VERSION) != 0 ||
            res_kind_from_name(ev->kind, &kind) != BD_OK)
            continue;
        kref_t *f = ref_for(s, kind, ev->ns);
        if (f == NULL)
            continue; /* a namespace no longer watched: left as it is */
        char *key = obj_key(ev->ns, ev->name);
        if (key == NULL || !kobj_set(f, key, NULL, ev->resource_version, ev->uid, ev->object))
            rc = bd_err_set(err, BD_ENOMEM, "kubernetes source: out of memory");
        else
            seeded++;
        free(key);
    }
    jnl_state_free(st);
    if (rc == BD_OK)
        bd_debug("kubernetes source: %zu objects journaled before (journal at seq %llu)", seeded,
                 (unsigned long long)last);
    return rc;
}

void ksrc_stop(ksrc_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nrefs; i++) {
        k8s_refl_stop(s->refs[i].r);
        s->refs[i].r = NULL;
    }
    if (s->retry_init)
        ev_timer_stop(s->loop, &s->retry);
    /* Hand what is still pending to the journal, waiting for it when its queue is full. */
    size_t dropped = 0;
    while (s->qhead != NULL) {
        op_t *op = s->qhead;
        int rc = op_try(s, op);
        if (rc == BD_EBUSY) {
            bd_err_t err;
            if (jnl_flush(s->j, &err) == BD_OK)
                continue;
            rc = err.code;
        }
        if (rc != BD_OK)
            dropped++;
        s->qhead = op->next;
        op_free(op);
    }
    if (dropped > 0)
        bd_error("kubernetes source: %zu events not journaled at stop (the journal refused them); "
                 "the next start lists or watches them again", dropped);
    for (size_t i = 0; i < s->nrefs; i++)
        ref_deinit(&s->refs[i]);
    free(s->refs);
    free(s);
}

int ksrc_start(k8s_client_t *c, jnl_t *j, const ksrc_opts_t *o, ksrc_t **out, bd_err_t *err)
{
    *out = NULL;
    if (c == NULL || j == NULL)
        return bd_err_set(err, BD_EINVAL, "kubernetes source: no client or journal");
    size_t nns = o != NULL && o->namespaces != NULL ? o->nnamespaces : 0;
    for (size_t i = 0; i < nns; i++)
        if (o->namespaces[i] == NULL || !ns_valid(o->namespaces[i]))
            return bd_err_set(err, BD_EINVAL, "kubernetes source: \"%.253s\" is not a namespace name",
                              o->namespaces[i] ? o->namespaces[i] : "(null)");
    int rc = BD_OK;
    ksrc_t *s = calloc(1, sizeof(*s));
    size_t per = nns > 0 ? nns : 1;
    if (s == NULL || (s->refs = calloc(RES_KIND_COUNT * per, sizeof(*s->refs))) == NULL) {
        free(s);
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    }
    s->c = c;
    s->j = j;
    for (int k = 0; k < RES_KIND_COUNT; k++) {
        for (size_t i = 0; i < per; i++) {
            const char *ns = nns > 0 ? o->namespaces[i] : NULL;
            if (ns != NULL && ref_for(s, (res_kind_t)k, ns) != NULL)
                continue; /* listed twice */
            kref_t *f = &s->refs[s->nrefs++];
            f->s = s;
            f->kind = (res_kind_t)k;
            f->res = (k8s_res_t){KSRC_GROUP, KSRC_VERSION, res_kind_plural(f->kind), res_kind_name(f->kind), true};
            if ((f->objs = bd_hmap_new()) == NULL || (ns != NULL && (f->ns = strdup(ns)) == NULL) ||
                asprintf(&f->key, "%s.%s/%s%s%s", f->res.plural, KSRC_GROUP, KSRC_VERSION, ns ? "@" : "",
                         ns ? ns : "") < 0) {
                f->key = NULL;
                rc = bd_err_set(err, BD_ENOMEM, "out of memory");
                goto fail;
            }
        }
    }
    if ((rc = load_state(s, err)) != BD_OK)
        goto fail;

    k8s_refl_hooks_t hooks = {h_list_begin, h_list_item, h_list_end, h_event, h_bookmark, h_state};
    for (size_t i = 0; i < s->nrefs; i++) {
        kref_t *f = &s->refs[i];
        char *resume = NULL;
        bd_err_t gerr;
        rc = jnl_resume_get(j, f->key, &resume, &gerr);
        if (rc == BD_ENOTFOUND) {
            rc = BD_OK;
        } else if (rc != BD_OK) {
            bd_err_set(err, rc, "%s", gerr.msg);
            goto fail;
        }
        k8s_refl_opts_t ro = {.res = f->res, .ns = f->ns, .resume_rv = resume, .page_size = o ? o->page_size : 0};
        rc = k8s_refl_start(c, &ro, &hooks, f, &f->r, err);
        if (rc == BD_OK && resume != NULL) {
            f->resume = resume; /* already saved */
            resume = NULL;
            bd_info("%s%s%s: resuming the watch from resourceVersion %s", f->res.plural, f->ns ? " in " : "",
                    f->ns ? f->ns : "", f->resume);
        }
        free(resume);
        if (rc != BD_OK)
            goto fail;
    }
    s->loop = k8s_client_loop(c);
    ev_timer_init(&s->retry, on_retry, KSRC_RETRY_BUSY_S, 0.);
    s->retry.data = s;
    s->retry_init = true;
    *out = s;
    return BD_OK;
fail:
    ksrc_stop(s);
    return rc;
}

bool ksrc_synced(const ksrc_t *s)
{
    for (size_t i = 0; i < s->nrefs; i++)
        if (!s->refs[i].synced_once)
            return false;
    return true;
}

void ksrc_stats(const ksrc_t *s, ksrc_stats_t *st)
{
    *st = s->st;
    st->pending = s->qlen;
}
