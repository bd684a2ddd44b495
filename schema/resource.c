#include "resource.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name, *plural;
} kinds[RES_KIND_COUNT] = {
    [RES_BIND9CLUSTER] = {"Bind9Cluster", "bind9clusters"},
    [RES_BIND9INSTANCE] = {"Bind9Instance", "bind9instances"},
    [RES_DNSZONE] = {"DNSZone", "dnszones"},
    [RES_A] = {"ARecord", "arecords"},
    [RES_AAAA] = {"AAAARecord", "aaaarecords"},
    [RES_CNAME] = {"CNAMERecord", "cnamerecords"},
    [RES_MX] = {"MXRecord", "mxrecords"},
    [RES_TXT] = {"TXTRecord", "txtrecords"},
    [RES_NS] = {"NSRecord", "nsrecords"},
    [RES_SRV] = {"SRVRecord", "srvrecords"},
    [RES_CAA] = {"CAARecord", "caarecords"},
};

const char *res_kind_name(res_kind_t kind)
{
    return (unsigned)kind < RES_KIND_COUNT ? kinds[kind].name : NULL;
}

const char *res_kind_plural(res_kind_t kind)
{
    return (unsigned)kind < RES_KIND_COUNT ? kinds[kind].plural : NULL;
}

int res_kind_from_name(const char *name, res_kind_t *out)
{
    for (int k = 0; name && k < RES_KIND_COUNT; k++) {
        if (strcmp(kinds[k].name, name) == 0) {
            *out = (res_kind_t)k;
            return BD_OK;
        }
    }
    return BD_ENOTFOUND;
}

bool res_kind_is_record(res_kind_t kind) { return kind >= RES_A && kind < RES_KIND_COUNT; }

/* ---- string vectors --------------------------------------------------------------- */

void res_strv_deinit(res_strv_t *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

static int strv_push(res_strv_t *v, const char *s, size_t len)
{
    char **nv = realloc(v->v, (v->n + 1) * sizeof(*nv));
    if (nv == NULL)
        return BD_ENOMEM;
    v->v = nv;
    char *copy = strndup(s, len);
    if (copy == NULL)
        return BD_ENOMEM;
    v->v[v->n++] = copy;
    return BD_OK;
}

int res_split_txt(const char *s, res_strv_t *out)
{
    size_t len = strlen(s);
    if (len == 0)
        return strv_push(out, "", 0);
    while (len > 0) {
        size_t n = len > 255 ? 255 : len;
        /* Back off to the start of a UTF-8 sequence so no chunk splits a character. */
        if (n < len)
            while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
                n--;
        if (n == 0)
            n = len > 255 ? 255 : len; /* not UTF-8 after all: split on octets */
        int rc = strv_push(out, s, n);
        if (rc != BD_OK)
            return rc;
        s += n;
        len -= n;
    }
    return BD_OK;
}

/* ---- a sticky reader: after the first problem every call is a no-op --------------- */

typedef struct {
    bd_err_t *err;
    int rc;
} rd_t;

__attribute__((format(printf, 3, 4))) static void rd_fail(rd_t *r, int rc, const char *fmt, ...)
{
    if (r->rc != BD_OK)
        return;
    r->rc = rc;
    if (r->err == NULL)
        return;
    r->err->code = rc;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err->msg, sizeof(r->err->msg), fmt, ap);
    va_end(ap);
}

static char *rd_str(rd_t *r, const json_t *obj, const char *field, const char *path, bool required)
{
    if (r->rc != BD_OK)
        return NULL;
    const json_t *v = json_object_get(obj, field);
    if (v == NULL || json_is_null(v)) {
        if (required)
            rd_fail(r, BD_EINVAL, "%s.%s: required field is missing", path, field);
        return NULL;
    }
    if (!json_is_string(v)) {
        rd_fail(r, BD_EINVAL, "%s.%s: must be a string", path, field);
        return NULL;
    }
    char *s = strdup(json_string_value(v));
    if (s == NULL)
        rd_fail(r, BD_ENOMEM, "out of memory");
    return s;
}

static int64_t rd_int(rd_t *r, const json_t *obj, const char *field, const char *path, int64_t absent,
                      int64_t min, int64_t max)
{
    if (r->rc != BD_OK)
        return absent;
    const json_t *v = json_object_get(obj, field);
    if (v == NULL || json_is_null(v))
        return absent;
    if (!json_is_integer(v)) {
        rd_fail(r, BD_EINVAL, "%s.%s: must be an integer", path, field);
        return absent;
    }
    json_int_t x = json_integer_value(v);
    if (x < min || x > max) {
        rd_fail(r, BD_EINVAL, "%s.%s: %lld is out of range %lld..%lld", path, field, (long long)x,
                (long long)min, (long long)max);
        return absent;
    }
    return x;
}

static res_tri_t rd_bool(rd_t *r, const json_t *obj, const char *field, const char *path)
{
    const json_t *v = json_object_get(obj, field);
    if (r->rc != BD_OK || v == NULL || json_is_null(v))
        return RES_TRI_UNSET;
    if (!json_is_boolean(v)) {
        rd_fail(r, BD_EINVAL, "%s.%s: must be a boolean", path, field);
        return RES_TRI_UNSET;
    }
    return json_is_true(v) ? RES_TRI_TRUE : RES_TRI_FALSE;
}

static void rd_strv(rd_t *r, const json_t *obj, const char *field, const char *path, res_strv_t *out)
{
    const json_t *arr = json_object_get(obj, field);
    if (r->rc != BD_OK || arr == NULL || json_is_null(arr))
        return;
    if (!json_is_array(arr)) {
        rd_fail(r, BD_EINVAL, "%s.%s: must be a list of strings", path, field);
        return;
    }
    size_t i;
    const json_t *item;
    json_array_foreach(arr, i, item) {
        if (!json_is_string(item)) {
            rd_fail(r, BD_EINVAL, "%s.%s[%zu]: must be a string", path, field, i);
            return;
        }
        if (strv_push(out, json_string_value(item), json_string_length(item)) != BD_OK) {
            rd_fail(r, BD_ENOMEM, "out of memory");
            return;
        }
    }
}

static json_t *rd_json(rd_t *r, const json_t *obj, const char *field)
{
    const json_t *v = json_object_get(obj, field);
    return (r->rc != BD_OK || v == NULL || json_is_null(v)) ? NULL : json_incref((json_t *)v);
}

/* Dotted decimal of a binary IPv4 address, as inet_ntop writes it. */
static void ipv4_text(char out[16], const unsigned char b[4])
{
    char *o = out;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100)
            *o++ = (char)('0' + v / 100);
        if (v >= 10)
            *o++ = (char)('0' + v / 10 % 10);
        *o++ = (char)('0' + v % 10);
        *o++ = i < 3 ? '.' : '\0';
    }
}

/* An address in canonical text form (inet_ntop), so "::0:1" and "::1" are one RR. */
static void rd_addrs(rd_t *r, const json_t *spec, const char *field, int af, res_strv_t *out)
{
    res_strv_t raw = {0};
    rd_strv(r, spec, field, "spec", &raw);
    if (r->rc == BD_OK && raw.n == 0)
        rd_fail(r, BD_EINVAL, "spec.%s: must have at least 1 item", field);
    for (size_t i = 0; r->rc == BD_OK && i < raw.n; i++) {
        unsigned char bin[16];
        char text[INET6_ADDRSTRLEN];
        if (inet_pton(af, raw.v[i], bin) != 1) {
            rd_fail(r, BD_EINVAL, "spec.%s[%zu]: \"%s\" is not an %s address", field, i, raw.v[i],
                    af == AF_INET ? "IPv4" : "IPv6");
            break;
        }
        if (af == AF_INET) /* inet_ntop formats IPv4 with sprintf: a tenth of reading a record */
            ipv4_text(text, bin);
        else
            inet_ntop(af, bin, text, sizeof(text));
        if (strv_push(out, text, strlen(text)) != BD_OK)
            rd_fail(r, BD_ENOMEM, "out of memory");
    }
    res_strv_deinit(&raw);
}

static void rd_config(rd_t *r, const json_t *cfg, const char *path, res_config_t *out)
{
    out->recursion = rd_bool(r, cfg, "recursion", path);
    rd_strv(r, cfg, "allowQuery", path, &out->allow_query);
    rd_strv(r, cfg, "allowTransfer", path, &out->allow_transfer);
    rd_strv(r, cfg, "forwarders", path, &out->forwarders);
    rd_strv(r, cfg, "listenOn", path, &out->listen_on);
    rd_strv(r, cfg, "listenOnV6", path, &out->listen_on_v6);
    char dpath[64];
    snprintf(dpath, sizeof(dpath), "%s.dnssec", path);
    out->dnssec_validation = rd_bool(r, json_object_get(cfg, "dnssec"), "validation", dpath);
}

static void config_deinit(res_config_t *c)
{
    res_strv_deinit(&c->allow_query);
    res_strv_deinit(&c->allow_transfer);
    res_strv_deinit(&c->forwarders);
    res_strv_deinit(&c->listen_on);
    res_strv_deinit(&c->listen_on_v6);
}

static void rd_labels(rd_t *r, const json_t *obj, const char *path, sel_labels_t *out)
{
    if (r->rc != BD_OK)
        return;
    bd_err_t e;
    int rc = sel_labels_from_json(obj, out, &e);
    if (rc != BD_OK)
        rd_fail(r, rc, "%s: %s", path, e.msg);
}

static void rd_selectors(rd_t *r, const json_t *spec, const char *field, sel_t **out, size_t *n)
{
    const json_t *arr = json_object_get(spec, field);
    if (r->rc != BD_OK || arr == NULL || json_is_null(arr))
        return;
    if (!json_is_array(arr)) {
        rd_fail(r, BD_EINVAL, "spec.%s: must be a list", field);
        return;
    }
    *out = calloc(json_array_size(arr) + 1, sizeof(**out));
    if (*out == NULL) {
        rd_fail(r, BD_ENOMEM, "out of memory");
        return;
    }
    size_t i;
    const json_t *item;
    json_array_foreach(arr, i, item) {
        bd_err_t e;
        int rc = sel_from_json(json_object_get(item, "selector"), &(*out)[i], &e);
        if (rc != BD_OK) {
            rd_fail(r, rc, "spec.%s[%zu].%s", field, i, e.msg);
            return;
        }
        (*n)++;
    }
}

/* ---- kinds ---------------------------------------------------------------------- */

static void read_instance(rd_t *r, res_t *res, const json_t *spec)
{
    res_instance_t *in = &res->u.instance;
    char *role = rd_str(r, spec, "role", "spec", false);
    const char *label = sel_labels_get(&res->meta.labels, "dns-role");
    const char *chosen = role ? role : label;
    in->role_from = role ? RES_ROLE_FROM_SPEC : label ? RES_ROLE_FROM_LABEL : RES_ROLE_FROM_DEFAULT;
    if (chosen == NULL || strcmp(chosen, "primary") == 0)
        in->role = RES_ROLE_PRIMARY;
    else if (strcmp(chosen, "secondary") == 0)
        in->role = RES_ROLE_SECONDARY;
    else if (role)
        rd_fail(r, BD_EINVAL, "spec.role: \"%s\" is not one of \"primary\", \"secondary\"", role);
    else
        rd_fail(r, BD_EINVAL, "metadata.labels.dns-role: \"%s\" is not one of \"primary\", \"secondary\"",
                label);
    free(role);
    in->replicas = (int32_t)rd_int(r, spec, "replicas", "spec", 1, 0, INT32_MAX);
    in->cluster_ref = rd_str(r, spec, "clusterRef", "spec", false);
    in->version = rd_str(r, spec, "version", "spec", false);
    if (r->rc == BD_OK && in->version == NULL && (in->version = strdup("9.18")) == NULL)
        rd_fail(r, BD_ENOMEM, "out of memory");
    in->image = rd_str(r, spec, "image", "spec", false);
    rd_config(r, json_object_get(spec, "config"), "spec.config", &in->config);
    const json_t *key = json_object_get(spec, "rndcKey");
    in->rndc_algorithm = rd_str(r, key, "algorithm", "spec.rndcKey", false);
    if (r->rc == BD_OK && in->rndc_algorithm == NULL && (in->rndc_algorithm = strdup("hmac-sha256")) == NULL)
        rd_fail(r, BD_ENOMEM, "out of memory");
    const json_t *sref = json_object_get(key, "secretRef");
    in->rndc_secret_name = rd_str(r, sref, "name", "spec.rndcKey.secretRef", false);
    in->rndc_secret_key = rd_str(r, sref, "key", "spec.rndcKey.secretRef", false);
    const json_t *pdb = json_object_get(spec, "podDisruptionBudget");
    static const char *const pdb_fields[] = {"minAvailable", "maxUnavailable"};
    char **pdb_out[] = {&in->pdb_min_available, &in->pdb_max_unavailable};
    for (int i = 0; i < 2 && r->rc == BD_OK; i++) {
        const json_t *v = json_object_get(pdb, pdb_fields[i]);
        char buf[32];
        if (v == NULL || json_is_null(v))
            continue;
        if (json_is_integer(v))
            snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
        else if (json_is_string(v))
            snprintf(buf, sizeof(buf), "%s", json_string_value(v));
        else {
            rd_fail(r, BD_EINVAL, "spec.podDisruptionBudget.%s: must be an integer or a percentage",
                    pdb_fields[i]);
            break;
        }
        if ((*pdb_out[i] = strdup(buf)) == NULL)
            rd_fail(r, BD_ENOMEM, "out of memory");
    }
    const json_t *storage = json_object_get(spec, "storage");
    in->storage = json_object_get(storage, "persistentVolumeClaim") ? RES_STORAGE_PVC
                  : json_object_get(storage, "emptyDir")            ? RES_STORAGE_EMPTYDIR
                                                                    : RES_STORAGE_NONE;
    in->affinity = rd_json(r, spec, "affinity");
    in->topology_spread = rd_json(r, spec, "topologySpreadConstraints");
    in->node_selector = rd_json(r, spec, "nodeSelector");
    in->tolerations = rd_json(r, spec, "tolerations");
    in->resources = rd_json(r, spec, "resources");
    in->storage_spec = rd_json(r, spec, "storage");
}

static void read_cluster_role(rd_t *r, const json_t *obj, const char *path, res_cluster_role_t *out)
{
    out->replicas = (int32_t)rd_int(r, obj, "replicas", path, -1, 0, INT32_MAX);
    char lpath[64];
    snprintf(lpath, sizeof(lpath), "%s.labels", path);
    rd_labels(r, json_object_get(obj, "labels"), lpath, &out->labels);
    rd_strv(r, obj, "allowTransfer", path, &out->allow_transfer);
}

static void read_cluster(rd_t *r, res_t *res, const json_t *spec)
{
    res_cluster_t *c = &res->u.cluster;
    c->version = rd_str(r, spec, "version", "spec", false);
    c->image = rd_str(r, spec, "image", "spec", false);
    rd_config(r, json_object_get(spec, "global"), "spec.global", &c->global);
    read_cluster_role(r, json_object_get(spec, "primary"), "spec.primary", &c->primary);
    read_cluster_role(r, json_object_get(spec, "secondary"), "spec.secondary", &c->secondary);
}

/* status.serial: written by bindy, not by users, so a malformed value is ignored (-1),
 * never an error. */
static int64_t status_serial(const json_t *status)
{
    const json_t *pub = json_object_get(status, "serial");
    return json_is_integer(pub) && json_integer_value(pub) >= 0 && json_integer_value(pub) <= UINT32_MAX
               ? json_integer_value(pub)
               : -1;
}

static void read_zone(rd_t *r, res_t *res, const json_t *spec, const json_t *status)
{
    res_zone_t *z = &res->u.zone;
    z->zone_name = rd_str(r, spec, "zoneName", "spec", true);
    if (z->zone_name != NULL) {
        size_t n = strlen(z->zone_name);
        while (n > 1 && z->zone_name[n - 1] == '.')
            z->zone_name[--n] = '\0';
        for (char *p = z->zone_name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    z->cluster_ref = rd_str(r, spec, "clusterRef", "spec", false);
    const json_t *soa = json_object_get(spec, "soaRecord");
    if (r->rc == BD_OK && !json_is_object(soa))
        rd_fail(r, BD_EINVAL, "spec.soaRecord: required field is missing");
    z->primary_ns = rd_str(r, soa, "primaryNs", "spec.soaRecord", true);
    z->admin_email = rd_str(r, soa, "adminEmail", "spec.soaRecord", true);
    z->serial = rd_int(r, soa, "serial", "spec.soaRecord", -1, 0, UINT32_MAX);
    z->status_serial = status_serial(status);
    z->refresh = (int32_t)rd_int(r, soa, "refresh", "spec.soaRecord", 3600, 0, INT32_MAX);
    z->retry = (int32_t)rd_int(r, soa, "retry", "spec.soaRecord", 600, 0, INT32_MAX);
    z->expire = (int32_t)rd_int(r, soa, "expire", "spec.soaRecord", 604800, 0, INT32_MAX);
    z->negative_ttl = (int32_t)rd_int(r, soa, "negativeTtl", "spec.soaRecord", 86400, 0, INT32_MAX);
    z->ttl = (int32_t)rd_int(r, spec, "ttl", "spec", 3600, 0, INT32_MAX);

    const json_t *nss = json_object_get(spec, "nameServers");
    size_t n = json_array_size(nss);
    if (r->rc == BD_OK && n > 0) {
        z->name_servers = calloc(n, sizeof(*z->name_servers));
        if (z->name_servers == NULL)
            rd_fail(r, BD_ENOMEM, "out of memory");
    }
    for (size_t i = 0; r->rc == BD_OK && i < n; i++) {
        const json_t *ns = json_array_get(nss, i);
        char path[48];
        snprintf(path, sizeof(path), "spec.nameServers[%zu]", i);
        res_ns_t *out = &z->name_servers[i];
        z->n_name_servers++;
        out->hostname = rd_str(r, ns, "hostname", path, true);
        out->ipv4 = rd_str(r, ns, "ipv4Address", path, false);
        out->ipv6 = rd_str(r, ns, "ipv6Address", path, false);
    }
    rd_selectors(r, spec, "recordsFrom", &z->records_from, &z->n_records_from);
    rd_selectors(r, spec, "bind9InstancesFrom", &z->instances_from, &z->n_instances_from);
}

static void read_record(rd_t *r, res_t *res, const json_t *spec, const json_t *status)
{
    res_record_t *rec = &res->u.record;
    rec->name = rd_str(r, spec, "name", "spec", true);
    rec->status_serial = status_serial(status);
    const char *zone = json_string_value(json_object_get(status, "zone"));
    if (rec->status_serial >= 0 && zone != NULL && (rec->status_zone = strdup(zone)) == NULL)
        rd_fail(r, BD_ENOMEM, "out of memory");
    rec->ttl = rd_int(r, spec, "ttl", "spec", -1, 0, INT32_MAX);
    switch (res->kind) {
    case RES_A:
        rd_addrs(r, spec, "ipv4Addresses", AF_INET, &rec->u.addrs);
        break;
    case RES_AAAA:
        rd_addrs(r, spec, "ipv6Addresses", AF_INET6, &rec->u.addrs);
        break;
    case RES_CNAME:
        rec->u.target = rd_str(r, spec, "target", "spec", true);
        break;
    case RES_NS:
        rec->u.target = rd_str(r, spec, "nameserver", "spec", true);
        break;
    case RES_MX:
        rec->u.mx.priority = (uint16_t)rd_int(r, spec, "priority", "spec", 0, 0, 65535);
        rec->u.mx.exchange = rd_str(r, spec, "mailServer", "spec", true);
        break;
    case RES_TXT: {
        res_strv_t texts = {0};
        rd_strv(r, spec, "text", "spec", &texts);
        if (r->rc == BD_OK && texts.n == 0)
            rd_fail(r, BD_EINVAL, "spec.text: must have at least 1 item");
        if (r->rc == BD_OK && (rec->u.txt.strings = calloc(texts.n, sizeof(res_strv_t))) == NULL)
            rd_fail(r, BD_ENOMEM, "out of memory");
        for (size_t i = 0; r->rc == BD_OK && i < texts.n; i++) {
            rec->u.txt.n++;
            if (res_split_txt(texts.v[i], &rec->u.txt.strings[i]) != BD_OK)
                rd_fail(r, BD_ENOMEM, "out of memory");
        }
        res_strv_deinit(&texts);
        break;
    }
    case RES_SRV:
        rec->u.srv.priority = (uint16_t)rd_int(r, spec, "priority", "spec", 0, 0, 65535);
        rec->u.srv.weight = (uint16_t)rd_int(r, spec, "weight", "spec", 0, 0, 65535);
        rec->u.srv.port = (uint16_t)rd_int(r, spec, "port", "spec", 0, 0, 65535);
        rec->u.srv.target = rd_str(r, spec, "target", "spec", true);
        break;
    case RES_CAA:
        rec->u.caa.flags = (uint8_t)rd_int(r, spec, "flags", "spec", 0, 0, 255);
        rec->u.caa.tag = rd_str(r, spec, "tag", "spec", true);
        rec->u.caa.value = rd_str(r, spec, "value", "spec", true);
        break;
    default:
        break;
    }
}

int res_from_json(json_t *obj, res_t **out, bd_err_t *err)
{
    *out = NULL;
    res_kind_t kind;
    const char *kname = json_string_value(json_object_get(obj, "kind"));
    if (res_kind_from_name(kname, &kind) != BD_OK)
        return bd_err_set(err, BD_ENOTFOUND, "kind: \"%s\" is not a bindy kind", kname ? kname : "");
    res_t *res = calloc(1, sizeof(*res));
    if (res == NULL)
        return bd_err_set(err, BD_ENOMEM, "out of memory");
    res->kind = kind;

    rd_t r = {err, BD_OK};
    const json_t *meta = json_object_get(obj, "metadata");
    res->meta.name = rd_str(&r, meta, "name", "metadata", true);
    res->meta.ns = rd_str(&r, meta, "namespace", "metadata", false);
    if (r.rc == BD_OK && res->meta.ns == NULL && (res->meta.ns = strdup("default")) == NULL)
        rd_fail(&r, BD_ENOMEM, "out of memory");
    res->meta.uid = rd_str(&r, meta, "uid", "metadata", false);
    res->meta.resource_version = rd_str(&r, meta, "resourceVersion", "metadata", false);
    res->meta.creation_timestamp = rd_str(&r, meta, "creationTimestamp", "metadata", false);
    res->meta.generation = rd_int(&r, meta, "generation", "metadata", 0, 0, INT64_MAX);
    rd_labels(&r, json_object_get(meta, "labels"), "metadata.labels", &res->meta.labels);

    const json_t *spec = json_object_get(obj, "spec");
    if (r.rc == BD_OK && !json_is_object(spec))
        rd_fail(&r, BD_EINVAL, "spec: required field is missing");
    switch (kind) {
    case RES_BIND9CLUSTER:
        read_cluster(&r, res, spec);
        break;
    case RES_BIND9INSTANCE:
        read_instance(&r, res, spec);
        break;
    case RES_DNSZONE:
        read_zone(&r, res, spec, json_object_get(obj, "status"));
        break;
    default:
        read_record(&r, res, spec, json_object_get(obj, "status"));
        break;
    }
    if (r.rc != BD_OK) {
        res_free(res);
        return r.rc;
    }
    *out = res;
    return BD_OK;
}

static void record_deinit(res_kind_t kind, res_record_t *rec)
{
    free(rec->name);
    free(rec->status_zone);
    switch (kind) {
    case RES_A:
    case RES_AAAA:
        res_strv_deinit(&rec->u.addrs);
        break;
    case RES_CNAME:
    case RES_NS:
        free(rec->u.target);
        break;
    case RES_MX:
        free(rec->u.mx.exchange);
        break;
    case RES_TXT:
        for (size_t i = 0; i < rec->u.txt.n; i++)
            res_strv_deinit(&rec->u.txt.strings[i]);
        free(rec->u.txt.strings);
        break;
    case RES_SRV:
        free(rec->u.srv.target);
        break;
    case RES_CAA:
        free(rec->u.caa.tag);
        free(rec->u.caa.value);
        break;
    default:
        break;
    }
}

void res_free(res_t *res)
{
    if (res == NULL)
        return;
    free(res->meta.name);
    free(res->meta.ns);
    free(res->meta.uid);
    free(res->meta.resource_version);
    free(res->meta.creation_timestamp);
    sel_labels_deinit(&res->meta.labels);
    switch (res->kind) {
    case RES_BIND9CLUSTER: {
        res_cluster_t *c = &res->u.cluster;
        free(c->version);
        free(c->image);
        config_deinit(&c->global);
        res_cluster_role_t *roles[] = {&c->primary, &c->secondary};
        for (int i = 0; i < 2; i++) {
            sel_labels_deinit(&roles[i]->labels);
            res_strv_deinit(&roles[i]->allow_transfer);
        }
        break;
    }
    case RES_BIND9INSTANCE: {
        res_instance_t *in = &res->u.instance;
        free(in->cluster_ref);
        free(in->version);
        free(in->image);
        config_deinit(&in->config);
        free(in->rndc_algorithm);
        free(in->rndc_secret_name);
        free(in->rndc_secret_key);
        free(in->pdb_min_available);
        free(in->pdb_max_unavailable);
        json_decref(in->affinity);
        json_decref(in->topology_spread);
        json_decref(in->node_selector);
        json_decref(in->tolerations);
        json_decref(in->resources);
        json_decref(in->storage_spec);
        break;
    }
    case RES_DNSZONE: {
        res_zone_t *z = &res->u.zone;
        free(z->zone_name);
        free(z->cluster_ref);
        free(z->primary_ns);
        free(z->admin_email);
        for (size_t i = 0; i < z->n_name_servers; i++) {
            free(z->name_servers[i].hostname);
            free(z->name_servers[i].ipv4);
            free(z->name_servers[i].ipv6);
        }
        free(z->name_servers);
        for (size_t i = 0; i < z->n_records_from; i++)
            sel_deinit(&z->records_from[i]);
        free(z->records_from);
        for (size_t i = 0; i < z->n_instances_from; i++)
            sel_deinit(&z->instances_from[i]);
        free(z->instances_from);
        break;
    }
    default:
        record_deinit(res->kind, &res->u.record);
        break;
    }
    free(res);
}
