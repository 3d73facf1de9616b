// swish(v) = v / (1 + e^-v) on 16 floats, for the AVX-512 kernels (depthwise.cpp, stem.cpp). Include inside a
// `#pragma GCC target("avx512f")` region, in the including file's namespace (as tiles.h).
#include "cephes_exp.h"  // its template takes the ISA of the region it is included in

// AVX-512's operations for cephes_exp.h.
struct Avx512 {
  using V = __m512;
  static V set(float v) { return _mm512_set1_ps(v); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V round(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V scale(V y, V n) { return _mm512_scalef_ps(y, n); }
};

// v / (1 + e^-v): 1 / (1 + e^-v) is rcp14 refined by one Newton step (error ~1e-8); where e^-v is near
// e^88 the reciprocal is ~1e-38 and v times it ~0, as it should be.
inline __m512 swish(__m512 v) {
  const __m512 d = _mm512_add_ps(cephes_exp<Avx512>(_mm512_sub_ps(_mm512_setzero_ps(), v)), _mm512_set1_ps(1.f));
  __m512 inv = _mm512_rcp14_ps(d);
  inv = _mm512_mul_ps(inv, _mm512_fnmadd_ps(d, inv, _mm512_set1_ps(2.f)));
  return _mm512_mul_ps(v, inv);
}
