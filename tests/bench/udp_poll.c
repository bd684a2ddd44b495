#include "udp_poll.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <ldns/ldns.h>

int up_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

double up_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The wire form of "name A" with id, or 0. */
static size_t make_query(const char *name, uint16_t id, uint8_t *buf, size_t cap)
{
    ldns_pkt *q = NULL;
    uint8_t *wire = NULL;
    size_t len = 0;
    if (ldns_pkt_query_new_frm_str(&q, name, LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, 0) != LDNS_STATUS_OK)
        return 0;
    ldns_pkt_set_id(q, id);
    if (ldns_pkt2wire(&wire, q, &len) != LDNS_STATUS_OK || len > cap)
        len = 0;
    else
        memcpy(buf, wire, len);
    LDNS_FREE(wire);
    ldns_pkt_free(q);
    return len;
}

/* Does the answer in buf hold an A record with address want? */
static bool answer_has(const uint8_t *buf, size_t len, const char *want)
{
    ldns_pkt *p = NULL;
    if (ldns_wire2pkt(&p, buf, len) != LDNS_STATUS_OK)
        return false;
    bool found = false;
    ldns_rr_list *an = ldns_pkt_answer(p);
    for (size_t i = 0; an && i < ldns_rr_list_rr_count(an) && !found; i++) {
        ldns_rr *rr = ldns_rr_list_rr(an, i);
        if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_A || ldns_rr_rd_count(rr) < 1)
            continue;
        char *s = ldns_rdf2str(ldns_rr_rdf(rr, 0));
        found = s && strcmp(s, want) == 0;
        free(s);
    }
    ldns_pkt_free(p);
    return found;
}

int up_wait_served(up_server_t *s, size_t n, const char *name, const char *want, double t0, double timeout_ms)
{
    static uint16_t id = 1;
    struct pollfd pf[16];
    if (n > sizeof(pf) / sizeof(*pf)) {
        fprintf(stderr, "udp_poll: at most %zu servers\n", sizeof(pf) / sizeof(*pf));
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        s[i].done = -1;
    size_t left = n;
    while (left > 0 && up_now_ms() - t0 < timeout_ms) {
        uint8_t q[512];
        for (size_t i = 0; i < n; i++) {
            if (s[i].done >= 0)
                continue;
            size_t ql = make_query(name, id++, q, sizeof(q));
            if (ql == 0) {
                fprintf(stderr, "udp_poll: cannot build a query for %s\n", name);
                return -1;
            }
            if (send(s[i].fd, q, ql, 0) < 0 && errno != EAGAIN && errno != ECONNREFUSED) {
                fprintf(stderr, "udp_poll: send: %s\n", strerror(errno));
                return -1;
            }
        }
        /* read answers for up to 1 ms, then send again to whoever has not answered */
        double until = up_now_ms() + 1.0;
        for (double t = up_now_ms(); t < until && left > 0; t = up_now_ms()) {
            for (size_t i = 0; i < n; i++)
                pf[i] = (struct pollfd){.fd = s[i].done >= 0 ? -1 : s[i].fd, .events = POLLIN};
            struct timespec ts = {0, (long)((until - t) * 1e6)};
            if (ppoll(pf, n, &ts, NULL) <= 0)
                continue;
            for (size_t i = 0; i < n; i++) {
                if (!(pf[i].revents & POLLIN))
                    continue;
                uint8_t a[4096];
                ssize_t r;
                while ((r = recv(s[i].fd, a, sizeof(a), 0)) > 0 || (r < 0 && errno == ECONNREFUSED))
                    if (r > 0 && s[i].done < 0 && answer_has(a, (size_t)r, want)) {
                        s[i].done = up_now_ms() - t0;
                        left--;
                    }
            }
        }
    }
    return left == 0;
}
