/*
 * catchup_once.c - one catch-up of a journal by a fresh projector, zone store and applier,
 * as `bindy run` does at start-up without a checkpoint. A diagnostic, not a benchmark: run
 * it under `valgrind --tool=callgrind` to count what projecting and storing costs, where
 * the shared machine's noise hides a few per cent in timings.
 *
 * usage: catchup_once JOURNAL   (read-only; e.g. made by `bindy-journal --journal J import DIR`)
 * Prints the events applied and the seconds taken; exit 1 on an error.
 */
#include <stdio.h>
#include <stdlib.h>

#include "applier.h"
#include "clock.h"
#include "projector.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: catchup_once JOURNAL\n");
        return 2;
    }
    setenv("BINDY_PROJECTOR_CHECKPOINT_EVENTS", "0", 1); /* no snapshot write */
    jnl_opts_t o;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_RDONLY;
    jnl_t *j = NULL;
    proj_t *p = NULL;
    bind_zonedb_t *db = NULL;
    app_t *a = NULL;
    bd_err_t err = {0};
    size_t n = 0;
    int rc = 1;
    if (jnl_open(argv[1], &o, &j, &err) != BD_OK || proj_new(NULL, &p, &err) != BD_OK ||
        bind_zonedb_new(&db, NULL) != BD_OK || app_new(j, p, db, NULL, NULL, &a, &err) != BD_OK)
        goto out;
    double t0 = bd_mono_s();
    if (app_catch_up(a, &n, &err) != BD_OK)
        goto out;
    printf("%zu events applied in %.3f s\n", n, bd_mono_s() - t0);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "catchup_once: %s\n", err.msg[0] ? err.msg : "cannot set up");
    app_free(a);
    proj_free(p);
    bind_zonedb_free(db);
    jnl_close(j);
    return rc;
}
