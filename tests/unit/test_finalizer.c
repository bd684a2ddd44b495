/*
 * test_finalizer.c - the finalizer writer against the API-server double: the leader adds
 * bindy.firestoned.io/finalizer to a DNSZone and a record; a second flush makes no call;
 * a kubectl-style DELETE leaves the record with a deletionTimestamp; the finalizer is
 * removed only once that event is applied, and the record then leaves the double; a
 * fenced writer makes no call; other finalizers are preserved, a concurrent edit of the
 * list is not clobbered, and edits of anything else do not fail the write. Every wait is
 * bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "finalizer.h"
#include "k8s_fixture.h"

#define NS "dns-system"
#define GROUP "bindy.firestoned.io"
#define API GROUP "/v1beta1"
#define WAIT_S 10.0

#define ZONE_JSON                                                                                        \
    "{\"apiVersion\":\"" API "\",\"kind\":\"DNSZone\",\"metadata\":{\"name\":\"example-com\","          \
    "\"namespace\":\"" NS "\"},\"spec\":{\"zoneName\":\"example.com\",\"soaRecord\":"                    \
    "{\"primaryNs\":\"ns1.example.com.\",\"adminEmail\":\"admin.example.com.\"}}}"

typedef struct {
    kfx_t f;
    fin_t *fin;
    bool leader;
    uint64_t seq;
} fx_t;

static bool fence(void *arg) { return ((fx_t *)arg)->leader; }

static int setup(void **state)
{
    fx_t *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    kfx_start(&x->f, NULL);
    fin_opts_t o;
    fin_opts_init(&o);
    o.fence = fence;
    o.fence_arg = x;
    bd_err_t err;
    assert_int_equal(fin_new(x->f.c, &o, &x->fin, &err), BD_OK);
    x->leader = true;
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fx_t *x = *state;
    fin_free(x->fin);
    kfx_stop(&x->f);
    free(x);
    return 0;
}

static const char *plural(const char *kind) { return strcmp(kind, "DNSZone") == 0 ? "dnszones" : "arecords"; }

/* The object in the double (new reference) or NULL. */
static json_t *stored(fx_t *x, const char *kind, const char *name)
{
    char *text = bd_apiserver_get(x->f.as, GROUP, plural(kind), NS, name);
    if (text == NULL)
        return NULL;
    json_t *o = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(o);
    return o;
}

/* What the watch would journal: the double's object as it is now (DELETED when gone).
 * Returns the event's seq. */
/* Journal version o (borrowed; NULL: DELETED) of the object, as the watch would. */
static uint64_t observe_obj(fx_t *x, const char *kind, const char *name, json_t *o)
{
    const json_t *md = json_object_get(o, "metadata");
    jnl_event_t ev = {
        .seq = ++x->seq,
        .source = JNL_SRC_KUBERNETES,
        .type = o ? JNL_MODIFIED : JNL_DELETED,
        .api_version = API,
        .kind = kind,
        .ns = NS,
        .name = name,
        .uid = json_string_value(json_object_get(md, "uid")),
        .resource_version = json_string_value(json_object_get(md, "resourceVersion")),
        .object = o,
    };
    assert_int_equal(fin_observe(x->fin, &ev), BD_OK);
    return ev.seq;
}

/* Journal the object as the double holds it now. */
static uint64_t observe(fx_t *x, const char *kind, const char *name)
{
    json_t *o = stored(x, kind, name);
    uint64_t seq = observe_obj(x, kind, name, o);
    json_decref(o);
    return seq;
}

static void create(fx_t *x, const char *json)
{
    bd_err_t err;
    if (bd_apiserver_create(x->f.as, json, &err) != BD_OK)
        fail_msg("create: %s", err.msg);
}

static void create_a(fx_t *x, const char *name, const char *finalizers)
{
    char j[512];
    snprintf(j, sizeof(j),
             "{\"apiVersion\":\"" API "\",\"kind\":\"ARecord\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"" NS
             "\"%s%s%s},\"spec\":{\"name\":\"www\",\"ipv4Addresses\":[\"192.0.2.1\"]}}",
             name, finalizers ? ",\"finalizers\":" : "", finalizers ? finalizers : "", "");
    create(x, j);
}

/* The object's finalizers as compact JSON text ("[...]"; "none" when absent) in buf. */
static const char *fins_of(fx_t *x, const char *kind, const char *name, char *buf, size_t n)
{
    json_t *o = stored(x, kind, name);
    if (o == NULL) {
        snprintf(buf, n, "gone");
        return buf;
    }
    const json_t *f = json_object_get(json_object_get(o, "metadata"), "finalizers");
    char *t = f ? json_dumps(f, JSON_COMPACT) : NULL;
    snprintf(buf, n, "%s", t ? t : "none");
    free(t);
    json_decref(o);
    return buf;
}

static bool has_deletion_ts(fx_t *x, const char *kind, const char *name)
{
    json_t *o = stored(x, kind, name);
    bool r = o && json_is_string(json_object_get(json_object_get(o, "metadata"), "deletionTimestamp"));
    json_decref(o);
    return r;
}

typedef struct {
    fx_t *x;
    uint64_t adds, removes, errors;
} want_t;

static bool reached(void *arg)
{
    want_t *w = arg;
    fin_stats_t st;
    fin_stats(w->x->fin, &st);
    return st.inflight == 0 && st.adds >= w->adds && st.removes >= w->removes && st.errors >= w->errors;
}

static void wait_stats(fx_t *x, uint64_t adds, uint64_t removes, uint64_t errors)
{
    want_t w = {x, adds, removes, errors};
    if (!kfx_run_until(x->f.loop, reached, &w, WAIT_S)) {
        fin_stats_t st;
        fin_stats(x->fin, &st);
        fail_msg("want adds %llu removes %llu errors %llu; have %llu %llu %llu (inflight %u)",
                 (unsigned long long)adds, (unsigned long long)removes, (unsigned long long)errors,
                 (unsigned long long)st.adds, (unsigned long long)st.removes, (unsigned long long)st.errors,
                 st.inflight);
    }
}

static uint64_t calls(fx_t *x)
{
    k8s_client_stats_t ks;
    k8s_client_stats(x->f.c, &ks);
    return ks.calls;
}

/* A flush that must make no API call. */
static void flush_quiet(fx_t *x, uint64_t applied)
{
    uint64_t c0 = calls(x);
    size_t l0 = bd_apiserver_log_count(x->f.as);
    assert_int_equal(fin_flush(x->fin, applied), BD_OK);
    kfx_run_for(x->f.loop, 0.3);
    assert_int_equal(calls(x), c0);
    assert_int_equal(bd_apiserver_log_count(x->f.as), l0);
}

static void test_add_rest_delete_remove(void **state)
{
    fx_t *x = *state;
    char b[256];
    create(x, ZONE_JSON);
    create_a(x, "www", NULL);
    observe(x, "DNSZone", "example-com");
    observe(x, "ARecord", "www");
    assert_int_equal(fin_flush(x->fin, x->seq), BD_OK);
    wait_stats(x, 2, 0, 0);
    assert_string_equal(fins_of(x, "DNSZone", "example-com", b, sizeof(b)), "[\"" FIN_NAME "\"]");
    assert_string_equal(fins_of(x, "ARecord", "www", b, sizeof(b)), "[\"" FIN_NAME "\"]");

    /* a flush before the watch echo repeats nothing; after it, nothing is pending */
    flush_quiet(x, x->seq);
    observe(x, "DNSZone", "example-com");
    observe(x, "ARecord", "www");
    fin_stats_t st;
    fin_stats(x->fin, &st);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.objects, 2);
    assert_true(st.skipped >= 2);
    flush_quiet(x, x->seq);

    /* kubectl delete: the finalizer holds the record, with a deletionTimestamp */
    kfx_delete_a(&x->f, NS, "www");
    assert_true(has_deletion_ts(x, "ARecord", "www"));
    uint64_t del = observe(x, "ARecord", "www");
    /* not applied yet: the finalizer stays */
    flush_quiet(x, del - 1);
    assert_true(has_deletion_ts(x, "ARecord", "www"));
    /* applied: removed, and the double lets the record go */
    assert_int_equal(fin_flush(x->fin, del), BD_OK);
    wait_stats(x, 2, 1, 0);
    assert_null(stored(x, "ARecord", "www"));
    observe(x, "ARecord", "www"); /* DELETED */
    fin_stats(x->fin, &st);
    assert_int_equal(st.objects, 1);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.errors, 0);
    flush_quiet(x, x->seq);
    /* the zone kept its finalizer */
    assert_string_equal(fins_of(x, "DNSZone", "example-com", b, sizeof(b)), "[\"" FIN_NAME "\"]");
}

static void test_fenced(void **state)
{
    fx_t *x = *state;
    char b[256];
    x->leader = false;
    create_a(x, "www", NULL);
    observe(x, "ARecord", "www");
    flush_quiet(x, x->seq);
    fin_stats_t st;
    fin_stats(x->fin, &st);
    assert_true(st.fenced >= 1);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.adds, 0);
    assert_string_equal(fins_of(x, "ARecord", "www", b, sizeof(b)), "none");
    /* the same replica elected: what it observed is written */
    x->leader = true;
    assert_int_equal(fin_flush(x->fin, x->seq), BD_OK);
    wait_stats(x, 1, 0, 0);
    assert_string_equal(fins_of(x, "ARecord", "www", b, sizeof(b)), "[\"" FIN_NAME "\"]");
    /* deleting while fenced: the finalizer stays */
    observe(x, "ARecord", "www");
    kfx_delete_a(&x->f, NS, "www");
    x->leader = false;
    flush_quiet(x, observe(x, "ARecord", "www"));
    assert_true(has_deletion_ts(x, "ARecord", "www"));
    assert_string_equal(fins_of(x, "ARecord", "www", b, sizeof(b)), "[\"" FIN_NAME "\"]");
}

static void test_other_finalizers(void **state)
{
    fx_t *x = *state;
    char b[256];
    create_a(x, "www", "[\"example.com/other\"]");
    observe(x, "ARecord", "www");
    assert_int_equal(fin_flush(x->fin, x->seq), BD_OK);
    wait_stats(x, 1, 0, 0);
    assert_string_equal(fins_of(x, "ARecord", "www", b, sizeof(b)), "[\"example.com/other\",\"" FIN_NAME "\"]");
    observe(x, "ARecord", "www");

    kfx_delete_a(&x->f, NS, "www");
    assert_int_equal(fin_flush(x->fin, observe(x, "ARecord", "www")), BD_OK);
    wait_stats(x, 1, 1, 0);
    /* ours is gone, the other one still holds the record */
    assert_string_equal(fins_of(x, "ARecord", "www", b, sizeof(b)), "[\"example.com/other\"]");
    assert_true(has_deletion_ts(x, "ARecord", "www"));
    observe(x, "ARecord", "www");
    fin_stats_t st;
    fin_stats(x->fin, &st);
    assert_int_equal(st.pending, 0);
    flush_quiet(x, x->seq);
}

/* Another writer edits the list after our observation: the stale write is refused (its
 * test of the observed list fails), and the write redone from the newer observation keeps
 * that writer's finalizer. */
static void test_concurrent_edit(void **state)
{
    fx_t *x = *state;
    char b[256];
    create_a(x, "www", NULL);
    observe(x, "ARecord", "www");
    assert_int_equal(kfx_http(&x->f, "PATCH", "/apis/" API "/namespaces/" NS "/arecords/www",
                              "application/merge-patch+json", "{\"metadata\":{\"finalizers\":[\"example.com/late\"]}}"),
                     200);
    assert_int_equal(fin_flush(x->fin, x->seq), BD_OK);
    wait_stats(x, 0, 0, 1); /* 422: the test failed */
    assert_string_equal(fins_of(x, "ARecord", "www", b, sizeof(b)), "[\"example.com/late\"]");
    observe(x, "ARecord", "www"); /* the watch brings the other writer's edit */
    assert_int_equal(fin_flush(x->fin, x->seq), BD_OK);
    wait_stats(x, 1, 0, 1);
    assert_string_equal(fins_of(x, "ARecord", "www", b, sizeof(b)), "[\"example.com/late\",\"" FIN_NAME "\"]");
}

/* Edits of anything but the list after our observation (the status writer's, a user's
 * label) do not make the write fail: one write, no error, nothing clobbered. */
static void test_unrelated_edit(void **state)
{
    fx_t *x = *state;
    char b[256];
    create_a(x, "www", NULL);
    observe(x, "ARecord", "www");
    assert_int_equal(kfx_http(&x->f, "PATCH", "/apis/" API "/namespaces/" NS "/arecords/www/status",
                              "application/merge-patch+json", "{\"status\":{\"zone\":\"example.com\"}}"),
                     200);
    assert_int_equal(kfx_http(&x->f, "PATCH", "/apis/" API "/namespaces/" NS "/arecords/www",
                              "application/merge-patch+json", "{\"metadata\":{\"labels\":{\"team\":\"dns\"}}}"),
                     200);
    json_t *before = stored(x, "ARecord", "www");
    assert_int_equal(fin_flush(x->fin, x->seq), BD_OK);
    /* the watch still brings those edits, older than our write, while it is in flight and
     * after: nothing is written again */
    observe_obj(x, "ARecord", "www", before);
    wait_stats(x, 1, 0, 0);
    assert_string_equal(fins_of(x, "ARecord", "www", b, sizeof(b)), "[\"" FIN_NAME "\"]");
    flush_quiet(x, x->seq);
    observe_obj(x, "ARecord", "www", before);
    json_decref(before);
    flush_quiet(x, x->seq);
    observe(x, "ARecord", "www");
    flush_quiet(x, x->seq);
    json_t *o = stored(x, "ARecord", "www");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(o, "metadata"), "labels"), "team")),
                        "dns");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "status"), "zone")), "example.com");
    json_decref(o);
}

/* 404: the object went away before the write; done, not an error. */
static void test_gone(void **state)
{
    fx_t *x = *state;
    create_a(x, "www", NULL);
    observe(x, "ARecord", "www");
    kfx_delete_a(&x->f, NS, "www"); /* no finalizer yet: gone at once */
    assert_null(stored(x, "ARecord", "www"));
    assert_int_equal(fin_flush(x->fin, x->seq), BD_OK);
    fin_stats_t st;
    for (int i = 0; i < 100; i++) {
        kfx_run_for(x->f.loop, 0.05);
        fin_stats(x->fin, &st);
        if (st.gone > 0 && st.inflight == 0)
            break;
    }
    assert_int_equal(st.gone, 1);
    assert_int_equal(st.errors, 0);
    flush_quiet(x, x->seq);
    observe(x, "ARecord", "www"); /* DELETED */
    fin_stats(x->fin, &st);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.pending, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_rest_delete_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_finalizers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_edit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unrelated_edit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
