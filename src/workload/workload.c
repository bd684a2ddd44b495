/*
 * workload.c - Bind9Instance -> Deployment or StatefulSet, Service, ConfigMap, Secret, PDB.
 *
 * Objects are built with json_pack: a nested builder that fails returns NULL, and a NULL
 * where json_pack expects an object ("o") makes the enclosing call fail too, so one NULL
 * check at the top catches an allocation failure anywhere below (a sticky error).
 * Optional parts are added with put(), which keeps its own sticky code.
 */
#include "workload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

#define WL_API_GROUP_VERSION "bindy.firestoned.io/v1beta1"
#define WL_CONFIG_DIR "/etc/bindy/config"
#define WL_KEYS_DIR "/etc/bindy/keys"
#define WL_DATA_DIR "/var/cache/bind"
#define WL_RUN_DIR "/run/named"
/* named runs as this user; it needs no passwd entry. fsGroup makes volumes writable. */
#define WL_RUN_AS 101
#define WL_DNS_PORT 53
#define WL_RNDC_PORT 953
#define WL_DEFAULT_PVC_SIZE "1Gi"

static const struct {
    const char *kind, *api_version, *resource, *suffix;
} kinds[WL_OBJ_COUNT] = {
    [WL_SECRET] = {"Secret", "v1", "secrets", "-keys"},
    [WL_CONFIGMAP] = {"ConfigMap", "v1", "configmaps", "-config"},
    [WL_SERVICE] = {"Service", "v1", "services", ""},
    [WL_DEPLOYMENT] = {"Deployment", "apps/v1", "deployments", ""},
    [WL_STATEFULSET] = {"StatefulSet", "apps/v1", "statefulsets", ""},
    [WL_PDB] = {"PodDisruptionBudget", "policy/v1", "poddisruptionbudgets", "-pdb"},
};

const char *wl_kind(wl_obj_t k) { return (unsigned)k < WL_OBJ_COUNT ? kinds[k].kind : NULL; }
const char *wl_api_version(wl_obj_t k) { return (unsigned)k < WL_OBJ_COUNT ? kinds[k].api_version : NULL; }
const char *wl_resource(wl_obj_t k) { return (unsigned)k < WL_OBJ_COUNT ? kinds[k].resource : NULL; }

/* A DNS-1035 label: it names the Service and is the value of the `instance` label. */
static bool is_dns1035_label(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= WL_NAME_MAX || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

int wl_name(wl_obj_t k, const char *inst, char buf[WL_OBJ_NAME_MAX])
{
    buf[0] = '\0';
    if ((unsigned)k >= WL_OBJ_COUNT || !is_dns1035_label(inst))
        return BD_EINVAL;
    snprintf(buf, WL_OBJ_NAME_MAX, "%s%s", inst, kinds[k].suffix);
    return BD_OK;
}

/* ---- small pure helpers ------------------------------------------------------------ */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const char *in, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    if (out == NULL)
        return NULL;
    const unsigned char *p = (const unsigned char *)in;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        *o++ = b64chars[v >> 18 & 63];
        *o++ = b64chars[v >> 12 & 63];
        *o++ = i + 1 < n ? b64chars[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? b64chars[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* Decode strict, padded base64 into a NUL-terminated string; BD_EINVAL when malformed or
 * when the text holds a NUL. */
static int b64_decode(const char *in, char **out)
{
    *out = NULL;
    size_t n = strlen(in);
    if (n % 4 != 0)
        return BD_EINVAL;
    char *buf = malloc(n / 4 * 3 + 1);
    if (buf == NULL)
        return BD_ENOMEM;
    size_t len = 0;
    for (size_t i = 0; i < n; i += 4) {
        uint32_t v = 0;
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            const char c = in[i + j];
            const char *at = c ? strchr(b64chars, c) : NULL;
            if (c == '=' && i + 4 == n && j >= 2 && (j == 3 || in[i + 3] == '=')) {
                pad++;
                v <<= 6;
            } else if (at != NULL && pad == 0) {
                v = v << 6 | (uint32_t)(at - b64chars);
            } else {
                free(buf);
                return BD_EINVAL;
            }
        }
        buf[len++] = (char)(v >> 16);
        if (pad < 2)
            buf[len++] = (char)(v >> 8 & 0xff);
        if (pad < 1)
            buf[len++] = (char)(v & 0xff);
    }
    buf[len] = '\0';
    if (strlen(buf) != len) {
        free(buf);
        return BD_EINVAL;
    }
    *out = buf;
    return BD_OK;
}

/* Strict padded base64 (what named accepts in a key's secret clause, and nothing that
 * could end the quoted string it is written into). */
static bool b64_valid(const char *s, size_t n)
{
    if (n == 0 || n % 4 != 0)
        return false;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') {
            pad++;
            continue;
        }
        if (pad > 0 || s[i] == '\0' || strchr(b64chars, s[i]) == NULL)
            return false;
    }
    return pad <= 2 && pad < n;
}

/* FNV-1a 64: a stable fingerprint of named.conf for the pod template (not a secret). */
static void fnv1a64_hex(const char *s, char out[17])
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* Set key in obj to v (stolen) unless an earlier step failed; a NULL v is a failure. */
static void put(json_t *obj, const char *key, json_t *v, int *rc)
{
    if (*rc != BD_OK || v == NULL || obj == NULL) {
        json_decref(v);
        if (*rc == BD_OK)
            *rc = BD_ENOMEM;
        return;
    }
    if (json_object_set_new(obj, key, v) != 0) /* it releases v even when it fails */
        *rc = BD_ENOMEM;
}

/* obj when every step succeeded, else NULL (obj released). */
static json_t *finish(json_t *obj, int rc)
{
    if (rc == BD_OK)
        return obj;
    json_decref(obj);
    return NULL;
}

/* A deep copy of a borrowed pass-through value (NULL stays NULL). */
static json_t *copy(const json_t *v) { return v ? json_deep_copy(v) : NULL; }

/* "2" -> 2, "50%" -> "50%": the int-or-string the API expects. */
static json_t *int_or_string(const char *s)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end != s && *end == '\0' && v >= 0 && v <= INT32_MAX)
        return json_integer(v);
    return json_string(s);
}

/* ---- the objects ------------------------------------------------------------------- */

typedef struct {
    const res_t *inst;
    const res_instance_t *in;
    const wl_opts_t *o;
    const char *name, *ns, *role;
    char names[WL_OBJ_COUNT][WL_OBJ_NAME_MAX];
} ctx_t;

static json_t *labels(const ctx_t *c)
{
    json_t *l = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "app.kubernetes.io/name", "bind9",
                          "app.kubernetes.io/instance", c->name, "app.kubernetes.io/component", "dns-server",
                          "app.kubernetes.io/part-of", "bindy", "app.kubernetes.io/managed-by", WL_FIELD_MANAGER,
                          "instance", c->name, "dns-role", c->role);
    const char *region = sel_labels_get(&c->inst->meta.labels, "region");
    int rc = BD_OK;
    if (l && region)
        put(l, "region", json_string(region), &rc);
    if (rc != BD_OK) {
        json_decref(l);
        return NULL;
    }
    return l;
}

/* The Deployment's selector (immutable once created: keep it minimal and stable). */
static json_t *selector_labels(const ctx_t *c)
{
    return json_pack("{s:s, s:s}", "app.kubernetes.io/name", "bind9", "instance", c->name);
}

static json_t *metadata(const ctx_t *c, wl_obj_t k)
{
    json_t *m = json_pack("{s:s, s:s, s:o, s:[{s:s, s:s, s:s, s:s, s:b, s:b}]}", "name", c->names[k], "namespace",
                          c->ns, "labels", labels(c), "ownerReferences", "apiVersion", WL_API_GROUP_VERSION, "kind",
                          "Bind9Instance", "name", c->name, "uid", c->inst->meta.uid, "controller", 1,
                          "blockOwnerDeletion", 1);
    int rc = BD_OK;
    if (m && c->o->operator_namespace)
        put(m, "annotations", json_pack("{s:s}", "bindy.firestoned.io/operator-namespace", c->o->operator_namespace),
            &rc);
    if (rc != BD_OK) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static json_t *object(const ctx_t *c, wl_obj_t k)
{
    return json_pack("{s:s, s:s, s:o}", "apiVersion", kinds[k].api_version, "kind", kinds[k].kind, "metadata",
                     metadata(c, k));
}

static json_t *render_configmap(const ctx_t *c, const char *conf)
{
    json_t *obj = object(c, WL_CONFIGMAP);
    int rc = BD_OK;
    put(obj, "data", json_pack("{s:s}", "named.conf", conf), &rc);
    return finish(obj, rc);
}

static json_t *render_secret(const ctx_t *c, const char *keys)
{
    const char *alg = c->in->rndc_algorithm;
    char *k = b64_encode(keys, strlen(keys));
    char *a = b64_encode(alg, strlen(alg));
    /* the key in use: what rndc to this instance needs (bindy reads it back from here) */
    const char *use = c->o->rndc_ref_b64 ? c->o->rndc_ref_b64 : c->o->rndc_secret_b64;
    char *s = b64_encode(use, strlen(use));
    json_t *obj = object(c, WL_SECRET);
    int rc = BD_OK;
    put(obj, "type", json_string("Opaque"), &rc);
    put(obj, "data",
        k && a && s ? json_pack("{s:s, s:s, s:s}", "keys.conf", k, "rndc-algorithm", a, "rndc-secret", s) : NULL, &rc);
    free(k);
    free(a);
    free(s);
    return finish(obj, rc);
}

/* spec.storage.persistentVolumeClaim without claimName: one claim per pod, from the
 * StatefulSet's volumeClaimTemplates (replicas cannot share one ReadWriteOnce claim). */
static bool claim_per_pod(const res_instance_t *in)
{
    return in->storage == RES_STORAGE_PVC &&
           json_object_get(json_object_get(in->storage_spec, "persistentVolumeClaim"), "claimName") == NULL;
}

/* The volumeClaimTemplate named "data" (the pod's volume name) for claim_per_pod. */
static json_t *claim_template(const ctx_t *c)
{
    const json_t *claim = json_object_get(c->in->storage_spec, "persistentVolumeClaim");
    const json_t *modes = json_object_get(claim, "accessModes");
    const char *size = json_string_value(json_object_get(claim, "size"));
    const char *cls = json_string_value(json_object_get(claim, "storageClassName"));
    json_t *spec = json_pack("{s:o, s:{s:{s:s}}}", "accessModes",
                             json_array_size(modes) ? json_deep_copy(modes) : json_pack("[s]", "ReadWriteOnce"),
                             "resources", "requests", "storage", size ? size : WL_DEFAULT_PVC_SIZE);
    int rc = BD_OK;
    if (cls)
        put(spec, "storageClassName", json_string(cls), &rc);
    if (rc != BD_OK) {
        json_decref(spec);
        return NULL;
    }
    return json_pack("{s:{s:s, s:o}, s:o}", "metadata", "name", "data", "labels", labels(c), "spec", spec);
}

/* DNS only. The rndc port stays off the Service: a command is for one pod (readiness
 * dials each pod's address, and 953 when its EndpointSlice names no "rndc" port), a
 * virtual IP that balances connections over pods would reach an arbitrary one, and a
 * Service port is one more way for the control channel to be published (NodePort,
 * LoadBalancer, a mesh). The container port names it for NetworkPolicies. */
static json_t *render_service(const ctx_t *c)
{
    json_t *obj = object(c, WL_SERVICE);
    int rc = BD_OK;
    put(obj, "spec",
        json_pack("{s:s, s:o, s:[{s:s, s:i, s:s, s:s}, {s:s, s:i, s:s, s:s}]}", "type", "ClusterIP", "selector",
                  selector_labels(c), "ports", "name", "dns-udp", "port", WL_DNS_PORT, "protocol", "UDP", "targetPort",
                  "dns-udp", "name", "dns-tcp", "port", WL_DNS_PORT, "protocol", "TCP", "targetPort", "dns-tcp"),
        &rc);
    return finish(obj, rc);
}

/* spec.podDisruptionBudget, else minAvailable replicas-1 when replicas > 1, else none. */
static int render_pdb(const ctx_t *c, json_t **out)
{
    *out = NULL;
    const char *min = c->in->pdb_min_available, *max = c->in->pdb_max_unavailable;
    json_t *budget;
    const char *field;
    if (min || max) {
        field = min ? "minAvailable" : "maxUnavailable";
        budget = int_or_string(min ? min : max);
    } else if (c->in->replicas > 1) {
        field = "minAvailable";
        budget = json_integer(c->in->replicas - 1);
    } else {
        return BD_OK;
    }
    json_t *spec = json_pack("{s:o, s:{s:{s:s}}}", field, budget, "selector", "matchLabels", "instance", c->name);
    json_t *obj = object(c, WL_PDB);
    int rc = BD_OK;
    put(obj, "spec", spec, &rc);
    if ((obj = finish(obj, rc)) == NULL)
        return BD_ENOMEM;
    *out = obj;
    return BD_OK;
}

/* The HA guide's defaults: prefer one pod per node, spread evenly over zones. */
static json_t *default_affinity(const ctx_t *c)
{
    return json_pack("{s:{s:[{s:i, s:{s:{s:[{s:s, s:s, s:[s]}]}, s:s}}]}}", "podAntiAffinity",
                     "preferredDuringSchedulingIgnoredDuringExecution", "weight", 100, "podAffinityTerm",
                     "labelSelector", "matchExpressions", "key", "instance", "operator", "In", "values", c->name,
                     "topologyKey", "kubernetes.io/hostname");
}

static json_t *default_spread(const ctx_t *c)
{
    return json_pack("[{s:i, s:s, s:s, s:{s:{s:s}}}]", "maxSkew", 1, "topologyKey", "topology.kubernetes.io/zone",
                     "whenUnsatisfiable", "DoNotSchedule", "labelSelector", "matchLabels", "instance", c->name);
}

static json_t *probe(int initial_delay, int period)
{
    return json_pack("{s:{s:[s, s, s, s, s]}, s:i, s:i}", "exec", "command", "dig", "@localhost", "version.bind", "txt",
                     "chaos", "initialDelaySeconds", initial_delay, "periodSeconds", period);
}

static json_t *image_of(const ctx_t *c, const res_t *cluster)
{
    if (c->in->image)
        return json_string(c->in->image);
    if (cluster && cluster->kind == RES_BIND9CLUSTER && cluster->u.cluster.image)
        return json_string(cluster->u.cluster.image);
    const char *repo = c->o->image_repository ? c->o->image_repository : WL_DEFAULT_IMAGE_REPOSITORY;
    char *s = NULL;
    if (asprintf(&s, "%s:%s", repo, c->in->version) < 0)
        return NULL;
    json_t *v = json_string(s);
    free(s);
    return v;
}

/* The pod's "data" volume; with claim_per_pod the StatefulSet's claim template gives it. */
static json_t *data_volume(const ctx_t *c)
{
    const json_t *st = c->in->storage_spec;
    if (c->in->storage == RES_STORAGE_PVC) {
        const json_t *claim = json_object_get(st, "persistentVolumeClaim");
        return json_pack("{s:s, s:{s:s}}", "name", "data", "persistentVolumeClaim", "claimName",
                         json_string_value(json_object_get(claim, "claimName")));
    }
    const json_t *ed = c->in->storage == RES_STORAGE_EMPTYDIR ? json_object_get(st, "emptyDir") : NULL;
    return json_pack("{s:s, s:o}", "name", "data", "emptyDir", ed ? json_deep_copy(ed) : json_object());
}

/* The Deployment, or with claim_per_pod the StatefulSet (k): the same pod template,
 * labels and selector, so the Service and the PDB select the pods of either. */
static json_t *render_workload(const ctx_t *c, const res_t *cluster, const char *conf, wl_obj_t k)
{
    const bool sts = k == WL_STATEFULSET;
    char hash[17];
    fnv1a64_hex(conf, hash);
    const res_instance_t *in = c->in;
    int rc = BD_OK;

    json_t *container = json_pack(
        "{s:s, s:o, s:s, s:[s, s, s, s], s:[{s:s, s:i, s:s}, {s:s, s:i, s:s}, {s:s, s:i, s:s}], s:o, s:o,"
        " s:{s:b, s:{s:[s]}, s:b, s:b},"
        " s:[{s:s, s:s, s:b}, {s:s, s:s, s:b}, {s:s, s:s}, {s:s, s:s}, {s:s, s:s}]}",
        "name", "bind9", "image", image_of(c, cluster), "imagePullPolicy", "IfNotPresent", "command", "named", "-g",
        "-c", WL_CONFIG_DIR "/named.conf", "ports", "name", "dns-udp", "containerPort", WL_DNS_PORT, "protocol", "UDP",
        "name", "dns-tcp", "containerPort", WL_DNS_PORT, "protocol", "TCP", "name", "rndc", "containerPort",
        WL_RNDC_PORT, "protocol", "TCP", "livenessProbe", probe(30, 10),
        "readinessProbe", probe(5, 5), "securityContext", "allowPrivilegeEscalation", 0, "capabilities", "drop", "ALL",
        "readOnlyRootFilesystem", 1, "runAsNonRoot", 1, "volumeMounts", "name", "config", "mountPath", WL_CONFIG_DIR,
        "readOnly", 1, "name", "keys", "mountPath", WL_KEYS_DIR, "readOnly", 1, "name", "data", "mountPath",
        WL_DATA_DIR, "name", "run", "mountPath", WL_RUN_DIR, "name", "tmp", "mountPath", "/tmp");
    if (container && in->resources)
        put(container, "resources", copy(in->resources), &rc);

    json_t *pod = json_pack(
        "{s:b, s:b, s:{s:b, s:i, s:i, s:i, s:{s:s}, s:[{s:s, s:s}]}, s:[{s:s}], s:[o],"
        " s:[{s:s, s:{s:s}}, {s:s, s:{s:s, s:i, s:[{s:s, s:s}]}}, {s:s, s:{}}, {s:s, s:{}}],"
        " s:o, s:o}",
        "automountServiceAccountToken", 0, "enableServiceLinks", 0, "securityContext", "runAsNonRoot", 1, "runAsUser",
        WL_RUN_AS, "runAsGroup", WL_RUN_AS, "fsGroup", WL_RUN_AS, "seccompProfile", "type", "RuntimeDefault",
        "sysctls", "name", "net.ipv4.ip_unprivileged_port_start", "value", "53", "readinessGates", "conditionType",
        WL_READINESS_GATE, "containers", rc == BD_OK ? container : NULL, "volumes", "name", "config", "configMap",
        "name", c->names[WL_CONFIGMAP], "name", "keys", "secret", "secretName", c->names[WL_SECRET], "defaultMode",
        0440, "items", "key", "keys.conf", "path", "keys.conf", "name", "run", "emptyDir", "name",
        "tmp", "emptyDir", "affinity", in->affinity ? copy(in->affinity) : default_affinity(c),
        "topologySpreadConstraints", in->topology_spread ? copy(in->topology_spread) : default_spread(c));
    if (rc != BD_OK) { /* json_pack released the container (stolen) only when it got it */
        json_decref(container);
        container = NULL;
    }
    if (pod && !sts && json_array_insert_new(json_object_get(pod, "volumes"), 2, data_volume(c)) != 0)
        rc = BD_ENOMEM; /* the volume, third as it always was */
    if (pod && c->o->no_readiness_gate)
        json_object_del(pod, "readinessGates");
    if (pod && in->node_selector)
        put(pod, "nodeSelector", copy(in->node_selector), &rc);
    if (pod && in->tolerations)
        put(pod, "tolerations", copy(in->tolerations), &rc);

    json_t *spec = json_pack("{s:i, s:{s:o}, s:{s:{s:o, s:{s:s}}, s:o}}", "replicas", (int)in->replicas, "selector",
                             "matchLabels", selector_labels(c), "template", "metadata", "labels", labels(c),
                             "annotations", "bindy.firestoned.io/config-hash", hash, "spec",
                             rc == BD_OK ? pod : NULL);
    if (rc != BD_OK)
        json_decref(pod);
    if (spec && sts) {
        /* serviceName: the instance's Service governs the pods' network identity;
         * Parallel: DNS servers need no ordered start; the claims are a cache of zones
         * that servers pull again, so they go with the StatefulSet, not with a scale-down */
        put(spec, "serviceName", json_string(c->names[WL_SERVICE]), &rc);
        put(spec, "podManagementPolicy", json_string("Parallel"), &rc);
        put(spec, "volumeClaimTemplates", json_pack("[o]", claim_template(c)), &rc);
        put(spec, "persistentVolumeClaimRetentionPolicy",
            json_pack("{s:s, s:s}", "whenDeleted", "Delete", "whenScaled", "Retain"), &rc);
    }
    json_t *obj = object(c, k);
    put(obj, "spec", spec, &rc);
    return finish(obj, rc);
}

/* ---- entry points ------------------------------------------------------------------ */

void wl_objects_deinit(wl_objects_t *objs)
{
    if (objs == NULL)
        return;
    for (int i = 0; i < WL_OBJ_COUNT; i++) {
        json_decref(objs->obj[i]);
        objs->obj[i] = NULL;
    }
}

int wl_render(const res_t *inst, const res_t *cluster, const wl_opts_t *opts, wl_objects_t *out, bd_err_t *err)
{
    memset(out, 0, sizeof(*out));
    if (inst == NULL || inst->kind != RES_BIND9INSTANCE || opts == NULL)
        return bd_err_set(err, BD_EINVAL, "workload: not a Bind9Instance");
    const char *ns = inst->meta.ns, *name = inst->meta.name;
    if (!is_dns1035_label(name))
        return bd_err_set(err, BD_EINVAL,
                          "workload %s/%s Bind9Instance: metadata.name must be a DNS-1035 label of at most 63 "
                          "characters (it names the Service)", ns, name);
    if (inst->meta.uid == NULL)
        return bd_err_set(err, BD_EINVAL, "workload %s/%s Bind9Instance: metadata.uid is required (ownerReferences)",
                          ns, name);
    if (opts->nupstream == 0 || opts->upstream == NULL || !opts->xfr_algorithm || !opts->xfr_secret_b64 ||
        !opts->rndc_secret_b64)
        return bd_err_set(err, BD_EINVAL, "workload %s/%s Bind9Instance: an upstream address, the transfer key and "
                          "the rndc key are required", ns, name);

    ctx_t c = {.inst = inst, .in = &inst->u.instance, .o = opts, .name = name, .ns = ns};
    c.role = c.in->role == RES_ROLE_PRIMARY ? "primary" : "secondary";
    for (int k = 0; k < WL_OBJ_COUNT; k++)
        wl_name((wl_obj_t)k, name, c.names[k]);

    int rc = BD_OK;
    char *catalog = NULL, *conf = NULL, *keys = NULL;
    size_t nup = opts->nupstream + (opts->fallback != NULL);
    bind_endpoint_t *up = calloc(nup, sizeof(*up));
    bind_endpoint_t *down = calloc(opts->nnotify ? opts->nnotify : 1, sizeof(*down));
    const char *suffix = opts->catalog_suffix ? opts->catalog_suffix : WL_DEFAULT_CATALOG_SUFFIX;
    if (up == NULL || down == NULL || asprintf(&catalog, "%s.%s.%s", name, ns, suffix) < 0) {
        catalog = NULL;
        rc = bd_err_set(err, BD_ENOMEM, "workload %s/%s Bind9Instance: out of memory", ns, name);
        goto out;
    }
    for (size_t i = 0; i < opts->nupstream; i++)
        up[i] = (bind_endpoint_t){opts->upstream[i], opts->upstream_port ? opts->upstream_port : WL_DNS_PORT};
    if (opts->fallback != NULL)
        up[nup - 1] = (bind_endpoint_t){opts->fallback, opts->fallback_port ? opts->fallback_port : WL_DNS_PORT};
    for (size_t i = 0; i < opts->nnotify; i++)
        down[i] = (bind_endpoint_t){opts->notify[i], opts->notify_port ? opts->notify_port : WL_DNS_PORT};
    bind_render_params_t prm = {
        .directory = WL_DATA_DIR, .keys_file = WL_KEYS_DIR "/keys.conf", .listen_v4 = "any",
        /* `dig @localhost` (the probes) may try ::1 first */
        .listen_v6 = "any", .port = WL_DNS_PORT,
        /* bindy's readiness sends rndc to the pod's address, from another pod */
        .control_addr = "*", .control_allow = "any", .control_port = WL_RNDC_PORT,
        .catalog = catalog, .upstream = up, .nupstream = nup, .notify = down, .nnotify = opts->nnotify,
        /* the data volume is the pod's own (emptyDir, or one claim per pod) unless it is an
         * existing claim, which replicas, or two pods of a rolling update, would share */
        .zone_files = !(c.in->storage == RES_STORAGE_PVC && !claim_per_pod(c.in)),
    };
    if ((rc = bind_render_named_conf(inst, cluster, &prm, &conf, err)) != BD_OK)
        goto out;
    /* err from bind_render_keys never quotes the secrets */
    if ((rc = bind_render_keys(opts->xfr_algorithm, opts->xfr_secret_b64, c.in->rndc_algorithm,
                               opts->rndc_ref_b64 ? opts->rndc_ref_b64 : opts->rndc_secret_b64, &keys, err)) !=
        BD_OK)
        goto out;

    out->obj[WL_SECRET] = render_secret(&c, keys);
    out->obj[WL_CONFIGMAP] = render_configmap(&c, conf);
    out->obj[WL_SERVICE] = render_service(&c);
    const wl_obj_t wk = claim_per_pod(c.in) ? WL_STATEFULSET : WL_DEPLOYMENT;
    out->obj[wk] = render_workload(&c, cluster, conf, wk);
    rc = render_pdb(&c, &out->obj[WL_PDB]);
    bool ok = rc == BD_OK && out->obj[WL_SECRET] && out->obj[WL_CONFIGMAP] && out->obj[WL_SERVICE] && out->obj[wk];
    if (!ok) {
        wl_objects_deinit(out);
        rc = bd_err_set(err, BD_ENOMEM, "workload %s/%s Bind9Instance: out of memory", ns, name);
    }
out:
    if (keys) { /* key material: do not leave it in freed memory */
        memset(keys, 0, strlen(keys));
        free(keys);
    }
    free(conf);
    free(catalog);
    free(up);
    free(down);
    return rc;
}

int wl_owned(const char *ns, const char *name, wl_ref_t out[WL_OBJ_COUNT], size_t *n, bd_err_t *err)
{
    *n = 0;
    if (ns == NULL || strlen(ns) >= WL_NAME_MAX || !is_dns1035_label(name))
        return bd_err_set(err, BD_EINVAL, "workload: %s/%s is not a Bind9Instance bindy can own objects for",
                          ns ? ns : "?", name ? name : "?");
    for (int i = WL_OBJ_COUNT - 1; i >= 0; i--) {
        wl_ref_t *r = &out[*n];
        r->api_version = kinds[i].api_version;
        r->kind = kinds[i].kind;
        r->resource = kinds[i].resource;
        snprintf(r->ns, sizeof(r->ns), "%s", ns);
        wl_name((wl_obj_t)i, name, r->name);
        (*n)++;
    }
    return BD_OK;
}

bool wl_owned_by(const json_t *obj, const char *uid)
{
    const json_t *refs = json_object_get(json_object_get(obj, "metadata"), "ownerReferences");
    size_t i;
    const json_t *r;
    if (uid == NULL)
        return false;
    json_array_foreach(refs, i, r) {
        const char *ruid = json_string_value(json_object_get(r, "uid"));
        const char *kind = json_string_value(json_object_get(r, "kind"));
        if (json_is_true(json_object_get(r, "controller")) && ruid && kind && strcmp(ruid, uid) == 0 &&
            strcmp(kind, "Bind9Instance") == 0)
            return true;
    }
    return false;
}

int wl_dump(const json_t *obj, char **out)
{
    *out = NULL;
    char *s = json_dumps(obj, JSON_SORT_KEYS | JSON_INDENT(2));
    if (s == NULL)
        return BD_ENOMEM;
    char *t = NULL;
    int n = asprintf(&t, "%s\n", s);
    free(s);
    if (n < 0)
        return BD_ENOMEM;
    *out = t;
    return BD_OK;
}

int wl_rndc_from_secret(const json_t *secret, char **alg, char **secret_b64)
{
    *alg = *secret_b64 = NULL;
    const json_t *data = json_object_get(secret, "data");
    const json_t *a = json_object_get(data, "rndc-algorithm"), *s = json_object_get(data, "rndc-secret");
    if (a == NULL || s == NULL)
        return BD_ENOTFOUND;
    if (!json_is_string(a) || !json_is_string(s))
        return BD_EINVAL;
    char *av = NULL, *sv = NULL;
    int rc = b64_decode(json_string_value(a), &av);
    if (rc == BD_OK)
        rc = b64_decode(json_string_value(s), &sv);
    if (rc == BD_OK && (*av == '\0' || *sv == '\0'))
        rc = BD_EINVAL;
    if (rc != BD_OK) {
        free(av);
        if (sv)
            memset(sv, 0, strlen(sv));
        free(sv);
        return rc;
    }
    *alg = av;
    *secret_b64 = sv;
    return BD_OK;
}

int wl_rndc_from_ref(const json_t *secret, const char *key, char **secret_b64)
{
    *secret_b64 = NULL;
    const json_t *v = json_object_get(json_object_get(secret, "data"), key ? key : WL_RNDC_REF_KEY);
    if (v == NULL)
        return BD_ENOTFOUND;
    if (!json_is_string(v))
        return BD_EINVAL;
    char *text = NULL;
    int rc = b64_decode(json_string_value(v), &text);
    if (rc != BD_OK)
        return rc;
    /* a file made with `kubectl create secret --from-file` ends with a newline */
    char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    char *out = b64_valid(p, n) ? strndup(p, n) : NULL;
    rc = b64_valid(p, n) ? (out ? BD_OK : BD_ENOMEM) : BD_EINVAL;
    memset(text, 0, strlen(text));
    free(text);
    *secret_b64 = out;
    return rc;
}
