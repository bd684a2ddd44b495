#include "manifests.h"

#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "log.h"
#include "sort.h"

typedef struct {
    char *key; /* apiVersion \n kind \n ns \n name: the journal's own order */
    json_t *obj;
    bool invalid;
} want_t;

typedef struct {
    want_t *v;
    size_t n, cap;
    int oom;
    const mf_visitor_t *report;
    void *report_arg;
    msrc_result_t *res;
} scan_t;

static char *key_of(const char *api, const char *kind, const char *ns, const char *name)
{
    char *k = NULL;
    if (asprintf(&k, "%s\n%s\n%s\n%s", api, kind, ns, name) < 0)
        return NULL;
    return k;
}

static void on_object(void *arg, const mf_object_t *o)
{
    scan_t *s = arg;
    if (s->report && (o->rep->n > 0))
        s->report->object(s->report_arg, o);
    if (o->cls != VAL_CLASS_OURS || o->name[0] == '\0')
        return; /* built-in kinds are not bindy's to journal */
    if (!o->valid)
        s->res->invalid++;
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        want_t *nv = realloc(s->v, ncap * sizeof(*nv));
        if (nv == NULL) {
            s->oom = 1;
            return;
        }
        s->v = nv;
        s->cap = ncap;
    }
    const char *api = json_string_value(json_object_get(o->obj, "apiVersion"));
    char *key = key_of(api, o->kind, o->ns, o->name);
    if (key == NULL) {
        s->oom = 1;
        return;
    }
    s->v[s->n++] = (want_t){key, json_incref(o->obj), !o->valid};
}

static void on_problem(void *arg, const char *file, int line, const char *msg, bool unreadable)
{
    scan_t *s = arg;
    s->res->problems++;
    if (s->report)
        s->report->problem(s->report_arg, file, line, msg, unreadable);
}

/* Objects a kind depends on come first (clusters, instances, zones, then records), so a
 * fresh import never shows a record "not selected" before its zone arrives. */
static int kind_rank(const char *key)
{
    static const char *const order[] = {"\nBind9Cluster\n", "\nBind9Instance\n", "\nDNSZone\n"};
    for (int i = 0; i < 3; i++)
        if (strstr(key, order[i]) != NULL)
            return i;
    return 3;
}

static int want_cmp(const void *a, const void *b)
{
    const char *x = ((const want_t *)a)->key, *y = ((const want_t *)b)->key;
    int rx = kind_rank(x), ry = kind_rank(y);
    return rx != ry ? rx - ry : strcmp(x, y);
}

static int append(jnl_t *j, jnl_type_t type, const char *api, const char *kind, const char *ns, const char *name,
                  json_t *obj, uint64_t *seq, bd_err_t *err)
{
    const json_t *meta = json_object_get(obj, "metadata");
    jnl_event_t ev = {
        .source = JNL_SRC_MANIFESTS,
        .type = type,
        .api_version = api,
        .kind = kind,
        .ns = ns,
        .name = name,
        .uid = json_string_value(json_object_get(meta, "uid")),
        .resource_version = json_string_value(json_object_get(meta, "resourceVersion")),
        .generation = json_integer_value(json_object_get(meta, "generation")),
        .object = obj,
    };
    return jnl_append(j, &ev, seq, err);
}

int msrc_import(jnl_t *j, const val_catalog_t *cat, const char *const *paths, size_t npaths, bool dry_run,
                const mf_visitor_t *report, void *report_arg, msrc_result_t *res, bd_err_t *err)
{
    memset(res, 0, sizeof(*res));
    scan_t s = {.report = report, .report_arg = report_arg, .res = res};
    jnl_state_t *st = NULL;
    bd_hmap_t *wanted = NULL;
    int rc;
    mf_visitor_t vis = {on_object, on_problem};
    if ((rc = mf_scan(cat, paths, npaths, &vis, &s)) != BD_OK || s.oom) {
        rc = bd_err_set(err, s.oom ? BD_ENOMEM : rc, "import: %s", bd_strerror(s.oom ? BD_ENOMEM : rc));
        goto out;
    }
    bd_qsort(s.v, s.n, sizeof(*s.v), want_cmp);

    uint64_t first = 0, last = 0;
    rc = jnl_bounds(j, &first, &last, err);
    if (rc != BD_OK)
        goto out;
    if (last > 0 && (rc = jnl_state_at(j, JNL_SEQ_LAST, &st, err)) != BD_OK)
        goto out;

    if ((wanted = bd_hmap_new()) == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "import: out of memory");
        goto out;
    }
    for (size_t i = 0; i < s.n; i++) {
        want_t *w = &s.v[i];
        if (bd_hmap_put(wanted, w->key, w, NULL) != BD_OK) {
            rc = bd_err_set(err, BD_ENOMEM, "import: out of memory");
            goto out;
        }
        if (w->invalid)
            continue; /* its journaled version stays as it is */
        const char *api = json_string_value(json_object_get(w->obj, "apiVersion"));
        const char *kind = json_string_value(json_object_get(w->obj, "kind"));
        const json_t *meta = json_object_get(w->obj, "metadata");
        const char *ns = json_string_value(json_object_get(meta, "namespace")) ?: "default";
        const char *name = json_string_value(json_object_get(meta, "name"));
        const jnl_event_t *have = st ? jnl_state_find(st, api, kind, ns, name) : NULL;
        if (have != NULL && json_equal(have->object, w->obj)) {
            res->unchanged++;
            continue;
        }
        if (have)
            res->modified++;
        else
            res->added++;
        if (!dry_run && (rc = append(j, have ? JNL_MODIFIED : JNL_ADDED, api, kind, ns, name, w->obj,
                                     &res->last_seq, err)) != BD_OK)
            goto out;
    }

    /* Deletions: manifest objects the directory no longer has. */
    res->deletions_held = res->problems > 0;
    for (size_t i = 0; st && i < jnl_state_count(st); i++) {
        const jnl_event_t *ev = jnl_state_get(st, i);
        if (ev->source != JNL_SRC_MANIFESTS || val_classify(cat, ev->api_version, ev->kind) != VAL_CLASS_OURS)
            continue;
        char *key = key_of(ev->api_version, ev->kind, ev->ns, ev->name);
        if (key == NULL) {
            rc = bd_err_set(err, BD_ENOMEM, "import: out of memory");
            goto out;
        }
        bool gone = bd_hmap_get(wanted, key) == NULL;
        free(key);
        if (!gone)
            continue;
        if (res->deletions_held) {
            bd_warn("%s %s/%s: its manifest is gone, but deletion waits until every file parses", ev->kind,
                    ev->ns, ev->name);
            continue;
        }
        res->deleted++;
        if (!dry_run && (rc = append(j, JNL_DELETED, ev->api_version, ev->kind, ev->ns, ev->name, ev->object,
                                     &res->last_seq, err)) != BD_OK)
            goto out;
    }
    if (!dry_run && res->last_seq > 0)
        rc = jnl_flush(j, err);
out:
    for (size_t i = 0; i < s.n; i++) {
        free(s.v[i].key);
        json_decref(s.v[i].obj);
    }
    free(s.v);
    bd_hmap_free(wanted);
    jnl_state_free(st);
    return rc;
}
