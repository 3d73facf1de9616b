#!/usr/bin/env bash
# Builds every fuzz target (AddressSanitizer, optimised, debug assertions on) and runs each for SECONDS
# (default 10) from its committed seeds in fuzz/seeds/<target>/, new inputs going to fuzz/corpus/<target>/
# (not committed). Fails on the first crash, leak, timeout or over-limit allocation; libFuzzer writes the
# input to fuzz/artifacts/<target>/. Installs the nightly toolchain and cargo-fuzz when missing.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]     e.g. fuzz/run.sh 600 pickle torch_pth
#   FUZZ_RUNS=N instead stops each target after N executions (-runs=N) as well as after SECONDS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds="${1:-10}"
shift || true
# Outside the workspace: its own target directory, whatever the caller's CARGO_TARGET_DIR says.
unset CARGO_TARGET_DIR
rustup run nightly rustc --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
cargo +nightly fuzz build -O
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
# No input may make a parser allocate more than 64 MiB at once, or the process hold more than 2 GiB.
limits=(-rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10 -max_total_time="$seconds" -print_final_stats=1)
[ -n "${FUZZ_RUNS:-}" ] && limits+=(-runs="$FUZZ_RUNS")
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "== fuzz $target for ${seconds}s" >&2
  cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- "${limits[@]}"
done
