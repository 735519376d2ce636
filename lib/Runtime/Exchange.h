//===- Exchange.h - the expert-parallel all-to-all of grouped rows --------===//
//
// Part of fmoe. One algorithm for every backend: the backend supplies how to
// copy within its memory and to and from the host; the Communicator moves
// bytes between ranks.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_LIB_RUNTIME_EXCHANGE_H
#define FMOE_LIB_RUNTIME_EXCHANGE_H

#include "fmoe/Runtime/Runtime.h"

namespace fmoe::runtime {

/// One piece of a permutation: `bytes` bytes from src + src offset to
/// dst + dst offset.
struct Segment {
  int64_t dst = 0, src = 0, bytes = 0;
};

struct MemoryOps {
  std::function<void(void *dst, const void *src, int64_t bytes)> copy;
  /// Optional: all the segments at once (else one `copy` each).
  std::function<void(void *dst, const void *src,
                     const std::vector<Segment> &segments)>
      copySegments;
  /// Copies to host memory and waits for the data.
  std::function<void(void *host, const void *src, int64_t bytes)> toHost;
  std::function<void(void *dst, const void *host, int64_t bytes)> fromHost;
  std::function<void *(int64_t bytes)> allocate;
  std::function<void(void *)> deallocate;
};

/// `fmoe_rt_all_to_all` (docs/module-format.md) on `args` = (in, offsets,
/// out, out_offsets), over `comm`. The counts travel first, so the receive
/// sizes are known on the host (one small copy of the offsets to the host).
/// Runs over execution.communicator. Returns the number of rows received
/// (out_offsets' last entry). When execution.undoesLastExchange (this
/// input's offsets are the last exchange's output) and the directions are
/// opposite, the counts come from execution.lastExchange: no copy to the
/// host, no count exchange. lastExchange then records this exchange.
int64_t exchangeGroups(const format::Command &cmd,
                       const std::vector<BufferRef> &args,
                       const MemoryOps &memory, Execution &execution);

/// `fmoe_rt_replicate` (args = own [L, ...], all [L+S, ...]): the own
/// experts, then a copy of each shadowed expert broadcast from its owner
/// (attrs `owner`, `slot`). With `gradient`, `fmoe_rt_replicate_grad`
/// (args = all, own): the own experts' gradients, the owner of each shadowed
/// expert receiving the sum of its copies' gradients.
void replicateExperts(const format::Command &cmd,
                      const std::vector<BufferRef> &args,
                      const MemoryOps &memory, Execution &execution,
                      bool gradient);

} // namespace fmoe::runtime

#endif // FMOE_LIB_RUNTIME_EXCHANGE_H
