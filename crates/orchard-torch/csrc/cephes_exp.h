// e^x for a SIMD vector, shared by the AVX2 kernels (bn_act.cpp) and the AVX-512 ones (depthwise.cpp): Cody–
// Waite range reduction x = n ln2 + r, |r| ≤ ln2/2, and Cephes' degree-5 polynomial for e^r, within 2 ulp of
// expf over [-88, 88]; x is clamped to that range. `Ops` names the ISA's operations on its vector type `V`
// (set, min, max, round, fmadd, fnmadd, mul, add, and `scale(y, n)` = y · 2^n); include this header inside
// the ISA's `#pragma GCC target` region (so the template is compiled for that ISA and inlined), in the
// namespace the kernels use.
#pragma once

template <typename Ops>
inline typename Ops::V cephes_exp(typename Ops::V x) {
  using V = typename Ops::V;
  x = Ops::min(Ops::max(x, Ops::set(-88.3762626647949f)), Ops::set(88.3762626647949f));
  const V n = Ops::round(Ops::mul(x, Ops::set(1.44269504088896341f)));
  x = Ops::fnmadd(n, Ops::set(0.693359375f), x);
  x = Ops::fnmadd(n, Ops::set(-2.12194440e-4f), x);
  V y = Ops::set(1.9875691500e-4f);
  y = Ops::fmadd(y, x, Ops::set(1.3981999507e-3f));
  y = Ops::fmadd(y, x, Ops::set(8.3334519073e-3f));
  y = Ops::fmadd(y, x, Ops::set(4.1665795894e-2f));
  y = Ops::fmadd(y, x, Ops::set(1.6666665459e-1f));
  y = Ops::fmadd(y, x, Ops::set(5.0000001201e-1f));
  y = Ops::fmadd(y, Ops::mul(x, x), Ops::add(x, Ops::set(1.f)));
  return Ops::scale(y, n);
}
