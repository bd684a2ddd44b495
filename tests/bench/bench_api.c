/*
 * bench_api.c - API requests the operator makes per record change, and at rest.
 *
 * One `bindy run` replica (leader election on: lease 3/2/1 s) against the API-server
 * double, with a primary Bind9Instance, the zone example.com and N ARecords. Once every
 * status and workload is written and the operator has been quiet for 3 s, each record is
 * changed once (a spec edit, as `kubectl apply` would make), then the operator is left
 * alone for 60 s. Requests are counted from the double's request log by the operator's
 * user agent, writes (create, update, patch, delete) apart from reads, and the Lease's
 * renewals apart from everything else.
 *
 * usage: bench_api BINDY [N]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "op_harness.h"

typedef struct counts {
    int writes, reads, lease;
} counts_t;

/* Requests by op-0 answered at or after wall time `after` (watches excluded). */
static counts_t count(oph_t *h, double after)
{
    counts_t c = {0};
    bd_apiserver_req_t *r;
    size_t n = oph_requests(h, 0, after, &r);
    for (size_t k = 0; k < n; k++) {
        if (strstr(r[k].path, "/leases"))
            c.lease++;
        else if (strcmp(r[k].method, "GET") == 0)
            c.reads++;
        else
            c.writes++;
    }
    free(r);
    return c;
}

/* Wait until op-0 has made no request but Lease renewals for `quiet` seconds. */
static bool settle(oph_t *h, double quiet, double timeout)
{
    double end = oph_now() + timeout;
    while (oph_now() < end) {
        counts_t c = count(h, oph_wall_now() - quiet);
        if (c.writes == 0 && c.reads == 0)
            return true;
        usleep(200000);
    }
    return false;
}

static int create(oph_t *h, const char *json)
{
    bd_err_t err;
    if (bd_apiserver_create(oph_apiserver(h), json, &err) != BD_OK) {
        fprintf(stderr, "bench_api: create: %s\n", err.msg);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_api BINDY [N]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 100;
    if (n < 1 || n > 10000)
        n = 100;
    oph_t *h = NULL;
    bd_err_t err;
    if (oph_new(argv[1], 1, &h, &err) != BD_OK || oph_start(h, 0, 3, 2, 1, NULL, &err) != BD_OK) {
        fprintf(stderr, "bench_api: %s\n", err.msg);
        oph_free(h);
        return 1;
    }
    int rc = 1;
    if (oph_wait_holder(h, -1, 30) != 0) {
        fprintf(stderr, "bench_api: no leader; logs in %s\n", oph_dir(h));
        goto out;
    }
    if (create(h, "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"bindy-hidden-primary\","
                  "\"namespace\":\"dns-system\"},\"spec\":{\"clusterIP\":\"10.96.0.53\",\"ports\":[{\"port\":53}]}}") ||
        create(h, "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"Bind9Instance\",\"metadata\":{\"name\":"
                  "\"primary-dns\",\"namespace\":\"dns-system\",\"labels\":{\"dns-role\":\"primary\"}},"
                  "\"spec\":{\"replicas\":2}}") ||
        create(h, "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"DNSZone\",\"metadata\":{\"name\":"
                  "\"example-com\",\"namespace\":\"dns-system\"},\"spec\":{\"zoneName\":\"example.com\","
                  "\"soaRecord\":{\"primaryNs\":\"ns1.example.com.\",\"adminEmail\":\"admin.example.com.\"},"
                  "\"bind9InstancesFrom\":[{\"selector\":{\"matchLabels\":{\"dns-role\":\"primary\"}}}],"
                  "\"recordsFrom\":[{\"selector\":{\"matchLabels\":{\"zone\":\"example.com\"}}}]}}"))
        goto out;
    for (int i = 0; i < n; i++) {
        char json[512];
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"ARecord\",\"metadata\":{\"name\":"
                 "\"www-%d\",\"namespace\":\"dns-system\",\"labels\":{\"zone\":\"example.com\"}},"
                 "\"spec\":{\"name\":\"www-%d\",\"ipv4Addresses\":[\"192.0.2.1\"]}}",
                 i, i);
        if (create(h, json))
            goto out;
    }
    if (!settle(h, 3, 60)) {
        fprintf(stderr, "bench_api: the operator never went quiet; logs in %s\n", oph_dir(h));
        goto out;
    }
    counts_t setup = count(h, 0);
    printf("BENCH api_setup_writes_%d_records %d writes\n", n, setup.writes);

    /* one spec change per record */
    double t0 = oph_wall_now();
    for (int i = 0; i < n; i++) {
        char path[160], json[128];
        snprintf(path, sizeof(path), "/apis/bindy.firestoned.io/v1beta1/namespaces/dns-system/arecords/www-%d", i);
        snprintf(json, sizeof(json), "{\"spec\":{\"ipv4Addresses\":[\"192.0.2.%d\"]}}", 2 + i % 250);
        if (oph_merge_patch(h, path, json) != 200) {
            fprintf(stderr, "bench_api: patch %s failed\n", path);
            goto out;
        }
    }
    if (!settle(h, 3, 60))
        goto out;
    counts_t ch = count(h, t0);
    printf("BENCH api_writes_per_record_change %.3f writes/change\n", (double)ch.writes / n);
    printf("BENCH api_reads_per_record_change %.3f reads/change\n", (double)ch.reads / n);

    /* at rest */
    double t1 = oph_wall_now();
    sleep(60);
    counts_t rest = count(h, t1);
    printf("BENCH api_writes_at_rest_60s %d writes\n", rest.writes);
    printf("BENCH api_reads_at_rest_60s %d reads\n", rest.reads);
    printf("BENCH api_lease_requests_at_rest_60s %d requests\n", rest.lease);
    rc = 0;
out:
    oph_free(h);
    return rc;
}
