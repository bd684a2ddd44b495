/*
 * bench_failover.c - operator failover time over repeated trials: three `bindy run`
 * replicas against the API-server double; the leader is stopped with SIGTERM (graceful:
 * it releases the Lease) or SIGKILL (crash: the Lease must expire), and the time until
 * another replica holds the Lease is measured. The stopped replica is restarted before
 * the next trial. Lease timings: duration 3 s, renew deadline 2 s, retry period 1 s (the
 * seed's defaults are 15/10/2: a crash failover then takes about 15 s).
 *
 * usage: bench_failover BINDY [TRIALS]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "op_harness.h"

#define DUR 3
#define RENEW 2
#define RETRY 1

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    printf("BENCH failover_%s_min %.3f s\n", what, v[0]);
    printf("BENCH failover_%s_median %.3f s\n", what, n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
    printf("BENCH failover_%s_max %.3f s\n", what, v[n - 1]);
    printf("BENCH failover_%s_trials %d trials\n", what, n);
    fflush(stdout);
}

/* One trial: stop the current leader with sig, time the handover, restart the replica
 * and let it settle as a standby. Returns the seconds, or a negative value. */
static double trial(oph_t *h, int sig)
{
    bd_err_t err;
    int lead = oph_wait_holder(h, -1, 20);
    if (lead < 0)
        return -1;
    sleep(1); /* standbys have observed the current lease */
    double t0 = oph_now();
    oph_signal(h, lead, sig, false);
    int next = oph_wait_holder(h, lead, DUR + RETRY + 10);
    double dt = oph_now() - t0;
    oph_signal(h, lead, 0, true);
    if (next < 0 || oph_start(h, lead, DUR, RENEW, RETRY, NULL, &err) != BD_OK)
        return -1;
    return dt;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_failover BINDY [TRIALS]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 10;
    if (n < 1 || n > 100)
        n = 10;
    oph_t *h = NULL;
    bd_err_t err;
    if (oph_new(argv[1], 3, &h, &err) != BD_OK) {
        fprintf(stderr, "bench_failover: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < 3; i++)
        if (oph_start(h, i, DUR, RENEW, RETRY, NULL, &err) != BD_OK) {
            fprintf(stderr, "bench_failover: %s\n", err.msg);
            oph_free(h);
            return 1;
        }
    double graceful[100], crash[100];
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        if ((graceful[i] = trial(h, SIGTERM)) < 0)
            rc = 1;
    for (int i = 0; i < n && rc == 0; i++)
        if ((crash[i] = trial(h, SIGKILL)) < 0)
            rc = 1;
    if (rc == 0) {
        report("graceful", graceful, n);
        report("crash", crash, n);
    } else {
        fprintf(stderr, "bench_failover: a trial saw no new leader; logs in %s\n", oph_dir(h));
    }
    oph_free(h);
    return rc;
}
