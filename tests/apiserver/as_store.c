/*
 * as_store.c - objects and their semantics for the API-server test double: the resource
 * registry (built-ins and CRD-defined), storage, the event history (the "etcd window"),
 * selectors, and create/get/list/update/patch/apply/delete. Every function here runs
 * with as_server_t.mu held.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "as_internal.h"

#define AS_ANNOTATIONS_MAX (256 * 1024)

/* ---- Status objects ----------------------------------------------------------------- */

static void qualified(const as_res_t *res, char *out, size_t n)
{
    if (!res)
        snprintf(out, n, "resource");
    else if (res->group[0])
        snprintf(out, n, "%s.%s", res->plural, res->group);
    else
        snprintf(out, n, "%s", res->plural);
}

static void qualified_kind(const as_res_t *res, char *out, size_t n)
{
    if (res->group[0])
        snprintf(out, n, "%s.%s", res->kind, res->group);
    else
        snprintf(out, n, "%s", res->kind);
}

static json_t *vstatus(int code, const char *reason, const char *name, const as_res_t *res,
                       const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    json_t *st = json_pack("{s:s,s:s,s:{},s:s,s:s}", "kind", "Status", "apiVersion", "v1",
                           "metadata", "status", code < 400 ? "Success" : "Failure",
                           "message", msg);
    if (reason && *reason)
        json_object_set_new(st, "reason", json_string(reason));
    if (name || res) {
        json_t *d = json_object();
        if (name)
            json_object_set_new(d, "name", json_string(name));
        if (res) {
            if (res->group[0])
                json_object_set_new(d, "group", json_string(res->group));
            json_object_set_new(d, "kind", json_string(res->plural));
        }
        json_object_set_new(st, "details", d);
    }
    json_object_set_new(st, "code", json_integer(code));
    return st;
}

json_t *as__status(int code, const char *reason, const char *name, const as_res_t *res,
                   const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *st = vstatus(code, reason, name, res, fmt, ap);
    va_end(ap);
    return st;
}

void as__resp_error(as_resp_t *r, int code, const char *reason, const char *name,
                    const as_res_t *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_decref(r->body);
    r->body = vstatus(code, reason, name, res, fmt, ap);
    r->status = code;
    va_end(ap);
}

static void resp_obj(as_resp_t *r, int code, json_t *body)
{
    json_decref(r->body);
    r->status = code;
    r->body = body;
}

static void warn(as_resp_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(as_resp_t *r, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!r->warnings)
        r->warnings = json_array();
    json_array_append_new(r->warnings, json_string(msg));
}

/* 422 Invalid with causes (an array, stolen). */
static void resp_invalid(as_resp_t *r, const as_res_t *res, const char *name, json_t *causes)
{
    char qk[300], *buf = NULL;
    size_t len = 0, i;
    json_t *c;
    FILE *f = open_memstream(&buf, &len);
    qualified_kind(res, qk, sizeof(qk));
    if (json_array_size(causes) > 1)
        fputc('[', f);
    json_array_foreach(causes, i, c) {
        fprintf(f, "%s%s: %s", i ? ", " : "", json_string_value(json_object_get(c, "field")),
                json_string_value(json_object_get(c, "message")));
    }
    if (json_array_size(causes) > 1)
        fputc(']', f);
    fclose(f);
    as__resp_error(r, 422, "Invalid", name ? name : "", res, "%s \"%s\" is invalid: %s", qk,
                   name ? name : "", buf ? buf : "");
    json_object_set_new(json_object_get(r->body, "details"), "causes", causes);
    json_object_set_new(json_object_get(r->body, "details"), "kind", json_string(res->kind));
    free(buf);
}

/* ---- small JSON accessors ----------------------------------------------------------- */

static json_t *meta(json_t *obj)
{
    json_t *m = json_object_get(obj, "metadata");
    if (!json_is_object(m)) {
        m = json_object();
        json_object_set_new(obj, "metadata", m);
    }
    return m;
}

static const char *mstr(const json_t *obj, const char *k)
{
    return json_string_value(json_object_get(json_object_get(obj, "metadata"), k));
}

static void gv_string(const as_res_t *res, char *out, size_t n)
{
    if (res->group[0])
        snprintf(out, n, "%s/%s", res->group, res->version);
    else
        snprintf(out, n, "%s", res->version);
}

static void obj_key(const char *ns, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", ns ? ns : "", name);
}

/* ---- registry ----------------------------------------------------------------------- */

static json_t *strs(const char *csv)
{
    json_t *a = json_array();
    if (!csv || !*csv)
        return a;
    const char *p = csv;
    for (;;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        json_array_append_new(a, json_stringn(p, n));
        if (!e)
            break;
        p = e + 1;
    }
    return a;
}

static void res_free(as_res_t *r)
{
    if (!r)
        return;
    free(r->group);
    free(r->version);
    free(r->plural);
    free(r->singular);
    free(r->kind);
    free(r->list_kind);
    free(r->crd);
    free(r->coll);
    json_decref(r->short_names);
    json_decref(r->categories);
    json_decref(r->columns);
    json_decref(r->schema);
    json_decref(r->verbs);
    free(r);
}

static as_res_t *res_new(const char *group, const char *version, const char *plural,
                         const char *singular, const char *kind, bool namespaced)
{
    as_res_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->group = strdup(group);
    r->version = strdup(version);
    r->plural = strdup(plural);
    r->singular = strdup(singular);
    r->kind = strdup(kind);
    if (asprintf(&r->list_kind, "%sList", kind) < 0)
        r->list_kind = NULL;
    if (asprintf(&r->coll, "%s/%s", group, plural) < 0)
        r->coll = NULL;
    r->namespaced = namespaced;
    r->short_names = json_array();
    r->categories = json_array();
    r->verbs = strs("create,delete,deletecollection,get,list,patch,update,watch");
    return r;
}

static int res_add(as_server_t *s, as_res_t *r)
{
    if (s->nres == s->capres) {
        size_t cap = s->capres ? s->capres * 2 : 64;
        as_res_t **n = realloc(s->res, cap * sizeof(*n));
        if (!n)
            return BD_ENOMEM;
        s->res = n;
        s->capres = cap;
    }
    s->res[s->nres++] = r;
    if (!bd_hmap_get(s->colls, r->coll)) {
        bd_hmap_t *m = bd_hmap_new();
        if (!m || bd_hmap_put(s->colls, r->coll, m, NULL) != 0) {
            bd_hmap_free(m);
            return BD_ENOMEM;
        }
    }
    return 0;
}

as_res_t *as__res_find(as_server_t *s, const char *group, const char *version,
                       const char *plural)
{
    for (size_t i = 0; i < s->nres; i++) {
        as_res_t *r = s->res[i];
        if (strcmp(r->group, group) == 0 && strcmp(r->version, version) == 0 &&
            strcmp(r->plural, plural) == 0)
            return r;
    }
    return NULL;
}

as_res_t *as__res_lookup_any(as_server_t *s, const char *group, const char *name)
{
    for (size_t i = 0; i < s->nres; i++) {
        as_res_t *r = s->res[i];
        if (group && strcmp(r->group, group) != 0)
            continue;
        if (strcmp(r->plural, name) == 0 || strcmp(r->singular, name) == 0 ||
            strcasecmp(r->kind, name) == 0)
            return r;
        size_t j;
        json_t *sn;
        json_array_foreach(r->short_names, j, sn) {
            if (strcmp(json_string_value(sn), name) == 0)
                return r;
        }
    }
    return NULL;
}

static as_res_t *res_by_kind(as_server_t *s, const char *group, const char *version,
                             const char *kind)
{
    for (size_t i = 0; i < s->nres; i++) {
        as_res_t *r = s->res[i];
        if (strcmp(r->group, group) == 0 && strcmp(r->version, version) == 0 &&
            strcmp(r->kind, kind) == 0)
            return r;
    }
    return NULL;
}

static void split_api_version(const char *av, char *group, size_t gn, char *ver, size_t vn)
{
    const char *slash = strchr(av, '/');
    if (slash) {
        snprintf(group, gn, "%.*s", (int)(slash - av), av);
        snprintf(ver, vn, "%s", slash + 1);
    } else {
        snprintf(group, gn, "%s", "");
        snprintf(ver, vn, "%s", av);
    }
}

bd_hmap_t *as__coll(as_server_t *s, const char *coll)
{
    return bd_hmap_get(s->colls, coll);
}

static const struct builtin {
    const char *group, *version, *plural, *singular, *kind;
    bool namespaced, status, generation;
    const char *short_names, *categories;
} builtins[] = {
    {"", "v1", "namespaces", "namespace", "Namespace", false, true, false, "ns", ""},
    {"", "v1", "pods", "pod", "Pod", true, true, false, "po", "all"},
    {"", "v1", "services", "service", "Service", true, true, false, "svc", "all"},
    {"", "v1", "configmaps", "configmap", "ConfigMap", true, false, false, "cm", ""},
    {"", "v1", "secrets", "secret", "Secret", true, false, false, "", ""},
    {"", "v1", "events", "event", "Event", true, false, false, "ev", ""},
    {"", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, false, false, "sa",
     ""},
    {"", "v1", "endpoints", "endpoints", "Endpoints", true, false, false, "ep", ""},
    {"apps", "v1", "deployments", "deployment", "Deployment", true, true, true, "deploy",
     "all"},
    {"apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, true, true, "sts", "all"},
    {"policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget",
     true, true, true, "pdb", ""},
    {"coordination.k8s.io", "v1", "leases", "lease", "Lease", true, false, false, "", ""},
    {"discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true,
     false, false, "", ""},
    {"rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true, false, false, "", ""},
    {"rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", true,
     false, false, "", ""},
    {"rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", false,
     false, false, "", ""},
    {"rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding",
     "ClusterRoleBinding", false, false, false, "", ""},
    {"apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition",
     "CustomResourceDefinition", false, true, true, "crd,crds", "api-extensions"},
};

/* ---- event history ------------------------------------------------------------------ */

const as_event_t *as__event_at(const as_server_t *s, size_t i)
{
    if (i >= s->ev_len)
        return NULL;
    return &s->ev[(s->ev_head + i) % s->ev_cap];
}

static void event_clear(as_event_t *e)
{
    free(e->coll);
    free(e->key);
    json_decref(e->obj);
    json_decref(e->prev);
    memset(e, 0, sizeof(*e));
}

static void emit(as_server_t *s, uint64_t rv, int type, const char *coll, const char *key,
                 json_t *obj, json_t *prev)
{
    if (s->ev_len == s->ev_cap) {
        as_event_t *old = &s->ev[s->ev_head];
        s->compact_rv = old->rv;
        event_clear(old);
        s->ev_head = (s->ev_head + 1) % s->ev_cap;
        s->ev_len--;
    }
    as_event_t *e = &s->ev[(s->ev_head + s->ev_len) % s->ev_cap];
    e->rv = rv;
    e->type = type;
    e->coll = strdup(coll);
    e->key = strdup(key);
    e->obj = json_incref(obj);
    e->prev = prev ? json_incref(prev) : NULL;
    s->ev_len++;
    pthread_cond_broadcast(&s->cond);
}

void bd_apiserver_compact(bd_apiserver_t *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->ev_len) {
        event_clear(&s->ev[s->ev_head]);
        s->ev_head = (s->ev_head + 1) % s->ev_cap;
        s->ev_len--;
    }
    s->compact_rv = s->rv;
    pthread_mutex_unlock(&s->mu);
}

static void set_rv(json_t *obj, uint64_t rv)
{
    char b[24];
    snprintf(b, sizeof(b), "%llu", (unsigned long long)rv);
    json_object_set_new(meta(obj), "resourceVersion", json_string(b));
}

/* Store obj (stolen) under key with a new RV; prev is the object it replaces (borrowed). */
static void store_put(as_server_t *s, const as_res_t *res, const char *key, json_t *obj)
{
    bd_hmap_t *m = as__coll(s, res->coll);
    uint64_t rv = ++s->rv;
    set_rv(obj, rv);
    void *old = NULL;
    if (bd_hmap_put(m, key, obj, &old) != 0) {
        json_decref(obj);
        return;
    }
    emit(s, rv, old ? AS_EV_MODIFIED : AS_EV_ADDED, res->coll, key, obj, old);
    json_decref(old);
}

static void ns_maybe_finalize(as_server_t *s, const char *ns);

/* Remove key; the DELETED event carries final (stolen) at the deletion's RV. */
static void store_del(as_server_t *s, const char *coll, const char *key, json_t *final)
{
    bd_hmap_t *m = as__coll(s, coll);
    json_t *old = m ? bd_hmap_del(m, key) : NULL;
    uint64_t rv = ++s->rv;
    set_rv(final, rv);
    emit(s, rv, AS_EV_DELETED, coll, key, final, old);
    json_decref(final);
    json_decref(old);
    if (strcmp(coll, "/namespaces") != 0) {
        const char *slash = strchr(key, '/');
        if (slash && slash != key) {
            char ns[256];
            snprintf(ns, sizeof(ns), "%.*s", (int)(slash - key), key);
            ns_maybe_finalize(s, ns);
        }
    }
}

/* ---- selectors ---------------------------------------------------------------------- */

enum { SEL_EQ, SEL_NEQ, SEL_IN, SEL_NOTIN, SEL_EXISTS, SEL_NOTEXISTS, SEL_GT, SEL_LT };

typedef struct as_selreq {
    char *key;
    int op;
    json_t *vals; /* array of strings */
} as_selreq_t;

struct as_sel {
    as_selreq_t *r;
    size_t n;
    bool fields;
};

void as__sel_free(as_sel_t *sel)
{
    if (!sel)
        return;
    for (size_t i = 0; i < sel->n; i++) {
        free(sel->r[i].key);
        json_decref(sel->r[i].vals);
    }
    free(sel->r);
    free(sel);
}

static int sel_push(as_sel_t *sel, const char *key, size_t kn, int op, json_t *vals)
{
    as_selreq_t *n = realloc(sel->r, (sel->n + 1) * sizeof(*n));
    if (!n) {
        json_decref(vals);
        return -1;
    }
    sel->r = n;
    n[sel->n].key = strndup(key, kn);
    n[sel->n].op = op;
    n[sel->n].vals = vals ? vals : json_array();
    sel->n++;
    return 0;
}

static bool key_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_' || c == '/';
}

static bool val_char(char c)
{
    return isalnum((unsigned char)c) || c == '.' || c == '-' || c == '_';
}

int as__sel_parse_labels(const char *str, as_sel_t **out, char *err, size_t errlen)
{
    *out = NULL;
    as_sel_t *sel = calloc(1, sizeof(*sel));
    if (!sel)
        return -1;
    const char *p = str ? str : "";
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        bool neg = false;
        if (*p == '!') {
            neg = true;
            p++;
            while (*p == ' ')
                p++;
        }
        const char *k = p;
        while (key_char(*p))
            p++;
        size_t kn = (size_t)(p - k);
        if (kn == 0) {
            snprintf(err, errlen, "unable to parse requirement: found '%c', expected: identifier",
                     *p ? *p : ' ');
            goto fail;
        }
        while (*p == ' ')
            p++;
        if (neg) {
            sel_push(sel, k, kn, SEL_NOTEXISTS, NULL);
        } else if (*p == ',' || !*p) {
            sel_push(sel, k, kn, SEL_EXISTS, NULL);
        } else if (p[0] == '=' || p[0] == '!' || p[0] == '>' || p[0] == '<') {
            int op;
            if (p[0] == '=' && p[1] == '=') {
                op = SEL_EQ;
                p += 2;
            } else if (p[0] == '=') {
                op = SEL_EQ;
                p++;
            } else if (p[0] == '!' && p[1] == '=') {
                op = SEL_NEQ;
                p += 2;
            } else if (p[0] == '>') {
                op = SEL_GT;
                p++;
            } else if (p[0] == '<') {
                op = SEL_LT;
                p++;
            } else {
                snprintf(err, errlen, "unable to parse requirement: found '!', expected: '='");
                goto fail;
            }
            while (*p == ' ')
                p++;
            const char *v = p;
            while (val_char(*p))
                p++;
            json_t *vals = json_array();
            json_array_append_new(vals, json_stringn(v, (size_t)(p - v)));
            if ((op == SEL_GT || op == SEL_LT) && p == v) {
                json_decref(vals);
                snprintf(err, errlen, "unable to parse requirement: expected an integer");
                goto fail;
            }
            sel_push(sel, k, kn, op, vals);
        } else if (strncmp(p, "in", 2) == 0 || strncmp(p, "notin", 5) == 0) {
            int op = p[0] == 'i' ? SEL_IN : SEL_NOTIN;
            p += op == SEL_IN ? 2 : 5;
            while (*p == ' ')
                p++;
            if (*p != '(') {
                snprintf(err, errlen, "unable to parse requirement: found '%c', expected: '('",
                         *p ? *p : ' ');
                goto fail;
            }
            p++;
            json_t *vals = json_array();
            for (;;) {
                while (*p == ' ')
                    p++;
                const char *v = p;
                while (val_char(*p))
                    p++;
                json_array_append_new(vals, json_stringn(v, (size_t)(p - v)));
                while (*p == ' ')
                    p++;
                if (*p == ',') {
                    p++;
                    continue;
                }
                if (*p == ')') {
                    p++;
                    break;
                }
                json_decref(vals);
                snprintf(err, errlen, "unable to parse requirement: found '%c', expected: ',', ')'",
                         *p ? *p : ' ');
                goto fail;
            }
            sel_push(sel, k, kn, op, vals);
        } else {
            snprintf(err, errlen, "unable to parse requirement: found '%c', expected: in, notin, =, ==, !=, gt, lt",
                     *p);
            goto fail;
        }
        while (*p == ' ')
            p++;
        if (*p == ',') {
            p++;
            if (!*p) {
                snprintf(err, errlen, "unable to parse requirement: found '', expected: identifier");
                goto fail;
            }
        } else if (*p) {
            snprintf(err, errlen, "unable to parse requirement: found '%c', expected: ','", *p);
            goto fail;
        }
    }
    *out = sel;
    return 0;
fail:
    as__sel_free(sel);
    return -1;
}

int as__sel_parse_fields(const char *str, const as_res_t *res, as_sel_t **out, char *err,
                         size_t errlen)
{
    *out = NULL;
    as_sel_t *sel = calloc(1, sizeof(*sel));
    if (!sel)
        return -1;
    sel->fields = true;
    const char *p = str ? str : "";
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char term[512];
        snprintf(term, sizeof(term), "%.*s", (int)n, p);
        char *op = strstr(term, "!=");
        int kind = SEL_NEQ;
        size_t oplen = 2;
        if (!op) {
            op = strstr(term, "==");
            kind = SEL_EQ;
        }
        if (!op) {
            op = strchr(term, '=');
            oplen = 1;
        }
        if (!op) {
            snprintf(err, errlen, "invalid selector: '%s'; can't understand '%s'", str, term);
            goto fail;
        }
        *op = '\0';
        const char *key = term, *val = op + oplen;
        if (res && res->custom && strcmp(key, "metadata.name") != 0 &&
            strcmp(key, "metadata.namespace") != 0) {
            snprintf(err, errlen, "field label not supported: %s", key);
            goto fail;
        }
        json_t *vals = json_array();
        json_array_append_new(vals, json_string(val));
        sel_push(sel, key, strlen(key), kind, vals);
        if (!e)
            break;
        p = e + 1;
    }
    *out = sel;
    return 0;
fail:
    as__sel_free(sel);
    return -1;
}

static bool parse_ll(const char *s, long long *out)
{
    char *end;
    if (!s || !*s)
        return false;
    *out = strtoll(s, &end, 10);
    return *end == '\0';
}

/* String value of a dotted field path (field selectors), "" when absent. */
static char *field_value(const json_t *obj, const char *path)
{
    const json_t *cur = obj;
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
        cur = json_object_get(cur, tok);
    if (!cur || json_is_null(cur))
        return strdup("");
    if (json_is_string(cur))
        return strdup(json_string_value(cur));
    return as__go_format(cur);
}

bool as__sel_match(const as_sel_t *sel, const json_t *obj)
{
    if (!sel)
        return true;
    const json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
    for (size_t i = 0; i < sel->n; i++) {
        const as_selreq_t *r = &sel->r[i];
        if (sel->fields) {
            char *v = field_value(obj, r->key);
            bool eq = strcmp(v, json_string_value(json_array_get(r->vals, 0))) == 0;
            free(v);
            if ((r->op == SEL_EQ) != eq)
                return false;
            continue;
        }
        const char *lv = json_string_value(json_object_get(labels, r->key));
        bool in = false;
        size_t j;
        json_t *v;
        json_array_foreach(r->vals, j, v) {
            if (lv && strcmp(lv, json_string_value(v)) == 0)
                in = true;
        }
        long long a, b;
        switch (r->op) {
        case SEL_EQ:
        case SEL_IN:
            if (!in)
                return false;
            break;
        case SEL_NEQ:
        case SEL_NOTIN:
            if (in)
                return false;
            break;
        case SEL_EXISTS:
            if (!lv)
                return false;
            break;
        case SEL_NOTEXISTS:
            if (lv)
                return false;
            break;
        case SEL_GT:
        case SEL_LT:
            if (!parse_ll(lv, &a) ||
                !parse_ll(json_string_value(json_array_get(r->vals, 0)), &b))
                return false;
            if (r->op == SEL_GT ? !(a > b) : !(a < b))
                return false;
            break;
        }
    }
    return true;
}

/* ---- presentation ------------------------------------------------------------------- */

json_t *as__present(const as_res_t *res, const json_t *obj)
{
    json_t *c = json_deep_copy(obj);
    char gv[300];
    gv_string(res, gv, sizeof(gv));
    const char *av = json_string_value(json_object_get(c, "apiVersion"));
    if (!av || strcmp(av, gv) != 0)
        json_object_set_new(c, "apiVersion", json_string(gv));
    return c;
}

json_t *as__partial_meta(const json_t *obj)
{
    json_t *m = json_object_get(obj, "metadata");
    return json_pack("{s:s,s:s,s:O}", "kind", "PartialObjectMetadata", "apiVersion",
                     "meta.k8s.io/v1", "metadata", m ? m : json_object());
}

static json_t *coldef(const char *name, const char *type, const char *format,
                      const char *desc, json_int_t prio)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:I}", "name", name, "type", type, "format",
                     format ? format : "", "description", desc ? desc : "", "priority", prio);
}

static json_t *age_cell(const json_t *obj)
{
    int64_t t = as__parse_rfc3339(mstr(obj, "creationTimestamp"));
    char buf[32];
    if (t < 0)
        return json_string("<unknown>");
    as__human_duration((int64_t)time(NULL) - t, buf);
    return json_string(buf);
}

/* Cell for a CRD printer column (the apiextensions table convertor's rules). */
static json_t *cr_cell(const json_t *obj, const json_t *col)
{
    const char *type = json_string_value(json_object_get(col, "type"));
    const char *path = json_string_value(json_object_get(col, "jsonPath"));
    json_t *res = json_array();
    json_t *cell = json_null();
    if (!path || as__jsonpath(obj, path, res) != 0 || json_array_size(res) == 0) {
        json_decref(res);
        return cell;
    }
    json_t *v = json_array_get(res, 0);
    if (type && strcmp(type, "string") == 0) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        size_t i;
        json_t *e;
        json_array_foreach(res, i, e) {
            char *s = as__go_format(e);
            fprintf(f, "%s%s", i ? " " : "", s ? s : "");
            free(s);
        }
        fclose(f);
        cell = json_string(buf ? buf : "");
        free(buf);
    } else if (type && strcmp(type, "integer") == 0) {
        if (json_is_integer(v))
            cell = json_integer(json_integer_value(v));
        else if (json_is_real(v))
            cell = json_integer((json_int_t)json_real_value(v));
    } else if (type && strcmp(type, "number") == 0) {
        if (json_is_number(v))
            cell = json_real(json_number_value(v));
    } else if (type && strcmp(type, "boolean") == 0) {
        if (json_is_boolean(v))
            cell = json_incref(v);
    } else if (type && strcmp(type, "date") == 0) {
        if (json_is_string(v)) {
            int64_t t = as__parse_rfc3339(json_string_value(v));
            char buf[32];
            if (t < 0) {
                cell = json_string("<invalid>");
            } else {
                as__human_duration((int64_t)time(NULL) - t, buf);
                cell = json_string(buf);
            }
        }
    }
    json_decref(res);
    return cell;
}

static const char *name_desc =
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

static json_t *builtin_cells(const as_res_t *res, const json_t *obj, json_t *cols)
{
    json_t *cells = json_array();
    json_array_append_new(cells, json_string(mstr(obj, "name") ? mstr(obj, "name") : ""));
    const char *p = res->plural;
    if (strcmp(p, "namespaces") == 0) {
        if (cols)
            json_array_append_new(cols, coldef("Status", "string", "",
                                               "The status of the namespace", 0));
        const char *ph = json_string_value(
            json_object_get(json_object_get(obj, "status"), "phase"));
        json_array_append_new(cells, json_string(ph ? ph : ""));
    } else if (strcmp(p, "configmaps") == 0 || strcmp(p, "secrets") == 0) {
        if (strcmp(p, "secrets") == 0) {
            if (cols)
                json_array_append_new(cols, coldef("Type", "string", "", "The type of the secret", 0));
            const char *t = json_string_value(json_object_get(obj, "type"));
            json_array_append_new(cells, json_string(t ? t : "Opaque"));
        }
        if (cols)
            json_array_append_new(cols, coldef("Data", "string", "", "Number of data items", 0));
        json_array_append_new(cells, json_integer((json_int_t)(
                                         json_object_size(json_object_get(obj, "data")) +
                                         json_object_size(json_object_get(obj, "binaryData")))));
    } else if (strcmp(p, "leases") == 0) {
        if (cols)
            json_array_append_new(cols, coldef("Holder", "string", "", "The holder of the lease", 0));
        const char *h = json_string_value(
            json_object_get(json_object_get(obj, "spec"), "holderIdentity"));
        json_array_append_new(cells, json_string(h ? h : ""));
    } else if (strcmp(p, "customresourcedefinitions") == 0) {
        if (cols)
            json_array_append_new(cols, coldef("Created At", "date", "",
                                               "CreationTimestamp of the object", 0));
        const char *ts = mstr(obj, "creationTimestamp");
        json_array_append_new(cells, json_string(ts ? ts : ""));
        return cells;
    }
    if (cols)
        json_array_append_new(cols, coldef("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this object was created.", 0));
    json_array_append_new(cells, age_cell(obj));
    return cells;
}

json_t *as__table(const as_res_t *res, const json_t *objs, const char *include_object,
                  bool with_columns, const char *rv, const char *cont)
{
    json_t *t = json_pack("{s:s,s:s,s:{}}", "kind", "Table", "apiVersion", "meta.k8s.io/v1",
                          "metadata");
    if (rv)
        json_object_set_new(json_object_get(t, "metadata"), "resourceVersion", json_string(rv));
    if (cont && *cont)
        json_object_set_new(json_object_get(t, "metadata"), "continue", json_string(cont));
    json_t *cols = json_array();
    json_array_append_new(cols, coldef("Name", "string", "name", name_desc, 0));
    json_t *rows = json_array();
    size_t i;
    json_t *o;
    if (res->custom) {
        size_t j;
        json_t *c;
        json_array_foreach(res->columns, j, c) {
            const char *desc = json_string_value(json_object_get(c, "description"));
            json_array_append_new(cols, coldef(json_string_value(json_object_get(c, "name")),
                                               json_string_value(json_object_get(c, "type")),
                                               json_string_value(json_object_get(c, "format")),
                                               desc ? desc : "Custom resource definition column (in JSONPath format): ",
                                               json_integer_value(json_object_get(c, "priority"))));
        }
        if (!res->columns) {
            json_array_append_new(cols, coldef("Age", "date", "", "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp", 0));
        }
    }
    bool cols_done = res->custom;
    json_array_foreach(objs, i, o) {
        json_t *cells;
        if (res->custom) {
            cells = json_array();
            json_array_append_new(cells, json_string(mstr(o, "name") ? mstr(o, "name") : ""));
            if (res->columns) {
                size_t j;
                json_t *c;
                json_array_foreach(res->columns, j, c) json_array_append_new(cells, cr_cell(o, c));
            } else {
                json_array_append_new(cells, age_cell(o));
            }
        } else {
            cells = builtin_cells(res, o, cols_done ? NULL : cols);
            cols_done = true;
        }
        json_t *row = json_pack("{s:o}", "cells", cells);
        if (!include_object || strcmp(include_object, "Metadata") == 0)
            json_object_set_new(row, "object", as__partial_meta(o));
        else if (strcmp(include_object, "Object") == 0)
            json_object_set_new(row, "object", as__present(res, o));
        json_array_append_new(rows, row);
    }
    if (!cols_done) {
        json_t *none = json_pack("{s:{s:s,s:s}}", "metadata", "name", "", "creationTimestamp", "");
        json_decref(builtin_cells(res, none, cols));
        json_decref(none);
    }
    if (with_columns)
        json_object_set_new(t, "columnDefinitions", cols);
    else
        json_decref(cols);
    json_object_set_new(t, "rows", rows);
    return t;
}

/* ---- CRDs --------------------------------------------------------------------------- */

static void crd_unregister(as_server_t *s, const char *crd)
{
    size_t o = 0;
    for (size_t i = 0; i < s->nres; i++) {
        if (s->res[i]->crd && strcmp(s->res[i]->crd, crd) == 0)
            res_free(s->res[i]);
        else
            s->res[o++] = s->res[i];
    }
    s->nres = o;
}

static void crd_register(as_server_t *s, const json_t *crd)
{
    const char *name = mstr(crd, "name");
    const json_t *spec = json_object_get(crd, "spec");
    const json_t *names = json_object_get(spec, "names");
    const char *group = json_string_value(json_object_get(spec, "group"));
    const char *plural = json_string_value(json_object_get(names, "plural"));
    const char *kind = json_string_value(json_object_get(names, "kind"));
    const char *singular = json_string_value(json_object_get(names, "singular"));
    const char *list_kind = json_string_value(json_object_get(names, "listKind"));
    const char *scope = json_string_value(json_object_get(spec, "scope"));
    if (!name || !group || !plural || !kind)
        return;
    crd_unregister(s, name);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(spec, "versions"), i, v) {
        const char *ver = json_string_value(json_object_get(v, "name"));
        if (!ver || !json_is_true(json_object_get(v, "served")))
            continue;
        as_res_t *r = res_new(group, ver, plural, singular ? singular : "", kind,
                              !scope || strcmp(scope, "Namespaced") == 0);
        if (!r)
            return;
        r->custom = true;
        r->has_generation = true;
        r->crd = strdup(name);
        if (list_kind) {
            free(r->list_kind);
            r->list_kind = strdup(list_kind);
        }
        if (json_is_array(json_object_get(names, "shortNames"))) {
            json_decref(r->short_names);
            r->short_names = json_deep_copy(json_object_get(names, "shortNames"));
        }
        if (json_is_array(json_object_get(names, "categories"))) {
            json_decref(r->categories);
            r->categories = json_deep_copy(json_object_get(names, "categories"));
        }
        const json_t *sub = json_object_get(v, "subresources");
        r->status_sub = json_object_get(sub, "status") != NULL;
        const json_t *cols = json_object_get(v, "additionalPrinterColumns");
        if (json_is_array(cols))
            r->columns = json_deep_copy(cols);
        const json_t *sch = json_object_get(json_object_get(v, "schema"), "openAPIV3Schema");
        if (json_is_object(sch))
            r->schema = json_deep_copy(sch);
        if (res_add(s, r) != 0)
            res_free(r);
    }
}

static void crd_set_status(json_t *crd)
{
    char now[32];
    as__now_rfc3339(now);
    const json_t *spec = json_object_get(crd, "spec");
    json_t *stored = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(spec, "versions"), i, v) {
        if (json_is_true(json_object_get(v, "storage")))
            json_array_append(stored, json_object_get(v, "name"));
    }
    json_t *old = json_object_get(crd, "status");
    json_t *conds = json_object_get(old, "conditions");
    if (!json_is_array(conds) || json_array_size(conds) == 0) {
        conds = json_pack("[{s:s,s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s,s:s}]", "type",
                          "NamesAccepted", "status", "True", "lastTransitionTime", now,
                          "reason", "NoConflicts", "message", "no conflicts found", "type",
                          "Established", "status", "True", "lastTransitionTime", now, "reason",
                          "InitialNamesAccepted", "message",
                          "the initial names have been accepted");
    } else {
        conds = json_deep_copy(conds);
    }
    json_t *st = json_pack("{s:O,s:o,s:o}", "acceptedNames",
                           json_object_get(spec, "names") ? json_object_get(spec, "names")
                                                          : json_null(),
                           "conditions", conds, "storedVersions", stored);
    json_object_set_new(crd, "status", st);
}

/* ---- namespaces --------------------------------------------------------------------- */

static json_t *ns_get(as_server_t *s, const char *ns)
{
    char key[300];
    obj_key(NULL, ns, key, sizeof(key));
    bd_hmap_t *m = as__coll(s, "/namespaces");
    return m ? bd_hmap_get(m, key) : NULL;
}

static size_t ns_count_objects(as_server_t *s, const char *ns)
{
    size_t n = 0, pos = 0;
    const char *ck;
    void *cv;
    char prefix[300];
    snprintf(prefix, sizeof(prefix), "%s/", ns);
    while (bd_hmap_next(s->colls, &pos, &ck, &cv)) {
        if (strcmp(ck, "/namespaces") == 0)
            continue;
        size_t p2 = 0;
        const char *k;
        void *v;
        while (bd_hmap_next(cv, &p2, &k, &v))
            if (strncmp(k, prefix, strlen(prefix)) == 0)
                n++;
    }
    return n;
}

static void ns_maybe_finalize(as_server_t *s, const char *ns)
{
    json_t *o = ns_get(s, ns);
    if (!o || !mstr(o, "deletionTimestamp") || ns_count_objects(s, ns) > 0)
        return;
    char key[300];
    obj_key(NULL, ns, key, sizeof(key));
    json_t *fin = json_deep_copy(o);
    json_object_set_new(json_object_get(fin, "spec") ? json_object_get(fin, "spec") : fin,
                        "finalizers", json_array());
    store_del(s, "/namespaces", key, fin);
}

/* ---- metadata validation ------------------------------------------------------------ */

static bool dns_label(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-'))
            return false;
    return true;
}

static bool dns_subdomain(const char *s)
{
    char buf[256];
    if (strlen(s) == 0 || strlen(s) > 253)
        return false;
    snprintf(buf, sizeof(buf), "%s", s);
    char *save = NULL;
    size_t parts = 0;
    if (buf[0] == '.' || buf[strlen(buf) - 1] == '.' || strstr(buf, ".."))
        return false;
    for (char *t = strtok_r(buf, ".", &save); t; t = strtok_r(NULL, ".", &save)) {
        if (!dns_label(t, 253))
            return false;
        parts++;
    }
    return parts > 0;
}

static bool label_value_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0)
        return true;
    if (n > 63 || !isalnum((unsigned char)v[0]) || !isalnum((unsigned char)v[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!val_char(v[i]))
            return false;
    return true;
}

static bool qualified_name_ok(const char *k)
{
    const char *slash = strchr(k, '/');
    const char *name = slash ? slash + 1 : k;
    if (slash) {
        char prefix[256];
        snprintf(prefix, sizeof(prefix), "%.*s", (int)(slash - k), k);
        if (!dns_subdomain(prefix))
            return false;
    }
    return *name && label_value_ok(name);
}

static void validate_meta(const as_res_t *res, const json_t *obj, json_t *causes)
{
    const char *name = mstr(obj, "name");
    char msg[1024];
    if (name) {
        bool ok = strcmp(res->plural, "namespaces") == 0 ? dns_label(name, 63)
                                                          : dns_subdomain(name);
        if (!ok) {
            snprintf(msg, sizeof(msg),
                     "Invalid value: \"%s\": a lowercase RFC 1123 %s must consist of lower case "
                     "alphanumeric characters, '-'%s, and must start and end with an "
                     "alphanumeric character",
                     name, strcmp(res->plural, "namespaces") == 0 ? "label" : "subdomain",
                     strcmp(res->plural, "namespaces") == 0 ? "" : " or '.'");
            json_array_append_new(causes, json_pack("{s:s,s:s,s:s}", "reason",
                                                    "FieldValueInvalid", "message", msg,
                                                    "field", "metadata.name"));
        }
    }
    const json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)labels, k, v) {
        char field[512];
        snprintf(field, sizeof(field), "metadata.labels");
        if (!qualified_name_ok(k)) {
            snprintf(msg, sizeof(msg), "Invalid value: \"%s\": name part must consist of "
                     "alphanumeric characters, '-', '_' or '.', and must start and end with "
                     "an alphanumeric character", k);
            json_array_append_new(causes, json_pack("{s:s,s:s,s:s}", "reason",
                                                    "FieldValueInvalid", "message", msg,
                                                    "field", field));
        } else if (!json_is_string(v) || !label_value_ok(json_string_value(v))) {
            snprintf(msg, sizeof(msg), "Invalid value: \"%s\": a valid label must be an empty "
                     "string or consist of alphanumeric characters, '-', '_' or '.', and must "
                     "start and end with an alphanumeric character",
                     json_is_string(v) ? json_string_value(v) : "");
            json_array_append_new(causes, json_pack("{s:s,s:s,s:s}", "reason",
                                                    "FieldValueInvalid", "message", msg,
                                                    "field", field));
        }
    }
    const json_t *ann = json_object_get(json_object_get(obj, "metadata"), "annotations");
    size_t total = 0;
    json_object_foreach((json_t *)ann, k, v) {
        total += strlen(k) + (json_is_string(v) ? strlen(json_string_value(v)) : 0);
    }
    if (total > AS_ANNOTATIONS_MAX) {
        snprintf(msg, sizeof(msg), "Too long: must have at most %d bytes", AS_ANNOTATIONS_MAX);
        json_array_append_new(causes, json_pack("{s:s,s:s,s:s}", "reason", "FieldValueTooLong",
                                                "message", msg, "field",
                                                "metadata.annotations"));
    }
    if (strcmp(res->plural, "customresourcedefinitions") == 0 && name) {
        const json_t *spec = json_object_get(obj, "spec");
        const char *plural = json_string_value(
            json_object_get(json_object_get(spec, "names"), "plural"));
        const char *group = json_string_value(json_object_get(spec, "group"));
        char want[512];
        snprintf(want, sizeof(want), "%s.%s", plural ? plural : "", group ? group : "");
        if (strcmp(want, name) != 0) {
            snprintf(msg, sizeof(msg), "Invalid value: \"%s\": must be spec.names.plural+\".\"+spec.group", name);
            json_array_append_new(causes, json_pack("{s:s,s:s,s:s}", "reason", "FieldValueInvalid",
                                                    "message", msg, "field", "metadata.name"));
        }
    }
}

/* ---- managedFields ------------------------------------------------------------------ */

static const json_t *res_schema_for_fields(const as_res_t *res)
{
    return res->custom ? res->schema : NULL;
}

static json_t *obj_fieldset(const as_res_t *res, const json_t *obj)
{
    json_t *set = as__fs_from_object(obj, res_schema_for_fields(res));
    as__fs_strip_meta(set);
    return set;
}

static bool entry_is(const json_t *e, const char *mgr, const char *op, const char *sub)
{
    const char *es = json_string_value(json_object_get(e, "subresource"));
    return strcmp(json_string_value(json_object_get(e, "manager")) ?: "", mgr) == 0 &&
           strcmp(json_string_value(json_object_get(e, "operation")) ?: "", op) == 0 &&
           strcmp(es ? es : "", sub ? sub : "") == 0;
}

/* Make (or find) the entry for mgr/op/sub in mf; returns it (borrowed). */
static json_t *entry_get(json_t *mf, const char *mgr, const char *op, const char *sub,
                         const char *api_version, bool create)
{
    size_t i;
    json_t *e;
    json_array_foreach(mf, i, e) {
        if (entry_is(e, mgr, op, sub))
            return e;
    }
    if (!create)
        return NULL;
    e = json_pack("{s:s,s:s,s:s,s:s,s:s,s:{}}", "manager", mgr, "operation", op, "apiVersion",
                  api_version, "time", "", "fieldsType", "FieldsV1", "fieldsV1");
    if (sub)
        json_object_set_new(e, "subresource", json_string(sub));
    json_array_append_new(mf, e);
    return e;
}

/* Update managedFields of new_obj for a write by mgr. applied: the Apply set (Apply
 * only); forced: paths taken over from other managers (Apply with force). */
static void managed_update(const as_res_t *res, const json_t *old, json_t *new_obj,
                           const char *mgr, const char *op, const char *sub,
                           const json_t *applied, const json_t *forced)
{
    char gv[300], now[32];
    gv_string(res, gv, sizeof(gv));
    as__now_rfc3339(now);
    json_t *mf;
    const json_t *req_mf = json_object_get(json_object_get(new_obj, "metadata"), "managedFields");
    const json_t *old_mf = old ? json_object_get(json_object_get(old, "metadata"), "managedFields")
                               : NULL;
    if (json_is_array(req_mf) && json_array_size(req_mf) > 0 && !json_equal((json_t *)req_mf, (json_t *)old_mf)) {
        /* the client set managedFields explicitly: [{}] resets them */
        mf = json_array();
        size_t i;
        json_t *e;
        json_array_foreach(req_mf, i, e) {
            if (json_object_get(e, "manager"))
                json_array_append(mf, e);
        }
    } else {
        mf = json_is_array(old_mf) ? json_deep_copy(old_mf) : json_array();
    }
    json_t *newset = obj_fieldset(res, new_obj);
    json_t *oldset = old ? obj_fieldset(res, old) : json_object();
    json_t *removed = json_array(), *changed = json_array(), *leaves = json_array(),
           *empty = json_array();
    as__fs_leaves(oldset, empty, leaves);
    size_t i;
    json_t *p;
    json_array_foreach(leaves, i, p) {
        if (!as__fs_has(newset, p))
            json_array_append(removed, p);
    }
    json_array_clear(leaves);
    as__fs_leaves(newset, empty, leaves);
    json_array_foreach(leaves, i, p) {
        const json_t *ov = old ? as__fs_value(old, p) : NULL;
        const json_t *nv = as__fs_value(new_obj, p);
        if (!ov || !json_equal((json_t *)ov, (json_t *)nv))
            json_array_append(changed, p);
    }
    json_t *e;
    json_array_foreach(mf, i, e) {
        json_t *fs = json_object_get(e, "fieldsV1");
        if (!json_is_object(fs))
            continue;
        size_t j;
        json_array_foreach(removed, j, p) as__fs_remove(fs, p);
        if (strcmp(op, "Update") == 0 && !entry_is(e, mgr, op, sub)) {
            json_array_foreach(changed, j, p) as__fs_remove(fs, p);
        }
        if (forced && !entry_is(e, mgr, op, sub)) {
            json_array_foreach(forced, j, p) as__fs_remove(fs, p);
        }
    }
    json_t *own = NULL;
    if (strcmp(op, "Apply") == 0) {
        own = entry_get(mf, mgr, op, sub, gv, true);
        json_t *prev = json_object_get(own, "fieldsV1");
        if (!json_equal(prev, (json_t *)applied)) {
            json_object_set_new(own, "fieldsV1", json_deep_copy(applied));
            json_object_set_new(own, "time", json_string(now));
        }
        json_object_set_new(own, "apiVersion", json_string(gv));
    } else if (json_array_size(changed) > 0) {
        own = entry_get(mf, mgr, op, sub, gv, true);
        json_t *fs = json_object_get(own, "fieldsV1");
        json_array_foreach(changed, i, p) as__fs_add(fs, p);
        json_object_set_new(own, "time", json_string(now));
        json_object_set_new(own, "apiVersion", json_string(gv));
    }
    /* drop empty entries, and fill time on new ones */
    for (i = json_array_size(mf); i-- > 0;) {
        e = json_array_get(mf, i);
        if (json_object_size(json_object_get(e, "fieldsV1")) == 0)
            json_array_remove(mf, i);
        else if (strcmp(json_string_value(json_object_get(e, "time")) ?: "", "") == 0)
            json_object_set_new(e, "time", json_string(now));
    }
    if (json_array_size(mf) > 0)
        json_object_set_new(meta(new_obj), "managedFields", mf);
    else {
        json_object_del(meta(new_obj), "managedFields");
        json_decref(mf);
    }
    json_decref(newset);
    json_decref(oldset);
    json_decref(removed);
    json_decref(changed);
    json_decref(leaves);
    json_decref(empty);
}

/* Copy without managedFields times (for no-op detection). */
static json_t *without_times(const json_t *obj)
{
    json_t *c = json_deep_copy(obj);
    json_t *mf = json_object_get(json_object_get(c, "metadata"), "managedFields");
    size_t i;
    json_t *e;
    json_array_foreach(mf, i, e) json_object_del(e, "time");
    return c;
}

/* Everything but metadata (and status when it is a subresource). */
static bool spec_changed(const as_res_t *res, const json_t *a, const json_t *b)
{
    json_t *x = json_deep_copy(a), *y = json_deep_copy(b);
    json_object_del(x, "metadata");
    json_object_del(y, "metadata");
    if (res->status_sub) {
        json_object_del(x, "status");
        json_object_del(y, "status");
    }
    bool changed = !json_equal(x, y);
    json_decref(x);
    json_decref(y);
    return changed;
}

/* ---- request helpers ---------------------------------------------------------------- */

static const char *manager_name(const as_req_t *rq, char *buf, size_t n)
{
    if (rq->field_manager && *rq->field_manager)
        return rq->field_manager;
    const char *ua = rq->user_agent ? rq->user_agent : "";
    size_t len = strcspn(ua, "/");
    if (len > 128)
        len = 128;
    snprintf(buf, n, "%.*s", (int)len, ua);
    return buf;
}

static json_t *parse_body(const as_req_t *rq, as_resp_t *out, bool allow_yaml)
{
    json_error_t jerr;
    char err[512];
    json_t *v;
    if (rq->ctype && strstr(rq->ctype, "protobuf") && !allow_yaml) {
        v = as__proto_decode(rq->body, rq->body_len, err, sizeof(err));
        if (!v)
            as__resp_error(out, 415, "UnsupportedMediaType", NULL, NULL, "%s", err);
        return v;
    }
    if (rq->ctype && (strstr(rq->ctype, "protobuf") || strstr(rq->ctype, "cbor"))) {
        /* only JSON (and YAML for apply) bodies are understood */
        as__resp_error(out, 415, "UnsupportedMediaType", NULL, NULL,
                       "the body of the request was in an unknown format - accepted media "
                       "types include: application/json, application/yaml");
        return NULL;
    }
    if (!rq->body || rq->body_len == 0) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL, "the request body is empty");
        return NULL;
    }
    size_t i = 0;
    while (i < rq->body_len && isspace((unsigned char)rq->body[i]))
        i++;
    if (allow_yaml && i < rq->body_len && rq->body[i] != '{' && rq->body[i] != '[') {
        v = as__yaml_to_json(rq->body, rq->body_len, err, sizeof(err));
        if (!v) {
            as__resp_error(out, 400, "BadRequest", NULL, NULL, "%s", err);
            return NULL;
        }
        return v;
    }
    v = json_loadb(rq->body, rq->body_len, JSON_DECODE_ANY, &jerr);
    if (!v) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "the object provided is unrecognized (malformed JSON: %s at line %d "
                       "column %d)",
                       jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    return v;
}

static int check_type(const as_req_t *rq, json_t *obj, as_resp_t *out)
{
    char gv[300];
    gv_string(rq->res, gv, sizeof(gv));
    if (!json_is_object(obj)) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "the object provided is unrecognized (must be a JSON object)");
        return -1;
    }
    const char *av = json_string_value(json_object_get(obj, "apiVersion"));
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    if (kind && strcmp(kind, rq->res->kind) != 0) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "%s in version \"%s\" cannot be handled as a %s: no kind \"%s\" is "
                       "registered for version \"%s\"",
                       rq->res->kind, rq->res->version, rq->res->kind, kind, av ? av : "");
        return -1;
    }
    if (av && strcmp(av, gv) != 0) {
        char g[256], v[64];
        split_api_version(av, g, sizeof(g), v, sizeof(v));
        if (strcmp(g, rq->res->group) != 0) {
            as__resp_error(out, 400, "BadRequest", NULL, NULL,
                           "the API version in the data (%s) does not match the expected API "
                           "version (%s)",
                           av, gv);
            return -1;
        }
    }
    json_object_set_new(obj, "apiVersion", json_string(gv));
    json_object_set_new(obj, "kind", json_string(rq->res->kind));
    return 0;
}

/* Schema work for custom resources: prune (Strict: 400), default, validate (422). */
static int cr_schema(const as_req_t *rq, json_t *obj, const char *name, as_resp_t *out)
{
    const as_res_t *res = rq->res;
    if (!res->custom || !res->schema)
        return 0;
    json_t *unknown = json_array();
    as__schema_prune(obj, res->schema, unknown);
    const char *fv = rq->field_validation ? rq->field_validation : "Warn";
    size_t i;
    json_t *u;
    if (json_array_size(unknown) > 0) {
        if (strcmp(fv, "Strict") == 0) {
            char *buf = NULL;
            size_t len = 0;
            FILE *f = open_memstream(&buf, &len);
            json_array_foreach(unknown, i, u) {
                fprintf(f, "%sunknown field \"%s\"", i ? ", " : "", json_string_value(u));
            }
            fclose(f);
            as__resp_error(out, 400, "BadRequest", NULL, NULL,
                           "%s in version \"%s\" cannot be handled as a %s: strict decoding "
                           "error: %s",
                           res->kind, res->version, res->kind, buf ? buf : "");
            free(buf);
            json_decref(unknown);
            return -1;
        }
        if (strcmp(fv, "Ignore") != 0) {
            json_array_foreach(unknown, i, u) warn(out, "unknown field \"%s\"", json_string_value(u));
        }
    }
    json_decref(unknown);
    as__schema_default(obj, res->schema);
    json_t *causes = json_array();
    as__schema_validate(obj, res->schema, causes);
    if (json_array_size(causes) > 0) {
        resp_invalid(out, res, name, causes);
        return -1;
    }
    json_decref(causes);
    return 0;
}

/* Secrets: stringData is merged into data (base64) on write, as the real server does. */
static void secret_string_data(const as_res_t *res, json_t *obj)
{
    if (strcmp(res->coll, "/secrets") != 0)
        return;
    json_t *sd = json_object_get(obj, "stringData");
    if (!json_is_object(sd))
        return;
    json_t *data = json_object_get(obj, "data");
    if (!json_is_object(data)) {
        data = json_object();
        json_object_set_new(obj, "data", data);
    }
    const char *k;
    json_t *v;
    json_object_foreach(sd, k, v) {
        const char *str = json_string_value(v);
        char *e = as__b64_encode((const unsigned char *)(str ? str : ""), str ? strlen(str) : 0);
        json_object_set_new(data, k, json_string(e ? e : ""));
        free(e);
    }
    json_object_del(obj, "stringData");
}

/* ---- get / list --------------------------------------------------------------------- */

static json_t *lookup(as_server_t *s, const as_res_t *res, const char *ns, const char *name)
{
    char key[600];
    obj_key(res->namespaced ? ns : NULL, name, key, sizeof(key));
    bd_hmap_t *m = as__coll(s, res->coll);
    return m ? bd_hmap_get(m, key) : NULL;
}

static void not_found(as_resp_t *out, const as_res_t *res, const char *name)
{
    char q[300];
    qualified(res, q, sizeof(q));
    as__resp_error(out, 404, "NotFound", name, res, "%s \"%s\" not found", q, name);
}

static void do_get(as_server_t *s, const as_req_t *rq, as_resp_t *out)
{
    json_t *o = lookup(s, rq->res, rq->ns, rq->name);
    if (!o) {
        not_found(out, rq->res, rq->name);
        return;
    }
    if (rq->accept == AS_ACCEPT_TABLE) {
        json_t *one = json_pack("[O]", o);
        resp_obj(out, 200, as__table(rq->res, one, rq->include_object, true, NULL, NULL));
        json_decref(one);
    } else if (rq->accept == AS_ACCEPT_PARTIAL) {
        resp_obj(out, 200, as__partial_meta(o));
    } else {
        resp_obj(out, 200, as__present(rq->res, o));
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Objects of coll as they were at rv (new object: key -> obj). */
static json_t *snapshot(as_server_t *s, const char *coll, uint64_t at)
{
    json_t *m = json_object();
    bd_hmap_t *h = as__coll(s, coll);
    size_t pos = 0;
    const char *k;
    void *v;
    while (h && bd_hmap_next(h, &pos, &k, &v))
        json_object_set(m, k, v);
    for (size_t i = s->ev_len; i-- > 0;) {
        const as_event_t *e = as__event_at(s, i);
        if (e->rv <= at)
            break;
        if (strcmp(e->coll, coll) != 0)
            continue;
        if (e->prev)
            json_object_set(m, e->key, e->prev);
        else
            json_object_del(m, e->key);
    }
    return m;
}

static char *continue_token(uint64_t rv, bool inconsistent, const char *key)
{
    json_t *t = json_pack("{s:s,s:I,s:s%}", "v", "meta.k8s.io/v1", "rv",
                          inconsistent ? (json_int_t)-1 : (json_int_t)rv, "start", key,
                          strlen(key) + 1);
    /* "start" is the key followed by a NUL, as the real server's token */
    char *js = json_dumps(t, JSON_COMPACT);
    json_decref(t);
    if (!js)
        return NULL;
    char *tok = as__b64_encode((const unsigned char *)js, strlen(js));
    free(js);
    return tok;
}

static int parse_continue(const char *tok, long long *rv, char **start)
{
    size_t len;
    unsigned char *raw = as__b64_decode(tok, &len);
    if (!raw)
        return -1;
    json_t *t = json_loadb((const char *)raw, len, JSON_ALLOW_NUL, NULL);
    free(raw);
    const char *st = json_string_value(json_object_get(t, "start"));
    json_t *jrv = json_object_get(t, "rv");
    if (!t || !st || !json_is_integer(jrv) ||
        strcmp(json_string_value(json_object_get(t, "v")) ?: "", "meta.k8s.io/v1") != 0) {
        json_decref(t);
        return -1;
    }
    *rv = json_integer_value(jrv);
    *start = strdup(st); /* NUL-terminated at the key's end */
    json_decref(t);
    return 0;
}

/* Collect matching objects for a list (array, new refs) and the list's RV/continue. */
static int collect(as_server_t *s, const as_req_t *rq, as_resp_t *out, json_t **items,
                   uint64_t *list_rv, char **cont, long long *remaining)
{
    *items = NULL;
    *cont = NULL;
    *remaining = -1;
    char err[512];
    as_sel_t *ls = NULL, *fs = NULL;
    long long crv = 0;
    char *start = NULL;
    uint64_t at = s->rv;
    bool inconsistent = false;
    long limit = rq->limit;
    if (as__sel_parse_labels(rq->label_sel, &ls, err, sizeof(err)) != 0) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL, "%s", err);
        return -1;
    }
    if (as__sel_parse_fields(rq->field_sel, rq->res, &fs, err, sizeof(err)) != 0) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL, "%s", err);
        as__sel_free(ls);
        return -1;
    }
    if (rq->cont && *rq->cont) {
        if (rq->rv && *rq->rv) {
            as__resp_error(out, 400, "BadRequest", NULL, NULL,
                           "specifying resource version is not allowed when using continue");
            goto fail;
        }
        if (parse_continue(rq->cont, &crv, &start) != 0) {
            as__resp_error(out, 400, "BadRequest", NULL, NULL,
                           "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)");
            goto fail;
        }
        if (crv == -1) {
            inconsistent = true;
        } else if (crv <= 0 || (uint64_t)crv < s->compact_rv) {
            char *tok = continue_token(0, true, start);
            as__resp_error(out, 410, "Expired", NULL, NULL,
                           "The provided continue parameter is too old to display a consistent "
                           "list result. You can start a new list without the continue "
                           "parameter, or use the continue token in this response to retrieve "
                           "the remainder of the results. Continuing with the provided token "
                           "results in an inconsistent list - objects that were created, "
                           "modified, or deleted between the time the first chunk was returned "
                           "and now may show up in the list.");
            json_object_set_new(json_object_get(out->body, "metadata"), "continue",
                                json_string(tok ? tok : ""));
            free(tok);
            goto fail;
        } else {
            at = (uint64_t)crv;
        }
    } else if (rq->rv && *rq->rv) {
        char *end;
        unsigned long long want = strtoull(rq->rv, &end, 10);
        if (*end) {
            as__resp_error(out, 400, "BadRequest", NULL, NULL,
                           "resourceVersion: Invalid value: \"%s\": must be a non-negative integer",
                           rq->rv);
            goto fail;
        }
        bool exact = rq->rv_match && strcmp(rq->rv_match, "Exact") == 0;
        if (want > s->rv) {
            as__resp_error(out, 504, "Timeout", NULL, NULL,
                           "Too large resource version: %llu, current: %llu", want,
                           (unsigned long long)s->rv);
            json_t *d = json_object_get(out->body, "details");
            if (!d) {
                d = json_object();
                json_object_set_new(out->body, "details", d);
            }
            json_object_set_new(d, "causes",
                                json_pack("[{s:s,s:s}]", "reason", "ResourceVersionTooLarge",
                                          "message", "Too large resource version"));
            json_object_set_new(d, "retryAfterSeconds", json_integer(1));
            goto fail;
        }
        if (exact) {
            if (want == 0) {
                as__resp_error(out, 400, "BadRequest", NULL, NULL,
                               "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"");
                goto fail;
            }
            if (want < s->compact_rv) {
                as__resp_error(out, 410, "Expired", NULL, NULL,
                               "The resourceVersion for the provided list is too old.");
                goto fail;
            }
            at = want;
        } else if (want == 0 && !rq->rv_match) {
            /* served from the watch cache: limit is ignored, as documented */
            limit = 0;
        }
    } else if (rq->rv_match && *rq->rv_match) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "resourceVersionMatch is forbidden unless resourceVersion is provided");
        goto fail;
    }
    if (inconsistent)
        at = s->rv;
    json_t *snap = snapshot(s, rq->res->coll, at);
    size_t n = json_object_size(snap), i = 0;
    const char **keys = calloc(n ? n : 1, sizeof(*keys));
    const char *k;
    json_t *v;
    json_object_foreach(snap, k, v) keys[i++] = k;
    qsort(keys, n, sizeof(*keys), cmp_str);
    json_t *res = json_array();
    char prefix[300];
    if (rq->ns && rq->res->namespaced)
        snprintf(prefix, sizeof(prefix), "%s/", rq->ns);
    else
        prefix[0] = '\0';
    long long count_after = 0;
    const char *last_key = NULL;
    for (i = 0; i < n; i++) {
        if (prefix[0] && strncmp(keys[i], prefix, strlen(prefix)) != 0)
            continue;
        if (start && strcmp(keys[i], start) <= 0)
            continue;
        json_t *o = json_object_get(snap, keys[i]);
        if (!as__sel_match(ls, o) || !as__sel_match(fs, o))
            continue;
        if (limit > 0 && (long)json_array_size(res) >= limit) {
            count_after++;
            continue;
        }
        json_array_append(res, o);
        last_key = keys[i];
    }
    if (count_after > 0 && last_key) {
        *cont = continue_token(at, false, last_key);
        if (!rq->label_sel && !rq->field_sel)
            *remaining = count_after;
    }
    free(keys);
    json_decref(snap);
    *items = res;
    *list_rv = at;
    free(start);
    as__sel_free(ls);
    as__sel_free(fs);
    return 0;
fail:
    free(start);
    as__sel_free(ls);
    as__sel_free(fs);
    return -1;
}

static void do_list(as_server_t *s, const as_req_t *rq, as_resp_t *out, bool table,
                    const char *include_object, bool partial)
{
    json_t *items;
    uint64_t rv;
    char *cont;
    long long remaining;
    if (collect(s, rq, out, &items, &rv, &cont, &remaining) != 0)
        return;
    char rvs[24];
    snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)rv);
    if (table) {
        resp_obj(out, 200, as__table(rq->res, items, include_object, true, rvs, cont));
    } else {
        char gv[300];
        gv_string(rq->res, gv, sizeof(gv));
        json_t *list = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion",
                                 partial ? "meta.k8s.io/v1" : gv, "kind",
                                 partial ? "PartialObjectMetadataList" : rq->res->list_kind,
                                 "metadata", "resourceVersion", rvs);
        if (cont)
            json_object_set_new(json_object_get(list, "metadata"), "continue", json_string(cont));
        if (remaining >= 0)
            json_object_set_new(json_object_get(list, "metadata"), "remainingItemCount",
                                json_integer(remaining));
        json_t *arr = json_array();
        size_t i;
        json_t *o;
        json_array_foreach(items, i, o) {
            json_t *p = partial ? as__partial_meta(o) : as__present(rq->res, o);
            if (!partial && !rq->res->custom) {
                /* the real server omits kind/apiVersion in built-in list items */
                json_object_del(p, "kind");
                json_object_del(p, "apiVersion");
            }
            json_array_append_new(arr, p);
        }
        json_object_set_new(list, "items", arr);
        resp_obj(out, 200, list);
    }
    json_decref(items);
    free(cont);
}

/* ---- create ------------------------------------------------------------------------- */

static void gen_name(const char *prefix, char *out, size_t n)
{
    static const char alnum[] = "bcdfghjklmnpqrstvwxz2456789";
    unsigned char r[5];
    char suf[6];
    for (size_t i = 0; i < 5; i++) {
        r[i] = (unsigned char)rand();
        suf[i] = alnum[r[i] % (sizeof(alnum) - 1)];
    }
    suf[5] = '\0';
    snprintf(out, n, "%s%s", prefix, suf);
}

static void finish_create(as_server_t *s, const as_req_t *rq, json_t *obj, const char *mgr,
                          const char *op, const json_t *applied, as_resp_t *out);

static void do_create(as_server_t *s, const as_req_t *rq, as_resp_t *out)
{
    json_t *obj = parse_body(rq, out, false);
    if (!obj)
        return;
    if (check_type(rq, obj, out) != 0) {
        json_decref(obj);
        return;
    }
    char mbuf[160];
    finish_create(s, rq, obj, manager_name(rq, mbuf, sizeof(mbuf)), "Update", NULL, out);
}

static void finish_create(as_server_t *s, const as_req_t *rq, json_t *obj, const char *mgr,
                          const char *op, const json_t *applied, as_resp_t *out)
{
    const as_res_t *res = rq->res;
    json_t *m = meta(obj);
    char name[300], key[600], now[32], uid[37];
    const char *bns = json_string_value(json_object_get(m, "namespace"));
    if (res->namespaced) {
        if (bns && *bns && rq->ns && strcmp(bns, rq->ns) != 0) {
            as__resp_error(out, 400, "BadRequest", NULL, NULL,
                           "the namespace of the provided object does not match the namespace "
                           "sent on the request");
            goto done;
        }
        if (!rq->ns) {
            as__resp_error(out, 404, "NotFound", NULL, NULL,
                           "the server could not find the requested resource");
            goto done;
        }
        json_object_set_new(m, "namespace", json_string(rq->ns));
    } else {
        json_object_del(m, "namespace");
    }
    const char *n = json_string_value(json_object_get(m, "name"));
    const char *gn = json_string_value(json_object_get(m, "generateName"));
    if ((!n || !*n) && gn && *gn) {
        gen_name(gn, name, sizeof(name));
        json_object_set_new(m, "name", json_string(name));
    } else if (!n || !*n) {
        json_t *causes = json_pack("[{s:s,s:s,s:s}]", "reason", "FieldValueRequired",
                                   "message", "Required value: name or generateName is required",
                                   "field", "metadata.name");
        resp_invalid(out, res, "", causes);
        goto done;
    } else {
        snprintf(name, sizeof(name), "%s", n);
    }
    if (json_string_value(json_object_get(m, "resourceVersion")) &&
        *json_string_value(json_object_get(m, "resourceVersion"))) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "resourceVersion should not be set on objects to be created");
        goto done;
    }
    if (res->namespaced) {
        json_t *nso = ns_get(s, rq->ns);
        if (!nso) {
            as__resp_error(out, 404, "NotFound", rq->ns, NULL, "namespaces \"%s\" not found",
                           rq->ns);
            json_object_set_new(json_object_get(out->body, "details"), "kind",
                                json_string("namespaces"));
            goto done;
        }
        if (mstr(nso, "deletionTimestamp")) {
            as__resp_error(out, 403, "Forbidden", name, res,
                           "unable to create new content in namespace %s because it is being "
                           "terminated",
                           rq->ns);
            goto done;
        }
    }
    if (res->status_sub && !rq->sub)
        json_object_del(obj, "status");
    secret_string_data(res, obj);
    if (cr_schema(rq, obj, name, out) != 0)
        goto done;
    json_t *causes = json_array();
    validate_meta(res, obj, causes);
    if (json_array_size(causes) > 0) {
        resp_invalid(out, res, name, causes);
        goto done;
    }
    json_decref(causes);
    obj_key(res->namespaced ? rq->ns : NULL, name, key, sizeof(key));
    if (lookup(s, res, rq->ns, name)) {
        char q[300];
        qualified(res, q, sizeof(q));
        as__resp_error(out, 409, "AlreadyExists", name, res, "%s \"%s\" already exists", q,
                       name);
        goto done;
    }
    as__now_rfc3339(now);
    as__uuid(uid);
    json_object_set_new(m, "uid", json_string(uid));
    json_object_set_new(m, "creationTimestamp", json_string(now));
    json_object_del(m, "deletionTimestamp");
    json_object_del(m, "deletionGracePeriodSeconds");
    json_object_del(m, "selfLink");
    json_object_del(m, "managedFields");
    if (res->has_generation)
        json_object_set_new(m, "generation", json_integer(1));
    else
        json_object_del(m, "generation");
    if (strcmp(res->coll, "/namespaces") == 0) {
        json_t *labels = json_object_get(m, "labels");
        if (!json_is_object(labels)) {
            labels = json_object();
            json_object_set_new(m, "labels", labels);
        }
        json_object_set_new(labels, "kubernetes.io/metadata.name", json_string(name));
        json_t *spec = json_object_get(obj, "spec");
        if (!json_is_object(spec)) {
            spec = json_object();
            json_object_set_new(obj, "spec", spec);
        }
        json_object_set_new(spec, "finalizers", json_pack("[s]", "kubernetes"));
        json_object_set_new(obj, "status", json_pack("{s:s}", "phase", "Active"));
    }
    managed_update(res, NULL, obj, mgr, op, rq->sub, applied, NULL);
    if (strcmp(res->coll, "apiextensions.k8s.io/customresourcedefinitions") == 0)
        crd_set_status(obj);
    if (rq->dry_run) {
        resp_obj(out, 201, as__present(res, obj));
        goto done;
    }
    json_incref(obj);
    store_put(s, res, key, obj);
    if (strcmp(res->coll, "apiextensions.k8s.io/customresourcedefinitions") == 0)
        crd_register(s, obj);
    resp_obj(out, 201, as__present(res, obj));
    json_decref(obj);
    return;
done:
    json_decref(obj);
}

/* ---- delete ------------------------------------------------------------------------- */

static void delete_coll_all(as_server_t *s, const char *coll, const char *prefix);

/* Delete the stored object at key; returns the response body (new reference). */
static json_t *delete_obj(as_server_t *s, const as_res_t *res, const char *key, json_t *cur,
                          bool dry_run, int *code)
{
    *code = 200;
    const json_t *fins = json_object_get(json_object_get(cur, "metadata"), "finalizers");
    bool is_ns = strcmp(res->coll, "/namespaces") == 0;
    if (json_array_size(fins) > 0 || is_ns) {
        if (mstr(cur, "deletionTimestamp"))
            return as__present(res, cur);
        json_t *o = json_deep_copy(cur);
        char now[32];
        as__now_rfc3339(now);
        json_object_set_new(meta(o), "deletionTimestamp", json_string(now));
        json_object_set_new(meta(o), "deletionGracePeriodSeconds", json_integer(0));
        json_t *gen = json_object_get(meta(o), "generation");
        if (json_is_integer(gen) && json_integer_value(gen) > 0)
            json_object_set_new(meta(o), "generation", json_integer(json_integer_value(gen) + 1));
        if (is_ns)
            json_object_set_new(o, "status", json_pack("{s:s}", "phase", "Terminating"));
        if (dry_run) {
            json_t *r = as__present(res, o);
            json_decref(o);
            return r;
        }
        json_t *keep = json_incref(o);
        store_put(s, res, key, o);
        if (is_ns) {
            char prefix[300];
            snprintf(prefix, sizeof(prefix), "%s/", key + 1);
            size_t pos = 0;
            const char *ck;
            void *cv;
            json_t *colls = json_array();
            while (bd_hmap_next(s->colls, &pos, &ck, &cv))
                if (strcmp(ck, "/namespaces") != 0)
                    json_array_append_new(colls, json_string(ck));
            size_t i;
            json_t *c;
            json_array_foreach(colls, i, c) delete_coll_all(s, json_string_value(c), prefix);
            json_decref(colls);
            ns_maybe_finalize(s, key + 1);
        }
        json_t *r = as__present(res, keep);
        json_decref(keep);
        return r;
    }
    json_t *final = json_deep_copy(cur);
    if (!dry_run) {
        json_t *copy = json_incref(final);
        store_del(s, res->coll, key, copy);
    }
    if (strcmp(res->coll, "apiextensions.k8s.io/customresourcedefinitions") == 0 && !dry_run) {
        const json_t *spec = json_object_get(final, "spec");
        char coll[512];
        snprintf(coll, sizeof(coll), "%s/%s",
                 json_string_value(json_object_get(spec, "group")) ?: "",
                 json_string_value(json_object_get(json_object_get(spec, "names"), "plural")) ?: "");
        delete_coll_all(s, coll, NULL);
        crd_unregister(s, mstr(final, "name"));
    }
    if (res->custom || is_ns) {
        json_t *r = as__present(res, final);
        json_decref(final);
        return r;
    }
    json_t *st = as__status(200, NULL, mstr(final, "name"), res, "%s", "");
    json_object_del(st, "message");
    json_object_set_new(json_object_get(st, "details"), "uid",
                        json_string(mstr(final, "uid") ? mstr(final, "uid") : ""));
    json_decref(final);
    return st;
}

/* Delete every object of coll (whose key starts with prefix, if given), honouring
 * finalizers (those get a deletionTimestamp). Used for namespaces and CRDs. */
static void delete_coll_all(as_server_t *s, const char *coll, const char *prefix)
{
    bd_hmap_t *m = as__coll(s, coll);
    size_t n = 0;
    const char **keys = m ? bd_hmap_keys_sorted(m, &n) : NULL;
    json_t *todo = json_array();
    for (size_t i = 0; i < n; i++)
        if (!prefix || strncmp(keys[i], prefix, strlen(prefix)) == 0)
            json_array_append_new(todo, json_string(keys[i]));
    free(keys);
    size_t i;
    json_t *k;
    json_array_foreach(todo, i, k) {
        json_t *cur = bd_hmap_get(m, json_string_value(k));
        if (!cur)
            continue;
        const json_t *fins = json_object_get(json_object_get(cur, "metadata"), "finalizers");
        if (json_array_size(fins) > 0 && prefix) {
            if (!mstr(cur, "deletionTimestamp")) {
                json_t *o = json_deep_copy(cur);
                char now[32];
                as__now_rfc3339(now);
                json_object_set_new(meta(o), "deletionTimestamp", json_string(now));
                json_object_set_new(meta(o), "deletionGracePeriodSeconds", json_integer(0));
                /* the generic store does not know res here: use the coll's map */
                uint64_t rv = ++s->rv;
                set_rv(o, rv);
                void *old = NULL;
                bd_hmap_put(m, json_string_value(k), o, &old);
                emit(s, rv, AS_EV_MODIFIED, coll, json_string_value(k), o, old);
                json_decref(old);
            }
            continue;
        }
        store_del(s, coll, json_string_value(k), json_deep_copy(cur));
    }
    json_decref(todo);
}

static int check_delete_preconditions(const as_req_t *rq, const json_t *cur, as_resp_t *out)
{
    if (!rq->body || rq->body_len == 0)
        return 0;
    json_t *opts = json_loadb(rq->body, rq->body_len, 0, NULL);
    if (!opts) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "the body of the request was not valid DeleteOptions");
        return -1;
    }
    const json_t *pre = json_object_get(opts, "preconditions");
    const char *uid = json_string_value(json_object_get(pre, "uid"));
    const char *rv = json_string_value(json_object_get(pre, "resourceVersion"));
    int rc = 0;
    char q[300];
    qualified(rq->res, q, sizeof(q));
    if (uid && strcmp(uid, mstr(cur, "uid") ?: "") != 0) {
        as__resp_error(out, 409, "Conflict", rq->name, rq->res,
                       "Operation cannot be fulfilled on %s \"%s\": Precondition failed: UID in "
                       "precondition: %s, UID in object meta: %s",
                       q, rq->name, uid, mstr(cur, "uid") ?: "");
        rc = -1;
    } else if (rv && strcmp(rv, mstr(cur, "resourceVersion") ?: "") != 0) {
        as__resp_error(out, 409, "Conflict", rq->name, rq->res,
                       "Operation cannot be fulfilled on %s \"%s\": Precondition failed: "
                       "ResourceVersion in precondition: %s, ResourceVersion in object meta: %s",
                       q, rq->name, rv, mstr(cur, "resourceVersion") ?: "");
        rc = -1;
    }
    json_decref(opts);
    return rc;
}

static void do_delete(as_server_t *s, const as_req_t *rq, as_resp_t *out)
{
    json_t *cur = lookup(s, rq->res, rq->ns, rq->name);
    if (!cur) {
        not_found(out, rq->res, rq->name);
        return;
    }
    if (check_delete_preconditions(rq, cur, out) != 0)
        return;
    char key[600];
    obj_key(rq->res->namespaced ? rq->ns : NULL, rq->name, key, sizeof(key));
    int code;
    json_t *body = delete_obj(s, rq->res, key, cur, rq->dry_run, &code);
    resp_obj(out, code, body);
}

static void do_deletecollection(as_server_t *s, const as_req_t *rq, as_resp_t *out)
{
    json_t *items;
    uint64_t rv;
    char *cont;
    long long remaining;
    as_req_t all = *rq;
    all.limit = 0;
    all.cont = NULL;
    all.rv = NULL;
    all.rv_match = NULL;
    if (collect(s, &all, out, &items, &rv, &cont, &remaining) != 0)
        return;
    free(cont);
    char gv[300];
    gv_string(rq->res, gv, sizeof(gv));
    json_t *deleted = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(items, i, o) {
        char key[600];
        obj_key(rq->res->namespaced ? mstr(o, "namespace") : NULL, mstr(o, "name"), key,
                sizeof(key));
        json_t *cur = bd_hmap_get(as__coll(s, rq->res->coll), key);
        if (!cur)
            continue;
        int code;
        json_t *final = json_deep_copy(cur);
        json_decref(delete_obj(s, rq->res, key, cur, rq->dry_run, &code));
        json_array_append_new(deleted, as__present(rq->res, final));
        json_decref(final);
    }
    json_decref(items);
    char rvs[24];
    snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)s->rv);
    resp_obj(out, 200, json_pack("{s:s,s:s,s:{s:s},s:o}", "apiVersion", gv, "kind",
                                 rq->res->list_kind, "metadata", "resourceVersion", rvs,
                                 "items", deleted));
}

/* ---- update pipeline ---------------------------------------------------------------- */

/* Write new_obj (stolen) over old (borrowed, stored under key). */
static void finish_update(as_server_t *s, const as_req_t *rq, const json_t *old,
                          json_t *new_obj, const char *mgr, const char *op,
                          const json_t *applied, const json_t *forced, as_resp_t *out)
{
    const as_res_t *res = rq->res;
    char key[600];
    obj_key(res->namespaced ? rq->ns : NULL, rq->name, key, sizeof(key));
    char gv[300];
    gv_string(res, gv, sizeof(gv));
    json_t *m = meta(new_obj);
    const json_t *om = json_object_get(old, "metadata");
    static const char *const keep[] = {"name", "namespace", "uid", "creationTimestamp",
                                       "generation", "deletionTimestamp",
                                       "deletionGracePeriodSeconds", "resourceVersion"};
    for (size_t i = 0; i < sizeof(keep) / sizeof(*keep); i++) {
        json_t *v = json_object_get(om, keep[i]);
        if (v)
            json_object_set(m, keep[i], v);
        else
            json_object_del(m, keep[i]);
    }
    json_object_del(m, "selfLink");
    json_object_set_new(new_obj, "apiVersion", json_string(gv));
    json_object_set_new(new_obj, "kind", json_string(res->kind));
    if (rq->sub && strcmp(rq->sub, "status") == 0) {
        json_t *st = json_object_get(new_obj, "status");
        json_t *mf = json_object_get(m, "managedFields");
        json_t *n2 = json_deep_copy(old);
        if (st)
            json_object_set(n2, "status", st);
        else
            json_object_del(n2, "status");
        if (mf)
            json_object_set(meta(n2), "managedFields", mf);
        json_decref(new_obj);
        new_obj = n2;
    } else if (res->status_sub) {
        json_t *st = json_object_get(old, "status");
        if (st)
            json_object_set(new_obj, "status", st);
        else
            json_object_del(new_obj, "status");
    }
    if (strcmp(res->coll, "/namespaces") == 0) {
        json_t *labels = json_object_get(meta(new_obj), "labels");
        if (!json_is_object(labels)) {
            labels = json_object();
            json_object_set_new(meta(new_obj), "labels", labels);
        }
        json_object_set_new(labels, "kubernetes.io/metadata.name", json_string(rq->name));
    }
    secret_string_data(res, new_obj);
    if (cr_schema(rq, new_obj, rq->name, out) != 0) {
        json_decref(new_obj);
        return;
    }
    json_t *causes = json_array();
    validate_meta(res, new_obj, causes);
    if (mstr(old, "deletionTimestamp")) {
        const json_t *of = json_object_get(om, "finalizers");
        const json_t *nf = json_object_get(meta(new_obj), "finalizers");
        size_t i, j;
        json_t *f, *g;
        json_array_foreach(nf, i, f) {
            bool found = false;
            json_array_foreach(of, j, g) found = found || json_equal(f, g);
            if (!found) {
                char msg[512];
                snprintf(msg, sizeof(msg), "Forbidden: no new finalizers can be added if the "
                         "object is being deleted, found new finalizers []string{\"%s\"}",
                         json_string_value(f) ?: "");
                json_array_append_new(causes, json_pack("{s:s,s:s,s:s}", "reason",
                                                        "FieldValueForbidden", "message", msg,
                                                        "field", "metadata.finalizers"));
                break;
            }
        }
    }
    if (json_array_size(causes) > 0) {
        resp_invalid(out, res, rq->name, causes);
        json_decref(new_obj);
        return;
    }
    json_decref(causes);
    if (res->has_generation && spec_changed(res, old, new_obj)) {
        json_int_t g = json_integer_value(json_object_get(om, "generation"));
        json_object_set_new(meta(new_obj), "generation", json_integer(g + 1));
    }
    managed_update(res, old, new_obj, mgr, op, rq->sub, applied, forced);
    if (strcmp(res->coll, "apiextensions.k8s.io/customresourcedefinitions") == 0)
        crd_set_status(new_obj);
    json_t *a = without_times(old), *b = without_times(new_obj);
    bool same = json_equal(a, b);
    json_decref(a);
    json_decref(b);
    if (same) {
        /* a no-op update is not written: no new resourceVersion, no event */
        resp_obj(out, 200, as__present(res, old));
        json_decref(new_obj);
        return;
    }
    if (rq->dry_run) {
        resp_obj(out, 200, as__present(res, new_obj));
        json_decref(new_obj);
        return;
    }
    if (mstr(new_obj, "deletionTimestamp") &&
        json_array_size(json_object_get(meta(new_obj), "finalizers")) == 0 &&
        strcmp(res->coll, "/namespaces") != 0) {
        json_t *resp = json_incref(new_obj);
        store_del(s, res->coll, key, new_obj);
        resp_obj(out, 200, as__present(res, resp));
        json_decref(resp);
        return;
    }
    json_t *resp = json_incref(new_obj);
    store_put(s, res, key, new_obj);
    if (strcmp(res->coll, "apiextensions.k8s.io/customresourcedefinitions") == 0)
        crd_register(s, resp);
    resp_obj(out, 200, as__present(res, resp));
    json_decref(resp);
}

static int check_rv(const as_req_t *rq, const json_t *cur, const char *want, as_resp_t *out)
{
    if (!want || !*want)
        return 0;
    if (strcmp(want, mstr(cur, "resourceVersion") ?: "") == 0)
        return 0;
    char q[300];
    qualified(rq->res, q, sizeof(q));
    as__resp_error(out, 409, "Conflict", rq->name, rq->res,
                   "Operation cannot be fulfilled on %s \"%s\": the object has been modified; "
                   "please apply your changes to the latest version and try again",
                   q, rq->name);
    return -1;
}

static void do_update(as_server_t *s, const as_req_t *rq, as_resp_t *out)
{
    json_t *obj = parse_body(rq, out, false);
    if (!obj)
        return;
    if (check_type(rq, obj, out) != 0) {
        json_decref(obj);
        return;
    }
    const char *bn = mstr(obj, "name");
    if (!bn || strcmp(bn, rq->name) != 0) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "the name of the object (%s) does not match the name on the URL (%s)",
                       bn ? bn : "", rq->name);
        json_decref(obj);
        return;
    }
    const char *bns = mstr(obj, "namespace");
    if (rq->res->namespaced && bns && *bns && strcmp(bns, rq->ns) != 0) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "the namespace of the provided object does not match the namespace sent "
                       "on the request");
        json_decref(obj);
        return;
    }
    json_t *cur = lookup(s, rq->res, rq->ns, rq->name);
    if (!cur) {
        not_found(out, rq->res, rq->name);
        json_decref(obj);
        return;
    }
    if (check_rv(rq, cur, mstr(obj, "resourceVersion"), out) != 0) {
        json_decref(obj);
        return;
    }
    char mbuf[160];
    finish_update(s, rq, cur, obj, manager_name(rq, mbuf, sizeof(mbuf)), "Update", NULL, NULL,
                  out);
}

/* ---- server-side apply -------------------------------------------------------------- */

/* The set owns path itself (a leaf, or a node marked "."), not only fields below it. */
static bool fs_owns_exact(const json_t *set, const json_t *path)
{
    size_t i;
    json_t *k;
    const json_t *cur = set;
    json_array_foreach(path, i, k) {
        cur = json_object_get(cur, json_string_value(k));
        if (!cur)
            return false;
    }
    return json_object_size(cur) == 0 || json_object_get(cur, ".") != NULL;
}

static bool owned_by_others(const json_t *others, const json_t *path)
{
    size_t i;
    json_t *set;
    json_array_foreach(others, i, set) {
        if (as__fs_has(set, path))
            return true;
    }
    return false;
}

/* Remove fields the manager applied before but no longer applies (unless others own them). */
static void apply_remove(json_t *obj, const json_t *old_node, const json_t *new_node,
                         json_t *prefix, const json_t *others)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)old_node, k, v) {
        if (strcmp(k, ".") == 0)
            continue;
        json_t *path = json_copy(prefix);
        json_array_append_new(path, json_string(k));
        const json_t *nn = new_node ? json_object_get(new_node, k) : NULL;
        if (!nn && !owned_by_others(others, path))
            as__fs_delete_value(obj, path);
        else
            apply_remove(obj, v, nn, path, others);
        json_decref(path);
    }
}

/* Merge the applied configuration into live (schema-aware for associative lists). */
static json_t *apply_merge(const json_t *live, const json_t *cfg, const json_t *schema)
{
    if (json_is_object(cfg) && json_is_object(live)) {
        json_t *res = json_deep_copy(live);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)cfg, k, v) {
            const json_t *ps = NULL;
            if (schema) {
                ps = json_object_get(json_object_get(schema, "properties"), k);
                if (!ps && json_is_object(json_object_get(schema, "additionalProperties")))
                    ps = json_object_get(schema, "additionalProperties");
            }
            json_object_set_new(res, k, apply_merge(json_object_get(live, k), v, ps));
        }
        return res;
    }
    const char *lt = schema ? json_string_value(json_object_get(schema, "x-kubernetes-list-type"))
                            : NULL;
    if (json_is_array(cfg) && json_is_array(live) && lt && strcmp(lt, "map") == 0) {
        const json_t *keys = json_object_get(schema, "x-kubernetes-list-map-keys");
        const json_t *is = json_object_get(schema, "items");
        json_t *res = json_deep_copy(live);
        size_t i;
        json_t *c;
        json_array_foreach(cfg, i, c) {
            size_t j;
            json_t *l;
            bool merged = false;
            json_array_foreach(res, j, l) {
                bool match = json_is_object(l) && json_is_object(c);
                size_t x;
                json_t *kn;
                json_array_foreach(keys, x, kn) {
                    const char *kk = json_string_value(kn);
                    if (!json_equal(json_object_get(l, kk), json_object_get(c, kk)))
                        match = false;
                }
                if (match) {
                    json_array_set_new(res, j, apply_merge(l, c, is));
                    merged = true;
                    break;
                }
            }
            if (!merged)
                json_array_append_new(res, json_deep_copy(c));
        }
        return res;
    }
    if (json_is_array(cfg) && json_is_array(live) && lt && strcmp(lt, "set") == 0) {
        json_t *res = json_deep_copy(live);
        size_t i, j;
        json_t *c, *l;
        json_array_foreach(cfg, i, c) {
            bool found = false;
            json_array_foreach(res, j, l) found = found || json_equal(l, c);
            if (!found)
                json_array_append_new(res, json_deep_copy(c));
        }
        return res;
    }
    return json_deep_copy(cfg);
}

static void do_apply(as_server_t *s, const as_req_t *rq, json_t *cfg, as_resp_t *out)
{
    const as_res_t *res = rq->res;
    if (!rq->field_manager || !*rq->field_manager) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "PATCH, application/apply-patch+yaml: fieldManager is required for apply "
                       "requests");
        json_decref(cfg);
        return;
    }
    if (check_type(rq, cfg, out) != 0) {
        json_decref(cfg);
        return;
    }
    if (!json_object_get(cfg, "apiVersion") || !json_object_get(cfg, "kind")) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "invalid object type: /, Kind=");
        json_decref(cfg);
        return;
    }
    const char *bn = mstr(cfg, "name");
    if (bn && strcmp(bn, rq->name) != 0) {
        as__resp_error(out, 400, "BadRequest", NULL, NULL,
                       "the name of the object (%s) does not match the name on the URL (%s)",
                       bn, rq->name);
        json_decref(cfg);
        return;
    }
    json_object_set_new(meta(cfg), "name", json_string(rq->name));
    if (res->namespaced)
        json_object_set_new(meta(cfg), "namespace", json_string(rq->ns));
    bool status = rq->sub && strcmp(rq->sub, "status") == 0;
    if (status) {
        json_t *c2 = json_pack("{s:O,s:O,s:{s:s},s:O?}", "apiVersion",
                               json_object_get(cfg, "apiVersion"), "kind",
                               json_object_get(cfg, "kind"), "metadata", "name", rq->name,
                               "status", json_object_get(cfg, "status"));
        json_decref(cfg);
        cfg = c2;
    } else if (res->status_sub) {
        json_object_del(cfg, "status");
    }
    if (res->custom && res->schema) {
        json_t *unknown = json_array();
        as__schema_prune(cfg, res->schema, unknown);
        size_t i;
        json_t *u;
        if (json_array_size(unknown) > 0 && rq->field_validation &&
            strcmp(rq->field_validation, "Strict") == 0) {
            as__resp_error(out, 400, "BadRequest", NULL, NULL,
                           ".%s: field not declared in schema",
                           json_string_value(json_array_get(unknown, 0)));
            json_decref(unknown);
            json_decref(cfg);
            return;
        }
        json_array_foreach(unknown, i, u) {
            if (!rq->field_validation || strcmp(rq->field_validation, "Ignore") != 0)
                warn(out, "unknown field \"%s\"", json_string_value(u));
        }
        json_decref(unknown);
    }
    json_t *applied = obj_fieldset(res, cfg);
    if (status) {
        json_t *st = json_object_get(applied, "f:status");
        json_t *only = json_object();
        if (st)
            json_object_set(only, "f:status", st);
        json_decref(applied);
        applied = only;
    } else if (res->status_sub) {
        json_object_del(applied, "f:status");
    }
    json_t *cur = lookup(s, res, rq->ns, rq->name);
    if (!cur) {
        json_t *obj = json_deep_copy(cfg);
        as_req_t crq = *rq;
        crq.sub = NULL;
        finish_create(s, &crq, obj, rq->field_manager, "Apply", applied, out);
        json_decref(applied);
        json_decref(cfg);
        return;
    }
    if (check_rv(rq, cur, mstr(cfg, "resourceVersion"), out) != 0) {
        json_decref(applied);
        json_decref(cfg);
        return;
    }
    json_object_del(meta(cfg), "resourceVersion");
    /* conflicts with other managers */
    const json_t *mf = json_object_get(json_object_get(cur, "metadata"), "managedFields");
    json_t *others = json_array(), *conflicts = json_array(), *forced = json_array();
    json_t *leaves = json_array(), *empty = json_array();
    const json_t *old_own = NULL;
    as__fs_leaves(applied, empty, leaves);
    size_t i;
    json_t *e;
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    json_array_foreach(mf, i, e) {
        const json_t *fs = json_object_get(e, "fieldsV1");
        if (entry_is(e, rq->field_manager, "Apply", rq->sub)) {
            old_own = fs;
            continue;
        }
        json_array_append(others, (json_t *)fs);
        size_t j;
        json_t *p;
        json_array_foreach(leaves, j, p) {
            if (!fs_owns_exact(fs, p))
                continue;
            const json_t *lv = as__fs_value(cur, p), *cv = as__fs_value(cfg, p);
            if (lv && cv && json_equal((json_t *)lv, (json_t *)cv))
                continue;
            char *ps = as__fs_path_string(p);
            char cm[512];
            snprintf(cm, sizeof(cm), "conflict with \"%s\"%s%s: %s",
                     json_string_value(json_object_get(e, "manager")) ?: "",
                     strcmp(json_string_value(json_object_get(e, "operation")) ?: "", "Update") == 0
                         ? " using "
                         : "",
                     strcmp(json_string_value(json_object_get(e, "operation")) ?: "", "Update") == 0
                         ? json_string_value(json_object_get(e, "apiVersion")) ?: ""
                         : "",
                     ps ? ps : "");
            fprintf(f, "\n* %s", cm);
            json_array_append_new(conflicts, json_pack("{s:s,s:s,s:s}", "reason",
                                                       "FieldManagerConflict", "message", cm,
                                                       "field", ps ? ps : ""));
            json_array_append(forced, p);
            free(ps);
        }
    }
    fclose(f);
    if (json_array_size(conflicts) > 0 && !rq->force) {
        size_t nc = json_array_size(conflicts);
        if (nc == 1)
            as__resp_error(out, 409, "Conflict", rq->name, res, "Apply failed with 1 conflict: %s",
                           json_string_value(json_object_get(json_array_get(conflicts, 0), "message")));
        else
            as__resp_error(out, 409, "Conflict", rq->name, res, "Apply failed with %zu conflicts: %s",
                           nc, buf ? buf + 1 : "");
        json_object_set(json_object_get(out->body, "details"), "causes", conflicts);
        goto done;
    }
    {
        json_t *merged = apply_merge(cur, cfg, res->custom ? res->schema : NULL);
        if (old_own) {
            json_t *prefix = json_array();
            json_t *oth = json_copy(others);
            apply_remove(merged, old_own, applied, prefix, oth);
            json_decref(oth);
            json_decref(prefix);
        }
        finish_update(s, rq, cur, merged, rq->field_manager, "Apply", applied, forced, out);
    }
done:
    free(buf);
    json_decref(others);
    json_decref(conflicts);
    json_decref(forced);
    json_decref(leaves);
    json_decref(empty);
    json_decref(applied);
    json_decref(cfg);
}

/* ---- patch -------------------------------------------------------------------------- */

static void do_patch(as_server_t *s, const as_req_t *rq, as_resp_t *out)
{
    const char *ct = rq->ctype ? rq->ctype : "";
    size_t ctl = strcspn(ct, ";");
    char mt[128];
    snprintf(mt, sizeof(mt), "%.*s", (int)ctl, ct);
    bool apply = strcmp(mt, "application/apply-patch+yaml") == 0;
    bool merge = strcmp(mt, "application/merge-patch+json") == 0;
    bool jpatch = strcmp(mt, "application/json-patch+json") == 0;
    bool smp = strcmp(mt, "application/strategic-merge-patch+json") == 0;
    if (!apply && !merge && !jpatch && !(smp && !rq->res->custom)) {
        as__resp_error(out, 415, "UnsupportedMediaType", NULL, NULL,
                       "the body of the request was in an unknown format - accepted media types "
                       "include: application/json-patch+json, application/merge-patch+json, "
                       "application/apply-patch+yaml%s",
                       rq->res->custom ? "" : ", application/strategic-merge-patch+json");
        return;
    }
    json_t *patch = parse_body(rq, out, apply);
    if (!patch)
        return;
    if (apply) {
        do_apply(s, rq, patch, out);
        return;
    }
    json_t *cur = lookup(s, rq->res, rq->ns, rq->name);
    if (!cur) {
        not_found(out, rq->res, rq->name);
        json_decref(patch);
        return;
    }
    json_t *n;
    if (jpatch) {
        char err[512];
        bool test_failed;
        n = as__json_patch(cur, patch, err, sizeof(err), &test_failed);
        if (!n) {
            if (test_failed)
                as__resp_error(out, 422, "Invalid", rq->name, rq->res, "%s", err);
            else
                as__resp_error(out, 500, "InternalError", NULL, NULL, "%s", err);
            json_decref(patch);
            return;
        }
    } else {
        if (!json_is_object(patch)) {
            as__resp_error(out, 400, "BadRequest", NULL, NULL,
                           "the body of the request must be a JSON object for a merge patch");
            json_decref(patch);
            return;
        }
        if (smp)
            as__strip_smp_directives(patch);
        n = smp ? as__smp(cur, patch) : as__merge_patch(cur, patch);
    }
    json_decref(patch);
    if (!json_is_object(n)) {
        as__resp_error(out, 422, "Invalid", rq->name, rq->res, "the patch result is not an object");
        json_decref(n);
        return;
    }
    const char *prv = mstr(n, "resourceVersion");
    if (prv && check_rv(rq, cur, prv, out) != 0) {
        json_decref(n);
        return;
    }
    char mbuf[160];
    finish_update(s, rq, cur, n, manager_name(rq, mbuf, sizeof(mbuf)), "Update", NULL, NULL, out);
}

/* ---- dispatch ----------------------------------------------------------------------- */

void as__store_handle(as_server_t *s, const as_req_t *rq, as_resp_t *out)
{
    out->status = 500;
    out->body = NULL;
    if (rq->sub && !(strcmp(rq->sub, "status") == 0 && rq->res->status_sub)) {
        as__resp_error(out, 404, "NotFound", NULL, NULL,
                       "the server could not find the requested resource");
        return;
    }
    if (rq->name && !*rq->name) {
        as__resp_error(out, 404, "NotFound", NULL, NULL,
                       "the server could not find the requested resource");
        return;
    }
    const char *v = rq->verb;
    if (strcmp(v, "get") == 0)
        do_get(s, rq, out);
    else if (strcmp(v, "list") == 0)
        do_list(s, rq, out, rq->accept == AS_ACCEPT_TABLE, rq->include_object,
                rq->accept == AS_ACCEPT_PARTIAL);
    else if (strcmp(v, "create") == 0)
        do_create(s, rq, out);
    else if (strcmp(v, "update") == 0)
        do_update(s, rq, out);
    else if (strcmp(v, "patch") == 0)
        do_patch(s, rq, out);
    else if (strcmp(v, "delete") == 0)
        do_delete(s, rq, out);
    else if (strcmp(v, "deletecollection") == 0)
        do_deletecollection(s, rq, out);
    else
        as__resp_error(out, 405, "MethodNotAllowed", NULL, NULL,
                       "the server does not allow this method on the requested resource");
}

/* ---- init / direct access ----------------------------------------------------------- */

static void create_namespace(as_server_t *s, const char *name)
{
    as_req_t rq;
    memset(&rq, 0, sizeof(rq));
    char body[300];
    snprintf(body, sizeof(body), "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s\"}}", name);
    rq.verb = "create";
    rq.res = as__res_find(s, "", "v1", "namespaces");
    rq.body = body;
    rq.body_len = strlen(body);
    rq.user_agent = "kube-apiserver";
    as_resp_t out = {0};
    as__store_handle(s, &rq, &out);
    json_decref(out.body);
    json_decref(out.warnings);
}

int as__store_init(as_server_t *s)
{
    s->colls = bd_hmap_new();
    s->ev_cap = s->opts.history ? s->opts.history : 1000;
    s->ev = calloc(s->ev_cap, sizeof(*s->ev));
    if (!s->colls || !s->ev)
        return BD_ENOMEM;
    for (size_t i = 0; i < sizeof(builtins) / sizeof(*builtins); i++) {
        const struct builtin *b = &builtins[i];
        as_res_t *r = res_new(b->group, b->version, b->plural, b->singular, b->kind,
                              b->namespaced);
        if (!r)
            return BD_ENOMEM;
        r->status_sub = b->status;
        r->has_generation = b->generation;
        json_decref(r->short_names);
        r->short_names = strs(b->short_names);
        json_decref(r->categories);
        r->categories = strs(b->categories);
        if (strcmp(b->plural, "namespaces") == 0) {
            json_decref(r->verbs);
            r->verbs = strs("create,delete,get,list,patch,update,watch");
        }
        if (res_add(s, r) != 0) {
            res_free(r);
            return BD_ENOMEM;
        }
    }
    create_namespace(s, "default");
    create_namespace(s, "kube-system");
    create_namespace(s, "kube-public");
    create_namespace(s, "kube-node-lease");
    return 0;
}

void as__store_deinit(as_server_t *s)
{
    for (size_t i = 0; i < s->nres; i++)
        res_free(s->res[i]);
    free(s->res);
    if (s->colls) {
        size_t pos = 0;
        const char *k;
        void *v;
        while (bd_hmap_next(s->colls, &pos, &k, &v)) {
            size_t p2 = 0;
            const char *k2;
            void *v2;
            while (bd_hmap_next(v, &p2, &k2, &v2))
                json_decref(v2);
            bd_hmap_free(v);
        }
        bd_hmap_free(s->colls);
    }
    for (size_t i = 0; i < s->ev_len; i++)
        event_clear(&s->ev[(s->ev_head + i) % s->ev_cap]);
    free(s->ev);
}

int as__create_json(as_server_t *s, const char *js, char *err, size_t errlen)
{
    json_t *obj = json_loads(js, 0, NULL);
    if (!json_is_object(obj)) {
        json_decref(obj);
        snprintf(err, errlen, "malformed JSON");
        return BD_EPARSE;
    }
    const char *av = json_string_value(json_object_get(obj, "apiVersion"));
    const char *kind = json_string_value(json_object_get(obj, "kind"));
    char g[256], v[64];
    split_api_version(av ? av : "", g, sizeof(g), v, sizeof(v));
    as_res_t *res = kind ? res_by_kind(s, g, v, kind) : NULL;
    if (!res) {
        snprintf(err, errlen, "no resource for %s %s", av ? av : "?", kind ? kind : "?");
        json_decref(obj);
        return BD_ENOTFOUND;
    }
    as_req_t rq;
    memset(&rq, 0, sizeof(rq));
    rq.verb = "create";
    rq.res = res;
    rq.ns = res->namespaced ? (mstr(obj, "namespace") ? mstr(obj, "namespace") : "default") : NULL;
    rq.body = js;
    rq.body_len = strlen(js);
    rq.user_agent = "bd-apiserver";
    as_resp_t out = {0};
    as__store_handle(s, &rq, &out);
    json_decref(obj);
    int rc = 0;
    if (out.status != 201) {
        snprintf(err, errlen, "%s", json_string_value(json_object_get(out.body, "message")) ?: "");
        rc = out.status == 404 ? BD_ENOTFOUND : out.status == 409 ? BD_EEXISTS : BD_EINVAL;
    }
    json_decref(out.body);
    json_decref(out.warnings);
    return rc;
}
