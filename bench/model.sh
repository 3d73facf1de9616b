#!/usr/bin/env bash
# Orchard's model speed against PyTorch's on the same network in the same run, as a ratio: training steps of
# EfficientNet-B0 and ResNet50V2 at 224, batch 16, in f32 (contiguous and channels-last) and bf16 autocast.
# Three rounds alternating the two, 5 timed steps after 2 warm-up each; the median ratio. (bench/compare runs
# every peer configuration; this is the quick check of layouts and precisions.)
# Usage: bench/model.sh [ARCH...]   (default: efficientnet_b0 resnet50_v2)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh" test
# Orchard's own OpenMP setting (crates/orchard-cli/src/main.rs), for every process: sleep after a short spin.
export OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=30000
ARCHS=("${@:-efficientnet_b0 resnet50_v2}")
rate() { grep -o '[0-9.]* images/s' <<<"$1" | head -1 | cut -d' ' -f1; }
for arch in ${ARCHS[@]}; do
  for options in "--layout contiguous --precision f32" "--layout channels-last --precision f32" "--layout channels-last --precision bf16"; do
    ratios=()
    for round in 1 2 3; do
      # shellcheck disable=SC2086
      o=$("$ORCHARD_BIN" bench model --arch "$arch" --size 224 --batch 16 --train --steps 5 --warmup 2 $options)
      # shellcheck disable=SC2086
      t=$("$ORCHARD_PYTHON" "$ORCHARD_ROOT/bench/peers/torch_peer.py" --arch "$arch" --size 224 --batch 16 --train --steps 5 --warmup 2 $options)
      t="${t%%$'\n'*}" # its human line (the RESULT line follows)
      echo "round $round: $o"
      echo "round $round: $t"
      ratios+=("$(python3 -c "import sys; print(float(sys.argv[1]) / float(sys.argv[2]))" "$(rate "$o")" "$(rate "$t")")")
    done
    python3 -c "import statistics, sys; print(f'  median ratio orchard/torch ($arch $options): {statistics.median(map(float, sys.argv[1:])):.2f}')" "${ratios[@]}"
  done
done
