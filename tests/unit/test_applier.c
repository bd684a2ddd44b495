/*
 * test_applier.c - journal -> projector -> zone store through app_catch_up.
 *
 * What a user of the hidden primary sees: after a catch-up the store serves exactly what
 * the projector holds, at its serial; the events of one catch-up make one zone version
 * (one IXFR diff, the net of the events), not one per event; and the hooks still see every
 * event with its own changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "applier.h"
#include "doc.h"

typedef struct {
    char dir[64];
    jnl_t *j;
    proj_t *p;
    bind_zonedb_t *db;
    app_t *app;
    size_t events; /* hook calls */
    size_t zone_changes;
} fx_t;

static void on_applied(void *arg, const jnl_event_t *ev, const proj_changes_t *ch)
{
    fx_t *f = arg;
    f->events++;
    f->zone_changes += ch->nzones;
}

static void append(fx_t *f, jnl_type_t type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void append(fx_t *f, jnl_type_t type, const char *fmt, ...)
{
    char yaml[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(yaml, sizeof(yaml), fmt, ap);
    va_end(ap);
    doc_list_t *l = NULL;
    assert_int_equal(doc_load_buffer("t", yaml, strlen(yaml), 0, &l, NULL), BD_OK);
    assert_null(doc_list_error(l, NULL));
    jnl_event_t ev = jnl_event_of(JNL_SRC_MANIFESTS, type, doc_value(doc_list_get(l, 0)));
    bd_err_t err;
    uint64_t seq;
    if (jnl_append(f->j, &ev, &seq, &err) != BD_OK)
        fail_msg("append: %s", err.msg);
    doc_list_free(l);
}

#define ZONE_YAML                                                                                              \
    "apiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\nmetadata: {name: example-com, namespace: ns}\n"  \
    "spec:\n  zoneName: example.com\n  soaRecord: {primaryNs: ns%d.example.com., adminEmail: admin.example.com.}\n" \
    "  bind9InstancesFrom:\n  - selector: {matchLabels: {dns-role: primary}}\n"                               \
    "  recordsFrom:\n  - selector: {matchLabels: {zone: example.com}}\n"

static void record(fx_t *f, jnl_type_t type, const char *name, const char *addr)
{
    append(f, type,
           "apiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
           "metadata: {name: %s, namespace: ns, labels: {zone: example.com}}\n"
           "spec: {name: %s, ipv4Addresses: [%s]}\n",
           name, name, addr);
}

static size_t catch_up(fx_t *f)
{
    bd_err_t err;
    size_t n = 0;
    if (jnl_flush(f->j, &err) != BD_OK || app_catch_up(f->app, &n, &err) != BD_OK)
        fail_msg("catch-up: %s", err.msg);
    return n;
}

/* The store holds exactly the projector's zone, at its serial. */
static void assert_store_matches(fx_t *f, const char *zone)
{
    const proj_zone_t *z = proj_zone_get(f->p, zone);
    assert_non_null(z);
    uint32_t serial = 0;
    assert_int_equal(bind_zonedb_serial(f->db, zone, &serial), BD_OK);
    assert_int_equal(serial, proj_zone_serial(z));
    res_strv_t rrs;
    assert_int_equal(proj_zone_rrs(z, &rrs), BD_OK);
    assert_int_equal(bind_zonedb_rr_count(f->db, zone), rrs.n + 1);
    for (size_t i = 0; i < rrs.n; i++) {
        ldns_rr *rr = NULL;
        assert_int_equal(ldns_rr_new_frm_str(&rr, rrs.v[i], 0, NULL, NULL), LDNS_STATUS_OK);
        char *owner = ldns_rdf2str(ldns_rr_owner(rr));
        ldns_rr_list *got = NULL;
        assert_int_equal(bind_zonedb_lookup(f->db, zone, owner, ldns_rr_get_type(rr), &got), BD_OK);
        bool found = false;
        for (size_t k = 0; k < ldns_rr_list_rr_count(got); k++)
            found |= ldns_rr_compare(ldns_rr_list_rr(got, k), rr) == 0;
        if (!found)
            fail_msg("the store lacks %s", rrs.v[i]);
        ldns_rr_list_deep_free(got);
        free(owner);
        ldns_rr_free(rr);
    }
    res_strv_deinit(&rrs);
}

static bool has_a(fx_t *f, const char *owner, const char *addr)
{
    ldns_rr_list *got = NULL;
    assert_int_equal(bind_zonedb_lookup(f->db, "example.com", owner, LDNS_RR_TYPE_A, &got), BD_OK);
    bool found = false;
    for (size_t k = 0; k < ldns_rr_list_rr_count(got); k++) {
        char *s = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(got, k), 0));
        found |= addr == NULL || strcmp(s, addr) == 0;
        free(s);
    }
    ldns_rr_list_deep_free(got);
    return found;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/bindy-applier-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    jnl_opts_t jo;
    jnl_opts_init(&jo);
    jo.flags = JNL_OPEN_CREATE;
    jo.sync = JNL_SYNC_NOSYNC;
    bd_err_t err;
    assert_int_equal(jnl_open(f->dir, &jo, &f->j, &err), BD_OK);
    assert_int_equal(proj_new(NULL, &f->p, &err), BD_OK);
    assert_int_equal(bind_zonedb_new(&f->db, NULL), BD_OK);
    app_hooks_t hooks = {.applied = on_applied};
    assert_int_equal(app_new(f->j, f->p, f->db, &hooks, f, &f->app, &err), BD_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    app_free(f->app);
    bind_zonedb_free(f->db);
    proj_free(f->p);
    jnl_close(f->j);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void test_one_version_per_catch_up(void **state)
{
    fx_t *f = *state;
    append(f, JNL_ADDED,
           "apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
           "metadata: {name: prim, namespace: ns, labels: {dns-role: primary}}\nspec: {replicas: 1}\n");
    append(f, JNL_ADDED, ZONE_YAML, 1);
    assert_int_equal(catch_up(f), 2);
    assert_store_matches(f, "example.com");
    uint32_t before = 0;
    assert_int_equal(bind_zonedb_serial(f->db, "example.com", &before), BD_OK);
    size_t hist = bind_zonedb_history_count(f->db, "example.com");

    /* 50 records, one changed, one deleted, one added and deleted again: 54 events */
    char name[32], addr[32];
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        snprintf(addr, sizeof(addr), "192.0.2.%d", i + 1);
        record(f, JNL_ADDED, name, addr);
    }
    record(f, JNL_MODIFIED, "r7", "198.51.100.7");
    record(f, JNL_DELETED, "r8", "192.0.2.9");
    record(f, JNL_ADDED, "tmp", "203.0.113.1");
    record(f, JNL_DELETED, "tmp", "203.0.113.1");
    f->events = 0;
    assert_int_equal(catch_up(f), 54);
    assert_int_equal(f->events, 54); /* the hook still sees every event */
    assert_true(f->zone_changes >= 54);
    assert_store_matches(f, "example.com");
    assert_true(has_a(f, "r7", "198.51.100.7"));
    assert_false(has_a(f, "r7", "192.0.2.8"));
    assert_false(has_a(f, "r8", NULL));
    assert_false(has_a(f, "tmp", NULL));
    /* one new zone version, whatever the number of events */
    assert_int_equal(bind_zonedb_history_count(f->db, "example.com"), hist + 1);

    /* IXFR from before the catch-up: the net diff, nothing removed (tmp and the old r7 and
     * r8 were never served), 49 records added, framed by 4 SOAs */
    ldns_rdf *apex = ldns_dname_new_frm_str("example.com.");
    bind_zonedb_xfr_t *x = NULL;
    assert_int_equal(bind_zonedb_ixfr(f->db, apex, before, &x), BD_OK);
    assert_int_equal(bind_zonedb_xfr_kind(x), BIND_ZONEDB_XFR_IXFR);
    assert_int_equal(bind_zonedb_xfr_count(x), 49 + 4);
    bind_zonedb_xfr_free(x);
    ldns_rdf_deep_free(apex);
}

static void test_zone_recreated_within_a_catch_up(void **state)
{
    fx_t *f = *state;
    append(f, JNL_ADDED,
           "apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
           "metadata: {name: prim, namespace: ns, labels: {dns-role: primary}}\nspec: {replicas: 1}\n");
    append(f, JNL_ADDED, ZONE_YAML, 1);
    record(f, JNL_ADDED, "www", "192.0.2.80");
    catch_up(f);
    assert_store_matches(f, "example.com");

    /* deleted, then created again with another SOA and a record changed, in one go */
    append(f, JNL_DELETED, ZONE_YAML, 1);
    record(f, JNL_MODIFIED, "www", "192.0.2.81");
    append(f, JNL_ADDED, ZONE_YAML, 2);
    catch_up(f);
    assert_store_matches(f, "example.com");
    assert_true(has_a(f, "www", "192.0.2.81"));
    ldns_rr_list *ns = NULL;
    assert_int_equal(bind_zonedb_lookup(f->db, "example.com", "example.com.", LDNS_RR_TYPE_NS, &ns), BD_OK);
    assert_int_equal(ldns_rr_list_rr_count(ns), 1);
    char *target = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ns, 0), 0));
    assert_string_equal(target, "ns2.example.com.");
    free(target);
    ldns_rr_list_deep_free(ns);

    /* and deleted for good */
    append(f, JNL_DELETED, ZONE_YAML, 2);
    catch_up(f);
    assert_null(bind_zonedb_soa(f->db, "example.com"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_version_per_catch_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zone_recreated_within_a_catch_up, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
