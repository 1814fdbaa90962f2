#!/bin/sh
# Runs one libFuzzer target for SECONDS over a scratch copy of its seed
# corpus. Usage: scripts/fuzz-one.sh PATH/TO/fuzz_NAME SECONDS
# Crash inputs are kept in build-fuzz/crashes/. Exit status 0 = no finding.
set -u
t=$1
secs=$2
cd "$(dirname "$0")/.."
name=$(basename "$t")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r tests/fuzz/corpus/"$name"/. "$work"/ 2>/dev/null || true
mkdir -p build-fuzz/crashes
if "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="build-fuzz/crashes/$name-" "$work" >"$work.log" 2>&1; then
    echo "$name: $(grep -E '^Done [0-9]+ runs' "$work.log" | tail -n 1)"
    rm -f "$work.log"
    exit 0
fi
echo "$name: FAILED"
tail -n 40 "$work.log"
rm -f "$work.log"
exit 1
