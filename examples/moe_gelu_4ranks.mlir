// The same layer, expert-parallel over 4 ranks: 8 experts in all, 2 per rank
// (FastMoE's num_expert=2, world_size=4), contiguous placement by default.
//   fmoe-opt --lower-moe examples/moe_gelu_4ranks.mlir
//   fmoe-opt --lower-moe='strategy=round-robin' examples/moe_gelu_4ranks.mlir
func.func @moe_gelu_ep4(%x: tensor<?x1024xbf16>,
                        %wg: tensor<8x1024xbf16>, %bg: tensor<8xbf16>,
                        %w1: tensor<2x4096x1024xbf16>, %b1: tensor<2x4096xbf16>,
                        %w2: tensor<2x1024x4096xbf16>, %b2: tensor<2x1024xbf16>)
    -> tensor<?x1024xbf16> {
  %y = fmoe.moe %x gate %wg bias %bg fc1 %w1 bias %b1 fc2 %w2 bias %b2
      {activation = #fmoe<activation gelu>, num_experts = 8 : i64, top_k = 2 : i64,
       world_size = 4 : i64}
      : (tensor<?x1024xbf16>, tensor<8x1024xbf16>, tensor<8xbf16>,
         tensor<2x4096x1024xbf16>, tensor<2x4096xbf16>,
         tensor<2x1024x4096xbf16>, tensor<2x1024xbf16>) -> tensor<?x1024xbf16>
  return %y : tensor<?x1024xbf16>
}
