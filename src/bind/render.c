#include "render.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable string with a sticky error, so rendering reads top to bottom. */
typedef struct {
    char *s;
    size_t len, cap;
    int err;
} sbuf_t;

__attribute__((format(printf, 2, 3))) static void put(sbuf_t *b, const char *fmt, ...)
{
    if (b->err)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = BD_EINTERNAL;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = (b->cap ? b->cap : 1024);
        while (ncap <= b->len + (size_t)n)
            ncap *= 2;
        char *ns = realloc(b->s, ncap);
        if (ns == NULL) {
            b->err = BD_ENOMEM;
            return;
        }
        b->s = ns;
        b->cap = ncap;
    }
}

/* An address match list element as BIND writes it: "!10.0.0.0/8;" or "key \"x\";". */
static void put_acl_item(sbuf_t *b, const char *item)
{
    const char *p = item;
    int neg = 0;
    if (*p == '!') {
        neg = 1;
        p++;
        while (*p == ' ')
            p++;
    }
    if (strncmp(p, "key ", 4) == 0)
        put(b, " %skey \"%s\";", neg ? "!" : "", p + 4);
    else
        put(b, " %s%s;", neg ? "!" : "", p);
}

static void put_acl(sbuf_t *b, const char *stmt, const res_strv_t *own, const res_strv_t *fallback,
                    const char *dflt, const char *always)
{
    const res_strv_t *v = own && own->n ? own : fallback && fallback->n ? fallback : NULL;
    put(b, "    %s {", stmt);
    if (always)
        put(b, " %s", always);
    if (v)
        for (size_t i = 0; i < v->n; i++)
            put_acl_item(b, v->v[i]);
    else if (dflt)
        put(b, " %s", dflt);
    put(b, " };\n");
}

static const char *yesno(res_tri_t own, res_tri_t fallback, const char *dflt)
{
    res_tri_t t = own != RES_TRI_UNSET ? own : fallback;
    return t == RES_TRI_UNSET ? dflt : t == RES_TRI_TRUE ? "yes" : "no";
}

static void put_endpoints(sbuf_t *b, const bind_endpoint_t *eps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put(b, " %s port %u key \"%s\";", eps[i].addr, eps[i].port, BIND_XFR_KEY_NAME);
}

int bind_render_named_conf(const res_t *inst, const res_t *cluster, const bind_render_params_t *prm,
                           char **out, bd_err_t *err)
{
    *out = NULL;
    if (inst == NULL || inst->kind != RES_BIND9INSTANCE)
        return bd_err_set(err, BD_EINVAL, "render: not a Bind9Instance");
    if (!prm->directory || !prm->keys_file || !prm->catalog || !prm->control_addr || prm->nupstream == 0 ||
        (strcmp(prm->control_addr, "*") == 0 && !prm->control_allow))
        return bd_err_set(err, BD_EINVAL, "render %s/%s: directory, keys_file, catalog, control_addr (with "
                          "control_allow when \"*\") and an upstream are required", inst->meta.ns, inst->meta.name);
    const res_config_t *c = &inst->u.instance.config;
    const res_config_t *g = cluster && cluster->kind == RES_BIND9CLUSTER ? &cluster->u.cluster.global : NULL;
    sbuf_t b = {0};

    put(&b, "// named.conf of Bind9Instance %s/%s (%s), rendered by bindy. Do not edit:\n"
            "// zones arrive through the catalog zone %s.\n",
        inst->meta.ns, inst->meta.name, inst->u.instance.role == RES_ROLE_PRIMARY ? "primary" : "secondary",
        prm->catalog);
    put(&b, "include \"%s\";\n\n", prm->keys_file);
    put(&b, "options {\n");
    put(&b, "    directory \"%s\";\n", prm->directory);
    put(&b, "    pid-file \"%s/named.pid\";\n", prm->directory);
    put(&b, "    listen-on port %u { %s; };\n", prm->port, prm->listen_v4 ? prm->listen_v4 : "any");
    put(&b, "    listen-on-v6 port %u { %s; };\n", prm->port, prm->listen_v6 ? prm->listen_v6 : "none");
    const char *recursion = yesno(c->recursion, g ? g->recursion : RES_TRI_UNSET, "no");
    put(&b, "    recursion %s;\n", recursion);
    put_acl(&b, "allow-query", &c->allow_query, g ? &g->allow_query : NULL, "any;", NULL);
    /* Downstream servers authenticate transfers with the transfer key. */
    put_acl(&b, "allow-transfer", &c->allow_transfer, g ? &g->allow_transfer : NULL, NULL,
            "key \"" BIND_XFR_KEY_NAME "\";");
    /* NOTIFY is accepted from the upstream servers: signed with the transfer key (in a
     * cluster the upstream addresses are Services, while a NOTIFY comes from the address
     * of whichever pod sends it), or from their addresses. */
    put(&b, "    allow-notify { key \"%s\";", BIND_XFR_KEY_NAME);
    for (size_t i = 0; i < prm->nupstream; i++) {
        size_t j = 0;
        while (j < i && strcmp(prm->upstream[j].addr, prm->upstream[i].addr) != 0)
            j++;
        if (j == i) /* upstreams on one address (ports differ) are one ACL entry */
            put(&b, " %s;", prm->upstream[i].addr);
    }
    put(&b, " };\n");
    const res_strv_t *fw = c->forwarders.n ? &c->forwarders : g ? &g->forwarders : NULL;
    if (strcmp(recursion, "yes") == 0 && fw && fw->n) {
        put(&b, "    forwarders {");
        for (size_t i = 0; i < fw->n; i++)
            put(&b, " %s;", fw->v[i]);
        put(&b, " };\n");
    }
    put(&b, "    dnssec-validation %s;\n",
        yesno(c->dnssec_validation, g ? g->dnssec_validation : RES_TRI_UNSET, "no"));
    /* Thousands of zones must refresh quickly after a NOTIFY storm or a restart. Transfers
     * from one server stay at 16 at a time: every replica pulls from the same hidden
     * primary, which takes 64 TCP clients (BIND_SERVER_DEFAULT_MAX_CLIENTS) and closes the
     * rest; named retries a transfer cut that way only a minute later (with 50 per server,
     * 1,000 new zones on two primary replicas left some unserved for 50 s). */
    put(&b, "    serial-query-rate 1000;\n    notify-rate 1000;\n    startup-notify-rate 1000;\n"
            "    transfers-in 100;\n    transfers-out 100;\n    transfers-per-ns 16;\n"
            "    notify %s;\n"
            /* BIND waits notify-delay (5 s by default) before telling downstream servers
             * about a change: that would be the secondaries' lag. */
            "    notify-delay 0;\n",
        prm->nnotify ? "explicit" : "no");
    if (prm->nnotify) {
        put(&b, "    also-notify {");
        put_endpoints(&b, prm->notify, prm->nnotify);
        put(&b, " };\n");
    }
    /* A zone's journal is the only source of IXFR that named serves downstream, and only
     * a zone with a file has one: in memory, every change reaches the next server as a
     * whole-zone transfer. An IXFR received is journaled as it is; an AXFR (bindy
     * restarted, or the change outgrew its history) only with ixfr-from-differences,
     * which costs a comparison of the two versions of that zone. */
    if (prm->zone_files)
        put(&b, "    ixfr-from-differences secondary;\n");
    put(&b, "    allow-new-zones no;\n");
    put(&b, "    catalog-zones {\n        zone \"%s\" default-primaries {", prm->catalog);
    put_endpoints(&b, prm->upstream, prm->nupstream);
    put(&b, " } in-memory %s min-update-interval 1;\n    };\n};\n\n", prm->zone_files ? "no" : "yes");
    /* In a cluster bindy's readiness reaches each pod at its own address (rndc retransfer
     * for a laggard), from wherever the operator runs, so the channel listens everywhere
     * and admits any address: the HMAC key authenticates every command, and named drops
     * a connection whose first message is not signed with it. "*" is IPv4 only in BIND;
     * "::" adds IPv6 pods (where the pod has no IPv6, named logs a warning and goes on). */
    const char *allow = prm->control_allow ? prm->control_allow : prm->control_addr;
    put(&b, "controls {\n");
    if (strcmp(prm->control_addr, "*") == 0)
        put(&b, "    inet * port %u allow { %s; } keys { \"%s\"; };\n"
                "    inet :: port %u allow { %s; } keys { \"%s\"; };\n",
            prm->control_port, allow, BIND_RNDC_KEY_NAME, prm->control_port, allow, BIND_RNDC_KEY_NAME);
    else
        put(&b, "    inet %s port %u allow { %s; } keys { \"%s\"; };\n", prm->control_addr, prm->control_port,
            allow, BIND_RNDC_KEY_NAME);
    put(&b, "};\n\n");
    put(&b, "zone \"%s\" {\n    type secondary;\n", prm->catalog);
    if (prm->zone_files)
        put(&b, "    file \"%s.db\";\n", prm->catalog);
    put(&b, "    primaries {");
    put_endpoints(&b, prm->upstream, prm->nupstream);
    put(&b, " };\n};\n");

    if (b.err) {
        free(b.s);
        return bd_err_set(err, b.err, "render %s/%s: %s", inst->meta.ns, inst->meta.name, bd_strerror(b.err));
    }
    *out = b.s;
    return BD_OK;
}

int bind_render_keys(const char *xfr_alg, const char *xfr_secret_b64, const char *rndc_alg,
                     const char *rndc_secret_b64, char **out, bd_err_t *err)
{
    *out = NULL;
    if (!xfr_alg || !xfr_secret_b64 || !rndc_alg || !rndc_secret_b64)
        return bd_err_set(err, BD_EINVAL, "render keys: algorithm and secret are required for both keys");
    sbuf_t b = {0};
    put(&b, "key \"%s\" {\n    algorithm %s;\n    secret \"%s\";\n};\n", BIND_XFR_KEY_NAME, xfr_alg, xfr_secret_b64);
    put(&b, "key \"%s\" {\n    algorithm %s;\n    secret \"%s\";\n};\n", BIND_RNDC_KEY_NAME, rndc_alg, rndc_secret_b64);
    if (b.err) {
        free(b.s);
        return bd_err_set(err, b.err, "render keys: %s", bd_strerror(b.err));
    }
    *out = b.s;
    return BD_OK;
}
