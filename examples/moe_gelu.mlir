// One MoE layer as FastMoE's FMoETransformerMLP builds it: 8 experts, top-2,
// d_model 1024, d_hidden 4096, GeLU, biases everywhere, one rank.
//   fmoe-opt --lower-moe examples/moe_gelu.mlir
func.func @moe_gelu(%x: tensor<?x1024xbf16>,
                    %wg: tensor<8x1024xbf16>, %bg: tensor<8xbf16>,
                    %w1: tensor<8x4096x1024xbf16>, %b1: tensor<8x4096xbf16>,
                    %w2: tensor<8x1024x4096xbf16>, %b2: tensor<8x1024xbf16>)
    -> tensor<?x1024xbf16> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 8 : i64, top_k = 2 : i64}
      : (tensor<?x1024xbf16>, tensor<8x1024xbf16>, tensor<8xbf16>,
         tensor<8x4096x1024xbf16>, tensor<8x4096xbf16>,
         tensor<8x1024x4096xbf16>, tensor<8x1024xbf16>) -> tensor<?x1024xbf16>
  return %y : tensor<?x1024xbf16>
}
