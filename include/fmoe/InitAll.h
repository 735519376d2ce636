//===- InitAll.h - everything fmoe's tools register -------------*- C++ -*-===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_INITALL_H
#define FMOE_INITALL_H

#include "mlir/IR/DialectRegistry.h"

namespace mlir::fmoe {
/// The dialects fmoe's pipeline reads and produces, with the interfaces and
/// translations that the NVVM path needs.
void registerAllDialects(DialectRegistry &registry);
} // namespace mlir::fmoe

#endif // FMOE_INITALL_H
