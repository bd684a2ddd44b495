/*
 * apply.c - the workload applier (see apply.h).
 *
 * State per instance key ("ns/name"): the hash of each object as last applied, the rndc
 * key read from (or generated for) its Secret, its Service's ClusterIP (the address its
 * secondaries pull from) and the calls in flight, one slot per object. An instance is
 * "stepped" only when it is marked, due and has no call in flight; a step issues at most
 * one batch (a read it needs first, or the applies/deletes) and every completion
 * schedules the timer again, so nothing runs re-entrantly from a callback.
 */
#include "apply.h"

#include <ev.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "hmap.h"
#include "keys.h"
#include "log.h"
#include "server.h"
#include "workload.h"

#define WLA_HASH_LEN 16
#define WLA_WAIT_MIN 0.5
#define WLA_WAIT_MAX 30.0
#define WLA_KEY_MAX 320
#define WLA_INSTANCE_API_VERSION "bindy.firestoned.io/v1beta1"

typedef struct wla_inst wla_inst_t;

typedef enum { OP_NONE, OP_APPLY, OP_GET, OP_DELETE, OP_PROBE } wla_op_t;

typedef struct {
    wla_inst_t *i;
    wla_op_t op;
    int k;             /* apply: wl_obj_t; delete path: index into refs */
    k8s_call_t *call;
    uint8_t sent[WLA_HASH_LEN]; /* apply: hash of the bytes in flight */
    wl_ref_t ref;      /* get/delete: the object */
    bool unrendered;   /* delete of an object no longer rendered (we applied it) */
} wla_slot_t;

struct wla_inst {
    wla_t *w;
    char *key, *ns, *name;
    char *uid;         /* the instance's uid, last seen in the projection */
    bool marked;
    double due;        /* loop time before which the instance is not stepped (waiting) */
    double wait;       /* current wait for an upstream address */
    unsigned pending;  /* slot calls in flight */
    bool failed;       /* a call of the current batch failed: mark again */
    bool deleting;
    wla_slot_t slot[WL_OBJ_COUNT];
    bool have[WL_OBJ_COUNT];
    uint8_t hash[WL_OBJ_COUNT][WLA_HASH_LEN];
    /* Events: an apply is a change only if the object's resourceVersion moved, so the
     * version before it must be known (from our last answer, or a read: a probe). */
    bool rv_known[WL_OBJ_COUNT];
    char *rv[WL_OBJ_COUNT];            /* NULL while known: the object does not exist */
    uint64_t fail_digest[WL_OBJ_COUNT]; /* the ApplyFailed last posted (0: none) */
    bool again;                         /* the batch probed: apply in the next one */
    k8s_call_t *secret_call; /* GET of <inst>-keys */
    /* spec.rndcKey.secretRef: the key read from it (wiped) and for which Secret and data
     * key; while it cannot be had, why (the instance is not applied meanwhile) */
    k8s_call_t *ref_call;
    char *ref_name, *ref_key, *ref_b64;
    char *problem;
    double ref_due, ref_wait;
    char *rndc_alg_want;     /* the algorithm to generate for (copied at step) */
    char *rndc_b64;          /* cached rndc secret; wiped */
    /* this instance's Service ClusterIP (its secondaries pull from it) */
    k8s_call_t *ip_call;
    char *svc_ip;
    double ip_due, ip_wait;
};

struct wla {
    k8s_client_t *c;
    struct ev_loop *loop;
    const proj_t *p;
    char *op_ns, *hp_name, *image, *suffix, *xfr_alg, *xfr_b64;
    uint16_t hp_port;
    bool (*fence)(void *arg);
    void *fence_arg;
    void (*on_problem)(void *arg, const char *key);
    void *on_problem_arg;
    bd_hmap_t *insts; /* key -> wla_inst_t */
    bd_hmap_t *dirty; /* key -> wla_inst_t (marked) */
    k8s_events_t *events; /* on the instances: objects created, updated, deleted, refused */
    char *hp_ip;
    k8s_call_t *hp_call;
    double hp_due, hp_wait;
    ev_timer timer;
    wla_stats_t st;
};

static const k8s_res_t SVC_RES = {"", "v1", "services", "Service", true};
static const k8s_res_t SECRET_RES = {"", "v1", "secrets", "Secret", true};

/* ---- helpers ------------------------------------------------------------------------- */

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

static void wipe_free(char *s)
{
    if (s != NULL) {
        volatile char *v = s;
        while (*v)
            *v++ = 0;
        free(s);
    }
}

/* The k8s_res_t of an object from its apiVersion ("apps/v1"), resource and kind; the
 * strings live in the caller's buffers. */
static k8s_res_t ref_res(const char *api_version, const char *resource, const char *kind, char group[64],
                         char version[32])
{
    const char *slash = strchr(api_version, '/');
    if (slash != NULL) {
        snprintf(group, 64, "%.*s", (int)(slash - api_version), api_version);
        snprintf(version, 32, "%s", slash + 1);
    } else {
        group[0] = 0;
        snprintf(version, 32, "%s", api_version);
    }
    k8s_res_t r = {group, version, resource, kind, true};
    return r;
}

static int obj_hash(const json_t *obj, uint8_t out[WLA_HASH_LEN])
{
    char *s = NULL;
    if (wl_dump(obj, &s) != BD_OK)
        return BD_ENOMEM;
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    int ok = EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
    free(s);
    if (!ok)
        return BD_ENOMEM;
    memcpy(out, md, WLA_HASH_LEN);
    return BD_OK;
}

static void backoff_key(char out[WLA_KEY_MAX], const char *resource, const char *ns, const char *name)
{
    snprintf(out, WLA_KEY_MAX, "wla/%s/%s/%s", resource, ns, name);
}

static double loop_now(const wla_t *w) { return ev_now(w->loop); }

static bool fence_ok(wla_t *w)
{
    if (w->fence != NULL && !w->fence(w->fence_arg)) {
        w->st.fenced++;
        return false;
    }
    return true;
}

/* ---- events and resourceVersions ------------------------------------------------------- */

/* What we know of object k's resourceVersion: rv (NULL: it does not exist). Out of memory
 * leaves it unknown, which costs a read before the next apply. */
static void rv_set(wla_inst_t *i, int k, const char *rv)
{
    free(i->rv[k]);
    i->rv[k] = rv != NULL ? strdup(rv) : NULL;
    i->rv_known[k] = rv == NULL || i->rv[k] != NULL;
}

/* Someone else may have written meanwhile (another leader): read before applying again. */
static void rv_forget(wla_inst_t *i)
{
    for (int k = 0; k < WL_OBJ_COUNT; k++) {
        free(i->rv[k]);
        i->rv[k] = NULL;
        i->rv_known[k] = false;
        i->fail_digest[k] = 0;
    }
}

static const char *obj_rv(const json_t *obj)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
}

static uint64_t fnv64(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h ? h : 1;
}

/* An Event on the instance (best effort: the recorder logs a failure). */
__attribute__((format(printf, 4, 5))) static void post(wla_inst_t *i, const char *type, const char *reason,
                                                       const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    k8s_event_t ev = {WLA_INSTANCE_API_VERSION, "Bind9Instance", i->ns, i->name, i->uid, type, reason, msg};
    (void)k8s_event_post(i->w->events, &ev);
}

/* ---- scheduling ------------------------------------------------------------------------ */

static void flush(wla_t *w);

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    flush(t->data);
}

/* Make the timer fire no later than `at` (loop time). */
static void schedule(wla_t *w, double at)
{
    double now = loop_now(w);
    double after = at > now ? at - now : 0.0;
    if (ev_is_active(&w->timer)) {
        if (ev_timer_remaining(w->loop, &w->timer) <= after)
            return;
        ev_timer_stop(w->loop, &w->timer);
    }
    ev_timer_set(&w->timer, after, 0.0);
    ev_timer_start(w->loop, &w->timer);
}

/* ---- instances ------------------------------------------------------------------------- */

/* Cancel *call if one is in flight (no callback) and stop counting it. */
static void call_drop(wla_t *w, k8s_call_t **call)
{
    if (*call == NULL)
        return;
    k8s_call_cancel(*call);
    *call = NULL;
    w->st.inflight--;
}

static void inst_cancel(wla_inst_t *i)
{
    for (int k = 0; k < WL_OBJ_COUNT; k++) {
        call_drop(i->w, &i->slot[k].call);
        i->slot[k].op = OP_NONE;
    }
    i->pending = 0;
    call_drop(i->w, &i->secret_call);
    call_drop(i->w, &i->ip_call);
    call_drop(i->w, &i->ref_call);
}

/* Forget the key read from spec.rndcKey.secretRef (read again when next needed). */
static void ref_forget(wla_inst_t *i)
{
    wipe_free(i->ref_b64);
    free(i->ref_name);
    free(i->ref_key);
    i->ref_b64 = i->ref_name = i->ref_key = NULL;
    i->ref_due = i->ref_wait = 0;
}

/* Why the instance cannot be applied (NULL: it can); the caller hears of each change. */
static void set_problem(wla_inst_t *i, const char *msg)
{
    if (msg == i->problem || (msg && i->problem && strcmp(msg, i->problem) == 0))
        return;
    char *m = msg ? strdup(msg) : NULL;
    if (msg && m == NULL)
        return; /* out of memory: the next read tries again */
    free(i->problem);
    i->problem = m;
    if (i->w->on_problem != NULL)
        i->w->on_problem(i->w->on_problem_arg, i->key);
}

static void inst_free(wla_inst_t *i)
{
    if (i == NULL)
        return;
    inst_cancel(i);
    free(i->key);
    free(i->ns);
    free(i->name);
    free(i->uid);
    free(i->rndc_alg_want);
    wipe_free(i->rndc_b64);
    free(i->svc_ip);
    rv_forget(i);
    ref_forget(i);
    free(i->problem);
    free(i);
}

static bool inst_busy(const wla_inst_t *i)
{
    return i->pending > 0 || i->secret_call != NULL || i->ref_call != NULL;
}

/* The state of key, created when absent. NULL: BD_EINVAL (not "ns/name") or out of memory. */
static wla_inst_t *inst_get(wla_t *w, const char *key, int *rc)
{
    *rc = BD_OK;
    wla_inst_t *i = bd_hmap_get(w->insts, key);
    if (i != NULL)
        return i;
    const char *slash = strchr(key, '/');
    if (slash == NULL || slash == key || slash[1] == 0 || strchr(slash + 1, '/') != NULL) {
        *rc = BD_EINVAL;
        return NULL;
    }
    i = calloc(1, sizeof(*i));
    if (i == NULL || (i->key = strdup(key)) == NULL || (i->ns = strndup(key, (size_t)(slash - key))) == NULL ||
        (i->name = strdup(slash + 1)) == NULL || bd_hmap_put(w->insts, key, i, NULL) != BD_OK) {
        inst_free(i);
        *rc = BD_ENOMEM;
        return NULL;
    }
    i->w = w;
    for (int k = 0; k < WL_OBJ_COUNT; k++)
        i->slot[k].i = i;
    return i;
}

static int inst_mark(wla_inst_t *i)
{
    if (i->marked)
        return BD_OK;
    if (bd_hmap_put(i->w->dirty, i->key, i, NULL) != BD_OK)
        return BD_ENOMEM;
    i->marked = true;
    return BD_OK;
}

static void inst_unmark(wla_inst_t *i)
{
    if (i->marked) {
        bd_hmap_del(i->w->dirty, i->key);
        i->marked = false;
    }
}

/* Forget an instance that is gone and has nothing in flight. */
static void inst_drop(wla_inst_t *i)
{
    inst_unmark(i);
    bd_hmap_del(i->w->insts, i->key);
    inst_free(i);
}

static const proj_instance_t *find_instance(const proj_t *p, const char *key)
{
    size_t n = 0;
    const proj_instance_t **v = proj_instances(p, &n);
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v[mid]->key, key);
        if (c == 0)
            return v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void set_uid(wla_inst_t *i, const proj_instance_t *pi)
{
    const char *uid = pi->res != NULL ? pi->res->meta.uid : NULL;
    if (uid == NULL || (i->uid != NULL && strcmp(i->uid, uid) == 0))
        return;
    char *u = strdup(uid);
    if (u != NULL) {
        free(i->uid);
        i->uid = u;
    }
}

/* Every marked instance waiting for an address: due now. */
static void wake_waiting(wla_t *w)
{
    size_t pos = 0;
    const char *key;
    void *v;
    while (bd_hmap_next(w->dirty, &pos, &key, &v)) {
        wla_inst_t *i = v;
        i->due = 0;
        i->wait = 0;
    }
    schedule(w, loop_now(w));
}

/* Instance key's Service has address ip (NULL: none). A change marks its dependents. */
static void learn_ip(wla_inst_t *i, const char *ip)
{
    wla_t *w = i->w;
    if (ip != NULL && (*ip == 0 || strcmp(ip, "None") == 0))
        ip = NULL;
    if (ip == NULL) {
        if (i->svc_ip == NULL) { /* wait before asking again */
            i->ip_wait = i->ip_wait == 0 ? WLA_WAIT_MIN : (i->ip_wait * 2 > WLA_WAIT_MAX ? WLA_WAIT_MAX : i->ip_wait * 2);
            i->ip_due = loop_now(w) + i->ip_wait;
        }
        return;
    }
    i->ip_wait = 0;
    i->ip_due = 0;
    if (i->svc_ip != NULL && strcmp(i->svc_ip, ip) == 0)
        return;
    char *c = strdup(ip);
    if (c == NULL)
        return;
    bool changed = i->svc_ip != NULL;
    free(i->svc_ip);
    i->svc_ip = c;
    if (w->p == NULL)
        return;
    /* the secondaries that pull from it: a changed address must be rendered again */
    size_t n = 0;
    const proj_instance_t **v = proj_instances(w->p, &n);
    for (size_t j = 0; changed && j < n; j++)
        for (size_t u = 0; u < v[j]->upstream.n; u++)
            if (strcmp(v[j]->upstream.v[u], i->key) == 0) {
                int rc;
                wla_inst_t *d = inst_get(w, v[j]->key, &rc);
                if (d == NULL || inst_mark(d) != BD_OK)
                    bd_warn("workload %s Bind9Instance: out of memory", v[j]->key);
            }
    wake_waiting(w);
}

/* ---- reads: the hidden primary's and the upstream primaries' Services --------------- */

static const char *cluster_ip(const json_t *svc)
{
    return json_string_value(json_object_get(json_object_get(svc, "spec"), "clusterIP"));
}

static void on_hp(void *arg, const k8s_resp_t *r)
{
    wla_t *w = arg;
    w->hp_call = NULL;
    w->st.inflight--;
    const char *ip = r->code == BD_OK ? cluster_ip(r->body) : NULL;
    if (ip != NULL && *ip && strcmp(ip, "None") != 0) {
        char *c = strdup(ip);
        if (c != NULL) {
            free(w->hp_ip);
            w->hp_ip = c;
            w->hp_wait = 0;
            bd_info("workload: hidden primary %s/%s Service at %s", w->op_ns, w->hp_name, ip);
            wake_waiting(w);
            return;
        }
    }
    if (r->code != BD_OK && r->code != BD_ENOTFOUND)
        w->st.errors++;
    w->hp_wait = w->hp_wait == 0 ? WLA_WAIT_MIN : (w->hp_wait * 2 > WLA_WAIT_MAX ? WLA_WAIT_MAX : w->hp_wait * 2);
    w->hp_due = loop_now(w) + w->hp_wait;
    bd_warn("workload: hidden primary %s/%s Service: %s; primaries wait %.1f s", w->op_ns, w->hp_name,
            r->code == BD_OK ? "no spec.clusterIP yet" : r->message, w->hp_wait);
    schedule(w, w->hp_due);
}

static void on_ip(void *arg, const k8s_resp_t *r)
{
    wla_inst_t *i = arg;
    wla_t *w = i->w;
    i->ip_call = NULL;
    w->st.inflight--;
    if (r->code != BD_OK && r->code != BD_ENOTFOUND) {
        w->st.errors++;
        bd_warn("workload %s/%s Service: reading its ClusterIP failed: %s (%s)", i->ns, i->name, r->message,
                bd_strerror(r->code));
    }
    learn_ip(i, r->code == BD_OK ? cluster_ip(r->body) : NULL);
    if (i->svc_ip == NULL)
        schedule(w, i->ip_due);
}

/* Read a Service (for its ClusterIP): one GET in flight at a time, under the per-object
 * backoff; when it cannot be sent, try again after WLA_WAIT_MIN. */
static void svc_read(wla_t *w, const char *ns, const char *name, k8s_done_cb cb, void *arg, k8s_call_t **call,
                     double *due)
{
    char bk[WLA_KEY_MAX];
    backoff_key(bk, "services", ns, name);
    char *path = k8s_path(&SVC_RES, ns, name, NULL);
    k8s_req_t req = {.method = K8S_GET, .path = path, .backoff_key = bk};
    if (path != NULL && k8s_call(w->c, &req, cb, arg, call) == BD_OK) {
        w->st.inflight++;
        w->st.reads++;
    } else {
        *due = loop_now(w) + WLA_WAIT_MIN;
    }
    free(path);
}

/* Addresses instance i pulls from into up[], and for a secondary the hidden primary's into
 * *fallback (all borrowed); BD_OK, or BD_EBUSY when it has to wait (a read was started or
 * is due later: i->due says when to try again). */
static int resolve(wla_inst_t *i, const proj_instance_t *pi, const char **up, size_t cap, size_t *nup,
                   uint16_t *port, const char **fallback)
{
    wla_t *w = i->w;
    double now = loop_now(w);
    *nup = 0;
    *port = 0;
    *fallback = NULL;
    /* Every instance needs the hidden primary: a primary pulls from it, a secondary asks
     * it last (wl_opts_t.fallback). */
    if (w->hp_ip == NULL) {
        if (w->hp_call == NULL && w->hp_due <= now)
            svc_read(w, w->op_ns, w->hp_name, on_hp, w, &w->hp_call, &w->hp_due);
        i->due = w->hp_call != NULL ? 0 : w->hp_due;
        return BD_EBUSY;
    }
    if (pi->res->u.instance.role == RES_ROLE_PRIMARY || pi->upstream.n == 0) {
        up[(*nup)++] = w->hp_ip;
        *port = w->hp_port;
        return BD_OK;
    }
    *fallback = w->hp_ip;
    bool wait = false;
    double due = 0;
    for (size_t u = 0; u < pi->upstream.n && *nup < cap; u++) {
        int rc;
        wla_inst_t *ui = inst_get(w, pi->upstream.v[u], &rc);
        if (ui == NULL)
            return rc == BD_ENOMEM ? BD_ENOMEM : BD_EBUSY;
        if (ui->svc_ip != NULL) {
            up[(*nup)++] = ui->svc_ip;
            continue;
        }
        wait = true;
        if (ui->ip_call == NULL && ui->ip_due <= now)
            svc_read(w, ui->ns, ui->name, on_ip, ui, &ui->ip_call, &ui->ip_due);
        if (ui->ip_call == NULL && ui->ip_due > due)
            due = ui->ip_due;
    }
    if (wait) {
        i->due = due;
        return BD_EBUSY;
    }
    return BD_OK;
}

/* ---- the Secret: keep the rndc key ------------------------------------------------------ */

static int generate_rndc(wla_inst_t *i)
{
    bind_server_alg_t alg = BIND_SERVER_HMAC_SHA512; /* 64 bytes serve every HMAC */
    if (i->rndc_alg_want != NULL && bind_server_alg_parse(i->rndc_alg_want, &alg) != 0)
        alg = BIND_SERVER_HMAC_SHA512;
    bind_server_key_t key;
    char b64[BIND_KEY_B64_MAX];
    int rc = bind_server_key_generate(&key, "rndc", alg);
    if (rc == 0)
        rc = bind_server_key_b64(&key, b64, sizeof(b64));
    bind_server_key_wipe(&key);
    if (rc == 0 && (i->rndc_b64 = strdup(b64)) == NULL)
        rc = BD_ENOMEM;
    volatile char *v = b64;
    for (size_t n = 0; n < sizeof(b64); n++)
        v[n] = 0;
    return rc;
}

static void on_secret(void *arg, const k8s_resp_t *r)
{
    wla_inst_t *i = arg;
    wla_t *w = i->w;
    i->secret_call = NULL;
    w->st.inflight--;
    if (r->code == BD_OK || r->code == BD_ENOTFOUND) {
        rv_set(i, WL_SECRET, r->code == BD_OK ? obj_rv(r->body) : NULL);
        char *alg = NULL, *sec = NULL;
        int rc = r->code == BD_OK ? wl_rndc_from_secret(r->body, &alg, &sec) : BD_ENOTFOUND;
        free(alg);
        if (rc == BD_OK) {
            wipe_free(i->rndc_b64);
            i->rndc_b64 = sec;
        } else {
            if (rc == BD_EINVAL)
                bd_warn("workload %s/%s-keys Secret: malformed rndc key; generating a new one", i->ns, i->name);
            if (generate_rndc(i) != 0) {
                w->st.errors++;
                bd_error("workload %s/%s Bind9Instance: cannot generate an rndc key", i->ns, i->name);
            } else {
                bd_info("workload %s/%s Bind9Instance: generated its rndc key", i->ns, i->name);
            }
        }
    } else {
        w->st.errors++;
        bd_warn("workload %s/%s-keys Secret: read failed: %s (%s); retrying", i->ns, i->name, r->message,
                bd_strerror(r->code));
    }
    if (inst_mark(i) != BD_OK)
        bd_warn("workload %s Bind9Instance: out of memory", i->key);
    schedule(w, loop_now(w));
}

/* The Secret of spec.rndcKey.secretRef was read: keep its key, or say why there is none
 * and read again later (0.5 s doubling to 30 s: the user may create it any time). */
static void on_ref(void *arg, const k8s_resp_t *r)
{
    wla_inst_t *i = arg;
    wla_t *w = i->w;
    i->ref_call = NULL;
    w->st.inflight--;
    char msg[700];
    msg[0] = 0;
    if (r->code == BD_OK) {
        char *b64 = NULL;
        int rc = wl_rndc_from_ref(r->body, i->ref_key, &b64);
        if (rc == BD_OK) {
            wipe_free(i->ref_b64);
            i->ref_b64 = b64;
            i->ref_wait = i->ref_due = 0;
            set_problem(i, NULL);
        } else if (rc == BD_ENOTFOUND) {
            snprintf(msg, sizeof(msg), "spec.rndcKey.secretRef: Secret %s/%s has no key \"%s\"", i->ns, i->ref_name,
                     i->ref_key);
        } else {
            snprintf(msg, sizeof(msg), "spec.rndcKey.secretRef: Secret %s/%s key \"%s\" is not base64 key material",
                     i->ns, i->ref_name, i->ref_key);
        }
    } else if (r->code == BD_ENOTFOUND) {
        snprintf(msg, sizeof(msg), "spec.rndcKey.secretRef: Secret %s/%s (key \"%s\") not found", i->ns, i->ref_name,
                 i->ref_key);
    } else {
        w->st.errors++;
        bd_warn("workload %s/%s Secret: read failed: %s (%s); retrying", i->ns, i->ref_name, r->message,
                bd_strerror(r->code));
    }
    if (i->ref_b64 == NULL) {
        if (msg[0]) {
            if (i->problem == NULL || strcmp(i->problem, msg) != 0)
                bd_warn("workload %s Bind9Instance: %s; not applied until it is", i->key, msg);
            set_problem(i, msg);
        }
        i->ref_wait = i->ref_wait == 0 ? WLA_WAIT_MIN : (i->ref_wait * 2 > WLA_WAIT_MAX ? WLA_WAIT_MAX : i->ref_wait * 2);
        i->ref_due = loop_now(w) + i->ref_wait;
    }
    if (inst_mark(i) != BD_OK)
        bd_warn("workload %s Bind9Instance: out of memory", i->key);
    schedule(w, loop_now(w));
}

/* The key of spec.rndcKey.secretRef into *b64 (borrowed), or NULL without a reference.
 * BD_EBUSY: not known yet (a read started, or one is due at i->due). */
static int ref_key(wla_inst_t *i, const res_instance_t *in, const char **b64)
{
    wla_t *w = i->w;
    *b64 = NULL;
    if (in->rndc_secret_name == NULL) {
        if (i->ref_name != NULL && i->ref_b64 != NULL) { /* the key last in use stays */
            wipe_free(i->rndc_b64);
            i->rndc_b64 = i->ref_b64;
            i->ref_b64 = NULL;
        }
        if (i->ref_name != NULL)
            ref_forget(i);
        set_problem(i, NULL);
        return BD_OK;
    }
    const char *key = in->rndc_secret_key ? in->rndc_secret_key : WL_RNDC_REF_KEY;
    if (i->ref_name == NULL || strcmp(i->ref_name, in->rndc_secret_name) != 0 || strcmp(i->ref_key, key) != 0) {
        ref_forget(i); /* another Secret or key: read it at once */
        i->ref_name = strdup(in->rndc_secret_name);
        i->ref_key = strdup(key);
        if (i->ref_name == NULL || i->ref_key == NULL) {
            ref_forget(i);
            i->due = loop_now(w) + WLA_WAIT_MIN;
            return BD_EBUSY;
        }
    }
    if (i->ref_b64 != NULL) {
        *b64 = i->ref_b64;
        return BD_OK;
    }
    if (i->ref_due > loop_now(w)) {
        i->due = i->ref_due;
        return BD_EBUSY;
    }
    char bk[WLA_KEY_MAX];
    backoff_key(bk, "secrets", i->ns, i->ref_name);
    char *path = k8s_path(&SECRET_RES, i->ns, i->ref_name, NULL);
    k8s_req_t req = {.method = K8S_GET, .path = path, .backoff_key = bk};
    if (path != NULL && k8s_call(w->c, &req, on_ref, i, &i->ref_call) == BD_OK) {
        w->st.inflight++;
        w->st.reads++;
    } else {
        i->due = loop_now(w) + WLA_WAIT_MIN;
    }
    free(path);
    return BD_EBUSY;
}

/* ---- completions ------------------------------------------------------------------------ */

static void batch_done(wla_inst_t *i)
{
    wla_t *w = i->w;
    if (i->pending > 0)
        return;
    if (i->failed || i->again) {
        i->failed = i->again = false;
        /* retried at once: the calls' backoff keys make the client wait; after probes,
         * the applies follow at once */
        if (inst_mark(i) != BD_OK)
            bd_warn("workload %s Bind9Instance: out of memory", i->key);
    } else if (i->deleting) {
        i->deleting = false;
        memset(i->have, 0, sizeof(i->have));
        rv_forget(i);
        if (!i->marked && i->ip_call == NULL) {
            bd_info("workload %s Bind9Instance: its workloads are deleted", i->key);
            inst_drop(i);
            return;
        }
    }
    if (i->marked)
        schedule(w, loop_now(w));
}

static void slot_end(wla_slot_t *s)
{
    s->call = NULL;
    s->op = OP_NONE;
    s->i->pending--;
    s->i->w->st.inflight--;
}

static void on_apply(void *arg, const k8s_resp_t *r)
{
    wla_slot_t *s = arg;
    wla_inst_t *i = s->i;
    wla_t *w = i->w;
    int k = s->k;
    slot_end(s);
    char name[WL_OBJ_NAME_MAX];
    wl_name((wl_obj_t)k, i->name, name);
    const char *kind = wl_kind((wl_obj_t)k);
    if (r->code == BD_OK) {
        w->st.applies++;
        i->have[k] = true;
        memcpy(i->hash[k], s->sent, WLA_HASH_LEN);
        /* a server-side apply that changes nothing keeps the resourceVersion */
        const char *rv = obj_rv(r->body);
        bool created = r->status == 201 || (i->rv_known[k] && i->rv[k] == NULL);
        bool updated = !created && i->rv_known[k] && rv != NULL && strcmp(i->rv[k], rv) != 0;
        if (created || updated)
            post(i, "Normal", created ? "Created" : "Updated", "%s %s %s", created ? "created" : "updated", kind,
                 name);
        rv_set(i, k, rv);
        i->fail_digest[k] = 0;
        if (k == WL_SERVICE)
            learn_ip(i, cluster_ip(r->body));
    } else {
        w->st.errors++;
        i->have[k] = false;
        i->failed = true;
        bd_warn("workload %s/%s %s: apply failed: %s (%s); retrying", i->ns, i->name, kind, r->message,
                bd_strerror(r->code));
        /* once per outcome: the retries of the same refusal post nothing more */
        char d[1100];
        snprintf(d, sizeof(d), "%d\n%s", r->code, r->message);
        uint64_t digest = fnv64(d);
        if (digest != i->fail_digest[k]) {
            i->fail_digest[k] = digest;
            /* an Event is readable by more people than the Secret: no echo of its fields */
            post(i, "Warning", "ApplyFailed", "applying %s %s failed: %s (%s, HTTP %d)", kind, name,
                 k == WL_SECRET ? "refused" : r->message, bd_strerror(r->code), r->status);
        }
    }
    batch_done(i);
}

/* The read before a first apply: the object's resourceVersion, or that it does not exist. */
static void on_probe(void *arg, const k8s_resp_t *r)
{
    wla_slot_t *s = arg;
    wla_inst_t *i = s->i;
    int k = s->k;
    slot_end(s);
    if (r->code == BD_OK || r->code == BD_ENOTFOUND) {
        rv_set(i, k, r->code == BD_OK ? obj_rv(r->body) : NULL);
    } else {
        i->w->st.errors++;
        i->failed = true;
        bd_warn("workload %s/%s %s: read failed: %s (%s); retrying", i->ns, i->name, wl_kind((wl_obj_t)k),
                r->message, bd_strerror(r->code));
    }
    batch_done(i);
}

static int start_delete_call(wla_slot_t *s, const json_t *body);

static void on_delete(void *arg, const k8s_resp_t *r)
{
    wla_slot_t *s = arg;
    wla_inst_t *i = s->i;
    wla_t *w = i->w;
    bool unrendered = s->unrendered;
    int k = s->k;
    slot_end(s);
    if (r->code == BD_OK || r->code == BD_ENOTFOUND) {
        w->st.deletes++;
        if (unrendered) {
            i->have[k] = false;
            if (r->code == BD_OK)
                post(i, "Normal", "Deleted", "deleted %s %s (no longer rendered)", s->ref.kind, s->ref.name);
            rv_set(i, k, NULL);
        }
        bd_info("workload %s/%s %s: deleted", s->ref.ns, s->ref.name, s->ref.kind);
    } else {
        if (r->code != BD_ECONFLICT) /* a precondition: read again */
            w->st.errors++;
        i->failed = true;
        bd_warn("workload %s/%s %s: delete failed: %s (%s); retrying", s->ref.ns, s->ref.name, s->ref.kind,
                r->message, bd_strerror(r->code));
    }
    batch_done(i);
}

static void on_get_owned(void *arg, const k8s_resp_t *r)
{
    wla_slot_t *s = arg;
    wla_inst_t *i = s->i;
    wla_t *w = i->w;
    if (r->code == BD_ENOTFOUND) {
        slot_end(s);
        if (s->unrendered)
            rv_set(i, s->k, NULL);
        batch_done(i);
        return;
    }
    if (r->code != BD_OK) {
        slot_end(s);
        w->st.errors++;
        i->failed = true;
        bd_warn("workload %s/%s %s: read before delete failed: %s (%s); retrying", s->ref.ns, s->ref.name,
                s->ref.kind, r->message, bd_strerror(r->code));
        batch_done(i);
        return;
    }
    if (i->uid == NULL || !wl_owned_by(r->body, i->uid)) {
        slot_end(s);
        if (s->unrendered) /* someone else's: nothing of ours to delete */
            rv_set(i, s->k, NULL);
        bd_info("workload %s/%s %s: not controlled by Bind9Instance %s (uid %s); left alone", s->ref.ns, s->ref.name,
                s->ref.kind, i->key, i->uid ? i->uid : "?");
        batch_done(i);
        return;
    }
    if (!fence_ok(w)) {
        slot_end(s);
        i->failed = true; /* mark again: a later sync finishes it */
        batch_done(i);
        return;
    }
    const json_t *meta = json_object_get(r->body, "metadata");
    json_t *body = json_pack("{s:s, s:s, s:s, s:{s:s?, s:s?}}", "apiVersion", "v1", "kind", "DeleteOptions",
                             "propagationPolicy", "Background", "preconditions", "uid",
                             json_string_value(json_object_get(meta, "uid")), "resourceVersion",
                             json_string_value(json_object_get(meta, "resourceVersion")));
    s->call = NULL;
    i->pending--;
    w->st.inflight--;
    int rc = body != NULL ? start_delete_call(s, body) : BD_ENOMEM;
    json_decref(body);
    if (rc != BD_OK) {
        s->op = OP_NONE;
        w->st.errors++;
        i->failed = true;
        bd_warn("workload %s/%s %s: cannot start the delete: %s", s->ref.ns, s->ref.name, s->ref.kind,
                bd_strerror(rc));
        batch_done(i);
    }
}

static int start_slot_call(wla_slot_t *s, k8s_method_t m, const k8s_res_t *res, const char *ns, const char *name,
                           const char *query, const json_t *body, k8s_done_cb cb)
{
    char bk[WLA_KEY_MAX];
    backoff_key(bk, res->plural, ns, name);
    char *path = k8s_path(res, ns, name, NULL);
    if (path == NULL)
        return BD_ENOMEM;
    k8s_req_t req = {.method = m, .path = path, .query = query, .body = body, .backoff_key = bk};
    int rc = k8s_call(s->i->w->c, &req, cb, s, &s->call);
    free(path);
    if (rc == BD_OK) {
        s->i->pending++;
        s->i->w->st.inflight++;
    }
    return rc;
}

static int start_delete_call(wla_slot_t *s, const json_t *body)
{
    char g[64], v[32];
    k8s_res_t res = ref_res(s->ref.api_version, s->ref.resource, s->ref.kind, g, v);
    s->op = OP_DELETE;
    return start_slot_call(s, K8S_DELETE, &res, s->ref.ns, s->ref.name, NULL, body, on_delete);
}

/* ---- steps ------------------------------------------------------------------------------ */

/* The instance is gone: read each object it may own and delete those it controls. */
static void step_delete(wla_inst_t *i)
{
    wla_t *w = i->w;
    call_drop(w, &i->secret_call);
    call_drop(w, &i->ip_call);
    wipe_free(i->rndc_b64);
    i->rndc_b64 = NULL;
    free(i->svc_ip);
    i->svc_ip = NULL;
    call_drop(w, &i->ref_call);
    ref_forget(i);
    set_problem(i, NULL);
    if (i->uid == NULL) {
        bd_debug("workload %s Bind9Instance: gone, uid unknown: its objects are left to the garbage collector",
                 i->key);
        inst_drop(i);
        return;
    }
    if (!fence_ok(w))
        return;
    wl_ref_t refs[WL_OBJ_COUNT];
    size_t n = 0;
    bd_err_t err;
    if (wl_owned(i->ns, i->name, refs, &n, &err) != BD_OK) {
        bd_warn("workload %s Bind9Instance: %s", i->key, err.msg);
        inst_drop(i);
        return;
    }
    inst_unmark(i);
    i->deleting = true;
    for (size_t j = 0; j < n; j++) {
        wla_slot_t *s = &i->slot[j];
        s->ref = refs[j];
        s->k = (int)j;
        s->unrendered = false;
        s->op = OP_GET;
        char g[64], v[32];
        k8s_res_t res = ref_res(s->ref.api_version, s->ref.resource, s->ref.kind, g, v);
        int rc = start_slot_call(s, K8S_GET, &res, s->ref.ns, s->ref.name, NULL, NULL, on_get_owned);
        if (rc != BD_OK) {
            s->op = OP_NONE;
            i->failed = true;
            w->st.errors++;
        } else {
            w->st.reads++;
        }
    }
    batch_done(i);
}

static void step(wla_inst_t *i)
{
    wla_t *w = i->w;
    const proj_instance_t *pi = find_instance(w->p, i->key);
    if (pi == NULL || pi->res == NULL) {
        step_delete(i);
        return;
    }
    set_uid(i, pi);
    i->deleting = false;
    const res_instance_t *in = &pi->res->u.instance;
    const char *up[16];
    size_t nup = 0;
    uint16_t port = 0;
    const char *fallback = NULL;
    int rc = resolve(i, pi, up, sizeof(up) / sizeof(*up), &nup, &port, &fallback);
    if (rc != BD_OK)
        return; /* waiting: still marked */
    if (i->rndc_b64 == NULL) {
        free(i->rndc_alg_want);
        i->rndc_alg_want = xstrdup(in->rndc_algorithm);
        char bk[WLA_KEY_MAX], name[WL_OBJ_NAME_MAX];
        if (wl_name(WL_SECRET, i->name, name) != BD_OK) {
            bd_warn("workload %s Bind9Instance: not a valid instance name", i->key);
            inst_unmark(i);
            return;
        }
        backoff_key(bk, "secrets", i->ns, name);
        char *path = k8s_path(&SECRET_RES, i->ns, name, NULL);
        k8s_req_t req = {.method = K8S_GET, .path = path, .backoff_key = bk};
        if (path != NULL && k8s_call(w->c, &req, on_secret, i, &i->secret_call) == BD_OK) {
            w->st.inflight++;
            w->st.reads++;
        } else {
            i->due = loop_now(w) + WLA_WAIT_MIN;
        }
        free(path);
        return;
    }
    const char *ref_b64 = NULL;
    if (ref_key(i, in, &ref_b64) != BD_OK)
        return; /* waiting for the instance's own rndc key: still marked */
    if (!fence_ok(w))
        return;

    const res_t *cluster = in->cluster_ref != NULL ? proj_resource(w->p, "Bind9Cluster", i->ns, in->cluster_ref) : NULL;
    wl_opts_t o = {
        .image_repository = w->image,
        .operator_namespace = w->op_ns,
        .upstream = up,
        .nupstream = nup,
        .upstream_port = port,
        .fallback = fallback,
        .fallback_port = w->hp_port,
        .catalog_suffix = w->suffix,
        .xfr_algorithm = w->xfr_alg,
        .xfr_secret_b64 = w->xfr_b64,
        .rndc_secret_b64 = i->rndc_b64,
        .rndc_ref_b64 = ref_b64,
        /* the gate is set by src/readiness once the pod publishes every serial */
        .no_readiness_gate = false,
    };
    wl_objects_t objs;
    bd_err_t err;
    inst_unmark(i);
    if ((rc = wl_render(pi->res, cluster, &o, &objs, &err)) != BD_OK) {
        w->st.errors++;
        if (rc == BD_ENOMEM)
            inst_mark(i);
        /* a spec problem: nothing to retry until the instance changes */
        bd_error("workload %s Bind9Instance: cannot render: %s", i->key, err.msg);
        return;
    }
    /* first apply this leadership: read the version each object has, or an apply that
     * changes nothing could not be told from one that does (Events); the applies follow
     * in the next batch, all together */
    for (int k = 0; k < WL_OBJ_COUNT; k++) {
        wla_slot_t *s = &i->slot[k];
        const json_t *obj = objs.obj[k];
        if (obj == NULL || i->rv_known[k] || (i->have[k] && obj_hash(obj, s->sent) == BD_OK &&
                                              memcmp(i->hash[k], s->sent, WLA_HASH_LEN) == 0))
            continue;
        char g[64], v[32];
        k8s_res_t res = ref_res(wl_api_version((wl_obj_t)k), wl_resource((wl_obj_t)k), wl_kind((wl_obj_t)k), g, v);
        s->k = k;
        s->unrendered = false;
        s->op = OP_PROBE;
        if (start_slot_call(s, K8S_GET, &res, i->ns,
                            json_string_value(json_object_get(json_object_get(obj, "metadata"), "name")), NULL,
                            NULL, on_probe) == BD_OK) {
            w->st.reads++;
            i->again = true;
        } else {
            s->op = OP_NONE;
            i->failed = true;
            w->st.errors++;
        }
    }
    if (i->again || i->failed) {
        wl_objects_deinit(&objs);
        batch_done(i);
        return;
    }
    for (int k = 0; k < WL_OBJ_COUNT; k++) {
        wla_slot_t *s = &i->slot[k];
        s->k = k;
        s->unrendered = false;
        const json_t *obj = objs.obj[k];
        if (obj == NULL) {
            if (!i->have[k] && i->rv_known[k] && i->rv[k] == NULL)
                continue; /* known: nothing of ours by that name */
            /* no longer wanted (the PDB at replicas 1, the Deployment once a StatefulSet
             * replaces it): applied by us, delete it; else one may be left from before
             * this leadership: read it and delete it if the instance controls it */
            s->ref.api_version = wl_api_version((wl_obj_t)k);
            s->ref.kind = wl_kind((wl_obj_t)k);
            s->ref.resource = wl_resource((wl_obj_t)k);
            snprintf(s->ref.ns, sizeof(s->ref.ns), "%s", i->ns);
            if (wl_name((wl_obj_t)k, i->name, s->ref.name) != BD_OK)
                continue;
            s->unrendered = true;
            if (i->have[k]) {
                if (fence_ok(w) && start_delete_call(s, NULL) == BD_OK)
                    continue;
            } else {
                char g[64], v[32];
                k8s_res_t res = ref_res(s->ref.api_version, s->ref.resource, s->ref.kind, g, v);
                s->op = OP_GET;
                if (start_slot_call(s, K8S_GET, &res, s->ref.ns, s->ref.name, NULL, NULL, on_get_owned) == BD_OK) {
                    w->st.reads++;
                    continue;
                }
                w->st.errors++;
            }
            s->op = OP_NONE;
            i->failed = true;
            continue;
        }
        if (obj_hash(obj, s->sent) != BD_OK) {
            i->failed = true;
            continue;
        }
        if (i->have[k] && memcmp(i->hash[k], s->sent, WLA_HASH_LEN) == 0) {
            w->st.skipped++;
            continue;
        }
        const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
        char g[64], v[32];
        k8s_res_t res = ref_res(wl_api_version((wl_obj_t)k), wl_resource((wl_obj_t)k), wl_kind((wl_obj_t)k), g, v);
        s->op = OP_APPLY;
        rc = start_slot_call(s, K8S_PATCH_APPLY, &res, i->ns, name, "force=true", obj, on_apply);
        if (rc != BD_OK) {
            s->op = OP_NONE;
            i->failed = true;
            w->st.errors++;
            bd_warn("workload %s/%s %s: cannot start the apply: %s", i->ns, name ? name : "?", wl_kind((wl_obj_t)k),
                    bd_strerror(rc));
        }
    }
    wl_objects_deinit(&objs);
    batch_done(i);
}

static void flush(wla_t *w)
{
    if (w->p == NULL || bd_hmap_count(w->dirty) == 0)
        return;
    if (!fence_ok(w))
        return;
    size_t n = 0;
    const char **keys = bd_hmap_keys_sorted(w->dirty, &n);
    if (keys == NULL) {
        if (n > 0)
            schedule(w, loop_now(w) + 1.0);
        return;
    }
    /* copy the keys: a step may drop an instance (and its key) */
    char **own = calloc(n, sizeof(*own));
    for (size_t j = 0; own != NULL && j < n; j++)
        own[j] = strdup(keys[j]);
    free(keys);
    if (own == NULL) {
        schedule(w, loop_now(w) + 1.0);
        return;
    }
    double now = loop_now(w), next = 0;
    for (size_t j = 0; j < n; j++) {
        wla_inst_t *i = own[j] ? bd_hmap_get(w->dirty, own[j]) : NULL;
        free(own[j]);
        if (i == NULL || inst_busy(i))
            continue; /* stepped again when its calls complete */
        if (i->due > now) {
            if (next == 0 || i->due < next)
                next = i->due;
            continue;
        }
        i->due = 0;
        step(i); /* may drop i */
    }
    free(own);
    /* instances that had to wait: try again when due */
    size_t pos = 0;
    const char *key;
    void *v;
    while (bd_hmap_next(w->dirty, &pos, &key, &v)) {
        wla_inst_t *i = v;
        if (!inst_busy(i) && i->due > now && (next == 0 || i->due < next))
            next = i->due;
    }
    if (next != 0)
        schedule(w, next);
}

/* ---- public ------------------------------------------------------------------------------ */

void wla_opts_init(wla_opts_t *o) { memset(o, 0, sizeof(*o)); }

int wla_new(k8s_client_t *c, const wla_opts_t *o, wla_t **out, bd_err_t *err)
{
    if (out != NULL)
        *out = NULL;
    if (c == NULL || o == NULL || out == NULL)
        return bd_err_set(err, BD_EINVAL, "workload applier: no client or options");
    if (o->operator_namespace == NULL || *o->operator_namespace == 0)
        return bd_err_set(err, BD_EINVAL, "workload applier: the operator namespace is required");
    if (o->xfr_secret_b64 == NULL || *o->xfr_secret_b64 == 0)
        return bd_err_set(err, BD_EINVAL, "workload applier: the transfer key is required");
    wla_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return bd_err_set(err, BD_ENOMEM, "workload applier: out of memory");
    w->c = c;
    w->loop = k8s_client_loop(c);
    w->op_ns = strdup(o->operator_namespace);
    w->hp_name = strdup(o->hidden_primary_service ? o->hidden_primary_service : WLA_DEFAULT_HIDDEN_PRIMARY);
    w->image = xstrdup(o->image_repository);
    w->suffix = xstrdup(o->catalog_suffix);
    w->xfr_alg = strdup(o->xfr_algorithm ? o->xfr_algorithm : "hmac-sha256");
    w->xfr_b64 = strdup(o->xfr_secret_b64);
    w->hp_port = o->hidden_primary_port;
    w->fence = o->fence;
    w->fence_arg = o->fence_arg;
    w->on_problem = o->on_problem;
    w->on_problem_arg = o->on_problem_arg;
    w->insts = bd_hmap_new();
    w->dirty = bd_hmap_new();
    int rc = k8s_events_new(c, o->event_component, o->event_instance, &w->events, err);
    if (rc != BD_OK) {
        wla_free(w);
        return rc;
    }
    ev_timer_init(&w->timer, timer_cb, 0.0, 0.0);
    w->timer.data = w;
    if (!w->op_ns || !w->hp_name || (o->image_repository && !w->image) || (o->catalog_suffix && !w->suffix) ||
        !w->xfr_alg || !w->xfr_b64 || !w->insts || !w->dirty) {
        wla_free(w);
        return bd_err_set(err, BD_ENOMEM, "workload applier: out of memory");
    }
    *out = w;
    return BD_OK;
}

void wla_free(wla_t *w)
{
    if (w == NULL)
        return;
    if (w->loop != NULL)
        ev_timer_stop(w->loop, &w->timer);
    if (w->hp_call != NULL)
        k8s_call_cancel(w->hp_call);
    if (w->insts != NULL) {
        size_t pos = 0;
        const char *key;
        void *v;
        while (bd_hmap_next(w->insts, &pos, &key, &v))
            inst_free(v);
    }
    bd_hmap_free(w->insts);
    bd_hmap_free(w->dirty);
    k8s_events_free(w->events);
    free(w->op_ns);
    free(w->hp_name);
    free(w->image);
    free(w->suffix);
    free(w->xfr_alg);
    wipe_free(w->xfr_b64);
    free(w->hp_ip);
    free(w);
}

int wla_mark(wla_t *w, const char *key)
{
    if (w == NULL || key == NULL)
        return BD_EINVAL;
    int rc;
    wla_inst_t *i = inst_get(w, key, &rc);
    if (i == NULL)
        return rc;
    return inst_mark(i);
}

int wla_mark_all(wla_t *w, const proj_t *p)
{
    if (w == NULL || p == NULL)
        return BD_EINVAL;
    w->p = p;
    size_t n = 0;
    const proj_instance_t **v = proj_instances(p, &n);
    for (size_t j = 0; j < n; j++) {
        int rc;
        wla_inst_t *i = inst_get(w, v[j]->key, &rc);
        if (i == NULL)
            return rc;
        set_uid(i, v[j]);
        memset(i->have, 0, sizeof(i->have));
        if ((rc = inst_mark(i)) != BD_OK)
            return rc;
    }
    return BD_OK;
}

int wla_sync(wla_t *w, const proj_t *p)
{
    if (w == NULL || p == NULL)
        return BD_EINVAL;
    w->p = p;
    /* remember the uid of every marked instance still present, for a later delete */
    size_t pos = 0;
    const char *key;
    void *v;
    while (bd_hmap_next(w->dirty, &pos, &key, &v)) {
        const proj_instance_t *pi = find_instance(p, key);
        if (pi != NULL)
            set_uid(v, pi);
    }
    flush(w);
    return BD_OK;
}

void wla_reset(wla_t *w)
{
    if (w == NULL)
        return;
    call_drop(w, &w->hp_call);
    k8s_events_cancel(w->events);
    free(w->hp_ip);
    w->hp_ip = NULL;
    w->hp_due = w->hp_wait = 0;
    size_t pos = 0;
    const char *key;
    void *v;
    while (bd_hmap_next(w->insts, &pos, &key, &v)) {
        wla_inst_t *i = v;
        bool busy = inst_busy(i) || i->deleting;
        inst_cancel(i);
        i->deleting = i->failed = i->again = false;
        memset(i->have, 0, sizeof(i->have));
        rv_forget(i);
        wipe_free(i->rndc_b64);
        i->rndc_b64 = NULL;
        free(i->svc_ip);
        i->svc_ip = NULL;
        ref_forget(i); /* the Secret may change while we do not lead */
        i->due = i->wait = i->ip_due = i->ip_wait = 0;
        if (busy && inst_mark(i) != BD_OK) /* its work was interrupted: redo it */
            bd_warn("workload %s Bind9Instance: out of memory", i->key);
    }
}

void wla_stats(const wla_t *w, wla_stats_t *st)
{
    *st = w->st;
    k8s_events_stats_t es;
    k8s_events_stats(w->events, &es);
    st->events = es.created;
    st->event_errors = es.errors;
    st->event_inflight = es.inflight;
    st->pending = bd_hmap_count(w->dirty);
}

bool wla_idle(const wla_t *w)
{
    k8s_events_stats_t es;
    k8s_events_stats(w->events, &es);
    return bd_hmap_count(w->dirty) == 0 && w->st.inflight == 0 && es.inflight == 0;
}

const char *wla_problem(const wla_t *w, const char *key, const char **reason)
{
    if (reason != NULL)
        *reason = NULL;
    const wla_inst_t *i = w != NULL && key != NULL ? bd_hmap_get(w->insts, key) : NULL;
    if (i == NULL || i->problem == NULL)
        return NULL;
    if (reason != NULL)
        *reason = WLA_REASON_RNDC_KEY;
    return i->problem;
}

int wla_rndc_key(const wla_t *w, const char *key, char **secret_b64)
{
    *secret_b64 = NULL;
    const wla_inst_t *i = w != NULL && key != NULL ? bd_hmap_get(w->insts, key) : NULL;
    const char *k = i == NULL ? NULL : i->ref_name != NULL ? i->ref_b64 : i->rndc_b64;
    if (k == NULL)
        return BD_ENOTFOUND;
    return (*secret_b64 = strdup(k)) != NULL ? BD_OK : BD_ENOMEM;
}
