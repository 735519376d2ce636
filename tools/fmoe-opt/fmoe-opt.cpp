//===- fmoe-opt.cpp - the fmoe optimizer driver ---------------------------===//
//
// Part of fmoe. An mlir-opt-style driver: parse, verify, run passes, print.
//
//===----------------------------------------------------------------------===//

#include "fmoe/InitAll.h"
#include "fmoe/Transforms/Passes.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::fmoe::registerAllDialects(registry);
  mlir::fmoe::registerAllPasses();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "fmoe optimizer driver\n", registry));
}
