/*
 * app_ckpt.h - the applier's projector checkpoints (internal to src/applier).
 *
 * checkpoint.c loads the projector from its snapshot in the journal at start-up (or, when
 * the journal was pruned and no snapshot fits, from the journal's own checkpoint) and
 * writes a new snapshot every N applied events and at a clean shutdown. applier.c owns
 * one app_ckpt_t per applier and calls it at the start and the end of every catch-up.
 */
#ifndef BD_APP_CKPT_H
#define BD_APP_CKPT_H

#include <stdbool.h>

#include "applier.h"

typedef struct app_ckpt app_ckpt_t;

/* Default of BINDY_PROJECTOR_CHECKPOINT_EVENTS. */
#define APP_CKPT_EVERY_DEFAULT 10000u
#define APP_CKPT_EVERY_MAX 100000000u
/* A due snapshot is captured at once but rendered and written only once the applier has
 * applied nothing for APP_CKPT_IDLE_S seconds, or APP_CKPT_DEFER_MAX_S after the capture
 * at the latest, so that it does not compete with named and the transfers of a burst. */
#define APP_CKPT_IDLE_S 1.0
#define APP_CKPT_DEFER_MAX_S 30.0

/* New state for an applier (every pointer borrowed, they outlive it). Reads and validates
 * BINDY_PROJECTOR_CHECKPOINT_EVENTS. Returns BD_OK, BD_EINVAL (err names the variable),
 * BD_ENOMEM. Free with app__ckpt_free. */
int app__ckpt_new(jnl_t *j, proj_t *p, bind_zonedb_t *db, const app_hooks_t *hooks, void *arg,
                  app_ckpt_t **out, bd_err_t *err);
/* Waits for a snapshot write in flight (blocks; its deferral is cut short), then frees.
 * NULL is a no-op. */
void app__ckpt_free(app_ckpt_t *c);

/* The first call (the projector has applied nothing): restore the projector from the
 * snapshot, or from a pruned journal's checkpoint, load the zone store from it and run the
 * restored hook; a snapshot that is refused is logged and ignored. Later calls do nothing.
 * Returns BD_OK or a journal/zone-store error that leaves the projector unusable. */
int app__ckpt_load(app_ckpt_t *c, bd_err_t *err);

/* After a catch-up: notes whether events were applied (the idle clock of a deferred
 * write), and captures a snapshot when N events were applied since the last; its write
 * waits for the applier to be idle (see APP_CKPT_IDLE_S). */
void app__ckpt_applied(app_ckpt_t *c);

/* Capture now (on the caller's thread, which must own the projector); render and write
 * on a thread (after the idle deferral); with wait, block until written, without any
 * deferral (a shutdown: a deferred write in flight is hurried too). Failures are logged
 * too. */
int app__ckpt_write(app_ckpt_t *c, bool wait, bd_err_t *err);

#endif
