//===- FMoEOps.td - fmoe operations ------------------------*- tablegen -*-===//
//
// Part of fmoe. Shapes use T for the (dynamic) token count, D = d_model,
// H = d_hidden, E = experts in the layer, L = experts held by this rank,
// K = top_k, R = T*K routed rows (an upper bound on the rows an expert stage
// sees on one rank when the experts are not distributed).
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_DIALECT_FMOE_IR_FMOEOPS_TD
#define FMOE_DIALECT_FMOE_IR_FMOEOPS_TD

include "fmoe/Dialect/FMoE/IR/FMoEDialect.td"
include "fmoe/Dialect/FMoE/IR/FMoEAttrs.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// The whole layer
//===----------------------------------------------------------------------===//

def FMoE_MoeOp : FMoE_Op<"moe", [Pure, AttrSizedOperandSegments]> {
  let summary = "a whole Mixture-of-Experts layer";
  let description = [{
    One MoE layer: `out[t] = sum_k score[t,k] * expert_{idx[t,k]}(x[t])`.
    The gate computes `logits = x * gate_weightᵀ + gate_bias` over all
    `num_experts` experts; `gate` says how the `top_k` experts and their
    scores are chosen (FastMoE's `naive`: top-k of the logits, softmax over the
    k picked; `softmax_topk`; `sigmoid`; `renormalize` rescales the k scores of
    the last two to sum to one). An expert is a two-layer MLP
    `fc2(act(fc1(x)))`; the GLU activations (`swiglu`, `geglu`) take the up
    projection `up` as well: `fc2(act(fc1(x)) * up(x))`.

    Expert weights are stacked per expert and hold the experts of one rank:
    `L = num_experts / world_size` (FastMoE's `num_expert`). Without
    `capacity_factor` the layer is dropless; with it an expert takes at most
    `ceil(capacity_factor * T * top_k / num_experts)` rows and drops the rest.
    `placement`, when present, gives the rank of every expert.

    Example:

    ```mlir
    %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 fc2 %w2 bias %b2
        {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64}
        : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>, tensor<4x32x16xf32>,
           tensor<4x32xf32>, tensor<4x16x32xf32>, tensor<4x16xf32>) -> tensor<?x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input,
                       AnyRankedTensor:$gate_weight,
                       Optional<AnyRankedTensor>:$gate_bias,
                       AnyRankedTensor:$fc1_weight,
                       Optional<AnyRankedTensor>:$fc1_bias,
                       Optional<AnyRankedTensor>:$up_weight,
                       AnyRankedTensor:$fc2_weight,
                       Optional<AnyRankedTensor>:$fc2_bias,
                       I64Attr:$num_experts,
                       I64Attr:$top_k,
                       FMoE_ActivationAttr:$activation,
                       DefaultValuedAttr<FMoE_GateKindAttr, "::mlir::fmoe::GateKind::naive">:$gate,
                       UnitAttr:$renormalize,
                       OptionalAttr<F64Attr>:$capacity_factor,
                       DefaultValuedAttr<I64Attr, "1">:$world_size,
                       OptionalAttr<DenseI64ArrayAttr>:$placement);
  let results = (outs AnyRankedTensor:$output);
  let assemblyFormat = [{
    $input `gate` $gate_weight (`bias` $gate_bias^)?
    `fc1` $fc1_weight (`bias` $fc1_bias^)? (`up` $up_weight^)?
    `fc2` $fc2_weight (`bias` $fc2_bias^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getDModel();
    int64_t getDHidden();
    int64_t getLocalExperts();
  }];
}

//===----------------------------------------------------------------------===//
// Stages
//===----------------------------------------------------------------------===//

def FMoE_GateOp : FMoE_Op<"gate", [Pure]> {
  let summary = "gate logits: x * weightᵀ + bias, in f32";
  let description = [{
    `input: [T, D]`, `weight: [E, D]`, `bias: [E]` → `logits: [T, E] f32`.
    The logits are kept in f32 whatever the storage type.

    Example:

    ```mlir
    %l = fmoe.gate %x, %wg bias %bg
        : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>) -> tensor<?x4xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$weight,
                       Optional<AnyRankedTensor>:$bias);
  let results = (outs AnyRankedTensor:$logits);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def FMoE_RouteOp : FMoE_Op<"route", [Pure]> {
  let summary = "top-k expert choice and routing scores";
  let description = [{
    `logits: [T, E] f32` → `indices: [T, K] i32`, `scores: [T, K] f32`.
    Ties are broken towards the lower expert id; slot 0 holds the best
    expert.

    Example:

    ```mlir
    %i, %s = fmoe.route %l {gate = #fmoe<gate naive>, top_k = 2 : i64}
        : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$logits, I64Attr:$top_k,
                       DefaultValuedAttr<FMoE_GateKindAttr, "::mlir::fmoe::GateKind::naive">:$gate,
                       UnitAttr:$renormalize);
  let results = (outs AnyRankedTensor:$indices, AnyRankedTensor:$scores);
  let assemblyFormat = "$logits attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def FMoE_GateRouteOp : FMoE_Op<"gate_route", [Pure]> {
  let summary = "fused gate, route and per-expert count";
  let description = [{
    `fmoe.gate` followed by `fmoe.route`, plus the number of rows each expert
    receives (`counts: [E] i32`), in one kernel. Produced by `--fmoe-fuse`.

    Example:

    ```mlir
    %l, %i, %s, %c = fmoe.gate_route %x, %wg bias %bg {top_k = 2 : i64}
        : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>)
        -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$weight,
                       Optional<AnyRankedTensor>:$bias, I64Attr:$top_k,
                       DefaultValuedAttr<FMoE_GateKindAttr, "::mlir::fmoe::GateKind::naive">:$gate,
                       UnitAttr:$renormalize);
  let results = (outs AnyRankedTensor:$logits, AnyRankedTensor:$indices,
                      AnyRankedTensor:$scores, AnyRankedTensor:$counts);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def FMoE_DispatchOp : FMoE_Op<"dispatch", [Pure]> {
  let summary = "group the routed (token, slot) pairs by expert";
  let description = [{
    `indices: [T, K] i32` → `offsets: [E+1] i32` (start row of each expert
    group, `offsets[E]` = rows in use), `slot_pos: [T, K] i32` (the row of
    every (token, slot), -1 when dropped) and `token_of: [T*K] i32` (the token
    of every row, -1 past the rows in use). Groups follow `expert_order`
    (group g holds expert `expert_order[g]`; identity when absent), which
    `--fmoe-place-experts` sets so that each rank's experts are contiguous.
    `counts`, when given, are the per-expert counts already computed by a
    fused gate. Everything stays on the device: no host synchronisation.

    Example:

    ```mlir
    %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
        : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$indices, Optional<AnyRankedTensor>:$counts,
                       I64Attr:$num_experts, OptionalAttr<F64Attr>:$capacity_factor,
                       OptionalAttr<DenseI64ArrayAttr>:$expert_order);
  let results = (outs AnyRankedTensor:$offsets, AnyRankedTensor:$slot_pos,
                      AnyRankedTensor:$token_of);
  let assemblyFormat = [{
    $indices (`counts` $counts^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def FMoE_GatherOp : FMoE_Op<"gather", [Pure]> {
  let summary = "copy each token's row to its routed rows";
  let description = [{
    `input: [T, D]`, `token_of: [R] i32` → `rows: [R, D]` with
    `rows[r] = input[token_of[r]]` (zero where `token_of[r] = -1`).

    Example:

    ```mlir
    %r = fmoe.gather %x, %t : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$token_of);
  let results = (outs AnyRankedTensor:$rows);
  let assemblyFormat = "$input `,` $token_of attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def FMoE_ExpertOp : FMoE_Op<"expert", [Pure, AttrSizedOperandSegments]> {
  let summary = "the expert MLPs over rows grouped by expert";
  let description = [{
    `rows: [R, D]` grouped by `offsets: [G+1] i32`. Groups are expert-major:
    local expert `l` (of `L`, the leading dimension of the weights) owns
    groups `[l*S, (l+1)*S)` with `S = G / L` (`S = 1` on one rank, one group
    per source rank after an all-to-all).
    `fc1_weight: [L, H, D]`, `fc1_bias: [L, H]`, `up_weight: [L, H, D]` (GLU
    forms only), `fc2_weight: [L, D, H]`, `fc2_bias: [L, D]`.
    Results: `y: [R, D]` and the pre-activations `h: [R, H]` (`[R, 2H]` for
    GLU forms: fc1 then up), kept for the backward program, and optionally
    (non-GLU forms) the activations `act = act(h): [R, H]`, the second GEMM's
    operand, kept too when the backward should not compute them again
    (`--fmoe-generate-backward` decides).

    Example:

    ```mlir
    %y, %h = fmoe.expert %r, %o fc1 %w1 bias %b1 fc2 %w2 bias %b2
        {activation = #fmoe<activation gelu>}
        : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x32xf32>,
           tensor<4x16x32xf32>, tensor<4x16xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$rows, AnyRankedTensor:$offsets,
                       AnyRankedTensor:$fc1_weight, Optional<AnyRankedTensor>:$fc1_bias,
                       Optional<AnyRankedTensor>:$up_weight,
                       AnyRankedTensor:$fc2_weight, Optional<AnyRankedTensor>:$fc2_bias,
                       FMoE_ActivationAttr:$activation);
  let results = (outs AnyRankedTensor:$y, AnyRankedTensor:$h,
                      Optional<AnyRankedTensor>:$act);
  let assemblyFormat = [{
    $rows `,` $offsets `fc1` $fc1_weight (`bias` $fc1_bias^)? (`up` $up_weight^)?
    `fc2` $fc2_weight (`bias` $fc2_bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def FMoE_FusedExpertOp : FMoE_Op<"fused_expert", [Pure, AttrSizedOperandSegments]> {
  let summary = "gather, expert MLPs and weighted combine in two grouped GEMMs";
  let description = [{
    `fmoe.gather` + `fmoe.expert` + `fmoe.combine` fused: the first grouped
    GEMM loads its operand rows through `token_of`, its epilogue adds the bias
    and applies the activation; the second GEMM's epilogue adds the bias,
    multiplies by the routing score and adds the row into `out[token]`.
    Results: `out: [T, D]`, and `h`, `y` (and `act` when the unfused
    `fmoe.expert` had it) as `fmoe.expert` returns them (kept for the
    backward program). Produced by `--fmoe-fuse`.

    Example:

    ```mlir
    %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2
        {activation = #fmoe<activation relu>}
        : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>,
           tensor<4x32x16xf32>, tensor<4x16x32xf32>)
        -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$token_of,
                       AnyRankedTensor:$offsets, AnyRankedTensor:$slot_pos,
                       AnyRankedTensor:$scores,
                       AnyRankedTensor:$fc1_weight, Optional<AnyRankedTensor>:$fc1_bias,
                       Optional<AnyRankedTensor>:$up_weight,
                       AnyRankedTensor:$fc2_weight, Optional<AnyRankedTensor>:$fc2_bias,
                       FMoE_ActivationAttr:$activation);
  let results = (outs AnyRankedTensor:$output, AnyRankedTensor:$h, AnyRankedTensor:$y,
                      Optional<AnyRankedTensor>:$act);
  let assemblyFormat = [{
    $input `,` $token_of `,` $offsets `,` $slot_pos `,` $scores
    `fc1` $fc1_weight (`bias` $fc1_bias^)? (`up` $up_weight^)?
    `fc2` $fc2_weight (`bias` $fc2_bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def FMoE_CombineOp : FMoE_Op<"combine", [Pure]> {
  let summary = "un-permute the expert rows and sum them weighted by the scores";
  let description = [{
    `y: [R, D]`, `slot_pos: [T, K] i32`, `scores: [T, K] f32` →
    `out: [T, D]`, `out[t] = sum_k scores[t,k] * y[slot_pos[t,k]]`; dropped
    slots (-1) contribute zero.

    Example:

    ```mlir
    %out = fmoe.combine %y, %p, %s
        : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$y, AnyRankedTensor:$slot_pos,
                       AnyRankedTensor:$scores);
  let results = (outs AnyRankedTensor:$output);
  let assemblyFormat = "$y `,` $slot_pos `,` $scores attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def FMoE_AllToAllOp : FMoE_Op<"all_to_all", [DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "exchange grouped rows with variable counts over a device grid";
  let description = [{
    Sends every expert group of `input` to the rank that holds the expert and
    receives the groups of this rank's experts from every rank. `placement[e]`
    is the rank of expert `e`; every rank holds `L = E / world_size` experts.
    `grid` names a one-dimensional `shard.grid` of `world_size` devices.

    Forward (default): `input: [R, D]` grouped by `offsets: [E+1]` in
    placement order → `output: [W*R, D]` (an upper bound) grouped by
    `out_offsets: [L*W+1]`, expert-major, source-rank-minor (FastMoE's
    receive layout). With `reverse` the same exchange runs backwards: from
    the `[L*W+1]` layout back to the `[E+1]` one.

    The counts travel first (one small all-to-all), then the rows; the
    counts stay on the device.

    `shadow` lists experts replicated on every rank (`fmoe.replicate`):
    their groups come last in `offsets` and stay on this rank. The expert
    side then has `L + S` local experts (`S` shadowed ones after the `L`
    own ones), `out_offsets: [(L+S)*W+1]`, and a shadowed expert's rows are
    its group from this rank only.

    Example:

    ```mlir
    shard.grid @ranks(shape = 2)
    %r, %ro = fmoe.all_to_all %rows, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
        : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$offsets,
                       FlatSymbolRefAttr:$grid, DenseI64ArrayAttr:$placement,
                       UnitAttr:$reverse, OptionalAttr<DenseI64ArrayAttr>:$shadow);
  let results = (outs AnyRankedTensor:$output, AnyRankedTensor:$out_offsets);
  let assemblyFormat = [{
    $input `,` $offsets `on` $grid attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Experts held by each rank (placement size / world size).
    int64_t getLocalExperts(int64_t worldSize);
  }];
}

def FMoE_ReplicateOp : FMoE_Op<"replicate", [DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "give every rank a copy of the shadowed experts' parameters";
  let description = [{
    `input: [L, ...]` (one expert parameter of this rank's `L` experts) →
    `output: [L+S, ...]`: the `L` own experts, then one copy of each
    shadowed expert `shadow[j]`, broadcast from the rank that holds it
    (`placement`; its slot there is its rank among that rank's experts by
    ascending id). Inserted by `--fmoe-place-experts` for FasterMoE's
    shadowing: the rows of a hot expert are computed where they were
    routed, and its parameters travel instead.

    Example:

    ```mlir
    shard.grid @ranks(shape = 2)
    %w = fmoe.replicate %w1 on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
        : (tensor<2x32x16xf32>) -> tensor<3x32x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$input, FlatSymbolRefAttr:$grid,
                       DenseI64ArrayAttr:$placement, DenseI64ArrayAttr:$shadow);
  let results = (outs AnyRankedTensor:$output);
  let assemblyFormat = [{
    $input `on` $grid attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def FMoE_ReplicateGradOp : FMoE_Op<"replicate_grad", [DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "sum the shadowed copies' gradients into their owners";
  let description = [{
    The gradient of `fmoe.replicate`: `grad: [L+S, ...]` → `output: [L, ...]`,
    the own experts' gradients, where the owner of `shadow[j]` adds the sum
    over every rank of copy `j`'s gradient into that expert's slot.

    Example:

    ```mlir
    %dw1 = fmoe.replicate_grad %dw on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
        : (tensor<3x32x16xf32>) -> tensor<2x32x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$grad, FlatSymbolRefAttr:$grid,
                       DenseI64ArrayAttr:$placement, DenseI64ArrayAttr:$shadow);
  let results = (outs AnyRankedTensor:$output);
  let assemblyFormat = [{
    $grad `on` $grid attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Backward stages (built by --fmoe-generate-backward)
//===----------------------------------------------------------------------===//

def FMoE_CombineGradOp : FMoE_Op<"combine_grad", [Pure]> {
  let summary = "gradients of fmoe.combine";
  let description = [{
    `grad_out: [T, D]`, `y: [R, D]`, `slot_pos: [T, K]`, `scores: [T, K]` →
    `grad_y: [R, D]` (`grad_y[slot_pos[t,k]] = scores[t,k] * grad_out[t]`)
    and `grad_scores: [T, K] f32` (`<grad_out[t], y[slot_pos[t,k]]>`).

    Example:

    ```mlir
    %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
        : (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>)
        -> (tensor<?x16xf32>, tensor<?x2xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$grad_output, AnyRankedTensor:$y,
                       AnyRankedTensor:$slot_pos, AnyRankedTensor:$scores);
  let results = (outs AnyRankedTensor:$grad_y, AnyRankedTensor:$grad_scores);
  let assemblyFormat = [{
    $grad_output `,` $y `,` $slot_pos `,` $scores attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def FMoE_ExpertGradOp : FMoE_Op<"expert_grad", [Pure, AttrSizedOperandSegments,
                                                 AttrSizedResultSegments]> {
  let summary = "gradients of fmoe.expert";
  let description = [{
    From `grad_y: [R, D]`, the forward's `rows`, `offsets`,
    pre-activations `h` and, when the forward kept them, activations
    `act: [R, H]` (non-GLU forms; otherwise the backward computes them from
    `h`): `grad_rows: [R, D]` and the gradient of every weight
    and bias (bias gradients only where the forward had the bias: the
    optional results are named in the type list), as grouped GEMMs over the
    same groups.

    Example:

    ```mlir
    %dr, %dw1, %db1, %dw2, %db2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
        {activation = #fmoe<activation gelu>}
        : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>,
          tensor<4x32x16xf32>, tensor<4x16x32xf32>
        -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
           fc1_bias tensor<4x32xf32> fc2_bias tensor<4x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$grad_y, AnyRankedTensor:$rows,
                       AnyRankedTensor:$offsets, AnyRankedTensor:$h,
                       Optional<AnyRankedTensor>:$act,
                       AnyRankedTensor:$fc1_weight, Optional<AnyRankedTensor>:$up_weight,
                       AnyRankedTensor:$fc2_weight,
                       FMoE_ActivationAttr:$activation);
  let results = (outs AnyRankedTensor:$grad_rows, AnyRankedTensor:$grad_fc1_weight,
                      Optional<AnyRankedTensor>:$grad_fc1_bias,
                      Optional<AnyRankedTensor>:$grad_up_weight,
                      AnyRankedTensor:$grad_fc2_weight,
                      Optional<AnyRankedTensor>:$grad_fc2_bias);
  // The optional results are named in the type list, so the parser knows
  // which ones are present.
  let assemblyFormat = [{
    $grad_y `,` $rows `,` $offsets `,` $h (`act` $act^)? `fc1` $fc1_weight (`up` $up_weight^)?
    `fc2` $fc2_weight attr-dict `:` type(operands) `->` type($grad_rows) `,`
    type($grad_fc1_weight) `,` type($grad_fc2_weight)
    (`fc1_bias` type($grad_fc1_bias)^)? (`up` type($grad_up_weight)^)?
    (`fc2_bias` type($grad_fc2_bias)^)?
  }];
  let hasVerifier = 1;
}

def FMoE_GatherGradOp : FMoE_Op<"gather_grad", [Pure]> {
  let summary = "gradient of fmoe.gather: sum each token's routed rows";
  let description = [{
    `grad_rows: [R, D]`, `slot_pos: [T, K]` → `grad_input: [T, D]`,
    `grad_input[t] = sum_k grad_rows[slot_pos[t,k]]` (dropped slots skipped).

    Example:

    ```mlir
    %dx = fmoe.gather_grad %dr, %p
        : (tensor<?x16xf32>, tensor<?x2xi32>) -> tensor<?x16xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$grad_rows, AnyRankedTensor:$slot_pos);
  let results = (outs AnyRankedTensor:$grad_input);
  let assemblyFormat = "$grad_rows `,` $slot_pos attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def FMoE_RouteGradOp : FMoE_Op<"route_grad", [Pure]> {
  let summary = "gradient of fmoe.route with respect to the logits";
  let description = [{
    `grad_scores: [T, K]`, `logits: [T, E]`, `indices: [T, K]`,
    `scores: [T, K]` → `grad_logits: [T, E] f32`. The choice of experts is
    piecewise constant, so only the scores carry gradient.

    Example:

    ```mlir
    %dl = fmoe.route_grad %ds, %l, %i, %s {gate = #fmoe<gate naive>}
        : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>)
        -> tensor<?x4xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$grad_scores, AnyRankedTensor:$logits,
                       AnyRankedTensor:$indices, AnyRankedTensor:$scores,
                       DefaultValuedAttr<FMoE_GateKindAttr, "::mlir::fmoe::GateKind::naive">:$gate,
                       UnitAttr:$renormalize);
  let results = (outs AnyRankedTensor:$grad_logits);
  let assemblyFormat = [{
    $grad_scores `,` $logits `,` $indices `,` $scores attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def FMoE_GateGradOp : FMoE_Op<"gate_grad", [Pure]> {
  let summary = "gradients of fmoe.gate, accumulated into the input gradient";
  let description = [{
    `grad_logits: [T, E] f32`, `input: [T, D]`, `weight: [E, D]`,
    `grad_input_acc: [T, D]` → `grad_input = grad_input_acc + grad_logits *
    weight`, `grad_weight = grad_logitsᵀ * input`, and `grad_bias` (the
    column sums of `grad_logits`) when `bias` is set.

    Example:

    ```mlir
    %dx, %dwg, %dbg = fmoe.gate_grad %dl, %x, %wg, %dxe {bias}
        : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>)
        -> (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>)
    ```
  }];
  let arguments = (ins AnyRankedTensor:$grad_logits, AnyRankedTensor:$input,
                       AnyRankedTensor:$weight, AnyRankedTensor:$grad_input_acc,
                       UnitAttr:$bias);
  let results = (outs AnyRankedTensor:$grad_input, AnyRankedTensor:$grad_weight,
                      Optional<AnyRankedTensor>:$grad_bias);
  let assemblyFormat = [{
    $grad_logits `,` $input `,` $weight `,` $grad_input_acc attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

#endif // FMOE_DIALECT_FMOE_IR_FMOEOPS_TD
