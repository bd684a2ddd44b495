/*
 * jnl_int.h - internals shared by the journal's source files (not installed).
 *
 * Split by concern, as in Knot's journal:
 *   codec.c       msgpack <-> JSON and record / checkpoint encoding (no LMDB)
 *   journal.c     open/close, LMDB plumbing, map growth, metadata, stats
 *   writer.c      the queue and the group-commit writer thread
 *   read.c        get, bounds, time lookups, iterators, history
 *   state.c       folding, checkpoints, retention
 *   verify.c      chain verification
 *   snapshot.c    consumers' snapshots (opaque blobs bound to a seq's hash)
 */
#ifndef BD_JNL_INT_H
#define BD_JNL_INT_H

#include <ev.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>

#include "journal.h"

#define JNL__TAIL 68u          /* c4 20 <prev_hash> c4 20 <hash> */
#define JNL__REC_FIELDS 15u
#define JNL__CKPT_FIELDS 6u
#define JNL__CKPT_ENTRY_FIELDS 12u
#define JNL__OKEY_MAX 400u     /* object index key prefix is truncated to this */
/* Object index keys start with the seq's epoch (seq >> shift): a batch then inserts into
 * one small, recent region of the B-tree instead of one page per object (which cost
 * more writes than the records themselves); history probes each epoch. A journal records
 * its shift in meta ("object_epoch_shift"); journals made before it was recorded use 12.
 * 10 (a batch of 1024) keeps a commit's region to the pages it creates: with raw LMDB and
 * these keys, the object index added ~0.9 us per event to a 0.8 us put at 12, ~0.55 at 10. */
#define JNL__EPOCH_SHIFT 10
#define JNL__EPOCH_SHIFT_OLD 12
#define JNL__META_KEY_MAX 440u /* longest meta key */
#define JNL__CKPT_MAX ((uint64_t)1 << 31) /* largest checkpoint value */

/* ---- Byte helpers (big-endian, byte by byte) ---- */
static inline void jnl__be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

static inline uint64_t jnl__get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* ---- Growable, capped buffer with a sticky error ---- */
typedef struct jnl__buf {
    uint8_t *p;
    size_t len, cap, max;
    int ret; /* first error (BD_ENOMEM, BD_ETOOBIG); later writes are no-ops */
} jnl__buf_t;

void jnl__buf_init(jnl__buf_t *b, size_t max);
void jnl__buf_deinit(jnl__buf_t *b);
void jnl__buf_put(jnl__buf_t *b, const void *d, size_t n);
/* Make room for n more bytes now (capped at max); errors stick as for put. */
void jnl__buf_reserve(jnl__buf_t *b, size_t n);
/* Transfer the bytes to the caller (malloc'd; NULL when empty) and reset b. */
uint8_t *jnl__buf_take(jnl__buf_t *b, size_t *len);

/* ---- Strict msgpack reader (zero-copy, sticky error) ---- */
typedef struct jnl__rd {
    const uint8_t *start, *p, *end;
    int ret;        /* BD_ECORRUPT / BD_EVERSION / BD_ENOMEM once something failed */
    char why[160];  /* what failed, with the byte offset */
} jnl__rd_t;

void jnl__rd_init(jnl__rd_t *rd, const void *buf, size_t len);
int jnl__rd_fail(jnl__rd_t *rd, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int jnl__rd_array(jnl__rd_t *rd, uint32_t *n);
int jnl__rd_uint(jnl__rd_t *rd, uint64_t *v);
int jnl__rd_int(jnl__rd_t *rd, int64_t *v);
/* A str with valid UTF-8 (and no NUL when nonul); *s points into the buffer. */
int jnl__rd_str(jnl__rd_t *rd, const uint8_t **s, uint32_t *len, bool nonul);
int jnl__rd_hash(jnl__rd_t *rd, const uint8_t **h);
/* One canonical JSON value; built into *out unless out is NULL (validate and skip).
 * A nil is only accepted as JSON null. */
int jnl__rd_json(jnl__rd_t *rd, int depth, json_t **out);

/* ---- Canonical JSON -> msgpack ---- */
void jnl__enc_json(jnl__buf_t *b, const json_t *v);

/* ---- Records ---- */
typedef struct jnl__span {
    const uint8_t *p;
    uint32_t len;
} jnl__span_t;

enum { JNL__S_APIV = 0, JNL__S_KIND, JNL__S_NS, JNL__S_NAME, JNL__S_UID, JNL__S_RV, JNL__S_N };

/* A record parsed in place (pointers into the encoded bytes). */
typedef struct jnl__hdr {
    uint64_t seq, time;
    jnl_source_t source;
    jnl_type_t type;
    jnl__span_t s[JNL__S_N];
    int64_t generation;
    const uint8_t *obj; /* the object's encoding (a single msgpack value, c0 for none) */
    size_t obj_len;
    const uint8_t *prev, *hash;
} jnl__hdr_t;

#define JNL__PARSE_SHALLOW 0x1u /* do not validate the object bytes (trusted fold path) */

/* Parse an encoded record. Returns 0, BD_ECORRUPT or BD_EVERSION with rd->why set. */
int jnl__rec_parse(jnl__rd_t *rd, jnl__hdr_t *h, unsigned flags);

/* A record is prefix (array header, version, seq, time: at most JNL__PREFIX_MAX bytes)
 * then body (source .. object, prev_hash, hash). jnl_append encodes the body before it
 * knows the seq, so the prefix is written separately. */
#define JNL__PREFIX_MAX 20u
size_t jnl__rec_prefix(uint8_t out[JNL__PREFIX_MAX], uint64_t seq, uint64_t time);
/* Validate ev and append its body (hash zeroed, prev_hash from prev or zeros) to b.
 * Returns 0 or BD_EINVAL/BD_ETOOBIG/BD_ENOMEM with err set. */
int jnl__rec_body(jnl__buf_t *b, const jnl_event_t *ev, const uint8_t *prev, bd_err_t *err);
/* Prefix and body: the whole record (hash zeroed). */
int jnl__rec_encode(jnl__buf_t *b, const jnl_event_t *ev, uint64_t seq, uint64_t time,
                    const uint8_t *prev, bd_err_t *err);

/* Build a jnl_record_t from a parsed header (copies strings; decodes the object unless
 * JNL_DECODE_NO_OBJECT). */
int jnl__rec_build(const jnl__hdr_t *h, size_t size, unsigned flags, jnl_record_t **out,
                   bd_err_t *err);

/* SHA-256(prev || body). ctx may be NULL (a temporary context is used). */
int jnl__sha256(EVP_MD_CTX *ctx, const uint8_t *prev, const uint8_t *body, size_t len,
                uint8_t out[JNL_HASH_LEN]);
/* Fill rec's prev_hash with prev and its hash with the hash of the result. */
int jnl__rec_seal(EVP_MD_CTX *ctx, uint8_t *rec, size_t len, const uint8_t prev[JNL_HASH_LEN]);

/* Object index key prefix: lower(kind) 0 ns 0 name 0 [apiVersion 0], truncated to
 * JNL__OKEY_MAX. Returns its length; out must hold JNL__OKEY_MAX bytes.
 * The stored key is be64(seq >> j->epoch_shift) || prefix || be64(seq). */
size_t jnl__okey(uint8_t *out, const uint8_t *kind, size_t kl, const uint8_t *ns, size_t nl,
                 const uint8_t *name, size_t nml, const uint8_t *apiv, size_t al);

/* Checkpoint parsed in place. */
typedef struct jnl__ckpt {
    uint64_t seq, time, count;
    const uint8_t *anchor, *hash;
    jnl__rd_t entries; /* positioned at the first entry */
} jnl__ckpt_t;

int jnl__ckpt_parse(jnl__rd_t *rd, jnl__ckpt_t *c);
/* One entry, parsed in place into a record header (seq, time, source, type of the event
 * that produced the object; prev/hash are NULL). The object is validated. */
int jnl__ckpt_entry(jnl__rd_t *rd, jnl__hdr_t *e);
/* Encode a checkpoint (hash included) from sorted entries. Returns 0 or b->ret. */
int jnl__ckpt_encode(jnl__buf_t *b, uint64_t seq, uint64_t time,
                     const uint8_t anchor[JNL_HASH_LEN], const jnl__hdr_t *const *entries,
                     size_t n);

/* ---- The journal handle ---- */
typedef struct jnl__op jnl__op_t;

struct jnl {
    char *path;
    MDB_env *env;
    MDB_dbi db_events, db_time, db_object, db_meta, db_ckpt;
    jnl_opts_t opts;
    bool rdonly;
    unsigned epoch_shift; /* of the object index's keys (JNL__EPOCH_SHIFT above) */
    uint64_t append_ceiling; /* map size appends may grow to */
    size_t page_size;

    /* Map resizing needs every transaction of this process closed: every txn holds
     * maplock shared, resizing takes it exclusive (writer-preferring, never nested). */
    pthread_rwlock_t maplock;
    /* Serialises checkpoints/retention among themselves. */
    pthread_mutex_t ckpt_lock;

    /* ---- queue, sealer and writer state, under qlock (writer.c) ---- */
    pthread_mutex_t qlock;
    pthread_cond_t seal_cv; /* the sealer waits for work */
    pthread_cond_t work_cv; /* the writer waits for sealed work / the batch window */
    pthread_cond_t done_cv; /* flushers wait for commits */
    pthread_t sealer, writer;
    bool sealer_started, writer_started, stop;
    bool sealer_busy;        /* the sealer holds operations taken from the queue */
    int seal_wait;           /* what the sealer waits for (writer.c) */
    bool sealer_done;        /* the sealer has exited (stop, nothing left) */
    jnl__op_t *uhead, *utail; /* appended, waiting for the sealer */
    size_t ucount;           /* operations in uhead.. */
    jnl__op_t *qhead, *qtail; /* sealed, waiting for the writer */
    size_t qcount;           /* operations in qhead.. */
    uint64_t ubytes;         /* bytes in uhead.. */
    uint64_t seal_bytes;     /* bytes the sealer holds */
    uint64_t qbytes;         /* bytes queued in all stages until committed */
    uint64_t gen;            /* bumped when a failed batch drops the queue */
    uint64_t sealed_ticket;  /* the last operation the sealer handed over */
    uint64_t seal_wanted;    /* the writer waits until the sealer hands this one over */
    unsigned flushers;       /* threads waiting in jnl_flush: no batch window */
    _Atomic size_t size_hint; /* size of a recent record: first allocation in jnl_append */
    pthread_mutex_t pool_lock; /* recycled ops (writer.c) */
    jnl__op_t *pool;
    size_t npool;
    size_t pool_bytes;       /* buffer bytes held by the pool */
    EVP_MD_CTX *md_ctx;      /* hashing on the sealer thread */
    uint8_t chain_hash[JNL_HASH_LEN]; /* hash of the last sealed record */
    uint64_t next_seq;       /* seq for the next append */
    uint64_t last_time;      /* time of the last appended event */
    uint64_t enq_ticket;     /* ops queued so far (monotonic) */
    uint64_t done_ticket;    /* ops committed */
    uint64_t failed_ticket;  /* ops up to this one were dropped by a failure */
    uint64_t committed_seq;
    uint64_t committed_time;
    uint8_t committed_hash[JNL_HASH_LEN];
    int werr;                /* sticky append error (BD_EFULL, BD_EIO) */
    char werr_msg[sizeof(((bd_err_t *)0)->msg)];
    int last_fail;           /* error of the most recent failed batch (for jnl_flush) */
    bool warned_near_limit;
    bool full;

    /* ---- commit reports, under qlock; ev_async on the owner's loop ---- */
    struct ev_loop *loop;
    ev_async async;
    jnl_commit_cb cb;
    void *cb_arg;
    uint64_t rep_seq;        /* committed seq to report */
    bool rep_pending;
    int rep_fail;            /* unreported failure status (0: none) */
    uint64_t rep_fail_seq;   /* committed seq at that failure */
};

/* Translate an LMDB/errno code into BD_E* with a message naming the journal. */
int jnl__mdb_err(const jnl_t *j, int rc, bd_err_t *err, const char *what);

/* Short read transaction: holds maplock shared until jnl__rd_end. Handles
 * MDB_MAP_RESIZED (another process grew the map). */
int jnl__rtxn_begin(jnl_t *j, MDB_txn **txn, bd_err_t *err);
void jnl__rtxn_end(jnl_t *j, MDB_txn *txn);

/* Write transactions (writer thread, checkpoints): maplock shared. */
int jnl__wtxn_begin(jnl_t *j, MDB_txn **txn);
/* Commit (or abort when rc != 0 already); releases maplock; returns the LMDB code. */
int jnl__wtxn_end(jnl_t *j, MDB_txn *txn, int rc);
/* After MDB_MAP_FULL: double the map up to ceiling. Returns 0 (grown, retry) or
 * BD_EFULL (already at ceiling). Takes maplock exclusive; call with no txn open. */
int jnl__grow(jnl_t *j, uint64_t ceiling);
/* Set the map back to the append ceiling (after a checkpoint used the reserve). */
void jnl__shrink(jnl_t *j);
/* Check and log the 90% mark once; called after commits. */
void jnl__check_space(jnl_t *j);

/* Meta helpers inside a txn. */
int jnl__meta_head(jnl_t *j, MDB_txn *txn, uint64_t *seq, uint8_t hash[JNL_HASH_LEN],
                   uint64_t *time);
void jnl__head_value(uint8_t out[48], uint64_t seq, const uint8_t hash[JNL_HASH_LEN],
                     uint64_t time);

/* Writer (writer.c). */
int jnl__writer_start(jnl_t *j, bd_err_t *err);
void jnl__writer_stop(jnl_t *j);
void jnl__pool_free(jnl_t *j);
int jnl__queue_meta(jnl_t *j, const char *key, size_t klen, const void *val, size_t vlen,
                    bd_err_t *err);
/* After a pruning checkpoint: clear a sticky BD_EFULL. */
void jnl__writer_unfull(jnl_t *j);

/* Clock. */
uint64_t jnl__now_ns(void);

/* Latest checkpoint in txn: seq (0: none), time, anchor (NULL-able). LMDB code. */
int jnl__ckpt_latest(jnl_t *j, MDB_txn *txn, uint64_t *seq, uint64_t *time,
                     uint8_t anchor[JNL_HASH_LEN]);
#endif
