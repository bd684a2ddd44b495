/*
 * server.h - the authoritative DNS server of the hidden primary, on libev.
 *
 * bindy serves every zone of a bind_zonedb_t to BIND secondaries, which are configured once
 * with bindy as their only primary and pull from it:
 *   - SOA queries (UDP and TCP), answered from the zonedb;
 *   - AXFR over TCP (RFC 5936): as many messages as needed, each TSIG-signed (RFC 8945
 *     section 5.3.1: the first with the request MAC, the next ones chained on the previous
 *     MAC), written as the socket accepts them (EV_WRITE), never all at once;
 *   - IXFR over TCP (RFC 1995): a condensed diff, or the whole zone when the client is too
 *     far behind; IXFR over UDP gets just the current SOA, so the client comes back on TCP;
 *   - NOTIFY (RFC 1996) to the configured targets of each zone after every change, signed,
 *     retried with exponential backoff until acknowledged or out of attempts.
 * Everything else: REFUSED for zones it does not serve and for other query types,
 * NOTIMP for other opcodes, FORMERR for malformed queries (dropped when not even the
 * header is readable). With serving off (bind_server_set_serving; only the elected
 * leader serves) every query is REFUSED, transfers in progress are cut and no NOTIFY goes
 * out.
 *
 * TSIG: transfers (AXFR and IXFR, over UDP too) need the transfer key. No key: REFUSED;
 * unknown key name or algorithm: NOTAUTH/BADKEY; wrong MAC: NOTAUTH/BADSIG; clock skew
 * beyond the fudge: NOTAUTH/BADTIME. Each refusal logs one line naming the client address
 * and the key name it used; the secret is never logged. SOA queries are answered with or
 * without TSIG (signed when the query was).
 *
 * Caps: TCP clients (over the cap: accepted and closed at once), query size, transfer
 * message size, idle time per connection. Everything is non-blocking; one loop iteration
 * writes at most a few transfer messages per connection.
 *
 * Threads: a bind_server_t belongs to the thread that runs its loop; the zonedb given to it
 * must be used from that thread only and outlive the server.
 * Errors: 0 or a BD_E* code (err.h), with a message in err where one is taken.
 */
#ifndef BIND_SERVER_H
#define BIND_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "zonedb.h"

struct ev_loop;

typedef struct bind_server bind_server_t;

/* ---- TSIG keys ---- */

/* The zero value is the default, hmac-sha256. (hmac-sha384 is missing: ldns 1.8 cannot
 * compute it; hmac-md5 and hmac-sha1 are deliberately not offered.) */
typedef enum {
    BIND_SERVER_HMAC_SHA256 = 0,
    BIND_SERVER_HMAC_SHA512,
} bind_server_alg_t;

#define BIND_SERVER_KEY_NAME_MAX 255 /* bytes of key name text, without the NUL */
#define BIND_SERVER_SECRET_MAX 64    /* bytes of secret */

typedef struct bind_server_key {
    char name[BIND_SERVER_KEY_NAME_MAX + 1]; /* as in named.conf: "xfr" (a DNS name) */
    bind_server_alg_t alg;
    uint8_t secret[BIND_SERVER_SECRET_MAX];
    size_t secret_len;
} bind_server_key_t;

/* "hmac-sha256" | "hmac-sha512" (case-insensitive) to *out; 0 or BD_EINVAL. */
int bind_server_alg_parse(const char *name, bind_server_alg_t *out);
/* "hmac-sha256" etc.; "unknown" outside the enum. Static string. */
const char *bind_server_alg_name(bind_server_alg_t alg);

/* Fill key with name, alg and a random secret as long as the hash (32 or 64 bytes, from
 * OpenSSL RAND_bytes). Returns 0, BD_EINVAL (bad name or alg), BD_INTERNAL (no entropy). */
int bind_server_key_generate(bind_server_key_t *key, const char *name, bind_server_alg_t alg);

/* Fill key from a base64 secret (named.conf's "secret"). Returns 0 or BD_EINVAL (bad name,
 * alg, base64, or a secret empty or over BIND_SERVER_SECRET_MAX bytes). */
int bind_server_key_from_b64(bind_server_key_t *key, const char *name, bind_server_alg_t alg,
                             const char *secret_b64);

/* The secret in base64 into buf (for named.conf's "secret"). Needs 4 * ceil(len / 3) + 1
 * bytes (45 for a 32-byte secret, 89 for 64; 128 always fits). Returns 0, BD_ETOOBIG,
 * BD_EINVAL (no secret). */
int bind_server_key_b64(const bind_server_key_t *key, char *buf, size_t cap);

/* Overwrite the secret (OPENSSL_cleanse). NULL is a no-op. */
void bind_server_key_wipe(bind_server_key_t *key);

/* ---- the server ---- */

#define BIND_SERVER_DEFAULT_MAX_CLIENTS 64
#define BIND_SERVER_DEFAULT_MAX_QUERY 4096      /* bytes; a TSIG-signed IXFR query is ~200 */
#define BIND_SERVER_DEFAULT_MAX_MESSAGE 16384   /* bytes per transfer message (<= 65535) */
#define BIND_SERVER_DEFAULT_IDLE_TIMEOUT 10.0   /* seconds without progress on a TCP client */
#define BIND_SERVER_DEFAULT_NOTIFY_INTERVAL 1.0 /* seconds to the first NOTIFY retry */
#define BIND_SERVER_DEFAULT_NOTIFY_RETRIES 5    /* NOTIFY sends after the first one */
#define BIND_SERVER_MAX_NOTIFY_TARGETS 64       /* per zone */

typedef struct bind_server_config {
    const char *address;             /* numeric IPv4 or IPv6 to listen on; NULL: 127.0.0.1 */
    uint16_t port;                   /* UDP and TCP; 0: a free port (see bind_server_port) */
    const bind_server_key_t *xfr_key; /* copied; NULL: every transfer is refused */
    bool serving;                    /* initial state; false (the zero value) REFUSES all */
    size_t max_clients;              /* concurrent TCP clients; 0: default */
    size_t max_query;                /* bytes of one query (UDP or TCP); 0: default */
    size_t max_message;              /* bytes of one transfer message; 0: default */
    double idle_timeout;             /* seconds; <= 0: default */
    double notify_interval;          /* seconds; <= 0: default; doubles after each try */
    unsigned notify_retries;         /* 0: default */
} bind_server_config_t;

/* Counters since the server was created; for metrics. */
typedef struct bind_server_stats {
    uint64_t queries_udp, queries_tcp; /* messages received (well-formed or not) */
    uint64_t soa_answers;
    uint64_t axfr;           /* AXFRs started (AXFR queries) */
    uint64_t ixfr;           /* IXFR queries answered with a diff */
    uint64_t ixfr_axfr;      /* IXFR queries answered with the whole zone (too far behind) */
    uint64_t ixfr_uptodate;  /* IXFR queries answered with the SOA only (UDP included) */
    uint64_t xfr_done;       /* transfers written out completely */
    uint64_t xfr_aborted;    /* transfers cut (client gone, timeout, serving off) */
    uint64_t xfr_messages;   /* transfer messages sent */
    uint64_t xfr_shared;     /* of which encoded once for another connection sending the same transfer */
    uint64_t refused;        /* REFUSED answers */
    uint64_t notauth;        /* NOTAUTH answers (TSIG failures) */
    uint64_t formerr, notimp;
    uint64_t dropped;        /* unparsable or oversized input dropped without an answer */
    uint64_t tcp_accepted, tcp_rejected; /* rejected: over max_clients */
    uint64_t tcp_timeouts;
    uint64_t notify_sent;    /* NOTIFY messages sent, retries included */
    uint64_t notify_acked;   /* NOTIFYs answered NOERROR with a valid TSIG */
    uint64_t notify_failed;  /* NOTIFYs given up: out of retries, or an error answer */
} bind_server_stats_t;

/*
 * Bind the UDP and TCP sockets and start serving on loop. db is borrowed: it must outlive
 * the server; the server registers a zonedb hook (removed by bind_server_free) to send
 * NOTIFY after each change. *out set only on success.
 * Returns 0; BD_EINVAL (bad address or config); BD_EIO (socket, bind or listen failed:
 * err has the errno text); BD_ENOMEM; BD_EFULL (no zonedb hook slot left).
 */
int bind_server_new(bind_server_t **out, struct ev_loop *loop, bind_zonedb_t *db,
                    const bind_server_config_t *cfg, bd_err_t *err);

/* Close every socket, cut transfers, cancel NOTIFYs. Call from the loop thread, outside
 * the server's callbacks. NULL is a no-op. */
void bind_server_free(bind_server_t *srv);

/* The port actually bound (useful with port 0). */
uint16_t bind_server_port(const bind_server_t *srv);

/* Serve or refuse. Turning serving off cuts transfers in progress and cancels pending
 * NOTIFYs; turning it on sends a NOTIFY for every zone that has targets. */
void bind_server_set_serving(bind_server_t *srv, bool serving);
bool bind_server_serving(const bind_server_t *srv);

/* Replace the transfer key (NULL: refuse every transfer). Copied. */
void bind_server_set_key(bind_server_t *srv, const bind_server_key_t *key);

/*
 * NOTIFY targets of zone (canonicalised), or the default for zones with no list of their
 * own when zone is NULL. Each target is "addr", "addr:port", "[v6addr]:port" (numeric;
 * port 53 by default). n == 0 removes the list. Returns 0; BD_EINVAL (bad zone or target,
 * err names it); BD_ETOOBIG (more than BIND_SERVER_MAX_NOTIFY_TARGETS); BD_ENOMEM.
 */
int bind_server_set_notify_targets(bind_server_t *srv, const char *zone,
                                   const char *const *targets, size_t n, bd_err_t *err);

/* Send NOTIFY for zone to its targets now (they are sent automatically after changes).
 * Returns 0, BD_ENOTFOUND (zone not in the zonedb), BD_EINVAL, BD_EUNAVAIL (not serving). */
int bind_server_notify(bind_server_t *srv, const char *zone);

/* Send NOTIFY for zone to one server, target as in bind_server_set_notify_targets, whether
 * or not it is among the zone's targets (a server found lagging), with the same retries.
 * Returns 0, BD_EINVAL (bad zone or target), BD_ENOTFOUND (zone not in the zonedb),
 * BD_EUNAVAIL (not serving), BD_ENOMEM. */
int bind_server_notify_to(bind_server_t *srv, const char *zone, const char *target);

/* Copy of the counters. */
void bind_server_stats(const bind_server_t *srv, bind_server_stats_t *out);

#endif
