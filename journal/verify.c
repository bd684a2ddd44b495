/*
 * verify.c - prove the hash chain and decode every record.
 *
 * Records are checked in chunks, each chunk in one short read transaction. Inside a
 * chunk the expensive part (strict decoding and SHA-256 of every record) is independent
 * per record and is split across worker threads; linking (contiguous seqs, prev_hash ==
 * previous hash, checkpoint anchors) is then a cheap sequential pass. On the first
 * problem the record is decoded again alone to produce the message naming its seq.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jnl_int.h"

#define CHUNK 8192
#define MAX_WORKERS 4

typedef struct item {
    uint64_t seq;
    const uint8_t *p;
    size_t len;
    uint8_t bad; /* 0 ok, 1 does not decode / names another seq, 2 hash mismatch */
} item_t;

typedef struct work {
    item_t *items;
    size_t from, to;
} work_t;

static void check_items(item_t *items, size_t from, size_t to, EVP_MD_CTX *ctx)
{
    for (size_t i = from; i < to; i++) {
        item_t *it = &items[i];
        jnl__rd_t rd;
        jnl__hdr_t h;
        uint8_t hash[JNL_HASH_LEN];
        jnl__rd_init(&rd, it->p, it->len);
        if (jnl__rec_parse(&rd, &h, 0) != 0 || h.seq != it->seq) {
            it->bad = 1;
            continue;
        }
        if (jnl__sha256(ctx, h.prev, it->p, it->len - (2 + JNL_HASH_LEN), hash) != 0 ||
            memcmp(hash, h.hash, JNL_HASH_LEN) != 0)
            it->bad = 2;
        else
            it->bad = 0;
    }
}

static void *worker(void *arg)
{
    work_t *w = arg;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    check_items(w->items, w->from, w->to, ctx);
    EVP_MD_CTX_free(ctx);
    return NULL;
}

static void check_parallel(item_t *items, size_t n, unsigned nworkers, EVP_MD_CTX *ctx)
{
    pthread_t th[MAX_WORKERS];
    work_t w[MAX_WORKERS];
    unsigned started = 0;
    if (nworkers > 1 && n >= 256) {
        size_t per = n / nworkers;
        for (unsigned t = 1; t < nworkers; t++) {
            w[t].items = items;
            w[t].from = per * t;
            w[t].to = t + 1 == nworkers ? n : per * (t + 1);
            if (pthread_create(&th[t], NULL, worker, &w[t]) != 0)
                break;
            started = t;
        }
        size_t mine = started > 0 ? per : n;
        check_items(items, 0, mine, ctx);
        if (started + 1 < nworkers) /* some thread failed to start: do its share here */
            check_items(items, started > 0 ? w[started].to : mine, n, ctx);
        for (unsigned t = 1; t <= started; t++)
            pthread_join(th[t], NULL);
        return;
    }
    check_items(items, 0, n, ctx);
}

typedef struct ckpt_ref {
    uint64_t seq;
    uint8_t anchor[JNL_HASH_LEN];
} ckpt_ref_t;

typedef struct vctx {
    jnl_t *j;
    jnl_verify_report_t *rep;
    bd_err_t *err;
    ckpt_ref_t *ck;
    size_t nck;
} vctx_t;

static int corrupt(vctx_t *v, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int corrupt(vctx_t *v, uint64_t seq, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    v->rep->bad_seq = seq;
    return bd_err_set(v->err, BD_ECORRUPT, "journal %s: %s", v->j->path, msg);
}

static const ckpt_ref_t *find_ckpt(const vctx_t *v, uint64_t seq)
{
    size_t lo = 0, hi = v->nck;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->ck[mid].seq == seq)
            return &v->ck[mid];
        if (v->ck[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Decode every checkpoint (with its hash) and remember seq -> anchor. */
static int load_ckpts(vctx_t *v, MDB_txn *txn)
{
    jnl_t *j = v->j;
    MDB_cursor *cur = NULL;
    MDB_val k, d;
    int rc = mdb_cursor_open(txn, j->db_ckpt, &cur);
    if (rc != 0)
        return jnl__mdb_err(j, rc, v->err, "read checkpoints");
    int ret = BD_OK;
    for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        jnl__rd_t rd;
        jnl__ckpt_t c;
        uint8_t h[JNL_HASH_LEN];
        uint64_t key = k.mv_size == 8 ? jnl__get_be64(k.mv_data) : 0;
        jnl__rd_init(&rd, d.mv_data, d.mv_size);
        if (jnl__ckpt_parse(&rd, &c) != 0) {
            ret = corrupt(v, 0, "checkpoint at seq %llu: %s", (unsigned long long)key, rd.why);
            break;
        }
        if (c.seq != key) {
            ret = corrupt(v, 0, "checkpoint stored at seq %llu says seq %llu",
                          (unsigned long long)key, (unsigned long long)c.seq);
            break;
        }
        if (jnl__sha256(NULL, NULL, d.mv_data, d.mv_size - (2 + JNL_HASH_LEN), h) != 0 ||
            memcmp(h, c.hash, JNL_HASH_LEN) != 0) {
            ret = corrupt(v, 0, "checkpoint at seq %llu: hash mismatch (altered)",
                          (unsigned long long)key);
            break;
        }
        for (uint64_t i = 0; i < c.count && ret == 0; i++) {
            jnl__hdr_t e;
            if (jnl__ckpt_entry(&c.entries, &e) != 0)
                ret = corrupt(v, 0, "checkpoint at seq %llu: entry %llu: %s",
                              (unsigned long long)key, (unsigned long long)i, c.entries.why);
        }
        if (ret == 0 && c.entries.p != c.entries.end)
            ret = corrupt(v, 0, "checkpoint at seq %llu: stray bytes", (unsigned long long)key);
        if (ret != 0)
            break;
        ckpt_ref_t *nck = realloc(v->ck, (v->nck + 1) * sizeof(*nck));
        if (nck == NULL) {
            ret = bd_err_set(v->err, BD_ENOMEM, "out of memory");
            break;
        }
        v->ck = nck;
        v->ck[v->nck].seq = c.seq;
        memcpy(v->ck[v->nck].anchor, c.anchor, JNL_HASH_LEN);
        v->nck++;
        v->rep->checkpoints++;
    }
    if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
        ret = jnl__mdb_err(j, rc, v->err, "read checkpoints");
    mdb_cursor_close(cur);
    return ret;
}

static unsigned nworkers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
}

/* Explain why item it is bad (decoding it again alone). */
static int explain(vctx_t *v, const item_t *it)
{
    jnl__rd_t rd;
    jnl__hdr_t h;
    jnl__rd_init(&rd, it->p, it->len);
    if (jnl__rec_parse(&rd, &h, 0) != 0) {
        if (rd.ret != BD_EVERSION)
            return corrupt(v, it->seq, "seq %llu: %s", (unsigned long long)it->seq, rd.why);
        v->rep->bad_seq = it->seq;
        return bd_err_set(v->err, BD_EVERSION, "journal %s: seq %llu: %s", v->j->path,
                          (unsigned long long)it->seq, rd.why);
    }
    if (h.seq != it->seq)
        return corrupt(v, it->seq, "seq %llu: record says seq %llu", (unsigned long long)it->seq,
                       (unsigned long long)h.seq);
    return corrupt(v, it->seq, "seq %llu: hash mismatch: the record was altered",
                   (unsigned long long)it->seq);
}

#define RESTART 1

static int verify_once(vctx_t *v)
{
    jnl_t *j = v->j;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, d;
    item_t *items = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    uint8_t prev[JNL_HASH_LEN] = {0}, hhash[JNL_HASH_LEN];
    uint64_t first = 0, hseq = 0, htime = 0;
    unsigned nw = nworkers();
    int ret, rc;

    free(v->ck);
    v->ck = NULL;
    v->nck = 0;
    memset(v->rep, 0, sizeof(*v->rep));

    if ((ret = jnl__rtxn_begin(j, &txn, v->err)) != 0)
        goto cleanup;
    if ((ret = load_ckpts(v, txn)) != 0)
        goto cleanup;
    if ((rc = jnl__meta_head(j, txn, &hseq, hhash, &htime)) != 0) {
        ret = corrupt(v, 0, "the head record in meta is damaged");
        goto cleanup;
    }
    if ((rc = mdb_cursor_open(txn, j->db_events, &cur)) != 0)
        goto lmdb;
    if (mdb_cursor_get(cur, &k, &d, MDB_FIRST) == 0 && k.mv_size == 8)
        first = jnl__get_be64(k.mv_data);
    mdb_cursor_close(cur);
    cur = NULL;

    /* Where the chain starts. */
    uint64_t start;
    if (first == 0) {
        const ckpt_ref_t *c = find_ckpt(v, hseq);
        if (hseq == 0 || (c != NULL && memcmp(c->anchor, hhash, JNL_HASH_LEN) == 0)) {
            v->rep->anchor_seq = hseq;
            goto cleanup; /* empty, or everything folded into the last checkpoint */
        }
        ret = corrupt(v, 1, "the head says seq %llu but no event is stored", (unsigned long long)hseq);
        goto cleanup;
    }
    if (first == 1) {
        start = 1;
    } else if (find_ckpt(v, first - 1) != NULL) {
        start = first;
        memcpy(prev, find_ckpt(v, first - 1)->anchor, JNL_HASH_LEN);
        v->rep->anchor_seq = first - 1;
    } else {
        /* An interrupted prune leaves events below the newest checkpoint: start there. */
        const ckpt_ref_t *c = v->nck > 0 ? &v->ck[v->nck - 1] : NULL;
        if (c == NULL || c->seq < first) {
            ret = corrupt(v, first, "events before seq %llu are missing and no checkpoint covers "
                                    "them", (unsigned long long)first);
            goto cleanup;
        }
        start = c->seq + 1;
        memcpy(prev, c->anchor, JNL_HASH_LEN);
        v->rep->anchor_seq = c->seq;
    }
    v->rep->first = start;
    jnl__rtxn_end(j, txn);
    txn = NULL;

    items = malloc(CHUNK * sizeof(*items));
    if (items == NULL || ctx == NULL) {
        ret = bd_err_set(v->err, BD_ENOMEM, "out of memory");
        goto cleanup;
    }
    uint64_t expected = start;
    for (;;) {
        if ((ret = jnl__rtxn_begin(j, &txn, v->err)) != 0)
            goto cleanup;
        if ((rc = mdb_cursor_open(txn, j->db_events, &cur)) != 0)
            goto lmdb;
        uint8_t key[8];
        jnl__be64(key, expected);
        k.mv_size = 8;
        k.mv_data = key;
        size_t n = 0;
        for (rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE); rc == 0 && n < CHUNK;
             rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
            if (k.mv_size != 8) {
                ret = corrupt(v, expected, "an events key is not 8 bytes long");
                goto cleanup;
            }
            items[n].seq = jnl__get_be64(k.mv_data);
            items[n].p = d.mv_data;
            items[n].len = d.mv_size;
            n++;
        }
        bool end = rc == MDB_NOTFOUND;
        if (rc != 0 && rc != MDB_NOTFOUND)
            goto lmdb;
        mdb_cursor_close(cur);
        cur = NULL;

        check_parallel(items, n, nw, ctx);
        for (size_t i = 0; i < n; i++) {
            const item_t *it = &items[i];
            if (it->seq != expected) {
                uint64_t ck = 0;
                if (jnl__ckpt_latest(j, txn, &ck, NULL, NULL) == 0 && ck >= expected) {
                    ret = RESTART; /* pruned while we walked */
                    goto cleanup;
                }
                ret = corrupt(v, expected, "seq %llu is missing", (unsigned long long)expected);
                goto cleanup;
            }
            if (it->bad) {
                ret = explain(v, it);
                goto cleanup;
            }
            const uint8_t *rprev = it->p + it->len - JNL__TAIL + 2;
            const uint8_t *rhash = it->p + it->len - JNL_HASH_LEN;
            if (memcmp(rprev, prev, JNL_HASH_LEN) != 0) {
                bool anchored = it->seq == start && v->rep->anchor_seq != 0;
                char what[64];
                if (anchored)
                    snprintf(what, sizeof(what), "the anchor of checkpoint %llu",
                             (unsigned long long)v->rep->anchor_seq);
                else
                    snprintf(what, sizeof(what), "the hash of seq %llu",
                             (unsigned long long)(it->seq - 1));
                ret = corrupt(v, it->seq, "seq %llu: prev_hash does not match %s",
                              (unsigned long long)it->seq, what);
                goto cleanup;
            }
            const ckpt_ref_t *c = find_ckpt(v, it->seq);
            if (c != NULL && memcmp(c->anchor, rhash, JNL_HASH_LEN) != 0) {
                ret = corrupt(v, it->seq, "checkpoint at seq %llu: anchor does not match the hash "
                                          "of seq %llu",
                              (unsigned long long)it->seq, (unsigned long long)it->seq);
                goto cleanup;
            }
            memcpy(prev, rhash, JNL_HASH_LEN);
            v->rep->events++;
            v->rep->last = it->seq;
            expected = it->seq + 1;
        }
        if (end || n == 0) {
            /* The head, read in the same snapshot as the last chunk. */
            if ((rc = jnl__meta_head(j, txn, &hseq, hhash, &htime)) != 0) {
                ret = corrupt(v, 0, "the head record in meta is damaged");
                goto cleanup;
            }
            uint64_t lastv = expected - 1;
            if (hseq > lastv)
                ret = corrupt(v, lastv + 1, "seq %llu is missing (the journal's head is seq %llu)",
                              (unsigned long long)(lastv + 1), (unsigned long long)hseq);
            else if (hseq < lastv)
                ret = corrupt(v, hseq + 1, "seq %llu: event after the journal's head (seq %llu)",
                              (unsigned long long)(hseq + 1), (unsigned long long)hseq);
            else if (memcmp(hhash, prev, JNL_HASH_LEN) != 0)
                ret = corrupt(v, hseq, "seq %llu: hash does not match the journal's head",
                              (unsigned long long)hseq);
            goto cleanup;
        }
        jnl__rtxn_end(j, txn);
        txn = NULL;
    }
lmdb:
    ret = jnl__mdb_err(j, rc, v->err, "verify");
cleanup:
    if (cur != NULL)
        mdb_cursor_close(cur);
    jnl__rtxn_end(j, txn);
    free(items);
    EVP_MD_CTX_free(ctx);
    return ret;
}

int jnl_verify(jnl_t *j, jnl_verify_report_t *rep, bd_err_t *err)
{
    jnl_verify_report_t local;
    vctx_t v = {j, rep != NULL ? rep : &local, err, NULL, 0};
    int ret = RESTART;
    for (int attempt = 0; attempt < 5 && ret == RESTART; attempt++)
        ret = verify_once(&v);
    if (ret == RESTART)
        ret = bd_err_set(err, BD_EBUSY, "journal %s: pruned repeatedly during verification; "
                                        "run it again", j->path);
    free(v.ck);
    return ret;
}
