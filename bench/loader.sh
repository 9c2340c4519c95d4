#!/usr/bin/env bash
# Loader benchmark: byol.c's loader (one worker thread) against torchvision + PIL (one process,
# one thread) on the same files: the CIFAR-10 JPEG folder at 32 px, and 500x375 JPEGs at 224 px.
# Images per second per core, each image decoded once and augmented into two views.
#
#   make bench && bash bench/loader.sh [SECONDS]
#
# Needs ../shared/data/cifar10-jpeg.tar.gz and Debian's python3-torchvision (for the baseline).
# Run it on a quiet machine: the figures are per core.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-10}
work=$(mktemp -d /tmp/byol_bench_loader.XXXXXX)
trap 'rm -rf "$work"' EXIT
tar xzf ../shared/data/cifar10-jpeg.tar.gz -C "$work" --wildcards 'cifar10-jpeg/train/*/0[0-4]??.jpg'
/usr/bin/python3 bench/make_large_jpegs.py "$work/cifar10-jpeg/train" "$work/large" --n 300
for setting in "cifar10-jpeg/train 32" "large 224"; do
    set -- $setting
    echo "== $1 at $2 px"
    for rep in 1 2 3; do
        build/bench/bench_loader --data "$work/$1" --image-size "$2" --workers 1 --seconds "$SECONDS_EACH" | tail -n1
        /usr/bin/python3 bench/torchvision_loader.py --data "$work/$1" --image-size "$2" --seconds "$SECONDS_EACH" | tail -n1
        if [ "$2" -gt 64 ]; then # the blur is on: also solo-learn's faster PIL blur
            /usr/bin/python3 bench/torchvision_loader.py --data "$work/$1" --image-size "$2" --seconds "$SECONDS_EACH" --pil-blur | tail -n1
        fi
    done
done
