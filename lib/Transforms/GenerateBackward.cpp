//===- GenerateBackward.cpp - reverse-mode derivation of layer functions --===//
//
// Part of fmoe. Walks a layer function's stages in reverse and emits, for
// each, the `*_grad` op of the dialect. Forward values the backward needs
// become extra results of the forward ("saved" values) and arguments of the
// backward, except the gathered rows, which are recomputed when that is
// cheap (see recomputeGather).
//
//===----------------------------------------------------------------------===//

#include "fmoe/Transforms/Passes.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::fmoe {
#define GEN_PASS_DEF_FMOEGENERATEBACKWARD
#include "fmoe/Transforms/Passes.h.inc"
} // namespace mlir::fmoe

using namespace mlir;
using namespace mlir::fmoe;

namespace {

class BackwardBuilder {
public:
  BackwardBuilder(func::FuncOp fwd, func::FuncOp bwd, bool keepActivations)
      : fwd(fwd), bwd(bwd), b(bwd.getContext()),
        keepActivations(keepActivations) {}

  LogicalResult run() {
    auto ret = cast<func::ReturnOp>(fwd.front().getTerminator());
    if (ret.getNumOperands() != 1)
      return fwd.emitError("expects a layer function with exactly one result "
                           "to differentiate, got ")
             << ret.getNumOperands();
    Block *entry = bwd.addEntryBlock();
    b.setInsertionPointToStart(entry);
    // (grad_output, forward arguments..., saved...)
    Value gradOut =
        entry->addArgument(ret.getOperand(0).getType(), fwd.getLoc());
    for (BlockArgument arg : fwd.getArguments())
      captured.map(arg, entry->addArgument(arg.getType(), arg.getLoc()));
    adj[ret.getOperand(0)] = gradOut;
    fwd.walk([&](ExpertOp e) { recomputeGather &= recomputeIsCheap(e); });

    SmallVector<Operation *> ops;
    for (Operation &op : fwd.front().without_terminator())
      ops.push_back(&op);
    for (Operation *op : llvm::reverse(ops))
      if (failed(visit(op)))
        return failure();

    SmallVector<Value> grads;
    for (BlockArgument arg : fwd.getArguments()) {
      Value g = adj.lookup(arg);
      if (!g)
        return fwd.emitError("argument #")
               << arg.getArgNumber() << " receives no gradient";
      grads.push_back(g);
    }
    func::ReturnOp::create(b, fwd.getLoc(), grads);
    bwd.setFunctionType(FunctionType::get(b.getContext(),
                                          entry->getArgumentTypes(),
                                          ValueRange(grads).getTypes()));

    // The forward returns what the backward reads.
    SmallVector<Value> results{ret.getOperand(0)};
    results.append(saved.begin(), saved.end());
    ret->setOperands(results);
    fwd.setFunctionType(FunctionType::get(b.getContext(),
                                          fwd.getArgumentTypes(),
                                          ValueRange(results).getTypes()));
    fwd->setAttr("fmoe.backward", FlatSymbolRefAttr::get(bwd));
    fwd->setAttr("fmoe.num_saved", b.getI64IntegerAttr(saved.size()));
    return success();
  }

private:
  /// The backward's handle on a forward value.
  Value in(Value v) {
    if (Value c = captured.lookupOrNull(v))
      return c;
    Value c;
    if (auto gather = v.getDefiningOp<GatherOp>(); gather && recomputeGather) {
      c = GatherOp::create(b, gather.getLoc(), gather.getRows().getType(),
                           in(gather.getInput()), in(gather.getTokenOf()));
    } else {
      c = bwd.front().addArgument(v.getType(), v.getLoc());
      saved.push_back(v);
    }
    captured.map(v, c);
    return c;
  }

  LogicalResult addAdj(Operation *op, Value v, Value g) {
    if (!v)
      return success();
    if (adj.count(v))
      return op->emitError("cannot differentiate: a value used by two stages "
                           "of a layer");
    adj[v] = g;
    return success();
  }

  LogicalResult visit(Operation *op) {
    Location loc = op->getLoc();
    if (auto c = dyn_cast<CombineOp>(op)) {
      Value g = adj.lookup(c.getOutput());
      if (!g)
        return success();
      auto grad = CombineGradOp::create(
          b, loc, c.getY().getType(), c.getScores().getType(), g, in(c.getY()),
          in(c.getSlotPos()), in(c.getScores()));
      return success(
          succeeded(addAdj(op, c.getY(), grad.getGradY())) &&
          succeeded(addAdj(op, c.getScores(), grad.getGradScores())));
    }
    if (auto a = dyn_cast<AllToAllOp>(op)) {
      Value g = adj.lookup(a.getOutput());
      if (!g)
        return success();
      auto back = AllToAllOp::create(
          b, loc, a.getInput().getType(), a.getOffsets().getType(), g,
          in(a.getOutOffsets()), a.getGridAttr(), a.getPlacementAttr(),
          a.getReverse() ? UnitAttr() : b.getUnitAttr(), a.getShadowAttr());
      // Undoing a reverse exchange re-creates the expert side's offsets:
      // the backward's expert stage uses those instead of saving the
      // forward's, as the runtime then knows on the host how many rows are
      // in use (it exchanged the counts).
      if (a.getReverse() && !captured.contains(a.getOffsets()))
        captured.map(a.getOffsets(), back.getOutOffsets());
      return addAdj(op, a.getInput(), back.getOutput());
    }
    if (auto r = dyn_cast<ReplicateOp>(op)) {
      Value g = adj.lookup(r.getOutput());
      if (!g)
        return success();
      Value own = ReplicateGradOp::create(b, loc, r.getInput().getType(), g,
                                          r.getGridAttr(), r.getPlacementAttr(),
                                          r.getShadowAttr());
      return addAdj(op, r.getInput(), own);
    }
    if (auto e = dyn_cast<ExpertOp>(op)) {
      Value g = adj.lookup(e.getY());
      if (!g)
        return success();
      if (keepActivations && !e.getAct() && keepsActivationsOf(e))
        e = withActivations(e);
      auto type = [](Value v) { return v ? v.getType() : Type(); };
      Value up = e.getUpWeight() ? in(e.getUpWeight()) : Value();
      Value act = e.getAct() ? in(e.getAct()) : Value();
      auto grad = ExpertGradOp::create(
          b, loc, e.getRows().getType(), e.getFc1Weight().getType(),
          type(e.getFc1Bias()), type(e.getUpWeight()),
          e.getFc2Weight().getType(), type(e.getFc2Bias()), g, in(e.getRows()),
          in(e.getOffsets()), in(e.getH()), act, in(e.getFc1Weight()), up,
          in(e.getFc2Weight()), e.getActivationAttr());
      // (`op` may have been replaced by withActivations: diagnose on e.)
      Operation *at = e.getOperation();
      return success(
          succeeded(addAdj(at, e.getRows(), grad.getGradRows())) &&
          succeeded(addAdj(at, e.getFc1Weight(), grad.getGradFc1Weight())) &&
          succeeded(addAdj(at, e.getFc1Bias(), grad.getGradFc1Bias())) &&
          succeeded(addAdj(at, e.getUpWeight(), grad.getGradUpWeight())) &&
          succeeded(addAdj(at, e.getFc2Weight(), grad.getGradFc2Weight())) &&
          succeeded(addAdj(at, e.getFc2Bias(), grad.getGradFc2Bias())));
    }
    if (auto gather = dyn_cast<GatherOp>(op)) {
      Value g = adj.lookup(gather.getRows());
      if (!g)
        return success();
      auto dispatch = gather.getTokenOf().getDefiningOp<DispatchOp>();
      if (!dispatch)
        return gather.emitError("cannot differentiate a gather whose token_of "
                                "does not come from an fmoe.dispatch");
      Value dx = GatherGradOp::create(b, loc, gather.getInput().getType(), g,
                                      in(dispatch.getSlotPos()));
      return addAdj(op, gather.getInput(), dx);
    }
    if (isa<DispatchOp>(op))
      return success(); // the expert choice is discrete: no gradient
    if (auto r = dyn_cast<RouteOp>(op)) {
      Value g = adj.lookup(r.getScores());
      if (!g)
        return success();
      Value dl = RouteGradOp::create(b, loc, r.getLogits().getType(), g,
                                     in(r.getLogits()), in(r.getIndices()),
                                     in(r.getScores()), r.getGateAttr(),
                                     r.getRenormalizeAttr());
      return addAdj(op, r.getLogits(), dl);
    }
    if (auto gate = dyn_cast<GateOp>(op)) {
      Value g = adj.lookup(gate.getLogits());
      if (!g)
        return success();
      Value acc = adj.lookup(gate.getInput());
      if (!acc)
        return gate.emitError("cannot differentiate: the gate's input does "
                              "not also feed the experts");
      auto grad = GateGradOp::create(
          b, loc, gate.getInput().getType(), gate.getWeight().getType(),
          gate.getBias() ? gate.getBias().getType() : Type(), g,
          in(gate.getInput()), in(gate.getWeight()), acc,
          gate.getBias() ? b.getUnitAttr() : UnitAttr());
      adj[gate.getInput()] = grad.getGradInput();
      return success(
          succeeded(addAdj(op, gate.getWeight(), grad.getGradWeight())) &&
          succeeded(addAdj(op, gate.getBias(), grad.getGradBias())));
    }
    if (isa<GateRouteOp, FusedExpertOp>(op))
      return op->emitError("cannot differentiate fused stages: run "
                           "--fmoe-generate-backward before --fmoe-fuse");
    return op->emitError("cannot differentiate '")
           << op->getName() << "' in a layer function";
  }

  static bool keepsActivationsOf(ExpertOp e) {
    auto w1 = cast<ShapedType>(e.getFc1Weight().getType());
    if (!w1.hasStaticShape())
      return false;
    return keepsActivations(w1.getElementType(), e.getActivation(),
                            bool(e.getFc1Bias()), bool(e.getFc2Bias()),
                            w1.getDimSize(1), w1.getDimSize(2));
  }

  /// `e` again with its activations as a third result (the forward saves
  /// them when the backward reads them); `e` is replaced and erased, and
  /// what the backward already holds of its results (y, saved for the
  /// combine's gradient) follows the new op.
  ExpertOp withActivations(ExpertOp e) {
    OpBuilder fb(e);
    auto h = cast<RankedTensorType>(e.getH().getType());
    auto kept = ExpertOp::create(
        fb, e.getLoc(), e.getY().getType(), h, h, e.getRows(), e.getOffsets(),
        e.getFc1Weight(), e.getFc1Bias(), e.getUpWeight(), e.getFc2Weight(),
        e.getFc2Bias(), e.getActivationAttr());
    for (auto [from, to] : {std::pair<Value, Value>{e.getY(), kept.getY()},
                            {e.getH(), kept.getH()}}) {
      if (Value c = captured.lookupOrNull(from)) {
        captured.erase(from);
        captured.map(to, c);
      }
      llvm::replace(saved, from, to);
      if (auto it = adj.find(from); it != adj.end()) {
        Value g = it->second;
        adj.erase(it);
        adj[to] = g;
      }
      from.replaceAllUsesWith(to);
    }
    e.erase();
    return kept;
  }

  /// Whether the backward gathers an expert's rows again rather than the
  /// forward saving them. Gathering moves 2 x rows x d_model elements;
  /// the expert's GEMMs do 12 x rows x d_model x d_hidden FLOPs over a step,
  /// so on a GPU of ~175 FLOPs per byte moved the gather costs about
  /// 60 / d_hidden of them: under 1.5 % from d_hidden 4096, above 5 % for
  /// fine-grained experts (d_hidden <= d_model), where saving the rows
  /// (rows x d_model elements, at most the forward's saved h) pays.
  static bool recomputeIsCheap(ExpertOp e) {
    auto w1 = cast<ShapedType>(e.getFc1Weight().getType());
    return w1.getDimSize(1) > w1.getDimSize(2); // d_hidden > d_model
  }

  func::FuncOp fwd, bwd;
  OpBuilder b;
  IRMapping captured;
  DenseMap<Value, Value> adj;
  SmallVector<Value> saved;
  bool keepActivations;
  bool recomputeGather = true;
};

struct FMoEGenerateBackwardPass
    : public mlir::fmoe::impl::FMoEGenerateBackwardBase<
          FMoEGenerateBackwardPass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> layers;
    module.walk([&](func::FuncOp f) {
      if (f.isDeclaration() || f->hasAttr("fmoe.backward") ||
          f->hasAttr("fmoe.forward"))
        return;
      bool hasStage = false;
      f.walk([&](Operation *op) {
        hasStage |= isa<DispatchOp>(op) && op->getParentOp() == f;
      });
      if (hasStage)
        layers.push_back(f);
    });
    SymbolTable symbols(module);
    for (func::FuncOp f : layers) {
      if (!f.getBody().hasOneBlock())
        return (void)(f.emitError("expects a single-block layer function"),
                      signalPassFailure());
      OpBuilder b(f->getContext());
      b.setInsertionPointAfter(f);
      auto bwd =
          func::FuncOp::create(b, f.getLoc(), (f.getName() + "_backward").str(),
                               b.getFunctionType({}, {}));
      symbols.insert(bwd);
      bwd->setAttr("fmoe.forward", FlatSymbolRefAttr::get(f));
      if (failed(BackwardBuilder(f, bwd, keepActivations).run()))
        return signalPassFailure();
    }
  }
};

} // namespace
