#!/bin/sh
# Installs every Debian package that Ferry needs to build, test, run the demo
# and run the benchmarks. Safe to run again: apt-get skips what is present.
# Usage: scripts/install-deps.sh [--check]   (--check: exit 1 if something is missing)
set -eu

PACKAGES="
build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
libssl-dev libcmocka-dev libhiredis-dev redis-server
openssl curl ca-certificates nginx-light
python3 python3-pytest python3-pytest-timeout python3-requests python3-cryptography
python3-dnspython iproute2 procps nftables
bind9-dnsutils knot-dnsutils unbound python3-radix
"
BENCH_PACKAGES="wrk varnish haproxy dnsperf knot knot-module-geoip nsd bird2"

want="$PACKAGES"
if [ "${1:-}" = "--bench" ]; then
    want="$PACKAGES $BENCH_PACKAGES"
    shift
fi

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

if [ "${1:-}" = "--check" ]; then
    [ -z "$missing" ] && exit 0
    echo "missing packages:$missing" >&2
    exit 1
fi

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to install:$missing" >&2
    exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
