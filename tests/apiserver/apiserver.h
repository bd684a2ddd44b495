/*
 * apiserver.h - a Kubernetes API-server test double (test equipment only).
 *
 * Serves the documented Kubernetes API semantics over HTTP (or HTTPS) on loopback, from
 * memory, so bindy's client and kubectl can be tested without a cluster: discovery
 * (legacy and aggregated), generic storage of built-in kinds, CustomResourceDefinitions
 * that register their resources when created, create/get/list/update/patch (merge, JSON,
 * strategic: status.conditions merged by type, else as merge; server-side apply)/delete
 * with finalizers, resourceVersion and optimistic concurrency, generation, the status
 * subresource, label and field selectors, list chunking with continue tokens, watches
 * with bookmarks and 410 Gone after compaction, Table output with printer columns,
 * bearer-token auth, and fault knobs.
 *
 * It is never installed, never linked into the product and never started by it.
 *
 * Threads: the server runs its own threads (one per connection). Every function here is
 * safe to call from any thread while the server runs, except bd_apiserver_stop.
 *
 * Control over HTTP (no auth, not in the request log), for shell tests:
 *   POST /__double/faults/fail?count=N&status=500[&match=SUBSTR]
 *   POST /__double/faults/fail?fraction=0.5&status=503[&match=SUBSTR]
 *   POST /__double/faults/throttle?count=N&retryAfter=S[&match=SUBSTR]
 *   POST /__double/faults/latency?ms=L
 *   POST /__double/faults/drop-watches
 *   POST /__double/faults/compact
 *   POST /__double/faults/reset          (clears fail, throttle and latency)
 *   GET  /__double/faults                (current knobs as JSON)
 *   GET  /__double/log[?since=SEQ]       ({"items":[{seq,time,userAgent,fieldManager,
 *                                          verb,method,path,query,status}...]})
 *   DELETE /__double/log
 *   GET  /__double/state                 ({"resourceVersion","compactedResourceVersion",
 *                                          "watches","historyLength"})
 * SUBSTR is matched against "VERB PATH" (VERB being the Kubernetes verb: get, list,
 * watch, create, update, patch, delete, deletecollection; PATH without the query), e.g.
 * "patch /apis/bindy.firestoned.io" or "watch ".
 */
#ifndef BD_APISERVER_H
#define BD_APISERVER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct as_server bd_apiserver_t;

typedef struct bd_apiserver_opts {
    const char *bind_addr;      /* IPv4 address; default "127.0.0.1" */
    unsigned short port;        /* 0 (default): an ephemeral port, see bd_apiserver_port */
    const char *tls_cert_pem;   /* PEM text (not a path); with tls_key_pem enables HTTPS */
    const char *tls_key_pem;
    const char *token;          /* when set, "Authorization: Bearer <token>" is required */
    size_t history;             /* events kept for watches/continue (compaction window);
                                   default 1000 */
    unsigned bookmark_ms;       /* BOOKMARK interval for allowWatchBookmarks; default 60000 */
    unsigned max_watch_s;       /* watch length when timeoutSeconds is absent; default 1800 */
    size_t max_body;            /* request body cap (413 above); default 3 MiB */
    const char *server_version; /* "MAJOR.MINOR.PATCH" for /version; default "1.31.0" */
} bd_apiserver_opts_t;

/* Defaults as documented above. */
void bd_apiserver_opts_init(bd_apiserver_opts_t *o);

/* Start a server (opts may be NULL for the defaults). Creates the namespaces default,
 * kube-system, kube-public and kube-node-lease. *out is set only on success.
 * Returns 0, BD_EINVAL (bad options), BD_EIO (cannot listen; err says why), BD_ENOMEM. */
int bd_apiserver_start(const bd_apiserver_opts_t *opts, bd_apiserver_t **out, bd_err_t *err);

/* Stop (closing every connection, watches included) and free. NULL is a no-op. */
void bd_apiserver_stop(bd_apiserver_t *s);

/* The bound port, and the base URL ("http://127.0.0.1:PORT" or "https://..."). */
unsigned short bd_apiserver_port(const bd_apiserver_t *s);
const char *bd_apiserver_url(const bd_apiserver_t *s);

/* ---- fault knobs ---------------------------------------------------------------------
 * match (may be NULL: every request) is a substring of "VERB PATH", see above. API
 * requests only: discovery and /__double/ are never failed, throttled or delayed... except
 * latency, which applies to every API request including discovery. */

/* Answer the next count matching requests with status (500..599; a Status body). */
void bd_apiserver_fail_next(bd_apiserver_t *s, unsigned count, int status, const char *match);
/* Answer a fraction (0..1) of matching requests with status, until reset (0 stops). */
void bd_apiserver_fail_fraction(bd_apiserver_t *s, double fraction, int status,
                                const char *match);
/* Answer the next count matching requests with 429 and "Retry-After: retry_after_s". */
void bd_apiserver_throttle_next(bd_apiserver_t *s, unsigned count, unsigned retry_after_s,
                                const char *match);
/* Delay every API request by ms milliseconds (0 disables). */
void bd_apiserver_set_latency(bd_apiserver_t *s, unsigned ms);
/* Close every open watch stream now, abruptly (the chunked body ends without its final
 * chunk, as when the server goes away). Watches started later are not affected. */
void bd_apiserver_drop_watches(bd_apiserver_t *s);
/* Forget the event history: a watch or continue token from any resourceVersion older
 * than the current one now gets 410 Gone / Expired. */
void bd_apiserver_compact(bd_apiserver_t *s);
/* Clear fail, fraction, throttle and latency. */
void bd_apiserver_reset_faults(bd_apiserver_t *s);

/* The last resourceVersion handed out. */
uint64_t bd_apiserver_resource_version(bd_apiserver_t *s);
/* Watch streams currently open. */
unsigned bd_apiserver_watches_open(bd_apiserver_t *s);

/* ---- request log -------------------------------------------------------------------- */

typedef struct bd_apiserver_req {
    uint64_t seq;         /* 1, 2, ... in arrival order of the response */
    double time;          /* seconds since the epoch */
    char user_agent[128];
    char field_manager[128]; /* ?fieldManager= or "" */
    char verb[24];        /* Kubernetes verb, or "discovery", "openapi", "version" */
    char method[8];
    char path[256];       /* without the query */
    char query[256];
    int status;           /* HTTP status (watches: the status the stream started with) */
} bd_apiserver_req_t;

/* Number of entries logged so far (since the last clear). */
size_t bd_apiserver_log_count(bd_apiserver_t *s);
/* Copy entry i (0 = oldest kept). Returns 0 or BD_ENOTFOUND. */
int bd_apiserver_log_get(bd_apiserver_t *s, size_t i, bd_apiserver_req_t *out);
/* The log as JSON text (as served by /__double/log), entries with seq > since.
 * malloc'd; NULL on allocation failure. */
char *bd_apiserver_log_json(bd_apiserver_t *s, uint64_t since);
void bd_apiserver_log_clear(bd_apiserver_t *s);

/* ---- direct store access (no HTTP, not logged) ---------------------------------------- */

/* Create an object from JSON text (apiVersion/kind pick the resource; a CRD registers
 * its resources). Returns 0, BD_EPARSE, BD_ENOTFOUND (unknown kind or namespace),
 * BD_EEXISTS, BD_EINVAL (rejected; err says why). */
int bd_apiserver_create(bd_apiserver_t *s, const char *json, bd_err_t *err);
/* Register every *.yaml CustomResourceDefinition in dir (e.g. the project's schema/crds),
 * in name order. Returns 0 or the first error (err names the file). */
int bd_apiserver_load_crds(bd_apiserver_t *s, const char *dir, bd_err_t *err);
/* The stored object as JSON text (malloc'd) or NULL when absent. group "" is core;
 * resource is the plural; ns NULL for cluster-scoped. */
char *bd_apiserver_get(bd_apiserver_t *s, const char *group, const char *resource,
                       const char *ns, const char *name);

#endif
