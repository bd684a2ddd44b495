/*
 * runtime.h - local mode: bindy's main job on one machine.
 *
 * The source is a directory of manifests, watched with inotify: every save is imported
 * into the journal (msrc_import, the same path as `bindy-journal import`), and the same
 * applier as in a cluster turns journal events into desired state. bindy serves every
 * zone and catalog as the hidden primary on loopback; every replica of every
 * Bind9Instance is a local named (loc_sup) with its own directory, port and rendered
 * named.conf, fed only by catalog zones, NOTIFY and transfers.
 *
 * Everything runs on the default libev loop (the supervisor needs it). SIGINT/SIGTERM
 * stop every named and return from loc_rt_run.
 */
#ifndef BD_RUNTIME_H
#define BD_RUNTIME_H

#include "err.h"

typedef struct {
    const char *manifests; /* the directory watched */
    const char *state_dir; /* journal in STATE/journal, named dirs in STATE/named, keys */
    const char *address;   /* loopback address for bindy and every named (127.0.0.1) */
} loc_rt_opts_t;

/* Run until SIGINT/SIGTERM. Returns BD_OK after a clean stop, or the error that kept it
 * from starting (err says what). Blocks (it is the program's main loop). */
int loc_rt_run(const loc_rt_opts_t *opts, bd_err_t *err);

#endif
