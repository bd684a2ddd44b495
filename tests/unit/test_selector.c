/* Label selectors: apimachinery semantics for matchLabels and every operator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "selector.h"

static bool match(const char *selector_json, const char *labels_json)
{
    json_error_t je;
    json_t *s = json_loads(selector_json, JSON_DECODE_ANY, &je);
    json_t *l = json_loads(labels_json, 0, &je);
    assert_non_null(l);
    sel_t sel;
    sel_labels_t labels;
    bd_err_t err;
    assert_int_equal(sel_from_json(s, &sel, &err), BD_OK);
    assert_int_equal(sel_labels_from_json(l, &labels, &err), BD_OK);
    bool m = sel_matches(&sel, &labels);
    sel_deinit(&sel);
    sel_labels_deinit(&labels);
    json_decref(s);
    json_decref(l);
    return m;
}

static void test_table(void **state)
{
    static const struct {
        const char *sel, *labels;
        bool want;
    } cases[] = {
        {"{}", "{}", true},
        {"null", "{\"a\":\"b\"}", true},
        {"{\"matchLabels\":{\"dns-role\":\"primary\"}}", "{\"dns-role\":\"primary\"}", true},
        {"{\"matchLabels\":{\"dns-role\":\"primary\"}}", "{\"dns-role\":\"secondary\"}", false},
        {"{\"matchLabels\":{\"dns-role\":\"primary\"}}", "{}", false},
        {"{\"matchLabels\":{\"a\":\"1\",\"b\":\"2\"}}", "{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"}", true},
        {"{\"matchLabels\":{\"a\":\"1\",\"b\":\"2\"}}", "{\"a\":\"1\"}", false},
        {"{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"In\",\"values\":[\"x\",\"y\"]}]}", "{\"r\":\"y\"}", true},
        {"{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"In\",\"values\":[\"x\",\"y\"]}]}", "{\"r\":\"z\"}", false},
        {"{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"In\",\"values\":[\"x\"]}]}", "{}", false},
        {"{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"NotIn\",\"values\":[\"x\"]}]}", "{\"r\":\"y\"}", true},
        {"{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"NotIn\",\"values\":[\"x\"]}]}", "{\"r\":\"x\"}", false},
        {"{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"NotIn\",\"values\":[\"x\"]}]}", "{}", true},
        {"{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"Exists\"}]}", "{\"r\":\"\"}", true},
        {"{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"Exists\"}]}", "{}", false},
        {"{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"DoesNotExist\"}]}", "{}", true},
        {"{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"DoesNotExist\"}]}", "{\"r\":\"a\"}", false},
        {"{\"matchLabels\":{\"a\":\"1\"},\"matchExpressions\":[{\"key\":\"b\",\"operator\":\"Exists\"}]}",
         "{\"a\":\"1\"}", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++)
        if (match(cases[i].sel, cases[i].labels) != cases[i].want)
            fail_msg("case %zu: %s on %s should be %d", i, cases[i].sel, cases[i].labels, cases[i].want);
}

static void test_invalid_selectors(void **state)
{
    static const char *const bad[] = {
        "{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"Near\",\"values\":[\"x\"]}]}",
        "{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"In\"}]}",
        "{\"matchExpressions\":[{\"key\":\"r\",\"operator\":\"Exists\",\"values\":[\"x\"]}]}",
        "{\"matchExpressions\":[{\"operator\":\"Exists\"}]}",
        "{\"matchLabels\":{\"a\":1}}",
        "[]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        json_error_t je;
        json_t *s = json_loads(bad[i], 0, &je);
        sel_t sel;
        bd_err_t err = {0};
        assert_int_equal(sel_from_json(s, &sel, &err), BD_EINVAL);
        assert_true(strlen(err.msg) > 0);
        json_decref(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_invalid_selectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
