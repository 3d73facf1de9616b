// EfficientNet's projection in its inference form, for CPUs with AVX-512:
//   out[n, p, :] = Σ_k x[n, p, k] · gate[n, k] · W[k, :] + bias (+ residual[n, p, :], summed in place)
// a 1×1 convolution of channels-last x after squeeze-excitation's gate. What it saves against oneDNN: the
// pass that scales x by the gate (each image's gate is folded into its own copy of the weights here, K×N
// floats against H·W·K), and oneDNN's slower kernels for few output channels at large sizes (B0's 32→16 at
// 112²: 2.7 ms a batch of 16 against ONNX Runtime's 1.0).
//
// ResNet v2's first 1×1 convolution of a block in its inference form, through the same kernels:
//   out[n, p, :] = relu(Σ_k relu(x[n, p, k] · scale[k] + shift[k]) · W[k, :] + bias)
// the block's pre-activation (a batch norm frozen to scale and shift, and ReLU) applied to each block of x
// as it is copied into the kernel's buffer, so that it never exists as a tensor of its own (at 56² and batch
// 16, 51 MB beside the block's input).
//
// A matrix product per image, blocked BLIS-style: K in blocks that keep a block of the weights in L2, pixels
// in blocks that keep their rows of x in L2, and tiles of R pixels × 16·V outputs held in registers.
#include "shim.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace {

constexpr int64_t kLanes = 16;
constexpr int64_t kDepth = 256;   // K per block: 256 × 64 outputs of weights is 64 KiB
constexpr int64_t kPixels = 96;   // pixels per block: 96 × 256 of x is 96 KiB

#pragma GCC push_options
#pragma GCC target("avx512f")

#include "tiles.h"

// dst[k] = max(x[k] · scale[k] + shift[k], 0) for k < n.
void affine_relu(const float* x, const float* scale, const float* shift, float* dst, int64_t n) {
  for (int64_t k = 0; k < n; k += kLanes) {
    const __mmask16 m = n - k >= kLanes ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - k)) - 1);
    const __m512 v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k), _mm512_maskz_loadu_ps(m, scale + k),
                                     _mm512_maskz_loadu_ps(m, shift + k));
    _mm512_mask_storeu_ps(dst + k, m, _mm512_max_ps(v, _mm512_setzero_ps()));
  }
}

#pragma GCC pop_options

struct Problem {
  int64_t HW, K, N, Np;  // pixels per image, input channels, outputs, outputs padded to 16
  const float *x, *gate, *weight, *bias;
  float* out;
  bool residual;
  // The pre-activation form: x goes through relu(x · scale + shift) per channel (gate is null), and the
  // output through ReLU where `relu`.
  const float *scale = nullptr, *shift = nullptr;
  bool relu = false;
};

// One block: pixels [p0, p1) of the N·HW and K [k0, k0 + depth), x's rows at `a` (`lda` floats apart, the
// block's first pixel and k) against the weights' rows at `b` (the block's first k), every output.
void block(const Problem& pr, int64_t p0, int64_t p1, int64_t k0, int64_t depth, const float* a, int64_t lda,
           const float* b, const std::vector<int>& chunks) {
  const __mmask16 last = static_cast<__mmask16>((1u << (pr.N - (pr.Np / kLanes - 1) * kLanes)) - 1);
  int64_t col = 0;
  for (int V : chunks) {
    const int R = rows_for(V);
    const bool last_chunk = col + V * kLanes >= pr.Np;
    for (int64_t p = p0; p < p1; p += R) {
      const int rows = static_cast<int>(std::min<int64_t>(R, p1 - p));
      const Tile t{a + (p - p0) * lda,
                   lda,
                   b + col,
                   pr.Np,
                   depth,
                   pr.out + p * pr.N + col,
                   pr.N,
                   k0 == 0 ? pr.bias + col : nullptr,
                   k0 > 0 || pr.residual,
                   last_chunk ? last : static_cast<__mmask16>(0xFFFF),
                   pr.relu && k0 + depth == pr.K};
      kRows[V - 1](rows, t);
    }
    col += V * kLanes;
  }
}

// Pixels [p0, p1) of the N·HW, all of one image, with `scaled` that image's weights (K × Np, the gate folded
// in).
void scaled_weights_range(const Problem& pr, int64_t p0, int64_t p1, const float* scaled,
                          const std::vector<int>& chunks) {
  for (int64_t pb = p0; pb < p1; pb += kPixels) {
    const int64_t pe = std::min(p1, pb + kPixels);
    for (int64_t k0 = 0; k0 < pr.K; k0 += kDepth)
      block(pr, pb, pe, k0, std::min(kDepth, pr.K - k0), pr.x + pb * pr.K + k0, pr.K, scaled + k0 * pr.Np, chunks);
  }
}

// Pixels [p0, p1) of the N·HW, the gate (or the pre-activation) applied to x as each block of it is copied
// into `scaled` (kPixels × kDepth floats) and the weights shared by every image: for small images, where each
// image's own weights would serve few pixels, and for the pre-activation.
void scaled_input_range(const Problem& pr, int64_t p0, int64_t p1, float* scaled, const std::vector<int>& chunks) {
  for (int64_t pb = p0; pb < p1; pb += kPixels) {
    const int64_t pe = std::min(p1, pb + kPixels);
    for (int64_t k0 = 0; k0 < pr.K; k0 += kDepth) {
      const int64_t depth = std::min(kDepth, pr.K - k0);
      for (int64_t p = pb; p < pe; p++) {
        const float* x = pr.x + p * pr.K + k0;
        float* dst = scaled + (p - pb) * depth;
        if (pr.scale) {
          affine_relu(x, pr.scale + k0, pr.shift + k0, dst, depth);
          continue;
        }
        const float* g = pr.gate + (p / pr.HW) * pr.K + k0;
        for (int64_t k = 0; k < depth; k++) dst[k] = x[k] * g[k];
      }
      block(pr, pb, pe, k0, depth, scaled, depth, pr.weight + k0 * pr.Np, chunks);
    }
  }
}

// Every pixel, split evenly over the threads (rows of several images in one block).
void run_scaling_input(const Problem& pr, int64_t images, const std::vector<int>& chunks) {
  const int64_t rows = images * pr.HW, threads = at::get_num_threads();
  const int64_t per = (rows + threads - 1) / threads;
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> block(kPixels * kDepth);
    for (int64_t t = begin; t < end; t++)
      if (t * per < rows) scaled_input_range(pr, t * per, std::min(rows, (t + 1) * per), block.data(), chunks);
  });
}

// Whole images while there are enough for the threads, else each image in parts; each thread scales the
// weights once per image it works on.
void run_scaling_weights(const Problem& pr, int64_t images, const std::vector<int>& chunks) {
  const int64_t threads = at::get_num_threads();
  const int64_t parts = std::min(pr.HW, images >= 2 * threads ? int64_t{1} : (2 * threads + images - 1) / images);
  const int64_t per_part = (pr.HW + parts - 1) / parts;
  at::parallel_for(0, images * parts, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scaled(pr.K * pr.Np);
    int64_t scaled_for = -1;
    for (int64_t task = begin; task < end; task++) {
      const int64_t n = task / parts, p0 = (task % parts) * per_part;
      if (n != scaled_for) {
        const float* g = pr.gate + n * pr.K;
        for (int64_t k = 0; k < pr.K; k++)
          for (int64_t j = 0; j < pr.Np; j++) scaled[k * pr.Np + j] = pr.weight[k * pr.Np + j] * g[k];
        scaled_for = n;
      }
      scaled_weights_range(pr, n * pr.HW + p0, n * pr.HW + std::min(pr.HW, p0 + per_part), scaled.data(), chunks);
    }
  });
}

// Checks x (N×K×H×W f32 on the CPU, channels-last dense), the packed weight and bias for `outputs`; returns
// Np, the outputs padded to 16.
int64_t check_operands(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t outputs) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu() &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "x must be 4-D f32 on the CPU, channels-last");
  const int64_t K = x.size(1), Np = (outputs + kLanes - 1) / kLanes * kLanes;
  TORCH_CHECK(outputs > 0, "no outputs");
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == K && weight.size(1) == Np && weight.is_contiguous() &&
                  weight.scalar_type() == at::kFloat,
              "weight must be K×Np f32, contiguous");
  TORCH_CHECK(bias.numel() == Np && bias.is_contiguous() && bias.scalar_type() == at::kFloat, "bias must be Np f32");
  return Np;
}

}  // namespace

extern "C" {

// x: N×K×H×W f32 on the CPU, channels-last dense; gate: N×K f32 contiguous; weight: K×Np f32 contiguous (the
// convolution's N_out×K matrix transposed, outputs padded with zeros to Np, a multiple of 16); bias: Np.
// `residual` (or null): N×N_out×H×W channels-last dense, summed into and returned; else a new tensor.
int orchard_scaled_pointwise(at::Tensor** out, const at::Tensor* x, const at::Tensor* gate, const at::Tensor* weight,
                             const at::Tensor* bias, const at::Tensor* residual, int64_t outputs, char* err,
                             size_t len) {
  return orchard::guarded(err, len, [&] {
    const int64_t Np = check_operands(*x, *weight, *bias, outputs);
    const int64_t N = x->size(0), K = x->size(1), H = x->size(2), W = x->size(3);
    TORCH_CHECK(gate->numel() == N * K && gate->is_contiguous() && gate->scalar_type() == at::kFloat,
                "gate must be N×K f32, contiguous");
    at::Tensor y;
    if (residual) {
      TORCH_CHECK(residual->dim() == 4 && residual->size(0) == N && residual->size(1) == outputs &&
                      residual->size(2) == H && residual->size(3) == W && residual->scalar_type() == at::kFloat &&
                      residual->device().is_cpu(),
                  "the residual must be N×outputs×H×W f32 on the CPU");
      y = residual->is_contiguous(at::MemoryFormat::ChannelsLast)
              ? *residual
              : residual->contiguous(at::MemoryFormat::ChannelsLast);
    } else {
      y = at::empty({N, outputs, H, W}, x->options().memory_format(at::MemoryFormat::ChannelsLast));
    }
    const Problem pr{H * W, K, outputs, Np, x->data_ptr<float>(), gate->data_ptr<float>(),
                     weight->data_ptr<float>(), bias->data_ptr<float>(), y.data_ptr<float>(), residual != nullptr};
    const std::vector<int> chunks = column_chunks(Np / kLanes);
    // Small images (fewer pixels than outputs: EfficientNet's last stages) scale x, larger ones the weights:
    // B0's 1152→320 at 7², batch 16, 3.3 ms with each image's weights, 2.9 scaling x; 32→16 at 112² 1.2 ms
    // with each image's weights, 3.7 scaling x.
    if (pr.HW < Np)
      run_scaling_input(pr, N, chunks);
    else
      run_scaling_weights(pr, N, chunks);
    *out = new at::Tensor(y);
  });
}

// relu(conv1x1(relu(x · scale + shift)) + bias) (without the outer ReLU unless `relu`): x, weight and bias as
// above; scale and shift K f32 contiguous. A new channels-last tensor.
int orchard_preactivated_pointwise(at::Tensor** out, const at::Tensor* x, const at::Tensor* scale,
                                   const at::Tensor* shift, const at::Tensor* weight, const at::Tensor* bias,
                                   int64_t outputs, int relu, char* err, size_t len) {
  return orchard::guarded(err, len, [&] {
    const int64_t Np = check_operands(*x, *weight, *bias, outputs);
    const int64_t N = x->size(0), K = x->size(1), H = x->size(2), W = x->size(3);
    for (const at::Tensor* t : {scale, shift})
      TORCH_CHECK(t->numel() == K && t->is_contiguous() && t->scalar_type() == at::kFloat,
                  "scale and shift must be K f32, contiguous");
    at::Tensor y = at::empty({N, outputs, H, W}, x->options().memory_format(at::MemoryFormat::ChannelsLast));
    Problem pr{H * W, K, outputs, Np, x->data_ptr<float>(), nullptr, weight->data_ptr<float>(),
               bias->data_ptr<float>(), y.data_ptr<float>(), false};
    pr.scale = scale->data_ptr<float>();
    pr.shift = shift->data_ptr<float>();
    pr.relu = relu != 0;
    run_scaling_input(pr, N, column_chunks(Np / kLanes));
    *out = new at::Tensor(y);
  });
}
}
