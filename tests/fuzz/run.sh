#!/usr/bin/env bash
# Runs every fuzz target (build-fuzz/fuzz_*, from `make fuzz`) for SECONDS each, two at a time,
# from its seed corpus (tests/fuzz/corpus/<target>, read only) plus a working corpus of what it
# found so far (build-fuzz/corpus/<target>). A crash, leak, sanitizer report or timeout fails the
# target; its input is kept as build-fuzz/artifacts/<target>-crash-*, to be turned into a
# regression test. Usage: tests/fuzz/run.sh SECONDS [target ...]
set -u
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for t in build-fuzz/fuzz_*; do [ -x "$t" ] && targets+=("$(basename "$t")"); done
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "FAIL no fuzz targets in build-fuzz/ (run make fuzz first)"
    exit 1
fi
mkdir -p build-fuzz/artifacts build-fuzz/logs
JOBS=${FUZZ_JOBS:-$(nproc)}
[ "$JOBS" -gt 2 ] && JOBS=2

run_one() {
    local t=$1 secs=$2
    local seeds=tests/fuzz/corpus/${t#fuzz_} work=build-fuzz/corpus/${t#fuzz_}
    local max_len=65536
    [ "$t" = fuzz_stl10 ] && max_len=400000
    mkdir -p "$work"
    local log=build-fuzz/logs/$t.log
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0 UBSAN_OPTIONS=print_stacktrace=1 \
        "build-fuzz/$t" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2560 -max_len=$max_len \
        -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$t-" "$work" "$seeds" >"$log" 2>&1
    local rc=$?
    local execs cov
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | awk '{print $2}')
    if [ $rc -eq 0 ]; then
        echo "PASS $t: ${secs} s, ${execs:-?} executions, coverage ${cov:-?} edges, corpus $(ls "$work" | wc -l) inputs"
    else
        echo "FAIL $t (exit $rc, log $log):"
        grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -n 8 | sed 's/^/  /'
    fi
    return $rc
}
export -f run_one

printf '%s\n' "${targets[@]}" | xargs -P "$JOBS" -I{} bash -c "run_one {} $SECONDS_EACH" >build-fuzz/logs/summary.txt
cat build-fuzz/logs/summary.txt
passed=$(grep -c '^PASS' build-fuzz/logs/summary.txt)
failed=$((${#targets[@]} - passed))
echo "fuzz: $passed targets passed, $failed failed"
[ "$failed" -eq 0 ]
