/*
 * read.c - reading events: by seq, by time, forward iteration and object history.
 * Every function opens one short read transaction and closes it before returning.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "jnl_int.h"

static int bad_record(const jnl_t *j, uint64_t seq, const jnl__rd_t *rd, bd_err_t *err)
{
    return bd_err_set(err, rd->ret, "journal %s: seq %llu: %s", j->path,
                      (unsigned long long)seq, rd->why);
}

/* Parse the record stored under seq (shallow) and check it names the same seq. */
static int parse_at(const jnl_t *j, uint64_t seq, const MDB_val *v, jnl__hdr_t *h, bd_err_t *err)
{
    jnl__rd_t rd;
    jnl__rd_init(&rd, v->mv_data, v->mv_size);
    if (jnl__rec_parse(&rd, h, JNL__PARSE_SHALLOW) != 0)
        return bad_record(j, seq, &rd, err);
    if (h->seq != seq)
        return bd_err_set(err, BD_ECORRUPT, "journal %s: seq %llu: record says seq %llu", j->path,
                          (unsigned long long)seq, (unsigned long long)h->seq);
    return BD_OK;
}

int jnl_get(jnl_t *j, uint64_t seq, unsigned flags, jnl_record_t **out, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    uint8_t key[8];
    MDB_val k = {8, key}, v;
    jnl__hdr_t h;
    *out = NULL;
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    jnl__be64(key, seq);
    int rc = mdb_get(txn, j->db_events, &k, &v);
    if (rc == MDB_NOTFOUND)
        ret = bd_err_set(err, BD_ENOTFOUND, "journal %s: no event with seq %llu", j->path,
                         (unsigned long long)seq);
    else if (rc != 0)
        ret = jnl__mdb_err(j, rc, err, "read event");
    else if ((ret = parse_at(j, seq, &v, &h, err)) == 0)
        ret = jnl__rec_build(&h, v.mv_size, flags, out, err);
    jnl__rtxn_end(j, txn);
    return ret;
}

int jnl_bounds(jnl_t *j, uint64_t *first, uint64_t *last, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint64_t f = 0, l = 0;
    if (first != NULL)
        *first = 0;
    if (last != NULL)
        *last = 0;
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    int rc = mdb_cursor_open(txn, j->db_events, &cur);
    if (rc == 0) {
        if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0 && k.mv_size == 8)
            f = jnl__get_be64(k.mv_data);
        if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
            l = jnl__get_be64(k.mv_data);
        mdb_cursor_close(cur);
        /* The head names the last committed seq even when it was folded away. */
        uint64_t hs = 0, ht = 0;
        uint8_t hh[JNL_HASH_LEN];
        if (jnl__meta_head(j, txn, &hs, hh, &ht) == 0 && hs > l)
            l = hs;
    } else {
        ret = jnl__mdb_err(j, rc, err, "bounds");
    }
    jnl__rtxn_end(j, txn);
    if (ret == 0) {
        if (first != NULL)
            *first = f;
        if (last != NULL)
            *last = l;
    }
    return ret;
}

int jnl_seq_at_time(jnl_t *j, uint64_t time_ns, uint64_t *seq_out, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint8_t key[16];
    MDB_val k = {16, key}, v;
    int rc;
    *seq_out = 0;
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    if ((rc = mdb_cursor_open(txn, j->db_time, &cur)) != 0)
        goto lmdb;
    /* The first index entry after (time_ns, max) and the one before it. */
    jnl__be64(key, time_ns);
    jnl__be64(key + 8, UINT64_MAX);
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    cur = NULL;
    if (rc == 0 && k.mv_size == 16) {
        *seq_out = jnl__get_be64((const uint8_t *)k.mv_data + 8);
        goto done;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        goto lmdb;
    /* Before every stored event: the latest checkpoint at or before time_ns, if pruned. */
    {
        MDB_val ek;
        MDB_cursor *ec = NULL;
        uint64_t first = 0;
        if ((rc = mdb_cursor_open(txn, j->db_events, &ec)) != 0)
            goto lmdb;
        if (mdb_cursor_get(ec, &ek, &v, MDB_FIRST) == 0 && ek.mv_size == 8)
            first = jnl__get_be64(ek.mv_data);
        mdb_cursor_close(ec);
        uint64_t ck = 0, ckt = 0;
        if ((rc = jnl__ckpt_latest(j, txn, &ck, &ckt, NULL)) != 0)
            goto lmdb;
        if (first <= 1 && ck == 0)
            goto done; /* unpruned: before the first event, the state is empty */
        /* Checkpoint times are in seq order; only the latest matters in practice. */
        if (ck != 0 && ckt <= time_ns) {
            *seq_out = ck;
            goto done;
        }
        ret = bd_err_set(err, BD_ENOTFOUND,
                         "journal %s: that time is before the oldest retained point", j->path);
        goto done;
    }
lmdb:
    if (cur != NULL)
        mdb_cursor_close(cur);
    ret = jnl__mdb_err(j, rc, err, "time lookup");
done:
    jnl__rtxn_end(j, txn);
    return ret;
}

/* ---- iterators ------------------------------------------------------------------------ */

#define ITER_CHUNK 256
#define ITER_BYTES (4u << 20)

typedef struct raw {
    uint64_t seq;
    size_t off, len;
} raw_t;

struct jnl_iter {
    jnl_t *j;
    uint64_t pos;
    unsigned flags;
    raw_t raw[ITER_CHUNK];
    size_t n, i;
    jnl__buf_t bytes;
};

int jnl_iter_new(jnl_t *j, uint64_t from, unsigned flags, jnl_iter_t **out, bd_err_t *err)
{
    *out = NULL;
    jnl_iter_t *it = calloc(1, sizeof(*it));
    if (it == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    it->j = j;
    it->pos = from;
    it->flags = flags;
    jnl__buf_init(&it->bytes, (size_t)JNL_RECORD_MAX + ITER_BYTES);
    *out = it;
    return BD_OK;
}

void jnl_iter_free(jnl_iter_t *it)
{
    if (it == NULL)
        return;
    jnl__buf_deinit(&it->bytes);
    free(it);
}

uint64_t jnl_iter_pos(const jnl_iter_t *it)
{
    return it->pos;
}

static int iter_fill(jnl_iter_t *it, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint8_t key[8];
    MDB_val k = {8, key}, v;
    int ret = jnl__rtxn_begin(it->j, &txn, err);
    if (ret != 0)
        return ret;
    it->n = it->i = 0;
    it->bytes.len = 0;
    it->bytes.ret = 0;
    int rc = mdb_cursor_open(txn, it->j->db_events, &cur);
    if (rc != 0)
        goto lmdb;
    jnl__be64(key, it->pos);
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && it->n < ITER_CHUNK) {
        if (it->n > 0 && it->bytes.len + v.mv_size > ITER_BYTES)
            break;
        if (k.mv_size != 8) {
            rc = MDB_CORRUPTED;
            break;
        }
        raw_t *r = &it->raw[it->n];
        r->seq = jnl__get_be64(k.mv_data);
        r->off = it->bytes.len;
        r->len = v.mv_size;
        jnl__buf_put(&it->bytes, v.mv_data, v.mv_size);
        if (it->bytes.ret != 0) {
            ret = bd_err_set(err, it->bytes.ret, "journal %s: seq %llu: record too large to read",
                             it->j->path, (unsigned long long)r->seq);
            goto done;
        }
        it->n++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == 0 || rc == MDB_NOTFOUND)
        goto done;
lmdb:
    ret = jnl__mdb_err(it->j, rc, err, "read events");
done:
    if (cur != NULL)
        mdb_cursor_close(cur);
    jnl__rtxn_end(it->j, txn);
    return ret;
}

int jnl_iter_next(jnl_iter_t *it, jnl_record_t **out, bd_err_t *err)
{
    jnl__rd_t rd;
    jnl__hdr_t h;
    *out = NULL;
    if (it->i >= it->n) {
        int ret = iter_fill(it, err);
        if (ret != 0)
            return ret;
        if (it->n == 0)
            return BD_ENOTFOUND;
    }
    raw_t *r = &it->raw[it->i++];
    it->pos = r->seq + 1;
    jnl__rd_init(&rd, it->bytes.p + r->off, r->len);
    if (jnl__rec_parse(&rd, &h, JNL__PARSE_SHALLOW) != 0)
        return bad_record(it->j, r->seq, &rd, err);
    if (h.seq != r->seq)
        return bd_err_set(err, BD_ECORRUPT, "journal %s: seq %llu: record says seq %llu",
                          it->j->path, (unsigned long long)r->seq, (unsigned long long)h.seq);
    return jnl__rec_build(&h, r->len, it->flags, out, err);
}

/* ---- history ------------------------------------------------------------------------- */

static bool span_eq(const jnl__span_t *s, const char *c, bool nocase)
{
    size_t n = strlen(c);
    if (n != s->len)
        return false;
    return nocase ? strncasecmp((const char *)s->p, c, n) == 0 : memcmp(s->p, c, n) == 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int jnl_history(jnl_t *j, const char *api_version, const char *kind, const char *ns,
                const char *name, uint64_t **seqs, size_t *n, bd_err_t *err)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint8_t prefix[8 + JNL__OKEY_MAX], ek[8];
    uint64_t *out = NULL, first = 0, last = 0;
    size_t cnt = 0, cap = 0;
    int rc;
    *seqs = NULL;
    *n = 0;
    if (kind == NULL || name == NULL)
        return bd_err_set(err, BD_EINVAL, "jnl_history: kind and name are required");
    ns = ns != NULL ? ns : "";
    size_t plen = 8 + jnl__okey(prefix + 8, (const uint8_t *)kind, strlen(kind),
                                (const uint8_t *)ns, strlen(ns), (const uint8_t *)name,
                                strlen(name), (const uint8_t *)api_version,
                                api_version ? strlen(api_version) : 0);
    int ret = jnl__rtxn_begin(j, &txn, err);
    if (ret != 0)
        return ret;
    MDB_val k, v;
    if ((rc = mdb_cursor_open(txn, j->db_events, &cur)) != 0)
        goto lmdb;
    if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0 && k.mv_size == 8)
        first = jnl__get_be64(k.mv_data);
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8)
        last = jnl__get_be64(k.mv_data);
    mdb_cursor_close(cur);
    cur = NULL;
    if (last == 0)
        goto found;
    if ((rc = mdb_cursor_open(txn, j->db_object, &cur)) != 0)
        goto lmdb;
    /* One probe per epoch of stored seqs. */
    for (uint64_t e = first >> j->epoch_shift; e <= last >> j->epoch_shift; e++) {
        jnl__be64(prefix, e);
        k.mv_size = plen;
        k.mv_data = prefix;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size < plen + 8 || memcmp(k.mv_data, prefix, plen) != 0)
                break;
            uint64_t seq = jnl__get_be64((const uint8_t *)k.mv_data + k.mv_size - 8);
            /* The key may be truncated or case-folded: confirm with the record itself. */
            MDB_val rk = {8, ek}, rv;
            jnl__be64(ek, seq);
            if (mdb_get(txn, j->db_events, &rk, &rv) != 0)
                continue; /* pruned between index and events (stale entry) */
            jnl__hdr_t h;
            jnl__rd_t rd;
            jnl__rd_init(&rd, rv.mv_data, rv.mv_size);
            if (jnl__rec_parse(&rd, &h, JNL__PARSE_SHALLOW) != 0) {
                ret = bad_record(j, seq, &rd, err);
                goto done;
            }
            if (!span_eq(&h.s[JNL__S_KIND], kind, true) || !span_eq(&h.s[JNL__S_NS], ns, false) ||
                !span_eq(&h.s[JNL__S_NAME], name, false) ||
                (api_version != NULL && !span_eq(&h.s[JNL__S_APIV], api_version, false)))
                continue;
            if (cnt == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                uint64_t *p = realloc(out, ncap * sizeof(*p));
                if (p == NULL) {
                    ret = bd_err_set(err, BD_ENOMEM, "out of memory");
                    goto done;
                }
                out = p;
                cap = ncap;
            }
            out[cnt++] = seq;
        }
        if (rc != 0 && rc != MDB_NOTFOUND)
            goto lmdb;
    }
    if (cnt > 1)
        qsort(out, cnt, sizeof(*out), cmp_u64);
found:
    *seqs = out;
    *n = cnt;
    out = NULL;
    goto done;
lmdb:
    ret = jnl__mdb_err(j, rc, err, "history");
done:
    if (cur != NULL)
        mdb_cursor_close(cur);
    jnl__rtxn_end(j, txn);
    free(out);
    return ret;
}
