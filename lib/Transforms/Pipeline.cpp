//===- Pipeline.cpp - the --lower-moe pipeline ----------------------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Transforms/Passes.h"
#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void mlir::fmoe::buildLowerMoePipeline(OpPassManager &pm,
                                       const LowerMoeOptions &options) {
  pm.addPass(createFMoEDecompose());
  pm.addPass(createFMoEPlaceExperts(FMoEPlaceExpertsOptions{
      options.worldSize, options.strategy, options.loadProfile, options.shadow,
      options.shadowHot}));
  // The kept activations serve the backward's fused dGeLU epilogue.
  pm.addPass(createFMoEGenerateBackward(FMoEGenerateBackwardOptions{
      options.keepActivations && options.fusedEpilogues}));
  pm.addPass(createFMoEFuse(FMoEFuseOptions{options.gatherCombine}));
  pm.addPass(createFMoELowerToRuntime(FMoELowerToRuntimeOptions{
      options.chip, options.keepSaved, options.fusedEpilogues}));
  // Kernels: NVVM, then PTX text (format=isa needs no ptxas).
  GpuNVVMAttachTargetOptions target;
  target.chip = options.chip;
  target.features = "+ptx80";
  target.optLevel = 3;
  pm.addPass(createGpuNVVMAttachTarget(target));
  pm.addPass(createSCFToControlFlowPass());
  pm.addNestedPass<gpu::GPUModuleOp>(createConvertGpuOpsToNVVMOps());
  pm.addPass(createReconcileUnrealizedCastsPass());
  GpuModuleToBinaryPassOptions binary;
  binary.compilationTarget = "isa";
  binary.toolkitPath = options.toolkit;
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

void mlir::fmoe::registerAllPasses() {
  registerFMoEPasses();
  PassPipelineRegistration<LowerMoeOptions>(
      "lower-moe",
      "the whole fmoe pipeline: decompose, place experts, generate the "
      "backward, fuse, lower to kernels (PTX) and runtime calls",
      buildLowerMoePipeline);
}
