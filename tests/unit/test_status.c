/*
 * test_status.c - the status writer against the API-server double: conditions,
 * observedGeneration, recordCount and serial written once; Ready=False with the
 * projector's reason for a conflicting record while the others are Ready; no API call at
 * rest, nor after observing the statuses written back; one change -> one write for that
 * object (and zone writes coalesced over a burst); a fenced writer writes nothing;
 * Events on Ready changes, never repeated; 404 is not an error; 5xx retried.
 * Every wait is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <ev.h>
#include <jansson.h>

#include "apiserver.h"
#include "clock.h"
#include "client.h"
#include "projector.h"
#include "status.h"

#define NS "default"
#define GROUP "bindy.firestoned.io"

static void wake_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

typedef struct fx {
    bd_apiserver_t *s;
    struct ev_loop *loop;
    k8s_client_t *c;
    k8s_config_t cfg;
    proj_t *p;
    kst_t *k;
    bool leader;
    int32_t ready_replicas;
    const char *problem; /* the instance_problem hook's answer */
    uint64_t seq;
} fx_t;

static bool fence(void *arg) { return ((fx_t *)arg)->leader; }

static int32_t rr_hook(void *arg, const char *ns, const char *name)
{
    (void)ns;
    (void)name;
    return ((fx_t *)arg)->ready_replicas;
}

static const char *problem_hook(void *arg, const char *ns, const char *name, const char **reason)
{
    (void)ns;
    (void)name;
    *reason = "RndcKeyUnavailable";
    return ((fx_t *)arg)->problem;
}

static void fx_start(fx_t *f, unsigned zone_delay_ms)
{
    memset(f, 0, sizeof(*f));
    bd_apiserver_opts_t o;
    bd_apiserver_opts_init(&o);
    bd_err_t err;
    bd_err_clear(&err);
    assert_int_equal(bd_apiserver_start(&o, &f->s, &err), 0);
    char dir[1024];
    const char *src = getenv("BINDY_SOURCE_DIR");
    assert_non_null(src);
    snprintf(dir, sizeof(dir), "%s/schema/crds", src);
    if (bd_apiserver_load_crds(f->s, dir, &err) != 0)
        fail_msg("crds: %s", err.msg);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->cfg.server = (char *)bd_apiserver_url(f->s);
    f->cfg.origin = "test";
    f->cfg.ns = NS;
    k8s_client_opts_t co;
    k8s_client_opts_init(&co);
    co.qps = 1000;
    co.burst = 1000;
    assert_int_equal(k8s_client_new(f->loop, &f->cfg, &co, &f->c, &err), 0);
    assert_int_equal(proj_new(NULL, &f->p, &err), BD_OK);
    f->leader = true;
    f->ready_replicas = -1;
    kst_opts_t ko;
    kst_opts_init(&ko);
    ko.fence = fence;
    ko.fence_arg = f;
    ko.ready_replicas = rr_hook;
    ko.ready_replicas_arg = f;
    ko.instance_problem = problem_hook;
    ko.instance_problem_arg = f;
    ko.instance = "bindy-0";
    ko.zone_delay_ms = zone_delay_ms;
    assert_int_equal(kst_new(f->c, f->p, &ko, &f->k, &err), BD_OK);
}

static void fx_stop(fx_t *f)
{
    kst_free(f->k);
    k8s_client_free(f->c);
    proj_free(f->p);
    ev_loop_destroy(f->loop);
    bd_apiserver_stop(f->s);
}

/* Run the loop until nothing is marked or in flight (or max_s passed). */
static bool settle(fx_t *f, double max_s)
{
    ev_timer wake;
    ev_timer_init(&wake, wake_cb, 0.01, 0.01);
    ev_timer_start(f->loop, &wake);
    double end = bd_mono_s() + max_s;
    bool done = false;
    while (!done && bd_mono_s() < end) {
        ev_run(f->loop, EVRUN_ONCE);
        kst_stats_t st;
        k8s_client_stats_t cs;
        kst_stats(f->k, &st);
        k8s_client_stats(f->c, &cs);
        done = st.inflight == 0 && cs.inflight == 0 && (st.pending == 0 || !f->leader);
    }
    ev_timer_stop(f->loop, &wake);
    return done;
}

static void run_for(fx_t *f, double s)
{
    ev_timer wake;
    ev_timer_init(&wake, wake_cb, 0.01, 0.01);
    ev_timer_start(f->loop, &wake);
    double end = bd_mono_s() + s;
    while (bd_mono_s() < end)
        ev_run(f->loop, EVRUN_ONCE);
    ev_timer_stop(f->loop, &wake);
}

static const char *plural_of(const char *kind)
{
    static const char *const map[][2] = {{"DNSZone", "dnszones"}, {"Bind9Instance", "bind9instances"},
                                         {"ARecord", "arecords"}, {"CNAMERecord", "cnamerecords"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(*map); i++)
        if (strcmp(map[i][0], kind) == 0)
            return map[i][1];
    fail_msg("kind %s", kind);
    return NULL;
}

/* The object as the double holds it (new reference). */
static json_t *stored(fx_t *f, const char *kind, const char *name)
{
    char *text = bd_apiserver_get(f->s, GROUP, plural_of(kind), NS, name);
    if (text == NULL)
        return NULL;
    json_t *o = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(o);
    return o;
}

/* What the applier does for one journaled event: observe, project, mark. */
static void feed(fx_t *f, jnl_type_t type, json_t *obj)
{
    jnl_event_t ev = jnl_event_of(JNL_SRC_KUBERNETES, type, obj);
    ev.seq = ++f->seq;
    assert_int_equal(kst_observe(f->k, &ev), BD_OK);
    bd_err_t err;
    if (proj_apply(f->p, &ev, &err) != BD_OK)
        fail_msg("apply: %s", err.msg);
    proj_changes_t ch;
    assert_int_equal(proj_take_changes(f->p, &ch), BD_OK);
    assert_int_equal(kst_mark_changes(f->k, &ev, &ch), BD_OK);
    proj_changes_deinit(&ch);
}

/* Create in the double, then journal it as the watch would. */
static void create(fx_t *f, const char *kind, const char *name, const char *json_text)
{
    bd_err_t err;
    bd_err_clear(&err);
    if (bd_apiserver_create(f->s, json_text, &err) != 0)
        fail_msg("create %s %s: %s", kind, name, err.msg);
    json_t *o = stored(f, kind, name);
    assert_non_null(o);
    feed(f, JNL_ADDED, o);
    json_decref(o);
}

/* Journal what the double holds now (e.g. our own status write, as the watch brings it). */
static void echo(fx_t *f, const char *kind, const char *name)
{
    json_t *o = stored(f, kind, name);
    assert_non_null(o);
    feed(f, JNL_MODIFIED, o);
    json_decref(o);
}

/* Requests logged since `from` with this verb whose path contains sub. */
static size_t count_req(fx_t *f, size_t from, const char *verb, const char *sub)
{
    size_t n = bd_apiserver_log_count(f->s), k = 0;
    for (size_t i = from; i < n; i++) {
        bd_apiserver_req_t e;
        if (bd_apiserver_log_get(f->s, i, &e) != 0)
            continue;
        if ((verb == NULL || strcmp(e.verb, verb) == 0) && (sub == NULL || strstr(e.path, sub)))
            k++;
    }
    return k;
}

static const json_t *cond(const json_t *obj, const char *type)
{
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(json_object_get(obj, "status"), "conditions"), i, c)
        if (strcmp(json_string_value(json_object_get(c, "type")), type) == 0)
            return c;
    return NULL;
}

static void assert_cond(fx_t *f, const char *kind, const char *name, const char *type, const char *status,
                        const char *reason, int64_t gen)
{
    json_t *o = stored(f, kind, name);
    assert_non_null(o);
    const json_t *c = cond(o, type);
    if (c == NULL)
        fail_msg("%s %s: no %s condition in %s", kind, name, type,
                 json_dumps(json_object_get(o, "status"), JSON_COMPACT));
    assert_string_equal(json_string_value(json_object_get(c, "status")), status);
    assert_string_equal(json_string_value(json_object_get(c, "reason")), reason);
    assert_int_equal(json_integer_value(json_object_get(c, "observedGeneration")), gen);
    assert_non_null(json_string_value(json_object_get(c, "lastTransitionTime")));
    assert_non_null(json_string_value(json_object_get(c, "message")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "status"), "observedGeneration")), gen);
    json_decref(o);
}

static const char *status_str(json_t *o, const char *field)
{
    return json_string_value(json_object_get(json_object_get(o, "status"), field));
}

#define ZONE_JSON                                                                                        \
    "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"DNSZone\",\"metadata\":{\"name\":"       \
    "\"example-com\",\"namespace\":\"default\"},\"spec\":{\"zoneName\":\"example.com\",\"soaRecord\":"   \
    "{\"primaryNs\":\"ns1.example.com.\",\"adminEmail\":\"admin.example.com.\"},\"nameServers\":"        \
    "[{\"hostname\":\"ns1.example.com.\",\"ipv4Address\":\"192.0.2.1\"}],\"bind9InstancesFrom\":"        \
    "[{\"selector\":{\"matchLabels\":{\"dns-role\":\"primary\"}}}],\"recordsFrom\":[{\"selector\":"      \
    "{\"matchLabels\":{\"zone\":\"example.com\"}}}]}}"
#define INSTANCE_JSON                                                                                    \
    "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"Bind9Instance\",\"metadata\":{\"name\":" \
    "\"primary\",\"namespace\":\"default\",\"labels\":{\"dns-role\":\"primary\"}},\"spec\":"             \
    "{\"replicas\":2}}"

static void a_json(char *buf, size_t n, const char *name, const char *owner, const char *ip)
{
    snprintf(buf, n,
             "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"ARecord\",\"metadata\":{\"name\":"
             "\"%s\",\"namespace\":\"default\",\"labels\":{\"zone\":\"example.com\"}},\"spec\":{\"name\":"
             "\"%s\",\"ipv4Addresses\":[\"%s\"]}}",
             name, owner, ip);
}

#define CNAME_JSON                                                                                       \
    "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"CNAMERecord\",\"metadata\":{\"name\":"   \
    "\"www-cname\",\"namespace\":\"default\",\"labels\":{\"zone\":\"example.com\"}},\"spec\":{\"name\":" \
    "\"www\",\"target\":\"elsewhere.example.net.\"}}"

/* Instance, zone, two A records and a CNAME that conflicts with one of them. */
static void populate(fx_t *f)
{
    char buf[512];
    create(f, "Bind9Instance", "primary", INSTANCE_JSON);
    create(f, "DNSZone", "example-com", ZONE_JSON);
    a_json(buf, sizeof(buf), "www", "www", "192.0.2.10");
    create(f, "ARecord", "www", buf);
    a_json(buf, sizeof(buf), "api", "api", "192.0.2.11");
    create(f, "ARecord", "api", buf);
    create(f, "CNAMERecord", "www-cname", CNAME_JSON);
}

static const char *const ALL[][2] = {{"Bind9Instance", "primary"}, {"DNSZone", "example-com"},
                                     {"ARecord", "www"},           {"ARecord", "api"},
                                     {"CNAMERecord", "www-cname"}};
#define NALL (sizeof(ALL) / sizeof(*ALL))

/* Events in the namespace, as the double holds them (via the client: not counted by
 * callers that count before this). */
typedef struct {
    int n;
    json_t *body;
} got_t;

static void on_got(void *arg, const k8s_resp_t *r)
{
    got_t *g = arg;
    g->n++;
    g->body = r->body ? json_incref(r->body) : NULL;
}

static json_t *list_events(fx_t *f)
{
    got_t g = {0};
    k8s_req_t req = {.method = K8S_GET, .path = "/api/v1/namespaces/" NS "/events"};
    assert_int_equal(k8s_call(f->c, &req, on_got, &g, NULL), 0);
    double end = bd_mono_s() + 10;
    while (g.n == 0 && bd_mono_s() < end)
        ev_run(f->loop, EVRUN_ONCE);
    assert_int_equal(g.n, 1);
    assert_non_null(g.body);
    return g.body;
}

static size_t events_for(const json_t *list, const char *name, const char *reason, const char *type)
{
    size_t i, n = 0;
    const json_t *e;
    json_array_foreach(json_object_get(list, "items"), i, e) {
        const json_t *io = json_object_get(e, "involvedObject");
        if (strcmp(json_string_value(json_object_get(io, "name")), name) == 0 &&
            (reason == NULL || strcmp(json_string_value(json_object_get(e, "reason")), reason) == 0) &&
            (type == NULL || strcmp(json_string_value(json_object_get(e, "type")), type) == 0)) {
            assert_non_null(json_string_value(json_object_get(io, "uid")));
            n++;
        }
    }
    return n;
}

/* A user's spec edit through the API (bumps generation); returns the stored object. */
static json_t *spec_edit(fx_t *f, const char *name, const char *ip)
{
    static const k8s_res_t AREC = {GROUP, "v1beta1", "arecords", "ARecord", true};
    got_t g = {0};
    json_t *patch = json_pack("{s:{s:[s]}}", "spec", "ipv4Addresses", ip);
    assert_int_equal(k8s_merge_patch(f->c, &AREC, NS, name, NULL, patch, on_got, &g, NULL), 0);
    json_decref(patch);
    double end = bd_mono_s() + 10;
    while (g.n == 0 && bd_mono_s() < end)
        ev_run(f->loop, EVRUN_ONCE);
    assert_int_equal(g.n, 1);
    json_decref(g.body);
    return stored(f, "ARecord", name);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_statuses_written_once(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 0);
    populate(&f);
    size_t mark = bd_apiserver_log_count(f.s);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 10));

    /* one status write per object, one Event per object (its first Ready) */
    assert_int_equal(count_req(&f, mark, "patch", "/status"), NALL);
    assert_int_equal(count_req(&f, mark, "create", "/events"), NALL);
    kst_stats_t st;
    kst_stats(f.k, &st);
    assert_int_equal(st.writes, NALL);
    assert_int_equal(st.events, NALL);
    assert_int_equal(st.errors, 0);

    assert_cond(&f, "Bind9Instance", "primary", "Ready", "True", "Ready", 1);
    assert_cond(&f, "DNSZone", "example-com", "Ready", "True", "Ready", 1);
    assert_cond(&f, "DNSZone", "example-com", "Progressing", "False", "Reconciled", 1);
    assert_cond(&f, "DNSZone", "example-com", "Degraded", "False", "AsExpected", 1);
    assert_cond(&f, "ARecord", "www", "Ready", "True", "Ready", 1);
    assert_cond(&f, "ARecord", "api", "Ready", "True", "Ready", 1);
    /* the conflicting record: Ready=False with the projector's reason, Degraded too */
    assert_cond(&f, "CNAMERecord", "www-cname", "Ready", "False", "CnameConflict", 1);
    assert_cond(&f, "CNAMERecord", "www-cname", "Degraded", "True", "CnameConflict", 1);

    json_t *z = stored(&f, "DNSZone", "example-com");
    json_t *zst = json_object_get(z, "status");
    const proj_zone_t *pz = proj_zone_get(f.p, "example.com");
    assert_non_null(pz);
    assert_int_equal(json_integer_value(json_object_get(zst, "serial")), proj_zone_serial(pz));
    assert_true(json_integer_value(json_object_get(zst, "serial")) > 0);
    proj_status_t ps;
    proj_status(f.p, "DNSZone", NS, "example-com", &ps);
    char want[64];
    snprintf(want, sizeof(want), "with %lld record",
             (long long)json_integer_value(json_object_get(zst, "recordCount")));
    assert_non_null(strstr(ps.message, want)); /* the projector's count */
    assert_true(json_integer_value(json_object_get(zst, "recordCount")) >= 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(zst, "instances"), 0)), "default/primary");
    const char *rmsg = json_string_value(json_object_get(cond(z, "Ready"), "message"));
    assert_string_equal(rmsg, ps.message);
    json_decref(z);

    json_t *www = stored(&f, "ARecord", "www");
    assert_string_equal(status_str(www, "zone"), "example.com");
    assert_string_equal(status_str(www, "fqdn"), "www.example.com.");
    json_decref(www);
    json_t *in = stored(&f, "Bind9Instance", "primary");
    assert_string_equal(status_str(in, "role"), "primary");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(in, "status"), "replicas")), 2);
    json_decref(in);

    json_t *evs = list_events(&f);
    assert_int_equal(events_for(evs, "www-cname", "CnameConflict", "Warning"), 1);
    assert_int_equal(events_for(evs, "www", "Ready", "Normal"), 1);
    assert_int_equal(events_for(evs, "example-com", "Ready", "Normal"), 1);
    json_decref(evs);

    /* at rest: flushing again calls nothing */
    mark = bd_apiserver_log_count(f.s);
    assert_int_equal(kst_flush(f.k), BD_OK);
    run_for(&f, 0.2);
    assert_int_equal(bd_apiserver_log_count(f.s), mark);

    /* everything re-marked (a new leader): compared, nothing written */
    assert_int_equal(kst_mark_all(f.k), BD_OK);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    assert_int_equal(bd_apiserver_log_count(f.s), mark);
    kst_stats(f.k, &st);
    assert_int_equal(st.skipped, NALL);

    /* the watch brings our writes back: observed, marked, compared, nothing written */
    for (size_t i = 0; i < NALL; i++)
        echo(&f, ALL[i][0], ALL[i][1]);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    run_for(&f, 0.1);
    assert_int_equal(bd_apiserver_log_count(f.s), mark);
    kst_stats(f.k, &st);
    assert_int_equal(st.writes, NALL);
    assert_int_equal(st.events, NALL);
    fx_stop(&f);
}

/* A fresh writer (another replica) that observed the written statuses writes nothing. */
static void test_new_leader_writes_nothing(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 0);
    populate(&f);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 10));

    kst_t *k2 = NULL;
    kst_opts_t ko;
    kst_opts_init(&ko);
    assert_int_equal(kst_new(f.c, f.p, &ko, &k2, NULL), BD_OK);
    for (size_t i = 0; i < NALL; i++) {
        json_t *o = stored(&f, ALL[i][0], ALL[i][1]);
        jnl_event_t ev = {.type = JNL_MODIFIED, .kind = ALL[i][0], .ns = NS, .name = ALL[i][1], .object = o};
        assert_int_equal(kst_observe(k2, &ev), BD_OK);
        json_decref(o);
    }
    size_t mark = bd_apiserver_log_count(f.s);
    assert_int_equal(kst_mark_all(k2), BD_OK);
    assert_int_equal(kst_flush(k2), BD_OK);
    run_for(&f, 0.2);
    assert_int_equal(bd_apiserver_log_count(f.s), mark);
    kst_stats_t st;
    kst_stats(k2, &st);
    assert_int_equal(st.skipped, NALL);
    assert_int_equal(st.writes + st.events + st.errors, 0);
    kst_free(k2);
    fx_stop(&f);
}

/* Every object written once and its write journaled back (as the watch would): the
 * writer is at rest. */
static void populate_settled(fx_t *f)
{
    populate(f);
    assert_int_equal(kst_flush(f->k), BD_OK);
    assert_true(settle(f, 10));
    for (size_t i = 0; i < NALL; i++)
        echo(f, ALL[i][0], ALL[i][1]);
    assert_int_equal(kst_flush(f->k), BD_OK);
    assert_true(settle(f, 5));
}

/* Change one record: exactly one write, its own, which carries the zone's new serial;
 * the zone's status is not rewritten for a serial alone. */
static void test_one_change_one_write(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 2000);
    populate_settled(&f);

    /* the user edits api (generation 2, 3, ...); the watch journals it */
    for (int round = 0; round < 5; round++) {
        char ip[32];
        snprintf(ip, sizeof(ip), "192.0.2.%d", 100 + round);
        json_t *o = spec_edit(&f, "api", ip);
        json_int_t gen = json_integer_value(json_object_get(json_object_get(o, "metadata"), "generation"));
        assert_int_equal(gen, 2 + round);
        size_t mark = bd_apiserver_log_count(f.s);
        feed(&f, JNL_MODIFIED, o);
        json_decref(o);
        assert_int_equal(kst_flush(f.k), BD_OK);
        /* the record is written at once */
        double end = bd_mono_s() + 5;
        while (count_req(&f, mark, "patch", "/arecords/api/status") < 1 && bd_mono_s() < end)
            ev_run(f.loop, EVRUN_ONCE);
        run_for(&f, 0.02);
        assert_int_equal(count_req(&f, mark, "patch", "/arecords/api/status"), 1);
        assert_int_equal(count_req(&f, mark, "patch", "/status"), 1);
        assert_int_equal(count_req(&f, mark, "create", "/events"), 0); /* Ready did not change */
        assert_cond(&f, "ARecord", "api", "Ready", "True", "Ready", gen);
        json_t *r = stored(&f, "ARecord", "api");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "status"), "serial")),
                         proj_zone_serial(proj_zone_get(f.p, "example.com")));
        json_decref(r);
        echo(&f, "ARecord", "api");
    }
    /* nothing more: not the zone (after zone_delay_ms), not the record echoed back */
    size_t mark = bd_apiserver_log_count(f.s);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    run_for(&f, 1.2);
    assert_int_equal(count_req(&f, mark, "patch", "/status"), 0);
    fx_stop(&f);
}

/* Continuity at takeover: a serial servers publish above the projection's goes into the
 * zone's status.serial; journaled back, it is the projector's floor, so the projection
 * continues from it and nothing more is written. */
static void test_serial_floor(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 0);
    populate_settled(&f);
    uint32_t projected = proj_zone_serial(proj_zone_get(f.p, "example.com"));

    size_t mark = bd_apiserver_log_count(f.s);
    assert_int_equal(kst_serial_floor(f.k, "example.com", projected + 40), BD_OK);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    assert_int_equal(count_req(&f, mark, "patch", "/dnszones/example-com/status"), 1);
    json_t *z = stored(&f, "DNSZone", "example-com");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(z, "status"), "serial")), projected + 40);
    json_decref(z);

    /* the projection goes one above (its content may differ from what servers hold under
     * that serial); a serial alone is not written, the floor is spent */
    echo(&f, "DNSZone", "example-com");
    assert_int_equal(proj_zone_serial(proj_zone_get(f.p, "example.com")), projected + 41);
    mark = bd_apiserver_log_count(f.s);
    assert_int_equal(kst_mark(f.k, "DNSZone/" NS "/example-com"), BD_OK);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    assert_int_equal(count_req(&f, mark, "patch", "/status"), 0);
    /* the next record write carries it */
    json_t *o = spec_edit(&f, "api", "192.0.2.77");
    feed(&f, JNL_MODIFIED, o);
    json_decref(o);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    json_t *r = stored(&f, "ARecord", "api");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "status"), "serial")), projected + 42);
    json_decref(r);
    fx_stop(&f);
}

/* Not the leader: nothing is written; marks are kept and written once leading. */
static void test_fenced(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 0);
    f.leader = false;
    populate(&f);
    size_t mark = bd_apiserver_log_count(f.s);
    assert_int_equal(kst_flush(f.k), BD_OK);
    run_for(&f, 0.2);
    assert_int_equal(bd_apiserver_log_count(f.s), mark);
    kst_stats_t st;
    kst_stats(f.k, &st);
    assert_true(st.fenced >= 1);
    assert_int_equal(st.pending, NALL);
    assert_int_equal(st.writes, 0);

    f.leader = true;
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 10));
    assert_int_equal(count_req(&f, mark, "patch", "/status"), NALL);
    fx_stop(&f);
}

/* Records that reach the journal before the zone that selects them (separate watches):
 * their transient NotSelected is not written, nor its Warning; one write each, Ready. A
 * failure that lasts is written after fail_delay_ms. */
static void test_transient_failure_not_written(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 0);
    char buf[512];
    size_t mark = bd_apiserver_log_count(f.s);
    create(&f, "Bind9Instance", "primary", INSTANCE_JSON);
    a_json(buf, sizeof(buf), "www", "www", "192.0.2.10");
    create(&f, "ARecord", "www", buf);
    assert_int_equal(kst_flush(f.k), BD_OK);
    run_for(&f, 0.3); /* the zone's watch event comes a little later */
    create(&f, "DNSZone", "example-com", ZONE_JSON);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 10));
    assert_cond(&f, "ARecord", "www", "Ready", "True", "Ready", 1);
    assert_int_equal(count_req(&f, mark, "patch", "/arecords/www/status"), 1);
    json_t *evs = list_events(&f);
    assert_int_equal(events_for(evs, "www", "NotSelected", "Warning"), 0);
    assert_int_equal(events_for(evs, "www", "Ready", "Normal"), 1);
    json_decref(evs);

    /* a record no zone selects stays so: written once the delay is over */
    echo(&f, "ARecord", "www");
    mark = bd_apiserver_log_count(f.s);
    create(&f, "ARecord", "lost",
           "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"ARecord\",\"metadata\":{\"name\":"
           "\"lost\",\"namespace\":\"default\",\"labels\":{\"zone\":\"example.org\"}},\"spec\":{\"name\":"
           "\"lost\",\"ipv4Addresses\":[\"192.0.2.12\"]}}");
    double t0 = bd_mono_s();
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 10));
    assert_true(bd_mono_s() - t0 >= 0.9);
    assert_cond(&f, "ARecord", "lost", "Ready", "False", "NotSelected", 1);
    assert_int_equal(count_req(&f, mark, "patch", "/status"), 1);
    fx_stop(&f);
}

/* Ready flips: one Event per change, none repeated; readyReplicas from the hook. */
static void test_events_on_ready_changes(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 0);
    populate(&f);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 10));

    /* www goes away: the CNAME wins and becomes Ready (one Normal event) */
    json_t *o = stored(&f, "ARecord", "www");
    feed(&f, JNL_DELETED, o);
    json_decref(o);
    size_t mark = bd_apiserver_log_count(f.s);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 10));
    assert_cond(&f, "CNAMERecord", "www-cname", "Ready", "True", "Ready", 1);
    assert_cond(&f, "CNAMERecord", "www-cname", "Degraded", "False", "AsExpected", 1);
    assert_int_equal(count_req(&f, mark, "create", "/events"), 1);
    /* ...and a flush with nothing new sends no Event */
    for (size_t i = 0; i < NALL; i++)
        if (strcmp(ALL[i][1], "www") != 0)
            echo(&f, ALL[i][0], ALL[i][1]);
    mark = bd_apiserver_log_count(f.s);
    assert_int_equal(kst_mark_all(f.k), BD_OK);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    assert_int_equal(bd_apiserver_log_count(f.s), mark);

    /* the instance reports 0 of 2 replicas ready: Ready=False, Progressing; one Warning */
    f.ready_replicas = 0;
    assert_int_equal(kst_mark(f.k, "Bind9Instance/default/primary"), BD_OK);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    assert_cond(&f, "Bind9Instance", "primary", "Ready", "False", "NoReplicasReady", 1);
    assert_cond(&f, "Bind9Instance", "primary", "Progressing", "True", "RollingOut", 1);
    json_t *in = stored(&f, "Bind9Instance", "primary");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(in, "status"), "readyReplicas")), 0);
    json_decref(in);
    /* 2 of 2: Ready again, one Normal event; lastTransitionTime of Ready moves, of
     * Degraded... both change status; Progressing back to False */
    f.ready_replicas = 2;
    assert_int_equal(kst_mark(f.k, "Bind9Instance/default/primary"), BD_OK);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    assert_cond(&f, "Bind9Instance", "primary", "Ready", "True", "Ready", 1);
    assert_cond(&f, "Bind9Instance", "primary", "Progressing", "False", "Reconciled", 1);
    json_t *evs = list_events(&f);
    assert_int_equal(events_for(evs, "primary", "NoReplicasReady", "Warning"), 1);
    assert_int_equal(events_for(evs, "primary", "Ready", "Normal"), 2);
    assert_int_equal(events_for(evs, "www-cname", "Ready", "Normal"), 1);
    assert_int_equal(events_for(evs, "www-cname", "CnameConflict", "Warning"), 1);
    json_decref(evs);
    /* the applier cannot run it (its rndc key Secret is missing): Ready=False saying why,
     * one Warning; then fixed: Ready again */
    f.problem = "spec.rndcKey.secretRef: Secret default/my-rndc (key \"secret\") not found";
    assert_int_equal(kst_mark(f.k, "Bind9Instance/default/primary"), BD_OK);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    assert_cond(&f, "Bind9Instance", "primary", "Ready", "False", "RndcKeyUnavailable", 1);
    assert_cond(&f, "Bind9Instance", "primary", "Degraded", "True", "RndcKeyUnavailable", 1);
    in = stored(&f, "Bind9Instance", "primary");
    const json_t *c0 = json_array_get(json_object_get(json_object_get(in, "status"), "conditions"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "message")), f.problem);
    json_decref(in);
    f.problem = NULL;
    assert_int_equal(kst_mark(f.k, "Bind9Instance/default/primary"), BD_OK);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    assert_cond(&f, "Bind9Instance", "primary", "Ready", "True", "Ready", 1);
    evs = list_events(&f);
    assert_int_equal(events_for(evs, "primary", "RndcKeyUnavailable", "Warning"), 1);
    assert_int_equal(events_for(evs, "primary", "Ready", "Normal"), 3);
    json_decref(evs);
    kst_stats_t st;
    kst_stats(f.k, &st);
    assert_int_equal(st.event_errors, 0);
    fx_stop(&f);
}

/* lastTransitionTime is kept when a condition's status does not change. */
static void test_transition_time_kept(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 0);
    populate(&f);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 10));
    echo(&f, "ARecord", "api");
    /* plant an old lastTransitionTime on Ready as if written long ago, and observe it */
    json_t *o = stored(&f, "ARecord", "api");
    json_t *c = (json_t *)cond(o, "Ready");
    json_object_set_new(c, "lastTransitionTime", json_string("2020-01-01T00:00:00Z"));
    json_t *md = json_object_get(o, "metadata");
    json_object_set_new(md, "generation", json_integer(7)); /* a new generation: a write is due */
    feed(&f, JNL_MODIFIED, o);
    json_decref(o);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    o = stored(&f, "ARecord", "api");
    assert_string_equal(json_string_value(json_object_get(cond(o, "Ready"), "lastTransitionTime")),
                        "2020-01-01T00:00:00Z");
    assert_int_equal(json_integer_value(json_object_get(cond(o, "Ready"), "observedGeneration")), 7);
    json_decref(o);
    fx_stop(&f);
}

/* 404 is not an error; a 5xx is retried with backoff until it succeeds. */
static void test_gone_and_retry(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 0);
    populate(&f);
    bd_apiserver_fail_next(f.s, 2, 500, "patch /apis/bindy.firestoned.io/v1beta1/namespaces/default/arecords/www/");
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 10));
    kst_stats_t st;
    kst_stats(f.k, &st);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.writes, NALL);
    assert_cond(&f, "ARecord", "www", "Ready", "True", "Ready", 1);
    assert_int_equal(st.events, NALL); /* no duplicate for the retried object */

    /* a record the projector knows but the server no longer has */
    char buf[512];
    a_json(buf, sizeof(buf), "ghost", "ghost", "192.0.2.50");
    json_t *g = json_loads(buf, 0, NULL);
    json_object_set_new(json_object_get(g, "metadata"), "generation", json_integer(1));
    feed(&f, JNL_ADDED, g);
    json_decref(g);
    assert_int_equal(kst_flush(f.k), BD_OK);
    assert_true(settle(&f, 5));
    kst_stats(f.k, &st);
    assert_int_equal(st.gone, 1);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.pending, 0);
    fx_stop(&f);
}

static void test_bad_input(void **state)
{
    (void)state;
    fx_t f;
    fx_start(&f, 0);
    assert_int_equal(kst_mark(f.k, "nonsense"), BD_EINVAL);
    assert_int_equal(kst_mark(f.k, "Pod/default/x"), BD_EINVAL);
    assert_int_equal(kst_mark(f.k, "ARecord/default/"), BD_EINVAL);
    /* marked but unknown to the projector: nothing to write */
    assert_int_equal(kst_mark(f.k, "ARecord/default/nobody"), BD_OK);
    size_t mark = bd_apiserver_log_count(f.s);
    assert_int_equal(kst_flush(f.k), BD_OK);
    run_for(&f, 0.1);
    assert_int_equal(bd_apiserver_log_count(f.s), mark);
    kst_stats_t st;
    kst_stats(f.k, &st);
    assert_int_equal(st.objects, 0); /* forgotten: never observed, unknown to the projector */
    assert_int_equal(st.pending, 0);
    kst_t *k = NULL;
    assert_int_equal(kst_new(NULL, f.p, NULL, &k, NULL), BD_EINVAL);
    assert_null(k);
    kst_free(NULL);
    fx_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statuses_written_once),
        cmocka_unit_test(test_new_leader_writes_nothing),
        cmocka_unit_test(test_one_change_one_write),
        cmocka_unit_test(test_serial_floor),
        cmocka_unit_test(test_fenced),
        cmocka_unit_test(test_events_on_ready_changes),
        cmocka_unit_test(test_transient_failure_not_written),
        cmocka_unit_test(test_transition_time_kept),
        cmocka_unit_test(test_gone_and_retry),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
