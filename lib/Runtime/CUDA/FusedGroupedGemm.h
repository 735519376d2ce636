//===- FusedGroupedGemm.h - sm90 grouped GEMM, fused epilogues -*- C++ -*-===//
//
// Part of fmoe. Private to lib/Runtime/CUDA (and bench/fused_gemm): host
// launchers for an sm90 (Hopper) grouped GEMM built on CUTLASS, whose
// epilogue also applies the per-expert bias and the activation, or the
// activation's derivative (docs/fused-gemm.md). Plain C++: no CUDA or
// CUTLASS header is needed to include this one.
//
// The GEMM, for each local expert l (rows [offsets[l*S], offsets[(l+1)*S]),
// S = groupsPerExpert):
//
//   acc[r, j] = sum_k A[r, k] * W[l](k, j)      (fp32 accumulation)
//
// with A[r, k] = a[r * lda + k] and, when `nt`, W[l](k, j) = w[l][j][k]
// (w[l] is N x K row-major), otherwise W[l](k, j) = w[l][k][j] (w[l] is
// K x N row-major); w[l] starts at w + l*N*K. Every operand is bf16.
//
// The epilogues (results are rounded to bf16):
//   None:    d = acc
//   Bias:    d = acc + bias[l]
//   BiasAct: h = acc + bias[l];  aux = h;  d = act(h)
//   DAct:    h = aux (read);     d = acc * act'(h);  actOut = act(h)
//            (actOut may be null: act(h) then overwrites aux in place;
//             or d may be aux itself, with ldd == ldaux and an actOut.
//             Both are safe because each element of h is read before the
//             same thread block writes over it.)
//   DGrad:   h = aux (read);     d = acc * act'(h)
//            (no second output; d may be aux itself, with ldd == ldaux: each
//             element of h is read before the same thread block writes d
//             over it).
//   Accumulate: d = acc + d  (d read as the source, then written over, as
//            DGrad's in-place form; nn only; aux is not used)
//
// The per-expert row counts live only on the device (`offsets`): the launch
// never reads them on the host and never synchronises, so it can be captured
// in a CUDA graph. Experts without rows are allowed.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_LIB_RUNTIME_CUDA_FUSEDGROUPEDGEMM_H
#define FMOE_LIB_RUNTIME_CUDA_FUSEDGROUPEDGEMM_H

#include <cstddef>
#include <cstdint>

// Both CUstream and cudaStream_t are `CUstream_st *`.
struct CUstream_st;

namespace fmoe::runtime::cuda {

enum class FusedEpilogue { None, Bias, BiasAct, DAct, DGrad, Accumulate };

/// The activation of BiasAct, DAct and DGrad.
enum class FusedAct {
  /// The erf form, like torch.nn.functional.gelu(x) (approximate="none").
  Gelu,
};

struct FusedGemmArgs {
  /// bf16, row-major, rows x K: row r starts at a + r*lda.
  const void *a = nullptr;
  int64_t lda = 0;
  /// bf16, `experts` matrices: nt: w[l] is N x K row-major; otherwise w[l]
  /// is K x N row-major. Packed: w[l] starts at w + l*N*K.
  const void *w = nullptr;
  bool nt = true;
  /// bf16 [experts][N]: Bias and BiasAct (required there), else ignored.
  const void *bias = nullptr;
  /// bf16 output, rows x N.
  void *d = nullptr;
  int64_t ldd = 0;
  /// bf16, rows x N. BiasAct: receives the pre-activation h = acc + bias.
  /// DAct: holds h (read); receives act(h) when actOut is null. DGrad: holds
  /// h (read; d may be this buffer, then it receives d over h).
  void *aux = nullptr;
  int64_t ldaux = 0;
  /// bf16, rows x N, DAct only: receives act(h). Null: act(h) overwrites
  /// aux (in place).
  void *actOut = nullptr;
  int64_t ldact = 0;
  /// Device, experts*groupsPerExpert + 1 entries, non-decreasing: the rows
  /// of expert l are [offsets[l*S], offsets[(l+1)*S]) (absolute row indices
  /// into a, d, aux, actOut; rows outside [offsets[0], offsets[L*S]) are
  /// neither read nor written).
  const int32_t *offsets = nullptr;
  int64_t experts = 0, groupsPerExpert = 1, n = 0, k = 0;
  FusedEpilogue epilogue = FusedEpilogue::None;
  FusedAct act = FusedAct::Gelu;
  /// Caller-provided device scratch of at least
  /// fusedGroupedGemmWorkspace(args) bytes, 256-byte aligned. It must not
  /// be reused by another launch until this one has finished (stream order).
  void *workspace = nullptr;
  size_t workspaceBytes = 0;
};

/// Bytes of `workspace` a launch with these arguments needs (depends on
/// `experts`, the epilogue, the layout and the current device's SM count;
/// not on the pointers). 0 when the arguments are not supported.
size_t fusedGroupedGemmWorkspace(const FusedGemmArgs &args);

/// Whether launchFusedGroupedGemm accepts `args` on the current device: the
/// sm_90a kernels were built and the device is sm_90; a kernel is
/// instantiated for the (epilogue, act, nt) combination (None nt/nn, Bias nt,
/// BiasAct+Gelu nt, DAct+Gelu nn, DGrad+Gelu nn, Accumulate nn); every pointer
/// is 16-byte aligned and every leading dimension a multiple of 8 elements; n
/// and k are positive multiples of 8. Does not look at the workspace.
bool fusedGroupedGemmSupported(const FusedGemmArgs &args);

/// Why `args` is refused, or null when fusedGroupedGemmSupported(args).
const char *fusedGroupedGemmRefusal(const FusedGemmArgs &args);

/// Enqueue the kernels on `stream`: a small kernel that turns `offsets` into
/// CUTLASS's per-group problem shapes and pointers (in the workspace), then
/// the grouped GEMM. Asynchronous; no host synchronisation, no host read of
/// device data. Throws std::runtime_error when refused (including a
/// workspace smaller than fusedGroupedGemmWorkspace(args)) or when the launch
/// fails.
void launchFusedGroupedGemm(const FusedGemmArgs &args, CUstream_st *stream);

} // namespace fmoe::runtime::cuda

#endif // FMOE_LIB_RUNTIME_CUDA_FUSEDGROUPEDGEMM_H
