#!/usr/bin/env bash
# Orchard on a CUDA GPU, end to end, in one short run (about 2.5 minutes on an H100):
#   1. model speed against PyTorch's on the same GPU, training steps at 224, batch 64, f32 and bf16, with
#      the GPU memory each process held at its peak (nvidia-smi, sampled; it includes the CUDA context);
#   2. `orchard train` on synth data on the GPU in bf16, f16 (loss scaling) and f32 contiguous;
#   3. `orchard predict` with TTA on the GPU, and the same checkpoint on the CPU: the probabilities agree to
#      1e-2 (cuDNN convolutions run in TF32 by default, as in PyTorch; measured: 1.4e-3).
# Usage: bench/cuda.sh [WORKDIR]   with ORCHARD_BIN (default target/release/orchard) and ORCHARD_PYTHON (the
# Python whose torch and torchvision run the peer; default python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ORCHARD_BIN:-$ROOT/target/release/orchard}"
PY="${ORCHARD_PYTHON:-python3}"
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# Runs a command while sampling the GPU's used memory; prints the command's output and the peak.
with_gpu_peak() {
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$WORK/smi" &
  local smi=$!
  "$@"
  kill "$smi"; wait "$smi" 2>/dev/null || true
  echo "  GPU memory used at peak (nvidia-smi): $(sort -n "$WORK/smi" | tail -1) MiB"
}

echo "== 1. model training speed, batch 64 at 224, against PyTorch on the same GPU"
for arch in efficientnet_b0 resnet50_v2; do
  for precision in f32 bf16; do
    args=(--arch "$arch" --size 224 --batch 64 --train --steps 20 --warmup 5 --layout channels-last --precision "$precision")
    o=$(with_gpu_peak "$BIN" bench model "${args[@]}" --device cuda)
    t=$(with_gpu_peak "$PY" "$ROOT/bench/peers/torch_peer.py" "${args[@]}" --device cuda)
    echo "$o"; echo "$t"
    python3 -c "import re,sys; r=[float(re.search(r'([0-9.]+) images/s', s).group(1)) for s in sys.argv[1:]]; print(f'  ratio orchard/torch: {r[0]/r[1]:.2f}')" "$o" "$t"
  done
done

echo "== 2. training on the GPU"
"$BIN" data synth --out "$WORK/data" --train 800 --test 64 --size 192x128 --seed 12 >/dev/null
common=(--data "$WORK/data" --arch efficientnet_b0 --size 128 --batch 32 --folds 5 --fold 0 --bn-momentum 0.9
  --schedule cosine --lr 0.003 --warmup 1 --device cuda --cache --quiet)
for run in "bf16 channels-last 4" "f16 channels-last 2" "f32 contiguous 2"; do
  read -r precision layout epochs <<<"$run"
  start=$(date +%s.%N)
  with_gpu_peak "$BIN" train "${common[@]}" --precision "$precision" --layout "$layout" --epochs "$epochs" --out "$WORK/run-$precision"
  echo "  $precision $layout, $epochs epochs: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)") s"
  (head -n 1 "$WORK/run-$precision/metrics.csv"; tail -n 1 "$WORK/run-$precision/metrics.csv") | cut -d, -f1-6 | sed "s/^/    /"
done

echo "== 3. predictions with TTA on the GPU and on the CPU from the same checkpoint"
"$BIN" predict --run "$WORK/run-bf16" --data "$WORK/data" --split test --tta flips --device cuda --out "$WORK/cuda.csv"
"$BIN" predict --run "$WORK/run-bf16" --data "$WORK/data" --split test --tta flips --device cpu --out "$WORK/cpu.csv"
python3 - "$WORK/cuda.csv" "$WORK/cpu.csv" <<'EOF'
import csv, sys
a, b = ([list(map(float, r[1:])) for r in list(csv.reader(open(p)))[1:]] for p in sys.argv[1:])
assert len(a) == len(b) == 64, (len(a), len(b))
diff = max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))
print(f"  max |p_cuda - p_cpu| over {len(a)} images: {diff:.2e}")
sys.exit(0 if diff < 1e-2 else 1)
EOF
echo "cuda check passed"
