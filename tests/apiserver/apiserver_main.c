/*
 * apiserver_main.c - bd-apiserver: the Kubernetes API-server test double as a process,
 * for shell tests (kubectl) and for running bindy against it by hand. Test equipment only.
 *
 *   bd-apiserver [--port N] [--bind ADDR] [--port-file FILE] [--token T]
 *                [--tls-cert FILE --tls-key FILE] [--history N] [--bookmark-ms MS]
 *                [--server-version X.Y.Z]
 *
 * Prints "bd-apiserver listening on URL" and, with --port-file, writes the port there
 * (atomically) once it listens. Stops on SIGINT or SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apiserver.h"
#include "log.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    return buf;
}

static void usage(void)
{
    fprintf(stderr, "usage: bd-apiserver [--port N] [--bind ADDR] [--port-file FILE] "
                    "[--token T] [--tls-cert FILE --tls-key FILE] [--history N] "
                    "[--bookmark-ms MS] [--server-version X.Y.Z]\n");
}

int main(int argc, char **argv)
{
    bd_log_init_from_env();
    bd_apiserver_opts_t o;
    bd_apiserver_opts_init(&o);
    const char *port_file = NULL, *cert = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        if (strcmp(a, "--port") == 0)
            o.port = (unsigned short)atoi(v);
        else if (strcmp(a, "--bind") == 0)
            o.bind_addr = v;
        else if (strcmp(a, "--port-file") == 0)
            port_file = v;
        else if (strcmp(a, "--token") == 0)
            o.token = v;
        else if (strcmp(a, "--tls-cert") == 0)
            cert = v;
        else if (strcmp(a, "--tls-key") == 0)
            key = v;
        else if (strcmp(a, "--history") == 0)
            o.history = (size_t)atol(v);
        else if (strcmp(a, "--bookmark-ms") == 0)
            o.bookmark_ms = (unsigned)atoi(v);
        else if (strcmp(a, "--server-version") == 0)
            o.server_version = v;
        else {
            usage();
            return 2;
        }
        i++;
    }
    char *cert_pem = NULL, *key_pem = NULL;
    if (cert || key) {
        cert_pem = cert ? read_file(cert) : NULL;
        key_pem = key ? read_file(key) : NULL;
        if (!cert_pem || !key_pem) {
            fprintf(stderr, "bd-apiserver: cannot read --tls-cert/--tls-key\n");
            free(cert_pem);
            free(key_pem);
            return 2;
        }
        o.tls_cert_pem = cert_pem;
        o.tls_key_pem = key_pem;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    bd_apiserver_t *s = NULL;
    bd_err_t err;
    bd_err_clear(&err);
    if (bd_apiserver_start(&o, &s, &err) != 0) {
        fprintf(stderr, "bd-apiserver: %s\n", err.msg);
        free(cert_pem);
        free(key_pem);
        return 1;
    }
    printf("bd-apiserver listening on %s\n", bd_apiserver_url(s));
    fflush(stdout);
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", (unsigned)bd_apiserver_port(s)) < 0 || fclose(f) != 0 ||
            rename(tmp, port_file) != 0) {
            fprintf(stderr, "bd-apiserver: cannot write %s\n", port_file);
            bd_apiserver_stop(s);
            free(cert_pem);
            free(key_pem);
            return 1;
        }
    }
    while (!stop_flag)
        pause();
    bd_apiserver_stop(s);
    free(cert_pem);
    free(key_pem);
    return 0;
}
