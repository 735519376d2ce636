//===- FusedGroupedGemm.cu - sm90 grouped GEMM with fused epilogues -------===//
//
// Part of fmoe. The entry points of FusedGroupedGemm.h: argument checks,
// workspace sizing and the dispatch to one of the instantiated kernels
// (FusedGroupedGemmSm90<Kind>.cu; the CUTLASS design is described in
// FusedGroupedGemmSm90.cuh). This file needs only CUTLASS's arch macros.
//
// Whether the sm90 kernels can run is decided at run time, without a launch
// or a synchronisation (so that it may happen during CUDA graph capture):
// the device must be compute capability 9.0, the kernels must have been
// compiled for sm_90 (nvcc's __CUDA_ARCH_LIST__ in their translation units),
// and the image the driver picked for this device must be an sm_90a one.
// The last is read off a probe kernel whose static shared memory exists only
// under CUTLASS_ARCH_MMA_SM90A_ENABLED (sm_90a device code): an sm_90 image
// without the "a" features would load fine, but CUTLASS's kernels would
// trap in it.
//
//===----------------------------------------------------------------------===//

#include "FusedGroupedGemm.h"
#include "FusedGroupedGemmSm90.h"

#include "cutlass/arch/config.h"

#include <cuda_runtime.h>

#include <climits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace fmoe::runtime::cuda {

namespace {

using fused::Kind;

constexpr int kProbeSharedInts = 64;

__global__ void fusedGemmArchProbe(int *out) {
#if defined(CUTLASS_ARCH_MMA_SM90A_ENABLED)
  __shared__ int marker[kProbeSharedInts];
  marker[threadIdx.x % kProbeSharedInts] = static_cast<int>(threadIdx.x);
  __syncthreads();
  if (out)
    out[threadIdx.x] = marker[(threadIdx.x + 1) % kProbeSharedInts];
#else
  if (out)
    out[threadIdx.x] = 0;
#endif
}

struct DeviceInfo {
  bool known = false;
  bool sm90a = false; // cc 9.0 and the sm_90a image was loaded
  int smCount = 0;
};

/// The current device's facts, queried once per device (attribute queries
/// only: no launch, no synchronisation).
DeviceInfo currentDevice() {
  static std::mutex mutex;
  static std::vector<DeviceInfo> cache;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return DeviceInfo{};
  }
  std::lock_guard<std::mutex> lock(mutex);
  if (static_cast<size_t>(device) >= cache.size())
    cache.resize(device + 1);
  DeviceInfo &info = cache[device];
  if (info.known)
    return info;
  int major = 0, minor = 0, sms = 0;
  bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                                   device) == cudaSuccess &&
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor,
                                   device) == cudaSuccess &&
            cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount,
                                   device) == cudaSuccess;
  bool sm90a = false;
  if (ok && major == 9 && minor == 0) {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, fusedGemmArchProbe) == cudaSuccess)
      sm90a = attr.binaryVersion == 90 &&
              attr.sharedSizeBytes >= kProbeSharedInts * sizeof(int);
    else
      cudaGetLastError(); // no image for this device: clear the error
  }
  if (!ok)
    cudaGetLastError();
  info.known = ok;
  info.sm90a = sm90a;
  info.smCount = sms;
  return info;
}

bool kindOf(const FusedGemmArgs &a, Kind &kind) {
  switch (a.epilogue) {
  case FusedEpilogue::None:
    kind = a.nt ? Kind::NoneNT : Kind::NoneNN;
    return true;
  case FusedEpilogue::Bias:
    kind = Kind::BiasNT;
    return a.nt;
  case FusedEpilogue::BiasAct:
    kind = Kind::BiasGeluNT;
    return a.nt && a.act == FusedAct::Gelu;
  case FusedEpilogue::DAct:
    kind = Kind::DGeluNN;
    return !a.nt && a.act == FusedAct::Gelu;
  case FusedEpilogue::DGrad:
    kind = Kind::DGradGeluNN;
    return !a.nt && a.act == FusedAct::Gelu;
  case FusedEpilogue::Accumulate:
    kind = Kind::AccNN;
    return !a.nt;
  }
  return false;
}

bool compiledForSm90(Kind kind) {
  switch (kind) {
  case Kind::NoneNT:
    return fused::compiledForSm90<Kind::NoneNT>();
  case Kind::NoneNN:
    return fused::compiledForSm90<Kind::NoneNN>();
  case Kind::BiasNT:
    return fused::compiledForSm90<Kind::BiasNT>();
  case Kind::BiasGeluNT:
    return fused::compiledForSm90<Kind::BiasGeluNT>();
  case Kind::DGeluNN:
    return fused::compiledForSm90<Kind::DGeluNN>();
  case Kind::DGradGeluNN:
    return fused::compiledForSm90<Kind::DGradGeluNN>();
  case Kind::AccNN:
    return fused::compiledForSm90<Kind::AccNN>();
  }
  return false;
}

bool aligned16(const void *p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

/// A leading dimension of a rows x cols bf16 matrix: at least cols, and a
/// multiple of 8 elements (16 bytes, for TMA and the vector stores).
bool goodLd(int64_t ld, int64_t cols) {
  return ld >= cols && ld % 8 == 0 && ld < (int64_t(1) << 36);
}

/// Everything but the device.
const char *argumentRefusal(const FusedGemmArgs &a, Kind &kind) {
  if (!kindOf(a, kind))
    return "no kernel for this epilogue, activation and layout (instantiated:"
           " None nt/nn, Bias nt, BiasAct+Gelu nt, DAct+Gelu nn, DGrad+Gelu"
           " nn, Accumulate nn)";
  if (a.experts <= 0 || a.experts > INT_MAX || a.groupsPerExpert <= 0 ||
      a.experts * a.groupsPerExpert > INT_MAX)
    return "experts and groupsPerExpert must be positive (and fit int32)";
  if (a.n <= 0 || a.k <= 0 || a.n % 8 || a.k % 8 || a.n > INT_MAX ||
      a.k > INT_MAX)
    return "n and k must be positive multiples of 8";
  if (!a.a || !a.w || !a.d || !a.offsets)
    return "a, w, d and offsets are required";
  if (!aligned16(a.a) || !aligned16(a.w) || !aligned16(a.d))
    return "a, w and d must be 16-byte aligned";
  if (reinterpret_cast<uintptr_t>(a.offsets) & 3)
    return "offsets must be 4-byte aligned";
  if (!goodLd(a.lda, a.k) || !goodLd(a.ldd, a.n))
    return "lda (ldd) must be >= k (n) and a multiple of 8";
  bool needBias =
      a.epilogue == FusedEpilogue::Bias || a.epilogue == FusedEpilogue::BiasAct;
  bool needAux = a.epilogue == FusedEpilogue::BiasAct ||
                 a.epilogue == FusedEpilogue::DAct ||
                 a.epilogue == FusedEpilogue::DGrad;
  if (needBias && (!a.bias || !aligned16(a.bias)))
    return "this epilogue needs a 16-byte aligned bias";
  if (needAux && (!a.aux || !aligned16(a.aux) || !goodLd(a.ldaux, a.n)))
    return "this epilogue needs a 16-byte aligned aux with ldaux >= n, a "
           "multiple of 8";
  // DGrad may write d over h (d == aux, ldd == ldaux): each element of h
  // is loaded (by TMA, as the epilogue's source) before the same CTA stores
  // d over it, and the tiles and subtiles of the groups are disjoint.
  // (A d that overlaps h only in part is the caller's error.)
  if (a.epilogue == FusedEpilogue::DGrad && a.d == a.aux && a.ldd != a.ldaux)
    return "DGrad writes d over aux (h) only with ldd == ldaux";
  // DAct likewise, when act(h) goes to actOut (not over aux as well).
  if (a.epilogue == FusedEpilogue::DAct && a.d == a.aux &&
      (!a.actOut || a.ldd != a.ldaux))
    return "DAct writes d over aux (h) only with actOut and ldd == ldaux";
  if (a.epilogue == FusedEpilogue::DAct && a.actOut &&
      (!aligned16(a.actOut) || !goodLd(a.ldact, a.n)))
    return "actOut must be 16-byte aligned with ldact >= n, a multiple of 8";
  return nullptr;
}

const char *refusal(const FusedGemmArgs &a, Kind &kind, DeviceInfo &dev) {
  if (const char *why = argumentRefusal(a, kind))
    return why;
  if (!compiledForSm90(kind))
    return "this build has no sm_90a kernels (compile with -arch=sm_90a)";
  dev = currentDevice();
  if (!dev.sm90a)
    return "the current device is not sm_90 or did not load an sm_90a image";
  return nullptr;
}

size_t workspaceFor(Kind kind, const FusedGemmArgs &a, int sms) {
  switch (kind) {
  case Kind::NoneNT:
    return fused::workspaceBytes<Kind::NoneNT>(a, sms);
  case Kind::NoneNN:
    return fused::workspaceBytes<Kind::NoneNN>(a, sms);
  case Kind::BiasNT:
    return fused::workspaceBytes<Kind::BiasNT>(a, sms);
  case Kind::BiasGeluNT:
    return fused::workspaceBytes<Kind::BiasGeluNT>(a, sms);
  case Kind::DGeluNN:
    return fused::workspaceBytes<Kind::DGeluNN>(a, sms);
  case Kind::DGradGeluNN:
    return fused::workspaceBytes<Kind::DGradGeluNN>(a, sms);
  case Kind::AccNN:
    return fused::workspaceBytes<Kind::AccNN>(a, sms);
  }
  return 0;
}

} // namespace

const char *fusedGroupedGemmRefusal(const FusedGemmArgs &args) {
  Kind kind;
  DeviceInfo dev;
  return refusal(args, kind, dev);
}

bool fusedGroupedGemmSupported(const FusedGemmArgs &args) {
  return fusedGroupedGemmRefusal(args) == nullptr;
}

size_t fusedGroupedGemmWorkspace(const FusedGemmArgs &args) {
  Kind kind;
  DeviceInfo dev;
  if (refusal(args, kind, dev))
    return 0;
  return workspaceFor(kind, args, dev.smCount);
}

void launchFusedGroupedGemm(const FusedGemmArgs &args, CUstream_st *stream) {
  Kind kind;
  DeviceInfo dev;
  if (const char *why = refusal(args, kind, dev))
    throw std::runtime_error(std::string("fused grouped GEMM refused: ") + why);
  size_t need = workspaceFor(kind, args, dev.smCount);
  if (!args.workspace || args.workspaceBytes < need ||
      (reinterpret_cast<uintptr_t>(args.workspace) & 255))
    throw std::runtime_error(
        "fused grouped GEMM refused: the workspace must be 256-byte aligned "
        "and hold " +
        std::to_string(need) + " bytes (has " +
        std::to_string(args.workspaceBytes) + ")");
  switch (kind) {
  case Kind::NoneNT:
    return fused::launch<Kind::NoneNT>(args, stream, dev.smCount);
  case Kind::NoneNN:
    return fused::launch<Kind::NoneNN>(args, stream, dev.smCount);
  case Kind::BiasNT:
    return fused::launch<Kind::BiasNT>(args, stream, dev.smCount);
  case Kind::BiasGeluNT:
    return fused::launch<Kind::BiasGeluNT>(args, stream, dev.smCount);
  case Kind::DGeluNN:
    return fused::launch<Kind::DGeluNN>(args, stream, dev.smCount);
  case Kind::DGradGeluNN:
    return fused::launch<Kind::DGradGeluNN>(args, stream, dev.smCount);
  case Kind::AccNN:
    return fused::launch<Kind::AccNN>(args, stream, dev.smCount);
  }
}

} // namespace fmoe::runtime::cuda
