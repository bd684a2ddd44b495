/*
 * as_proto.c - just enough of the Kubernetes protobuf encoding to accept the request
 * bodies that kubectl's typed clients send since client-go 1.33 (kubectl create
 * namespace|configmap|secret): the "k8s\0" envelope (runtime.Unknown) and the Namespace,
 * ConfigMap and Secret messages with their ObjectMeta. Anything else is reported as an
 * unsupported media type by the caller.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_internal.h"

typedef struct pb {
    const unsigned char *p, *end;
} pb_t;

static int pb_varint(pb_t *b, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end)
            return -1;
        unsigned char c = *b->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Next field: number, wire type, and for length-delimited fields the payload. */
static int pb_next(pb_t *b, unsigned *field, unsigned *wt, pb_t *sub, uint64_t *val)
{
    uint64_t key;
    if (pb_varint(b, &key) != 0)
        return -1;
    *field = (unsigned)(key >> 3);
    *wt = (unsigned)(key & 7);
    switch (*wt) {
    case 0:
        return pb_varint(b, val);
    case 1:
        if (b->end - b->p < 8)
            return -1;
        b->p += 8;
        return 0;
    case 5:
        if (b->end - b->p < 4)
            return -1;
        b->p += 4;
        return 0;
    case 2: {
        uint64_t len;
        if (pb_varint(b, &len) != 0 || len > (uint64_t)(b->end - b->p))
            return -1;
        sub->p = b->p;
        sub->end = b->p + len;
        b->p += len;
        return 0;
    }
    default:
        return -1;
    }
}

static json_t *pb_string(const pb_t *s)
{
    return json_stringn((const char *)s->p, (size_t)(s->end - s->p));
}

static json_t *pb_bytes_b64(const pb_t *s)
{
    char *e = as__b64_encode(s->p, (size_t)(s->end - s->p));
    json_t *v = json_string(e ? e : "");
    free(e);
    return v;
}

/* map<string,string|bytes> entry into obj. */
static int pb_map_entry(pb_t *e, json_t *obj, bool bytes)
{
    json_t *k = NULL, *v = NULL;
    unsigned f, wt;
    pb_t sub;
    uint64_t val;
    while (e->p < e->end) {
        if (pb_next(e, &f, &wt, &sub, &val) != 0) {
            json_decref(k);
            json_decref(v);
            return -1;
        }
        if (wt != 2)
            continue;
        if (f == 1) {
            json_decref(k);
            k = pb_string(&sub);
        } else if (f == 2) {
            json_decref(v);
            v = bytes ? pb_bytes_b64(&sub) : pb_string(&sub);
        }
    }
    if (k)
        json_object_set_new(obj, json_string_value(k), v ? v : json_string(""));
    else
        json_decref(v);
    json_decref(k);
    return 0;
}

static json_t *pb_object_meta(pb_t *m)
{
    json_t *md = json_object(), *labels = NULL, *ann = NULL, *fins = NULL;
    unsigned f, wt;
    pb_t sub;
    uint64_t val;
    while (m->p < m->end) {
        if (pb_next(m, &f, &wt, &sub, &val) != 0) {
            json_decref(md);
            return NULL;
        }
        if (wt == 2) {
            switch (f) {
            case 1: json_object_set_new(md, "name", pb_string(&sub)); break;
            case 2: json_object_set_new(md, "generateName", pb_string(&sub)); break;
            case 3: json_object_set_new(md, "namespace", pb_string(&sub)); break;
            case 6: json_object_set_new(md, "resourceVersion", pb_string(&sub)); break;
            case 11:
                if (!labels)
                    labels = json_object();
                pb_map_entry(&sub, labels, false);
                break;
            case 12:
                if (!ann)
                    ann = json_object();
                pb_map_entry(&sub, ann, false);
                break;
            case 14:
                if (!fins)
                    fins = json_array();
                json_array_append_new(fins, pb_string(&sub));
                break;
            default: break;
            }
        }
    }
    if (labels)
        json_object_set_new(md, "labels", labels);
    if (ann)
        json_object_set_new(md, "annotations", ann);
    if (fins)
        json_object_set_new(md, "finalizers", fins);
    return md;
}

json_t *as__proto_decode(const char *body, size_t len, char *err, size_t errlen)
{
    static const unsigned char magic[4] = {0x6b, 0x38, 0x73, 0x00};
    if (len < 4 || memcmp(body, magic, 4) != 0) {
        snprintf(err, errlen, "protobuf body without the k8s envelope");
        return NULL;
    }
    pb_t b = {(const unsigned char *)body + 4, (const unsigned char *)body + len};
    json_t *api_version = NULL, *kind = NULL;
    pb_t raw = {NULL, NULL};
    unsigned f, wt;
    pb_t sub;
    uint64_t val;
    while (b.p < b.end) {
        if (pb_next(&b, &f, &wt, &sub, &val) != 0)
            goto bad;
        if (f == 1 && wt == 2) {
            pb_t tm = sub, s2;
            unsigned f2, w2;
            while (tm.p < tm.end) {
                if (pb_next(&tm, &f2, &w2, &s2, &val) != 0)
                    goto bad;
                if (f2 == 1 && w2 == 2) {
                    json_decref(api_version);
                    api_version = pb_string(&s2);
                } else if (f2 == 2 && w2 == 2) {
                    json_decref(kind);
                    kind = pb_string(&s2);
                }
            }
        } else if (f == 2 && wt == 2) {
            raw = sub;
        }
    }
    const char *k = json_string_value(kind);
    if (!k || (strcmp(k, "Namespace") != 0 && strcmp(k, "ConfigMap") != 0 &&
               strcmp(k, "Secret") != 0)) {
        snprintf(err, errlen, "protobuf bodies are understood only for Namespace, ConfigMap "
                 "and Secret (got %s)", k ? k : "?");
        json_decref(api_version);
        json_decref(kind);
        return NULL;
    }
    json_t *obj = json_pack("{s:o,s:o}", "apiVersion", api_version ? api_version : json_string("v1"),
                            "kind", kind);
    json_t *data = NULL, *bdata = NULL, *sdata = NULL;
    while (raw.p && raw.p < raw.end) {
        if (pb_next(&raw, &f, &wt, &sub, &val) != 0) {
            json_decref(obj);
            json_decref(data);
            json_decref(bdata);
            json_decref(sdata);
            snprintf(err, errlen, "malformed protobuf object");
            return NULL;
        }
        if (f == 1 && wt == 2) {
            json_t *md = pb_object_meta(&sub);
            if (md)
                json_object_set_new(obj, "metadata", md);
            continue;
        }
        if (strcmp(k, "Namespace") == 0 && f == 2 && wt == 2) {
            json_t *fins = json_array();
            pb_t sp = sub, s2;
            unsigned f2, w2;
            while (sp.p < sp.end && pb_next(&sp, &f2, &w2, &s2, &val) == 0)
                if (f2 == 1 && w2 == 2)
                    json_array_append_new(fins, pb_string(&s2));
            json_object_set_new(obj, "spec", json_pack("{s:o}", "finalizers", fins));
        } else if (strcmp(k, "ConfigMap") == 0) {
            if (f == 2 && wt == 2)
                pb_map_entry(&sub, data ? data : (data = json_object()), false);
            else if (f == 3 && wt == 2)
                pb_map_entry(&sub, bdata ? bdata : (bdata = json_object()), true);
            else if (f == 4 && wt == 0)
                json_object_set_new(obj, "immutable", json_boolean(val));
        } else if (strcmp(k, "Secret") == 0) {
            if (f == 2 && wt == 2)
                pb_map_entry(&sub, data ? data : (data = json_object()), true);
            else if (f == 3 && wt == 2)
                json_object_set_new(obj, "type", pb_string(&sub));
            else if (f == 4 && wt == 2)
                pb_map_entry(&sub, sdata ? sdata : (sdata = json_object()), false);
            else if (f == 5 && wt == 0)
                json_object_set_new(obj, "immutable", json_boolean(val));
        }
    }
    if (data)
        json_object_set_new(obj, "data", data);
    if (bdata)
        json_object_set_new(obj, "binaryData", bdata);
    if (sdata)
        json_object_set_new(obj, "stringData", sdata);
    return obj;
bad:
    json_decref(api_version);
    json_decref(kind);
    snprintf(err, errlen, "malformed protobuf envelope");
    return NULL;
}
