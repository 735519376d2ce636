//===- FusedGroupedGemmSm90AccNN.cu - one fused GEMM kernel ---------------===//
//
// Part of fmoe. Instantiates Kind::AccNN of FusedGroupedGemmSm90.cuh (one
// kernel per translation unit, so that they compile in parallel).
//
//===----------------------------------------------------------------------===//

#include "FusedGroupedGemmSm90.cuh"

FMOE_FUSED_INSTANTIATE(AccNN)
