#!/bin/bash
# deploy_test.sh BD_APISERVER SOURCE_DIR [BINDY]
#
# Checks deploy/ against the API-server double with real kubectl:
#   - deploy/crds/ holds exactly schema/crds/*.yaml, byte for byte;
#   - `bindy validate` accepts every manifest in deploy/operator (when BINDY is built);
#   - with the newest and the oldest kubectl present: apply deploy/crds/ and wait for them
#     to be Established, apply each numbered file of deploy/operator in install order
#     (every object "created"), then `apply -k deploy/operator` (nothing changes: the
#     kustomization lists the same objects), and read back the key fields: the Deployment
#     (3 replicas, selector, service account, command, the HA guide's env block with
#     POD_NAME from metadata.name, probes on the named port, anti-affinity, zone spread,
#     non-root read-only securityContext, the journal volume), the Role (the guide's Lease
#     rule verbatim, list/watch), the ClusterRole (no wildcards, status and finalizers,
#     pods/status), the bindings, the PDB and both Services; finally the PVC option
#     (journal-pvc.yaml), as a one-line patch and as a kustomize overlay, swaps emptyDir
#     for a per-pod claim template.
# Every kubectl call is bounded by a timeout. Prints "N passed, M failed".
set -u
BIN=$1
SRC=$2
BINDY=${3:-}
KDIR=${KUBECTL_DIR:-/usr/lib/google-cloud-sdk/bin}
T=30

. "$SRC/tests/apiserver/double_env.sh" deploy-test

# ---- (a) deploy/crds == schema/crds ----------------------------------------------------
rm -f "$WORK/out"
nschema=0
same=1
for f in "$SRC"/schema/crds/*.yaml; do
    nschema=$((nschema + 1))
    d="$SRC/deploy/crds/$(basename "$f")"
    if ! cmp -s "$f" "$d"; then
        echo "differs or missing: $d" >>"$WORK/out"
        same=0
    fi
done
for d in "$SRC"/deploy/crds/*; do
    [ -e "$SRC/schema/crds/$(basename "$d")" ] || { echo "extra: $d" >>"$WORK/out"; same=0; }
done
if [ $same = 1 ] && [ $nschema -gt 0 ]; then
    ok "deploy/crds/ holds exactly schema/crds/*.yaml ($nschema files, byte-identical)"
else bad "deploy/crds/ differs from schema/crds/"; fi

MANIFESTS=$(ls "$SRC"/deploy/operator/[0-9]*.yaml)
NDOCS=$(cat $MANIFESTS | grep -c '^kind:')

# ---- bindy validate ------------------------------------------------------------------------
if [ -n "$BINDY" ] && [ -x "$BINDY" ]; then
    if timeout $T "$BINDY" validate $MANIFESTS "$SRC"/deploy/crds/ >"$WORK/out" 2>&1 &&
        grep -q "^$((NDOCS + nschema)) objects checked: all valid" "$WORK/out"; then
        ok "bindy validate deploy/operator/ deploy/crds/ ($((NDOCS + nschema)) objects)"
    else bad "bindy validate"; fi
else
    echo "skip - bindy validate (bindy is not built: ${BINDY:-no path given})"
fi

# ---- (b) against the API-server double ---------------------------------------------------
# py 'python expression over d (the JSON in $WORK/out)' [message]: asserts
# (on failure $WORK/out holds the assertion instead of the JSON, for bad() to show)
py() {
    python3 - "$WORK/out" "$1" <<'EOF' 2>"$WORK/pyerr" || { mv "$WORK/pyerr" "$WORK/out"; return 1; }
import json, sys
d = json.load(open(sys.argv[1]))
ok = eval("(" + sys.argv[2] + ")")
if not ok:
    print("assertion failed: " + sys.argv[2], file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
}

KUBECTLS=""
for minor in 33 32 31 30 29 28 27; do
    [ -x "$KDIR/kubectl.1.$minor" ] && { KUBECTLS="$KDIR/kubectl.1.$minor"; break; }
done
for minor in 27 28 29 30 31 32; do
    if [ -x "$KDIR/kubectl.1.$minor" ]; then
        [ "$KDIR/kubectl.1.$minor" != "$KUBECTLS" ] && KUBECTLS="$KUBECTLS $KDIR/kubectl.1.$minor"
        break
    fi
done
[ -z "$KUBECTLS" ] && command -v kubectl >/dev/null && KUBECTLS=$(command -v kubectl)
if [ -z "$KUBECTLS" ]; then
    echo "no kubectl in $KDIR or on PATH"
    echo "$PASS passed, $((FAIL + 1)) failed"
    exit 1
fi

for K in $KUBECTLS; do
    V="$(basename "$K")"
    start_server
    [ -n "$PORT" ] || { bad "$V: bd-apiserver did not start"; cat "$WORK/server.log"; continue; }

    if kc apply -f "$SRC/deploy/crds/" && [ "$(count ' created$')" -eq "$nschema" ]; then
        ok "$V: apply -f deploy/crds/ ($nschema created)"
    else bad "$V: apply -f deploy/crds/"; fi
    if kc wait --for condition=Established --timeout=20s -f "$SRC/deploy/crds/" &&
        [ "$(count ' condition met$')" -eq "$nschema" ]; then
        ok "$V: wait --for condition=Established -f deploy/crds/ (as deploy/README.md says)"
    else bad "$V: wait Established"; fi

    created=0
    allok=1
    for f in $MANIFESTS; do
        n=$(grep -c '^kind:' "$f")
        if kc apply -f "$f" && [ "$(count ' created$')" -eq "$n" ]; then
            created=$((created + n))
        else
            allok=0
            bad "$V: apply -f deploy/operator/$(basename "$f")"
        fi
    done
    [ $allok = 1 ] && ok "$V: apply each of deploy/operator/[0-9]*.yaml in order ($created created)"

    # kubectl reports a PodDisruptionBudget "configured" on every apply (its selector's
    # patch strategy is "replace", so the computed patch is never empty); all else unchanged
    if kc apply -k "$SRC/deploy/operator" && [ "$(count ' unchanged$')" -eq $((NDOCS - 1)) ] &&
        grep -Eq '^poddisruptionbudget.policy/bindy (unchanged|configured)$' "$WORK/out"; then
        ok "$V: apply -k deploy/operator changes nothing (the kustomization lists the same $NDOCS objects)"
    else bad "$V: apply -k deploy/operator"; fi

    if kc get namespace dns-system -o json && py 'd["metadata"]["name"] == "dns-system"'; then
        ok "$V: namespace dns-system"
    else bad "$V: namespace"; fi

    if kc get serviceaccount bindy -n dns-system -o json && py 'd["metadata"]["namespace"] == "dns-system"'; then
        ok "$V: serviceaccount dns-system/bindy"
    else bad "$V: serviceaccount"; fi

    if kc get deployment bindy -n dns-system -o json && py '
d["spec"]["replicas"] == 3 and
d["spec"]["selector"] == {"matchLabels": {"app": "bindy"}} and
d["spec"]["template"]["metadata"]["labels"]["app"] == "bindy" and
d["spec"]["template"]["spec"]["serviceAccountName"] == "bindy"'; then
        ok "$V: deployment bindy: 3 replicas, selector app=bindy, serviceAccountName bindy"
    else bad "$V: deployment replicas/selector/serviceAccountName"; fi

    if py '
[c["name"] for c in d["spec"]["template"]["spec"]["containers"]] == ["operator"] and
(d["spec"]["template"]["spec"]["containers"][0].get("command", []) +
 d["spec"]["template"]["spec"]["containers"][0].get("args", [])) ==
 ["bindy", "run", "--state-dir", "/var/lib/bindy"]'; then
        ok "$V: container operator runs bindy run --state-dir /var/lib/bindy"
    else bad "$V: container command"; fi

    if py '
d["spec"]["template"]["spec"]["containers"][0]["env"] == [
 {"name": "ENABLE_LEADER_ELECTION", "value": "true"},
 {"name": "LEASE_NAME", "value": "bindy-leader"},
 {"name": "LEASE_NAMESPACE", "value": "dns-system"},
 {"name": "LEASE_DURATION_SECONDS", "value": "15"},
 {"name": "LEASE_RENEW_DEADLINE_SECONDS", "value": "10"},
 {"name": "LEASE_RETRY_PERIOD_SECONDS", "value": "2"},
 {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]'; then
        ok "$V: env is the HA guide's block (POD_NAME from fieldRef metadata.name)"
    else bad "$V: env block"; fi

    if py '
(lambda c:
 {"name": "http", "containerPort": 8080, "protocol": "TCP"} in c["ports"] and
 c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"} and
 c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"} and
 c["startupProbe"]["httpGet"]["path"] == "/healthz" and
 {p["name"]: (p["containerPort"], p["protocol"]) for p in c["ports"]}.get("dns-tcp") == (5353, "TCP") and
 {p["name"]: (p["containerPort"], p["protocol"]) for p in c["ports"]}.get("dns-udp") == (5353, "UDP") and
 c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
)(d["spec"]["template"]["spec"]["containers"][0])'; then
        ok "$V: probes /readyz and /healthz on the named port http (8080), dns ports, resources"
    else bad "$V: probes/ports/resources"; fi

    if py '
(lambda s, c:
 s["securityContext"]["runAsNonRoot"] is True and s["securityContext"]["runAsUser"] != 0 and
 s["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault" and
 c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                          "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}} and
 {"name": "journal", "mountPath": "/var/lib/bindy"} in c["volumeMounts"] and
 [v for v in s["volumes"] if v["name"] == "journal"][0].get("emptyDir") is not None
)(d["spec"]["template"]["spec"], d["spec"]["template"]["spec"]["containers"][0])'; then
        ok "$V: non-root, read-only root, capabilities dropped, journal emptyDir at /var/lib/bindy"
    else bad "$V: securityContext/journal volume"; fi

    if py '
(lambda s:
 s["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"] ==
   {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "bindy"}}} and
 "requiredDuringSchedulingIgnoredDuringExecution" not in s["affinity"]["podAntiAffinity"] and
 s["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone" and
 s["topologySpreadConstraints"][0]["labelSelector"] == {"matchLabels": {"app": "bindy"}}
)(d["spec"]["template"]["spec"])'; then
        ok "$V: preferred anti-affinity on kubernetes.io/hostname, spread over topology.kubernetes.io/zone"
    else bad "$V: affinity/topology spread"; fi

    if kc get role bindy -n dns-system -o json && py '
{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
 "verbs": ["get", "create", "update", "patch"]} in d["rules"] and
{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
 "verbs": ["list", "watch"]} in d["rules"] and
{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]} in d["rules"] and
len(d["rules"]) == 3'; then
        ok "$V: role dns-system/bindy: the guide's Lease rule verbatim, list+watch, own pod label"
    else bad "$V: role bindy"; fi

    # the ClusterRole names every plural the CRDs define, read from deploy/crds
    kc get crd -o json && cp "$WORK/out" "$WORK/crds.json"
    if kc get clusterrole bindy -o json && python3 - "$WORK/out" "$WORK/crds.json" <<'EOF' >>"$WORK/out" 2>&1
import json, sys
rules = json.load(open(sys.argv[1]))["rules"]
plurals = sorted(c["spec"]["names"]["plural"] for c in json.load(open(sys.argv[2]))["items"])
def has(groups, resources, verbs):
    return any(r["apiGroups"] == groups and sorted(r["resources"]) == sorted(resources) and
               r["verbs"] == verbs for r in rules)
checks = [
    all("*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"]
        for r in rules),
    has(["bindy.firestoned.io"], plurals, ["get", "list", "watch"]),
    has(["bindy.firestoned.io"], [p + "/status" for p in plurals], ["update", "patch"]),
    has(["bindy.firestoned.io"], [p + "/finalizers" for p in plurals], ["update", "patch"]),
    has(["bindy.firestoned.io"], [p for p in plurals if p not in ("bind9clusters", "bind9instances")],
        ["patch"]),  # its finalizer on zones and records
    not any(p in r["resources"] and set(r["verbs"]) - {"get", "list", "watch", "patch"}
            for r in rules for p in plurals),  # never updates or deletes them
    not any(p in r["resources"] and "patch" in r["verbs"]
            for r in rules for p in ("bind9clusters", "bind9instances")),
    has(["apps"], ["deployments", "statefulsets"], ["get", "list", "watch", "create", "update", "patch", "delete"]),
    has([""], ["services", "configmaps", "secrets"],
        ["get", "list", "watch", "create", "update", "patch", "delete"]),
    has(["policy"], ["poddisruptionbudgets"],
        ["get", "list", "watch", "create", "update", "patch", "delete"]),
    has([""], ["pods"], ["get", "list", "watch"]),
    has([""], ["pods/status"], ["patch"]),
    has(["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch"]),
    has([""], ["events"], ["create", "patch"]),
]
bad = [i for i, c in enumerate(checks) if not c]
print("plurals:", plurals, "failed checks:", bad)
sys.exit(1 if bad or len(plurals) != 11 else 0)
EOF
    then
        ok "$V: clusterrole bindy: CRDs read-only + status/finalizers, managed objects, no wildcards"
    else bad "$V: clusterrole bindy"; fi

    if kc get clusterrolebinding bindy -o json && py '
d["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bindy"} and
d["subjects"] == [{"kind": "ServiceAccount", "name": "bindy", "namespace": "dns-system"}]' &&
        kc get rolebinding bindy -n dns-system -o json && py '
d["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bindy"} and
d["subjects"] == [{"kind": "ServiceAccount", "name": "bindy", "namespace": "dns-system"}]'; then
        ok "$V: clusterrolebinding and rolebinding bind the ServiceAccount dns-system/bindy"
    else bad "$V: bindings"; fi

    if kc get poddisruptionbudget bindy -n dns-system -o json && py '
d["spec"]["minAvailable"] == 2 and d["spec"]["selector"] == {"matchLabels": {"app": "bindy"}}'; then
        ok "$V: poddisruptionbudget minAvailable 2"
    else bad "$V: pdb"; fi

    if kc get service bindy-hidden-primary -n dns-system -o json && py '
d["spec"]["selector"] == {"app": "bindy", "bindy.firestoned.io/hidden-primary": "true"} and
sorted((p["port"], p["protocol"], p["targetPort"]) for p in d["spec"]["ports"]) ==
  [(53, "TCP", "dns-tcp"), (53, "UDP", "dns-udp")]' &&
        kc get service bindy-metrics -n dns-system -o json && py '
d["spec"]["selector"] == {"app": "bindy"} and
[(p["port"], p["targetPort"]) for p in d["spec"]["ports"]] == [(8080, "http")]'; then
        ok "$V: services bindy-hidden-primary (53 TCP+UDP, leader label) and bindy-metrics (8080)"
    else bad "$V: services"; fi

    # The PVC option, as documented in journal-pvc.yaml. Its semantics (a strategic merge
    # keyed by volume name: emptyDir dropped, the tmp volume kept) are checked with
    # kubectl's own implementation (--local, and kustomize for the overlay); the double
    # merges built-in kinds as JSON merge patches, so against it only acceptance is checked.
    pvc_ok='(lambda vs: "emptyDir" not in vs["journal"] and
 vs["journal"]["ephemeral"]["volumeClaimTemplate"]["spec"]["accessModes"] == ["ReadWriteOnce"] and
 vs["journal"]["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] and
 "emptyDir" in vs["tmp"])({v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}) and
d["spec"]["replicas"] == 3 and d["spec"]["template"]["spec"]["containers"][0]["name"] == "operator"'
    if kc patch --local -f "$SRC/deploy/operator/10-deployment.yaml" \
        --patch-file "$SRC/deploy/operator/journal-pvc.yaml" -o json && py "$pvc_ok"; then
        ok "$V: journal-pvc.yaml as a patch: the journal becomes a per-pod claim template"
    else bad "$V: journal-pvc.yaml (kubectl patch --local)"; fi
    rm -rf "$WORK/op"
    cp -r "$SRC/deploy/operator" "$WORK/op"
    sed -i 's/^# patches:$/patches:/; s/^# - path: journal-pvc.yaml$/- path: journal-pvc.yaml/' \
        "$WORK/op/kustomization.yaml"
    if kc kustomize "$WORK/op" &&
        python3 -c 'import sys, yaml, json
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = [d for d in docs if d["kind"] == "Deployment"]
assert len(docs) == int(sys.argv[2]) and len(dep) == 1
json.dump(dep[0], open(sys.argv[1], "w"))' "$WORK/out" "$NDOCS" && py "$pvc_ok"; then
        ok "$V: journal-pvc.yaml as a kustomize overlay (the two commented lines)"
    else bad "$V: journal-pvc.yaml (kustomize overlay)"; fi
    if kc apply -k "$WORK/op" && grep -q '^deployment.apps/bindy configured$' "$WORK/out" &&
        kc get deployment bindy -n dns-system -o json && py '
[v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "journal"][0]["ephemeral"]'; then
        ok "$V: the API server takes the overlay (apply -k: deployment configured)"
    else bad "$V: apply -k with journal-pvc.yaml"; fi
done

echo "$PASS passed, $FAIL failed"
[ $FAIL -eq 0 ]
