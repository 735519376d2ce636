//===- ModuleWriter.h - lowered IR to a compiled module file ----*- C++ -*-===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_TARGET_MODULEWRITER_H
#define FMOE_TARGET_MODULEWRITER_H

#include "fmoe/Support/ModuleFormat.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

namespace mlir::fmoe {

/// Builds the compiled module from IR lowered by `--lower-moe`: one program
/// per layer function, its buffers, its commands and the kernels' PTX.
FailureOr<::fmoe::format::Module> buildCompiledModule(ModuleOp module);

/// Writes the compiled module file (see docs/module-format.md).
LogicalResult writeCompiledModule(ModuleOp module, llvm::raw_ostream &os);

} // namespace mlir::fmoe

#endif // FMOE_TARGET_MODULEWRITER_H
