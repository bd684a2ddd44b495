/*
 * leader.h - leader election on a coordination.k8s.io/v1 Lease, as client-go's
 * leaderelection package does it (LeaseLock, ReleaseOnCancel).
 *
 * The record is the Lease's spec: holderIdentity, leaseDurationSeconds, acquireTime,
 * renewTime (RFC 3339 MicroTime, UTC) and leaseTransitions. An elector creates the Lease
 * when it is absent and otherwise replaces it under optimistic concurrency (the
 * resourceVersion it read); a 409 makes the next retry read it again.
 *
 * Expiry is judged only by the local monotonic clock: another holder's lease is taken
 * over once the record has not changed for its leaseDurationSeconds, counted from the
 * moment this process observed the change (client-go's observedTime). The record's
 * renewTime is written for people, never compared with a clock.
 *
 * Standby: reads the Lease every RetryPeriod (and once more when an observed lease
 * expires) and watches it (fieldSelector=metadata.name=NAME), so a released lease
 * (holderIdentity "") is taken at once. A Lease deleted under its holder (kubectl delete)
 * makes that holder stop leading at once and create it again; other standbys create it
 * only once the last holder they saw can no longer believe it leads (its lease duration
 * from their last observation), so a deletion never makes two leaders. A standby that
 * never saw the Lease creates it at once.
 * Leader: renews every RetryPeriod. When no renewal has succeeded for RenewDeadline since
 * the last successful one was *sent* (monotonic), or when the watch shows that the lease
 * is no longer ours, it stops leading and is a standby again; it does not exit.
 * Since RenewDeadline < LeaseDuration, a leader cut off from the API server stops
 * leading before any other elector can judge its lease expired.
 *
 * Logged (INFO unless said): "Attempting to acquire lease NAME", "Lease acquired, this
 * instance is now the leader", "Starting all operators" (just before started_leading),
 * WARN "Leadership lost! Stopping all operators..." (just before stopped_leading).
 *
 * Threads: everything runs on the loop the client runs on; nothing blocks. Hooks are
 * called on that loop, never from inside le_start/le_release; they may call
 * le_fence_ok, le_is_leader, le_stats, le_holder and le_release, never le_free.
 */
#ifndef BD_LEADER_H
#define BD_LEADER_H

#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "err.h"

struct ev_loop;

typedef struct le le_t;

/* Longest lease name and identity (a DNS subdomain), and namespace (a DNS label). */
#define LE_NAME_MAX 253
#define LE_NS_MAX 63

/* Plain values: no pointers, nothing to free. Times are milliseconds so tests can run
 * sub-second; the environment gives whole seconds. */
typedef struct le_config {
    bool enabled;                        /* ENABLE_LEADER_ELECTION; default true */
    char lease_name[LE_NAME_MAX + 1];    /* LEASE_NAME; default "bindy-leader" */
    char lease_namespace[LE_NS_MAX + 1]; /* LEASE_NAMESPACE; default "dns-system" */
    char identity[LE_NAME_MAX + 1];      /* POD_NAME, else $HOSTNAME; unique per replica */
    unsigned lease_duration_ms;          /* LEASE_DURATION_SECONDS; default 15 s */
    unsigned renew_deadline_ms;          /* LEASE_RENEW_DEADLINE_SECONDS; default 10 s */
    unsigned retry_period_ms;            /* LEASE_RETRY_PERIOD_SECONDS; default 2 s */
} le_config_t;

/* The defaults above; identity "". */
void le_config_init(le_config_t *c);

/*
 * The defaults, then the environment (the seed's table):
 *   ENABLE_LEADER_ELECTION        true|false (also 1|0, case-insensitive)
 *   LEASE_NAME, LEASE_NAMESPACE   a DNS subdomain, a DNS label
 *   LEASE_DURATION_SECONDS, LEASE_RENEW_DEADLINE_SECONDS, LEASE_RETRY_PERIOD_SECONDS
 *                                 whole seconds, 1..86400 (digits only)
 *   POD_NAME                      unset or empty: $HOSTNAME
 * Each may also be spelled with a BINDY_ prefix (BINDY_LEASE_NAME...); when both are set,
 * the BINDY_ one wins (a warning is logged if they differ). A set but empty variable is an
 * error, except POD_NAME.
 * Then le_config_check. On error (BD_EINVAL) err names the variable and *out is left as
 * the defaults.
 */
int le_config_from_env(le_config_t *out, bd_err_t *err);

/* Check a configuration: names well formed, identity non-empty (when enabled), every time
 * > 0, lease duration > renew deadline > 1.2 x retry period (client-go's rule).
 * BD_EINVAL with err naming the variable (by its environment name), or BD_OK. */
int le_config_check(const le_config_t *c, bd_err_t *err);

typedef struct le_hooks {
    void (*started_leading)(void *arg);
    void (*stopped_leading)(void *arg);
    /* The observed holder changed (also on the first observation); identity is ""
     * when the lease was released or is absent. Borrowed for the call. May be NULL. */
    void (*new_leader)(void *arg, const char *identity);
} le_hooks_t;

/*
 * Start an elector. loop: the loop client runs on. client: borrowed, must outlive the
 * elector; NULL allowed only when cfg->enabled is false. cfg and hooks are copied. The
 * first request is made from the loop, never from here.
 * cfg->enabled false: "always leader" mode: a loud WARN (more than one replica will
 * conflict; this process cannot know how many run), then started_leading once from the
 * loop; stopped_leading once from le_release. No request is made.
 * Returns BD_OK, BD_EINVAL (bad cfg; err says why), BD_ENOMEM. *out: free with le_free.
 */
int le_start(struct ev_loop *loop, k8s_client_t *client, const le_config_t *cfg,
             const le_hooks_t *hooks, void *arg, le_t **out, bd_err_t *err);

/*
 * Abrupt stop, as if the process died: cancel every request and timer, call no hook, do
 * not release the lease (others take it when it expires), free. NULL is a no-op. Not from
 * a hook; allowed from the le_release done callback.
 */
void le_free(le_t *le);

/*
 * Give the lease up, for SIGTERM (client-go's ReleaseOnCancel). At once: this elector
 * stops electing and le_fence_ok turns false. Then, from the loop: if it was leading,
 * "Releasing lease ..." is logged and stopped_leading called; then, if the lease names
 * this elector, it is replaced with holderIdentity "", leaseDurationSeconds 1 and the
 * same leaseTransitions (so a standby takes it at once); then done(done_arg, code):
 *   BD_OK        released, or there was nothing of ours to release
 *   BD_ETIMEOUT  not done within timeout_ms (0: the renew deadline); the lease expires
 *   BD_ECONFLICT the lease changed meanwhile (it is no longer ours)
 *   other        the client's code for the failed write
 * done is called exactly once (unless le_free comes first) and may call le_free.
 * Returns BD_OK, or BD_EINVAL when already released (done is then not called).
 */
typedef void (*le_done_cb)(void *arg, int code);
int le_release(le_t *le, unsigned timeout_ms, le_done_cb done, void *done_arg);

/*
 * Fencing, for the applier before every batch: true only while this elector leads, the
 * last observed record names it with the leaseTransitions it was granted, and the local
 * deadline (last successful renew sent + RenewDeadline, monotonic clock read now) has not
 * passed. Always true in "always leader" mode once started, until le_release.
 */
bool le_fence_ok(const le_t *le);
bool le_is_leader(const le_t *le);

/* The holder last observed ("" when none or unknown); borrowed until the next loop
 * callback. */
const char *le_holder(const le_t *le);

typedef struct le_stats {
    bool is_leader;
    uint64_t transitions_observed; /* holder changes observed (the first sight excluded) */
    int64_t lease_transitions;     /* spec.leaseTransitions last observed; -1: none yet */
    uint64_t acquisitions;         /* times this elector started leading */
    uint64_t losses;               /* times it stopped leading without le_release */
    uint64_t renewals;             /* successful writes of the record (acquire or renew) */
    uint64_t failures;             /* attempts that failed (error, 409, timeout) */
    double last_renew_latency_s;   /* round trip of the last successful write; 0 before */
} le_stats_t;
void le_stats(const le_t *le, le_stats_t *st);

#endif
