#include "status.h"

#include <ctype.h>
#include <ev.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"
#include "hmap.h"
#include "log.h"
#include "resource.h"

#define KST_GROUP "bindy.firestoned.io"
#define KST_VERSION "v1beta1"
#define KST_HASH_LEN 16

/* The conditions we manage, in the order written. */
enum { C_READY, C_PROGRESSING, C_DEGRADED, C_N };
static const char *const COND_TYPE[C_N] = {"Ready", "Progressing", "Degraded"};

/* Managed top-level status keys (bit i = KEYS[i]). */
static const char *const KEYS[] = {"observedGeneration", "conditions", "recordCount", "serial",
                                   "instances", "zone", "fqdn", "role", "replicas", "readyReplicas"};
#define NKEYS (sizeof(KEYS) / sizeof(*KEYS))

typedef struct kst_obj kst_obj_t;

typedef struct {
    char st;      /* 'T', 'F', 'U', or 0 when absent */
    char *reason; /* NULL when absent */
    char *ltt;    /* lastTransitionTime, NULL when absent */
} obs_cond_t;

struct kst_obj {
    kst_t *k;
    char *key; /* "Kind/ns/name" */
    res_kind_t kind;
    const char *ns, *name; /* into nsname */
    char *nsname;
    char *uid;
    int64_t generation;
    bool observed; /* seen by kst_observe (else only marked) */
    /* observed status */
    uint8_t hash[KST_HASH_LEN];
    unsigned mask; /* managed keys present */
    int64_t serial; /* status.serial, -1 when absent */
    bool fail_held; /* a new failure waited fail_delay_ms already */
    obs_cond_t cond[C_N];
    /* DNSZone: spec.zoneName, for zone -> object */
    char *zone;
    kst_obj_t *znext;
    /* writing */
    double due; /* loop time the mark is due; 0: not marked */
    k8s_call_t *call;
    json_t *sent;  /* the status sent, while in flight */
    json_t *event; /* the Event to create once the write succeeds, or NULL */
    uint64_t event_digest; /* digest of event */
    uint64_t last_event; /* digest of the last Event sent (0: none) */
};

struct kst {
    k8s_client_t *c;
    struct ev_loop *loop;
    const proj_t *p;
    kst_opts_t o;
    bd_hmap_t *objs;  /* key -> kst_obj_t */
    bd_hmap_t *dirty; /* key -> kst_obj_t (marked) */
    bd_hmap_t *zones; /* zone name -> first kst_obj_t (chained by znext) */
    bd_hmap_t *floors; /* zone name -> (uintptr_t)serial + 1 served above the projection */
    ev_timer timer;
    k8s_events_t *events; /* Ready changes are posted through it */
    kst_stats_t st;
};

/* ---- helpers ------------------------------------------------------------------------- */

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = xstrdup(s);
}

static uint64_t fnv64(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h ? h : 1;
}

static void now_rfc3339(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static k8s_res_t kind_res(res_kind_t kind)
{
    k8s_res_t r = {KST_GROUP, KST_VERSION, res_kind_plural(kind), res_kind_name(kind), true};
    return r;
}

/* "example.com." / "Example.COM" -> "example.com" (malloc'd) */
static char *zone_norm(const char *z)
{
    if (z == NULL)
        return NULL;
    char *s = strdup(z);
    if (s == NULL)
        return NULL;
    size_t n = strlen(s);
    if (n > 1 && s[n - 1] == '.')
        s[n - 1] = 0;
    for (char *c = s; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return s;
}

/* ---- canonical status ------------------------------------------------------------------ */

static int cond_index(const char *type)
{
    for (int i = 0; i < C_N; i++)
        if (type && strcmp(type, COND_TYPE[i]) == 0)
            return i;
    return -1;
}

/* The managed part of a status as a new object: managed keys only; conditions only ours,
 * with their known fields, in our order. *mask gets the managed keys present. */
static json_t *canon(const json_t *status, unsigned *mask)
{
    *mask = 0;
    json_t *out = json_object();
    if (out == NULL || !json_is_object(status))
        return out;
    for (size_t i = 0; i < NKEYS; i++) {
        json_t *v = json_object_get(status, KEYS[i]);
        if (v == NULL || json_is_null(v))
            continue;
        *mask |= 1u << i;
        if (strcmp(KEYS[i], "conditions") != 0) {
            json_object_set(out, KEYS[i], v);
            continue;
        }
        const json_t *by[C_N] = {0};
        size_t idx;
        json_t *c;
        json_array_foreach(v, idx, c) {
            int t = cond_index(json_string_value(json_object_get(c, "type")));
            if (t >= 0 && by[t] == NULL)
                by[t] = c;
        }
        json_t *arr = json_array();
        static const char *const F[] = {"type", "status", "reason", "message", "lastTransitionTime",
                                        "observedGeneration"};
        for (int t = 0; t < C_N; t++) {
            if (by[t] == NULL)
                continue;
            json_t *cc = json_object();
            for (size_t f = 0; f < sizeof(F) / sizeof(*F); f++) {
                json_t *fv = json_object_get(by[t], F[f]);
                if (fv != NULL && !json_is_null(fv))
                    json_object_set(cc, F[f], fv);
            }
            json_array_append_new(arr, cc);
        }
        json_object_set_new(out, "conditions", arr);
    }
    return out;
}

/* Hash of the canonical form without its serial; BD_ENOMEM when it cannot be dumped.
 * A serial that moved alone is no reason to write: it goes with the object's next write
 * (a record's always carries its zone's serial then), so a record edit costs one write,
 * not one more for its zone. Floors found at takeover are written on purpose. */
static int canon_hash(const json_t *c, uint8_t out[KST_HASH_LEN])
{
    json_t *cc = json_copy((json_t *)c); /* shallow; jansson's API is not const-correct */
    if (cc == NULL)
        return BD_ENOMEM;
    json_object_del(cc, "serial");
    char *s = json_dumps(cc, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(cc);
    if (s == NULL)
        return BD_ENOMEM;
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    int ok = EVP_Digest(s, strlen(s), md, &n, EVP_sha256(), NULL);
    free(s);
    if (!ok)
        return BD_ENOMEM;
    memcpy(out, md, KST_HASH_LEN);
    return BD_OK;
}

/* Remember status (any JSON; NULL: none) as the object's observed status. */
static int obs_status(kst_obj_t *o, const json_t *status)
{
    unsigned mask = 0;
    json_t *c = canon(status, &mask);
    if (c == NULL)
        return BD_ENOMEM;
    int rc = canon_hash(c, o->hash);
    const json_t *serial = json_object_get(c, "serial");
    o->serial = json_is_integer(serial) ? json_integer_value(serial) : -1;
    o->mask = mask;
    for (int t = 0; t < C_N; t++) {
        o->cond[t].st = 0;
        set_str(&o->cond[t].reason, NULL);
        set_str(&o->cond[t].ltt, NULL);
    }
    size_t idx;
    json_t *cc;
    json_array_foreach(json_object_get(c, "conditions"), idx, cc) {
        int t = cond_index(json_string_value(json_object_get(cc, "type")));
        const char *s = json_string_value(json_object_get(cc, "status"));
        if (t < 0 || s == NULL)
            continue;
        o->cond[t].st = strcmp(s, "True") == 0 ? 'T' : strcmp(s, "False") == 0 ? 'F' : 'U';
        set_str(&o->cond[t].reason, json_string_value(json_object_get(cc, "reason")));
        set_str(&o->cond[t].ltt, json_string_value(json_object_get(cc, "lastTransitionTime")));
    }
    json_decref(c);
    return rc;
}

/* ---- objects ------------------------------------------------------------------------- */

static void zone_unlink(kst_t *k, kst_obj_t *o)
{
    if (o->zone == NULL)
        return;
    kst_obj_t *head = bd_hmap_get(k->zones, o->zone), *prev = NULL;
    for (kst_obj_t *x = head; x; prev = x, x = x->znext) {
        if (x != o)
            continue;
        if (prev)
            prev->znext = o->znext;
        else if (o->znext)
            bd_hmap_put(k->zones, o->zone, o->znext, NULL); /* replaces: no allocation */
        else
            bd_hmap_del(k->zones, o->zone);
        break;
    }
    o->znext = NULL;
    free(o->zone);
    o->zone = NULL;
}

static int zone_link(kst_t *k, kst_obj_t *o, const char *zone)
{
    if (o->zone && zone && strcmp(o->zone, zone) == 0)
        return BD_OK;
    zone_unlink(k, o);
    if (zone == NULL)
        return BD_OK;
    char *z = zone_norm(zone);
    if (z == NULL)
        return BD_ENOMEM;
    kst_obj_t *head = bd_hmap_get(k->zones, z);
    if (bd_hmap_put(k->zones, z, o, NULL) != BD_OK) {
        free(z);
        return BD_ENOMEM;
    }
    o->znext = head;
    o->zone = z;
    return BD_OK;
}

static void obj_free(kst_t *k, kst_obj_t *o)
{
    if (o == NULL)
        return;
    if (o->call) {
        k8s_call_cancel(o->call);
        k->st.inflight--;
    }
    zone_unlink(k, o);
    json_decref(o->sent);
    json_decref(o->event);
    for (int t = 0; t < C_N; t++) {
        free(o->cond[t].reason);
        free(o->cond[t].ltt);
    }
    free(o->uid);
    free(o->nsname);
    free(o->key);
    free(o);
}

/* Split "Kind/ns/name" into a new object (not inserted). NULL: malformed or no memory. */
static kst_obj_t *obj_new(kst_t *k, const char *key, int *rc)
{
    *rc = BD_EINVAL;
    const char *s1 = strchr(key, '/');
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (s1 == NULL || s2 == NULL || s2[1] == 0 || strchr(s2 + 1, '/'))
        return NULL;
    char kind[64];
    if ((size_t)(s1 - key) >= sizeof(kind))
        return NULL;
    memcpy(kind, key, (size_t)(s1 - key));
    kind[s1 - key] = 0;
    res_kind_t rk;
    if (res_kind_from_name(kind, &rk) != BD_OK)
        return NULL;
    *rc = BD_ENOMEM;
    kst_obj_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->k = k;
    o->kind = rk;
    o->key = strdup(key);
    o->nsname = strdup(s1 + 1);
    if (o->key == NULL || o->nsname == NULL) {
        obj_free(k, o);
        return NULL;
    }
    char *slash = o->nsname + (s2 - s1 - 1);
    *slash = 0;
    o->ns = o->nsname;
    o->name = slash + 1;
    if (obs_status(o, NULL) != BD_OK) {
        obj_free(k, o);
        return NULL;
    }
    *rc = BD_OK;
    return o;
}

static kst_obj_t *obj_get(kst_t *k, const char *key, int *rc)
{
    *rc = BD_OK;
    kst_obj_t *o = bd_hmap_get(k->objs, key);
    if (o != NULL)
        return o;
    o = obj_new(k, key, rc);
    if (o == NULL)
        return NULL;
    if (bd_hmap_put(k->objs, o->key, o, NULL) != BD_OK) {
        obj_free(k, o);
        *rc = BD_ENOMEM;
        return NULL;
    }
    return o;
}

/* ---- scheduling ------------------------------------------------------------------------ */

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    kst_t *k = w->data;
    if (kst_flush(k) != BD_OK)
        bd_warn("status: flush failed: out of memory");
}

/* Make the timer fire no later than `at` (loop time). */
static void schedule(kst_t *k, double at)
{
    double now = ev_now(k->loop);
    double after = at > now ? at - now : 0.0;
    if (ev_is_active(&k->timer)) {
        double left = ev_timer_remaining(k->loop, &k->timer);
        if (left <= after)
            return;
        ev_timer_stop(k->loop, &k->timer);
    }
    ev_timer_set(&k->timer, after, 0.0);
    ev_timer_start(k->loop, &k->timer);
}

static int mark_at(kst_t *k, kst_obj_t *o, double due)
{
    if (o->due != 0 && o->due <= due)
        return BD_OK;
    if (o->due == 0 && bd_hmap_put(k->dirty, o->key, o, NULL) != BD_OK)
        return BD_ENOMEM;
    o->due = due;
    return BD_OK;
}

static void unmark(kst_t *k, kst_obj_t *o)
{
    if (o->due == 0)
        return;
    bd_hmap_del(k->dirty, o->key);
    o->due = 0;
}

/* ---- public: lifecycle ----------------------------------------------------------------- */

void kst_opts_init(kst_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->component = "bindy";
    o->instance = "";
    o->max_inflight = 64;
    o->zone_delay_ms = 1000;
    o->fail_delay_ms = 1000;
}

int kst_new(k8s_client_t *client, const proj_t *proj, const kst_opts_t *opts, kst_t **out,
            bd_err_t *err)
{
    *out = NULL;
    if (client == NULL || proj == NULL)
        return bd_err_set(err, BD_EINVAL, "status: client and projector are required");
    kst_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return bd_err_set(err, BD_ENOMEM, "status: out of memory");
    if (opts)
        k->o = *opts;
    else
        kst_opts_init(&k->o);
    if (k->o.max_inflight == 0)
        k->o.max_inflight = 64;
    k->c = client;
    k->loop = k8s_client_loop(client);
    k->p = proj;
    k->objs = bd_hmap_new();
    k->dirty = bd_hmap_new();
    k->zones = bd_hmap_new();
    k->floors = bd_hmap_new();
    ev_timer_init(&k->timer, timer_cb, 0.0, 0.0);
    k->timer.data = k;
    if (!k->objs || !k->dirty || !k->zones || !k->floors) {
        kst_free(k);
        return bd_err_set(err, BD_ENOMEM, "status: out of memory");
    }
    int rc = k8s_events_new(client, k->o.component, k->o.instance, &k->events, err);
    if (rc != BD_OK) {
        kst_free(k);
        return rc;
    }
    *out = k;
    return BD_OK;
}

void kst_free(kst_t *k)
{
    if (k == NULL)
        return;
    if (k->loop)
        ev_timer_stop(k->loop, &k->timer);
    k8s_events_free(k->events);
    size_t pos = 0;
    kst_obj_t *o;
    if (k->objs)
        while (bd_hmap_next(k->objs, &pos, NULL, (void **)&o)) {
            free(o->zone); /* the zone index goes with its map: no unlinking */
            o->zone = NULL;
            obj_free(k, o);
        }
    bd_hmap_free(k->objs);
    bd_hmap_free(k->dirty);
    bd_hmap_free(k->zones);
    bd_hmap_free(k->floors);
    free(k);
}

/* ---- observe and mark -------------------------------------------------------------------- */

int kst_observe(kst_t *k, const jnl_event_t *ev)
{
    if (ev == NULL || ev->kind == NULL || ev->name == NULL || ev->type > JNL_DELETED)
        return BD_OK;
    res_kind_t rk;
    if (res_kind_from_name(ev->kind, &rk) != BD_OK)
        return BD_OK;
    char key[600];
    int n = snprintf(key, sizeof(key), "%s/%s/%s", ev->kind, ev->ns ? ev->ns : "", ev->name);
    if (n < 0 || (size_t)n >= sizeof(key))
        return BD_OK; /* longer than any Kubernetes name allows */
    if (ev->type == JNL_DELETED) {
        kst_obj_t *o = bd_hmap_del(k->objs, key);
        if (o != NULL) {
            unmark(k, o);
            obj_free(k, o);
        }
        return BD_OK;
    }
    if (!json_is_object(ev->object))
        return BD_OK;
    int rc;
    kst_obj_t *o = obj_get(k, key, &rc);
    if (o == NULL)
        return rc;
    const json_t *md = json_object_get(ev->object, "metadata");
    const char *uid = ev->uid && *ev->uid ? ev->uid : json_string_value(json_object_get(md, "uid"));
    if (uid && (o->uid == NULL || strcmp(o->uid, uid) != 0)) {
        set_str(&o->uid, uid);
        if (o->uid == NULL)
            return BD_ENOMEM;
    }
    o->observed = true;
    o->generation = ev->generation > 0 ? ev->generation
                                       : (int64_t)json_integer_value(json_object_get(md, "generation"));
    rc = obs_status(o, json_object_get(ev->object, "status"));
    if (rc == BD_OK && rk == RES_DNSZONE)
        rc = zone_link(k, o, json_string_value(json_object_get(json_object_get(ev->object, "spec"), "zoneName")));
    return rc;
}

static double loop_now(kst_t *k)
{
    double t = ev_now(k->loop);
    return t > 0 ? t : 1e-9;
}

int kst_mark(kst_t *k, const char *key)
{
    if (key == NULL)
        return BD_EINVAL;
    int rc;
    kst_obj_t *o = obj_get(k, key, &rc);
    if (o == NULL)
        return rc;
    return mark_at(k, o, loop_now(k));
}

int kst_mark_changes(kst_t *k, const jnl_event_t *ev, const proj_changes_t *ch)
{
    int rc = BD_OK;
    res_kind_t rk;
    if (ev && (ev->type == JNL_ADDED || ev->type == JNL_MODIFIED) && ev->kind && ev->name &&
        res_kind_from_name(ev->kind, &rk) == BD_OK) {
        char key[600];
        int n = snprintf(key, sizeof(key), "%s/%s/%s", ev->kind, ev->ns ? ev->ns : "", ev->name);
        if (n > 0 && (size_t)n < sizeof(key) && kst_mark(k, key) == BD_ENOMEM)
            rc = BD_ENOMEM;
    }
    for (size_t i = 0; ch && i < ch->statuses.n; i++) {
        int r = kst_mark(k, ch->statuses.v[i]);
        if (r == BD_ENOMEM)
            rc = r;
    }
    double due = loop_now(k) + k->o.zone_delay_ms / 1000.0;
    for (size_t i = 0; ch && i < ch->nzones; i++) {
        if (ch->zones[i].zone == NULL)
            continue;
        for (kst_obj_t *o = bd_hmap_get(k->zones, ch->zones[i].zone); o; o = o->znext)
            if (mark_at(k, o, due) != BD_OK)
                rc = BD_ENOMEM;
    }
    return rc;
}

int kst_serial_floor(kst_t *k, const char *zone, uint32_t serial)
{
    if (bd_hmap_put(k->floors, zone, (void *)((uintptr_t)serial + 1), NULL) != BD_OK)
        return BD_ENOMEM;
    double now = loop_now(k);
    for (kst_obj_t *o = bd_hmap_get(k->zones, zone); o; o = o->znext)
        if (mark_at(k, o, now) != BD_OK)
            return BD_ENOMEM;
    return BD_OK;
}

int kst_mark_all(kst_t *k)
{
    size_t pos = 0;
    kst_obj_t *o;
    double now = loop_now(k);
    while (bd_hmap_next(k->objs, &pos, NULL, (void **)&o))
        if (mark_at(k, o, now) != BD_OK)
            return BD_ENOMEM;
    return BD_OK;
}

/* ---- desired status ------------------------------------------------------------------------ */

/* Where the projector says a record is published: "published as OWNER in zone ZONE..."
 * (Ready) or "OWNER in zone ZONE: ..." (conflicts). */
static bool parse_placement(const char *msg, char **fqdn, char **zone)
{
    *fqdn = *zone = NULL;
    if (msg == NULL)
        return false;
    if (strncmp(msg, "published as ", 13) == 0)
        msg += 13;
    const char *in = strstr(msg, " in zone ");
    if (in == NULL || in == msg || memchr(msg, ' ', (size_t)(in - msg)) != NULL)
        return false;
    const char *z = in + 9;
    size_t zl = strcspn(z, " :");
    if (zl == 0)
        return false;
    *fqdn = strndup(msg, (size_t)(in - msg));
    *zone = strndup(z, zl);
    if (*fqdn == NULL || *zone == NULL) {
        free(*fqdn);
        free(*zone);
        *fqdn = *zone = NULL;
        return false;
    }
    return true;
}

/* The record count in the projector's Ready message of a zone ("... with N records"). */
static bool parse_record_count(const char *msg, long long *out)
{
    const char *w = msg ? strstr(msg, " with ") : NULL;
    if (w == NULL)
        return false;
    char *end = NULL;
    long long v = strtoll(w + 6, &end, 10);
    if (end == w + 6 || strncmp(end, " record", 7) != 0 || v < 0)
        return false;
    *out = v;
    return true;
}

typedef struct {
    char st; /* 'T' / 'F' */
    const char *reason;
    const char *message;
} want_cond_t;

static json_t *cond_json(const kst_obj_t *o, int t, const want_cond_t *w, int64_t gen, const char *now)
{
    const char *ltt = o->cond[t].st == w->st && o->cond[t].ltt ? o->cond[t].ltt : now;
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "type", COND_TYPE[t], "status",
                     w->st == 'T' ? "True" : "False", "reason", w->reason, "message",
                     w->message ? w->message : "", "lastTransitionTime", ltt, "observedGeneration",
                     (json_int_t)gen);
}

/* The desired (canonical) status of o and, when its Ready condition changes, the Event
 * to send (*event, may stay NULL) with its digest; *floor: its serial is a takeover floor
 * that must be written. BD_ENOTFOUND: the projector does not know the object (nothing to
 * write). */
static int desired_status(kst_t *k, kst_obj_t *o, json_t **out, json_t **event, uint64_t *digest, bool *floor,
                          bool *new_failure)
{
    *out = *event = NULL;
    *digest = 0;
    *floor = *new_failure = false;
    const char *kind = res_kind_name(o->kind);
    proj_status_t ps;
    proj_status(k->p, kind, o->ns, o->name, &ps);
    if (!ps.known || ps.reason == NULL)
        return BD_ENOTFOUND;
    const res_t *res = proj_resource(k->p, kind, o->ns, o->name);
    int64_t gen = (res == NULL || strcmp(ps.reason, "InvalidSpec") == 0) ? o->generation
                                                                          : res->meta.generation;
    if (gen < 0)
        gen = 0;
    char now[32];
    now_rfc3339(now);
    char msgbuf[160], progbuf[160];
    snprintf(progbuf, sizeof(progbuf), "generation %" PRId64 " is applied", gen);
    want_cond_t w[C_N] = {
        {ps.ready ? 'T' : 'F', ps.reason, ps.message},
        {'F', "Reconciled", progbuf},
        {'F', "AsExpected", ""},
    };
    json_t *st = json_object();
    if (st == NULL)
        return BD_ENOMEM;
    int rc = BD_OK;

    switch (o->kind) {
    case RES_DNSZONE:
        if (res != NULL && strcmp(ps.reason, "DuplicateZone") != 0) {
            const proj_zone_t *z = proj_zone_get(k->p, res->u.zone.zone_name);
            if (z != NULL) {
                /* a floor above the projection (servers publish more) until it gets there:
                 * the write comes back through the journal and raises the projection */
                uint32_t serial = proj_zone_serial(z);
                uintptr_t f = (uintptr_t)bd_hmap_get(k->floors, proj_zone_name(z));
                if (f != 0 && (int32_t)((uint32_t)(f - 1) - serial) > 0) {
                    serial = (uint32_t)(f - 1);
                    *floor = true;
                } else if (f != 0)
                    bd_hmap_del(k->floors, proj_zone_name(z));
                json_object_set_new(st, "serial", json_integer(serial));
                const res_strv_t *iv = proj_zone_instances(z);
                json_t *arr = json_array();
                for (size_t i = 0; arr && iv && i < iv->n; i++)
                    json_array_append_new(arr, json_string(iv->v[i]));
                json_object_set_new(st, "instances", arr);
            }
            long long rcnt;
            if (parse_record_count(ps.message, &rcnt))
                json_object_set_new(st, "recordCount", json_integer(rcnt));
        }
        break;
    case RES_BIND9INSTANCE:
        if (res != NULL) {
            int32_t replicas = res->u.instance.replicas;
            json_object_set_new(st, "role",
                                json_string(res->u.instance.role == RES_ROLE_SECONDARY ? "secondary" : "primary"));
            json_object_set_new(st, "replicas", json_integer(replicas));
            int32_t rr = k->o.ready_replicas ? k->o.ready_replicas(k->o.ready_replicas_arg, o->ns, o->name) : -1;
            if (rr >= 0) {
                json_object_set_new(st, "readyReplicas", json_integer(rr));
                if (rr < replicas) {
                    snprintf(msgbuf, sizeof(msgbuf), "%d of %d replicas ready", (int)rr, (int)replicas);
                    w[C_PROGRESSING] = (want_cond_t){'T', "RollingOut", msgbuf};
                    if (rr == 0 && ps.ready)
                        w[C_READY] = (want_cond_t){'F', "NoReplicasReady", msgbuf};
                }
            }
            const char *why = NULL, *reason = NULL;
            if (ps.ready && k->o.instance_problem != NULL &&
                (why = k->o.instance_problem(k->o.instance_problem_arg, o->ns, o->name, &reason)) != NULL)
                w[C_READY] = (want_cond_t){'F', reason ? reason : "NotApplied", why};
        }
        break;
    case RES_BIND9CLUSTER:
        break;
    default: {
        char *fqdn = NULL, *zone = NULL;
        if (parse_placement(ps.message, &fqdn, &zone)) {
            json_object_set_new(st, "zone", json_string(zone));
            json_object_set_new(st, "fqdn", json_string(fqdn));
            const proj_zone_t *z = proj_zone_get(k->p, zone);
            if (z != NULL)
                json_object_set_new(st, "serial", json_integer(proj_zone_serial(z)));
        }
        free(fqdn);
        free(zone);
        break;
    }
    }
    if (w[C_READY].st == 'F')
        w[C_DEGRADED] = (want_cond_t){'T', w[C_READY].reason, w[C_READY].message};
    *new_failure = w[C_READY].st == 'F' && (o->cond[C_READY].st != 'F' || o->cond[C_READY].reason == NULL ||
                                            strcmp(o->cond[C_READY].reason, w[C_READY].reason) != 0);

    json_t *conds = json_array();
    for (int t = 0; conds && t < C_N; t++)
        if (json_array_append_new(conds, cond_json(o, t, &w[t], gen, now)) != 0)
            rc = BD_ENOMEM;
    json_object_set_new(st, "conditions", conds);
    json_object_set_new(st, "observedGeneration", json_integer(gen));
    if (conds == NULL)
        rc = BD_ENOMEM;

    /* An Event when Ready changes (status or reason), unless it repeats the last one. */
    const obs_cond_t *was = &o->cond[C_READY];
    if (rc == BD_OK && (was->st != w[C_READY].st || was->reason == NULL ||
                        strcmp(was->reason, w[C_READY].reason) != 0)) {
        char *d = NULL;
        if (asprintf(&d, "%c\n%s\n%s", w[C_READY].st, w[C_READY].reason,
                     w[C_READY].message ? w[C_READY].message : "") < 0)
            rc = BD_ENOMEM;
        else
            *digest = fnv64(d);
        free(d);
        if (rc == BD_OK && *digest != o->last_event) {
            k8s_event_t ev = {KST_GROUP "/" KST_VERSION, kind, o->ns, o->name, o->uid,
                              w[C_READY].st == 'T' ? "Normal" : "Warning", w[C_READY].reason,
                              w[C_READY].message};
            *event = k8s_event_build(k->events, &ev);
            if (*event == NULL)
                rc = BD_ENOMEM;
        }
    }
    if (rc != BD_OK) {
        json_decref(st);
        json_decref(*event);
        *event = NULL;
        return rc;
    }
    unsigned mask;
    *out = canon(st, &mask); /* same shape as what obs_status hashes */
    json_decref(st);
    return *out ? BD_OK : BD_ENOMEM;
}

/* ---- writing -------------------------------------------------------------------------- */

static void send_event(kst_t *k, kst_obj_t *o)
{
    /* best effort: the recorder counts and logs a failure */
    (void)k8s_event_send(k->events, o->event);
    json_decref(o->event);
    o->event = NULL;
}

static bool retriable(int code) { return code != BD_ENOTFOUND && code != BD_EINVAL; }

static void on_patch(void *arg, const k8s_resp_t *r)
{
    kst_obj_t *o = arg;
    kst_t *k = o->k;
    o->call = NULL;
    k->st.inflight--;
    if (r->code == BD_OK) {
        k->st.writes++;
        const json_t *st = r->body ? json_object_get(r->body, "status") : NULL;
        if (obs_status(o, st ? st : o->sent) != BD_OK)
            bd_warn("status: %s %s/%s: out of memory", res_kind_name(o->kind), o->ns, o->name);
        if (o->event != NULL) {
            o->last_event = o->event_digest;
            send_event(k, o);
        }
    } else if (r->code == BD_ENOTFOUND) {
        k->st.gone++;
    } else {
        k->st.errors++;
        bd_warn("status: writing the status of %s %s/%s failed: %s (%s)%s", res_kind_name(o->kind), o->ns,
                o->name, r->message, bd_strerror(r->code), retriable(r->code) ? "; retrying" : "");
        if (retriable(r->code) && mark_at(k, o, loop_now(k)) != BD_OK)
            bd_warn("status: %s: out of memory", o->key);
    }
    json_decref(o->sent);
    o->sent = NULL;
    json_decref(o->event);
    o->event = NULL;
    if (bd_hmap_count(k->dirty) > 0)
        schedule(k, loop_now(k));
}

/* Compare and, when different, send. BD_OK or BD_ENOMEM (o stays marked). */
static int write_one(kst_t *k, kst_obj_t *o)
{
    json_t *want = NULL, *event = NULL, *patch = NULL;
    uint64_t digest = 0;
    char *path = NULL;
    bool floor = false, new_failure = false;
    int rc = desired_status(k, o, &want, &event, &digest, &floor, &new_failure);
    if (rc == BD_ENOTFOUND) {
        unmark(k, o);
        if (!o->observed && o->call == NULL) { /* marked only: nothing will delete it */
            bd_hmap_del(k->objs, o->key);
            obj_free(k, o);
        }
        return BD_OK;
    }
    if (rc != BD_OK)
        return rc;
    uint8_t h[KST_HASH_LEN];
    rc = canon_hash(want, h);
    if (rc != BD_OK)
        goto out;
    if (memcmp(h, o->hash, KST_HASH_LEN) == 0 &&
        !(floor && json_integer_value(json_object_get(want, "serial")) != o->serial)) {
        k->st.skipped++;
        o->fail_held = false;
        unmark(k, o);
        goto out;
    }
    /* A new failure waits fail_delay_ms, once: objects created together reach the journal
     * through separate watches, so a record can be projected before the DNSZone that
     * selects it arrives; usually the failure is gone by then, and neither its write nor
     * its Warning (nor the write that would undo it) is sent. */
    if (new_failure && !o->fail_held && k->o.fail_delay_ms > 0) {
        o->fail_held = true;
        unmark(k, o);
        double due = loop_now(k) + k->o.fail_delay_ms / 1000.0;
        if ((rc = mark_at(k, o, due)) == BD_OK)
            schedule(k, due);
        goto out;
    }
    o->fail_held = false;
    /* The patch: the desired status, and null for managed keys no longer wanted. */
    json_t *st = json_deep_copy(want);
    patch = st ? json_pack("{s:o}", "status", st) : NULL;
    if (patch == NULL) {
        rc = BD_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < NKEYS; i++)
        if ((o->mask & (1u << i)) && json_object_get(st, KEYS[i]) == NULL)
            json_object_set_new(st, KEYS[i], json_null());
    k8s_res_t res = kind_res(o->kind);
    path = k8s_path(&res, o->ns, o->name, "status");
    if (path == NULL) {
        rc = BD_ENOMEM;
        goto out;
    }
    k8s_req_t req = {.method = K8S_PATCH_MERGE, .path = path, .body = patch, .backoff_key = o->key};
    rc = k8s_call(k->c, &req, on_patch, o, &o->call);
    if (rc != BD_OK)
        goto out;
    k->st.inflight++;
    unmark(k, o);
    o->sent = want;
    want = NULL;
    o->event = event;
    o->event_digest = digest;
    event = NULL;
out:
    free(path);
    json_decref(patch);
    json_decref(want);
    json_decref(event);
    return rc;
}

int kst_flush(kst_t *k)
{
    if (k->o.fence && !k->o.fence(k->o.fence_arg)) {
        k->st.fenced++;
        return BD_OK;
    }
    size_t n = 0;
    const char **keys = bd_hmap_keys_sorted(k->dirty, &n);
    if (keys == NULL)
        return n ? BD_ENOMEM : BD_OK;
    kst_obj_t **v = malloc(n * sizeof(*v));
    if (v == NULL) {
        free(keys);
        return BD_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = bd_hmap_get(k->dirty, keys[i]);
    free(keys);
    int rc = BD_OK;
    double now = loop_now(k), next = 0;
    for (size_t i = 0; i < n; i++) {
        kst_obj_t *o = v[i];
        if (o->call != NULL)
            continue; /* re-evaluated when its write completes */
        if (o->due > now) {
            if (next == 0 || o->due < next)
                next = o->due;
            continue;
        }
        if (k->st.inflight >= k->o.max_inflight)
            continue; /* a completion reschedules */
        int r = write_one(k, o);
        if (r != BD_OK) {
            rc = r;
            if (next == 0 || now + 1.0 < next)
                next = now + 1.0;
        }
    }
    free(v);
    if (next != 0)
        schedule(k, next);
    return rc;
}

void kst_stats(const kst_t *k, kst_stats_t *st)
{
    *st = k->st;
    k8s_events_stats_t es;
    k8s_events_stats(k->events, &es);
    st->events = es.created;
    st->event_errors = es.errors;
    st->pending = bd_hmap_count(k->dirty);
    st->objects = bd_hmap_count(k->objs);
}
