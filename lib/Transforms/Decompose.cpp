//===- Decompose.cpp - fmoe.moe into its stages ---------------------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Transforms/Passes.h"

namespace mlir::fmoe {
#define GEN_PASS_DEF_FMOEDECOMPOSE
#include "fmoe/Transforms/Passes.h.inc"
} // namespace mlir::fmoe

using namespace mlir;
using namespace mlir::fmoe;

namespace {

/// T * k when T is static, dynamic otherwise.
int64_t mulDim(int64_t t, int64_t k) {
  return ShapedType::isDynamic(t) ? ShapedType::kDynamic : t * k;
}

void decompose(MoeOp op) {
  OpBuilder b(op);
  Location loc = op.getLoc();
  auto xType = op.getInput().getType();
  Type elt = xType.getElementType();
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  int64_t t = xType.getDimSize(0), d = op.getDModel(), h = op.getDHidden();
  int64_t e = op.getNumExperts(), k = op.getTopK();
  int64_t rows = mulDim(t, k);
  int64_t hWidth = isGLU(op.getActivation()) ? 2 * h : h;

  Value logits =
      GateOp::create(b, loc, RankedTensorType::get({t, e}, f32), op.getInput(),
                     op.getGateWeight(), op.getGateBias());
  auto route = RouteOp::create(b, loc, RankedTensorType::get({t, k}, i32),
                               RankedTensorType::get({t, k}, f32), logits,
                               op.getTopKAttr(), op.getGateAttr(),
                               op.getRenormalizeAttr());
  auto dispatch = DispatchOp::create(
      b, loc, RankedTensorType::get({e + 1}, i32),
      RankedTensorType::get({t, k}, i32), RankedTensorType::get({rows}, i32),
      route.getIndices(), /*counts=*/Value(), op.getNumExpertsAttr(),
      op.getCapacityFactorAttr(), /*expert_order=*/DenseI64ArrayAttr());
  // Expert parallelism is decided by --fmoe-place-experts; carry what the
  // layer said to it.
  if (op.getWorldSize() > 1)
    dispatch->setAttr("fmoe.world_size", op.getWorldSizeAttr());
  if (auto placement = op.getPlacementAttr())
    dispatch->setAttr("fmoe.placement", placement);
  Value gathered =
      GatherOp::create(b, loc, RankedTensorType::get({rows, d}, elt),
                       op.getInput(), dispatch.getTokenOf());
  auto expert = ExpertOp::create(
      b, loc, RankedTensorType::get({rows, d}, elt),
      RankedTensorType::get({rows, hWidth}, elt),
      /*act=*/Type(), gathered, dispatch.getOffsets(), op.getFc1Weight(),
      op.getFc1Bias(), op.getUpWeight(), op.getFc2Weight(), op.getFc2Bias(),
      op.getActivationAttr());
  Value out = CombineOp::create(b, loc, xType, expert.getY(),
                                dispatch.getSlotPos(), route.getScores());
  op.replaceAllUsesWith(out);
  // The layer's configuration travels to the compiled module's metadata.
  if (auto func = op->getParentOfType<func::FuncOp>()) {
    std::string dtype;
    llvm::raw_string_ostream os(dtype);
    os << elt;
    SmallVector<NamedAttribute> config{
        b.getNamedAttr("num_experts", op.getNumExpertsAttr()),
        b.getNamedAttr("top_k", op.getTopKAttr()),
        b.getNamedAttr("d_model", b.getI64IntegerAttr(d)),
        b.getNamedAttr("d_hidden", b.getI64IntegerAttr(h)),
        b.getNamedAttr("activation", b.getStringAttr(stringifyActivation(
                                         op.getActivation()))),
        b.getNamedAttr("gate",
                       b.getStringAttr(stringifyGateKind(op.getGate()))),
        b.getNamedAttr("renormalize", b.getBoolAttr(op.getRenormalize())),
        b.getNamedAttr("world_size", op.getWorldSizeAttr()),
        b.getNamedAttr("dtype", b.getStringAttr(dtype)),
        b.getNamedAttr("gate_bias", b.getBoolAttr(bool(op.getGateBias()))),
        b.getNamedAttr("fc1_bias", b.getBoolAttr(bool(op.getFc1Bias()))),
        b.getNamedAttr("fc2_bias", b.getBoolAttr(bool(op.getFc2Bias())))};
    if (auto cf = op.getCapacityFactorAttr())
      config.push_back(b.getNamedAttr("capacity_factor", cf));
    func->setAttr("fmoe.layer", b.getDictionaryAttr(config));
    // Name the function's arguments after the layer operands they carry.
    SmallVector<Attribute> names(func.getNumArguments(), b.getStringAttr(""));
    if (auto old = func->getAttrOfType<ArrayAttr>("fmoe.arg_names"))
      for (auto [i, n] : llvm::enumerate(old))
        if (i < names.size())
          names[i] = n;
    auto name = [&](Value v, StringRef what) {
      if (auto arg = dyn_cast_or_null<BlockArgument>(v))
        if (arg.getOwner() == &func.getBody().front())
          names[arg.getArgNumber()] = b.getStringAttr(what);
    };
    name(op.getInput(), "input");
    name(op.getGateWeight(), "gate_weight");
    name(op.getGateBias(), "gate_bias");
    name(op.getFc1Weight(), "fc1_weight");
    name(op.getFc1Bias(), "fc1_bias");
    name(op.getUpWeight(), "up_weight");
    name(op.getFc2Weight(), "fc2_weight");
    name(op.getFc2Bias(), "fc2_bias");
    func->setAttr("fmoe.arg_names", b.getArrayAttr(names));
  }
  op.erase();
}

struct FMoEDecomposePass
    : public mlir::fmoe::impl::FMoEDecomposeBase<FMoEDecomposePass> {
  using Base::Base;
  void runOnOperation() override {
    SmallVector<MoeOp> layers;
    getOperation().walk([&](MoeOp op) { layers.push_back(op); });
    for (MoeOp op : layers)
      decompose(op);
  }
};

} // namespace
