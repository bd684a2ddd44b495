#include "finalizer.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"
#include "log.h"
#include "resource.h"
#include "validate.h"

enum {
    F_OURS = 1u << 0,     /* the observed object carries FIN_NAME */
    F_DELETING = 1u << 1, /* the observed object has a deletionTimestamp */
    F_REMOVE = 1u << 2,   /* the write in flight (or sent) removes ours */
    F_WRITTEN = 1u << 3,  /* that write succeeded; the watch has not brought it back yet */
};

typedef struct fin_obj {
    fin_t *f;
    res_kind_t kind;
    unsigned flags;
    uint64_t del_seq;   /* seq of the first event with a deletionTimestamp; 0: none */
    /* only while the object needs a write: */
    char *rv;           /* observed metadata.resourceVersion */
    json_t *seen;       /* observed metadata.finalizers (JSON null when absent) */
    json_t *others;     /* observed finalizers but ours, in order */
    char *sent_rv;      /* rv of the write in flight, or of one done (not repeated) */
    k8s_call_t *call;
    const char *ns, *name; /* into key */
    char key[];         /* "Kind/ns/name\0ns\0name" */
} fin_obj_t;

struct fin {
    k8s_client_t *c;
    struct ev_loop *loop;
    fin_opts_t o;
    bd_hmap_t *objs;    /* key -> fin_obj_t (owned) */
    bd_hmap_t *pending; /* key -> fin_obj_t (borrowed from objs) */
    uint64_t applied;   /* highest applied_seq given to fin_flush */
    ev_timer timer;     /* retries and writes over max_inflight */
    fin_stats_t st;
};

void fin_opts_init(fin_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->max_inflight = 32;
}

static void obj_clear_want(fin_obj_t *o)
{
    free(o->rv);
    o->rv = NULL;
    json_decref(o->others);
    o->others = NULL;
    json_decref(o->seen);
    o->seen = NULL;
}

static void obj_free(fin_obj_t *o)
{
    if (o == NULL)
        return;
    if (o->call != NULL) {
        k8s_call_cancel(o->call);
        o->f->st.inflight--;
    }
    obj_clear_want(o);
    free(o->sent_rv);
    free(o);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fin_t *f = w->data;
    if (fin_flush(f, f->applied) != BD_OK)
        bd_warn("finalizers: flush failed: out of memory");
}

static void schedule(fin_t *f)
{
    if (!ev_is_active(&f->timer)) {
        ev_timer_set(&f->timer, 0.0, 0.0);
        ev_timer_start(f->loop, &f->timer);
    }
}

int fin_new(k8s_client_t *client, const fin_opts_t *opts, fin_t **out, bd_err_t *err)
{
    *out = NULL;
    fin_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return bd_err_set(err, BD_ENOMEM, "finalizers: out of memory");
    f->c = client;
    f->loop = k8s_client_loop(client);
    if (opts)
        f->o = *opts;
    else
        fin_opts_init(&f->o);
    if (f->o.max_inflight == 0)
        f->o.max_inflight = 32;
    f->objs = bd_hmap_new();
    f->pending = bd_hmap_new();
    if (f->objs == NULL || f->pending == NULL) {
        fin_free(f);
        return bd_err_set(err, BD_ENOMEM, "finalizers: out of memory");
    }
    ev_timer_init(&f->timer, timer_cb, 0.0, 0.0);
    f->timer.data = f;
    *out = f;
    return BD_OK;
}

void fin_free(fin_t *f)
{
    if (f == NULL)
        return;
    if (f->loop)
        ev_timer_stop(f->loop, &f->timer);
    size_t pos = 0;
    const char *key;
    void *v;
    while (f->objs && bd_hmap_next(f->objs, &pos, &key, &v))
        obj_free(v);
    bd_hmap_free(f->objs);
    bd_hmap_free(f->pending);
    free(f);
}

/* ---- observe ------------------------------------------------------------------------------ */

static fin_obj_t *obj_get(fin_t *f, res_kind_t kind, const char *key, const char *ns, const char *name)
{
    fin_obj_t *o = bd_hmap_get(f->objs, key);
    if (o != NULL)
        return o;
    size_t kl = strlen(key), nl = strlen(ns), ml = strlen(name);
    o = calloc(1, sizeof(*o) + kl + nl + ml + 3);
    if (o == NULL)
        return NULL;
    o->f = f;
    o->kind = kind;
    memcpy(o->key, key, kl + 1);
    char *p = o->key + kl + 1;
    memcpy(p, ns, nl + 1);
    o->ns = p;
    p += nl + 1;
    memcpy(p, name, ml + 1);
    o->name = p;
    if (bd_hmap_put(f->objs, key, o, NULL) != BD_OK) {
        free(o);
        return NULL;
    }
    return o;
}

int fin_observe(fin_t *f, const jnl_event_t *ev)
{
    if (ev == NULL || ev->kind == NULL || ev->name == NULL || ev->type > JNL_DELETED)
        return BD_OK;
    res_kind_t kind;
    if (res_kind_from_name(ev->kind, &kind) != BD_OK || (kind != RES_DNSZONE && !res_kind_is_record(kind)))
        return BD_OK;
    if (ev->api_version && strncmp(ev->api_version, BD_GROUP "/", strlen(BD_GROUP "/")) != 0)
        return BD_OK; /* a kind of the same name in another group */
    const char *ns = ev->ns ? ev->ns : "";
    char key[600];
    int n = snprintf(key, sizeof(key), "%s/%s/%s", ev->kind, ns, ev->name);
    if (n < 0 || (size_t)n >= sizeof(key))
        return BD_OK; /* longer than any Kubernetes name allows */
    if (ev->type == JNL_DELETED) {
        fin_obj_t *o = bd_hmap_del(f->objs, key);
        if (o != NULL) {
            bd_hmap_del(f->pending, key);
            obj_free(o);
        }
        return BD_OK;
    }
    if (!json_is_object(ev->object))
        return BD_OK;
    const json_t *md = json_object_get(ev->object, "metadata");
    const json_t *dts = json_object_get(md, "deletionTimestamp");
    bool deleting = dts != NULL && !json_is_null(dts);
    const json_t *fins = json_object_get(md, "finalizers");
    bool ours = false;
    size_t i;
    const json_t *v;
    json_array_foreach(fins, i, v) ours |= json_is_string(v) && strcmp(json_string_value(v), FIN_NAME) == 0;
    /* After a write succeeded, events older than it still arrive (e.g. the status writer's
     * own): they predate our edit of the list, which the stream brings next, so they are
     * read as if it were in them rather than written again. */
    fin_obj_t *prev = bd_hmap_get(f->objs, key);
    bool written = prev && (prev->flags & F_WRITTEN);
    bool wrote_ours = written && !(prev->flags & F_REMOVE);
    if (written && ours != wrote_ours)
        ours = wrote_ours;
    else
        written = false; /* this event carries our write */
    bool need = deleting ? ours : !ours;

    /* everything that can fail first: the object's state changes only on success */
    const char *rv = ev->resource_version && *ev->resource_version
                         ? ev->resource_version
                         : json_string_value(json_object_get(md, "resourceVersion"));
    char *rv_copy = NULL;
    json_t *others = NULL, *seen = NULL;
    if (need) {
        rv_copy = strdup(rv ? rv : "");
        others = json_array();
        seen = fins ? json_deep_copy(fins) : json_null();
        if (rv_copy == NULL || others == NULL || seen == NULL)
            goto oom;
        json_array_foreach(fins, i, v) {
            if (json_is_string(v) && strcmp(json_string_value(v), FIN_NAME) != 0 &&
                json_array_append_new(others, json_string(json_string_value(v))) != 0)
                goto oom;
        }
    }
    fin_obj_t *o = obj_get(f, kind, key, ns, ev->name);
    if (o == NULL || (need && bd_hmap_put(f->pending, key, o, NULL) != BD_OK))
        goto oom;
    o->flags = (o->flags & F_REMOVE) | (written ? F_WRITTEN : 0) | (ours ? F_OURS : 0) | (deleting ? F_DELETING : 0);
    if (!deleting)
        o->del_seq = 0;
    else if (o->del_seq == 0)
        o->del_seq = ev->seq ? ev->seq : 1;
    obj_clear_want(o);
    if (need) {
        o->rv = rv_copy;
        o->others = others;
        o->seen = seen;
    } else {
        bd_hmap_del(f->pending, key);
        f->st.skipped++;
    }
    return BD_OK;
oom:
    free(rv_copy);
    json_decref(others);
    json_decref(seen);
    return BD_ENOMEM;
}

/* ---- write ------------------------------------------------------------------------------- */

static void on_patch(void *arg, const k8s_resp_t *r)
{
    fin_obj_t *o = arg;
    fin_t *f = o->f;
    o->call = NULL;
    f->st.inflight--;
    bool remove = o->flags & F_REMOVE;
    switch (r->code) {
    case BD_OK:
        if (remove)
            f->st.removes++;
        else
            f->st.adds++;
        bd_debug("%s/%s %s: finalizer %s %s", o->ns, o->name, res_kind_name(o->kind), FIN_NAME,
                 remove ? "removed" : "added");
        if (!(o->flags & F_OURS) == !remove) {
            /* what was observed meanwhile predates the write: read it as if it were in it */
            o->flags = (o->flags | F_WRITTEN) ^ F_OURS;
            bool need = (o->flags & F_DELETING) ? (o->flags & F_OURS) : !(o->flags & F_OURS);
            if (!need) {
                bd_hmap_del(f->pending, o->key);
                obj_clear_want(o);
            }
        }
        break; /* sent_rv kept: not repeated until a newer version is observed */
    case BD_ENOTFOUND:
        f->st.gone++;
        break;
    case BD_EINVAL:
    case BD_EAUTH:
        f->st.errors++;
        bd_warn("%s/%s %s: cannot %s the finalizer %s: %s", o->ns, o->name, res_kind_name(o->kind),
                remove ? "remove" : "add", FIN_NAME, r->message);
        break; /* refused: retried when a newer version is observed */
    default:
        f->st.errors++;
        bd_debug("%s/%s %s: finalizer write failed, retrying: %s", o->ns, o->name, res_kind_name(o->kind),
                 r->message);
        free(o->sent_rv);
        o->sent_rv = NULL;
        break;
    }
    if (bd_hmap_count(f->pending) > 0)
        schedule(f); /* the retry, or what waited for the in-flight cap */
}

static int send_patch(fin_t *f, fin_obj_t *o, bool remove)
{
    int rc = BD_ENOMEM;
    char *path = NULL, *sent = strdup(o->rv);
    json_t *list = json_deep_copy(o->others);
    json_t *patch = NULL;
    if (sent == NULL || list == NULL || (!remove && json_array_append_new(list, json_string(FIN_NAME)) != 0))
        goto out;
    /* test, then set: only a concurrent edit of the list itself fails the write (422), not
     * one of the status or spec, so a burst of status writes does not turn every
     * finalizer write into a conflict. A test of null passes on an absent list. */
    patch = json_pack("[{s:s,s:s,s:O},{s:s,s:s,s:O}]", "op", "test", "path", "/metadata/finalizers", "value",
                      o->seen, "op", "add", "path", "/metadata/finalizers", "value", list);
    k8s_res_t res = {BD_GROUP, BD_VERSION, res_kind_plural(o->kind), res_kind_name(o->kind), true};
    path = patch ? k8s_path(&res, o->ns, o->name, NULL) : NULL;
    if (path == NULL)
        goto out;
    k8s_req_t req = {.method = K8S_PATCH_JSON, .path = path, .body = patch, .backoff_key = o->key};
    if ((rc = k8s_call(f->c, &req, on_patch, o, &o->call)) != BD_OK)
        goto out;
    f->st.inflight++;
    o->flags = (remove ? (o->flags | F_REMOVE) : (o->flags & ~(unsigned)F_REMOVE)) & ~(unsigned)F_WRITTEN;
    free(o->sent_rv);
    o->sent_rv = sent;
    sent = NULL;
out:
    free(sent);
    free(path);
    json_decref(list);
    json_decref(patch);
    return rc;
}

int fin_flush(fin_t *f, uint64_t applied_seq)
{
    if (applied_seq > f->applied)
        f->applied = applied_seq;
    if (f->o.fence && !f->o.fence(f->o.fence_arg)) {
        f->st.fenced++;
        return BD_OK;
    }
    int rc = BD_OK;
    size_t n = 0;
    /* sorted: a deterministic order of writes, and the map may not change meanwhile
     * (no callback runs inside this function) */
    const char **keys = bd_hmap_keys_sorted(f->pending, &n);
    if (keys == NULL && n > 0)
        return BD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        fin_obj_t *o = bd_hmap_get(f->pending, keys[i]);
        if (o->call != NULL || o->rv == NULL || (o->sent_rv && strcmp(o->sent_rv, o->rv) == 0))
            continue; /* in flight, or done for this version */
        bool remove = o->flags & F_DELETING;
        if (remove && o->del_seq > f->applied)
            continue; /* the deletion is not applied yet: the next flush */
        if (f->st.inflight >= f->o.max_inflight)
            break; /* on_patch schedules the rest */
        int r = send_patch(f, o, remove);
        if (r == BD_ENOMEM)
            rc = r;
        else if (r != BD_OK)
            bd_warn("%s/%s %s: cannot start the finalizer write: %s", o->ns, o->name, res_kind_name(o->kind),
                    bd_strerror(r));
    }
    free(keys);
    return rc;
}

void fin_stats(const fin_t *f, fin_stats_t *st)
{
    *st = f->st;
    st->pending = bd_hmap_count(f->pending);
    st->objects = bd_hmap_count(f->objs);
}
