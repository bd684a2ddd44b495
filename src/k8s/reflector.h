/*
 * reflector.h - list+watch of one resource, as client-go's reflector does it.
 *
 * Start: when a resume resourceVersion is given (saved before a restart), watch from it;
 * otherwise LIST in pages (limit/continue) and then WATCH from the list's
 * resourceVersion with allowWatchBookmarks. A watch that ends cleanly is re-opened from
 * the last resourceVersion seen (event or bookmark). A watch or page answered 410 Gone
 * (as an HTTP status or as an ERROR event with code 410), or refused because its
 * resourceVersion is ahead of the server's ("Too large resource version": another etcd),
 * starts a full LIST again, so the consumer can compute the difference (at once; after
 * the backoff when the last list is under 1 s old). Broken streams and failed calls are
 * retried after a jittered exponential backoff (800 ms doubling to 30 s, reset after a
 * healthy watch).
 *
 * A list's pages are collected and handed to the hooks together once the last page has
 * arrived (list_begin, every item, list_end in one go), so a list that fails halfway
 * delivers nothing; a page that fails is retried with its continue token, and an expired
 * continue token (410) starts the list again from the first page.
 *
 * A watch started from a resourceVersion that is not the end of a list (resume_rv, or a
 * re-watch after a broken stream) counts as accepted at its first event or bookmark, or
 * once it has not been refused for 1 s (client.h does not report the stream's start).
 *
 * Objects handed to the hooks always carry apiVersion and kind (list items lack them on
 * the wire), and are borrowed for the call (json_incref to keep). Hooks run on the
 * client's loop; they may call k8s_refl_stop() on their own reflector.
 */
#ifndef BD_K8S_REFLECTOR_H
#define BD_K8S_REFLECTOR_H

#include <jansson.h>
#include <stdbool.h>

#include "client.h"
#include "err.h"

typedef struct k8s_refl k8s_refl_t;

typedef struct k8s_refl_hooks {
    /* A full LIST starts (the first one, or after 410 Gone). The items that follow until
     * list_end are the complete set of objects as of the list's resourceVersion. */
    void (*list_begin)(void *arg);
    void (*list_item)(void *arg, json_t *obj);
    void (*list_end)(void *arg, const char *rv);
    /* A watch event: type "ADDED", "MODIFIED" or "DELETED". May repeat an object version
     * already delivered (after a reconnect): consumers drop duplicates. */
    void (*event)(void *arg, const char *type, json_t *obj);
    /* Everything up to rv has been delivered. */
    void (*bookmark)(void *arg, const char *rv);
    /* synced: a list completed, or a resumed watch was accepted; false when the watch
     * broke, a call failed or a relist starts (why says how; logged by the reflector
     * too). May be NULL. */
    void (*state)(void *arg, bool synced, const char *why);
} k8s_refl_hooks_t;

typedef struct k8s_refl_opts {
    k8s_res_t res;              /* strings borrowed for the reflector's life */
    const char *ns;             /* one namespace, or NULL/"" for all */
    const char *label_selector; /* may be NULL */
    const char *resume_rv;      /* watch from here first; NULL/"": list first */
    unsigned page_size;         /* LIST limit; default 500 */
    unsigned watch_timeout_s;   /* timeoutSeconds; default 300..600 (jittered, as client-go) */
    unsigned backoff_min_ms;    /* default 800 */
    unsigned backoff_max_ms;    /* default 30000 */
} k8s_refl_opts_t;

/* Start (the first call is made from the loop, never from here). *out: stop with
 * k8s_refl_stop. BD_ENOMEM, BD_EINVAL. */
int k8s_refl_start(k8s_client_t *c, const k8s_refl_opts_t *o, const k8s_refl_hooks_t *h, void *arg,
                   k8s_refl_t **out, bd_err_t *err);
/* Stop (cancels its calls; no hook is called afterwards) and free. NULL is a no-op. */
void k8s_refl_stop(k8s_refl_t *r);

/* The last resourceVersion delivered (list, event or bookmark); "" before any. */
const char *k8s_refl_rv(const k8s_refl_t *r);
bool k8s_refl_synced(const k8s_refl_t *r);

#endif
