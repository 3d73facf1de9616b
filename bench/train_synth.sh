#!/usr/bin/env bash
# Training speed and quality from scratch: EfficientNet-B0 on 2,000 synth images at 128 px with
# examples/synth-b0-scratch.toml (fold 0 of 5 held out). Prints each epoch, the best validation mean AUC
# and the wall time.
# Usage: bench/train_synth.sh [DATA_DIR]   (default: bench-data/synth2k, made when missing)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh" test
DIR="${1:-$ORCHARD_ROOT/bench-data/synth2k}"
if [ ! -f "$DIR/train.csv" ]; then
  "$ORCHARD_BIN" data synth --out "$DIR" --train 2000 --test 0 --size 192x128 --seed 12
fi
OUT="$(mktemp -d)"
start=$(date +%s)
"$ORCHARD_BIN" train --config "$ORCHARD_ROOT/examples/synth-b0-scratch.toml" --data "$DIR" --out "$OUT/run"
echo "wall time: $(($(date +%s) - start)) s"
rm -rf "$OUT"
