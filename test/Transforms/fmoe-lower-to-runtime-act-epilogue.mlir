// RUN: fmoe-opt %s --fmoe-decompose --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime | FileCheck %s
// RUN: fmoe-opt %s --fmoe-decompose --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime=fused-epilogues=false | FileCheck %s --check-prefix=UNFUSED

// From d_model 2048 (bf16 GeLU, both biases) GeLU goes into the expert
// GEMMs' epilogues: fc1 stores h and gelu(h), the backward's da GEMM
// stores dh over the saved h (clobbered) and gelu(h) beside. No bias_act
// or act_and_grad row kernel; fc1's bias gradient is a pass over dh.
func.func @deep(%x: tensor<?x2048xbf16>, %wg: tensor<4x2048xbf16>, %bg: tensor<4xbf16>,
                %w1: tensor<4x64x2048xbf16>, %b1: tensor<4x64xbf16>,
                %w2: tensor<4x2048x64xbf16>, %b2: tensor<4x2048xbf16>) -> tensor<?x2048xbf16> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x2048xbf16>, tensor<4x2048xbf16>, tensor<4xbf16>, tensor<4x64x2048xbf16>,
         tensor<4x64xbf16>, tensor<4x2048x64xbf16>, tensor<4x2048xbf16>) -> tensor<?x2048xbf16>
  return %y : tensor<?x2048xbf16>
}

// CHECK-LABEL: func.func @deep(
// CHECK-NOT: @fmoe_kernels::@deep_bias_act
// CHECK: call @fmoe_rt_grouped_gemm_bias_act_bf16(%{{.*}}, %{{.*}}, %{{.*}}, %[[H:.*]], %[[A:.*]], %{{.*}}) {{{.*}}activation = "gelu"{{.*}}layout = "nt"
// CHECK-NOT: @fmoe_kernels::@deep_bias_act
// CHECK: call @fmoe_rt_grouped_gemm_bias_bf16(%[[A]],
// CHECK-LABEL: func.func @deep_backward(
// CHECK-SAME: clobbered, cols = 64 : i64, name = "saved3"
// CHECK-NOT: act_and_grad
// CHECK: call @fmoe_rt_grouped_gemm_dact_act_bf16(%{{.*}}, %{{.*}}, %[[SH:[a-z0-9_]+]], %[[SH]], %[[A:[a-z0-9_]+]], %{{.*}}) {{{.*}}activation = "gelu"{{.*}}layout = "nn"
// CHECK-NOT: act_and_grad
// CHECK: call @fmoe_rt_grouped_wgrad_bf16(%{{.*}}, %[[A]],
// CHECK: call @fmoe_rt_grouped_wgrad_bf16(%[[SH]],
// CHECK: @fmoe_kernels::@deep_backward_fc1_bias_grad
// CHECK-SAME: args(%[[SH]] :
// CHECK: call @fmoe_rt_grouped_gemm_bf16(%[[SH]],

// Without the fused epilogues: the passes, whatever d_model.
// UNFUSED-NOT: _act_bf16
// UNFUSED: @fmoe_kernels::@deep_bias_act
// UNFUSED: @fmoe_kernels::@deep_backward_act_and_grad
