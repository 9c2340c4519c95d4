#!/usr/bin/env bash
# Runs every test program, then prints the total as the last line:
# "N passed, N failed". Test programs print "RESULT <p> passed <f> failed"; a program that
# crashes or prints no RESULT counts as one failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BYOL=${BYOL:-./byol}
passed=0
failed=0
run() {
    local name=$1
    shift
    echo "== $name"
    local out
    out=$("$@" 2>&1)
    local rc=$?
    echo "$out"
    local line
    line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n1)
    if [ -z "$line" ]; then
        echo "FAIL $name: exited $rc without a RESULT line"
        failed=$((failed + 1))
        return
    fi
    local p f
    p=$(echo "$line" | awk '{print $2}')
    f=$(echo "$line" | awk '{print $4}')
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $name: exited $rc"
        failed=$((failed + 1))
    fi
}
programs=0
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    programs=$((programs + 1))
    run "$(basename "$t")" "$t"
done
if [ "$programs" -eq 0 ]; then
    echo "FAIL no test programs in $BUILD/tests (run make first)"
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
