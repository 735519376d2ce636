//===- RuntimeTest.cpp - loading and executing compiled modules -----------===//
//
// Part of fmoe. Runs a module compiled from test/Inputs/layer.mlir (4 experts,
// top-2, d_model 16, d_hidden 32, GeLU, f32) on the CPU backend against a
// plain C++ MoE, and checks that bad modules and bad arguments are refused.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Runtime/Runtime.h"
#include "fmoe/Runtime/Nccl.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

using namespace fmoe::runtime;

namespace {

constexpr int64_t E = 4, K = 2, D = 16, H = 32;

std::string moduleBytes(const char *path = FMOE_TEST_MODULE) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Layer {
  std::vector<float> wg = std::vector<float>(E * D), bg = std::vector<float>(E),
                     w1 = std::vector<float>(E * H * D),
                     b1 = std::vector<float>(E * H),
                     w2 = std::vector<float>(E * D * H),
                     b2 = std::vector<float>(E * D);
  explicit Layer(unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> n(0.0f, 0.3f);
    for (auto *v : {&wg, &bg, &w1, &b1, &w2, &b2})
      for (float &x : *v)
        x = n(gen);
  }

  /// out[t] = Σ_k softmax(top-k logits)_k · expert(x[t]): FastMoE's naive gate.
  std::vector<float> reference(const std::vector<float> &x, int64_t t) const {
    std::vector<float> out(t * D, 0.0f);
    for (int64_t tok = 0; tok < t; ++tok) {
      std::vector<std::pair<float, int64_t>> logits;
      for (int64_t e = 0; e < E; ++e) {
        float l = bg[e];
        for (int64_t d = 0; d < D; ++d)
          l += x[tok * D + d] * wg[e * D + d];
        logits.push_back({-l, e}); // sort: largest first, lower id on ties
      }
      std::sort(logits.begin(), logits.end());
      float z = 0;
      for (int64_t s = 0; s < K; ++s)
        z += std::exp(logits[0].first - logits[s].first);
      for (int64_t s = 0; s < K; ++s) {
        int64_t e = logits[s].second;
        float score = std::exp(logits[0].first - logits[s].first) / z;
        std::vector<float> h(H);
        for (int64_t j = 0; j < H; ++j) {
          float a = b1[e * H + j];
          for (int64_t d = 0; d < D; ++d)
            a += x[tok * D + d] * w1[(e * H + j) * D + d];
          h[j] = 0.5f * a * (1.0f + std::erf(a / std::sqrt(2.0f)));
        }
        for (int64_t d = 0; d < D; ++d) {
          float y = b2[e * D + d];
          for (int64_t j = 0; j < H; ++j)
            y += h[j] * w2[(e * D + d) * H + j];
          out[tok * D + d] += score * y;
        }
      }
    }
    return out;
  }
};

BufferRef f32(std::vector<float> &v) {
  return BufferRef{v.data(), int64_t(v.size()), DType::F32};
}

TEST(Runtime, LoadsAndDescribesTheModule) {
  auto m = CompiledModule::fromBytes(moduleBytes(), "layer.fmoe");
  EXPECT_EQ(m->configInt("num_experts"), E);
  EXPECT_EQ(m->configInt("top_k"), K);
  EXPECT_EQ(m->config("activation"), "gelu");
  EXPECT_TRUE(m->hasProgram("forward"));
  EXPECT_TRUE(m->hasProgram("backward"));
  EXPECT_EQ(m->module().target, "sm_90");
}

TEST(Runtime, RefusesDamagedModules) {
  std::string bytes = moduleBytes();
  EXPECT_THROW(
      CompiledModule::fromBytes(bytes.substr(0, bytes.size() / 3), "cut"),
      Error);
  std::string flipped = bytes;
  flipped[flipped.find("program forward") + 2] = 'X';
  try {
    CompiledModule::fromBytes(flipped, "flipped.fmoe");
    FAIL() << "a corrupted module was accepted";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("flipped.fmoe"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"),
              std::string::npos);
  }
  EXPECT_THROW(CompiledModule::load("/nonexistent/layer.fmoe"), Error);
}

/// Runs the forward program on the CPU backend; returns the layer output.
std::vector<float> forward(const CompiledModule &m, Layer &l,
                           std::vector<float> &x, int64_t t) {
  const fmoe::format::Program &p = m.program("forward");
  std::vector<BufferRef> inputs{f32(x),    f32(l.wg), f32(l.bg), f32(l.w1),
                                f32(l.b1), f32(l.w2), f32(l.b2)};
  std::vector<std::vector<char>> storage;
  std::vector<BufferRef> outputs;
  for (const auto &b : p.buffers) {
    if (b.role != "output")
      continue;
    DType type = parseDType(b.dtype);
    int64_t n = bufferNumel(b, t);
    storage.emplace_back(std::max<int64_t>(n, 1) * dtypeSize(type));
    outputs.push_back(BufferRef{storage.back().data(), n, type});
  }
  auto backend = createCpuBackend();
  execute(m, p, *backend, inputs, outputs, t);
  const float *out = static_cast<const float *>(outputs[0].data);
  return std::vector<float>(out, out + t * D);
}

TEST(Runtime, CpuForwardMatchesAPlainMoE) {
  auto m = CompiledModule::fromBytes(moduleBytes(), "layer.fmoe");
  Layer layer(7);
  for (int64_t t : {0, 1, 5, 33}) {
    std::vector<float> x(t * D);
    std::mt19937 gen(t);
    std::normal_distribution<float> n;
    for (float &v : x)
      v = n(gen);
    std::vector<float> got = forward(*m, layer, x, t);
    std::vector<float> want = layer.reference(x, t);
    float scale = 1e-6f;
    for (float v : want)
      scale = std::max(scale, std::abs(v));
    for (int64_t i = 0; i < t * D; ++i)
      ASSERT_NEAR(got[i], want[i], 1e-5f * scale) << "t=" << t << " i=" << i;
  }
}

TEST(Runtime, AllocatesOutputsAtFirstUse) {
  auto m = CompiledModule::fromBytes(moduleBytes(), "layer.fmoe");
  const fmoe::format::Program &p = m->program("forward");
  Layer l(3);
  int64_t t = 9;
  std::vector<float> x(t * D, 0.5f);
  x[3] = -1.0f;
  std::vector<BufferRef> inputs{f32(x),    f32(l.wg), f32(l.bg), f32(l.w1),
                                f32(l.b1), f32(l.w2), f32(l.b2)};
  // Outputs with their dtype and size but no data: the executor asks for
  // each once, when a command first needs it.
  std::vector<BufferRef> outputs;
  for (const auto &b : p.buffers)
    if (b.role == "output")
      outputs.push_back(
          BufferRef{nullptr, bufferNumel(b, t), parseDType(b.dtype)});
  std::vector<std::vector<char>> storage(outputs.size());
  std::vector<int> asked(outputs.size(), 0);
  OutputAllocator allocate = [&](size_t i, const BufferRef &r) -> void * {
    EXPECT_LT(i, outputs.size());
    EXPECT_EQ(r.numel, outputs[i].numel);
    ++asked[i];
    storage[i].resize(r.numel * dtypeSize(r.dtype));
    return storage[i].data();
  };
  auto backend = createCpuBackend();
  execute(*m, p, *backend, inputs, outputs, t, nullptr, allocate);
  for (size_t i = 0; i < outputs.size(); ++i)
    EXPECT_EQ(asked[i], outputs[i].numel ? 1 : 0) << "output " << i;
  std::vector<float> want = l.reference(x, t);
  const float *got = reinterpret_cast<const float *>(storage[0].data());
  for (int64_t i = 0; i < t * D; ++i)
    ASSERT_NEAR(got[i], want[i], 1e-4f) << "i=" << i;
  // Without a provider, an output without data is an error.
  EXPECT_THROW(execute(*m, p, *backend, inputs, outputs, t), Error);
}

TEST(Runtime, RefusesBadArguments) {
  auto m = CompiledModule::fromBytes(moduleBytes(), "layer.fmoe");
  const fmoe::format::Program &p = m->program("forward");
  auto backend = createCpuBackend();
  Layer l(1);
  std::vector<float> x(3 * D);
  std::vector<BufferRef> inputs{f32(x),    f32(l.wg), f32(l.bg), f32(l.w1),
                                f32(l.b1), f32(l.w2), f32(l.b2)};
  // Too few inputs.
  std::vector<BufferRef> few(inputs.begin(), inputs.end() - 1);
  EXPECT_THROW(execute(*m, p, *backend, few, {}, 3), Error);
  // A wrong size, named with what was expected.
  std::vector<float> shortW(E * D - 1);
  std::vector<BufferRef> bad = inputs;
  bad[1] = f32(shortW);
  try {
    execute(*m, p, *backend, bad, {}, 3);
    FAIL() << "a wrong-sized gate weight was accepted";
  } catch (const Error &e) {
    std::string what = e.what();
    EXPECT_NE(what.find("gate_weight"), std::string::npos) << what;
    EXPECT_NE(what.find("64 elements"), std::string::npos) << what;
    EXPECT_NE(what.find("63 elements"), std::string::npos) << what;
  }
  // A wrong dtype.
  bad = inputs;
  bad[0].dtype = DType::BF16;
  EXPECT_THROW(execute(*m, p, *backend, bad, {}, 3), Error);
  // A negative token count.
  EXPECT_THROW(execute(*m, p, *backend, inputs, {}, -1), Error);
}

TEST(Runtime, CudaBackendIsRefusedClearlyWithoutAGpu) {
  if (cudaBackendAvailable())
    GTEST_SKIP() << "a GPU is present";
  try {
    createCudaBackend(0, nullptr);
    FAIL() << "a CUDA backend was created without a GPU";
  } catch (const Error &e) {
    EXPECT_FALSE(std::string(e.what()).empty());
  }
}

TEST(Runtime, NcclCommunicatorRefusesBadArguments) {
  // Checked before NCCL or a GPU is touched (and, in a build without CUDA,
  // refused as such): an Error with a message, never a crash.
  NcclUniqueId id{};
  auto stream = []() -> void * { return nullptr; };
  for (auto [rank, size] :
       {std::pair<int64_t, int64_t>{2, 2}, {-1, 2}, {0, 0}}) {
    try {
      createNcclCommunicator(id, rank, size, 0, stream, 1.0);
      FAIL() << "rank " << rank << " of " << size << " was accepted";
    } catch (const Error &e) {
      EXPECT_FALSE(std::string(e.what()).empty());
    }
  }
  try {
    createNcclCommunicator(id, 0, 2, 0, nullptr, 1.0);
    FAIL() << "no stream provider was accepted";
  } catch (const Error &e) {
    EXPECT_FALSE(std::string(e.what()).empty());
  }
}

} // namespace

namespace {

/// The ranks of a group as threads of this process: allToAll waits for every
/// rank to post its send buffer, copies its chunks from the peers' buffers,
/// and waits again before the buffers may change.
class ThreadGroup {
public:
  explicit ThreadGroup(int64_t size)
      : size(size), send(size), sendBytes(size), calls(size, 0) {}

  void allToAll(int64_t rank, const void *src,
                const std::vector<int64_t> &bytesOut, void *dst,
                const std::vector<int64_t> &bytesIn) {
    send[rank] = static_cast<const char *>(src);
    sendBytes[rank] = bytesOut;
    ++calls[rank];
    barrier();
    char *out = static_cast<char *>(dst);
    for (int64_t p = 0; p < size; ++p) {
      int64_t at = 0;
      for (int64_t q = 0; q < rank; ++q)
        at += sendBytes[p][q];
      // A mismatch is reported, not asserted: returning here would leave
      // the peers waiting at the barrier.
      EXPECT_EQ(sendBytes[p][rank], bytesIn[p]) << "rank " << rank;
      if (bytesIn[p] && sendBytes[p][rank] == bytesIn[p])
        std::memcpy(out, send[p] + at, bytesIn[p]);
      out += bytesIn[p];
    }
    barrier();
  }
  void broadcast(int64_t rank, void *data, int64_t bytes, int64_t root) {
    send[rank] = static_cast<const char *>(data);
    barrier();
    if (rank != root && bytes)
      std::memcpy(data, send[root], bytes);
    barrier();
  }
  void reduceSum(int64_t rank, float *data, int64_t count, int64_t root) {
    send[rank] = reinterpret_cast<const char *>(data);
    barrier();
    if (rank == root)
      for (int64_t p = 0; p < size; ++p)
        for (int64_t i = 0; p != root && i < count; ++i)
          data[i] += reinterpret_cast<const float *>(send[p])[i];
    barrier();
  }
  int64_t size;
  std::vector<const char *> send;
  std::vector<std::vector<int64_t>> sendBytes;
  std::vector<int> calls;

private:
  void barrier() {
    std::unique_lock<std::mutex> lock(mutex);
    int64_t generation = passed;
    if (++arrived == size) {
      arrived = 0;
      ++passed;
      cv.notify_all();
      return;
    }
    cv.wait(lock, [&] { return passed != generation; });
  }
  std::mutex mutex;
  std::condition_variable cv;
  int64_t arrived = 0, passed = 0;
};

/// The CPU backend, checking that every launch whose grid follows the rows
/// an exchange received is told them (the CPU reference ignores grids; the
/// GPU would silently launch too few blocks).
class GridCheckingBackend final : public Backend {
public:
  std::string_view name() const override { return "checking"; }
  void *allocate(size_t bytes) override { return cpu->allocate(bytes); }
  void deallocate(void *p) override { cpu->deallocate(p); }
  void run(const fmoe::format::Module &m, const fmoe::format::Command &cmd,
           const std::vector<BufferRef> &args, int64_t tokens,
           Execution &execution) override {
    if (cmd.kind == "launch" && cmd.grid.dependsOnReceived()) {
      ++receivedLaunches;
      EXPECT_GE(execution.received, 0) << cmd.target;
      // Row kernels: a block per rows_per_block received rows.
      int64_t per = intAttrOr(cmd, "rows_per_block", 1);
      EXPECT_EQ(cmd.grid.eval(tokens, execution.received),
                (execution.received + per - 1) / per)
          << cmd.target;
    }
    cpu->run(m, cmd, args, tokens, execution);
  }
  int receivedLaunches = 0;

private:
  std::unique_ptr<Backend> cpu = createCpuBackend();
};

/// The outputs of a program passed without data, sizes left open (-1),
/// allocated in `storage` when the executor first needs them.
struct LazyOutputs {
  explicit LazyOutputs(const fmoe::format::Program &p) {
    for (const auto &b : p.buffers)
      if (b.role == "output")
        refs.push_back(BufferRef{nullptr, -1, parseDType(b.dtype)});
    storage.resize(refs.size());
    allocate = [this](size_t i, const BufferRef &ref) {
      storage[i].resize(ref.numel * dtypeSize(ref.dtype));
      return static_cast<void *>(storage[i].data());
    };
  }
  std::vector<BufferRef> refs;
  std::vector<std::vector<char>> storage;
  OutputAllocator allocate;
};

class ThreadCommunicator final : public Communicator {
public:
  ThreadCommunicator(ThreadGroup &group, int64_t rank)
      : group(group), me(rank) {}
  int64_t rank() const override { return me; }
  int64_t size() const override { return group.size; }
  void allToAll(const void *send, const std::vector<int64_t> &sendBytes,
                void *recv, const std::vector<int64_t> &recvBytes) override {
    group.allToAll(me, send, sendBytes, recv, recvBytes);
  }
  void broadcast(void *data, int64_t bytes, int64_t root) override {
    group.broadcast(me, data, bytes, root);
  }
  void reduceSum(void *data, int64_t count, DType type, int64_t root) override {
    ASSERT_EQ(type, DType::F32) << "the test's group sums f32 only";
    group.reduceSum(me, static_cast<float *>(data), count, root);
  }

private:
  ThreadGroup &group;
  int64_t me;
};

} // namespace

// The layer over two ranks (threads, CPU backend) equals the one-rank layer
// on each rank's tokens, and the reverse exchange reuses the counts of the
// forward one: three all-to-alls per forward (counts and rows, then rows).
TEST(Runtime, ExpertParallelForwardOnTwoRanks) {
  auto m = CompiledModule::fromBytes(moduleBytes(FMOE_TEST_MODULE_EP2),
                                     "layer_gelu_ep2.fmoe");
  const fmoe::format::Program &p = m->program("forward");
  Layer l(5);
  constexpr int64_t kRanks = 2, kLocal = E / kRanks;
  // Ranks may run different token counts: the expert side is sized by the
  // rows that arrive. Rank 0 receives more than 2 x 2 x its 2 tokens.
  const int64_t tokens[kRanks] = {2, 29};
  ThreadGroup group(kRanks);
  std::vector<std::vector<float>> xs(kRanks), outs(kRanks);
  std::vector<std::string> errors(kRanks);
  auto rankMain = [&](int64_t r) {
    try {
      int64_t t = tokens[r];
      std::vector<float> &x = xs[r];
      x.resize(t * D);
      std::mt19937 gen(100 + r);
      std::normal_distribution<float> n;
      for (float &v : x)
        v = n(gen);
      // This rank's experts: global experts r*L .. r*L + L - 1.
      auto slice = [&](const std::vector<float> &all, int64_t per) {
        return std::vector<float>(all.begin() + r * kLocal * per,
                                  all.begin() + (r + 1) * kLocal * per);
      };
      std::vector<float> w1 = slice(l.w1, H * D), b1 = slice(l.b1, H),
                         w2 = slice(l.w2, D * H), b2 = slice(l.b2, D);
      std::vector<float> wg = l.wg, bg = l.bg;
      std::vector<BufferRef> inputs{f32(x),  f32(wg), f32(bg), f32(w1),
                                    f32(b1), f32(w2), f32(b2)};
      // Outputs are allocated when written: some (the saved expert-side
      // values) have as many rows as the exchange receives.
      LazyOutputs fwd(p);
      ThreadCommunicator comm(group, r);
      GridCheckingBackend backend;
      execute(*m, p, backend, inputs, fwd.refs, t, &comm, fwd.allocate);
      EXPECT_GT(backend.receivedLaunches, 0);
      const float *out = reinterpret_cast<const float *>(fwd.storage[0].data());
      outs[r].assign(out, out + t * D);

      // The backward: (grad_output, the forward's inputs, its saved values).
      // It learns R from the saved values, checks it against its own
      // exchange, and sizes the expert side by it (grids checked as above).
      const fmoe::format::Program &bp = m->program("backward");
      std::vector<float> g(t * D, 1.0f);
      std::vector<BufferRef> bin{f32(g)};
      bin.insert(bin.end(), inputs.begin(), inputs.end());
      for (size_t i = 1; i < fwd.refs.size(); ++i) {
        BufferRef saved = fwd.refs[i];
        saved.data = fwd.storage[i].data();
        saved.numel = int64_t(fwd.storage[i].size() / dtypeSize(saved.dtype));
        bin.push_back(saved);
      }
      LazyOutputs grads(bp);
      GridCheckingBackend backward;
      execute(*m, bp, backward, bin, grads.refs, t, &comm, grads.allocate);
      EXPECT_GT(backward.receivedLaunches, 0);
      EXPECT_EQ(grads.storage[0].size(), size_t(t * D) * sizeof(float)); // dx
    } catch (const std::exception &e) {
      errors[r] = e.what();
    }
  };
  std::thread other(rankMain, 1);
  rankMain(0);
  other.join();
  for (int64_t r = 0; r < kRanks; ++r) {
    ASSERT_EQ(errors[r], "") << "rank " << r;
    // Forward: counts and rows, then rows; backward the same.
    EXPECT_EQ(group.calls[r], 6) << "rank " << r;
    std::vector<float> want = l.reference(xs[r], tokens[r]);
    for (int64_t i = 0; i < tokens[r] * D; ++i)
      ASSERT_NEAR(outs[r][i], want[i], 1e-4f) << "rank " << r << " i=" << i;
  }
}
