// RUN: fmoe-opt %s -split-input-file -verify-diagnostics

// One chunk per verifier diagnostic of lib/Dialect/FMoE/IR/FMoEOps.cpp, for
// every op that can reach it. Sizes: d_model 16, d_hidden 32, E = 4 experts,
// top_k 2, so offsets hold E + 1 = 5 entries.
//
// Diagnostics of FMoEOps.cpp that no input can reach (the operands are
// AnyRankedTensor, so ODS rejects anything else first):
//   - ShapeChecker::check "expects <name> to be a ranked tensor";
//   - ShapeChecker::check "... to have element type f32, bf16 or f16" (every
//     caller passes an element type);
//   - checkPlacement "expects placement to give a rank for each of the N
//     experts" from fmoe.all_to_all (its expert count is the placement size).

// ===== fmoe.moe =====

func.func @moe_input_rank(%x: tensor<16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects input of rank 2 ([tokens, d_model]), got 'tensor<16xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<16xf32>
  return
}

// -----

func.func @moe_input_i32(%x: tensor<?x16xi32>, %wg: tensor<4x16xi32>, %w1: tensor<4x32x16xi32>, %w2: tensor<4x16x32xi32>) {
  // expected-error@+1 {{'fmoe.moe' op expects input to have element type f32, bf16 or f16, got 'tensor<?x16xi32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xi32>, tensor<4x16xi32>, tensor<4x32x16xi32>, tensor<4x16x32xi32>) -> tensor<?x16xi32>
  return
}

// -----

func.func @moe_input_f64(%x: tensor<?x16xf64>, %wg: tensor<4x16xf64>, %w1: tensor<4x32x16xf64>, %w2: tensor<4x16x32xf64>) {
  // expected-error@+1 {{'fmoe.moe' op expects input to have element type f32, bf16 or f16, got 'tensor<?x16xf64>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf64>, tensor<4x16xf64>, tensor<4x32x16xf64>, tensor<4x16x32xf64>) -> tensor<?x16xf64>
  return
}

// -----

func.func @moe_dynamic_d_model(%x: tensor<?x?xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects a static d_model (dimension 1 of input)}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x?xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x?xf32>
  return
}

// -----

func.func @moe_no_experts(%x: tensor<?x16xf32>, %wg: tensor<0x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects num_experts >= 1, got 0}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 0 : i64, top_k = 1 : i64}
      : (tensor<?x16xf32>, tensor<0x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_top_k_zero(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects 1 <= top_k <= num_experts (4), got 0}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 0 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_top_k_too_large(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects 1 <= top_k <= num_experts (4), got 5}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 5 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_renormalize_naive(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects renormalize only with the softmax_topk or sigmoid gates (the naive gate's scores already sum to one)}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64, renormalize}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_capacity_zero(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects capacity_factor > 0, got 0}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64, capacity_factor = 0.0}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_capacity_negative(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects capacity_factor > 0, got -1.5}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64, capacity_factor = -1.5}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_world_size_zero(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects world_size >= 1, got 0}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64, world_size = 0 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_world_size_not_dividing(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<1x32x16xf32>, %w2: tensor<1x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects num_experts (4) to be a multiple of world_size (3)}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64, world_size = 3 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<1x32x16xf32>, tensor<1x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_gate_weight_f16(%x: tensor<?x16xf32>, %wg: tensor<4x16xf16>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects gate_weight to have element type 'f32', got 'tensor<4x16xf16>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf16>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_gate_weight_experts(%x: tensor<?x16xf32>, %wg: tensor<3x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects gate_weight of shape [4, 16], got 'tensor<3x16xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<3x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_gate_weight_transposed(%x: tensor<?x16xf32>, %wg: tensor<16x4xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects gate_weight of shape [4, 16], got 'tensor<16x4xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<16x4xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_gate_bias_shape(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects gate_bias of shape [4], got 'tensor<16xf32>'}}
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_fc1_dynamic(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x?x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects fc1_weight of static shape [experts, d_hidden, d_model], got 'tensor<4x?x16xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x?x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_fc1_rank(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects fc1_weight of static shape [experts, d_hidden, d_model], got 'tensor<32x16xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_fc1_no_expert(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<0x32x16xf32>, %w2: tensor<0x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects at least one expert in fc1_weight}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<0x32x16xf32>, tensor<0x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_fc1_d_model(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x8xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects fc1_weight of shape [4, 32, 16], got 'tensor<4x32x8xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x8xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_fc1_bf16(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects fc1_weight to have element type 'f32', got 'tensor<4x32x16xbf16>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xbf16>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_fc2_shape(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x32x16xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects fc2_weight of shape [4, 16, 32], got 'tensor<4x32x16xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_fc2_f16(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf16>) {
  // expected-error@+1 {{'fmoe.moe' op expects fc2_weight to have element type 'f32', got 'tensor<4x16x32xf16>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf16>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_fc1_bias_shape(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %b1: tensor<4x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects fc1_bias of shape [4, 32], got 'tensor<4x16xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 bias %b1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_fc2_bias_shape(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>, %b2: tensor<4x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects fc2_bias of shape [4, 16], got 'tensor<4x32xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 bias %b2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_swiglu_without_up(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects an up projection (up_weight) with the swiglu activation}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation swiglu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_geglu_without_up(%x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>, %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>) {
  // expected-error@+1 {{'fmoe.moe' op expects an up projection (up_weight) with the geglu activation}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation geglu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> tensor<?x16xbf16>
  return
}

// -----

func.func @moe_gelu_with_up(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects no up projection with the gelu activation (only swiglu and geglu take one)}}
  %y = fmoe.moe %x gate %wg fc1 %w1 up %wu fc2 %w2 {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_up_shape(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x64x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects up_weight of shape [4, 32, 16], got 'tensor<4x64x16xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 up %wu fc2 %w2 {activation = #fmoe<activation swiglu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x64x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_local_experts(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects the expert weights to hold num_experts / world_size = 2 experts, got 4}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64, world_size = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_local_experts_single_rank(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<2x32x16xf32>, %w2: tensor<2x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects the expert weights to hold num_experts / world_size = 4 experts, got 2}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_placement_length(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<2x32x16xf32>, %w2: tensor<2x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects placement to give a rank for each of the 4 experts, got 3}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64, world_size = 2 : i64, placement = array<i64: 0, 1, 0>}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_placement_rank_range(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<2x32x16xf32>, %w2: tensor<2x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects placement ranks in [0, 2), expert 3 is on rank 2}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64, world_size = 2 : i64, placement = array<i64: 0, 1, 0, 2>}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_placement_negative_rank(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<2x32x16xf32>, %w2: tensor<2x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects placement ranks in [0, 2), expert 0 is on rank -1}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64, world_size = 2 : i64, placement = array<i64: -1, 1, 0, 1>}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_placement_unbalanced(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<2x32x16xf32>, %w2: tensor<2x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects every rank to hold 2 experts, rank 0 holds 3}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64, world_size = 2 : i64, placement = array<i64: 0, 0, 0, 1>}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @moe_output_d_model(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects output of shape [T, 16], got 'tensor<?x32xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @moe_output_tokens(%x: tensor<8x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects output of shape [T, 16], got 'tensor<4x16xf32>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<8x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<4x16xf32>
  return
}

// -----

func.func @moe_output_bf16(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.moe' op expects output to have element type 'f32', got 'tensor<?x16xbf16>'}}
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xbf16>
  return
}

// -----

// ===== fmoe.gate =====

func.func @gate_input_rank(%x: tensor<2x8x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate' op expects input of rank 2 ([tokens, d_model]), got 'tensor<2x8x16xf32>'}}
  %l = fmoe.gate %x, %wg : (tensor<2x8x16xf32>, tensor<4x16xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @gate_input_i32(%x: tensor<?x16xi32>, %wg: tensor<4x16xi32>) {
  // expected-error@+1 {{'fmoe.gate' op expects input to have element type f32, bf16 or f16, got 'tensor<?x16xi32>'}}
  %l = fmoe.gate %x, %wg : (tensor<?x16xi32>, tensor<4x16xi32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @gate_dynamic_d_model(%x: tensor<?x?xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate' op expects a static d_model (dimension 1 of input)}}
  %l = fmoe.gate %x, %wg : (tensor<?x?xf32>, tensor<4x16xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @gate_weight_rank(%x: tensor<?x16xf32>, %wg: tensor<16xf32>) {
  // expected-error@+1 {{'fmoe.gate' op expects weight of static shape [experts, d_model], got 'tensor<16xf32>'}}
  %l = fmoe.gate %x, %wg : (tensor<?x16xf32>, tensor<16xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @gate_weight_dynamic_experts(%x: tensor<?x16xf32>, %wg: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate' op expects weight of static shape [experts, d_model], got 'tensor<?x16xf32>'}}
  %l = fmoe.gate %x, %wg : (tensor<?x16xf32>, tensor<?x16xf32>) -> tensor<?x?xf32>
  return
}

// -----

func.func @gate_weight_f16(%x: tensor<?x16xf32>, %wg: tensor<4x16xf16>) {
  // expected-error@+1 {{'fmoe.gate' op expects weight to have element type 'f32', got 'tensor<4x16xf16>'}}
  %l = fmoe.gate %x, %wg : (tensor<?x16xf32>, tensor<4x16xf16>) -> tensor<?x4xf32>
  return
}

// -----

func.func @gate_weight_d_model(%x: tensor<?x16xf32>, %wg: tensor<4x8xf32>) {
  // expected-error@+1 {{'fmoe.gate' op expects weight of shape [4, 16], got 'tensor<4x8xf32>'}}
  %l = fmoe.gate %x, %wg : (tensor<?x16xf32>, tensor<4x8xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @gate_bias_shape(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<8xf32>) {
  // expected-error@+1 {{'fmoe.gate' op expects bias of shape [4], got 'tensor<8xf32>'}}
  %l = fmoe.gate %x, %wg bias %bg : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<8xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @gate_bias_bf16(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<4xbf16>) {
  // expected-error@+1 {{'fmoe.gate' op expects bias to have element type 'f32', got 'tensor<4xbf16>'}}
  %l = fmoe.gate %x, %wg bias %bg : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xbf16>) -> tensor<?x4xf32>
  return
}

// -----

func.func @gate_logits_bf16(%x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>) {
  // expected-error@+1 {{'fmoe.gate' op expects logits to have element type 'f32', got 'tensor<?x4xbf16>'}}
  %l = fmoe.gate %x, %wg : (tensor<?x16xbf16>, tensor<4x16xbf16>) -> tensor<?x4xbf16>
  return
}

// -----

func.func @gate_logits_experts(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate' op expects logits of shape [T, 4], got 'tensor<?x8xf32>'}}
  %l = fmoe.gate %x, %wg : (tensor<?x16xf32>, tensor<4x16xf32>) -> tensor<?x8xf32>
  return
}

// -----

func.func @gate_logits_tokens(%x: tensor<8x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate' op expects logits of shape [T, 4], got 'tensor<6x4xf32>'}}
  %l = fmoe.gate %x, %wg : (tensor<8x16xf32>, tensor<4x16xf32>) -> tensor<6x4xf32>
  return
}

// -----

// ===== fmoe.route =====

func.func @route_logits_rank(%l: tensor<4xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects logits of shape [tokens, experts] with a static expert count, got 'tensor<4xf32>'}}
  %i, %s = fmoe.route %l {top_k = 2 : i64} : (tensor<4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

func.func @route_logits_dynamic_experts(%l: tensor<?x?xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects logits of shape [tokens, experts] with a static expert count, got 'tensor<?x?xf32>'}}
  %i, %s = fmoe.route %l {top_k = 2 : i64} : (tensor<?x?xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

func.func @route_no_experts(%l: tensor<?x0xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects num_experts >= 1, got 0}}
  %i, %s = fmoe.route %l {top_k = 1 : i64} : (tensor<?x0xf32>) -> (tensor<?x1xi32>, tensor<?x1xf32>)
  return
}

// -----

func.func @route_top_k_zero(%l: tensor<?x4xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects 1 <= top_k <= num_experts (4), got 0}}
  %i, %s = fmoe.route %l {top_k = 0 : i64} : (tensor<?x4xf32>) -> (tensor<?x0xi32>, tensor<?x0xf32>)
  return
}

// -----

func.func @route_top_k_too_large(%l: tensor<?x4xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects 1 <= top_k <= num_experts (4), got 6}}
  %i, %s = fmoe.route %l {top_k = 6 : i64} : (tensor<?x4xf32>) -> (tensor<?x6xi32>, tensor<?x6xf32>)
  return
}

// -----

func.func @route_renormalize_naive(%l: tensor<?x4xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects renormalize only with the softmax_topk or sigmoid gates}}
  %i, %s = fmoe.route %l {gate = #fmoe<gate naive>, renormalize, top_k = 2 : i64} : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

func.func @route_renormalize_default_gate(%l: tensor<?x4xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects renormalize only with the softmax_topk or sigmoid gates}}
  %i, %s = fmoe.route %l {renormalize, top_k = 2 : i64} : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

func.func @route_logits_bf16(%l: tensor<?x4xbf16>) {
  // expected-error@+1 {{'fmoe.route' op expects logits to have element type 'f32', got 'tensor<?x4xbf16>'}}
  %i, %s = fmoe.route %l {top_k = 2 : i64} : (tensor<?x4xbf16>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}

// -----

func.func @route_indices_i64(%l: tensor<?x4xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects indices to have element type 'i32', got 'tensor<?x2xi64>'}}
  %i, %s = fmoe.route %l {top_k = 2 : i64} : (tensor<?x4xf32>) -> (tensor<?x2xi64>, tensor<?x2xf32>)
  return
}

// -----

func.func @route_indices_top_k(%l: tensor<?x4xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects indices of shape [T, 2], got 'tensor<?x4xi32>'}}
  %i, %s = fmoe.route %l {top_k = 2 : i64} : (tensor<?x4xf32>) -> (tensor<?x4xi32>, tensor<?x2xf32>)
  return
}

// -----

func.func @route_scores_f16(%l: tensor<?x4xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects scores to have element type 'f32', got 'tensor<?x2xf16>'}}
  %i, %s = fmoe.route %l {top_k = 2 : i64} : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf16>)
  return
}

// -----

func.func @route_scores_tokens(%l: tensor<8x4xf32>) {
  // expected-error@+1 {{'fmoe.route' op expects scores of shape [T, 2], got 'tensor<4x2xf32>'}}
  %i, %s = fmoe.route %l {top_k = 2 : i64} : (tensor<8x4xf32>) -> (tensor<8x2xi32>, tensor<4x2xf32>)
  return
}

// -----

// ===== fmoe.gate_route =====

func.func @gate_route_input_rank(%x: tensor<16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects input of rank 2 ([tokens, d_model]), got 'tensor<16xf32>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<16xf32>, tensor<4x16xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_input_i8(%x: tensor<?x16xi8>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects input to have element type f32, bf16 or f16, got 'tensor<?x16xi8>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x16xi8>, tensor<4x16xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_dynamic_d_model(%x: tensor<?x?xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects a static d_model (dimension 1 of input)}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x?xf32>, tensor<4x16xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_weight_dynamic(%x: tensor<?x16xf32>, %wg: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects weight of static shape [experts, d_model], got 'tensor<?x16xf32>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_no_experts(%x: tensor<?x16xf32>, %wg: tensor<0x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects num_experts >= 1, got 0}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 1 : i64}
      : (tensor<?x16xf32>, tensor<0x16xf32>) -> (tensor<?x0xf32>, tensor<?x1xi32>, tensor<?x1xf32>, tensor<0xi32>)
  return
}

// -----

func.func @gate_route_top_k_zero(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects 1 <= top_k <= num_experts (4), got 0}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 0 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>) -> (tensor<?x4xf32>, tensor<?x0xi32>, tensor<?x0xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_top_k_too_large(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects 1 <= top_k <= num_experts (4), got 8}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 8 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>) -> (tensor<?x4xf32>, tensor<?x8xi32>, tensor<?x8xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_renormalize_naive(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects renormalize only with the softmax_topk or sigmoid gates}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {gate = #fmoe<gate naive>, renormalize, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_weight_f16(%x: tensor<?x16xf32>, %wg: tensor<4x16xf16>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects weight to have element type 'f32', got 'tensor<4x16xf16>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf16>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_weight_d_model(%x: tensor<?x16xf32>, %wg: tensor<4x32xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects weight of shape [4, 16], got 'tensor<4x32xf32>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x32xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_bias_shape(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<1x4xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects bias of shape [4], got 'tensor<1x4xf32>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg bias %bg {top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<1x4xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_logits_f16(%x: tensor<?x16xf16>, %wg: tensor<4x16xf16>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects logits to have element type 'f32', got 'tensor<?x4xf16>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x16xf16>, tensor<4x16xf16>) -> (tensor<?x4xf16>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_logits_experts(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects logits of shape [T, 4], got 'tensor<?x2xf32>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_indices_top_k(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects indices of shape [T, 2], got 'tensor<?x1xi32>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>) -> (tensor<?x4xf32>, tensor<?x1xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_indices_tokens(%x: tensor<8x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects indices of shape [T, 2], got 'tensor<7x2xi32>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<8x16xf32>, tensor<4x16xf32>) -> (tensor<?x4xf32>, tensor<7x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_scores_bf16(%x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects scores to have element type 'f32', got 'tensor<?x2xbf16>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x16xbf16>, tensor<4x16xbf16>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xbf16>, tensor<4xi32>)
  return
}

// -----

func.func @gate_route_counts_shape(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects counts of shape [4], got 'tensor<5xi32>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<5xi32>)
  return
}

// -----

func.func @gate_route_counts_i64(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_route' op expects counts to have element type 'i32', got 'tensor<4xi64>'}}
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi64>)
  return
}

// -----

// ===== fmoe.dispatch =====

func.func @dispatch_indices_rank(%i: tensor<?xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects indices of shape [tokens, top_k] with a static top_k, got 'tensor<?xi32>'}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_indices_dynamic_top_k(%i: tensor<?x?xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects indices of shape [tokens, top_k] with a static top_k, got 'tensor<?x?xi32>'}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?x?xi32>) -> (tensor<5xi32>, tensor<?x?xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_no_experts(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects num_experts >= 1, got 0}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 0 : i64}
      : (tensor<?x2xi32>) -> (tensor<1xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_too_many_experts(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects num_experts < 2^31, got 2147483649}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 2147483649 : i64}
      : (tensor<?x2xi32>) -> (tensor<2147483650xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_top_k_zero(%i: tensor<?x0xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects 1 <= top_k <= num_experts (4), got 0}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?x0xi32>) -> (tensor<5xi32>, tensor<?x0xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_top_k_too_large(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects 1 <= top_k <= num_experts (1), got 2}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 1 : i64}
      : (tensor<?x2xi32>) -> (tensor<2xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_capacity_zero(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects capacity_factor > 0, got 0}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64, capacity_factor = 0.0}
      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_expert_order_length(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects expert_order to list each of the 4 experts once, got 3 entries}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64, expert_order = array<i64: 0, 1, 2>}
      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_expert_order_twice(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects expert_order to be a permutation of [0, 4), got expert 1 out of range or twice}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64, expert_order = array<i64: 0, 1, 1, 3>}
      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_expert_order_out_of_range(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects expert_order to be a permutation of [0, 4), got expert 4 out of range or twice}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64, expert_order = array<i64: 0, 1, 2, 4>}
      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_expert_order_negative(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects expert_order to be a permutation of [0, 4), got expert -1 out of range or twice}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64, expert_order = array<i64: -1, 1, 2, 3>}
      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_indices_i64(%i: tensor<?x2xi64>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects indices to have element type 'i32', got 'tensor<?x2xi64>'}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?x2xi64>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_counts_shape(%i: tensor<?x2xi32>, %c: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects counts of shape [4], got 'tensor<5xi32>'}}
  %o, %p, %t = fmoe.dispatch %i counts %c {num_experts = 4 : i64}
      : (tensor<?x2xi32>, tensor<5xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_counts_f32(%i: tensor<?x2xi32>, %c: tensor<4xf32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects counts to have element type 'i32', got 'tensor<4xf32>'}}
  %o, %p, %t = fmoe.dispatch %i counts %c {num_experts = 4 : i64}
      : (tensor<?x2xi32>, tensor<4xf32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_offsets_size(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects offsets of shape [5], got 'tensor<4xi32>'}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?x2xi32>) -> (tensor<4xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_offsets_dynamic(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects offsets of shape [5], got 'tensor<?xi32>'}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?x2xi32>) -> (tensor<?xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_slot_pos_shape(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects slot_pos of shape [T, 2], got 'tensor<?xi32>'}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?xi32>, tensor<?xi32>)
  return
}

// -----

func.func @dispatch_slot_pos_tokens(%i: tensor<8x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects slot_pos of shape [T, 2], got 'tensor<16x2xi32>'}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<8x2xi32>) -> (tensor<5xi32>, tensor<16x2xi32>, tensor<16xi32>)
  return
}

// -----

func.func @dispatch_token_of_rank(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects token_of of shape [R], got 'tensor<?x2xi32>'}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xi32>)
  return
}

// -----

func.func @dispatch_token_of_i64(%i: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.dispatch' op expects token_of to have element type 'i32', got 'tensor<?xi64>'}}
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi64>)
  return
}

// -----

// ===== fmoe.gather =====

func.func @gather_input_rank(%x: tensor<16xf32>, %t: tensor<?xi32>) {
  // expected-error@+1 {{'fmoe.gather' op expects input of rank 2 ([tokens, d_model]), got 'tensor<16xf32>'}}
  %r = fmoe.gather %x, %t : (tensor<16xf32>, tensor<?xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gather_input_i32(%x: tensor<?x16xi32>, %t: tensor<?xi32>) {
  // expected-error@+1 {{'fmoe.gather' op expects input to have element type f32, bf16 or f16, got 'tensor<?x16xi32>'}}
  %r = fmoe.gather %x, %t : (tensor<?x16xi32>, tensor<?xi32>) -> tensor<?x16xi32>
  return
}

// -----

func.func @gather_dynamic_d_model(%x: tensor<?x?xf32>, %t: tensor<?xi32>) {
  // expected-error@+1 {{'fmoe.gather' op expects a static d_model (dimension 1 of input)}}
  %r = fmoe.gather %x, %t : (tensor<?x?xf32>, tensor<?xi32>) -> tensor<?x?xf32>
  return
}

// -----

func.func @gather_token_of_i64(%x: tensor<?x16xf32>, %t: tensor<?xi64>) {
  // expected-error@+1 {{'fmoe.gather' op expects token_of to have element type 'i32', got 'tensor<?xi64>'}}
  %r = fmoe.gather %x, %t : (tensor<?x16xf32>, tensor<?xi64>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gather_token_of_rank(%x: tensor<?x16xf32>, %t: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.gather' op expects token_of of shape [R], got 'tensor<?x2xi32>'}}
  %r = fmoe.gather %x, %t : (tensor<?x16xf32>, tensor<?x2xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gather_rows_d_model(%x: tensor<?x16xf32>, %t: tensor<?xi32>) {
  // expected-error@+1 {{'fmoe.gather' op expects rows of shape [R, 16], got 'tensor<?x32xf32>'}}
  %r = fmoe.gather %x, %t : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?x32xf32>
  return
}

// -----

func.func @gather_rows_count(%x: tensor<?x16xf32>, %t: tensor<16xi32>) {
  // expected-error@+1 {{'fmoe.gather' op expects rows of shape [R, 16], got 'tensor<8x16xf32>'}}
  %r = fmoe.gather %x, %t : (tensor<?x16xf32>, tensor<16xi32>) -> tensor<8x16xf32>
  return
}

// -----

func.func @gather_rows_bf16(%x: tensor<?x16xf32>, %t: tensor<?xi32>) {
  // expected-error@+1 {{'fmoe.gather' op expects rows to have element type 'f32', got 'tensor<?x16xbf16>'}}
  %r = fmoe.gather %x, %t : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?x16xbf16>
  return
}

// -----

// ===== fmoe.expert =====

func.func @expert_rows_rank(%r: tensor<?x4x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects rows of rank 2 ([tokens, d_model]), got 'tensor<?x4x16xf32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x4x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_rows_i32(%r: tensor<?x16xi32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects rows to have element type f32, bf16 or f16, got 'tensor<?x16xi32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xi32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_dynamic_d_model(%r: tensor<?x?xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects a static d_model (dimension 1 of rows)}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x?xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_fc1_dynamic(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<?x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects fc1_weight of static shape [experts, d_hidden, d_model], got 'tensor<?x32x16xf32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<?x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_fc1_no_expert(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<0x32x16xf32>, %w2: tensor<0x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects at least one expert in fc1_weight}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<0x32x16xf32>, tensor<0x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_fc1_f16(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf16>, %w2: tensor<4x16x32xf16>) {
  // expected-error@+1 {{'fmoe.expert' op expects fc1_weight to have element type 'f32', got 'tensor<4x32x16xf16>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf16>, tensor<4x16x32xf16>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_fc1_d_model(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x8xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects fc1_weight of shape [4, 32, 16], got 'tensor<4x32x8xf32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x8xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_fc2_experts(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<2x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects fc2_weight of shape [4, 16, 32], got 'tensor<2x16x32xf32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<2x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_fc1_bias_shape(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %b1: tensor<32xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects fc1_bias of shape [4, 32], got 'tensor<32xf32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 bias %b1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<32xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_fc1_bias_bf16(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %b1: tensor<4x32xbf16>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects fc1_bias to have element type 'f32', got 'tensor<4x32xbf16>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 bias %b1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x32xbf16>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_fc2_bias_shape(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>, %b2: tensor<2x16xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects fc2_bias of shape [4, 16], got 'tensor<2x16xf32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 bias %b2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<2x16xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_swiglu_without_up(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects an up projection (up_weight) with the swiglu activation}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation swiglu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x64xf32>)
  return
}

// -----

func.func @expert_silu_with_up(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects no up projection with the silu activation (only swiglu and geglu take one)}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 up %wu fc2 %w2 {activation = #fmoe<activation silu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_up_f16(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf16>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects up_weight to have element type 'f32', got 'tensor<4x32x16xf16>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 up %wu fc2 %w2 {activation = #fmoe<activation geglu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x32x16xf16>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x64xf32>)
  return
}

// -----

func.func @expert_offsets_dynamic(%r: tensor<?x16xf32>, %o: tensor<?xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects offsets to be a static 1-D i32 tensor, got 'tensor<?xi32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_offsets_i64(%r: tensor<?x16xf32>, %o: tensor<5xi64>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects offsets to be a static 1-D i32 tensor, got 'tensor<5xi64>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi64>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_offsets_groups(%r: tensor<?x16xf32>, %o: tensor<4xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects offsets to hold a multiple of 4 expert groups plus one, got 4 entries}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<4xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_offsets_no_group(%r: tensor<?x16xf32>, %o: tensor<1xi32>, %w1: tensor<2x32x16xf32>, %w2: tensor<2x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects offsets to hold a multiple of 2 expert groups plus one, got 1 entries}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<1xi32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_y_shape(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects y of shape [R, 16], got 'tensor<?x32xf32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x32xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_y_rows(%r: tensor<16x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects y of shape [R, 16], got 'tensor<8x16xf32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<16x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<8x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_y_f16(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects y to have element type 'f32', got 'tensor<?x16xf16>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf16>, tensor<?x32xf32>)
  return
}

// -----

func.func @expert_h_hidden(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert' op expects h of shape [R, 32], got 'tensor<?x64xf32>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x64xf32>)
  return
}

// -----

func.func @expert_act_glu(%r: tensor<?x16xbf16>, %o: tensor<5xi32>, %w1: tensor<4x32x16xbf16>, %wu: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>) {
  // expected-error@+1 {{'fmoe.expert' op keeps activations (act) only for non-GLU activations, got swiglu}}
  %y, %h, %a = fmoe.expert %r, %o fc1 %w1 up %wu fc2 %w2 {activation = #fmoe<activation swiglu>}
      : (tensor<?x16xbf16>, tensor<5xi32>, tensor<4x32x16xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> (tensor<?x16xbf16>, tensor<?x64xbf16>, tensor<?x32xbf16>)
  return
}

// -----

func.func @expert_act_width(%r: tensor<?x16xbf16>, %o: tensor<5xi32>, %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>) {
  // expected-error@+1 {{'fmoe.expert' op expects act of shape [R, 32], got 'tensor<?x16xbf16>'}}
  %y, %h, %a = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation gelu>}
      : (tensor<?x16xbf16>, tensor<5xi32>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> (tensor<?x16xbf16>, tensor<?x32xbf16>, tensor<?x16xbf16>)
  return
}

// -----

func.func @expert_h_glu_width(%r: tensor<?x16xbf16>, %o: tensor<5xi32>, %w1: tensor<4x32x16xbf16>, %wu: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>) {
  // expected-error@+1 {{'fmoe.expert' op expects h of shape [R, 64], got 'tensor<?x32xbf16>'}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 up %wu fc2 %w2 {activation = #fmoe<activation swiglu>}
      : (tensor<?x16xbf16>, tensor<5xi32>, tensor<4x32x16xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> (tensor<?x16xbf16>, tensor<?x32xbf16>)
  return
}

// -----

// ===== fmoe.fused_expert =====

func.func @fused_expert_input_rank(%x: tensor<16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects input of rank 2 ([tokens, d_model]), got 'tensor<16xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_input_i32(%x: tensor<?x16xi32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects input to have element type f32, bf16 or f16, got 'tensor<?x16xi32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xi32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_dynamic_d_model(%x: tensor<?x?xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects a static d_model (dimension 1 of input)}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x?xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_fc1_rank(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects fc1_weight of static shape [experts, d_hidden, d_model], got 'tensor<32x16xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_fc1_no_expert(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<0x32x16xf32>, %w2: tensor<0x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects at least one expert in fc1_weight}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<0x32x16xf32>, tensor<0x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_fc2_bf16(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xbf16>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects fc2_weight to have element type 'f32', got 'tensor<4x16x32xbf16>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xbf16>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_fc2_hidden(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x64xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects fc2_weight of shape [4, 16, 32], got 'tensor<4x16x64xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x64xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_fc1_bias_shape(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %b1: tensor<4x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects fc1_bias of shape [4, 32], got 'tensor<4x16xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 bias %b1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_fc2_bias_shape(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>, %b2: tensor<4x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects fc2_bias of shape [4, 16], got 'tensor<4x32xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 bias %b2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<4x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_geglu_without_up(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects an up projection (up_weight) with the geglu activation}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation geglu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x64xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_relu_with_up(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects no up projection with the relu activation (only swiglu and geglu take one)}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 up %wu fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_up_shape(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x16x32xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects up_weight of shape [4, 32, 16], got 'tensor<4x16x32xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 up %wu fc2 %w2 {activation = #fmoe<activation swiglu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x64xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_offsets_rank(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<1x5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects offsets to be a static 1-D i32 tensor, got 'tensor<1x5xi32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<1x5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_offsets_groups(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<6xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects offsets to hold a multiple of 4 expert groups plus one, got 6 entries}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<6xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_slot_pos_dynamic_top_k(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x?xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects slot_pos of shape [tokens, top_k], got 'tensor<?x?xi32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x?xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_input_tokens(%x: tensor<8x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<4x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects slot_pos of shape [T, 2], got 'tensor<4x2xi32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<8x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<4x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<8x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_token_of_f32(%x: tensor<?x16xf32>, %t: tensor<?xf32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects token_of to have element type 'i32', got 'tensor<?xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xf32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_slot_pos_i64(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi64>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects slot_pos to have element type 'i32', got 'tensor<?x2xi64>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi64>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_scores_top_k(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x1xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects scores of shape [T, 2], got 'tensor<?x1xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x1xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_scores_bf16(%x: tensor<?x16xbf16>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xbf16>, %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects scores to have element type 'f32', got 'tensor<?x2xbf16>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xbf16>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>)
      -> (tensor<?x16xbf16>, tensor<?x32xbf16>, tensor<?x16xbf16>)
  return
}

// -----

func.func @fused_expert_output_shape(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects output of shape [T, 16], got 'tensor<?x32xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x32xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_output_f16(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects output to have element type 'f32', got 'tensor<?x16xf16>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf16>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_h_glu_width(%x: tensor<?x16xf16>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf16>, %wu: tensor<4x32x16xf16>, %w2: tensor<4x16x32xf16>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects h of shape [R, 64], got 'tensor<?x32xf16>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 up %wu fc2 %w2 {activation = #fmoe<activation geglu>}
      : (tensor<?x16xf16>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf16>, tensor<4x32x16xf16>, tensor<4x16x32xf16>)
      -> (tensor<?x16xf16>, tensor<?x32xf16>, tensor<?x16xf16>)
  return
}

// -----

func.func @fused_expert_act_glu(%x: tensor<?x16xf16>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf16>, %wu: tensor<4x32x16xf16>, %w2: tensor<4x16x32xf16>) {
  // expected-error@+1 {{'fmoe.fused_expert' op keeps activations (act) only for non-GLU activations, got geglu}}
  %out, %h, %y, %a = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 up %wu fc2 %w2 {activation = #fmoe<activation geglu>}
      : (tensor<?x16xf16>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf16>, tensor<4x32x16xf16>, tensor<4x16x32xf16>)
      -> (tensor<?x16xf16>, tensor<?x64xf16>, tensor<?x16xf16>, tensor<?x32xf16>)
  return
}

// -----

func.func @fused_expert_act_type(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects act to have element type 'f32', got 'tensor<?x32xbf16>'}}
  %out, %h, %y, %a = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation gelu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>, tensor<?x32xbf16>)
  return
}

// -----

func.func @fused_expert_h_rows(%x: tensor<?x16xf32>, %t: tensor<16xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects h of shape [R, 32], got 'tensor<8x32xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<16xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<8x32xf32>, tensor<?x16xf32>)
  return
}

// -----

func.func @fused_expert_y_shape(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.fused_expert' op expects y of shape [R, 16], got 'tensor<?x32xf32>'}}
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x32xf32>)
  return
}

// -----

// ===== fmoe.combine =====

func.func @combine_y_rank(%y: tensor<?xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine' op expects y of rank 2 ([tokens, d_model]), got 'tensor<?xf32>'}}
  %out = fmoe.combine %y, %p, %s : (tensor<?xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_y_i32(%y: tensor<?x16xi32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine' op expects y to have element type f32, bf16 or f16, got 'tensor<?x16xi32>'}}
  %out = fmoe.combine %y, %p, %s : (tensor<?x16xi32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xi32>
  return
}

// -----

func.func @combine_dynamic_d_model(%y: tensor<?x?xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine' op expects a static d_model (dimension 1 of y)}}
  %out = fmoe.combine %y, %p, %s : (tensor<?x?xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x?xf32>
  return
}

// -----

func.func @combine_slot_pos_rank(%y: tensor<?x16xf32>, %p: tensor<?xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine' op expects slot_pos of shape [tokens, top_k], got 'tensor<?xi32>'}}
  %out = fmoe.combine %y, %p, %s : (tensor<?x16xf32>, tensor<?xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_slot_pos_f32(%y: tensor<?x16xf32>, %p: tensor<?x2xf32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine' op expects slot_pos to have element type 'i32', got 'tensor<?x2xf32>'}}
  %out = fmoe.combine %y, %p, %s : (tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_scores_top_k(%y: tensor<?x16xf32>, %p: tensor<?x2xi32>, %s: tensor<?x4xf32>) {
  // expected-error@+1 {{'fmoe.combine' op expects scores of shape [T, 2], got 'tensor<?x4xf32>'}}
  %out = fmoe.combine %y, %p, %s : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x4xf32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @combine_scores_f16(%y: tensor<?x16xf16>, %p: tensor<?x2xi32>, %s: tensor<?x2xf16>) {
  // expected-error@+1 {{'fmoe.combine' op expects scores to have element type 'f32', got 'tensor<?x2xf16>'}}
  %out = fmoe.combine %y, %p, %s : (tensor<?x16xf16>, tensor<?x2xi32>, tensor<?x2xf16>) -> tensor<?x16xf16>
  return
}

// -----

func.func @combine_output_d_model(%y: tensor<?x16xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine' op expects output of shape [T, 16], got 'tensor<?x8xf32>'}}
  %out = fmoe.combine %y, %p, %s : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x8xf32>
  return
}

// -----

func.func @combine_output_tokens(%y: tensor<?x16xf32>, %p: tensor<8x2xi32>, %s: tensor<8x2xf32>) {
  // expected-error@+1 {{'fmoe.combine' op expects output of shape [T, 16], got 'tensor<16x16xf32>'}}
  %out = fmoe.combine %y, %p, %s : (tensor<?x16xf32>, tensor<8x2xi32>, tensor<8x2xf32>) -> tensor<16x16xf32>
  return
}

// -----

func.func @combine_output_bf16(%y: tensor<?x16xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine' op expects output to have element type 'f32', got 'tensor<?x16xbf16>'}}
  %out = fmoe.combine %y, %p, %s : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xbf16>
  return
}

// -----

// ===== fmoe.all_to_all =====

shard.grid @ranks(shape = 2)
func.func @all_to_all_input_rank(%r: tensor<16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects input of rank 2 ([tokens, d_model]), got 'tensor<16xf32>'}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_input_i32(%r: tensor<?x16xi32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects input to have element type f32, bf16 or f16, got 'tensor<?x16xi32>'}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xi32>, tensor<5xi32>) -> (tensor<?x16xi32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_dynamic_d_model(%r: tensor<?x?xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects a static d_model (dimension 1 of input)}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x?xf32>, tensor<5xi32>) -> (tensor<?x?xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_empty_placement(%r: tensor<?x16xf32>, %o: tensor<1xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects a placement with at least one expert}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64>}
      : (tensor<?x16xf32>, tensor<1xi32>) -> (tensor<?x16xf32>, tensor<1xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_offsets_size(%r: tensor<?x16xf32>, %o: tensor<4xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects offsets of shape [5], got 'tensor<4xi32>'}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<4xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_offsets_i64(%r: tensor<?x16xf32>, %o: tensor<5xi64>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects offsets to have element type 'i32', got 'tensor<5xi64>'}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<5xi64>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_out_offsets_size(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects out_offsets of shape [5], got 'tensor<3xi32>'}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<3xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_output_d_model(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects output of shape [S, 16], got 'tensor<?x32xf32>'}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x32xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_output_bf16(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects output to have element type 'f32', got 'tensor<?x16xbf16>'}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xbf16>, tensor<5xi32>)
  return
}

// -----

func.func @all_to_all_grid_missing(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects grid @ranks to name a shard.grid}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

func.func private @not_a_grid()
func.func @all_to_all_grid_not_a_grid(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects grid @not_a_grid to name a shard.grid}}
  %a, %ao = fmoe.all_to_all %r, %o on @not_a_grid {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @grid2d(shape = 2x2)
func.func @all_to_all_grid_2d(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects a one-dimensional shard.grid of static size, got @grid2d of rank 2}}
  %a, %ao = fmoe.all_to_all %r, %o on @grid2d {placement = array<i64: 0, 1, 2, 3>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @dyn(shape = ?)
func.func @all_to_all_grid_dynamic(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects a one-dimensional shard.grid of static size, got @dyn of rank 1}}
  %a, %ao = fmoe.all_to_all %r, %o on @dyn {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @g(shape = 0)
func.func @all_to_all_grid_empty(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects a grid of at least one device, got @g of size 0}}
  %a, %ao = fmoe.all_to_all %r, %o on @g {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_experts_not_multiple(%r: tensor<?x16xf32>, %o: tensor<4xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects the number of experts (3) to be a multiple of the grid size (2)}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<4xi32>) -> (tensor<?x16xf32>, tensor<4xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_placement_rank_range(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects placement ranks in [0, 2), expert 2 is on rank 3}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 1, 3, 1>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_placement_unbalanced(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects every rank to hold 2 experts, rank 0 holds 1}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 1, 1, 1>, reverse}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_shadow_all(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects fewer shadowed experts than the 4 experts, got 4}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 0, 1, 2, 3>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<13xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_shadow_out_of_range(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects shadow to list distinct experts in [0, 4), got expert 4 out of range or twice}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 4>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<7xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_shadow_twice(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects shadow to list distinct experts in [0, 4), got expert 1 out of range or twice}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 1, 1>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<9xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_shadow_out_offsets(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects out_offsets of shape [7], got 'tensor<5xi32>'}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_shadow_reverse_offsets(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects offsets of shape [7], got 'tensor<5xi32>'}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>, reverse, shadow = array<i64: 2>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @all_to_all_shadow_reverse_out_offsets(%r: tensor<?x16xf32>, %o: tensor<7xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects out_offsets of shape [5], got 'tensor<7xi32>'}}
  %a, %ao = fmoe.all_to_all %r, %o on @ranks {placement = array<i64: 0, 0, 1, 1>, reverse, shadow = array<i64: 2>}
      : (tensor<?x16xf32>, tensor<7xi32>) -> (tensor<?x16xf32>, tensor<7xi32>)
  return
}

// -----

shard.grid @one(shape = 1)
func.func @all_to_all_shadow_one_device(%r: tensor<?x16xf32>, %o: tensor<5xi32>) {
  // expected-error@+1 {{'fmoe.all_to_all' op expects no shadowed experts on a grid of one device}}
  %a, %ao = fmoe.all_to_all %r, %o on @one {placement = array<i64: 0, 0, 0, 0>, shadow = array<i64: 2>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<6xi32>)
  return
}

// -----

// ===== fmoe.replicate, fmoe.replicate_grad =====

shard.grid @ranks(shape = 2)
func.func @replicate_no_shadow(%w: tensor<2x32x16xf32>) {
  // expected-error@+1 {{'fmoe.replicate' op expects at least one shadowed expert}}
  %r = fmoe.replicate %w on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64>}
      : (tensor<2x32x16xf32>) -> tensor<2x32x16xf32>
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @replicate_shadow_out_of_range(%w: tensor<2x32x16xf32>) {
  // expected-error@+1 {{'fmoe.replicate' op expects shadow to list distinct experts in [0, 4), got expert -1 out of range or twice}}
  %r = fmoe.replicate %w on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: -1>}
      : (tensor<2x32x16xf32>) -> tensor<3x32x16xf32>
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @replicate_dynamic(%w: tensor<?x32xf32>) {
  // expected-error@+1 {{'fmoe.replicate' op expects input of static shape [experts, ...], got 'tensor<?x32xf32>'}}
  %r = fmoe.replicate %w on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<?x32xf32>) -> tensor<3x32xf32>
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @replicate_scalar(%w: tensor<f32>) {
  // expected-error@+1 {{'fmoe.replicate' op expects input of static shape [experts, ...], got 'tensor<f32>'}}
  %r = fmoe.replicate %w on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<f32>) -> tensor<3xf32>
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @replicate_output_experts(%w: tensor<2x32x16xf32>) {
  // expected-error@+1 {{'fmoe.replicate' op expects output of type 'tensor<3x32x16xf32>' (one more expert per shadowed one), got 'tensor<2x32x16xf32>'}}
  %r = fmoe.replicate %w on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<2x32x16xf32>) -> tensor<2x32x16xf32>
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @replicate_output_type(%w: tensor<2x32x16xf32>) {
  // expected-error@+1 {{'fmoe.replicate' op expects output of type 'tensor<3x32x16xf32>' (one more expert per shadowed one), got 'tensor<3x32x16xbf16>'}}
  %r = fmoe.replicate %w on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<2x32x16xf32>) -> tensor<3x32x16xbf16>
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @replicate_local_experts(%w: tensor<1x32xf32>) {
  // expected-error@+1 {{'fmoe.replicate' op expects 2 experts per rank (4 over 2 ranks), got 1}}
  %r = fmoe.replicate %w on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<1x32xf32>) -> tensor<2x32xf32>
  return
}

// -----

func.func @replicate_grid_missing(%w: tensor<2x32xf32>) {
  // expected-error@+1 {{'fmoe.replicate' op expects grid @ranks to name a shard.grid}}
  %r = fmoe.replicate %w on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<2x32xf32>) -> tensor<3x32xf32>
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @replicate_bad_placement(%w: tensor<2x32xf32>) {
  // expected-error@+1 {{'fmoe.replicate' op expects every rank to hold 2 experts, rank 0 holds 3}}
  %r = fmoe.replicate %w on @ranks {placement = array<i64: 0, 0, 0, 1>, shadow = array<i64: 2>}
      : (tensor<2x32xf32>) -> tensor<3x32xf32>
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @replicate_grad_type(%g: tensor<3x32xf32>) {
  // expected-error@+1 {{'fmoe.replicate_grad' op expects grad of type 'tensor<4x32xf32>' (one more expert per shadowed one), got 'tensor<3x32xf32>'}}
  %r = fmoe.replicate_grad %g on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2, 3>}
      : (tensor<3x32xf32>) -> tensor<2x32xf32>
  return
}

// -----

shard.grid @ranks(shape = 2)
func.func @replicate_grad_local_experts(%g: tensor<4x32xf32>) {
  // expected-error@+1 {{'fmoe.replicate_grad' op expects 2 experts per rank (4 over 2 ranks), got 3}}
  %r = fmoe.replicate_grad %g on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<4x32xf32>) -> tensor<3x32xf32>
  return
}

// -----

// ===== fmoe.combine_grad =====

func.func @combine_grad_grad_output_rank(%dout: tensor<16xf32>, %y: tensor<?x16xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects grad_output of rank 2 ([tokens, d_model]), got 'tensor<16xf32>'}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<16xf32>, tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?x16xf32>, tensor<?x2xf32>)
  return
}

// -----

func.func @combine_grad_grad_output_f64(%dout: tensor<?x16xf64>, %y: tensor<?x16xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects grad_output to have element type f32, bf16 or f16, got 'tensor<?x16xf64>'}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xf64>, tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?x16xf32>, tensor<?x2xf32>)
  return
}

// -----

func.func @combine_grad_dynamic_d_model(%dout: tensor<?x?xf32>, %y: tensor<?x16xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects a static d_model (dimension 1 of grad_output)}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x?xf32>, tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?x16xf32>, tensor<?x2xf32>)
  return
}

// -----

func.func @combine_grad_slot_pos_dynamic_top_k(%dout: tensor<?x16xf32>, %y: tensor<?x16xf32>, %p: tensor<?x?xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects slot_pos of shape [tokens, top_k], got 'tensor<?x?xi32>'}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x?xi32>, tensor<?x2xf32>) -> (tensor<?x16xf32>, tensor<?x2xf32>)
  return
}

// -----

func.func @combine_grad_slot_pos_tokens(%dout: tensor<8x16xf32>, %y: tensor<?x16xf32>, %p: tensor<4x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects slot_pos of shape [T, 2], got 'tensor<4x2xi32>'}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<8x16xf32>, tensor<?x16xf32>, tensor<4x2xi32>, tensor<?x2xf32>) -> (tensor<?x16xf32>, tensor<?x2xf32>)
  return
}

// -----

func.func @combine_grad_scores_f16(%dout: tensor<?x16xf16>, %y: tensor<?x16xf16>, %p: tensor<?x2xi32>, %s: tensor<?x2xf16>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects scores to have element type 'f32', got 'tensor<?x2xf16>'}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xf16>, tensor<?x16xf16>, tensor<?x2xi32>, tensor<?x2xf16>) -> (tensor<?x16xf16>, tensor<?x2xf32>)
  return
}

// -----

func.func @combine_grad_y_d_model(%dout: tensor<?x16xf32>, %y: tensor<?x8xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects y of shape [R, 16], got 'tensor<?x8xf32>'}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xf32>, tensor<?x8xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?x16xf32>, tensor<?x2xf32>)
  return
}

// -----

func.func @combine_grad_y_bf16(%dout: tensor<?x16xf32>, %y: tensor<?x16xbf16>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects y to have element type 'f32', got 'tensor<?x16xbf16>'}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xf32>, tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?x16xf32>, tensor<?x2xf32>)
  return
}

// -----

func.func @combine_grad_grad_y_rows(%dout: tensor<?x16xf32>, %y: tensor<16x16xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects grad_y of shape [R, 16], got 'tensor<8x16xf32>'}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xf32>, tensor<16x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<8x16xf32>, tensor<?x2xf32>)
  return
}

// -----

func.func @combine_grad_grad_scores_bf16(%dout: tensor<?x16xbf16>, %y: tensor<?x16xbf16>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects grad_scores to have element type 'f32', got 'tensor<?x2xbf16>'}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?x16xbf16>, tensor<?x2xbf16>)
  return
}

// -----

func.func @combine_grad_grad_scores_top_k(%dout: tensor<?x16xf32>, %y: tensor<?x16xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.combine_grad' op expects grad_scores of shape [T, 2], got 'tensor<?x4xf32>'}}
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?x16xf32>, tensor<?x4xf32>)
  return
}

// -----

// ===== fmoe.expert_grad =====
// (The optional results are named in the type list: see ops.mlir.)

func.func @expert_grad_grad_y_rank(%dy: tensor<16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects grad_y of rank 2 ([tokens, d_model]), got 'tensor<16xf32>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_grad_y_i32(%dy: tensor<?x16xi32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects grad_y to have element type f32, bf16 or f16, got 'tensor<?x16xi32>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xi32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_dynamic_d_model(%dy: tensor<?x?xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects a static d_model (dimension 1 of grad_y)}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x?xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_fc1_dynamic(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x?xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects fc1_weight of static shape [experts, d_hidden, d_model], got 'tensor<4x32x?xf32>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x?xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_fc1_no_expert(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<0x32x16xf32>, %w2: tensor<0x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects at least one expert in fc1_weight}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<0x32x16xf32>, tensor<0x16x32xf32>
      -> tensor<?x16xf32>, tensor<0x32x16xf32>, tensor<0x16x32xf32>
  return
}

// -----

func.func @expert_grad_fc1_bf16(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects fc1_weight to have element type 'f32', got 'tensor<4x32x16xbf16>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xbf16>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_fc2_shape(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x32x16xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects fc2_weight of shape [4, 16, 32], got 'tensor<4x32x16xf32>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>
  return
}

// -----

func.func @expert_grad_swiglu_without_up(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x64xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects an up projection (up_weight) with the swiglu activation}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation swiglu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x64xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_gelu_tanh_with_up(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects no up projection with the gelu_tanh activation (only swiglu and geglu take one)}}
  %dr, %dw1, %dwu, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 up %wu fc2 %w2
      {activation = #fmoe<activation gelu_tanh>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> up tensor<4x32x16xf32>
  return
}

// -----

func.func @expert_grad_up_shape(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x64xf32>, %w1: tensor<4x32x16xf32>, %wu: tensor<2x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects up_weight of shape [4, 32, 16], got 'tensor<2x32x16xf32>'}}
  %dr, %dw1, %dwu, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 up %wu fc2 %w2
      {activation = #fmoe<activation swiglu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x64xf32>, tensor<4x32x16xf32>, tensor<2x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> up tensor<2x32x16xf32>
  return
}

// -----

func.func @expert_grad_offsets_i64(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi64>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects offsets to be a static 1-D i32 tensor, got 'tensor<5xi64>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi64>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_offsets_groups(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<4xi32>, %h: tensor<?x32xf32>, %w1: tensor<2x32x16xf32>, %w2: tensor<2x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects offsets to hold a multiple of 2 expert groups plus one, got 4 entries}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<4xi32>, tensor<?x32xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>
      -> tensor<?x16xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>
  return
}

// -----

func.func @expert_grad_rows_rows(%dy: tensor<8x16xf32>, %r: tensor<16x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects rows of shape [R, 16], got 'tensor<16x16xf32>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<8x16xf32>, tensor<16x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_rows_f16(%dy: tensor<?x16xf32>, %r: tensor<?x16xf16>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects rows to have element type 'f32', got 'tensor<?x16xf16>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf16>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_act_glu(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x64xf32>, %a: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op keeps activations (act) only for non-GLU activations, got geglu}}
  %dr, %dw1, %dwu, %dw2 = fmoe.expert_grad %dy, %r, %o, %h act %a fc1 %w1 up %wu fc2 %w2
      {activation = #fmoe<activation geglu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x64xf32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> up tensor<4x32x16xf32>
  return
}

// -----

func.func @expert_grad_act_rows(%dy: tensor<16x16xf32>, %r: tensor<16x16xf32>, %o: tensor<5xi32>, %h: tensor<16x32xf32>, %a: tensor<8x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects act of shape [R, 32], got 'tensor<8x32xf32>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h act %a fc1 %w1 fc2 %w2
      {activation = #fmoe<activation gelu>}
      : tensor<16x16xf32>, tensor<16x16xf32>, tensor<5xi32>, tensor<16x32xf32>, tensor<8x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<16x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_h_glu_width(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects h of shape [R, 64], got 'tensor<?x32xf32>'}}
  %dr, %dw1, %dwu, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 up %wu fc2 %w2
      {activation = #fmoe<activation geglu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> up tensor<4x32x16xf32>
  return
}

// -----

func.func @expert_grad_grad_rows_shape(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects grad_rows of shape [R, 16], got 'tensor<?x32xf32>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_grad_fc1_weight_shape(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects grad_fc1_weight of shape [4, 32, 16], got 'tensor<4x16x32xf32>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x16x32xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_grad_fc2_weight_bf16(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects grad_fc2_weight to have element type 'f32', got 'tensor<4x16x32xbf16>'}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xbf16>
  return
}

// -----

func.func @expert_grad_missing_grad_up_weight(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x64xf32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects grad_up_weight exactly when up_weight is given}}
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 up %wu fc2 %w2
      {activation = #fmoe<activation swiglu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x64xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_unexpected_grad_up_weight(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects grad_up_weight exactly when up_weight is given}}
  %dr, %dw1, %dwu, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> up tensor<4x32x16xf32>
  return
}

// -----

func.func @expert_grad_grad_fc1_bias_shape(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects grad_fc1_bias of shape [4, 32], got 'tensor<4x16xf32>'}}
  %dr, %dw1, %db1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> fc1_bias tensor<4x16xf32>
  return
}

// -----

func.func @expert_grad_grad_up_weight_shape(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x64xf32>, %w1: tensor<4x32x16xf32>, %wu: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects grad_up_weight of shape [4, 32, 16], got 'tensor<4x16x32xf32>'}}
  %dr, %dw1, %dwu, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 up %wu fc2 %w2
      {activation = #fmoe<activation swiglu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x64xf32>, tensor<4x32x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> up tensor<4x16x32xf32>
  return
}

// -----

func.func @expert_grad_grad_fc2_bias_f16(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>, %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+1 {{'fmoe.expert_grad' op expects grad_fc2_bias to have element type 'f32', got 'tensor<4x16xf16>'}}
  %dr, %dw1, %dw2, %db2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> fc2_bias tensor<4x16xf16>
  return
}

// -----

// ===== fmoe.gather_grad =====

func.func @gather_grad_grad_rows_rank(%dr: tensor<?x16x1xf32>, %p: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.gather_grad' op expects grad_rows of rank 2 ([tokens, d_model]), got 'tensor<?x16x1xf32>'}}
  %dx = fmoe.gather_grad %dr, %p : (tensor<?x16x1xf32>, tensor<?x2xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gather_grad_grad_rows_i32(%dr: tensor<?x16xi32>, %p: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.gather_grad' op expects grad_rows to have element type f32, bf16 or f16, got 'tensor<?x16xi32>'}}
  %dx = fmoe.gather_grad %dr, %p : (tensor<?x16xi32>, tensor<?x2xi32>) -> tensor<?x16xi32>
  return
}

// -----

func.func @gather_grad_dynamic_d_model(%dr: tensor<?x?xf32>, %p: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.gather_grad' op expects a static d_model (dimension 1 of grad_rows)}}
  %dx = fmoe.gather_grad %dr, %p : (tensor<?x?xf32>, tensor<?x2xi32>) -> tensor<?x?xf32>
  return
}

// -----

func.func @gather_grad_slot_pos_dynamic_top_k(%dr: tensor<?x16xf32>, %p: tensor<?x?xi32>) {
  // expected-error@+1 {{'fmoe.gather_grad' op expects slot_pos of shape [tokens, top_k], got 'tensor<?x?xi32>'}}
  %dx = fmoe.gather_grad %dr, %p : (tensor<?x16xf32>, tensor<?x?xi32>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gather_grad_slot_pos_i64(%dr: tensor<?x16xf32>, %p: tensor<?x2xi64>) {
  // expected-error@+1 {{'fmoe.gather_grad' op expects slot_pos to have element type 'i32', got 'tensor<?x2xi64>'}}
  %dx = fmoe.gather_grad %dr, %p : (tensor<?x16xf32>, tensor<?x2xi64>) -> tensor<?x16xf32>
  return
}

// -----

func.func @gather_grad_grad_input_tokens(%dr: tensor<?x16xf32>, %p: tensor<8x2xi32>) {
  // expected-error@+1 {{'fmoe.gather_grad' op expects grad_input of shape [T, 16], got 'tensor<4x16xf32>'}}
  %dx = fmoe.gather_grad %dr, %p : (tensor<?x16xf32>, tensor<8x2xi32>) -> tensor<4x16xf32>
  return
}

// -----

func.func @gather_grad_grad_input_bf16(%dr: tensor<?x16xf32>, %p: tensor<?x2xi32>) {
  // expected-error@+1 {{'fmoe.gather_grad' op expects grad_input to have element type 'f32', got 'tensor<?x16xbf16>'}}
  %dx = fmoe.gather_grad %dr, %p : (tensor<?x16xf32>, tensor<?x2xi32>) -> tensor<?x16xbf16>
  return
}

// -----

// ===== fmoe.route_grad =====

func.func @route_grad_logits_dynamic_experts(%ds: tensor<?x2xf32>, %l: tensor<?x?xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects logits of shape [tokens, experts] with a static expert count, got 'tensor<?x?xf32>'}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x2xf32>, tensor<?x?xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x?xf32>
  return
}

// -----

func.func @route_grad_renormalize_naive(%ds: tensor<?x2xf32>, %l: tensor<?x4xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects renormalize only with the softmax_topk or sigmoid gates}}
  %dl = fmoe.route_grad %ds, %l, %i, %s {gate = #fmoe<gate naive>, renormalize}
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @route_grad_indices_dynamic_top_k(%ds: tensor<?x2xf32>, %l: tensor<?x4xf32>, %i: tensor<?x?xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects indices of shape [tokens, top_k], got 'tensor<?x?xi32>'}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x?xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @route_grad_indices_i64(%ds: tensor<?x2xf32>, %l: tensor<?x4xf32>, %i: tensor<?x2xi64>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects indices to have element type 'i32', got 'tensor<?x2xi64>'}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi64>, tensor<?x2xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @route_grad_scores_top_k(%ds: tensor<?x2xf32>, %l: tensor<?x4xf32>, %i: tensor<?x2xi32>, %s: tensor<?x1xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects scores of shape [T, 2], got 'tensor<?x1xf32>'}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x1xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @route_grad_no_experts(%ds: tensor<?x1xf32>, %l: tensor<?x0xf32>, %i: tensor<?x1xi32>, %s: tensor<?x1xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects num_experts >= 1, got 0}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x1xf32>, tensor<?x0xf32>, tensor<?x1xi32>, tensor<?x1xf32>) -> tensor<?x0xf32>
  return
}

// -----

func.func @route_grad_top_k_zero(%ds: tensor<?x0xf32>, %l: tensor<?x4xf32>, %i: tensor<?x0xi32>, %s: tensor<?x0xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects 1 <= top_k <= num_experts (4), got 0}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x0xf32>, tensor<?x4xf32>, tensor<?x0xi32>, tensor<?x0xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @route_grad_top_k_too_large(%ds: tensor<?x4xf32>, %l: tensor<?x2xf32>, %i: tensor<?x4xi32>, %s: tensor<?x4xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects 1 <= top_k <= num_experts (2), got 4}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x4xf32>, tensor<?x2xf32>, tensor<?x4xi32>, tensor<?x4xf32>) -> tensor<?x2xf32>
  return
}

// -----

func.func @route_grad_grad_scores_bf16(%ds: tensor<?x2xbf16>, %l: tensor<?x4xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects grad_scores to have element type 'f32', got 'tensor<?x2xbf16>'}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x2xbf16>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @route_grad_grad_scores_tokens(%ds: tensor<4x2xf32>, %l: tensor<?x4xf32>, %i: tensor<8x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects grad_scores of shape [T, 2], got 'tensor<4x2xf32>'}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<4x2xf32>, tensor<?x4xf32>, tensor<8x2xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @route_grad_logits_f16(%ds: tensor<?x2xf32>, %l: tensor<?x4xf16>, %i: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects logits to have element type 'f32', got 'tensor<?x4xf16>'}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x2xf32>, tensor<?x4xf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
  return
}

// -----

func.func @route_grad_grad_logits_experts(%ds: tensor<?x2xf32>, %l: tensor<?x4xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects grad_logits of shape [T, 4], got 'tensor<?x2xf32>'}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x2xf32>
  return
}

// -----

func.func @route_grad_grad_logits_bf16(%ds: tensor<?x2xf32>, %l: tensor<?x4xf32>, %i: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  // expected-error@+1 {{'fmoe.route_grad' op expects grad_logits to have element type 'f32', got 'tensor<?x4xbf16>'}}
  %dl = fmoe.route_grad %ds, %l, %i, %s
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x4xbf16>
  return
}

// -----

// ===== fmoe.gate_grad =====

func.func @gate_grad_input_rank(%dl: tensor<?x4xf32>, %x: tensor<16xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects input of rank 2 ([tokens, d_model]), got 'tensor<16xf32>'}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xf32>, tensor<16xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>)
  return
}

// -----

func.func @gate_grad_input_i32(%dl: tensor<?x4xf32>, %x: tensor<?x16xi32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects input to have element type f32, bf16 or f16, got 'tensor<?x16xi32>'}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xf32>, tensor<?x16xi32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>)
  return
}

// -----

func.func @gate_grad_dynamic_d_model(%dl: tensor<?x4xf32>, %x: tensor<?x?xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects a static d_model (dimension 1 of input)}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xf32>, tensor<?x?xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>)
  return
}

// -----

func.func @gate_grad_grad_logits_dynamic_experts(%dl: tensor<?x?xf32>, %x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects grad_logits of shape [tokens, experts], got 'tensor<?x?xf32>'}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x?xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>)
  return
}

// -----

func.func @gate_grad_grad_logits_bf16(%dl: tensor<?x4xbf16>, %x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>, %dxe: tensor<?x16xbf16>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects grad_logits to have element type 'f32', got 'tensor<?x4xbf16>'}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xbf16>, tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<?x16xbf16>) -> (tensor<?x16xbf16>, tensor<4x16xbf16>)
  return
}

// -----

func.func @gate_grad_input_tokens(%dl: tensor<8x4xf32>, %x: tensor<4x16xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects input of shape [T, 16], got 'tensor<4x16xf32>'}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<8x4xf32>, tensor<4x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>)
  return
}

// -----

func.func @gate_grad_weight_shape(%dl: tensor<?x4xf32>, %x: tensor<?x16xf32>, %wg: tensor<8x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects weight of shape [4, 16], got 'tensor<8x16xf32>'}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<8x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<8x16xf32>)
  return
}

// -----

func.func @gate_grad_weight_f16(%dl: tensor<?x4xf32>, %x: tensor<?x16xf32>, %wg: tensor<4x16xf16>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects weight to have element type 'f32', got 'tensor<4x16xf16>'}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf16>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>)
  return
}

// -----

func.func @gate_grad_grad_input_acc_shape(%dl: tensor<?x4xf32>, %x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x32xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects grad_input_acc of shape [T, 16], got 'tensor<?x32xf32>'}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x32xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>)
  return
}

// -----

func.func @gate_grad_grad_input_bf16(%dl: tensor<?x4xf32>, %x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects grad_input to have element type 'f32', got 'tensor<?x16xbf16>'}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xbf16>, tensor<4x16xf32>)
  return
}

// -----

func.func @gate_grad_grad_weight_shape(%dl: tensor<?x4xf32>, %x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects grad_weight of shape [4, 16], got 'tensor<16x4xf32>'}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<16x4xf32>)
  return
}

// -----

func.func @gate_grad_grad_bias_without_bias(%dl: tensor<?x4xf32>, %x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects grad_bias exactly when bias is set}}
  %dx, %dwg, %dbg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>)
  return
}

// -----

func.func @gate_grad_bias_without_grad_bias(%dl: tensor<?x4xf32>, %x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects grad_bias exactly when bias is set}}
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe {bias}
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>)
  return
}

// -----

func.func @gate_grad_grad_bias_shape(%dl: tensor<?x4xf32>, %x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects grad_bias of shape [4], got 'tensor<16xf32>'}}
  %dx, %dwg, %dbg = fmoe.gate_grad %dl, %x, %wg, %dxe {bias}
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>, tensor<16xf32>)
  return
}

// -----

func.func @gate_grad_grad_bias_f16(%dl: tensor<?x4xf32>, %x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %dxe: tensor<?x16xf32>) {
  // expected-error@+1 {{'fmoe.gate_grad' op expects grad_bias to have element type 'f32', got 'tensor<4xf16>'}}
  %dx, %dwg, %dbg = fmoe.gate_grad %dl, %x, %wg, %dxe {bias}
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf16>)
  return
}

// -----

// ===== Parse errors =====

func.func @unknown_activation(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  // expected-error@+2 {{expected ::mlir::fmoe::Activation to be one of: relu, gelu, gelu_tanh, silu, swiglu, geglu}}
  // expected-error@+1 {{failed to parse FMoE_ActivationAttr parameter 'value' which is to be a `::mlir::fmoe::Activation`}}
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation tanhh>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// -----

func.func @unknown_gate_kind(%l: tensor<?x4xf32>) {
  // expected-error@+2 {{expected ::mlir::fmoe::GateKind to be one of: naive, softmax_topk, sigmoid}}
  // expected-error@+1 {{failed to parse FMoE_GateKindAttr parameter 'value' which is to be a `::mlir::fmoe::GateKind`}}
  %i, %s = fmoe.route %l {gate = #fmoe<gate topk>, top_k = 2 : i64} : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return
}
