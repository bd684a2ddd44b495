/*
 * test_wla.c - the workload applier against the API-server double, on the example
 * instances (deploy/examples/instances.yaml: primary-dns and secondary-dns, 2 replicas):
 * a sync creates each instance's Secret, ConfigMap, Service, Deployment and PDB with
 * ownerReferences and the right upstream addresses; a second sync makes no API call;
 * scaling applies exactly the Deployment and the PDB; a deleted instance loses what it
 * controls (and only that); the rndc key survives syncs and a new applier (a new
 * leader); a fenced applier sends nothing; a failed apply is retried without holding
 * back the other instance; Events on the instance say what was created, updated or
 * refused, once per change and never at rest. Every wait is bounded.
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
#include <openssl/evp.h>

#include "apply.h"
#include "doc.h"
#include "k8s_fixture.h"
#include "projector.h"
#include "render.h"
#include "workload.h"

#define NS "dns-system"
#define HP_IP "10.96.0.53"
#define PRIMARY_IP "10.96.1.1"
#define XFR_B64 "c2VjcmV0LXRyYW5zZmVyLWtleS1mb3ItdGVzdHMtb25seS0zMmI="

typedef struct {
    kfx_t f;
    proj_t *p;
    wla_t *w;
    bool leader;
    int problems; /* on_problem calls */
    uint64_t seq;
    json_t *insts; /* the example instances, with uids */
} fx_t;

static bool fence(void *arg) { return ((fx_t *)arg)->leader; }

static void on_problem(void *arg, const char *key)
{
    fx_t *x = arg;
    assert_string_equal(key, NS "/primary-dns");
    x->problems++;
}

static const char *src_dir(void)
{
    const char *d = getenv("BINDY_SOURCE_DIR");
    return d ? d : ".";
}

static void feed(fx_t *x, jnl_type_t type, json_t *obj)
{
    jnl_event_t ev = jnl_event_of(JNL_SRC_MANIFESTS, type, obj);
    ev.seq = ++x->seq;
    bd_err_t err;
    if (proj_apply(x->p, &ev, &err) != BD_OK)
        fail_msg("proj_apply: %s", err.msg);
}

/* Mark what the projector says changed, then sync. */
static void mark_changes(fx_t *x)
{
    proj_changes_t ch;
    assert_int_equal(proj_take_changes(x->p, &ch), BD_OK);
    for (size_t i = 0; i < ch.instances.n; i++)
        assert_int_equal(wla_mark(x->w, ch.instances.v[i]), BD_OK);
    proj_changes_deinit(&ch);
    assert_int_equal(wla_sync(x->w, x->p), BD_OK);
}

static bool idle(void *arg) { return wla_idle(((fx_t *)arg)->w); }

static void run_idle(fx_t *x)
{
    assert_true(kfx_run_until(x->f.loop, idle, x, 15.0));
}

static void new_wla(fx_t *x)
{
    wla_opts_t o;
    wla_opts_init(&o);
    o.operator_namespace = NS;
    o.xfr_secret_b64 = XFR_B64;
    o.fence = fence;
    o.fence_arg = x;
    o.on_problem = on_problem;
    o.on_problem_arg = x;
    bd_err_t err;
    assert_int_equal(wla_new(x->f.c, &o, &x->w, &err), BD_OK);
}

static json_t *get_obj(fx_t *x, const char *group, const char *res, const char *name)
{
    char *s = bd_apiserver_get(x->f.as, group, res, NS, name);
    if (s == NULL)
        return NULL;
    json_t *v = json_loads(s, 0, NULL);
    free(s);
    assert_non_null(v);
    return v;
}

static const char *const OBJS[][3] = {
    {"", "secrets", "-keys"},      {"", "configmaps", "-config"}, {"", "services", ""},
    {"apps", "deployments", ""}, {"policy", "poddisruptionbudgets", "-pdb"},
};
#define NOBJS (sizeof(OBJS) / sizeof(*OBJS))

static void assert_workloads(fx_t *x, const char *inst, bool present)
{
    char uid[64], name[128];
    snprintf(uid, sizeof(uid), "uid-%s", inst);
    for (size_t i = 0; i < NOBJS; i++) {
        snprintf(name, sizeof(name), "%s%s", inst, OBJS[i][2]);
        json_t *o = get_obj(x, OBJS[i][0], OBJS[i][1], name);
        if (!present) {
            if (o != NULL)
                fail_msg("%s %s still exists", OBJS[i][1], name);
            continue;
        }
        if (o == NULL)
            fail_msg("%s %s missing", OBJS[i][1], name);
        if (!wl_owned_by(o, uid))
            fail_msg("%s %s: no controlling ownerReference to %s", OBJS[i][1], name, uid);
        json_decref(o);
    }
}

static char *named_conf(fx_t *x, const char *inst)
{
    char name[128];
    snprintf(name, sizeof(name), "%s-config", inst);
    json_t *o = get_obj(x, "", "configmaps", name);
    assert_non_null(o);
    char *s = strdup(json_string_value(json_object_get(json_object_get(o, "data"), "named.conf")));
    json_decref(o);
    return s;
}

static char *rndc_secret(fx_t *x, const char *inst)
{
    char name[128];
    snprintf(name, sizeof(name), "%s-keys", inst);
    json_t *o = get_obj(x, "", "secrets", name);
    assert_non_null(o);
    char *alg = NULL, *sec = NULL;
    assert_int_equal(wl_rndc_from_secret(o, &alg, &sec), BD_OK);
    free(alg);
    json_decref(o);
    return sec;
}

/* API requests logged since the last clear, other than discovery; verbs counted. */
static size_t api_calls(fx_t *x, const char *verb, const char *path_sub)
{
    size_t n = 0, total = bd_apiserver_log_count(x->f.as);
    for (size_t i = 0; i < total; i++) {
        bd_apiserver_req_t r;
        assert_int_equal(bd_apiserver_log_get(x->f.as, i, &r), 0);
        if (strcmp(r.verb, "discovery") == 0 || strcmp(r.verb, "openapi") == 0 || strcmp(r.verb, "version") == 0)
            continue;
        if (verb != NULL && strcmp(r.verb, verb) != 0)
            continue;
        if (path_sub != NULL && strstr(r.path, path_sub) == NULL)
            continue;
        n++;
    }
    return n;
}

/* Events on Bind9Instance inst (involvedObject with its uid) of this type and reason whose
 * message holds msg (NULL: any). Reads through HTTP: count API calls before calling. */
static size_t events_of(fx_t *x, const char *inst, const char *type, const char *reason, const char *msg)
{
    json_t *l = kfx_get_json(&x->f, "/api/v1/namespaces/" NS "/events");
    char uid[64];
    snprintf(uid, sizeof(uid), "uid-%s", inst);
    size_t i, n = 0;
    const json_t *e;
    json_array_foreach(json_object_get(l, "items"), i, e) {
        const json_t *io = json_object_get(e, "involvedObject");
        const char *m = json_string_value(json_object_get(e, "message"));
        if (strcmp(json_string_value(json_object_get(io, "name")), inst) != 0 ||
            strcmp(json_string_value(json_object_get(e, "type")), type) != 0 ||
            strcmp(json_string_value(json_object_get(e, "reason")), reason) != 0 ||
            (msg != NULL && (m == NULL || strstr(m, msg) == NULL)))
            continue;
        assert_string_equal(json_string_value(json_object_get(io, "kind")), "Bind9Instance");
        assert_string_equal(json_string_value(json_object_get(io, "apiVersion")), "bindy.firestoned.io/v1beta1");
        assert_string_equal(json_string_value(json_object_get(io, "namespace")), NS);
        assert_string_equal(json_string_value(json_object_get(io, "uid")), uid);
        n++;
    }
    json_decref(l);
    return n;
}

static size_t all_events(fx_t *x)
{
    json_t *l = kfx_get_json(&x->f, "/api/v1/namespaces/" NS "/events");
    size_t n = json_array_size(json_object_get(l, "items"));
    json_decref(l);
    return n;
}

static void create_service(fx_t *x, const char *name, const char *ip)
{
    char js[512];
    snprintf(js, sizeof(js),
             "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\"},"
             "\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"%s\",\"ports\":[{\"name\":\"dns-udp\",\"port\":53,"
             "\"protocol\":\"UDP\"}]}}",
             name, NS, ip);
    bd_err_t err;
    if (bd_apiserver_create(x->f.as, js, &err) != 0)
        fail_msg("create Service %s: %s", name, err.msg);
}

static int setup(void **state)
{
    fx_t *x = calloc(1, sizeof(*x));
    kfx_start(&x->f, NULL);
    /* the double assigns no ClusterIP: these stand for what the API server would give */
    create_service(x, WLA_DEFAULT_HIDDEN_PRIMARY, HP_IP);
    create_service(x, "primary-dns", PRIMARY_IP);
    assert_int_equal(proj_new(NULL, &x->p, NULL), BD_OK);
    char path[1024];
    snprintf(path, sizeof(path), "%s/deploy/examples/instances.yaml", src_dir());
    doc_list_t *l = NULL;
    bd_err_t err;
    assert_int_equal(doc_load_file(path, &l, &err), BD_OK);
    x->insts = json_array();
    for (size_t i = 0; i < doc_list_count(l); i++) {
        json_t *o = json_deep_copy(doc_value(doc_list_get(l, i)));
        json_t *meta = json_object_get(o, "metadata");
        char uid[64];
        snprintf(uid, sizeof(uid), "uid-%s", json_string_value(json_object_get(meta, "name")));
        json_object_set_new(meta, "uid", json_string(uid));
        json_object_set_new(meta, "creationTimestamp", json_string("2024-01-01T00:00:00Z"));
        feed(x, JNL_ADDED, o);
        json_array_append_new(x->insts, o);
    }
    doc_list_free(l);
    assert_int_equal(json_array_size(x->insts), 2);
    size_t n = 0;
    proj_instances(x->p, &n);
    assert_int_equal(n, 2);
    proj_changes_t ch;
    assert_int_equal(proj_take_changes(x->p, &ch), BD_OK);
    proj_changes_deinit(&ch);
    x->leader = true;
    new_wla(x);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    fx_t *x = *state;
    wla_free(x->w);
    proj_free(x->p);
    json_decref(x->insts);
    kfx_stop(&x->f);
    free(x);
    return 0;
}

/* Takeover: every object of every instance applied once, then nothing at rest. */
static void first_sync(fx_t *x)
{
    assert_int_equal(wla_mark_all(x->w, x->p), BD_OK);
    assert_int_equal(wla_sync(x->w, x->p), BD_OK);
    run_idle(x);
}

static void test_create_then_rest(void **state)
{
    fx_t *x = *state;
    first_sync(x);
    assert_workloads(x, "primary-dns", true);
    assert_workloads(x, "secondary-dns", true);
    wla_stats_t st;
    wla_stats(x->w, &st);
    assert_int_equal(st.applies, 2 * NOBJS);
    assert_int_equal(st.errors, 0);
    /* every write is a server-side apply by field manager bindy, forced */
    size_t total = bd_apiserver_log_count(x->f.as);
    size_t patches = 0;
    for (size_t i = 0; i < total; i++) {
        bd_apiserver_req_t r;
        assert_int_equal(bd_apiserver_log_get(x->f.as, i, &r), 0);
        if (strcmp(r.method, "PATCH") == 0) {
            patches++;
            assert_string_equal(r.field_manager, "bindy");
            assert_non_null(strstr(r.query, "force=true"));
        }
    }
    assert_int_equal(patches, 2 * NOBJS);
    /* a primary pulls from the hidden primary, a secondary from its primary's Service and,
     * when that cannot serve a zone, from the hidden primary: for its catalog and members */
    char *pc = named_conf(x, "primary-dns"), *sc = named_conf(x, "secondary-dns");
    assert_non_null(strstr(pc, HP_IP));
    assert_null(strstr(pc, PRIMARY_IP));
    static const char sec_up[] = " " PRIMARY_IP " port 53 key \"" BIND_XFR_KEY_NAME "\"; " HP_IP
                                 " port 53 key \"" BIND_XFR_KEY_NAME "\"; }";
    const char *dp = strstr(sc, "default-primaries {"), *cp = strstr(sc, "    primaries {");
    assert_non_null(dp);
    assert_non_null(cp);
    assert_memory_equal(dp + strlen("default-primaries {"), sec_up, strlen(sec_up));
    assert_memory_equal(cp + strlen("    primaries {"), sec_up, strlen(sec_up));
    free(pc);
    free(sc);
    /* nothing changed: no API call at all */
    bd_apiserver_log_clear(x->f.as);
    assert_int_equal(wla_mark(x->w, NS "/primary-dns"), BD_OK);
    assert_int_equal(wla_mark(x->w, NS "/secondary-dns"), BD_OK);
    assert_int_equal(wla_sync(x->w, x->p), BD_OK);
    run_idle(x);
    kfx_run_for(x->f.loop, 0.2);
    assert_int_equal(api_calls(x, NULL, NULL), 0);
    wla_stats(x->w, &st);
    assert_int_equal(st.skipped, 2 * NOBJS);
    assert_int_equal(st.applies, 2 * NOBJS);
}

static void test_scale(void **state)
{
    fx_t *x = *state;
    first_sync(x);
    bd_apiserver_log_clear(x->f.as);
    json_t *o = json_deep_copy(json_array_get(x->insts, 0));
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "metadata"), "name")), "primary-dns");
    json_object_set_new(json_object_get(o, "spec"), "replicas", json_integer(3));
    json_object_set_new(json_object_get(o, "metadata"), "generation", json_integer(2));
    feed(x, JNL_MODIFIED, o);
    json_decref(o);
    mark_changes(x);
    run_idle(x);
    kfx_run_for(x->f.loop, 0.1);
    /* two applies, and an Event for each */
    assert_int_equal(api_calls(x, NULL, NULL), 4);
    assert_int_equal(api_calls(x, "patch", "/deployments/primary-dns"), 1);
    assert_int_equal(api_calls(x, "patch", "/poddisruptionbudgets/primary-dns-pdb"), 1);
    assert_int_equal(api_calls(x, "create", "/events"), 2);
    assert_int_equal(events_of(x, "primary-dns", "Normal", "Updated", "Deployment primary-dns"), 1);
    assert_int_equal(events_of(x, "primary-dns", "Normal", "Updated", "PodDisruptionBudget primary-dns-pdb"), 1);
    json_t *d = get_obj(x, "apps", "deployments", "primary-dns");
    assert_non_null(d);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "spec"), "replicas")), 3);
    json_decref(d);
}

static void test_delete(void **state)
{
    fx_t *x = *state;
    first_sync(x);
    /* a user takes over the secondary's ConfigMap: it is no longer controlled by the
     * instance and must survive the instance's deletion */
    long st = kfx_http(&x->f, "PATCH", "/api/v1/namespaces/" NS "/configmaps/secondary-dns-config",
                       "application/merge-patch+json", "{\"metadata\":{\"ownerReferences\":null}}");
    assert_int_equal(st, 200);
    bd_apiserver_log_clear(x->f.as);
    json_t *o = json_array_get(x->insts, 1);
    feed(x, JNL_DELETED, o);
    mark_changes(x);
    run_idle(x);
    assert_null(bd_apiserver_get(x->f.as, "", "secrets", NS, "secondary-dns-keys"));
    assert_null(bd_apiserver_get(x->f.as, "", "services", NS, "secondary-dns"));
    assert_null(bd_apiserver_get(x->f.as, "apps", "deployments", NS, "secondary-dns"));
    assert_null(bd_apiserver_get(x->f.as, "policy", "poddisruptionbudgets", NS, "secondary-dns-pdb"));
    char *cm = bd_apiserver_get(x->f.as, "", "configmaps", NS, "secondary-dns-config");
    assert_non_null(cm);
    free(cm);
    assert_int_equal(api_calls(x, "delete", NULL), 4);
    assert_int_equal(api_calls(x, "delete", "configmaps"), 0);
    assert_int_equal(api_calls(x, "patch", NULL), 0);
    assert_workloads(x, "primary-dns", true);
    wla_stats_t s;
    wla_stats(x->w, &s);
    assert_int_equal(s.deletes, 4);
    assert_int_equal(s.errors, 0);
}

static void test_keys_kept(void **state)
{
    fx_t *x = *state;
    first_sync(x);
    char *k1 = rndc_secret(x, "primary-dns"), *k2 = rndc_secret(x, "secondary-dns");
    assert_true(strlen(k1) >= 40);
    assert_string_not_equal(k1, k2);
    /* a change that re-renders everything keeps the keys */
    assert_int_equal(wla_mark_all(x->w, x->p), BD_OK);
    assert_int_equal(wla_sync(x->w, x->p), BD_OK);
    run_idle(x);
    char *k1b = rndc_secret(x, "primary-dns");
    assert_string_equal(k1, k1b);
    free(k1b);
    /* a new leader: a new applier reads the Secret back */
    wla_free(x->w);
    x->w = NULL;
    new_wla(x);
    bd_apiserver_log_clear(x->f.as);
    first_sync(x);
    assert_int_equal(api_calls(x, "get", "/secrets/primary-dns-keys"), 1);
    char *k1c = rndc_secret(x, "primary-dns"), *k2c = rndc_secret(x, "secondary-dns");
    assert_string_equal(k1, k1c);
    assert_string_equal(k2, k2c);
    free(k1c);
    free(k2c);
    free(k1);
    free(k2);
}

static void test_fenced(void **state)
{
    fx_t *x = *state;
    x->leader = false;
    bd_apiserver_log_clear(x->f.as);
    assert_int_equal(wla_mark_all(x->w, x->p), BD_OK);
    assert_int_equal(wla_sync(x->w, x->p), BD_OK);
    kfx_run_for(x->f.loop, 0.3);
    assert_int_equal(api_calls(x, NULL, NULL), 0);
    assert_workloads(x, "secondary-dns", false);
    wla_stats_t st;
    wla_stats(x->w, &st);
    assert_true(st.fenced > 0);
    assert_int_equal(st.pending, 2);
    /* elected: the kept marks are applied */
    x->leader = true;
    assert_int_equal(wla_sync(x->w, x->p), BD_OK);
    run_idle(x);
    assert_workloads(x, "primary-dns", true);
    assert_workloads(x, "secondary-dns", true);
}

static void test_failure_retried(void **state)
{
    fx_t *x = *state;
    bd_apiserver_fail_next(x->f.as, 2, 500, "patch /apis/apps/v1/namespaces/" NS "/deployments/primary-dns");
    first_sync(x);
    assert_workloads(x, "primary-dns", true);
    assert_workloads(x, "secondary-dns", true);
    wla_stats_t st;
    wla_stats(x->w, &st);
    assert_int_equal(st.errors, 2);
    assert_int_equal(st.applies, 2 * NOBJS);
    assert_int_equal(api_calls(x, "patch", "/deployments/primary-dns"), 3);
    assert_int_equal(api_calls(x, "patch", "/deployments/secondary-dns"), 1);
    /* the two identical refusals: one Warning; then the Deployment is created once */
    assert_int_equal(events_of(x, "primary-dns", "Warning", "ApplyFailed", "Deployment primary-dns"), 1);
    assert_int_equal(events_of(x, "primary-dns", "Normal", "Created", "Deployment primary-dns"), 1);
    assert_int_equal(events_of(x, "secondary-dns", "Warning", "ApplyFailed", NULL), 0);
    wla_stats(x->w, &st);
    assert_int_equal(st.event_errors, 0);
}

/* Events: Created for every object a takeover creates, nothing at rest, nothing when a
 * new leader applies objects that are already right. */
static void test_events(void **state)
{
    fx_t *x = *state;
    first_sync(x);
    static const char *const created[] = {"Secret primary-dns-keys", "ConfigMap primary-dns-config",
                                          "Deployment primary-dns", "PodDisruptionBudget primary-dns-pdb"};
    for (size_t i = 0; i < sizeof(created) / sizeof(*created); i++)
        if (events_of(x, "primary-dns", "Normal", "Created", created[i]) != 1)
            fail_msg("no single Created event for %s", created[i]);
    /* the primary's Service existed (setup made it, as a stand-in): the apply updates it */
    assert_int_equal(events_of(x, "primary-dns", "Normal", "Updated", "Service primary-dns"), 1);
    assert_int_equal(events_of(x, "primary-dns", "Normal", "Created", NULL), NOBJS - 1);
    assert_int_equal(events_of(x, "secondary-dns", "Normal", "Created", NULL), NOBJS);
    assert_int_equal(all_events(x), 2 * NOBJS);
    wla_stats_t st;
    wla_stats(x->w, &st);
    assert_int_equal(st.events, 2 * NOBJS);
    /* at rest: marks cost nothing, post nothing */
    bd_apiserver_log_clear(x->f.as);
    assert_int_equal(wla_mark(x->w, NS "/primary-dns"), BD_OK);
    assert_int_equal(wla_sync(x->w, x->p), BD_OK);
    run_idle(x);
    kfx_run_for(x->f.loop, 0.2);
    assert_int_equal(api_calls(x, NULL, NULL), 0);
    /* a new leader applies every object once, and none of them changes */
    wla_free(x->w);
    x->w = NULL;
    new_wla(x);
    first_sync(x);
    kfx_run_for(x->f.loop, 0.1);
    assert_int_equal(api_calls(x, "patch", NULL), 2 * NOBJS);
    assert_int_equal(api_calls(x, "create", "/events"), 0);
    assert_int_equal(all_events(x), 2 * NOBJS);
}

static bool secondary_applied(void *arg)
{
    fx_t *x = arg;
    char *s = bd_apiserver_get(x->f.as, "apps", "deployments", NS, "secondary-dns");
    free(s);
    return s != NULL;
}

/* The primary's Service has no ClusterIP yet: the secondary waits (bounded retries), and
 * is applied once the address appears. */
static void test_secondary_waits(void **state)
{
    fx_t *x = *state;
    assert_int_equal(kfx_http(&x->f, "DELETE", "/api/v1/namespaces/" NS "/services/primary-dns", NULL, NULL), 200);
    assert_int_equal(wla_mark_all(x->w, x->p), BD_OK);
    assert_int_equal(wla_sync(x->w, x->p), BD_OK);
    kfx_run_for(x->f.loop, 0.3);
    assert_workloads(x, "primary-dns", true);
    assert_false(secondary_applied(x));
    assert_false(wla_idle(x->w));
    assert_int_equal(kfx_http(&x->f, "PATCH", "/api/v1/namespaces/" NS "/services/primary-dns",
                              "application/merge-patch+json", "{\"spec\":{\"clusterIP\":\"" PRIMARY_IP "\"}}"),
                     200);
    assert_true(kfx_run_until(x->f.loop, secondary_applied, x, 10.0));
    run_idle(x);
    assert_workloads(x, "secondary-dns", true);
    char *sc = named_conf(x, "secondary-dns");
    assert_non_null(strstr(sc, PRIMARY_IP));
    free(sc);
    /* a few reads while waiting, not a busy loop */
    assert_true(api_calls(x, "get", "/services/primary-dns") <= 6);
}

/* Leadership lost mid-flight, then regained: calls cancelled, everything applied once. */
static void test_reset(void **state)
{
    fx_t *x = *state;
    assert_int_equal(wla_mark_all(x->w, x->p), BD_OK);
    assert_int_equal(wla_sync(x->w, x->p), BD_OK);
    kfx_run_for(x->f.loop, 0.005); /* some calls in flight */
    x->leader = false;             /* as le_fence_ok says once leadership is lost */
    wla_stats_t st;
    wla_stats(x->w, &st);
    size_t was_inflight = st.inflight + st.event_inflight; /* requests possibly sent */
    wla_reset(x->w);
    wla_stats(x->w, &st);
    assert_int_equal(st.inflight, 0);
    assert_int_equal(st.event_inflight, 0);
    size_t before = api_calls(x, NULL, NULL), mark = bd_apiserver_log_count(x->f.as);
    kfx_run_for(x->f.loop, 0.1); /* fenced: nothing new is sent */
    /* only requests already sent before the reset may still reach the double */
    if (api_calls(x, NULL, NULL) - before > was_inflight) {
        for (size_t k = mark; k < bd_apiserver_log_count(x->f.as); k++) {
            bd_apiserver_req_t r;
            if (bd_apiserver_log_get(x->f.as, k, &r) == 0)
                fprintf(stderr, "after the reset: %s %s\n", r.verb, r.path);
        }
        fail_msg("%zu calls reached the API server after the reset, %zu were in flight",
                 api_calls(x, NULL, NULL) - before, was_inflight);
    }
    bd_apiserver_log_clear(x->f.as);
    x->leader = true;
    first_sync(x);
    assert_workloads(x, "primary-dns", true);
    assert_workloads(x, "secondary-dns", true);
    assert_int_equal(api_calls(x, "patch", NULL), 2 * NOBJS);
    assert_int_equal(api_calls(x, "get", "/secrets/"), 2);
    assert_int_equal(api_calls(x, "get", "/services/" WLA_DEFAULT_HIDDEN_PRIMARY), 1);
}

/* primary-dns with spec.storage set (YAML flow body, NULL: removed), generation gen. */
static void set_storage(fx_t *x, const char *storage_json, int gen)
{
    json_t *o = json_deep_copy(json_array_get(x->insts, 0));
    json_t *spec = json_object_get(o, "spec");
    if (storage_json != NULL)
        json_object_set_new(spec, "storage", json_loads(storage_json, 0, NULL));
    else
        json_object_del(spec, "storage");
    json_object_set_new(json_object_get(o, "metadata"), "generation", json_integer(gen));
    feed(x, JNL_MODIFIED, o);
    json_decref(o);
    mark_changes(x);
    run_idle(x);
}

/* Claims per pod: the Deployment gives way to a StatefulSet and back, also when the
 * leader that applied the old one is gone. */
static void test_storage_switch(void **state)
{
    fx_t *x = *state;
    first_sync(x);
    bd_apiserver_log_clear(x->f.as);
    set_storage(x, "{\"persistentVolumeClaim\": {\"size\": \"2Gi\"}}", 2);
    json_t *sts = get_obj(x, "apps", "statefulsets", "primary-dns");
    assert_non_null(sts);
    assert_true(wl_owned_by(sts, "uid-primary-dns"));
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(json_object_get(json_object_get(sts, "spec"),
                                                                           "volumeClaimTemplates"), 0), "metadata"),
                            "name")),
                        "data");
    json_decref(sts);
    assert_null(get_obj(x, "apps", "deployments", "primary-dns"));
    assert_int_equal(api_calls(x, "delete", "/deployments/primary-dns"), 1);
    assert_int_equal(events_of(x, "primary-dns", "Normal", "Created", "StatefulSet primary-dns"), 1);
    assert_int_equal(events_of(x, "primary-dns", "Normal", "Deleted", "Deployment primary-dns"), 1);
    /* a new leader, and the storage goes away: it never applied the StatefulSet, it
     * finds it and deletes it */
    wla_free(x->w);
    x->w = NULL;
    new_wla(x);
    first_sync(x);
    bd_apiserver_log_clear(x->f.as);
    set_storage(x, NULL, 3);
    assert_null(get_obj(x, "apps", "statefulsets", "primary-dns"));
    json_t *d = get_obj(x, "apps", "deployments", "primary-dns");
    assert_non_null(d);
    json_decref(d);
    assert_int_equal(api_calls(x, "delete", "/statefulsets/primary-dns"), 1);
    /* the secondary was not touched */
    assert_int_equal(api_calls(x, NULL, "secondary-dns"), 0);
    wla_stats_t st;
    wla_stats(x->w, &st);
    assert_int_equal(st.errors, 0);
    /* known gone: a later change (a scale) costs no read of it */
    bd_apiserver_log_clear(x->f.as);
    json_t *o = json_deep_copy(json_array_get(x->insts, 0));
    json_object_set_new(json_object_get(o, "spec"), "replicas", json_integer(3));
    json_object_set_new(json_object_get(o, "metadata"), "generation", json_integer(4));
    feed(x, JNL_MODIFIED, o);
    json_decref(o);
    mark_changes(x);
    run_idle(x);
    assert_int_equal(api_calls(x, "patch", "/deployments/primary-dns"), 1);
    assert_int_equal(api_calls(x, "get", NULL), 0);
}

#define USER_RNDC_B64 "dXNlcidzIG93biBybmRjIGtleSwgbm90IGJpbmR5J3MhIQ=="

typedef struct {
    fx_t *x;
    const char *want; /* a substring of the problem; NULL: no problem */
} problem_wait_t;

/* The secondary applied and no call in flight (the primary waits, marked) */
static bool secondary_done(void *arg)
{
    fx_t *x = arg;
    wla_stats_t st;
    wla_stats(x->w, &st);
    return secondary_applied(x) && st.inflight == 0;
}

static bool problem_is(void *arg)
{
    problem_wait_t *p = arg;
    const char *m = wla_problem(p->x->w, NS "/primary-dns", NULL);
    return p->want == NULL ? m == NULL : (m != NULL && strstr(m, p->want) != NULL);
}

/* spec.rndcKey.secretRef: the instance waits (Ready=False material: a reason naming the
 * Secret and its key) while the Secret or key is missing, the others do not; once it is
 * there, its key is what keys.conf holds and what bindy would use. */
static void test_rndc_secret_ref(void **state)
{
    fx_t *x = *state;
    json_t *o = json_deep_copy(json_array_get(x->insts, 0));
    json_object_set_new(json_object_get(o, "spec"), "rndcKey",
                        json_pack("{s:{s:s, s:s}, s:s}", "secretRef", "name", "my-rndc", "key", "rndc.key",
                                  "algorithm", "hmac-sha256"));
    feed(x, JNL_MODIFIED, o);
    json_decref(o);
    assert_int_equal(wla_mark_all(x->w, x->p), BD_OK);
    assert_int_equal(wla_sync(x->w, x->p), BD_OK);
    problem_wait_t pw = {x, "not found"};
    assert_true(kfx_run_until(x->f.loop, problem_is, &pw, 10.0));
    assert_true(kfx_run_until(x->f.loop, secondary_done, x, 10.0));
    const char *reason = NULL;
    const char *msg = wla_problem(x->w, NS "/primary-dns", &reason);
    assert_string_equal(reason, "RndcKeyUnavailable");
    assert_non_null(strstr(msg, "Secret " NS "/my-rndc"));
    assert_non_null(strstr(msg, "\"rndc.key\""));
    assert_null(wla_problem(x->w, NS "/secondary-dns", NULL));
    assert_int_equal(x->problems, 1);
    /* nothing of the primary is applied meanwhile; the secondary is */
    assert_null(get_obj(x, "apps", "deployments", "primary-dns"));
    assert_workloads(x, "secondary-dns", true);
    char *k = NULL;
    assert_int_equal(wla_rndc_key(x->w, NS "/primary-dns", &k), BD_ENOTFOUND);

    /* the Secret, without the key */
    bd_err_t err;
    if (bd_apiserver_create(x->f.as,
                            "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"my-rndc\","
                            "\"namespace\":\"" NS "\"},\"data\":{\"other\":\"eA==\"}}",
                            &err) != 0)
        fail_msg("create Secret: %s", err.msg);
    pw.want = "has no key \"rndc.key\"";
    assert_true(kfx_run_until(x->f.loop, problem_is, &pw, 15.0));
    assert_int_equal(x->problems, 2);
    /* ...then with it (as `kubectl create secret --from-file` stores it, newline and all) */
    const char *text = USER_RNDC_B64 "\n";
    unsigned char enc[256];
    EVP_EncodeBlock(enc, (const unsigned char *)text, (int)strlen(text));
    char body[320];
    snprintf(body, sizeof(body), "{\"data\":{\"rndc.key\":\"%s\"}}", (const char *)enc);
    assert_int_equal(kfx_http(&x->f, "PATCH", "/api/v1/namespaces/" NS "/secrets/my-rndc",
                              "application/merge-patch+json", body),
                     200);
    pw.want = NULL;
    assert_true(kfx_run_until(x->f.loop, problem_is, &pw, 15.0));
    run_idle(x);
    assert_int_equal(x->problems, 3);
    assert_workloads(x, "primary-dns", true);
    /* keys.conf and the key bindy reads back hold the user's key, not the generated one */
    json_t *sec = get_obj(x, "", "secrets", "primary-dns-keys");
    assert_non_null(sec);
    const char *kc = json_string_value(json_object_get(json_object_get(sec, "data"), "keys.conf"));
    assert_non_null(kc);
    unsigned char conf[2048];
    assert_true(strlen(kc) < sizeof(conf) * 3 / 4);
    assert_true(EVP_DecodeBlock(conf, (const unsigned char *)kc, (int)strlen(kc)) > 0);
    assert_non_null(strstr((const char *)conf, "secret \"" USER_RNDC_B64 "\";"));
    char *used = rndc_secret(x, "primary-dns");
    assert_string_equal(used, USER_RNDC_B64);
    json_decref(sec);
    assert_int_equal(wla_rndc_key(x->w, NS "/primary-dns", &k), BD_OK);
    assert_string_equal(k, USER_RNDC_B64);
    free(k);
    assert_int_equal(wla_rndc_key(x->w, NS "/secondary-dns", &k), BD_OK);
    assert_string_not_equal(k, USER_RNDC_B64);
    free(k);
    free(used);
}

static void test_args(void **state)
{
    (void)state;
    wla_t *w = (wla_t *)1;
    wla_opts_t o;
    wla_opts_init(&o);
    bd_err_t err;
    assert_int_equal(wla_new(NULL, &o, &w, &err), BD_EINVAL);
    assert_null(w);
    wla_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test_setup_teardown(test_create_then_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secondary_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_switch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rndc_secret_ref, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
