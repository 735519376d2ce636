//===- FusedGroupedGemmSm90.h - kernels of FusedGroupedGemm -*- C++ -*-===//
//
// Part of fmoe. Private to FusedGroupedGemm*.cu: the instantiated sm90
// kernels, one translation unit each (FusedGroupedGemmSm90*.cu, which include
// the CUTLASS templates of FusedGroupedGemmSm90.cuh) so that they compile in
// parallel. The dispatcher (FusedGroupedGemm.cu) needs only this header, not
// CUTLASS.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_LIB_RUNTIME_CUDA_FUSEDGROUPEDGEMMSM90_H
#define FMOE_LIB_RUNTIME_CUDA_FUSEDGROUPEDGEMMSM90_H

#include "FusedGroupedGemm.h"

namespace fmoe::runtime::cuda::fused {

/// The instantiated (epilogue, activation, layout) combinations.
enum class Kind {
  NoneNT,
  NoneNN,
  BiasNT,
  BiasGeluNT,  // BiasAct with Gelu
  DGeluNN,     // DAct with Gelu
  DGradGeluNN, // DGrad with Gelu
  AccNN,       // Accumulate: d += acc
};

/// Device scratch bytes for `args` with `smCount` SMs (see
/// fusedGroupedGemmWorkspace). 0 when the build has no sm_90a code.
template <Kind K> size_t workspaceBytes(const FusedGemmArgs &args, int smCount);

/// Enqueue the setup kernel and the grouped GEMM. The caller has checked
/// `args` (alignment, pointers, workspace size). Throws std::runtime_error
/// on a CUTLASS refusal or a launch error.
template <Kind K>
void launch(const FusedGemmArgs &args, CUstream_st *stream, int smCount);

/// Whether this build compiled the kernels of kind K for sm_90a at all
/// (nvcc's __CUDA_ARCH_LIST__ contained 900 in that translation unit).
template <Kind K> bool compiledForSm90();

// Each Kind is instantiated in its own FusedGroupedGemmSm90<Kind>.cu.
#define FMOE_FUSED_EXTERN(KIND)                                                \
  extern template size_t workspaceBytes<Kind::KIND>(const FusedGemmArgs &,     \
                                                    int);                      \
  extern template void launch<Kind::KIND>(const FusedGemmArgs &,               \
                                          CUstream_st *, int);                 \
  extern template bool compiledForSm90<Kind::KIND>();
FMOE_FUSED_EXTERN(NoneNT)
FMOE_FUSED_EXTERN(NoneNN)
FMOE_FUSED_EXTERN(BiasNT)
FMOE_FUSED_EXTERN(BiasGeluNT)
FMOE_FUSED_EXTERN(DGeluNN)
FMOE_FUSED_EXTERN(DGradGeluNN)
FMOE_FUSED_EXTERN(AccNN)
#undef FMOE_FUSED_EXTERN

} // namespace fmoe::runtime::cuda::fused

#endif // FMOE_LIB_RUNTIME_CUDA_FUSEDGROUPEDGEMMSM90_H
