// RUN: fmoe-opt %s --fmoe-decompose | FileCheck %s

// CHECK-LABEL: func.func @gelu_mlp
// CHECK-SAME: fmoe.arg_names = ["input", "gate_weight", "gate_bias", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"]
// CHECK-SAME: fmoe.layer = {activation = "gelu", d_hidden = 32 : i64, d_model = 16 : i64, dtype = "f32"
// CHECK-SAME: num_experts = 4 : i64
// CHECK-SAME: top_k = 2 : i64, world_size = 1 : i64}
// CHECK: %[[L:.*]] = fmoe.gate %[[X:[a-z0-9]+]], %{{[a-z0-9]+}} bias %{{[a-z0-9]+}} : {{.*}} -> tensor<?x4xf32>
// CHECK-NEXT: %[[I:[a-z0-9_]+]], %[[S:[a-z0-9_]+]] = fmoe.route %[[L]] {top_k = 2 : i64} : (tensor<?x4xf32>) -> (tensor<?x2xi32>, tensor<?x2xf32>)
// CHECK-NEXT: %[[O:[a-z0-9_]+]], %[[P:[a-z0-9_]+]], %[[T:[a-z0-9_]+]] = fmoe.dispatch %[[I]] {num_experts = 4 : i64} : (tensor<?x2xi32>) -> (tensor<5xi32>, tensor<?x2xi32>, tensor<?xi32>)
// CHECK-NEXT: %[[R:.*]] = fmoe.gather %[[X]], %[[T]]
// CHECK-NEXT: %[[Y:[a-z0-9_]+]], %{{.*}} = fmoe.expert %[[R]], %[[O]] fc1 %{{.*}} bias %{{.*}} fc2 %{{.*}} bias %{{.*}} {activation = #fmoe<activation gelu>}
// CHECK-SAME: -> (tensor<?x16xf32>, tensor<?x32xf32>)
// CHECK-NEXT: %[[OUT:.*]] = fmoe.combine %[[Y]], %[[P]], %[[S]]
// CHECK-NEXT: return %[[OUT]]
// CHECK-NOT: fmoe.moe
func.func @gelu_mlp(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<4xf32>,
                    %w1: tensor<4x32x16xf32>, %b1: tensor<4x32xf32>,
                    %w2: tensor<4x16x32xf32>, %b2: tensor<4x16xf32>) -> tensor<?x16xf32> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>, tensor<4x32x16xf32>,
         tensor<4x32xf32>, tensor<4x16x32xf32>, tensor<4x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}

// A GLU layer over 2 ranks: the up projection rides along, h holds both
// halves, and the dispatch carries the layer's world size and capacity.
// CHECK-LABEL: func.func @swiglu_ep2
// CHECK: fmoe.gate %{{.*}}, %{{.*}} : (tensor<?x16xbf16>, tensor<4x16xbf16>) -> tensor<?x4xf32>
// CHECK: fmoe.route %{{.*}} {gate = #fmoe<gate sigmoid>, renormalize, top_k = 1 : i64}
// CHECK: fmoe.dispatch %{{.*}} {capacity_factor = 1.250000e+00 : f64, fmoe.world_size = 2 : i64, num_experts = 4 : i64}
// CHECK: fmoe.expert %{{.*}}, %{{.*}} fc1 %{{.*}} up %{{.*}} fc2 %{{.*}} {activation = #fmoe<activation swiglu>}
// CHECK-SAME: -> (tensor<?x16xbf16>, tensor<?x64xbf16>)
func.func @swiglu_ep2(%x: tensor<?x16xbf16>, %wg: tensor<4x16xbf16>,
                      %w1: tensor<2x32x16xbf16>, %w3: tensor<2x32x16xbf16>,
                      %w2: tensor<2x16x32xbf16>) -> tensor<?x16xbf16> {
  %y = fmoe.moe %x gate %wg fc1 %w1 up %w3 fc2 %w2
      {activation = #fmoe<activation swiglu>, gate = #fmoe<gate sigmoid>, renormalize,
       capacity_factor = 1.25, num_experts = 4 : i64, top_k = 1 : i64, world_size = 2 : i64}
      : (tensor<?x16xbf16>, tensor<4x16xbf16>, tensor<2x32x16xbf16>, tensor<2x32x16xbf16>,
         tensor<2x16x32xbf16>) -> tensor<?x16xbf16>
  return %y : tensor<?x16xbf16>
}
