#!/usr/bin/env bash
# Orchard's model speed against PyTorch's (torchvision) in the same run, as a ratio: training steps of
# EfficientNet-B0 and ResNet-50(V2) at 224, batch 16, in f32 (contiguous and channels-last) and bf16 autocast.
# Usage: bench/model.sh [ARCH...]   (default: efficientnet_b0 resnet50_v2)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh" test
export OMP_WAIT_POLICY=PASSIVE
ARCHS=("${@:-efficientnet_b0 resnet50_v2}")
for arch in ${ARCHS[@]}; do
  for options in "--layout contiguous --precision f32" "--layout channels-last --precision f32" "--layout channels-last --precision bf16"; do
    # shellcheck disable=SC2086
    o=$("$ORCHARD_BIN" bench model --arch "$arch" --size 224 --batch 16 --train --steps 3 $options)
    # shellcheck disable=SC2086
    t=$("$ORCHARD_PYTHON" "$ORCHARD_ROOT/bench/torch_model.py" --arch "$arch" --size 224 --batch 16 --train --steps 3 $options)
    echo "$o"
    echo "$t"
    python3 -c "import re,sys; r=[float(re.search(r'([0-9.]+) images/s', s).group(1)) for s in sys.argv[1:]]; print(f'  ratio orchard/torch: {r[0]/r[1]:.2f}')" "$o" "$t"
  done
done
