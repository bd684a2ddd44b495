/*
 * client_setup.c - the client's options, its creation and release, TLS material checks,
 * tls-server-name, and the bearer token (read at start, re-read when its file changes).
 * The transport is in client.c.
 */
#include "client.h"
#include "clock.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "client_int.h"
#include "hmap.h"
#include "log.h"

#ifndef BINDY_VERSION
#define BINDY_VERSION "0"
#endif

/* ---- options -------------------------------------------------------------------------- */

void k8s_client_opts_init(k8s_client_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->qps = 20;
    o->burst = 30;
    o->timeout_ms = 30000;
    o->connect_timeout_ms = 10000;
    o->max_retries = 10;
    o->user_agent = "bindy/" BINDY_VERSION;
    o->field_manager = "bindy";
    const char *q = getenv("BINDY_KUBE_QPS");
    if (q != NULL && *q) {
        char *end;
        errno = 0;
        double v = strtod(q, &end);
        if (errno == 0 && *end == '\0' && isfinite(v) && v > 0)
            o->qps = v;
        else
            bd_warn("BINDY_KUBE_QPS=\"%.32s\" is not a positive number; using %g", q, o->qps);
    }
    const char *b = getenv("BINDY_KUBE_BURST");
    if (b != NULL && *b) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(b, &end, 10);
        if (errno == 0 && *end == '\0' && v >= 1 && v <= 100000)
            o->burst = (unsigned)v;
        else
            bd_warn("BINDY_KUBE_BURST=\"%.32s\" is not a count 1..100000; using %u", b, o->burst);
    }
}

/* ---- bearer token --------------------------------------------------------------------- */

/* Read the token file into *out (malloc'd, trimmed). Never logs the content. */
static int token_read(const char *path, char **out, bd_err_t *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return bd_err_set(err, BD_EIO, "token file %s: %s", path, strerror(errno));
    char buf[16384];
    size_t n = fread(buf, 1, sizeof(buf), f);
    int rc = BD_OK;
    if (ferror(f))
        rc = bd_err_set(err, BD_EIO, "token file %s: read error", path);
    else if (n == sizeof(buf))
        rc = bd_err_set(err, BD_EINVAL, "token file %s: larger than %zu bytes", path,
                        sizeof(buf) - 1);
    fclose(f);
    if (rc == BD_OK) {
        while (n > 0 && isspace((unsigned char)buf[n - 1]))
            n--;
        size_t lead = 0;
        while (lead < n && isspace((unsigned char)buf[lead]))
            lead++;
        if (n == lead) {
            rc = bd_err_set(err, BD_EINVAL, "token file %s is empty", path);
        } else if (memchr(buf + lead, '\n', n - lead) || memchr(buf + lead, '\r', n - lead) ||
                   memchr(buf + lead, '\0', n - lead)) {
            rc = bd_err_set(err, BD_EINVAL, "token file %s: not a single-line token", path);
        } else {
            *out = strndup(buf + lead, n - lead);
            if (*out == NULL)
                rc = bd_err_set(err, BD_ENOMEM, "token file %s: out of memory", path);
        }
    }
    explicit_bzero(buf, sizeof(buf));
    return rc;
}

/* Re-read the token file when it changed (stat at most once a second). */
void k8s__token_refresh(k8s_client_t *c, bool force)
{
    if (c->token_file == NULL)
        return;
    double now = bd_mono_s();
    if (!force && now - c->token_checked < K8S__TOKEN_CHECK_S)
        return;
    c->token_checked = now;
    struct stat st;
    if (stat(c->token_file, &st) != 0) {
        if (c->token_stat_ok)
            bd_warn("kubernetes: token file %s: %s; keeping the last token", c->token_file,
                    strerror(errno));
        c->token_stat_ok = false;
        return;
    }
    if (!force && c->token_stat_ok && st.st_mtim.tv_sec == c->token_mtime.tv_sec &&
        st.st_mtim.tv_nsec == c->token_mtime.tv_nsec && st.st_size == c->token_size &&
        st.st_ino == c->token_ino)
        return;
    bd_err_t e;
    bd_err_clear(&e);
    char *t = NULL;
    if (token_read(c->token_file, &t, &e) != BD_OK) {
        bd_warn("kubernetes: %s; keeping the last token", e.msg);
        return; /* try again next second: the stat key is left unchanged */
    }
    c->token_mtime = st.st_mtim;
    c->token_size = st.st_size;
    c->token_ino = st.st_ino;
    c->token_stat_ok = true;
    if (c->token != NULL && strcmp(c->token, t) != 0)
        bd_info("kubernetes: token file %s changed; using the new token", c->token_file);
    k8s__wipe_free(c->token);
    c->token = t;
}

/* ---- the client ------------------------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Check PEM material with OpenSSL so a bad certificate is an error now, not at connect. */
static int check_tls_material(const k8s_config_t *cfg, bd_err_t *err)
{
    int rc = BD_OK;
    BIO *bio = NULL;
    X509 *x = NULL;
    EVP_PKEY *pk = NULL;
    if (cfg->ca_pem != NULL) {
        bio = BIO_new_mem_buf(cfg->ca_pem, -1);
        if (bio == NULL)
            goto nomem;
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x == NULL) {
            rc = bd_err_set(err, BD_EINVAL, "%s: the CA bundle holds no PEM certificate",
                            cfg->origin);
            goto out;
        }
        X509_free(x);
        x = NULL;
        BIO_free(bio);
        bio = NULL;
    }
    if ((cfg->cert_pem == NULL) != (cfg->key_pem == NULL)) {
        rc = bd_err_set(err, BD_EINVAL,
                        "%s: a client certificate needs its key and a key its certificate",
                        cfg->origin);
        goto out;
    }
    if (cfg->cert_pem != NULL) {
        bio = BIO_new_mem_buf(cfg->cert_pem, -1);
        if (bio == NULL)
            goto nomem;
        x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        BIO_free(bio);
        bio = NULL;
        if (x == NULL) {
            rc = bd_err_set(err, BD_EINVAL, "%s: the client certificate is not a PEM certificate",
                            cfg->origin);
            goto out;
        }
        bio = BIO_new_mem_buf(cfg->key_pem, -1);
        if (bio == NULL)
            goto nomem;
        pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        if (pk == NULL) {
            rc =
                bd_err_set(err, BD_EINVAL,
                           "%s: the client key is not an unencrypted PEM private key", cfg->origin);
            goto out;
        }
        if (X509_check_private_key(x, pk) != 1) {
            rc =
                bd_err_set(err, BD_EINVAL,
                           "%s: the client key does not match the client certificate", cfg->origin);
            goto out;
        }
    }
    goto out;
nomem:
    rc = bd_err_set(err, BD_ENOMEM, "out of memory checking TLS material");
out:
    ERR_clear_error();
    EVP_PKEY_free(pk);
    X509_free(x);
    BIO_free(bio);
    return rc;
}

/* Base URL and CONNECT_TO for tls-server-name: the URL names tls-server-name (SNI and
 * certificate check) while the connection goes to the configured host. */
static int setup_base(k8s_client_t *c, const k8s_config_t *cfg, bd_err_t *err)
{
    const char *s = cfg->server;
    bool https = strncmp(s, "https://", 8) == 0;
    if (!https && strncmp(s, "http://", 7) != 0)
        return bd_err_set(err, BD_EINVAL, "%s: server \"%s\" is not an http(s) URL", cfg->origin,
                          s);
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/')
        n--;
    if (cfg->tls_server_name == NULL || *cfg->tls_server_name == '\0' || !https) {
        c->base_url = strndup(s, n);
        return c->base_url != NULL ? BD_OK : bd_err_set(err, BD_ENOMEM, "out of memory");
    }
    const char *h = s + 8, *hend;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (hend == NULL)
            return bd_err_set(err, BD_EINVAL, "%s: server \"%s\": bad IPv6 literal", cfg->origin,
                              s);
        hend++;
    } else {
        hend = h + strcspn(h, ":/");
    }
    const char *port = "443";
    size_t plen = 3;
    const char *rest = hend;
    if (*hend == ':') {
        port = hend + 1;
        plen = strcspn(port, "/");
        rest = port + plen;
    }
    size_t rl = (size_t)(s + n - rest);
    if (rest > s + n)
        rl = 0;
    char buf[1024];
    int w = snprintf(buf, sizeof(buf), "https://%s:%.*s%.*s", cfg->tls_server_name, (int)plen, port,
                     (int)rl, rest);
    if (w < 0 || (size_t)w >= sizeof(buf))
        return bd_err_set(err, BD_EINVAL, "%s: server URL too long", cfg->origin);
    c->base_url = strdup(buf);
    snprintf(buf, sizeof(buf), "%s:%.*s:%.*s:%.*s", cfg->tls_server_name, (int)plen, port,
             (int)(hend - h), h, (int)plen, port);
    c->connect_to = curl_slist_append(NULL, buf);
    if (c->base_url == NULL || c->connect_to == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    return BD_OK;
}

static char *dup_or_null(const char *s, bool *fail)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *fail = true;
    return d;
}

int k8s_client_new(struct ev_loop *loop, const k8s_config_t *cfg, const k8s_client_opts_t *opts,
                   k8s_client_t **out, bd_err_t *err)
{
    *out = NULL;
    k8s_client_opts_t def;
    if (opts == NULL) {
        k8s_client_opts_init(&def);
        opts = &def;
    }
    if (loop == NULL || cfg == NULL || cfg->server == NULL)
        return bd_err_set(err, BD_EINVAL,
                          "kubernetes client: loop, configuration and server are required");
    const char *origin = cfg->origin != NULL ? cfg->origin : "configuration";
    if (!(opts->qps > 0) || !isfinite(opts->qps) || opts->burst == 0)
        return bd_err_set(err, BD_EINVAL,
                          "kubernetes client: qps must be > 0 and burst >= 1 (qps %g, burst %u)",
                          opts->qps, opts->burst);
    const char *ua =
        opts->user_agent != NULL && *opts->user_agent ? opts->user_agent : "bindy/" BINDY_VERSION;
    const char *fm =
        opts->field_manager != NULL && *opts->field_manager ? opts->field_manager : "bindy";
    if (strlen(fm) > 128)
        return bd_err_set(err, BD_EINVAL,
                          "kubernetes client: field manager longer than 128 characters");
    if (strpbrk(ua, "\r\n") != NULL)
        return bd_err_set(err, BD_EINVAL, "kubernetes client: user agent holds a line break");
    if (cfg->token != NULL && strpbrk(cfg->token, "\r\n") != NULL) /* never quote it */
        return bd_err_set(err, BD_EINVAL, "%s: the bearer token holds a line break", origin);
    k8s_config_t named = *cfg;
    named.origin = (char *)origin;
    int rc = check_tls_material(&named, err);
    if (rc != BD_OK)
        return rc;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return bd_err_set(err, BD_EINTERNAL, "curl_global_init: %s",
                          curl_easy_strerror(curl_init_rc));

    k8s_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return bd_err_set(err, BD_ENOMEM, "kubernetes client: out of memory");
    c->loop = loop;
    ev_init(&c->curl_timer, k8s__curl_timer_cb);
    c->curl_timer.data = c;
    c->qps = opts->qps;
    c->burst = opts->burst;
    c->timeout_ms = opts->timeout_ms;
    c->connect_timeout_ms = opts->connect_timeout_ms;
    c->max_retries = opts->max_retries;
    c->tokens = c->burst;
    c->bucket_t = bd_mono_s();
    c->insecure = cfg->insecure;
    bool fail = false;
    c->ca_pem = dup_or_null(cfg->ca_pem, &fail);
    c->cert_pem = dup_or_null(cfg->cert_pem, &fail);
    c->key_pem = dup_or_null(cfg->key_pem, &fail);
    c->token = dup_or_null(cfg->token, &fail);
    c->token_file = dup_or_null(cfg->token_file, &fail);
    c->origin = dup_or_null(origin, &fail);
    c->user_agent = dup_or_null(ua, &fail);
    char *efm = k8s__escape(fm);
    if (efm != NULL) {
        size_t l = strlen(efm) + 16;
        c->fm_query = malloc(l);
        if (c->fm_query != NULL)
            snprintf(c->fm_query, l, "fieldManager=%s", efm);
        free(efm);
    }
    c->backoff = bd_hmap_new();
    if (fail || c->fm_query == NULL || c->backoff == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "kubernetes client: out of memory");
        goto fail;
    }
    if ((rc = setup_base(c, &named, err)) != BD_OK)
        goto fail;
    if (c->token_file != NULL) {
        char *t = NULL;
        bd_err_t te;
        bd_err_clear(&te);
        rc = token_read(c->token_file, &t, &te);
        if (rc != BD_OK) {
            rc = bd_err_set(err, rc == BD_ENOMEM ? BD_ENOMEM : BD_EINVAL, "%s: %s", origin, te.msg);
            goto fail;
        }
        k8s__wipe_free(t);
        k8s__token_refresh(c, true);
    }
    c->multi = curl_multi_init();
    c->share = curl_share_init();
    if (c->multi == NULL || c->share == NULL) {
        rc = bd_err_set(err, BD_EINTERNAL,
                        "kubernetes client: curl_multi_init/curl_share_init failed");
        goto fail;
    }
    if (curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, k8s__multi_sock_fn) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, k8s__multi_timer_fn) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX) != CURLM_OK) {
        rc = bd_err_set(err, BD_EINTERNAL, "kubernetes client: curl refused a multi option");
        goto fail;
    }
    *out = c;
    return BD_OK;
fail:
    k8s__client_destroy(c);
    return rc;
}

void k8s__client_destroy(k8s_client_t *c)
{
    c->closing = true;
    while (c->calls != NULL)
        k8s__call_finish(c->calls);
    ev_timer_stop(c->loop, &c->curl_timer);
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi); /* may report CURL_POLL_REMOVE for cached connections */
    while (c->socks != NULL)
        k8s__sock_drop(c, c->socks);
    ev_timer_stop(c->loop, &c->curl_timer);
    if (c->share != NULL)
        curl_share_cleanup(c->share);
    if (c->backoff != NULL) {
        size_t pos = 0;
        const char *key;
        void *v;
        while (bd_hmap_next(c->backoff, &pos, &key, &v))
            free(v);
        bd_hmap_free(c->backoff);
    }
    free(c->base_url);
    curl_slist_free_all(c->connect_to);
    free(c->ca_pem);
    free(c->cert_pem);
    k8s__wipe_free(c->key_pem);
    k8s__wipe_free(c->token);
    free(c->token_file);
    free(c->origin);
    free(c->user_agent);
    free(c->fm_query);
    free(c);
}

void k8s_client_free(k8s_client_t *c)
{
    if (c == NULL)
        return;
    if (c->depth == 0) {
        k8s__client_destroy(c);
        return;
    }
    /* inside one of our loop callbacks: cancel everything now, release on unwind */
    c->closing = true;
    while (c->calls != NULL)
        k8s__call_finish(c->calls);
    ev_timer_stop(c->loop, &c->curl_timer);
    for (k8s__sock_t *s = c->socks; s != NULL; s = s->next)
        ev_io_stop(c->loop, &s->io);
}

void k8s_client_stats(const k8s_client_t *c, k8s_client_stats_t *st) { *st = c->st; }

struct ev_loop *k8s_client_loop(const k8s_client_t *c)
{
    return c->loop;
}
