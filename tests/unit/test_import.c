/*
 * Manifest import into a real journal: additions, changes and deletions become events;
 * re-importing is a no-op; bad input loses nothing.
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

#include "manifests.h"

typedef struct {
    char dir[64];   /* manifests */
    char jdir[128]; /* journal */
    jnl_t *j;
    val_catalog_t *cat;
} fx_t;

static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0)
        fail_msg("command failed: %s", cmd);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/bindy-import-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->jdir, sizeof(f->jdir), "%s.journal", f->dir);
    const char *src = getenv("BINDY_SOURCE_DIR");
    sh("cp %s/deploy/examples/*.yaml %s/", src ? src : ".", f->dir);
    jnl_opts_t o;
    jnl_opts_init(&o);
    o.flags = JNL_OPEN_CREATE;
    bd_err_t err;
    if (jnl_open(f->jdir, &o, &f->j, &err) != BD_OK || val_catalog_new(&f->cat, &err) != BD_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    jnl_close(f->j);
    val_catalog_free(f->cat);
    sh("rm -rf %s %s", f->dir, f->jdir);
    free(f);
    return 0;
}

static msrc_result_t import(fx_t *f)
{
    msrc_result_t r;
    bd_err_t err;
    const char *paths[] = {f->dir};
    if (msrc_import(f->j, f->cat, paths, 1, false, NULL, NULL, &r, &err) != BD_OK)
        fail_msg("import: %s", err.msg);
    return r;
}

static json_t *journaled(fx_t *f, const char *kind, const char *name)
{
    jnl_state_t *st = NULL;
    assert_int_equal(jnl_state_at(f->j, JNL_SEQ_LAST, &st, NULL), BD_OK);
    const jnl_event_t *ev = jnl_state_find(st, "bindy.firestoned.io/v1beta1", kind, "dns-system", name);
    json_t *o = ev ? json_deep_copy(ev->object) : NULL;
    jnl_state_free(st);
    return o;
}

static void test_import_cycle(void **state)
{
    fx_t *f = *state;
    msrc_result_t r = import(f);
    assert_int_equal(r.added, 15);
    assert_int_equal(r.modified + r.deleted + r.invalid + r.problems, 0);

    r = import(f); /* nothing changed: nothing appended */
    assert_int_equal(r.unchanged, 15);
    assert_int_equal(r.added + r.modified + r.deleted, 0);
    assert_int_equal(r.last_seq, 0);

    /* edit one record */
    sh("sed -i 's/192.0.2.11/192.0.2.99/' %s/example-com.yaml", f->dir);
    r = import(f);
    assert_int_equal(r.modified, 1);
    assert_int_equal(r.added + r.deleted, 0);
    json_t *www = journaled(f, "ARecord", "www-example-com");
    assert_non_null(www);
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(json_object_get(www, "spec"), "ipv4Addresses"), 1)),
                        "192.0.2.99");
    json_decref(www);

    /* an invalid version: reported, the journaled one is kept, not deleted */
    sh("sed -i 's/192.0.2.99/192.0.2.300/' %s/example-com.yaml", f->dir);
    r = import(f);
    assert_int_equal(r.invalid, 1);
    assert_int_equal(r.modified + r.deleted, 0);
    www = journaled(f, "ARecord", "www-example-com");
    assert_non_null(www);
    json_decref(www);

    /* a malformed file holds every deletion */
    sh("rm %s/regional.yaml && printf 'kind: [\\n' > %s/broken.yaml", f->dir, f->dir);
    r = import(f);
    assert_true(r.deletions_held);
    assert_int_equal(r.deleted, 0);
    json_t *kept = journaled(f, "Bind9Instance", "primary-us-east");
    assert_non_null(kept);
    json_decref(kept);

    /* once every file parses, the deletions happen */
    sh("rm %s/broken.yaml", f->dir);
    r = import(f);
    assert_int_equal(r.deleted, 3);
    assert_null(journaled(f, "Bind9Instance", "primary-us-east"));

    bd_err_t err;
    jnl_verify_report_t vr;
    assert_int_equal(jnl_verify(f->j, &vr, &err), BD_OK);
}

static void test_dry_run_appends_nothing(void **state)
{
    fx_t *f = *state;
    msrc_result_t r;
    const char *paths[] = {f->dir};
    assert_int_equal(msrc_import(f->j, f->cat, paths, 1, true, NULL, NULL, &r, NULL), BD_OK);
    assert_int_equal(r.added, 15);
    uint64_t first = 0, last = 0;
    assert_int_equal(jnl_bounds(f->j, &first, &last, NULL), BD_OK);
    assert_int_equal(last, 0);
}

/* Local mode's cached import: the same journal as a full import, reading only files that
 * changed, noticing appends it did not make, refusing an object repeated in another file. */
static msrc_result_t import_cached(fx_t *f, msrc_cache_t *c)
{
    msrc_result_t r;
    bd_err_t err;
    const char *paths[] = {f->dir};
    if (msrc_import_cached(f->j, f->cat, paths, 1, false, c, NULL, NULL, &r, &err) != BD_OK)
        fail_msg("import: %s", err.msg);
    return r;
}

static void test_cached_import(void **state)
{
    fx_t *f = *state;
    msrc_cache_t *c = NULL;
    assert_int_equal(msrc_cache_new(&c), BD_OK);
    msrc_result_t r = import_cached(f, c);
    assert_int_equal(r.added, 15);
    r = import_cached(f, c);
    assert_int_equal(r.unchanged, 15);
    assert_int_equal(r.last_seq, 0);

    /* rewritten in place, same size, at once (same inode, maybe the same time tick) */
    sh("sed 's/192.0.2.11/192.0.2.77/' %s/example-com.yaml > %s/x.tmp && cat %s/x.tmp > %s/example-com.yaml "
       "&& rm %s/x.tmp",
       f->dir, f->dir, f->dir, f->dir, f->dir);
    r = import_cached(f, c);
    assert_int_equal(r.modified, 1);
    json_t *www = journaled(f, "ARecord", "www-example-com");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(json_object_get(www, "spec"), "ipv4Addresses"), 1)),
                        "192.0.2.77");
    json_decref(www);

    /* someone else imports a change: the cache's state is read again, nothing is doubled */
    sh("sed -i 's/192.0.2.77/192.0.2.78/' %s/example-com.yaml", f->dir);
    r = import(f);
    assert_int_equal(r.modified, 1);
    r = import_cached(f, c);
    assert_int_equal(r.added + r.modified + r.deleted, 0);
    assert_int_equal(r.unchanged, 15);

    /* a copy of a file in another file: its objects are refused, nothing is appended */
    sh("cp %s/regional.yaml %s/zz-copy.yaml", f->dir, f->dir);
    r = import_cached(f, c);
    assert_int_equal(r.added + r.modified + r.deleted, 0);
    assert_int_equal(r.invalid, 3);
    assert_false(r.deletions_held);

    /* the original goes: its objects now come from the copy, nothing is deleted */
    sh("rm %s/regional.yaml", f->dir);
    r = import_cached(f, c);
    assert_int_equal(r.added + r.modified + r.deleted + r.invalid, 0);
    /* and the copy: deleted, in key order */
    sh("rm %s/zz-copy.yaml", f->dir);
    r = import_cached(f, c);
    assert_int_equal(r.deleted, 3);
    assert_null(journaled(f, "Bind9Instance", "primary-us-east"));
    static const char *const gone[] = {"primary-us-east", "secondary-eu-west", "secondary-us-west"};
    for (uint64_t k = 0; k < 3; k++) {
        jnl_record_t *rec = NULL;
        bd_err_t err;
        assert_int_equal(jnl_get(f->j, r.last_seq - 2 + k, 0, &rec, &err), BD_OK);
        assert_int_equal(rec->ev.type, JNL_DELETED);
        assert_string_equal(rec->ev.name, gone[k]);
        jnl_record_free(rec);
    }
    msrc_cache_free(c);

    /* the journal holds what a full import of the directory would find: nothing to do */
    r = import(f);
    assert_int_equal(r.added + r.modified + r.deleted, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_import_cycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dry_run_appends_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cached_import, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
