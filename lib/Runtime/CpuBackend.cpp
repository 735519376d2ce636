//===- CpuBackend.cpp - reference implementation of every command ---------===//
//
// Part of fmoe. The CPU backend runs each command of a compiled module with a
// plain C++ implementation of the semantics the command names (`kernel` role
// of a launch, or the library function of a call), computing in f32 and
// rounding to the storage type on every store exactly as the generated
// kernels do. It is the default on a machine without a GPU and the oracle
// the GPU backend is compared with. docs/runtime.md says why it does not run
// CPU code generated from the same kernels.
//
//===----------------------------------------------------------------------===//

#include "Exchange.h"
#include "fmoe/Runtime/Runtime.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>

namespace fmoe::runtime {

namespace {

//===----------------------------------------------------------------------===//
// Element access
//===----------------------------------------------------------------------===//

float bf16ToFloat(uint16_t v) {
  uint32_t bits = uint32_t(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t floatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (std::isnan(f))
    return 0x7fc0;
  // Round to nearest, ties to even.
  bits += 0x7fff + ((bits >> 16) & 1);
  return uint16_t(bits >> 16);
}

float f16ToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else { // subnormal: renormalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000 | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t floatToF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  uint32_t sign = (bits >> 16) & 0x8000;
  int32_t exp = int32_t((bits >> 23) & 0xff) - 127 + 15;
  uint32_t mant = bits & 0x7fffff;
  if (((bits >> 23) & 0xff) == 0xff) // inf or nan
    return uint16_t(sign | 0x7c00 | (mant ? 0x200 : 0));
  if (exp >= 31)
    return uint16_t(sign | 0x7c00);
  if (exp <= 0) {
    if (exp < -10)
      return uint16_t(sign);
    mant |= 0x800000;
    uint32_t shift = uint32_t(14 - exp);
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1)))
      ++half;
    return uint16_t(sign | half);
  }
  uint32_t half = sign | (uint32_t(exp) << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
    ++half;
  return uint16_t(half);
}

/// Typed view of a flat buffer: floats load as f32 and store rounded.
struct View {
  const BufferRef *ref;
  float f(int64_t i) const {
    switch (ref->dtype) {
    case DType::F32:
      return static_cast<const float *>(ref->data)[i];
    case DType::BF16:
      return bf16ToFloat(static_cast<const uint16_t *>(ref->data)[i]);
    case DType::F16:
      return f16ToFloat(static_cast<const uint16_t *>(ref->data)[i]);
    case DType::I32:
      return float(static_cast<const int32_t *>(ref->data)[i]);
    }
    return 0;
  }
  void set(int64_t i, float v) const {
    switch (ref->dtype) {
    case DType::F32:
      static_cast<float *>(ref->data)[i] = v;
      return;
    case DType::BF16:
      static_cast<uint16_t *>(ref->data)[i] = floatToBf16(v);
      return;
    case DType::F16:
      static_cast<uint16_t *>(ref->data)[i] = floatToF16(v);
      return;
    case DType::I32:
      static_cast<int32_t *>(ref->data)[i] = int32_t(v);
      return;
    }
  }
  int32_t &i(int64_t k) const { return static_cast<int32_t *>(ref->data)[k]; }
  int64_t cols() const { return ref->cols; }
  int64_t rows() const { return ref->rows; }
  int64_t numel() const { return ref->numel; }
};

//===----------------------------------------------------------------------===//
// Command attributes
//===----------------------------------------------------------------------===//

std::vector<int64_t> arrayAttr(const format::Command &c,
                               std::string_view name) {
  std::vector<int64_t> out;
  if (const std::string *v = findAttr(c, name)) {
    size_t pos = 0;
    while (pos < v->size()) {
      size_t end = v->find(',', pos);
      out.push_back(std::stoll(v->substr(pos, end - pos)));
      if (end == std::string::npos)
        break;
      pos = end + 1;
    }
  }
  return out;
}

/// The keyword inside an enum attribute such as `#fmoe<activation gelu>`.
std::string enumAttr(const format::Command &c, std::string_view name,
                     std::string_view fallback) {
  const std::string *v = findAttr(c, name);
  if (!v)
    return std::string(fallback);
  size_t sp = v->rfind(' '), end = v->rfind('>');
  if (sp == std::string::npos || end == std::string::npos || end < sp)
    return *v;
  return v->substr(sp + 1, end - sp - 1);
}

//===----------------------------------------------------------------------===//
// Activations (the functions the generated kernels compute; their GeLU
// takes another route to the same values, fmoe/Support/NormalApprox.h)
//===----------------------------------------------------------------------===//

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

float activate(const std::string &a, float x) {
  if (a == "relu")
    return std::max(x, 0.0f);
  if (a == "gelu" || a == "geglu")
    return 0.5f * x * (1.0f + std::erf(x * float(M_SQRT1_2)));
  if (a == "gelu_tanh") {
    float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + std::tanh(inner));
  }
  if (a == "silu" || a == "swiglu")
    return x * sigmoid(x);
  throw Error("unknown activation '" + a + "'");
}

float activateGrad(const std::string &a, float x) {
  if (a == "relu")
    return x > 0 ? 1.0f : 0.0f;
  if (a == "gelu" || a == "geglu") {
    float cdf = 0.5f * (1.0f + std::erf(x * float(M_SQRT1_2)));
    float pdf = 0.3989422804014327f * std::exp(-0.5f * x * x);
    return cdf + x * pdf;
  }
  if (a == "gelu_tanh") {
    float t = std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x));
    float dInner = 0.7978845608028654f * (1.0f + 3 * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dInner;
  }
  if (a == "silu" || a == "swiglu") {
    float s = sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
  }
  throw Error("unknown activation '" + a + "'");
}

bool isGlu(const std::string &a) { return a == "swiglu" || a == "geglu"; }

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

using Args = std::vector<BufferRef>;

void gateKernel(View x, View w, const BufferRef *bias, View logits,
                int64_t tokens) {
  int64_t d = x.cols(), e = logits.cols();
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < e; ++j) {
      float acc = bias ? View{bias}.f(j) : 0.0f;
      for (int64_t k = 0; k < d; ++k)
        acc += x.f(t * d + k) * w.f(j * d + k);
      logits.set(t * e + j, acc);
    }
}

void routeKernel(const format::Command &c, View logits, View idx, View scores,
                 const BufferRef *counts, int64_t tokens) {
  int64_t e = logits.cols(), topK = idx.cols();
  std::string kind = enumAttr(c, "gate", "naive");
  bool renorm = boolAttr(c, "renormalize");
  std::vector<float> picked(topK), p(topK);
  for (int64_t t = 0; t < tokens; ++t) {
    float prevV = std::numeric_limits<float>::infinity();
    int64_t prevE = -1;
    for (int64_t s = 0; s < topK; ++s) {
      float bestV = 0;
      int64_t bestE = -1;
      for (int64_t j = 0; j < e; ++j) {
        float v = logits.f(t * e + j);
        bool after = v < prevV || (v == prevV && j > prevE);
        if (after && (bestE < 0 || v > bestV)) {
          bestV = v;
          bestE = j;
        }
      }
      // A round that finds nothing (fewer than topK non-NaN logits) leaves
      // the order's position alone: no expert is picked twice.
      if (bestE >= 0) {
        prevV = bestV;
        prevE = bestE;
      }
      picked[s] = bestV;
      idx.i(t * topK + s) = int32_t(bestE);
      if (counts && bestE >= 0)
        ++View{counts}.i(bestE);
    }
    if (kind == "naive") {
      float sum = 0;
      for (int64_t s = 0; s < topK; ++s)
        sum += p[s] = std::exp(picked[s] - picked[0]);
      for (float &v : p)
        v /= sum;
    } else if (kind == "softmax_topk") {
      float z = 0;
      for (int64_t j = 0; j < e; ++j)
        z += std::exp(logits.f(t * e + j) - picked[0]);
      for (int64_t s = 0; s < topK; ++s)
        p[s] = std::exp(picked[s] - picked[0]) / z;
    } else if (kind == "sigmoid") {
      for (int64_t s = 0; s < topK; ++s)
        p[s] = sigmoid(picked[s]);
    } else {
      throw Error("unknown gate kind '" + kind + "'");
    }
    if (renorm) {
      float sum = 0;
      for (float v : p)
        sum += v;
      for (float &v : p)
        v /= sum;
    }
    for (int64_t s = 0; s < topK; ++s)
      scores.set(t * topK + s, p[s]);
  }
}

void offsetsKernel(const format::Command &c, View counts, View offsets,
                   View scratch, int64_t tokens) {
  int64_t e = counts.numel();
  std::vector<int64_t> order = arrayAttr(c, "expert_order");
  if (order.empty())
    for (int64_t j = 0; j < e; ++j)
      order.push_back(j);
  int64_t cap = std::numeric_limits<int32_t>::max();
  if (const std::string *cf = findAttr(c, "capacity_factor")) {
    double rows = double(tokens * intAttr(c, "top_k"));
    cap = int64_t(std::ceil(rows * (std::stod(*cf) / double(e))));
  }
  int32_t run = 0;
  for (int64_t g = 0; g < e; ++g) {
    int64_t ex = order[g];
    int32_t n = int32_t(std::min<int64_t>(counts.i(ex), cap));
    offsets.i(g) = run;
    scratch.i(ex) = run;
    run += n;
    scratch.i(ex + e) = run;
  }
  offsets.i(e) = run;
}

void scatterKernel(View idx, View scratch, View slotPos, View tokenOf,
                   int64_t tokens) {
  int64_t topK = idx.cols(), e = scratch.numel() / 2;
  for (int64_t i = 0; i < tokens * topK; ++i) {
    int32_t ex = idx.i(i);
    slotPos.i(i) = -1;
    if (ex < 0)
      continue;
    int32_t p = scratch.i(ex)++;
    if (p < scratch.i(ex + e)) {
      slotPos.i(i) = p;
      tokenOf.i(p) = int32_t(i / topK);
    }
  }
}

/// Local expert of row r: groups are expert-major, S = groups / local.
int64_t localExpertOf(View offsets, int64_t r, int64_t local) {
  int64_t groups = offsets.numel() - 1, g = 0;
  for (int64_t j = 1; j < groups; ++j)
    if (r >= offsets.i(j))
      g = j;
  return g / (groups / local);
}

/// h += bias (stored: the backward reads the pre-activation), a = act(h)
/// (GLU: act(h_gate) * h_up).
void biasActKernel(const format::Command &c, View h, View offsets, View a,
                   const BufferRef *bias) {
  std::string act = enumAttr(c, "activation", "");
  int64_t hidden = a.cols(), hw = h.cols();
  int64_t used = offsets.i(offsets.numel() - 1);
  bool glu = isGlu(act);
  for (int64_t r = 0; r < used; ++r) {
    int64_t l = bias ? localExpertOf(offsets, r, View{bias}.rows()) : 0;
    for (int64_t j = 0; j < hidden; ++j) {
      float pre = h.f(r * hw + j);
      if (bias) {
        pre += View{bias}.f(l * hidden + j);
        h.set(r * hw + j, pre);
      }
      float out = activate(act, pre);
      if (glu)
        out *= h.f(r * hw + hidden + j);
      a.set(r * hidden + j, out);
    }
  }
}

void biasKernel(View y, View offsets, View bias) {
  int64_t d = y.cols(), used = offsets.i(offsets.numel() - 1);
  for (int64_t r = 0; r < used; ++r) {
    int64_t l = localExpertOf(offsets, r, bias.rows());
    for (int64_t j = 0; j < d; ++j)
      y.set(r * d + j, y.f(r * d + j) + bias.f(l * d + j));
  }
}

void combineKernel(View y, View slotPos, View scores, View out,
                   int64_t tokens) {
  int64_t d = y.cols(), topK = slotPos.cols();
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t j = 0; j < d; ++j) {
      float acc = 0;
      for (int64_t s = 0; s < topK; ++s) {
        int32_t pos = slotPos.i(t * topK + s);
        if (pos >= 0)
          acc += scores.f(t * topK + s) * y.f(pos * d + j);
      }
      out.set(t * d + j, acc);
    }
}

void routeGradKernel(const format::Command &c, View ds, View logits, View idx,
                     View scores, View dl, int64_t tokens) {
  int64_t e = logits.cols(), topK = idx.cols();
  std::string kind = enumAttr(c, "gate", "naive");
  bool renorm = boolAttr(c, "renormalize");
  std::vector<float> g(topK), q(topK), l(topK), p(topK), dp(topK);
  std::vector<int64_t> ex(topK);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t s = 0; s < topK; ++s) {
      g[s] = ds.f(t * topK + s);
      q[s] = scores.f(t * topK + s);
      ex[s] = std::max<int32_t>(idx.i(t * topK + s), 0);
      l[s] = logits.f(t * e + ex[s]);
    }
    p = q;
    dp = g;
    if (kind == "sigmoid")
      for (int64_t s = 0; s < topK; ++s)
        p[s] = sigmoid(l[s]);
    if (kind == "softmax_topk" && renorm) {
      float m = -3.0e38f, z = 0;
      for (int64_t j = 0; j < e; ++j)
        m = std::max(m, logits.f(t * e + j));
      for (int64_t j = 0; j < e; ++j)
        z += std::exp(logits.f(t * e + j) - m);
      for (int64_t s = 0; s < topK; ++s)
        p[s] = std::exp(l[s] - m) / z;
    }
    if (renorm) {
      float sum = 0, cdot = 0;
      for (int64_t s = 0; s < topK; ++s) {
        sum += p[s];
        cdot += q[s] * g[s];
      }
      for (int64_t s = 0; s < topK; ++s)
        dp[s] = (g[s] - cdot) / sum;
    }
    for (int64_t j = 0; j < e; ++j)
      dl.set(t * e + j, 0);
    if (kind == "naive") {
      float cdot = 0;
      for (int64_t s = 0; s < topK; ++s)
        cdot += q[s] * dp[s];
      for (int64_t s = 0; s < topK; ++s)
        dl.set(t * e + ex[s], q[s] * (dp[s] - cdot));
    } else if (kind == "softmax_topk") {
      float cdot = 0, z = 0;
      for (int64_t s = 0; s < topK; ++s)
        cdot += p[s] * dp[s];
      for (int64_t j = 0; j < e; ++j)
        z += std::exp(logits.f(t * e + j) - l[0]);
      for (int64_t j = 0; j < e; ++j)
        dl.set(t * e + j, std::exp(logits.f(t * e + j) - l[0]) / z * -cdot);
      for (int64_t s = 0; s < topK; ++s)
        dl.set(t * e + ex[s], std::exp(l[s] - l[0]) / z * (dp[s] - cdot));
    } else {
      for (int64_t s = 0; s < topK; ++s)
        dl.set(t * e + ex[s], dp[s] * (p[s] * (1.0f - p[s])));
    }
  }
}

//===----------------------------------------------------------------------===//
// GEMMs
//===----------------------------------------------------------------------===//

void loopGemm(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
              const float *b, int64_t ldb, bool transB, float *c, int64_t ldc,
              bool accumulate) {
  for (int64_t i = 0; i < m; ++i) {
    float *ci = c + i * ldc;
    if (!accumulate)
      std::fill(ci, ci + n, 0.0f);
    for (int64_t p = 0; p < k; ++p) {
      float av = a[i * lda + p];
      if (av == 0.0f)
        continue;
      if (transB)
        for (int64_t j = 0; j < n; ++j)
          ci[j] += av * b[j * ldb + p];
      else
        for (int64_t j = 0; j < n; ++j)
          ci[j] += av * b[p * ldb + j];
    }
  }
}

CpuGemm::Fn &gemmSlot() {
  static CpuGemm::Fn fn = loopGemm;
  return fn;
}

/// Copies rows x cols of `v` (starting at column col0, leading dim ld) to f32.
std::vector<float> toFloat(View v, const std::vector<int64_t> &rows, int64_t ld,
                           int64_t col0, int64_t cols) {
  std::vector<float> out(rows.size() * cols);
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t j = 0; j < cols; ++j)
      out[r * cols + j] = v.f(rows[r] * ld + col0 + j);
  return out;
}

std::vector<float> matrix(View v, int64_t first, int64_t count, int64_t cols) {
  std::vector<float> out(count * cols);
  for (int64_t i = 0; i < count * cols; ++i)
    out[i] = v.f(first * cols + i);
  return out;
}

/// The `activation` attribute of an epilogue GEMM command.
const std::string &activationAttr(const format::Command &c) {
  const std::string *act = findAttr(c, "activation");
  if (!act)
    throw Error(c.target + " lacks attribute 'activation'");
  return *act;
}

/// c[r, c_col + j] (+)= Σ a[r, a_col + p] w[l] for each group's rows, then
/// the epilogue: + bias[l] (bias), * act'(h) (dactH). With actOut, also
/// actOut = act of the stored result (bias) or of h (dactH; actOut or out
/// may be h itself, not both; actOut's leading dimension is ldc when it is
/// h, else n).
void groupedGemm(const format::Command &c, View a, const View *gatherIdx,
                 View w, View out, View offsets, const View *bias = nullptr,
                 const View *dactH = nullptr, const std::string &act = "",
                 const View *actOut = nullptr) {
  int64_t n = intAttr(c, "n"), k = intAttr(c, "k");
  int64_t lda = intAttr(c, "lda"), ldc = intAttr(c, "ldc");
  int64_t aCol = intAttrOr(c, "a_col", 0), cCol = intAttrOr(c, "c_col", 0);
  int64_t local = intAttr(c, "local_experts");
  bool nt = findAttr(c, "layout") && *findAttr(c, "layout") == "nt";
  bool accumulate = boolAttr(c, "accumulate");
  int64_t groups = offsets.numel() - 1, perExpert = groups / local;
  for (int64_t g = 0; g < groups; ++g) {
    int64_t lo = offsets.i(g), hi = offsets.i(g + 1);
    if (hi <= lo)
      continue;
    std::vector<int64_t> rows, outRows;
    for (int64_t r = lo; r < hi; ++r) {
      rows.push_back(gatherIdx ? gatherIdx->i(r) : r);
      outRows.push_back(r);
    }
    std::vector<float> af = toFloat(a, rows, lda, aCol, k);
    std::vector<float> wf = matrix(w, (g / perExpert) * n, n, k);
    if (!nt) // w[l] is [k, n]
      wf = matrix(w, (g / perExpert) * k, k, n);
    std::vector<float> cf = toFloat(out, outRows, ldc, cCol, n);
    gemmSlot()(int64_t(rows.size()), n, k, af.data(), k, wf.data(), nt ? k : n,
               nt, cf.data(), n, accumulate);
    // The epilogues, from the fp32 sums: fmoe_rt_grouped_gemm_bias adds
    // the expert's bias, fmoe_rt_grouped_gemm_dact multiplies by act'(h).
    for (size_t r = 0; (bias || dactH) && r < outRows.size(); ++r)
      for (int64_t j = 0; j < n; ++j) {
        float &v = cf[r * n + j];
        if (bias)
          v += bias->f((g / perExpert) * n + j);
        if (dactH)
          v *= activateGrad(act, dactH->f(outRows[r] * ldc + cCol + j));
      }
    // act of h before c is stored (c may be h), or of the stored c.
    auto storeAct = [&](const View &src) {
      int64_t ldact = actOut->ref->data == src.ref->data ? ldc : n;
      for (int64_t r : outRows)
        for (int64_t j = 0; j < n; ++j)
          actOut->set(r * ldact + j, activate(act, src.f(r * ldc + cCol + j)));
    };
    if (actOut && dactH)
      storeAct(*dactH);
    for (size_t r = 0; r < outRows.size(); ++r)
      for (int64_t j = 0; j < n; ++j)
        out.set(outRows[r] * ldc + cCol + j, cf[r * n + j]);
    if (actOut && !dactH)
      storeAct(out);
  }
}

/// dw[l][i][j] = Σ over the rows of expert l of a[r, a_col + i] b[r, j].
void groupedWgrad(const format::Command &c, View a, View b, View dw,
                  View offsets) {
  int64_t m = intAttr(c, "m"), n = intAttr(c, "n");
  int64_t lda = intAttr(c, "lda"), ldb = intAttr(c, "ldb");
  int64_t aCol = intAttrOr(c, "a_col", 0);
  int64_t local = intAttr(c, "local_experts");
  int64_t perExpert = (offsets.numel() - 1) / local;
  for (int64_t l = 0; l < local; ++l) {
    int64_t lo = offsets.i(l * perExpert), hi = offsets.i((l + 1) * perExpert);
    std::vector<float> result(m * n, 0.0f);
    if (hi > lo) {
      int64_t rows = hi - lo;
      std::vector<float> at(m * rows); // aᵀ: [m, rows]
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < m; ++i)
          at[i * rows + r] = a.f((lo + r) * lda + aCol + i);
      std::vector<float> bf(rows * n);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j)
          bf[r * n + j] = b.f((lo + r) * ldb + j);
      gemmSlot()(m, n, rows, at.data(), rows, bf.data(), n, false,
                 result.data(), n, false);
    }
    for (int64_t i = 0; i < m * n; ++i)
      dw.set(l * m * n + i, result[i]);
  }
}

//===----------------------------------------------------------------------===//
// The backend
//===----------------------------------------------------------------------===//

class CpuBackend final : public Backend {
public:
  std::string_view name() const override { return "cpu"; }

  void *allocate(size_t bytes) override {
    if (bytes == 0)
      return nullptr;
    void *p = std::malloc(bytes);
    if (!p)
      throw Error("cpu backend: out of memory allocating " +
                  std::to_string(bytes) + " bytes");
    return p;
  }
  void deallocate(void *ptr) override { std::free(ptr); }

  void run(const format::Module &, const format::Command &c, const Args &a,
           int64_t tokens, Execution &execution) override {
    if (c.kind == "launch")
      launch(c, a, tokens);
    else
      call(c, a, execution);
  }

private:
  static View v(const Args &a, size_t i) { return View{&a.at(i)}; }

  void launch(const format::Command &c, const Args &a, int64_t t) {
    const std::string *role = findAttr(c, "kernel");
    if (!role)
      throw Error("cpu backend: launch of " + c.target +
                  " does not say which kernel it is (recompile the module)");
    const std::string &k = *role;
    // Buffers only: the token count is the last operand of every launch.
    size_t nb = a.size() - 1;
    if (k == "gate") {
      gateKernel(v(a, 0), v(a, 1), nb == 4 ? &a[2] : nullptr, v(a, nb - 1), t);
    } else if (k == "route") {
      routeKernel(c, v(a, 0), v(a, 1), v(a, 2), nullptr, t);
    } else if (k == "gate_route") {
      size_t o = nb == 7 ? 3 : 2;
      gateKernel(v(a, 0), v(a, 1), nb == 7 ? &a[2] : nullptr, v(a, o), t);
      routeKernel(c, v(a, o), v(a, o + 1), v(a, o + 2), &a[o + 3], t);
    } else if (k == "bias_route") {
      // f32 logits from a GEMM: plus the bias (when given), then routed.
      View logits = v(a, 0);
      if (nb == 5)
        for (int64_t i = 0; i < t * logits.cols(); ++i)
          logits.set(i, logits.f(i) + v(a, 4).f(i % logits.cols()));
      routeKernel(c, logits, v(a, 1), v(a, 2), &a[3], t);
    } else if (k == "count") {
      View idx = v(a, 0), counts = v(a, 1);
      for (int64_t i = 0; i < idx.numel(); ++i)
        if (idx.i(i) >= 0)
          ++counts.i(idx.i(i));
    } else if (k == "offsets") {
      offsetsKernel(c, v(a, 0), v(a, 1), v(a, 2), t);
    } else if (k == "scatter") {
      scatterKernel(v(a, 0), v(a, 1), v(a, 2), v(a, 3), t);
    } else if (k == "gather") {
      View x = v(a, 0), tok = v(a, 1), rows = v(a, 2);
      int64_t d = x.cols();
      for (int64_t r = 0; r < rows.rows(); ++r)
        for (int64_t j = 0; j < d; ++j)
          rows.set(r * d + j, tok.i(r) >= 0 ? x.f(tok.i(r) * d + j) : 0.0f);
    } else if (k == "bias_act") {
      biasActKernel(c, v(a, 0), v(a, 1), v(a, 2), nb == 4 ? &a[3] : nullptr);
    } else if (k == "bias") {
      biasKernel(v(a, 0), v(a, 1), v(a, 2));
    } else if (k == "combine") {
      combineKernel(v(a, 0), v(a, 1), v(a, 2), v(a, 3), t);
    } else if (k == "combine_grad") {
      // dy[pos] = score * dout[t]; ds = <dout[t], y[pos]> (0 when dropped).
      View dout = v(a, 0), y = v(a, 1), pos = v(a, 2), sc = v(a, 3),
           dy = v(a, 4), ds = v(a, 5);
      int64_t d = dout.cols(), topK = pos.cols();
      for (int64_t slot = 0; slot < t * topK; ++slot) {
        float dot = 0;
        if (int32_t p = pos.i(slot); p >= 0)
          for (int64_t j = 0; j < d; ++j) {
            // y before dy: the backward may write dy over y.
            float g = dout.f((slot / topK) * d + j);
            dot += g * y.f(p * d + j);
            dy.set(p * d + j, sc.f(slot) * g);
          }
        ds.set(slot, dot);
      }
    } else if (k == "token_scores") {
      // s[t, l] = the score of slot (t, j), l the local expert of the group
      // holding its row (dropped slots: nothing).
      View pos = v(a, 0), sc = v(a, 1), off = v(a, 2), s = v(a, 3);
      int64_t topK = pos.cols(), local = s.cols();
      for (int64_t slot = 0; slot < t * topK; ++slot)
        if (int32_t p = pos.i(slot); p >= 0)
          s.set((slot / topK) * local + localExpertOf(off, p, local),
                sc.f(slot));
    } else if (k == "act_and_grad") {
      actGrad(c, v(a, 0), v(a, 1), v(a, 2), v(a, 3));
    } else if (k == "act_and_grad_bias") {
      // act_and_grad, then acc[l, j] += the sum of dh[r, j] (j < hidden, the
      // gate half for GLU) over the rows r of local expert l.
      actGrad(c, v(a, 0), v(a, 1), v(a, 2), v(a, 3));
      groupColumnSums(v(a, 3), v(a, 2), v(a, 4), /*add=*/true);
    } else if (k == "fc1_bias_grad" || k == "fc2_bias_grad" ||
               k == "gate_bias_grad") {
      groupColumnSums(v(a, 0), v(a, 1), v(a, 2), /*add=*/false);
    } else if (k == "convert") {
      View src = v(a, 0), dst = v(a, 1);
      for (int64_t i = 0; i < dst.numel(); ++i)
        dst.set(i, src.f(i));
    } else if (k == "gather_grad") {
      View dr = v(a, 0), pos = v(a, 1), dx = v(a, 2);
      int64_t d = dr.cols(), topK = pos.cols();
      for (int64_t tk = 0; tk < t; ++tk)
        for (int64_t j = 0; j < d; ++j) {
          float acc = 0;
          for (int64_t s = 0; s < topK; ++s)
            if (int32_t p = pos.i(tk * topK + s); p >= 0)
              acc += dr.f(p * d + j);
          dx.set(tk * d + j, acc);
        }
    } else if (k == "route_grad") {
      routeGradKernel(c, v(a, 0), v(a, 1), v(a, 2), v(a, 3), v(a, 4), t);
    } else if (k == "all_rows") {
      // Group offsets {0, T}: one group of every row.
      auto *off = static_cast<int32_t *>(a.at(0).data);
      off[0] = 0;
      off[1] = int32_t(t);
    } else {
      throw Error("cpu backend: no implementation of kernel '" + k + "' (" +
                  c.target + ")");
    }
  }

  /// grad[l, j] (= or +=) the sum of src[r, j] over the rows r of local
  /// expert l (the groups [l*S, (l+1)*S) of `off`), j < grad's columns.
  static void groupColumnSums(View src, View off, View grad, bool add) {
    int64_t local = grad.rows(), cols = grad.cols();
    int64_t per = (off.numel() - 1) / local;
    for (int64_t l = 0; l < local; ++l)
      for (int64_t j = 0; j < cols; ++j) {
        float s = add ? grad.f(l * cols + j) : 0.0f;
        for (int64_t r = off.i(l * per); r < off.i((l + 1) * per); ++r)
          s += src.f(r * src.cols() + j);
        grad.set(l * cols + j, s);
      }
  }

  /// dh = da * act'(h) (GLU: both halves), and a = act(h) (GLU:
  /// act(h_g) * h_u) over da. Element by element, each read before the
  /// writes (dh may be h).
  static void actGrad(const format::Command &c, View h, View da, View off,
                      View dh) {
    std::string act = enumAttr(c, "activation", "");
    int64_t hidden = da.cols(), hw = h.cols();
    bool glu = isGlu(act);
    int64_t used = off.i(off.numel() - 1);
    for (int64_t r = 0; r < used; ++r)
      for (int64_t j = 0; j < hidden; ++j) {
        float pre = h.f(r * hw + j), g = da.f(r * hidden + j);
        float u = glu ? h.f(r * hw + hidden + j) : 1.0f;
        float out = activate(act, pre);
        if (glu) {
          dh.set(r * hw + j, g * u * activateGrad(act, pre));
          dh.set(r * hw + hidden + j, g * out);
        } else {
          dh.set(r * hw + j, g * activateGrad(act, pre));
        }
        da.set(r * hidden + j, out * u);
      }
  }

  /// Copies within host memory, for the exchanges.
  MemoryOps hostMemory() {
    MemoryOps host;
    host.copy = host.toHost =
        host.fromHost = [](void *d, const void *s, int64_t n) {
          if (n && d != s)
            std::memcpy(d, s, n);
        };
    host.allocate = [this](int64_t n) { return allocate(n); };
    host.deallocate = [this](void *p) { deallocate(p); };
    return host;
  }

  void call(const format::Command &c, const Args &a, Execution &execution) {
    std::string fn = c.target;
    for (std::string_view suffix : {"_f32", "_bf16", "_f16"})
      if (fn.size() > suffix.size() &&
          fn.compare(fn.size() - suffix.size(), suffix.size(), suffix) == 0)
        fn.resize(fn.size() - suffix.size());
    if (fn == "fmoe_rt_memset") {
      const BufferRef &b = a.at(0);
      if (b.numel)
        std::memset(b.data, int(intAttr(c, "byte")),
                    b.numel * dtypeSize(b.dtype));
    } else if (fn == "fmoe_rt_grouped_gemm" ||
               fn == "fmoe_rt_grouped_gemm_to_f32") {
      groupedGemm(c, v(a, 0), nullptr, v(a, 1), v(a, 2), v(a, 3));
    } else if (fn == "fmoe_rt_grouped_gemm_bias") {
      View bias = v(a, 2);
      groupedGemm(c, v(a, 0), nullptr, v(a, 1), v(a, 3), v(a, 4), &bias);
    } else if (fn == "fmoe_rt_grouped_gemm_bias_act") {
      View bias = v(a, 2), act = v(a, 4);
      groupedGemm(c, v(a, 0), nullptr, v(a, 1), v(a, 3), v(a, 5), &bias,
                  nullptr, activationAttr(c), &act);
    } else if (fn == "fmoe_rt_grouped_gemm_dact") {
      View h = v(a, 2);
      groupedGemm(c, v(a, 0), nullptr, v(a, 1), v(a, 3), v(a, 4), nullptr, &h,
                  activationAttr(c));
    } else if (fn == "fmoe_rt_grouped_gemm_dact_act") {
      View h = v(a, 2), act = v(a, 4);
      if (a.at(3).data == a.at(2).data && a.at(4).data == a.at(2).data)
        throw Error(c.target + ": c or act may be h, not both");
      groupedGemm(c, v(a, 0), nullptr, v(a, 1), v(a, 3), v(a, 5), nullptr, &h,
                  activationAttr(c), &act);
    } else if (fn == "fmoe_rt_grouped_gemm_gather") {
      View idx = v(a, 1);
      groupedGemm(c, v(a, 0), &idx, v(a, 2), v(a, 3), v(a, 4));
    } else if (fn == "fmoe_rt_grouped_wgrad") {
      groupedWgrad(c, v(a, 0), v(a, 1), v(a, 2), v(a, 3));
    } else if (fn == "fmoe_rt_all_to_all") {
      execution.exchangedRows = exchangeGroups(c, a, hostMemory(), execution);
    } else if (fn == "fmoe_rt_replicate" || fn == "fmoe_rt_replicate_grad") {
      replicateExperts(c, a, hostMemory(), execution,
                       fn == "fmoe_rt_replicate_grad");
    } else {
      throw Error("cpu backend: unknown library function '" + c.target + "'");
    }
  }
};

} // namespace

void CpuGemm::set(Fn fn) { gemmSlot() = fn ? std::move(fn) : Fn(loopGemm); }
const CpuGemm::Fn &CpuGemm::get() { return gemmSlot(); }

std::unique_ptr<Backend> createCpuBackend() {
  return std::make_unique<CpuBackend>();
}

} // namespace fmoe::runtime
