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
//   - DAct's and DGrad's input h is the epilogue's source C: the ptr-array
//     epilogue loads C by TMA through per-group pointers (ptr_C[l]), like D.
//     DGrad has no second output (d = acc * act'(h) only).
//   - The second output (h for BiasAct, act(h) for DAct) has no ptr-array
//     counterpart in CUTLASS: Sm90AuxStore takes one pointer and one TMA
//     descriptor (not patched per group), and its non-TMA form takes one
//     pointer and predicates on (m, n, l) < (M, N, L) with L = 1 while the
//     ptr-array kernel passes l = group index. So this file defines its own
//     node. Sm90GroupedAuxSmemStore stages each epilogue subtile in shared
//     memory and writes it through ptr_aux[l] with 16-byte coalesced
//     st.global (8 KiB of its own for BiasAct; DAct borrows the
//     collective's D buffer in reduce(), so that its mainloop keeps 4
//     stages). Storing straight from the registers (2 bf16 per thread and
//     store) measured slower (bench/NOTES.md, runs 20 and 22).
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
#include "Gelu.cuh"

#include <cuda_runtime.h>

#include <type_traits>

#include <cmath>
#include <stdexcept>
#include <string>

#include "cute/tensor.hpp"
#include "cutlass/arch/memory.h"
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

/// gelu(x) = x * Phi(x), Phi the standard normal CDF (Gelu.cuh's form).
template <class T> struct GeluErf {
  CUTLASS_HOST_DEVICE T operator()(T const &x) const {
    return T(gelu(static_cast<float>(x)));
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
    return T(static_cast<float>(dy) * geluGrad(static_cast<float>(h)));
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
// Sm90GroupedAuxSmemStore: an EVT node that stores Transform(input)
// (converted to Element) into the current group's rows, through an array of
// per-group pointers, and passes its input through unchanged. The subtile
// goes through shared memory and leaves it in 16-byte, coalesced st.global.
//
// The register fragment follows the epilogue's layout (the R2S tiled copy
// that the collective hands to every node, with ReferenceSrc); coordinates
// come from the collective's tCcD / residue_tCcD, so rows past the group's M
// (and columns past N) are not written.
//
// Two forms (InStoreBuffer):
// * false: an 8 KiB buffer of its own (SharedStorage), no extra barrier, as
//   described below. BiasAct uses it (its epilogue has room: the mainloop
//   keeps 4 stages).
// * true: no smem of its own. The subtile is staged in the collective's D
//   buffer inside reduce() (the hook CUTLASS lends that buffer to), at the
//   cost of three named barriers per subtile. DAct uses it: with C staged
//   (4 x 8 KiB) another 8 KiB would cost the mainloop its 4th stage.
//
// Own buffer, per epilogue subtile (EpiM x EpiN, 128 x 32 for the
// cooperative schedule):
//   visit:      the transformed input is kept in registers;
//   postreduce: each thread writes its fragment into a single smem buffer
//               (16-byte chunks XOR-swizzled by row, so that the wgmma
//               fragment's 8 rows x 16 bytes per warp store and the row-wise
//               16-byte reads are both free of bank conflicts);
//   tma_store:  the collective calls it after fence + named barrier (all
//               256 threads' smem writes done); each thread reads whole
//               16-byte chunks (consecutive threads walk a row, then the next
//               row) and stores them to the group's rows, predicated on the
//               group's (M, N) residue.
// The buffer is written again only in the next subtile's postreduce, which
// comes after the barrier that closes the collective's store sequence
// (tma_store_fn: callback, commit, acquire, synchronize), with or without
// DelayTmaStore; so one buffer (8 KiB) is enough.
//===----------------------------------------------------------------------===//

template <class Element, template <class> class Transform, int EpiM, int EpiN,
          bool InStoreBuffer>
struct Sm90GroupedAuxSmemStore {
  /// Elements in one 16-byte chunk, and chunks in one subtile row.
  static constexpr int kVec = 16 / static_cast<int>(sizeof(Element));
  static constexpr int kChunks = EpiN / kVec;
  static_assert(EpiN % kVec == 0 && kChunks > 0 &&
                    (kChunks & (kChunks - 1)) == 0,
                "a subtile row must be a power-of-two number of 16-byte "
                "chunks");

  struct OwnBuffer {
    alignas(128) cute::array_aligned<Element, EpiM * EpiN, 128> smem_aux;
    CUTLASS_HOST_DEVICE Element *buffer() const {
      return const_cast<Element *>(smem_aux.data());
    }
  };
  struct NoBuffer {
    CUTLASS_HOST_DEVICE Element *buffer() const { return nullptr; }
  };
  using SharedStorage = std::conditional_t<InStoreBuffer, NoBuffer, OwnBuffer>;

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
    return args.ptr_aux != nullptr && args.ld_aux % kVec == 0;
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

  CUTLASS_HOST_DEVICE Sm90GroupedAuxSmemStore() {}

  CUTLASS_HOST_DEVICE
  Sm90GroupedAuxSmemStore(Params const &params, SharedStorage const &shared)
      : params_ptr(&params), smem_aux(shared.buffer()) {}

  Params const *params_ptr = nullptr;
  Element *smem_aux = nullptr;

  CUTLASS_DEVICE bool is_producer_load_needed() const { return false; }
  CUTLASS_DEVICE bool is_C_load_needed() const { return false; }

  template <class... Args>
  CUTLASS_DEVICE auto get_producer_load_callbacks(
      cutlass::epilogue::fusion::detail::ProducerLoadArgs<Args...> const &) {
    return cutlass::epilogue::fusion::EmptyProducerLoadCallbacks{};
  }

  /// Element offset of (row, col) of the subtile in the smem buffer: row
  /// major, 16-byte chunks permuted within the row by (row / 2).
  CUTLASS_DEVICE static int smemOffset(int row, int col) {
    int chunk = (col / kVec) ^ ((row >> 1) & (kChunks - 1));
    return row * EpiN + chunk * kVec + col % kVec;
  }

  template <int Threads, class RTensor, class CTensor>
  struct ConsumerStoreCallbacks
      : cutlass::epilogue::fusion::EmptyConsumerStoreCallbacks {
    CUTLASS_DEVICE
    ConsumerStoreCallbacks(RTensor &&r, CTensor c, int row, int col,
                           Element *smem, Element *tile, int64_t ld, int rows,
                           int cols, int thread)
        : tCrAux(cute::forward<RTensor>(r)), tCcAux(c), baseRow(row),
          baseCol(col), smem(smem), gTile(tile), ldAux(ld), rowsLeft(rows),
          colsLeft(cols), thread(thread) {}

    RTensor tCrAux;       // (CPY,CPY_M,CPY_N) one subtile, in registers
    CTensor tCcAux;       // (CPY,CPY_M,CPY_N,EPI_M,EPI_N) (m, n) relative to
                          // this thread's first element (static)
    int baseRow, baseCol; // this thread's first element in the CTA tile
    Element *smem;        // the subtile buffer
    Element *gTile;       // element (0, 0) of this CTA tile in the group's rows
    int64_t ldAux;
    int rowsLeft, colsLeft; // the group's M, N minus the tile's origin
    int thread;             // 0 .. Threads-1

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

    /// Registers -> smem (the subtile buffer at `smem`).
    CUTLASS_DEVICE void toSmem(int epi_m, int epi_n) {
      using namespace cute;
      Tensor c = tCcAux(_, _, _, epi_m, epi_n);
      // Vector width: runs of V consecutive fragment indices that hold V
      // consecutive columns of one row (the wgmma fragment has pairs). The
      // coordinates are static (relative to the thread's first element),
      // so the test folds.
      constexpr int kSize = decltype(size(c))::value;
      constexpr int V = 2 <= kVec && kSize % 2 == 0 ? 2 : 1;
      // (The pairs of the wgmma fragment start at even columns.)
      bool pairs = true;
      if constexpr (V == 2) {
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < kSize; i += 2)
          pairs = pairs && get<0>(c(i)) == get<0>(c(i + 1)) &&
                  get<1>(c(i)) + 1 == get<1>(c(i + 1));
      }
      // Subtile-relative = tile-relative - the subtile's origin.
      const int row0 = epi_m * EpiM - baseRow, col0 = epi_n * EpiN - baseCol;
      if (V == 2 && pairs) {
        using Vec = cutlass::AlignedArray<Element, 2>;
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < kSize; i += 2) {
          int off = smemOffset(get<0>(c(i)) - row0, get<1>(c(i)) - col0);
          *reinterpret_cast<Vec *>(smem + off) =
              *reinterpret_cast<Vec const *>(&tCrAux(i));
        }
      } else {
        CUTLASS_PRAGMA_UNROLL
        for (int i = 0; i < kSize; ++i)
          smem[smemOffset(get<0>(c(i)) - row0, get<1>(c(i)) - col0)] =
              tCrAux(i);
      }
    }

    /// smem -> global, 16 bytes per thread and access (after a barrier).
    CUTLASS_DEVICE void toGlobal(int epi_m, int epi_n) {
      constexpr int kTotal = EpiM * kChunks;
      static_assert(kTotal % Threads == 0, "chunks must divide evenly");
      const int row0 = epi_m * EpiM, col0 = epi_n * EpiN;
      CUTLASS_PRAGMA_UNROLL
      for (int j = 0; j < kTotal / Threads; ++j) {
        int q = thread + j * Threads;
        int r = q / kChunks, ch = q % kChunks;
        int row = row0 + r, col = col0 + ch * kVec;
        uint4 v =
            *reinterpret_cast<uint4 const *>(smem + smemOffset(r, ch * kVec));
        cutlass::arch::global_store<uint4, 16>(
            v, gTile + int64_t(row) * ldAux + col,
            row < rowsLeft && col < colsLeft);
      }
    }

    // Own buffer: written in postreduce, read in tma_store (after the
    // collective's fence and barrier).
    CUTLASS_DEVICE void postreduce(int epi_m, int epi_n, int, bool) {
      if constexpr (!InStoreBuffer)
        toSmem(epi_m, epi_n);
    }
    CUTLASS_DEVICE void tma_store(int epi_m, int epi_n, int, bool) {
      if constexpr (!InStoreBuffer)
        toGlobal(epi_m, epi_n);
    }

    // The collective's D buffer of this subtile, lent to reduce() until D's
    // own register-to-smem copy. With ReuseSmemC it still holds the source C
    // of this subtile, which every thread has copied to registers before
    // visit() but possibly not yet all: hence the first barrier. The last
    // one keeps D's copy from overwriting chunks not yet read.
    template <class STensor, class SyncFn, class VTensor>
    CUTLASS_DEVICE void reduce(STensor &&buffer, SyncFn const &sync, int epi_m,
                               int epi_n, bool, VTensor) {
      if constexpr (InStoreBuffer) {
        using namespace cute;
        using Stored = typename remove_cvref_t<STensor>::value_type;
        static_assert(sizeof(Stored) == sizeof(Element) &&
                          decltype(size(buffer))::value == EpiM * EpiN,
                      "the D buffer must hold one EpiM x EpiN subtile");
        // The stage's first element (the tensor's pointer is stage 0's: a
        // swizzled layout keeps the stage offset; element (0, 0) of a stage
        // is not moved by the swizzle).
        smem = reinterpret_cast<Element *>(&buffer(0, 0));
        sync();
        toSmem(epi_m, epi_n);
        sync();
        toGlobal(epi_m, epi_n);
        sync();
      }
    }
  };

  template <bool ReferenceSrc, class... Args>
  CUTLASS_DEVICE auto get_consumer_store_callbacks(
      cutlass::epilogue::fusion::detail::ConsumerStoreArgs<Args...> const
          &args) {
    using namespace cute;
    static_assert(ReferenceSrc, "the fragment must follow the R2S source");
    static_assert(decltype(size<0>(args.epi_tile))::value == EpiM &&
                      decltype(size<1>(args.epi_tile))::value == EpiN,
                  "EpiM x EpiN must be the collective's epilogue tile");
    constexpr int kThreads =
        decltype(size(cute::remove_cvref_t<decltype(args.tiled_mma)>{}))::value;
    auto [M, N, K, L] = args.problem_shape_mnkl;
    auto [m, n, k, l] = args.tile_coord_mnkl;
    constexpr int kCtaM = decltype(size<0>(args.tile_shape_mnk))::value;
    constexpr int kCtaN = decltype(size<1>(args.tile_shape_mnk))::value;
    int rowsLeft = static_cast<int>(M) - static_cast<int>(m) * kCtaM;
    int colsLeft = static_cast<int>(N) - static_cast<int>(n) * kCtaN;
    // The ptr-array kernel passes L = 1 and l = the group index.
    int64_t ld = params_ptr->ld_aux;
    Element *tile =
        params_ptr->ptr_aux[l] + int64_t(m) * kCtaM * ld + int64_t(n) * kCtaN;
    // tCcD holds coordinates relative to this thread's first element, and
    // residue_tCcD = (M, N) - that element's coordinates in the group.
    int baseRow = rowsLeft - static_cast<int>(get<0>(args.residue_tCcD));
    int baseCol = colsLeft - static_cast<int>(get<1>(args.residue_tCcD));
    Tensor tCrAux = make_tensor<Element>(take<0, 3>(shape(args.tCcD)));
    return ConsumerStoreCallbacks<kThreads, decltype(tCrAux),
                                  decltype(args.tCcD)>(
        cute::move(tCrAux), args.tCcD, baseRow, baseCol, smem_aux, tile, ld,
        rowsLeft, colsLeft, args.thread_idx);
  }
};

//===----------------------------------------------------------------------===//
// Kernel types
//===----------------------------------------------------------------------===//

namespace types {

using namespace cute;
using Bf16 = cutlass::bfloat16_t;
using GroupShape = Shape<int, int, int>; // (M, N, K) of one group
using ProblemShape = cutlass::gemm::GroupProblemShape<GroupShape>;
constexpr int kAlign = 8; // elements of 16 bytes, what TMA needs
constexpr auto kRound = cutlass::FloatRoundStyle::round_to_nearest;

namespace fusion = cutlass::epilogue::fusion;
using cutlass::epilogue::thread::Identity;

/// The two sm90 kernel schedules. Each also fixes the CTA tile and the
/// epilogue subtile that EpilogueTileAuto picks for it (CUTLASS's
/// sm90_compute_tile_shape_or_override; Sm90GroupedAuxSmemStore checks it
/// at compile time).
/// * Cooperative: both consumer warp groups share one 128x256 tile; the
///   epilogue runs after the mainloop of its tile, tensor cores idle.
/// * Pingpong: each consumer warp group owns a 128x128 tile; one group's
///   epilogue runs while the other's mainloop keeps the tensor cores busy,
///   which is what an epilogue with real work (GeLU, a second output, a
///   loaded h) needs.
struct Cooperative {
  using Tile = Shape<_128, _256, _64>;
  using Cluster = Shape<_2, _1, _1>;
  using KernelSchedule =
      cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative;
  using EpilogueSchedule =
      cutlass::epilogue::PtrArrayTmaWarpSpecializedCooperative;
  static constexpr int kEpiM = 128, kEpiN = 32;
};
struct Pingpong {
  using Tile = Shape<_128, _128, _64>;
  using Cluster = Shape<_2, _1, _1>;
  using KernelSchedule =
      cutlass::gemm::KernelPtrArrayTmaWarpSpecializedPingpong;
  using EpilogueSchedule =
      cutlass::epilogue::PtrArrayTmaWarpSpecializedPingpong;
  static constexpr int kEpiM = 64, kEpiN = 32;
};

/// bias[l][n]: a row broadcast through per-group pointers.
template <class S>
using RowBias = fusion::Sm90RowBroadcast<0, typename S::Tile, Bf16 *, float,
                                         Stride<_0, _1, _0>, kAlign>;

/// d = acc
template <class S>
using NoneTree =
    fusion::Sm90EVT<fusion::Sm90Compute<Identity, Bf16, float, kRound>,
                    fusion::Sm90AccFetch>;

/// d = acc + bias[l]
template <class S>
using BiasTree =
    fusion::Sm90EVT<fusion::Sm90Compute<cutlass::plus, Bf16, float, kRound>,
                    fusion::Sm90AccFetch, RowBias<S>>;

/// The second output's store node; InStoreBuffer: stage it in the
/// collective's D buffer (no smem of its own).
template <class S, class Element, template <class> class Transform,
          bool InStoreBuffer>
using GroupedAuxStore = Sm90GroupedAuxSmemStore<Element, Transform, S::kEpiM,
                                                S::kEpiN, InStoreBuffer>;

/// h = acc + bias[l]; aux = h; d = gelu(h)  (gelu of the fp32 h)
template <class S>
using BiasGeluTree = fusion::Sm90EVT<
    fusion::Sm90Compute<GeluErf, Bf16, float, kRound>,
    fusion::Sm90EVT<GroupedAuxStore<S, Bf16, Identity, false>,
                    fusion::Sm90EVT<fusion::Sm90Compute<cutlass::plus, float,
                                                        float, kRound>,
                                    fusion::Sm90AccFetch, RowBias<S>>>>;

/// h = C (per-group TMA load); act = gelu(h) (aux store);
/// d = acc * gelu'(h)
template <class S>
using DGeluTree =
    fusion::Sm90EVT<fusion::Sm90Compute<GeluErfBackward, Bf16, float, kRound>,
                    fusion::Sm90AccFetch,
                    fusion::Sm90EVT<GroupedAuxStore<S, Bf16, GeluErf, true>,
                                    fusion::Sm90SrcFetch<Bf16>>>;

/// h = C (per-group TMA load); d = acc * gelu'(h)  (no second output)
template <class S>
using DGradGeluTree =
    fusion::Sm90EVT<fusion::Sm90Compute<GeluErfBackward, Bf16, float, kRound>,
                    fusion::Sm90AccFetch, fusion::Sm90SrcFetch<Bf16>>;

/// d = acc + C, C being d itself (per-group TMA load, then stored over)
template <class S>
using AccTree =
    fusion::Sm90EVT<fusion::Sm90Compute<cutlass::plus, Bf16, float, kRound>,
                    fusion::Sm90AccFetch, fusion::Sm90SrcFetch<Bf16>>;

/// The schedule of every kind (FMOE_FUSED_SCHEDULE_PINGPONG=0/1 overrides it
/// for all kinds at build time, for A/B measurements: bench/fused_gemm).
#if defined(FMOE_FUSED_SCHEDULE_PINGPONG)
template <class Default>
using ScheduleFor = std::conditional_t<FMOE_FUSED_SCHEDULE_PINGPONG != 0,
                                       Pingpong, Cooperative>;
#else
template <class Default> using ScheduleFor = Default;
#endif

/// A kind's layout (nt: B is N x K, K contiguous), source type (void: no C
/// operand; bf16: h loaded as C) and epilogue tree, under its schedule.
template <bool NT, class C, template <class> class TreeOf,
          class Default = Cooperative>
struct TraitsOf {
  static constexpr bool kNT = NT;
  using Schedule = ScheduleFor<Default>;
  using ElementC = C;
  using Tree = TreeOf<Schedule>;
};

template <Kind K> struct KindTraits;
template <> struct KindTraits<Kind::NoneNT> : TraitsOf<true, void, NoneTree> {};
template <>
struct KindTraits<Kind::NoneNN> : TraitsOf<false, void, NoneTree> {};
template <> struct KindTraits<Kind::BiasNT> : TraitsOf<true, void, BiasTree> {};
template <>
struct KindTraits<Kind::BiasGeluNT> : TraitsOf<true, void, BiasGeluTree> {};
template <>
struct KindTraits<Kind::DGeluNN> : TraitsOf<false, Bf16, DGeluTree> {};
template <>
struct KindTraits<Kind::DGradGeluNN> : TraitsOf<false, Bf16, DGradGeluTree> {};
template <> struct KindTraits<Kind::AccNN> : TraitsOf<false, Bf16, AccTree> {};

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
  using S = typename Traits::Schedule;

  using CollectiveEpilogue =
      typename cutlass::epilogue::collective::CollectiveBuilder<
          cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, typename S::Tile,
          typename S::Cluster, cutlass::epilogue::collective::EpilogueTileAuto,
          float, float, ElementC, LayoutC *, kAlign, Bf16, LayoutD *, kAlign,
          typename S::EpilogueSchedule, typename Traits::Tree>::CollectiveOp;

  using CollectiveMainloop =
      typename cutlass::gemm::collective::CollectiveBuilder<
          cutlass::arch::Sm90, cutlass::arch::OpClassTensorOp, Bf16, LayoutA *,
          kAlign, Bf16, LayoutB *, kAlign, float, typename S::Tile,
          typename S::Cluster,
          cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
              sizeof(typename CollectiveEpilogue::SharedStorage))>,
          typename S::KernelSchedule>::CollectiveOp;

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
/// pointers and strides. C is DAct's and DGrad's h (aux), Accumulate's d;
/// the aux-store table holds BiasAct's h destination (aux) or DAct's act(h)
/// destination (actOut, or aux in place); DGrad and Accumulate do not use
/// it.
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
  bool accumulate = args.epilogue == FusedEpilogue::Accumulate;
  t.c[l] = accumulate ? t.d[l] : aux;
  if (args.epilogue == FusedEpilogue::DAct && args.actOut)
    t.aux[l] = static_cast<Bf16 *>(args.actOut) + begin * args.ldact;
  else
    t.aux[l] = aux;
  static_cast<typename G::StrideA *>(t.strideA)[l] =
      leadingStride<typename G::StrideA>(args.lda);
  static_cast<typename G::StrideB *>(t.strideB)[l] =
      leadingStride<typename G::StrideB>(args.nt ? K : N);
  static_cast<typename G::StrideC *>(t.strideC)[l] =
      leadingStride<typename G::StrideC>(accumulate ? args.ldd : args.ldaux);
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
  } else if constexpr (K == Kind::DGradGeluNN || K == Kind::AccNN) {
    // (acc, C, dgelu) and (acc, C, plus): nothing to pass
    fa = {{}, {}, {}};
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
