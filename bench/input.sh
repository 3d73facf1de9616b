#!/usr/bin/env bash
# Orchard's input pipeline against tf.data's on the same JPEGs, side by side in one run.
# Usage: bench/input.sh [DATASET_DIR]   (default: 300 synthetic 2048x1365 JPEGs in bench-data/pp2048)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh" test
DIR="${1:-$ORCHARD_ROOT/bench-data/pp2048}"
if [ ! -f "$DIR/train.csv" ]; then
  "$ORCHARD_BIN" data synth --out "$DIR" --train 300 --test 0 --size 2048x1365 --seed 7
fi
"$ORCHARD_BIN" bench input "$DIR" --size 224 --cache --epochs 2 | tee /tmp/orchard-bench-input.txt
"$ORCHARD_PYTHON" "$ORCHARD_ROOT/bench/tfdata_input.py" "$DIR" --size 224 --epochs 2 | tee /tmp/tfdata-bench-input.txt
python3 - <<'PY'
import re
def best(path, pattern):
    rates = [float(m.group(1)) for line in open(path) if re.search(pattern, line) for m in [re.search(r"= ([0-9.]+) images/s", line)] if m]
    return max(rates) if rates else float("nan")
o = best("/tmp/orchard-bench-input.txt", "^files")
c = best("/tmp/orchard-bench-input.txt", "^cache")
t = best("/tmp/tfdata-bench-input.txt", "ratio=")
print(f"orchard uncached {o:.1f} images/s vs best tf.data {t:.1f} images/s: {o / t:.2f}x; cached {c:.1f} images/s")
PY
