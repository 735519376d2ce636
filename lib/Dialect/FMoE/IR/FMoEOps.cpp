//===- FMoEOps.cpp - fmoe operations and their verifiers ------------------===//
//
// Part of fmoe. Every cross-operand rule of the dialect is checked here, with
// a diagnostic that names the operand, the expected shape and what it got.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Dialect/FMoE/IR/FMoEOps.h"
#include "mlir/Dialect/Shard/IR/ShardOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringExtras.h"

using namespace mlir;
using namespace mlir::fmoe;

namespace {

/// A dimension that is either a known size or a named symbol (a token-like
/// dimension such as T or R) whose size is bound by the first static use.
struct Dim {
  int64_t size;
  const char *sym;
  /*implicit*/ Dim(int64_t s) : size(s), sym(nullptr) {}
  /*implicit*/ Dim(const char *name) : size(ShapedType::kDynamic), sym(name) {}
};

/// Checks operand and result types against symbolic shapes.
class ShapeChecker {
public:
  explicit ShapeChecker(Operation *op) : op(op) {}

  /// `v` must be a ranked tensor of the given shape and element type (a null
  /// `elt` accepts f32, bf16 and f16).
  LogicalResult check(Value v, StringRef name, ArrayRef<Dim> dims,
                      Type elt = {}) {
    auto t = dyn_cast<RankedTensorType>(v.getType());
    if (!t)
      return op->emitOpError("expects ") << name << " to be a ranked tensor";
    if (elt ? t.getElementType() != elt : !isStorageFloat(t.getElementType())) {
      auto diag = op->emitOpError("expects ")
                  << name << " to have element type ";
      if (elt)
        diag << elt;
      else
        diag << "f32, bf16 or f16";
      return diag << ", got " << t;
    }
    if (t.getRank() != static_cast<int64_t>(dims.size()))
      return mismatch(name, dims, t);
    for (auto [i, d] : llvm::enumerate(dims)) {
      int64_t got = t.getDimSize(i);
      if (!d.sym) {
        if (got != d.size)
          return mismatch(name, dims, t);
        continue;
      }
      if (ShapedType::isDynamic(got))
        continue;
      auto [it, inserted] = bound.try_emplace(d.sym, got);
      if (!inserted && it->second != got)
        return mismatch(name, dims, t);
    }
    return success();
  }

  static bool isStorageFloat(Type t) {
    return t.isF32() || t.isBF16() || t.isF16();
  }

private:
  LogicalResult mismatch(StringRef name, ArrayRef<Dim> dims,
                         RankedTensorType t) {
    SmallVector<std::string> parts;
    for (const Dim &d : dims)
      parts.push_back(d.sym ? std::string(d.sym) : std::to_string(d.size));
    return op->emitOpError("expects ")
           << name << " of shape [" << llvm::join(parts, ", ") << "], got "
           << t;
  }

  Operation *op;
  llvm::StringMap<int64_t> bound;
};

Type f32(Operation *op) { return Float32Type::get(op->getContext()); }
Type i32(Operation *op) { return IntegerType::get(op->getContext(), 32); }

/// The storage element type and static d_model of a `[T, D]` input.
LogicalResult checkInput(Operation *op, Value input, StringRef name, Type &elt,
                         int64_t &dModel) {
  auto t = dyn_cast<RankedTensorType>(input.getType());
  if (!t || t.getRank() != 2)
    return op->emitOpError("expects ")
           << name << " of rank 2 ([tokens, d_model]), got " << input.getType();
  if (!ShapeChecker::isStorageFloat(t.getElementType()))
    return op->emitOpError("expects ")
           << name << " to have element type f32, bf16 or f16, got " << t;
  if (t.isDynamicDim(1))
    return op->emitOpError("expects a static d_model (dimension 1 of ")
           << name << ")";
  elt = t.getElementType();
  dModel = t.getDimSize(1);
  return success();
}

LogicalResult checkTopK(Operation *op, int64_t topK, int64_t numExperts) {
  if (numExperts < 1)
    return op->emitOpError("expects num_experts >= 1, got ") << numExperts;
  if (topK < 1 || topK > numExperts)
    return op->emitOpError("expects 1 <= top_k <= num_experts (")
           << numExperts << "), got " << topK;
  return success();
}

LogicalResult checkGateKind(Operation *op, GateKind kind, bool renormalize) {
  if (renormalize && kind == GateKind::naive)
    return op->emitOpError(
        "expects renormalize only with the softmax_topk or sigmoid gates "
        "(the naive gate's scores already sum to one)");
  return success();
}

LogicalResult checkCapacity(Operation *op, FloatAttr capacity) {
  if (capacity && !(capacity.getValueAsDouble() > 0.0))
    return op->emitOpError("expects capacity_factor > 0, got ")
           << capacity.getValueAsDouble();
  return success();
}

/// Expert weights: fc1 [L, H, D], fc1 bias [L, H], up [L, H, D] (GLU forms
/// only), fc2 [L, D, H], fc2 bias [L, D]. Sets L and H.
LogicalResult checkExpertWeights(Operation *op, ShapeChecker &sc, Type elt,
                                 int64_t dModel, Value fc1, Value fc1Bias,
                                 Value up, Value fc2, Value fc2Bias,
                                 Activation act, int64_t &local,
                                 int64_t &hidden) {
  auto t = dyn_cast<RankedTensorType>(fc1.getType());
  if (!t || t.getRank() != 3 || !t.hasStaticShape())
    return op->emitOpError("expects fc1_weight of static shape "
                           "[experts, d_hidden, d_model], got ")
           << fc1.getType();
  local = t.getDimSize(0);
  hidden = t.getDimSize(1);
  if (local < 1)
    return op->emitOpError("expects at least one expert in fc1_weight");
  if (failed(sc.check(fc1, "fc1_weight", {local, hidden, dModel}, elt)) ||
      failed(sc.check(fc2, "fc2_weight", {local, dModel, hidden}, elt)))
    return failure();
  if (fc1Bias && failed(sc.check(fc1Bias, "fc1_bias", {local, hidden}, elt)))
    return failure();
  if (fc2Bias && failed(sc.check(fc2Bias, "fc2_bias", {local, dModel}, elt)))
    return failure();
  if (isGLU(act) && !up)
    return op->emitOpError("expects an up projection (up_weight) with the ")
           << stringifyActivation(act) << " activation";
  if (!isGLU(act) && up)
    return op->emitOpError("expects no up projection with the ")
           << stringifyActivation(act)
           << " activation (only swiglu and geglu take one)";
  if (up && failed(sc.check(up, "up_weight", {local, hidden, dModel}, elt)))
    return failure();
  return success();
}

/// `offsets` is [G+1] i32 with G a positive multiple of `local`.
LogicalResult checkOffsets(Operation *op, Value offsets, int64_t local,
                           StringRef name = "offsets") {
  auto t = dyn_cast<RankedTensorType>(offsets.getType());
  if (!t || t.getRank() != 1 || t.isDynamicDim(0) ||
      t.getElementType() != i32(op))
    return op->emitOpError("expects ")
           << name << " to be a static 1-D i32 tensor, got "
           << offsets.getType();
  int64_t groups = t.getDimSize(0) - 1;
  if (groups < 1 || groups % local != 0)
    return op->emitOpError("expects ")
           << name << " to hold a multiple of " << local
           << " expert groups plus one, got " << t.getDimSize(0) << " entries";
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// MoeOp
//===----------------------------------------------------------------------===//

int64_t MoeOp::getDModel() { return getInput().getType().getDimSize(1); }
int64_t MoeOp::getDHidden() { return getFc1Weight().getType().getDimSize(1); }
int64_t MoeOp::getLocalExperts() {
  return getFc1Weight().getType().getDimSize(0);
}

/// Every expert is placed on a rank in [0, world) and every rank holds the
/// same number of experts.
static LogicalResult checkPlacement(Operation *op, ArrayRef<int64_t> placement,
                                    int64_t numExperts, int64_t world) {
  if (static_cast<int64_t>(placement.size()) != numExperts)
    return op->emitOpError("expects placement to give a rank for each of the ")
           << numExperts << " experts, got " << placement.size();
  SmallVector<int64_t> held(world, 0);
  for (auto [e, r] : llvm::enumerate(placement)) {
    if (r < 0 || r >= world)
      return op->emitOpError("expects placement ranks in [0, ")
             << world << "), expert " << e << " is on rank " << r;
    ++held[r];
  }
  for (auto [r, n] : llvm::enumerate(held))
    if (n != numExperts / world)
      return op->emitOpError("expects every rank to hold ")
             << numExperts / world << " experts, rank " << r << " holds " << n;
  return success();
}

LogicalResult MoeOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d;
  if (failed(checkInput(op, getInput(), "input", elt, d)))
    return failure();
  int64_t e = getNumExperts(), w = getWorldSize();
  if (failed(checkTopK(op, getTopK(), e)) ||
      failed(checkGateKind(op, getGate(), getRenormalize())) ||
      failed(checkCapacity(op, getCapacityFactorAttr())))
    return failure();
  if (w < 1)
    return emitOpError("expects world_size >= 1, got ") << w;
  if (e % w != 0)
    return emitOpError("expects num_experts (")
           << e << ") to be a multiple of world_size (" << w << ")";
  ShapeChecker sc(op);
  if (failed(sc.check(getInput(), "input", {"T", d}, elt)) ||
      failed(sc.check(getGateWeight(), "gate_weight", {e, d}, elt)) ||
      (getGateBias() && failed(sc.check(getGateBias(), "gate_bias", {e}, elt))))
    return failure();
  int64_t local, hidden;
  if (failed(checkExpertWeights(op, sc, elt, d, getFc1Weight(), getFc1Bias(),
                                getUpWeight(), getFc2Weight(), getFc2Bias(),
                                getActivation(), local, hidden)))
    return failure();
  if (local != e / w)
    return emitOpError("expects the expert weights to hold num_experts / "
                       "world_size = ")
           << e / w << " experts, got " << local;
  if (auto placement = getPlacement())
    if (failed(checkPlacement(op, *placement, e, w)))
      return failure();
  return sc.check(getOutput(), "output", {"T", d}, elt);
}

//===----------------------------------------------------------------------===//
// Stage ops
//===----------------------------------------------------------------------===//

LogicalResult GateOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d;
  if (failed(checkInput(op, getInput(), "input", elt, d)))
    return failure();
  auto wt = dyn_cast<RankedTensorType>(getWeight().getType());
  if (!wt || wt.getRank() != 2 || wt.isDynamicDim(0))
    return emitOpError(
               "expects weight of static shape [experts, d_model], got ")
           << getWeight().getType();
  int64_t e = wt.getDimSize(0);
  ShapeChecker sc(op);
  if (failed(sc.check(getInput(), "input", {"T", d}, elt)) ||
      failed(sc.check(getWeight(), "weight", {e, d}, elt)) ||
      (getBias() && failed(sc.check(getBias(), "bias", {e}, elt))))
    return failure();
  return sc.check(getLogits(), "logits", {"T", e}, f32(op));
}

/// Shared by route and gate_route: [T, E] logits to [T, K] indices and scores.
static LogicalResult verifyRouteResults(Operation *op, ShapeChecker &sc,
                                        int64_t e, int64_t k, Value indices,
                                        Value scores) {
  if (failed(sc.check(indices, "indices", {"T", k}, i32(op))))
    return failure();
  return sc.check(scores, "scores", {"T", k}, f32(op));
}

LogicalResult RouteOp::verify() {
  Operation *op = getOperation();
  auto lt = dyn_cast<RankedTensorType>(getLogits().getType());
  if (!lt || lt.getRank() != 2 || lt.isDynamicDim(1))
    return emitOpError("expects logits of shape [tokens, experts] with a "
                       "static expert count, got ")
           << getLogits().getType();
  int64_t e = lt.getDimSize(1), k = getTopK();
  if (failed(checkTopK(op, k, e)) ||
      failed(checkGateKind(op, getGate(), getRenormalize())))
    return failure();
  ShapeChecker sc(op);
  if (failed(sc.check(getLogits(), "logits", {"T", e}, f32(op))))
    return failure();
  return verifyRouteResults(op, sc, e, k, getIndices(), getScores());
}

LogicalResult GateRouteOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d;
  if (failed(checkInput(op, getInput(), "input", elt, d)))
    return failure();
  auto wt = dyn_cast<RankedTensorType>(getWeight().getType());
  if (!wt || wt.getRank() != 2 || wt.isDynamicDim(0))
    return emitOpError(
               "expects weight of static shape [experts, d_model], got ")
           << getWeight().getType();
  int64_t e = wt.getDimSize(0), k = getTopK();
  if (failed(checkTopK(op, k, e)) ||
      failed(checkGateKind(op, getGate(), getRenormalize())))
    return failure();
  ShapeChecker sc(op);
  if (failed(sc.check(getInput(), "input", {"T", d}, elt)) ||
      failed(sc.check(getWeight(), "weight", {e, d}, elt)) ||
      (getBias() && failed(sc.check(getBias(), "bias", {e}, elt))) ||
      failed(sc.check(getLogits(), "logits", {"T", e}, f32(op))) ||
      failed(verifyRouteResults(op, sc, e, k, getIndices(), getScores())))
    return failure();
  return sc.check(getCounts(), "counts", {e}, i32(op));
}

LogicalResult DispatchOp::verify() {
  Operation *op = getOperation();
  auto it = dyn_cast<RankedTensorType>(getIndices().getType());
  if (!it || it.getRank() != 2 || it.isDynamicDim(1))
    return emitOpError("expects indices of shape [tokens, top_k] with a "
                       "static top_k, got ")
           << getIndices().getType();
  int64_t e = getNumExperts(), k = it.getDimSize(1);
  if (e >= (int64_t(1) << 31))
    return emitOpError("expects num_experts < 2^31, got ") << e;
  if (failed(checkTopK(op, k, e)) ||
      failed(checkCapacity(op, getCapacityFactorAttr())))
    return failure();
  if (auto order = getExpertOrder()) {
    if (static_cast<int64_t>(order->size()) != e)
      return emitOpError("expects expert_order to list each of the ")
             << e << " experts once, got " << order->size() << " entries";
    SmallVector<bool> seen(e, false);
    for (int64_t x : *order) {
      if (x < 0 || x >= e || seen[x])
        return emitOpError("expects expert_order to be a permutation of [0, ")
               << e << "), got expert " << x << " out of range or twice";
      seen[x] = true;
    }
  }
  ShapeChecker sc(op);
  if (failed(sc.check(getIndices(), "indices", {"T", k}, i32(op))) ||
      (getCounts() && failed(sc.check(getCounts(), "counts", {e}, i32(op)))) ||
      failed(sc.check(getOffsets(), "offsets", {e + 1}, i32(op))) ||
      failed(sc.check(getSlotPos(), "slot_pos", {"T", k}, i32(op))))
    return failure();
  return sc.check(getTokenOf(), "token_of", {"R"}, i32(op));
}

LogicalResult GatherOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d;
  if (failed(checkInput(op, getInput(), "input", elt, d)))
    return failure();
  ShapeChecker sc(op);
  if (failed(sc.check(getTokenOf(), "token_of", {"R"}, i32(op))))
    return failure();
  return sc.check(getRows(), "rows", {"R", d}, elt);
}

/// The optional kept activations `act: [R, H]` of the expert ops: non-GLU
/// forms only (a GLU form's backward needs both halves of h anyway).
static LogicalResult checkKeptActivations(Operation *op, ShapeChecker &sc,
                                          Value act, Activation activation,
                                          int64_t hidden, Type elt) {
  if (!act)
    return success();
  if (isGLU(activation))
    return op->emitOpError("keeps activations (act) only for non-GLU "
                           "activations, got ")
           << stringifyActivation(activation);
  return sc.check(act, "act", {"R", hidden}, elt);
}

LogicalResult ExpertOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d, local, hidden;
  if (failed(checkInput(op, getRows(), "rows", elt, d)))
    return failure();
  ShapeChecker sc(op);
  if (failed(checkExpertWeights(op, sc, elt, d, getFc1Weight(), getFc1Bias(),
                                getUpWeight(), getFc2Weight(), getFc2Bias(),
                                getActivation(), local, hidden)) ||
      failed(checkOffsets(op, getOffsets(), local)))
    return failure();
  int64_t hWidth = isGLU(getActivation()) ? 2 * hidden : hidden;
  if (failed(sc.check(getRows(), "rows", {"R", d}, elt)) ||
      failed(sc.check(getY(), "y", {"R", d}, elt)) ||
      failed(sc.check(getH(), "h", {"R", hWidth}, elt)))
    return failure();
  return checkKeptActivations(op, sc, getAct(), getActivation(), hidden, elt);
}

LogicalResult FusedExpertOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d, local, hidden;
  if (failed(checkInput(op, getInput(), "input", elt, d)))
    return failure();
  ShapeChecker sc(op);
  if (failed(checkExpertWeights(op, sc, elt, d, getFc1Weight(), getFc1Bias(),
                                getUpWeight(), getFc2Weight(), getFc2Bias(),
                                getActivation(), local, hidden)) ||
      failed(checkOffsets(op, getOffsets(), local)))
    return failure();
  auto pt = dyn_cast<RankedTensorType>(getSlotPos().getType());
  if (!pt || pt.getRank() != 2 || pt.isDynamicDim(1))
    return emitOpError("expects slot_pos of shape [tokens, top_k], got ")
           << getSlotPos().getType();
  int64_t k = pt.getDimSize(1);
  int64_t hWidth = isGLU(getActivation()) ? 2 * hidden : hidden;
  if (failed(sc.check(getInput(), "input", {"T", d}, elt)) ||
      failed(sc.check(getTokenOf(), "token_of", {"R"}, i32(op))) ||
      failed(sc.check(getSlotPos(), "slot_pos", {"T", k}, i32(op))) ||
      failed(sc.check(getScores(), "scores", {"T", k}, f32(op))) ||
      failed(sc.check(getOutput(), "output", {"T", d}, elt)) ||
      failed(sc.check(getH(), "h", {"R", hWidth}, elt)) ||
      failed(sc.check(getY(), "y", {"R", d}, elt)))
    return failure();
  return checkKeptActivations(op, sc, getAct(), getActivation(), hidden, elt);
}

/// slot_pos [T, K] i32 and scores [T, K] f32, with a static K.
static LogicalResult checkSlots(Operation *op, ShapeChecker &sc, Value slotPos,
                                Value scores, int64_t &k,
                                StringRef name = "slot_pos") {
  auto pt = dyn_cast<RankedTensorType>(slotPos.getType());
  if (!pt || pt.getRank() != 2 || pt.isDynamicDim(1))
    return op->emitOpError("expects ")
           << name << " of shape [tokens, top_k], got " << slotPos.getType();
  k = pt.getDimSize(1);
  if (failed(sc.check(slotPos, name, {"T", k}, i32(op))))
    return failure();
  return scores ? sc.check(scores, "scores", {"T", k}, f32(op)) : success();
}

LogicalResult CombineOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d, k;
  if (failed(checkInput(op, getY(), "y", elt, d)))
    return failure();
  ShapeChecker sc(op);
  if (failed(checkSlots(op, sc, getSlotPos(), getScores(), k)))
    return failure();
  return sc.check(getOutput(), "output", {"T", d}, elt);
}

//===----------------------------------------------------------------------===//
// AllToAllOp
//===----------------------------------------------------------------------===//

int64_t AllToAllOp::getLocalExperts(int64_t worldSize) {
  return static_cast<int64_t>(getPlacement().size()) / worldSize;
}

/// `shadow`: distinct expert ids in [0, E), fewer than E.
static LogicalResult checkShadow(Operation *op, ArrayRef<int64_t> shadow,
                                 int64_t numExperts) {
  if (static_cast<int64_t>(shadow.size()) >= numExperts)
    return op->emitOpError("expects fewer shadowed experts than the ")
           << numExperts << " experts, got " << shadow.size();
  SmallVector<bool> seen(numExperts, false);
  for (int64_t e : shadow) {
    if (e < 0 || e >= numExperts || seen[e])
      return op->emitOpError("expects shadow to list distinct experts in [0, ")
             << numExperts << "), got expert " << e << " out of range or twice";
    seen[e] = true;
  }
  return success();
}

/// The size of the one-dimensional grid `grid` names (and a valid
/// placement of `numExperts` experts over it), or failure.
static FailureOr<int64_t> verifyGrid(Operation *op, FlatSymbolRefAttr gridRef,
                                     ArrayRef<int64_t> placement,
                                     SymbolTableCollection &symbolTable) {
  auto grid = shard::getGridOrNull(op, gridRef, symbolTable);
  if (!grid)
    return op->emitOpError("expects grid @")
           << gridRef.getValue() << " to name a shard.grid";
  if (grid.getRank() != 1 || ShapedType::isDynamic(grid.getShape()[0]))
    return op->emitOpError(
               "expects a one-dimensional shard.grid of static size, got @")
           << gridRef.getValue() << " of rank " << grid.getRank();
  int64_t world = grid.getShape()[0];
  if (world < 1)
    return op->emitOpError("expects a grid of at least one device, got @")
           << gridRef.getValue() << " of size " << world;
  int64_t e = placement.size();
  if (e % world != 0)
    return op->emitOpError("expects the number of experts (")
           << e << ") to be a multiple of the grid size (" << world << ")";
  if (failed(checkPlacement(op, placement, e, world)))
    return failure();
  return world;
}

LogicalResult AllToAllOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d;
  if (failed(checkInput(op, getInput(), "input", elt, d)))
    return failure();
  int64_t e = getPlacement().size();
  if (e < 1)
    return emitOpError("expects a placement with at least one expert");
  if (auto shadow = getShadow())
    if (failed(checkShadow(op, *shadow, e)))
      return failure();
  // The placement-ordered side has E + 1 offsets; so has the expert side
  // without shadowed experts (checked with the grid's size otherwise).
  ShapeChecker sc(op);
  bool placementSide[2] = {true, !getShadow() || getShadow()->empty()};
  if (getReverse())
    std::swap(placementSide[0], placementSide[1]);
  if ((placementSide[0] &&
       failed(sc.check(getOffsets(), "offsets", {e + 1}, i32(op)))) ||
      (placementSide[1] &&
       failed(sc.check(getOutOffsets(), "out_offsets", {e + 1}, i32(op)))) ||
      failed(sc.check(getOutput(), "output", {"S", d}, elt)))
    return failure();
  return success();
}

LogicalResult AllToAllOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  FailureOr<int64_t> world =
      verifyGrid(getOperation(), getGridAttr(), getPlacement(), symbolTable);
  if (failed(world))
    return failure();
  if (!getShadow() || getShadow()->empty())
    return success();
  if (*world == 1)
    return emitOpError("expects no shadowed experts on a grid of one device");
  // The expert side: L + S local experts, one group per source rank each.
  int64_t e = getPlacement().size(), s = getShadow()->size();
  int64_t groups = e + s * *world;
  ShapeChecker sc(getOperation());
  return getReverse()
             ? sc.check(getOffsets(), "offsets", {groups + 1}, i32(*this))
             : sc.check(getOutOffsets(), "out_offsets", {groups + 1},
                        i32(*this));
}

//===----------------------------------------------------------------------===//
// ReplicateOp, ReplicateGradOp
//===----------------------------------------------------------------------===//

/// `own: [L, ...]` and `all: [L+S, ...]`, static, of one element type.
static LogicalResult verifyReplicas(Operation *op, Value own, Value all,
                                    StringRef ownName, StringRef allName,
                                    ArrayRef<int64_t> placement,
                                    ArrayRef<int64_t> shadow) {
  int64_t e = placement.size();
  if (shadow.empty())
    return op->emitOpError("expects at least one shadowed expert");
  if (failed(checkShadow(op, shadow, e)))
    return failure();
  auto ot = cast<RankedTensorType>(own.getType());
  auto at = cast<RankedTensorType>(all.getType());
  if (ot.getRank() < 1 || !ot.hasStaticShape())
    return op->emitOpError("expects ")
           << ownName << " of static shape [experts, ...], got " << ot;
  SmallVector<int64_t> shape(ot.getShape());
  shape[0] += static_cast<int64_t>(shadow.size());
  if (at.getShape() != ArrayRef<int64_t>(shape) ||
      at.getElementType() != ot.getElementType())
    return op->emitOpError("expects ")
           << allName << " of type "
           << RankedTensorType::get(shape, ot.getElementType())
           << " (one more expert per shadowed one), got " << at;
  return success();
}

/// The own side holds E / world experts.
static LogicalResult verifyReplicaGrid(Operation *op, Value own,
                                       FlatSymbolRefAttr grid,
                                       ArrayRef<int64_t> placement,
                                       SymbolTableCollection &symbolTable) {
  FailureOr<int64_t> world = verifyGrid(op, grid, placement, symbolTable);
  if (failed(world))
    return failure();
  int64_t local = cast<RankedTensorType>(own.getType()).getDimSize(0);
  int64_t e = placement.size();
  if (local * *world != e)
    return op->emitOpError("expects ")
           << e / *world << " experts per rank (" << e << " over " << *world
           << " ranks), got " << local;
  return success();
}

LogicalResult ReplicateOp::verify() {
  return verifyReplicas(*this, getInput(), getOutput(), "input", "output",
                        getPlacement(), getShadow());
}

LogicalResult ReplicateOp::verifySymbolUses(SymbolTableCollection &table) {
  return verifyReplicaGrid(*this, getInput(), getGridAttr(), getPlacement(),
                           table);
}

LogicalResult ReplicateGradOp::verify() {
  return verifyReplicas(*this, getOutput(), getGrad(), "output", "grad",
                        getPlacement(), getShadow());
}

LogicalResult ReplicateGradOp::verifySymbolUses(SymbolTableCollection &table) {
  return verifyReplicaGrid(*this, getOutput(), getGridAttr(), getPlacement(),
                           table);
}

//===----------------------------------------------------------------------===//
// Backward ops
//===----------------------------------------------------------------------===//

LogicalResult CombineGradOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d, k;
  if (failed(checkInput(op, getGradOutput(), "grad_output", elt, d)))
    return failure();
  ShapeChecker sc(op);
  if (failed(sc.check(getGradOutput(), "grad_output", {"T", d}, elt)) ||
      failed(checkSlots(op, sc, getSlotPos(), getScores(), k)) ||
      failed(sc.check(getY(), "y", {"R", d}, elt)) ||
      failed(sc.check(getGradY(), "grad_y", {"R", d}, elt)))
    return failure();
  return sc.check(getGradScores(), "grad_scores", {"T", k}, f32(op));
}

LogicalResult ExpertGradOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d, local, hidden;
  if (failed(checkInput(op, getGradY(), "grad_y", elt, d)))
    return failure();
  ShapeChecker sc(op);
  if (failed(checkExpertWeights(op, sc, elt, d, getFc1Weight(), Value(),
                                getUpWeight(), getFc2Weight(), Value(),
                                getActivation(), local, hidden)) ||
      failed(checkOffsets(op, getOffsets(), local)))
    return failure();
  int64_t hWidth = isGLU(getActivation()) ? 2 * hidden : hidden;
  if (failed(sc.check(getGradY(), "grad_y", {"R", d}, elt)) ||
      failed(sc.check(getRows(), "rows", {"R", d}, elt)) ||
      failed(sc.check(getH(), "h", {"R", hWidth}, elt)) ||
      failed(checkKeptActivations(op, sc, getAct(), getActivation(), hidden,
                                  elt)) ||
      failed(sc.check(getGradRows(), "grad_rows", {"R", d}, elt)) ||
      failed(sc.check(getGradFc1Weight(), "grad_fc1_weight", {local, hidden, d},
                      elt)) ||
      failed(sc.check(getGradFc2Weight(), "grad_fc2_weight", {local, d, hidden},
                      elt)))
    return failure();
  if (static_cast<bool>(getGradUpWeight()) != static_cast<bool>(getUpWeight()))
    return emitOpError(
        "expects grad_up_weight exactly when up_weight is given");
  if (getGradFc1Bias() &&
      failed(sc.check(getGradFc1Bias(), "grad_fc1_bias", {local, hidden}, elt)))
    return failure();
  if (getGradUpWeight() && failed(sc.check(getGradUpWeight(), "grad_up_weight",
                                           {local, hidden, d}, elt)))
    return failure();
  if (getGradFc2Bias() &&
      failed(sc.check(getGradFc2Bias(), "grad_fc2_bias", {local, d}, elt)))
    return failure();
  return success();
}

LogicalResult GatherGradOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d, k;
  if (failed(checkInput(op, getGradRows(), "grad_rows", elt, d)))
    return failure();
  ShapeChecker sc(op);
  if (failed(checkSlots(op, sc, getSlotPos(), Value(), k)))
    return failure();
  return sc.check(getGradInput(), "grad_input", {"T", d}, elt);
}

LogicalResult RouteGradOp::verify() {
  Operation *op = getOperation();
  auto lt = dyn_cast<RankedTensorType>(getLogits().getType());
  if (!lt || lt.getRank() != 2 || lt.isDynamicDim(1))
    return emitOpError("expects logits of shape [tokens, experts] with a "
                       "static expert count, got ")
           << getLogits().getType();
  int64_t e = lt.getDimSize(1), k;
  if (failed(checkGateKind(op, getGate(), getRenormalize())))
    return failure();
  ShapeChecker sc(op);
  if (failed(checkSlots(op, sc, getIndices(), getScores(), k, "indices")))
    return failure();
  if (failed(checkTopK(op, k, e)) ||
      failed(sc.check(getGradScores(), "grad_scores", {"T", k}, f32(op))) ||
      failed(sc.check(getLogits(), "logits", {"T", e}, f32(op))))
    return failure();
  return sc.check(getGradLogits(), "grad_logits", {"T", e}, f32(op));
}

LogicalResult GateGradOp::verify() {
  Operation *op = getOperation();
  Type elt;
  int64_t d;
  if (failed(checkInput(op, getInput(), "input", elt, d)))
    return failure();
  auto lt = dyn_cast<RankedTensorType>(getGradLogits().getType());
  if (!lt || lt.getRank() != 2 || lt.isDynamicDim(1))
    return emitOpError("expects grad_logits of shape [tokens, experts], got ")
           << getGradLogits().getType();
  int64_t e = lt.getDimSize(1);
  ShapeChecker sc(op);
  if (failed(sc.check(getGradLogits(), "grad_logits", {"T", e}, f32(op))) ||
      failed(sc.check(getInput(), "input", {"T", d}, elt)) ||
      failed(sc.check(getWeight(), "weight", {e, d}, elt)) ||
      failed(sc.check(getGradInputAcc(), "grad_input_acc", {"T", d}, elt)) ||
      failed(sc.check(getGradInput(), "grad_input", {"T", d}, elt)) ||
      failed(sc.check(getGradWeight(), "grad_weight", {e, d}, elt)))
    return failure();
  if (static_cast<bool>(getGradBias()) != getBias())
    return emitOpError("expects grad_bias exactly when bias is set");
  if (getGradBias() && failed(sc.check(getGradBias(), "grad_bias", {e}, elt)))
    return failure();
  return success();
}

#define GET_OP_CLASSES
#include "fmoe/Dialect/FMoE/IR/FMoEOps.cpp.inc"
