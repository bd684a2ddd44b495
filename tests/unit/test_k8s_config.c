/*
 * test_k8s_config.c - in-cluster and kubeconfig configuration: service-account files in a
 * temp dir (BINDY_SERVICEACCOUNT_DIR), kubeconfig files with tokens, token files, client
 * certificates, CA files relative to the kubeconfig, chosen contexts and KUBECONFIG lists
 * merged as kubectl merges them; malformed files and unsupported plugins, each with an
 * error that names the file, the line and the field, and never a secret.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static char g_dir[256];

#define FAKE_CA "-----BEGIN CERTIFICATE-----\nMIIBfakeCA\n-----END CERTIFICATE-----\n"
#define FAKE_CERT "-----BEGIN CERTIFICATE-----\nMIIBfakeCERT\n-----END CERTIFICATE-----\n"
#define FAKE_KEY "-----BEGIN PRIVATE KEY-----\nMIIBfakeKEY\n-----END PRIVATE KEY-----\n"

static void write_at(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", g_dir, rel);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    mkdir(p, 0755);
    *slash = '/';
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *at(const char *rel)
{
    static char p[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(p[i], sizeof(p[i]), "%s/%s", g_dir, rel);
    return p[i];
}

static char *b64(const char *s)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s);
    char *o = malloc(n / 3 * 4 + 8);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        o[k++] = t[(v >> 18) & 63];
        o[k++] = t[(v >> 12) & 63];
        o[k++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        o[k++] = i + 2 < n ? t[v & 63] : '=';
    }
    o[k] = '\0';
    return o;
}

static int setup(void **state)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/bd-k8s-config-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv("BINDY_SERVICEACCOUNT_DIR");
    setenv("HOME", g_dir, 1);
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* ---- in-cluster --------------------------------------------------------------------- */

static void sa_files(void)
{
    write_at("sa/token", "eyJhbGciOiJSUzI1NiJ9.sa-token\n");
    write_at("sa/ca.crt", FAKE_CA);
    write_at("sa/namespace", "dns-system\n");
    setenv("BINDY_SERVICEACCOUNT_DIR", at("sa"), 1);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
}

static void test_in_cluster(void **state)
{
    sa_files();
    k8s_config_t *c = NULL;
    bd_err_t err;
    bd_err_clear(&err);
    assert_int_equal(k8s_config_in_cluster(&c, &err), 0);
    assert_string_equal(c->server, "https://10.96.0.1:443");
    assert_string_equal(c->token_file, at("sa/token"));
    assert_null(c->token);
    assert_string_equal(c->ca_pem, FAKE_CA);
    assert_string_equal(c->ns, "dns-system");
    assert_string_equal(c->origin, "in-cluster");
    assert_false(c->insecure);
    assert_null(c->cert_pem);
    k8s_config_free(c);

    /* IPv6 service address; no namespace file */
    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    unlink(at("sa/namespace"));
    assert_int_equal(k8s_config_in_cluster(&c, &err), 0);
    assert_string_equal(c->server, "https://[fd00:10:96::1]:443");
    assert_string_equal(c->ns, "default");
    k8s_config_free(c);

    /* k8s_config_load picks in-cluster when KUBECONFIG is unset */
    assert_int_equal(k8s_config_load(NULL, &c, &err), 0);
    assert_string_equal(c->origin, "in-cluster");
    k8s_config_free(c);
}

static void test_in_cluster_errors(void **state)
{
    k8s_config_t *c = NULL;
    bd_err_t err;
    bd_err_clear(&err);
    assert_int_equal(k8s_config_in_cluster(&c, &err), BD_ENOTFOUND);
    assert_null(c);
    assert_non_null(strstr(err.msg, "KUBERNETES_SERVICE_HOST"));

    sa_files();
    setenv("KUBERNETES_SERVICE_PORT", "https", 1);
    assert_int_equal(k8s_config_in_cluster(&c, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "KUBERNETES_SERVICE_PORT"));
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);

    unlink(at("sa/token"));
    assert_int_equal(k8s_config_in_cluster(&c, &err), BD_EIO);
    assert_null(c);
    assert_non_null(strstr(err.msg, at("sa/token")));

    write_at("sa/token", "\n");
    assert_int_equal(k8s_config_in_cluster(&c, &err), BD_EPARSE);
    assert_non_null(strstr(err.msg, "empty"));

    write_at("sa/token", "tok");
    write_at("sa/ca.crt", "not a certificate\n");
    assert_int_equal(k8s_config_in_cluster(&c, &err), BD_EPARSE);
    assert_non_null(strstr(err.msg, at("sa/ca.crt")));

    unlink(at("sa/ca.crt"));
    assert_int_equal(k8s_config_in_cluster(&c, &err), BD_EIO);
    assert_non_null(strstr(err.msg, at("sa/ca.crt")));
    assert_null(strstr(err.msg, "tok\n"));
}

/* ---- kubeconfig: good files -------------------------------------------------------------- */

static const char *KC_TOKEN = "apiVersion: v1\n"
                              "kind: Config\n"
                              "current-context: dev\n"
                              "clusters:\n"
                              "- name: dev-cluster\n"
                              "  cluster:\n"
                              "    server: https://dev.example:6443/\n"
                              "    certificate-authority: certs/ca.crt\n"
                              "- name: prod-cluster\n"
                              "  cluster:\n"
                              "    server: prod.example:443\n"
                              "    insecure-skip-tls-verify: true\n"
                              "    tls-server-name: kubernetes.default\n"
                              "users:\n"
                              "- name: dev-user\n"
                              "  user:\n"
                              "    token: dev-token-123\n"
                              "- name: prod-user\n"
                              "  user:\n"
                              "    tokenFile: secrets/token\n"
                              "    token: ignored-when-file-set\n"
                              "contexts:\n"
                              "- name: dev\n"
                              "  context:\n"
                              "    cluster: dev-cluster\n"
                              "    user: dev-user\n"
                              "    namespace: dns-system\n"
                              "- name: prod\n"
                              "  context:\n"
                              "    cluster: prod-cluster\n"
                              "    user: prod-user\n";

static void test_kubeconfig_token_and_files(void **state)
{
    write_at("kc/config", KC_TOKEN);
    write_at("kc/certs/ca.crt", FAKE_CA);
    write_at("kc/secrets/token", "prod-token\n");
    k8s_config_t *c = NULL;
    bd_err_t err;
    bd_err_clear(&err);

    /* the current context: token, CA file relative to the kubeconfig */
    assert_int_equal(k8s_config_kubeconfig(at("kc/config"), NULL, &c, &err), 0);
    assert_string_equal(c->server, "https://dev.example:6443");
    assert_string_equal(c->token, "dev-token-123");
    assert_null(c->token_file);
    assert_string_equal(c->ca_pem, FAKE_CA);
    assert_string_equal(c->ns, "dns-system");
    assert_false(c->insecure);
    assert_null(c->tls_server_name);
    char want[600];
    snprintf(want, sizeof(want), "kubeconfig %s context dev", at("kc/config"));
    assert_string_equal(c->origin, want);
    k8s_config_free(c);

    /* a chosen context: tokenFile relative to the kubeconfig, insecure, tls-server-name */
    assert_int_equal(k8s_config_kubeconfig(at("kc/config"), "prod", &c, &err), 0);
    assert_string_equal(c->server, "https://prod.example:443");
    assert_string_equal(c->token_file, at("kc/secrets/token"));
    assert_string_equal(c->token, "ignored-when-file-set"); /* kept; the file wins in the client */
    assert_true(c->insecure);
    assert_string_equal(c->tls_server_name, "kubernetes.default");
    assert_null(c->ca_pem);
    assert_string_equal(c->ns, "default");
    k8s_config_free(c);

    /* KUBECONFIG and ~/.kube/config through k8s_config_load */
    setenv("KUBECONFIG", at("kc/config"), 1);
    assert_int_equal(k8s_config_load("prod", &c, &err), 0);
    assert_string_equal(c->server, "https://prod.example:443");
    k8s_config_free(c);
    unsetenv("KUBECONFIG");
    write_at(".kube/config", KC_TOKEN);
    write_at(".kube/certs/ca.crt", FAKE_CA);
    assert_int_equal(k8s_config_load(NULL, &c, &err), 0);
    assert_string_equal(c->server, "https://dev.example:6443");
    snprintf(want, sizeof(want), "kubeconfig %s context dev", at(".kube/config"));
    assert_string_equal(c->origin, want);
    k8s_config_free(c);
    /* KUBERNETES_SERVICE_HOST set, but a context asked for: the kubeconfig */
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    assert_int_equal(k8s_config_load("dev", &c, &err), 0);
    assert_string_equal(c->token, "dev-token-123");
    k8s_config_free(c);
    unsetenv("KUBERNETES_SERVICE_HOST");
}

static void test_kubeconfig_cert_data(void **state)
{
    char *ca = b64(FAKE_CA), *crt = b64(FAKE_CERT), *key = b64(FAKE_KEY);
    char text[4096];
    snprintf(text, sizeof(text),
             "apiVersion: v1\nkind: Config\ncurrent-context: kind\n"
             "clusters:\n- name: kind\n  cluster:\n    server: https://127.0.0.1:40123\n"
             "    certificate-authority-data: %s\n"
             "users:\n- name: kind\n  user:\n    client-certificate-data: %s\n"
             "    client-key-data: %s\n"
             "contexts:\n- name: kind\n  context: {cluster: kind, user: kind, namespace: x}\n",
             ca, crt, key);
    write_at("kind.yaml", text);
    k8s_config_t *c = NULL;
    bd_err_t err;
    assert_int_equal(k8s_config_kubeconfig(at("kind.yaml"), NULL, &c, &err), 0);
    assert_string_equal(c->server, "https://127.0.0.1:40123");
    assert_string_equal(c->ca_pem, FAKE_CA);
    assert_string_equal(c->cert_pem, FAKE_CERT);
    assert_string_equal(c->key_pem, FAKE_KEY);
    assert_null(c->token);
    assert_string_equal(c->ns, "x");
    k8s_config_free(c);

    /* client certificate and key from files */
    write_at("pki/c.crt", FAKE_CERT);
    write_at("pki/c.key", FAKE_KEY);
    snprintf(
        text, sizeof(text),
        "current-context: f\nclusters:\n- name: f\n  cluster:\n    server: http://127.0.0.1:8080\n"
        "users:\n- name: f\n  user:\n    client-certificate: pki/c.crt\n    client-key: %s\n"
        "contexts:\n- name: f\n  context:\n    cluster: f\n    user: f\n",
        at("pki/c.key"));
    write_at("files.yaml", text);
    assert_int_equal(k8s_config_kubeconfig(at("files.yaml"), NULL, &c, &err), 0);
    assert_string_equal(c->server, "http://127.0.0.1:8080");
    assert_string_equal(c->cert_pem, FAKE_CERT);
    assert_string_equal(c->key_pem, FAKE_KEY);
    k8s_config_free(c);
    free(ca);
    free(crt);
    free(key);
}

static void test_kubeconfig_merge(void **state)
{
    /* a: the current context and its cluster; b (another directory): the user, a cluster
     * of the same name (a's wins), its own current-context (a's wins) */
    write_at("a/config", "current-context: merged\n"
                         "contexts:\n- name: merged\n  context:\n    cluster: c1\n    user: u1\n"
                         "clusters:\n- name: c1\n  cluster:\n    server: https://from-a:6443\n");
    write_at("b/config", "current-context: other\n"
                         "contexts:\n- name: other\n  context:\n    cluster: c2\n    user: u1\n"
                         "- name: merged\n  context:\n    cluster: c2\n    user: u1\n"
                         "clusters:\n- name: c1\n  cluster:\n    server: https://from-b:6443\n"
                         "- name: c2\n  cluster:\n    server: https://c2-from-b:6443\n"
                         "    certificate-authority: ca.crt\n"
                         "users:\n- name: u1\n  user:\n    tokenFile: token\n");
    write_at("b/token", "b-token\n");
    write_at("b/ca.crt", FAKE_CA);
    char list[1200];
    snprintf(list, sizeof(list), "%s:%s::%s", at("a/config"), at("missing/config"), at("b/config"));
    setenv("KUBECONFIG", list, 1);
    k8s_config_t *c = NULL;
    bd_err_t err;
    bd_err_clear(&err);
    assert_int_equal(k8s_config_kubeconfig(NULL, NULL, &c, &err), 0);
    assert_string_equal(c->server, "https://from-a:6443");
    assert_string_equal(c->token_file, at("b/token")); /* relative to b, where it was set */
    assert_null(c->ca_pem);
    k8s_config_free(c);
    /* b's context, with b's CA relative to b */
    assert_int_equal(k8s_config_kubeconfig(NULL, "other", &c, &err), 0);
    assert_string_equal(c->server, "https://c2-from-b:6443");
    assert_string_equal(c->ca_pem, FAKE_CA);
    char want[600];
    snprintf(want, sizeof(want), "kubeconfig %s context other", at("b/config"));
    assert_string_equal(c->origin, want);
    k8s_config_free(c);

    /* every file missing */
    snprintf(list, sizeof(list), "%s:%s", at("nope1"), at("nope2"));
    setenv("KUBECONFIG", list, 1);
    assert_int_equal(k8s_config_kubeconfig(NULL, NULL, &c, &err), BD_ENOTFOUND);
    assert_non_null(strstr(err.msg, "nope1"));
    unsetenv("KUBECONFIG");
}

/* ---- kubeconfig: bad files ----------------------------------------------------------------- */

/* Load text as a kubeconfig; expect code and every needle in the message. */
static void expect_bad(const char *text, const char *context, int code, ...)
{
    write_at("bad.yaml", text);
    k8s_config_t *c = NULL;
    bd_err_t err;
    bd_err_clear(&err);
    int rc = k8s_config_kubeconfig(at("bad.yaml"), context, &c, &err);
    if (rc != code)
        fprintf(stderr, "expected %d, got %d: %s\n", code, rc, err.msg);
    assert_int_equal(rc, code);
    assert_null(c);
    assert_non_null(strstr(err.msg, at("bad.yaml")));
    va_list ap;
    va_start(ap, code);
    for (const char *needle = va_arg(ap, const char *); needle; needle = va_arg(ap, const char *)) {
        if (strstr(err.msg, needle) == NULL)
            fprintf(stderr, "\"%s\" not in: %s\n", needle, err.msg);
        assert_non_null(strstr(err.msg, needle));
    }
    va_end(ap);
    /* secrets never show */
    assert_null(strstr(err.msg, "SECRET"));
}

#define GOOD_HEAD          \
    "current-context: c\n" \
    "clusters:\n- name: k\n  cluster:\n    server: https://k:6443\n"

static void test_kubeconfig_malformed(void **state)
{
    /* not YAML */
    expect_bad("clusters:\n  - name: x\n   bad: [\n", NULL, BD_EPARSE, "malformed YAML", NULL);
    expect_bad("clusters: [a, b\n", NULL, BD_EPARSE, "malformed YAML", NULL);
    /* wrong shapes and types, with their line */
    expect_bad("- just\n- a list\n", NULL, BD_EPARSE, "must be a mapping", NULL);
    expect_bad("clusters: {a: 1}\n", NULL, BD_EPARSE, ":1: clusters: must be a list", NULL);
    expect_bad(GOOD_HEAD "users:\n- name: u\n  user:\n    token: SECRET-1\n"
                         "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
                         "- name: d\n  context: [x]\n",
               NULL, BD_EPARSE, "contexts[1].context: must be a mapping", NULL);
    expect_bad("current-context: c\nclusters:\n- name: k\n  cluster:\n    server: 6443\n"
               "contexts:\n- name: c\n  context:\n    cluster: k\n",
               NULL, BD_EPARSE, ":5: clusters[0].cluster.server: must be a string", NULL);
    expect_bad(
        "current-context: c\nclusters:\n- name: k\n  cluster:\n    insecure-skip-tls-verify: 1\n"
        "    server: https://k\n"
        "contexts:\n- name: c\n  context:\n    cluster: k\n",
        NULL, BD_EPARSE, "clusters[0].cluster.insecure-skip-tls-verify: must be true or false",
        NULL);
    expect_bad("current-context: c\nclusters:\n- cluster:\n    server: https://k\n", NULL,
               BD_EPARSE, "clusters[0].name: missing", NULL);
    /* missing pieces */
    expect_bad(GOOD_HEAD, NULL, BD_ENOTFOUND, "no context named \"c\"", NULL);
    expect_bad(GOOD_HEAD "contexts:\n- name: c\n  context:\n    cluster: k\n", "nope", BD_ENOTFOUND,
               "no context named \"nope\"", NULL);
    expect_bad("clusters: []\n", NULL, BD_ENOTFOUND, "current-context is not set", NULL);
    expect_bad(GOOD_HEAD "contexts:\n- name: c\n  context:\n    user: u\n", NULL, BD_EPARSE,
               "contexts[0].context.cluster: not set", NULL);
    expect_bad(GOOD_HEAD "contexts:\n- name: x\n  context:\n    cluster: k\n"
                         "- name: c\n  context:\n    cluster: x\n",
               NULL, BD_ENOTFOUND, ":12: contexts[1].context.cluster: no cluster named \"x\"",
               NULL);
    expect_bad(GOOD_HEAD "contexts:\n- name: c\n  context:\n    cluster: k\n    user: ghost\n",
               NULL, BD_ENOTFOUND, "contexts[0].context.user: no user named \"ghost\"", NULL);
    expect_bad(
        "current-context: c\nclusters:\n- name: k\n  cluster:\n    certificate-authority: ca\n"
        "contexts:\n- name: c\n  context:\n    cluster: k\n",
        NULL, BD_EPARSE, "clusters[0].cluster.server: not set", NULL);
    /* files that are not there, data that is not base64 PEM */
    expect_bad("current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://k\n"
               "    certificate-authority: no/such/ca.crt\n"
               "contexts:\n- name: c\n  context:\n    cluster: k\n",
               NULL, BD_EIO, "clusters[0].cluster.certificate-authority", "no/such/ca.crt", NULL);
    expect_bad("current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://k\n"
               "    certificate-authority-data: '@@not base64@@'\n"
               "contexts:\n- name: c\n  context:\n    cluster: k\n",
               NULL, BD_EPARSE, "clusters[0].cluster.certificate-authority-data: not base64", NULL);
    char *notpem = b64("SECRET key material, not PEM");
    char text[2048];
    snprintf(text, sizeof(text),
             GOOD_HEAD "users:\n- name: u\n  user:\n    client-certificate-data: %s\n"
                       "    client-key-data: %s\n"
                       "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n",
             notpem, notpem);
    expect_bad(text, NULL, BD_EPARSE,
               "users[0].user.client-certificate-data: does not decode to PEM", NULL);
    free(notpem);
    char *crt = b64(FAKE_CERT);
    snprintf(text, sizeof(text),
             GOOD_HEAD "users:\n- name: u\n  user:\n    client-certificate-data: %s\n"
                       "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n",
             crt);
    expect_bad(text, NULL, BD_EPARSE, "client-certificate without client-key", NULL);
    free(crt);
    expect_bad(GOOD_HEAD "users:\n- name: u\n  user:\n    tokenFile: missing-token\n"
                         "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n",
               NULL, BD_EIO, "users[0].user.tokenFile", "missing-token", NULL);
    /* unsupported: exec and auth-provider plugins, basic auth, a proxy */
    expect_bad(GOOD_HEAD "users:\n- name: u\n  user:\n    token: SECRET-2\n    exec:\n"
                         "      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n"
                         "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n",
               NULL, BD_EINVAL,
               ":10: users[0].user.exec: exec credential plugins are not supported", NULL);
    expect_bad(GOOD_HEAD "users:\n- name: u\n  user:\n    auth-provider:\n      name: gcp\n"
                         "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n",
               NULL, BD_EINVAL,
               "users[0].user.auth-provider: auth-provider plugins are not supported", NULL);
    expect_bad(GOOD_HEAD "users:\n- name: u\n  user:\n    username: admin\n    password: SECRET-3\n"
                         "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n",
               NULL, BD_EINVAL, "basic authentication is not supported", NULL);
    expect_bad("current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://k\n"
               "    proxy-url: http://proxy:3128\n"
               "contexts:\n- name: c\n  context:\n    cluster: k\n",
               NULL, BD_EINVAL, "clusters[0].cluster.proxy-url: not supported", NULL);
    expect_bad("current-context: c\nclusters:\n- name: k\n  cluster:\n    server: ftp://k\n"
               "contexts:\n- name: c\n  context:\n    cluster: k\n",
               NULL, BD_EINVAL, "only http:// and https://", NULL);

    /* no file */
    k8s_config_t *c = NULL;
    bd_err_t err;
    assert_int_equal(k8s_config_kubeconfig(at("nothing-here"), NULL, &c, &err), BD_ENOTFOUND);
    assert_non_null(strstr(err.msg, at("nothing-here")));
    assert_int_equal(k8s_config_load(NULL, &c, &err), BD_ENOTFOUND); /* no ~/.kube/config */
    assert_non_null(strstr(err.msg, ".kube/config"));
    k8s_config_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_cluster_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kubeconfig_token_and_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kubeconfig_cert_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kubeconfig_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kubeconfig_malformed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
