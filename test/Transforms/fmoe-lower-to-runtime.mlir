// RUN: fmoe-opt %inputs/layer.mlir --fmoe-decompose --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime | FileCheck %s
// RUN: fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime | FileCheck %s --check-prefix=EP
// RUN: fmoe-opt %inputs/layer.mlir --fmoe-decompose --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime=keep-saved=true | FileCheck %s --check-prefix=KEEP
// RUN: fmoe-opt %inputs/layer_gelu_ep2.mlir --fmoe-decompose --fmoe-place-experts --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime | FileCheck %s --check-prefix=EPBIAS
// RUN: fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=shadow=1 --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime | FileCheck %s --check-prefix=SHADOW

// Destination-passing style on flat buffers: the token count, the inputs,
// then the outputs (the layer output and the saved values), each described
// for the module writer.
// CHECK: module attributes {gpu.container_module}
// CHECK-LABEL: func.func @layer(%{{.*}}: index {fmoe.tokens},
// CHECK-SAME: memref<?xf32> {fmoe.buffer = {cols = 16 : i64, name = "input", role = "input", rows = array<i64: 1, 0>}}
// CHECK-SAME: {fmoe.buffer = {cols = 16 : i64, name = "output", role = "output", rows = array<i64: 1, 0>}}
// CHECK-SAME: {fmoe.buffer = {cols = 32 : i64, name = "saved3", role = "output", rows = array<i64: 2, 0>}}
// CHECK-NOT: tensor<
// CHECK: %[[COUNTS:.*]] = memref.alloc(%{{.*}}) {fmoe.cols = 1 : i64, fmoe.rows = array<i64: 0, 4>} : memref<?xi32>
// CHECK: call @fmoe_rt_memset(%[[COUNTS]]) {byte = 0 : i64, fmoe.op = "fmoe.gate_route"}
// CHECK: gpu.launch_func @fmoe_kernels::@layer_gate_route blocks in
// CHECK-SAME: fmoe.block = 256 : i64, fmoe.kernel = "gate_route", fmoe.op = "fmoe.gate_route", fmoe.work = array<i64: 32, 0>
// CHECK: gpu.launch_func @fmoe_kernels::@layer_offsets
// CHECK-SAME: fmoe.param.top_k = 2 : i64
// CHECK-SAME: fmoe.work = array<i64: 0, 1>
// CHECK: gpu.launch_func @fmoe_kernels::@layer_scatter
// CHECK-SAME: fmoe.work = array<i64: 2, 0>
// Rows past the groups are never read, so the expert stage clears nothing;
// its elementwise kernels run blocks of 256 threads over rows, 8 short rows
// (32 columns) per block: T*k/8 blocks, written as 32 threads x T*k rows.
// CHECK-NOT: fmoe_rt_memset
// CHECK: call @fmoe_rt_grouped_gemm_gather_f32(
// CHECK-SAME: k = 16 : i64, layout = "nt", lda = 16 : i64, ldc = 32 : i64, local_experts = 4 : i64, n = 32 : i64
// CHECK-NOT: fmoe_rt_memset
// CHECK: gpu.launch_func @fmoe_kernels::@layer_bias_act
// CHECK-SAME: fmoe.param.rows_per_block = 8 : i64
// CHECK-SAME: fmoe.work = array<i64: 64, 0>
// CHECK: call @fmoe_rt_grouped_gemm_f32(
// CHECK: gpu.launch_func @fmoe_kernels::@layer_bias
// CHECK-SAME: fmoe.param.rows_per_block = 8 : i64
// CHECK: gpu.launch_func @fmoe_kernels::@layer_combine
// CHECK-SAME: fmoe.param.rows_per_block = 8 : i64
// CHECK-SAME: fmoe.work = array<i64: 32, 0>
// CHECK: memref.dealloc
// CHECK: return

// The saved expert outputs y (saved2) are read for the last time by the
// combine's gradient, which writes the expert-side dy over them; the saved
// pre-activation h (saved3) by the activation gradient, which writes dh
// over it: both inputs are marked clobbered.
// CHECK-LABEL: func.func @layer_backward(%{{.*}}: index {fmoe.tokens},
// CHECK-SAME: %[[DOUT:[a-z0-9]+]]: memref<?xf32> {fmoe.buffer = {cols = 16 : i64, name = "grad_output"
// CHECK-SAME: %[[Y:[a-z0-9]+]]: memref<?xf32> {fmoe.buffer = {clobbered, cols = 16 : i64, name = "saved2", role = "input"
// CHECK-SAME: %[[H:[a-z0-9]+]]: memref<?xf32> {fmoe.buffer = {clobbered, cols = 32 : i64, name = "saved3", role = "input"
// CHECK-SAME: name = "grad_input", role = "output"
// CHECK-NOT: fmoe_rt_memset
// CHECK: @fmoe_kernels::@layer_backward_combine_grad {{.*}} args(%{{[a-z0-9_]+}} : memref<?xf32>, %[[Y]] : memref<?xf32>, %{{[a-z0-9_]+}} : memref<?xi32>, %{{[a-z0-9_]+}} : memref<?xf32>, %[[Y]] : memref<?xf32>,
// CHECK-NOT: @fmoe_kernels::@layer_backward_gather
// da = dy W2, then one pass writes a = act(h) over da and dh over h, and
// sums dh into fc1's bias gradient (an f32 accumulator, then stored); dW2
// reads a from da's buffer.
// CHECK: call @fmoe_rt_grouped_gemm_f32(%{{.*}}, %{{.*}}, %[[DA:[a-z0-9_]+]], %{{.*}}) {{.*}}layout = "nn"
// CHECK: call @fmoe_rt_memset_f32(%[[B1:[a-z0-9_]+]])
// CHECK: @fmoe_kernels::@layer_backward_act_and_grad_bias {{.*}} args(%[[H]] : memref<?xf32>, %[[DA]] : memref<?xf32>, %{{.*}} : memref<?xi32>, %[[H]] : memref<?xf32>, %[[B1]] : memref<?xf32>,
// CHECK-SAME: fmoe.param.rows_per_block = 32 : i64
// CHECK: @fmoe_kernels::@layer_backward_convert {{.*}} args(%[[B1]] : memref<?xf32>
// CHECK: call @fmoe_rt_grouped_wgrad_f32(%{{.*}}, %[[DA]],
// fc2's bias gradient from the token side: the scores each token gave its
// experts in a [T, 4] matrix S (one thread per slot: T*2), then one GEMM
// Sᵀ dout over a group of every row; no pass over the expert-side dy.
// CHECK: call @fmoe_rt_memset_f32(%[[S:[a-z0-9_]+]])
// CHECK: @fmoe_kernels::@layer_backward_token_scores {{.*}} args(%{{.*}} : memref<?xi32>, %{{.*}} : memref<?xf32>, %{{.*}} : memref<?xi32>, %[[S]] : memref<?xf32>,
// CHECK-SAME: fmoe.work = array<i64: 2, 0>
// CHECK: @fmoe_kernels::@layer_backward_all_rows {{.*}} args(%[[ALL:[a-z0-9_]+]] : memref<?xi32>,
// CHECK: call @fmoe_rt_grouped_wgrad_f32(%[[S]], %[[DOUT]], %{{.*}}, %[[ALL]]) {{{.*}}all_rows = true{{.*}}lda = 4 : i64, ldb = 16 : i64, local_experts = 1 : i64, m = 4 : i64, n = 16 : i64
// CHECK-NOT: fc2_bias_grad
// dy is not read again: the rows are gathered into its memory (dy is
// written over the saved y), read by dW1, and drows takes the same memory.
// CHECK: @fmoe_kernels::@layer_backward_gather {{.*}} args(%{{.*}} : memref<?xf32>, %{{.*}} : memref<?xi32>, %[[Y]] : memref<?xf32>,
// CHECK: call @fmoe_rt_grouped_wgrad_f32(%[[H]], %[[Y]],
// CHECK-NOT: fc1_bias_grad
// CHECK: call @fmoe_rt_grouped_gemm_f32(%[[H]], %{{.*}}, %[[Y]], {{.*}}layout = "nn"
// CHECK: @fmoe_kernels::@layer_backward_gather_grad {{.*}} args(%[[Y]] : memref<?xf32>,
// CHECK: @fmoe_kernels::@layer_backward_route_grad
// The gate's backward: GEMMs of one group holding every row (all_rows:
// a library may run them as plain GEMMs).
// CHECK-NOT: @fmoe_kernels::@layer_backward_all_rows
// CHECK: call @fmoe_rt_grouped_gemm_f32(%{{.*}}, %{{.*}}, %{{.*}}, %[[ALL]]) {{{.*}}accumulate = true, all_rows = true{{.*}}k = 4 : i64, layout = "nn", lda = 4 : i64, ldc = 16 : i64, local_experts = 1 : i64, n = 16 : i64
// CHECK: call @fmoe_rt_grouped_wgrad_f32({{.*}}all_rows = true{{.*}}lda = 4 : i64, ldb = 16 : i64, local_experts = 1 : i64, m = 4 : i64, n = 16 : i64
// CHECK: @fmoe_kernels::@layer_backward_gate_bias_grad

// CHECK: gpu.module @fmoe_kernels
// The gate's warp sums its tokens' logits by shuffles; each token's lane
// routes it from registers (no load of the logits it stored) and counts.
// ptxas is asked for two blocks an SM.
// CHECK: gpu.func @layer_gate_route(
// CHECK-SAME: kernel attributes {nvvm.maxntid = array<i32: 256, 1, 1>, nvvm.minctasm = 2 : i32}
// CHECK: gpu.shuffle xor
// CHECK: memref.store
// CHECK-NOT: memref.load
// CHECK: memref.atomic_rmw addi
// CHECK: gpu.func @layer_bias_act(
// CHECK-NOT: math.erf
// CHECK: arith.divf %{{.*}}, %{{.*}} fastmath<afn>
// CHECK: math.exp2
// CHECK-NOT: math.erf
// CHECK: gpu.return
// CHECK: func.func private @fmoe_rt_memset(memref<?xi32>)
// CHECK: func.func private @fmoe_rt_grouped_gemm_gather_f32(memref<?xf32>, memref<?xi32>, memref<?xf32>, memref<?xf32>, memref<?xi32>)

// The received rows can be every rank's: twice the rows on 2 ranks.
// EP-LABEL: func.func @layer_ep2(
// EP: call @fmoe_rt_all_to_all_f32(
// EP-SAME: cols = 16 : i64, fmoe.op = "fmoe.all_to_all", placement = array<i64: 0, 0, 1, 1>, reverse = false, world_size = 2 : i64
// EP: call @fmoe_rt_grouped_gemm_f32(
// EP-SAME: local_experts = 2 : i64
// EP: call @fmoe_rt_all_to_all_f32(
// EP-SAME: reverse = true
// The backward's expert stage runs on the offsets its own exchange wrote
// (which the runtime knows on the host), not on the forward's saved ones.
// EP-LABEL: func.func @layer_ep2_backward(
// EP: call @fmoe_rt_all_to_all_f32(%{{.*}}, %{{.*}}, %[[ROWS:.*]], %[[OFF:.*]]) {{.*}}reverse = false
// EP: call @fmoe_rt_grouped_gemm_f32(%[[ROWS]], %{{.*}}, %{{.*}}, %[[OFF]])
// EP: gpu.launch_func @fmoe_kernels::@layer_ep2_backward_act_and_grad {{.*}} args({{.*}}, %[[OFF]] : memref<?xi32>,
// EP-SAME: fmoe.param.rows_per_block = 8 : i64
// EP-SAME: fmoe.work = array<i64: 0, 0, 32>
// EP: call @fmoe_rt_grouped_wgrad_f32(%[[ROWS]], %{{.*}}, %{{.*}}, %[[OFF]])
// EP: call @fmoe_rt_all_to_all_f32(%{{.*}}, %[[OFF]], %{{.*}}, %{{.*}}) {{.*}}reverse = true

// Expert parallel, the rows of dy come from the other ranks: fc2's bias
// gradient is the column sum over them (not the token side's GEMM).
// EPBIAS-LABEL: func.func @layer_ep2_backward(
// EPBIAS-NOT: token_scores
// EPBIAS: call @fmoe_rt_all_to_all_f32(%{{.*}}, %{{.*}}, %[[ROWS:.*]], %[[OFF:.*]]) {{.*}}reverse = false
// EPBIAS-NOT: token_scores
// EPBIAS: @fmoe_kernels::@layer_ep2_backward_fc2_bias_grad {{.*}} args(%[[ROWS]] : memref<?xf32>, %[[OFF]] : memref<?xi32>,
// EPBIAS-NOT: token_scores
// EPBIAS: return

// With keep-saved, no saved input is written over: dh gets its own buffer.
// KEEP-LABEL: func.func @layer_backward(
// KEEP-NOT: clobbered
// KEEP: @fmoe_kernels::@layer_backward_combine_grad {{.*}} args(%{{[a-z0-9_]+}} : memref<?xf32>, %[[Y:arg[0-9]+]] : memref<?xf32>, %{{[a-z0-9_]+}} : memref<?xi32>, %{{[a-z0-9_]+}} : memref<?xf32>, %[[DY:alloc[a-z0-9_]*]] : memref<?xf32>,
// KEEP: @fmoe_kernels::@layer_backward_act_and_grad_bias {{.*}} args(%[[H:[a-z0-9_]+]] : memref<?xf32>, %{{.*}} : memref<?xf32>, %{{.*}} : memref<?xi32>, %[[DH:alloc[a-z0-9_]*]] : memref<?xf32>,
// The rows and drows still take dy's memory (a temporary here).
// KEEP: @fmoe_kernels::@layer_backward_gather {{.*}} args(%{{.*}} : memref<?xf32>, %{{.*}} : memref<?xi32>, %[[DY]] : memref<?xf32>,
// KEEP: call @fmoe_rt_grouped_gemm_f32(%[[DH]], %{{.*}}, %[[DY]],

// Shadowed expert 1 lives on rank 0 in slot 1: each weight is replicated
// from there (the copies are saved for the backward, as the weights are),
// every exchange carries the shadow list, the expert stage runs L + S = 3
// experts, and the backward sums the copies' gradients into rank 0's.
// SHADOW-LABEL: func.func @layer_ep2(
// SHADOW: call @fmoe_rt_replicate_f32(%arg3, %{{.*}}) {fmoe.op = "fmoe.replicate", owner = array<i64: 0>, slot = array<i64: 1>, world_size = 2 : i64}
// SHADOW: call @fmoe_rt_replicate_f32(%arg4, %{{.*}}) {fmoe.op = "fmoe.replicate", owner = array<i64: 0>, slot = array<i64: 1>, world_size = 2 : i64}
// SHADOW: call @fmoe_rt_all_to_all_f32({{.*}}reverse = false, shadow = array<i64: 1>, world_size = 2 : i64}
// SHADOW: call @fmoe_rt_grouped_gemm_f32(
// SHADOW-SAME: local_experts = 3 : i64
// SHADOW: call @fmoe_rt_all_to_all_f32({{.*}}reverse = true, shadow = array<i64: 1>, world_size = 2 : i64}
// SHADOW-LABEL: func.func @layer_ep2_backward(
// SHADOW: call @fmoe_rt_replicate_grad_f32({{.*}}owner = array<i64: 0>, slot = array<i64: 1>, world_size = 2 : i64}
// SHADOW: call @fmoe_rt_replicate_grad_f32({{.*}}owner = array<i64: 0>, slot = array<i64: 1>, world_size = 2 : i64}
