/*
 * readiness.h - the readiness gate of BIND pods: a pod joins its Service only once it
 * publishes the current serial of every zone it serves (firestoned/bindy issue 486: a
 * half-filled server answering clients).
 *
 * The rendered pod template (src/workload) carries readinessGates
 * [{conditionType: WL_READINESS_GATE}]; Kubernetes counts a pod Ready only when that
 * condition is True, and only bindy sets it. This module, on the elected leader only:
 *
 * Discovery. It lists and watches EndpointSlices (discovery.k8s.io/v1, all namespaces,
 * label selector opts.label_selector: the Service's labels, which the EndpointSlice
 * controller copies onto its slices). A slice belongs to the instance ns/S where S is
 * its label kubernetes.io/service-name (the instance's Service, named as wl_name gives
 * it) and ns its namespace. Each endpoint with a targetRef of kind Pod, an address and
 * not terminating is one pod (keyed by uid), checked at its first address on the slice's
 * port named dns-udp or dns-tcp (else 53); rndc goes to the port named "rndc" (else 953).
 * A pod seen in two slices (dual stack) is checked at the address of the first. Pods that
 * leave their slice, or whose slice is deleted, are forgotten.
 *
 * Rounds. For an instance marked (a projected change of a zone it serves, of the instance
 * itself, a slice change, or the periodic re-check), one round asks every pod for the SOA
 * of every zone the instance serves plus its catalog zone (bind_soacheck, UDP), and waits
 * up to opts.grace for each to reach the projected serial or newer (RFC 1982). Then, per
 * pod:
 *  - complete: the condition is True, reason SerialsPublished;
 *  - behind: NOTIFY for each lagging zone to that pod through the hidden primary
 *    (opts.srv). A pod behind in two rounds in a row (one NOTIFY apart, so a change that
 *    reaches it within a round never flips it) gets False, reason SerialsBehind, with a
 *    message naming the zones and serials ("example.com at 5, wants 7; ... no answer").
 *    After opts.retransfer_after rounds behind without progress (the same zones at the same
 *    serials), `rndc retransfer` of each lagging zone (the catalog zone too when a zone is
 *    missing altogether), with the instance's rndc key read from its Secret <inst>-keys.
 * An instance with a pod behind is checked again after 0.25 s, doubling up to
 * opts.recheck_max while nothing moves, at once when it is marked.
 *
 * Writes. The condition {type, status, reason, message, lastTransitionTime} goes to
 * pods/<name>/status as a strategic merge patch (conditions merge by type: the kubelet's
 * own conditions are kept); lastTransitionTime is sent only when the status changes. Only
 * what differs from what the API server holds is written: the first verdict on a pod reads
 * it (GET) to learn its condition, later verdicts compare with what was written, per uid.
 * Nothing is written at rest. Every write asks opts.fence first; a refused or failed write
 * is tried again at the instance's next round (failed calls carry backoff_key
 * "rdy/pods/<ns>/<name>").
 *
 * Leadership. rdy_start_leading starts the watch; rdy_stop_leading stops it, cancels every
 * call, check and rndc command and forgets every pod (a new leader learns them anew).
 * Continuity at takeover: after the first round of each instance since leading, a zone
 * that some pod publishes at a serial above the projection's (a predecessor that had
 * journaled more versions) is reported through opts.served_above, once per zone and
 * takeover, so the caller can make the projection continue above it.
 *
 * Ownership. client: borrowed, outlives the rdy (rdy_free before k8s_client_free).
 * opts.srv: borrowed, outlives the rdy. proj: borrowed by rdy_sync and rdy_start_leading
 * and remembered for the rounds the rdy starts from its timers: it must outlive the rdy.
 *
 * Threads: everything on the client's loop; nothing blocks (SOA checks and rndc are
 * non-blocking on the same loop).
 */
#ifndef BD_READINESS_H
#define BD_READINESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "err.h"
#include "projector.h"
#include "server.h"

#define RDY_REASON_PUBLISHED "SerialsPublished"
#define RDY_REASON_BEHIND "SerialsBehind"
#define RDY_DEFAULT_SELECTOR "app.kubernetes.io/managed-by=bindy"

typedef struct rdy rdy_t;

typedef struct rdy_opts {
    /* May this replica write now (e.g. wraps le_fence_ok)? NULL: always. */
    bool (*fence)(void *arg);
    void *fence_arg;
    bind_server_t *srv;         /* the hidden primary, for NOTIFY; NULL: no NOTIFY */
    const char *label_selector; /* EndpointSlices watched; NULL: RDY_DEFAULT_SELECTOR */
    double grace;               /* seconds a round waits for serials; <= 0: 1.0 */
    double recheck_max;         /* seconds, cap of the re-check backoff; <= 0: 30 */
    unsigned retransfer_after;  /* rounds behind without progress before rndc; 0: 3 */
    double rndc_timeout;        /* seconds per rndc command; <= 0: 5 */
    /* A pod publishes zone at serial, above the projection's (see Leadership). NULL: none. */
    void (*served_above)(void *arg, const char *zone, uint32_t serial, uint32_t projected);
    void *served_above_arg;
} rdy_opts_t;

/* Zeroes o (every default). */
void rdy_opts_init(rdy_opts_t *o);

/* A new rdy on client's loop, idle until rdy_start_leading. opts copied (NULL: defaults).
 * BD_OK; BD_EINVAL (no client); BD_ENOMEM. *out written only on success. */
int rdy_new(k8s_client_t *client, const rdy_opts_t *opts, rdy_t **out, bd_err_t *err);
/* rdy_stop_leading, then free. NULL is a no-op. */
void rdy_free(rdy_t *r);

/* This replica leads: watch EndpointSlices and check pods against p (borrowed, see
 * Ownership). Idempotent. BD_OK, BD_ENOMEM, BD_EINVAL (err says why). */
int rdy_start_leading(rdy_t *r, const proj_t *p, bd_err_t *err);
/* Leadership lost: stop the watch, cancel everything in flight, forget every pod. */
void rdy_stop_leading(rdy_t *r);

/* The projection changed (ch borrowed, as given by proj_take_changes, p the projector
 * after the change): mark the instances that serve a changed zone and the changed
 * instances. Nothing happens until rdy_sync. No-op unless leading. BD_OK, BD_ENOMEM. */
int rdy_mark_changes(rdy_t *r, const proj_t *p, const proj_changes_t *ch);
/* Start a round for every marked instance that has none running (p borrowed, see
 * Ownership). Returns at once. No-op unless leading. */
void rdy_sync(rdy_t *r, const proj_t *p);

typedef struct rdy_stats {
    size_t pods;        /* pods discovered */
    size_t ready;       /* pods whose condition is True as last written or read */
    size_t lagging;     /* pods behind in their last round */
    uint64_t rounds;    /* rounds completed */
    uint64_t writes;    /* condition patches that succeeded */
    uint64_t reads;     /* pod and Secret GETs */
    uint64_t errors;    /* calls that failed */
    uint64_t notifies;  /* NOTIFYs queued to lagging pods */
    uint64_t retransfers; /* rndc retransfer commands sent */
    uint64_t fenced;    /* writes refused by the fence */
    unsigned inflight;  /* API calls in flight */
} rdy_stats_t;
void rdy_stats(const rdy_t *r, rdy_stats_t *st);

#endif
