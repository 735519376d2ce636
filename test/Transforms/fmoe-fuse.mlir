// RUN: fmoe-opt %inputs/layer.mlir --fmoe-decompose --fmoe-fuse | FileCheck %s
// RUN: fmoe-opt %inputs/layer.mlir --fmoe-decompose --fmoe-fuse=gather-combine=false | FileCheck %s --check-prefix=NOGC
// RUN: fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts --fmoe-fuse | FileCheck %s --check-prefix=EP

// Gate, route and count in one op; gather, expert MLP and combine in another.
// CHECK-LABEL: func.func @layer
// CHECK: %[[L:[a-z0-9_]+]], %[[I:[a-z0-9_]+]], %[[S:[a-z0-9_]+]], %[[C:[a-z0-9_]+]] = fmoe.gate_route %[[X:[a-z0-9]+]], %{{[a-z0-9]+}} bias %{{[a-z0-9]+}} {top_k = 2 : i64}
// CHECK-SAME: -> (tensor<?x4xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<4xi32>)
// CHECK-NEXT: %[[O:[a-z0-9_]+]], %[[P:[a-z0-9_]+]], %[[T:[a-z0-9_]+]] = fmoe.dispatch %[[I]] counts %[[C]] {num_experts = 4 : i64}
// CHECK-NEXT: %[[OUT:[a-z0-9_]+]], %{{.*}}, %{{.*}} = fmoe.fused_expert %[[X]], %[[T]], %[[O]], %[[P]], %[[S]] fc1 %{{.*}} bias %{{.*}} fc2 %{{.*}} bias %{{.*}} {activation = #fmoe<activation gelu>}
// CHECK-NEXT: return %[[OUT]]
// CHECK-NOT: fmoe.gate %
// CHECK-NOT: fmoe.route
// CHECK-NOT: fmoe.gather
// CHECK-NOT: fmoe.combine

// NOGC-LABEL: func.func @layer
// NOGC: fmoe.gate_route
// NOGC: fmoe.dispatch %{{.*}} counts
// NOGC: fmoe.gather
// NOGC: fmoe.expert
// NOGC: fmoe.combine
// NOGC-NOT: fmoe.fused_expert

// Across ranks the expert stage reads received rows: no gather to fuse.
// EP-LABEL: func.func @layer_ep2
// EP: fmoe.gate_route
// EP: fmoe.gather
// EP: fmoe.all_to_all
// EP: fmoe.expert
// EP: fmoe.all_to_all
// EP: fmoe.combine
// EP-NOT: fmoe.fused_expert
