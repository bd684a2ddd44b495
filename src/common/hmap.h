/*
 * hmap.h - a string-keyed hash map (open addressing, linear probing).
 *
 * Keys are copied and owned by the map; values are borrowed pointers the caller manages.
 * Iteration order is the table's and depends on insertion history: code whose output
 * must be deterministic (the projector, the journal) collects keys and sorts them
 * (bd_hmap_keys_sorted) instead of relying on it.
 */
#ifndef BD_HMAP_H
#define BD_HMAP_H

#include <stddef.h>

typedef struct bd_hmap bd_hmap_t;

/* New empty map, or NULL on allocation failure. Free with bd_hmap_free. */
bd_hmap_t *bd_hmap_new(void);
/* Frees the map and its keys; values are not touched. NULL is a no-op. */
void bd_hmap_free(bd_hmap_t *m);

size_t bd_hmap_count(const bd_hmap_t *m);

/* Remove every entry (the keys are freed, the values are the caller's), keeping the
 * table unless it grew large: for the sets a caller empties after every event. */
void bd_hmap_clear(bd_hmap_t *m);
/* Borrowed value or NULL. */
void *bd_hmap_get(const bd_hmap_t *m, const char *key);
/* Insert or replace. *old (if non-NULL) gets the replaced value or NULL.
 * Returns 0 or BD_ENOMEM (the map is unchanged then). */
int bd_hmap_put(bd_hmap_t *m, const char *key, void *value, void **old);
/* Remove; returns the removed value or NULL. */
void *bd_hmap_del(bd_hmap_t *m, const char *key);

/* Iterate: start with *pos = 0; returns 0 at the end. Do not modify the map meanwhile. */
int bd_hmap_next(const bd_hmap_t *m, size_t *pos, const char **key, void **value);

/* All keys (borrowed) sorted by strcmp in a new array of bd_hmap_count() entries
 * (free() it). NULL when the map is empty or on allocation failure (*n says which). */
const char **bd_hmap_keys_sorted(const bd_hmap_t *m, size_t *n);

#endif
