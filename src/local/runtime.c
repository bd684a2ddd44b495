#include "runtime.h"

#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "applier.h"
#include "clock.h"
#include "fs.h"
#include "hmap.h"
#include "keys.h"
#include "log.h"
#include "manifests.h"
#include "render.h"
#include "rndc.h"
#include "server.h"
#include "soacheck.h"
#include "supervisor.h"

typedef struct {
    char *key;  /* "namespace/name/index" */
    char *inst; /* "namespace/name" */
    uint16_t dns, ctl;
    bind_rndc_t *rndc; /* made when it first needs a repair */
} replica_t;

typedef struct lrt lrt_t;

/* A serial check in flight, linked so that shutdown can cancel it. round 0 is the check
 * after a change; round 1 the check after the servers that lagged were repaired. */
typedef struct vcheck {
    struct vcheck *next;
    lrt_t *rt;
    bind_soacheck_t *h;
    int round;
} vcheck_t;

struct lrt {
    struct ev_loop *loop;
    loc_rt_opts_t o;
    char *journal_dir, *named_dir;
    jnl_t *j;
    val_catalog_t *cat;
    proj_t *p;
    bind_zonedb_t *db;
    bind_server_t *srv;
    loc_sup_t *sup;
    app_t *app;
    bind_server_key_t xfr;
    char xfr_b64[BIND_KEY_B64_MAX], rndc_b64[BIND_KEY_B64_MAX];
    bd_hmap_t *replicas; /* key -> replica_t */
    bd_hmap_t *statuses; /* "Kind/ns/name" whose status changed during a catch-up */
    bd_hmap_t *verify;   /* zone -> (uintptr_t) serial to confirm on its servers */
    bd_hmap_t *zsum;     /* zone -> zsum_t: what the current catch-up changed */
    msrc_cache_t *mcache; /* files and journal state between imports: an edit reads one file */
    struct vcheck *checks; /* serial checks in flight */
    bool runtime_dirty;
    ev_tstamp last_import; /* when the last import from inotify ended */
    int ino_fd;
    ev_io ino;
    ev_idle after; /* the reports of an import, once the loop is idle */
    ev_timer debounce, table;
    ev_signal sigint, sigterm;
};

/* ---- files and keys --------------------------------------------------------------- */

static int load_keys(lrt_t *rt, bd_err_t *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/keys", rt->o.state_dir);
    return bind_keys_load(path, &rt->xfr, rt->xfr_b64, rt->rndc_b64, err);
}

/* ---- runtime: named processes ------------------------------------------------------ */

static replica_t *replica_get(lrt_t *rt, const char *inst, int index)
{
    char key[600];
    snprintf(key, sizeof(key), "%s/%d", inst, index);
    replica_t *r = bd_hmap_get(rt->replicas, key);
    if (r != NULL)
        return r;
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->key = strdup(key)) == NULL || (r->inst = strdup(inst)) == NULL ||
        loc_sup_alloc_port(&r->dns) != BD_OK || loc_sup_alloc_port(&r->ctl) != BD_OK ||
        bd_hmap_put(rt->replicas, key, r, NULL) != BD_OK) {
        if (r) {
            free(r->key);
            free(r->inst);
        }
        free(r);
        return NULL;
    }
    return r;
}

static const proj_instance_t *instance_by_key(lrt_t *rt, const char *key)
{
    size_t n = 0;
    const proj_instance_t **in = proj_instances(rt->p, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(in[i]->key, key) == 0)
            return in[i];
    return NULL;
}

/* The endpoints of every replica of the instances in keys, at most cap (a warning says
 * when more would be needed: named.conf lists are bounded). */
static size_t endpoints_of(lrt_t *rt, const res_strv_t *keys, bind_endpoint_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t k = 0; k < keys->n; k++) {
        const proj_instance_t *in = instance_by_key(rt, keys->v[k]);
        if (in && n + (size_t)in->res->u.instance.replicas > cap)
            bd_warn("Bind9Instance %s: only the first %zu upstream/downstream servers are configured", in->key, cap);
        for (int r = 0; in && r < in->res->u.instance.replicas && n < cap; r++) {
            replica_t *rep = replica_get(rt, in->key, r);
            if (rep)
                out[n++] = (bind_endpoint_t){rt->o.address, rep->dns};
        }
    }
    return n;
}

/* Does instance `in` hold zone (a member or catalog zone)? A primary also holds what its
 * downstream secondaries serve, and their catalogs, for them to pull. */
static bool instance_carries(const proj_instance_t *const *insts, size_t ni, const proj_instance_t *in,
                             const char *zone)
{
    if (strcmp(in->catalog, zone) == 0)
        return true;
    for (size_t k = 0; k < in->zones.n; k++)
        if (strcmp(in->zones.v[k], zone) == 0)
            return true;
    for (size_t s = 0; s < ni; s++) {
        const proj_instance_t *sec = insts[s];
        bool down = false;
        for (size_t u = 0; u < sec->upstream.n; u++)
            down |= strcmp(sec->upstream.v[u], in->key) == 0;
        if (!down)
            continue;
        if (strcmp(sec->catalog, zone) == 0)
            return true;
        for (size_t k = 0; k < sec->zones.n; k++)
            if (strcmp(sec->zones.v[k], zone) == 0)
                return true;
    }
    return false;
}

/* NOTIFY targets: a zone's changes go to the servers that pull it from bindy. */
static void set_notify_targets(lrt_t *rt)
{
    size_t ni = 0, nz = 0;
    const proj_instance_t **insts = proj_instances(rt->p, &ni);
    const proj_zone_t **zones = proj_zones(rt->p, &nz);
    for (size_t zi = 0; zi < nz; zi++) {
        const char *zone = proj_zone_name(zones[zi]);
        char *targets[BIND_SERVER_MAX_NOTIFY_TARGETS];
        size_t nt = 0;
        for (size_t i = 0; i < ni; i++) {
            const proj_instance_t *in = insts[i];
            if (in->upstream.n > 0 || !instance_carries(insts, ni, in, zone))
                continue; /* it pulls from primaries, which notify it */
            for (int r = 0; r < in->res->u.instance.replicas && nt < BIND_SERVER_MAX_NOTIFY_TARGETS; r++) {
                replica_t *rep = replica_get(rt, in->key, r);
                if (rep && asprintf(&targets[nt], "%s:%u", rt->o.address, rep->dns) > 0)
                    nt++;
            }
        }
        bd_err_t err;
        if (bind_server_set_notify_targets(rt->srv, zone, (const char *const *)targets, nt, &err) != BD_OK)
            bd_warn("zone %s: notify targets: %s", zone, err.msg);
        for (size_t t = 0; t < nt; t++)
            free(targets[t]);
    }
}

/* ---- verification: every server publishes the new serial ---------------------------- */

static void verify_zone(lrt_t *rt, const char *zone, uint32_t serial, int round);

/* A repair's reply. A zone the server does not have at all (named: not found) comes with
 * its catalog, which is transferred again instead. */
typedef struct {
    lrt_t *rt;
    replica_t *rep;
    char *zone;
} repair_t;

static void on_repaired(bind_rndc_t *c, const bind_rndc_reply_t *reply, void *arg)
{
    repair_t *rp = arg;
    if (reply->status == BD_ECANCELED) {
        /* shutting down */
    } else if (reply->status != BD_OK) {
        bd_warn("%s: rndc retransfer %s: %s", rp->rep->key, rp->zone, reply->msg);
    } else if (reply->result == BIND_RNDC_R_NOTFOUND) {
        const proj_instance_t *in = instance_by_key(rp->rt, rp->rep->inst);
        repair_t *again = in && strcmp(in->catalog, rp->zone) != 0 ? calloc(1, sizeof(*again)) : NULL;
        char cmd[1100];
        if (again != NULL && (again->zone = strdup(in->catalog)) != NULL) {
            again->rt = rp->rt;
            again->rep = rp->rep;
            snprintf(cmd, sizeof(cmd), "retransfer %s", again->zone);
            if (bind_rndc_command(c, cmd, on_repaired, again) == BD_OK) {
                bd_info("%s: no zone %s; rndc retransfer of its catalog %s", rp->rep->key, rp->zone, again->zone);
                again = NULL;
            }
        }
        if (again != NULL)
            free(again->zone);
        free(again);
    } else if (reply->result != BIND_RNDC_R_SUCCESS) {
        bd_warn("%s: rndc retransfer %s: %s", rp->rep->key, rp->zone, reply->err ? reply->err : reply->text);
    }
    free(rp->zone);
    free(rp);
}

/* rndc retransfer of zone on a server that does not publish its serial. named can leave a
 * zone it learned from its catalog unloaded for a minute: at a cold start a secondary's
 * catalog can name a zone before its primaries have loaded it, the SOA query gets SERVFAIL
 * from both, and named retries only after 60 s (the NOTIFYs that follow are queued behind
 * that refresh and then dropped). */
static bool repair(lrt_t *rt, replica_t *rep, const char *zone)
{
    if (rep->rndc == NULL) {
        bind_rndc_config_t cfg = {.host = rt->o.address, .port = rep->ctl, .key_name = BIND_RNDC_KEY_NAME,
                                  .alg = BIND_RNDC_HMAC_SHA256, .secret_b64 = rt->rndc_b64};
        bd_err_t err;
        if (bind_rndc_new(rt->loop, &cfg, &rep->rndc, &err) != BD_OK) {
            bd_warn("%s: no rndc client: %s", rep->key, err.msg);
            return false;
        }
    }
    repair_t *rp = calloc(1, sizeof(*rp));
    char cmd[1100];
    if (rp == NULL || (rp->zone = strdup(zone)) == NULL) {
        free(rp);
        return false;
    }
    rp->rt = rt;
    rp->rep = rep;
    snprintf(cmd, sizeof(cmd), "retransfer %s", zone);
    if (bind_rndc_command(rep->rndc, cmd, on_repaired, rp) != BD_OK) {
        free(rp->zone);
        free(rp);
        return false;
    }
    return true;
}

static void on_checked(void *arg, const char *zone, uint32_t want, const bind_soacheck_result_t *res, size_t n)
{
    vcheck_t *vc = arg;
    lrt_t *rt = vc->rt;
    int round = vc->round;
    for (vcheck_t **pp = &rt->checks; *pp; pp = &(*pp)->next)
        if (*pp == vc) {
            *pp = vc->next;
            break;
        }
    free(vc);
    size_t ok = 0, repaired = 0;
    double slowest = 0;
    char lag[1024] = "";
    for (size_t i = 0; i < n; i++) {
        if (res[i].ok) {
            ok++;
            if (res[i].ms > slowest)
                slowest = res[i].ms;
            continue;
        }
        size_t l = strlen(lag);
        if (res[i].answered)
            snprintf(lag + l, sizeof(lag) - l, "%s%s (serial %u)", l ? ", " : "", res[i].name, res[i].serial);
        else
            snprintf(lag + l, sizeof(lag) - l, "%s%s (no answer)", l ? ", " : "", res[i].name);
        replica_t *rep = round == 0 ? bd_hmap_get(rt->replicas, res[i].name) : NULL;
        if (rep != NULL && repair(rt, rep, zone))
            repaired++;
    }
    if (ok == n)
        bd_info("zone %s serial %u published by all %zu servers in %.0f ms%s", zone, want, n, slowest,
                round > 0 ? " (after rndc retransfer)" : "");
    else
        bd_warn("zone %s serial %u: %zu of %zu servers lag: %s%s", zone, want, n - ok, n, lag,
                repaired ? "; rndc retransfer" : round > 0 ? " (after rndc retransfer)" : "");
    if (repaired > 0)
        verify_zone(rt, zone, want, round + 1);
}

/* Ask every server of zone for its serial until each publishes serial (10 s at most);
 * on_checked reports and repairs. */
static void verify_zone(lrt_t *rt, const char *zone, uint32_t serial, int round)
{
    size_t ni = 0;
    const proj_instance_t **insts = proj_instances(rt->p, &ni);
    bind_endpoint_t eps[256];
    const char *names[256];
    size_t n = 0;
    for (size_t i = 0; i < ni; i++) {
        if (!instance_carries(insts, ni, insts[i], zone))
            continue;
        for (int r = 0; r < insts[i]->res->u.instance.replicas && n < 256; r++) {
            replica_t *rep = replica_get(rt, insts[i]->key, r);
            if (rep) {
                eps[n] = (bind_endpoint_t){rt->o.address, rep->dns};
                names[n++] = rep->key;
            }
        }
    }
    vcheck_t *vc = n ? calloc(1, sizeof(*vc)) : NULL;
    bd_err_t err;
    if (vc == NULL)
        return;
    vc->rt = rt;
    vc->round = round;
    if (bind_soacheck_start(rt->loop, zone, serial, eps, names, n, 10.0, 0.05, on_checked, vc, &vc->h, &err) !=
        BD_OK) {
        bd_warn("zone %s: cannot verify serial %u: %s", zone, serial, err.msg);
        free(vc);
        return;
    }
    vc->next = rt->checks;
    rt->checks = vc;
}

static void verify_zones(lrt_t *rt)
{
    size_t nz = 0;
    const char **zones = bd_hmap_keys_sorted(rt->verify, &nz);
    for (size_t z = 0; z < nz; z++)
        verify_zone(rt, zones[z], (uint32_t)(uintptr_t)bd_hmap_get(rt->verify, zones[z]), 0);
    free(zones);
    bd_hmap_free(rt->verify);
    rt->verify = bd_hmap_new();
}

static void sync_replicas(lrt_t *rt)
{
    size_t ni = 0;
    const proj_instance_t **insts = proj_instances(rt->p, &ni);
    bd_hmap_t *want = bd_hmap_new();
    if (want == NULL)
        return;
    char *keys_text = NULL;
    bd_err_t err;
    if (bind_render_keys("hmac-sha256", rt->xfr_b64, "hmac-sha256", rt->rndc_b64, &keys_text, &err) != BD_OK) {
        bd_error("keys: %s", err.msg);
        bd_hmap_free(want);
        return;
    }
    for (size_t i = 0; i < ni; i++) {
        const proj_instance_t *in = insts[i];
        const res_instance_t *spec = &in->res->u.instance;
        const res_t *cluster = spec->cluster_ref ? proj_resource(rt->p, "Bind9Cluster", in->res->meta.ns, spec->cluster_ref)
                                                 : NULL;
        bind_endpoint_t up[64], down[64];
        /* bindy last, after a secondary's primaries: named asks the next primary when one
         * answers SERVFAIL, so a secondary told of a zone its primaries are still loading
         * (at start-up its small catalog can beat the zone to them) pulls it from bindy
         * instead of waiting for its next refresh attempt, a minute later. */
        size_t nup = endpoints_of(rt, &in->upstream, up, 63);
        up[nup++] = (bind_endpoint_t){rt->o.address, bind_server_port(rt->srv)};
        res_strv_t downstream = {0};
        for (size_t s = 0; s < ni; s++)
            for (size_t u = 0; u < insts[s]->upstream.n; u++)
                if (strcmp(insts[s]->upstream.v[u], in->key) == 0) {
                    char **nv = realloc(downstream.v, (downstream.n + 1) * sizeof(*nv));
                    if (nv) {
                        downstream.v = nv;
                        downstream.v[downstream.n++] = (char *)insts[s]->key; /* borrowed */
                    }
                }
        size_t ndown = endpoints_of(rt, &downstream, down, 64);
        free(downstream.v);

        for (int r = 0; r < spec->replicas; r++) {
            replica_t *rep = replica_get(rt, in->key, r);
            if (rep == NULL)
                continue;
            bd_hmap_put(want, rep->key, rep, NULL);
            char dir[4096], kpath[4200];
            snprintf(dir, sizeof(dir), "%s/%s", rt->named_dir, rep->key);
            snprintf(kpath, sizeof(kpath), "%s/keys.conf", dir);
            bind_render_params_t prm = {
                .directory = dir, .keys_file = kpath, .listen_v4 = rt->o.address, .port = rep->dns,
                .control_addr = rt->o.address, .control_port = rep->ctl, .catalog = in->catalog,
                .upstream = up, .nupstream = nup, .notify = down, .nnotify = ndown,
                .zone_files = true, /* dir is this replica's alone */
            };
            char *conf = NULL;
            if (bind_render_named_conf(in->res, cluster, &prm, &conf, &err) != BD_OK) {
                bd_error("Bind9Instance %s: %s", in->key, err.msg);
                continue;
            }
            loc_file_t files[] = {{"keys.conf", keys_text}};
            loc_proc_spec_t ps = {dir, conf, files, 1, rep->dns, rep->ctl};
            if (loc_sup_ensure(rt->sup, rep->key, &ps, &err) != BD_OK)
                bd_error("named for %s: %s", rep->key, err.msg);
            free(conf);
        }
    }
    /* replicas no instance wants any more */
    size_t nk = 0;
    const char **keys = bd_hmap_keys_sorted(rt->replicas, &nk);
    for (size_t k = 0; k < nk; k++) {
        if (bd_hmap_get(want, keys[k]) != NULL)
            continue;
        replica_t *rep = bd_hmap_del(rt->replicas, keys[k]);
        bd_info("named for %s: no longer wanted; stopping it", rep->key);
        loc_sup_remove(rt->sup, rep->key, LOC_RM_DIR);
        free(rep->key);
        free(rep->inst);
        free(rep);
    }
    free(keys);
    free(keys_text);
    bd_hmap_free(want);
    set_notify_targets(rt);
}

/* ---- the table --------------------------------------------------------------------- */

static void print_row(const loc_proc_info_t *info, void *arg)
{
    lrt_t *rt = arg;
    const replica_t *rep = bd_hmap_get(rt->replicas, info->key);
    const proj_instance_t *in = rep ? instance_by_key(rt, rep->inst) : NULL;
    const char *slash = strrchr(info->key, '/');
    char addr[64];
    snprintf(addr, sizeof(addr), "%s:%u", rt->o.address, info->dns_port);
    printf("%-36s %-9s %-7s %-21s %-5zu %s\n", rep ? rep->inst : info->key,
           in ? (in->res->u.instance.role == RES_ROLE_PRIMARY ? "primary" : "secondary") : "-",
           slash ? slash + 1 : "-", addr, in ? in->zones.n : 0, loc_state_name(info->state));
}

static void print_table(lrt_t *rt)
{
    printf("\n%-36s %-9s %-7s %-21s %-5s %s\n", "INSTANCE", "ROLE", "REPLICA", "ADDRESS", "ZONES", "STATE");
    loc_sup_each(rt->sup, print_row, rt);
    printf("hidden primary (bindy): %s:%u\n", rt->o.address, bind_server_port(rt->srv));
    fflush(stdout);
}

static void on_table(struct ev_loop *loop, ev_timer *w, int revents)
{
    print_table(w->data);
}

static void on_state(const loc_proc_info_t *info, void *arg)
{
    lrt_t *rt = arg;
    bd_info("named for %s: %s (pid %d, %s:%u)", info->key, loc_state_name(info->state), (int)info->pid,
            rt->o.address, info->dns_port);
    /* print the table once things settle */
    ev_timer_stop(rt->loop, &rt->table);
    ev_timer_set(&rt->table, 0.5, 0.);
    ev_timer_start(rt->loop, &rt->table);
}

/* ---- journal -> projector -> targets ------------------------------------------------ */

/* What a catch-up did to one zone, logged once at its end. */
typedef struct {
    char *first;     /* "Kind namespace/name TYPE" of the first event that changed it */
    size_t events;   /* events that changed it */
    size_t added, removed; /* RRs, summed over the events */
    uint32_t serial; /* after the last */
    bool created, deleted;
} zsum_t;

static void on_applied(void *arg, const jnl_event_t *ev, const proj_changes_t *ch)
{
    lrt_t *rt = arg;
    /* One line per event only at debug: an import of 10,000 objects logged 10,000 lines
     * at info (a sixth of its time); info gets one line per zone per catch-up. */
    for (size_t i = 0; i < ch->nzones; i++) {
        const proj_zone_change_t *c = &ch->zones[i];
        bd_debug("%s %s/%s %s: zone %s%s serial %u (+%zu -%zu RRs)", ev->kind, ev->ns, ev->name,
                 jnl_type_name(ev->type), c->zone, c->deleted ? " deleted," : c->created ? " created," : "",
                 c->serial, c->added.n, c->removed.n);
        zsum_t *zs = rt->zsum ? bd_hmap_get(rt->zsum, c->zone) : NULL;
        if (zs == NULL && rt->zsum) {
            if ((zs = calloc(1, sizeof(*zs))) == NULL ||
                asprintf(&zs->first, "%s %s/%s %s", ev->kind, ev->ns, ev->name, jnl_type_name(ev->type)) < 0 ||
                bd_hmap_put(rt->zsum, c->zone, zs, NULL) != BD_OK) {
                if (zs)
                    free(zs->first);
                free(zs);
                zs = NULL;
            }
        }
        if (zs == NULL)
            continue;
        zs->events++;
        zs->added += c->added.n;
        zs->removed += c->removed.n;
        zs->serial = c->serial;
        zs->created |= c->created;
        zs->deleted = c->deleted;
    }
    for (size_t i = 0; rt->verify && i < ch->nzones; i++) {
        const proj_zone_t *z = proj_zone_get(rt->p, ch->zones[i].zone);
        if (z && !ch->zones[i].deleted && !proj_zone_is_catalog(z))
            bd_hmap_put(rt->verify, ch->zones[i].zone, (void *)(uintptr_t)ch->zones[i].serial, NULL);
    }
    /* statuses are reported once the catch-up settles, not at every intermediate step */
    for (size_t i = 0; rt->statuses && i < ch->statuses.n; i++)
        bd_hmap_put(rt->statuses, ch->statuses.v[i], (void *)1, NULL);
    if (ch->instances.n > 0)
        rt->runtime_dirty = true;
    for (size_t i = 0; i < ch->nzones; i++)
        if (ch->zones[i].created || ch->zones[i].deleted)
            rt->runtime_dirty = true; /* notify targets */
}

/* Started from the projector's checkpoint: report and serve what it holds. */
static void on_restored(void *arg, const jnl_state_t *st, const proj_changes_t *ch)
{
    lrt_t *rt = arg;
    for (size_t i = 0; rt->statuses && i < ch->statuses.n; i++)
        bd_hmap_put(rt->statuses, ch->statuses.v[i], (void *)1, NULL);
    rt->runtime_dirty = true;
}

static void zsum_free_all(bd_hmap_t *m)
{
    size_t pos = 0;
    zsum_t *zs;
    while (m && bd_hmap_next(m, &pos, NULL, (void **)&zs)) {
        free(zs->first);
        free(zs);
    }
    bd_hmap_free(m);
}

/* One line per zone changed by the last catch-up, named after the object when a single
 * event changed it (the common edit), or with the number of events. */
static void report_zones(lrt_t *rt)
{
    if (rt->zsum == NULL)
        return;
    size_t nz = 0;
    const char **zones = bd_hmap_keys_sorted(rt->zsum, &nz);
    for (size_t i = 0; i < nz; i++) {
        const zsum_t *zs = bd_hmap_get(rt->zsum, zones[i]);
        if (zs->deleted && zs->events == 1)
            bd_info("%s: zone %s deleted", zs->first, zones[i]);
        else if (zs->deleted)
            bd_info("zone %s deleted (%zu events)", zones[i], zs->events);
        else if (zs->events == 1)
            bd_info("%s: zone %s%s serial %u (+%zu -%zu RRs)", zs->first, zones[i], zs->created ? " created," : "",
                    zs->serial, zs->added, zs->removed);
        else
            bd_info("zone %s%s serial %u (+%zu -%zu RRs over %zu events, the first %s)", zones[i],
                    zs->created ? " created," : "", zs->serial, zs->added, zs->removed, zs->events, zs->first);
    }
    free(zones);
    zsum_free_all(rt->zsum);
    rt->zsum = bd_hmap_new();
}

static void report_object(void *arg, const mf_object_t *o)
{
    for (size_t i = 0; i < o->rep->n; i++) {
        const val_issue_t *is = &o->rep->items[i];
        bd_log(is->sev == VAL_ERROR ? BD_LOG_ERROR : BD_LOG_WARN, "%s:%d: %s %s/%s: %s%s%s", o->file,
               doc_line(o->doc, is->path), o->kind, o->ns, o->name, is->path, is->path[0] ? ": " : "", is->msg);
    }
}

static void report_problem(void *arg, const char *file, int line, const char *msg, bool unreadable)
{
    bd_error("%s:%d: %s", file, line, msg);
}

static void report_statuses(lrt_t *rt)
{
    if (rt->statuses == NULL)
        return;
    size_t nk = 0;
    const char **keys = bd_hmap_keys_sorted(rt->statuses, &nk);
    for (size_t i = 0; i < nk; i++) {
        char kind[128], ns[256], name[256];
        if (sscanf(keys[i], "%127[^/]/%255[^/]/%255s", kind, ns, name) != 3)
            continue;
        proj_status_t st;
        proj_status(rt->p, kind, ns, name, &st);
        if (st.known && !st.ready)
            bd_warn("%s %s/%s: Ready=False %s: %s", kind, ns, name, st.reason, st.message);
        else if (st.known)
            bd_debug("%s %s/%s: Ready: %s", kind, ns, name, st.message);
    }
    free(keys);
    bd_hmap_free(rt->statuses);
    rt->statuses = bd_hmap_new();
}

static void import_and_apply(lrt_t *rt)
{
    bd_err_t err;
    msrc_result_t res;
    const char *paths[] = {rt->o.manifests};
    mf_visitor_t rep = {report_object, report_problem};
    double t0 = bd_mono_s();
    if (msrc_import_cached(rt->j, rt->cat, paths, 1, false, rt->mcache, &rep, rt, &res, &err) != BD_OK) {
        bd_error("import %s: %s", rt->o.manifests, err.msg);
        return;
    }
    double t1 = bd_mono_s();
    size_t n = 0;
    if (app_catch_up(rt->app, &n, &err) != BD_OK)
        bd_error("apply: %s", err.msg);
    /* How long each step took, so that a slow change can be placed (README, "At scale") */
    if (res.added + res.modified + res.deleted > 0)
        bd_info("%s: %zu added, %zu modified, %zu deleted (read and journaled in %.0f ms, projected and stored in %.0f ms)",
                rt->o.manifests, res.added, res.modified, res.deleted, (t1 - t0) * 1e3, (bd_mono_s() - t1) * 1e3);
    /* The reports wait until the loop has nothing else to do: the NOTIFYs just queued and
     * the transfers they bring come first. */
    ev_idle_start(rt->loop, &rt->after);
}

static void after_apply(lrt_t *rt)
{
    ev_idle_stop(rt->loop, &rt->after);
    report_zones(rt);
    report_statuses(rt);
    if (rt->runtime_dirty) {
        rt->runtime_dirty = false;
        sync_replicas(rt);
    }
    verify_zones(rt);
}

static void on_after(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    after_apply(w->data);
}

/* ---- watching the directory ---------------------------------------------------------- */

static void watch_tree(lrt_t *rt, const char *dir, int depth)
{
    if (depth > 16 || inotify_add_watch(rt->ino_fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                                             IN_CREATE | IN_ATTRIB) < 0)
        return;
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        struct stat st;
        snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name);
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            watch_tree(rt, sub, depth + 1);
    }
    closedir(d);
}

/* The quiet an import waits for after a change that may be part of a burst. */
#define DEBOUNCE_S 0.01

static void import_now(lrt_t *rt)
{
    ev_timer_stop(rt->loop, &rt->debounce);
    watch_tree(rt, rt->o.manifests, 0); /* new subdirectories */
    import_and_apply(rt);
    rt->last_import = ev_time();
}

static void on_inotify(struct ev_loop *loop, ev_io *w, int revents)
{
    lrt_t *rt = w->data;
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    bool saved = false;
    ssize_t len;
    /* What changed does not matter to the import (it compares everything); only whether
     * the events include a finished save of a manifest. */
    while ((len = read(rt->ino_fd, buf, sizeof(buf))) > 0)
        for (size_t off = 0; off + sizeof(struct inotify_event) <= (size_t)len;) {
            const struct inotify_event *e = (const struct inotify_event *)(void *)(buf + off);
            if ((e->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) && e->len > 0 && e->name[0] != '.' &&
                mf_is_manifest_name(e->name))
                saved = true;
            off += sizeof(*e) + e->len;
        }
    /* A manifest closed after writing or renamed into place (an editor's atomic save) is
     * complete: import it at once rather than after the quiet, which was 10 ms of every
     * change's latency. Other events (a temporary file, a chmod, a directory) and saves
     * that follow an import within DEBOUNCE_S (a script writing many files) still wait for
     * a quiet, so a burst costs one import, not one per file. */
    if (saved && ev_time() - rt->last_import >= DEBOUNCE_S) {
        import_now(rt);
        return;
    }
    ev_timer_stop(loop, &rt->debounce);
    ev_timer_set(&rt->debounce, DEBOUNCE_S, 0.);
    ev_timer_start(loop, &rt->debounce);
}

static void on_debounce(struct ev_loop *loop, ev_timer *w, int revents)
{
    import_now(w->data);
}

static void on_stopped(loc_sup_t *sup, void *arg)
{
    lrt_t *rt = arg;
    ev_break(rt->loop, EVBREAK_ALL);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    lrt_t *rt = w->data;
    bd_info("signal %d: stopping every named", w->signum);
    ev_signal_stop(loop, &rt->sigint);
    ev_signal_stop(loop, &rt->sigterm);
    ev_io_stop(loop, &rt->ino);
    ev_timer_stop(loop, &rt->debounce);
    ev_timer_stop(loop, &rt->table);
    if (loc_sup_stop_all(rt->sup, on_stopped, rt) != BD_OK)
        ev_break(loop, EVBREAK_ALL);
}

static void print_hints(lrt_t *rt)
{
    size_t nz = 0;
    const proj_zone_t **zones = proj_zones(rt->p, &nz);
    size_t nk = 0;
    const char **keys = bd_hmap_keys_sorted(rt->replicas, &nk);
    for (size_t z = 0; z < nz && nk > 0; z++) {
        if (proj_zone_is_catalog(zones[z]))
            continue;
        printf("\nTry:\n");
        for (size_t k = 0; k < nk; k++) {
            const replica_t *rep = bd_hmap_get(rt->replicas, keys[k]);
            printf("  dig @%s -p %u %s SOA +short    # %s\n", rt->o.address, rep->dns, proj_zone_name(zones[z]),
                   rep->key);
        }
        break;
    }
    free(keys);
    fflush(stdout);
}

/* ---- life cycle ---------------------------------------------------------------------- */

int loc_rt_run(const loc_rt_opts_t *opts, bd_err_t *err)
{
    lrt_t rt = {.loop = EV_DEFAULT, .o = *opts, .ino_fd = -1};
    int rc = BD_OK;
    if (rt.o.address == NULL)
        rt.o.address = "127.0.0.1";
    /* Every watcher is initialised before anything can start one: the supervisor's state
     * callback restarts the table timer while replicas start up, and re-initialising an
     * active watcher corrupts libev's timer heap. */
    ev_io_init(&rt.ino, on_inotify, -1, EV_READ);
    ev_idle_init(&rt.after, on_after);
    ev_timer_init(&rt.debounce, on_debounce, DEBOUNCE_S, 0.);
    ev_timer_init(&rt.table, on_table, 0.5, 0.);
    ev_signal_init(&rt.sigint, on_signal, SIGINT);
    ev_signal_init(&rt.sigterm, on_signal, SIGTERM);
    rt.ino.data = rt.after.data = rt.debounce.data = rt.table.data = rt.sigint.data = rt.sigterm.data = &rt;
    if (asprintf(&rt.journal_dir, "%s/journal", opts->state_dir) < 0 ||
        asprintf(&rt.named_dir, "%s/named", opts->state_dir) < 0) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto out;
    }
    struct stat st;
    if (stat(opts->manifests, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = bd_err_set(err, BD_EINVAL, "%s: not a directory of manifests", opts->manifests);
        goto out;
    }
    if ((rc = bd_mkdirs(rt.named_dir, 0750, err)) != BD_OK)
        goto out;
    /* named gets it as its working directory and in named.conf: absolute, whatever the
     * caller's --state-dir was */
    char *abs_named = realpath(rt.named_dir, NULL);
    if (abs_named == NULL) {
        rc = bd_err_set(err, BD_EIO, "%s: %s", rt.named_dir, strerror(errno));
        goto out;
    }
    free(rt.named_dir);
    rt.named_dir = abs_named;
    if ((rc = load_keys(&rt, err)) != BD_OK)
        goto out;
    jnl_opts_t jo;
    jnl_opts_init(&jo);
    jo.flags = JNL_OPEN_CREATE;
    if ((rc = jnl_open(rt.journal_dir, &jo, &rt.j, err)) != BD_OK || (rc = val_catalog_new(&rt.cat, err)) != BD_OK ||
        (rc = proj_new(NULL, &rt.p, err)) != BD_OK)
        goto out;
    if ((rc = bind_zonedb_new(&rt.db, NULL)) != BD_OK) {
        bd_err_set(err, rc, "zone store: %s", bd_strerror(rc));
        goto out;
    }
    bind_server_config_t sc = {.address = rt.o.address, .xfr_key = &rt.xfr, .serving = true};
    if ((rc = bind_server_new(&rt.srv, rt.loop, rt.db, &sc, err)) != BD_OK)
        goto out;
    loc_sup_opts_t so = {.on_state = on_state, .arg = &rt};
    if ((rc = loc_sup_new(rt.loop, &so, &rt.sup, err)) != BD_OK)
        goto out;
    app_hooks_t hooks = {on_applied, on_restored, false};
    if ((rc = app_new(rt.j, rt.p, rt.db, &hooks, &rt, &rt.app, err)) != BD_OK ||
        (rt.replicas = bd_hmap_new()) == NULL || (rt.statuses = bd_hmap_new()) == NULL ||
        (rt.verify = bd_hmap_new()) == NULL || (rt.zsum = bd_hmap_new()) == NULL ||
        msrc_cache_new(&rt.mcache) != BD_OK) {
        rc = rc ? rc : bd_err_set(err, BD_ENOMEM, "out of memory");
        goto out;
    }
    bd_info("hidden primary on %s:%u; journal %s", rt.o.address, bind_server_port(rt.srv), rt.journal_dir);

    /* resume from the journal, then take in what changed in the directory meanwhile */
    size_t replayed = 0;
    if ((rc = app_catch_up(rt.app, &replayed, err)) != BD_OK)
        goto out;
    report_zones(&rt);
    report_statuses(&rt);
    if (replayed)
        bd_info("replayed %zu journal events", replayed);
    rt.runtime_dirty = true;
    import_and_apply(&rt);
    after_apply(&rt); /* at start-up at once: the hints need the replicas */
    print_hints(&rt);

    rt.ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (rt.ino_fd < 0) {
        rc = bd_err_set(err, BD_EIO, "inotify: %s", strerror(errno));
        goto out;
    }
    watch_tree(&rt, opts->manifests, 0);
    ev_io_set(&rt.ino, rt.ino_fd, EV_READ);
    ev_io_start(rt.loop, &rt.ino);
    ev_signal_start(rt.loop, &rt.sigint);
    ev_signal_start(rt.loop, &rt.sigterm);
    bd_info("watching %s for changes", opts->manifests);
    ev_run(rt.loop, 0);
    bd_info("stopped");
    app_checkpoint(rt.app, true, NULL); /* the next start replays nothing (logged) */
out:
    ev_io_stop(rt.loop, &rt.ino);
    ev_idle_stop(rt.loop, &rt.after);
    ev_timer_stop(rt.loop, &rt.debounce);
    ev_timer_stop(rt.loop, &rt.table);
    ev_signal_stop(rt.loop, &rt.sigint);
    ev_signal_stop(rt.loop, &rt.sigterm);
    if (rt.ino_fd >= 0)
        close(rt.ino_fd);
    if (rt.replicas) {
        size_t pos = 0;
        replica_t *r;
        while (bd_hmap_next(rt.replicas, &pos, NULL, (void **)&r)) {
            bind_rndc_free(r->rndc); /* repairs in flight see BD_ECANCELED */
            free(r->key);
            free(r->inst);
            free(r);
        }
        bd_hmap_free(rt.replicas);
    }
    bd_hmap_free(rt.statuses);
    bd_hmap_free(rt.verify);
    zsum_free_all(rt.zsum);
    msrc_cache_free(rt.mcache);
    while (rt.checks) {
        vcheck_t *vc = rt.checks;
        rt.checks = vc->next;
        bind_soacheck_cancel(vc->h);
        free(vc);
    }
    app_free(rt.app);
    loc_sup_free(rt.sup);
    bind_server_free(rt.srv);
    bind_zonedb_free(rt.db);
    proj_free(rt.p);
    val_catalog_free(rt.cat);
    jnl_close(rt.j);
    bind_server_key_wipe(&rt.xfr);
    free(rt.journal_dir);
    free(rt.named_dir);
    return rc;
}
