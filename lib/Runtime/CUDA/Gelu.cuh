//===- Gelu.cuh - GeLU and its derivative on the GPU -----------*- CUDA -*-===//
//
// Part of fmoe. Private to lib/Runtime/CUDA: GeLU (erf's definition,
// torch's approximate="none") in the form every fmoe GPU kernel computes,
// the generated row kernels included (constants and accuracy:
// fmoe/Support/NormalApprox.h).
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_LIB_RUNTIME_CUDA_GELU_CUH
#define FMOE_LIB_RUNTIME_CUDA_GELU_CUH

#include "fmoe/Support/NormalApprox.h"

namespace fmoe::runtime::cuda {

/// P(t) by Horner's rule from the term of degree I up (the coefficients
/// are constants here, which device code may read).
template <int I>
__host__ __device__ __forceinline__ float normalTailPoly(float t) {
  constexpr float c = float(kNormalTailPoly[I]);
  if constexpr (I == kNormalTailPolyTerms - 1)
    return c;
  else
    return fmaf(normalTailPoly<I + 1>(t), t, c);
}

/// Phi(x) and phi(x): one exp2 and one reciprocal, both approximate on the
/// device. (Host and device, as CUTLASS's epilogue functors are.)
__host__ __device__ __forceinline__ void normalCdfPdf(float x, float &cdf,
                                                      float &pdf) {
  float s = fmaf(fabsf(x), float(kNormalTailScale), 1.0f);
#ifdef __CUDA_ARCH__
  float t = __fdividef(1.0f, s);
#else
  float t = 1.0f / s;
#endif
  float e = exp2f(x * float(kHalfSquareToExp2) * x);
  float tail = normalTailPoly<0>(t) * t * e;
  cdf = x < 0.0f ? tail : 1.0f - tail;
  pdf = e * float(kInvSqrt2Pi);
}

__host__ __device__ __forceinline__ float gelu(float x) {
  float cdf, pdf;
  normalCdfPdf(x, cdf, pdf);
  return x * cdf;
}

/// gelu'(x) = Phi(x) + x phi(x).
__host__ __device__ __forceinline__ float geluGrad(float x) {
  float cdf, pdf;
  normalCdfPdf(x, cdf, pdf);
  return fmaf(x, pdf, cdf);
}

} // namespace fmoe::runtime::cuda

#endif // FMOE_LIB_RUNTIME_CUDA_GELU_CUH
