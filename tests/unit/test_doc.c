/* Manifest documents: YAML/JSON to JSON values with field lines, and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "doc.h"

static doc_list_t *load(const char *text, int is_json)
{
    doc_list_t *list = NULL;
    bd_err_t err;
    assert_int_equal(doc_load_buffer("t.yaml", text, strlen(text), is_json, &list, &err), BD_OK);
    return list;
}

static void test_scalars_resolve_like_kubernetes(void **state)
{
    doc_list_t *l = load("a: 1\nb: \"1\"\nc: true\nd: yes\ne: 'no'\nf: 1.5\ng: ~\nh: 0x1F\ni: 010\n"
                         "j: 10.0.0.1\nk: -7\nl: hello world\nm: !!str 12\nn: .5\n",
                         0);
    assert_null(doc_list_error(l, NULL));
    assert_int_equal(doc_list_count(l), 1);
    json_t *v = doc_value(doc_list_get(l, 0));
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
    assert_string_equal(json_string_value(json_object_get(v, "b")), "1");
    assert_true(json_is_true(json_object_get(v, "c")));
    assert_true(json_is_true(json_object_get(v, "d")));
    assert_string_equal(json_string_value(json_object_get(v, "e")), "no");
    assert_true(json_is_real(json_object_get(v, "f")));
    assert_true(json_is_null(json_object_get(v, "g")));
    assert_int_equal(json_integer_value(json_object_get(v, "h")), 31);
    assert_int_equal(json_integer_value(json_object_get(v, "i")), 8);
    assert_string_equal(json_string_value(json_object_get(v, "j")), "10.0.0.1");
    assert_int_equal(json_integer_value(json_object_get(v, "k")), -7);
    assert_string_equal(json_string_value(json_object_get(v, "l")), "hello world");
    assert_string_equal(json_string_value(json_object_get(v, "m")), "12");
    assert_true(json_is_real(json_object_get(v, "n")));
    doc_list_free(l);
}

static void test_lines_of_fields(void **state)
{
    doc_list_t *l = load("# comment\napiVersion: v1\nkind: X\nspec:\n  list:\n    - 1\n    - 2\n"
                         "  map:\n    \"a.b/c\": x\n---\nkind: Y\nmetadata:\n  name: y\n",
                         0);
    assert_int_equal(doc_list_count(l), 2);
    const doc_t *d = doc_list_get(l, 0);
    assert_int_equal(doc_start_line(d), 2);
    assert_int_equal(doc_line(d, "kind"), 3);
    assert_int_equal(doc_line(d, "spec.list[1]"), 7);
    assert_int_equal(doc_line(d, "spec.map[\"a.b/c\"]"), 9);
    assert_int_equal(doc_line(d, "spec.list[9].absent"), 5); /* nearest enclosing field */
    assert_int_equal(doc_line(doc_list_get(l, 1), "metadata.name"), 13);
    doc_list_free(l);
}

static void test_kind_list_is_expanded(void **state)
{
    doc_list_t *l = load("apiVersion: v1\nkind: List\nitems:\n- kind: A\n  spec:\n    x: 1\n- kind: B\n", 0);
    assert_int_equal(doc_list_count(l), 2);
    assert_string_equal(json_string_value(json_object_get(doc_value(doc_list_get(l, 0)), "kind")), "A");
    assert_int_equal(doc_line(doc_list_get(l, 0), "spec.x"), 6);
    assert_int_equal(doc_start_line(doc_list_get(l, 1)), 7);
    doc_list_free(l);
}

static void test_json(void **state)
{
    doc_list_t *l = load("{\"kind\": \"A\", \"n\": 12345678901234, \"r\": 1.0}", 1);
    assert_null(doc_list_error(l, NULL));
    json_t *v = doc_value(doc_list_get(l, 0));
    assert_int_equal(json_integer_value(json_object_get(v, "n")), 12345678901234LL);
    assert_true(json_is_real(json_object_get(v, "r")));
    doc_list_free(l);

    l = load("{\"kind\": \"A\", \"kind\": \"B\"}", 1);
    assert_non_null(doc_list_error(l, NULL));
    doc_list_free(l);
}

static void expect_problem(const char *text, const char *needle, int line)
{
    doc_list_t *l = load(text, 0);
    int got_line = -1;
    const char *err = doc_list_error(l, &got_line);
    if (err == NULL) {
        doc_list_free(l);
        fail_msg("no problem reported for: %.60s", text);
    }
    int mentions = strstr(err, needle) != NULL;
    char copy[512];
    snprintf(copy, sizeof(copy), "%s", err);
    doc_list_free(l);
    if (!mentions)
        fail_msg("problem \"%s\" does not mention \"%s\"", copy, needle);
    if (line > 0)
        assert_int_equal(got_line, line);
}

static void test_bad_input_is_reported_not_crashed(void **state)
{
    expect_problem("a: [1, 2\n", "yaml", 0);
    expect_problem("a: 1\na: 2\n", "duplicate key", 2);
    expect_problem("- 1\n- 2\n", "must be a mapping", 1);
    expect_problem("a: 99999999999999999999\n", "out of range", 1);
    expect_problem("a: .inf\n", "NaN", 1);
    expect_problem("a: *nope\n", "yaml", 0);
    expect_problem("? [1]\n: 2\n", "keys must be strings", 0);

    /* deep nesting */
    size_t depth = 200;
    char *deep = malloc(depth * 2 + 16);
    size_t o = 0;
    o += (size_t)sprintf(deep, "a: ");
    for (size_t i = 0; i < depth; i++)
        deep[o++] = '[';
    for (size_t i = 0; i < depth; i++)
        deep[o++] = ']';
    deep[o++] = '\n';
    deep[o] = '\0';
    expect_problem(deep, "nesting deeper", 1);
    free(deep);

    /* a huge scalar */
    size_t big = DOC_MAX_SCALAR_BYTES + 10;
    char *huge = malloc(big + 8);
    memcpy(huge, "a: ", 3);
    memset(huge + 3, 'x', big);
    huge[3 + big] = '\0';
    expect_problem(huge, "longer than", 1);
    free(huge);

    /* billion laughs */
    const char *laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                         "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                         "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    expect_problem(laughs, "aliases expand", 0);

    /* documents before the problem are kept */
    doc_list_t *l = load("kind: A\n---\nkind: B\n---\n  bad: [\n", 0);
    assert_int_equal(doc_list_count(l), 2);
    assert_non_null(doc_list_error(l, NULL));
    doc_list_free(l);
}

static void test_aliases_within_limits_work(void **state)
{
    doc_list_t *l = load("base: &b {x: 1}\ncopy: *b\n", 0);
    assert_null(doc_list_error(l, NULL));
    json_t *v = doc_value(doc_list_get(l, 0));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(v, "copy"), "x")), 1);
    doc_list_free(l);
}

static void test_unreadable_file(void **state)
{
    doc_list_t *l = NULL;
    bd_err_t err;
    assert_int_equal(doc_load_file("/nonexistent/x.yaml", &l, &err), BD_EIO);
    assert_null(l);
    assert_non_null(strstr(err.msg, "/nonexistent/x.yaml"));
}

/* A stream of n documents of ~70 bytes lines: a record with a block scalar, an anchor
 * and an alias every doc, a `kind: List` every 100th; a doc starts on line 8*i + 1.
 * bad: document index made malformed (-1: none). */
static char *big_stream(int n, int bad, size_t *len)
{
    size_t cap = (size_t)n * 400 + 64, o = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    for (int i = 0; i < n; i++) {
        if (i % 100 == 99)
            o += (size_t)snprintf(b + o, cap - o,
                                  "---\nkind: List\nitems:\n- {kind: ARecord, metadata: {name: l%d}}\n"
                                  "# comment\n# comment\n# comment\n# comment\n",
                                  i);
        else
            o += (size_t)snprintf(b + o, cap - o,
                                  "---\nkind: ARecord\nmetadata: {name: r%d, labels: &l {zone: example.com}}\n"
                                  "spec:\n  text: |\n    --- not a marker: indented\n  copy: *l\n%s\n",
                                  i, i == bad ? "  broken: [unclosed" : "  n: 1");
    }
    *len = o;
    return b;
}

/* A stream above DOC_SPLIT_MIN_BYTES is parsed by two threads: documents, lines and
 * errors are those of one parser. */
static void test_big_stream_split(void **state)
{
    (void)state;
    int n = 5000;
    size_t len;
    char *text = big_stream(n, -1, &len);
    assert_true(len >= 2 * DOC_SPLIT_MIN_BYTES);
    doc_list_t *l = NULL;
    bd_err_t err;
    assert_int_equal(doc_load_buffer("big.yaml", text, len, 0, &l, &err), BD_OK);
    assert_null(doc_list_error(l, NULL));
    assert_int_equal(doc_list_count(l), (size_t)n);
    for (int i = 0; i < n; i++) {
        const doc_t *d = doc_list_get(l, (size_t)i);
        json_t *md = json_object_get(doc_value(d), "metadata");
        char want[32];
        snprintf(want, sizeof(want), i % 100 == 99 ? "l%d" : "r%d", i);
        assert_string_equal(json_string_value(json_object_get(md, "name")), want);
        if (i % 100 != 99) {
            assert_int_equal(doc_start_line(d), 8 * i + 2);
            assert_int_equal(doc_line(d, "spec.copy"), 8 * i + 7);
            assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(doc_value(d), "spec"),
                                                                                  "copy"),
                                                                  "zone")),
                                "example.com");
        }
    }
    doc_list_free(l);
    free(text);

    /* directives (each after an explicit document end, with a comment before the marker):
     * no marker right after one is a place to cut */
    size_t cap = 5000 * 120 + 64, o = 0;
    text = malloc(cap);
    assert_non_null(text);
    for (int i = 0; i < 5000; i++)
        o += (size_t)snprintf(text + o, cap - o, "%s%%YAML 1.1\n# c\n\n---\nkind: ARecord\nmetadata: {name: d%d}\n",
                              i ? "...\n" : "", i);
    assert_true(o >= DOC_SPLIT_MIN_BYTES);
    assert_int_equal(doc_load_buffer("dir.yaml", text, o, 0, &l, &err), BD_OK);
    assert_null(doc_list_error(l, NULL));
    assert_int_equal(doc_list_count(l), 5000);
    doc_list_free(l);
    free(text);

    /* an error in the second half: the documents before it, its absolute line */
    text = big_stream(n, 4000, &len);
    assert_int_equal(doc_load_buffer("big.yaml", text, len, 0, &l, &err), BD_OK);
    int line = 0;
    assert_non_null(doc_list_error(l, &line));
    assert_true(line >= 8 * 4000 + 8 && line <= 8 * 4000 + 9);
    assert_int_equal(doc_list_count(l), 4000);
    doc_list_free(l);
    free(text);
    /* in the first half: nothing after it, though the second half parsed */
    text = big_stream(n, 10, &len);
    assert_int_equal(doc_load_buffer("big.yaml", text, len, 0, &l, &err), BD_OK);
    assert_non_null(doc_list_error(l, &line));
    assert_true(line >= 8 * 10 + 8 && line <= 8 * 10 + 9);
    assert_int_equal(doc_list_count(l), 10);
    doc_list_free(l);
    free(text);
}

static void test_paths(void **state)
{
    char p[DOC_PATH_MAX] = "";
    doc_path_key(p, "spec");
    doc_path_key(p, "ipv4Addresses");
    doc_path_index(p, 1);
    assert_string_equal(p, "spec.ipv4Addresses[1]");
    doc_path_key(p, "app.kubernetes.io/name");
    assert_string_equal(p, "spec.ipv4Addresses[1][\"app.kubernetes.io/name\"]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars_resolve_like_kubernetes),
        cmocka_unit_test(test_lines_of_fields),
        cmocka_unit_test(test_kind_list_is_expanded),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_bad_input_is_reported_not_crashed),
        cmocka_unit_test(test_aliases_within_limits_work),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_big_stream_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
