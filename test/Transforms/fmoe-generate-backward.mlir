// RUN: fmoe-opt %inputs/layer.mlir --fmoe-decompose --fmoe-generate-backward | FileCheck %s
// RUN: fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts --fmoe-generate-backward | FileCheck %s --check-prefix=EP
// RUN: not fmoe-opt %inputs/layer.mlir --fmoe-decompose --fmoe-fuse --fmoe-generate-backward 2>&1 | FileCheck %s --check-prefix=FUSED
// RUN: fmoe-opt %inputs/layer_fine.mlir --fmoe-decompose --fmoe-generate-backward --fmoe-fuse | FileCheck %s --check-prefix=FINE
// RUN: fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=shadow=1 --fmoe-generate-backward | FileCheck %s --check-prefix=SHADOW
// RUN: fmoe-opt %S/fmoe-lower-to-runtime-epilogues.mlir --fmoe-decompose --fmoe-generate-backward=keep-activations=true | FileCheck %s --check-prefix=KEEP
// RUN: fmoe-opt %S/fmoe-lower-to-runtime-epilogues.mlir --fmoe-decompose --fmoe-generate-backward | FileCheck %s --check-prefix=NOKEEP

// The forward returns the values its backward reads, after its output.
// CHECK-LABEL: func.func @layer(
// CHECK-SAME: -> (tensor<?x16xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<?x16xf32>, tensor<?x32xf32>, tensor<5xi32>, tensor<?xi32>, tensor<?x2xi32>, tensor<?x4xf32>)
// CHECK-SAME: fmoe.backward = @layer_backward
// CHECK-SAME: fmoe.num_saved = 8 : i64
// CHECK: return %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} :

// The backward: (grad_output, the forward's arguments, the saved values) to
// the gradient of every argument, stage by stage in reverse.
// CHECK-LABEL: func.func @layer_backward(
// CHECK-SAME: %[[DOUT:[a-z0-9]+]]: tensor<?x16xf32>, %[[X:[a-z0-9]+]]: tensor<?x16xf32>, %[[WG:[a-z0-9]+]]: tensor<4x16xf32>
// CHECK-SAME: -> (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>, tensor<4x32x16xf32>, tensor<4x32xf32>, tensor<4x16x32xf32>, tensor<4x16xf32>)
// CHECK-SAME: fmoe.forward = @layer
// CHECK: %[[DY:[a-z0-9_]+]], %[[DS:[a-z0-9_]+]] = fmoe.combine_grad %[[DOUT]],
// CHECK-NEXT: %[[R:[0-9]+]] = fmoe.gather %[[X]],
// CHECK-NEXT: %[[DR:[a-z0-9_]+]], %[[DW1:[a-z0-9_]+]], %[[DB1:[a-z0-9_]+]], %[[DW2:[a-z0-9_]+]], %[[DB2:[a-z0-9_]+]] = fmoe.expert_grad %[[DY]], %[[R]],
// CHECK-SAME: {activation = #fmoe<activation gelu>} :
// CHECK-SAME: -> tensor<?x16xf32>, tensor<4x32x16xf32>, tensor<4x16x32xf32> fc1_bias tensor<4x32xf32> fc2_bias tensor<4x16xf32>
// CHECK-NEXT: %[[DXE:[0-9]+]] = fmoe.gather_grad %[[DR]],
// CHECK-NEXT: %[[DL:[0-9]+]] = fmoe.route_grad %[[DS]],
// CHECK-NEXT: %[[DX:[a-z0-9_]+]], %[[DWG:[a-z0-9_]+]], %[[DBG:[a-z0-9_]+]] = fmoe.gate_grad %[[DL]], %[[X]], %[[WG]], %[[DXE]] {bias}
// CHECK-NEXT: return %[[DX]], %[[DWG]], %[[DBG]], %[[DW1]], %[[DB1]], %[[DW2]], %[[DB2]] :

// Across ranks, each all-to-all's gradient is the exchange the other way.
// EP-LABEL: func.func @layer_ep2_backward
// EP: fmoe.combine_grad
// EP-NEXT: fmoe.all_to_all %{{.*}}, %{{.*}} on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>}
// EP: fmoe.expert_grad
// EP-NEXT: fmoe.all_to_all %{{.*}}, %{{.*}} on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>, reverse}
// EP-NEXT: fmoe.gather_grad

// With a shadowed expert, each replicate's gradient sums the copies' back
// into the owner's, and the exchanges keep their shadow list.
// SHADOW-LABEL: func.func @layer_ep2_backward
// SHADOW: fmoe.all_to_all %{{.*}}, %{{.*}} on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 1>}
// SHADOW: %{{.*}}, %[[DW1:[a-z0-9_]+]], %[[DW2:[a-z0-9_]+]] = fmoe.expert_grad
// SHADOW-SAME: -> tensor<?x16xf32>, tensor<3x32x16xf32>, tensor<3x16x32xf32>
// SHADOW-NEXT: fmoe.all_to_all %{{.*}}, %{{.*}} on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>, reverse, shadow = array<i64: 1>}
// SHADOW-DAG: fmoe.replicate_grad %[[DW2]] on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 1>} : (tensor<3x16x32xf32>) -> tensor<2x16x32xf32>
// SHADOW-DAG: fmoe.replicate_grad %[[DW1]] on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 1>} : (tensor<3x32x16xf32>) -> tensor<2x32x16xf32>

// FUSED: error: cannot differentiate fused stages: run --fmoe-generate-backward before --fmoe-fuse

// Fine-grained experts (d_hidden 16 <= d_model 32): the forward saves the
// gathered rows (one of its saved values) instead of the backward gathering
// them again, and --fmoe-fuse then leaves the gather out
// of the expert GEMM (the rows are gathered once either way).
// FINE-LABEL: func.func @fine(
// FINE-NOT: fmoe.fused_expert
// FINE: %[[ROWS:[0-9]+]] = fmoe.gather
// FINE: fmoe.expert %[[ROWS]]
// FINE: return %{{.*}}, %{{.*}}, %{{.*}}, %[[ROWS]],
// FINE-LABEL: func.func @fine_backward(
// FINE-NOT: fmoe.gather %
// FINE: fmoe.expert_grad

// Kept activations (keep-activations, off by default): a bf16 GeLU expert with
// both biases returns act(h) as a third result, the forward saves it and
// the backward's expert_grad reads it; ReLU and f32 experts do not.
// KEEP-LABEL: func.func @gelu_bf16(
// KEEP: %[[Y:[a-z0-9_]+]], %[[H:[a-z0-9_]+]], %[[A:[a-z0-9_]+]] = fmoe.expert
// KEEP: return %{{.*}}, %[[A]], %[[H]],
// KEEP-LABEL: func.func @gelu_bf16_backward(
// KEEP: fmoe.expert_grad %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} act %{{[a-z0-9_]+}} fc1
// KEEP-LABEL: func.func @relu_bf16(
// KEEP: %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} = fmoe.expert
// KEEP-LABEL: func.func @relu_bf16_backward(
// KEEP-NOT: act %
// KEEP-LABEL: func.func @gelu_f32(
// KEEP: %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} = fmoe.expert
// KEEP-LABEL: func.func @gelu_f32_backward(
// KEEP-NOT: act %

// NOKEEP-LABEL: func.func @gelu_bf16(
// NOKEEP: %{{[a-z0-9_]+}}, %{{[a-z0-9_]+}} = fmoe.expert
// NOKEEP-LABEL: func.func @gelu_bf16_backward(
// NOKEEP-NOT: act %
// NOKEEP: fmoe.expert_grad
