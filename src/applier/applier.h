/*
 * applier.h - from the journal to the targets.
 *
 * app_catch_up() reads every committed journal event the projector has not seen, feeds
 * it to the projector, and hands each event's changes to the hidden primary's zone store
 * (every operator replica keeps it hot, so a new leader serves at once) and to the
 * caller's hooks (the runtime target: named processes in local mode, workloads in a
 * cluster; logging). Events go through the projector one at a time, so every change can
 * be logged with the object it came from; their zone changes reach the zone store once
 * per catch-up (one diff per zone for up to 16,384 events), so an import of many objects
 * costs one store update, one NOTIFY and one IXFR version per zone, not one per event.
 */
#ifndef BD_APPLIER_H
#define BD_APPLIER_H

#include <stdbool.h>

#include "err.h"
#include "journal.h"
#include "projector.h"
#include "zonedb.h"

typedef struct app app_t;

typedef struct {
    /* After each event: its changes. The zone store gets them before app_catch_up
     * returns (not yet during the call). */
    void (*applied)(void *arg, const jnl_event_t *ev, const proj_changes_t *ch);
    /* At start-up, when the projector was restored from its checkpoint (or rebuilt from a
     * pruned journal's checkpoint) instead of replaying the events before it: the
     * restore's changes (every zone created, already in the zone store; every instance
     * and status) and, when restored_state is set, the resources at that seq (st, as the
     * journal folds them: what a replay would have shown the applied hook last for each
     * object; NULL otherwise). Borrowed for the call. May be NULL. */
    void (*restored)(void *arg, const jnl_state_t *st, const proj_changes_t *ch);
    bool restored_state;
} app_hooks_t;

/* j, p and db are borrowed and must outlive the applier (app_free waits for a snapshot
 * write in flight). Reads BINDY_PROJECTOR_CHECKPOINT_EVENTS: BD_EINVAL names it when it
 * is not a whole number. */
int app_new(jnl_t *j, proj_t *p, bind_zonedb_t *db, const app_hooks_t *hooks, void *arg, app_t **out,
            bd_err_t *err);
void app_free(app_t *a);

/*
 * Projector checkpoints. The first app_catch_up of a fresh projector restores it from the
 * snapshot the journal holds (JNL_SNAPSHOT_PROJECTOR) and replays only the events after
 * it; a snapshot refused by the journal (altered, another journal's) or by the projector,
 * or older than the journal's pruning checkpoint, is logged and ignored. Without one, a
 * pruned journal is rebuilt from its own checkpoint (zone serials then restart from the
 * resources' spec and status serials; a warning says so). A new snapshot is written every
 * BINDY_PROJECTOR_CHECKPOINT_EVENTS applied events (default 10000, 0 = only at shutdown):
 * captured on the calling thread at the end of the catch-up that reaches the count (a
 * copy of the projector's bookkeeping: the snapshot is of that seq), rendered and written
 * by a thread of its own (journal reads, JSON, the write and its fsync), so the caller
 * never waits for the disk. The thread first waits until no catch-up has applied an event
 * for 1 s (30 s at most after the capture), so that a burst's snapshot does not take CPU
 * from named and the transfers that follow the burst; a shutdown does not wait.
 */

/* Write a snapshot of the projector now (nothing happens when nothing was applied since
 * the last one). Call on the projector's thread. wait: block until it is on disk (clean
 * shutdown; no idle deferral, and a deferred write in flight is hurried); else this
 * returns after the capture and a thread does the rest once the applier is idle. Failures are
 * logged as well. Returns BD_OK, BD_EBUSY (not waiting, a write in flight), or the
 * projector's or journal's error. */
int app_checkpoint(app_t *a, bool wait, bd_err_t *err);

/* Apply every committed event after proj_seq(p). *n (may be NULL) gets how many.
 * A corrupt record is logged and skipped (verify names it). Returns BD_OK or the first
 * journal/projector/zone-store error. */
int app_catch_up(app_t *a, size_t *n, bd_err_t *err);

/* Apply one zone change to a zone store: the projector's diff plus the current SOA. */
int app_apply_zone(bind_zonedb_t *db, const proj_t *p, const proj_zone_change_t *c, bd_err_t *err);

#endif
