/*
 * as_internal.h - internals of the Kubernetes API-server test double (tests/apiserver/).
 *
 * Test equipment only: never linked into the product. The public API is apiserver.h.
 *
 * Layout:
 *   as_json.c    JSON helpers: merge patch, JSON patch, printer-column JSONPath, YAML to
 *                JSON, time formatting, base64, field sets (managedFields FieldsV1 trees)
 *   as_schema.c  CRD structural schema: defaulting, pruning, basic validation
 *   as_store.c   resource registry, objects, the event history, selectors and the
 *                create/get/list/update/patch/apply/delete semantics
 *   as_http.c    libmicrohttpd glue: routing, auth, faults, request log, discovery,
 *                tables, watch streams
 *
 * Locking: one mutex (as_server_t.mu) guards everything in the store, the faults and the
 * request log; watch readers wait on as_server_t.cond, broadcast on every new event.
 */
#ifndef BD_AS_INTERNAL_H
#define BD_AS_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "apiserver.h"
#include "hmap.h"

/* ---- as_json.c ------------------------------------------------------------------ */

/* Current time as RFC 3339 UTC with second precision ("2024-01-01T00:00:00Z"). */
void as__now_rfc3339(char out[32]);
/* Parse "YYYY-MM-DDTHH:MM:SSZ" (fraction/offset tolerated); returns -1 when malformed. */
int64_t as__parse_rfc3339(const char *s);
/* Kubernetes duration.HumanDuration ("5s", "3m20s", "2d4h", ...). */
void as__human_duration(int64_t seconds, char out[32]);

/* RFC 7386 JSON merge patch: returns a new reference (target is not modified). */
json_t *as__merge_patch(const json_t *target, const json_t *patch);
/* Strategic-merge-patch directives ($patch, $retainKeys, $setElementOrder/...,
 * $deleteFromPrimitiveList/...) removed in place; the rest is applied by as__smp. */
void as__strip_smp_directives(json_t *patch);
/* A strategic merge patch without directives: a merge patch, except that the lists the
 * double knows a patchMergeKey for (status.conditions by "type", as every built-in kind
 * declares it) are merged item by item: an item whose key matches is merge-patched in
 * place, a new key is appended, items the patch does not name are kept. Other lists are
 * replaced. Returns a new reference (target is not modified). */
json_t *as__smp(const json_t *target, const json_t *patch);
/* RFC 6902 JSON patch applied to a copy of doc. Returns the new document or NULL with
 * a message in err (*test_failed set when a "test" operation failed). */
json_t *as__json_patch(const json_t *doc, const json_t *ops, char *err, size_t errlen,
                       bool *test_failed);

/* Evaluate a printer-column JSONPath (".spec.x", ".a[0].b", ".a[*].b",
 * ".a[?(@.type==\"Ready\")].status"); appends every result (borrowed) to out (an array).
 * Returns 0, or -1 for a path it cannot parse. */
int as__jsonpath(const json_t *root, const char *path, json_t *out);
/* Go's fmt "%v" rendering of a JSON value (strings bare, arrays "[a b]"). malloc'd. */
char *as__go_format(const json_t *v);

/* Parse the first YAML document of buf into JSON; NULL with a message on error. */
json_t *as__yaml_to_json(const char *buf, size_t len, char *err, size_t errlen);

/* Standard base64 (with padding) encode/decode; malloc'd, NULL on error. */
char *as__b64_encode(const unsigned char *data, size_t len);
unsigned char *as__b64_decode(const char *s, size_t *len);

/* Random RFC 4122 version 4 UUID. */
void as__uuid(char out[37]);

/* ---- field sets (FieldsV1) ---------------------------------------------------------
 * A field set is a JSON object tree: {"f:spec": {"f:replicas": {}}}; a leaf is {}.
 * Associative lists (x-kubernetes-list-type: map) are keyed "k:{\"type\":\"Ready\"}";
 * every other list is atomic (a leaf). Paths are arrays of those keys. */

/* Field set of obj's leaves (schema gives list types; may be NULL). New reference. */
json_t *as__fs_from_object(const json_t *obj, const json_t *schema);
/* Leaf paths of set (each an array of keys) appended to out. */
void as__fs_leaves(const json_t *set, json_t *prefix, json_t *out);
/* Insert / remove one path; the remove prunes empty parents. */
void as__fs_add(json_t *set, const json_t *path);
void as__fs_remove(json_t *set, const json_t *path);
bool as__fs_has(const json_t *set, const json_t *path);
/* Value at path in obj (borrowed) or NULL. */
const json_t *as__fs_value(const json_t *obj, const json_t *path);
/* Remove the field at path from obj (no-op when absent). */
void as__fs_delete_value(json_t *obj, const json_t *path);
/* Remove ignored identity fields (apiVersion, kind, metadata.name, ...) from a set. */
void as__fs_strip_meta(json_t *set);
/* Field path as the real server prints it in conflicts: ".spec.replicas". */
char *as__fs_path_string(const json_t *path);

/* ---- as_proto.c ------------------------------------------------------------------- */

/* Decode a Kubernetes protobuf request body ("k8s\0" envelope) of a Namespace, ConfigMap
 * or Secret into JSON; NULL with a message for anything else. */
json_t *as__proto_decode(const char *body, size_t len, char *err, size_t errlen);

/* ---- as_schema.c ------------------------------------------------------------------ */

/* Apply structural defaults in place (schema: openAPIV3Schema). */
void as__schema_default(json_t *obj, const json_t *schema);
/* Prune unknown fields in place; each pruned path (".spec.foo") is appended to
 * unknown (an array of strings) when non-NULL. metadata, apiVersion, kind survive. */
void as__schema_prune(json_t *obj, const json_t *schema, json_t *unknown);
/* Validate obj against the schema's type/enum/pattern/min/max/length/required rules;
 * each failure is appended to causes as {"reason","message","field"}. */
void as__schema_validate(const json_t *obj, const json_t *schema, json_t *causes);
/* Sub-schema for a property path (keys of objects; "[]" steps into items); borrowed. */
const json_t *as__schema_at(const json_t *schema, const char *const *path, size_t n);

/* ---- as_store.c ------------------------------------------------------------------- */

typedef struct as_res {
    char *group;     /* "" for the core group */
    char *version;
    char *plural, *singular, *kind, *list_kind;
    bool namespaced;
    json_t *short_names; /* array of strings (owned) */
    json_t *categories;  /* array of strings (owned) */
    bool status_sub;     /* has a /status subresource */
    bool has_generation; /* metadata.generation maintained */
    bool custom;         /* defined by a CustomResourceDefinition */
    char *crd;           /* owning CRD name when custom */
    json_t *columns;     /* additionalPrinterColumns (owned) or NULL */
    json_t *schema;      /* openAPIV3Schema (owned) or NULL */
    char *coll;          /* storage id "group/plural" */
    json_t *verbs;       /* discovery verbs (owned) */
} as_res_t;

enum { AS_EV_ADDED = 0, AS_EV_MODIFIED, AS_EV_DELETED };

typedef struct as_event {
    uint64_t rv;
    int type;
    char *coll; /* storage id */
    char *key;  /* "namespace/name" ("/name" for cluster-scoped) */
    json_t *obj;  /* state after (DELETED: the last state, at the deletion's RV) */
    json_t *prev; /* state before, NULL for ADDED */
} as_event_t;

typedef struct as_logent {
    uint64_t seq;
    double time; /* seconds since the epoch */
    char *user_agent, *field_manager, *verb, *method, *path, *query;
    int status;
} as_logent_t;

typedef struct as_server as_server_t;

struct as_server {
    pthread_mutex_t mu;
    pthread_cond_t cond;

    bd_apiserver_opts_t opts;
    char *token, *tls_cert, *tls_key, *bind_addr, *server_version;

    /* registry */
    as_res_t **res;
    size_t nres, capres;

    /* storage: coll -> bd_hmap_t of key -> json_t* */
    bd_hmap_t *colls;

    uint64_t rv;         /* last resourceVersion handed out */
    uint64_t compact_rv; /* events with rv > compact_rv are all in the history */
    as_event_t *ev;      /* ring */
    size_t ev_cap, ev_head, ev_len;

    /* faults */
    unsigned fail_count;
    int fail_status;
    double fail_fraction;
    char *fail_match;
    unsigned throttle_count, throttle_retry_after;
    char *throttle_match;
    unsigned latency_ms;
    uint64_t drop_epoch;
    bool stopping;
    unsigned watches_open;

    /* request log */
    as_logent_t *log;
    size_t log_len, log_cap;
    uint64_t log_seq;

    /* transport (as_http.c) */
    struct MHD_Daemon *mhd;
    unsigned short port;
    char url[64];
};

/* A request, after routing; strings are borrowed from the HTTP layer. */
typedef struct as_req {
    const char *verb; /* get list watch create update patch delete deletecollection */
    as_res_t *res;
    const char *ns;   /* NULL for cluster-scoped or all namespaces */
    const char *name; /* NULL for collections */
    const char *sub;  /* "status" or NULL */
    const char *body;
    size_t body_len;
    const char *ctype;
    const char *user_agent;
    const char *field_manager;
    bool force;
    bool dry_run;
    const char *field_validation; /* Strict, Warn, Ignore or NULL (Warn) */
    const char *label_sel, *field_sel;
    const char *rv, *rv_match, *cont;
    long limit;
    int accept;                 /* AS_ACCEPT_* */
    const char *include_object; /* Table rows: None, Metadata (default), Object */
} as_req_t;

enum { AS_ACCEPT_JSON = 0, AS_ACCEPT_TABLE, AS_ACCEPT_PARTIAL };

typedef struct as_resp {
    int status;
    json_t *body;  /* owned */
    json_t *warnings; /* array of strings or NULL (owned) */
} as_resp_t;

/* Status object (kind Status) with code/reason/message; details name/kind optional. */
json_t *as__status(int code, const char *reason, const char *name, const as_res_t *res,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
void as__resp_error(as_resp_t *r, int code, const char *reason, const char *name,
                    const as_res_t *res, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

int as__store_init(as_server_t *s);
void as__store_deinit(as_server_t *s);

/* Registry lookups (mu held). */
as_res_t *as__res_find(as_server_t *s, const char *group, const char *version,
                       const char *plural);
/* First served version of a group/resource (by plural, singular, short name or kind,
 * case-insensitive kind); used by tests' direct access. */
as_res_t *as__res_lookup_any(as_server_t *s, const char *group, const char *name);

/* Serve one non-watch request (mu held). */
void as__store_handle(as_server_t *s, const as_req_t *rq, as_resp_t *out);

/* Selectors: parsed forms; NULL string -> matches everything. */
typedef struct as_sel as_sel_t;
int as__sel_parse_labels(const char *s, as_sel_t **out, char *err, size_t errlen);
int as__sel_parse_fields(const char *s, const as_res_t *res, as_sel_t **out, char *err,
                         size_t errlen);
bool as__sel_match(const as_sel_t *sel, const json_t *obj);
void as__sel_free(as_sel_t *sel);

/* Watch support (mu held). */
const as_event_t *as__event_at(const as_server_t *s, size_t i); /* 0 = oldest */
/* Current objects of a collection (borrowed map) or NULL. */
bd_hmap_t *as__coll(as_server_t *s, const char *coll);
/* Copy of obj presented as res's apiVersion (new reference). */
json_t *as__present(const as_res_t *res, const json_t *obj);
/* Table rendering of objects (array) for res. */
json_t *as__table(const as_res_t *res, const json_t *objs, const char *include_object,
                  bool with_columns, const char *rv, const char *cont);
json_t *as__partial_meta(const json_t *obj);

/* Direct access for the library API (mu held). */
int as__create_json(as_server_t *s, const char *json, char *err, size_t errlen);

/* Request log (mu held). */
void as__log_add(as_server_t *s, const char *ua, const char *fm, const char *verb,
                 const char *method, const char *path, const char *query, int status);

#endif
