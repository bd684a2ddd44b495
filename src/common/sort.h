/*
 * sort.h - qsort/bsearch that accept empty arrays. The C library declares their base
 * nonnull even for zero elements, and an empty vector here is often a NULL pointer.
 */
#ifndef BD_SORT_H
#define BD_SORT_H

#include <stdlib.h>

static inline void bd_qsort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
    if (n > 1)
        qsort(base, n, size, cmp);
}

static inline void *bd_bsearch(const void *key, const void *base, size_t n, size_t size,
                               int (*cmp)(const void *, const void *))
{
    return n > 0 ? bsearch(key, base, n, size, cmp) : NULL;
}

#endif
