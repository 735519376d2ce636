//===- CopySegments.h - many device copies in one launch --------*- C++ -*-===//
//
// Part of fmoe. Private to lib/Runtime/CUDA: the exchange permutes rows
// group by group (one segment per source rank and expert); one kernel copies
// all the segments instead of one device copy each.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_LIB_RUNTIME_CUDA_COPYSEGMENTS_H
#define FMOE_LIB_RUNTIME_CUDA_COPYSEGMENTS_H

#include "../Exchange.h"

struct CUstream_st;

namespace fmoe::runtime::cuda {

/// Enqueues on `stream`: for each of the `count` segments at `segments`
/// (device memory), copies `bytes` bytes from src + s.src to dst + s.dst.
/// `maxBytes` (the largest segment) sizes the grid. Segments must not
/// overlap. Throws Error when the launch is refused.
void launchCopySegments(void *dst, const void *src, const Segment *segments,
                        int64_t count, int64_t maxBytes, CUstream_st *stream);

} // namespace fmoe::runtime::cuda

#endif // FMOE_LIB_RUNTIME_CUDA_COPYSEGMENTS_H
