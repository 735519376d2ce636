//===- fmoe_ops.cpp - the fmoe LibTorch custom ops ------------------------===//
//
// Part of fmoe. A thin adapter over the runtime: torch.ops.fmoe.load reads and
// validates a compiled module, torch.ops.fmoe.run executes one of its
// programs on tensors (the CPU backend for CPU tensors, the CUDA backend on
// the current stream for CUDA tensors). Autograd, fake kernels and the layer
// API are in python/fmoe/_ops.py.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Runtime/Nccl.h"
#include "fmoe/Runtime/Runtime.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/GroupRegistry.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/library.h>
#ifdef FMOE_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/native/cuda/GroupMM.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cublas_v2.h>
#include <dlfcn.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

namespace {

using namespace fmoe::runtime;

std::mutex registryMutex;
std::vector<std::shared_ptr<CompiledModule>> &modules() {
  static std::vector<std::shared_ptr<CompiledModule>> m;
  return m;
}

std::shared_ptr<CompiledModule> moduleOf(int64_t handle) {
  std::lock_guard<std::mutex> lock(registryMutex);
  TORCH_CHECK(handle >= 0 && handle < int64_t(modules().size()),
              "fmoe: unknown module handle ", handle);
  return modules()[handle];
}

/// Matrix products of the CPU backend go through ATen (BLAS) instead of the
/// runtime's portable loop.
void installAtenGemm() {
  CpuGemm::set([](int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                  const float *b, int64_t ldb, bool transB, float *c,
                  int64_t ldc, bool accumulate) {
    if (m == 0 || n == 0)
      return;
    auto opts = at::TensorOptions().dtype(at::kFloat);
    at::Tensor A =
        at::from_blob(const_cast<float *>(a), {m, k}, {lda, 1}, opts);
    at::Tensor B =
        transB
            ? at::from_blob(const_cast<float *>(b), {n, k}, {ldb, 1}, opts).t()
            : at::from_blob(const_cast<float *>(b), {k, n}, {ldb, 1}, opts);
    at::Tensor C = at::from_blob(c, {m, n}, {ldc, 1}, opts);
    if (accumulate)
      C.addmm_(A, B);
    else if (k == 0)
      C.zero_();
    else
      at::mm_out(C, A, B);
  });
}

#ifdef FMOE_HAS_CUDA
/// cuBLAS's cublasGemmEx, from the libcublas torch has loaded (null when
/// there is none). Called directly for the gate's bf16 x bf16 -> f32 GEMM:
/// torch's mm with out_dtype costs ~120 us of host time per call (H200,
/// torch 2.11; bench/NOTES.md, run 32), which the GPU waits for at the
/// start of a forward.
using GemmExFn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t,
                                    cublasOperation_t, int, int, int,
                                    const void *, const void *, cudaDataType,
                                    int, const void *, cudaDataType, int,
                                    const void *, void *, cudaDataType, int,
                                    cublasComputeType_t, cublasGemmAlgo_t);
GemmExFn cublasGemmExFn() {
  // Only a libcublas already loaded (torch's, whose handles we are given):
  // a second copy of another version would not know them.
  static GemmExFn fn = [] {
    for (const char *name :
         {"libcublas.so.13", "libcublas.so.12", "libcublas.so"})
      if (void *lib = dlopen(name, RTLD_NOW | RTLD_NOLOAD))
        if (void *sym = dlsym(lib, "cublasGemmEx"))
          return reinterpret_cast<GemmExFn>(sym);
    return GemmExFn(nullptr);
  }();
  // Which way the gate's GEMM goes, for bench/host_overhead.py.
  static bool said = [] {
    if (const char *v = std::getenv("FMOE_HOST_TIMING"); v && *v && *v != '0')
      std::fprintf(stderr, "fmoe: the gate's f32 GEMM %s\n",
                   fn ? "calls cublasGemmEx" : "falls back to torch.mm");
    return true;
  }();
  (void)said;
  return fn;
}

/// c[rows x n] (f32, row stride ldc) = a[rows x k] (bf16, lda) . w^T (w:
/// bf16 n x k, row-major), through cublasGemmEx on the current stream;
/// false when cuBLAS is not at hand or refuses.
bool gemmBf16ToF32(const void *a, int64_t lda, const void *w, float *c,
                   int64_t ldc, int64_t rows, int64_t n, int64_t k) {
  auto gemm = cublasGemmExFn();
  if (!gemm || rows > INT32_MAX || lda > INT32_MAX || ldc > INT32_MAX)
    return false;
  // Column-major: c^T (n x rows) = w (op T of the k x n matrix) . a^T.
  float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t st =
      gemm(at::cuda::getCurrentCUDABlasHandle(), CUBLAS_OP_T, CUBLAS_OP_N,
           int(n), int(rows), int(k), &alpha, w, CUDA_R_16BF, int(k), a,
           CUDA_R_16BF, int(lda), &beta, c, CUDA_R_32F, int(ldc),
           CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return st == CUBLAS_STATUS_SUCCESS;
}

/// bf16 grouped GEMMs through torch's grouped GEMM (CUTLASS, tensor cores),
/// with the group sizes read on the device as the runtime's own kernels do.
/// On Hopper (the GPUs this was tested on, empty experts included) the
/// CUTLASS kernel writes straight into the runtime's buffer (it takes the
/// output's row stride); elsewhere, and to accumulate, torch's result is
/// copied or added in, and weight gradients are left to the runtime's
/// kernels (which write zeros for an expert without rows). Layouts torch
/// cannot take (misaligned buffers or leading dimensions, other dtypes) are
/// left to the runtime's kernels.
bool torchGroupedGemm(std::string_view fn, const fmoe::format::Command &c,
                      const std::vector<BufferRef> &args, void *stream) {
  bool gather = fn == "fmoe_rt_grouped_gemm_gather";
  bool wgrad = fn == "fmoe_rt_grouped_wgrad";
  // The operands bf16; the result bf16, or f32 (the gate's logits).
  bool f32Out = fn == "fmoe_rt_grouped_gemm_to_f32";
  if (fn != "fmoe_rt_grouped_gemm" && !gather && !wgrad && !f32Out)
    return false;
  for (size_t i = 0; i < args.size(); ++i)
    if (args[i].dtype != DType::BF16 && args[i].dtype != DType::I32 &&
        !(f32Out && i == 2))
      return false;
  int device = c10::cuda::current_device();
  c10::cuda::CUDAStreamGuard guard(c10::cuda::getStreamFromExternal(
      static_cast<cudaStream_t>(stream), device));
  // The gate's logits (one group of every row, bf16 x bf16 -> f32): straight
  // to cuBLAS on the raw pointers. Making tensor views of the buffers first
  // (below) costs ~100 us of host time on the H200 machine (run 34), which
  // the GPU waits for at the start of a forward.
  if (f32Out && boolAttr(c, "all_rows") && args.size() == 4 &&
      intAttrOr(c, "local_experts", 1) == 1 && args[3].numel == 2 &&
      !boolAttr(c, "accumulate") && findAttr(c, "layout") &&
      *findAttr(c, "layout") == "nt") {
    int64_t n = intAttrOr(c, "n", 0), k = intAttrOr(c, "k", 0);
    int64_t lda = intAttrOr(c, "lda", k), ldc = intAttrOr(c, "ldc", n);
    int64_t aCol = intAttrOr(c, "a_col", 0), cCol = intAttrOr(c, "c_col", 0);
    if (n > 0 && k > 0 && lda > 0 && ldc > 0 && args[0].numel % lda == 0 &&
        args[2].numel % ldc == 0 &&
        args[0].numel / lda == args[2].numel / ldc && aCol + k <= lda &&
        cCol + n <= ldc && args[1].numel == n * k) {
      int64_t rows = args[2].numel / ldc;
      if (rows == 0)
        return true;
      if (gemmBf16ToF32(static_cast<const at::BFloat16 *>(args[0].data) + aCol,
                        lda, args[1].data,
                        static_cast<float *>(args[2].data) + cCol, ldc, rows, n,
                        k))
        return true;
    }
  }
  auto opts = at::TensorOptions().device(at::kCUDA, device);
  // Views of the runtime's buffers; the device is given, since torch cannot
  // query it for stream-ordered (memory pool) allocations.
  auto view = [&](void *data, at::IntArrayRef sizes, at::ScalarType type) {
    return at::for_blob(data, sizes)
        .options(opts.dtype(type))
        .target_device(at::Device(at::kCUDA, device))
        .make_tensor();
  };
  auto matrix = [&](const BufferRef &b, int64_t ld,
                    at::ScalarType type = at::kBFloat16) {
    return view(b.data, {b.numel / ld, ld}, type);
  };
  // 16-byte alignment of every row start, as torch's grouped GEMM requires.
  auto aligned = [](int64_t elems) { return elems % 8 == 0; };
  for (const BufferRef &a : args)
    if (reinterpret_cast<uintptr_t>(a.data) % 16 != 0)
      return false;
  bool direct = at::cuda::getDeviceProperties(device)->major == 9;
  if (wgrad && !direct)
    return false;
  int64_t local = intAttrOr(c, "local_experts", 1);
  const BufferRef &offBuf = args.back();
  int64_t groups = offBuf.numel - 1, perExpert = groups / local;
  at::Tensor offsets = view(offBuf.data, {offBuf.numel}, at::kInt);
  at::Tensor offs =
      offsets.slice(0, perExpert, groups + 1, perExpert).contiguous();
  // The gate's GEMMs: one group that is every row (`all_rows`), run as
  // plain cuBLAS GEMMs that write, or add to, the runtime's buffer in place
  // (no copy of the result, no mask from the offsets).
  bool whole = boolAttr(c, "all_rows") && local == 1 && groups == 1;
  if (wgrad) {
    int64_t m = intAttrOr(c, "m", 0), n = intAttrOr(c, "n", 0);
    int64_t lda = intAttrOr(c, "lda", m), ldb = intAttrOr(c, "ldb", n);
    int64_t aCol = intAttrOr(c, "a_col", 0);
    if (!aligned(lda) || !aligned(ldb) || !aligned(aCol) || !aligned(m) ||
        !aligned(n))
      return false;
    at::Tensor a = matrix(args[0], lda).slice(1, aCol, aCol + m);
    at::Tensor b = matrix(args[1], ldb).slice(1, 0, n);
    at::Tensor dw = view(args[2].data, {local, m, n}, at::kBFloat16);
    if (whole && a.size(0) == b.size(0)) {
      at::Tensor out = dw.select(0, 0);
      if (a.size(0) == 0)
        out.zero_();
      else
        at::mm_out(out, a.t(), b);
      return true;
    }
    if (a.size(0) == 0)
      dw.zero_();
    else if (direct)
      at::cuda::detail::bf16bf16_grouped_mm(a.t(), b, offs, std::nullopt, dw);
    else
      dw.copy_(at::_grouped_mm(a.t(), b, offs));
    return true;
  }
  int64_t n = intAttrOr(c, "n", 0), k = intAttrOr(c, "k", 0);
  int64_t lda = intAttrOr(c, "lda", k), ldc = intAttrOr(c, "ldc", n);
  int64_t aCol = intAttrOr(c, "a_col", 0), cCol = intAttrOr(c, "c_col", 0);
  bool nt = findAttr(c, "layout") && *findAttr(c, "layout") == "nt";
  bool accumulate = boolAttr(c, "accumulate");
  if (!aligned(lda) || !aligned(aCol) || !aligned(k) || !aligned(n))
    return false;
  const BufferRef &wBuf = args[gather ? 2 : 1];
  const BufferRef &cBuf = args[gather ? 3 : 2];
  at::Tensor a = matrix(args[0], lda).slice(1, aCol, aCol + k);
  if (f32Out) {
    // One group, bf16 x bf16 -> f32 through cuBLAS; the rows outside
    // [offsets[0], offsets[1]) keep their contents, as the runtime's kernel
    // leaves them (the offsets stay on the device).
    if (local != 1 || groups != 1 || accumulate || !nt)
      return false;
    at::Tensor dst = matrix(cBuf, ldc, at::kFloat).slice(1, cCol, cCol + n);
    int64_t rows = std::min(a.size(0), dst.size(0));
    if (rows == 0)
      return true;
    at::Tensor w = view(wBuf.data, {n, k}, at::kBFloat16);
    if (whole && a.size(0) == dst.size(0)) {
      at::mm_out(dst, a, w.t(), at::kFloat);
      return true;
    }
    at::Tensor prod = at::mm(a.slice(0, 0, rows), w.t(), at::kFloat);
    at::Tensor r = at::arange(rows, offsets.options()).unsqueeze(1);
    at::Tensor in = (r >= offsets[0]).logical_and(r < offsets[1]);
    at::Tensor out = dst.slice(0, 0, rows);
    out.copy_(at::where(in, prod, out));
    return true;
  }
  if (gather) {
    at::Tensor idx = view(args[1].data, {args[1].numel}, at::kInt);
    a = a.index_select(0, idx.clamp_min(0).to(at::kLong));
  }
  at::Tensor w =
      nt ? view(wBuf.data, {local, n, k}, at::kBFloat16).transpose(1, 2)
         : view(wBuf.data, {local, k, n}, at::kBFloat16);
  at::Tensor dst = matrix(cBuf, ldc).slice(1, cCol, cCol + n);
  if (a.size(0) == 0)
    return true; // no rows in use
  if (whole && !gather && a.size(0) == dst.size(0)) {
    at::Tensor w0 = w.select(0, 0);
    if (accumulate)
      dst.addmm_(a, w0);
    else
      at::mm_out(dst, a, w0);
    return true;
  }
  if (direct && !accumulate && aligned(ldc) && aligned(cCol)) {
    at::cuda::detail::bf16bf16_grouped_mm(a, w, offs, std::nullopt, dst);
    return true;
  }
  at::Tensor out = at::_grouped_mm(a, w, offs);
  if (accumulate)
    dst.add_(out);
  else
    dst.copy_(out);
  return true;
}
#endif

int64_t load(const std::string &path) {
  static std::once_flag gemmOnce;
  std::call_once(gemmOnce, [] {
    installAtenGemm();
#ifdef FMOE_HAS_CUDA
    if (!std::getenv("FMOE_NO_TORCH_GEMM"))
      CudaLibraryHook::set(torchGroupedGemm);
    // The runtime's temporaries come from torch's caching allocator.
    if (!std::getenv("FMOE_NO_TORCH_ALLOCATOR"))
      CudaAllocatorHook::set(
          [](size_t bytes, void *stream) {
            return c10::cuda::CUDACachingAllocator::raw_alloc_with_stream(
                bytes, static_cast<cudaStream_t>(stream));
          },
          [](void *ptr) { c10::cuda::CUDACachingAllocator::raw_delete(ptr); });
#endif
  });
  std::shared_ptr<CompiledModule> m;
  try {
    m = CompiledModule::load(path);
  } catch (const Error &e) {
    TORCH_CHECK(false, e.what());
  }
  std::lock_guard<std::mutex> lock(registryMutex);
  modules().push_back(m);
  return int64_t(modules().size()) - 1;
}

at::ScalarType scalarType(DType t) {
  switch (t) {
  case DType::F32:
    return at::kFloat;
  case DType::BF16:
    return at::kBFloat16;
  case DType::F16:
    return at::kHalf;
  case DType::I32:
    return at::kInt;
  }
  return at::kFloat;
}

DType dtypeOf(const at::Tensor &t) {
  switch (t.scalar_type()) {
  case at::kFloat:
    return DType::F32;
  case at::kBFloat16:
    return DType::BF16;
  case at::kHalf:
    return DType::F16;
  case at::kInt:
    return DType::I32;
  default:
    TORCH_CHECK(false, "fmoe: unsupported tensor dtype ", t.scalar_type());
  }
}

BufferRef ref(const at::Tensor &t) {
  BufferRef r;
  r.data = t.data_ptr();
  r.numel = t.numel();
  r.dtype = dtypeOf(t);
  return r;
}

Backend &backendFor(const at::Device &device) {
  if (device.is_cpu()) {
    static std::unique_ptr<Backend> cpu = createCpuBackend();
    return *cpu;
  }
#ifdef FMOE_HAS_CUDA
  TORCH_CHECK(device.is_cuda(), "fmoe: unsupported device ", device);
  void *stream = c10::cuda::getCurrentCUDAStream(device.index()).stream();
  static std::mutex mutex;
  static std::map<std::pair<int, void *>, std::unique_ptr<Backend>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto &slot = cache[{device.index(), stream}];
  if (!slot) {
    try {
      slot = createCudaBackend(device.index(), stream);
    } catch (const Error &e) {
      TORCH_CHECK(false, e.what());
    }
  }
  return *slot;
#else
  TORCH_CHECK(false, "fmoe: this build has no CUDA backend; tensors on ",
              device, " cannot run");
#endif
}

/// An expert-parallel group over a torch.distributed process group (gloo on
/// the CPU, NCCL on GPUs), on the device of the layer's tensors. The exchange
/// sizes are host integers, as c10d's all-to-all takes them.
class ProcessGroupCommunicator final : public Communicator {
public:
  ProcessGroupCommunicator(c10::intrusive_ptr<c10d::ProcessGroup> pg,
                           at::Device device)
      : pg(std::move(pg)), device(device) {}
  int64_t rank() const override { return pg->getRank(); }
  int64_t size() const override { return pg->getSize(); }
  void allToAll(const void *send, const std::vector<int64_t> &sendBytes,
                void *recv, const std::vector<int64_t> &recvBytes) override {
    auto opts = at::TensorOptions().dtype(at::kByte).device(device);
    auto bytes = [&](const void *data, const std::vector<int64_t> &sizes) {
      int64_t n = 0;
      for (int64_t s : sizes)
        n += s;
      if (!n)
        return at::empty({0}, opts);
      return at::for_blob(const_cast<void *>(data), {n})
          .options(opts)
          .target_device(device)
          .make_tensor();
    };
    at::Tensor in = bytes(send, sendBytes), out = bytes(recv, recvBytes);
    std::vector<int64_t> inSplit(sendBytes), outSplit(recvBytes);
    pg->alltoall_base(out, in, outSplit, inSplit)->wait();
  }
  void broadcast(void *data, int64_t bytes, int64_t root) override {
    std::vector<at::Tensor> t{flat(data, bytes, at::kByte)};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    pg->broadcast(t, opts)->wait();
  }
  void reduceSum(void *data, int64_t count, DType type, int64_t root) override {
    std::vector<at::Tensor> t{flat(data, count, scalarType(type))};
    c10d::ReduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.rootRank = root;
    pg->reduce(t, opts)->wait();
  }

private:
  at::Tensor flat(void *data, int64_t numel, at::ScalarType type) {
    return at::for_blob(data, {numel})
        .options(at::TensorOptions().dtype(type).device(device))
        .target_device(device)
        .make_tensor();
  }

  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  at::Device device;
};

#ifdef FMOE_HAS_CUDA
/// FMOE_COMMUNICATOR=nccl: expert-parallel exchanges on the runtime's own
/// NCCL communicator (include/fmoe/Runtime/Nccl.h), one per process group
/// and device, created on the group's first exchange from an ncclUniqueId
/// that rank 0 makes and broadcasts over the group itself. Otherwise (the
/// default) the group's own all-to-all (ProcessGroupCommunicator).
bool ownNcclWanted() {
  const char *v = std::getenv("FMOE_COMMUNICATOR");
  if (!v || !*v || std::string(v) == "torch")
    return false;
  TORCH_CHECK(std::string(v) == "nccl", "fmoe: FMOE_COMMUNICATOR=", v,
              ": expected torch (the default) or nccl");
  return true;
}

/// The runtime's NCCL communicator of `group` on `device`, created on first
/// use (collectively: every rank of the group gets here in the same
/// exchange). Kept for the process's lifetime.
Communicator *ownNccl(const std::string &group, at::Device device) {
  // (One lock for every group: a communicator's collective set-up happens
  // once per group and process, with every rank of the group taking part.)
  static std::mutex mutex;
  static auto *made =
      new std::map<std::pair<std::string, int>, std::unique_ptr<Communicator>>;
  std::lock_guard<std::mutex> lock(mutex);
  TORCH_CHECK(device.is_cuda(),
              "fmoe: FMOE_COMMUNICATOR=nccl needs CUDA "
              "tensors, got ",
              device);
  auto pg = c10d::resolve_process_group(group);
  auto key = std::make_pair(group, int(device.index()));
  auto it = made->find(key);
  // A group re-created under the same name (other ranks or size) gets a
  // new communicator.
  if (it != made->end() && it->second->rank() == pg->getRank() &&
      it->second->size() == pg->getSize())
    return it->second.get();
  double timeout = 300.0;
  if (const char *s = std::getenv("FMOE_NCCL_TIMEOUT_S")) {
    char *end = nullptr;
    timeout = std::strtod(s, &end);
    TORCH_CHECK(end != s && *end == '\0' && timeout > 0,
                "fmoe: FMOE_NCCL_TIMEOUT_S=", s,
                ": expected a positive number of seconds");
  }
  // Rank 0 makes the id and broadcasts it over the group, with a status
  // byte first (0: rank 0 could not make one, and every rank fails here
  // rather than waiting for it). The bytes travel as a CUDA tensor: the
  // group may be NCCL's, which does not broadcast host tensors.
  constexpr int64_t kBytes = 1 + int64_t(sizeof(NcclUniqueId));
  at::Tensor id = at::zeros({kBytes}, at::TensorOptions().dtype(at::kByte));
  std::string failure;
  if (pg->getRank() == 0) {
    try {
      NcclUniqueId fresh = ncclUniqueId();
      auto *bytes = static_cast<uint8_t *>(id.data_ptr());
      bytes[0] = 1;
      std::memcpy(bytes + 1, fresh.data(), fresh.size());
    } catch (const Error &e) {
      failure = e.what();
    }
  }
  std::vector<at::Tensor> t{id.to(device)};
  c10d::BroadcastOptions opts;
  opts.rootRank = 0;
  pg->broadcast(t, opts)->wait();
  at::Tensor back = t[0].cpu();
  auto *bytes = static_cast<const uint8_t *>(back.data_ptr());
  TORCH_CHECK(bytes[0] == 1, "fmoe: rank 0 of group ", group,
              " could not make an NCCL id for fmoe's communicator",
              failure.empty() ? std::string() : ": " + failure);
  NcclUniqueId shared;
  std::memcpy(shared.data(), bytes + 1, shared.size());
  int index = device.index();
  auto comm = createNcclCommunicator(
      shared, pg->getRank(), pg->getSize(), index,
      [index]() -> void * {
        return c10::cuda::getCurrentCUDAStream(index).stream();
      },
      timeout);
  Communicator *raw = comm.get();
  (*made)[key] = std::move(comm);
  return raw;
}
#endif

/// Runs program `kind` of module `handle` for `tokens` tokens. Inputs are
/// contiguous tensors in the program's input order; the outputs are new
/// flat tensors in its output order.
std::vector<at::Tensor> run(int64_t handle, const std::string &kind,
                            int64_t tokens,
                            const std::vector<at::Tensor> &inputs,
                            const std::optional<std::string> &group) {
  std::shared_ptr<CompiledModule> m = moduleOf(handle);
  TORCH_CHECK(!inputs.empty(), "fmoe.run: no inputs");
  at::Device device = inputs[0].device();
  std::vector<BufferRef> in, out;
  std::vector<at::Tensor> contiguous, results;
  for (const at::Tensor &t : inputs) {
    TORCH_CHECK(t.device() == device, "fmoe.run: inputs on ", device, " and ",
                t.device(), "; all inputs of a layer must be on one device");
    // Compiled kernels need buffers that start 16-byte aligned: a view
    // into the middle of a tensor may not, and is copied.
    at::Tensor c = t.contiguous();
    if (reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 != 0)
      c = c.clone();
    contiguous.push_back(c);
    in.push_back(ref(contiguous.back()));
  }
  try {
    // Outputs are allocated when the program first writes them (the
    // weight gradients late in a backward), empty ones here.
    const fmoe::format::Program &program = m->program(kind);
    auto make = [&](int64_t numel, DType dtype) {
      return at::empty(
          {numel}, at::TensorOptions().dtype(scalarType(dtype)).device(device));
    };
    for (const fmoe::format::Buffer &b : program.buffers) {
      if (b.role != "output")
        continue;
      // Unknown (-1) for a size that depends on the rows an exchange
      // receives: the executor sizes it when it is written.
      BufferRef r;
      r.dtype = parseDType(b.dtype);
      r.numel = b.rows.dependsOnReceived() ? -1 : bufferNumel(b, tokens);
      results.push_back(r.numel ? at::Tensor() : make(0, r.dtype));
      out.push_back(r);
    }
    OutputAllocator allocate = [&](size_t i, const BufferRef &r) -> void * {
      results[i] = make(r.numel, r.dtype);
      return results[i].data_ptr();
    };
#ifdef FMOE_HAS_CUDA
    std::optional<c10::cuda::CUDAGuard> guard;
    if (device.is_cuda())
      guard.emplace(device);
#endif
    std::unique_ptr<Communicator> comm;
    Communicator *communicator = nullptr;
#ifdef FMOE_HAS_CUDA
    if (group && device.is_cuda() && ownNcclWanted())
      communicator = ownNccl(*group, device);
#endif
    if (group && !communicator) {
      comm = std::make_unique<ProcessGroupCommunicator>(
          c10d::resolve_process_group(*group), device);
      communicator = comm.get();
    }
    execute(*m, program, backendFor(device), in, out, tokens, communicator,
            allocate);
    // An output of zero elements (e.g. no rows arrived) is never allocated.
    for (size_t i = 0; i < results.size(); ++i)
      if (!results[i].defined())
        results[i] = make(0, out[i].dtype);
  } catch (const Error &e) {
    TORCH_CHECK(false, e.what());
  }
  return results;
}

/// Element counts of the outputs of program `kind` for `tokens` tokens
/// (for shape propagation without running anything).
std::vector<int64_t> outputSizes(int64_t handle, const std::string &kind,
                                 int64_t tokens) {
  std::shared_ptr<CompiledModule> m = moduleOf(handle);
  std::vector<int64_t> sizes;
  try {
    // A negative size: -(elements per received row) for an output with as
    // many rows as an expert-parallel exchange receives (data dependent).
    for (const fmoe::format::Buffer &b : m->program(kind).buffers) {
      if (b.role != "output")
        continue;
      if (!b.rows.dependsOnReceived()) {
        sizes.push_back(bufferNumel(b, tokens));
        continue;
      }
      TORCH_CHECK(b.rows.perToken == 0 && b.rows.constant == 0 &&
                      b.rows.divisor == 1,
                  "fmoe: output ", b.name, " mixes T and received rows");
      sizes.push_back(-b.rows.perReceived * b.cols);
    }
  } catch (const Error &e) {
    TORCH_CHECK(false, e.what());
  }
  return sizes;
}

bool cudaAvailable() { return cudaBackendAvailable(); }

} // namespace

TORCH_LIBRARY(fmoe, m) {
  m.def("load(str path) -> int", load);
  m.def("output_sizes(int handle, str program, int tokens) -> int[]",
        outputSizes);
  m.def("cuda_backend_available() -> bool", cudaAvailable);
  m.def("run(int handle, str program, int tokens, Tensor[] inputs, "
        "str? group=None) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(fmoe, CPU, m) { m.impl("run", run); }
TORCH_LIBRARY_IMPL(fmoe, CUDA, m) { m.impl("run", run); }
