//===- NoCuda.cpp - the CUDA backend's stand-in in CPU-only builds --------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Runtime/Nccl.h"

namespace fmoe::runtime {

bool cudaBackendAvailable() { return false; }

std::unique_ptr<Backend> createCudaBackend(int, void *) {
  throw Error("this fmoe runtime was built without CUDA support "
              "(FMOE_ENABLE_CUDA=OFF): only the CPU backend is available");
}

NcclUniqueId ncclUniqueId() {
  throw Error("this fmoe runtime was built without CUDA support: no NCCL "
              "communicator");
}

std::unique_ptr<Communicator> createNcclCommunicator(const NcclUniqueId &,
                                                     int64_t, int64_t, int,
                                                     std::function<void *()>,
                                                     double) {
  throw Error("this fmoe runtime was built without CUDA support: no NCCL "
              "communicator");
}

} // namespace fmoe::runtime
