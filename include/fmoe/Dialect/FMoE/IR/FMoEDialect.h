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
} // namespace mlir::fmoe

#endif // FMOE_DIALECT_FMOE_IR_FMOEDIALECT_H
