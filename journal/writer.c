/*
 * writer.c - the append queue and the group-commit writer thread.
 *
 * jnl_append() runs on the caller's thread (usually the event loop): it encodes the
 * record with its seq, time and place in the hash chain (SHA-256 of ~1 KiB: about a
 * microsecond) and queues it. Only the writer thread touches the disk: it takes up to
 * batch_max queued operations (after waiting at most batch_ms for the batch to fill,
 * unless someone flushes), writes records, index entries and the head in ONE LMDB
 * transaction and commits it (fsync per the sync mode). The fsync therefore never
 * happens on the loop, N events cost one fsync, and hashing the next batch overlaps the
 * fsync of the current one. Results go back to the loop through ev_async and to blocking
 * callers (jnl_flush) through a condition variable.
 *
 * A failed batch (map full at the limit, I/O error) drops every queued operation, since
 * each queued record already carries a seq and a hash that chain on the dropped ones; the
 * chain head goes back to the last committed record, the error is sticky (appends fail
 * fast) and is reported once through the callback.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jnl_int.h"
#include "log.h"

struct jnl__op {
    jnl__op_t *next;
    uint64_t ticket;
    uint64_t seq, time; /* seq 0: a meta put */
    uint64_t enq_mono;
    uint8_t *mem;       /* malloc'd, memcap bytes: holds the record or the meta value */
    size_t memcap;
    uint8_t *val;       /* inside mem */
    size_t vlen;
    size_t klen;
    uint8_t key[JNL__META_KEY_MAX + 8]; /* object index key prefix (events) or meta key */
};

/* Ops and their buffers are recycled: allocated on the appending thread and released on
 * the writer thread, they would otherwise keep malloc trimming and re-faulting the heap.
 * The pool is small and only keeps ordinary-sized buffers. */
#define POOL_MAX 1024
#define POOL_BUF_MAX (16u << 10)

static jnl__op_t *op_get(jnl_t *j)
{
    pthread_mutex_lock(&j->pool_lock);
    jnl__op_t *op = j->pool;
    if (op != NULL) {
        j->pool = op->next;
        j->npool--;
    }
    pthread_mutex_unlock(&j->pool_lock);
    if (op == NULL && (op = calloc(1, sizeof(*op))) == NULL)
        return NULL;
    op->next = NULL;
    op->seq = op->time = 0;
    op->val = NULL;
    op->vlen = op->klen = 0;
    return op;
}

/* Give a list of ops back (to the pool, or to free()). */
static void ops_release(jnl_t *j, jnl__op_t *op)
{
    jnl__op_t *drop = NULL;
    pthread_mutex_lock(&j->pool_lock);
    while (op != NULL) {
        jnl__op_t *next = op->next;
        if (j->npool < POOL_MAX && op->memcap <= POOL_BUF_MAX) {
            op->next = j->pool;
            j->pool = op;
            j->npool++;
        } else {
            op->next = drop;
            drop = op;
        }
        op = next;
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
    while (op != NULL) {
        jnl__op_t *next = op->next;
        free(op->mem);
        free(op);
        op = next;
    }
}

/* Queue op (qlock held). */
static void enqueue(jnl_t *j, jnl__op_t *op)
{
    op->ticket = ++j->enq_ticket;
    op->enq_mono = jnl__mono_ns();
    if (j->qtail != NULL)
        j->qtail->next = op;
    else
        j->qhead = op;
    j->qtail = op;
    j->qcount++;
    j->qbytes += op->vlen + sizeof(*op);
    /* Wake the writer when it waits for work, or when the batch is full. */
    if (j->qcount == 1 || j->qcount >= j->opts.batch_max)
        pthread_cond_signal(&j->work_cv);
}

static int sticky(jnl_t *j, bd_err_t *err)
{
    return bd_err_set(err, j->werr, "%s", j->werr_msg);
}

int jnl_append(jnl_t *j, const jnl_event_t *ev, uint64_t *seq_out, bd_err_t *err)
{
    uint8_t okey[JNL__OKEY_MAX];
    size_t oklen = 0;
    jnl__buf_t b;
    jnl__op_t *op = NULL;
    int ret;

    if (seq_out != NULL)
        *seq_out = 0;
    if (j == NULL || ev == NULL)
        return bd_err_set(err, BD_EINVAL, "jnl_append: NULL argument");
    if (j->rdonly)
        return bd_err_set(err, BD_EINVAL, "journal %s: opened read-only", j->path);
    if (ev->name != NULL && *ev->name != '\0') {
        const char *kind = ev->kind ? ev->kind : "", *ns = ev->ns ? ev->ns : "";
        const char *apiv = ev->api_version ? ev->api_version : "";
        oklen = jnl__okey(okey, (const uint8_t *)kind, strlen(kind), (const uint8_t *)ns,
                          strlen(ns), (const uint8_t *)ev->name, strlen(ev->name),
                          (const uint8_t *)apiv, strlen(apiv));
    }

    /* The expensive part, outside the lock: the body, after room for the prefix. */
    static const uint8_t room[JNL__PREFIX_MAX];
    if ((op = op_get(j)) == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    memcpy(op->key, okey, oklen);
    op->klen = oklen;
    size_t hint = atomic_load_explicit(&j->size_hint, memory_order_relaxed);
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

    /* Seq, time and the place in the hash chain, in queue order. */
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
    if (jnl__rec_seal(j->md_ctx, rec, len, j->chain_hash) != 0) {
        ret = bd_err_set(err, BD_EINTERNAL, "journal %s: SHA-256 failed", j->path);
        goto unlock;
    }
    memcpy(j->chain_hash, rec + len - JNL_HASH_LEN, JNL_HASH_LEN);
    op->val = rec;
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
    if (fail != 0)
        cb(j, fseq, fail, arg);
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

/* Write one batch in one transaction. On MDB_MAP_FULL grow the map and redo it. */
static int commit_batch(jnl_t *j, jnl__op_t *batch, commit_out_t *out, bd_err_t *err)
{
    for (;;) {
        MDB_txn *txn = NULL;
        uint8_t prev[JNL_HASH_LEN];
        uint8_t key[JNL__OKEY_MAX + 16];
        memcpy(prev, j->committed_hash, JNL_HASH_LEN);
        out->seq = j->committed_seq;
        out->time = j->committed_time;
        MDB_cursor *ecur = NULL, *tcur = NULL;
        int rc = jnl__wtxn_begin(j, &txn);
        if (rc != 0)
            return jnl__mdb_err(j, rc, err, "begin commit");
        /* One cursor per appended-to database for the whole batch instead of a fresh
         * cursor per put. */
        rc = mdb_cursor_open(txn, j->db_events, &ecur);
        if (rc == 0)
            rc = mdb_cursor_open(txn, j->db_time, &tcur);
        for (jnl__op_t *op = batch; op != NULL && rc == 0; op = op->next) {
            if (op->seq == 0) {
                rc = put(txn, j->db_meta, op->key, op->klen, op->val, op->vlen, 0);
                continue;
            }
            memcpy(prev, op->val + op->vlen - JNL_HASH_LEN, JNL_HASH_LEN);
            jnl__be64(key, op->seq);
            rc = mdb_cursor_put(ecur, &(MDB_val){8, key}, &(MDB_val){op->vlen, op->val},
                                MDB_APPEND);
            if (rc == MDB_KEYEXIST) {
                mdb_cursor_close(tcur);
                mdb_cursor_close(ecur);
                mdb_txn_abort(txn);
                pthread_rwlock_unlock(&j->maplock);
                return bd_err_set(err, BD_EIO,
                                  "journal %s: seq %llu already exists: another process writes "
                                  "to this journal",
                                  j->path, (unsigned long long)op->seq);
            }
            if (rc != 0)
                break;
            jnl__be64(key, op->time);
            jnl__be64(key + 8, op->seq);
            rc = mdb_cursor_put(tcur, &(MDB_val){16, key}, &(MDB_val){0, ""}, MDB_APPEND);
            if (rc == MDB_KEYEXIST) /* not strictly after the last key: plain insert */
                rc = mdb_cursor_put(tcur, &(MDB_val){16, key}, &(MDB_val){0, ""}, 0);
            if (rc == 0 && op->klen > 0) {
                jnl__be64(key, op->seq >> JNL__EPOCH_SHIFT);
                memcpy(key + 8, op->key, op->klen);
                jnl__be64(key + 8 + op->klen, op->seq);
                rc = put(txn, j->db_object, key, op->klen + 16, "", 0, 0);
            }
            out->seq = op->seq;
            out->time = op->time;
        }
        if (rc == 0 && out->seq != j->committed_seq) {
            uint8_t head[48];
            jnl__head_value(head, out->seq, prev, out->time);
            rc = put(txn, j->db_meta, "head", 4, head, sizeof(head), 0);
        }
        if (tcur != NULL)
            mdb_cursor_close(tcur);
        if (ecur != NULL)
            mdb_cursor_close(ecur);
        rc = jnl__wtxn_end(j, txn, rc);
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
        memcpy(out->hash, prev, JNL_HASH_LEN);
        return BD_OK;
    }
}

static void *writer_main(void *arg)
{
    jnl_t *j = arg;
    bd_err_t err;

    pthread_mutex_lock(&j->qlock);
    for (;;) {
        while (j->qhead == NULL && !j->stop)
            pthread_cond_wait(&j->work_cv, &j->qlock);
        if (j->qhead == NULL)
            break;
        /* The batch window: wait for more, unless full, flushed or stopping. */
        if (j->opts.batch_ms > 0) {
            uint64_t deadline = j->qhead->enq_mono + (uint64_t)j->opts.batch_ms * 1000000u;
            while (!j->stop && j->flushers == 0 && j->qcount < j->opts.batch_max) {
                uint64_t now = jnl__mono_ns();
                if (now >= deadline)
                    break;
                struct timespec ts = {(time_t)(deadline / 1000000000u),
                                      (long)(deadline % 1000000000u)};
                pthread_cond_timedwait(&j->work_cv, &j->qlock, &ts);
            }
        }
        jnl__op_t *batch = j->qhead, *last = batch;
        size_t n = 1;
        uint64_t bytes = last->vlen + sizeof(*last);
        while (n < j->opts.batch_max && last->next != NULL) {
            last = last->next;
            bytes += last->vlen + sizeof(*last);
            n++;
        }
        j->qhead = last->next;
        if (j->qhead == NULL)
            j->qtail = NULL;
        last->next = NULL;
        j->qcount -= n;
        j->qbytes -= bytes;
        pthread_mutex_unlock(&j->qlock);

        commit_out_t out;
        bd_err_clear(&err);
        int rc = commit_batch(j, batch, &out, &err);

        jnl__op_t *dropped = NULL;
        pthread_mutex_lock(&j->qlock);
        if (rc == 0) {
            j->done_ticket = last->ticket;
            j->committed_seq = out.seq;
            j->committed_time = out.time;
            memcpy(j->committed_hash, out.hash, JNL_HASH_LEN);
            j->rep_seq = out.seq;
            j->rep_pending = true;
        } else {
            /* Everything queued chains on the failed records: drop it all. */
            dropped = j->qhead;
            j->qhead = j->qtail = NULL;
            j->qcount = 0;
            j->qbytes = 0;
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

        if (rc != 0)
            bd_error("%s", err.msg);
        ops_release(j, batch);
        ops_release(j, dropped);
        jnl__check_space(j);
        pthread_mutex_lock(&j->qlock);
    }
    pthread_mutex_unlock(&j->qlock);
    return NULL;
}

int jnl__writer_start(jnl_t *j, bd_err_t *err)
{
    int rc = pthread_create(&j->writer, NULL, writer_main, j);
    if (rc != 0)
        return bd_err_set(err, BD_EIO, "journal %s: cannot start the writer thread: %s", j->path,
                          strerror(rc));
    pthread_setname_np(j->writer, "jnl-writer");
    j->writer_started = true;
    return BD_OK;
}

void jnl__writer_stop(jnl_t *j)
{
    if (!j->writer_started)
        return;
    pthread_mutex_lock(&j->qlock);
    j->stop = true;
    pthread_cond_signal(&j->work_cv);
    pthread_mutex_unlock(&j->qlock);
    pthread_join(j->writer, NULL);
    j->writer_started = false;
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
