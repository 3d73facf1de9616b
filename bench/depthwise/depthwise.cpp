// The experiment of bench/depthwise/run.sh: a depthwise 3x3 convolution over a channels-last (NHWC) f32
// batch, row by row (`row`: each pixel's window, 4 vectors of 8 channels at a time) and with 4 outputs along
// the row at once (`row2`), timed against at::conv2d (oneDNN). Prints the best of 20 runs of each.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#ifndef STORE
#define STORE _mm256_storeu_ps
#endif
#pragma GCC push_options
#pragma GCC target("avx2,fma")
struct Shape { int64_t H, W, C, KH, KW, OH, OW, stride, top, left; };
template <int V>
inline void pixel(const float* x, const float* w, const float* b, float* y, const Shape& s, int64_t ih0,
                  int64_t kh0, int64_t kh1, int64_t iw0, int64_t kw0, int64_t kw1, int64_t c) {
  __m256 acc[V];
  for (int v = 0; v < V; v++) acc[v] = _mm256_loadu_ps(b + c + 8 * v);
  for (int64_t kh = kh0; kh < kh1; kh++) {
    const float* xr = x + ((ih0 + kh) * s.W + iw0) * s.C + c;
    const float* wr = w + kh * s.KW * s.C + c;
    for (int64_t kw = kw0; kw < kw1; kw++)
      for (int v = 0; v < V; v++)
        acc[v] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + kw * s.C + 8 * v), _mm256_loadu_ps(wr + kw * s.C + 8 * v), acc[v]);
  }
  for (int v = 0; v < V; v++) STORE(y + c + 8 * v, acc[v]);
}
void row(const float* x, const float* w, const float* b, float* y, const Shape& s, int64_t oh) {
  const int64_t ih0 = oh * s.stride - s.top;
  const int64_t kh0 = std::max<int64_t>(0, -ih0), kh1 = std::min(s.KH, s.H - ih0);
  for (int64_t ow = 0; ow < s.OW; ow++) {
    const int64_t iw0 = ow * s.stride - s.left;
    const int64_t kw0 = std::max<int64_t>(0, -iw0), kw1 = std::min(s.KW, s.W - iw0);
    float* out = y + ow * s.C;
    int64_t c = 0;
    for (; c + 32 <= s.C; c += 32) pixel<4>(x, w, b, out, s, ih0, kh0, kh1, iw0, kw0, kw1, c);
    for (; c + 8 <= s.C; c += 8) pixel<1>(x, w, b, out, s, ih0, kh0, kh1, iw0, kw0, kw1, c);
  }
}
// Interior: OWB outputs along the row at once for channels [c, c+8), the KxK taps unrolled.
template <int K, int S, int OWB>
inline void block(const float* x, const float* w, const float* b, float* y, const Shape& s, int64_t ih0, int64_t iw0, int64_t c) {
  __m256 acc[OWB];
  for (int j = 0; j < OWB; j++) acc[j] = _mm256_loadu_ps(b + c);
  for (int kh = 0; kh < K; kh++) {
    const float* xr = x + ((ih0 + kh) * s.W + iw0) * s.C + c;
    const float* wr = w + kh * K * s.C + c;
    for (int kw = 0; kw < K; kw++) {
      __m256 wv = _mm256_loadu_ps(wr + kw * s.C);
      for (int j = 0; j < OWB; j++) acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + (j * S + kw) * s.C), wv, acc[j]);
    }
  }
  for (int j = 0; j < OWB; j++) _mm256_storeu_ps(y + j * s.C + c, acc[j]);
}
template <int K, int S>
void row2(const float* x, const float* w, const float* b, float* y, const Shape& s, int64_t oh) {
  const int64_t ih0 = oh * s.stride - s.top;
  bool rows_inside = ih0 >= 0 && ih0 + K <= s.H;
  // first ow whose window is inside, last
  int64_t ow_lo = (s.left + S - 1) / S, ow_hi = (s.W + s.left - K) / S + 1;  // [ow_lo, ow_hi)
  if (!rows_inside) { ow_lo = 0; ow_hi = 0; }
  constexpr int OWB = 4;
  int64_t ow = 0;
  auto generic = [&](int64_t ow) {
    const int64_t iw0 = ow * s.stride - s.left;
    const int64_t kh0 = std::max<int64_t>(0, -ih0), kh1 = std::min<int64_t>(K, s.H - ih0);
    const int64_t kw0 = std::max<int64_t>(0, -iw0), kw1 = std::min<int64_t>(K, s.W - iw0);
    for (int64_t c = 0; c + 8 <= s.C; c += 8) pixel<1>(x, w, b, y + ow * s.C, s, ih0, kh0, kh1, iw0, kw0, kw1, c);
  };
  for (; ow < std::min(ow_lo, s.OW); ow++) generic(ow);
  for (; ow + OWB <= ow_hi; ow += OWB)
    for (int64_t c = 0; c + 8 <= s.C; c += 8) block<K, S, OWB>(x, w, b, y + ow * s.C, s, ih0, ow * S - s.left, c);
  for (; ow < s.OW; ow++) generic(ow);
}
#pragma GCC pop_options
int main(int argc, char** argv) {
  int threads = atoi(argv[1]);
  at::set_num_threads(threads);
  int64_t N=16,C=144,H=56,W=56,K=3;
  auto x = at::randn({N,H,W,C}); auto w = at::randn({K,K,C}); auto b = at::randn({C});
  auto y = at::empty({N,H,W,C});
  Shape s{H,W,C,K,K,H,W,1,1,1};
  const float *xp=x.data_ptr<float>(), *wp=w.data_ptr<float>(), *bp=b.data_ptr<float>(); float* yp=y.data_ptr<float>();
  double best=1e9;
  for (int it=0; it<20; it++) {
    auto t=std::chrono::steady_clock::now();
    at::parallel_for(0, N*H, 2, [&](int64_t r0, int64_t r1) {
      for (int64_t r=r0;r<r1;r++){ int64_t n=r/H, oh=r%H; row(xp+n*H*W*C, wp, bp, yp+(n*H+oh)*W*C, s, oh);} });
    double ms=std::chrono::duration<double,std::milli>(std::chrono::steady_clock::now()-t).count();
    best=std::min(best,ms);
  }
  printf("threads %d (got %d): %.2f ms\n", threads, at::get_num_threads(), best);
  auto y2 = at::empty({N,H,W,C}); float* y2p = y2.data_ptr<float>();
  best=1e9;
  for (int it=0; it<20; it++) {
    auto t=std::chrono::steady_clock::now();
    at::parallel_for(0, N*H, 2, [&](int64_t r0, int64_t r1) {
      for (int64_t r=r0;r<r1;r++){ int64_t n=r/H, oh=r%H; row2<3,1>(xp+n*H*W*C, wp, bp, y2p+(n*H+oh)*W*C, s, oh);} });
    double ms=std::chrono::duration<double,std::milli>(std::chrono::steady_clock::now()-t).count();
    best=std::min(best,ms);
  }
  printf("row2 threads %d: %.2f ms, max diff %g\n", threads, best, (y2-y).abs().max().item<float>());
  // reference: mkldnn via conv2d channels_last
  auto xt = x.permute({0,3,1,2}); auto wt = w.permute({2,0,1}).unsqueeze(1).contiguous();
  best=1e9;
  for (int it=0; it<20; it++) { auto t=std::chrono::steady_clock::now(); auto r = at::conv2d(xt, wt, b, 1, 1, 1, C); best=std::min(best,std::chrono::duration<double,std::milli>(std::chrono::steady_clock::now()-t).count()); }
  printf("at::conv2d: %.2f ms\n", best);
}
