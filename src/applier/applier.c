#include "applier.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

struct app {
    jnl_t *j;
    proj_t *p;
    bind_zonedb_t *db;
    app_hooks_t hooks;
    void *arg;
};

int app_new(jnl_t *j, proj_t *p, bind_zonedb_t *db, const app_hooks_t *hooks, void *arg, app_t **out,
            bd_err_t *err)
{
    *out = NULL;
    app_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return bd_err_set(err, BD_ENOMEM, "applier: out of memory");
    *a = (app_t){j, p, db, hooks ? *hooks : (app_hooks_t){0}, arg};
    *out = a;
    return BD_OK;
}

void app_free(app_t *a) { free(a); }

/* Lines joined into one zone-file text (each already absolute with a TTL). */
static char *join(const res_strv_t *v, const char *extra)
{
    size_t len = extra ? strlen(extra) + 1 : 0;
    for (size_t i = 0; i < v->n; i++)
        len += strlen(v->v[i]) + 1;
    char *s = malloc(len + 1), *o = s;
    if (s == NULL)
        return NULL;
    if (extra)
        o += sprintf(o, "%s\n", extra);
    for (size_t i = 0; i < v->n; i++)
        o += sprintf(o, "%s\n", v->v[i]);
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

int app_catch_up(app_t *a, size_t *n, bd_err_t *err)
{
    if (n)
        *n = 0;
    jnl_iter_t *it = NULL;
    int rc = jnl_iter_new(a->j, proj_seq(a->p) + 1, 0, &it, err);
    if (rc != BD_OK)
        return rc;
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
        proj_changes_t ch;
        rc = proj_apply(a->p, &rec->ev, err);
        if (rc == BD_OK)
            rc = proj_take_changes(a->p, &ch);
        for (size_t i = 0; rc == BD_OK && i < ch.nzones; i++)
            rc = app_apply_zone(a->db, a->p, &ch.zones[i], err);
        if (rc == BD_OK) {
            if (a->hooks.applied)
                a->hooks.applied(a->arg, &rec->ev, &ch);
            proj_changes_deinit(&ch);
            if (n)
                (*n)++;
        }
        jnl_record_free(rec);
        if (rc != BD_OK)
            break;
    }
    jnl_iter_free(it);
    return rc;
}
