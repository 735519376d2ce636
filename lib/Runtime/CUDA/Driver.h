//===- Driver.h - the CUDA driver API, loaded at run time -------*- C++ -*-===//
//
// Part of fmoe. The runtime must load on machines without a GPU driver (CI,
// the CPU-only path of the PyTorch extension), so libcuda.so.1 is opened with
// dlopen the first time the CUDA backend is used instead of being linked.
// Names go through cuda.h's macros (e.g. cuMemsetD8Async may become a
// versioned symbol), so the member names and the symbols looked up match the
// declarations this file is compiled against.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_LIB_RUNTIME_CUDA_DRIVER_H
#define FMOE_LIB_RUNTIME_CUDA_DRIVER_H

#include <cuda.h>

#include <string>

#define FMOE_CUDA_DRIVER_FUNCTIONS(X)                                          \
  X(cuCtxGetCurrent)                                                           \
  X(cuCtxSetCurrent)                                                           \
  X(cuDeviceGet)                                                               \
  X(cuDeviceGetAttribute)                                                      \
  X(cuDeviceGetCount)                                                          \
  X(cuDevicePrimaryCtxRelease)                                                 \
  X(cuDevicePrimaryCtxRetain)                                                  \
  X(cuFuncGetParamInfo)                                                        \
  X(cuGetErrorName)                                                            \
  X(cuGetErrorString)                                                          \
  X(cuInit)                                                                    \
  X(cuLaunchKernel)                                                            \
  X(cuMemAllocAsync)                                                           \
  X(cuMemFreeAsync)                                                            \
  X(cuMemcpyDtoDAsync)                                                         \
  X(cuMemcpyDtoHAsync)                                                         \
  X(cuMemcpyHtoDAsync)                                                         \
  X(cuMemsetD8Async)                                                           \
  X(cuModuleGetFunction)                                                       \
  X(cuModuleLoadDataEx)                                                        \
  X(cuModuleUnload)                                                            \
  X(cuStreamSynchronize)

namespace fmoe::runtime::cuda {

struct DriverApi {
#define FMOE_DECLARE(name) decltype(&::name) name = nullptr;
  FMOE_CUDA_DRIVER_FUNCTIONS(FMOE_DECLARE)
#undef FMOE_DECLARE
};

/// The driver's entry points; throws fmoe::runtime::Error when libcuda.so.1
/// cannot be loaded or lacks one of them.
const DriverApi &driver();

} // namespace fmoe::runtime::cuda

#endif // FMOE_LIB_RUNTIME_CUDA_DRIVER_H
