/*
 * rndc.h - a native client for BIND's control channel (the protocol rndc speaks).
 *
 * One bind_rndc_t talks to one named control endpoint (address, port, key). It keeps one
 * TCP connection open between commands, and reconnects on the next command after any
 * failure. All I/O is non-blocking and driven by the caller's libev loop; commands queue
 * and run one at a time, in order, each completing through its callback.
 *
 * The exchange (BIND bin/rndc/rndc.c, bin/named/controlconf.c): on a new connection the
 * client first sends a signed "null" request; named answers with a per-connection nonce
 * (_ctrl._nonce), which every later request on that connection must carry. Each command is
 * the text rndc would send ("status", "zonestatus example.com", "retransfer example.com",
 * "notify example.com", "reload"); the reply carries named's result code, text and error
 * text. Messages are signed with HMAC-SHA224/256/384/512 (hmac-md5 is refused).
 *
 * Error contract (libuv style): if a call returns an error, its callback never fires.
 * Callbacks never run from inside bind_rndc_command(); they run from the loop, or from
 * bind_rndc_free() (cancelation).
 *
 * Threads: a bind_rndc_t belongs to the thread that runs its loop.
 */
#ifndef BIND_RNDC_H
#define BIND_RNDC_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct ev_loop;

typedef struct bind_rndc bind_rndc_t;

/* The zero value is the default, hmac-sha256. */
typedef enum {
    BIND_RNDC_HMAC_SHA256 = 0,
    BIND_RNDC_HMAC_SHA224,
    BIND_RNDC_HMAC_SHA384,
    BIND_RNDC_HMAC_SHA512,
} bind_rndc_alg_t;

#define BIND_RNDC_DEFAULT_PORT 953
#define BIND_RNDC_DEFAULT_TIMEOUT 10.0              /* seconds */
#define BIND_RNDC_DEFAULT_MAX_REPLY (1024 * 1024)   /* bytes, one reply message */
#define BIND_RNDC_MAX_COMMAND 16384                 /* bytes; named refuses >32 KiB requests */
#define BIND_RNDC_MAX_SECRET 1024                   /* decoded key bytes */

/* named's own result codes (isc_result_t) seen in replies; see bind_rndc_reply_t.result. */
#define BIND_RNDC_R_SUCCESS 0u
#define BIND_RNDC_R_NOTFOUND 23u     /* e.g. "zonestatus" of a zone named does not serve */
#define BIND_RNDC_R_UNKNOWN UINT32_MAX /* reply had an error but no result code */

/*
 * "hmac-sha224" | "hmac-sha256" | "hmac-sha384" | "hmac-sha512" (case-insensitive) to
 * *out. Returns 0, or BD_EINVAL for anything else (hmac-md5 and hmac-sha1 included).
 */
int bind_rndc_alg_parse(const char *name, bind_rndc_alg_t *out);
/* "hmac-sha256" etc.; "unknown" for a value outside the enum. Static string. */
const char *bind_rndc_alg_name(bind_rndc_alg_t alg);

typedef struct bind_rndc_config {
    const char *host;       /* numeric IPv4 or IPv6 address ("127.0.0.1", "::1"): no name
                               lookup, which would block the loop. Copied. */
    uint16_t port;          /* 0: BIND_RNDC_DEFAULT_PORT */
    const char *key_name;   /* for messages only (the protocol does not carry it); NULL ok */
    bind_rndc_alg_t alg;
    const char *secret_b64; /* the key's secret, base64 as in rndc.key; decoded and copied,
                               wiped on free, never logged */
    double timeout;         /* seconds; <= 0: BIND_RNDC_DEFAULT_TIMEOUT. Bounds connection
                               setup (connect + nonce exchange), and separately each
                               command's wait for its reply. */
    size_t max_reply;       /* largest reply accepted, bytes; 0: BIND_RNDC_DEFAULT_MAX_REPLY */
} bind_rndc_config_t;

/*
 * What a command's callback receives. Everything is borrowed and valid only during the
 * callback; copy what you keep.
 *
 * status: 0 when named answered with a well-formed, correctly signed reply. The command
 *   itself succeeded only if, in addition, result == BIND_RNDC_R_SUCCESS (err is then NULL).
 *   Otherwise status is one of:
 *     BD_EUNAVAIL  connection refused / unreachable
 *     BD_ECANCELED the request was canceled by bind_rndc_free()
 *     BD_EAUTH     named closed the connection on our first request: the key (name,
 *                  algorithm or secret) is wrong, this address is not in the controls
 *                  allow list, or the clocks differ by more than 5 minutes; or the reply's
 *                  signature did not verify
 *     BD_ETIMEOUT  no connection / reply within the timeout (the connection is dropped)
 *     BD_EPROTO    malformed reply (bad framing, version, structure, serial mismatch,
 *                  missing sections) or the connection closed in the middle of a reply
 *     BD_ETOOBIG   the reply announced a length over max_reply
 *     BD_EIO       other socket errors; the connection closed before the reply
 *     BD_ENOMEM    out of memory
 * result: named's isc_result_t (_data.result) when status == 0: BIND_RNDC_R_SUCCESS,
 *   BIND_RNDC_R_NOTFOUND, ...; BIND_RNDC_R_UNKNOWN if the reply had err but no result.
 * text: _data.text (the command's output, e.g. the status report), "" if absent; never NULL.
 * err: _data.err (e.g. "not found") when named reports a failure, else NULL.
 * msg: when status != 0, what went wrong, naming the server ("127.0.0.1#953"); else "".
 */
typedef struct bind_rndc_reply {
    int status;
    uint32_t result;
    const char *text;
    const char *err;
    const char *msg;
} bind_rndc_reply_t;

/* c is the client the command was queued on; arg is the caller's pointer. The callback
 * may queue more commands, and may call bind_rndc_free(c). */
typedef void (*bind_rndc_cb_t)(bind_rndc_t *c, const bind_rndc_reply_t *reply, void *arg);

/*
 * Create a client on loop (borrowed; must outlive the client). No I/O happens until the
 * first command. *out is set only on success (free with bind_rndc_free).
 * Returns 0; BD_EINVAL (NULL arguments, host not a numeric address, unsupported algorithm,
 * secret not valid base64, empty or over BIND_RNDC_MAX_SECRET bytes); BD_ENOMEM.
 * err (may be NULL) gets a message on failure.
 */
int bind_rndc_new(struct ev_loop *loop, const bind_rndc_config_t *cfg, bind_rndc_t **out,
                  bd_err_t *err);

/*
 * Queue cmd (the command line as rndc would send it, copied). cb fires exactly once,
 * later, from the loop. A command that fails because a reused connection was found
 * closed before any reply arrived is sent once more on a new connection, so a command can
 * reach named twice in that case (all commands bindy sends are idempotent).
 * Returns 0; BD_EINVAL (NULL c/cb/cmd, empty cmd); BD_ETOOBIG (cmd over
 * BIND_RNDC_MAX_COMMAND); BD_EBUSY (bind_rndc_free() is in progress); BD_ENOMEM.
 */
int bind_rndc_command(bind_rndc_t *c, const char *cmd, bind_rndc_cb_t cb, void *arg);

/* Commands queued or in flight (their callbacks have not fired yet). */
size_t bind_rndc_pending(const bind_rndc_t *c);

typedef struct bind_rndc_stats {
    uint64_t connects;   /* TCP connections started */
    uint64_t replies;    /* commands answered by named (status 0) */
    uint64_t failures;   /* commands completed with status != 0 (cancelations included) */
    uint64_t retries;    /* commands resent after a reused connection was found closed */
} bind_rndc_stats_t;

void bind_rndc_get_stats(const bind_rndc_t *c, bind_rndc_stats_t *out);

/*
 * Close the connection and free the client. Commands still pending complete first, in
 * order, with status BD_ECANCELED; during those callbacks
 * bind_rndc_command() on c returns BD_EBUSY. Safe to call from a callback of c (the memory
 * is released when that callback returns). NULL is a no-op; a second call is a no-op.
 */
void bind_rndc_free(bind_rndc_t *c);

/* ---- blocking convenience, for tests and tools only (never on the operator's loop) ---- */

typedef struct bind_rndc_result {
    uint32_t result;  /* as bind_rndc_reply_t.result */
    char *text;       /* owned; "" if absent, never NULL on success */
    char *err;        /* owned; NULL unless named reported an error */
} bind_rndc_result_t;

/*
 * Connect, run cmd, disconnect, on a private ev loop; cfg->timeout bounds each phase.
 * Returns the status a callback would get: 0 when named answered (then *out holds the
 * answer: check out->result), else a BD_E* code from the list above with err filled;
 * BD_EINVAL/BD_ENOMEM as bind_rndc_new/bind_rndc_command. *out is reset first and written
 * only on success; release it with bind_rndc_result_deinit.
 */
int bind_rndc_command_sync(const bind_rndc_config_t *cfg, const char *cmd,
                           bind_rndc_result_t *out, bd_err_t *err);

/* Free out's strings and reset it (NULL-safe, idempotent). */
void bind_rndc_result_deinit(bind_rndc_result_t *out);

#endif
