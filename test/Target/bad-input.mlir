// Bad input gives a located diagnostic and a non-zero exit, never a crash.
// RUN: not fmoe-opt %inputs/truncated.mlir 2>&1 | FileCheck %s --check-prefix=TRUNC
// RUN: not fmoe-opt %inputs/garbage.mlir 2>&1 | FileCheck %s --check-prefix=GARBAGE
// RUN: not fmoe-opt --lower-moe %inputs/topk-too-large.mlir 2>&1 | FileCheck %s --check-prefix=TOPK
// RUN: not fmoe-compile %inputs/topk-too-large.mlir -o %t 2>&1 | FileCheck %s --check-prefix=TOPK
// RUN: not fmoe-compile %inputs/does-not-exist.mlir -o %t 2>&1 | FileCheck %s --check-prefix=MISSING

// TRUNC: truncated.mlir:{{[0-9]+}}:{{[0-9]+}}: error:
// GARBAGE: garbage.mlir:1:1: error:
// TOPK: topk-too-large.mlir:4:8: error: 'fmoe.moe' op expects 1 <= top_k <= num_experts (4), got 5
// MISSING: fmoe-compile: {{.*}}does-not-exist.mlir
