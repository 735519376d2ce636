//===- NoCuda.cpp - the CUDA backend's stand-in in CPU-only builds --------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Runtime/Runtime.h"

namespace fmoe::runtime {

bool cudaBackendAvailable() { return false; }

std::unique_ptr<Backend> createCudaBackend(int, void *) {
  throw Error("this fmoe runtime was built without CUDA support "
              "(FMOE_ENABLE_CUDA=OFF): only the CPU backend is available");
}

} // namespace fmoe::runtime
