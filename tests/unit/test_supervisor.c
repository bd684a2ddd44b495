/*
 * test_supervisor.c - the local-mode supervisor against real named processes (loopback,
 * free ports, directories under /tmp), and dig to check that they answer.
 *
 * Nothing is skipped: if named (or dig) cannot be run, the tests fail and say why. Every
 * wait is bounded (run_until).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "supervisor.h"

#define START_TIMEOUT 30.0
#define MAX_EVENTS 1024
#define MAX_PIDS 256

/* The test's supervisor and base directory, for the teardown after a failed test. */
static loc_sup_t *g_sup;
static char g_base[256];
static char *g_captured; /* captured stderr, freed by the teardown */

/* ---- recording state changes ---- */

typedef struct {
    char key[64];
    loc_state_t state;
    pid_t pid;
    unsigned restarts;
    double backoff;
    double t; /* ev_time() */
} event_t;

static event_t g_events[MAX_EVENTS];
static size_t g_nevents;
static pid_t g_pids[MAX_PIDS];
static size_t g_npids;
static int g_stopped_calls;

static void rec_reset(void)
{
    g_nevents = 0;
    g_npids = 0;
    g_stopped_calls = 0;
}

static void on_state(const loc_proc_info_t *info, void *arg)
{
    if (g_nevents < MAX_EVENTS) {
        event_t *e = &g_events[g_nevents++];
        snprintf(e->key, sizeof(e->key), "%s", info->key);
        e->state = info->state;
        e->pid = info->pid;
        e->restarts = info->restarts;
        e->backoff = info->backoff;
        e->t = ev_time();
    }
    if (info->pid > 0) {
        bool seen = false;
        for (size_t i = 0; i < g_npids && !seen; i++)
            seen = g_pids[i] == info->pid;
        if (!seen && g_npids < MAX_PIDS)
            g_pids[g_npids++] = info->pid;
    }
}

static void on_stopped(loc_sup_t *sup, void *arg)
{
    g_stopped_calls++;
}

static size_t count_events(const char *key, loc_state_t state)
{
    size_t n = 0;
    for (size_t i = 0; i < g_nevents; i++)
        if (strcmp(g_events[i].key, key) == 0 && g_events[i].state == state)
            n++;
    return n;
}

/* ---- running the loop, bounded ---- */

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
}

/* Run the default loop until cond(arg) holds or timeout seconds pass; returns cond. */
static bool run_until(bool (*cond)(void *), void *arg, double timeout)
{
    struct ev_loop *loop = EV_DEFAULT;
    ev_timer tick;
    bool ok;
    double deadline = ev_time() + timeout;

    ev_timer_init(&tick, tick_cb, 0.02, 0.02);
    ev_timer_start(loop, &tick);
    while (!(ok = cond(arg)) && ev_time() < deadline)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &tick);
    return ok;
}

static bool always_false(void *arg)
{
    return false;
}

static void run_for(double seconds)
{
    (void)run_until(always_false, NULL, seconds);
}

typedef struct {
    loc_sup_t *sup;
    const char *key;
    loc_state_t state;
    unsigned min_restarts;
    pid_t not_pid;    /* the pid must differ from this one */
    size_t min_count; /* at least this many events of `state` recorded for key */
} wait_t;

static bool state_reached(void *arg)
{
    wait_t *w = arg;
    loc_proc_info_t info;
    if (loc_sup_get(w->sup, w->key, &info) != 0)
        return false;
    return info.state == w->state && info.restarts >= w->min_restarts &&
           (w->not_pid == 0 || info.pid != w->not_pid) &&
           count_events(w->key, w->state) >= w->min_count;
}

/* Fail with named's own words when `key` does not reach the state in time. */
static void wait_state(wait_t *w, double timeout)
{
    loc_proc_info_t info;
    if (run_until(state_reached, w, timeout))
        return;
    if (loc_sup_get(w->sup, w->key, &info) != 0)
        fail_msg("named for %s: unknown to the supervisor while waiting for %s", w->key,
                 loc_state_name(w->state));
    char path[512], tail[2048] = "";
    snprintf(path, sizeof(path), "%s/named.log", info.dir);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        if (fseek(f, 0, SEEK_END) == 0) {
            long size = ftell(f);
            (void)fseek(f, size > 2000 ? size - 2000 : 0, SEEK_SET);
            size_t got = fread(tail, 1, sizeof(tail) - 1, f);
            tail[got] = '\0';
        }
        fclose(f);
    }
    fail_msg("named for %s did not reach %s within %.0f s (state %s, pid %d, restarts %u); "
             "last exit: %s; end of %s:\n%s",
             w->key, loc_state_name(w->state), timeout, loc_state_name(info.state),
             (int)info.pid, info.restarts, info.last_exit[0] ? info.last_exit : "(none)", path,
             tail);
}

static void wait_running(loc_sup_t *sup, const char *key)
{
    wait_t w = {.sup = sup, .key = key, .state = LOC_STATE_RUNNING, .min_count = 1};
    wait_state(&w, START_TIMEOUT);
}

static bool stopped_fired(void *arg)
{
    return g_stopped_calls > 0;
}

static bool pid_gone(pid_t pid)
{
    return kill(pid, 0) == -1 && errno == ESRCH;
}

/* stop_all, wait for its callback, then check that no process we saw is left. */
static void stop_all_and_check(loc_sup_t *sup)
{
    g_stopped_calls = 0;
    assert_int_equal(loc_sup_stop_all(sup, on_stopped, NULL), 0);
    assert_int_equal(g_stopped_calls, 0); /* never from inside the call */
    if (!run_until(stopped_fired, NULL, 30.0))
        fail_msg("loc_sup_stop_all: callback did not fire within 30 s (%zu processes left)",
                 loc_sup_count(sup));
    assert_int_equal(g_stopped_calls, 1);
    assert_int_equal(loc_sup_count(sup), 0);
    for (size_t i = 0; i < g_npids; i++)
        if (!pid_gone(g_pids[i]))
            fail_msg("pid %d (a named we started) still exists after stop_all", (int)g_pids[i]);
    run_for(0.05);
    assert_int_equal(g_stopped_calls, 1);
}

/* ---- files and directories ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)remove(path);
    return 0;
}

static void rm_rf(const char *dir)
{
    if (getenv("BINDY_KEEP_NAMED_DIR") == NULL)
        (void)nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_base(char *base, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0' || strlen(tmp) > 200)
        tmp = "/tmp";
    snprintf(base, cap, "%s/bindy-sup-XXXXXX", tmp);
    if (mkdtemp(base) == NULL)
        fail_msg("mkdtemp %s: %s", base, strerror(errno));
    snprintf(g_base, sizeof(g_base), "%s", base);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

static void write_script(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, 0755), 0);
}

/* ---- named configurations ---- */

static const char keys_conf[] =
    "key \"bindy-rndc\" {\n"
    "    algorithm hmac-sha256;\n"
    "    secret \"c3VwZXJ2aXNvci10ZXN0LXNlY3JldC0zMi1ieXRlcyE=\";\n"
    "};\n";

static const char zone_db[] = "$TTL 300\n"
                              "@ IN SOA ns1 hostmaster 2024010101 3600 600 86400 300\n"
                              "@ IN NS ns1\n"
                              "ns1 IN A 127.0.0.1\n";

typedef struct {
    char key[64];
    char dir[300];
    uint16_t port, ctl;
    char conf[4096];
    loc_file_t files[2];
    size_t nfiles;
    loc_proc_spec_t spec;
} proc_cfg_t;

/* A small named.conf: loopback only, our ports, version string, optional zone. */
static void cfg_init(proc_cfg_t *c, const char *base, const char *key, const char *sub)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->key, sizeof(c->key), "%s", key);
    snprintf(c->dir, sizeof(c->dir), "%s/%s", base, sub);
    assert_int_equal(loc_sup_alloc_port(&c->port), 0);
    assert_int_equal(loc_sup_alloc_port(&c->ctl), 0);
    assert_int_not_equal(c->port, c->ctl);
}

static void cfg_render(proc_cfg_t *c, const char *version, bool with_zone, const char *extra)
{
    snprintf(c->conf, sizeof(c->conf),
             "options {\n"
             "    directory \"%s\";\n"
             "    pid-file none;\n"
             "    session-keyfile none;\n"
             "    listen-on port %u { 127.0.0.1; };\n"
             "    listen-on-v6 { none; };\n"
             "    recursion no;\n"
             "    dnssec-validation no;\n"
             "    version \"%s\";\n"
             "};\n"
             "include \"%s/keys.conf\";\n"
             "controls { inet 127.0.0.1 port %u allow { 127.0.0.1; } keys { \"bindy-rndc\"; }; };\n"
             "%s%s",
             c->dir, (unsigned)c->port, version, c->dir, (unsigned)c->ctl,
             with_zone ? "zone \"example.test\" { type primary; file \"example.test.db\"; };\n"
                       : "",
             extra != NULL ? extra : "");
    c->nfiles = 0;
    c->files[c->nfiles++] = (loc_file_t){.name = "keys.conf", .text = keys_conf};
    if (with_zone)
        c->files[c->nfiles++] = (loc_file_t){.name = "example.test.db", .text = zone_db};
    c->spec = (loc_proc_spec_t){.dir = c->dir,
                                .conf = c->conf,
                                .files = c->files,
                                .nfiles = c->nfiles,
                                .dns_port = c->port,
                                .ctl_port = c->ctl};
}

static void ensure_ok(loc_sup_t *sup, proc_cfg_t *c)
{
    bd_err_t err;
    bd_err_clear(&err);
    int rc = loc_sup_ensure(sup, c->key, &c->spec, &err);
    if (rc != 0)
        fail_msg("loc_sup_ensure %s: %s: %s", c->key, bd_strerror(rc), err.msg);
}

static loc_sup_t *new_sup(loc_sup_opts_t *o)
{
    loc_sup_t *sup = NULL;
    bd_err_t err;
    bd_err_clear(&err);
    o->on_state = on_state;
    int rc = loc_sup_new(EV_DEFAULT, o, &sup, &err);
    if (rc != 0)
        fail_msg("cannot create the supervisor (is named installed?): %s: %s", bd_strerror(rc),
                 err.msg);
    rec_reset();
    g_sup = sup;
    return sup;
}

/* ---- dig ---- */

/* Run dig (bounded by its own +time/+tries) and return its stdout (+short) in out. */
static void dig(uint16_t port, const char *name, const char *type, const char *cls, char *out,
                size_t cap)
{
    char portstr[16];
    int pfd[2];
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)port);
    out[0] = '\0';
    if (pipe2(pfd, O_CLOEXEC) != 0)
        fail_msg("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(pfd[1], 1);
        execlp("dig", "dig", "@127.0.0.1", "-p", portstr, name, type, cls, "+short", "+time=1",
               "+tries=2", (char *)NULL);
        static const char msg[] = "test_supervisor: cannot execute dig (install "
                                  "bind9-dnsutils)\n";
        (void)!write(2, msg, sizeof(msg) - 1);
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0;
    for (;;) {
        ssize_t n = read(pfd[0], out + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len + 1 >= cap)
            break;
    }
    out[len] = '\0';
    close(pfd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 127)
        fail_msg("dig could not run (status 0x%x)", (unsigned)status);
    /* trim the newline */
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r'))
        out[--len] = '\0';
}

static void expect_version(uint16_t port, const char *want)
{
    char out[512], quoted[256];
    snprintf(quoted, sizeof(quoted), "\"%s\"", want);
    dig(port, "version.bind", "txt", "chaos", out, sizeof(out));
    if (strcmp(out, quoted) != 0)
        fail_msg("dig @127.0.0.1 -p %u version.bind txt chaos: got \"%s\", want %s",
                 (unsigned)port, out, quoted);
}

static bool has_zone(uint16_t port)
{
    char out[512];
    dig(port, "example.test", "soa", "in", out, sizeof(out));
    return strstr(out, "2024010101") != NULL;
}

/* ---- capturing our own log (stderr) ---- */

static int g_saved_stderr = -1;

static void capture_start(const char *path)
{
    fflush(stderr);
    g_saved_stderr = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(g_saved_stderr >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
}

/* Restore stderr, echo what was captured, return it (free()). */
static char *capture_stop(const char *path)
{
    fflush(stderr);
    dup2(g_saved_stderr, 2);
    close(g_saved_stderr);
    g_saved_stderr = -1;
    char *text = read_file(path);
    assert_non_null(text);
    fputs(text, stderr);
    return text;
}

/* ---- tests ---- */

static void each_cb(const loc_proc_info_t *info, void *arg)
{
    char *out = arg;
    size_t len = strlen(out);
    snprintf(out + len, 512 - len, "%s=%s,", info->key, loc_state_name(info->state));
}

/* Two processes reach running and both answer; files and directories as documented. */
static void test_two_running(void **state)
{
    char base[256];
    proc_cfg_t a, b;
    loc_sup_opts_t o = {.log_max_bytes = 4096};
    struct stat st;
    char path[512];

    make_base(base, sizeof(base));
    loc_sup_t *sup = new_sup(&o);
    cfg_init(&b, base, "dns-system/secondary-dns/0", "secondary-0");
    cfg_render(&b, "bindy-b", false, NULL);
    cfg_init(&a, base, "dns-system/primary-dns/0", "primary-0");
    cfg_render(&a, "bindy-a", false, NULL);
    ensure_ok(sup, &b);
    ensure_ok(sup, &a);
    assert_int_equal(loc_sup_count(sup), 2);
    wait_running(sup, a.key);
    wait_running(sup, b.key);

    expect_version(a.port, "bindy-a");
    expect_version(b.port, "bindy-b");

    /* Key order, not insertion order. */
    char listing[512] = "";
    assert_int_equal(loc_sup_each(sup, each_cb, listing), 0);
    assert_string_equal(listing,
                        "dns-system/primary-dns/0=running,dns-system/secondary-dns/0=running,");
    loc_proc_info_t info;
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_true(info.pid > 0);
    assert_int_equal(info.dns_port, a.port);
    assert_int_equal(info.ctl_port, a.ctl);
    assert_int_equal(info.restarts, 0);
    assert_int_equal(loc_sup_get(sup, "nope", &info), BD_ENOTFOUND);

    /* Directory 0750, files 0600, no temporary file left. */
    assert_int_equal(stat(a.dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0750);
    snprintf(path, sizeof(path), "%s/keys.conf", a.dir);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof(path), "%s/.named.conf.tmp", a.dir);
    assert_int_not_equal(stat(path, &st), 0);

    /* Unchanged spec: nothing happens. */
    size_t before = g_nevents;
    ensure_ok(sup, &a);
    run_for(0.3);
    assert_int_equal(g_nevents, before);

    /* The 4 KiB log cap (checked every 2 s): the end moves to named.log.1. */
    snprintf(path, sizeof(path), "%s/named.log.1", a.dir);
    run_for(2.5);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/named.log", a.dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size < 4096);
    expect_version(a.port, "bindy-a"); /* still serving */

    stop_all_and_check(sup);
    /* STOPPED was the last state reported for each. */
    assert_int_equal(count_events(a.key, LOC_STATE_STOPPED), 1);
    assert_int_equal(count_events(b.key, LOC_STATE_STOPPED), 1);
    bd_err_t err;
    assert_int_equal(loc_sup_ensure(sup, a.key, &a.spec, &err), BD_ECANCELED);
    assert_int_equal(loc_sup_stop_all(sup, on_stopped, NULL), BD_EBUSY);
    loc_sup_free(sup);
    g_sup = NULL;
    /* Directories are kept unless asked. */
    assert_int_equal(stat(a.dir, &st), 0);
    rm_rf(base);
}

/* kill -9: restarted after the back-off, answers again, restarts == 1. */
static void test_kill9_restart(void **state)
{
    char base[256];
    proc_cfg_t a;
    loc_sup_opts_t o = {.backoff_min = 0.3, .backoff_max = 2.0};

    make_base(base, sizeof(base));
    loc_sup_t *sup = new_sup(&o);
    cfg_init(&a, base, "dns-system/primary-dns/0", "p0");
    cfg_render(&a, "bindy-k9", false, NULL);
    ensure_ok(sup, &a);
    wait_running(sup, a.key);
    expect_version(a.port, "bindy-k9");

    loc_proc_info_t info;
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    pid_t old = info.pid;
    assert_int_equal(kill(old, SIGKILL), 0);

    wait_t w = {.sup = sup,
                .key = a.key,
                .state = LOC_STATE_RUNNING,
                .min_restarts = 1,
                .not_pid = old,
                .min_count = 2};
    wait_state(&w, START_TIMEOUT);
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_int_equal(info.restarts, 1);
    assert_true(info.pid != old && info.pid > 0);
    assert_non_null(strstr(info.last_exit, "killed by signal 9"));
    assert_int_equal(count_events(a.key, LOC_STATE_BACKOFF), 1);
    /* The back-off lasted at least backoff_min. */
    double t_backoff = 0, t_start = 0;
    for (size_t i = 0; i < g_nevents; i++) {
        if (g_events[i].state == LOC_STATE_BACKOFF)
            t_backoff = g_events[i].t;
        if (g_events[i].state == LOC_STATE_STARTING && t_backoff > 0 && t_start == 0)
            t_start = g_events[i].t;
    }
    assert_true(t_start - t_backoff >= 0.3 - 0.05);
    assert_true(pid_gone(old));
    expect_version(a.port, "bindy-k9");

    stop_all_and_check(sup);
    loc_sup_free(sup);
    g_sup = NULL;
    rm_rf(base);
}

static bool restarts_at_least(void *arg)
{
    wait_t *w = arg;
    loc_proc_info_t info;
    return loc_sup_get(w->sup, w->key, &info) == 0 && info.restarts >= w->min_restarts &&
           info.state == LOC_STATE_BACKOFF;
}

/* A configuration named rejects: crash loop with growing delays, logged with named's error;
 * a fixed configuration starts at once. */
static void test_bad_config_backoff(void **state)
{
    char base[256], cap_path[300];
    proc_cfg_t a;
    loc_sup_opts_t o = {.backoff_min = 0.2, .backoff_max = 5.0};

    make_base(base, sizeof(base));
    snprintf(cap_path, sizeof(cap_path), "%s/stderr.txt", base);
    loc_sup_t *sup = new_sup(&o);
    cfg_init(&a, base, "dns-system/broken-dns/0", "broken-0");
    cfg_render(&a, "bindy-bad", false, "zone \"bad.test\" { type primary; file \"x.db\" }\n");

    capture_start(cap_path);
    ensure_ok(sup, &a);
    wait_t w = {.sup = sup, .key = a.key, .min_restarts = 3};
    bool ok = run_until(restarts_at_least, &w, START_TIMEOUT);
    char *log = g_captured = capture_stop(cap_path);
    if (!ok)
        fail_msg("named with a broken configuration did not exit three times in %.0f s",
                 START_TIMEOUT);

    /* Delays 0.2, 0.4, 0.8: recorded, and actually waited. */
    double delays[3], waited[3];
    size_t nd = 0;
    for (size_t i = 0; i < g_nevents && nd < 3; i++) {
        if (g_events[i].state != LOC_STATE_BACKOFF)
            continue;
        delays[nd] = g_events[i].backoff;
        waited[nd] = -1;
        for (size_t j = i + 1; j < g_nevents; j++)
            if (g_events[j].state == LOC_STATE_STARTING) {
                waited[nd] = g_events[j].t - g_events[i].t;
                break;
            }
        nd++;
    }
    assert_int_equal(nd, 3);
    assert_true(delays[0] > 0.19 && delays[0] < 0.21);
    assert_true(delays[1] > 0.39 && delays[1] < 0.41);
    assert_true(delays[2] > 0.79 && delays[2] < 0.81);
    assert_true(waited[0] >= 0.15 && waited[1] >= 0.35 && waited[1] > waited[0]);

    /* The log line names the key, the status, the delay and named's own error. */
    const char *line = strstr(log, "named for dns-system/broken-dns/0 exited with status 1; "
                                   "restarting in 0.4 s");
    if (line == NULL)
        fail_msg("no restart log line for the key in:\n%s", log);
    const char *eol = strchr(line, '\n');
    assert_non_null(eol);
    char one[4096];
    snprintf(one, sizeof(one), "%.*s", (int)(eol - line), line);
    if (strstr(one, "missing ';'") == NULL || strstr(one, "named.conf") == NULL)
        fail_msg("the restart log line lacks named's error: %s", one);
    free(log);
    g_captured = NULL;
    loc_proc_info_t info;
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_non_null(strstr(info.last_exit, "exited with status 1"));
    assert_non_null(strstr(info.last_exit, "missing ';'"));

    /* Fixed configuration while in BACKOFF: started now (not after the 0.8 s left), the
     * restart count kept. */
    cfg_render(&a, "bindy-fixed", false, NULL);
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_int_equal(info.state, LOC_STATE_BACKOFF);
    ensure_ok(sup, &a);
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_int_equal(info.state, LOC_STATE_STARTING);
    wait_running(sup, a.key);
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_true(info.restarts >= 3);
    expect_version(a.port, "bindy-fixed");

    /* Remove with its directory. */
    g_stopped_calls = 0;
    assert_int_equal(loc_sup_remove(sup, a.key, LOC_RM_DIR), 0);
    assert_int_equal(loc_sup_remove(sup, "nope", 0), BD_ENOTFOUND);
    for (double dl = ev_time() + 20; loc_sup_count(sup) > 0 && ev_time() < dl;)
        run_for(0.05);
    assert_int_equal(loc_sup_count(sup), 0);
    assert_int_equal(count_events(a.key, LOC_STATE_STOPPED), 1);
    struct stat st;
    assert_int_not_equal(stat(a.dir, &st), 0);

    stop_all_and_check(sup);
    loc_sup_free(sup);
    g_sup = NULL;
    rm_rf(base);
}

static bool zone_served(void *arg)
{
    return has_zone(*(uint16_t *)arg);
}

/* Changed configuration: SIGHUP, same pid, new zone served; a rejected reload keeps the old
 * configuration; a change during start-up is applied once named runs. */
static void test_reload(void **state)
{
    char base[256];
    proc_cfg_t a;
    loc_sup_opts_t o = {.backoff_min = 0.2};
    loc_proc_info_t info;

    make_base(base, sizeof(base));
    loc_sup_t *sup = new_sup(&o);
    cfg_init(&a, base, "dns-system/primary-dns/0", "p0");

    /* v1 then at once v2: the second change arrives while STARTING; the SIGHUP waits. */
    cfg_render(&a, "v1", false, NULL);
    ensure_ok(sup, &a);
    cfg_render(&a, "v2", false, NULL);
    ensure_ok(sup, &a);
    wait_t w = {.sup = sup, .key = a.key, .state = LOC_STATE_RUNNING, .min_count = 2};
    wait_state(&w, START_TIMEOUT);
    assert_int_equal(count_events(a.key, LOC_STATE_RELOADING), 1);
    expect_version(a.port, "v2");
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    pid_t pid = info.pid;
    assert_int_equal(info.restarts, 0);
    assert_false(has_zone(a.port));

    /* A new static zone (and its file). */
    cfg_render(&a, "v3", true, NULL);
    ensure_ok(sup, &a);
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_int_equal(info.state, LOC_STATE_RELOADING);
    w.min_count = 3;
    wait_state(&w, START_TIMEOUT);
    if (!run_until(zone_served, &a.port, 5.0))
        fail_msg("example.test not served after the reload");
    expect_version(a.port, "v3");
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_int_equal(info.pid, pid); /* reloaded, not restarted */
    assert_int_equal(info.restarts, 0);
    assert_string_equal(info.reload_error, "");

    /* A configuration named rejects: it keeps serving the previous one. */
    cfg_render(&a, "v4", true, "zone \"bad.test\" { type primary; file \"x.db\" }\n");
    ensure_ok(sup, &a);
    w.min_count = 4;
    wait_state(&w, START_TIMEOUT);
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_int_equal(info.pid, pid);
    if (strstr(info.reload_error, "missing ';'") == NULL)
        fail_msg("reload_error lacks named's error: \"%s\"", info.reload_error);
    assert_true(has_zone(a.port));
    expect_version(a.port, "v3");

    /* Dropping the zone removes its file too. */
    cfg_render(&a, "v5", false, NULL);
    ensure_ok(sup, &a);
    w.min_count = 5;
    wait_state(&w, START_TIMEOUT);
    expect_version(a.port, "v5");
    assert_false(has_zone(a.port));
    char path[512];
    struct stat st;
    snprintf(path, sizeof(path), "%s/example.test.db", a.dir);
    assert_int_not_equal(stat(path, &st), 0);
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_string_equal(info.reload_error, "");
    assert_int_equal(info.pid, pid);

    stop_all_and_check(sup);
    loc_sup_free(sup);
    g_sup = NULL;
    rm_rf(base);
}

/* A "named" that ignores SIGTERM: stop_all sends SIGKILL after the grace period. */
static void test_stop_grace_sigkill(void **state)
{
    char base[256], fake[300];
    proc_cfg_t a, b;

    make_base(base, sizeof(base));
    snprintf(fake, sizeof(fake), "%s/fake-named", base);
    write_script(fake, "#!/bin/sh\ntrap '' TERM\necho running\nexec sleep 1000\n");

    loc_sup_opts_t o = {.named_path = fake, .stop_grace = 0.5};
    loc_sup_t *sup = new_sup(&o);
    cfg_init(&a, base, "x/stubborn/0", "s0");
    cfg_render(&a, "unused", false, NULL);
    cfg_init(&b, base, "x/stubborn/1", "s1");
    cfg_render(&b, "unused", false, NULL);
    ensure_ok(sup, &a);
    ensure_ok(sup, &b);
    wait_running(sup, a.key);
    wait_running(sup, b.key);
    double t0 = ev_time();
    stop_all_and_check(sup);
    assert_true(ev_time() - t0 >= 0.45);
    assert_int_equal(count_events(a.key, LOC_STATE_STOPPING), 1);
    loc_sup_free(sup);
    g_sup = NULL;
    rm_rf(base);
}

static bool log_has(void *arg)
{
    const char **pv = arg;
    char *text = read_file(pv[0]);
    bool found = text != NULL && strstr(text, pv[1]) != NULL;
    free(text);
    return found;
}

/* A process that read a bad configuration, then got a fixed one while STARTING, restarts
 * at once when it fails (not after backoff_min): it never ran the current files. A fake
 * named (a shell script) makes the order deterministic. */
static void test_change_while_starting(void **state)
{
    char base[256], fake[300], log_path[400];
    proc_cfg_t a;
    loc_proc_info_t info;

    make_base(base, sizeof(base));
    snprintf(fake, sizeof(fake), "%s/fake-named", base);
    write_script(fake, "#!/bin/sh\n"
                       "c=$(cat named.conf)\n"
                       "echo read config\n"
                       "sleep 0.5\n"
                       "case \"$c\" in *good*) echo running; exec sleep 1000;; esac\n"
                       "echo bad config; exit 1\n");
    loc_sup_opts_t o = {.named_path = fake, .backoff_min = 3.0};
    loc_sup_t *sup = new_sup(&o);
    cfg_init(&a, base, "x/flip/0", "f0");
    cfg_render(&a, "bad", false, NULL);
    ensure_ok(sup, &a);
    snprintf(log_path, sizeof(log_path), "%s/named.log", a.dir);
    const char *pv[2] = {log_path, "read config"};
    if (!run_until(log_has, pv, 10.0))
        fail_msg("the fake named did not start");
    cfg_render(&a, "good", false, NULL);
    ensure_ok(sup, &a);
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_int_equal(info.state, LOC_STATE_STARTING);
    wait_running(sup, a.key);
    assert_int_equal(loc_sup_get(sup, a.key, &info), 0);
    assert_int_equal(info.restarts, 1);
    assert_non_null(strstr(info.last_exit, "bad config"));
    double t_backoff = 0, t_start = 0;
    for (size_t i = 0; i < g_nevents; i++) {
        if (g_events[i].state == LOC_STATE_BACKOFF)
            t_backoff = g_events[i].t;
        if (g_events[i].state == LOC_STATE_STARTING && t_backoff > 0 && t_start == 0)
            t_start = g_events[i].t;
    }
    assert_true(t_backoff > 0 && t_start - t_backoff < 1.0);
    assert_int_equal(count_events(a.key, LOC_STATE_RELOADING), 0); /* read at start-up */
    stop_all_and_check(sup);
    loc_sup_free(sup);
    g_sup = NULL;
    rm_rf(base);
}

/* Options and arguments that must be refused. */
static void test_errors(void **state)
{
    loc_sup_t *sup = NULL;
    bd_err_t err;
    struct ev_loop *other = ev_loop_new(EVFLAG_AUTO);

    assert_int_equal(loc_sup_new(other, NULL, &sup, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "default loop"));
    assert_null(sup);
    ev_loop_destroy(other);
    loc_sup_opts_t bad = {.named_path = "/nonexistent/named"};
    assert_int_equal(loc_sup_new(EV_DEFAULT, &bad, &sup, &err), BD_ENOTFOUND);
    assert_null(sup);
    loc_sup_opts_t inv = {.backoff_min = 5, .backoff_max = 1};
    assert_int_equal(loc_sup_new(EV_DEFAULT, &inv, &sup, &err), BD_EINVAL);

    loc_sup_opts_t o = {0};
    sup = new_sup(&o);
    loc_file_t f = {.name = "../x", .text = ""};
    loc_proc_spec_t spec = {.dir = "/tmp/bindy-sup-never", .conf = "", .files = &f, .nfiles = 1};
    assert_int_equal(loc_sup_ensure(sup, "k", &spec, &err), BD_EINVAL);
    spec.nfiles = 0;
    spec.dir = "relative";
    assert_int_equal(loc_sup_ensure(sup, "k", &spec, &err), BD_EINVAL);
    spec.dir = "/tmp/bindy-sup-never";
    assert_int_equal(loc_sup_ensure(sup, "", &spec, &err), BD_EINVAL);
    assert_int_equal(loc_sup_count(sup), 0);
    stop_all_and_check(sup); /* nothing to stop: the callback still fires, from the loop */
    loc_sup_free(sup);
    g_sup = NULL;
}

/* SIGKILL the process that runs a supervisor: its named dies too (PR_SET_PDEATHSIG). */
static void test_pdeathsig(void **state)
{
    char base[256];
    int pfd[2];

    make_base(base, sizeof(base));
    /* Orphans are re-parented to us, so we can reap named and see how it died. */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        /* The supervisor process: one named, then report its pid and run forever. */
        close(pfd[0]);
        struct ev_loop *loop = EV_DEFAULT;
        ev_loop_fork(loop);
        ev_run(loop, EVRUN_NOWAIT);
        loc_sup_t *sup = NULL;
        bd_err_t err;
        loc_sup_opts_t o = {.on_state = on_state};
        int32_t report = -1;
        if (loc_sup_new(loop, &o, &sup, &err) == 0) {
            proc_cfg_t a;
            cfg_init(&a, base, "dns-system/orphan-check/0", "o0");
            cfg_render(&a, "orphan", false, NULL);
            loc_proc_info_t info;
            if (loc_sup_ensure(sup, a.key, &a.spec, &err) == 0) {
                wait_t w = {.sup = sup, .key = a.key, .state = LOC_STATE_RUNNING, .min_count = 1};
                if (run_until(state_reached, &w, START_TIMEOUT) &&
                    loc_sup_get(sup, a.key, &info) == 0)
                    report = (int32_t)info.pid;
            }
        }
        (void)!write(pfd[1], &report, sizeof(report));
        for (;;)
            ev_run(loop, 0), pause();
    }
    close(pfd[1]);
    int32_t named_pid = -1;
    struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
    if (poll(&pf, 1, (int)(START_TIMEOUT * 1000 + 5000)) == 1)
        (void)!read(pfd[0], &named_pid, sizeof(named_pid));
    close(pfd[0]);
    if (named_pid <= 0) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        (void)prctl(PR_SET_CHILD_SUBREAPER, 0);
        fail_msg("the forked supervisor did not get named running (see its log above)");
    }
    assert_int_equal(kill((pid_t)named_pid, 0), 0);

    assert_int_equal(kill(child, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);

    /* named was re-parented to us: reap it, bounded. */
    bool reaped = false;
    int nstatus = 0;
    for (int i = 0; i < 200 && !reaped; i++) {
        pid_t r = waitpid((pid_t)named_pid, &nstatus, WNOHANG);
        if (r == (pid_t)named_pid)
            reaped = true;
        else
            usleep(25000);
    }
    (void)prctl(PR_SET_CHILD_SUBREAPER, 0);
    if (!reaped) {
        kill((pid_t)named_pid, SIGKILL);
        waitpid((pid_t)named_pid, NULL, 0);
        fail_msg("named %d outlived its supervisor by 5 s: PR_SET_PDEATHSIG did not work",
                 (int)named_pid);
    }
    assert_true(WIFSIGNALED(nstatus));
    assert_int_equal(WTERMSIG(nstatus), SIGKILL);
    assert_true(pid_gone((pid_t)named_pid));
    rm_rf(base);
}

/* After a failed test: kill what is left (libev reaps it) and remove the directories. */
static int teardown(void **state)
{
    free(g_captured);
    g_captured = NULL;
    if (g_sup != NULL) {
        loc_sup_free(g_sup);
        g_sup = NULL;
        run_for(0.2);
    }
    if (g_base[0] != '\0') {
        rm_rf(g_base);
        g_base[0] = '\0';
    }
    return 0;
}

int main(void)
{
    bd_log_init_from_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_errors, teardown),
        cmocka_unit_test_teardown(test_two_running, teardown),
        cmocka_unit_test_teardown(test_kill9_restart, teardown),
        cmocka_unit_test_teardown(test_bad_config_backoff, teardown),
        cmocka_unit_test_teardown(test_reload, teardown),
        cmocka_unit_test_teardown(test_stop_grace_sigkill, teardown),
        cmocka_unit_test_teardown(test_change_while_starting, teardown),
        cmocka_unit_test_teardown(test_pdeathsig, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
