#!/usr/bin/env bash
# Installs every Debian package bindy needs to build, test and run, when missing.
# Idempotent; run as root on Debian 12. Nothing is downloaded from outside Debian.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  liblmdb-dev lmdb-utils libmsgpack-dev libcurl4-openssl-dev libssl-dev
  libyaml-dev libev-dev libcmocka-dev libjansson-dev libldns-dev
  libmicrohttpd-dev libjemalloc-dev
  bind9 bind9-utils bind9-dnsutils openssl procps
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The bind9 package enables and starts a system named on port 53; our tests and local
# mode run their own named processes and must not depend on (or collide with) it.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now named >/dev/null 2>&1 || true
fi
echo "setup: done"
