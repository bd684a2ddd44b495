#!/usr/bin/env bash
# Local mode end to end at scale (real named, loopback only):
#  1. 10,000 ARecords in one zone (primary-dns x2 -> secondary-dns x2), twice: from a
#     cold start with the manifest already there, and dropped (renamed) into the watched
#     directory of a running bindy; time until both primaries, then both secondaries,
#     serve the last record (then every server is checked for the same serial and a
#     sample of records);
#  2. baseline: a bare named, already running, loaded with the same 10,000 records by
#     nsupdate, 500 per message; records/s of the running bindy and of nsupdate, ratio;
#  3. 1,000 zones (one A record each) added at once to the running bindy: time until a
#     sample of zones and the last one answer on every server.
# Bounded: every wait has a deadline (WAIT seconds, default 120). "Served" is timed by
# bench_served (every server asked over UDP every millisecond, the same for bindy and for
# the nsupdate baseline); other checks use dig.
set -u
BINDY=${1:?usage: bench_e2e.sh BINDY SOURCE_DIR BENCH_SERVED}
SRC=${2:?usage: bench_e2e.sh BINDY SOURCE_DIR BENCH_SERVED}
SERVED=${3:?usage: bench_e2e.sh BINDY SOURCE_DIR BENCH_SERVED}
N=${N:-10000}
ZONES=${ZONES:-1000}
WAIT=${WAIT:-120}
work=$(mktemp -d /tmp/bindy-e2e-XXXXXX)
man="$work/m" state="$work/s"
mkdir -p "$man"
cleanup() {
  [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ -n "${npid:-}" ] && kill -TERM "$npid" 2>/dev/null && wait "$npid" 2>/dev/null
  [ -n "${KEEP:-}" ] && { echo "bench_e2e: kept $work" >&2; return; }
  rm -rf "$work"
}
trap cleanup EXIT
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { awk -v ms="$1" 'BEGIN { printf "%.3f", ms / 1000 }'; }
# dig prints its errors (";; communications error ...") on stdout: only a dig that reached
# the server gives an answer (a refused query once passed for the baseline's named "up")
q() { local a; a=$(dig @127.0.0.1 -p "$1" "$2" "$3" +short +time=1 +tries=1 2>/dev/null) || return 1; printf '%s\n' "$a"; }

# ---- manifests: instances, the zone, N records ----
cp "$SRC/deploy/examples/instances.yaml" "$man/00-instances.yaml"
cat >"$man/01-zone.yaml" <<'YAML'
apiVersion: bindy.firestoned.io/v1beta1
kind: DNSZone
metadata: {name: example-com, namespace: dns-system}
spec:
  zoneName: example.com
  ttl: 3600
  soaRecord: {primaryNs: ns1.example.com., adminEmail: admin.example.com., serial: 1,
              refresh: 3600, retry: 600, expire: 604800, negativeTtl: 86400}
  nameServers:
  - {hostname: ns1.example.com., ipv4Address: 192.0.2.1}
  bind9InstancesFrom:
  - selector: {matchLabels: {dns-role: primary}}
  - selector: {matchLabels: {dns-role: secondary}}
  recordsFrom:
  - selector: {matchLabels: {zone: example.com}}
YAML
addr() { echo "10.$(( $1 / 65536 % 256 )).$(( $1 / 256 % 256 )).$(( $1 % 256 ))"; }
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) {
  printf "---\napiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
  printf "metadata: {name: r%d, namespace: dns-system, labels: {zone: example.com}}\n", i
  printf "spec: {name: r%d, ipv4Addresses: [10.%d.%d.%d]}\n", i, int(i/65536)%256, int(i/256)%256, i%256 } }' \
  >"$man/02-records.yaml"
# the record imported last: objects are journaled in key order
last=$(seq 0 $((N - 1)) | LC_ALL=C sort | tail -1); last_addr=$(addr "$last")
label=$N; [ $((N % 1000)) -eq 0 ] && label="$((N / 1000))k"

served_times() { # served_times T0: tp, ts = ms after T0 until both primaries / all four
  # serve the last record (the last event of the import: keys are imported in sorted
  # order, and every zone version contains all earlier events)
  local out
  out=$("$SERVED" "$1" "$WAIT" "r$last.example.com." "$last_addr" "$P0" "$P1" "$S0" "$S1") || {
    echo "bench_e2e: not every server serves r$last after ${WAIT}s" >&2
    for p in $P0 $P1 $S0 $S1; do echo "  port $p: $(q "$p" example.com SOA)" >&2; done; tail -5 "$work/log" >&2; exit 1; }
  set -- $out
  tp=$(( $1 > $2 ? $1 : $2 )) ts=$(( $3 > $4 ? $3 : $4 ))
  [ "$tp" -gt "$ts" ] && ts=$tp
}
start_bindy() { # start_bindy MANIFESTS STATE: sets pid, P0 P1 S0 S1
  "$BINDY" run --local "$1" --state-dir "$2" >"$work/out" 2>>"$work/log" &
  pid=$!
  for _ in $(seq 600); do grep -q "^  dig" "$work/out" 2>/dev/null && break; sleep 0.1; done
  port() { grep -- "# dns-system/$1\$" "$work/out" | awk '{print $4}'; }
  P0=$(port primary-dns/0) P1=$(port primary-dns/1) S0=$(port secondary-dns/0) S1=$(port secondary-dns/1)
  [ -n "$P0" ] && [ -n "$P1" ] && [ -n "$S0" ] && [ -n "$S1" ] || {
    echo "bench_e2e: bindy did not start" >&2; tail -20 "$work/log" >&2; exit 1; }
}
stop_bindy() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=""; }
zone_up_all() { # every server answers the zone's SOA (the zone without records is loaded)
  local deadline=$(( $(now_ms) + WAIT * 1000 )) p
  for p in $P0 $P1 $S0 $S1; do
    until q "$p" example.com SOA | grep -q .; do
      [ "$(now_ms)" -lt "$deadline" ] || { echo "bench_e2e: port $p does not serve example.com after ${WAIT}s" >&2
        tail -5 "$work/log" >&2; exit 1; }
      sleep 0.05
    done
  done
}
check_complete() { # every server: the same SOA serial and a sample of records
  local p i s0
  s0=$(q "$P0" example.com SOA | awk '{print $3}')
  for p in $P0 $P1 $S0 $S1; do
    [ "$(q "$p" example.com SOA | awk '{print $3}')" = "$s0" ] || { echo "bench_e2e: port $p: serial differs from $s0" >&2; exit 1; }
    for i in 0 $(( N / 3 )) $(( N / 2 )) $last; do
      q "$p" "r$i.example.com" A | grep -qx -- "$(addr "$i")" || { echo "bench_e2e: port $p lacks r$i" >&2; exit 1; }
    done
  done
}

# ---- cold start: bindy starts with the 10,000-record manifest already there ----
t0=$(now_ms)
start_bindy "$man" "$state.cold"
served_times "$t0"
check_complete
echo "BENCH e2e_${label}_records_cold_start_primaries $(secs "$tp") s"
echo "BENCH e2e_${label}_records_cold_start_secondaries $(secs "$ts") s"
stop_bindy

# ---- running bindy: the manifest dropped into the watched directory (like for like with
# nsupdate into a running named) ----
mv "$man/02-records.yaml" "$work/records.tmp"
start_bindy "$man" "$state"
zone_up_all
t0=$(now_ms)
mv "$work/records.tmp" "$man/02-records.yaml"
served_times "$t0"
check_complete
echo "BENCH e2e_${label}_records_primaries $(secs "$tp") s"
echo "BENCH e2e_${label}_records_secondaries $(secs "$ts") s"
rate=$(awk -v n="$N" -v ms="$ts" 'BEGIN { printf "%.0f", n * 1000 / (ms > 0 ? ms : 1) }')
echo "BENCH e2e_${label}_records_rate $rate records/s"

# ---- baseline: a bare named, the same records by nsupdate, 500 per message ----
nd="$work/named"
mkdir -p "$nd"
free_port() { # below the ephemeral range, and not bound by any socket (a named that just
  # stopped, dig's source ports)
  local p lo
  lo=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  while :; do
    p=$(( 20000 + RANDOM % (lo - 20000) ))
    ss -Hantu 2>/dev/null | awk '{print $5}' | grep -q ":$p\$" || { echo "$p"; return; }
  done
}
NP=$(free_port)
cat >"$nd/example.com.db" <<'ZONE'
$TTL 3600
@ IN SOA ns1.example.com. admin.example.com. 1 3600 600 604800 86400
@ IN NS ns1.example.com.
ns1 IN A 192.0.2.1
ZONE
cat >"$nd/named.conf" <<CONF
options {
    directory "$nd";
    pid-file "$nd/named.pid";
    listen-on port $NP { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion no;
    notify no;
};
controls { };
zone "example.com" { type primary; file "$nd/example.com.db"; allow-update { 127.0.0.1; }; };
CONF
awk -v n="$N" -v port="$NP" 'BEGIN {
  printf "server 127.0.0.1 %d\nzone example.com\n", port
  for (i = 0; i < n; i++) {
    printf "update add r%d.example.com. 3600 IN A 10.%d.%d.%d\n", i, int(i/65536)%256, int(i/256)%256, i%256
    if ((i + 1) % 500 == 0 || i == n - 1) printf "send\n"
  } }' >"$nd/updates"
named -g -c "$nd/named.conf" >"$nd/named.log" 2>&1 &
npid=$!
for _ in $(seq 300); do q "$NP" example.com SOA | grep -q . && break; sleep 0.1; done  # 30 s: named starts slowly under load
q "$NP" example.com SOA | grep -q . || { echo "bench_e2e: baseline named did not start" >&2; tail "$nd/named.log" >&2; exit 1; }
tn=$(now_ms)
nsupdate -t 30 "$nd/updates" || { echo "bench_e2e: nsupdate failed" >&2; exit 1; }
tn=$("$SERVED" "$tn" 5 "r$last.example.com." "$last_addr" "$NP") || { echo "bench_e2e: nsupdate baseline incomplete" >&2; exit 1; }
kill -TERM "$npid" 2>/dev/null; wait "$npid" 2>/dev/null; npid=""
nrate=$(awk -v n="$N" -v ms="$tn" 'BEGIN { printf "%.0f", n * 1000 / (ms > 0 ? ms : 1) }')
echo "BENCH e2e_nsupdate_rate $nrate records/s"
echo "BENCH e2e_rate_ratio_vs_nsupdate $(awk -v a="$rate" -v b="$nrate" 'BEGIN { printf "%.3f", a / b }') ratio"

# ---- 1,000 zones at once, each with one A record, served by both instances ----
awk -v n="$ZONES" 'BEGIN { for (i = 0; i < n; i++) {
  printf "---\napiVersion: bindy.firestoned.io/v1beta1\nkind: DNSZone\n"
  printf "metadata: {name: z%d-test, namespace: dns-system}\n", i
  printf "spec:\n  zoneName: z%d.test\n  ttl: 3600\n", i
  printf "  soaRecord: {primaryNs: ns1.z%d.test., adminEmail: admin.z%d.test., serial: 1, refresh: 3600, retry: 600, expire: 604800, negativeTtl: 86400}\n", i, i
  printf "  nameServers:\n  - {hostname: ns1.z%d.test., ipv4Address: 192.0.2.1}\n", i
  printf "  bind9InstancesFrom:\n  - selector: {matchLabels: {dns-role: primary}}\n  - selector: {matchLabels: {dns-role: secondary}}\n"
  printf "  recordsFrom:\n  - selector: {matchLabels: {zone: z%d.test}}\n", i
  printf "---\napiVersion: bindy.firestoned.io/v1beta1\nkind: ARecord\n"
  printf "metadata: {name: www-z%d, namespace: dns-system, labels: {zone: z%d.test}}\n", i, i
  printf "spec: {name: www, ipv4Addresses: [198.51.%d.%d]}\n", int(i/256)%256, i%256 } }' >"$work/zones.tmp"
sample="0 $(( ZONES / 4 )) $(( ZONES / 2 )) $(( 3 * ZONES / 4 )) $(( ZONES - 1 ))"
tz=$(now_ms)
mv "$work/zones.tmp" "$man/03-zones.yaml"
deadline=$(( tz + WAIT * 1000 ))
pending=""
for p in $P0 $P1 $S0 $S1; do for i in $sample; do pending="$pending $p:$i"; done; done
while [ "$(now_ms)" -lt "$deadline" ] && [ -n "$pending" ]; do
  still=""
  for pi in $pending; do
    p=${pi%:*} i=${pi#*:}
    q "$p" "www.z$i.test" A | grep -qx -- "198.51.$(( i / 256 % 256 )).$(( i % 256 ))" || still="$still $pi"
  done
  pending=$still
done
[ -z "$pending" ] || { echo "bench_e2e: zones not served after ${WAIT}s (port:zone):$pending" >&2; exit 1; }
echo "BENCH e2e_${ZONES}_zones_all_served $(secs $(( $(now_ms) - tz ))) s"
