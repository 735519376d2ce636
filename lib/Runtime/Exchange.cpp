//===- Exchange.cpp - the expert-parallel all-to-all of grouped rows ------===//
//
// Part of fmoe. Forward: the groups of rank p's experts (contiguous: the
// dispatch orders groups rank by rank) go to p; what arrives is laid out
// expert-major, source-rank-minor, so each local expert's rows are one range
// for the grouped GEMMs. Reverse: the inverse.
//
//===----------------------------------------------------------------------===//

#include "Exchange.h"

#include "fmoe/Support/Placement.h"

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

namespace {

/// Where the groups of an exchange are. The placement-ordered side (the
/// dispatch's) holds E groups: rank by rank, each rank's exchanged experts
/// by slot, then the S shadowed experts (fmoe/Support/Placement.h). The
/// expert side holds (L + S) x W groups, expert-major, source-rank-minor;
/// a shadowed expert's only rows are this rank's.
struct Layout {
  int64_t world = 1, me = 0, local = 0, shadows = 0;
  /// Per placement-ordered group: the rank it goes to (-1: shadowed, stays
  /// here) and the expert slot there (L + j for shadowed expert j).
  std::vector<int64_t> peer, slot;

  Layout(const format::Command &c, int64_t world, int64_t me)
      : world(world), me(me) {
    std::vector<int64_t> rankOf = intListAttr(c, "placement");
    std::vector<int64_t> shadow = intListAttr(c, "shadow");
    int64_t experts = static_cast<int64_t>(rankOf.size());
    if (experts == 0 || experts % world != 0)
      throw Error("all_to_all: a placement of " + std::to_string(experts) +
                  " experts over " + std::to_string(world) + " ranks");
    for (int64_t r : rankOf)
      if (r < 0 || r >= world)
        throw Error("all_to_all: placement names rank " + std::to_string(r));
    local = experts / world;
    std::vector<int64_t> held(world, 0);
    for (int64_t r : rankOf)
      if (++held[r] > local)
        throw Error("all_to_all: placement puts more than " +
                    std::to_string(local) + " experts on rank " +
                    std::to_string(r));
    shadows = static_cast<int64_t>(shadow.size());
    std::vector<int64_t> slots = localSlots(rankOf, world);
    std::vector<int64_t> order = expertGroupOrder(rankOf, world, shadow);
    if (static_cast<int64_t>(order.size()) != experts)
      throw Error("all_to_all: shadowed experts out of range or repeated");
    for (int64_t g = 0; g < experts; ++g) {
      int64_t e = order[g];
      bool shadowed = g >= experts - shadows;
      peer.push_back(shadowed ? -1 : rankOf[e]);
      slot.push_back(shadowed ? local + (g - (experts - shadows)) : slots[e]);
    }
  }
  int64_t placedGroups() const { return static_cast<int64_t>(peer.size()); }
  int64_t expertGroups() const { return (local + shadows) * world; }
  int64_t expertGroup(int64_t slot, int64_t src) const {
    return slot * world + src;
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
  Layout layout(c, world, comm->rank());
  int64_t local = layout.local, me = layout.me;
  int64_t inGroups = reverse ? layout.expertGroups() : layout.placedGroups();
  int64_t outGroups = reverse ? layout.placedGroups() : layout.expertGroups();
  if (inOff.numel != inGroups + 1 || outOff.numel != outGroups + 1)
    throw Error("all_to_all: offsets of " + std::to_string(inOff.numel) +
                " and " + std::to_string(outOff.numel) + " entries, expected " +
                std::to_string(inGroups + 1) + " and " +
                std::to_string(outGroups + 1));

  // The input's offsets on the host: those the last exchange wrote when
  // this one undoes it (no copy), else copied.
  std::vector<int32_t> off(inGroups + 1);
  bool undoing = undoesLast && last.valid && last.reverse != reverse &&
                 last.outOffsets.size() == off.size() &&
                 last.sendCounts.size() == size_t(world * local);
  if (undoing)
    off = last.outOffsets;
  else
    memory.toHost(off.data(), inOff.data, (inGroups + 1) * 4);
  auto size = [&](int64_t g) { return int64_t(off[g + 1] - off[g]); };

  // 1. Counts: for each peer, the L group sizes it receives from us
  // (indexed [peer * L + slot]); shadowed experts' rows stay here.
  std::vector<int32_t> sendCounts(world * local, 0), recvCounts(world * local);
  std::vector<int64_t> shadowGroup(layout.shadows); // input group of copy j
  if (reverse) {
    for (int64_t p = 0; p < world; ++p)
      for (int64_t l = 0; l < local; ++l)
        sendCounts[p * local + l] = size(layout.expertGroup(l, p));
    for (int64_t j = 0; j < layout.shadows; ++j)
      shadowGroup[j] = layout.expertGroup(local + j, me);
  } else {
    for (int64_t g = 0; g < inGroups; ++g)
      if (layout.peer[g] >= 0)
        sendCounts[layout.peer[g] * local + layout.slot[g]] = size(g);
      else
        shadowGroup[layout.slot[g] - local] = g;
  }
  if (undoing) {
    // Each peer sends back what it received from us.
    recvCounts = last.sendCounts;
  } else {
    std::vector<int64_t> countBytes(world, local * 4);
    Scratch sendC(memory, world * local * 4), recvC(memory, world * local * 4);
    memory.fromHost(sendC.data, sendCounts.data(), world * local * 4);
    comm->allToAll(sendC.data, countBytes, recvC.data, countBytes);
    memory.toHost(recvCounts.data(), recvC.data, world * local * 4);
  }

  // 2. The output's groups and offsets.
  std::vector<int32_t> outCount(outGroups, 0), outStart(outGroups + 1);
  if (reverse) {
    for (int64_t g = 0; g < outGroups; ++g)
      outCount[g] = layout.peer[g] >= 0
                        ? recvCounts[layout.peer[g] * local + layout.slot[g]]
                        : size(shadowGroup[layout.slot[g] - local]);
  } else {
    for (int64_t p = 0; p < world; ++p)
      for (int64_t l = 0; l < local; ++l)
        outCount[layout.expertGroup(l, p)] = recvCounts[p * local + l];
    for (int64_t j = 0; j < layout.shadows; ++j)
      outCount[layout.expertGroup(local + j, me)] = size(shadowGroup[j]);
  }
  int32_t run = 0;
  for (int64_t g = 0; g < outGroups; ++g) {
    outStart[g] = run;
    run += outCount[g];
  }
  outStart[outGroups] = run;
  if (sizedByArrivals) {
    out.numel = int64_t(run) * rowBytes / int64_t(dtypeSize(out.dtype));
    out.data = execution.allocateReceived(run);
  }
  if (int64_t(run) * rowBytes > out.numel * int64_t(dtypeSize(out.dtype)))
    throw Error(
        "all_to_all: " + std::to_string(run) +
        " rows arrive but the output holds " +
        std::to_string(out.numel * int64_t(dtypeSize(out.dtype)) / rowBytes));

  // 3. Rows, packed peer by peer in slot order. Forward, the input's
  // exchanged groups are already so (the dispatch orders them) and go out
  // as they are, and the receive side is permuted to expert-major; reverse,
  // the send side is permuted and the rows arrive in place.
  std::vector<int64_t> sendBytes(world, 0), recvBytes(world, 0);
  int64_t sendRows = 0, recvRows = 0;
  for (int64_t p = 0; p < world; ++p)
    for (int64_t l = 0; l < local; ++l) {
      sendBytes[p] += sendCounts[p * local + l] * rowBytes;
      recvBytes[p] += recvCounts[p * local + l] * rowBytes;
      sendRows += sendCounts[p * local + l];
      recvRows += recvCounts[p * local + l];
    }
  const char *src = static_cast<const char *>(in.data);
  char *dst = static_cast<char *>(out.data);
  Scratch send(memory, reverse ? sendRows * rowBytes : 0);
  Scratch recv(memory, reverse ? 0 : recvRows * rowBytes);
  const void *sendPtr = src + int64_t(off[0]) * rowBytes;
  if (reverse) {
    std::vector<Segment> pieces;
    int64_t at = 0;
    for (int64_t p = 0; p < world; ++p)
      for (int64_t l = 0; l < local; ++l) {
        int64_t g = layout.expertGroup(l, p);
        int64_t bytes = size(g) * rowBytes;
        if (bytes)
          pieces.push_back({at, int64_t(off[g]) * rowBytes, bytes});
        at += bytes;
      }
    permute(memory, send.data, src, pieces);
    sendPtr = send.data;
  }
  comm->allToAll(sendPtr, sendBytes, reverse ? dst : recv.data, recvBytes);
  if (!reverse) {
    std::vector<Segment> pieces;
    int64_t at = 0;
    for (int64_t p = 0; p < world; ++p)
      for (int64_t l = 0; l < local; ++l) {
        int64_t g = layout.expertGroup(l, p);
        if (outCount[g])
          pieces.push_back({int64_t(outStart[g]) * rowBytes, at * rowBytes,
                            int64_t(outCount[g]) * rowBytes});
        at += recvCounts[p * local + l];
      }
    permute(memory, dst, recv.data, pieces);
  }
  // The shadowed experts' rows, from this rank to this rank.
  std::vector<Segment> stay;
  for (int64_t j = 0; j < layout.shadows; ++j) {
    int64_t g = shadowGroup[j];
    int64_t o = reverse ? layout.placedGroups() - layout.shadows + j
                        : layout.expertGroup(local + j, me);
    if (size(g))
      stay.push_back({int64_t(outStart[o]) * rowBytes,
                      int64_t(off[g]) * rowBytes, size(g) * rowBytes});
  }
  permute(memory, dst, src, stay);
  memory.fromHost(outOff.data, outStart.data(), (outGroups + 1) * 4);
  last = {true, reverse, sendCounts, recvCounts, outStart};
  return run;
}

void replicateExperts(const format::Command &c,
                      const std::vector<BufferRef> &args,
                      const MemoryOps &memory, Execution &execution,
                      bool gradient) {
  if (args.size() != 2)
    throw Error(c.target + ": expects 2 operands");
  std::vector<int64_t> owner = intListAttr(c, "owner"),
                       slot = intListAttr(c, "slot");
  int64_t shadows = static_cast<int64_t>(owner.size());
  Communicator *comm = execution.communicator;
  int64_t world = intAttr(c, "world_size");
  if (!comm || comm->size() != world)
    throw Error(c.target + ": the layer was compiled for " +
                std::to_string(world) + " ranks but runs " +
                (comm ? "over a group of " + std::to_string(comm->size())
                      : std::string("without a process group")));
  // own: [L, ...], all: [L + S, ...].
  const BufferRef &own = gradient ? args[1] : args[0];
  const BufferRef &all = gradient ? args[0] : args[1];
  int64_t local = own.rows, per = local ? own.numel / local : 0;
  size_t elt = dtypeSize(own.dtype);
  if (slot.size() != owner.size() || all.dtype != own.dtype ||
      all.numel != (local + shadows) * per)
    throw Error(c.target + ": " + std::to_string(all.numel) + " and " +
                std::to_string(own.numel) + " elements for " +
                std::to_string(shadows) + " shadowed experts");
  for (int64_t j = 0; j < shadows; ++j)
    if (owner[j] < 0 || owner[j] >= world || slot[j] < 0 || slot[j] >= local)
      throw Error(c.target + ": shadowed expert " + std::to_string(j) +
                  " on rank " + std::to_string(owner[j]) + ", slot " +
                  std::to_string(slot[j]));
  char *ownData = static_cast<char *>(own.data);
  char *allData = static_cast<char *>(all.data);
  int64_t expertBytes = per * int64_t(elt);
  if (!gradient) {
    // The own experts, then each shadowed one from its owner.
    memory.copy(allData, ownData, local * expertBytes);
    for (int64_t j = 0; j < shadows; ++j) {
      char *copy = allData + (local + j) * expertBytes;
      if (comm->rank() == owner[j])
        memory.copy(copy, ownData + slot[j] * expertBytes, expertBytes);
      comm->broadcast(copy, expertBytes, owner[j]);
    }
    return;
  }
  // The own experts' gradients; the owner of a shadowed expert gets the sum
  // of its copies' gradients. No rows reach the owner's own slot of a
  // shadowed expert (the dispatch routes them to the copy), so its gradient
  // is that sum alone. The copies' gradients are consumed.
  memory.copy(ownData, allData, local * expertBytes);
  for (int64_t j = 0; j < shadows; ++j) {
    char *copy = allData + (local + j) * expertBytes;
    comm->reduceSum(copy, per, own.dtype, owner[j]);
    if (comm->rank() == owner[j])
      memory.copy(ownData + slot[j] * expertBytes, copy, expertBytes);
  }
}

} // namespace fmoe::runtime
