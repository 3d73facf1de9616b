#!/usr/bin/env bash
# Sets everything up, then runs the main job on generated data. Until training lands this is the data
# half: make a Plant Pathology–style dataset, validate it, split it into folds, and time the input
# pipeline with and without the decode-once cache.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
OUT="${1:-demo}"
"$ORCHARD_BIN" data synth --out "$OUT/data" --train 300 --test 60 --size 1024x683 --seed 1
"$ORCHARD_BIN" data check "$OUT/data"
"$ORCHARD_BIN" data folds "$OUT/data" --k 5 --seed 1 --out "$OUT/folds.csv"
"$ORCHARD_BIN" bench input "$OUT/data" --size 224 --cache --epochs 2
