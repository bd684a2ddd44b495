/*
 * server_int.h - internals shared by server.c (listeners, queries, transfers),
 * server_tsig.c (keys, TSIG sign/verify on top of ldns) and server_notify.c (NOTIFY out).
 * Not part of the API: include server.h.
 */
#ifndef BIND_SERVER_INT_H
#define BIND_SERVER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <ev.h>
#include <ldns/ldns.h>
#include <openssl/evp.h>

#include "server.h"

#define SERVER_TSIG_FUDGE 300 /* seconds, as BIND */
#define SERVER_PEER_MAX 64    /* "addr#port" text */

/* ---- TSIG (server_tsig.c) ---- */

typedef struct server_tsig {
    bool set;
    char name[BIND_SERVER_KEY_NAME_MAX + 2]; /* canonical text, with the final dot */
    const char *alg;                         /* ldns algorithm name: "hmac-sha256." */
    ldns_rdf *name_rdf, *alg_rdf;            /* canonical */
    char *b64;                               /* secret, base64 (what ldns takes); wiped */
    uint8_t secret[BIND_SERVER_SECRET_MAX];  /* the same, raw (for signing wire); wiped */
    size_t secret_len;
    const EVP_MD *md;
} server_tsig_t;

typedef enum {
    SERVER_TSIG_NONE = 0, /* the message has no TSIG */
    SERVER_TSIG_OK,
    SERVER_TSIG_BADKEY, /* key name or algorithm is not ours (or we have no key) */
    SERVER_TSIG_BADSIG,
    SERVER_TSIG_BADTIME,
} server_tsig_result_t;

/* TSIG error codes (RFC 8945 section 5.3.2) */
#define SERVER_TSIG_E_BADSIG 16
#define SERVER_TSIG_E_BADKEY 17
#define SERVER_TSIG_E_BADTIME 18

/* key NULL: t is cleared (no key). Returns 0, BD_EINVAL, BD_ENOMEM; t is unchanged on
 * error. */
int server__tsig_set(server_tsig_t *t, const bind_server_key_t *key);
void server__tsig_deinit(server_tsig_t *t);

/* Verify pkt's TSIG against wire (the message as received). prior_mac: NULL for a
 * request; the request's MAC for a response. keyname (cap bytes) gets the key name the
 * message used, for logs ("" when none). */
server_tsig_result_t server__tsig_verify(const server_tsig_t *t, ldns_pkt *pkt,
                                         const uint8_t *wire, size_t len,
                                         const ldns_rdf *prior_mac, char *keyname, size_t cap);

/* Sign pkt (which must have no TSIG yet). prior_mac: the request MAC (first message of an
 * answer), the previous message's MAC (timers_only: later messages of a transfer), or NULL
 * (a request). Returns 0 or BD_EINTERNAL. */
int server__tsig_sign(const server_tsig_t *t, ldns_pkt *pkt, const ldns_rdf *prior_mac,
                      bool timers_only);

/* Sign a message already in wire form (without TSIG; *wire malloc'd, owned by the
 * caller): its TSIG RR is appended (*wire reallocated, *len grown) and ARCOUNT raised.
 * prior_mac and timers_only as for server__tsig_sign, whose MAC this computes the same
 * way (RFC 8945 4.3), without ldns encoding the message a second time. *mac_out gets
 * the new MAC (INT16_DATA rdf, owned by the caller). Returns 0, BD_ENOMEM, BD_EINTERNAL. */
int server__tsig_sign_wire(const server_tsig_t *t, uint8_t **wire, size_t *len, const ldns_rdf *prior_mac,
                           bool timers_only, ldns_rdf **mac_out);

/* The MAC rdf of pkt's TSIG (borrowed), NULL without one. */
const ldns_rdf *server__tsig_mac(const ldns_pkt *pkt);

/* Attach an unsigned TSIG RR carrying error (SERVER_TSIG_E_*) to resp, echoing the key
 * name and algorithm of req's TSIG. Returns 0 or BD_ENOMEM. */
int server__tsig_error(ldns_pkt *resp, const ldns_pkt *req, uint16_t error);

/* ---- shared helpers (server.c) ---- */

/* "addr#port" */
void server__peer_text(const struct sockaddr *sa, char *buf, size_t cap);

/* true when wire is a DNS message ldns can take apart safely: every RR parses, at most one
 * OPT (in additional), a TSIG only as the very last RR, no bytes after the last RR. */
bool server__wire_ok(const uint8_t *wire, size_t len);

/* ---- NOTIFY (server_notify.c) ---- */

typedef struct server_target {
    struct sockaddr_storage sa;
    socklen_t salen;
    char text[SERVER_PEER_MAX];
} server_target_t;

typedef struct server_targets {
    struct server_targets *next;
    char *zone; /* canonical; NULL: the default list */
    size_t n;
    server_target_t t[];
} server_targets_t;

typedef struct server_notify server_notify_t;

/* Parse "addr", "addr:port", "[v6]:port". Returns 0 or BD_EINVAL. */
int server__target_parse(const char *text, server_target_t *out);

/* Queue a NOTIFY of zone to its targets (coalesced: one per target per loop iteration). */
void server__notify_zone(bind_server_t *srv, const char *zone);
/* Drop pending NOTIFYs of zone (all zones when NULL). */
void server__notify_cancel(bind_server_t *srv, const char *zone);
/* Free targets, pending NOTIFYs and the NOTIFY sockets. */
void server__notify_deinit(bind_server_t *srv);

/* ---- the server object ---- */

typedef struct server_conn server_conn_t;

struct bind_server {
    struct ev_loop *loop;
    bind_zonedb_t *db;
    struct sockaddr_storage addr; /* bound address, with the real port */
    socklen_t addrlen;
    uint16_t port;
    int udp_fd, tcp_fd;
    ev_io udp_w, tcp_w;
    uint8_t *udp_buf; /* max_query + 1 bytes */

    server_tsig_t tsig;
    bool serving;
    bool hooked;

    size_t max_clients, max_query, max_message;
    double idle_timeout, notify_interval;
    unsigned notify_retries;

    server_conn_t *conns; /* doubly linked */
    size_t nconns;
    struct server_xfr_wire *xfr_wires; /* transfers being sent, encoded (server.c) */
    double last_reject_log;

    /* NOTIFY */
    int notify_fd[2]; /* [0] IPv4, [1] IPv6; -1 until needed */
    ev_io notify_w[2];
    server_targets_t *targets;
    server_notify_t *pending; /* doubly linked */

    bind_server_stats_t stats;
};

#endif
