/*
 * finalizer.h - the finalizer writer: DNSZones and records carry
 * "bindy.firestoned.io/finalizer", so an object's deletion reaches BIND before the object
 * goes away.
 *
 * Every operator replica feeds fin_observe() every journaled event (the replay included),
 * so each one knows, for every DNSZone and record (the 8 record kinds), whether it carries
 * the finalizer and whether it is being deleted (metadata.deletionTimestamp), kept
 * compactly: a few flags per object, plus the resourceVersion and the other finalizers only
 * while the object needs a write. DELETED forgets the object.
 *
 * fin_flush(), effective only while the fence callback allows (the elected leader):
 *  - adds the finalizer to every live object that lacks it;
 *  - removes it from every object being deleted whose deletion the caller has applied:
 *    the first observed event carrying its deletionTimestamp has seq <= applied_seq (the
 *    operator passes proj_seq() after app_catch_up, when the hidden primary's zone store
 *    no longer has the object's data; the projector treats deletionTimestamp as DELETED).
 * Each write is one JSON patch of metadata.finalizers: a test that the list is still the
 * one observed, then the list with ours added or removed (other writers' finalizers kept
 * in their order). A concurrent edit of the list is never clobbered: the test fails (422)
 * and the write is redone from the newer observation. Edits of anything else (the status
 * writer's, users' spec edits) do not make it fail, as a resourceVersion precondition
 * would.
 *
 * No API call at rest: an object already right costs nothing, and a write that succeeded
 * is not repeated for the same observed resourceVersion (the watch brings it back).
 *
 * Failures: retried with the client's per-object backoff (backoff_key "Kind/ns/name") by a
 * timer on the client's loop, through the fence: 409 conflicts, 429/5xx, timeouts and
 * transport errors. 404 is done (the object is gone; its DELETED follows). Other 4xx
 * refusals (400, 401, 403, 422: a failed test) wait for a newer observation.
 *
 * Threads: everything on the client's loop. Nothing blocks.
 */
#ifndef BD_FINALIZER_H
#define BD_FINALIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "err.h"
#include "journal.h"

#define FIN_NAME "bindy.firestoned.io/finalizer"

typedef struct fin fin_t;

typedef struct fin_opts {
    /* May this replica write now? Called at every flush (e.g. wrapping le_fence_ok).
     * NULL: always. */
    bool (*fence)(void *arg);
    void *fence_arg;
    unsigned max_inflight; /* finalizer writes in flight at most; default 32 */
} fin_opts_t;

void fin_opts_init(fin_opts_t *o);

/*
 * client is borrowed: it must outlive the writer, and fin_free must come before
 * k8s_client_free. opts NULL: defaults (copied). Returns BD_OK, BD_ENOMEM.
 * *out: free with fin_free.
 */
int fin_new(k8s_client_t *client, const fin_opts_t *opts, fin_t **out, bd_err_t *err);
/* Cancel every call in flight (no callback), stop the retry timer and free. NULL: no-op. */
void fin_free(fin_t *f);

/*
 * Record what the API server holds (ev borrowed, nothing kept from it but copies).
 * ADDED/MODIFIED of a DNSZone or record remember its finalizer and deletion state; the
 * first event with a deletionTimestamp remembers ev->seq; DELETED forgets the object
 * (cancelling its write). Other kinds, markers and events without an object are ignored.
 * BD_OK or BD_ENOMEM (the object's state is then unchanged).
 */
int fin_observe(fin_t *f, const jnl_event_t *ev);

/*
 * Write what is due (see above), nothing unless the fence allows. applied_seq: every
 * event with seq <= applied_seq has been applied to the hidden primary (removals wait for
 * it; the highest value given so far is kept for retries). Writes over max_inflight, and
 * retries, are started later by a timer on the client's loop, again through the fence.
 * Returns BD_OK or BD_ENOMEM.
 */
int fin_flush(fin_t *f, uint64_t applied_seq);

typedef struct fin_stats {
    uint64_t adds;     /* finalizers added (patch succeeded) */
    uint64_t removes;  /* finalizers removed (patch succeeded) */
    uint64_t skipped;  /* observations that needed no write (already right) */
    uint64_t errors;   /* patches that failed (404 excluded) */
    uint64_t gone;     /* patches answered 404 */
    uint64_t fenced;   /* flushes refused by the fence */
    unsigned inflight; /* patches in flight */
    size_t pending;    /* objects that need a write (in flight, waiting or blocked) */
    size_t objects;    /* objects observed */
} fin_stats_t;
void fin_stats(const fin_t *f, fin_stats_t *st);

#endif
