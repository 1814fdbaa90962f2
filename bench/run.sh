#!/bin/sh
# make bench: the cache-hit benchmark (ferryd against nginx proxy_cache and
# Varnish, about 6 minutes), then the eviction simulation (about 10 s).
# Results go to bench/results/ (not in git); docs/benchmarks.md explains
# the method and holds the figures of a recorded run.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
export BENCH_RESULTS="$RESULTS"
mkdir -p "$RESULTS"
mark=$(mktemp)
trap 'rm -f "$mark"' EXIT
rc=0
"$ROOT/bench/cache_hit.sh" || rc=1
"$ROOT/bench/eviction.sh" || rc=1
"$ROOT/bench/switch.sh" || rc=1
"$ROOT/bench/dns.sh" || rc=1
"$ROOT/bench/peer.sh" || rc=1
echo
echo "bench: results in $RESULTS:"
find "$RESULTS" -maxdepth 1 -name '*.md' -newer "$mark" | sort | sed 's|^|  |'
[ $rc -eq 0 ] || echo "bench: a benchmark reported errors (see above)" >&2
exit $rc
