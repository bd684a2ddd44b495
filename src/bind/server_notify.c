/*
 * server_notify.c - NOTIFY out (RFC 1996): after a zone changes, tell its secondaries.
 *
 * One pending entry per (zone, target). A change (re)arms the entry's timer at 0 s, so
 * several changes in one loop iteration give one NOTIFY per target, carrying the serial
 * current when it is sent. Each try gets a fresh message ID; the timer then waits
 * notify_interval, doubled after every try, and after 1 + notify_retries tries without an
 * answer the entry is dropped (notify_failed). An answer from the target, with our ID,
 * opcode NOTIFY and a valid TSIG (when we have a key), acknowledges it. An error answer
 * (NOTAUTH from a secondary with another secret, REFUSED from one that does not know the
 * zone) is logged and ends the entry: retrying would not change it.
 *
 * Sockets: one unconnected UDP socket per address family, opened on first use, bound to
 * the server's address (port 0) so that secondaries see NOTIFY coming from the address
 * they have as primary.
 */
#include "server_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "log.h"

struct server_notify {
    server_notify_t *next, *prev;
    bind_server_t *srv;
    char *zone;
    server_target_t target;
    uint16_t id;
    unsigned tries;
    uint32_t serial; /* in the last NOTIFY sent */
    ldns_rdf *mac;   /* of the last NOTIFY sent (to verify the answer) */
    ev_timer timer;
};

int server__target_parse(const char *text, server_target_t *out)
{
    char host[80];
    const char *port_s = NULL;
    unsigned long port = 53;

    memset(out, 0, sizeof(*out));
    if (text == NULL || *text == '\0' || strlen(text) >= sizeof(host))
        return BD_EINVAL;
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (end == NULL || (size_t)(end - text - 1) >= sizeof(host))
            return BD_EINVAL;
        memcpy(host, text + 1, (size_t)(end - text - 1));
        host[end - text - 1] = '\0';
        if (end[1] == ':')
            port_s = end + 2;
        else if (end[1] != '\0')
            return BD_EINVAL;
    } else {
        const char *colon = strchr(text, ':');
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            if ((size_t)(colon - text) >= sizeof(host))
                return BD_EINVAL;
            memcpy(host, text, (size_t)(colon - text));
            host[colon - text] = '\0';
            port_s = colon + 1;
        } else {
            if (strlen(text) >= sizeof(host))
                return BD_EINVAL;
            snprintf(host, sizeof(host), "%s", text); /* IPv4, or bare IPv6 */
        }
    }
    if (port_s != NULL) {
        char *end;
        if (*port_s == '\0')
            return BD_EINVAL;
        port = strtoul(port_s, &end, 10);
        if (*end != '\0' || port == 0 || port > 65535)
            return BD_EINVAL;
    }
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        out->salen = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        out->salen = sizeof(*v6);
    } else {
        return BD_EINVAL;
    }
    server__peer_text((struct sockaddr *)&out->sa, out->text, sizeof(out->text));
    return BD_OK;
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return false;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

/* ---- targets ---- */

int bind_server_set_notify_targets(bind_server_t *srv, const char *zone,
                                   const char *const *targets, size_t n, bd_err_t *err)
{
    char canon[1024];
    server_targets_t *list = NULL;

    bd_err_clear(err);
    if (zone != NULL && bind_zonedb_canon_name(zone, canon, sizeof(canon)) != 0)
        return bd_err_set(err, BD_EINVAL, "invalid zone name '%s'", zone);
    if (n > BIND_SERVER_MAX_NOTIFY_TARGETS)
        return bd_err_set(err, BD_ETOOBIG, "zone %s: %zu NOTIFY targets, at most %d",
                          zone ? canon : "(default)", n, BIND_SERVER_MAX_NOTIFY_TARGETS);
    if (n > 0) {
        list = calloc(1, sizeof(*list) + n * sizeof(list->t[0]));
        if (list == NULL || (zone != NULL && (list->zone = strdup(canon)) == NULL)) {
            free(list);
            return bd_err_set(err, BD_ENOMEM, "out of memory");
        }
        list->n = n;
        for (size_t i = 0; i < n; i++) {
            if (server__target_parse(targets[i], &list->t[i]) != 0) {
                free(list->zone);
                free(list);
                return bd_err_set(err, BD_EINVAL,
                                  "zone %s: NOTIFY target '%s' is not addr, addr:port or "
                                  "[v6addr]:port",
                                  zone ? canon : "(default)", targets[i] ? targets[i] : "");
            }
        }
    }
    /* unlink the old list of that zone */
    for (server_targets_t **pp = &srv->targets; *pp != NULL; pp = &(*pp)->next) {
        server_targets_t *t = *pp;
        if ((zone == NULL && t->zone == NULL) ||
            (zone != NULL && t->zone != NULL && strcmp(t->zone, canon) == 0)) {
            *pp = t->next;
            free(t->zone);
            free(t);
            break;
        }
    }
    if (list != NULL) {
        list->next = srv->targets;
        srv->targets = list;
    }
    return BD_OK;
}

static const server_targets_t *targets_of(const bind_server_t *srv, const char *zone)
{
    const server_targets_t *def = NULL;
    for (const server_targets_t *t = srv->targets; t != NULL; t = t->next) {
        if (t->zone == NULL)
            def = t;
        else if (strcmp(t->zone, zone) == 0)
            return t;
    }
    return def;
}

/* ---- pending NOTIFYs ---- */

static void notify_free(server_notify_t *n)
{
    bind_server_t *srv = n->srv;
    ev_timer_stop(srv->loop, &n->timer);
    if (n->prev != NULL)
        n->prev->next = n->next;
    else
        srv->pending = n->next;
    if (n->next != NULL)
        n->next->prev = n->prev;
    ldns_rdf_deep_free(n->mac);
    free(n->zone);
    free(n);
}

static void notify_read_cb(struct ev_loop *loop, ev_io *w, int revents);

static int notify_socket(bind_server_t *srv, int family)
{
    int i = family == AF_INET6 ? 1 : 0;
    if (srv->notify_fd[i] >= 0)
        return srv->notify_fd[i];
    int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        bd_error("NOTIFY: cannot open a UDP socket: %s", strerror(errno));
        return -1;
    }
    if (srv->addr.ss_family == family) {
        struct sockaddr_storage local = srv->addr;
        if (family == AF_INET)
            ((struct sockaddr_in *)&local)->sin_port = 0;
        else
            ((struct sockaddr_in6 *)&local)->sin6_port = 0;
        if (bind(fd, (struct sockaddr *)&local, srv->addrlen) != 0) {
            bd_error("NOTIFY: cannot bind a UDP socket: %s", strerror(errno));
            close(fd);
            return -1;
        }
    }
    srv->notify_fd[i] = fd;
    ev_io_init(&srv->notify_w[i], notify_read_cb, fd, EV_READ);
    srv->notify_w[i].data = srv;
    ev_io_start(srv->loop, &srv->notify_w[i]);
    return fd;
}

/* Build, sign and send one NOTIFY. Returns 0 or a BD_E* code (logged). */
static int notify_send(server_notify_t *n)
{
    bind_server_t *srv = n->srv;
    ldns_pkt *p = NULL;
    ldns_rdf *qname = NULL;
    uint8_t *wire = NULL;
    size_t len = 0;
    int rc = BD_EINTERNAL;

    const ldns_rr *soa = bind_zonedb_soa(srv->db, n->zone);
    if (soa == NULL) {
        rc = BD_ENOTFOUND;
        goto cleanup;
    }
    qname = ldns_dname_new_frm_str(n->zone);
    if (qname == NULL)
        goto cleanup;
    p = ldns_pkt_query_new(qname, LDNS_RR_TYPE_SOA, LDNS_RR_CLASS_IN, LDNS_AA);
    qname = NULL; /* the packet owns it */
    ldns_rr *ans = p ? ldns_rr_clone(soa) : NULL;
    if (p == NULL || ans == NULL) {
        ldns_rr_free(ans);
        goto cleanup;
    }
    ldns_pkt_set_opcode(p, LDNS_PACKET_NOTIFY);
    ldns_pkt_push_rr(p, LDNS_SECTION_ANSWER, ans);
    uint16_t id;
    if (RAND_bytes((unsigned char *)&id, sizeof(id)) != 1)
        goto cleanup;
    ldns_pkt_set_id(p, id);
    if (srv->tsig.set && server__tsig_sign(&srv->tsig, p, NULL, false) != 0)
        goto cleanup;
    if (ldns_pkt2wire(&wire, p, &len) != LDNS_STATUS_OK)
        goto cleanup;
    int fd = notify_socket(srv, n->target.sa.ss_family);
    if (fd < 0) {
        rc = BD_EIO;
        goto cleanup;
    }
    ssize_t w = sendto(fd, wire, len, 0, (struct sockaddr *)&n->target.sa, n->target.salen);
    if (w < 0) {
        bd_warn("zone %s: NOTIFY to %s not sent: %s", n->zone, n->target.text,
                strerror(errno));
        rc = BD_EIO;
        goto cleanup;
    }
    ldns_rdf_deep_free(n->mac);
    const ldns_rdf *mac = server__tsig_mac(p);
    n->mac = mac ? ldns_rdf_clone(mac) : NULL;
    n->id = id;
    n->serial = ldns_rdf2native_int32(ldns_rr_rdf(soa, 2));
    srv->stats.notify_sent++;
    bd_debug("zone %s: NOTIFY serial %u to %s (try %u)", n->zone, n->serial, n->target.text,
             n->tries + 1);
    rc = BD_OK;
cleanup:
    free(wire);
    ldns_pkt_free(p);
    ldns_rdf_deep_free(qname);
    return rc;
}

static void notify_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    server_notify_t *n = w->data;
    bind_server_t *srv = n->srv;

    if (n->tries > srv->notify_retries) {
        bd_warn("zone %s: NOTIFY serial %u to %s not acknowledged after %u tries; giving up "
                "(the secondary still refreshes on its SOA timers)",
                n->zone, n->serial, n->target.text, n->tries);
        srv->stats.notify_failed++;
        notify_free(n);
        return;
    }
    int rc = notify_send(n);
    if (rc == BD_ENOTFOUND) { /* the zone went away meanwhile */
        notify_free(n);
        return;
    }
    n->tries++; /* a failed send counts as a try: it is retried like a lost one */
    double delay = srv->notify_interval;
    for (unsigned i = 1; i < n->tries && delay < 3600; i++)
        delay *= 2;
    ev_timer_set(&n->timer, delay, 0.);
    ev_timer_start(loop, &n->timer);
}

/* (Re)arm the pending entry of (zone, target); a send already due is left alone: it will
 * carry the newest serial. */
static int notify_queue(bind_server_t *srv, const char *zone, const server_target_t *t)
{
    server_notify_t *n;
    for (n = srv->pending; n != NULL; n = n->next)
        if (strcmp(n->zone, zone) == 0 && same_addr((struct sockaddr *)&n->target.sa, (struct sockaddr *)&t->sa))
            break;
    if (n == NULL) {
        n = calloc(1, sizeof(*n));
        if (n == NULL || (n->zone = strdup(zone)) == NULL) {
            free(n);
            bd_error("zone %s: NOTIFY to %s dropped: out of memory", zone, t->text);
            return BD_ENOMEM;
        }
        n->srv = srv;
        n->target = *t;
        ev_timer_init(&n->timer, notify_timer_cb, 0., 0.);
        n->timer.data = n;
        n->next = srv->pending;
        if (srv->pending != NULL)
            srv->pending->prev = n;
        srv->pending = n;
    }
    if (n->tries == 0 && ev_is_active(&n->timer))
        return BD_OK;
    n->tries = 0;
    ev_timer_stop(srv->loop, &n->timer);
    ev_timer_set(&n->timer, 0., 0.);
    ev_timer_start(srv->loop, &n->timer);
    return BD_OK;
}

void server__notify_zone(bind_server_t *srv, const char *zone)
{
    if (!srv->serving)
        return;
    const server_targets_t *ts = targets_of(srv, zone);
    for (size_t i = 0; ts != NULL && i < ts->n; i++)
        (void)notify_queue(srv, zone, &ts->t[i]); /* logged */
}

int bind_server_notify_to(bind_server_t *srv, const char *zone, const char *target)
{
    char canon[1024];
    server_target_t t;
    if (zone == NULL || bind_zonedb_canon_name(zone, canon, sizeof(canon)) != 0 ||
        server__target_parse(target, &t) != 0)
        return BD_EINVAL;
    if (!srv->serving)
        return BD_EUNAVAIL;
    if (bind_zonedb_soa(srv->db, canon) == NULL)
        return BD_ENOTFOUND;
    return notify_queue(srv, canon, &t);
}

void server__notify_cancel(bind_server_t *srv, const char *zone)
{
    server_notify_t *n = srv->pending;
    while (n != NULL) {
        server_notify_t *next = n->next;
        if (zone == NULL || strcmp(n->zone, zone) == 0)
            notify_free(n);
        n = next;
    }
}

static const char *rcode_name(int rcode, char *buf, size_t cap)
{
    ldns_lookup_table *lt = ldns_lookup_by_id(ldns_rcodes, rcode);
    if (lt != NULL && lt->name != NULL)
        snprintf(buf, cap, "%s", lt->name);
    else
        snprintf(buf, cap, "RCODE%d", rcode);
    return buf;
}

static void notify_answer(bind_server_t *srv, const uint8_t *wire, size_t len,
                          const struct sockaddr *from)
{
    ldns_pkt *p = NULL;
    char peer[SERVER_PEER_MAX], keyname[300], rc_buf[32];

    server__peer_text(from, peer, sizeof(peer));
    if (len < LDNS_HEADER_SIZE || !LDNS_QR_WIRE(wire) || !server__wire_ok(wire, len) ||
        ldns_wire2pkt(&p, wire, len) != LDNS_STATUS_OK) {
        bd_debug("NOTIFY: malformed answer from %s dropped", peer);
        srv->stats.dropped++;
        goto cleanup;
    }
    server_notify_t *n;
    for (n = srv->pending; n != NULL; n = n->next)
        if (n->id == ldns_pkt_id(p) && n->tries > 0 &&
            same_addr((struct sockaddr *)&n->target.sa, from))
            break;
    if (n == NULL || ldns_pkt_get_opcode(p) != LDNS_PACKET_NOTIFY) {
        bd_debug("NOTIFY: unexpected answer from %s (id %u) dropped", peer, ldns_pkt_id(p));
        goto cleanup;
    }
    int rcode = ldns_pkt_get_rcode(p);
    server_tsig_result_t tr = SERVER_TSIG_NONE;
    if (ldns_pkt_tsig(p) != NULL && n->mac != NULL)
        tr = server__tsig_verify(&srv->tsig, p, wire, len, n->mac, keyname, sizeof(keyname));
    if (rcode != LDNS_RCODE_NOERROR) {
        /* NOTAUTH is both "bad TSIG" (then the TSIG RR carries an error) and "not
         * authoritative for the zone" (RFC 2136 meaning, what BIND answers a NOTIFY for a
         * zone it does not have). */
        const ldns_rr *t = ldns_pkt_tsig(p);
        uint16_t terr = t != NULL && ldns_rr_rd_count(t) >= 7
                            ? ldns_rdf2native_int16(ldns_rr_rdf(t, 5))
                            : 0;
        const char *why = "";
        if (terr == SERVER_TSIG_E_BADSIG || terr == SERVER_TSIG_E_BADKEY)
            why = " (TSIG rejected: the secondary has another secret or key for the "
                  "transfer key)";
        else if (terr == SERVER_TSIG_E_BADTIME)
            why = " (TSIG rejected: clocks differ)";
        else if (rcode == LDNS_RCODE_NOTAUTH || rcode == LDNS_RCODE_REFUSED)
            why = " (the secondary does not serve the zone, or not yet)";
        bd_warn("zone %s: NOTIFY to %s answered %s%s; not retrying", n->zone, n->target.text,
                rcode_name(rcode, rc_buf, sizeof(rc_buf)), why);
        srv->stats.notify_failed++;
        notify_free(n);
        goto cleanup;
    }
    if (srv->tsig.set && tr != SERVER_TSIG_OK) {
        bd_warn("zone %s: NOTIFY answer from %s ignored: %s", n->zone, peer,
                tr == SERVER_TSIG_NONE ? "not signed" : "TSIG verification failed");
        goto cleanup;
    }
    bd_debug("zone %s: NOTIFY serial %u acknowledged by %s", n->zone, n->serial, peer);
    srv->stats.notify_acked++;
    notify_free(n);
cleanup:
    ldns_pkt_free(p);
}

static void notify_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    bind_server_t *srv = w->data;
    uint8_t buf[4096];
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof(from);
        ssize_t r = recvfrom(w->fd, buf, sizeof(buf), MSG_TRUNC, (struct sockaddr *)&from, &flen);
        if (r < 0)
            return; /* EAGAIN, or an ICMP error for an earlier send: nothing to do */
        if ((size_t)r > sizeof(buf)) {
            srv->stats.dropped++;
            continue;
        }
        notify_answer(srv, buf, (size_t)r, (struct sockaddr *)&from);
    }
}

void server__notify_deinit(bind_server_t *srv)
{
    server__notify_cancel(srv, NULL);
    while (srv->targets != NULL) {
        server_targets_t *t = srv->targets;
        srv->targets = t->next;
        free(t->zone);
        free(t);
    }
    for (int i = 0; i < 2; i++) {
        if (srv->notify_fd[i] >= 0) {
            ev_io_stop(srv->loop, &srv->notify_w[i]);
            close(srv->notify_fd[i]);
            srv->notify_fd[i] = -1;
        }
    }
}
