//===- Nccl.h - the runtime's own NCCL communicator -------------*- C++ -*-===//
//
// Part of fmoe. A Communicator over an NCCL communicator that the runtime
// creates itself from an ncclUniqueId (which the caller exchanges over its
// own channel, e.g. a torch.distributed process group): no dependency on
// how a framework wraps NCCL, any number of groups per process.
//
// libnccl.so.2 is opened at run time (the PyTorch extension's process has
// it loaded already, through torch), so the runtime builds and loads where
// NCCL is absent; using the communicator there throws.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_RUNTIME_NCCL_H
#define FMOE_RUNTIME_NCCL_H

#include "fmoe/Runtime/Runtime.h"

#include <array>
#include <functional>
#include <memory>

namespace fmoe::runtime {

/// NCCL's opaque 128-byte ncclUniqueId.
using NcclUniqueId = std::array<char, 128>;

/// A fresh id (one rank of the group makes it and sends it to the others).
/// Throws Error where NCCL cannot be loaded.
NcclUniqueId ncclUniqueId();

/// Collective: every rank of the group calls it with the same `id`, its
/// rank and the group size, with `device` the CUDA device its buffers live
/// on. Operations are enqueued on the stream `stream()` returns at each
/// call (the caller's current stream) and the call returns when they have
/// finished on the device; one that has not finished after
/// `timeoutSeconds` (a peer died or hangs) aborts the communicator and
/// throws Error, on every rank that waits.
std::unique_ptr<Communicator>
createNcclCommunicator(const NcclUniqueId &id, int64_t rank, int64_t size,
                       int device, std::function<void *()> stream,
                       double timeoutSeconds);

} // namespace fmoe::runtime

#endif // FMOE_RUNTIME_NCCL_H
