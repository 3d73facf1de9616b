#!/usr/bin/env bash
# A hand-written AVX2 depthwise convolution (channels-last f32, 3×3, stride 1) against libtorch's (oneDNN's)
# on EfficientNet-B0's 144-channel 56×56 layer, batch 16, on 1 and 2 threads: the experiment issue 14's
# note of 2026-12-01 describes (standalone 3.3 ms against oneDNN's 3.6 ms; 2.65 ms with non-temporal stores,
# `STORE=_mm256_stream_ps`; ONNX Runtime's MLAS 2.1 ms). Not part of Orchard's build.
# Usage: bench/depthwise/run.sh   (after `source scripts/setup.sh test`)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
torch="$("${ORCHARD_PYTHON:-python3}" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for store in _mm256_storeu_ps _mm256_stream_ps; do
  # libtorch's headers warn by the hundred; the log is shown only when the compiler fails.
  g++ -O3 -std=c++17 -fopenmp -DSTORE="$store" "$here/depthwise.cpp" -I"$torch/include" \
    -I"$torch/include/torch/csrc/api/include" -L"$torch/lib" -ltorch_cpu -lc10 -Wl,-rpath,"$torch/lib" \
    -o "$out/depthwise" 2>"$out/log" || { cat "$out/log" >&2; exit 1; }
  echo "stores: $store"
  "$out/depthwise" 1
  "$out/depthwise" 2
done
