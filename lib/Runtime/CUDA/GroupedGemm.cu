//===- GroupedGemm.cu - grouped GEMM kernels of the CUDA backend ----------===//
//
// Part of fmoe. The library functions fmoe_rt_grouped_gemm[_gather]_T and
// fmoe_rt_grouped_wgrad_T (docs/module-format.md): shared-memory tiled SIMT
// kernels with fp32 accumulation, templated on the storage type. They are
// meant to be simple and correct rather than hand-tuned.
//
// The group sizes are only known on the device (the routing kernels wrote
// them), so the grids cover an upper bound of the rows (the grouped buffer's
// rows) and every block reads `offsets` itself: a block whose rows are all
// past offsets[G] exits at once.
//
//===----------------------------------------------------------------------===//

#include "Gelu.cuh"
#include "GroupedGemm.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <string>

namespace fmoe::runtime::cuda {

namespace {

// A 64x64 output tile per block of 16x16 threads, each thread owning a 4x4
// sub-tile strided by 16 (so that a warp's shared-memory reads of B are
// consecutive and its reads of A are broadcasts).
constexpr int kTileM = 64;
constexpr int kTileN = 64;
constexpr int kTileK = 32;
constexpr int kThreadsX = 16;
constexpr int kThreadsY = 16;
constexpr int kThreads = kThreadsX * kThreadsY;
constexpr int kPerThreadM = kTileM / kThreadsY;
constexpr int kPerThreadN = kTileN / kThreadsX;
// Shared tiles are stored k-major; one padding column makes the transposing
// stores (consecutive k in a warp) hit distinct banks.
constexpr int kPad = 1;

template <typename T> __device__ __forceinline__ float toFloat(T v);
template <> __device__ __forceinline__ float toFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float toFloat<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <> __device__ __forceinline__ float toFloat<__half>(__half v) {
  return __half2float(v);
}

template <typename T> __device__ __forceinline__ T fromFloat(float v);
template <> __device__ __forceinline__ float fromFloat<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half fromFloat<__half>(float v) {
  return __float2half_rn(v);
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
__device__ __forceinline__ int64_t max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

/// Grid: x = row tiles of the row upper bound, y = column tiles of n.
///
/// Rows are sorted by group and groups are expert-major, so the rows of a
/// tile belong to a contiguous range of local experts, each owning a
/// contiguous range of the tile's rows. The block makes one pass over k per
/// expert present in its tile, loading only that expert's rows of A (the
/// others read as zeros) against that expert's weights, into the same
/// accumulators: every row gets exactly its own expert's product. A tile
/// straddling a boundary costs one more pass; there are at most
/// (local experts - 1) such tiles per column of tiles.
/// acc += the product of the staged tiles (aTile: k x m, bTile: k x n), each
/// thread owning kPerThreadM x kPerThreadN outputs strided over the tile.
__device__ __forceinline__ void
multiplyTiles(const float (&aTile)[kTileK][kTileM + kPad],
              const float (&bTile)[kTileK][kTileN + kPad], int tx, int ty,
              float (&acc)[kPerThreadM][kPerThreadN]) {
#pragma unroll 8
  for (int kk = 0; kk < kTileK; ++kk) {
    float av[kPerThreadM], bv[kPerThreadN];
#pragma unroll
    for (int i = 0; i < kPerThreadM; ++i)
      av[i] = aTile[kk][ty + i * kThreadsY];
#pragma unroll
    for (int j = 0; j < kPerThreadN; ++j)
      bv[j] = bTile[kk][tx + j * kThreadsX];
#pragma unroll
    for (int i = 0; i < kPerThreadM; ++i)
#pragma unroll
      for (int j = 0; j < kPerThreadN; ++j)
        acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

template <typename T, typename TC, bool NT, bool Gather>
__global__ void __launch_bounds__(kThreads)
    groupedGemmKernel(GroupedGemmArgs p) {
  __shared__ float aTile[kTileK][kTileM + kPad];
  __shared__ float bTile[kTileK][kTileN + kPad];
  // Element offset of each tile row's A row (after the gather), -1 when the
  // row is outside every group or its gather index is invalid.
  __shared__ int64_t aRowBase[kTileM];

  const T *a = static_cast<const T *>(p.a);
  const T *w = static_cast<const T *>(p.w);
  TC *c = static_cast<TC *>(p.c);
  const int32_t *offsets = p.offsets;
  const int tid = threadIdx.x;
  const int tx = tid % kThreadsX, ty = tid / kThreadsX;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kTileM;
  const int64_t col0 = static_cast<int64_t>(blockIdx.y) * kTileN;
  const int64_t groups = p.groups;
  const int64_t local = p.localExperts;
  const int64_t perExpert = groups / local;

  // The rows of this tile that belong to some group. Every thread computes
  // the same values, so the early exit and the loops below are uniform.
  const int64_t used = min64(offsets[groups], p.rows);
  const int64_t rowBegin = max64(row0, offsets[0]);
  const int64_t rowEnd = min64(row0 + kTileM, used);
  if (rowBegin >= rowEnd)
    return;

  for (int rr = tid; rr < kTileM; rr += kThreads) {
    int64_t r = row0 + rr, base = -1;
    if (r >= rowBegin && r < rowEnd) {
      if (Gather) {
        int64_t t = p.tokenOf[r];
        if (t >= 0 && t < p.aRows)
          base = t * p.lda + p.aCol;
      } else {
        base = r * p.lda + p.aCol;
      }
    }
    aRowBase[rr] = base;
  }

  // The first local expert with rows in the tile: the smallest l whose rows
  // end past rowBegin (offsets is non-decreasing).
  int64_t lo = 0, hi = local - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi) / 2;
    if (offsets[(mid + 1) * perExpert] > rowBegin)
      hi = mid;
    else
      lo = mid + 1;
  }

  float acc[kPerThreadM][kPerThreadN];
#pragma unroll
  for (int i = 0; i < kPerThreadM; ++i)
#pragma unroll
    for (int j = 0; j < kPerThreadN; ++j)
      acc[i][j] = 0.0f;

  const int64_t n = p.n, kDim = p.k;
  for (int64_t l = lo; l < local; ++l) {
    const int64_t start = offsets[l * perExpert];
    if (start >= rowEnd)
      break;
    const int64_t eBegin = max64(start, rowBegin);
    const int64_t eEnd = min64(offsets[(l + 1) * perExpert], rowEnd);
    if (eBegin >= eEnd)
      continue; // an expert without rows in this tile
    const T *wl = w + l * n * kDim;

    for (int64_t k0 = 0; k0 < kDim; k0 += kTileK) {
      // Sync before overwriting the tiles: the previous step (or the
      // aRowBase stores on the first one) must be complete.
      __syncthreads();
      // A: consecutive threads read consecutive k of a row (coalesced).
      for (int idx = tid; idx < kTileM * kTileK; idx += kThreads) {
        int rr = idx / kTileK, kk = idx % kTileK;
        int64_t r = row0 + rr, kg = k0 + kk;
        int64_t base = aRowBase[rr];
        float v = 0.0f;
        if (base >= 0 && r >= eBegin && r < eEnd && kg < kDim)
          v = toFloat(a[base + kg]);
        aTile[kk][rr] = v;
      }
      // B(k, j): contiguous in k for "nt" (w[l][j][k]), in j for "nn"
      // (w[l][k][j]); either way consecutive threads read consecutive
      // addresses.
      for (int idx = tid; idx < kTileN * kTileK; idx += kThreads) {
        int nn, kk;
        if (NT) {
          nn = idx / kTileK;
          kk = idx % kTileK;
        } else {
          kk = idx / kTileN;
          nn = idx % kTileN;
        }
        int64_t j = col0 + nn, kg = k0 + kk;
        float v = 0.0f;
        if (j < n && kg < kDim)
          v = toFloat(NT ? wl[j * kDim + kg] : wl[kg * n + j]);
        bTile[kk][nn] = v;
      }
      __syncthreads();
      multiplyTiles(aTile, bTile, tx, ty, acc);
    }
  }

  // Only rows inside a group are written (the others keep their contents).
#pragma unroll
  for (int i = 0; i < kPerThreadM; ++i) {
    int64_t r = row0 + ty + i * kThreadsY;
    if (r < rowBegin || r >= rowEnd)
      continue;
#pragma unroll
    for (int j = 0; j < kPerThreadN; ++j) {
      int64_t col = col0 + tx + j * kThreadsX;
      if (col >= n)
        continue;
      TC *dst = c + r * p.ldc + p.cCol + col;
      float v = acc[i][j];
      if (p.accumulate)
        v += toFloat(*dst);
      *dst = fromFloat<TC>(v);
    }
  }
}

/// Grid: x = (m tiles) x (n tiles), y = local experts. The block reduces
/// over all the rows of its expert (every group of it), kTileK rows a step;
/// both operands are read along their rows, so the loads are coalesced
/// without transposition.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    groupedWgradKernel(GroupedWgradArgs p, int nTiles) {
  __shared__ float aTile[kTileK][kTileM + kPad];
  __shared__ float bTile[kTileK][kTileN + kPad];

  const T *a = static_cast<const T *>(p.a);
  const T *b = static_cast<const T *>(p.b);
  T *dw = static_cast<T *>(p.dw);
  const int32_t *offsets = p.offsets;
  const int tid = threadIdx.x;
  const int tx = tid % kThreadsX, ty = tid / kThreadsX;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x / nTiles) * kTileM;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x % nTiles) * kTileN;
  const int64_t l = blockIdx.y;
  const int64_t perExpert = p.groups / p.localExperts;
  const int64_t m = p.m, n = p.n;

  const int64_t rBegin = max64(offsets[l * perExpert], 0);
  const int64_t rEnd = min64(offsets[(l + 1) * perExpert], p.rows);

  float acc[kPerThreadM][kPerThreadN];
#pragma unroll
  for (int i = 0; i < kPerThreadM; ++i)
#pragma unroll
    for (int j = 0; j < kPerThreadN; ++j)
      acc[i][j] = 0.0f;

  for (int64_t r0 = rBegin; r0 < rEnd; r0 += kTileK) {
    __syncthreads();
    for (int idx = tid; idx < kTileM * kTileK; idx += kThreads) {
      int ii = idx % kTileM, kk = idx / kTileM;
      int64_t r = r0 + kk, i = i0 + ii;
      float v = 0.0f;
      if (r < rEnd && i < m)
        v = toFloat(a[r * p.lda + p.aCol + i]);
      aTile[kk][ii] = v;
    }
    for (int idx = tid; idx < kTileN * kTileK; idx += kThreads) {
      int jj = idx % kTileN, kk = idx / kTileN;
      int64_t r = r0 + kk, j = j0 + jj;
      float v = 0.0f;
      if (r < rEnd && j < n)
        v = toFloat(b[r * p.ldb + j]);
      bTile[kk][jj] = v;
    }
    __syncthreads();
    multiplyTiles(aTile, bTile, tx, ty, acc);
  }

  // Written even when the expert has no rows: its gradient is zero.
  T *dwl = dw + l * m * n;
#pragma unroll
  for (int ti = 0; ti < kPerThreadM; ++ti) {
    int64_t i = i0 + ty + ti * kThreadsY;
    if (i >= m)
      continue;
#pragma unroll
    for (int tj = 0; tj < kPerThreadN; ++tj) {
      int64_t j = j0 + tx + tj * kThreadsX;
      if (j < n)
        dwl[i * n + j] = fromFloat<T>(acc[ti][tj]);
    }
  }
}

/// Launch errors (bad configuration, no kernel image for the device) are
/// reported at once by cudaGetLastError, without synchronising; faults
/// during execution surface at the caller's next synchronisation.
void checkLaunch(const char *what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw Error(std::string("CUDA launch of ") + what + " failed: " +
                cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

template <typename T>
void gemmFor(const GroupedGemmArgs &p, dim3 grid, cudaStream_t stream) {
  dim3 block(kThreads);
  // The module format only emits the gather variant with "nt"; "nn" costs
  // one more instantiation and keeps the two variants orthogonal.
  if (p.outF32 && p.tokenOf) {
    throw Error("grouped GEMM: an f32 result of a gathered GEMM");
  } else if (p.outF32 && p.nt) {
    groupedGemmKernel<T, float, true, false><<<grid, block, 0, stream>>>(p);
  } else if (p.outF32) {
    groupedGemmKernel<T, float, false, false><<<grid, block, 0, stream>>>(p);
  } else if (p.tokenOf && p.nt) {
    groupedGemmKernel<T, T, true, true><<<grid, block, 0, stream>>>(p);
  } else if (p.tokenOf) {
    groupedGemmKernel<T, T, false, true><<<grid, block, 0, stream>>>(p);
  } else if (p.nt) {
    groupedGemmKernel<T, T, true, false><<<grid, block, 0, stream>>>(p);
  } else {
    groupedGemmKernel<T, T, false, false><<<grid, block, 0, stream>>>(p);
  }
  checkLaunch("the grouped GEMM kernel");
}

template <typename T>
void wgradFor(const GroupedWgradArgs &p, dim3 grid, int nTiles,
              cudaStream_t stream) {
  groupedWgradKernel<T><<<grid, dim3(kThreads), 0, stream>>>(p, nTiles);
  checkLaunch("the grouped weight-gradient kernel");
}

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// One block per row (grid-stride): the row's local expert is found once
/// per block by a binary search over the offsets; the threads cover its
/// columns.
template <typename T> __global__ void epilogueKernel(EpilogueArgs p) {
  __shared__ int64_t expert;
  int32_t first = p.offsets[0], last = p.offsets[p.groups];
  for (int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
    if (r < first || r >= last)
      continue;      // uniform over the block
    __syncthreads(); // the previous row's readers of `expert` are done
    if (threadIdx.x == 0) {
      int64_t lo = 0, hi = p.groups; // the last group starting at or before r
      while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (p.offsets[mid] <= r)
          lo = mid;
        else
          hi = mid;
      }
      expert = lo / (p.groups / p.localExperts);
    }
    __syncthreads();
    T *c = static_cast<T *>(p.c) + r * p.ldc;
    const T *src = p.src ? static_cast<const T *>(p.src) + r * p.ldc : c;
    const T *x =
        static_cast<const T *>(p.x) + (p.dgelu ? r * p.ldc : expert * p.n);
    T *act = p.act ? static_cast<T *>(p.act) + r * p.ldact : nullptr;
    for (int64_t j = threadIdx.x; j < p.n; j += blockDim.x) {
      float v = toFloat(src[j]), xv = toFloat(x[j]);
      if (p.dgelu) {
        c[j] = fromFloat<T>(v * geluGrad(xv));
        if (act) // after c: act may be h (x) itself
          act[j] = fromFloat<T>(gelu(xv));
      } else {
        T h = fromFloat<T>(v + xv);
        c[j] = h;
        if (act) // of h as stored
          act[j] = fromFloat<T>(gelu(toFloat(h)));
      }
    }
  }
}

} // namespace

void launchEpilogue(DType type, const EpilogueArgs &p, CUstream_st *stream) {
  if (p.groups <= 0 || p.rows <= 0 || p.n <= 0)
    return;
  if (p.localExperts <= 0 || p.groups % p.localExperts != 0)
    throw Error("GEMM epilogue: " + std::to_string(p.groups) +
                " groups do not split over " + std::to_string(p.localExperts) +
                " local experts");
  unsigned blocks = static_cast<unsigned>(std::min<int64_t>(p.rows, 1 << 20));
  switch (type) {
  case DType::F32:
    epilogueKernel<float><<<blocks, 256, 0, stream>>>(p);
    break;
  case DType::BF16:
    epilogueKernel<__nv_bfloat16><<<blocks, 256, 0, stream>>>(p);
    break;
  case DType::F16:
    epilogueKernel<__half><<<blocks, 256, 0, stream>>>(p);
    break;
  case DType::I32:
    throw Error("GEMM epilogue: no kernel for i32");
  }
  checkLaunch("the GEMM epilogue kernel");
}

void launchGroupedGemm(DType type, const GroupedGemmArgs &p,
                       CUstream_st *stream) {
  if (p.groups <= 0 || p.rows <= 0 || p.n <= 0)
    return; // no row and no column to write
  if (p.localExperts <= 0 || p.groups % p.localExperts != 0)
    throw Error("grouped GEMM: " + std::to_string(p.groups) +
                " groups do not split over " + std::to_string(p.localExperts) +
                " local experts");
  int64_t rowTiles = ceilDiv(p.rows, kTileM);
  int64_t colTiles = ceilDiv(p.n, kTileN);
  if (rowTiles > INT_MAX || colTiles > 65535)
    throw Error("grouped GEMM too large for one launch: " +
                std::to_string(p.rows) + " rows, n = " + std::to_string(p.n));
  dim3 grid(static_cast<unsigned>(rowTiles), static_cast<unsigned>(colTiles));
  switch (type) {
  case DType::F32:
    return gemmFor<float>(p, grid, stream);
  case DType::BF16:
    return gemmFor<__nv_bfloat16>(p, grid, stream);
  case DType::F16:
    return gemmFor<__half>(p, grid, stream);
  case DType::I32:
    break;
  }
  throw Error("grouped GEMM: no kernel for element type " +
              std::string(dtypeName(type)));
}

void launchGroupedWgrad(DType type, const GroupedWgradArgs &p,
                        CUstream_st *stream) {
  if (p.m <= 0 || p.n <= 0 || p.localExperts <= 0)
    return; // nothing to write
  if (p.groups < 0 || (p.groups % p.localExperts) != 0)
    throw Error("grouped weight gradient: " + std::to_string(p.groups) +
                " groups do not split over " + std::to_string(p.localExperts) +
                " local experts");
  int64_t mTiles = ceilDiv(p.m, kTileM);
  int64_t nTiles = ceilDiv(p.n, kTileN);
  if (mTiles * nTiles > INT_MAX || p.localExperts > 65535)
    throw Error("grouped weight gradient too large for one launch: m = " +
                std::to_string(p.m) + ", n = " + std::to_string(p.n) + ", " +
                std::to_string(p.localExperts) + " local experts");
  dim3 grid(static_cast<unsigned>(mTiles * nTiles),
            static_cast<unsigned>(p.localExperts));
  int tiles = static_cast<int>(nTiles);
  switch (type) {
  case DType::F32:
    return wgradFor<float>(p, grid, tiles, stream);
  case DType::BF16:
    return wgradFor<__nv_bfloat16>(p, grid, tiles, stream);
  case DType::F16:
    return wgradFor<__half>(p, grid, tiles, stream);
  case DType::I32:
    break;
  }
  throw Error("grouped weight gradient: no kernel for element type " +
              std::string(dtypeName(type)));
}

} // namespace fmoe::runtime::cuda
