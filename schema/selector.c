#include "sort.h"
#include "selector.h"

#include <stdlib.h>
#include <string.h>

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int req_cmp(const void *a, const void *b)
{
    const sel_req_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (int)x->op - (int)y->op;
}

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const sel_label_t *)a)->key, ((const sel_label_t *)b)->key);
}

void sel_deinit(sel_t *sel)
{
    if (sel == NULL)
        return;
    for (size_t i = 0; i < sel->n; i++) {
        free(sel->reqs[i].key);
        for (size_t j = 0; j < sel->reqs[i].nvalues; j++)
            free(sel->reqs[i].values[j]);
        free(sel->reqs[i].values);
    }
    free(sel->reqs);
    sel->reqs = NULL;
    sel->n = 0;
}

static int add_req(sel_t *sel, const char *key, sel_op_t op, const json_t *values, const char *single)
{
    sel_req_t *nr = realloc(sel->reqs, (sel->n + 1) * sizeof(*nr));
    if (nr == NULL)
        return BD_ENOMEM;
    sel->reqs = nr;
    sel_req_t *r = &sel->reqs[sel->n];
    memset(r, 0, sizeof(*r));
    r->op = op;
    r->key = strdup(key);
    if (r->key == NULL)
        return BD_ENOMEM;
    sel->n++;
    size_t n = single ? 1 : json_array_size(values);
    if (n == 0)
        return BD_OK;
    r->values = calloc(n, sizeof(*r->values));
    if (r->values == NULL)
        return BD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *v = single ? single : json_string_value(json_array_get(values, i));
        if (v == NULL)
            return BD_EINVAL;
        r->values[i] = strdup(v);
        if (r->values[i] == NULL)
            return BD_ENOMEM;
        r->nvalues++;
    }
    bd_qsort(r->values, r->nvalues, sizeof(*r->values), str_cmp);
    return BD_OK;
}

int sel_from_json(const json_t *obj, sel_t *sel, bd_err_t *err)
{
    memset(sel, 0, sizeof(*sel));
    if (obj == NULL || json_is_null(obj))
        return BD_OK;
    int rc = BD_OK;
    if (!json_is_object(obj)) {
        rc = bd_err_set(err, BD_EINVAL, "selector: must be an object");
        goto fail;
    }
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)json_object_get(obj, "matchLabels"), key, val) {
        if (!json_is_string(val)) {
            rc = bd_err_set(err, BD_EINVAL, "selector.matchLabels.%s: must be a string", key);
            goto fail;
        }
        if ((rc = add_req(sel, key, SEL_IN, NULL, json_string_value(val))) != BD_OK)
            goto nomem;
    }
    size_t i;
    const json_t *ex;
    json_array_foreach(json_object_get(obj, "matchExpressions"), i, ex) {
        const char *k = json_string_value(json_object_get(ex, "key"));
        const char *op = json_string_value(json_object_get(ex, "operator"));
        const json_t *values = json_object_get(ex, "values");
        static const char *const ops[] = {"In", "NotIn", "Exists", "DoesNotExist"};
        int opi = -1;
        for (int o = 0; op && o < 4; o++)
            if (strcmp(op, ops[o]) == 0)
                opi = o;
        if (k == NULL || opi < 0) {
            rc = bd_err_set(err, BD_EINVAL, "selector.matchExpressions[%zu]: needs a key and an "
                            "operator In, NotIn, Exists or DoesNotExist", i);
            goto fail;
        }
        size_t nv = json_array_size(values);
        if ((opi <= SEL_NOTIN && nv == 0) || (opi >= SEL_EXISTS && nv != 0)) {
            rc = bd_err_set(err, BD_EINVAL, "selector.matchExpressions[%zu].values: %s", i,
                            opi <= SEL_NOTIN ? "must not be empty for In and NotIn"
                                             : "must be empty for Exists and DoesNotExist");
            goto fail;
        }
        rc = add_req(sel, k, (sel_op_t)opi, values, NULL);
        if (rc == BD_EINVAL) {
            rc = bd_err_set(err, BD_EINVAL, "selector.matchExpressions[%zu].values: must be strings", i);
            goto fail;
        }
        if (rc != BD_OK)
            goto nomem;
    }
    bd_qsort(sel->reqs, sel->n, sizeof(*sel->reqs), req_cmp);
    return BD_OK;
nomem:
    rc = bd_err_set(err, BD_ENOMEM, "selector: out of memory");
fail:
    sel_deinit(sel);
    return rc;
}

bool sel_is_empty(const sel_t *sel) { return sel->n == 0; }

int sel_labels_from_json(const json_t *obj, sel_labels_t *labels, bd_err_t *err)
{
    memset(labels, 0, sizeof(*labels));
    if (obj == NULL || json_is_null(obj))
        return BD_OK;
    if (!json_is_object(obj))
        return bd_err_set(err, BD_EINVAL, "metadata.labels: must be a map of strings");
    size_t n = json_object_size(obj);
    labels->items = calloc(n ? n : 1, sizeof(*labels->items));
    if (labels->items == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        if (!json_is_string(val)) {
            sel_labels_deinit(labels);
            return bd_err_set(err, BD_EINVAL, "metadata.labels.%s: must be a string", key);
        }
        sel_label_t *l = &labels->items[labels->n];
        l->key = strdup(key);
        l->value = strdup(json_string_value(val));
        labels->n++;
        if (l->key == NULL || l->value == NULL) {
            sel_labels_deinit(labels);
            return bd_err_set(err, BD_ENOMEM, "out of memory");
        }
    }
    bd_qsort(labels->items, labels->n, sizeof(*labels->items), label_cmp);
    return BD_OK;
}

void sel_labels_deinit(sel_labels_t *labels)
{
    if (labels == NULL)
        return;
    for (size_t i = 0; i < labels->n; i++) {
        free(labels->items[i].key);
        free(labels->items[i].value);
    }
    free(labels->items);
    labels->items = NULL;
    labels->n = 0;
}

const char *sel_labels_get(const sel_labels_t *labels, const char *key)
{
    sel_label_t k = {.key = (char *)key};
    const sel_label_t *hit = bd_bsearch(&k, labels->items, labels->n, sizeof(*labels->items), label_cmp);
    return hit ? hit->value : NULL;
}

bool sel_matches(const sel_t *sel, const sel_labels_t *labels)
{
    for (size_t i = 0; i < sel->n; i++) {
        const sel_req_t *r = &sel->reqs[i];
        const char *v = sel_labels_get(labels, r->key);
        bool in = false;
        if (v != NULL && r->nvalues > 0) {
            const char *key = v;
            in = bd_bsearch(&key, r->values, r->nvalues, sizeof(*r->values), str_cmp) != NULL;
        }
        switch (r->op) {
        case SEL_IN:
            if (!in)
                return false;
            break;
        case SEL_NOTIN:
            if (in)
                return false;
            break;
        case SEL_EXISTS:
            if (v == NULL)
                return false;
            break;
        case SEL_DOESNOTEXIST:
            if (v != NULL)
                return false;
            break;
        }
    }
    return true;
}
