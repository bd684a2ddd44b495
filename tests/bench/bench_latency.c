/*
 * bench_latency.c - single-record change latency of `bindy run --local`, end to end.
 *
 * The topology of bench_e2e.sh: a primary and a secondary instance (2 replicas each,
 * deploy/examples/instances.yaml), one zone and one ARecord. The record is edited EDITS
 * times the way a user saves a file (write a temporary file, rename it over the
 * manifest); each time, the clock starts at the rename and every server is asked for the
 * record over UDP every millisecond (non-blocking sockets, one query in flight per server
 * and per millisecond) until it answers with the new address. An edit's primary figure is
 * the time until both primaries answer with it, its secondary figure the time until both
 * secondaries do. Prints p50 and p99 of each in ms, and the start-up time.
 *
 * Bounded: start-up waits at most 60 s, each edit at most 10 s (a miss fails the run).
 * RECORDS=n adds n records to the zone (an edit in a big directory).
 * TRACE=1 prints each edit's wall-clock rename time and per-server figures (to read beside
 * BINDY_LOG_LEVEL=debug logs); KEEP=1 keeps the work directory (logs, named.log files).
 *
 * usage: bench_latency BINDY SOURCE_DIR [EDITS]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sort.h"
#include "udp_poll.h"

#define NSERVERS 4 /* primary-dns/0, /1, secondary-dns/0, /1 */

static const char *const server_keys[NSERVERS] = {"dns-system/primary-dns/0", "dns-system/primary-dns/1",
                                                  "dns-system/secondary-dns/0", "dns-system/secondary-dns/1"};

static char work[] = "/tmp/bindy-latency-XXXXXX";
static pid_t bindy_pid;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void stop_bindy(void)
{
    if (bindy_pid <= 0)
        return;
    kill(bindy_pid, SIGTERM);
    /* bindy stops its named processes before it exits: give it 20 s, then kill it */
    for (int i = 0; i < 2000; i++) {
        if (waitpid(bindy_pid, NULL, WNOHANG) == bindy_pid) {
            bindy_pid = 0;
            return;
        }
        usleep(10000);
    }
    kill(bindy_pid, SIGKILL);
    waitpid(bindy_pid, NULL, 0);
    bindy_pid = 0;
}

static void cleanup(void)
{
    stop_bindy();
    if (getenv("KEEP") != NULL) {
        fprintf(stderr, "bench_latency: kept %s\n", work);
        return;
    }
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", work);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_latency: could not remove %s\n", work);
}

__attribute__((format(printf, 1, 2))) static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench_latency: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1); /* cleanup runs from atexit */
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
        die("write %s: %s", path, strerror(errno));
}

/* Save the record with address addr atomically, as editors do; returns the time of the
 * rename (the moment the new content becomes visible). */
static double save_record(const char *man, const char *addr)
{
    char tmp[512], dst[512], text[512];
    snprintf(tmp, sizeof(tmp), "%s/bench.yaml.tmp", man);
    snprintf(dst, sizeof(dst), "%s/bench.yaml", man);
    snprintf(text, sizeof(text),
             "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
             "metadata: {name: bench, namespace: dns-system, labels: {zone: example.com}}\n"
             "spec: {name: bench, ipv4Addresses: [%s]}\n",
             addr);
    write_file(tmp, text);
    double t = up_now_ms();
    if (rename(tmp, dst) != 0)
        die("rename %s: %s", dst, strerror(errno));
    return t;
}

/* ---- the run ------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, int p)
{
    bd_qsort(v, n, sizeof(*v), cmp_double);
    size_t i = (n * (size_t)p + 99) / 100;
    return v[i ? i - 1 : 0];
}

/* The DNS port of each server, from the "  dig @ADDR -p PORT ... # KEY" lines bindy
 * prints once every named runs. */
static bool read_ports(const char *out, up_server_t *s)
{
    FILE *f = fopen(out, "r");
    if (f == NULL)
        return false;
    char line[1024];
    size_t found = 0;
    while (fgets(line, sizeof(line), f)) {
        char *hash = strstr(line, "# "), *p = strstr(line, " -p ");
        if (strncmp(line, "  dig ", 6) != 0 || hash == NULL || p == NULL)
            continue;
        hash[strcspn(hash, "\n")] = '\0';
        for (size_t i = 0; i < NSERVERS; i++)
            if (strcmp(hash + 2, server_keys[i]) == 0 && s[i].port == 0) {
                s[i].port = (uint16_t)atoi(p + 4);
                found++;
            }
    }
    fclose(f);
    return found == NSERVERS;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_latency BINDY SOURCE_DIR [EDITS]\n");
        return 2;
    }
    const char *bindy = argv[1], *src = argv[2];
    int edits = argc > 3 ? atoi(argv[3]) : 50;
    bool trace = getenv("TRACE") != NULL;
    if (edits < 1 || edits > 10000)
        die("EDITS must be 1..10000");
    if (mkdtemp(work) == NULL)
        die("mkdtemp: %s", strerror(errno));
    atexit(cleanup);
    char man[600], state[600], out[600], log[600], path[700], cmd[2048];
    snprintf(man, sizeof(man), "%s/m", work);
    snprintf(state, sizeof(state), "%s/s", work);
    snprintf(out, sizeof(out), "%s/out", work);
    snprintf(log, sizeof(log), "%s/log", work);
    if (mkdir(man, 0755) != 0)
        die("mkdir: %s", strerror(errno));
    snprintf(cmd, sizeof(cmd), "cp '%s/deploy/examples/instances.yaml' '%s/00-instances.yaml'", src, man);
    if (system(cmd) != 0)
        die("cannot copy the example instances");
    snprintf(path, sizeof(path), "%s/01-zone.yaml", man);
    write_file(path, "apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\n"
                     "metadata: {name: example-com, namespace: dns-system}\n"
                     "spec:\n  zoneName: example.com\n  ttl: 3600\n"
                     "  soaRecord: {primaryNs: ns1.example.com., adminEmail: admin.example.com., serial: 1,\n"
                     "              refresh: 3600, retry: 600, expire: 604800, negativeTtl: 86400}\n"
                     "  nameServers:\n  - {hostname: ns1.example.com., ipv4Address: 192.0.2.1}\n"
                     "  bind9InstancesFrom:\n  - selector: {matchLabels: {dns-role: primary}}\n"
                     "  - selector: {matchLabels: {dns-role: secondary}}\n"
                     "  recordsFrom:\n  - selector: {matchLabels: {zone: example.com}}\n");
    save_record(man, "198.51.100.0");
    /* RECORDS=n: n more records in the zone, to see what an edit costs in a big directory */
    long extra = getenv("RECORDS") ? atol(getenv("RECORDS")) : 0;
    if (extra > 0) {
        snprintf(path, sizeof(path), "%s/02-records.yaml", man);
        FILE *f = fopen(path, "w");
        for (long i = 0; f && i < extra && i < 1000000; i++)
            fprintf(f,
                    "---\napiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
                    "metadata: {name: r%ld, namespace: dns-system, labels: {zone: example.com}}\n"
                    "spec: {name: r%ld, ipv4Addresses: [10.%ld.%ld.%ld]}\n",
                    i, i, (i >> 16) & 255, (i >> 8) & 255, i & 255);
        if (f == NULL || fclose(f) != 0)
            die("write %s: %s", path, strerror(errno));
    }

    double t_start = up_now_ms();
    bindy_pid = fork();
    if (bindy_pid < 0)
        die("fork: %s", strerror(errno));
    if (bindy_pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), l = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || l < 0 || dup2(o, 1) < 0 || dup2(l, 2) < 0)
            _exit(126);
        execl(bindy, bindy, "run", "--local", man, "--state-dir", state, (char *)NULL);
        _exit(127);
    }
    up_server_t s[NSERVERS] = {0};
    for (int i = 0; i < 600 && !read_ports(out, s); i++) {
        if (waitpid(bindy_pid, NULL, WNOHANG) == bindy_pid) {
            bindy_pid = 0;
            die("bindy exited during start-up (log: %s; set KEEP=1 to keep it)", log);
        }
        usleep(100000);
    }
    for (size_t i = 0; i < NSERVERS; i++) {
        if (s[i].port == 0)
            die("bindy did not list %s within 60 s", server_keys[i]);
        if ((s[i].fd = up_connect(s[i].port)) < 0)
            die("udp socket: %s", strerror(errno));
    }
    if (up_wait_served(s, NSERVERS, "bench.example.com.", "198.51.100.0", t_start, 60000) != 1)
        die("not every server answered within 60 s of the start");
    printf("BENCH e2e_change_latency_startup %.0f ms\n", up_now_ms() - t_start);
    fflush(stdout);

    double *prim = calloc((size_t)edits, sizeof(double)), *sec = calloc((size_t)edits, sizeof(double));
    if (prim == NULL || sec == NULL)
        die("out of memory");
    for (int e = 0; e < edits; e++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "198.51.%d.%d", 101 + e / 250, 1 + e % 250);
        double t0 = save_record(man, addr), wall_rename = wall_now();
        if (up_wait_served(s, NSERVERS, "bench.example.com.", addr, t0, 10000) != 1)
            die("edit %d (%s) not served everywhere within 10 s", e, addr);
        if (trace) /* the wall clock, to line edits up with bindy's and named's logs */
            fprintf(stderr, "edit %d: renamed at %.3f s (wall clock); served after %.1f %.1f %.1f %.1f ms\n", e,
                    wall_rename, s[0].done, s[1].done, s[2].done, s[3].done);
        prim[e] = s[0].done > s[1].done ? s[0].done : s[1].done;
        sec[e] = s[2].done > s[3].done ? s[2].done : s[3].done;
        usleep(20000); /* let the servers settle (the NOTIFYs of the last change) */
    }
    printf("BENCH e2e_change_latency_primary_p50 %.1f ms\n", pct(prim, (size_t)edits, 50));
    printf("BENCH e2e_change_latency_primary_p99 %.1f ms\n", pct(prim, (size_t)edits, 99));
    printf("BENCH e2e_change_latency_secondary_p50 %.1f ms\n", pct(sec, (size_t)edits, 50));
    printf("BENCH e2e_change_latency_secondary_p99 %.1f ms\n", pct(sec, (size_t)edits, 99));
    fflush(stdout);
    free(prim);
    free(sec);
    for (size_t i = 0; i < NSERVERS; i++)
        close(s[i].fd);
    return 0;
}
