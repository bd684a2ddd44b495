/*
 * readiness.c - see readiness.h. Three parts: discovery (EndpointSlices -> pods), rounds
 * (SOA checks per instance, verdicts per pod, NOTIFY and rndc for laggards) and writes
 * (the pod condition, only when it differs from what the API server holds).
 */
#include "readiness.h"

#include <arpa/inet.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmap.h"
#include "log.h"
#include "reflector.h"
#include "render.h"
#include "rndc.h"
#include "soacheck.h"
#include "workload.h"
#include "zonedb.h"

#define RDY_MAX_CHECKS 64      /* SOA checks (one UDP socket each) in flight at most */
#define RDY_MSG_MAX 1024       /* bytes of a condition message */
#define RDY_RECHECK_MIN 0.25   /* seconds before re-checking an instance with a laggard */
#define RDY_SVC_LABEL "kubernetes.io/service-name"

static const k8s_res_t PODS = {"", "v1", "pods", "Pod", true};
static const k8s_res_t SECRETS = {"", "v1", "secrets", "Secret", true};

typedef enum { CST_UNKNOWN, CST_TRUE, CST_FALSE } cst_t;

typedef struct grp grp_t;

typedef struct pod {
    rdy_t *r;
    char *uid, *ns, *name;
    char *slice;                /* "ns/name" of the slice it came from */
    grp_t *g;
    char addr[INET6_ADDRSTRLEN];
    uint16_t dns_port, rndc_port;
    bool ep_ready;              /* the slice's endpoint condition, as last seen */
    uint64_t gen, sgen;         /* last list generation / slice pass that named it */
    bool known;                 /* have/have_msg hold what the API server has */
    cst_t have, want, sent;
    char *have_msg, *want_msg, *sent_msg;
    k8s_call_t *call;           /* GET or PATCH in flight */
    unsigned behind, stalled;   /* rounds behind in a row; of those, without progress */
    char *fp;                   /* what lagged in the last round, to see progress */
    bind_rndc_t *rndc;
} pod_t;

typedef struct round round_t;

struct grp {
    rdy_t *r;
    char *key;                  /* "ns/name" of the Bind9Instance */
    bool marked;
    round_t *round;
    ev_timer recheck;
    double delay;
    k8s_call_t *key_call;       /* the Secret <inst>-keys read */
    char *rndc_alg, *rndc_b64;  /* its rndc key (wiped) */
    bool floor_done;            /* its first round since leading has looked for serials
                                   above the projection's */
};

typedef struct {
    round_t *rd;
    size_t zi;
} check_arg_t;

/* One pass over an instance's pods: every zone asked on every pod. */
struct round {
    round_t *next;
    grp_t *g;
    size_t nz, np;
    char **zones;
    uint32_t *want;
    char **uids;
    bind_endpoint_t *eps;       /* per pod, as discovered when the round started */
    char (*addrs)[INET6_ADDRSTRLEN];
    char **names;               /* "ns/name" per pod, for soacheck's results */
    bool *ok, *answered;        /* [pod * nz + zone] */
    uint32_t *serial;
    size_t next_zone, running;
    bool from_bindy;            /* the instance pulls from bindy: NOTIFY from us is accepted */
    bind_soacheck_t **h;
    check_arg_t *args;
};

struct rdy {
    k8s_client_t *c;
    struct ev_loop *loop;
    rdy_opts_t o;
    char *selector;
    const proj_t *p;
    bool leading;
    k8s_refl_t *refl;
    bd_hmap_t *pods;            /* uid -> pod_t */
    bd_hmap_t *grps;            /* instance key -> grp_t */
    round_t *rounds;            /* active */
    size_t checks;              /* SOA checks in flight */
    uint64_t gen, sgen;
    bool driving;
    rdy_stats_t st;
};

static bool fence_ok(rdy_t *r)
{
    return r->o.fence == NULL || r->o.fence(r->o.fence_arg);
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void wipe_free(char *s)
{
    if (s != NULL) {
        volatile char *v = s;
        while (*v)
            *v++ = 0;
    }
    free(s);
}

static void drive(rdy_t *r);
static void grp_arm(grp_t *g);

/* ---- pods and instances ------------------------------------------------------------- */

static void pod_free(pod_t *pd)
{
    if (pd == NULL)
        return;
    if (pd->call != NULL) {
        k8s_call_cancel(pd->call);
        pd->r->st.inflight--;
    }
    bind_rndc_free(pd->rndc); /* its callbacks see BD_ECANCELED and touch nothing */
    free(pd->uid);
    free(pd->ns);
    free(pd->name);
    free(pd->slice);
    free(pd->have_msg);
    free(pd->want_msg);
    free(pd->sent_msg);
    free(pd->fp);
    free(pd);
}

static void pod_forget(rdy_t *r, pod_t *pd)
{
    bd_debug("pod %s/%s: left its EndpointSlice; forgotten", pd->ns, pd->name);
    bd_hmap_del(r->pods, pd->uid);
    pod_free(pd);
}

static void on_recheck(struct ev_loop *loop, ev_timer *w, int revents)
{
    grp_t *g = w->data;
    g->marked = true;
    drive(g->r);
}

static grp_t *grp_get(rdy_t *r, const char *key)
{
    grp_t *g = bd_hmap_get(r->grps, key);
    if (g != NULL)
        return g;
    g = calloc(1, sizeof(*g));
    if (g == NULL || (g->key = strdup(key)) == NULL || bd_hmap_put(r->grps, key, g, NULL) != BD_OK) {
        if (g)
            free(g->key);
        free(g);
        return NULL;
    }
    g->r = r;
    g->delay = RDY_RECHECK_MIN;
    ev_timer_init(&g->recheck, on_recheck, 0., 0.);
    g->recheck.data = g;
    return g;
}

static void round_free(round_t *rd);

static void grp_free(grp_t *g)
{
    if (g == NULL)
        return;
    ev_timer_stop(g->r->loop, &g->recheck);
    if (g->key_call != NULL) {
        k8s_call_cancel(g->key_call);
        g->r->st.inflight--;
    }
    round_free(g->round);
    free(g->key);
    free(g->rndc_alg);
    wipe_free(g->rndc_b64);
    free(g);
}

/* ---- discovery: EndpointSlices -> pods ------------------------------------------------- */

static uint16_t slice_port(const json_t *ports, const char *a, const char *b, uint16_t dflt)
{
    size_t i;
    json_t *p;
    json_array_foreach(ports, i, p) {
        const char *n = json_string_value(json_object_get(p, "name"));
        json_int_t v = json_integer_value(json_object_get(p, "port"));
        if (n && (strcmp(n, a) == 0 || (b && strcmp(n, b) == 0)) && v > 0 && v <= 65535)
            return (uint16_t)v;
    }
    return dflt;
}

static bool numeric_addr(const char *a)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return a && (inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1);
}

/* The slice's pods replace what it gave before; pods it no longer names are forgotten. */
static void slice_apply(rdy_t *r, json_t *slice, bool gone)
{
    const json_t *meta = json_object_get(slice, "metadata");
    const char *ns = json_string_value(json_object_get(meta, "namespace"));
    const char *name = json_string_value(json_object_get(meta, "name"));
    const char *svc = json_string_value(json_object_get(json_object_get(meta, "labels"), RDY_SVC_LABEL));
    char skey[600], ikey[600];
    if (ns == NULL || name == NULL)
        return;
    snprintf(skey, sizeof(skey), "%s/%s", ns, name);
    uint64_t pass = ++r->sgen;
    grp_t *g = NULL;
    bool changed = false;
    if (!gone && svc != NULL) {
        snprintf(ikey, sizeof(ikey), "%s/%s", ns, svc);
        g = grp_get(r, ikey);
    }
    const json_t *ports = json_object_get(slice, "ports");
    uint16_t dns = slice_port(ports, "dns-udp", "dns-tcp", 53);
    uint16_t rndc = slice_port(ports, "rndc", NULL, BIND_RNDC_DEFAULT_PORT);
    size_t i;
    json_t *ep;
    json_array_foreach(g ? json_object_get(slice, "endpoints") : NULL, i, ep) {
        const json_t *ref = json_object_get(ep, "targetRef");
        const json_t *cond = json_object_get(ep, "conditions");
        const char *kind = json_string_value(json_object_get(ref, "kind"));
        const char *pname = json_string_value(json_object_get(ref, "name"));
        const char *pns = json_string_value(json_object_get(ref, "namespace"));
        const char *uid = json_string_value(json_object_get(ref, "uid"));
        const char *addr = json_string_value(json_array_get(json_object_get(ep, "addresses"), 0));
        if (kind == NULL || strcmp(kind, "Pod") != 0 || pname == NULL || uid == NULL || !numeric_addr(addr) ||
            json_is_true(json_object_get(cond, "terminating")))
            continue;
        /* "ready" absent means ready (discovery.k8s.io/v1) */
        bool ready = !json_is_false(json_object_get(cond, "ready"));
        pod_t *pd = bd_hmap_get(r->pods, uid);
        if (pd != NULL && strcmp(pd->slice, skey) != 0)
            continue; /* the pod's other slice (dual stack) has it */
        if (pd == NULL) {
            pd = calloc(1, sizeof(*pd));
            if (pd == NULL || (pd->uid = strdup(uid)) == NULL || (pd->ns = strdup(pns ? pns : ns)) == NULL ||
                (pd->name = strdup(pname)) == NULL || (pd->slice = strdup(skey)) == NULL ||
                bd_hmap_put(r->pods, uid, pd, NULL) != BD_OK) {
                pod_free(pd);
                bd_error("pod %s/%s: out of memory", pns ? pns : ns, pname);
                continue;
            }
            pd->r = r;
            bd_info("pod %s/%s: BIND server of Bind9Instance %s at %s", pd->ns, pd->name, g->key, addr);
            changed = true;
        }
        if (pd->g != g || strcmp(pd->addr, addr) != 0 || pd->dns_port != dns || pd->rndc_port != rndc) {
            changed = true;
            pd->g = g;
            snprintf(pd->addr, sizeof(pd->addr), "%s", addr);
            pd->dns_port = dns;
            pd->rndc_port = rndc;
            bind_rndc_free(pd->rndc); /* it talks to the old address */
            pd->rndc = NULL;
        }
        /* a pod that turned unready (named restarted in the same pod) is verified again */
        changed |= pd->ep_ready != ready;
        pd->ep_ready = ready;
        pd->gen = r->gen;
        pd->sgen = pass;
    }
    /* pods this slice named before and no longer does */
    size_t n = 0;
    const char **keys = bd_hmap_keys_sorted(r->pods, &n);
    for (size_t k = 0; keys && k < n; k++) {
        pod_t *pd = bd_hmap_get(r->pods, keys[k]);
        if (strcmp(pd->slice, skey) == 0 && pd->sgen != pass) {
            pod_forget(r, pd);
            changed = true;
        }
    }
    free(keys);
    if (changed && g != NULL)
        g->marked = true;
}

static void refl_begin(void *arg)
{
    ((rdy_t *)arg)->gen++;
}

static void refl_item(void *arg, json_t *obj)
{
    slice_apply(arg, obj, false);
}

static void refl_end(void *arg, const char *rv)
{
    rdy_t *r = arg;
    size_t n = 0;
    const char **keys = bd_hmap_keys_sorted(r->pods, &n);
    for (size_t k = 0; keys && k < n; k++) {
        pod_t *pd = bd_hmap_get(r->pods, keys[k]);
        if (pd->gen != r->gen)
            pod_forget(r, pd); /* its slice is gone */
    }
    free(keys);
    drive(r);
}

static void refl_event(void *arg, const char *type, json_t *obj)
{
    slice_apply(arg, obj, strcmp(type, "DELETED") == 0);
    drive(arg);
}

static void refl_bookmark(void *arg, const char *rv) {}

/* ---- writes: the pod condition ----------------------------------------------------------- */

static void pod_write(pod_t *pd);

static const char *cst_name(cst_t s)
{
    return s == CST_TRUE ? "True" : "False";
}

static void on_pod_read(void *arg, const k8s_resp_t *resp)
{
    pod_t *pd = arg;
    pd->call = NULL;
    pd->r->st.inflight--;
    if (resp->code == BD_ENOTFOUND)
        return; /* gone: its slice will say so */
    if (resp->code != BD_OK) {
        pd->r->st.errors++;
        bd_warn("pod %s/%s: cannot read it: %s", pd->ns, pd->name, resp->message);
        if (pd->g)
            grp_arm(pd->g);
        return;
    }
    const json_t *meta = json_object_get(resp->body, "metadata");
    const char *uid = json_string_value(json_object_get(meta, "uid"));
    if (uid == NULL || strcmp(uid, pd->uid) != 0)
        return; /* a newer pod of that name: its own slice entry brings it */
    pd->known = true;
    pd->have = CST_UNKNOWN;
    free(pd->have_msg);
    pd->have_msg = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(json_object_get(resp->body, "status"), "conditions"), i, c) {
        const char *type = json_string_value(json_object_get(c, "type"));
        const char *st = json_string_value(json_object_get(c, "status"));
        if (type == NULL || st == NULL || strcmp(type, WL_READINESS_GATE) != 0)
            continue;
        pd->have = strcmp(st, "True") == 0 ? CST_TRUE : strcmp(st, "False") == 0 ? CST_FALSE : CST_UNKNOWN;
        pd->have_msg = xstrdup(json_string_value(json_object_get(c, "message")));
    }
    pod_write(pd);
}

static void on_pod_patched(void *arg, const k8s_resp_t *resp)
{
    pod_t *pd = arg;
    rdy_t *r = pd->r;
    pd->call = NULL;
    r->st.inflight--;
    if (resp->code == BD_OK) {
        r->st.writes++;
        if (pd->have != pd->sent)
            bd_info("pod %s/%s: %s=%s (%s)", pd->ns, pd->name, WL_READINESS_GATE, cst_name(pd->sent),
                    pd->sent_msg);
        pd->known = true;
        pd->have = pd->sent;
        free(pd->have_msg);
        pd->have_msg = pd->sent_msg;
        pd->sent_msg = NULL;
        pod_write(pd); /* a newer verdict meanwhile */
        return;
    }
    free(pd->sent_msg);
    pd->sent_msg = NULL;
    if (resp->code == BD_ENOTFOUND)
        return;
    r->st.errors++;
    pd->known = false; /* read again before the next write */
    bd_warn("pod %s/%s: cannot set %s: %s", pd->ns, pd->name, WL_READINESS_GATE, resp->message);
    if (pd->g)
        grp_arm(pd->g);
}

static void now_rfc3339(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Bring the API server to the last verdict: read first when what it holds is unknown. */
static void pod_write(pod_t *pd)
{
    rdy_t *r = pd->r;
    if (pd->call != NULL || pd->want == CST_UNKNOWN || !r->leading)
        return;
    char bk[700];
    snprintf(bk, sizeof(bk), "rdy/pods/%s/%s", pd->ns, pd->name);
    if (!pd->known) {
        char *path = k8s_path(&PODS, pd->ns, pd->name, NULL);
        k8s_req_t req = {.method = K8S_GET, .path = path, .backoff_key = bk};
        if (path != NULL && k8s_call(r->c, &req, on_pod_read, pd, &pd->call) == BD_OK) {
            r->st.inflight++;
            r->st.reads++;
        }
        free(path);
        return;
    }
    if (pd->have == pd->want && pd->have_msg && strcmp(pd->have_msg, pd->want_msg) == 0)
        return;
    if (!fence_ok(r)) {
        r->st.fenced++;
        return;
    }
    char now[32];
    now_rfc3339(now);
    json_t *cond = json_pack("{s:s,s:s,s:s,s:s}", "type", WL_READINESS_GATE, "status", cst_name(pd->want), "reason",
                             pd->want == CST_TRUE ? RDY_REASON_PUBLISHED : RDY_REASON_BEHIND, "message",
                             pd->want_msg);
    /* the time of the last change of status: kept by the merge when the status stays */
    if (cond != NULL && pd->have != pd->want)
        json_object_set_new(cond, "lastTransitionTime", json_string(now));
    json_t *patch = cond ? json_pack("{s:{s:[o]}}", "status", "conditions", cond) : NULL;
    char *path = k8s_path(&PODS, pd->ns, pd->name, "status");
    k8s_req_t req = {.method = K8S_PATCH_STRATEGIC, .path = path, .body = patch, .backoff_key = bk};
    free(pd->sent_msg);
    pd->sent_msg = xstrdup(pd->want_msg);
    pd->sent = pd->want;
    if (patch != NULL && path != NULL && pd->sent_msg != NULL &&
        k8s_call(r->c, &req, on_pod_patched, pd, &pd->call) == BD_OK) {
        r->st.inflight++;
    } else {
        bd_error("pod %s/%s: cannot set %s: out of memory", pd->ns, pd->name, WL_READINESS_GATE);
        free(pd->sent_msg);
        pd->sent_msg = NULL;
    }
    free(path);
    json_decref(patch);
}

static void pod_verdict(pod_t *pd, cst_t st, const char *msg)
{
    char *m = strdup(msg);
    if (m == NULL)
        return;
    free(pd->want_msg);
    pd->want_msg = m;
    pd->want = st;
    pod_write(pd);
}

/* ---- NOTIFY and rndc for laggards ----------------------------------------------------- */

static void on_secret(void *arg, const k8s_resp_t *resp)
{
    grp_t *g = arg;
    g->key_call = NULL;
    g->r->st.inflight--;
    char *alg = NULL, *sec = NULL;
    int rc = resp->code == BD_OK ? wl_rndc_from_secret(resp->body, &alg, &sec) : resp->code;
    if (rc != BD_OK) {
        g->r->st.errors++;
        bd_warn("Bind9Instance %s: no rndc key in its Secret (%s): no retransfer", g->key,
                resp->code == BD_OK ? bd_strerror(rc) : resp->message);
        return;
    }
    free(g->rndc_alg);
    wipe_free(g->rndc_b64);
    g->rndc_alg = alg;
    g->rndc_b64 = sec;
}

static void fetch_key(grp_t *g)
{
    rdy_t *r = g->r;
    char ns[300], name[WL_OBJ_NAME_MAX];
    const char *slash = strchr(g->key, '/');
    if (g->key_call != NULL || slash == NULL || (size_t)(slash - g->key) >= sizeof(ns))
        return;
    snprintf(ns, sizeof(ns), "%.*s", (int)(slash - g->key), g->key);
    if (wl_name(WL_SECRET, slash + 1, name) != BD_OK)
        return;
    if (k8s_get(r->c, &SECRETS, ns, name, on_secret, g, &g->key_call) == BD_OK) {
        r->st.inflight++;
        r->st.reads++;
    }
}

static void on_retransfer(bind_rndc_t *c, const bind_rndc_reply_t *rep, void *arg)
{
    pod_t *pd = arg;
    if (rep->status == BD_ECANCELED)
        return; /* the pod is being forgotten */
    if (rep->status != BD_OK)
        bd_warn("pod %s/%s: rndc: %s", pd->ns, pd->name, rep->msg);
    else if (rep->result == BIND_RNDC_R_NOTFOUND)
        bd_debug("pod %s/%s: rndc retransfer: a zone it does not have yet (its catalog is retransferred)",
                 pd->ns, pd->name);
    else if (rep->result != BIND_RNDC_R_SUCCESS)
        bd_warn("pod %s/%s: rndc retransfer: %s", pd->ns, pd->name, rep->err ? rep->err : rep->text);
}

/* rndc retransfer of what lags; false when the key is not known yet (asked for). */
static bool pod_retransfer(pod_t *pd, const round_t *rd, size_t pi)
{
    rdy_t *r = pd->r;
    grp_t *g = rd->g;
    if (g->rndc_b64 == NULL) {
        fetch_key(g);
        return false;
    }
    if (pd->rndc == NULL) {
        bind_rndc_config_t cfg = {.host = pd->addr, .port = pd->rndc_port, .key_name = BIND_RNDC_KEY_NAME,
                                  .secret_b64 = g->rndc_b64, .timeout = r->o.rndc_timeout};
        bd_err_t err;
        if (bind_rndc_alg_parse(g->rndc_alg, &cfg.alg) != BD_OK ||
            bind_rndc_new(r->loop, &cfg, &pd->rndc, &err) != BD_OK) {
            bd_warn("pod %s/%s: no rndc client: %s", pd->ns, pd->name, g->rndc_alg);
            return true;
        }
    }
    bool missing = false;
    char cmd[1100];
    for (size_t z = 0; z < rd->nz; z++) {
        size_t k = pi * rd->nz + z;
        if (rd->ok[k])
            continue;
        /* Not answered: not there at all (its catalog brings it; named says "not found"
         * to this retransfer), or listed by its catalog but never loaded: its primaries
         * answered SERVFAIL when it first asked, and named waits 60 s to ask again. */
        missing |= !rd->answered[k] && z + 1 < rd->nz;
        snprintf(cmd, sizeof(cmd), "retransfer %s", rd->zones[z]);
        if (bind_rndc_command(pd->rndc, cmd, on_retransfer, pd) == BD_OK)
            r->st.retransfers++;
    }
    if (missing && rd->ok[pi * rd->nz + rd->nz - 1]) { /* (else sent above) */
        snprintf(cmd, sizeof(cmd), "retransfer %s", rd->zones[rd->nz - 1]); /* the catalog */
        if (bind_rndc_command(pd->rndc, cmd, on_retransfer, pd) == BD_OK)
            r->st.retransfers++;
    }
    bd_info("pod %s/%s: still behind after %u rounds; rndc retransfer", pd->ns, pd->name, pd->behind);
    return true;
}

/* ---- rounds ---------------------------------------------------------------------------- */

static void round_free(round_t *rd)
{
    if (rd == NULL)
        return;
    rdy_t *r = rd->g->r;
    for (round_t **pp = &r->rounds; *pp; pp = &(*pp)->next)
        if (*pp == rd) {
            *pp = rd->next;
            break;
        }
    for (size_t z = 0; z < rd->nz; z++) {
        if (rd->h && rd->h[z]) {
            bind_soacheck_cancel(rd->h[z]);
            r->checks--;
        }
        free(rd->zones[z]);
    }
    for (size_t p = 0; p < rd->np; p++) {
        free(rd->uids[p]);
        free(rd->names[p]);
    }
    free(rd->eps);
    free(rd->addrs);
    free(rd->names);
    free(rd->zones);
    free(rd->want);
    free(rd->uids);
    free(rd->ok);
    free(rd->answered);
    free(rd->serial);
    free(rd->h);
    free(rd->args);
    free(rd);
}

static int inst_cmp(const void *key, const void *elem)
{
    return strcmp(key, (*(const proj_instance_t *const *)elem)->key);
}

static void round_start(grp_t *g)
{
    rdy_t *r = g->r;
    g->marked = false;
    size_t ni = 0;
    const proj_instance_t **insts = proj_instances(r->p, &ni);
    const proj_instance_t *const *pi = insts ? bsearch(g->key, insts, ni, sizeof(*insts), inst_cmp) : NULL;
    if (pi == NULL)
        return; /* not (or no longer) an instance: nothing to verify */
    size_t npods = 0, n = 0;
    const char **keys = bd_hmap_keys_sorted(r->pods, &n);
    for (size_t k = 0; keys && k < n; k++)
        npods += ((pod_t *)bd_hmap_get(r->pods, keys[k]))->g == g;
    round_t *rd = npods ? calloc(1, sizeof(*rd)) : NULL;
    if (rd == NULL)
        goto out;
    rd->g = g;
    rd->from_bindy = (*pi)->upstream.n == 0;
    size_t nz = (*pi)->zones.n + 1;
    rd->zones = calloc(nz, sizeof(*rd->zones));
    rd->want = calloc(nz, sizeof(*rd->want));
    rd->uids = calloc(npods, sizeof(*rd->uids));
    rd->eps = calloc(npods, sizeof(*rd->eps));
    rd->addrs = calloc(npods, sizeof(*rd->addrs));
    rd->names = calloc(npods, sizeof(*rd->names));
    rd->ok = calloc(nz * npods, sizeof(bool));
    rd->answered = calloc(nz * npods, sizeof(bool));
    rd->serial = calloc(nz * npods, sizeof(uint32_t));
    rd->h = calloc(nz, sizeof(*rd->h));
    rd->args = calloc(nz, sizeof(*rd->args));
    if (!rd->zones || !rd->want || !rd->uids || !rd->eps || !rd->addrs || !rd->names || !rd->ok || !rd->answered || !rd->serial || !rd->h || !rd->args)
        goto fail;
    /* the member zones, then the catalog (last: pod_retransfer relies on it) */
    for (size_t z = 0; z < nz; z++) {
        const char *zn = z + 1 < nz ? (*pi)->zones.v[z] : (*pi)->catalog;
        const proj_zone_t *pz = proj_zone_get(r->p, zn);
        if (pz == NULL)
            continue;
        if ((rd->zones[rd->nz] = strdup(zn)) == NULL)
            goto fail;
        rd->want[rd->nz++] = proj_zone_serial(pz);
    }
    for (size_t k = 0; k < n; k++) {
        pod_t *pd = bd_hmap_get(r->pods, keys[k]);
        if (pd->g != g)
            continue;
        size_t i = rd->np++;
        snprintf(rd->addrs[i], sizeof(rd->addrs[i]), "%s", pd->addr);
        rd->eps[i] = (bind_endpoint_t){rd->addrs[i], pd->dns_port};
        if ((rd->uids[i] = strdup(pd->uid)) == NULL || asprintf(&rd->names[i], "%s/%s", pd->ns, pd->name) < 0) {
            rd->names[i] = NULL;
            goto fail;
        }
    }
    if (rd->nz == 0)
        goto fail_quiet; /* not even its catalog is projected: nothing to verify yet */
    g->round = rd;
    rd->next = r->rounds;
    r->rounds = rd;
    goto out;
fail:
    bd_error("Bind9Instance %s: cannot verify its pods: out of memory", g->key);
fail_quiet:
    round_free(rd);
out:
    free(keys);
}

static void on_checked(void *arg, const char *zone, uint32_t want, const bind_soacheck_result_t *res, size_t n)
{
    check_arg_t *a = arg;
    round_t *rd = a->rd;
    rdy_t *r = rd->g->r;
    rd->h[a->zi] = NULL;
    rd->running--;
    r->checks--;
    for (size_t p = 0; p < n && p < rd->np; p++) {
        size_t k = p * rd->nz + a->zi;
        rd->ok[k] = res[p].ok;
        rd->answered[k] = res[p].answered;
        rd->serial[k] = res[p].serial;
    }
    drive(r);
}

/* Start the zone checks of active rounds, up to RDY_MAX_CHECKS in flight. */
static void pump(rdy_t *r)
{
    for (round_t *rd = r->rounds; rd && r->checks < RDY_MAX_CHECKS; rd = rd->next) {
        while (rd->next_zone < rd->nz && r->checks < RDY_MAX_CHECKS) {
            size_t z = rd->next_zone++;
            bd_err_t err;
            rd->args[z] = (check_arg_t){rd, z};
            if (bind_soacheck_start(r->loop, rd->zones[z], rd->want[z], rd->eps, (const char *const *)rd->names, rd->np,
                                    r->o.grace, 0.05, on_checked, &rd->args[z], &rd->h[z], &err) != BD_OK) {
                bd_warn("Bind9Instance %s: zone %s: cannot check pods: %s", rd->g->key, rd->zones[z], err.msg);
                continue; /* counts as unanswered */
            }
            rd->running++;
            r->checks++;
        }
    }
}

/* "example.com at 5 (wants 7), new.example no answer (wants 1), and 3 more" */
static void lag_text(const round_t *rd, size_t p, char *msg, size_t cap, size_t *nlag)
{
    size_t len = 0, shown = 0;
    bool full = false;
    *nlag = 0;
    msg[0] = '\0';
    for (size_t z = 0; z < rd->nz; z++) {
        size_t k = p * rd->nz + z;
        char one[600];
        if (rd->ok[k])
            continue;
        (*nlag)++;
        int w = rd->answered[k] ? snprintf(one, sizeof(one), "%s%s at %u (wants %u)", shown ? ", " : "", rd->zones[z],
                                           rd->serial[k], rd->want[z])
                                : snprintf(one, sizeof(one), "%s%s no answer (wants %u)", shown ? ", " : "",
                                           rd->zones[z], rd->want[z]);
        /* room is kept for the count of what is not shown */
        if (full || w < 0 || len + (size_t)w + 24 >= cap) {
            full = true;
            continue;
        }
        memcpy(msg + len, one, (size_t)w + 1);
        len += (size_t)w;
        shown++;
    }
    if (shown < *nlag)
        snprintf(msg + len, cap - len, ", and %zu more", *nlag - shown);
}

/* NOTIFY goes only to pods of instances that pull from bindy: a secondary's named accepts
 * NOTIFY from its primaries only (they notify it themselves); rndc reaches both. */
static void notify_pod(pod_t *pd, const round_t *rd, size_t p)
{
    rdy_t *r = pd->r;
    char target[INET6_ADDRSTRLEN + 10];
    if (strchr(pd->addr, ':'))
        snprintf(target, sizeof(target), "[%s]:%u", pd->addr, pd->dns_port);
    else
        snprintf(target, sizeof(target), "%s:%u", pd->addr, pd->dns_port);
    /* a zone it does not answer for may be missing (a NOTIFY would be refused): its
     * catalog, last in the round, brings it */
    bool missing = false;
    for (size_t z = 0; r->o.srv && rd->from_bindy && z < rd->nz; z++) {
        size_t k = p * rd->nz + z;
        missing |= !rd->answered[k];
        bool last = z + 1 == rd->nz;
        if ((rd->ok[k] || !rd->answered[k]) && !(last && missing))
            continue;
        if (bind_server_notify_to(r->o.srv, rd->zones[z], target) == BD_OK)
            r->st.notifies++;
    }
}

/* The highest serial any pod of the round publishes per zone, when above the projection's. */
static void report_above(round_t *rd)
{
    rdy_t *r = rd->g->r;
    for (size_t z = 0; r->o.served_above && z < rd->nz; z++) {
        uint32_t top = rd->want[z];
        for (size_t p = 0; p < rd->np; p++) {
            size_t k = p * rd->nz + z;
            if (rd->answered[k] && bind_zonedb_serial_gt(rd->serial[k], top))
                top = rd->serial[k];
        }
        if (top != rd->want[z])
            r->o.served_above(r->o.served_above_arg, rd->zones[z], top, rd->want[z]);
    }
}

static void round_finish(round_t *rd)
{
    grp_t *g = rd->g;
    rdy_t *r = g->r;
    bool lag = false, progress = false;
    char msg[RDY_MSG_MAX];
    if (!g->floor_done) {
        g->floor_done = true;
        report_above(rd);
    }
    for (size_t p = 0; p < rd->np; p++) {
        pod_t *pd = bd_hmap_get(r->pods, rd->uids[p]);
        if (pd == NULL || pd->g != g)
            continue;
        size_t nlag;
        lag_text(rd, p, msg, sizeof(msg), &nlag);
        if (nlag == 0) {
            progress |= pd->behind > 0;
            pd->behind = pd->stalled = 0;
            free(pd->fp);
            pd->fp = NULL;
            /* no zone count or serial: the message must not change with every change */
            snprintf(msg, sizeof(msg), "every zone of Bind9Instance %s at its current serial", g->key);
            pod_verdict(pd, CST_TRUE, msg);
            continue;
        }
        lag = true;
        bool moved = pd->fp == NULL || strcmp(pd->fp, msg) != 0;
        progress |= moved;
        pd->behind++;
        pd->stalled = moved ? 0 : pd->stalled + 1;
        free(pd->fp);
        pd->fp = strdup(msg);
        bd_debug("pod %s/%s behind (round %u): %s", pd->ns, pd->name, pd->behind, msg);
        notify_pod(pd, rd, p);
        if (pd->stalled >= r->o.retransfer_after && pod_retransfer(pd, rd, p))
            pd->stalled = 0;
        /* one round behind is a change still on its way (NOTIFY just went); two are not */
        if (pd->behind >= 2) {
            char full[RDY_MSG_MAX + 16];
            snprintf(full, sizeof(full), "behind: %s", msg);
            pod_verdict(pd, CST_FALSE, full);
        }
    }
    g->round = NULL;
    round_free(rd);
    r->st.rounds++;
    ev_timer_stop(r->loop, &g->recheck);
    if (!lag) {
        g->delay = RDY_RECHECK_MIN;
        return;
    }
    g->delay = progress ? RDY_RECHECK_MIN : g->delay * 2 > r->o.recheck_max ? r->o.recheck_max : g->delay * 2;
    ev_timer_set(&g->recheck, g->delay, 0.);
    ev_timer_start(r->loop, &g->recheck);
}

/* Re-check an instance soon (a write failed and must be tried again). */
static void grp_arm(grp_t *g)
{
    if (ev_is_active(&g->recheck) || g->round != NULL)
        return;
    ev_timer_set(&g->recheck, g->delay, 0.);
    ev_timer_start(g->r->loop, &g->recheck);
}

/* Start rounds for marked instances, checks up to the cap, and finish complete rounds;
 * every entry point ends here. Not re-entrant: a nested call returns at once. */
static void drive(rdy_t *r)
{
    if (r->driving || !r->leading || r->p == NULL)
        return;
    r->driving = true;
    size_t n = 0;
    const char **keys = bd_hmap_keys_sorted(r->grps, &n);
    for (size_t k = 0; keys && k < n; k++) {
        grp_t *g = bd_hmap_get(r->grps, keys[k]);
        if (g->marked && g->round == NULL)
            round_start(g);
    }
    free(keys);
    /* bounded: each pass finishes a round, and a finished round restarts only if marked */
    for (size_t pass = 0; pass < 4 * bd_hmap_count(r->grps) + 4; pass++) {
        pump(r);
        round_t *done = r->rounds;
        while (done && (done->running > 0 || done->next_zone < done->nz))
            done = done->next;
        if (done == NULL)
            break;
        grp_t *g = done->g;
        round_finish(done);
        if (g->marked)
            round_start(g);
    }
    r->driving = false;
}

/* ---- the contract ------------------------------------------------------------------------ */

void rdy_opts_init(rdy_opts_t *o)
{
    memset(o, 0, sizeof(*o));
}

int rdy_new(k8s_client_t *client, const rdy_opts_t *opts, rdy_t **out, bd_err_t *err)
{
    *out = NULL;
    if (client == NULL)
        return bd_err_set(err, BD_EINVAL, "readiness: a Kubernetes client is required");
    rdy_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return bd_err_set(err, BD_ENOMEM, "readiness: out of memory");
    r->c = client;
    r->loop = k8s_client_loop(client);
    if (opts != NULL)
        r->o = *opts;
    if (r->o.grace <= 0)
        r->o.grace = 1.0;
    if (r->o.recheck_max <= 0)
        r->o.recheck_max = 30.0;
    if (r->o.retransfer_after == 0)
        r->o.retransfer_after = 3;
    if (r->o.rndc_timeout <= 0)
        r->o.rndc_timeout = 5.0;
    r->selector = strdup(r->o.label_selector ? r->o.label_selector : RDY_DEFAULT_SELECTOR);
    r->o.label_selector = r->selector;
    r->pods = bd_hmap_new();
    r->grps = bd_hmap_new();
    if (r->selector == NULL || r->pods == NULL || r->grps == NULL) {
        rdy_free(r);
        return bd_err_set(err, BD_ENOMEM, "readiness: out of memory");
    }
    *out = r;
    return BD_OK;
}

void rdy_stop_leading(rdy_t *r)
{
    if (r == NULL)
        return;
    r->leading = false;
    k8s_refl_stop(r->refl);
    r->refl = NULL;
    size_t pos = 0;
    const char *k;
    void *v;
    /* rounds first: they borrow the instances */
    while (bd_hmap_next(r->grps, &pos, &k, &v)) {
        grp_t *g = v;
        round_free(g->round);
        g->round = NULL;
    }
    pos = 0;
    while (bd_hmap_next(r->pods, &pos, &k, &v))
        pod_free(v);
    pos = 0;
    while (bd_hmap_next(r->grps, &pos, &k, &v))
        grp_free(v);
    bd_hmap_free(r->pods);
    bd_hmap_free(r->grps);
    r->pods = bd_hmap_new();
    r->grps = bd_hmap_new();
    if (r->pods == NULL || r->grps == NULL)
        bd_error("readiness: out of memory");
}

void rdy_free(rdy_t *r)
{
    if (r == NULL)
        return;
    rdy_stop_leading(r);
    bd_hmap_free(r->pods);
    bd_hmap_free(r->grps);
    free(r->selector);
    free(r);
}

int rdy_start_leading(rdy_t *r, const proj_t *p, bd_err_t *err)
{
    r->p = p;
    if (r->leading)
        return BD_OK;
    if (r->pods == NULL || r->grps == NULL)
        return bd_err_set(err, BD_ENOMEM, "readiness: out of memory");
    k8s_refl_opts_t ro = {.res = {"discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true},
                          .label_selector = r->selector};
    k8s_refl_hooks_t h = {refl_begin, refl_item, refl_end, refl_event, refl_bookmark, NULL};
    int rc = k8s_refl_start(r->c, &ro, &h, r, &r->refl, err);
    if (rc == BD_OK)
        r->leading = true;
    return rc;
}

/* The hidden primary has no NOTIFY targets of its own in a cluster (pod addresses are
 * known only here): the pods of instances that pull from bindy hear of a change at once
 * rather than at their next refresh. Secondaries pull from primaries, which notify them. */
static void notify_change(rdy_t *r, const proj_t *p, const char *zone, const char *inst)
{
    size_t ni = 0;
    const proj_instance_t **insts = proj_instances(p, &ni);
    const proj_instance_t *const *pi = insts ? bsearch(inst, insts, ni, sizeof(*insts), inst_cmp) : NULL;
    grp_t *g = bd_hmap_get(r->grps, inst);
    if (pi == NULL || g == NULL || (*pi)->upstream.n > 0 || r->o.srv == NULL)
        return;
    size_t pos = 0;
    const char *k;
    void *v;
    while (bd_hmap_next(r->pods, &pos, &k, &v)) {
        const pod_t *pd = v;
        char target[INET6_ADDRSTRLEN + 10];
        if (pd->g != g)
            continue;
        snprintf(target, sizeof(target), strchr(pd->addr, ':') ? "[%s]:%u" : "%s:%u", pd->addr, pd->dns_port);
        if (bind_server_notify_to(r->o.srv, zone, target) == BD_OK)
            r->st.notifies++;
    }
}

int rdy_mark_changes(rdy_t *r, const proj_t *p, const proj_changes_t *ch)
{
    if (r == NULL || !r->leading)
        return BD_OK;
    size_t ni = 0;
    const proj_instance_t **insts = proj_instances(p, &ni);
    for (size_t i = 0; i < ch->nzones; i++) {
        const proj_zone_t *z = proj_zone_get(p, ch->zones[i].zone);
        for (size_t k = 0; z && proj_zone_is_catalog(z) && k < ni; k++)
            if (strcmp(insts[k]->catalog, ch->zones[i].zone) == 0)
                notify_change(r, p, ch->zones[i].zone, insts[k]->key);
        if (z == NULL || proj_zone_is_catalog(z)) {
            /* a catalog or a deleted zone: which instance it concerned is not at hand, and
             * instances are few */
            size_t pos = 0;
            const char *k;
            void *v;
            while (bd_hmap_next(r->grps, &pos, &k, &v))
                ((grp_t *)v)->marked = true;
            continue;
        }
        const res_strv_t *in = proj_zone_instances(z);
        for (size_t k = 0; in && k < in->n; k++) {
            grp_t *g = bd_hmap_get(r->grps, in->v[k]);
            if (g)
                g->marked = true;
            if (!ch->zones[i].created) /* not on the pods yet: the catalog's NOTIFY brings it */
                notify_change(r, p, ch->zones[i].zone, in->v[k]);
        }
    }
    for (size_t i = 0; i < ch->instances.n; i++) {
        grp_t *g = bd_hmap_get(r->grps, ch->instances.v[i]);
        if (g)
            g->marked = true;
    }
    return BD_OK;
}

void rdy_sync(rdy_t *r, const proj_t *p)
{
    if (r == NULL)
        return;
    r->p = p;
    drive(r);
}

void rdy_stats(const rdy_t *r, rdy_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    if (r == NULL)
        return;
    *st = r->st;
    st->pods = bd_hmap_count(r->pods);
    st->ready = st->lagging = 0;
    size_t pos = 0;
    const char *k;
    void *v;
    while (bd_hmap_next(r->pods, &pos, &k, &v)) {
        const pod_t *pd = v;
        st->ready += pd->known && pd->have == CST_TRUE;
        st->lagging += pd->behind > 0;
    }
}
