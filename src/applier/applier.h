/*
 * applier.h - from the journal to the targets.
 *
 * app_catch_up() reads every committed journal event the projector has not seen, feeds
 * it to the projector, and hands each event's changes to the hidden primary's zone store
 * (every operator replica keeps it hot, so a new leader serves at once) and to the
 * caller's hooks (the runtime target: named processes in local mode, workloads in a
 * cluster; logging). Events are applied one at a time, so every change can be logged
 * with the object it came from.
 */
#ifndef BD_APPLIER_H
#define BD_APPLIER_H

#include "err.h"
#include "journal.h"
#include "projector.h"
#include "zonedb.h"

typedef struct app app_t;

typedef struct {
    /* After each event: its changes (zones already applied to the zone store). */
    void (*applied)(void *arg, const jnl_event_t *ev, const proj_changes_t *ch);
} app_hooks_t;

/* j, p and db are borrowed and must outlive the applier. */
int app_new(jnl_t *j, proj_t *p, bind_zonedb_t *db, const app_hooks_t *hooks, void *arg, app_t **out,
            bd_err_t *err);
void app_free(app_t *a);

/* Apply every committed event after proj_seq(p). *n (may be NULL) gets how many.
 * A corrupt record is logged and skipped (verify names it). Returns BD_OK or the first
 * journal/projector/zone-store error. */
int app_catch_up(app_t *a, size_t *n, bd_err_t *err);

/* Apply one zone change to a zone store: the projector's diff plus the current SOA. */
int app_apply_zone(bind_zonedb_t *db, const proj_t *p, const proj_zone_change_t *c, bd_err_t *err);

#endif
