/* The string hash map against a reference (a plain array), under random insert/delete and
 * an occasional clear (of a large table, which shrinks, and of a small one); bd_qsort (which
 * sorts small arrays itself) against a reference sort. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hmap.h"
#include "sort.h"

#define N 2000

static void test_random_ops_match_reference(void **state)
{
    bd_hmap_t *m = bd_hmap_new();
    assert_non_null(m);
    static intptr_t ref[N]; /* 0: absent, else value */
    memset(ref, 0, sizeof(ref));
    uint32_t x = 12345;
    size_t count = 0;
    for (int step = 0; step < 50000; step++) {
        x = x * 1103515245u + 12345u;
        int k = (int)((x >> 8) % N);
        if (step % 7919 == 7918 || step == 31) {
            bd_hmap_clear(m);
            memset(ref, 0, sizeof(ref));
            count = 0;
            assert_int_equal(bd_hmap_count(m), 0);
            continue;
        }
        char key[32];
        snprintf(key, sizeof(key), "ns/obj-%d", k);
        if ((x >> 4) & 1) {
            void *old = NULL;
            assert_int_equal(bd_hmap_put(m, key, (void *)(intptr_t)(step + 1), &old), 0);
            assert_ptr_equal(old, ref[k] ? (void *)ref[k] : NULL);
            if (!ref[k])
                count++;
            ref[k] = step + 1;
        } else {
            void *got = bd_hmap_del(m, key);
            assert_ptr_equal(got, ref[k] ? (void *)ref[k] : NULL);
            if (ref[k])
                count--;
            ref[k] = 0;
        }
        assert_int_equal(bd_hmap_count(m), count);
    }
    for (int k = 0; k < N; k++) {
        char key[32];
        snprintf(key, sizeof(key), "ns/obj-%d", k);
        assert_ptr_equal(bd_hmap_get(m, key), ref[k] ? (void *)ref[k] : NULL);
    }
    size_t n = 0;
    const char **keys = bd_hmap_keys_sorted(m, &n);
    assert_int_equal(n, count);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(keys[i - 1], keys[i]) < 0);
    free(keys);
    bd_hmap_free(m);
}

typedef struct {
    int key;
    int seq; /* position before sorting: equal keys keep their order */
    char pad[16];
} item_t;

static int item_cmp(const void *a, const void *b)
{
    const item_t *x = a, *y = b;
    return (x->key > y->key) - (x->key < y->key);
}

static void test_sort_matches_reference(void **state)
{
    uint32_t x = 777;
    for (size_t n = 0; n <= 40; n++)
        for (int round = 0; round < 50; round++) {
            item_t v[40];
            for (size_t i = 0; i < n; i++) {
                x = x * 1103515245u + 12345u;
                v[i] = (item_t){.key = (int)((x >> 8) % (round % 2 ? 5 : 1000)), .seq = (int)i};
            }
            bd_qsort(v, n, sizeof(*v), item_cmp);
            for (size_t i = 1; i < n; i++) {
                assert_true(v[i - 1].key <= v[i].key);
                if (n <= 16 && v[i - 1].key == v[i].key)
                    assert_true(v[i - 1].seq < v[i].seq); /* ours is stable (glibc's need not be) */
            }
            /* a permutation: every position is there once */
            int seen[40] = {0};
            for (size_t i = 0; i < n; i++)
                seen[v[i].seq]++;
            for (size_t i = 0; i < n; i++)
                assert_int_equal(seen[i], 1);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_random_ops_match_reference),
                                       cmocka_unit_test(test_sort_matches_reference)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
