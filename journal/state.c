/*
 * state.c - folding events into the resource set at a seq, checkpoints and retention.
 *
 * The fold runs inside one read transaction and works on the stored bytes: each event's
 * header is parsed in place (no copies, no JSON) and a hash table keyed by (apiVersion,
 * kind, namespace, name) keeps a pointer to the latest object bytes. Only the survivors
 * are decoded into JSON at the end, so folding 100,000 events costs little more than
 * walking them. A checkpoint is the same table written out, sorted, with the objects'
 * bytes copied as they are (they are canonical already).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jnl_int.h"
#include "log.h"

/* ---- the fold table ------------------------------------------------------------------- */

typedef struct fent {
    jnl__hdr_t h; /* identity, uid, rv, generation, seq, time, type, object bytes */
    uint64_t hash;
    uint8_t state; /* 0 empty, 1 live, 2 deleted (tombstone) */
} fent_t;

typedef struct fold {
    fent_t *tab;
    size_t cap, live, filled;
    uint64_t seq, time; /* the point reached */
    uint64_t base;      /* checkpoint the fold started from (0: genesis) */
    uint8_t anchor[JNL_HASH_LEN]; /* hash of the event at seq */
} fold_t;

static uint64_t ident_hash(const jnl__span_t *s)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (int i = 0; i < 4; i++) {
        for (uint32_t k = 0; k < s[i].len; k++) {
            h ^= s[i].p[k];
            h *= UINT64_C(1099511628211);
        }
        h ^= 0xff;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static bool ident_eq(const jnl__span_t *a, const jnl__span_t *b)
{
    for (int i = 0; i < 4; i++)
        if (a[i].len != b[i].len || memcmp(a[i].p, b[i].p, a[i].len) != 0)
            return false;
    return true;
}

static int span_cmp(const jnl__span_t *a, const jnl__span_t *b)
{
    int c = memcmp(a->p, b->p, a->len < b->len ? a->len : b->len);
    if (c != 0)
        return c;
    return a->len < b->len ? -1 : a->len > b->len;
}

static int ident_cmp(const jnl__span_t *a, const jnl__span_t *b)
{
    for (int i = 0; i < 4; i++) {
        int c = span_cmp(&a[i], &b[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

static void fold_deinit(fold_t *f)
{
    free(f->tab);
    memset(f, 0, sizeof(*f));
}

static int fold_rehash(fold_t *f)
{
    size_t cap = 64;
    while (cap < f->live * 4)
        cap *= 2;
    fent_t *tab = calloc(cap, sizeof(*tab));
    if (tab == NULL)
        return BD_ENOMEM;
    for (size_t i = 0; i < f->cap; i++) {
        if (f->tab[i].state != 1)
            continue;
        size_t p = f->tab[i].hash & (cap - 1);
        while (tab[p].state != 0)
            p = (p + 1) & (cap - 1);
        tab[p] = f->tab[i];
    }
    free(f->tab);
    f->tab = tab;
    f->cap = cap;
    f->filled = f->live;
    return BD_OK;
}

/* Find the slot of an identity: the live entry, or where to insert it. */
static fent_t *fold_slot(fold_t *f, const jnl__span_t *id, uint64_t h, bool *found)
{
    size_t p = h & (f->cap - 1);
    fent_t *tomb = NULL;
    for (;;) {
        fent_t *e = &f->tab[p];
        if (e->state == 0) {
            *found = false;
            return tomb != NULL ? tomb : e;
        }
        if (e->state == 2) {
            if (tomb == NULL)
                tomb = e;
        } else if (e->hash == h && ident_eq(e->h.s, id)) {
            *found = true;
            return e;
        }
        p = (p + 1) & (f->cap - 1);
    }
}

static int fold_apply(fold_t *f, const jnl__hdr_t *h)
{
    bool found;
    if (h->type != JNL_ADDED && h->type != JNL_MODIFIED && h->type != JNL_DELETED)
        return BD_OK; /* markers do not change the state */
    if ((f->filled + 1) * 10 > f->cap * 6 && fold_rehash(f) != 0)
        return BD_ENOMEM;
    uint64_t hash = ident_hash(h->s);
    fent_t *e = fold_slot(f, h->s, hash, &found);
    if (h->type == JNL_DELETED) {
        if (found) {
            e->state = 2;
            f->live--;
        }
        return BD_OK;
    }
    if (!found) {
        if (e->state == 0)
            f->filled++;
        f->live++;
    }
    e->h = *h;
    e->hash = hash;
    e->state = 1;
    return BD_OK;
}

static int cmp_fent(const void *pa, const void *pb)
{
    const fent_t *a = *(const fent_t *const *)pa, *b = *(const fent_t *const *)pb;
    return ident_cmp(a->h.s, b->h.s);
}

/* Live entries sorted by identity (pointers into the table). */
static int fold_sorted(const fold_t *f, fent_t ***out)
{
    *out = NULL;
    if (f->live == 0)
        return BD_OK;
    fent_t **v = malloc(f->live * sizeof(*v));
    if (v == NULL)
        return BD_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < f->cap; i++)
        if (f->tab[i].state == 1)
            v[n++] = &f->tab[i];
    qsort(v, n, sizeof(*v), cmp_fent);
    *out = v;
    return BD_OK;
}

int jnl__ckpt_latest(jnl_t *j, MDB_txn *txn, uint64_t *seq, uint64_t *time,
                     uint8_t anchor[JNL_HASH_LEN])
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    *seq = 0;
    if (time != NULL)
        *time = 0;
    int rc = mdb_cursor_open(txn, j->db_ckpt, &cur);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    jnl__rd_t rd;
    jnl__ckpt_t c;
    jnl__rd_init(&rd, v.mv_data, v.mv_size);
    if (k.mv_size != 8 || jnl__ckpt_parse(&rd, &c) != 0)
        return MDB_CORRUPTED;
    *seq = c.seq;
    if (time != NULL)
        *time = c.time;
    if (anchor != NULL)
        memcpy(anchor, c.anchor, JNL_HASH_LEN);
    return 0;
}

int jnl_checkpoint_latest(jnl_t *j, uint64_t *seq, uint64_t *time_ns,
                          uint8_t anchor[JNL_HASH_LEN], bd_err_t *err)
{
    MDB_txn *txn = NULL;
    uint64_t s = 0, t = 0;
    uint8_t a[JNL_HASH_LEN] = {0};
    if (seq != NULL)
        *seq = 0;
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    int rc = jnl__ckpt_latest(j, txn, &s, &t, a);
    jnl__rtxn_end(j, txn);
    if (rc != 0)
        return jnl__mdb_err(j, rc, err, "read checkpoint");
    if (seq != NULL)
        *seq = s;
    if (time_ns != NULL)
        *time_ns = t;
    if (anchor != NULL)
        memcpy(anchor, a, JNL_HASH_LEN);
    return BD_OK;
}

/* Load the checkpoint stored in v (checking its hash) into f. */
static int fold_load_ckpt(const jnl_t *j, fold_t *f, const MDB_val *v, bd_err_t *err)
{
    jnl__rd_t rd;
    jnl__ckpt_t c;
    uint8_t h[JNL_HASH_LEN];
    jnl__rd_init(&rd, v->mv_data, v->mv_size);
    if (jnl__ckpt_parse(&rd, &c) != 0)
        return bd_err_set(err, rd.ret, "journal %s: checkpoint: %s", j->path, rd.why);
    if (jnl__sha256(NULL, NULL, v->mv_data, v->mv_size - (2 + JNL_HASH_LEN), h) != 0 ||
        memcmp(h, c.hash, JNL_HASH_LEN) != 0)
        return bd_err_set(err, BD_ECORRUPT, "journal %s: checkpoint at seq %llu: hash mismatch",
                          j->path, (unsigned long long)c.seq);
    for (uint64_t i = 0; i < c.count; i++) {
        jnl__hdr_t e;
        if (jnl__ckpt_entry(&c.entries, &e) != 0)
            return bd_err_set(err, c.entries.ret, "journal %s: checkpoint at seq %llu: %s",
                              j->path, (unsigned long long)c.seq, c.entries.why);
        if (fold_apply(f, &e) != 0)
            return bd_err_set(err, BD_ENOMEM, "out of memory");
    }
    if (c.entries.p != c.entries.end)
        return bd_err_set(err, BD_ECORRUPT, "journal %s: checkpoint at seq %llu: stray bytes",
                          j->path, (unsigned long long)c.seq);
    f->base = f->seq = c.seq;
    f->time = c.time;
    memcpy(f->anchor, c.anchor, JNL_HASH_LEN);
    return BD_OK;
}

/*
 * Fold up to target (JNL_SEQ_LAST: everything) in txn. On success f->seq is the point
 * reached (== target unless JNL_SEQ_LAST) and f->anchor the hash of that event.
 */
static int fold_run(jnl_t *j, MDB_txn *txn, uint64_t target, fold_t *f, bd_err_t *err)
{
    MDB_cursor *cur = NULL;
    uint8_t key[8];
    MDB_val k = {8, key}, v;
    int ret = BD_OK, rc;
    bool have_ckpt = false;

    memset(f, 0, sizeof(*f));
    if (fold_rehash(f) != 0)
        return bd_err_set(err, BD_ENOMEM, "out of memory");

    /* 1. The latest checkpoint at or before target. */
    if ((rc = mdb_cursor_open(txn, j->db_ckpt, &cur)) != 0)
        goto lmdb;
    if (target == JNL_SEQ_LAST) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    } else {
        jnl__be64(key, target);
        k.mv_size = 8;
        k.mv_data = key;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && jnl__get_be64(k.mv_data) > target)
            rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
        else if (rc == MDB_NOTFOUND)
            rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    }
    if (rc == 0) {
        if ((ret = fold_load_ckpt(j, f, &v, err)) != 0)
            goto done;
        have_ckpt = true;
    } else if (rc != MDB_NOTFOUND) {
        goto lmdb;
    }
    mdb_cursor_close(cur);
    cur = NULL;

    /* 2. The events after it. */
    if ((rc = mdb_cursor_open(txn, j->db_events, &cur)) != 0)
        goto lmdb;
    uint64_t expected = f->base + 1;
    jnl__be64(key, expected);
    k.mv_size = 8;
    k.mv_data = key;
    bool past = false;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 8) {
            rc = MDB_CORRUPTED;
            goto lmdb;
        }
        uint64_t seq = jnl__get_be64(k.mv_data);
        if (target != JNL_SEQ_LAST && seq > target && expected > target) {
            past = true;
            break;
        }
        if (seq != expected) {
            if (!have_ckpt && expected == 1) {
                ret = bd_err_set(err, BD_ENOTFOUND,
                                 "journal %s: seq %llu is before the oldest retained point "
                                 "(events start at %llu)",
                                 j->path, (unsigned long long)target, (unsigned long long)seq);
            } else {
                ret = bd_err_set(err, BD_ECORRUPT, "journal %s: seq %llu is missing", j->path,
                                 (unsigned long long)expected);
            }
            goto done;
        }
        jnl__rd_t rd;
        jnl__hdr_t h;
        jnl__rd_init(&rd, v.mv_data, v.mv_size);
        if (jnl__rec_parse(&rd, &h, JNL__PARSE_SHALLOW) != 0) {
            ret = bd_err_set(err, rd.ret, "journal %s: seq %llu: %s", j->path,
                             (unsigned long long)seq, rd.why);
            goto done;
        }
        if (h.seq != seq) {
            ret = bd_err_set(err, BD_ECORRUPT, "journal %s: seq %llu: record says seq %llu",
                             j->path, (unsigned long long)seq, (unsigned long long)h.seq);
            goto done;
        }
        if (fold_apply(f, &h) != 0) {
            ret = bd_err_set(err, BD_ENOMEM, "out of memory");
            goto done;
        }
        f->seq = seq;
        f->time = h.time;
        memcpy(f->anchor, h.hash, JNL_HASH_LEN);
        expected = seq + 1;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        goto lmdb;
    if (target != JNL_SEQ_LAST && f->seq != target) {
        if (f->seq < target && !past)
            ret = bd_err_set(err, BD_ENOTFOUND, "journal %s: seq %llu is after the last event (%llu)",
                             j->path, (unsigned long long)target, (unsigned long long)f->seq);
        else
            ret = bd_err_set(err, BD_ENOTFOUND,
                             "journal %s: seq %llu is before the oldest retained point", j->path,
                             (unsigned long long)target);
    }
    goto done;
lmdb:
    ret = jnl__mdb_err(j, rc, err, "fold");
done:
    if (cur != NULL)
        mdb_cursor_close(cur);
    return ret;
}

/* ---- the state object ------------------------------------------------------------------ */

struct jnl_state {
    uint64_t seq;
    size_t n;
    jnl_event_t *ev;
    char *strs;
};

void jnl_state_free(jnl_state_t *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->n; i++)
        json_decref(st->ev[i].object);
    free(st->ev);
    free(st->strs);
    free(st);
}

static int state_build(const jnl_t *j, const fold_t *f, jnl_state_t **out, bd_err_t *err)
{
    fent_t **v = NULL;
    jnl_state_t *st = calloc(1, sizeof(*st));
    int ret = BD_OK;
    if (st == NULL || fold_sorted(f, &v) != 0) {
        ret = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto cleanup;
    }
    st->seq = f->seq;
    size_t total = 1;
    for (size_t i = 0; i < f->live; i++)
        for (int k = 0; k < JNL__S_N; k++)
            total += v[i]->h.s[k].len + 1;
    st->strs = malloc(total);
    st->ev = calloc(f->live ? f->live : 1, sizeof(*st->ev));
    if (st->strs == NULL || st->ev == NULL) {
        ret = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto cleanup;
    }
    char *p = st->strs;
    for (size_t i = 0; i < f->live; i++) {
        const jnl__hdr_t *h = &v[i]->h;
        jnl_event_t *ev = &st->ev[i];
        const char **dst[JNL__S_N] = {&ev->api_version, &ev->kind, &ev->ns,
                                      &ev->name, &ev->uid, &ev->resource_version};
        for (int k = 0; k < JNL__S_N; k++) {
            memcpy(p, h->s[k].p, h->s[k].len);
            p[h->s[k].len] = '\0';
            *dst[k] = p;
            p += h->s[k].len + 1;
        }
        ev->seq = h->seq;
        ev->time_ns = h->time;
        ev->source = h->source;
        ev->type = h->type;
        ev->generation = h->generation;
        st->n = i + 1;
        if (h->obj_len == 1 && h->obj[0] == 0xc0)
            continue;
        jnl__rd_t rd;
        jnl__rd_init(&rd, h->obj, h->obj_len);
        if (jnl__rd_json(&rd, 0, &ev->object) == 0 && rd.p != rd.end)
            jnl__rd_fail(&rd, BD_ECORRUPT, "object followed by stray bytes");
        if (rd.ret != 0) {
            ret = bd_err_set(err, rd.ret, "journal %s: seq %llu: object: %s", j->path,
                             (unsigned long long)h->seq, rd.why);
            goto cleanup;
        }
    }
    *out = st;
    st = NULL;
cleanup:
    free(v);
    jnl_state_free(st);
    return ret;
}

int jnl_state_at(jnl_t *j, uint64_t seq, jnl_state_t **out, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    fold_t f = {0};
    *out = NULL;
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    if ((ret = fold_run(j, txn, seq, &f, err)) == 0)
        ret = state_build(j, &f, out, err);
    jnl__rtxn_end(j, txn);
    fold_deinit(&f);
    return ret;
}

int jnl_state_at_time(jnl_t *j, uint64_t time_ns, jnl_state_t **out, bd_err_t *err)
{
    uint64_t seq = 0;
    *out = NULL;
    int ret = jnl_seq_at_time(j, time_ns, &seq, err);
    if (ret != 0)
        return ret;
    return jnl_state_at(j, seq, out, err);
}

uint64_t jnl_state_seq(const jnl_state_t *st)
{
    return st->seq;
}

size_t jnl_state_count(const jnl_state_t *st)
{
    return st->n;
}

const jnl_event_t *jnl_state_get(const jnl_state_t *st, size_t i)
{
    return i < st->n ? &st->ev[i] : NULL;
}

const jnl_event_t *jnl_state_find(const jnl_state_t *st, const char *api_version,
                                  const char *kind, const char *ns, const char *name)
{
    const char *key[4] = {api_version ? api_version : "", kind ? kind : "", ns ? ns : "",
                          name ? name : ""};
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const jnl_event_t *e = &st->ev[mid];
        const char *have[4] = {e->api_version, e->kind, e->ns, e->name};
        int c = 0;
        for (int i = 0; i < 4 && c == 0; i++)
            c = strcmp(have[i], key[i]);
        if (c == 0)
            return e;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- checkpoints ----------------------------------------------------------------------- */

/* Run op in write transactions until it reports done; on MDB_MAP_FULL grow up to the hard
 * limit (the reserve above the append ceiling exists for exactly this). */
static int write_ckpt(jnl_t *j, uint64_t seq, const jnl__buf_t *b, bd_err_t *err)
{
    uint8_t key[8];
    jnl__be64(key, seq);
    for (;;) {
        MDB_txn *txn = NULL;
        int rc = jnl__wtxn_begin(j, &txn);
        if (rc != 0)
            return jnl__mdb_err(j, rc, err, "checkpoint");
        MDB_val k = {8, key}, v = {b->len, b->p};
        rc = mdb_put(txn, j->db_ckpt, &k, &v, 0);
        rc = jnl__wtxn_end(j, txn, rc);
        if (rc == MDB_MAP_FULL && jnl__grow(j, j->opts.map_limit) == 0)
            continue;
        if (rc == MDB_MAP_FULL)
            return bd_err_set(err, BD_EFULL,
                              "journal %s: no room for a checkpoint of %zu KiB within the %llu MiB "
                              "limit; reopen with a larger limit, then prune",
                              j->path, b->len / 1024, (unsigned long long)(j->opts.map_limit >> 20));
        return rc == 0 ? BD_OK : jnl__mdb_err(j, rc, err, "write checkpoint");
    }
}

#define PRUNE_CHUNK 5000

/* One chunk of pruning: delete up to PRUNE_CHUNK events <= upto with their index entries,
 * and checkpoints < upto. *more tells whether anything is left. Returns an LMDB code. */
static int prune_chunk(jnl_t *j, MDB_txn *txn, uint64_t upto, bool *more)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint8_t okey[JNL__OKEY_MAX + 16];
    int rc, n = 0;
    *more = false;

    if ((rc = mdb_cursor_open(txn, j->db_events, &cur)) != 0)
        return rc;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        if (k.mv_size != 8 || jnl__get_be64(k.mv_data) > upto)
            break;
        if (n++ == PRUNE_CHUNK) {
            *more = true;
            break;
        }
        uint64_t seq = jnl__get_be64(k.mv_data);
        jnl__rd_t rd;
        jnl__hdr_t h;
        jnl__rd_init(&rd, v.mv_data, v.mv_size);
        if (jnl__rec_parse(&rd, &h, JNL__PARSE_SHALLOW) == 0 && h.s[JNL__S_NAME].len > 0) {
            jnl__be64(okey, seq >> j->epoch_shift);
            size_t kl = jnl__okey(okey + 8, h.s[JNL__S_KIND].p, h.s[JNL__S_KIND].len,
                                  h.s[JNL__S_NS].p, h.s[JNL__S_NS].len, h.s[JNL__S_NAME].p,
                                  h.s[JNL__S_NAME].len, h.s[JNL__S_APIV].p,
                                  h.s[JNL__S_APIV].len);
            jnl__be64(okey + 8 + kl, seq);
            MDB_val ok = {kl + 16, okey};
            rc = mdb_del(txn, j->db_object, &ok, NULL);
            if (rc != 0 && rc != MDB_NOTFOUND)
                goto done;
        }
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            goto done;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        goto done;
    mdb_cursor_close(cur);
    cur = NULL;

    /* Time index: seqs follow times, so entries to drop are the first ones. */
    if ((rc = mdb_cursor_open(txn, j->db_time, &cur)) != 0)
        return rc;
    n = 0;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        if (k.mv_size != 16 || jnl__get_be64((const uint8_t *)k.mv_data + 8) > upto)
            break;
        if (n++ == PRUNE_CHUNK) {
            *more = true;
            break;
        }
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            goto done;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        goto done;
    mdb_cursor_close(cur);
    cur = NULL;

    if ((rc = mdb_cursor_open(txn, j->db_ckpt, &cur)) != 0)
        return rc;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        if (k.mv_size != 8 || jnl__get_be64(k.mv_data) >= upto)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            goto done;
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
done:
    if (cur != NULL)
        mdb_cursor_close(cur);
    return rc;
}

static int prune(jnl_t *j, uint64_t upto, bd_err_t *err)
{
    bool more = true;
    while (more) {
        MDB_txn *txn = NULL;
        int rc = jnl__wtxn_begin(j, &txn);
        if (rc != 0)
            return jnl__mdb_err(j, rc, err, "prune");
        rc = prune_chunk(j, txn, upto, &more);
        rc = jnl__wtxn_end(j, txn, rc);
        if (rc == MDB_MAP_FULL && jnl__grow(j, j->opts.map_limit) == 0) {
            more = true;
            continue;
        }
        if (rc != 0)
            return jnl__mdb_err(j, rc, err, "prune");
    }
    return BD_OK;
}

int jnl_checkpoint(jnl_t *j, uint64_t seq, unsigned flags, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    fold_t f = {0};
    fent_t **v = NULL;
    jnl__buf_t b;
    int ret;
    if (j->rdonly)
        return bd_err_set(err, BD_EINVAL, "journal %s: opened read-only", j->path);
    jnl__buf_init(&b, JNL__CKPT_MAX);
    pthread_mutex_lock(&j->ckpt_lock);
    if ((ret = jnl__rtxn_begin(j, &txn, err)) != 0)
        goto cleanup;
    if ((ret = fold_run(j, txn, seq, &f, err)) != 0)
        goto cleanup;
    if (f.seq == 0) {
        ret = bd_err_set(err, BD_ENOTFOUND, "journal %s: no events to checkpoint", j->path);
        goto cleanup;
    }
    bool exists = f.base == f.seq;
    if (!exists) {
        if (fold_sorted(&f, &v) != 0) {
            ret = bd_err_set(err, BD_ENOMEM, "out of memory");
            goto cleanup;
        }
        if ((ret = jnl__ckpt_encode(&b, f.seq, f.time, f.anchor, (const jnl__hdr_t *const *)v,
                                    f.live)) != 0) {
            ret = bd_err_set(err, ret, "journal %s: checkpoint at seq %llu: %s", j->path,
                             (unsigned long long)f.seq, bd_strerror(ret));
            goto cleanup;
        }
    }
    jnl__rtxn_end(j, txn);
    txn = NULL;
    uint64_t at = f.seq;
    size_t live = f.live;
    if (!exists && (ret = write_ckpt(j, at, &b, err)) != 0)
        goto cleanup;
    if (flags & JNL_CKPT_PRUNE) {
        if ((ret = prune(j, at, err)) != 0)
            goto cleanup;
        jnl__shrink(j);
        jnl__writer_unfull(j);
    }
    bd_info("journal %s: checkpoint at seq %llu (%zu resources)%s", j->path,
            (unsigned long long)at, live, (flags & JNL_CKPT_PRUNE) ? ", older events pruned" : "");
cleanup:
    jnl__rtxn_end(j, txn);
    pthread_mutex_unlock(&j->ckpt_lock);
    free(v);
    fold_deinit(&f);
    jnl__buf_deinit(&b);
    return ret;
}

int jnl_retain(jnl_t *j, const jnl_retention_t *pol, uint64_t *ckpt_seq, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint64_t first = 0, last = 0, ck = 0, upto = 0;
    int rc;
    if (ckpt_seq != NULL)
        *ckpt_seq = 0;
    if (j->rdonly)
        return bd_err_set(err, BD_EINVAL, "journal %s: opened read-only", j->path);
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    if ((rc = jnl__ckpt_latest(j, txn, &ck, NULL, NULL)) != 0)
        goto lmdb;
    if ((rc = mdb_cursor_open(txn, j->db_events, &cur)) != 0)
        goto lmdb;
    if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0 && k.mv_size == 8)
        first = jnl__get_be64(k.mv_data);
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
        last = jnl__get_be64(k.mv_data);
    if (last == 0)
        goto done;
    if (pol->max_events > 0 && last - first + 1 > pol->max_events)
        upto = last - pol->max_events;
    if (pol->max_bytes > 0) {
        uint64_t sum = 0;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_LAST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
            sum += v.mv_size;
            if (sum > pol->max_bytes) {
                uint64_t s = jnl__get_be64(k.mv_data);
                if (s > upto)
                    upto = s;
                break;
            }
        }
    }
    mdb_cursor_close(cur);
    cur = NULL;
    if (pol->max_age_ns > 0) {
        uint64_t now = jnl__now_ns();
        if (now > pol->max_age_ns) {
            uint8_t key[16];
            jnl__be64(key, now - pol->max_age_ns);
            jnl__be64(key + 8, 0);
            k.mv_size = 16;
            k.mv_data = key;
            if ((rc = mdb_cursor_open(txn, j->db_time, &cur)) != 0)
                goto lmdb;
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            if (rc == 0)
                rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
            else if (rc == MDB_NOTFOUND)
                rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
            if (rc == 0 && k.mv_size == 16) {
                uint64_t s = jnl__get_be64((const uint8_t *)k.mv_data + 8);
                if (s > upto)
                    upto = s;
            }
            mdb_cursor_close(cur);
            cur = NULL;
        }
    }
    goto done;
lmdb:
    ret = jnl__mdb_err(j, rc, err, "retention");
done:
    if (cur != NULL)
        mdb_cursor_close(cur);
    jnl__rtxn_end(j, txn);
    if (ret != 0 || upto == 0 || upto <= ck)
        return ret;
    ret = jnl_checkpoint(j, upto, JNL_CKPT_PRUNE, err);
    if (ret == 0 && ckpt_seq != NULL)
        *ckpt_seq = upto;
    return ret;
}
