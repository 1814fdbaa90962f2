#!/bin/sh
# The whole test suite, as `make check` and CI run it:
#   1. gcc build with warnings as errors; unit and system tests under ctest;
#   2. clang build with ASan+UBSan (and warnings as errors); the same tests;
#   3. a clang ThreadSanitizer build running the multi-worker system tests;
#   4. the libFuzzer targets, each for FUZZ_SECONDS (default 10) over its corpus.
# Ends with a combined line "check: N passed, N failed" (each fuzz target
# counts as one test).
set -u
cd "$(dirname "$0")/.."
jobs=$(nproc)
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

run_suite() { # name builddir jobs cmake-args...
    name=$1 dir=$2 j=$3
    shift 3
    echo "== $name: configure and build ($dir)"
    cmake -S . -B "$dir" -G Ninja "$@" >"$log/$name.cmake" 2>&1 || { cat "$log/$name.cmake"; return 2; }
    cmake --build "$dir" || return 2
    echo "== $name: tests"
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir "$dir" --output-on-failure -j "$j" 2>&1 | tee "$log/$name.ctest"
}

counts() { # ctest log -> "passed failed"
    line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$1" | tail -n 1)
    total=$(echo "$line" | sed -E 's/.* out of ([0-9]+).*/\1/')
    failed=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) tests failed.*/\1/')
    [ -n "$line" ] || { echo "0 1"; return; }
    echo "$((total - failed)) $failed"
}

rc=0
run_suite plain build "$jobs" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_WERROR=ON || rc=1
set -- $(counts "$log/plain.ctest")
p1=$1 f1=$2
# The sanitized suite runs one test file at a time: under ASan the system
# tests are several times slower, and two of them side by side on this
# 2-core machine starved the switch's connection-limit test.
run_suite asan build-asan 1 -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DFERRY_SANITIZE=ON -DFERRY_WERROR=ON || rc=1
set -- $(counts "$log/asan.ctest")
p2=$1 f2=$2
echo "== tsan: configure and build (build-tsan)"
p4=0 f4=0
if cmake -S . -B build-tsan -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DFERRY_TSAN=ON >"$log/tsan.cmake" 2>&1 && cmake --build build-tsan; then
    TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure -R 'system/test_(cache|session_store|session_group|router|peer|switch_handoff)$' \
        2>&1 | tee "$log/tsan.ctest"
    set -- $(counts "$log/tsan.ctest")
    p4=$1 f4=$2
else
    cat "$log/tsan.cmake"
    f4=1
fi

echo "== fuzz: configure and build (build-fuzz)"
p3=0 f3=0
if cmake -S . -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DFERRY_FUZZ=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$log/fuzz.cmake" 2>&1 && cmake --build build-fuzz; then
    for t in build-fuzz/tests/fuzz/fuzz_*; do
        [ -x "$t" ] || continue
        if scripts/fuzz-one.sh "$t" "${FUZZ_SECONDS:-10}"; then p3=$((p3 + 1)); else f3=$((f3 + 1)); fi
    done
else
    cat "$log/fuzz.cmake"
    f3=1
fi
echo "fuzz: $p3 passed, $f3 failed"
passed=$((p1 + p2 + p3 + p4))
failed=$((f1 + f2 + f3 + f4))
[ "$failed" -eq 0 ] || rc=1
echo "check: $passed passed, $failed failed"
exit $rc
