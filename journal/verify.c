/*
 * verify.c - prove the hash chain and decode every record.
 *
 * Every record carries its prev_hash, so its own hash can be recomputed without the others:
 * the work splits. The stored seqs are cut into ranges of RANGE seqs; a few worker threads
 * (one per core, up to four, the caller being one of them) take the next range from a shared
 * counter, so a worker slowed down by a busy core simply takes fewer ranges. A worker walks
 * its range in one short read transaction, decodes every record strictly, recomputes its hash
 * and checks the links inside the range. The ranges are then stitched in seq order (the first
 * prev_hash of a range must be the last hash of the one before) and the first range with a
 * problem is reported, so the report names the first bad seq exactly as a sequential walk
 * would; once a range has failed, ranges after it are not started. Events committed
 * meanwhile are checked sequentially, and the head is compared in the same snapshot as the
 * last event. Appends only ever add seqs past the ranges, so the ranges read the same bytes
 * whatever snapshot each transaction sees; a concurrent prune shows up as a gap and restarts.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jnl_int.h"

#define CHUNK 4096      /* records per read transaction (sequential part) */
#define RANGE 1024      /* seqs per unit of parallel work (more in huge journals) */
#define MAX_RANGES 65536
#define MAX_WORKERS 4
#define MIN_PER_WORKER 2048
#define PREFETCH_MAX 4096 /* bytes of the next record loaded ahead */

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

enum { BAD_NONE = 0, BAD_GAP, BAD_RECORD, BAD_LINK, BAD_ANCHOR, BAD_LMDB };

/* One range of seqs from..to, and what its worker found. */
typedef struct range {
    uint64_t from, to;
    uint64_t count;
    uint8_t first_prev[JNL_HASH_LEN], last_hash[JNL_HASH_LEN];
    uint64_t bad_seq;
    int bad;
    int lmdb_rc;
} range_t;

/* The ranges of one pass, shared by its workers. */
typedef struct vwork {
    const vctx_t *v;
    range_t *ranges;
    size_t n;
    atomic_size_t next;      /* next range to take */
    atomic_size_t first_bad; /* lowest range that found a problem (n: none yet) */
} vwork_t;

/* Does the record decode strictly, name seq and carry its own hash? */
static bool record_ok(EVP_MD_CTX *ctx, uint64_t seq, const uint8_t *p, size_t len, jnl__hdr_t *h)
{
    jnl__rd_t rd;
    uint8_t hash[JNL_HASH_LEN];
    jnl__rd_init(&rd, p, len);
    if (jnl__rec_parse(&rd, h, 0) != 0 || h->seq != seq)
        return false;
    return jnl__sha256(ctx, h->prev, p, len - (2 + JNL_HASH_LEN), hash) == 0 &&
           memcmp(hash, h->hash, JNL_HASH_LEN) == 0;
}

/* Start loading a record we are about to read (it comes from the map, rarely cached). */
static void prefetch(const MDB_val *d)
{
    const char *p = d->mv_data;
    size_t n = d->mv_size < PREFETCH_MAX ? d->mv_size : PREFETCH_MAX;
    for (size_t off = 0; off < n; off += 64)
        __builtin_prefetch(p + off);
}

/* Walk range r in one read transaction. */
static void range_check(const vctx_t *v, EVP_MD_CTX *ctx, range_t *r)
{
    jnl_t *j = v->j;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    uint8_t key[8], prev[JNL_HASH_LEN];
    MDB_val k = {8, key}, d, nk, nd;
    uint64_t expected = r->from;
    if (jnl__rtxn_begin(j, &txn, NULL) != 0) {
        r->bad = BAD_LMDB;
        r->lmdb_rc = EIO;
        r->bad_seq = expected;
        return;
    }
    int rc = mdb_cursor_open(txn, j->db_events, &cur);
    jnl__be64(key, expected);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    while (rc == 0 && expected <= r->to) {
        jnl__hdr_t h;
        uint64_t seq = k.mv_size == 8 ? jnl__get_be64(k.mv_data) : 0;
        if (seq != expected) {
            r->bad = BAD_GAP;
            break;
        }
        /* Step to the next record first, so that its bytes load while this one is checked
         * (the current record stays mapped until the transaction ends). */
        int nrc = MDB_NOTFOUND;
        if (expected < r->to && (nrc = mdb_cursor_get(cur, &nk, &nd, MDB_NEXT)) == 0)
            prefetch(&nd);
        if (!record_ok(ctx, seq, d.mv_data, d.mv_size, &h)) {
            r->bad = BAD_RECORD;
            break;
        }
        if (r->count == 0)
            memcpy(r->first_prev, h.prev, JNL_HASH_LEN);
        else if (memcmp(h.prev, prev, JNL_HASH_LEN) != 0) {
            r->bad = BAD_LINK;
            break;
        }
        const ckpt_ref_t *c = find_ckpt(v, seq);
        if (c != NULL && memcmp(c->anchor, h.hash, JNL_HASH_LEN) != 0) {
            r->bad = BAD_ANCHOR;
            break;
        }
        memcpy(prev, h.hash, JNL_HASH_LEN);
        r->count++;
        expected++;
        k = nk;
        d = nd;
        rc = nrc;
    }
    if (r->bad == BAD_NONE && rc == MDB_NOTFOUND && expected <= r->to)
        r->bad = BAD_GAP;
    else if (r->bad == BAD_NONE && rc != 0 && rc != MDB_NOTFOUND) {
        r->bad = BAD_LMDB;
        r->lmdb_rc = rc;
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    jnl__rtxn_end(j, txn);
    if (r->bad != BAD_NONE)
        r->bad_seq = expected;
    memcpy(r->last_hash, prev, JNL_HASH_LEN);
}

/* A worker: take ranges in order until none is left or one before them has failed (the
 * report names the first bad seq: nothing after a failed range can matter). */
static void *worker_main(void *arg)
{
    vwork_t *w = arg;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    for (;;) {
        size_t i = atomic_fetch_add(&w->next, 1);
        if (i >= w->n || i > atomic_load(&w->first_bad))
            break;
        range_t *r = &w->ranges[i];
        if (ctx == NULL) {
            r->bad = BAD_LMDB;
            r->lmdb_rc = ENOMEM;
            r->bad_seq = r->from;
        } else {
            range_check(w->v, ctx, r);
        }
        if (r->bad != BAD_NONE) {
            size_t cur = atomic_load(&w->first_bad);
            while (i < cur && !atomic_compare_exchange_weak(&w->first_bad, &cur, i))
                ;
        }
    }
    EVP_MD_CTX_free(ctx);
    return NULL;
}

#define RESTART 1

/* Explain a bad record at seq (decoding it again alone). */
static int explain(vctx_t *v, uint64_t seq)
{
    jnl_t *j = v->j;
    MDB_txn *txn = NULL;
    uint8_t key[8];
    MDB_val k = {8, key}, d;
    jnl__hdr_t h;
    int ret = jnl__rtxn_begin(j, &txn, v->err);
    if (ret != 0)
        return ret;
    jnl__be64(key, seq);
    int rc = mdb_get(txn, j->db_events, &k, &d);
    if (rc != 0) {
        jnl__rtxn_end(j, txn);
        return RESTART; /* gone meanwhile: pruned */
    }
    jnl__rd_t rd;
    jnl__rd_init(&rd, d.mv_data, d.mv_size);
    if (jnl__rec_parse(&rd, &h, 0) != 0) {
        if (rd.ret != BD_EVERSION) {
            ret = corrupt(v, seq, "seq %llu: %s", (unsigned long long)seq, rd.why);
        } else {
            v->rep->bad_seq = seq;
            ret = bd_err_set(v->err, BD_EVERSION, "journal %s: seq %llu: %s", j->path,
                             (unsigned long long)seq, rd.why);
        }
    } else if (h.seq != seq) {
        ret = corrupt(v, seq, "seq %llu: record says seq %llu", (unsigned long long)seq,
                      (unsigned long long)h.seq);
    } else {
        ret = corrupt(v, seq, "seq %llu: hash mismatch: the record was altered",
                      (unsigned long long)seq);
    }
    jnl__rtxn_end(j, txn);
    return ret;
}

/* A gap at seq: pruned while we walked (restart), or a missing event. */
static int gap(vctx_t *v, uint64_t seq)
{
    MDB_txn *txn = NULL;
    uint64_t ck = 0;
    if (jnl__rtxn_begin(v->j, &txn, NULL) == 0) {
        int rc = jnl__ckpt_latest(v->j, txn, &ck, NULL, NULL);
        jnl__rtxn_end(v->j, txn);
        if (rc == 0 && ck >= seq)
            return RESTART;
    }
    return corrupt(v, seq, "seq %llu is missing", (unsigned long long)seq);
}

static int link_error(vctx_t *v, uint64_t seq, uint64_t start)
{
    char what[64];
    if (seq == start && v->rep->anchor_seq != 0)
        snprintf(what, sizeof(what), "the anchor of checkpoint %llu",
                 (unsigned long long)v->rep->anchor_seq);
    else
        snprintf(what, sizeof(what), "the hash of seq %llu", (unsigned long long)(seq - 1));
    return corrupt(v, seq, "seq %llu: prev_hash does not match %s", (unsigned long long)seq, what);
}

/* Report what range r found (in seq order: it is the first range with a problem). */
static int range_error(vctx_t *v, const range_t *r, uint64_t start)
{
    switch (r->bad) {
    case BAD_GAP:
        return gap(v, r->bad_seq);
    case BAD_RECORD:
        return explain(v, r->bad_seq);
    case BAD_LINK:
        return link_error(v, r->bad_seq, start);
    case BAD_ANCHOR:
        return corrupt(v, r->bad_seq,
                       "checkpoint at seq %llu: anchor does not match the hash of seq %llu",
                       (unsigned long long)r->bad_seq, (unsigned long long)r->bad_seq);
    default:
        return jnl__mdb_err(v->j, r->lmdb_rc, v->err, "verify");
    }
}

static int verify_once(vctx_t *v)
{
    jnl_t *j = v->j;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, d;
    uint8_t prev[JNL_HASH_LEN] = {0}, hhash[JNL_HASH_LEN];
    uint64_t first = 0, last = 0, hseq = 0, htime = 0;
    range_t *ranges = NULL;
    pthread_t th[MAX_WORKERS];
    int ret, rc;

    free(v->ck);
    v->ck = NULL;
    v->nck = 0;
    memset(v->rep, 0, sizeof(*v->rep));

    if ((ret = jnl__rtxn_begin(j, &txn, v->err)) != 0)
        return ret;
    if ((ret = load_ckpts(v, txn)) != 0)
        goto cleanup;
    if (jnl__meta_head(j, txn, &hseq, hhash, &htime) != 0) {
        ret = corrupt(v, 0, "the head record in meta is damaged");
        goto cleanup;
    }
    if ((rc = mdb_cursor_open(txn, j->db_events, &cur)) != 0)
        goto lmdb;
    if (mdb_cursor_get(cur, &k, &d, MDB_FIRST) == 0 && k.mv_size == 8)
        first = jnl__get_be64(k.mv_data);
    if (mdb_cursor_get(cur, &k, &d, MDB_LAST) == 0 && k.mv_size == 8)
        last = jnl__get_be64(k.mv_data);
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

    /* 1. The seqs stored when we started, in ranges checked in parallel. */
    uint64_t expected = start;
    if (last >= start) {
        uint64_t total = last - start + 1;
        uint64_t per = total / MAX_RANGES + 1 > RANGE ? total / MAX_RANGES + 1 : RANGE;
        size_t n = (size_t)((total + per - 1) / per);
        unsigned nw = nworkers();
        while (nw > 1 && total / nw < MIN_PER_WORKER)
            nw--;
        ranges = calloc(n, sizeof(*ranges));
        if (ranges == NULL) {
            ret = bd_err_set(v->err, BD_ENOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            ranges[i].from = start + (uint64_t)i * per;
            ranges[i].to = i + 1 == n ? last : ranges[i].from + per - 1;
        }
        vwork_t w = {.v = v, .ranges = ranges, .n = n};
        atomic_init(&w.next, 0);
        atomic_init(&w.first_bad, n);
        unsigned started = 0;
        for (unsigned t = 1; t < nw; t++) {
            if (pthread_create(&th[started], NULL, worker_main, &w) != 0)
                break; /* fewer helpers: the ranges are shared out all the same */
            started++;
        }
        worker_main(&w);
        for (unsigned t = 0; t < started; t++)
            pthread_join(th[t], NULL);
        /* Stitch in seq order. Every range up to the first bad one was checked. */
        for (size_t i = 0; i < n; i++) {
            const range_t *r = &ranges[i];
            if (r->count > 0 && memcmp(r->first_prev, prev, JNL_HASH_LEN) != 0) {
                ret = link_error(v, r->from, start);
                goto cleanup;
            }
            if (r->bad != BAD_NONE) {
                ret = range_error(v, r, start);
                goto cleanup;
            }
            memcpy(prev, r->last_hash, JNL_HASH_LEN);
            v->rep->events += r->count;
        }
        v->rep->last = last;
        expected = last + 1;
    }

    /* 2. Whatever was committed meanwhile, then the head in the same snapshot. */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    for (;;) {
        if ((ret = jnl__rtxn_begin(j, &txn, v->err)) != 0)
            break;
        uint8_t key[8];
        jnl__be64(key, expected);
        k.mv_size = 8;
        k.mv_data = key;
        if ((rc = mdb_cursor_open(txn, j->db_events, &cur)) != 0) {
            ret = jnl__mdb_err(j, rc, v->err, "verify");
            break;
        }
        int n = 0;
        for (rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE); rc == 0 && n < CHUNK;
             rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT), n++) {
            jnl__hdr_t h;
            uint64_t seq = k.mv_size == 8 ? jnl__get_be64(k.mv_data) : 0;
            if (seq != expected) {
                ret = gap(v, expected);
                break;
            }
            if (!record_ok(ctx, seq, d.mv_data, d.mv_size, &h)) {
                ret = explain(v, seq);
                break;
            }
            if (memcmp(h.prev, prev, JNL_HASH_LEN) != 0) {
                ret = link_error(v, seq, start);
                break;
            }
            memcpy(prev, h.hash, JNL_HASH_LEN);
            v->rep->events++;
            v->rep->last = seq;
            expected++;
        }
        mdb_cursor_close(cur);
        cur = NULL;
        if (ret != 0)
            break;
        if (rc != MDB_NOTFOUND && rc != 0) {
            ret = jnl__mdb_err(j, rc, v->err, "verify");
            break;
        }
        if (rc == MDB_NOTFOUND) {
            if (jnl__meta_head(j, txn, &hseq, hhash, &htime) != 0) {
                ret = corrupt(v, 0, "the head record in meta is damaged");
                break;
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
            break;
        }
        jnl__rtxn_end(j, txn);
        txn = NULL;
    }
    EVP_MD_CTX_free(ctx);
    goto cleanup;
lmdb:
    ret = jnl__mdb_err(j, rc, v->err, "verify");
cleanup:
    free(ranges);
    if (cur != NULL)
        mdb_cursor_close(cur);
    jnl__rtxn_end(j, txn);
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
