#!/usr/bin/env bash
# Creates (once) the Python environment that provides libtorch, the data packages the tests read, and on
# request the reference frameworks. It lives outside the clone in a versioned cache
# (${ORCHARD_CACHE:-~/.cache/orchard}), so fresh CI clones reuse it; a changed package list adds to it.
# Usage: scripts/python-env.sh [base|tf]   (tf: base plus tensorflow-cpu and Keras 3)   (prints the environment's folder on the last line)
set -euo pipefail
TORCH_VERSION=2.13.0
CACHE="${ORCHARD_CACHE:-$HOME/.cache/orchard}"
VENV="$CACHE/venv-torch-$TORCH_VERSION"
BASE_PACKAGES="torch==$TORCH_VERSION numpy scikit-learn pillow elpv-dataset==1.0.0.post1"
TF_PACKAGES="tensorflow-cpu==2.21.0"
want="${1:-base}"

install() { # install PACKAGES once per distinct list, recorded by a stamp named after the list's hash
  local packages="$1" stamp
  stamp="$VENV/.ok-$(printf '%s' "$packages" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  echo "orchard: installing into $VENV: $packages (once; torch brings about 2.2 GB)" >&2
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q $packages >&2
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
[ "$want" = tf ] && install "$TF_PACKAGES"
echo "$VENV"
