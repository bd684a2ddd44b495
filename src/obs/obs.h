/*
 * obs.h - health and metrics: a Prometheus metrics registry (obs_reg_) and the operator's
 * HTTP endpoints (obs_): GET|HEAD /healthz, /readyz and /metrics, served on
 * libmicrohttpd's own thread so a scrape never blocks the libev loop.
 *
 * Threading: every update (obs_counter_add, obs_gauge_set, obs_hist_observe,
 * obs_heartbeat, obs_ready_set) may be called from any thread and never does I/O.
 * Counter, gauge and histogram values are C11 atomics; creating a labelled series, adding a
 * family and changing a readiness condition take a short mutex, which the HTTP thread also
 * holds while it renders. Callers on the loop thread therefore look a labelled series up
 * once and keep the handle.
 *
 * Ownership: families and series belong to their registry; their handles stay valid until
 * the registry is freed. Every update accepts a NULL handle (and obs_metric* a NULL obs_t)
 * and does nothing, so code without observability (local mode, tests) passes NULL.
 * obs_free() first stops and joins the HTTP thread; nothing may update concurrently with it.
 *
 * Exposition: Prometheus text format 0.0.4, families sorted by name, series by their label
 * values; "# HELP" and "# TYPE" for every family (also one with no series yet); histograms
 * as cumulative _bucket{le="..."} lines ending with le="+Inf", then _sum and _count. A
 * histogram's _count always equals its +Inf bucket; _sum may miss an observation that is
 * in flight while the scrape runs.
 *
 * Errors: BD_OK or a negative BD_E* code from err.h; functions that take a bd_err_t fill
 * its message.
 */
#ifndef BD_OBS_H
#define BD_OBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* ---- the registry -------------------------------------------------------------------- */

typedef struct obs_reg obs_reg_t;       /* a set of metric families */
typedef struct obs_family obs_family_t; /* one metric name: type, HELP, label names */
typedef struct obs_series obs_series_t; /* one combination of label values: what is updated */

typedef enum { OBS_COUNTER, OBS_GAUGE, OBS_HISTOGRAM } obs_type_t;

#define OBS_LABELS_MAX 2      /* label names per family */
#define OBS_SERIES_MAX 1024   /* series per family (a cardinality guard) */
#define OBS_BUCKETS_MAX 32    /* histogram bounds, not counting +Inf */
#define OBS_LABEL_VALUE_MAX 256 /* bytes of one label value */

/* New empty registry in *out. BD_ENOMEM. */
int obs_reg_new(obs_reg_t **out);
/* Frees the registry, its families and series. NULL is a no-op. */
void obs_reg_free(obs_reg_t *r);

/*
 * Add a family. name matches [a-zA-Z_:][a-zA-Z0-9_:]*; help is any text (escaped on
 * output); labels (nlabels <= OBS_LABELS_MAX) match [a-zA-Z_][a-zA-Z0-9_]*, do not start
 * with "__" and are not "le" for a histogram. A histogram takes 1..OBS_BUCKETS_MAX finite,
 * strictly increasing upper bounds (copied); other types pass NULL, 0. A family without
 * labels has its one series from the start (value 0). *out (may be NULL) gets the
 * borrowed family.
 * BD_EINVAL (bad name, labels, bounds), BD_EEXISTS (name taken), BD_ENOMEM.
 */
int obs_reg_add(obs_reg_t *r, const char *name, const char *help, obs_type_t type,
                const char *const *labels, size_t nlabels, const double *bounds,
                size_t nbounds, obs_family_t **out);

/* Borrowed family by name, or NULL. */
obs_family_t *obs_reg_find(obs_reg_t *r, const char *name);

/*
 * The series of f for the given label values (as many as f has label names, in order; pass
 * NULL for unused ones), created at 0 on first use. Values are copied; any bytes are allowed
 * (escaped on output) up to OBS_LABEL_VALUE_MAX. Returns a borrowed handle, or NULL when f
 * is NULL, a needed value is NULL or too long, f already has OBS_SERIES_MAX series, or on
 * allocation failure. Takes the registry mutex: cache the handle on hot paths.
 */
obs_series_t *obs_series(obs_family_t *f, const char *v1, const char *v2);

/* Counter += n. No-op for NULL or a series that is not a counter. */
void obs_counter_add(obs_series_t *s, uint64_t n);
static inline void obs_counter_inc(obs_series_t *s)
{
    obs_counter_add(s, 1);
}
/* Gauge = v. No-op for NULL or a series that is not a gauge. */
void obs_gauge_set(obs_series_t *s, double v);
/* Histogram: count v in the first bucket whose bound is >= v (else only in +Inf) and add it
 * to _sum. No-op for NULL or a series that is not a histogram. */
void obs_hist_observe(obs_series_t *s, double v);

/* Current values (tests and the runtime's own logic). Counter and gauge read as double;
 * 0 for NULL or the wrong type. */
double obs_series_value(const obs_series_t *s);

/*
 * Render r in text format 0.0.4 into a new NUL-terminated buffer *text (free() it) of
 * *len bytes (len may be NULL). Both are reset first and written only on success. BD_ENOMEM.
 */
int obs_reg_render(obs_reg_t *r, char **text, size_t *len);

/* ---- the operator's metric set ------------------------------------------------------- */

/*
 * Every metric the operator exports, in one place: X(ENUM, name, type, label, buckets, help).
 * label is NULL or the one label name; buckets names a bound set (see below). Names are a
 * stable interface (dashboards and alerts use them): add, never rename.
 *
 * Owners (who updates what, all from the loop thread unless noted):
 *   leader election: BINDY_LEADER (1 while this replica holds the Lease) and
 *     BINDY_LEADER_TRANSITIONS (+1 whenever BINDY_LEADER changes);
 *   journal: LAST_SEQ, SIZE_BYTES, MAP_USED_RATIO (after each commit) and
 *     COMMIT_LATENCY (append to durable commit, seconds);
 *   watch source: WATCH_EVENTS (each event journaled), WATCH_RELISTS (each full list
 *     after a 410 Gone or a broken watch);
 *   applier: APPLY_OPERATIONS / APPLY_ERRORS per target ("hidden-primary", "kubernetes",
 *     "status", ...), RECONCILE_DURATION (one journal event through projector and
 *     targets, seconds), DRIFT_REPAIRS (a target found different from the desired
 *     state and corrected);
 *   Kubernetes client: KUBE_REQUESTS (each request sent), KUBE_THROTTLED (each request
 *     delayed by the client-side rate limit or answered 429);
 *   readiness gate (src/readiness, leader only; 0 on standbys): BIND_PODS_READY,
 *     BIND_PODS_LAGGING (once a second).
 * Bound sets (seconds): OBS_BUCKETS_COMMIT 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01
 * 0.025 0.05 0.1 0.25 0.5 1; OBS_BUCKETS_RECONCILE 0.0005 0.001 0.0025 0.005 0.01 0.025
 * 0.05 0.1 0.25 0.5 1 2.5 5 10.
 */
#define OBS_METRIC_TABLE(X)                                                                    \
    X(LEADER, "bindy_leader", GAUGE, NULL, NONE,                                               \
      "1 while this replica holds the leader Lease, else 0.")                                  \
    X(LEADER_TRANSITIONS, "bindy_leader_transitions_total", COUNTER, NULL, NONE,               \
      "Times this replica gained or lost the leader Lease.")                                   \
    X(JOURNAL_LAST_SEQ, "bindy_journal_last_seq", GAUGE, NULL, NONE,                           \
      "Sequence number of the last committed journal event.")                                  \
    X(JOURNAL_SIZE_BYTES, "bindy_journal_size_bytes", GAUGE, NULL, NONE,                       \
      "Bytes of the journal's LMDB map in use.")                                               \
    X(JOURNAL_MAP_USED_RATIO, "bindy_journal_map_used_ratio", GAUGE, NULL, NONE,               \
      "Used fraction of the journal's LMDB map size (0 to 1).")                                \
    X(JOURNAL_COMMIT_LATENCY, "bindy_journal_commit_latency_seconds", HISTOGRAM, NULL,         \
      COMMIT, "Time from append to durable commit of a journal batch.")                       \
    X(WATCH_EVENTS, "bindy_watch_events_total", COUNTER, NULL, NONE,                           \
      "Kubernetes watch events journaled.")                                                    \
    X(WATCH_RELISTS, "bindy_watch_relists_total", COUNTER, NULL, NONE,                         \
      "Full lists made after a watch expired or broke.")                                       \
    X(APPLY_OPERATIONS, "bindy_apply_operations_total", COUNTER, "target", NONE,              \
      "Operations applied to a target.")                                                       \
    X(APPLY_ERRORS, "bindy_apply_errors_total", COUNTER, "target", NONE,                      \
      "Operations on a target that failed.")                                                   \
    X(RECONCILE_DURATION, "bindy_reconcile_duration_seconds", HISTOGRAM, NULL, RECONCILE,     \
      "Time to project one journal event and apply it to every target.")                      \
    X(DRIFT_REPAIRS, "bindy_drift_repairs_total", COUNTER, NULL, NONE,                         \
      "Differences between a target and the desired state that were corrected.")              \
    X(KUBE_REQUESTS, "bindy_kube_requests_total", COUNTER, NULL, NONE,                         \
      "Requests sent to the Kubernetes API server.")                                           \
    X(KUBE_THROTTLED, "bindy_kube_throttled_total", COUNTER, NULL, NONE,                       \
      "Kubernetes API requests delayed by the client rate limit or answered 429.")             \
    X(BIND_PODS_READY, "bindy_bind_pods_ready", GAUGE, NULL, NONE,                             \
      "BIND pods whose readiness gate bindy has set True (they publish every serial).")        \
    X(BIND_PODS_LAGGING, "bindy_bind_pods_lagging", GAUGE, NULL, NONE,                         \
      "BIND pods behind the current serial of a zone they serve in their last check.")

typedef enum {
#define OBS__ENUM(id, name, type, label, buckets, help) OBS_##id,
    OBS_METRIC_TABLE(OBS__ENUM)
#undef OBS__ENUM
    OBS_METRIC_COUNT
} obs_metric_t;

/* ---- health, readiness and the HTTP server ------------------------------------------- */

typedef struct obs obs_t;

typedef struct obs_opts {
    const char *addr;          /* "HOST:PORT" (IPv4, or [IPv6]); port 0 picks a free one;
                                * NULL: "0.0.0.0:8080". Borrowed during obs_new. */
    unsigned staleness_ms;     /* /healthz is 503 once the last heartbeat is older; 0: 10000 */
} obs_opts_t;

/* Defaults: addr NULL (0.0.0.0:8080), staleness 10 s. */
void obs_opts_init(obs_opts_t *o);
/* o->addr = $BINDY_HEALTH_ADDR when set and not empty (the pointer is borrowed from the
 * environment). Always BD_OK; the address is checked by obs_new. */
int obs_opts_from_env(obs_opts_t *o, bd_err_t *err);

/*
 * New obs_t with its registry holding the operator's metric set (OBS_METRIC_TABLE), the
 * heartbeat set to now and no readiness conditions. No thread yet: see obs_start.
 * BD_EINVAL (malformed addr), BD_ENOMEM.
 */
int obs_new(const obs_opts_t *opts, obs_t **out, bd_err_t *err);
/* Stop the HTTP thread (if started), then free everything. NULL is a no-op. */
void obs_free(obs_t *o);

/* Listen and serve on MHD's internal thread. The heartbeat is reset to now.
 * BD_EIO (cannot listen: err names the address and errno), BD_EBUSY (already started). */
int obs_start(obs_t *o, bd_err_t *err);
/* Port actually bound (useful with port 0), or 0 before obs_start. */
unsigned short obs_port(const obs_t *o);

/* The registry (borrowed), for families beyond the operator's set. */
obs_reg_t *obs_registry(obs_t *o);
/* Handle of an unlabelled operator metric; NULL for a NULL o, an out-of-range m, or a
 * labelled metric. Lock-free. */
obs_series_t *obs_metric(obs_t *o, obs_metric_t m);
/* Handle of a labelled operator metric for this label value (e.g. a target); created on
 * first use, NULL as obs_series(). Takes the registry mutex: cache it. */
obs_series_t *obs_metric_for(obs_t *o, obs_metric_t m, const char *value);

/* The loop is alive: call from a timer on the loop thread (well within the staleness).
 * NULL is a no-op. */
void obs_heartbeat(obs_t *o);

#define OBS_READY_MAX 16        /* readiness conditions */
#define OBS_READY_NAME_MAX 64   /* bytes of a condition's name, NUL included */
#define OBS_READY_REASON_MAX 192 /* bytes of a reason, NUL included (longer is cut) */

/*
 * Register or update the readiness condition name (e.g. "journal", "watch"). /readyz is
 * 200 "ok" when every registered condition is true (also when none is registered: register
 * them before obs_start), else 503 with one line "name: reason" per false condition, in
 * registration order; reason NULL reads "not ready". Both strings are copied.
 * BD_OK; BD_EINVAL (NULL o or name, empty or too long name), BD_EFULL (OBS_READY_MAX).
 */
int obs_ready_set(obs_t *o, const char *name, bool ok, const char *reason);

#endif
