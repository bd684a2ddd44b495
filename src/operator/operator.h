/*
 * operator.h - in-cluster mode: bindy's main job as a Kubernetes operator replica.
 *
 * Every replica runs the same pipeline, hot: the API server's list+watch (ksrc) appends
 * to the journal in STATE/journal, and each commit is fed through the projector into the
 * hidden primary's zone store (app_catch_up) and observed by the status writer (kst_).
 * All replicas share one transfer key (Secret bindy-keys) before they take part in leader
 * election (le_). The leader serves transfers as the hidden primary, labels its own pod so
 * the hidden-primary Service selects it, writes statuses and Events (kst_) and applies
 * every instance's workloads (wla_), each fenced by the lease before every batch;
 * standbys refuse transfers and clear that label from their pod at start. Health and
 * metrics are served by obs_ (/healthz, /readyz, /metrics).
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
