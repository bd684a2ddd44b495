#!/usr/bin/env bash
# Local-mode benchmark: start-up until every server answers, and edit-to-served latency
# (p50/p99) to a primary and to a secondary, measured with dig polling (so each figure
# includes dig's own start-up, a few ms: the figures are upper bounds).
# Bounded: EDITS edits (default 30), each waited for at most 10 s.
set -u
BINDY=${1:?usage: bench_local.sh BINDY SOURCE_DIR}
SRC=${2:?}
EDITS=${EDITS:-30}
work=$(mktemp -d /tmp/bindy-bench-XXXXXX)
man="$work/m" state="$work/s"
mkdir -p "$man"
cp "$SRC"/deploy/examples/*.yaml "$man/"
cleanup() { [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
write_rec() {
  cat >"$man/bench.yaml.tmp" <<YAML
apiVersion: bindy.firestoned.io/v1beta1
kind: ARecord
metadata: {name: bench, namespace: dns-system, labels: {zone: example.com}}
spec: {name: bench, ipv4Addresses: [$1]}
YAML
  mv "$man/bench.yaml.tmp" "$man/bench.yaml"  # an atomic save, as editors do
}
ask() { local a; a=$(dig @127.0.0.1 -p "$1" bench.example.com A +short +time=1 +tries=1 2>/dev/null) || return 1; printf '%s\n' "$a"; }  # dig's errors go to stdout
wait_for() { # wait_for PORT WANT: ms until PORT answers WANT (or 10000)
  local t0=$2 end=$(( $(now_ms) + 10000 ))
  while [ "$(now_ms)" -lt "$end" ]; do
    ask "$1" | grep -qx -- "$3" && { echo $(( $(now_ms) - t0 )); return 0; }
  done
  echo 10000
}
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR*p+99)/100); if(i<1)i=1; print a[i]}'; }

write_rec 198.51.100.0
t0=$(now_ms)
"$BINDY" run --local "$man" --state-dir "$state" >"$work/out" 2>"$work/log" &
pid=$!
for _ in $(seq 300); do grep -q "^  dig" "$work/out" 2>/dev/null && break; sleep 0.1; done
prim=$(grep -- "# dns-system/primary-dns/0" "$work/out" | awk '{print $4}')
sec=$(grep -- "# dns-system/secondary-dns/0" "$work/out" | awk '{print $4}')
[ -n "$prim" ] && [ -n "$sec" ] || { echo "bench_local: bindy did not start" >&2; cat "$work/log" >&2; exit 1; }
all=$(grep -o -- '-p [0-9]*' "$work/out" | awk '{print $2}')
for p in $all; do wait_for "$p" "$t0" 198.51.100.0 >/dev/null; done
echo "BENCH local_startup_all_served $(( $(now_ms) - t0 )) ms"

: >"$work/p" ; : >"$work/s2"
for i in $(seq 1 "$EDITS"); do
  ip="198.51.100.$i"
  t=$(now_ms)
  write_rec "$ip"
  wait_for "$prim" "$t" "$ip" >>"$work/p"
  wait_for "$sec" "$t" "$ip" >>"$work/s2"
done
echo "BENCH local_edit_to_served_primary_p50 $(pct 50 <"$work/p") ms"
echo "BENCH local_edit_to_served_primary_p99 $(pct 99 <"$work/p") ms"
echo "BENCH local_edit_to_served_secondary_p50 $(pct 50 <"$work/s2") ms"
echo "BENCH local_edit_to_served_secondary_p99 $(pct 99 <"$work/s2") ms"
