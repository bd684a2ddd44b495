/*
 * k8s_fixture.h - the fixture of the Kubernetes unit tests (test equipment only): the
 * API-server double with the project's CRDs and the namespaces dns-system and other, a
 * libev loop, a k8s_client on it; objects changed in the double from the test's side;
 * the loop run until a condition or a deadline. Prefix kfx_.
 *
 * Every failure is a cmocka assertion: nothing here returns an error.
 */
#ifndef BD_TEST_K8S_FIXTURE_H
#define BD_TEST_K8S_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>
#include <jansson.h>

#include "apiserver.h"
#include "client.h"

typedef struct kfx_opts {
    unsigned bookmark_ms;       /* the double's BOOKMARK interval; 0: its default */
    size_t history;             /* the double's event history; 0: its default */
    const char *token;          /* the double requires this bearer token; NULL: none */
    const char *tls_cert_pem;   /* with tls_key_pem: the double serves HTTPS */
    const char *tls_key_pem;
    double qps;                 /* the client's; 0: k8s_client_opts_init's */
    unsigned burst;             /* the client's; 0: k8s_client_opts_init's */
} kfx_opts_t;

typedef struct kfx {
    bd_apiserver_t *as;
    struct ev_loop *loop;
    k8s_client_t *c;
    k8s_config_t cfg; /* the double's URL, namespace "default", origin "test" */
} kfx_t;

/* The double (CRDs from BINDY_SOURCE_DIR or the source tree, two namespaces), the loop
 * and f->cfg; no client. o may be NULL (every default). */
void kfx_start_double(kfx_t *f, const kfx_opts_t *o);
/* A client on f->cfg into f->c (o NULL: the defaults). The caller frees an earlier one. */
void kfx_client(kfx_t *f, const k8s_client_opts_t *o);
/* kfx_start_double, then a client with o's qps and burst. */
void kfx_start(kfx_t *f, const kfx_opts_t *o);
/* Free the client, the loop and the double; each may be NULL. */
void kfx_stop(kfx_t *f);

/* Run the loop until cond(arg) (NULL: never) or timeout_s passed; cond's last value. */
bool kfx_run_until(struct ev_loop *loop, bool (*cond)(void *arg), void *arg, double timeout_s);
void kfx_run_for(struct ev_loop *loop, double s);
/* Run the loop until *counter >= want or timeout_s passed; whether it was reached. */
bool kfx_wait_count(struct ev_loop *loop, const int *counter, int want, double timeout_s);

/* A blocking HTTP call to the double (the loop does not run meanwhile); the status, 0
 * when there was no answer. ctype and body may be NULL. */
long kfx_http(kfx_t *f, const char *method, const char *path, const char *ctype, const char *body);
/* GET path from the double (blocking, logged like any request): the parsed body of a 200
 * answer (a new reference); any other answer fails the test. */
json_t *kfx_get_json(kfx_t *f, const char *path);
/* An ARecord ns/name with one address: created in the store, merge-patched and deleted
 * over HTTP (200, or 200/202). */
void kfx_create_a(kfx_t *f, const char *ns, const char *name, const char *ip);
void kfx_patch_a(kfx_t *f, const char *ns, const char *name, const char *ip);
void kfx_delete_a(kfx_t *f, const char *ns, const char *name);

#endif
