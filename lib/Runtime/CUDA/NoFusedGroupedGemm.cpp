//===- NoFusedGroupedGemm.cpp - a build without the fused GEMMs -----------===//
//
// Part of fmoe. FusedGroupedGemm.h for a build without the CUTLASS headers
// (scripts/fetch-cutlass.sh was not run): nothing is supported, and the
// CUDA backend runs the plain grouped GEMM and a separate epilogue instead.
//
//===----------------------------------------------------------------------===//

#include "FusedGroupedGemm.h"

#include <stdexcept>

namespace fmoe::runtime::cuda {

size_t fusedGroupedGemmWorkspace(const FusedGemmArgs &) { return 0; }

bool fusedGroupedGemmSupported(const FusedGemmArgs &) { return false; }

const char *fusedGroupedGemmRefusal(const FusedGemmArgs &) {
  return "fmoe was built without the CUTLASS headers "
         "(scripts/fetch-cutlass.sh)";
}

void launchFusedGroupedGemm(const FusedGemmArgs &args, CUstream_st *) {
  throw std::runtime_error(fusedGroupedGemmRefusal(args));
}

} // namespace fmoe::runtime::cuda
