// RUN: fmoe-opt %s | fmoe-opt | FileCheck %s
// RUN: fmoe-opt %s --mlir-print-op-generic | fmoe-opt | FileCheck %s

// Round-trip tests of every fmoe op, in the custom and the generic form.
// Sizes: d_model D = 16, d_hidden H = 32, E = 4 experts, top_k K = 2;
// T (tokens) and R (routed rows) are dynamic. With world_size W = 2 each rank
// holds L = E / W = 2 experts.

// The grid used by the fmoe.all_to_all tests.
// CHECK: shard.grid @ranks(shape = 2)
shard.grid @ranks(shape = 2)

//===----------------------------------------------------------------------===//
// fmoe.moe
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td: every bias present, gelu, default (naive) gate.
// CHECK-LABEL: func.func @moe_example
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf32>
// CHECK-SAME:    %[[BG:[^:]+]]: tensor<4xf32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf32>
// CHECK-SAME:    %[[B1:[^:]+]]: tensor<4x32xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf32>
// CHECK-SAME:    %[[B2:[^:]+]]: tensor<4x16xf32>
// CHECK:         %[[Y:.+]] = fmoe.moe %[[X]] gate %[[WG]] bias %[[BG]] fc1 %[[W1]] bias %[[B1]] fc2 %[[W2]] bias %[[B2]]
// CHECK-SAME:      {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>, tensor<4x32x16xf32>, tensor<4x32xf32>, tensor<4x16x32xf32>, tensor<4x16xf32>) -> tensor<?x16xf32>
// CHECK:         return %[[Y]]
func.func @moe_example(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<4xf32>,
                       %w1: tensor<4x32x16xf32>, %b1: tensor<4x32xf32>,
                       %w2: tensor<4x16x32xf32>, %b2: tensor<4x16xf32>) -> tensor<?x16xf32> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>, tensor<4x32x16xf32>,
         tensor<4x32xf32>, tensor<4x16x32xf32>, tensor<4x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// No bias at all; the naive gate given explicitly is the default and is not
// printed.
// CHECK-LABEL: func.func @moe_no_bias
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf32>
// CHECK:         fmoe.moe %[[X]] gate %[[WG]] fc1 %[[W1]] fc2 %[[W2]]
// CHECK-SAME:      {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 1 : i64}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
func.func @moe_no_bias(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>,
                       %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) -> tensor<?x16xf32> {
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>, gate = #fmoe<gate naive>, num_experts = 4 : i64, top_k = 1 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// swiglu takes the up projection; bf16 storage; softmax_topk with
// renormalize and a capacity factor; gate bias only.
// CHECK-LABEL: func.func @moe_swiglu_bf16
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xbf16>
// CHECK-SAME:    %[[BG:[^:]+]]: tensor<4xbf16>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xbf16>
// CHECK-SAME:    %[[WU:[^:]+]]: tensor<4x32x16xbf16>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xbf16>
// CHECK:         fmoe.moe %[[X]] gate %[[WG]] bias %[[BG]] fc1 %[[W1]] up %[[WU]] fc2 %[[W2]]
// CHECK-SAME:      {activation = #fmoe<activation swiglu>, capacity_factor = 1.250000e+00 : f64, gate = #fmoe<gate softmax_topk>, num_experts = 4 : i64, renormalize, top_k = 2 : i64}
// CHECK-SAME:      : (tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<4xbf16>, tensor<4x32x16xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> tensor<?x16xbf16>
func.func @moe_swiglu_bf16(%x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>, %bg: tensor<4xbf16>,
                           %w1: tensor<4x32x16xbf16>, %wu: tensor<4x32x16xbf16>,
                           %w2: tensor<4x16x32xbf16>) -> tensor<?x16xbf16> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 up %wu fc2 %w2
      {activation = #fmoe<activation swiglu>, gate = #fmoe<gate softmax_topk>, renormalize,
       capacity_factor = 1.25, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<4xbf16>, tensor<4x32x16xbf16>,
         tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// geglu with every bias and the up projection in f16; sigmoid gate with
// renormalize; a static token count.
// CHECK-LABEL: func.func @moe_geglu_f16
// CHECK-SAME:    %[[X:[^:]+]]: tensor<8x16xf16>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf16>
// CHECK-SAME:    %[[BG:[^:]+]]: tensor<4xf16>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf16>
// CHECK-SAME:    %[[B1:[^:]+]]: tensor<4x32xf16>
// CHECK-SAME:    %[[WU:[^:]+]]: tensor<4x32x16xf16>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf16>
// CHECK-SAME:    %[[B2:[^:]+]]: tensor<4x16xf16>
// CHECK:         fmoe.moe %[[X]] gate %[[WG]] bias %[[BG]] fc1 %[[W1]] bias %[[B1]] up %[[WU]] fc2 %[[W2]] bias %[[B2]]
// CHECK-SAME:      {activation = #fmoe<activation geglu>, gate = #fmoe<gate sigmoid>, num_experts = 4 : i64, renormalize, top_k = 2 : i64}
// CHECK-SAME:      : (tensor<8x16xf16>, tensor<4x16xf16>, tensor<4xf16>, tensor<4x32x16xf16>, tensor<4x32xf16>, tensor<4x32x16xf16>, tensor<4x16x32xf16>, tensor<4x16xf16>) -> tensor<8x16xf16>
func.func @moe_geglu_f16(%x: tensor<8x16xf16>, %wg: tensor<4x16xf16>, %bg: tensor<4xf16>,
                         %w1: tensor<4x32x16xf16>, %b1: tensor<4x32xf16>, %wu: tensor<4x32x16xf16>,
                         %w2: tensor<4x16x32xf16>, %b2: tensor<4x16xf16>) -> tensor<8x16xf16> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 up %wu fc2 %w2 bias %b2
      {activation = #fmoe<activation geglu>, gate = #fmoe<gate sigmoid>, renormalize,
       num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<8x16xf16>, tensor<4x16xf16>, tensor<4xf16>, tensor<4x32x16xf16>, tensor<4x32xf16>,
         tensor<4x32x16xf16>, tensor<4x16x32xf16>, tensor<4x16xf16>) -> tensor<8x16xf16>
  return %y : tensor<8x16xf16>
}

// Experts spread over two ranks: the weights hold L = 2 experts; an explicit
// placement; fc2 bias without fc1 bias; sigmoid without renormalize.
// CHECK-LABEL: func.func @moe_distributed
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<2x32x16xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<2x16x32xf32>
// CHECK-SAME:    %[[B2:[^:]+]]: tensor<2x16xf32>
// CHECK:         fmoe.moe %[[X]] gate %[[WG]] fc1 %[[W1]] fc2 %[[W2]] bias %[[B2]]
// CHECK-SAME:      {activation = #fmoe<activation silu>, gate = #fmoe<gate sigmoid>, num_experts = 4 : i64, placement = array<i64: 0, 1, 0, 1>, top_k = 2 : i64, world_size = 2 : i64}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>, tensor<2x16xf32>) -> tensor<?x16xf32>
func.func @moe_distributed(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<2x32x16xf32>,
                           %w2: tensor<2x16x32xf32>, %b2: tensor<2x16xf32>) -> tensor<?x16xf32> {
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2 bias %b2
      {activation = #fmoe<activation silu>, gate = #fmoe<gate sigmoid>, num_experts = 4 : i64,
       top_k = 2 : i64, world_size = 2 : i64, placement = array<i64: 0, 1, 0, 1>}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>,
         tensor<2x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// gelu_tanh with fc1 bias only; world_size 2 without a placement.
// CHECK-LABEL: func.func @moe_gelu_tanh
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<2x32x16xf32>
// CHECK-SAME:    %[[B1:[^:]+]]: tensor<2x32xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<2x16x32xf32>
// CHECK:         fmoe.moe %[[X]] gate %[[WG]] fc1 %[[W1]] bias %[[B1]] fc2 %[[W2]]
// CHECK-SAME:      {activation = #fmoe<activation gelu_tanh>, num_experts = 4 : i64, top_k = 2 : i64, world_size = 2 : i64}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<2x32x16xf32>, tensor<2x32xf32>, tensor<2x16x32xf32>) -> tensor<?x16xf32>
func.func @moe_gelu_tanh(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %w1: tensor<2x32x16xf32>,
                         %b1: tensor<2x32xf32>, %w2: tensor<2x16x32xf32>) -> tensor<?x16xf32> {
  %y = fmoe.moe %x gate %wg fc1 %w1 bias %b1 fc2 %w2
      {activation = #fmoe<activation gelu_tanh>, num_experts = 4 : i64, top_k = 2 : i64,
       world_size = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<2x32x16xf32>, tensor<2x32xf32>,
         tensor<2x16x32xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

//===----------------------------------------------------------------------===//
// fmoe.gate
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td.
// CHECK-LABEL: func.func @gate_example
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf32>
// CHECK-SAME:    %[[BG:[^:]+]]: tensor<4xf32>
// CHECK:         fmoe.gate %[[X]], %[[WG]] bias %[[BG]]
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>) -> tensor<?x4xf32>
func.func @gate_example(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<4xf32>) -> tensor<?x4xf32> {
  %l = fmoe.gate %x, %wg bias %bg
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  return %l : tensor<?x4xf32>
}

// No bias, bf16 storage: the logits stay f32.
// CHECK-LABEL: func.func @gate_no_bias_bf16
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xbf16>
// CHECK:         fmoe.gate %[[X]], %[[WG]] :
// CHECK-SAME:      (tensor<?x16xbf16>, tensor<4x16xbf16>) -> tensor<?x4xf32>
func.func @gate_no_bias_bf16(%x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>) -> tensor<?x4xf32> {
  %l = fmoe.gate %x, %wg : (tensor<?x16xbf16>, tensor<4x16xbf16>) -> tensor<?x4xf32>
  return %l : tensor<?x4xf32>
}

// f16 with a bias and a static token count.
// CHECK-LABEL: func.func @gate_f16
// CHECK-SAME:    %[[X:[^:]+]]: tensor<8x16xf16>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf16>
// CHECK-SAME:    %[[BG:[^:]+]]: tensor<4xf16>
// CHECK:         fmoe.gate %[[X]], %[[WG]] bias %[[BG]]
// CHECK-SAME:      : (tensor<8x16xf16>, tensor<4x16xf16>, tensor<4xf16>) -> tensor<8x4xf32>
func.func @gate_f16(%x: tensor<8x16xf16>, %wg: tensor<4x16xf16>, %bg: tensor<4xf16>) -> tensor<8x4xf32> {
  %l = fmoe.gate %x, %wg bias %bg
      : (tensor<8x16xf16>, tensor<4x16xf16>, tensor<4xf16>) -> tensor<8x4xf32>
  return %l : tensor<8x4xf32>
}

//===----------------------------------------------------------------------===//
// fmoe.route
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td; the naive gate is the default and not printed.
// CHECK-LABEL: func.func @route_example
// CHECK-SAME:    %[[L:[^:]+]]: tensor<?x4xf32>
// CHECK:         %[[I:.+]], %[[S:.+]] = fmoe.route %[[L]] {top_k = 2 : i64}
// CHECK-SAME:      : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
// CHECK:         return %[[I]], %[[S]]
func.func @route_example(%l: tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %i, %s = fmoe.route %l {gate = #fmoe<gate naive>, top_k = 2 : i64}
      : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return %i, %s : tensor<?x2xi32>, tensor<?x2xf32>
}

// CHECK-LABEL: func.func @route_softmax_topk
// CHECK-SAME:    %[[L:[^:]+]]: tensor<?x4xf32>
// CHECK:         fmoe.route %[[L]] {gate = #fmoe<gate softmax_topk>, renormalize, top_k = 2 : i64}
// CHECK-SAME:      : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
func.func @route_softmax_topk(%l: tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>) {
  %i, %s = fmoe.route %l {gate = #fmoe<gate softmax_topk>, renormalize, top_k = 2 : i64}
      : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  return %i, %s : tensor<?x2xi32>, tensor<?x2xf32>
}

// top_k = 1 with the sigmoid gate and no renormalize; top_k = num_experts
// with softmax_topk and a static token count.
// CHECK-LABEL: func.func @route_sigmoid
// CHECK-SAME:    %[[L:[^:]+]]: tensor<?x4xf32>
// CHECK-SAME:    %[[L8:[^:]+]]: tensor<8x4xf32>
// CHECK:         fmoe.route %[[L]] {gate = #fmoe<gate sigmoid>, top_k = 1 : i64}
// CHECK-SAME:      : (tensor<?x4xf32>) -> (tensor<?x1xi32>, tensor<?x1xf32>)
// CHECK:         fmoe.route %[[L8]] {gate = #fmoe<gate softmax_topk>, top_k = 4 : i64}
// CHECK-SAME:      : (tensor<8x4xf32>) -> (tensor<8x4xi32>, tensor<8x4xf32>)
func.func @route_sigmoid(%l: tensor<?x4xf32>, %l8: tensor<8x4xf32>) {
  %i, %s = fmoe.route %l {gate = #fmoe<gate sigmoid>, top_k = 1 : i64}
      : (tensor<?x4xf32>) -> (tensor<?x1xi32>, tensor<?x1xf32>)
  %i8, %s8 = fmoe.route %l8 {gate = #fmoe<gate softmax_topk>, top_k = 4 : i64}
      : (tensor<8x4xf32>) -> (tensor<8x4xi32>, tensor<8x4xf32>)
  return
}

//===----------------------------------------------------------------------===//
// fmoe.gate_route
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td.
// CHECK-LABEL: func.func @gate_route_example
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf32>
// CHECK-SAME:    %[[BG:[^:]+]]: tensor<4xf32>
// CHECK:         fmoe.gate_route %[[X]], %[[WG]] bias %[[BG]] {top_k = 2 : i64}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
func.func @gate_route_example(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<4xf32>) {
  %l, %i, %s, %c = fmoe.gate_route %x, %wg bias %bg {top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>)
      -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// CHECK-LABEL: func.func @gate_route_sigmoid_bf16
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xbf16>
// CHECK:         fmoe.gate_route %[[X]], %[[WG]] {gate = #fmoe<gate sigmoid>, renormalize, top_k = 2 : i64}
// CHECK-SAME:      : (tensor<?x16xbf16>, tensor<4x16xbf16>) -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
func.func @gate_route_sigmoid_bf16(%x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>) {
  %l, %i, %s, %c = fmoe.gate_route %x, %wg {gate = #fmoe<gate sigmoid>, renormalize, top_k = 2 : i64}
      : (tensor<?x16xbf16>, tensor<4x16xbf16>)
      -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
  return
}

// CHECK-LABEL: func.func @gate_route_softmax_topk_f16
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf16>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf16>
// CHECK-SAME:    %[[BG:[^:]+]]: tensor<4xf16>
// CHECK:         fmoe.gate_route %[[X]], %[[WG]] bias %[[BG]] {gate = #fmoe<gate softmax_topk>, top_k = 1 : i64}
// CHECK-SAME:      : (tensor<?x16xf16>, tensor<4x16xf16>, tensor<4xf16>) -> (tensor<?x4xf32>, tensor<?x1xi32>, tensor<?x1xf32>, tensor<4xi32>)
func.func @gate_route_softmax_topk_f16(%x: tensor<?x16xf16>, %wg: tensor<4x16xf16>, %bg: tensor<4xf16>) {
  %l, %i, %s, %c = fmoe.gate_route %x, %wg bias %bg {gate = #fmoe<gate softmax_topk>, top_k = 1 : i64}
      : (tensor<?x16xf16>, tensor<4x16xf16>, tensor<4xf16>)
      -> (tensor<?x4xf32>, tensor<?x1xi32>, tensor<?x1xf32>, tensor<4xi32>)
  return
}

//===----------------------------------------------------------------------===//
// fmoe.dispatch
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td.
// CHECK-LABEL: func.func @dispatch_example
// CHECK-SAME:    %[[I:[^:]+]]: tensor<?x2xi32>
// CHECK:         fmoe.dispatch %[[I]] {num_experts = 4 : i64}
// CHECK-SAME:      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
func.func @dispatch_example(%i: tensor<?x2xi32>) {
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// Counts from a fused gate, a capacity factor and an expert order.
// CHECK-LABEL: func.func @dispatch_counts
// CHECK-SAME:    %[[I:[^:]+]]: tensor<?x2xi32>
// CHECK-SAME:    %[[C:[^:]+]]: tensor<4xi32>
// CHECK:         fmoe.dispatch %[[I]] counts %[[C]]
// CHECK-SAME:      {capacity_factor = 1.500000e+00 : f64, expert_order = array<i64: 0, 2, 1, 3>, num_experts = 4 : i64}
// CHECK-SAME:      : (tensor<?x2xi32>, tensor<4xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
func.func @dispatch_counts(%i: tensor<?x2xi32>, %c: tensor<4xi32>) {
  %o, %p, %t = fmoe.dispatch %i counts %c
      {num_experts = 4 : i64, capacity_factor = 1.5, expert_order = array<i64: 0, 2, 1, 3>}
      : (tensor<?x2xi32>, tensor<4xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  return
}

// Static shapes: T = 8, K = 1, R = T*K = 8.
// CHECK-LABEL: func.func @dispatch_static
// CHECK-SAME:    %[[I:[^:]+]]: tensor<8x1xi32>
// CHECK:         fmoe.dispatch %[[I]] {capacity_factor = 2.000000e+00 : f64, num_experts = 4 : i64}
// CHECK-SAME:      : (tensor<8x1xi32>) -> (tensor<5xi32>, tensor<8x1xi32>, tensor<8xi32>)
func.func @dispatch_static(%i: tensor<8x1xi32>) {
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64, capacity_factor = 2.0}
      : (tensor<8x1xi32>) -> (tensor<5xi32>, tensor<8x1xi32>, tensor<8xi32>)
  return
}

//===----------------------------------------------------------------------===//
// fmoe.gather
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td, and the bf16 and f16 forms.
// CHECK-LABEL: func.func @gather_example
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[T:[^:]+]]: tensor<?xi32>
// CHECK-SAME:    %[[XB:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[XH:[^:]+]]: tensor<?x16xf16>
// CHECK:         fmoe.gather %[[X]], %[[T]] : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?x16xf32>
// CHECK:         fmoe.gather %[[XB]], %[[T]] : (tensor<?x16xbf16>, tensor<?xi32>) -> tensor<?x16xbf16>
// CHECK:         fmoe.gather %[[XH]], %[[T]] : (tensor<?x16xf16>, tensor<?xi32>) -> tensor<?x16xf16>
func.func @gather_example(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %xb: tensor<?x16xbf16>,
                          %xh: tensor<?x16xf16>) {
  %r = fmoe.gather %x, %t : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?x16xf32>
  %rb = fmoe.gather %xb, %t : (tensor<?x16xbf16>, tensor<?xi32>) -> tensor<?x16xbf16>
  %rh = fmoe.gather %xh, %t : (tensor<?x16xf16>, tensor<?xi32>) -> tensor<?x16xf16>
  return
}

//===----------------------------------------------------------------------===//
// fmoe.expert
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td.
// CHECK-LABEL: func.func @expert_example
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf32>
// CHECK-SAME:    %[[B1:[^:]+]]: tensor<4x32xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf32>
// CHECK-SAME:    %[[B2:[^:]+]]: tensor<4x16xf32>
// CHECK:         fmoe.expert %[[R]], %[[O]] fc1 %[[W1]] bias %[[B1]] fc2 %[[W2]] bias %[[B2]]
// CHECK-SAME:      {activation = #fmoe<activation gelu>}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x32xf32>, tensor<4x16x32xf32>, tensor<4x16xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
func.func @expert_example(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>,
                          %b1: tensor<4x32xf32>, %w2: tensor<4x16x32xf32>, %b2: tensor<4x16xf32>) {
  %y, %h = fmoe.expert %r, %o fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x32xf32>,
         tensor<4x16x32xf32>, tensor<4x16xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// The activations kept for the backward (non-GLU forms), as a third result.
// CHECK-LABEL: func.func @expert_keeps_activations
// CHECK:         %{{.*}}, %{{.*}}, %{{.*}} = fmoe.expert %{{.*}} fc1 %{{.*}} bias %{{.*}} fc2 %{{.*}} bias %{{.*}} {activation = #fmoe<activation gelu>}
// CHECK-SAME:      -> (tensor<?x16xbf16>, tensor<?x32xbf16>, tensor<?x32xbf16>)
func.func @expert_keeps_activations(%r: tensor<?x16xbf16>, %o: tensor<5xi32>, %w1: tensor<4x32x16xbf16>,
                                    %b1: tensor<4x32xbf16>, %w2: tensor<4x16x32xbf16>, %b2: tensor<4x16xbf16>) {
  %y, %h, %a = fmoe.expert %r, %o fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>}
      : (tensor<?x16xbf16>, tensor<5xi32>, tensor<4x32x16xbf16>, tensor<4x32xbf16>,
         tensor<4x16x32xbf16>, tensor<4x16xbf16>) -> (tensor<?x16xbf16>, tensor<?x32xbf16>, tensor<?x32xbf16>)
  return
}

// No bias; relu.
// CHECK-LABEL: func.func @expert_no_bias
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf32>
// CHECK:         fmoe.expert %[[R]], %[[O]] fc1 %[[W1]] fc2 %[[W2]] {activation = #fmoe<activation relu>}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
func.func @expert_no_bias(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf32>,
                          %w2: tensor<4x16x32xf32>) {
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

// swiglu in bf16 with fc1 bias and the up projection: h is [R, 2H].
// CHECK-LABEL: func.func @expert_swiglu_bf16
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xbf16>
// CHECK-SAME:    %[[B1:[^:]+]]: tensor<4x32xbf16>
// CHECK-SAME:    %[[WU:[^:]+]]: tensor<4x32x16xbf16>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xbf16>
// CHECK:         fmoe.expert %[[R]], %[[O]] fc1 %[[W1]] bias %[[B1]] up %[[WU]] fc2 %[[W2]] {activation = #fmoe<activation swiglu>}
// CHECK-SAME:      : (tensor<?x16xbf16>, tensor<5xi32>, tensor<4x32x16xbf16>, tensor<4x32xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> (tensor<?x16xbf16>, tensor<?x64xbf16>)
func.func @expert_swiglu_bf16(%r: tensor<?x16xbf16>, %o: tensor<5xi32>, %w1: tensor<4x32x16xbf16>,
                              %b1: tensor<4x32xbf16>, %wu: tensor<4x32x16xbf16>,
                              %w2: tensor<4x16x32xbf16>) {
  %y, %h = fmoe.expert %r, %o fc1 %w1 bias %b1 up %wu fc2 %w2
      {activation = #fmoe<activation swiglu>}
      : (tensor<?x16xbf16>, tensor<5xi32>, tensor<4x32x16xbf16>, tensor<4x32xbf16>,
         tensor<4x32x16xbf16>, tensor<4x16x32xbf16>) -> (tensor<?x16xbf16>, tensor<?x64xbf16>)
  return
}

// geglu in f16 with the up projection and fc2 bias.
// CHECK-LABEL: func.func @expert_geglu_f16
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xf16>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf16>
// CHECK-SAME:    %[[WU:[^:]+]]: tensor<4x32x16xf16>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf16>
// CHECK-SAME:    %[[B2:[^:]+]]: tensor<4x16xf16>
// CHECK:         fmoe.expert %[[R]], %[[O]] fc1 %[[W1]] up %[[WU]] fc2 %[[W2]] bias %[[B2]] {activation = #fmoe<activation geglu>}
// CHECK-SAME:      : (tensor<?x16xf16>, tensor<5xi32>, tensor<4x32x16xf16>, tensor<4x32x16xf16>, tensor<4x16x32xf16>, tensor<4x16xf16>) -> (tensor<?x16xf16>, tensor<?x64xf16>)
func.func @expert_geglu_f16(%r: tensor<?x16xf16>, %o: tensor<5xi32>, %w1: tensor<4x32x16xf16>,
                            %wu: tensor<4x32x16xf16>, %w2: tensor<4x16x32xf16>,
                            %b2: tensor<4x16xf16>) {
  %y, %h = fmoe.expert %r, %o fc1 %w1 up %wu fc2 %w2 bias %b2
      {activation = #fmoe<activation geglu>}
      : (tensor<?x16xf16>, tensor<5xi32>, tensor<4x32x16xf16>, tensor<4x32x16xf16>,
         tensor<4x16x32xf16>, tensor<4x16xf16>) -> (tensor<?x16xf16>, tensor<?x64xf16>)
  return
}

// After an all-to-all over two ranks: L = 2 local experts, G = L * W = 4
// groups, so 5 offsets; silu.
// CHECK-LABEL: func.func @expert_local
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<2x32x16xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<2x16x32xf32>
// CHECK:         fmoe.expert %[[R]], %[[O]] fc1 %[[W1]] fc2 %[[W2]] {activation = #fmoe<activation silu>}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<5xi32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>)
func.func @expert_local(%r: tensor<?x16xf32>, %o: tensor<5xi32>, %w1: tensor<2x32x16xf32>,
                        %w2: tensor<2x16x32xf32>) {
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation silu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>)
  return
}

//===----------------------------------------------------------------------===//
// fmoe.fused_expert
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td.
// CHECK-LABEL: func.func @fused_expert_example
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[T:[^:]+]]: tensor<?xi32>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[P:[^:]+]]: tensor<?x2xi32>
// CHECK-SAME:    %[[S:[^:]+]]: tensor<?x2xf32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf32>
// CHECK:         fmoe.fused_expert %[[X]], %[[T]], %[[O]], %[[P]], %[[S]] fc1 %[[W1]] fc2 %[[W2]]
// CHECK-SAME:      {activation = #fmoe<activation relu>}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>) -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
func.func @fused_expert_example(%x: tensor<?x16xf32>, %t: tensor<?xi32>, %o: tensor<5xi32>,
                                %p: tensor<?x2xi32>, %s: tensor<?x2xf32>,
                                %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>) {
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : (tensor<?x16xf32>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>,
         tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>, tensor<?x16xf32>)
  return
}

// swiglu in bf16 with every bias and the up projection: h is [R, 2H].
// CHECK-LABEL: func.func @fused_expert_swiglu_bf16
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[T:[^:]+]]: tensor<?xi32>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[P:[^:]+]]: tensor<?x2xi32>
// CHECK-SAME:    %[[S:[^:]+]]: tensor<?x2xf32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xbf16>
// CHECK-SAME:    %[[B1:[^:]+]]: tensor<4x32xbf16>
// CHECK-SAME:    %[[WU:[^:]+]]: tensor<4x32x16xbf16>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xbf16>
// CHECK-SAME:    %[[B2:[^:]+]]: tensor<4x16xbf16>
// CHECK:         fmoe.fused_expert %[[X]], %[[T]], %[[O]], %[[P]], %[[S]] fc1 %[[W1]] bias %[[B1]] up %[[WU]] fc2 %[[W2]] bias %[[B2]]
// CHECK-SAME:      {activation = #fmoe<activation swiglu>}
// CHECK-SAME:      : (tensor<?x16xbf16>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4x32x16xbf16>, tensor<4x32xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>, tensor<4x16xbf16>) -> (tensor<?x16xbf16>, tensor<?x64xbf16>, tensor<?x16xbf16>)
func.func @fused_expert_swiglu_bf16(%x: tensor<?x16xbf16>, %t: tensor<?xi32>, %o: tensor<5xi32>,
                                    %p: tensor<?x2xi32>, %s: tensor<?x2xf32>,
                                    %w1: tensor<4x32x16xbf16>, %b1: tensor<4x32xbf16>,
                                    %wu: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>,
                                    %b2: tensor<4x16xbf16>) {
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 bias %b1 up %wu fc2 %w2 bias %b2
      {activation = #fmoe<activation swiglu>}
      : (tensor<?x16xbf16>, tensor<?xi32>, tensor<5xi32>, tensor<?x2xi32>, tensor<?x2xf32>,
         tensor<4x32x16xbf16>, tensor<4x32xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>,
         tensor<4x16xbf16>)
      -> (tensor<?x16xbf16>, tensor<?x64xbf16>, tensor<?x16xbf16>)
  return
}

// gelu in f16 with the fc2 bias only, static T = 8, K = 1.
// CHECK-LABEL: func.func @fused_expert_gelu_f16
// CHECK-SAME:    %[[X:[^:]+]]: tensor<8x16xf16>
// CHECK-SAME:    %[[T:[^:]+]]: tensor<8xi32>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[P:[^:]+]]: tensor<8x1xi32>
// CHECK-SAME:    %[[S:[^:]+]]: tensor<8x1xf32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf16>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf16>
// CHECK-SAME:    %[[B2:[^:]+]]: tensor<4x16xf16>
// CHECK:         fmoe.fused_expert %[[X]], %[[T]], %[[O]], %[[P]], %[[S]] fc1 %[[W1]] fc2 %[[W2]] bias %[[B2]]
// CHECK-SAME:      {activation = #fmoe<activation gelu>}
// CHECK-SAME:      : (tensor<8x16xf16>, tensor<8xi32>, tensor<5xi32>, tensor<8x1xi32>, tensor<8x1xf32>, tensor<4x32x16xf16>, tensor<4x16x32xf16>, tensor<4x16xf16>) -> (tensor<8x16xf16>, tensor<8x32xf16>, tensor<8x16xf16>)
func.func @fused_expert_gelu_f16(%x: tensor<8x16xf16>, %t: tensor<8xi32>, %o: tensor<5xi32>,
                                 %p: tensor<8x1xi32>, %s: tensor<8x1xf32>,
                                 %w1: tensor<4x32x16xf16>, %w2: tensor<4x16x32xf16>,
                                 %b2: tensor<4x16xf16>) {
  %out, %h, %y = fmoe.fused_expert %x, %t, %o, %p, %s fc1 %w1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>}
      : (tensor<8x16xf16>, tensor<8xi32>, tensor<5xi32>, tensor<8x1xi32>, tensor<8x1xf32>,
         tensor<4x32x16xf16>, tensor<4x16x32xf16>, tensor<4x16xf16>)
      -> (tensor<8x16xf16>, tensor<8x32xf16>, tensor<8x16xf16>)
  return
}

//===----------------------------------------------------------------------===//
// fmoe.combine
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td, and bf16 / f16 rows (the scores stay f32).
// CHECK-LABEL: func.func @combine_example
// CHECK-SAME:    %[[Y:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[P:[^:]+]]: tensor<?x2xi32>
// CHECK-SAME:    %[[S:[^:]+]]: tensor<?x2xf32>
// CHECK-SAME:    %[[YB:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[YH:[^:]+]]: tensor<?x16xf16>
// CHECK:         fmoe.combine %[[Y]], %[[P]], %[[S]] : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
// CHECK:         fmoe.combine %[[YB]], %[[P]], %[[S]] : (tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xbf16>
// CHECK:         fmoe.combine %[[YH]], %[[P]], %[[S]] : (tensor<?x16xf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf16>
func.func @combine_example(%y: tensor<?x16xf32>, %p: tensor<?x2xi32>, %s: tensor<?x2xf32>,
                           %yb: tensor<?x16xbf16>, %yh: tensor<?x16xf16>) {
  %out = fmoe.combine %y, %p, %s
      : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  %outb = fmoe.combine %yb, %p, %s
      : (tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xbf16>
  %outh = fmoe.combine %yh, %p, %s
      : (tensor<?x16xf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf16>
  return
}

//===----------------------------------------------------------------------===//
// fmoe.all_to_all
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td (the grid @ranks is at the top of the file).
// CHECK-LABEL: func.func @all_to_all_example
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK:         fmoe.all_to_all %[[R]], %[[O]] on @ranks {placement = array<i64: 0, 0, 1, 1>}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
func.func @all_to_all_example(%rows: tensor<?x16xf32>, %o: tensor<5xi32>) {
  %r, %ro = fmoe.all_to_all %rows, %o on @ranks {placement = array<i64: 0, 0, 1, 1>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

// The exchange there and back (reverse), with bf16 rows and an interleaved
// placement.
// CHECK-LABEL: func.func @all_to_all_reverse
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK:         %[[R1:.+]], %[[O1:.+]] = fmoe.all_to_all %[[R]], %[[O]] on @ranks {placement = array<i64: 0, 1, 0, 1>}
// CHECK-SAME:      : (tensor<?x16xbf16>, tensor<5xi32>) -> (tensor<?x16xbf16>, tensor<5xi32>)
// CHECK:         fmoe.all_to_all %[[R1]], %[[O1]] on @ranks {placement = array<i64: 0, 1, 0, 1>, reverse}
// CHECK-SAME:      : (tensor<?x16xbf16>, tensor<5xi32>) -> (tensor<?x16xbf16>, tensor<5xi32>)
func.func @all_to_all_reverse(%rows: tensor<?x16xbf16>, %o: tensor<5xi32>) {
  %r, %ro = fmoe.all_to_all %rows, %o on @ranks {placement = array<i64: 0, 1, 0, 1>}
      : (tensor<?x16xbf16>, tensor<5xi32>) -> (tensor<?x16xbf16>, tensor<5xi32>)
  %b, %bo = fmoe.all_to_all %r, %ro on @ranks {placement = array<i64: 0, 1, 0, 1>, reverse}
      : (tensor<?x16xbf16>, tensor<5xi32>) -> (tensor<?x16xbf16>, tensor<5xi32>)
  return
}

// Expert 2 shadowed: the expert side has L + S = 3 experts, one group per
// source rank each (7 offsets).
// CHECK-LABEL: func.func @all_to_all_shadow
// CHECK:         fmoe.all_to_all %{{.*}}, %{{.*}} on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<7xi32>)
// CHECK:         fmoe.all_to_all %{{.*}}, %{{.*}} on @ranks {placement = array<i64: 0, 0, 1, 1>, reverse, shadow = array<i64: 2>}
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<7xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
func.func @all_to_all_shadow(%rows: tensor<?x16xf32>, %o: tensor<5xi32>) {
  %r, %ro = fmoe.all_to_all %rows, %o on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<?x16xf32>, tensor<5xi32>) -> (tensor<?x16xf32>, tensor<7xi32>)
  %b, %bo = fmoe.all_to_all %r, %ro on @ranks {placement = array<i64: 0, 0, 1, 1>, reverse, shadow = array<i64: 2>}
      : (tensor<?x16xf32>, tensor<7xi32>) -> (tensor<?x16xf32>, tensor<5xi32>)
  return
}

//===----------------------------------------------------------------------===//
// fmoe.replicate, fmoe.replicate_grad
//===----------------------------------------------------------------------===//

// The examples of FMoEOps.td, and a bf16 bias with two shadowed experts.
// CHECK-LABEL: func.func @replicate_example
// CHECK:         %[[W:.+]] = fmoe.replicate %{{.*}} on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
// CHECK-SAME:      : (tensor<2x32x16xf32>) -> tensor<3x32x16xf32>
// CHECK:         fmoe.replicate_grad %[[W]] on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
// CHECK-SAME:      : (tensor<3x32x16xf32>) -> tensor<2x32x16xf32>
// CHECK:         fmoe.replicate %{{.*}} on @ranks {placement = array<i64: 0, 1, 0, 1>, shadow = array<i64: 3, 0>}
// CHECK-SAME:      : (tensor<2x32xbf16>) -> tensor<4x32xbf16>
func.func @replicate_example(%w1: tensor<2x32x16xf32>, %b1: tensor<2x32xbf16>) {
  %w = fmoe.replicate %w1 on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<2x32x16xf32>) -> tensor<3x32x16xf32>
  %dw = fmoe.replicate_grad %w on @ranks {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 2>}
      : (tensor<3x32x16xf32>) -> tensor<2x32x16xf32>
  %b = fmoe.replicate %b1 on @ranks {placement = array<i64: 0, 1, 0, 1>, shadow = array<i64: 3, 0>}
      : (tensor<2x32xbf16>) -> tensor<4x32xbf16>
  return
}

// f16 rows.
// CHECK-LABEL: func.func @all_to_all_f16
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xf16>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK:         fmoe.all_to_all %[[R]], %[[O]] on @ranks {placement = array<i64: 1, 1, 0, 0>, reverse}
// CHECK-SAME:      : (tensor<?x16xf16>, tensor<5xi32>) -> (tensor<?x16xf16>, tensor<5xi32>)
func.func @all_to_all_f16(%rows: tensor<?x16xf16>, %o: tensor<5xi32>) {
  %r, %ro = fmoe.all_to_all %rows, %o on @ranks {placement = array<i64: 1, 1, 0, 0>, reverse}
      : (tensor<?x16xf16>, tensor<5xi32>) -> (tensor<?x16xf16>, tensor<5xi32>)
  return
}

//===----------------------------------------------------------------------===//
// fmoe.combine_grad
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td.
// CHECK-LABEL: func.func @combine_grad_example
// CHECK-SAME:    %[[DOUT:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[Y:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[P:[^:]+]]: tensor<?x2xi32>
// CHECK-SAME:    %[[S:[^:]+]]: tensor<?x2xf32>
// CHECK:         fmoe.combine_grad %[[DOUT]], %[[Y]], %[[P]], %[[S]]
// CHECK-SAME:      : (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?x16xf32>, tensor<?x2xf32>)
func.func @combine_grad_example(%dout: tensor<?x16xf32>, %y: tensor<?x16xf32>,
                                %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>)
      -> (tensor<?x16xf32>, tensor<?x2xf32>)
  return
}

// CHECK-LABEL: func.func @combine_grad_bf16
// CHECK-SAME:    %[[DOUT:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[Y:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[P:[^:]+]]: tensor<?x2xi32>
// CHECK-SAME:    %[[S:[^:]+]]: tensor<?x2xf32>
// CHECK:         fmoe.combine_grad %[[DOUT]], %[[Y]], %[[P]], %[[S]]
// CHECK-SAME:      : (tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>) -> (tensor<?x16xbf16>, tensor<?x2xf32>)
func.func @combine_grad_bf16(%dout: tensor<?x16xbf16>, %y: tensor<?x16xbf16>,
                             %p: tensor<?x2xi32>, %s: tensor<?x2xf32>) {
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<?x2xi32>, tensor<?x2xf32>)
      -> (tensor<?x16xbf16>, tensor<?x2xf32>)
  return
}

// CHECK-LABEL: func.func @combine_grad_f16
// CHECK-SAME:    %[[DOUT:[^:]+]]: tensor<8x16xf16>
// CHECK-SAME:    %[[Y:[^:]+]]: tensor<?x16xf16>
// CHECK-SAME:    %[[P:[^:]+]]: tensor<8x2xi32>
// CHECK-SAME:    %[[S:[^:]+]]: tensor<8x2xf32>
// CHECK:         fmoe.combine_grad %[[DOUT]], %[[Y]], %[[P]], %[[S]]
// CHECK-SAME:      : (tensor<8x16xf16>, tensor<?x16xf16>, tensor<8x2xi32>, tensor<8x2xf32>) -> (tensor<?x16xf16>, tensor<8x2xf32>)
func.func @combine_grad_f16(%dout: tensor<8x16xf16>, %y: tensor<?x16xf16>,
                            %p: tensor<8x2xi32>, %s: tensor<8x2xf32>) {
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<8x16xf16>, tensor<?x16xf16>, tensor<8x2xi32>, tensor<8x2xf32>)
      -> (tensor<?x16xf16>, tensor<8x2xf32>)
  return
}

//===----------------------------------------------------------------------===//
// fmoe.expert_grad
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td. The optional results (grad_fc1_bias,
// grad_up_weight, grad_fc2_bias) are named in the type list, which lists
// grad_rows, grad_fc1_weight and grad_fc2_weight first; the results
// themselves stay in result order.
// CHECK-LABEL: func.func @expert_grad_example
// CHECK-SAME:    %[[DY:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[H:[^:]+]]: tensor<?x32xf32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf32>
// CHECK:         %[[DR:[^ ,]+]], %[[DW1:[^ ,]+]], %[[DB1:[^ ,]+]], %[[DW2:[^ ,]+]], %[[DB2:[^ ,]+]] = fmoe.expert_grad %[[DY]], %[[R]], %[[O]], %[[H]] fc1 %[[W1]] fc2 %[[W2]]
// CHECK-SAME:      {activation = #fmoe<activation gelu>}
// CHECK-SAME:      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> fc1_bias tensor<4x32xf32> fc2_bias tensor<4x16xf32>{{$}}
// CHECK:         return %[[DR]], %[[DW1]], %[[DB1]], %[[DW2]], %[[DB2]]
func.func @expert_grad_example(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>,
                               %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>,
                               %w2: tensor<4x16x32xf32>)
    -> (tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x32xf32>, tensor<4x16x32xf32>,
        tensor<4x16xf32>) {
  %dr, %dw1, %db1, %dw2, %db2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation gelu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>,
        tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
         fc1_bias tensor<4x32xf32> fc2_bias tensor<4x16xf32>
  return %dr, %dw1, %db1, %dw2, %db2
      : tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x32xf32>, tensor<4x16x32xf32>,
        tensor<4x16xf32>
}

// With the activations the forward kept (`act`, after h).
// CHECK-LABEL: func.func @expert_grad_kept_activations
// CHECK:         fmoe.expert_grad %{{[^,]+}}, %{{[^,]+}}, %{{[^,]+}}, %[[H:[^ ]+]] act %[[A:[^ ]+]] fc1
// CHECK-SAME:      : tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<5xi32>, tensor<?x32xbf16>, tensor<?x32xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>
func.func @expert_grad_kept_activations(%dy: tensor<?x16xbf16>, %r: tensor<?x16xbf16>, %o: tensor<5xi32>,
                                        %h: tensor<?x32xbf16>, %a: tensor<?x32xbf16>,
                                        %w1: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>) {
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h act %a fc1 %w1 fc2 %w2
      {activation = #fmoe<activation gelu>}
      : tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<5xi32>, tensor<?x32xbf16>, tensor<?x32xbf16>,
        tensor<4x32x16xbf16>, tensor<4x16x32xbf16>
      -> tensor<?x16xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>
  return
}

// No bias: only grad_rows and the two weight gradients.
// CHECK-LABEL: func.func @expert_grad_no_bias
// CHECK-SAME:    %[[DY:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[H:[^:]+]]: tensor<?x32xf32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf32>
// CHECK:         fmoe.expert_grad %[[DY]], %[[R]], %[[O]], %[[H]] fc1 %[[W1]] fc2 %[[W2]]
// CHECK-SAME:      {activation = #fmoe<activation relu>}
// CHECK-SAME:      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>{{$}}
func.func @expert_grad_no_bias(%dy: tensor<?x16xf32>, %r: tensor<?x16xf32>, %o: tensor<5xi32>,
                               %h: tensor<?x32xf32>, %w1: tensor<4x32x16xf32>,
                               %w2: tensor<4x16x32xf32>) {
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>,
        tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  return
}

// swiglu in bf16: the up projection gives grad_up_weight and h is [R, 2H];
// fc1 bias only. In the type list the grad_up_weight type follows `up`.
// CHECK-LABEL: func.func @expert_grad_swiglu_bf16
// CHECK-SAME:    %[[DY:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[H:[^:]+]]: tensor<?x64xbf16>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xbf16>
// CHECK-SAME:    %[[WU:[^:]+]]: tensor<4x32x16xbf16>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xbf16>
// CHECK:         fmoe.expert_grad %[[DY]], %[[R]], %[[O]], %[[H]] fc1 %[[W1]] up %[[WU]] fc2 %[[W2]]
// CHECK-SAME:      {activation = #fmoe<activation swiglu>}
// CHECK-SAME:      : tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<5xi32>, tensor<?x64xbf16>, tensor<4x32x16xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16> -> tensor<?x16xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16> fc1_bias tensor<4x32xbf16> up tensor<4x32x16xbf16>{{$}}
func.func @expert_grad_swiglu_bf16(%dy: tensor<?x16xbf16>, %r: tensor<?x16xbf16>, %o: tensor<5xi32>,
                                   %h: tensor<?x64xbf16>, %w1: tensor<4x32x16xbf16>,
                                   %wu: tensor<4x32x16xbf16>, %w2: tensor<4x16x32xbf16>) {
  %dr, %dw1, %db1, %dwu, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 up %wu fc2 %w2
      {activation = #fmoe<activation swiglu>}
      : tensor<?x16xbf16>, tensor<?x16xbf16>, tensor<5xi32>, tensor<?x64xbf16>,
        tensor<4x32x16xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>
      -> tensor<?x16xbf16>, tensor<4x32x16xbf16>, tensor<4x16x32xbf16>
         fc1_bias tensor<4x32xbf16> up tensor<4x32x16xbf16>
  return
}

// geglu in f16 on two local experts (after an all-to-all), fc2 bias only.
// CHECK-LABEL: func.func @expert_grad_geglu_f16
// CHECK-SAME:    %[[DY:[^:]+]]: tensor<?x16xf16>
// CHECK-SAME:    %[[R:[^:]+]]: tensor<?x16xf16>
// CHECK-SAME:    %[[O:[^:]+]]: tensor<5xi32>
// CHECK-SAME:    %[[H:[^:]+]]: tensor<?x64xf16>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<2x32x16xf16>
// CHECK-SAME:    %[[WU:[^:]+]]: tensor<2x32x16xf16>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<2x16x32xf16>
// CHECK:         fmoe.expert_grad %[[DY]], %[[R]], %[[O]], %[[H]] fc1 %[[W1]] up %[[WU]] fc2 %[[W2]]
// CHECK-SAME:      {activation = #fmoe<activation geglu>}
// CHECK-SAME:      : tensor<?x16xf16>, tensor<?x16xf16>, tensor<5xi32>, tensor<?x64xf16>, tensor<2x32x16xf16>, tensor<2x32x16xf16>, tensor<2x16x32xf16> -> tensor<?x16xf16>, tensor<2x32x16xf16>, tensor<2x16x32xf16> up tensor<2x32x16xf16> fc2_bias tensor<2x16xf16>{{$}}
func.func @expert_grad_geglu_f16(%dy: tensor<?x16xf16>, %r: tensor<?x16xf16>, %o: tensor<5xi32>,
                                 %h: tensor<?x64xf16>, %w1: tensor<2x32x16xf16>,
                                 %wu: tensor<2x32x16xf16>, %w2: tensor<2x16x32xf16>) {
  %dr, %dw1, %dwu, %dw2, %db2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 up %wu fc2 %w2
      {activation = #fmoe<activation geglu>}
      : tensor<?x16xf16>, tensor<?x16xf16>, tensor<5xi32>, tensor<?x64xf16>,
        tensor<2x32x16xf16>, tensor<2x32x16xf16>, tensor<2x16x32xf16>
      -> tensor<?x16xf16>, tensor<2x32x16xf16>, tensor<2x16x32xf16>
         up tensor<2x32x16xf16> fc2_bias tensor<2x16xf16>
  return
}

//===----------------------------------------------------------------------===//
// fmoe.gather_grad
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td, and the bf16 and f16 forms.
// CHECK-LABEL: func.func @gather_grad_example
// CHECK-SAME:    %[[DR:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[P:[^:]+]]: tensor<?x2xi32>
// CHECK-SAME:    %[[DRB:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[DRH:[^:]+]]: tensor<?x16xf16>
// CHECK-SAME:    %[[P8:[^:]+]]: tensor<8x1xi32>
// CHECK:         fmoe.gather_grad %[[DR]], %[[P]] : (tensor<?x16xf32>, tensor<?x2xi32>) -> tensor<?x16xf32>
// CHECK:         fmoe.gather_grad %[[DRB]], %[[P]] : (tensor<?x16xbf16>, tensor<?x2xi32>) -> tensor<?x16xbf16>
// CHECK:         fmoe.gather_grad %[[DRH]], %[[P8]] : (tensor<?x16xf16>, tensor<8x1xi32>) -> tensor<8x16xf16>
func.func @gather_grad_example(%dr: tensor<?x16xf32>, %p: tensor<?x2xi32>,
                               %drb: tensor<?x16xbf16>, %drh: tensor<?x16xf16>,
                               %p8: tensor<8x1xi32>) {
  %dx = fmoe.gather_grad %dr, %p
      : (tensor<?x16xf32>, tensor<?x2xi32>) -> tensor<?x16xf32>
  %dxb = fmoe.gather_grad %drb, %p
      : (tensor<?x16xbf16>, tensor<?x2xi32>) -> tensor<?x16xbf16>
  %dxh = fmoe.gather_grad %drh, %p8
      : (tensor<?x16xf16>, tensor<8x1xi32>) -> tensor<8x16xf16>
  return
}

//===----------------------------------------------------------------------===//
// fmoe.route_grad
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td; the naive gate is the default and not printed.
// CHECK-LABEL: func.func @route_grad_example
// CHECK-SAME:    %[[DS:[^:]+]]: tensor<?x2xf32>
// CHECK-SAME:    %[[L:[^:]+]]: tensor<?x4xf32>
// CHECK-SAME:    %[[I:[^:]+]]: tensor<?x2xi32>
// CHECK-SAME:    %[[S:[^:]+]]: tensor<?x2xf32>
// CHECK:         fmoe.route_grad %[[DS]], %[[L]], %[[I]], %[[S]] :
// CHECK-SAME:      (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
func.func @route_grad_example(%ds: tensor<?x2xf32>, %l: tensor<?x4xf32>, %i: tensor<?x2xi32>,
                              %s: tensor<?x2xf32>) -> tensor<?x4xf32> {
  %dl = fmoe.route_grad %ds, %l, %i, %s {gate = #fmoe<gate naive>}
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>)
      -> tensor<?x4xf32>
  return %dl : tensor<?x4xf32>
}

// softmax_topk with renormalize, and sigmoid.
// CHECK-LABEL: func.func @route_grad_gates
// CHECK-SAME:    %[[DS:[^:]+]]: tensor<?x2xf32>
// CHECK-SAME:    %[[L:[^:]+]]: tensor<?x4xf32>
// CHECK-SAME:    %[[I:[^:]+]]: tensor<?x2xi32>
// CHECK-SAME:    %[[S:[^:]+]]: tensor<?x2xf32>
// CHECK:         fmoe.route_grad %[[DS]], %[[L]], %[[I]], %[[S]] {gate = #fmoe<gate softmax_topk>, renormalize}
// CHECK-SAME:      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
// CHECK:         fmoe.route_grad %[[DS]], %[[L]], %[[I]], %[[S]] {gate = #fmoe<gate sigmoid>}
// CHECK-SAME:      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
func.func @route_grad_gates(%ds: tensor<?x2xf32>, %l: tensor<?x4xf32>, %i: tensor<?x2xi32>,
                            %s: tensor<?x2xf32>) {
  %dl0 = fmoe.route_grad %ds, %l, %i, %s {gate = #fmoe<gate softmax_topk>, renormalize}
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
  %dl1 = fmoe.route_grad %ds, %l, %i, %s {gate = #fmoe<gate sigmoid>}
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
  return
}

//===----------------------------------------------------------------------===//
// fmoe.gate_grad
//===----------------------------------------------------------------------===//

// The example of FMoEOps.td: with `bias`, three results.
// CHECK-LABEL: func.func @gate_grad_example
// CHECK-SAME:    %[[DL:[^:]+]]: tensor<?x4xf32>
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf32>
// CHECK-SAME:    %[[DXE:[^:]+]]: tensor<?x16xf32>
// CHECK:         fmoe.gate_grad %[[DL]], %[[X]], %[[WG]], %[[DXE]] {bias}
// CHECK-SAME:      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>) -> (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>)
func.func @gate_grad_example(%dl: tensor<?x4xf32>, %x: tensor<?x16xf32>, %wg: tensor<4x16xf32>,
                             %dxe: tensor<?x16xf32>) {
  %dx, %dwg, %dbg = fmoe.gate_grad %dl, %x, %wg, %dxe {bias}
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>)
      -> (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>)
  return
}

// Without `bias`: two results; bf16 storage (grad_logits stay f32).
// CHECK-LABEL: func.func @gate_grad_no_bias_bf16
// CHECK-SAME:    %[[DL:[^:]+]]: tensor<?x4xf32>
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xbf16>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xbf16>
// CHECK-SAME:    %[[DXE:[^:]+]]: tensor<?x16xbf16>
// CHECK:         fmoe.gate_grad %[[DL]], %[[X]], %[[WG]], %[[DXE]] :
// CHECK-SAME:      (tensor<?x4xf32>, tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<?x16xbf16>) -> (tensor<?x16xbf16>, tensor<4x16xbf16>)
func.func @gate_grad_no_bias_bf16(%dl: tensor<?x4xf32>, %x: tensor<?x16xbf16>,
                                  %wg: tensor<4x16xbf16>, %dxe: tensor<?x16xbf16>) {
  %dx, %dwg = fmoe.gate_grad %dl, %x, %wg, %dxe
      : (tensor<?x4xf32>, tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<?x16xbf16>)
      -> (tensor<?x16xbf16>, tensor<4x16xbf16>)
  return
}

// CHECK-LABEL: func.func @gate_grad_f16
// CHECK-SAME:    %[[DL:[^:]+]]: tensor<8x4xf32>
// CHECK-SAME:    %[[X:[^:]+]]: tensor<8x16xf16>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf16>
// CHECK-SAME:    %[[DXE:[^:]+]]: tensor<8x16xf16>
// CHECK:         fmoe.gate_grad %[[DL]], %[[X]], %[[WG]], %[[DXE]] {bias}
// CHECK-SAME:      : (tensor<8x4xf32>, tensor<8x16xf16>, tensor<4x16xf16>, tensor<8x16xf16>) -> (tensor<8x16xf16>, tensor<4x16xf16>, tensor<4xf16>)
func.func @gate_grad_f16(%dl: tensor<8x4xf32>, %x: tensor<8x16xf16>, %wg: tensor<4x16xf16>,
                         %dxe: tensor<8x16xf16>) {
  %dx, %dwg, %dbg = fmoe.gate_grad %dl, %x, %wg, %dxe {bias}
      : (tensor<8x4xf32>, tensor<8x16xf16>, tensor<4x16xf16>, tensor<8x16xf16>)
      -> (tensor<8x16xf16>, tensor<4x16xf16>, tensor<4xf16>)
  return
}

//===----------------------------------------------------------------------===//
// A whole staged layer, forward and backward, as the passes build it
//===----------------------------------------------------------------------===//

// CHECK-LABEL: func.func @staged_layer
// CHECK-SAME:    %[[X:[^:]+]]: tensor<?x16xf32>
// CHECK-SAME:    %[[WG:[^:]+]]: tensor<4x16xf32>
// CHECK-SAME:    %[[BG:[^:]+]]: tensor<4xf32>
// CHECK-SAME:    %[[W1:[^:]+]]: tensor<4x32x16xf32>
// CHECK-SAME:    %[[W2:[^:]+]]: tensor<4x16x32xf32>
// CHECK-SAME:    %[[DOUT:[^:]+]]: tensor<?x16xf32>
// CHECK:         %[[L:.+]] = fmoe.gate %[[X]], %[[WG]] bias %[[BG]]
// CHECK:         %[[I:.+]], %[[S:.+]] = fmoe.route %[[L]] {gate = #fmoe<gate softmax_topk>, top_k = 2 : i64}
// CHECK:         %[[O:.+]], %[[P:.+]], %[[T:.+]] = fmoe.dispatch %[[I]] {num_experts = 4 : i64}
// CHECK:         %[[R:.+]] = fmoe.gather %[[X]], %[[T]]
// CHECK:         %[[Y:.+]], %[[H:.+]] = fmoe.expert %[[R]], %[[O]] fc1 %[[W1]] fc2 %[[W2]] {activation = #fmoe<activation gelu>}
// CHECK:         %[[OUT:.+]] = fmoe.combine %[[Y]], %[[P]], %[[S]]
// CHECK:         %[[DY:.+]], %[[DS:.+]] = fmoe.combine_grad %[[DOUT]], %[[Y]], %[[P]], %[[S]]
// CHECK:         %[[DR:.+]], %[[DW1:.+]], %[[DW2:.+]] = fmoe.expert_grad %[[DY]], %[[R]], %[[O]], %[[H]] fc1 %[[W1]] fc2 %[[W2]]
// CHECK:         %[[DXE:.+]] = fmoe.gather_grad %[[DR]], %[[P]]
// CHECK:         %[[DL:.+]] = fmoe.route_grad %[[DS]], %[[L]], %[[I]], %[[S]] {gate = #fmoe<gate softmax_topk>}
// CHECK:         %[[DX:.+]], %[[DWG:.+]], %[[DBG:.+]] = fmoe.gate_grad %[[DL]], %[[X]], %[[WG]], %[[DXE]] {bias}
// CHECK:         return %[[OUT]], %[[DX]], %[[DWG]], %[[DBG]], %[[DW1]], %[[DW2]]
func.func @staged_layer(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<4xf32>,
                        %w1: tensor<4x32x16xf32>, %w2: tensor<4x16x32xf32>,
                        %dout: tensor<?x16xf32>)
    -> (tensor<?x16xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>,
        tensor<4x32x16xf32>, tensor<4x16x32xf32>) {
  %l = fmoe.gate %x, %wg bias %bg
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  %i, %s = fmoe.route %l {gate = #fmoe<gate softmax_topk>, top_k = 2 : i64}
      : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
  %o, %p, %t = fmoe.dispatch %i {num_experts = 4 : i64}
      : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
  %r = fmoe.gather %x, %t : (tensor<?x16xf32>, tensor<?xi32>) -> tensor<?x16xf32>
  %y, %h = fmoe.expert %r, %o fc1 %w1 fc2 %w2 {activation = #fmoe<activation gelu>}
      : (tensor<?x16xf32>, tensor<5xi32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>)
      -> (tensor<?x16xf32>, tensor<?x32xf32>)
  %out = fmoe.combine %y, %p, %s
      : (tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x16xf32>
  %dy, %ds = fmoe.combine_grad %dout, %y, %p, %s
      : (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x2xi32>, tensor<?x2xf32>)
      -> (tensor<?x16xf32>, tensor<?x2xf32>)
  %dr, %dw1, %dw2 = fmoe.expert_grad %dy, %r, %o, %h fc1 %w1 fc2 %w2
      {activation = #fmoe<activation gelu>}
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<5xi32>, tensor<?x32xf32>,
        tensor<4x32x16xf32>, tensor<4x16x32xf32>
      -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32>
  %dxe = fmoe.gather_grad %dr, %p : (tensor<?x16xf32>, tensor<?x2xi32>) -> tensor<?x16xf32>
  %dl = fmoe.route_grad %ds, %l, %i, %s {gate = #fmoe<gate softmax_topk>}
      : (tensor<?x2xf32>, tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>) -> tensor<?x4xf32>
  %dx, %dwg, %dbg = fmoe.gate_grad %dl, %x, %wg, %dxe {bias}
      : (tensor<?x4xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<?x16xf32>)
      -> (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>)
  return %out, %dx, %dwg, %dbg, %dw1, %dw2
      : tensor<?x16xf32>, tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>,
        tensor<4x32x16xf32>, tensor<4x16x32xf32>
}
