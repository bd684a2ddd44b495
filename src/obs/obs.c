/*
 * obs.c - the operator's metric set, liveness (heartbeat), readiness conditions, and the
 * HTTP server for /healthz, /readyz and /metrics on libmicrohttpd's internal thread.
 *
 * The loop thread only stores: a heartbeat timestamp (atomic), a condition (short mutex),
 * metric values (atomics). The HTTP thread reads them when a request comes; nothing it does
 * waits on the loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "clock.h"
#include "obs.h"

#define OBS_DEFAULT_ADDR "0.0.0.0:8080"
#define OBS_DEFAULT_STALENESS_MS 10000u

typedef struct ready_cond {
    char name[OBS_READY_NAME_MAX];
    char reason[OBS_READY_REASON_MAX];
    bool ok;
} ready_cond_t;

struct obs {
    obs_reg_t *reg;
    obs_family_t *fam[OBS_METRIC_COUNT];
    obs_series_t *ser[OBS_METRIC_COUNT]; /* unlabelled metrics only */
    char addr[80];                       /* as given, for messages */
    struct sockaddr_storage sa;
    bool ipv6;
    uint64_t staleness_ns;
    _Atomic uint64_t heartbeat_ns;       /* CLOCK_MONOTONIC */
    pthread_mutex_t mu;                  /* ready[] */
    ready_cond_t ready[OBS_READY_MAX];
    size_t nready;
    struct MHD_Daemon *mhd;
    unsigned short port;
};

/* ---- the metric set ------------------------------------------------------------------ */

static const double buckets_commit[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                        0.025,  0.05,    0.1,    0.25,  0.5,    1};
static const double buckets_reconcile[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                           0.1,    0.25,  0.5,    1,     2.5,  5,     10};

typedef enum { BUCKETS_NONE, BUCKETS_COMMIT, BUCKETS_RECONCILE } bucket_set_t;

static const struct metric_def {
    const char *name, *help, *label;
    obs_type_t type;
    bucket_set_t buckets;
} metric_defs[OBS_METRIC_COUNT] = {
#define OBS__DEF(id, name, type, label, buckets, help)                                         \
    [OBS_##id] = {name, help, label, OBS_##type, BUCKETS_##buckets},
    OBS_METRIC_TABLE(OBS__DEF)
#undef OBS__DEF
};

static int add_metric_set(obs_t *o)
{
    for (size_t m = 0; m < OBS_METRIC_COUNT; m++) {
        const struct metric_def *d = &metric_defs[m];
        const double *b = NULL;
        size_t nb = 0;
        if (d->buckets == BUCKETS_COMMIT) {
            b = buckets_commit;
            nb = sizeof(buckets_commit) / sizeof(*buckets_commit);
        } else if (d->buckets == BUCKETS_RECONCILE) {
            b = buckets_reconcile;
            nb = sizeof(buckets_reconcile) / sizeof(*buckets_reconcile);
        }
        const char *labels[1] = {d->label};
        int rc = obs_reg_add(o->reg, d->name, d->help, d->type, labels, d->label ? 1 : 0, b, nb,
                             &o->fam[m]);
        if (rc != BD_OK)
            return rc;
        if (d->label == NULL)
            o->ser[m] = obs_series(o->fam[m], NULL, NULL);
    }
    return BD_OK;
}

obs_reg_t *obs_registry(obs_t *o)
{
    return o ? o->reg : NULL;
}

obs_series_t *obs_metric(obs_t *o, obs_metric_t m)
{
    if (o == NULL || (unsigned)m >= OBS_METRIC_COUNT)
        return NULL;
    return o->ser[m];
}

obs_series_t *obs_metric_for(obs_t *o, obs_metric_t m, const char *value)
{
    if (o == NULL || (unsigned)m >= OBS_METRIC_COUNT || metric_defs[m].label == NULL)
        return NULL;
    return obs_series(o->fam[m], value, NULL);
}

/* ---- options and lifetime ------------------------------------------------------------ */

void obs_opts_init(obs_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->staleness_ms = OBS_DEFAULT_STALENESS_MS;
}

int obs_opts_from_env(obs_opts_t *o, bd_err_t *err)
{
    const char *v = getenv("BINDY_HEALTH_ADDR");
    if (v != NULL && v[0] != '\0')
        o->addr = v;
    bd_err_clear(err);
    return BD_OK;
}

/* "A.B.C.D:PORT" or "[IPv6]:PORT" into o->sa. */
static int parse_addr(obs_t *o, const char *addr, bd_err_t *err)
{
    char host[64];
    const char *colon, *hs, *he;
    if (strlen(addr) >= sizeof(o->addr))
        goto bad;
    snprintf(o->addr, sizeof(o->addr), "%s", addr);
    if (addr[0] == '[') {
        hs = addr + 1;
        he = strchr(hs, ']');
        if (he == NULL || he[1] != ':')
            goto bad;
        colon = he + 1;
        o->ipv6 = true;
    } else {
        hs = addr;
        colon = strrchr(addr, ':');
        if (colon == NULL)
            goto bad;
        he = colon;
        o->ipv6 = false;
    }
    if (he == hs || (size_t)(he - hs) >= sizeof(host))
        goto bad;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    const char *ps = colon + 1;
    if (*ps == '\0' || strlen(ps) > 5 || strspn(ps, "0123456789") != strlen(ps))
        goto bad;
    long port = strtol(ps, NULL, 10);
    if (port > 65535)
        goto bad;
    memset(&o->sa, 0, sizeof(o->sa));
    if (o->ipv6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&o->sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            goto bad;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&o->sa;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            goto bad;
    }
    return BD_OK;
bad:
    return bd_err_set(err, BD_EINVAL,
                      "health address \"%s\": expected IPV4:PORT or [IPV6]:PORT (BINDY_HEALTH_ADDR)",
                      addr);
}

int obs_new(const obs_opts_t *opts, obs_t **out, bd_err_t *err)
{
    *out = NULL;
    bd_err_clear(err);
    obs_opts_t def;
    if (opts == NULL) {
        obs_opts_init(&def);
        opts = &def;
    }
    obs_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    if (pthread_mutex_init(&o->mu, NULL) != 0) {
        free(o);
        return bd_err_set(err, BD_ENOMEM, "cannot create a mutex");
    }
    o->staleness_ns =
        (uint64_t)(opts->staleness_ms ? opts->staleness_ms : OBS_DEFAULT_STALENESS_MS) * 1000000u;
    atomic_init(&o->heartbeat_ns, bd_mono_ns());
    int rc = parse_addr(o, opts->addr ? opts->addr : OBS_DEFAULT_ADDR, err);
    if (rc != BD_OK)
        goto fail;
    if ((rc = obs_reg_new(&o->reg)) != BD_OK || (rc = add_metric_set(o)) != BD_OK) {
        bd_err_set(err, rc, "metrics registry: %s", bd_strerror(rc));
        goto fail;
    }
    *out = o;
    return BD_OK;
fail:
    obs_free(o);
    return rc;
}

void obs_free(obs_t *o)
{
    if (o == NULL)
        return;
    if (o->mhd)
        MHD_stop_daemon(o->mhd); /* joins the HTTP thread */
    obs_reg_free(o->reg);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

unsigned short obs_port(const obs_t *o)
{
    return o ? o->port : 0;
}

/* ---- health and readiness ------------------------------------------------------------ */

void obs_heartbeat(obs_t *o)
{
    if (o)
        atomic_store_explicit(&o->heartbeat_ns, bd_mono_ns(), memory_order_relaxed);
}

int obs_ready_set(obs_t *o, const char *name, bool ok, const char *reason)
{
    if (o == NULL || name == NULL || name[0] == '\0' || strlen(name) >= OBS_READY_NAME_MAX)
        return BD_EINVAL;
    int rc = BD_OK;
    pthread_mutex_lock(&o->mu);
    ready_cond_t *c = NULL;
    for (size_t i = 0; i < o->nready && c == NULL; i++)
        if (strcmp(o->ready[i].name, name) == 0)
            c = &o->ready[i];
    if (c == NULL) {
        if (o->nready == OBS_READY_MAX) {
            rc = BD_EFULL;
            goto out;
        }
        c = &o->ready[o->nready++];
        snprintf(c->name, sizeof(c->name), "%s", name);
    }
    c->ok = ok;
    snprintf(c->reason, sizeof(c->reason), "%s", reason ? reason : "not ready");
out:
    pthread_mutex_unlock(&o->mu);
    return rc;
}

/* ---- HTTP ---------------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             char *body, size_t len)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

__attribute__((format(printf, 3, 4))) static enum MHD_Result
reply_text(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char *body = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&body, fmt, ap);
    va_end(ap);
    if (n < 0)
        return MHD_NO;
    return reply(c, status, "text/plain; charset=utf-8", body, (size_t)n);
}

static enum MHD_Result serve_healthz(obs_t *o, struct MHD_Connection *c)
{
    uint64_t last = atomic_load_explicit(&o->heartbeat_ns, memory_order_relaxed);
    uint64_t now = bd_mono_ns();
    uint64_t age = now > last ? now - last : 0;
    if (age <= o->staleness_ns)
        return reply_text(c, MHD_HTTP_OK, "ok");
    return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                      "event loop stalled: last heartbeat %llu ms ago (limit %llu ms)\n",
                      (unsigned long long)(age / 1000000u),
                      (unsigned long long)(o->staleness_ns / 1000000u));
}

static enum MHD_Result serve_readyz(obs_t *o, struct MHD_Connection *c)
{
    char *body = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&body, &len);
    if (f == NULL)
        return MHD_NO;
    bool ready = true;
    pthread_mutex_lock(&o->mu);
    for (size_t i = 0; i < o->nready; i++) {
        if (!o->ready[i].ok) {
            ready = false;
            fprintf(f, "%s: %s\n", o->ready[i].name, o->ready[i].reason);
        }
    }
    pthread_mutex_unlock(&o->mu);
    if (ready)
        fputs("ok", f);
    if (fclose(f) != 0) {
        free(body);
        return MHD_NO;
    }
    return reply(c, ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
                 "text/plain; charset=utf-8", body, len);
}

static enum MHD_Result serve_metrics(obs_t *o, struct MHD_Connection *c)
{
    char *text = NULL;
    size_t len = 0;
    if (obs_reg_render(o->reg, &text, &len) != BD_OK)
        return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    return reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    static int first_call_marker;
    obs_t *o = cls;
    if (*con_cls == NULL) { /* headers only: answer once the (discarded) body is in */
        *con_cls = &first_call_marker;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (strcmp(url, "/healthz") == 0)
        return serve_healthz(o, c);
    if (strcmp(url, "/readyz") == 0)
        return serve_readyz(o, c);
    if (strcmp(url, "/metrics") == 0)
        return serve_metrics(o, c);
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    bd_warn("health server: %s", msg);
}

int obs_start(obs_t *o, bd_err_t *err)
{
    bd_err_clear(err);
    if (o == NULL)
        return bd_err_set(err, BD_EINVAL, "no obs_t");
    if (o->mhd)
        return bd_err_set(err, BD_EBUSY, "health server already started on %s", o->addr);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (o->ipv6)
        flags |= MHD_USE_IPv6;
    obs_heartbeat(o);
    uint16_t port = ntohs(o->ipv6 ? ((struct sockaddr_in6 *)&o->sa)->sin6_port
                                  : ((struct sockaddr_in *)&o->sa)->sin_port);
    errno = 0;
    o->mhd = MHD_start_daemon(flags, port, NULL, NULL, on_request, o,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, /* first, as MHD asks */
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&o->sa,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
    if (o->mhd == NULL) {
        int e = errno;
        return bd_err_set(err, BD_EIO, "health server: cannot listen on %s: %s", o->addr,
                          e ? strerror(e) : "libmicrohttpd failed");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(o->mhd, MHD_DAEMON_INFO_BIND_PORT);
    o->port = info && info->port ? info->port : port;
    return BD_OK;
}
