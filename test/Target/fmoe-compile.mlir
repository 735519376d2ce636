// fmoe-compile writes the module file; the loader's check reads it back.
// RUN: fmoe-compile %examples/moe_gelu.mlir -o %t.fmoe
// RUN: fmoe-module-check %t.fmoe | FileCheck %s
// RUN: head -c 2000 %t.fmoe > %t.truncated
// RUN: not fmoe-module-check %t.truncated 2>&1 | FileCheck %s --check-prefix=TRUNC
// RUN: sed 's/^target sm_90/target sm_91/' %t.fmoe > %t.corrupt
// RUN: not fmoe-module-check %t.corrupt 2>&1 | FileCheck %s --check-prefix=CORRUPT
// RUN: fmoe-compile %examples/moe_gelu_4ranks.mlir --strategy=round-robin -o %t.ep.fmoe
// RUN: fmoe-module-check %t.ep.fmoe | FileCheck %s --check-prefix=EP
// RUN: fmoe-compile %examples/moe_gelu.mlir --emit-mlir | FileCheck %s --check-prefix=MLIR

// CHECK: module version 3 target sm_90 ptx {{[0-9]+}} bytes
// CHECK: config moe_gelu.activation = gelu
// CHECK: config moe_gelu.num_experts = 8
// CHECK: config moe_gelu.top_k = 2
// CHECK: program forward @moe_gelu: {{[0-9]+}} buffers, {{[0-9]+}} commands
// CHECK-NEXT: call fmoe_rt_memset (fmoe.gate_route)
// CHECK-NEXT: launch moe_gelu_gate_route (fmoe.gate_route)
// CHECK-NEXT: launch moe_gelu_offsets (fmoe.dispatch)
// CHECK: launch moe_gelu_gather (fmoe.fused_expert)
// CHECK-NEXT: call fmoe_rt_grouped_gemm_bias_bf16 (fmoe.fused_expert)
// CHECK-NEXT: launch moe_gelu_bias_act (fmoe.fused_expert)
// CHECK-NEXT: call fmoe_rt_grouped_gemm_bias_bf16 (fmoe.fused_expert)
// CHECK-NEXT: launch moe_gelu_combine (fmoe.fused_expert)
// CHECK: program backward @moe_gelu_backward:
// CHECK: call fmoe_rt_grouped_wgrad_bf16 (fmoe.gate_grad)
// CHECK: launch moe_gelu_backward_gate_bias_grad (fmoe.gate_grad)

// TRUNC: the closing checksum line is missing (truncated file?)
// CORRUPT: checksum mismatch (file corrupted)

// EP: config moe_gelu_ep4.world_size = 4
// EP: call fmoe_rt_all_to_all_bf16 (fmoe.all_to_all)

// MLIR: gpu.binary @fmoe_kernels
