/*
 * client.h - an asynchronous Kubernetes API client on a libev loop.
 *
 * Transport: libcurl's multi-socket interface driven by the caller's ev_loop (ev_io per
 * socket, one ev_timer for curl's timeout), so nothing here blocks the loop. HTTP/2 is
 * negotiated over TLS (ALPN) and calls are multiplexed over one connection, watches
 * included; a server that speaks only HTTP/1.1 gets one connection per concurrent call.
 * TLS is verified against the configuration's CA (config.h); never skipped unless the
 * kubeconfig asks for insecure-skip-tls-verify.
 *
 * Every call completes exactly once, on the loop, through its callback, never from
 * inside the function that started it; k8s_call_cancel() and k8s_client_free() suppress
 * the callback. Callbacks may start new calls and cancel any call, their own included.
 *
 * Politeness, as client-go has it:
 *  - a client-side token bucket (qps, burst) paces every call start, watches included;
 *  - 429 Too Many Requests, and 5xx answers that carry Retry-After (the header, or the
 *    Status' details.retryAfterSeconds), are retried after Retry-After seconds (1 s for a
 *    429 without it; at most 60 s; at most max_retries times; then the call fails with
 *    BD_EBUSY or BD_EUNAVAIL);
 *  - a call given a backoff_key starts only after that key's backoff: 5 ms doubling per
 *    consecutive failure up to 1000 s (client-go's ItemExponentialFailureRateLimiter);
 *    a success resets the key. Failures are answers other than 2xx and 404.
 * Writes carry fieldManager=<field_manager> ("bindy").
 *
 * Result codes (k8s_resp_t.code): BD_OK (2xx), BD_ENOTFOUND (404), BD_EEXISTS (409
 * AlreadyExists), BD_ECONFLICT (409 otherwise: stale resourceVersion), BD_EGONE (410:
 * expired resourceVersion or continue token), BD_EAUTH (401, 403), BD_EINVAL (400, 422,
 * other 4xx), BD_EBUSY (429 after retries), BD_EUNAVAIL (5xx), BD_ETIMEOUT, BD_EIO
 * (connection or TLS failure), BD_EPARSE (a body that is not the JSON it should be),
 * BD_ETOOBIG (a body over 128 MiB, or a watch event over 16 MiB), BD_EPROTO (any other
 * HTTP status, e.g. a 3xx: redirects are not followed).
 */
#ifndef BD_K8S_CLIENT_H
#define BD_K8S_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "err.h"

struct ev_loop;

typedef struct k8s_client k8s_client_t;
typedef struct k8s_call k8s_call_t;

typedef struct k8s_client_opts {
    double qps;                /* calls started per second; default 20 (BINDY_KUBE_QPS) */
    unsigned burst;            /* token bucket size; default 30 (BINDY_KUBE_BURST) */
    unsigned timeout_ms;       /* whole-call limit, watches excluded; default 30000 */
    unsigned connect_timeout_ms; /* default 10000 */
    unsigned max_retries;      /* 429 / Retry-After retries per call; default 10 */
    const char *user_agent;    /* default "bindy/<version>" */
    const char *field_manager; /* default "bindy" */
} k8s_client_opts_t;

/* Defaults, then BINDY_KUBE_QPS and BINDY_KUBE_BURST from the environment when valid. */
void k8s_client_opts_init(k8s_client_opts_t *o);

/* A client for cfg (copied) on loop. opts NULL: defaults. BD_EINVAL (bad option, or a
 * certificate/key that libcurl refuses; err says which), BD_ENOMEM, BD_EINTERNAL (curl).
 * *out: free with k8s_client_free. */
int k8s_client_new(struct ev_loop *loop, const k8s_config_t *cfg, const k8s_client_opts_t *opts,
                   k8s_client_t **out, bd_err_t *err);
/* Cancel every call in flight (no callbacks) and free. NULL is a no-op. */
void k8s_client_free(k8s_client_t *c);

/* The loop the client runs on (borrowed), for callers that keep timers beside it. */
struct ev_loop *k8s_client_loop(const k8s_client_t *c);

typedef struct k8s_client_stats {
    uint64_t calls;      /* calls started (each retry counts once more) */
    uint64_t errors;     /* calls completed with code != BD_OK */
    uint64_t throttled;  /* 429 answers received */
    uint64_t retries;    /* retries after 429 / Retry-After */
    uint64_t watch_events; /* watch events delivered */
    unsigned inflight;   /* calls started and not yet completed (watches included) */
    uint64_t rate_waits; /* call starts held back by the token bucket */
    double rate_wait_s;  /* total time calls waited for the token bucket */
} k8s_client_stats_t;
void k8s_client_stats(const k8s_client_t *c, k8s_client_stats_t *st);

/* ---- Resources and paths ------------------------------------------------------------ */

typedef struct k8s_res {
    const char *group;   /* "" for the core group */
    const char *version; /* "v1", "v1beta1" */
    const char *plural;  /* "dnszones" */
    const char *kind;    /* "DNSZone" (objects of a list get it filled in) */
    bool namespaced;
} k8s_res_t;

/* "/api/v1[/namespaces/NS]/PLURAL[/NAME[/SUB]]" or "/apis/GROUP/VERSION/...", with NS
 * and NAME percent-escaped. ns NULL or "": all namespaces (or cluster-scoped); name
 * and sub may be NULL. malloc'd; NULL on allocation failure. */
char *k8s_path(const k8s_res_t *r, const char *ns, const char *name, const char *sub);

/* ---- Calls -------------------------------------------------------------------------- */

typedef struct k8s_resp {
    int code;            /* BD_OK or BD_E*, see above */
    int status;          /* HTTP status; 0 when there was no answer */
    json_t *body;        /* parsed JSON body (borrowed: json_incref to keep) or NULL */
    const char *reason;  /* the Status reason ("NotFound", "Conflict", "Expired"...) or "" */
    const char *message; /* the Status message, or what went wrong; never NULL */
} k8s_resp_t;

typedef void (*k8s_done_cb)(void *arg, const k8s_resp_t *r);

typedef enum {
    K8S_GET,
    K8S_POST,
    K8S_PUT,
    K8S_PATCH_MERGE, /* application/merge-patch+json */
    K8S_PATCH_JSON,  /* application/json-patch+json */
    K8S_PATCH_APPLY, /* application/apply-patch+yaml (server-side apply; JSON is YAML) */
    K8S_PATCH_STRATEGIC, /* application/strategic-merge-patch+json (built-in kinds only):
                            lists with a merge key (a pod's status.conditions by type) are
                            merged item by item, so other writers' items are kept */
    K8S_DELETE,
} k8s_method_t;

typedef struct k8s_req {
    k8s_method_t method;
    const char *path;        /* from k8s_path, or any absolute API path */
    const char *query;       /* without '?', already escaped; may be NULL */
    const json_t *body;      /* sent as compact JSON; may be NULL */
    const char *backoff_key; /* per-object backoff key, e.g. "dnszones/ns/name"; may be NULL */
} k8s_req_t;

/* Start a call (req and its strings are copied). *out (may be NULL) gets a handle valid
 * until the callback returns or the call is cancelled. BD_ENOMEM, BD_EINVAL. */
int k8s_call(k8s_client_t *c, const k8s_req_t *req, k8s_done_cb cb, void *arg, k8s_call_t **out);
/* Cancel a call (its callback is not called). NULL is a no-op. */
void k8s_call_cancel(k8s_call_t *call);

/* Conveniences over k8s_call. sub: NULL or a subresource ("status"). */
int k8s_get(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name, k8s_done_cb cb,
            void *arg, k8s_call_t **out);
int k8s_create(k8s_client_t *c, const k8s_res_t *r, const char *ns, const json_t *obj, k8s_done_cb cb,
               void *arg, k8s_call_t **out);
/* PUT obj as it is: its metadata.resourceVersion makes a stale write fail with
 * BD_ECONFLICT. */
int k8s_replace(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name, const char *sub,
                const json_t *obj, k8s_done_cb cb, void *arg, k8s_call_t **out);
int k8s_merge_patch(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name,
                    const char *sub, const json_t *patch, k8s_done_cb cb, void *arg, k8s_call_t **out);
/* Server-side apply with the client's field manager; force takes over conflicting fields. */
int k8s_apply(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name, const char *sub,
              const json_t *obj, bool force, k8s_done_cb cb, void *arg, k8s_call_t **out);
int k8s_delete(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name, k8s_done_cb cb,
               void *arg, k8s_call_t **out);

/*
 * Read-modify-write under optimistic concurrency: GET (sub), mutate the object, PUT it
 * with the resourceVersion that was read; on BD_ECONFLICT read again and mutate again,
 * at most 5 times. mutate returns 0 to write, 1 when nothing needs writing (cb then gets
 * BD_OK with the object read), or a BD_E* code to give up with it (cb gets that code,
 * status 0). mutate is called on the loop, once per attempt, and must not keep obj; it
 * gets the same arg as cb. The GET and PUT are ordinary calls (counted in the stats).
 */
typedef int (*k8s_mutate_fn)(void *arg, json_t *obj);
int k8s_modify(k8s_client_t *c, const k8s_res_t *r, const char *ns, const char *name, const char *sub,
               k8s_mutate_fn mutate, k8s_done_cb cb, void *arg, k8s_call_t **out);

/*
 * A watch stream: GET path?query (the caller puts watch=1, resourceVersion,
 * allowWatchBookmarks, timeoutSeconds in query). on_event gets each event as it arrives:
 * type "ADDED", "MODIFIED", "DELETED", "BOOKMARK" or "ERROR", and its object (a Status
 * for ERROR) borrowed for the call. on_end is called once when the stream ends: BD_OK
 * when the server closed it cleanly (timeoutSeconds), BD_EIO when it broke off, or the
 * answer's code when the server refused it (BD_EGONE for 410). A refusal can also come as
 * an ERROR event inside a 200 stream (the API server answers a watch from a compacted
 * resourceVersion that way): the event is delivered, and if the caller keeps the watch,
 * on_end then carries the code of that Status (BD_EGONE for code 410), its reason and
 * message, with body = the Status. Not subject to timeout_ms; a stream silent for longer
 * than timeoutSeconds + 30 s (3630 s without timeoutSeconds) is treated as broken (BD_EIO).
 */
typedef void (*k8s_watch_cb)(void *arg, const char *type, json_t *object);
int k8s_watch(k8s_client_t *c, const char *path, const char *query, k8s_watch_cb on_event,
              k8s_done_cb on_end, void *arg, k8s_call_t **out);

#endif
