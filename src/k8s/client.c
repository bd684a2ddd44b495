/*
 * client.c - the Kubernetes API client's transport: libcurl's multi-socket interface on
 * the caller's libev loop (after curl's docs/examples/evhiperfifo.c), the token bucket and
 * per-key backoff, retries after 429 / Retry-After, status mapping, and watch streams.
 * Paths, the write conveniences and k8s_modify are in client_write.c; creation, release
 * and the bearer token in client_setup.c.
 *
 * No user callback ever runs inside a libcurl callback: the write callback only buffers
 * (and, for watches, parses complete lines into a queue). After every
 * curl_multi_socket_action the client "pumps": it drains curl_multi_info_read into its
 * own done queue first, then delivers queued watch events, then completes finished
 * transfers. Callbacks are thus free to add and remove easy handles. Queued calls carry
 * a hold, so a callback that cancels a queued call only marks it finished.
 *
 * k8s_client_free from inside a callback cancels everything at once and defers the
 * release of the client's memory until the loop callback that is running unwinds (depth).
 */
#include "client.h"
#include "clock.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "hmap.h"
#include "log.h"

typedef struct backoff {
    unsigned failures;
    double not_before; /* monotonic */
} backoff_t;

static const char *method_name(k8s_method_t m)
{
    switch (m) {
    case K8S_GET:
        return "GET";
    case K8S_POST:
        return "POST";
    case K8S_PUT:
        return "PUT";
    case K8S_PATCH_MERGE:
    case K8S_PATCH_JSON:
    case K8S_PATCH_APPLY:
    case K8S_PATCH_STRATEGIC:
        return "PATCH";
    case K8S_DELETE:
        return "DELETE";
    }
    return "?";
}

static bool method_writes(k8s_method_t m)
{
    return m == K8S_POST || m == K8S_PUT || m == K8S_PATCH_MERGE || m == K8S_PATCH_JSON ||
           m == K8S_PATCH_APPLY || m == K8S_PATCH_STRATEGIC;
}

char *k8s__escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return out;
}

/* Append to a capped buffer (always NUL-terminated). BD_ETOOBIG over cap, BD_ENOMEM. */
static int buf_add(k8s__buf_t *b, const char *p, size_t n, size_t cap)
{
    if (b->len + n > cap)
        return BD_ETOOBIG;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (np == NULL)
            return BD_ENOMEM;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return BD_OK;
}

static void slist_wipe_free(struct curl_slist *l)
{
    for (struct curl_slist *i = l; i != NULL; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
}

void k8s__wipe_free(char *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

/* ---- token bucket and backoff ---------------------------------------------------------- */

/* Reserve one token; returns how long to wait for it (seconds, 0: now). */
static double bucket_reserve(k8s_client_t *c, double now)
{
    double t = c->tokens + (now - c->bucket_t) * c->qps;
    c->tokens = t > c->burst ? c->burst : t;
    c->bucket_t = now;
    c->tokens -= 1.0;
    return c->tokens >= 0 ? 0.0 : -c->tokens / c->qps;
}

static void backoff_update(k8s_client_t *c, const char *key, bool failed)
{
    if (key == NULL)
        return;
    backoff_t *b = bd_hmap_get(c->backoff, key);
    if (!failed) {
        free(bd_hmap_del(c->backoff, key));
        return;
    }
    if (b == NULL) {
        b = calloc(1, sizeof(*b));
        if (b == NULL || bd_hmap_put(c->backoff, key, b, NULL) != BD_OK) {
            free(b);
            return; /* no backoff is better than no call */
        }
    }
    if (b->failures < 64)
        b->failures++;
    double d = K8S__BACKOFF_MIN * ldexp(1.0, (int)b->failures - 1);
    if (d > K8S__BACKOFF_MAX)
        d = K8S__BACKOFF_MAX;
    b->not_before = bd_mono_s() + d;
}

/* ---- libev <-> libcurl ------------------------------------------------------------------ */

static void pump(k8s_client_t *c);

static void enter(k8s_client_t *c) { c->depth++; }

static void leave(k8s_client_t *c)
{
    if (--c->depth == 0 && c->closing)
        k8s__client_destroy(c);
}

static void sock_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    k8s__sock_t *s = w->data;
    k8s_client_t *c = s->c;
    curl_socket_t fd = s->fd; /* s may be freed by the action */
    int action =
        ((revents & EV_READ) ? CURL_CSELECT_IN : 0) | ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running = 0;
    enter(c);
    curl_multi_socket_action(c->multi, fd, action, &running);
    pump(c);
    leave(c);
}

void k8s__curl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    k8s_client_t *c = w->data;
    int running = 0;
    enter(c);
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    pump(c);
    leave(c);
}

int k8s__multi_timer_fn(CURLM *m, long timeout_ms, void *userp)
{
    k8s_client_t *c = userp;
    ev_timer_stop(c->loop, &c->curl_timer);
    if (timeout_ms >= 0 && !c->closing) {
        /* 0 too goes through the loop: socket_action must not be called from here */
        ev_timer_set(&c->curl_timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(c->loop, &c->curl_timer);
    }
    return 0;
}

void k8s__sock_drop(k8s_client_t *c, k8s__sock_t *s)
{
    ev_io_stop(c->loop, &s->io);
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

int k8s__multi_sock_fn(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    k8s_client_t *c = userp;
    k8s__sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(c->multi, fd, NULL);
            k8s__sock_drop(c, s);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        s->c = c;
        s->fd = fd;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        ev_init(&s->io, sock_io_cb);
        s->io.data = s;
        curl_multi_assign(c->multi, fd, s);
    } else {
        ev_io_stop(c->loop, &s->io);
    }
    int ev = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    ev_io_set(&s->io, fd, ev);
    if (ev != 0 && !c->closing)
        ev_io_start(c->loop, &s->io);
    return 0;
}

/* ---- call lifecycle --------------------------------------------------------------------- */

static void buf_free(k8s__buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static void call_free(k8s_call_t *k)
{
    free(k->path);
    free(k->url);
    free(k->body);
    free(k->key);
    buf_free(&k->resp);
    buf_free(&k->line);
    json_decref(k->events);
    json_decref(k->error_status);
    json_decref(k->resp_json);
    free(k);
}

void k8s__call_unhold(k8s_call_t *k)
{
    if (--k->hold == 0 && k->finished)
        call_free(k);
}

/* Stop the current transfer (if any): remove the easy handle, free its headers. */
static void transfer_detach(k8s_call_t *k)
{
    k8s_client_t *c = k->c;
    if (k->easy != NULL) {
        curl_multi_remove_handle(c->multi, k->easy);
        curl_easy_cleanup(k->easy);
        k->easy = NULL;
        if (c->st.inflight > 0)
            c->st.inflight--;
    }
    slist_wipe_free(k->hdrs);
    k->hdrs = NULL;
    ev_timer_stop(c->loop, &k->timer);
}

void k8s__call_finish(k8s_call_t *k)
{
    if (k->finished)
        return;
    k8s_client_t *c = k->c;
    k->finished = true;
    k->state = K8S__DONE;
    transfer_detach(k);
    if (k->sub != NULL) {
        k8s_call_t *sub = k->sub;
        k->sub = NULL;
        k8s__call_finish(sub);
    }
    if (k->prev)
        k->prev->next = k->next;
    else if (c->calls == k)
        c->calls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
    if (k->hold == 0)
        call_free(k);
}

void k8s_call_cancel(k8s_call_t *call)
{
    if (call == NULL)
        return;
    k8s__call_finish(call);
}

void k8s__call_deliver(k8s_call_t *k, const k8s_resp_t *r)
{
    if (k->finished)
        return;
    k->hold++;
    if (k->kind != K8S__MODIFY) /* a modify's own calls count */
        k->c->st.errors += r->code != BD_OK;
    k->cb(k->arg, r);
    k8s__call_finish(k);
    k8s__call_unhold(k);
}

/* ---- transfers ------------------------------------------------------------------------ */

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    k8s_call_t *k = ud;
    size_t len = sz * n;
    if (len > 5 && strncmp(p, "HTTP/", 5) == 0) {
        k->retry_after = -1; /* a new answer (after 100 Continue) */
    } else if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char v[32];
        size_t vl = len - 12 < sizeof(v) - 1 ? len - 12 : sizeof(v) - 1;
        memcpy(v, p + 12, vl);
        v[vl] = '\0';
        char *end;
        long s = strtol(v, &end, 10);
        while (*end && isspace((unsigned char)*end))
            end++;
        /* an HTTP-date is not worth parsing here: treat it as the default */
        k->retry_after =
            (end != v && *end == '\0' && s >= 0) ? (double)s : K8S__RETRY_AFTER_DEFAULT;
    }
    return len;
}

/* Feed watch bytes: complete lines become queued events. false stops the transfer. */
static bool watch_feed(k8s_call_t *k, const char *p, size_t n)
{
    k8s_client_t *c = k->c;
    size_t scan = k->line.len;
    int rc = buf_add(&k->line, p, n, K8S__MAX_EVENT + n);
    if (rc != BD_OK) {
        k->abort_code = rc;
        snprintf(k->abort_msg, sizeof(k->abort_msg), "watch %s: out of memory", k->path);
        return false;
    }
    size_t start = 0;
    for (size_t i = scan; i < k->line.len; i++) {
        if (k->line.p[i] != '\n')
            continue;
        const char *ln = k->line.p + start;
        size_t ll = i - start;
        start = i + 1;
        size_t j = 0;
        while (j < ll && isspace((unsigned char)ln[j]))
            j++;
        if (j == ll)
            continue; /* blank line */
        json_error_t je;
        json_t *ev = json_loadb(ln, ll, 0, &je);
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *obj = json_object_get(ev, "object");
        if (type == NULL || !json_is_object(obj)) {
            json_decref(ev);
            k->abort_code = BD_EPARSE;
            snprintf(k->abort_msg, sizeof(k->abort_msg), "watch %s: malformed event: %s", k->path,
                     je.text[0] ? je.text : "no type or object");
            return false;
        }
        if (k->events == NULL && (k->events = json_array()) == NULL) {
            json_decref(ev);
            k->abort_code = BD_ENOMEM;
            snprintf(k->abort_msg, sizeof(k->abort_msg), "watch %s: out of memory", k->path);
            return false;
        }
        json_array_append_new(k->events, ev);
        if (!k->in_evq) {
            k->in_evq = true;
            k->hold++;
            k->ev_next = NULL;
            if (c->evq_tail)
                c->evq_tail->ev_next = k;
            else
                c->evq_head = k;
            c->evq_tail = k;
        }
    }
    if (start > 0) {
        memmove(k->line.p, k->line.p + start, k->line.len - start);
        k->line.len -= start;
        k->line.p[k->line.len] = '\0';
    }
    if (k->line.len > K8S__MAX_EVENT) {
        k->abort_code = BD_ETOOBIG;
        snprintf(k->abort_msg, sizeof(k->abort_msg), "watch %s: an event exceeds %u bytes", k->path,
                 K8S__MAX_EVENT);
        return false;
    }
    return true;
}

static size_t on_write(char *p, size_t sz, size_t n, void *ud)
{
    k8s_call_t *k = ud;
    size_t len = sz * n;
    if (k->kind == K8S__WATCH) {
        k->last_data = ev_now(k->c->loop);
        if (!k->stream_checked) {
            long st = 0;
            curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &st);
            k->stream_checked = true;
            k->streaming = st >= 200 && st < 300;
        }
        if (k->streaming)
            return watch_feed(k, p, len) ? len : 0;
    }
    int rc = buf_add(&k->resp, p, len, K8S__MAX_BODY);
    if (rc != BD_OK) {
        k->abort_code = rc;
        snprintf(k->abort_msg, sizeof(k->abort_msg), "%s %s: %s", method_name(k->method), k->path,
                 rc == BD_ETOOBIG ? "response body larger than the limit" : "out of memory");
        return 0;
    }
    return len;
}

static void call_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

#define SETOPT(opt, val)                                 \
    do {                                                 \
        if (curl_easy_setopt(e, opt, val) != CURLE_OK) { \
            what = #opt;                                 \
            goto fail;                                   \
        }                                                \
    } while (0)

/* Start one attempt: an easy handle in the multi. BD_OK, or a code with k->msg set. */
static int attempt_start(k8s_call_t *k)
{
    k8s_client_t *c = k->c;
    const char *what = "curl_easy_init";
    CURL *e = NULL;
    struct curl_slist *h = NULL;
    int rc = BD_EINTERNAL;

    k8s__token_refresh(c, false);
    k->resp.len = 0;
    k->line.len = 0;
    k->retry_after = -1;
    k->abort_code = 0;
    k->abort_msg[0] = '\0';
    k->errbuf[0] = '\0';
    k->stream_checked = k->streaming = false;
    json_decref(k->error_status);
    k->error_status = NULL;

    e = curl_easy_init();
    if (e == NULL)
        goto fail;
    const char *ctype = NULL;
    switch (k->method) {
    case K8S_PATCH_MERGE:
        ctype = "Content-Type: application/merge-patch+json";
        break;
    case K8S_PATCH_JSON:
        ctype = "Content-Type: application/json-patch+json";
        break;
    case K8S_PATCH_APPLY:
        ctype = "Content-Type: application/apply-patch+yaml";
        break;
    case K8S_PATCH_STRATEGIC:
        ctype = "Content-Type: application/strategic-merge-patch+json";
        break;
    default:
        ctype = k->body != NULL ? "Content-Type: application/json" : NULL;
    }
    struct curl_slist *t;
    what = "curl_slist_append";
#define ADDH(s)                                    \
    do {                                           \
        if ((t = curl_slist_append(h, s)) == NULL) \
            goto nomem;                            \
        h = t;                                     \
    } while (0)
    ADDH("Accept: application/json");
    ADDH("Expect:");
    if (ctype != NULL)
        ADDH(ctype);
    if (c->token != NULL) {
        size_t al = strlen(c->token) + 32;
        char *auth = malloc(al);
        if (auth == NULL)
            goto nomem;
        snprintf(auth, al, "Authorization: Bearer %s", c->token);
        t = curl_slist_append(h, auth);
        k8s__wipe_free(auth);
        if (t == NULL)
            goto nomem;
        h = t;
    }
#undef ADDH

    SETOPT(CURLOPT_URL, k->url);
    SETOPT(CURLOPT_PRIVATE, k);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, k->errbuf);
    SETOPT(CURLOPT_WRITEFUNCTION, on_write);
    SETOPT(CURLOPT_WRITEDATA, k);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, k);
    SETOPT(CURLOPT_HTTPHEADER, h);
    SETOPT(CURLOPT_USERAGENT, c->user_agent);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Waiting to multiplex only pays where HTTP/2 can be negotiated (ALPN over TLS). Over
     * plain HTTP, libcurl 7.88 would hold a call behind a watch on the one connection
     * until the watch ends, instead of opening another connection. */
    if (strncmp(k->url, "https:", 6) == 0)
        SETOPT(CURLOPT_PIPEWAIT, 1L);
    SETOPT(CURLOPT_SHARE, c->share);
    SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
    SETOPT(CURLOPT_ACCEPT_ENCODING, "");
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    if (k->kind != K8S__WATCH)
        SETOPT(CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    if (c->connect_to != NULL)
        SETOPT(CURLOPT_CONNECT_TO, c->connect_to);
    if (c->ca_pem != NULL) {
        /* the configured CA only: not the system bundle as well */
        struct curl_blob b = {
            .data = c->ca_pem, .len = strlen(c->ca_pem), .flags = CURL_BLOB_NOCOPY};
        SETOPT(CURLOPT_CAINFO, (char *)NULL);
        SETOPT(CURLOPT_CAPATH, (char *)NULL);
        SETOPT(CURLOPT_CAINFO_BLOB, &b);
    }
    if (c->cert_pem != NULL && c->key_pem != NULL) {
        struct curl_blob cb = {
            .data = c->cert_pem, .len = strlen(c->cert_pem), .flags = CURL_BLOB_NOCOPY};
        struct curl_blob kb = {
            .data = c->key_pem, .len = strlen(c->key_pem), .flags = CURL_BLOB_NOCOPY};
        SETOPT(CURLOPT_SSLCERT_BLOB, &cb);
        SETOPT(CURLOPT_SSLCERTTYPE, "PEM");
        SETOPT(CURLOPT_SSLKEY_BLOB, &kb);
        SETOPT(CURLOPT_SSLKEYTYPE, "PEM");
    }
    SETOPT(CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
    if (k->method == K8S_GET) {
        SETOPT(CURLOPT_HTTPGET, 1L);
    } else {
        if (k->body != NULL || k->method != K8S_DELETE) {
            SETOPT(CURLOPT_POSTFIELDS, k->body != NULL ? k->body : "");
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)k->body_len);
        }
        if (k->method != K8S_POST)
            SETOPT(CURLOPT_CUSTOMREQUEST, method_name(k->method));
    }
    what = "curl_multi_add_handle";
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
        goto fail;
    k->easy = e;
    k->hdrs = h;
    k->state = K8S__ACTIVE;
    c->st.calls++;
    c->st.inflight++;
    if (k->kind == K8S__WATCH) {
        k->last_data = ev_now(c->loop);
        ev_timer_set(&k->timer, k->silence_s, 0.);
        ev_timer_start(c->loop, &k->timer);
    }
    return BD_OK;
nomem:
    rc = BD_ENOMEM;
fail:
    snprintf(k->msg, sizeof(k->msg), "%s %s: cannot start the request (%s)", method_name(k->method),
             k->path, rc == BD_ENOMEM ? "out of memory" : what);
    slist_wipe_free(h);
    curl_easy_cleanup(e);
    return rc;
}
#undef SETOPT

static void arm_wait(k8s_call_t *k, k8s__state_t st, double delay)
{
    k->state = st;
    k->start_at = bd_mono_s() + delay;
    ev_timer_stop(k->c->loop, &k->timer);
    ev_timer_set(&k->timer, delay, 0.);
    ev_timer_start(k->c->loop, &k->timer);
}

/* Rate phase: reserve a token, then start now or wait for it. */
static int phase_rate(k8s_call_t *k)
{
    k8s_client_t *c = k->c;
    double wait = bucket_reserve(c, bd_mono_s());
    if (wait > 0) {
        c->st.rate_waits++;
        c->st.rate_wait_s += wait;
        arm_wait(k, K8S__WAIT_RATE, wait);
        return BD_OK;
    }
    return attempt_start(k);
}

/* Backoff phase (a call's first start only). */
static int phase_begin(k8s_call_t *k)
{
    if (k->key != NULL) {
        const backoff_t *b = bd_hmap_get(k->c->backoff, k->key);
        double now = bd_mono_s();
        if (b != NULL && b->not_before > now) {
            arm_wait(k, K8S__WAIT_BACKOFF, b->not_before - now);
            return BD_OK;
        }
    }
    return phase_rate(k);
}

int k8s__call_begin(k8s_call_t *k)
{
    int rc = phase_begin(k);
    if (rc != BD_OK)
        k8s__call_finish(k);
    return rc;
}

static void transfer_done(k8s_call_t *k);

static void watch_check_silence(k8s_call_t *k)
{
    k8s_client_t *c = k->c;
    double idle = ev_now(c->loop) - k->last_data;
    if (idle < k->silence_s) {
        ev_timer_set(&k->timer, k->silence_s - idle, 0.);
        ev_timer_start(c->loop, &k->timer);
        return;
    }
    k->abort_code = BD_EIO;
    snprintf(k->abort_msg, sizeof(k->abort_msg), "watch %s: silent for %.0f s; treated as broken",
             k->path, idle);
    transfer_done(k);
}

static void call_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    k8s_call_t *k = w->data;
    k8s_client_t *c = k->c;
    enter(c);
    k->hold++;
    if (k->state == K8S__ACTIVE) {
        if (k->kind == K8S__WATCH)
            watch_check_silence(k);
    } else if (k->start_at - bd_mono_s() > 0.0005) {
        /* the loop's clock ran behind the monotonic one: wait the rest */
        ev_timer_set(&k->timer, k->start_at - bd_mono_s(), 0.);
        ev_timer_start(loop, &k->timer);
    } else {
        int rc = k->state == K8S__WAIT_RATE ? attempt_start(k) : phase_rate(k);
        if (rc != BD_OK)
            k8s__call_deliver(
                k, &(k8s_resp_t){.code = rc, .status = 0, .reason = "", .message = k->msg});
    }
    k8s__call_unhold(k);
    leave(c);
}

/* ---- completion ----------------------------------------------------------------------- */

static int map_status(long st, const char *reason)
{
    if (st >= 200 && st < 300)
        return BD_OK;
    switch (st) {
    case 404:
        return BD_ENOTFOUND;
    case 409:
        return reason != NULL && strcmp(reason, "AlreadyExists") == 0 ? BD_EEXISTS : BD_ECONFLICT;
    case 410:
        return BD_EGONE;
    case 401:
    case 403:
        return BD_EAUTH;
    case 429:
        return BD_EBUSY;
    default:
        break;
    }
    if (st >= 500 && st <= 599)
        return BD_EUNAVAIL;
    if (st >= 400 && st <= 499)
        return BD_EINVAL;
    return BD_EPROTO;
}

/* reason and message of a Status object ("" when absent). */
static void status_strings(const json_t *j, const char **reason, const char **message)
{
    *reason = "";
    *message = "";
    const char *kind = json_string_value(json_object_get(j, "kind"));
    if (kind == NULL || strcmp(kind, "Status") != 0)
        return;
    const char *r = json_string_value(json_object_get(j, "reason"));
    const char *m = json_string_value(json_object_get(j, "message"));
    *reason = r != NULL ? r : "";
    *message = m != NULL ? m : "";
}

/* Deliver the events parsed so far (watches), stopping when the call is cancelled. */
static void watch_deliver_events(k8s_call_t *k)
{
    if (k->events == NULL || k->finished)
        return;
    k8s_client_t *c = k->c;
    json_t *evs = k->events;
    k->events = NULL;
    k->hold++;
    for (size_t i = 0; i < json_array_size(evs) && !k->finished; i++) {
        json_t *ev = json_array_get(evs, i);
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *obj = json_object_get(ev, "object");
        if (strcmp(type, "ERROR") == 0 && k->error_status == NULL)
            k->error_status = json_incref(obj);
        c->st.watch_events++;
        k->on_event(k->arg, type, obj);
    }
    json_decref(evs);
    k8s__call_unhold(k);
}

/* A transfer ended (curl said so, or we stopped it): retry, or complete the call. */
static void transfer_done(k8s_call_t *k)
{
    k8s_client_t *c = k->c;
    long st = 0;
    if (k->easy != NULL)
        curl_easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &st);
    CURLcode res = k->result;
    k->hold++;
    transfer_detach(k);
    watch_deliver_events(k);
    if (k->finished)
        goto out;

    const char *m = method_name(k->method);
    k8s_resp_t r = {
        .code = BD_OK, .status = (int)st, .body = NULL, .reason = "", .message = k->msg};
    k->msg[0] = '\0';
    if (k->abort_code != 0) {
        r.code = k->abort_code;
        snprintf(k->msg, sizeof(k->msg), "%s", k->abort_msg);
        if (!k->streaming)
            r.status = 0;
    } else if (res != CURLE_OK) {
        const char *why = k->errbuf[0] ? k->errbuf : curl_easy_strerror(res);
        if (k->streaming) {
            r.code = BD_EIO;
            snprintf(k->msg, sizeof(k->msg), "watch %s: stream broke off: %s", k->path, why);
        } else {
            r.code = res == CURLE_OPERATION_TIMEDOUT ? BD_ETIMEOUT : BD_EIO;
            r.status = 0;
            snprintf(k->msg, sizeof(k->msg), "%s %s: %s", m, k->path, why);
        }
    } else if (k->streaming) {
        size_t j = 0;
        while (j < k->line.len && isspace((unsigned char)k->line.p[j]))
            j++;
        if (j < k->line.len) {
            r.code = BD_EIO;
            snprintf(k->msg, sizeof(k->msg), "watch %s: the stream ended inside an event", k->path);
        } else if (k->error_status != NULL) {
            json_int_t code = json_integer_value(json_object_get(k->error_status, "code"));
            status_strings(k->error_status, &r.reason, &r.message);
            r.code = map_status((long)code, r.reason);
            if (r.code == BD_OK)
                r.code = BD_EPROTO;
            r.body = k->error_status;
            if (*r.message == '\0') {
                snprintf(k->msg, sizeof(k->msg), "watch %s: ERROR event (code %lld)", k->path,
                         (long long)code);
                r.message = k->msg;
            }
        }
    } else {
        if (k->resp.len > 0) {
            json_error_t je;
            k->resp_json = json_loadb(k->resp.p, k->resp.len, 0, &je);
            if (k->resp_json == NULL && st >= 200 && st < 300) {
                r.code = BD_EPARSE;
                snprintf(k->msg, sizeof(k->msg), "%s %s: %ld answer is not JSON: %s", m, k->path,
                         st, je.text);
                goto deliver;
            }
        }
        r.body = k->resp_json;
        status_strings(k->resp_json, &r.reason, &r.message);
        r.code = map_status(st, r.reason);
        if (st == 429)
            c->st.throttled++;
        if (k->retry_after < 0 && (st == 429 || st >= 500)) {
            /* the API server puts Retry-After in the Status details as well */
            json_int_t ras = json_integer_value(
                json_object_get(json_object_get(k->resp_json, "details"), "retryAfterSeconds"));
            if (ras > 0)
                k->retry_after = (double)ras;
        }
        if ((st == 429 || (st >= 500 && st <= 599 && k->retry_after >= 0))) {
            if (k->retries < c->max_retries) {
                double ra = k->retry_after >= 0 ? k->retry_after : K8S__RETRY_AFTER_DEFAULT;
                if (ra > K8S__RETRY_AFTER_MAX)
                    ra = K8S__RETRY_AFTER_MAX;
                k->retries++;
                c->st.retries++;
                bd_debug("kubernetes: %s %s: %ld, retrying in %.0f s (%u/%u)", m, k->path, st, ra,
                         k->retries, c->max_retries);
                json_decref(k->resp_json);
                k->resp_json = NULL;
                arm_wait(k, K8S__WAIT_RETRY, ra);
                goto out;
            }
            snprintf(k->msg, sizeof(k->msg), "%s %s: %ld after %u retries: %s", m, k->path, st,
                     k->retries, *r.message ? r.message : "no message");
            r.message = k->msg;
        }
        if (r.code != BD_OK && *r.message == '\0') {
            snprintf(k->msg, sizeof(k->msg), "%s %s: HTTP %ld", m, k->path, st);
            r.message = k->msg;
        }
    }
deliver:
    backoff_update(c, k->key, !(r.code == BD_OK || r.status == 404));
    k8s__call_deliver(k, &r);
out:
    k8s__call_unhold(k);
}

/* After curl ran: collect finished transfers, deliver watch events, complete transfers. */
static void pump(k8s_client_t *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        k8s_call_t *k = (k8s_call_t *)priv;
        if (k == NULL || k->finished)
            continue;
        k->result = msg->data.result;
        k->hold++;
        k->done_next = NULL;
        if (c->doneq_tail)
            c->doneq_tail->done_next = k;
        else
            c->doneq_head = k;
        c->doneq_tail = k;
    }
    while (c->evq_head != NULL) {
        k8s_call_t *k = c->evq_head;
        c->evq_head = k->ev_next;
        if (c->evq_head == NULL)
            c->evq_tail = NULL;
        k->in_evq = false;
        if (!c->closing)
            watch_deliver_events(k);
        k8s__call_unhold(k);
    }
    while (c->doneq_head != NULL) {
        k8s_call_t *k = c->doneq_head;
        c->doneq_head = k->done_next;
        if (c->doneq_head == NULL)
            c->doneq_tail = NULL;
        if (!k->finished && !c->closing)
            transfer_done(k);
        k8s__call_unhold(k);
    }
}

/* ---- calls ------------------------------------------------------------------------------ */

k8s_call_t *k8s__call_new(k8s_client_t *c, k8s__kind_t kind, const k8s_req_t *req)
{
    k8s_call_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return NULL;
    k->c = c;
    k->kind = kind;
    k->state = K8S__WAIT_RATE;
    k->retry_after = -1;
    ev_init(&k->timer, call_timer_cb);
    k->timer.data = k;
    if (kind == K8S__MODIFY) {
        k->path = strdup(req->path);
        if (k->path == NULL)
            goto fail;
        goto link;
    }
    k->method = req->method;
    k->path = strdup(req->path);
    if (k->path == NULL)
        goto fail;
    if (req->backoff_key != NULL && (k->key = strdup(req->backoff_key)) == NULL)
        goto fail;
    if (req->body != NULL) {
        k->body = json_dumps(req->body, JSON_COMPACT | JSON_ENCODE_ANY);
        if (k->body == NULL)
            goto fail;
        k->body_len = strlen(k->body);
    }
    const char *q = req->query != NULL && *req->query ? req->query : NULL;
    bool fm = method_writes(req->method) && (q == NULL || (strncmp(q, "fieldManager=", 13) != 0 &&
                                                           strstr(q, "&fieldManager=") == NULL));
    size_t ul =
        strlen(c->base_url) + strlen(k->path) + (q ? strlen(q) : 0) + strlen(c->fm_query) + 4;
    k->url = malloc(ul);
    if (k->url == NULL)
        goto fail;
    snprintf(k->url, ul, "%s%s%s%s%s%s", c->base_url, k->path, q || fm ? "?" : "", q ? q : "",
             q && fm ? "&" : "", fm ? c->fm_query : "");
    if (kind == K8S__WATCH) {
        k->silence_s = K8S__WATCH_DEFAULT_S + K8S__WATCH_GRACE;
        const char *ts = q != NULL ? strstr(q, "timeoutSeconds=") : NULL;
        if (ts != NULL && (ts == q || ts[-1] == '&')) {
            double v = strtod(ts + 15, NULL);
            if (v > 0 && isfinite(v))
                k->silence_s = v + K8S__WATCH_GRACE;
        }
    }
link:
    k->next = c->calls;
    if (c->calls)
        c->calls->prev = k;
    c->calls = k;
    return k;
fail:
    call_free(k);
    return NULL;
}

static int check_req(k8s_client_t *c, const k8s_req_t *req)
{
    if (c == NULL || req == NULL || req->path == NULL || req->path[0] != '/' || c->closing)
        return BD_EINVAL;
    if ((unsigned)req->method > (unsigned)K8S_DELETE)
        return BD_EINVAL;
    if (strchr(req->path, '?') != NULL || strpbrk(req->path, " \r\n") != NULL)
        return BD_EINVAL;
    if (req->query != NULL && strpbrk(req->query, " \r\n#") != NULL)
        return BD_EINVAL;
    return BD_OK;
}

int k8s_call(k8s_client_t *c, const k8s_req_t *req, k8s_done_cb cb, void *arg, k8s_call_t **out)
{
    if (out != NULL)
        *out = NULL;
    int rc = check_req(c, req);
    if (rc != BD_OK || cb == NULL)
        return BD_EINVAL;
    k8s_call_t *k = k8s__call_new(c, K8S__PLAIN, req);
    if (k == NULL)
        return BD_ENOMEM;
    k->cb = cb;
    k->arg = arg;
    rc = k8s__call_begin(k);
    if (rc == BD_OK && out != NULL)
        *out = k;
    return rc;
}

int k8s_watch(k8s_client_t *c, const char *path, const char *query, k8s_watch_cb on_event,
              k8s_done_cb on_end, void *arg, k8s_call_t **out)
{
    if (out != NULL)
        *out = NULL;
    k8s_req_t req = {.method = K8S_GET, .path = path, .query = query};
    int rc = check_req(c, &req);
    if (rc != BD_OK || on_event == NULL || on_end == NULL)
        return BD_EINVAL;
    k8s_call_t *k = k8s__call_new(c, K8S__WATCH, &req);
    if (k == NULL)
        return BD_ENOMEM;
    k->cb = on_end;
    k->on_event = on_event;
    k->arg = arg;
    rc = k8s__call_begin(k);
    if (rc == BD_OK && out != NULL)
        *out = k;
    return rc;
}
