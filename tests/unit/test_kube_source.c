/*
 * test_kube_source.c - the Kubernetes event source (src/source/kube.c): the API-server
 * double -> reflectors -> a temporary journal. Assertions read the journal back (type,
 * kind, namespace/name, resourceVersion, in order), never the logs.
 *
 * Covered: the first list (paginated, with a journal whose queue is so small that
 * appends keep getting BD_EBUSY), watch events in order, bookmarks moving the resume
 * point, a 410 relist journaling exactly the difference, dropped streams without
 * duplicates, a stale resume point whose replayed events are dropped as duplicates,
 * restart resume equal to an uninterrupted run, a watched-namespace subset, and
 * BINDY_WATCH_NAMESPACES parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <ev.h>
#include <jansson.h>

#include "apiserver.h"
#include "client.h"
#include "journal.h"
#include "k8s_fixture.h"
#include "kube.h"
#include "log.h"
#include "resource.h"

#define GROUP "bindy.firestoned.io"
#define API "bindy.firestoned.io/v1beta1"
#define AREC_PATH "/apis/bindy.firestoned.io/v1beta1/arecords"
#define AREC_KEY "arecords.bindy.firestoned.io/v1beta1"

/* ---- fixture ------------------------------------------------------------------------------ */

typedef struct fx {
    kfx_t k; /* the double, the loop, the client (k8s_fixture.h) */
    char dir[2][256];
    jnl_t *j[2];
} fx_t;

static void fx_start(fx_t *f, unsigned bookmark_ms)
{
    kfx_opts_t o = {.bookmark_ms = bookmark_ms, .qps = 1000, .burst = 1000};
    kfx_start(&f->k, &o);
}

/* Journal i in a new temporary directory. queue_max_bytes 0: the default. */
static jnl_t *fx_journal(fx_t *f, int i, uint64_t queue_max_bytes)
{
    snprintf(f->dir[i], sizeof(f->dir[i]), "/tmp/bd-ksrc-XXXXXX");
    assert_non_null(mkdtemp(f->dir[i]));
    jnl_opts_t o;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    o.sync = JNL_SYNC_NOSYNC;
    if (queue_max_bytes)
        o.queue_max_bytes = queue_max_bytes;
    bd_err_t err;
    if (jnl_open(f->dir[i], &o, &f->j[i], &err) != BD_OK)
        fail_msg("journal: %s", err.msg);
    return f->j[i];
}

static void rm_journal(const char *dir)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/data.mdb", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/lock.mdb", dir);
    unlink(p);
    rmdir(dir);
}

static void fx_stop(fx_t *f)
{
    for (int i = 0; i < 2; i++) {
        if (f->j[i] == NULL)
            continue;
        bd_err_t err;
        jnl_verify_report_t rep;
        if (jnl_verify(f->j[i], &rep, &err) != BD_OK)
            fail_msg("journal does not verify: %s", err.msg);
        jnl_close(f->j[i]);
        rm_journal(f->dir[i]);
    }
    kfx_stop(&f->k);
}

static bool watching(void *arg)
{
    fx_t *f = arg;
    return bd_apiserver_watches_open(f->k.as) >= RES_KIND_COUNT;
}

/* ---- the double ---------------------------------------------------------------------------- */

static void create_txt(fx_t *f, const char *ns, const char *name)
{
    char j[512];
    bd_err_t err;
    snprintf(j, sizeof(j),
             "{\"apiVersion\":\"" API "\",\"kind\":\"TXTRecord\",\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\"},"
             "\"spec\":{\"name\":\"%s\",\"text\":[\"hello\"]}}",
             name, ns, name);
    if (bd_apiserver_create(f->k.as, j, &err) != BD_OK)
        fail_msg("create %s/%s: %s", ns, name, err.msg);
}

/* "ns/name rv" of the stored ARecord, for expected journal lines. */
static char *cur(fx_t *f, const char *ns, const char *name)
{
    char *txt = bd_apiserver_get(f->k.as, GROUP, "arecords", ns, name);
    assert_non_null(txt);
    json_t *o = json_loads(txt, 0, NULL);
    free(txt);
    assert_non_null(o);
    char *s = NULL;
    assert_true(asprintf(&s, "%s/%s %s", ns, name,
                         json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"))) > 0);
    json_decref(o);
    return s;
}

static char *server_rv(fx_t *f)
{
    char *s = NULL;
    assert_true(asprintf(&s, "%llu", (unsigned long long)bd_apiserver_resource_version(f->k.as)) > 0);
    return s;
}

static size_t log_count(fx_t *f, const char *verb, const char *path, const char *query_part)
{
    size_t n = bd_apiserver_log_count(f->k.as), k = 0;
    for (size_t i = 0; i < n; i++) {
        bd_apiserver_req_t r;
        if (bd_apiserver_log_get(f->k.as, i, &r) != BD_OK)
            continue;
        if (strcmp(r.verb, verb) == 0 && strncmp(r.path, path, strlen(path)) == 0 &&
            (query_part == NULL || strstr(r.query, query_part) != NULL))
            k++;
    }
    return k;
}

/* ---- the journal, read back ---------------------------------------------------------------- */

/* Events from seq `from` (after a flush), one line each, "|"-joined:
 * "TYPE Kind ns/name rv" for objects, "TYPE Kind ns" for markers. kind NULL: every kind. */
static char *jlines(jnl_t *j, uint64_t from, const char *kind, size_t *count)
{
    bd_err_t err;
    assert_int_equal(jnl_flush(j, &err), BD_OK);
    jnl_iter_t *it = NULL;
    assert_int_equal(jnl_iter_new(j, from, JNL_DECODE_NO_OBJECT, &it, &err), BD_OK);
    size_t cap = 4096, len = 0, n = 0;
    char *out = calloc(1, cap);
    jnl_record_t *rec;
    while (jnl_iter_next(it, &rec, &err) == BD_OK) {
        const jnl_event_t *e = &rec->ev;
        assert_int_equal(e->source, JNL_SRC_KUBERNETES);
        if (kind == NULL || strcmp(e->kind, kind) == 0) {
            char line[512];
            if (e->type == JNL_RELIST_BEGIN || e->type == JNL_RELIST_END)
                snprintf(line, sizeof(line), "%s %s %s", jnl_type_name(e->type), e->kind, e->ns);
            else
                snprintf(line, sizeof(line), "%s %s %s/%s %s", jnl_type_name(e->type), e->kind, e->ns, e->name,
                         e->resource_version);
            size_t l = strlen(line);
            if (len + l + 2 > cap) {
                cap = (len + l + 2) * 2;
                out = realloc(out, cap);
            }
            if (n++ > 0)
                out[len++] = '|';
            memcpy(out + len, line, l + 1);
            len += l;
        }
        jnl_record_free(rec);
    }
    jnl_iter_free(it);
    if (count)
        *count = n;
    return out;
}

static uint64_t jlast(jnl_t *j)
{
    bd_err_t err;
    uint64_t last = 0;
    assert_int_equal(jnl_flush(j, &err), BD_OK);
    assert_int_equal(jnl_bounds(j, NULL, &last, &err), BD_OK);
    return last;
}

static char *resume_of(jnl_t *j, const char *key)
{
    bd_err_t err;
    char *rv = NULL;
    assert_int_equal(jnl_flush(j, &err), BD_OK);
    int rc = jnl_resume_get(j, key, &rv, &err);
    return rc == BD_OK ? rv : NULL;
}

/* Build "a|b|c" from a NULL-terminated list of parts (freed). */
static char *join(const char *first, ...)
{
    va_list ap;
    va_start(ap, first);
    size_t len = 0;
    char *out = calloc(1, 1);
    for (const char *p = first; p != NULL; p = va_arg(ap, const char *)) {
        size_t l = strlen(p);
        out = realloc(out, len + l + 2);
        if (len > 0)
            out[len++] = '|';
        memcpy(out + len, p, l + 1);
        len += l;
    }
    va_end(ap);
    return out;
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    assert_true(vasprintf(&s, f, ap) >= 0);
    va_end(ap);
    return s;
}

/* ---- waiting on the source ----------------------------------------------------------------- */

typedef struct src_wait {
    ksrc_t *s;
    uint64_t appended;
} src_wait_t;

/* Synced, at least `appended` events journaled, nothing pending. */
static bool caught_up(void *arg)
{
    src_wait_t *w = arg;
    ksrc_stats_t st;
    ksrc_stats(w->s, &st);
    return ksrc_synced(w->s) && st.appended >= w->appended && st.pending == 0;
}

static void wait_appended(fx_t *f, ksrc_t *s, uint64_t n)
{
    src_wait_t w = {s, n};
    if (!kfx_run_until(f->k.loop, caught_up, &w, 15)) {
        ksrc_stats_t st;
        ksrc_stats(s, &st);
        fail_msg("source: synced %d, appended %llu of %llu, pending %zu", ksrc_synced(s),
                 (unsigned long long)st.appended, (unsigned long long)n, st.pending);
    }
    kfx_run_for(f->k.loop, 0.2); /* and nothing more comes */
    ksrc_stats_t st;
    ksrc_stats(s, &st);
    assert_int_equal(st.appended, n);
}

/* wait_appended, then every kind's watch open: the source is live. */
static void wait_watching(fx_t *f, ksrc_t *s, uint64_t n)
{
    wait_appended(f, s, n);
    assert_true(kfx_run_until(f->k.loop, watching, f, 5));
}

static ksrc_t *src_start(fx_t *f, jnl_t *j, const char *const *nss, size_t nns, unsigned page_size)
{
    ksrc_opts_t o = {.namespaces = nss, .nnamespaces = nns, .page_size = page_size};
    ksrc_t *s = NULL;
    bd_err_t err;
    if (ksrc_start(f->k.c, j, &o, &s, &err) != BD_OK)
        fail_msg("ksrc_start: %s", err.msg);
    return s;
}

/* ---- tests --------------------------------------------------------------------------------- */

/* First start: every object, list by list (pages of 5), between RELIST markers; no
 * markers for kinds without objects; a resume point per kind at its list's rv. The
 * journal's queue holds one event, so appends keep meeting BD_EBUSY on the way. */
static void test_initial_list(void **state)
{
    fx_t f = {0};
    fx_start(&f, 0);
    char name[16];
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof(name), "r%02d", i);
        kfx_create_a(&f.k, "dns-system", name, "10.0.0.1");
    }
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "o%d", i);
        kfx_create_a(&f.k, "other", name, "10.0.1.1");
    }
    create_txt(&f, "dns-system", "t");
    char *rv0 = server_rv(&f);
    jnl_t *j = fx_journal(&f, 0, 1);
    ksrc_t *s = src_start(&f, j, NULL, 0, 5);
    assert_false(ksrc_synced(s));
    wait_appended(&f, s, 2 + 15 + 2 + 1);

    char *got = jlines(j, 0, "ARecord", NULL);
    size_t cap = 8192;
    char *want = calloc(1, cap);
    strcat(want, "RELIST_BEGIN ARecord ");
    for (int i = 0; i < 12; i++) {
        snprintf(name, sizeof(name), "r%02d", i);
        char *c = cur(&f, "dns-system", name);
        strcat(want, "|ADDED ARecord ");
        strcat(want, c);
        free(c);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "o%d", i);
        char *c = cur(&f, "other", name);
        strcat(want, "|ADDED ARecord ");
        strcat(want, c);
        free(c);
    }
    strcat(want, "|RELIST_END ARecord ");
    assert_string_equal(got, want);
    free(got);
    size_t n = 0;
    got = jlines(j, 0, "TXTRecord", &n);
    assert_int_equal(n, 3);
    assert_non_null(strstr(got, "|ADDED TXTRecord dns-system/t "));
    free(got);
    free(jlines(j, 0, NULL, &n));
    assert_int_equal(n, 20);

    ksrc_stats_t st;
    ksrc_stats(s, &st);
    assert_int_equal(st.appended, 20);
    assert_int_equal(st.duplicates, 0);
    assert_int_equal(st.relists, 0);
    assert_int_equal(st.last_seq, 20);
    assert_true(st.busy > 0); /* the retry path did the work */
    /* 15 ARecords in pages of 5 */
    assert_int_equal(log_count(&f, "list", AREC_PATH, "limit=5"), 3);
    /* resume points at the lists' rv, one per kind */
    char *rv = resume_of(j, AREC_KEY);
    assert_non_null(rv);
    assert_string_equal(rv, rv0);
    free(rv);
    rv = resume_of(j, "dnszones.bindy.firestoned.io/v1beta1");
    assert_non_null(rv);
    assert_string_equal(rv, rv0);
    free(rv);

    ksrc_stop(s);
    free(want);
    free(rv0);
    fx_stop(&f);
}

/* Adds, updates and deletes through the watch: journaled in order, once. Bookmarks move
 * the resume point past the last event. */
static void test_watch_order_and_bookmarks(void **state)
{
    fx_t f = {0};
    fx_start(&f, 100);
    kfx_create_a(&f.k, "dns-system", "a", "10.0.0.1");
    jnl_t *j = fx_journal(&f, 0, 0);
    ksrc_t *s = src_start(&f, j, NULL, 0, 0);
    wait_watching(&f, s, 3);
    uint64_t mark = jlast(j) + 1;

    kfx_create_a(&f.k, "dns-system", "x", "10.0.0.2");
    char *x1 = cur(&f, "dns-system", "x");
    kfx_patch_a(&f.k, "dns-system", "x", "10.0.0.3");
    char *x2 = cur(&f, "dns-system", "x");
    kfx_create_a(&f.k, "other", "y", "10.0.0.4");
    char *y1 = cur(&f, "other", "y");
    kfx_patch_a(&f.k, "dns-system", "a", "10.0.0.5");
    char *a2 = cur(&f, "dns-system", "a");
    kfx_delete_a(&f.k, "dns-system", "x");
    char *del = server_rv(&f);
    wait_appended(&f, s, 3 + 5);
    char *got = jlines(j, mark, NULL, NULL);
    char *e1 = fmt("ADDED ARecord %s", x1), *e2 = fmt("MODIFIED ARecord %s", x2), *e3 = fmt("ADDED ARecord %s", y1),
         *e4 = fmt("MODIFIED ARecord %s", a2), *e5 = fmt("DELETED ARecord dns-system/x %s", del);
    char *want = join(e1, e2, e3, e4, e5, NULL);
    assert_string_equal(got, want);
    free(got);
    free(want);
    char *rv = resume_of(j, AREC_KEY);
    assert_non_null(rv);
    free(rv);

    /* another kind moves the server on; ARecord bookmarks carry the resume point along */
    create_txt(&f, "dns-system", "t");
    char *now = server_rv(&f);
    assert_string_not_equal(now, del);
    double deadline = ev_time() + 5;
    char *res = NULL;
    while (ev_time() < deadline) {
        kfx_run_for(f.k.loop, 0.05);
        free(res);
        res = resume_of(j, AREC_KEY);
        if (res != NULL && strcmp(res, now) == 0)
            break;
    }
    assert_non_null(res);
    assert_string_equal(res, now);
    /* and the bookmarks journaled nothing */
    got = jlines(j, mark, "ARecord", NULL);
    want = join(e1, e2, e3, e4, e5, NULL);
    assert_string_equal(got, want);
    ksrc_stats_t st;
    ksrc_stats(s, &st);
    assert_int_equal(st.duplicates, 0);

    ksrc_stop(s);
    free(got);
    free(want);
    free(res);
    free(now);
    free(x1);
    free(x2);
    free(y1);
    free(a2);
    free(del);
    free(e1);
    free(e2);
    free(e3);
    free(e4);
    free(e5);
    fx_stop(&f);
}

/* While the watch is down, b changes, c is deleted and d created, and the history is
 * compacted: the relist after 410 journals exactly that difference, between markers. */
static void test_relist_difference(void **state)
{
    fx_t f = {0};
    fx_start(&f, 0);
    kfx_create_a(&f.k, "dns-system", "a", "10.0.0.1");
    kfx_create_a(&f.k, "dns-system", "b", "10.0.0.2");
    kfx_create_a(&f.k, "dns-system", "c", "10.0.0.3");
    jnl_t *j = fx_journal(&f, 0, 0);
    ksrc_t *s = src_start(&f, j, NULL, 0, 0);
    wait_watching(&f, s, 5);
    uint64_t mark = jlast(j) + 1;
    char *c_old = cur(&f, "dns-system", "c");

    bd_apiserver_drop_watches(f.k.as);
    kfx_patch_a(&f.k, "dns-system", "b", "10.0.0.22");
    kfx_delete_a(&f.k, "dns-system", "c");
    kfx_create_a(&f.k, "dns-system", "d", "10.0.0.4");
    bd_apiserver_compact(f.k.as);
    char *b2 = cur(&f, "dns-system", "b"), *d1 = cur(&f, "dns-system", "d");

    wait_appended(&f, s, 5 + 5);
    /* every kind's watch was refused: wait for all of them to relist */
    ksrc_stats_t st;
    double deadline = ev_time() + 10;
    do {
        kfx_run_for(f.k.loop, 0.05);
        ksrc_stats(s, &st);
    } while (st.relists < RES_KIND_COUNT && ev_time() < deadline);
    kfx_run_for(f.k.loop, 0.2);
    char *got = jlines(j, mark, NULL, NULL);
    char *e1 = fmt("MODIFIED ARecord %s", b2), *e2 = fmt("ADDED ARecord %s", d1),
         *e3 = fmt("DELETED ARecord %s", c_old);
    char *want = join("RELIST_BEGIN ARecord ", e1, e2, e3, "RELIST_END ARecord ", NULL);
    assert_string_equal(got, want);
    ksrc_stats(s, &st);
    assert_int_equal(st.appended, 10);
    assert_int_equal(st.relists, RES_KIND_COUNT); /* every kind relisted; one had news */
    assert_int_equal(st.duplicates, 0);
    /* the resume point is the new list's */
    char *rv = resume_of(j, AREC_KEY), *now = server_rv(&f);
    assert_non_null(rv);
    assert_string_equal(rv, now);

    ksrc_stop(s);
    free(rv);
    free(now);
    free(got);
    free(want);
    free(e1);
    free(e2);
    free(e3);
    free(b2);
    free(d1);
    free(c_old);
    fx_stop(&f);
}

/* Dropped streams: the changes made meanwhile arrive once, with no relist. Then a source
 * started from a stale resume point is sent those changes again and drops them all. */
static void test_dropped_no_duplicates(void **state)
{
    fx_t f = {0};
    fx_start(&f, 0);
    kfx_create_a(&f.k, "dns-system", "a", "10.0.0.1");
    jnl_t *j = fx_journal(&f, 0, 0);
    ksrc_t *s = src_start(&f, j, NULL, 0, 0);
    wait_watching(&f, s, 3);
    uint64_t mark = jlast(j) + 1;
    char *stale = server_rv(&f);

    bd_apiserver_drop_watches(f.k.as);
    kfx_create_a(&f.k, "dns-system", "e", "10.0.0.5");
    char *e1 = cur(&f, "dns-system", "e");
    kfx_patch_a(&f.k, "dns-system", "a", "10.0.0.6");
    char *a2 = cur(&f, "dns-system", "a");
    wait_watching(&f, s, 5);
    bd_apiserver_drop_watches(f.k.as); /* again, with nothing new */
    kfx_run_for(f.k.loop, 1.5);
    assert_true(kfx_run_until(f.k.loop, watching, &f, 5));
    char *got = jlines(j, mark, NULL, NULL);
    char *l1 = fmt("ADDED ARecord %s", e1), *l2 = fmt("MODIFIED ARecord %s", a2);
    char *want = join(l1, l2, NULL);
    assert_string_equal(got, want);
    free(got);
    ksrc_stats_t st;
    ksrc_stats(s, &st);
    assert_int_equal(st.appended, 5);
    assert_int_equal(st.relists, 0);
    assert_int_equal(st.duplicates, 0);
    ksrc_stop(s);

    /* a resume point from before those changes: they come again and are dropped */
    bd_err_t err;
    assert_int_equal(jnl_resume_set(j, AREC_KEY, stale, &err), BD_OK);
    assert_int_equal(jnl_flush(j, &err), BD_OK);
    uint64_t last = jlast(j);
    char *q = fmt("resourceVersion=%s&", stale);
    size_t watches = log_count(&f, "watch", AREC_PATH, q);
    s = src_start(&f, j, NULL, 0, 0);
    src_wait_t w = {s, 0};
    assert_true(kfx_run_until(f.k.loop, caught_up, &w, 10));
    ksrc_stats(s, &st);
    double deadline = ev_time() + 5;
    while (st.duplicates < 2 && ev_time() < deadline) {
        kfx_run_for(f.k.loop, 0.05);
        ksrc_stats(s, &st);
    }
    kfx_run_for(f.k.loop, 0.2);
    ksrc_stats(s, &st);
    assert_int_equal(st.duplicates, 2);
    assert_int_equal(st.appended, 0);
    assert_int_equal(jlast(j), last);
    assert_int_equal(log_count(&f, "watch", AREC_PATH, q), watches + 1);
    free(q);

    ksrc_stop(s);
    free(want);
    free(l1);
    free(l2);
    free(e1);
    free(a2);
    free(stale);
    fx_stop(&f);
}

/* Restart: source 1 stops, the server changes, a new source on the same journal resumes
 * from the saved rv (no list); its journal holds the same object versions, in the same
 * order, as journal 2, which an uninterrupted source filled meanwhile. */
static void test_restart_resume(void **state)
{
    fx_t f = {0};
    fx_start(&f, 0);
    kfx_create_a(&f.k, "dns-system", "a", "10.0.0.1");
    kfx_create_a(&f.k, "dns-system", "b", "10.0.0.2");
    kfx_create_a(&f.k, "other", "c", "10.0.0.3");
    jnl_t *j1 = fx_journal(&f, 0, 0), *j2 = fx_journal(&f, 1, 0);
    ksrc_t *s1 = src_start(&f, j1, NULL, 0, 0), *s2 = src_start(&f, j2, NULL, 0, 0);
    wait_appended(&f, s1, 5);
    wait_appended(&f, s2, 5);
    kfx_patch_a(&f.k, "dns-system", "a", "10.0.0.11");
    wait_appended(&f, s1, 6);
    wait_appended(&f, s2, 6);
    ksrc_stop(s1);
    char *saved = resume_of(j1, AREC_KEY), *now = server_rv(&f);
    assert_non_null(saved);
    assert_string_equal(saved, now);
    size_t lists = log_count(&f, "list", AREC_PATH, NULL);
    assert_int_equal(lists, 2);

    /* while source 1 is down */
    kfx_create_a(&f.k, "dns-system", "f", "10.0.0.6");
    kfx_patch_a(&f.k, "dns-system", "a", "10.0.0.12");
    kfx_delete_a(&f.k, "dns-system", "b");
    kfx_patch_a(&f.k, "other", "c", "10.0.0.13");
    create_txt(&f, "other", "t");

    ksrc_t *s1b = src_start(&f, j1, NULL, 0, 0);
    wait_appended(&f, s1b, 5);
    wait_appended(&f, s2, 6 + 5);
    /* no list for the resumed source, a watch from the saved rv */
    assert_int_equal(log_count(&f, "list", AREC_PATH, NULL), lists);
    char q[64];
    snprintf(q, sizeof(q), "resourceVersion=%s&", saved);
    assert_true(log_count(&f, "watch", AREC_PATH, q) >= 1);

    /* the server orders events per resource: compare kind by kind */
    size_t n1, n2;
    char *g1 = jlines(j1, 0, NULL, &n1), *g2 = jlines(j2, 0, NULL, &n2);
    assert_int_equal(n1, 6 + 5);
    assert_int_equal(n2, 6 + 5);
    free(g1);
    free(g2);
    static const char *const kinds[] = {"ARecord", "TXTRecord"};
    for (int k = 0; k < 2; k++) {
        g1 = jlines(j1, 0, kinds[k], &n1);
        g2 = jlines(j2, 0, kinds[k], &n2);
        assert_string_equal(g1, g2);
        assert_int_equal(n1, k == 0 ? 6 + 4 : 1);
        free(g1);
        free(g2);
    }
    /* a resumed source journaled no markers */
    char *tail = jlines(j1, 7, NULL, NULL);
    assert_null(strstr(tail, "RELIST"));
    ksrc_stats_t st;
    ksrc_stats(s1b, &st);
    assert_int_equal(st.duplicates, 0);
    assert_int_equal(st.relists, 0);

    ksrc_stop(s1b);
    ksrc_stop(s2);
    free(tail);
    free(saved);
    free(now);
    fx_stop(&f);
}

/* Watching one namespace: the others never reach the journal. */
static void test_namespace_subset(void **state)
{
    fx_t f = {0};
    fx_start(&f, 0);
    kfx_create_a(&f.k, "dns-system", "a", "10.0.0.1");
    kfx_create_a(&f.k, "other", "x", "10.0.0.2");
    create_txt(&f, "other", "t");
    jnl_t *j = fx_journal(&f, 0, 0);
    const char *nss[] = {"dns-system"};
    ksrc_t *s = src_start(&f, j, nss, 1, 0);
    wait_watching(&f, s, 3);
    kfx_create_a(&f.k, "other", "y", "10.0.0.3");
    kfx_patch_a(&f.k, "other", "x", "10.0.0.4");
    kfx_create_a(&f.k, "dns-system", "b", "10.0.0.5");
    char *a1 = cur(&f, "dns-system", "a"), *b1 = cur(&f, "dns-system", "b");
    wait_appended(&f, s, 4);
    char *got = jlines(j, 0, NULL, NULL);
    char *l1 = fmt("ADDED ARecord %s", a1), *l2 = fmt("ADDED ARecord %s", b1);
    char *want = join("RELIST_BEGIN ARecord dns-system", l1, "RELIST_END ARecord dns-system", l2, NULL);
    assert_string_equal(got, want);
    char *rv = resume_of(j, AREC_KEY "@dns-system");
    assert_non_null(rv);
    assert_null(resume_of(j, AREC_KEY));
    assert_int_equal(log_count(&f, "list", AREC_PATH, NULL), 0);
    assert_int_equal(log_count(&f, "list", "/apis/" API "/namespaces/dns-system/arecords", NULL), 1);
    assert_int_equal(log_count(&f, "list", "/apis/" API "/namespaces/other/", NULL), 0);

    ksrc_stop(s);
    free(rv);
    free(got);
    free(want);
    free(l1);
    free(l2);
    free(a1);
    free(b1);
    fx_stop(&f);
}

static void test_opts_from_env(void **state)
{
    ksrc_opts_t o;
    bd_err_t err;
    unsetenv("BINDY_WATCH_NAMESPACES");
    assert_int_equal(ksrc_opts_from_env(&o, &err), BD_OK);
    assert_int_equal(o.nnamespaces, 0);
    setenv("BINDY_WATCH_NAMESPACES", " , ", 1);
    assert_int_equal(ksrc_opts_from_env(&o, &err), BD_OK);
    assert_int_equal(o.nnamespaces, 0);
    setenv("BINDY_WATCH_NAMESPACES", " dns-system , other,dns-system,", 1);
    assert_int_equal(ksrc_opts_from_env(&o, &err), BD_OK);
    assert_int_equal(o.nnamespaces, 2);
    assert_string_equal(o.namespaces[0], "dns-system");
    assert_string_equal(o.namespaces[1], "other");
    setenv("BINDY_WATCH_NAMESPACES", "ok,Bad_NS", 1);
    assert_int_equal(ksrc_opts_from_env(&o, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "Bad_NS"));
    setenv("BINDY_WATCH_NAMESPACES", "-x", 1);
    assert_int_equal(ksrc_opts_from_env(&o, &err), BD_EINVAL);
    unsetenv("BINDY_WATCH_NAMESPACES");
}

int main(void)
{
    bd_log_set_level(getenv("TEST_DEBUG") ? BD_LOG_DEBUG : BD_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_initial_list),
        cmocka_unit_test(test_watch_order_and_bookmarks),
        cmocka_unit_test(test_relist_difference),
        cmocka_unit_test(test_dropped_no_duplicates),
        cmocka_unit_test(test_restart_resume),
        cmocka_unit_test(test_namespace_subset),
        cmocka_unit_test(test_opts_from_env),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
