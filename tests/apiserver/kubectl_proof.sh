#!/bin/bash
# kubectl_proof.sh BD_APISERVER SOURCE_DIR
#
# Proves that real kubectl binaries accept the API-server test double: for every
# /usr/lib/google-cloud-sdk/bin/kubectl.1.27 ... kubectl.1.33 present (failing if none),
# against a fresh double over plain HTTP and over HTTPS with a bearer token and a CA the
# test generates with openssl:
#   apply the CRDs, create the namespace, apply deploy/examples (created), get with printer
#   columns and a label column, -o yaml and -o json (parsed), re-apply (unchanged), apply
#   a modified manifest (configured), get by short name, server-side apply (conflict, then
#   --force-conflicts), delete (deleted), and a wrong token (Unauthorized).
# Every kubectl call is bounded by a timeout. Prints "N passed, M failed".
set -u
BIN=$1
SRC=$2
KDIR=${KUBECTL_DIR:-/usr/lib/google-cloud-sdk/bin}
T=30

. "$SRC/tests/apiserver/double_env.sh" kubectl-proof

# One CA and a server certificate for 127.0.0.1 (the client verifies the CA).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bd-test-ca" \
    -keyout "$WORK/ca.key" -out "$WORK/ca.crt" >/dev/null 2>&1 || { echo "openssl failed"; exit 1; }
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$WORK/srv.key" -out "$WORK/srv.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$WORK/ext"
openssl x509 -req -in "$WORK/srv.csr" -CA "$WORK/ca.crt" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/ext" -out "$WORK/srv.crt" >/dev/null 2>&1 ||
    { echo "openssl x509 failed"; exit 1; }

NDOCS=$(cat "$SRC"/deploy/examples/*.yaml | grep -c '^kind:')
NCRDS=$(ls "$SRC"/schema/crds/*.yaml | wc -l)
found=0
for minor in 27 28 29 30 31 32 33; do
    K="$KDIR/kubectl.1.$minor"
    [ -x "$K" ] || continue
    found=1
    for mode in http https; do
        V="kubectl 1.$minor ($mode)"
        start_server $mode
        if kc apply -f "$SRC/schema/crds/" && [ "$(count ' created$')" -eq "$NCRDS" ]; then
            ok "$V: apply -f schema/crds/ ($NCRDS created)"
        else bad "$V: apply -f schema/crds/"; fi
        if kc get crd bind9instances.bindy.firestoned.io -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' &&
            [ "$(cat "$WORK/out")" = True ]; then
            ok "$V: CRD registered and Established"
        else bad "$V: CRD Established"; fi
        if kc create namespace dns-system && grep -q '^namespace/dns-system created$' "$WORK/out"; then
            ok "$V: create namespace dns-system"
        else bad "$V: create namespace"; fi
        if kc apply -f "$SRC/deploy/examples/" && [ "$(count ' created$')" -eq "$NDOCS" ]; then
            ok "$V: apply -f deploy/examples/ ($NDOCS created)"
        else bad "$V: apply -f deploy/examples/"; fi
        if kc get bind9instances -A -L region &&
            grep -Eq '^NAMESPACE +NAME +ROLE +REPLICAS +READY +AGE +REGION *$' "$WORK/out" &&
            grep -Eq '^dns-system +primary-us-east +2 +[0-9]+[smh] +us-east-1 *$' "$WORK/out" &&
            grep -Eq '^dns-system +primary-dns +2 +[0-9]+[smh] *$' "$WORK/out"; then
            ok "$V: get bind9instances -A -L region (printer columns, label column)"
        else bad "$V: get bind9instances -A -L region"; fi
        if kc get dnszones -n dns-system -o yaml &&
            python3 -c 'import sys,yaml; d=yaml.safe_load(open(sys.argv[1])); i=d["items"][0]; assert i["metadata"]["name"]=="example-com" and i["spec"]["zoneName"]=="example.com" and i["metadata"]["generation"]==1' "$WORK/out" 2>/dev/null; then
            ok "$V: get dnszones -o yaml (parsed)"
        else bad "$V: get dnszones -o yaml"; fi
        if kc get dnszones -n dns-system -o json &&
            python3 -c 'import sys,json; d=json.load(open(sys.argv[1])); i=d["items"][0]; assert i["kind"]=="DNSZone" and i["spec"]["soaRecord"]["serial"]==2024010101' "$WORK/out" 2>/dev/null; then
            ok "$V: get dnszones -o json (parsed)"
        else bad "$V: get dnszones -o json"; fi
        if kc apply -f "$SRC/deploy/examples/" && [ "$(count ' unchanged$')" -eq "$NDOCS" ]; then
            ok "$V: re-apply is unchanged"
        else bad "$V: re-apply unchanged"; fi
        sed 's/replicas: 2/replicas: 3/' "$SRC/deploy/examples/regional.yaml" > "$WORK/regional3.yaml"
        if kc apply -f "$WORK/regional3.yaml" && [ "$(count ' configured$')" -eq 3 ]; then
            ok "$V: apply of a modified manifest is configured"
        else bad "$V: apply modified"; fi
        if kc get b9 -A && grep -Eq '^dns-system +secondary-eu-west +3 ' "$WORK/out" &&
            [ "$(grep -c '^dns-system ' "$WORK/out")" -eq 5 ]; then
            ok "$V: get b9 -A (short name)"
        else bad "$V: get b9 -A"; fi
        sed 's/replicas: 2/replicas: 4/' "$SRC/deploy/examples/regional.yaml" > "$WORK/regional4.yaml"
        if ! kc apply --server-side -f "$WORK/regional4.yaml" &&
            grep -q 'conflict with "kubectl-client-side-apply"' "$WORK/out" &&
            kc apply --server-side --force-conflicts -f "$WORK/regional4.yaml" &&
            [ "$(count ' serverside-applied$')" -eq 3 ] &&
            kc get b9 -n dns-system primary-us-east -o jsonpath='{.spec.replicas}' &&
            [ "$(cat "$WORK/out")" = 4 ]; then
            ok "$V: server-side apply (conflict, then --force-conflicts)"
        else bad "$V: server-side apply"; fi
        if kc delete -f "$SRC/deploy/examples/" && [ "$(count ' deleted')" -eq "$NDOCS" ] &&
            kc get b9 -A && grep -q 'No resources found' "$WORK/out"; then
            ok "$V: delete -f deploy/examples/"
        else bad "$V: delete -f deploy/examples/"; fi
        if [ $mode = https ]; then
            sed -i 's/token: s3cret/token: wrong/' "$WORK/kubeconfig"
            if ! kc get ns && grep -qi 'unauthorized' "$WORK/out"; then
                ok "$V: a wrong bearer token is refused (401)"
            else bad "$V: wrong token"; fi
        fi
    done
done
if [ $found = 0 ]; then
    echo "no kubectl binaries in $KDIR"
    echo "0 passed, 1 failed"
    exit 1
fi
echo "$PASS passed, $FAIL failed"
[ $FAIL -eq 0 ]
