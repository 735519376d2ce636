//===- NormalApproxTest.cpp - the GPU's form of GeLU, checked on the host -===//
//
// Part of fmoe. The form of Phi/phi in fmoe/Support/NormalApprox.h (what
// every GPU kernel's GeLU computes) against the exact values from std::erfc.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Support/NormalApprox.h"

#include <gtest/gtest.h>

#include <cmath>

namespace {

/// Phi(-a) for a >= 0, in T arithmetic.
template <typename T> T tail(T a) {
  T t = T(1) / (T(1) + T(fmoe::kNormalTailScale) * a);
  T poly = T(fmoe::kNormalTailPoly[fmoe::kNormalTailPolyTerms - 1]);
  for (int i = fmoe::kNormalTailPolyTerms - 2; i >= 0; --i)
    poly = poly * t + T(fmoe::kNormalTailPoly[i]);
  return poly * t * std::exp2(T(fmoe::kHalfSquareToExp2) * a * a);
}

double exactTail(double a) { return 0.5 * std::erfc(a * M_SQRT1_2); }

TEST(NormalApprox, TailIsWithin1e7RelativeInExactArithmetic) {
  double worst = 0;
  for (int i = 0; i <= 140000; ++i) {
    double a = i * 1e-4;
    worst = std::max(worst, std::abs(tail(a) / exactTail(a) - 1));
  }
  EXPECT_LT(worst, 1.2e-7);
}

TEST(NormalApprox, GeluAndItsDerivativeInFloat) {
  double worstRel = 0, worstGradAbs = 0;
  for (int i = -1400000; i <= 1400000; ++i) {
    float x = float(i * 1e-5);
    float q = tail(std::fabs(x));
    float cdf = x < 0 ? q : 1 - q;
    float pdf = std::exp2(float(fmoe::kHalfSquareToExp2) * x * x) *
                float(fmoe::kInvSqrt2Pi);
    double xd = x, exactCdf = exactTail(-xd);
    double gelu = xd * exactCdf;
    double grad =
        exactCdf + xd * std::exp(-0.5 * xd * xd) / std::sqrt(2 * M_PI);
    // (Relative where the exact value is a normal f32 with margin: below
    // that, f32 itself keeps fewer digits.)
    if (std::abs(gelu) > 1e-30)
      worstRel = std::max(worstRel, std::abs((x * cdf - gelu) / gelu));
    worstGradAbs =
        std::max(worstGradAbs, std::abs(std::fma(x, pdf, cdf) - grad));
  }
  // On the GPU exp2 and the reciprocal are approximate instructions (a few
  // ulp more); the kernels' tolerance against torch is far looser.
  EXPECT_LT(worstRel, 1e-5);
  EXPECT_LT(worstGradAbs, 5e-7);
}

TEST(NormalApprox, EndsOfTheRange) {
  EXPECT_NEAR(tail(0.0), 0.5, 1e-7);
  EXPECT_EQ(tail(100.0f), 0.0f); // exp2 underflows: GeLU(-100) = -0
}

} // namespace
