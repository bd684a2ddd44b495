/*
 * event.h - Kubernetes Events (core v1) on the objects bindy manages: the one
 * implementation the status writer (Ready changes) and the workload applier (objects
 * created, updated, deleted or refused) share, so every Event bindy posts has the same
 * shape: involvedObject (with uid when known), type, reason, message, source and
 * reporting component/instance, first/lastTimestamp now, count 1, a generated name
 * "<object>.<random>" in the object's namespace.
 *
 * Events are notices, not state: a post is best effort (no retry); a failure is counted
 * and logged, and never reaches the caller, whose work goes on. Deciding *when* to post
 * (once per change, never at rest) is the caller's business.
 *
 * Ownership: client borrowed, outlives the recorder (k8s_events_free first). Strings of
 * k8s_event_t are borrowed for the call. Threads: the client's loop; nothing blocks.
 */
#ifndef BD_K8S_EVENT_H
#define BD_K8S_EVENT_H

#include <jansson.h>
#include <stdint.h>

#include "client.h"
#include "err.h"

typedef struct k8s_events k8s_events_t;

typedef struct k8s_event {
    /* the involvedObject; uid may be NULL (then left out) */
    const char *api_version, *kind, *ns, *name, *uid;
    const char *type;    /* "Normal" or "Warning" */
    const char *reason;  /* UpperCamelCase: "Created", "ApplyFailed", "CnameConflict" */
    const char *message; /* NULL: "" */
} k8s_event_t;

/* A recorder posting through c. component: source.component and reportingComponent
 * (NULL or "": "bindy"); instance: reportingInstance, e.g. the pod name (NULL: "").
 * Both copied. BD_OK, BD_EINVAL (no client), BD_ENOMEM. *out written only on success. */
int k8s_events_new(k8s_client_t *c, const char *component, const char *instance, k8s_events_t **out,
                   bd_err_t *err);
/* Cancel the posts in flight (they are not counted) and free. NULL is a no-op. */
void k8s_events_free(k8s_events_t *e);
/* Cancel the posts in flight, e.g. when leadership is lost: a replica that no longer
 * leads writes nothing, Events included. NULL is a no-op. */
void k8s_events_cancel(k8s_events_t *e);

/* The Event object for ev, timestamped with the wall clock now: a new reference, NULL
 * when out of memory or when ev lacks ns, name, kind, type or reason. For callers that
 * decide now and post later (the status writer posts after its status write lands). */
json_t *k8s_event_build(const k8s_events_t *e, const k8s_event_t *ev);
/* Create the Event obj (borrowed; from k8s_event_build) in its metadata.namespace.
 * BD_OK when the post started (its outcome is counted), else the reason it did not
 * (BD_EINVAL, BD_ENOMEM), also counted as an error. */
int k8s_event_send(k8s_events_t *e, const json_t *obj);
/* k8s_event_build then k8s_event_send. */
int k8s_event_post(k8s_events_t *e, const k8s_event_t *ev);

typedef struct k8s_events_stats {
    uint64_t created;  /* Events the API server accepted */
    uint64_t errors;   /* posts refused, failed or not started */
    unsigned inflight; /* posts in flight */
} k8s_events_stats_t;
void k8s_events_stats(const k8s_events_t *e, k8s_events_stats_t *st);

#endif
