func.func @fine(%x: tensor<?x32xf32>, %wg: tensor<8x32xf32>,
                %w1: tensor<8x16x32xf32>, %w2: tensor<8x32x16xf32>) -> tensor<?x32xf32> {
  %y = fmoe.moe %x gate %wg fc1 %w1 fc2 %w2
      {activation = #fmoe<activation gelu>, num_experts = 8 : i64, top_k = 4 : i64}
      : (tensor<?x32xf32>, tensor<8x32xf32>, tensor<8x16x32xf32>, tensor<8x32x16xf32>) -> tensor<?x32xf32>
  return %y : tensor<?x32xf32>
}
