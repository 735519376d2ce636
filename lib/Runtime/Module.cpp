//===- Module.cpp - loading and validating compiled modules ---------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Runtime/Runtime.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace fmoe::runtime {

DType parseDType(std::string_view name) {
  if (name == "f32")
    return DType::F32;
  if (name == "bf16")
    return DType::BF16;
  if (name == "f16")
    return DType::F16;
  if (name == "i32")
    return DType::I32;
  throw Error("unknown element type '" + std::string(name) + "'");
}

std::string_view dtypeName(DType t) {
  switch (t) {
  case DType::F32:
    return "f32";
  case DType::BF16:
    return "bf16";
  case DType::F16:
    return "f16";
  case DType::I32:
    return "i32";
  }
  return "?";
}

size_t dtypeSize(DType t) {
  return t == DType::BF16 || t == DType::F16 ? 2 : 4;
}

const std::string *findAttr(const format::Command &c, std::string_view name) {
  for (const auto &[k, v] : c.attrs)
    if (k == name)
      return &v;
  return nullptr;
}

int64_t intAttr(const format::Command &c, std::string_view name) {
  const std::string *v = findAttr(c, name);
  if (!v)
    throw Error("command " + c.target + " lacks attribute '" +
                std::string(name) + "'");
  return std::stoll(*v);
}

int64_t intAttrOr(const format::Command &c, std::string_view name,
                  int64_t fallback) {
  return findAttr(c, name) ? intAttr(c, name) : fallback;
}

std::vector<int64_t> intListAttr(const format::Command &c,
                                 std::string_view name) {
  std::vector<int64_t> values;
  const std::string *v = findAttr(c, name);
  if (!v || v->empty())
    return values;
  size_t at = 0;
  while (at <= v->size()) {
    size_t end = std::min(v->find(',', at), v->size());
    std::string item = v->substr(at, end - at);
    char *stop = nullptr;
    long long x = std::strtoll(item.c_str(), &stop, 10);
    if (item.empty() || stop != item.c_str() + item.size())
      throw Error("command " + c.target + ": attribute '" + std::string(name) +
                  "' is not a list of integers: '" + *v + "'");
    values.push_back(x);
    at = end + 1;
  }
  return values;
}

bool boolAttr(const format::Command &c, std::string_view name) {
  const std::string *v = findAttr(c, name);
  return v && (*v == "true" || *v == "unit");
}

int64_t bufferNumel(const format::Buffer &b, int64_t tokens, int64_t received) {
  if (b.rows.dependsOnReceived() && received < 0)
    throw Error("buffer " + b.name +
                " has as many rows as an exchange receives: its size is "
                "known only once the exchange ran");
  return b.rows.eval(tokens, std::max<int64_t>(received, 0)) * b.cols;
}

Backend::~Backend() = default;
Communicator::~Communicator() = default;

static CudaLibraryHook::Fn &hookSlot() {
  static CudaLibraryHook::Fn fn;
  return fn;
}
void CudaLibraryHook::set(Fn fn) { hookSlot() = std::move(fn); }
const CudaLibraryHook::Fn &CudaLibraryHook::get() { return hookSlot(); }

static std::pair<CudaAllocatorHook::Allocate, CudaAllocatorHook::Release> &
allocatorSlot() {
  static std::pair<CudaAllocatorHook::Allocate, CudaAllocatorHook::Release> fns;
  return fns;
}
void CudaAllocatorHook::set(Allocate allocate, Release release) {
  allocatorSlot() = {std::move(allocate), std::move(release)};
}
const CudaAllocatorHook::Allocate &CudaAllocatorHook::allocate() {
  return allocatorSlot().first;
}
const CudaAllocatorHook::Release &CudaAllocatorHook::release() {
  return allocatorSlot().second;
}

std::shared_ptr<CompiledModule> CompiledModule::load(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error("cannot open compiled module '" + path + "'");
  std::stringstream bytes;
  bytes << in.rdbuf();
  return fromBytes(bytes.str(), path);
}

std::shared_ptr<CompiledModule>
CompiledModule::fromBytes(std::string_view bytes, const std::string &origin) {
  auto m = std::make_shared<CompiledModule>();
  std::string error;
  if (!format::parse(bytes, m->mod, error))
    throw Error("refusing compiled module '" + origin + "': " + error);
  m->name = origin;
  // Semantic checks beyond the syntax: what the executor relies on.
  for (const format::Program &p : m->mod.programs) {
    for (const format::Buffer &b : p.buffers)
      parseDType(b.dtype);
    for (const format::Command &c : p.commands) {
      if (c.kind == "launch" && (c.block <= 0 || c.grid.divisor <= 0))
        throw Error("refusing compiled module '" + origin + "': launch of " +
                    c.target + " has no launch dimensions");
      if (c.op.empty())
        throw Error("refusing compiled module '" + origin + "': command " +
                    c.target + " names no operation");
    }
  }
  if (!m->hasProgram("forward"))
    throw Error("refusing compiled module '" + origin +
                "': it has no forward program");
  return m;
}

bool CompiledModule::hasProgram(std::string_view kind) const {
  for (const format::Program &p : mod.programs)
    if (p.name == kind)
      return true;
  return false;
}

const format::Program &CompiledModule::program(std::string_view kind) const {
  for (const format::Program &p : mod.programs)
    if (p.name == kind)
      return p;
  throw Error("compiled module '" + name + "' has no " + std::string(kind) +
              " program");
}

std::string CompiledModule::config(std::string_view key) const {
  for (const auto &[k, v] : mod.config) {
    size_t dot = k.rfind('.');
    if (std::string_view(k).substr(dot == std::string::npos ? 0 : dot + 1) ==
        key)
      return v;
  }
  throw Error("compiled module '" + name + "' has no configuration '" +
              std::string(key) + "'");
}

int64_t CompiledModule::configInt(std::string_view key) const {
  std::string v = config(key);
  try {
    return std::stoll(v);
  } catch (const std::exception &) {
    throw Error("configuration '" + std::string(key) + "' of '" + name +
                "' is not an integer: " + v);
  }
}

} // namespace fmoe::runtime
