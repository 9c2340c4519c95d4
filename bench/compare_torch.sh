#!/bin/bash
# byol.c against PyTorch on the configurations of the speed issue (the fourth: the model `byol
# train` runs with no flags, with the PyTorch script's 256-wide projection), side by side in one
# run: for each configuration, ROUNDS alternating runs of ../shared/bench/torch_byol_step.py
# and `byol bench` (same model, batch, image size and threads), then the medians, their ratio
# and each side's peak RSS. Run it with nothing else heavy on the machine.
#
# usage: bench/compare_torch.sh [threads=2] [rounds=2] [steps=5]
# env:   TORCH_STEP (default ../shared/bench/torch_byol_step.py), BYOL (default ./byol)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}; ROUNDS=${2:-2}; STEPS=${3:-5}
TORCH_STEP=${TORCH_STEP:-../shared/bench/torch_byol_step.py}
BYOL=${BYOL:-./byol}
[ -x "$BYOL" ] || { echo "compare_torch.sh: $BYOL not found (run make first)" >&2; exit 1; }
[ -f "$TORCH_STEP" ] || { echo "compare_torch.sh: $TORCH_STEP not found (set TORCH_STEP)" >&2; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null ||
    { echo "compare_torch.sh: /usr/bin/python3 lacks torch (apt-get install python3-torch)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# name | torch arguments (arch batch size channels steps threads width stem) | byol flags
CONFIGS=(
  "CIFAR full width|resnet18 64 32 3 $STEPS $THREADS 64 cifar|--arch resnet18 --width 64 --stem cifar --in-channels 3 --image-size 32 --batch 64"
  "CPU default|resnet18 256 28 1 $STEPS $THREADS 16 cifar|--arch resnet18 --width 16 --stem cifar --in-channels 1 --image-size 28 --batch 256"
  "Bottlenecks|resnet50 32 64 3 $STEPS $THREADS 64 imagenet|--arch resnet50 --width 64 --stem imagenet --in-channels 3 --image-size 64 --batch 32"
  "Train default|resnet18 128 28 1 $STEPS $THREADS 8 cifar 512|--arch resnet18 --width 8 --stem cifar --in-channels 1 --image-size 28 --batch 128 --proj-hidden 512 --pred-hidden 512 --proj-dim 256"
)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "byol.c vs PyTorch, $THREADS threads, $ROUNDS alternating rounds of $STEPS timed steps each"
echo "$($BYOL --version)"
echo "$(/usr/bin/python3 -c 'import torch; print("torch", torch.__version__)')"
printf "| %-17s | %15s | %15s | %6s | %12s | %12s |\n" config "PyTorch img/s" "byol.c img/s" ratio "PyTorch RSS" "byol.c RSS"
printf "|%s|%s|%s|%s|%s|%s|\n" ------------------- ----------------- ----------------- -------- -------------- --------------
for cfg in "${CONFIGS[@]}"; do
  IFS='|' read -r name targs bflags <<<"$cfg"
  : >"$tmp/t"; : >"$tmp/b"; : >"$tmp/trss"; : >"$tmp/brss"
  for ((r = 0; r < ROUNDS; r++)); do
    /usr/bin/time -f "%M" -o "$tmp/rss" /usr/bin/python3 "$TORCH_STEP" $targs >"$tmp/out"
    grep -o '[0-9.]* images/s' "$tmp/out" | cut -d' ' -f1 >>"$tmp/t"
    cat "$tmp/rss" >>"$tmp/trss"
    /usr/bin/time -f "%M" -o "$tmp/rss" "$BYOL" bench $bflags --steps "$STEPS" --threads "$THREADS" >"$tmp/out"
    tail -1 "$tmp/out" | grep -o '"images_per_s": [0-9.]*' | cut -d' ' -f2 >>"$tmp/b"
    cat "$tmp/rss" >>"$tmp/brss"
  done
  t=$(median <"$tmp/t"); b=$(median <"$tmp/b")
  trss=$(sort -n "$tmp/trss" | tail -1); brss=$(sort -n "$tmp/brss" | tail -1)
  printf "| %-17s | %15.1f | %15.1f | %5.2fx | %9.0f MB | %9.0f MB |\n" "$name" "$t" "$b" \
    "$(awk -v a="$b" -v b="$t" 'BEGIN {print a / b}')" "$(awk -v k="$trss" 'BEGIN {print k / 1024}')" \
    "$(awk -v k="$brss" 'BEGIN {print k / 1024}')"
done
