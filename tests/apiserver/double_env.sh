# double_env.sh - sourced by the kubectl shell tests (kubectl_proof.sh, deploy_test.sh):
# the API-server double as a process, a kubeconfig for it, kubectl and the counters.
#
#   . double_env.sh NAME        makes WORK=/tmp/bd-NAME.XXXXXX, removed at exit with the
#                               double; needs BIN (bd-apiserver); T (kubectl's timeout, s)
#   ok TEXT / bad TEXT          count a check (bad shows $WORK/out); PASS, FAIL
#   start_server [https]        (re)start the double, PORT and SERVER set (PORT empty when
#                               it did not start) and $WORK/kubeconfig written (token s3cret);
#                               https: needs $WORK/ca.crt, srv.crt and srv.key
#   kc ARGS...                  run $K with that kubeconfig; output in $WORK/out
#   count PATTERN               lines of $WORK/out that match

WORK=$(mktemp -d "/tmp/bd-$1.XXXXXX")
SRV_PID=
cleanup() {
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; [ -f "$WORK/out" ] && sed 's/^/       | /' "$WORK/out" | head -20; }

start_server() { # [https]
    [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
    rm -f "$WORK/port"
    local ca=""
    if [ "${1:-}" = https ]; then
        "$BIN" --port-file "$WORK/port" --token s3cret --tls-cert "$WORK/srv.crt" \
            --tls-key "$WORK/srv.key" >"$WORK/server.log" 2>&1 &
        ca="certificate-authority-data: $(base64 -w0 <"$WORK/ca.crt")"
    else
        "$BIN" --port-file "$WORK/port" >"$WORK/server.log" 2>&1 &
    fi
    SRV_PID=$!
    for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.05; done
    PORT=$(cat "$WORK/port" 2>/dev/null)
    SERVER="http://127.0.0.1:$PORT"
    [ "${1:-}" = https ] && SERVER="https://127.0.0.1:$PORT"
    rm -rf "$WORK/home"
    mkdir -p "$WORK/home"
    cat >"$WORK/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: double
  cluster:
    server: $SERVER
    $ca
users:
- name: tester
  user:
    token: s3cret
contexts:
- name: double
  context: {cluster: double, user: tester}
current-context: double
EOF
}

kc() { # run kubectl, output in $WORK/out; returns its status
    HOME="$WORK/home" KUBECONFIG="$WORK/kubeconfig" timeout "$T" "$K" "$@" >"$WORK/out" 2>&1
}

count() { grep -c -- "$1" "$WORK/out"; }
