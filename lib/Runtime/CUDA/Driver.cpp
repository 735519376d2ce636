//===- Driver.cpp - the CUDA driver API, loaded at run time ---------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "Driver.h"
#include "fmoe/Runtime/Runtime.h"

#include <dlfcn.h>
#include <mutex>

namespace fmoe::runtime::cuda {

#define FMOE_STRINGIFY(x) #x
#define FMOE_SYMBOL(x) FMOE_STRINGIFY(x)

const DriverApi &driver() {
  static DriverApi api;
  static std::string error;
  static std::once_flag once;
  std::call_once(once, [] {
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char *why = dlerror();
      error = std::string("no CUDA driver on this machine (libcuda.so.1: ") +
              (why ? why : "not found") + ")";
      return;
    }
#define FMOE_LOAD(name)                                                        \
  api.name =                                                                   \
      reinterpret_cast<decltype(api.name)>(dlsym(lib, FMOE_SYMBOL(name)));     \
  if (!api.name && error.empty())                                              \
    error = "the CUDA driver lacks " FMOE_SYMBOL(name) " (driver too old?)";
    FMOE_CUDA_DRIVER_FUNCTIONS(FMOE_LOAD)
#undef FMOE_LOAD
  });
  if (!error.empty())
    throw Error(error);
  return api;
}

} // namespace fmoe::runtime::cuda
