/*
 * udp_poll.h - ask DNS servers on loopback for one A record over UDP, every millisecond,
 * until each answers with a wanted address: how the benchmarks time "served" without a
 * dig process per question (a dig costs milliseconds of start-up and CPU).
 *
 * Non-blocking sockets, one query in flight per server and per millisecond.
 */
#ifndef BD_UDP_POLL_H
#define BD_UDP_POLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int fd;
    uint16_t port;
    double done; /* ms after t0 when the answer came; < 0: not yet */
} up_server_t;

/* A connected UDP socket to 127.0.0.1:port; -1 on failure (errno set). */
int up_connect(uint16_t port);

double up_now_ms(void); /* CLOCK_MONOTONIC, ms */

/* Ask every server for name (absolute, "a.example.com.") A every millisecond until each
 * answers with the address want, or timeout_ms after t0 (up_now_ms) passes. Fills
 * s[i].done; returns 1 when all answered, 0 on timeout, -1 on an error (message on stderr). */
int up_wait_served(up_server_t *s, size_t n, const char *name, const char *want, double t0, double timeout_ms);

#endif
