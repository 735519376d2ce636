//===- Passes.td - fmoe passes -----------------------------*- tablegen -*-===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_TRANSFORMS_PASSES_TD
#define FMOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def FMoEDecompose : Pass<"fmoe-decompose", "ModuleOp"> {
  let summary = "split each fmoe.moe into gate, route, dispatch, gather, expert and combine";
  let description = [{
    Before:

    ```mlir
    %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>,
        num_experts = 4 : i64, top_k = 2 : i64} : (...) -> tensor<?x16xf32>
    ```

    After:

    ```mlir
    %l = fmoe.gate %x, %wg : (...) -> tensor<?x4xf32>
    %i, %s = fmoe.route %l {top_k = 2 : i64} : ...
    %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64} : ...
    %r = fmoe.gather %x, %t : ...
    %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>} : ...
    %out = fmoe.combine %y, %p, %s : ...
    ```

    The layer's `world_size` and `placement` are kept as `fmoe.world_size`
    and `fmoe.placement` on the dispatch for `--fmoe-place-experts`.
  }];
  let dependentDialects = ["::mlir::fmoe::FMoEDialect"];
}

def FMoEPlaceExperts : Pass<"fmoe-place-experts", "ModuleOp"> {
  let summary = "decide which rank holds which expert and insert the all-to-alls";
  let description = [{
    For each dispatch of a layer with `world_size` > 1, chooses a placement
    (expert → rank) with the given strategy, orders the dispatch groups so
    that each rank's experts are contiguous, declares a one-dimensional
    `shard.grid`, and wraps the expert stage in an `fmoe.all_to_all` of the
    routed rows there and back. With one rank it inserts nothing.

    Strategies: `contiguous` (FastMoE's: expert e on rank e / L),
    `round-robin` (expert e on rank e mod W) and `balanced` (greedy by the
    per-expert load read from `load-profile`: one number per expert,
    whitespace separated, heaviest first onto the least-loaded rank that
    still has room). A placement already on the layer is kept.

    Shadowing (FasterMoE's, decided here once): the experts in `shadow`, or
    the `shadow-hot` most loaded ones of `load-profile`, are replicated on
    every rank. Their groups come last in the dispatch and stay on the rank
    that routed them; an `fmoe.replicate` of every expert parameter gives
    the expert stage `L + S` experts (the `S` copies broadcast from their
    owners), and the backward's `fmoe.replicate_grad` sums the copies'
    gradients into the owners'. Balanced placement then counts a shadowed
    expert's load as spread over the ranks (zero for its owner).

    Before (world_size = 2):

    ```mlir
    %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64, fmoe.world_size = 2 : i64} : ...
    %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {...} : ...
    ```

    After:

    ```mlir
    shard.grid @fmoe_grid(shape = 2)
    %o, %p, %t = fmoe.dispatch %i {expert_order = array<i64: 0, 1, 2, 3>, ...} : ...
    %rr, %ro = fmoe.all_to_all %r, %o on @fmoe_grid {placement = array<i64: 0, 0, 1, 1>} : ...
    %y0, %h = fmoe.expert %rr, %ro fc1 %w1 fc2 %w2 {...} : ...
    %y, %yo = fmoe.all_to_all %y0, %ro on @fmoe_grid {placement = ..., reverse} : ...
    ```
  }];
  let dependentDialects = ["::mlir::fmoe::FMoEDialect", "::mlir::shard::ShardDialect"];
  let options = [
    Option<"worldSize", "world-size", "int64_t", /*default=*/"0",
           "number of ranks (0: the layer's own world_size)">,
    Option<"strategy", "strategy", "std::string", /*default=*/"\"contiguous\"",
           "contiguous | round-robin | balanced">,
    Option<"loadProfile", "load-profile", "std::string", /*default=*/"\"\"",
           "file with one load figure per expert (for strategy=balanced)">,
    Option<"shadow", "shadow", "std::string", /*default=*/"\"\"",
           "experts to replicate on every rank, comma separated">,
    Option<"shadowHot", "shadow-hot", "int64_t", /*default=*/"0",
           "replicate the N most loaded experts of load-profile on every rank">
  ];
}

def FMoEFuse : Pass<"fmoe-fuse", "ModuleOp"> {
  let summary = "fuse the stages into the forms the backends execute";
  let description = [{
    - `fmoe.gate` + `fmoe.route` → `fmoe.gate_route`, which also counts the
      rows per expert; a dispatch of those indices takes the counts.
    - `fmoe.gather` + `fmoe.expert` + `fmoe.combine` → `fmoe.fused_expert`
      (the gather becomes the first grouped GEMM's operand load, the
      activation its epilogue, the weighting and un-permutation the second
      GEMM's epilogue), when `gather-combine` is set and the expert stage is
      not across ranks.

    Before:

    ```mlir
    %l = fmoe.gate %x, %wg : ...
    %i, %s = fmoe.route %l {top_k = 2 : i64} : ...
    %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64} : ...
    ```

    After:

    ```mlir
    %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64} : ...
    %o, %p, %t = fmoe.dispatch %i counts %c {num_experts = 4 : i64} : ...
    ```
  }];
  let dependentDialects = ["::mlir::fmoe::FMoEDialect"];
  let options = [
    Option<"gatherCombine", "gather-combine", "bool", /*default=*/"true",
           "fuse gather and combine into the expert GEMMs">
  ];
}

def FMoEGenerateBackward : Pass<"fmoe-generate-backward", "ModuleOp"> {
  let summary = "derive each layer function's backward function";
  let description = [{
    For every `func.func` holding decomposed fmoe stages (and not yet
    differentiated), builds `<name>_backward` in reverse order from the
    `*_grad` ops: it takes the gradient of the output, the forward's
    arguments and the values the forward saves, and returns the gradient of
    every argument (input, gate weight and bias, expert weights and biases).
    The forward function returns the saved values after its output; it is
    marked `fmoe.backward = @<name>_backward` and `fmoe.num_saved`.
    The gathered rows are recomputed in the backward (one gather) rather
    than saved, unless the experts are fine-grained (d_hidden <= d_model),
    where the gather weighs more against the expert GEMMs (then
    --fmoe-fuse leaves the gather out of the GEMM: it runs once, and the
    rows are saved). With `keep-activations` (off by default), a bf16 GeLU
    expert MLP with both biases also keeps its activations act(h) (an extra
    result `act` of `fmoe.expert`, saved): its backward then applies
    gelu'(h) in the epilogue of the da GEMM and reads act(h) for the fc2
    weight gradient instead of recomputing it. That trades memory (one more
    [rows, d_hidden] buffer held from the forward to the end of the
    backward) for a pass over h (docs/fused-gemm.md).

    Before:

    ```mlir
    func.func @layer(%x, %wg, %w1, %w2) -> tensor<?x16xf32> { ...stages... }
    ```

    After:

    ```mlir
    func.func @layer(...) -> (tensor<?x16xf32>, <saved>...) attributes {fmoe.backward = @layer_backward, ...}
    func.func @layer_backward(%dout, %x, %wg, %w1, %w2, <saved>...) -> (dx, dwg, dw1, dw2)
    ```
  }];
  let options = [
    Option<"keepActivations", "keep-activations", "bool", /*default=*/"false",
           "keep the activations of bf16 GeLU experts (with both biases) "
           "for the backward, whose da GEMM then fuses gelu'(h) (more "
           "memory, one pass less)">,
  ];
  let dependentDialects = ["::mlir::fmoe::FMoEDialect", "::mlir::func::FuncDialect"];
}

def FMoELowerToRuntime : Pass<"fmoe-lower-to-runtime", "ModuleOp"> {
  let summary = "lower fmoe stages to GPU kernels and runtime library calls on buffers";
  let description = [{
    Rewrites every layer function (forward and backward) in
    destination-passing style on flat buffers: `(%T: index, inputs...,
    outputs...) -> ()` with `memref<?xT>` arguments. Each stage becomes
    kernels in `gpu.module @fmoe_kernels` (gate/route/count, offsets, scatter,
    gather, bias and activation epilogues, combine and their gradients),
    launched with `gpu.launch_func`, and calls to the runtime library
    (`fmoe_rt_grouped_gemm*`, `fmoe_rt_all_to_all*`, `fmoe_rt_memset*`).
    Every launch and call carries `fmoe.op`, the stage it implements, so a
    backend can also run it with a reference implementation.

    Before:

    ```mlir
    func.func @layer(%x: tensor<?x16xf32>, ...) -> (tensor<?x16xf32>, ...) {
      %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64} : ...
      ...
    }
    ```

    After:

    ```mlir
    func.func @layer(%T: index {fmoe.tokens}, %x: memref<?xf32> {fmoe.buffer = ...}, ...) {
      call @fmoe_rt_memset(%counts) {byte = 0 : i64, fmoe.op = "fmoe.gate_route"} : ...
      gpu.launch_func @fmoe_kernels::@layer_gate_route blocks in (...) threads in (...)
          args(%x : memref<?xf32>, ..., %T : index) {fmoe.kernel = "gate_route", ...}
      ...
    }
    gpu.module @fmoe_kernels { gpu.func @layer_gate_route(...) kernel { ... } }
    ```
  }];
  let dependentDialects = ["::mlir::func::FuncDialect", "::mlir::gpu::GPUDialect",
                           "::mlir::memref::MemRefDialect", "::mlir::arith::ArithDialect",
                           "::mlir::scf::SCFDialect", "::mlir::math::MathDialect",
                           "::mlir::vector::VectorDialect"];
  let options = [
    Option<"chip", "chip", "std::string", /*default=*/"\"sm_90\"", "target GPU">,
    Option<"keepSaved", "keep-saved", "bool", /*default=*/"false",
           "never write over the backward's saved inputs (so that a graph can "
           "be back-propagated more than once), at one buffer more of peak "
           "memory">,
    Option<"fusedEpilogues", "fused-epilogues", "bool", /*default=*/"true",
           "bf16 experts with both biases: the biases go into the grouped "
           "GEMMs' epilogues (fmoe_rt_grouped_gemm_bias), and with GeLU "
           "from d_model 2048 the activation and its derivative too "
           "(fmoe_rt_grouped_gemm_bias_act, fmoe_rt_grouped_gemm_dact_act)">
  ];
}

#endif // FMOE_TRANSFORMS_PASSES_TD
