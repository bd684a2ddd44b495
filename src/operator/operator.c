#include "operator.h"

#include <ev.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "applier.h"
#include "apply.h"
#include "client.h"
#include "finalizer.h"
#include "fs.h"
#include "hmap.h"
#include "keys.h"
#include "kube.h"
#include "leader.h"
#include "log.h"
#include "obs.h"
#include "readiness.h"
#include "reflector.h"
#include "render.h"
#include "server.h"
#include "status.h"

/* The label the leader puts on its own pod; the hidden-primary Service selects it. */
#define OP_LEADER_LABEL "bindy.firestoned.io/hidden-primary"
/* The Secret (in the pod's namespace) holding the transfer and rndc keys every replica
 * uses: BIND servers keep pulling with the same key whichever replica leads. */
#define OP_KEYS_SECRET "bindy-keys"

typedef struct op {
    struct ev_loop *loop;
    op_opts_t o;
    char *journal_dir;
    char *pod_ns;            /* this replica's pod: lec.identity in POD_NAMESPACE */
    jnl_t *j;
    proj_t *p;
    bind_zonedb_t *db;
    bind_server_t *srv;
    app_t *app;
    bind_server_key_t xfr;
    char xfr_b64[BIND_KEY_B64_MAX], rndc_b64[BIND_KEY_B64_MAX];
    k8s_config_t *cfg;
    k8s_client_t *kc;
    /* The elector's own client, as kube-controller-manager gives leader election its own:
     * a burst of status writes must never hold a Lease renewal back in the shared token
     * bucket past the renew deadline (the leader would step down under load). */
    k8s_client_t *le_kc;
    ksrc_t *src;
    kst_t *kst;
    fin_t *fin;
    wla_t *wla;                        /* NULL until the shared keys are known */
    rdy_t *rdy;                        /* BIND pods' readiness gate (leader only) */
    k8s_refl_t *deps;                  /* bindy's Deployments: ready replicas for statuses */
    k8s_refl_t *sts;                   /* and its StatefulSets (claims per pod) */
    bd_hmap_t *ready;                  /* "Kind/ns/name" -> (intptr_t) readyReplicas + 1 */
    le_config_t lec;
    le_t *le;
    obs_t *obs;
    obs_series_t *m[OBS_METRIC_COUNT]; /* unlabelled operator metrics */
    obs_series_t *m_apply_hp;          /* bindy_apply_operations_total{target="hidden-primary"} */
    obs_series_t *m_apply_hp_err;      /* bindy_apply_errors_total{target="hidden-primary"} */
    obs_series_t *m_apply_st, *m_apply_st_err; /* the same for target="status" */
    obs_series_t *m_apply_wl, *m_apply_wl_err; /* and target="kubernetes" (workloads) */
    kst_stats_t last_kst;
    wla_stats_t last_wla;
    uint64_t committed;                /* the journal's last committed seq, as last reported */
    k8s_client_stats_t last_kc, last_le_kc; /* counters already added to the metrics */
    ksrc_stats_t last_src;
    k8s_call_t *label_call;            /* the label patch in flight */
    k8s_call_t *keys_call;             /* the keys Secret read or create in flight */
    ev_timer keys_retry;
    bool label_want, label_sent;
    bool stopping;
    double event_t0;                   /* when the event being applied started (reconcile) */
    ev_signal sigint, sigterm;
    ev_timer tick, stop_timer;
} op_t;

/* ---- journal -> projector -> hidden primary ------------------------------------------- */

static void on_applied(void *arg, const jnl_event_t *ev, const proj_changes_t *ch)
{
    op_t *op = arg;
    double t = ev_time();
    obs_hist_observe(op->m[OBS_RECONCILE_DURATION], t - op->event_t0);
    op->event_t0 = t;
    obs_counter_add(op->m_apply_hp, ch->nzones);
    if (kst_observe(op->kst, ev) != BD_OK || kst_mark_changes(op->kst, ev, ch) != BD_OK)
        bd_error("status: out of memory");
    if (fin_observe(op->fin, ev) != BD_OK)
        bd_error("finalizers: out of memory");
    if (rdy_mark_changes(op->rdy, op->p, ch) != BD_OK)
        bd_error("readiness: out of memory");
    for (size_t i = 0; op->wla && i < ch->instances.n; i++)
        if (wla_mark(op->wla, ch->instances.v[i]) != BD_OK)
            bd_error("workloads: cannot mark %s", ch->instances.v[i]);
    for (size_t i = 0; i < ch->nzones; i++) {
        const proj_zone_change_t *c = &ch->zones[i];
        bd_debug("%s %s/%s %s: zone %s%s serial %u", ev->kind, ev->ns, ev->name, jnl_type_name(ev->type),
                 c->zone, c->deleted ? " deleted," : "", c->serial);
    }
}

/* Started from the projector's checkpoint: the status writer and the finalizers learn
 * every object as a replay would have shown them, then everything is re-evaluated. */
static void on_restored(void *arg, const jnl_state_t *st, const proj_changes_t *ch)
{
    op_t *op = arg;
    for (size_t i = 0; st != NULL && i < jnl_state_count(st); i++)
        if (kst_observe(op->kst, jnl_state_get(st, i)) != BD_OK || fin_observe(op->fin, jnl_state_get(st, i)) != BD_OK)
            bd_error("status/finalizers: out of memory");
    if (kst_mark_changes(op->kst, NULL, ch) != BD_OK)
        bd_error("status: out of memory");
    if (rdy_mark_changes(op->rdy, op->p, ch) != BD_OK)
        bd_error("readiness: out of memory");
    for (size_t i = 0; op->wla && i < ch->instances.n; i++)
        if (wla_mark(op->wla, ch->instances.v[i]) != BD_OK)
            bd_error("workloads: cannot mark %s", ch->instances.v[i]);
}

static void on_commit(jnl_t *j, uint64_t committed, int status, void *arg)
{
    op_t *op = arg;
    if (status != BD_OK) {
        bd_error("journal %s: commit failed: %s", op->journal_dir, bd_strerror(status));
        return;
    }
    size_t n = 0;
    bd_err_t err;
    /* commit latency: from the append of the batch's first event (its record time) to
     * this report; both wall-clock, read outside the projection */
    jnl_record_t *first = NULL;
    if (committed > op->committed && jnl_get(j, op->committed + 1, JNL_DECODE_NO_OBJECT, &first, &err) == BD_OK) {
        double now_ns = ev_time() * 1e9;
        if (now_ns > (double)first->ev.time_ns)
            obs_hist_observe(op->m[OBS_JOURNAL_COMMIT_LATENCY], (now_ns - (double)first->ev.time_ns) / 1e9);
        jnl_record_free(first);
    }
    op->committed = committed;
    /* fencing: a leader whose lease may have lapsed (local deadline passed, transitions
     * changed) stops serving and notifying before it applies anything, even if the
     * elector's own timer has not fired yet */
    if (bind_server_serving(op->srv) && !le_fence_ok(op->le)) {
        bd_warn("lease %s: no longer sure to hold it; the hidden primary stops serving", op->lec.lease_name);
        bind_server_set_serving(op->srv, false);
    }
    op->event_t0 = ev_time();
    bool applied = app_catch_up(op->app, &n, &err) == BD_OK;
    if (!applied) {
        obs_counter_inc(op->m_apply_hp_err);
        bd_error("apply: %s", err.msg);
    }
    obs_gauge_set(op->m[OBS_JOURNAL_LAST_SEQ], (double)committed);
    kst_flush(op->kst); /* writes only on the leader, only what differs */
    /* a finalizer goes only once its object's deletion is in the hidden primary */
    fin_flush(op->fin, applied ? proj_seq(op->p) : 0);
    wla_sync(op->wla, op->p);
    rdy_sync(op->rdy, op->p); /* pods are verified against the new serials */
    if (n > 0)
        bd_debug("applied %zu events (journal at seq %llu)", n, (unsigned long long)committed);
}

/* ---- the leader label on our own pod --------------------------------------------------- */

static const k8s_res_t pods_res = {"", "v1", "pods", "Pod", true};

/* One label patch in flight at a time, so a quick lead-then-lose cannot land out of order;
 * when it completes, the latest wish is sent if it differs. The first patch (clearing the
 * label at start) gates le_start, so it can never overtake a leader's "true". */
static void send_label(op_t *op);
static void start_election(op_t *op);

static void on_label_done(void *arg, const k8s_resp_t *r)
{
    op_t *op = arg;
    op->label_call = NULL;
    if (r->code == BD_ENOTFOUND)
        bd_debug("pod %s/%s not found: not running in a pod, no leader label", op->pod_ns, op->lec.identity);
    else if (r->code != BD_OK)
        bd_warn("pod %s/%s: cannot set the label %s: %s", op->pod_ns, op->lec.identity, OP_LEADER_LABEL, r->message);
    if (op->le == NULL && !op->stopping)
        start_election(op);
    else if (op->label_sent != op->label_want)
        send_label(op);
}

static void send_label(op_t *op)
{
    if (op->label_call != NULL)
        return;
    op->label_sent = op->label_want;
    json_t *patch = json_pack("{s:{s:{s:o}}}", "metadata", "labels", OP_LEADER_LABEL,
                              op->label_want ? json_string("true") : json_null());
    if (patch == NULL || k8s_merge_patch(op->kc, &pods_res, op->pod_ns, op->lec.identity, NULL, patch,
                                         on_label_done, op, &op->label_call) != BD_OK)
        bd_warn("pod %s/%s: cannot patch the label %s", op->pod_ns, op->lec.identity, OP_LEADER_LABEL);
    json_decref(patch);
}

static void set_leader_label(op_t *op, bool leader)
{
    op->label_want = leader;
    send_label(op);
}

/* ---- ready replicas of every instance, from its Deployment or StatefulSet -------------- */

/* Not journaled: a Deployment's readiness is an observation for statuses, not desired
 * state, so it never reaches the projector. Keyed by kind too: while an instance switches
 * between a Deployment and a StatefulSet both exist, and both pods serve. */
static void ready_put(op_t *op, json_t *dep, bool gone)
{
    const json_t *meta = json_object_get(dep, "metadata");
    const char *ns = json_string_value(json_object_get(meta, "namespace"));
    const char *name = json_string_value(json_object_get(meta, "name"));
    const char *kind = json_string_value(json_object_get(dep, "kind")); /* the reflector fills it in */
    char key[700], inst[640];
    if (ns == NULL || name == NULL || kind == NULL)
        return;
    snprintf(key, sizeof(key), "%s/%s/%s", kind, ns, name);
    intptr_t want = gone ? 0 : json_integer_value(json_object_get(json_object_get(dep, "status"), "readyReplicas")) + 1;
    if ((intptr_t)bd_hmap_get(op->ready, key) == want)
        return;
    if (want == 0)
        bd_hmap_del(op->ready, key);
    else if (bd_hmap_put(op->ready, key, (void *)want, NULL) != BD_OK)
        return;
    snprintf(inst, sizeof(inst), "Bind9Instance/%s/%s", ns, name);
    kst_mark(op->kst, inst);
    kst_flush(op->kst);
}

static void deps_item(void *arg, json_t *obj)
{
    ready_put(arg, obj, false);
}

static void deps_event(void *arg, const char *type, json_t *obj)
{
    ready_put(arg, obj, strcmp(type, "DELETED") == 0);
}

static void deps_nop(void *arg) {}
static void deps_nop_rv(void *arg, const char *rv) {}

static int32_t ready_replicas(void *arg, const char *ns, const char *name)
{
    op_t *op = arg;
    static const char *const kinds[] = {"Deployment", "StatefulSet"};
    int32_t sum = -1;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(*kinds); i++) {
        char key[700];
        snprintf(key, sizeof(key), "%s/%s/%s", kinds[i], ns, name);
        intptr_t v = (intptr_t)bd_hmap_get(op->ready, key);
        if (v > 0)
            sum = (sum < 0 ? 0 : sum) + (int32_t)(v - 1);
    }
    return sum;
}

/* ---- what the workload applier cannot do: the instance's Ready says why ---------------- */

static const char *instance_problem(void *arg, const char *ns, const char *name, const char **reason)
{
    op_t *op = arg;
    char key[600];
    snprintf(key, sizeof(key), "%s/%s", ns, name);
    return wla_problem(op->wla, key, reason); /* NULL wla (no keys yet): none */
}

static void on_instance_problem(void *arg, const char *key)
{
    op_t *op = arg;
    char inst[640];
    snprintf(inst, sizeof(inst), "Bind9Instance/%s", key);
    kst_mark(op->kst, inst);
    kst_flush(op->kst);
}

/* ---- the shared keys ------------------------------------------------------------------ */

/* Every replica must serve transfers with the same TSIG key. The first replica to start
 * creates the Secret from its generated keys; the others (and later restarts) adopt what
 * it holds. Creation is atomic on the API server, so concurrent starters converge. Only
 * then does this replica take part in the election: a leader always has the shared key. */
static const k8s_res_t secrets_res = {"", "v1", "secrets", "Secret", true};
static void keys_fetch(op_t *op);

static bool fence_ok(void *arg);

static void keys_ready(op_t *op)
{
    /* the workload applier writes the shared transfer key into every instance's keys */
    wla_opts_t wo;
    wla_opts_init(&wo);
    wo.operator_namespace = op->pod_ns;
    wo.xfr_secret_b64 = op->xfr_b64;
    wo.fence = fence_ok;
    wo.fence_arg = op;
    wo.event_instance = op->lec.identity; /* Events say which replica applied */
    wo.on_problem = on_instance_problem;
    wo.on_problem_arg = op;
    bd_err_t err;
    if (op->wla == NULL && wla_new(op->kc, &wo, &op->wla, &err) != BD_OK)
        bd_error("workloads: %s", err.msg);
    if (op->lec.identity[0]) {
        op->label_sent = true;
        set_leader_label(op, false); /* then start_election, once the label is cleared */
    } else {
        start_election(op);
    }
}

static void keys_later(op_t *op, const char *why)
{
    bd_warn("secret %s/%s: %s; retrying in 2 s", op->pod_ns, OP_KEYS_SECRET, why);
    ev_timer_set(&op->keys_retry, 2., 0.);
    ev_timer_start(op->loop, &op->keys_retry);
}

static void on_keys_created(void *arg, const k8s_resp_t *r)
{
    op_t *op = arg;
    op->keys_call = NULL;
    if (r->code == BD_OK) {
        bd_info("secret %s/%s: created with this replica's keys", op->pod_ns, OP_KEYS_SECRET);
        keys_ready(op);
    } else if (r->code == BD_EEXISTS) {
        keys_fetch(op); /* another replica was first: adopt its keys */
    } else {
        keys_later(op, r->message);
    }
}

static void on_keys_read(void *arg, const k8s_resp_t *r)
{
    op_t *op = arg;
    op->keys_call = NULL;
    if (r->code == BD_ENOTFOUND) {
        json_t *sec = json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:{s:s,s:s}}", "apiVersion", "v1", "kind", "Secret",
                                "metadata", "name", OP_KEYS_SECRET, "namespace", op->pod_ns, "type", "Opaque", "data",
                                "xfr", op->xfr_b64, "rndc", op->rndc_b64);
        if (sec == NULL || k8s_create(op->kc, &secrets_res, op->pod_ns, sec, on_keys_created, op, &op->keys_call) != BD_OK)
            keys_later(op, "cannot create it");
        json_decref(sec);
        return;
    }
    if (r->code != BD_OK) {
        keys_later(op, r->message);
        return;
    }
    const json_t *data = json_object_get(r->body, "data");
    const char *xfr = json_string_value(json_object_get(data, "xfr"));
    const char *rndc = json_string_value(json_object_get(data, "rndc"));
    bind_server_key_t key;
    if (xfr == NULL || rndc == NULL || strlen(xfr) >= BIND_KEY_B64_MAX || strlen(rndc) >= BIND_KEY_B64_MAX ||
        bind_server_key_from_b64(&key, BIND_XFR_KEY_NAME, BIND_SERVER_HMAC_SHA256, xfr) != BD_OK) {
        keys_later(op, "data.xfr and data.rndc must hold base64 HMAC-SHA256 secrets");
        return;
    }
    if (strcmp(xfr, op->xfr_b64) != 0) {
        bind_server_set_key(op->srv, &key);
        bind_server_key_wipe(&op->xfr);
        op->xfr = key;
        snprintf(op->xfr_b64, sizeof(op->xfr_b64), "%s", xfr);
        snprintf(op->rndc_b64, sizeof(op->rndc_b64), "%s", rndc);
        bd_info("secret %s/%s: using the shared transfer and rndc keys", op->pod_ns, OP_KEYS_SECRET);
    } else {
        bind_server_key_wipe(&key);
    }
    keys_ready(op);
}

static void keys_fetch(op_t *op)
{
    if (k8s_get(op->kc, &secrets_res, op->pod_ns, OP_KEYS_SECRET, on_keys_read, op, &op->keys_call) != BD_OK)
        keys_later(op, "cannot read it");
}

static void on_keys_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    keys_fetch(w->data);
}

/* ---- leadership ------------------------------------------------------------------------ */

static void leading(op_t *op, bool on)
{
    /* only the leader is the hidden primary: standbys refuse transfers */
    bind_server_set_serving(op->srv, on);
    obs_gauge_set(op->m[OBS_LEADER], on ? 1 : 0);
    obs_counter_inc(op->m[OBS_LEADER_TRANSITIONS]);
    if (op->lec.identity[0])
        set_leader_label(op, on);
}

static bool fence_ok(void *arg)
{
    op_t *op = arg;
    return le_fence_ok(op->le);
}

/* Continuity at takeover: servers publish a serial our projection has not reached (the
 * predecessor journaled more versions). The status writer puts it into the DNSZone's
 * status.serial; through every replica's journal it becomes the projector's floor. */
static void on_served_above(void *arg, const char *zone, uint32_t serial, uint32_t projected)
{
    op_t *op = arg;
    bd_info("zone %s: servers publish serial %u, above the projection's %u; continuing above it", zone, serial,
            projected);
    if (kst_serial_floor(op->kst, zone, serial) != BD_OK)
        bd_error("status: out of memory");
    kst_flush(op->kst);
}

static void on_started_leading(void *arg)
{
    op_t *op = arg;
    leading(op, true);
    /* a new leader writes whatever status its predecessor left behind, and applies every
     * instance's workloads once (after that, only what changes) */
    kst_mark_all(op->kst);
    kst_flush(op->kst);
    fin_flush(op->fin, proj_seq(op->p)); /* add or release what the predecessor left */
    if (op->wla) {
        wla_mark_all(op->wla, op->p);
        wla_sync(op->wla, op->p);
    }
    bd_err_t err;
    if (rdy_start_leading(op->rdy, op->p, &err) != BD_OK)
        bd_error("readiness: %s", err.msg);
}

static void on_stopped_leading(void *arg)
{
    op_t *op = arg;
    leading(op, false);
    wla_reset(op->wla);
    rdy_stop_leading(op->rdy);
}

static void on_new_leader(void *arg, const char *identity)
{
    if (identity[0])
        bd_info("current leader: %s", identity);
}

/* ---- health, readiness and metrics (once a second) -------------------------------------- */

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    op_t *op = w->data;
    obs_heartbeat(op->obs);
    bool synced = op->src && ksrc_synced(op->src);
    obs_ready_set(op->obs, "watch", synced, synced ? NULL : "list+watch not caught up with the API server");

    ksrc_stats_t ss;
    if (op->src) {
        ksrc_stats(op->src, &ss);
        obs_counter_add(op->m[OBS_WATCH_EVENTS], ss.appended - op->last_src.appended);
        obs_counter_add(op->m[OBS_WATCH_RELISTS], ss.relists - op->last_src.relists);
        op->last_src = ss;
    }
    kst_stats_t kss;
    kst_stats(op->kst, &kss);
    obs_counter_add(op->m_apply_st, kss.writes - op->last_kst.writes);
    obs_counter_add(op->m_apply_st_err, kss.errors - op->last_kst.errors);
    op->last_kst = kss;
    wla_stats_t ws = {0};
    if (op->wla)
        wla_stats(op->wla, &ws);
    obs_counter_add(op->m_apply_wl, ws.applies + ws.deletes - op->last_wla.applies - op->last_wla.deletes);
    obs_counter_add(op->m_apply_wl_err, ws.errors - op->last_wla.errors);
    op->last_wla = ws;
    rdy_stats_t rs;
    rdy_stats(op->rdy, &rs);
    obs_gauge_set(op->m[OBS_BIND_PODS_READY], (double)rs.ready);
    obs_gauge_set(op->m[OBS_BIND_PODS_LAGGING], (double)rs.lagging);
    k8s_client_stats_t ks;
    k8s_client_stats(op->kc, &ks);
    obs_counter_add(op->m[OBS_KUBE_REQUESTS], ks.calls - op->last_kc.calls);
    obs_counter_add(op->m[OBS_KUBE_THROTTLED], ks.throttled + ks.rate_waits - op->last_kc.throttled - op->last_kc.rate_waits);
    op->last_kc = ks;
    k8s_client_stats(op->le_kc, &ks);
    obs_counter_add(op->m[OBS_KUBE_REQUESTS], ks.calls - op->last_le_kc.calls);
    obs_counter_add(op->m[OBS_KUBE_THROTTLED], ks.throttled + ks.rate_waits - op->last_le_kc.throttled -
                                                   op->last_le_kc.rate_waits);
    op->last_le_kc = ks;

    jnl_stats_t js;
    bd_err_t err;
    if (jnl_stats(op->j, &js, &err) == BD_OK) {
        obs_gauge_set(op->m[OBS_JOURNAL_SIZE_BYTES], (double)js.used_bytes);
        obs_gauge_set(op->m[OBS_JOURNAL_MAP_USED_RATIO],
                      js.map_limit ? (double)js.used_bytes / (double)js.map_limit : 0);
    }
}

/* ---- stopping ----------------------------------------------------------------------- */

static void on_released(void *arg, int code)
{
    op_t *op = arg;
    if (code != BD_OK)
        bd_warn("lease %s: not released (%s); it expires by itself", op->lec.lease_name, bd_strerror(code));
    ev_break(op->loop, EVBREAK_ALL);
}

static void on_stop_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    bd_warn("stopping took too long: exiting without waiting");
    ev_break(loop, EVBREAK_ALL);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    op_t *op = w->data;
    if (op->stopping) {
        bd_warn("second signal: stopping now");
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    op->stopping = true;
    bd_info("stopping");
    /* the watch stops first: nothing new to apply; what was in flight is done (applying
     * is synchronous on this loop), so the lease can go at once */
    ksrc_stop(op->src);
    op->src = NULL;
    ev_timer_start(loop, &op->stop_timer);
    if (op->le == NULL || le_release(op->le, 0, on_released, op) != BD_OK)
        ev_break(loop, EVBREAK_ALL);
}

static void start_election(op_t *op)
{
    le_hooks_t lh = {on_started_leading, on_stopped_leading, on_new_leader};
    bd_err_t err;
    if (le_start(op->loop, op->le_kc, &op->lec, &lh, op, &op->le, &err) != BD_OK) {
        bd_error("leader election: %s", err.msg);
        ev_break(op->loop, EVBREAK_ALL);
    }
}

int op_run(const op_opts_t *opts, bd_err_t *err)
{
    op_t op = {.loop = EV_DEFAULT, .o = *opts};
    int rc = BD_OK;
    char path[4096];

    if (op.o.address == NULL)
        op.o.address = "0.0.0.0";
    if (op.o.dns_port < 0)
        op.o.dns_port = 5353;
    ev_signal_init(&op.sigint, on_signal, SIGINT);
    ev_signal_init(&op.sigterm, on_signal, SIGTERM);
    ev_timer_init(&op.tick, on_tick, 0., 1.);
    ev_timer_init(&op.stop_timer, on_stop_timeout, 15., 0.);
    ev_timer_init(&op.keys_retry, on_keys_retry, 2., 0.);
    op.sigint.data = op.sigterm.data = op.tick.data = op.stop_timer.data = op.keys_retry.data = &op;

    /* configuration first: a bad variable is reported before anything starts */
    if ((rc = le_config_from_env(&op.lec, err)) != BD_OK)
        goto out;
    obs_opts_t oo;
    obs_opts_init(&oo);
    if ((rc = obs_opts_from_env(&oo, err)) != BD_OK || (rc = obs_new(&oo, &op.obs, err)) != BD_OK)
        goto out;
    for (int i = 0; i < OBS_METRIC_COUNT; i++)
        op.m[i] = obs_metric(op.obs, (obs_metric_t)i);
    op.m_apply_hp = obs_metric_for(op.obs, OBS_APPLY_OPERATIONS, "hidden-primary");
    op.m_apply_hp_err = obs_metric_for(op.obs, OBS_APPLY_ERRORS, "hidden-primary");
    op.m_apply_st = obs_metric_for(op.obs, OBS_APPLY_OPERATIONS, "status");
    op.m_apply_st_err = obs_metric_for(op.obs, OBS_APPLY_ERRORS, "status");
    op.m_apply_wl = obs_metric_for(op.obs, OBS_APPLY_OPERATIONS, "kubernetes");
    op.m_apply_wl_err = obs_metric_for(op.obs, OBS_APPLY_ERRORS, "kubernetes");
    obs_ready_set(op.obs, "journal", false, "not open");
    obs_ready_set(op.obs, "watch", false, "not started");
    if ((rc = obs_start(op.obs, err)) != BD_OK)
        goto out;

    if ((rc = bd_mkdirs(op.o.state_dir, 0750, err)) != BD_OK)
        goto out;
    snprintf(path, sizeof(path), "%s/keys", op.o.state_dir);
    if ((rc = bind_keys_load(path, &op.xfr, op.xfr_b64, op.rndc_b64, err)) != BD_OK)
        goto out;
    if (asprintf(&op.journal_dir, "%s/journal", op.o.state_dir) < 0) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto out;
    }

    /* the cluster first: a missing configuration is the likeliest mistake */
    if ((rc = k8s_config_load(opts->context, &op.cfg, err)) != BD_OK)
        goto out;
    const char *pod_ns = getenv("POD_NAMESPACE");
    if ((op.pod_ns = strdup(pod_ns && pod_ns[0] ? pod_ns : op.cfg->ns ? op.cfg->ns : "default")) == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto out;
    }

    k8s_client_opts_t ko;
    k8s_client_opts_init(&ko);
    char ua[300];
    /* the pod in the user agent: the API server's audit log then says which replica wrote */
    snprintf(ua, sizeof(ua), "bindy/%s (%s)", BINDY_VERSION, op.lec.identity[0] ? op.lec.identity : "unknown");
    ko.user_agent = ua;
    if ((rc = k8s_client_new(op.loop, op.cfg, &ko, &op.kc, err)) != BD_OK ||
        (rc = k8s_client_new(op.loop, op.cfg, &ko, &op.le_kc, err)) != BD_OK)
        goto out;

    jnl_opts_t jo;
    jnl_opts_init(&jo);
    jo.flags = JNL_OPEN_CREATE;
    if ((rc = jnl_open(op.journal_dir, &jo, &op.j, err)) != BD_OK || (rc = proj_new(NULL, &op.p, err)) != BD_OK)
        goto out;
    /* statuses: every replica observes what the API server holds (the replay included),
     * only the leader writes what differs */
    kst_opts_t kso;
    kst_opts_init(&kso);
    kso.fence = fence_ok;
    kso.fence_arg = &op;
    kso.instance = op.lec.identity;
    kso.ready_replicas = ready_replicas;
    kso.ready_replicas_arg = &op;
    kso.instance_problem = instance_problem;
    kso.instance_problem_arg = &op;
    if ((rc = kst_new(op.kc, op.p, &kso, &op.kst, err)) != BD_OK)
        goto out;
    fin_opts_t fo;
    fin_opts_init(&fo);
    fo.fence = fence_ok;
    fo.fence_arg = &op;
    if ((rc = fin_new(op.kc, &fo, &op.fin, err)) != BD_OK)
        goto out;
    if ((rc = bind_zonedb_new(&op.db, NULL)) != BD_OK) {
        bd_err_set(err, rc, "zone store: %s", bd_strerror(rc));
        goto out;
    }
    /* standbys refuse transfers: only the leader is the hidden primary */
    bind_server_config_t sc = {.address = op.o.address, .port = (uint16_t)op.o.dns_port, .xfr_key = &op.xfr, .serving = false};
    if ((rc = bind_server_new(&op.srv, op.loop, op.db, &sc, err)) != BD_OK)
        goto out;
    /* the readiness gate of BIND pods: NOTIFYs to laggards go through the hidden primary */
    rdy_opts_t ro;
    rdy_opts_init(&ro);
    ro.fence = fence_ok;
    ro.fence_arg = &op;
    ro.srv = op.srv;
    ro.served_above = on_served_above;
    ro.served_above_arg = &op;
    if ((rc = rdy_new(op.kc, &ro, &op.rdy, err)) != BD_OK)
        goto out;
    app_hooks_t hooks = {on_applied, on_restored, true};
    if ((rc = app_new(op.j, op.p, op.db, &hooks, &op, &op.app, err)) != BD_OK)
        goto out;
    size_t replayed = 0;
    op.event_t0 = ev_time();
    if ((rc = app_catch_up(op.app, &replayed, err)) != BD_OK)
        goto out;
    if (replayed)
        bd_info("replayed %zu journal events from %s", replayed, op.journal_dir);
    if ((rc = jnl_bounds(op.j, NULL, &op.committed, err)) != BD_OK)
        goto out;
    obs_ready_set(op.obs, "journal", true, NULL);
    if ((rc = jnl_set_commit_cb(op.j, op.loop, on_commit, &op)) != BD_OK) {
        bd_err_set(err, rc, "journal %s: cannot watch commits", op.journal_dir);
        goto out;
    }

    bd_info("API server %s (%s); hidden primary on %s:%u; journal %s; health on port %u", op.cfg->server,
            op.cfg->origin, op.o.address, bind_server_port(op.srv), op.journal_dir, obs_port(op.obs));
    /* the shared keys, then (whoever led before, it is not us now) clear our pod's label,
     * then elect */
    keys_fetch(&op);

    ksrc_opts_t so;
    if ((rc = ksrc_opts_from_env(&so, err)) != BD_OK || (rc = ksrc_start(op.kc, op.j, &so, &op.src, err)) != BD_OK)
        goto out;
    k8s_refl_opts_t dro = {.res = {"apps", "v1", "deployments", "Deployment", true},
                           .label_selector = "app.kubernetes.io/managed-by=bindy"};
    k8s_refl_hooks_t drh = {deps_nop, deps_item, deps_nop_rv, deps_event, deps_nop_rv, NULL};
    if ((op.ready = bd_hmap_new()) == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = k8s_refl_start(op.kc, &dro, &drh, &op, &op.deps, err)) != BD_OK)
        goto out;
    k8s_refl_opts_t sro = dro;
    sro.res = (k8s_res_t){"apps", "v1", "statefulsets", "StatefulSet", true};
    if ((rc = k8s_refl_start(op.kc, &sro, &drh, &op, &op.sts, err)) != BD_OK)
        goto out;

    ev_signal_start(op.loop, &op.sigint);
    ev_signal_start(op.loop, &op.sigterm);
    ev_timer_start(op.loop, &op.tick);
    ev_run(op.loop, 0);
    bd_info("stopped");
    app_checkpoint(op.app, true, NULL); /* the next start replays nothing (logged) */
out:
    ev_signal_stop(op.loop, &op.sigint);
    ev_signal_stop(op.loop, &op.sigterm);
    ev_timer_stop(op.loop, &op.tick);
    ev_timer_stop(op.loop, &op.stop_timer);
    ev_timer_stop(op.loop, &op.keys_retry);
    le_free(op.le);
    k8s_call_cancel(op.label_call);
    k8s_call_cancel(op.keys_call);
    ksrc_stop(op.src);
    k8s_refl_stop(op.deps);
    k8s_refl_stop(op.sts);
    bd_hmap_free(op.ready);
    kst_free(op.kst);
    fin_free(op.fin);
    wla_free(op.wla);
    rdy_free(op.rdy);
    k8s_client_free(op.kc);
    k8s_client_free(op.le_kc);
    if (op.j) {
        bd_err_t ferr;
        if (jnl_flush(op.j, &ferr) != BD_OK)
            bd_error("journal %s: %s", op.journal_dir, ferr.msg);
    }
    app_free(op.app);
    bind_server_free(op.srv);
    bind_zonedb_free(op.db);
    proj_free(op.p);
    jnl_close(op.j);
    k8s_config_free(op.cfg);
    obs_free(op.obs);
    bind_server_key_wipe(&op.xfr);
    free(op.journal_dir);
    free(op.pod_ns);
    return rc;
}
