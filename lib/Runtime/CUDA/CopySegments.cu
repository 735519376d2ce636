//===- CopySegments.cu - many device copies in one launch -----------------===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#include "CopySegments.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

namespace fmoe::runtime::cuda {

namespace {

constexpr int kThreads = 256;

/// Block (x, y) copies a share of segment y: 16-byte words when the
/// segment's ends allow it, bytes otherwise.
__global__ void __launch_bounds__(kThreads)
    copySegmentsKernel(char *dst, const char *src, const Segment *segments) {
  Segment s = segments[blockIdx.y];
  char *to = dst + s.dst;
  const char *from = src + s.src;
  int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  bool wide = ((reinterpret_cast<uintptr_t>(to) |
                reinterpret_cast<uintptr_t>(from) | uint64_t(s.bytes)) &
               15) == 0;
  if (wide) {
    auto *to4 = reinterpret_cast<int4 *>(to);
    auto *from4 = reinterpret_cast<const int4 *>(from);
    for (int64_t i = first; i < s.bytes / 16; i += stride)
      to4[i] = from4[i];
    return;
  }
  for (int64_t i = first; i < s.bytes; i += stride)
    to[i] = from[i];
}

} // namespace

void launchCopySegments(void *dst, const void *src, const Segment *segments,
                        int64_t count, int64_t maxBytes, CUstream_st *stream) {
  if (count <= 0 || maxBytes <= 0)
    return;
  if (count > 65535)
    throw Error("copy of " + std::to_string(count) +
                " segments exceeds the grid limit");
  int64_t words = (maxBytes + 15) / 16;
  unsigned blocks =
      unsigned(std::min<int64_t>((words + kThreads - 1) / kThreads, 1024));
  copySegmentsKernel<<<dim3(blocks, unsigned(count)), kThreads, 0, stream>>>(
      static_cast<char *>(dst), static_cast<const char *>(src), segments);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw Error(std::string("launch of the segment copy failed: ") +
                cudaGetErrorString(err));
}

} // namespace fmoe::runtime::cuda
