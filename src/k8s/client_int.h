/*
 * client_int.h - internals shared by client.c (transport, pacing, watches) and
 * client_write.c (paths, the write conveniences, read-modify-write). Not a public header.
 *
 * A call's life: WAIT_BACKOFF (its key's backoff) -> WAIT_RATE (the token bucket) ->
 * ACTIVE (an easy handle in the multi) -> [WAIT_RETRY -> WAIT_RATE -> ACTIVE]* -> done.
 * "finished" means detached from the client (no timer, no transfer, not listed); the
 * memory goes when the last hold is released. Holds are taken around every user callback
 * and by the client's queues, so a callback may cancel any call, its own included.
 */
#ifndef BD_K8S_CLIENT_INT_H
#define BD_K8S_CLIENT_INT_H

#include <curl/curl.h>
#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "client.h"

struct bd_hmap;

#define K8S__MAX_BODY (128u << 20)   /* one response body (a LIST page) */
#define K8S__MAX_EVENT (16u << 20)   /* one watch event line */
#define K8S__RETRY_AFTER_MAX 60.0    /* seconds: a longer Retry-After is capped */
#define K8S__RETRY_AFTER_DEFAULT 1.0 /* 429 without Retry-After */
#define K8S__BACKOFF_MIN 0.005       /* per-key backoff: 5 ms doubling ... */
#define K8S__BACKOFF_MAX 1000.0      /* ... up to 1000 s */
#define K8S__MODIFY_ATTEMPTS 5
#define K8S__WATCH_GRACE 30.0       /* silence allowed beyond timeoutSeconds */
#define K8S__WATCH_DEFAULT_S 3600.0 /* assumed timeoutSeconds when the query has none */
#define K8S__TOKEN_CHECK_S 1.0      /* stat the token file at most this often */

typedef enum { K8S__PLAIN, K8S__WATCH, K8S__MODIFY } k8s__kind_t;
typedef enum {
    K8S__WAIT_BACKOFF,
    K8S__WAIT_RATE,
    K8S__WAIT_RETRY,
    K8S__ACTIVE,
    K8S__DONE,
} k8s__state_t;

typedef struct k8s__buf {
    char *p;
    size_t len, cap;
} k8s__buf_t;

typedef struct k8s__sock {
    ev_io io;
    curl_socket_t fd;
    struct k8s_client *c;
    struct k8s__sock *prev, *next;
} k8s__sock_t;

struct k8s_call {
    struct k8s_client *c;
    struct k8s_call *prev, *next; /* the client's list of live calls */
    struct k8s_call *done_next;   /* the client's done queue */
    struct k8s_call *ev_next;     /* the client's event queue (a call can be in both) */
    k8s__kind_t kind;
    k8s__state_t state;
    unsigned hold;
    bool finished;
    bool in_evq;

    /* request (owned copies) */
    k8s_method_t method;
    char *path;
    char *url;
    char *body;
    size_t body_len;
    char *key;
    k8s_done_cb cb;
    k8s_watch_cb on_event;
    void *arg;

    /* the current attempt */
    CURL *easy;
    struct curl_slist *hdrs;
    char errbuf[CURL_ERROR_SIZE];
    CURLcode result;
    k8s__buf_t resp;
    double retry_after; /* Retry-After of the answer, -1 when absent */
    unsigned retries;
    int abort_code; /* set by a write callback that stopped the transfer */
    char abort_msg[256];
    ev_timer timer;  /* waits; the silence watchdog while a watch is active */
    double start_at; /* monotonic time the current wait ends */

    /* watch */
    bool stream_checked, streaming;
    k8s__buf_t line;
    json_t *events;       /* parsed, not yet delivered */
    json_t *error_status; /* the object of an ERROR event */
    double silence_s;
    double last_data;

    /* modify */
    struct k8s_call *sub;
    k8s_mutate_fn mutate;
    unsigned attempts;

    /* what the callback gets (kept until the call is freed) */
    json_t *resp_json;
    char msg[512];
};

struct k8s_client {
    struct ev_loop *loop;
    CURLM *multi;
    CURLSH *share;
    ev_timer curl_timer;
    k8s__sock_t *socks;

    char *base_url; /* server, or https://tls-server-name:port/... */
    struct curl_slist *connect_to;
    char *ca_pem, *cert_pem, *key_pem; /* key wiped on free */
    bool insecure;
    char *origin;

    double qps;
    unsigned burst, timeout_ms, connect_timeout_ms, max_retries;
    char *user_agent;
    char *fm_query; /* "fieldManager=ESCAPED" */

    char *token;      /* current bearer token (wiped on free) */
    char *token_file; /* re-read on change, or NULL */
    double token_checked;
    struct timespec token_mtime;
    off_t token_size;
    ino_t token_ino;
    bool token_stat_ok;

    double tokens, bucket_t; /* token bucket */
    struct bd_hmap *backoff; /* key -> k8s__backoff_t */

    struct k8s_call *calls;
    struct k8s_call *doneq_head, *doneq_tail;
    struct k8s_call *evq_head, *evq_tail;
    unsigned depth;
    bool closing;
    k8s_client_stats_t st;
};

/* Create a plain/watch call from req (copied), linked to the client; not started.
 * NULL on allocation failure. */
k8s_call_t *k8s__call_new(k8s_client_t *c, k8s__kind_t kind, const k8s_req_t *req);
/* Begin a call made by k8s__call_new: backoff, rate limit, then start. On failure the call
 * is freed and the code returned (no callback). */
int k8s__call_begin(k8s_call_t *k);
/* Detach the call (no callback from now on); free it when no hold remains. Idempotent. */
void k8s__call_finish(k8s_call_t *k);
void k8s__call_unhold(k8s_call_t *k);
/* Hand r to the call's callback (at most once: nothing when finished), then finish it. */
void k8s__call_deliver(k8s_call_t *k, const k8s_resp_t *r);
/* Shared by client.c and client_setup.c. */
void k8s__wipe_free(char *s);
/* Re-read the token file when it changed (stat at most once a second unless force). */
void k8s__token_refresh(k8s_client_t *c, bool force);
/* Release everything (calls finished without callbacks). */
void k8s__client_destroy(k8s_client_t *c);
void k8s__sock_drop(k8s_client_t *c, k8s__sock_t *s);
int k8s__multi_sock_fn(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp);
int k8s__multi_timer_fn(CURLM *m, long timeout_ms, void *userp);
void k8s__curl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Percent-escape s for a path segment or a query value (malloc'd). */
char *k8s__escape(const char *s);

#endif
