/*
 * selector.h - Kubernetes label selectors (metav1.LabelSelector), implemented once.
 *
 * matchLabels entries become `key In (value)` requirements; all requirements must hold
 * (AND). Semantics follow apimachinery: an empty selector matches everything; NotIn and
 * DoesNotExist match objects without the key.
 */
#ifndef BD_SELECTOR_H
#define BD_SELECTOR_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

typedef enum { SEL_IN, SEL_NOTIN, SEL_EXISTS, SEL_DOESNOTEXIST } sel_op_t;

typedef struct {
    char *key;
    sel_op_t op;
    char **values; /* sorted */
    size_t nvalues;
} sel_req_t;

/* Caller storage; requirements sorted by key then operator for a stable order. */
typedef struct {
    sel_req_t *reqs;
    size_t n;
} sel_t;

/* One label; a label set is sorted by key (see sel_labels_from_json). */
typedef struct {
    char *key;
    char *value;
} sel_label_t;

typedef struct {
    sel_label_t *items;
    size_t n;
} sel_labels_t;

/* Parse a LabelSelector object into sel (caller storage, release with sel_deinit).
 * NULL or JSON null gives the empty selector. BD_EINVAL with err naming the field. */
int sel_from_json(const json_t *obj, sel_t *sel, bd_err_t *err);
void sel_deinit(sel_t *sel);

/* Parse a label map (metadata.labels) into a sorted set; release with sel_labels_deinit. */
int sel_labels_from_json(const json_t *obj, sel_labels_t *labels, bd_err_t *err);
void sel_labels_deinit(sel_labels_t *labels);
/* Borrowed value or NULL. */
const char *sel_labels_get(const sel_labels_t *labels, const char *key);

bool sel_matches(const sel_t *sel, const sel_labels_t *labels);
bool sel_is_empty(const sel_t *sel);

#endif
