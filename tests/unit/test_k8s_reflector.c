/*
 * test_k8s_reflector.c - the reflector (src/k8s/reflector.c) against the API-server
 * double, in process: paginated list then watch, events in order, bookmarks, 410 as an
 * ERROR event (after compaction) and as an expired continue token, resume from a given
 * resourceVersion, dropped streams, backoff after failures, a namespace subset, the
 * apiVersion/kind of list items, and stopping from inside a hook.
 *
 * The loop runs only inside kfx_run_until(), so a test can change the server (directly or
 * over HTTP from this thread) while the reflector is not looking. Every wait has a
 * deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>

#include "apiserver.h"
#include "client.h"
#include "k8s_fixture.h"
#include "log.h"
#include "reflector.h"

#define GROUP "bindy.firestoned.io"
#define API "bindy.firestoned.io/v1beta1"
#define AREC_PATH "/apis/bindy.firestoned.io/v1beta1/arecords"
#define AREC_NS_PATH "/apis/bindy.firestoned.io/v1beta1/namespaces/dns-system/arecords"

static const k8s_res_t arecords = {GROUP, "v1beta1", "arecords", "ARecord", true};
static const k8s_res_t configmaps = {"", "v1", "configmaps", "ConfigMap", true};

/* ---- fixture: a double, a client, a loop (k8s_fixture.h) ------------------------------ */

static void fx_start(kfx_t *f, unsigned bookmark_ms)
{
    kfx_opts_t o = {.bookmark_ms = bookmark_ms, .qps = 1000, .burst = 1000};
    kfx_start(f, &o);
}

static bool watching(void *arg)
{
    kfx_t *f = arg;
    return bd_apiserver_watches_open(f->as) > 0;
}

/* ---- the double: objects and HTTP ---------------------------------------------------------- */

/* The stored object's resourceVersion. */
static char *server_rv(kfx_t *f, const char *ns, const char *name)
{
    char *txt = bd_apiserver_get(f->as, GROUP, "arecords", ns, name);
    assert_non_null(txt);
    json_t *o = json_loads(txt, 0, NULL);
    free(txt);
    assert_non_null(o);
    char *rv = strdup(json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion")));
    json_decref(o);
    return rv;
}

static char *u64s(uint64_t v)
{
    char *s = NULL;
    assert_true(asprintf(&s, "%llu", (unsigned long long)v) > 0);
    return s;
}

/* Request-log entries for verb (list/watch) whose path starts with path. */
static size_t log_find(kfx_t *f, const char *verb, const char *path, bd_apiserver_req_t *out, size_t max)
{
    size_t n = bd_apiserver_log_count(f->as), k = 0;
    for (size_t i = 0; i < n; i++) {
        bd_apiserver_req_t r;
        if (bd_apiserver_log_get(f->as, i, &r) != BD_OK)
            continue;
        if (strcmp(r.verb, verb) != 0 || strncmp(r.path, path, strlen(path)) != 0)
            continue;
        if (k < max)
            out[k] = r;
        k++;
    }
    return k;
}

/* ---- a recording consumer ---------------------------------------------------------------- */

typedef struct rec {
    char **line;
    size_t n;
    unsigned lists, list_ends, items, events, bookmarks, synced, unsynced;
    char last_bookmark[32];
    bool bad_type;            /* an object without apiVersion/kind */
    const char *want_api, *want_kind;
    int stop_after_items;     /* > 0: stop the reflector at that item */
    k8s_refl_t *r;
    unsigned calls_after_stop;
    bool stopped;
} rec_t;

static void rec_add(rec_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rec_add(rec_t *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    assert_true(vasprintf(&s, fmt, ap) >= 0);
    va_end(ap);
    c->line = realloc(c->line, (c->n + 1) * sizeof(*c->line));
    c->line[c->n++] = s;
}

static void rec_free(rec_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->line[i]);
    free(c->line);
}

static void rec_check_type(rec_t *c, json_t *obj)
{
    const char *api = json_string_value(json_object_get(obj, "apiVersion"));
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    if (!api || !kind || strcmp(api, c->want_api ? c->want_api : API) != 0 ||
        strcmp(kind, c->want_kind ? c->want_kind : "ARecord") != 0)
        c->bad_type = true;
}

static const char *m_ns(json_t *o)
{
    return json_string_value(json_object_get(json_object_get(o, "metadata"), "namespace"));
}
static const char *m_name(json_t *o)
{
    return json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
}
static const char *m_rv(json_t *o)
{
    return json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"));
}

static void c_list_begin(void *arg)
{
    rec_t *c = arg;
    if (c->stopped)
        c->calls_after_stop++;
    c->lists++;
    rec_add(c, "LIST");
}

static void c_list_item(void *arg, json_t *obj)
{
    rec_t *c = arg;
    if (c->stopped)
        c->calls_after_stop++;
    c->items++;
    rec_check_type(c, obj);
    rec_add(c, "ITEM %s/%s %s", m_ns(obj), m_name(obj), m_rv(obj));
    if (c->stop_after_items > 0 && c->items == (unsigned)c->stop_after_items) {
        k8s_refl_stop(c->r);
        c->stopped = true;
    }
}

static void c_list_end(void *arg, const char *rv)
{
    rec_t *c = arg;
    if (c->stopped)
        c->calls_after_stop++;
    c->list_ends++;
    rec_add(c, "END %s", rv);
}

static void c_event(void *arg, const char *type, json_t *obj)
{
    rec_t *c = arg;
    if (c->stopped)
        c->calls_after_stop++;
    c->events++;
    rec_check_type(c, obj);
    rec_add(c, "%s %s/%s %s", type, m_ns(obj), m_name(obj), m_rv(obj));
}

static void c_bookmark(void *arg, const char *rv)
{
    rec_t *c = arg;
    if (c->stopped)
        c->calls_after_stop++;
    c->bookmarks++;
    snprintf(c->last_bookmark, sizeof(c->last_bookmark), "%s", rv);
}

static void c_state(void *arg, bool synced, const char *why)
{
    rec_t *c = arg;
    if (c->stopped)
        c->calls_after_stop++;
    if (synced)
        c->synced++;
    else
        c->unsynced++;
}

static const k8s_refl_hooks_t hooks = {c_list_begin, c_list_item, c_list_end, c_event, c_bookmark, c_state};

/* Lines of c from index from that are not "bookmark" noise, joined with '|'. */
static char *rec_join(const rec_t *c, size_t from)
{
    size_t len = 1;
    for (size_t i = from; i < c->n; i++)
        len += strlen(c->line[i]) + 1;
    char *s = calloc(1, len);
    for (size_t i = from; i < c->n; i++) {
        if (i > from)
            strcat(s, "|");
        strcat(s, c->line[i]);
    }
    return s;
}

typedef struct wait_n {
    unsigned *counter;
    unsigned want;
} wait_n_t;

static bool reached(void *arg)
{
    wait_n_t *w = arg;
    return *w->counter >= w->want;
}

static bool wait_count(kfx_t *f, unsigned *counter, unsigned want, double timeout_s)
{
    wait_n_t w = {counter, want};
    return kfx_run_until(f->loop, reached, &w, timeout_s);
}

static k8s_refl_t *refl_start(kfx_t *f, rec_t *c, const k8s_res_t *res, const char *ns, const char *resume,
                              unsigned page_size, unsigned bo_min, unsigned bo_max)
{
    k8s_refl_opts_t o = {.res = *res, .ns = ns, .resume_rv = resume, .page_size = page_size,
                         .backoff_min_ms = bo_min, .backoff_max_ms = bo_max};
    k8s_refl_t *r = NULL;
    bd_err_t err;
    if (k8s_refl_start(f->c, &o, &hooks, c, &r, &err) != BD_OK)
        fail_msg("k8s_refl_start: %s", err.msg);
    c->r = r;
    return r;
}

/* ---- tests --------------------------------------------------------------------------------- */

/* 27 objects in pages of 10 (3 LIST calls with limit and continue), delivered at once
 * with apiVersion/kind; then the watch from the list's rv, with bookmarks allowed; then
 * an add, an update and a delete arrive in order with their resourceVersions. */
static void test_list_pages_then_watch(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    char name[32], ip[32];
    for (int i = 0; i < 25; i++) {
        snprintf(name, sizeof(name), "r%02d", i);
        snprintf(ip, sizeof(ip), "10.0.0.%d", i + 1);
        kfx_create_a(&f, "dns-system", name, ip);
    }
    kfx_create_a(&f, "other", "o1", "10.1.0.1");
    kfx_create_a(&f, "other", "o2", "10.1.0.2");
    char *list_rv = u64s(bd_apiserver_resource_version(f.as));

    rec_t c = {0};
    k8s_refl_t *r = refl_start(&f, &c, &arecords, NULL, NULL, 10, 50, 1000);
    assert_string_equal(k8s_refl_rv(r), "");
    assert_false(k8s_refl_synced(r));
    assert_true(wait_count(&f, &c.list_ends, 1, 10));
    assert_int_equal(c.lists, 1);
    assert_int_equal(c.items, 27);
    assert_false(c.bad_type);
    assert_true(k8s_refl_synced(r));
    assert_string_equal(k8s_refl_rv(r), list_rv);
    /* items in the server's order (namespace, name), the end carrying the list's rv */
    assert_string_equal(c.line[0], "LIST");
    for (int i = 0; i < 25; i++) {
        char want[64];
        char *rv = NULL;
        snprintf(name, sizeof(name), "r%02d", i);
        rv = server_rv(&f, "dns-system", name);
        snprintf(want, sizeof(want), "ITEM dns-system/%s %s", name, rv);
        assert_string_equal(c.line[1 + i], want);
        free(rv);
    }
    assert_true(strncmp(c.line[26], "ITEM other/o1 ", 14) == 0);
    assert_true(strncmp(c.line[27], "ITEM other/o2 ", 14) == 0);
    char want_end[64];
    snprintf(want_end, sizeof(want_end), "END %s", list_rv);
    assert_string_equal(c.line[28], want_end);

    /* three pages: limit=10, then continue tokens */
    bd_apiserver_req_t lg[8];
    assert_int_equal(log_find(&f, "list", AREC_PATH, lg, 8), 3);
    assert_string_equal(lg[0].query, "limit=10");
    assert_non_null(strstr(lg[1].query, "limit=10&continue="));
    assert_non_null(strstr(lg[2].query, "limit=10&continue="));
    /* the watch, from the list's rv, bookmarks allowed */
    assert_true(kfx_run_until(f.loop, watching, &f, 5));
    assert_int_equal(log_find(&f, "watch", AREC_PATH, lg, 8), 1);
    char want_q[128];
    snprintf(want_q, sizeof(want_q), "resourceVersion=%s&", list_rv);
    assert_non_null(strstr(lg[0].query, want_q));
    assert_non_null(strstr(lg[0].query, "allowWatchBookmarks=true"));
    assert_non_null(strstr(lg[0].query, "watch=1"));
    const char *to = strstr(lg[0].query, "timeoutSeconds=");
    assert_non_null(to);
    int secs = atoi(to + 15);
    assert_true(secs >= 300 && secs < 600);

    /* add, update, delete: in order, each with its own rv */
    size_t mark = c.n;
    kfx_create_a(&f, "dns-system", "r25", "10.0.0.99");
    char *rv_add = server_rv(&f, "dns-system", "r25");
    kfx_patch_a(&f, "dns-system", "r00", "10.9.9.9");
    char *rv_mod = server_rv(&f, "dns-system", "r00");
    kfx_delete_a(&f, "dns-system", "r01");
    char *rv_del = u64s(bd_apiserver_resource_version(f.as));
    assert_true(wait_count(&f, &c.events, 3, 10));
    kfx_run_for(f.loop, 0.2); /* nothing more may come */
    char *got = rec_join(&c, mark), want[512];
    snprintf(want, sizeof(want), "ADDED dns-system/r25 %s|MODIFIED dns-system/r00 %s|DELETED dns-system/r01 %s",
             rv_add, rv_mod, rv_del);
    assert_string_equal(got, want);
    assert_string_equal(k8s_refl_rv(r), rv_del);
    assert_false(c.bad_type);
    assert_int_equal(c.lists, 1);

    free(got);
    free(rv_add);
    free(rv_mod);
    free(rv_del);
    free(list_rv);
    k8s_refl_stop(r);
    rec_free(&c);
    kfx_stop(&f);
}

/* Built-in list items come without apiVersion/kind: the reflector fills them in. */
static void test_list_items_get_type(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    bd_err_t err;
    for (int i = 0; i < 3; i++) {
        char j[256];
        snprintf(j, sizeof(j),
                 "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cm%d\",\"namespace\":\"dns-system\"},"
                 "\"data\":{\"k\":\"v\"}}",
                 i);
        assert_int_equal(bd_apiserver_create(f.as, j, &err), BD_OK);
    }
    rec_t c = {.want_api = "v1", .want_kind = "ConfigMap"};
    k8s_refl_t *r = refl_start(&f, &c, &configmaps, "dns-system", NULL, 2, 50, 1000);
    assert_true(wait_count(&f, &c.list_ends, 1, 10));
    assert_int_equal(c.items, 3);
    assert_false(c.bad_type);
    k8s_refl_stop(r);
    rec_free(&c);
    kfx_stop(&f);
}

/* Bookmarks move the reflector's rv past the last event of its own resource. */
static void test_bookmarks(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 100);
    kfx_create_a(&f, "dns-system", "a", "10.0.0.1");
    rec_t c = {0};
    k8s_refl_t *r = refl_start(&f, &c, &arecords, "dns-system", NULL, 0, 50, 1000);
    assert_true(wait_count(&f, &c.list_ends, 1, 10));
    char *after_list = strdup(k8s_refl_rv(r));
    /* another resource moves the server's rv on */
    bd_err_t err;
    assert_int_equal(bd_apiserver_create(f.as,
                                         "{\"apiVersion\":\"" API "\",\"kind\":\"TXTRecord\",\"metadata\":{\"name\":\"t\","
                                         "\"namespace\":\"dns-system\"},\"spec\":{\"name\":\"t\",\"text\":[\"x\"]}}",
                                         &err),
                     BD_OK);
    char *now = u64s(bd_apiserver_resource_version(f.as));
    assert_string_not_equal(now, after_list);
    unsigned before = c.bookmarks;
    assert_true(wait_count(&f, &c.bookmarks, before + 2, 5));
    assert_string_equal(c.last_bookmark, now);
    assert_string_equal(k8s_refl_rv(r), now);
    assert_int_equal(c.events, 0);
    free(now);
    free(after_list);
    k8s_refl_stop(r);
    rec_free(&c);
    kfx_stop(&f);
}

/* The watch breaks, objects change meanwhile and the history is compacted: re-watching
 * from the old rv gets 410 (an ERROR event), and a full list delivers the new set. */
static void test_gone_relists(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    kfx_create_a(&f, "dns-system", "a", "10.0.0.1");
    kfx_create_a(&f, "dns-system", "b", "10.0.0.2");
    kfx_create_a(&f, "dns-system", "c", "10.0.0.3");
    rec_t c = {0};
    k8s_refl_t *r = refl_start(&f, &c, &arecords, NULL, NULL, 0, 50, 1000);
    assert_true(wait_count(&f, &c.list_ends, 1, 10));
    assert_true(kfx_run_until(f.loop, watching, &f, 5));
    char *old_rv = strdup(k8s_refl_rv(r));
    char *rv_a = server_rv(&f, "dns-system", "a");

    /* the loop is not running: the reflector sees none of this as it happens */
    bd_apiserver_drop_watches(f.as);
    kfx_patch_a(&f, "dns-system", "b", "10.0.0.22");
    kfx_delete_a(&f, "dns-system", "c");
    kfx_create_a(&f, "dns-system", "d", "10.0.0.4");
    bd_apiserver_compact(f.as);
    char *rv_b = server_rv(&f, "dns-system", "b"), *rv_d = server_rv(&f, "dns-system", "d");
    char *now = u64s(bd_apiserver_resource_version(f.as));

    size_t mark = c.n;
    assert_true(wait_count(&f, &c.list_ends, 2, 10));
    char *got = rec_join(&c, mark), want[512];
    snprintf(want, sizeof(want), "LIST|ITEM dns-system/a %s|ITEM dns-system/b %s|ITEM dns-system/d %s|END %s", rv_a,
             rv_b, rv_d, now);
    assert_string_equal(got, want);
    assert_int_equal(c.events, 0);
    assert_true(c.unsynced >= 1);
    assert_true(k8s_refl_synced(r));
    /* the re-watch asked for the old rv and was refused; then a new list and watch */
    bd_apiserver_req_t lg[8];
    size_t nw = log_find(&f, "watch", AREC_PATH, lg, 8);
    assert_true(nw >= 2);
    char q[64];
    snprintf(q, sizeof(q), "resourceVersion=%s&", old_rv);
    assert_non_null(strstr(lg[1].query, q));
    assert_int_equal(log_find(&f, "list", AREC_PATH, lg, 8), 2);

    free(got);
    free(old_rv);
    free(rv_a);
    free(rv_b);
    free(rv_d);
    free(now);
    k8s_refl_stop(r);
    rec_free(&c);
    kfx_stop(&f);
}

/* Resuming from a given rv: no list, a watch from that rv, the changes after it only. */
static void test_resume(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    kfx_create_a(&f, "dns-system", "a", "10.0.0.1");
    kfx_create_a(&f, "dns-system", "b", "10.0.0.2");
    char *from = u64s(bd_apiserver_resource_version(f.as));
    kfx_create_a(&f, "dns-system", "c", "10.0.0.3");
    kfx_patch_a(&f, "dns-system", "a", "10.0.0.11");
    char *rv_c = server_rv(&f, "dns-system", "c"), *rv_a = server_rv(&f, "dns-system", "a");

    rec_t c = {0};
    k8s_refl_t *r = refl_start(&f, &c, &arecords, "dns-system", from, 0, 50, 1000);
    assert_string_equal(k8s_refl_rv(r), from);
    assert_true(wait_count(&f, &c.events, 2, 10));
    char *got = rec_join(&c, 0), want[256];
    snprintf(want, sizeof(want), "ADDED dns-system/c %s|MODIFIED dns-system/a %s", rv_c, rv_a);
    assert_string_equal(got, want);
    assert_int_equal(c.lists, 0);
    assert_true(c.synced >= 1);
    assert_true(k8s_refl_synced(r));
    bd_apiserver_req_t lg[4];
    assert_int_equal(log_find(&f, "list", AREC_NS_PATH, lg, 4), 0);
    assert_int_equal(log_find(&f, "watch", AREC_NS_PATH, lg, 4), 1);
    char q[64];
    snprintf(q, sizeof(q), "resourceVersion=%s&", from);
    assert_non_null(strstr(lg[0].query, q));
    free(got);

    /* a resumed watch with nothing to say is accepted after a while all the same */
    rec_t c2 = {0};
    char *now = u64s(bd_apiserver_resource_version(f.as));
    k8s_refl_t *r2 = refl_start(&f, &c2, &arecords, "other", now, 0, 50, 1000);
    assert_true(wait_count(&f, &c2.synced, 1, 5));
    assert_int_equal(c2.lists + c2.events, 0);

    free(now);
    free(from);
    free(rv_c);
    free(rv_a);
    k8s_refl_stop(r);
    k8s_refl_stop(r2);
    rec_free(&c);
    rec_free(&c2);
    kfx_stop(&f);
}

/* Resuming from an rv the server has compacted away: 410, then a list. */
static void test_resume_gone(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    kfx_create_a(&f, "dns-system", "a", "10.0.0.1");
    char *old = u64s(bd_apiserver_resource_version(f.as));
    kfx_create_a(&f, "dns-system", "b", "10.0.0.2");
    bd_apiserver_compact(f.as);
    rec_t c = {0};
    k8s_refl_t *r = refl_start(&f, &c, &arecords, "dns-system", old, 0, 50, 1000);
    assert_true(wait_count(&f, &c.list_ends, 1, 10));
    assert_int_equal(c.events, 0);
    assert_int_equal(c.items, 2);
    assert_true(c.unsynced >= 1);
    free(old);
    k8s_refl_stop(r);
    rec_free(&c);

    /* from an rv the server has not reached (504 "Too large resource version", which the
     * client retries first: a client that retries once keeps the test short): a list */
    k8s_client_t *main_client = f.c;
    k8s_client_opts_t co;
    k8s_client_opts_init(&co);
    co.max_retries = 1;
    kfx_client(&f, &co);
    rec_t c2 = {0};
    r = refl_start(&f, &c2, &arecords, "dns-system", "999999", 0, 50, 1000);
    assert_true(wait_count(&f, &c2.list_ends, 1, 10));
    assert_int_equal(c2.items, 2);
    assert_int_equal(c2.events, 0);
    char *now = u64s(bd_apiserver_resource_version(f.as));
    assert_string_equal(k8s_refl_rv(r), now);
    free(now);
    k8s_refl_stop(r);
    rec_free(&c2);
    k8s_client_free(f.c);
    f.c = main_client;
    kfx_stop(&f);
}

/* Streams dropped twice; what changed meanwhile arrives once, without a relist. */
static void test_dropped_streams(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    kfx_create_a(&f, "dns-system", "a", "10.0.0.1");
    rec_t c = {0};
    k8s_refl_t *r = refl_start(&f, &c, &arecords, "dns-system", NULL, 0, 50, 200);
    assert_true(wait_count(&f, &c.list_ends, 1, 10));
    assert_true(kfx_run_until(f.loop, watching, &f, 5));
    size_t mark = c.n;
    char want[512] = "";
    for (int round = 0; round < 2; round++) {
        char *before = strdup(k8s_refl_rv(r));
        bd_apiserver_drop_watches(f.as);
        char name[16];
        snprintf(name, sizeof(name), "n%d", round);
        kfx_create_a(&f, "dns-system", name, "10.0.1.1");
        kfx_patch_a(&f, "dns-system", "a", round ? "10.0.0.3" : "10.0.0.2");
        char *rv_n = server_rv(&f, "dns-system", name), *rv_a = server_rv(&f, "dns-system", "a");
        char part[160];
        snprintf(part, sizeof(part), "%sADDED dns-system/%s %s|MODIFIED dns-system/a %s", round ? "|" : "", name,
                 rv_n, rv_a);
        strcat(want, part);
        assert_true(wait_count(&f, &c.events, 2u * (round + 1), 10));
        /* the new watch started from the rv the reflector had */
        bd_apiserver_req_t lg[8];
        size_t nw = log_find(&f, "watch", AREC_NS_PATH, lg, 8);
        assert_true(nw >= (size_t)round + 2);
        char q[64];
        snprintf(q, sizeof(q), "resourceVersion=%s&", before);
        assert_non_null(strstr(lg[nw - 1].query, q));
        free(before);
        free(rv_n);
        free(rv_a);
        assert_true(kfx_run_until(f.loop, watching, &f, 5));
    }
    kfx_run_for(f.loop, 0.3);
    char *got = rec_join(&c, mark);
    assert_string_equal(got, want);
    assert_int_equal(c.lists, 1);
    assert_true(c.unsynced >= 2);
    assert_true(k8s_refl_synced(r));
    free(got);
    k8s_refl_stop(r);
    rec_free(&c);
    kfx_stop(&f);
}

/* An expired continue token (410 on page 2) starts the list again; the consumer gets
 * one complete list, never a partial one. */
typedef struct cont_ctx {
    kfx_t *f;
    bool done;
} cont_ctx_t;

static bool compact_after_first_page(void *arg)
{
    cont_ctx_t *x = arg;
    bd_apiserver_req_t lg[4];
    if (!x->done && log_find(x->f, "list", AREC_NS_PATH, lg, 4) >= 1) {
        /* page 2 is on its way, held by the latency: expire its token */
        kfx_create_a(x->f, "dns-system", "late", "10.0.9.9");
        bd_apiserver_compact(x->f->as);
        x->done = true;
    }
    return false;
}

typedef struct both {
    bool (*a)(void *);
    void *aa;
    unsigned *counter;
    unsigned want;
} both_t;

static bool both_cond(void *arg)
{
    both_t *b = arg;
    b->a(b->aa);
    return *b->counter >= b->want;
}

static void test_continue_expired(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    for (int i = 0; i < 25; i++) {
        char name[16];
        snprintf(name, sizeof(name), "r%02d", i);
        kfx_create_a(&f, "dns-system", name, "10.0.0.1");
    }
    bd_apiserver_set_latency(f.as, 300);
    rec_t c = {0};
    k8s_refl_t *r = refl_start(&f, &c, &arecords, "dns-system", NULL, 10, 50, 1000);
    cont_ctx_t x = {&f, false};
    both_t b = {compact_after_first_page, &x, &c.list_ends, 1};
    assert_true(kfx_run_until(f.loop, both_cond, &b, 20));
    bd_apiserver_set_latency(f.as, 0);
    assert_true(x.done);
    assert_int_equal(c.lists, 1);
    assert_int_equal(c.items, 26);
    /* one page was refused with 410, then the list started over without a token */
    bd_apiserver_req_t lg[16];
    size_t n = log_find(&f, "list", AREC_NS_PATH, lg, 16);
    assert_true(n >= 5 && n <= 16);
    size_t gone = 0, fresh = 0;
    for (size_t i = 0; i < n; i++) {
        if (lg[i].status == 410) {
            gone++;
            assert_non_null(strstr(lg[i].query, "continue="));
        }
        if (strcmp(lg[i].query, "limit=10") == 0)
            fresh++;
    }
    assert_int_equal(gone, 1);
    assert_int_equal(fresh, 2);
    k8s_refl_stop(r);
    rec_free(&c);
    kfx_stop(&f);
}

/* Failed lists are retried after a jittered exponential backoff: [d, 2d), d doubling. */
static void test_backoff(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    kfx_create_a(&f, "dns-system", "a", "10.0.0.1");
    bd_apiserver_fail_next(f.as, 3, 500, "list " AREC_PATH);
    rec_t c = {0};
    k8s_refl_t *r = refl_start(&f, &c, &arecords, NULL, NULL, 0, 100, 10000);
    assert_true(wait_count(&f, &c.list_ends, 1, 10));
    assert_int_equal(c.unsynced, 3);
    assert_int_equal(c.items, 1);
    bd_apiserver_req_t lg[8];
    assert_int_equal(log_find(&f, "list", AREC_PATH, lg, 8), 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(lg[i].status, 500);
    assert_int_equal(lg[3].status, 200);
    for (int i = 1; i < 4; i++) {
        double gap = lg[i].time - lg[i - 1].time, d = 0.1 * (1 << (i - 1));
        if (gap < d * 0.9 || gap > d * 2 + 0.5)
            fail_msg("retry %d after %.3f s, want [%.2f, %.2f)", i, gap, d, 2 * d);
    }
    k8s_refl_stop(r);
    rec_free(&c);
    kfx_stop(&f);
}

/* A hook may stop its own reflector: nothing is called afterwards. */
static void test_stop_in_hook(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof(name), "r%d", i);
        kfx_create_a(&f, "dns-system", name, "10.0.0.1");
    }
    rec_t c = {.stop_after_items = 2};
    refl_start(&f, &c, &arecords, NULL, NULL, 2, 50, 1000);
    assert_true(wait_count(&f, &c.items, 2, 10));
    kfx_create_a(&f, "dns-system", "later", "10.0.0.2");
    kfx_run_for(f.loop, 0.5);
    assert_true(c.stopped);
    assert_int_equal(c.items, 2);
    assert_int_equal(c.calls_after_stop, 0);
    assert_int_equal(c.list_ends, 0);
    assert_int_equal(bd_apiserver_watches_open(f.as), 0);
    rec_free(&c);
    kfx_stop(&f);
}

/* A namespace reflector sees its namespace only, in the list and in the watch. */
static void test_namespace(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    kfx_create_a(&f, "dns-system", "a", "10.0.0.1");
    kfx_create_a(&f, "other", "x", "10.0.0.2");
    rec_t c = {0};
    k8s_refl_t *r = refl_start(&f, &c, &arecords, "dns-system", NULL, 0, 50, 1000);
    assert_true(wait_count(&f, &c.list_ends, 1, 10));
    assert_int_equal(c.items, 1);
    assert_true(kfx_run_until(f.loop, watching, &f, 5));
    kfx_create_a(&f, "other", "y", "10.0.0.3");
    kfx_create_a(&f, "dns-system", "b", "10.0.0.4");
    assert_true(wait_count(&f, &c.events, 1, 10));
    kfx_run_for(f.loop, 0.2);
    assert_int_equal(c.events, 1);
    assert_true(strncmp(c.line[c.n - 1], "ADDED dns-system/b ", 19) == 0);
    bd_apiserver_req_t lg[4];
    assert_int_equal(log_find(&f, "list", "/apis/" API "/namespaces/dns-system/arecords", lg, 4), 1);
    k8s_refl_stop(r);
    rec_free(&c);
    kfx_stop(&f);
}

static void test_start_invalid(void **state)
{
    kfx_t f = {0};
    fx_start(&f, 0);
    k8s_refl_opts_t o = {.res = {"", "v1", "namespaces", "Namespace", false}, .ns = "dns-system"};
    k8s_refl_t *r = (k8s_refl_t *)1;
    bd_err_t err;
    assert_int_equal(k8s_refl_start(f.c, &o, &hooks, NULL, &r, &err), BD_EINVAL);
    assert_null(r);
    k8s_refl_stop(NULL);
    kfx_stop(&f);
}

int main(void)
{
    bd_log_set_level(getenv("TEST_DEBUG") ? BD_LOG_DEBUG : BD_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_pages_then_watch),
        cmocka_unit_test(test_list_items_get_type),
        cmocka_unit_test(test_bookmarks),
        cmocka_unit_test(test_gone_relists),
        cmocka_unit_test(test_resume),
        cmocka_unit_test(test_resume_gone),
        cmocka_unit_test(test_dropped_streams),
        cmocka_unit_test(test_continue_expired),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_stop_in_hook),
        cmocka_unit_test(test_namespace),
        cmocka_unit_test(test_start_invalid),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
