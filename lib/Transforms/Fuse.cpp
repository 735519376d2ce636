//===- Fuse.cpp - fuse fmoe stages ----------------------------------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Transforms/Passes.h"

namespace mlir::fmoe {
#define GEN_PASS_DEF_FMOEFUSE
#include "fmoe/Transforms/Passes.h.inc"
} // namespace mlir::fmoe

using namespace mlir;
using namespace mlir::fmoe;

namespace {

/// gate + route → gate_route; its counts feed the dispatch of its indices.
void fuseGateRoute(RouteOp route) {
  auto gate = route.getLogits().getDefiningOp<GateOp>();
  if (!gate)
    return;
  OpBuilder b(route);
  int64_t e = gate.getLogits().getType().getDimSize(1);
  auto fused = GateRouteOp::create(
      b, route.getLoc(), gate.getLogits().getType(),
      route.getIndices().getType(), route.getScores().getType(),
      RankedTensorType::get({e}, b.getI32Type()), gate.getInput(),
      gate.getWeight(), gate.getBias(), route.getTopKAttr(),
      route.getGateAttr(), route.getRenormalizeAttr());
  gate.getLogits().replaceAllUsesWith(fused.getLogits());
  route.getIndices().replaceAllUsesWith(fused.getIndices());
  route.getScores().replaceAllUsesWith(fused.getScores());
  route.erase();
  gate.erase();
  for (Operation *user : fused.getIndices().getUsers())
    if (auto dispatch = dyn_cast<DispatchOp>(user))
      if (!dispatch.getCounts() && dispatch.getNumExperts() == uint64_t(e))
        dispatch.getCountsMutable().assign(fused.getCounts());
}

/// gather + expert + combine → fused_expert, when the expert stage runs on
/// this rank's own rows (no all-to-all in between).
void fuseExpert(CombineOp combine) {
  auto expert = combine.getY().getDefiningOp<ExpertOp>();
  if (!expert)
    return;
  // Rows that are also saved for the backward are gathered anyway:
  // fusing the gather into the GEMM would gather them twice.
  auto gather = expert.getRows().getDefiningOp<GatherOp>();
  if (!gather || !gather->hasOneUse())
    return;
  OpBuilder b(combine);
  auto fused = FusedExpertOp::create(
      b, combine.getLoc(), combine.getOutput().getType(),
      expert.getH().getType(), expert.getY().getType(),
      expert.getAct() ? expert.getAct().getType() : Type(), gather.getInput(),
      gather.getTokenOf(), expert.getOffsets(), combine.getSlotPos(),
      combine.getScores(), expert.getFc1Weight(), expert.getFc1Bias(),
      expert.getUpWeight(), expert.getFc2Weight(), expert.getFc2Bias(),
      expert.getActivationAttr());
  combine.getOutput().replaceAllUsesWith(fused.getOutput());
  combine.erase();
  expert.getY().replaceAllUsesWith(fused.getY());
  expert.getH().replaceAllUsesWith(fused.getH());
  if (expert.getAct())
    expert.getAct().replaceAllUsesWith(fused.getAct());
  expert.erase();
  if (gather->use_empty())
    gather.erase();
}

struct FMoEFusePass : public mlir::fmoe::impl::FMoEFuseBase<FMoEFusePass> {
  using Base::Base;
  void runOnOperation() override {
    SmallVector<RouteOp> routes;
    getOperation().walk([&](RouteOp op) { routes.push_back(op); });
    for (RouteOp op : routes)
      fuseGateRoute(op);
    if (!gatherCombine)
      return;
    SmallVector<CombineOp> combines;
    getOperation().walk([&](CombineOp op) { combines.push_back(op); });
    for (CombineOp op : combines)
      fuseExpert(op);
  }
};

} // namespace
