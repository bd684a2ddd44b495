/*
 * named_harness.h - start a real BIND named for tests, on loopback, on free ports.
 *
 * Typical use:
 *
 *     bd_named_t *n;
 *     bd_err_t err;
 *     if (bd_named_new(&n, &err) != 0) fail(err.msg);
 *     bd_named_write_file(n, "example.com.db", zone_text, &err);
 *     bd_named_start(n, conf_text, 20.0, &err);      // conf may use @DIR@ @PORT@ @CTLPORT@
 *     ... talk to 127.0.0.1:bd_named_port(n) / bd_named_ctl_port(n) ...
 *     bd_named_free(n);                                // SIGTERM, then SIGKILL; rm -rf dir
 *
 * Every instance lives in its own temporary directory (/tmp/bindy-named-XXXXXX, or under
 * $TMPDIR). named runs in the foreground (-g, logging to DIR/named.log), with no -u (as
 * whoever runs the test; root is fine). Orphans are prevented three ways: the child asks
 * the kernel to SIGKILL it when the forking thread dies (PR_SET_PDEATHSIG), an atexit
 * handler kills any instance still running, and bd_named_free always stops it.
 *
 * The named binary is $BINDY_NAMED if set, else /usr/sbin/named, else "named" on PATH.
 * All functions return 0 or a BD_E* code, with a message in err (may be NULL) that says
 * what to do (e.g. the last lines of named.log when it died during start).
 * Not thread-safe: use from the test's main thread.
 */
#ifndef BD_NAMED_HARNESS_H
#define BD_NAMED_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <ldns/ldns.h>

#include "err.h"

typedef struct bd_named bd_named_t;

/*
 * A free TCP port on 127.0.0.1 that is also free for UDP (bind port 0, read it, close).
 * Another process can still take it before use; good enough for tests.
 * Returns 0 or BD_EIO.
 */
int bd_named_free_port(uint16_t *port, bd_err_t *err);

/*
 * Create an instance: a temporary directory and two free ports (DNS and control). No
 * process yet. *out set only on success. Returns 0, BD_EIO, BD_ENOMEM.
 */
int bd_named_new(bd_named_t **out, bd_err_t *err);

/* Borrowed / plain accessors. */
const char *bd_named_dir(const bd_named_t *n);
uint16_t bd_named_port(const bd_named_t *n);     /* DNS (UDP+TCP) port */
uint16_t bd_named_ctl_port(const bd_named_t *n); /* control channel port */
pid_t bd_named_pid(const bd_named_t *n);         /* 0 when not running */

/* Write text to DIR/name (a plain file name, no '/'). Returns 0, BD_EINVAL, BD_EIO. */
int bd_named_write_file(bd_named_t *n, const char *name, const char *text, bd_err_t *err);

/*
 * Write conf (after replacing @DIR@, @PORT@, @CTLPORT@) to DIR/named.conf, start named and
 * wait up to timeout seconds until it logs "running" and, if the configuration mentions
 * @CTLPORT@, the control port accepts TCP connections.
 * Returns 0; BD_EBUSY (already running); BD_ENOTFOUND (no named binary); BD_EIO (fork or
 * named exited: err has the tail of named.log); BD_ETIMEOUT (not ready in time: named is
 * killed); BD_ENOMEM.
 */
int bd_named_start(bd_named_t *n, const char *conf, double timeout, bd_err_t *err);

/* Stop, then start again with the same configuration and ports. As bd_named_start. */
int bd_named_restart(bd_named_t *n, double timeout, bd_err_t *err);

/*
 * Stop named: SIGTERM, wait up to 10 s, then SIGKILL, and reap it. No-op when not
 * running. Returns 0, or BD_ETIMEOUT when SIGKILL was needed (it is dead either way).
 */
int bd_named_stop(bd_named_t *n);

/* Up to cap-1 bytes of the end of DIR/named.log into buf (NUL-terminated). */
void bd_named_log_tail(const bd_named_t *n, char *buf, size_t cap);

/* Stop named if running, remove the directory (unless $BINDY_KEEP_NAMED_DIR is set), free.
 * NULL is a no-op. */
void bd_named_free(bd_named_t *n);

/* The RRs of type in the answer of addr#port to name/type (owned by the caller), or NULL
 * when there is no NOERROR answer. One short blocking query (0.5 s, one retry): an event
 * loop of the caller does not run meanwhile. */
ldns_rr_list *bd_named_ask(const char *addr, uint16_t port, const char *name, ldns_rr_type type);

#endif
