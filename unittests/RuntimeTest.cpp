//===- RuntimeTest.cpp - loading and executing compiled modules -----------===//
//
// Part of fmoe. Runs a module compiled from test/Inputs/layer.mlir (4 experts,
// top-2, d_model 16, d_hidden 32, GeLU, f32) on the CPU backend against a
// plain C++ MoE, and checks that bad modules and bad arguments are refused.
//
//===----------------------------------------------------------------------===//

#include "fmoe/Runtime/Runtime.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

using namespace fmoe::runtime;

namespace {

constexpr int64_t E = 4, K = 2, D = 16, H = 32;

std::string moduleBytes() {
  std::ifstream in(FMOE_TEST_MODULE, std::ios::binary);
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

} // namespace
