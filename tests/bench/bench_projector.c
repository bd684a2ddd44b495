/*
 * Projector benchmark: the incremental cost of one event as the state grows.
 * One DNSZone (example.com, recordsFrom zone=example.com), one Bind9Instance it selects,
 * then N ARecords r0..r{N-1} applied as ADDED events (changes taken every 1000 events);
 * then MODS single-record MODIFIED events (one address changed), each followed by
 * proj_take_changes, timed one by one. Done at 100,000 and at 1,000 records: the ratio
 * of the per-event costs shows whether an event's cost grows with the state size.
 * Bounded: fixed counts, no I/O. CLOCK_MONOTONIC.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "projector.h"

#define MODS 1000

static uint64_t g_seq;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void apply(proj_t *p, jnl_type_t type, json_t *obj)
{
    const json_t *meta = json_object_get(obj, "metadata");
    jnl_event_t ev = {
        .seq = ++g_seq,
        .source = JNL_SRC_MANIFESTS,
        .type = type,
        .api_version = json_string_value(json_object_get(obj, "apiVersion")),
        .kind = json_string_value(json_object_get(obj, "kind")),
        .ns = json_string_value(json_object_get(meta, "namespace")),
        .name = json_string_value(json_object_get(meta, "name")),
        .object = obj,
    };
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

static proj_t *base(void)
{
    proj_t *p = NULL;
    if (proj_new(NULL, &p, NULL) != BD_OK)
        exit(1);
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
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        json_t *r = arecord(i, 0);
        apply(p, JNL_ADDED, r);
        json_decref(r);
        if ((i + 1) % 1000 == 0)
            take(p);
    }
    take(p);
    double load = now_s() - t0;
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
        double t = now_s();
        apply(p, JNL_MODIFIED, mods[k]);
        take(p);
        lat[k] = (now_s() - t) * 1e6;
    }
    for (size_t k = 0; k < MODS; k++)
        json_decref(mods[k]);
    free(mods);
    qsort(lat, MODS, sizeof(*lat), cmp_d);
    proj_free(p);
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
    return 0;
}
