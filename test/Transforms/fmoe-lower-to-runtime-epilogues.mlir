// RUN: fmoe-opt %s --fmoe-decompose --fmoe-generate-backward=keep-activations=true --fmoe-fuse --fmoe-lower-to-runtime | FileCheck %s
// RUN: fmoe-opt %s --fmoe-decompose --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime | FileCheck %s --check-prefix=DEFAULT
// RUN: fmoe-opt %s --fmoe-decompose --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime=fused-epilogues=false | FileCheck %s --check-prefix=UNFUSED
// Kept activations lowered without the fused epilogues: the backward
// computes dh (and a again, over da) with act_and_grad.
// RUN: fmoe-opt %s --fmoe-decompose --fmoe-generate-backward=keep-activations=true --fmoe-fuse --fmoe-lower-to-runtime=fused-epilogues=false | FileCheck %s --check-prefix=KEPT

// bf16 experts with both biases: each bias goes into its GEMM's epilogue
// (fmoe_rt_grouped_gemm_bias), the activation is a row kernel reading h
// (bias_act without a bias). The gathered operand is gathered first (the
// epilogue GEMMs load contiguous rows). GLU forms put fc1's bias in the gate
// half's GEMM (the up half has none); other dtypes keep the plain GEMMs and
// the bias kernels.
func.func @gelu_bf16(%x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>,
                     %w1: tensor<4x32x16xbf16>, %b1: tensor<4x32xbf16>,
                     %w2: tensor<4x16x32xbf16>, %b2: tensor<4x16xbf16>) -> tensor<?x16xbf16> {
  %y = fmoe.moe %x gate %wg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<4x32x16xbf16>, tensor<4x32xbf16>,
         tensor<4x16x32xbf16>, tensor<4x16xbf16>) -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// ReLU: the same (the activation is not in the GEMM).
func.func @relu_bf16(%x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>,
                     %w1: tensor<4x32x16xbf16>, %b1: tensor<4x32xbf16>,
                     %w2: tensor<4x16x32xbf16>, %b2: tensor<4x16xbf16>) -> tensor<?x16xbf16> {
  %y = fmoe.moe %x gate %wg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<4x32x16xbf16>, tensor<4x32xbf16>,
         tensor<4x16x32xbf16>, tensor<4x16xbf16>) -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// SwiGLU: the rows gathered once for both halves of h; fc1's bias in the
// gate half's epilogue, none in the up half's; fc2's bias in its epilogue.
func.func @swiglu_bf16(%x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>,
                       %w1: tensor<4x32x16xbf16>, %b1: tensor<4x32xbf16>,
                       %wu: tensor<4x32x16xbf16>,
                       %w2: tensor<4x16x32xbf16>, %b2: tensor<4x16xbf16>) -> tensor<?x16xbf16> {
  %y = fmoe.moe %x gate %wg fc1 %w1 bias %b1 up %wu fc2 %w2 bias %b2
      {activation = #fmoe<activation swiglu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<4x32x16xbf16>, tensor<4x32xbf16>,
         tensor<4x32x16xbf16>, tensor<4x16x32xbf16>, tensor<4x16xbf16>) -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}

// f32: no bias GEMM.
func.func @gelu_f32(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>,
                    %w1: tensor<4x32x16xf32>, %b1: tensor<4x32xf32>,
                    %w2: tensor<4x16x32xf32>, %b2: tensor<4x16xf32>) -> tensor<?x16xf32> {
  %y = fmoe.moe %x gate %wg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4x32x16xf32>, tensor<4x32xf32>,
         tensor<4x16x32xf32>, tensor<4x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// Arguments: %arg1 input, %arg3/%arg4 fc1 weight/bias, %arg5/%arg6 fc2
// weight/bias, %arg11 the kept activations act(h), %arg12 the saved h.
// CHECK-LABEL: func.func @gelu_bf16(
// CHECK-SAME: %arg11: memref<?xbf16> {fmoe.buffer = {cols = 32 : i64, name = "saved3"
// CHECK-SAME: %arg12: memref<?xbf16> {fmoe.buffer = {cols = 32 : i64, name = "saved4"
// CHECK: gpu.launch_func @fmoe_kernels::@gelu_bf16_gather {{.*}} args(%arg1 : memref<?xbf16>, %{{.*}} : memref<?xi32>, %[[ROWS:[a-z0-9_]+]] : memref<?xbf16>
// CHECK-NEXT: call @fmoe_rt_grouped_gemm_bias_bf16(%[[ROWS]], %arg3, %arg4, %arg12, %[[OFF:[a-z0-9_]+]])
// CHECK-SAME: k = 16 : i64, layout = "nt", lda = 16 : i64, ldc = 32 : i64, local_experts = 4 : i64, n = 32 : i64
// CHECK: gpu.launch_func @fmoe_kernels::@gelu_bf16_bias_act {{.*}} args(%arg12 : memref<?xbf16>, %[[OFF]] : memref<?xi32>, %arg11 : memref<?xbf16>, %arg0 : index)
// CHECK-NEXT: call @fmoe_rt_grouped_gemm_bias_bf16(%arg11, %arg5, %arg6, %[[YE:[a-z0-9_]+]], %[[OFF]])
// CHECK-SAME: k = 32 : i64, layout = "nt", lda = 32 : i64, ldc = 16 : i64, local_experts = 4 : i64, n = 16 : i64
// CHECK: gpu.launch_func @fmoe_kernels::@gelu_bf16_combine {{.*}} args(%[[YE]] : memref<?xbf16>
// The backward: dh = (dy W2) * gelu'(h) from the da GEMM's epilogue,
// written over h (clobbered), and dW2 from the kept activations; no
// act_and_grad pass.
// CHECK-LABEL: func.func @gelu_bf16_backward(
// CHECK-SAME: %[[ACT:arg[0-9]+]]: memref<?xbf16> {fmoe.buffer = {cols = 32 : i64, name = "saved3"
// CHECK-SAME: %[[H:arg[0-9]+]]: memref<?xbf16> {fmoe.buffer = {clobbered, cols = 32 : i64, name = "saved4"
// CHECK-NOT: act_and_grad
// CHECK: call @fmoe_rt_grouped_gemm_dact_bf16(%[[DY:[a-z0-9_]+]], %arg6, %[[H]], %[[H]], %{{[a-z0-9_]+}}) {a_col = 0 : i64, accumulate = false, activation = "gelu"
// CHECK-SAME: layout = "nn"
// CHECK-NEXT: call @fmoe_rt_grouped_wgrad_bf16(%[[DY]], %[[ACT]],
// CHECK-NOT: act_and_grad
// CHECK: call @fmoe_rt_grouped_wgrad_bf16(%[[H]],
// CHECK-LABEL: func.func @relu_bf16(
// CHECK: call @fmoe_rt_grouped_gemm_bias_bf16(
// CHECK: gpu.launch_func @fmoe_kernels::@relu_bf16_bias_act {{.*}} args(%{{[a-z0-9_]+}} : memref<?xbf16>, %{{[a-z0-9_]+}} : memref<?xi32>, %{{[a-z0-9_]+}} : memref<?xbf16>, %arg0 : index)
// CHECK: call @fmoe_rt_grouped_gemm_bias_bf16(
// CHECK-LABEL: func.func @swiglu_bf16(
// CHECK-NOT: grouped_gemm_gather
// CHECK: gpu.launch_func @fmoe_kernels::@swiglu_bf16_gather {{.*}} args(%arg1 : memref<?xbf16>, %{{.*}} : memref<?xi32>, %[[ROWS:[a-z0-9_]+]] : memref<?xbf16>
// CHECK-NEXT: call @fmoe_rt_grouped_gemm_bias_bf16(%[[ROWS]], %arg3, %arg4, %[[H:[a-z0-9_]+]], %[[OFF:[a-z0-9_]+]]) {c_col = 0 : i64
// CHECK-SAME: ldc = 64 : i64
// CHECK-NEXT: call @fmoe_rt_grouped_gemm_bf16(%[[ROWS]], %arg5, %[[H]], %[[OFF]]) {c_col = 32 : i64
// CHECK: gpu.launch_func @fmoe_kernels::@swiglu_bf16_bias_act {{.*}} args(%[[H]] : memref<?xbf16>, %[[OFF]] : memref<?xi32>, %[[A:[a-z0-9_]+]] : memref<?xbf16>, %arg0 : index)
// CHECK-NEXT: call @fmoe_rt_grouped_gemm_bias_bf16(%[[A]], %arg6, %arg7,
// CHECK-NOT: @fmoe_kernels::@swiglu_bf16_bias blocks
// CHECK-LABEL: func.func @swiglu_bf16_backward(
// CHECK-LABEL: func.func @gelu_f32(
// CHECK-NOT: grouped_gemm_bias
// CHECK: gpu.launch_func @fmoe_kernels::@gelu_f32_bias_act
// CHECK-LABEL: func.func @gelu_f32_backward(
// CHECK-NOT: grouped_gemm_dact
// CHECK: @fmoe_kernels::@gelu_f32_backward_act_and_grad
// CHECK: func.func private @fmoe_rt_grouped_gemm_bias_bf16(memref<?xbf16>, memref<?xbf16>, memref<?xbf16>, memref<?xbf16>, memref<?xi32>)

// UNFUSED-NOT: grouped_gemm_bias
// UNFUSED: gpu.launch_func @fmoe_kernels::@gelu_bf16_bias_act {{.*}} args(%{{[a-z0-9_]+}} : memref<?xbf16>, %{{[a-z0-9_]+}} : memref<?xi32>, %{{[a-z0-9_]+}} : memref<?xbf16>, %arg4 : memref<?xbf16>, %arg0 : index)
// UNFUSED: gpu.launch_func @fmoe_kernels::@gelu_bf16_bias blocks

// KEPT-LABEL: func.func @gelu_bf16_backward(
// KEPT-NOT: grouped_gemm_dact
// KEPT: call @fmoe_rt_grouped_gemm_bf16(%[[DY:[a-z0-9_]+]], %arg6, %[[DA:[a-z0-9_]+]],
// KEPT: @fmoe_kernels::@gelu_bf16_backward_act_and_grad
// KEPT: call @fmoe_rt_grouped_wgrad_bf16(%[[DY]], %[[DA]],

// By default the forward keeps no activations: the backward computes a and
// dh in act_and_grad (memory as without the fused epilogues).
// DEFAULT-LABEL: func.func @gelu_bf16_backward(
// DEFAULT-NOT: grouped_gemm_dact
// DEFAULT: call @fmoe_rt_grouped_gemm_bf16(
// DEFAULT: @fmoe_kernels::@gelu_bf16_backward_act_and_grad
