// Register tiles of a matrix product on AVX-512: c[R pixels × 16·V outputs] = bias + a · b (ReLU'd where asked), with R × V
// accumulators of the 32 registers, for Orchard's 1×1 convolutions (pointwise.cpp, and the expand
// convolution inside depthwise.cpp's pass). Include inside a `#pragma GCC target("avx512f")` region, in the
// including file's namespace (as cephes_exp.h).

constexpr int64_t kTileLanes = 16;

// Tiles: R pixel rows × V vectors of 16 outputs, R × V accumulators of the 32 registers.
constexpr int rows_for(int V) { return V == 1 ? 12 : V == 2 ? 10 : V == 3 ? 7 : 6; }

struct Tile {
  const float* a;  // the input at the tile's first pixel and first k; pixels `lda` floats apart
  int64_t lda;
  const float* b;  // the weights (k × outputs) at the first k and the tile's first output; rows `ldb` apart
  int64_t ldb;
  int64_t depth;      // how many k
  float* c;           // the output at the tile's first pixel and output; pixels `ldc` floats apart
  int64_t ldc;
  const float* bias;  // or null (a later block of k)
  bool accumulate;    // start from c (a later block of k, or a residual)
  __mmask16 last;     // the outputs of the last vector that exist
  bool relu = false;  // max(c, 0) as it is stored (the last block of k of a layer with ReLU)
};

template <int R, int V>
inline void tile(const Tile& t) {
  __m512 acc[R][V];
  for (int v = 0; v < V; v++) {
    const __mmask16 m = v + 1 == V ? t.last : 0xFFFF;
    const __m512 bias = t.bias ? _mm512_loadu_ps(t.bias + v * kTileLanes) : _mm512_setzero_ps();
    for (int i = 0; i < R; i++)
      acc[i][v] = t.accumulate ? _mm512_add_ps(bias, _mm512_maskz_loadu_ps(m, t.c + i * t.ldc + v * kTileLanes)) : bias;
  }
  const float* a = t.a;
  const float* b = t.b;
  for (int64_t k = 0; k < t.depth; k++, a++, b += t.ldb) {
    __m512 w[V];
    for (int v = 0; v < V; v++) w[v] = _mm512_loadu_ps(b + v * kTileLanes);
    for (int i = 0; i < R; i++) {
      const __m512 x = _mm512_set1_ps(a[i * t.lda]);
      for (int v = 0; v < V; v++) acc[i][v] = _mm512_fmadd_ps(x, w[v], acc[i][v]);
    }
  }
  if (t.relu)
    for (int v = 0; v < V; v++)
      for (int i = 0; i < R; i++) acc[i][v] = _mm512_max_ps(acc[i][v], _mm512_setzero_ps());
  for (int v = 0; v < V; v++) {
    const __mmask16 m = v + 1 == V ? t.last : 0xFFFF;
    for (int i = 0; i < R; i++) _mm512_mask_storeu_ps(t.c + i * t.ldc + v * kTileLanes, m, acc[i][v]);
  }
}

// Kernel<rows, V>::run(t) for `rows` from 1 to rows_for(V): the one dispatch of a runtime row count to the
// register tiles, here and in grad_tiles.h.
template <template <int, int> class Kernel, int V, typename Args>
void by_rows(int rows, const Args& t) {
  switch (rows) {
    case 12: return Kernel<12 <= rows_for(V) ? 12 : 1, V>::run(t);
    case 11: return Kernel<11 <= rows_for(V) ? 11 : 1, V>::run(t);
    case 10: return Kernel<10 <= rows_for(V) ? 10 : 1, V>::run(t);
    case 9: return Kernel<9 <= rows_for(V) ? 9 : 1, V>::run(t);
    case 8: return Kernel<8 <= rows_for(V) ? 8 : 1, V>::run(t);
    case 7: return Kernel<7 <= rows_for(V) ? 7 : 1, V>::run(t);
    case 6: return Kernel<6, V>::run(t);
    case 5: return Kernel<5, V>::run(t);
    case 4: return Kernel<4, V>::run(t);
    case 3: return Kernel<3, V>::run(t);
    case 2: return Kernel<2, V>::run(t);
    default: return Kernel<1, V>::run(t);
  }
}

template <int R, int V>
struct TileKernel {
  static void run(const Tile& t) { tile<R, V>(t); }
};

// `rows` (at most rows_for(V)) pixels of one tile.
template <int V>
void rows_tile(int rows, const Tile& t) {
  by_rows<TileKernel, V>(rows, t);
}

using RowsFn = void (*)(int, const Tile&);
constexpr RowsFn kRows[4] = {rows_tile<1>, rows_tile<2>, rows_tile<3>, rows_tile<4>};

// Columns of outputs in chunks of at most 4 vectors, as even as they split (80 outputs: 3 + 2 vectors).
std::vector<int> column_chunks(int64_t vectors) {
  const int64_t chunks = (vectors + 3) / 4;
  std::vector<int> out;
  for (int64_t i = 0; i < chunks; i++) out.push_back(static_cast<int>(vectors / chunks + (i < vectors % chunks)));
  return out;
}

