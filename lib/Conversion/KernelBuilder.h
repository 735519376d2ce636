//===- KernelBuilder.h - building the bodies of fmoe's GPU kernels -*- C++
//-*-===//
//
// Part of fmoe. Private to lib/Conversion: the helpers LowerToRuntime.cpp
// writes its kernel bodies with (gpu/scf/arith/math/vector ops on flat
// memrefs), including the vectorised column loop of the row kernels and the
// activations with their derivatives.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_LIB_CONVERSION_KERNELBUILDER_H
#define FMOE_LIB_CONVERSION_KERNELBUILDER_H

#include "fmoe/Support/NormalApprox.h"
#include "fmoe/Transforms/Passes.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "llvm/Support/SaveAndRestore.h"
#include <cmath>
#include <numeric>

namespace mlir::fmoe::lowering {

/// Threads per block of every generated kernel.
constexpr int64_t kBlock = 256;

/// Small helpers to write kernel bodies: index and f32 arithmetic, loads that
/// widen to f32 and stores that narrow to the buffer's element type.
///
/// Inside KB::columns the body may work on `width` consecutive columns at
/// once: float loads and stores then move vector<width x T> (one 16-byte
/// access for bf16/fp16 at width 8, where the index is provably aligned),
/// and the arithmetic helpers broadcast scalar operands to vectors.
struct KB {
  OpBuilder &b;
  Location loc;
  /// Columns per access inside KB::columns (1: scalar code).
  int64_t width = 1;
  /// Threads that share a row in a row kernel (KB::columns).
  int64_t rowThreads = kBlock;

  Value c(int64_t v) { return arith::ConstantIndexOp::create(b, loc, v); }
  Value f(double v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
  }
  Value i32(int64_t v) {
    return arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(v));
  }
  /// `x` broadcast to `like`'s vector shape when `like` is a vector and `x`
  /// is not.
  Value splat(Value x, Value like) {
    auto vec = dyn_cast<VectorType>(like.getType());
    if (!vec || isa<VectorType>(x.getType()))
      return x;
    return vector::BroadcastOp::create(
        b, loc, VectorType::get(vec.getShape(), x.getType()), x);
  }
  /// Both operands with the same (vector or scalar) shape.
  std::pair<Value, Value> same(Value x, Value y) {
    return {splat(x, y), splat(y, x)};
  }
  static bool isFloat(Value v) {
    return isa<FloatType>(getElementTypeOrSelf(v.getType()));
  }
  /// x op y on operands brought to one shape: FOp on floats, IOp on
  /// integers and indices.
  template <typename FOp, typename IOp> Value binary(Value x, Value y) {
    std::tie(x, y) = same(x, y);
    return isFloat(x) ? Value(FOp::create(b, loc, x, y))
                      : Value(IOp::create(b, loc, x, y));
  }
  Value add(Value x, Value y) {
    return binary<arith::AddFOp, arith::AddIOp>(x, y);
  }
  Value sub(Value x, Value y) {
    return binary<arith::SubFOp, arith::SubIOp>(x, y);
  }
  Value mul(Value x, Value y) {
    return binary<arith::MulFOp, arith::MulIOp>(x, y);
  }
  Value div(Value x, Value y) {
    return binary<arith::DivFOp, arith::DivUIOp>(x, y);
  }
  Value max(Value x, Value y) {
    std::tie(x, y) = same(x, y);
    return arith::MaximumFOp::create(b, loc, x, y);
  }
  Value rem(Value x, Value y) { return arith::RemUIOp::create(b, loc, x, y); }
  Value exp(Value x) { return math::ExpOp::create(b, loc, x); }
  Value sel(Value c, Value x, Value y) {
    std::tie(x, y) = same(x, y);
    // A vector condition (a comparison in a vector body) selects between
    // vectors of its shape.
    return arith::SelectOp::create(b, loc, c, splat(x, c), splat(y, c));
  }
  Value cmpi(arith::CmpIPredicate p, Value x, Value y) {
    return arith::CmpIOp::create(b, loc, p, x, y);
  }
  Value cmpf(arith::CmpFPredicate p, Value x, Value y) {
    std::tie(x, y) = same(x, y);
    return arith::CmpFOp::create(b, loc, p, x, y);
  }
  Value andi(Value x, Value y) { return arith::AndIOp::create(b, loc, x, y); }
  Value ori(Value x, Value y) { return arith::OrIOp::create(b, loc, x, y); }
  Value toIndex(Value x) {
    return arith::IndexCastOp::create(b, loc, b.getIndexType(), x);
  }
  Value toI32(Value x) {
    return arith::IndexCastOp::create(b, loc, b.getI32Type(), x);
  }

  /// A number that provably divides the index `v` (built from constants,
  /// the thread id, loop counters, +, * and selects); 0 stands for "any",
  /// the divisor of the constant 0.
  static int64_t multipleOf(Value v) {
    if (auto arg = dyn_cast<BlockArgument>(v)) {
      auto loop =
          dyn_cast_if_present<scf::ForOp>(arg.getOwner()->getParentOp());
      if (loop && arg == loop.getInductionVar())
        return std::gcd(multipleOf(loop.getLowerBound()),
                        multipleOf(loop.getStep()));
      return 1;
    }
    Operation *op = v.getDefiningOp();
    if (auto cst = dyn_cast<arith::ConstantIndexOp>(op))
      return std::abs(cst.value());
    if (isa<arith::AddIOp>(op))
      return std::gcd(multipleOf(op->getOperand(0)),
                      multipleOf(op->getOperand(1)));
    if (isa<arith::MulIOp>(op))
      return multipleOf(op->getOperand(0)) * multipleOf(op->getOperand(1));
    if (isa<arith::SelectOp>(op))
      return std::gcd(multipleOf(op->getOperand(1)),
                      multipleOf(op->getOperand(2)));
    return 1;
  }
  /// The byte alignment of element `idx` of `mem` (buffers start 16-byte
  /// aligned: the runtime checks it).
  static int64_t alignmentOf(Value mem, Value idx) {
    int64_t bytes =
        cast<MemRefType>(mem.getType()).getElementTypeBitWidth() / 8;
    int64_t m = multipleOf(idx);
    for (int64_t a = 16; a > bytes; a /= 2)
      if (m == 0 || (m * bytes) % a == 0)
        return a;
    return bytes;
  }

  /// Loads element `idx` (in a vector body, elements [idx, idx + width),
  /// as one access of the alignment the index allows); floats come back as
  /// f32.
  Value ld(Value mem, Value idx) {
    Type elt = cast<MemRefType>(mem.getType()).getElementType();
    Value v;
    if (width > 1) {
      if (!isa<FloatType>(elt))
        llvm::report_fatal_error("fmoe-lower-to-runtime: an integer load in a "
                                 "vector column body");
      v = vector::LoadOp::create(b, loc, VectorType::get({width}, elt), mem,
                                 ValueRange{idx}, /*nontemporal=*/false,
                                 llvm::MaybeAlign(alignmentOf(mem, idx)));
    } else {
      v = memref::LoadOp::create(b, loc, mem, ValueRange{idx});
    }
    if (isa<FloatType>(elt) && !elt.isF32())
      v = arith::ExtFOp::create(b, loc, withElement(v, b.getF32Type()), v);
    return v;
  }
  /// `v` (f32) rounded to `mem`'s float element type and widened back: the
  /// value a store to `mem` keeps.
  Value storedIn(Value v, Value mem) {
    Type elt = cast<MemRefType>(mem.getType()).getElementType();
    if (!isa<FloatType>(elt) || elt == getElementTypeOrSelf(v.getType()))
      return v;
    Value n = arith::TruncFOp::create(b, loc, withElement(v, elt), v);
    return arith::ExtFOp::create(b, loc, v.getType(), n);
  }
  void st(Value v, Value mem, Value idx) {
    Type elt = cast<MemRefType>(mem.getType()).getElementType();
    if (width > 1 && !isa<VectorType>(v.getType()))
      v = vector::BroadcastOp::create(b, loc,
                                      VectorType::get({width}, v.getType()), v);
    if (getElementTypeOrSelf(v.getType()) != elt)
      v = arith::TruncFOp::create(b, loc, withElement(v, elt), v);
    if (width > 1)
      vector::StoreOp::create(b, loc, v, mem, ValueRange{idx},
                              /*nontemporal=*/false,
                              llvm::MaybeAlign(alignmentOf(mem, idx)));
    else
      memref::StoreOp::create(b, loc, v, mem, ValueRange{idx});
  }
  /// `v`'s type (scalar or vector) with element type `elt`.
  static Type withElement(Value v, Type elt) {
    if (auto vec = dyn_cast<VectorType>(v.getType()))
      return VectorType::get(vec.getShape(), elt);
    return elt;
  }
  Value atomicAdd(Value v, Value mem, Value idx) {
    return memref::AtomicRMWOp::create(b, loc, arith::AtomicRMWKind::addi, v,
                                       mem, ValueRange{idx});
  }
  /// for i in [lb, ub) by `step`: iter = body(i, iter).
  ValueRange loop(Value lb, Value ub, ValueRange init,
                  function_ref<SmallVector<Value>(Value, ValueRange)> body,
                  int64_t step = 1) {
    // The body is built once the loop exists, so that multipleOf can see
    // the induction variable's loop.
    auto forOp = scf::ForOp::create(b, loc, lb, ub, c(step), init);
    Block *bodyBlock = forOp.getBody();
    if (!bodyBlock->empty())
      bodyBlock->getTerminator()->erase();
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToEnd(bodyBlock);
    SmallVector<Value> next =
        body(forOp.getInductionVar(), forOp.getRegionIterArgs());
    scf::YieldOp::create(b, loc, next);
    return forOp.getResults();
  }
  /// The sum of `v` over the 32 lanes of a warp, in every lane.
  Value warpSum(Value v) {
    for (int32_t offset : {16, 8, 4, 2, 1})
      v = add(v, gpu::ShuffleOp::create(b, loc, v, offset, 32,
                                        gpu::ShuffleMode::XOR)
                     .getShuffleResult());
    return v;
  }
  using ColumnLoad = function_ref<SmallVector<Value>(Value col)>;
  using ColumnStore = function_ref<void(Value col, ValueRange loaded)>;
  /// The columns [0, n) that thread `tid` of the rowThreads threads of a row
  /// covers in a row kernel, coalesced across them: `load(col)` reads what a
  /// column needs, `store(col, loaded)` computes and writes it. Where n
  /// allows, the callbacks run as vector bodies (`width` columns from
  /// `col`, 16-byte accesses for 2-byte types), up to `maxUnroll` vectors
  /// at once with all their loads issued before any store: as far as LLVM
  /// knows the buffers may alias, so it would not move a load above an
  /// earlier store itself, and each thread would wait for one load at a
  /// time.
  void columns(Value tid, int64_t n, ColumnLoad load, ColumnStore store,
               int64_t maxUnroll = 8) {
    if (n % rowThreads != 0) {
      loop(
          tid, c(n), ValueRange{},
          [&](Value j, ValueRange) {
            store(j, load(j));
            return SmallVector<Value>{};
          },
          rowThreads);
      return;
    }
    int64_t vec = 8;
    while (vec > 1 && n % (rowThreads * vec) != 0)
      vec /= 2;
    int64_t unroll = std::min(maxUnroll, std::max<int64_t>(1, 16 / vec));
    while (unroll > 1 && n % (rowThreads * vec * unroll) != 0)
      unroll /= 2;
    Value first = mul(tid, c(vec));
    loop(
        c(0), c(n), ValueRange{},
        [&](Value j0, ValueRange) {
          llvm::SaveAndRestore<int64_t> vectorBody(width, vec);
          SmallVector<Value> cols;
          SmallVector<SmallVector<Value>> loaded;
          for (int64_t u = 0; u < unroll; ++u) {
            cols.push_back(add(j0, add(c(u * rowThreads * vec), first)));
            loaded.push_back(load(cols.back()));
          }
          for (int64_t u = 0; u < unroll; ++u)
            store(cols[u], loaded[u]);
          return SmallVector<Value>{};
        },
        rowThreads * vec * unroll);
  }
  void when(Value cond, function_ref<void()> body) {
    auto ifOp = scf::IfOp::create(b, loc, cond, /*withElseRegion=*/false);
    OpBuilder::InsertionGuard g(b);
    b.setInsertionPointToStart(&ifOp.getThenRegion().front());
    body();
  }

  // Activations and their derivatives, on f32.
  //
  // They run once per element of the T*k x d_hidden activations, where the
  // passes over h are as much bound by their arithmetic as by memory: so
  // the exponentials and reciprocals below are the GPU's approximate ones
  // (ex2.approx, rcp.approx; a few ulp), and GeLU avoids erf.
  Value fma(Value x, Value y, Value z) {
    std::tie(x, y) = same(x, y);
    return math::FmaOp::create(b, loc, x, y, splat(z, x));
  }
  /// acc + sum_u x[u] * y[u] over the elements of x and y (vectors of one
  /// shape, or scalars), in f32 FMAs.
  Value dot(Value x, Value y, Value acc) {
    auto vec = dyn_cast<VectorType>(x.getType());
    if (!vec)
      return fma(x, y, acc);
    for (int64_t u = 0; u < vec.getNumElements(); ++u)
      acc =
          fma(vector::ExtractOp::create(b, loc, x, ArrayRef<int64_t>{u}),
              vector::ExtractOp::create(b, loc, y, ArrayRef<int64_t>{u}), acc);
    return acc;
  }
  /// 1 / x, to a few ulp (rcp.approx on the GPU).
  Value recip(Value x) {
    auto fast = arith::FastMathFlagsAttr::get(b.getContext(),
                                              arith::FastMathFlags::afn);
    return arith::DivFOp::create(b, loc, splat(f(1.0), x), x, fast);
  }
  Value exp2(Value x) { return math::Exp2Op::create(b, loc, x); }
  Value sigmoid(Value x) {
    return recip(add(f(1.0), exp2(mul(x, f(-M_LOG2E)))));
  }
  /// The standard normal's CDF Phi(x) and density phi(x) from one exp2 and
  /// one reciprocal (the form and its accuracy: fmoe/Support/NormalApprox.h).
  std::pair<Value, Value> normalCdfPdf(Value x) {
    Value a = math::AbsFOp::create(b, loc, x);
    Value t = recip(fma(a, f(::fmoe::kNormalTailScale), f(1.0)));
    Value e = exp2(mul(mul(x, f(::fmoe::kHalfSquareToExp2)), x));
    using ::fmoe::kNormalTailPoly, ::fmoe::kNormalTailPolyTerms;
    Value poly = splat(f(kNormalTailPoly[kNormalTailPolyTerms - 1]), x);
    for (int i = kNormalTailPolyTerms - 2; i >= 0; --i)
      poly = fma(poly, t, f(kNormalTailPoly[i]));
    Value tail = mul(mul(poly, t), e);
    Value cdf = sel(cmpf(arith::CmpFPredicate::OLT, x, f(0.0)), tail,
                    sub(f(1.0), tail));
    return {cdf, mul(e, f(::fmoe::kInvSqrt2Pi))};
  }
  Value act(Activation a, Value x) {
    switch (a) {
    case Activation::relu:
      return max(x, f(0.0));
    case Activation::gelu:
    case Activation::geglu:
      return mul(x, normalCdfPdf(x).first);
    case Activation::gelu_tanh: {
      Value t = geluTanhInner(x);
      return mul(mul(f(0.5), x), add(f(1.0), t));
    }
    case Activation::silu:
    case Activation::swiglu:
      return mul(x, sigmoid(x));
    }
    llvm_unreachable("unknown activation");
  }
  Value geluTanhInner(Value x) {
    Value x3 = mul(mul(x, x), x);
    Value inner = mul(f(0.7978845608028654), add(x, mul(f(0.044715), x3)));
    return math::TanhOp::create(b, loc, inner);
  }
  Value actGrad(Activation a, Value x) {
    switch (a) {
    case Activation::relu:
      return sel(cmpf(arith::CmpFPredicate::OGT, x, f(0.0)), f(1.0), f(0.0));
    case Activation::gelu:
    case Activation::geglu: {
      auto [cdf, pdf] = normalCdfPdf(x);
      return fma(x, pdf, cdf);
    }
    case Activation::gelu_tanh: {
      Value t = geluTanhInner(x);
      Value dInner = mul(f(0.7978845608028654),
                         add(f(1.0), mul(f(3 * 0.044715), mul(x, x))));
      return add(mul(f(0.5), add(f(1.0), t)),
                 mul(mul(mul(f(0.5), x), sub(f(1.0), mul(t, t))), dInner));
    }
    case Activation::silu:
    case Activation::swiglu: {
      Value s = sigmoid(x);
      return mul(s, add(f(1.0), mul(x, sub(f(1.0), s))));
    }
    }
    llvm_unreachable("unknown activation");
  }
};

} // namespace mlir::fmoe::lowering

#endif // FMOE_LIB_CONVERSION_KERNELBUILDER_H
