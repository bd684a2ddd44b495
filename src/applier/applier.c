#include "applier.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app_ckpt.h"
#include "hmap.h"
#include "log.h"
#include "sort.h"

struct app {
    jnl_t *j;
    proj_t *p;
    bind_zonedb_t *db;
    app_hooks_t hooks;
    void *arg;
    app_ckpt_t *ck;
};

int app_new(jnl_t *j, proj_t *p, bind_zonedb_t *db, const app_hooks_t *hooks, void *arg, app_t **out,
            bd_err_t *err)
{
    *out = NULL;
    app_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return bd_err_set(err, BD_ENOMEM, "applier: out of memory");
    *a = (app_t){j, p, db, hooks ? *hooks : (app_hooks_t){0}, arg, NULL};
    int rc = app__ckpt_new(j, p, db, hooks, arg, &a->ck, err);
    if (rc != BD_OK) {
        free(a);
        return rc;
    }
    *out = a;
    return BD_OK;
}

void app_free(app_t *a)
{
    if (a == NULL)
        return;
    app__ckpt_free(a->ck);
    free(a);
}

int app_checkpoint(app_t *a, bool wait, bd_err_t *err) { return app__ckpt_write(a->ck, wait, err); }

/* Lines joined into one zone-file text (each already absolute with a TTL). */
static char *join(const res_strv_t *v, const char *extra)
{
    size_t len = extra ? strlen(extra) + 1 : 0;
    for (size_t i = 0; i < v->n; i++)
        len += strlen(v->v[i]) + 1;
    char *s = malloc(len + 1), *o = s;
    if (s == NULL)
        return NULL;
    for (size_t i = extra ? 0 : 1; i <= v->n; i++) {
        const char *line = i == 0 ? extra : v->v[i - 1];
        size_t l = strlen(line);
        memcpy(o, line, l);
        o[l] = '\n';
        o += l + 1;
    }
    *o = '\0';
    return s;
}

int app_apply_zone(bind_zonedb_t *db, const proj_t *p, const proj_zone_change_t *c, bd_err_t *err)
{
    if (c->deleted) {
        int rc = bind_zonedb_remove(db, c->zone);
        return rc == BD_ENOTFOUND ? BD_OK : rc;
    }
    const proj_zone_t *z = proj_zone_get(p, c->zone);
    if (z == NULL)
        return BD_OK; /* gone again since: a later event deletes it */
    int rc;
    char *soa = NULL, *add_text = NULL, *del_text = NULL;
    ldns_rr_list *add = NULL, *del = NULL;
    res_strv_t all = {0};
    if ((rc = proj_zone_soa(z, &soa)) != BD_OK)
        goto out;
    if (c->created || !bind_zonedb_soa(db, c->zone)) {
        /* a new zone (or one the store lost): its whole content */
        if ((rc = proj_zone_rrs(z, &all)) != BD_OK)
            goto out;
        add_text = join(&all, soa);
        del_text = strdup("");
    } else {
        add_text = join(&c->added, soa);
        del_text = join(&c->removed, NULL);
    }
    if (add_text == NULL || del_text == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "applier: out of memory");
        goto out;
    }
    if ((rc = bind_zonedb_parse_rrs(add_text, NULL, 0, &add, err)) != BD_OK ||
        (rc = bind_zonedb_parse_rrs(del_text, NULL, 0, &del, err)) != BD_OK)
        goto out;
    rc = bind_zonedb_apply(db, c->zone, del, add, proj_zone_serial(z), err);
out:
    ldns_rr_list_deep_free(add);
    ldns_rr_list_deep_free(del);
    res_strv_deinit(&all);
    free(soa);
    free(add_text);
    free(del_text);
    return rc;
}

/* ---- batches: zone changes applied to the store once per catch-up -------------------- */

/* Events within one catch-up that touch the same zone (an import of 10,000 records is
 * 10,000 events) are applied to the zone store as one diff: one parse, one store update,
 * one NOTIFY and one IXFR version instead of one per event (which was half the time of
 * such an import). The diff is the net of the events' diffs, exact because each event's
 * diff is exact: a line removed by one event and added back by a later one cancels. */
typedef struct {
    bd_hmap_t *net; /* RR line -> (intptr_t) net count: -1 removed, +1 added */
    bool reload;    /* created or deleted within the batch: load its whole content */
} zbatch_t;

/* At most this many events per store update, so the net diffs of a long replay stay
 * bounded in memory; a batch that reaches it is applied and a new one begins. */
#define APP_BATCH_EVENTS 16384

static void zbatch_free_all(bd_hmap_t *batch)
{
    size_t pos = 0;
    zbatch_t *zb;
    while (batch && bd_hmap_next(batch, &pos, NULL, (void **)&zb)) {
        bd_hmap_free(zb->net);
        free(zb);
    }
    bd_hmap_free(batch);
}

static int net_add(bd_hmap_t *net, const res_strv_t *lines, intptr_t delta)
{
    for (size_t i = 0; i < lines->n; i++) {
        intptr_t v = (intptr_t)bd_hmap_get(net, lines->v[i]) + delta;
        if (v == 0)
            bd_hmap_del(net, lines->v[i]);
        else if (bd_hmap_put(net, lines->v[i], (void *)v, NULL) != BD_OK)
            return BD_ENOMEM;
    }
    return BD_OK;
}

/* Append a borrowed line (the vector's array is freed, not its strings). */
static int push_borrowed(res_strv_t *v, const char *line)
{
    char **nv = realloc(v->v, (v->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return BD_ENOMEM;
    v->v = nv;
    v->v[v->n++] = (char *)line;
    return BD_OK;
}

static int cmp_line(const void *x, const void *y) { return strcmp(*(char *const *)x, *(char *const *)y); }

/* Fold one event's zone changes into batch. */
static int batch_add(bd_hmap_t *batch, const proj_changes_t *ch, bd_err_t *err)
{
    for (size_t i = 0; i < ch->nzones; i++) {
        const proj_zone_change_t *c = &ch->zones[i];
        zbatch_t *zb = bd_hmap_get(batch, c->zone);
        if (zb == NULL) {
            if ((zb = calloc(1, sizeof(*zb))) == NULL || (zb->net = bd_hmap_new()) == NULL ||
                bd_hmap_put(batch, c->zone, zb, NULL) != BD_OK) {
                if (zb)
                    bd_hmap_free(zb->net);
                free(zb);
                return bd_err_set(err, BD_ENOMEM, "applier: out of memory");
            }
        }
        if (c->created || c->deleted)
            zb->reload = true; /* the diffs before it no longer apply; the content is reloaded */
        if (zb->reload)
            continue;
        if (net_add(zb->net, &c->removed, -1) != BD_OK || net_add(zb->net, &c->added, +1) != BD_OK)
            return bd_err_set(err, BD_ENOMEM, "applier: out of memory");
    }
    return BD_OK;
}

/* Apply every zone of batch to the store, in zone name order. */
static int batch_flush(app_t *a, bd_hmap_t *batch, bd_err_t *err)
{
    size_t nz = 0;
    const char **zones = bd_hmap_keys_sorted(batch, &nz);
    if (nz > 0 && zones == NULL)
        return bd_err_set(err, BD_ENOMEM, "applier: out of memory");
    int rc = BD_OK;
    for (size_t i = 0; i < nz && rc == BD_OK; i++) {
        zbatch_t *zb = bd_hmap_get(batch, zones[i]);
        const proj_zone_t *z = proj_zone_get(a->p, zones[i]);
        proj_zone_change_t c = {.zone = (char *)zones[i], .deleted = z == NULL};
        uint32_t stored = 0;
        bool have = bind_zonedb_serial(a->db, zones[i], &stored) == BD_OK;
        if (z != NULL && zb->reload && have) {
            /* deleted and created again within the batch: start from nothing */
            bind_zonedb_remove(a->db, zones[i]);
            have = false;
        }
        if (z != NULL && !have) {
            c.created = true;
        } else if (z != NULL) {
            if (stored == proj_zone_serial(z) && bd_hmap_count(zb->net) == 0)
                continue; /* nothing served changed */
            size_t pos = 0;
            const char *line;
            void *v;
            while (rc == BD_OK && bd_hmap_next(zb->net, &pos, &line, &v))
                if (push_borrowed((intptr_t)v < 0 ? &c.removed : &c.added, line) != BD_OK)
                    rc = bd_err_set(err, BD_ENOMEM, "applier: out of memory");
            /* sorted, as the projector's own diffs: the store keeps this diff for IXFR,
             * and every replica must send the same one */
            bd_qsort(c.removed.v, c.removed.n, sizeof(*c.removed.v), cmp_line);
            bd_qsort(c.added.v, c.added.n, sizeof(*c.added.v), cmp_line);
        }
        if (rc == BD_OK)
            rc = app_apply_zone(a->db, a->p, &c, err);
        free(c.removed.v);
        free(c.added.v);
    }
    free(zones);
    return rc;
}

int app_catch_up(app_t *a, size_t *n, bd_err_t *err)
{
    if (n)
        *n = 0;
    jnl_iter_t *it = NULL;
    int rc = app__ckpt_load(a->ck, err); /* the first time: from the checkpoint */
    if (rc == BD_OK)
        rc = jnl_iter_new(a->j, proj_seq(a->p) + 1, 0, &it, err);
    if (rc != BD_OK)
        return rc;
    bd_hmap_t *batch = bd_hmap_new();
    size_t inbatch = 0;
    if (batch == NULL) {
        jnl_iter_free(it);
        return bd_err_set(err, BD_ENOMEM, "applier: out of memory");
    }
    for (;;) {
        jnl_record_t *rec = NULL;
        rc = jnl_iter_next(it, &rec, err);
        if (rc == BD_ENOTFOUND) {
            rc = BD_OK;
            break;
        }
        if (rc == BD_ECORRUPT) {
            bd_error("%s (skipped; run bindy-journal verify)", err ? err->msg : "corrupt journal record");
            continue;
        }
        if (rc != BD_OK)
            break;
        proj_changes_t ch = {0};
        rc = proj_apply(a->p, &rec->ev, err);
        if (rc == BD_OK)
            rc = proj_take_changes(a->p, &ch);
        if (rc == BD_OK)
            rc = batch_add(batch, &ch, err);
        if (rc == BD_OK) {
            if (a->hooks.applied)
                a->hooks.applied(a->arg, &rec->ev, &ch);
            if (n)
                (*n)++;
        }
        proj_changes_deinit(&ch);
        jnl_record_free(rec);
        if (rc == BD_OK && ++inbatch == APP_BATCH_EVENTS) {
            rc = batch_flush(a, batch, err);
            zbatch_free_all(batch);
            inbatch = 0;
            if ((batch = bd_hmap_new()) == NULL && rc == BD_OK)
                rc = bd_err_set(err, BD_ENOMEM, "applier: out of memory");
        }
        if (rc != BD_OK)
            break;
    }
    jnl_iter_free(it);
    /* also after an error: the events the projector took in reach the store */
    if (batch != NULL) {
        bd_err_t ferr;
        int frc = batch_flush(a, batch, rc == BD_OK ? err : &ferr);
        if (rc == BD_OK)
            rc = frc;
    }
    zbatch_free_all(batch);
    if (rc == BD_OK)
        app__ckpt_applied(a->ck);
    return rc;
}
