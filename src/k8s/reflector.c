/*
 * reflector.c - list+watch of one resource (see reflector.h).
 *
 * A reflector is a small state machine driven by its calls' callbacks and two timers:
 *
 *   start ─┬─ resume_rv ──────────────────────────────► WATCH
 *          └─ LIST page 1 ─► page 2 ... ─► deliver ───► WATCH
 *   WATCH ── clean end ──────────────────────────────► WATCH (from the last rv)
 *         ── 410 (status or ERROR event), rv too large ► LIST (from scratch)
 *         ── broken, refused ─► backoff ─────────────► WATCH (from the last rv)
 *   LIST  ── page failed ─► backoff ─► the same page again (its continue token)
 *         ── continue token expired (410) ───────────► LIST (from scratch)
 *
 * Pages are collected and handed to the hooks in one go when the last one arrives, so
 * a list that fails halfway delivers nothing and the consumer sees list_begin, the items
 * and list_end together.
 *
 * Hooks may stop the reflector: every entry point (a call's callback, a timer) holds
 * the reflector (depth) while it runs, k8s_refl_stop() only marks it while held, and the
 * last entry point to leave frees it. After every hook the code checks `stopped`.
 */
#include "reflector.h"

#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define REFL_PAGE_SIZE 500u
#define REFL_WATCH_MIN_S 300u /* timeoutSeconds in [300, 600), as client-go */
#define REFL_BACKOFF_MIN_MS 800u
#define REFL_BACKOFF_MAX_MS 30000u
/* A watch not refused within this long counts as accepted (client.h does not say when a
 * stream starts; its first event or bookmark says it sooner). */
#define REFL_ACCEPT_S 1.0
/* A watch that ends cleanly sooner than this, having delivered nothing, counts as a
 * failure (so a server that closes every watch at once is not hammered). */
#define REFL_HEALTHY_S 1.0

struct k8s_refl {
    k8s_client_t *c;
    struct ev_loop *loop;
    k8s_res_t res;
    char *ns, *sel, *path, *api_version, *desc;
    unsigned page_size, watch_timeout_s, bo_min, bo_max;
    k8s_refl_hooks_t h;
    void *arg;

    char *rv;      /* last delivered; never NULL */
    bool synced;
    bool want_list; /* the next step is a LIST (else a WATCH from rv) */
    k8s_call_t *call;
    ev_timer timer;  /* start and backoff */
    ev_timer accept; /* a watch started while not synced */
    unsigned backoff_ms;
    uint64_t rng;

    /* list in progress */
    json_t *items;
    char *cont;

    double listed_at; /* when the last list was delivered (0: never) */

    /* watch in progress */
    double watch_started;
    bool watch_progress;

    unsigned depth;
    bool stopped;
};

/* ---- small helpers ------------------------------------------------------------------ */

static double rand01(k8s_refl_t *r)
{
    /* xorshift64*: jitter only, not security */
    uint64_t x = r->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* Percent-escape s for a query value (malloc'd). */
static char *qescape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *o = malloc(n * 3 + 1), *p = o;
    if (o == NULL)
        return NULL;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
            ch == '.' || ch == '_' || ch == '~') {
            *p++ = (char)ch;
        } else {
            *p++ = '%';
            *p++ = hex[ch >> 4];
            *p++ = hex[ch & 15];
        }
    }
    *p = '\0';
    return o;
}

static void set_str(char **dst, const char *v)
{
    char *d = strdup(v != NULL ? v : "");
    if (d == NULL)
        return; /* keep the old value: the worst case is a watch from an older rv */
    free(*dst);
    *dst = d;
}

static const char *obj_rv(const json_t *obj)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
}

/* List items lack apiVersion and kind on the wire; watch objects carry them. */
static void fill_type(k8s_refl_t *r, json_t *obj)
{
    if (!json_is_object(obj))
        return;
    if (!json_is_string(json_object_get(obj, "apiVersion")))
        json_object_set_new(obj, "apiVersion", json_string(r->api_version));
    if (!json_is_string(json_object_get(obj, "kind")))
        json_object_set_new(obj, "kind", json_string(r->res.kind));
}

static void enter(k8s_refl_t *r)
{
    r->depth++;
}

static void refl_free(k8s_refl_t *r);

static void leave(k8s_refl_t *r)
{
    if (--r->depth == 0 && r->stopped)
        refl_free(r);
}

static void state_hook(k8s_refl_t *r, bool synced, const char *why)
{
    if (r->h.state != NULL)
        r->h.state(r->arg, synced, why);
}

/* ---- the machine ------------------------------------------------------------------- */

static void step(k8s_refl_t *r);

static void schedule(k8s_refl_t *r, double delay_s)
{
    ev_timer_stop(r->loop, &r->timer);
    ev_timer_set(&r->timer, delay_s, 0.);
    ev_timer_start(r->loop, &r->timer);
}

static void backoff_reset(k8s_refl_t *r)
{
    r->backoff_ms = r->bo_min;
}

/* Something failed: say so and try again after the backoff (jittered: [d, 2d)). */
static void fail(k8s_refl_t *r, const char *what, const char *why)
{
    double d = (double)r->backoff_ms * (1.0 + rand01(r));
    if (d > r->bo_max)
        d = r->bo_max;
    r->backoff_ms = r->backoff_ms >= r->bo_max / 2 ? r->bo_max : r->backoff_ms * 2;
    bd_warn("%s: %s: %s; retrying in %.1f s", r->desc, what, why, d / 1000.0);
    r->synced = false;
    char msg[600];
    snprintf(msg, sizeof(msg), "%s: %s", what, why);
    state_hook(r, false, msg);
    if (r->stopped)
        return;
    schedule(r, d / 1000.0);
}

static void list_reset(k8s_refl_t *r)
{
    json_array_clear(r->items);
    free(r->cont);
    r->cont = NULL;
}

/* Start a full LIST from scratch (after 410): now, unless the last list is so recent
 * that the server is refusing every watch, then after the backoff. */
static void relist(k8s_refl_t *r, const char *why)
{
    list_reset(r);
    r->want_list = true;
    if (r->listed_at > 0 && ev_now(r->loop) - r->listed_at < REFL_HEALTHY_S) {
        fail(r, "watch refused right after a list", why);
        return;
    }
    bd_info("%s: %s: listing again", r->desc, why);
    r->synced = false;
    state_hook(r, false, why);
    if (r->stopped)
        return;
    step(r);
}

static void on_page(void *arg, const k8s_resp_t *resp);

static void list_page(k8s_refl_t *r)
{
    char *cont = NULL, *q = NULL;
    int rc = BD_ENOMEM;
    if (r->cont != NULL && (cont = qescape(r->cont)) == NULL)
        goto out;
    if (asprintf(&q, "limit=%u%s%s%s%s", r->page_size, cont ? "&continue=" : "", cont ? cont : "",
                 r->sel ? "&labelSelector=" : "", r->sel ? r->sel : "") < 0) {
        q = NULL;
        goto out;
    }
    k8s_req_t req = {.method = K8S_GET, .path = r->path, .query = q};
    rc = k8s_call(r->c, &req, on_page, r, &r->call);
out:
    free(cont);
    free(q);
    if (rc != BD_OK) {
        r->call = NULL;
        fail(r, "list", bd_strerror(rc));
    }
}

/* Every page is in: hand the whole set to the hooks, then watch from its rv. */
static void deliver(k8s_refl_t *r, const char *rv)
{
    json_t *items = r->items;
    if ((r->items = json_array()) == NULL) {
        r->items = items;
        list_reset(r);
        fail(r, "list", "out of memory");
        return;
    }
    free(r->cont);
    r->cont = NULL;
    size_t n = json_array_size(items);
    bd_debug("%s: listed %zu objects at resourceVersion %s", r->desc, n, rv);
    if (r->h.list_begin != NULL)
        r->h.list_begin(r->arg);
    for (size_t i = 0; i < n && !r->stopped; i++) {
        json_t *o = json_array_get(items, i);
        fill_type(r, o);
        if (r->h.list_item != NULL)
            r->h.list_item(r->arg, o);
    }
    if (!r->stopped) {
        set_str(&r->rv, rv);
        if (r->h.list_end != NULL)
            r->h.list_end(r->arg, rv);
    }
    json_decref(items);
    if (r->stopped)
        return;
    r->synced = true;
    r->listed_at = ev_now(r->loop);
    backoff_reset(r);
    char why[64];
    snprintf(why, sizeof(why), "listed %zu objects", n);
    state_hook(r, true, why);
    if (r->stopped)
        return;
    r->want_list = false;
    step(r);
}

static void on_page(void *arg, const k8s_resp_t *resp)
{
    k8s_refl_t *r = arg;
    r->call = NULL;
    enter(r);
    if (resp->code == BD_OK) {
        const json_t *meta = json_object_get(resp->body, "metadata");
        json_t *items = json_object_get(resp->body, "items");
        const char *rv = json_string_value(json_object_get(meta, "resourceVersion"));
        const char *cont = json_string_value(json_object_get(meta, "continue"));
        if (!json_is_array(items) && !json_is_null(items) && items != NULL) {
            fail(r, "list", "the answer has no items array");
        } else if (rv == NULL || *rv == '\0') {
            fail(r, "list", "the answer has no resourceVersion");
        } else if (items != NULL && json_array_extend(r->items, items) != 0) {
            fail(r, "list", "out of memory");
        } else if (cont != NULL && *cont != '\0') {
            set_str(&r->cont, cont);
            list_page(r);
        } else {
            deliver(r, rv);
        }
    } else if (resp->code == BD_EGONE && r->cont != NULL) {
        /* the continue token expired: the pages so far are no longer one snapshot */
        bd_info("%s: list continue token expired (%s): listing from the start", r->desc, resp->message);
        list_reset(r);
        list_page(r);
    } else {
        fail(r, "list", resp->message);
    }
    leave(r);
}

/* The watch is good (an event, a bookmark, or it was not refused in time). */
static void accepted(k8s_refl_t *r)
{
    ev_timer_stop(r->loop, &r->accept);
    if (r->synced)
        return;
    r->synced = true;
    char why[300];
    snprintf(why, sizeof(why), "watching from resourceVersion %s", r->rv);
    state_hook(r, true, why);
}

static void on_wevent(void *arg, const char *type, json_t *obj);
static void on_wend(void *arg, const k8s_resp_t *resp);

static void watch_start(k8s_refl_t *r)
{
    char *rv = NULL, *q = NULL;
    int rc = BD_ENOMEM;
    unsigned to = r->watch_timeout_s;
    if (to == 0)
        to = REFL_WATCH_MIN_S + (unsigned)(rand01(r) * REFL_WATCH_MIN_S);
    if ((rv = qescape(r->rv)) == NULL)
        goto out;
    if (asprintf(&q, "allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%u&watch=1%s%s", rv, to,
                 r->sel ? "&labelSelector=" : "", r->sel ? r->sel : "") < 0) {
        q = NULL;
        goto out;
    }
    rc = k8s_watch(r->c, r->path, q, on_wevent, on_wend, r, &r->call);
out:
    free(rv);
    free(q);
    if (rc != BD_OK) {
        r->call = NULL;
        fail(r, "watch", bd_strerror(rc));
        return;
    }
    r->watch_started = ev_now(r->loop);
    r->watch_progress = false;
    if (!r->synced) {
        ev_timer_set(&r->accept, REFL_ACCEPT_S, 0.);
        ev_timer_start(r->loop, &r->accept);
    }
}

static void step(k8s_refl_t *r)
{
    if (r->want_list)
        list_page(r);
    else
        watch_start(r);
}

static bool too_large_rv(const char *msg)
{
    return msg != NULL && strstr(msg, "Too large resource version") != NULL;
}

static void cancel_watch(k8s_refl_t *r)
{
    ev_timer_stop(r->loop, &r->accept);
    k8s_call_cancel(r->call);
    r->call = NULL;
}

static void on_wevent(void *arg, const char *type, json_t *obj)
{
    k8s_refl_t *r = arg;
    enter(r);
    if (r->stopped || r->call == NULL)
        goto out;
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0 || strcmp(type, "DELETED") == 0) {
        const char *rv = obj_rv(obj);
        if (rv == NULL || *rv == '\0') {
            cancel_watch(r);
            fail(r, "watch", "an event without metadata.resourceVersion");
            goto out;
        }
        accepted(r);
        if (r->stopped)
            goto out;
        fill_type(r, obj);
        set_str(&r->rv, rv);
        r->watch_progress = true;
        backoff_reset(r);
        if (r->h.event != NULL)
            r->h.event(r->arg, type, obj);
    } else if (strcmp(type, "BOOKMARK") == 0) {
        const char *rv = obj_rv(obj);
        if (rv == NULL || *rv == '\0')
            goto out; /* nothing to learn from it */
        accepted(r);
        if (r->stopped)
            goto out;
        set_str(&r->rv, rv);
        r->watch_progress = true;
        backoff_reset(r);
        if (r->h.bookmark != NULL)
            r->h.bookmark(r->arg, rv);
    } else if (strcmp(type, "ERROR") == 0) {
        json_int_t code = json_integer_value(json_object_get(obj, "code"));
        const char *reason = json_string_value(json_object_get(obj, "reason"));
        const char *msg = json_string_value(json_object_get(obj, "message"));
        char why[600];
        snprintf(why, sizeof(why), "ERROR event %lld %s: %s", (long long)code, reason ? reason : "",
                 msg ? msg : "");
        cancel_watch(r);
        if (code == 410 || (reason != NULL && (strcmp(reason, "Expired") == 0 || strcmp(reason, "Gone") == 0)) ||
            too_large_rv(msg))
            relist(r, why);
        else
            fail(r, "watch", why);
    } else {
        bd_debug("%s: watch event of unknown type %s ignored", r->desc, type);
    }
out:
    leave(r);
}

static void on_wend(void *arg, const k8s_resp_t *resp)
{
    k8s_refl_t *r = arg;
    r->call = NULL;
    enter(r);
    ev_timer_stop(r->loop, &r->accept);
    if (resp->code == BD_OK) {
        bool healthy = r->watch_progress || ev_now(r->loop) - r->watch_started >= REFL_HEALTHY_S;
        if (healthy) {
            backoff_reset(r);
            bd_debug("%s: watch ended; watching again from resourceVersion %s", r->desc, r->rv);
            step(r);
        } else {
            fail(r, "watch", "the server ended the watch at once");
        }
    } else if (resp->code == BD_EGONE || too_large_rv(resp->message)) {
        relist(r, resp->message);
    } else {
        fail(r, "watch", resp->message);
    }
    leave(r);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    k8s_refl_t *r = w->data;
    enter(r);
    step(r);
    leave(r);
}

static void on_accept(struct ev_loop *loop, ev_timer *w, int revents)
{
    k8s_refl_t *r = w->data;
    enter(r);
    accepted(r);
    leave(r);
}

/* ---- public ------------------------------------------------------------------------- */

static void refl_free(k8s_refl_t *r)
{
    json_decref(r->items);
    free(r->cont);
    free(r->rv);
    free(r->ns);
    free(r->sel);
    free(r->path);
    free(r->api_version);
    free(r->desc);
    free(r);
}

int k8s_refl_start(k8s_client_t *c, const k8s_refl_opts_t *o, const k8s_refl_hooks_t *h, void *arg,
                   k8s_refl_t **out, bd_err_t *err)
{
    *out = NULL;
    if (c == NULL || o == NULL || h == NULL || o->res.plural == NULL || o->res.version == NULL ||
        o->res.kind == NULL || *o->res.plural == '\0' || *o->res.version == '\0')
        return bd_err_set(err, BD_EINVAL, "reflector: missing client, options, hooks or resource");
    if (o->ns != NULL && *o->ns != '\0' && !o->res.namespaced)
        return bd_err_set(err, BD_EINVAL, "reflector: %s is cluster-scoped, no namespace applies", o->res.plural);
    k8s_refl_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    r->c = c;
    r->loop = k8s_client_loop(c);
    r->res = o->res;
    if (r->res.group == NULL)
        r->res.group = "";
    r->h = *h;
    r->arg = arg;
    r->page_size = o->page_size ? o->page_size : REFL_PAGE_SIZE;
    r->watch_timeout_s = o->watch_timeout_s;
    r->bo_min = o->backoff_min_ms ? o->backoff_min_ms : REFL_BACKOFF_MIN_MS;
    r->bo_max = o->backoff_max_ms ? o->backoff_max_ms : REFL_BACKOFF_MAX_MS;
    if (r->bo_max < r->bo_min)
        r->bo_max = r->bo_min;
    r->backoff_ms = r->bo_min;
    r->rng = (uint64_t)(uintptr_t)r ^ ((uint64_t)(ev_time() * 1e9)) ^ 0x9E3779B97F4A7C15ULL;
    if (r->rng == 0)
        r->rng = 1;
    bool ns = o->ns != NULL && *o->ns != '\0';
    bool ok = (r->rv = strdup(o->resume_rv ? o->resume_rv : "")) != NULL && (r->items = json_array()) != NULL &&
              (!ns || (r->ns = strdup(o->ns)) != NULL) &&
              (o->label_selector == NULL || *o->label_selector == '\0' ||
               (r->sel = qescape(o->label_selector)) != NULL) &&
              (r->path = k8s_path(&r->res, r->ns, NULL, NULL)) != NULL;
    if (ok) {
        if (*r->res.group)
            ok = asprintf(&r->api_version, "%s/%s", r->res.group, r->res.version) >= 0;
        else
            ok = (r->api_version = strdup(r->res.version)) != NULL;
        if (!ok)
            r->api_version = NULL;
    }
    if (ok && asprintf(&r->desc, "%s%s%s%s", r->res.plural, *r->res.group ? "." : "", r->res.group,
                       ns ? "" : " (all namespaces)") < 0) {
        r->desc = NULL;
        ok = false;
    }
    if (ok && ns) {
        char *d = NULL;
        ok = asprintf(&d, "%s in %s", r->desc, r->ns) >= 0;
        if (ok) {
            free(r->desc);
            r->desc = d;
        }
    }
    if (!ok) {
        refl_free(r);
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    }
    r->want_list = *r->rv == '\0';
    ev_timer_init(&r->timer, on_timer, 0., 0.);
    ev_timer_init(&r->accept, on_accept, REFL_ACCEPT_S, 0.);
    r->timer.data = r->accept.data = r;
    ev_timer_start(r->loop, &r->timer); /* the first call is made from the loop */
    *out = r;
    return BD_OK;
}

void k8s_refl_stop(k8s_refl_t *r)
{
    if (r == NULL || r->stopped)
        return;
    k8s_call_cancel(r->call);
    r->call = NULL;
    ev_timer_stop(r->loop, &r->timer);
    ev_timer_stop(r->loop, &r->accept);
    r->stopped = true;
    if (r->depth == 0)
        refl_free(r);
}

const char *k8s_refl_rv(const k8s_refl_t *r)
{
    return r->rv;
}

bool k8s_refl_synced(const k8s_refl_t *r)
{
    return r->synced;
}

