/*
 * test_k8s_client.c - the Kubernetes API client against the API-server double:
 * CRUD, patches, server-side apply and the status subresource on the project's CRDs;
 * 409 and k8s_modify through a concurrent write; 429 + Retry-After, the token bucket and
 * per-key backoff measured from the double's request log; status mapping; watches (order,
 * bookmarks, clean end, drop, 410, events split across chunks); HTTPS with a generated CA,
 * tls-server-name, a wrong CA; bearer tokens and a rotated token file; cancellation and
 * freeing from callbacks. Every wait is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>

#include "apiserver.h"
#include "clock.h"
#include "client.h"
#include "k8s_fixture.h"

/* ---- helpers ------------------------------------------------------------------------ */

typedef struct got {
    int n;
    int code;
    int status;
    char reason[64];
    char message[512];
    json_t *body;
    double t;
} got_t;

static void got_reset(got_t *g)
{
    json_decref(g->body);
    memset(g, 0, sizeof(*g));
}

static void on_done(void *arg, const k8s_resp_t *r)
{
    got_t *g = arg;
    g->n++;
    g->code = r->code;
    g->status = r->status;
    assert_non_null(r->reason);
    assert_non_null(r->message);
    snprintf(g->reason, sizeof(g->reason), "%s", r->reason);
    snprintf(g->message, sizeof(g->message), "%s", r->message);
    json_decref(g->body);
    g->body = r->body ? json_incref(r->body) : NULL;
    g->t = bd_mono_s();
}

static const char *jstr(const json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *cur = j;
    char *save = NULL;
    for (char *t = strtok_r(buf, ".", &save); t && cur; t = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, t);
    return json_string_value(cur);
}

static const json_t *jget(const json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *cur = j;
    char *save = NULL;
    for (char *t = strtok_r(buf, ".", &save); t && cur; t = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, t);
    return cur;
}

static const k8s_res_t AREC = {"bindy.firestoned.io", "v1beta1", "arecords", "ARecord", true};
static const k8s_res_t CM = {"", "v1", "configmaps", "ConfigMap", true};

static json_t *arecord(const char *name, const char *ip)
{
    return json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:{s:s,s:[s],s:i}}", "apiVersion",
                     "bindy.firestoned.io/v1beta1", "kind", "ARecord", "metadata", "name", name,
                     "namespace", "default", "labels", "zone", "example.com", "spec", "name", "www",
                     "ipv4Addresses", ip, "ttl", 300);
}

/* The double (bookmarks every 200 ms), a loop, a client with the defaults. */
static void fx_start(kfx_t *f)
{
    kfx_opts_t o = {.bookmark_ms = 200};
    kfx_start(f, &o);
}

/* Synchronous wrappers: start, then run the loop until the callback (bounded). */
static void wait_done(kfx_t *f, got_t *g)
{
    assert_true(kfx_wait_count(f->loop, &g->n, 1, 20.0));
    assert_int_equal(g->n, 1);
}

static void do_req(kfx_t *f, k8s_method_t m, const char *path, const char *query, const json_t *body,
                   const char *key, got_t *g)
{
    got_reset(g);
    k8s_req_t r = {.method = m, .path = path, .query = query, .body = body, .backoff_key = key};
    assert_int_equal(k8s_call(f->c, &r, on_done, g, NULL), 0);
    assert_int_equal(g->n, 0); /* never from inside k8s_call */
    wait_done(f, g);
}

/* Log entries whose "verb path" contains match; times into t (up to max). */
static size_t log_find(bd_apiserver_t *s, const char *verb, const char *path_sub,
                       bd_apiserver_req_t *out, size_t max)
{
    size_t n = bd_apiserver_log_count(s), k = 0;
    for (size_t i = 0; i < n && k < max; i++) {
        bd_apiserver_req_t e;
        if (bd_apiserver_log_get(s, i, &e) != 0)
            continue;
        if (verb && strcmp(e.verb, verb) != 0)
            continue;
        if (path_sub && strstr(e.path, path_sub) == NULL)
            continue;
        out[k++] = e;
    }
    return k;
}

#define AR_PATH "/apis/bindy.firestoned.io/v1beta1/namespaces/default/arecords"

/* ---- paths ---------------------------------------------------------------------------- */

static void test_path(void **state)
{
    char *p = k8s_path(&AREC, "dns-system", "www", NULL);
    assert_string_equal(p, "/apis/bindy.firestoned.io/v1beta1/namespaces/dns-system/arecords/www");
    free(p);
    p = k8s_path(&AREC, "dns-system", "www", "status");
    assert_string_equal(
        p, "/apis/bindy.firestoned.io/v1beta1/namespaces/dns-system/arecords/www/status");
    free(p);
    p = k8s_path(&AREC, NULL, NULL, NULL);
    assert_string_equal(p, "/apis/bindy.firestoned.io/v1beta1/arecords");
    free(p);
    p = k8s_path(&AREC, "", NULL, NULL);
    assert_string_equal(p, "/apis/bindy.firestoned.io/v1beta1/arecords");
    free(p);
    p = k8s_path(&CM, "default", "a b/c", NULL);
    assert_string_equal(p, "/api/v1/namespaces/default/configmaps/a%20b%2Fc");
    free(p);
    k8s_res_t ns = {"", "v1", "namespaces", "Namespace", false};
    p = k8s_path(&ns, "ignored", "kube-system", NULL);
    assert_string_equal(p, "/api/v1/namespaces/kube-system");
    free(p);
}

/* ---- CRUD ----------------------------------------------------------------------------- */

static void test_crud(void **state)
{
    kfx_t f;
    fx_start(&f);
    got_t g = {0};

    /* create */
    json_t *obj = arecord("www", "192.0.2.10");
    assert_int_equal(k8s_create(f.c, &AREC, "default", obj, on_done, &g, NULL), 0);
    assert_int_equal(g.n, 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_OK);
    assert_int_equal(g.status, 201);
    assert_string_equal(jstr(g.body, "metadata.name"), "www");
    char rv1[32];
    snprintf(rv1, sizeof(rv1), "%s", jstr(g.body, "metadata.resourceVersion"));

    /* create again: AlreadyExists */
    got_reset(&g);
    assert_int_equal(k8s_create(f.c, &AREC, "default", obj, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_EEXISTS);
    assert_int_equal(g.status, 409);
    assert_string_equal(g.reason, "AlreadyExists");

    /* get, get a missing one */
    got_reset(&g);
    assert_int_equal(k8s_get(f.c, &AREC, "default", "www", on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_OK);
    assert_string_equal(jstr(g.body, "spec.name"), "www");
    got_reset(&g);
    assert_int_equal(k8s_get(f.c, &AREC, "default", "nope", on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_ENOTFOUND);
    assert_int_equal(g.status, 404);
    assert_string_equal(g.reason, "NotFound");
    assert_non_null(strstr(g.message, "nope"));

    /* list */
    got_reset(&g);
    assert_int_equal(k8s_get(f.c, &AREC, "default", NULL, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_OK);
    assert_int_equal(json_array_size(json_object_get(g.body, "items")), 1);

    /* merge patch */
    got_reset(&g);
    json_t *patch = json_pack("{s:{s:{s:s}}}", "metadata", "labels", "team", "dns");
    assert_int_equal(k8s_merge_patch(f.c, &AREC, "default", "www", NULL, patch, on_done, &g, NULL),
                     0);
    wait_done(&f, &g);
    json_decref(patch);
    assert_int_equal(g.code, BD_OK);
    assert_string_equal(jstr(g.body, "metadata.labels.team"), "dns");
    char rv2[32];
    snprintf(rv2, sizeof(rv2), "%s", jstr(g.body, "metadata.resourceVersion"));
    assert_string_not_equal(rv1, rv2);

    /* replace with the stale resourceVersion: conflict; with the current one: ok */
    json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion", json_string(rv1));
    json_array_append_new(json_object_get(json_object_get(obj, "spec"), "ipv4Addresses"),
                          json_string("192.0.2.11"));
    got_reset(&g);
    assert_int_equal(k8s_replace(f.c, &AREC, "default", "www", NULL, obj, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_ECONFLICT);
    assert_int_equal(g.status, 409);
    assert_string_equal(g.reason, "Conflict");
    json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion", json_string(rv2));
    got_reset(&g);
    assert_int_equal(k8s_replace(f.c, &AREC, "default", "www", NULL, obj, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_OK);
    assert_int_equal(json_array_size(jget(g.body, "spec.ipv4Addresses")), 2);

    /* invalid object: 422 -> BD_EINVAL */
    json_t *bad = arecord("bad", "192.0.2.1");
    json_object_set_new(json_object_get(bad, "spec"), "ttl", json_string("soon"));
    got_reset(&g);
    assert_int_equal(k8s_create(f.c, &AREC, "default", bad, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    json_decref(bad);
    assert_int_equal(g.code, BD_EINVAL);
    assert_int_equal(g.status, 422);
    assert_string_equal(g.reason, "Invalid");

    /* server-side apply: a new object, a conflict with another manager, then force */
    json_t *ap = arecord("applied", "192.0.2.20");
    got_reset(&g);
    assert_int_equal(
        k8s_apply(f.c, &AREC, "default", "applied", NULL, ap, false, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_OK);
    assert_int_equal(g.status, 201);
    const json_t *mf = jget(g.body, "metadata.managedFields");
    assert_true(json_array_size(mf) >= 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(mf, 0), "manager")),
                        "bindy");
    got_reset(&g);
    k8s_req_t other = {.method = K8S_PATCH_APPLY,
                       .path = AR_PATH "/applied",
                       .query = "fieldManager=someone-else",
                       .body = NULL};
    json_t *ap2 = arecord("applied", "192.0.2.21");
    other.body = ap2;
    assert_int_equal(k8s_call(f.c, &other, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_ECONFLICT);
    assert_int_equal(g.status, 409);
    got_reset(&g);
    other.query = "fieldManager=someone-else&force=true";
    assert_int_equal(k8s_call(f.c, &other, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_OK);
    got_reset(&g);
    assert_int_equal(k8s_apply(f.c, &AREC, "default", "applied", NULL, ap, true, on_done, &g, NULL),
                     0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_OK);
    assert_string_equal(json_string_value(json_array_get(jget(g.body, "spec.ipv4Addresses"), 0)),
                        "192.0.2.20");
    json_decref(ap);
    json_decref(ap2);

    /* status subresource: merge patch, apply and replace on /status */
    got_reset(&g);
    json_t *st = json_pack("{s:{s:i}}", "status", "observedGeneration", 1);
    assert_int_equal(k8s_merge_patch(f.c, &AREC, "default", "www", "status", st, on_done, &g, NULL),
                     0);
    wait_done(&f, &g);
    json_decref(st);
    assert_int_equal(g.code, BD_OK);
    assert_int_equal(json_integer_value(jget(g.body, "status.observedGeneration")), 1);
    got_reset(&g);
    json_t *sta = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:[{s:s,s:s,s:s}]}}", "apiVersion",
                            "bindy.firestoned.io/v1beta1", "kind", "ARecord", "metadata", "name",
                            "www", "namespace", "default", "status", "conditions", "type", "Ready",
                            "status", "True", "reason", "Applied");
    assert_int_equal(
        k8s_apply(f.c, &AREC, "default", "www", "status", sta, true, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    json_decref(sta);
    assert_int_equal(g.code, BD_OK);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(jget(g.body, "status.conditions"), 0), "type")),
                        "Ready");
    /* a replace of /status with a spec change leaves the spec alone */
    json_t *cur = json_deep_copy(g.body);
    json_object_set_new(json_object_get(cur, "status"), "observedGeneration", json_integer(7));
    json_object_set_new(json_object_get(cur, "spec"), "ttl", json_integer(1));
    got_reset(&g);
    assert_int_equal(k8s_replace(f.c, &AREC, "default", "www", "status", cur, on_done, &g, NULL),
                     0);
    wait_done(&f, &g);
    json_decref(cur);
    assert_int_equal(g.code, BD_OK);
    assert_int_equal(json_integer_value(jget(g.body, "status.observedGeneration")), 7);
    assert_int_equal(json_integer_value(jget(g.body, "spec.ttl")), 300);

    /* delete, then it is gone */
    got_reset(&g);
    assert_int_equal(k8s_delete(f.c, &AREC, "default", "www", on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_OK);
    got_reset(&g);
    assert_int_equal(k8s_delete(f.c, &AREC, "default", "www", on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_int_equal(g.code, BD_ENOTFOUND);
    char *left = bd_apiserver_get(f.as, "bindy.firestoned.io", "arecords", "default", "www");
    assert_null(left);

    /* the log: user agent on everything, fieldManager on writes and not on reads/deletes */
    size_t n = bd_apiserver_log_count(f.as);
    assert_true(n >= 15);
    for (size_t i = 0; i < n; i++) {
        bd_apiserver_req_t e;
        assert_int_equal(bd_apiserver_log_get(f.as, i, &e), 0);
        if (strstr(e.query, "someone-else"))
            continue;
        assert_true(strncmp(e.user_agent, "bindy/", 6) == 0);
        bool write = strcmp(e.verb, "create") == 0 || strcmp(e.verb, "update") == 0 ||
                     strcmp(e.verb, "patch") == 0;
        if (write)
            assert_string_equal(e.field_manager, "bindy");
        else
            assert_string_equal(e.field_manager, "");
    }
    k8s_client_stats_t s;
    k8s_client_stats(f.c, &s);
    assert_int_equal(s.calls, n);
    assert_int_equal(s.inflight, 0);
    assert_true(s.errors >= 6);

    json_decref(obj);
    got_reset(&g);
    kfx_stop(&f);
}

/* Bad requests are refused synchronously and never call back. */
static void test_bad_args(void **state)
{
    kfx_t f;
    fx_start(&f);
    got_t g = {0};
    k8s_req_t r = {.method = K8S_GET, .path = "no-slash"};
    assert_int_equal(k8s_call(f.c, &r, on_done, &g, NULL), BD_EINVAL);
    r.path = "/api/v1/x?y=1";
    assert_int_equal(k8s_call(f.c, &r, on_done, &g, NULL), BD_EINVAL);
    r.path = "/api/v1/namespaces";
    assert_int_equal(k8s_call(f.c, &r, NULL, &g, NULL), BD_EINVAL);
    assert_int_equal(k8s_get(f.c, &AREC, NULL, "x", on_done, &g, NULL), BD_EINVAL);
    assert_int_equal(k8s_watch(f.c, "/api/v1/configmaps", "watch=1", NULL, on_done, &g, NULL),
                     BD_EINVAL);
    kfx_run_for(f.loop, 0.1);
    assert_int_equal(g.n, 0);
    k8s_client_opts_t o;
    k8s_client_opts_init(&o);
    o.qps = 0;
    k8s_client_t *c2 = NULL;
    bd_err_t err;
    assert_int_equal(k8s_client_new(f.loop, &f.cfg, &o, &c2, &err), BD_EINVAL);
    assert_null(c2);
    k8s_config_t bad = f.cfg;
    bad.server = "ftp://x";
    assert_int_equal(k8s_client_new(f.loop, &bad, NULL, &c2, &err), BD_EINVAL);
    bad = f.cfg;
    bad.cert_pem = "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n";
    bad.key_pem = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n";
    assert_int_equal(k8s_client_new(f.loop, &bad, NULL, &c2, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "client certificate"));
    bad = f.cfg;
    bad.ca_pem = "garbage";
    assert_int_equal(k8s_client_new(f.loop, &bad, NULL, &c2, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "CA"));
    bad = f.cfg;
    bad.token_file = "/nonexistent/token";
    assert_int_equal(k8s_client_new(f.loop, &bad, NULL, &c2, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "/nonexistent/token"));
    kfx_stop(&f);
}

static void test_opts_env(void **state)
{
    k8s_client_opts_t o;
    setenv("BINDY_KUBE_QPS", "7.5", 1);
    setenv("BINDY_KUBE_BURST", "9", 1);
    k8s_client_opts_init(&o);
    assert_true(o.qps == 7.5);
    assert_int_equal(o.burst, 9);
    setenv("BINDY_KUBE_QPS", "-1", 1);
    setenv("BINDY_KUBE_BURST", "lots", 1);
    k8s_client_opts_init(&o);
    assert_true(o.qps == 20);
    assert_int_equal(o.burst, 30);
    assert_int_equal(o.timeout_ms, 30000);
    assert_int_equal(o.max_retries, 10);
    assert_string_equal(o.field_manager, "bindy");
    unsetenv("BINDY_KUBE_QPS");
    unsetenv("BINDY_KUBE_BURST");
}

/* ---- read-modify-write ---------------------------------------------------------------- */

typedef struct mut {
    kfx_t *f;
    int calls;
    int interfere; /* concurrent writes to make, one per call, while > 0 */
    int ret;
} mut_t;

static int mutate(void *arg, json_t *obj)
{
    mut_t *m = arg;
    m->calls++;
    static int writes;
    if (m->interfere-- > 0) {
        char body[128];
        snprintf(body, sizeof(body), "{\"metadata\":{\"annotations\":{\"other\":\"%d\"}}}",
                 ++writes);
        assert_int_equal(kfx_http(m->f, "PATCH", AR_PATH "/www", "application/merge-patch+json", body), 200);
    }
    if (m->ret != 0)
        return m->ret;
    json_t *spec = json_object_get(obj, "spec");
    json_object_set_new(spec, "ttl",
                        json_integer(json_integer_value(json_object_get(spec, "ttl")) + 1));
    return 0;
}

/* k8s_modify passes one arg to both mutate and cb: a struct holding both. */
typedef struct mod_ctx {
    mut_t m;
    got_t g;
} mod_ctx_t;

static int mod_mutate(void *arg, json_t *obj) { return mutate(&((mod_ctx_t *)arg)->m, obj); }
static void mod_done(void *arg, const k8s_resp_t *r) { on_done(&((mod_ctx_t *)arg)->g, r); }

static void test_modify_conflicts(void **state)
{
    kfx_t f;
    fx_start(&f);
    got_t g = {0};
    json_t *obj = arecord("www", "192.0.2.10");
    assert_int_equal(k8s_create(f.c, &AREC, "default", obj, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    json_decref(obj);
    assert_int_equal(g.code, BD_OK);
    got_reset(&g);

    /* one concurrent write: the first PUT conflicts, the second attempt wins */
    bd_apiserver_log_clear(f.as);
    mod_ctx_t x = {.m = {.f = &f, .interfere = 1}};
    assert_int_equal(k8s_modify(f.c, &AREC, "default", "www", NULL, mod_mutate, mod_done, &x, NULL),
                     0);
    assert_int_equal(x.m.calls, 0);
    assert_true(kfx_wait_count(f.loop, &x.g.n, 1, 20));
    assert_int_equal(x.g.code, BD_OK);
    assert_int_equal(x.m.calls, 2);
    assert_int_equal(json_integer_value(jget(x.g.body, "spec.ttl")), 301);
    assert_string_equal(jstr(x.g.body, "metadata.annotations.other"), "1");
    bd_apiserver_req_t e[16];
    assert_int_equal(log_find(f.as, "get", "/arecords/www", e, 16), 2);
    size_t nu = log_find(f.as, "update", "/arecords/www", e, 16);
    assert_int_equal(nu, 2);
    assert_int_equal(e[0].status, 409);
    assert_int_equal(e[1].status, 200);
    got_reset(&x.g);

    /* a writer that always interferes: 5 attempts, then BD_ECONFLICT */
    x.m = (mut_t){.f = &f, .interfere = 100};
    assert_int_equal(k8s_modify(f.c, &AREC, "default", "www", NULL, mod_mutate, mod_done, &x, NULL),
                     0);
    assert_true(kfx_wait_count(f.loop, &x.g.n, 1, 20));
    if (x.g.code != BD_ECONFLICT) {
        char *lj = bd_apiserver_log_json(f.as, 0);
        fprintf(stderr, "calls %d code %d: %s\n%s\n", x.m.calls, x.g.code, x.g.message, lj);
        free(lj);
    }
    assert_int_equal(x.g.code, BD_ECONFLICT);
    assert_int_equal(x.m.calls, 5);
    got_reset(&x.g);

    /* nothing to write: BD_OK with the object read, no PUT */
    bd_apiserver_log_clear(f.as);
    x.m = (mut_t){.f = &f, .ret = 1};
    assert_int_equal(k8s_modify(f.c, &AREC, "default", "www", NULL, mod_mutate, mod_done, &x, NULL),
                     0);
    assert_true(kfx_wait_count(f.loop, &x.g.n, 1, 20));
    assert_int_equal(x.g.code, BD_OK);
    assert_int_equal(json_integer_value(jget(x.g.body, "spec.ttl")), 301);
    assert_int_equal(log_find(f.as, "update", NULL, e, 16), 0);
    got_reset(&x.g);

    /* mutate gives up */
    x.m = (mut_t){.f = &f, .ret = BD_EINVAL};
    assert_int_equal(k8s_modify(f.c, &AREC, "default", "www", NULL, mod_mutate, mod_done, &x, NULL),
                     0);
    assert_true(kfx_wait_count(f.loop, &x.g.n, 1, 20));
    assert_int_equal(x.g.code, BD_EINVAL);
    got_reset(&x.g);

    /* a missing object */
    x.m = (mut_t){.f = &f};
    assert_int_equal(
        k8s_modify(f.c, &AREC, "default", "gone", NULL, mod_mutate, mod_done, &x, NULL), 0);
    assert_true(kfx_wait_count(f.loop, &x.g.n, 1, 20));
    assert_int_equal(x.g.code, BD_ENOTFOUND);
    assert_int_equal(x.m.calls, 0);
    got_reset(&x.g);

    /* the status subresource */
    x.m = (mut_t){.f = &f, .ret = 0};
    assert_int_equal(
        k8s_modify(f.c, &AREC, "default", "www", "status", mod_mutate, mod_done, &x, NULL), 0);
    assert_true(kfx_wait_count(f.loop, &x.g.n, 1, 20));
    assert_int_equal(x.g.code, BD_OK);
    assert_int_equal(json_integer_value(jget(x.g.body, "spec.ttl")),
                     301); /* spec ignored on /status */
    assert_int_equal(log_find(f.as, "update", "/arecords/www/status", e, 16), 1);
    got_reset(&x.g);

    /* cancelled while reading: no callback, no write */
    bd_apiserver_log_clear(f.as);
    bd_apiserver_set_latency(f.as, 200);
    x.m = (mut_t){.f = &f};
    k8s_call_t *h = NULL;
    assert_int_equal(k8s_modify(f.c, &AREC, "default", "www", NULL, mod_mutate, mod_done, &x, &h),
                     0);
    assert_non_null(h);
    kfx_run_for(f.loop, 0.05);
    k8s_call_cancel(h);
    kfx_run_for(f.loop, 0.5);
    assert_int_equal(x.g.n, 0);
    assert_int_equal(x.m.calls, 0);
    bd_apiserver_set_latency(f.as, 0);
    kfx_stop(&f);
}

/* ---- politeness ----------------------------------------------------------------------- */

static void test_throttle_retry_after(void **state)
{
    kfx_t f;
    fx_start(&f);
    got_t g = {0};
    bd_apiserver_log_clear(f.as);
    bd_apiserver_throttle_next(f.as, 1, 2, "list /api/v1/namespaces/default/configmaps");
    double t0 = bd_mono_s();
    do_req(&f, K8S_GET, "/api/v1/namespaces/default/configmaps", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_OK);
    assert_true(g.t - t0 >= 1.9);
    bd_apiserver_req_t e[8];
    assert_int_equal(log_find(f.as, "list", "/configmaps", e, 8), 2);
    assert_int_equal(e[0].status, 429);
    assert_int_equal(e[1].status, 200);
    double gap = e[1].time - e[0].time;
    assert_true(gap >= 1.9);
    assert_true(gap < 5.0);
    k8s_client_stats_t s;
    k8s_client_stats(f.c, &s);
    assert_int_equal(s.throttled, 1);
    assert_int_equal(s.retries, 1);
    k8s_client_free(f.c);

    /* retries run out: BD_EBUSY after max_retries + 1 attempts */
    k8s_client_opts_t o;
    k8s_client_opts_init(&o);
    o.max_retries = 2;
    kfx_client(&f, &o);
    bd_apiserver_log_clear(f.as);
    bd_apiserver_throttle_next(f.as, 5, 1, NULL);
    do_req(&f, K8S_GET, "/api/v1/namespaces/default/configmaps", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_EBUSY);
    assert_int_equal(g.status, 429);
    assert_string_equal(g.reason, "TooManyRequests");
    assert_int_equal(log_find(f.as, "list", "/configmaps", e, 8), 3);
    k8s_client_stats(f.c, &s);
    assert_int_equal(s.throttled, 3);
    assert_int_equal(s.retries, 2);
    assert_int_equal(s.errors, 1);
    bd_apiserver_reset_faults(f.as);
    got_reset(&g);
    kfx_stop(&f);
}

static void test_rate_limit(void **state)
{
    kfx_t f;
    kfx_opts_t o = {.bookmark_ms = 200, .qps = 20, .burst = 5};
    kfx_start(&f, &o);
    bd_apiserver_log_clear(f.as);
    enum { N = 40 };
    static got_t g[N];
    int done = 0;
    memset(g, 0, sizeof(g));
    double t0 = bd_mono_s();
    for (int i = 0; i < N; i++) {
        k8s_req_t r = {.method = K8S_GET, .path = "/api/v1/namespaces/default"};
        assert_int_equal(k8s_call(f.c, &r, on_done, &g[i], NULL), 0);
    }
    double end = bd_mono_s() + 20;
    while (done < N && bd_mono_s() < end) {
        kfx_run_for(f.loop, 0.02);
        done = 0;
        for (int i = 0; i < N; i++)
            done += g[i].n;
    }
    assert_int_equal(done, N);
    double t1 = bd_mono_s();
    bd_apiserver_req_t e[N];
    assert_int_equal(log_find(f.as, "get", "/namespaces/default", e, N), N);
    double span = e[N - 1].time - e[0].time;
    /* 5 at once, then 35 at 20/s: 1.75 s */
    assert_true(span >= 1.5);
    assert_true(t1 - t0 >= 1.5);
    /* the first burst went out together */
    assert_true(e[4].time - e[0].time < 0.25);
    for (int i = 0; i < N; i++) {
        assert_int_equal(g[i].code, BD_OK);
        got_reset(&g[i]);
    }
    k8s_client_stats_t s;
    k8s_client_stats(f.c, &s);
    assert_true(s.rate_wait_s > 10.0); /* sum of the waits: 0.05+0.10+...+1.75 */
    kfx_stop(&f);
}

static void test_backoff(void **state)
{
    kfx_t f;
    fx_start(&f);
    got_t g = {0};
    bd_apiserver_log_clear(f.as);
    enum { FAILS = 8 };
    bd_apiserver_fail_next(f.as, FAILS, 500, "get /api/v1/namespaces/kube-system");
    for (int i = 0; i < FAILS; i++) {
        do_req(&f, K8S_GET, "/api/v1/namespaces/kube-system", NULL, NULL, "namespaces//kube-system",
               &g);
        assert_int_equal(g.code, BD_EUNAVAIL);
        assert_int_equal(g.status, 500);
        assert_string_equal(g.reason, "InternalError");
        assert_non_null(strstr(g.message, "injected fault"));
    }
    /* another key is not held back */
    double t0 = bd_mono_s();
    do_req(&f, K8S_GET, "/api/v1/namespaces/default", NULL, NULL, "other", &g);
    assert_int_equal(g.code, BD_OK);
    assert_true(g.t - t0 < 0.3);
    /* then the key succeeds (after its 640 ms) and is reset */
    do_req(&f, K8S_GET, "/api/v1/namespaces/kube-system", NULL, NULL, "namespaces//kube-system",
           &g);
    assert_int_equal(g.code, BD_OK);
    t0 = bd_mono_s();
    do_req(&f, K8S_GET, "/api/v1/namespaces/kube-system", NULL, NULL, "namespaces//kube-system",
           &g);
    assert_int_equal(g.code, BD_OK);
    assert_true(g.t - t0 < 0.3);

    bd_apiserver_req_t e[16];
    size_t n = log_find(f.as, "get", "/namespaces/kube-system", e, 16);
    assert_int_equal(n, FAILS + 2);
    double gap[FAILS + 1];
    for (size_t i = 1; i <= FAILS; i++) {
        gap[i] = e[i].time - e[i - 1].time;
        double want = 0.005 * (double)(1u << (i - 1)); /* backoff after failure i */
        if (gap[i] < want * 0.9)
            fprintf(stderr, "gap %zu = %.4f < %.4f\n", i, gap[i], want);
        assert_true(gap[i] >= want * 0.9);
    }
    /* growing: each of the later gaps is above the one before */
    for (size_t i = 5; i <= FAILS; i++)
        assert_true(gap[i] > gap[i - 1]);
    assert_true(gap[FAILS] < 2.0);
    got_reset(&g);
    kfx_stop(&f);
}

static void test_status_mapping(void **state)
{
    kfx_t f;
    fx_start(&f);
    got_t g = {0};
    static const struct {
        int status;
        int code;
        const char *reason;
    } cases[] = {
        {500, BD_EUNAVAIL, "InternalError"},
        {503, BD_EUNAVAIL, "ServiceUnavailable"},
        {504, BD_EUNAVAIL, "Timeout"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        bd_apiserver_fail_next(f.as, 1, cases[i].status, NULL);
        do_req(&f, K8S_GET, "/api/v1/namespaces/default", NULL, NULL, NULL, &g);
        assert_int_equal(g.code, cases[i].code);
        assert_int_equal(g.status, cases[i].status);
        assert_string_equal(g.reason, cases[i].reason);
    }
    /* 405 on a collection PUT: another 4xx */
    json_t *b = json_object();
    do_req(&f, K8S_PUT, "/api/v1/namespaces/default/configmaps", NULL, b, NULL, &g);
    json_decref(b);
    assert_int_equal(g.code, BD_EINVAL);
    assert_int_equal(g.status, 405);
    /* unknown resource: 404 */
    do_req(&f, K8S_GET, "/apis/nothing.example/v1/things", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_ENOTFOUND);
    /* a timeout */
    k8s_client_free(f.c);
    k8s_client_opts_t o;
    k8s_client_opts_init(&o);
    o.timeout_ms = 300;
    kfx_client(&f, &o);
    bd_apiserver_set_latency(f.as, 1500);
    do_req(&f, K8S_GET, "/api/v1/namespaces/default", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_ETIMEOUT);
    assert_int_equal(g.status, 0);
    assert_non_null(strstr(g.message, "/api/v1/namespaces/default"));
    bd_apiserver_set_latency(f.as, 0);
    got_reset(&g);
    kfx_stop(&f);
}

static void test_connection_refused(void **state)
{
    kfx_t f;
    fx_start(&f);
    char url[64];
    snprintf(url, sizeof(url), "%s", bd_apiserver_url(f.as));
    k8s_client_free(f.c);
    bd_apiserver_stop(f.as);
    f.as = NULL;
    f.cfg.server = url;
    kfx_client(&f, NULL);
    got_t g = {0};
    do_req(&f, K8S_GET, "/api/v1/namespaces", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_EIO);
    assert_int_equal(g.status, 0);
    assert_true(strlen(g.message) > 0);
    got_reset(&g);
    kfx_stop(&f);
}

/* ---- watches -------------------------------------------------------------------------- */

typedef struct wrec {
    json_t *events; /* [[type, name, rv], ...] */
    int nev;
    int bookmarks;
    got_t end;
    k8s_call_t *self;
    bd_apiserver_t *drop_on_first; /* drop the watch when the first event arrives */
    bool cancel_on_first;
} wrec_t;

static void on_event(void *arg, const char *type, json_t *object)
{
    wrec_t *w = arg;
    assert_int_equal(w->end.n, 0);
    if (strcmp(type, "BOOKMARK") == 0) {
        w->bookmarks++;
        assert_non_null(jstr(object, "metadata.resourceVersion"));
        return;
    }
    const char *name = jstr(object, "metadata.name");
    json_array_append_new(w->events, json_pack("[s,s,s]", type, name ? name : "",
                                               jstr(object, "metadata.resourceVersion")
                                                   ? jstr(object, "metadata.resourceVersion")
                                                   : ""));
    w->nev++;
    if (w->drop_on_first != NULL && w->nev == 1)
        bd_apiserver_drop_watches(w->drop_on_first);
    if (w->cancel_on_first && w->nev == 1)
        k8s_call_cancel(w->self);
}

static void on_end(void *arg, const k8s_resp_t *r) { on_done(&((wrec_t *)arg)->end, r); }

static void create_sync(kfx_t *f, const char *name, const char *ip)
{
    got_t g = {0};
    json_t *o = arecord(name, ip);
    assert_int_equal(k8s_create(f->c, &AREC, "default", o, on_done, &g, NULL), 0);
    wait_done(f, &g);
    json_decref(o);
    assert_int_equal(g.code, BD_OK);
    got_reset(&g);
}

static void test_watch(void **state)
{
    kfx_t f;
    fx_start(&f);
    got_t g = {0};
    create_sync(&f, "a", "192.0.2.1");
    char q[256];
    snprintf(q, sizeof(q), "watch=1&resourceVersion=%llu&allowWatchBookmarks=true&timeoutSeconds=2",
             (unsigned long long)bd_apiserver_resource_version(f.as));
    wrec_t w = {.events = json_array()};
    assert_int_equal(k8s_watch(f.c, AR_PATH, q, on_event, on_end, &w, &w.self), 0);
    assert_non_null(w.self);
    kfx_run_for(f.loop, 0.2);
    assert_int_equal(bd_apiserver_watches_open(f.as), 1);
    create_sync(&f, "b", "192.0.2.2");
    json_t *p = json_pack("{s:{s:i}}", "spec", "ttl", 60);
    got_reset(&g);
    assert_int_equal(k8s_merge_patch(f.c, &AREC, "default", "a", NULL, p, on_done, &g, NULL), 0);
    wait_done(&f, &g);
    json_decref(p);
    got_reset(&g);
    assert_int_equal(k8s_delete(f.c, &AREC, "default", "b", on_done, &g, NULL), 0);
    wait_done(&f, &g);
    assert_true(kfx_wait_count(f.loop, &w.nev, 3, 5));
    /* the stream ends by itself (timeoutSeconds=2): BD_OK */
    assert_true(kfx_wait_count(f.loop, &w.end.n, 1, 10));
    assert_int_equal(w.end.code, BD_OK);
    assert_int_equal(w.end.status, 200);
    assert_int_equal(w.nev, 3);
    const char *want[3][2] = {{"ADDED", "b"}, {"MODIFIED", "a"}, {"DELETED", "b"}};
    unsigned long long last = 0;
    for (int i = 0; i < 3; i++) {
        json_t *ev = json_array_get(w.events, (size_t)i);
        assert_string_equal(json_string_value(json_array_get(ev, 0)), want[i][0]);
        assert_string_equal(json_string_value(json_array_get(ev, 1)), want[i][1]);
        unsigned long long rv = strtoull(json_string_value(json_array_get(ev, 2)), NULL, 10);
        assert_true(rv > last);
        last = rv;
    }
    assert_true(w.bookmarks >= 2); /* every 200 ms for 2 s */
    k8s_client_stats_t s;
    k8s_client_stats(f.c, &s);
    assert_int_equal(s.watch_events, (uint64_t)(3 + w.bookmarks));
    assert_int_equal(s.inflight, 0);
    json_decref(w.events);
    got_reset(&w.end);
    got_reset(&g);
    kfx_stop(&f);
}

static void test_watch_drop_gone_cancel(void **state)
{
    kfx_t f;
    fx_start(&f);
    create_sync(&f, "a", "192.0.2.1");
    unsigned long long rv0 = bd_apiserver_resource_version(f.as);

    /* a dropped stream: BD_EIO */
    char q[256];
    snprintf(q, sizeof(q), "watch=1&resourceVersion=%llu&timeoutSeconds=30", rv0);
    wrec_t w = {.events = json_array(), .drop_on_first = f.as};
    assert_int_equal(k8s_watch(f.c, AR_PATH, q, on_event, on_end, &w, &w.self), 0);
    kfx_run_for(f.loop, 0.2);
    create_sync(&f, "b", "192.0.2.2");
    assert_true(kfx_wait_count(f.loop, &w.end.n, 1, 10));
    assert_int_equal(w.nev, 1);
    assert_int_equal(w.end.code, BD_EIO);
    got_reset(&w.end);
    json_decref(w.events);

    /* compacted history: an ERROR event (410 Expired), then BD_EGONE */
    bd_apiserver_compact(f.as);
    w = (wrec_t){.events = json_array()};
    assert_int_equal(k8s_watch(f.c, AR_PATH, q, on_event, on_end, &w, &w.self), 0);
    assert_true(kfx_wait_count(f.loop, &w.end.n, 1, 10));
    assert_int_equal(w.nev, 1);
    assert_string_equal(json_string_value(json_array_get(json_array_get(w.events, 0), 0)), "ERROR");
    assert_int_equal(w.end.code, BD_EGONE);
    assert_string_equal(w.end.reason, "Expired");
    assert_int_equal(json_integer_value(json_object_get(w.end.body, "code")), 410);
    got_reset(&w.end);
    json_decref(w.events);

    /* a refused watch (401-like answers come as HTTP status): 404 for an unknown resource */
    w = (wrec_t){.events = json_array()};
    assert_int_equal(
        k8s_watch(f.c, "/apis/nothing.example/v1/things", "watch=1", on_event, on_end, &w, NULL),
        0);
    assert_true(kfx_wait_count(f.loop, &w.end.n, 1, 10));
    assert_int_equal(w.end.code, BD_ENOTFOUND);
    assert_int_equal(w.nev, 0);
    got_reset(&w.end);
    json_decref(w.events);

    /* cancelled from its own event callback: no more events, no on_end */
    snprintf(q, sizeof(q), "watch=1&resourceVersion=%llu&timeoutSeconds=30",
             (unsigned long long)bd_apiserver_resource_version(f.as));
    w = (wrec_t){.events = json_array(), .cancel_on_first = true};
    assert_int_equal(k8s_watch(f.c, AR_PATH, q, on_event, on_end, &w, &w.self), 0);
    kfx_run_for(f.loop, 0.2);
    create_sync(&f, "c", "192.0.2.3");
    create_sync(&f, "d", "192.0.2.4");
    kfx_run_for(f.loop, 0.5);
    assert_int_equal(w.nev, 1);
    assert_int_equal(w.end.n, 0);
    json_decref(w.events);

    /* cancelled from outside */
    snprintf(q, sizeof(q), "watch=1&resourceVersion=%llu&timeoutSeconds=30",
             (unsigned long long)bd_apiserver_resource_version(f.as));
    w = (wrec_t){.events = json_array()};
    assert_int_equal(k8s_watch(f.c, AR_PATH, q, on_event, on_end, &w, &w.self), 0);
    kfx_run_for(f.loop, 0.2);
    k8s_call_cancel(w.self);
    create_sync(&f, "e", "192.0.2.5");
    kfx_run_for(f.loop, 0.3);
    assert_int_equal(w.end.n, 0);
    assert_int_equal(w.nev, 0);
    json_decref(w.events);
    k8s_client_stats_t s;
    k8s_client_stats(f.c, &s);
    assert_int_equal(s.inflight, 0);
    kfx_stop(&f);
}

/* A 5xx that carries Retry-After is retried: a watch from a resourceVersion the server has
 * not reached yet gets 504 with retryAfterSeconds 1; once the server is there, the retry
 * is accepted. Without Retry-After a 5xx is not retried (test_backoff). */
static void test_5xx_retry_after(void **state)
{
    kfx_t f;
    fx_start(&f);
    bd_apiserver_log_clear(f.as);
    unsigned long long next = bd_apiserver_resource_version(f.as) + 1;
    char q[256];
    snprintf(q, sizeof(q), "watch=1&resourceVersion=%llu&timeoutSeconds=30", next);
    wrec_t w = {.events = json_array()};
    assert_int_equal(k8s_watch(f.c, AR_PATH, q, on_event, on_end, &w, &w.self), 0);
    kfx_run_for(f.loop, 0.3);
    create_sync(&f, "a", "192.0.2.1"); /* the server reaches rv `next` */
    create_sync(&f, "b", "192.0.2.2");
    assert_true(kfx_wait_count(f.loop, &w.nev, 1, 5));
    assert_int_equal(w.end.n, 0);
    assert_string_equal(json_string_value(json_array_get(json_array_get(w.events, 0), 1)), "b");
    bd_apiserver_req_t e[4];
    assert_int_equal(log_find(f.as, "watch", "/arecords", e, 4), 2);
    assert_int_equal(e[0].status, 504);
    assert_int_equal(e[1].status, 200);
    assert_true(e[1].time - e[0].time >= 0.9);
    k8s_client_stats_t st;
    k8s_client_stats(f.c, &st);
    assert_int_equal(st.retries, 1);
    assert_int_equal(st.throttled, 0);
    k8s_call_cancel(w.self);
    json_decref(w.events);

    /* retries run out: BD_EUNAVAIL */
    k8s_client_free(f.c);
    k8s_client_opts_t o;
    k8s_client_opts_init(&o);
    o.max_retries = 1;
    kfx_client(&f, &o);
    snprintf(q, sizeof(q), "watch=1&resourceVersion=%llu",
             (unsigned long long)bd_apiserver_resource_version(f.as) + 5);
    w = (wrec_t){.events = json_array()};
    assert_int_equal(k8s_watch(f.c, AR_PATH, q, on_event, on_end, &w, &w.self), 0);
    assert_true(kfx_wait_count(f.loop, &w.end.n, 1, 10));
    assert_int_equal(w.end.code, BD_EUNAVAIL);
    assert_int_equal(w.end.status, 504);
    assert_non_null(strstr(w.end.message, "Too large resource version"));
    got_reset(&w.end);
    json_decref(w.events);
    kfx_stop(&f);
}

/* Events larger than the server's chunks arrive in pieces; a list of them in one chunk. */
static void test_watch_split_events(void **state)
{
    kfx_t f;
    fx_start(&f);
    char q[256];
    snprintf(q, sizeof(q), "watch=1&resourceVersion=%llu&timeoutSeconds=30",
             (unsigned long long)bd_apiserver_resource_version(f.as));
    wrec_t w = {.events = json_array()};
    assert_int_equal(k8s_watch(f.c, AR_PATH, q, on_event, on_end, &w, &w.self), 0);
    kfx_run_for(f.loop, 0.2);
    size_t big = 200 * 1024; /* annotations are capped at 256 KiB */
    char *val = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        val[i] = (char)('a' + i % 26);
    val[big] = '\0';
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof(name), "big%d", i);
        json_t *o = arecord(name, "192.0.2.9");
        json_object_set_new(json_object_get(o, "metadata"), "annotations",
                            json_pack("{s:s}", "blob", val));
        got_t g = {0};
        assert_int_equal(k8s_create(f.c, &AREC, "default", o, on_done, &g, NULL), 0);
        wait_done(&f, &g);
        assert_int_equal(g.code, BD_OK);
        got_reset(&g);
        json_decref(o);
    }
    for (int i = 0; i < 5; i++)
        create_sync(&f, (const char *[]){"s0", "s1", "s2", "s3", "s4"}[i], "192.0.2.8");
    assert_true(kfx_wait_count(f.loop, &w.nev, 8, 10));
    for (int i = 0; i < 8; i++) {
        json_t *ev = json_array_get(w.events, (size_t)i);
        assert_string_equal(json_string_value(json_array_get(ev, 0)), "ADDED");
    }
    assert_string_equal(json_string_value(json_array_get(json_array_get(w.events, 2), 1)), "big2");
    assert_string_equal(json_string_value(json_array_get(json_array_get(w.events, 7), 1)), "s4");
    k8s_call_cancel(w.self);
    free(val);
    json_decref(w.events);
    kfx_stop(&f);
}

/* A server that accepts the connection and never answers: a watch is not bound by
 * timeout_ms, but silence beyond timeoutSeconds + 30 s breaks it (BD_EIO). Takes 31 s. */
static void test_watch_silence(void **state)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 8), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &al), 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    kfx_t f = {0};
    f.loop = ev_loop_new(EVFLAG_AUTO);
    f.cfg.server = url;
    f.cfg.origin = "test";
    k8s_client_opts_t o;
    k8s_client_opts_init(&o);
    o.timeout_ms = 500;
    kfx_client(&f, &o);
    wrec_t w = {.events = json_array()};
    double t0 = bd_mono_s();
    assert_int_equal(
        k8s_watch(f.c, AR_PATH, "watch=1&timeoutSeconds=1", on_event, on_end, &w, NULL), 0);
    kfx_run_for(f.loop, 2.0);
    assert_int_equal(w.end.n, 0); /* timeout_ms does not apply */
    assert_true(kfx_wait_count(f.loop, &w.end.n, 1, 40));
    double took = bd_mono_s() - t0;
    assert_int_equal(w.end.code, BD_EIO);
    assert_non_null(strstr(w.end.message, "silent"));
    assert_true(took >= 30.5 && took < 36);
    got_reset(&w.end);
    json_decref(w.events);
    k8s_client_free(f.c);
    ev_loop_destroy(f.loop);
    close(ls);
}

/* ---- cancellation and freeing ------------------------------------------------------------ */

typedef struct chain {
    k8s_client_t *c;
    k8s_call_t *victim;
    got_t g;
    bool free_client;
    int started_from_cb;
    int victim_done;
    got_t g2;
} chain_t;

static void cancel_other(void *arg, const k8s_resp_t *r)
{
    chain_t *ch = arg;
    on_done(&ch->g, r);
    k8s_call_cancel(ch->victim);
    /* start another call from inside a callback */
    k8s_req_t req = {.method = K8S_GET, .path = "/api/v1/namespaces/default"};
    assert_int_equal(k8s_call(ch->c, &req, on_done, &ch->g2, NULL), 0);
    ch->started_from_cb++;
}

/* The victim completed first: its handle is no longer valid (client.h), so forget it. */
static void victim_done(void *arg, const k8s_resp_t *r)
{
    chain_t *ch = arg;
    ch->victim = NULL;
    ch->victim_done++;
}

static void free_from_cb(void *arg, const k8s_resp_t *r)
{
    chain_t *ch = arg;
    on_done(&ch->g, r);
    k8s_client_free(ch->c);
}

static void test_cancel(void **state)
{
    kfx_t f;
    fx_start(&f);
    bd_apiserver_set_latency(f.as, 300);

    /* cancel before the answer: no callback */
    got_t g = {0};
    k8s_call_t *h = NULL;
    k8s_req_t r = {.method = K8S_GET, .path = "/api/v1/namespaces/default"};
    assert_int_equal(k8s_call(f.c, &r, on_done, &g, &h), 0);
    assert_non_null(h);
    kfx_run_for(f.loop, 0.05);
    k8s_call_cancel(h);
    k8s_call_cancel(NULL);
    kfx_run_for(f.loop, 0.6);
    assert_int_equal(g.n, 0);

    /* cancel right away (before the loop ran) */
    assert_int_equal(k8s_call(f.c, &r, on_done, &g, &h), 0);
    k8s_call_cancel(h);
    kfx_run_for(f.loop, 0.5);
    assert_int_equal(g.n, 0);

    /* a callback cancels another call that completes in the same loop pass, and starts one */
    bd_apiserver_set_latency(f.as, 0);
    chain_t ch = {.c = f.c};
    assert_int_equal(k8s_call(f.c, &r, cancel_other, &ch, NULL), 0);
    assert_int_equal(k8s_call(f.c, &r, victim_done, &ch, &ch.victim), 0);
    assert_true(kfx_wait_count(f.loop, &ch.g2.n, 1, 10));
    kfx_run_for(f.loop, 0.3);
    assert_int_equal(ch.g.n, 1);
    assert_int_equal(ch.started_from_cb, 1);
    assert_int_equal(ch.g2.code, BD_OK);
    assert_true(ch.victim_done <= 1); /* it may have completed first; never twice */
    got_reset(&ch.g);
    got_reset(&ch.g2);

    /* free the client with calls in flight, waiting and watching: no callback */
    k8s_client_opts_t o;
    k8s_client_opts_init(&o);
    o.qps = 1;
    o.burst = 1;
    k8s_client_t *c2 = NULL;
    bd_err_t err;
    assert_int_equal(k8s_client_new(f.loop, &f.cfg, &o, &c2, &err), 0);
    got_t many[4] = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(k8s_call(c2, &r, on_done, &many[i], NULL), 0);
    wrec_t w = {.events = json_array()};
    assert_int_equal(k8s_watch(c2, AR_PATH, "watch=1", on_event, on_end, &w, NULL), 0);
    kfx_run_for(f.loop, 0.2);
    k8s_client_free(c2);
    kfx_run_for(f.loop, 0.3);
    int total = 0;
    for (int i = 0; i < 4; i++)
        total += many[i].n;
    assert_true(total <= 1); /* the first may have completed before the free */
    for (int i = 0; i < 4; i++)
        got_reset(&many[i]);
    assert_int_equal(w.end.n, 0);
    json_decref(w.events);

    /* free the client from inside a callback, with other calls pending */
    assert_int_equal(k8s_client_new(f.loop, &f.cfg, &o, &c2, &err), 0);
    chain_t fc = {.c = c2};
    assert_int_equal(k8s_call(c2, &r, free_from_cb, &fc, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(k8s_call(c2, &r, on_done, &many[i], NULL), 0);
    assert_true(kfx_wait_count(f.loop, &fc.g.n, 1, 10));
    kfx_run_for(f.loop, 0.3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(many[i].n, 0);
    got_reset(&fc.g);
    kfx_stop(&f);
}

/* ---- TLS and tokens -------------------------------------------------------------------- */

static char g_tmp[256];

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    b[n] = '\0';
    fclose(fp);
    return b;
}

static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    assert_int_equal(rc, 0);
}

static void make_certs(void)
{
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/bd-k8s-client-XXXXXX");
    assert_non_null(mkdtemp(g_tmp));
    const char *d = g_tmp;
    sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bd-test-ca "
       "-keyout ca.key -out ca.crt >/dev/null 2>&1",
       d);
    sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bd-other-ca "
       "-keyout other.key -out other.crt >/dev/null 2>&1",
       d);
    sh("cd %s && openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout srv.key -out "
       "srv.csr "
       ">/dev/null 2>&1",
       d);
    sh("cd %s && printf "
       "'subjectAltName=IP:127.0.0.1,DNS:bd-test.invalid\\nextendedKeyUsage=serverAuth\\n' "
       "> ext && openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
       "-extfile ext -out srv.crt >/dev/null 2>&1",
       d);
    /* a client certificate, to prove cert/key blobs are accepted */
    sh("cd %s && openssl req -newkey rsa:2048 -nodes -subj /CN=bindy -keyout cli.key -out cli.csr "
       ">/dev/null 2>&1 && openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
       "-days 2 -out cli.crt >/dev/null 2>&1",
       d);
}

static char *tmp_file(const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", g_tmp, name);
    return slurp(p);
}

static void test_https(void **state)
{
    make_certs();
    char *ca = tmp_file("ca.crt"), *other = tmp_file("other.crt");
    char *crt = tmp_file("srv.crt"), *key = tmp_file("srv.key");
    char *ccrt = tmp_file("cli.crt"), *ckey = tmp_file("cli.key");
    kfx_t f;
    kfx_opts_t o = {.bookmark_ms = 200, .tls_cert_pem = crt, .tls_key_pem = key};
    kfx_start_double(&f, &o);
    assert_true(strncmp(bd_apiserver_url(f.as), "https://", 8) == 0);
    got_t g = {0};

    /* the right CA (with a client certificate, which the double ignores) */
    f.cfg.ca_pem = ca;
    f.cfg.cert_pem = ccrt;
    f.cfg.key_pem = ckey;
    kfx_client(&f, NULL);
    do_req(&f, K8S_GET, "/api/v1/namespaces/default", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_OK);
    assert_string_equal(jstr(g.body, "metadata.name"), "default");
    k8s_client_free(f.c);

    /* the wrong CA: refused */
    f.cfg.ca_pem = other;
    f.cfg.cert_pem = f.cfg.key_pem = NULL;
    kfx_client(&f, NULL);
    do_req(&f, K8S_GET, "/api/v1/namespaces/default", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_EIO);
    assert_int_equal(g.status, 0);
    k8s_client_free(f.c);

    /* no CA (system CAs): refused too */
    f.cfg.ca_pem = NULL;
    kfx_client(&f, NULL);
    do_req(&f, K8S_GET, "/api/v1/namespaces/default", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_EIO);
    k8s_client_free(f.c);

    /* insecure-skip-tls-verify: accepted */
    f.cfg.ca_pem = other;
    f.cfg.insecure = true;
    kfx_client(&f, NULL);
    do_req(&f, K8S_GET, "/api/v1/namespaces/default", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_OK);
    k8s_client_free(f.c);
    f.cfg.insecure = false;

    /* tls-server-name: the certificate is checked against it */
    f.cfg.ca_pem = ca;
    f.cfg.tls_server_name = "bd-test.invalid";
    kfx_client(&f, NULL);
    do_req(&f, K8S_GET, "/api/v1/namespaces/default", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_OK);
    k8s_client_free(f.c);
    f.cfg.tls_server_name = "wrong.invalid";
    kfx_client(&f, NULL);
    do_req(&f, K8S_GET, "/api/v1/namespaces/default", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_EIO);
    f.cfg.tls_server_name = NULL;

    /* a watch over TLS */
    k8s_client_free(f.c);
    kfx_client(&f, NULL);
    wrec_t w = {.events = json_array()};
    assert_int_equal(k8s_watch(f.c, "/api/v1/namespaces", "watch=1&timeoutSeconds=1", on_event,
                               on_end, &w, NULL),
                     0);
    assert_true(kfx_wait_count(f.loop, &w.end.n, 1, 10));
    assert_int_equal(w.end.code, BD_OK);
    assert_true(w.nev >= 4); /* the initial ADDED of default, kube-system, ... */
    json_decref(w.events);
    got_reset(&w.end);

    /* HTTP/1.1 over TLS: a watch holds its connection while concurrent calls get their own */
    w = (wrec_t){.events = json_array()};
    assert_int_equal(k8s_watch(f.c, "/api/v1/namespaces", "watch=1&timeoutSeconds=30", on_event,
                               on_end, &w, &w.self),
                     0);
    got_t cc[5];
    memset(cc, 0, sizeof(cc));
    int ndone = 0;
    for (int i = 0; i < 5; i++) {
        k8s_req_t rq = {.method = K8S_GET, .path = "/api/v1/namespaces/default"};
        assert_int_equal(k8s_call(f.c, &rq, on_done, &cc[i], NULL), 0);
    }
    double end = bd_mono_s() + 10;
    while (ndone < 5 && bd_mono_s() < end) {
        kfx_run_for(f.loop, 0.02);
        ndone = 0;
        for (int i = 0; i < 5; i++)
            ndone += cc[i].n;
    }
    assert_int_equal(ndone, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cc[i].code, BD_OK);
        got_reset(&cc[i]);
    }
    assert_true(w.nev >= 4);
    assert_int_equal(w.end.n, 0);
    k8s_call_cancel(w.self);
    json_decref(w.events);

    got_reset(&g);
    kfx_stop(&f);
    free(ca);
    free(other);
    free(crt);
    free(key);
    free(ccrt);
    free(ckey);
    sh("rm -rf %s", g_tmp);
}

static void write_file(const char *path, const char *text)
{
    char tmp[600];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_true(n > 0 && (size_t)n < sizeof(tmp));
    FILE *fp = fopen(tmp, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    assert_int_equal(rename(tmp, path), 0);
}

static void test_token(void **state)
{
    kfx_t f;
    kfx_opts_t o = {.bookmark_ms = 200, .token = "right-token"};
    kfx_start_double(&f, &o);
    got_t g = {0};

    /* none: 401 */
    kfx_client(&f, NULL);
    do_req(&f, K8S_GET, "/api/v1/namespaces", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_EAUTH);
    assert_int_equal(g.status, 401);
    assert_string_equal(g.reason, "Unauthorized");
    k8s_client_free(f.c);

    /* the right one */
    f.cfg.token = "right-token";
    kfx_client(&f, NULL);
    do_req(&f, K8S_GET, "/api/v1/namespaces", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_OK);
    k8s_client_free(f.c);

    /* a token file wins over the token, and is re-read when it changes */
    char dir[] = "/tmp/bd-k8s-token-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char tf[600];
    snprintf(tf, sizeof(tf), "%s/token", dir);
    write_file(tf, "old-token\n");
    f.cfg.token_file = tf;
    kfx_client(&f, NULL);
    do_req(&f, K8S_GET, "/api/v1/namespaces", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_EAUTH);
    assert_null(strstr(g.message, "old-token"));
    write_file(tf, "right-token\n");
    kfx_run_for(f.loop, 1.1); /* the file is looked at no more than once a second */
    do_req(&f, K8S_GET, "/api/v1/namespaces", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_OK);
    /* rotated again (same size, new content) */
    write_file(tf, "wrong-token\n");
    kfx_run_for(f.loop, 1.1);
    do_req(&f, K8S_GET, "/api/v1/namespaces", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_EAUTH);
    write_file(tf, "right-token\n");
    kfx_run_for(f.loop, 1.1);
    do_req(&f, K8S_GET, "/api/v1/namespaces", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_OK);
    /* the file disappears: the last token is kept */
    unlink(tf);
    kfx_run_for(f.loop, 1.1);
    do_req(&f, K8S_GET, "/api/v1/namespaces", NULL, NULL, NULL, &g);
    assert_int_equal(g.code, BD_OK);
    rmdir(dir);
    got_reset(&g);
    kfx_stop(&f);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_opts_env),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_crud),
        cmocka_unit_test(test_modify_conflicts),
        cmocka_unit_test(test_throttle_retry_after),
        cmocka_unit_test(test_rate_limit),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_watch_drop_gone_cancel),
        cmocka_unit_test(test_5xx_retry_after),
        cmocka_unit_test(test_watch_split_events),
        cmocka_unit_test(test_watch_silence),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_https),
        cmocka_unit_test(test_token),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
