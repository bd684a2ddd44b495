/*
 * kube.h - the Kubernetes API server as an event source: list+watch into the journal.
 *
 * One reflector per bindy kind and watched namespace (all namespaces, or those in
 * BINDY_WATCH_NAMESPACES, comma-separated). Every object version is appended to the
 * journal exactly once and in the order the server sent it:
 *  - the source remembers, per object, the resourceVersion last journaled (rebuilt from
 *    the journal's state of source "kubernetes" at start), and drops an event that repeats
 *    it, so reconnects and relists never journal a version twice;
 *  - a full list (first start, or 410 Gone) is journaled as its difference from what the
 *    journal holds: ADDED/MODIFIED for what changed, DELETED for what is gone, between
 *    RELIST_BEGIN and RELIST_END markers when the difference is not empty;
 *  - after every event and bookmark the resource's resume point (jnl_resume_set, key
 *    "PLURAL.GROUP/VERSION" plus "@NS" for one namespace) is queued behind it, so after a
 *    restart the watch resumes where the journal ends: a journal built with a restart in
 *    the middle holds the same object versions as one built without.
 * Appends never block the loop (jnl_append queues; see journal.h). When the journal's
 * queue is full (BD_EBUSY) the source keeps the event, and everything after it, in its
 * own FIFO and retries on a short timer, so nothing is lost or reordered. Objects of a
 * namespace that is no longer watched are left in the journal as they are.
 */
#ifndef BD_KUBE_SOURCE_H
#define BD_KUBE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"
#include "err.h"
#include "journal.h"

typedef struct ksrc ksrc_t;

typedef struct ksrc_opts {
    const char *const *namespaces; /* watched namespaces; NULL/0: all */
    size_t nnamespaces;
    unsigned page_size;            /* LIST page size; 0: the reflector's default */
} ksrc_opts_t;

/* Parse BINDY_WATCH_NAMESPACES into *o (strings owned by a static buffer; the last call
 * wins). Empty or unset: all namespaces. BD_EINVAL names a bad namespace name. */
int ksrc_opts_from_env(ksrc_opts_t *o, bd_err_t *err);

typedef struct ksrc_stats {
    uint64_t appended;   /* events journaled */
    uint64_t duplicates; /* events dropped as already journaled */
    uint64_t relists;    /* full lists after the first */
    uint64_t last_seq;   /* seq of the last event appended (0: none) */
    uint64_t busy;       /* appends the journal refused as busy (queue full) and retried */
    size_t pending;      /* events and resume points waiting for the journal now */
} ksrc_stats_t;

/* Start watching every bindy kind. c and j are borrowed and must outlive the source;
 * j must be writable. Reads the journal's state once (blocks briefly at start).
 * BD_ENOMEM, BD_EINVAL, or the journal's error. */
int ksrc_start(k8s_client_t *c, jnl_t *j, const ksrc_opts_t *o, ksrc_t **out, bd_err_t *err);
/* Stop every reflector and free. Appends queued in the journal stay queued; those still
 * waiting in the source's FIFO are handed to the journal first, which blocks (jnl_flush)
 * when its queue is full. Call it on the loop's thread. NULL is a no-op. */
void ksrc_stop(ksrc_t *s);

/* Every reflector has completed a list or resumed its watch: the journal is caught up
 * with the server as of then (readiness). */
bool ksrc_synced(const ksrc_t *s);
void ksrc_stats(const ksrc_t *s, ksrc_stats_t *st);

#endif
