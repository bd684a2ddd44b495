#include "sort.h"
#include "validate.h"

#include <arpa/inet.h>
#include <regex.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

/* Generated from the YAML files in schema/crds at build time (see schema/CMakeLists.txt). */
typedef struct {
    const char *name;
    const char *text;
    size_t len;
} bd_embedded_file_t;
extern const bd_embedded_file_t bd_crd_files[];
extern const size_t bd_crd_nfiles;

/* A pattern and, when it bounds a repetition by {m,n} with a large n, the same pattern with
 * {m,} there: for a subject of at most relax_max bytes no repetition can exceed its bound,
 * so both match the same strings, and glibc runs the relaxed form about five times faster
 * (it unrolls {1,63} into 63 copies: 1.4 us per DNS name, a third of validating a record). */
typedef struct {
    char *pattern;
    regex_t re;
    regex_t relaxed;
    size_t relax_max; /* 0: no relaxed form */
} val_regex_t;

/* A schema node with what the walk asks of it looked up once, at load. The walk runs for
 * every object imported and again in the projector; a dozen json_object_get per value
 * and a scan of every C rule per value were most of its cost. Children mirror the
 * schema position by position, so each node knows its own schema path. */
typedef struct vnode vnode_t;
typedef struct {
    const char *key;
    vnode_t *node;
} vprop_t;
typedef struct {
    const char *key;
    const json_t *def;
} vdef_t;
struct vnode {
    char *spath; /* e.g. "spec.ipv4Addresses[]" */
    const char *type, *format, *pattern, *list_type;
    const val_regex_t *re;
    int nullable, int_or_string, preserve, addl_true;
    const json_t *enm, *required, *validations, *map_keys;
    const json_t *min_items, *max_items, *min_len, *max_len, *minimum, *maximum;
    vprop_t *props; /* sorted by key */
    size_t nprops;
    vdef_t *defs; /* properties with a default, in the schema's order */
    size_t ndefs;
    vnode_t *addl, *items; /* additionalProperties (when an object), items */
    const val__rule_t **rules; /* C rules without CEL for this kind and path, in table order */
    size_t nrules;
};

typedef struct {
    json_t *crd; /* the whole CRD */
    const char *kind, *plural;
    const json_t *schema; /* openAPIV3Schema of version BD_VERSION */
    vnode_t *root;        /* schema, compiled */
} val_crd_t;

struct val_catalog {
    val_crd_t *crds;
    size_t ncrds;
    val_regex_t *res; /* sorted by pattern */
    size_t nres, rcap;
};

/* ---- reports ---------------------------------------------------------------------- */

void val_report_init(val_report_t *rep) { memset(rep, 0, sizeof(*rep)); }

void val_report_deinit(val_report_t *rep)
{
    free(rep->items);
    memset(rep, 0, sizeof(*rep));
}

void val_report_reset(val_report_t *rep)
{
    rep->n = 0;
    rep->nerrors = 0;
    rep->nomem = 0;
}

void val_report_add(val_report_t *rep, val_sev_t sev, const char *path, const char *fmt, ...)
{
    if (sev == VAL_ERROR)
        rep->nerrors++;
    if (rep->n == rep->cap) {
        size_t ncap = rep->cap ? rep->cap * 2 : 8;
        val_issue_t *ni = realloc(rep->items, ncap * sizeof(*ni));
        if (ni == NULL) {
            rep->nomem = 1;
            return;
        }
        rep->items = ni;
        rep->cap = ncap;
    }
    val_issue_t *is = &rep->items[rep->n++];
    is->sev = sev;
    snprintf(is->path, sizeof(is->path), "%s", path ? path : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(is->msg, sizeof(is->msg), fmt, ap);
    va_end(ap);
}

/* ---- catalog ---------------------------------------------------------------------- */

static int re_cmp(const void *a, const void *b)
{
    return strcmp(((const val_regex_t *)a)->pattern, ((const val_regex_t *)b)->pattern);
}

static const val_regex_t *catalog_regex(const val_catalog_t *cat, const char *pattern)
{
    val_regex_t key = {.pattern = (char *)pattern};
    const val_regex_t *hit = bd_bsearch(&key, cat->res, cat->nres, sizeof(*cat->res), re_cmp);
    return hit;
}

char *val__relax_pattern(const char *pat, size_t *min_n)
{
    size_t len = strlen(pat), o = 0;
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    *min_n = SIZE_MAX;
    for (size_t i = 0; i < len;) {
        if (pat[i] == '\\' && i + 1 < len) {
            out[o++] = pat[i++];
            out[o++] = pat[i++];
        } else if (pat[i] == '[') {
            /* a bracket expression: copied as it is ("]" first is a member; [:x:], [.x.]
             * and [=x=] hold their own "]") */
            size_t j = i + 1;
            if (j < len && pat[j] == '^')
                j++;
            if (j < len && pat[j] == ']')
                j++;
            while (j < len && pat[j] != ']') {
                if (pat[j] == '[' && j + 1 < len && strchr(":.=", pat[j + 1]) != NULL) {
                    const char *end = strstr(pat + j + 2, (char[]){pat[j + 1], ']', '\0'});
                    j = end ? (size_t)(end - pat) + 2 : len;
                } else {
                    j++;
                }
            }
            j = j < len ? j + 1 : len;
            memcpy(out + o, pat + i, j - i);
            o += j - i;
            i = j;
        } else if (pat[i] == '{') {
            char *end;
            unsigned long m = strtoul(pat + i + 1, &end, 10), n = 0;
            bool bound = end > pat + i + 1 && *end == ',' && end[1] >= '0' && end[1] <= '9';
            if (bound)
                n = strtoul(end + 1, &end, 10);
            if (bound && *end == '}' && n >= 16 && n >= m) {
                o += (size_t)sprintf(out + o, "{%lu,}", m);
                if (n < *min_n)
                    *min_n = n;
                i = (size_t)(end - pat) + 1;
            } else {
                out[o++] = pat[i++];
            }
        } else {
            out[o++] = pat[i++];
        }
    }
    out[o] = '\0';
    if (*min_n == SIZE_MAX) {
        free(out);
        return NULL;
    }
    return out;
}

static bool regex_match(const val_regex_t *r, const char *s)
{
    if (r->relax_max > 0 && strnlen(s, r->relax_max + 1) <= r->relax_max)
        return regexec(&r->relaxed, s, 0, NULL, 0) == 0;
    return regexec(&r->re, s, 0, NULL, 0) == 0;
}

/* Compile every pattern of a schema tree once, at load. */
static int compile_patterns(val_catalog_t *cat, const json_t *schema, const char *file, bd_err_t *err)
{
    if (!json_is_object(schema))
        return BD_OK;
    const char *pattern = json_string_value(json_object_get(schema, "pattern"));
    if (pattern != NULL) {
        int known = 0;
        for (size_t i = 0; i < cat->nres; i++)
            if (strcmp(cat->res[i].pattern, pattern) == 0)
                known = 1;
        if (!known) {
            if (cat->nres == cat->rcap) {
                size_t ncap = cat->rcap ? cat->rcap * 2 : 16;
                val_regex_t *nr = realloc(cat->res, ncap * sizeof(*nr));
                if (nr == NULL)
                    return bd_err_set(err, BD_ENOMEM, "out of memory");
                cat->res = nr;
                cat->rcap = ncap;
            }
            val_regex_t *r = &cat->res[cat->nres];
            int rc = regcomp(&r->re, pattern, REG_EXTENDED | REG_NOSUB);
            if (rc != 0) {
                char why[128];
                regerror(rc, &r->re, why, sizeof(why));
                return bd_err_set(err, BD_EINTERNAL, "%s: pattern %s: %s", file, pattern, why);
            }
            r->pattern = strdup(pattern);
            if (r->pattern == NULL) {
                regfree(&r->re);
                return bd_err_set(err, BD_ENOMEM, "out of memory");
            }
            size_t min_n = 0;
            char *relaxed = val__relax_pattern(pattern, &min_n);
            r->relax_max = relaxed && regcomp(&r->relaxed, relaxed, REG_EXTENDED | REG_NOSUB) == 0 ? min_n : 0;
            free(relaxed);
            cat->nres++;
        }
    }
    const char *key;
    const json_t *sub;
    json_object_foreach((json_t *)json_object_get(schema, "properties"), key, sub) {
        int rc = compile_patterns(cat, sub, file, err);
        if (rc != BD_OK)
            return rc;
    }
    static const char *const nested[] = {"items", "additionalProperties"};
    for (size_t i = 0; i < 2; i++) {
        int rc = compile_patterns(cat, json_object_get(schema, nested[i]), file, err);
        if (rc != BD_OK)
            return rc;
    }
    return BD_OK;
}

static int load_crd(val_catalog_t *cat, const doc_t *d, const char *file, bd_err_t *err)
{
    json_t *crd = doc_value(d);
    const json_t *spec = json_object_get(crd, "spec");
    const char *group = json_string_value(json_object_get(spec, "group"));
    const json_t *names = json_object_get(spec, "names");
    const char *kind = json_string_value(json_object_get(names, "kind"));
    const char *plural = json_string_value(json_object_get(names, "plural"));
    if (group == NULL || strcmp(group, BD_GROUP) != 0 || kind == NULL || plural == NULL)
        return bd_err_set(err, BD_EINTERNAL, "%s: not a %s CRD", file, BD_GROUP);
    const json_t *schema = NULL;
    size_t i;
    const json_t *ver;
    json_array_foreach(json_object_get(spec, "versions"), i, ver) {
        if (strcmp(json_string_value(json_object_get(ver, "name")) ?: "", BD_VERSION) == 0)
            schema = json_object_get(json_object_get(ver, "schema"), "openAPIV3Schema");
    }
    if (!json_is_object(schema))
        return bd_err_set(err, BD_EINTERNAL, "%s: no %s openAPIV3Schema", file, BD_VERSION);
    int rc = compile_patterns(cat, schema, file, err);
    if (rc != BD_OK)
        return rc;
    bd_qsort(cat->res, cat->nres, sizeof(*cat->res), re_cmp);
    cat->crds[cat->ncrds++] = (val_crd_t){json_incref(crd), kind, plural, schema, NULL};
    return BD_OK;
}

static int kind_matches(const char *rule_kind, const char *kind);

static void vnode_free(vnode_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nprops; i++)
        vnode_free(n->props[i].node);
    free(n->props);
    free(n->defs);
    vnode_free(n->addl);
    vnode_free(n->items);
    free(n->rules);
    free(n->spath);
    free(n);
}

static int vprop_cmp(const void *a, const void *b)
{
    return strcmp(((const vprop_t *)a)->key, ((const vprop_t *)b)->key);
}

/* Compile schema at schema path spath (depth as the walk counts it); NULL on ENOMEM. The
 * walk stops below DOC_MAX_DEPTH, so deeper nodes need no children. */
static vnode_t *vnode_compile(const val_catalog_t *cat, const char *kind, const json_t *schema, const char *spath,
                              int depth)
{
    vnode_t *n = calloc(1, sizeof(*n));
    if (n == NULL || (n->spath = strdup(spath)) == NULL)
        goto fail;
    n->type = json_string_value(json_object_get(schema, "type"));
    n->format = json_string_value(json_object_get(schema, "format"));
    n->pattern = json_string_value(json_object_get(schema, "pattern"));
    n->re = n->pattern ? catalog_regex(cat, n->pattern) : NULL;
    n->list_type = json_string_value(json_object_get(schema, "x-kubernetes-list-type"));
    n->nullable = json_is_true(json_object_get(schema, "nullable"));
    n->int_or_string = json_is_true(json_object_get(schema, "x-kubernetes-int-or-string"));
    n->preserve = json_is_true(json_object_get(schema, "x-kubernetes-preserve-unknown-fields"));
    n->enm = json_object_get(schema, "enum");
    n->required = json_object_get(schema, "required");
    n->validations = json_object_get(schema, "x-kubernetes-validations");
    n->map_keys = json_object_get(schema, "x-kubernetes-list-map-keys");
    n->min_items = json_object_get(schema, "minItems");
    n->max_items = json_object_get(schema, "maxItems");
    n->min_len = json_object_get(schema, "minLength");
    n->max_len = json_object_get(schema, "maxLength");
    n->minimum = json_object_get(schema, "minimum");
    n->maximum = json_object_get(schema, "maximum");
    const json_t *addl = json_object_get(schema, "additionalProperties");
    n->addl_true = json_is_true(addl);
    for (size_t i = 0; i < val__nrules; i++) {
        const val__rule_t *r = &val__rules[i];
        if (r->cel != NULL || !kind_matches(r->kind, kind) || strcmp(r->spath, spath) != 0)
            continue;
        const val__rule_t **nr = realloc(n->rules, (n->nrules + 1) * sizeof(*nr));
        if (nr == NULL)
            goto fail;
        n->rules = nr;
        n->rules[n->nrules++] = r;
    }
    if (depth > DOC_MAX_DEPTH)
        return n;
    char sub[DOC_PATH_MAX];
    const json_t *props = json_object_get(schema, "properties");
    size_t np = json_object_size(props);
    if (np > 0 && (n->props = calloc(np, sizeof(*n->props))) == NULL)
        goto fail;
    if (np > 0 && (n->defs = calloc(np, sizeof(*n->defs))) == NULL)
        goto fail;
    const char *key;
    const json_t *ps;
    json_object_foreach((json_t *)props, key, ps) {
        snprintf(sub, sizeof(sub), "%s%s%s", spath, spath[0] ? "." : "", key);
        vnode_t *c = vnode_compile(cat, kind, ps, sub, depth + 1);
        if (c == NULL)
            goto fail;
        n->props[n->nprops++] = (vprop_t){key, c};
        const json_t *def = json_object_get(ps, "default");
        if (def != NULL)
            n->defs[n->ndefs++] = (vdef_t){key, def};
    }
    bd_qsort(n->props, n->nprops, sizeof(*n->props), vprop_cmp);
    if (json_is_object(addl)) {
        snprintf(sub, sizeof(sub), "%s{}", spath);
        if ((n->addl = vnode_compile(cat, kind, addl, sub, depth + 1)) == NULL)
            goto fail;
    }
    const json_t *items = json_object_get(schema, "items");
    if (items != NULL) {
        snprintf(sub, sizeof(sub), "%s[]", spath);
        if ((n->items = vnode_compile(cat, kind, items, sub, depth + 1)) == NULL)
            goto fail;
    }
    return n;
fail:
    vnode_free(n);
    return NULL;
}

static const vnode_t *vnode_prop(const vnode_t *n, const char *key)
{
    vprop_t k = {key, NULL};
    const vprop_t *hit = bd_bsearch(&k, n->props, n->nprops, sizeof(*n->props), vprop_cmp);
    return hit ? hit->node : NULL;
}

int val_catalog_new(val_catalog_t **out, bd_err_t *err)
{
    *out = NULL;
    int rc = BD_OK;
    doc_list_t *list = NULL;
    val_catalog_t *cat = calloc(1, sizeof(*cat));
    if (cat == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    cat->crds = calloc(bd_crd_nfiles, sizeof(*cat->crds));
    if (cat->crds == NULL) {
        rc = bd_err_set(err, BD_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t f = 0; f < bd_crd_nfiles; f++) {
        const bd_embedded_file_t *ef = &bd_crd_files[f];
        rc = doc_load_buffer(ef->name, ef->text, ef->len, 0, &list, err);
        if (rc != BD_OK)
            goto fail;
        int line;
        const char *problem = doc_list_error(list, &line);
        if (problem != NULL || doc_list_count(list) != 1) {
            rc = bd_err_set(err, BD_EINTERNAL, "%s:%d: %s", ef->name, line,
                            problem ? problem : "expected exactly one CRD");
            goto fail;
        }
        rc = load_crd(cat, doc_list_get(list, 0), ef->name, err);
        if (rc != BD_OK)
            goto fail;
        doc_list_free(list);
        list = NULL;
    }
    /* after every CRD: cat->res moves while patterns are added */
    for (size_t i = 0; i < cat->ncrds; i++) {
        if ((cat->crds[i].root = vnode_compile(cat, cat->crds[i].kind, cat->crds[i].schema, "", 0)) == NULL) {
            rc = bd_err_set(err, BD_ENOMEM, "out of memory");
            goto fail;
        }
    }
    *out = cat;
    return BD_OK;
fail:
    doc_list_free(list);
    val_catalog_free(cat);
    return rc;
}

void val_catalog_free(val_catalog_t *cat)
{
    if (cat == NULL)
        return;
    for (size_t i = 0; i < cat->ncrds; i++) {
        vnode_free(cat->crds[i].root);
        json_decref(cat->crds[i].crd);
    }
    for (size_t i = 0; i < cat->nres; i++) {
        regfree(&cat->res[i].re);
        if (cat->res[i].relax_max > 0)
            regfree(&cat->res[i].relaxed);
        free(cat->res[i].pattern);
    }
    free(cat->res);
    free(cat->crds);
    free(cat);
}

size_t val_catalog_count(const val_catalog_t *cat) { return cat->ncrds; }
const char *val_catalog_kind(const val_catalog_t *cat, size_t i) { return cat->crds[i].kind; }
const char *val_catalog_plural(const val_catalog_t *cat, size_t i) { return cat->crds[i].plural; }
const json_t *val_catalog_schema(const val_catalog_t *cat, size_t i) { return cat->crds[i].schema; }
const json_t *val_catalog_crd(const val_catalog_t *cat, size_t i) { return cat->crds[i].crd; }

static const val_crd_t *catalog_find(const val_catalog_t *cat, const char *kind)
{
    for (size_t i = 0; kind && i < cat->ncrds; i++)
        if (strcmp(cat->crds[i].kind, kind) == 0)
            return &cat->crds[i];
    return NULL;
}

val_class_t val_classify(const val_catalog_t *cat, const char *api_version, const char *kind)
{
    if (api_version == NULL || kind == NULL)
        return VAL_CLASS_UNKNOWN;
    const char *slash = strchr(api_version, '/');
    if (slash == NULL)
        return strcmp(api_version, "v1") == 0 ? VAL_CLASS_BUILTIN : VAL_CLASS_UNKNOWN;
    size_t glen = (size_t)(slash - api_version);
    if (glen == strlen(BD_GROUP) && strncmp(api_version, BD_GROUP, glen) == 0)
        return catalog_find(cat, kind) ? VAL_CLASS_OURS : VAL_CLASS_UNKNOWN;
    static const char *const core_groups[] = {"apps", "batch", "policy", "autoscaling"};
    for (size_t i = 0; i < sizeof(core_groups) / sizeof(*core_groups); i++)
        if (glen == strlen(core_groups[i]) && strncmp(api_version, core_groups[i], glen) == 0)
            return VAL_CLASS_BUILTIN;
    static const char suffix[] = ".k8s.io";
    if (glen > sizeof(suffix) - 1 && strncmp(slash - (sizeof(suffix) - 1), suffix, sizeof(suffix) - 1) == 0)
        return VAL_CLASS_BUILTIN;
    return VAL_CLASS_UNKNOWN;
}

/* ---- schema navigation ------------------------------------------------------------ */

const json_t *val_schema_at(const json_t *root, const char *schema_path)
{
    const json_t *node = root;
    const char *p = schema_path;
    while (node != NULL && *p) {
        if (*p == '.') {
            p++;
            continue;
        }
        if (strncmp(p, "[]", 2) == 0) {
            node = json_object_get(node, "items");
            p += 2;
            continue;
        }
        if (strncmp(p, "{}", 2) == 0) {
            node = json_object_get(node, "additionalProperties");
            p += 2;
            continue;
        }
        size_t n = strcspn(p, ".[{");
        char key[128];
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        node = json_object_get(json_object_get(node, "properties"), key);
        p += n;
    }
    return node;
}

static void each_cel(const char *kind, const json_t *schema, char *spath, val_cel_visit_fn fn, void *arg)
{
    if (!json_is_object(schema))
        return;
    size_t i;
    const json_t *rule;
    json_array_foreach(json_object_get(schema, "x-kubernetes-validations"), i, rule)
        fn(kind, spath, json_string_value(json_object_get(rule, "rule")) ?: "", arg);
    size_t len = strlen(spath);
    const char *key;
    const json_t *sub;
    json_object_foreach((json_t *)json_object_get(schema, "properties"), key, sub) {
        snprintf(spath + len, DOC_PATH_MAX - len, "%s%s", len ? "." : "", key);
        each_cel(kind, sub, spath, fn, arg);
    }
    snprintf(spath + len, DOC_PATH_MAX - len, "[]");
    each_cel(kind, json_object_get(schema, "items"), spath, fn, arg);
    snprintf(spath + len, DOC_PATH_MAX - len, "{}");
    each_cel(kind, json_object_get(schema, "additionalProperties"), spath, fn, arg);
    spath[len] = '\0';
}

void val_catalog_each_cel(const val_catalog_t *cat, val_cel_visit_fn fn, void *arg)
{
    for (size_t i = 0; i < cat->ncrds; i++) {
        char spath[DOC_PATH_MAX] = "";
        each_cel(cat->crds[i].kind, cat->crds[i].schema, spath, fn, arg);
    }
}

static int kind_matches(const char *rule_kind, const char *kind)
{
    return strcmp(rule_kind, "*") == 0 || strcmp(rule_kind, kind) == 0;
}

int val_has_cel_twin(const char *kind, const char *schema_path, const char *rule)
{
    for (size_t i = 0; i < val__nrules; i++) {
        const val__rule_t *r = &val__rules[i];
        if (r->cel && kind_matches(r->kind, kind) && strcmp(r->spath, schema_path) == 0 &&
            strcmp(r->cel, rule) == 0)
            return 1;
    }
    return 0;
}

void val_each_c_rule(val_rule_visit_fn fn, void *arg)
{
    for (size_t i = 0; i < val__nrules; i++)
        fn(val__rules[i].kind, val__rules[i].spath, val__rules[i].cel, arg);
}

/* ---- the walk --------------------------------------------------------------------- */

typedef struct {
    const val_catalog_t *cat;
    const char *kind;
    val_report_t *rep;
    int borrowed;         /* obj must not change: stop at the first missing default */
    int defaults_missing; /* set then, and the walk unwinds */
} walk_t;

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

/* Render a value for a message, bounded, e.g. "10.0.0.300" or 70000. */
static void show(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strlen(s) > 64)
            snprintf(buf, len, "\"%.60s...\"", s);
        else
            snprintf(buf, len, "\"%s\"", s);
        return;
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (text == NULL) {
        snprintf(buf, len, "(%s)", type_name(v));
        return;
    }
    if (strlen(text) > 64)
        snprintf(buf, len, "%.60s...", text);
    else
        snprintf(buf, len, "%s", text);
    free(text);
}

static int is_rfc3339(const char *s)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || n != 19)
        return 0;
    const char *p = s + n;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'Z' || *p == 'z')
        return p[1] == '\0';
    int oh, om;
    if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 && n == 5)
        return p[6] == '\0';
    return 0;
}

static int type_ok(const char *type, const json_t *v)
{
    if (strcmp(type, "object") == 0) return json_is_object(v);
    if (strcmp(type, "array") == 0) return json_is_array(v);
    if (strcmp(type, "string") == 0) return json_is_string(v);
    if (strcmp(type, "integer") == 0) return json_is_integer(v);
    if (strcmp(type, "number") == 0) return json_is_number(v);
    if (strcmp(type, "boolean") == 0) return json_is_boolean(v);
    return 1;
}

static void run_c_rules(walk_t *w, const char *spath, const json_t *v, const char *path, const char *cel)
{
    for (size_t i = 0; i < val__nrules; i++) {
        const val__rule_t *r = &val__rules[i];
        if (!kind_matches(r->kind, w->kind) || strcmp(r->spath, spath) != 0)
            continue;
        if (r->cel && strcmp(r->cel, cel) == 0)
            r->fn(v, path, w->rep);
    }
}

/* The C rules without CEL of a node (kind and path matched at load). */
static void run_node_rules(walk_t *w, const vnode_t *n, const json_t *v, const char *path)
{
    for (size_t i = 0; i < n->nrules; i++)
        n->rules[i]->fn(v, path, w->rep);
}

static void walk(walk_t *w, const vnode_t *n, json_t *v, char *path, int depth);

static void walk_string(walk_t *w, const vnode_t *n, const json_t *v, const char *path)
{
    const char *s = json_string_value(v);
    char shown[96];
    size_t chars = (n->max_len || n->min_len) ? utf8_chars(s) : 0;
    if (n->max_len && chars > (size_t)json_integer_value(n->max_len)) {
        val_report_add(w->rep, VAL_ERROR, path, "is %zu characters long, at most %lld allowed", chars,
                       (long long)json_integer_value(n->max_len));
        return; /* the remaining checks would only repeat the point on a huge value */
    }
    if (n->min_len && chars < (size_t)json_integer_value(n->min_len))
        val_report_add(w->rep, VAL_ERROR, path, "must be at least %lld characters long",
                       (long long)json_integer_value(n->min_len));
    if (n->pattern != NULL && n->re != NULL && !regex_match(n->re, s)) {
        /* A C check on this field says what is wrong in words; the regex is the
         * fallback, as in the API server's "should match" message. */
        size_t n0 = w->rep->n;
        run_node_rules(w, n, v, path);
        if (w->rep->n == n0) {
            show(v, shown, sizeof(shown));
            val_report_add(w->rep, VAL_ERROR, path, "%s does not match %s", shown, n->pattern);
        }
    }
    if (n->format != NULL) {
        if (strcmp(n->format, "ipv4") == 0 && !val__is_ipv4(s)) {
            show(v, shown, sizeof(shown));
            val_report_add(w->rep, VAL_ERROR, path, "%s is not an IPv4 address", shown);
        } else if (strcmp(n->format, "ipv6") == 0 && !val__is_ipv6(s)) {
            show(v, shown, sizeof(shown));
            val_report_add(w->rep, VAL_ERROR, path, "%s is not an IPv6 address", shown);
        } else if (strcmp(n->format, "date-time") == 0 && !is_rfc3339(s)) {
            show(v, shown, sizeof(shown));
            val_report_add(w->rep, VAL_ERROR, path, "%s is not an RFC 3339 date-time", shown);
        }
    }
}

static void walk_number(walk_t *w, const vnode_t *n, const json_t *v, const char *path)
{
    char shown[96]; /* rendered only for a message: json_dumps per number was a cost */
    if (n->format != NULL && strcmp(n->format, "int32") == 0 && json_is_integer(v) &&
        (json_integer_value(v) < INT32_MIN || json_integer_value(v) > INT32_MAX)) {
        show(v, shown, sizeof(shown));
        val_report_add(w->rep, VAL_ERROR, path, "%s does not fit in 32 bits", shown);
        return;
    }
    double x = json_number_value(v);
    const json_t *mn = n->minimum, *mx = n->maximum;
    int low = mn && x < json_number_value(mn), high = mx && x > json_number_value(mx);
    if (!low && !high)
        return;
    show(v, shown, sizeof(shown));
    /* Name the bounds: users fix values by reading them. */
    if (mn && mx)
        val_report_add(w->rep, VAL_ERROR, path, "%s is out of range %.0f..%.0f", shown,
                       json_number_value(mn), json_number_value(mx));
    else if (low)
        val_report_add(w->rep, VAL_ERROR, path, "%s is below the minimum %.0f", shown, json_number_value(mn));
    else
        val_report_add(w->rep, VAL_ERROR, path, "%s is above the maximum %.0f", shown, json_number_value(mx));
}

static void walk_object(walk_t *w, const vnode_t *n, json_t *v, char *path, int depth)
{
    size_t plen = strlen(path);

    /* Defaults first, as the API server does. */
    for (size_t i = 0; i < n->ndefs; i++) {
        if (json_object_get(v, n->defs[i].key) != NULL)
            continue;
        if (w->borrowed) {
            w->defaults_missing = 1;
            return;
        }
        json_object_set_new(v, n->defs[i].key, json_deep_copy(n->defs[i].def));
    }
    size_t i;
    const json_t *req;
    json_array_foreach(n->required, i, req) {
        const char *name = json_string_value(req);
        if (name && json_object_get(v, name) == NULL) {
            doc_path_key(path, name);
            val_report_add(w->rep, VAL_ERROR, path, "required field is missing");
            path[plen] = '\0';
        }
    }
    /* Sorted keys: messages come out in a stable order. */
    const char *small[16], **keys = small;
    size_t size = json_object_size(v);
    if (size > sizeof(small) / sizeof(*small) && (keys = malloc(size * sizeof(*keys))) == NULL) {
        w->rep->nomem = 1;
        return;
    }
    size_t nkeys = 0;
    const char *key;
    json_t *sub;
    json_object_foreach(v, key, sub) keys[nkeys++] = key;
    bd_qsort(keys, nkeys, sizeof(*keys), bd_cmp_strp);
    for (size_t k = 0; k < nkeys && !w->defaults_missing; k++) {
        key = keys[k];
        /* metadata is the API server's business (check_metadata), not the schema's, and
         * status is ignored on writes of a resource with a status subresource. */
        if (depth == 0 && (strcmp(key, "metadata") == 0 || strcmp(key, "status") == 0))
            continue;
        sub = json_object_get(v, key);
        doc_path_key(path, key);
        const vnode_t *ps = vnode_prop(n, key);
        if (ps != NULL)
            walk(w, ps, sub, path, depth + 1);
        else if (n->addl != NULL)
            walk(w, n->addl, sub, path, depth + 1);
        else if (!n->preserve && !n->addl_true)
            val_report_add(w->rep, VAL_WARNING, path, "unknown field \"%s\" (ignored)", key);
        path[plen] = '\0';
    }
    if (keys != small)
        free(keys);
}

static void walk_array(walk_t *w, const vnode_t *n, json_t *v, char *path, int depth)
{
    size_t len = json_array_size(v);
    const json_t *lim;
    if ((lim = n->min_items) && len < (size_t)json_integer_value(lim))
        val_report_add(w->rep, VAL_ERROR, path, "must have at least %lld item%s",
                       (long long)json_integer_value(lim), json_integer_value(lim) == 1 ? "" : "s");
    if ((lim = n->max_items) && len > (size_t)json_integer_value(lim)) {
        val_report_add(w->rep, VAL_ERROR, path, "has %zu items, at most %lld allowed", len,
                       (long long)json_integer_value(lim));
        return;
    }
    const char *list_type = n->list_type;
    size_t plen = strlen(path);
    for (size_t i = 0; i < len && !w->defaults_missing; i++) {
        json_t *item = json_array_get(v, i);
        doc_path_index(path, i);
        if (n->items != NULL)
            walk(w, n->items, item, path, depth + 1);
        for (size_t j = 0; list_type && j < i; j++) {
            const json_t *other = json_array_get(v, j);
            int dup = 0;
            if (strcmp(list_type, "set") == 0) {
                dup = json_equal((json_t *)item, (json_t *)other);
            } else if (strcmp(list_type, "map") == 0 && json_array_size(n->map_keys) > 0) {
                dup = 1;
                size_t k;
                const json_t *mk;
                json_array_foreach(n->map_keys, k, mk) {
                    const char *name = json_string_value(mk);
                    if (!json_equal(json_object_get(item, name), json_object_get(other, name)))
                        dup = 0;
                }
            }
            if (dup) {
                val_report_add(w->rep, VAL_ERROR, path, "duplicates item %zu", j);
                break;
            }
        }
        path[plen] = '\0';
    }
}

static void walk(walk_t *w, const vnode_t *n, json_t *v, char *path, int depth)
{
    if (depth > DOC_MAX_DEPTH) {
        val_report_add(w->rep, VAL_ERROR, path, "nested too deeply");
        return;
    }
    if (json_is_null(v)) {
        if (!n->nullable)
            val_report_add(w->rep, VAL_ERROR, path, "must not be null");
        return;
    }
    char shown[96];
    if (n->int_or_string) {
        if (!json_is_integer(v) && !json_is_string(v)) {
            show(v, shown, sizeof(shown));
            val_report_add(w->rep, VAL_ERROR, path, "%s must be an integer or a string", shown);
            return;
        }
    } else {
        const char *type = n->type;
        if (type != NULL && !type_ok(type, v)) {
            show(v, shown, sizeof(shown));
            val_report_add(w->rep, VAL_ERROR, path, "%s is a %s, expected %s%s", shown, type_name(v),
                           strchr("aeiou", type[0]) ? "an " : "a ", type);
            return;
        }
    }

    size_t before = w->rep->nerrors;
    const json_t *en = n->enm;
    if (en != NULL) {
        int found = 0;
        size_t i;
        const json_t *opt;
        json_array_foreach(en, i, opt) found |= json_equal(v, (json_t *)opt);
        if (!found) {
            char opts[256] = "";
            json_array_foreach(en, i, opt) {
                char one[64];
                show(opt, one, sizeof(one));
                size_t ol = strlen(opts);
                snprintf(opts + ol, sizeof(opts) - ol, "%s%s", i ? ", " : "", one);
            }
            show(v, shown, sizeof(shown));
            val_report_add(w->rep, VAL_ERROR, path, "%s is not one of %s", shown, opts);
            return;
        }
    }

    if (json_is_object(v))
        walk_object(w, n, v, path, depth);
    else if (json_is_array(v))
        walk_array(w, n, v, path, depth);
    else if (json_is_string(v))
        walk_string(w, n, v, path);
    else if (json_is_number(v))
        walk_number(w, n, v, path);
    if (w->defaults_missing)
        return;

    /* CEL rules always run, as in the API server; the stricter C checks only where the
     * schema's own checks passed, so one mistake gives one message. */
    size_t i;
    const json_t *rule;
    json_array_foreach(n->validations, i, rule) {
        const char *cel = json_string_value(json_object_get(rule, "rule")) ?: "";
        if (!val_has_cel_twin(w->kind, n->spath, cel)) {
            val_report_add(w->rep, VAL_ERROR, path, "internal: no C rule for CEL rule \"%s\"", cel);
            continue;
        }
        run_c_rules(w, n->spath, v, path, cel);
    }
    if (w->rep->nerrors == before)
        run_node_rules(w, n, v, path);
}

/* ---- object-level checks (what the API server checks outside the schema) ---------- */

static int is_dns1123_label(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i + 1 < n))
            return 0;
    }
    return 1;
}

static int is_dns1123_subdomain(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return 0;
    char buf[256];
    memcpy(buf, s, n + 1);
    char *save = NULL;
    size_t labels = 0;
    for (char *l = strtok_r(buf, ".", &save); l; l = strtok_r(NULL, ".", &save), labels++)
        if (!is_dns1123_label(l, 63))
            return 0;
    return labels > 0 && s[0] != '.' && s[n - 1] != '.' && strstr(s, "..") == NULL;
}

/* Label names and values: [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, at most 63. */
static int is_label_token(const char *s, int allow_empty)
{
    size_t n = strlen(s);
    if (n == 0)
        return allow_empty;
    if (n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !((c == '-' || c == '_' || c == '.') && i > 0 && i + 1 < n))
            return 0;
    }
    return 1;
}

static void check_metadata(walk_t *w, const json_t *obj)
{
    char path[DOC_PATH_MAX] = "metadata.";
    const json_t *meta = json_object_get(obj, "metadata");
    if (!json_is_object(meta)) {
        val_report_add(w->rep, VAL_ERROR, "metadata", meta ? "must be an object" : "required field is missing");
        return;
    }
    const json_t *name = json_object_get(meta, "name");
    if (name == NULL)
        val_report_add(w->rep, VAL_ERROR, "metadata.name", "required field is missing");
    else if (!json_is_string(name) || !is_dns1123_subdomain(json_string_value(name)))
        val_report_add(w->rep, VAL_ERROR, "metadata.name",
                       "must be a lower-case RFC 1123 subdomain of at most 253 characters");
    const json_t *ns = json_object_get(meta, "namespace");
    if (ns != NULL && (!json_is_string(ns) || !is_dns1123_label(json_string_value(ns), 63)))
        val_report_add(w->rep, VAL_ERROR, "metadata.namespace",
                       "must be a lower-case RFC 1123 label of at most 63 characters");
    static const char *const maps[] = {"labels", "annotations"};
    for (size_t m = 0; m < 2; m++) {
        const json_t *map = json_object_get(meta, maps[m]);
        strcpy(path + strlen("metadata."), maps[m]); /* both fit: path is DOC_PATH_MAX */
        if (map == NULL || json_is_null(map))
            continue;
        if (!json_is_object(map)) {
            val_report_add(w->rep, VAL_ERROR, path, "must be a map of strings");
            continue;
        }
        size_t plen = strlen(path);
        const char *key;
        const json_t *val;
        json_object_foreach((json_t *)map, key, val) {
            doc_path_key(path, key);
            const char *slash = strrchr(key, '/');
            const char *lname = slash ? slash + 1 : key;
            char prefix[256] = "";
            if (slash)
                snprintf(prefix, sizeof(prefix), "%.*s", (int)(slash - key), key);
            if (!json_is_string(val))
                val_report_add(w->rep, VAL_ERROR, path, "must be a string");
            else if (!is_label_token(lname, 0) || (slash && !is_dns1123_subdomain(prefix)))
                val_report_add(w->rep, VAL_ERROR, path, "is not a valid %s key", m ? "annotation" : "label");
            else if (m == 0 && !is_label_token(json_string_value(val), 1))
                val_report_add(w->rep, VAL_ERROR, path,
                               "label values are at most 63 characters of [A-Za-z0-9_.-], "
                               "starting and ending alphanumeric");
            path[plen] = '\0';
        }
    }
}

/* An instance without spec.role takes its role from the dns-role label, so the label's
 * value is then part of the spec: a typo must not silently mean "primary". */
static void check_role_label(walk_t *w, const json_t *obj)
{
    const json_t *role = json_object_get(json_object_get(obj, "spec"), "role");
    const char *label =
        json_string_value(json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), "dns-role"));
    if (role != NULL || label == NULL || strcmp(label, "primary") == 0 || strcmp(label, "secondary") == 0)
        return;
    val_report_add(w->rep, VAL_ERROR, "metadata.labels.dns-role",
                   "\"%.64s\" is not one of \"primary\", \"secondary\" (it sets the role when spec.role is absent)",
                   label);
}

static int check(const val_catalog_t *cat, json_t *obj, val_report_t *rep, int borrowed, bool *defaults_missing)
{
    size_t before = rep->nerrors;
    const char *api = json_string_value(json_object_get(obj, "apiVersion"));
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    if (api == NULL)
        val_report_add(rep, VAL_ERROR, "apiVersion", "required field is missing");
    if (kind == NULL)
        val_report_add(rep, VAL_ERROR, "kind", "required field is missing");
    if (api == NULL || kind == NULL)
        return rep->nomem ? BD_ENOMEM : BD_EINVAL;

    walk_t w = {cat, kind, rep, borrowed, 0};
    switch (val_classify(cat, api, kind)) {
    case VAL_CLASS_BUILTIN:
        check_metadata(&w, obj);
        break;
    case VAL_CLASS_UNKNOWN:
        if (strncmp(api, BD_GROUP "/", strlen(BD_GROUP) + 1) == 0 && catalog_find(cat, kind))
            val_report_add(rep, VAL_ERROR, "apiVersion", "\"%s\" is not served; use %s", api, BD_API_VERSION);
        else if (strncmp(api, BD_GROUP "/", strlen(BD_GROUP) + 1) == 0)
            val_report_add(rep, VAL_ERROR, "kind", "unknown kind \"%s\" in %s", kind, BD_GROUP);
        else
            val_report_add(rep, VAL_ERROR, "kind", "unknown kind \"%s\" (apiVersion %s)", kind, api);
        break;
    case VAL_CLASS_OURS:
        if (strcmp(api, BD_API_VERSION) != 0) {
            val_report_add(rep, VAL_ERROR, "apiVersion", "\"%s\" is not served; use %s", api, BD_API_VERSION);
            break;
        }
        check_metadata(&w, obj);
        if (strcmp(kind, "Bind9Instance") == 0)
            check_role_label(&w, obj);
        char path[DOC_PATH_MAX] = "";
        walk(&w, catalog_find(cat, kind)->root, obj, path, 0);
        break;
    }
    if (rep->nomem)
        return BD_ENOMEM;
    if (w.defaults_missing) {
        *defaults_missing = true;
        return BD_OK;
    }
    return rep->nerrors > before ? BD_EINVAL : BD_OK;
}

int val_check(const val_catalog_t *cat, json_t *obj, val_report_t *rep)
{
    bool unused = false;
    return check(cat, obj, rep, 0, &unused);
}

int val_check_borrowed(const val_catalog_t *cat, const json_t *obj, val_report_t *rep, bool *defaults_missing)
{
    *defaults_missing = false;
    return check(cat, (json_t *)obj, rep, 1, defaults_missing); /* written to only if !borrowed */
}

/* ---- shared predicates ------------------------------------------------------------ */

int val__is_ipv4(const char *s)
{
    struct in_addr a;
    return inet_pton(AF_INET, s, &a) == 1;
}

int val__is_ipv6(const char *s)
{
    struct in6_addr a;
    return inet_pton(AF_INET6, s, &a) == 1;
}

int val__dns_name_ok(const char *s)
{
    if (strcmp(s, "@") == 0 || strcmp(s, ".") == 0)
        return 1;
    size_t wire = 1, label = 0;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == '.') {
            if (label == 0)
                return 0;
            wire += label + 1;
            label = 0;
            continue;
        }
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                 c == '_' || (c == '*' && p == s && (p[1] == '.' || p[1] == '\0'));
        if (!ok || ++label > 63)
            return 0;
    }
    if (label > 0)
        wire += label + 1;
    return wire <= 255;
}
