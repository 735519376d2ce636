// RUN: fmoe-opt %s --fmoe-decompose --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime=fused-epilogues=false | FileCheck %s
// RUN: fmoe-opt %s --fmoe-decompose --fmoe-generate-backward --fmoe-fuse --fmoe-lower-to-runtime | FileCheck %s --check-prefix=GATE

// (Without the fused epilogues, so that bias_act is a row kernel.)
// Row kernels move 8 bf16 columns per access, 16-byte aligned, where the
// row length allows: d_hidden 2048 with 2 rows of 128 threads per block,
// d_model 512 with 8 rows of 32 threads. The scalar operands (a bias, a
// score) are broadcast.
func.func @wide(%x: tensor<?x512xbf16>, %wg: tensor<4x512xbf16>, %bg: tensor<4xbf16>,
                %w1: tensor<4x2048x512xbf16>, %b1: tensor<4x2048xbf16>,
                %w2: tensor<4x512x2048xbf16>, %b2: tensor<4x512xbf16>) -> tensor<?x512xbf16> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x512xbf16>, tensor<4x512xbf16>, tensor<4xbf16>, tensor<4x2048x512xbf16>,
         tensor<4x2048xbf16>, tensor<4x512x2048xbf16>, tensor<4x512xbf16>) -> tensor<?x512xbf16>
  return %y : tensor<?x512xbf16>
}

// CHECK: gpu.launch_func @fmoe_kernels::@wide_bias_act
// CHECK-SAME: fmoe.param.rows_per_block = 2 : i64
// CHECK: gpu.launch_func @fmoe_kernels::@wide_combine
// CHECK-SAME: fmoe.param.rows_per_block = 8 : i64
// CHECK-LABEL: gpu.func @wide_bias_act(
// CHECK: vector.load %{{.*}} {alignment = 16 : i64} : memref<?xbf16>, vector<8xbf16>
// CHECK: arith.extf %{{.*}} : vector<8xbf16> to vector<8xf32>
// CHECK: arith.divf %{{.*}}, %{{.*}} fastmath<afn> : vector<8xf32>
// CHECK: math.exp2 %{{.*}} : vector<8xf32>
// CHECK: math.fma
// CHECK: vector.store %{{.*}} {alignment = 16 : i64} : memref<?xbf16>, vector<8xbf16>
// CHECK: gpu.return
// CHECK-LABEL: gpu.func @wide_combine(
// CHECK: vector.load %{{.*}} {alignment = 16 : i64} : memref<?xbf16>, vector<8xbf16>
// CHECK: vector.broadcast %{{.*}} : f32 to vector<8xf32>
// CHECK: vector.store %{{.*}} {alignment = 16 : i64} : memref<?xbf16>, vector<8xbf16>
// act_and_grad with fc1's bias gradient: four rows' loads before their
// stores (then one row at a time), the column sums added to the f32
// accumulator element by element.
// CHECK-LABEL: gpu.func @wide_backward_act_and_grad_bias(
// CHECK-COUNT-8: vector.load %{{.*}} {alignment = 16 : i64} : memref<?xbf16>, vector<8xbf16>
// CHECK-COUNT-8: vector.store %{{.*}} {alignment = 16 : i64} : memref<?xbf16>, vector<8xbf16>
// CHECK-COUNT-2: vector.load %{{.*}} {alignment = 16 : i64} : memref<?xbf16>, vector<8xbf16>
// CHECK-COUNT-2: vector.store %{{.*}} {alignment = 16 : i64} : memref<?xbf16>, vector<8xbf16>
// CHECK-COUNT-8: memref.atomic_rmw addf

// From 32 experts on, the gate's logits are a one-group GEMM (offsets from
// all_rows) and bias_route adds the bias and routes; with fewer, one
// gate_route kernel on CUDA cores.
func.func @many(%x: tensor<?x16xf32>, %wg: tensor<32x16xf32>, %bg: tensor<32xf32>,
                %w1: tensor<32x32x16xf32>, %b1: tensor<32x32xf32>,
                %w2: tensor<32x16x32xf32>, %b2: tensor<32x16xf32>) -> tensor<?x16xf32> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 32 : i64, top_k = 4 : i64}
      : (tensor<?x16xf32>, tensor<32x16xf32>, tensor<32xf32>, tensor<32x32x16xf32>,
         tensor<32x32xf32>, tensor<32x16x32xf32>, tensor<32x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
// GATE-LABEL: func.func @wide(
// GATE: gpu.launch_func @fmoe_kernels::@wide_gate_route
// GATE-LABEL: func.func @many(
// GATE-NOT: @many_gate_route
// GATE: gpu.launch_func @fmoe_kernels::@many_all_rows
// GATE: call @fmoe_rt_grouped_gemm_f32(
// GATE-SAME: all_rows = true, c_col = 0 : i64, fmoe.op = "fmoe.gate_route", k = 16 : i64, layout = "nt", lda = 16 : i64, ldc = 32 : i64, local_experts = 1 : i64, n = 32 : i64
// GATE: gpu.launch_func @fmoe_kernels::@many_bias_route
// GATE-SAME: fmoe.kernel = "bias_route"
// A thread per token loads its 32 logits at once and routes them in
// registers: no load after the first 32 (the bias's 32 aside).
// GATE-SAME: fmoe.work = array<i64: 1, 0>
// GATE-LABEL: gpu.func @many_bias_route(
// GATE-COUNT-64: memref.load
// GATE-NOT: memref.load
// GATE: gpu.return
