//===- LowerToRuntime.cpp - fmoe stages to kernels and runtime calls ------===//
//
// Part of fmoe. Rewrites each layer function in destination-passing style on
// flat buffers and lowers every stage to GPU kernels (built with the
// gpu/scf/arith/math/vector dialects through KernelBuilder.h, specialised
// for the layer's static sizes) and calls into the runtime library for
// grouped GEMMs, all-to-alls and memsets.
//
// Every buffer's size is linear in the token count T; allocations and
// launches carry that size as attributes (`fmoe.rows`, `fmoe.cols`,
// `fmoe.work`) so that the module writer can record it without evaluating
// IR.
//
//===----------------------------------------------------------------------===//

#include "KernelBuilder.h"
#include "fmoe/Support/Placement.h"
#include "fmoe/Transforms/Passes.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mlir::fmoe {
#define GEN_PASS_DEF_FMOELOWERTORUNTIME
#include "fmoe/Transforms/Passes.h.inc"
} // namespace mlir::fmoe

using namespace mlir;
using namespace mlir::fmoe;
using namespace mlir::fmoe::lowering;

namespace {

/// perToken * T + constant + perReceived * R, R being the rows the layer's
/// expert-parallel exchange received (known to the runtime once it ran).
struct Lin {
  int64_t perToken = 0;
  int64_t constant = 0;
  int64_t perReceived = 0;
  Lin operator*(int64_t k) const {
    return {perToken * k, constant * k, perReceived * k};
  }
  bool operator==(const Lin &o) const {
    return perToken == o.perToken && constant == o.constant &&
           perReceived == o.perReceived;
  }
};

/// A tensor value's buffer: `rows x cols` elements.
struct Buf {
  Value mem;
  Lin rows;
  int64_t cols = 1;
};

Type elementOf(Value v) {
  return cast<ShapedType>(v.getType()).getElementType();
}
int64_t dim(Value v, unsigned i) {
  return cast<ShapedType>(v.getType()).getDimSize(i);
}

//===----------------------------------------------------------------------===//
// The lowering of one layer function
//===----------------------------------------------------------------------===//

class FunctionLowering {
public:
  FunctionLowering(ModuleOp module, gpu::GPUModuleOp kernels, func::FuncOp func,
                   ArrayRef<Lin> savedRows, bool keepSaved, bool fusedEpilogues)
      : module(module), kernels(kernels), func(func), savedRows(savedRows),
        keepSaved(keepSaved), fusedEpilogues(fusedEpilogues),
        b(func.getContext()) {}

  /// Rows of the forward function's results (for its backward).
  SmallVector<Lin> resultRows;

  LogicalResult run() {
    auto ret = cast<func::ReturnOp>(func.front().getTerminator());
    Location loc = func.getLoc();
    SmallVector<Type> argTypes{b.getIndexType()};
    for (Type t : func.getArgumentTypes())
      argTypes.push_back(flat(t));
    for (Type t : func.getResultTypes())
      argTypes.push_back(flat(t));
    b.setInsertionPoint(func);
    newFunc = func::FuncOp::create(b, loc, func.getName(),
                                   b.getFunctionType(argTypes, {}));
    for (NamedAttribute attr : func->getDiscardableAttrs())
      newFunc->setAttr(attr.getName(), attr.getValue());
    Block *entry = newFunc.addEntryBlock();
    b.setInsertionPointToStart(entry);
    tokens = entry->getArgument(0);

    // Inputs: the token count is the input's (forward) or the output
    // gradient's (backward) row count.
    bool backward = func->hasAttr("fmoe.forward");
    unsigned numArgs = func.getNumArguments();
    unsigned firstSaved = numArgs - savedRows.size();
    for (auto [i, arg] : llvm::enumerate(func.getArguments())) {
      Lin rows = {0, 0};
      auto shaped = cast<ShapedType>(arg.getType());
      if (shaped.isDynamicDim(0))
        rows = i >= firstSaved ? savedRows[i - firstSaved] : Lin{1, 0};
      else
        rows = {0, shaped.getDimSize(0)};
      bufs[arg] = {entry->getArgument(1 + i), rows, colsOf(arg.getType())};
    }
    for (auto [j, v] : llvm::enumerate(ret.getOperands())) {
      if (outputs.count(v) || isa<BlockArgument>(v))
        return func.emitError("cannot lower a layer function that returns an "
                              "argument or one value twice");
      outputs[v] = entry->getArgument(1 + numArgs + j);
    }

    for (Operation &op : func.front().without_terminator())
      if (failed(lower(&op)))
        return failure();
    if (!deferredGathers.empty())
      return deferredGathers.begin()->second.emitError(
          "gathered rows deferred to their reader were never made");

    // Argument metadata for the module writer and the runtime.
    SmallVector<Attribute> argInfo;
    auto info = [&](StringRef name, StringRef role, Lin rows, int64_t cols,
                    bool clobbers = false) {
      SmallVector<NamedAttribute> fields{
          b.getNamedAttr("name", b.getStringAttr(name)),
          b.getNamedAttr("role", b.getStringAttr(role)),
          b.getNamedAttr("rows", linAttr(rows)),
          b.getNamedAttr("cols", b.getI64IntegerAttr(cols))};
      if (clobbers)
        fields.push_back(b.getNamedAttr("clobbered", b.getUnitAttr()));
      return b.getDictionaryAttr(fields);
    };
    for (auto [i, arg] : llvm::enumerate(func.getArguments()))
      newFunc.setArgAttr(1 + i, "fmoe.buffer",
                         info(argName(i, backward), "input", bufs[arg].rows,
                              bufs[arg].cols, clobbered.contains(arg)));
    for (auto [j, v] : llvm::enumerate(ret.getOperands())) {
      Buf &out = bufs[v];
      resultRows.push_back(out.rows);
      newFunc.setArgAttr(
          1 + numArgs + j, "fmoe.buffer",
          info(resultName(j, backward), "output", out.rows, out.cols));
    }
    newFunc.setArgAttr(0, "fmoe.tokens", b.getUnitAttr());
    for (Value mem : temps)
      memref::DeallocOp::create(b, loc, mem);
    func::ReturnOp::create(b, loc);
    func.erase();
    return success();
  }

private:
  /// The forward's name for its argument `i` (set by --fmoe-decompose).
  std::string forwardArgName(unsigned i) {
    func::FuncOp fwd = func;
    if (auto ref = func->getAttrOfType<FlatSymbolRefAttr>("fmoe.forward"))
      if (auto f = module.lookupSymbol<func::FuncOp>(ref.getValue()))
        fwd = f;
    if (auto names = fwd->getAttrOfType<ArrayAttr>("fmoe.arg_names"))
      if (i < names.size())
        if (auto s = dyn_cast<StringAttr>(names[i]); s && !s.empty())
          return s.str();
    return "arg" + std::to_string(i);
  }
  /// Forward: (forward args...). Backward: (grad_output, forward args...,
  /// saved...).
  std::string argName(unsigned i, bool backward) {
    if (!backward)
      return forwardArgName(i);
    if (i == 0)
      return "grad_output";
    unsigned firstSaved = func.getNumArguments() - savedRows.size();
    if (i >= firstSaved)
      return "saved" + std::to_string(i - firstSaved);
    return forwardArgName(i - 1);
  }
  std::string resultName(unsigned j, bool backward) {
    if (backward)
      return "grad_" + forwardArgName(j);
    return j == 0 ? "output" : "saved" + std::to_string(j - 1);
  }

  static Type flat(Type t) {
    return MemRefType::get({ShapedType::kDynamic},
                           cast<ShapedType>(t).getElementType());
  }
  static int64_t colsOf(Type t) {
    auto shaped = cast<ShapedType>(t);
    int64_t cols = 1;
    for (int64_t i = 1; i < shaped.getRank(); ++i)
      cols *= shaped.getDimSize(i);
    return shaped.getRank() == 0 ? 1 : cols;
  }

  Value lin(Lin l) {
    KB k{b, func.getLoc()};
    Value v = k.c(l.constant);
    if (l.perToken)
      v = k.add(k.mul(tokens, k.c(l.perToken)), v);
    if (l.perReceived) {
      // R in the IR is its bound, world_size x the exchange's input rows
      // (set when the first forward exchange is lowered): the IR's sizes
      // stay valid; the recorded Lin gives the runtime the exact R.
      if (!received)
        llvm::report_fatal_error("fmoe-lower-to-runtime: a size needs the "
                                 "received rows before any exchange");
      v = k.add(k.mul(received, k.c(l.perReceived)), v);
    }
    return v;
  }
  /// [perToken, constant] or, when R enters, [perToken, constant, perReceived].
  DenseI64ArrayAttr linAttr(Lin l) {
    if (l.perReceived)
      return b.getDenseI64ArrayAttr({l.perToken, l.constant, l.perReceived});
    return b.getDenseI64ArrayAttr({l.perToken, l.constant});
  }

  /// The buffer of `result`: the output argument when it is returned, a new
  /// allocation otherwise.
  Value define(Value result, Lin rows) {
    int64_t cols = colsOf(result.getType());
    auto shaped = cast<ShapedType>(result.getType());
    if (!shaped.isDynamicDim(0))
      rows = {0, shaped.getDimSize(0)};
    Value mem = outputs.lookup(result);
    if (!mem)
      mem = temp(result.getLoc(), elementOf(result), rows, cols);
    bufs[result] = {mem, rows, cols};
    return mem;
  }

  /// A temporary buffer of `rows` x `cols` elements, freed at the end of the
  /// function (the module writer records its last use).
  Value temp(Location loc, Type elt, Lin rows, int64_t cols) {
    auto alloc = memref::AllocOp::create(
        b, loc, MemRefType::get({ShapedType::kDynamic}, elt),
        ValueRange{lin(rows * cols)});
    alloc->setAttr("fmoe.rows", linAttr(rows));
    alloc->setAttr("fmoe.cols", b.getI64IntegerAttr(cols));
    temps.push_back(alloc);
    return alloc;
  }
  Value mem(Value v) { return bufs.lookup(v).mem; }
  /// Whether `v` is a saved input of this (backward) function read by one op
  /// only, so that op may write over it (unless --keep-saved).
  bool isOursToReuse(Value v) {
    auto arg = dyn_cast<BlockArgument>(v);
    return arg && arg.getOwner() == &func.front() && arg.hasOneUse() &&
           !keepSaved;
  }
  Lin rowsOf(Value v) { return bufs.lookup(v).rows; }

  /// Declares (once) and calls a runtime library function.
  void call(Operation *src, StringRef base, ValueRange args,
            ArrayRef<NamedAttribute> attrs) {
    std::string name = ("fmoe_rt_" + base).str();
    for (Value a : args) {
      Type elt = cast<MemRefType>(a.getType()).getElementType();
      if (isa<FloatType>(elt)) {
        std::string s;
        llvm::raw_string_ostream os(s);
        os << "_" << elt;
        name += s;
        break;
      }
    }
    if (!module.lookupSymbol(name)) {
      OpBuilder mb = OpBuilder::atBlockEnd(module.getBody());
      auto decl = func::FuncOp::create(
          mb, src->getLoc(), name,
          mb.getFunctionType(ValueRange(args).getTypes(), {}));
      decl.setPrivate();
    }
    auto op = func::CallOp::create(b, src->getLoc(), name, TypeRange(), args);
    op->setAttr("fmoe.op", b.getStringAttr(src->getName().getStringRef()));
    for (NamedAttribute a : attrs)
      op->setAttr(a.getName(), a.getValue());
  }

  void memset(Operation *src, Value buffer, int64_t byte) {
    call(src, "memset", buffer,
         {b.getNamedAttr("byte", b.getI64IntegerAttr(byte))});
  }

  using BlockBody =
      function_ref<void(KB &, Value block, Value thread, ValueRange, Value)>;

  /// Builds kernel `<func>_<suffix>` with `work` threads (linear in T, a
  /// multiple of kBlock) in blocks of kBlock and launches it on `args`
  /// (buffers) and T. The body gets the block and thread ids.
  void launchBlocks(Operation *src, StringRef suffix, ValueRange args, Lin work,
                    BlockBody body, ArrayRef<NamedAttribute> params) {
    std::string name = (func.getName() + "_" + suffix).str();
    unsigned n = 0;
    while (kernels.lookupSymbol(name + (n ? "_" + std::to_string(n) : "")))
      ++n;
    if (n)
      name += "_" + std::to_string(n);
    Location loc = src->getLoc();
    OpBuilder kb = OpBuilder::atBlockEnd(kernels.getBody());
    SmallVector<Type> types(ValueRange(args).getTypes());
    types.push_back(kb.getIndexType());
    auto fn =
        gpu::GPUFuncOp::create(kb, loc, name, kb.getFunctionType(types, {}));
    fn->setAttr(gpu::GPUDialect::getKernelFuncAttrName(), kb.getUnitAttr());
    lastKernel = fn;
    Block &entry = fn.getBody().front();
    kb.setInsertionPointToStart(&entry);
    KB k{kb, loc};
    Value tid = gpu::ThreadIdOp::create(kb, loc, gpu::Dimension::x);
    Value bid = gpu::BlockIdOp::create(kb, loc, gpu::Dimension::x);
    body(k, bid, tid, entry.getArguments().drop_back(),
         entry.getArguments().back());
    gpu::ReturnOp::create(kb, loc);

    KB h{b, loc};
    Value items = lin(work);
    Value grid = arith::CeilDivUIOp::create(b, loc, items, h.c(kBlock));
    SmallVector<Value> operands(args);
    operands.push_back(tokens);
    auto launchOp = gpu::LaunchFuncOp::create(
        b, loc, fn, gpu::KernelDim3{grid, h.c(1), h.c(1)},
        gpu::KernelDim3{h.c(kBlock), h.c(1), h.c(1)}, Value(), operands);
    launchOp->setAttr("fmoe.op",
                      b.getStringAttr(src->getName().getStringRef()));
    launchOp->setAttr("fmoe.work", linAttr(work));
    launchOp->setAttr("fmoe.block", b.getI64IntegerAttr(kBlock));
    // What the kernel computes, for backends that run a reference
    // implementation instead of the PTX.
    launchOp->setAttr("fmoe.kernel", b.getStringAttr(suffix));
    for (NamedAttribute p : params)
      launchOp->setAttr(("fmoe.param." + p.getName().strref()).str(),
                        p.getValue());
    for (NamedAttribute a : src->getAttrs())
      if (a.getName() != "operandSegmentSizes" &&
          a.getName() != "resultSegmentSizes")
        launchOp->setAttr(("fmoe.attr." + a.getName().strref()).str(),
                          a.getValue());
  }

  /// The kernel launchBlocks created last.
  gpu::GPUFuncOp lastKernel;

  /// Asks ptxas to fit `blocks` blocks of the last kernel on an SM (it
  /// limits the registers a thread accordingly), for kernels that need the
  /// warps to hide their loads' latency more than registers.
  void minBlocksPerSM(int64_t blocks) {
    lastKernel->setAttr("nvvm.maxntid", b.getDenseI32ArrayAttr({kBlock, 1, 1}));
    lastKernel->setAttr("nvvm.minctasm", b.getI32IntegerAttr(blocks));
  }

  /// A kernel with one thread per item of `work` (linear in T): the body gets
  /// the item `i` only when i < work.
  void launch(Operation *src, StringRef suffix, ValueRange args, Lin work,
              function_ref<void(KB &, Value, ValueRange, Value)> body,
              ArrayRef<NamedAttribute> params = {}) {
    // The kernel bounds its items by T; work over received rows runs as
    // row kernels (launchRows), whose grid is exact.
    if (work.perReceived)
      llvm::report_fatal_error("fmoe-lower-to-runtime: an item kernel over "
                               "received rows (use a row kernel)");
    launchBlocks(
        src, suffix, args, work,
        [&](KB &k, Value bid, Value tid, ValueRange a, Value t) {
          Value i = k.add(k.mul(bid, k.c(kBlock)), tid);
          Value count = k.add(k.mul(t, k.c(work.perToken)), k.c(work.constant));
          k.when(k.cmpi(arith::CmpIPredicate::ult, i, count),
                 [&] { body(k, i, a, t); });
        },
        params);
  }

  /// Rows a row kernel's block covers: short rows share a block (up to 8,
  /// about 4096 columns in all, kBlock / rows threads each), as a block per
  /// short row would spend more time being scheduled than moving data.
  static int64_t rowsPerBlock(int64_t cols) {
    int64_t n = 1;
    while (n < 8 && cols * n * 2 <= 4096)
      n *= 2;
    return n;
  }

  /// A row kernel: blocks of kBlock threads over rowsPerBlock(cols)
  /// consecutive rows of `rows` (linear in T); the body gets the row and
  /// the thread's index among the row's threads (KB::rowThreads of them),
  /// and covers the row's columns with KB::columns. Rows past the end are
  /// skipped: by `inRange(k, row, args, T)` when given (which must then hold
  /// for no row past the end), else by the row count, which then may not
  /// depend on R (the kernel does not know R: a block per row instead).
  void launchRows(
      Operation *src, StringRef suffix, ValueRange args, Lin rows, int64_t cols,
      BlockBody body,
      function_ref<Value(KB &, Value, ValueRange, Value)> inRange = nullptr) {
    int64_t per = rowsPerBlock(cols);
    if (!inRange && rows.perReceived)
      per = 1;
    launchBlocks(
        src, suffix, args, rows * (kBlock / per),
        [&](KB &k, Value bid, Value tid, ValueRange a, Value t) {
          k.rowThreads = kBlock / per;
          if (per == 1 && !inRange)
            return body(k, bid, tid, a, t); // the grid is exact
          Value r = bid, lane = tid;
          if (per > 1) {
            r = k.add(k.mul(bid, k.c(per)), k.div(tid, k.c(kBlock / per)));
            lane = k.rem(tid, k.c(kBlock / per));
          }
          Value ok = inRange ? inRange(k, r, a, t)
                             : k.cmpi(arith::CmpIPredicate::ult, r,
                                      k.add(k.mul(t, k.c(rows.perToken)),
                                            k.c(rows.constant)));
          k.when(ok, [&] { body(k, r, lane, a, t); });
        },
        {b.getNamedAttr("rows_per_block", b.getI64IntegerAttr(per))});
  }

  /// The row kernel of a grouped buffer: body(k, row, thread, args) only for
  /// rows before offsets[groups] (args[offsetsOperand] is the offsets).
  void
  launchGroupedRows(Operation *src, StringRef suffix, ValueRange args, Lin rows,
                    int64_t cols, int64_t offsetsOperand, int64_t groups,
                    function_ref<void(KB &, Value, Value, ValueRange)> body) {
    launchRows(
        src, suffix, args, rows, cols,
        [&](KB &k, Value r, Value tid, ValueRange a, Value) {
          body(k, r, tid, a);
        },
        [&](KB &k, Value r, ValueRange a, Value) {
          Value used = k.ld(a[offsetsOperand], k.c(groups));
          return k.cmpi(arith::CmpIPredicate::slt, k.toI32(r), used);
        });
  }

  //===--------------------------------------------------------------------===//
  // Forward stages
  //===--------------------------------------------------------------------===//

  /// Columns of x and of the gate's weights a lane of the gate loads at once:
  /// 8 (16 bytes of bf16) where every row is a whole number of the warp's
  /// 32 * 8 columns, else 1.
  static int64_t gateColumnsPerLoad(int64_t d) { return d % 256 == 0 ? 8 : 1; }
  /// Tokens per warp of the gate: each weight element a lane loads serves
  /// that many tokens. Their partial sums (tokens x experts), and with
  /// vector loads their loaded columns, stay in registers: at most 64
  /// values (16 experts with 8 columns a load: two tokens; more spilled
  /// under the gate's 128 registers).
  static int64_t gateTokensPerWarp(int64_t e, int64_t d) {
    int64_t vec = gateColumnsPerLoad(d);
    return std::clamp<int64_t>(64 / (e + (vec > 1 ? vec : 0)), 1, 4);
  }

  /// logits[t, e] = bias[e] + sum_d x[t, d] * w[e, d] for the tokens of the
  /// warp of thread `i` (gateTokensPerWarp(e, d) consecutive tokens, of
  /// `tokens`): each lane sums every 32nd column for every token and expert
  /// (coalesced loads), the lanes reduce by shuffles (every lane then holds
  /// every sum), and lane r picks token r's logits out of them, stores them
  /// and runs `then(token, logits)` for it with the logits in registers; the
  /// warp's tokens are stored and routed in parallel.
  static void
  gateBody(KB &k, Value i, Value tokens, Value x, Value w, Value bias,
           Value logits, int64_t e, int64_t d,
           function_ref<void(Value, ArrayRef<Value>)> then = nullptr) {
    int64_t perWarp = gateTokensPerWarp(e, d);
    Value lane = k.rem(i, k.c(32));
    Value first = k.mul(k.div(i, k.c(32)), k.c(perWarp));
    k.when(k.cmpi(arith::CmpIPredicate::ult, first, tokens), [&] {
      SmallVector<Value> tok;
      for (int64_t r = 0; r < perWarp; ++r) {
        Value t = k.add(first, k.c(r));
        tok.push_back(
            k.sel(k.cmpi(arith::CmpIPredicate::ult, t, tokens), t, first));
      }
      int64_t vec = gateColumnsPerLoad(d);
      SmallVector<Value> zeros(perWarp * e, k.f(0.0));
      ValueRange partial = k.loop(
          k.mul(lane, k.c(vec)), k.c(d), zeros,
          [&](Value dd, ValueRange a) {
            llvm::SaveAndRestore<int64_t> wide(k.width, vec);
            SmallVector<Value> xv;
            for (int64_t r = 0; r < perWarp; ++r)
              xv.push_back(k.ld(x, k.add(k.mul(tok[r], k.c(d)), dd)));
            SmallVector<Value> next(a.begin(), a.end());
            // One expert's weights at a time, for every token of the warp.
            for (int64_t j = 0; j < e; ++j) {
              Value wv = k.ld(w, k.add(k.c(j * d), dd));
              for (int64_t r = 0; r < perWarp; ++r)
                next[r * e + j] = k.dot(xv[r], wv, next[r * e + j]);
            }
            return next;
          },
          /*step=*/32 * vec);
      SmallVector<Value> sums;
      for (Value p : partial)
        sums.push_back(k.warpSum(p));
      // Lane r's token: first + r, for r < perWarp.
      SmallVector<Value> mine;
      for (int64_t j = 0; j < e; ++j) {
        Value v = sums[j];
        for (int64_t r = 1; r < perWarp; ++r)
          v = k.sel(k.cmpi(arith::CmpIPredicate::eq, lane, k.c(r)),
                    sums[r * e + j], v);
        if (bias)
          v = k.add(v, k.ld(bias, k.c(j)));
        mine.push_back(v);
      }
      Value t = k.add(first, lane);
      Value valid =
          k.andi(k.cmpi(arith::CmpIPredicate::ult, lane, k.c(perWarp)),
                 k.cmpi(arith::CmpIPredicate::ult, t, tokens));
      k.when(valid, [&] {
        for (int64_t j = 0; j < e; ++j)
          k.st(mine[j], logits, k.add(k.mul(t, k.c(e)), k.c(j)));
        if (then)
          then(t, mine);
      });
    });
  }

  /// Experts up to which bias_route routes a token from registers (loops
  /// unrolled over the experts) rather than from its logits in memory.
  static constexpr int64_t kRouteInRegisters = 128;

  /// Top-k of token t's logits (ties to the lower id), then the scores. The
  /// logits are `regs` (one per expert, in registers: the loops over the
  /// experts are unrolled, so that no step waits for a load) or, when
  /// `regs` is empty, row t of `logits` in memory.
  static void routeBody(KB &k, Value t, Value logits, ArrayRef<Value> regs,
                        Value indices, Value scores, Value counts, int64_t e,
                        int64_t topK, GateKind kind, bool renormalize) {
    Value row = k.mul(t, k.c(e));
    // acc = step(j, logit j, acc) over the experts j in order.
    auto overExperts =
        [&](ValueRange init,
            function_ref<SmallVector<Value>(Value, Value, ValueRange)> step) {
          if (regs.empty()) {
            ValueRange r =
                k.loop(k.c(0), k.c(e), init, [&](Value j, ValueRange a) {
                  return step(j, k.ld(logits, k.add(row, j)), a);
                });
            return SmallVector<Value>(r.begin(), r.end());
          }
          SmallVector<Value> acc(init.begin(), init.end());
          for (int64_t j = 0; j < e; ++j)
            acc = step(k.c(j), regs[j], acc);
          return acc;
        };
    Value prevV = k.f(std::numeric_limits<float>::infinity());
    Value prevE = k.c(-1);
    SmallVector<Value> picked;
    for (int64_t s = 0; s < topK; ++s) {
      // The best expert strictly after (prevV, prevE) in (value desc, id asc).
      SmallVector<Value> best = overExperts(
          ValueRange{k.f(0.0), k.c(-1)}, [&](Value j, Value v, ValueRange a) {
            Value after =
                k.ori(k.cmpf(arith::CmpFPredicate::OLT, v, prevV),
                      k.andi(k.cmpf(arith::CmpFPredicate::OEQ, v, prevV),
                             k.cmpi(arith::CmpIPredicate::sgt, j, prevE)));
            Value none = k.cmpi(arith::CmpIPredicate::slt, a[1], k.c(0));
            Value better = k.andi(
                after, k.ori(none, k.cmpf(arith::CmpFPredicate::OGT, v, a[0])));
            return SmallVector<Value>{k.sel(better, v, a[0]),
                                      k.sel(better, j, a[1])};
          });
      // A round that finds nothing (fewer than topK non-NaN logits) leaves
      // the order's position alone: the later rounds find nothing either.
      Value found = k.cmpi(arith::CmpIPredicate::sge, best[1], k.c(0));
      prevV = k.sel(found, best[0], prevV);
      prevE = k.sel(found, best[1], prevE);
      picked.push_back(best[0]);
      Value slot = k.add(k.mul(t, k.c(topK)), k.c(s));
      k.st(k.toI32(best[1]), indices, slot);
      if (counts)
        k.when(k.cmpi(arith::CmpIPredicate::sge, best[1], k.c(0)),
               [&] { k.atomicAdd(k.i32(1), counts, best[1]); });
    }
    SmallVector<Value> p;
    switch (kind) {
    case GateKind::naive: {
      Value sum = k.f(0.0);
      for (Value v : picked) {
        p.push_back(k.exp(k.sub(v, picked[0])));
        sum = k.add(sum, p.back());
      }
      for (Value &v : p)
        v = k.div(v, sum);
      break;
    }
    case GateKind::softmax_topk: {
      Value z = overExperts(k.f(0.0), [&](Value, Value v, ValueRange a) {
        return SmallVector<Value>{k.add(a[0], k.exp(k.sub(v, picked[0])))};
      })[0];
      for (Value v : picked)
        p.push_back(k.div(k.exp(k.sub(v, picked[0])), z));
      break;
    }
    case GateKind::sigmoid:
      for (Value v : picked)
        p.push_back(k.sigmoid(v));
      break;
    }
    if (renormalize) {
      Value sum = k.f(0.0);
      for (Value v : p)
        sum = k.add(sum, v);
      for (Value &v : p)
        v = k.div(v, sum);
    }
    for (auto [s, v] : llvm::enumerate(p))
      k.st(v, scores, k.add(k.mul(t, k.c(topK)), k.c(s)));
  }

  LogicalResult lowerGate(GateOp op) {
    int64_t e = dim(op.getLogits(), 1), d = dim(op.getInput(), 1);
    Value logits = define(op.getLogits(), rowsOf(op.getInput()));
    SmallVector<Value> args{mem(op.getInput()), mem(op.getWeight())};
    bool bias = static_cast<bool>(op.getBias());
    if (bias)
      args.push_back(mem(op.getBias()));
    args.push_back(logits);
    launch(op, "gate", args, rowsOf(op.getInput()) * 32,
           [&](KB &k, Value i, ValueRange a, Value t) {
             gateBody(k, i, t, a[0], a[1], bias ? a[2] : Value(), a.back(), e,
                      d);
           });
    return success();
  }

  LogicalResult lowerRoute(RouteOp op) {
    int64_t e = dim(op.getLogits(), 1), topK = op.getTopK();
    Lin rows = rowsOf(op.getLogits());
    Value indices = define(op.getIndices(), rows);
    Value scores = define(op.getScores(), rows);
    GateKind kind = op.getGate();
    bool renorm = op.getRenormalize();
    launch(op, "route", {mem(op.getLogits()), indices, scores}, rows,
           [&](KB &k, Value t, ValueRange a, Value) {
             routeBody(k, t, a[0], {}, a[1], a[2], Value(), e, topK, kind,
                       renorm);
           });
    return success();
  }

  /// Whether the gate's logits are better computed by a (one-group)
  /// grouped GEMM with an f32 result than by the gate kernel on CUDA cores:
  /// for many experts, where the kernel's weight loads per token add up.
  /// The GEMM needs 16-byte rows.
  static bool gateByGemm(Value input, int64_t e, int64_t d) {
    int64_t bytes = elementOf(input).getIntOrFloatBitWidth() / 8;
    return e >= 32 && (e * bytes) % 16 == 0 && (d * bytes) % 16 == 0;
  }

  /// The attributes of a grouped GEMM that writes c[:, cCol:cCol+n] from
  /// kdim columns of a (leading dimensions lda, ldc) over `local` local
  /// experts.
  SmallVector<NamedAttribute> gemmAttrs(StringRef layout, int64_t n,
                                        int64_t kdim, int64_t lda, int64_t ldc,
                                        int64_t cCol, int64_t local) {
    return {b.getNamedAttr("layout", b.getStringAttr(layout)),
            b.getNamedAttr("n", b.getI64IntegerAttr(n)),
            b.getNamedAttr("k", b.getI64IntegerAttr(kdim)),
            b.getNamedAttr("lda", b.getI64IntegerAttr(lda)),
            b.getNamedAttr("ldc", b.getI64IntegerAttr(ldc)),
            b.getNamedAttr("c_col", b.getI64IntegerAttr(cCol)),
            b.getNamedAttr("local_experts", b.getI64IntegerAttr(local))};
  }

  /// The attributes of a grouped weight gradient dw[l] (m x n) = aᵀ b over
  /// the rows of local expert l, a's columns from aCol (leading dimensions
  /// lda, ldb).
  SmallVector<NamedAttribute> wgradAttrs(int64_t m, int64_t n, int64_t lda,
                                         int64_t aCol, int64_t ldb,
                                         int64_t local) {
    return {b.getNamedAttr("m", b.getI64IntegerAttr(m)),
            b.getNamedAttr("n", b.getI64IntegerAttr(n)),
            b.getNamedAttr("lda", b.getI64IntegerAttr(lda)),
            b.getNamedAttr("a_col", b.getI64IntegerAttr(aCol)),
            b.getNamedAttr("ldb", b.getI64IntegerAttr(ldb)),
            b.getNamedAttr("local_experts", b.getI64IntegerAttr(local))};
  }

  /// dw (m x n) = aᵀ b over every row (a: [T, m], b: [T, n]), as a
  /// one-group grouped_wgrad.
  void allRowsWgrad(Operation *op, Value a, Value bm, Value dw, int64_t m,
                    int64_t n) {
    SmallVector<NamedAttribute> attrs = wgradAttrs(m, n, m, 0, n, 1);
    attrs.push_back(allRowsAttr());
    call(op, "grouped_wgrad", {a, bm, dw, allRows(op)}, attrs);
  }

  /// Group offsets {0, T}: one group holding every row, for the gate's
  /// GEMMs. Their calls carry `all_rows = true`, which tells a library that
  /// the one group is every row of the operands (so that it may run them as
  /// a plain GEMM without reading the offsets).
  NamedAttribute allRowsAttr() {
    return b.getNamedAttr("all_rows", b.getBoolAttr(true));
  }
  /// The offsets {0, T} of one group holding every row (made once per
  /// function).
  Value allRows(Operation *op) {
    if (allRowsOffsets)
      return allRowsOffsets;
    allRowsOffsets = temp(op->getLoc(), b.getI32Type(), {0, 2}, 1);
    launch(op, "all_rows", {allRowsOffsets}, {0, 1},
           [&](KB &k, Value, ValueRange a, Value t) {
             k.st(k.i32(0), a[0], k.c(0));
             k.st(k.toI32(t), a[0], k.c(1));
           });
    return allRowsOffsets;
  }

  LogicalResult lowerGateRoute(GateRouteOp op) {
    int64_t e = dim(op.getLogits(), 1), d = dim(op.getInput(), 1);
    int64_t topK = op.getTopK();
    Lin rows = rowsOf(op.getInput());
    Value logits = define(op.getLogits(), rows);
    Value indices = define(op.getIndices(), rows);
    Value scores = define(op.getScores(), rows);
    Value counts = define(op.getCounts(), {0, e});
    memset(op, counts, 0);
    bool bias = static_cast<bool>(op.getBias());
    GateKind kind = op.getGate();
    bool renorm = op.getRenormalize();
    if (gateByGemm(op.getInput(), e, d)) {
      // logits = x Wᵀ as a one-group GEMM with an f32 result (tensor cores
      // for 16-bit inputs), then a thread per token adds the bias and routes.
      bool mixed = elementOf(op.getInput()) != elementOf(op.getLogits());
      SmallVector<NamedAttribute> attrs = gemmAttrs("nt", e, d, d, e, 0, 1);
      attrs.push_back(allRowsAttr());
      call(op, mixed ? "grouped_gemm_to_f32" : "grouped_gemm",
           {mem(op.getInput()), mem(op.getWeight()), logits, allRows(op)},
           attrs);
      SmallVector<Value> args{logits, indices, scores, counts};
      if (bias)
        args.push_back(mem(op.getBias()));
      launch(
          op, "bias_route", args, rows,
          [&](KB &k, Value t, ValueRange a, Value) {
            if (e > kRouteInRegisters) {
              if (bias)
                k.loop(k.c(0), k.c(e), ValueRange{}, [&](Value j, ValueRange) {
                  Value at = k.add(k.mul(t, k.c(e)), j);
                  k.st(k.add(k.ld(a[0], at), k.ld(a[4], j)), a[0], at);
                  return SmallVector<Value>{};
                });
              routeBody(k, t, a[0], {}, a[1], a[2], a[3], e, topK, kind,
                        renorm);
              return;
            }
            // Every logit loaded at once, then routed in registers (98 to
            // 112 us from memory on fine-grained's gate, 76 us so; a warp
            // per token with a shuffle top-k measured 94 us: runs 32-35).
            Value row = k.mul(t, k.c(e));
            SmallVector<Value> v;
            for (int64_t j = 0; j < e; ++j)
              v.push_back(k.ld(a[0], k.add(row, k.c(j))));
            if (bias)
              for (int64_t j = 0; j < e; ++j) {
                v[j] = k.add(v[j], k.ld(a[4], k.c(j)));
                k.st(v[j], a[0], k.add(row, k.c(j)));
              }
            routeBody(k, t, a[0], v, a[1], a[2], a[3], e, topK, kind, renorm);
          });
      return success();
    }
    SmallVector<Value> args{mem(op.getInput()), mem(op.getWeight())};
    if (bias)
      args.push_back(mem(op.getBias()));
    args.append({logits, indices, scores, counts});
    // One warp per gateTokensPerWarp(e, d) tokens; the launch keeps a warp per
    // token (sizes are linear in T) and the surplus warps exit at once.
    launch(op, "gate_route", args, rows * 32,
           [&](KB &k, Value i, ValueRange a, Value t) {
             unsigned o = bias ? 3 : 2;
             gateBody(k, i, t, a[0], a[1], bias ? a[2] : Value(), a[o], e, d,
                      [&](Value tok, ArrayRef<Value> logit) {
                        routeBody(k, tok, a[o], logit, a[o + 1], a[o + 2],
                                  a[o + 3], e, topK, kind, renorm);
                      });
           });
    // Two blocks an SM (128 registers a thread): at one (16 experts took
    // 255 registers and spilled), 61 us on classic's gate (run 34).
    minBlocksPerSM(2);
    return success();
  }

  LogicalResult lowerDispatch(DispatchOp op) {
    int64_t e = op.getNumExperts(), topK = dim(op.getIndices(), 1);
    Lin tokensRows = rowsOf(op.getIndices());
    Lin pairs = tokensRows * topK;
    Value counts;
    if (op.getCounts()) {
      counts = mem(op.getCounts());
    } else {
      counts = temp(op.getLoc(), b.getI32Type(), {0, e}, 1);
      memset(op, counts, 0);
      launch(op, "count", {mem(op.getIndices()), counts}, pairs,
             [&](KB &k, Value i, ValueRange a, Value) {
               Value ex = k.toIndex(k.ld(a[0], i));
               k.when(k.cmpi(arith::CmpIPredicate::sge, ex, k.c(0)),
                      [&] { k.atomicAdd(k.i32(1), a[1], ex); });
             });
    }
    Value offsets = define(op.getOffsets(), {0, e + 1});
    Value slotPos = define(op.getSlotPos(), tokensRows);
    Value tokenOf = define(op.getTokenOf(), pairs);
    // cursor[e] (next free row of expert e) and limit[e] (end of its group).
    Value scratch = temp(op.getLoc(), b.getI32Type(), {0, 2 * e}, 1);
    SmallVector<int64_t> order;
    if (auto o = op.getExpertOrder())
      order.assign(o->begin(), o->end());
    else
      for (int64_t j = 0; j < e; ++j)
        order.push_back(j);
    std::optional<double> capacity;
    if (auto cf = op.getCapacityFactorAttr())
      capacity = cf.getValueAsDouble();
    launch(op, "offsets", {counts, offsets, scratch}, {0, 1},
           [&](KB &k, Value, ValueRange a, Value t) {
             Value cap;
             if (capacity) {
               // ceil(capacity * T * K / E) rows per expert.
               Value rows = arith::IndexCastOp::create(
                   k.b, k.loc, k.b.getI64Type(), k.mul(t, k.c(topK)));
               Value fl =
                   arith::UIToFPOp::create(k.b, k.loc, k.b.getF64Type(), rows);
               Value scaled = arith::MulFOp::create(
                   k.b, k.loc, fl,
                   arith::ConstantOp::create(
                       k.b, k.loc, k.b.getF64FloatAttr(*capacity / e)));
               Value ceil = math::CeilOp::create(k.b, k.loc, scaled);
               cap =
                   arith::FPToUIOp::create(k.b, k.loc, k.b.getI32Type(), ceil);
             }
             Value run = k.i32(0);
             for (int64_t g = 0; g < e; ++g) {
               Value ex = k.c(order[g]);
               Value n = k.ld(a[0], ex);
               if (cap)
                 n = arith::MinUIOp::create(k.b, k.loc, n, cap);
               k.st(run, a[1], k.c(g));
               k.st(run, a[2], ex);
               run = k.add(run, n);
               k.st(run, a[2], k.add(ex, k.c(e)));
             }
             k.st(run, a[1], k.c(e));
           },
           {b.getNamedAttr("top_k", b.getI64IntegerAttr(topK))});
    memset(op, tokenOf, 255);
    launch(op, "scatter", {mem(op.getIndices()), scratch, slotPos, tokenOf},
           pairs, [&](KB &k, Value i, ValueRange a, Value) {
             Value ex = k.toIndex(k.ld(a[0], i));
             Value valid = k.cmpi(arith::CmpIPredicate::sge, ex, k.c(0));
             Value safe = k.sel(valid, ex, k.c(0));
             k.st(k.i32(-1), a[2], i);
             k.when(valid, [&] {
               Value p = k.atomicAdd(k.i32(1), a[1], safe);
               Value limit = k.ld(a[1], k.add(safe, k.c(e)));
               k.when(k.cmpi(arith::CmpIPredicate::slt, p, limit), [&] {
                 k.st(p, a[2], i);
                 k.st(k.toI32(k.div(i, k.c(topK))), a[3], k.toIndex(p));
               });
             });
           });
    return success();
  }

  LogicalResult lowerGather(GatherOp op) {
    Lin rows = rowsOf(op.getTokenOf());
    // Rows that only the expert stage's backward reads are gathered there,
    // after dy's last use, into dy's memory when it is free
    // (materializeRows): the buffer is named now, made later.
    Value result = op.getRows();
    if (result.hasOneUse() && isa<ExpertGradOp>(*result.getUsers().begin()) &&
        !outputs.count(result)) {
      deferredGathers[result] = op;
      bufs[result] = {Value(), rows, dim(op.getInput(), 1)};
      return success();
    }
    Value out = define(op.getRows(), rows);
    gatherRows(op, mem(op.getInput()), mem(op.getTokenOf()), out, rows,
               dim(op.getInput(), 1));
    return success();
  }

  /// The rows `op` reads: those of a deferred gather are gathered now, into
  /// `scratch` when given (else a buffer of their own).
  Value materializeRows(ExpertGradOp op, Value scratch) {
    auto gather = deferredGathers.find(op.getRows());
    if (gather == deferredGathers.end())
      return mem(op.getRows());
    GatherOp g = gather->second;
    Buf &buf = bufs[op.getRows()];
    buf.mem =
        scratch ? scratch
                : temp(g.getLoc(), elementOf(g.getRows()), buf.rows, buf.cols);
    gatherRows(g, mem(g.getInput()), mem(g.getTokenOf()), buf.mem, buf.rows,
               buf.cols);
    deferredGathers.erase(gather);
    return buf.mem;
  }

  /// Whether op's dy buffer is free for other [rows, d] data of its type
  /// once op has read it: the combine's gradient (one rank) made it for op
  /// alone, and it is not a result of the function. (It may be the saved
  /// expert outputs, which the combine's gradient already wrote over.)
  bool dyIsScratch(ExpertGradOp op, Lin rows, int64_t d) {
    Value dy = op.getGradY();
    return dy.getDefiningOp<CombineGradOp>() && dy.hasOneUse() &&
           !outputs.count(dy) && elementOf(dy) == elementOf(op.getRows()) &&
           dim(dy, 1) == d && rowsOf(dy) == rows;
  }

  /// out[r] = input[token_of[r]] (zeros where token_of[r] = -1).
  void gatherRows(Operation *op, Value input, Value tokenOf, Value out,
                  Lin rows, int64_t d) {
    launchRows(op, "gather", {input, tokenOf, out}, rows, d,
               [&](KB &k, Value r, Value tid, ValueRange a, Value) {
                 Value t = k.toIndex(k.ld(a[1], r));
                 Value valid = k.cmpi(arith::CmpIPredicate::sge, t, k.c(0));
                 Value src = k.mul(k.sel(valid, t, k.c(0)), k.c(d));
                 Value dst = k.mul(r, k.c(d));
                 k.columns(
                     tid, d,
                     [&](Value col) {
                       return SmallVector<Value>{k.ld(a[0], k.add(src, col))};
                     },
                     [&](Value col, ValueRange v) {
                       k.st(k.sel(valid, v[0], k.f(0.0)), a[2],
                            k.add(dst, col));
                     });
               });
  }

  /// The local expert of row `r`. Groups are expert-major: local expert l
  /// owns groups [l*S, (l+1)*S), S = groups / local (one per source rank).
  static Value localExpertOf(KB &k, Value offsets, Value r, int64_t groups,
                             int64_t local) {
    // Binary search for the last group starting at or before r (empty
    // groups share their start with the next one, which wins).
    Value ri = k.toI32(r);
    int64_t steps = 0;
    while ((int64_t(1) << steps) < groups)
      ++steps;
    ValueRange range =
        k.loop(k.c(0), k.c(steps), ValueRange{k.c(0), k.c(groups)},
               [&](Value, ValueRange a) {
                 Value mid = k.div(k.add(a[0], a[1]), k.c(2));
                 Value atOrBefore =
                     k.cmpi(arith::CmpIPredicate::sle, k.ld(offsets, mid), ri);
                 return SmallVector<Value>{k.sel(atOrBefore, mid, a[0]),
                                           k.sel(atOrBefore, a[1], mid)};
               });
    return k.div(range[0], k.c(groups / local));
  }

  /// Whether the expert MLP's biases go into its GEMMs' epilogues
  /// (fmoe_rt_grouped_gemm_bias): bf16 (the runtime's sm90 grouped GEMMs
  /// with epilogues take bf16), both biases (GLU: fc1's with the gate
  /// half), and widths the GEMMs' 16-byte rows allow. The activation
  /// joins them only from d_model 2048 (activationInEpilogues): below, the
  /// epilogue's extra work costs what the row kernel does
  /// (docs/fused-gemm.md).
  static bool fusableEpilogues(Value fc1, Value fc1Bias, Value fc2Bias) {
    return expertEpiloguesFusable(elementOf(fc1), bool(fc1Bias), bool(fc2Bias),
                                  dim(fc1, 1), dim(fc1, 2));
  }

  /// A GEMM call's attributes with the `activation` its epilogue applies.
  SmallVector<NamedAttribute> withActivation(SmallVector<NamedAttribute> attrs,
                                             Activation act) {
    attrs.push_back(b.getNamedAttr("activation",
                                   b.getStringAttr(stringifyActivation(act))));
    return attrs;
  }

  /// The expert MLP on grouped rows: fc1 (optionally through a gather), bias
  /// and activation, fc2, bias. Defines h and y, and the activations when
  /// the op keeps them (actRes), else they are a temporary.
  void expertForward(Operation *op, Value rowsSrc, Value tokenOf, Lin rows,
                     Value offsets, Value fc1, Value fc1Bias, Value up,
                     Value fc2, Value fc2Bias, Activation act, Value hRes,
                     Value yRes, Value actRes) {
    int64_t local = dim(fc1, 0), hidden = dim(fc1, 1), d = dim(fc1, 2);
    int64_t groups = dim(offsets, 0) - 1;
    bool glu = isGLU(act);
    int64_t hw = glu ? 2 * hidden : hidden;
    Value h = define(hRes, rows);
    Value y = define(yRes, rows);
    // The biases in the GEMMs' epilogues, where the runtime has them; the
    // activation too where d_model is long enough (activationInEpilogues),
    // else a row kernel (a = act(h) reads h once).
    bool biasInGemm = fusedEpilogues && fusableEpilogues(fc1, fc1Bias, fc2Bias);
    bool actInGemm =
        biasInGemm && activationInEpilogues(elementOf(fc1), act, bool(fc1Bias),
                                            bool(fc2Bias), hidden, d);
    Value a = actRes ? define(actRes, rows)
                     : temp(op->getLoc(), elementOf(hRes), rows, hidden);
    // Rows past offsets[G] are never read: no memsets.
    // The epilogue GEMMs load contiguous rows, and GLU's gate and up GEMMs
    // read the same rows: there a gathered operand is gathered first, once,
    // into a buffer of its own (as a gathering GEMM would; on the GPU that
    // is one generated kernel rather than two of the library's gathers).
    Value src = mem(rowsSrc);
    bool gatherFirst = tokenOf && (biasInGemm || glu);
    if (gatherFirst) {
      src = temp(op->getLoc(), elementOf(hRes), rows, d);
      gatherRows(op, mem(rowsSrc), mem(tokenOf), src, rows, d);
    }
    auto fc1Gemm = [&](Value w, Value bias, int64_t cCol) {
      if (biasInGemm && bias) {
        if (actInGemm) {
          call(op, "grouped_gemm_bias_act",
               {src, mem(w), mem(bias), h, a, mem(offsets)},
               withActivation(gemmAttrs("nt", hidden, d, d, hw, cCol, local),
                              act));
        } else {
          call(op, "grouped_gemm_bias",
               {src, mem(w), mem(bias), h, mem(offsets)},
               gemmAttrs("nt", hidden, d, d, hw, cCol, local));
        }
      } else if (tokenOf && !gatherFirst)
        call(op, "grouped_gemm_gather",
             {mem(rowsSrc), mem(tokenOf), mem(w), h, mem(offsets)},
             gemmAttrs("nt", hidden, d, d, hw, cCol, local));
      else
        call(op, "grouped_gemm", {src, mem(w), h, mem(offsets)},
             gemmAttrs("nt", hidden, d, d, hw, cCol, local));
    };
    fc1Gemm(fc1, fc1Bias, 0);
    if (glu)
      fc1Gemm(up, Value(), hidden);
    // Activation epilogue: h keeps the biased pre-activation, a = act(h).
    if (!actInGemm)
      activationRows(op, h, offsets, a, biasInGemm ? Value() : fc1Bias, rows,
                     hidden, local, act);
    if (biasInGemm) {
      call(op, "grouped_gemm_bias",
           {a, mem(fc2), mem(fc2Bias), y, mem(offsets)},
           gemmAttrs("nt", d, hidden, hidden, d, 0, local));
      return;
    }
    call(op, "grouped_gemm", {a, mem(fc2), y, mem(offsets)},
         gemmAttrs("nt", d, hidden, hidden, d, 0, local));
    if (fc2Bias)
      launchGroupedRows(
          op, "bias", {y, mem(offsets), mem(fc2Bias)}, rows, d, 1, groups,
          [&](KB &k, Value r, Value tid, ValueRange m) {
            Value yRow = k.mul(r, k.c(d));
            Value biasRow =
                k.mul(localExpertOf(k, m[1], r, groups, local), k.c(d));
            k.columns(
                tid, d,
                [&](Value j) {
                  return SmallVector<Value>{k.ld(m[0], k.add(yRow, j)),
                                            k.ld(m[2], k.add(biasRow, j))};
                },
                [&](Value j, ValueRange v) {
                  k.st(k.add(v[0], v[1]), m[0], k.add(yRow, j));
                });
          });
  }

  /// The bias_act row kernel: a = act(h (+ bias, also stored into h)), GLU
  /// forms act(h_gate) * h_up (h has 2 * hidden columns then). `a` may be
  /// h itself (non-GLU): each element is loaded before it is stored.
  void activationRows(Operation *op, Value h, Value offsetsT, Value a,
                      Value bias, Lin rows, int64_t hidden, int64_t local,
                      Activation act) {
    bool glu = isGLU(act);
    int64_t hw = glu ? 2 * hidden : hidden;
    int64_t groups = dim(offsetsT, 0) - 1;
    SmallVector<Value> args{h, mem(offsetsT), a};
    if (bias)
      args.push_back(mem(bias));
    launchGroupedRows(
        op, "bias_act", args, rows, hidden, 1, groups,
        [&](KB &k, Value r, Value tid, ValueRange m) {
          Value hRow = k.mul(r, k.c(hw)), aRow = k.mul(r, k.c(hidden));
          Value biasRow;
          if (bias)
            biasRow =
                k.mul(localExpertOf(k, m[1], r, groups, local), k.c(hidden));
          k.columns(
              tid, hidden,
              [&](Value j) {
                Value hIdx = k.add(hRow, j);
                SmallVector<Value> v{k.ld(m[0], hIdx)};
                if (bias)
                  v.push_back(k.ld(m[3], k.add(biasRow, j)));
                if (glu)
                  v.push_back(k.ld(m[0], k.add(hIdx, k.c(hidden))));
                return v;
              },
              [&](Value j, ValueRange v) {
                Value pre = v[0];
                if (bias) {
                  pre = k.add(pre, v[1]);
                  k.st(pre, m[0], k.add(hRow, j));
                }
                Value out = k.act(act, pre);
                if (glu)
                  out = k.mul(out, v.back());
                k.st(out, m[2], k.add(aRow, j));
              });
        });
  }

  /// The row kernel body of out[t, :] = sum over the valid slots s of token
  /// t of (scores[t, s] *) rows[slot_pos[t, s], :]: the combine (weighted)
  /// and the gather's gradient (unweighted, `scores` null).
  static void slotSum(KB &k, Value t, Value tid, Value rows, Value slotPos,
                      Value scores, Value out, int64_t d, int64_t topK) {
    SmallVector<Value> valid, src, score;
    for (int64_t s = 0; s < topK; ++s) {
      Value slot = k.add(k.mul(t, k.c(topK)), k.c(s));
      Value pos = k.toIndex(k.ld(slotPos, slot));
      valid.push_back(k.cmpi(arith::CmpIPredicate::sge, pos, k.c(0)));
      src.push_back(k.mul(k.sel(valid.back(), pos, k.c(0)), k.c(d)));
      if (scores)
        score.push_back(k.ld(scores, slot));
    }
    Value dst = k.mul(t, k.c(d));
    k.columns(
        tid, d,
        [&](Value col) {
          SmallVector<Value> v;
          for (int64_t s = 0; s < topK; ++s)
            v.push_back(k.ld(rows, k.add(src[s], col)));
          return v;
        },
        [&](Value col, ValueRange v) {
          Value acc = k.f(0.0);
          for (int64_t s = 0; s < topK; ++s) {
            Value term = scores ? k.mul(score[s], v[s]) : v[s];
            acc = k.add(acc, k.sel(valid[s], term, k.f(0.0)));
          }
          k.st(acc, out, k.add(dst, col));
        },
        std::max<int64_t>(1, 2 / topK));
  }

  /// out[t, :] = sum_k scores[t, k] * y[slot_pos[t, k], :].
  void combine(Operation *op, Value y, Value slotPos, Value scores, Value out,
               Lin tokensRows, int64_t d, int64_t topK) {
    launchRows(op, "combine", {y, slotPos, scores, out}, tokensRows, d,
               [&](KB &k, Value t, Value tid, ValueRange a, Value) {
                 slotSum(k, t, tid, a[0], a[1], a[2], a[3], d, topK);
               });
  }

  LogicalResult lowerExpert(ExpertOp op) {
    expertForward(op, op.getRows(), Value(), rowsOf(op.getRows()),
                  op.getOffsets(), op.getFc1Weight(), op.getFc1Bias(),
                  op.getUpWeight(), op.getFc2Weight(), op.getFc2Bias(),
                  op.getActivation(), op.getH(), op.getY(), op.getAct());
    return success();
  }

  LogicalResult lowerFusedExpert(FusedExpertOp op) {
    Lin rows = rowsOf(op.getTokenOf());
    expertForward(op, op.getInput(), op.getTokenOf(), rows, op.getOffsets(),
                  op.getFc1Weight(), op.getFc1Bias(), op.getUpWeight(),
                  op.getFc2Weight(), op.getFc2Bias(), op.getActivation(),
                  op.getH(), op.getY(), op.getAct());
    Lin tokensRows = rowsOf(op.getSlotPos());
    Value out = define(op.getOutput(), tokensRows);
    combine(op, mem(op.getY()), mem(op.getSlotPos()), mem(op.getScores()), out,
            tokensRows, dim(op.getInput(), 1), dim(op.getSlotPos(), 1));
    return success();
  }

  LogicalResult lowerCombine(CombineOp op) {
    Lin tokensRows = rowsOf(op.getSlotPos());
    Value out = define(op.getOutput(), tokensRows);
    combine(op, mem(op.getY()), mem(op.getSlotPos()), mem(op.getScores()), out,
            tokensRows, dim(op.getY(), 1), dim(op.getSlotPos(), 1));
    return success();
  }

  LogicalResult lowerAllToAll(AllToAllOp op) {
    auto grid = SymbolTable::lookupNearestSymbolFrom<shard::GridOp>(
        op, op.getGridAttr());
    int64_t world = grid.getShape()[0];
    // The receive side holds at most every rank's rows; the reverse
    // exchange returns to the sender's row count.
    // Forward, the rows that arrive: R, known once the counts are exchanged
    // (the runtime allocates the output then). Reverse, the rows the
    // matching forward exchange sent.
    Lin in = rowsOf(op.getInput());
    Lin rows{0, 0, 1};
    if (!op.getReverse() && !received) {
      KB k{b, op.getLoc()};
      received = k.mul(lin(in), k.c(world));
    }
    if (op.getReverse()) {
      auto forward = op.getOffsets().getDefiningOp<AllToAllOp>();
      if (forward && !forward.getReverse())
        rows = rowsOf(forward.getInput());
      else if (!in.perReceived)
        rows = {in.perToken / world, in.constant / world};
      else
        return op.emitError("cannot size a reverse exchange whose offsets do "
                            "not come from a forward exchange");
    }
    Value out = define(op.getOutput(), rows);
    Value outOffsets = define(op.getOutOffsets(), {});
    SmallVector<NamedAttribute> attrs{
        b.getNamedAttr("placement", op.getPlacementAttr()),
        b.getNamedAttr("world_size", b.getI64IntegerAttr(world)),
        b.getNamedAttr("reverse", b.getBoolAttr(op.getReverse())),
        b.getNamedAttr("cols", b.getI64IntegerAttr(dim(op.getInput(), 1)))};
    if (op.getShadow() && !op.getShadow()->empty())
      attrs.push_back(b.getNamedAttr("shadow", op.getShadowAttr()));
    call(op, "all_to_all",
         {mem(op.getInput()), mem(op.getOffsets()), out, outOffsets}, attrs);
    return success();
  }

  /// The attributes of fmoe_rt_replicate[_grad]: for each shadowed expert,
  /// the rank that holds it and its slot there.
  SmallVector<NamedAttribute> replicaAttrs(Operation *op,
                                           FlatSymbolRefAttr gridRef,
                                           ArrayRef<int64_t> placement,
                                           ArrayRef<int64_t> shadow) {
    auto grid =
        SymbolTable::lookupNearestSymbolFrom<shard::GridOp>(op, gridRef);
    int64_t world = grid.getShape()[0];
    std::vector<int64_t> rankOf(placement.begin(), placement.end());
    std::vector<int64_t> slots = ::fmoe::localSlots(rankOf, world);
    SmallVector<int64_t> owner, slot;
    for (int64_t e : shadow) {
      owner.push_back(rankOf[e]);
      slot.push_back(slots[e]);
    }
    return {b.getNamedAttr("world_size", b.getI64IntegerAttr(world)),
            b.getNamedAttr("owner", b.getDenseI64ArrayAttr(owner)),
            b.getNamedAttr("slot", b.getDenseI64ArrayAttr(slot))};
  }

  LogicalResult lowerReplicate(ReplicateOp op) {
    Value out = define(op.getOutput(), {});
    call(op, "replicate", {mem(op.getInput()), out},
         replicaAttrs(op, op.getGridAttr(), op.getPlacement(), op.getShadow()));
    return success();
  }

  //===--------------------------------------------------------------------===//
  // Backward stages
  //===--------------------------------------------------------------------===//

  LogicalResult lowerReplicateGrad(ReplicateGradOp op) {
    Value out = define(op.getOutput(), {});
    call(op, "replicate_grad", {mem(op.getGrad()), out},
         replicaAttrs(op, op.getGridAttr(), op.getPlacement(), op.getShadow()));
    return success();
  }

  LogicalResult lowerCombineGrad(CombineGradOp op) {
    int64_t d = dim(op.getY(), 1), topK = dim(op.getSlotPos(), 1);
    Lin tokensRows = rowsOf(op.getSlotPos());
    // When y is a saved input read only here, dy is written over it (the
    // module marks y clobbered): each lane loads its elements of y before it
    // stores the same elements of dy, and y is not read again. That saves
    // an expert-side [T*k, d_model] buffer for the whole backward, unless
    // --keep-saved asks for saved inputs to stay intact.
    Value dy;
    if (isOursToReuse(op.getY()) && !outputs.count(op.getGradY())) {
      dy = mem(op.getY());
      bufs[op.getGradY()] = {dy, rowsOf(op.getY()), dim(op.getY(), 1)};
      clobbered.insert(op.getY());
    } else {
      dy = define(op.getGradY(), rowsOf(op.getY()));
    }
    Value ds = define(op.getGradScores(), tokensRows);
    // One warp per (token, slot), one pass over the token's output gradient:
    // the expert-side row dy[pos] = score * dout[t] and the score's gradient
    // ds = <dout[t], y[pos]>. Lanes stride over d_model, `vec` columns per
    // access. Every row of dy in a group is some slot's: no memset. A slot
    // that was dropped (pos < 0) has no row and ds = 0.
    launch(op, "combine_grad",
           {mem(op.getGradOutput()), mem(op.getY()), mem(op.getSlotPos()),
            mem(op.getScores()), dy, ds},
           tokensRows * (topK * 32), [&](KB &k, Value i, ValueRange a, Value) {
             int64_t vec = 8;
             while (vec > 1 && d % vec != 0)
               vec /= 2;
             Value slot = k.div(i, k.c(32)), lane = k.rem(i, k.c(32));
             Value t = k.div(slot, k.c(topK));
             Value pos = k.toIndex(k.ld(a[2], slot));
             Value valid = k.cmpi(arith::CmpIPredicate::sge, pos, k.c(0));
             Value score = k.ld(a[3], slot);
             Value src = k.mul(t, k.c(d)), dst = k.mul(pos, k.c(d));
             Value zero = k.f(0.0);
             if (vec > 1)
               zero = vector::BroadcastOp::create(
                   k.b, k.loc, VectorType::get({vec}, k.b.getF32Type()), zero);
             // A dropped slot runs no iteration (the bound is 0).
             Value part = k.loop(
                 k.mul(lane, k.c(vec)), k.sel(valid, k.c(d), k.c(0)), zero,
                 [&](Value j, ValueRange acc) {
                   llvm::SaveAndRestore<int64_t> vectorBody(k.width, vec);
                   Value g = k.ld(a[0], k.add(src, j));
                   Value y = k.ld(a[1], k.add(dst, j));
                   k.st(k.mul(score, g), a[4], k.add(dst, j));
                   return SmallVector<Value>{k.add(acc[0], k.mul(g, y))};
                 },
                 /*step=*/32 * vec)[0];
             if (vec > 1)
               part = vector::ReductionOp::create(
                   k.b, k.loc, vector::CombiningKind::ADD, part);
             Value dot = k.warpSum(part);
             k.when(k.cmpi(arith::CmpIPredicate::eq, lane, k.c(0)),
                    [&] { k.st(k.sel(valid, dot, k.f(0.0)), a[5], slot); });
           });
    return success();
  }

  /// fc2's bias gradient on the token side, where the expert-side rows of
  /// dy are the combine's gradient on this rank (no exchange between):
  /// db2[l] = sum over the rows r of local expert l of dy[r] = sum over
  /// tokens t of S[t, l] dout[t], with S[t, l] the score token t gave expert
  /// l (0 where it did not pick it, or the slot was dropped). So one GEMM
  /// (Sᵀ dout, a group of every row) reads dout once, where a column sum
  /// over dy reads each token's k rows (fine-grained, k = 8: 0.17 ms).
  void tokenSideBiasGrad(ExpertGradOp op, CombineGradOp combineGrad,
                         Value offsets, int64_t groups, int64_t local,
                         int64_t d, Value db2) {
    Location loc = op.getLoc();
    int64_t topK = dim(combineGrad.getSlotPos(), 1);
    Lin tokens = rowsOf(combineGrad.getSlotPos());
    Value s = temp(loc, elementOf(op.getGradY()), tokens, local);
    memset(op, s, 0);
    // One thread per slot; the local expert of its row, for kept slots.
    launch(op, "token_scores",
           {mem(combineGrad.getSlotPos()), mem(combineGrad.getScores()),
            offsets, s},
           tokens * topK, [&](KB &k, Value slot, ValueRange a, Value) {
             Value pos = k.toIndex(k.ld(a[0], slot));
             Value t = k.div(slot, k.c(topK));
             k.when(k.cmpi(arith::CmpIPredicate::sge, pos, k.c(0)), [&] {
               Value l = localExpertOf(k, a[2], pos, groups, local);
               k.st(k.ld(a[1], slot), a[3], k.add(k.mul(t, k.c(local)), l));
             });
           });
    allRowsWgrad(op, s, mem(combineGrad.getGradOutput()), db2, local, d);
  }

  /// grad[l, c] = sum over the rows of local expert l of src[r, col0 + c].
  /// The rows of each expert are split in `chunks` slices summed by their
  /// own threads (four loads in flight each) into an f32 accumulator, which
  /// is then stored in grad's type.
  void groupColumnSum(Operation *op, StringRef name, Value src, int64_t ld,
                      int64_t col0, int64_t cols, Value offsets, int64_t groups,
                      int64_t local, Value grad, int64_t chunks = 16) {
    constexpr int64_t kUnroll = 4;
    const int64_t kChunks = chunks;
    Value acc = temp(op->getLoc(), b.getF32Type(), {0, local}, cols);
    memset(op, acc, 0);
    launch(op, name, {src, offsets, acc}, {0, kChunks * local * cols},
           [&](KB &k, Value i, ValueRange a, Value) {
             Value idx = k.rem(i, k.c(local * cols));
             Value chunk = k.div(i, k.c(local * cols));
             Value l = k.div(idx, k.c(cols)), c = k.rem(idx, k.c(cols));
             // Local expert l owns the rows of groups [l*S, (l+1)*S).
             Value first = k.toIndex(k.ld(a[1], k.mul(l, k.c(groups / local))));
             Value end = k.toIndex(
                 k.ld(a[1], k.mul(k.add(l, k.c(1)), k.c(groups / local))));
             Value per = k.div(k.add(k.sub(end, first), k.c(kChunks - 1)),
                               k.c(kChunks));
             Value lo = arith::MinUIOp::create(
                 k.b, k.loc, k.add(first, k.mul(chunk, per)), end);
             Value hi = arith::MinUIOp::create(k.b, k.loc, k.add(lo, per), end);
             Value col = k.add(c, k.c(col0));
             auto at = [&](Value r) {
               return k.ld(a[0], k.add(k.mul(r, k.c(ld)), col));
             };
             // kUnroll rows at a time, then the rest.
             Value mainEnd = k.add(
                 lo, k.mul(k.div(k.sub(hi, lo), k.c(kUnroll)), k.c(kUnroll)));
             SmallVector<Value> zeros(kUnroll, k.f(0.0));
             ValueRange part = k.loop(
                 lo, mainEnd, zeros,
                 [&](Value r, ValueRange x) {
                   SmallVector<Value> v, next;
                   for (int64_t u = 0; u < kUnroll; ++u)
                     v.push_back(at(k.add(r, k.c(u))));
                   for (int64_t u = 0; u < kUnroll; ++u)
                     next.push_back(k.add(x[u], v[u]));
                   return next;
                 },
                 kUnroll);
             Value sum = part[0];
             for (int64_t u = 1; u < kUnroll; ++u)
               sum = k.add(sum, part[u]);
             sum = k.loop(mainEnd, hi, sum, [&](Value r, ValueRange x) {
               return SmallVector<Value>{k.add(x[0], at(r))};
             })[0];
             memref::AtomicRMWOp::create(k.b, k.loc, arith::AtomicRMWKind::addf,
                                         sum, a[2], ValueRange{idx});
           },
           {b.getNamedAttr("chunks", b.getI64IntegerAttr(kChunks))});
    convert(op, acc, grad, local * cols);
  }

  /// dst[i] = src[i] for i < n (an f32 accumulator into dst's type).
  void convert(Operation *op, Value src, Value dst, int64_t n) {
    launch(op, "convert", {src, dst}, {0, n},
           [&](KB &k, Value i, ValueRange a, Value) {
             k.st(k.ld(a[0], i), a[1], i);
           });
  }

  /// Row r's elements at columns [j, j + k.width) of an act_and_grad pass
  /// over m = {h (row stride hidden, GLU 2 * hidden), da, offsets, dh (h's
  /// layout)}: the loads, h and da (and h's up half for GLU), apart from the
  /// stores so that a kernel can issue several rows' loads first.
  static SmallVector<Value> actGradLoad(KB &k, ValueRange m, Value r, Value j,
                                        int64_t hidden, bool glu) {
    Value hIdx = k.add(k.mul(r, k.c(glu ? 2 * hidden : hidden)), j);
    SmallVector<Value> v{k.ld(m[0], hIdx),
                         k.ld(m[1], k.add(k.mul(r, k.c(hidden)), j))};
    if (glu)
      v.push_back(k.ld(m[0], k.add(hIdx, k.c(hidden))));
    return v;
  }
  /// The stores of those elements (`v` from actGradLoad): a = act(h) over da
  /// (GLU: act(h_g) h_u), dh = da * act'(h) (GLU: both halves). Returns dh
  /// (GLU: its gate half) as computed, in f32.
  static Value actGradStore(KB &k, ValueRange m, Value r, Value j, ValueRange v,
                            int64_t hidden, Activation act) {
    bool glu = isGLU(act);
    Value hIdx = k.add(k.mul(r, k.c(glu ? 2 * hidden : hidden)), j);
    Value pre = v[0], g = v[1];
    Value out = k.act(act, pre);
    Value d;
    if (glu) {
      d = k.mul(k.mul(g, v[2]), k.actGrad(act, pre));
      k.st(d, m[3], hIdx);
      k.st(k.mul(g, out), m[3], k.add(hIdx, k.c(hidden)));
      out = k.mul(out, v[2]);
    } else {
      d = k.mul(g, k.actGrad(act, pre));
      k.st(d, m[3], hIdx);
    }
    k.st(out, m[1], k.add(k.mul(r, k.c(hidden)), j));
    return d;
  }

  /// The act_and_grad row kernel: a = act(h) over da (GLU: act(h_g) h_u)
  /// and dh = da * act'(h) (GLU: both halves) in one pass.
  void actAndGrad(Operation *op, Value h, Value da, Value offsets, Value dh,
                  Lin rows, int64_t hidden, int64_t groups, Activation act) {
    bool glu = isGLU(act);
    launchGroupedRows(
        op, "act_and_grad", {h, da, offsets, dh}, rows, hidden, 2, groups,
        [&](KB &k, Value r, Value tid, ValueRange m) {
          k.columns(
              tid, hidden,
              [&](Value j) { return actGradLoad(k, m, r, j, hidden, glu); },
              [&](Value j, ValueRange v) {
                actGradStore(k, m, r, j, v, hidden, act);
              });
        });
  }

  /// act_and_grad and the fc1 bias gradient in one pass: as actAndGrad,
  /// and acc[l, j] (f32, zeroed) += the sum of dh[r, j] over the rows r of
  /// local expert l, j < hidden (GLU: the gate half). A block takes
  /// kBiasRows consecutive rows, its threads the columns (vectors, as
  /// KB::columns); each thread sums its columns over the block's rows of
  /// one expert at a time in registers and adds them to acc atomically, so
  /// dh is never read again.
  static constexpr int64_t kBiasRows = 32;
  static constexpr int64_t kBiasUnroll = 4;
  void actAndGradBias(Operation *op, Value h, Value da, Value offsets, Value dh,
                      Value acc, Lin rows, int64_t hidden, int64_t groups,
                      int64_t local, Activation act) {
    bool glu = isGLU(act);
    int64_t vec = 8;
    while (vec > 1 && hidden % (kBlock * vec) != 0)
      vec /= 2;
    launchBlocks(
        op, "act_and_grad_bias", {h, da, offsets, dh, acc},
        rows * (kBlock / kBiasRows),
        [&](KB &k, Value bid, Value tid, ValueRange m, Value) {
          Value r0 = k.mul(bid, k.c(kBiasRows));
          Value r1 = k.add(r0, k.c(kBiasRows));
          Type f32 = k.b.getF32Type();
          Value zero = k.f(0.0);
          if (vec > 1)
            zero = vector::BroadcastOp::create(
                k.b, k.loc, VectorType::get({vec}, f32), zero);
          // A row's elements (loads apart, so that kBiasUnroll rows' loads
          // are issued first); the sum takes dh as stored.
          auto load = [&](Value r, Value j) {
            return actGradLoad(k, m, r, j, hidden, glu);
          };
          auto store = [&](Value r, Value j, ArrayRef<Value> v) {
            return k.storedIn(actGradStore(k, m, r, j, v, hidden, act), m[3]);
          };
          k.loop(
              k.mul(tid, k.c(vec)), k.c(hidden), ValueRange{},
              [&](Value j, ValueRange) {
                k.loop(
                    k.c(0), k.c(local), ValueRange{}, [&](Value l, ValueRange) {
                      // Expert l's rows within [r0, r1).
                      Value s = k.c(groups / local);
                      Value first = k.toIndex(k.ld(m[2], k.mul(l, s)));
                      Value end =
                          k.toIndex(k.ld(m[2], k.mul(k.add(l, k.c(1)), s)));
                      Value lo = arith::MaxUIOp::create(k.b, k.loc, first, r0);
                      Value hi = arith::MinUIOp::create(k.b, k.loc, end, r1);
                      k.when(k.cmpi(arith::CmpIPredicate::ult, lo, hi), [&] {
                        llvm::SaveAndRestore<int64_t> vectorBody(k.width, vec);
                        // kBiasUnroll rows at a time (their loads in flight
                        // together), then the rest.
                        const int64_t u = kBiasUnroll;
                        Value mainEnd = k.add(
                            lo, k.mul(k.div(k.sub(hi, lo), k.c(u)), k.c(u)));
                        Value sum = k.loop(
                            lo, mainEnd, zero,
                            [&](Value r, ValueRange a) {
                              SmallVector<SmallVector<Value>> v;
                              for (int64_t i = 0; i < u; ++i)
                                v.push_back(load(k.add(r, k.c(i)), j));
                              Value t = a[0];
                              for (int64_t i = 0; i < u; ++i)
                                t = k.add(t, store(k.add(r, k.c(i)), j, v[i]));
                              return SmallVector<Value>{t};
                            },
                            u)[0];
                        sum = k.loop(
                            mainEnd, hi, sum, [&](Value r, ValueRange a) {
                              return SmallVector<Value>{
                                  k.add(a[0], store(r, j, load(r, j)))};
                            })[0];
                        Value base = k.add(k.mul(l, k.c(hidden)), j);
                        for (int64_t i = 0; i < vec; ++i) {
                          Value v = vec > 1 ? vector::ExtractOp::create(
                                                  k.b, k.loc, sum,
                                                  ArrayRef<int64_t>{i})
                                                  .getResult()
                                            : sum;
                          memref::AtomicRMWOp::create(
                              k.b, k.loc, arith::AtomicRMWKind::addf, v, m[4],
                              ValueRange{k.add(base, k.c(i))});
                        }
                      });
                      return SmallVector<Value>{};
                    });
                return SmallVector<Value>{};
              },
              kBlock * vec);
        },
        {b.getNamedAttr("rows_per_block", b.getI64IntegerAttr(kBiasRows))});
    // Four rows in flight take 102 registers a thread (two blocks an SM).
    // Asking ptxas for four blocks (64 registers, two rows, a few spills)
    // measured slower on fine-grained (416 against 379 us) and the same on
    // classic (351 against 358 us; bench/NOTES.md runs 34-35).
  }

  LogicalResult lowerExpertGrad(ExpertGradOp op) {
    Activation act = op.getActivation();
    int64_t local = dim(op.getFc1Weight(), 0),
            hidden = dim(op.getFc1Weight(), 1);
    int64_t d = dim(op.getFc1Weight(), 2);
    int64_t groups = dim(op.getOffsets(), 0) - 1;
    bool glu = isGLU(act);
    int64_t hw = glu ? 2 * hidden : hidden;
    Lin rows = rowsOf(op.getRows());
    Value h = mem(op.getH()), offsets = mem(op.getOffsets());
    Value dyv = mem(op.getGradY());
    Type elt = elementOf(op.getGradY());
    auto gemm = [&](StringRef layout, int64_t n, int64_t kdim, int64_t lda,
                    int64_t aCol, int64_t ldc, bool accumulate) {
      SmallVector<NamedAttribute> attrs =
          gemmAttrs(layout, n, kdim, lda, ldc, 0, local);
      attrs.push_back(b.getNamedAttr("a_col", b.getI64IntegerAttr(aCol)));
      attrs.push_back(b.getNamedAttr("accumulate", b.getBoolAttr(accumulate)));
      return attrs;
    };
    auto wgrad = [&](int64_t m, int64_t n, int64_t lda, int64_t aCol,
                     int64_t ldb) {
      return wgradAttrs(m, n, lda, aCol, ldb, local);
    };
    // Unless the forward kept the activations (below): da = dy W2 first;
    // then one pass over h and da recomputes the activation a = act(h)
    // (GLU: act(h_g) * h_u) for dW2, written over da, and computes dh = da *
    // act'(h) (GLU: gate and up halves). Each element of a and dh depends on
    // the same elements of h and da only, which a thread loads before it
    // stores. h has dh's
    // shape: when this is h's last use (a saved input of the backward), dh
    // overwrites h, so the memory the forward saved is reused rather than
    // held next to a copy (the module marks h clobbered), unless
    // --keep-saved asks for saved inputs to stay intact.
    // Rows past offsets[G] are never read: no memsets below.
    Value dh;
    bool fc1BiasDone = false;
    if (isOursToReuse(op.getH())) {
      dh = h;
      clobbered.insert(op.getH());
    } else {
      dh = temp(op.getLoc(), elt, rows, hw);
    }
    // Where d_model is long enough, the da GEMM's epilogue also computes
    // act(h) (DAct): dh = (dy W2) * gelu'(h), written over h when h is ours
    // to reuse, and a = gelu(h) into a buffer of its own (freed after dW2,
    // as da is below). No pass over h.
    bool dact = !op.getAct() && fusedEpilogues &&
                activationInEpilogues(elt, act, bool(op.getGradFc1Bias()),
                                      bool(op.getGradFc2Bias()), hidden, d);
    Value a;
    if (dact) {
      a = temp(op.getLoc(), elt, rows, hidden);
      call(op, "grouped_gemm_dact_act",
           {dyv, mem(op.getFc2Weight()), h, dh, a, offsets},
           withActivation(gemm("nn", hidden, d, d, 0, hidden, false), act));
    } else if (op.getAct() && fusedEpilogues && act == Activation::gelu &&
               expertEpiloguesFusable(elt, true, true, hidden, d)) {
      // The forward kept a = act(h): dh = (dy W2) * gelu'(h) comes out of
      // the da GEMM's epilogue (h read there, dh written over it when h is
      // not needed again), and dW2 reads the kept a. No pass over h.
      call(op, "grouped_gemm_dact",
           {dyv, mem(op.getFc2Weight()), h, dh, offsets},
           withActivation(gemm("nn", hidden, d, d, 0, hidden, false), act));
      a = mem(op.getAct());
    } else {
      Value da = temp(op.getLoc(), elt, rows, hidden);
      call(op, "grouped_gemm", {dyv, mem(op.getFc2Weight()), da, offsets},
           gemm("nn", hidden, d, d, 0, hidden, false));
      if (op.getGradFc1Bias()) {
        // db1 summed in the same pass (dh is not read again for it).
        Value acc = temp(op.getLoc(), b.getF32Type(), {0, local}, hidden);
        memset(op, acc, 0);
        actAndGradBias(op, h, da, offsets, dh, acc, rows, hidden, groups, local,
                       act);
        convert(op, acc, define(op.getGradFc1Bias(), {0, local}),
                local * hidden);
        fc1BiasDone = true;
      } else {
        actAndGrad(op, h, da, offsets, dh, rows, hidden, groups, act);
      }
      // (act_and_grad leaves a = act(h) in da; a kept one is the same.)
      a = da;
    }
    // fc2: dW2[l] = dyᵀ a, db2 = column sums of dy.
    Value dw2 = define(op.getGradFc2Weight(), {0, local});
    call(op, "grouped_wgrad", {dyv, a, dw2, offsets},
         wgrad(d, hidden, d, 0, hidden));
    if (op.getGradFc2Bias()) {
      Value db2 = define(op.getGradFc2Bias(), {0, local});
      auto combineGrad = op.getGradY().getDefiningOp<CombineGradOp>();
      if (combineGrad && dim(combineGrad.getSlotPos(), 1) > 1)
        tokenSideBiasGrad(op, combineGrad, offsets, groups, local, d, db2);
      else
        groupColumnSum(op, "fc2_bias_grad", dyv, d, 0, d, offsets, groups,
                       local, db2);
    }
    // dy was read for the last time above. Where this op is its only
    // reader (one rank: the combine's gradient made it for this op), its
    // memory holds the rows next (when they are gathered here), then drows:
    // [R, d] each, so neither needs a buffer of its own.
    Value scratch = dyIsScratch(op, rows, d) ? dyv : Value();
    Value rowsv = materializeRows(op, scratch);
    // fc1 (and up): dW1[l] = dh1ᵀ rows, db1, drows = dh1 W1 (+ dhu Wup).
    Value dw1 = define(op.getGradFc1Weight(), {0, local});
    call(op, "grouped_wgrad", {dh, rowsv, dw1, offsets},
         wgrad(hidden, d, hw, 0, d));
    if (op.getGradFc1Bias() && !fc1BiasDone)
      groupColumnSum(op, "fc1_bias_grad", dh, hw, 0, hidden, offsets, groups,
                     local, define(op.getGradFc1Bias(), {0, local}));
    // Both weight gradients before drows: the rows' last use comes first,
    // so drows (the same shape) can take their memory.
    if (glu) {
      Value dup = define(op.getGradUpWeight(), {0, local});
      call(op, "grouped_wgrad", {dh, rowsv, dup, offsets},
           wgrad(hidden, d, hw, hidden, d));
    }
    Value drows;
    if (scratch && !outputs.count(op.getGradRows())) {
      drows = scratch;
      bufs[op.getGradRows()] = {drows, rows, d};
    } else {
      drows = define(op.getGradRows(), rows);
    }
    call(op, "grouped_gemm", {dh, mem(op.getFc1Weight()), drows, offsets},
         gemm("nn", d, hidden, hw, 0, d, false));
    if (glu)
      call(op, "grouped_gemm", {dh, mem(op.getUpWeight()), drows, offsets},
           gemm("nn", d, hidden, hw, hidden, d, true));
    return success();
  }

  LogicalResult lowerGatherGrad(GatherGradOp op) {
    int64_t d = dim(op.getGradRows(), 1), topK = dim(op.getSlotPos(), 1);
    Lin tokensRows = rowsOf(op.getSlotPos());
    // When the gate's backward adds to this gradient, it is written straight
    // into the gate's gradient buffer, which the gate's GEMM then adds to.
    Value dx;
    if (op->hasOneUse())
      if (auto gate = dyn_cast<GateGradOp>(*op->user_begin());
          gate && gate.getGradInputAcc() == op.getGradInput() &&
          elementOf(gate.getGradInput()) == elementOf(op.getGradInput())) {
        dx = define(gate.getGradInput(), tokensRows);
        bufs[op.getGradInput()] = bufs[gate.getGradInput()];
      }
    if (!dx)
      dx = define(op.getGradInput(), tokensRows);
    launchRows(op, "gather_grad",
               {mem(op.getGradRows()), mem(op.getSlotPos()), dx}, tokensRows, d,
               [&](KB &k, Value t, Value tid, ValueRange a, Value) {
                 slotSum(k, t, tid, a[0], a[1], Value(), a[2], d, topK);
               });
    return success();
  }

  LogicalResult lowerRouteGrad(RouteGradOp op) {
    int64_t e = dim(op.getLogits(), 1), topK = dim(op.getIndices(), 1);
    Lin tokensRows = rowsOf(op.getLogits());
    Value dl = define(op.getGradLogits(), tokensRows);
    GateKind kind = op.getGate();
    bool renorm = op.getRenormalize();
    launch(
        op, "route_grad",
        {mem(op.getGradScores()), mem(op.getLogits()), mem(op.getIndices()),
         mem(op.getScores()), dl},
        tokensRows, [&](KB &k, Value t, ValueRange a, Value) {
          Value row = k.mul(t, k.c(e));
          SmallVector<Value> g, q, idx, l;
          for (int64_t s = 0; s < topK; ++s) {
            Value slot = k.add(k.mul(t, k.c(topK)), k.c(s));
            g.push_back(k.ld(a[0], slot));
            q.push_back(k.ld(a[3], slot));
            Value ex = k.toIndex(k.ld(a[2], slot));
            idx.push_back(k.sel(k.cmpi(arith::CmpIPredicate::sge, ex, k.c(0)),
                                ex, k.c(0)));
            l.push_back(k.ld(a[1], k.add(row, idx.back())));
          }
          auto dot = [&](ArrayRef<Value> x, ArrayRef<Value> y) {
            Value acc = k.f(0.0);
            for (auto [u, v] : llvm::zip(x, y))
              acc = k.add(acc, k.mul(u, v));
            return acc;
          };
          // Gradient with respect to the un-normalised scores p.
          SmallVector<Value> p(q), dp(g);
          if (kind == GateKind::sigmoid)
            for (auto [s, v] : llvm::enumerate(l))
              p[s] = k.sigmoid(v);
          if (kind == GateKind::softmax_topk && renorm) {
            // p = softmax(l)[idx]; q = p / sum(p).
            Value m = k.loop(
                k.c(0), k.c(e), k.f(-3.0e38), [&](Value j, ValueRange acc) {
                  Value v = k.ld(a[1], k.add(row, j));
                  return SmallVector<Value>{
                      arith::MaximumFOp::create(k.b, k.loc, acc[0], v)};
                })[0];
            Value z =
                k.loop(k.c(0), k.c(e), k.f(0.0), [&](Value j, ValueRange acc) {
                  Value v = k.ld(a[1], k.add(row, j));
                  return SmallVector<Value>{k.add(acc[0], k.exp(k.sub(v, m)))};
                })[0];
            for (auto [s, v] : llvm::enumerate(l))
              p[s] = k.div(k.exp(k.sub(v, m)), z);
          }
          if (renorm) {
            Value sum = k.f(0.0);
            for (Value v : p)
              sum = k.add(sum, v);
            Value c = dot(q, g);
            for (auto [s, v] : llvm::enumerate(g))
              dp[s] = k.div(k.sub(v, c), sum);
          }
          // Zero, then the picked experts' entries.
          k.loop(k.c(0), k.c(e), ValueRange{}, [&](Value j, ValueRange) {
            k.st(k.f(0.0), a[4], k.add(row, j));
            return SmallVector<Value>{};
          });
          switch (kind) {
          case GateKind::naive: {
            // q = softmax over the k picked logits.
            Value c = dot(q, dp);
            for (int64_t s = 0; s < topK; ++s)
              k.st(k.mul(q[s], k.sub(dp[s], c)), a[4], k.add(row, idx[s]));
            break;
          }
          case GateKind::softmax_topk: {
            // dl_j = P_j (G_j - sum_s p_s dp_s), G_j = dp_s at j = idx_s.
            Value c = dot(p, dp);
            // P_j over all experts, from the largest logit l[0].
            Value z =
                k.loop(k.c(0), k.c(e), k.f(0.0), [&](Value j, ValueRange acc) {
                  Value v = k.ld(a[1], k.add(row, j));
                  return SmallVector<Value>{
                      k.add(acc[0], k.exp(k.sub(v, l[0])))};
                })[0];
            k.loop(k.c(0), k.c(e), ValueRange{}, [&](Value j, ValueRange) {
              Value pj =
                  k.div(k.exp(k.sub(k.ld(a[1], k.add(row, j)), l[0])), z);
              k.st(k.mul(pj, k.sub(k.f(0.0), c)), a[4], k.add(row, j));
              return SmallVector<Value>{};
            });
            for (int64_t s = 0; s < topK; ++s) {
              Value pj = k.div(k.exp(k.sub(l[s], l[0])), z);
              k.st(k.mul(pj, k.sub(dp[s], c)), a[4], k.add(row, idx[s]));
            }
            break;
          }
          case GateKind::sigmoid:
            for (int64_t s = 0; s < topK; ++s)
              k.st(k.mul(dp[s], k.mul(p[s], k.sub(k.f(1.0), p[s]))), a[4],
                   k.add(row, idx[s]));
            break;
          }
        });
    return success();
  }

  /// The gate's backward as GEMMs of one group (all T rows) on the runtime's
  /// grouped GEMMs (tensor cores): dx = acc + dl W, dW = dlᵀ x, and db the
  /// column sums of dl. dl enters the GEMMs in the layer's type, as PyTorch's
  /// own backward of a gate in that type has it; the bias gradient sums the
  /// f32 dl.
  LogicalResult lowerGateGrad(GateGradOp op) {
    int64_t e = dim(op.getWeight(), 0), d = dim(op.getWeight(), 1);
    Lin rows = rowsOf(op.getInput());
    Location loc = op.getLoc();
    Type elt = elementOf(op.getGradInput());
    Value dl = mem(op.getGradLogits()), x = mem(op.getInput());
    auto convert = [&](Value src, Value dst, Lin items) {
      launch(op, "convert", {src, dst}, items,
             [&](KB &k, Value i, ValueRange a, Value) {
               k.st(k.ld(a[0], i), a[1], i);
             });
    };
    Value dlc = dl;
    if (elt != elementOf(op.getGradLogits())) {
      dlc = temp(loc, elt, rows, e);
      convert(dl, dlc, rows * e);
    }
    Value all = allRows(op);
    Value dx = bufs.count(op.getGradInput()) ? mem(op.getGradInput())
                                             : define(op.getGradInput(), rows);
    if (mem(op.getGradInputAcc()) != dx)
      convert(mem(op.getGradInputAcc()), dx, rows * d);
    SmallVector<NamedAttribute> attrs = gemmAttrs("nn", d, e, e, d, 0, 1);
    attrs.append({b.getNamedAttr("a_col", b.getI64IntegerAttr(0)),
                  b.getNamedAttr("accumulate", b.getBoolAttr(true)),
                  allRowsAttr()});
    call(op, "grouped_gemm", {dlc, mem(op.getWeight()), dx, all}, attrs);
    allRowsWgrad(op, dlc, x, define(op.getGradWeight(), {0, e}), e, d);
    if (op.getGradBias())
      groupColumnSum(op, "gate_bias_grad", dl, e, 0, e, all, 1, 1,
                     define(op.getGradBias(), {0, e}), /*chunks=*/256);
    return success();
  }

  LogicalResult lower(Operation *op) {
    b.setInsertionPointToEnd(&newFunc.front());
    return llvm::TypeSwitch<Operation *, LogicalResult>(op)
        .Case<GateOp>([&](auto o) { return lowerGate(o); })
        .Case<RouteOp>([&](auto o) { return lowerRoute(o); })
        .Case<GateRouteOp>([&](auto o) { return lowerGateRoute(o); })
        .Case<DispatchOp>([&](auto o) { return lowerDispatch(o); })
        .Case<GatherOp>([&](auto o) { return lowerGather(o); })
        .Case<ExpertOp>([&](auto o) { return lowerExpert(o); })
        .Case<FusedExpertOp>([&](auto o) { return lowerFusedExpert(o); })
        .Case<CombineOp>([&](auto o) { return lowerCombine(o); })
        .Case<AllToAllOp>([&](auto o) { return lowerAllToAll(o); })
        .Case<ReplicateOp>([&](auto o) { return lowerReplicate(o); })
        .Case<ReplicateGradOp>([&](auto o) { return lowerReplicateGrad(o); })
        .Case<CombineGradOp>([&](auto o) { return lowerCombineGrad(o); })
        .Case<ExpertGradOp>([&](auto o) { return lowerExpertGrad(o); })
        .Case<GatherGradOp>([&](auto o) { return lowerGatherGrad(o); })
        .Case<RouteGradOp>([&](auto o) { return lowerRouteGrad(o); })
        .Case<GateGradOp>([&](auto o) { return lowerGateGrad(o); })
        .Default([&](Operation *o) {
          return o->emitError("cannot lower '")
                 << o->getName() << "' in a layer function";
        });
  }

  ModuleOp module;
  gpu::GPUModuleOp kernels;
  func::FuncOp func, newFunc;
  ArrayRef<Lin> savedRows;
  /// Never write over a saved input (--keep-saved).
  bool keepSaved;
  /// Bias and activation in the GEMM epilogues where the runtime has them
  /// (--fused-epilogues).
  bool fusedEpilogues;
  OpBuilder b;
  Value tokens;
  Value received; // R in the IR, once known (see lin())
  DenseMap<Value, Buf> bufs;
  DenseMap<Value, Value> outputs;
  SmallVector<Value> temps;
  /// Input arguments the function overwrites (their last use reuses the
  /// memory); the module records them so that callers can tell.
  llvm::SmallDenseSet<Value, 2> clobbered;
  Value allRowsOffsets;
  /// Gathers whose rows only an expert_grad reads, made there.
  llvm::DenseMap<Value, GatherOp> deferredGathers;
};

struct FMoELowerToRuntimePass
    : public mlir::fmoe::impl::FMoELowerToRuntimeBase<FMoELowerToRuntimePass> {
  using Base::Base;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<func::FuncOp> layers;
    for (auto f : module.getOps<func::FuncOp>()) {
      bool has = false;
      f.walk([&](Operation *op) { has |= isa<FMoEDialect>(op->getDialect()); });
      if (has)
        layers.push_back(f);
    }
    if (layers.empty())
      return;
    for (auto f : layers)
      if (!f.getBody().hasOneBlock())
        return (void)(f.emitError("expects a single-block layer function"),
                      signalPassFailure());
    module->setAttr(gpu::GPUDialect::getContainerModuleAttrName(),
                    UnitAttr::get(&getContext()));
    OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
    auto kernels = gpu::GPUModuleOp::create(b, module.getLoc(), "fmoe_kernels");
    llvm::StringMap<SmallVector<Lin>> savedRowsOf;
    for (auto f : layers) {
      SmallVector<Lin> saved;
      if (auto fwd = f->getAttrOfType<FlatSymbolRefAttr>("fmoe.forward"))
        saved = savedRowsOf.lookup(fwd.getValue());
      FunctionLowering lowering(module, kernels, f, saved, keepSaved,
                                fusedEpilogues);
      std::string name = f.getName().str();
      if (failed(lowering.run()))
        return signalPassFailure();
      // The backward's saved arguments are the forward's results after the
      // output.
      SmallVector<Lin> rows(lowering.resultRows);
      if (!rows.empty())
        rows.erase(rows.begin());
      savedRowsOf[name] = rows;
    }
  }
};

} // namespace
