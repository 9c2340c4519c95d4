#!/bin/bash
# The GPU checks of issue 18, in one run on a machine with a CUDA GPU (the `device` tool's, or
# yours), from the repository root:
#
#   bash tests/gpu/run.sh            # everything, about 8 minutes on one H200
#   bash tests/gpu/run.sh checks     # 1-2 only (about 3 minutes)
#   bash tests/gpu/run.sh bench      # 3 only; train: 4 only
#
# It builds byol with CUDA (finding cuDNN under /usr/local/cuda, or in the Python environment's
# nvidia/cudnn wheel, which CUDNN_HOME may also name), then prints one table:
#   1. every `byol step` fixture on the GPU in fp32 within the CPU suite's tolerances
#      (tests/test_step.c run with BYOL_TEST_DEVICE=cuda), the grid-emulated kernels' tests, and
#      CPU and GPU losses on 3 further configurations (5 steps of byol train each), in fp32
#      (within 1e-3) and bf16 (within 5e-2);
#   2. a GPU run repeated is bit-identical (byol step twice, byol train twice), and a resumed
#      run ends bit-identical with an uninterrupted one;
#   3. byol bench --device cuda, bf16 and fp32, against PyTorch eager (bench/torch_byol_step_gpu.py:
#      channels_last, AMP bf16 and fp32) on ResNet-18 CIFAR at batch 512 and ResNet-50 at 128 px,
#      batch 128;
#   4. a 5-minute CIFAR-10 run (full-width ResNet-18, batch 512, bf16), then byol eval.
# CIFAR-10 comes from data/cifar10-jpeg.tar.gz (copy ../shared/data/cifar10-jpeg.tar.gz there and
# name data/ in the device tool's carry) or ../shared/data/. Logs and the table go to $OUT (the
# device tool's folder) or /tmp/byol-gpu. Exit status: 0 when every check passed.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
OUTDIR=${OUT:-/tmp/byol-gpu}
mkdir -p "$OUTDIR"
WHAT=${1:-all}
# BYOL_GPU_DEVICE=gpu-emulator rehearses the script's plumbing on a machine without a GPU (slow)
DEV=${BYOL_GPU_DEVICE:-cuda}
START=$(date +%s)
TABLE="$OUTDIR/table.txt"
: > "$TABLE"
FAILED=0
row() { # check, verdict, details
    printf '%-46s %-5s %s\n' "$1" "$2" "$3" | tee -a "$TABLE"
    [ "$2" = FAIL ] && FAILED=1
    return 0
}
elapsed() { echo "$(( $(date +%s) - START )) s"; }

# ---- build ----
if [ ! -e /usr/local/cuda/lib64/libcudnn.so.9 ] && [ -z "${CUDNN_HOME:-}" ]; then
    CUDNN_HOME=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null)
fi
MAKE_CUDNN=()
if [ -n "${CUDNN_HOME:-}" ]; then
    # a wheel ships libcudnn.so.9 without the libcudnn.so the linker looks for: a folder of
    # links gives it one; the library itself loads its parts from the wheel's folder
    link=$ROOT/build/cudnn-home
    mkdir -p "$link/lib"
    ln -sfn "$CUDNN_HOME/include" "$link/include"
    ln -sf "$CUDNN_HOME/lib/libcudnn.so.9" "$link/lib/libcudnn.so"
    ln -sf "$CUDNN_HOME/lib/libcudnn.so.9" "$link/lib/libcudnn.so.9"
    export LD_LIBRARY_PATH="$CUDNN_HOME/lib:${LD_LIBRARY_PATH:-}"
    MAKE_CUDNN=("CUDNN_HOME=$link")
    echo "cuDNN from $CUDNN_HOME"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUTDIR/gpu.txt"
if ! make -j"$(nproc)" "${MAKE_CUDNN[@]}" byol build/tests/test_step build/tests/test_gpu_kernels build/tests/test_gpu \
        > "$OUTDIR/build.log" 2>&1; then
    tail -40 "$OUTDIR/build.log"
    row "build with CUDA" FAIL "see build.log"
    exit 1
fi
./byol --version | tail -1 | tee -a "$OUTDIR/gpu.txt"
if [ "$DEV" != cuda ] || ./byol --version | grep -q "gpu: CUDA.*1 device\|gpu: CUDA.*devices"; then
    row "build with CUDA, GPU visible" PASS "$(./byol --version | tail -1 | cut -c1-80)"
else
    row "build with CUDA, GPU visible" FAIL "$(./byol --version | tail -1)"
    exit 1
fi

CIFAR=""
cifar() { # extracts CIFAR-10 once
    [ -n "$CIFAR" ] && return 0
    local tgz=data/cifar10-jpeg.tar.gz
    [ -f "$tgz" ] || tgz=../shared/data/cifar10-jpeg.tar.gz
    mkdir -p "$OUTDIR/data"
    tar xzf "$tgz" -C "$OUTDIR/data" && CIFAR="$OUTDIR/data/cifar10-jpeg"
}

# tensors of two safetensors files, bit for bit (metadata aside)
same_tensors() {
    python3 - "$1" "$2" <<'PY'
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]] for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
diff = [k for k in a if a[k] != b.get(k)] + [k for k in b if k not in a]
print(f"{len(a)} tensors, {len(diff)} differ" + (f" (first: {diff[0]})" if diff else ""))
sys.exit(1 if diff else 0)
PY
}

# first loss of each metrics line, as a list
losses() { python3 -c 'import json,sys; print(" ".join("%.6f" % json.loads(l)["loss"] for l in open(sys.argv[1]) if "\"loss\"" in l))' "$1"; }

if [ "$WHAT" = all ] || [ "$WHAT" = checks ]; then
    # ---- 1. exactness ----
    if ./build/tests/test_gpu_kernels > "$OUTDIR/test_gpu_kernels.log" 2>&1; then
        row "1a. own kernels, grid emulator (host)" PASS "$(tail -1 "$OUTDIR/test_gpu_kernels.log")"
    else
        row "1a. own kernels, grid emulator (host)" FAIL "$(grep -m1 -A2 FAIL "$OUTDIR/test_gpu_kernels.log" | tr '\n' ' ')"
    fi
    if BYOL_TEST_DEVICE=$DEV ./build/tests/test_step > "$OUTDIR/test_step.log" 2>&1; then
        row "1b. byol step fixtures on the GPU, fp32" PASS "$(grep -c "device $DEV" "$OUTDIR/test_step.log") fixtures"
    else
        row "1b. byol step fixtures on the GPU, fp32" FAIL "$(grep -m3 'cuda\|FAIL' "$OUTDIR/test_step.log" | tr '\n' ' ' | cut -c1-300)"
    fi
    grep "device $DEV" "$OUTDIR/test_step.log" | tee -a "$TABLE"
    cifar
    # losses of 5 steps on the CPU and the GPU: fp32 within 1e-3; bf16 within 5e-2 (emulated:
    # 8e-4 and 1.3e-3 for the ResNet-18s, 2.1e-2 for the ResNet-50 of width 8)
    compare_losses() { # cpu metrics, gpu metrics, bound
        python3 - "$1" "$2" "$3" <<'PY'
import json, sys
def L(p):
    try: return [json.loads(l)["loss"] for l in open(p) if '"loss"' in l]
    except OSError: return []
a, b, bound = L(sys.argv[1]), L(sys.argv[2]), float(sys.argv[3])
if not a or len(a) != len(b): print(f"FAIL cpu {len(a)} losses, gpu {len(b)}"); sys.exit()
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(("PASS" if worst <= bound else "FAIL") + f" {len(a)} steps, worst relative loss difference {worst:.2e} (bound {bound:g})")
PY
    }
    n=0
    for cfg in "--arch resnet18 --width 16 --batch 64" \
               "--arch resnet18 --width 16 --stem imagenet --image-size 64 --batch 32" \
               "--arch resnet50 --width 8 --batch 32"; do
        n=$((n + 1))
        common5=(--data "$CIFAR" --max-steps 5 --log-every 1 --eval-every 0 --knn-before 0 --knn-after 0)
        ./byol train "${common5[@]}" $cfg --device cpu --out "$OUTDIR/agree$n-cpu" > "$OUTDIR/agree$n-cpu.log" 2>&1
        for p in fp32 bf16; do
            ./byol train "${common5[@]}" $cfg --device $DEV --precision $p --out "$OUTDIR/agree$n-$p" \
                > "$OUTDIR/agree$n-$p.log" 2>&1
        done
        verdict=$(compare_losses "$OUTDIR/agree$n-cpu/metrics.jsonl" "$OUTDIR/agree$n-fp32/metrics.jsonl" 1e-3)
        row "1c. CPU and GPU fp32 agree: $cfg" "${verdict%% *}" "${verdict#* }"
        verdict=$(compare_losses "$OUTDIR/agree$n-cpu/metrics.jsonl" "$OUTDIR/agree$n-bf16/metrics.jsonl" 5e-2)
        row "1d. GPU bf16 against CPU fp32: $cfg" "${verdict%% *}" "${verdict#* }"
    done

    # ---- 2. determinism ----
    fx=tests/fixtures/step_r18_cifar_rgb # its model: tests/fixtures' metadata
    for k in 1 2; do
        ./byol step --state $fx.state.safetensors --views $fx.views.npy --out "$OUTDIR/rep$k.safetensors" \
            --arch resnet18 --width 4 --proj-hidden 32 --proj-dim 16 --pred-hidden 32 --device $DEV \
            > "$OUTDIR/rep$k.log" 2>&1
    done
    if [ -f "$OUTDIR/rep1.safetensors" ] && d=$(same_tensors "$OUTDIR/rep1.safetensors" "$OUTDIR/rep2.safetensors"); then
        row "2a. byol step twice: the same bits" PASS "$d"
    else
        row "2a. byol step twice: the same bits" FAIL "${d:-$(head -2 "$OUTDIR/rep1.log")}"
    fi
    common=(--data "$CIFAR" --width 16 --batch 128 --log-every 5 --eval-every 0 --knn-before 0 --knn-after 0 --device $DEV)
    ./byol train "${common[@]}" --max-steps 40 --out "$OUTDIR/runA" > "$OUTDIR/runA.log" 2>&1
    ./byol train "${common[@]}" --max-steps 40 --out "$OUTDIR/runA2" > "$OUTDIR/runA2.log" 2>&1
    ./byol train "${common[@]}" --max-steps 20 --out "$OUTDIR/runB" > "$OUTDIR/runB.log" 2>&1
    ./byol train --resume "$OUTDIR/runB" --max-steps 40 --device $DEV > "$OUTDIR/runB2.log" 2>&1
    last() { ls "$1"/ckpt-*.safetensors 2>/dev/null | tail -1; }
    if d=$(same_tensors "$(last "$OUTDIR/runA")" "$(last "$OUTDIR/runA2")" 2>&1); then
        row "2b. byol train twice (40 steps): the same bits" PASS "$d"
    else
        row "2b. byol train twice (40 steps): the same bits" FAIL "$d"
    fi
    if d=$(same_tensors "$(last "$OUTDIR/runA")" "$(last "$OUTDIR/runB")" 2>&1); then
        row "2c. 20 steps + resume 20 = 40 steps, bit for bit" PASS "$d"
    else
        row "2c. 20 steps + resume 20 = 40 steps, bit for bit" FAIL "$d"
    fi
    # the same checkpoint resumes on the CPU: files are the same on every device
    if ./byol train --resume "$OUTDIR/runB" --max-steps 42 --device cpu > "$OUTDIR/runB3.log" 2>&1; then
        row "2d. a GPU checkpoint resumes on the CPU" PASS "$(tail -1 "$OUTDIR/runB3.log" | cut -c1-70)"
    else
        row "2d. a GPU checkpoint resumes on the CPU" FAIL "$(tail -1 "$OUTDIR/runB3.log")"
    fi
    # mpirun -np 2 on one GPU: one clear line
    if command -v mpirun > /dev/null; then
        mpirun --allow-run-as-root -np 2 ./byol bench --device $DEV --steps 2 > "$OUTDIR/mpi.log" 2>&1
        rc=$?
        if [ $rc -ne 0 ] && grep -q "device $DEV" "$OUTDIR/mpi.log"; then
            row "2e. mpirun -np 2 --device $DEV refused" PASS "$(grep -m1 "device $DEV" "$OUTDIR/mpi.log" | cut -c1-90)"
        else
            row "2e. mpirun -np 2 --device $DEV refused" FAIL "exit $rc: $(head -2 "$OUTDIR/mpi.log")"
        fi
    fi
    echo "checks done at $(elapsed)"
fi

if [ "$WHAT" = all ] || [ "$WHAT" = bench ]; then
    # ---- 3. speed against PyTorch eager ----
    bench_pair() { # label, byol flags, torch flags
        ips() { python3 -c 'import json,sys; print("%.0f" % [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")][-1]["images_per_s"])' "$1" 2>/dev/null; }
        ./byol bench --device $DEV --precision bf16 --steps 20 $2 > "$OUTDIR/bench-$1.log" 2>&1
        ./byol bench --device $DEV --precision fp32 --steps 20 $2 > "$OUTDIR/bench-$1-fp32.log" 2>&1
        local ours=$(ips "$OUTDIR/bench-$1.log") ours32=$(ips "$OUTDIR/bench-$1-fp32.log")
        for p in bf16 fp32; do
            python3 bench/torch_byol_step_gpu.py $3 --precision $p > "$OUTDIR/torch-$1-$p.log" 2>&1
        done
        local tb=$(tail -1 "$OUTDIR/torch-$1-bf16.log" | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["images_per_s"])' 2>/dev/null)
        local tf=$(tail -1 "$OUTDIR/torch-$1-fp32.log" | python3 -c 'import json,sys; print("%.0f" % json.load(sys.stdin)["images_per_s"])' 2>/dev/null)
        if [ -n "$ours" ] && [ -n "$tb" ]; then
            row "3. bench $1" INFO "byol bf16 $ours img/s, fp32 ${ours32:-?}; torch eager bf16 $tb, fp32 ${tf:-?}; bf16 ratio $(python3 -c "print('%.2f' % ($ours / $tb))")"
        else
            row "3. bench $1" FAIL "byol '${ours}' torch '${tb}': see bench-$1.log, torch-$1-bf16.log"
        fi
    }
    bench_pair r18-cifar-b512 "--batch 512" "--batch 512"
    bench_pair r50-128px-b128 "--arch resnet50 --stem imagenet --image-size 128 --batch 128" \
        "--arch resnet50 --stem imagenet --size 128 --batch 128"
    echo "bench done at $(elapsed)"
fi

if [ "$WHAT" = all ] || [ "$WHAT" = train ]; then
    # ---- 4. five minutes of CIFAR-10 ----
    cifar
    ./byol train --data "$CIFAR" --width 64 --batch 512 --time-budget 300 --device $DEV --out "$OUTDIR/train5" \
        > "$OUTDIR/train5.log" 2>&1
    ./byol eval --ckpt "$OUTDIR/train5" --device $DEV --probe-iters 500 > "$OUTDIR/eval5.log" 2>&1
    if j=$(tail -1 "$OUTDIR/eval5.log" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("step %d, kNN %.2f%%, linear %.2f%%" % (d["step"], 100*d["knn_top1"], 100*d["linear_top1"]))' 2>/dev/null); then
        row "4. CIFAR-10, 300 s on the GPU, R18 w64 b512" INFO "$j"
    else
        row "4. CIFAR-10, 300 s on the GPU, R18 w64 b512" FAIL "$(tail -2 "$OUTDIR/train5.log" "$OUTDIR/eval5.log" | tr '\n' ' ' | cut -c1-200)"
    fi
fi

echo "---- table ($(elapsed)) ----"
cat "$TABLE"
exit $FAILED
