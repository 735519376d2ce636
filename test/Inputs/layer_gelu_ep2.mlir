// The layer of layer.mlir (4 experts, top-2, d_model 16, d_hidden 32, GeLU,
// biases, f32) over 2 ranks: each holds 2 experts. Compiled for the runtime's
// expert-parallel unit test.
func.func @layer_ep2(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<4xf32>,
                     %w1: tensor<2x32x16xf32>, %b1: tensor<2x32xf32>,
                     %w2: tensor<2x16x32xf32>, %b2: tensor<2x16xf32>) -> tensor<?x16xf32> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64,
       world_size = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>, tensor<2x32x16xf32>,
         tensor<2x32xf32>, tensor<2x16x32xf32>, tensor<2x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
