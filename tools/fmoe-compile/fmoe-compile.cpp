//===- fmoe-compile.cpp - MLIR layer to compiled module -------------------===//
//
// Part of fmoe. Runs the --lower-moe pipeline on a file of fmoe layers and
// writes the compiled module (.fmoe) that the runtime loads.
//
//===----------------------------------------------------------------------===//

#include "fmoe/InitAll.h"
#include "fmoe/Target/ModuleWriter.h"
#include "fmoe/Transforms/Passes.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;
namespace cl = llvm::cl;

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  static cl::opt<std::string> input(cl::Positional, cl::desc("<input.mlir>"),
                                    cl::init("-"));
  static cl::opt<std::string> output("o", cl::desc("output file (.fmoe)"),
                                     cl::value_desc("file"), cl::init("-"));
  static cl::opt<int64_t> worldSize(
      "world-size", cl::desc("ranks (0: each layer's own world_size)"),
      cl::init(0));
  static cl::opt<std::string> strategy(
      "strategy", cl::desc("placement: contiguous | round-robin | balanced"),
      cl::init("contiguous"));
  static cl::opt<std::string> loadProfile(
      "load-profile", cl::desc("per-expert load file for strategy=balanced"),
      cl::init(""));
  static cl::opt<std::string> shadow(
      "shadow", cl::desc("experts to replicate on every rank, e.g. 3,7"),
      cl::init(""));
  static cl::opt<int64_t> shadowHot(
      "shadow-hot",
      cl::desc("replicate the N most loaded experts of --load-profile"),
      cl::init(0));
  static cl::opt<std::string> chip("chip", cl::desc("target GPU"),
                                   cl::init("sm_90"));
  static cl::opt<std::string> toolkit(
      "cuda-toolkit", cl::desc("CUDA toolkit holding libdevice"), cl::init(""));
  static cl::opt<bool> noGatherCombine(
      "no-gather-combine",
      cl::desc("keep gather and combine out of the expert GEMMs"),
      cl::init(false));
  static cl::opt<bool> keepSaved(
      "keep-saved",
      cl::desc("never write over the backward's saved inputs (a graph can "
               "then be back-propagated more than once)"),
      cl::init(false));
  static cl::opt<bool> noFusedEpilogues(
      "no-fused-epilogues",
      cl::desc("keep bias and activation out of the grouped GEMMs (row "
               "kernels instead)"),
      cl::init(false));
  static cl::opt<bool> keepActivations(
      "keep-activations",
      cl::desc("keep bf16 GeLU experts' activations for the backward, whose "
               "da GEMM then applies gelu'(h) in its epilogue (one more "
               "[rows, d_hidden] buffer held until the backward ends)"),
      cl::init(false));
  static cl::opt<bool> emitMlir(
      "emit-mlir", cl::desc("print the lowered IR instead of the module"),
      cl::init(false));
  cl::ParseCommandLineOptions(
      argc, argv, "fmoe-compile: fmoe layers (MLIR) to a compiled module\n");

  DialectRegistry registry;
  mlir::fmoe::registerAllDialects(registry);
  MLIRContext context(registry);
  std::string error;
  auto file = openInputFile(input, &error);
  if (!file) {
    llvm::errs() << "fmoe-compile: " << error << "\n";
    return 1;
  }
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module)
    return 1;

  mlir::fmoe::LowerMoeOptions options;
  options.worldSize = worldSize;
  options.strategy = strategy;
  options.loadProfile = loadProfile;
  options.shadow = shadow;
  options.shadowHot = shadowHot;
  options.chip = chip;
  options.toolkit = toolkit;
  options.gatherCombine = !noGatherCombine;
  options.keepSaved = keepSaved;
  options.fusedEpilogues = !noFusedEpilogues;
  options.keepActivations = keepActivations;
  PassManager pm(&context);
  mlir::fmoe::buildLowerMoePipeline(pm, options);
  if (failed(pm.run(*module)))
    return 1;

  auto out = openOutputFile(output, &error);
  if (!out) {
    llvm::errs() << "fmoe-compile: " << error << "\n";
    return 1;
  }
  if (emitMlir)
    module->print(out->os());
  else if (failed(mlir::fmoe::writeCompiledModule(*module, out->os())))
    return 1;
  out->keep();
  return 0;
}
