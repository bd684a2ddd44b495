#include "k8s_fixture.h"
#include "clock.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <curl/curl.h>

#ifndef BD_SOURCE_DIR
#define BD_SOURCE_DIR "."
#endif

#define API "bindy.firestoned.io/v1beta1"

void kfx_start_double(kfx_t *f, const kfx_opts_t *o)
{
    memset(f, 0, sizeof(*f));
    bd_err_t err;
    bd_apiserver_opts_t ao;
    bd_apiserver_opts_init(&ao);
    if (o && o->bookmark_ms)
        ao.bookmark_ms = o->bookmark_ms;
    if (o && o->history)
        ao.history = o->history;
    if (o) {
        ao.token = o->token;
        ao.tls_cert_pem = o->tls_cert_pem;
        ao.tls_key_pem = o->tls_key_pem;
    }
    if (bd_apiserver_start(&ao, &f->as, &err) != BD_OK)
        fail_msg("apiserver: %s", err.msg);
    const char *src = getenv("BINDY_SOURCE_DIR");
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/schema/crds", src && *src ? src : BD_SOURCE_DIR);
    if (bd_apiserver_load_crds(f->as, dir, &err) != BD_OK)
        fail_msg("load CRDs: %s", err.msg);
    const char *nss[] = {"dns-system", "other"};
    for (int i = 0; i < 2; i++) {
        char j[256];
        snprintf(j, sizeof(j), "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", nss[i]);
        assert_int_equal(bd_apiserver_create(f->as, j, &err), BD_OK);
    }
    f->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(f->loop);
    f->cfg.server = (char *)bd_apiserver_url(f->as);
    f->cfg.ns = "default";
    f->cfg.origin = "test";
}

void kfx_client(kfx_t *f, const k8s_client_opts_t *o)
{
    bd_err_t err;
    if (k8s_client_new(f->loop, &f->cfg, o, &f->c, &err) != BD_OK)
        fail_msg("client: %s", err.msg);
}

void kfx_start(kfx_t *f, const kfx_opts_t *o)
{
    kfx_start_double(f, o);
    k8s_client_opts_t co;
    k8s_client_opts_init(&co);
    if (o && o->qps)
        co.qps = o->qps;
    if (o && o->burst)
        co.burst = o->burst;
    kfx_client(f, &co);
}

void kfx_stop(kfx_t *f)
{
    k8s_client_free(f->c);
    f->c = NULL;
    if (f->loop)
        ev_loop_destroy(f->loop);
    f->loop = NULL;
    bd_apiserver_stop(f->as);
    f->as = NULL;
}

static void tick(struct ev_loop *loop, ev_timer *w, int revents)
{
}

bool kfx_run_until(struct ev_loop *loop, bool (*cond)(void *arg), void *arg, double timeout_s)
{
    ev_timer t; /* so that ev_run(EVRUN_ONCE) returns at least every 10 ms */
    ev_timer_init(&t, tick, 0.01, 0.01);
    ev_timer_start(loop, &t);
    double deadline = bd_mono_s() + timeout_s;
    bool ok;
    while (!(ok = cond && cond(arg)) && bd_mono_s() < deadline)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
    return ok;
}

void kfx_run_for(struct ev_loop *loop, double s)
{
    kfx_run_until(loop, NULL, NULL, s);
}

typedef struct count_wait {
    const int *counter;
    int want;
} count_wait_t;

static bool counted(void *arg)
{
    const count_wait_t *w = arg;
    return *w->counter >= w->want;
}

bool kfx_wait_count(struct ev_loop *loop, const int *counter, int want, double timeout_s)
{
    count_wait_t w = {counter, want};
    return kfx_run_until(loop, counted, &w, timeout_s);
}

/* The answer's body, capped: a test reads lists of a few hundred objects at most. */
typedef struct {
    char *buf;
    size_t len;
    bool keep, over;
} body_t;

#define KFX_BODY_MAX (16u << 20)

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    body_t *b = ud;
    size_t add = sz * n;
    if (!b->keep || b->over)
        return add;
    if (b->len + add > KFX_BODY_MAX) {
        b->over = true;
        return add;
    }
    char *nb = realloc(b->buf, b->len + add + 1);
    assert_non_null(nb);
    memcpy(nb + b->len, p, add);
    b->len += add;
    nb[b->len] = '\0';
    b->buf = nb;
    return add;
}

static long http(kfx_t *f, const char *method, const char *path, const char *ctype, const char *body, body_t *out)
{
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", bd_apiserver_url(f->as), path);
    CURL *e = curl_easy_init();
    struct curl_slist *h = NULL;
    assert_non_null(e);
    if (ctype) {
        char line[128];
        snprintf(line, sizeof(line), "Content-Type: %s", ctype);
        h = curl_slist_append(h, line);
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
    if (body)
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    long st = 0;
    if (curl_easy_perform(e) == CURLE_OK)
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    return st;
}

long kfx_http(kfx_t *f, const char *method, const char *path, const char *ctype, const char *body)
{
    body_t b = {0};
    return http(f, method, path, ctype, body, &b);
}

json_t *kfx_get_json(kfx_t *f, const char *path)
{
    body_t b = {.keep = true};
    long st = http(f, "GET", path, NULL, NULL, &b);
    if (st != 200 || b.over || b.buf == NULL) {
        free(b.buf);
        fail_msg("GET %s: status %ld%s", path, st, b.over ? ", body too large" : "");
    }
    json_t *v = json_loads(b.buf, 0, NULL);
    free(b.buf);
    assert_non_null(v);
    return v;
}

void kfx_create_a(kfx_t *f, const char *ns, const char *name, const char *ip)
{
    char j[512];
    bd_err_t err;
    snprintf(j, sizeof(j),
             "{\"apiVersion\":\"" API "\",\"kind\":\"ARecord\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\"},"
             "\"spec\":{\"name\":\"%s\",\"ipv4Addresses\":[\"%s\"]}}",
             name, ns, name, ip);
    if (bd_apiserver_create(f->as, j, &err) != BD_OK)
        fail_msg("create %s/%s: %s", ns, name, err.msg);
}

void kfx_patch_a(kfx_t *f, const char *ns, const char *name, const char *ip)
{
    char path[512], body[256];
    snprintf(path, sizeof(path), "/apis/" API "/namespaces/%s/arecords/%s", ns, name);
    snprintf(body, sizeof(body), "{\"spec\":{\"ipv4Addresses\":[\"%s\"]}}", ip);
    assert_int_equal(kfx_http(f, "PATCH", path, "application/merge-patch+json", body), 200);
}

void kfx_delete_a(kfx_t *f, const char *ns, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "/apis/" API "/namespaces/%s/arecords/%s", ns, name);
    long st = kfx_http(f, "DELETE", path, NULL, NULL);
    assert_true(st == 200 || st == 202);
}
