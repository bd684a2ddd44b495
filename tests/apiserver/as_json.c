/*
 * as_json.c - JSON helpers of the API-server test double: patches, printer-column
 * JSONPath, Go-style value printing, YAML input, time, base64, UUIDs and field sets.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <yaml.h>

#include "as_internal.h"

/* ---- time --------------------------------------------------------------------------- */

void as__now_rfc3339(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int64_t as__parse_rfc3339(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

void as__human_duration(int64_t sec, char out[32])
{
    if (sec < -1) {
        snprintf(out, 32, "<invalid>");
        return;
    }
    if (sec < 0) {
        snprintf(out, 32, "0s");
        return;
    }
    if (sec < 120) {
        snprintf(out, 32, "%llds", (long long)sec);
        return;
    }
    long long min = sec / 60, hours = sec / 3600, days = hours / 24;
    if (min < 10) {
        if (sec % 60 == 0)
            snprintf(out, 32, "%lldm", min);
        else
            snprintf(out, 32, "%lldm%llds", min, (long long)(sec % 60));
    } else if (min < 180) {
        snprintf(out, 32, "%lldm", min);
    } else if (hours < 8) {
        if (min % 60 == 0)
            snprintf(out, 32, "%lldh", hours);
        else
            snprintf(out, 32, "%lldh%lldm", hours, min % 60);
    } else if (hours < 48) {
        snprintf(out, 32, "%lldh", hours);
    } else if (hours < 24 * 8) {
        if (hours % 24 == 0)
            snprintf(out, 32, "%lldd", days);
        else
            snprintf(out, 32, "%lldd%lldh", days, hours % 24);
    } else if (hours < 24 * 365 * 2) {
        snprintf(out, 32, "%lldd", days);
    } else if (hours < 24 * 365 * 8) {
        if (days % 365 == 0)
            snprintf(out, 32, "%lldy", days / 365);
        else
            snprintf(out, 32, "%lldy%lldd", days / 365, days % 365);
    } else {
        snprintf(out, 32, "%lldy", days / 365);
    }
}

/* ---- merge patch -------------------------------------------------------------------- */

json_t *as__merge_patch(const json_t *target, const json_t *patch)
{
    if (!json_is_object(patch))
        return json_deep_copy(patch);
    json_t *res = json_is_object(target) ? json_deep_copy(target) : json_object();
    if (!res)
        return NULL;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v) {
        if (json_is_null(v)) {
            json_object_del(res, k);
        } else {
            json_t *m = as__merge_patch(json_object_get(res, k), v);
            if (!m) {
                json_decref(res);
                return NULL;
            }
            json_object_set_new(res, k, m);
        }
    }
    return res;
}

void as__strip_smp_directives(json_t *p)
{
    if (json_is_array(p)) {
        size_t i;
        json_t *v;
        json_array_foreach(p, i, v) as__strip_smp_directives(v);
        return;
    }
    if (!json_is_object(p))
        return;
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(p, tmp, k, v) {
        if (k[0] == '$') {
            json_object_del(p, k);
            continue;
        }
        as__strip_smp_directives(v);
    }
}

/* The merge keys the double knows, by path from the object's root (Kubernetes declares
 * them per field with patchMergeKey; a pod's readiness gates depend on this one). */
static const char *smp_merge_key(const char *path)
{
    return strcmp(path, "status.conditions") == 0 ? "type" : NULL;
}

static json_t *smp_at(const json_t *target, const json_t *patch, const char *path);

static json_t *smp_list(const json_t *target, const json_t *patch, const char *key)
{
    json_t *res = json_is_array(target) ? json_deep_copy(target) : json_array();
    size_t i;
    json_t *item;
    json_array_foreach((json_t *)patch, i, item) {
        const char *kv = json_string_value(json_object_get(item, key));
        size_t j;
        json_t *cur = NULL;
        if (kv == NULL) { /* no merge key: Kubernetes refuses it; keep it as given */
            json_array_append(res, item);
            continue;
        }
        json_array_foreach(res, j, cur) {
            const char *ck = json_string_value(json_object_get(cur, key));
            if (ck && strcmp(ck, kv) == 0)
                break;
        }
        if (j < json_array_size(res))
            json_array_set_new(res, j, as__merge_patch(cur, item));
        else
            json_array_append(res, item);
    }
    return res;
}

static json_t *smp_at(const json_t *target, const json_t *patch, const char *path)
{
    const char *key = smp_merge_key(path);
    if (key != NULL && json_is_array(patch))
        return smp_list(target, patch, key);
    if (!json_is_object(patch))
        return json_deep_copy(patch);
    json_t *res = json_is_object(target) ? json_deep_copy(target) : json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v) {
        if (json_is_null(v)) {
            json_object_del(res, k);
            continue;
        }
        char sub[256];
        snprintf(sub, sizeof(sub), "%s%s%s", path, *path ? "." : "", k);
        json_t *m = smp_at(json_object_get(res, k), v, sub);
        if (!m) {
            json_decref(res);
            return NULL;
        }
        json_object_set_new(res, k, m);
    }
    return res;
}

json_t *as__smp(const json_t *target, const json_t *patch)
{
    return smp_at(target, patch, "");
}

/* ---- JSON patch --------------------------------------------------------------------- */

/* Split a JSON pointer into unescaped tokens (array of strings); NULL if malformed. */
static json_t *ptr_tokens(const char *p)
{
    json_t *toks = json_array();
    if (!toks)
        return NULL;
    if (*p == '\0')
        return toks;
    if (*p != '/') {
        json_decref(toks);
        return NULL;
    }
    p++;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char *t = malloc(n + 1);
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] == '~' && i + 1 < n && (p[i + 1] == '0' || p[i + 1] == '1')) {
                t[o++] = p[i + 1] == '0' ? '~' : '/';
                i++;
            } else {
                t[o++] = p[i];
            }
        }
        t[o] = '\0';
        json_array_append_new(toks, json_string(t));
        free(t);
        if (!e)
            break;
        p = e + 1;
    }
    return toks;
}

static int parse_index(const char *t, size_t max, size_t *out)
{
    if (!*t || (t[0] == '0' && t[1]))
        return -1;
    for (const char *c = t; *c; c++)
        if (!isdigit((unsigned char)*c))
            return -1;
    unsigned long long v = strtoull(t, NULL, 10);
    if (v > max)
        return -1;
    *out = (size_t)v;
    return 0;
}

/* Container that holds the last token, following all but the last. */
static json_t *ptr_parent(json_t *doc, json_t *toks)
{
    json_t *cur = doc;
    size_t n = json_array_size(toks);
    for (size_t i = 0; i + 1 < n; i++) {
        const char *t = json_string_value(json_array_get(toks, i));
        size_t idx;
        if (json_is_object(cur))
            cur = json_object_get(cur, t);
        else if (json_is_array(cur) && parse_index(t, json_array_size(cur) - 1, &idx) == 0 &&
                 json_array_size(cur) > 0)
            cur = json_array_get(cur, idx);
        else
            return NULL;
        if (!cur)
            return NULL;
    }
    return cur;
}

static json_t *ptr_get(json_t *doc, json_t *toks)
{
    if (json_array_size(toks) == 0)
        return doc;
    json_t *par = ptr_parent(doc, toks);
    const char *last = json_string_value(json_array_get(toks, json_array_size(toks) - 1));
    size_t idx;
    if (json_is_object(par))
        return json_object_get(par, last);
    if (json_is_array(par) && json_array_size(par) > 0 &&
        parse_index(last, json_array_size(par) - 1, &idx) == 0)
        return json_array_get(par, idx);
    return NULL;
}

/* add/remove on *doc; returns 0 or -1. val is stolen by add. */
static int ptr_add(json_t **doc, json_t *toks, json_t *val)
{
    if (json_array_size(toks) == 0) {
        json_decref(*doc);
        *doc = val;
        return 0;
    }
    json_t *par = ptr_parent(*doc, toks);
    const char *last = json_string_value(json_array_get(toks, json_array_size(toks) - 1));
    size_t idx;
    if (json_is_object(par))
        return json_object_set_new(par, last, val) == 0 ? 0 : -1;
    if (json_is_array(par)) {
        if (strcmp(last, "-") == 0)
            return json_array_append_new(par, val) == 0 ? 0 : -1;
        if (parse_index(last, json_array_size(par), &idx) == 0)
            return json_array_insert_new(par, idx, val) == 0 ? 0 : -1;
    }
    json_decref(val);
    return -1;
}

static int ptr_remove(json_t *doc, json_t *toks)
{
    if (json_array_size(toks) == 0)
        return -1;
    json_t *par = ptr_parent(doc, toks);
    const char *last = json_string_value(json_array_get(toks, json_array_size(toks) - 1));
    size_t idx;
    if (json_is_object(par))
        return json_object_del(par, last);
    if (json_is_array(par) && json_array_size(par) > 0 &&
        parse_index(last, json_array_size(par) - 1, &idx) == 0)
        return json_array_remove(par, idx);
    return -1;
}

json_t *as__json_patch(const json_t *doc0, const json_t *ops, char *err, size_t errlen,
                       bool *test_failed)
{
    *test_failed = false;
    if (!json_is_array(ops)) {
        snprintf(err, errlen, "a JSON patch must be an array of operations");
        return NULL;
    }
    json_t *doc = json_deep_copy(doc0);
    size_t i;
    json_t *op;
    json_array_foreach(ops, i, op) {
        const char *name = json_string_value(json_object_get(op, "op"));
        const char *path = json_string_value(json_object_get(op, "path"));
        json_t *value = json_object_get(op, "value");
        json_t *toks = path ? ptr_tokens(path) : NULL;
        int rc = -1;
        if (!name || !toks) {
            snprintf(err, errlen, "operation %zu: missing or malformed op/path", i);
            json_decref(toks);
            goto fail;
        }
        if (strcmp(name, "add") == 0 && value) {
            rc = ptr_add(&doc, toks, json_deep_copy(value));
        } else if (strcmp(name, "remove") == 0) {
            rc = ptr_remove(doc, toks);
        } else if (strcmp(name, "replace") == 0 && value) {
            if (json_array_size(toks) == 0 || ptr_get(doc, toks)) {
                if (json_array_size(toks) > 0)
                    ptr_remove(doc, toks);
                rc = ptr_add(&doc, toks, json_deep_copy(value));
            }
        } else if (strcmp(name, "move") == 0 || strcmp(name, "copy") == 0) {
            const char *from = json_string_value(json_object_get(op, "from"));
            json_t *ft = from ? ptr_tokens(from) : NULL;
            json_t *src = ft ? ptr_get(doc, ft) : NULL;
            if (src) {
                json_t *cp = json_deep_copy(src);
                if (name[0] == 'm')
                    ptr_remove(doc, ft);
                rc = ptr_add(&doc, toks, cp);
            }
            json_decref(ft);
        } else if (strcmp(name, "test") == 0 && value) {
            json_t *cur = ptr_get(doc, toks);
            /* as the API server's json-patch: an absent member tests equal to null */
            if (cur ? json_equal(cur, value) : json_is_null(value)) {
                rc = 0;
            } else {
                *test_failed = true;
                snprintf(err, errlen, "testing value %s failed", path);
                json_decref(toks);
                goto fail;
            }
        } else {
            snprintf(err, errlen, "unexpected kind of operation: %s", name);
            json_decref(toks);
            goto fail;
        }
        json_decref(toks);
        if (rc != 0) {
            snprintf(err, errlen, "%s operation does not apply: doc is missing path: \"%s\"",
                     name, path);
            goto fail;
        }
    }
    return doc;
fail:
    json_decref(doc);
    return NULL;
}

/* ---- printer-column JSONPath -------------------------------------------------------- */

static const char *jp_name(const char *p, char *buf, size_t cap)
{
    size_t n = 0;
    while (*p && *p != '.' && *p != '[' && *p != '}' && n + 1 < cap)
        buf[n++] = *p++;
    buf[n] = '\0';
    return p;
}

/* Follow a dotted path ("@.a.b" part after "@") from v. */
static const json_t *jp_follow(const json_t *v, const char *path)
{
    char name[256];
    while (*path == '.' && v) {
        path = jp_name(path + 1, name, sizeof(name));
        v = json_object_get(v, name);
    }
    return v;
}

/* Parse a filter literal: "x", 'x', numbers, true/false. */
static json_t *jp_literal(const char *s, size_t n)
{
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0])
        return json_stringn(s + 1, n - 2);
    char buf[64];
    if (n >= sizeof(buf))
        return NULL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strcmp(buf, "true") == 0)
        return json_true();
    if (strcmp(buf, "false") == 0)
        return json_false();
    char *end;
    double d = strtod(buf, &end);
    if (*end || end == buf)
        return NULL;
    return json_real(d);
}

static bool jp_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal((json_t *)a, (json_t *)b);
}

int as__jsonpath(const json_t *root, const char *path, json_t *out)
{
    char name[256];
    json_t *cur = json_array(), *next = NULL;
    json_array_append((json_t *)cur, (json_t *)root);
    const char *p = path;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '{')
        p++;
    if (*p == '$')
        p++;
    int rc = 0;
    while (*p && *p != '}') {
        next = json_array();
        size_t i;
        json_t *v;
        if (*p == '.') {
            p = jp_name(p + 1, name, sizeof(name));
            json_array_foreach(cur, i, v) {
                if (name[0] == '*' && name[1] == '\0') {
                    const char *k;
                    json_t *c;
                    if (json_is_object(v))
                        json_object_foreach(v, k, c) json_array_append(next, c);
                    continue;
                }
                json_t *c = json_object_get(v, name);
                if (c)
                    json_array_append(next, c);
            }
        } else if (*p == '[') {
            const char *close;
            if (p[1] == '?') {
                close = strstr(p, ")]");
                if (!close || p[2] != '(' || p[3] != '@') {
                    rc = -1;
                    break;
                }
                const char *expr = p + 4, *op = NULL;
                bool neq = false;
                for (const char *c = expr; c < close; c++) {
                    if ((c[0] == '=' || c[0] == '!') && c[1] == '=') {
                        op = c;
                        neq = c[0] == '!';
                        break;
                    }
                }
                char lhs[256];
                size_t ln = op ? (size_t)(op - expr) : (size_t)(close - expr);
                while (ln && isspace((unsigned char)expr[ln - 1]))
                    ln--;
                if (ln >= sizeof(lhs)) {
                    rc = -1;
                    break;
                }
                memcpy(lhs, expr, ln);
                lhs[ln] = '\0';
                json_t *lit = op ? jp_literal(op + 2, (size_t)(close - op - 2)) : NULL;
                if (op && !lit) {
                    rc = -1;
                    break;
                }
                json_array_foreach(cur, i, v) {
                    size_t j;
                    json_t *e;
                    if (!json_is_array(v))
                        continue;
                    json_array_foreach(v, j, e) {
                        const json_t *f = jp_follow(e, lhs);
                        bool keep = op ? (f && jp_equal(f, lit)) != neq : f != NULL;
                        if (keep)
                            json_array_append(next, e);
                    }
                }
                json_decref(lit);
                p = close + 2;
            } else {
                close = strchr(p, ']');
                if (!close) {
                    rc = -1;
                    break;
                }
                char idx[32];
                size_t n = (size_t)(close - p - 1);
                if (n >= sizeof(idx)) {
                    rc = -1;
                    break;
                }
                memcpy(idx, p + 1, n);
                idx[n] = '\0';
                json_array_foreach(cur, i, v) {
                    if (!json_is_array(v))
                        continue;
                    if (strcmp(idx, "*") == 0) {
                        size_t j;
                        json_t *e;
                        json_array_foreach(v, j, e) json_array_append(next, e);
                    } else {
                        long k = strtol(idx, NULL, 10);
                        if (k < 0)
                            k += (long)json_array_size(v);
                        json_t *e = k >= 0 ? json_array_get(v, (size_t)k) : NULL;
                        if (e)
                            json_array_append(next, e);
                    }
                }
                p = close + 1;
            }
        } else {
            rc = -1;
            break;
        }
        json_decref(cur);
        cur = next;
        next = NULL;
    }
    json_decref(next);
    if (rc == 0)
        json_array_extend(out, cur);
    json_decref(cur);
    return rc;
}

/* ---- Go %v ------------------------------------------------------------------------- */

static void go_fmt(const json_t *v, char **buf, size_t *len, FILE *f)
{
    (void)buf;
    (void)len;
    switch (json_typeof(v)) {
    case JSON_STRING:
        fputs(json_string_value(v), f);
        break;
    case JSON_INTEGER:
        fprintf(f, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL: {
        char tmp[40];
        double d = json_real_value(v);
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
            if (strtod(tmp, NULL) == d)
                break;
        }
        fputs(tmp, f);
        break;
    }
    case JSON_TRUE:
        fputs("true", f);
        break;
    case JSON_FALSE:
        fputs("false", f);
        break;
    case JSON_NULL:
        fputs("<nil>", f);
        break;
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        fputc('[', f);
        json_array_foreach(v, i, e) {
            if (i)
                fputc(' ', f);
            go_fmt(e, buf, len, f);
        }
        fputc(']', f);
        break;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        const char **keys = calloc(n ? n : 1, sizeof(*keys));
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e) keys[i++] = k;
        for (size_t a = 1; a < n; a++)
            for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
                const char *t = keys[b];
                keys[b] = keys[b - 1];
                keys[b - 1] = t;
            }
        fputs("map[", f);
        for (i = 0; i < n; i++) {
            if (i)
                fputc(' ', f);
            fprintf(f, "%s:", keys[i]);
            go_fmt(json_object_get(v, keys[i]), buf, len, f);
        }
        fputc(']', f);
        free(keys);
        break;
    }
    }
}

char *as__go_format(const json_t *v)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    go_fmt(v, &buf, &len, f);
    fclose(f);
    return buf;
}

/* ---- YAML --------------------------------------------------------------------------- */

static json_t *yaml_scalar(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    const char *tag = (const char *)n->tag;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
        (tag && strcmp(tag, YAML_STR_TAG) != 0 && strcmp(tag, "!") != 0 &&
         strncmp(tag, "tag:yaml.org,2002:", 18) != 0))
        return json_stringn(s, len);
    if (tag && strcmp(tag, YAML_STR_TAG) != 0) {
        /* explicit tags other than str: resolve as below */
    }
    static const char *nulls[] = {"", "~", "null", "Null", "NULL"};
    static const char *trues[] = {"true", "True", "TRUE", "y", "Y", "yes", "Yes", "YES",
                                  "on", "On", "ON"};
    static const char *falses[] = {"false", "False", "FALSE", "n", "N", "no", "No", "NO",
                                   "off", "Off", "OFF"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(*nulls); i++)
        if (strcmp(s, nulls[i]) == 0)
            return json_null();
    for (size_t i = 0; i < sizeof(trues) / sizeof(*trues); i++)
        if (strcmp(s, trues[i]) == 0)
            return json_true();
    for (size_t i = 0; i < sizeof(falses) / sizeof(*falses); i++)
        if (strcmp(s, falses[i]) == 0)
            return json_false();
    char *end;
    errno = 0;
    if (len && (isdigit((unsigned char)s[0]) || ((s[0] == '-' || s[0] == '+') && len > 1))) {
        long long ll = strtoll(s, &end, 0);
        if (*end == '\0' && errno == 0 && !(s[0] == '0' && len > 1 && isdigit((unsigned char)s[1])))
            return json_integer(ll);
        errno = 0;
        double d = strtod(s, &end);
        if (*end == '\0' && errno == 0 && strpbrk(s, ".eE"))
            return json_real(d);
    }
    if (s[0] == '.' && len > 1) {
        double d = strtod(s, &end);
        if (*end == '\0' && isdigit((unsigned char)s[1]))
            return json_real(d);
    }
    return json_stringn(s, len);
}

static json_t *yaml_node(yaml_document_t *doc, yaml_node_t *n, int depth)
{
    if (!n || depth > 100)
        return NULL;
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return yaml_scalar(n);
    case YAML_SEQUENCE_NODE: {
        json_t *a = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             it < n->data.sequence.items.top; it++) {
            json_t *v = yaml_node(doc, yaml_document_get_node(doc, *it), depth + 1);
            if (!v) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        return a;
    }
    case YAML_MAPPING_NODE: {
        json_t *o = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            if (!k || k->type != YAML_SCALAR_NODE) {
                json_decref(o);
                return NULL;
            }
            json_t *v = yaml_node(doc, yaml_document_get_node(doc, p->value), depth + 1);
            if (!v) {
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, (const char *)k->data.scalar.value, v);
        }
        return o;
    }
    default:
        return NULL;
    }
}

json_t *as__yaml_to_json(const char *buf, size_t len, char *err, size_t errlen)
{
    yaml_parser_t p;
    yaml_document_t doc;
    json_t *res = NULL;
    if (!yaml_parser_initialize(&p)) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&p, &doc)) {
        snprintf(err, errlen, "error converting YAML to JSON: yaml: line %zu: %s",
                 p.problem_mark.line + 1, p.problem ? p.problem : "syntax error");
        yaml_parser_delete(&p);
        return NULL;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    res = root ? yaml_node(&doc, root, 0) : json_null();
    if (!res)
        snprintf(err, errlen, "error converting YAML to JSON: unsupported YAML construct");
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    return res;
}

/* ---- base64, uuid ------------------------------------------------------------------- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *as__b64_encode(const unsigned char *d, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (i + 1 < n ? (unsigned)d[i + 1] << 8 : 0) |
                     (i + 2 < n ? d[i + 2] : 0);
        *o++ = b64[v >> 18 & 63];
        *o++ = b64[v >> 12 & 63];
        *o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? b64[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

unsigned char *as__b64_decode(const char *s, size_t *len)
{
    size_t n = strlen(s);
    unsigned char *out = malloc(n / 4 * 3 + 3), *o = out;
    unsigned v = 0;
    int bits = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *p = s[i] ? strchr(b64, s[i]) : NULL;
        if (s[i] == '=')
            break;
        if (!p) {
            free(out);
            return NULL;
        }
        v = v << 6 | (unsigned)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (unsigned char)(v >> bits & 0xff);
        }
    }
    *len = (size_t)(o - out);
    *o = '\0';
    return out;
}

void as__uuid(char out[37])
{
    unsigned char r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        for (size_t i = 0; i < sizeof(r); i++)
            r[i] = (unsigned char)rand();
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

/* ---- field sets --------------------------------------------------------------------- */

static const json_t *sub_schema(const json_t *schema, const char *prop)
{
    if (!schema)
        return NULL;
    const json_t *p = json_object_get(json_object_get(schema, "properties"), prop);
    if (p)
        return p;
    const json_t *ap = json_object_get(schema, "additionalProperties");
    return json_is_object(ap) ? ap : NULL;
}

/* "k:{...}" key of an associative-list element, or NULL. malloc'd. */
static char *assoc_key(const json_t *elem, const json_t *keys)
{
    json_t *k = json_object();
    size_t i;
    json_t *kn;
    json_array_foreach(keys, i, kn) {
        const char *name = json_string_value(kn);
        json_t *v = name ? json_object_get(elem, name) : NULL;
        if (v)
            json_object_set(k, name, v);
    }
    char *js = json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(k);
    if (!js)
        return NULL;
    char *res = NULL;
    if (asprintf(&res, "k:%s", js) < 0)
        res = NULL;
    free(js);
    return res;
}

static const char *list_type(const json_t *schema)
{
    return schema ? json_string_value(json_object_get(schema, "x-kubernetes-list-type")) : NULL;
}

static void fs_build(json_t *set, const json_t *obj, const json_t *schema)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v) {
        char *fk = NULL;
        if (asprintf(&fk, "f:%s", k) < 0)
            continue;
        const json_t *ss = sub_schema(schema, k);
        json_t *node = json_object();
        const char *lt = list_type(ss);
        if (json_is_object(v) && json_object_size(v) > 0) {
            fs_build(node, v, ss);
        } else if (json_is_array(v) && lt && strcmp(lt, "map") == 0) {
            const json_t *keys = json_object_get(ss, "x-kubernetes-list-map-keys");
            const json_t *is = json_object_get(ss, "items");
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                char *ak = json_is_object(e) ? assoc_key(e, keys) : NULL;
                if (!ak)
                    continue;
                json_t *en = json_object();
                json_object_set_new(en, ".", json_object());
                fs_build(en, e, is);
                json_object_set_new(node, ak, en);
                free(ak);
            }
        } else if (json_is_array(v) && lt && strcmp(lt, "set") == 0) {
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                char *js = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
                char *vk = NULL;
                if (js && asprintf(&vk, "v:%s", js) >= 0) {
                    json_object_set_new(node, vk, json_object());
                    free(vk);
                }
                free(js);
            }
        }
        json_object_set_new(set, fk, node);
        free(fk);
    }
}

json_t *as__fs_from_object(const json_t *obj, const json_t *schema)
{
    json_t *set = json_object();
    if (json_is_object(obj))
        fs_build(set, obj, schema);
    return set;
}

void as__fs_leaves(const json_t *set, json_t *prefix, json_t *out)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)set, k, v) {
        if (strcmp(k, ".") == 0)
            continue;
        json_t *p = json_copy(prefix);
        json_array_append_new(p, json_string(k));
        if (json_object_size(v) == 0 ||
            (json_object_size(v) == 1 && json_object_get(v, ".")))
            json_array_append(out, p);
        else
            as__fs_leaves(v, p, out);
        json_decref(p);
    }
}

void as__fs_add(json_t *set, const json_t *path)
{
    size_t i;
    json_t *k;
    json_t *cur = set;
    json_array_foreach(path, i, k) {
        json_t *n = json_object_get(cur, json_string_value(k));
        if (!n) {
            n = json_object();
            json_object_set_new(cur, json_string_value(k), n);
        }
        cur = n;
    }
}

static bool fs_remove_at(json_t *node, const json_t *path, size_t i)
{
    if (i >= json_array_size(path))
        return true;
    const char *k = json_string_value(json_array_get(path, i));
    json_t *c = json_object_get(node, k);
    if (!c)
        return false;
    if (i + 1 == json_array_size(path)) {
        json_object_del(node, k);
    } else if (fs_remove_at(c, path, i + 1)) {
        if (json_object_size(c) == 0 || (json_object_size(c) == 1 && json_object_get(c, ".")))
            json_object_del(node, k);
    }
    return true;
}

void as__fs_remove(json_t *set, const json_t *path)
{
    fs_remove_at(set, path, 0);
}

bool as__fs_has(const json_t *set, const json_t *path)
{
    size_t i;
    json_t *k;
    const json_t *cur = set;
    json_array_foreach(path, i, k) {
        cur = json_object_get(cur, json_string_value(k));
        if (!cur)
            return false;
    }
    return true;
}

/* Element of array arr that a "k:" or "v:" key names; index in *idx. */
static json_t *fs_find_elem(const json_t *arr, const char *key, size_t *idx)
{
    json_t *want = json_loads(key + 2, JSON_DECODE_ANY, NULL);
    json_t *found = NULL;
    size_t i;
    json_t *e;
    if (!want || !json_is_array(arr)) {
        json_decref(want);
        return NULL;
    }
    json_array_foreach(arr, i, e) {
        bool match;
        if (key[0] == 'v') {
            match = json_equal(e, want);
        } else {
            match = json_is_object(e);
            const char *wk;
            json_t *wv;
            json_object_foreach(want, wk, wv) {
                if (!json_equal(json_object_get(e, wk), wv))
                    match = false;
            }
        }
        if (match) {
            found = e;
            *idx = i;
            break;
        }
    }
    json_decref(want);
    return found;
}

const json_t *as__fs_value(const json_t *obj, const json_t *path)
{
    size_t i, idx;
    json_t *k;
    const json_t *cur = obj;
    json_array_foreach(path, i, k) {
        const char *key = json_string_value(k);
        if (!cur || !key)
            return NULL;
        if (key[0] == 'f' && key[1] == ':')
            cur = json_object_get(cur, key + 2);
        else if ((key[0] == 'k' || key[0] == 'v') && key[1] == ':')
            cur = fs_find_elem(cur, key, &idx);
        else if (strcmp(key, ".") == 0)
            continue;
        else
            return NULL;
    }
    return cur;
}

void as__fs_delete_value(json_t *obj, const json_t *path)
{
    size_t n = json_array_size(path);
    if (n == 0)
        return;
    json_t *parent_path = json_array();
    for (size_t i = 0; i + 1 < n; i++)
        json_array_append(parent_path, json_array_get(path, i));
    json_t *par = (json_t *)as__fs_value(obj, parent_path);
    json_decref(parent_path);
    const char *key = json_string_value(json_array_get(path, n - 1));
    size_t idx;
    if (!par || !key)
        return;
    if (key[0] == 'f' && json_is_object(par))
        json_object_del(par, key + 2);
    else if ((key[0] == 'k' || key[0] == 'v') && fs_find_elem(par, key, &idx))
        json_array_remove(par, idx);
}

void as__fs_strip_meta(json_t *set)
{
    json_object_del(set, "f:apiVersion");
    json_object_del(set, "f:kind");
    json_t *m = json_object_get(set, "f:metadata");
    if (m) {
        static const char *const strip[] = {"f:name", "f:namespace", "f:creationTimestamp",
                                            "f:selfLink", "f:uid", "f:generation",
                                            "f:managedFields", "f:resourceVersion",
                                            "f:deletionTimestamp",
                                            "f:deletionGracePeriodSeconds"};
        for (size_t i = 0; i < sizeof(strip) / sizeof(*strip); i++)
            json_object_del(m, strip[i]);
        if (json_object_size(m) == 0)
            json_object_del(set, "f:metadata");
    }
}

char *as__fs_path_string(const json_t *path)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    size_t i;
    json_t *k;
    if (!f)
        return NULL;
    json_array_foreach(path, i, k) {
        const char *key = json_string_value(k);
        if (key[0] == 'f')
            fprintf(f, ".%s", key + 2);
        else if (key[0] == 'k' || key[0] == 'v')
            fprintf(f, "[%s]", key + 2);
    }
    fclose(f);
    return buf;
}
