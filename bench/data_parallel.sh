#!/usr/bin/env bash
# Data-parallel scaling on one machine's CPUs: one process with 2 OpenMP threads and batch 32 against two
# replicas (`orchard launch --nproc-per-node 2`) with 1 thread and batch 16 each: the same global batch.
# EfficientNet-B0 from scratch at 128 px on 192 synth training images, 3 epochs: the first is warm-up, the
# other two (6 steps each) are timed; ROUNDS rounds alternate the two, then the gradient all-reduce alone.
# Usage: bench/data_parallel.sh [ROUNDS]   (default 3)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh" test
# Orchard's own OpenMP setting (crates/orchard-cli/src/main.rs), for every process: sleep after a short spin.
export OMP_WAIT_POLICY=PASSIVE GOMP_SPINCOUNT=30000
rounds=${1:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$ORCHARD_BIN" data synth --out "$work/data" --train 240 --test 0 --size 160x120 --seed 1 >/dev/null
args="--data $work/data --arch efficientnet_b0 --size 128 --epochs 3 --folds 5 --fold 0 --schedule constant
      --lr 0.001 --workers 2 --quiet --cache"
speeds() { # images/s of the timed epochs of a run directory
  python3 -c 'import json,sys; print(*[round(json.loads(l)["images_per_second"], 2) for l in open(sys.argv[1])][1:])' \
    "$1/metrics.jsonl"
}
for round in $(seq "$rounds"); do
  rm -rf "$work/one" "$work/two"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=2 "$ORCHARD_BIN" train $args --batch 32 --out "$work/one" >/dev/null
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=1 "$ORCHARD_BIN" launch --nproc-per-node 2 -- train $args --batch 16 --out "$work/two" >/dev/null
  echo "round $round images/s: 1 process $(speeds "$work/one"); 2 replicas $(speeds "$work/two")"
done
OMP_NUM_THREADS=1 "$ORCHARD_BIN" launch --nproc-per-node 2 -- bench allreduce --arch efficientnet_b0 --classes 4
