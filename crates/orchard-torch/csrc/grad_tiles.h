// Register tiles of a weight gradient's matrix product on AVX-512, reduced over pixels (or tiles):
//   w[R rows × 16·V columns] (+)= Σ_p g[p, rows] · x[p, columns]
// with R × V accumulators of the 32 registers: one term of a Winograd weight gradient (winograd.cpp; g the
// output gradient's tile transforms, x the input's). Include inside a `#pragma GCC target("avx512f")`
// region, after tiles.h (its kTileLanes, rows_for, by_rows and column_chunks), in the including file's
// namespace. The loops carry `unroll` pragmas: without them GCC keeps the accumulators in memory and stores
// every one of them each step (a third of the speed).

struct GradTile {
  const float* g;  // the row-side operand at the first pixel and row; pixels `ldg` floats apart
  int64_t ldg;
  const float* x;  // the column-side operand at the first pixel and column; pixels `ldx` floats apart
  int64_t ldx;
  int64_t depth;    // how many pixels
  float* w;         // the result at the tile's first row and column; rows `ldw` floats apart
  int64_t ldw;
  bool accumulate;  // add to w (a later block of pixels)
  __mmask16 last;   // the columns of the last vector that exist (x is read no further)
};

template <int R, int V>
inline void grad_tile(const GradTile& t) {
  __m512 acc[R][V];
  const __mmask16 last = t.last;
#pragma GCC unroll 16
  for (int i = 0; i < R; i++)
#pragma GCC unroll 16
    for (int v = 0; v < V; v++) acc[i][v] = _mm512_setzero_ps();
  const float* g = t.g;
  const float* x = t.x;
  for (int64_t p = 0; p < t.depth; p++, g += t.ldg, x += t.ldx) {
    __m512 xv[V];
#pragma GCC unroll 16
    for (int v = 0; v + 1 < V; v++) xv[v] = _mm512_loadu_ps(x + v * kTileLanes);
    xv[V - 1] = _mm512_maskz_loadu_ps(last, x + (V - 1) * kTileLanes);
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
      const __m512 b = _mm512_set1_ps(g[i]);
#pragma GCC unroll 16
      for (int v = 0; v < V; v++) acc[i][v] = _mm512_fmadd_ps(b, xv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 16
  for (int v = 0; v < V; v++) {
    const __mmask16 m = v + 1 == V ? last : static_cast<__mmask16>(0xFFFF);
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
      float* w = t.w + i * t.ldw + v * kTileLanes;
      _mm512_mask_storeu_ps(w, m, t.accumulate ? _mm512_add_ps(acc[i][v], _mm512_maskz_loadu_ps(m, w)) : acc[i][v]);
    }
  }
}

template <int R, int V>
struct GradTileKernel {
  static void run(const GradTile& t) { grad_tile<R, V>(t); }
};

// `rows` (at most rows_for(V)) rows of one tile.
template <int V>
void grad_rows_tile(int rows, const GradTile& t) {
  by_rows<GradTileKernel, V>(rows, t);
}

using GradRowsFn = void (*)(int, const GradTile&);
constexpr GradRowsFn kGradRows[4] = {grad_rows_tile<1>, grad_rows_tile<2>, grad_rows_tile<3>, grad_rows_tile<4>};

// w[rows r0..r1) × cols] (+)= Σ_{p < pixels} g[p, r] · x[p, c], cols columns: blocked so that a block of
// pixels' rows of g and x stay in L2 while every tile of w takes its share (`first`: w is overwritten by the
// first block, else added to).
inline void grad_product(const float* g, int64_t ldg, const float* x, int64_t ldx, int64_t pixels, float* w,
                         int64_t ldw, int64_t r0, int64_t r1, int64_t cols, bool first) {
  constexpr int64_t kBlockBytes = 256 << 10;
  const int64_t vectors = (cols + kTileLanes - 1) / kTileLanes;
  const __mmask16 last = static_cast<__mmask16>((1u << (cols - (vectors - 1) * kTileLanes)) - 1);
  const std::vector<int> chunks = column_chunks(vectors);
  const int64_t block = std::max<int64_t>(16, kBlockBytes / static_cast<int64_t>(sizeof(float) * (cols + r1 - r0)));
  for (int64_t p0 = 0; p0 < pixels; p0 += block) {
    const int64_t depth = std::min(block, pixels - p0);
    int64_t col = 0;
    for (int V : chunks) {
      const int R = rows_for(V);
      const bool last_chunk = col + V * kTileLanes >= cols;
      for (int64_t r = r0; r < r1; r += R) {
        const GradTile t{g + p0 * ldg + r,
                         ldg,
                         x + p0 * ldx + col,
                         ldx,
                         depth,
                         w + r * ldw + col,
                         ldw,
                         !first || p0 > 0,
                         last_chunk ? last : static_cast<__mmask16>(0xFFFF)};
        kGradRows[V - 1](static_cast<int>(std::min<int64_t>(R, r1 - r)), t);
      }
      col += V * kTileLanes;
    }
  }
}
