#!/usr/bin/env bash
# Runs every test program, then prints the total as the last line:
# "N passed, N failed". Test programs print "RESULT <p> passed <f> failed"; a program that
# crashes or prints no RESULT counts as one failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
export BYOL=${BYOL:-./byol}
# byol's commands measure convolution kernels and cache the choices under XDG_CACHE_HOME: the
# suite keeps its own cache, shared by its programs and removed at the end.
XDG_CACHE_HOME=$(mktemp -d)
export XDG_CACHE_HOME
trap 'rm -rf "$XDG_CACHE_HOME"' EXIT
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
    # a program may skip what this machine cannot run (no MPI): "SKIP <what>: <why>" lines
    skipped=$((skipped + $(printf '%s\n' "$out" | grep -c '^SKIP ')))
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
skipped=0
# TESTS="test_a test_b" runs only those programs (make test-tsan)
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    if [ -n "${TESTS:-}" ] && ! [[ " $TESTS " == *" $(basename "$t") "* ]]; then continue; fi
    programs=$((programs + 1))
    run "$(basename "$t")" "$t"
done
# The PyTorch interoperability tests need Debian's python3-torch (and python3-torchvision for
# test_export.py), which CI does not install: without them they are counted as skipped, not as
# passed. python_test NAME MODULES PACKAGES
python_test() {
    [ -n "${TESTS:-}" ] && return
    if /usr/bin/python3 -c "import $2" >/dev/null 2>&1; then
        run "$1" /usr/bin/python3 "tests/reference/$1" "$BYOL"
    else
        echo "== $1"
        echo "SKIP $1: /usr/bin/python3 lacks $2 (apt-get install $3)"
        skipped=$((skipped + 1))
    fi
}
python_test test_export.py "torch, torchvision" "python3-torch python3-torchvision"
python_test test_pth2safetensors.py "torch, numpy, PIL" "python3-torch python3-pil"
python_test test_tensorboard.py "google.protobuf" "python3-protobuf"
python_test test_onnx.py "onnx, torch, numpy" "python3-onnx python3-torch"
if [ "$programs" -eq 0 ]; then
    echo "FAIL no test programs in $BUILD/tests (run make first)"
    failed=$((failed + 1))
fi
[ "$skipped" -gt 0 ] && echo "$skipped skipped"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
