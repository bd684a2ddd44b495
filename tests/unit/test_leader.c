/*
 * test_leader.c - Lease leader election (le_) against the API-server double.
 *
 * Several electors run in this one process on one libev loop, each with its own
 * k8s_client that reaches the double through its own loopback TCP proxy (below), so a
 * test can black-hole or close one elector's link. What the electors did is proven from
 * the double's request log (who wrote the Lease when, by user agent) and from the hooks'
 * clocks; an ev_check watcher asserts after every loop iteration that at most one
 * elector passes le_fence_ok.
 */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "apiserver.h"
#include "clock.h"
#include "client.h"
#include "leader.h"
#include "log.h"

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- a loopback TCP proxy on the loop: pass, black-hole or close ----------------------- */
/* Not bd_proxy (proxy.h): its black hole delivers a cut leader's queued Lease writes on PASS; this one drops them. */

typedef enum { PX_PASS, PX_BLACKHOLE, PX_CLOSED } px_mode_t;

#define PX_BUF 65536

typedef struct px_conn px_conn_t;
typedef struct proxy {
    struct ev_loop *loop;
    int lfd;
    unsigned short port, up_port;
    ev_io accept_w;
    px_mode_t mode;
    px_conn_t *conns;
} proxy_t;

struct px_conn {
    proxy_t *px;
    px_conn_t *next;
    int fd[2];            /* 0: the client's side, 1: the double's */
    ev_io w[2];
    char buf[2][PX_BUF];  /* buf[i]: read from fd[i], to be written to fd[1 - i] */
    size_t len[2];
    bool eof[2], shut[2];
};

static void px_conn_close(px_conn_t *k)
{
    proxy_t *px = k->px;
    for (px_conn_t **p = &px->conns; *p; p = &(*p)->next) {
        if (*p == k) {
            *p = k->next;
            break;
        }
    }
    for (int i = 0; i < 2; i++) {
        ev_io_stop(px->loop, &k->w[i]);
        close(k->fd[i]);
    }
    free(k);
}

static void px_update(px_conn_t *k)
{
    for (int i = 0; i < 2; i++) {
        int ev = 0;
        if (!k->eof[i] && k->len[i] < PX_BUF)
            ev |= EV_READ;
        if (k->px->mode == PX_PASS && k->len[1 - i] > 0)
            ev |= EV_WRITE;
        ev_io_stop(k->px->loop, &k->w[i]);
        if (ev) {
            ev_io_set(&k->w[i], k->fd[i], ev);
            ev_io_start(k->px->loop, &k->w[i]);
        }
    }
}

static void px_on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    px_conn_t *k = w->data;
    int i = w == &k->w[0] ? 0 : 1;
    if (revents & EV_READ) {
        ssize_t n = read(k->fd[i], k->buf[i] + k->len[i], PX_BUF - k->len[i]);
        if (n > 0) {
            if (k->px->mode == PX_PASS)
                k->len[i] += (size_t)n; /* black hole: dropped */
        } else if (n == 0) {
            k->eof[i] = true;
        } else if (errno != EAGAIN && errno != EINTR) {
            px_conn_close(k);
            return;
        }
    }
    if ((revents & EV_WRITE) && k->px->mode == PX_PASS && k->len[1 - i] > 0) {
        ssize_t n = send(k->fd[i], k->buf[1 - i], k->len[1 - i], MSG_NOSIGNAL);
        if (n > 0) {
            memmove(k->buf[1 - i], k->buf[1 - i] + n, k->len[1 - i] - (size_t)n);
            k->len[1 - i] -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            px_conn_close(k);
            return;
        }
    }
    for (int j = 0; j < 2; j++) {
        if (k->eof[j] && k->len[j] == 0 && !k->shut[j]) {
            if (k->px->mode != PX_PASS) { /* a black hole forwards no FIN either */
                px_conn_close(k);
                return;
            }
            shutdown(k->fd[1 - j], SHUT_WR);
            k->shut[j] = true;
        }
    }
    if (k->shut[0] && k->shut[1]) {
        px_conn_close(k);
        return;
    }
    px_update(k);
}

static void px_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    proxy_t *px = w->data;
    for (;;) {
        int c = accept4(px->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0)
            return;
        if (px->mode == PX_CLOSED) {
            close(c);
            continue;
        }
        int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(px->up_port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (u < 0 || connect(u, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            if (u >= 0)
                close(u);
            close(c);
            continue;
        }
        fcntl(u, F_SETFL, fcntl(u, F_GETFL) | O_NONBLOCK);
        int one = 1;
        setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        px_conn_t *k = calloc(1, sizeof(*k));
        assert_non_null(k);
        k->px = px;
        k->fd[0] = c;
        k->fd[1] = u;
        for (int i = 0; i < 2; i++) {
            ev_io_init(&k->w[i], px_on_io, k->fd[i], EV_READ);
            k->w[i].data = k;
        }
        k->next = px->conns;
        px->conns = k;
        px_update(k);
    }
}

static proxy_t *px_new(struct ev_loop *loop, unsigned short up_port)
{
    proxy_t *px = calloc(1, sizeof(*px));
    assert_non_null(px);
    px->loop = loop;
    px->up_port = up_port;
    px->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(px->lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(px->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(px->lfd, 64), 0);
    assert_int_equal(getsockname(px->lfd, (struct sockaddr *)&sa, &sl), 0);
    px->port = ntohs(sa.sin_port);
    ev_io_init(&px->accept_w, px_on_accept, px->lfd, EV_READ);
    px->accept_w.data = px;
    ev_io_start(loop, &px->accept_w);
    return px;
}

static void px_close_all(proxy_t *px)
{
    while (px->conns)
        px_conn_close(px->conns);
}

/* PASS after a cut starts afresh: a black-holed stream has lost bytes. */
static void px_set_mode(proxy_t *px, px_mode_t m)
{
    px_mode_t old = px->mode;
    px->mode = m;
    if (m == PX_CLOSED || (m == PX_PASS && old != PX_PASS)) {
        px_close_all(px);
        return;
    }
    for (px_conn_t *k = px->conns; k; k = k->next) {
        k->len[0] = k->len[1] = 0;
        px_update(k);
    }
}

static void px_free(proxy_t *px)
{
    if (!px)
        return;
    px_close_all(px);
    ev_io_stop(px->loop, &px->accept_w);
    close(px->lfd);
    free(px);
}

/* ---- the world: a double, electors, invariants ------------------------------------------ */

#define MAX_E 3

typedef struct world world_t;

typedef struct elector {
    world_t *w;
    int idx;
    char ident[32], ua[32];
    proxy_t *px;
    k8s_client_t *kc;
    le_t *le;
    int started, stopped, new_leader_calls;
    double started_mono, started_wall, stopped_mono, stopped_wall;
    char seen_leader[64];
    bool done_called;
    int done_code;
    double done_mono;
    int stopped_before_done; /* stopped hook count when done was called */
} elector_t;

struct world {
    struct ev_loop *loop;
    bd_apiserver_t *as;
    elector_t e[MAX_E];
    int n;
    ev_check chk;
    ev_timer wake;
    int max_fenced, max_leaders;
    int fence_violations; /* another elector passed le_fence_ok inside a started hook */
    int own_fence_bad;    /* an elector failed its own fence inside its started hook */
};

static world_t *W; /* for teardown after a failed assertion */

static void on_check(struct ev_loop *loop, ev_check *c, int revents)
{
    world_t *w = c->data;
    int fenced = 0, leaders = 0;
    for (int i = 0; i < w->n; i++) {
        if (!w->e[i].le)
            continue;
        fenced += le_fence_ok(w->e[i].le);
        leaders += le_is_leader(w->e[i].le);
    }
    if (fenced > w->max_fenced)
        w->max_fenced = fenced;
    if (leaders > w->max_leaders)
        w->max_leaders = leaders;
}

static void on_wake(struct ev_loop *loop, ev_timer *t, int revents) {}

static void h_started(void *arg)
{
    elector_t *e = arg;
    e->started++;
    e->started_mono = bd_mono_s();
    e->started_wall = wall();
    if (!le_fence_ok(e->le))
        e->w->own_fence_bad++;
    for (int i = 0; i < e->w->n; i++) {
        elector_t *o = &e->w->e[i];
        if (o != e && o->le && le_fence_ok(o->le))
            e->w->fence_violations++;
    }
}

static void h_stopped(void *arg)
{
    elector_t *e = arg;
    e->stopped++;
    e->stopped_mono = bd_mono_s();
    e->stopped_wall = wall();
    if (le_fence_ok(e->le))
        e->w->own_fence_bad++;
}

static void h_new_leader(void *arg, const char *id)
{
    elector_t *e = arg;
    e->new_leader_calls++;
    snprintf(e->seen_leader, sizeof(e->seen_leader), "%s", id);
}

static void h_done(void *arg, int code)
{
    elector_t *e = arg;
    e->done_called = true;
    e->done_code = code;
    e->done_mono = bd_mono_s();
    e->stopped_before_done = e->stopped;
}

static le_config_t test_cfg(unsigned ld, unsigned rd, unsigned rp)
{
    le_config_t c;
    le_config_init(&c);
    c.lease_duration_ms = ld;
    c.renew_deadline_ms = rd;
    c.retry_period_ms = rp;
    return c;
}

static world_t *world_new(void)
{
    world_t *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    W = w;
    w->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(w->loop);
    bd_err_t err;
    assert_int_equal(bd_apiserver_start(NULL, &w->as, &err), BD_OK);
    assert_int_equal(bd_apiserver_create(w->as,
                                         "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
                                         "\"metadata\":{\"name\":\"dns-system\"}}",
                                         &err),
                     BD_OK);
    ev_check_init(&w->chk, on_check);
    w->chk.data = w;
    ev_check_start(w->loop, &w->chk);
    ev_timer_init(&w->wake, on_wake, 0.01, 0.01);
    ev_timer_start(w->loop, &w->wake);
    return w;
}

/* Kill: stop the elector abruptly (no release), its client and its link. */
static void elector_kill(elector_t *e)
{
    le_free(e->le);
    e->le = NULL;
    k8s_client_free(e->kc);
    e->kc = NULL;
    px_free(e->px);
    e->px = NULL;
}

static void world_free(world_t *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        elector_kill(&w->e[i]);
    ev_check_stop(w->loop, &w->chk);
    ev_timer_stop(w->loop, &w->wake);
    ev_loop_destroy(w->loop);
    bd_apiserver_stop(w->as);
    free(w);
    if (W == w)
        W = NULL;
}

static elector_t *elector_add(world_t *w, const le_config_t *base)
{
    assert_true(w->n < MAX_E);
    elector_t *e = &w->e[w->n];
    memset(e, 0, sizeof(*e));
    e->w = w;
    e->idx = w->n++;
    snprintf(e->ident, sizeof(e->ident), "bindy-pod-%d", e->idx);
    snprintf(e->ua, sizeof(e->ua), "le-test-%d", e->idx);
    e->px = px_new(w->loop, bd_apiserver_port(w->as));

    char server[64], ns[] = "default", origin[] = "test";
    snprintf(server, sizeof(server), "http://127.0.0.1:%u", e->px->port);
    k8s_config_t kcfg = {.server = server, .ns = ns, .origin = origin};
    k8s_client_opts_t o;
    k8s_client_opts_init(&o);
    o.user_agent = e->ua;
    o.timeout_ms = 3000;
    o.connect_timeout_ms = 1000;
    o.qps = 1000;
    o.burst = 1000;
    bd_err_t err;
    assert_int_equal(k8s_client_new(w->loop, &kcfg, &o, &e->kc, &err), BD_OK);

    le_config_t c = *base;
    snprintf(c.identity, sizeof(c.identity), "%s", e->ident);
    le_hooks_t h = {h_started, h_stopped, h_new_leader};
    assert_int_equal(le_start(w->loop, e->kc, &c, &h, e, &e->le, &err), BD_OK);
    return e;
}

typedef bool (*pred_fn)(world_t *w, void *a);

static bool run_until(world_t *w, pred_fn p, void *a, double timeout_s)
{
    double end = bd_mono_s() + timeout_s;
    while (!(p && p(w, a))) {
        if (bd_mono_s() >= end)
            return false;
        ev_run(w->loop, EVRUN_ONCE);
    }
    return true;
}

static void run_for(world_t *w, double s) { (void)run_until(w, NULL, NULL, s); }

static int leader_count(world_t *w)
{
    int n = 0;
    for (int i = 0; i < w->n; i++)
        n += w->e[i].le && le_is_leader(w->e[i].le);
    return n;
}

static elector_t *the_leader(world_t *w)
{
    for (int i = 0; i < w->n; i++)
        if (w->e[i].le && le_is_leader(w->e[i].le))
            return &w->e[i];
    return NULL;
}

static bool p_has_leader(world_t *w, void *a) { return the_leader(w) != NULL; }

/* A leader other than *a (a elector_t *). */
static bool p_other_leader(world_t *w, void *a)
{
    elector_t *l = the_leader(w);
    return l && l != a;
}

static bool p_done(world_t *w, void *a) { return ((elector_t *)a)->done_called; }

/* ---- reading the double ------------------------------------------------------------------ */

#define LEASE_PATH "/apis/coordination.k8s.io/v1/namespaces/dns-system/leases"
#define LEASE_OBJ_PATH LEASE_PATH "/bindy-leader"

static json_t *lease_get(world_t *w)
{
    char *text = bd_apiserver_get(w->as, "coordination.k8s.io", "leases", "dns-system",
                                  "bindy-leader");
    assert_non_null(text);
    json_t *o = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(o);
    return o;
}

static json_int_t lease_transitions(world_t *w)
{
    json_t *o = lease_get(w);
    json_int_t t = json_integer_value(json_object_get(json_object_get(o, "spec"), "leaseTransitions"));
    json_decref(o);
    return t;
}

static bool is_write(const bd_apiserver_req_t *r)
{
    return (strcmp(r->verb, "update") == 0 || strcmp(r->verb, "create") == 0 ||
            strcmp(r->verb, "patch") == 0 || strcmp(r->verb, "delete") == 0) &&
           strncmp(r->path, LEASE_PATH, strlen(LEASE_PATH)) == 0;
}

/* Writes to the Lease by ua with status (0: any) logged at or after t (wall); count and
 * the first/last time. */
static int writes_by(world_t *w, const char *ua, int status, double after, double *first,
                     double *last)
{
    int n = 0;
    size_t cnt = bd_apiserver_log_count(w->as);
    for (size_t i = 0; i < cnt; i++) {
        bd_apiserver_req_t r;
        if (bd_apiserver_log_get(w->as, i, &r) != BD_OK)
            continue;
        if (strcmp(r.user_agent, ua) != 0 || !is_write(&r) || r.time < after)
            continue;
        if (status && r.status != status)
            continue;
        if (n == 0 && first)
            *first = r.time;
        if (last)
            *last = r.time;
        n++;
    }
    return n;
}

/* ---- capturing our own log lines ------------------------------------------------------------ */

static int cap_saved = -1;
static char cap_path[64];

static void capture_begin(void)
{
    fflush(stderr);
    snprintf(cap_path, sizeof(cap_path), "/tmp/test_leader_log.XXXXXX");
    int fd = mkstemp(cap_path);
    assert_true(fd >= 0);
    cap_saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* Restore stderr; the captured text (malloc'd), also echoed to stderr. */
static char *capture_end(void)
{
    if (cap_saved < 0)
        return NULL;
    fflush(stderr);
    dup2(cap_saved, 2);
    close(cap_saved);
    cap_saved = -1;
    FILE *f = fopen(cap_path, "r");
    char *buf = NULL;
    size_t len = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = calloc(1, (size_t)(sz > 0 ? sz : 0) + 1);
        if (buf)
            len = fread(buf, 1, (size_t)(sz > 0 ? sz : 0), f);
        fclose(f);
    }
    unlink(cap_path);
    if (buf)
        fwrite(buf, 1, len, stderr);
    return buf;
}

/* Count the lines that end with " LEVEL text" exactly. */
static int log_lines(const char *log, const char *level, const char *text)
{
    char want[512];
    snprintf(want, sizeof(want), " %s %s\n", level, text);
    int n = 0;
    for (const char *p = log; (p = strstr(p, want)); p += strlen(want))
        n++;
    return n;
}

static int teardown(void **state)
{
    free(capture_end());
    world_free(W);
    return 0;
}

/* ---- configuration from the environment ---------------------------------------------------- */

static const char *const env_names[] = {
    "ENABLE_LEADER_ELECTION", "LEASE_NAME", "LEASE_NAMESPACE", "LEASE_DURATION_SECONDS",
    "LEASE_RENEW_DEADLINE_SECONDS", "LEASE_RETRY_PERIOD_SECONDS", "POD_NAME",
};

static void env_clear(void)
{
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++) {
        char b[64];
        unsetenv(env_names[i]);
        snprintf(b, sizeof(b), "BINDY_%s", env_names[i]);
        unsetenv(b);
    }
    unsetenv("HOSTNAME");
}

/* Expect le_config_from_env to refuse, naming var, with *out left at the defaults. */
static void env_bad(const char *var)
{
    le_config_t c, def;
    bd_err_t err;
    le_config_init(&def);
    memset(&c, 0x5a, sizeof(c));
    assert_int_equal(le_config_from_env(&c, &err), BD_EINVAL);
    assert_int_equal(err.code, BD_EINVAL);
    if (!strstr(err.msg, var))
        fail_msg("error \"%s\" does not name %s", err.msg, var);
    assert_memory_equal(&c, &def, sizeof(c));
}

static void bad_value(const char *var, const char *value)
{
    env_clear();
    setenv("HOSTNAME", "pod-h", 1);
    setenv(var, value, 1);
    env_bad(var);
}

/* c names identity and the Lease ns/name, with these durations (ms). */
static void config_is(const le_config_t *c, const char *identity, const char *name, const char *ns,
                      unsigned duration, unsigned deadline, unsigned retry)
{
    assert_string_equal(c->identity, identity);
    assert_string_equal(c->lease_name, name);
    assert_string_equal(c->lease_namespace, ns);
    assert_int_equal(c->lease_duration_ms, duration);
    assert_int_equal(c->renew_deadline_ms, deadline);
    assert_int_equal(c->retry_period_ms, retry);
}

static void test_config_env(void **state)
{
    le_config_t c;
    bd_err_t err;

    /* defaults (the seed's table), identity from HOSTNAME */
    env_clear();
    setenv("HOSTNAME", "bindy-7d8f9c5b4d-x7k2m", 1);
    assert_int_equal(le_config_from_env(&c, &err), BD_OK);
    assert_true(c.enabled);
    config_is(&c, "bindy-7d8f9c5b4d-x7k2m", "bindy-leader", "dns-system", 15000, 10000, 2000);

    /* every variable set */
    setenv("ENABLE_LEADER_ELECTION", "true", 1);
    setenv("LEASE_NAME", "my.lease-1", 1);
    setenv("LEASE_NAMESPACE", "ops", 1);
    setenv("LEASE_DURATION_SECONDS", "30", 1);
    setenv("LEASE_RENEW_DEADLINE_SECONDS", "20", 1);
    setenv("LEASE_RETRY_PERIOD_SECONDS", "5", 1);
    setenv("POD_NAME", "bindy-0", 1);
    assert_int_equal(le_config_from_env(&c, &err), BD_OK);
    config_is(&c, "bindy-0", "my.lease-1", "ops", 30000, 20000, 5000); /* POD_NAME wins over HOSTNAME */
    setenv("ENABLE_LEADER_ELECTION", "FALSE", 1);
    assert_int_equal(le_config_from_env(&c, &err), BD_OK);
    assert_false(c.enabled);

    /* an empty POD_NAME falls back to HOSTNAME */
    env_clear();
    setenv("HOSTNAME", "h", 1);
    setenv("POD_NAME", "", 1);
    assert_int_equal(le_config_from_env(&c, &err), BD_OK);
    assert_string_equal(c.identity, "h");

    /* no identity at all */
    env_clear();
    env_bad("POD_NAME");
    setenv("POD_NAME", "", 1);
    env_bad("POD_NAME");
    /* ...which does not matter when leader election is off */
    setenv("ENABLE_LEADER_ELECTION", "false", 1);
    assert_int_equal(le_config_from_env(&c, &err), BD_OK);
    assert_false(c.enabled);

    /* each bad variable */
    static const char *const secs[] = {"LEASE_DURATION_SECONDS", "LEASE_RENEW_DEADLINE_SECONDS",
                                       "LEASE_RETRY_PERIOD_SECONDS"};
    static const char *const bad_secs[] = {"abc", "0", "-5", "1.5", "", "15s", " 15", "99999999999",
                                           "86401"};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < sizeof(bad_secs) / sizeof(bad_secs[0]); j++)
            bad_value(secs[i], bad_secs[j]);
    bad_value("ENABLE_LEADER_ELECTION", "maybe");
    bad_value("ENABLE_LEADER_ELECTION", "");
    bad_value("LEASE_NAME", "");
    bad_value("LEASE_NAME", "Bad_Name");
    bad_value("LEASE_NAME", "-x");
    bad_value("LEASE_NAMESPACE", "");
    bad_value("LEASE_NAMESPACE", "a.b");

    /* relations: duration > deadline > 1.2 x retry */
    env_clear();
    setenv("HOSTNAME", "h", 1);
    setenv("LEASE_DURATION_SECONDS", "10", 1); /* = the default deadline */
    env_bad("LEASE_DURATION_SECONDS");
    setenv("LEASE_DURATION_SECONDS", "9", 1);
    env_bad("LEASE_RENEW_DEADLINE_SECONDS");
    env_clear();
    setenv("HOSTNAME", "h", 1);
    setenv("LEASE_RENEW_DEADLINE_SECONDS", "12", 1);
    setenv("LEASE_RETRY_PERIOD_SECONDS", "10", 1); /* 12 <= 1.2 x 10 */
    env_bad("LEASE_RETRY_PERIOD_SECONDS");
    setenv("LEASE_RENEW_DEADLINE_SECONDS", "13", 1);
    assert_int_equal(le_config_from_env(&c, &err), BD_OK);
    assert_int_equal(c.renew_deadline_ms, 13000);

    /* the BINDY_ spelling: accepted, wins over the plain one, named in errors */
    env_clear();
    setenv("BINDY_POD_NAME", "bp", 1);
    setenv("POD_NAME", "p", 1);
    setenv("BINDY_LEASE_NAME", "from-bindy", 1);
    setenv("LEASE_NAME", "plain", 1);
    setenv("BINDY_LEASE_DURATION_SECONDS", "20", 1);
    setenv("BINDY_LEASE_NAMESPACE", "kube-system", 1);
    setenv("BINDY_LEASE_RENEW_DEADLINE_SECONDS", "11", 1);
    setenv("BINDY_LEASE_RETRY_PERIOD_SECONDS", "3", 1);
    assert_int_equal(le_config_from_env(&c, &err), BD_OK);
    config_is(&c, "bp", "from-bindy", "kube-system", 20000, 11000, 3000);
    setenv("BINDY_ENABLE_LEADER_ELECTION", "0", 1);
    setenv("ENABLE_LEADER_ELECTION", "true", 1);
    assert_int_equal(le_config_from_env(&c, &err), BD_OK);
    assert_false(c.enabled);
    setenv("BINDY_LEASE_RETRY_PERIOD_SECONDS", "two", 1);
    setenv("LEASE_RETRY_PERIOD_SECONDS", "2", 1);
    env_bad("BINDY_LEASE_RETRY_PERIOD_SECONDS");
    setenv("BINDY_LEASE_RETRY_PERIOD_SECONDS", "3", 1);
    setenv("BINDY_LEASE_DURATION_SECONDS", "11", 1); /* = BINDY_..._DEADLINE */
    env_bad("BINDY_LEASE_DURATION_SECONDS");
    env_clear();

    /* le_config_check: sub-second values for tests, the same rules */
    c = test_cfg(3000, 2000, 500);
    snprintf(c.identity, sizeof(c.identity), "x");
    assert_int_equal(le_config_check(&c, &err), BD_OK);
    c.renew_deadline_ms = 600; /* = 1.2 x 500 */
    assert_int_equal(le_config_check(&c, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "LEASE_RENEW_DEADLINE_SECONDS"));
    c.renew_deadline_ms = 3000;
    assert_int_equal(le_config_check(&c, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "LEASE_DURATION_SECONDS"));
    c.renew_deadline_ms = 2000;
    c.identity[0] = '\0';
    assert_int_equal(le_config_check(&c, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "POD_NAME"));
    c.retry_period_ms = 0;
    snprintf(c.identity, sizeof(c.identity), "x");
    assert_int_equal(le_config_check(&c, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "LEASE_RETRY_PERIOD_SECONDS"));
}

/* ---- always-leader mode ------------------------------------------------------------------ */

typedef struct {
    int started, stopped, done;
    int done_code;
    int stopped_at_done;
} dis_t;

static void d_started(void *a) { ((dis_t *)a)->started++; }
static void d_stopped(void *a) { ((dis_t *)a)->stopped++; }
static void d_done(void *a, int code)
{
    dis_t *d = a;
    d->done++;
    d->done_code = code;
    d->stopped_at_done = d->stopped;
}

static void test_disabled(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    le_config_t c = test_cfg(3000, 2000, 500);
    c.enabled = false;
    dis_t d = {0};
    le_hooks_t h = {d_started, d_stopped, NULL};
    le_t *le = NULL;
    bd_err_t err;
    capture_begin();
    assert_int_equal(le_start(loop, NULL, &c, &h, &d, &le, &err), BD_OK);
    assert_int_equal(d.started, 0); /* from the loop, not from le_start */
    for (int i = 0; i < 5; i++)
        ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(d.started, 1);
    assert_true(le_is_leader(le));
    assert_true(le_fence_ok(le));
    assert_int_equal(le_release(le, 100, d_done, &d), BD_OK);
    assert_false(le_fence_ok(le));
    assert_int_equal(le_release(le, 100, d_done, &d), BD_EINVAL);
    for (int i = 0; i < 5 && !d.done; i++)
        ev_run(loop, EVRUN_NOWAIT);
    char *log = capture_end();
    assert_int_equal(d.done, 1);
    assert_int_equal(d.done_code, BD_OK);
    assert_int_equal(d.stopped, 1);
    assert_int_equal(d.stopped_at_done, 1);
    assert_int_equal(d.started, 1);
    assert_non_null(log);
    assert_non_null(strstr(log, " WARN Leader election is disabled (ENABLE_LEADER_ELECTION=false)"));
    assert_non_null(strstr(log, "More than one replica will cause conflicts"));
    assert_non_null(strstr(log, "cannot know how many replicas"));
    assert_int_equal(log_lines(log, "INFO", "Starting all operators"), 1);
    assert_int_equal(log_lines(log, "INFO", "Attempting to acquire lease bindy-leader"), 0);
    free(log);
    le_free(le);
    ev_loop_destroy(loop);
}

/* ---- elections ----------------------------------------------------------------------------- */

static void check_invariants(world_t *w)
{
    print_message("invariants: max fenced %d, max leaders %d, fence violations %d, own fence %d\n",
                  w->max_fenced, w->max_leaders, w->fence_violations, w->own_fence_bad);
    assert_int_equal(w->max_fenced, 1);
    assert_true(w->max_leaders <= 1);
    assert_int_equal(w->fence_violations, 0);
    assert_int_equal(w->own_fence_bad, 0);
}

static bool micro_time_ok(const char *s)
{
    /* 2025-11-30T12:34:56.123456Z */
    static const char pat[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
    if (!s || strlen(s) != sizeof(pat) - 1)
        return false;
    for (size_t i = 0; pat[i]; i++)
        if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i])
            return false;
    return true;
}

static void test_one_leader_of_three(void **state)
{
    world_t *w = world_new();
    le_config_t c = test_cfg(3000, 2000, 500);
    capture_begin();
    for (int i = 0; i < 3; i++)
        elector_add(w, &c);
    assert_true(run_until(w, p_has_leader, NULL, 5));
    elector_t *l = the_leader(w);
    run_for(w, 0.3); /* the losers' answers to their creates */
    double t0 = wall();
    run_for(w, 3);
    char *log = capture_end();

    assert_ptr_equal(the_leader(w), l);
    assert_int_equal(leader_count(w), 1);
    check_invariants(w);
    int started = 0, stopped = 0;
    for (int i = 0; i < 3; i++) {
        started += w->e[i].started;
        stopped += w->e[i].stopped;
        assert_string_equal(le_holder(w->e[i].le), l->ident);
        assert_string_equal(w->e[i].seen_leader, l->ident);
        assert_true(w->e[i].new_leader_calls >= 1);
    }
    assert_int_equal(started, 1);
    assert_int_equal(stopped, 0);
    assert_int_equal(l->started, 1);

    /* the record, as client-go writes it */
    json_t *o = lease_get(w);
    json_t *spec = json_object_get(o, "spec");
    assert_string_equal(json_string_value(json_object_get(spec, "holderIdentity")), l->ident);
    assert_int_equal(json_integer_value(json_object_get(spec, "leaseDurationSeconds")), 3);
    assert_int_equal(json_integer_value(json_object_get(spec, "leaseTransitions")), 0);
    assert_true(micro_time_ok(json_string_value(json_object_get(spec, "acquireTime"))));
    assert_true(micro_time_ok(json_string_value(json_object_get(spec, "renewTime"))));
    assert_string_not_equal(json_string_value(json_object_get(spec, "acquireTime")),
                            json_string_value(json_object_get(spec, "renewTime")));
    json_decref(o);

    /* the leader renews every retry period; standbys never write in steady state */
    int renewals = writes_by(w, l->ua, 200, t0, NULL, NULL);
    if (renewals < 4 || renewals > 8)
        fail_msg("%d renewals in 3 s with a 0.5 s retry period", renewals);
    for (int i = 0; i < 3; i++)
        if (&w->e[i] != l)
            assert_int_equal(writes_by(w, w->e[i].ua, 0, t0, NULL, NULL), 0);
    le_stats_t st;
    le_stats(l->le, &st);
    assert_true(st.is_leader);
    assert_int_equal(st.acquisitions, 1);
    assert_true(st.renewals >= 5);
    assert_int_equal(st.lease_transitions, 0);
    assert_true(st.last_renew_latency_s > 0 && st.last_renew_latency_s < 1);
    for (int i = 0; i < 3; i++) {
        le_stats(w->e[i].le, &st);
        assert_int_equal(st.is_leader, &w->e[i] == l);
        assert_int_equal(st.lease_transitions, 0);
    }

    /* the seed's lines, word for word */
    assert_non_null(log);
    assert_int_equal(log_lines(log, "INFO", "Attempting to acquire lease bindy-leader"), 3);
    assert_int_equal(log_lines(log, "INFO", "Lease acquired, this instance is now the leader"), 1);
    assert_int_equal(log_lines(log, "INFO", "Starting all operators"), 1);
    assert_int_equal(log_lines(log, "WARN", "Leadership lost! Stopping all operators..."), 0);
    free(log);
    world_free(w);
}

/* A request by ua to the Lease (by name) in the log between (after, before). */
static int requests_by(world_t *w, const char *ua, const char *verb, int status, double after,
                       double before)
{
    int n = 0;
    size_t cnt = bd_apiserver_log_count(w->as);
    for (size_t i = 0; i < cnt; i++) {
        bd_apiserver_req_t r;
        if (bd_apiserver_log_get(w->as, i, &r) != BD_OK)
            continue;
        if (strcmp(r.user_agent, ua) == 0 && strcmp(r.verb, verb) == 0 &&
            strcmp(r.path, LEASE_OBJ_PATH) == 0 && r.time > after && r.time < before &&
            (!status || r.status == status))
            n++;
    }
    return n;
}

static void test_release_handover(void **state)
{
    /* a retry period of 4 s: a takeover within 1 s of a release is the watch's doing */
    world_t *w = world_new();
    le_config_t c = test_cfg(8000, 6000, 4000);
    for (int i = 0; i < 3; i++)
        elector_add(w, &c);
    assert_true(run_until(w, p_has_leader, NULL, 5));
    run_for(w, 0.5); /* every standby watching */
    assert_int_equal(lease_transitions(w), 0);

    int conflicts = 0;
    for (int round = 1; round <= 2; round++) {
        elector_t *old = the_leader(w);
        double t_rel = bd_mono_s(), t_rel_wall = wall();
        assert_int_equal(le_release(old->le, 2000, h_done, old), BD_OK);
        assert_false(le_fence_ok(old->le)); /* at once */
        assert_false(le_is_leader(old->le));
        assert_int_equal(old->stopped, 0);  /* the hook comes from the loop */
        assert_true(run_until(w, p_other_leader, old, 3));
        elector_t *nl = the_leader(w);
        assert_true(run_until(w, p_done, old, 3));
        double took = nl->started_mono - t_rel;
        print_message("release round %d: %s -> %s in %.3f s\n", round, old->ident, nl->ident, took);
        if (took >= 1.0)
            fail_msg("takeover after a release took %.3f s", took);
        assert_int_equal(old->done_code, BD_OK);
        assert_int_equal(old->stopped, 1);
        assert_int_equal(old->stopped_before_done, 1);
        assert_true(old->stopped_mono < nl->started_mono);
        assert_int_equal(lease_transitions(w), round);

        /* the log: the release write, then the winner's write without a read in between
         * (it acted on the watch event), the loser's 409 and its re-read */
        double rel_first = 0, win_first = 0;
        assert_int_equal(writes_by(w, old->ua, 200, t_rel_wall, &rel_first, NULL), 1);
        assert_true(writes_by(w, nl->ua, 200, rel_first, &win_first, NULL) >= 1);
        assert_int_equal(requests_by(w, nl->ua, "get", 0, rel_first, win_first), 0);
        run_for(w, 4.5); /* a retry period: the loser of a race reads again */
        for (int i = 0; i < w->n; i++) {
            elector_t *e = &w->e[i];
            if (e == old || e == nl || !e->le || le_is_leader(e->le))
                continue;
            conflicts += writes_by(w, e->ua, 409, rel_first, NULL, NULL);
        }
        /* a released elector is done: it never writes again */
        assert_int_equal(writes_by(w, old->ua, 0, t_rel_wall, NULL, NULL), 1);
    }
    assert_true(conflicts >= 1);
    /* after a 409, a loser's next request to the Lease is a read */
    size_t cnt = bd_apiserver_log_count(w->as);
    for (int i = 0; i < w->n; i++) {
        bool after409 = false;
        for (size_t j = 0; j < cnt; j++) {
            bd_apiserver_req_t r;
            if (bd_apiserver_log_get(w->as, j, &r) != BD_OK || strcmp(r.user_agent, w->e[i].ua) != 0 ||
                strcmp(r.path, LEASE_OBJ_PATH) != 0)
                continue;
            if (after409) {
                assert_string_equal(r.verb, "get");
                after409 = false;
            }
            if (strcmp(r.verb, "update") == 0 && r.status == 409)
                after409 = true;
        }
    }
    check_invariants(w);
    world_free(w);
}

static void test_killed_leader(void **state)
{
    world_t *w = world_new();
    le_config_t c = test_cfg(3000, 2000, 500);
    for (int i = 0; i < 3; i++)
        elector_add(w, &c);
    assert_true(run_until(w, p_has_leader, NULL, 5));
    run_for(w, 1.2);
    elector_t *dead = the_leader(w);
    double last_renew = 0;
    assert_true(writes_by(w, dead->ua, 200, 0, NULL, &last_renew) >= 2);
    double t_kill = bd_mono_s();
    elector_kill(dead);
    assert_true(run_until(w, p_has_leader, NULL, 3.0 + 0.5 + 1.0));
    elector_t *nl = the_leader(w);
    double took = nl->started_mono - t_kill;
    double first = 0;
    assert_true(writes_by(w, nl->ua, 200, last_renew + 0.001, &first, NULL) >= 1);
    print_message("killed leader %s -> %s after %.3f s (lease unchanged for %.3f s)\n", dead->ident,
                  nl->ident, took, first - last_renew);
    if (took > 3.0 + 0.5)
        fail_msg("new leader after %.3f s > LeaseDuration + RetryPeriod", took);
    if (first - last_renew < 3.0 - 0.05)
        fail_msg("lease taken %.3f s after its last renewal: before it expired", first - last_renew);
    assert_int_equal(lease_transitions(w), 1);
    le_stats_t st;
    le_stats(nl->le, &st);
    assert_int_equal(st.lease_transitions, 1);
    assert_true(st.transitions_observed >= 1);
    check_invariants(w);
    world_free(w);
}

static void cut_off(px_mode_t how)
{
    world_t *w = world_new();
    le_config_t c = test_cfg(3000, 2000, 500);
    capture_begin();
    for (int i = 0; i < 3; i++)
        elector_add(w, &c);
    assert_true(run_until(w, p_has_leader, NULL, 5));
    run_for(w, 1.0);
    elector_t *l = the_leader(w);
    double cut = bd_mono_s(), cut_wall = wall();
    px_set_mode(l->px, how);

    assert_true(run_until(w, p_other_leader, l, 3.0 + 0.5 + 2.0));
    elector_t *nl = the_leader(w);
    assert_int_equal(l->stopped, 1);
    assert_false(le_fence_ok(l->le));
    assert_false(le_is_leader(l->le));
    double last_renew = 0, won = 0;
    writes_by(w, l->ua, 200, 0, NULL, &last_renew);
    assert_true(writes_by(w, nl->ua, 200, cut_wall, &won, NULL) >= 1);
    print_message("cut (%s) %s: stopped leading %.3f s after the cut; %s leads %.3f s after the "
                  "cut (%.3f s after %s stopped; lease unchanged for %.3f s)\n",
                  how == PX_BLACKHOLE ? "black hole" : "closed", l->ident, l->stopped_mono - cut,
                  nl->ident, nl->started_mono - cut, nl->started_mono - l->stopped_mono, l->ident,
                  won - last_renew);
    /* it stopped by itself, within RenewDeadline of its last renewal, before anyone took over */
    assert_true(last_renew <= cut_wall + 0.05);
    assert_true(l->stopped_mono - cut <= 2.0 + 0.3);
    assert_true(l->stopped_mono < nl->started_mono);
    assert_true(l->stopped_wall < won);                 /* by the double's clock */
    assert_true(won - last_renew >= 3.0 - 0.05);        /* the lease expired first */
    assert_true(nl->started_mono - l->stopped_mono >= 0.5);

    /* reconnected: a standby again, it follows the new leader and never writes */
    px_set_mode(l->px, PX_PASS);
    run_for(w, 2.0);
    assert_int_equal(writes_by(w, l->ua, 0, l->stopped_wall, NULL, NULL), 0);
    assert_false(le_is_leader(l->le));
    assert_string_equal(le_holder(l->le), nl->ident);
    assert_true(requests_by(w, l->ua, "get", 200, l->stopped_wall, wall()) >= 1);
    le_stats_t st;
    le_stats(l->le, &st);
    assert_int_equal(st.losses, 1);
    assert_int_equal(st.acquisitions, 1);

    /* and it can lead again: the third elector gone, the new leader releases */
    for (int i = 0; i < w->n; i++)
        if (&w->e[i] != l && &w->e[i] != nl)
            elector_kill(&w->e[i]);
    double t_rel = bd_mono_s();
    assert_int_equal(le_release(nl->le, 2000, h_done, nl), BD_OK);
    assert_true(run_until(w, p_other_leader, nl, 2));
    assert_ptr_equal(the_leader(w), l);
    assert_true(l->started_mono - t_rel < 1.0);
    assert_int_equal(l->started, 2);
    assert_int_equal(lease_transitions(w), 2);
    assert_true(run_until(w, p_done, nl, 3));
    char *log = capture_end();
    check_invariants(w);
    assert_non_null(log);
    assert_int_equal(log_lines(log, "WARN", "Leadership lost! Stopping all operators..."), 1);
    assert_int_equal(log_lines(log, "INFO", "Lease acquired, this instance is now the leader"), 3);
    assert_int_equal(log_lines(log, "INFO", "Starting all operators"), 3);
    assert_true(log_lines(log, "INFO", "Attempting to acquire lease bindy-leader") >= 4);
    free(log);
    world_free(w);
}

static void test_cut_blackhole(void **state) { cut_off(PX_BLACKHOLE); }
static void test_cut_closed(void **state) { cut_off(PX_CLOSED); }

static void test_release_timeout(void **state)
{
    world_t *w = world_new();
    le_config_t c = test_cfg(3000, 2000, 500);
    elector_t *e = elector_add(w, &c);
    assert_true(run_until(w, p_has_leader, NULL, 5));
    px_set_mode(e->px, PX_BLACKHOLE);
    double t = bd_mono_s();
    assert_int_equal(le_release(e->le, 300, h_done, e), BD_OK);
    assert_false(le_fence_ok(e->le));
    assert_int_equal(le_release(e->le, 300, h_done, e), BD_EINVAL);
    assert_true(run_until(w, p_done, e, 2));
    double took = e->done_mono - t;
    assert_int_equal(e->done_code, BD_ETIMEOUT);
    assert_true(took >= 0.29 && took < 0.8);
    assert_int_equal(e->stopped, 1);
    assert_int_equal(e->stopped_before_done, 1);
    /* the lease still names it: it expires on its own */
    json_t *o = lease_get(w);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "spec"), "holderIdentity")),
                        e->ident);
    json_decref(o);
    world_free(w);
}

/* The lease deleted under the leader (kubectl delete lease): the watch makes the leader
 * stop at once and create it again (leaseTransitions from 0); a standby does not create it
 * while the last holder it saw may still believe it leads. */
static void on_admin_done(void *arg, const k8s_resp_t *r) { *(int *)arg = r->code == BD_OK ? 1 : -1; }
static bool p_flag(world_t *w, void *a) { return *(int *)a != 0; }
static bool p_stopped(world_t *w, void *a) { return ((elector_t *)a)->stopped > 0; }

static void delete_lease(world_t *w)
{
    k8s_client_t *admin = NULL;
    char server[64], ns[] = "default", origin[] = "test";
    snprintf(server, sizeof(server), "%s", bd_apiserver_url(w->as));
    k8s_config_t kcfg = {.server = server, .ns = ns, .origin = origin};
    bd_err_t err;
    assert_int_equal(k8s_client_new(w->loop, &kcfg, NULL, &admin, &err), BD_OK);
    static const k8s_res_t leases = {"coordination.k8s.io", "v1", "leases", "Lease", true};
    int deleted = 0;
    assert_int_equal(k8s_delete(admin, &leases, "dns-system", "bindy-leader", on_admin_done, &deleted,
                                NULL),
                     BD_OK);
    bool ok = run_until(w, p_flag, &deleted, 2);
    k8s_client_free(admin);
    assert_true(ok);
    assert_int_equal(deleted, 1);
}

static void test_lease_deleted(void **state)
{
    world_t *w = world_new();
    le_config_t c = test_cfg(3000, 2000, 500);
    for (int i = 0; i < 2; i++)
        elector_add(w, &c);
    assert_true(run_until(w, p_has_leader, NULL, 5));
    run_for(w, 0.5);
    elector_t *l = the_leader(w), *s = &w->e[l == &w->e[0] ? 1 : 0];

    double t = bd_mono_s(), t_wall = wall();
    delete_lease(w);
    assert_true(run_until(w, p_stopped, l, 2));
    print_message("lease deleted: %s stopped leading after %.3f s\n", l->ident, l->stopped_mono - t);
    assert_true(l->stopped_mono - t < 0.45); /* the watch, not the next retry */
    assert_true(run_until(w, p_has_leader, NULL, 1));
    assert_ptr_equal(the_leader(w), l);
    assert_int_equal(l->started, 2);
    assert_int_equal(lease_transitions(w), 0);
    run_for(w, 1.0);
    assert_int_equal(writes_by(w, s->ua, 0, t_wall, NULL, NULL), 0);

    /* the leader dies and its lease is deleted at once: the standby still waits it out */
    elector_kill(l);
    t = bd_mono_s();
    delete_lease(w);
    assert_true(run_until(w, p_has_leader, NULL, 3.0 + 0.5 + 1.0));
    double took = s->started_mono - t;
    print_message("leader killed and lease deleted: %s leads after %.3f s\n", s->ident, took);
    assert_true(took >= 3.0 - 0.5 - 0.05 && took <= 3.0 + 0.5);
    check_invariants(w);
    world_free(w);
}

int main(int argc, char **argv)
{
    bd_log_init_from_env();
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_env),
        cmocka_unit_test_teardown(test_disabled, teardown),
        cmocka_unit_test_teardown(test_one_leader_of_three, teardown),
        cmocka_unit_test_teardown(test_release_handover, teardown),
        cmocka_unit_test_teardown(test_killed_leader, teardown),
        cmocka_unit_test_teardown(test_cut_blackhole, teardown),
        cmocka_unit_test_teardown(test_cut_closed, teardown),
        cmocka_unit_test_teardown(test_release_timeout, teardown),
        cmocka_unit_test_teardown(test_lease_deleted, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
