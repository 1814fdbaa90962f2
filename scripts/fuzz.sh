#!/bin/sh
# make fuzz: runs every libFuzzer target in BUILD_DIR for SECONDS each.
# Usage: scripts/fuzz.sh [BUILD_DIR [SECONDS]]
set -u
dir=${1:-build-fuzz}
secs=${2:-20}
cd "$(dirname "$0")/.."
rc=0
for t in "$dir"/tests/fuzz/fuzz_*; do
    [ -x "$t" ] || continue
    scripts/fuzz-one.sh "$t" "$secs" || rc=1
done
exit $rc
