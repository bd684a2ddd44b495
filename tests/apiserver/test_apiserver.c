/*
 * test_apiserver.c - the API-server test double's semantics, through HTTP with libcurl:
 * CRUD and Status objects, conflicts, patches, server-side apply and managedFields, the
 * status subresource and generation, CRD schema work, finalizers, selectors, pagination,
 * watches (order, bookmarks, 410 after compaction, selectors), tables, discovery, fault
 * knobs, the request log, bearer auth and TLS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>

#include "apiserver.h"
#include "as_internal.h"

/* ---- HTTP helpers ------------------------------------------------------------------- */

typedef struct resp {
    long status;
    char *body;
    size_t len;
    char ctype[256];
    char retry_after[32];
    char warning[1024];
    json_t *json;
} resp_t;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    resp_t *r = ud;
    size_t add = sz * n;
    char *b = realloc(r->body, r->len + add + 1);
    if (!b)
        return 0;
    memcpy(b + r->len, p, add);
    r->body = b;
    r->len += add;
    r->body[r->len] = '\0';
    return add;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    resp_t *r = ud;
    size_t len = sz * n;
    char line[1200];
    snprintf(line, sizeof(line), "%.*s", (int)len, p);
    line[strcspn(line, "\r\n")] = '\0';
    if (strncasecmp(line, "Content-Type: ", 14) == 0)
        snprintf(r->ctype, sizeof(r->ctype), "%.255s", line + 14);
    else if (strncasecmp(line, "Retry-After: ", 13) == 0)
        snprintf(r->retry_after, sizeof(r->retry_after), "%.31s", line + 13);
    else if (strncasecmp(line, "Warning: ", 9) == 0)
        snprintf(r->warning, sizeof(r->warning), "%.1023s", line + 9);
    return len;
}

static void resp_free(resp_t *r)
{
    free(r->body);
    json_decref(r->json);
    memset(r, 0, sizeof(*r));
}

static const char *g_token;
static const char *g_cainfo;

/* method url(base+path) content-type body accept -> resp (json parsed when possible) */
static void req(bd_apiserver_t *s, const char *method, const char *path, const char *ctype,
                const char *body, const char *accept, resp_t *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", bd_apiserver_url(s), path);
    struct curl_slist *h = NULL;
    char buf[600];
    if (ctype) {
        snprintf(buf, sizeof(buf), "Content-Type: %s", ctype);
        h = curl_slist_append(h, buf);
    }
    snprintf(buf, sizeof(buf), "Accept: %s", accept ? accept : "application/json");
    h = curl_slist_append(h, buf);
    if (g_token) {
        snprintf(buf, sizeof(buf), "Authorization: Bearer %s", g_token);
        h = curl_slist_append(h, buf);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "test-apiserver/1.0 (cmocka)");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (g_cainfo)
        curl_easy_setopt(c, CURLOPT_CAINFO, g_cainfo);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode rc = curl_easy_perform(c);
    assert_int_equal(rc, CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body)
        r->json = json_loads(r->body, JSON_DECODE_ANY, NULL);
}

static const char *jstr(const json_t *j, const char *path)
{
    /* dotted path through objects */
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *cur = j;
    for (char *t = strtok(buf, "."); t && cur; t = strtok(NULL, "."))
        cur = json_object_get(cur, t);
    return json_string_value(cur);
}

static json_int_t jint(const json_t *j, const char *path)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *cur = j;
    for (char *t = strtok(buf, "."); t && cur; t = strtok(NULL, "."))
        cur = json_object_get(cur, t);
    return json_integer_value(cur);
}

static unsigned long long rv_of(const json_t *obj)
{
    const char *rv = jstr(obj, "metadata.resourceVersion");
    assert_non_null(rv);
    return strtoull(rv, NULL, 10);
}

static void expect_status(const resp_t *r, long code, const char *reason)
{
    if (r->status != code)
        fprintf(stderr, "expected %ld, got %ld: %s\n", code, r->status, r->body ? r->body : "");
    assert_int_equal(r->status, code);
    assert_non_null(r->json);
    assert_string_equal(jstr(r->json, "kind"), "Status");
    assert_string_equal(jstr(r->json, "status"), "Failure");
    assert_int_equal(jint(r->json, "code"), code);
    if (reason)
        assert_string_equal(jstr(r->json, "reason"), reason);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    return b;
}

/* Register the Bind9Instance CRD from schema/crds (YAML -> JSON -> POST). */
static void load_crd(bd_apiserver_t *s, const char *file)
{
    char path[1024], err[256];
    const char *src = getenv("BINDY_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/schema/crds/%s", src ? src : BD_SOURCE_DIR, file);
    char *yaml = slurp(path);
    json_t *j = as__yaml_to_json(yaml, strlen(yaml), err, sizeof(err));
    assert_non_null(j);
    char *body = json_dumps(j, JSON_COMPACT);
    resp_t r;
    req(s, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        "application/json", body, NULL, &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    free(body);
    json_decref(j);
    free(yaml);
}

static bd_apiserver_t *start(unsigned history)
{
    bd_apiserver_opts_t o;
    bd_apiserver_opts_init(&o);
    o.bookmark_ms = 200;
    o.history = history;
    bd_apiserver_t *s = NULL;
    bd_err_t err;
    bd_err_clear(&err);
    assert_int_equal(bd_apiserver_start(&o, &s, &err), 0);
    return s;
}

#define NS_CM "/api/v1/namespaces/default/configmaps"
#define B9 "/apis/bindy.firestoned.io/v1beta1/namespaces/default/bind9instances"

static void create_cm(bd_apiserver_t *s, const char *name, const char *labels)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
             "\"labels\":{%s}},\"data\":{\"k\":\"v\"}}",
             name, labels ? labels : "");
    resp_t r;
    req(s, "POST", NS_CM, "application/json", body, NULL, &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
}

/* ---- watch client ------------------------------------------------------------------- */

typedef struct watcher {
    bd_apiserver_t *s;
    char path[1024];
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    char *buf;
    size_t len;
    json_t *events;
    bool done;
    CURLcode rc;
    long status;
} watcher_t;

static size_t w_body(char *p, size_t sz, size_t n, void *ud)
{
    watcher_t *w = ud;
    size_t add = sz * n;
    pthread_mutex_lock(&w->mu);
    char *b = realloc(w->buf, w->len + add + 1);
    memcpy(b + w->len, p, add);
    w->buf = b;
    w->len += add;
    w->buf[w->len] = '\0';
    char *nl;
    while ((nl = memchr(w->buf, '\n', w->len))) {
        *nl = '\0';
        json_t *ev = json_loads(w->buf, 0, NULL);
        if (ev)
            json_array_append_new(w->events, ev);
        size_t used = (size_t)(nl - w->buf) + 1;
        memmove(w->buf, nl + 1, w->len - used);
        w->len -= used;
    }
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    return add;
}

static void *w_main(void *ud)
{
    watcher_t *w = ud;
    CURL *c = curl_easy_init();
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", bd_apiserver_url(w->s), w->path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, w_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "test-apiserver/1.0 (cmocka)");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    CURLcode rc = curl_easy_perform(c);
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    curl_easy_cleanup(c);
    pthread_mutex_lock(&w->mu);
    w->rc = rc;
    w->status = st;
    w->done = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static watcher_t *watch_open(bd_apiserver_t *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static watcher_t *watch_open(bd_apiserver_t *s, const char *fmt, ...)
{
    watcher_t *w = calloc(1, sizeof(*w));
    w->s = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->path, sizeof(w->path), fmt, ap);
    va_end(ap);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->events = json_array();
    unsigned before = bd_apiserver_watches_open(s);
    pthread_create(&w->th, NULL, w_main, w);
    /* wait until the server has registered the watch (or it ended) */
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&w->mu);
        bool done = w->done;
        pthread_mutex_unlock(&w->mu);
        if (done || bd_apiserver_watches_open(s) > before)
            break;
        usleep(10000);
    }
    return w;
}

/* Wait until at least n events (or the stream ended); returns the count. */
static size_t watch_wait(watcher_t *w, size_t n, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (json_array_size(w->events) < n && !w->done)
        if (pthread_cond_timedwait(&w->cond, &w->mu, &ts) != 0)
            break;
    size_t got = json_array_size(w->events);
    pthread_mutex_unlock(&w->mu);
    return got;
}

/* Events of type (skipping BOOKMARKs unless asked) as a new array. */
static json_t *watch_events(watcher_t *w, bool bookmarks)
{
    json_t *out = json_array();
    pthread_mutex_lock(&w->mu);
    size_t i;
    json_t *e;
    json_array_foreach(w->events, i, e) {
        if (bookmarks || strcmp(jstr(e, "type"), "BOOKMARK") != 0)
            json_array_append(out, e);
    }
    pthread_mutex_unlock(&w->mu);
    return out;
}

static size_t watch_count_nonbookmark(watcher_t *w)
{
    json_t *ev = watch_events(w, false);
    size_t n = json_array_size(ev);
    json_decref(ev);
    return n;
}

static void watch_wait_nonbookmark(watcher_t *w, size_t n, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        if (watch_count_nonbookmark(w) >= n)
            return;
        pthread_mutex_lock(&w->mu);
        bool done = w->done;
        pthread_mutex_unlock(&w->mu);
        if (done)
            return;
        usleep(20000);
    }
}

static void watch_close(watcher_t *w)
{
    pthread_join(w->th, NULL);
    json_decref(w->events);
    free(w->buf);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    free(w);
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_crud_and_conflicts(void **state)
{
    bd_apiserver_t *s = start(1000);
    resp_t r;
    create_cm(s, "a", NULL);
    req(s, "POST", NS_CM, "application/json",
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\"}}", NULL, &r);
    expect_status(&r, 409, "AlreadyExists");
    assert_string_equal(jstr(r.json, "message"), "configmaps \"a\" already exists");
    resp_free(&r);

    req(s, "GET", NS_CM "/missing", NULL, NULL, NULL, &r);
    expect_status(&r, 404, "NotFound");
    assert_string_equal(jstr(r.json, "details.name"), "missing");
    assert_string_equal(jstr(r.json, "details.kind"), "configmaps");
    resp_free(&r);

    req(s, "GET", NS_CM "/a", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(jstr(r.json, "metadata.uid"));
    assert_non_null(jstr(r.json, "metadata.creationTimestamp"));
    unsigned long long rv1 = rv_of(r.json);
    json_t *obj = json_incref(r.json);
    resp_free(&r);

    /* update with the current RV works and bumps it; the stale one then conflicts */
    json_object_set_new(json_object_get(obj, "data"), "k", json_string("v2"));
    char *body = json_dumps(obj, JSON_COMPACT);
    req(s, "PUT", NS_CM "/a", "application/json", body, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(rv_of(r.json) > rv1);
    assert_string_equal(jstr(r.json, "data.k"), "v2");
    unsigned long long rv2 = rv_of(r.json);
    resp_free(&r);
    req(s, "PUT", NS_CM "/a", "application/json", body, NULL, &r);
    expect_status(&r, 409, "Conflict");
    assert_non_null(strstr(jstr(r.json, "message"), "the object has been modified"));
    resp_free(&r);
    free(body);

    /* a no-op update is not a write */
    req(s, "GET", NS_CM "/a", NULL, NULL, NULL, &r);
    body = json_dumps(r.json, JSON_COMPACT);
    resp_free(&r);
    req(s, "PUT", NS_CM "/a", "application/json", body, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(rv_of(r.json), rv2);
    resp_free(&r);
    free(body);
    json_decref(obj);

    /* list */
    create_cm(s, "b", NULL);
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "kind"), "ConfigMapList");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 2);
    assert_true(strtoull(jstr(r.json, "metadata.resourceVersion"), NULL, 10) ==
                bd_apiserver_resource_version(s));
    resp_free(&r);

    /* malformed JSON, oversized body, missing namespace, bad name, RV on create */
    req(s, "POST", NS_CM, "application/json", "{\"apiVersion\":", NULL, &r);
    expect_status(&r, 400, "BadRequest");
    resp_free(&r);
    size_t big = 3 * 1024 * 1024 + 10;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    huge[big] = '\0';
    req(s, "POST", NS_CM, "application/json", huge, NULL, &r);
    expect_status(&r, 413, "RequestEntityTooLarge");
    resp_free(&r);
    free(huge);
    req(s, "POST", "/api/v1/namespaces/nope/configmaps", "application/json",
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"x\"}}", NULL, &r);
    expect_status(&r, 404, "NotFound");
    assert_string_equal(jstr(r.json, "message"), "namespaces \"nope\" not found");
    resp_free(&r);
    req(s, "POST", NS_CM, "application/json",
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"Bad_Name\"}}", NULL, &r);
    expect_status(&r, 422, "Invalid");
    resp_free(&r);
    req(s, "POST", NS_CM, "application/json",
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\",\"resourceVersion\":\"5\"}}",
        NULL, &r);
    expect_status(&r, 400, "BadRequest");
    resp_free(&r);

    /* delete (built-ins answer a Success Status), then 404 */
    req(s, "DELETE", NS_CM "/b", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status"), "Success");
    resp_free(&r);
    req(s, "DELETE", NS_CM "/b", NULL, NULL, NULL, &r);
    expect_status(&r, 404, "NotFound");
    resp_free(&r);
    bd_apiserver_stop(s);
}

static void test_patches(void **state)
{
    bd_apiserver_t *s = start(1000);
    resp_t r;
    create_cm(s, "p", "\"app\":\"x\"");
    req(s, "PATCH", NS_CM "/p", "application/merge-patch+json",
        "{\"metadata\":{\"labels\":{\"app\":null,\"tier\":\"db\"}},\"data\":{\"n\":\"1\"}}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_null(jstr(r.json, "metadata.labels.app"));
    assert_string_equal(jstr(r.json, "metadata.labels.tier"), "db");
    assert_string_equal(jstr(r.json, "data.k"), "v");
    assert_string_equal(jstr(r.json, "data.n"), "1");
    resp_free(&r);
    req(s, "PATCH", NS_CM "/p", "application/json-patch+json",
        "[{\"op\":\"replace\",\"path\":\"/data/k\",\"value\":\"w\"},"
        "{\"op\":\"add\",\"path\":\"/data/z\",\"value\":\"9\"},{\"op\":\"remove\",\"path\":\"/data/n\"}]",
        NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "data.k"), "w");
    assert_string_equal(jstr(r.json, "data.z"), "9");
    assert_null(jstr(r.json, "data.n"));
    resp_free(&r);
    req(s, "PATCH", NS_CM "/p", "application/json-patch+json",
        "[{\"op\":\"test\",\"path\":\"/data/k\",\"value\":\"nope\"}]", NULL, &r);
    expect_status(&r, 422, NULL);
    resp_free(&r);
    /* as the API server's json-patch: an absent member tests equal to null (and only to null) */
    req(s, "PATCH", NS_CM "/p", "application/json-patch+json",
        "[{\"op\":\"test\",\"path\":\"/metadata/finalizers\",\"value\":null},"
        "{\"op\":\"add\",\"path\":\"/metadata/finalizers\",\"value\":[\"x.io/f\"]}]", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_array_get(json_object_get(json_object_get(r.json, "metadata"),
                                                                          "finalizers"), 0)), "x.io/f");
    resp_free(&r);
    req(s, "PATCH", NS_CM "/p", "application/json-patch+json",
        "[{\"op\":\"test\",\"path\":\"/metadata/absent\",\"value\":[]}]", NULL, &r);
    expect_status(&r, 422, NULL);
    resp_free(&r);
    req(s, "PATCH", NS_CM "/p", "application/strategic-merge-patch+json",
        "{\"data\":{\"s\":\"1\"},\"$setElementOrder/x\":[]}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "data.s"), "1");
    resp_free(&r);
    /* a strategic merge patch merges status.conditions by type: the other writers' stay */
    req(s, "POST", "/api/v1/namespaces/default/pods", "application/json",
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"smp\"},"
        "\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"i\"}]}}", NULL, &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    req(s, "PATCH", "/api/v1/namespaces/default/pods/smp/status", "application/merge-patch+json",
        "{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"},"
        "{\"type\":\"G\",\"status\":\"False\",\"reason\":\"r\"}]}}", NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    req(s, "PATCH", "/api/v1/namespaces/default/pods/smp/status", "application/strategic-merge-patch+json",
        "{\"status\":{\"conditions\":[{\"type\":\"G\",\"status\":\"True\"},{\"type\":\"H\",\"status\":\"True\"}]}}",
        NULL, &r);
    assert_int_equal(r.status, 200);
    const json_t *conds = json_object_get(json_object_get(r.json, "status"), "conditions");
    assert_int_equal(json_array_size(conds), 3);
    assert_string_equal(jstr(json_array_get(conds, 0), "type"), "Ready");
    assert_string_equal(jstr(json_array_get(conds, 0), "status"), "False");
    assert_string_equal(jstr(json_array_get(conds, 1), "type"), "G");
    assert_string_equal(jstr(json_array_get(conds, 1), "status"), "True");
    assert_string_equal(jstr(json_array_get(conds, 1), "reason"), "r");
    assert_string_equal(jstr(json_array_get(conds, 2), "type"), "H");
    resp_free(&r);
    /* a merge patch carrying a stale resourceVersion is a precondition */
    req(s, "PATCH", NS_CM "/p", "application/merge-patch+json",
        "{\"metadata\":{\"resourceVersion\":\"1\"},\"data\":{\"q\":\"1\"}}", NULL, &r);
    expect_status(&r, 409, "Conflict");
    resp_free(&r);
    req(s, "PATCH", NS_CM "/missing", "application/merge-patch+json", "{}", NULL, &r);
    expect_status(&r, 404, "NotFound");
    resp_free(&r);
    req(s, "PATCH", NS_CM "/p", "text/plain", "{}", NULL, &r);
    expect_status(&r, 415, "UnsupportedMediaType");
    resp_free(&r);
    /* managedFields record the updaters */
    req(s, "GET", NS_CM "/p", NULL, NULL, NULL, &r);
    json_t *mf = json_object_get(json_object_get(r.json, "metadata"), "managedFields");
    assert_true(json_array_size(mf) >= 1);
    assert_string_equal(jstr(json_array_get(mf, 0), "manager"), "test-apiserver");
    assert_string_equal(jstr(json_array_get(mf, 0), "operation"), "Update");
    resp_free(&r);
    bd_apiserver_stop(s);
}

static void test_crd_status_generation_schema(void **state)
{
    bd_apiserver_t *s = start(1000);
    resp_t r;
    load_crd(s, "bind9instances.yaml");
    /* discovery shows the new resource with its short names and status subresource */
    req(s, "GET", "/apis/bindy.firestoned.io/v1beta1", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"name\":\"bind9instances\""));
    assert_non_null(strstr(r.body, "\"bind9instances/status\""));
    assert_non_null(strstr(r.body, "\"b9\""));
    resp_free(&r);
    req(s, "GET", "/apis", NULL, NULL,
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
    assert_non_null(strstr(r.body, "\"resource\":\"bind9instances\""));
    resp_free(&r);

    /* create: status dropped, defaults applied, generation 1 */
    req(s, "POST", B9, "application/json",
        "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"Bind9Instance\","
        "\"metadata\":{\"name\":\"i1\",\"labels\":{\"region\":\"eu\"}},\"spec\":{\"replicas\":2},"
        "\"status\":{\"role\":\"primary\"}}",
        NULL, &r);
    assert_int_equal(r.status, 201);
    assert_int_equal(jint(r.json, "metadata.generation"), 1);
    assert_null(json_object_get(r.json, "status"));
    assert_string_equal(jstr(r.json, "spec.version"), "9.18");
    resp_free(&r);
    /* status subresource: PUT /status changes only status, not generation */
    req(s, "GET", B9 "/i1", NULL, NULL, NULL, &r);
    json_t *o = json_incref(r.json);
    resp_free(&r);
    json_object_set_new(o, "status", json_pack("{s:s,s:i}", "role", "primary", "readyReplicas", 2));
    json_object_set_new(json_object_get(o, "spec"), "replicas", json_integer(7));
    char *body = json_dumps(o, JSON_COMPACT);
    req(s, "PUT", B9 "/i1/status", "application/json", body, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "status.role"), "primary");
    assert_int_equal(jint(r.json, "spec.replicas"), 2);
    assert_int_equal(jint(r.json, "metadata.generation"), 1);
    resp_free(&r);
    free(body);
    json_decref(o);
    /* the main endpoint ignores status; a spec change bumps generation */
    req(s, "PATCH", B9 "/i1", "application/merge-patch+json",
        "{\"spec\":{\"replicas\":3},\"status\":{\"role\":\"secondary\"}}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "metadata.generation"), 2);
    assert_string_equal(jstr(r.json, "status.role"), "primary");
    resp_free(&r);
    req(s, "PATCH", B9 "/i1", "application/merge-patch+json",
        "{\"metadata\":{\"labels\":{\"x\":\"y\"}}}", NULL, &r);
    assert_int_equal(jint(r.json, "metadata.generation"), 2);
    resp_free(&r);
    req(s, "PATCH", B9 "/i1/status", "application/merge-patch+json",
        "{\"status\":{\"readyReplicas\":3}}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "status.readyReplicas"), 3);
    assert_int_equal(jint(r.json, "metadata.generation"), 2);
    resp_free(&r);
    /* schema: unknown fields (Strict: 400, default: pruned with a warning), enum (422) */
    req(s, "PATCH", B9 "/i1?fieldValidation=Strict", "application/merge-patch+json",
        "{\"spec\":{\"bogus\":1}}", NULL, &r);
    expect_status(&r, 400, "BadRequest");
    assert_non_null(strstr(jstr(r.json, "message"), "unknown field \"spec.bogus\""));
    resp_free(&r);
    req(s, "PATCH", B9 "/i1", "application/merge-patch+json", "{\"spec\":{\"bogus\":1}}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_null(json_object_get(json_object_get(r.json, "spec"), "bogus"));
    assert_non_null(strstr(r.warning, "unknown field \\\"spec.bogus\\\"") ?: strstr(r.warning, "spec.bogus"));
    resp_free(&r);
    req(s, "PATCH", B9 "/i1", "application/merge-patch+json", "{\"spec\":{\"role\":\"boss\"}}",
        NULL, &r);
    expect_status(&r, 422, "Invalid");
    assert_non_null(strstr(jstr(r.json, "message"), "spec.role: Unsupported value: \"boss\""));
    resp_free(&r);
    /* strategic merge patch is not for custom resources */
    req(s, "PATCH", B9 "/i1", "application/strategic-merge-patch+json", "{}", NULL, &r);
    expect_status(&r, 415, "UnsupportedMediaType");
    resp_free(&r);
    /* Table: Name + printer columns, rows carry PartialObjectMetadata */
    req(s, "GET", "/apis/bindy.firestoned.io/v1beta1/bind9instances", NULL, NULL,
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "kind"), "Table");
    json_t *cols = json_object_get(r.json, "columnDefinitions");
    assert_int_equal(json_array_size(cols), 5);
    assert_string_equal(jstr(json_array_get(cols, 0), "name"), "Name");
    assert_string_equal(jstr(json_array_get(cols, 1), "name"), "Role");
    assert_string_equal(jstr(json_array_get(cols, 4), "name"), "Age");
    json_t *row = json_array_get(json_object_get(r.json, "rows"), 0);
    json_t *cells = json_object_get(row, "cells");
    assert_string_equal(json_string_value(json_array_get(cells, 0)), "i1");
    assert_string_equal(json_string_value(json_array_get(cells, 1)), "primary");
    assert_int_equal(json_integer_value(json_array_get(cells, 2)), 3);
    assert_int_equal(json_integer_value(json_array_get(cells, 3)), 3);
    assert_string_equal(jstr(row, "object.kind"), "PartialObjectMetadata");
    assert_string_equal(jstr(row, "object.metadata.labels.region"), "eu");
    resp_free(&r);
    /* deleting the CRD removes its resources */
    req(s, "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/bind9instances.bindy.firestoned.io",
        NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    req(s, "GET", B9 "/i1", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    bd_apiserver_stop(s);
}

static void test_server_side_apply(void **state)
{
    bd_apiserver_t *s = start(1000);
    resp_t r;
    load_crd(s, "bind9instances.yaml");
    const char *cfg1 = "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"Bind9Instance\","
                       "\"metadata\":{\"name\":\"a1\",\"labels\":{\"team\":\"dns\"}},"
                       "\"spec\":{\"replicas\":2,\"clusterRef\":\"c1\"}}";
    req(s, "PATCH", B9 "/a1?fieldManager=ctrl-a", "application/apply-patch+yaml", cfg1, NULL, &r);
    assert_int_equal(r.status, 201);
    json_t *mf = json_object_get(json_object_get(r.json, "metadata"), "managedFields");
    assert_int_equal(json_array_size(mf), 1);
    json_t *e = json_array_get(mf, 0);
    assert_string_equal(jstr(e, "manager"), "ctrl-a");
    assert_string_equal(jstr(e, "operation"), "Apply");
    assert_string_equal(jstr(e, "apiVersion"), "bindy.firestoned.io/v1beta1");
    assert_string_equal(jstr(e, "fieldsType"), "FieldsV1");
    assert_non_null(jstr(e, "time"));
    assert_non_null(json_object_get(json_object_get(json_object_get(e, "fieldsV1"), "f:spec"), "f:replicas"));
    assert_non_null(json_object_get(json_object_get(json_object_get(json_object_get(e, "fieldsV1"), "f:metadata"), "f:labels"), "f:team"));
    resp_free(&r);
    /* no fieldManager -> 400; YAML body works */
    req(s, "PATCH", B9 "/a1", "application/apply-patch+yaml", cfg1, NULL, &r);
    expect_status(&r, 400, "BadRequest");
    resp_free(&r);
    /* another manager changing an owned field conflicts; shared equal values do not */
    req(s, "PATCH", B9 "/a1?fieldManager=ctrl-b", "application/apply-patch+yaml",
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\nmetadata:\n  name: a1\n"
        "spec:\n  replicas: 5\n",
        NULL, &r);
    expect_status(&r, 409, "Conflict");
    assert_non_null(strstr(jstr(r.json, "message"), "conflict with \"ctrl-a\": .spec.replicas"));
    resp_free(&r);
    req(s, "PATCH", B9 "/a1?fieldManager=ctrl-b&force=true", "application/apply-patch+yaml",
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\nmetadata:\n  name: a1\n"
        "spec:\n  replicas: 5\n",
        NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(jint(r.json, "spec.replicas"), 5);
    resp_free(&r);
    /* ctrl-a stops applying clusterRef and the label: they are removed */
    req(s, "PATCH", B9 "/a1?fieldManager=ctrl-a", "application/apply-patch+yaml",
        "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"Bind9Instance\","
        "\"metadata\":{\"name\":\"a1\"},\"spec\":{}}",
        NULL, &r);
    if (r.status != 200) fprintf(stderr, "%s\n", r.body);
    assert_int_equal(r.status, 200);
    assert_null(jstr(r.json, "spec.clusterRef"));
    assert_null(jstr(r.json, "metadata.labels.team"));
    assert_int_equal(jint(r.json, "spec.replicas"), 5);
    unsigned long long rv = rv_of(r.json);
    resp_free(&r);
    /* re-applying the same configuration is a no-op */
    req(s, "PATCH", B9 "/a1?fieldManager=ctrl-a", "application/apply-patch+yaml",
        "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"Bind9Instance\","
        "\"metadata\":{\"name\":\"a1\"},\"spec\":{}}",
        NULL, &r);
    assert_int_equal(rv_of(r.json), rv);
    resp_free(&r);
    /* apply to /status with conditions (an associative list keyed by type) */
    req(s, "PATCH", B9 "/a1/status?fieldManager=ctrl-a", "application/apply-patch+yaml",
        "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"Bind9Instance\","
        "\"metadata\":{\"name\":\"a1\"},\"status\":{\"conditions\":[{\"type\":\"Ready\","
        "\"status\":\"True\",\"reason\":\"Up\",\"lastTransitionTime\":\"2024-01-01T00:00:00Z\"}]}}",
        NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(json_array_get(json_object_get(json_object_get(r.json, "status"), "conditions"), 0), "status"), "True");
    assert_int_equal(jint(r.json, "spec.replicas"), 5);
    assert_non_null(strstr(r.body, "\"subresource\":\"status\""));
    resp_free(&r);
    bd_apiserver_stop(s);
}

static void test_finalizers(void **state)
{
    bd_apiserver_t *s = start(1000);
    resp_t r;
    req(s, "POST", NS_CM, "application/json",
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"f\","
        "\"finalizers\":[\"bindy.firestoned.io/cleanup\"]}}",
        NULL, &r);
    assert_int_equal(r.status, 201);
    unsigned long long rv0 = rv_of(r.json);
    resp_free(&r);
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%llu", rv0);
    watcher_t *w = watch_open(s, "%s", path);
    req(s, "DELETE", NS_CM "/f", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(jstr(r.json, "metadata.deletionTimestamp"));
    resp_free(&r);
    req(s, "GET", NS_CM "/f", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(jstr(r.json, "metadata.deletionTimestamp"));
    json_t *o = json_incref(r.json);
    resp_free(&r);
    /* no new finalizers while deleting */
    req(s, "PATCH", NS_CM "/f", "application/merge-patch+json",
        "{\"metadata\":{\"finalizers\":[\"bindy.firestoned.io/cleanup\",\"other\"]}}", NULL, &r);
    expect_status(&r, 422, "Invalid");
    resp_free(&r);
    /* removing the last finalizer by an update deletes it */
    json_object_set_new(json_object_get(o, "metadata"), "finalizers", json_array());
    char *body = json_dumps(o, JSON_COMPACT);
    req(s, "PUT", NS_CM "/f", "application/json", body, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    free(body);
    json_decref(o);
    req(s, "GET", NS_CM "/f", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    watch_wait_nonbookmark(w, 2, 5000);
    json_t *ev = watch_events(w, false);
    assert_int_equal(json_array_size(ev), 2);
    assert_string_equal(jstr(json_array_get(ev, 0), "type"), "MODIFIED");
    assert_non_null(jstr(json_array_get(ev, 0), "object.metadata.deletionTimestamp"));
    assert_string_equal(jstr(json_array_get(ev, 1), "type"), "DELETED");
    json_decref(ev);
    bd_apiserver_drop_watches(s);
    watch_close(w);
    bd_apiserver_stop(s);
}

static size_t list_names(bd_apiserver_t *s, const char *query, char *out, size_t n)
{
    resp_t r;
    char path[1024];
    snprintf(path, sizeof(path), NS_CM "?%s", query);
    req(s, "GET", path, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    out[0] = '\0';
    size_t i, cnt = 0;
    json_t *it;
    json_array_foreach(json_object_get(r.json, "items"), i, it) {
        strncat(out, jstr(it, "metadata.name"), n - strlen(out) - 2);
        strncat(out, " ", n - strlen(out) - 1);
        cnt++;
    }
    resp_free(&r);
    return cnt;
}

static void test_selectors(void **state)
{
    bd_apiserver_t *s = start(1000);
    create_cm(s, "s1", "\"a\":\"b\",\"e\":\"x\",\"g\":\"1\"");
    create_cm(s, "s2", "\"a\":\"b\",\"c\":\"d\",\"e\":\"y\",\"g\":\"1\"");
    create_cm(s, "s3", "\"a\":\"b\",\"e\":\"x\",\"f\":\"1\",\"g\":\"1\"");
    create_cm(s, "s4", "\"a\":\"z\",\"e\":\"x\",\"g\":\"1\"");
    create_cm(s, "s5", "\"a\":\"b\",\"e\":\"x\"");
    char names[512];
    list_names(s, "labelSelector=a%3Db,c!%3Dd,e%20in%20(x,y),!f,g", names, sizeof(names));
    assert_string_equal(names, "s1 ");
    list_names(s, "labelSelector=e%20notin%20(x)", names, sizeof(names));
    assert_string_equal(names, "s2 ");
    list_names(s, "labelSelector=a%3D%3Db", names, sizeof(names));
    assert_string_equal(names, "s1 s2 s3 s5 ");
    list_names(s, "fieldSelector=metadata.name%3Ds4", names, sizeof(names));
    assert_string_equal(names, "s4 ");
    list_names(s, "fieldSelector=metadata.name!%3Ds4,metadata.namespace%3Ddefault&labelSelector=!g", names, sizeof(names));
    assert_string_equal(names, "s5 ");
    resp_t r;
    req(s, "GET", NS_CM "?labelSelector=a%20in%20(x", NULL, NULL, NULL, &r);
    expect_status(&r, 400, "BadRequest");
    resp_free(&r);
    /* all namespaces vs one */
    req(s, "POST", "/api/v1/namespaces", "application/json",
        "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"other\"}}", NULL, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(jstr(r.json, "metadata.labels.kubernetes.io/metadata.name") ?: "other", "other");
    resp_free(&r);
    req(s, "POST", "/api/v1/namespaces/other/configmaps", "application/json",
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"o1\"}}", NULL, &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    req(s, "GET", "/api/v1/configmaps", NULL, NULL, NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 6);
    resp_free(&r);
    req(s, "GET", "/api/v1/configmaps?fieldSelector=metadata.namespace%3Dother", NULL, NULL, NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    resp_free(&r);
    bd_apiserver_stop(s);
}

static void test_pagination(void **state)
{
    bd_apiserver_t *s = start(1000);
    for (int i = 0; i < 7; i++) {
        char n[16];
        snprintf(n, sizeof(n), "pg%d", i);
        create_cm(s, n, NULL);
    }
    resp_t r;
    req(s, "GET", NS_CM "?limit=3", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 3);
    assert_int_equal(jint(r.json, "metadata.remainingItemCount"), 4);
    char cont[1024];
    snprintf(cont, sizeof(cont), "%s", jstr(r.json, "metadata.continue"));
    const char *rv1 = jstr(r.json, "metadata.resourceVersion");
    char rvs[32];
    snprintf(rvs, sizeof(rvs), "%s", rv1);
    resp_free(&r);
    /* a change between pages is not seen: the pages are one consistent snapshot */
    create_cm(s, "pg9", NULL);
    req(s, "DELETE", NS_CM "/pg5", NULL, NULL, NULL, &r);
    resp_free(&r);
    char path[2048], *esc;
    CURL *c = curl_easy_init();
    esc = curl_easy_escape(c, cont, 0);
    snprintf(path, sizeof(path), NS_CM "?limit=3&continue=%s", esc);
    req(s, "GET", path, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(jstr(r.json, "metadata.resourceVersion"), rvs);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 3);
    assert_string_equal(jstr(json_array_get(items, 0), "metadata.name"), "pg3");
    assert_string_equal(jstr(json_array_get(items, 2), "metadata.name"), "pg5");
    char cont2[1024];
    snprintf(cont2, sizeof(cont2), "%s", jstr(r.json, "metadata.continue"));
    resp_free(&r);
    curl_free(esc);
    esc = curl_easy_escape(c, cont2, 0);
    snprintf(path, sizeof(path), NS_CM "?limit=3&continue=%s", esc);
    req(s, "GET", path, NULL, NULL, NULL, &r);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(jstr(json_array_get(items, 0), "metadata.name"), "pg6");
    assert_null(jstr(r.json, "metadata.continue"));
    resp_free(&r);
    /* after compaction the continue token has expired */
    bd_apiserver_compact(s);
    req(s, "GET", path, NULL, NULL, NULL, &r);
    expect_status(&r, 410, "Expired");
    assert_non_null(jstr(r.json, "metadata.continue"));
    resp_free(&r);
    curl_free(esc);
    curl_easy_cleanup(c);
    /* rv + continue together is a bad request; Exact from a compacted RV is 410 */
    req(s, "GET", NS_CM "?resourceVersion=3&resourceVersionMatch=Exact", NULL, NULL, NULL, &r);
    expect_status(&r, 410, "Expired");
    resp_free(&r);
    bd_apiserver_stop(s);
}

static void test_watch(void **state)
{
    bd_apiserver_t *s = start(1000);
    resp_t r;
    create_cm(s, "w0", "\"sel\":\"yes\"");
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    char rv[32];
    snprintf(rv, sizeof(rv), "%s", jstr(r.json, "metadata.resourceVersion"));
    resp_free(&r);
    watcher_t *w = watch_open(s, NS_CM "?watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=20", rv);
    watcher_t *wsel = watch_open(s, "/api/v1/configmaps?watch=true&resourceVersion=%s&labelSelector=sel%%3Dyes", rv);
    watcher_t *wns = watch_open(s, "/api/v1/namespaces/kube-system/configmaps?watch=1&resourceVersion=%s", rv);
    watcher_t *w0 = watch_open(s, NS_CM "?watch=1&resourceVersion=0");
    create_cm(s, "w1", NULL);
    req(s, "PATCH", NS_CM "/w1", "application/merge-patch+json",
        "{\"metadata\":{\"labels\":{\"sel\":\"yes\"}}}", NULL, &r);
    resp_free(&r);
    req(s, "PATCH", NS_CM "/w1", "application/merge-patch+json",
        "{\"metadata\":{\"labels\":{\"sel\":\"no\"}}}", NULL, &r);
    resp_free(&r);
    req(s, "DELETE", NS_CM "/w1", NULL, NULL, NULL, &r);
    resp_free(&r);
    watch_wait_nonbookmark(w, 4, 5000);
    json_t *ev = watch_events(w, false);
    assert_int_equal(json_array_size(ev), 4);
    const char *want[] = {"ADDED", "MODIFIED", "MODIFIED", "DELETED"};
    unsigned long long last = strtoull(rv, NULL, 10);
    for (size_t i = 0; i < 4; i++) {
        json_t *e = json_array_get(ev, i);
        assert_string_equal(jstr(e, "type"), want[i]);
        assert_string_equal(jstr(e, "object.metadata.name"), "w1");
        unsigned long long erv = rv_of(json_object_get(e, "object"));
        assert_true(erv > last);
        last = erv;
    }
    json_decref(ev);
    /* a bookmark arrives (every 200 ms here) with only the resourceVersion */
    usleep(500000);
    ev = watch_events(w, true);
    json_t *bm = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) {
        if (strcmp(jstr(e, "type"), "BOOKMARK") == 0)
            bm = e;
    }
    assert_non_null(bm);
    assert_true(rv_of(json_object_get(bm, "object")) >= last);
    assert_string_equal(jstr(bm, "object.kind"), "ConfigMap");
    assert_null(jstr(bm, "object.metadata.name"));
    json_decref(ev);
    /* the label-selector watch sees the transitions as ADDED/DELETED */
    watch_wait_nonbookmark(wsel, 2, 5000);
    ev = watch_events(wsel, false);
    assert_int_equal(json_array_size(ev), 2);
    assert_string_equal(jstr(json_array_get(ev, 0), "type"), "ADDED");
    assert_string_equal(jstr(json_array_get(ev, 1), "type"), "DELETED");
    assert_string_equal(jstr(json_array_get(ev, 1), "object.metadata.labels.sel"), "no");
    json_decref(ev);
    /* the watch of another namespace saw nothing; resourceVersion=0 started with state */
    assert_int_equal(watch_count_nonbookmark(wns), 0);
    ev = watch_events(w0, false);
    assert_true(json_array_size(ev) >= 1);
    assert_string_equal(jstr(json_array_get(ev, 0), "type"), "ADDED");
    assert_string_equal(jstr(json_array_get(ev, 0), "object.metadata.name"), "w0");
    json_decref(ev);
    /* a dropped watch ends abruptly (no terminating chunk) */
    bd_apiserver_drop_watches(s);
    watch_close(w);
    watch_close(wsel);
    watch_close(wns);
    watch_close(w0);
    /* timeoutSeconds ends the stream cleanly */
    watcher_t *wt = watch_open(s, NS_CM "?watch=1&timeoutSeconds=1");
    watch_close(wt);
    /* 410 after compaction: an ERROR event with a Status */
    bd_apiserver_compact(s);
    watcher_t *wg = watch_open(s, NS_CM "?watch=1&resourceVersion=%s", rv);
    watch_wait(wg, 1, 5000);
    ev = watch_events(wg, false);
    assert_int_equal(json_array_size(ev), 1);
    assert_string_equal(jstr(json_array_get(ev, 0), "type"), "ERROR");
    assert_int_equal(jint(json_array_get(ev, 0), "object.code"), 410);
    assert_string_equal(jstr(json_array_get(ev, 0), "object.reason"), "Expired");
    json_decref(ev);
    watch_close(wg);
    bd_apiserver_stop(s);
}

static void test_history_window(void **state)
{
    /* a history of 5 events: older resourceVersions expire by themselves */
    bd_apiserver_t *s = start(5);
    unsigned long long rv0 = bd_apiserver_resource_version(s);
    for (int i = 0; i < 8; i++) {
        char n[16];
        snprintf(n, sizeof(n), "h%d", i);
        create_cm(s, n, NULL);
    }
    watcher_t *w = watch_open(s, NS_CM "?watch=1&resourceVersion=%llu", rv0);
    watch_wait(w, 1, 5000);
    json_t *ev = watch_events(w, false);
    assert_string_equal(jstr(json_array_get(ev, 0), "type"), "ERROR");
    json_decref(ev);
    watch_close(w);
    unsigned long long recent = bd_apiserver_resource_version(s) - 2;
    create_cm(s, "h-late", NULL);
    w = watch_open(s, NS_CM "?watch=1&resourceVersion=%llu&timeoutSeconds=1", recent);
    watch_wait(w, 1, 5000);
    ev = watch_events(w, false);
    assert_string_equal(jstr(json_array_get(ev, 0), "type"), "ADDED");
    assert_string_equal(jstr(json_array_get(ev, 0), "object.metadata.name"), "h6");
    json_decref(ev);
    watch_close(w);
    bd_apiserver_stop(s);
}

static void test_faults_and_log(void **state)
{
    bd_apiserver_t *s = start(1000);
    resp_t r;
    bd_apiserver_fail_next(s, 2, 503, NULL);
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    expect_status(&r, 503, "ServiceUnavailable");
    resp_free(&r);
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 503);
    resp_free(&r);
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* match limits the fault to some requests */
    bd_apiserver_fail_next(s, 1, 500, "create ");
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    req(s, "POST", NS_CM, "application/json",
        "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"f1\"}}", NULL, &r);
    expect_status(&r, 500, "InternalError");
    resp_free(&r);
    bd_apiserver_throttle_next(s, 1, 7, NULL);
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    expect_status(&r, 429, "TooManyRequests");
    assert_string_equal(r.retry_after, "7");
    assert_int_equal(jint(r.json, "details.retryAfterSeconds"), 7);
    resp_free(&r);
    /* latency */
    bd_apiserver_set_latency(s, 300);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    clock_gettime(CLOCK_MONOTONIC, &b);
    resp_free(&r);
    assert_true((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 >= 290);
    bd_apiserver_reset_faults(s);
    /* the same knobs over HTTP */
    req(s, "POST", "/__double/faults/fail?count=1&status=502", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 502);
    resp_free(&r);
    req(s, "POST", "/__double/faults/throttle?count=1&retryAfter=2", NULL, NULL, NULL, &r);
    resp_free(&r);
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 429);
    assert_string_equal(r.retry_after, "2");
    resp_free(&r);
    req(s, "POST", "/__double/faults/fail?fraction=1&status=500", NULL, NULL, NULL, &r);
    resp_free(&r);
    req(s, "GET", NS_CM, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 500);
    resp_free(&r);
    req(s, "POST", "/__double/faults/reset", NULL, NULL, NULL, &r);
    resp_free(&r);
    /* drop watches over HTTP: the stream ends with a transfer error */
    watcher_t *w = watch_open(s, NS_CM "?watch=1");
    req(s, "POST", "/__double/faults/drop-watches", NULL, NULL, NULL, &r);
    resp_free(&r);
    watch_close(w);
    /* compaction over HTTP */
    unsigned long long rv = bd_apiserver_resource_version(s);
    create_cm(s, "c1", NULL);
    req(s, "POST", "/__double/faults/compact", NULL, NULL, NULL, &r);
    resp_free(&r);
    req(s, "GET", "/__double/state", NULL, NULL, NULL, &r);
    assert_int_equal(jint(r.json, "compactedResourceVersion"), (json_int_t)rv + 1);
    resp_free(&r);
    /* the request log */
    size_t n = bd_apiserver_log_count(s);
    assert_true(n >= 10);
    bd_apiserver_req_t e;
    bool saw_create = false, saw_throttle = false, saw_watch = false;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(bd_apiserver_log_get(s, i, &e), 0);
        assert_string_equal(e.user_agent, "test-apiserver/1.0 (cmocka)");
        if (strcmp(e.verb, "create") == 0 && e.status == 201) {
            saw_create = true;
            assert_string_equal(e.method, "POST");
            assert_string_equal(e.path, NS_CM);
        }
        saw_throttle = saw_throttle || e.status == 429;
        saw_watch = saw_watch || strcmp(e.verb, "watch") == 0;
        assert_true(e.time > 1.6e9);
    }
    assert_true(saw_create && saw_throttle && saw_watch);
    assert_int_equal(bd_apiserver_log_get(s, n + 5, &e), BD_ENOTFOUND);
    req(s, "PATCH", NS_CM "/c1?fieldManager=bindy-leader", "application/merge-patch+json", "{}", NULL, &r);
    resp_free(&r);
    req(s, "GET", "/__double/log?since=0", NULL, NULL, NULL, &r);
    json_t *items = json_object_get(r.json, "items");
    json_t *lastent = json_array_get(items, json_array_size(items) - 1);
    assert_string_equal(jstr(lastent, "fieldManager"), "bindy-leader");
    assert_string_equal(jstr(lastent, "verb"), "patch");
    assert_int_equal(jint(lastent, "status"), 200);
    resp_free(&r);
    req(s, "DELETE", "/__double/log", NULL, NULL, NULL, &r);
    resp_free(&r);
    assert_int_equal(bd_apiserver_log_count(s), 0);
    bd_apiserver_stop(s);
}

static void test_discovery_and_openapi(void **state)
{
    bd_apiserver_t *s = start(1000);
    resp_t r;
    req(s, "GET", "/version", NULL, NULL, NULL, &r);
    assert_string_equal(jstr(r.json, "major"), "1");
    resp_free(&r);
    req(s, "GET", "/api", NULL, NULL, NULL, &r);
    assert_string_equal(jstr(r.json, "kind"), "APIVersions");
    resp_free(&r);
    req(s, "GET", "/api", NULL, NULL,
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json", &r);
    assert_string_equal(jstr(r.json, "apiVersion"), "apidiscovery.k8s.io/v2beta1");
    resp_free(&r);
    req(s, "GET", "/apis", NULL, NULL, NULL, &r);
    assert_string_equal(jstr(r.json, "kind"), "APIGroupList");
    assert_non_null(strstr(r.body, "\"coordination.k8s.io\""));
    resp_free(&r);
    req(s, "GET", "/api/v1", NULL, NULL, NULL, &r);
    assert_non_null(strstr(r.body, "\"shortNames\":[\"ns\"]"));
    resp_free(&r);
    req(s, "GET", "/apis/nope/v1", NULL, NULL, NULL, &r);
    expect_status(&r, 404, "NotFound");
    resp_free(&r);
    req(s, "GET", "/openapi/v2", NULL, NULL, "application/com.github.proto-openapi.spec.v2@v1.0+protobuf", &r);
    assert_int_equal(r.status, 200);
    assert_true(r.len > 4 && r.body[0] == 0x0a);
    resp_free(&r);
    req(s, "GET", "/openapi/v3", NULL, NULL, NULL, &r);
    const char *url = jstr(json_object_get(json_object_get(r.json, "paths"), "apis/apps/v1"), "serverRelativeURL");
    assert_non_null(url);
    char u[512];
    snprintf(u, sizeof(u), "%s", url);
    resp_free(&r);
    req(s, "GET", u, NULL, NULL, NULL, &r);
    assert_string_equal(jstr(r.json, "openapi"), "3.0.0");
    assert_non_null(strstr(r.body, "fieldValidation"));
    resp_free(&r);
    /* leases work as generic storage (leader election) */
    req(s, "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", "application/json",
        "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":\"bindy\"},"
        "\"spec\":{\"holderIdentity\":\"pod-a\",\"leaseDurationSeconds\":15}}", NULL, &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    req(s, "GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases", NULL, NULL,
        "application/json;as=Table;v=v1;g=meta.k8s.io", &r);
    assert_non_null(strstr(r.body, "\"Holder\""));
    assert_non_null(strstr(r.body, "pod-a"));
    resp_free(&r);
    bd_apiserver_stop(s);
}

static void test_auth_and_tls(void **state)
{
    char dir[] = "/tmp/bd-as-tls.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ca "
             "-keyout ca.key -out ca.crt >/dev/null 2>&1 && "
             "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout srv.key "
             "-out srv.csr >/dev/null 2>&1 && printf 'subjectAltName=IP:127.0.0.1\\n' > ext && "
             "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 "
             "-extfile ext -out srv.crt >/dev/null 2>&1",
             dir);
    assert_int_equal(system(cmd), 0);
    char p[600];
    snprintf(p, sizeof(p), "%s/srv.crt", dir);
    char *cert = slurp(p);
    snprintf(p, sizeof(p), "%s/srv.key", dir);
    char *key = slurp(p);
    bd_apiserver_opts_t o;
    bd_apiserver_opts_init(&o);
    o.tls_cert_pem = cert;
    o.tls_key_pem = key;
    o.token = "t0k3n";
    bd_apiserver_t *s = NULL;
    bd_err_t err;
    assert_int_equal(bd_apiserver_start(&o, &s, &err), 0);
    assert_non_null(strstr(bd_apiserver_url(s), "https://127.0.0.1:"));
    char ca[600];
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    g_cainfo = ca;
    resp_t r;
    req(s, "GET", "/api/v1/namespaces", NULL, NULL, NULL, &r);
    expect_status(&r, 401, "Unauthorized");
    resp_free(&r);
    g_token = "t0k3n";
    req(s, "GET", "/api/v1/namespaces", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 4);
    resp_free(&r);
    g_token = NULL;
    g_cainfo = NULL;
    bd_apiserver_stop(s);
    free(cert);
    free(key);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_library_access(void **state)
{
    bd_apiserver_t *s = start(1000);
    bd_err_t err;
    assert_int_equal(bd_apiserver_create(s, "{\"apiVersion\":\"v1\",\"kind\":\"Secret\","
                                            "\"metadata\":{\"name\":\"k\",\"namespace\":\"kube-system\"},"
                                            "\"stringData\":{\"a\":\"hi\"}}", &err), 0);
    char *js = bd_apiserver_get(s, "", "secrets", "kube-system", "k");
    assert_non_null(js);
    assert_non_null(strstr(js, "\"a\":\"aGk=\""));
    free(js);
    assert_int_equal(bd_apiserver_create(s, "{\"apiVersion\":\"v1\",\"kind\":\"Secret\","
                                            "\"metadata\":{\"name\":\"k\",\"namespace\":\"kube-system\"}}", &err),
                     BD_EEXISTS);
    assert_int_equal(bd_apiserver_create(s, "{\"apiVersion\":\"x/v1\",\"kind\":\"Nope\"}", &err), BD_ENOTFOUND);
    assert_null(bd_apiserver_get(s, "", "secrets", "kube-system", "nope"));
    bd_apiserver_stop(s);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crud_and_conflicts),
        cmocka_unit_test(test_patches),
        cmocka_unit_test(test_crd_status_generation_schema),
        cmocka_unit_test(test_server_side_apply),
        cmocka_unit_test(test_finalizers),
        cmocka_unit_test(test_selectors),
        cmocka_unit_test(test_pagination),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_history_window),
        cmocka_unit_test(test_faults_and_log),
        cmocka_unit_test(test_discovery_and_openapi),
        cmocka_unit_test(test_auth_and_tls),
        cmocka_unit_test(test_library_access),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
