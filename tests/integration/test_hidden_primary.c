/*
 * test_hidden_primary.c - bindy's hidden primary (zonedb + server) against real BIND
 * named secondaries on loopback.
 *
 * Our server runs on this thread's libev loop; named runs as child processes (the named
 * harness) and dig runs as a subprocess while the loop keeps turning, so the server
 * answers the transfers dig's answers depend on. Every wait is bounded. If named cannot
 * start, the test fails with named's own words: nothing is skipped.
 *
 * The tests share state and run in order:
 *   1. two secondaries transfer a zone with every record type (AXFR of several
 *      TSIG-chained messages) after NOTIFY; every answer is checked with dig;
 *   2. one changed record reaches both by IXFR; 3. a deleted record goes from both;
 *   4. a named started from an empty directory fills itself;
 *   5. a named with the wrong TSIG secret gets nothing, and our log says why;
 *   6. serving off: REFUSED;
 *   7. a catalog zone (RFC 9432) adds and removes a member zone on a named without any
 *      change to its configuration;
 *   8. malformed input gets FORMERR or is dropped, and the server keeps answering;
 *   9. (no named) IXFR/AXFR over UDP, unsigned and unknown-key queries, checked with ldns;
 *  10. (no named, a second server) the TCP client cap, the idle timeout, NOTIFY retries
 *      with backoff until given up, and a NOTIFY acknowledged;
 *  11. a primary and two secondary named configured as bindy renders them for a cluster
 *      (bind_render_named_conf, the workload's parameters, harness ports): a change the
 *      primary gets reaches a secondary within a second by NOTIFY, although the NOTIFY
 *      comes from another address than the one the secondary pulls from (a pod behind a
 *      Service): signed with the transfer key, it is accepted; the secondary whose
 *      allow-notify lacks the key refuses it and still has the old data;
 *  12. the rendered control channel: our rndc client runs `retransfer` at another
 *      loopback address (a pod's own address) with the instance's rndc key, and is
 *      turned away with another key;
 *  13. a change reaches the secondary by IXFR at both hops (bindy -> primary -> secondary),
 *      as named's transfer-out log says, even when bindy lost its history and sent the
 *      primary the whole zone; a restarted primary serves the zone from its file while
 *      bindy refuses; a zone out of the catalog leaves no file behind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "log.h"
#include "named_harness.h"
#include "render.h"
#include "rndc.h"
#include "resource.h"
#include "server.h"
#include "zonedb.h"

#define WAIT_S 10.0 /* every poll for a secondary gives up after this */

static struct ev_loop *g_loop;
static bind_zonedb_t *g_db;
static bind_server_t *g_srv;
static bind_server_key_t g_key;
static char g_secret[128];
static uint32_t g_serial = 1;
static bd_named_t *g_a, *g_b; /* the two secondaries of tests 1-3 */

/* ---- driving the loop ---- */

static void timer_done_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    *(bool *)w->data = true;
}

/* Run the loop for secs seconds. */
static void pump(double secs)
{
    bool done = false;
    ev_timer t;
    ev_timer_init(&t, timer_done_cb, secs, 0.);
    t.data = &done;
    ev_timer_start(g_loop, &t);
    while (!done)
        ev_run(g_loop, EVRUN_ONCE);
    ev_timer_stop(g_loop, &t);
}

typedef struct cmd_out {
    char buf[65536];
    size_t len;
    bool eof;
} cmd_out_t;

static void cmd_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    cmd_out_t *o = w->data;
    for (;;) {
        char tmp[4096];
        ssize_t r = read(w->fd, tmp, sizeof(tmp));
        if (r > 0) {
            size_t room = sizeof(o->buf) - 1 - o->len;
            size_t n = (size_t)r < room ? (size_t)r : room;
            memcpy(o->buf + o->len, tmp, n);
            o->len += n;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            o->eof = true;
        return;
    }
}

/* Run argv (stdout and stderr captured) while the loop turns; at most timeout seconds.
 * Returns the output (malloc'd, NUL-terminated). */
static char *run_cmd(char *const argv[], double timeout)
{
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    cmd_out_t *o = calloc(1, sizeof(*o));
    assert_non_null(o);
    ev_io w;
    ev_io_init(&w, cmd_read_cb, p[0], EV_READ);
    w.data = o;
    ev_io_start(g_loop, &w);
    bool late = false;
    ev_timer t;
    ev_timer_init(&t, timer_done_cb, timeout, 0.);
    t.data = &late;
    ev_timer_start(g_loop, &t);
    while (!o->eof && !late)
        ev_run(g_loop, EVRUN_ONCE);
    ev_io_stop(g_loop, &w);
    ev_timer_stop(g_loop, &t);
    close(p[0]);
    if (late)
        kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    o->buf[o->len] = '\0';
    char *s = strdup(o->buf);
    free(o);
    assert_non_null(s);
    return s;
}

static int line_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort the lines of s in place (dig prints RRsets in any order). */
static void sort_lines(char *s)
{
    char *lines[512];
    size_t n = 0;
    char *copy = strdup(s), *save = NULL;
    assert_non_null(copy);
    for (char *l = strtok_r(copy, "\n", &save); l != NULL && n < 512; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    qsort(lines, n, sizeof(lines[0]), line_cmp);
    size_t off = 0;
    for (size_t i = 0; i < n; i++)
        off += (size_t)sprintf(s + off, "%s%s", i ? "\n" : "", lines[i]);
    s[off] = '\0';
    free(copy);
}

/* dig @127.0.0.1 -p port name type +short, lines sorted. extra: one more dig option or
 * NULL. */
static char *dig(uint16_t port, const char *name, const char *type, const char *extra)
{
    char p[16];
    snprintf(p, sizeof(p), "%u", port);
    char *argv[] = {"dig", "@127.0.0.1", "-p", p, (char *)name, (char *)type, "+short",
                    "+time=2", "+tries=1", "+norec", (char *)extra, NULL};
    char *out = run_cmd(argv, 8.0);
    size_t len = strlen(out);
    while (len > 0 && out[len - 1] == '\n')
        out[--len] = '\0';
    sort_lines(out);
    return out;
}

/* dig's status word (NOERROR, REFUSED, SERVFAIL, ...) for a query, or "" on timeout. */
static char *dig_status(uint16_t port, const char *name, const char *type)
{
    char p[16];
    snprintf(p, sizeof(p), "%u", port);
    char *argv[] = {"dig", "@127.0.0.1", "-p", p, (char *)name, (char *)type, "+time=2",
                    "+tries=1", "+norec", NULL};
    char *out = run_cmd(argv, 8.0);
    char *st = strstr(out, "status: ");
    char word[32] = "";
    if (st != NULL)
        sscanf(st + 8, "%31[A-Z]", word);
    free(out);
    return strdup(word);
}

/* Poll dig until its sorted +short answer equals want; false after WAIT_S. *last gets the
 * last answer (caller frees). */
static bool wait_answer(uint16_t port, const char *name, const char *type, const char *want,
                        char **last)
{
    double end = ev_time() + WAIT_S;
    char *got = NULL;
    for (;;) {
        free(got);
        got = dig(port, name, type, NULL);
        if (strcmp(got, want) == 0 || ev_time() > end)
            break;
        pump(0.2);
    }
    bool ok = strcmp(got, want) == 0;
    if (last != NULL)
        *last = got;
    else
        free(got);
    return ok;
}

static bool wait_status(uint16_t port, const char *name, const char *type, const char *want)
{
    double end = ev_time() + WAIT_S;
    for (;;) {
        char *st = dig_status(port, name, type);
        bool ok = strcmp(st, want) == 0;
        free(st);
        if (ok)
            return true;
        if (ev_time() > end)
            return false;
        pump(0.2);
    }
}

#define ASSERT_ANSWER(port, name, type, want)                                                 \
    do {                                                                                      \
        char *last_ = NULL;                                                                   \
        if (!wait_answer((port), (name), (type), (want), &last_))                             \
            fail_msg("named on port %u: %s %s: want [%s], got [%s] after %.0f s", (port),      \
                     (name), (type), (want), last_, WAIT_S);                                   \
        free(last_);                                                                          \
    } while (0)

/* ---- zone changes ---- */

static void apply_text(const char *zone, const char *rm, const char *add)
{
    ldns_rr_list *r = NULL, *a = NULL;
    bd_err_t err;
    if (rm != NULL && bind_zonedb_parse_rrs(rm, zone, 300, &r, &err) != 0)
        fail_msg("parse: %s", err.msg);
    if (add != NULL && bind_zonedb_parse_rrs(add, zone, 300, &a, &err) != 0)
        fail_msg("parse: %s", err.msg);
    uint32_t serial = 0;
    if (bind_zonedb_serial(g_db, zone, &serial) == 0)
        serial++;
    else
        serial = 1;
    int rc = bind_zonedb_apply(g_db, zone, r, a, serial, &err);
    ldns_rr_list_deep_free(r);
    ldns_rr_list_deep_free(a);
    if (rc != 0)
        fail_msg("apply %s: %s", zone, err.msg);
}

/* ---- named ---- */

static const char conf_head[] = "options {\n"
                                "  directory \"@DIR@\";\n"
                                "  pid-file \"@DIR@/named.pid\";\n"
                                "  listen-on port @PORT@ { 127.0.0.1; };\n"
                                "  listen-on-v6 { none; };\n"
                                "  recursion no;\n"
                                "  notify no;\n"
                                "  dnssec-validation no;\n"
                                "%s"
                                "};\n"
                                "key \"xfr\" { algorithm hmac-sha256; secret \"%s\"; };\n";

/* Start a named whose configuration is conf_head (options_extra, secret) + zones. */
static bd_named_t *start_named(const char *what, const char *options_extra, const char *secret,
                               const char *zones)
{
    bd_named_t *n = NULL;
    bd_err_t err;
    char conf[8192];
    int off = snprintf(conf, sizeof(conf), conf_head, options_extra, secret);
    snprintf(conf + off, sizeof(conf) - (size_t)off, "%s", zones);
    bd_err_clear(&err);
    int rc = bd_named_new(&n, &err);
    if (rc == 0)
        rc = bd_named_start(n, conf, 30.0, &err);
    if (rc != 0) {
        bd_named_free(n);
        fail_msg("FATAL: could not start named (%s) for the hidden-primary test: %s (%s)", what,
                 err.msg, bd_strerror(rc));
    }
    return n;
}

static bd_named_t *start_secondary(const char *what, const char *secret)
{
    char zones[512];
    snprintf(zones, sizeof(zones),
             "zone \"example.com\" { type secondary; file \"example.com.db\"; "
             "primaries { 127.0.0.1 port %u key \"xfr\"; }; };\n",
             bind_server_port(g_srv));
    return start_named(what, "", secret, zones);
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    char line[4096];
    bool hit = false;
    while (!hit && fgets(line, sizeof(line), f) != NULL)
        hit = strstr(line, needle) != NULL;
    fclose(f);
    return hit;
}

static bool named_log_contains(bd_named_t *n, const char *needle)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/named.log", bd_named_dir(n));
    return file_contains(path, needle);
}

/* Records named says it received in the transfer that brought serial, or -1. */
static long named_transfer_records(bd_named_t *n, uint32_t serial)
{
    char path[512], tag[32], line[4096];
    long records = -1;
    snprintf(path, sizeof(path), "%s/named.log", bd_named_dir(n));
    snprintf(tag, sizeof(tag), "(serial %u)", serial);
    FILE *f = fopen(path, "r");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        const char *p = strstr(line, "Transfer completed: ");
        if (p != NULL && strstr(line, tag) != NULL) {
            const char *r = strstr(p, " messages, ");
            if (r != NULL)
                records = strtol(r + 11, NULL, 10);
        }
    }
    if (f != NULL)
        fclose(f);
    return records;
}

static void set_targets(const char *zone, bd_named_t *const *ns, size_t count)
{
    char texts[8][64];
    const char *ptrs[8];
    bd_err_t err;
    for (size_t i = 0; i < count; i++) {
        snprintf(texts[i], sizeof(texts[i]), "127.0.0.1:%u", bd_named_port(ns[i]));
        ptrs[i] = texts[i];
    }
    if (bind_server_set_notify_targets(g_srv, zone, ptrs, count, &err) != 0)
        fail_msg("notify targets: %s", err.msg);
}

static void print_log_tail(bd_named_t *n)
{
    char tail[3000];
    bd_named_log_tail(n, tail, sizeof(tail));
    print_message("---- end of %s/named.log ----\n%s\n", bd_named_dir(n), tail);
}

/* ---- the zone ---- */

static const char zone_text[] =
    "$TTL 300\n"
    "@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n"
    "@ IN NS ns1\n"
    "@ IN NS ns2\n"
    "ns1 IN A 192.0.2.53\n"
    "ns2 IN A 192.0.2.54\n"
    "ns2 IN AAAA 2001:db8::54\n"
    "@ IN A 192.0.2.10\n"
    "www IN A 192.0.2.1\n"
    "www IN A 192.0.2.2\n"
    "v6 IN AAAA 2001:db8::1\n"
    "alias IN CNAME www\n"
    "@ IN MX 10 mail\n"
    "@ IN MX 20 mail2.example.net.\n"
    "mail IN A 192.0.2.25\n"
    "txt IN TXT \"hello world\"\n"
    "multi IN TXT \"part one\" \"part two\" \"part three\"\n"
    "_sip._tcp IN SRV 10 60 5060 sip\n"
    "sip IN A 192.0.2.60\n"
    "@ IN CAA 0 issue \"letsencrypt.org\"\n"
    "@ IN CAA 0 iodef \"mailto:security@example.com\"\n"
    "sub IN NS ns.sub\n"
    "ns.sub IN A 192.0.2.99\n";

#define BULK 1500 /* more RRs, so that an AXFR takes several messages */

static const struct {
    const char *name, *type, *want;
} answers[] = {
    {"example.com", "NS", "ns1.example.com.\nns2.example.com."},
    {"example.com", "A", "192.0.2.10"},
    {"ns2.example.com", "AAAA", "2001:db8::54"},
    {"www.example.com", "A", "192.0.2.1\n192.0.2.2"},
    {"v6.example.com", "AAAA", "2001:db8::1"},
    {"alias.example.com", "CNAME", "www.example.com."},
    {"example.com", "MX", "10 mail.example.com.\n20 mail2.example.net."},
    {"txt.example.com", "TXT", "\"hello world\""},
    {"multi.example.com", "TXT", "\"part one\" \"part two\" \"part three\""},
    {"_sip._tcp.example.com", "SRV", "10 60 5060 sip.example.com."},
    {"example.com", "CAA", "0 iodef \"mailto:security@example.com\"\n0 issue \"letsencrypt.org\""},
    {"bulk777.example.com", "A", "10.0.3.9"},
};

static void check_all_answers(bd_named_t *n)
{
    for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
        ASSERT_ANSWER(bd_named_port(n), answers[i].name, answers[i].type, answers[i].want);
    /* the delegation and its glue: a referral, so not in +short */
    char p[16];
    snprintf(p, sizeof(p), "%u", bd_named_port(n));
    char *argv[] = {"dig",      "@127.0.0.1",     "-p",   p,     "www.sub.example.com", "A",
                    "+norec",   "+noall",         "+authority", "+additional", "+time=2",
                    "+tries=1", NULL};
    char *out = run_cmd(argv, 8.0);
    if (strstr(out, "ns.sub.example.com.") == NULL || strstr(out, "192.0.2.99") == NULL)
        fail_msg("named on port %u: no referral with glue for sub.example.com: [%s]",
                 bd_named_port(n), out);
    free(out);
}

static void soa_serial_is(bd_named_t *n, uint32_t serial)
{
    char want[128];
    snprintf(want, sizeof(want), "ns1.example.com. hostmaster.example.com. %u 3600 600 86400 300",
             serial);
    char *last = NULL;
    if (!wait_answer(bd_named_port(n), "example.com", "SOA", want, &last)) {
        print_log_tail(n);
        fail_msg("named on port %u: SOA want [%s], got [%s] after %.0f s", bd_named_port(n), want,
                 last, WAIT_S);
    }
    free(last);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    bd_err_t err;
    bd_log_init_from_env();
    g_loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(g_loop);
    assert_int_equal(bind_zonedb_new(&g_db, NULL), 0);
    assert_int_equal(bind_server_key_generate(&g_key, "xfr", BIND_SERVER_HMAC_SHA256), 0);
    assert_int_equal(bind_server_key_b64(&g_key, g_secret, sizeof(g_secret)), 0);

    /* the zone, with BULK more A records */
    size_t cap = sizeof(zone_text) + BULK * 64;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t off = (size_t)snprintf(text, cap, "%s", zone_text);
    for (unsigned i = 0; i < BULK; i++)
        off += (size_t)snprintf(text + off, cap - off, "bulk%u IN A 10.0.%u.%u\n", i, i / 256,
                                i % 256);
    ldns_rr_list *rrs = NULL;
    if (bind_zonedb_parse_rrs(text, "example.com", 300, &rrs, &err) != 0)
        fail_msg("zone text: %s", err.msg);
    free(text);
    assert_int_equal(bind_zonedb_apply(g_db, "example.com", NULL, rrs, g_serial, &err), 0);
    ldns_rr_list_deep_free(rrs);

    bind_server_config_t cfg = {
        .address = "127.0.0.1",
        .port = 0,
        .xfr_key = &g_key,
        .serving = true,
        .max_message = 4096, /* small messages: the AXFR spans many, each TSIG-chained */
        .notify_interval = 0.5,
        .notify_retries = 4,
    };
    if (bind_server_new(&g_srv, g_loop, g_db, &cfg, &err) != 0)
        fail_msg("server: %s", err.msg);
    assert_true(bind_server_port(g_srv) != 0);
    return 0;
}

static int group_teardown(void **state)
{
    bd_named_free(g_a);
    bd_named_free(g_b);
    bind_server_free(g_srv);
    bind_zonedb_free(g_db);
    bind_server_key_wipe(&g_key);
    ev_loop_destroy(g_loop);
    return 0;
}

/* ---- tests ---- */

static void test_two_secondaries_transfer(void **state)
{
    g_a = start_secondary("secondary A", g_secret);
    g_b = start_secondary("secondary B", g_secret);
    bd_named_t *both[] = {g_a, g_b};
    set_targets(NULL, both, 2);
    assert_int_equal(bind_server_notify(g_srv, "example.com"), 0);

    soa_serial_is(g_a, g_serial);
    soa_serial_is(g_b, g_serial);
    check_all_answers(g_a);
    check_all_answers(g_b);

    bind_server_stats_t st;
    bind_server_stats(g_srv, &st);
    print_message("AXFRs %llu, messages %llu, NOTIFY sent %llu acked %llu\n",
                  (unsigned long long)st.axfr, (unsigned long long)st.xfr_messages,
                  (unsigned long long)st.notify_sent, (unsigned long long)st.notify_acked);
    assert_true(st.axfr + st.ixfr_axfr >= 2);
    assert_true(st.xfr_done >= 2);
    assert_true(st.xfr_messages >= 2 * 5); /* ~1500 RRs in 4 KiB messages */
    assert_int_equal(st.notauth, 0);
    /* the NOTIFYs were answered (named answers NOTIFY even while it transfers) */
    for (double end = ev_time() + WAIT_S; st.notify_acked < 2 && ev_time() < end;) {
        pump(0.2);
        bind_server_stats(g_srv, &st);
    }
    assert_true(st.notify_acked >= 2);
    assert_true(named_log_contains(g_a, "Transfer status: success"));
}

static void test_change_goes_by_ixfr(void **state)
{
    bind_server_stats_t before, after;
    bind_server_stats(g_srv, &before);
    apply_text("example.com", "www IN A 192.0.2.2\n", "www IN A 192.0.2.3\n");
    g_serial++;
    soa_serial_is(g_a, g_serial);
    soa_serial_is(g_b, g_serial);
    ASSERT_ANSWER(bd_named_port(g_a), "www.example.com", "A", "192.0.2.1\n192.0.2.3");
    ASSERT_ANSWER(bd_named_port(g_b), "www.example.com", "A", "192.0.2.1\n192.0.2.3");
    bind_server_stats(g_srv, &after);
    print_message("IXFRs %llu -> %llu (whole zone %llu -> %llu)\n",
                  (unsigned long long)before.ixfr, (unsigned long long)after.ixfr,
                  (unsigned long long)before.ixfr_axfr, (unsigned long long)after.ixfr_axfr);
    assert_true(after.ixfr >= before.ixfr + 2);
    assert_int_equal(after.ixfr_axfr, before.ixfr_axfr);
    assert_int_equal(after.axfr, before.axfr);
    /* named says so too: 9.18 does not name the transfer type at its default log level,
     * but "Transfer completed: 1 messages, 6 records" is SOA, SOA(old), -www, SOA, +www,
     * SOA: an incremental transfer (the whole zone is 1500+ records) */
    assert_int_equal(named_transfer_records(g_a, g_serial), 6);
    assert_int_equal(named_transfer_records(g_b, g_serial), 6);
}

static void test_delete_goes(void **state)
{
    apply_text("example.com", "txt IN TXT \"hello world\"\n", NULL);
    g_serial++;
    soa_serial_is(g_a, g_serial);
    soa_serial_is(g_b, g_serial);
    ASSERT_ANSWER(bd_named_port(g_a), "txt.example.com", "TXT", "");
    ASSERT_ANSWER(bd_named_port(g_b), "txt.example.com", "TXT", "");
    assert_true(wait_status(bd_named_port(g_a), "txt.example.com", "TXT", "NXDOMAIN"));
    assert_true(wait_status(bd_named_port(g_b), "txt.example.com", "TXT", "NXDOMAIN"));
    /* the rest is still there */
    ASSERT_ANSWER(bd_named_port(g_b), "multi.example.com", "TXT",
                  "\"part one\" \"part two\" \"part three\"");
}

static void test_fresh_named_fills_itself(void **state)
{
    bd_named_t *c = start_secondary("secondary C, empty directory", g_secret);
    soa_serial_is(c, g_serial);
    ASSERT_ANSWER(bd_named_port(c), "www.example.com", "A", "192.0.2.1\n192.0.2.3");
    ASSERT_ANSWER(bd_named_port(c), "txt.example.com", "TXT", "");
    ASSERT_ANSWER(bd_named_port(c), "_sip._tcp.example.com", "SRV", "10 60 5060 sip.example.com.");
    ASSERT_ANSWER(bd_named_port(c), "bulk1499.example.com", "A", "10.0.5.219");
    bd_named_free(c);
}

static void test_wrong_key_refused(void **state)
{
    char path[] = "/tmp/bindy-hp-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fd, 2) >= 0);

    bind_server_stats_t before, after;
    bind_server_stats(g_srv, &before);
    bind_server_key_t wrong;
    char wrong_secret[128];
    assert_int_equal(bind_server_key_generate(&wrong, "xfr", BIND_SERVER_HMAC_SHA256), 0);
    assert_int_equal(bind_server_key_b64(&wrong, wrong_secret, sizeof(wrong_secret)), 0);
    bind_server_key_wipe(&wrong);
    bd_named_t *d = start_secondary("secondary D, wrong secret", wrong_secret);
    /* named's first SOA query is signed with its (wrong) key */
    bool logged = false;
    for (double end = ev_time() + WAIT_S; !logged && ev_time() < end;) {
        pump(0.2);
        fflush(stderr);
        logged = file_contains(path, "with key 'xfr.' refused: bad signature (BADSIG)");
    }
    /* and a NOTIFY signed with our key is rejected by it */
    bd_named_t *one[] = {d};
    set_targets("example.com", one, 1);
    assert_int_equal(bind_server_notify(g_srv, "example.com"), 0);
    pump(1.0);
    char *st = dig_status(bd_named_port(d), "example.com", "SOA");

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    /* show what we captured */
    FILE *f = fopen(path, "r");
    char line[1024];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        fputs(line, stderr);
    if (f != NULL)
        fclose(f);
    bool notify_rejected = file_contains(path, "answered NOTAUTH");
    unlink(path);

    bind_server_stats(g_srv, &after);
    set_targets("example.com", NULL, 0); /* back to the default targets */
    bool named_failed = named_log_contains(d, "tsig") || named_log_contains(d, "TSIG");
    if (!logged || strcmp(st, "SERVFAIL") != 0 || after.notauth <= before.notauth)
        print_log_tail(d);
    bd_named_free(d);
    assert_true(logged);
    assert_string_equal(st, "SERVFAIL"); /* a secondary without its zone */
    free(st);
    assert_true(after.notauth > before.notauth);
    assert_int_equal(after.axfr, before.axfr);
    assert_true(named_failed);
    assert_true(notify_rejected);
}

static void test_not_serving_refuses(void **state)
{
    uint16_t port = bind_server_port(g_srv);
    char *st = dig_status(port, "example.com", "SOA");
    assert_string_equal(st, "NOERROR");
    free(st);
    st = dig_status(port, "other.org", "SOA");
    assert_string_equal(st, "REFUSED"); /* not our zone */
    free(st);

    bind_server_set_serving(g_srv, false);
    st = dig_status(port, "example.com", "SOA");
    assert_string_equal(st, "REFUSED");
    free(st);
    /* a signed AXFR too */
    char p[16], k[200];
    snprintf(p, sizeof(p), "%u", port);
    snprintf(k, sizeof(k), "hmac-sha256:xfr:%s", g_secret);
    char *argv[] = {"dig", "@127.0.0.1", "-p", p, "-y", k, "example.com", "AXFR", "+time=2",
                    "+tries=1", NULL};
    char *out = run_cmd(argv, 8.0);
    assert_non_null(strstr(out, "Transfer failed"));
    free(out);
    bind_server_set_serving(g_srv, true);
    out = run_cmd(argv, 8.0);
    if (strstr(out, "XFR size:") == NULL)
        fail_msg("signed AXFR with dig failed: %s", out);
    free(out);

    /* IXFR from a serial we never had (older than ours in RFC 1982 terms: 3 - 0xffffff00
     * wraps to 259): the whole zone, as RFC 1995 allows */
    bind_server_stats_t before, after;
    bind_server_stats(g_srv, &before);
    char *argv2[] = {"dig", "@127.0.0.1", "-p", p, "-y", k, "example.com", "IXFR=4294967040",
                     "+time=2", "+tries=1", NULL};
    out = run_cmd(argv2, 8.0);
    char want[64];
    snprintf(want, sizeof(want), "XFR size: %zu records",
             bind_zonedb_rr_count(g_db, "example.com") + 1);
    if (strstr(out, want) == NULL)
        fail_msg("IXFR from an unknown serial: want '%s' in: %.2000s", want, out);
    free(out);
    bind_server_stats(g_srv, &after);
    assert_int_equal(after.ixfr_axfr, before.ixfr_axfr + 1);
}

static void test_catalog_zone(void **state)
{
    /* RFC 9432 catalog: version 2, members as <id>.zones.<catalog> PTR <zone>. */
    apply_text("catalog.example", NULL,
               "@ IN SOA invalid. invalid. 1 3600 600 86400 300\n"
               "@ IN NS invalid.\n"
               "version IN TXT \"2\"\n");
    char options[512], zones[512];
    snprintf(options, sizeof(options),
             "  catalog-zones { zone \"catalog.example\" default-primaries { 127.0.0.1 port %u "
             "key \"xfr\"; } min-update-interval 1; };\n",
             bind_server_port(g_srv));
    snprintf(zones, sizeof(zones),
             "zone \"catalog.example\" { type secondary; file \"catalog.example.db\"; "
             "primaries { 127.0.0.1 port %u key \"xfr\"; }; };\n",
             bind_server_port(g_srv));
    bd_named_t *e = start_named("catalog secondary E", options, g_secret, zones);
    bd_named_t *one[] = {e};
    set_targets("catalog.example", one, 1);
    set_targets("member.example", one, 1);
    ASSERT_ANSWER(bd_named_port(e), "version.catalog.example", "TXT", "\"2\"");
    char *st = dig_status(bd_named_port(e), "member.example", "SOA");
    assert_string_equal(st, "REFUSED"); /* not served yet */
    free(st);

    /* the member zone, then its catalog entry */
    apply_text("member.example", NULL,
               "@ IN SOA ns1 hostmaster 1 3600 600 86400 300\n"
               "@ IN NS ns1\n"
               "ns1 IN A 192.0.2.153\n"
               "www IN A 192.0.2.150\n");
    apply_text("catalog.example", NULL, "m1.zones IN PTR member.example.\n");
    char *last = NULL;
    if (!wait_answer(bd_named_port(e), "www.member.example", "A", "192.0.2.150", &last)) {
        print_log_tail(e);
        fail_msg("catalog member not served by named after %.0f s: got [%s]", WAIT_S, last);
    }
    free(last);
    /* a change to the member reaches it too */
    apply_text("member.example", "www IN A 192.0.2.150\n", "www IN A 192.0.2.151\n");
    ASSERT_ANSWER(bd_named_port(e), "www.member.example", "A", "192.0.2.151");

    /* out of the catalog: named drops the zone */
    apply_text("catalog.example", "m1.zones IN PTR member.example.\n", NULL);
    if (!wait_status(bd_named_port(e), "member.example", "SOA", "REFUSED")) {
        print_log_tail(e);
        fail_msg("named still serves member.example %.0f s after it left the catalog", WAIT_S);
    }
    assert_true(named_log_contains(e, "member.example"));
    bd_named_free(e);
    set_targets("catalog.example", NULL, 0);
    set_targets("member.example", NULL, 0);
}

/* Send a UDP datagram to our server; the answer (or "" after 1 s) into buf. */
static size_t udp_exchange(const void *msg, size_t len, uint8_t *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(bind_server_port(g_srv))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(sendto(fd, msg, len, 0, (struct sockaddr *)&sa, sizeof(sa)), (ssize_t)len);
    ssize_t r = -1;
    for (int i = 0; i < 20 && r < 0; i++) {
        pump(0.05);
        r = recv(fd, buf, cap, 0);
    }
    close(fd);
    return r < 0 ? 0 : (size_t)r;
}

static void test_malformed_input(void **state)
{
    uint8_t buf[4096];
    bind_server_stats_t before, after;
    bind_server_stats(g_srv, &before);

    /* too short: dropped */
    assert_int_equal(udp_exchange("\x12\x34\x00", 3, buf, sizeof(buf)), 0);
    /* header claims a question that is not there: FORMERR, id echoed */
    static const uint8_t hdr_only[12] = {0xab, 0xcd, 0x00, 0x00, 0x00, 0x01};
    size_t n = udp_exchange(hdr_only, sizeof(hdr_only), buf, sizeof(buf));
    assert_true(n >= 12);
    assert_int_equal(buf[0], 0xab);
    assert_int_equal(buf[1], 0xcd);
    assert_int_equal(buf[3] & 0x0f, LDNS_RCODE_FORMERR);
    /* a name with a compression loop */
    static const uint8_t loop_name[] = {0x11, 0x11, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
                                        0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c, 0x00, 0x06, 0x00, 0x01};
    n = udp_exchange(loop_name, sizeof(loop_name), buf, sizeof(buf));
    assert_true(n >= 12);
    assert_int_equal(buf[3] & 0x0f, LDNS_RCODE_FORMERR);
    /* a response (QR set) is never answered */
    static const uint8_t resp[12] = {0x22, 0x22, 0x80, 0x00};
    assert_int_equal(udp_exchange(resp, sizeof(resp), buf, sizeof(buf)), 0);
    /* random garbage, 200 times */
    srand(42);
    for (int i = 0; i < 200; i++) {
        uint8_t junk[256];
        size_t len = 12 + (size_t)(rand() % 200);
        for (size_t j = 0; j < len; j++)
            junk[j] = (uint8_t)rand();
        junk[2] &= 0x7f; /* a "query" */
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons(bind_server_port(g_srv))};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        (void)sendto(fd, junk, len, 0, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
        if (i % 20 == 0)
            pump(0.01);
    }
    pump(0.2);
    /* TCP: a length prefix over the cap closes the connection */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(bind_server_port(g_srv))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(write(fd, "\xff\xff", 2), 2);
    pump(0.3);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    char c;
    assert_int_equal(read(fd, &c, 1), 0); /* EOF */
    close(fd);
    bind_server_stats(g_srv, &after);
    assert_true(after.formerr >= before.formerr + 2);
    assert_true(after.dropped >= before.dropped + 3);
    /* still serving */
    char *st = dig_status(bind_server_port(g_srv), "example.com", "SOA");
    assert_string_equal(st, "NOERROR");
    free(st);
}

/* ---- without named: TSIG details over UDP, caps, NOTIFY retries ---- */

/* A query for zone/type signed with key_name and our secret (key_name NULL: unsigned).
 * ixfr_serial: for IXFR, the client serial. *mac gets the request MAC (or NULL). */
static uint8_t *make_query(const char *zone, ldns_rr_type type, uint32_t ixfr_serial,
                           const char *key_name, ldns_rdf **mac, size_t *len)
{
    ldns_rdf *qname = ldns_dname_new_frm_str(zone);
    ldns_pkt *q = ldns_pkt_query_new(qname, type, LDNS_RR_CLASS_IN, 0);
    assert_non_null(q);
    ldns_pkt_set_random_id(q);
    if (type == LDNS_RR_TYPE_IXFR) {
        ldns_rr *soa = NULL;
        char text[256];
        snprintf(text, sizeof(text), "%s 300 IN SOA ns1.%s hostmaster.%s %u 1 1 1 1", zone, zone,
                 zone, ixfr_serial);
        assert_int_equal(ldns_rr_new_frm_str(&soa, text, 300, NULL, NULL), LDNS_STATUS_OK);
        assert_true(ldns_pkt_push_rr(q, LDNS_SECTION_AUTHORITY, soa));
    }
    *mac = NULL;
    if (key_name != NULL) {
        assert_int_equal(ldns_pkt_tsig_sign(q, key_name, g_secret, 300, "hmac-sha256.", NULL),
                         LDNS_STATUS_OK);
        *mac = ldns_rdf_clone(ldns_rr_rdf(ldns_pkt_tsig(q), 3));
    }
    uint8_t *wire = NULL;
    assert_int_equal(ldns_pkt2wire(&wire, q, len), LDNS_STATUS_OK);
    ldns_pkt_free(q);
    return wire;
}

static void test_udp_transfer_queries(void **state)
{
    uint8_t buf[4096];
    ldns_rdf *mac = NULL;
    ldns_pkt *r = NULL;
    size_t len, n;
    uint8_t *q;

    /* IXFR over UDP: the current SOA alone, signed with the request MAC */
    q = make_query("example.com.", LDNS_RR_TYPE_IXFR, 1, "xfr.", &mac, &len);
    n = udp_exchange(q, len, buf, sizeof(buf));
    free(q);
    assert_true(n > 12);
    assert_int_equal(ldns_wire2pkt(&r, buf, n), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOERROR);
    assert_int_equal(ldns_pkt_ancount(r), 1);
    assert_int_equal(ldns_rr_get_type(ldns_rr_list_rr(ldns_pkt_answer(r), 0)), LDNS_RR_TYPE_SOA);
    assert_int_equal(ldns_rdf2native_int32(ldns_rr_rdf(ldns_rr_list_rr(ldns_pkt_answer(r), 0), 2)),
                     g_serial);
    assert_true(ldns_pkt_tsig_verify(r, buf, n, "xfr.", g_secret, mac));
    ldns_pkt_free(r);
    ldns_rdf_deep_free(mac);

    /* AXFR over UDP: FORMERR (RFC 5936: TCP only), still signed */
    q = make_query("example.com.", LDNS_RR_TYPE_AXFR, 0, "xfr.", &mac, &len);
    n = udp_exchange(q, len, buf, sizeof(buf));
    free(q);
    assert_int_equal(ldns_wire2pkt(&r, buf, n), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_FORMERR);
    assert_true(ldns_pkt_tsig_verify(r, buf, n, "xfr.", g_secret, mac));
    ldns_pkt_free(r);
    ldns_rdf_deep_free(mac);

    /* unsigned IXFR: REFUSED */
    q = make_query("example.com.", LDNS_RR_TYPE_IXFR, 1, NULL, &mac, &len);
    n = udp_exchange(q, len, buf, sizeof(buf));
    free(q);
    assert_int_equal(ldns_wire2pkt(&r, buf, n), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_REFUSED);
    assert_null(ldns_pkt_tsig(r));
    ldns_pkt_free(r);

    /* a key we do not know: NOTAUTH with TSIG error BADKEY, unsigned */
    q = make_query("example.com.", LDNS_RR_TYPE_SOA, 0, "other-key.", &mac, &len);
    n = udp_exchange(q, len, buf, sizeof(buf));
    free(q);
    assert_int_equal(ldns_wire2pkt(&r, buf, n), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOTAUTH);
    assert_non_null(ldns_pkt_tsig(r));
    assert_int_equal(ldns_rdf2native_int16(ldns_rr_rdf(ldns_pkt_tsig(r), 5)), 17 /* BADKEY */);
    ldns_pkt_free(r);
    ldns_rdf_deep_free(mac);

    /* a SOA query for a zone we do not serve: REFUSED */
    q = make_query("nothere.example.", LDNS_RR_TYPE_SOA, 0, NULL, &mac, &len);
    n = udp_exchange(q, len, buf, sizeof(buf));
    free(q);
    assert_int_equal(ldns_wire2pkt(&r, buf, n), LDNS_STATUS_OK);
    assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_REFUSED);
    ldns_pkt_free(r);
}

static int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

/* 0: closed by the server; 1: still open */
static int tcp_state(int fd)
{
    char c;
    ssize_t r = read(fd, &c, 1);
    if (r == 0 || (r < 0 && errno == ECONNRESET))
        return 0;
    return 1;
}

/* One whole TCP message from fd (non-blocking), pumping the loop meanwhile; its length. */
static size_t tcp_read_msg(int fd, uint8_t *buf, size_t cap)
{
    size_t have = 0, want = 2;
    uint8_t hdr[2];
    for (int i = 0; i < 500 && have < want; i++) {
        ssize_t r = want == 2 ? read(fd, hdr + have, 2 - have) : read(fd, buf + have, want - have);
        if (r > 0) {
            have += (size_t)r;
            if (want == 2 && have == 2) {
                want = (size_t)hdr[0] << 8 | hdr[1];
                assert_true(want <= cap);
                have = 0;
            }
            continue;
        }
        pump(0.01);
    }
    assert_int_equal(have, want);
    return have;
}

/* Two clients ask for the same transfer at once: the second gets the messages the first
 * had encoded (xfr_shared), each with its own ID and its own valid TSIG. */
static void test_same_transfer_shared(void **state)
{
    bind_server_stats_t before, after;
    bind_server_stats(g_srv, &before);
    int fd[2];
    ldns_rdf *mac[2];
    uint16_t id[2];
    for (int i = 0; i < 2; i++) {
        size_t len;
        uint8_t *q = make_query("example.com.", LDNS_RR_TYPE_AXFR, 0, "xfr.", &mac[i], &len);
        id[i] = LDNS_ID_WIRE(q);
        uint8_t *framed = malloc(len + 2);
        framed[0] = (uint8_t)(len >> 8);
        framed[1] = (uint8_t)len;
        memcpy(framed + 2, q, len);
        fd[i] = tcp_connect(bind_server_port(g_srv));
        assert_int_equal(write(fd[i], framed, len + 2), (ssize_t)(len + 2));
        free(framed);
        free(q);
    }
    char *texts[2];
    for (int i = 0; i < 2; i++) {
        static uint8_t buf[65536];
        size_t n = tcp_read_msg(fd[i], buf, sizeof(buf));
        ldns_pkt *r = NULL;
        assert_int_equal(ldns_wire2pkt(&r, buf, n), LDNS_STATUS_OK);
        assert_int_equal(ldns_pkt_id(r), id[i]);
        assert_int_equal(ldns_pkt_get_rcode(r), LDNS_RCODE_NOERROR);
        assert_true(ldns_pkt_tsig_verify(r, buf, n, "xfr.", g_secret, mac[i]));
        assert_true(ldns_pkt_ancount(r) >= 2);
        texts[i] = ldns_rr_list2str(ldns_pkt_answer(r));
        ldns_pkt_free(r);
        ldns_rdf_deep_free(mac[i]);
        close(fd[i]);
    }
    assert_string_equal(texts[0], texts[1]);
    free(texts[0]);
    free(texts[1]);
    pump(0.05);
    bind_server_stats(g_srv, &after);
    assert_true(after.xfr_shared >= before.xfr_shared + 1);
}

static void test_caps_and_notify_retries(void **state)
{
    bind_zonedb_t *db = NULL;
    bind_server_t *srv = NULL;
    bd_err_t err;
    assert_int_equal(bind_zonedb_new(&db, NULL), 0);
    bind_server_config_t cfg = {
        .address = "127.0.0.1",
        .xfr_key = &g_key,
        .serving = true,
        .max_clients = 2,
        .idle_timeout = 0.5,
        .notify_interval = 0.05,
        .notify_retries = 3,
    };
    if (bind_server_new(&srv, g_loop, db, &cfg, &err) != 0)
        fail_msg("second server: %s", err.msg);

    /* max_clients: the third connection is closed at once; idle ones later */
    int c1 = tcp_connect(bind_server_port(srv)), c2 = tcp_connect(bind_server_port(srv));
    pump(0.05);
    int c3 = tcp_connect(bind_server_port(srv));
    pump(0.1);
    assert_int_equal(tcp_state(c1), 1);
    assert_int_equal(tcp_state(c2), 1);
    assert_int_equal(tcp_state(c3), 0);
    pump(0.8);
    assert_int_equal(tcp_state(c1), 0);
    assert_int_equal(tcp_state(c2), 0);
    close(c1);
    close(c2);
    close(c3);

    /* NOTIFY to a target that never answers: 1 + 3 tries, backing off, then given up */
    int sink = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(sink, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    getsockname(sink, (struct sockaddr *)&sa, &sl);
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%u", ntohs(sa.sin_port));
    const char *targets[] = {target};
    assert_int_equal(bind_server_set_notify_targets(srv, NULL, targets, 1, &err), 0);
    const char *bad[] = {"127.0.0.1:99999"};
    assert_int_equal(bind_server_set_notify_targets(srv, NULL, bad, 1, &err), BD_EINVAL);

    ldns_rr_list *rrs = NULL;
    assert_int_equal(bind_zonedb_parse_rrs("@ IN SOA ns1 h 1 1 1 1 1\n@ IN NS ns1\n",
                                           "retry.example", 300, &rrs, &err),
                     0);
    assert_int_equal(bind_zonedb_apply(db, "retry.example", NULL, rrs, 1, &err), 0);
    ldns_rr_list_deep_free(rrs);
    int got = 0;
    uint16_t ids[8];
    double times[8];
    for (double end = ev_time() + 1.5; ev_time() < end;) {
        pump(0.01);
        uint8_t buf[2048];
        ssize_t r;
        while ((r = recv(sink, buf, sizeof(buf), 0)) > 0) {
            ldns_pkt *p = NULL;
            assert_int_equal(ldns_wire2pkt(&p, buf, (size_t)r), LDNS_STATUS_OK);
            assert_int_equal(ldns_pkt_get_opcode(p), LDNS_PACKET_NOTIFY);
            assert_true(ldns_pkt_aa(p));
            assert_true(ldns_pkt_tsig_verify(p, buf, (size_t)r, "xfr.", g_secret, NULL));
            if (got < 8) {
                ids[got] = ldns_pkt_id(p);
                times[got] = ev_time();
            }
            got++;
            ldns_pkt_free(p);
        }
    }
    bind_server_stats_t st;
    bind_server_stats(srv, &st);
    assert_int_equal(got, 4);
    assert_int_equal(st.notify_sent, 4);
    assert_int_equal(st.notify_failed, 1);
    assert_true(ids[1] != ids[0] || ids[2] != ids[1]); /* a fresh ID per try */
    assert_true(times[3] - times[2] > times[2] - times[1]); /* backing off */

    /* a change, and this time we answer: acknowledged, no more tries */
    rrs = NULL;
    assert_int_equal(bind_zonedb_parse_rrs("www IN A 192.0.2.1\n", "retry.example", 300, &rrs,
                                           &err),
                     0);
    assert_int_equal(bind_zonedb_apply(db, "retry.example", NULL, rrs, 2, &err), 0);
    ldns_rr_list_deep_free(rrs);
    got = 0;
    for (double end = ev_time() + 1.0; ev_time() < end;) {
        pump(0.01);
        uint8_t buf[2048];
        struct sockaddr_in from;
        socklen_t flen = sizeof(from);
        ssize_t r;
        while ((r = recvfrom(sink, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen)) > 0) {
            ldns_pkt *p = NULL, *ack = ldns_pkt_new();
            assert_int_equal(ldns_wire2pkt(&p, buf, (size_t)r), LDNS_STATUS_OK);
            ldns_pkt_set_id(ack, ldns_pkt_id(p));
            ldns_pkt_set_qr(ack, true);
            ldns_pkt_set_aa(ack, true);
            ldns_pkt_set_opcode(ack, LDNS_PACKET_NOTIFY);
            ldns_pkt_push_rr(ack, LDNS_SECTION_QUESTION,
                             ldns_rr_clone(ldns_rr_list_rr(ldns_pkt_question(p), 0)));
            assert_int_equal(ldns_pkt_tsig_sign(ack, "xfr.", g_secret, 300, "hmac-sha256.",
                                                ldns_rr_rdf(ldns_pkt_tsig(p), 3)),
                             LDNS_STATUS_OK);
            uint8_t *wire = NULL;
            size_t wlen = 0;
            assert_int_equal(ldns_pkt2wire(&wire, ack, &wlen), LDNS_STATUS_OK);
            sendto(sink, wire, wlen, 0, (struct sockaddr *)&from, flen);
            free(wire);
            ldns_pkt_free(ack);
            ldns_pkt_free(p);
            got++;
        }
    }
    bind_server_stats(srv, &st);
    assert_int_equal(got, 1);
    assert_int_equal(st.notify_acked, 1);
    close(sink);
    bind_server_free(srv);
    bind_zonedb_free(db);
}

/* ---- 11. rendered configurations: NOTIFY from a primary pod to a secondary ---- */

#define RC_NS "dns-system"
#define RC_CAT_P "primary-dns.dns-system.catalog.bindy.invalid"
#define RC_CAT_S "secondary-dns.dns-system.catalog.bindy.invalid"
#define RC_ZONE "notify.example"
/* the primary's NOTIFYs leave from here, its transfers are served at 127.0.0.1: as a pod
 * address and its Service's address differ */
#define RC_POD_ADDR "127.0.0.3"

static res_t *rc_instance(const char *name, const char *role)
{
    json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:{s:s, s:i}}", "apiVersion",
                          "bindy.firestoned.io/v1beta1", "kind", "Bind9Instance", "metadata", "name", name,
                          "namespace", RC_NS, "uid", name, "spec", "role", role, "replicas", 2);
    assert_non_null(o);
    res_t *r = NULL;
    bd_err_t err;
    if (res_from_json(o, &r, &err) != 0)
        fail_msg("instance %s: %s", name, err.msg);
    json_decref(o);
    return r;
}

/* named.conf as the workload renders it (src/workload/workload.c's parameters) with the
 * harness's directory and ports; keys.conf beside it. */
static char *rc_conf_rndc(bd_named_t *n, const res_t *inst, const char *catalog, const bind_endpoint_t *up,
                          size_t nup, const bind_endpoint_t *down, size_t ndown, const char *xfr_b64,
                          const char *rndc_b64)
{
    char keys_path[512];
    snprintf(keys_path, sizeof(keys_path), "%s/keys.conf", bd_named_dir(n));
    bind_render_params_t prm = {
        .directory = bd_named_dir(n), .keys_file = keys_path, .listen_v4 = "any", .listen_v6 = "any",
        .port = bd_named_port(n), .control_addr = "*", .control_allow = "any",
        .control_port = bd_named_ctl_port(n), .catalog = catalog, .upstream = up, .nupstream = nup, .notify = down,
        .nnotify = ndown, .zone_files = true,
    };
    char *conf = NULL, *keys = NULL;
    bd_err_t err;
    if (bind_render_named_conf(inst, NULL, &prm, &conf, &err) != 0 ||
        bind_render_keys("hmac-sha256", xfr_b64, "hmac-sha256", rndc_b64, &keys, &err) != 0 ||
        bd_named_write_file(n, "keys.conf", keys, &err) != 0)
        fail_msg("render %s: %s", inst->meta.name, err.msg);
    free(keys);
    return conf;
}

static char *rc_conf(bd_named_t *n, const res_t *inst, const char *catalog, const bind_endpoint_t *up,
                     size_t nup, const bind_endpoint_t *down, size_t ndown, const char *xfr_b64)
{
    return rc_conf_rndc(n, inst, catalog, up, nup, down, ndown, xfr_b64, xfr_b64);
}

/* conf with `what` inserted after "options {\n" (test-only stand-ins). */
static char *rc_with_option(char *conf, const char *what)
{
    const char *at = strstr(conf, "options {\n");
    assert_non_null(at);
    size_t head = (size_t)(at - conf) + strlen("options {\n");
    char *out = NULL;
    assert_true(asprintf(&out, "%.*s%s%s", (int)head, conf, what, conf + head) > 0);
    free(conf);
    return out;
}

static void rc_start(bd_named_t *n, const char *what, const char *conf)
{
    bd_err_t err;
    int rc = bd_named_start(n, conf, 30.0, &err);
    if (rc != 0)
        fail_msg("FATAL: could not start named (%s) as rendered: %s (%s)\n%s", what, err.msg, bd_strerror(rc),
                 conf);
}

static double rc_wait_name(bd_named_t *n, const char *name, const char *want, double timeout)
{
    double t0 = ev_time(), end = t0 + timeout;
    for (;;) {
        char *got = dig(bd_named_port(n), name, "A", NULL);
        bool ok = strcmp(got, want) == 0;
        free(got);
        if (ok)
            return ev_time() - t0;
        if (ev_time() > end)
            return -1;
        pump(0.02);
    }
}

static double rc_wait_answer(bd_named_t *n, const char *want, double timeout)
{
    return rc_wait_name(n, "www." RC_ZONE, want, timeout);
}

static void test_rendered_notify_chain(void **state)
{
    bd_err_t err;
    /* bindy's hidden primary with the transfer key under the name the renderer uses */
    bind_server_key_t key;
    char xfr_b64[128];
    assert_int_equal(bind_server_key_generate(&key, BIND_XFR_KEY_NAME, BIND_SERVER_HMAC_SHA256), 0);
    assert_int_equal(bind_server_key_b64(&key, xfr_b64, sizeof(xfr_b64)), 0);
    bind_server_t *hp = NULL;
    bind_server_config_t cfg = {.address = "127.0.0.1", .xfr_key = &key, .serving = true,
                                .notify_interval = 0.5, .notify_retries = 4};
    if (bind_server_new(&hp, g_loop, g_db, &cfg, &err) != 0)
        fail_msg("server: %s", err.msg);
    /* the projector's catalogs: the primary's lists the zone and the secondary's catalog */
    static const char cat_head[] = "@ IN SOA invalid. invalid. 1 3600 600 86400 300\n@ IN NS invalid.\n"
                                   "version IN TXT \"2\"\n";
    char text[512];
    snprintf(text, sizeof(text), "%sm1.zones IN PTR " RC_ZONE ".\nm2.zones IN PTR " RC_CAT_S ".\n", cat_head);
    apply_text(RC_CAT_P, NULL, text);
    snprintf(text, sizeof(text), "%sm1.zones IN PTR " RC_ZONE ".\n", cat_head);
    apply_text(RC_CAT_S, NULL, text);
    /* refresh 3600: only a NOTIFY brings a change within the test */
    apply_text(RC_ZONE, NULL, "@ IN SOA ns1 hostmaster 1 3600 3600 86400 300\n@ IN NS ns1\n"
                              "ns1 IN A 192.0.2.53\nwww IN A 192.0.2.1\n");

    bd_named_t *p = NULL, *s1 = NULL, *s2 = NULL;
    assert_int_equal(bd_named_new(&p, &err), 0);
    assert_int_equal(bd_named_new(&s1, &err), 0);
    assert_int_equal(bd_named_new(&s2, &err), 0);
    res_t *prim = rc_instance("primary-dns", "primary"), *sec = rc_instance("secondary-dns", "secondary");
    bind_endpoint_t hp_ep = {"127.0.0.1", bind_server_port(hp)};
    bind_endpoint_t down[] = {{"127.0.0.1", bd_named_port(s1)}, {"127.0.0.1", bd_named_port(s2)}};
    /* a secondary pulls from its primary, and from bindy when the primary cannot serve */
    bind_endpoint_t s_up[] = {{"127.0.0.1", bd_named_port(p)}, hp_ep};
    char *pconf = rc_conf(p, prim, RC_CAT_P, &hp_ep, 1, down, 2, xfr_b64);
    pconf = rc_with_option(pconf, "    notify-source " RC_POD_ADDR ";\n");
    char *sconf = rc_conf(s1, sec, RC_CAT_S, s_up, 2, NULL, 0, xfr_b64);
    assert_non_null(strstr(sconf, "allow-notify { key \"" BIND_XFR_KEY_NAME "\"; 127.0.0.1; };"));
    /* the second secondary as rendered before: addresses only */
    char *oconf = rc_conf(s2, sec, RC_CAT_S, s_up, 2, NULL, 0, xfr_b64);
    static const char signed_ok[] = " key \"" BIND_XFR_KEY_NAME "\";";
    char *k = strstr(oconf, "allow-notify {");
    assert_non_null(k);
    k += strlen("allow-notify {");
    assert_memory_equal(k, signed_ok, strlen(signed_ok));
    memmove(k, k + strlen(signed_ok), strlen(k + strlen(signed_ok)) + 1);

    const char *zones[] = {RC_CAT_P, RC_CAT_S, RC_ZONE};
    char target[64];
    snprintf(target, sizeof(target), "127.0.0.1:%u", bd_named_port(p));
    const char *targets[] = {target};
    for (size_t i = 0; i < sizeof(zones) / sizeof(*zones); i++)
        if (bind_server_set_notify_targets(hp, zones[i], targets, 1, &err) != 0)
            fail_msg("notify targets: %s", err.msg);
    rc_start(p, "primary", pconf);
    if (rc_wait_answer(p, "192.0.2.1", WAIT_S) < 0) {
        print_log_tail(p);
        fail_msg("the rendered primary never served " RC_ZONE);
    }
    /* the secondaries' catalog must be on the primary before they start */
    ASSERT_ANSWER(bd_named_port(p), "version." RC_CAT_S, "TXT", "\"2\"");
    rc_start(s1, "secondary", sconf);
    rc_start(s2, "secondary, old allow-notify", oconf);
    for (bd_named_t **n = (bd_named_t *[]){s1, s2, NULL}; *n; n++)
        if (rc_wait_answer(*n, "192.0.2.1", WAIT_S) < 0) {
            print_log_tail(*n);
            fail_msg("a rendered secondary never served " RC_ZONE);
        }

    /* the change: bindy -> primary (NOTIFY, IXFR) -> secondary (signed NOTIFY) */
    apply_text(RC_ZONE, "www IN A 192.0.2.1\n", "www IN A 192.0.2.2\n");
    double tp = rc_wait_answer(p, "192.0.2.2", WAIT_S);
    if (tp < 0) {
        print_log_tail(p);
        fail_msg("the rendered primary did not get the change");
    }
    double ts = rc_wait_answer(s1, "192.0.2.2", 1.0);
    if (ts < 0) {
        print_log_tail(s1);
        fail_msg("the secondary did not get the change within 1 s of its primary (refresh is 3600 s)");
    }
    print_message("change on the primary after %.3f s, on the secondary %.3f s later\n", tp, ts);
    assert_true(named_log_contains(s1, "notify from " RC_POD_ADDR));
    /* without the key, the NOTIFY from the pod address is refused: still the old data */
    pump(1.0);
    char *old = dig(bd_named_port(s2), "www." RC_ZONE, "A", NULL);
    assert_string_equal(old, "192.0.2.1");
    free(old);
    assert_true(named_log_contains(s2, "refused notify from non-primary"));

    free(pconf);
    free(sconf);
    free(oconf);
    res_free(prim);
    res_free(sec);
    bd_named_free(p);
    bd_named_free(s1);
    bd_named_free(s2);
    bind_server_free(hp);
    bind_server_key_wipe(&key);
}

/* ---- 12. rndc at a pod's address; 13. IXFR from bindy through a primary ---- */

/* what stands in for a pod's own address (rdy dials the EndpointSlice's address) */
#define RC_RNDC_ADDR "127.0.0.2"

/* bindy's hidden primary with the transfer key under the renderer's name. */
static bind_server_t *rc_hidden_primary(bind_server_key_t *key, char *xfr_b64, size_t cap)
{
    bd_err_t err;
    assert_int_equal(bind_server_key_generate(key, BIND_XFR_KEY_NAME, BIND_SERVER_HMAC_SHA256), 0);
    assert_int_equal(bind_server_key_b64(key, xfr_b64, cap), 0);
    bind_server_t *hp = NULL;
    bind_server_config_t cfg = {.address = "127.0.0.1", .xfr_key = key, .serving = true,
                                .notify_interval = 0.5, .notify_retries = 4};
    if (bind_server_new(&hp, g_loop, g_db, &cfg, &err) != 0)
        fail_msg("server: %s", err.msg);
    return hp;
}

/* A catalog (RFC 9432) listing members, which bindy serves and notifies to target. */
static void rc_catalog(bind_server_t *hp, const char *catalog, const char *const *members, size_t n,
                       bd_named_t *target)
{
    char text[1024];
    int off = snprintf(text, sizeof(text), "@ IN SOA invalid. invalid. 1 3600 600 86400 300\n@ IN NS invalid.\n"
                                           "version IN TXT \"2\"\n");
    for (size_t i = 0; i < n; i++)
        off += snprintf(text + off, sizeof(text) - (size_t)off, "m%zu.zones IN PTR %s.\n", i, members[i]);
    apply_text(catalog, NULL, text);
    char t[64];
    snprintf(t, sizeof(t), "127.0.0.1:%u", bd_named_port(target));
    const char *targets[] = {t};
    bd_err_t err;
    if (bind_server_set_notify_targets(hp, catalog, targets, 1, &err) != 0)
        fail_msg("notify targets: %s", err.msg);
}

/* A primary and a secondary (not started) and the projector's catalogs for one zone: the
 * primary's lists the zone and the secondary's catalog, the secondary's the zone; bindy
 * notifies both catalogs to the primary. */
static void rc_pair(bind_server_t *hp, const char *zone, const char *cat_p, const char *cat_s, bd_named_t **p,
                    bd_named_t **s)
{
    bd_err_t err;
    assert_int_equal(bd_named_new(p, &err), 0);
    assert_int_equal(bd_named_new(s, &err), 0);
    const char *pm[] = {zone, cat_s}, *sm[] = {zone};
    rc_catalog(hp, cat_p, pm, 2, *p);
    rc_catalog(hp, cat_s, sm, 1, *p);
}

static int rndc_at(bd_named_t *n, const char *secret_b64, const char *cmd, uint32_t *result, char *msg, size_t cap)
{
    bind_rndc_config_t cfg = {.host = RC_RNDC_ADDR, .port = bd_named_ctl_port(n), .key_name = BIND_RNDC_KEY_NAME,
                              .alg = BIND_RNDC_HMAC_SHA256, .secret_b64 = secret_b64, .timeout = 5.0};
    bind_rndc_result_t res;
    bd_err_t err;
    bd_err_clear(&err);
    int rc = bind_rndc_command_sync(&cfg, cmd, &res, &err);
    snprintf(msg, cap, "%s", rc == 0 ? (res.err ? res.err : res.text) : err.msg);
    *result = rc == 0 ? res.result : BIND_RNDC_R_UNKNOWN;
    if (rc == 0)
        bind_rndc_result_deinit(&res);
    return rc;
}

/* Lines of n's named.log that contain both a and b. */
static int log_count(bd_named_t *n, const char *a, const char *b)
{
    char path[512], line[4096];
    snprintf(path, sizeof(path), "%s/named.log", bd_named_dir(n));
    FILE *f = fopen(path, "r");
    int c = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        c += strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL);
    if (f != NULL)
        fclose(f);
    return c;
}

#define RC_RNDC_ZONE "rndc.example"
#define RC_RNDC_CAT "primary-rndc.dns-system.catalog.bindy.invalid"

/* The cluster's control channel as rendered: bindy's readiness, elsewhere in the cluster,
 * dials the pod's address with the instance's rndc key; any other key is turned away. */
static void test_rendered_rndc_at_pod_address(void **state)
{
    bd_err_t err;
    bind_server_key_t key, rkey;
    char xfr_b64[128], rndc_b64[128];
    bind_server_t *hp = rc_hidden_primary(&key, xfr_b64, sizeof(xfr_b64));
    assert_int_equal(bind_server_key_generate(&rkey, BIND_RNDC_KEY_NAME, BIND_SERVER_HMAC_SHA256), 0);
    assert_int_equal(bind_server_key_b64(&rkey, rndc_b64, sizeof(rndc_b64)), 0);
    bind_server_key_wipe(&rkey);
    apply_text(RC_RNDC_ZONE, NULL, "@ IN SOA ns1 hostmaster 1 3600 3600 86400 300\n@ IN NS ns1\n"
                                   "ns1 IN A 192.0.2.53\nwww IN A 192.0.2.1\n");
    bd_named_t *p = NULL;
    assert_int_equal(bd_named_new(&p, &err), 0);
    const char *members[] = {RC_RNDC_ZONE};
    rc_catalog(hp, RC_RNDC_CAT, members, 1, p);
    res_t *prim = rc_instance("primary-rndc", "primary");
    bind_endpoint_t hp_ep = {"127.0.0.1", bind_server_port(hp)};
    char *conf = rc_conf_rndc(p, prim, RC_RNDC_CAT, &hp_ep, 1, NULL, 0, xfr_b64, rndc_b64);
    assert_non_null(strstr(conf, "inet * port"));
    rc_start(p, "primary, rndc", conf);
    if (rc_wait_name(p, "www." RC_RNDC_ZONE, "192.0.2.1", WAIT_S) < 0) {
        print_log_tail(p);
        fail_msg("the rendered primary never served " RC_RNDC_ZONE);
    }

    /* the instance's key: named runs it, and pulls the whole zone again from bindy */
    bind_server_stats_t before, after;
    bind_server_stats(hp, &before);
    uint32_t result = 0;
    char msg[512];
    int rc = rndc_at(p, rndc_b64, "retransfer " RC_RNDC_ZONE, &result, msg, sizeof(msg));
    if (rc != 0 || result != BIND_RNDC_R_SUCCESS) {
        print_log_tail(p);
        fail_msg("rndc retransfer at " RC_RNDC_ADDR ": %s (%s, result %u)", msg, bd_strerror(rc), result);
    }
    for (double end = ev_time() + WAIT_S; ev_time() < end;) {
        pump(0.1);
        bind_server_stats(hp, &after);
        if (after.axfr > before.axfr && after.xfr_done > before.xfr_done)
            break;
    }
    assert_true(after.axfr > before.axfr);
    assert_true(named_log_contains(p, "received control channel command 'retransfer " RC_RNDC_ZONE "'"));

    /* another key (the transfer key, which named also knows): the connection is dropped */
    rc = rndc_at(p, xfr_b64, "retransfer " RC_RNDC_ZONE, &result, msg, sizeof(msg));
    print_message("rndc with another key: %s (%s)\n", msg, bd_strerror(rc));
    assert_int_equal(rc, BD_EAUTH);
    bind_server_stats_t later;
    pump(0.5);
    bind_server_stats(hp, &later);
    assert_int_equal(later.axfr, after.axfr);
    assert_int_equal(log_count(p, "invalid command from", "bad auth"), 1);

    free(conf);
    res_free(prim);
    bd_named_free(p);
    bind_server_set_notify_targets(hp, RC_RNDC_CAT, NULL, 0, &err);
    bind_server_free(hp);
    bind_server_key_wipe(&key);
}

#define RC_IXFR_ZONE "ixfr.example"
#define RC_IXFR_CAT_P "primary-ixfr.dns-system.catalog.bindy.invalid"
#define RC_IXFR_CAT_S "secondary-ixfr.dns-system.catalog.bindy.invalid"
#define RC_IXFR_BULK 300

/* The outgoing transfers of zone that n logged, by kind. */
static void xfrout_counts(bd_named_t *n, const char *zone, int *ixfr, int *axfr)
{
    char tag[300];
    snprintf(tag, sizeof(tag), "transfer of '%s/IN': IXFR started", zone);
    *ixfr = log_count(n, tag, NULL);
    snprintf(tag, sizeof(tag), "transfer of '%s/IN': AXFR", zone); /* AXFR and AXFR-style IXFR */
    *axfr = log_count(n, tag, " started");
}

/* Files named keeps for catalog member zones (zone files and journals) in n's directory. */
static int catz_files(bd_named_t *n)
{
    DIR *d = opendir(bd_named_dir(n));
    assert_non_null(d);
    int c = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        c += strncmp(e->d_name, "__catz__", 8) == 0;
    closedir(d);
    return c;
}

/* A change bindy makes reaches the secondary by IXFR at every hop: bindy -> primary (bindy
 * serves IXFR), primary -> secondary (the primary keeps a journal of its catalog's member
 * zones), also after bindy lost its history (a restart: the primary gets the whole zone
 * and computes the difference itself, ixfr-from-differences). Rendered with in-memory
 * catalog members, the same run logs 0 IXFR and 4 AXFR-style IXFRs; with files but
 * without ixfr-from-differences, 3 and 1. */
static void test_rendered_chain_ixfr(void **state)
{
    bd_err_t err;
    bind_server_key_t key;
    char xfr_b64[128];
    bind_server_t *hp = rc_hidden_primary(&key, xfr_b64, sizeof(xfr_b64));
    size_t cap = 256 + RC_IXFR_BULK * 48;
    char *zone = malloc(cap);
    assert_non_null(zone);
    int off = snprintf(zone, cap, "@ IN SOA ns1 hostmaster 1 3600 3600 86400 300\n@ IN NS ns1\n"
                                  "ns1 IN A 192.0.2.53\nwww IN A 192.0.2.1\n");
    for (unsigned i = 0; i < RC_IXFR_BULK; i++)
        off += snprintf(zone + off, cap - (size_t)off, "bulk%u IN A 10.1.%u.%u\n", i, i / 256, i % 256);
    apply_text(RC_IXFR_ZONE, NULL, zone);

    bd_named_t *p = NULL, *s = NULL;
    rc_pair(hp, RC_IXFR_ZONE, RC_IXFR_CAT_P, RC_IXFR_CAT_S, &p, &s);
    char t[64];
    snprintf(t, sizeof(t), "127.0.0.1:%u", bd_named_port(p));
    const char *targets[] = {t};
    if (bind_server_set_notify_targets(hp, RC_IXFR_ZONE, targets, 1, &err) != 0)
        fail_msg("notify targets: %s", err.msg);
    res_t *prim = rc_instance("primary-ixfr", "primary"), *sec = rc_instance("secondary-ixfr", "secondary");
    bind_endpoint_t hp_ep = {"127.0.0.1", bind_server_port(hp)};
    bind_endpoint_t down[] = {{"127.0.0.1", bd_named_port(s)}};
    bind_endpoint_t s_up[] = {{"127.0.0.1", bd_named_port(p)}, hp_ep};
    char *pconf = rc_conf(p, prim, RC_IXFR_CAT_P, &hp_ep, 1, down, 1, xfr_b64);
    char *sconf = rc_conf(s, sec, RC_IXFR_CAT_S, s_up, 2, NULL, 0, xfr_b64);
    rc_start(p, "primary", pconf);
    if (rc_wait_name(p, "www." RC_IXFR_ZONE, "192.0.2.1", WAIT_S) < 0) {
        print_log_tail(p);
        fail_msg("the rendered primary never served " RC_IXFR_ZONE);
    }
    ASSERT_ANSWER(bd_named_port(p), "version." RC_IXFR_CAT_S, "TXT", "\"2\"");
    rc_start(s, "secondary", sconf);
    if (rc_wait_name(s, "www." RC_IXFR_ZONE, "192.0.2.1", WAIT_S) < 0) {
        print_log_tail(s);
        fail_msg("the rendered secondary never served " RC_IXFR_ZONE);
    }

    int ixfr0, axfr0, ixfr, axfr;
    xfrout_counts(p, RC_IXFR_ZONE, &ixfr0, &axfr0);
    char old[32] = "192.0.2.1", want[32];
    const int changes = 3;
    for (int i = 0; i <= changes; i++) {
        bind_server_stats_t before, after;
        bind_server_stats(hp, &before);
        snprintf(want, sizeof(want), "192.0.2.%d", i + 2);
        char rm[64], add[64];
        snprintf(rm, sizeof(rm), "www IN A %s\n", old);
        snprintf(add, sizeof(add), "www IN A %s\n", want);
        if (i == changes) {
            /* bindy restarted: the zone as it is, without the history that makes an IXFR */
            uint32_t serial = 0;
            assert_int_equal(bind_zonedb_serial(g_db, RC_IXFR_ZONE, &serial), 0);
            assert_int_equal(bind_zonedb_remove(g_db, RC_IXFR_ZONE), 0);
            char *w = strstr(zone, "www IN A 192.0.2.1\n");
            assert_non_null(w);
            memcpy(w, add, strlen(add)); /* same length: the last octet is one digit */
            ldns_rr_list *rrs = NULL;
            if (bind_zonedb_parse_rrs(zone, RC_IXFR_ZONE, 300, &rrs, &err) != 0)
                fail_msg("zone: %s", err.msg);
            assert_int_equal(bind_zonedb_apply(g_db, RC_IXFR_ZONE, NULL, rrs, serial + 1, &err), 0);
            ldns_rr_list_deep_free(rrs);
            assert_int_equal(bind_server_notify(hp, RC_IXFR_ZONE), 0);
        } else {
            apply_text(RC_IXFR_ZONE, rm, add);
        }
        if (rc_wait_name(p, "www." RC_IXFR_ZONE, want, WAIT_S) < 0 ||
            rc_wait_name(s, "www." RC_IXFR_ZONE, want, WAIT_S) < 0) {
            print_log_tail(p);
            print_log_tail(s);
            fail_msg("change %d did not reach the secondary", i);
        }
        bind_server_stats(hp, &after);
        print_message("change %d: bindy served %s\n", i,
                      after.ixfr > before.ixfr         ? "IXFR"
                      : after.ixfr_axfr > before.ixfr_axfr ? "the whole zone for an IXFR"
                                                           : "?");
        snprintf(old, sizeof(old), "%s", want);
    }
    xfrout_counts(p, RC_IXFR_ZONE, &ixfr, &axfr);
    print_message("primary -> secondary: %d IXFR, %d whole-zone transfers for %d changes\n", ixfr - ixfr0,
                  axfr - axfr0, changes + 1);
    if (ixfr - ixfr0 != changes + 1 || axfr != axfr0) {
        print_log_tail(p);
        fail_msg("the primary sent %d IXFRs and %d AXFRs for %d changes", ixfr - ixfr0, axfr - axfr0, changes + 1);
    }

    /* a restart while bindy refuses everything: the zone comes back from its file */
    bind_server_set_serving(hp, false);
    int rc = bd_named_restart(p, 30.0, &err);
    if (rc != 0)
        fail_msg("restart: %s (%s)", err.msg, bd_strerror(rc));
    if (rc_wait_name(p, "www." RC_IXFR_ZONE, want, WAIT_S) < 0) {
        print_log_tail(p);
        fail_msg("the restarted primary did not serve " RC_IXFR_ZONE " from its file");
    }
    bind_server_set_serving(hp, true);

    /* out of the catalogs: named removes the zone and its files, so a zone created again
     * under that name starts from bindy's data, not from an old file */
    assert_int_equal(catz_files(s), 2); /* its only member: the zone and its journal */
    apply_text(RC_IXFR_CAT_P, "m0.zones IN PTR " RC_IXFR_ZONE ".\n", NULL);
    apply_text(RC_IXFR_CAT_S, "m0.zones IN PTR " RC_IXFR_ZONE ".\n", NULL);
    if (!wait_status(bd_named_port(p), RC_IXFR_ZONE, "SOA", "REFUSED") ||
        !wait_status(bd_named_port(s), RC_IXFR_ZONE, "SOA", "REFUSED"))
        fail_msg(RC_IXFR_ZONE " still served after it left the catalogs");
    for (double end = ev_time() + WAIT_S; catz_files(s) != 0 && ev_time() < end;)
        pump(0.1);
    assert_int_equal(catz_files(s), 0);

    free(zone);
    free(pconf);
    free(sconf);
    res_free(prim);
    res_free(sec);
    bd_named_free(p);
    bd_named_free(s);
    const char *zs[] = {RC_IXFR_ZONE, RC_IXFR_CAT_P, RC_IXFR_CAT_S};
    for (size_t i = 0; i < 3; i++)
        bind_server_set_notify_targets(hp, zs[i], NULL, 0, &err);
    bind_server_free(hp);
    bind_server_key_wipe(&key);
}

/* ---- 14. a secondary whose primary cannot serve a zone pulls it from bindy ---- */

#define RC_FB_ZONE "fallback.example"
#define RC_FB_CAT_P "primary-fb.dns-system.catalog.bindy.invalid"
#define RC_FB_CAT_S "secondary-fb.dns-system.catalog.bindy.invalid"

/* A cold start's race, held still: the secondary's catalog lists a zone that its primary
 * has not loaded, so the primary answers SERVFAIL for it (and for the secondary's catalog).
 * Rendered as bindy renders secondaries, with bindy after the primary, the secondary asks
 * its primary, then bindy, and serves at once; with the primary alone it would wait for
 * named's next refresh of a zone that never loaded, a minute or more. */
static void test_rendered_secondary_falls_back(void **state)
{
    bd_err_t err;
    bind_server_key_t key;
    char xfr_b64[128];
    bind_server_t *hp = rc_hidden_primary(&key, xfr_b64, sizeof(xfr_b64));
    apply_text(RC_FB_ZONE, NULL, "@ IN SOA ns1 hostmaster 1 3600 3600 86400 300\n@ IN NS ns1\n"
                                 "ns1 IN A 192.0.2.53\nwww IN A 192.0.2.9\n");
    bd_named_t *p = NULL, *s = NULL;
    rc_pair(hp, RC_FB_ZONE, RC_FB_CAT_P, RC_FB_CAT_S, &p, &s);
    res_t *prim = rc_instance("primary-fb", "primary"), *sec = rc_instance("secondary-fb", "secondary");
    bind_endpoint_t hp_ep = {"127.0.0.1", bind_server_port(hp)};
    bind_endpoint_t s_up[] = {{"127.0.0.1", bd_named_port(p)}, hp_ep};
    char *pconf = rc_conf(p, prim, RC_FB_CAT_P, &hp_ep, 1, NULL, 0, xfr_b64);
    char *sconf = rc_conf(s, sec, RC_FB_CAT_S, s_up, 2, NULL, 0, xfr_b64);
    /* the primary's members from a port nobody listens on: it loads its catalog from bindy,
     * never the zones the catalog lists */
    uint16_t dead = 0;
    assert_int_equal(bd_named_free_port(&dead, &err), 0);
    char from[32], to[32], *held = NULL;
    snprintf(from, sizeof(from), " port %u ", hp_ep.port);
    snprintf(to, sizeof(to), " port %u ", dead);
    const char *dp = strstr(pconf, "default-primaries {"), *at = dp ? strstr(dp, from) : NULL;
    assert_non_null(at);
    assert_true(asprintf(&held, "%.*s%s%s", (int)(at - pconf), pconf, to, at + strlen(from)) > 0);

    rc_start(p, "primary, its members unreachable", held);
    ASSERT_ANSWER(bd_named_port(p), "version." RC_FB_CAT_P, "TXT", "\"2\"");
    if (!wait_status(bd_named_port(p), RC_FB_ZONE, "SOA", "SERVFAIL") ||
        !wait_status(bd_named_port(p), RC_FB_CAT_S, "SOA", "SERVFAIL"))
        fail_msg("the primary was to hold " RC_FB_ZONE " and the secondary's catalog unloaded");
    rc_start(s, "secondary", sconf);
    double t = rc_wait_name(s, "www." RC_FB_ZONE, "192.0.2.9", WAIT_S);
    if (t < 0) {
        print_log_tail(s);
        fail_msg("the secondary did not get " RC_FB_ZONE " from bindy when its primary could not serve it");
    }
    print_message("the secondary served " RC_FB_ZONE " %.3f s after it started\n", t);
    /* it asked its primary first, for its catalog and for the zone */
    char refused[96];
    snprintf(refused, sizeof(refused), "unexpected rcode (SERVFAIL) from primary 127.0.0.1#%u", bd_named_port(p));
    if (log_count(s, refused, RC_FB_CAT_S) < 1 || log_count(s, refused, RC_FB_ZONE) < 1) {
        print_log_tail(s);
        fail_msg("the secondary's log does not show the primary's SERVFAIL for both zones");
    }

    free(held);
    free(pconf);
    free(sconf);
    res_free(prim);
    res_free(sec);
    bd_named_free(p);
    bd_named_free(s);
    const char *zs[] = {RC_FB_CAT_P, RC_FB_CAT_S};
    for (size_t i = 0; i < 2; i++)
        bind_server_set_notify_targets(hp, zs[i], NULL, 0, &err);
    bind_server_free(hp);
    bind_server_key_wipe(&key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_secondaries_transfer),
        cmocka_unit_test(test_change_goes_by_ixfr),
        cmocka_unit_test(test_delete_goes),
        cmocka_unit_test(test_fresh_named_fills_itself),
        cmocka_unit_test(test_wrong_key_refused),
        cmocka_unit_test(test_not_serving_refuses),
        cmocka_unit_test(test_catalog_zone),
        cmocka_unit_test(test_malformed_input),
        cmocka_unit_test(test_udp_transfer_queries),
        cmocka_unit_test(test_same_transfer_shared),
        cmocka_unit_test(test_caps_and_notify_retries),
        cmocka_unit_test(test_rendered_notify_chain),
        cmocka_unit_test(test_rendered_rndc_at_pod_address),
        cmocka_unit_test(test_rendered_chain_ixfr),
        cmocka_unit_test(test_rendered_secondary_falls_back),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
