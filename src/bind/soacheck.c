#include "soacheck.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zonedb.h"

typedef struct {
    struct sockaddr_storage sa;
    socklen_t salen;
    uint16_t id; /* of the last query sent */
    bind_soacheck_result_t r;
    char *name;
} srv_t;

struct bind_soacheck {
    struct ev_loop *loop;
    ev_io io;
    ev_timer tick, deadline;
    int fd;
    char *zone;
    ldns_rdf *zone_rdf;
    uint32_t want;
    srv_t *srv;
    size_t n, nok;
    ev_tstamp started;
    bind_soacheck_cb cb;
    void *arg;
};
typedef struct bind_soacheck check_t;

static void check_free(check_t *c)
{
    ev_io_stop(c->loop, &c->io);
    ev_timer_stop(c->loop, &c->tick);
    ev_timer_stop(c->loop, &c->deadline);
    if (c->fd >= 0)
        close(c->fd);
    for (size_t i = 0; i < c->n; i++)
        free(c->srv[i].name);
    free(c->srv);
    ldns_rdf_deep_free(c->zone_rdf);
    free(c->zone);
    free(c);
}

void bind_soacheck_cancel(bind_soacheck_t *c)
{
    if (c != NULL)
        check_free(c);
}

static void finish(check_t *c)
{
    bind_soacheck_result_t *res = calloc(c->n ? c->n : 1, sizeof(*res));
    for (size_t i = 0; res && i < c->n; i++)
        res[i] = c->srv[i].r;
    if (res)
        c->cb(c->arg, c->zone, c->want, res, c->n);
    free(res);
    check_free(c);
}

static void ask(check_t *c, srv_t *s)
{
    ldns_pkt *q = ldns_pkt_query_new(ldns_rdf_clone(c->zone_rdf), LDNS_RR_TYPE_SOA, LDNS_RR_CLASS_IN, 0);
    if (q == NULL)
        return;
    uint16_t id = 0;
    RAND_bytes((unsigned char *)&id, sizeof(id)); /* unpredictable ids: answers are matched by id */
    ldns_pkt_set_id(q, id);
    s->id = id;
    uint8_t *wire = NULL;
    size_t len = 0;
    if (ldns_pkt2wire(&wire, q, &len) == LDNS_STATUS_OK)
        (void)sendto(c->fd, wire, len, 0, (struct sockaddr *)&s->sa, s->salen); /* lost: asked again */
    free(wire);
    ldns_pkt_free(q);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    check_t *c = w->data;
    for (;;) {
        uint8_t buf[4096];
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(c->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n <= 0)
            break;
        ldns_pkt *p = NULL;
        if (ldns_wire2pkt(&p, buf, (size_t)n) != LDNS_STATUS_OK)
            continue;
        for (size_t i = 0; i < c->n; i++) {
            srv_t *s = &c->srv[i];
            if (s->r.ok || s->id != ldns_pkt_id(p) || fl != s->salen || memcmp(&from, &s->sa, fl) != 0)
                continue;
            ldns_rr_list *ans = ldns_pkt_answer(p);
            for (size_t k = 0; ans && k < ldns_rr_list_rr_count(ans); k++) {
                ldns_rr *rr = ldns_rr_list_rr(ans, k);
                if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA || ldns_rr_rd_count(rr) < 3)
                    continue;
                s->r.answered = true;
                s->r.serial = ldns_rdf2native_int32(ldns_rr_rdf(rr, 2));
                if (s->r.serial == c->want || bind_zonedb_serial_gt(s->r.serial, c->want)) {
                    s->r.ok = true;
                    s->r.ms = (ev_now(loop) - c->started) * 1000.0;
                    c->nok++;
                }
            }
        }
        ldns_pkt_free(p);
    }
    if (c->nok == c->n)
        finish(c);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    check_t *c = w->data;
    for (size_t i = 0; i < c->n; i++)
        if (!c->srv[i].r.ok)
            ask(c, &c->srv[i]);
    /* Ask quickly at first (changes usually land within tens of ms), then back off so that
     * many checks at once (a thousand new zones) do not flood the servers. */
    w->repeat = w->repeat * 2 > 1.0 ? 1.0 : w->repeat * 2;
    ev_timer_again(loop, w);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents) { finish(w->data); }

int bind_soacheck_start(struct ev_loop *loop, const char *zone, uint32_t want, const bind_endpoint_t *servers,
                        const char *const *names, size_t n, double deadline, double interval, bind_soacheck_cb cb,
                        void *arg, bind_soacheck_t **out, bd_err_t *err)
{
    if (out)
        *out = NULL;
    if (zone == NULL || cb == NULL || (n > 0 && (servers == NULL || names == NULL)) || deadline <= 0 || interval <= 0)
        return bd_err_set(err, BD_EINVAL, "soacheck: zone, servers, names, callback and times are required");
    check_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return bd_err_set(err, BD_ENOMEM, "soacheck: out of memory");
    c->loop = loop;
    c->fd = -1;
    c->want = want;
    c->cb = cb;
    c->arg = arg;
    c->n = n;
    c->zone = strdup(zone);
    c->srv = calloc(n ? n : 1, sizeof(*c->srv));
    c->zone_rdf = ldns_dname_new_frm_str(zone);
    if (c->zone == NULL || c->srv == NULL || c->zone_rdf == NULL) {
        check_free(c);
        return bd_err_set(err, BD_EINVAL, "soacheck: \"%s\" is not a zone name", zone);
    }
    int family = AF_INET;
    for (size_t i = 0; i < n; i++) {
        srv_t *s = &c->srv[i];
        struct sockaddr_in *v4 = (struct sockaddr_in *)&s->sa;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&s->sa;
        if (inet_pton(AF_INET, servers[i].addr, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons(servers[i].port);
            s->salen = sizeof(*v4);
        } else if (inet_pton(AF_INET6, servers[i].addr, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(servers[i].port);
            s->salen = sizeof(*v6);
            family = AF_INET6;
        } else {
            check_free(c);
            return bd_err_set(err, BD_EINVAL, "soacheck: \"%s\" is not a numeric address", servers[i].addr);
        }
        s->name = strdup(names[i]);
        s->r.name = s->name;
        if (s->name == NULL) {
            check_free(c);
            return bd_err_set(err, BD_ENOMEM, "soacheck: out of memory");
        }
    }
    c->fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        int e = errno;
        check_free(c);
        return bd_err_set(err, BD_EIO, "soacheck: socket: %s", strerror(e));
    }
    c->started = ev_now(loop);
    ev_io_init(&c->io, on_read, c->fd, EV_READ);
    ev_timer_init(&c->tick, on_tick, 0., interval);
    ev_timer_init(&c->deadline, on_deadline, deadline, 0.);
    c->io.data = c->tick.data = c->deadline.data = c;
    ev_io_start(loop, &c->io);
    ev_timer_start(loop, &c->tick); /* first asks on the next loop iteration */
    ev_timer_start(loop, &c->deadline);
    if (out)
        *out = c;
    return BD_OK;
}
