/*
 * resource.h - the typed model of bindy's custom resources.
 *
 * res_from_json() turns a *validated* object (val_check() has applied schema defaults)
 * into a typed res_t. It still checks what it reads, so an unvalidated object gives a
 * clear BD_EINVAL naming the field, never a crash. Derived facts are resolved here, once:
 * an instance's role (spec.role, else the `dns-role` label, else primary), TXT strings
 * split into 255-octet character-strings, addresses in canonical text form.
 *
 * Records are read-only after construction; every pointer inside a res_t is owned by it
 * and released by res_free().
 */
#ifndef BD_RESOURCE_H
#define BD_RESOURCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "selector.h"

typedef enum {
    RES_BIND9CLUSTER,
    RES_BIND9INSTANCE,
    RES_DNSZONE,
    RES_A,
    RES_AAAA,
    RES_CNAME,
    RES_MX,
    RES_TXT,
    RES_NS,
    RES_SRV,
    RES_CAA,
    RES_KIND_COUNT
} res_kind_t;

/* "ARecord" / "arecords"; NULL for an out-of-range kind. */
const char *res_kind_name(res_kind_t kind);
const char *res_kind_plural(res_kind_t kind);
/* BD_OK and *out, or BD_ENOTFOUND. */
int res_kind_from_name(const char *name, res_kind_t *out);
bool res_kind_is_record(res_kind_t kind);

typedef struct {
    char **v;
    size_t n;
} res_strv_t;

typedef struct {
    char *name;
    char *ns; /* "default" when the manifest has none */
    char *uid, *resource_version, *creation_timestamp; /* NULL when absent */
    int64_t generation;                                /* 0 when absent */
    sel_labels_t labels;
} res_meta_t;

typedef enum { RES_TRI_UNSET = -1, RES_TRI_FALSE = 0, RES_TRI_TRUE = 1 } res_tri_t;

typedef struct {
    res_tri_t recursion;
    res_strv_t allow_query, allow_transfer, forwarders, listen_on, listen_on_v6;
    res_tri_t dnssec_validation;
} res_config_t;

typedef enum { RES_ROLE_PRIMARY, RES_ROLE_SECONDARY } res_role_t;
typedef enum { RES_ROLE_FROM_SPEC, RES_ROLE_FROM_LABEL, RES_ROLE_FROM_DEFAULT } res_role_from_t;
typedef enum { RES_STORAGE_NONE, RES_STORAGE_EMPTYDIR, RES_STORAGE_PVC } res_storage_t;

typedef struct {
    res_role_t role;
    res_role_from_t role_from;
    int32_t replicas;
    char *cluster_ref, *version, *image; /* cluster_ref, image: NULL when absent */
    res_config_t config;
    char *rndc_algorithm;           /* "hmac-sha256" ... */
    char *rndc_secret_name, *rndc_secret_key; /* NULL when absent */
    char *pdb_min_available, *pdb_max_unavailable; /* "2" or "50%"; NULL when absent */
    res_storage_t storage;
    /* Kubernetes core types passed through to workloads as written (owned refs or NULL):
     * affinity, topologySpreadConstraints, nodeSelector, tolerations, resources, storage. */
    json_t *affinity, *topology_spread, *node_selector, *tolerations, *resources, *storage_spec;
} res_instance_t;

typedef struct {
    int32_t replicas; /* -1 when absent */
    sel_labels_t labels;
    res_strv_t allow_transfer;
} res_cluster_role_t;

typedef struct {
    char *version, *image;
    res_config_t global;
    res_cluster_role_t primary, secondary;
} res_cluster_t;

typedef struct {
    char *hostname, *ipv4, *ipv6; /* ipv4/ipv6 NULL when absent */
} res_ns_t;

typedef struct {
    char *zone_name; /* lower case, without a trailing dot */
    char *cluster_ref;
    char *primary_ns, *admin_email;
    int64_t serial; /* -1 when absent */
    int64_t status_serial; /* status.serial, the serial a leader published; -1 when absent */
    int32_t refresh, retry, expire, negative_ttl, ttl;
    res_ns_t *name_servers;
    size_t n_name_servers;
    sel_t *records_from; /* one selector per recordsFrom entry */
    size_t n_records_from;
    sel_t *instances_from;
    size_t n_instances_from;
} res_zone_t;

typedef struct {
    char *name;  /* as written: relative, "@", or absolute with a trailing dot */
    int64_t ttl; /* -1 when absent (the zone's ttl applies) */
    /* status.zone and status.serial: the zone version a leader published this record in
     * (-1 and NULL when absent) */
    int64_t status_serial;
    char *status_zone;
    union {
        res_strv_t addrs; /* A, AAAA: canonical text */
        char *target;     /* CNAME, NS */
        struct {
            uint16_t priority;
            char *exchange;
        } mx;
        struct {
            res_strv_t *strings; /* one entry per spec.text item, split in <=255-octet chunks */
            size_t n;
        } txt;
        struct {
            uint16_t priority, weight, port;
            char *target;
        } srv;
        struct {
            uint8_t flags;
            char *tag, *value;
        } caa;
    } u;
} res_record_t;

typedef struct res {
    res_kind_t kind;
    res_meta_t meta;
    union {
        res_cluster_t cluster;
        res_instance_t instance;
        res_zone_t zone;
        res_record_t record;
    } u;
} res_t;

/* Build a typed resource from obj (a reference is kept, obj is not modified).
 * Returns BD_OK and *out (free with res_free), BD_EINVAL with err naming the field,
 * BD_ENOTFOUND for a kind that is not bindy's, or BD_ENOMEM. */
int res_from_json(json_t *obj, res_t **out, bd_err_t *err);
void res_free(res_t *res);

/* Split s into DNS character-strings of at most 255 octets, never inside a UTF-8
 * sequence. Appends to out (caller storage; release with res_strv_deinit). */
int res_split_txt(const char *s, res_strv_t *out);
void res_strv_deinit(res_strv_t *v);

#endif
