//===- Exchange.cpp - the expert-parallel all-to-all of grouped rows ------===//
//
// Part of fmoe. Forward: the groups of rank p's experts (contiguous: the
// dispatch orders groups rank by rank) go to p; what arrives is laid out
// expert-major, source-rank-minor, so each local expert's rows are one range
// for the grouped GEMMs. Reverse: the inverse.
//
//===----------------------------------------------------------------------===//

#include "Exchange.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace fmoe::runtime {

namespace {

/// Copies the segments from src to dst, in one go when the backend can.
void permute(const MemoryOps &memory, void *dst, const void *src,
             const std::vector<Segment> &segments) {
  if (memory.copySegments) {
    memory.copySegments(dst, src, segments);
    return;
  }
  for (const Segment &s : segments)
    memory.copy(static_cast<char *>(dst) + s.dst,
                static_cast<const char *>(src) + s.src, s.bytes);
}

/// A scratch buffer of the backend, freed on every path.
struct Scratch {
  const MemoryOps &memory;
  void *data;
  Scratch(const MemoryOps &memory, int64_t bytes)
      : memory(memory), data(bytes ? memory.allocate(bytes) : nullptr) {}
  ~Scratch() {
    if (data)
      memory.deallocate(data);
  }
};

} // namespace

int64_t exchangeGroups(const format::Command &c,
                       const std::vector<BufferRef> &args,
                       const MemoryOps &memory, Execution &execution) {
  Communicator *comm = execution.communicator;
  Execution::ExchangeRecord &last = execution.lastExchange;
  bool undoesLast = execution.undoesLastExchange;
  if (args.size() < 4)
    throw Error("all_to_all: expects 4 operands");
  const BufferRef &in = args[0], &inOff = args[1], &outOff = args[3];
  // The output: given, or (sized by the rows that arrive) obtained from
  // execution.allocateReceived once the counts are known.
  BufferRef out = args[2];
  bool sizedByArrivals = static_cast<bool>(execution.allocateReceived);
  int64_t world = intAttr(c, "world_size");
  int64_t groups = inOff.numel - 1, local = groups / world;
  int64_t rowBytes = intAttr(c, "cols") * int64_t(dtypeSize(in.dtype));
  bool reverse = boolAttr(c, "reverse");
  if (world == 1) {
    if (sizedByArrivals) {
      out.numel = in.numel;
      out.data =
          execution.allocateReceived(in.numel * dtypeSize(in.dtype) / rowBytes);
    }
    memory.copy(out.data, in.data,
                std::min(in.numel, out.numel) * dtypeSize(in.dtype));
    memory.copy(outOff.data, inOff.data, inOff.numel * 4);
    return -1; // the host does not know the offsets
  }
  if (!comm || comm->size() != world)
    throw Error("the layer was compiled for " + std::to_string(world) +
                " ranks but runs " +
                (comm ? "over a group of " + std::to_string(comm->size())
                      : std::string("without a process group")));
  // Group (l, peer) of this rank's input: forward, peer-major (the groups
  // for rank p are p*L .. p*L+L-1); reverse, expert-major (l*W + p).
  auto groupOf = [&](int64_t l, int64_t p, bool expertMajor) {
    return expertMajor ? l * world + p : p * local + l;
  };
  std::vector<int32_t> off(groups + 1);
  std::vector<int32_t> sendCounts(world * local), recvCounts(world * local);
  if (undoesLast && last.valid && last.reverse != reverse &&
      last.outOffsets.size() == off.size() &&
      last.sendCounts.size() == sendCounts.size()) {
    // Undoing the last exchange: each peer sends back what it received
    // from us and receives what we sent; the input's offsets are the ones
    // that exchange wrote.
    off = last.outOffsets;
    sendCounts = last.recvCounts;
    recvCounts = last.sendCounts;
  } else {
    memory.toHost(off.data(), inOff.data, (groups + 1) * 4);
    // 1. Counts: for each peer, the L group sizes it receives from us.
    for (int64_t p = 0; p < world; ++p)
      for (int64_t l = 0; l < local; ++l) {
        int64_t g = groupOf(l, p, reverse);
        sendCounts[p * local + l] = off[g + 1] - off[g];
      }
    std::vector<int64_t> countBytes(world, local * 4);
    Scratch sendC(memory, world * local * 4), recvC(memory, world * local * 4);
    memory.fromHost(sendC.data, sendCounts.data(), world * local * 4);
    comm->allToAll(sendC.data, countBytes, recvC.data, countBytes);
    memory.toHost(recvCounts.data(), recvC.data, world * local * 4);
  }

  // 2. Rows: packed peer by peer, in the order of the L groups.
  std::vector<int64_t> sendBytes(world, 0), recvBytes(world, 0);
  int64_t sendRows = 0, recvRows = 0;
  for (int64_t p = 0; p < world; ++p)
    for (int64_t l = 0; l < local; ++l) {
      sendBytes[p] += sendCounts[p * local + l] * rowBytes;
      recvBytes[p] += recvCounts[p * local + l] * rowBytes;
      sendRows += sendCounts[p * local + l];
      recvRows += recvCounts[p * local + l];
    }
  if (sizedByArrivals) {
    out.numel = recvRows * rowBytes / int64_t(dtypeSize(out.dtype));
    out.data = execution.allocateReceived(recvRows);
  }
  if (recvRows * rowBytes > out.numel * int64_t(dtypeSize(out.dtype)))
    throw Error(
        "all_to_all: " + std::to_string(recvRows) +
        " rows arrive but the output holds " +
        std::to_string(out.numel * int64_t(dtypeSize(out.dtype)) / rowBytes));
  // Forward, the input's groups are already peer by peer (the dispatch
  // orders them so) and go out as they are; reverse, what arrives is
  // already in the output's order. One side is a permutation either way:
  // forward the receive side (to expert-major), reverse the send side.
  const char *src = static_cast<const char *>(in.data);
  Scratch send(memory, reverse ? sendRows * rowBytes : 0);
  Scratch recv(memory, reverse ? 0 : recvRows * rowBytes);
  const void *sendPtr = src + int64_t(off[0]) * rowBytes;
  if (reverse) {
    std::vector<Segment> pieces;
    int64_t at = 0;
    for (int64_t p = 0; p < world; ++p)
      for (int64_t l = 0; l < local; ++l) {
        int64_t g = groupOf(l, p, reverse);
        int64_t bytes = int64_t(off[g + 1] - off[g]) * rowBytes;
        if (bytes)
          pieces.push_back({at, int64_t(off[g]) * rowBytes, bytes});
        at += bytes;
      }
    permute(memory, send.data, src, pieces);
    sendPtr = send.data;
  }
  comm->allToAll(sendPtr, sendBytes, reverse ? out.data : recv.data, recvBytes);

  // 3. Unpack into the output layout and its offsets.
  std::vector<int64_t> start(world * local);
  std::vector<int32_t> outCount(groups), outStart(groups + 1);
  int64_t at = 0;
  for (int64_t p = 0; p < world; ++p)
    for (int64_t l = 0; l < local; ++l) {
      start[p * local + l] = at;
      at += recvCounts[p * local + l];
      outCount[groupOf(l, p, !reverse)] = recvCounts[p * local + l];
    }
  int32_t run = 0;
  for (int64_t g = 0; g < groups; ++g) {
    outStart[g] = run;
    run += outCount[g];
  }
  outStart[groups] = run;
  memory.fromHost(outOff.data, outStart.data(), (groups + 1) * 4);
  last = {true, reverse, sendCounts, recvCounts, outStart};
  if (reverse)
    return run; // received in place
  std::vector<Segment> pieces;
  for (int64_t p = 0; p < world; ++p)
    for (int64_t l = 0; l < local; ++l) {
      int64_t g = groupOf(l, p, !reverse);
      if (outCount[g])
        pieces.push_back({int64_t(outStart[g]) * rowBytes,
                          start[p * local + l] * rowBytes,
                          int64_t(outCount[g]) * rowBytes});
    }
  permute(memory, out.data, recv.data, pieces);
  return run;
}

} // namespace fmoe::runtime
