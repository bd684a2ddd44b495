#include "hmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "sort.h"

typedef struct {
    char *key; /* NULL: empty slot */
    void *value;
    uint64_t hash;
} slot_t;

struct bd_hmap {
    slot_t *slots;
    size_t cap; /* power of two */
    size_t count;
};

/* FNV-1a: short keys, no adversary that can choose them faster than the API server
 * rate-limits them; the map grows at 50% load so probes stay short. */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

bd_hmap_t *bd_hmap_new(void)
{
    bd_hmap_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->cap = 16;
    m->slots = calloc(m->cap, sizeof(*m->slots));
    if (m->slots == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void bd_hmap_free(bd_hmap_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->cap && m->count > 0; i++)
        if (m->slots[i].key != NULL) { /* free(NULL) is still a call: most slots are empty */
            free(m->slots[i].key);
            m->count--;
        }
    free(m->slots);
    free(m);
}

size_t bd_hmap_count(const bd_hmap_t *m) { return m->count; }

void bd_hmap_clear(bd_hmap_t *m)
{
    if (m == NULL || m->count == 0)
        return;
    for (size_t i = 0; i < m->cap && m->count > 0; i++)
        if (m->slots[i].key != NULL) {
            free(m->slots[i].key);
            m->count--;
        }
    /* A table that grew past 256 slots goes back to 16, so that an empty set is not a
     * long walk at the next clear; if that allocation fails the old one is kept. */
    slot_t *small = m->cap > 256 ? calloc(16, sizeof(*small)) : NULL;
    if (small != NULL) {
        free(m->slots);
        m->slots = small;
        m->cap = 16;
    } else {
        memset(m->slots, 0, m->cap * sizeof(*m->slots));
    }
}

static size_t find(const bd_hmap_t *m, const char *key, uint64_t h)
{
    size_t mask = m->cap - 1, i = (size_t)h & mask;
    while (m->slots[i].key != NULL && (m->slots[i].hash != h || strcmp(m->slots[i].key, key) != 0))
        i = (i + 1) & mask;
    return i;
}

void *bd_hmap_get(const bd_hmap_t *m, const char *key)
{
    size_t i = find(m, key, hash_str(key));
    return m->slots[i].key ? m->slots[i].value : NULL;
}

static int grow(bd_hmap_t *m)
{
    size_t ncap = m->cap * 2;
    slot_t *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return BD_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == NULL)
            continue;
        size_t j = (size_t)m->slots[i].hash & (ncap - 1);
        while (ns[j].key != NULL)
            j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return BD_OK;
}

int bd_hmap_put(bd_hmap_t *m, const char *key, void *value, void **old)
{
    if (old)
        *old = NULL;
    uint64_t h = hash_str(key);
    size_t i = find(m, key, h);
    if (m->slots[i].key != NULL) {
        if (old)
            *old = m->slots[i].value;
        m->slots[i].value = value;
        return BD_OK;
    }
    if ((m->count + 1) * 2 > m->cap) {
        if (grow(m) != BD_OK)
            return BD_ENOMEM;
        i = find(m, key, h);
    }
    char *copy = strdup(key);
    if (copy == NULL)
        return BD_ENOMEM;
    m->slots[i] = (slot_t){copy, value, h};
    m->count++;
    return BD_OK;
}

void *bd_hmap_del(bd_hmap_t *m, const char *key)
{
    uint64_t h = hash_str(key);
    size_t i = find(m, key, h), mask = m->cap - 1;
    if (m->slots[i].key == NULL)
        return NULL;
    void *value = m->slots[i].value;
    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->count--;
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->slots[j].key == NULL)
            break;
        size_t home = (size_t)m->slots[j].hash & mask;
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            m->slots[i] = m->slots[j];
            m->slots[j].key = NULL;
            i = j;
        }
    }
    return value;
}

int bd_hmap_next(const bd_hmap_t *m, size_t *pos, const char **key, void **value)
{
    while (*pos < m->cap) {
        const slot_t *s = &m->slots[(*pos)++];
        if (s->key != NULL) {
            if (key)
                *key = s->key;
            if (value)
                *value = s->value;
            return 1;
        }
    }
    return 0;
}

const char **bd_hmap_keys_sorted(const bd_hmap_t *m, size_t *n)
{
    *n = m->count;
    if (m->count == 0)
        return NULL;
    const char **keys = malloc(m->count * sizeof(*keys));
    if (keys == NULL) {
        *n = 0;
        return NULL;
    }
    size_t k = 0, pos = 0;
    const char *key;
    while (bd_hmap_next(m, &pos, &key, NULL))
        keys[k++] = key;
    bd_qsort(keys, k, sizeof(*keys), bd_cmp_strp);
    return keys;
}
