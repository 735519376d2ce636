//===- CudaBackend.cpp - the runtime's CUDA backend -----------------------===//
//
// Part of fmoe. Runs a module's commands on one GPU through the driver API:
// "launch" commands run the module's PTX kernels, "call" commands the
// runtime library (memset, the grouped GEMMs of GroupedGemm.cu, all-to-all).
// Everything is enqueued on the stream given at creation; nothing here waits
// for the device, so the host never stalls on data-dependent sizes (the
// grouped GEMMs read their group sizes on the device).
//
//===----------------------------------------------------------------------===//

#include "FusedGroupedGemm.h"
#include "GroupedGemm.h"
#include "fmoe/Runtime/Runtime.h"

#include "../Exchange.h"
#include "CopySegments.h"
#include "Driver.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fmoe::runtime {

namespace {

//===----------------------------------------------------------------------===//
// Driver errors
//===----------------------------------------------------------------------===//

std::string describeResult(CUresult result) {
  const char *name = nullptr, *text = nullptr;
  // Either may fail for an unknown code; then we still print the number.
  if (cuda::driver().cuGetErrorName(result, &name) != CUDA_SUCCESS || !name)
    name = "unknown CUresult";
  if (cuda::driver().cuGetErrorString(result, &text) != CUDA_SUCCESS || !text)
    text = "no description";
  return std::string(name) + " (" + std::to_string(static_cast<int>(result)) +
         "): " + text;
}

void checkResult(CUresult result, const char *call) {
  if (result != CUDA_SUCCESS)
    throw Error(std::string("CUDA driver call ") + call +
                " failed: " + describeResult(result));
}

/// Checks a driver call and names it (its source text) in the error.
#define FMOE_CU_CHECK(call) checkResult((call), #call)

CUdeviceptr devicePtr(const void *p) {
  return static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(p));
}

//===----------------------------------------------------------------------===//
// RAII handles
//===----------------------------------------------------------------------===//

/// The device's primary context, retained for the backend's lifetime. The
/// primary context is the one the CUDA runtime (and PyTorch) use, so memory
/// and streams are shared with them.
class PrimaryContext {
public:
  explicit PrimaryContext(CUdevice device) : device(device) {
    FMOE_CU_CHECK(cuda::driver().cuDevicePrimaryCtxRetain(&context, device));
  }
  ~PrimaryContext() {
    // Nothing to report from a destructor; the retain count drops anyway.
    (void)cuda::driver().cuDevicePrimaryCtxRelease(device);
  }
  PrimaryContext(const PrimaryContext &) = delete;
  PrimaryContext &operator=(const PrimaryContext &) = delete;

  CUcontext get() const { return context; }

private:
  CUdevice device;
  CUcontext context = nullptr;
};

/// Makes `context` current on the calling thread for a scope, and restores
/// the previous one: the backend may be used from any thread, and the
/// caller's own context stays as it was.
class ContextScope {
public:
  explicit ContextScope(CUcontext context) {
    FMOE_CU_CHECK(cuda::driver().cuCtxGetCurrent(&previous));
    if (previous != context) {
      FMOE_CU_CHECK(cuda::driver().cuCtxSetCurrent(context));
      switched = true;
    }
  }
  ~ContextScope() {
    if (switched)
      (void)cuda::driver().cuCtxSetCurrent(previous);
  }
  ContextScope(const ContextScope &) = delete;
  ContextScope &operator=(const ContextScope &) = delete;

private:
  CUcontext previous = nullptr;
  bool switched = false;
};

/// A loaded CUmodule, unloaded with its owner.
class LoadedModule {
public:
  LoadedModule() = default;
  explicit LoadedModule(CUmodule module) : module(module) {}
  ~LoadedModule() {
    if (module)
      (void)cuda::driver().cuModuleUnload(module);
  }
  LoadedModule(LoadedModule &&o) noexcept
      : module(std::exchange(o.module, nullptr)) {}
  LoadedModule &operator=(LoadedModule &&o) noexcept {
    std::swap(module, o.module);
    return *this;
  }
  LoadedModule(const LoadedModule &) = delete;
  LoadedModule &operator=(const LoadedModule &) = delete;

  CUmodule get() const { return module; }

private:
  CUmodule module = nullptr;
};

//===----------------------------------------------------------------------===//
// Command attributes
//===----------------------------------------------------------------------===//

/// The attributes of a call, as printed by the module writer: integers
/// plain, booleans true/false, strings bare.
class Attrs {
public:
  explicit Attrs(const format::Command &cmd) : cmd(cmd) {}
  const format::Command &command() const { return cmd; }

  const std::string *find(std::string_view name) const {
    return findAttr(cmd, name);
  }

  int64_t getInt(std::string_view name) const {
    const std::string *v = find(name);
    if (!v)
      throw Error(where() + " has no attribute '" + std::string(name) + "'");
    return parseInt(name, *v);
  }
  int64_t getInt(std::string_view name, int64_t otherwise) const {
    const std::string *v = find(name);
    return v ? parseInt(name, *v) : otherwise;
  }
  /// A non-negative integer (sizes, leading dimensions, column offsets).
  int64_t getSize(std::string_view name) const {
    return nonNegative(name, getInt(name));
  }
  int64_t getSize(std::string_view name, int64_t otherwise) const {
    return nonNegative(name, getInt(name, otherwise));
  }

  bool getBool(std::string_view name, bool otherwise) const {
    const std::string *v = find(name);
    if (!v)
      return otherwise;
    // An MLIR unit attribute is printed as "unit": present means true.
    if (*v == "true" || *v == "unit")
      return true;
    if (*v == "false")
      return false;
    throw Error(where() + ": attribute '" + std::string(name) + "' is '" + *v +
                "', expected true or false");
  }

  std::string getString(std::string_view name) const {
    const std::string *v = find(name);
    if (!v)
      throw Error(where() + " has no attribute '" + std::string(name) + "'");
    return *v;
  }

  std::string where() const {
    return "call " + cmd.target + " (" + cmd.op + ")";
  }

private:
  int64_t parseInt(std::string_view name, const std::string &v) const {
    int64_t out = 0;
    const char *end = v.data() + v.size();
    auto [ptr, ec] = std::from_chars(v.data(), end, out);
    if (ec != std::errc() || ptr != end || v.empty())
      throw Error(where() + ": attribute '" + std::string(name) + "' is '" + v +
                  "', expected an integer");
    return out;
  }
  int64_t nonNegative(std::string_view name, int64_t v) const {
    if (v < 0)
      throw Error(where() + ": attribute '" + std::string(name) + "' is " +
                  std::to_string(v) + ", expected >= 0");
    return v;
  }

  const format::Command &cmd;
};

/// A library function's name without its element-type suffix.
struct LibraryTarget {
  std::string_view base;
  bool typed = false;
  DType type = DType::F32;
};

LibraryTarget splitTarget(std::string_view target) {
  static const std::pair<std::string_view, DType> suffixes[] = {
      {"_f32", DType::F32}, {"_bf16", DType::BF16}, {"_f16", DType::F16}};
  for (const auto &[suffix, type] : suffixes)
    if (target.size() > suffix.size() &&
        target.substr(target.size() - suffix.size()) == suffix)
      return {target.substr(0, target.size() - suffix.size()), true, type};
  return {target, false, DType::F32};
}

//===----------------------------------------------------------------------===//
// The backend
//===----------------------------------------------------------------------===//

class CudaBackend final : public Backend {
public:
  CudaBackend(int ordinal, CUstream stream);
  ~CudaBackend() override;

  std::string_view name() const override { return "cuda"; }
  void *allocate(size_t bytes) override;
  void deallocate(void *ptr) override;
  void run(const format::Module &module, const format::Command &cmd,
           const std::vector<BufferRef> &args, int64_t tokens,
           Execution &execution) override;

private:
  /// A kernel of a loaded module, with its parameter count (-1 when the
  /// driver cannot tell) to check launches against.
  struct Kernel {
    CUfunction function = nullptr;
    int64_t params = -1;
  };
  /// The PTX of one format::Module loaded in this backend's context. The
  /// PTX's address and size guard against a new Module object reusing the
  /// address of a destroyed one.
  struct ModuleEntry {
    const char *ptx = nullptr;
    size_t ptxSize = 0;
    LoadedModule module;
    std::unordered_map<std::string, Kernel> kernels;
  };

  Kernel kernelFor(const format::Module &module, const std::string &entry);
  void launch(const format::Module &module, const format::Command &cmd,
              const std::vector<BufferRef> &args, int64_t tokens,
              int64_t received);
  void call(const format::Command &cmd, const std::vector<BufferRef> &args,
            Execution &execution);
  void memset(const Attrs &attrs, const std::vector<BufferRef> &args);
  void groupedGemm(const Attrs &attrs, const LibraryTarget &target,
                   const std::vector<BufferRef> &args, bool gather);
  void groupedWgrad(const Attrs &attrs, const LibraryTarget &target,
                    const std::vector<BufferRef> &args);
  void allToAll(const Attrs &attrs, const std::vector<BufferRef> &args,
                Execution &execution);
  /// fmoe_rt_grouped_gemm_bias / _bias_act (dact false) and _dact /
  /// _dact_act (dact true); withAct: the _act forms, which also write act.
  void groupedGemmEpilogue(const Attrs &attrs, const LibraryTarget &target,
                           const std::vector<BufferRef> &args, bool dact,
                           bool withAct);
  /// A plain bf16 grouped GEMM on fmoe's own sm90 kernel (the None
  /// epilogue, or Accumulate for c += a W); false when that kernel does not
  /// take these arguments, or a plain one is left to the library hook.
  bool ownPlainGemm(const Attrs &attrs, const LibraryTarget &target,
                    const std::vector<BufferRef> &args);
  /// Launch fmoe's sm90 grouped GEMM with a workspace of its own; false
  /// when it refuses `f` (no sm_90a kernels, this device, the layout).
  bool launchFused(const Attrs &attrs, cuda::FusedGemmArgs &f);
  /// Copies on the backend's stream, for the exchanges.
  MemoryOps deviceMemory();

  CUdevice device = 0;
  CUstream stream = nullptr;
  // The memory provider (CudaAllocatorHook) this backend was created with;
  // empty: stream-ordered allocation.
  CudaAllocatorHook::Allocate externalAllocate;
  CudaAllocatorHook::Release externalRelease;
  // Declared before the modules so that it is released after they are
  // unloaded (members are destroyed in reverse order).
  std::unique_ptr<PrimaryContext> context;
  std::mutex cacheMutex;
  std::unordered_map<const format::Module *, ModuleEntry> modules;
  // Modules replaced in the cache while their kernels may still be queued on
  // the stream: unloaded only in the destructor, after a synchronisation.
  std::vector<LoadedModule> retired;
};

CudaBackend::CudaBackend(int ordinal, CUstream stream) : stream(stream) {
  FMOE_CU_CHECK(cuda::driver().cuInit(0));
  int count = 0;
  FMOE_CU_CHECK(cuda::driver().cuDeviceGetCount(&count));
  if (ordinal < 0 || ordinal >= count)
    throw Error("CUDA device " + std::to_string(ordinal) +
                " does not exist (this machine has " + std::to_string(count) +
                ")");
  FMOE_CU_CHECK(cuda::driver().cuDeviceGet(&device, ordinal));
  int pools = 0;
  FMOE_CU_CHECK(cuda::driver().cuDeviceGetAttribute(
      &pools, CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, device));
  if (!pools)
    throw Error("CUDA device " + std::to_string(ordinal) +
                " does not support stream-ordered allocation "
                "(cuMemAllocAsync), which the fmoe runtime needs");
  context = std::make_unique<PrimaryContext>(device);
  if (CudaAllocatorHook::allocate() && CudaAllocatorHook::release()) {
    externalAllocate = CudaAllocatorHook::allocate();
    externalRelease = CudaAllocatorHook::release();
  }
  // Left current on the creating thread, as the CUDA runtime would; the
  // entry points below also make it current on whichever thread calls them.
  FMOE_CU_CHECK(cuda::driver().cuCtxSetCurrent(context->get()));
}

CudaBackend::~CudaBackend() {
  CUcontext previous = nullptr;
  bool switched = false;
  if (cuda::driver().cuCtxGetCurrent(&previous) == CUDA_SUCCESS &&
      previous != context->get())
    switched = cuda::driver().cuCtxSetCurrent(context->get()) == CUDA_SUCCESS;
  // Kernels of the modules may still be queued: let them finish before the
  // code they run is unloaded. (Destruction is not on the hot path.)
  (void)cuda::driver().cuStreamSynchronize(stream);
  modules.clear();
  retired.clear();
  if (switched)
    (void)cuda::driver().cuCtxSetCurrent(previous);
}

void *CudaBackend::allocate(size_t bytes) {
  if (bytes == 0)
    return nullptr;
  ContextScope scope(context->get());
  if (externalAllocate) {
    void *p = externalAllocate(bytes, stream);
    if (!p)
      throw Error("the CUDA memory provider returned no memory for " +
                  std::to_string(bytes) + " bytes");
    return p;
  }
  CUdeviceptr ptr = 0;
  FMOE_CU_CHECK(cuda::driver().cuMemAllocAsync(&ptr, bytes, stream));
  return reinterpret_cast<void *>(static_cast<uintptr_t>(ptr));
}

void CudaBackend::deallocate(void *ptr) {
  if (!ptr)
    return;
  if (externalRelease) {
    externalRelease(ptr); // bookkeeping on the host: no context needed
    return;
  }
  // The executor frees its temporaries from a destructor; while an
  // exception is already propagating a second one would terminate the
  // process, so a failure then is dropped (the first error is the one that
  // matters, and the context is most likely unusable anyway).
  if (std::uncaught_exceptions() > 0) {
    CUcontext previous = nullptr;
    if (cuda::driver().cuCtxGetCurrent(&previous) != CUDA_SUCCESS)
      return;
    bool switched =
        previous != context->get() &&
        cuda::driver().cuCtxSetCurrent(context->get()) == CUDA_SUCCESS;
    (void)cuda::driver().cuMemFreeAsync(devicePtr(ptr), stream);
    if (switched)
      (void)cuda::driver().cuCtxSetCurrent(previous);
    return;
  }
  ContextScope scope(context->get());
  FMOE_CU_CHECK(cuda::driver().cuMemFreeAsync(devicePtr(ptr), stream));
}

void CudaBackend::run(const format::Module &module, const format::Command &cmd,
                      const std::vector<BufferRef> &args, int64_t tokens,
                      Execution &execution) {
  ContextScope scope(context->get());
  if (cmd.kind == "launch")
    return launch(module, cmd, args, tokens, execution.received);
  if (cmd.kind == "call")
    return call(cmd, args, execution);
  throw Error("unknown command kind '" + cmd.kind + "' (" + cmd.target + ")");
}

//===----------------------------------------------------------------------===//
// Kernel launches
//===----------------------------------------------------------------------===//

CudaBackend::Kernel CudaBackend::kernelFor(const format::Module &module,
                                           const std::string &entry) {
  std::lock_guard<std::mutex> lock(cacheMutex);
  auto it = modules.find(&module);
  if (it != modules.end() && (it->second.ptx != module.ptx.data() ||
                              it->second.ptxSize != module.ptx.size())) {
    // Another module now lives at this address.
    retired.push_back(std::move(it->second.module));
    modules.erase(it);
    it = modules.end();
  }
  if (it == modules.end()) {
    if (module.ptx.empty())
      throw Error("the module has no PTX, cannot launch kernel " + entry);
    // The JIT's error log says which line of the PTX it refused.
    std::string log(8192, '\0');
    CUjit_option options[] = {CU_JIT_ERROR_LOG_BUFFER,
                              CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *values[] = {log.data(), reinterpret_cast<void *>(
                                      static_cast<uintptr_t>(log.size()))};
    CUmodule loaded = nullptr;
    CUresult result = cuda::driver().cuModuleLoadDataEx(
        &loaded, module.ptx.c_str(), 2, options, values);
    if (result != CUDA_SUCCESS) {
      log.resize(log.find('\0') == std::string::npos ? log.size()
                                                     : log.find('\0'));
      throw Error("CUDA driver call cuModuleLoadDataEx (the module's PTX, "
                  "target " +
                  module.target + ") failed: " + describeResult(result) +
                  (log.empty() ? std::string() : "\n" + log));
    }
    ModuleEntry entryOf;
    entryOf.ptx = module.ptx.data();
    entryOf.ptxSize = module.ptx.size();
    entryOf.module = LoadedModule(loaded);
    it = modules.emplace(&module, std::move(entryOf)).first;
  }
  ModuleEntry &cached = it->second;
  auto k = cached.kernels.find(entry);
  if (k != cached.kernels.end())
    return k->second;

  Kernel kernel;
  CUresult result = cuda::driver().cuModuleGetFunction(
      &kernel.function, cached.module.get(), entry.c_str());
  if (result != CUDA_SUCCESS)
    throw Error("CUDA driver call cuda::driver().cuModuleGetFunction(\"" +
                entry + "\") failed: " + describeResult(result));
  // Count the parameters once, so that a launch whose operands do not match
  // the kernel's signature is refused instead of reading garbage.
  // cuFuncGetParamInfo answers CUDA_ERROR_INVALID_VALUE past the last one.
  for (size_t i = 0;; ++i) {
    size_t offset = 0, size = 0;
    CUresult r =
        cuda::driver().cuFuncGetParamInfo(kernel.function, i, &offset, &size);
    if (r == CUDA_SUCCESS)
      continue;
    kernel.params = r == CUDA_ERROR_INVALID_VALUE ? static_cast<int64_t>(i)
                                                  : -1; // cannot tell
    break;
  }
  cached.kernels.emplace(entry, kernel);
  return kernel;
}

void CudaBackend::launch(const format::Module &module,
                         const format::Command &cmd,
                         const std::vector<BufferRef> &args, int64_t tokens,
                         int64_t received) {
  if (cmd.grid.dependsOnReceived() && received < 0)
    throw Error("launch of " + cmd.target +
                ": its grid follows the rows an exchange receives, but no "
                "exchange has run");
  int64_t blocks = cmd.grid.eval(tokens, received);
  if (blocks <= 0)
    return; // no work for this token count (e.g. T = 0)
  if (blocks > INT_MAX)
    throw Error("launch of " + cmd.target + ": " + std::to_string(blocks) +
                " blocks exceed the grid limit");
  if (cmd.block <= 0 || cmd.block > 1024)
    throw Error("launch of " + cmd.target + ": " + std::to_string(cmd.block) +
                " threads per block");
  Kernel kernel = kernelFor(module, cmd.target);

  // The kernel ABI (docs/module-format.md): a buffer is a memref<?xT>
  // descriptor expanded into five 8-byte parameters (allocated pointer,
  // aligned pointer, offset, size, stride); the token count is one i64.
  std::vector<uint64_t> values;
  values.reserve(args.size() * 5);
  for (const BufferRef &a : args) {
    if (a.isTokens) {
      values.push_back(static_cast<uint64_t>(a.numel));
      continue;
    }
    uint64_t ptr = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(a.data));
    // The compiler vectorises on the promise that every buffer starts
    // 16-byte aligned (docs/module-format.md).
    if (ptr % 16 != 0 && a.numel > 0)
      throw Error("launch of " + cmd.target + ": operand " +
                  std::to_string(&a - args.data()) +
                  " is not 16-byte aligned; fmoe's kernels need every "
                  "buffer to start on a 16-byte boundary");
    values.push_back(ptr);
    values.push_back(ptr);
    values.push_back(0);
    values.push_back(static_cast<uint64_t>(a.numel));
    values.push_back(1);
  }
  if (kernel.params >= 0 &&
      kernel.params != static_cast<int64_t>(values.size()))
    throw Error("launch of " + cmd.target + ": the kernel takes " +
                std::to_string(kernel.params) + " parameters, its " +
                std::to_string(args.size()) + " operands make " +
                std::to_string(values.size()));
  std::vector<void *> params(values.size());
  for (size_t i = 0; i < values.size(); ++i)
    params[i] = &values[i];

  CUresult result = cuda::driver().cuLaunchKernel(
      kernel.function, static_cast<unsigned>(blocks), 1, 1,
      static_cast<unsigned>(cmd.block), 1, 1, 0, stream, params.data(),
      nullptr);
  // The call's text is only built on failure: this is the hot path.
  if (result != CUDA_SUCCESS)
    throw Error("CUDA driver call cuda::driver().cuLaunchKernel(" + cmd.target +
                ", " + std::to_string(blocks) + " blocks of " +
                std::to_string(cmd.block) +
                ") failed: " + describeResult(result));
}

//===----------------------------------------------------------------------===//
// Library calls
//===----------------------------------------------------------------------===//

void requireOperands(const Attrs &attrs, const std::vector<BufferRef> &args,
                     size_t count) {
  if (args.size() != count)
    throw Error(attrs.where() + " takes " + std::to_string(count) +
                " operands, got " + std::to_string(args.size()));
  for (const BufferRef &a : args)
    if (a.isTokens)
      throw Error(attrs.where() + " takes buffers only, got the token count");
}

void requireType(const Attrs &attrs, const BufferRef &b, DType type,
                 const char *what) {
  if (b.dtype != type)
    throw Error(attrs.where() + ": " + what + " is " +
                std::string(dtypeName(b.dtype)) + ", expected " +
                std::string(dtypeName(type)));
}

/// The buffer's row count, checked against its element count: the grouped
/// GEMMs size their grids from it.
int64_t rowsOf(const Attrs &attrs, const BufferRef &b, const char *what) {
  if (b.rows < 0 || b.cols <= 0 || b.rows * b.cols != b.numel)
    throw Error(attrs.where() + ": " + what + " has " +
                std::to_string(b.numel) + " elements, not " +
                std::to_string(b.rows) + " rows of " + std::to_string(b.cols));
  return b.rows;
}

/// Refuses a strided access to `rows` rows (row r at r*ld + col, `width`
/// elements) that would leave the buffer.
void requireSpan(const Attrs &attrs, const BufferRef &b, const char *what,
                 int64_t rows, int64_t ld, int64_t col, int64_t width) {
  if (rows <= 0 || width <= 0)
    return;
  int64_t needed = (rows - 1) * ld + col + width;
  if (needed > b.numel)
    throw Error(
        attrs.where() + ": " + what + " needs " + std::to_string(needed) +
        " elements (" + std::to_string(rows) + " rows, leading dimension " +
        std::to_string(ld) + ", columns [" + std::to_string(col) + ", " +
        std::to_string(col + width) + ")), has " + std::to_string(b.numel));
  if (b.numel && !b.data)
    throw Error(attrs.where() + ": " + what + " has no data");
}

/// The group count G (offsets has G+1 entries), checked against the local
/// expert count.
int64_t groupsOf(const Attrs &attrs, const BufferRef &offsets,
                 int64_t localExperts) {
  requireType(attrs, offsets, DType::I32, "offsets");
  if (offsets.numel < 1 || !offsets.data)
    throw Error(attrs.where() + ": offsets must hold at least one entry");
  int64_t groups = offsets.numel - 1;
  if (localExperts <= 0 || groups % localExperts != 0)
    throw Error(attrs.where() + ": " + std::to_string(groups) +
                " groups do not split over local_experts = " +
                std::to_string(localExperts));
  return groups;
}

void CudaBackend::call(const format::Command &cmd,
                       const std::vector<BufferRef> &args,
                       Execution &execution) {
  Attrs attrs(cmd);
  LibraryTarget target = splitTarget(cmd.target);
  if (target.base == "fmoe_rt_grouped_gemm" &&
      ownPlainGemm(attrs, target, args))
    return;
  if (const CudaLibraryHook::Fn &hook = CudaLibraryHook::get())
    if (hook(target.base, cmd, args, stream))
      return;
  if (target.base == "fmoe_rt_memset")
    return memset(attrs, args);
  if (target.base == "fmoe_rt_grouped_gemm" ||
      target.base == "fmoe_rt_grouped_gemm_to_f32")
    return groupedGemm(attrs, target, args, /*gather=*/false);
  if (target.base == "fmoe_rt_grouped_gemm_gather")
    return groupedGemm(attrs, target, args, /*gather=*/true);
  if (target.base == "fmoe_rt_grouped_wgrad")
    return groupedWgrad(attrs, target, args);
  if (target.base == "fmoe_rt_grouped_gemm_bias" ||
      target.base == "fmoe_rt_grouped_gemm_bias_act")
    return groupedGemmEpilogue(attrs, target, args, /*dact=*/false,
                               target.base == "fmoe_rt_grouped_gemm_bias_act");
  if (target.base == "fmoe_rt_grouped_gemm_dact" ||
      target.base == "fmoe_rt_grouped_gemm_dact_act")
    return groupedGemmEpilogue(attrs, target, args, /*dact=*/true,
                               target.base == "fmoe_rt_grouped_gemm_dact_act");
  if (target.base == "fmoe_rt_all_to_all")
    return allToAll(attrs, args, execution);
  if (target.base == "fmoe_rt_replicate" ||
      target.base == "fmoe_rt_replicate_grad")
    return replicateExperts(cmd, args, deviceMemory(), execution,
                            target.base == "fmoe_rt_replicate_grad");
  throw Error("the CUDA backend has no library function '" + cmd.target +
              "' (" + cmd.op + ")");
}

void CudaBackend::memset(const Attrs &attrs,
                         const std::vector<BufferRef> &args) {
  requireOperands(attrs, args, 1);
  int64_t byte = attrs.getInt("byte");
  if (byte < 0 || byte > 255)
    throw Error(attrs.where() + ": byte " + std::to_string(byte) +
                " is not in [0, 255]");
  const BufferRef &buf = args[0];
  size_t bytes = static_cast<size_t>(buf.numel) * dtypeSize(buf.dtype);
  if (bytes == 0)
    return;
  if (!buf.data)
    throw Error(attrs.where() + ": the buffer has no data");
  FMOE_CU_CHECK(cuda::driver().cuMemsetD8Async(
      devicePtr(buf.data), static_cast<unsigned char>(byte), bytes, stream));
}

void CudaBackend::groupedGemm(const Attrs &attrs, const LibraryTarget &target,
                              const std::vector<BufferRef> &args, bool gather) {
  requireOperands(attrs, args, gather ? 5 : 4);
  // a, w, c, offsets  or  x, token_of, w, c, offsets
  const BufferRef &a = args[0];
  const BufferRef &w = args[gather ? 2 : 1];
  const BufferRef &c = args[gather ? 3 : 2];
  const BufferRef &offsets = args[gather ? 4 : 3];

  DType type = target.typed ? target.type : c.dtype;
  if (type == DType::I32)
    throw Error(attrs.where() + ": no integer GEMM");
  requireType(attrs, a, type, gather ? "x" : "a");
  requireType(attrs, w, type, "w");
  cuda::GroupedGemmArgs p;
  // grouped_gemm_to_f32: an f32 result of 16-bit operands (the gate's
  // logits).
  p.outF32 = target.base == "fmoe_rt_grouped_gemm_to_f32" && type != DType::F32;
  requireType(attrs, c, p.outF32 ? DType::F32 : type, "c");

  std::string layout = attrs.getString("layout");
  if (layout != "nt" && layout != "nn")
    throw Error(attrs.where() + ": layout '" + layout + "', expected nt or nn");
  p.nt = layout == "nt";
  p.n = attrs.getSize("n");
  p.k = attrs.getSize("k");
  p.lda = attrs.getSize("lda");
  p.ldc = attrs.getSize("ldc");
  p.aCol = attrs.getSize("a_col", 0);
  p.cCol = attrs.getSize("c_col", 0);
  p.accumulate = attrs.getBool("accumulate", false);
  p.localExperts = attrs.getInt("local_experts");
  p.groups = groupsOf(attrs, offsets, p.localExperts);
  // The grid covers every row of the grouped buffer; the kernel skips those
  // past offsets[G].
  p.rows = rowsOf(attrs, c, "c");

  requireSpan(attrs, c, "c", p.rows, p.ldc, p.cCol, p.n);
  requireSpan(attrs, w, "w", 1, 0, 0, p.localExperts * p.n * p.k);
  if (gather) {
    const BufferRef &tokenOf = args[1];
    requireType(attrs, tokenOf, DType::I32, "token_of");
    requireSpan(attrs, tokenOf, "token_of", 1, 0, 0, p.rows);
    // Gathered indices are checked on the device against x's rows.
    p.aRows = rowsOf(attrs, a, "x");
    requireSpan(attrs, a, "x", p.aRows, p.lda, p.aCol, p.k);
    p.tokenOf = static_cast<const int32_t *>(tokenOf.data);
  } else {
    p.aRows = p.rows;
    requireSpan(attrs, a, "a", p.rows, p.lda, p.aCol, p.k);
  }
  p.a = a.data;
  p.w = w.data;
  p.c = c.data;
  p.offsets = static_cast<const int32_t *>(offsets.data);
  cuda::launchGroupedGemm(type, p, stream);
}

void CudaBackend::groupedGemmEpilogue(const Attrs &attrs,
                                      const LibraryTarget &target,
                                      const std::vector<BufferRef> &args,
                                      bool dact, bool withAct) {
  // bias:     a, w, bias, c, offsets (nt), c = a W^T + bias[l];
  // bias_act: a, w, bias, h, act, offsets (nt), h = a W^T + bias[l],
  //           act = act(h);
  // dact:     a, w, h, c, offsets (nn), c = (a W) * act'(h) (c may be h);
  // dact_act: a, w, h, c, act, offsets (nn), c = (a W) * act'(h) and
  //           act = act(h) (c or act may be h, not both).
  requireOperands(attrs, args, withAct ? 6 : 5);
  const BufferRef &a = args[0], &w = args[1], &x = args[2], &c = args[3],
                  &offsets = args[withAct ? 5 : 4];
  const BufferRef *act = withAct ? &args[4] : nullptr;
  const char *xName = dact ? "h" : "bias";
  DType type = target.typed ? target.type : c.dtype;
  requireType(attrs, a, type, "a");
  requireType(attrs, w, type, "w");
  requireType(attrs, x, type, xName);
  requireType(attrs, c, type, dact || !withAct ? "c" : "h");
  if (act)
    requireType(attrs, *act, type, "act");
  const char *layout = dact ? "nn" : "nt";
  if (attrs.getString("layout") != layout || attrs.getSize("a_col", 0) != 0 ||
      attrs.getBool("accumulate", false))
    throw Error(attrs.where() + ": this epilogue GEMM takes layout " + layout +
                ", a_col = 0 and no accumulate");
  if ((dact || withAct) && attrs.getString("activation") != "gelu")
    throw Error(attrs.where() + ": no activation epilogue for '" +
                attrs.getString("activation") + "' (gelu only)");
  int64_t n = attrs.getSize("n"), k = attrs.getSize("k");
  int64_t lda = attrs.getSize("lda"), ldc = attrs.getSize("ldc");
  int64_t cCol = dact || withAct ? 0 : attrs.getSize("c_col", 0);
  int64_t local = attrs.getInt("local_experts");
  int64_t groups = groupsOf(attrs, offsets, local);
  int64_t rows = rowsOf(attrs, c, "c");
  requireSpan(attrs, c, "c", rows, ldc, cCol, n);
  requireSpan(attrs, a, "a", rows, lda, 0, k);
  requireSpan(attrs, w, "w", 1, 0, 0, local * n * k);
  if (dact)
    requireSpan(attrs, x, "h", rows, ldc, 0, n);
  else
    requireSpan(attrs, x, "bias", 1, 0, 0, local * n);
  // act: rows x n, packed in its own buffer, or in h's layout when it is h.
  int64_t ldact = act && act->data == x.data ? ldc : n;
  if (act)
    requireSpan(attrs, *act, "act", rows, ldact, 0, n);
  if (dact && act && c.data == x.data && act->data == x.data)
    throw Error(attrs.where() + ": dact_act writes c or act over h, not both");
  if (rows == 0)
    return;
  void *cData = static_cast<char *>(c.data) + cCol * dtypeSize(type);

  // bf16 on sm90: CUTLASS's grouped GEMM with the epilogue fused
  // (FMOE_NO_FUSED_GEMM=1 turns it off, to compare or to test the other
  // path).
  if (type == DType::BF16 && !std::getenv("FMOE_NO_FUSED_GEMM")) {
    cuda::FusedGemmArgs f;
    f.a = a.data;
    f.lda = lda;
    f.w = w.data;
    f.nt = !dact;
    f.d = cData;
    f.ldd = ldc;
    if (dact) {
      f.aux = x.data;
      f.ldaux = ldc;
      // DAct writes act(h) over h (aux) when actOut is null.
      if (act && act->data != x.data) {
        f.actOut = act->data;
        f.ldact = ldact;
      }
      f.epilogue = act ? cuda::FusedEpilogue::DAct : cuda::FusedEpilogue::DGrad;
    } else {
      f.bias = x.data;
      f.epilogue = cuda::FusedEpilogue::Bias;
      if (act) { // BiasAct: d = act(h), the pre-activation h to aux
        f.aux = cData;
        f.ldaux = ldc;
        f.d = act->data;
        f.ldd = ldact;
        f.epilogue = cuda::FusedEpilogue::BiasAct;
      }
    }
    f.offsets = static_cast<const int32_t *>(offsets.data);
    f.experts = local;
    f.groupsPerExpert = groups / local;
    f.n = n;
    f.k = k;
    if (launchFused(attrs, f))
      return;
  }
  // Elsewhere: the plain grouped GEMM (the library hook's, else the
  // backend's own), then the epilogue in a pass over c. When dact writes c
  // over h, the GEMM goes to a buffer of its own first (it would overwrite
  // h before the pass reads it), which the pass then reads.
  BufferRef out = c;
  struct Scratch { // freed (stream-ordered) on every way out
    CudaBackend &backend;
    void *data = nullptr;
    ~Scratch() {
      if (data)
        backend.deallocate(data);
    }
  } scratch{*this};
  if (dact && c.data == x.data) {
    scratch.data = allocate(size_t(c.numel) * dtypeSize(type));
    out.data = scratch.data;
  }
  std::vector<BufferRef> plain{a, w, out, offsets};
  const CudaLibraryHook::Fn &hook = CudaLibraryHook::get();
  if (!hook || !hook("fmoe_rt_grouped_gemm", attrs.command(), plain, stream))
    groupedGemm(attrs, target, plain, /*gather=*/false);
  cuda::EpilogueArgs e;
  e.c = cData;
  e.src = scratch.data; // null: c itself
  e.x = x.data;
  e.dgelu = dact;
  e.act = act ? act->data : nullptr;
  e.ldact = ldact;
  e.offsets = static_cast<const int32_t *>(offsets.data);
  e.rows = rows;
  e.n = n;
  e.ldc = ldc;
  e.groups = groups;
  e.localExperts = local;
  cuda::launchEpilogue(type, e, stream);
}

bool CudaBackend::launchFused(const Attrs &attrs, cuda::FusedGemmArgs &f) {
  if (!cuda::fusedGroupedGemmSupported(f))
    return false;
  f.workspaceBytes = cuda::fusedGroupedGemmWorkspace(f);
  f.workspace = allocate(f.workspaceBytes);
  try {
    cuda::launchFusedGroupedGemm(f, stream);
  } catch (const std::exception &e) {
    deallocate(f.workspace);
    throw Error(attrs.where() + ": " + e.what());
  }
  deallocate(f.workspace); // stream-ordered: after the kernels
  return true;
}

bool CudaBackend::ownPlainGemm(const Attrs &attrs, const LibraryTarget &target,
                               const std::vector<BufferRef> &args) {
  // Plain GEMMs go to the library hook (torch's grouped GEMM) unless
  // FMOE_PLAIN_GEMM=own. An accumulating nn GEMM over groups (GLU's second
  // input gradient, c += a W) runs here in any case: its epilogue adds c in
  // place, where torch's grouped GEMM (no beta) needs a product buffer of
  // c's size and an add.
  if (std::getenv("FMOE_NO_FUSED_GEMM") || args.size() != 4)
    return false;
  const char *choice = std::getenv("FMOE_PLAIN_GEMM");
  bool accumulate = attrs.getBool("accumulate", false);
  std::string layout = attrs.getString("layout");
  if (accumulate ? layout != "nn" || attrs.getBool("all_rows", false)
                 : !choice || std::string_view(choice) != "own")
    return false;
  const BufferRef &a = args[0], &w = args[1], &c = args[2], &offsets = args[3];
  DType type = target.typed ? target.type : c.dtype;
  if (type != DType::BF16 || a.dtype != type || w.dtype != type ||
      c.dtype != type || offsets.dtype != DType::I32)
    return false;
  if (layout != "nt" && layout != "nn")
    return false;
  cuda::FusedGemmArgs f;
  f.nt = layout == "nt";
  f.n = attrs.getSize("n");
  f.k = attrs.getSize("k");
  f.lda = attrs.getSize("lda");
  f.ldd = attrs.getSize("ldc");
  int64_t aCol = attrs.getSize("a_col", 0), cCol = attrs.getSize("c_col", 0);
  int64_t local = attrs.getInt("local_experts");
  int64_t groups = groupsOf(attrs, offsets, local);
  int64_t rows = rowsOf(attrs, c, "c");
  requireSpan(attrs, c, "c", rows, f.ldd, cCol, f.n);
  requireSpan(attrs, a, "a", rows, f.lda, aCol, f.k);
  requireSpan(attrs, w, "w", 1, 0, 0, local * f.n * f.k);
  if (rows == 0)
    return true;
  f.a = static_cast<const char *>(a.data) + aCol * dtypeSize(type);
  f.w = w.data;
  f.d = static_cast<char *>(c.data) + cCol * dtypeSize(type);
  f.offsets = static_cast<const int32_t *>(offsets.data);
  f.experts = local;
  f.groupsPerExpert = groups / local;
  f.epilogue =
      accumulate ? cuda::FusedEpilogue::Accumulate : cuda::FusedEpilogue::None;
  return launchFused(attrs, f);
}

void CudaBackend::groupedWgrad(const Attrs &attrs, const LibraryTarget &target,
                               const std::vector<BufferRef> &args) {
  requireOperands(attrs, args, 4);
  const BufferRef &a = args[0], &b = args[1], &dw = args[2], &offsets = args[3];
  DType type = target.typed ? target.type : dw.dtype;
  if (type == DType::I32)
    throw Error(attrs.where() + ": no integer GEMM");
  requireType(attrs, a, type, "a");
  requireType(attrs, b, type, "b");
  requireType(attrs, dw, type, "dw");

  cuda::GroupedWgradArgs p;
  p.m = attrs.getSize("m");
  p.n = attrs.getSize("n");
  p.lda = attrs.getSize("lda");
  p.ldb = attrs.getSize("ldb");
  p.aCol = attrs.getSize("a_col", 0);
  p.localExperts = attrs.getInt("local_experts");
  p.groups = groupsOf(attrs, offsets, p.localExperts);
  // a and b are both grouped buffers; rows past offsets[G] are not read.
  p.rows = std::min(rowsOf(attrs, a, "a"), rowsOf(attrs, b, "b"));

  requireSpan(attrs, a, "a", p.rows, p.lda, p.aCol, p.m);
  requireSpan(attrs, b, "b", p.rows, p.ldb, 0, p.n);
  requireSpan(attrs, dw, "dw", 1, 0, 0, p.localExperts * p.m * p.n);
  p.a = a.data;
  p.b = b.data;
  p.dw = dw.data;
  p.offsets = static_cast<const int32_t *>(offsets.data);
  cuda::launchGroupedWgrad(type, p, stream);
}

void CudaBackend::allToAll(const Attrs &attrs,
                           const std::vector<BufferRef> &args,
                           Execution &execution) {
  requireOperands(attrs, args, 4);
  const BufferRef &in = args[0], &offsets = args[1], &out = args[2],
                  &outOffsets = args[3];
  if (in.dtype != out.dtype)
    throw Error(attrs.where() + ": in is " + std::string(dtypeName(in.dtype)) +
                ", out is " + std::string(dtypeName(out.dtype)));
  requireType(attrs, offsets, DType::I32, "offsets");
  requireType(attrs, outOffsets, DType::I32, "out_offsets");
  // Everything on the backend's stream; the host waits only for the group
  // offsets and the exchanged counts (the receive sizes of the rows).
  execution.exchangedRows =
      exchangeGroups(attrs.command(), args, deviceMemory(), execution);
}

MemoryOps CudaBackend::deviceMemory() {
  MemoryOps device;
  device.copy = [this](void *dst, const void *src, int64_t bytes) {
    if (bytes > 0 && dst != src)
      FMOE_CU_CHECK(cuda::driver().cuMemcpyDtoDAsync(
          devicePtr(dst), devicePtr(src), bytes, stream));
  };
  device.toHost = [this](void *host, const void *src, int64_t bytes) {
    if (bytes <= 0)
      return;
    FMOE_CU_CHECK(
        cuda::driver().cuMemcpyDtoHAsync(host, devicePtr(src), bytes, stream));
    FMOE_CU_CHECK(cuda::driver().cuStreamSynchronize(stream));
  };
  device.fromHost = [this](void *dst, const void *host, int64_t bytes) {
    if (bytes > 0)
      FMOE_CU_CHECK(cuda::driver().cuMemcpyHtoDAsync(devicePtr(dst), host,
                                                     bytes, stream));
  };
  device.allocate = [this](int64_t bytes) { return allocate(bytes); };
  device.deallocate = [this](void *p) { deallocate(p); };
  device.copySegments = [this](void *dst, const void *src,
                               const std::vector<Segment> &segments) {
    if (segments.empty())
      return;
    int64_t bytes = int64_t(segments.size() * sizeof(Segment)), most = 0;
    for (const Segment &s : segments)
      most = std::max(most, s.bytes);
    void *table = allocate(bytes);
    try {
      // Pageable host memory: the driver stages it before returning.
      FMOE_CU_CHECK(cuda::driver().cuMemcpyHtoDAsync(
          devicePtr(table), segments.data(), bytes, stream));
      cuda::launchCopySegments(dst, src, static_cast<const Segment *>(table),
                               int64_t(segments.size()), most, stream);
    } catch (...) {
      deallocate(table);
      throw;
    }
    deallocate(table); // stream-ordered: after the kernel
  };
  return device;
}

} // namespace

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

bool cudaBackendAvailable() {
  // No exception: this is the question callers ask before choosing.
  try {
    if (cuda::driver().cuInit(0) != CUDA_SUCCESS)
      return false;
    int count = 0;
    return cuda::driver().cuDeviceGetCount(&count) == CUDA_SUCCESS && count > 0;
  } catch (const Error &) {
    return false;
  }
}

std::unique_ptr<Backend> createCudaBackend(int device, void *stream) {
  return std::make_unique<CudaBackend>(device, static_cast<CUstream>(stream));
}

} // namespace fmoe::runtime
