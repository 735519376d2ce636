//===- GroupedGemm.h - grouped GEMM kernels of the CUDA backend -*- C++ -*-===//
//
// Part of fmoe. Private to lib/Runtime/CUDA: host launchers for the kernels
// in GroupedGemm.cu, callable from plain C++ (no CUDA headers needed here).
//
// The kernels read the group sizes on the device from `offsets` (int32, G+1
// entries; rows of group g are [offsets[g], offsets[g+1])), so the host never
// waits for the routing to finish. Local expert l owns the groups
// [l*S, (l+1)*S), S = G / localExperts (docs/module-format.md).
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_LIB_RUNTIME_CUDA_GROUPEDGEMM_H
#define FMOE_LIB_RUNTIME_CUDA_GROUPEDGEMM_H

#include "fmoe/Runtime/Runtime.h"

#include <cstdint>

// Both CUstream and cudaStream_t are `CUstream_st *`.
struct CUstream_st;

namespace fmoe::runtime::cuda {

/// c[r, cCol + j] (+)= sum_k A[r, k] * W[l(r)] for the rows r of every group,
/// where A[r, k] = a[r * lda + aCol + k], or, with `tokenOf`,
/// a[tokenOf[r] * lda + aCol + k] (a row whose index is negative or
/// >= `aRows` reads as zeros). `nt`: W[l](k, j) = w[l][j][k];
/// otherwise W[l](k, j) = w[l][k][j]. Rows past offsets[G] (or >= `rows`)
/// are neither read nor written. c has a's type, or f32 with `outF32`.
struct GroupedGemmArgs {
  const void *a = nullptr;
  const int32_t *tokenOf = nullptr; ///< optional gather index (rows entries)
  const void *w = nullptr;
  void *c = nullptr;
  const int32_t *offsets = nullptr;
  int64_t rows = 0;  ///< upper bound of the grouped rows (c's rows)
  int64_t aRows = 0; ///< rows of `a` (bounds the gathered indices)
  int64_t n = 0, k = 0;
  int64_t lda = 0, ldc = 0, aCol = 0, cCol = 0;
  int64_t groups = 0, localExperts = 1;
  bool nt = true;
  bool accumulate = false;
  /// c holds f32 whatever the type of a and w (the gate's logits).
  bool outF32 = false;
};

/// dw[l][i][j] = sum over the rows r of local expert l of
/// a[r * lda + aCol + i] * b[r * ldb + j], i < m, j < n; written, not
/// accumulated (an expert without rows gets zeros).
struct GroupedWgradArgs {
  const void *a = nullptr;
  const void *b = nullptr;
  void *dw = nullptr;
  const int32_t *offsets = nullptr;
  int64_t rows = 0; ///< upper bound of the grouped rows (a's and b's rows)
  int64_t m = 0, n = 0;
  int64_t lda = 0, ldb = 0, aCol = 0;
  int64_t groups = 0, localExperts = 1;
};

/// The epilogue of fmoe_rt_grouped_gemm_bias[_act] / _dact[_act] after a
/// plain grouped GEMM into c (where the fused kernels do not apply), for the
/// rows r in [offsets[0], offsets[G]) of local expert l (leading dimension
/// ldc): c[r, j] += x[l][j] (x the bias), or with `dgelu`
/// c[r, j] *= gelu'(x[r, j]) (x = h, leading dimension ldc). With `src`, the
/// GEMM's result is read from src (same layout as c) instead of c: c = src *
/// gelu'(h) may then be written over h (x == c). With `act` (leading
/// dimension ldact), also act[r, j] = gelu of the biased value (bias form)
/// or of h (dgelu form; act may be h itself).
struct EpilogueArgs {
  void *c = nullptr;
  const void *src = nullptr;
  const void *x = nullptr;
  bool dgelu = false;
  void *act = nullptr;
  int64_t ldact = 0;
  const int32_t *offsets = nullptr;
  int64_t rows = 0, n = 0, ldc = 0;
  int64_t groups = 0, localExperts = 1;
};
void launchEpilogue(DType type, const EpilogueArgs &args, CUstream_st *stream);

/// Enqueue the kernels on `stream` (asynchronous). `type` is the storage type
/// of every float operand (F32, BF16 or F16); accumulation is fp32. Throw
/// Error when the launch is refused.
void launchGroupedGemm(DType type, const GroupedGemmArgs &args,
                       CUstream_st *stream);
void launchGroupedWgrad(DType type, const GroupedWgradArgs &args,
                        CUstream_st *stream);

} // namespace fmoe::runtime::cuda

#endif // FMOE_LIB_RUNTIME_CUDA_GROUPEDGEMM_H
