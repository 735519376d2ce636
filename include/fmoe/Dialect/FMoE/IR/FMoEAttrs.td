//===- FMoEAttrs.td - fmoe enums and attributes ------------*- tablegen -*-===//
//
// Part of fmoe.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_DIALECT_FMOE_IR_FMOEATTRS_TD
#define FMOE_DIALECT_FMOE_IR_FMOEATTRS_TD

include "mlir/IR/EnumAttr.td"
include "fmoe/Dialect/FMoE/IR/FMoEDialect.td"

def FMoE_Activation : I32EnumAttr<"Activation", "expert activation function", [
  I32EnumAttrCase<"relu", 0>,
  I32EnumAttrCase<"gelu", 1>,
  I32EnumAttrCase<"gelu_tanh", 2>,
  I32EnumAttrCase<"silu", 3>,
  I32EnumAttrCase<"swiglu", 4>,
  I32EnumAttrCase<"geglu", 5>
]> {
  let cppNamespace = "::mlir::fmoe";
  let genSpecializedAttr = 0;
}

def FMoE_ActivationAttr : EnumAttr<FMoE_Dialect, FMoE_Activation, "activation"> {
  let summary = "expert activation: relu, gelu, gelu_tanh, silu, or the GLU forms swiglu, geglu";
}

def FMoE_GateKind : I32EnumAttr<"GateKind", "how routing scores are computed", [
  // FastMoE's NaiveGate: top-k of the logits, then softmax over the k picked.
  I32EnumAttrCase<"naive", 0>,
  // Softmax over all experts, then top-k (optionally renormalised over the k).
  I32EnumAttrCase<"softmax_topk", 1>,
  // Sigmoid of each logit, top-k (optionally renormalised over the k).
  I32EnumAttrCase<"sigmoid", 2>
]> {
  let cppNamespace = "::mlir::fmoe";
  let genSpecializedAttr = 0;
}

def FMoE_GateKindAttr : EnumAttr<FMoE_Dialect, FMoE_GateKind, "gate"> {
  let summary = "gate scoring: naive, softmax_topk or sigmoid";
}

#endif // FMOE_DIALECT_FMOE_IR_FMOEATTRS_TD
