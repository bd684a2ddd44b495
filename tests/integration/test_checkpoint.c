/*
 * test_checkpoint.c - start-up from the projector's checkpoint, through the applier, on a
 * real journal; what is served checked with a real named pulling from the hidden primary.
 *
 *  - a node applies a stream (the examples, conflicts, an invalid version), writes a
 *    checkpoint every 10 events, applies three more; a "restarted" node (new projector,
 *    zone store and applier on the same journal) restores, replays only those three,
 *    and its zone store holds exactly what the first one held (serials and every RR); a
 *    named secondary transfers example.com from the restarted node and answers with the
 *    new address and serial;
 *  - a snapshot copied from another journal, and one the projector cannot read, are
 *    ignored: the restart replays everything and ends in the same state;
 *  - a pruned journal (its events up to a checkpoint are gone, its snapshot older than
 *    that) starts from the journal's checkpoint and replays the rest;
 *  - a due checkpoint is captured when it falls due but written only once the applier
 *    has been idle for a second: not while events keep coming, then at the seq of the
 *    capture; a shutdown (app_checkpoint with wait) cuts the wait short;
 *  - a bad BINDY_PROJECTOR_CHECKPOINT_EVENTS is refused, naming the variable.
 * Every wait is bounded.
 */
#include <ev.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <ldns/ldns.h>
#include <lmdb.h>

#include "applier.h"
#include "clock.h"
#include "log.h"
#include "manifest.h"
#include "named_harness.h"
#include "server.h"
#include "zonedb.h"

/* the deferral of a due checkpoint: at least this long after the last applied event
 * (APP_CKPT_IDLE_S is 1 s; a little less for timer granularity) */
#define APP_IDLE_MIN_S 0.9

static char g_tmp[512];
static json_t *g_examples; /* objects of deploy/examples, file order */

/* ---- journal and stream ---------------------------------------------------------------- */

static void on_object(void *arg, const mf_object_t *o) { json_array_append((json_t *)arg, o->obj); }

static void on_problem(void *arg, const char *file, int line, const char *msg, bool unreadable)
{
    fail_msg("%s:%d: %s", file, line, msg);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw) { return remove(path); }

static int group_setup(void **state)
{
    const char *base = getenv("TMPDIR"), *src = getenv("BINDY_SOURCE_DIR");
    bd_log_init_from_env();
    snprintf(g_tmp, sizeof(g_tmp), "%s/test_checkpoint.XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(g_tmp) == NULL)
        return -1;
    val_catalog_t *cat = NULL;
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/deploy/examples", src ? src : ".");
    const char *paths[] = {dir};
    g_examples = json_array();
    mf_visitor_t vis = {on_object, on_problem};
    if (val_catalog_new(&cat, NULL) != BD_OK || mf_scan(cat, paths, 1, &vis, g_examples) != BD_OK)
        return -1;
    val_catalog_free(cat);
    return json_array_size(g_examples) > 10 ? 0 : -1;
}

static int group_teardown(void **state)
{
    json_decref(g_examples);
    nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static const char *jdir(const char *name)
{
    static char buf[600];
    snprintf(buf, sizeof(buf), "%s/%s", g_tmp, name);
    return buf;
}

static json_t *example(const char *kind, const char *name)
{
    size_t i;
    json_t *o;
    json_array_foreach(g_examples, i, o) {
        if (strcmp(json_string_value(json_object_get(o, "kind")), kind) == 0 &&
            strcmp(json_string_value(json_object_get(json_object_get(o, "metadata"), "name")), name) == 0)
            return json_deep_copy(o);
    }
    fail_msg("no example %s %s", kind, name);
    return NULL;
}

static void append(jnl_t *j, jnl_type_t type, json_t *obj)
{
    jnl_event_t ev = jnl_event_of(JNL_SRC_MANIFESTS, type, obj);
    bd_err_t err;
    if (jnl_append_sync(j, &ev, NULL, &err) != BD_OK)
        fail_msg("append: %s", err.msg);
    json_decref(obj);
}

static json_t *www(const char *addr)
{
    json_t *a = example("ARecord", "www-example-com");
    json_object_set_new(json_object_get(a, "spec"), "ipv4Addresses", json_pack("[s]", addr));
    return a;
}

/* The examples, a younger duplicate zone, a CNAME conflict and an invalid version of www. */
static void append_stream(jnl_t *j)
{
    size_t i;
    json_t *o;
    json_array_foreach(g_examples, i, o) append(j, JNL_ADDED, json_incref(o));
    json_t *dup = example("DNSZone", "example-com");
    json_object_set_new(json_object_get(dup, "metadata"), "name", json_string("example-com-again"));
    append(j, JNL_ADDED, dup);
    json_t *cn = example("CNAMERecord", "blog-example-com");
    json_object_set_new(json_object_get(cn, "metadata"), "name", json_string("www-cname"));
    json_object_set_new(json_object_get(cn, "spec"), "name", json_string("www"));
    append(j, JNL_ADDED, cn);
    append(j, JNL_MODIFIED, www("192.0.2.80"));
    append(j, JNL_MODIFIED, www("10.0.0.300")); /* invalid: 192.0.2.80 stays served */
}

/* ---- a node: journal, projector, zone store, applier ------------------------------------ */

typedef struct {
    jnl_t *j;
    proj_t *p;
    bind_zonedb_t *db;
    app_t *a;
    int restored;          /* restored hook calls */
    size_t restored_objs;  /* resources it was given */
    size_t restored_zones; /* zones it reported created */
} node_t;

static void on_restored(void *arg, const jnl_state_t *st, const proj_changes_t *ch)
{
    node_t *n = arg;
    n->restored++;
    n->restored_objs = st ? jnl_state_count(st) : 0;
    for (size_t i = 0; i < ch->nzones; i++)
        n->restored_zones += ch->zones[i].created;
}

static void node_start(node_t *n, const char *name)
{
    memset(n, 0, sizeof(*n));
    jnl_opts_t o;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    o.sync = JNL_SYNC_NOSYNC;
    bd_err_t err;
    if (jnl_open(jdir(name), &o, &n->j, &err) != BD_OK)
        fail_msg("open %s: %s", name, err.msg);
    assert_int_equal(proj_new(NULL, &n->p, NULL), BD_OK);
    assert_int_equal(bind_zonedb_new(&n->db, NULL), BD_OK);
    app_hooks_t hooks = {NULL, on_restored, true};
    if (app_new(n->j, n->p, n->db, &hooks, n, &n->a, &err) != BD_OK)
        fail_msg("app_new: %s", err.msg);
}

static size_t node_catch_up(node_t *n)
{
    size_t count = 0;
    bd_err_t err;
    if (app_catch_up(n->a, &count, &err) != BD_OK)
        fail_msg("catch up: %s", err.msg);
    return count;
}

static void node_stop(node_t *n)
{
    app_free(n->a);
    proj_free(n->p);
    bind_zonedb_free(n->db);
    jnl_close(n->j);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Everything the zone store would transfer for each zone: "zone serial\n" + sorted RRs. */
static char *store_dump(node_t *n)
{
    size_t nz = 0, len = 0;
    const proj_zone_t **zones = proj_zones(n->p, &nz);
    char *out = NULL;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    for (size_t i = 0; i < nz; i++) {
        const char *zone = proj_zone_name(zones[i]);
        uint32_t serial = 0;
        assert_int_equal(bind_zonedb_serial(n->db, zone, &serial), BD_OK);
        fprintf(f, "%s %u\n", zone, serial);
        ldns_rdf *dn = ldns_dname_new_frm_str(zone);
        bind_zonedb_xfr_t *x = NULL;
        assert_int_equal(bind_zonedb_axfr(n->db, dn, &x), BD_OK);
        size_t nrr = bind_zonedb_xfr_count(x);
        char **lines = calloc(nrr + 1, sizeof(*lines));
        for (size_t k = 0; k < nrr; k++)
            lines[k] = ldns_rr2str(bind_zonedb_xfr_rr(x, k));
        qsort(lines, nrr, sizeof(*lines), cmp_str);
        for (size_t k = 0; k < nrr; k++) {
            fputs(lines[k], f);
            free(lines[k]);
        }
        free(lines);
        bind_zonedb_xfr_free(x);
        ldns_rdf_deep_free(dn);
    }
    assert_int_equal(bind_zonedb_zone_count(n->db), nz);
    fclose(f);
    return out;
}

static void assert_dump_equal(const char *want, const char *got)
{
    if (strcmp(want, got) != 0)
        fail_msg("zone stores differ:\n--- before the restart\n%s\n--- after\n%s", want, got);
}

/* ---- what named serves ------------------------------------------------------------------- */

static struct ev_loop *g_loop;

static void timer_done_cb(struct ev_loop *loop, ev_timer *w, int revents) { *(bool *)w->data = true; }

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

/* The first RR of the answer to name/type as presentation text (caller frees), or NULL.
 * One short blocking query: the loop does not run meanwhile. */
static char *ask(uint16_t port, const char *name, ldns_rr_type type)
{
    char *out = NULL;
    ldns_rr_list *ans = bd_named_ask("127.0.0.1", port, name, type);
    if (ans && ldns_rr_list_rr_count(ans) > 0)
        out = ldns_rdf2str(ldns_rr_rdf(ldns_rr_list_rr(ans, 0), type == LDNS_RR_TYPE_SOA ? 2 : 0));
    ldns_rr_list_deep_free(ans);
    return out;
}

/* A named secondary of example.com pulls from n's zone store (served by bindy's hidden
 * primary) and answers with its serial and www's address. */
static void assert_named_serves(node_t *n, const char *addr)
{
    bind_server_key_t key;
    char secret[128], conf[2048];
    bind_server_t *srv = NULL;
    bd_named_t *named = NULL;
    bd_err_t err;
    g_loop = ev_loop_new(EVFLAG_AUTO);
    assert_int_equal(bind_server_key_generate(&key, "xfr", BIND_SERVER_HMAC_SHA256), 0);
    assert_int_equal(bind_server_key_b64(&key, secret, sizeof(secret)), 0);
    bind_server_config_t cfg = {.address = "127.0.0.1", .xfr_key = &key, .serving = true};
    if (bind_server_new(&srv, g_loop, n->db, &cfg, &err) != BD_OK)
        fail_msg("server: %s", err.msg);
    snprintf(conf, sizeof(conf),
             "options { directory \"@DIR@\"; pid-file \"@DIR@/named.pid\"; listen-on port @PORT@ { 127.0.0.1; };\n"
             "  listen-on-v6 { none; }; recursion no; notify no; dnssec-validation no; };\n"
             "key \"xfr\" { algorithm hmac-sha256; secret \"%s\"; };\n"
             "zone \"example.com\" { type secondary; file \"example.com.db\";\n"
             "  primaries { 127.0.0.1 port %u key \"xfr\"; }; };\n",
             secret, bind_server_port(srv));
    int rc = bd_named_new(&named, &err);
    if (rc == 0)
        rc = bd_named_start(named, conf, 30.0, &err);
    if (rc != 0)
        fail_msg("could not start named: %s", err.msg);
    char want_serial[16];
    snprintf(want_serial, sizeof(want_serial), "%u", proj_zone_serial(proj_zone_get(n->p, "example.com")));
    char *serial = NULL, *a = NULL;
    for (int i = 0; i < 150; i++) { /* 30 s at most */
        pump(0.2);
        free(serial);
        free(a);
        serial = ask(bd_named_port(named), "example.com", LDNS_RR_TYPE_SOA);
        a = ask(bd_named_port(named), "www.example.com", LDNS_RR_TYPE_A);
        if (serial && a && strcmp(serial, want_serial) == 0 && strcmp(a, addr) == 0)
            break;
    }
    if (serial == NULL || a == NULL || strcmp(serial, want_serial) != 0 || strcmp(a, addr) != 0) {
        char tail[2048];
        bd_named_log_tail(named, tail, sizeof(tail));
        fail_msg("named serves serial %s and www %s, want %s and %s\n%s", serial ? serial : "-", a ? a : "-",
                 want_serial, addr, tail);
    }
    free(serial);
    free(a);
    bd_named_free(named);
    bind_server_free(srv);
    bind_server_key_wipe(&key);
    ev_loop_destroy(g_loop);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_restart_from_checkpoint(void **state)
{
    setenv("BINDY_PROJECTOR_CHECKPOINT_EVENTS", "10", 1);
    node_t a, b;
    bd_err_t err;
    node_start(&a, "restart");
    append_stream(a.j);
    uint64_t last = jnl_committed_seq(a.j);
    assert_int_equal(node_catch_up(&a), last);
    /* over 10 events: one checkpoint, written by a thread; waiting for it is shutdown's job */
    assert_int_equal(app_checkpoint(a.a, true, &err), BD_OK);
    uint64_t sseq = 0;
    size_t slen = 0;
    assert_int_equal(jnl_snapshot_stat(a.j, JNL_SNAPSHOT_PROJECTOR, &sseq, &slen, &err), BD_OK);
    assert_int_equal(sseq, last);
    assert_true(slen > 1000);
    /* three more: under 10, no new checkpoint */
    append(a.j, JNL_MODIFIED, www("192.0.2.81"));
    append(a.j, JNL_DELETED, example("TXTRecord", "dkim-example-com"));
    json_t *api = www("192.0.2.90");
    json_object_set_new(json_object_get(api, "metadata"), "name", json_string("api-example-com"));
    json_object_set_new(json_object_get(api, "spec"), "name", json_string("api"));
    append(a.j, JNL_ADDED, api);
    assert_int_equal(node_catch_up(&a), 3);
    assert_int_equal(jnl_snapshot_stat(a.j, JNL_SNAPSHOT_PROJECTOR, &sseq, &slen, &err), BD_OK);
    assert_int_equal(sseq, last);
    char *before = store_dump(&a);
    char da[65], db[65];
    assert_int_equal(proj_digest(a.p, da), BD_OK);
    assert_int_equal(a.restored, 0);
    node_stop(&a);

    node_start(&b, "restart");
    assert_int_equal(node_catch_up(&b), 3); /* only what came after the checkpoint */
    assert_int_equal(b.restored, 1);
    assert_true(b.restored_objs > 10);
    assert_true(b.restored_zones >= 2);
    assert_int_equal(proj_seq(b.p), last + 3);
    char *after = store_dump(&b);
    assert_dump_equal(before, after);
    assert_int_equal(proj_digest(b.p, db), BD_OK);
    assert_string_equal(da, db);
    proj_status_t st;
    proj_status(b.p, "ARecord", "dns-system", "www-example-com", &st);
    assert_true(st.known && st.ready); /* the last event made it valid again */
    proj_status(b.p, "DNSZone", "dns-system", "example-com-again", &st);
    assert_true(st.known && !st.ready);
    assert_string_equal(st.reason, "DuplicateZone");
    assert_named_serves(&b, "192.0.2.81");
    /* shutdown writes a checkpoint at the last seq: the next start replays nothing */
    assert_int_equal(app_checkpoint(b.a, true, &err), BD_OK);
    node_stop(&b);
    node_start(&b, "restart");
    assert_int_equal(node_catch_up(&b), 0);
    char *again = store_dump(&b);
    assert_dump_equal(before, again);
    node_stop(&b);
    free(before);
    free(after);
    free(again);
}

/* Copy the snapshot's meta value from one journal into another (as a copied file would). */
static void raw_copy_snapshot(const char *from, const char *to)
{
    MDB_env *env[2];
    MDB_txn *txn[2];
    MDB_dbi dbi[2];
    const char *dirs[2] = {from, to};
    char d[2][600];
    for (int i = 0; i < 2; i++) {
        snprintf(d[i], sizeof(d[i]), "%s", jdir(dirs[i]));
        assert_int_equal(mdb_env_create(&env[i]), 0);
        mdb_env_set_maxdbs(env[i], 8);
        mdb_env_set_mapsize(env[i], 64u << 20);
        assert_int_equal(mdb_env_open(env[i], d[i], 0, 0640), 0);
        assert_int_equal(mdb_txn_begin(env[i], NULL, i == 0 ? MDB_RDONLY : 0, &txn[i]), 0);
        assert_int_equal(mdb_dbi_open(txn[i], "meta", 0, &dbi[i]), 0);
    }
    const char *key = "snapshot/" JNL_SNAPSHOT_PROJECTOR;
    MDB_val k = {strlen(key), (void *)key}, v;
    assert_int_equal(mdb_get(txn[0], dbi[0], &k, &v), 0);
    assert_int_equal(mdb_put(txn[1], dbi[1], &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn[1]), 0);
    mdb_txn_abort(txn[0]);
    mdb_env_close(env[0]);
    mdb_env_close(env[1]);
}

static void test_refused_snapshot_replays(void **state)
{
    setenv("BINDY_PROJECTOR_CHECKPOINT_EVENTS", "0", 1);
    node_t a, b;
    bd_err_t err;
    /* journal "mine": the stream, a reference node, its state */
    node_start(&a, "mine");
    append_stream(a.j);
    uint64_t last = jnl_committed_seq(a.j);
    assert_int_equal(node_catch_up(&a), last);
    char *want = store_dump(&a);
    node_stop(&a);
    /* journal "theirs": the same events at other times (other hashes), a checkpoint */
    node_start(&a, "theirs");
    append_stream(a.j);
    assert_int_equal(node_catch_up(&a), last);
    assert_int_equal(app_checkpoint(a.a, true, &err), BD_OK);
    node_stop(&a);
    /* theirs in mine: the journal refuses it (the hash of its seq differs) */
    raw_copy_snapshot("theirs", "mine");
    node_start(&b, "mine");
    uint64_t s;
    void *buf = NULL;
    size_t len;
    assert_int_equal(jnl_snapshot_get(b.j, JNL_SNAPSHOT_PROJECTOR, &s, &buf, &len, &err), BD_ECORRUPT);
    assert_non_null(strstr(err.msg, "another journal"));
    assert_int_equal(node_catch_up(&b), last); /* replayed from the start */
    assert_int_equal(b.restored, 0);
    char *got = store_dump(&b);
    assert_dump_equal(want, got);
    free(got);
    /* a snapshot bound to this journal that the projector cannot read: the same */
    assert_int_equal(jnl_snapshot_put(b.j, JNL_SNAPSHOT_PROJECTOR, last, "{\"format\":\"x\"}\n", 15, &err), BD_OK);
    node_stop(&b);
    node_start(&b, "mine");
    assert_int_equal(node_catch_up(&b), last);
    assert_int_equal(b.restored, 0);
    got = store_dump(&b);
    assert_dump_equal(want, got);
    free(got);
    node_stop(&b);
    free(want);
}

static void test_pruned_journal(void **state)
{
    setenv("BINDY_PROJECTOR_CHECKPOINT_EVENTS", "0", 1);
    node_t a, b;
    bd_err_t err;
    node_start(&a, "pruned");
    append_stream(a.j);
    node_catch_up(&a); /* and a snapshot there */
    assert_int_equal(app_checkpoint(a.a, true, &err), BD_OK);
    node_stop(&a);
    node_start(&a, "pruned");
    append(a.j, JNL_MODIFIED, www("192.0.2.82"));
    append(a.j, JNL_MODIFIED, www("192.0.2.83"));
    uint64_t last = jnl_committed_seq(a.j);
    assert_int_equal(node_catch_up(&a), 2);
    char *want = store_dump(&a);
    char dwant[65], dgot[65];
    assert_int_equal(proj_digest(a.p, dwant), BD_OK);
    /* prune past the snapshot: it is of no use any more */
    assert_int_equal(jnl_checkpoint(a.j, last - 1, JNL_CKPT_PRUNE, &err), BD_OK);
    uint64_t first = 0;
    assert_int_equal(jnl_bounds(a.j, &first, NULL, &err), BD_OK);
    assert_int_equal(first, last);
    node_stop(&a);

    node_start(&b, "pruned");
    assert_int_equal(node_catch_up(&b), 1); /* the one event after the journal's checkpoint */
    assert_int_equal(b.restored, 1);
    assert_int_equal(proj_seq(b.p), last);
    assert_int_equal(proj_digest(b.p, dgot), BD_OK);
    assert_string_equal(dwant, dgot); /* the same content; serials restart from the floors */
    char *got = store_dump(&b);
    assert_true(strstr(got, "www.example.com.\t300\tIN\tA\t192.0.2.83") != NULL);
    /* its next checkpoint is usable: the following start restores from it */
    assert_int_equal(app_checkpoint(b.a, true, &err), BD_OK);
    node_stop(&b);
    node_start(&b, "pruned");
    assert_int_equal(node_catch_up(&b), 0);
    assert_int_equal(b.restored, 1);
    char *again = store_dump(&b);
    assert_dump_equal(got, again);
    node_stop(&b);
    free(got);
    free(again);
    free(want);
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static void test_write_waits_for_idle(void **state)
{
    setenv("BINDY_PROJECTOR_CHECKPOINT_EVENTS", "10", 1);
    node_t a;
    bd_err_t err;
    uint64_t sseq = 0;
    size_t slen = 0;
    node_start(&a, "idle");
    append_stream(a.j);
    uint64_t due = jnl_committed_seq(a.j);
    assert_int_equal(node_catch_up(&a), due); /* over 10 events: captured at `due` */
    /* a burst goes on for 1.6 s (an event every 0.2 s): nothing is written meanwhile */
    double t0 = bd_mono_s();
    for (int i = 0; i < 8; i++) {
        sleep_s(0.2);
        char addr[32];
        snprintf(addr, sizeof(addr), "192.0.2.%d", 100 + i);
        append(a.j, JNL_MODIFIED, www(addr));
        assert_int_equal(node_catch_up(&a), 1);
        assert_int_equal(jnl_snapshot_stat(a.j, JNL_SNAPSHOT_PROJECTOR, &sseq, &slen, &err), BD_ENOTFOUND);
    }
    double burst_end = bd_mono_s();
    assert_true(burst_end - t0 >= 1.5);
    /* idle now: written about a second after the last catch-up that applied an event */
    int rc = BD_ENOTFOUND;
    while (rc == BD_ENOTFOUND && bd_mono_s() < burst_end + 10.0) {
        sleep_s(0.05);
        rc = jnl_snapshot_stat(a.j, JNL_SNAPSHOT_PROJECTOR, &sseq, &slen, &err);
    }
    double written = bd_mono_s() - burst_end;
    print_message("checkpoint written %.2f s after the burst\n", written);
    assert_int_equal(rc, BD_OK);
    assert_int_equal(sseq, due); /* the state it was captured at */
    assert_true(written >= APP_IDLE_MIN_S);

    /* 8 more events than the capture: under 10, nothing new falls due; a shutdown writes
     * the last seq at once (no idle wait) */
    append(a.j, JNL_MODIFIED, www("192.0.2.200"));
    assert_int_equal(node_catch_up(&a), 1);
    append(a.j, JNL_MODIFIED, www("192.0.2.201"));
    assert_int_equal(node_catch_up(&a), 1);
    double t1 = bd_mono_s();
    assert_int_equal(app_checkpoint(a.a, true, &err), BD_OK);
    assert_true(bd_mono_s() - t1 < 0.9);
    assert_int_equal(jnl_snapshot_stat(a.j, JNL_SNAPSHOT_PROJECTOR, &sseq, &slen, &err), BD_OK);
    assert_int_equal(sseq, jnl_committed_seq(a.j));
    node_stop(&a);
    unsetenv("BINDY_PROJECTOR_CHECKPOINT_EVENTS");
}

static void test_bad_setting(void **state)
{
    node_t n = {0};
    jnl_opts_t o;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    bd_err_t err;
    assert_int_equal(jnl_open(jdir("setting"), &o, &n.j, &err), BD_OK);
    assert_int_equal(proj_new(NULL, &n.p, NULL), BD_OK);
    const char *bad[] = {"", "ten", "-1", "999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        setenv("BINDY_PROJECTOR_CHECKPOINT_EVENTS", bad[i], 1);
        assert_int_equal(app_new(n.j, n.p, NULL, NULL, NULL, &n.a, &err), BD_EINVAL);
        assert_null(n.a);
        assert_non_null(strstr(err.msg, "BINDY_PROJECTOR_CHECKPOINT_EVENTS"));
    }
    unsetenv("BINDY_PROJECTOR_CHECKPOINT_EVENTS");
    assert_int_equal(app_new(n.j, n.p, NULL, NULL, NULL, &n.a, &err), BD_OK);
    app_free(n.a);
    proj_free(n.p);
    jnl_close(n.j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_from_checkpoint),
        cmocka_unit_test(test_refused_snapshot_replays),
        cmocka_unit_test(test_pruned_journal),
        cmocka_unit_test(test_write_waits_for_idle),
        cmocka_unit_test(test_bad_setting),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
