/*
 * server.c - listeners, query handling and zone transfers of the hidden primary.
 * See server.h for the contract; TSIG is in server_tsig.c, NOTIFY in server_notify.c.
 *
 * Every query, UDP or TCP, goes through server_handle(), which either produces one answer
 * message or (TCP only) starts a transfer on the connection. A connection alternates
 * between two states: reading (one query at a time) and writing (an answer, or a transfer
 * produced one message at a time whenever the output buffer has drained, so a transfer
 * never holds more than one message in memory and a slow client only slows itself).
 */
#include "server_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define TCP_BACKLOG 64
#define UDP_BURST 32          /* datagrams read per callback */
#define ACCEPT_BURST 16       /* connections accepted per callback */
#define WRITE_BURST 4         /* transfer messages written per callback */
#define UDP_MAX_ANSWER 1232   /* with EDNS (DNS flag day 2020) */
#define UDP_PLAIN_ANSWER 512  /* without EDNS */
#define TSIG_OVERHEAD 1024    /* header, question (<= 259), TSIG RR (<= ~610) */

/* ---- connections ---- */

struct server_conn {
    server_conn_t *next, *prev;
    bind_server_t *srv;
    int fd;
    char peer[SERVER_PEER_MAX];
    ev_io rw, ww;
    ev_timer idle;

    uint8_t *in; /* 2 + max_query */
    size_t inlen;

    uint8_t *out; /* one message with its length prefix */
    size_t outlen, outpos;
    bool writing; /* an answer or a transfer is being written: not reading */

    /* transfer in progress */
    bind_zonedb_xfr_t *xfr;
    size_t xfr_pos;
    size_t xfr_msgs;
    uint16_t xfr_id;
    ldns_rr *xfr_question;
    ldns_rdf *xfr_mac; /* request MAC, then the MAC of the last message sent */
    char xfr_what[320];
    struct server_xfr_wire *xfr_wire; /* its messages, shared with the same transfer to others */
};

/* The messages of one transfer as encoded (before TSIG, which differs per client), shared
 * by the connections sending the same transfer at the same time: the replicas of an
 * instance ask for the same IXFR on one NOTIFY, and the second encodes nothing. A
 * transfer is the same when its question, kind, first and last serial and RR count are:
 * a zone's content has one serial. It lives while a connection sends it. */
typedef struct server_xfr_wire {
    struct server_xfr_wire *next;
    unsigned refs;
    char *key;
    size_t n, cap;
    struct xfr_msg {
        uint8_t *wire;
        size_t len, nrr;
    } *m;
} xfr_wire_t;

static xfr_wire_t *xfr_wire_get(bind_server_t *srv, const char *key)
{
    for (xfr_wire_t *w = srv->xfr_wires; w; w = w->next)
        if (strcmp(w->key, key) == 0) {
            w->refs++;
            return w;
        }
    xfr_wire_t *w = calloc(1, sizeof(*w));
    if (w == NULL || (w->key = strdup(key)) == NULL) {
        free(w);
        return NULL; /* encoded without sharing */
    }
    w->refs = 1;
    w->next = srv->xfr_wires;
    srv->xfr_wires = w;
    return w;
}

static void xfr_wire_put(bind_server_t *srv, xfr_wire_t *w)
{
    if (w == NULL || --w->refs > 0)
        return;
    for (xfr_wire_t **pp = &srv->xfr_wires; *pp; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    for (size_t i = 0; i < w->n; i++)
        free(w->m[i].wire);
    free(w->m);
    free(w->key);
    free(w);
}

/* Keep a copy of message i (the next one) of w; without memory it is simply not shared. */
static void xfr_wire_add(xfr_wire_t *w, size_t i, const uint8_t *wire, size_t len, size_t nrr)
{
    if (w == NULL || i != w->n)
        return;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        struct xfr_msg *m = realloc(w->m, cap * sizeof(*m));
        if (m == NULL)
            return;
        w->m = m;
        w->cap = cap;
    }
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        return;
    memcpy(copy, wire, len);
    w->m[w->n++] = (struct xfr_msg){copy, len, nrr};
}

/* What server_handle decided. */
typedef struct answer {
    uint8_t *wire; /* one message to send (malloc'd), or NULL */
    size_t len;
    bind_zonedb_xfr_t *xfr; /* TCP: a transfer to stream instead */
    ldns_rr *question;
    uint16_t id;
    ldns_rdf *mac; /* request MAC, for signing the first transfer message */
    char what[320];
} answer_t;

static void answer_clear(answer_t *a)
{
    free(a->wire);
    bind_zonedb_xfr_free(a->xfr);
    ldns_rr_free(a->question);
    ldns_rdf_deep_free(a->mac);
    memset(a, 0, sizeof(*a));
}

/* ---- small helpers ---- */

void server__peer_text(const struct sockaddr *sa, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    unsigned port = 0;
    host[0] = '\0';
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const void *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        port = ntohs(v4->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const void *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
        port = ntohs(v6->sin6_port);
    } else {
        snprintf(host, sizeof(host), "?");
    }
    snprintf(buf, cap, "%s#%u", host, port);
}

bool server__wire_ok(const uint8_t *wire, size_t len)
{
    if (len < LDNS_HEADER_SIZE)
        return false;
    const uint16_t counts[4] = {LDNS_QDCOUNT(wire), LDNS_ANCOUNT(wire), LDNS_NSCOUNT(wire),
                                LDNS_ARCOUNT(wire)};
    size_t pos = LDNS_HEADER_SIZE;
    int opts = 0;
    for (int sec = 0; sec < 4; sec++) {
        for (unsigned i = 0; i < counts[sec]; i++) {
            ldns_rr *rr = NULL;
            if (ldns_wire2rr(&rr, wire, len, &pos, (ldns_pkt_section)sec) != LDNS_STATUS_OK)
                return false;
            ldns_rr_type type = ldns_rr_get_type(rr);
            ldns_rr_free(rr);
            if (type == LDNS_RR_TYPE_TSIG && !(sec == 3 && i + 1 == counts[3]))
                return false;
            if (type == LDNS_RR_TYPE_OPT && (sec != 3 || ++opts > 1))
                return false;
        }
    }
    return pos == len;
}

static const char *type_text(uint16_t type, char *buf, size_t cap)
{
    if (type == LDNS_RR_TYPE_AXFR || type == LDNS_RR_TYPE_IXFR) {
        snprintf(buf, cap, "%s", type == LDNS_RR_TYPE_AXFR ? "AXFR" : "IXFR");
        return buf;
    }
    const ldns_rr_descriptor *d = ldns_rr_descript(type);
    if (d != NULL && d->_name != NULL)
        snprintf(buf, cap, "%s", d->_name);
    else
        snprintf(buf, cap, "TYPE%u", (unsigned)type);
    return buf;
}

static const char *tsig_text(server_tsig_result_t r)
{
    switch (r) {
    case SERVER_TSIG_BADKEY:
        return "unknown key or algorithm (BADKEY)";
    case SERVER_TSIG_BADSIG:
        return "bad signature (BADSIG): the secret differs";
    case SERVER_TSIG_BADTIME:
        return "clock skew beyond the fudge (BADTIME)";
    default:
        return "no TSIG";
    }
}

/* ---- building answers ---- */

/* A response to q with its question copied and rcode set. NULL on allocation failure. */
static ldns_pkt *resp_new(const ldns_pkt *q, ldns_pkt_rcode rcode)
{
    ldns_pkt *r = ldns_pkt_new();
    if (r == NULL)
        return NULL;
    ldns_pkt_set_id(r, ldns_pkt_id(q));
    ldns_pkt_set_qr(r, true);
    ldns_pkt_set_opcode(r, ldns_pkt_get_opcode(q));
    ldns_pkt_set_rd(r, ldns_pkt_rd(q));
    ldns_pkt_set_cd(r, ldns_pkt_cd(q));
    ldns_pkt_set_rcode(r, (uint8_t)rcode);
    const ldns_rr_list *qs = ldns_pkt_question(q);
    for (size_t i = 0; i < ldns_rr_list_rr_count(qs); i++) {
        ldns_rr *c = ldns_rr_clone(ldns_rr_list_rr(qs, i));
        if (c == NULL || !ldns_pkt_push_rr(r, LDNS_SECTION_QUESTION, c)) {
            ldns_rr_free(c);
            ldns_pkt_free(r);
            return NULL;
        }
    }
    if (ldns_pkt_edns(q))
        ldns_pkt_set_edns_udp_size(r, UDP_MAX_ANSWER);
    return r;
}

/* Header-only FORMERR for a message ldns cannot take apart (id and opcode echoed). */
static void formerr_raw(bind_server_t *srv, const uint8_t *wire, answer_t *a)
{
    ldns_pkt *r = ldns_pkt_new();
    if (r == NULL)
        return;
    ldns_pkt_set_id(r, LDNS_ID_WIRE(wire));
    ldns_pkt_set_qr(r, true);
    ldns_pkt_set_opcode(r, LDNS_OPCODE_WIRE(wire));
    ldns_pkt_set_rcode(r, LDNS_RCODE_FORMERR);
    if (ldns_pkt2wire(&a->wire, r, &a->len) != LDNS_STATUS_OK) {
        a->wire = NULL;
        a->len = 0;
    }
    srv->stats.formerr++;
    ldns_pkt_free(r);
}

/*
 * Sign (when mac: the query's verified MAC), encode, and fit to the transport: over UDP an
 * answer longer than the client takes is sent empty with TC set. Takes r.
 */
static void finish(bind_server_t *srv, ldns_pkt *r, const ldns_pkt *q, const ldns_rdf *mac,
                   bool tcp, answer_t *a)
{
    size_t limit = 65535;
    if (!tcp) {
        limit = UDP_PLAIN_ANSWER;
        if (ldns_pkt_edns(q) && ldns_pkt_edns_udp_size(q) > UDP_PLAIN_ANSWER)
            limit = ldns_pkt_edns_udp_size(q) < UDP_MAX_ANSWER ? ldns_pkt_edns_udp_size(q)
                                                               : UDP_MAX_ANSWER;
    }
    for (int round = 0; round < 2; round++) {
        if (mac != NULL && server__tsig_sign(&srv->tsig, r, mac, false) != 0)
            break;
        if (ldns_pkt2wire(&a->wire, r, &a->len) != LDNS_STATUS_OK) {
            a->wire = NULL;
            break;
        }
        if (a->len <= limit || round == 1)
            break;
        /* too long for UDP: empty it, set TC, sign again */
        free(a->wire);
        a->wire = NULL;
        ldns_rr_free(ldns_pkt_tsig(r));
        ldns_pkt_set_tsig(r, NULL);
        ldns_rr_list_deep_free(ldns_pkt_answer(r));
        ldns_pkt_set_answer(r, ldns_rr_list_new());
        ldns_pkt_set_ancount(r, 0);
        ldns_pkt_set_tc(r, true);
    }
    if (a->wire == NULL)
        a->len = 0;
    ldns_pkt_free(r);
}

/* An answer with rcode and nothing else (signed when mac). */
static void reply_rcode(bind_server_t *srv, const ldns_pkt *q, const ldns_rdf *mac,
                        ldns_pkt_rcode rcode, bool tcp, answer_t *a)
{
    ldns_pkt *r = resp_new(q, rcode);
    if (r == NULL)
        return;
    if (rcode == LDNS_RCODE_REFUSED)
        srv->stats.refused++;
    else if (rcode == LDNS_RCODE_FORMERR)
        srv->stats.formerr++;
    else if (rcode == LDNS_RCODE_NOTIMPL)
        srv->stats.notimp++;
    finish(srv, r, q, mac, tcp, a);
}

/* The SOA of the zone as the only answer. */
static void reply_soa(bind_server_t *srv, const ldns_pkt *q, const ldns_rdf *mac,
                      const ldns_rr *soa, bool tcp, answer_t *a)
{
    ldns_pkt *r = resp_new(q, LDNS_RCODE_NOERROR);
    ldns_rr *c = r ? ldns_rr_clone(soa) : NULL;
    if (c == NULL || !ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, c)) {
        ldns_rr_free(c);
        ldns_pkt_free(r);
        return;
    }
    ldns_pkt_set_aa(r, true);
    finish(srv, r, q, mac, tcp, a);
}

/* The client serial of an IXFR query: the SOA in its authority section. */
static bool ixfr_serial(const ldns_pkt *q, uint32_t *serial)
{
    const ldns_rr_list *auth = ldns_pkt_authority(q);
    for (size_t i = 0; i < ldns_rr_list_rr_count(auth); i++) {
        const ldns_rr *rr = ldns_rr_list_rr(auth, i);
        if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_SOA && ldns_rr_rd_count(rr) >= 3) {
            *serial = ldns_rdf2native_int32(ldns_rr_rdf(rr, 2));
            return true;
        }
    }
    return false;
}

/* ---- the query path ---- */

static void server_handle(bind_server_t *srv, bool tcp, const char *peer, const uint8_t *wire,
                          size_t len, answer_t *a)
{
    ldns_pkt *q = NULL;
    ldns_rdf *mac = NULL; /* the query's MAC when its TSIG verified */
    char zone[300] = "", tbuf[32], keyname[300];

    memset(a, 0, sizeof(*a));
    if (len < LDNS_HEADER_SIZE || LDNS_QR_WIRE(wire)) {
        srv->stats.dropped++; /* not a query: never answer an answer */
        return;
    }
    if (!server__wire_ok(wire, len) || ldns_wire2pkt(&q, wire, len) != LDNS_STATUS_OK) {
        bd_debug("malformed query from %s: FORMERR", peer);
        q = NULL;
        formerr_raw(srv, wire, a);
        return;
    }
    if (ldns_pkt_get_opcode(q) != LDNS_PACKET_QUERY) {
        reply_rcode(srv, q, NULL, LDNS_RCODE_NOTIMPL, tcp, a);
        goto cleanup;
    }
    if (ldns_pkt_qdcount(q) != 1 || ldns_rr_list_rr_count(ldns_pkt_question(q)) != 1) {
        reply_rcode(srv, q, NULL, LDNS_RCODE_FORMERR, tcp, a);
        goto cleanup;
    }
    const ldns_rr *question = ldns_rr_list_rr(ldns_pkt_question(q), 0);
    uint16_t qtype = ldns_rr_get_type(question);
    const ldns_rdf *qname = ldns_rr_owner(question);
    char *qs = ldns_rdf2str(qname);
    snprintf(zone, sizeof(zone), "%s", qs ? qs : "?");
    free(qs);
    bool xfr = qtype == LDNS_RR_TYPE_AXFR || qtype == LDNS_RR_TYPE_IXFR;
    snprintf(a->what, sizeof(a->what), "%s %s of %s", tcp ? "TCP" : "UDP",
             type_text(qtype, tbuf, sizeof(tbuf)), zone);

    server_tsig_result_t tr =
        server__tsig_verify(&srv->tsig, q, wire, len, NULL, keyname, sizeof(keyname));
    if (tr != SERVER_TSIG_NONE && tr != SERVER_TSIG_OK) {
        bd_warn("TSIG: %s from %s with key '%s' refused: %s; answered NOTAUTH", a->what, peer,
                keyname, tsig_text(tr));
        ldns_pkt *r = resp_new(q, LDNS_RCODE_NOTAUTH);
        uint16_t e = tr == SERVER_TSIG_BADKEY   ? SERVER_TSIG_E_BADKEY
                     : tr == SERVER_TSIG_BADSIG ? SERVER_TSIG_E_BADSIG
                                                : SERVER_TSIG_E_BADTIME;
        if (r != NULL && server__tsig_error(r, q, e) == 0) {
            srv->stats.notauth++;
            finish(srv, r, q, NULL, tcp, a);
        } else {
            ldns_pkt_free(r);
        }
        goto cleanup;
    }
    if (tr == SERVER_TSIG_OK) {
        mac = ldns_rdf_clone(server__tsig_mac(q));
        if (mac == NULL)
            goto cleanup;
    }
    if (!srv->serving) {
        bd_debug("%s from %s refused: not serving (not the leader)", a->what, peer);
        reply_rcode(srv, q, mac, LDNS_RCODE_REFUSED, tcp, a);
        goto cleanup;
    }
    if (ldns_rr_get_class(question) != LDNS_RR_CLASS_IN) {
        reply_rcode(srv, q, mac, LDNS_RCODE_REFUSED, tcp, a);
        goto cleanup;
    }
    const ldns_rr *soa = bind_zonedb_soa_dname(srv->db, qname);
    if (soa == NULL) {
        bd_debug("%s from %s refused: zone not served here", a->what, peer);
        reply_rcode(srv, q, mac, LDNS_RCODE_REFUSED, tcp, a);
        goto cleanup;
    }
    if (qtype == LDNS_RR_TYPE_SOA) {
        srv->stats.soa_answers++;
        reply_soa(srv, q, mac, soa, tcp, a);
        goto cleanup;
    }
    if (!xfr) {
        /* a hidden primary answers its secondaries, nobody else */
        reply_rcode(srv, q, mac, LDNS_RCODE_REFUSED, tcp, a);
        goto cleanup;
    }
    if (tr != SERVER_TSIG_OK) {
        if (srv->tsig.set)
            bd_warn("%s from %s refused: not signed with the transfer key '%s'", a->what, peer,
                    srv->tsig.name);
        else
            bd_warn("%s from %s refused: no transfer key is configured", a->what, peer);
        reply_rcode(srv, q, NULL, LDNS_RCODE_REFUSED, tcp, a);
        goto cleanup;
    }
    uint32_t client_serial = 0;
    if (qtype == LDNS_RR_TYPE_IXFR && !ixfr_serial(q, &client_serial)) {
        reply_rcode(srv, q, mac, LDNS_RCODE_FORMERR, tcp, a);
        goto cleanup;
    }
    if (!tcp) {
        if (qtype == LDNS_RR_TYPE_AXFR) {
            reply_rcode(srv, q, mac, LDNS_RCODE_FORMERR, tcp, a); /* RFC 5936: TCP only */
        } else {
            srv->stats.ixfr_uptodate++; /* RFC 1995: the SOA alone sends it to TCP */
            reply_soa(srv, q, mac, soa, tcp, a);
        }
        goto cleanup;
    }
    int rc = qtype == LDNS_RR_TYPE_AXFR ? bind_zonedb_axfr(srv->db, qname, &a->xfr)
                                        : bind_zonedb_ixfr(srv->db, qname, client_serial, &a->xfr);
    if (rc != 0 || (a->question = ldns_rr_clone(question)) == NULL) {
        bind_zonedb_xfr_free(a->xfr);
        a->xfr = NULL;
        reply_rcode(srv, q, mac, LDNS_RCODE_SERVFAIL, tcp, a);
        goto cleanup;
    }
    a->id = ldns_pkt_id(q);
    a->mac = mac;
    mac = NULL;
    switch (bind_zonedb_xfr_kind(a->xfr)) {
    case BIND_ZONEDB_XFR_AXFR:
        if (qtype == LDNS_RR_TYPE_AXFR)
            srv->stats.axfr++;
        else
            srv->stats.ixfr_axfr++;
        break;
    case BIND_ZONEDB_XFR_IXFR:
        srv->stats.ixfr++;
        break;
    case BIND_ZONEDB_XFR_UPTODATE:
        srv->stats.ixfr_uptodate++;
        break;
    }
    if (qtype == LDNS_RR_TYPE_IXFR)
        snprintf(a->what, sizeof(a->what), "IXFR of %s from serial %u (%s)", zone,
                 client_serial,
                 bind_zonedb_xfr_kind(a->xfr) == BIND_ZONEDB_XFR_IXFR   ? "incremental"
                 : bind_zonedb_xfr_kind(a->xfr) == BIND_ZONEDB_XFR_AXFR ? "whole zone"
                                                                        : "up to date");
    else
        snprintf(a->what, sizeof(a->what), "AXFR of %s", zone);
    bd_info("%s to %s: serial %u, %zu RRs", a->what, peer, bind_zonedb_xfr_serial(a->xfr),
            bind_zonedb_xfr_count(a->xfr));
cleanup:
    ldns_rdf_deep_free(mac);
    ldns_pkt_free(q);
}

/* ---- UDP ---- */

static void udp_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bind_server_t *srv = w->data;
    for (int i = 0; i < UDP_BURST; i++) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof(from);
        ssize_t r = recvfrom(srv->udp_fd, srv->udp_buf, srv->max_query + 1, MSG_TRUNC,
                             (struct sockaddr *)&from, &flen);
        if (r < 0)
            return;
        srv->stats.queries_udp++;
        if ((size_t)r > srv->max_query) {
            srv->stats.dropped++;
            continue;
        }
        char peer[SERVER_PEER_MAX];
        answer_t a;
        server__peer_text((struct sockaddr *)&from, peer, sizeof(peer));
        server_handle(srv, false, peer, srv->udp_buf, (size_t)r, &a);
        if (a.wire != NULL &&
            sendto(srv->udp_fd, a.wire, a.len, 0, (struct sockaddr *)&from, flen) < 0)
            bd_debug("UDP answer to %s not sent: %s", peer, strerror(errno));
        answer_clear(&a);
    }
}

/* ---- TCP ---- */

static void conn_close(server_conn_t *c, const char *why)
{
    bind_server_t *srv = c->srv;
    if (c->xfr != NULL) {
        srv->stats.xfr_aborted++;
        bd_warn("%s to %s cut after %zu messages: %s", c->xfr_what, c->peer, c->xfr_msgs, why);
    } else {
        bd_debug("TCP client %s closed: %s", c->peer, why);
    }
    ev_io_stop(srv->loop, &c->rw);
    ev_io_stop(srv->loop, &c->ww);
    ev_timer_stop(srv->loop, &c->idle);
    close(c->fd);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    srv->nconns--;
    bind_zonedb_xfr_free(c->xfr);
    xfr_wire_put(srv, c->xfr_wire);
    ldns_rr_free(c->xfr_question);
    ldns_rdf_deep_free(c->xfr_mac);
    free(c->in);
    free(c->out);
    free(c);
}

/* Put one message (with its 2-byte length) in the empty output buffer; takes wire. */
static int conn_put(server_conn_t *c, uint8_t *wire, size_t len)
{
    if (len > 65535) {
        free(wire);
        return BD_ETOOBIG;
    }
    uint8_t *out = malloc(len + 2);
    if (out == NULL) {
        free(wire);
        return BD_ENOMEM;
    }
    out[0] = (uint8_t)(len >> 8);
    out[1] = (uint8_t)(len & 0xff);
    memcpy(out + 2, wire, len);
    free(wire);
    free(c->out);
    c->out = out;
    c->outlen = len + 2;
    c->outpos = 0;
    return BD_OK;
}

/* Encode the next message of the transfer (without TSIG) into *wire (malloc'd); advances
 * xfr_pos past its RRs, *nrr of them. */
static int xfr_encode(server_conn_t *c, uint8_t **wire, size_t *len, size_t *nrr)
{
    bind_server_t *srv = c->srv;
    ldns_pkt *p = ldns_pkt_new();
    ldns_buffer *b = NULL;
    size_t used = 0, count = 0;
    int rc = BD_ENOMEM;

    *wire = NULL;
    if (p == NULL)
        return BD_ENOMEM;
    ldns_pkt_set_id(p, c->xfr_id);
    ldns_pkt_set_qr(p, true);
    ldns_pkt_set_aa(p, true);
    ldns_pkt_set_opcode(p, LDNS_PACKET_QUERY);
    ldns_pkt_set_rcode(p, LDNS_RCODE_NOERROR);
    if (c->xfr_msgs == 0) { /* RFC 5936 2.2: later messages may omit the question */
        ldns_rr *qc = ldns_rr_clone(c->xfr_question);
        if (qc == NULL || !ldns_pkt_push_rr(p, LDNS_SECTION_QUESTION, qc)) {
            ldns_rr_free(qc);
            goto cleanup;
        }
    }
    size_t budget = srv->max_message > TSIG_OVERHEAD ? srv->max_message - TSIG_OVERHEAD : 512;
    size_t n = bind_zonedb_xfr_count(c->xfr);
    while (c->xfr_pos < n) {
        /* borrowed RRs: detached again before the packet is freed */
        ldns_rr *rr = (ldns_rr *)bind_zonedb_xfr_rr(c->xfr, c->xfr_pos);
        size_t sz = ldns_rr_uncompressed_size(rr);
        if (count > 0 && used + sz > budget)
            break;
        if (!ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, rr))
            goto cleanup;
        used += sz;
        count++;
        c->xfr_pos++;
    }
    if (used + TSIG_OVERHEAD > 65535) {
        rc = BD_ETOOBIG; /* one RR that cannot fit any message */
        goto cleanup;
    }
    /* Without name compression (RFC 1035 4.1.4 makes it optional): ldns compresses through
     * a red-black tree of every name, compared label by label, which was 8 % of bindy's
     * CPU in a 10,000-record drop, on the path to the servers; the messages are about a
     * third larger, which loopback and cluster networks carry in microseconds. */
    rc = BD_ENOMEM;
    if ((b = ldns_buffer_new(used + LDNS_HEADER_SIZE + 512)) == NULL)
        goto cleanup;
    rc = BD_EINTERNAL;
    if (ldns_pkt2buffer_wire_compress(b, p, NULL) != LDNS_STATUS_OK)
        goto cleanup;
    *len = ldns_buffer_position(b);
    *wire = ldns_buffer_export(b);
    *nrr = count;
    rc = BD_OK;
cleanup:
    ldns_buffer_free(b);
    ldns_rr_list_set_rr_count(ldns_pkt_answer(p), 0); /* the RRs are the zonedb's */
    ldns_pkt_free(p);
    return rc;
}

/* The next message of the transfer into the output buffer: encoded (or as another
 * connection encoded it, with our ID), then signed as encoded (ldns_pkt_tsig_sign_next
 * would encode it once more). */
static int conn_xfr_next(server_conn_t *c)
{
    bind_server_t *srv = c->srv;
    xfr_wire_t *w = c->xfr_wire;
    uint8_t *wire = NULL;
    size_t len = 0, nrr = 0;
    int rc;
    if (w != NULL && c->xfr_msgs < w->n) {
        const struct xfr_msg *m = &w->m[c->xfr_msgs];
        if ((wire = malloc(m->len)) == NULL)
            return BD_ENOMEM;
        memcpy(wire, m->wire, m->len);
        len = m->len;
        LDNS_ID_SET(wire, c->xfr_id);
        c->xfr_pos += m->nrr;
        srv->stats.xfr_shared++;
    } else {
        if ((rc = xfr_encode(c, &wire, &len, &nrr)) != BD_OK)
            return rc;
        xfr_wire_add(w, c->xfr_msgs, wire, len, nrr);
    }
    ldns_rdf *mac = NULL;
    if ((rc = server__tsig_sign_wire(&srv->tsig, &wire, &len, c->xfr_mac, c->xfr_msgs > 0, &mac)) != 0) {
        free(wire);
        return rc;
    }
    ldns_rdf_deep_free(c->xfr_mac);
    c->xfr_mac = mac;
    if ((rc = conn_put(c, wire, len)) == BD_OK) {
        c->xfr_msgs++;
        srv->stats.xfr_messages++;
    }
    return rc;
}

static bool conn_process(server_conn_t *c);

/* Back to reading after an answer or a transfer went out. Returns false if c was closed. */
static bool conn_done_writing(server_conn_t *c)
{
    bind_server_t *srv = c->srv;
    if (c->xfr != NULL) {
        srv->stats.xfr_done++;
        bd_info("%s to %s done: %zu messages", c->xfr_what, c->peer, c->xfr_msgs);
        bind_zonedb_xfr_free(c->xfr);
        c->xfr = NULL;
        xfr_wire_put(srv, c->xfr_wire);
        c->xfr_wire = NULL;
        ldns_rr_free(c->xfr_question);
        c->xfr_question = NULL;
        ldns_rdf_deep_free(c->xfr_mac);
        c->xfr_mac = NULL;
    }
    c->writing = false;
    ev_io_stop(srv->loop, &c->ww);
    ev_io_start(srv->loop, &c->rw);
    return conn_process(c); /* a query may already be buffered (pipelining) */
}

/* Write what the socket takes. Returns false if c was closed. */
static bool conn_write(server_conn_t *c)
{
    bind_server_t *srv = c->srv;
    for (int round = 0; round < WRITE_BURST; round++) {
        if (c->outpos == c->outlen) {
            if (c->xfr == NULL || c->xfr_pos >= bind_zonedb_xfr_count(c->xfr))
                return conn_done_writing(c);
            int rc = conn_xfr_next(c);
            if (rc != 0) {
                conn_close(c, bd_strerror(rc));
                return false;
            }
        }
        ssize_t w = send(c->fd, c->out + c->outpos, c->outlen - c->outpos, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return true;
            conn_close(c, strerror(errno));
            return false;
        }
        c->outpos += (size_t)w;
        ev_timer_again(srv->loop, &c->idle);
        if (c->outpos < c->outlen)
            return true; /* socket full: wait for EV_WRITE */
    }
    return true; /* more to do: EV_WRITE fires again at once, other clients get a turn */
}

static void conn_start_writing(server_conn_t *c)
{
    c->writing = true;
    ev_io_stop(c->srv->loop, &c->rw);
    ev_io_start(c->srv->loop, &c->ww);
}

/* Handle buffered queries until one needs writing. Returns false if c was closed. */
static bool conn_process(server_conn_t *c)
{
    bind_server_t *srv = c->srv;
    while (!c->writing && c->inlen >= 2) {
        size_t mlen = ((size_t)c->in[0] << 8) | c->in[1];
        if (mlen > srv->max_query || mlen < LDNS_HEADER_SIZE) {
            bd_warn("TCP client %s sent a %zu-byte message (limit %zu): closed", c->peer, mlen,
                    srv->max_query);
            srv->stats.dropped++;
            conn_close(c, "oversized message");
            return false;
        }
        if (c->inlen < mlen + 2)
            return true;
        srv->stats.queries_tcp++;
        answer_t a;
        server_handle(srv, true, c->peer, c->in + 2, mlen, &a);
        memmove(c->in, c->in + 2 + mlen, c->inlen - 2 - mlen);
        c->inlen -= 2 + mlen;
        if (a.xfr != NULL) {
            c->xfr = a.xfr;
            c->xfr_question = a.question;
            c->xfr_mac = a.mac;
            c->xfr_id = a.id;
            c->xfr_pos = 0;
            c->xfr_msgs = 0;
            snprintf(c->xfr_what, sizeof(c->xfr_what), "%s", a.what);
            char *owner = ldns_rdf2str(ldns_rr_owner(a.question)), key[512];
            snprintf(key, sizeof(key), "%s|%s|%u|%u|%zu", a.what, owner ? owner : "",
                     (unsigned)ldns_rr_get_type(a.question), bind_zonedb_xfr_serial(a.xfr),
                     bind_zonedb_xfr_count(a.xfr));
            free(owner);
            c->xfr_wire = xfr_wire_get(srv, key);
            a.xfr = NULL;
            a.question = NULL;
            a.mac = NULL;
            conn_start_writing(c);
        } else if (a.wire != NULL) {
            int rc = conn_put(c, a.wire, a.len);
            a.wire = NULL;
            if (rc != 0) {
                answer_clear(&a);
                conn_close(c, bd_strerror(rc));
                return false;
            }
            conn_start_writing(c);
        }
        answer_clear(&a);
    }
    return true;
}

static void conn_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    server_conn_t *c = w->data;
    size_t cap = c->srv->max_query + 2;
    if (c->inlen >= cap)
        return; /* cannot happen: a full buffer holds a whole query, handled at once */
    ssize_t r = recv(c->fd, c->in + c->inlen, cap - c->inlen, 0);
    if (r == 0) {
        conn_close(c, "closed by the client");
        return;
    }
    if (r < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_close(c, strerror(errno));
        return;
    }
    c->inlen += (size_t)r;
    ev_timer_again(loop, &c->idle);
    (void)conn_process(c);
}

static void conn_write_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)conn_write(w->data);
}

static void conn_idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    server_conn_t *c = w->data;
    c->srv->stats.tcp_timeouts++;
    conn_close(c, "idle timeout");
}

static void tcp_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bind_server_t *srv = w->data;
    for (int i = 0; i < ACCEPT_BURST; i++) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof(from);
        int fd = accept4(srv->tcp_fd, (struct sockaddr *)&from, &flen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        char peer[SERVER_PEER_MAX];
        server__peer_text((struct sockaddr *)&from, peer, sizeof(peer));
        if (srv->nconns >= srv->max_clients) {
            srv->stats.tcp_rejected++;
            double now = ev_now(loop);
            if (now - srv->last_reject_log >= 1.0) {
                srv->last_reject_log = now;
                bd_warn("TCP client %s rejected: %zu clients already (max_clients)", peer,
                        srv->nconns);
            }
            close(fd);
            continue;
        }
        server_conn_t *c = calloc(1, sizeof(*c));
        uint8_t *in = malloc(srv->max_query + 2);
        if (c == NULL || in == NULL) {
            free(c);
            free(in);
            close(fd);
            continue;
        }
        c->srv = srv;
        c->fd = fd;
        c->in = in;
        snprintf(c->peer, sizeof(c->peer), "%s", peer);
        ev_io_init(&c->rw, conn_read_cb, fd, EV_READ);
        ev_io_init(&c->ww, conn_write_cb, fd, EV_WRITE);
        ev_init(&c->idle, conn_idle_cb);
        c->idle.repeat = srv->idle_timeout;
        c->rw.data = c->ww.data = c->idle.data = c;
        c->next = srv->conns;
        if (srv->conns != NULL)
            srv->conns->prev = c;
        srv->conns = c;
        srv->nconns++;
        srv->stats.tcp_accepted++;
        ev_io_start(loop, &c->rw);
        ev_timer_again(loop, &c->idle);
    }
}

/* ---- lifetime ---- */

static void zonedb_hook(void *arg, const char *zone, uint32_t serial, bind_zonedb_event_t ev)
{
    bind_server_t *srv = arg;
    if (ev == BIND_ZONEDB_REMOVED)
        server__notify_cancel(srv, zone);
    else
        server__notify_zone(srv, zone);
}

static int parse_listen(const char *address, uint16_t port, struct sockaddr_storage *ss,
                        socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (address == NULL)
        address = "127.0.0.1";
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *len = sizeof(*v4);
        return BD_OK;
    }
    if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *len = sizeof(*v6);
        return BD_OK;
    }
    return BD_EINVAL;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static uint16_t get_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* TCP then UDP on the same port; with port 0 the kernel picks the TCP port and UDP
 * follows (retried a few times should that UDP port be taken). */
static int open_sockets(bind_server_t *srv, uint16_t port, bd_err_t *err)
{
    const char *step = "socket";
    int one = 1;
    for (int attempt = 0; attempt < 8; attempt++) {
        struct sockaddr_storage ss = srv->addr;
        set_port(&ss, port);
        srv->tcp_fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (srv->tcp_fd < 0)
            goto fail;
        step = "setsockopt";
        if (setsockopt(srv->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
            goto fail;
        if (ss.ss_family == AF_INET6 &&
            setsockopt(srv->tcp_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
            goto fail;
        step = "bind (TCP)";
        if (bind(srv->tcp_fd, (struct sockaddr *)&ss, srv->addrlen) != 0)
            goto fail;
        step = "getsockname";
        socklen_t sl = sizeof(ss);
        if (getsockname(srv->tcp_fd, (struct sockaddr *)&ss, &sl) != 0)
            goto fail;
        step = "socket (UDP)";
        srv->udp_fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (srv->udp_fd < 0)
            goto fail;
        if (ss.ss_family == AF_INET6 &&
            setsockopt(srv->udp_fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
            goto fail;
        step = "bind (UDP)";
        if (bind(srv->udp_fd, (struct sockaddr *)&ss, sl) != 0) {
            if (errno == EADDRINUSE && port == 0) {
                close(srv->udp_fd);
                close(srv->tcp_fd);
                srv->udp_fd = srv->tcp_fd = -1;
                continue;
            }
            goto fail;
        }
        step = "listen";
        if (listen(srv->tcp_fd, TCP_BACKLOG) != 0)
            goto fail;
        srv->addr = ss;
        srv->port = get_port(&ss);
        return BD_OK;
    }
    errno = EADDRINUSE;
fail:;
    int e = errno;
    char where[SERVER_PEER_MAX];
    struct sockaddr_storage ss = srv->addr;
    set_port(&ss, port);
    server__peer_text((struct sockaddr *)&ss, where, sizeof(where));
    return bd_err_set(err, BD_EIO, "DNS server on %s: %s: %s", where, step, strerror(e));
}

int bind_server_new(bind_server_t **out, struct ev_loop *loop, bind_zonedb_t *db,
                    const bind_server_config_t *cfg, bd_err_t *err)
{
    bind_server_t *srv = NULL;
    int rc;

    *out = NULL;
    bd_err_clear(err);
    if (loop == NULL || db == NULL || cfg == NULL)
        return bd_err_set(err, BD_EINVAL, "DNS server: loop, zonedb and config are required");
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    srv->loop = loop;
    srv->db = db;
    srv->udp_fd = srv->tcp_fd = -1;
    srv->notify_fd[0] = srv->notify_fd[1] = -1;
    srv->serving = cfg->serving;
    srv->max_clients = cfg->max_clients ? cfg->max_clients : BIND_SERVER_DEFAULT_MAX_CLIENTS;
    srv->max_query = cfg->max_query ? cfg->max_query : BIND_SERVER_DEFAULT_MAX_QUERY;
    srv->max_message = cfg->max_message ? cfg->max_message : BIND_SERVER_DEFAULT_MAX_MESSAGE;
    srv->idle_timeout = cfg->idle_timeout > 0 ? cfg->idle_timeout : BIND_SERVER_DEFAULT_IDLE_TIMEOUT;
    srv->notify_interval =
        cfg->notify_interval > 0 ? cfg->notify_interval : BIND_SERVER_DEFAULT_NOTIFY_INTERVAL;
    srv->notify_retries = cfg->notify_retries ? cfg->notify_retries
                                              : BIND_SERVER_DEFAULT_NOTIFY_RETRIES;
    if (srv->max_query < LDNS_HEADER_SIZE || srv->max_query > 65535 ||
        srv->max_message < 512 || srv->max_message > 65535) {
        rc = bd_err_set(err, BD_EINVAL,
                        "DNS server: max_query must be 12..65535 and max_message 512..65535");
        goto fail;
    }
    if (parse_listen(cfg->address, cfg->port, &srv->addr, &srv->addrlen) != 0) {
        rc = bd_err_set(err, BD_EINVAL, "DNS server: '%s' is not a numeric IP address",
                        cfg->address);
        goto fail;
    }
    if ((rc = server__tsig_set(&srv->tsig, cfg->xfr_key)) != 0) {
        bd_err_set(err, rc, "DNS server: invalid transfer key '%s'",
                   cfg->xfr_key ? cfg->xfr_key->name : "");
        goto fail;
    }
    srv->udp_buf = malloc(srv->max_query + 1);
    if (srv->udp_buf == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = open_sockets(srv, cfg->port, err)) != 0)
        goto fail;
    if ((rc = bind_zonedb_add_hook(db, zonedb_hook, srv)) != 0) {
        bd_err_set(err, rc, "DNS server: cannot watch the zonedb: %s", bd_strerror(rc));
        goto fail;
    }
    srv->hooked = true;
    ev_io_init(&srv->udp_w, udp_read_cb, srv->udp_fd, EV_READ);
    ev_io_init(&srv->tcp_w, tcp_accept_cb, srv->tcp_fd, EV_READ);
    srv->udp_w.data = srv->tcp_w.data = srv;
    ev_io_start(loop, &srv->udp_w);
    ev_io_start(loop, &srv->tcp_w);
    char where[SERVER_PEER_MAX];
    server__peer_text((struct sockaddr *)&srv->addr, where, sizeof(where));
    bd_info("DNS server (hidden primary) listening on %s UDP+TCP, %s, transfer key %s%s%s",
            where, srv->serving ? "serving" : "not serving", srv->tsig.set ? "'" : "",
            srv->tsig.set ? srv->tsig.name : "(none: transfers refused)",
            srv->tsig.set ? "'" : "");
    *out = srv;
    return BD_OK;
fail:
    bind_server_free(srv);
    return rc;
}

void bind_server_free(bind_server_t *srv)
{
    if (srv == NULL)
        return;
    while (srv->conns != NULL)
        conn_close(srv->conns, "server shutting down");
    server__notify_deinit(srv);
    if (srv->hooked)
        bind_zonedb_remove_hook(srv->db, zonedb_hook, srv);
    if (srv->udp_fd >= 0) {
        ev_io_stop(srv->loop, &srv->udp_w);
        close(srv->udp_fd);
    }
    if (srv->tcp_fd >= 0) {
        ev_io_stop(srv->loop, &srv->tcp_w);
        close(srv->tcp_fd);
    }
    server__tsig_deinit(&srv->tsig);
    free(srv->udp_buf);
    free(srv);
}

uint16_t bind_server_port(const bind_server_t *srv) { return srv->port; }

bool bind_server_serving(const bind_server_t *srv) { return srv->serving; }

static int notify_each(void *arg, const char *zone, uint32_t serial)
{
    server__notify_zone(arg, zone);
    return 0;
}

void bind_server_set_serving(bind_server_t *srv, bool serving)
{
    if (srv->serving == serving)
        return;
    srv->serving = serving;
    bd_info("DNS server: %s", serving ? "serving (leader)" : "not serving: every query is REFUSED");
    if (!serving) {
        server_conn_t *c = srv->conns;
        while (c != NULL) {
            server_conn_t *next = c->next;
            if (c->xfr != NULL)
                conn_close(c, "serving switched off");
            c = next;
        }
        server__notify_cancel(srv, NULL);
    } else {
        (void)bind_zonedb_foreach(srv->db, notify_each, srv);
    }
}

void bind_server_set_key(bind_server_t *srv, const bind_server_key_t *key)
{
    if (server__tsig_set(&srv->tsig, key) != 0)
        bd_error("DNS server: transfer key '%s' rejected; keeping the previous one",
                 key ? key->name : "");
}

int bind_server_notify(bind_server_t *srv, const char *zone)
{
    char canon[1024];
    if (bind_zonedb_canon_name(zone, canon, sizeof(canon)) != 0)
        return BD_EINVAL;
    if (bind_zonedb_soa(srv->db, canon) == NULL)
        return BD_ENOTFOUND;
    if (!srv->serving)
        return BD_EUNAVAIL;
    server__notify_zone(srv, canon);
    return BD_OK;
}

void bind_server_stats(const bind_server_t *srv, bind_server_stats_t *out) { *out = srv->stats; }
