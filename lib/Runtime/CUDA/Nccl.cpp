//===- Nccl.cpp - the runtime's own NCCL communicator ---------------------===//
//
// Part of fmoe. See include/fmoe/Runtime/Nccl.h.
//
// NCCL is opened with dlopen, so its declarations are restated here: the
// few types and functions of NCCL 2.x's C API this file calls (their
// values and signatures are those of nccl.h; ncclBfloat16 needs NCCL 2.10
// or newer, which every CUDA 12/13 build of torch ships).
//
//===----------------------------------------------------------------------===//

#include "fmoe/Runtime/Nccl.h"

#include <cuda_runtime.h>

#include <chrono>
#include <dlfcn.h>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace fmoe::runtime {

namespace {

struct NcclComm;
using NcclCommPtr = NcclComm *;
struct NcclIdStruct {
  char internal[128];
};
using NcclResult = int; // ncclResult_t: 0 = ncclSuccess, 7 = ncclInProgress
constexpr NcclResult kSuccess = 0, kInProgress = 7;
using NcclDataType = int; // ncclDataType_t
constexpr NcclDataType kUint8 = 1, kInt32 = 2, kFloat16 = 6, kFloat32 = 7,
                       kBfloat16 = 9;
constexpr int kSum = 0; // ncclRedOp_t ncclSum

struct NcclApi {
  NcclResult (*ncclGetUniqueId)(NcclIdStruct *);
  NcclResult (*ncclCommInitRank)(NcclCommPtr *, int, NcclIdStruct, int);
  NcclResult (*ncclCommAbort)(NcclCommPtr);
  NcclResult (*ncclCommGetAsyncError)(NcclCommPtr, NcclResult *);
  const char *(*ncclGetErrorString)(NcclResult);
  NcclResult (*ncclGroupStart)();
  NcclResult (*ncclGroupEnd)();
  NcclResult (*ncclSend)(const void *, size_t, NcclDataType, int, NcclCommPtr,
                         cudaStream_t);
  NcclResult (*ncclRecv)(void *, size_t, NcclDataType, int, NcclCommPtr,
                         cudaStream_t);
  NcclResult (*ncclBroadcast)(const void *, void *, size_t, NcclDataType, int,
                              NcclCommPtr, cudaStream_t);
  NcclResult (*ncclReduce)(const void *, void *, size_t, NcclDataType, int, int,
                           NcclCommPtr, cudaStream_t);
};

const NcclApi &nccl() {
  static NcclApi api;
  static std::string error;
  static std::once_flag once;
  std::call_once(once, [] {
    void *lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char *why = dlerror();
      error = std::string("fmoe's NCCL communicator: cannot load NCCL "
                          "(libnccl.so.2: ") +
              (why ? why : "not found") + ")";
      return;
    }
#define FMOE_NCCL_LOAD(name)                                                   \
  api.name = reinterpret_cast<decltype(api.name)>(dlsym(lib, #name));          \
  if (!api.name && error.empty())                                              \
    error = "fmoe's NCCL communicator: libnccl.so.2 lacks " #name;
    FMOE_NCCL_LOAD(ncclGetUniqueId)
    FMOE_NCCL_LOAD(ncclCommInitRank)
    FMOE_NCCL_LOAD(ncclCommAbort)
    FMOE_NCCL_LOAD(ncclCommGetAsyncError)
    FMOE_NCCL_LOAD(ncclGetErrorString)
    FMOE_NCCL_LOAD(ncclGroupStart)
    FMOE_NCCL_LOAD(ncclGroupEnd)
    FMOE_NCCL_LOAD(ncclSend)
    FMOE_NCCL_LOAD(ncclRecv)
    FMOE_NCCL_LOAD(ncclBroadcast)
    FMOE_NCCL_LOAD(ncclReduce)
#undef FMOE_NCCL_LOAD
  });
  if (!error.empty())
    throw Error(error);
  return api;
}

void check(NcclResult r, const char *what) {
  if (r != kSuccess)
    throw Error(std::string("NCCL ") + what +
                " failed: " + nccl().ncclGetErrorString(r));
}

void checkCuda(cudaError_t e, const char *what) {
  if (e != cudaSuccess)
    throw Error(std::string("fmoe's NCCL communicator: ") + what + ": " +
                cudaGetErrorString(e));
}

NcclDataType ncclType(DType type) {
  switch (type) {
  case DType::F32:
    return kFloat32;
  case DType::BF16:
    return kBfloat16;
  case DType::F16:
    return kFloat16;
  case DType::I32:
    return kInt32;
  }
  throw Error("fmoe's NCCL communicator: no NCCL type for this dtype");
}

class NcclCommunicator final : public Communicator {
public:
  NcclCommunicator(NcclCommPtr comm, int64_t rank, int64_t size, int device,
                   std::function<void *()> stream, double timeoutSeconds)
      : comm(comm), rank_(rank), size_(size), device(device),
        stream(std::move(stream)), timeoutSeconds(timeoutSeconds) {
    cudaError_t e = cudaEventCreateWithFlags(&done, cudaEventDisableTiming);
    if (e != cudaSuccess) {
      abort();
      checkCuda(e, "cudaEventCreate");
    }
  }
  // The communicator is aborted (not destroyed, which would wait for the
  // peers) when it is dropped: groups live as long as the process.
  ~NcclCommunicator() override {
    if (done)
      cudaEventDestroy(done);
    abort();
  }

  int64_t rank() const override { return rank_; }
  int64_t size() const override { return size_; }

  void allToAll(const void *send, const std::vector<int64_t> &sendBytes,
                void *recv, const std::vector<int64_t> &recvBytes) override {
    if (int64_t(sendBytes.size()) != size_ ||
        int64_t(recvBytes.size()) != size_)
      throw Error("fmoe's NCCL communicator: all-to-all with " +
                  std::to_string(sendBytes.size()) + " / " +
                  std::to_string(recvBytes.size()) + " sizes on " +
                  std::to_string(size_) + " ranks");
    std::lock_guard<std::mutex> lock(mutex);
    cudaStream_t s = current();
    const NcclApi &api = nccl();
    check(api.ncclGroupStart(), "group start");
    const char *in = static_cast<const char *>(send);
    char *out = static_cast<char *>(recv);
    int64_t inAt = 0, outAt = 0;
    NcclResult r = kSuccess;
    for (int64_t peer = 0; peer < size_ && r == kSuccess; ++peer) {
      if (sendBytes[peer] > 0)
        r = api.ncclSend(in + inAt, size_t(sendBytes[peer]), kUint8, int(peer),
                         comm, s);
      if (r == kSuccess && recvBytes[peer] > 0)
        r = api.ncclRecv(out + outAt, size_t(recvBytes[peer]), kUint8,
                         int(peer), comm, s);
      inAt += sendBytes[peer];
      outAt += recvBytes[peer];
    }
    NcclResult end = api.ncclGroupEnd();
    check(r, "send/recv");
    check(end, "group end (all-to-all)");
    wait(s, "all-to-all");
  }

  void broadcast(void *data, int64_t bytes, int64_t root) override {
    std::lock_guard<std::mutex> lock(mutex);
    cudaStream_t s = current();
    check(nccl().ncclBroadcast(data, data, size_t(bytes), kUint8, int(root),
                               comm, s),
          "broadcast");
    wait(s, "broadcast");
  }

  void reduceSum(void *data, int64_t count, DType type, int64_t root) override {
    std::lock_guard<std::mutex> lock(mutex);
    cudaStream_t s = current();
    check(nccl().ncclReduce(data, data, size_t(count), ncclType(type), kSum,
                            int(root), comm, s),
          "reduce");
    wait(s, "reduce");
  }

private:
  /// The device's current stream (and a communicator still usable: one
  /// that was aborted after a failure stays so; the job must restart).
  cudaStream_t current() {
    if (!comm)
      throw Error("fmoe's NCCL communicator was aborted after an earlier "
                  "failure (a peer died or timed out); restart the job");
    checkCuda(cudaSetDevice(device), "cudaSetDevice");
    return static_cast<cudaStream_t>(stream());
  }

  /// Returns once the stream has done the collective; polls NCCL's
  /// asynchronous error meanwhile and gives up after the timeout, aborting
  /// this rank's communicator (the abort is local: the peers get out by
  /// their own error or timeout).
  void wait(cudaStream_t s, const char *what) {
    checkCuda(cudaEventRecord(done, s), "cudaEventRecord");
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::duration<double>(timeoutSeconds);
    for (int spins = 0;; ++spins) {
      cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess)
        return;
      if (q != cudaErrorNotReady)
        checkCuda(q, what);
      NcclResult async = kSuccess;
      nccl().ncclCommGetAsyncError(comm, &async);
      if (async != kSuccess && async != kInProgress) {
        abort();
        throw Error(std::string("NCCL ") + what +
                    " failed: " + nccl().ncclGetErrorString(async));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        abort();
        throw Error(std::string("NCCL ") + what + " did not finish within " +
                    std::to_string(timeoutSeconds) +
                    " s (a peer died or hangs; FMOE_NCCL_TIMEOUT_S sets the "
                    "limit): the communicator is aborted");
      }
      // Spin briefly (exchanges take microseconds to milliseconds), then
      // yield the core.
      if (spins > 1000)
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  void abort() {
    if (comm)
      nccl().ncclCommAbort(comm);
    comm = nullptr;
  }

  std::mutex mutex; // one collective at a time on this communicator
  NcclCommPtr comm;
  int64_t rank_, size_;
  int device;
  std::function<void *()> stream;
  double timeoutSeconds;
  cudaEvent_t done = nullptr;
};

} // namespace

NcclUniqueId ncclUniqueId() {
  NcclIdStruct id{};
  check(nccl().ncclGetUniqueId(&id), "get unique id");
  NcclUniqueId out;
  std::copy(std::begin(id.internal), std::end(id.internal), out.begin());
  return out;
}

std::unique_ptr<Communicator>
createNcclCommunicator(const NcclUniqueId &id, int64_t rank, int64_t size,
                       int device, std::function<void *()> stream,
                       double timeoutSeconds) {
  if (size < 1 || rank < 0 || rank >= size)
    throw Error("fmoe's NCCL communicator: rank " + std::to_string(rank) +
                " of " + std::to_string(size));
  if (!stream)
    throw Error("fmoe's NCCL communicator: no stream provider");
  NcclIdStruct raw;
  std::copy(id.begin(), id.end(), raw.internal);
  checkCuda(cudaSetDevice(device), "cudaSetDevice");
  NcclCommPtr comm = nullptr;
  check(nccl().ncclCommInitRank(&comm, int(size), raw, int(rank)),
        "communicator init (ncclCommInitRank)");
  return std::make_unique<NcclCommunicator>(comm, rank, size, device,
                                            std::move(stream), timeoutSeconds);
}

} // namespace fmoe::runtime
