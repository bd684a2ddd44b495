#include "leader.h"
#include "clock.h"

#include <ev.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"

static const k8s_res_t lease_res = {"coordination.k8s.io", "v1", "leases", "Lease", true};

/* ---- configuration --------------------------------------------------------------------- */

#define LE_MAX_SECONDS 86400u

void le_config_init(le_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->enabled = true;
    snprintf(c->lease_name, sizeof(c->lease_name), "%s", "bindy-leader");
    snprintf(c->lease_namespace, sizeof(c->lease_namespace), "%s", "dns-system");
    c->lease_duration_ms = 15000;
    c->renew_deadline_ms = 10000;
    c->retry_period_ms = 2000;
}

/* The environment names used in messages; from_env puts the spelling it read. */
typedef struct le_names {
    char enabled[64], name[64], ns[64], identity[64], duration[64], deadline[64], retry[64];
} le_names_t;

static void names_default(le_names_t *n)
{
    snprintf(n->enabled, sizeof(n->enabled), "ENABLE_LEADER_ELECTION");
    snprintf(n->name, sizeof(n->name), "LEASE_NAME");
    snprintf(n->ns, sizeof(n->ns), "LEASE_NAMESPACE");
    snprintf(n->identity, sizeof(n->identity), "POD_NAME");
    snprintf(n->duration, sizeof(n->duration), "LEASE_DURATION_SECONDS");
    snprintf(n->deadline, sizeof(n->deadline), "LEASE_RENEW_DEADLINE_SECONDS");
    snprintf(n->retry, sizeof(n->retry), "LEASE_RETRY_PERIOD_SECONDS");
}

static bool is_alnum_lower(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

/* RFC 1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most max octets. */
static bool dns_label_ok(const char *s, size_t len)
{
    if (len == 0 || len > 63 || !is_alnum_lower(s[0]) || !is_alnum_lower(s[len - 1]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_alnum_lower(s[i]) && s[i] != '-')
            return false;
    return true;
}

/* RFC 1123 subdomain: labels separated by '.', at most 253 octets. */
static bool dns_subdomain_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > LE_NAME_MAX)
        return false;
    const char *p = s;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (!dns_label_ok(p, l))
            return false;
        if (!dot)
            return true;
        p = dot + 1;
    }
}

static int check_names(const le_config_t *c, const le_names_t *n, bd_err_t *err)
{
    if (!dns_subdomain_ok(c->lease_name))
        return bd_err_set(err, BD_EINVAL,
                          "%s=\"%s\": not a valid Lease name (lower-case letters, digits, '-' and "
                          "'.', at most 253 characters, starting and ending with a letter or digit)",
                          n->name, c->lease_name);
    if (!dns_label_ok(c->lease_namespace, strlen(c->lease_namespace)))
        return bd_err_set(err, BD_EINVAL,
                          "%s=\"%s\": not a valid namespace (lower-case letters, digits and '-', "
                          "at most 63 characters, starting and ending with a letter or digit)",
                          n->ns, c->lease_namespace);
    if (c->enabled && c->identity[0] == '\0')
        return bd_err_set(err, BD_EINVAL,
                          "%s is empty and HOSTNAME is not set: leader election needs a unique "
                          "identity per replica", n->identity);
    if (c->lease_duration_ms == 0)
        return bd_err_set(err, BD_EINVAL, "%s must be greater than 0", n->duration);
    if (c->renew_deadline_ms == 0)
        return bd_err_set(err, BD_EINVAL, "%s must be greater than 0", n->deadline);
    if (c->retry_period_ms == 0)
        return bd_err_set(err, BD_EINVAL, "%s must be greater than 0", n->retry);
    if (c->lease_duration_ms <= c->renew_deadline_ms)
        return bd_err_set(err, BD_EINVAL,
                          "%s (%.3g s) must be greater than %s (%.3g s)", n->duration,
                          c->lease_duration_ms / 1000.0, n->deadline, c->renew_deadline_ms / 1000.0);
    /* client-go: renewDeadline must be greater than retryPeriod*JitterFactor (1.2) */
    if ((uint64_t)c->renew_deadline_ms * 10 <= (uint64_t)c->retry_period_ms * 12)
        return bd_err_set(err, BD_EINVAL,
                          "%s (%.3g s) must be greater than 1.2 x %s (%.3g s)", n->deadline,
                          c->renew_deadline_ms / 1000.0, n->retry, c->retry_period_ms / 1000.0);
    return BD_OK;
}

int le_config_check(const le_config_t *c, bd_err_t *err)
{
    le_names_t n;
    names_default(&n);
    bd_err_clear(err);
    return check_names(c, &n, err);
}

/* getenv of BINDY_<name>, else <name>; *used gets the spelling read. NULL when neither. */
static const char *env_get(const char *name, char *used, size_t usedsz)
{
    char pref[64];
    snprintf(pref, sizeof(pref), "BINDY_%s", name);
    const char *b = getenv(pref);
    const char *p = getenv(name);
    if (b && p && strcmp(b, p) != 0)
        bd_warn("both %s=\"%s\" and %s=\"%s\" are set: using %s", pref, b, name, p, pref);
    if (b) {
        snprintf(used, usedsz, "%s", pref);
        return b;
    }
    snprintf(used, usedsz, "%s", name);
    return p;
}

static int env_seconds(const char *name, char *used, size_t usedsz, unsigned *ms, bd_err_t *err)
{
    const char *v = env_get(name, used, usedsz);
    if (!v)
        return BD_OK;
    if (*v == '\0')
        return bd_err_set(err, BD_EINVAL, "%s is empty: expected whole seconds (1..%u)", used,
                          LE_MAX_SECONDS);
    if (v[0] == '-')
        return bd_err_set(err, BD_EINVAL, "%s=\"%s\": must be greater than 0", used, v);
    unsigned long n = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return bd_err_set(err, BD_EINVAL, "%s=\"%s\": not a number of whole seconds", used, v);
        if (n <= LE_MAX_SECONDS)
            n = n * 10 + (unsigned long)(*p - '0');
    }
    if (n == 0)
        return bd_err_set(err, BD_EINVAL, "%s=\"%s\": must be greater than 0", used, v);
    if (n > LE_MAX_SECONDS)
        return bd_err_set(err, BD_EINVAL, "%s=\"%s\": at most %u seconds", used, v, LE_MAX_SECONDS);
    *ms = (unsigned)n * 1000u;
    return BD_OK;
}

static int env_string(const char *name, char *used, size_t usedsz, char *dst, size_t dstsz,
                      bd_err_t *err)
{
    const char *v = env_get(name, used, usedsz);
    if (!v)
        return BD_OK;
    if (*v == '\0')
        return bd_err_set(err, BD_EINVAL, "%s is set but empty", used);
    if (strlen(v) >= dstsz)
        return bd_err_set(err, BD_EINVAL, "%s: longer than %zu characters", used, dstsz - 1);
    snprintf(dst, dstsz, "%s", v);
    return BD_OK;
}

int le_config_from_env(le_config_t *out, bd_err_t *err)
{
    le_config_t c;
    le_names_t n;
    int rc;
    le_config_init(&c);
    le_config_init(out);
    names_default(&n);
    bd_err_clear(err);

    const char *v = env_get("ENABLE_LEADER_ELECTION", n.enabled, sizeof(n.enabled));
    if (v) {
        if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0)
            c.enabled = true;
        else if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0)
            c.enabled = false;
        else
            return bd_err_set(err, BD_EINVAL, "%s=\"%s\": expected true or false", n.enabled, v);
    }
    if ((rc = env_string("LEASE_NAME", n.name, sizeof(n.name), c.lease_name, sizeof(c.lease_name),
                         err)) != BD_OK ||
        (rc = env_string("LEASE_NAMESPACE", n.ns, sizeof(n.ns), c.lease_namespace,
                         sizeof(c.lease_namespace), err)) != BD_OK ||
        (rc = env_seconds("LEASE_DURATION_SECONDS", n.duration, sizeof(n.duration),
                          &c.lease_duration_ms, err)) != BD_OK ||
        (rc = env_seconds("LEASE_RENEW_DEADLINE_SECONDS", n.deadline, sizeof(n.deadline),
                          &c.renew_deadline_ms, err)) != BD_OK ||
        (rc = env_seconds("LEASE_RETRY_PERIOD_SECONDS", n.retry, sizeof(n.retry),
                          &c.retry_period_ms, err)) != BD_OK)
        return rc;

    /* POD_NAME, else HOSTNAME (an empty POD_NAME counts as unset) */
    v = env_get("POD_NAME", n.identity, sizeof(n.identity));
    if (!v || *v == '\0') {
        v = getenv("HOSTNAME");
        if (v && *v)
            bd_debug("%s is not set: using HOSTNAME=%s as the leader election identity",
                     n.identity, v);
        else
            v = "";
    }
    if (strlen(v) > LE_NAME_MAX)
        return bd_err_set(err, BD_EINVAL, "%s: longer than %d characters", n.identity, LE_NAME_MAX);
    snprintf(c.identity, sizeof(c.identity), "%s", v);

    if ((rc = check_names(&c, &n, err)) != BD_OK)
        return rc;
    *out = c;
    return BD_OK;
}

/* ---- the elector --------------------------------------------------------------------- */

#define LE_HOLDER_MAX 255

/* The part of a Lease that is the election record. */
typedef struct le_rec {
    char holder[LE_HOLDER_MAX + 1];
    long long duration_s;
    long long transitions;
    char acquire[40];
    char renew[40];
} le_rec_t;

typedef enum { LE_IDLE, LE_STANDBY, LE_LEADER, LE_RELEASING, LE_RELEASED } le_state_t;

/* What the one request in flight is. */
typedef enum { OP_NONE, OP_GET, OP_CREATE, OP_UPDATE, OP_REL_GET, OP_REL_PUT } le_op_t;

/* Work deferred to the loop (the kick timer). */
enum { PEND_START = 1, PEND_RELEASE = 2, PEND_DONE = 4 };

struct le {
    struct ev_loop *loop;
    k8s_client_t *client;
    le_config_t cfg;
    le_hooks_t hooks;
    void *arg;
    char *coll_path;   /* .../namespaces/NS/leases, for the watch */
    char *watch_query;
    le_state_t state;

    /* what we know of the Lease */
    bool obs_known;    /* a GET, a watch event or our write told us */
    bool obs_present;  /* the Lease exists */
    le_rec_t obs;      /* its record (valid when obs_present) */
    double obs_time;   /* monotonic: when the record last changed as we saw it */
    uint64_t obs_rv;   /* its resourceVersion as a number; 0: unknown */
    json_t *obj;       /* the Lease as last read or written (for PUT), or NULL: read first */
    double other_until; /* monotonic: until when another holder may still believe it leads
                           (kept when the Lease is deleted under it); 0: nobody */
    char reported[LE_HOLDER_MAX + 1];
    bool reported_set;

    /* leading */
    long long granted;  /* leaseTransitions when we acquired */
    double last_renew;  /* monotonic: when the last successful write was sent */
    double write_sent;

    /* the one request in flight (GET or write), bounded by attempt_timer */
    k8s_call_t *call;
    le_op_t op;
    bool again;         /* attempt again as soon as the current one ends */
    unsigned fail_streak;

    k8s_call_t *watch;
    bool watch_started;
    double watch_since;
    ev_timer tick;      /* every RetryPeriod */
    ev_timer deadline;  /* leader: last_renew + RenewDeadline */
    ev_timer expiry;    /* standby: when the observed lease expires */
    ev_timer attempt_timer;
    ev_timer watch_timer; /* restart of a broken watch */
    ev_timer release_timer;
    ev_timer kick;
    unsigned pending;

    bool was_leader;    /* at le_release */
    bool release_reread; /* the release write met a 409 once and read again */
    le_done_cb done;
    void *done_arg;
    int done_code;

    le_stats_t st;
};

/* RFC 3339 MicroTime, UTC: 2025-11-30T12:34:56.123456Z */
static void micro_time(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    /* strftime then the microseconds: a bounded tm_year keeps -Wformat-truncation quiet */
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    if (k > 0 && n - k > 8)
        snprintf(buf + k, n - k, ".%06dZ", (int)(ts.tv_nsec / 1000L));
}

static double dur_s(unsigned ms) { return ms / 1000.0; }

/* leaseDurationSeconds we write: whole seconds, rounded up. */
static long long lease_seconds(const le_config_t *c)
{
    return (long long)((c->lease_duration_ms + 999u) / 1000u);
}

/* Arm a one-shot timer to fire after `after` seconds (from the real monotonic time). */
static void timer_in(le_t *le, ev_timer *t, double after)
{
    ev_timer_stop(le->loop, t);
    ev_now_update(le->loop);
    ev_timer_set(t, after > 0 ? after : 0, 0.);
    ev_timer_start(le->loop, t);
}

static void kick(le_t *le, unsigned what)
{
    le->pending |= what;
    if (!ev_is_active(&le->kick)) {
        ev_timer_set(&le->kick, 0., 0.);
        ev_timer_start(le->loop, &le->kick);
    }
}

static bool str_eq(const char *a, const char *b) { return strcmp(a, b) == 0; }

static void rec_parse(const json_t *obj, le_rec_t *r)
{
    memset(r, 0, sizeof(*r));
    const json_t *spec = json_object_get(obj, "spec");
    const char *s;
    if ((s = json_string_value(json_object_get(spec, "holderIdentity"))))
        snprintf(r->holder, sizeof(r->holder), "%s", s);
    if ((s = json_string_value(json_object_get(spec, "acquireTime"))))
        snprintf(r->acquire, sizeof(r->acquire), "%s", s);
    if ((s = json_string_value(json_object_get(spec, "renewTime"))))
        snprintf(r->renew, sizeof(r->renew), "%s", s);
    r->duration_s = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
    r->transitions = json_integer_value(json_object_get(spec, "leaseTransitions"));
}

static bool rec_equal(const le_rec_t *a, const le_rec_t *b)
{
    return str_eq(a->holder, b->holder) && a->duration_s == b->duration_s &&
           a->transitions == b->transitions && str_eq(a->acquire, b->acquire) &&
           str_eq(a->renew, b->renew);
}

/* metadata.resourceVersion as a number; 0 when absent or not a number (then no ordering). */
static uint64_t obj_rv(const json_t *obj)
{
    const char *s = json_string_value(json_object_get(json_object_get(obj, "metadata"),
                                                      "resourceVersion"));
    if (!s || !*s)
        return 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    return *end ? 0 : (uint64_t)v;
}

static bool obs_is_ours(const le_t *le)
{
    return le->obs_known && le->obs_present && str_eq(le->obs.holder, le->cfg.identity);
}

/* Seconds the observed lease stays valid for, from obs_time. */
static double obs_lease_s(const le_t *le)
{
    return le->obs.duration_s > 0 ? (double)le->obs.duration_s : dur_s(le->cfg.lease_duration_ms);
}

static void set_obj(le_t *le, const json_t *obj)
{
    json_decref(le->obj);
    le->obj = obj ? json_deep_copy(obj) : NULL;
}

static void report_holder(le_t *le)
{
    const char *h = le->obs_present ? le->obs.holder : "";
    if (le->reported_set && str_eq(le->reported, h))
        return;
    if (le->reported_set) {
        le->st.transitions_observed++;
        bd_info("%s/%s Lease: new leader %s", le->cfg.lease_namespace, le->cfg.lease_name,
                *h ? h : "(none: released)");
    } else {
        bd_debug("%s/%s Lease: held by %s", le->cfg.lease_namespace, le->cfg.lease_name,
                 *h ? h : "(nobody)");
    }
    le->reported_set = true;
    snprintf(le->reported, sizeof(le->reported), "%s", h);
    if (le->hooks.new_leader)
        le->hooks.new_leader(le->arg, h);
}

static void arm_expiry(le_t *le);

/*
 * Take in what the API server told us: obj (borrowed) or NULL for "absent". A watch event
 * older than what we have (by resourceVersion, e.g. behind our own write) is ignored and
 * false returned; a read or a write's answer is always taken (resourceVersions can go
 * back after an etcd restore, and a stale read only delays a takeover or ends a
 * leadership, both safe). May call new_leader: callers re-check the state afterwards.
 */
static bool observe(le_t *le, const json_t *obj, bool from_watch, uint64_t rv)
{
    if (from_watch && rv && le->obs_rv && rv < le->obs_rv)
        return false;
    if (rv)
        le->obs_rv = rv;
    if (obj) {
        le_rec_t r;
        rec_parse(obj, &r);
        if (!le->obs_known || !le->obs_present || !rec_equal(&r, &le->obs)) {
            le->obs = r;
            le->obs_time = bd_mono_s();
        }
        le->obs_present = true;
        le->other_until = r.holder[0] && !str_eq(r.holder, le->cfg.identity)
                              ? le->obs_time + obs_lease_s(le)
                              : 0;
        le->st.lease_transitions = r.transitions;
        set_obj(le, obj);
    } else {
        if (!le->obs_known || le->obs_present)
            le->obs_time = bd_mono_s();
        le->obs_present = false;
        memset(&le->obs, 0, sizeof(le->obs));
        set_obj(le, NULL);
    }
    le->obs_known = true;
    if (le->state == LE_STANDBY)
        arm_expiry(le);
    report_holder(le);
    return true;
}

/* ---- leading and losing ----------------------------------------------------------------- */

static void cancel_call(le_t *le)
{
    k8s_call_cancel(le->call);
    le->call = NULL;
    le->op = OP_NONE;
    ev_timer_stop(le->loop, &le->attempt_timer);
}

static void start_leading(le_t *le)
{
    le->state = LE_LEADER;
    le->granted = le->obs.transitions;
    le->st.acquisitions++;
    le->st.is_leader = true;
    le->fail_streak = 0;
    ev_timer_stop(le->loop, &le->expiry);
    timer_in(le, &le->deadline, le->last_renew + dur_s(le->cfg.renew_deadline_ms) - bd_mono_s());
    bd_info("Lease acquired, this instance is now the leader");
    bd_debug("%s/%s Lease: %s leads (leaseTransitions %lld)", le->cfg.lease_namespace,
             le->cfg.lease_name, le->cfg.identity, le->granted);
    bd_info("Starting all operators");
    if (le->hooks.started_leading)
        le->hooks.started_leading(le->arg);
}

/* Stop leading without le_release: the deadline passed or the lease is no longer ours. */
static void lose(le_t *le, const char *why)
{
    if (le->state != LE_LEADER)
        return;
    le->state = LE_STANDBY;
    le->st.is_leader = false;
    le->st.losses++;
    ev_timer_stop(le->loop, &le->deadline);
    if (le->call)
        cancel_call(le); /* a renewal still in flight must not count any more: drop it */
    set_obj(le, NULL);
    le->again = false;
    bd_warn("%s/%s Lease: %s", le->cfg.lease_namespace, le->cfg.lease_name, why);
    bd_warn("Leadership lost! Stopping all operators...");
    if (le->hooks.stopped_leading)
        le->hooks.stopped_leading(le->arg);
    if (le->state == LE_STANDBY) {
        bd_info("Attempting to acquire lease %s", le->cfg.lease_name);
        arm_expiry(le);
    }
}

/* ---- one attempt: (GET,) then create or replace ------------------------------------------ */

static void attempt(le_t *le, bool use_cache);
static void on_get(void *arg, const k8s_resp_t *r);
static void on_write(void *arg, const k8s_resp_t *r);

static void attempt_failed(le_t *le, const char *what, const k8s_resp_t *r)
{
    le->st.failures++;
    set_obj(le, NULL); /* read again on the next retry */
    le->fail_streak++;
    const char *msg = r ? r->message : "no answer";
    if (le->state != LE_LEADER && r && (r->code == BD_ECONFLICT || r->code == BD_EEXISTS)) {
        le->fail_streak = 0; /* another elector wrote first: a lost race, not a failure */
        bd_debug("%s/%s Lease: %s: another instance wrote first (%s)", le->cfg.lease_namespace,
                 le->cfg.lease_name, what, msg);
    } else if (le->state == LE_LEADER)
        bd_warn("%s/%s Lease: renewal failed (%s): %s", le->cfg.lease_namespace, le->cfg.lease_name,
                what, msg);
    else if (le->fail_streak == 1)
        bd_warn("%s/%s Lease: %s failed: %s (retrying every %.3g s)", le->cfg.lease_namespace,
                le->cfg.lease_name, what, msg, dur_s(le->cfg.retry_period_ms));
    else
        bd_debug("%s/%s Lease: %s failed: %s", le->cfg.lease_namespace, le->cfg.lease_name, what, msg);
}

static void watch_start(le_t *le);

/* The attempt ended (whatever the outcome); run the next one if one was asked for. */
static void attempt_end(le_t *le)
{
    le->op = OP_NONE;
    ev_timer_stop(le->loop, &le->attempt_timer);
    if (!le->watch_started && (le->state == LE_STANDBY || le->state == LE_LEADER)) {
        /* after the first read: a watch that has nothing to send yet must not hold up the
         * first read behind it (a client may wait for a connection that could multiplex) */
        le->watch_started = true;
        watch_start(le);
    }
    if (le->again && (le->state == LE_STANDBY || le->state == LE_LEADER)) {
        le->again = false;
        attempt(le, true);
    }
}

static json_t *lease_new(const le_t *le)
{
    return json_pack("{s:s,s:s,s:{s:s,s:s},s:{}}", "apiVersion", "coordination.k8s.io/v1", "kind",
                     "Lease", "metadata", "name", le->cfg.lease_name, "namespace",
                     le->cfg.lease_namespace, "spec");
}

/* Write our record into obj (owned). holder NULL: the release record. */
static int set_record(const le_t *le, json_t *obj, const char *holder, long long duration,
                      const char *acquire, const char *renew, long long transitions)
{
    json_t *spec = json_object_get(obj, "spec");
    if (!json_is_object(spec)) {
        spec = json_object();
        if (!spec || json_object_set_new(obj, "spec", spec) != 0)
            return BD_ENOMEM;
    }
    if (json_object_set_new(spec, "holderIdentity", json_string(holder ? holder : "")) ||
        json_object_set_new(spec, "leaseDurationSeconds", json_integer(duration)) ||
        json_object_set_new(spec, "acquireTime", json_string(acquire)) ||
        json_object_set_new(spec, "renewTime", json_string(renew)) ||
        json_object_set_new(spec, "leaseTransitions", json_integer(transitions)))
        return BD_ENOMEM;
    return BD_OK;
}

/* With what we know (le->obj or a known absence), write if the lease is ours to take. */
static void decide(le_t *le)
{
    double now = bd_mono_s();
    char ts[40];
    json_t *body = NULL;
    int rc;
    micro_time(ts, sizeof(ts));

    if (!le->obs_present) {
        if (le->state == LE_LEADER) {
            lose(le, "the Lease is gone");
            if (le->state != LE_STANDBY)
                return;
        }
        if (now < le->other_until) {
            /* deleted under a holder that may still lead until its lease runs out: creating
             * it now would make two leaders (client-go would); arm_expiry retries then */
            attempt_end(le);
            return;
        }
        body = lease_new(le);
        if (!body || set_record(le, body, le->cfg.identity, lease_seconds(&le->cfg), ts, ts, 0)) {
            json_decref(body);
            attempt_failed(le, "create", NULL);
            attempt_end(le);
            return;
        }
        le->op = OP_CREATE;
        le->write_sent = now;
        rc = k8s_create(le->client, &lease_res, le->cfg.lease_namespace, body, on_write, le, &le->call);
        json_decref(body);
        if (rc != BD_OK) {
            le->call = NULL;
            attempt_failed(le, "create", NULL);
            attempt_end(le);
        }
        return;
    }

    bool ours = str_eq(le->obs.holder, le->cfg.identity);
    if (le->state == LE_LEADER && (!ours || le->obs.transitions != le->granted)) {
        lose(le, "the Lease is held by another instance");
        attempt_end(le);
        return;
    }
    if (!ours && le->obs.holder[0] && now < le->obs_time + obs_lease_s(le)) {
        attempt_end(le); /* held by another, not expired */
        return;
    }
    if (!le->obj) {
        attempt_end(le);
        return;
    }
    body = json_deep_copy(le->obj);
    /* client-go: the holder keeps acquireTime and leaseTransitions; a new holder counts one */
    if (!body || set_record(le, body, le->cfg.identity, lease_seconds(&le->cfg),
                            ours && le->obs.acquire[0] ? le->obs.acquire : ts, ts,
                            ours ? le->obs.transitions : le->obs.transitions + 1)) {
        json_decref(body);
        attempt_failed(le, "update", NULL);
        attempt_end(le);
        return;
    }
    json_object_del(json_object_get(body, "metadata"), "managedFields");
    le->op = OP_UPDATE;
    le->write_sent = now;
    rc = k8s_replace(le->client, &lease_res, le->cfg.lease_namespace, le->cfg.lease_name, NULL, body,
                     on_write, le, &le->call);
    json_decref(body);
    if (rc != BD_OK) {
        le->call = NULL;
        attempt_failed(le, "update", NULL);
        attempt_end(le);
    }
}

static void attempt(le_t *le, bool use_cache)
{
    if (le->state != LE_STANDBY && le->state != LE_LEADER)
        return;
    if (le->op != OP_NONE) {
        le->again = true;
        return;
    }
    timer_in(le, &le->attempt_timer, dur_s(le->cfg.renew_deadline_ms) / 2);
    if (use_cache && le->obs_known && (le->obj || !le->obs_present)) {
        decide(le);
        return;
    }
    le->op = OP_GET;
    if (k8s_get(le->client, &lease_res, le->cfg.lease_namespace, le->cfg.lease_name, on_get, le,
                &le->call) != BD_OK) {
        le->call = NULL;
        attempt_failed(le, "get", NULL);
        attempt_end(le);
    }
}

static void on_get(void *arg, const k8s_resp_t *r)
{
    le_t *le = arg;
    le->call = NULL;
    if (r->code == BD_OK || r->code == BD_ENOTFOUND) {
        le->fail_streak = 0;
        observe(le, r->code == BD_OK ? r->body : NULL, false, r->code == BD_OK ? obj_rv(r->body) : 0);
        if (le->state != LE_STANDBY && le->state != LE_LEADER)
            return; /* a hook released us */
        decide(le);
        return;
    }
    attempt_failed(le, "get", r);
    attempt_end(le);
}

static void on_write(void *arg, const k8s_resp_t *r)
{
    le_t *le = arg;
    double now = bd_mono_s();
    le->call = NULL;
    if (r->code != BD_OK) {
        /* 409: someone wrote first (stale resourceVersion, or it was created meanwhile) */
        attempt_failed(le, le->op == OP_CREATE ? "create" : "update", r);
        attempt_end(le);
        return;
    }
    le->fail_streak = 0;
    le->st.renewals++;
    le->st.last_renew_latency_s = now - le->write_sent;
    le->last_renew = le->write_sent;
    observe(le, r->body, false, obj_rv(r->body));
    if (le->state == LE_LEADER) {
        timer_in(le, &le->deadline, le->last_renew + dur_s(le->cfg.renew_deadline_ms) - now);
        attempt_end(le);
        return;
    }
    if (le->state != LE_STANDBY)
        return;
    if (now >= le->last_renew + dur_s(le->cfg.renew_deadline_ms)) {
        attempt_end(le); /* took too long to count: the next retry renews it */
        return;
    }
    le->op = OP_NONE;
    ev_timer_stop(le->loop, &le->attempt_timer);
    start_leading(le);
    if (le->state == LE_LEADER)
        attempt_end(le);
}

/* ---- timers -------------------------------------------------------------------------- */

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    le_t *le = w->data;
    attempt(le, le->state == LE_LEADER);
}

static void on_attempt_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    le_t *le = w->data;
    if (le->op == OP_NONE)
        return;
    const char *what = le->op == OP_GET ? "get" : le->op == OP_CREATE ? "create" : "update";
    k8s_call_cancel(le->call);
    le->call = NULL;
    le->again = false;
    attempt_failed(le, what, &(k8s_resp_t){.code = BD_ETIMEOUT, .message = "timed out"});
    attempt_end(le);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    le_t *le = w->data;
    if (le->state != LE_LEADER)
        return;
    double left = le->last_renew + dur_s(le->cfg.renew_deadline_ms) - bd_mono_s();
    if (left > 0) {
        timer_in(le, &le->deadline, left);
        return;
    }
    char why[128];
    snprintf(why, sizeof(why), "not renewed within the renew deadline (%.3g s)",
             dur_s(le->cfg.renew_deadline_ms));
    lose(le, why);
}

/* Standby: try once more right when the observed lease (or a deleted one's last holder's)
 * runs out. */
static void arm_expiry(le_t *le)
{
    double until = 0, now = bd_mono_s();
    if (le->state == LE_STANDBY) {
        if (!le->obs_present)
            until = le->other_until;
        else if (le->obs.holder[0] && !str_eq(le->obs.holder, le->cfg.identity))
            until = le->obs_time + obs_lease_s(le);
    }
    if (until <= now) {
        ev_timer_stop(le->loop, &le->expiry);
        return;
    }
    timer_in(le, &le->expiry, until - now + 0.001);
}

static void on_expiry(struct ev_loop *loop, ev_timer *w, int revents)
{
    le_t *le = w->data;
    if (le->state == LE_STANDBY)
        attempt(le, false);
}

/* ---- the watch ----------------------------------------------------------------------- */

static void on_watch_event(void *arg, const char *type, json_t *object)
{
    le_t *le = arg;
    bool deleted = str_eq(type, "DELETED");
    if (!deleted && !str_eq(type, "ADDED") && !str_eq(type, "MODIFIED")) {
        if (str_eq(type, "ERROR"))
            bd_debug("%s/%s Lease: watch error: %s", le->cfg.lease_namespace, le->cfg.lease_name,
                     json_string_value(json_object_get(object, "message")) ?: "?");
        return;
    }
    if (!observe(le, deleted ? NULL : object, true, obj_rv(object)))
        return;
    if (le->state == LE_LEADER) {
        if (!le->obs_present)
            lose(le, "the Lease was deleted");
        else if (!str_eq(le->obs.holder, le->cfg.identity) || le->obs.transitions != le->granted)
            lose(le, "the Lease is held by another instance");
        else
            return;
    }
    /* released or deleted: take it now rather than at the next retry */
    if (le->state == LE_STANDBY && (!le->obs_present || !le->obs.holder[0]))
        attempt(le, true);
}

static void on_watch_end(void *arg, const k8s_resp_t *r)
{
    le_t *le = arg;
    le->watch = NULL;
    if (le->state != LE_STANDBY && le->state != LE_LEADER)
        return;
    if (r->code == BD_OK && bd_mono_s() - le->watch_since >= 1.0) {
        watch_start(le);
        return;
    }
    bd_debug("%s/%s Lease: watch ended: %s", le->cfg.lease_namespace, le->cfg.lease_name,
             r->code == BD_OK ? "closed early" : r->message);
    timer_in(le, &le->watch_timer, dur_s(le->cfg.retry_period_ms));
}

static void on_watch_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    le_t *le = w->data;
    if ((le->state == LE_STANDBY || le->state == LE_LEADER) && !le->watch)
        watch_start(le);
}

static void watch_start(le_t *le)
{
    le->watch_since = bd_mono_s();
    /* Without a resourceVersion the server first sends the Lease as it is (ADDED), so a
     * reconnect needs no separate read. */
    if (k8s_watch(le->client, le->coll_path, le->watch_query, on_watch_event, on_watch_end, le,
                  &le->watch) != BD_OK) {
        le->watch = NULL;
        timer_in(le, &le->watch_timer, dur_s(le->cfg.retry_period_ms));
    }
}

/* ---- release --------------------------------------------------------------------------- */

static void release_finish(le_t *le, int code)
{
    cancel_call(le);
    ev_timer_stop(le->loop, &le->release_timer);
    le->state = LE_RELEASED;
    le->done_code = code;
    kick(le, PEND_DONE);
}

static void release_get(le_t *le);

static void on_release_put(void *arg, const k8s_resp_t *r)
{
    le_t *le = arg;
    le->call = NULL;
    le->op = OP_NONE;
    if (r->code == BD_OK) {
        bd_info("%s/%s Lease: released", le->cfg.lease_namespace, le->cfg.lease_name);
        observe(le, r->body, false, obj_rv(r->body));
        release_finish(le, BD_OK);
        return;
    }
    if (r->code == BD_ECONFLICT && !le->release_reread) {
        /* e.g. a renewal cancelled by le_release landed after all: read once more */
        le->release_reread = true;
        set_obj(le, NULL);
        release_get(le);
        return;
    }
    bd_warn("%s/%s Lease: release failed: %s", le->cfg.lease_namespace, le->cfg.lease_name,
            r->message);
    release_finish(le, r->code == BD_EEXISTS ? BD_ECONFLICT : r->code);
}

static void release_put(le_t *le)
{
    char ts[40];
    micro_time(ts, sizeof(ts));
    json_t *body = json_deep_copy(le->obj);
    if (!body || set_record(le, body, NULL, 1, ts, ts, le->obs.transitions)) {
        json_decref(body);
        release_finish(le, BD_ENOMEM);
        return;
    }
    json_object_del(json_object_get(body, "metadata"), "managedFields");
    le->op = OP_REL_PUT;
    int rc = k8s_replace(le->client, &lease_res, le->cfg.lease_namespace, le->cfg.lease_name, NULL,
                         body, on_release_put, le, &le->call);
    json_decref(body);
    if (rc != BD_OK) {
        le->call = NULL;
        release_finish(le, rc);
    }
}

/* Ours to release: the record names us (with the transitions we were granted, if we led). */
static bool release_ours(const le_t *le)
{
    return obs_is_ours(le) && (!le->was_leader || le->obs.transitions == le->granted);
}

static void on_release_get(void *arg, const k8s_resp_t *r)
{
    le_t *le = arg;
    le->call = NULL;
    le->op = OP_NONE;
    if (r->code != BD_OK && r->code != BD_ENOTFOUND) {
        bd_warn("%s/%s Lease: release failed: %s", le->cfg.lease_namespace, le->cfg.lease_name,
                r->message);
        release_finish(le, r->code);
        return;
    }
    observe(le, r->code == BD_OK ? r->body : NULL, false, r->code == BD_OK ? obj_rv(r->body) : 0);
    if (!release_ours(le) || !le->obj) {
        release_finish(le, BD_OK); /* nothing of ours to release */
        return;
    }
    release_put(le);
}

static void release_get(le_t *le)
{
    le->op = OP_REL_GET;
    if (k8s_get(le->client, &lease_res, le->cfg.lease_namespace, le->cfg.lease_name,
                on_release_get, le, &le->call) != BD_OK) {
        le->call = NULL;
        release_finish(le, BD_ENOMEM);
    }
}

static void release_step(le_t *le)
{
    if (le->was_leader) {
        bd_info("Releasing lease %s/%s: stopping all operators", le->cfg.lease_namespace,
                le->cfg.lease_name);
        if (le->hooks.stopped_leading)
            le->hooks.stopped_leading(le->arg);
    }
    if (!le->cfg.enabled) {
        release_finish(le, BD_OK);
        return;
    }
    if (le->obj && release_ours(le)) {
        release_put(le);
        return;
    }
    if (!le->was_leader && !obs_is_ours(le)) {
        release_finish(le, BD_OK);
        return;
    }
    release_get(le);
}

static void on_release_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    le_t *le = w->data;
    if (le->state != LE_RELEASING)
        return;
    bd_warn("%s/%s Lease: not released within the timeout; it expires on its own",
            le->cfg.lease_namespace, le->cfg.lease_name);
    release_finish(le, BD_ETIMEOUT);
}

int le_release(le_t *le, unsigned timeout_ms, le_done_cb done, void *done_arg)
{
    if (!le || le->state == LE_RELEASING || le->state == LE_RELEASED)
        return BD_EINVAL;
    le->was_leader = le->state == LE_LEADER;
    le->state = LE_RELEASING; /* le_fence_ok is false from here on */
    le->st.is_leader = false;
    le->done = done;
    le->done_arg = done_arg;
    le->again = false;
    le->pending &= ~(unsigned)PEND_START;
    cancel_call(le);
    k8s_call_cancel(le->watch);
    le->watch = NULL;
    ev_timer_stop(le->loop, &le->tick);
    ev_timer_stop(le->loop, &le->deadline);
    ev_timer_stop(le->loop, &le->expiry);
    ev_timer_stop(le->loop, &le->watch_timer);
    timer_in(le, &le->release_timer, dur_s(timeout_ms ? timeout_ms : le->cfg.renew_deadline_ms));
    kick(le, PEND_RELEASE);
    return BD_OK;
}

/* ---- start, kick, free --------------------------------------------------------------------- */

static void start_step(le_t *le)
{
    if (!le->cfg.enabled) {
        bd_warn("Leader election is disabled (ENABLE_LEADER_ELECTION=false): this instance acts "
                "as the leader unconditionally. More than one replica will cause conflicts, and "
                "this process cannot know how many replicas are running: run exactly one "
                "(kubectl scale deployment bindy --replicas=1) or enable leader election");
        le->state = LE_LEADER;
        le->st.is_leader = true;
        le->st.acquisitions++;
        bd_info("Starting all operators");
        if (le->hooks.started_leading)
            le->hooks.started_leading(le->arg);
        return;
    }
    le->state = LE_STANDBY;
    bd_info("Attempting to acquire lease %s", le->cfg.lease_name);
    bd_debug("%s/%s Lease: identity %s, duration %.3g s, renew deadline %.3g s, retry %.3g s",
             le->cfg.lease_namespace, le->cfg.lease_name, le->cfg.identity,
             dur_s(le->cfg.lease_duration_ms), dur_s(le->cfg.renew_deadline_ms),
             dur_s(le->cfg.retry_period_ms));
    ev_timer_set(&le->tick, dur_s(le->cfg.retry_period_ms), dur_s(le->cfg.retry_period_ms));
    ev_timer_start(le->loop, &le->tick);
    attempt(le, false); /* the watch starts when it ends */
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    le_t *le = w->data;
    unsigned p = le->pending;
    le->pending = 0;
    if (p & PEND_START) {
        start_step(le);
        if (le->state == LE_RELEASING)
            return; /* a hook released us: its own kick follows */
    }
    if (p & PEND_RELEASE) {
        release_step(le);
        if (le->pending & PEND_DONE)
            return; /* finished at once: done from the next kick */
    }
    if (p & PEND_DONE) {
        le_done_cb done = le->done;
        le->done = NULL;
        if (done)
            done(le->done_arg, le->done_code); /* may free le */
    }
}

int le_start(struct ev_loop *loop, k8s_client_t *client, const le_config_t *cfg,
             const le_hooks_t *hooks, void *arg, le_t **out, bd_err_t *err)
{
    le_t *le = NULL;
    int rc;
    *out = NULL;
    bd_err_clear(err);
    if (!loop || !cfg || (cfg->enabled && !client))
        return bd_err_set(err, BD_EINVAL, "leader election: no loop, configuration or client");
    if ((rc = le_config_check(cfg, err)) != BD_OK)
        return rc;
    le = calloc(1, sizeof(*le));
    if (!le)
        return bd_err_set(err, BD_ENOMEM, "leader election: out of memory");
    le->loop = loop;
    le->client = client;
    le->cfg = *cfg;
    if (hooks)
        le->hooks = *hooks;
    le->arg = arg;
    le->st.lease_transitions = -1;
    if (cfg->enabled) {
        le->coll_path = k8s_path(&lease_res, cfg->lease_namespace, NULL, NULL);
        /* the name is a DNS subdomain: nothing in it needs escaping */
        if (asprintf(&le->watch_query, "watch=1&fieldSelector=metadata.name%%3D%s&timeoutSeconds=%u",
                     cfg->lease_name, 60u + (unsigned)(rand() % 30)) < 0)
            le->watch_query = NULL;
        if (!le->coll_path || !le->watch_query) {
            le_free(le);
            return bd_err_set(err, BD_ENOMEM, "leader election: out of memory");
        }
    }
    ev_timer_init(&le->tick, on_tick, 0., 0.);
    ev_timer_init(&le->deadline, on_deadline, 0., 0.);
    ev_timer_init(&le->expiry, on_expiry, 0., 0.);
    ev_timer_init(&le->attempt_timer, on_attempt_timeout, 0., 0.);
    ev_timer_init(&le->watch_timer, on_watch_timer, 0., 0.);
    ev_timer_init(&le->release_timer, on_release_timeout, 0., 0.);
    ev_timer_init(&le->kick, on_kick, 0., 0.);
    le->tick.data = le->deadline.data = le->expiry.data = le->attempt_timer.data = le;
    le->watch_timer.data = le->release_timer.data = le->kick.data = le;
    le->state = LE_IDLE;
    kick(le, PEND_START);
    *out = le;
    return BD_OK;
}

void le_free(le_t *le)
{
    if (!le)
        return;
    k8s_call_cancel(le->call);
    k8s_call_cancel(le->watch);
    ev_timer_stop(le->loop, &le->tick);
    ev_timer_stop(le->loop, &le->deadline);
    ev_timer_stop(le->loop, &le->expiry);
    ev_timer_stop(le->loop, &le->attempt_timer);
    ev_timer_stop(le->loop, &le->watch_timer);
    ev_timer_stop(le->loop, &le->release_timer);
    ev_timer_stop(le->loop, &le->kick);
    json_decref(le->obj);
    free(le->coll_path);
    free(le->watch_query);
    free(le);
}

/* ---- queries ----------------------------------------------------------------------------- */

bool le_fence_ok(const le_t *le)
{
    if (!le || le->state != LE_LEADER)
        return false;
    if (!le->cfg.enabled)
        return true;
    return obs_is_ours(le) && le->obs.transitions == le->granted &&
           bd_mono_s() < le->last_renew + dur_s(le->cfg.renew_deadline_ms);
}

bool le_is_leader(const le_t *le) { return le && le->state == LE_LEADER; }

const char *le_holder(const le_t *le)
{
    if (!le)
        return "";
    if (!le->cfg.enabled)
        return le->state == LE_LEADER ? le->cfg.identity : "";
    return le->obs_present ? le->obs.holder : "";
}

void le_stats(const le_t *le, le_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    if (!le) {
        st->lease_transitions = -1;
        return;
    }
    *st = le->st;
    st->is_leader = le->state == LE_LEADER;
}
