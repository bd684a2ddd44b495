/*
 * journal.h - bindy's event journal: every change the operator saw, in order, in LMDB.
 *
 * The journal is the operator's source of truth. Each event (an object ADDED, MODIFIED or
 * DELETED, or a marker such as RELIST_BEGIN) becomes one record with a sequence number
 * (1, 2, 3, ...), a time and a hash chained to the previous record, so any tool can prove
 * that nothing was altered, dropped or reordered. The byte layout is specified in
 * schema/journal-format.md; this header is the C contract.
 *
 * A journal is a directory holding an LMDB environment (data.mdb, lock.mdb) with these
 * databases: "events" (seq -> record), "time" (time, seq -> ""), "object" (kind, namespace,
 * name, apiVersion, seq -> ""), "meta" (format, id, head, resume points, watermarks,
 * snapshots) and
 * "checkpoints" (seq -> all live resources at that seq).
 *
 * Threads. A writable journal owns two threads. jnl_append() encodes the event, assigns
 * its seq and queues it; it never waits for the disk. A sealer thread chains the queued
 * records (prev_hash, SHA-256) in seq order; the writer thread commits sealed events in
 * batches ("group commit": a batch closes after batch_max events or batch_ms
 * milliseconds, whichever comes first, or at once when someone flushes) and reports
 * "committed up to seq X" to a libev loop through ev_async (jnl_set_commit_cb). Tools and
 * tests that want to wait use jnl_flush() or jnl_append_sync(), which block.
 * Reads (jnl_get, iterators, history, state, verify, stats) may be called from any thread;
 * each call opens and closes its own short LMDB read transaction, so a reader never pins
 * old pages between calls. Readers keep a seq as their resume point.
 * Functions marked "blocks" wait for disk I/O or the writer: never call them on a loop
 * thread that must stay responsive.
 *
 * Errors. Every function returns 0 or a negative BD_E* code (err.h). Functions taking a
 * bd_err_t fill it with a message naming the journal path and, for bad records, the seq.
 * Out-parameters are reset first and written only on success.
 * Common codes: BD_ENOTFOUND (no journal / no such seq), BD_EFOREIGN (not a bindy journal),
 * BD_EVERSION (another format version), BD_ECORRUPT (record does not decode or chain),
 * BD_EFULL (size limit reached), BD_EIO (file system or LMDB error), BD_ENOMEM, BD_EINVAL.
 */
#ifndef BD_JOURNAL_H
#define BD_JOURNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct ev_loop;

/* On-disk format version written in the meta database and at the start of each record. */
#define JNL_FORMAT_VERSION 1
#define JNL_HASH_LEN 32 /* SHA-256 */
#define JNL_ID_LEN 16
/* Largest encoded record; an event over it is refused with BD_ETOOBIG. */
#define JNL_RECORD_MAX (16u << 20)
/* Deepest JSON nesting an object may have (deeper is BD_ETOOBIG on append). */
#define JNL_MAX_DEPTH 128
/* "The last event" wherever a seq is expected (jnl_state_at, jnl_checkpoint). */
#define JNL_SEQ_LAST UINT64_MAX

typedef struct jnl jnl_t;
typedef struct jnl_iter jnl_iter_t;
typedef struct jnl_state jnl_state_t;

typedef enum {
    JNL_SRC_KUBERNETES = 0, /* "kubernetes": the API server's list+watch */
    JNL_SRC_MANIFESTS,      /* "manifests": a manifest directory (local mode, import) */
    JNL_SRC_RESTORE,        /* "restore": written by a point-in-time restore */
} jnl_source_t;

typedef enum {
    JNL_ADDED = 0,     /* "ADDED": object is the new object */
    JNL_MODIFIED,      /* "MODIFIED": object is the new version */
    JNL_DELETED,       /* "DELETED": object is the last known version (may be NULL) */
    JNL_RELIST_BEGIN,  /* "RELIST_BEGIN": a source starts a full list (watch restarted) */
    JNL_RELIST_END,    /* "RELIST_END": the list is complete */
} jnl_type_t;

/* Wire names ("kubernetes", "ADDED", ...); "?" for a value out of range. */
const char *jnl_source_name(jnl_source_t s);
const char *jnl_type_name(jnl_type_t t);
/* Parse a wire name (exact, case-sensitive for sources, case-insensitive for types).
 * Returns 0 or BD_EINVAL. */
int jnl_source_parse(const char *s, jnl_source_t *out);
int jnl_type_parse(const char *s, jnl_type_t *out);

/*
 * One event. As input to jnl_append every pointer is borrowed for the duration of the
 * call (NULL strings are stored as ""); seq is ignored and time_ns 0 means "now".
 * As part of a jnl_record_t or jnl_state_t the strings and object belong to that owner.
 * Markers (RELIST_*) usually carry only api_version/kind (which resource was relisted).
 * Folding (jnl_state_*) ignores markers: a source that relists emits DELETED events for
 * objects that disappeared while it was not watching.
 */
typedef struct jnl_event {
    uint64_t seq;
    uint64_t time_ns; /* ns since the Unix epoch (UTC) */
    jnl_source_t source;
    jnl_type_t type;
    const char *api_version, *kind, *ns, *name; /* ns is "" for cluster-scoped objects */
    const char *uid, *resource_version;
    int64_t generation;
    json_t *object; /* the whole object; required for ADDED and MODIFIED */
} jnl_event_t;

/* The event of type from source that carries obj: apiVersion, kind and metadata's
 * namespace, name, uid, resourceVersion and generation are read from obj (borrowed: the
 * strings point into obj, which must outlive ev); seq and time_ns are 0. */
jnl_event_t jnl_event_of(jnl_source_t source, jnl_type_t type, json_t *obj);

/* A decoded record: the event plus its chain hashes. Free with jnl_record_free. */
typedef struct jnl_record {
    jnl_event_t ev; /* strings and object (one reference) owned by the record */
    uint8_t prev_hash[JNL_HASH_LEN];
    uint8_t hash[JNL_HASH_LEN]; /* as stored; jnl_verify recomputes and compares */
    size_t size;                /* encoded bytes */
} jnl_record_t;

void jnl_record_free(jnl_record_t *rec);

/* ---- Opening ------------------------------------------------------------------------ */

/*
 * Sync modes: what a reported commit ("committed up to seq X") guarantees.
 * Every mode survives a crash of the writing process (kill -9, abort) with no loss of
 * reported events and never leaves a corrupt journal: LMDB commits are atomic.
 * JNL_SYNC_DURABLE     (default) data and meta pages are flushed (fdatasync) before a
 *                      commit is reported: reported events survive power loss / OS crash.
 * JNL_SYNC_NOMETASYNC  data pages are flushed, the meta page is not (MDB_NOMETASYNC):
 *                      after an OS crash the last reported batch may be missing; the
 *                      journal stays consistent (a shorter, still verifying prefix).
 * JNL_SYNC_NOSYNC      nothing is flushed (MDB_NOSYNC): after an OS crash the batches of
 *                      the last seconds may be missing; consistent on file systems that
 *                      keep write order (ext4 data=ordered, xfs). jnl_close() syncs.
 */
typedef enum { JNL_SYNC_DURABLE = 0, JNL_SYNC_NOMETASYNC, JNL_SYNC_NOSYNC } jnl_sync_t;

const char *jnl_sync_name(jnl_sync_t s); /* "durable", "nometasync", "nosync" */
int jnl_sync_parse(const char *s, jnl_sync_t *out);

#define JNL_OPEN_RDONLY 0x1u /* read-only (MDB_RDONLY): works while another process writes */
#define JNL_OPEN_CREATE 0x2u /* create the journal (and the directory) when missing */

typedef struct jnl_opts {
    unsigned flags;          /* JNL_OPEN_* */
    jnl_sync_t sync;         /* default JNL_SYNC_DURABLE */
    uint64_t map_size;       /* initial LMDB map size; default 16 MiB */
    uint64_t map_limit;      /* the map doubles on demand up to this; default 1 GiB.
                              * Appends may use 15/16 of it; the rest is kept so that a
                              * full journal can still be opened, checkpointed and pruned. */
    unsigned batch_max;      /* N: events per commit at most; default 1024 */
    unsigned batch_ms;       /* T: a batch waits at most this long; default 2, max 10;
                              * 0 commits whatever is queued at once */
    uint64_t queue_max_bytes; /* appends over this many queued bytes get BD_EBUSY;
                               * default 64 MiB */
} jnl_opts_t;

/* Fill opts with the defaults above. */
void jnl_opts_init(jnl_opts_t *opts);

/*
 * Open the journal in directory dir (opts NULL = defaults: writable, no create).
 * Writable: starts the writer thread. Blocks (LMDB open, and creation when asked).
 * Open a journal once per process (an LMDB rule) and from one writing process at a time;
 * any number of processes may open it read-only meanwhile.
 * Returns 0 and a new handle in *out, or:
 *   BD_ENOTFOUND  dir, or the journal in it, does not exist, or its creation was killed before
 *                 it completed (JNL_OPEN_CREATE not set; with it, the journal is created)
 *   BD_EFOREIGN   dir holds something that is not a bindy journal (or is not a directory)
 *   BD_EVERSION   the journal has another format version
 *   BD_EIO        permission, lock or file system problem (err says which)
 *   BD_EINVAL, BD_ENOMEM
 */
int jnl_open(const char *dir, const jnl_opts_t *opts, jnl_t **out, bd_err_t *err);

/*
 * Commit everything queued, stop the writer, sync (nosync modes) and close.
 * Call it on the thread that runs the commit callback's loop (it stops the ev_async).
 * After it returns the commit callback never fires. Blocks. Accepts NULL.
 */
void jnl_close(jnl_t *j);

/* The directory the journal was opened from (borrowed). */
const char *jnl_path(const jnl_t *j);

/* The journal's random id (fixed at creation). Returns 0 or BD_E*. */
int jnl_id(jnl_t *j, uint8_t id[JNL_ID_LEN], bd_err_t *err);

/* ---- Appending (writable journals) --------------------------------------------------- */

/*
 * Commit reports. status 0: every event up to and including `committed` is committed
 * (with the guarantee of the sync mode). status < 0: a batch failed (BD_EFULL, BD_EIO);
 * `committed` is the last committed seq and every event appended before the failure with
 * a higher seq was dropped; later appends reuse those seqs. Reports coalesce (a report
 * may cover many batches; a failure is reported before the successes that follow it).
 * Called on the loop thread. Do not call jnl_close() from inside the callback.
 */
typedef void (*jnl_commit_cb)(jnl_t *j, uint64_t committed, int status, void *arg);

/* Register the callback on loop (call on the loop's thread, once, before appending from
 * that loop). Returns 0, BD_EINVAL (read-only journal or already registered). */
int jnl_set_commit_cb(jnl_t *j, struct ev_loop *loop, jnl_commit_cb cb, void *arg);

/*
 * Queue one event; never waits for the disk (it encodes the record on the calling thread,
 * a microsecond or two for a 1 KiB object; the journal's sealer thread hashes it). The
 * object is converted now, so the caller may change it afterwards. *seq_out (may be NULL)
 * gets the seq the event will have; it is final once a commit report covers it. Times are made
 * non-decreasing: an event never gets a time before the previous event's. Thread-safe.
 * Returns 0, or:
 *   BD_EINVAL   read-only journal; bad type/source; ADDED/MODIFIED without an object
 *   BD_ETOOBIG  the record would exceed JNL_RECORD_MAX or nesting JNL_MAX_DEPTH
 *   BD_EBUSY    the queue holds more than queue_max_bytes (the disk is behind); retry
 *               after the next commit report
 *   BD_EFULL    the journal reached its size limit (sticky until a pruning checkpoint)
 *   BD_EIO      an earlier commit failed (sticky until jnl_close)
 */
int jnl_append(jnl_t *j, const jnl_event_t *ev, uint64_t *seq_out, bd_err_t *err);

/* Wait until everything queued so far is committed. Blocks.
 * Returns 0 or the error that made a batch fail (BD_EFULL, BD_EIO). */
int jnl_flush(jnl_t *j, bd_err_t *err);

/* jnl_append followed by jnl_flush. Blocks. */
int jnl_append_sync(jnl_t *j, const jnl_event_t *ev, uint64_t *seq_out, bd_err_t *err);

/* Highest committed seq as this process knows it (0 when empty). Never blocks. */
uint64_t jnl_committed_seq(jnl_t *j);

/* Flush LMDB buffers to disk now (useful in the nosync modes). Blocks. */
int jnl_sync(jnl_t *j, bd_err_t *err);

/* ---- Metadata -------------------------------------------------------------------------- */

/*
 * Resume points: the resourceVersion a list+watch of `resource` (any string key up to 400
 * bytes, e.g. "dnszones.bindy.firestoned.io/v1beta1") resumes from. The set is queued
 * and committed with the events appended before it (never waits for the disk), so a
 * resume point is never ahead of the events it covers. get sees committed values.
 * get returns 0 and a malloc'd string in *rv_out (caller frees), or BD_ENOTFOUND.
 */
int jnl_resume_set(jnl_t *j, const char *resource, const char *rv, bd_err_t *err);
int jnl_resume_get(jnl_t *j, const char *resource, char **rv_out, bd_err_t *err);

/* Applied watermarks: the last seq a target (e.g. "bind:primary-0") has applied. Queued
 * like resume points. get returns 0 (and 0 in *seq_out if never set). */
int jnl_watermark_set(jnl_t *j, const char *target, uint64_t seq, bd_err_t *err);
int jnl_watermark_get(jnl_t *j, const char *target, uint64_t *seq_out, bd_err_t *err);

/* ---- Reading --------------------------------------------------------------------------- */

#define JNL_DECODE_NO_OBJECT 0x1u /* leave ev.object NULL (faster listings) */

/* Decode the record at seq. Returns 0 and a new record, BD_ENOTFOUND (no such seq, or
 * pruned), BD_ECORRUPT / BD_EVERSION (err names the seq). */
int jnl_get(jnl_t *j, uint64_t seq, unsigned flags, jnl_record_t **out, bd_err_t *err);

/* first: lowest seq still stored (0 when none is: empty, or everything folded into a
 * checkpoint); last: highest committed seq, stored or folded (0 only when the journal never
 * had an event). After pruning, first is checkpoint + 1. Either pointer may be NULL. */
int jnl_bounds(jnl_t *j, uint64_t *first, uint64_t *last, bd_err_t *err);

/*
 * The last seq whose time is <= time_ns: the point-in-time for "state at time".
 * Returns 0 (0 in *seq_out when time_ns is before the first event of an unpruned
 * journal), BD_ENOTFOUND when time_ns is before the oldest checkpoint of a pruned one.
 */
int jnl_seq_at_time(jnl_t *j, uint64_t time_ns, uint64_t *seq_out, bd_err_t *err);

/*
 * Iterators read forward from a seq in chunks, each chunk in its own short read
 * transaction; an iterator holds no transaction between calls and sees events committed
 * after it was created (tail -f). from 0 or below the first stored seq starts at first.
 */
int jnl_iter_new(jnl_t *j, uint64_t from, unsigned flags, jnl_iter_t **out, bd_err_t *err);
/* Next record (owned by the caller). Returns 0, BD_ENOTFOUND at the current end (call
 * again later for new events), BD_ECORRUPT (err names the seq; the iterator skips it). */
int jnl_iter_next(jnl_iter_t *it, jnl_record_t **out, bd_err_t *err);
/* The seq the next call will try. */
uint64_t jnl_iter_pos(const jnl_iter_t *it);
void jnl_iter_free(jnl_iter_t *it);

/*
 * History of one object: the seqs of every stored event about (kind, ns, name), and of
 * one apiVersion when api_version is not NULL, ascending. kind matches ASCII
 * case-insensitively ("dnszone" finds "DNSZone"). Returns 0 and a malloc'd array in
 * *seqs (caller frees; NULL when *n is 0), or BD_E*.
 */
int jnl_history(jnl_t *j, const char *api_version, const char *kind, const char *ns,
                const char *name, uint64_t **seqs, size_t *n, bd_err_t *err);

/* ---- State folding ----------------------------------------------------------------------- */

/*
 * The resource set at seq (JNL_SEQ_LAST: the latest): for every (apiVersion, kind,
 * namespace, name) the object of its last ADDED/MODIFIED event at or before seq, unless a
 * DELETED event came after it. Starts from the latest checkpoint <= seq. Entries are
 * sorted by apiVersion, kind, namespace, name (bytewise). One read transaction.
 * Returns 0 and a new state, BD_ENOTFOUND when seq is after the last event or before the
 * oldest retained point, BD_ECORRUPT (err names the seq).
 */
int jnl_state_at(jnl_t *j, uint64_t seq, jnl_state_t **out, bd_err_t *err);
/* The same at the point in time time_ns (see jnl_seq_at_time). */
int jnl_state_at_time(jnl_t *j, uint64_t time_ns, jnl_state_t **out, bd_err_t *err);

uint64_t jnl_state_seq(const jnl_state_t *st);   /* the seq the state is at */
size_t jnl_state_count(const jnl_state_t *st);
/* Entry i (borrowed, valid until jnl_state_free): ev.seq/time_ns/type are those of the
 * event that produced the object. NULL when i is out of range. */
const jnl_event_t *jnl_state_get(const jnl_state_t *st, size_t i);
/* Look up one resource (binary search); NULL when absent. */
const jnl_event_t *jnl_state_find(const jnl_state_t *st, const char *api_version,
                                  const char *kind, const char *ns, const char *name);
void jnl_state_free(jnl_state_t *st);

/* ---- Checkpoints and retention ------------------------------------------------------------ */

#define JNL_CKPT_PRUNE 0x1u /* delete events (and older checkpoints) <= the checkpoint */

/*
 * Fold the state at seq into a checkpoint (all live resources at seq plus the anchor
 * hash = hash of event seq). With JNL_CKPT_PRUNE, events <= seq and older checkpoints are
 * deleted afterwards; a pruning checkpoint also clears a sticky BD_EFULL. Works on a
 * writable journal while the writer runs. Blocks. Returns 0, BD_ENOTFOUND (seq not
 * stored), BD_EFULL (no room even for the checkpoint), BD_E*.
 */
int jnl_checkpoint(jnl_t *j, uint64_t seq, unsigned flags, bd_err_t *err);

typedef struct jnl_retention {
    uint64_t max_age_ns; /* fold events older than this (0: no age limit) */
    uint64_t max_events; /* keep at most this many events (0: no count limit) */
    uint64_t max_bytes;  /* keep at most this many record bytes (0: no size limit) */
} jnl_retention_t;

/*
 * Apply a retention policy: the newest seq that some limit wants gone becomes a pruning
 * checkpoint. *ckpt_seq (may be NULL) gets that seq, or 0 when nothing had to go.
 * Blocks. Returns 0 or BD_E*.
 */
int jnl_retain(jnl_t *j, const jnl_retention_t *pol, uint64_t *ckpt_seq, bd_err_t *err);

/* The latest checkpoint: its seq (0 when there is none), time and anchor hash (either
 * out-pointer may be NULL). */
int jnl_checkpoint_latest(jnl_t *j, uint64_t *seq, uint64_t *time_ns,
                          uint8_t anchor[JNL_HASH_LEN], bd_err_t *err);

/* ---- Snapshots (a consumer's own state at a seq) ------------------------------------------ */

/* The snapshot the applier keeps of the projector's state (src/applier). */
#define JNL_SNAPSHOT_PROJECTOR "projector"

/*
 * Store buf (len bytes, opaque to the journal; copied) as snapshot `name` (an ASCII key of
 * up to 400 bytes) taken at seq, replacing the previous one of that name. The value also
 * holds the chain hash of event seq (read in the same transaction) and a SHA-256 of
 * itself, so jnl_snapshot_get can refuse a snapshot that is altered or belongs to another
 * journal. Snapshots live in meta; pruning keeps them. Works on a writable journal while
 * the writer runs (its own write transaction; it waits for the writer's commit in
 * progress). Blocks (an fsync in the durable mode): call it off the loop.
 * Returns 0, BD_ENOTFOUND (event seq is neither stored nor a checkpoint), BD_EFULL (no
 * room below the append ceiling), BD_ETOOBIG (over 1 GiB), BD_EINVAL (read-only journal,
 * bad name), BD_EIO, BD_ENOMEM.
 */
int jnl_snapshot_put(jnl_t *j, const char *name, uint64_t seq, const void *buf, size_t len,
                     bd_err_t *err);

/*
 * The snapshot `name`: its seq and a malloc'd copy of its bytes in *buf (caller frees;
 * *len bytes). Verified first: its checksum, that seq is not after the journal's last
 * event and, when event seq (or a checkpoint at seq) is still stored, that the chain
 * hash recorded with it is that event's. A snapshot older than a pruning checkpoint can
 * no longer be compared and is returned as it is (the caller finds it too old to use).
 * Returns 0, BD_ENOTFOUND (none), BD_ECORRUPT (altered, or from another journal: err
 * names the seq), BD_EVERSION, BD_EIO, BD_ENOMEM.
 */
int jnl_snapshot_get(jnl_t *j, const char *name, uint64_t *seq, void **buf, size_t *len,
                     bd_err_t *err);

/* The seq and byte size of snapshot `name` without reading or verifying it (statistics).
 * Returns 0, BD_ENOTFOUND, BD_ECORRUPT/BD_EVERSION (unreadable header), BD_E*. */
int jnl_snapshot_stat(jnl_t *j, const char *name, uint64_t *seq, size_t *len, bd_err_t *err);

/* ---- Verification and statistics ----------------------------------------------------------- */

typedef struct jnl_verify_report {
    uint64_t first, last;  /* stored seqs verified */
    uint64_t events;       /* records decoded and hashed */
    uint64_t anchor_seq;   /* 0: chain starts at genesis; else the checkpoint it starts at */
    uint64_t checkpoints;  /* checkpoints decoded and checked */
    uint64_t bad_seq;      /* first bad seq on BD_ECORRUPT (0 when the problem is not one
                            * event, e.g. a bad checkpoint or head) */
} jnl_verify_report_t;

/*
 * Walk the whole chain: decode every record (strictly: canonical msgpack, valid UTF-8,
 * sorted keys), recompute every hash, check seqs are contiguous, each prev_hash equals the
 * previous hash (or the checkpoint's anchor), checkpoint anchors and hashes, and that the
 * head stored in meta is the last event. Short read transactions (one per chunk).
 * Returns 0, BD_ECORRUPT (err names the first bad seq; rep->bad_seq has it), BD_EVERSION,
 * BD_E*. rep may be NULL.
 */
int jnl_verify(jnl_t *j, jnl_verify_report_t *rep, bd_err_t *err);

typedef struct jnl_stats {
    uint64_t events;          /* stored events */
    uint64_t first_seq, last_seq;
    uint64_t first_time_ns, last_time_ns; /* of first/last stored events (0 when none) */
    uint64_t checkpoint_seq;  /* latest checkpoint (0: none) */
    uint64_t checkpoints;
    uint64_t used_bytes;      /* pages in use (high-water mark minus free pages) */
    uint64_t file_bytes;      /* high-water mark of the data file */
    uint64_t map_size;        /* current LMDB map size */
    uint64_t map_limit;       /* configured limit (read-only: the writer's, as it recorded
                               * it in meta when it opened the journal) */
    uint64_t page_size;
    bool near_limit;          /* used_bytes >= 90% of map_limit */
    bool full;                /* appends are being refused with BD_EFULL */
    jnl_sync_t sync;
    bool rdonly;
} jnl_stats_t;

int jnl_stats(jnl_t *j, jnl_stats_t *st, bd_err_t *err);

/* ---- Records without a journal (tools, fuzzing, benchmarks) --------------------------------- */

/*
 * Encode ev as the record with this seq, time and prev_hash (NULL = 32 zero bytes, the
 * genesis value), hash included. Returns 0 and a malloc'd buffer (caller frees), or
 * BD_EINVAL / BD_ETOOBIG / BD_ENOMEM.
 */
int jnl_record_encode(const jnl_event_t *ev, uint64_t seq, uint64_t time_ns,
                      const uint8_t prev_hash[JNL_HASH_LEN], uint8_t **buf, size_t *len,
                      bd_err_t *err);

/*
 * Decode one record strictly (see jnl_verify). Does not check the hash: compare
 * rec->hash with jnl_record_hash(). Returns 0 and a new record, BD_ECORRUPT,
 * BD_EVERSION, BD_ENOMEM. Safe on any input.
 */
int jnl_record_decode(const void *buf, size_t len, unsigned flags, jnl_record_t **out,
                      bd_err_t *err);

/* SHA-256(prev_hash || buf[0 .. len-34]) of an encoded record, i.e. the hash it should
 * carry. Returns 0 or BD_ECORRUPT when buf is too short to be a record. */
int jnl_record_hash(const void *buf, size_t len, uint8_t out[JNL_HASH_LEN]);

#endif
