//===- fmoe_ops.cpp - the fmoe LibTorch custom ops ------------------------===//
//
// Part of fmoe. A thin adapter over the runtime: torch.ops.fmoe.load reads and
// validates a compiled module, torch.ops.fmoe.run executes one of its
// programs on tensors (the CPU backend for CPU tensors, the CUDA backend on
// the current stream for CUDA tensors). Autograd, fake kernels and the layer
// API are in python/fmoe/_ops.py.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Runtime/Runtime.h"

#include <ATen/ATen.h>
#include <torch/library.h>
#ifdef FMOE_HAS_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

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

int64_t load(const std::string &path) {
  static std::once_flag gemmOnce;
  std::call_once(gemmOnce, installAtenGemm);
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

/// Runs program `kind` of module `handle` for `tokens` tokens. Inputs are
/// contiguous tensors in the program's input order; the outputs are new
/// flat tensors in its output order.
std::vector<at::Tensor> run(int64_t handle, const std::string &kind,
                            int64_t tokens,
                            const std::vector<at::Tensor> &inputs) {
  std::shared_ptr<CompiledModule> m = moduleOf(handle);
  TORCH_CHECK(!inputs.empty(), "fmoe.run: no inputs");
  at::Device device = inputs[0].device();
  std::vector<BufferRef> in, out;
  std::vector<at::Tensor> contiguous, results;
  for (const at::Tensor &t : inputs) {
    TORCH_CHECK(t.device() == device, "fmoe.run: inputs on ", device, " and ",
                t.device(), "; all inputs of a layer must be on one device");
    contiguous.push_back(t.contiguous());
    in.push_back(ref(contiguous.back()));
  }
  try {
    const fmoe::format::Program &program = m->program(kind);
    for (const fmoe::format::Buffer &b : program.buffers) {
      if (b.role != "output")
        continue;
      results.push_back(at::empty({bufferNumel(b, tokens)},
                                  at::TensorOptions()
                                      .dtype(scalarType(parseDType(b.dtype)))
                                      .device(device)));
      out.push_back(ref(results.back()));
    }
#ifdef FMOE_HAS_CUDA
    std::optional<c10::cuda::CUDAGuard> guard;
    if (device.is_cuda())
      guard.emplace(device);
#endif
    execute(*m, program, backendFor(device), in, out, tokens);
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
    for (const fmoe::format::Buffer &b : m->program(kind).buffers)
      if (b.role == "output")
        sizes.push_back(bufferNumel(b, tokens));
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
  m.def(
      "run(int handle, str program, int tokens, Tensor[] inputs) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(fmoe, CPU, m) { m.impl("run", run); }
TORCH_LIBRARY_IMPL(fmoe, CUDA, m) { m.impl("run", run); }
