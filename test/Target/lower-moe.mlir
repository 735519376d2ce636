// The whole pipeline on the examples: kernels as PTX for sm_90 (their
// `.entry` points), runtime calls for GEMMs, exchanges and memsets.
// RUN: fmoe-opt --lower-moe %examples/moe_gelu.mlir | FileCheck %s --check-prefix=GELU
// RUN: fmoe-opt --lower-moe %examples/moe_gelu_4ranks.mlir | FileCheck %s --check-prefix=EP4
// RUN: fmoe-opt --lower-moe %examples/moe_swiglu_e64.mlir | FileCheck %s --check-prefix=SWIGLU
// RUN: fmoe-opt "--lower-moe=keep-activations=true" %examples/moe_gelu.mlir | FileCheck %s --check-prefix=KEEP

// KEEP-LABEL: func.func @moe_gelu_backward(
// KEEP: call @fmoe_rt_grouped_gemm_dact_bf16(
// KEEP-SAME: activation = "gelu"
// KEEP-NOT: act_and_grad
// KEEP: gpu.binary

// GELU-LABEL: func.func @moe_gelu(
// GELU: gpu.launch_func @fmoe_kernels::@moe_gelu_gate_route
// GELU: call @fmoe_rt_grouped_gemm_bias_bf16(
// GELU-SAME: n = 4096
// GELU: call @fmoe_rt_grouped_gemm_bias_bf16(
// GELU-SAME: n = 1024
// GELU-LABEL: func.func @moe_gelu_backward(
// GELU: call @fmoe_rt_grouped_wgrad_bf16(
// GELU-NOT: gpu.module
// GELU: gpu.binary @fmoe_kernels {{ *}}[#gpu.object<#nvvm.target<O = 3, chip = "sm_90", features = "+ptx80">
// GELU-SAME: .target sm_90
// GELU-SAME: .entry moe_gelu_gate_route(
// GELU-SAME: .entry moe_gelu_offsets(
// GELU-SAME: .entry moe_gelu_scatter(
// GELU-SAME: .entry moe_gelu_gather(
// GELU-SAME: .entry moe_gelu_bias_act(
// GELU-SAME: .entry moe_gelu_combine(
// GELU-SAME: .entry moe_gelu_backward_combine_grad(
// GELU-SAME: .entry moe_gelu_backward_act_and_grad_bias(
// GELU-SAME: .entry moe_gelu_backward_token_scores(
// GELU-SAME: .entry moe_gelu_backward_all_rows(
// GELU-SAME: .entry moe_gelu_backward_gather(
// GELU-SAME: .entry moe_gelu_backward_gather_grad(
// GELU-SAME: .entry moe_gelu_backward_route_grad(
// GELU-SAME: .entry moe_gelu_backward_gate_bias_grad(

// EP4: shard.grid @fmoe_grid_4(shape = 4)
// EP4-LABEL: func.func @moe_gelu_ep4(
// EP4: call @fmoe_rt_all_to_all_bf16({{.*}}placement = array<i64: 0, 0, 1, 1, 2, 2, 3, 3>, reverse = false, world_size = 4 : i64
// EP4: call @fmoe_rt_grouped_gemm_bias_bf16({{.*}}local_experts = 2 : i64
// EP4: call @fmoe_rt_all_to_all_bf16({{.*}}reverse = true, world_size = 4 : i64
// EP4-LABEL: func.func @moe_gelu_ep4_backward(
// EP4: call @fmoe_rt_all_to_all_bf16(
// EP4: gpu.binary @fmoe_kernels
// EP4-SAME: .entry moe_gelu_ep4_gate_route(
// EP4-SAME: .entry moe_gelu_ep4_gather(

// SWIGLU-LABEL: func.func @moe_swiglu(
// 64 experts: the gate's logits are a GEMM (bf16 operands, f32 result),
// routed by bias_route.
// SWIGLU: call @fmoe_rt_grouped_gemm_to_f32_bf16({{.*}}fmoe.op = "fmoe.gate_route"{{.*}}n = 64
// Fine-grained experts (d_hidden 1024 <= d_model 2048): the gathered rows
// are saved for the backward rather than gathered again there, so the
// forward gathers once (a row kernel) and its GEMMs read the rows.
// SWIGLU-NOT: grouped_gemm_gather
// SWIGLU: gpu.launch_func @fmoe_kernels::@moe_swiglu_gather
// SWIGLU: call @fmoe_rt_grouped_gemm_bf16({{.*}}c_col = 0 : i64{{.*}}ldc = 2048 : i64{{.*}}n = 1024
// SWIGLU: call @fmoe_rt_grouped_gemm_bf16({{.*}}c_col = 1024 : i64{{.*}}ldc = 2048 : i64{{.*}}n = 1024
// SWIGLU-LABEL: func.func @moe_swiglu_backward(
// SWIGLU-NOT: moe_swiglu_backward_gather
// SWIGLU: call @fmoe_rt_grouped_wgrad_bf16(
// The gate and up projections write the two halves of h. Both weight
// gradients come before the rows' gradient, so that drows can take the
// memory of the rows (their last reader is the second wgrad).
// SWIGLU: call @fmoe_rt_grouped_wgrad_bf16(%[[DH:[a-z0-9_]+]], %[[ROWS:[a-z0-9_]+]], {{.*}}a_col = 0 : i64
// SWIGLU: call @fmoe_rt_grouped_wgrad_bf16(%[[DH]], %[[ROWS]], {{.*}}a_col = 1024 : i64
// SWIGLU-NOT: %[[ROWS]]
// SWIGLU: call @fmoe_rt_grouped_gemm_bf16(%[[DH]], {{.*}}accumulate = false
// SWIGLU: call @fmoe_rt_grouped_gemm_bf16(%[[DH]], {{.*}}a_col = 1024 : i64, accumulate = true
// SWIGLU: gpu.binary @fmoe_kernels
// SWIGLU-SAME: .entry moe_swiglu_bias_route(
// SWIGLU-SAME: .entry moe_swiglu_bias_act(
// SWIGLU-SAME: .entry moe_swiglu_backward_act_and_grad(
