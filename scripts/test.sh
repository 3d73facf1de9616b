#!/usr/bin/env bash
# Sets everything up, then runs the whole test suite (unit, integration, real-data and CLI tests).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
# --release shares every artifact with the build setup.sh just made (libtorch's C++ wrapper included).
cargo test --release --workspace --locked "$@"
