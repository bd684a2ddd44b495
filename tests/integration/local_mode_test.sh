#!/usr/bin/env bash
# Local mode end to end, with real named: bindy run --local on the example manifests.
# Every check is bounded in time; every server is checked with dig.
set -u
BINDY=${1:?usage: local_mode_test.sh BINDY SOURCE_DIR}
SRC=${2:?}
work=$(mktemp -d /tmp/bindy-local-XXXXXX)
man="$work/manifests" state="$work/state" out="$work/out" log="$work/log"
mkdir -p "$man"
cp "$SRC"/deploy/examples/*.yaml "$man/"
passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }
cleanup() {
  [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  pkill -KILL -f "$state/[n]amed" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

start() { # relative paths, as scripts/run.sh passes them
  (cd "$work" && exec "$BINDY" run --local manifests --state-dir state) >"$out" 2>>"$log" &
  pid=$!
}
# until SECONDS CMD...: retry CMD every 0.2 s until it succeeds or time runs out
until_ok() {
  local limit=$1; shift
  local end=$(( $(date +%s) + limit ))
  while [ "$(date +%s)" -lt "$end" ]; do "$@" && return 0; sleep 0.2; done
  return 1
}
ports() { grep -o -- '-p [0-9]* .*# dns-system/[a-z-]*' "$out" | awk '{print $2}'; }
# dig prints its own errors (";; communications error ...") on stdout: an answer is the
# output of a dig that reached the server, nothing else.
ask() { local a; a=$(dig @127.0.0.1 -p "$1" "$2" "$3" +short +time=1 +tries=1 2>/dev/null) || return 1; printf '%s\n' "$a"; }
all_answer() { # all_answer NAME TYPE WANT: every server's answer contains WANT
  local p
  [ -n "$(ports)" ] || return 1
  for p in $(ports); do ask "$p" "$1" "$2" | grep -qF -- "$3" || return 1; done
}
none_answer() { # every server answers, and no answer contains WANT
  local p a
  [ -n "$(ports)" ] || return 1
  for p in $(ports); do a=$(ask "$p" "$1" "$2") || return 1; grep -qF -- "$3" <<<"$a" && return 1; done
  return 0
}

start
until_ok 60 all_answer www.example.com A 192.0.2.10 \
  && ok "every primary and secondary serves www.example.com ($(ports | wc -l) servers)" \
  || bad "not every server answered www.example.com A within 60 s"
n=$(ports | wc -l)
[ "$n" -eq 10 ] && ok "10 named processes (5 instances x 2 replicas)" || bad "expected 10 servers, got $n"
# a secondary pulls from its primaries, and from bindy when they cannot serve a zone yet
hp=$(sed -n 's/.*hidden primary on 127.0.0.1:\([0-9]*\);.*/\1/p' "$log" | tail -1)
grep -q "default-primaries {\( 127.0.0.1 port [0-9]* key \"bindy-xfr\";\)\{4\} 127.0.0.1 port ${hp:-none} key \"bindy-xfr\"; }" \
  "$state/named/dns-system/secondary-dns/0/named.conf" \
  && ok "a secondary's named.conf lists its primaries' 4 replicas, then bindy" \
  || bad "secondary-dns/0's primaries: $(grep default-primaries "$state/named/dns-system/secondary-dns/0/named.conf")"
until_ok 10 all_answer example.com MX "mail.example.com." && ok "MX served everywhere" || bad "MX"
until_ok 10 all_answer _sip._tcp.example.com SRV "5060" && ok "SRV served everywhere" || bad "SRV"
until_ok 10 all_answer example.com CAA "letsencrypt.org" && ok "CAA served everywhere" || bad "CAA"

# an edit is served on primaries and secondaries
sed -i 's/192.0.2.11/192.0.2.99/' "$man/example-com.yaml"
until_ok 30 all_answer www.example.com A 192.0.2.99 && ok "an edit reaches every server" || bad "edit not served within 30 s"
grep -q "ARecord dns-system/www-example-com MODIFIED: zone example.com" "$log" \
  && ok "the applied change is logged with its object" || bad "no log line for the change"

until_ok 15 grep -q "zone example.com serial [0-9]* published by all 10 servers" "$log" \
  && ok "bindy confirms by SOA query that all 10 servers publish the new serial" || bad "no serial confirmation"

# a server that does not answer is reported by name, with what it last said
frozen=$(pgrep -f "$state/[n]amed/dns-system/secondary-dns/1" | head -1)
if [ -n "$frozen" ]; then
  kill -STOP "$frozen"
  sed -i 's/192.0.2.99/192.0.2.98/' "$man/example-com.yaml"
  until_ok 20 grep -q "zone example.com serial [0-9]*: 1 of 10 servers lag: dns-system/secondary-dns/1" "$log" \
    && ok "a lagging server is reported by name" || bad "lagging server not reported"
  kill -CONT "$frozen"
  # bindy repairs it with rndc retransfer (named would also catch up from the NOTIFYs
  # queued while it was stopped: this checks that the repair is sent with the right key
  # and accepted, and that the zone is then confirmed everywhere)
  until_ok 20 grep -q "zone example.com serial [0-9]* published by all 10 servers in [0-9]* ms (after rndc retransfer)" "$log" \
    && ! grep -q "secondary-dns/1: rndc retransfer" "$log" \
    && ok "the lagging server is repaired with rndc retransfer and then publishes the serial" \
    || bad "no repair confirmed: $(grep -E 'rndc|lag' "$log" | tail -3)"
  sed -i 's/192.0.2.98/192.0.2.99/' "$man/example-com.yaml"
  until_ok 30 all_answer www.example.com A 192.0.2.99 && ok "it catches up once it answers again" || bad "no catch-up"
else
  bad "no named process found for secondary-dns/1"
fi

# a zone removed from an instance's selection leaves its catalog and its servers
sec_ports() { grep -o -- '-p [0-9]* .*# dns-system/secondary-[a-z-]*/[0-9]' "$out" | awk '{print $2}'; }
prim_ports() { grep -o -- '-p [0-9]* .*# dns-system/primary-[a-z-]*/[0-9]' "$out" | awk '{print $2}'; }
secondaries_refuse() {
  local p
  for p in $(sec_ports); do dig @127.0.0.1 -p "$p" example.com SOA +time=1 +tries=1 2>/dev/null | grep -q "status: REFUSED" || return 1; done
}
primaries_serve() {
  local p
  for p in $(prim_ports); do ask "$p" www.example.com A | grep -qF 192.0.2.99 || return 1; done
}
sed -i 's/^        - secondary$/        - none-such/' "$man/example-com.yaml"
until_ok 30 secondaries_refuse && primaries_serve \
  && ok "a zone no longer selected leaves the secondaries' catalogs and servers; primaries keep it" \
  || bad "deselected zone still served by secondaries"
sed -i 's/^        - none-such$/        - secondary/' "$man/example-com.yaml"
until_ok 30 all_answer www.example.com A 192.0.2.99 && ok "selected again: served everywhere again" \
  || bad "re-selected zone not served"

# a new file adds a record; deleting the file removes it
cat >"$man/extra.yaml" <<'YAML'
apiVersion: bindy.firestoned.io/v1beta1
kind: ARecord
metadata: {name: extra, namespace: dns-system, labels: {zone: example.com}}
spec: {name: extra, ipv4Addresses: [192.0.2.77]}
YAML
until_ok 30 all_answer extra.example.com A 192.0.2.77 && ok "a new file is served" || bad "new file not served"
rm "$man/extra.yaml"
until_ok 30 none_answer extra.example.com A 192.0.2.77 && ok "a deleted file's record is removed everywhere" \
  || bad "deleted record still served"

# an invalid file is logged with file, line and field; everything else keeps serving
cat >"$man/bad.yaml" <<'YAML'
apiVersion: bindy.firestoned.io/v1beta1
kind: ARecord
metadata: {name: bad, namespace: dns-system, labels: {zone: example.com}}
spec:
  name: bad
  ipv4Addresses: [10.0.0.300]
YAML
until_ok 10 grep -q "bad.yaml:6: ARecord dns-system/bad: spec.ipv4Addresses\[0\]" "$log" \
  && ok "an invalid manifest is logged with file, line and field path" || bad "invalid manifest not reported"
all_answer www.example.com A 192.0.2.99 && ok "everything else keeps serving" || bad "serving broke"
rm "$man/bad.yaml"

# kill one named and remove its directory: restarted (as a kubelet would) from an empty
# directory, it fills itself by transfer and serves again
victim=$(pgrep -f "$state/[n]amed/dns-system/secondary-dns/0" | head -1)
if [ -n "$victim" ]; then
  kill -KILL "$victim"
  rm -rf "$state/named/dns-system/secondary-dns/0"
  until_ok 30 bash -c "p=\$(pgrep -f '$state/[n]amed/dns-system/secondary-dns/0' | head -1); [ -n \"\$p\" ] && [ \"\$p\" != $victim ]" \
    && until_ok 30 all_answer www.example.com A 192.0.2.99 \
    && ok "a killed named is restarted from an empty directory, refills itself and serves again" \
    || bad "killed named not back within 60 s"
else
  bad "no named process found for secondary-dns/0"
fi

# SIGTERM: bindy exits and no named is left
kill -TERM "$pid"
until_ok 20 bash -c "! kill -0 $pid 2>/dev/null" && ok "bindy exits on SIGTERM" || bad "bindy still running 20 s after SIGTERM"
wait "$pid" 2>/dev/null
pid=
until_ok 5 bash -c "! pgrep -f '$state/[n]amed' >/dev/null" && ok "no named process is left" || bad "named processes left behind"

# restart: resumes from the journal without re-journaling anything
before=$(grep -c " added, " "$log")
start
until_ok 60 all_answer www.example.com A 192.0.2.99 && ok "after a restart every server serves again" || bad "not serving after restart"
# a clean shutdown wrote the projector's checkpoint: the restart restores it, replays nothing
grep -q "projector checkpoint at seq [0-9]* written" "$log" && ok "SIGTERM writes the projector checkpoint" \
  || bad "no projector checkpoint at shutdown"
grep -q "projector restored from checkpoint at seq [0-9]*; replaying 0 events" "$log" \
  && ok "the restart resumes from the checkpoint" || bad "the restart did not restore the checkpoint"
[ "$(grep -c " added, " "$log")" -eq "$before" ] && ok "an unchanged directory adds no journal events" \
  || bad "restart journaled events again"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
