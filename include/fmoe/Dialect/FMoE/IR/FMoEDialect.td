//===- FMoEDialect.td - the fmoe dialect -------------------*- tablegen -*-===//
//
// Part of fmoe. The dialect that describes Mixture-of-Experts layers.
//
//===----------------------------------------------------------------------===//

#ifndef FMOE_DIALECT_FMOE_IR_FMOEDIALECT_TD
#define FMOE_DIALECT_FMOE_IR_FMOEDIALECT_TD

include "mlir/IR/OpBase.td"

def FMoE_Dialect : Dialect {
  let name = "fmoe";
  let cppNamespace = "::mlir::fmoe";
  let summary = "Mixture-of-Experts layers: gate, route, dispatch, expert, combine";
  let description = [{
    The `fmoe` dialect describes Mixture-of-Experts (MoE) layers with value
    semantics on builtin ranked tensors. The token dimension is dynamic; every
    other dimension (d_model, d_hidden, experts, top_k) is static, so the
    compiler can specialise kernels for the layer shape.

    A whole layer is one `fmoe.moe` op. `--fmoe-decompose` splits it into the
    stage ops (`fmoe.gate`, `fmoe.route`, `fmoe.dispatch`, `fmoe.gather`,
    `fmoe.expert`, `fmoe.combine`), `--fmoe-place-experts` inserts
    `fmoe.all_to_all` for expert parallelism, `--fmoe-generate-backward`
    derives the backward program from the `*_grad` ops, and `--fmoe-fuse`
    rewrites stages into the fused forms (`fmoe.gate_route`,
    `fmoe.fused_expert`) that the backends execute.
  }];
  let useDefaultAttributePrinterParser = 1;
}

class FMoE_Op<string mnemonic, list<Trait> traits = []>
    : Op<FMoE_Dialect, mnemonic, traits>;

#endif // FMOE_DIALECT_FMOE_IR_FMOEDIALECT_TD
