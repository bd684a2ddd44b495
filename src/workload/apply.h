/*
 * apply.h - the workload applier: keeps every Bind9Instance's Kubernetes objects (the
 * Secret, ConfigMap, Service, Deployment or StatefulSet, and PDB that wl_render gives) applied, on
 * the elected leader, with no API call at rest.
 *
 * Use. After each applied event the caller marks the instances whose desired state
 * changed (wla_mark with proj_changes_t.instances; wla_mark_all at takeover) and calls
 * wla_sync. For every marked instance, asynchronously:
 *   - it exists in the projection: resolve where its named pulls from (a primary, or a
 *     secondary without upstream primaries: the hidden-primary Service's ClusterIP, read
 *     once and cached; a secondary: the ClusterIPs of its upstream primaries' Services,
 *     learned from our own apply answers or read once); read its Secret <inst>-keys once
 *     to keep its rndc key (generated when the Secret has none; never logged); render
 *     (wl_render) and server-side apply (force, field manager "bindy") each object whose
 *     dumped bytes differ from what this wla last applied successfully for it. An object
 *     no longer rendered (the PDB at replicas 1; the Deployment when a StatefulSet
 *     replaces it, and vice versa) is deleted: at once when this wla applied it, else
 *     after a read shows the instance controls it (once per leadership: then it is known
 *     to be gone).
 *   - it is gone: every object wl_owned lists is read and deleted (preconditions uid and
 *     resourceVersion) when wl_owned_by holds for the instance uid this wla last saw
 *     (in the projection at a sync or mark_all); 404 counts as done. Without a known
 *     uid nothing is deleted (Kubernetes' garbage collector follows the ownerReferences).
 * An instance waiting for an upstream address (Service absent or without a ClusterIP)
 * is retried after 0.5 s doubling to 30 s, and at once when an address is learned.
 *
 * Failures. A failed call (422, 5xx, ...) is logged naming the instance and the object
 * ("workload dns-system/primary-dns Deployment: ..."), counted, and retried: the instance
 * is marked again and its calls carry a per-object backoff_key ("wla/<resource>/<ns>/<name>"),
 * so the client's per-key exponential backoff paces the retries. One instance's failure
 * never holds back the others.
 *
 * The rndc key. An instance's spec.rndcKey.secretRef (name, key; key defaults to
 * WL_RNDC_REF_KEY) names a Secret in its namespace holding its own key: it is read once
 * per leadership (again when the reference changes), written into keys.conf and the
 * Secret's rndc-secret instead of the generated one, and is what wla_rndc_key gives (when
 * the reference goes, the key last in use stays: no needless key change). While the Secret or its key is
 * missing or malformed the instance is not applied (its objects stay as they are), is
 * read again after 0.5 s doubling to 30 s, and wla_problem says why, naming the Secret
 * and the key (never the key material). Other instances are not held back.
 *
 * Events (on the Bind9Instance, through the shared k8s_events recorder): Normal Created
 * or Updated naming the object's kind and name when an apply really changed it (the API
 * server answered 201, or its resourceVersion moved: a server-side apply that changes
 * nothing keeps it), Normal Deleted when an object no longer rendered is removed,
 * Warning ApplyFailed with the API error when an apply is refused (once per distinct
 * error: its retries post nothing more). None at rest. To know the version an apply
 * replaces, the first apply of each object after a takeover is preceded by a GET (the
 * Secret's is the read that keeps the rndc key).
 *
 * Fencing. opts.fence (when set) is asked before every batch of writes: at wla_sync and
 * before each instance's applies or deletes. When it refuses, nothing is written and the
 * marks are kept for a later sync.
 *
 * Leadership. On stopped_leading call wla_reset (cancels calls, forgets the applied
 * hashes and cached addresses; the marks are kept). On started_leading call wla_mark_all
 * then wla_sync: every object is applied once, after which only changes cost calls.
 *
 * Ownership. client: borrowed, outlives the wla (wla_free before k8s_client_free).
 * proj: borrowed by wla_sync/wla_mark_all and remembered for the retries the wla runs
 * from its own timer: it must outlive the wla (or the next wla_sync with another one).
 * Options' strings are copied; the transfer key copy is wiped at wla_free.
 *
 * Threads: everything runs on the client's loop; nothing blocks.
 */
#ifndef BD_WORKLOAD_APPLY_H
#define BD_WORKLOAD_APPLY_H

#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "err.h"
#include "projector.h"

typedef struct wla wla_t;

#define WLA_DEFAULT_HIDDEN_PRIMARY "bindy-hidden-primary"

typedef struct wla_opts {
    const char *operator_namespace;     /* required: where the hidden-primary Service is */
    const char *hidden_primary_service; /* NULL: WLA_DEFAULT_HIDDEN_PRIMARY */
    uint16_t hidden_primary_port;       /* port named pulls from on that Service; 0: 53 */
    const char *image_repository;       /* BIND image override; NULL: wl_render's default */
    const char *catalog_suffix;         /* NULL: WL_DEFAULT_CATALOG_SUFFIX (as the projector's) */
    /* The hidden primary's transfer (TSIG) key, as the operator serves it: required. The
     * same key is written into every instance's keys.conf. Never logged. */
    const char *xfr_algorithm;          /* NULL: "hmac-sha256" */
    const char *xfr_secret_b64;
    /* May this replica write now (e.g. wraps le_fence_ok)? NULL: always. */
    bool (*fence)(void *arg);
    void *fence_arg;
    /* Instance key's problem (wla_problem) appeared, changed or went: e.g. mark its status.
     * Called on the loop, from the wla's callbacks. NULL: not told. */
    void (*on_problem)(void *arg, const char *key);
    void *on_problem_arg;
    const char *event_component; /* Events' reportingComponent; NULL: "bindy" */
    const char *event_instance;  /* Events' reportingInstance (pod name); NULL: "" */
} wla_opts_t;

/* Zeroes o (every default). */
void wla_opts_init(wla_opts_t *o);

/* A new applier on c's loop. BD_OK; BD_EINVAL (no client, no operator namespace, no
 * transfer key; err says which); BD_ENOMEM. *out is written only on success. */
int wla_new(k8s_client_t *c, const wla_opts_t *o, wla_t **out, bd_err_t *err);
/* Cancel every call in flight (no callback runs), wipe keys, free. NULL is a no-op. */
void wla_free(wla_t *w);

/* The desired state of instance key ("namespace/name") changed: reconsider it at the
 * next sync. Costs no API call when nothing rendered differs. BD_OK, BD_EINVAL (not
 * "ns/name"), BD_ENOMEM. */
int wla_mark(wla_t *w, const char *key);
/* Mark every instance of p and forget what was applied for them, so the next sync
 * applies each object once (a takeover). BD_OK or BD_ENOMEM. */
int wla_mark_all(wla_t *w, const proj_t *p);

/* Start the work for every marked instance (p borrowed, see Ownership). Returns at once;
 * calls complete on the loop. Fenced: nothing happens, marks are kept. BD_OK, BD_ENOMEM. */
int wla_sync(wla_t *w, const proj_t *p);

/* Leadership lost: cancel every call in flight, forget the applied hashes, the cached
 * addresses and the rndc keys read (marks and instance uids are kept). */
void wla_reset(wla_t *w);

typedef struct wla_stats {
    uint64_t applies; /* server-side applies that succeeded */
    uint64_t skipped; /* objects rendered identical to what was last applied (no call) */
    uint64_t deletes; /* objects deleted (404 included: already gone) */
    uint64_t errors;  /* calls that failed (each is retried) */
    uint64_t reads;   /* GETs: hidden-primary/upstream Services, Secrets, objects to delete */
    uint64_t fenced;  /* batches refused by the fence */
    uint64_t events;  /* Events the API server accepted */
    uint64_t event_errors;
    unsigned inflight;       /* calls in flight */
    unsigned event_inflight; /* Event posts in flight */
    size_t pending;          /* instances marked and not yet done */
} wla_stats_t;
void wla_stats(const wla_t *w, wla_stats_t *st);

/* Why instance key ("ns/name") cannot be applied now, or NULL: a message naming the
 * Secret and data key of its spec.rndcKey.secretRef, with *reason (may be NULL)
 * WLA_REASON_RNDC_KEY. Borrowed: valid until the wla runs again. */
#define WLA_REASON_RNDC_KEY "RndcKeyUnavailable"
const char *wla_problem(const wla_t *w, const char *key, const char **reason);

/* The rndc key (base64) bindy uses for instance key: the one from its
 * spec.rndcKey.secretRef when it has one, else the one it generated. BD_OK and a new
 * string in *secret_b64 (wipe, then free); BD_ENOTFOUND when not known (yet, or any more
 * after wla_reset); BD_ENOMEM. Never logged. */
int wla_rndc_key(const wla_t *w, const char *key, char **secret_b64);

/* Is there nothing left to do (no marks, no call or Event post in flight)? For tests and
 * shutdown. */
bool wla_idle(const wla_t *w);

#endif
