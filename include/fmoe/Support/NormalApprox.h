//===- NormalApprox.h - the GPU's form of the normal CDF --------*- C++ -*-===//
//
// Part of fmoe. Plain C++ (no MLIR, no CUDA): the constants of the form of
// GeLU that every GPU kernel of fmoe computes, the generated row kernels
// (lib/Conversion/KernelBuilder.h) and the CUDA runtime's epilogues
// (lib/Runtime/CUDA) alike, so that they agree.
//
// GeLU is x Phi(x) and its derivative Phi(x) + x phi(x), with Phi the
// standard normal CDF and phi its density. For a = |x|:
//
//   Phi(-a) = t P(t) exp(-a^2 / 2),   t = 1 / (1 + kNormalTailScale a),
//   Phi(a)  = 1 - Phi(-a),            phi(a) = exp(-a^2 / 2) / sqrt(2 pi),
//
// where P (coefficients kNormalTailPoly, lowest degree first) was fitted
// for fmoe by iteratively reweighted least squares to the relative error
// of Phi(-a) over a in [0, 14]: under 1e-7 in exact arithmetic. That takes
// one exponential and one reciprocal (both approximate instructions on the
// GPU) and eight FMAs, where erf's form 0.5 x (1 + erf(x / sqrt 2)) takes
// about three times the instructions and loses every digit of Phi(x) for
// large negative x. In f32 with the GPU's approximate exp2 and reciprocal,
// GeLU comes out within 8e-6 relative and its derivative within 3e-7
// absolute of the exact values over [-14, 14].
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_SUPPORT_NORMALAPPROX_H
#define FMOE_SUPPORT_NORMALAPPROX_H

namespace fmoe {

inline constexpr double kNormalTailScale = 0.305;
inline constexpr int kNormalTailPolyTerms = 8;
inline constexpr double kNormalTailPoly[kNormalTailPolyTerms] = {
    0.1216397109841842,   0.1224671984947249,   0.10341822567918503,
    0.12103111977384372,  -0.03799585852297593, 0.18573870986432386,
    -0.15300155801828738, 0.03670249925800475};
/// 1 / sqrt(2 pi): phi(x) = kInvSqrt2Pi exp(-x^2 / 2).
inline constexpr double kInvSqrt2Pi = 0.3989422804014327;
/// -log2(e) / 2: exp(-x^2 / 2) = exp2(kHalfSquareToExp2 x^2).
inline constexpr double kHalfSquareToExp2 = -0.7213475204444817;

} // namespace fmoe

#endif // FMOE_SUPPORT_NORMALAPPROX_H
