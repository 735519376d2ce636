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
    if (world == 1) {
      if (!shadow.empty() || shadowHot > 0)
        return dispatch.emitError(
            "shadowing replicates experts over ranks: this layer runs on one");
      return success();
    }

    std::vector<double> load;
    auto kind = ::fmoe::parsePlacementStrategy(strategy);
    if (!layerPlacement && !kind)
      return dispatch.emitError("unknown placement strategy '")
             << strategy << "' (expected contiguous, round-robin or balanced)";
    bool balanced =
        !layerPlacement && *kind == ::fmoe::PlacementStrategy::Balanced;
    if (balanced || shadowHot > 0) {
      if (loadProfile.empty())
        return dispatch.emitError(balanced ? "strategy=balanced" : "shadow-hot")
               << " needs a load-profile file";
      auto file = llvm::MemoryBuffer::getFile(loadProfile);
      if (!file)
        return dispatch.emitError("cannot read load profile '")
               << loadProfile << "': " << file.getError().message();
      std::string error;
      if (!::fmoe::parseLoadProfile((*file)->getBuffer().str(), e, load, error))
        return dispatch.emitError(error);
    }

    std::vector<int64_t> shadowed;
    std::string error;
    if (!shadow.empty() && shadowHot > 0)
      return dispatch.emitError("give either shadow or shadow-hot, not both");
    if (!shadow.empty() && !::fmoe::parseExpertList(shadow, e, shadowed, error))
      return dispatch.emitError(error);
    if (shadowHot > 0) {
      shadowed = ::fmoe::hottestExperts(load, shadowHot, error);
      if (shadowed.empty())
        return dispatch.emitError(error);
    }

    std::vector<int64_t> rankOf;
    if (layerPlacement) {
      rankOf.assign(layerPlacement.asArrayRef().begin(),
                    layerPlacement.asArrayRef().end());
    } else {
      // A shadowed expert's rows stay where they were routed: no rank
      // receives them.
      for (int64_t x : shadowed)
        if (balanced)
          load[x] = 0;
      rankOf = ::fmoe::placeExperts(e, world, *kind, load, error);
      if (rankOf.empty())
        return dispatch.emitError(error);
    }
    auto placement = DenseI64ArrayAttr::get(&getContext(), rankOf);
    DenseI64ArrayAttr shadowAttr =
        shadowed.empty() ? DenseI64ArrayAttr()
                         : DenseI64ArrayAttr::get(&getContext(), shadowed);
    dispatch.setExpertOrderAttr(DenseI64ArrayAttr::get(
        &getContext(), ::fmoe::expertGroupOrder(rankOf, world, shadowed)));

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
    // Every expert parameter gets the shadowed experts' copies.
    if (shadowAttr)
      for (OpOperand &param : expert->getOpOperands()) {
        if (param.getOperandNumber() < 2 || !param.get())
          continue; // rows, offsets
        auto t = cast<RankedTensorType>(param.get().getType());
        SmallVector<int64_t> shape(t.getShape());
        shape[0] += static_cast<int64_t>(shadowed.size());
        param.set(ReplicateOp::create(
            b, loc, RankedTensorType::get(shape, t.getElementType()),
            param.get(), grid, placement, shadowAttr));
      }
    auto rowsType = cast<RankedTensorType>(expert.getRows().getType());
    auto recvType =
        RankedTensorType::get({ShapedType::kDynamic, rowsType.getDimSize(1)},
                              rowsType.getElementType());
    // Expert side: L + S local experts, one group per source rank each.
    auto recvOffsetsType = RankedTensorType::get(
        {e + static_cast<int64_t>(shadowed.size()) * world + 1},
        b.getI32Type());
    auto to = AllToAllOp::create(b, loc, recvType, recvOffsetsType,
                                 expert.getRows(), expert.getOffsets(), grid,
                                 placement, UnitAttr(), shadowAttr);
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
    auto back = AllToAllOp::create(
        b, loc, yType, dispatch.getOffsets().getType(), expert.getY(),
        to.getOutOffsets(), grid, placement, b.getUnitAttr(), shadowAttr);
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
