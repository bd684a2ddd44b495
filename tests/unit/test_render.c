/*
 * named.conf rendering: what we write must be accepted by BIND's own checker
 * (named-checkconf), say what the spec says, and never contain key material.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "doc.h"
#include "render.h"
#include "validate.h"

static res_t *typed(const char *yaml)
{
    doc_list_t *l = NULL;
    val_catalog_t *cat = NULL;
    assert_int_equal(val_catalog_new(&cat, NULL), BD_OK);
    assert_int_equal(doc_load_buffer("t", yaml, strlen(yaml), 0, &l, NULL), BD_OK);
    json_t *obj = doc_value(doc_list_get(l, 0));
    val_report_t rep;
    val_report_init(&rep);
    assert_int_equal(val_check(cat, obj, &rep), BD_OK);
    val_report_deinit(&rep);
    res_t *res = NULL;
    assert_int_equal(res_from_json(obj, &res, NULL), BD_OK);
    doc_list_free(l);
    val_catalog_free(cat);
    return res;
}

/* named.conf with its `include "keys.conf";` replaced by the keys themselves: the same
 * text named reads, checkable without knowing where the file will live. */
static char *inline_keys(const char *conf, const char *keys)
{
    const char *inc = strstr(conf, "include \"keys.conf\";");
    assert_non_null(inc);
    char *out = NULL;
    assert_true(asprintf(&out, "%.*s%s%s", (int)(inc - conf), conf, keys, inc + strlen("include \"keys.conf\";")) > 0);
    return out;
}

/* Run named-checkconf on conf; returns its exit status, its output in out. */
static int checkconf(const char *conf, char *out, size_t outlen)
{
    char dir[] = "/tmp/bindy-render-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], cmd[600];
    snprintf(path, sizeof(path), "%s/named.conf", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(conf, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "named-checkconf %s 2>&1", path);
    FILE *pp = popen(cmd, "r");
    if (pp == NULL)
        fail_msg("cannot run named-checkconf (install Debian's bind9-utils)");
    size_t n = fread(out, 1, outlen - 1, pp);
    out[n] = '\0';
    int st = pclose(pp);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        fail_msg("named-checkconf not found (install Debian's bind9-utils)");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_primary_and_secondary_pass_named_checkconf(void **state)
{
    res_t *prim = typed("apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
                        "metadata: {name: primary-dns, namespace: dns-system, labels: {dns-role: primary}}\n"
                        "spec:\n  replicas: 2\n  config:\n    allowQuery: ['!192.0.2.66', '10.0.0.0/8', localhost]\n"
                        "    allowTransfer: ['key other-key', '2001:db8::/32']\n    dnssec: {validation: true}\n");
    res_t *cluster = typed("apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Cluster\n"
                           "metadata: {name: c, namespace: dns-system}\n"
                           "spec: {global: {recursion: true, forwarders: ['192.0.2.53']}}\n");
    bind_endpoint_t up[] = {{"127.0.0.1", 5300}};
    bind_endpoint_t down[] = {{"127.0.0.2", 5301}, {"127.0.0.3", 5302}};
    bind_render_params_t prm = {
        .directory = "/tmp", .keys_file = "keys.conf", .listen_v4 = "127.0.0.1", .port = 5353,
        .control_addr = "127.0.0.1", .control_port = 9530, .catalog = "primary-dns.dns-system.catalog.bindy.invalid",
        .upstream = up, .nupstream = 1, .notify = down, .nnotify = 2, .zone_files = true,
    };
    char *conf = NULL, *keys = NULL, out[4096];
    bd_err_t err;
    assert_int_equal(bind_render_named_conf(prim, cluster, &prm, &conf, &err), BD_OK);
    assert_int_equal(bind_render_keys("hmac-sha256", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "hmac-sha512",
                                      "b3RoZXItc2VjcmV0LW90aGVy", &keys, &err), BD_OK);

    assert_null(strstr(conf, "c2VjcmV0")); /* no key material in named.conf */
    assert_non_null(strstr(conf, "allow-query { !192.0.2.66; 10.0.0.0/8; localhost; };"));
    assert_non_null(strstr(conf, "allow-transfer { key \"bindy-xfr\"; key \"other-key\"; 2001:db8::/32; };"));
    assert_non_null(strstr(conf, "recursion yes;"));      /* from the cluster's global */
    assert_non_null(strstr(conf, "forwarders { 192.0.2.53; };"));
    assert_non_null(strstr(conf, "dnssec-validation yes;")); /* the instance's own wins */
    assert_non_null(strstr(conf, "also-notify { 127.0.0.2 port 5301 key \"bindy-xfr\"; 127.0.0.3 port 5302"));
    assert_non_null(strstr(conf, "zone \"primary-dns.dns-system.catalog.bindy.invalid\" default-primaries "
                                 "{ 127.0.0.1 port 5300 key \"bindy-xfr\"; }"));
    /* zones in files, so that named has journals to answer IXFR from downstream with */
    assert_non_null(strstr(conf, "} in-memory no min-update-interval 1;"));
    assert_non_null(strstr(conf, "    ixfr-from-differences secondary;\n"));
    assert_non_null(strstr(conf, "    file \"primary-dns.dns-system.catalog.bindy.invalid.db\";\n"));

    char *inlined = inline_keys(conf, keys);
    int rc = checkconf(inlined, out, sizeof(out));
    if (rc != 0)
        fail_msg("named-checkconf rejected the primary's named.conf:\n%s\n%s", out, inlined);
    free(inlined);
    free(conf);

    /* a secondary with defaults, two upstream primaries and bindy last (local mode: one
     * address, several ports), no downstream */
    res_t *sec = typed("apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
                       "metadata: {name: secondary-dns, namespace: dns-system, labels: {dns-role: secondary}}\n"
                       "spec: {replicas: 2}\n");
    bind_endpoint_t ups[] = {{"127.0.0.2", 5301}, {"127.0.0.3", 5302}, {"127.0.0.2", 5300}};
    prm.upstream = ups;
    prm.nupstream = 3;
    prm.notify = NULL;
    prm.nnotify = 0;
    prm.catalog = "secondary-dns.dns-system.catalog.bindy.invalid";
    prm.zone_files = false;
    assert_int_equal(bind_render_named_conf(sec, NULL, &prm, &conf, &err), BD_OK);
    assert_non_null(strstr(conf, "} in-memory yes min-update-interval 1;"));
    assert_null(strstr(conf, "ixfr-from-differences"));
    assert_null(strstr(conf, "    file \""));
    assert_non_null(strstr(conf, "recursion no;"));
    assert_non_null(strstr(conf, "allow-query { any; };"));
    assert_non_null(strstr(conf, "notify no;"));
    /* a NOTIFY from an upstream pod (not the Service address) is accepted when signed */
    assert_non_null(strstr(conf, "allow-notify { key \"bindy-xfr\"; 127.0.0.2; 127.0.0.3; };"));
    assert_non_null(strstr(conf, "default-primaries { 127.0.0.2 port 5301 key \"bindy-xfr\"; 127.0.0.3 port 5302 "
                                 "key \"bindy-xfr\"; 127.0.0.2 port 5300 key \"bindy-xfr\"; }"));
    inlined = inline_keys(conf, keys);
    rc = checkconf(inlined, out, sizeof(out));
    if (rc != 0)
        fail_msg("named-checkconf rejected the secondary's named.conf:\n%s\n%s", out, inlined);
    free(inlined);
    free(conf);

    /* the cluster's control channel: every address of the pod, admitted by the key only */
    prm.control_addr = "*";
    prm.control_allow = "any";
    prm.control_port = 953;
    assert_int_equal(bind_render_named_conf(sec, NULL, &prm, &conf, &err), BD_OK);
    assert_non_null(strstr(conf, "controls {\n    inet * port 953 allow { any; } keys { \"bindy-rndc\"; };\n"
                                 "    inet :: port 953 allow { any; } keys { \"bindy-rndc\"; };\n};"));
    inlined = inline_keys(conf, keys);
    rc = checkconf(inlined, out, sizeof(out));
    if (rc != 0)
        fail_msg("named-checkconf rejected the cluster control channel:\n%s\n%s", out, inlined);
    free(inlined);
    free(conf);
    /* "*" without saying who may connect would render `allow { *; }` */
    prm.control_allow = NULL;
    assert_int_equal(bind_render_named_conf(sec, NULL, &prm, &conf, &err), BD_EINVAL);
    prm.control_addr = "127.0.0.1";

    /* missing parameters are refused with the instance named */
    prm.nupstream = 0;
    assert_int_equal(bind_render_named_conf(sec, NULL, &prm, &conf, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "dns-system/secondary-dns"));
    free(keys);
    res_free(prim);
    res_free(sec);
    res_free(cluster);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_primary_and_secondary_pass_named_checkconf)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
