#!/usr/bin/env bash
# All set-up on a fresh Debian machine with Rust and Python 3: system packages, the Python environment
# with libtorch, and the build. Safe to rerun; fast when everything is present.
# Usage: source scripts/setup.sh [test|demo]   (exports what cargo and the tests need, and builds)
#   test (the default): everything the tests use; demo: only what the demo uses (scripts/python-env.sh)
set -euo pipefail
ORCHARD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

missing=""
for tool in cmake nasm pkg-config; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
# libhdf5 (Debian's, linked by hdf5-metno) reads Keras .h5 weight files.
dpkg -s libhdf5-dev >/dev/null 2>&1 || missing="$missing libhdf5-dev"
if [ -n "$missing" ]; then
  echo "orchard: installing$missing (libjpeg-turbo is built from source with SIMD; libhdf5 reads Keras files)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $missing >/dev/null
fi

# Sourced without an argument, $1 may be the caller's own: anything but "demo" means test.
case "${1:-}" in demo) ORCHARD_SETUP=demo ;; *) ORCHARD_SETUP=test ;; esac
VENV="$("$ORCHARD_ROOT/scripts/python-env.sh" "$ORCHARD_SETUP" | tail -n 1)"
# torch-sys reads libtorch's location from this Python (LIBTORCH_USE_PYTORCH); VIRTUAL_ENV makes it
# call `python` from PATH, which is the environment's.
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export ORCHARD_PYTHON="$VENV/bin/python"
if [ "$ORCHARD_SETUP" = test ]; then
  ORCHARD_ELPV_DIR="$("$ORCHARD_PYTHON" -c 'import elpv_dataset, os; print(os.path.join(os.path.dirname(elpv_dataset.__file__), "data"))')"
  export ORCHARD_ELPV_DIR
  export ORCHARD_SCHEMATHESIS="$VENV/schemathesis/bin/schemathesis"
fi
cd "$ORCHARD_ROOT"
cargo build --release --locked -p orchard-cli >&2
export ORCHARD_BIN="$ORCHARD_ROOT/target/release/orchard"
