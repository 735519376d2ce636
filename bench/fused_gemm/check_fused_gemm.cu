//===- check_fused_gemm.cu - test and benchmark of FusedGroupedGemm -------===//
//
// Part of fmoe. A standalone program (no torch) for an sm_90 GPU: checks
// every epilogue of launchFusedGroupedGemm (lib/Runtime/CUDA/
// FusedGroupedGemm.h) against a plain reference GEMM on random bf16 inputs,
// then times the fused kernels against the unfused GEMM + elementwise
// kernel pairs. Prints PASS/FAIL per case and exits non-zero on any FAIL;
// the timing still runs for the epilogues whose checks passed
// (--only-timing-for=None,Bias,BiasAct,DAct,DGrad picks which are timed).
//
// Everything runs on one cudaStreamNonBlocking stream: such a stream is not
// ordered with the legacy default stream, so no plain cudaMemset/cudaMemcpy
// or stream-less <<<>>> may touch buffers the kernels use.
//
// Offsets are made on the host (the test knows the row counts) and copied to
// the device; the library itself never reads them on the host.
//
//===----------------------------------------------------------------------===//

#include "FusedGroupedGemm.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace fmoe::runtime::cuda;
using bf16 = __nv_bfloat16;

namespace {

int failures = 0;

void check(cudaError_t err, const char *what, int line) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "CUDA error at line %d (%s): %s: %s\n", line, what,
                 cudaGetErrorName(err), cudaGetErrorString(err));
    std::exit(2);
  }
}
#define CK(x) check((x), #x, __LINE__)

//===----------------------------------------------------------------------===//
// Device helpers
//===----------------------------------------------------------------------===//

__device__ __forceinline__ uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void fillUniform(bf16 *p, size_t n, uint64_t seed, float lo,
                            float hi) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    float u = (mix64(seed * 0x100000001b3ull + i) >> 40) * (1.0f / 16777216.0f);
    p[i] = __float2bfloat16(lo + (hi - lo) * u);
  }
}

__device__ __forceinline__ float geluRef(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}
__device__ __forceinline__ float geluGradRef(float x) {
  return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) +
         x * 0.39894228040143268f * expf(-0.5f * x * x);
}

/// One 32x32 output tile of one expert per block (16x16 threads, 2x2 outputs
/// each), fp32 accumulation: acc[r][j] (ld n) for the rows of the tile.
struct RefTile {
  int expert;
  int rowBegin; // absolute row
  int rowEnd;   // exclusive, at most rowBegin + 32
};

__global__ void referenceGemm(const bf16 *a, int64_t lda, const bf16 *w,
                              bool nt, const RefTile *tiles, int64_t n,
                              int64_t k, float *acc) {
  __shared__ float sa[32][17];
  __shared__ float sw[16][33];
  RefTile t = tiles[blockIdx.y];
  int64_t col0 = int64_t(blockIdx.x) * 32;
  int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
  const bf16 *we = w + int64_t(t.expert) * n * k;
  float c[2][2] = {{0, 0}, {0, 0}};
  for (int64_t k0 = 0; k0 < k; k0 += 16) {
    for (int i = tid; i < 32 * 16; i += 256) {
      int r = i / 16, kk = i % 16;
      int64_t row = t.rowBegin + r;
      sa[r][kk] = (row < t.rowEnd && k0 + kk < k)
                      ? __bfloat162float(a[row * lda + k0 + kk])
                      : 0.0f;
      // W tile: consecutive threads walk its contiguous dimension.
      int kk2 = nt ? i % 16 : i / 32, j = nt ? i / 16 : i % 32;
      int64_t col = col0 + j, kIdx = k0 + kk2;
      float v = 0.0f;
      if (col < n && kIdx < k)
        v = __bfloat162float(nt ? we[col * k + kIdx] : we[kIdx * n + col]);
      sw[kk2][j] = v;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; ++kk) {
      float a0 = sa[ty][kk], a1 = sa[ty + 16][kk];
      float w0 = sw[kk][tx], w1 = sw[kk][tx + 16];
      c[0][0] += a0 * w0;
      c[0][1] += a0 * w1;
      c[1][0] += a1 * w0;
      c[1][1] += a1 * w1;
    }
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      int64_t row = t.rowBegin + ty + 16 * i, col = col0 + tx + 16 * j;
      if (row < t.rowEnd && col < n)
        acc[row * n + col] = c[i][j];
    }
}

enum class Expect {
  Acc,      // acc
  AccBias,  // acc + bias (Bias's d, BiasAct's h)
  GeluBias, // gelu(acc + bias)
  DGelu,    // acc * gelu'(h)
  GeluH,    // gelu(h)
  H,        // h itself (an input that must stay intact)
  AccH,     // acc + h (Accumulate, d over h)
};

struct Stats {
  unsigned maxDiff; // float bits (non-negative floats order as unsigned)
  unsigned maxRef;
  unsigned long long bad;   // NaN/Inf outputs
  unsigned long long guard; // modified elements outside the grouped rows
};

__device__ __forceinline__ void atomicMaxF(unsigned *p, float v) {
  atomicMax(p, __float_as_uint(v));
}

/// Compares out[r][j] (ld ldo) with the expectation for the rows in
/// [rowBegin, rowEnd); the rows of [0, rowsAlloc) outside it must still hold
/// the 0xffff sentinel.
__global__ void compareOutput(Expect e, const float *acc, int64_t n,
                              const bf16 *bias, const int *rowExpert,
                              const bf16 *h, int64_t ldh, const bf16 *out,
                              int64_t ldo, int64_t rowBegin, int64_t rowEnd,
                              int64_t rowsAlloc, Stats *s) {
  int64_t total = rowsAlloc * n;
  float myDiff = 0, myRef = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = i / n, j = i % n;
    bf16 o = out[r * ldo + j];
    if (r < rowBegin || r >= rowEnd) {
      unsigned short bits;
      memcpy(&bits, &o, 2);
      if (bits != 0xffff)
        atomicAdd(&s->guard, 1ull);
      continue;
    }
    float a = acc[r * n + j];
    float ref = 0;
    switch (e) {
    case Expect::Acc:
      ref = a;
      break;
    case Expect::AccBias:
      ref = a + __bfloat162float(bias[int64_t(rowExpert[r]) * n + j]);
      break;
    case Expect::GeluBias:
      ref = geluRef(a + __bfloat162float(bias[int64_t(rowExpert[r]) * n + j]));
      break;
    case Expect::DGelu:
      ref = a * geluGradRef(__bfloat162float(h[r * ldh + j]));
      break;
    case Expect::GeluH:
      ref = geluRef(__bfloat162float(h[r * ldh + j]));
      break;
    case Expect::H:
      ref = __bfloat162float(h[r * ldh + j]);
      break;
    case Expect::AccH:
      ref = a + __bfloat162float(h[r * ldh + j]);
      break;
    }
    float v = __bfloat162float(o);
    if (!isfinite(v)) {
      atomicAdd(&s->bad, 1ull);
      continue;
    }
    myDiff = fmaxf(myDiff, fabsf(v - ref));
    myRef = fmaxf(myRef, fabsf(ref));
  }
  atomicMaxF(&s->maxDiff, myDiff);
  atomicMaxF(&s->maxRef, myRef);
}

//===----------------------------------------------------------------------===//
// Unfused elementwise kernels (the baseline the fused epilogues replace):
// 8 bf16 (16 bytes) per thread and access.
//===----------------------------------------------------------------------===//

struct alignas(16) Vec8 {
  bf16 v[8];
};

/// out = y + bias[e]   (y: the plain GEMM's output)
__global__ void biasElementwise(const bf16 *y, int64_t ldy, const bf16 *bias,
                                const int *rowExpert, bf16 *out, int64_t ldo,
                                int64_t rowBegin, int64_t rows, int64_t n) {
  int64_t vecPerRow = n / 8, total = rows * vecPerRow;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = rowBegin + i / vecPerRow, j = (i % vecPerRow) * 8;
    Vec8 yv = *reinterpret_cast<const Vec8 *>(y + r * ldy + j);
    Vec8 bv =
        *reinterpret_cast<const Vec8 *>(bias + int64_t(rowExpert[r]) * n + j);
    Vec8 ov;
#pragma unroll
    for (int q = 0; q < 8; ++q)
      ov.v[q] = __float2bfloat16(__bfloat162float(yv.v[q]) +
                                 __bfloat162float(bv.v[q]));
    *reinterpret_cast<Vec8 *>(out + r * ldo + j) = ov;
  }
}

/// h = y + bias[e]; act = gelu(h)   (y: the plain GEMM's output)
__global__ void biasGeluElementwise(const bf16 *y, int64_t ldy,
                                    const bf16 *bias, const int *rowExpert,
                                    bf16 *h, int64_t ldh, bf16 *act,
                                    int64_t ldact, int64_t rowBegin,
                                    int64_t rows, int64_t n) {
  int64_t vecPerRow = n / 8, total = rows * vecPerRow;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = rowBegin + i / vecPerRow, j = (i % vecPerRow) * 8;
    Vec8 yv = *reinterpret_cast<const Vec8 *>(y + r * ldy + j);
    Vec8 bv =
        *reinterpret_cast<const Vec8 *>(bias + int64_t(rowExpert[r]) * n + j);
    Vec8 hv, av;
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      float x = __bfloat162float(yv.v[q]) + __bfloat162float(bv.v[q]);
      hv.v[q] = __float2bfloat16(x);
      av.v[q] = __float2bfloat16(geluRef(x));
    }
    *reinterpret_cast<Vec8 *>(h + r * ldh + j) = hv;
    *reinterpret_cast<Vec8 *>(act + r * ldact + j) = av;
  }
}

/// dh = g * gelu'(h)   (g: the plain GEMM's output; DGrad's baseline)
__global__ void dGeluOnlyElementwise(const bf16 *g, int64_t ldg, const bf16 *h,
                                     int64_t ldh, bf16 *dh, int64_t lddh,
                                     int64_t rowBegin, int64_t rows,
                                     int64_t n) {
  int64_t vecPerRow = n / 8, total = rows * vecPerRow;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = rowBegin + i / vecPerRow, j = (i % vecPerRow) * 8;
    Vec8 gv = *reinterpret_cast<const Vec8 *>(g + r * ldg + j);
    Vec8 hv = *reinterpret_cast<const Vec8 *>(h + r * ldh + j);
    Vec8 dv;
#pragma unroll
    for (int q = 0; q < 8; ++q)
      dv.v[q] = __float2bfloat16(__bfloat162float(gv.v[q]) *
                                 geluGradRef(__bfloat162float(hv.v[q])));
    *reinterpret_cast<Vec8 *>(dh + r * lddh + j) = dv;
  }
}

/// dh = g * gelu'(h); act = gelu(h)   (g: the plain GEMM's output)
__global__ void dGeluElementwise(const bf16 *g, int64_t ldg, const bf16 *h,
                                 int64_t ldh, bf16 *dh, int64_t lddh, bf16 *act,
                                 int64_t ldact, int64_t rowBegin, int64_t rows,
                                 int64_t n) {
  int64_t vecPerRow = n / 8, total = rows * vecPerRow;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    int64_t r = rowBegin + i / vecPerRow, j = (i % vecPerRow) * 8;
    Vec8 gv = *reinterpret_cast<const Vec8 *>(g + r * ldg + j);
    Vec8 hv = *reinterpret_cast<const Vec8 *>(h + r * ldh + j);
    Vec8 dv, av;
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      float x = __bfloat162float(hv.v[q]);
      dv.v[q] = __float2bfloat16(__bfloat162float(gv.v[q]) * geluGradRef(x));
      av.v[q] = __float2bfloat16(geluRef(x));
    }
    *reinterpret_cast<Vec8 *>(dh + r * lddh + j) = dv;
    *reinterpret_cast<Vec8 *>(act + r * ldact + j) = av;
  }
}

//===----------------------------------------------------------------------===//
// Host side
//===----------------------------------------------------------------------===//

struct Config {
  std::string name;
  int64_t experts, groupsPerExpert, n, k;
  std::vector<int64_t> rowsPerExpert;
  int64_t rowBegin = 0; // offsets[0]
  int64_t ldaPad = 0, lddPad = 0, ldauxPad = 0;
  bool time = false;
};

std::vector<int64_t> spread(int64_t experts, int64_t rows, uint32_t seed) {
  // Rows per expert around rows/experts (+-50%), summing to rows.
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(0.5, 1.5);
  std::vector<double> wts(experts);
  double sum = 0;
  for (auto &x : wts)
    sum += (x = u(gen));
  std::vector<int64_t> out(experts);
  int64_t given = 0;
  for (int64_t l = 0; l < experts; ++l)
    given += (out[l] = int64_t(rows * wts[l] / sum));
  out[0] += rows - given;
  return out;
}

template <class T> T *devAlloc(size_t count) {
  T *p = nullptr;
  CK(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)));
  return p;
}

void fill(bf16 *p, size_t n, uint64_t seed, float lo, float hi,
          cudaStream_t stream) {
  fillUniform<<<1024, 256, 0, stream>>>(p, n, seed, lo, hi);
  CK(cudaGetLastError());
}

struct Buffers {
  /// Every operation of the test goes to this one (non-blocking) stream:
  /// work on the legacy default stream (cudaMemset, cudaMemcpy, <<<>>>
  /// without a stream) is NOT ordered with a cudaStreamNonBlocking stream.
  cudaStream_t stream = nullptr;
  int64_t rowsAlloc = 0, lda = 0, ldd = 0, ldaux = 0;
  int64_t rowBegin = 0, rowEnd = 0;
  bf16 *a = nullptr, *wNT = nullptr, *wNN = nullptr, *bias = nullptr;
  bf16 *d = nullptr, *aux = nullptr, *act = nullptr, *hIn = nullptr;
  float *accNT = nullptr, *accNN = nullptr;
  int32_t *offsets = nullptr;
  int *rowExpert = nullptr;
  void *workspace = nullptr;
  size_t workspaceBytes = 0;
  Stats *stats = nullptr;
};

void freeAll(Buffers &b) {
  for (void *p : {(void *)b.a, (void *)b.wNT, (void *)b.wNN, (void *)b.bias,
                  (void *)b.d, (void *)b.aux, (void *)b.act, (void *)b.hIn,
                  (void *)b.accNT, (void *)b.accNN, (void *)b.offsets,
                  (void *)b.rowExpert, b.workspace, (void *)b.stats})
    if (p)
      CK(cudaFree(p));
  cudaStream_t stream = b.stream;
  b = Buffers{};
  b.stream = stream;
}

FusedGemmArgs baseArgs(const Config &c, const Buffers &b, FusedEpilogue e,
                       bool nt) {
  FusedGemmArgs a;
  a.a = b.a;
  a.lda = b.lda;
  a.w = nt ? b.wNT : b.wNN;
  a.nt = nt;
  a.bias = b.bias;
  a.d = b.d;
  a.ldd = b.ldd;
  a.aux = b.aux;
  a.ldaux = b.ldaux;
  a.actOut = nullptr;
  a.ldact = 0;
  a.offsets = b.offsets;
  a.experts = c.experts;
  a.groupsPerExpert = c.groupsPerExpert;
  a.n = c.n;
  a.k = c.k;
  a.epilogue = e;
  a.act = FusedAct::Gelu;
  a.workspace = b.workspace;
  a.workspaceBytes = b.workspaceBytes;
  return a;
}

void sentinel(bf16 *p, int64_t rows, int64_t ld, cudaStream_t stream) {
  CK(cudaMemsetAsync(p, 0xff, size_t(rows * ld) * sizeof(bf16), stream));
}

/// Compares and prints one output; returns whether it passed.
bool compare(const char *label, const Config &c, Buffers &b, Expect e,
             const float *acc, const bf16 *h, int64_t ldh, const bf16 *out,
             int64_t ldo) {
  CK(cudaMemsetAsync(b.stats, 0, sizeof(Stats), b.stream));
  compareOutput<<<1024, 256, 0, b.stream>>>(e, acc, c.n, b.bias, b.rowExpert, h,
                                            ldh, out, ldo, b.rowBegin, b.rowEnd,
                                            b.rowsAlloc, b.stats);
  CK(cudaGetLastError());
  Stats s;
  CK(cudaMemcpyAsync(&s, b.stats, sizeof s, cudaMemcpyDeviceToHost, b.stream));
  CK(cudaStreamSynchronize(b.stream));
  float diff, ref;
  std::memcpy(&diff, &s.maxDiff, 4);
  std::memcpy(&ref, &s.maxRef, 4);
  bool ok = s.bad == 0 && s.guard == 0 && diff <= 2e-2f * ref + 1e-2f;
  std::printf("  %-26s max|diff| %.3e  max|ref| %.3e  rel %.2e  nonfinite "
              "%llu  guard %llu  %s\n",
              label, diff, ref, ref > 0 ? diff / ref : 0.0, s.bad, s.guard,
              ok ? "PASS" : "FAIL");
  if (!ok)
    ++failures;
  return ok;
}

bool runFused(const char *label, const FusedGemmArgs &args,
              cudaStream_t stream) {
  if (const char *why = fusedGroupedGemmRefusal(args)) {
    std::printf("  %-26s refused: %s  FAIL\n", label, why);
    ++failures;
    return false;
  }
  try {
    launchFusedGroupedGemm(args, stream);
  } catch (const std::exception &ex) {
    std::printf("  %-26s threw: %s  FAIL\n", label, ex.what());
    ++failures;
    return false;
  }
  cudaError_t err = cudaStreamSynchronize(stream);
  if (err != cudaSuccess) {
    std::printf("  %-26s failed on the device: %s  FAIL\n", label,
                cudaGetErrorString(err));
    std::exit(3); // the context is gone
  }
  return true;
}

/// Keeps the GPU busy for `ns` nanoseconds, so that the host has enqueued
/// the timed work (and done its per-launch work) before the start event.
__global__ void spin(uint64_t ns) {
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < ns);
}

template <class F> double medianMs(cudaStream_t stream, F &&f) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < 5; ++i)
    f();
  std::vector<float> ms;
  for (int i = 0; i < 20; ++i) {
    spin<<<1, 1, 0, stream>>>(1000000);
    CK(cudaEventRecord(e0, stream));
    f();
    CK(cudaEventRecord(e1, stream));
    CK(cudaEventSynchronize(e1));
    float t;
    CK(cudaEventElapsedTime(&t, e0, e1));
    ms.push_back(t);
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  std::sort(ms.begin(), ms.end());
  return 0.5 * (ms[9] + ms[10]);
}

/// "[TAG] " before the name on SUMMARY lines (--tag=TAG), e.g. to tell a
/// build of the kernels with other compile-time options apart.
std::string summaryTag;

/// Which epilogues get timed (--only-timing-for=...); all by default.
struct TimingSet {
  bool none = true, bias = true, biasAct = true, dAct = true, dGrad = true;
};
TimingSet timingSet;

/// The outcome of one configuration's correctness checks, per epilogue.
struct Passed {
  bool noneNT = false, noneNN = false, bias = false, biasAct = false,
       dAct = false, dGrad = false, accumulate = false;
};

Passed checkConfig(const Config &c, Buffers &b) {
  cudaStream_t stream = b.stream;
  const size_t auxBytes = size_t(b.rowsAlloc * b.ldaux) * sizeof(bf16);
  Passed p;
  for (bool nt : {true, false}) {
    auto args = baseArgs(c, b, FusedEpilogue::None, nt);
    sentinel(b.d, b.rowsAlloc, b.ldd, stream);
    bool ok = runFused(nt ? "None nt" : "None nn", args, stream) &&
              compare(nt ? "None nt: d" : "None nn: d", c, b, Expect::Acc,
                      nt ? b.accNT : b.accNN, nullptr, 0, b.d, b.ldd);
    (nt ? p.noneNT : p.noneNN) = ok;
  }
  {
    auto args = baseArgs(c, b, FusedEpilogue::Bias, true);
    sentinel(b.d, b.rowsAlloc, b.ldd, stream);
    p.bias = runFused("Bias nt", args, stream) &&
             compare("Bias nt: d", c, b, Expect::AccBias, b.accNT, nullptr, 0,
                     b.d, b.ldd);
  }
  {
    auto args = baseArgs(c, b, FusedEpilogue::BiasAct, true);
    sentinel(b.d, b.rowsAlloc, b.ldd, stream);
    sentinel(b.aux, b.rowsAlloc, b.ldaux, stream);
    if (runFused("BiasAct gelu nt", args, stream)) {
      bool okD = compare("BiasAct nt: d = gelu(h)", c, b, Expect::GeluBias,
                         b.accNT, nullptr, 0, b.d, b.ldd);
      bool okAux = compare("BiasAct nt: aux = h", c, b, Expect::AccBias,
                           b.accNT, nullptr, 0, b.aux, b.ldaux);
      p.biasAct = okD && okAux;
    }
  }
  {
    // aux = h (the grouped rows), sentinel in the guard rows around them.
    auto loadH = [&] {
      CK(cudaMemcpyAsync(b.aux, b.hIn, auxBytes, cudaMemcpyDeviceToDevice,
                         stream));
      if (b.rowBegin > 0)
        sentinel(b.aux, b.rowBegin, b.ldaux, stream);
      sentinel(b.aux + b.rowEnd * b.ldaux, b.rowsAlloc - b.rowEnd, b.ldaux,
               stream);
    };
    // DAct with a separate act output; aux holds h and must stay intact.
    auto args = baseArgs(c, b, FusedEpilogue::DAct, false);
    loadH();
    sentinel(b.d, b.rowsAlloc, b.ldd, stream);
    sentinel(b.act, b.rowsAlloc, b.ldaux, stream);
    args.actOut = b.act;
    args.ldact = b.ldaux;
    bool okSeparate = false;
    if (runFused("DAct gelu nn", args, stream)) {
      bool okD = compare("DAct nn: d = acc*gelu'(h)", c, b, Expect::DGelu,
                         b.accNN, b.hIn, b.ldaux, b.d, b.ldd);
      bool okAct = compare("DAct nn: act = gelu(h)", c, b, Expect::GeluH,
                           b.accNN, b.hIn, b.ldaux, b.act, b.ldaux);
      bool okAux = compare("DAct nn: aux = h intact", c, b, Expect::H, b.accNN,
                           b.hIn, b.ldaux, b.aux, b.ldaux);
      okSeparate = okD && okAct && okAux;
    }
    // In place: act(h) overwrites aux.
    loadH();
    sentinel(b.d, b.rowsAlloc, b.ldd, stream);
    args.actOut = nullptr;
    args.ldact = 0;
    bool okInPlace = false;
    if (runFused("DAct gelu nn in place", args, stream)) {
      bool okD = compare("DAct in place: d", c, b, Expect::DGelu, b.accNN,
                         b.hIn, b.ldaux, b.d, b.ldd);
      bool okAux = compare("DAct in place: aux=gelu(h)", c, b, Expect::GeluH,
                           b.accNN, b.hIn, b.ldaux, b.aux, b.ldaux);
      okInPlace = okD && okAux;
    }
    p.dAct = okSeparate && okInPlace;

    // DGrad in place: d = acc * gelu'(h) written over h (aux), as the
    // compiled backward does when h is not needed again.
    auto inPlace = baseArgs(c, b, FusedEpilogue::DGrad, false);
    inPlace.d = b.aux;
    inPlace.ldd = b.ldaux;
    loadH();
    bool okDGradInPlace = false;
    if (runFused("DGrad gelu nn in place", inPlace, stream))
      okDGradInPlace = compare("DGrad in place: d over h", c, b, Expect::DGelu,
                               b.accNN, b.hIn, b.ldaux, b.aux, b.ldaux);

    // Accumulate: d = acc + d, d holding h before (GLU's second input
    // gradient added to the first's in place).
    auto acc = baseArgs(c, b, FusedEpilogue::Accumulate, false);
    acc.d = b.aux;
    acc.ldd = b.ldaux;
    loadH();
    if (runFused("Accumulate nn", acc, stream))
      p.accumulate = compare("Accumulate nn: d += acc", c, b, Expect::AccH,
                             b.accNN, b.hIn, b.ldaux, b.aux, b.ldaux);

    // DGrad: d = acc * gelu'(h) only; aux holds h and must stay intact.
    // (Last on purpose: aux keeps h for the timing that follows.)
    auto dgrad = baseArgs(c, b, FusedEpilogue::DGrad, false);
    loadH();
    sentinel(b.d, b.rowsAlloc, b.ldd, stream);
    if (runFused("DGrad gelu nn", dgrad, stream)) {
      bool okD = compare("DGrad nn: d = acc*gelu'(h)", c, b, Expect::DGelu,
                         b.accNN, b.hIn, b.ldaux, b.d, b.ldd);
      bool okAux = compare("DGrad nn: aux = h intact", c, b, Expect::H, b.accNN,
                           b.hIn, b.ldaux, b.aux, b.ldaux);
      p.dGrad = okD && okAux && okDGradInPlace;
    }
  }
  return p;
}

/// Times the fused epilogues that passed their checks against the plain
/// GEMM followed by the elementwise kernel they replace. Every line gives
/// ms and TFLOP/s (of the GEMM's 2*rows*N*K); the fused lines also give
/// fused/unfused (below 1: the fused kernel is faster).
void timeConfig(const Config &c, Buffers &b, int64_t rows, const Passed &p) {
  cudaStream_t stream = b.stream;
  const int64_t N = c.n;
  const double flop = 2.0 * double(rows) * double(N) * double(c.k);
  const int eltBlocks = 132 * 16;
  auto tflops = [&](double ms) { return flop / (ms * 1e-3) / 1e12; };
  auto line = [&](const char *what, double ms) {
    std::printf("  TIME %-40s %8.3f ms  %7.1f TFLOP/s\n", what, ms, tflops(ms));
  };
  auto pair = [&](const char *name, const char *unfusedName, double fused,
                  double unfused, double eltAlone) {
    std::printf("  TIME %-40s %8.3f ms  %7.1f TFLOP/s  fused/unfused %.3f\n",
                (std::string(name) + " fused").c_str(), fused, tflops(fused),
                fused / unfused);
    std::printf("  TIME %-40s %8.3f ms  %7.1f TFLOP/s  (kernel alone %.3f "
                "ms)\n",
                (std::string(name) + " unfused: " + unfusedName).c_str(),
                unfused, tflops(unfused), eltAlone);
  };
  auto skip = [&](const char *name, const char *why) {
    std::printf("  TIME %-40s skipped: %s\n", name, why);
  };
  std::string summary;
  auto note = [&](const char *name, double fused, double unfused) {
    char buf[128];
    std::snprintf(buf, sizeof buf, " | %s %.3f vs %.3f ms (fused/unfused %.3f)",
                  name, fused, unfused, fused / unfused);
    summary += buf;
  };

  auto none = baseArgs(c, b, FusedEpilogue::None, true);
  auto noneNN = baseArgs(c, b, FusedEpilogue::None, false);
  auto gemm = [&](const FusedGemmArgs &a) {
    launchFusedGroupedGemm(a, stream);
  };

  if (timingSet.none) {
    if (!p.noneNT) {
      skip("None nt", "its check failed");
    } else {
      double t = medianMs(stream, [&] { gemm(none); });
      line("None nt (GEMM alone)", t);
      char buf[64];
      std::snprintf(buf, sizeof buf, " | None nt %.3f ms", t);
      summary += buf;
      // Host cost of one launch (argument checks, tables kernel, CUTLASS
      // initialize, the GEMM launch).
      CK(cudaStreamSynchronize(stream));
      auto h0 = std::chrono::steady_clock::now();
      for (int i = 0; i < 20; ++i)
        gemm(none);
      auto h1 = std::chrono::steady_clock::now();
      CK(cudaStreamSynchronize(stream));
      std::printf(
          "  TIME %-40s %8.1f us per launch\n", "  (host side of a launch)",
          std::chrono::duration<double, std::micro>(h1 - h0).count() / 20);
    }
    if (p.noneNN)
      line("None nn (GEMM alone)", medianMs(stream, [&] { gemm(noneNN); }));
  }

  // One epilogue, fused, against the plain GEMM of its layout followed by
  // `elt` (the same work as a separate pass), and `elt` alone. `prepare`
  // runs once before the timings when they are not skipped.
  auto compare = [&](const char *name, bool checked, bool nn,
                     const char *unfusedName, const FusedGemmArgs &fused,
                     const std::function<void()> &elt,
                     const std::function<void()> &prepare = nullptr) {
    if (!checked || !(nn ? p.noneNN : p.noneNT)) {
      skip(name, !checked ? "its check failed"
                 : nn     ? "None nn failed its check"
                          : "None nt failed its check");
      return;
    }
    if (prepare)
      prepare();
    const FusedGemmArgs &plain = nn ? noneNN : none;
    double tf = medianMs(stream, [&] { gemm(fused); });
    double tu = medianMs(stream, [&] {
      gemm(plain);
      elt();
    });
    double te = medianMs(stream, elt);
    pair(name, unfusedName, tf, tu, te);
    note(name, tf, tu);
  };

  if (timingSet.bias)
    compare("Bias", p.bias, false, "None nt + bias",
            baseArgs(c, b, FusedEpilogue::Bias, true), [&] {
              biasElementwise<<<eltBlocks, 256, 0, stream>>>(
                  b.d, b.ldd, b.bias, b.rowExpert, b.aux, b.ldaux, b.rowBegin,
                  rows, N);
            });

  if (timingSet.biasAct)
    compare("BiasAct", p.biasAct, false, "None nt + bias_gelu",
            baseArgs(c, b, FusedEpilogue::BiasAct, true), [&] {
              biasGeluElementwise<<<eltBlocks, 256, 0, stream>>>(
                  b.d, b.ldd, b.bias, b.rowExpert, b.aux, b.ldaux, b.act,
                  b.ldaux, b.rowBegin, rows, N);
            });

  if (timingSet.dAct) {
    auto args = baseArgs(c, b, FusedEpilogue::DAct, false);
    args.actOut = b.act;
    args.ldact = b.ldaux;
    compare(
        "DAct", p.dAct, true, "None nn + dgelu", args,
        [&] {
          dGeluElementwise<<<eltBlocks, 256, 0, stream>>>(
              b.d, b.ldd, b.aux, b.ldaux, b.hIn, b.ldaux, b.act, b.ldaux,
              b.rowBegin, rows, N);
        },
        [&] {
          // aux holds h (read only by every timed kernel); dh of the
          // unfused pair goes to hIn, free scratch once the checks are done.
          CK(cudaMemcpyAsync(b.aux, b.hIn,
                             size_t(b.rowsAlloc * b.ldaux) * sizeof(bf16),
                             cudaMemcpyDeviceToDevice, stream));
        });
  }

  // aux holds h (the checks left it there; read only from here on); dh of
  // the unfused pair goes to hIn (scratch once the checks are done).
  if (timingSet.dGrad)
    compare("DGrad", p.dGrad, true, "None nn + dgelu (no act)",
            baseArgs(c, b, FusedEpilogue::DGrad, false), [&] {
              dGeluOnlyElementwise<<<eltBlocks, 256, 0, stream>>>(
                  b.d, b.ldd, b.aux, b.ldaux, b.hIn, b.ldaux, b.rowBegin, rows,
                  N);
            });
  CK(cudaGetLastError());
  if (!summary.empty())
    std::printf("  SUMMARY %s%s%s\n", summaryTag.c_str(), c.name.c_str(),
                summary.c_str());
}

void runConfig(const Config &c, cudaStream_t stream) {
  const int64_t L = c.experts, S = c.groupsPerExpert, N = c.n, K = c.k;
  int64_t rows = 0;
  for (auto r : c.rowsPerExpert)
    rows += r;
  std::printf("\n== %s: experts %lld (x%lld groups), N %lld, K %lld, rows "
              "%lld (",
              c.name.c_str(), (long long)L, (long long)S, (long long)N,
              (long long)K, (long long)rows);
  for (size_t l = 0; l < c.rowsPerExpert.size() && l < 8; ++l)
    std::printf("%s%lld", l ? " " : "", (long long)c.rowsPerExpert[l]);
  std::printf("%s)\n", c.rowsPerExpert.size() > 8 ? " ..." : "");

  Buffers b;
  b.stream = stream;
  b.rowBegin = c.rowBegin;
  b.rowEnd = c.rowBegin + rows;
  b.rowsAlloc = b.rowEnd + 64; // guard rows after the grouped ones
  b.lda = K + c.ldaPad;
  b.ldd = N + c.lddPad;
  b.ldaux = N + c.ldauxPad;

  // Offsets: S groups per expert, the expert's rows split among them.
  std::vector<int32_t> offsets(L * S + 1);
  std::vector<int> rowExpert(b.rowsAlloc, 0);
  std::vector<RefTile> tiles;
  int64_t at = c.rowBegin;
  for (int64_t l = 0; l < L; ++l) {
    int64_t r = c.rowsPerExpert[l];
    for (int64_t s = 0; s < S; ++s) {
      offsets[l * S + s] = int32_t(at + r * s / S);
    }
    for (int64_t i = at; i < at + r; ++i)
      rowExpert[i] = int(l);
    for (int64_t i = at; i < at + r; i += 32)
      tiles.push_back({int(l), int(i), int(std::min(at + r, i + 32))});
    at += r;
  }
  offsets[L * S] = int32_t(at);

  b.a = devAlloc<bf16>(b.rowsAlloc * b.lda);
  b.wNT = devAlloc<bf16>(L * N * K);
  b.wNN = devAlloc<bf16>(L * N * K);
  b.bias = devAlloc<bf16>(L * N);
  b.d = devAlloc<bf16>(b.rowsAlloc * b.ldd);
  b.aux = devAlloc<bf16>(b.rowsAlloc * b.ldaux);
  b.act = devAlloc<bf16>(b.rowsAlloc * b.ldaux);
  b.hIn = devAlloc<bf16>(b.rowsAlloc * b.ldaux);
  b.accNT = devAlloc<float>(b.rowsAlloc * N);
  b.accNN = devAlloc<float>(b.rowsAlloc * N);
  b.offsets = devAlloc<int32_t>(offsets.size());
  b.rowExpert = devAlloc<int>(rowExpert.size());
  b.stats = devAlloc<Stats>(1);
  CK(cudaMemcpyAsync(b.offsets, offsets.data(), offsets.size() * 4,
                     cudaMemcpyHostToDevice, stream));
  CK(cudaMemcpyAsync(b.rowExpert, rowExpert.data(), rowExpert.size() * 4,
                     cudaMemcpyHostToDevice, stream));
  float wScale = 1.0f / std::sqrt(float(K)) * 1.7f;
  fill(b.a, b.rowsAlloc * b.lda, 1, -1.0f, 1.0f, stream);
  fill(b.wNT, L * N * K, 2, -wScale, wScale, stream);
  fill(b.wNN, L * N * K, 3, -wScale, wScale, stream);
  fill(b.bias, L * N, 4, -0.5f, 0.5f, stream);
  fill(b.hIn, b.rowsAlloc * b.ldaux, 5, -4.0f, 4.0f, stream);

  // The reference accumulators.
  if (!tiles.empty()) {
    RefTile *dTiles = devAlloc<RefTile>(tiles.size());
    CK(cudaMemcpyAsync(dTiles, tiles.data(), tiles.size() * sizeof(RefTile),
                       cudaMemcpyHostToDevice, stream));
    for (int nt = 0; nt < 2; ++nt)
      for (size_t t0 = 0; t0 < tiles.size(); t0 += 65535) {
        dim3 grid(unsigned((N + 31) / 32),
                  unsigned(std::min<size_t>(65535, tiles.size() - t0)));
        referenceGemm<<<grid, dim3(16, 16), 0, stream>>>(
            b.a, b.lda, nt ? b.wNT : b.wNN, nt, dTiles + t0, N, K,
            nt ? b.accNT : b.accNN);
        CK(cudaGetLastError());
      }
    CK(cudaStreamSynchronize(stream));
    CK(cudaFree(dTiles));
  }
  CK(cudaStreamSynchronize(stream)); // the host vectors above go away

  // Workspace: the largest any kind needs here.
  {
    size_t need = 0;
    for (auto e :
         {FusedEpilogue::None, FusedEpilogue::Bias, FusedEpilogue::BiasAct,
          FusedEpilogue::DAct, FusedEpilogue::DGrad, FusedEpilogue::Accumulate})
      for (bool nt : {true, false})
        need = std::max(need, fusedGroupedGemmWorkspace(baseArgs(c, b, e, nt)));
    b.workspaceBytes = need;
    b.workspace = need ? devAlloc<char>(need) : nullptr;
    std::printf("  workspace %zu bytes\n", need);
  }

  Passed p = checkConfig(c, b);
  if (c.time) {
    try {
      timeConfig(c, b, rows, p);
    } catch (const std::exception &ex) {
      std::printf("  TIME threw: %s  FAIL\n", ex.what());
      ++failures;
    }
  }
  CK(cudaStreamSynchronize(stream));
  freeAll(b);
}

/// Arguments the library must refuse (host checks only).
void refusals() {
  std::printf("\n== refusals\n");
  alignas(16) static char dummy[64];
  FusedGemmArgs ok;
  ok.a = ok.w = ok.bias = dummy;
  ok.d = ok.aux = dummy;
  ok.offsets = reinterpret_cast<const int32_t *>(dummy);
  ok.lda = 64;
  ok.ldd = ok.ldaux = 64;
  ok.experts = 2;
  ok.n = ok.k = 64;
  struct Case {
    const char *what;
    FusedGemmArgs args;
  };
  std::vector<Case> cases;
  auto add = [&](const char *what, auto mutate) {
    FusedGemmArgs a = ok;
    mutate(a);
    cases.push_back({what, a});
  };
  add("lda not a multiple of 8", [](FusedGemmArgs &a) { a.lda = 65; });
  add("k not a multiple of 8", [](FusedGemmArgs &a) {
    a.k = 60;
    a.lda = 64;
  });
  add("misaligned a", [](FusedGemmArgs &a) { a.a = dummy + 8; });
  add("Bias with nn", [](FusedGemmArgs &a) {
    a.epilogue = FusedEpilogue::Bias;
    a.nt = false;
  });
  add("Bias without bias", [](FusedGemmArgs &a) {
    a.epilogue = FusedEpilogue::Bias;
    a.bias = nullptr;
  });
  add("DAct with nt", [](FusedGemmArgs &a) {
    a.epilogue = FusedEpilogue::DAct;
    a.nt = true;
  });
  add("DGrad with nt", [](FusedGemmArgs &a) {
    a.epilogue = FusedEpilogue::DGrad;
    a.nt = true;
  });
  // (d == aux with ldd == ldaux is allowed: DGrad in place, checked above.)
  add("DGrad over aux, ldd != ldaux", [](FusedGemmArgs &a) {
    a.epilogue = FusedEpilogue::DGrad;
    a.nt = false;
    a.ldd = 72;
  });
  add("BiasAct without aux", [](FusedGemmArgs &a) {
    a.epilogue = FusedEpilogue::BiasAct;
    a.aux = nullptr;
  });
  for (auto &c : cases) {
    const char *why = fusedGroupedGemmRefusal(c.args);
    bool threw = false;
    try {
      launchFusedGroupedGemm(c.args, nullptr);
    } catch (const std::runtime_error &) {
      threw = true;
    }
    bool pass = why && !fusedGroupedGemmSupported(c.args) && threw;
    std::printf("  %-26s -> %s  %s\n", c.what, why ? why : "(accepted)",
                pass ? "PASS" : "FAIL");
    if (!pass)
      ++failures;
  }
}

/// A launch captured in a CUDA graph (no host synchronisation inside).
void graphCapture(cudaStream_t stream) {
  std::printf("\n== graph capture\n");
  const int64_t rows = 240, N = 64, K = 64, L = 3;
  bf16 *a = devAlloc<bf16>(rows * K), *w = devAlloc<bf16>(L * N * K);
  bf16 *bias = devAlloc<bf16>(L * N), *d = devAlloc<bf16>(rows * N);
  bf16 *h = devAlloc<bf16>(rows * N);
  int32_t *offsets = devAlloc<int32_t>(4);
  int32_t hostOff[4] = {0, 40, 40, 240};
  CK(cudaMemcpyAsync(offsets, hostOff, sizeof hostOff, cudaMemcpyHostToDevice,
                     stream));
  fill(a, rows * K, 11, -1, 1, stream);
  fill(w, L * N * K, 12, -0.2f, 0.2f, stream);
  fill(bias, L * N, 13, -0.5f, 0.5f, stream);
  FusedGemmArgs args;
  args.a = a;
  args.lda = K;
  args.w = w;
  args.nt = true;
  args.bias = bias;
  args.d = d;
  args.ldd = N;
  args.aux = h;
  args.ldaux = N;
  args.offsets = offsets;
  args.experts = L;
  args.n = N;
  args.k = K;
  args.epilogue = FusedEpilogue::BiasAct;
  size_t ws = fusedGroupedGemmWorkspace(args);
  args.workspace = devAlloc<char>(ws);
  args.workspaceBytes = ws;
  CK(cudaDeviceSynchronize());
  cudaGraph_t graph = nullptr;
  bool pass = true;
  std::string why;
  CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  try {
    launchFusedGroupedGemm(args, stream);
  } catch (const std::exception &ex) {
    pass = false;
    why = ex.what();
  }
  cudaError_t err = cudaStreamEndCapture(stream, &graph);
  if (err != cudaSuccess) {
    pass = false;
    why += std::string(" end capture: ") + cudaGetErrorString(err);
    cudaGetLastError();
  }
  if (pass) {
    cudaGraphExec_t exec;
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaMemsetAsync(d, 0xff, rows * N * 2, stream));
    CK(cudaGraphLaunch(exec, stream));
    CK(cudaStreamSynchronize(stream));
    // Compare with a direct launch.
    std::vector<uint16_t> g(rows * N), r(rows * N);
    CK(cudaMemcpyAsync(g.data(), d, rows * N * 2, cudaMemcpyDeviceToHost,
                       stream));
    CK(cudaMemsetAsync(d, 0xff, rows * N * 2, stream));
    launchFusedGroupedGemm(args, stream);
    CK(cudaMemcpyAsync(r.data(), d, rows * N * 2, cudaMemcpyDeviceToHost,
                       stream));
    CK(cudaStreamSynchronize(stream));
    pass = g == r;
    if (!pass)
      why = "graph result differs from a direct launch";
    CK(cudaGraphExecDestroy(exec));
  }
  if (graph)
    CK(cudaGraphDestroy(graph));
  std::printf("  BiasAct captured and replayed %s%s%s\n",
              pass ? "PASS" : "FAIL", why.empty() ? "" : ": ", why.c_str());
  if (!pass)
    ++failures;
  for (void *p : {(void *)a, (void *)w, (void *)bias, (void *)d, (void *)h,
                  (void *)offsets, args.workspace})
    CK(cudaFree(p));
}

} // namespace

/// Parses "None,Bias,BiasAct,DAct,DGrad" (any subset, case-sensitive).
bool parseTimingSet(const char *list, TimingSet &out) {
  out = TimingSet{false, false, false, false, false};
  std::string s(list);
  size_t at = 0;
  while (at <= s.size()) {
    size_t comma = s.find(',', at);
    std::string name = s.substr(
        at, comma == std::string::npos ? std::string::npos : comma - at);
    if (name == "None")
      out.none = true;
    else if (name == "Bias")
      out.bias = true;
    else if (name == "BiasAct")
      out.biasAct = true;
    else if (name == "DAct")
      out.dAct = true;
    else if (name == "DGrad")
      out.dGrad = true;
    else
      return false;
    if (comma == std::string::npos)
      break;
    at = comma + 1;
  }
  return true;
}

int main(int argc, char **argv) {
  bool quick = false;
  const char *onlyTiming = "--only-timing-for=";
  const size_t onlyTimingLen = std::strlen(onlyTiming);
  const char *tag = "--tag=";
  const size_t tagLen = std::strlen(tag);
  for (int i = 1; i < argc; ++i) {
    bool ok = true;
    if (std::strcmp(argv[i], "--quick") == 0)
      quick = true;
    else if (std::strncmp(argv[i], onlyTiming, onlyTimingLen) == 0)
      ok = parseTimingSet(argv[i] + onlyTimingLen, timingSet);
    else if (std::strncmp(argv[i], tag, tagLen) == 0)
      summaryTag = std::string("[") + (argv[i] + tagLen) + "] ";
    else
      ok = false;
    if (!ok) {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--only-timing-for=LIST] [--tag=TAG]\n"
                   "  --quick: skip the two largest shapes\n"
                   "  --tag=TAG: SUMMARY lines start with [TAG]\n"
                   "  --only-timing-for=LIST: time only these epilogues, a "
                   "comma-separated subset of None,Bias,BiasAct,DAct,DGrad\n"
                   "    (all checks still run; an epilogue whose check "
                   "failed is never timed)\n",
                   argv[0]);
      return 2;
    }
  }
  int device = 0;
  CK(cudaGetDevice(&device));
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, device));
  std::printf("device %d: %s, cc %d.%d, %d SMs\n", device, prop.name,
              prop.major, prop.minor, prop.multiProcessorCount);

  refusals();

  {
    FusedGemmArgs probe;
    alignas(16) static char dummy[64];
    probe.a = probe.w = probe.d = dummy;
    probe.offsets = reinterpret_cast<const int32_t *>(dummy);
    probe.lda = probe.ldd = probe.n = probe.k = 64;
    probe.experts = 1;
    if (const char *why = fusedGroupedGemmRefusal(probe)) {
      std::printf("\nthe fused kernels are not available here: %s\nFAIL\n",
                  why);
      return 1;
    }
  }

  cudaStream_t stream;
  CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

  graphCapture(stream);

  std::vector<Config> configs;
  {
    Config t{"tiny (S=2, padded ld, offsets[0]=16)",
             5,
             2,
             136,
             40,
             {0, 1, 130, 0, 7}};
    t.rowBegin = 16;
    t.ldaPad = 8;
    t.lddPad = 8;
    t.ldauxPad = 16;
    configs.push_back(t);
  }
  configs.push_back({"empty (all experts 0 rows)", 4, 1, 64, 64, {0, 0, 0, 0}});
  {
    Config s{"skewed (90% to expert 3, zeros)", 16, 1, 2048, 1024, {}};
    int64_t rows = 32768;
    s.rowsPerExpert.assign(16, 0);
    s.rowsPerExpert[3] = rows * 9 / 10;
    int64_t rest = rows - s.rowsPerExpert[3];
    std::vector<int> others = {1, 2, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    for (size_t i = 0; i < others.size(); ++i)
      s.rowsPerExpert[others[i]] = rest / int64_t(others.size());
    s.rowsPerExpert[1] += rest % int64_t(others.size()); // 0, 5, 15 get none
    s.time = true;
    configs.push_back(s);
  }
  // The benchmark layers' GEMM shapes, checked and timed: rows spread
  // around rows/experts.
  auto timed = [&](const char *name, int64_t experts, int64_t n, int64_t k,
                   int64_t rows, uint32_t seed) {
    Config c{name, experts, 1, n, k, spread(experts, rows, seed)};
    c.time = true;
    configs.push_back(c);
  };
  timed("classic fc1 (L16 N4096 K1024)", 16, 4096, 1024, 32768, 1);
  timed("classic fc2/da (L16 N1024 K4096)", 16, 1024, 4096, 32768, 2);
  if (!quick) {
    timed("fine-grained (L64 N1024 K2048)", 64, 1024, 2048, 131072, 3);
    timed("mixtral-like (L8 N14336 K4096)", 8, 14336, 4096, 16384, 4);
  }

  for (auto &c : configs)
    runConfig(c, stream);

  CK(cudaStreamDestroy(stream));
  std::printf("\n%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
