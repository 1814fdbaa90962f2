#!/bin/sh
# Builds bench/eviction_sim.c into build/ and runs it with its default
# parameters (Zipf and scan traces, LRU against S3-FIFO); the table goes to
# stdout and to bench/results/eviction-<date>.md. See docs/eviction.md.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FERRY_BUILD:-$ROOT/build}
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
mkdir -p "$BUILD" "$RESULTS"
CC=${CC:-cc}

# The build command of eviction_sim.c's header, plus log.c (util.c calls the
# error log) and -lpthread.
"$CC" -std=gnu11 -D_GNU_SOURCE -O2 -I"$ROOT/src" "$ROOT/bench/eviction_sim.c" \
    "$ROOT/src/cache/evict.c" "$ROOT/src/lib/util.c" "$ROOT/src/lib/log.c" \
    -lm -lpthread -o "$BUILD/eviction_sim"

out="$RESULTS/eviction-$(date +%Y-%m-%d-%H%M%S).md"
tmp="$out.tmp"
# Default parameters; about 10 s on a 2-core VM. Bounded all the same.
timeout 300 "$BUILD/eviction_sim" > "$tmp"
{
    echo "# Eviction: LRU against S3-FIFO, request hit ratios ($(date '+%Y-%m-%d %H:%M'))"
    echo
    echo "\`$BUILD/eviction_sim\` with its default parameters."
    echo
    echo '```'
    cat "$tmp"
    echo '```'
} > "$out"
rm -f "$tmp"
cat "$out"
echo "eviction: results in $out" >&2
