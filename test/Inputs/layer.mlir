func.func @layer(%x: tensor<?x16xf32>, %wg: tensor<4x16xf32>, %bg: tensor<4xf32>,
                 %w1: tensor<4x32x16xf32>, %b1: tensor<4x32xf32>,
                 %w2: tensor<4x16x32xf32>, %b2: tensor<4x16xf32>) -> tensor<?x16xf32> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 4 : i64, top_k = 2 : i64}
      : (tensor<?x16xf32>, tensor<4x16xf32>, tensor<4xf32>, tensor<4x32x16xf32>,
         tensor<4x32xf32>, tensor<4x16x32xf32>, tensor<4x16xf32>) -> tensor<?x16xf32>
  return %y : tensor<?x16xf32>
}
