/*
 * test_readiness.c - the readiness gate of BIND pods, end to end: the API-server double
 * in-process, bindy's hidden primary and projector fed in-process, and two real named
 * configured as the pods of a primary Bind9Instance (rendered as bindy renders them,
 * pulling their catalog from the hidden primary) on 127.0.0.1. named listens only on
 * interface addresses, so the two pods differ by port rather than address, and the
 * instance's Service has one EndpointSlice per pod (the EndpointSlice controller splits
 * endpoints whose ports differ the same way). What a user would check, read from the
 * pods' status in the double:
 *  - both pods get bindy.firestoned.io/serials-published True (SerialsPublished), and the
 *    kubelet's own conditions are kept;
 *  - nothing is written at rest;
 *  - a new record moves the serial: both pods serve it and stay True (no write at all);
 *  - a stopped named (SIGSTOP) while a zone is added is False, naming the zone it lacks,
 *    bindy turns to rndc retransfer (named logs the command once it runs again), and the
 *    pod is True again once it catches up (SIGCONT, NOTIFY, retransfer);
 *  - a pod whose slice is deleted is forgotten;
 *  - a new leader whose projection is behind what pods publish (it journaled fewer
 *    versions) is told, once per zone, the serial they publish (continuity at takeover).
 * Every wait is bounded.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <ldns/ldns.h>

#include "applier.h"
#include "k8s_fixture.h"
#include "named_harness.h"
#include "projector.h"
#include "readiness.h"
#include "render.h"
#include "server.h"
#include "workload.h"
#include "zonedb.h"

#define NS "dns-system"
#define INST "primary-dns"
#define XFR_B64 "c2VjcmV0LXRyYW5zZmVyLWtleS1mb3ItdGVzdHMtb25seS0zMmI="
#define RNDC_B64 "cm5kYy1zZWNyZXQtZm9yLXJlYWRpbmVzcy10ZXN0cy0wMTIz"
#define NPODS 2

static const char *const POD_NAME[NPODS] = {"primary-dns-a", "primary-dns-b"};
static const char *const SLICE[NPODS] = {INST "-x7k2p", INST "-q9d4m"};

typedef struct {
    kfx_t f;
    proj_t *p;
    bind_zonedb_t *db;
    bind_server_t *srv;
    rdy_t *r;
    uint64_t seq;
    bd_named_t *named[NPODS];
    char uid[NPODS][64];
    proj_t *p2;          /* a later leader's projection */
    bool quiet;          /* feed the projector only (no zone store, no readiness marks) */
    int above;           /* served_above reports for example.com */
    uint32_t above_serial, above_projected;
} fx_t;

static void on_above(void *arg, const char *zone, uint32_t serial, uint32_t projected)
{
    fx_t *x = arg;
    if (strcmp(zone, "example.com") != 0)
        return;
    x->above++;
    x->above_serial = serial;
    x->above_projected = projected;
}

/* ---- the projection, as the operator feeds it ---------------------------------------- */

static void feed(fx_t *x, const char *json)
{
    json_error_t je;
    json_t *obj = json_loads(json, 0, &je);
    if (obj == NULL)
        fail_msg("bad test object: %s", je.text);
    json_t *meta = json_object_get(obj, "metadata");
    char uid[128];
    snprintf(uid, sizeof(uid), "uid-%s", json_string_value(json_object_get(meta, "name")));
    json_object_set_new(meta, "uid", json_string(uid));
    json_object_set_new(meta, "creationTimestamp", json_string("2024-01-01T00:00:00Z"));
    jnl_event_t ev = jnl_event_of(JNL_SRC_MANIFESTS, JNL_ADDED, obj);
    ev.seq = ++x->seq;
    bd_err_t err;
    if (proj_apply(x->p, &ev, &err) != BD_OK)
        fail_msg("proj_apply: %s", err.msg);
    json_decref(obj);
    if (x->quiet)
        return;
    /* the operator's order: the readiness gate marks, the zone store applies, then sync */
    proj_changes_t ch;
    assert_int_equal(proj_take_changes(x->p, &ch), BD_OK);
    assert_int_equal(rdy_mark_changes(x->r, x->p, &ch), BD_OK);
    for (size_t i = 0; i < ch.nzones; i++)
        if (app_apply_zone(x->db, x->p, &ch.zones[i], &err) != BD_OK)
            fail_msg("zone %s: %s", ch.zones[i].zone, err.msg);
    proj_changes_deinit(&ch);
    rdy_sync(x->r, x->p);
}

static void feed_zone(fx_t *x, const char *name, const char *zone)
{
    char js[2048];
    snprintf(js, sizeof(js),
             "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"DNSZone\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"" NS "\"},\"spec\":{\"zoneName\":\"%s\",\"ttl\":300,\"soaRecord\":{\"primaryNs\":"
             "\"ns1.%s.\",\"adminEmail\":\"admin.%s.\",\"serial\":1,\"refresh\":3600,\"retry\":600,\"expire\":"
             "604800,\"negativeTtl\":300},\"nameServers\":[{\"hostname\":\"ns1.%s.\",\"ipv4Address\":\"192.0.2.1\"}],"
             "\"bind9InstancesFrom\":[{\"selector\":{\"matchLabels\":{\"dns-role\":\"primary\"}}}],"
             "\"recordsFrom\":[{\"selector\":{\"matchLabels\":{\"zone\":\"%s\"}}}]}}",
             name, zone, zone, zone, zone, zone);
    feed(x, js);
}

static void feed_a(fx_t *x, const char *name, const char *zone, const char *owner, const char *ip)
{
    char js[1024];
    snprintf(js, sizeof(js),
             "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"ARecord\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"" NS "\",\"labels\":{\"zone\":\"%s\"}},\"spec\":{\"name\":\"%s\",\"ipv4Addresses\":"
             "[\"%s\"],\"ttl\":300}}",
             name, zone, owner, ip);
    feed(x, js);
}

static uint32_t projected(fx_t *x, const char *zone)
{
    const proj_zone_t *z = proj_zone_get(x->p, zone);
    assert_non_null(z);
    return proj_zone_serial(z);
}

/* ---- what named serves (ldns, one short blocking query: the loop does not run) -------- */

static bool served(const char *addr, uint16_t port, const char *zone, uint32_t *serial)
{
    ldns_rr_list *ans = bd_named_ask(addr, port, zone, LDNS_RR_TYPE_SOA);
    bool ok = ans && ldns_rr_list_rr_count(ans) > 0 && ldns_rr_rd_count(ldns_rr_list_rr(ans, 0)) >= 3;
    if (ok)
        *serial = ldns_rdf2native_int32(ldns_rr_rdf(ldns_rr_list_rr(ans, 0), 2));
    ldns_rr_list_deep_free(ans);
    return ok;
}

typedef struct {
    fx_t *x;
    const char *zone;
    uint32_t want;
} serve_wait_t;

static bool both_serve(void *arg)
{
    serve_wait_t *w = arg;
    for (int i = 0; i < NPODS; i++) {
        uint32_t s = 0;
        if (!served("127.0.0.1", bd_named_port(w->x->named[i]), w->zone, &s) || s != w->want)
            return false;
    }
    return true;
}

/* ---- the pods' condition, as kubectl would show it ----------------------------------- */

static json_t *pod_condition(fx_t *x, int i, const char *type)
{
    char *s = bd_apiserver_get(x->f.as, "", "pods", NS, POD_NAME[i]);
    assert_non_null(s);
    json_t *pod = json_loads(s, 0, NULL);
    free(s);
    assert_non_null(pod);
    json_t *found = NULL;
    size_t k;
    json_t *c;
    json_array_foreach(json_object_get(json_object_get(pod, "status"), "conditions"), k, c) {
        const char *t = json_string_value(json_object_get(c, "type"));
        if (t && strcmp(t, type) == 0)
            found = json_incref(c);
    }
    json_decref(pod);
    return found;
}

typedef struct {
    fx_t *x;
    int pod;
    const char *status;
    const char *msg_has; /* NULL: any message */
} cond_wait_t;

static bool cond_is(void *arg)
{
    cond_wait_t *w = arg;
    json_t *c = pod_condition(w->x, w->pod, WL_READINESS_GATE);
    bool ok = c != NULL && strcmp(json_string_value(json_object_get(c, "status")), w->status) == 0;
    const char *m = json_string_value(json_object_get(c, "message"));
    if (ok && w->msg_has != NULL)
        ok = m != NULL && strstr(m, w->msg_has) != NULL;
    json_decref(c);
    return ok;
}

static void wait_cond(fx_t *x, int pod, const char *status, const char *msg_has, double timeout)
{
    cond_wait_t w = {x, pod, status, msg_has};
    if (!kfx_run_until(x->f.loop, cond_is, &w, timeout)) {
        json_t *c = pod_condition(x, pod, WL_READINESS_GATE);
        char *d = c ? json_dumps(c, 0) : NULL;
        fail_msg("pod %s: want %s=%s%s%s within %.0f s; has %s", POD_NAME[pod], WL_READINESS_GATE, status,
                 msg_has ? " naming " : "", msg_has ? msg_has : "", timeout, d ? d : "no condition");
    }
}

static void assert_reason(fx_t *x, int pod, const char *reason)
{
    json_t *c = pod_condition(x, pod, WL_READINESS_GATE);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "reason")), reason);
    assert_non_null(json_string_value(json_object_get(c, "lastTransitionTime")));
    json_decref(c);
}

/* Has named of pod i logged this (its whole log, not just the tail)? */
static bool named_logged(fx_t *x, int i, const char *what)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/named.log", bd_named_dir(x->named[i]));
    FILE *f = fopen(path, "r");
    char line[2048];
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f))
        found = strstr(line, what) != NULL;
    if (f)
        fclose(f);
    return found;
}

typedef struct {
    fx_t *x;
    int pod;
    const char *what;
} log_wait_t;

static bool logged(void *arg)
{
    log_wait_t *w = arg;
    return named_logged(w->x, w->pod, w->what);
}

static bool retransferred(void *arg)
{
    rdy_stats_t st;
    rdy_stats(((fx_t *)arg)->r, &st);
    return st.retransfers > 0;
}

/* rdy's own view catches up with the double's once the write's answer is in */
static bool stats_ready(void *arg)
{
    rdy_stats_t st;
    rdy_stats(((fx_t *)arg)->r, &st);
    return st.inflight == 0;
}

/* Writes to pods (PATCH of pods/<name>/status) the double has logged. */
static size_t pod_writes(fx_t *x)
{
    size_t n = 0, total = bd_apiserver_log_count(x->f.as);
    for (size_t i = 0; i < total; i++) {
        bd_apiserver_req_t r;
        assert_int_equal(bd_apiserver_log_get(x->f.as, i, &r), 0);
        if (strcmp(r.verb, "patch") == 0 && strstr(r.path, "/pods/") != NULL && strncmp(r.user_agent, "bindy", 5) == 0)
            n++;
    }
    return n;
}

/* ---- the cluster side: Secret, Pods, EndpointSlice ----------------------------------- */

static void create(fx_t *x, const char *json)
{
    bd_err_t err;
    if (bd_apiserver_create(x->f.as, json, &err) != 0)
        fail_msg("create: %s", err.msg);
}

static void create_pod(fx_t *x, int i)
{
    char js[1024], path[256];
    snprintf(js, sizeof(js),
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"" NS "\","
             "\"labels\":{\"app.kubernetes.io/instance\":\"" INST "\"}},\"spec\":{\"readinessGates\":"
             "[{\"conditionType\":\"" WL_READINESS_GATE "\"}],\"containers\":[{\"name\":\"bind9\",\"image\":\"bind9\"}]}}",
             POD_NAME[i]);
    create(x, js);
    /* what the kubelet reports: the gate keeps Ready False */
    snprintf(path, sizeof(path), "/api/v1/namespaces/" NS "/pods/%s/status", POD_NAME[i]);
    assert_int_equal(kfx_http(&x->f, "PATCH", path, "application/merge-patch+json",
                              "{\"status\":{\"phase\":\"Running\",\"conditions\":[{\"type\":\"ContainersReady\","
                              "\"status\":\"True\"},{\"type\":\"Ready\",\"status\":\"False\"}]}}"),
                     200);
    char *s = bd_apiserver_get(x->f.as, "", "pods", NS, POD_NAME[i]);
    json_t *pod = json_loads(s, 0, NULL);
    free(s);
    snprintf(x->uid[i], sizeof(x->uid[i]), "%s",
             json_string_value(json_object_get(json_object_get(pod, "metadata"), "uid")));
    json_decref(pod);
}

/* Pod i's slice of the instance's Service, as the EndpointSlice controller writes it. */
static void create_slice(fx_t *x, int i)
{
    char js[2048];
    snprintf(js, sizeof(js),
             "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"" NS "\",\"labels\":{\"kubernetes.io/service-name\":\"" INST "\","
             "\"app.kubernetes.io/managed-by\":\"bindy\",\"endpointslice.kubernetes.io/managed-by\":"
             "\"endpointslice-controller.k8s.io\"}},\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"dns-udp\","
             "\"port\":%u,\"protocol\":\"UDP\"},{\"name\":\"dns-tcp\",\"port\":%u,\"protocol\":\"TCP\"},"
             "{\"name\":\"rndc\",\"port\":%u,\"protocol\":\"TCP\"}],\"endpoints\":[{\"addresses\":"
             "[\"127.0.0.1\"],\"conditions\":{\"ready\":false,\"serving\":true,\"terminating\":false},"
             "\"targetRef\":{\"kind\":\"Pod\",\"namespace\":\"" NS "\",\"name\":\"%s\",\"uid\":\"%s\"}}]}",
             SLICE[i], bd_named_port(x->named[i]), bd_named_port(x->named[i]), bd_named_ctl_port(x->named[i]),
             POD_NAME[i], x->uid[i]);
    create(x, js);
}

/* ---- named, rendered as bindy renders a primary instance's pods ----------------------- */

static void start_named(fx_t *x, int i)
{
    bd_err_t err;
    size_t ni = 0;
    const proj_instance_t **insts = proj_instances(x->p, &ni);
    assert_int_equal(ni, 1);
    assert_int_equal(bd_named_new(&x->named[i], &err), 0);
    char *keys = NULL, *conf = NULL, kpath[4096];
    assert_int_equal(bind_render_keys("hmac-sha256", XFR_B64, "hmac-sha256", RNDC_B64, &keys, &err), BD_OK);
    assert_int_equal(bd_named_write_file(x->named[i], "keys.conf", keys, &err), 0);
    snprintf(kpath, sizeof(kpath), "%s/keys.conf", bd_named_dir(x->named[i]));
    bind_endpoint_t up = {"127.0.0.1", bind_server_port(x->srv)};
    bind_render_params_t prm = {
        .directory = bd_named_dir(x->named[i]), .keys_file = kpath, .listen_v4 = "127.0.0.1",
        .port = bd_named_port(x->named[i]), .control_addr = "127.0.0.1", .control_port = bd_named_ctl_port(x->named[i]),
        .catalog = insts[0]->catalog, .upstream = &up, .nupstream = 1,
    };
    assert_int_equal(bind_render_named_conf(insts[0]->res, NULL, &prm, &conf, &err), BD_OK);
    if (bd_named_start(x->named[i], conf, 30.0, &err) != 0)
        fail_msg("named of %s: %s", POD_NAME[i], err.msg);
    free(keys);
    free(conf);
}

static int setup(void **state)
{
    fx_t *x = calloc(1, sizeof(*x));
    bd_err_t err;
    kfx_start(&x->f, NULL);
    assert_int_equal(proj_new(NULL, &x->p, NULL), BD_OK);
    assert_int_equal(bind_zonedb_new(&x->db, NULL), BD_OK);
    bind_server_key_t key;
    assert_int_equal(bind_server_key_from_b64(&key, BIND_XFR_KEY_NAME, BIND_SERVER_HMAC_SHA256, XFR_B64), 0);
    /* the operator's hidden primary: serving (the leader), no NOTIFY targets of its own */
    bind_server_config_t sc = {.address = "127.0.0.1", .xfr_key = &key, .serving = true};
    assert_int_equal(bind_server_new(&x->srv, x->f.loop, x->db, &sc, &err), 0);
    bind_server_key_wipe(&key);
    rdy_opts_t o;
    rdy_opts_init(&o);
    o.srv = x->srv;
    o.retransfer_after = 1; /* rndc after one round without progress, well within the waits */
    o.served_above = on_above;
    o.served_above_arg = x;
    assert_int_equal(rdy_new(x->f.c, &o, &x->r, &err), BD_OK);

    feed(x, "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"Bind9Instance\",\"metadata\":{\"name\":"
            "\"" INST "\",\"namespace\":\"" NS "\",\"labels\":{\"dns-role\":\"primary\"}},\"spec\":{\"replicas\":2}}");
    feed_zone(x, "example-com", "example.com");
    feed_a(x, "www", "example.com", "www", "192.0.2.10");
    for (int i = 0; i < NPODS; i++)
        start_named(x, i);
    /* the rndc key as the workload applier keeps it (base64 of the base64 secret) */
    create(x, "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"" INST "-keys\",\"namespace\":"
              "\"" NS "\"},\"type\":\"Opaque\",\"data\":{\"rndc-algorithm\":\"aG1hYy1zaGEyNTY=\",\"rndc-secret\":"
              "\"Y201a1l5MXpaV055WlhRdFptOXlMWEpsWVdScGJtVnpjeTEwWlhOMGN5MHdNVEl6\"}}");
    for (int i = 0; i < NPODS; i++) {
        create_pod(x, i);
        create_slice(x, i);
    }
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fx_t *x = *state;
    for (int i = 0; i < NPODS; i++) {
        if (x->named[i] && bd_named_pid(x->named[i]) > 0)
            kill(bd_named_pid(x->named[i]), SIGCONT);
        bd_named_free(x->named[i]);
    }
    rdy_free(x->r);
    proj_free(x->p2);
    bind_server_free(x->srv);
    bind_zonedb_free(x->db);
    proj_free(x->p);
    kfx_stop(&x->f);
    free(x);
    return 0;
}

static void test_readiness_gate(void **state)
{
    fx_t *x = *state;
    bd_err_t err;
    assert_int_equal(rdy_start_leading(x->r, x->p, &err), BD_OK);

    /* 1. both pods publish every zone: the gate is True, the kubelet's conditions stay */
    for (int i = 0; i < NPODS; i++) {
        wait_cond(x, i, "True", NULL, 30.0);
        assert_reason(x, i, RDY_REASON_PUBLISHED);
        json_t *ready = pod_condition(x, i, "Ready");
        json_t *cr = pod_condition(x, i, "ContainersReady");
        assert_non_null(ready);
        assert_non_null(cr);
        json_decref(ready);
        json_decref(cr);
    }
    rdy_stats_t st;
    assert_true(kfx_run_until(x->f.loop, stats_ready, x, 10.0));
    rdy_stats(x->r, &st);
    assert_int_equal(st.pods, NPODS);
    assert_int_equal(st.ready, NPODS);

    /* 2. at rest: no write */
    kfx_run_for(x->f.loop, 0.5);
    size_t w0 = pod_writes(x);
    kfx_run_for(x->f.loop, 3.0);
    assert_int_equal(pod_writes(x), w0);

    /* 3. a new record moves the serial: both serve it, both stay True (not one write) */
    uint32_t before = projected(x, "example.com");
    feed_a(x, "www2", "example.com", "www2", "192.0.2.20");
    serve_wait_t sw = {x, "example.com", projected(x, "example.com")};
    assert_int_not_equal(sw.want, before);
    assert_true(kfx_run_until(x->f.loop, both_serve, &sw, 20.0));
    kfx_run_for(x->f.loop, 3.0); /* a round's grace, twice over */
    for (int i = 0; i < NPODS; i++)
        wait_cond(x, i, "True", NULL, 0.1);
    assert_int_equal(pod_writes(x), w0);

    /* 4. pod b's named stops while a zone is added: b is False naming the zone, a True */
    assert_int_equal(kill(bd_named_pid(x->named[1]), SIGSTOP), 0);
    feed_zone(x, "example-org", "example.org");
    feed_a(x, "mail", "example.org", "mail", "192.0.2.30");
    wait_cond(x, 1, "False", "example.org", 30.0);
    assert_reason(x, 1, RDY_REASON_BEHIND);
    wait_cond(x, 0, "True", NULL, 30.0);
    serve_wait_t one = {x, "example.org", projected(x, "example.org")};
    uint32_t s = 0;
    assert_true(served("127.0.0.1", bd_named_port(x->named[0]), "example.org", &s) && s == one.want);
    assert_true(kfx_run_until(x->f.loop, stats_ready, x, 10.0));
    rdy_stats(x->r, &st);
    assert_int_equal(st.lagging, 1);
    assert_true(st.notifies > 0);

    /* still behind, no progress: rndc retransfer (queued while named is stopped) */
    assert_true(kfx_run_until(x->f.loop, retransferred, x, 20.0));

    /* 5. it runs again and catches up: True; named received the retransfer */
    assert_int_equal(kill(bd_named_pid(x->named[1]), SIGCONT), 0);
    wait_cond(x, 1, "True", NULL, 60.0);
    assert_reason(x, 1, RDY_REASON_PUBLISHED);
    assert_true(kfx_run_until(x->f.loop, both_serve, &one, 10.0));
    log_wait_t lw = {x, 1, "received control channel command 'retransfer"};
    assert_true(kfx_run_until(x->f.loop, logged, &lw, 15.0));

    /* 6. pod b's slice goes (the pod was deleted): forgotten */
    long code = kfx_http(&x->f, "DELETE", "/apis/discovery.k8s.io/v1/namespaces/" NS "/endpointslices/" INST "-q9d4m",
                         NULL, NULL);
    assert_true(code == 200 || code == 202);
    for (int k = 0; k < 100; k++) {
        rdy_stats(x->r, &st);
        if (st.pods == 1)
            break;
        kfx_run_for(x->f.loop, 0.1);
    }
    assert_int_equal(st.pods, 1);
    assert_int_equal(x->above, 0); /* this leader's projection was never behind */

    /* 7. a new leader that journaled fewer versions (no www2, no mail): its projection is
     * behind what pod a publishes; it is told the published serial, once */
    rdy_stop_leading(x->r);
    proj_t *mine = x->p;
    assert_int_equal(proj_new(NULL, &x->p2, NULL), BD_OK);
    x->p = x->p2;
    x->quiet = true;
    feed(x, "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"Bind9Instance\",\"metadata\":{\"name\":"
            "\"" INST "\",\"namespace\":\"" NS "\",\"labels\":{\"dns-role\":\"primary\"}},\"spec\":{\"replicas\":2}}");
    feed_zone(x, "example-com", "example.com");
    feed_a(x, "www", "example.com", "www", "192.0.2.10");
    feed_zone(x, "example-org", "example.org");
    x->p = mine;
    uint32_t published = 0;
    assert_true(served("127.0.0.1", bd_named_port(x->named[0]), "example.com", &published));
    uint32_t behind = proj_zone_serial(proj_zone_get(x->p2, "example.com"));
    assert_true(bind_zonedb_serial_gt(published, behind));
    assert_int_equal(rdy_start_leading(x->r, x->p2, &err), BD_OK);
    assert_true(kfx_wait_count(x->f.loop, &x->above, 1, 20.0));
    kfx_run_for(x->f.loop, 2.0);
    assert_int_equal(x->above, 1);
    assert_int_equal(x->above_serial, published);
    assert_int_equal(x->above_projected, behind);

    /* leadership lost: everything forgotten, nothing more written */
    rdy_stop_leading(x->r);
    rdy_stats(x->r, &st);
    assert_int_equal(st.pods, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_readiness_gate, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
