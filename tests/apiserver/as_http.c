/*
 * as_http.c - the HTTP side of the API-server test double: libmicrohttpd (one thread per
 * connection), routing, bearer auth, fault knobs, the request log, discovery (legacy and
 * aggregated), OpenAPI, tables and watch streams.
 *
 * A watch is a chunked response whose reader blocks on as_server_t.cond until an event,
 * a bookmark, the watch's deadline, a drop or the server's stop; with one thread per
 * connection, blocking there stalls nobody else.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "as_internal.h"
#include "clock.h"
#include "log.h"

#define AS_LOG_MAX 200000

/* ---- helpers ------------------------------------------------------------------------ */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *arg(struct MHD_Connection *c, const char *k)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, k);
}

static bool arg_true(struct MHD_Connection *c, const char *k)
{
    const char *v = arg(c, k);
    return v && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "True") == 0);
}

static const char *hdr(struct MHD_Connection *c, const char *k)
{
    return MHD_lookup_connection_value(c, MHD_HEADER_KIND, k);
}

typedef struct qbuf {
    FILE *f;
    bool first;
} qbuf_t;

static enum MHD_Result query_it(void *cls, enum MHD_ValueKind kind, const char *k, const char *v)
{
    qbuf_t *q = cls;
    fprintf(q->f, "%s%s%s%s", q->first ? "" : "&", k, v ? "=" : "", v ? v : "");
    q->first = false;
    return MHD_YES;
}

static char *query_string(struct MHD_Connection *c)
{
    char *buf = NULL;
    size_t len = 0;
    qbuf_t q = {open_memstream(&buf, &len), true};
    if (!q.f)
        return strdup("");
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_it, &q);
    fclose(q.f);
    return buf;
}

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src ? src : "");
}

/* ---- request log -------------------------------------------------------------------- */

void as__log_add(as_server_t *s, const char *ua, const char *fm, const char *verb,
                 const char *method, const char *path, const char *query, int status)
{
    if (s->log_len == AS_LOG_MAX)
        return;
    if (s->log_len == s->log_cap) {
        size_t cap = s->log_cap ? s->log_cap * 2 : 256;
        as_logent_t *n = realloc(s->log, cap * sizeof(*n));
        if (!n)
            return;
        s->log = n;
        s->log_cap = cap;
    }
    as_logent_t *e = &s->log[s->log_len++];
    e->seq = ++s->log_seq;
    e->time = wall_now();
    e->user_agent = strdup(ua ? ua : "");
    e->field_manager = strdup(fm ? fm : "");
    e->verb = strdup(verb ? verb : "");
    e->method = strdup(method ? method : "");
    e->path = strdup(path ? path : "");
    e->query = strdup(query ? query : "");
    e->status = status;
}

static void log_clear_locked(as_server_t *s)
{
    for (size_t i = 0; i < s->log_len; i++) {
        as_logent_t *e = &s->log[i];
        free(e->user_agent);
        free(e->field_manager);
        free(e->verb);
        free(e->method);
        free(e->path);
        free(e->query);
    }
    s->log_len = 0;
}

static json_t *log_json_locked(as_server_t *s, uint64_t since)
{
    json_t *items = json_array();
    for (size_t i = 0; i < s->log_len; i++) {
        as_logent_t *e = &s->log[i];
        if (e->seq <= since)
            continue;
        json_array_append_new(items, json_pack("{s:I,s:f,s:s,s:s,s:s,s:s,s:s,s:s,s:i}", "seq",
                                               (json_int_t)e->seq, "time", e->time, "userAgent",
                                               e->user_agent, "fieldManager", e->field_manager,
                                               "verb", e->verb, "method", e->method, "path",
                                               e->path, "query", e->query, "status", e->status));
    }
    return json_pack("{s:o,s:I}", "items", items, "lastSeq", (json_int_t)s->log_seq);
}

size_t bd_apiserver_log_count(bd_apiserver_t *s)
{
    pthread_mutex_lock(&s->mu);
    size_t n = s->log_len;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int bd_apiserver_log_get(bd_apiserver_t *s, size_t i, bd_apiserver_req_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&s->mu);
    if (i >= s->log_len) {
        pthread_mutex_unlock(&s->mu);
        return BD_ENOTFOUND;
    }
    as_logent_t *e = &s->log[i];
    out->seq = e->seq;
    out->time = e->time;
    copy_str(out->user_agent, sizeof(out->user_agent), e->user_agent);
    copy_str(out->field_manager, sizeof(out->field_manager), e->field_manager);
    copy_str(out->verb, sizeof(out->verb), e->verb);
    copy_str(out->method, sizeof(out->method), e->method);
    copy_str(out->path, sizeof(out->path), e->path);
    copy_str(out->query, sizeof(out->query), e->query);
    out->status = e->status;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

char *bd_apiserver_log_json(bd_apiserver_t *s, uint64_t since)
{
    pthread_mutex_lock(&s->mu);
    json_t *j = log_json_locked(s, since);
    pthread_mutex_unlock(&s->mu);
    char *out = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return out;
}

void bd_apiserver_log_clear(bd_apiserver_t *s)
{
    pthread_mutex_lock(&s->mu);
    log_clear_locked(s);
    pthread_mutex_unlock(&s->mu);
}

/* ---- fault knobs -------------------------------------------------------------------- */

static void set_match(char **dst, const char *m)
{
    free(*dst);
    *dst = m && *m ? strdup(m) : NULL;
}

void bd_apiserver_fail_next(bd_apiserver_t *s, unsigned count, int status, const char *match)
{
    pthread_mutex_lock(&s->mu);
    s->fail_count = count;
    s->fail_status = status >= 500 && status <= 599 ? status : 500;
    set_match(&s->fail_match, match);
    pthread_mutex_unlock(&s->mu);
}

void bd_apiserver_fail_fraction(bd_apiserver_t *s, double fraction, int status, const char *match)
{
    pthread_mutex_lock(&s->mu);
    s->fail_fraction = fraction < 0 ? 0 : fraction > 1 ? 1 : fraction;
    s->fail_status = status >= 500 && status <= 599 ? status : 500;
    set_match(&s->fail_match, match);
    pthread_mutex_unlock(&s->mu);
}

void bd_apiserver_throttle_next(bd_apiserver_t *s, unsigned count, unsigned retry_after_s,
                                const char *match)
{
    pthread_mutex_lock(&s->mu);
    s->throttle_count = count;
    s->throttle_retry_after = retry_after_s;
    set_match(&s->throttle_match, match);
    pthread_mutex_unlock(&s->mu);
}

void bd_apiserver_set_latency(bd_apiserver_t *s, unsigned ms)
{
    pthread_mutex_lock(&s->mu);
    s->latency_ms = ms;
    pthread_mutex_unlock(&s->mu);
}

void bd_apiserver_drop_watches(bd_apiserver_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->drop_epoch++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

void bd_apiserver_reset_faults(bd_apiserver_t *s)
{
    pthread_mutex_lock(&s->mu);
    s->fail_count = 0;
    s->fail_fraction = 0;
    s->throttle_count = 0;
    s->latency_ms = 0;
    set_match(&s->fail_match, NULL);
    set_match(&s->throttle_match, NULL);
    pthread_mutex_unlock(&s->mu);
}

uint64_t bd_apiserver_resource_version(bd_apiserver_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t rv = s->rv;
    pthread_mutex_unlock(&s->mu);
    return rv;
}

unsigned bd_apiserver_watches_open(bd_apiserver_t *s)
{
    pthread_mutex_lock(&s->mu);
    unsigned n = s->watches_open;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static json_t *faults_json_locked(as_server_t *s)
{
    return json_pack("{s:i,s:i,s:f,s:s?,s:i,s:i,s:s?,s:i,s:I}", "failCount", (int)s->fail_count,
                     "failStatus", s->fail_status, "failFraction", s->fail_fraction, "failMatch",
                     s->fail_match, "throttleCount", (int)s->throttle_count, "retryAfter",
                     (int)s->throttle_retry_after, "throttleMatch", s->throttle_match,
                     "latencyMs", (int)s->latency_ms, "dropEpoch", (json_int_t)s->drop_epoch);
}

/* ---- responses ---------------------------------------------------------------------- */

typedef struct reqctx {
    char *body;
    size_t len, cap;
    bool too_big;
} reqctx_t;

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *ctype,
                                 char *text, size_t len, json_t *warnings, int retry_after)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_add_response_header(r, "Cache-Control", "no-cache, private");
    char uid[37];
    as__uuid(uid);
    MHD_add_response_header(r, "Audit-Id", uid);
    size_t i;
    json_t *w;
    json_array_foreach(warnings, i, w) {
        char buf[1200];
        snprintf(buf, sizeof(buf), "299 - \"%s\"", json_string_value(w));
        MHD_add_response_header(r, "Warning", buf);
    }
    if (retry_after > 0) {
        char buf[16];
        snprintf(buf, sizeof(buf), "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", buf);
    }
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int status, const char *ctype,
                                 json_t *body, json_t *warnings, int retry_after)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text)
        return MHD_NO;
    size_t len = strlen(text);
    /* the real server ends JSON bodies with a newline */
    char *t2 = realloc(text, len + 2);
    if (t2) {
        text = t2;
        text[len++] = '\n';
        text[len] = '\0';
    }
    return send_text(c, status, ctype ? ctype : "application/json", text, len, warnings,
                     retry_after);
}

/* ---- discovery ---------------------------------------------------------------------- */

static json_t *gv_versions(as_server_t *s, const char *group)
{
    json_t *vs = json_array();
    for (size_t i = 0; i < s->nres; i++) {
        as_res_t *r = s->res[i];
        if (strcmp(r->group, group) != 0)
            continue;
        bool seen = false;
        size_t j;
        json_t *v;
        json_array_foreach(vs, j, v) {
            if (strcmp(json_string_value(json_object_get(v, "version")), r->version) == 0)
                seen = true;
        }
        if (!seen) {
            char gv[300];
            snprintf(gv, sizeof(gv), "%s/%s", group, r->version);
            json_array_append_new(vs, json_pack("{s:s,s:s}", "groupVersion", gv, "version",
                                                r->version));
        }
    }
    return vs;
}

static json_t *group_names(as_server_t *s)
{
    json_t *gs = json_array();
    for (size_t i = 0; i < s->nres; i++) {
        as_res_t *r = s->res[i];
        if (!r->group[0])
            continue;
        bool seen = false;
        size_t j;
        json_t *g;
        json_array_foreach(gs, j, g) seen = seen || strcmp(json_string_value(g), r->group) == 0;
        if (!seen)
            json_array_append_new(gs, json_string(r->group));
    }
    return gs;
}

static json_t *api_group(as_server_t *s, const char *group)
{
    json_t *vs = gv_versions(s, group);
    if (json_array_size(vs) == 0) {
        json_decref(vs);
        return NULL;
    }
    return json_pack("{s:s,s:O,s:o}", "name", group, "preferredVersion",
                     json_array_get(vs, 0), "versions", vs);
}

static json_t *resource_list(as_server_t *s, const char *group, const char *version)
{
    json_t *rs = json_array();
    bool found = false;
    for (size_t i = 0; i < s->nres; i++) {
        as_res_t *r = s->res[i];
        if (strcmp(r->group, group) != 0 || strcmp(r->version, version) != 0)
            continue;
        found = true;
        json_t *e = json_pack("{s:s,s:s,s:b,s:s,s:O}", "name", r->plural, "singularName",
                              r->singular, "namespaced", r->namespaced, "kind", r->kind,
                              "verbs", r->verbs);
        if (json_array_size(r->short_names))
            json_object_set(e, "shortNames", r->short_names);
        if (json_array_size(r->categories))
            json_object_set(e, "categories", r->categories);
        json_array_append_new(rs, e);
        if (r->status_sub) {
            char sub[300];
            snprintf(sub, sizeof(sub), "%s/status", r->plural);
            json_array_append_new(rs, json_pack("{s:s,s:s,s:b,s:s,s:[sss]}", "name", sub,
                                                "singularName", "", "namespaced",
                                                r->namespaced, "kind", r->kind, "verbs", "get",
                                                "patch", "update"));
        }
    }
    if (!found) {
        json_decref(rs);
        return NULL;
    }
    char gv[300];
    if (group[0])
        snprintf(gv, sizeof(gv), "%s/%s", group, version);
    else
        snprintf(gv, sizeof(gv), "%s", version);
    return json_pack("{s:s,s:s,s:s,s:o}", "kind", "APIResourceList", "apiVersion", "v1",
                     "groupVersion", gv, "resources", rs);
}

static json_t *aggregated_group(as_server_t *s, const char *group)
{
    json_t *vs = gv_versions(s, group), *versions = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(vs, i, v) {
        const char *ver = json_string_value(json_object_get(v, "version"));
        json_t *rs = json_array();
        for (size_t j = 0; j < s->nres; j++) {
            as_res_t *r = s->res[j];
            if (strcmp(r->group, group) != 0 || strcmp(r->version, ver) != 0)
                continue;
            json_t *e = json_pack("{s:s,s:{s:s,s:s,s:s},s:s,s:s,s:O}", "resource", r->plural,
                                  "responseKind", "group", r->group, "version", r->version,
                                  "kind", r->kind, "scope",
                                  r->namespaced ? "Namespaced" : "Cluster", "singularResource",
                                  r->singular, "verbs", r->verbs);
            if (json_array_size(r->short_names))
                json_object_set(e, "shortNames", r->short_names);
            if (json_array_size(r->categories))
                json_object_set(e, "categories", r->categories);
            if (r->status_sub)
                json_object_set_new(e, "subresources",
                                    json_pack("[{s:s,s:{s:s,s:s,s:s},s:[sss]}]", "subresource",
                                              "status", "responseKind", "group", r->group,
                                              "version", r->version, "kind", r->kind, "verbs",
                                              "get", "patch", "update"));
            json_array_append_new(rs, e);
        }
        json_array_append_new(versions, json_pack("{s:s,s:o,s:s}", "version", ver, "resources",
                                                  rs, "freshness", "Current"));
    }
    json_decref(vs);
    json_t *md = json_object();
    if (group[0])
        json_object_set_new(md, "name", json_string(group));
    json_object_set_new(md, "creationTimestamp", json_null());
    return json_pack("{s:o,s:o}", "metadata", md, "versions", versions);
}

/* "v2", "v2beta1" or NULL: the aggregated-discovery format the client asked for first. */
static const char *aggregated_wanted(const char *accept)
{
    if (!accept)
        return NULL;
    const char *p = accept;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char part[256];
        snprintf(part, sizeof(part), "%.*s", (int)n, p);
        if (strstr(part, "as=APIGroupDiscoveryList") && strstr(part, "g=apidiscovery.k8s.io")) {
            if (strstr(part, "v=v2beta1"))
                return "v2beta1";
            if (strstr(part, "v=v2"))
                return "v2";
        } else if (strstr(part, "application/json") || strstr(part, "*/*")) {
            return NULL;
        }
        p = e ? e + 1 : NULL;
    }
    return NULL;
}

/* ---- OpenAPI ------------------------------------------------------------------------ */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void reverse_group(const char *group, char *out, size_t n)
{
    /* bindy.firestoned.io -> io.firestoned.bindy; core -> io.k8s.api.core */
    if (!group[0]) {
        snprintf(out, n, "io.k8s.api.core");
        return;
    }
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", group);
    out[0] = '\0';
    char *parts[32];
    size_t np = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ".", &save); t && np < 32; t = strtok_r(NULL, ".", &save))
        parts[np++] = t;
    for (size_t i = np; i-- > 0;) {
        strncat(out, parts[i], n - strlen(out) - 1);
        if (i)
            strncat(out, ".", n - strlen(out) - 1);
    }
}

static json_t *openapi_v3_gv(as_server_t *s, const char *group, const char *version)
{
    json_t *paths = json_object(), *schemas = json_object();
    bool found = false;
    for (size_t i = 0; i < s->nres; i++) {
        as_res_t *r = s->res[i];
        if (strcmp(r->group, group) != 0 || strcmp(r->version, version) != 0)
            continue;
        found = true;
        char rg[256], sname[512], path[700], base[300];
        reverse_group(r->group, rg, sizeof(rg));
        snprintf(sname, sizeof(sname), "%s.%s.%s", rg, r->version, r->kind);
        if (group[0])
            snprintf(base, sizeof(base), "/apis/%s/%s", group, version);
        else
            snprintf(base, sizeof(base), "/api/%s", version);
        snprintf(path, sizeof(path), "%s%s/%s/{name}", base,
                 r->namespaced ? "/namespaces/{namespace}" : "", r->plural);
        json_t *gvk = json_pack("{s:s,s:s,s:s}", "group", r->group, "version", r->version,
                                "kind", r->kind);
        char ref[600];
        snprintf(ref, sizeof(ref), "#/components/schemas/%s", sname);
        json_t *params = json_pack(
            "[{s:s,s:s,s:s,s:{s:s}},{s:s,s:s,s:s,s:{s:s}},{s:s,s:s,s:s,s:{s:s}},"
            "{s:s,s:s,s:s,s:{s:s}}]",
            "name", "dryRun", "in", "query", "description", "dry run", "schema", "type",
            "string", "name", "fieldManager", "in", "query", "description", "field manager",
            "schema", "type", "string", "name", "fieldValidation", "in", "query",
            "description",
            "fieldValidation instructs the server on how to handle objects in the request "
            "containing unknown or duplicate fields: Ignore, Warn or Strict.",
            "schema", "type", "string", "name", "force", "in", "query", "description",
            "force apply", "schema", "type", "boolean");
        json_t *body_schema = json_pack("{s:s}", "type", "object");
        json_t *content = json_object();
        json_object_set_new(content, "application/json-patch+json",
                            json_pack("{s:O}", "schema", body_schema));
        json_object_set_new(content, "application/merge-patch+json",
                            json_pack("{s:O}", "schema", body_schema));
        json_object_set_new(content, "application/apply-patch+yaml",
                            json_pack("{s:O}", "schema", body_schema));
        json_decref(body_schema);
        json_t *resp = json_pack("{s:{s:s,s:{s:{s:{s:s}}}}}", "200", "description", "OK",
                                 "content", "application/json", "schema", "$ref", ref);
        json_t *item = json_pack("{s:{s:s,s:O,s:s,s:O},s:{s:s,s:o,s:{s:o},s:O,s:s,s:O}}",
                                 "get", "description", "read the specified object",
                                 "responses", resp, "x-kubernetes-action", "get",
                                 "x-kubernetes-group-version-kind", gvk, "patch",
                                 "description", "partially update the specified object",
                                 "parameters", params, "requestBody", "content", content,
                                 "responses", resp, "x-kubernetes-action", "patch",
                                 "x-kubernetes-group-version-kind", gvk);
        json_decref(resp);
        json_object_set_new(paths, path, item);
        json_t *sch = r->schema ? json_deep_copy(r->schema)
                                : json_pack("{s:s,s:b}", "type", "object",
                                            "x-kubernetes-preserve-unknown-fields", 1);
        json_object_set_new(sch, "x-kubernetes-group-version-kind", json_pack("[O]", gvk));
        json_object_set_new(schemas, sname, sch);
        json_decref(gvk);
    }
    if (!found) {
        json_decref(paths);
        json_decref(schemas);
        return NULL;
    }
    char ver[64];
    snprintf(ver, sizeof(ver), "v%s", s->server_version);
    return json_pack("{s:s,s:{s:s,s:s},s:o,s:{s:o}}", "openapi", "3.0.0", "info", "title",
                     "Kubernetes", "version", ver, "paths", paths, "components", "schemas",
                     schemas);
}

static json_t *openapi_v3_root(as_server_t *s)
{
    json_t *paths = json_object();
    for (size_t i = 0; i < s->nres; i++) {
        as_res_t *r = s->res[i];
        char key[300], url[400];
        if (r->group[0])
            snprintf(key, sizeof(key), "apis/%s/%s", r->group, r->version);
        else
            snprintf(key, sizeof(key), "api/%s", r->version);
        if (json_object_get(paths, key))
            continue;
        json_t *doc = openapi_v3_gv(s, r->group, r->version);
        char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        snprintf(url, sizeof(url), "/openapi/v3/%s?hash=%016llX", key,
                 (unsigned long long)fnv1a(text ? text : ""));
        free(text);
        json_decref(doc);
        json_object_set_new(paths, key, json_pack("{s:s}", "serverRelativeURL", url));
    }
    return json_pack("{s:o}", "paths", paths);
}

/* A minimal openapi_v2.Document in protobuf: swagger "2.0", info {title, version}. */
static char *openapi_v2_proto(const char *version, size_t *len)
{
    const char *title = "Kubernetes";
    size_t tl = strlen(title), vl = strlen(version);
    size_t info_len = 2 + tl + 2 + vl;
    size_t total = 2 + 3 + 2 + info_len;
    unsigned char *b = malloc(total), *p = b;
    if (!b || tl > 127 || vl > 127 || info_len > 127) {
        free(b);
        return NULL;
    }
    *p++ = 0x0a; /* field 1, swagger */
    *p++ = 3;
    memcpy(p, "2.0", 3);
    p += 3;
    *p++ = 0x12; /* field 2, info */
    *p++ = (unsigned char)info_len;
    *p++ = 0x0a; /* info.title */
    *p++ = (unsigned char)tl;
    memcpy(p, title, tl);
    p += tl;
    *p++ = 0x12; /* info.version */
    *p++ = (unsigned char)vl;
    memcpy(p, version, vl);
    p += vl;
    *len = (size_t)(p - b);
    return (char *)b;
}

/* ---- watch -------------------------------------------------------------------------- */

typedef struct watch {
    as_server_t *s;
    char *coll, *gv, *kind;
    as_res_t *res; /* a private copy (the registry may change under us) */
    char *ns_prefix;
    as_sel_t *ls, *fs;
    uint64_t last_rv;
    uint64_t epoch;
    double deadline, next_bookmark, bookmark_s;
    bool bookmarks, finish, table, partial, cols_sent;
    char *include_object;
    char *buf;
    size_t len, off, cap;
} watch_t;

static as_res_t *res_copy(const as_res_t *r)
{
    as_res_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->group = strdup(r->group);
    c->version = strdup(r->version);
    c->plural = strdup(r->plural);
    c->singular = strdup(r->singular);
    c->kind = strdup(r->kind);
    c->list_kind = strdup(r->list_kind);
    c->namespaced = r->namespaced;
    c->custom = r->custom;
    c->status_sub = r->status_sub;
    c->columns = r->columns ? json_deep_copy(r->columns) : NULL;
    c->coll = strdup(r->coll);
    return c;
}

static void res_copy_free(as_res_t *c)
{
    if (!c)
        return;
    free(c->group);
    free(c->version);
    free(c->plural);
    free(c->singular);
    free(c->kind);
    free(c->list_kind);
    free(c->coll);
    json_decref(c->columns);
    free(c);
}

static void watch_append(watch_t *w, const char *text)
{
    size_t n = strlen(text);
    if (w->len + n + 1 > w->cap) {
        size_t cap = (w->len + n + 1) * 2;
        char *b = realloc(w->buf, cap);
        if (!b)
            return;
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, text, n);
    w->len += n;
    w->buf[w->len++] = '\n';
}

static void watch_event(watch_t *w, const char *type, const json_t *obj)
{
    json_t *o;
    if (w->table) {
        json_t *one = json_pack("[O]", obj);
        o = as__table(w->res, one, w->include_object, !w->cols_sent, NULL, NULL);
        w->cols_sent = true;
        json_decref(one);
    } else if (w->partial) {
        o = as__partial_meta(obj);
    } else {
        o = as__present(w->res, obj);
    }
    json_t *ev = json_pack("{s:s,s:o}", "type", type, "object", o);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (text)
        watch_append(w, text);
    free(text);
}

static void watch_bookmark(watch_t *w, bool initial_end)
{
    char rv[24];
    snprintf(rv, sizeof(rv), "%llu", (unsigned long long)w->last_rv);
    json_t *o = json_pack("{s:s,s:s,s:{s:s}}", "kind", w->kind, "apiVersion", w->gv,
                          "metadata", "resourceVersion", rv);
    if (initial_end)
        json_object_set_new(json_object_get(o, "metadata"), "annotations",
                            json_pack("{s:s}", "k8s.io/initial-events-end", "true"));
    json_t *ev = json_pack("{s:s,s:o}", "type", "BOOKMARK", "object", o);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (text)
        watch_append(w, text);
    free(text);
}

static bool watch_matches(const watch_t *w, const char *key, const json_t *obj)
{
    if (w->ns_prefix && strncmp(key, w->ns_prefix, strlen(w->ns_prefix)) != 0)
        return false;
    return obj && as__sel_match(w->ls, obj) && as__sel_match(w->fs, obj);
}

/* Turn new history events into watch events (mu held). Returns false when this watcher
 * fell out of the history window. */
static bool watch_collect(watch_t *w)
{
    as_server_t *s = w->s;
    if (s->rv == w->last_rv)
        return true;
    if (s->compact_rv > w->last_rv)
        return false;
    size_t start = s->ev_len;
    while (start > 0 && as__event_at(s, start - 1)->rv > w->last_rv)
        start--;
    for (size_t i = start; i < s->ev_len; i++) {
        const as_event_t *e = as__event_at(s, i);
        if (strcmp(e->coll, w->coll) != 0)
            continue;
        bool now = watch_matches(w, e->key, e->obj);
        bool before = e->prev && watch_matches(w, e->key, e->prev);
        if (e->type == AS_EV_ADDED) {
            if (now)
                watch_event(w, "ADDED", e->obj);
        } else if (e->type == AS_EV_DELETED) {
            if (before || now)
                watch_event(w, "DELETED", e->obj);
        } else if (now && before) {
            watch_event(w, "MODIFIED", e->obj);
        } else if (now) {
            watch_event(w, "ADDED", e->obj);
        } else if (before) {
            watch_event(w, "DELETED", e->obj);
        }
    }
    w->last_rv = s->rv;
    return true;
}

static ssize_t watch_read(void *cls, uint64_t pos, char *out, size_t max)
{
    watch_t *w = cls;
    as_server_t *s = w->s;
    for (;;) {
        if (w->off < w->len) {
            size_t n = w->len - w->off;
            if (n > max)
                n = max;
            memcpy(out, w->buf + w->off, n);
            w->off += n;
            if (w->off == w->len)
                w->off = w->len = 0;
            return (ssize_t)n;
        }
        if (w->finish)
            return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&s->mu);
        for (;;) {
            if (s->stopping) {
                pthread_mutex_unlock(&s->mu);
                return MHD_CONTENT_READER_END_OF_STREAM;
            }
            if (s->drop_epoch != w->epoch) {
                pthread_mutex_unlock(&s->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (!watch_collect(w)) {
                /* too slow for the history window: the server closes the stream */
                w->finish = true;
                break;
            }
            if (w->len > 0)
                break;
            double now = bd_mono_s();
            if (now >= w->deadline) {
                w->finish = true;
                break;
            }
            if (w->bookmarks && now >= w->next_bookmark) {
                watch_bookmark(w, false);
                while (w->next_bookmark <= now)
                    w->next_bookmark += w->bookmark_s;
                break;
            }
            double until = w->deadline;
            if (w->bookmarks && w->next_bookmark < until)
                until = w->next_bookmark;
            /* condvar uses CLOCK_MONOTONIC (set at init) */
            struct timespec ts;
            double whole = floor(until);
            ts.tv_sec = (time_t)whole;
            ts.tv_nsec = (long)((until - whole) * 1e9);
            pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        }
        pthread_mutex_unlock(&s->mu);
    }
}

static void watch_free(void *cls)
{
    watch_t *w = cls;
    pthread_mutex_lock(&w->s->mu);
    w->s->watches_open--;
    pthread_mutex_unlock(&w->s->mu);
    free(w->coll);
    free(w->gv);
    free(w->kind);
    free(w->ns_prefix);
    free(w->include_object);
    as__sel_free(w->ls);
    as__sel_free(w->fs);
    res_copy_free(w->res);
    free(w->buf);
    free(w);
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Start a watch (mu held). On a request error, the status and body out-parameters describe it. */
static watch_t *watch_start(as_server_t *s, struct MHD_Connection *c, const as_req_t *rq,
                            int *status, json_t **body)
{
    char err[512];
    as_sel_t *ls = NULL, *fs = NULL;
    *status = 200;
    *body = NULL;
    if (as__sel_parse_labels(rq->label_sel, &ls, err, sizeof(err)) != 0 ||
        as__sel_parse_fields(rq->field_sel, rq->res, &fs, err, sizeof(err)) != 0) {
        as__sel_free(ls);
        *status = 400;
        *body = as__status(400, "BadRequest", NULL, NULL, "%s", err);
        return NULL;
    }
    watch_t *w = calloc(1, sizeof(*w));
    w->s = s;
    w->res = res_copy(rq->res);
    w->coll = strdup(rq->res->coll);
    char gv[300];
    if (rq->res->group[0])
        snprintf(gv, sizeof(gv), "%s/%s", rq->res->group, rq->res->version);
    else
        snprintf(gv, sizeof(gv), "%s", rq->res->version);
    w->gv = strdup(gv);
    w->kind = strdup(rq->res->kind);
    if (rq->ns && rq->res->namespaced) {
        char p[300];
        snprintf(p, sizeof(p), "%s/", rq->ns);
        w->ns_prefix = strdup(p);
    }
    w->ls = ls;
    w->fs = fs;
    w->epoch = s->drop_epoch;
    w->bookmarks = arg_true(c, "allowWatchBookmarks");
    w->table = rq->accept == AS_ACCEPT_TABLE;
    w->partial = rq->accept == AS_ACCEPT_PARTIAL;
    w->include_object = rq->include_object ? strdup(rq->include_object) : NULL;
    const char *ts = arg(c, "timeoutSeconds");
    double timeout = s->opts.max_watch_s;
    if (ts && atof(ts) > 0)
        timeout = atof(ts);
    double now = bd_mono_s();
    w->deadline = now + timeout;
    w->bookmark_s = s->opts.bookmark_ms / 1000.0;
    w->next_bookmark = now + w->bookmark_s;
    const char *sie = arg(c, "sendInitialEvents");
    bool send_initial;
    if (sie)
        send_initial = strcmp(sie, "true") == 0 || strcmp(sie, "1") == 0;
    else
        send_initial = !rq->rv || !*rq->rv || strcmp(rq->rv, "0") == 0;
    if (rq->rv && *rq->rv && strcmp(rq->rv, "0") != 0) {
        char *end;
        unsigned long long want = strtoull(rq->rv, &end, 10);
        if (*end) {
            *status = 400;
            *body = as__status(400, "BadRequest", NULL, NULL,
                               "resourceVersion: Invalid value: \"%s\": must be an integer",
                               rq->rv);
            goto fail;
        }
        if (want > s->rv) {
            *status = 504;
            *body = as__status(504, "Timeout", NULL, NULL,
                               "Too large resource version: %llu, current: %llu", want,
                               (unsigned long long)s->rv);
            json_object_set_new(*body, "details",
                                json_pack("{s:[{s:s,s:s}],s:i}", "causes", "reason",
                                          "ResourceVersionTooLarge", "message",
                                          "Too large resource version", "retryAfterSeconds", 1));
            goto fail;
        }
        if (want < s->compact_rv) {
            json_t *st = as__status(410, "Expired", NULL, NULL,
                                    "too old resource version: %llu (%llu)", want,
                                    (unsigned long long)(s->compact_rv + 1));
            json_t *ev = json_pack("{s:s,s:o}", "type", "ERROR", "object", st);
            char *text = json_dumps(ev, JSON_COMPACT);
            json_decref(ev);
            if (text)
                watch_append(w, text);
            free(text);
            w->finish = true;
            s->watches_open++;
            return w;
        }
        w->last_rv = want;
    } else {
        w->last_rv = s->rv;
    }
    if (send_initial) {
        bd_hmap_t *m = as__coll(s, w->coll);
        size_t n = 0;
        const char **keys = m ? bd_hmap_keys_sorted(m, &n) : NULL;
        for (size_t i = 0; i < n; i++) {
            json_t *o = bd_hmap_get(m, keys[i]);
            if (watch_matches(w, keys[i], o))
                watch_event(w, "ADDED", o);
        }
        free(keys);
        (void)cmp_keys;
        if (sie && w->bookmarks)
            watch_bookmark(w, true);
    }
    s->watches_open++;
    return w;
fail:
    w->ls = w->fs = NULL;
    as__sel_free(ls);
    as__sel_free(fs);
    res_copy_free(w->res);
    free(w->coll);
    free(w->gv);
    free(w->kind);
    free(w->ns_prefix);
    free(w->include_object);
    free(w->buf);
    free(w);
    return NULL;
}

/* ---- routing ------------------------------------------------------------------------ */

#define MAX_SEGS 12

static size_t split_path(const char *url, char *buf, size_t n, char **segs)
{
    snprintf(buf, n, "%s", url);
    size_t ns = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, "/", &save); t && ns < MAX_SEGS; t = strtok_r(NULL, "/", &save))
        segs[ns++] = t;
    return ns;
}

static bool fault_match(const char *match, const char *verb, const char *path)
{
    if (!match)
        return true;
    char buf[1200];
    snprintf(buf, sizeof(buf), "%s %s", verb, path);
    return strstr(buf, match) != NULL;
}

static int accept_kind(const char *accept, bool list, const char **ctype)
{
    *ctype = "application/json";
    if (!accept)
        return AS_ACCEPT_JSON;
    if (strstr(accept, "as=Table")) {
        *ctype = strstr(accept, "v=v1;") || strstr(accept, "v=v1,") || !strstr(accept, "v1beta1")
                     ? "application/json;as=Table;v=v1;g=meta.k8s.io"
                     : "application/json;as=Table;v=v1beta1;g=meta.k8s.io";
        return AS_ACCEPT_TABLE;
    }
    if (strstr(accept, list ? "as=PartialObjectMetadataList" : "as=PartialObjectMetadata")) {
        *ctype = list ? "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
                      : "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io";
        return AS_ACCEPT_PARTIAL;
    }
    return AS_ACCEPT_JSON;
}

static enum MHD_Result control(as_server_t *s, struct MHD_Connection *c, const char *url,
                               const char *method)
{
    json_t *body = NULL;
    int status = 200;
    pthread_mutex_lock(&s->mu);
    if (strcmp(url, "/__double/faults") == 0 && strcmp(method, "GET") == 0) {
        body = faults_json_locked(s);
    } else if (strcmp(url, "/__double/log") == 0 && strcmp(method, "GET") == 0) {
        const char *since = arg(c, "since");
        body = log_json_locked(s, since ? strtoull(since, NULL, 10) : 0);
    } else if (strcmp(url, "/__double/log") == 0 && strcmp(method, "DELETE") == 0) {
        log_clear_locked(s);
        body = json_pack("{s:b}", "ok", 1);
    } else if (strcmp(url, "/__double/state") == 0) {
        body = json_pack("{s:I,s:I,s:i,s:I}", "resourceVersion", (json_int_t)s->rv,
                         "compactedResourceVersion", (json_int_t)s->compact_rv, "watches",
                         (int)s->watches_open, "historyLength", (json_int_t)s->ev_len);
    } else if (strcmp(method, "POST") != 0 || strncmp(url, "/__double/faults/", 17) != 0) {
        status = 404;
    }
    pthread_mutex_unlock(&s->mu);
    if (!body && status == 200) {
        const char *what = url + 17;
        const char *match = arg(c, "match");
        const char *st = arg(c, "status");
        int code = st ? atoi(st) : 500;
        if (strcmp(what, "fail") == 0) {
            const char *fr = arg(c, "fraction");
            if (fr)
                bd_apiserver_fail_fraction(s, atof(fr), code, match);
            else
                bd_apiserver_fail_next(s, (unsigned)atoi(arg(c, "count") ?: "1"), code, match);
        } else if (strcmp(what, "throttle") == 0) {
            bd_apiserver_throttle_next(s, (unsigned)atoi(arg(c, "count") ?: "1"),
                                       (unsigned)atoi(arg(c, "retryAfter") ?: "1"), match);
        } else if (strcmp(what, "latency") == 0) {
            bd_apiserver_set_latency(s, (unsigned)atoi(arg(c, "ms") ?: "0"));
        } else if (strcmp(what, "drop-watches") == 0) {
            bd_apiserver_drop_watches(s);
        } else if (strcmp(what, "compact") == 0) {
            bd_apiserver_compact(s);
        } else if (strcmp(what, "reset") == 0) {
            bd_apiserver_reset_faults(s);
        } else {
            status = 404;
        }
        if (status == 200) {
            pthread_mutex_lock(&s->mu);
            body = faults_json_locked(s);
            pthread_mutex_unlock(&s->mu);
        }
    }
    if (!body)
        body = as__status(404, "NotFound", NULL, NULL, "no such control endpoint: %s %s",
                          method, url);
    return send_json(c, status, NULL, body, NULL, 0);
}

static enum MHD_Result handle(as_server_t *s, struct MHD_Connection *c, const char *url,
                              const char *method, reqctx_t *rc)
{
    const char *ua = hdr(c, "User-Agent");
    const char *accept = hdr(c, "Accept");
    const char *fm = arg(c, "fieldManager");
    char *query = query_string(c);
    char pbuf[2048];
    char *segs[MAX_SEGS];
    size_t nseg = split_path(url, pbuf, sizeof(pbuf), segs);
    const char *verb = "unknown";
    json_t *body = NULL, *warnings = NULL;
    const char *ctype = NULL;
    int status = 404, retry_after = 0;
    char *raw = NULL;
    size_t raw_len = 0;
    enum MHD_Result ret;

    /* auth */
    if (s->token) {
        const char *auth = hdr(c, "Authorization");
        char want[600];
        snprintf(want, sizeof(want), "Bearer %s", s->token);
        if (!auth || strcmp(auth, want) != 0) {
            status = 401;
            body = as__status(401, "Unauthorized", NULL, NULL, "Unauthorized");
            verb = "unauthorized";
            goto respond;
        }
    }

    /* latency (every API request) */
    pthread_mutex_lock(&s->mu);
    unsigned lat = s->latency_ms;
    pthread_mutex_unlock(&s->mu);
    if (lat)
        usleep((useconds_t)lat * 1000);

    /* non-resource paths */
    if (strcmp(url, "/version") == 0 || strcmp(url, "/version/") == 0) {
        verb = "version";
        int major = 1, minor = 31, patch = 0;
        sscanf(s->server_version, "%d.%d.%d", &major, &minor, &patch);
        char mj[8], mn[8], gv[32];
        snprintf(mj, sizeof(mj), "%d", major);
        snprintf(mn, sizeof(mn), "%d", minor);
        snprintf(gv, sizeof(gv), "v%d.%d.%d", major, minor, patch);
        body = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "major", mj, "minor", mn,
                         "gitVersion", gv, "gitCommit",
                         "0000000000000000000000000000000000000000", "gitTreeState", "clean",
                         "buildDate", "2024-01-01T00:00:00Z", "goVersion", "go1.22.0",
                         "compiler", "gc", "platform", "linux/amd64");
        status = 200;
        goto respond;
    }
    if (strcmp(url, "/healthz") == 0 || strcmp(url, "/livez") == 0 ||
        strcmp(url, "/readyz") == 0) {
        verb = "health";
        raw = strdup("ok");
        raw_len = 2;
        ctype = "text/plain; charset=utf-8";
        status = 200;
        goto respond;
    }
    if (nseg >= 1 && strcmp(segs[0], "openapi") == 0) {
        verb = "openapi";
        pthread_mutex_lock(&s->mu);
        if (nseg == 2 && strcmp(segs[1], "v2") == 0) {
            status = 200;
            if (accept && strstr(accept, "protobuf")) {
                char ver[64];
                snprintf(ver, sizeof(ver), "v%s", s->server_version);
                raw = openapi_v2_proto(ver, &raw_len);
                ctype = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
            } else {
                char ver[64];
                snprintf(ver, sizeof(ver), "v%s", s->server_version);
                body = json_pack("{s:s,s:{s:s,s:s},s:{},s:{}}", "swagger", "2.0", "info",
                                 "title", "Kubernetes", "version", ver, "paths", "definitions");
            }
        } else if (nseg == 2 && strcmp(segs[1], "v3") == 0) {
            status = 200;
            body = openapi_v3_root(s);
        } else if (nseg >= 4 && strcmp(segs[1], "v3") == 0) {
            if (strcmp(segs[2], "api") == 0 && nseg == 4)
                body = openapi_v3_gv(s, "", segs[3]);
            else if (strcmp(segs[2], "apis") == 0 && nseg == 5)
                body = openapi_v3_gv(s, segs[3], segs[4]);
            status = body ? 200 : 404;
        }
        pthread_mutex_unlock(&s->mu);
        if (status == 404)
            body = as__status(404, "NotFound", NULL, NULL, "the server could not find the requested resource");
        goto respond;
    }
    if (nseg == 0 || (strcmp(segs[0], "api") != 0 && strcmp(segs[0], "apis") != 0)) {
        body = as__status(404, "NotFound", NULL, NULL,
                          "the server could not find the requested resource");
        goto respond;
    }

    /* discovery */
    bool core = strcmp(segs[0], "api") == 0;
    size_t gvlen = core ? 2 : 3;
    if (nseg < gvlen) {
        verb = "discovery";
        const char *agg = aggregated_wanted(accept);
        pthread_mutex_lock(&s->mu);
        if (nseg == 1 && agg) {
            char av[64], ct[200];
            snprintf(av, sizeof(av), "apidiscovery.k8s.io/%s", agg);
            snprintf(ct, sizeof(ct), "application/json;g=apidiscovery.k8s.io;v=%s;as=APIGroupDiscoveryList", agg);
            json_t *items = json_array();
            if (core) {
                json_array_append_new(items, aggregated_group(s, ""));
            } else {
                json_t *gs = group_names(s);
                size_t i;
                json_t *g;
                json_array_foreach(gs, i, g) json_array_append_new(items, aggregated_group(s, json_string_value(g)));
                json_decref(gs);
            }
            body = json_pack("{s:s,s:s,s:{},s:o}", "kind", "APIGroupDiscoveryList", "apiVersion",
                             av, "metadata", "items", items);
            status = 200;
            pthread_mutex_unlock(&s->mu);
            ret = send_json(c, status, ct, body, NULL, 0);
            body = NULL;
            pthread_mutex_lock(&s->mu);
            as__log_add(s, ua, fm, verb, method, url, query, status);
            pthread_mutex_unlock(&s->mu);
            free(query);
            return ret;
        }
        if (nseg == 1 && core) {
            char addr[80];
            snprintf(addr, sizeof(addr), "%s:%u", s->bind_addr, s->port);
            body = json_pack("{s:s,s:[s],s:[{s:s,s:s}]}", "kind", "APIVersions", "versions", "v1",
                             "serverAddressByClientCIDRs", "clientCIDR", "0.0.0.0/0",
                             "serverAddress", addr);
            status = 200;
        } else if (nseg == 1) {
            json_t *gs = group_names(s), *groups = json_array();
            size_t i;
            json_t *g;
            json_array_foreach(gs, i, g) json_array_append_new(groups, api_group(s, json_string_value(g)));
            json_decref(gs);
            body = json_pack("{s:s,s:s,s:o}", "kind", "APIGroupList", "apiVersion", "v1",
                             "groups", groups);
            status = 200;
        } else if (nseg == 2 && !core) {
            body = api_group(s, segs[1]);
            if (body) {
                json_object_set_new(body, "kind", json_string("APIGroup"));
                json_object_set_new(body, "apiVersion", json_string("v1"));
                status = 200;
            }
        }
        pthread_mutex_unlock(&s->mu);
        if (!body)
            body = as__status(404, "NotFound", NULL, NULL,
                              "the server could not find the requested resource");
        goto respond;
    }
    const char *group = core ? "" : segs[1];
    const char *version = core ? segs[1] : segs[2];
    char **rest = segs + gvlen;
    size_t nrest = nseg - gvlen;
    if (nrest == 0) {
        verb = "discovery";
        pthread_mutex_lock(&s->mu);
        body = resource_list(s, group, version);
        pthread_mutex_unlock(&s->mu);
        status = body ? 200 : 404;
        if (!body)
            body = as__status(404, "NotFound", NULL, NULL,
                              "the server could not find the requested resource");
        goto respond;
    }
    bool legacy_watch = false;
    if (strcmp(rest[0], "watch") == 0) {
        legacy_watch = true;
        rest++;
        nrest--;
    }
    const char *ns = NULL;
    if (nrest >= 3 && strcmp(rest[0], "namespaces") == 0 && strcmp(rest[2], "status") != 0 &&
        strcmp(rest[2], "finalize") != 0) {
        ns = rest[1];
        rest += 2;
        nrest -= 2;
    }
    if (nrest == 0 || nrest > 3) {
        body = as__status(404, "NotFound", NULL, NULL,
                          "the server could not find the requested resource");
        goto respond;
    }
    as_req_t rq;
    memset(&rq, 0, sizeof(rq));
    rq.ns = ns;
    rq.name = nrest >= 2 ? rest[1] : NULL;
    rq.sub = nrest == 3 ? rest[2] : NULL;
    rq.body = rc->body;
    rq.body_len = rc->len;
    rq.ctype = hdr(c, "Content-Type");
    rq.user_agent = ua;
    rq.field_manager = fm;
    rq.force = arg_true(c, "force");
    rq.dry_run = arg(c, "dryRun") && strcmp(arg(c, "dryRun"), "All") == 0;
    rq.field_validation = arg(c, "fieldValidation");
    rq.label_sel = arg(c, "labelSelector");
    rq.field_sel = arg(c, "fieldSelector");
    rq.rv = arg(c, "resourceVersion");
    rq.rv_match = arg(c, "resourceVersionMatch");
    rq.cont = arg(c, "continue");
    rq.limit = arg(c, "limit") ? atol(arg(c, "limit")) : 0;
    rq.include_object = arg(c, "includeObject");
    rq.accept = accept_kind(accept, rq.name == NULL, &ctype);
    bool is_watch = legacy_watch || arg_true(c, "watch");
    if (strcmp(method, "GET") == 0)
        verb = rq.name ? (is_watch ? "watch" : "get") : (is_watch ? "watch" : "list");
    else if (strcmp(method, "POST") == 0)
        verb = rq.name ? "unsupported" : "create";
    else if (strcmp(method, "PUT") == 0)
        verb = rq.name ? "update" : "unsupported";
    else if (strcmp(method, "PATCH") == 0)
        verb = rq.name ? "patch" : "unsupported";
    else if (strcmp(method, "DELETE") == 0)
        verb = rq.name ? "delete" : "deletecollection";
    rq.verb = verb;
    if (rq.name && is_watch) {
        /* watch of one object: a field selector on its name */
        static _Thread_local char fsel[600];
        snprintf(fsel, sizeof(fsel), "metadata.name=%s", rq.name);
        rq.field_sel = fsel;
        rq.name = NULL;
    }

    /* faults */
    pthread_mutex_lock(&s->mu);
    if (s->throttle_count > 0 && fault_match(s->throttle_match, verb, url)) {
        s->throttle_count--;
        retry_after = (int)s->throttle_retry_after;
        status = 429;
        body = as__status(429, "TooManyRequests", NULL, NULL,
                          "Too many requests, please try again later.");
        json_object_set_new(body, "details", json_pack("{s:i}", "retryAfterSeconds", retry_after));
    } else if ((s->fail_count > 0 || s->fail_fraction > 0) &&
               fault_match(s->fail_match, verb, url)) {
        bool fail = false;
        if (s->fail_count > 0) {
            s->fail_count--;
            fail = true;
        } else {
            fail = (double)rand() / RAND_MAX < s->fail_fraction;
        }
        if (fail) {
            status = s->fail_status ? s->fail_status : 500;
            const char *reason = status == 503 ? "ServiceUnavailable"
                                 : status == 504 ? "Timeout"
                                                 : "InternalError";
            body = as__status(status, reason, NULL, NULL,
                              "Internal error occurred: injected fault (bd-apiserver)");
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (body) {
        ctype = "application/json";
        goto respond;
    }

    if (rc->too_big) {
        status = 413;
        body = as__status(413, "RequestEntityTooLarge", NULL, NULL,
                          "Request entity too large: limit is %zu", s->opts.max_body);
        ctype = "application/json";
        goto respond;
    }

    pthread_mutex_lock(&s->mu);
    rq.res = as__res_find(s, group, version, rest[0]);
    bool bad_scope = rq.res && ((rq.res->namespaced && !ns && rq.name) ||
                                (!rq.res->namespaced && ns));
    if (!rq.res || bad_scope || strcmp(verb, "unsupported") == 0) {
        pthread_mutex_unlock(&s->mu);
        status = rq.res && !bad_scope ? 405 : 404;
        body = status == 405 ? as__status(405, "MethodNotAllowed", NULL, NULL,
                                          "the server does not allow this method on the "
                                          "requested resource")
                             : as__status(404, "NotFound", NULL, NULL,
                                          "the server could not find the requested resource");
        ctype = "application/json";
        goto respond;
    }
    if (strcmp(verb, "watch") == 0) {
        json_t *err_body = NULL;
        int wst;
        watch_t *w = watch_start(s, c, &rq, &wst, &err_body);
        as__log_add(s, ua, fm, verb, method, url, query, wst);
        pthread_mutex_unlock(&s->mu);
        free(query);
        if (!w)
            return send_json(c, wst, NULL, err_body, NULL, 0);
        struct MHD_Response *r =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 32 * 1024, watch_read, w, watch_free);
        if (!r) {
            watch_free(w);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", ctype);
        MHD_add_response_header(r, "Cache-Control", "no-cache, private");
        ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    as_resp_t out = {0};
    as__store_handle(s, &rq, &out);
    status = out.status;
    body = out.body;
    warnings = out.warnings;
    if (status >= 400 || json_is_null(body))
        ctype = "application/json";
    as__log_add(s, ua, fm, verb, method, url, query, status);
    pthread_mutex_unlock(&s->mu);
    free(query);
    ret = send_json(c, status, ctype, body, warnings, 0);
    json_decref(warnings);
    return ret;

respond:
    pthread_mutex_lock(&s->mu);
    as__log_add(s, ua, fm, verb, method, url, query, status);
    pthread_mutex_unlock(&s->mu);
    free(query);
    if (raw)
        return send_text(c, status, ctype, raw, raw_len, NULL, 0);
    return send_json(c, status, ctype, body, NULL, retry_after);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version,
                                 const char *upload, size_t *upload_size, void **con_cls)
{
    as_server_t *s = cls;
    reqctx_t *rc = *con_cls;
    if (!rc) {
        rc = calloc(1, sizeof(*rc));
        if (!rc)
            return MHD_NO;
        *con_cls = rc;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!rc->too_big) {
            if (rc->len + *upload_size > s->opts.max_body) {
                rc->too_big = true;
                free(rc->body);
                rc->body = NULL;
                rc->len = rc->cap = 0;
            } else {
                if (rc->len + *upload_size + 1 > rc->cap) {
                    size_t cap = (rc->len + *upload_size + 1) * 2;
                    if (cap > s->opts.max_body + 1)
                        cap = s->opts.max_body + 1;
                    char *b = realloc(rc->body, cap);
                    if (!b)
                        return MHD_NO;
                    rc->body = b;
                    rc->cap = cap;
                }
                memcpy(rc->body + rc->len, upload, *upload_size);
                rc->len += *upload_size;
                rc->body[rc->len] = '\0';
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (strncmp(url, "/__double/", 10) == 0)
        return control(s, c, url, method);
    return handle(s, c, url, method, rc);
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    reqctx_t *rc = *con_cls;
    if (rc) {
        free(rc->body);
        free(rc);
        *con_cls = NULL;
    }
}

/* libmicrohttpd's own messages (e.g. "Closing connection" after a dropped watch) are
 * debug noise for a test double. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    if (bd_log_get_level() > BD_LOG_DEBUG)
        return;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    bd_debug("bd-apiserver: libmicrohttpd: %s", msg);
}

/* ---- lifecycle ---------------------------------------------------------------------- */

void bd_apiserver_opts_init(bd_apiserver_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->bind_addr = "127.0.0.1";
    o->history = 1000;
    o->bookmark_ms = 60000;
    o->max_watch_s = 1800;
    o->max_body = 3 * 1024 * 1024;
    o->server_version = "1.31.0";
}

static void server_free(as_server_t *s)
{
    if (!s)
        return;
    as__store_deinit(s);
    log_clear_locked(s);
    free(s->log);
    free(s->token);
    free(s->tls_cert);
    free(s->tls_key);
    free(s->bind_addr);
    free(s->server_version);
    free(s->fail_match);
    free(s->throttle_match);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int bd_apiserver_start(const bd_apiserver_opts_t *opts, bd_apiserver_t **out, bd_err_t *err)
{
    *out = NULL;
    bd_apiserver_opts_t o;
    bd_apiserver_opts_init(&o);
    if (opts) {
        o = *opts;
        if (!o.bind_addr)
            o.bind_addr = "127.0.0.1";
        if (!o.history)
            o.history = 1000;
        if (!o.bookmark_ms)
            o.bookmark_ms = 60000;
        if (!o.max_watch_s)
            o.max_watch_s = 1800;
        if (!o.max_body)
            o.max_body = 3 * 1024 * 1024;
        if (!o.server_version)
            o.server_version = "1.31.0";
    }
    if ((o.tls_cert_pem == NULL) != (o.tls_key_pem == NULL))
        return bd_err_set(err, BD_EINVAL, "TLS needs both a certificate and a key");
    as_server_t *s = calloc(1, sizeof(*s));
    if (!s)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    s->opts = o;
    s->bind_addr = strdup(o.bind_addr);
    s->server_version = strdup(o.server_version);
    s->token = o.token ? strdup(o.token) : NULL;
    s->tls_cert = o.tls_cert_pem ? strdup(o.tls_cert_pem) : NULL;
    s->tls_key = o.tls_key_pem ? strdup(o.tls_key_pem) : NULL;
    s->opts.bind_addr = s->bind_addr;
    s->opts.server_version = s->server_version;
    s->opts.token = s->token;
    s->opts.tls_cert_pem = s->tls_cert;
    s->opts.tls_key_pem = s->tls_key;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int rc = as__store_init(s);
    if (rc != 0) {
        server_free(s);
        return bd_err_set(err, rc, "cannot initialise the store");
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(o.port);
    if (inet_pton(AF_INET, s->bind_addr, &sa.sin_addr) != 1) {
        server_free(s);
        return bd_err_set(err, BD_EINVAL, "bad bind address %s", o.bind_addr);
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (s->tls_cert) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            server_free(s);
            return bd_err_set(err, BD_EINVAL, "libmicrohttpd was built without TLS");
        }
        flags |= MHD_USE_TLS;
        s->mhd = MHD_start_daemon(flags, o.port, NULL, NULL, access_cb, s,
                                  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                  MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
                                  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                                  MHD_OPTION_HTTPS_MEM_KEY, s->tls_key,
                                  MHD_OPTION_HTTPS_MEM_CERT, s->tls_cert, MHD_OPTION_END);
    } else {
        s->mhd = MHD_start_daemon(flags, o.port, NULL, NULL, access_cb, s,
                                  MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                  MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
                                  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
                                  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    }
    if (!s->mhd) {
        int e = errno;
        server_free(s);
        return bd_err_set(err, BD_EIO, "cannot listen on %s:%u: %s", o.bind_addr,
                          (unsigned)o.port, strerror(e));
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : o.port;
    snprintf(s->url, sizeof(s->url), "%s://%s:%u", s->tls_cert ? "https" : "http", s->bind_addr,
             (unsigned)s->port);
    *out = s;
    return 0;
}

void bd_apiserver_stop(bd_apiserver_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    MHD_stop_daemon(s->mhd);
    server_free(s);
}

unsigned short bd_apiserver_port(const bd_apiserver_t *s)
{
    return s->port;
}

const char *bd_apiserver_url(const bd_apiserver_t *s)
{
    return s->url;
}

int bd_apiserver_create(bd_apiserver_t *s, const char *json, bd_err_t *err)
{
    char msg[512] = "";
    pthread_mutex_lock(&s->mu);
    int rc = as__create_json(s, json, msg, sizeof(msg));
    pthread_mutex_unlock(&s->mu);
    if (rc != 0)
        bd_err_set(err, rc, "%s", msg);
    return rc;
}

char *bd_apiserver_get(bd_apiserver_t *s, const char *group, const char *resource,
                       const char *ns, const char *name)
{
    char *out = NULL;
    pthread_mutex_lock(&s->mu);
    as_res_t *r = as__res_lookup_any(s, group ? group : "", resource);
    if (r) {
        char key[600];
        snprintf(key, sizeof(key), "%s/%s", r->namespaced && ns ? ns : "", name);
        bd_hmap_t *m = as__coll(s, r->coll);
        json_t *o = m ? bd_hmap_get(m, key) : NULL;
        if (o)
            out = json_dumps(o, JSON_COMPACT);
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}
