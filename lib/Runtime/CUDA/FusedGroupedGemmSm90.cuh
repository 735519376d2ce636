//===- FusedGroupedGemmSm90.cuh - CUTLASS fused grouped GEMM -*- CUDA -*-===//
//
// Part of fmoe. Private to FusedGroupedGemmSm90*.cu: the CUTLASS (3.x/4.x
// C++ API) types and templates behind FusedGroupedGemm.h. Each including
// translation unit instantiates one Kind (FMOE_FUSED_KIND) so that the
// kernels compile in parallel.
//
// Design
// ------
// * Kernel: CUTLASS's sm90 pointer-array grouped GEMM
//   (GroupProblemShape + KernelPtrArrayTmaWarpSpecializedCooperative, TMA
//   warp-specialised, persistent, tile 128x256x64, cluster 2x1x1), one CUTLASS
//   group per local expert. bf16 operands, fp32 accumulation, bf16 output.
// * Problem shapes stay on the device. buildGroupTables, launched first on
//   the same stream, reads `offsets` and writes into the caller's workspace
//   the per-group problem shapes (M_l, N, K), the per-group operand pointers
//   (A rows of the expert, its weight matrix, D rows, bias row, aux rows) and
//   the per-group strides. The host passes CUTLASS only the addresses of those
//   tables (host_problem_shapes = null), so the persistent grid is sized from
//   the SM count and the tile scheduler reads M_l on the device. A group with
//   M_l = 0 has no tiles and is skipped by the scheduler.
// * Epilogues are EVT trees (Sm90EVT) handed to the ptr-array TMA epilogue:
//   - D goes out through the collective's own per-group TMA store (its TMA
//     descriptor is patched per group by the kernel).
//   - The bias row uses CUTLASS's Sm90RowBroadcast, which (4.2) accepts an
//     array of per-group pointers (ElementInput = bf16*): it indexes it by
//     the tile's group coordinate l.
//   - DAct's input h is the epilogue's source C: the ptr-array epilogue
//     loads C by TMA through per-group pointers (ptr_C[l]), like D.
//   - The second output (h for BiasAct, act(h) for DAct) has no ptr-array
//     counterpart in CUTLASS: Sm90AuxStore takes one pointer and one TMA
//     descriptor (not patched per group), and its non-TMA form takes one
//     pointer and predicates on (m, n, l) < (M, N, L) with L = 1 while the
//     ptr-array kernel passes l = group index. So this file defines its own
//     node, Sm90GroupedAuxStore: it keeps the subtile in registers and
//     writes it with plain (vectorised, predicated) st.global through
//     ptr_aux[l] at the end of each epilogue subtile. Those stores are
//     narrow (2 bf16 per thread and row in the accumulator layout); L2 merges
//     them before DRAM, but they cost more LSU instructions than a TMA store.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_LIB_RUNTIME_CUDA_FUSEDGROUPEDGEMMSM90_CUH
#define FMOE_LIB_RUNTIME_CUDA_FUSEDGROUPEDGEMMSM90_CUH

// CUTLASS's device-side asserts compile to calls of __assertfail, and any
// call in the kernel makes ptxas serialise the wgmma pipeline (warning C7510,
// a large slowdown). These translation units therefore always build without
// asserts, whatever the build type.
#ifndef NDEBUG
#define NDEBUG
#endif
#include <cassert>

#include "FusedGroupedGemmSm90.h"

#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/fusion/sm90_visitor_tma_warpspecialized.hpp"
#include "cutlass/epilogue/thread/activation.h"
#include "cutlass/functional.h"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/group_array_problem_shape.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/numeric_conversion.h"
#include "cutlass/numeric_types.h"

namespace fmoe::runtime::cuda::fused {

//===----------------------------------------------------------------------===//
// Build targets
//===----------------------------------------------------------------------===//

template <int... Archs> constexpr bool kListHas900 = ((Archs == 900) || ...);

/// Whether this translation unit is compiled for sm_90 (host pass included:
/// nvcc defines __CUDA_ARCH_LIST__ in every pass). Without it the CUTLASS
/// templates are not instantiated at all (quick build, no sm90 kernels). The
/// kernels' device code is itself guarded by CUTLASS (its body needs
/// __CUDA_ARCH_FEAT_SM90_ALL, i.e. sm_90a, CUTLASS_ARCH_MMA_SM90A_ENABLED);
/// FusedGroupedGemm.cu checks at run time which image the device loaded.
#if defined(CUTLASS_ARCH_MMA_SM90_SUPPORTED) && defined(__CUDA_ARCH_LIST__)
constexpr bool kBuildHasSm90 = kListHas900<__CUDA_ARCH_LIST__>;
#else
constexpr bool kBuildHasSm90 = false;
#endif

//===----------------------------------------------------------------------===//
// Elementwise functions (fp32), in the form Sm90Compute expects: a template
// over the value type with an Array specialisation.
//===----------------------------------------------------------------------===//

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

/// gelu(x) = x * Phi(x), Phi the standard normal CDF (erf form).
template <class T> struct GeluErf {
  CUTLASS_HOST_DEVICE T operator()(T const &x) const {
    float v = static_cast<float>(x);
    return T(0.5f * v * (1.0f + erff(v * kInvSqrt2)));
  }
};
template <class T, int N> struct GeluErf<cutlass::Array<T, N>> {
  CUTLASS_HOST_DEVICE cutlass::Array<T, N>
  operator()(cutlass::Array<T, N> const &x) const {
    cutlass::Array<T, N> y;
    GeluErf<T> f;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i)
      y[i] = f(x[i]);
    return y;
  }
};

/// dy * gelu'(h), gelu'(h) = Phi(h) + h * phi(h).
template <class T> struct GeluErfBackward {
  CUTLASS_HOST_DEVICE T operator()(T const &dy, T const &h) const {
    float x = static_cast<float>(h);
    float cdf = 0.5f * (1.0f + erff(x * kInvSqrt2));
    float pdf = kInvSqrt2Pi * expf(-0.5f * x * x);
    return T(static_cast<float>(dy) * (cdf + x * pdf));
  }
};
template <class T, int N> struct GeluErfBackward<cutlass::Array<T, N>> {
  CUTLASS_HOST_DEVICE cutlass::Array<T, N>
  operator()(cutlass::Array<T, N> const &dy,
             cutlass::Array<T, N> const &h) const {
    cutlass::Array<T, N> y;
    GeluErfBackward<T> f;
    CUTLASS_PRAGMA_UNROLL
    for (int i = 0; i < N; ++i)
      y[i] = f(dy[i], h[i]);
    return y;
  }
};

//===----------------------------------------------------------------------===//
// Sm90GroupedAuxStore: an EVT node that stores Transform(input) (converted
// to Element) into the current group's rows, through an array of per-group
// pointers, and passes its input through unchanged.
//
// The partitioning follows the epilogue's register layout (the R2S tiled
// copy that the collective hands to every node, with ReferenceSrc), so the
// fragment of visit(epi_v) lands at the right place. Coordinates come from
// the collective's tCcD / residue_tCcD, which are relative to the current
// group's tile ((M, N) of the group), so rows past the group's M (and
// columns past N) are not written.
//===----------------------------------------------------------------------===//

template <class Element, template <class> class Transform, int Alignment = 8>
struct Sm90GroupedAuxStore {
  struct SharedStorage {};

  struct Arguments {
    /// [groups]: the group's row 0 (its first row of the output).
    Element *const *ptr_aux = nullptr;
    /// Elements between consecutive rows (the same for every group).
    int64_t ld_aux = 0;
  };
  using Params = Arguments;

  template <class ProblemShape>
  static constexpr Params
  to_underlying_arguments(ProblemShape const &, Arguments const &args, void *) {
    return args;
  }

  template <class ProblemShape>
  static bool can_implement(ProblemShape const &, Arguments const &args) {
    return args.ptr_aux != nullptr && args.ld_aux % Alignment == 0;
  }

  template <class ProblemShape>
  static size_t get_workspace_size(ProblemShape const &, Arguments const &) {
    return 0;
  }

  template <class ProblemShape>
  static cutlass::Status
  initialize_workspace(ProblemShape const &, Arguments const &, void *,
                       cudaStream_t, cutlass::CudaHostAdapter * = nullptr) {
    return cutlass::Status::kSuccess;
  }

  CUTLASS_HOST_DEVICE Sm90GroupedAuxStore() {}

  CUTLASS_HOST_DEVICE
  Sm90GroupedAuxStore(Params const &params, SharedStorage const &)
      : params_ptr(&params) {}

  Params const *params_ptr = nullptr;

  CUTLASS_DEVICE bool is_producer_load_needed() const { return false; }
  CUTLASS_DEVICE bool is_C_load_needed() const { return false; }

  template <class... Args>
  CUTLASS_DEVICE auto get_producer_load_callbacks(
      cutlass::epilogue::fusion::detail::ProducerLoadArgs<Args...> const &) {
    return cutlass::epilogue::fusion::EmptyProducerLoadCallbacks{};
  }

  template <class GTensor, class RTensor, class CTensor, class Residue>
  struct ConsumerStoreCallbacks
      : cutlass::epilogue::fusion::EmptyConsumerStoreCallbacks {
    CUTLASS_DEVICE
    ConsumerStoreCallbacks(GTensor &&g, RTensor &&r, CTensor c, Residue res)
        : tCgAux(cute::forward<GTensor>(g)), tCrAux(cute::forward<RTensor>(r)),
          tCcAux(c), residue(res) {}

    GTensor tCgAux;  // (CPY,CPY_M,CPY_N,EPI_M,EPI_N) this group's rows
    RTensor tCrAux;  // (CPY,CPY_M,CPY_N) one subtile, in registers
    CTensor tCcAux;  // (CPY,CPY_M,CPY_N,EPI_M,EPI_N) tile-relative (m, n)
    Residue residue; // (m, n) bound relative to this thread's first element

    template <class ElementAccumulator, class ElementInput, int FragmentSize>
    CUTLASS_DEVICE cutlass::Array<ElementInput, FragmentSize>
    visit(cutlass::Array<ElementAccumulator, FragmentSize> const &, int epi_v,
          int, int, cutlass::Array<ElementInput, FragmentSize> const &input) {
      cutlass::NumericArrayConverter<float, ElementInput, FragmentSize> toF32;
      cutlass::NumericArrayConverter<Element, float, FragmentSize> toOut;
      Transform<cutlass::Array<float, FragmentSize>> transform;
      auto frags = cute::recast<cutlass::Array<Element, FragmentSize>>(tCrAux);
      frags(epi_v) = toOut(transform(toF32(input)));
      return input;
    }

    CUTLASS_DEVICE void end_loop(int epi_m, int epi_n) {
      using namespace cute;
      Tensor g = tCgAux(_, _, _, epi_m, epi_n);
      Tensor c = tCcAux(_, _, _, epi_m, epi_n);
      // Vector width: the leading mode of the (flattened) gmem partition,
      // when it is static and unit-stride, holds consecutive columns, and
      // the register tensor is compact; blocks of V consecutive indices are
      // then contiguous in both. N and every leading dimension are multiples
      // of 8, so a block is either wholly inside the tile's residue or not.
      auto gflat = flatten(g.layout());
      constexpr int V = [] {
        using Mode0 = decltype(layout<0>(decltype(gflat){}));
        if constexpr (is_static<decltype(shape(Mode0{}))>::value &&
                      is_constant<1, decltype(stride(Mode0{}))>::value) {
          constexpr int s0 = decltype(size(Mode0{}))::value;
          int v = 1;
          while (v * 2 <= Alignment && s0 % (v * 2) == 0)
            v *= 2;
          return v;
        } else {
          return 1;
        }
      }();
      static_assert(decltype(size(c))::value % V == 0);
      using Vec = cutlass::AlignedArray<Element, V>;
      CUTLASS_PRAGMA_UNROLL
      for (int i = 0; i < decltype(size(c))::value; i += V) {
        if (elem_less(c(i), residue)) {
          *reinterpret_cast<Vec *>(&g(i)) =
              *reinterpret_cast<Vec const *>(&tCrAux(i));
        }
      }
    }
  };

  template <bool ReferenceSrc, class... Args>
  CUTLASS_DEVICE auto get_consumer_store_callbacks(
      cutlass::epilogue::fusion::detail::ConsumerStoreArgs<Args...> const
          &args) {
    using namespace cute;
    auto [M, N, K, L] = args.problem_shape_mnkl;
    auto [m, n, k, l] = args.tile_coord_mnkl;
    // The ptr-array kernel passes L = 1 and l = the group index: the group
    // selects the base pointer; the tile is addressed in the group's (M, N).
    Element *base = params_ptr->ptr_aux[l];
    Tensor mAux = make_tensor(
        make_gmem_ptr(base),
        make_layout(make_shape(M, N), make_stride(params_ptr->ld_aux, _1{})));
    Tensor gAux = local_tile(mAux, take<0, 2>(args.tile_shape_mnk),
                             make_coord(m, n)); // (CTA_M,CTA_N)
    Tensor tCgAux =
        cutlass::epilogue::fusion::sm90_partition_for_epilogue<ReferenceSrc>(
            gAux, args.epi_tile, args.tiled_copy, args.thread_idx);
    Tensor tCrAux = make_tensor<Element>(take<0, 3>(shape(tCgAux)));
    return ConsumerStoreCallbacks<decltype(tCgAux), decltype(tCrAux),
                                  decltype(args.tCcD),
                                  decltype(args.residue_tCcD)>(
        cute::move(tCgAux), cute::move(tCrAux), args.tCcD, args.residue_tCcD);
  }
};

//===----------------------------------------------------------------------===//
// Kernel types
//===----------------------------------------------------------------------===//

namespace types {

using namespace cute;
using Bf16 = cutlass::bfloat16_t;
using TileShape = Shape<_128, _256, _64>;
using ClusterShape = Shape<_2, _1, _1>;
using GroupShape = Shape<int, int, int>; // (M, N, K) of one group
using ProblemShape = cutlass::gemm::GroupProblemShape<GroupShape>;
constexpr int kAlign = 8; // elements of 16 bytes, what TMA needs
constexpr auto kRound = cutlass::FloatRoundStyle::round_to_nearest;

namespace fusion = cutlass::epilogue::fusion;
using cutlass::epilogue::thread::Identity;

/// bias[l][n]: a row broadcast through per-group pointers.
using RowBias = fusion::Sm90RowBroadcast<0, TileShape, Bf16 *, float,
                                         Stride<_0, _1, _0>, kAlign>;

/// d = acc
using NoneTree =
    fusion::Sm90EVT<fusion::Sm90Compute<Identity, Bf16, float, kRound>,
                    fusion::Sm90AccFetch>;

/// d = acc + bias[l]
using BiasTree =
    fusion::Sm90EVT<fusion::Sm90Compute<cutlass::plus, Bf16, float, kRound>,
                    fusion::Sm90AccFetch, RowBias>;

/// h = acc + bias[l]; aux = h; d = gelu(h)  (gelu of the fp32 h)
using BiasGeluTree = fusion::Sm90EVT<
    fusion::Sm90Compute<GeluErf, Bf16, float, kRound>,
    fusion::Sm90EVT<Sm90GroupedAuxStore<Bf16, Identity>,
                    fusion::Sm90EVT<fusion::Sm90Compute<cutlass::plus, float,
                                                        float, kRound>,
                                    fusion::Sm90AccFetch, RowBias>>>;

/// h = C (per-group TMA load); act = gelu(h) (aux store);
/// d = acc * gelu'(h)
using DGeluTree =
    fusion::Sm90EVT<fusion::Sm90Compute<GeluErfBackward, Bf16, float, kRound>,
                    fusion::Sm90AccFetch,
                    fusion::Sm90EVT<Sm90GroupedAuxStore<Bf16, GeluErf>,
                                    fusion::Sm90SrcFetch<Bf16>>>;

template <Kind K> struct KindTraits;
template <> struct KindTraits<Kind::NoneNT> {
  static constexpr bool kNT = true;
  using ElementC = void;
  using Tree = NoneTree;
};
template <> struct KindTraits<Kind::NoneNN> {
  static constexpr bool kNT = false;
  using ElementC = void;
  using Tree = NoneTree;
};
template <> struct KindTraits<Kind::BiasNT> {
  static constexpr bool kNT = true;
  using ElementC = void;
  using Tree = BiasTree;
};
template <> struct KindTraits<Kind::BiasGeluNT> {
  static constexpr bool kNT = true;
  using ElementC = void;
  using Tree = BiasGeluTree;
};
template <> struct KindTraits<Kind::DGeluNN> {
  static constexpr bool kNT = false;
  using ElementC = Bf16; // h, loaded by the collective as the source
  using Tree = DGeluTree;
};

template <Kind K> struct GemmFor {
  using Traits = KindTraits<K>;
  using LayoutA = cutlass::layout::RowMajor;
  // B is (N, K): nt = K contiguous (CUTLASS's column-major B), nn = N
  // contiguous (row-major B).
  using LayoutB = std::conditional_t<Traits::kNT, cutlass::layout::ColumnMajor,
                                     cutlass::layout::RowMajor>;
  using LayoutC = cutlass::layout::RowMajor;
  using LayoutD = cutlass::layout::RowMajor;
  using ElementC = typename Traits::ElementC;

  using CollectiveEpilogue =
      typename cutlass::epilogue::collective::CollectiveBuilder<
          cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, TileShape,
          ClusterShape, cutlass::epilogue::collective::EpilogueTileAuto, float,
          float, ElementC, LayoutC *, kAlign, Bf16, LayoutD *, kAlign,
          cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative,
          typename Traits::Tree>::CollectiveOp;

  using CollectiveMainloop =
      typename cutlass::gemm::collective::CollectiveBuilder<
          cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Bf16, LayoutA *,
          kAlign, Bf16, LayoutB *, kAlign, float, TileShape, ClusterShape,
          cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
              sizeof(typename CollectiveEpilogue::SharedStorage))>,
          cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative>::
          CollectiveOp;

  using Kernel =
      cutlass::gemm::kernel::GemmUniversal<ProblemShape, CollectiveMainloop,
                                           CollectiveEpilogue>;
  using Gemm = cutlass::gemm::device::GemmUniversalAdapter<Kernel>;

  using StrideA = cute::remove_pointer_t<typename CollectiveMainloop::StrideA>;
  using StrideB = cute::remove_pointer_t<typename CollectiveMainloop::StrideB>;
  using StrideC = cute::remove_pointer_t<typename CollectiveEpilogue::StrideC>;
  using StrideD = cute::remove_pointer_t<typename CollectiveEpilogue::StrideD>;
};

} // namespace types

//===----------------------------------------------------------------------===//
// Group tables
//===----------------------------------------------------------------------===//

/// Byte offsets of the tables in the workspace (256-byte aligned each).
struct Plan {
  size_t shapes = 0, ptrA = 0, ptrB = 0, ptrC = 0, ptrD = 0, ptrBias = 0,
         ptrAux = 0, strideA = 0, strideB = 0, strideC = 0, strideD = 0,
         cutlass = 0, total = 0;
};

constexpr size_t alignUp(size_t x) { return (x + 255) & ~size_t(255); }

template <class G> Plan planTables(int64_t groups) {
  using namespace types;
  Plan p;
  size_t at = 0;
  auto take = [&](size_t bytes) {
    size_t here = at;
    at = alignUp(at + bytes);
    return here;
  };
  size_t L = static_cast<size_t>(groups);
  p.shapes = take(L * sizeof(GroupShape));
  p.ptrA = take(L * sizeof(void *));
  p.ptrB = take(L * sizeof(void *));
  p.ptrC = take(L * sizeof(void *));
  p.ptrD = take(L * sizeof(void *));
  p.ptrBias = take(L * sizeof(void *));
  p.ptrAux = take(L * sizeof(void *));
  p.strideA = take(L * sizeof(typename G::StrideA));
  p.strideB = take(L * sizeof(typename G::StrideB));
  p.strideC = take(L * sizeof(typename G::StrideC));
  p.strideD = take(L * sizeof(typename G::StrideD));
  p.cutlass = at;
  p.total = at;
  return p;
}

/// A stride whose one dynamic mode among the first two is `ld` (the other
/// is the static unit stride); the batch mode stays 0.
template <class Stride> CUTLASS_HOST_DEVICE Stride leadingStride(int64_t ld) {
  Stride s{};
  if constexpr (cute::is_static<
                    cute::remove_cvref_t<decltype(cute::get<0>(s))>>::value)
    cute::get<1>(s) = ld;
  else
    cute::get<0>(s) = ld;
  return s;
}

struct TablePtrs {
  types::GroupShape *shapes;
  const types::Bf16 **a;
  const types::Bf16 **b;
  const types::Bf16 **c;
  types::Bf16 **d;
  const types::Bf16 **bias;
  types::Bf16 **aux;
  void *strideA, *strideB, *strideC, *strideD;
};

template <class G> TablePtrs tablePtrs(char *base, const Plan &p) {
  using namespace types;
  return TablePtrs{reinterpret_cast<GroupShape *>(base + p.shapes),
                   reinterpret_cast<const Bf16 **>(base + p.ptrA),
                   reinterpret_cast<const Bf16 **>(base + p.ptrB),
                   reinterpret_cast<const Bf16 **>(base + p.ptrC),
                   reinterpret_cast<Bf16 **>(base + p.ptrD),
                   reinterpret_cast<const Bf16 **>(base + p.ptrBias),
                   reinterpret_cast<Bf16 **>(base + p.ptrAux),
                   base + p.strideA,
                   base + p.strideB,
                   base + p.strideC,
                   base + p.strideD};
}

/// One thread per group (local expert) l: M_l from `offsets`, the group's
/// pointers and strides. C is DAct's h (aux); the aux-store table holds
/// BiasAct's h destination (aux) or DAct's act(h) destination (actOut, or
/// aux in place).
template <class G>
__global__ void buildGroupTables(FusedGemmArgs args, TablePtrs t) {
  using namespace types;
  int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (l >= args.experts)
    return;
  const int64_t S = args.groupsPerExpert;
  int64_t begin = args.offsets[l * S];
  int64_t end = args.offsets[(l + 1) * S];
  int64_t rows = end > begin ? end - begin : 0;
  const int64_t N = args.n, K = args.k;
  t.shapes[l] = GroupShape{static_cast<int>(rows), static_cast<int>(N),
                           static_cast<int>(K)};
  t.a[l] = static_cast<const Bf16 *>(args.a) + begin * args.lda;
  t.b[l] = static_cast<const Bf16 *>(args.w) + l * N * K;
  t.d[l] = static_cast<Bf16 *>(args.d) + begin * args.ldd;
  t.bias[l] =
      args.bias ? static_cast<const Bf16 *>(args.bias) + l * N : nullptr;
  Bf16 *aux =
      args.aux ? static_cast<Bf16 *>(args.aux) + begin * args.ldaux : nullptr;
  t.c[l] = aux;
  if (args.epilogue == FusedEpilogue::DAct && args.actOut)
    t.aux[l] = static_cast<Bf16 *>(args.actOut) + begin * args.ldact;
  else
    t.aux[l] = aux;
  static_cast<typename G::StrideA *>(t.strideA)[l] =
      leadingStride<typename G::StrideA>(args.lda);
  static_cast<typename G::StrideB *>(t.strideB)[l] =
      leadingStride<typename G::StrideB>(args.nt ? K : N);
  static_cast<typename G::StrideC *>(t.strideC)[l] =
      leadingStride<typename G::StrideC>(args.ldaux);
  static_cast<typename G::StrideD *>(t.strideD)[l] =
      leadingStride<typename G::StrideD>(args.ldd);
}

//===----------------------------------------------------------------------===//
// Arguments and launch
//===----------------------------------------------------------------------===//

template <Kind K>
typename types::GemmFor<K>::Gemm::Arguments
makeArguments(const FusedGemmArgs &a, const TablePtrs &t, int device,
              int smCount) {
  using namespace types;
  using G = GemmFor<K>;
  using Gemm = typename G::Gemm;
  typename Gemm::Arguments args{};
  args.mode = cutlass::gemm::GemmUniversalMode::kGrouped;
  args.problem_shape = ProblemShape{static_cast<int32_t>(a.experts), t.shapes,
                                    /*host_problem_shapes=*/nullptr};
  args.mainloop.ptr_A = t.a;
  args.mainloop.dA = static_cast<typename G::StrideA *>(t.strideA);
  args.mainloop.ptr_B = t.b;
  args.mainloop.dB = static_cast<typename G::StrideB *>(t.strideB);
  if constexpr (!std::is_void_v<typename G::ElementC>) {
    args.epilogue.ptr_C = t.c;
    args.epilogue.dC = static_cast<typename G::StrideC *>(t.strideC);
  } else {
    args.epilogue.ptr_C = nullptr;
    args.epilogue.dC = nullptr;
  }
  args.epilogue.ptr_D = t.d;
  args.epilogue.dD = static_cast<typename G::StrideD *>(t.strideD);

  // EVT arguments mirror the tree: {child..., node}.
  auto &fa = args.epilogue.thread;
  if constexpr (K == Kind::BiasNT) {
    // (acc, bias, plus)
    fa = {{}, {static_cast<Bf16 const *const *>(t.bias), Bf16(0), {}}, {}};
  } else if constexpr (K == Kind::BiasGeluNT) {
    // (((acc, bias, plus), store h), gelu)
    fa = {{{{}, {static_cast<Bf16 const *const *>(t.bias), Bf16(0), {}}, {}},
           {static_cast<Bf16 *const *>(t.aux), a.ldaux}},
          {}};
  } else if constexpr (K == Kind::DGeluNN) {
    // (acc, (C, store gelu(C)), dgelu)
    fa = {
        {},
        {{}, {static_cast<Bf16 *const *>(t.aux), a.actOut ? a.ldact : a.ldaux}},
        {}};
  }

  args.hw_info.device_id = device;
  args.hw_info.sm_count = smCount;
  return args;
}

template <Kind K> size_t workspaceBytes(const FusedGemmArgs &a, int smCount) {
  if constexpr (!kBuildHasSm90) {
    return 0;
  } else {
    using G = types::GemmFor<K>;
    Plan p = planTables<G>(a.experts);
    // CUTLASS's own workspace (per-SM TMA descriptors) does not depend on
    // the table addresses: size it with tables at a null base.
    TablePtrs t = tablePtrs<G>(nullptr, p);
    auto args = makeArguments<K>(a, t, /*device=*/0, smCount);
    size_t bytes = G::Gemm::get_workspace_size(args);
    return p.total + alignUp(bytes);
  }
}

[[noreturn]] inline void fail(const std::string &what) {
  throw std::runtime_error("fused grouped GEMM: " + what);
}

inline void checkLaunch(const char *what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    fail(std::string(what) + ": " + cudaGetErrorName(err) + ": " +
         cudaGetErrorString(err));
}

template <Kind K>
void launch(const FusedGemmArgs &a, CUstream_st *stream, int smCount) {
  if constexpr (!kBuildHasSm90) {
    fail("this build has no sm_90a kernels");
  } else {
    using G = types::GemmFor<K>;
    using Gemm = typename G::Gemm;
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess)
      checkLaunch("cudaGetDevice");
    Plan p = planTables<G>(a.experts);
    char *base = static_cast<char *>(a.workspace);
    TablePtrs t = tablePtrs<G>(base, p);

    constexpr int kThreads = 128;
    unsigned blocks =
        static_cast<unsigned>((a.experts + kThreads - 1) / kThreads);
    buildGroupTables<G><<<blocks, kThreads, 0, stream>>>(a, t);
    checkLaunch("group tables");

    auto args = makeArguments<K>(a, t, device, smCount);
    Gemm gemm;
    cutlass::Status st = gemm.can_implement(args);
    if (st != cutlass::Status::kSuccess)
      fail(std::string("CUTLASS cannot implement it: ") +
           cutlassGetStatusString(st));
    st = gemm.initialize(args, base + p.cutlass, stream);
    if (st != cutlass::Status::kSuccess)
      fail(std::string("CUTLASS initialize: ") + cutlassGetStatusString(st));
    st = gemm.run(stream);
    if (st != cutlass::Status::kSuccess)
      fail(std::string("CUTLASS run: ") + cutlassGetStatusString(st));
    checkLaunch("grouped GEMM");
  }
}

template <Kind K> bool compiledForSm90() { return kBuildHasSm90; }

} // namespace fmoe::runtime::cuda::fused

/// Instantiates the entry points of FusedGroupedGemmSm90.h for one Kind.
#define FMOE_FUSED_INSTANTIATE(KIND)                                           \
  namespace fmoe::runtime::cuda::fused {                                       \
  template size_t workspaceBytes<Kind::KIND>(const FusedGemmArgs &, int);      \
  template void launch<Kind::KIND>(const FusedGemmArgs &, CUstream_st *, int); \
  template bool compiledForSm90<Kind::KIND>();                                 \
  }

#endif // FMOE_LIB_RUNTIME_CUDA_FUSEDGROUPEDGEMMSM90_CUH
