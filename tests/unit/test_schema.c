/*
 * Validation against the CRDs. Three kinds of proof:
 *  1. the C rule tables and the CRDs agree (every CEL rule has a twin, every C path
 *     exists in a CRD);
 *  2. cases derived from the CRDs themselves: a valid baseline object of each kind is
 *     mutated at every required field, enum, range, length and pattern the schema
 *     declares, and each mutation must be rejected at exactly that field path;
 *  3. table-driven cases for every DNS rule, the seed's manifests, the examples, and the
 *     committed invalid corpus (each file says which field must be reported).
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <regex.h>

#include "manifest.h"
#include "resource.h"
#include "rules.h"
#include "validate.h"

static val_catalog_t *cat;

static int setup(void **state)
{
    bd_err_t err;
    if (val_catalog_new(&cat, &err) != BD_OK) {
        fprintf(stderr, "catalog: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    val_catalog_free(cat);
    return 0;
}

static const char *src_dir(void)
{
    const char *d = getenv("BINDY_SOURCE_DIR");
    return d ? d : ".";
}

static json_t *parse_one(const char *yaml)
{
    doc_list_t *l = NULL;
    bd_err_t err;
    assert_int_equal(doc_load_buffer("case", yaml, strlen(yaml), 0, &l, &err), BD_OK);
    if (doc_list_error(l, NULL) != NULL || doc_list_count(l) != 1)
        fail_msg("case does not parse: %s\n%s", doc_list_error(l, NULL), yaml);
    json_t *v = json_incref(doc_value(doc_list_get(l, 0)));
    doc_list_free(l);
    return v;
}

/* Validate obj; return the first error (static buffer, "path: msg") or NULL. */
static const char *first_error(json_t *obj, char *buf, size_t len)
{
    val_report_t rep;
    val_report_init(&rep);
    val_check(cat, obj, &rep);
    const char *out = NULL;
    for (size_t i = 0; i < rep.n; i++) {
        if (rep.items[i].sev == VAL_ERROR) {
            snprintf(buf, len, "%s: %s", rep.items[i].path, rep.items[i].msg);
            out = buf;
            break;
        }
    }
    val_report_deinit(&rep);
    return out;
}

/* Does validation report an error at exactly path? */
static int has_error_at(json_t *obj, const char *path)
{
    val_report_t rep;
    val_report_init(&rep);
    val_check(cat, obj, &rep);
    int hit = 0;
    for (size_t i = 0; i < rep.n; i++)
        if (rep.items[i].sev == VAL_ERROR && strcmp(rep.items[i].path, path) == 0)
            hit = 1;
    val_report_deinit(&rep);
    return hit;
}

/* ---- 1. C tables and CRDs agree ---------------------------------------------------- */

static const char *const all_kinds[] = {"Bind9Cluster", "Bind9Instance", "DNSZone", "ARecord",
                                        "AAAARecord", "CNAMERecord", "MXRecord", "TXTRecord",
                                        "NSRecord", "SRVRecord", "CAARecord"};

static void test_every_kind_has_a_crd(void **state)
{
    assert_int_equal(val_catalog_count(cat), sizeof(all_kinds) / sizeof(*all_kinds));
    for (size_t k = 0; k < sizeof(all_kinds) / sizeof(*all_kinds); k++) {
        int found = 0;
        for (size_t i = 0; i < val_catalog_count(cat); i++)
            found |= strcmp(val_catalog_kind(cat, i), all_kinds[k]) == 0;
        if (!found)
            fail_msg("no CRD for %s", all_kinds[k]);
        res_kind_t rk;
        assert_int_equal(res_kind_from_name(all_kinds[k], &rk), BD_OK);
    }
    for (size_t i = 0; i < val_catalog_count(cat); i++) {
        const json_t *crd = val_catalog_crd(cat, i);
        const json_t *spec = json_object_get(crd, "spec");
        assert_string_equal(json_string_value(json_object_get(spec, "scope")), "Namespaced");
        const json_t *ver = json_array_get(json_object_get(spec, "versions"), 0);
        assert_non_null(json_object_get(json_object_get(ver, "subresources"), "status"));
        assert_true(json_array_size(json_object_get(ver, "additionalPrinterColumns")) >= 2);
        assert_true(json_array_size(json_object_get(json_object_get(spec, "names"), "shortNames")) >= 1);
        res_kind_t rk;
        assert_int_equal(res_kind_from_name(val_catalog_kind(cat, i), &rk), BD_OK);
        assert_string_equal(res_kind_plural(rk), val_catalog_plural(cat, i));
    }
}

static int missing_twins;
static void visit_cel(const char *kind, const char *spath, const char *rule, void *arg)
{
    if (!val_has_cel_twin(kind, spath, rule)) {
        fprintf(stderr, "CEL rule without a C twin: %s %s: %s\n", kind, spath, rule);
        missing_twins++;
    }
}

typedef struct {
    const char *kind, *spath, *rule;
    int found;
} find_cel_t;

static void find_cel(const char *kind, const char *spath, const char *rule, void *arg)
{
    find_cel_t *f = arg;
    if ((strcmp(f->kind, "*") == 0 || strcmp(f->kind, kind) == 0) && strcmp(f->spath, spath) == 0 &&
        strcmp(f->rule, rule) == 0)
        f->found = 1;
}

static int stale_rules;
static void visit_c_rule(const char *kind, const char *spath, const char *rule, void *arg)
{
    int exists = 0;
    for (size_t i = 0; i < val_catalog_count(cat); i++)
        if ((strcmp(kind, "*") == 0 || strcmp(kind, val_catalog_kind(cat, i)) == 0) &&
            val_schema_at(val_catalog_schema(cat, i), spath) != NULL)
            exists = 1;
    if (!exists) {
        fprintf(stderr, "C rule for a path no CRD has: %s %s\n", kind, spath);
        stale_rules++;
        return;
    }
    if (rule != NULL) {
        find_cel_t f = {kind, spath, rule, 0};
        val_catalog_each_cel(cat, find_cel, &f);
        if (!f.found) {
            fprintf(stderr, "C twin of a CEL rule that no CRD has: %s %s: %s\n", kind, spath, rule);
            stale_rules++;
        }
    }
}

static void test_c_rules_and_crds_agree(void **state)
{
    missing_twins = stale_rules = 0;
    val_catalog_each_cel(cat, visit_cel, NULL);
    val_each_c_rule(visit_c_rule, NULL);
    assert_int_equal(missing_twins, 0);
    assert_int_equal(stale_rules, 0);
}

/* ---- 2. cases derived from the CRDs ---------------------------------------------- */

/* One valid object per kind; the mutation test only uses fields present here, so it
 * fills every field that has a rule. */
static const char *const baselines[] = {
    "apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Cluster\nmetadata: {name: c, namespace: dns-system}\n"
    "spec:\n  version: '9.18'\n  image: img\n  global:\n    recursion: false\n    allowQuery: [any]\n"
    "    allowTransfer: ['10.0.0.0/8']\n    forwarders: ['192.0.2.1']\n    listenOn: [any]\n"
    "    listenOnV6: [any]\n    dnssec: {validation: true}\n"
    "  primary: {replicas: 2, labels: {a: b}, allowTransfer: [none]}\n"
    "  secondary: {replicas: 2, labels: {a: c}, allowTransfer: [none]}\n",

    "apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\nmetadata: {name: i, namespace: dns-system}\n"
    "spec:\n  role: primary\n  replicas: 2\n  clusterRef: c\n  version: '9.18'\n  image: img\n"
    "  config:\n    recursion: false\n    allowQuery: [any]\n    allowTransfer: ['10.0.0.0/8']\n"
    "    forwarders: ['192.0.2.1']\n    listenOn: [any]\n    listenOnV6: [any]\n    dnssec: {validation: true}\n"
    "  rndcKey: {secretRef: {name: s}, algorithm: hmac-sha256}\n"
    "  podDisruptionBudget: {minAvailable: 1}\n  nodeSelector: {a: b}\n",

    "apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\nmetadata: {name: z, namespace: dns-system}\n"
    "spec:\n  zoneName: example.com\n  clusterRef: c\n  ttl: 300\n"
    "  soaRecord: {primaryNs: ns1.example.com., adminEmail: admin@example.com, serial: 2024010101,\n"
    "              refresh: 3600, retry: 600, expire: 604800, negativeTtl: 300}\n"
    "  nameServers: [{hostname: ns1.example.com., ipv4Address: 192.0.2.53, ipv6Address: '2001:db8::53'}]\n"
    "  recordsFrom: [{selector: {matchLabels: {zone: example.com}}}]\n"
    "  bind9InstancesFrom: [{selector: {matchExpressions: [{key: dns-role, operator: In, values: [primary]}]}}]\n",

    "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\nmetadata: {name: a, namespace: dns-system}\n"
    "spec: {name: www, ttl: 300, ipv4Addresses: [192.0.2.1, 192.0.2.2]}\n",
    "apiVersion: bindy.firestoned.io/v1beta1\nkind: AAAARecord\nmetadata: {name: a, namespace: dns-system}\n"
    "spec: {name: www, ttl: 300, ipv6Addresses: ['2001:db8::1']}\n",
    "apiVersion: bindy.firestoned.io/v1beta1\nkind: CNAMERecord\nmetadata: {name: a, namespace: dns-system}\n"
    "spec: {name: blog, ttl: 300, target: www.example.com.}\n",
    "apiVersion: bindy.firestoned.io/v1beta1\nkind: MXRecord\nmetadata: {name: a, namespace: dns-system}\n"
    "spec: {name: '@', ttl: 300, priority: 10, mailServer: mail.example.com.}\n",
    "apiVersion: bindy.firestoned.io/v1beta1\nkind: TXTRecord\nmetadata: {name: a, namespace: dns-system}\n"
    "spec: {name: '@', ttl: 300, text: ['v=spf1 -all']}\n",
    "apiVersion: bindy.firestoned.io/v1beta1\nkind: NSRecord\nmetadata: {name: a, namespace: dns-system}\n"
    "spec: {name: sub, ttl: 300, nameserver: ns1.sub.example.com.}\n",
    "apiVersion: bindy.firestoned.io/v1beta1\nkind: SRVRecord\nmetadata: {name: a, namespace: dns-system}\n"
    "spec: {name: _sip._tcp, ttl: 300, priority: 10, weight: 5, port: 5060, target: sip.example.com.}\n",
    "apiVersion: bindy.firestoned.io/v1beta1\nkind: CAARecord\nmetadata: {name: a, namespace: dns-system}\n"
    "spec: {name: '@', ttl: 300, flags: 0, tag: issue, value: letsencrypt.org}\n",
};

typedef struct {
    size_t mutations;
    json_t *root;
    const char *kind;
} mut_t;

static void check_mutation(mut_t *m, const char *path, const char *what)
{
    m->mutations++;
    json_t *copy = json_deep_copy(m->root);
    /* m->root was mutated by the caller; validate a copy so defaults don't leak back. */
    if (!has_error_at(copy, path)) {
        char buf[1200];
        const char *e = first_error(copy, buf, sizeof(buf));
        json_decref(copy);
        fail_msg("%s: %s at %s was accepted (first error: %s)", m->kind, what, path, e ? e : "none");
    }
    json_decref(copy);
}

/* Walk schema and instance together; mutate each constrained, present field in turn. */
static void mutate(mut_t *m, const json_t *schema, json_t *parent, const char *key, size_t index,
                   char *path)
{
    json_t *v = key ? json_object_get(parent, key) : json_array_get(parent, index);
    if (v == NULL || !json_is_object(schema))
        return;
    json_t *saved = json_incref(v);
#define SET(nv) (key ? json_object_set_new(parent, key, (nv)) : json_array_set_new(parent, index, (nv)))

    const char *type = json_string_value(json_object_get(schema, "type"));
    int int_or_string = json_is_true(json_object_get(schema, "x-kubernetes-int-or-string"));
    if (type != NULL && !int_or_string && !json_is_true(json_object_get(schema, "x-kubernetes-preserve-unknown-fields"))) {
        SET(strcmp(type, "string") == 0 ? json_integer(7) : json_string("wrong-type"));
        check_mutation(m, path, "a value of the wrong type");
    }
    if (json_object_get(schema, "enum")) {
        SET(json_string("not-in-the-enum"));
        check_mutation(m, path, "a value outside the enum");
    }
    const json_t *mn = json_object_get(schema, "minimum"), *mx = json_object_get(schema, "maximum");
    if (mn && json_is_integer(v)) {
        SET(json_integer(json_integer_value(mn) - 1));
        check_mutation(m, path, "a value below the minimum");
    }
    if (mx && json_is_integer(v)) {
        SET(json_integer(json_integer_value(mx) + 1));
        check_mutation(m, path, "a value above the maximum");
    }
    const json_t *maxlen = json_object_get(schema, "maxLength");
    if (maxlen && json_is_string(v)) {
        size_t n = (size_t)json_integer_value(maxlen) + 1;
        char *s = malloc(n + 1);
        memset(s, 'a', n);
        s[n] = '\0';
        SET(json_string(s));
        free(s);
        check_mutation(m, path, "a string over maxLength");
    }
    if (json_object_get(schema, "pattern") && json_is_string(v)) {
        SET(json_string("no spaces or $ allowed here!"));
        check_mutation(m, path, "a string that does not match the pattern");
    }
    const char *format = json_string_value(json_object_get(schema, "format"));
    if (format && (strcmp(format, "ipv4") == 0 || strcmp(format, "ipv6") == 0) && json_is_string(v)) {
        SET(json_string("10.0.0.300"));
        check_mutation(m, path, "a malformed address");
    }
    const json_t *minitems = json_object_get(schema, "minItems");
    if (minitems && json_integer_value(minitems) > 0 && json_is_array(v)) {
        SET(json_array());
        check_mutation(m, path, "too few items");
    }
    SET(json_incref(saved));

    size_t plen = strlen(path);
    if (json_is_object(v)) {
        size_t i;
        const json_t *req;
        json_array_foreach(json_object_get(schema, "required"), i, req) {
            const char *name = json_string_value(req);
            json_t *kept = json_incref(json_object_get(v, name));
            if (kept == NULL)
                fail_msg("%s: baseline lacks required field %s.%s", m->kind, path, name);
            json_object_del(v, name);
            doc_path_key(path, name);
            check_mutation(m, path, "a missing required field");
            path[plen] = '\0';
            json_object_set_new(v, name, kept);
        }
        const char *k;
        json_t *sub;
        void *tmp;
        json_object_foreach_safe(v, tmp, k, sub) {
            const json_t *ps = json_object_get(json_object_get(schema, "properties"), k);
            if (ps == NULL)
                ps = json_object_get(schema, "additionalProperties");
            if (plen == 0 && strcmp(k, "metadata") == 0)
                continue;
            doc_path_key(path, k);
            mutate(m, ps, v, k, 0, path);
            path[plen] = '\0';
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            doc_path_index(path, i);
            mutate(m, json_object_get(schema, "items"), v, NULL, i, path);
            path[plen] = '\0';
        }
    }
    json_decref(saved);
#undef SET
}

static void test_crd_rules_are_enforced(void **state)
{
    size_t total = 0;
    for (size_t b = 0; b < sizeof(baselines) / sizeof(*baselines); b++) {
        json_t *obj = parse_one(baselines[b]);
        char buf[1200];
        json_t *copy = json_deep_copy(obj);
        const char *e = first_error(copy, buf, sizeof(buf));
        json_decref(copy);
        if (e != NULL)
            fail_msg("baseline %zu is invalid: %s", b, e);
        const char *kind = json_string_value(json_object_get(obj, "kind"));
        const json_t *schema = NULL;
        for (size_t i = 0; i < val_catalog_count(cat); i++)
            if (strcmp(val_catalog_kind(cat, i), kind) == 0)
                schema = val_catalog_schema(cat, i);
        assert_non_null(schema);
        json_t *holder = json_pack("{s:O}", "root", obj);
        mut_t m = {0, holder, kind};
        char path[DOC_PATH_MAX] = "";
        /* mutate under a holder so the root object itself can be replaced */
        json_t *root = json_object_get(holder, "root");
        const char *k;
        json_t *sub;
        void *tmp;
        json_object_foreach_safe(root, tmp, k, sub) {
            if (strcmp(k, "metadata") == 0)
                continue;
            m.root = root;
            doc_path_key(path, k);
            mutate(&m, json_object_get(json_object_get(schema, "properties"), k), root, k, 0, path);
            path[0] = '\0';
        }
        if (m.mutations < 5)
            fail_msg("%s: only %zu mutations derived from its CRD", kind, m.mutations);
        total += m.mutations;
        json_decref(holder);
        json_decref(obj);
    }
    print_message("%zu mutations derived from the CRDs, all rejected at their field\n", total);
}

/* ---- 3. table-driven cases --------------------------------------------------------- */

#define HDR(kind) "apiVersion: bindy.firestoned.io/v1beta1\nkind: " kind "\nmetadata: {name: x, namespace: ns}\n"

static const struct {
    const char *yaml;
    const char *path; /* NULL: valid */
    const char *msg;  /* substring of the message */
} cases[] = {
    /* A / AAAA */
    {HDR("ARecord") "spec: {name: www, ipv4Addresses: [10.0.0.1, 10.0.0.300]}\n", "spec.ipv4Addresses[1]",
     "\"10.0.0.300\" is not an IPv4 address"},
    {HDR("ARecord") "spec: {name: www, ipv4Addresses: ['::1']}\n", "spec.ipv4Addresses[0]", "IPv4"},
    {HDR("ARecord") "spec: {name: www, ipv4Addresses: []}\n", "spec.ipv4Addresses", "at least 1"},
    {HDR("ARecord") "spec: {name: www, ttl: -1, ipv4Addresses: [10.0.0.1]}\n", "spec.ttl", "range"},
    {HDR("ARecord") "spec: {name: www, ttl: 2147483648, ipv4Addresses: [10.0.0.1]}\n", "spec.ttl", "range"},
    {HDR("ARecord") "spec: {name: www, ttl: 2147483647, ipv4Addresses: [10.0.0.1]}\n", NULL, NULL},
    {HDR("ARecord") "spec: {name: www, ttl: 0, ipv4Addresses: [10.0.0.1]}\n", NULL, NULL},
    {HDR("ARecord") "spec: {name: '*', ipv4Addresses: [10.0.0.1]}\n", NULL, NULL},
    {HDR("ARecord") "spec: {name: '*.dev', ipv4Addresses: [10.0.0.1]}\n", NULL, NULL},
    {HDR("ARecord") "spec: {name: 'www.example.com.', ipv4Addresses: [10.0.0.1]}\n", NULL, NULL},
    {HDR("ARecord") "spec: {name: 'bad name', ipv4Addresses: [10.0.0.1]}\n", "spec.name", "is not a DNS name"},
    {HDR("ARecord") "spec: {name: 'a..b', ipv4Addresses: [10.0.0.1]}\n", "spec.name", ""},
    {HDR("ARecord") "spec: {name: www, ipv4Addresses: [10.0.0.1], bindcarConfig: {x: 1}}\n", NULL, NULL},
    {HDR("AAAARecord") "spec: {name: www, ipv6Addresses: ['2001:db8::1', '2001:db8::g']}\n",
     "spec.ipv6Addresses[1]", "IPv6"},
    {HDR("AAAARecord") "spec: {name: www, ipv6Addresses: ['::ffff:192.0.2.1']}\n", NULL, NULL},
    /* names: label and total lengths */
    {HDR("CNAMERecord") "spec: {name: www, target: "
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com.}\n",
     "spec.target", ""},
    {HDR("CNAMERecord") "spec: {name: www, target: "
                        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com.}\n",
     NULL, NULL},
    {HDR("CNAMERecord") "spec: {name: www}\n", "spec.target", "required"},
    /* MX */
    {HDR("MXRecord") "spec: {name: '@', priority: 70000, mailServer: mail.example.com.}\n", "spec.priority",
     "out of range 0..65535"},
    {HDR("MXRecord") "spec: {name: '@', priority: 10, mailServer: 'mail example'}\n", "spec.mailServer", ""},
    /* SRV */
    {HDR("SRVRecord") "spec: {name: _sip._tcp, priority: 1, weight: 1, port: 70000, target: s.example.com.}\n",
     "spec.port", "range"},
    {HDR("SRVRecord") "spec: {name: sip, priority: 1, weight: 1, port: 5060, target: s.example.com.}\n",
     "spec.name", ""},
    {HDR("SRVRecord") "spec: {name: _sip._tcp.eu, priority: 1, weight: 1, port: 5060, target: s.example.com.}\n",
     NULL, NULL},
    {HDR("SRVRecord") "spec: {name: _ldap._tcp, priority: 0, weight: 0, port: 389, target: .}\n", NULL, NULL},
    /* CAA */
    {HDR("CAARecord") "spec: {name: '@', flags: 0, tag: iodef, value: foo}\n", "spec.value", "iodef"},
    {HDR("CAARecord") "spec: {name: '@', flags: 0, tag: iodef, value: 'mailto:sec@example.com'}\n", NULL, NULL},
    {HDR("CAARecord") "spec: {name: '@', flags: 0, tag: iodef, value: 'https://example.com/caa'}\n", NULL, NULL},
    {HDR("CAARecord") "spec: {name: '@', flags: 0, tag: issuer, value: x}\n", "spec.tag", "not one of"},
    {HDR("CAARecord") "spec: {name: '@', flags: 256, tag: issue, value: x}\n", "spec.flags", "range"},
    /* TXT */
    {HDR("TXTRecord") "spec: {name: '@', text: []}\n", "spec.text", "at least"},
    {HDR("TXTRecord") "spec: {name: '@', text: [1]}\n", "spec.text[0]", "expected a string"},
    /* instances */
    {HDR("Bind9Instance") "spec: {rndcKey: {algorithm: hmac-md5}}\n", "spec.rndcKey.algorithm", "not one of"},
    {HDR("Bind9Instance") "spec: {rndcKey: {algorithm: hmac-sha1}}\n", "spec.rndcKey.algorithm", "not one of"},
    {HDR("Bind9Instance") "spec: {role: leader}\n", "spec.role", "not one of"},
    {"apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
     "metadata: {name: x, labels: {dns-role: secundary}}\nspec: {}\n",
     "metadata.labels.dns-role", "not one of"},
    {"apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
     "metadata: {name: x, labels: {dns-role: anything}}\nspec: {role: primary}\n",
     NULL, NULL},
    {HDR("Bind9Instance") "spec: {replicas: three}\n", "spec.replicas", "expected an integer"},
    {HDR("Bind9Instance") "spec: {replicas: -1}\n", "spec.replicas", ""},
    {HDR("Bind9Instance") "spec: {podDisruptionBudget: {minAvailable: 1, maxUnavailable: 1}}\n",
     "spec.podDisruptionBudget", "mutually exclusive"},
    {HDR("Bind9Instance") "spec: {podDisruptionBudget: {maxUnavailable: '50%'}}\n", NULL, NULL},
    {HDR("Bind9Instance") "spec: {podDisruptionBudget: {maxUnavailable: 'half'}}\n",
     "spec.podDisruptionBudget.maxUnavailable", ""},
    {HDR("Bind9Instance") "spec: {config: {allowQuery: ['10.0.0.0/33']}}\n", "spec.config.allowQuery[0]", ""},
    {HDR("Bind9Instance") "spec: {config: {allowQuery: ['!10.1.0.0/16', 'key xfr-key', localnets, '2001:db8::/32']}}\n",
     NULL, NULL},
    {HDR("Bind9Instance") "spec: {config: {allowTransfer: ['10.0.0.256']}}\n", "spec.config.allowTransfer[0]", ""},
    {HDR("Bind9Instance") "spec: {config: {forwarders: ['8.8.8.8', 'dns.google']}}\n", "spec.config.forwarders[1]", ""},
    {HDR("Bind9Instance") "spec: {storage: {emptyDir: {}, persistentVolumeClaim: {size: 1Gi}}}\n", "spec.storage",
     "mutually exclusive"},
    /* replicas sharing one existing claim: only ReadWriteMany; else one claim per pod */
    {HDR("Bind9Instance") "spec: {replicas: 2, storage: {persistentVolumeClaim: {claimName: zones}}}\n", "spec",
     "ReadWriteMany"},
    {HDR("Bind9Instance") "spec: {replicas: 2, storage: {persistentVolumeClaim: {claimName: zones, "
                          "accessModes: [ReadWriteOnce]}}}\n",
     "spec", "cannot share one existing claim"},
    {HDR("Bind9Instance") "spec: {replicas: 2, storage: {persistentVolumeClaim: {claimName: zones, "
                          "accessModes: [ReadWriteOnce, ReadWriteMany]}}}\n",
     NULL, NULL},
    {HDR("Bind9Instance") "spec: {replicas: 1, storage: {persistentVolumeClaim: {claimName: zones}}}\n", NULL, NULL},
    {HDR("Bind9Instance") "spec: {storage: {persistentVolumeClaim: {claimName: zones}}}\n", NULL, NULL},
    {HDR("Bind9Instance") "spec: {replicas: 3, storage: {persistentVolumeClaim: {size: 1Gi}}}\n", NULL, NULL},
    {HDR("Bind9Instance") "spec: {replicas: 3, affinity: {podAntiAffinity: {x: 1}}, tolerations: [{key: a}]}\n",
     NULL, NULL},
    /* zones */
    {HDR("DNSZone") "spec: {zoneName: example.com, soaRecord: {primaryNs: ns1.example.com., adminEmail: a@example.com}}\n",
     NULL, NULL},
    {HDR("DNSZone") "spec: {zoneName: example.com}\n", "spec.soaRecord", "required"},
    {HDR("DNSZone") "spec: {zoneName: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com, "
                    "soaRecord: {primaryNs: ns1.example.com., adminEmail: a@example.com}}\n",
     "spec.zoneName", ""},
    {HDR("DNSZone") "spec: {zoneName: example.com, soaRecord: {primaryNs: ns1.example.com., adminEmail: a@example.com, "
                    "serial: 4294967296}}\n",
     "spec.soaRecord.serial", "range"},
    {HDR("DNSZone") "spec: {zoneName: example.com, soaRecord: {primaryNs: ns1.example.com., adminEmail: a@example.com},"
                    " nameServers: [{hostname: ns1.example.com., ipv4Address: 1.2.3}]}\n",
     "spec.nameServers[0].ipv4Address", "IPv4"},
    {HDR("DNSZone") "spec: {zoneName: example.com, soaRecord: {primaryNs: ns1.example.com., adminEmail: a@example.com},"
                    " recordsFrom: [{selector: {matchExpressions: [{key: a, operator: Near}]}}]}\n",
     "spec.recordsFrom[0].selector.matchExpressions[0].operator", "not one of"},
    {HDR("DNSZone") "spec: {zoneName: example.com, soaRecord: {primaryNs: ns1.example.com., adminEmail: a@example.com},"
                    " bind9InstancesFrom: [{selector: {matchExpressions: [{key: a, operator: In}]}}]}\n",
     "spec.bind9InstancesFrom[0].selector.matchExpressions[0].values", "must not be empty for In"},
    {HDR("DNSZone") "spec: {zoneName: example.com, soaRecord: {primaryNs: ns1.example.com., adminEmail: a@example.com},"
                    " recordsFrom: [{selector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}}]}\n",
     "spec.recordsFrom[0].selector.matchExpressions[0].values", "must be empty for Exists"},
    /* object level */
    {"apiVersion: bindy.firestoned.io/v1beta1\nkind: MagicRecord\nmetadata: {name: x}\nspec: {}\n", "kind",
     "unknown kind"},
    {"apiVersion: bindy.firestoned.io/v1alpha1\nkind: ARecord\nmetadata: {name: x}\nspec: {}\n", "apiVersion",
     "not served"},
    {"apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\nmetadata: {name: Bad_Name}\n"
     "spec: {name: www, ipv4Addresses: [10.0.0.1]}\n",
     "metadata.name", "RFC 1123"},
    {"apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\nmetadata: {name: x, labels: {zone: 'not ok!'}}\n"
     "spec: {name: www, ipv4Addresses: [10.0.0.1]}\n",
     "metadata.labels.zone", "label values"},
    {"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bindy}\nspec: {replicas: 3}\n", NULL, NULL},
    {"kind: ARecord\nmetadata: {name: x}\n", "apiVersion", "required"},
};

static void test_cases(void **state)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_t *obj = parse_one(cases[i].yaml);
        val_report_t rep;
        val_report_init(&rep);
        val_check(cat, obj, &rep);
        int ok = 0;
        char seen[2048] = "";
        for (size_t j = 0; j < rep.n; j++) {
            const val_issue_t *is = &rep.items[j];
            size_t sl = strlen(seen);
            snprintf(seen + sl, sizeof(seen) - sl, "\n  %s %s: %s", is->sev ? "warning" : "error", is->path,
                     is->msg);
            if (cases[i].path && is->sev == VAL_ERROR && strcmp(is->path, cases[i].path) == 0 &&
                strstr(is->msg, cases[i].msg))
                ok = 1;
        }
        if (cases[i].path == NULL)
            ok = rep.nerrors == 0;
        /* whatever validation accepts, the typed model must accept */
        if (ok && cases[i].path == NULL && strstr(cases[i].yaml, "bindy.firestoned.io")) {
            res_t *res = NULL;
            bd_err_t err;
            if (res_from_json(obj, &res, &err) != BD_OK)
                fail_msg("case %zu: valid but the typed model refuses it: %s", i, err.msg);
            res_free(res);
        }
        val_report_deinit(&rep);
        json_decref(obj);
        if (!ok)
            fail_msg("case %zu: want %s%s%s, got:%s\n%s", i, cases[i].path ? cases[i].path : "valid",
                     cases[i].path ? ": " : "", cases[i].msg ? cases[i].msg : "", seen, cases[i].yaml);
    }
}

/* Patterns with large {m,n} bounds run relaxed to {m,} on subjects no longer than the
 * smallest such n (glibc unrolls the bounds). The rewrite leaves bracket expressions and
 * escapes alone, and the two forms agree on every subject it is used for. */
static void test_relaxed_patterns(void **state)
{
    static const struct {
        const char *in, *out;
        size_t min_n;
    } rw[] = {
        {"^(@|\\*|(\\*\\.)?([A-Za-z0-9_-]{1,63}\\.)*[A-Za-z0-9_-]{1,63}\\.?)$",
         "^(@|\\*|(\\*\\.)?([A-Za-z0-9_-]{1,}\\.)*[A-Za-z0-9_-]{1,}\\.?)$", 63},
        {"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", "^[A-Za-z0-9][A-Za-z0-9._-]{0,}$", 127},
        {"^_[a-z]{1,62}\\._x{1,20}$", "^_[a-z]{1,}\\._x{1,}$", 20},
        {"[{1,63}]x{2,40}", "[{1,63}]x{2,}", 40},         /* braces in brackets are members */
        {"[[:alpha:]{]{1,40}", "[[:alpha:]{]{1,}", 40},   /* so is "]" inside [:class:] */
        {"\\{1,99}", NULL, 0},                            /* escaped: a literal brace */
        {"[]{1,30}]", NULL, 0},                            /* "]" first is a member */
        {"a{3}b{1,3}c{2,}", NULL, 0},                      /* nothing large and bounded */
    };
    for (size_t i = 0; i < sizeof(rw) / sizeof(*rw); i++) {
        size_t min_n = 0;
        char *out = val__relax_pattern(rw[i].in, &min_n);
        if (rw[i].out == NULL) {
            if (out != NULL)
                fail_msg("%s: relaxed to %s", rw[i].in, out);
            continue;
        }
        assert_non_null(out);
        assert_string_equal(out, rw[i].out);
        assert_int_equal(min_n, rw[i].min_n);
        /* Agreement on random subjects over the alphabet the patterns care about, every
         * length up to min_n, with labels near the bounds. */
        regex_t exact, relaxed;
        assert_int_equal(regcomp(&exact, rw[i].in, REG_EXTENDED | REG_NOSUB), 0);
        assert_int_equal(regcomp(&relaxed, out, REG_EXTENDED | REG_NOSUB), 0);
        static const char alphabet[] = "aaaaaaaaZ9_-..*@ {}";
        unsigned seed = 7;
        for (int k = 0; k < 3000; k++) {
            char subj[256];
            size_t len = (size_t)rand_r(&seed) % (min_n + 1);
            for (size_t c = 0; c < len; c++)
                subj[c] = alphabet[(size_t)rand_r(&seed) % (sizeof(alphabet) - 1)];
            subj[len] = '\0';
            if (k % 3 == 0 && len > 0)
                subj[0] = k % 2 ? '_' : 'a'; /* a plausible start, so that some match */
            bool e = regexec(&exact, subj, 0, NULL, 0) == 0, r = regexec(&relaxed, subj, 0, NULL, 0) == 0;
            if (e != r)
                fail_msg("%s and %s disagree on \"%s\"", rw[i].in, out, subj);
        }
        regfree(&exact);
        regfree(&relaxed);
        free(out);
    }
}

/* Record names, end to end: both sides of the relaxed form's length and of a 63-character
 * label give the API server's verdict. */
static void test_name_pattern_bounds(void **state)
{
    char n63[64], n64[65], two63[128], x_64[67], n62sp[64];
    memset(n63, 'a', 63);
    n63[63] = '\0';
    memset(n64, 'b', 64);
    n64[64] = '\0';
    snprintf(two63, sizeof(two63), "%s.%s", n63, n63);
    snprintf(x_64, sizeof(x_64), "x.%s", n64);
    snprintf(n62sp, sizeof(n62sp), "%.60s a", n63);
    static const char *const ok[] = {"www", "@", "*", "*.dev", "a.b.c.", "-ok_-"};
    const char *const bad[] = {"a..b", "a b", "w$w", "", "*x", "x.*", n62sp, n64, x_64};
    const char *const ok_long[] = {n63, two63};
    for (size_t i = 0; i < 6 + 9 + 2; i++) {
        const char *name = i < 6 ? ok[i] : i < 15 ? bad[i - 6] : ok_long[i - 15];
        bool valid = i < 6 || i >= 15;
        json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:[s]}}", "apiVersion",
                                "bindy.firestoned.io/v1beta1", "kind", "ARecord", "metadata", "name", "x",
                                "namespace", "ns", "spec", "name", name, "ipv4Addresses", "10.0.0.1");
        val_report_t rep;
        val_report_init(&rep);
        val_check(cat, obj, &rep);
        bool got = rep.nerrors == 0;
        val_report_deinit(&rep);
        json_decref(obj);
        if (got != valid)
            fail_msg("spec.name \"%s\" (%zu characters): %s, want %s", name, strlen(name),
                     got ? "valid" : "invalid", valid ? "valid" : "invalid");
    }
}

static void test_unknown_fields_warn(void **state)
{
    json_t *obj = parse_one(HDR("ARecord") "spec: {name: www, ipv4Addresses: [10.0.0.1], bindcarConfig: {x: 1}}\n");
    val_report_t rep;
    val_report_init(&rep);
    assert_int_equal(val_check(cat, obj, &rep), BD_OK);
    assert_int_equal(rep.n, 1);
    assert_int_equal(rep.items[0].sev, VAL_WARNING);
    assert_string_equal(rep.items[0].path, "spec.bindcarConfig");
    val_report_deinit(&rep);
    json_decref(obj);
}

static void test_defaults_are_applied(void **state)
{
    json_t *obj = parse_one(HDR("Bind9Instance") "spec: {}\n");
    val_report_t rep;
    val_report_init(&rep);
    assert_int_equal(val_check(cat, obj, &rep), BD_OK);
    val_report_deinit(&rep);
    const json_t *spec = json_object_get(obj, "spec");
    assert_int_equal(json_integer_value(json_object_get(spec, "replicas")), 1);
    assert_string_equal(json_string_value(json_object_get(spec, "version")), "9.18");
    json_decref(obj);
}

/* Every issue of a report, one per line, for comparing two reports. */
static void report_text(const val_report_t *rep, char *buf, size_t len)
{
    buf[0] = '\0';
    for (size_t j = 0; j < rep->n; j++) {
        size_t sl = strlen(buf);
        snprintf(buf + sl, len - sl, "%d %s: %s\n", rep->items[j].sev, rep->items[j].path, rep->items[j].msg);
    }
}

/* The projector validates journaled objects without copying them: on every case it must
 * leave the object as it was and say exactly what val_check says, or ask for a copy when
 * a default is missing; on the object val_check has defaulted it never asks. */
static void test_borrowed_check_agrees(void **state)
{
    static char want[8192], got[8192];
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_t *obj = parse_one(cases[i].yaml), *orig = parse_one(cases[i].yaml);
        val_report_t rep;
        val_report_init(&rep);
        bool missing = true;
        int brc = val_check_borrowed(cat, obj, &rep, &missing);
        report_text(&rep, got, sizeof(got));
        if (!json_equal(obj, orig))
            fail_msg("case %zu: the borrowed check changed the object", i);
        val_report_reset(&rep);
        int rc = val_check(cat, obj, &rep);
        report_text(&rep, want, sizeof(want));
        if (!missing && (brc != rc || strcmp(want, got) != 0))
            fail_msg("case %zu: borrowed %d:\n%s\nval_check %d:\n%s", i, brc, got, rc, want);
        /* obj has its defaults now */
        val_report_reset(&rep);
        brc = val_check_borrowed(cat, obj, &rep, &missing);
        report_text(&rep, got, sizeof(got));
        assert_false(missing);
        if (brc != rc || strcmp(want, got) != 0)
            fail_msg("case %zu, defaulted: borrowed %d:\n%s\nval_check %d:\n%s", i, brc, got, rc, want);
        val_report_deinit(&rep);
        json_decref(obj);
        json_decref(orig);
    }
    /* a Bind9Instance without spec.replicas lacks a default */
    json_t *obj = parse_one(HDR("Bind9Instance") "spec: {}\n");
    val_report_t rep;
    val_report_init(&rep);
    bool missing = false;
    assert_int_equal(val_check_borrowed(cat, obj, &rep, &missing), BD_OK);
    assert_true(missing);
    assert_null(json_object_get(json_object_get(obj, "spec"), "replicas"));
    val_report_deinit(&rep);
    json_decref(obj);
}

/* ---- corpora on disk ---------------------------------------------------------------- */

typedef struct {
    int errors;
    int objects;
    char first[2048];
    const char *want_path;
    int want_found;
} scan_t;

static void on_object(void *arg, const mf_object_t *o)
{
    scan_t *s = arg;
    s->objects++;
    for (size_t i = 0; i < o->rep->n; i++) {
        const val_issue_t *is = &o->rep->items[i];
        if (is->sev != VAL_ERROR)
            continue;
        s->errors++;
        if (s->first[0] == '\0')
            snprintf(s->first, sizeof(s->first), "%s:%d: %s %s", o->file, doc_line(o->doc, is->path), is->path,
                     is->msg);
        if (s->want_path && strcmp(s->want_path, is->path) == 0)
            s->want_found = 1;
    }
}

static void on_problem(void *arg, const char *file, int line, const char *msg, bool unreadable)
{
    scan_t *s = arg;
    s->errors++;
    if (s->first[0] == '\0')
        snprintf(s->first, sizeof(s->first), "%s:%d: %s", file, line, msg);
    if (s->want_path && strcmp(s->want_path, "yaml") == 0)
        s->want_found = 1;
}

static void scan_valid_dir(const char *rel, int min_objects)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/%s", src_dir(), rel);
    scan_t s = {0};
    const char *paths[] = {dir};
    mf_visitor_t vis = {on_object, on_problem};
    assert_int_equal(mf_scan(cat, paths, 1, &vis, &s), BD_OK);
    if (s.errors != 0)
        fail_msg("%s: %d errors, first: %s", rel, s.errors, s.first);
    if (s.objects < min_objects)
        fail_msg("%s: only %d objects", rel, s.objects);
}

/* The seed shows primary-dns twice, as alternative examples: validate file by file. */
static void test_seed_manifests_are_valid(void **state)
{
    scan_valid_dir("tests/data/seed/seed-replicas3.yaml", 1);
    scan_valid_dir("tests/data/seed/seed-instances.yaml", 2);
    scan_valid_dir("tests/data/seed/seed-regional.yaml", 3);
}
static void test_examples_are_valid(void **state) { scan_valid_dir("deploy/examples", 14); }

static void test_invalid_corpus(void **state)
{
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/tests/data/invalid", src_dir());
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char file[2048], line[512] = "";
        snprintf(file, sizeof(file), "%s/%s", dir, e->d_name);
        FILE *f = fopen(file, "r");
        assert_non_null(f);
        if (fgets(line, sizeof(line), f) == NULL)
            line[0] = '\0';
        fclose(f);
        const char *exp = strstr(line, "# expect: ");
        if (exp == NULL)
            fail_msg("%s: first line must be '# expect: <field.path>: <what>'", file);
        char want[256];
        exp += strlen("# expect: ");
        size_t n = strcspn(exp, ": \n");
        snprintf(want, sizeof(want), "%.*s", (int)n, exp);
        scan_t s = {.want_path = want};
        const char *paths[] = {file};
        mf_visitor_t vis = {on_object, on_problem};
        assert_int_equal(mf_scan(cat, paths, 1, &vis, &s), BD_OK);
        if (!s.want_found)
            fail_msg("%s: expected an error at %s, got %s", e->d_name, want, s.first[0] ? s.first : "none");
        files++;
    }
    closedir(d);
    assert_true(files >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kind_has_a_crd),
        cmocka_unit_test(test_c_rules_and_crds_agree),
        cmocka_unit_test(test_crd_rules_are_enforced),
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_relaxed_patterns),
        cmocka_unit_test(test_name_pattern_bounds),
        cmocka_unit_test(test_unknown_fields_warn),
        cmocka_unit_test(test_defaults_are_applied),
        cmocka_unit_test(test_borrowed_check_agrees),
        cmocka_unit_test(test_seed_manifests_are_valid),
        cmocka_unit_test(test_examples_are_valid),
        cmocka_unit_test(test_invalid_corpus),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
