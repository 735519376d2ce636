//===- FMoEDialect.cpp - the fmoe dialect ---------------------------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Dialect/FMoE/IR/FMoEDialect.h"
#include "fmoe/Dialect/FMoE/IR/FMoEOps.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::fmoe;

#include "fmoe/Dialect/FMoE/IR/FMoEOpsDialect.cpp.inc"

#include "fmoe/Dialect/FMoE/IR/FMoEEnums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "fmoe/Dialect/FMoE/IR/FMoEAttrs.cpp.inc"

void FMoEDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "fmoe/Dialect/FMoE/IR/FMoEOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "fmoe/Dialect/FMoE/IR/FMoEAttrs.cpp.inc"
      >();
}
