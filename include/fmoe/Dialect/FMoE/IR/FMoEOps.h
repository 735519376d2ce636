//===- FMoEOps.h - fmoe operations ------------------------------*- C++ -*-===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_DIALECT_FMOE_IR_FMOEOPS_H
#define FMOE_DIALECT_FMOE_IR_FMOEOPS_H

#include "fmoe/Dialect/FMoE/IR/FMoEDialect.h"
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#define GET_OP_CLASSES
#include "fmoe/Dialect/FMoE/IR/FMoEOps.h.inc"

#endif // FMOE_DIALECT_FMOE_IR_FMOEOPS_H
