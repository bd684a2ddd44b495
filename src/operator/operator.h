/*
 * operator.h - in-cluster mode: bindy's main job as a Kubernetes operator replica.
 *
 * Every replica runs the same pipeline, hot: the API server's list+watch (ksrc) appends
 * to the journal in STATE/journal, and each commit is fed through the projector into the
 * hidden primary's zone store (app_catch_up). Leader election (le_) decides which replica
 * acts: the leader serves transfers as the hidden primary and labels its own pod so the
 * hidden-primary Service selects it; standbys refuse transfers and clear that label from
 * their pod at start. Health and metrics are served by obs_ (/healthz, /readyz, /metrics).
 *
 * SIGTERM/SIGINT: finish what is in flight, release the lease, flush the journal, return.
 */
#ifndef BD_OPERATOR_H
#define BD_OPERATOR_H

#include <stdint.h>

#include "err.h"

typedef struct op_opts {
    const char *state_dir;   /* journal in STATE/journal, keys in STATE/keys */
    const char *context;     /* kubeconfig context; NULL: current (config.h) */
    const char *address;     /* hidden primary's listen address; NULL: "0.0.0.0" */
    int dns_port;            /* hidden primary's port; < 0: 5353 (the Service maps 53 to
                              * it); 0: any free port */
} op_opts_t;

/* Run until SIGINT/SIGTERM. Returns BD_OK after a clean stop, or the error that kept it
 * from starting (err says what: a bad environment variable, no cluster configuration, an
 * unusable journal...). Blocks: it is the program's main loop. */
int op_run(const op_opts_t *opts, bd_err_t *err);

#endif
