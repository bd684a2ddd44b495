/*
 * status.h - the status writer: the projector's verdicts -> each object's .status
 * subresource and Kubernetes Events, with no API call at rest.
 *
 * Every operator replica feeds kst_observe() every journaled event, so each one knows the
 * status the API server holds for every bindy object (kept compactly: a hash of the
 * managed part of .status, the generation, the uid and the conditions' status, reason and
 * lastTransitionTime). After each applied event the caller marks what the projector says
 * may have changed (kst_mark, or kst_mark_changes with the proj_changes_t). kst_flush(),
 * effective only while the fence callback allows (the elected leader), computes the
 * desired status of every marked object from the projector and sends a JSON merge patch
 * to its status subresource only when it differs from the observed one.
 *
 * Desired status, every kind: observedGeneration and three conditions (type, status,
 * reason, message, lastTransitionTime, observedGeneration):
 *   Ready        the projector's verdict (proj_status): True/False, its reason and message
 *                (Ready, InvalidSpec, DuplicateZone, CnameConflict, RecordConflict, ...)
 *                A Bind9Instance the instance_problem hook finds a problem with: False
 *                with the hook's reason and message.
 *   Progressing  False/Reconciled; a Bind9Instance whose readyReplicas (from the
 *                ready_replicas hook) is below its replicas: True/RollingOut
 *   Degraded     True with the Ready reason when not Ready, else False/AsExpected
 * plus DNSZone recordCount, serial and instances; records zone, fqdn and serial; Bind9Instance
 * role, replicas and readyReplicas (when the hook knows it). observedGeneration is the
 * generation the projector evaluated (the latest for InvalidSpec, else the last valid
 * one). lastTransitionTime is kept from the observed condition when its status did not
 * change, else the wall clock now (the only wall-clock read). The conditions array is
 * written whole (merge patch), so conditions of other writers are replaced.
 *
 * Events (core v1, involvedObject with uid): one when an object's Ready condition changes
 * (status or reason), after the status write that records the change succeeded; type
 * Normal when Ready, else Warning; reason the projector's. The same event is never sent
 * twice in a row for an object. A new leader whose statuses are already right sends none.
 *
 * Failures: a failed write is retried with the client's per-object backoff (backoff_key
 * "Kind/ns/name"); 404 (object gone) and 4xx refusals are not retried. Events are best
 * effort (no retry). Zone marks caused by a zone's changes (through kst_mark_changes)
 * wait zone_delay_ms, so a burst of record additions costs one zone write.
 *
 * A status that newly reports a failure (Ready False, or another reason) is written
 * fail_delay_ms after it is first due, re-evaluated then: objects created together reach
 * the journal through separate watches, so a record can be projected before the DNSZone
 * that selects it, and the transient failure would cost a write, a Warning and a write
 * to undo it.
 *
 * Serials: status.serial is written with an object's status, never alone (except a
 * takeover floor): a record's carries the serial of the zone version that publishes it,
 * a DNSZone's the serial when its status last changed. So a record edit costs one write,
 * and the leader's serials still reach every replica's journal (the projector's floor).
 *
 * Coupling: records' zone/fqdn and DNSZone recordCount are read from the projector's
 * status message ("published as FQDN in zone Z", "... with N records") until the
 * projector exposes them; a message without them leaves the fields out.
 *
 * Threads: everything on the client's loop. Nothing blocks.
 */
#ifndef BD_STATUS_H
#define BD_STATUS_H

#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "err.h"
#include "journal.h"
#include "projector.h"

typedef struct kst kst_t;

typedef struct kst_opts {
    /* May this replica write now? Called at every flush (e.g. wrapping le_fence_ok).
     * NULL: always. */
    bool (*fence)(void *arg);
    void *fence_arg;
    /* Ready replicas of a Bind9Instance, or -1 when unknown. NULL: unknown. */
    int32_t (*ready_replicas)(void *arg, const char *ns, const char *name);
    void *ready_replicas_arg;
    /* Why a Bind9Instance the projector finds valid cannot run now (e.g. wla_problem: the
     * Secret of its spec.rndcKey.secretRef is missing), or NULL; *reason gets the Ready
     * reason. Both borrowed for the call. Mark the instance when the answer changes. NULL:
     * never. */
    const char *(*instance_problem)(void *arg, const char *ns, const char *name, const char **reason);
    void *instance_problem_arg;
    const char *component;  /* Event source.component; default "bindy" (copied) */
    const char *instance;   /* Event reportingInstance (pod name); default "" (copied) */
    unsigned max_inflight;  /* status writes in flight at most; default 64 */
    unsigned zone_delay_ms; /* delay of zone writes caused by the zone's changes; default 1000 */
    unsigned fail_delay_ms; /* delay of a status that newly reports a failure; default 1000, 0: none */
} kst_opts_t;

void kst_opts_init(kst_opts_t *o);

/*
 * client and proj are borrowed: both must outlive the writer, and kst_free must come
 * before k8s_client_free. proj is only read, at flush time. opts NULL: defaults.
 * Returns BD_OK, BD_ENOMEM, BD_EINVAL. *out: free with kst_free.
 */
int kst_new(k8s_client_t *client, const proj_t *proj, const kst_opts_t *opts, kst_t **out,
            bd_err_t *err);
/* Cancel every call in flight (no callback) and free. NULL is a no-op. */
void kst_free(kst_t *k);

/* Record the status the API server holds (ev borrowed). ADDED/MODIFIED of bindy kinds
 * remember it; DELETED forgets the object (cancelling its write); others are ignored.
 * BD_OK or BD_ENOMEM. */
int kst_observe(kst_t *k, const jnl_event_t *ev);

/* The status of key ("Kind/namespace/name") may have changed: re-evaluate it at the next
 * flush. BD_OK, BD_EINVAL (malformed key or not a bindy kind), BD_ENOMEM. */
int kst_mark(kst_t *k, const char *key);
/* After the projector applied ev (may be NULL) with changes ch (may be NULL): mark ev's
 * object (its observedGeneration may be due) and ch->statuses now, and the DNSZones of
 * ch->zones (serial, recordCount) after zone_delay_ms. Marking costs no API call when the
 * status is already right. BD_OK or BD_ENOMEM. */
int kst_mark_changes(kst_t *k, const jnl_event_t *ev, const proj_changes_t *ch);
/* Mark every observed object (a new leader: only what differs is written). */
int kst_mark_all(kst_t *k);
/*
 * Continuity at takeover: servers publish zone at serial, above the projection's (a new
 * leader that journaled fewer versions than its predecessor). The zone's DNSZones get at
 * least that serial in status.serial at the next flush; every replica journals it and its
 * projector takes it as a floor, so the next change goes above what servers hold. The
 * floor is dropped once the projection reaches it. BD_OK, BD_ENOMEM.
 */
int kst_serial_floor(kst_t *k, const char *zone, uint32_t serial);

/*
 * Write what is due: nothing unless the fence allows (marks are kept for later). Writes
 * that must wait (backoff retry, zone delay, in-flight cap) are flushed later by a timer
 * on the client's loop, again through the fence. Returns BD_OK or BD_ENOMEM.
 */
int kst_flush(kst_t *k);

typedef struct kst_stats {
    uint64_t writes;     /* status patches that succeeded */
    uint64_t skipped;    /* marked objects whose status was already right */
    uint64_t errors;     /* status patches that failed (404 excluded) */
    uint64_t gone;       /* status patches answered 404 */
    uint64_t events;     /* Events created */
    uint64_t event_errors;
    uint64_t fenced;     /* flushes refused by the fence */
    unsigned inflight;   /* status patches in flight */
    size_t pending;      /* objects marked and not yet written */
    size_t objects;      /* objects observed */
} kst_stats_t;
void kst_stats(const kst_t *k, kst_stats_t *st);

#endif
