/*
 * workload.h - the Kubernetes objects that run the BIND servers of one Bind9Instance.
 *
 * A pure renderer: given a typed Bind9Instance, its Bind9Cluster (or NULL) and the facts
 * only the caller knows (image repository, where named pulls from, key material), it
 * builds the desired objects as jansson values. No I/O, no clock, no randomness, no
 * logging: the same inputs give the same objects, byte for byte once dumped with
 * wl_dump() (sorted keys). The applier sends each object by server-side apply with field
 * manager WL_FIELD_MANAGER; every object lives in the instance's namespace, carries the
 * label app.kubernetes.io/managed-by: bindy and a controlling ownerReference to the
 * instance (so Kubernetes' garbage collector also removes them).
 *
 * Objects (name from wl_name()):
 *   Secret      <inst>-keys    keys.conf (transfer + rndc key) and the rndc key in use
 *                              itself, so the caller can read it back (wl_rndc_from_secret)
 *                              and keep it across reconciles. Key material is never logged:
 *                              error messages here never quote it.
 *   ConfigMap   <inst>-config  named.conf (bind_render_named_conf); never zone data:
 *                              servers pull zones by transfer from their catalog.
 *   Service     <inst>         UDP and TCP 53 (not rndc: bindy dials each pod).
 *   Deployment  <inst>         named, hardened (non-root, read-only root filesystem, no
 *                              capabilities), probes and spreading as the HA guide shows,
 *                              readiness gate WL_READINESS_GATE (bindy sets it); ports
 *                              dns-udp, dns-tcp and rndc (953, any address, the rndc key
 *                              admits). Its data volume, where named keeps zone files and
 *                              journals: emptyDir, or the existing claim
 *                              spec.storage.persistentVolumeClaim.claimName (shared by
 *                              every replica: the CRD refuses replicas > 1 on it unless
 *                              its accessModes include ReadWriteMany; named then keeps
 *                              its zones in memory only).
 *   StatefulSet <inst>         instead of the Deployment when spec.storage.
 *                              persistentVolumeClaim has no claimName: the same pod
 *                              template, and one claim per pod from volumeClaimTemplates
 *                              (data-<inst>-<n>), deleted with the StatefulSet. Kubernetes
 *                              refuses changes to a template after creation (an apply then
 *                              fails until the StatefulSet is deleted).
 *   PDB         <inst>-pdb     spec.podDisruptionBudget, else minAvailable replicas-1 when
 *                              replicas > 1, else none.
 */
#ifndef BD_WORKLOAD_H
#define BD_WORKLOAD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "resource.h"

#define WL_FIELD_MANAGER "bindy"
#define WL_READINESS_GATE "bindy.firestoned.io/serials-published"
#define WL_DEFAULT_IMAGE_REPOSITORY "docker.io/internetsystemsconsortium/bind9"
#define WL_DEFAULT_CATALOG_SUFFIX "catalog.bindy.invalid"
/* Instance names become Service names and label values: a DNS-1035 label. */
#define WL_NAME_MAX 64
#define WL_OBJ_NAME_MAX (WL_NAME_MAX + 16)

/* In the order an applier should create them (and the reverse to delete). */
typedef enum { WL_SECRET, WL_CONFIGMAP, WL_SERVICE, WL_DEPLOYMENT, WL_STATEFULSET, WL_PDB, WL_OBJ_COUNT } wl_obj_t;

typedef struct {
    /* Image repository used with the instance's version ("<repo>:<version>") when neither
     * the instance nor its cluster sets spec.image. NULL: WL_DEFAULT_IMAGE_REPOSITORY.
     * (The CRD defaults an instance's version, so a cluster's version never applies.) */
    const char *image_repository;
    /* Namespace bindy runs in; recorded as annotation bindy.firestoned.io/operator-namespace. */
    const char *operator_namespace;
    /* Where named pulls its catalog and member zones from: numeric addresses (a primary:
     * the hidden primary Service's ClusterIP; a secondary: its primaries' ClusterIPs), all
     * on upstream_port (0: 53). At least one. */
    const char *const *upstream;
    size_t nupstream;
    uint16_t upstream_port;
    /* A secondary's last resort, after its primaries: the hidden primary Service's ClusterIP
     * on fallback_port (0: 53). named asks the next primary when one answers SERVFAIL (a
     * zone it is still loading) or cannot be reached. NULL: none (a primary). */
    const char *fallback;
    uint16_t fallback_port;
    /* Servers to NOTIFY (also-notify), on notify_port (0: 53); may be empty. */
    const char *const *notify;
    size_t nnotify;
    uint16_t notify_port;
    const char *catalog_suffix; /* NULL: WL_DEFAULT_CATALOG_SUFFIX, as the projector's */
    /* Key material as base64 (as in rndc.key). The caller generates it once and passes the
     * same value on every reconcile (wl_rndc_from_secret reads it back). The rndc algorithm
     * is the instance's spec.rndcKey.algorithm. Borrowed; never logged. */
    const char *xfr_algorithm, *xfr_secret_b64;
    const char *rndc_secret_b64;
    /* The instance's own rndc key (spec.rndcKey.secretRef, read by the caller with
     * wl_rndc_from_ref), base64: used instead of rndc_secret_b64 in keys.conf and in the
     * Secret's rndc-secret (what wl_rndc_from_secret gives: the key in use, so whoever
     * talks rndc to the instance reads the right one). NULL: none. Borrowed. */
    const char *rndc_ref_b64;
    /* Leave the readiness gate out of the pod template: a gate that nothing sets would keep
     * every pod out of its Service forever. */
    bool no_readiness_gate;
} wl_opts_t;

/* The rendered objects; exactly one of obj[WL_DEPLOYMENT] and obj[WL_STATEFULSET] is set;
 * obj[WL_PDB] may be NULL. Owned. */
typedef struct {
    json_t *obj[WL_OBJ_COUNT];
} wl_objects_t;

/* A reference to an object an instance owns, for deleting it. */
typedef struct {
    const char *api_version, *kind, *resource; /* "apps/v1", "Deployment", "deployments" */
    char ns[WL_NAME_MAX];
    char name[WL_OBJ_NAME_MAX];
} wl_ref_t;

/*
 * Render the objects of instance `inst` (RES_BIND9INSTANCE, borrowed) with `cluster`
 * (RES_BIND9CLUSTER or NULL, borrowed) into *out (caller storage, reset first; release
 * with wl_objects_deinit). Returns BD_OK; BD_EINVAL with err naming the problem (not an
 * instance, no metadata.uid, a name that is not a DNS-1035 label of at most 63 octets, a
 * missing option); BD_ENOMEM. On error *out holds nothing.
 */
int wl_render(const res_t *inst, const res_t *cluster, const wl_opts_t *opts, wl_objects_t *out,
              bd_err_t *err);
void wl_objects_deinit(wl_objects_t *objs);

/* "Deployment", "apps/v1", "deployments" of an object kind; NULL when out of range. */
const char *wl_kind(wl_obj_t k);
const char *wl_api_version(wl_obj_t k);
const char *wl_resource(wl_obj_t k);
/* The name of object k of instance `inst` into buf (WL_OBJ_NAME_MAX). BD_EINVAL when
 * `inst` is not a valid instance name. */
int wl_name(wl_obj_t k, const char *inst, char buf[WL_OBJ_NAME_MAX]);

/*
 * Every object instance ns/name may own, for an applier to delete when it is removed:
 * all WL_OBJ_COUNT kinds (the PDB and one of Deployment/StatefulSet may not exist: treat
 * 404 as done), in
 * deletion order (reverse of creation). Delete an object only if wl_owned_by() holds for
 * it (a user's own claim could bear the same name). *n: how many refs were written.
 */
int wl_owned(const char *ns, const char *name, wl_ref_t out[WL_OBJ_COUNT], size_t *n, bd_err_t *err);

/* Does obj carry a controlling ownerReference to the Bind9Instance with this uid? */
bool wl_owned_by(const json_t *obj, const char *uid);

/*
 * Serialize obj as bindy does everywhere: sorted keys, 2-space indent, final newline.
 * Returns BD_OK and a new string in *out (free()), BD_ENOMEM.
 */
int wl_dump(const json_t *obj, char **out);

/*
 * Read the rndc key back from an observed Secret rendered by wl_render (borrowed):
 * BD_OK and new strings (free()) in *alg and *secret_b64; BD_ENOTFOUND when the Secret
 * does not hold one (the caller then generates a key); BD_EINVAL when it is malformed.
 */
int wl_rndc_from_secret(const json_t *secret, char **alg, char **secret_b64);

/* The data key of spec.rndcKey.secretRef when it names none. */
#define WL_RNDC_REF_KEY "secret"

/*
 * The rndc key of an instance's spec.rndcKey.secretRef from that Secret (borrowed):
 * data[key] (key NULL: WL_RNDC_REF_KEY) holds the key's secret as rndc.key writes it
 * (base64; surrounding whitespace ignored). BD_OK and a new string in *secret_b64 (free,
 * after wiping); BD_ENOTFOUND when the Secret has no such key; BD_EINVAL when the value
 * is not base64 key material; BD_ENOMEM. Never quotes the value.
 */
int wl_rndc_from_ref(const json_t *secret, const char *key, char **secret_b64);

#endif
