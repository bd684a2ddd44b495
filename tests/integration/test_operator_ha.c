/*
 * test_operator_ha.c - three `bindy run` operator processes against the API-server double:
 * one leader, failover after SIGKILL and SIGTERM, a leader cut off from the API server
 * stepping down before anyone else takes over, leaseTransitions, bad environment values.
 * Lease timings: duration 3 s, renew deadline 2 s, retry period 1 s.
 */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "op_harness.h"

#define DUR 3
#define RENEW 2
#define RETRY 1

static const char *bindy_path(void)
{
    const char *b = getenv("BINDY_BIN");
    return b ? b : BINDY_BIN;
}

static oph_t *cluster(int n)
{
    oph_t *h = NULL;
    bd_err_t err;
    if (oph_new(bindy_path(), n, &h, &err) != BD_OK)
        fail_msg("harness: %s", err.msg);
    for (int i = 0; i < n; i++)
        if (oph_start(h, i, DUR, RENEW, RETRY, NULL, &err) != BD_OK)
            fail_msg("start op-%d: %s", i, err.msg);
    return h;
}

static void dump_logs(oph_t *h, int n)
{
    for (int i = 0; i < n; i++) {
        char cmd[512];
        snprintf(cmd, sizeof(cmd), "echo '--- op-%d'; tail -n 30 %s/op-%d.log", i, oph_dir(h), i);
        if (system(cmd) != 0)
            fprintf(stderr, "no log for op-%d\n", i);
    }
}

static bool log_has(oph_t *h, int i, const char *text)
{
    return !isnan(oph_log_time(h, i, text));
}

static long transitions(oph_t *h)
{
    char holder[256];
    long tr;
    oph_lease(h, holder, sizeof(holder), &tr);
    return tr;
}

/* Exactly one replica leads, says so in the seed's words, serves as hidden primary
 * (bindy_leader 1) and carries the leader label on its pod; the others do not. */
static void test_one_leader(void **state)
{
    oph_t *h = cluster(3);
    int lead = oph_wait_holder(h, -1, 30);
    if (lead < 0)
        dump_logs(h, 3);
    assert_true(lead >= 0);
    /* every replica serves its metrics (slow starters under sanitizers) */
    double end = oph_now() + 15;
    for (int i = 0; i < 3; i++)
        while (isnan(oph_metric(h, i, "bindy_leader")) && oph_now() < end)
            usleep(50000);
    /* give every replica time to observe, then check the claim for 3 s */
    end = oph_now() + 3;
    int checks = 0;
    while (oph_now() < end) {
        int leaders = 0;
        for (int i = 0; i < 3; i++) {
            double v = oph_metric(h, i, "bindy_leader");
            assert_false(isnan(v));
            if (v == 1)
                leaders++;
        }
        assert_int_equal(oph_wait_holder(h, -1, 1), lead);
        if (oph_now() > end - 2) { /* after the first second: standbys have settled */
            assert_int_equal(leaders, 1);
            assert_true(oph_metric(h, lead, "bindy_leader") == 1);
            checks++;
        }
        usleep(200000);
    }
    assert_true(checks > 3);
    for (int i = 0; i < 3; i++) {
        assert_true(log_has(h, i, "INFO Attempting to acquire lease bindy-leader"));
        assert_int_equal(oph_pod_labelled(h, i), i == lead);
    }
    assert_true(log_has(h, lead, "INFO Lease acquired, this instance is now the leader"));
    assert_true(log_has(h, lead, "INFO Starting all operators"));
    assert_int_equal(transitions(h), 0);

    /* one transfer key for all: one replica created the Secret, the others adopted it */
    int created = 0, adopted = 0;
    for (int i = 0; i < 3; i++) {
        created += log_has(h, i, "secret dns-system/bindy-keys: created with this replica's keys");
        adopted += log_has(h, i, "secret dns-system/bindy-keys: using the shared transfer and rndc keys");
    }
    assert_int_equal(created, 1);
    assert_int_equal(adopted, 2);
    char *sec = bd_apiserver_get(oph_apiserver(h), "", "secrets", "dns-system", "bindy-keys");
    assert_non_null(sec);
    free(sec);

    /* hot standbys: every replica journals what the API server says, leader or not */
    bd_err_t err;
    assert_int_equal(bd_apiserver_create(oph_apiserver(h),
                                         "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"ARecord\","
                                         "\"metadata\":{\"name\":\"www\",\"namespace\":\"dns-system\"},"
                                         "\"spec\":{\"name\":\"www\",\"ipv4Addresses\":[\"192.0.2.1\"]}}",
                                         &err),
                     BD_OK);
    end = oph_now() + 10;
    for (int i = 0; i < 3; i++) {
        while (oph_now() < end && !(oph_metric(h, i, "bindy_watch_events_total") >= 1 &&
                                   oph_metric(h, i, "bindy_journal_commit_latency_seconds_count") >= 1))
            usleep(50000);
        assert_true(oph_metric(h, i, "bindy_watch_events_total") >= 1);
        assert_true(oph_metric(h, i, "bindy_journal_commit_latency_seconds_count") >= 1);
        assert_true(oph_metric(h, i, "bindy_journal_last_seq") >= 1);
        assert_int_equal(oph_http(h, i, "/healthz"), 200);
        assert_int_equal(oph_http(h, i, "/readyz"), 200); /* journal open, watch caught up */
    }
    oph_free(h);
}

/* SIGKILL the leader: another takes over within LeaseDuration + RetryPeriod. */
static void test_crash_failover(void **state)
{
    oph_t *h = cluster(3);
    int lead = oph_wait_holder(h, -1, 30);
    assert_true(lead >= 0);
    sleep(1); /* standbys have observed the lease */
    double t0 = oph_now();
    oph_signal(h, lead, SIGKILL, true);
    int next = oph_wait_holder(h, lead, DUR + RETRY + 5);
    double dt = oph_now() - t0;
    fprintf(stderr, "crash failover: op-%d -> op-%d in %.3f s\n", lead, next, dt);
    if (next < 0)
        dump_logs(h, 3);
    assert_true(next >= 0);
    assert_true(dt <= DUR + RETRY + 0.5);
    assert_int_equal(transitions(h), 1);
    /* the new leader labels its pod; the dead one's label is cleared by nobody, which is
     * fine: its pod is gone in a cluster; here we check the new one has it */
    double end = oph_now() + 3;
    while (!oph_pod_labelled(h, next) && oph_now() < end)
        usleep(20000);
    assert_true(oph_pod_labelled(h, next));
    oph_free(h);
}

/* SIGTERM the leader: it releases the lease and exits 0; a standby leads within 1 s. */
static void test_graceful_failover(void **state)
{
    oph_t *h = cluster(3);
    int lead = oph_wait_holder(h, -1, 30);
    assert_true(lead >= 0);
    sleep(1);
    double t0 = oph_now();
    oph_signal(h, lead, SIGTERM, false);
    int next = oph_wait_holder(h, lead, 5);
    double dt = oph_now() - t0;
    fprintf(stderr, "graceful failover: op-%d -> op-%d in %.3f s\n", lead, next, dt);
    if (next < 0 || dt > 1.0)
        dump_logs(h, 3);
    assert_true(next >= 0);
    assert_true(dt <= 1.0);
    int st = oph_signal(h, lead, 0, true);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(transitions(h), 1);
    /* and once more, so transitions count every handover */
    t0 = oph_now();
    oph_signal(h, next, SIGTERM, true);
    int third = oph_wait_holder(h, next, 5);
    assert_true(third >= 0 && third != lead);
    assert_int_equal(transitions(h), 2);
    oph_free(h);
}

/* The first successful Lease write by replica i at or after wall time `after`, from the
 * double's request log; NAN when none. */
static double first_lease_write(oph_t *h, int i, double after)
{
    bd_apiserver_req_t *r;
    size_t n = oph_requests(h, i, after, &r);
    double t = NAN;
    for (size_t k = 0; k < n && isnan(t); k++)
        if (strstr(r[k].path, "/leases") && (r[k].status == 200 || r[k].status == 201) &&
            (strcmp(r[k].verb, "update") == 0 || strcmp(r[k].verb, "create") == 0 || strcmp(r[k].verb, "patch") == 0))
            t = r[k].time;
    free(r);
    return t;
}

/* Cut the leader off the API server: it stops leading (log, metric) before another
 * replica's first Lease write, and after the cut is healed it never writes the Lease. */
static void test_partition(void **state)
{
    oph_t *h = cluster(3);
    int lead = oph_wait_holder(h, -1, 30);
    assert_true(lead >= 0);
    sleep(1);
    double cut = oph_wall_now();
    bd_proxy_set_mode(oph_proxy(h, lead), BD_PROXY_BLACKHOLE);
    int next = oph_wait_holder(h, lead, DUR + RENEW + 10);
    if (next < 0)
        dump_logs(h, 3);
    assert_true(next >= 0);
    double lost = oph_log_time(h, lead, "WARN Leadership lost! Stopping all operators...");
    double taken = first_lease_write(h, next, cut);
    fprintf(stderr, "partition: op-%d stepped down %.3f s after the cut; op-%d wrote the lease %.3f s after it\n",
            lead, lost - cut, next, taken - cut);
    assert_false(isnan(lost));
    assert_false(isnan(taken));
    assert_true(lost < taken);
    assert_true(lost - cut <= RENEW + 0.5);
    /* the deposed leader reports it is not leading while still cut off */
    assert_true(oph_metric(h, lead, "bindy_leader") == 0);
    /* heal: the old leader observes the new holder and never writes the Lease */
    double healed = oph_wall_now();
    bd_proxy_set_mode(oph_proxy(h, lead), BD_PROXY_PASS);
    sleep(DUR + 1);
    assert_true(isnan(first_lease_write(h, lead, healed)));
    assert_int_equal(oph_wait_holder(h, -1, 1), next);
    assert_int_equal(transitions(h), 1);
    oph_free(h);
}

/* status.serial of dns-system/example-com as the double stores it; -1 when unset. */
/* The serial the leader published the www record in (its status.serial); -1 when none. */
static long record_serial(oph_t *h)
{
    char *txt = bd_apiserver_get(oph_apiserver(h), "bindy.firestoned.io", "arecords", "dns-system", "www");
    json_t *j = txt ? json_loads(txt, 0, NULL) : NULL;
    free(txt);
    json_t *v = json_object_get(json_object_get(j, "status"), "serial");
    long serial = json_is_integer(v) ? (long)json_integer_value(v) : -1;
    json_decref(j);
    return serial;
}

/* Wait until status.serial is set and has not moved for `quiet` seconds; its value. */
static long settled_serial(oph_t *h, double quiet, double timeout)
{
    double end = oph_now() + timeout, since = oph_now();
    long last = record_serial(h);
    while (oph_now() < end) {
        usleep(100000);
        long now = record_serial(h);
        if (now != last) {
            last = now;
            since = oph_now();
        } else if (last > 0 && oph_now() - since >= quiet) {
            return last;
        }
    }
    return -1;
}

static void set_www(oph_t *h, int n)
{
    char json[160];
    snprintf(json, sizeof(json), "{\"spec\":{\"ipv4Addresses\":[\"192.0.2.%d\"]}}", n);
    assert_int_equal(oph_merge_patch(h, "/apis/bindy.firestoned.io/v1beta1/namespaces/dns-system/arecords/www", json),
                     200);
}

/* The serials a new leader publishes continue above its predecessor's, even when it
 * started late and journaled fewer versions of the zone: the leader writes the serial
 * that publishes a record into the record's status, every replica journals that, and the
 * projector never goes below. */
static void test_serial_continuity(void **state)
{
    oph_t *h = NULL;
    bd_err_t err;
    if (oph_new(bindy_path(), 3, &h, &err) != BD_OK)
        fail_msg("harness: %s", err.msg);
    for (int i = 0; i < 2; i++)
        assert_int_equal(oph_start(h, i, DUR, RENEW, RETRY, NULL, &err), BD_OK);
    int lead = oph_wait_holder(h, -1, 30);
    assert_true(lead >= 0);
    bd_apiserver_t *as = oph_apiserver(h);
    assert_int_equal(
        bd_apiserver_create(as,
                            "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"DNSZone\","
                            "\"metadata\":{\"name\":\"example-com\",\"namespace\":\"dns-system\"},"
                            "\"spec\":{\"zoneName\":\"example.com\",\"soaRecord\":{\"primaryNs\":\"ns1.example.com.\","
                            "\"adminEmail\":\"admin.example.com.\",\"serial\":1},"
                            "\"recordsFrom\":[{\"selector\":{\"matchLabels\":{\"zone\":\"example.com\"}}}]}}",
                            &err),
        BD_OK);
    assert_int_equal(bd_apiserver_create(as,
                                         "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"ARecord\","
                                         "\"metadata\":{\"name\":\"www\",\"namespace\":\"dns-system\","
                                         "\"labels\":{\"zone\":\"example.com\"}},"
                                         "\"spec\":{\"name\":\"www\",\"ipv4Addresses\":[\"192.0.2.1\"]}}",
                                         &err),
                     BD_OK);
    /* versions the late replica will never see one by one */
    for (int i = 2; i <= 6; i++) {
        set_www(h, i);
        usleep(300000);
    }
    long before = settled_serial(h, 2.0, 20);
    fprintf(stderr, "serial published by op-%d: %ld\n", lead, before);
    assert_true(before >= 4); /* more versions than the late replica will journal (2) */

    /* op-2 starts late: it lists the zone (with its status) and the record once */
    assert_int_equal(oph_start(h, 2, DUR, RENEW, RETRY, NULL, &err), BD_OK);
    double end = oph_now() + 15;
    while (oph_now() < end && !(oph_metric(h, 2, "bindy_watch_events_total") >= 2))
        usleep(50000);
    assert_true(oph_metric(h, 2, "bindy_watch_events_total") >= 2);
    sleep(1);

    /* both replicas that saw every version go; op-2 leads */
    oph_signal(h, 0, SIGKILL, true);
    oph_signal(h, 1, SIGKILL, true);
    assert_int_equal(oph_wait_holder(h, lead, DUR + RETRY + 5), 2);
    /* its statuses never take the serial back */
    long after_takeover = settled_serial(h, 2.0, 20);
    fprintf(stderr, "serial after op-2 took over: %ld\n", after_takeover);
    assert_true(after_takeover >= before);
    /* and its next version goes above */
    set_www(h, 7);
    end = oph_now() + 15;
    while (oph_now() < end && record_serial(h) <= after_takeover)
        usleep(100000);
    fprintf(stderr, "serial after one more change: %ld\n", record_serial(h));
    assert_true(record_serial(h) > after_takeover);
    oph_free(h);
}

/* Writes by replica i (its user agent) to path substring `what` with a 2xx answer, at or
 * after wall time `after`. */
static int writes_by(oph_t *h, int i, const char *what, double after)
{
    bd_apiserver_req_t *r;
    size_t n = oph_requests(h, i, after, &r);
    int count = 0;
    for (size_t k = 0; k < n; k++)
        count += strstr(r[k].path, what) && r[k].status >= 200 && r[k].status < 300 && strcmp(r[k].method, "GET") != 0;
    free(r);
    return count;
}

/* The leader applies every Bind9Instance's workloads; standbys never write them; a new
 * leader applies each object once and then nothing at rest. */
static void test_workloads_follow_leader(void **state)
{
    oph_t *h = cluster(3);
    int lead = oph_wait_holder(h, -1, 30);
    assert_true(lead >= 0);
    bd_err_t err;
    bd_apiserver_t *as = oph_apiserver(h);
    assert_int_equal(bd_apiserver_create(as,
                                         "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":"
                                         "\"bindy-hidden-primary\",\"namespace\":\"dns-system\"},\"spec\":{"
                                         "\"clusterIP\":\"10.96.0.53\",\"ports\":[{\"name\":\"dns\",\"port\":53}]}}",
                                         &err),
                     BD_OK);
    assert_int_equal(bd_apiserver_create(as,
                                         "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"Bind9Instance\","
                                         "\"metadata\":{\"name\":\"primary-dns\",\"namespace\":\"dns-system\","
                                         "\"labels\":{\"dns-role\":\"primary\",\"region\":\"us-east\"}},\"spec\":{\"replicas\":2}}",
                                         &err),
                     BD_OK);
    double end = oph_now() + 15;
    char *dep = NULL;
    while (oph_now() < end && (dep = bd_apiserver_get(as, "apps", "deployments", "dns-system", "primary-dns")) == NULL)
        usleep(100000);
    if (dep == NULL)
        dump_logs(h, 3);
    assert_non_null(dep);
    json_t *d = json_loads(dep, 0, NULL);
    free(dep);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "spec"), "replicas")), 2);
    json_t *owner = json_array_get(json_object_get(json_object_get(d, "metadata"), "ownerReferences"), 0);
    assert_string_equal(json_string_value(json_object_get(owner, "kind")), "Bind9Instance");
    json_decref(d);
    char *cm = NULL;
    while (oph_now() < end && (cm = bd_apiserver_get(as, "", "configmaps", "dns-system", "primary-dns-config")) == NULL)
        usleep(100000);
    assert_non_null(cm);
    assert_non_null(strstr(cm, "10.96.0.53")); /* named pulls from the hidden primary */
    free(cm);
    /* the Deployment's controller reports its pods ready (the double runs no controllers) */
    assert_int_equal(oph_merge_patch(h, "/apis/apps/v1/namespaces/dns-system/deployments/primary-dns/status",
                                     "{\"status\":{\"replicas\":2,\"readyReplicas\":2}}"),
                     200);
    /* what a user sees: kubectl get bind9instances -A -L region */
    char cmd[512], out[2048] = "";
    snprintf(cmd, sizeof(cmd),
             "KUBECONFIG=%s/kubeconfig-%d /usr/lib/google-cloud-sdk/bin/kubectl.1.33 get bind9instances -A -L region "
             "--no-headers 2>&1",
             oph_dir(h), lead);
    end = oph_now() + 15;
    bool seen = false;
    while (!seen && oph_now() < end) {
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        size_t got = fread(out, 1, sizeof(out) - 1, p);
        out[got] = '\0';
        pclose(p);
        char ns[64], name[64], role[64], replicas[16], ready[16], age[32], region[64];
        seen = sscanf(out, "%63s %63s %63s %15s %15s %31s %63s", ns, name, role, replicas, ready, age, region) == 7 &&
               strcmp(name, "primary-dns") == 0 && strcmp(role, "primary") == 0 && strcmp(replicas, "2") == 0 &&
               strcmp(ready, "2") == 0 && strcmp(region, "us-east") == 0;
        if (!seen)
            usleep(200000);
    }
    if (!seen)
        fprintf(stderr, "kubectl get bind9instances -A -L region:\n%s\n", out);
    assert_true(seen);
    sleep(2);
    for (int i = 0; i < 3; i++)
        if (i != lead)
            assert_int_equal(writes_by(h, i, "/deployments", 0), 0);

    /* handover: the new leader applies each object once, then nothing at rest */
    oph_signal(h, lead, SIGTERM, true);
    int next = oph_wait_holder(h, lead, 5);
    assert_true(next >= 0);
    sleep(3);
    double rest = oph_wall_now();
    sleep(3);
    int at_rest = writes_by(h, next, "/deployments", rest) + writes_by(h, next, "/configmaps", rest) +
                  writes_by(h, next, "/status", rest);
    fprintf(stderr, "writes at rest by the new leader over 3 s: %d\n", at_rest);
    assert_int_equal(at_rest, 0);
    oph_free(h);
}

/* Bad leader-election settings stop the process at start with a message naming the
 * variable. */
static void expect_refused(const char *const *env, const char *needle)
{
    oph_t *h = NULL;
    bd_err_t err;
    if (oph_new(bindy_path(), 1, &h, &err) != BD_OK)
        fail_msg("harness: %s", err.msg);
    assert_int_equal(oph_start(h, 0, DUR, RENEW, RETRY, env, &err), BD_OK);
    double end = oph_now() + 10;
    while (oph_running(h, 0) && oph_now() < end)
        usleep(20000);
    bool still = oph_running(h, 0);
    if (still)
        oph_signal(h, 0, SIGKILL, true);
    assert_false(still);
    char path[256], buf[4096] = "";
    snprintf(path, sizeof(path), "%s/op-0.log", oph_dir(h));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (strstr(buf, needle) == NULL)
        fprintf(stderr, "expected \"%s\" in:\n%s\n", needle, buf);
    assert_non_null(strstr(buf, needle));
    oph_free(h);
}

/* A burst of work for the leader (200 new records: 200 status writes and finalizers, far
 * beyond the client's token bucket of 30 at 20/s) must not hold its Lease renewals back:
 * it keeps the Lease, with no transition, and never says it lost it. */
static void test_lease_under_load(void **state)
{
    (void)state;
    oph_t *h = cluster(1);
    int lead = oph_wait_holder(h, -1, 30);
    assert_int_equal(lead, 0);
    long tr0 = transitions(h);
    bd_apiserver_t *as = oph_apiserver(h);
    bd_err_t err;
    assert_int_equal(
        bd_apiserver_create(as,
                            "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"DNSZone\","
                            "\"metadata\":{\"name\":\"example-com\",\"namespace\":\"dns-system\"},"
                            "\"spec\":{\"zoneName\":\"example.com\",\"soaRecord\":{\"primaryNs\":\"ns1.example.com.\","
                            "\"adminEmail\":\"admin.example.com.\"},"
                            "\"recordsFrom\":[{\"selector\":{\"matchLabels\":{\"zone\":\"example.com\"}}}]}}",
                            &err),
        BD_OK);
    for (int i = 0; i < 200; i++) {
        char json[400];
        snprintf(json, sizeof(json),
                 "{\"apiVersion\":\"bindy.firestoned.io/v1beta1\",\"kind\":\"ARecord\",\"metadata\":{\"name\":"
                 "\"r%d\",\"namespace\":\"dns-system\",\"labels\":{\"zone\":\"example.com\"}},"
                 "\"spec\":{\"name\":\"r%d\",\"ipv4Addresses\":[\"192.0.2.1\"]}}",
                 i, i);
        assert_int_equal(bd_apiserver_create(as, json, &err), BD_OK);
    }
    /* the burst lasts about 200 / 20 = 10 s of token bucket; watch the Lease through it */
    double end = oph_now() + 14;
    while (oph_now() < end) {
        char holder[256];
        long tr = -1;
        assert_true(oph_lease(h, holder, sizeof(holder), &tr));
        if (oph_index(holder) != 0 || tr != tr0 || log_has(h, 0, "Leadership lost")) {
            dump_logs(h, 1);
            fail_msg("the leader lost its Lease under load (holder %s, transitions %ld -> %ld)", holder, tr0, tr);
        }
        usleep(200000);
    }
    /* and the burst did happen: the token bucket held writes back all along */
    double reqs = oph_metric(h, 0, "bindy_kube_requests_total");
    double throttled = oph_metric(h, 0, "bindy_kube_throttled_total");
    fprintf(stderr, "during the burst: %.0f requests, %.0f throttled\n", reqs, throttled);
    assert_true(reqs >= 250 && throttled >= 100);
    oph_free(h);
}

static void test_bad_env(void **state)
{
    const char *e1[] = {"LEASE_DURATION_SECONDS=2", NULL}; /* == renew deadline */
    expect_refused(e1, "LEASE_DURATION_SECONDS");
    const char *e2[] = {"LEASE_RETRY_PERIOD_SECONDS=abc", NULL};
    expect_refused(e2, "LEASE_RETRY_PERIOD_SECONDS");
    const char *e3[] = {"ENABLE_LEADER_ELECTION=maybe", NULL};
    expect_refused(e3, "ENABLE_LEADER_ELECTION");
    const char *e4[] = {"BINDY_LEASE_RENEW_DEADLINE_SECONDS=1", NULL}; /* 1 <= 1.2 x retry */
    expect_refused(e4, "LEASE_RENEW_DEADLINE_SECONDS");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_env),
        cmocka_unit_test(test_one_leader),
        cmocka_unit_test(test_crash_failover),
        cmocka_unit_test(test_graceful_failover),
        cmocka_unit_test(test_partition),
        cmocka_unit_test(test_serial_continuity),
        cmocka_unit_test(test_workloads_follow_leader),
        cmocka_unit_test(test_lease_under_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
