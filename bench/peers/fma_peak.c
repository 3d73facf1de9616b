/* The CPU's arithmetic peak as its FMA units give it: every thread keeps 12 independent accumulators busy
 * with fused multiply-adds on registers only (no loads, no dependence stalls), the widest vectors the CPU
 * has (AVX-512, else AVX2). No convolution or matrix product can beat this number, so a job's FLOP/s over
 * it is the distance to the hardware's limit; the 4096² matrix product (ceiling.py) is what a library
 * reaches, this is what the silicon allows. Also the bf16 dot-product peak where AVX512-BF16 exists.
 *
 * Build: cc -O2 -pthread fma_peak.c -o fma_peak    Usage: fma_peak THREADS
 * Prints `RESULT {"f32": FLOP/s, "bf16": FLOP/s or null, "isa": "..."}`; the best of 7 timed runs. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ITERS 20000000L
#define ACCUMULATORS 12

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Each kernel returns the FLOPs it did; its accumulators' sum goes to `sink` so that nothing is elided. One
 * macro makes them all: VEC the register type, INIT(i) an accumulator's start, STEP(acc) one instruction
 * on it, SUM(acc) a lane of the result, FLOPS what one instruction does. */
static volatile float sink;

#define PEAK_KERNEL(NAME, TARGET, VEC, INIT, STEP, SUM, FLOPS)                  \
  __attribute__((target(TARGET))) static double NAME(void) {                    \
    VEC acc[ACCUMULATORS];                                                      \
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = INIT(i);                    \
    for (long n = 0; n < ITERS; n++)                                            \
      _Pragma("GCC unroll 12") for (int i = 0; i < ACCUMULATORS; i++) acc[i] = STEP(acc[i]); \
    float total = 0;                                                            \
    for (int i = 0; i < ACCUMULATORS; i++) total += SUM(acc[i]);                \
    sink = total;                                                               \
    return (double)(FLOPS) * ACCUMULATORS * ITERS;                              \
  }

#define INIT512(i) _mm512_set1_ps((float)(i))
#define INIT256(i) _mm256_set1_ps((float)(i))
#define FMA512(acc) _mm512_fmadd_ps(acc, _mm512_set1_ps(0.999999f), _mm512_set1_ps(1e-7f))
#define FMA256(acc) _mm256_fmadd_ps(acc, _mm256_set1_ps(0.999999f), _mm256_set1_ps(1e-7f))
/* vdpbf16ps: 32 bf16 products summed pairwise into 16 f32 lanes, 64 FLOPs an instruction (1.0 × 2^-24). */
#define DPBF16(acc) \
  _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi16(0x3f80), (__m512bh)_mm512_set1_epi16(0x3380))
#define SUM256(acc) _mm_cvtss_f32(_mm256_castps256_ps128(acc))

PEAK_KERNEL(f32_avx512, "avx512f", __m512, INIT512, FMA512, _mm512_reduce_add_ps, 2 * 16)
PEAK_KERNEL(f32_avx2, "avx2,fma", __m256, INIT256, FMA256, SUM256, 2 * 8)
PEAK_KERNEL(bf16_avx512, "avx512f,avx512bf16", __m512, INIT512, DPBF16, _mm512_reduce_add_ps, 2 * 32)

typedef double (*kernel_fn)(void);

struct job {
  kernel_fn kernel;
  double flops;
};

static void *run_job(void *arg) {
  struct job *job = arg;
  job->flops = job->kernel();
  return NULL;
}

/* All threads start together; the rate is their FLOPs over the wall time of the slowest. */
static double rate(kernel_fn kernel, int threads) {
  double best = 0;
  for (int rep = 0; rep < 7; rep++) {
    pthread_t ids[256];
    struct job jobs[256];
    double start = seconds();
    for (int t = 0; t < threads; t++) {
      jobs[t].kernel = kernel;
      pthread_create(&ids[t], NULL, run_job, &jobs[t]);
    }
    double flops = 0;
    for (int t = 0; t < threads; t++) {
      pthread_join(ids[t], NULL);
      flops += jobs[t].flops;
    }
    double r = flops / (seconds() - start);
    if (r > best) best = r;
  }
  return best;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  if (threads < 1 || threads > 256) {
    fprintf(stderr, "fma_peak: THREADS must be 1..256, got %s\n", argv[1]);
    return 2;
  }
  __builtin_cpu_init();
  const char *isa;
  double f32, bf16 = -1;
  if (__builtin_cpu_supports("avx512f")) {
    isa = "avx512";
    f32 = rate(f32_avx512, threads);
    if (__builtin_cpu_supports("avx512bf16")) bf16 = rate(bf16_avx512, threads);
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    isa = "avx2";
    f32 = rate(f32_avx2, threads);
  } else {
    fprintf(stderr, "fma_peak: this CPU has neither AVX-512 nor AVX2 with FMA\n");
    return 1;
  }
  if (bf16 < 0)
    printf("RESULT {\"f32\": %.6g, \"bf16\": null, \"isa\": \"%s\"}\n", f32, isa);
  else
    printf("RESULT {\"f32\": %.6g, \"bf16\": %.6g, \"isa\": \"%s\"}\n", f32, bf16, isa);
  return 0;
}
