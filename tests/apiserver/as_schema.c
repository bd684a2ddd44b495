/*
 * as_schema.c - the structural-schema work the API server does for custom resources:
 * defaulting, pruning of unknown fields (and of nulls where not nullable), and the
 * OpenAPI v3 value validations (type, enum, pattern, bounds, lengths, required).
 * CEL rules (x-kubernetes-validations) are not evaluated.
 */
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_internal.h"

static bool sch_flag(const json_t *s, const char *k)
{
    return json_is_true(json_object_get(s, k));
}

static const json_t *prop_schema(const json_t *s, const char *k)
{
    const json_t *p = json_object_get(json_object_get(s, "properties"), k);
    if (p)
        return p;
    const json_t *ap = json_object_get(s, "additionalProperties");
    return json_is_object(ap) ? ap : NULL;
}

const json_t *as__schema_at(const json_t *schema, const char *const *path, size_t n)
{
    const json_t *s = schema;
    for (size_t i = 0; i < n && s; i++)
        s = strcmp(path[i], "[]") == 0 ? json_object_get(s, "items") : prop_schema(s, path[i]);
    return s;
}

/* ---- defaulting --------------------------------------------------------------------- */

void as__schema_default(json_t *obj, const json_t *s)
{
    if (!s)
        return;
    if (json_is_object(obj)) {
        const json_t *props = json_object_get(s, "properties");
        const char *k;
        json_t *ps;
        json_object_foreach((json_t *)props, k, ps) {
            const json_t *def = json_object_get(ps, "default");
            if (def && !json_object_get(obj, k))
                json_object_set_new(obj, k, json_deep_copy(def));
        }
        json_t *v;
        json_object_foreach(obj, k, v) {
            if (strcmp(k, "metadata") == 0 && s && json_object_get(s, "properties") &&
                json_object_get(json_object_get(s, "properties"), "apiVersion"))
                continue;
            as__schema_default(v, prop_schema(s, k));
        }
    } else if (json_is_array(obj)) {
        size_t i;
        json_t *e;
        json_array_foreach(obj, i, e) as__schema_default(e, json_object_get(s, "items"));
    }
}

/* ---- pruning ------------------------------------------------------------------------ */

static void prune(json_t *obj, const json_t *s, const char *path, json_t *unknown, bool root)
{
    if (json_is_object(obj)) {
        bool preserve = s && sch_flag(s, "x-kubernetes-preserve-unknown-fields");
        bool embedded = root || (s && sch_flag(s, "x-kubernetes-embedded-resource"));
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(obj, tmp, k, v) {
            char *sub = NULL;
            if (asprintf(&sub, "%s%s%s", path, *path ? "." : "", k) < 0)
                continue;
            if (embedded && (strcmp(k, "apiVersion") == 0 || strcmp(k, "kind") == 0 ||
                             strcmp(k, "metadata") == 0)) {
                free(sub);
                continue;
            }
            const json_t *ps = s ? prop_schema(s, k) : NULL;
            if (!ps && !preserve) {
                if (unknown)
                    json_array_append_new(unknown, json_string(sub));
                json_object_del(obj, k);
            } else if (ps && json_is_null(v) && !sch_flag(ps, "nullable")) {
                json_object_del(obj, k);
            } else if (ps || preserve) {
                prune(v, ps, sub, unknown, false);
            }
            free(sub);
        }
    } else if (json_is_array(obj)) {
        const json_t *is = s ? json_object_get(s, "items") : NULL;
        size_t i;
        json_t *e;
        json_array_foreach(obj, i, e) {
            char *sub = NULL;
            if (asprintf(&sub, "%s[%zu]", path, i) < 0)
                continue;
            prune(e, is, sub, unknown, false);
            free(sub);
        }
    }
}

void as__schema_prune(json_t *obj, const json_t *schema, json_t *unknown)
{
    if (schema)
        prune(obj, schema, "", unknown, true);
}

/* ---- validation --------------------------------------------------------------------- */

static void cause(json_t *causes, const char *reason, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void cause(json_t *causes, const char *reason, const char *field, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(causes, json_pack("{s:s,s:s,s:s}", "reason", reason, "message", msg,
                                            "field", field));
}

static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

/* ECMA-262 pattern to POSIX ERE (the common subset: \d \w \s and their negations). */
static char *ecma_to_ere(const char *p)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    for (; *p; p++) {
        if (p[0] == '\\' && p[1]) {
            switch (p[1]) {
            case 'd': fputs("[0-9]", f); break;
            case 'D': fputs("[^0-9]", f); break;
            case 'w': fputs("[A-Za-z0-9_]", f); break;
            case 'W': fputs("[^A-Za-z0-9_]", f); break;
            case 's': fputs("[[:space:]]", f); break;
            case 'S': fputs("[^[:space:]]", f); break;
            default: fputc('\\', f); fputc(p[1], f); break;
            }
            p++;
        } else {
            fputc(*p, f);
        }
    }
    fclose(f);
    return buf;
}

static bool pattern_ok(const char *pattern, const char *value)
{
    char *ere = ecma_to_ere(pattern);
    regex_t re;
    bool ok = true;
    if (ere && regcomp(&re, ere, REG_EXTENDED | REG_NOSUB) == 0) {
        ok = regexec(&re, value, 0, NULL, 0) == 0;
        regfree(&re);
    }
    free(ere);
    return ok;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

static void validate(const json_t *v, const json_t *s, const char *path, json_t *causes)
{
    if (!s)
        return;
    char *vs = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    const char *type = json_string_value(json_object_get(s, "type"));
    bool ios = sch_flag(s, "x-kubernetes-int-or-string");
    const char *vt = json_type_name(v);
    if (json_is_null(v)) {
        free(vs);
        return;
    }
    if (ios) {
        if (!json_is_integer(v) && !json_is_string(v)) {
            cause(causes, "FieldValueInvalid", path,
                  "Invalid value: \"%s\": %s in body must be of type integer,string: \"%s\"",
                  vt, path, vt);
            free(vs);
            return;
        }
    } else if (type) {
        bool ok = strcmp(type, vt) == 0 ||
                  (strcmp(type, "number") == 0 && json_is_integer(v)) ||
                  (strcmp(type, "integer") == 0 && json_is_real(v) &&
                   json_real_value(v) == (double)(long long)json_real_value(v));
        if (!ok) {
            cause(causes, "FieldValueTypeInvalid", path,
                  "Invalid value: \"%s\": %s in body must be of type %s: \"%s\"", vt, path,
                  type, vt);
            free(vs);
            return;
        }
    }
    const json_t *en = json_object_get(s, "enum");
    if (json_is_array(en)) {
        size_t i;
        json_t *e;
        bool found = false;
        json_array_foreach(en, i, e) found = found || json_equal(e, (json_t *)v);
        if (!found) {
            char *ens = NULL;
            size_t elen = 0;
            FILE *f = open_memstream(&ens, &elen);
            json_array_foreach(en, i, e) {
                char *es = json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
                fprintf(f, "%s%s", i ? ", " : "", es ? es : "?");
                free(es);
            }
            fclose(f);
            cause(causes, "FieldValueNotSupported", path,
                  "Unsupported value: %s: supported values: %s", vs, ens ? ens : "");
            free(ens);
        }
    }
    if (json_is_string(v)) {
        const char *str = json_string_value(v);
        size_t n = utf8_len(str);
        const json_t *mx = json_object_get(s, "maxLength"), *mn = json_object_get(s, "minLength");
        if (json_is_integer(mx) && (json_int_t)n > json_integer_value(mx))
            cause(causes, "FieldValueTooLong", path,
                  "Too long: may not be more than %lld bytes", (long long)json_integer_value(mx));
        if (json_is_integer(mn) && (json_int_t)n < json_integer_value(mn))
            cause(causes, "FieldValueInvalid", path,
                  "Invalid value: %s: %s in body should be at least %lld chars long", vs, path,
                  (long long)json_integer_value(mn));
        const char *pat = json_string_value(json_object_get(s, "pattern"));
        if (pat && !pattern_ok(pat, str))
            cause(causes, "FieldValueInvalid", path,
                  "Invalid value: %s: %s in body should match '%s'", vs, path, pat);
    }
    if (json_is_number(v)) {
        double d = json_number_value(v);
        const json_t *mx = json_object_get(s, "maximum"), *mn = json_object_get(s, "minimum");
        bool exmx = sch_flag(s, "exclusiveMaximum"), exmn = sch_flag(s, "exclusiveMinimum");
        if (json_is_number(mn) && (exmn ? d <= json_number_value(mn) : d < json_number_value(mn)))
            cause(causes, "FieldValueInvalid", path,
                  "Invalid value: %s: %s in body should be greater than %s%g", vs, path,
                  exmn ? "" : "or equal to ", json_number_value(mn));
        if (json_is_number(mx) && (exmx ? d >= json_number_value(mx) : d > json_number_value(mx)))
            cause(causes, "FieldValueInvalid", path,
                  "Invalid value: %s: %s in body should be less than %s%g", vs, path,
                  exmx ? "" : "or equal to ", json_number_value(mx));
    }
    if (json_is_array(v)) {
        const json_t *mx = json_object_get(s, "maxItems"), *mn = json_object_get(s, "minItems");
        json_int_t n = (json_int_t)json_array_size(v);
        if (json_is_integer(mx) && n > json_integer_value(mx))
            cause(causes, "FieldValueTooMany", path, "Too many: %lld: must have at most %lld items",
                  (long long)n, (long long)json_integer_value(mx));
        if (json_is_integer(mn) && n < json_integer_value(mn))
            cause(causes, "FieldValueInvalid", path,
                  "Invalid value: %lld: %s in body should have at least %lld items",
                  (long long)n, path, (long long)json_integer_value(mn));
        const json_t *is = json_object_get(s, "items");
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            char *sub = NULL;
            if (asprintf(&sub, "%s[%zu]", path, i) >= 0) {
                validate(e, is, sub, causes);
                free(sub);
            }
        }
    }
    if (json_is_object(v)) {
        const json_t *req = json_object_get(s, "required");
        size_t i;
        json_t *r;
        json_array_foreach(req, i, r) {
            const char *rk = json_string_value(r);
            if (rk && !json_object_get(v, rk)) {
                char *sub = NULL;
                if (asprintf(&sub, "%s%s%s", path, *path ? "." : "", rk) >= 0) {
                    cause(causes, "FieldValueRequired", sub, "Required value");
                    free(sub);
                }
            }
        }
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c) {
            if (!*path && (strcmp(k, "metadata") == 0 || strcmp(k, "apiVersion") == 0 ||
                           strcmp(k, "kind") == 0))
                continue;
            char *sub = NULL;
            if (asprintf(&sub, "%s%s%s", path, *path ? "." : "", k) >= 0) {
                validate(c, prop_schema(s, k), sub, causes);
                free(sub);
            }
        }
    }
    free(vs);
}

void as__schema_validate(const json_t *obj, const json_t *schema, json_t *causes)
{
    validate(obj, schema, "", causes);
}
