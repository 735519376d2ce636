// RUN: fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts | FileCheck %s --check-prefix=CONTIG
// RUN: fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=strategy=round-robin | FileCheck %s --check-prefix=RR
// RUN: fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts="strategy=balanced load-profile=%inputs/load4.txt" | FileCheck %s --check-prefix=BAL
// RUN: fmoe-opt %inputs/layer.mlir --fmoe-decompose --fmoe-place-experts | FileCheck %s --check-prefix=ONE
// RUN: not fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=strategy=bogus 2>&1 | FileCheck %s --check-prefix=BOGUS
// RUN: not fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=strategy=balanced 2>&1 | FileCheck %s --check-prefix=NOPROFILE
// RUN: not fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts="strategy=balanced load-profile=%inputs/load-short.txt" 2>&1 | FileCheck %s --check-prefix=SHORT
// RUN: not fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=world-size=4 2>&1 | FileCheck %s --check-prefix=WORLD
// RUN: fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=shadow=1 | FileCheck %s --check-prefix=SHADOW
// RUN: fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts="strategy=balanced load-profile=%inputs/load4.txt shadow-hot=1" | FileCheck %s --check-prefix=HOT
// RUN: not fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=shadow-hot=1 2>&1 | FileCheck %s --check-prefix=HOTNOPROFILE
// RUN: not fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts="load-profile=%inputs/load4.txt shadow-hot=4" 2>&1 | FileCheck %s --check-prefix=HOTALL
// RUN: not fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts="load-profile=%inputs/load4.txt shadow=1 shadow-hot=1" 2>&1 | FileCheck %s --check-prefix=BOTH
// RUN: not fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=shadow=7 2>&1 | FileCheck %s --check-prefix=NOTANEXPERT
// RUN: not fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=shadow=1,1 2>&1 | FileCheck %s --check-prefix=TWICE
// RUN: not fmoe-opt %inputs/layer_ep2.mlir --fmoe-decompose --fmoe-place-experts=shadow=0,1,2,3 2>&1 | FileCheck %s --check-prefix=ALL
// RUN: not fmoe-opt %inputs/layer.mlir --fmoe-decompose --fmoe-place-experts=shadow=1 2>&1 | FileCheck %s --check-prefix=ONERANK

// Contiguous (FastMoE's): experts 0, 1 on rank 0 and 2, 3 on rank 1.
// CONTIG: shard.grid @fmoe_grid_2(shape = 2)
// CONTIG-LABEL: func.func @layer_ep2
// CONTIG: %[[O:[a-z0-9_]+]], %{{.*}}, %{{.*}} = fmoe.dispatch %{{.*}} {expert_order = array<i64: 0, 1, 2, 3>, num_experts = 4 : i64}
// CONTIG: %[[R:.*]] = fmoe.gather
// CONTIG-NEXT: %[[RECV:[a-z0-9_]+]], %[[RECVOFF:[a-z0-9_]+]] = fmoe.all_to_all %[[R]], %[[O]] on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>}
// CONTIG-NEXT: %[[Y:[a-z0-9_]+]], %{{.*}} = fmoe.expert %[[RECV]], %[[RECVOFF]]
// CONTIG-SAME: -> (tensor<?x16xf32>, tensor<?x32xf32>)
// CONTIG-NEXT: %[[YB:[a-z0-9_]+]], %{{.*}} = fmoe.all_to_all %[[Y]], %[[RECVOFF]] on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>, reverse}
// CONTIG-NEXT: fmoe.combine %[[YB]]
// CONTIG-NOT: fmoe.world_size

// Round-robin: expert e on rank e mod 2; rank 0's experts (0, 2) come first.
// RR: fmoe.dispatch %{{.*}} {expert_order = array<i64: 0, 2, 1, 3>, num_experts = 4 : i64}
// RR: fmoe.all_to_all %{{.*}}, %{{.*}} on @fmoe_grid_2 {placement = array<i64: 0, 1, 0, 1>}

// Balanced from loads (1, 2, 3, 10): 3 → rank 0, 2 → rank 1, 1 → rank 1,
// 0 → rank 0.
// BAL: fmoe.dispatch %{{.*}} {expert_order = array<i64: 0, 3, 1, 2>, num_experts = 4 : i64}
// BAL: fmoe.all_to_all %{{.*}}, %{{.*}} on @fmoe_grid_2 {placement = array<i64: 0, 1, 1, 0>}

// One rank: nothing to place, nothing inserted.
// ONE-NOT: shard.grid
// ONE-NOT: fmoe.all_to_all
// ONE-NOT: expert_order

// BOGUS: error: unknown placement strategy 'bogus' (expected contiguous, round-robin or balanced)
// NOPROFILE: error: strategy=balanced needs a load-profile file
// SHORT: error: load profile has 2 entries, expected one per expert (4)
// WORLD: error: layer has world_size 2 but the pass was asked for world-size=4

// Expert 1 shadowed (contiguous otherwise): rank 0 exchanges expert 0 only,
// expert 1's group comes last and stays; both weights get a copy of it
// (L + S = 3 experts), and the expert side has (2 + 1) x 2 groups.
// SHADOW: fmoe.dispatch %{{.*}} {expert_order = array<i64: 0, 2, 3, 1>, num_experts = 4 : i64}
// SHADOW: %[[W1:[0-9]+]] = fmoe.replicate %arg2 on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 1>}
// SHADOW-SAME: (tensor<2x32x16xf32>) -> tensor<3x32x16xf32>
// SHADOW: %[[W2:[0-9]+]] = fmoe.replicate %arg3 on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 1>}
// SHADOW-SAME: (tensor<2x16x32xf32>) -> tensor<3x16x32xf32>
// SHADOW: %[[RECV:[a-z0-9_]+]], %[[RECVOFF:[a-z0-9_]+]] = fmoe.all_to_all %{{.*}}, %{{.*}} on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>, shadow = array<i64: 1>}
// SHADOW-SAME: -> (tensor<?x16xf32>, tensor<7xi32>)
// SHADOW-NEXT: fmoe.expert %[[RECV]], %[[RECVOFF]] fc1 %[[W1]] fc2 %[[W2]]
// SHADOW-NEXT: fmoe.all_to_all %{{.*}}, %[[RECVOFF]] on @fmoe_grid_2 {placement = array<i64: 0, 0, 1, 1>, reverse, shadow = array<i64: 1>}
// SHADOW-SAME: -> (tensor<?x16xf32>, tensor<5xi32>)

// The most loaded expert of (1, 2, 3, 10), 3, shadowed; balanced placement
// counts its load as spread: 2 → rank 0, 1 → rank 1, 0 → rank 1, 3 → rank 0.
// HOT: fmoe.dispatch %{{.*}} {expert_order = array<i64: 2, 0, 1, 3>, num_experts = 4 : i64}
// HOT: fmoe.replicate %{{.*}} {placement = array<i64: 1, 1, 0, 0>, shadow = array<i64: 3>}

// HOTNOPROFILE: error: shadow-hot needs a load-profile file
// HOTALL: error: cannot shadow 4 of 4 experts (expected 0 to 3)
// BOTH: error: give either shadow or shadow-hot, not both
// NOTANEXPERT: error: shadowed expert '7' is not an expert id in [0, 4)
// TWICE: error: expert 1 is shadowed twice
// ALL: error: cannot shadow all 4 experts: nothing would be expert-parallel
// ONERANK: error: shadowing replicates experts over ranks: this layer runs on one
