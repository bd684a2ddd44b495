/*
 * Projector benchmark: the incremental cost of one event as the state grows.
 * One DNSZone (example.com, recordsFrom zone=example.com), one Bind9Instance it selects,
 * then N ARecords r0..r{N-1} applied as ADDED events (changes taken every 1000 events);
 * then MODS single-record MODIFIED events (one address changed), each followed by
 * proj_take_changes, timed one by one. Done at 100,000 and at 1,000 records: the ratio
 * of the per-event costs shows whether an event's cost grows with the state size.
 * Start-up: the same zone, instance and N records journaled (a temporary journal, nosync),
 * then a fresh projector, zone store and applier catch up from seq 1 (the replay), a
 * checkpoint is written (the capture on the caller's thread, reported as _loop, then the
 * rendering and the journal write on the applier's thread; _write is both), and
 * another fresh set starts from that checkpoint (restore, zone store loaded). Both
 * start-ups end with the same zone in the store (checked).
 * DNSZone events: beside 10,000 records of example.com, 1,000 (then 10) zones of one record
 * each are created at once (timed), then single-zone TTL changes are timed one by one: the
 * ratio of the per-event costs shows whether a zone's cost grows with the other zones.
 * Bounded: fixed counts; the only I/O is the start-up's journal. CLOCK_MONOTONIC.
 */
#include <ftw.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "applier.h"
#include "clock.h"
#include "projector.h"

#define MODS 1000

static uint64_t g_seq;

static void apply(proj_t *p, jnl_type_t type, json_t *obj)
{
    jnl_event_t ev = jnl_event_of(JNL_SRC_MANIFESTS, type, obj);
    ev.seq = ++g_seq;
    bd_err_t err;
    if (proj_apply(p, &ev, &err) != BD_OK) {
        fprintf(stderr, "bench_projector: apply: %s\n", err.msg);
        exit(1);
    }
}

static void take(proj_t *p)
{
    proj_changes_t c;
    if (proj_take_changes(p, &c) != BD_OK) {
        fprintf(stderr, "bench_projector: take_changes failed\n");
        exit(1);
    }
    proj_changes_deinit(&c);
}

static json_t *arecord(size_t i, unsigned v)
{
    char name[32], rname[32], addr[32];
    snprintf(name, sizeof(name), "r%zu", i);
    snprintf(rname, sizeof(rname), "r%zu", i);
    snprintf(addr, sizeof(addr), "10.%u.%u.%u", (unsigned)((i >> 16) & 255), (unsigned)((i >> 8) & 255),
             (unsigned)((i + v) & 255));
    return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:[s]}}", "apiVersion",
                     "bindy.firestoned.io/v1beta1", "kind", "ARecord", "metadata", "name", name, "namespace",
                     "dns-system", "labels", "zone", "example.com", "spec", "name", rname, "ipv4Addresses", addr);
}

/* The instance and the zone every run starts with (new references). */
static void base_objects(json_t **inst_out, json_t **zone_out)
{
    json_t *inst = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:i}}", "apiVersion",
                             "bindy.firestoned.io/v1beta1", "kind", "Bind9Instance", "metadata", "name",
                             "primary-dns", "namespace", "dns-system", "labels", "dns-role", "primary", "spec",
                             "replicas", 1);
    json_t *zone = json_pack(
        "{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:i, s:{s:s, s:s, s:i, s:i, s:i, s:i, s:i}, s:[{s:s, s:s}],"
        " s:[{s:{s:{s:s}}}], s:[{s:{s:{s:s}}}]}}",
        "apiVersion", "bindy.firestoned.io/v1beta1", "kind", "DNSZone", "metadata", "name", "example-com",
        "namespace", "dns-system", "spec", "zoneName", "example.com", "ttl", 3600, "soaRecord", "primaryNs",
        "ns1.example.com.", "adminEmail", "admin.example.com.", "serial", 1, "refresh", 3600, "retry", 600,
        "expire", 604800, "negativeTtl", 86400, "nameServers", "hostname", "ns1.example.com.", "ipv4Address",
        "192.0.2.1", "bind9InstancesFrom", "selector", "matchLabels", "dns-role", "primary", "recordsFrom",
        "selector", "matchLabels", "zone", "example.com");
    if (inst == NULL || zone == NULL) {
        fprintf(stderr, "bench_projector: json_pack failed\n");
        exit(1);
    }
    *inst_out = inst;
    *zone_out = zone;
}

static proj_t *base(void)
{
    proj_t *p = NULL;
    json_t *inst, *zone;
    if (proj_new(NULL, &p, NULL) != BD_OK)
        exit(1);
    base_objects(&inst, &zone);
    apply(p, JNL_ADDED, inst);
    apply(p, JNL_ADDED, zone);
    json_decref(inst);
    json_decref(zone);
    take(p);
    return p;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, int p)
{
    size_t i = (n * (size_t)p + 99) / 100;
    if (i < 1)
        i = 1;
    return sorted[i - 1];
}

/* Load n records (timed, reported if report), then MODS modifications; fills lat (us). */
static void run(size_t n, bool report, double *lat)
{
    proj_t *p = base();
    double t0 = bd_mono_s();
    for (size_t i = 0; i < n; i++) {
        json_t *r = arecord(i, 0);
        apply(p, JNL_ADDED, r);
        json_decref(r);
        if ((i + 1) % 1000 == 0)
            take(p);
    }
    take(p);
    double load = bd_mono_s() - t0;
    /* sanity: the zone holds every record */
    const proj_zone_t *z = proj_zone_get(p, "example.com");
    res_strv_t rrs;
    if (z == NULL || proj_zone_rrs(z, &rrs) != BD_OK) {
        fprintf(stderr, "bench_projector: zone missing\n");
        exit(1);
    }
    if (rrs.n < n) {
        fprintf(stderr, "bench_projector: zone has %zu RRs, want >= %zu\n", rrs.n, n);
        exit(1);
    }
    res_strv_deinit(&rrs);
    if (report) {
        printf("BENCH projector_load_%zuk_records %.3f s\n", n / 1000, load);
        printf("BENCH projector_events_per_s %.0f events/s\n", (double)n / load);
    }
    /* pre-build the modified objects so the timing is the projector's alone */
    json_t **mods = malloc(sizeof(*mods) * MODS);
    for (size_t k = 0; k < MODS; k++)
        mods[k] = arecord((k * 7919u) % n, 1 + (unsigned)k);
    for (size_t k = 0; k < MODS; k++) {
        double t = bd_mono_s();
        apply(p, JNL_MODIFIED, mods[k]);
        take(p);
        lat[k] = (bd_mono_s() - t) * 1e6;
    }
    for (size_t k = 0; k < MODS; k++)
        json_decref(mods[k]);
    free(mods);
    qsort(lat, MODS, sizeof(*lat), cmp_d);
    proj_free(p);
}

/* ---- DNSZone events: the cost of one zone as the number of zones grows ---------------- */

#define ZMODS 300
#define ZBG_RECORDS 10000 /* example.com's records, beside the zones: unrelated state */

/* Zone z<i>.test with recordsFrom zone=z<i>.test, served by the base instance. */
static json_t *small_zone(size_t i, int ttl)
{
    char name[64], zn[64], ns1[80], admin[80];
    snprintf(name, sizeof(name), "z%zu", i);
    snprintf(zn, sizeof(zn), "z%zu.test", i);
    snprintf(ns1, sizeof(ns1), "ns1.%s.", zn);
    snprintf(admin, sizeof(admin), "admin.%s.", zn);
    json_t *z = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:i, s:{s:s, s:s}, s:[{s:{s:{s:s}}}],"
                          " s:[{s:{s:{s:s}}}]}}",
                          "apiVersion", "bindy.firestoned.io/v1beta1", "kind", "DNSZone", "metadata", "name", name,
                          "namespace", "dns-system", "spec", "zoneName", zn, "ttl", ttl, "soaRecord", "primaryNs", ns1,
                          "adminEmail", admin, "bind9InstancesFrom", "selector", "matchLabels", "dns-role",
                          "primary", "recordsFrom", "selector", "matchLabels", "zone", zn);
    if (z == NULL)
        exit(1);
    return z;
}

static json_t *small_zone_record(size_t i)
{
    char name[64], zn[64], addr[32];
    snprintf(name, sizeof(name), "www-z%zu", i);
    snprintf(zn, sizeof(zn), "z%zu.test", i);
    snprintf(addr, sizeof(addr), "198.51.%zu.%zu", (i >> 8) & 255, i & 255);
    json_t *r = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:[s]}}", "apiVersion",
                          "bindy.firestoned.io/v1beta1", "kind", "ARecord", "metadata", "name", name, "namespace",
                          "dns-system", "labels", "zone", zn, "spec", "name", "www", "ipv4Addresses", addr);
    if (r == NULL)
        exit(1);
    return r;
}

/* nz zones of one record each beside ZBG_RECORDS records of example.com, created at once
 * (one record and its zone per pair of events, changes taken at the end: returns the
 * seconds); then ZMODS DNSZone MODIFIED events (a TTL change), each followed by
 * proj_take_changes, timed one by one into lat (us, sorted). */
static double zone_run(size_t nz, double *lat)
{
    proj_t *p = base();
    for (size_t i = 0; i < ZBG_RECORDS; i++) {
        json_t *r = arecord(i, 0);
        apply(p, JNL_ADDED, r);
        json_decref(r);
    }
    take(p);
    double t0 = bd_mono_s();
    for (size_t i = 0; i < nz; i++) {
        json_t *r = small_zone_record(i), *z = small_zone(i, 3600);
        apply(p, JNL_ADDED, r);
        apply(p, JNL_ADDED, z);
        json_decref(r);
        json_decref(z);
    }
    take(p);
    double create = bd_mono_s() - t0;
    if (proj_zone_get(p, "z0.test") == NULL) {
        fprintf(stderr, "bench_projector: z0.test missing\n");
        exit(1);
    }
    json_t **mods = malloc(sizeof(*mods) * ZMODS);
    for (size_t k = 0; mods != NULL && k < ZMODS; k++)
        mods[k] = small_zone((k * 7919u) % nz, 600 + (int)k);
    for (size_t k = 0; mods != NULL && k < ZMODS; k++) {
        double t = bd_mono_s();
        apply(p, JNL_MODIFIED, mods[k]);
        take(p);
        lat[k] = (bd_mono_s() - t) * 1e6;
    }
    for (size_t k = 0; mods != NULL && k < ZMODS; k++)
        json_decref(mods[k]);
    free(mods);
    qsort(lat, ZMODS, sizeof(*lat), cmp_d);
    proj_free(p);
    return create;
}

/* ---- start-up: replay vs checkpoint ------------------------------------------------- */

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

static void die(const char *what, const bd_err_t *err)
{
    fprintf(stderr, "bench_projector: %s: %s\n", what, err ? err->msg : "failed");
    exit(1);
}

static void journal_obj(jnl_t *j, json_t *obj)
{
    jnl_event_t ev = jnl_event_of(JNL_SRC_MANIFESTS, JNL_ADDED, obj);
    bd_err_t err;
    int rc;
    /* a full queue asks to wait for the writer: flush, then retry (bounded) */
    for (int tries = 0; (rc = jnl_append(j, &ev, NULL, &err)) == BD_EBUSY && tries < 100; tries++)
        if (jnl_flush(j, &err) != BD_OK)
            die("flush", &err);
    if (rc != BD_OK)
        die("append", &err);
}

typedef struct {
    proj_t *p;
    bind_zonedb_t *db;
    app_t *a;
} node_t;

static void node_new(node_t *n, jnl_t *j)
{
    bd_err_t err;
    if (proj_new(NULL, &n->p, &err) != BD_OK || bind_zonedb_new(&n->db, NULL) != BD_OK ||
        app_new(j, n->p, n->db, NULL, NULL, &n->a, &err) != BD_OK)
        die("node", &err);
}

static void node_free(node_t *n)
{
    app_free(n->a);
    proj_free(n->p);
    bind_zonedb_free(n->db);
}

/* Start-up from a journal of nrec * per_rec record events (each record ADDED, then
 * modified per_rec - 1 times) plus the zone and instance: the replay from seq 1, then the
 * checkpoint written at the end and a start from it. Each start-up is the best of two
 * (the machine is shared). Prints the figures under name. */
static void startup(const char *name, size_t nrec, size_t per_rec, bool report_ckpt)
{
    char dir[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/bench_projector.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("bench_projector: mkdtemp");
        exit(1);
    }
    setenv("BINDY_PROJECTOR_CHECKPOINT_EVENTS", "0", 1); /* only the one written here */
    jnl_opts_t o;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    o.sync = JNL_SYNC_NOSYNC;
    o.map_limit = 4096ull << 20;
    jnl_t *j = NULL;
    bd_err_t err;
    if (jnl_open(dir, &o, &j, &err) != BD_OK)
        die("journal", &err);
    json_t *inst, *zone;
    base_objects(&inst, &zone);
    journal_obj(j, inst);
    journal_obj(j, zone);
    json_decref(inst);
    json_decref(zone);
    for (size_t v = 0; v < per_rec; v++)
        for (size_t i = 0; i < nrec; i++) {
            json_t *r = arecord(i, (unsigned)v);
            journal_obj(j, r);
            json_decref(r);
        }
    if (jnl_flush(j, &err) != BD_OK)
        die("flush", &err);
    uint64_t last = jnl_committed_seq(j);

    double replay = 1e9, restored = 1e9, loop = 0, write = 0;
    node_t a = {0}, b = {0};
    for (int round = 0; round < 2; round++) {
        size_t n = 0;
        if (round > 0)
            node_free(&a);
        node_new(&a, j);
        double t0 = bd_mono_s();
        if (app_catch_up(a.a, &n, &err) != BD_OK || n != last)
            die("replay", &err);
        if (bd_mono_s() - t0 < replay)
            replay = bd_mono_s() - t0;
    }
    double t0 = bd_mono_s();
    if (app_checkpoint(a.a, false, &err) != BD_OK)
        die("checkpoint", &err);
    loop = bd_mono_s() - t0; /* the capture: what the caller's loop waits for */
    if (app_checkpoint(a.a, true, &err) != BD_OK) /* waits for the write */
        die("checkpoint", &err);
    write = bd_mono_s() - t0;
    uint64_t sseq = 0;
    size_t bytes = 0;
    if (jnl_snapshot_stat(j, JNL_SNAPSHOT_PROJECTOR, &sseq, &bytes, &err) != BD_OK || sseq != last)
        die("snapshot", &err);
    for (int round = 0; round < 2; round++) {
        size_t n = 0;
        if (round > 0)
            node_free(&b);
        node_new(&b, j);
        t0 = bd_mono_s();
        if (app_catch_up(b.a, &n, &err) != BD_OK || n != 0)
            die("restore", &err);
        if (bd_mono_s() - t0 < restored)
            restored = bd_mono_s() - t0;
    }
    uint32_t sa = 0, sb = 0;
    if (bind_zonedb_serial(a.db, "example.com", &sa) != BD_OK || bind_zonedb_serial(b.db, "example.com", &sb) != BD_OK ||
        sa != sb || bind_zonedb_rr_count(a.db, "example.com") != bind_zonedb_rr_count(b.db, "example.com") ||
        bind_zonedb_rr_count(b.db, "example.com") < nrec) {
        fprintf(stderr, "bench_projector: the restored zone store differs from the replayed one\n");
        exit(1);
    }
    printf("BENCH projector_startup_%s_replay %.3f s\n", name, replay);
    printf("BENCH projector_startup_%s_checkpoint %.3f s\n", name, restored);
    if (report_ckpt) {
        printf("BENCH projector_checkpoint_%s_bytes %zu bytes\n", name, bytes);
        printf("BENCH projector_checkpoint_%s_write %.3f s\n", name, write);
        printf("BENCH projector_checkpoint_%s_loop %.3f s\n", name, loop);
    }
    node_free(&a);
    node_free(&b);
    jnl_close(j);
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    static double big[MODS], small[MODS];
    run(100000, true, big);
    run(1000, false, small);
    printf("BENCH projector_event_cost_at_100k_p50 %.1f us\n", pct(big, MODS, 50));
    printf("BENCH projector_event_cost_at_100k_p99 %.1f us\n", pct(big, MODS, 99));
    printf("BENCH projector_event_cost_at_1k_p50 %.1f us\n", pct(small, MODS, 50));
    printf("BENCH projector_event_cost_at_1k_p99 %.1f us\n", pct(small, MODS, 99));
    printf("BENCH projector_cost_ratio_100k_vs_1k %.2f ratio\n", pct(big, MODS, 50) / pct(small, MODS, 50));
    static double zbig[ZMODS], zsmall[ZMODS];
    double create_1k = zone_run(1000, zbig);
    zone_run(10, zsmall);
    printf("BENCH projector_1k_zones_created %.3f s\n", create_1k);
    printf("BENCH projector_dnszone_event_cost_at_1k_zones %.1f us\n", pct(zbig, ZMODS, 50));
    printf("BENCH projector_dnszone_event_cost_at_10_zones %.1f us\n", pct(zsmall, ZMODS, 50));
    printf("BENCH projector_dnszone_cost_ratio_1k_vs_10 %.2f ratio\n", pct(zbig, ZMODS, 50) / pct(zsmall, ZMODS, 50));
    /* every event a new record: the worst case for a checkpoint, which restores every\n     * live object through the projector as the replay applies every event */
    startup("100k", 100000, 1, true);
    /* the same number of events over 10,000 records (each edited nine times) */
    startup("100k_events_10k_records", 10000, 10, false);
    return 0;
}
