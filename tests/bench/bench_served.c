/*
 * bench_served.c - when do these servers answer NAME A with ADDR? For bench_e2e.sh.
 *
 * usage: bench_served T0 TIMEOUT_S NAME ADDR PORT...
 *   T0: the start, in ms since the epoch (date +%s%N / 1e6), taken by the script just
 *   before the change it times. Prints one line per port, in the order given: the ms
 *   after T0 at which that server first answered with ADDR (asked every millisecond over
 *   UDP, udp_poll.h). Exit 0 when every server answered, 1 after TIMEOUT_S, 2 on misuse.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "udp_poll.h"

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: bench_served T0_MS TIMEOUT_S NAME ADDR PORT...\n");
        return 2;
    }
    double t0_epoch = strtod(argv[1], NULL), timeout = strtod(argv[2], NULL) * 1e3;
    size_t n = (size_t)argc - 5;
    up_server_t s[16];
    if (n > sizeof(s) / sizeof(*s)) {
        fprintf(stderr, "bench_served: at most %zu ports\n", sizeof(s) / sizeof(*s));
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        long port = strtol(argv[5 + i], NULL, 10);
        if (port <= 0 || port > 65535) {
            fprintf(stderr, "bench_served: bad port %s\n", argv[5 + i]);
            return 2;
        }
        s[i].port = (uint16_t)port;
        if ((s[i].fd = up_connect(s[i].port)) < 0) {
            fprintf(stderr, "bench_served: socket: %s\n", strerror(errno));
            return 2;
        }
    }
    /* T0 on the monotonic clock: the wall clock now, minus how long ago T0 was. */
    struct timespec w;
    clock_gettime(CLOCK_REALTIME, &w);
    double ago = (double)w.tv_sec * 1e3 + (double)w.tv_nsec / 1e6 - t0_epoch;
    double t0 = up_now_ms() - ago;
    int rc = up_wait_served(s, n, argv[3], argv[4], t0, timeout);
    for (size_t i = 0; i < n; i++)
        printf("%.0f\n", s[i].done);
    return rc == 1 ? 0 : rc == 0 ? 1 : 2;
}
