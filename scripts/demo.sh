#!/usr/bin/env bash
# Sets everything up, then runs the main job on generated data: a small experiment through `orchard run`
# (a Plant Pathology–style dataset, three members × three folds, predictions with flips TTA, an ensemble with
# searched weights, a checked submission scored against the generated test labels), then the input-pipeline
# benchmark. About 5 minutes on two cores; run it again and the finished units are not trained again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
EXAMPLES="$(cd "$(dirname "${BASH_SOURCE[0]}")/../examples" && pwd)"
OUT="${1:-demo}"
"$ORCHARD_BIN" data synth --out "$OUT/data" --train 300 --test 60 --size 128 --seed 1
"$ORCHARD_BIN" data check "$OUT/data"
"$ORCHARD_BIN" run "$EXAMPLES/synth-experiment.toml" --data "$OUT/data" --out "$OUT/experiment"
"$ORCHARD_BIN" submission check --sample "$OUT/data/sample_submission.csv" --test "$OUT/data/test.csv" \
  --pred "$OUT/experiment/submission.csv"
"$ORCHARD_BIN" score --truth "$OUT/data/test_labels.csv" --pred "$OUT/experiment/submission.csv"

# The input pipeline on large JPEGs, with and without the decode-once cache.
"$ORCHARD_BIN" data synth --out "$OUT/bench-data" --train 300 --test 0 --size 1024x683 --seed 1
"$ORCHARD_BIN" bench input "$OUT/bench-data" --size 224 --cache --epochs 2
