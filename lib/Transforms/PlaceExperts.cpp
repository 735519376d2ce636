//===- PlaceExperts.cpp - compile-time expert placement -------------------===//
//
// Part of fmoe. The strategies themselves live in fmoe/Support/Placement.h
// (plain C++, unit-tested); this pass applies one to the IR. It is the only
// file that builds `shard` ops.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Support/Placement.h"
#include "fmoe/Transforms/Passes.h"
#include "llvm/Support/MemoryBuffer.h"

namespace mlir::fmoe {
#define GEN_PASS_DEF_FMOEPLACEEXPERTS
#include "fmoe/Transforms/Passes.h.inc"
} // namespace mlir::fmoe

using namespace mlir;
using namespace mlir::fmoe;

namespace {

struct FMoEPlaceExpertsPass
    : public mlir::fmoe::impl::FMoEPlaceExpertsBase<FMoEPlaceExpertsPass> {
  using Base::Base;

  /// The module-level grid of `world` ranks, created on first use.
  FlatSymbolRefAttr getGrid(int64_t world) {
    ModuleOp module = getOperation();
    std::string name = "fmoe_grid_" + std::to_string(world);
    if (!module.lookupSymbol(name)) {
      OpBuilder b = OpBuilder::atBlockBegin(module.getBody());
      shard::GridOp::create(b, module.getLoc(), name, ArrayRef<int64_t>{world});
    }
    return FlatSymbolRefAttr::get(&getContext(), name);
  }

  LogicalResult place(DispatchOp dispatch) {
    int64_t layerWorld = 1;
    if (auto w = dispatch->getAttrOfType<IntegerAttr>("fmoe.world_size"))
      layerWorld = w.getInt();
    if (worldSize > 0 && layerWorld > 1 && worldSize != layerWorld)
      return dispatch.emitError("layer has world_size ")
             << layerWorld << " but the pass was asked for world-size="
             << static_cast<int64_t>(worldSize);
    int64_t world = worldSize > 0 ? worldSize : layerWorld;
    int64_t e = dispatch.getNumExperts();
    auto layerPlacement =
        dispatch->getAttrOfType<DenseI64ArrayAttr>("fmoe.placement");
    dispatch->removeAttr("fmoe.world_size");
    dispatch->removeAttr("fmoe.placement");
    if (world == 1)
      return success();

    std::vector<int64_t> rankOf;
    if (layerPlacement) {
      rankOf.assign(layerPlacement.asArrayRef().begin(),
                    layerPlacement.asArrayRef().end());
    } else {
      auto kind = ::fmoe::parsePlacementStrategy(strategy);
      if (!kind)
        return dispatch.emitError("unknown placement strategy '")
               << strategy
               << "' (expected contiguous, round-robin or balanced)";
      std::vector<double> load;
      std::string error;
      if (*kind == ::fmoe::PlacementStrategy::Balanced) {
        if (loadProfile.empty())
          return dispatch.emitError(
              "strategy=balanced needs a load-profile file");
        auto file = llvm::MemoryBuffer::getFile(loadProfile);
        if (!file)
          return dispatch.emitError("cannot read load profile '")
                 << loadProfile << "': " << file.getError().message();
        if (!::fmoe::parseLoadProfile((*file)->getBuffer().str(), e, load,
                                      error))
          return dispatch.emitError(error);
      }
      rankOf = ::fmoe::placeExperts(e, world, *kind, load, error);
      if (rankOf.empty())
        return dispatch.emitError(error);
    }
    auto placement = DenseI64ArrayAttr::get(&getContext(), rankOf);
    dispatch.setExpertOrderAttr(DenseI64ArrayAttr::get(
        &getContext(), ::fmoe::expertGroupOrder(rankOf, world)));

    ExpertOp expert;
    for (Operation *user : dispatch.getOffsets().getUsers())
      if (auto ex = dyn_cast<ExpertOp>(user))
        expert = ex;
    if (!expert)
      return dispatch.emitError("expects the dispatch offsets to feed an "
                                "fmoe.expert to distribute");
    if (expert.getFc1Weight().getType().getDimSize(0) * world != e)
      return expert.emitError("expects the expert weights to hold ")
             << e / world << " experts per rank for " << world << " ranks";

    FlatSymbolRefAttr grid = getGrid(world);
    OpBuilder b(expert);
    Location loc = expert.getLoc();
    auto rowsType = cast<RankedTensorType>(expert.getRows().getType());
    auto recvType =
        RankedTensorType::get({ShapedType::kDynamic, rowsType.getDimSize(1)},
                              rowsType.getElementType());
    auto to = AllToAllOp::create(
        b, loc, recvType, expert.getOffsets().getType(), expert.getRows(),
        expert.getOffsets(), grid, placement, UnitAttr());
    expert.getRowsMutable().assign(to.getOutput());
    expert.getOffsetsMutable().assign(to.getOutOffsets());
    // h and y now have the received row count.
    auto yType = cast<RankedTensorType>(expert.getY().getType());
    auto hType = cast<RankedTensorType>(expert.getH().getType());
    expert.getY().setType(RankedTensorType::get(
        {ShapedType::kDynamic, yType.getDimSize(1)}, yType.getElementType()));
    expert.getH().setType(RankedTensorType::get(
        {ShapedType::kDynamic, hType.getDimSize(1)}, hType.getElementType()));
    b.setInsertionPointAfter(expert);
    auto back = AllToAllOp::create(b, loc, yType, expert.getOffsets().getType(),
                                   expert.getY(), to.getOutOffsets(), grid,
                                   placement, b.getUnitAttr());
    expert.getY().replaceAllUsesExcept(back.getOutput(), back);
    return success();
  }

  void runOnOperation() override {
    SmallVector<DispatchOp> dispatches;
    getOperation().walk([&](DispatchOp op) { dispatches.push_back(op); });
    for (DispatchOp op : dispatches)
      if (failed(place(op)))
        return signalPassFailure();
  }
};

} // namespace
