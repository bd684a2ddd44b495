/*
 * event.c - Kubernetes Events (see event.h).
 *
 * Each post in flight has a context on a doubly linked list, so k8s_events_free can
 * cancel what is left (a cancelled call's callback never runs, and nothing else would
 * free its context).
 */
#include "event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

typedef struct ev_post {
    k8s_events_t *e;
    k8s_call_t *call;
    struct ev_post *prev, *next;
    char what[320]; /* "Kind ns/name" of the involved object, for the log */
} ev_post_t;

struct k8s_events {
    k8s_client_t *c;
    char *component, *instance;
    ev_post_t *posts;
    k8s_events_stats_t st;
};

static const k8s_res_t EVENT_RES = {"", "v1", "events", "Event", true};

int k8s_events_new(k8s_client_t *c, const char *component, const char *instance, k8s_events_t **out,
                   bd_err_t *err)
{
    if (out == NULL || c == NULL)
        return bd_err_set(err, BD_EINVAL, "events: a client is required");
    *out = NULL;
    k8s_events_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return bd_err_set(err, BD_ENOMEM, "events: out of memory");
    e->c = c;
    e->component = strdup(component && *component ? component : "bindy");
    e->instance = strdup(instance ? instance : "");
    if (e->component == NULL || e->instance == NULL) {
        k8s_events_free(e);
        return bd_err_set(err, BD_ENOMEM, "events: out of memory");
    }
    *out = e;
    return BD_OK;
}

void k8s_events_cancel(k8s_events_t *e)
{
    if (e == NULL)
        return;
    while (e->posts != NULL) {
        ev_post_t *p = e->posts;
        e->posts = p->next;
        k8s_call_cancel(p->call);
        free(p);
    }
    e->st.inflight = 0;
}

void k8s_events_free(k8s_events_t *e)
{
    if (e == NULL)
        return;
    k8s_events_cancel(e);
    free(e->component);
    free(e->instance);
    free(e);
}

json_t *k8s_event_build(const k8s_events_t *e, const k8s_event_t *ev)
{
    if (e == NULL || ev == NULL || !ev->ns || !ev->name || !ev->kind || !ev->type || !ev->reason)
        return NULL;
    char now[32], gen_name[300];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* the API server appends random characters; names stay within 253 */
    snprintf(gen_name, sizeof(gen_name), "%.240s.", ev->name);
    json_t *inv = json_pack("{s:s, s:s, s:s, s:s}", "apiVersion", ev->api_version ? ev->api_version : "v1", "kind",
                            ev->kind, "namespace", ev->ns, "name", ev->name);
    if (inv != NULL && ev->uid != NULL && json_object_set_new(inv, "uid", json_string(ev->uid)) != 0) {
        json_decref(inv);
        inv = NULL;
    }
    /* a NULL inv makes json_pack fail ("o"), and json_pack releases what it was given */
    return json_pack("{s:s, s:s, s:{s:s, s:s}, s:o, s:s, s:s, s:s, s:{s:s}, s:s, s:s, s:i, s:s, s:s}",
                     "apiVersion", "v1", "kind", "Event", "metadata", "generateName", gen_name, "namespace", ev->ns,
                     "involvedObject", inv, "reason", ev->reason, "message", ev->message ? ev->message : "",
                     "type", ev->type, "source", "component", e->component, "firstTimestamp", now,
                     "lastTimestamp", now, "count", 1, "reportingComponent", e->component,
                     "reportingInstance", e->instance);
}

static void on_posted(void *arg, const k8s_resp_t *r)
{
    ev_post_t *p = arg;
    k8s_events_t *e = p->e;
    e->st.inflight--;
    if (r->code == BD_OK) {
        e->st.created++;
    } else {
        e->st.errors++;
        bd_warn("events: creating an Event on %s failed: %s (%s)", p->what, r->message, bd_strerror(r->code));
    }
    if (p->prev)
        p->prev->next = p->next;
    else
        e->posts = p->next;
    if (p->next)
        p->next->prev = p->prev;
    free(p);
}

int k8s_event_send(k8s_events_t *e, const json_t *obj)
{
    if (e == NULL)
        return BD_EINVAL;
    const char *ns = json_string_value(json_object_get(json_object_get(obj, "metadata"), "namespace"));
    if (ns == NULL) {
        e->st.errors++;
        return BD_EINVAL;
    }
    ev_post_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        e->st.errors++;
        return BD_ENOMEM;
    }
    p->e = e;
    const json_t *io = json_object_get(obj, "involvedObject");
    const char *kind = json_string_value(json_object_get(io, "kind"));
    const char *name = json_string_value(json_object_get(io, "name"));
    snprintf(p->what, sizeof(p->what), "%s %s/%s", kind ? kind : "?", ns, name ? name : "?");
    int rc = k8s_create(e->c, &EVENT_RES, ns, obj, on_posted, p, &p->call);
    if (rc != BD_OK) {
        free(p);
        e->st.errors++;
        return rc;
    }
    p->next = e->posts;
    if (e->posts)
        e->posts->prev = p;
    e->posts = p;
    e->st.inflight++;
    return BD_OK;
}

int k8s_event_post(k8s_events_t *e, const k8s_event_t *ev)
{
    if (e == NULL)
        return BD_EINVAL;
    if (ev == NULL || !ev->ns || !ev->name || !ev->kind || !ev->type || !ev->reason) {
        e->st.errors++;
        return BD_EINVAL;
    }
    json_t *obj = k8s_event_build(e, ev);
    if (obj == NULL) {
        e->st.errors++;
        return BD_ENOMEM;
    }
    int rc = k8s_event_send(e, obj);
    json_decref(obj);
    return rc;
}

void k8s_events_stats(const k8s_events_t *e, k8s_events_stats_t *st)
{
    if (e == NULL) {
        memset(st, 0, sizeof(*st));
        return;
    }
    *st = e->st;
}
