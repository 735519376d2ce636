//===- FMoEDialect.h - the fmoe dialect -------------------------*- C++ -*-===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_DIALECT_FMOE_IR_FMOEDIALECT_H
#define FMOE_DIALECT_FMOE_IR_FMOEDIALECT_H

#include "mlir/IR/Dialect.h"
#include "mlir/IR/DialectImplementation.h"

#include "fmoe/Dialect/FMoE/IR/FMoEOpsDialect.h.inc"

#include "fmoe/Dialect/FMoE/IR/FMoEEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "fmoe/Dialect/FMoE/IR/FMoEAttrs.h.inc"

namespace mlir::fmoe {
/// True for the gated-linear-unit activations, which need an up projection.
inline bool isGLU(Activation act) {
  return act == Activation::swiglu || act == Activation::geglu;
}

/// Whether an expert MLP's GEMMs can take its biases in their epilogues:
/// the runtime's fused grouped GEMMs take bf16 rows whose widths are
/// multiples of 8 elements (16-byte rows), and both biases (GLU forms: fc1's
/// goes with the gate half's GEMM; the up half has none).
/// --fmoe-lower-to-runtime fuses the biases then (with --fused-epilogues).
inline bool expertEpiloguesFusable(Type elt, bool fc1Bias, bool fc2Bias,
                                   int64_t hidden, int64_t d) {
  return elt.isBF16() && fc1Bias && fc2Bias && hidden % 8 == 0 && d % 8 == 0;
}

/// d_model from which GeLU itself also goes into the expert GEMMs'
/// epilogues (bf16, non-GLU, both biases): fc1's GEMM stores h and gelu(h)
/// (BiasAct), and the backward's da GEMM stores dh = da * gelu'(h) and
/// gelu(h) (DAct), instead of a pass over h after each. The epilogue's cost
/// is per output element while the GEMM's is per element and K = d_model:
/// on the H200 (bench/NOTES.md, run 39) the fused forward was 0.15 ms
/// faster on mixtral's fc1 (K 4096), 0.05 on fine-grained's (K 2048) and
/// 0.01 ms slower on classic's (K 1024).
inline constexpr int64_t kActivationEpilogueMinDModel = 2048;

/// Whether --fmoe-lower-to-runtime (with --fused-epilogues) puts GeLU in
/// the expert GEMMs' epilogues, forward and backward.
inline bool activationInEpilogues(Type elt, Activation act, bool fc1Bias,
                                  bool fc2Bias, int64_t hidden, int64_t d) {
  return act == Activation::gelu && d >= kActivationEpilogueMinDModel &&
         expertEpiloguesFusable(elt, fc1Bias, fc2Bias, hidden, d);
}

/// Whether the forward keeps an expert MLP's activations act(h) for the
/// backward (--fmoe-generate-backward): where the backward's first GEMM
/// (da = dy W2) can apply GeLU's derivative in its epilogue (dh = da *
/// gelu'(h), written over h), which leaves act(h) for the fc2 weight
/// gradient to be kept rather than computed again in a pass over h.
inline bool keepsActivations(Type elt, Activation act, bool fc1Bias,
                             bool fc2Bias, int64_t hidden, int64_t d) {
  return act == Activation::gelu &&
         expertEpiloguesFusable(elt, fc1Bias, fc2Bias, hidden, d);
}
} // namespace mlir::fmoe

#endif // FMOE_DIALECT_FMOE_IR_FMOEDIALECT_H
