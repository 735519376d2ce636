//===- Passes.h - fmoe passes -----------------------------------*- C++ -*-===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_TRANSFORMS_PASSES_H
#define FMOE_TRANSFORMS_PASSES_H

#include "fmoe/Dialect/FMoE/IR/FMoEOps.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Shard/IR/ShardDialect.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::fmoe {

#define GEN_PASS_DECL
#include "fmoe/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "fmoe/Transforms/Passes.h.inc"

/// Options of the whole pipeline (`--lower-moe`).
struct LowerMoeOptions : public PassPipelineOptions<LowerMoeOptions> {
  PassOptions::Option<int64_t> worldSize{
      *this, "world-size", llvm::cl::desc("ranks (0: each layer's own)"),
      llvm::cl::init(0)};
  PassOptions::Option<std::string> strategy{
      *this, "strategy",
      llvm::cl::desc("placement: contiguous | round-robin | balanced"),
      llvm::cl::init("contiguous")};
  PassOptions::Option<std::string> loadProfile{
      *this, "load-profile",
      llvm::cl::desc("per-expert load file for strategy=balanced"),
      llvm::cl::init("")};
  PassOptions::Option<std::string> shadow{
      *this, "shadow",
      llvm::cl::desc("experts to replicate on every rank, comma separated"),
      llvm::cl::init("")};
  PassOptions::Option<int64_t> shadowHot{
      *this, "shadow-hot",
      llvm::cl::desc("replicate the N most loaded experts of load-profile"),
      llvm::cl::init(0)};
  PassOptions::Option<bool> gatherCombine{
      *this, "gather-combine",
      llvm::cl::desc("fuse gather and combine into the expert GEMMs"),
      llvm::cl::init(true)};
  PassOptions::Option<std::string> chip{
      *this, "chip", llvm::cl::desc("target GPU"), llvm::cl::init("sm_90")};
  PassOptions::Option<bool> keepSaved{
      *this, "keep-saved",
      llvm::cl::desc("never write over the backward's saved inputs"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> fusedEpilogues{
      *this, "fused-epilogues",
      llvm::cl::desc("bias and activation in the grouped GEMMs' epilogues"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> keepActivations{
      *this, "keep-activations",
      llvm::cl::desc("keep bf16 GeLU experts' activations for the backward "
                     "(its da GEMM fuses gelu'(h); more memory)"),
      llvm::cl::init(false)};
  PassOptions::Option<std::string> toolkit{
      *this, "cuda-toolkit",
      llvm::cl::desc("CUDA toolkit with libdevice (empty: MLIR's default)"),
      llvm::cl::init("")};
};

/// decompose → place-experts → generate-backward → fuse → lower-to-runtime →
/// NVVM → PTX (gpu-module-to-binary format=isa).
void buildLowerMoePipeline(OpPassManager &pm, const LowerMoeOptions &options);

/// Registers every fmoe pass and the `lower-moe` pipeline.
void registerAllPasses();

} // namespace mlir::fmoe

#endif // FMOE_TRANSFORMS_PASSES_H
