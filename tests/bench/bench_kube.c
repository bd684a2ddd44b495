/*
 * bench_kube.c - 10,000 records created on the API-server double -> all journaled by a
 * `bindy run` operator process (kubeconfig mode, leader election off).
 *
 * Two paths, each with a fresh state directory:
 *   list:  the records exist before bindy starts; it lists them (pages) and journals them;
 *   watch: bindy is running and caught up; the records are created as fast as the double
 *          takes them and arrive through the watch.
 * For each: journaled events/s (first create or process start -> last record journaled),
 * the operator's CPU seconds (user + system, from wait4, over the process's life) and its
 * peak RSS. The watch path is paced by the double's own create rate (printed), so its
 * lag after the last create is bindy's share.
 *
 * usage: bench_kube BINDY SOURCE_DIR [N]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "apiserver.h"
#include "clock.h"
#include "journal.h"


static void die(const char *what, const bd_err_t *err)
{
    fprintf(stderr, "bench_kube: %s: %s\n", what, err ? err->msg : strerror(errno));
    exit(1);
}

static void create_records(bd_apiserver_t *s, const char *ns, const char *prefix, int n)
{
    bd_err_t err;
    char json[768];
    for (int i = 0; i < n; i++) {
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"ARecord\","
                 "\"metadata\":{\"name\":\"%s-%d\",\"namespace\":\"%s\",\"labels\":{\"zone\":\"example.com\"}},"
                 "\"spec\":{\"name\":\"%s-%d\",\"ipv4Addresses\":[\"10.%d.%d.%d\"],\"ttl\":300}}",
                 prefix, i, ns, prefix, i, (i >> 16) & 255, (i >> 8) & 255, i & 255);
        if (bd_apiserver_create(s, json, &err) != BD_OK)
            die("create", &err);
    }
}

static pid_t start_bindy(const char *bindy, const char *state, const char *kubeconfig, const char *ns)
{
    /* set here, not in the child: a child of this threaded process must not allocate
     * before exec (another thread may hold the allocator's lock) */
    setenv("KUBECONFIG", kubeconfig, 1);
    setenv("ENABLE_LEADER_ELECTION", "false", 1);
    setenv("BINDY_WATCH_NAMESPACES", ns, 1);
    setenv("BINDY_HEALTH_ADDR", "127.0.0.1:0", 1);
    setenv("BINDY_LOG_LEVEL", "error", 1);
    setenv("POD_NAME", "bench-operator", 1);
    pid_t pid = fork();
    if (pid < 0)
        die("fork", NULL);
    if (pid == 0) {
        execl(bindy, bindy, "run", "--state-dir", state, "--address", "127.0.0.1", "--port", "0", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Count ADDED ARecord events journaled under state until want, or the deadline. Returns
 * the time the count was reached, or a negative value. */
static double wait_journaled(const char *state, long want, double deadline)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s/journal", state);
    jnl_t *j = NULL;
    uint64_t next = 1;
    long seen = 0;
    bd_err_t err;
    jnl_opts_t o;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_RDONLY;
    while (bd_mono_s() < deadline) {
        if (j == NULL && jnl_open(dir, &o, &j, &err) != BD_OK) {
            usleep(10000);
            continue;
        }
        jnl_iter_t *it = NULL;
        if (jnl_iter_new(j, next, JNL_DECODE_NO_OBJECT, &it, &err) == BD_OK) {
            jnl_record_t *rec;
            while (jnl_iter_next(it, &rec, &err) == BD_OK && rec != NULL) {
                next = rec->ev.seq + 1;
                if (rec->ev.type == JNL_ADDED && strcmp(rec->ev.kind, "ARecord") == 0)
                    seen++;
                jnl_record_free(rec);
            }
            jnl_iter_free(it);
        }
        if (seen >= want) {
            double t = bd_mono_s();
            jnl_close(j);
            return t;
        }
        usleep(5000);
    }
    fprintf(stderr, "bench_kube: %ld of %ld records journaled before the deadline\n", seen, want);
    jnl_close(j);
    return -1;
}

static void stop_bindy(pid_t pid, struct rusage *ru)
{
    int st;
    kill(pid, SIGTERM);
    for (int i = 0; i < 1000; i++) { /* at most 10 s, then SIGKILL */
        pid_t r = wait4(pid, &st, WNOHANG, ru);
        if (r == pid)
            return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    wait4(pid, &st, 0, ru);
}

static void report(const char *path, long n, double secs, const struct rusage *ru)
{
    double cpu = (double)ru->ru_utime.tv_sec + ru->ru_utime.tv_usec / 1e6 + (double)ru->ru_stime.tv_sec +
                 ru->ru_stime.tv_usec / 1e6;
    printf("BENCH kube_%s_%ldk_journal_rate %.0f events/s\n", path, n / 1000, (double)n / secs);
    printf("BENCH kube_%s_%ldk_seconds %.3f s\n", path, n / 1000, secs);
    printf("BENCH kube_%s_%ldk_operator_cpu %.3f s\n", path, n / 1000, cpu);
    printf("BENCH kube_%s_%ldk_operator_peak_rss %.1f MiB\n", path, n / 1000, (double)ru->ru_maxrss / 1024.0);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_kube BINDY SOURCE_DIR [N]\n");
        return 2;
    }
    const char *bindy = argv[1];
    long n = argc > 3 ? atol(argv[3]) : 10000;
    char crds[4096], tmp[] = "/tmp/bench_kube.XXXXXX", kubeconfig[4200], state[4200];
    snprintf(crds, sizeof(crds), "%s/schema/crds", argv[2]);
    if (mkdtemp(tmp) == NULL)
        die("mkdtemp", NULL);

    bd_apiserver_opts_t ao;
    bd_apiserver_opts_init(&ao);
    ao.token = "bench-token";
    ao.history = (size_t)n * 3 + 1000; /* no compaction during the run */
    bd_apiserver_t *s = NULL;
    bd_err_t err;
    if (bd_apiserver_start(&ao, &s, &err) != BD_OK || bd_apiserver_load_crds(s, crds, &err) != BD_OK ||
        bd_apiserver_create(s, "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"listed\"}}",
                            &err) != BD_OK ||
        bd_apiserver_create(s, "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"watched\"}}",
                            &err) != BD_OK)
        die("API-server double", &err);
    snprintf(kubeconfig, sizeof(kubeconfig), "%s/kubeconfig", tmp);
    FILE *f = fopen(kubeconfig, "w");
    if (f == NULL)
        die(kubeconfig, NULL);
    fprintf(f,
            "apiVersion: v1\nkind: Config\ncurrent-context: bench\n"
            "clusters:\n- name: double\n  cluster:\n    server: %s\n"
            "users:\n- name: bench\n  user:\n    token: bench-token\n"
            "contexts:\n- name: bench\n  context:\n    cluster: double\n    user: bench\n",
            bd_apiserver_url(s));
    fclose(f);

    /* the double's own create rate, for scale (in-process, no HTTP) */
    double t0 = bd_mono_s();
    create_records(s, "listed", "pre", (int)n);
    double tc = bd_mono_s() - t0;
    printf("BENCH kube_double_create_rate %.0f objects/s\n", (double)n / tc);

    /* list path: everything exists before the operator starts */
    struct rusage ru;
    snprintf(state, sizeof(state), "%s/list", tmp);
    t0 = bd_mono_s();
    pid_t pid = start_bindy(bindy, state, kubeconfig, "listed");
    double t1 = wait_journaled(state, n, t0 + 120);
    stop_bindy(pid, &ru);
    if (t1 < 0)
        return 1;
    report("list", n, t1 - t0, &ru);

    /* watch path: the operator watches another namespace holding one record; once that
     * is journaled (caught up), n records are created there */
    create_records(s, "watched", "first", 1);
    snprintf(state, sizeof(state), "%s/watch", tmp);
    pid = start_bindy(bindy, state, kubeconfig, "watched");
    if (wait_journaled(state, 1, bd_mono_s() + 120) < 0) {
        stop_bindy(pid, &ru);
        return 1;
    }
    t0 = bd_mono_s();
    create_records(s, "watched", "new", (int)n);
    double tc_end = bd_mono_s();
    t1 = wait_journaled(state, n + 1, t0 + 120);
    stop_bindy(pid, &ru);
    if (t1 < 0)
        return 1;
    report("watch", n, t1 - t0, &ru);
    /* the double creates slower than bindy journals: what is bindy's own share */
    printf("BENCH kube_watch_%ldk_double_create_seconds %.3f s\n", n / 1000, tc_end - t0);
    printf("BENCH kube_watch_%ldk_lag_after_last_create %.3f s\n", n / 1000, t1 - tc_end);

    bd_apiserver_stop(s);
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_kube: could not remove %s\n", tmp);
    return 0;
}
