/*
 * supervisor.h - run local `named` processes the way the kubelet runs pods (local mode).
 *
 * In `bindy run --local DIR` each replica of each Bind9Instance is a local named process.
 * The supervisor owns those processes: it writes each one's files, starts it, watches it
 * reach "running", reloads it when its configuration changes, restarts it with an
 * exponential back-off when it dies (the kubelet's CrashLoopBackOff), and stops them all
 * on shutdown without leaving orphans.
 *
 * A process is identified by a key string ("dns-system/primary-dns/0"). Each has:
 *   - a working directory (created if missing, mode 0750);
 *   - DIR/named.conf, the configuration text, and optional extra files (keys.conf, zone
 *     files, ...). Every file is written atomically (temporary file + rename) with mode
 *     0600, and only when its text changed; extra files dropped from the spec are removed;
 *   - DIR/named.log: named's stdout and stderr (named -g logs to stderr), opened in append
 *     mode across restarts and capped (see log_max_bytes);
 *   - a DNS port and a control port, chosen by the caller (loc_sup_alloc_port) and put in
 *     the configuration by the caller. The supervisor only reports them.
 *
 * named runs as `named -g -n THREADS -c DIR/named.conf` with DIR as its current directory,
 * stdin on /dev/null, no inherited descriptors other than 0-2, an empty signal mask and
 * default signal dispositions. It runs as the user running bindy: never pass -u (a change
 * of user clears PR_SET_PDEATHSIG, below). The configuration should set `pid-file none;`
 * (or a file inside DIR), `session-keyfile none;` (or inside DIR) and a `controls`
 * statement, so that several servers do not fight over /run/named and port 953.
 *
 * States (loc_state_t) and transitions:
 *
 *   STARTING  --"running" in named.log-->                 RUNNING
 *   RUNNING   --configuration changed: SIGHUP-->          RELOADING
 *   RELOADING --named logs the reload result (and, on success, "running")--> RUNNING
 *   STARTING/RUNNING/RELOADING --process exits unexpectedly--> BACKOFF
 *   BACKOFF   --delay elapsed, or the configuration changed--> STARTING
 *   any state --loc_sup_remove / loc_sup_stop_all: SIGTERM (SIGKILL after stop_grace)-->
 *             STOPPING --reaped--> STOPPED (then the process is forgotten)
 *   STOPPING --reaped, to restart (new directory, or removal cancelled by ensure)--> STARTING
 *
 * Any exit the supervisor did not ask for is unexpected, status 0 included (restart
 * policy Always). A process that does not log "running" within start_timeout is killed
 * (SIGKILL) and counts as a failure. A process that fails after its files changed (it
 * never ran the current configuration) restarts at once, without doubling the delay.
 * Otherwise the back-off delay starts at backoff_min and doubles on each unexpected exit
 * up to backoff_max; a process that stayed up backoff_reset seconds starts again from
 * backoff_min. Every unexpected exit is logged (WARN) as
 *   "named for dns-system/primary-dns/0 exited with status 1; restarting in 2.0 s;
 *    last lines of DIR/named.log: ... | ... | ..."   (on one line)
 *
 * Configuration changes and named 9.18: SIGHUP makes named re-read named.conf and every
 * file it includes, and reload its zones (as `rndc reload`): listen-on ports, controls,
 * keys and zones all change in place, without a restart and without dropping the other
 * zones. If named rejects the new configuration it logs "reloading configuration failed"
 * and keeps serving the old one: the supervisor then logs a WARN with named's error,
 * stores it in loc_proc_info_t.reload_error and returns to RUNNING (it does not restart:
 * a crash loop would take a working server down; the next restart, if any, will read the
 * new files and fail loudly). A SIGHUP that arrives before named has set up its signal
 * handling kills it, so a change made while STARTING is written at once and the SIGHUP
 * deferred until named logs "running". A change of working directory restarts the
 * process (SIGTERM, then start in the new directory).
 *
 * Children and the event loop: the supervisor must run on libev's default loop
 * (EV_DEFAULT). libev reaps children only there, and its default loop reaps *every*
 * child (waitpid(-1)) as soon as it exists, so ev_child is the only reliable way to get a
 * child's exit status in a program that uses the default loop at all; loc_sup_new
 * rejects any other loop. Children are forked from the loop thread with
 * PR_SET_PDEATHSIG(SIGKILL): if bindy dies (even by SIGKILL), the kernel kills every named
 * it started. The death signal belongs to the forking *thread*: run the loop on a thread
 * that lives as long as the processes should.
 *
 * Nothing blocks the loop: files are small and written directly; named.log is read in
 * bounded chunks from a 0.1 s timer while a process is STARTING or RELOADING; waitpid is
 * libev's (WNOHANG). Not thread-safe: call everything from the loop thread.
 *
 * Callbacks: the state callback fires on every state change, from the loop or from
 * inside loc_sup_ensure / loc_sup_remove / loc_sup_stop_all (e.g. STARTING right after
 * the fork). It may call loc_sup_get and loc_sup_each, never loc_sup_ensure,
 * loc_sup_remove, loc_sup_stop_all or loc_sup_free. Strings in loc_proc_info_t are
 * borrowed and valid only during the call.
 */
#ifndef BD_LOC_SUPERVISOR_H
#define BD_LOC_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ev.h>

#include "err.h"

typedef struct loc_sup loc_sup_t;

typedef enum {
    LOC_STATE_STARTING = 0, /* forked; waiting for "running" in named.log */
    LOC_STATE_RUNNING,      /* serving */
    LOC_STATE_RELOADING,    /* serving; SIGHUP sent, waiting for named's verdict */
    LOC_STATE_BACKOFF,      /* exited unexpectedly; restart timer armed; pid 0 */
    LOC_STATE_STOPPING,     /* SIGTERM (then SIGKILL) sent; waiting for the exit */
    LOC_STATE_STOPPED,      /* gone for good; the last callback for this key */
} loc_state_t;

/* "starting", "running", "reloading", "backoff", "stopping", "stopped". */
const char *loc_state_name(loc_state_t state);

/* A snapshot of one process. All strings borrowed (valid during the callback). */
typedef struct loc_proc_info {
    const char *key;
    const char *dir;
    loc_state_t state;
    pid_t pid;             /* 0 when there is no process (BACKOFF, STOPPED) */
    uint16_t dns_port;     /* as given in the spec */
    uint16_t ctl_port;
    unsigned restarts;     /* unexpected exits so far (the kubelet's restartCount) */
    double backoff;        /* the delay of the current or last back-off, seconds; 0: none */
    double since;          /* ev_now() when the current state began */
    const char *last_exit; /* "" or the last unexpected exit: how, and named's last lines */
    const char *reload_error; /* "" or why named rejected the latest reload */
} loc_proc_info_t;

typedef void (*loc_sup_state_fn)(const loc_proc_info_t *info, void *arg);

/* Options; zero fields take the defaults. */
typedef struct loc_sup_opts {
    /* The named binary. NULL: $BINDY_NAMED if set, else "named". A name without '/' is
     * searched in $PATH, then /usr/sbin and /sbin. */
    const char *named_path;
    unsigned named_threads; /* named -n; default 1 */
    double backoff_min;     /* first restart delay, s; default 0.5 */
    double backoff_max;     /* cap of the doubling delay, s; default 30 */
    double backoff_reset;   /* uptime after which the delay starts over, s; default 60 */
    double stop_grace;      /* SIGTERM to SIGKILL, s; default 10 */
    double start_timeout;   /* fork to "running", and SIGHUP to reload verdict, s; default 60 */
    size_t log_max_bytes;   /* named.log cap; default 4 MiB. Checked every 2 s: the last
                               256 KiB go to named.log.1 and named.log is truncated. */
    loc_sup_state_fn on_state; /* may be NULL */
    void *arg;                 /* passed to on_state */
} loc_sup_opts_t;

/* An extra file in the working directory. */
typedef struct loc_file {
    const char *name; /* plain name: no '/', not "." or "..", not named.conf or named.log* */
    const char *text;
} loc_file_t;

/* What a process should be. All borrowed for the duration of the call (copied). */
typedef struct loc_proc_spec {
    const char *dir;          /* working directory (absolute path) */
    const char *conf;         /* named.conf text */
    const loc_file_t *files;  /* extra files, may be NULL when nfiles is 0 */
    size_t nfiles;
    uint16_t dns_port;        /* reported in loc_proc_info_t; the caller puts them in conf */
    uint16_t ctl_port;
} loc_proc_spec_t;

/*
 * New supervisor on `loop`, which must be libev's default loop. opts may be NULL (all
 * defaults; copied). The named binary is resolved now. *out is set only on success.
 * Returns 0; BD_EINVAL (not the default loop, negative or inconsistent option: err says
 * which); BD_ENOTFOUND (no executable named: err says where it looked); BD_ENOMEM.
 */
int loc_sup_new(struct ev_loop *loop, const loc_sup_opts_t *opts, loc_sup_t **out,
                bd_err_t *err);

/*
 * Free the supervisor. Call it once loc_sup_stop_all's callback has fired (or when no
 * process was ever ensured). Processes still alive then (a caller bug) are sent SIGKILL
 * and left to libev's default loop, which reaps every child. NULL is a no-op.
 */
void loc_sup_free(loc_sup_t *sup);

/*
 * Make the process `key` exist with `spec` (see the state diagram above):
 *   absent            -> write the files, fork named: STARTING;
 *   files changed     -> rewrite what changed, then SIGHUP (RUNNING), a deferred SIGHUP
 *                        (STARTING, RELOADING), or an immediate start (BACKOFF: the
 *                        delay is cut short, the restart count kept);
 *   directory changed -> write the files there and restart the process;
 *   being removed     -> the removal is cancelled: named starts again once reaped;
 *   unchanged         -> nothing.
 * A failed fork is not an error here: it is logged and handled like a crash (BACKOFF).
 * Returns 0; BD_EINVAL (empty key, relative dir, bad file name, NULL text: err says
 * which); BD_EIO (a directory or file could not be written: err has the path and errno;
 * a running process keeps running, and files already rewritten stay: call again);
 * BD_ECANCELED (loc_sup_stop_all was called); BD_ENOMEM.
 */
int loc_sup_ensure(loc_sup_t *sup, const char *key, const loc_proc_spec_t *spec, bd_err_t *err);

/* loc_sup_remove flags. */
#define LOC_RM_DIR 0x1u /* once stopped, delete the working directory and everything in it */

/*
 * Stop the process `key`: SIGTERM, SIGKILL after stop_grace; STOPPING, then STOPPED once
 * reaped (at once when there is no process, as in BACKOFF), and the key is forgotten.
 * Returns 0 or BD_ENOTFOUND (unknown key).
 */
int loc_sup_remove(loc_sup_t *sup, const char *key, unsigned flags);

typedef void (*loc_sup_stopped_fn)(loc_sup_t *sup, void *arg);

/*
 * Stop every process as loc_sup_remove (directories kept) and refuse new ones. `cb`
 * fires once, from the loop (never inside this call), when every child has been reaped.
 * Returns 0, or BD_EBUSY when already called (cb will then never fire).
 */
int loc_sup_stop_all(loc_sup_t *sup, loc_sup_stopped_fn cb, void *arg);

/* Snapshot of `key` into *out (strings borrowed until the next supervisor call or loop
 * iteration). Returns 0 or BD_ENOTFOUND. */
int loc_sup_get(const loc_sup_t *sup, const char *key, loc_proc_info_t *out);

/*
 * Call fn for every process in key order (strcmp; deterministic). fn must not call
 * ensure/remove/stop_all/free. Returns 0, or BD_ENOMEM (fn not called).
 */
int loc_sup_each(const loc_sup_t *sup, void (*fn)(const loc_proc_info_t *info, void *arg),
                 void *arg);

/* Number of processes the supervisor knows (any state but STOPPED). */
size_t loc_sup_count(const loc_sup_t *sup);

/*
 * A port that is free for both TCP and UDP on 127.0.0.1 right now (bind port 0, read it,
 * close), not one this function returned recently in this process. Another process may
 * still take it before named binds it. Loop thread only. Returns 0 or BD_EIO.
 */
int loc_sup_alloc_port(uint16_t *port);

#endif
