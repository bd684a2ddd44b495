/* The typed model: derived facts (role, canonical addresses, TXT chunks) and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "doc.h"
#include "resource.h"

static res_t *typed(const char *yaml, int want_rc, const char *want_msg)
{
    doc_list_t *l = NULL;
    bd_err_t err = {0};
    assert_int_equal(doc_load_buffer("t", yaml, strlen(yaml), 0, &l, &err), BD_OK);
    assert_null(doc_list_error(l, NULL));
    res_t *res = NULL;
    int rc = res_from_json(doc_value(doc_list_get(l, 0)), &res, &err);
    doc_list_free(l);
    assert_int_equal(rc, want_rc);
    if (want_msg && strstr(err.msg, want_msg) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", err.msg, want_msg);
    return res;
}

#define HDR(kind) "apiVersion: bindy.firestoned.io/v1beta1\nkind: " kind "\nmetadata: {name: x, namespace: ns}\n"

static void test_role_resolution(void **state)
{
    res_t *r = typed(HDR("Bind9Instance") "spec: {replicas: 2}\n", BD_OK, NULL);
    assert_int_equal(r->u.instance.role, RES_ROLE_PRIMARY);
    assert_int_equal(r->u.instance.role_from, RES_ROLE_FROM_DEFAULT);
    assert_int_equal(r->u.instance.replicas, 2);
    res_free(r);
    r = typed("apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
              "metadata: {name: x, labels: {dns-role: secondary}}\nspec: {}\n",
              BD_OK, NULL);
    assert_int_equal(r->u.instance.role, RES_ROLE_SECONDARY);
    assert_int_equal(r->u.instance.role_from, RES_ROLE_FROM_LABEL);
    assert_string_equal(r->meta.ns, "default");
    res_free(r);
    r = typed("apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
              "metadata: {name: x, labels: {dns-role: secondary}}\nspec: {role: primary}\n",
              BD_OK, NULL);
    assert_int_equal(r->u.instance.role, RES_ROLE_PRIMARY);
    assert_int_equal(r->u.instance.role_from, RES_ROLE_FROM_SPEC);
    res_free(r);
    typed("apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
          "metadata: {name: x, labels: {dns-role: tertiary}}\nspec: {}\n",
          BD_EINVAL, "metadata.labels.dns-role");
}

static void test_records(void **state)
{
    res_t *r = typed(HDR("AAAARecord") "spec: {name: www, ipv6Addresses: ['2001:DB8:0::1']}\n", BD_OK, NULL);
    assert_string_equal(r->u.record.u.addrs.v[0], "2001:db8::1");
    assert_int_equal(r->u.record.ttl, -1);
    res_free(r);
    /* IPv4 in the text inet_ntop gives (formatted without it) */
    r = typed(HDR("ARecord") "spec: {name: www, ipv4Addresses: [0.0.0.0, 10.20.100.9, 255.255.255.255, "
                             "1.0.99.100]}\n",
              BD_OK, NULL);
    static const char *const v4[] = {"0.0.0.0", "10.20.100.9", "255.255.255.255", "1.0.99.100"};
    assert_int_equal(r->u.record.u.addrs.n, 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(r->u.record.u.addrs.v[i], v4[i]);
    res_free(r);

    char long_txt[700];
    memset(long_txt, 'a', 600);
    long_txt[600] = '\0';
    char yaml[1024];
    snprintf(yaml, sizeof(yaml), HDR("TXTRecord") "spec: {name: '@', ttl: 60, text: [short, %s]}\n", long_txt);
    r = typed(yaml, BD_OK, NULL);
    assert_int_equal(r->u.record.u.txt.n, 2);
    assert_int_equal(r->u.record.u.txt.strings[0].n, 1);
    assert_int_equal(r->u.record.u.txt.strings[1].n, 3);
    assert_int_equal(strlen(r->u.record.u.txt.strings[1].v[0]), 255);
    assert_int_equal(strlen(r->u.record.u.txt.strings[1].v[2]), 90);
    res_free(r);

    r = typed(HDR("SRVRecord") "spec: {name: _sip._tcp, priority: 1, weight: 2, port: 5060, target: s.}\n", BD_OK,
              NULL);
    assert_int_equal(r->u.record.u.srv.port, 5060);
    res_free(r);

    typed(HDR("ARecord") "spec: {name: www, ipv4Addresses: [1.2.3.4.5]}\n", BD_EINVAL, "spec.ipv4Addresses[0]");
    typed(HDR("MXRecord") "spec: {name: www, priority: 99999, mailServer: m.}\n", BD_EINVAL, "spec.priority");
    typed(HDR("CNAMERecord") "spec: {name: www}\n", BD_EINVAL, "spec.target");
    typed(HDR("CNAMERecord") "spec: 5\n", BD_EINVAL, "spec");
    typed("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", BD_ENOTFOUND, "ConfigMap");
}

static void test_txt_split_respects_utf8(void **state)
{
    /* 254 ASCII octets then a 2-octet character: the character moves to chunk two. */
    char s[300];
    memset(s, 'a', 254);
    memcpy(s + 254, "\xc3\xa9tail", 7);
    res_strv_t out = {0};
    assert_int_equal(res_split_txt(s, &out), BD_OK);
    assert_int_equal(out.n, 2);
    assert_int_equal(strlen(out.v[0]), 254);
    assert_string_equal(out.v[1], "\xc3\xa9tail");
    res_strv_deinit(&out);
    assert_int_equal(res_split_txt("", &out), BD_OK);
    assert_int_equal(out.n, 1);
    res_strv_deinit(&out);
}

static void test_zone(void **state)
{
    res_t *r = typed(HDR("DNSZone") "spec:\n  zoneName: Example.COM.\n"
                                    "  soaRecord: {primaryNs: ns1.example.com., adminEmail: a@example.com}\n"
                                    "  recordsFrom: [{selector: {matchLabels: {zone: example.com}}}]\n",
                     BD_OK, NULL);
    assert_string_equal(r->u.zone.zone_name, "example.com");
    assert_int_equal(r->u.zone.serial, -1);
    assert_int_equal(r->u.zone.refresh, 3600);
    assert_int_equal(r->u.zone.n_records_from, 1);
    res_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_role_resolution),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_txt_split_respects_utf8),
        cmocka_unit_test(test_zone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
