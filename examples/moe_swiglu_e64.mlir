// A fine-grained SwiGLU layer: 64 experts, top-8, d_model 2048, d_hidden 1024,
// no biases, softmax-then-top-k scores renormalised over the 8 picked.
//   fmoe-opt --lower-moe examples/moe_swiglu_e64.mlir
func.func @moe_swiglu(%x: tensor<?x2048xbf16>, %wg: tensor<64x2048xbf16>,
                      %w1: tensor<64x1024x2048xbf16>, %w3: tensor<64x1024x2048xbf16>,
                      %w2: tensor<64x2048x1024xbf16>) -> tensor<?x2048xbf16> {
  %y = fmoe.moe %x gate %wg fc1 %w1 up %w3 fc2 %w2
      {activation = #fmoe<activation swiglu>, gate = #fmoe<gate softmax_topk>,
       renormalize, num_experts = 64 : i64, top_k = 8 : i64}
      : (tensor<?x2048xbf16>, tensor<64x2048xbf16>, tensor<64x1024x2048xbf16>,
         tensor<64x1024x2048xbf16>, tensor<64x2048x1024xbf16>) -> tensor<?x2048xbf16>
  return %y : tensor<?x2048xbf16>
}
