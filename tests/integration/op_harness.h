/*
 * op_harness.h - a cluster of `bindy run` operator processes against the API-server
 * double, each behind its own cuttable proxy (tests and benchmarks of leader election).
 *
 * The double runs in this process. Replica i is POD_NAME "op-I" in namespace dns-system
 * (a Pod object op-I exists there, so the leader label can be checked), with its own
 * state directory, kubeconfig (pointing at its proxy), health port and log file
 * (DIR/op-I.log). Lease timings come from the environment given at start.
 * Not thread-safe; processes are SIGKILLed when the cluster is freed.
 */
#ifndef BD_OP_HARNESS_H
#define BD_OP_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "apiserver.h"
#include "proxy.h"

#define OPH_MAX 5

typedef struct oph oph_t;

/* Start the double and n proxies (no operator yet). bindy: the binary. */
int oph_new(const char *bindy, int n, oph_t **out, bd_err_t *err);
void oph_free(oph_t *h);

bd_apiserver_t *oph_apiserver(oph_t *h);
bd_proxy_t *oph_proxy(oph_t *h, int i);
const char *oph_dir(const oph_t *h);

/* Start replica i with the lease timings (whole seconds) and extra "NAME=VALUE"
 * variables (NULL-terminated, may be NULL). */
int oph_start(oph_t *h, int i, int duration_s, int renew_s, int retry_s, const char *const *env, bd_err_t *err);
/* Send sig to replica i; with wait, reap it (up to 20 s) and return its exit status
 * (as from waitpid), else 0. */
int oph_signal(oph_t *h, int i, int sig, bool wait);
bool oph_running(oph_t *h, int i);
pid_t oph_pid(oph_t *h, int i);

/* The Lease as the double stores it: holder ("" when none; cap bytes) and transitions
 * (-1 when no Lease). Returns false when there is no Lease. */
bool oph_lease(oph_t *h, char *holder, size_t cap, long *transitions);
/* Index of replica "op-I" named by holder, or -1. */
int oph_index(const char *holder);
/* Poll until the holder is a replica other than `not` (-1: any), up to timeout_s.
 * Returns its index or -1. */
int oph_wait_holder(oph_t *h, int not, double timeout_s);
/* The value of metric `name` (unlabelled) at replica i's /metrics, or NAN. */
double oph_metric(oph_t *h, int i, const char *name);
/* HTTP status of GET path on replica i's health port (0: no answer). */
long oph_http(oph_t *h, int i, const char *path);
/* A JSON merge patch of path (an API path) on the double, as a user would send it.
 * Returns the HTTP status (0: no answer). */
long oph_merge_patch(oph_t *h, const char *path, const char *json);
/* Whether replica i's Pod carries bindy.firestoned.io/hidden-primary=true. */
bool oph_pod_labelled(oph_t *h, int i);
/* Wall-clock time (s since the epoch) of the first line of replica i's log containing
 * text, or NAN. */
double oph_log_time(oph_t *h, int i, const char *text);
/* Monotonic seconds; wall-clock seconds since the epoch (the double's log times). */
double oph_now(void);
double oph_wall_now(void);
/* The double's request-log entries of replica i (by its user agent "(op-I)") answered at or
 * after wall time `after`, watches excluded, oldest first. *out is malloc'd (free it; NULL
 * when none); returns how many. */
size_t oph_requests(oph_t *h, int i, double after, bd_apiserver_req_t **out);

#endif
