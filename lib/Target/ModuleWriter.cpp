//===- ModuleWriter.cpp - lowered IR to a compiled module file ------------===//
//
// Part of fmoe. Reads only what `--fmoe-lower-to-runtime` and
// `--gpu-module-to-binary` leave behind: layer functions on flat buffers,
// `gpu.launch_func` and `func.call` commands with their `fmoe.*` attributes,
// and the `gpu.binary` holding the PTX.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Target/ModuleWriter.h"
#include "fmoe/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"

using namespace mlir;
using namespace mlir::fmoe;
namespace format = ::fmoe::format;

namespace {

std::string print(Attribute a) {
  std::string s;
  llvm::raw_string_ostream os(s);
  if (auto str = dyn_cast<StringAttr>(a))
    os << str.getValue();
  else if (auto b = dyn_cast<BoolAttr>(a))
    os << (b.getValue() ? "true" : "false");
  else if (auto i = dyn_cast<IntegerAttr>(a))
    os << i.getInt();
  else if (auto f = dyn_cast<FloatAttr>(a))
    os << f.getValueAsDouble();
  else if (auto arr = dyn_cast<DenseI64ArrayAttr>(a))
    llvm::interleave(arr.asArrayRef(), os, ",");
  else
    a.print(os);
  return s;
}

std::string dtypeOf(Type t) {
  Type elt = cast<ShapedType>(t).getElementType();
  std::string s;
  llvm::raw_string_ostream os(s);
  os << elt;
  return s;
}

format::SizeExpr rowsOf(DenseI64ArrayAttr rows) {
  format::SizeExpr s;
  // [perToken, constant] or [perToken, constant, perReceived].
  if (rows && (rows.size() == 2 || rows.size() == 3)) {
    s.perToken = rows[0];
    s.constant = rows[1];
    if (rows.size() == 3)
      s.perReceived = rows[2];
  }
  return s;
}

FailureOr<format::Program> buildProgram(func::FuncOp f) {
  format::Program p;
  p.function = f.getName().str();
  p.name = f->hasAttr("fmoe.forward") ? "backward" : "forward";
  DenseMap<Value, int64_t> index;
  for (BlockArgument arg : f.getArguments().drop_front()) {
    auto info =
        f.getArgAttrOfType<DictionaryAttr>(arg.getArgNumber(), "fmoe.buffer");
    if (!info)
      return f.emitError("argument #")
             << arg.getArgNumber() << " has no fmoe.buffer description";
    format::Buffer b;
    b.name = print(info.get("name"));
    b.role = print(info.get("role"));
    b.dtype = dtypeOf(arg.getType());
    b.rows = rowsOf(info.getAs<DenseI64ArrayAttr>("rows"));
    b.cols = info.getAs<IntegerAttr>("cols").getInt();
    b.clobbered = static_cast<bool>(info.get("clobbered"));
    index[arg] = p.buffers.size();
    p.buffers.push_back(b);
  }
  DenseMap<int64_t, int64_t> lastUse;
  auto operand = [&](Value v) -> FailureOr<format::Operand> {
    if (auto arg = dyn_cast<BlockArgument>(v); arg && arg.getArgNumber() == 0)
      return format::Operand{format::Operand::kTokens};
    auto it = index.find(v);
    if (it == index.end())
      return failure();
    lastUse[it->second] = p.commands.size();
    return format::Operand{it->second};
  };
  auto attrsOf = [](Operation *op, format::Command &c, StringRef prefix) {
    for (NamedAttribute a : op->getAttrs()) {
      StringRef name = a.getName().strref();
      if (name.consume_front(prefix))
        c.attrs.emplace_back(name.str(), print(a.getValue()));
    }
  };
  for (Operation &op : f.front()) {
    if (auto alloc = dyn_cast<memref::AllocOp>(op)) {
      format::Buffer b;
      b.name = "tmp" + std::to_string(p.buffers.size());
      b.role = "temp";
      b.dtype = dtypeOf(alloc.getType());
      b.rows = rowsOf(alloc->getAttrOfType<DenseI64ArrayAttr>("fmoe.rows"));
      b.cols = alloc->getAttrOfType<IntegerAttr>("fmoe.cols").getInt();
      index[alloc] = p.buffers.size();
      p.buffers.push_back(b);
      continue;
    }
    format::Command c;
    SmallVector<Value> args;
    if (auto launch = dyn_cast<gpu::LaunchFuncOp>(op)) {
      c.kind = "launch";
      c.target = launch.getKernelName().str();
      auto work = launch->getAttrOfType<DenseI64ArrayAttr>("fmoe.work");
      c.block = launch->getAttrOfType<IntegerAttr>("fmoe.block").getInt();
      c.grid = rowsOf(work);
      c.grid.divisor = c.block;
      if (auto kernel = launch->getAttrOfType<StringAttr>("fmoe.kernel"))
        c.attrs.emplace_back("kernel", kernel.str());
      attrsOf(launch, c, "fmoe.param.");
      attrsOf(launch, c, "fmoe.attr.");
      args.assign(launch.getKernelOperands().begin(),
                  launch.getKernelOperands().end());
    } else if (auto call = dyn_cast<func::CallOp>(op)) {
      c.kind = "call";
      c.target = call.getCallee().str();
      for (NamedAttribute a : call->getAttrs())
        if (!a.getName().strref().starts_with("fmoe.") &&
            a.getName() != "callee")
          c.attrs.emplace_back(a.getName().str(), print(a.getValue()));
      args.assign(call.getOperands().begin(), call.getOperands().end());
    } else {
      continue; // constants, index arithmetic, deallocs, return
    }
    c.op = print(op.getAttr("fmoe.op"));
    for (Value v : args) {
      auto o = operand(v);
      if (failed(o))
        return op.emitError("command operand is neither a buffer nor the "
                            "token count");
      c.args.push_back(*o);
    }
    p.commands.push_back(std::move(c));
  }
  // Temporaries are released after their last use: the runtime's memory
  // plan reuses their space.
  for (auto [buf, cmd] : lastUse)
    if (p.buffers[buf].role == "temp")
      p.commands[cmd].release.push_back(buf);
  for (format::Command &c : p.commands)
    llvm::sort(c.release);
  return p;
}

} // namespace

FailureOr<format::Module> mlir::fmoe::buildCompiledModule(ModuleOp module) {
  format::Module m;
  auto binary = module.lookupSymbol<gpu::BinaryOp>("fmoe_kernels");
  if (!binary)
    return module.emitError("no gpu.binary @fmoe_kernels: run --lower-moe "
                            "before writing a compiled module");
  auto object = cast<gpu::ObjectAttr>(binary.getObjects()[0]);
  if (object.getFormat() != gpu::CompilationTarget::Assembly)
    return binary.emitError("expects PTX (gpu-module-to-binary format=isa)");
  m.ptx = object.getObject().str();
  if (auto nvvm = dyn_cast<NVVM::NVVMTargetAttr>(object.getTarget()))
    m.target = nvvm.getChip().str();
  for (auto f : module.getOps<func::FuncOp>()) {
    if (f.isDeclaration() || f.getNumArguments() == 0 ||
        !f.getArgAttr(0, "fmoe.tokens"))
      continue;
    if (auto layer = f->getAttrOfType<DictionaryAttr>("fmoe.layer"))
      for (NamedAttribute a : layer)
        m.config.emplace_back(f.getName().str() + "." + a.getName().str(),
                              print(a.getValue()));
    auto p = buildProgram(f);
    if (failed(p))
      return failure();
    m.programs.push_back(std::move(*p));
  }
  if (m.programs.empty())
    return module.emitError("no lowered layer function in the module");
  return m;
}

LogicalResult mlir::fmoe::writeCompiledModule(ModuleOp module,
                                              llvm::raw_ostream &os) {
  auto m = buildCompiledModule(module);
  if (failed(m))
    return failure();
  os << format::serialize(*m);
  return success();
}
