/*
 * writer.c - the append queue, the sealer thread and the group-commit writer thread.
 *
 * An event goes through three stages, each on its own thread:
 *
 *   jnl_append (the caller, usually the event loop): validates the event and encodes its
 *     record (JSON -> canonical msgpack: the object must be converted before the call
 *     returns), then, under qlock, gives it its seq and time and queues it. No hashing: the
 *     loop thread only does the work that needs the caller's object.
 *   the sealer: takes queued records in order and computes each one's place in the hash
 *     chain (prev_hash, then SHA-256: about a microsecond per KiB), then hands them to the
 *     writer SEAL_CHUNK at a time. The chain is inherently sequential, so this is one
 *     thread; on its own thread the hashing overlaps the writer's puts and fsync (hashing
 *     on the writer thread made the writer the bottleneck). It is woken once per chunk,
 *     not once per record.
 *   the writer: the only thread that touches the disk. It waits at most batch_ms for a
 *     batch to fill (unless someone flushes), takes what is sealed and writes batch_max
 *     operations at a time (records, index entries and the head) in ONE LMDB transaction
 *     each, committed with the fsync of the sync mode. The fsync therefore never happens
 *     on the loop, and N events cost one fsync.
 *
 * Records are encoded straight into a recycled buffer that travels with its operation
 * through both queues and back to the pool: the bytes are written once by the encoder and
 * read by the sealer and by LMDB, never copied in between. Results go back to the loop
 * through ev_async and to blocking callers (jnl_flush) through a condition variable.
 *
 * A failed batch (map full at the limit, I/O error) drops every queued operation, since
 * each queued record already carries a seq (and, once sealed, a hash) that chains on the
 * dropped ones; the chain head goes back to the last committed record, the error is sticky
 * (appends fail fast) and is reported once through the callback. Operations the sealer holds
 * at that moment are dropped when it hands them over (the queue generation changed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jnl_int.h"
#include "clock.h"
#include "log.h"

struct jnl__op {
    jnl__op_t *next;
    uint64_t ticket;
    uint64_t seq, time; /* seq 0: a meta put */
    uint64_t enq_mono;
    int seal_rc;        /* the sealer could not hash it: the batch that holds it fails */
    uint8_t *mem;       /* malloc'd, memcap bytes: holds the record or the meta value */
    size_t memcap;
    uint8_t *val;       /* inside mem */
    size_t vlen;
    size_t klen;
    uint8_t key[JNL__META_KEY_MAX + 8]; /* object index key prefix (events) or meta key */
};

/* Ops and their buffers are recycled: allocated on the appending thread and released on
 * the writer thread, they would otherwise keep malloc trimming and re-faulting the heap.
 * The pool holds enough for the batches in flight (queued, being sealed, being committed)
 * and only keeps ordinary-sized buffers. */
#define POOL_MAX 4096
#define POOL_BYTES_MAX (8u << 20)
#define POOL_BUF_MAX (16u << 10)

static jnl__op_t *op_get(jnl_t *j)
{
    pthread_mutex_lock(&j->pool_lock);
    jnl__op_t *op = j->pool;
    if (op != NULL) {
        j->pool = op->next;
        j->npool--;
        j->pool_bytes -= op->memcap;
    }
    pthread_mutex_unlock(&j->pool_lock);
    if (op == NULL && (op = calloc(1, sizeof(*op))) == NULL)
        return NULL;
    op->next = NULL;
    op->seq = op->time = 0;
    op->seal_rc = 0;
    op->val = NULL;
    op->vlen = op->klen = 0;
    return op;
}

/* Give a list of ops back (to the pool, or to free()). The list is walked outside the lock
 * (the appender takes it for every event); the pool takes it whole when it has room. */
static void ops_release(jnl_t *j, jnl__op_t *op)
{
    jnl__op_t *keep = NULL, *keep_tail = NULL, *drop = NULL;
    size_t n = 0, bytes = 0;
    while (op != NULL) {
        jnl__op_t *next = op->next;
        if (op->memcap <= POOL_BUF_MAX) {
            op->next = keep;
            keep = op;
            if (keep_tail == NULL)
                keep_tail = op;
            n++;
            bytes += op->memcap;
        } else {
            op->next = drop;
            drop = op;
        }
        op = next;
    }
    pthread_mutex_lock(&j->pool_lock);
    if (keep != NULL && j->npool + n <= POOL_MAX && j->pool_bytes + bytes <= POOL_BYTES_MAX) {
        keep_tail->next = j->pool;
        j->pool = keep;
        j->npool += n;
        j->pool_bytes += bytes;
        keep = NULL;
    }
    while (keep != NULL) { /* the pool is nearly full: one by one, the rest is freed */
        jnl__op_t *next = keep->next;
        if (j->npool < POOL_MAX && j->pool_bytes + keep->memcap <= POOL_BYTES_MAX) {
            keep->next = j->pool;
            j->pool = keep;
            j->npool++;
            j->pool_bytes += keep->memcap;
        } else {
            keep->next = drop;
            drop = keep;
        }
        keep = next;
    }
    pthread_mutex_unlock(&j->pool_lock);
    while (drop != NULL) {
        jnl__op_t *next = drop->next;
        free(drop->mem);
        free(drop);
        drop = next;
    }
}

void jnl__pool_free(jnl_t *j)
{
    jnl__op_t *op = j->pool;
    j->pool = NULL;
    j->npool = 0;
    j->pool_bytes = 0;
    while (op != NULL) {
        jnl__op_t *next = op->next;
        free(op->mem);
        free(op);
        op = next;
    }
}

/* Records sealed between two hand-overs to the writer: small enough that the writer gets
 * work early, large enough that the lock is taken and the sealer woken rarely. */
#define SEAL_CHUNK 64

/* What the sealer waits for (seal_wait). */
enum { SEAL_RUNNING = 0, SEAL_IDLE, SEAL_FILLING };

static uint64_t op_bytes(const jnl__op_t *op)
{
    return op->vlen + sizeof(*op);
}

/* Queue op for the sealer (qlock held). */
static void enqueue(jnl_t *j, jnl__op_t *op)
{
    op->ticket = ++j->enq_ticket;
    op->enq_mono = bd_mono_ns();
    if (j->utail != NULL)
        j->utail->next = op;
    else
        j->uhead = op;
    j->utail = op;
    j->ucount++;
    j->ubytes += op_bytes(op);
    j->qbytes += op_bytes(op);
    /* Wake the sealer when it sleeps on an empty queue, or when it waits for a fuller
     * chunk and one is there: not for every record (a wake-up is a system call). */
    if (j->seal_wait == SEAL_IDLE ||
        (j->seal_wait == SEAL_FILLING && (j->ucount >= SEAL_CHUNK || j->flushers > 0))) {
        j->seal_wait = SEAL_RUNNING; /* woken: later appends need not signal again */
        pthread_cond_signal(&j->seal_cv);
    }
}

/* Ask for a cache line we are about to write, in exclusive state. On x86 that is PREFETCHW
 * (which __builtin_prefetch emits only when told the CPU has it; older x86-64 CPUs execute
 * it as a NOP); a plain prefetch elsewhere. */
static inline void prefetch_w(const void *p)
{
#if defined(__x86_64__)
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1);
#endif
}

/* Start loading (the first 4 KiB of) a record another thread wrote. */
static inline void prefetch_r(const uint8_t *p, size_t len)
{
    for (size_t off = 0; off < len && off < 4096; off += 64)
        __builtin_prefetch(p + off);
}

static int sticky(jnl_t *j, bd_err_t *err)
{
    return bd_err_set(err, j->werr, "%s", j->werr_msg);
}

int jnl_append(jnl_t *j, const jnl_event_t *ev, uint64_t *seq_out, bd_err_t *err)
{
    jnl__buf_t b;
    jnl__op_t *op = NULL;
    int ret;

    if (seq_out != NULL)
        *seq_out = 0;
    if (j == NULL || ev == NULL)
        return bd_err_set(err, BD_EINVAL, "jnl_append: NULL argument");
    if (j->rdonly)
        return bd_err_set(err, BD_EINVAL, "journal %s: opened read-only", j->path);

    /* The expensive part, outside the lock: the body, after room for the prefix. */
    static const uint8_t room[JNL__PREFIX_MAX];
    if ((op = op_get(j)) == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    size_t hint = atomic_load_explicit(&j->size_hint, memory_order_relaxed);
    /* The recycled buffer was last read on another core: ask for its lines now, so that
     * they arrive while the object is walked. */
    for (size_t off = 0; off < op->memcap && off < hint + JNL__PREFIX_MAX; off += 64)
        prefetch_w(op->mem + off);
    if (ev->name != NULL && *ev->name != '\0') {
        const char *kind = ev->kind ? ev->kind : "", *ns = ev->ns ? ev->ns : "";
        const char *apiv = ev->api_version ? ev->api_version : "";
        op->klen = jnl__okey(op->key, (const uint8_t *)kind, strlen(kind), (const uint8_t *)ns,
                             strlen(ns), (const uint8_t *)ev->name, strlen(ev->name),
                             (const uint8_t *)apiv, strlen(apiv));
    }
    jnl__buf_init(&b, JNL_RECORD_MAX);
    b.p = op->mem; /* reuse the recycled buffer */
    b.cap = op->memcap;
    jnl__buf_reserve(&b, hint > 0 && hint < JNL_RECORD_MAX / 2 ? hint + hint / 4 : 1024);
    jnl__buf_put(&b, room, sizeof(room));
    ret = jnl__rec_body(&b, ev, NULL, err);
    op->mem = b.p; /* the op owns the bytes whatever happens */
    op->memcap = b.cap;
    if (ret != 0)
        goto cleanup;
    atomic_store_explicit(&j->size_hint, b.len, memory_order_relaxed);

    /* Seq and time, in queue order (the sealer chains the records in the same order). */
    pthread_mutex_lock(&j->qlock);
    if (j->werr != 0) {
        ret = sticky(j, err);
        goto unlock;
    }
    if (j->qbytes > j->opts.queue_max_bytes) {
        ret = bd_err_set(err, BD_EBUSY, "journal %s: %llu bytes queued, the disk is behind",
                         j->path, (unsigned long long)j->qbytes);
        goto unlock;
    }
    uint64_t seq = j->next_seq;
    uint64_t t = ev->time_ns != 0 ? ev->time_ns : jnl__now_ns();
    if (t < j->last_time)
        t = j->last_time;
    uint8_t pre[JNL__PREFIX_MAX];
    size_t plen = jnl__rec_prefix(pre, seq, t);
    uint8_t *rec = b.p + sizeof(room) - plen;
    size_t len = b.len - (sizeof(room) - plen);
    memcpy(rec, pre, plen);
    op->val = rec; /* prev_hash and hash are filled in by the sealer */
    op->vlen = len;
    op->seq = seq;
    op->time = t;
    j->next_seq = seq + 1;
    j->last_time = t;
    enqueue(j, op);
    op = NULL;
    if (seq_out != NULL)
        *seq_out = seq;
    ret = BD_OK;
unlock:
    pthread_mutex_unlock(&j->qlock);
cleanup:
    if (op != NULL)
        ops_release(j, op);
    return ret;
}

int jnl__queue_meta(jnl_t *j, const char *key, size_t klen, const void *val, size_t vlen,
                    bd_err_t *err)
{
    int ret = BD_OK;
    if (j->rdonly)
        return bd_err_set(err, BD_EINVAL, "journal %s: opened read-only", j->path);
    if (klen > sizeof(((jnl__op_t *)0)->key))
        return bd_err_set(err, BD_EINVAL, "journal %s: meta key too long", j->path);
    jnl__op_t *op = op_get(j);
    if (op == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    if (vlen > op->memcap) {
        uint8_t *p = realloc(op->mem, vlen);
        if (p == NULL) {
            ops_release(j, op);
            return bd_err_set(err, BD_ENOMEM, "out of memory");
        }
        op->mem = p;
        op->memcap = vlen;
    }
    if (vlen > 0)
        memcpy(op->mem, val, vlen);
    op->val = op->mem;
    op->vlen = vlen;
    memcpy(op->key, key, klen);
    op->klen = klen;
    pthread_mutex_lock(&j->qlock);
    if (j->werr != 0)
        ret = sticky(j, err);
    else
        enqueue(j, op);
    pthread_mutex_unlock(&j->qlock);
    if (ret != 0)
        ops_release(j, op);
    return ret;
}

int jnl_flush(jnl_t *j, bd_err_t *err)
{
    int ret = BD_OK;
    if (j->rdonly)
        return BD_OK;
    pthread_mutex_lock(&j->qlock);
    uint64_t target = j->enq_ticket;
    if (j->done_ticket < target && j->failed_ticket < target) {
        j->flushers++;
        pthread_cond_signal(&j->seal_cv);
        pthread_cond_signal(&j->work_cv);
        while (j->done_ticket < target && j->failed_ticket < target)
            pthread_cond_wait(&j->done_cv, &j->qlock);
        j->flushers--;
    }
    if (j->done_ticket < target)
        ret = bd_err_set(err, j->last_fail != 0 ? j->last_fail : BD_EIO, "%s", j->werr_msg);
    pthread_mutex_unlock(&j->qlock);
    return ret;
}

int jnl_append_sync(jnl_t *j, const jnl_event_t *ev, uint64_t *seq_out, bd_err_t *err)
{
    uint64_t seq = 0;
    if (seq_out != NULL)
        *seq_out = 0;
    int ret = jnl_append(j, ev, &seq, err);
    if (ret == 0)
        ret = jnl_flush(j, err);
    if (ret == 0 && seq_out != NULL)
        *seq_out = seq;
    return ret;
}

uint64_t jnl_committed_seq(jnl_t *j)
{
    pthread_mutex_lock(&j->qlock);
    uint64_t s = j->committed_seq;
    pthread_mutex_unlock(&j->qlock);
    return s;
}

/* ---- commit reports through ev_async --------------------------------------------------- */

static void async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    jnl_t *j = w->data;
    pthread_mutex_lock(&j->qlock);
    bool pending = j->rep_pending;
    uint64_t seq = j->rep_seq, fseq = j->rep_fail_seq;
    int fail = j->rep_fail;
    j->rep_pending = false;
    j->rep_fail = 0;
    jnl_commit_cb cb = j->cb;
    void *arg = j->cb_arg;
    pthread_mutex_unlock(&j->qlock);
    if (cb == NULL)
        return;
    if (fail != 0) {
        /* A success up to the failure's committed seq happened before the failure (later
         * successes have higher seqs): report it first. */
        if (pending && seq == fseq) {
            cb(j, seq, 0, arg);
            pending = false;
        }
        cb(j, fseq, fail, arg);
    }
    if (pending && (fail == 0 || seq > fseq))
        cb(j, seq, 0, arg);
}

int jnl_set_commit_cb(jnl_t *j, struct ev_loop *loop, jnl_commit_cb cb, void *arg)
{
    if (j->rdonly || loop == NULL || cb == NULL || j->loop != NULL)
        return BD_EINVAL;
    ev_async_init(&j->async, async_cb);
    j->async.data = j;
    ev_async_start(loop, &j->async);
    pthread_mutex_lock(&j->qlock);
    j->cb = cb;
    j->cb_arg = arg;
    j->loop = loop;
    pthread_mutex_unlock(&j->qlock);
    return BD_OK;
}

/* ---- the writer thread ------------------------------------------------------------------ */

typedef struct commit_out {
    uint64_t seq, time;
    uint8_t hash[JNL_HASH_LEN];
    uint64_t bytes; /* queued bytes of the batch's operations */
    size_t n;       /* operations in the batch */
} commit_out_t;

static int put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl, const void *v, size_t vl,
               unsigned flags)
{
    MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
    int rc = mdb_put(txn, dbi, &key, &val, flags);
    if (rc == MDB_KEYEXIST && (flags & MDB_APPEND)) {
        /* Not strictly after the last key (e.g. equal times): plain insert. */
        rc = mdb_put(txn, dbi, &key, &val, 0);
    }
    return rc;
}

/*
 * Write the first `max` operations of the list at batch (fewer when it is shorter) in one
 * transaction; *last gets the last of them. On MDB_MAP_FULL grow the map and redo it.
 */
static int commit_batch(jnl_t *j, jnl__op_t *batch, size_t max, jnl__op_t **last,
                        commit_out_t *out, bd_err_t *err)
{
    for (;;) {
        MDB_txn *txn = NULL;
        MDB_cursor *ecur = NULL, *tcur = NULL, *ocur = NULL;
        const jnl__op_t *last_ev = NULL;
        uint8_t key[JNL__OKEY_MAX + 16];
        int fail = 0; /* BD_E* for a problem that is not LMDB's */
        size_t n = 0;
        out->seq = j->committed_seq;
        out->time = j->committed_time;
        out->bytes = 0;
        out->n = 0;
        int rc = jnl__wtxn_begin(j, &txn);
        if (rc != 0)
            return jnl__mdb_err(j, rc, err, "begin commit");
        /* One cursor per database for the whole batch instead of a fresh cursor per put;
         * a cursor also finds the next key on the page it is on without a search from
         * the root when keys come in order (the time index, mostly the object index). */
        rc = mdb_cursor_open(txn, j->db_events, &ecur);
        if (rc == 0)
            rc = mdb_cursor_open(txn, j->db_time, &tcur);
        if (rc == 0)
            rc = mdb_cursor_open(txn, j->db_object, &ocur);
        for (jnl__op_t *op = batch; op != NULL && n < max && rc == 0; op = op->next, n++) {
            *last = op;
            out->bytes += op_bytes(op);
            out->n++;
            if (op->next != NULL) /* the next record was sealed on another core */
                prefetch_r(op->next->val, op->next->vlen);
            if (op->seq == 0) {
                rc = put(txn, j->db_meta, op->key, op->klen, op->val, op->vlen, 0);
                continue;
            }
            if (op->seal_rc != 0) {
                fail = bd_err_set(err, op->seal_rc, "journal %s: seq %llu: SHA-256 failed",
                                  j->path, (unsigned long long)op->seq);
                break;
            }
            jnl__be64(key, op->seq);
            rc = mdb_cursor_put(ecur, &(MDB_val){8, key}, &(MDB_val){op->vlen, op->val},
                                MDB_APPEND);
            if (rc == MDB_KEYEXIST) {
                fail = bd_err_set(err, BD_EIO,
                                  "journal %s: seq %llu already exists: another process writes "
                                  "to this journal",
                                  j->path, (unsigned long long)op->seq);
                break;
            }
            if (rc != 0)
                break;
            jnl__be64(key, op->time);
            jnl__be64(key + 8, op->seq);
            rc = mdb_cursor_put(tcur, &(MDB_val){16, key}, &(MDB_val){0, ""}, MDB_APPEND);
            if (rc == MDB_KEYEXIST) /* not strictly after the last key: plain insert */
                rc = mdb_cursor_put(tcur, &(MDB_val){16, key}, &(MDB_val){0, ""}, 0);
            if (rc == 0 && op->klen > 0) {
                jnl__be64(key, op->seq >> j->epoch_shift);
                memcpy(key + 8, op->key, op->klen);
                jnl__be64(key + 8 + op->klen, op->seq);
                rc = mdb_cursor_put(ocur, &(MDB_val){op->klen + 16, key}, &(MDB_val){0, ""}, 0);
            }
            last_ev = op;
            out->seq = op->seq;
            out->time = op->time;
        }
        /* The head: the last record's hash (the record's last bytes). */
        memcpy(out->hash, last_ev != NULL ? last_ev->val + last_ev->vlen - JNL_HASH_LEN
                                          : j->committed_hash,
               JNL_HASH_LEN);
        if (rc == 0 && fail == 0 && last_ev != NULL) {
            uint8_t head[48];
            jnl__head_value(head, out->seq, out->hash, out->time);
            rc = put(txn, j->db_meta, "head", 4, head, sizeof(head), 0);
        }
        if (ocur != NULL)
            mdb_cursor_close(ocur);
        if (tcur != NULL)
            mdb_cursor_close(tcur);
        if (ecur != NULL)
            mdb_cursor_close(ecur);
        rc = jnl__wtxn_end(j, txn, fail != 0 ? -1 : rc);
        if (fail != 0)
            return fail;
        if (rc == MDB_MAP_FULL) {
            if (jnl__grow(j, j->append_ceiling) == 0)
                continue;
            return bd_err_set(err, BD_EFULL,
                              "journal %s: size limit of %llu MiB reached; appends are refused "
                              "until old events are pruned (retention) or the limit is raised; "
                              "reads still work",
                              j->path, (unsigned long long)(j->opts.map_limit >> 20));
        }
        if (rc != 0)
            return jnl__mdb_err(j, rc, err, "commit");
        return BD_OK;
    }
}

/* ---- the sealer thread ------------------------------------------------------------------ */

static void *sealer_main(void *arg)
{
    jnl_t *j = arg;
    uint8_t chain[JNL_HASH_LEN];

    pthread_mutex_lock(&j->qlock);
    for (;;) {
        while (j->uhead == NULL && !j->stop) {
            j->seal_wait = SEAL_IDLE;
            pthread_cond_wait(&j->seal_cv, &j->qlock);
        }
        if (j->uhead == NULL)
            break; /* stopping, and everything is sealed */
        /* Let a chunk gather, for at most half the batch window (the writer waits for the
         * rest of it anyway), unless someone flushes. */
        uint64_t deadline = j->uhead->enq_mono + (uint64_t)j->opts.batch_ms * 500000u;
        while (j->ucount < SEAL_CHUNK && !j->stop && j->flushers == 0 && j->seal_wanted == 0) {
            uint64_t now = bd_mono_ns();
            if (now >= deadline)
                break;
            struct timespec ts = {(time_t)(deadline / 1000000000u),
                                  (long)(deadline % 1000000000u)};
            j->seal_wait = SEAL_FILLING;
            pthread_cond_timedwait(&j->seal_cv, &j->qlock, &ts);
        }
        j->seal_wait = SEAL_RUNNING;
        /* Take the whole queue: walking it is done outside the lock. */
        jnl__op_t *list = j->uhead;
        j->uhead = j->utail = NULL;
        j->ucount = 0;
        j->seal_bytes = j->ubytes;
        j->ubytes = 0;
        j->sealer_busy = true;
        uint64_t gen = j->gen;
        memcpy(chain, j->chain_hash, JNL_HASH_LEN);
        pthread_mutex_unlock(&j->qlock);

        while (list != NULL) {
            jnl__op_t *first = list, *last = NULL;
            size_t n = 0;
            uint64_t bytes = 0;
            for (jnl__op_t *op = list; op != NULL && n < SEAL_CHUNK; op = op->next) {
                /* The records were written on the appender's core: load the next one
                 * while this one is hashed. */
                if (op->next != NULL)
                    prefetch_r(op->next->val, op->next->vlen);
                if (op->seq != 0 && op->seal_rc == 0) {
                    int rc = jnl__rec_seal(j->md_ctx, op->val, op->vlen, chain);
                    if (rc == 0)
                        memcpy(chain, op->val + op->vlen - JNL_HASH_LEN, JNL_HASH_LEN);
                    else
                        op->seal_rc = rc; /* the writer fails this batch */
                }
                last = op;
                bytes += op_bytes(op);
                n++;
            }
            list = last->next;
            last->next = NULL;

            pthread_mutex_lock(&j->qlock);
            if (gen != j->gen) {
                /* A batch failed meanwhile: these records chain on dropped ones. */
                j->qbytes -= j->seal_bytes;
                j->seal_bytes = 0;
                j->sealer_busy = false;
                pthread_mutex_unlock(&j->qlock);
                ops_release(j, first);
                ops_release(j, list);
                pthread_mutex_lock(&j->qlock);
                break;
            }
            bool was_empty = j->qhead == NULL;
            if (j->qtail != NULL)
                j->qtail->next = first;
            else
                j->qhead = first;
            j->qtail = last;
            j->qcount += n;
            j->seal_bytes -= bytes;
            memcpy(j->chain_hash, chain, JNL_HASH_LEN);
            if (list == NULL)
                j->sealer_busy = false;
            /* Wake the writer when it waits for a first operation, for a full batch, or
             * (flushing, stopping) for the sealer to finish. */
            j->sealed_ticket = last->ticket;
            if (was_empty || j->qcount >= j->opts.batch_max ||
                (j->seal_wanted != 0 && last->ticket >= j->seal_wanted) ||
                ((j->flushers > 0 || j->stop) && !j->sealer_busy && j->uhead == NULL))
                pthread_cond_signal(&j->work_cv);
            if (list != NULL)
                pthread_mutex_unlock(&j->qlock);
        }
    }
    j->sealer_done = true;
    pthread_cond_signal(&j->work_cv);
    pthread_mutex_unlock(&j->qlock);
    return NULL;
}

/* ---- the writer thread ------------------------------------------------------------------ */

/* Is there anything not yet sealed (qlock held)? */
static bool sealing(const jnl_t *j)
{
    return j->uhead != NULL || j->sealer_busy;
}

static void *writer_main(void *arg)
{
    jnl_t *j = arg;
    bd_err_t err;

    pthread_mutex_lock(&j->qlock);
    for (;;) {
        while (j->qhead == NULL && !(j->stop && j->sealer_done))
            pthread_cond_wait(&j->work_cv, &j->qlock);
        if (j->qhead == NULL)
            break;
        /* The batch window: wait for more, unless full, past the window, or flushed or
         * stopping with nothing left to seal. */
        uint64_t deadline = j->qhead->enq_mono + (uint64_t)j->opts.batch_ms * 1000000u;
        while (j->qcount < j->opts.batch_max &&
               !((j->flushers > 0 || j->stop) && !sealing(j))) {
            uint64_t now = bd_mono_ns();
            if (now >= deadline)
                break;
            struct timespec ts = {(time_t)(deadline / 1000000000u),
                                  (long)(deadline % 1000000000u)};
            pthread_cond_timedwait(&j->work_cv, &j->qlock, &ts);
        }
        /* The batch closes now and holds what was appended until now: what the sealer
         * has not handed over yet belongs to it too (hashing it is quick). Appending never
         * waited for the hash, so this is the wait the appender used to pay. */
        if (j->qcount < j->opts.batch_max && sealing(j)) {
            j->seal_wanted = j->enq_ticket;
            pthread_cond_signal(&j->seal_cv); /* no need to gather a chunk */
            while (j->qcount < j->opts.batch_max && j->sealed_ticket < j->seal_wanted)
                pthread_cond_wait(&j->work_cv, &j->qlock);
            j->seal_wanted = 0;
        }
        /* Take everything sealed (no walk under the lock); it is committed in batches of
         * batch_max, and a last, partial batch goes back to the queue to fill up. */
        jnl__op_t *list = j->qhead, *tail = j->qtail;
        size_t left = j->qcount;
        j->qhead = j->qtail = NULL;
        j->qcount = 0;
        pthread_mutex_unlock(&j->qlock);

        for (bool first = true; list != NULL; first = false) {
            if (!first && left < j->opts.batch_max) {
                pthread_mutex_lock(&j->qlock);
                tail->next = j->qhead;
                if (j->qhead == NULL)
                    j->qtail = tail;
                j->qhead = list;
                j->qcount += left;
                pthread_mutex_unlock(&j->qlock);
                break;
            }
            jnl__op_t *batch = list, *last = list, *dropped = NULL, *unsealed = NULL;
            commit_out_t out;
            bd_err_clear(&err);
            int rc = commit_batch(j, batch, j->opts.batch_max, &last, &out, &err);
            list = last->next;
            last->next = NULL;
            left -= out.n;

            pthread_mutex_lock(&j->qlock);
            if (rc == 0) {
                j->qbytes -= out.bytes;
                j->done_ticket = last->ticket;
                j->committed_seq = out.seq;
                j->committed_time = out.time;
                memcpy(j->committed_hash, out.hash, JNL_HASH_LEN);
                j->rep_seq = out.seq;
                j->rep_pending = true;
            } else {
                /* Everything queued chains on the failed records: drop it all, including
                 * what the sealer holds (it sees the new generation). */
                dropped = j->qhead;
                unsealed = j->uhead;
                j->qhead = j->qtail = NULL;
                j->qcount = 0;
                j->uhead = j->utail = NULL;
                j->ucount = 0;
                j->ubytes = 0;
                j->qbytes = j->seal_bytes;
                j->gen++;
                j->failed_ticket = j->enq_ticket;
                j->next_seq = j->committed_seq + 1;
                j->last_time = j->committed_time;
                memcpy(j->chain_hash, j->committed_hash, JNL_HASH_LEN);
                j->werr = rc;
                j->last_fail = rc;
                snprintf(j->werr_msg, sizeof(j->werr_msg), "%s", err.msg);
                if (rc == BD_EFULL)
                    j->full = true;
                if (j->rep_fail == 0) {
                    j->rep_fail = rc;
                    j->rep_fail_seq = j->committed_seq;
                }
            }
            pthread_cond_broadcast(&j->done_cv);
            if (j->loop != NULL)
                ev_async_send(j->loop, &j->async);
            pthread_mutex_unlock(&j->qlock);

            if (rc != 0) {
                bd_error("%s", err.msg);
                ops_release(j, list); /* the rest of what this thread took */
                list = NULL;
            }
            ops_release(j, batch);
            ops_release(j, dropped);
            ops_release(j, unsealed);
            jnl__check_space(j);
        }
        pthread_mutex_lock(&j->qlock);
    }
    pthread_mutex_unlock(&j->qlock);
    return NULL;
}

static void stop_threads(jnl_t *j)
{
    pthread_mutex_lock(&j->qlock);
    j->stop = true;
    pthread_cond_signal(&j->seal_cv);
    pthread_cond_signal(&j->work_cv);
    pthread_mutex_unlock(&j->qlock);
    if (j->sealer_started)
        pthread_join(j->sealer, NULL);
    if (j->writer_started)
        pthread_join(j->writer, NULL);
    j->sealer_started = j->writer_started = false;
}

int jnl__writer_start(jnl_t *j, bd_err_t *err)
{
    int rc = pthread_create(&j->sealer, NULL, sealer_main, j);
    if (rc == 0) {
        pthread_setname_np(j->sealer, "jnl-sealer");
        j->sealer_started = true;
        rc = pthread_create(&j->writer, NULL, writer_main, j);
    }
    if (rc != 0) {
        stop_threads(j);
        return bd_err_set(err, BD_EIO, "journal %s: cannot start the writer threads: %s",
                          j->path, strerror(rc));
    }
    pthread_setname_np(j->writer, "jnl-writer");
    j->writer_started = true;
    return BD_OK;
}

void jnl__writer_stop(jnl_t *j)
{
    if (!j->writer_started && !j->sealer_started)
        return;
    stop_threads(j);
}

void jnl__writer_unfull(jnl_t *j)
{
    pthread_mutex_lock(&j->qlock);
    if (j->werr == BD_EFULL) {
        j->werr = 0;
        j->werr_msg[0] = '\0';
    }
    j->full = false;
    j->warned_near_limit = false;
    pthread_mutex_unlock(&j->qlock);
}
