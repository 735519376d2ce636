func.func @layer_ep2(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>,
                     %w1: tensor<2x32x16xf32>, %w2: tensor<2x16x32xf32>) -> tensor<?x16xf32> {
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2
      {activation = #fmoe<activation relu>, num_experts = 4 : i64, top_k = 2 : i64,
       world_size = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<2x32x16xf32>, tensor<2x16x32xf32>)
      -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
