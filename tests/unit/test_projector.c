/*
 * The projector: desired state from journal events, on the example manifests.
 * Proves content and membership, catalogs and topology, conflicts on the loser,
 * incremental diffs with serials, and determinism (one pass vs event by event, and a
 * change undone gives the same digest).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "doc.h"
#include "manifest.h"
#include "proj_int.h" /* proj__visited */
#include "projector.h"

static const char *src_dir(void)
{
    const char *d = getenv("BINDY_SOURCE_DIR");
    return d ? d : ".";
}

typedef struct {
    json_t *objs; /* array of objects in file order */
} collect_t;

static void on_object(void *arg, const mf_object_t *o)
{
    collect_t *c = arg;
    json_array_append(c->objs, o->obj);
}

static void on_problem(void *arg, const char *file, int line, const char *msg, bool unreadable)
{
    fail_msg("%s:%d: %s", file, line, msg);
}

static json_t *load_examples(void)
{
    val_catalog_t *cat = NULL;
    assert_int_equal(val_catalog_new(&cat, NULL), BD_OK);
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/deploy/examples", src_dir());
    const char *paths[] = {dir};
    collect_t c = {json_array()};
    mf_visitor_t vis = {on_object, on_problem};
    assert_int_equal(mf_scan(cat, paths, 1, &vis, &c), BD_OK);
    val_catalog_free(cat);
    return c.objs;
}

static uint64_t g_seq;

static void apply(proj_t *p, jnl_type_t type, json_t *obj)
{
    jnl_event_t ev = jnl_event_of(JNL_SRC_MANIFESTS, type, obj);
    ev.seq = ++g_seq;
    bd_err_t err;
    if (proj_apply(p, &ev, &err) != BD_OK)
        fail_msg("apply: %s", err.msg);
}

static json_t *parse(const char *yaml)
{
    doc_list_t *l = NULL;
    assert_int_equal(doc_load_buffer("t", yaml, strlen(yaml), 0, &l, NULL), BD_OK);
    assert_null(doc_list_error(l, NULL));
    json_t *v = json_incref(doc_value(doc_list_get(l, 0)));
    doc_list_free(l);
    return v;
}

static proj_t *examples_projector(void)
{
    proj_t *p = NULL;
    assert_int_equal(proj_new(NULL, &p, NULL), BD_OK);
    json_t *objs = load_examples();
    size_t i;
    json_t *o;
    json_array_foreach(objs, i, o) apply(p, JNL_ADDED, o);
    json_decref(objs);
    return p;
}

static bool has_rr(const proj_t *p, const char *zone, const char *line)
{
    const proj_zone_t *z = proj_zone_get(p, zone);
    if (z == NULL)
        return false;
    res_strv_t rrs;
    assert_int_equal(proj_zone_rrs(z, &rrs), BD_OK);
    bool found = false;
    for (size_t i = 0; i < rrs.n; i++)
        found |= strcmp(rrs.v[i], line) == 0;
    res_strv_deinit(&rrs);
    return found;
}

static void assert_rr(const proj_t *p, const char *zone, const char *line)
{
    if (!has_rr(p, zone, line)) {
        const proj_zone_t *z = proj_zone_get(p, zone);
        if (z) {
            res_strv_t rrs;
            proj_zone_rrs(z, &rrs);
            for (size_t i = 0; i < rrs.n; i++)
                fprintf(stderr, "  have: %s\n", rrs.v[i]);
            res_strv_deinit(&rrs);
        }
        fail_msg("zone %s lacks \"%s\"", zone, line);
    }
}

static void assert_status(const proj_t *p, const char *kind, const char *name, bool ready, const char *reason)
{
    proj_status_t st;
    proj_status(p, kind, "dns-system", name, &st);
    if (!st.known || st.ready != ready || strcmp(st.reason, reason) != 0)
        fail_msg("%s %s: want %s, got %s (%s)", kind, name, reason, st.known ? st.reason : "unknown",
                 st.known ? st.message : "");
}

static void test_examples_content(void **state)
{
    proj_t *p = examples_projector();
    const proj_zone_t *z = proj_zone_get(p, "example.com");
    assert_non_null(z);
    char *soa = NULL;
    assert_int_equal(proj_zone_soa(z, &soa), BD_OK);
    /* soaRecord.serial 2024010101 is a floor; the zone's first version is at least that */
    assert_true(proj_zone_serial(z) >= 2024010101u);
    assert_non_null(strstr(soa, "example.com. 3600 IN SOA ns1.example.com. admin.example.com. "));
    free(soa);

    assert_rr(p, "example.com", "example.com. 3600 IN NS ns1.example.com.");
    assert_rr(p, "example.com", "example.com. 3600 IN NS ns2.example.com.");
    assert_rr(p, "example.com", "ns1.example.com. 3600 IN A 192.0.2.1");
    assert_rr(p, "example.com", "ns1.example.com. 3600 IN AAAA 2001:db8::1");
    assert_rr(p, "example.com", "www.example.com. 300 IN A 192.0.2.10");
    assert_rr(p, "example.com", "www.example.com. 300 IN A 192.0.2.11");
    assert_rr(p, "example.com", "www.example.com. 300 IN AAAA 2001:db8::10");
    assert_rr(p, "example.com", "blog.example.com. 3600 IN CNAME www.example.com.");

    /* every kind is published */
    res_strv_t rrs;
    assert_int_equal(proj_zone_rrs(z, &rrs), BD_OK);
    static const char *const types[] = {" IN MX ", " IN TXT ", " IN SRV ", " IN CAA ", " IN NS "};
    for (size_t t = 0; t < sizeof(types) / sizeof(*types); t++) {
        bool found = false;
        for (size_t i = 0; i < rrs.n; i++)
            found |= strstr(rrs.v[i], types[t]) != NULL;
        if (!found)
            fail_msg("no%sRR in example.com", types[t]);
    }
    /* the long TXT string is split in <=255-octet character-strings */
    bool split = false;
    for (size_t i = 0; i < rrs.n; i++)
        split |= strstr(rrs.v[i], " IN TXT \"") && strstr(rrs.v[i], "\" \"");
    assert_true(split);
    res_strv_deinit(&rrs);

    /* membership: primary-dns and secondary-dns (and the regional ones) by label */
    const res_strv_t *inst = proj_zone_instances(z);
    assert_true(inst->n >= 2);
    bool prim = false, sec = false;
    for (size_t i = 0; i < inst->n; i++) {
        prim |= strcmp(inst->v[i], "dns-system/primary-dns") == 0;
        sec |= strcmp(inst->v[i], "dns-system/secondary-dns") == 0;
    }
    assert_true(prim && sec);
    assert_status(p, "DNSZone", "example-com", true, "Ready");
    assert_status(p, "ARecord", "www-example-com", true, "Ready");
    assert_status(p, "Bind9Instance", "primary-dns", true, "Ready");
    proj_free(p);
}

static void test_catalogs_and_topology(void **state)
{
    proj_t *p = examples_projector();
    size_t n = 0;
    const proj_instance_t **insts = proj_instances(p, &n);
    const proj_instance_t *primary = NULL, *secondary = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(insts[i]->key, "dns-system/primary-dns") == 0)
            primary = insts[i];
        if (strcmp(insts[i]->key, "dns-system/secondary-dns") == 0)
            secondary = insts[i];
    }
    assert_non_null(primary);
    assert_non_null(secondary);
    assert_int_equal(primary->upstream.n, 0);      /* primaries pull from bindy */
    assert_true(secondary->upstream.n >= 1);       /* secondaries pull from primaries */
    bool up = false;
    for (size_t i = 0; i < secondary->upstream.n; i++)
        up |= strcmp(secondary->upstream.v[i], "dns-system/primary-dns") == 0;
    assert_true(up);

    /* the primary's catalog lists example.com and the secondary's catalog */
    const proj_zone_t *cat = proj_zone_get(p, primary->catalog);
    assert_non_null(cat);
    assert_true(proj_zone_is_catalog(cat));
    res_strv_t rrs;
    assert_int_equal(proj_zone_rrs(cat, &rrs), BD_OK);
    bool member = false, nested = false, version = false;
    char want_nested[300];
    snprintf(want_nested, sizeof(want_nested), " IN PTR %s.", secondary->catalog);
    for (size_t i = 0; i < rrs.n; i++) {
        member |= strstr(rrs.v[i], " IN PTR example.com.") != NULL;
        nested |= strstr(rrs.v[i], want_nested) != NULL;
        version |= strstr(rrs.v[i], "version.") == rrs.v[i] && strstr(rrs.v[i], "IN TXT \"2\"");
    }
    res_strv_deinit(&rrs);
    assert_true(member && nested && version);
    proj_free(p);
}

static void test_incremental_change_and_serial(void **state)
{
    proj_t *p = examples_projector();
    proj_changes_t ch;
    assert_int_equal(proj_take_changes(p, &ch), BD_OK);
    assert_true(ch.nzones >= 1);
    proj_changes_deinit(&ch);
    uint32_t s0 = proj_zone_serial(proj_zone_get(p, "example.com"));

    json_t *a = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
                      "metadata: {name: www-example-com, namespace: dns-system, labels: {zone: example.com}}\n"
                      "spec: {name: www, ttl: 300, ipv4Addresses: [192.0.2.10, 192.0.2.99]}\n");
    apply(p, JNL_MODIFIED, a);
    json_decref(a);
    assert_int_equal(proj_zone_serial(proj_zone_get(p, "example.com")), s0 + 1);
    assert_int_equal(proj_take_changes(p, &ch), BD_OK);
    assert_int_equal(ch.nzones, 1);
    assert_string_equal(ch.zones[0].zone, "example.com");
    assert_int_equal(ch.zones[0].removed.n, 1);
    assert_string_equal(ch.zones[0].removed.v[0], "www.example.com. 300 IN A 192.0.2.11");
    assert_int_equal(ch.zones[0].added.n, 1);
    assert_string_equal(ch.zones[0].added.v[0], "www.example.com. 300 IN A 192.0.2.99");
    assert_int_equal(ch.zones[0].serial, s0 + 1);
    assert_int_equal(ch.statuses.n, 0); /* still Ready, same message: no status write */
    proj_changes_deinit(&ch);

    /* an event that changes nothing rendered does not advance the serial */
    a = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
              "metadata: {name: www-example-com, namespace: dns-system, labels: {zone: example.com}, "
              "annotations: {note: x}}\n"
              "spec: {name: www, ttl: 300, ipv4Addresses: [192.0.2.99, 192.0.2.10]}\n");
    apply(p, JNL_MODIFIED, a);
    json_decref(a);
    assert_int_equal(proj_zone_serial(proj_zone_get(p, "example.com")), s0 + 1);

    /* floor: a new leader saw a server publish a higher serial */
    assert_int_equal(proj_serial_floor(p, "example.com", s0 + 100), BD_OK);
    assert_int_equal(proj_zone_serial(proj_zone_get(p, "example.com")), s0 + 101);

    /* delete: the record's RRs go */
    a = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
              "metadata: {name: www-example-com, namespace: dns-system}\nspec: {name: www, ipv4Addresses: [192.0.2.1]}\n");
    apply(p, JNL_DELETED, a);
    json_decref(a);
    assert_false(has_rr(p, "example.com", "www.example.com. 300 IN A 192.0.2.99"));
    proj_free(p);
}

/* The example.com DNSZone of the examples (new reference). */
static json_t *example_zone(void)
{
    json_t *objs = load_examples(), *o, *zone = NULL;
    size_t i;
    json_array_foreach(objs, i, o) {
        const json_t *spec = json_object_get(o, "spec");
        if (strcmp(json_string_value(json_object_get(o, "kind")), "DNSZone") == 0 &&
            strcmp(json_string_value(json_object_get(spec, "zoneName")), "example.com") == 0)
            zone = json_deep_copy(o);
    }
    json_decref(objs);
    assert_non_null(zone);
    return zone;
}

static void set_www(proj_t *p, const char *addr)
{
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
             "metadata: {name: www-example-com, namespace: dns-system, labels: {zone: example.com}}\n"
             "spec: {name: www, ttl: 300, ipv4Addresses: [%s]}\n",
             addr);
    json_t *a = parse(yaml);
    apply(p, JNL_MODIFIED, a);
    json_decref(a);
}

/* A record's status carries the serial of the zone version that published it (a record
 * edit does not rewrite its zone's status): a replica that journaled fewer versions goes
 * above it too, and the leader, which published it, makes no new version. */
static void test_record_published_serial(void **state)
{
    (void)state;
    proj_t *a = examples_projector(), *b = examples_projector();
    const char *addrs[] = {"192.0.2.31", "192.0.2.32", "192.0.2.33", "192.0.2.34"};
    for (int i = 0; i < 4; i++)
        set_www(a, addrs[i]);
    set_www(b, addrs[3]);
    uint32_t sa = proj_zone_serial(proj_zone_get(a, "example.com"));
    assert_true(sa > proj_zone_serial(proj_zone_get(b, "example.com")));

    char yaml[640];
    snprintf(yaml, sizeof(yaml),
             "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
             "metadata: {name: www-example-com, namespace: dns-system, labels: {zone: example.com}}\n"
             "spec: {name: www, ttl: 300, ipv4Addresses: [%s]}\n"
             "status: {zone: example.com, fqdn: www.example.com., serial: %u}\n",
             addrs[3], sa);
    json_t *w = parse(yaml);
    apply(a, JNL_MODIFIED, w);
    apply(b, JNL_MODIFIED, w);
    json_decref(w);
    assert_int_equal(proj_zone_serial(proj_zone_get(a, "example.com")), sa);
    assert_int_equal(proj_zone_serial(proj_zone_get(b, "example.com")), sa + 1);
    /* a serial for a zone the replica does not know changes nothing */
    snprintf(yaml, sizeof(yaml),
             "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
             "metadata: {name: www-example-com, namespace: dns-system, labels: {zone: example.com}}\n"
             "spec: {name: www, ttl: 300, ipv4Addresses: [%s]}\n"
             "status: {zone: example.org, fqdn: www.example.org., serial: %u}\n",
             addrs[3], sa + 100);
    w = parse(yaml);
    apply(b, JNL_MODIFIED, w);
    json_decref(w);
    assert_int_equal(proj_zone_serial(proj_zone_get(b, "example.com")), sa + 1);
    proj_free(a);
    proj_free(b);
}

/* A status-only update of a DNSZone (bindy's own status writes come back through the
 * watch) makes no zone version; the serial a leader published (status.serial) carries a
 * replica that journaled fewer versions up to the same serial, without a new version. */
static void test_published_serial(void **state)
{
    proj_t *a = examples_projector(), *b = examples_projector();
    proj_changes_t ch;
    /* replica a saw five more versions of www than replica b (which started later) */
    const char *addrs[] = {"192.0.2.21", "192.0.2.22", "192.0.2.23", "192.0.2.24", "192.0.2.25"};
    for (int i = 0; i < 5; i++)
        set_www(a, addrs[i]);
    set_www(b, addrs[4]);
    uint32_t sa = proj_zone_serial(proj_zone_get(a, "example.com"));
    uint32_t sb = proj_zone_serial(proj_zone_get(b, "example.com"));
    assert_true(sa > sb);
    char da[65], db[65];
    assert_int_equal(proj_digest(a, da), BD_OK);
    assert_int_equal(proj_digest(b, db), BD_OK);
    assert_string_equal(da, db); /* same content, different histories */
    assert_int_equal(proj_take_changes(a, &ch), BD_OK);
    proj_changes_deinit(&ch);
    assert_int_equal(proj_take_changes(b, &ch), BD_OK);
    proj_changes_deinit(&ch);

    /* the leader (a) writes status.serial; both replicas journal that MODIFIED */
    json_t *z = example_zone();
    json_object_set_new(z, "status", json_pack("{s:I,s:I,s:[{s:s,s:s}]}", "serial", (json_int_t)sa, "recordCount",
                                               (json_int_t)3, "conditions", "type", "Ready", "status", "True"));
    apply(a, JNL_MODIFIED, z);
    apply(b, JNL_MODIFIED, z);
    assert_int_equal(proj_zone_serial(proj_zone_get(a, "example.com")), sa); /* no new version */
    assert_int_equal(proj_take_changes(a, &ch), BD_OK);
    assert_int_equal(ch.nzones, 0);
    proj_changes_deinit(&ch);
    /* carried above it: b cannot know its content is what a published under sa */
    assert_int_equal(proj_zone_serial(proj_zone_get(b, "example.com")), sa + 1);
    assert_int_equal(proj_take_changes(b, &ch), BD_OK);
    assert_int_equal(ch.nzones, 1);
    assert_int_equal(ch.zones[0].serial, sa + 1);
    assert_int_equal(ch.zones[0].added.n + ch.zones[0].removed.n, 0);
    proj_changes_deinit(&ch);

    /* b now leads and publishes sa + 1: that comes back as a floor it already meets */
    json_object_set_new(json_object_get(z, "status"), "serial", json_integer((json_int_t)sa + 1));
    apply(b, JNL_MODIFIED, z);
    assert_int_equal(proj_zone_serial(proj_zone_get(b, "example.com")), sa + 1);
    set_www(b, "192.0.2.26");
    assert_int_equal(proj_zone_serial(proj_zone_get(b, "example.com")), sa + 2);

    /* a label edit of the zone is not a new version either */
    json_object_set_new(json_object_get(z, "metadata"), "labels", json_pack("{s:s}", "team", "dns"));
    apply(b, JNL_MODIFIED, z);
    assert_int_equal(proj_zone_serial(proj_zone_get(b, "example.com")), sa + 2);
    /* an SOA field is */
    json_object_set_new(json_object_get(json_object_get(z, "spec"), "soaRecord"), "refresh", json_integer(7200));
    apply(b, JNL_MODIFIED, z);
    assert_int_equal(proj_zone_serial(proj_zone_get(b, "example.com")), sa + 3);
    json_decref(z);
    proj_free(a);
    proj_free(b);
}

static void test_conflicts_and_bad_input(void **state)
{
    proj_t *p = examples_projector();
    /* a second DNSZone for example.com loses: it is younger */
    json_t *o = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\n"
                      "metadata: {name: example-com-again, namespace: dns-system}\n"
                      "spec: {zoneName: example.com, soaRecord: {primaryNs: ns9.example.com., adminEmail: a@b.c}}\n");
    apply(p, JNL_ADDED, o);
    json_decref(o);
    assert_status(p, "DNSZone", "example-com-again", false, "DuplicateZone");
    assert_status(p, "DNSZone", "example-com", true, "Ready");
    assert_rr(p, "example.com", "example.com. 3600 IN NS ns1.example.com.");

    /* a CNAME at a name that already has an A record: the younger CNAME loses */
    o = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: CNAMERecord\n"
              "metadata: {name: www-cname, namespace: dns-system, labels: {zone: example.com}}\n"
              "spec: {name: www, target: elsewhere.example.net.}\n");
    apply(p, JNL_ADDED, o);
    json_decref(o);
    assert_status(p, "CNAMERecord", "www-cname", false, "CnameConflict");
    assert_status(p, "ARecord", "www-example-com", true, "Ready");
    assert_false(has_rr(p, "example.com", "www.example.com. 3600 IN CNAME elsewhere.example.net."));

    /* the same name and type: merged when TTLs agree, the younger loses when not */
    o = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
              "metadata: {name: www-more, namespace: dns-system, labels: {zone: example.com}}\n"
              "spec: {name: www, ttl: 300, ipv4Addresses: [192.0.2.12]}\n");
    apply(p, JNL_ADDED, o);
    json_decref(o);
    assert_status(p, "ARecord", "www-more", true, "Ready");
    assert_rr(p, "example.com", "www.example.com. 300 IN A 192.0.2.12");
    o = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
              "metadata: {name: www-ttl, namespace: dns-system, labels: {zone: example.com}}\n"
              "spec: {name: www, ttl: 60, ipv4Addresses: [192.0.2.13]}\n");
    apply(p, JNL_ADDED, o);
    json_decref(o);
    assert_status(p, "ARecord", "www-ttl", false, "RecordConflict");
    assert_false(has_rr(p, "example.com", "www.example.com. 60 IN A 192.0.2.13"));

    /* an invalid new version: Ready=False/InvalidSpec and the last valid one stays served */
    o = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
              "metadata: {name: www-more, namespace: dns-system, labels: {zone: example.com}}\n"
              "spec: {name: www, ttl: 300, ipv4Addresses: [10.0.0.300]}\n");
    apply(p, JNL_MODIFIED, o);
    json_decref(o);
    assert_status(p, "ARecord", "www-more", false, "InvalidSpec");
    proj_status_t st;
    proj_status(p, "ARecord", "dns-system", "www-more", &st);
    assert_non_null(strstr(st.message, "spec.ipv4Addresses[0]"));
    assert_rr(p, "example.com", "www.example.com. 300 IN A 192.0.2.12");

    /* a record no zone selects; a zone no instance serves */
    o = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
              "metadata: {name: lonely, namespace: dns-system, labels: {zone: nowhere}}\n"
              "spec: {name: x, ipv4Addresses: [192.0.2.1]}\n");
    apply(p, JNL_ADDED, o);
    json_decref(o);
    assert_status(p, "ARecord", "lonely", false, "NotSelected");
    o = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\n"
              "metadata: {name: orphan, namespace: dns-system}\n"
              "spec: {zoneName: orphan.test, soaRecord: {primaryNs: ns1.orphan.test., adminEmail: a@orphan.test}}\n");
    apply(p, JNL_ADDED, o);
    json_decref(o);
    assert_status(p, "DNSZone", "orphan", false, "NoInstancesSelected");

    /* deleting the winning DNSZone hands the zone to the remaining one */
    o = parse("apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\nmetadata: {name: example-com, namespace: dns-system}\n"
              "spec: {zoneName: example.com, soaRecord: {primaryNs: ns1.example.com., adminEmail: a@b.c}}\n");
    apply(p, JNL_DELETED, o);
    json_decref(o);
    assert_rr(p, "example.com", "example.com. 3600 IN NS ns9.example.com.");
    proj_free(p);
}

static void test_determinism(void **state)
{
    /* one pass, changes taken once */
    proj_t *a = examples_projector();
    char da[65], db[65], dc[65];
    assert_int_equal(proj_digest(a, da), BD_OK);

    /* event by event, changes taken after each, in a second projector */
    proj_t *b = NULL;
    assert_int_equal(proj_new(NULL, &b, NULL), BD_OK);
    json_t *objs = load_examples();
    size_t i;
    json_t *o;
    json_array_foreach(objs, i, o) {
        apply(b, JNL_ADDED, o);
        proj_changes_t ch;
        assert_int_equal(proj_take_changes(b, &ch), BD_OK);
        proj_changes_deinit(&ch);
    }
    assert_int_equal(proj_digest(b, db), BD_OK);
    assert_string_equal(da, db);

    /* a change undone leaves the same rendered state */
    json_t *first = NULL;
    json_array_foreach(objs, i, o) if (!first && strcmp(json_string_value(json_object_get(o, "kind")), "Bind9Instance") == 0)
        first = json_deep_copy(o);
    assert_non_null(first);
    json_t *changed = json_deep_copy(first);
    json_object_set_new(json_object_get(changed, "spec"), "replicas", json_integer(7));
    apply(b, JNL_MODIFIED, changed);
    assert_int_equal(proj_digest(b, dc), BD_OK);
    assert_string_not_equal(da, dc);
    apply(b, JNL_MODIFIED, first);
    assert_int_equal(proj_digest(b, dc), BD_OK);
    assert_string_equal(da, dc);
    json_decref(first);
    json_decref(changed);
    json_decref(objs);
    proj_free(a);
    proj_free(b);
}

/* The example object kind/name (new reference). */
static json_t *example_obj(const char *kind, const char *name)
{
    json_t *objs = load_examples(), *o, *found = NULL;
    size_t i;
    json_array_foreach(objs, i, o) {
        const json_t *meta = json_object_get(o, "metadata");
        if (strcmp(json_string_value(json_object_get(o, "kind")), kind) == 0 &&
            strcmp(json_string_value(json_object_get(meta, "name")), name) == 0)
            found = json_deep_copy(o);
    }
    json_decref(objs);
    assert_non_null(found);
    return found;
}

static void mark_deleting(json_t *o, const char *finalizer)
{
    json_t *meta = json_object_get(o, "metadata");
    json_object_set_new(meta, "deletionTimestamp", json_string("2024-05-01T10:00:00Z"));
    json_object_set_new(meta, "finalizers", finalizer ? json_pack("[s]", finalizer) : json_array());
}

static void drain(proj_t *p)
{
    proj_changes_t ch;
    assert_int_equal(proj_take_changes(p, &ch), BD_OK);
    proj_changes_deinit(&ch);
}

/* An object being deleted (deletionTimestamp set, a finalizer holding it) leaves the desired
 * state as on DELETED, with the same serials and diffs; later events for it (the finalizer
 * removed, DELETED) change nothing more; its status is not an error. */
static void test_deletion_timestamp(void **state)
{
    /* reference: a plain DELETED of the record */
    proj_t *ref = examples_projector();
    drain(ref);
    json_t *rec = example_obj("ARecord", "www-example-com");
    apply(ref, JNL_DELETED, rec);
    char dref[65];
    assert_int_equal(proj_digest(ref, dref), BD_OK);
    uint32_t sref = proj_zone_serial(proj_zone_get(ref, "example.com"));
    proj_changes_t cref;
    assert_int_equal(proj_take_changes(ref, &cref), BD_OK);

    proj_t *p = examples_projector();
    drain(p);
    uint32_t s0 = proj_zone_serial(proj_zone_get(p, "example.com"));
    assert_rr(p, "example.com", "www.example.com. 300 IN A 192.0.2.10");
    json_t *dying = json_deep_copy(rec);
    mark_deleting(dying, "bindy.firestoned.io/finalizer");
    apply(p, JNL_MODIFIED, dying);
    assert_false(has_rr(p, "example.com", "www.example.com. 300 IN A 192.0.2.10"));
    assert_int_equal(proj_zone_serial(proj_zone_get(p, "example.com")), s0 + 1);
    assert_int_equal(proj_zone_serial(proj_zone_get(p, "example.com")), sref);
    char dp[65];
    assert_int_equal(proj_digest(p, dp), BD_OK);
    assert_string_equal(dp, dref);
    proj_changes_t ch;
    assert_int_equal(proj_take_changes(p, &ch), BD_OK);
    assert_int_equal(ch.nzones, cref.nzones);
    for (size_t i = 0; i < ch.nzones; i++) {
        assert_string_equal(ch.zones[i].zone, cref.zones[i].zone);
        assert_int_equal(ch.zones[i].serial, cref.zones[i].serial);
        assert_int_equal(ch.zones[i].removed.n, cref.zones[i].removed.n);
        assert_int_equal(ch.zones[i].added.n, cref.zones[i].added.n);
        for (size_t k = 0; k < ch.zones[i].removed.n; k++)
            assert_string_equal(ch.zones[i].removed.v[k], cref.zones[i].removed.v[k]);
    }
    assert_true(ch.nzones >= 1);
    proj_changes_deinit(&ch);
    proj_changes_deinit(&cref);
    /* not reported as an error: the object is no longer part of the desired state */
    proj_status_t st;
    proj_status(p, "ARecord", "dns-system", "www-example-com", &st);
    assert_false(st.known);
    assert_null(proj_resource(p, "ARecord", "dns-system", "www-example-com"));

    /* the finalizer released (MODIFIED, still deleting), then DELETED: nothing more */
    json_object_set_new(json_object_get(dying, "metadata"), "finalizers", json_array());
    apply(p, JNL_MODIFIED, dying);
    apply(p, JNL_DELETED, dying);
    assert_int_equal(proj_zone_serial(proj_zone_get(p, "example.com")), s0 + 1);
    assert_int_equal(proj_digest(p, dp), BD_OK);
    assert_string_equal(dp, dref);
    assert_int_equal(proj_take_changes(p, &ch), BD_OK);
    assert_int_equal(ch.nzones, 0);
    assert_int_equal(ch.statuses.n, 0);
    proj_changes_deinit(&ch);
    proj_status(p, "ARecord", "dns-system", "www-example-com", &st);
    assert_false(st.known);

    /* a DNSZone being deleted: its zone leaves the projection; DELETED then changes nothing */
    json_t *zone = example_zone();
    mark_deleting(zone, "bindy.firestoned.io/finalizer");
    apply(p, JNL_MODIFIED, zone);
    assert_null(proj_zone_get(p, "example.com"));
    assert_int_equal(proj_take_changes(p, &ch), BD_OK);
    bool deleted = false;
    for (size_t i = 0; i < ch.nzones; i++)
        deleted |= strcmp(ch.zones[i].zone, "example.com") == 0 && ch.zones[i].deleted;
    assert_true(deleted);
    proj_changes_deinit(&ch);
    proj_status(p, "DNSZone", "dns-system", "example-com", &st);
    assert_false(st.known);
    assert_int_equal(proj_digest(p, dp), BD_OK);
    apply(p, JNL_DELETED, zone);
    char dq[65];
    assert_int_equal(proj_digest(p, dq), BD_OK);
    assert_string_equal(dp, dq);
    assert_int_equal(proj_take_changes(p, &ch), BD_OK);
    assert_int_equal(ch.nzones, 0);
    assert_int_equal(ch.statuses.n, 0);
    proj_changes_deinit(&ch);
    assert_null(proj_zone_get(p, "example.com"));

    json_decref(zone);
    json_decref(dying);
    json_decref(rec);
    proj_free(p);
    proj_free(ref);
}


/* ---- snapshots ---------------------------------------------------------------------- */

/* A mixed stream: the examples, conflicts, an invalid version over a valid one, an object
 * never valid, a record in two zones whose attach order the history flips, published
 * serials, a deletionTimestamp and DELETED events. Events own their objects. */
typedef struct {
    jnl_type_t type;
    json_t *obj;
} sev_t;

#define SNAP_MAX_EVENTS 64

static void sev_add(sev_t *v, size_t *n, jnl_type_t type, json_t *obj)
{
    assert_true(*n < SNAP_MAX_EVENTS);
    v[*n].type = type;
    v[*n].obj = obj;
    (*n)++;
}

static size_t mixed_stream(sev_t *v)
{
    size_t n = 0, i;
    json_t *objs = load_examples(), *o;
    json_array_foreach(objs, i, o) sev_add(v, &n, JNL_ADDED, json_incref(o));
    json_decref(objs);
    static const char *const yaml[] = {
        /* a younger duplicate zone, CNAME and TTL conflicts, a merge */
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\nmetadata: {name: example-com-again, namespace: dns-system}\n"
        "spec: {zoneName: example.com, soaRecord: {primaryNs: ns9.example.com., adminEmail: a@b.c}}\n",
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: CNAMERecord\n"
        "metadata: {name: www-cname, namespace: dns-system, labels: {zone: example.com}}\n"
        "spec: {name: www, target: elsewhere.example.net.}\n",
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
        "metadata: {name: www-more, namespace: dns-system, labels: {zone: example.com}}\n"
        "spec: {name: www, ttl: 300, ipv4Addresses: [192.0.2.12]}\n",
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
        "metadata: {name: www-ttl, namespace: dns-system, labels: {zone: example.com}}\n"
        "spec: {name: www, ttl: 60, ipv4Addresses: [192.0.2.13]}\n",
        /* an invalid new version of www-more: its last valid version stays served */
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
        "metadata: {name: www-more, namespace: dns-system, labels: {zone: example.com}}\n"
        "spec: {name: www, ttl: 300, ipv4Addresses: [10.0.0.300]}\n",
        /* never valid */
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
        "metadata: {name: broken, namespace: dns-system, labels: {zone: example.com}}\n"
        "spec: {name: broken, ipv4Addresses: [300.1.1.1]}\n",
        /* a sub-zone selecting the same records, then a record in both zones */
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\nmetadata: {name: sub-example-com, namespace: dns-system}\n"
        "spec: {zoneName: sub.example.com, clusterRef: production-dns, soaRecord: {primaryNs: ns1.example.com., "
        "adminEmail: a@b.c}, recordsFrom: [{selector: {matchLabels: {zone: example.com}}}]}\n",
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
        "metadata: {name: host-sub, namespace: dns-system, labels: {zone: example.com}}\n"
        "spec: {name: host.sub.example.com., ipv4Addresses: [192.0.2.44]}\n",
        "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
        "metadata: {name: lonely, namespace: dns-system, labels: {zone: nowhere}}\n"
        "spec: {name: x, ipv4Addresses: [192.0.2.1]}\n",
    };
    jnl_type_t types[] = {JNL_ADDED, JNL_ADDED, JNL_ADDED, JNL_ADDED, JNL_MODIFIED, JNL_ADDED, JNL_ADDED, JNL_ADDED, JNL_ADDED};
    for (i = 0; i < sizeof(yaml) / sizeof(*yaml); i++)
        sev_add(v, &n, types[i], parse(yaml[i]));
    /* example.com rebuilt: host-sub now joined sub.example.com first */
    json_t *z = example_zone();
    json_object_set_new(json_object_get(z, "spec"), "ttl", json_integer(1800));
    sev_add(v, &n, JNL_MODIFIED, z);
    /* a published serial far ahead (a leader that journaled more) */
    z = json_deep_copy(z);
    json_object_set_new(z, "status", json_pack("{s:i}", "serial", 5000));
    sev_add(v, &n, JNL_MODIFIED, z);
    /* www changes twice; a record is being deleted (finalizer), another is deleted */
    for (int k = 0; k < 2; k++) {
        json_t *a = example_obj("ARecord", "www-example-com");
        json_object_set_new(json_object_get(a, "spec"), "ipv4Addresses", json_pack("[s]", k ? "192.0.2.71" : "192.0.2.70"));
        sev_add(v, &n, JNL_MODIFIED, a);
    }
    json_t *mx = example_obj("MXRecord", "mx-example-com");
    mark_deleting(mx, "bindy.firestoned.io/finalizer");
    sev_add(v, &n, JNL_MODIFIED, mx);
    sev_add(v, &n, JNL_DELETED, example_obj("CAARecord", "caa-iodef-example-com"));
    sev_add(v, &n, JNL_DELETED, example_obj("Bind9Instance", "secondary-eu-west"));
    return n;
}

static void sev_apply(proj_t *p, const sev_t *v, uint64_t seq)
{
    jnl_event_t ev = jnl_event_of(JNL_SRC_MANIFESTS, v[seq - 1].type, (json_t *)v[seq - 1].obj);
    ev.seq = seq;
    bd_err_t err;
    if (proj_apply(p, &ev, &err) != BD_OK)
        fail_msg("apply seq %llu: %s", (unsigned long long)seq, err.msg);
    /* what the operator does between events: a floor from a new leader's servers */
    if (seq == 12)
        assert_int_equal(proj_serial_floor(p, "example.com", 300), BD_OK);
    drain(p);
}

typedef struct {
    const sev_t *v;
    size_t n;
    unsigned calls;
} sfetch_t;

static json_t *sev_fetch(void *arg, uint64_t seq, bd_err_t *err)
{
    sfetch_t *f = arg;
    f->calls++;
    if (seq == 0 || seq > f->n) {
        bd_err_set(err, BD_ENOTFOUND, "no event %llu", (unsigned long long)seq);
        return NULL;
    }
    return json_incref(f->v[seq - 1].obj);
}

/* Everything a user could tell apart: content, serials, instances, every status. */
static void assert_same_projection(const proj_t *a, const proj_t *b, const sev_t *v, size_t n)
{
    char da[65], db[65];
    assert_int_equal(proj_digest(a, da), BD_OK);
    assert_int_equal(proj_digest(b, db), BD_OK);
    assert_string_equal(da, db);
    size_t na = 0, nb = 0;
    const proj_zone_t **za = proj_zones(a, &na);
    const proj_zone_t **zb = proj_zones(b, &nb);
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_string_equal(proj_zone_name(za[i]), proj_zone_name(zb[i]));
        if (proj_zone_serial(za[i]) != proj_zone_serial(zb[i]))
            fail_msg("zone %s: serial %u after a full replay, %u after a restore", proj_zone_name(za[i]),
                     proj_zone_serial(za[i]), proj_zone_serial(zb[i]));
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *meta = json_object_get(v[i].obj, "metadata");
        const char *kind = json_string_value(json_object_get(v[i].obj, "kind"));
        const char *ns = json_string_value(json_object_get(meta, "namespace"));
        const char *name = json_string_value(json_object_get(meta, "name"));
        proj_status_t sa, sb;
        proj_status(a, kind, ns, name, &sa);
        proj_status(b, kind, ns, name, &sb);
        assert_int_equal(sa.known, sb.known);
        if (!sa.known)
            continue;
        if (sa.ready != sb.ready || strcmp(sa.reason, sb.reason) != 0 || strcmp(sa.message, sb.message) != 0)
            fail_msg("%s %s: \"%s: %s\" after a full replay, \"%s: %s\" after a restore", kind, name, sa.reason,
                     sa.message, sb.reason, sb.message);
    }
}

/* Restoring a snapshot taken at seq k and replaying k+1.. gives what a full replay gives,
 * now and for the serials of later events; the restore reports every zone created with
 * its whole content and every status. */
static void test_snapshot_restore(void **state)
{
    static sev_t v[SNAP_MAX_EVENTS];
    size_t n = mixed_stream(v);
    proj_t *full = NULL;
    assert_int_equal(proj_new(NULL, &full, NULL), BD_OK);
    for (uint64_t s = 1; s <= n; s++)
        sev_apply(full, v, s);
    /* the stream holds what it claims */
    assert_status(full, "ARecord", "www-more", false, "InvalidSpec");
    assert_status(full, "ARecord", "broken", false, "InvalidSpec");
    assert_status(full, "DNSZone", "example-com-again", false, "DuplicateZone");
    assert_status(full, "CNAMERecord", "www-cname", false, "CnameConflict");
    assert_status(full, "ARecord", "www-ttl", false, "RecordConflict");
    proj_status_t st;
    proj_status(full, "ARecord", "dns-system", "host-sub", &st);
    assert_non_null(strstr(st.message, "in zone sub.example.com and others"));

    const uint64_t points[] = {1, 5, 17, n - 9, n - 2, n};
    for (size_t pi = 0; pi < sizeof(points) / sizeof(*points); pi++) {
        uint64_t k = points[pi];
        proj_t *a = NULL, *b = NULL;
        assert_int_equal(proj_new(NULL, &a, NULL), BD_OK);
        assert_int_equal(proj_new(NULL, &b, NULL), BD_OK);
        for (uint64_t s = 1; s <= k; s++)
            sev_apply(a, v, s);
        sfetch_t f = {v, n, 0};
        char *text = NULL;
        size_t len = 0;
        bd_err_t err;
        if (proj_snapshot(a, sev_fetch, &f, &text, &len, &err) != BD_OK)
            fail_msg("snapshot at %llu: %s", (unsigned long long)k, err.msg);
        assert_true(f.calls > 0);
        if (proj_restore(b, text, len, &err) != BD_OK)
            fail_msg("restore at %llu: %s", (unsigned long long)k, err.msg);
        assert_int_equal(proj_seq(b), k);
        /* a restore hands over everything: the zone store is loaded from it */
        proj_changes_t ch;
        assert_int_equal(proj_take_changes(b, &ch), BD_OK);
        size_t nz = 0;
        proj_zones(b, &nz);
        assert_int_equal(ch.nzones, nz);
        for (size_t i = 0; i < ch.nzones; i++) {
            res_strv_t rrs;
            assert_true(ch.zones[i].created);
            assert_int_equal(proj_zone_rrs(proj_zone_get(b, ch.zones[i].zone), &rrs), BD_OK);
            assert_int_equal(ch.zones[i].added.n, rrs.n);
            assert_int_equal(ch.zones[i].serial, proj_zone_serial(proj_zone_get(a, ch.zones[i].zone)));
            res_strv_deinit(&rrs);
        }
        assert_true(ch.statuses.n > 0);
        proj_changes_deinit(&ch);
        assert_same_projection(a, b, v, n);
        /* a snapshot of the restored projector is the same text: nothing lost or reordered */
        char *again = NULL;
        size_t alen = 0;
        assert_int_equal(proj_snapshot(b, sev_fetch, &f, &again, &alen, &err), BD_OK);
        assert_int_equal(alen, len);
        assert_memory_equal(again, text, len);
        free(again);
        for (uint64_t s = k + 1; s <= n; s++)
            sev_apply(b, v, s);
        assert_same_projection(full, b, v, n);
        /* the same serial for the next change of every kind */
        set_www(b, "192.0.2.99");
        proj_free(a);
        a = full;
        uint64_t saved = g_seq;
        set_www(a, "192.0.2.99");
        g_seq = saved;
        assert_int_equal(proj_zone_serial(proj_zone_get(a, "example.com")), proj_zone_serial(proj_zone_get(b, "example.com")));
        assert_int_equal(proj_zone_serial(proj_zone_get(a, "sub.example.com")),
                         proj_zone_serial(proj_zone_get(b, "sub.example.com")));
        drain(a);
        drain(b);
        /* undo on the reference so the next point compares with the same history */
        set_www(full, "192.0.2.71");
        drain(full);
        proj_free(b);
        free(text);
        /* rebuild the reference for the next point (serials moved) */
        proj_free(full);
        assert_int_equal(proj_new(NULL, &full, NULL), BD_OK);
        for (uint64_t s = 1; s <= n; s++)
            sev_apply(full, v, s);
    }
    proj_free(full);
    for (size_t i = 0; i < n; i++)
        json_decref(v[i].obj);
}

/* A damaged snapshot is refused and leaves the projector untouched. */
static void test_snapshot_refused(void **state)
{
    static sev_t v[SNAP_MAX_EVENTS];
    size_t n = mixed_stream(v);
    proj_t *a = NULL, *b = NULL;
    assert_int_equal(proj_new(NULL, &a, NULL), BD_OK);
    assert_int_equal(proj_new(NULL, &b, NULL), BD_OK);
    for (uint64_t s = 1; s <= n; s++)
        sev_apply(a, v, s);
    sfetch_t f = {v, n, 0};
    char *text = NULL;
    size_t len = 0;
    bd_err_t err;
    /* pending changes: not a consistent point */
    uint32_t serial = proj_zone_serial(proj_zone_get(a, "example.com"));
    assert_int_equal(proj_serial_floor(a, "example.com", serial + 10), BD_OK);
    assert_int_equal(proj_snapshot(a, sev_fetch, &f, &text, &len, &err), BD_EINVAL);
    drain(a);
    /* a fetch that fails (the event is gone) fails the snapshot */
    sfetch_t none = {v, 0, 0};
    assert_int_equal(proj_snapshot(a, sev_fetch, &none, &text, &len, &err), BD_ENOTFOUND);
    assert_null(text);
    /* a fetch answering with another object is caught */
    sfetch_t shifted = {v + 1, n - 1, 0};
    assert_int_equal(proj_snapshot(a, sev_fetch, &shifted, &text, &len, &err), BD_ECORRUPT);
    assert_int_equal(proj_snapshot(a, sev_fetch, &f, &text, &len, &err), BD_OK);
    /* truncated, and one object line dropped: refused, b stays empty */
    assert_int_equal(proj_restore(b, text, len / 2, &err), BD_ECORRUPT);
    assert_int_equal(proj_seq(b), 0);
    char *nl1 = strchr(text, '\n'), *nl2 = strchr(nl1 + 1, '\n');
    size_t cut = (size_t)(nl2 - nl1);
    memmove(nl1, nl2, len - (size_t)(nl2 - text) + 1);
    assert_int_not_equal(proj_restore(b, text, len - cut, &err), BD_OK);
    size_t nz = 0;
    proj_zones(b, &nz);
    assert_int_equal(nz, 0);
    free(text);
    /* a capture does not depend on the projector afterwards: rendered after a change, it is
     * the snapshot of the moment it was taken (the applier renders on another thread) */
    proj_snap_t *cap = NULL;
    char *before = NULL, *after = NULL;
    size_t blen = 0, alen = 0;
    assert_int_equal(proj_snapshot(a, sev_fetch, &f, &before, &blen, &err), BD_OK);
    assert_int_equal(proj_snapshot_capture(a, &cap, &err), BD_OK);
    assert_int_equal(proj_snap_seq(cap), n);
    assert_int_equal(proj_serial_floor(a, "example.com", proj_zone_serial(proj_zone_get(a, "example.com")) + 50), BD_OK);
    drain(a);
    assert_int_equal(proj_snapshot_render(cap, sev_fetch, &f, &after, &alen, &err), BD_OK);
    proj_snap_free(cap);
    assert_int_equal(alen, blen);
    assert_memory_equal(after, before, blen);
    free(before);
    free(after);
    /* into a projector that already holds state: refused */
    assert_int_equal(proj_snapshot(a, sev_fetch, &f, &text, &len, &err), BD_OK);
    assert_int_equal(proj_restore(a, text, len, &err), BD_EINVAL);
    /* another catalog suffix: its catalogs would be other zones */
    proj_opts_t po = {.catalog_suffix = "cat.example.org"};
    proj_t *c = NULL;
    assert_int_equal(proj_new(&po, &c, NULL), BD_OK);
    assert_int_equal(proj_restore(c, text, len, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "catalog suffix"));
    proj_free(c);
    free(text);
    proj_free(a);
    proj_free(b);
    for (size_t i = 0; i < n; i++)
        json_decref(v[i].obj);
}

/* A DNSZone event updates only its own zone's membership and the catalogs that list it
 * (zone_membership); the result must equal the full recomputation an instance event
 * runs, and the state a projector reaches when the instances arrive after the zones. */
static json_t *mzone(int i, const char *name, const char *roles)
{
    char y[1024];
    int n = snprintf(y, sizeof(y),
                     "apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\n"
                     "metadata: {name: z%d, namespace: dns-system}\n"
                     "spec:\n  zoneName: %s\n  soaRecord: {primaryNs: ns1.%s., adminEmail: admin.%s.}\n"
                     "  bind9InstancesFrom:\n",
                     i, name, name, name);
    for (const char *r = roles; *r && n > 0 && (size_t)n < sizeof(y); r++)
        n += snprintf(y + n, sizeof(y) - (size_t)n, "  - selector: {matchLabels: {dns-role: %s}}\n",
                      *r == 'p' ? "primary" : "secondary");
    return parse(y);
}

static json_t *minstance(const char *name, const char *role, const char *extra_label)
{
    char y[512];
    snprintf(y, sizeof(y),
             "apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
             "metadata: {name: %s, namespace: dns-system, labels: {dns-role: %s%s}}\nspec: {replicas: 1}\n",
             name, role, extra_label ? extra_label : "");
    return parse(y);
}

static void test_zone_membership_incremental(void **state)
{
    enum { NZ = 12 };
    static const char *const roles[3] = {"p", "s", "ps"};
    proj_t *p = NULL, *q = NULL;
    assert_int_equal(proj_new(NULL, &p, NULL), BD_OK);
    json_t *prim = minstance("prim", "primary", NULL), *sec = minstance("sec", "secondary", NULL);
    apply(p, JNL_ADDED, prim);
    apply(p, JNL_ADDED, sec);
    json_t *zones[NZ];
    char name[64];
    for (int i = 0; i < NZ; i++) {
        snprintf(name, sizeof(name), "z%d.test", i);
        zones[i] = mzone(i, name, roles[i % 3]);
        apply(p, JNL_ADDED, zones[i]);
    }
    /* membership changes of every kind: selectors, a deletion, a rename, a duplicate */
    json_decref(zones[1]);
    zones[1] = mzone(1, "z1.test", "p");
    apply(p, JNL_MODIFIED, zones[1]);
    json_decref(zones[0]);
    zones[0] = mzone(0, "z0.test", "s");
    apply(p, JNL_MODIFIED, zones[0]);
    apply(p, JNL_DELETED, zones[2]);
    json_decref(zones[2]);
    zones[2] = NULL;
    json_decref(zones[3]);
    zones[3] = mzone(3, "z3-renamed.test", "ps");
    apply(p, JNL_MODIFIED, zones[3]);
    json_t *dup = mzone(99, "z4.test", "s"); /* loses to z4 (older): changes nothing */
    apply(p, JNL_ADDED, dup);
    drain(p);

    size_t n = 0;
    const proj_instance_t **in = proj_instances(p, &n);
    assert_int_equal(n, 2);
    assert_string_equal(in[0]->key, "dns-system/prim");
    size_t want_prim = 0, want_sec = 0;
    for (int i = 0; i < NZ; i++) {
        const char *r = i == 0 ? "s" : i == 1 ? "p" : i == 2 ? "" : i == 3 ? "ps" : roles[i % 3];
        want_prim += strchr(r, 'p') != NULL;
        want_sec += strchr(r, 's') != NULL;
    }
    assert_int_equal(in[0]->zones.n, want_prim);
    assert_int_equal(in[1]->zones.n, want_sec);
    /* the primary's catalog carries what the secondary serves too */
    res_strv_t rrs;
    assert_int_equal(proj_zone_rrs(proj_zone_get(p, in[0]->catalog), &rrs), BD_OK);
    bool renamed = false, old_name = false, deleted = false, sec_only = false;
    for (size_t i = 0; i < rrs.n; i++) {
        renamed |= strstr(rrs.v[i], " IN PTR z3-renamed.test.") != NULL;
        old_name |= strstr(rrs.v[i], " IN PTR z3.test.") != NULL;
        deleted |= strstr(rrs.v[i], " IN PTR z2.test.") != NULL;
        sec_only |= strstr(rrs.v[i], " IN PTR z0.test.") != NULL;
    }
    res_strv_deinit(&rrs);
    assert_true(renamed && sec_only);
    assert_false(old_name || deleted);

    /* the full recomputation (an instance event that changes no selection) finds nothing
     * to change in any catalog or zone */
    json_t *prim2 = minstance("prim", "primary", ", touched: \"yes\"");
    apply(p, JNL_MODIFIED, prim2);
    proj_changes_t ch;
    assert_int_equal(proj_take_changes(p, &ch), BD_OK);
    assert_int_equal(ch.nzones, 0);
    proj_changes_deinit(&ch);

    /* the same objects, zones first and instances last (membership computed in full) */
    assert_int_equal(proj_new(NULL, &q, NULL), BD_OK);
    for (int i = 0; i < NZ; i++)
        if (zones[i])
            apply(q, JNL_ADDED, zones[i]);
    apply(q, JNL_ADDED, prim2);
    apply(q, JNL_ADDED, sec);
    char dp[65], dq[65];
    assert_int_equal(proj_digest(p, dp), BD_OK);
    assert_int_equal(proj_digest(q, dq), BD_OK);
    assert_string_equal(dp, dq);

    for (int i = 0; i < NZ; i++)
        json_decref(zones[i]);
    json_decref(dup);
    json_decref(prim);
    json_decref(prim2);
    json_decref(sec);
    proj_free(p);
    proj_free(q);
}

static json_t *ryaml(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static json_t *ryaml(const char *fmt, ...)
{
    char y[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(y, sizeof(y), fmt, ap);
    va_end(ap);
    return parse(y);
}

/* A zone whose records come from the labels zone=<name>, with ttl. */
static json_t *lzone(int i, int ttl)
{
    return ryaml("apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\n"
                 "metadata: {name: z%d, namespace: dns-system}\n"
                 "spec:\n  zoneName: z%d.test\n  ttl: %d\n"
                 "  soaRecord: {primaryNs: ns1.z%d.test., adminEmail: admin.z%d.test.}\n"
                 "  recordsFrom:\n  - selector: {matchLabels: {zone: z%d.test}}\n",
                 i, i, ttl, i, i, i);
}

static json_t *lrec(int zone, int r)
{
    return ryaml("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
                 "metadata: {name: r%d-%d, namespace: dns-system, labels: {zone: z%d.test}}\n"
                 "spec: {name: h%d, ipv4Addresses: [192.0.2.%d]}\n",
                 zone, r, zone, r, r + 1);
}

/* A DNSZone or record event looks at the objects it can concern, not at every object:
 * its cost must not grow with unrelated zones and records. Selectors without a label
 * value to index by (Exists, an In of several values) still find their records, and the
 * result does not depend on whether zones or records came first. */
static void test_event_work_is_local(void **state)
{
    enum { NZ = 300, NR = 3 };
    proj_t *p = NULL, *q = NULL;
    assert_int_equal(proj_new(NULL, &p, NULL), BD_OK);
    assert_int_equal(proj_new(NULL, &q, NULL), BD_OK);
    json_t *objs = json_array();
    for (int z = 0; z < NZ; z++) {
        json_array_append_new(objs, lzone(z, 3600));
        for (int r = 0; r < NR; r++)
            json_array_append_new(objs, lrec(z, r));
    }
    /* namespace "other": a selector by Exists and one by In with two values */
    json_array_append_new(objs, ryaml("apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\n"
                                      "metadata: {name: ex, namespace: other}\n"
                                      "spec:\n  zoneName: ex.test\n"
                                      "  soaRecord: {primaryNs: ns1.ex.test., adminEmail: admin.ex.test.}\n"
                                      "  recordsFrom:\n  - selector: {matchExpressions: "
                                      "[{key: team, operator: Exists}]}\n"
                                      "  - selector: {matchExpressions: [{key: tier, operator: In, "
                                      "values: [gold, silver]}]}\n"));
    json_array_append_new(objs, ryaml("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
                                      "metadata: {name: t, namespace: other, labels: {team: x}}\n"
                                      "spec: {name: team, ipv4Addresses: [198.51.100.1]}\n"));
    json_array_append_new(objs, ryaml("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
                                      "metadata: {name: s, namespace: other, labels: {tier: silver}}\n"
                                      "spec: {name: silver, ipv4Addresses: [198.51.100.2]}\n"));
    json_array_append_new(objs, ryaml("apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
                                      "metadata: {name: b, namespace: other, labels: {tier: bronze}}\n"
                                      "spec: {name: bronze, ipv4Addresses: [198.51.100.3]}\n"));
    size_t i, n = json_array_size(objs);
    json_t *o;
    json_array_foreach(objs, i, o) apply(p, JNL_ADDED, o);
    /* q: every record before every zone, so zones find their records by rebuilding */
    for (int pass = 0; pass < 2; pass++) {
        json_array_foreach(objs, i, o) {
            bool zone = strcmp(json_string_value(json_object_get(o, "kind")), "DNSZone") == 0;
            if (zone == (pass == 1))
                apply(q, JNL_ADDED, o);
        }
    }
    assert_rr(p, "ex.test", "team.ex.test. 3600 IN A 198.51.100.1");
    assert_rr(p, "ex.test", "silver.ex.test. 3600 IN A 198.51.100.2");
    assert_false(has_rr(p, "ex.test", "bronze.ex.test. 3600 IN A 198.51.100.3"));
    assert_rr(p, "z7.test", "h2.z7.test. 3600 IN A 192.0.2.3");
    char dp[65], dq[65];
    assert_int_equal(proj_digest(p, dp), BD_OK);
    assert_int_equal(proj_digest(q, dq), BD_OK);
    assert_string_equal(dp, dq);
    drain(p);

    /* one zone changes: its claimants and its own records, out of ~1,200 objects */
    json_t *z7 = lzone(7, 600);
    uint64_t before = proj__visited(p);
    apply(p, JNL_MODIFIED, z7);
    uint64_t zone_cost = proj__visited(p) - before;
    assert_rr(p, "z7.test", "h2.z7.test. 600 IN A 192.0.2.3");
    assert_true(n > 1000);
    if (zone_cost > 2 + 2 * NR)
        fail_msg("a DNSZone event looked at %llu objects", (unsigned long long)zone_cost);

    /* one record more: the zones that can select it */
    json_t *rec = lrec(7, NR);
    before = proj__visited(p);
    apply(p, JNL_ADDED, rec);
    uint64_t rec_cost = proj__visited(p) - before;
    assert_rr(p, "z7.test", "h3.z7.test. 600 IN A 192.0.2.4");
    if (rec_cost > 2)
        fail_msg("a record event looked at %llu zones", (unsigned long long)rec_cost);

    json_decref(z7);
    json_decref(rec);
    json_decref(objs);
    proj_free(p);
    proj_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_content),
        cmocka_unit_test(test_catalogs_and_topology),
        cmocka_unit_test(test_incremental_change_and_serial),
        cmocka_unit_test(test_published_serial),
        cmocka_unit_test(test_record_published_serial),
        cmocka_unit_test(test_conflicts_and_bad_input),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_zone_membership_incremental),
        cmocka_unit_test(test_event_work_is_local),
        cmocka_unit_test(test_deletion_timestamp),
        cmocka_unit_test(test_snapshot_restore),
        cmocka_unit_test(test_snapshot_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
