/*
 * test_zonedb.c - the in-memory zone store of the hidden primary: diffs, serial rules
 * (RFC 1982), IXFR history and condensation (RFC 1995), bounds, hooks, and that a change
 * costs O(change) (counted with bind_zonedb_ops, not timed).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zonedb.h"

static const char base_zone[] = "$TTL 300\n"
                                "@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n"
                                "@ IN NS ns1\n"
                                "ns1 IN A 192.0.2.53\n"
                                "www IN A 192.0.2.1\n"
                                "www IN A 192.0.2.2\n"
                                "mail IN MX 10 mx1\n"
                                "txt IN TXT \"a b\" \"c\"\n";

static ldns_rr_list *rrs(const char *text)
{
    ldns_rr_list *l = NULL;
    bd_err_t err;
    int rc = bind_zonedb_parse_rrs(text, "example.com", 300, &l, &err);
    if (rc != 0)
        fail_msg("parse: %s", err.msg);
    return l;
}

/* apply with texts (NULL = empty) */
static int apply(bind_zonedb_t *db, const char *zone, const char *rm, const char *add,
                 uint32_t serial, bd_err_t *err)
{
    ldns_rr_list *r = rm ? rrs(rm) : NULL, *a = add ? rrs(add) : NULL;
    int rc = bind_zonedb_apply(db, zone, r, a, serial, err);
    ldns_rr_list_deep_free(r);
    ldns_rr_list_deep_free(a);
    return rc;
}

static bind_zonedb_t *new_db(size_t hist, size_t bytes)
{
    bind_zonedb_t *db = NULL;
    bind_zonedb_config_t cfg = {.max_history = hist, .max_history_bytes = bytes};
    assert_int_equal(bind_zonedb_new(&db, &cfg), 0);
    return db;
}

static size_t lookup_count(bind_zonedb_t *db, const char *owner, uint16_t type)
{
    ldns_rr_list *l = NULL;
    assert_int_equal(bind_zonedb_lookup(db, "example.com", owner, type, &l), 0);
    size_t n = ldns_rr_list_rr_count(l);
    ldns_rr_list_deep_free(l);
    return n;
}

/* Text "owner type rdata" of RR i of x, for comparisons. */
static char *xfr_line(const bind_zonedb_xfr_t *x, size_t i)
{
    const ldns_rr *rr = bind_zonedb_xfr_rr(x, i);
    assert_non_null(rr);
    char *s = ldns_rr2str(rr);
    assert_non_null(s);
    for (char *p = s; *p; p++)
        if (*p == '\t' || *p == '\n')
            *p = ' ';
    return s;
}

static void assert_xfr_has(const bind_zonedb_xfr_t *x, size_t from, size_t to, const char *needle)
{
    for (size_t i = from; i < to; i++) {
        char *s = xfr_line(x, i);
        bool hit = strstr(s, needle) != NULL;
        free(s);
        if (hit)
            return;
    }
    fail_msg("'%s' not in RRs %zu..%zu", needle, from, to);
}

static uint32_t soa_serial(const ldns_rr *soa)
{
    assert_int_equal(ldns_rr_get_type(soa), LDNS_RR_TYPE_SOA);
    return ldns_rdf2native_int32(ldns_rr_rdf(soa, 2));
}

static void test_create_and_read(void **state)
{
    bind_zonedb_t *db = new_db(0, 0);
    bd_err_t err;
    char name[256];

    /* serial 7 overrides the SOA text's serial 1; names are case-insensitive */
    assert_int_equal(apply(db, "Example.COM", NULL, base_zone, 7, &err), 0);
    assert_int_equal(bind_zonedb_zone_count(db), 1);
    assert_int_equal(bind_zonedb_rr_count(db, "example.com."), 7);
    uint32_t serial = 0;
    assert_int_equal(bind_zonedb_serial(db, "EXAMPLE.com", &serial), 0);
    assert_int_equal(serial, 7);
    assert_int_equal(soa_serial(bind_zonedb_soa(db, "example.com")), 7);
    assert_int_equal(lookup_count(db, "www", LDNS_RR_TYPE_A), 2);
    assert_int_equal(lookup_count(db, "WWW.example.com.", LDNS_RR_TYPE_A), 2);
    assert_int_equal(lookup_count(db, "@", LDNS_RR_TYPE_SOA), 1);
    assert_int_equal(lookup_count(db, "nothere", LDNS_RR_TYPE_A), 0);
    assert_int_equal(bind_zonedb_serial(db, "other.com", &serial), BD_ENOTFOUND);
    assert_null(bind_zonedb_soa(db, "other.com"));
    assert_int_equal(bind_zonedb_canon_name("Foo.Example.COM", name, sizeof(name)), 0);
    assert_string_equal(name, "foo.example.com.");
    assert_int_equal(bind_zonedb_canon_name("", name, sizeof(name)), BD_EINVAL);
    assert_int_equal(bind_zonedb_canon_name("example.com", name, 5), BD_ETOOBIG);

    /* AXFR: SOA first and last, every RR once */
    ldns_rdf *apex = ldns_dname_new_frm_str("example.com.");
    bind_zonedb_xfr_t *x = NULL;
    assert_int_equal(bind_zonedb_axfr(db, apex, &x), 0);
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_AXFR);
    assert_int_equal(bind_zonedb_xfr_count(x), 8);
    assert_int_equal(soa_serial(bind_zonedb_xfr_rr(x, 0)), 7);
    assert_int_equal(soa_serial(bind_zonedb_xfr_rr(x, 7)), 7);
    assert_xfr_has(x, 1, 7, "\"a b\" \"c\"");
    assert_xfr_has(x, 1, 7, "MX 10 mx1.example.com.");
    assert_null(bind_zonedb_xfr_rr(x, 8));
    bind_zonedb_xfr_free(x);
    ldns_rdf_deep_free(apex);

    assert_int_equal(bind_zonedb_remove(db, "example.com"), 0);
    assert_int_equal(bind_zonedb_remove(db, "example.com"), BD_ENOTFOUND);
    assert_int_equal(bind_zonedb_zone_count(db), 0);
    bind_zonedb_free(db);
}

/* AXFR walks RRsets in canonical order (RFC 4034 6.1, ldns_dname_compare), then by type:
 * escaped bytes 0 and 1, upper case, labels that are prefixes, deeper names. */
static void test_canonical_order(void **state)
{
    (void)state;
    bind_zonedb_t *db = new_db(0, 0);
    bd_err_t err;
    assert_int_equal(apply(db, "example.com", NULL,
                           "@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n"
                           "@ IN NS ns1\n"
                           "ns1 IN A 192.0.2.53\n"
                           "z IN A 192.0.2.1\n"
                           "a IN A 192.0.2.1\n"
                           "a IN TXT \"x\"\n"
                           "B.a IN A 192.0.2.1\n"
                           "\\000.a IN A 192.0.2.1\n"
                           "\\001.a IN A 192.0.2.1\n"
                           "\\002.a IN A 192.0.2.1\n"
                           "a\\000 IN A 192.0.2.1\n"
                           "ab IN A 192.0.2.1\n"
                           "*.z IN A 192.0.2.1\n"
                           "yz.z IN A 192.0.2.1\n"
                           "\\200 IN A 192.0.2.1\n"
                           "y.ab IN A 192.0.2.1\n",
                           2, &err),
                     0);
    ldns_rdf *apex = ldns_dname_new_frm_str("example.com.");
    bind_zonedb_xfr_t *x = NULL;
    assert_int_equal(bind_zonedb_axfr(db, apex, &x), 0);
    size_t n = bind_zonedb_xfr_count(x);
    assert_int_equal(n, 17);
    for (size_t i = 2; i + 1 < n; i++) {
        const ldns_rr *p = bind_zonedb_xfr_rr(x, i - 1), *q = bind_zonedb_xfr_rr(x, i);
        int c = ldns_dname_compare(ldns_rr_owner(p), ldns_rr_owner(q));
        if (c > 0 || (c == 0 && ldns_rr_get_type(p) > ldns_rr_get_type(q))) {
            char *a = xfr_line(x, i - 1), *b = xfr_line(x, i);
            fail_msg("out of canonical order: '%s' before '%s'", a, b);
        }
    }
    bind_zonedb_xfr_free(x);
    ldns_rdf_deep_free(apex);
    bind_zonedb_free(db);
}

static void test_create_errors(void **state)
{
    bind_zonedb_t *db = new_db(0, 0);
    bd_err_t err;

    assert_int_equal(apply(db, "example.com", NULL, "www IN A 192.0.2.1\n", 1, &err),
                     BD_EINVAL);
    assert_non_null(strstr(err.msg, "SOA"));
    assert_int_equal(apply(db, "example.com", NULL,
                           "@ IN SOA ns1 h 1 2 3 4 5\n@ IN SOA ns2 h 1 2 3 4 5\n", 1, &err),
                     BD_EINVAL);
    assert_int_equal(apply(db, "example.com", NULL,
                           "@ IN SOA ns1 h 1 2 3 4 5\nwww.other.org. IN A 192.0.2.1\n", 1,
                           &err),
                     BD_EINVAL);
    assert_non_null(strstr(err.msg, "outside"));
    /* inside means at the apex or below it, label by label, in any case */
    static const struct {
        const char *owner;
        bool inside;
    } where[] = {{"example.com.", true},        {"EXAMPLE.Com.", true},      {"a.b.Example.com.", true},
                 {"xexample.com.", false},      {"example.com.evil.", false}, {"com.", false},
                 {"example.org.", false},       {"a\\.b.example.com.", true}, /* one label "a.b" */
                 {"\\.example.com.", false}}; /* one label ".example" under com */
    for (size_t i = 0; i < sizeof(where) / sizeof(*where); i++) {
        char text[256];
        snprintf(text, sizeof(text), "@ IN SOA ns1 h 1 2 3 4 5\n%s IN A 192.0.2.1\n", where[i].owner);
        int rc = apply(db, "example.com", NULL, text, 1, &err);
        if ((rc == BD_OK) != where[i].inside)
            fail_msg("%s: %s", where[i].owner, rc == BD_OK ? "accepted" : err.msg);
        if (rc == BD_OK)
            assert_int_equal(bind_zonedb_remove(db, "example.com"), BD_OK);
    }
    assert_int_equal(apply(db, "example.com", NULL,
                           "@ IN SOA ns1 h 1 2 3 4 5\nwww CH A 192.0.2.1\n", 1, &err),
                     BD_EINVAL);
    assert_int_equal(apply(db, "example.com", NULL,
                           "@ IN SOA ns1 h 1 2 3 4 5\nwww IN A 192.0.2.1\nwww IN A 192.0.2.1\n",
                           1, &err),
                     BD_EEXISTS);
    assert_int_equal(apply(db, "example.com", "www IN A 192.0.2.1\n", base_zone, 1, &err),
                     BD_EINVAL);
    assert_int_equal(apply(db, "bad..name", NULL, base_zone, 1, &err), BD_EINVAL);
    assert_int_equal(bind_zonedb_zone_count(db), 0);

    ldns_rr_list *l = NULL;
    assert_int_equal(bind_zonedb_parse_rrs("www IN A 999.0.0.1\n", "example.com", 300, &l, &err),
                     BD_EPARSE);
    assert_null(l);
    assert_non_null(strstr(err.msg, "line 1"));
    bind_zonedb_free(db);
}

static void test_apply_diffs(void **state)
{
    bind_zonedb_t *db = new_db(0, 0);
    bd_err_t err;

    assert_int_equal(apply(db, "example.com", NULL, base_zone, 1, &err), 0);
    /* remove one of two A RRs (TTL ignored when matching), add a new name */
    assert_int_equal(apply(db, "example.com", "www 999 IN A 192.0.2.1\n",
                           "api IN AAAA 2001:db8::1\n", 2, &err),
                     0);
    assert_int_equal(lookup_count(db, "www", LDNS_RR_TYPE_A), 1);
    assert_int_equal(lookup_count(db, "api", LDNS_RR_TYPE_AAAA), 1);
    assert_int_equal(bind_zonedb_rr_count(db, "example.com"), 7);

    /* remove the last RR of an RRset and re-add it in the same diff (TTL change) */
    assert_int_equal(apply(db, "example.com", "api IN AAAA 2001:db8::1\n",
                           "api 60 IN AAAA 2001:db8::1\n", 3, &err),
                     0);
    ldns_rr_list *l = NULL;
    assert_int_equal(bind_zonedb_lookup(db, "example.com", "api", LDNS_RR_TYPE_AAAA, &l), 0);
    assert_int_equal(ldns_rr_list_rr_count(l), 1);
    assert_int_equal(ldns_rr_ttl(ldns_rr_list_rr(l, 0)), 60);
    ldns_rr_list_deep_free(l);

    /* all or nothing: the second RR fails, the first must not stay removed */
    assert_int_equal(apply(db, "example.com", "www IN A 192.0.2.2\nwww IN A 192.0.2.77\n", NULL,
                           4, &err),
                     BD_ENOTFOUND);
    assert_non_null(strstr(err.msg, "www.example.com."));
    assert_int_equal(lookup_count(db, "www", LDNS_RR_TYPE_A), 1);
    assert_int_equal(apply(db, "example.com", "www IN A 192.0.2.2\n",
                           "new IN A 192.0.2.9\nns1 IN A 192.0.2.53\n", 4, &err),
                     BD_EEXISTS);
    assert_int_equal(lookup_count(db, "www", LDNS_RR_TYPE_A), 1);
    assert_int_equal(lookup_count(db, "new", LDNS_RR_TYPE_A), 0);
    assert_int_equal(apply(db, "example.com", NULL, "x IN A 192.0.2.9\nx IN A 192.0.2.9\n", 4,
                           &err),
                     BD_EEXISTS);
    assert_int_equal(lookup_count(db, "x", LDNS_RR_TYPE_A), 0);
    assert_int_equal(apply(db, "example.com", NULL, "x.other.net. IN A 192.0.2.9\n", 4, &err),
                     BD_EINVAL);
    uint32_t serial;
    assert_int_equal(bind_zonedb_serial(db, "example.com", &serial), 0);
    assert_int_equal(serial, 3);
    assert_int_equal(bind_zonedb_history_count(db, "example.com"), 2);

    /* an SOA in added replaces the SOA fields; the serial is still ours */
    assert_int_equal(apply(db, "example.com", "@ IN SOA ns1 hostmaster 3 3600 600 86400 300\n",
                           "@ 600 IN SOA ns2 hostmaster 12345 7200 600 86400 60\n", 4, &err),
                     0);
    const ldns_rr *soa = bind_zonedb_soa(db, "example.com");
    assert_int_equal(soa_serial(soa), 4);
    assert_int_equal(ldns_rr_ttl(soa), 600);
    char *mname = ldns_rdf2str(ldns_rr_rdf(soa, 0));
    assert_string_equal(mname, "ns2.example.com.");
    free(mname);

    /* an RRset with many RRs: remove from the middle keeps the rest */
    char add[4096] = "", rm[64];
    for (int i = 0; i < 50; i++) {
        size_t off = strlen(add);
        snprintf(add + off, sizeof(add) - off, "many IN A 10.0.0.%d\n", i);
    }
    assert_int_equal(apply(db, "example.com", NULL, add, 5, &err), 0);
    snprintf(rm, sizeof(rm), "many IN A 10.0.0.25\n");
    assert_int_equal(apply(db, "example.com", rm, NULL, 6, &err), 0);
    assert_int_equal(lookup_count(db, "many", LDNS_RR_TYPE_A), 49);
    bind_zonedb_free(db);
}

static void test_serials(void **state)
{
    /* RFC 1982 */
    assert_true(bind_zonedb_serial_gt(2, 1));
    assert_false(bind_zonedb_serial_gt(1, 1));
    assert_false(bind_zonedb_serial_gt(1, 2));
    assert_true(bind_zonedb_serial_gt(0, 0xffffffffu));
    assert_true(bind_zonedb_serial_gt(5, 0xfffffff0u));
    assert_false(bind_zonedb_serial_gt(0xfffffff0u, 5));
    assert_true(bind_zonedb_serial_gt(0x7fffffffu, 0));
    assert_false(bind_zonedb_serial_gt(0x80000000u, 0)); /* distance 2^31: undefined */
    assert_false(bind_zonedb_serial_gt(0, 0x80000000u));

    bind_zonedb_t *db = new_db(0, 0);
    bd_err_t err;
    assert_int_equal(apply(db, "example.com", NULL, base_zone, 0xfffffffeu, &err), 0);
    assert_int_equal(apply(db, "example.com", NULL, "a IN A 192.0.2.1\n", 0xfffffffeu, &err),
                     BD_ECONFLICT);
    assert_non_null(strstr(err.msg, "RFC 1982"));
    assert_int_equal(apply(db, "example.com", NULL, "a IN A 192.0.2.1\n", 5, &err), 0);
    assert_int_equal(apply(db, "example.com", NULL, "b IN A 192.0.2.1\n", 0xfffffff0u, &err),
                     BD_ECONFLICT);
    assert_int_equal(apply(db, "example.com", NULL, "b IN A 192.0.2.1\n", 5 + 0x80000000u, &err),
                     BD_ECONFLICT);
    assert_int_equal(apply(db, "example.com", NULL, "b IN A 192.0.2.1\n", 6, &err), 0);

    /* IXFR across the wrap */
    ldns_rdf *apex = ldns_dname_new_frm_str("example.com.");
    bind_zonedb_xfr_t *x = NULL;
    assert_int_equal(bind_zonedb_ixfr(db, apex, 0xfffffffeu, &x), 0);
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_IXFR);
    assert_int_equal(bind_zonedb_xfr_count(x), 6); /* SOA SOA(old) SOA a b SOA */
    assert_int_equal(soa_serial(bind_zonedb_xfr_rr(x, 1)), 0xfffffffeu);
    bind_zonedb_xfr_free(x);
    ldns_rdf_deep_free(apex);
    bind_zonedb_free(db);
}

static void test_ixfr_condensed(void **state)
{
    bind_zonedb_t *db = new_db(0, 0);
    bd_err_t err;
    ldns_rdf *apex = ldns_dname_new_frm_str("example.com.");
    bind_zonedb_xfr_t *x = NULL;

    assert_int_equal(apply(db, "example.com", NULL, base_zone, 1, &err), 0);
    assert_int_equal(apply(db, "example.com", NULL, "tmp IN A 192.0.2.100\n", 2, &err), 0);
    assert_int_equal(apply(db, "example.com", "tmp IN A 192.0.2.100\n", "new IN A 192.0.2.101\n",
                           3, &err),
                     0);
    assert_int_equal(apply(db, "example.com", "www IN A 192.0.2.1\n", "www 60 IN A 192.0.2.1\n",
                           4, &err),
                     0);

    /* from 1: tmp was added then removed (gone); www's TTL change is -300 +60; new added */
    assert_int_equal(bind_zonedb_ixfr(db, apex, 1, &x), 0);
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_IXFR);
    assert_int_equal(bind_zonedb_xfr_serial(x), 4);
    size_t n = bind_zonedb_xfr_count(x);
    assert_int_equal(n, 7); /* SOA4 SOA1 -www300 SOA4 +new +www60 SOA4 */
    assert_int_equal(soa_serial(bind_zonedb_xfr_rr(x, 0)), 4);
    assert_int_equal(soa_serial(bind_zonedb_xfr_rr(x, 1)), 1);
    assert_xfr_has(x, 2, 3, "www.example.com. 300 IN A 192.0.2.1");
    assert_int_equal(soa_serial(bind_zonedb_xfr_rr(x, 3)), 4);
    assert_xfr_has(x, 4, 6, "new.example.com. 300 IN A 192.0.2.101");
    assert_xfr_has(x, 4, 6, "www.example.com. 60 IN A 192.0.2.1");
    assert_int_equal(soa_serial(bind_zonedb_xfr_rr(x, 6)), 4);
    for (size_t i = 0; i < n; i++) {
        char *s = xfr_line(x, i);
        assert_null(strstr(s, "tmp."));
        free(s);
    }
    bind_zonedb_xfr_free(x);

    /* from 3: just the last diff */
    assert_int_equal(bind_zonedb_ixfr(db, apex, 3, &x), 0);
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_IXFR);
    assert_int_equal(bind_zonedb_xfr_count(x), 6);
    bind_zonedb_xfr_free(x);

    /* current or newer: just the SOA */
    assert_int_equal(bind_zonedb_ixfr(db, apex, 4, &x), 0);
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_UPTODATE);
    assert_int_equal(bind_zonedb_xfr_count(x), 1);
    bind_zonedb_xfr_free(x);
    assert_int_equal(bind_zonedb_ixfr(db, apex, 9, &x), 0);
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_UPTODATE);
    bind_zonedb_xfr_free(x);

    /* unknown serial: whole zone */
    assert_int_equal(bind_zonedb_ixfr(db, apex, 0xfffffff0u, &x), 0);
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_AXFR);
    assert_int_equal(bind_zonedb_xfr_count(x), bind_zonedb_rr_count(db, "example.com") + 1);
    bind_zonedb_xfr_free(x);

    /* unknown zone */
    ldns_rdf *other = ldns_dname_new_frm_str("other.org.");
    assert_int_equal(bind_zonedb_ixfr(db, other, 1, &x), BD_ENOTFOUND);
    assert_int_equal(bind_zonedb_axfr(db, other, &x), BD_ENOTFOUND);
    assert_null(x);
    ldns_rdf_deep_free(other);
    ldns_rdf_deep_free(apex);
    bind_zonedb_free(db);
}

static void test_history_bounds(void **state)
{
    bd_err_t err;
    ldns_rdf *apex = ldns_dname_new_frm_str("example.com.");
    bind_zonedb_xfr_t *x = NULL;
    char add[64];

    /* by count: 3 diffs kept */
    bind_zonedb_t *db = new_db(3, 0);
    assert_int_equal(apply(db, "example.com", NULL, base_zone, 1, &err), 0);
    for (uint32_t s = 2; s <= 6; s++) {
        snprintf(add, sizeof(add), "h%u IN A 192.0.2.%u\n", s, s);
        assert_int_equal(apply(db, "example.com", NULL, add, s, &err), 0);
    }
    assert_int_equal(bind_zonedb_history_count(db, "example.com"), 3);
    assert_int_equal(bind_zonedb_ixfr(db, apex, 2, &x), 0); /* 2->3 was dropped */
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_AXFR);
    bind_zonedb_xfr_free(x);
    assert_int_equal(bind_zonedb_ixfr(db, apex, 3, &x), 0); /* 3->4, 4->5, 5->6 */
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_IXFR);
    assert_int_equal(bind_zonedb_xfr_count(x), 4 + 3);
    bind_zonedb_xfr_free(x);
    bind_zonedb_free(db);

    /* by bytes: a one-RR diff here is about 2 SOAs + 1 A, ~150 bytes */
    db = new_db(100, 400);
    assert_int_equal(apply(db, "example.com", NULL, base_zone, 1, &err), 0);
    for (uint32_t s = 2; s <= 6; s++) {
        snprintf(add, sizeof(add), "h%u IN A 192.0.2.%u\n", s, s);
        assert_int_equal(apply(db, "example.com", NULL, add, s, &err), 0);
    }
    size_t kept = bind_zonedb_history_count(db, "example.com");
    assert_true(kept >= 1 && kept < 5);
    /* a diff larger than the whole budget clears the history */
    char big[8192] = "";
    for (int i = 0; i < 40; i++) {
        size_t off = strlen(big);
        snprintf(big + off, sizeof(big) - off, "big IN TXT \"%d-padding-padding-padding\"\n", i);
    }
    assert_int_equal(apply(db, "example.com", NULL, big, 7, &err), 0);
    assert_int_equal(bind_zonedb_history_count(db, "example.com"), 0);
    assert_int_equal(bind_zonedb_ixfr(db, apex, 6, &x), 0);
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_AXFR);
    bind_zonedb_xfr_free(x);
    /* and the next small one is kept again */
    assert_int_equal(apply(db, "example.com", NULL, "after IN A 192.0.2.200\n", 8, &err), 0);
    assert_int_equal(bind_zonedb_history_count(db, "example.com"), 1);
    bind_zonedb_free(db);
    ldns_rdf_deep_free(apex);
}

typedef struct hook_log {
    int created, updated, removed;
    uint32_t last_serial;
    char last_zone[256];
    bind_zonedb_t *db;
    bool remove_self;
} hook_log_t;

static void hook(void *arg, const char *zone, uint32_t serial, bind_zonedb_event_t ev)
{
    hook_log_t *h = arg;
    if (ev == BIND_ZONEDB_CREATED)
        h->created++;
    else if (ev == BIND_ZONEDB_UPDATED)
        h->updated++;
    else
        h->removed++;
    h->last_serial = serial;
    snprintf(h->last_zone, sizeof(h->last_zone), "%s", zone);
    if (h->remove_self)
        assert_int_equal(bind_zonedb_remove_hook(h->db, hook, h), 0);
}

static void test_hooks(void **state)
{
    bind_zonedb_t *db = new_db(0, 0);
    bd_err_t err;
    hook_log_t a = {.db = db}, b = {.db = db, .remove_self = true};

    assert_int_equal(bind_zonedb_add_hook(db, hook, &a), 0);
    assert_int_equal(bind_zonedb_add_hook(db, hook, &a), BD_EEXISTS);
    assert_int_equal(bind_zonedb_add_hook(db, hook, &b), 0);
    assert_int_equal(apply(db, "EXAMPLE.com", NULL, base_zone, 3, &err), 0);
    assert_int_equal(a.created, 1);
    assert_int_equal(b.created, 1); /* then b removed itself */
    assert_string_equal(a.last_zone, "example.com.");
    assert_int_equal(apply(db, "example.com", NULL, "z IN A 192.0.2.1\n", 4, &err), 0);
    assert_int_equal(apply(db, "example.com", NULL, "z IN A 192.0.2.1\n", 5, &err), BD_EEXISTS);
    assert_int_equal(a.updated, 1); /* no hook for a failed apply */
    assert_int_equal(a.last_serial, 4);
    assert_int_equal(b.updated, 0);
    assert_int_equal(bind_zonedb_remove(db, "example.com"), 0);
    assert_int_equal(a.removed, 1);
    assert_int_equal(bind_zonedb_remove_hook(db, hook, &a), 0);
    assert_int_equal(bind_zonedb_remove_hook(db, hook, &a), BD_ENOTFOUND);
    bind_zonedb_free(db);
}

/* A transfer keeps its RRs when the zone changes or goes away under it. */
static void test_xfr_snapshot(void **state)
{
    bind_zonedb_t *db = new_db(0, 0);
    bd_err_t err;
    ldns_rdf *apex = ldns_dname_new_frm_str("example.com.");
    bind_zonedb_xfr_t *x = NULL;

    assert_int_equal(apply(db, "example.com", NULL, base_zone, 1, &err), 0);
    assert_int_equal(bind_zonedb_axfr(db, apex, &x), 0);
    assert_int_equal(apply(db, "example.com", "www IN A 192.0.2.1\n", NULL, 2, &err), 0);
    assert_int_equal(bind_zonedb_remove(db, "example.com"), 0);
    bind_zonedb_free(db);
    assert_int_equal(bind_zonedb_xfr_count(x), 8);
    assert_int_equal(soa_serial(bind_zonedb_xfr_rr(x, 0)), 1);
    assert_xfr_has(x, 1, 7, "www.example.com. 300 IN A 192.0.2.1");
    bind_zonedb_xfr_free(x);
    ldns_rdf_deep_free(apex);
}

static int count_zone(void *arg, const char *zone, uint32_t serial)
{
    (*(int *)arg)++;
    return 0;
}

/* Loading 10,000 RRs, then changing one: the change's work must not depend on n. */
static size_t change_cost(size_t nrecords)
{
    bind_zonedb_t *db = new_db(0, 0);
    bd_err_t err;
    ldns_rr_list *l = rrs("@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n");
    for (size_t i = 0; i < nrecords; i++) {
        char line[128];
        ldns_rr *rr = NULL;
        snprintf(line, sizeof(line), "host%zu.example.com. 300 IN A 10.%zu.%zu.%zu", i,
                 (i >> 16) & 255, (i >> 8) & 255, i & 255);
        assert_int_equal(ldns_rr_new_frm_str(&rr, line, 300, NULL, NULL), LDNS_STATUS_OK);
        assert_true(ldns_rr_list_push_rr(l, rr));
    }
    assert_int_equal(bind_zonedb_apply(db, "example.com", NULL, l, 1, &err), 0);
    ldns_rr_list_deep_free(l);
    assert_int_equal(bind_zonedb_rr_count(db, "example.com"), nrecords + 1);

    uint64_t before = bind_zonedb_ops(db);
    assert_int_equal(apply(db, "example.com", "host7 IN A 10.0.0.7\n", "host7 IN A 10.99.0.7\n",
                           2, &err),
                     0);
    uint64_t cost = bind_zonedb_ops(db) - before;
    int zones = 0;
    assert_int_equal(bind_zonedb_foreach(db, count_zone, &zones), 0);
    assert_int_equal(zones, 1);
    bind_zonedb_free(db);
    return (size_t)cost;
}

/* Lines as the projector writes them are parsed field by field, the rest by
 * ldns_rr_new_frm_str: every line gives the same RR (owner, TTL, class, type, rdata; wire
 * compared) as ldns_rr_new_frm_str alone, and an owner left out takes the last one. */
static void test_parse_matches_ldns(void **state)
{
    static const char *const lines[] = {
        "r1.example.com. 3600 IN A 10.0.0.1",
        "R1.Example.COM. 0 in a 10.0.0.255",
        "*.example.com. 300 IN AAAA 2001:db8::1",
        "x.example.com.\t60\tIN\tCNAME\twww.example.com.",
        "example.com. 3600 IN NS ns1.example.com.",
        "example.com. 3600 IN MX 10 mail.example.com.",
        "_sip._tcp.example.com. 3600 IN SRV 10 60 5060 sip.example.com.",
        "1.2.0.192.in-addr.arpa. 3600 IN PTR host.example.com.",
        "example.com. 3600 IN CAA 0 issue \"letsencrypt.org\"",
        "t.example.com. 3600 IN TXT \"a b\" \"c\"",
        "example.com. 3600 IN SOA ns1.example.com. admin.example.com. 7 3600 600 604800 86400",
        "rel 3600 IN A 10.0.0.2",                     /* relative owner: the origin */
        "r2.example.com. IN A 10.0.0.3",              /* no TTL: the default */
        "r3.example.com. 1h IN A 10.0.0.4",           /* TTL with a unit */
        "c.example.com. 3600 IN CNAME www",           /* relative target */
        "r4.example.com. 3600 IN A 10.0.0.5 ; note",  /* a comment */
        "  3600 IN A 10.0.0.6",                       /* the previous owner */
        "r5.example.com. 3600 IN MX 10",              /* a field missing: an error either way */
    };
    ldns_rdf *origin = ldns_dname_new_frm_str("example.com.");
    for (size_t i = 0; i < sizeof(lines) / sizeof(*lines); i++) {
        ldns_rr *want = NULL;
        ldns_rdf *prev = i > 0 ? ldns_dname_new_frm_str("r4.example.com.") : NULL;
        ldns_status st = ldns_rr_new_frm_str(&want, lines[i], 300, origin, &prev);
        ldns_rdf_deep_free(prev);
        /* the line after the one with the comment: parsed together, as in a zone text */
        char text[512];
        snprintf(text, sizeof(text), "%s%s\n", i == 16 ? "r4.example.com. 3600 IN A 10.0.0.5\n" : "",
                 lines[i]);
        ldns_rr_list *got = NULL;
        bd_err_t err;
        int rc = bind_zonedb_parse_rrs(text, "example.com", 300, &got, &err);
        if (st != LDNS_STATUS_OK) {
            if (rc == BD_OK)
                fail_msg("%s: parsed, but ldns refuses it", lines[i]);
            ldns_rr_free(want);
            continue;
        }
        if (rc != BD_OK)
            fail_msg("%s: %s", lines[i], err.msg);
        ldns_rr *g = ldns_rr_list_rr(got, ldns_rr_list_rr_count(got) - 1);
        uint8_t *w1 = NULL, *w2 = NULL;
        size_t l1 = 0, l2 = 0;
        assert_int_equal(ldns_rr2wire(&w1, want, LDNS_SECTION_ANSWER, &l1), LDNS_STATUS_OK);
        assert_int_equal(ldns_rr2wire(&w2, g, LDNS_SECTION_ANSWER, &l2), LDNS_STATUS_OK);
        if (l1 != l2 || memcmp(w1, w2, l1) != 0)
            fail_msg("%s: not the RR ldns parses", lines[i]);
        free(w1);
        free(w2);
        ldns_rr_free(want);
        ldns_rr_list_deep_free(got);
    }
    ldns_rdf_deep_free(origin);
}

static void test_change_cost(void **state)
{
    size_t small = change_cost(100);
    size_t large = change_cost(10000);
    print_message("one change: %zu ops with 100 RRs, %zu ops with 10000 RRs\n", small, large);
    /* a tree walk is ~2*log2(n) comparisons per lookup, a few lookups per RR changed */
    assert_true(large < 200);
    assert_true(large < small * 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_and_read), cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_apply_diffs),     cmocka_unit_test(test_serials),
        cmocka_unit_test(test_ixfr_condensed),  cmocka_unit_test(test_history_bounds),
        cmocka_unit_test(test_hooks),           cmocka_unit_test(test_xfr_snapshot),
        cmocka_unit_test(test_change_cost),     cmocka_unit_test(test_canonical_order),
        cmocka_unit_test(test_parse_matches_ldns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
