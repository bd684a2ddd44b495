/*
 * Workload rendering (src/workload): the Kubernetes objects of a Bind9Instance.
 *
 * Golden files: every Bind9Instance in deploy/examples/ is rendered with fixed options
 * (fixed_opts below) and its objects, as a v1 List dumped with wl_dump (sorted keys), are
 * compared byte for byte with tests/data/workload/<namespace>.<name>.json. A golden file
 * without an instance, or an instance without a golden file, fails too.
 *
 * To regenerate them after an intended change, run the test with BINDY_UPDATE_GOLDEN=1:
 *   BINDY_UPDATE_GOLDEN=1 ctest --test-dir build -R workload
 * and review the diff (git diff tests/data/workload/) before committing it.
 *
 * The targeted cases check what the issue and the HA guide ask for: PDB defaults and
 * overrides, affinity/topology defaults and overrides, storage, labels, probes,
 * securityContext, the readiness gate, ownership, key handling and errors.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "apiserver.h"
#include "doc.h"
#include "validate.h"
#include "workload.h"

#define XFR_B64 "dGVzdC14ZnIta2V5LW5vdC1hLXNlY3JldA=="   /* "test-xfr-key-not-a-secret" */
#define RNDC_B64 "dGVzdC1ybmRjLWtleS1ub3QtYS1zZWNyZXQ=" /* "test-rndc-key-not-a-secret" */

static const char *const hidden_primary[] = {"10.96.0.53"};
static const char *const primaries[] = {"10.96.1.10", "10.96.1.11"};

static wl_opts_t fixed_opts(const res_t *inst)
{
    bool prim = inst->u.instance.role == RES_ROLE_PRIMARY;
    return (wl_opts_t){
        .operator_namespace = "bindy-system",
        .upstream = prim ? hidden_primary : primaries,
        .nupstream = prim ? 1 : 2,
        .xfr_algorithm = "hmac-sha256",
        .xfr_secret_b64 = XFR_B64,
        .rndc_secret_b64 = RNDC_B64,
    };
}

static const char *srcdir(void)
{
    const char *d = getenv("BINDY_SOURCE_DIR");
    return d && *d ? d : ".";
}

/* Validate (applying the CRD defaults), give it a uid as the API server would, type it. */
static res_t *typed_json(json_t *obj, const char *uid)
{
    val_catalog_t *cat = NULL;
    assert_int_equal(val_catalog_new(&cat, NULL), BD_OK);
    val_report_t rep;
    val_report_init(&rep);
    assert_int_equal(val_check(cat, obj, &rep), BD_OK);
    val_report_deinit(&rep);
    val_catalog_free(cat);
    if (uid)
        assert_int_equal(json_object_set_new(json_object_get(obj, "metadata"), "uid", json_string(uid)), 0);
    res_t *res = NULL;
    bd_err_t err;
    if (res_from_json(obj, &res, &err) != BD_OK)
        fail_msg("res_from_json: %s", err.msg);
    return res;
}

static res_t *typed(const char *yaml)
{
    doc_list_t *l = NULL;
    assert_int_equal(doc_load_buffer("t", yaml, strlen(yaml), 0, &l, NULL), BD_OK);
    assert_null(doc_list_error(l, NULL));
    res_t *res = typed_json(doc_value(doc_list_get(l, 0)), "6c1e0a3e-0000-4000-8000-000000000001");
    doc_list_free(l);
    return res;
}

/* An instance named `name` with `spec` (YAML flow mapping body) and `labels`. */
static res_t *instance(const char *name, const char *labels, const char *spec)
{
    char *y = NULL;
    assert_true(asprintf(&y,
                         "apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
                         "metadata: {name: %s, namespace: dns-system, labels: {%s}}\nspec: {%s}\n",
                         name, labels, spec) > 0);
    res_t *r = typed(y);
    free(y);
    return r;
}

static void render_ok(const res_t *inst, const res_t *cluster, wl_objects_t *objs)
{
    wl_opts_t o = fixed_opts(inst);
    bd_err_t err;
    if (wl_render(inst, cluster, &o, objs, &err) != BD_OK)
        fail_msg("wl_render: %s", err.msg);
}

/* A value at a path such as "spec.template.spec.containers[0].name" (borrowed). */
static json_t *at(json_t *v, const char *path)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && v; tok = strtok_r(NULL, ".", &save)) {
        char *br = strchr(tok, '[');
        if (br)
            *br = '\0';
        if (*tok)
            v = json_object_get(v, tok);
        for (; br && v; br = strchr(br + 1, '['))
            v = json_array_get(v, strtoul(br + 1, NULL, 10));
    }
    return v;
}

static const char *str_at(json_t *v, const char *path) { return json_string_value(at(v, path)); }

/* json equality with a readable failure */
static void assert_json(json_t *got, const char *want_json)
{
    json_error_t je;
    json_t *want = json_loads(want_json, JSON_DECODE_ANY, &je);
    if (want == NULL)
        fail_msg("bad expectation %s: %s", want_json, je.text);
    if (!json_equal(got, want)) {
        char *g = got ? json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
        fail_msg("got %s, want %s", g ? g : "(null)", want_json);
    }
    json_decref(want);
}

/* ---- golden files ------------------------------------------------------------------ */

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *s = NULL;
    size_t cap = 0, len = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            s = realloc(s, cap);
            assert_non_null(s);
        }
        memcpy(s + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (s == NULL)
        s = calloc(1, 1);
    else
        s[len] = '\0';
    return s;
}

/* The objects of one instance as a v1 List, in creation order. */
static char *dump_list(const wl_objects_t *objs)
{
    json_t *items = json_array();
    for (int k = 0; k < WL_OBJ_COUNT; k++)
        if (objs->obj[k])
            assert_int_equal(json_array_append(items, objs->obj[k]), 0);
    json_t *list = json_pack("{s:s, s:s, s:o}", "apiVersion", "v1", "kind", "List", "items", items);
    assert_non_null(list);
    char *s = NULL;
    assert_int_equal(wl_dump(list, &s), BD_OK);
    json_decref(list);
    return s;
}

static void test_golden_examples(void **state)
{
    (void)state;
    const char *files[] = {"instances.yaml", "regional.yaml", "example-com.yaml"};
    bool update = getenv("BINDY_UPDATE_GOLDEN") && strcmp(getenv("BINDY_UPDATE_GOLDEN"), "1") == 0;
    char gdir[1024];
    snprintf(gdir, sizeof(gdir), "%s/tests/data/workload", srcdir());
    size_t rendered = 0, mismatches = 0;

    for (size_t f = 0; f < sizeof(files) / sizeof(*files); f++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/deploy/examples/%s", srcdir(), files[f]);
        doc_list_t *l = NULL;
        assert_int_equal(doc_load_file(path, &l, NULL), BD_OK);
        assert_null(doc_list_error(l, NULL));
        for (size_t i = 0; i < doc_list_count(l); i++) {
            json_t *obj = doc_value(doc_list_get(l, i));
            if (strcmp(json_string_value(json_object_get(obj, "kind")), "Bind9Instance") != 0)
                continue;
            const char *name = str_at(obj, "metadata.name"), *ns = str_at(obj, "metadata.namespace");
            char uid[128];
            snprintf(uid, sizeof(uid), "uid-of-%s-%s", ns, name);
            res_t *inst = typed_json(obj, uid);
            wl_objects_t objs;
            render_ok(inst, NULL, &objs);
            char *got = dump_list(&objs);
            char *again = NULL;
            { /* rendering is deterministic */
                wl_objects_t objs2;
                render_ok(inst, NULL, &objs2);
                again = dump_list(&objs2);
                wl_objects_deinit(&objs2);
            }
            assert_string_equal(got, again);
            free(again);

            char gpath[1200];
            snprintf(gpath, sizeof(gpath), "%s/%s.%s.json", gdir, ns, name);
            if (update) {
                FILE *out = fopen(gpath, "w");
                if (out == NULL)
                    fail_msg("cannot write %s", gpath);
                fputs(got, out);
                fclose(out);
                fprintf(stderr, "updated %s\n", gpath);
            } else {
                char *want = read_all(gpath);
                if (want == NULL) {
                    fprintf(stderr, "missing golden file %s (BINDY_UPDATE_GOLDEN=1 creates it)\n", gpath);
                    mismatches++;
                } else if (strcmp(want, got) != 0) {
                    fprintf(stderr, "%s differs from the rendering:\n%s\n", gpath, got);
                    mismatches++;
                }
                free(want);
            }
            free(got);
            wl_objects_deinit(&objs);
            res_free(inst);
            rendered++;
        }
        doc_list_free(l);
    }
    assert_int_equal(rendered, 5); /* 2 in instances.yaml, 3 in regional.yaml */

    /* no stale golden file */
    DIR *d = opendir(gdir);
    assert_non_null(d);
    size_t ngolden = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (strlen(e->d_name) > 5 && strcmp(e->d_name + strlen(e->d_name) - 5, ".json") == 0)
            ngolden++;
    closedir(d);
    assert_int_equal(ngolden, rendered);
    assert_int_equal(mismatches, 0);
}

/* ---- targeted cases ---------------------------------------------------------------- */

static void test_pdb_default_explicit_and_none(void **state)
{
    (void)state;
    wl_objects_t o;
    res_t *r = instance("dns", "dns-role: primary", "replicas: 3");
    render_ok(r, NULL, &o);
    assert_json(at(o.obj[WL_PDB], "spec"), "{\"minAvailable\": 2, \"selector\": {\"matchLabels\": {\"instance\": \"dns\"}}}");
    assert_string_equal(str_at(o.obj[WL_PDB], "metadata.name"), "dns-pdb");
    assert_string_equal(str_at(o.obj[WL_PDB], "apiVersion"), "policy/v1");
    wl_objects_deinit(&o);
    res_free(r);

    r = instance("dns", "", "replicas: 2");
    render_ok(r, NULL, &o);
    assert_json(at(o.obj[WL_PDB], "spec.minAvailable"), "1");
    wl_objects_deinit(&o);
    res_free(r);

    /* replicas 1 (and 0): no PDB, which would block every drain */
    r = instance("dns", "", "replicas: 1");
    render_ok(r, NULL, &o);
    assert_null(o.obj[WL_PDB]);
    wl_objects_deinit(&o);
    res_free(r);
    r = instance("dns", "", "replicas: 0");
    render_ok(r, NULL, &o);
    assert_null(o.obj[WL_PDB]);
    assert_json(at(o.obj[WL_DEPLOYMENT], "spec.replicas"), "0");
    wl_objects_deinit(&o);
    res_free(r);

    /* explicit budgets win, as written: a percentage stays a string, a number a number */
    r = instance("dns", "", "replicas: 4, podDisruptionBudget: {minAvailable: '50%'}");
    render_ok(r, NULL, &o);
    assert_json(at(o.obj[WL_PDB], "spec"), "{\"minAvailable\": \"50%\", \"selector\": {\"matchLabels\": {\"instance\": \"dns\"}}}");
    wl_objects_deinit(&o);
    res_free(r);
    r = instance("dns", "", "replicas: 4, podDisruptionBudget: {maxUnavailable: 1}");
    render_ok(r, NULL, &o);
    assert_json(at(o.obj[WL_PDB], "spec"), "{\"maxUnavailable\": 1, \"selector\": {\"matchLabels\": {\"instance\": \"dns\"}}}");
    wl_objects_deinit(&o);
    res_free(r);
    r = instance("dns", "", "replicas: 1, podDisruptionBudget: {minAvailable: 1}");
    render_ok(r, NULL, &o);
    assert_json(at(o.obj[WL_PDB], "spec.minAvailable"), "1"); /* explicit even with one replica */
    wl_objects_deinit(&o);
    res_free(r);
}

static void test_affinity_and_spread_defaults_and_overrides(void **state)
{
    (void)state;
    wl_objects_t o;
    res_t *r = instance("primary-dns", "dns-role: primary", "replicas: 3");
    render_ok(r, NULL, &o);
    json_t *pod = at(o.obj[WL_DEPLOYMENT], "spec.template.spec");
    /* exactly the HA guide's examples */
    assert_json(json_object_get(pod, "affinity"),
                "{\"podAntiAffinity\": {\"preferredDuringSchedulingIgnoredDuringExecution\": [{\"weight\": 100,"
                " \"podAffinityTerm\": {\"labelSelector\": {\"matchExpressions\": [{\"key\": \"instance\","
                " \"operator\": \"In\", \"values\": [\"primary-dns\"]}]}, \"topologyKey\": \"kubernetes.io/hostname\"}}]}}");
    assert_json(json_object_get(pod, "topologySpreadConstraints"),
                "[{\"maxSkew\": 1, \"topologyKey\": \"topology.kubernetes.io/zone\", \"whenUnsatisfiable\":"
                " \"DoNotSchedule\", \"labelSelector\": {\"matchLabels\": {\"instance\": \"primary-dns\"}}}]");
    /* the pods carry the label those selectors use */
    assert_string_equal(str_at(o.obj[WL_DEPLOYMENT], "spec.template.metadata.labels.instance"), "primary-dns");
    wl_objects_deinit(&o);
    res_free(r);

    r = instance("dns", "",
                 "replicas: 3, affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
                 "{nodeSelectorTerms: [{matchExpressions: [{key: disk, operator: In, values: [ssd]}]}]}}}, "
                 "topologySpreadConstraints: [{maxSkew: 2, topologyKey: kubernetes.io/hostname, "
                 "whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {instance: dns}}}]");
    render_ok(r, NULL, &o);
    pod = at(o.obj[WL_DEPLOYMENT], "spec.template.spec");
    assert_json(json_object_get(pod, "affinity"),
                "{\"nodeAffinity\": {\"requiredDuringSchedulingIgnoredDuringExecution\": {\"nodeSelectorTerms\":"
                " [{\"matchExpressions\": [{\"key\": \"disk\", \"operator\": \"In\", \"values\": [\"ssd\"]}]}]}}}");
    assert_json(json_object_get(pod, "topologySpreadConstraints"),
                "[{\"maxSkew\": 2, \"topologyKey\": \"kubernetes.io/hostname\", \"whenUnsatisfiable\":"
                " \"ScheduleAnyway\", \"labelSelector\": {\"matchLabels\": {\"instance\": \"dns\"}}}]");
    /* the output is a copy: changing it leaves the typed instance alone */
    json_object_set_new(json_object_get(pod, "affinity"), "x", json_true());
    assert_null(json_object_get(r->u.instance.affinity, "x"));
    wl_objects_deinit(&o);
    res_free(r);

    /* an empty list switches the default spreading off */
    r = instance("dns", "", "replicas: 3, topologySpreadConstraints: []");
    render_ok(r, NULL, &o);
    assert_json(at(o.obj[WL_DEPLOYMENT], "spec.template.spec.topologySpreadConstraints"), "[]");
    wl_objects_deinit(&o);
    res_free(r);
}

/* Whether named keeps its zones in files (journals: IXFR to downstream servers). */
static bool zone_files(const wl_objects_t *o)
{
    const char *conf = json_string_value(json_object_get(at(o->obj[WL_CONFIGMAP], "data"), "named.conf"));
    assert_non_null(conf);
    bool files = strstr(conf, "in-memory no") != NULL;
    assert_true(files == (strstr(conf, "ixfr-from-differences") != NULL));
    assert_true(files != (strstr(conf, "in-memory yes") != NULL));
    return files;
}

static void test_storage(void **state)
{
    (void)state;
    wl_objects_t o;
    res_t *r = instance("dns", "", "replicas: 1");
    render_ok(r, NULL, &o);
    assert_json(at(o.obj[WL_DEPLOYMENT], "spec.template.spec.volumes[2]"), "{\"name\": \"data\", \"emptyDir\": {}}");
    assert_true(zone_files(&o)); /* the pod's own volume */
    assert_null(o.obj[WL_STATEFULSET]);
    wl_objects_deinit(&o);
    res_free(r);

    r = instance("dns", "", "storage: {emptyDir: {medium: Memory, sizeLimit: 64Mi}}");
    render_ok(r, NULL, &o);
    assert_json(at(o.obj[WL_DEPLOYMENT], "spec.template.spec.volumes[2]"),
                "{\"name\": \"data\", \"emptyDir\": {\"medium\": \"Memory\", \"sizeLimit\": \"64Mi\"}}");
    assert_null(o.obj[WL_STATEFULSET]);
    wl_objects_deinit(&o);
    res_free(r);

    /* an existing claim: used, not created, by a Deployment (one pod, or a shared
     * ReadWriteMany claim) */
    r = instance("dns", "", "storage: {persistentVolumeClaim: {claimName: zones}}");
    render_ok(r, NULL, &o);
    assert_json(at(o.obj[WL_DEPLOYMENT], "spec.template.spec.volumes[2]"),
                "{\"name\": \"data\", \"persistentVolumeClaim\": {\"claimName\": \"zones\"}}");
    assert_null(o.obj[WL_STATEFULSET]);
    /* the old and the new pod of a rolling update would write the same files */
    assert_false(zone_files(&o));
    wl_objects_deinit(&o);
    res_free(r);
    r = instance("dns", "", "replicas: 3, storage: {persistentVolumeClaim: {claimName: zones, accessModes: [ReadWriteMany]}}");
    render_ok(r, NULL, &o);
    assert_int_equal(json_integer_value(at(o.obj[WL_DEPLOYMENT], "spec.replicas")), 3);
    assert_string_equal(str_at(o.obj[WL_DEPLOYMENT], "spec.template.spec.volumes[2].persistentVolumeClaim.claimName"),
                        "zones");
    assert_null(o.obj[WL_STATEFULSET]);
    wl_objects_deinit(&o);
    res_free(r);

    /* claims bindy asks for: a StatefulSet with one claim per pod instead of the
     * Deployment, the same pod template otherwise */
    r = instance("dns", "", "replicas: 3, storage: {persistentVolumeClaim: {storageClassName: fast, size: 5Gi, accessModes: [ReadWriteOncePod]}}");
    render_ok(r, NULL, &o);
    wl_objects_t d;
    res_t *rd = instance("dns", "", "replicas: 3");
    render_ok(rd, NULL, &d);
    json_t *sts = o.obj[WL_STATEFULSET];
    assert_null(o.obj[WL_DEPLOYMENT]);
    assert_non_null(sts);
    assert_string_equal(str_at(sts, "kind"), "StatefulSet");
    assert_true(zone_files(&o));
    assert_string_equal(str_at(sts, "apiVersion"), "apps/v1");
    assert_string_equal(str_at(sts, "metadata.name"), "dns");
    assert_true(wl_owned_by(sts, r->meta.uid));
    assert_int_equal(json_integer_value(at(sts, "spec.replicas")), 3);
    assert_string_equal(str_at(sts, "spec.serviceName"), "dns");
    assert_string_equal(str_at(o.obj[WL_SERVICE], "metadata.name"), "dns");
    assert_json(at(sts, "spec.volumeClaimTemplates[0].spec"),
                "{\"accessModes\": [\"ReadWriteOncePod\"], \"resources\": {\"requests\": {\"storage\": \"5Gi\"}},"
                " \"storageClassName\": \"fast\"}");
    assert_string_equal(str_at(sts, "spec.volumeClaimTemplates[0].metadata.name"), "data");
    assert_string_equal(str_at(sts, "spec.volumeClaimTemplates[0].metadata.labels.instance"), "dns");
    assert_json(at(sts, "spec.persistentVolumeClaimRetentionPolicy"),
                "{\"whenDeleted\": \"Delete\", \"whenScaled\": \"Retain\"}");
    /* the pod mounts "data" from the claim template: no pod volume of that name */
    json_t *vols = at(sts, "spec.template.spec.volumes");
    size_t vi;
    json_t *vol;
    json_array_foreach(vols, vi, vol) assert_string_not_equal(str_at(vol, "name"), "data");
    assert_string_equal(str_at(sts, "spec.template.spec.containers[0].volumeMounts[2].name"), "data");
    /* the same pod otherwise, the same selector and labels: the Service and PDB select it */
    json_t *dpod = json_deep_copy(at(d.obj[WL_DEPLOYMENT], "spec.template"));
    assert_int_equal(json_array_remove(at(dpod, "spec.volumes"), 2), 0);
    assert_true(json_equal(dpod, at(sts, "spec.template")));
    json_decref(dpod);
    assert_true(json_equal(at(sts, "spec.selector"), at(d.obj[WL_DEPLOYMENT], "spec.selector")));
    assert_true(json_equal(at(sts, "metadata"), at(d.obj[WL_DEPLOYMENT], "metadata")));
    assert_json(at(o.obj[WL_PDB], "spec"), "{\"minAvailable\": 2, \"selector\": {\"matchLabels\": {\"instance\": \"dns\"}}}");
    wl_objects_deinit(&d);
    res_free(rd);
    wl_objects_deinit(&o);
    res_free(r);

    r = instance("dns", "", "storage: {persistentVolumeClaim: {}}");
    render_ok(r, NULL, &o);
    assert_json(at(o.obj[WL_STATEFULSET], "spec.volumeClaimTemplates[0].spec"),
                "{\"accessModes\": [\"ReadWriteOnce\"], \"resources\": {\"requests\": {\"storage\": \"1Gi\"}}}");
    wl_objects_deinit(&o);
    res_free(r);
}

static void test_labels_and_ownership(void **state)
{
    (void)state;
    wl_objects_t o;
    res_t *r = instance("secondary-eu-west", "dns-role: secondary, region: eu-west-1, team: x", "replicas: 2");
    render_ok(r, NULL, &o);
    for (int k = 0; k < WL_OBJ_COUNT; k++) {
        if (o.obj[k] == NULL) {
            assert_int_equal(k, WL_STATEFULSET);
            continue;
        }
        json_t *l = at(o.obj[k], "metadata.labels");
        assert_string_equal(json_string_value(json_object_get(l, "app.kubernetes.io/managed-by")), "bindy");
        assert_string_equal(json_string_value(json_object_get(l, "app.kubernetes.io/name")), "bind9");
        assert_string_equal(json_string_value(json_object_get(l, "instance")), "secondary-eu-west");
        assert_string_equal(json_string_value(json_object_get(l, "dns-role")), "secondary");
        assert_string_equal(json_string_value(json_object_get(l, "region")), "eu-west-1");
        assert_null(json_object_get(l, "team")); /* the instance's other labels are not copied */
        assert_string_equal(str_at(o.obj[k], "metadata.namespace"), "dns-system");
        assert_string_equal(str_at(o.obj[k], "kind"), wl_kind((wl_obj_t)k));
        assert_string_equal(str_at(o.obj[k], "apiVersion"), wl_api_version((wl_obj_t)k));
        assert_json(at(o.obj[k], "metadata.ownerReferences"),
                    "[{\"apiVersion\": \"bindy.firestoned.io/v1beta1\", \"kind\": \"Bind9Instance\", \"name\":"
                    " \"secondary-eu-west\", \"uid\": \"6c1e0a3e-0000-4000-8000-000000000001\", \"controller\": true,"
                    " \"blockOwnerDeletion\": true}]");
        assert_true(wl_owned_by(o.obj[k], "6c1e0a3e-0000-4000-8000-000000000001"));
        assert_false(wl_owned_by(o.obj[k], "another-uid"));
    }
    json_t *pl = at(o.obj[WL_DEPLOYMENT], "spec.template.metadata.labels");
    assert_string_equal(json_string_value(json_object_get(pl, "dns-role")), "secondary");
    assert_string_equal(json_string_value(json_object_get(pl, "region")), "eu-west-1");
    /* the selector is a subset of the pod labels */
    json_t *sel = at(o.obj[WL_DEPLOYMENT], "spec.selector.matchLabels");
    const char *k;
    json_t *v;
    json_object_foreach(sel, k, v) assert_true(json_equal(json_object_get(pl, k), v));
    assert_json(at(o.obj[WL_SERVICE], "spec.selector"), "{\"app.kubernetes.io/name\": \"bind9\", \"instance\": \"secondary-eu-west\"}");
    wl_objects_deinit(&o);
    res_free(r);

    /* no region label: no region */
    r = instance("dns", "", "replicas: 1");
    render_ok(r, NULL, &o);
    assert_null(at(o.obj[WL_DEPLOYMENT], "metadata.labels.region"));
    assert_string_equal(str_at(o.obj[WL_DEPLOYMENT], "metadata.labels.dns-role"), "primary"); /* the default role */
    wl_objects_deinit(&o);
    res_free(r);
}

static void test_pod_spec(void **state)
{
    (void)state;
    wl_objects_t o;
    res_t *r = instance("dns", "dns-role: primary",
                        "replicas: 2, nodeSelector: {disktype: ssd}, tolerations: [{key: dedicated, operator: Equal,"
                        " value: dns, effect: NoSchedule}], resources: {limits: {memory: 256Mi}, requests: {cpu: 100m}}");
    render_ok(r, NULL, &o);
    json_t *pod = at(o.obj[WL_DEPLOYMENT], "spec.template.spec");
    json_t *c = at(pod, "containers[0]");
    const char *dig = "{\"exec\": {\"command\": [\"dig\", \"@localhost\", \"version.bind\", \"txt\", \"chaos\"]},";
    char want[512];
    snprintf(want, sizeof(want), "%s \"initialDelaySeconds\": 30, \"periodSeconds\": 10}", dig);
    assert_json(json_object_get(c, "livenessProbe"), want);
    snprintf(want, sizeof(want), "%s \"initialDelaySeconds\": 5, \"periodSeconds\": 5}", dig);
    assert_json(json_object_get(c, "readinessProbe"), want);
    assert_json(json_object_get(c, "securityContext"),
                "{\"allowPrivilegeEscalation\": false, \"capabilities\": {\"drop\": [\"ALL\"]},"
                " \"readOnlyRootFilesystem\": true, \"runAsNonRoot\": true}");
    assert_json(at(pod, "securityContext.runAsNonRoot"), "true");
    assert_true(json_integer_value(at(pod, "securityContext.runAsUser")) > 0);
    assert_json(json_object_get(pod, "readinessGates"), "[{\"conditionType\": \"bindy.firestoned.io/serials-published\"}]");
    assert_json(json_object_get(pod, "nodeSelector"), "{\"disktype\": \"ssd\"}");
    assert_json(json_object_get(pod, "tolerations"),
                "[{\"key\": \"dedicated\", \"operator\": \"Equal\", \"value\": \"dns\", \"effect\": \"NoSchedule\"}]");
    assert_json(json_object_get(c, "resources"), "{\"limits\": {\"memory\": \"256Mi\"}, \"requests\": {\"cpu\": \"100m\"}}");
    assert_json(json_object_get(c, "ports"),
                "[{\"name\": \"dns-udp\", \"containerPort\": 53, \"protocol\": \"UDP\"},"
                " {\"name\": \"dns-tcp\", \"containerPort\": 53, \"protocol\": \"TCP\"},"
                " {\"name\": \"rndc\", \"containerPort\": 953, \"protocol\": \"TCP\"}]");
    /* the control channel is for bindy, pod by pod: named, but not on the Service */
    assert_json(at(o.obj[WL_SERVICE], "spec.ports"),
                "[{\"name\": \"dns-udp\", \"port\": 53, \"protocol\": \"UDP\", \"targetPort\": \"dns-udp\"},"
                " {\"name\": \"dns-tcp\", \"port\": 53, \"protocol\": \"TCP\", \"targetPort\": \"dns-tcp\"}]");
    assert_string_equal(str_at(c, "image"), "docker.io/internetsystemsconsortium/bind9:9.18");
    wl_objects_deinit(&o);
    res_free(r);

    /* nothing set: no nodeSelector, tolerations or resources at all */
    r = instance("dns", "", "replicas: 1");
    render_ok(r, NULL, &o);
    pod = at(o.obj[WL_DEPLOYMENT], "spec.template.spec");
    {
        /* without the gate's setter, the gate is left out (no pod would ever be Ready) */
        wl_opts_t nog = fixed_opts(r);
        nog.no_readiness_gate = true;
        wl_objects_t o2;
        bd_err_t err;
        assert_int_equal(wl_render(r, NULL, &nog, &o2, &err), BD_OK);
        assert_null(at(o2.obj[WL_DEPLOYMENT], "spec.template.spec.readinessGates"));
        assert_non_null(at(o2.obj[WL_DEPLOYMENT], "spec.template.spec.containers"));
        wl_objects_deinit(&o2);
    }
    assert_null(json_object_get(pod, "nodeSelector"));
    assert_null(json_object_get(pod, "tolerations"));
    assert_null(at(pod, "containers[0].resources"));
    wl_objects_deinit(&o);
    res_free(r);
}

static void test_image_choice(void **state)
{
    (void)state;
    wl_objects_t o;
    res_t *cl = typed("apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Cluster\n"
                      "metadata: {name: c, namespace: dns-system}\nspec: {image: registry.example/bind:cluster}\n");
    res_t *r = instance("dns", "", "version: '9.20', clusterRef: c");
    render_ok(r, cl, &o);
    assert_string_equal(str_at(o.obj[WL_DEPLOYMENT], "spec.template.spec.containers[0].image"), "registry.example/bind:cluster");
    wl_objects_deinit(&o);
    render_ok(r, NULL, &o);
    assert_string_equal(str_at(o.obj[WL_DEPLOYMENT], "spec.template.spec.containers[0].image"),
                        "docker.io/internetsystemsconsortium/bind9:9.20");
    wl_objects_deinit(&o);
    wl_opts_t opts = fixed_opts(r);
    opts.image_repository = "mirror.local/bind9";
    assert_int_equal(wl_render(r, NULL, &opts, &o, NULL), BD_OK);
    assert_string_equal(str_at(o.obj[WL_DEPLOYMENT], "spec.template.spec.containers[0].image"), "mirror.local/bind9:9.20");
    wl_objects_deinit(&o);
    res_free(r);
    r = instance("dns", "", "image: registry.example/own:1, clusterRef: c");
    render_ok(r, cl, &o);
    assert_string_equal(str_at(o.obj[WL_DEPLOYMENT], "spec.template.spec.containers[0].image"), "registry.example/own:1");
    wl_objects_deinit(&o);
    res_free(r);
    res_free(cl);
}

static void test_config_and_keys(void **state)
{
    (void)state;
    wl_objects_t o;
    res_t *r = instance("secondary-dns", "dns-role: secondary", "replicas: 2, rndcKey: {algorithm: hmac-sha512}");
    render_ok(r, NULL, &o);
    const char *conf = str_at(o.obj[WL_CONFIGMAP], "data.named.conf");
    assert_null(conf); /* "named.conf" is one key: look it up directly */
    conf = json_string_value(json_object_get(at(o.obj[WL_CONFIGMAP], "data"), "named.conf"));
    assert_non_null(conf);
    assert_non_null(strstr(conf, "include \"/etc/bindy/keys/keys.conf\";"));
    assert_non_null(strstr(conf, "zone \"secondary-dns.dns-system.catalog.bindy.invalid\" default-primaries "
                                 "{ 10.96.1.10 port 53 key \"bindy-xfr\"; 10.96.1.11 port 53 key \"bindy-xfr\"; }"));
    assert_null(strstr(conf, XFR_B64));
    assert_null(strstr(conf, RNDC_B64));
    assert_null(strstr(conf, "$ORIGIN")); /* no zone data */
    /* bindy's rndc reaches the pod at its address; the key is what admits it */
    assert_non_null(strstr(conf, "controls {\n    inet * port 953 allow { any; } keys { \"bindy-rndc\"; };\n"
                                 "    inet :: port 953 allow { any; } keys { \"bindy-rndc\"; };\n};"));
    /* the pod template changes with named.conf, so a new configuration rolls the pods */
    assert_non_null(at(o.obj[WL_DEPLOYMENT], "spec.template.metadata.annotations"));

    /* the Secret: keys.conf for named, the rndc key to read back next time */
    json_t *sec = o.obj[WL_SECRET];
    assert_string_equal(str_at(sec, "type"), "Opaque");
    assert_string_equal(str_at(sec, "metadata.name"), "secondary-dns-keys");
    char *alg = NULL, *key = NULL;
    assert_int_equal(wl_rndc_from_secret(sec, &alg, &key), BD_OK);
    assert_string_equal(alg, "hmac-sha512");
    assert_string_equal(key, RNDC_B64);
    free(alg);
    free(key);
    /* only keys.conf is mounted */
    assert_json(at(o.obj[WL_DEPLOYMENT], "spec.template.spec.volumes[1].secret.items"),
                "[{\"key\": \"keys.conf\", \"path\": \"keys.conf\"}]");

    json_t *bad = json_pack("{s:{s:s, s:s}}", "data", "rndc-algorithm", "aG1hYy1zaGEyNTY=", "rndc-secret", "not base64!");
    assert_int_equal(wl_rndc_from_secret(bad, &alg, &key), BD_EINVAL);
    assert_null(alg);
    assert_null(key);
    json_decref(bad);
    bad = json_pack("{s:{s:s}}", "data", "other", "eA==");
    assert_int_equal(wl_rndc_from_secret(bad, &alg, &key), BD_ENOTFOUND);
    json_decref(bad);
    assert_int_equal(wl_rndc_from_secret(NULL, &alg, &key), BD_ENOTFOUND);
    wl_objects_deinit(&o);
    res_free(r);
}

/* spec.rndcKey.secretRef: the key read from the user's Secret (data values are base64 of
 * the key text); nothing that could break out of keys.conf's quoted secret is taken. */
static void test_rndc_from_ref(void **state)
{
    (void)state;
    static const struct {
        const char *data, *key;
        int rc;
        const char *want;
    } cases[] = {
        /* "c2VjcmV0LWtleQ==\n" */
        {"{\"secret\": \"YzJWamNtVjBMV3RsZVE9PQo=\"}", NULL, BD_OK, "c2VjcmV0LWtleQ=="},
        {"{\"rndc.key\": \"YzJWamNtVjBMV3RsZVE9PQ==\"}", "rndc.key", BD_OK, "c2VjcmV0LWtleQ=="},
        {"{\"rndc.key\": \"YzJWamNtVjBMV3RsZVE9PQ==\"}", NULL, BD_ENOTFOUND, NULL},
        {"{}", "k", BD_ENOTFOUND, NULL},
        /* "abc\"; };" */
        {"{\"secret\": \"YWJjIjsgfTs=\"}", NULL, BD_EINVAL, NULL},
        /* "c2Vj cmV0" (a space inside) */
        {"{\"secret\": \"YzJWaiBjbVYw\"}", NULL, BD_EINVAL, NULL},
        {"{\"secret\": \"not base64!\"}", NULL, BD_EINVAL, NULL},
        {"{\"secret\": 7}", NULL, BD_EINVAL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        char js[256];
        snprintf(js, sizeof(js), "{\"data\": %s}", cases[i].data);
        json_t *sec = json_loads(js, 0, NULL);
        assert_non_null(sec);
        char *got = (char *)1;
        int rc = wl_rndc_from_ref(sec, cases[i].key, &got);
        if (rc != cases[i].rc)
            fail_msg("case %zu: %s, want %s", i, bd_strerror(rc), bd_strerror(cases[i].rc));
        if (cases[i].want)
            assert_string_equal(got, cases[i].want);
        else
            assert_null(got);
        free(got);
        json_decref(sec);
    }
    /* used, the key lands in keys.conf and rndc-secret instead of the generated one */
    wl_objects_t o;
    res_t *r = instance("dns", "", "replicas: 1");
    wl_opts_t opts = fixed_opts(r);
    opts.rndc_ref_b64 = "c2VjcmV0LWtleQ==";
    bd_err_t err;
    assert_int_equal(wl_render(r, NULL, &opts, &o, &err), BD_OK);
    char *alg = NULL, *sec = NULL;
    assert_int_equal(wl_rndc_from_secret(o.obj[WL_SECRET], &alg, &sec), BD_OK);
    assert_string_equal(sec, "c2VjcmV0LWtleQ==");
    free(alg);
    free(sec);
    wl_objects_deinit(&o);
    res_free(r);
}

static void test_errors(void **state)
{
    (void)state;
    wl_objects_t o;
    bd_err_t err;
    res_t *r = instance("dns", "", "replicas: 1");
    wl_opts_t opts = fixed_opts(r);

    opts.nupstream = 0;
    assert_int_equal(wl_render(r, NULL, &opts, &o, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "dns-system/dns"));
    for (int k = 0; k < WL_OBJ_COUNT; k++)
        assert_null(o.obj[k]);
    opts = fixed_opts(r);
    opts.rndc_secret_b64 = NULL;
    assert_int_equal(wl_render(r, NULL, &opts, &o, &err), BD_EINVAL);
    assert_null(strstr(err.msg, XFR_B64));

    /* a cluster is not an instance */
    res_t *cl = typed("apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Cluster\n"
                      "metadata: {name: c, namespace: dns-system}\nspec: {}\n");
    opts = fixed_opts(r);
    assert_int_equal(wl_render(cl, NULL, &opts, &o, &err), BD_EINVAL);
    res_free(cl);
    res_free(r);

    /* no uid (a manifest never applied): no ownerReference possible */
    doc_list_t *l = NULL;
    const char *y = "apiVersion: bindy.firestoned.io/v1beta1\nkind: Bind9Instance\n"
                    "metadata: {name: dns, namespace: dns-system}\nspec: {}\n";
    assert_int_equal(doc_load_buffer("t", y, strlen(y), 0, &l, NULL), BD_OK);
    r = typed_json(doc_value(doc_list_get(l, 0)), NULL);
    assert_int_equal(wl_render(r, NULL, &opts, &o, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "uid"));
    res_free(r);
    doc_list_free(l);

    /* a name that cannot name a Service */
    r = instance("dns.example", "", "replicas: 1");
    assert_int_equal(wl_render(r, NULL, &opts, &o, &err), BD_EINVAL);
    assert_non_null(strstr(err.msg, "DNS-1035"));
    res_free(r);
}

static void test_owned_for_deletion(void **state)
{
    (void)state;
    wl_ref_t refs[WL_OBJ_COUNT];
    size_t n = 0;
    assert_int_equal(wl_owned("dns-system", "primary-dns", refs, &n, NULL), BD_OK);
    assert_int_equal(n, WL_OBJ_COUNT);
    /* deletion order: the reverse of creation, every kind (the PDB, and the Deployment
     * or the StatefulSet, may be absent) */
    const char *want[][4] = {
        {"policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", "primary-dns-pdb"},
        {"apps/v1", "StatefulSet", "statefulsets", "primary-dns"},
        {"apps/v1", "Deployment", "deployments", "primary-dns"},
        {"v1", "Service", "services", "primary-dns"},
        {"v1", "ConfigMap", "configmaps", "primary-dns-config"},
        {"v1", "Secret", "secrets", "primary-dns-keys"},
    };
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(refs[i].api_version, want[i][0]);
        assert_string_equal(refs[i].kind, want[i][1]);
        assert_string_equal(refs[i].resource, want[i][2]);
        assert_string_equal(refs[i].name, want[i][3]);
        assert_string_equal(refs[i].ns, "dns-system");
    }
    /* the names match what wl_render produces */
    wl_objects_t o;
    res_t *r = instance("primary-dns", "", "replicas: 2, storage: {persistentVolumeClaim: {}}");
    render_ok(r, NULL, &o);
    for (int k = 0; k < WL_OBJ_COUNT; k++) {
        char name[WL_OBJ_NAME_MAX];
        assert_int_equal(wl_name((wl_obj_t)k, "primary-dns", name), BD_OK);
        if (k == WL_DEPLOYMENT) { /* the StatefulSet replaces it */
            assert_null(o.obj[k]);
            assert_string_equal(refs[WL_OBJ_COUNT - 1 - (size_t)k].name, name);
            continue;
        }
        assert_non_null(o.obj[k]);
        assert_string_equal(str_at(o.obj[k], "metadata.name"), name);
        assert_string_equal(refs[WL_OBJ_COUNT - 1 - (size_t)k].name, name);
    }
    wl_objects_deinit(&o);
    res_free(r);
    assert_int_equal(wl_owned("dns-system", "Bad_Name", refs, &n, NULL), BD_EINVAL);
    assert_int_equal(n, 0);
}

/* The API-server double accepts every rendered object, of both shapes (Deployment, and
 * StatefulSet with claim templates). */
static void test_apiserver_accepts_objects(void **state)
{
    (void)state;
    bd_apiserver_t *s = NULL;
    bd_err_t err;
    if (bd_apiserver_start(NULL, &s, &err) != BD_OK)
        fail_msg("apiserver: %s", err.msg);
    if (bd_apiserver_create(s, "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"dns-system\"}}",
                            &err) != BD_OK)
        fail_msg("namespace: %s", err.msg);
    static const char *const specs[][2] = {
        {"primary-us-east", "replicas: 3, storage: {persistentVolumeClaim: {size: 2Gi}}, nodeSelector: {a: b}"},
        {"primary-us-west", "replicas: 2, nodeSelector: {a: b}"},
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(*specs); i++) {
        res_t *r = instance(specs[i][0], "dns-role: primary, region: us-east-1", specs[i][1]);
        wl_objects_t o;
        render_ok(r, NULL, &o);
        size_t n = 0;
        for (int k = 0; k < WL_OBJ_COUNT; k++) {
            if (o.obj[k] == NULL)
                continue;
            n++;
            char *text = NULL;
            assert_int_equal(wl_dump(o.obj[k], &text), BD_OK);
            if (bd_apiserver_create(s, text, &err) != BD_OK)
                fail_msg("%s rejected: %s", wl_kind((wl_obj_t)k), err.msg);
            free(text);
            const char *av = wl_api_version((wl_obj_t)k), *slash = strchr(av, '/');
            char group[64];
            snprintf(group, sizeof(group), "%.*s", slash ? (int)(slash - av) : 0, av);
            char *got =
                bd_apiserver_get(s, group, wl_resource((wl_obj_t)k), "dns-system", str_at(o.obj[k], "metadata.name"));
            assert_non_null(got);
            free(got);
        }
        assert_int_equal(n, WL_OBJ_COUNT - 1); /* a Deployment or a StatefulSet */
        wl_objects_deinit(&o);
        res_free(r);
    }
    bd_apiserver_stop(s);
}

/* Allocation failures (curl's torture idea): fail the n-th jansson allocation for every n
 * until rendering succeeds; each failure must be a clean BD_ENOMEM (ASan checks leaks). */
static long alloc_budget = -1;
static void *limited_malloc(size_t n)
{
    if (alloc_budget == 0)
        return NULL;
    if (alloc_budget > 0)
        alloc_budget--;
    return malloc(n);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    res_t *r = instance("dns", "dns-role: secondary, region: r1",
                        "replicas: 3, storage: {persistentVolumeClaim: {storageClassName: fast}}, "
                        "nodeSelector: {a: b}, tolerations: [{key: k, operator: Exists}], resources: {limits: {cpu: '1'}}, "
                        "affinity: {nodeAffinity: {}}");
    wl_opts_t opts = fixed_opts(r);
    opts.operator_namespace = "bindy-system";
    int rc = BD_ENOMEM;
    long n;
    for (n = 0; rc == BD_ENOMEM && n < 100000; n++) {
        wl_objects_t o;
        json_set_alloc_funcs(limited_malloc, free);
        alloc_budget = n;
        rc = wl_render(r, NULL, &opts, &o, NULL);
        alloc_budget = -1;
        json_set_alloc_funcs(malloc, free);
        if (rc == BD_ENOMEM)
            for (int k = 0; k < WL_OBJ_COUNT; k++)
                assert_null(o.obj[k]);
        else
            assert_int_equal(rc, BD_OK);
        wl_objects_deinit(&o);
    }
    assert_int_equal(rc, BD_OK);
    assert_true(n > 100); /* the budget really was exercised */
    res_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_examples),
        cmocka_unit_test(test_pdb_default_explicit_and_none),
        cmocka_unit_test(test_affinity_and_spread_defaults_and_overrides),
        cmocka_unit_test(test_storage),
        cmocka_unit_test(test_labels_and_ownership),
        cmocka_unit_test(test_pod_spec),
        cmocka_unit_test(test_image_choice),
        cmocka_unit_test(test_config_and_keys),
        cmocka_unit_test(test_rndc_from_ref),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_owned_for_deletion),
        cmocka_unit_test(test_apiserver_accepts_objects),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
