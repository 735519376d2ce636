"""Compiles, on a machine with the fmoe compiler, every module the GPU
machine will need (which has no LLVM): the GPU tests' layers and the
benchmark's shapes, into $FMOE_CACHE_DIR. Layers are built on the meta
device: only their shapes and dtypes matter.

    FMOE_CACHE_DIR=.fmoe-cache python3 bench/prepare_cache.py
"""

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "tests"), str(ROOT / "bench")]
import fmoe  # noqa: E402
import bench_moe  # noqa: E402
import test_gpu  # noqa: E402

count = 0
for e, k, act, dt in test_gpu.GPU_CONFIGS:
    fmoe.compile(test_gpu.make_layer(e, k, act, test_gpu.DTYPES[dt], device="meta"))
    count += 1
for e, k, act, dt, d, h in test_gpu.WIDE_CONFIGS:
    fmoe.compile(test_gpu.make_layer(e, k, act, test_gpu.DTYPES[dt], device="meta", d_model=d, d_hidden=h))
    count += 1
# The graph-capture and skewed-routing tests use configurations of the list.
for s in bench_moe.SHAPES.values():
    fmoe.compile(bench_moe.make_layer(s, device="meta"))
    # bench_moe.py's fmoe_unfused: the same layer without fused epilogues.
    fmoe.compile(bench_moe.make_layer(s, device="meta"), no_fused_epilogues="true")
    # fmoe_keep: the activations kept for the backward.
    fmoe.compile(bench_moe.make_layer(s, device="meta"), keep_activations=True)
    count += 3
# tests/test_gpu.py::test_keep_activations.
fmoe.compile(
    test_gpu.make_layer(4, 2, "gelu", torch.bfloat16, device="meta", d_model=512, d_hidden=2048),
    keep_activations=True,
)
count += 1
# tests/test_gpu.py::test_activation_in_gemm_epilogues.
fmoe.compile(test_gpu.make_layer(8, 2, "gelu", torch.bfloat16, device="meta", d_model=2048, d_hidden=256))
count += 1
# The demo's MoE layers (examples/train_lm.py), for running it on the GPU.
sys.path.insert(0, str(ROOT / "examples"))
import train_lm  # noqa: E402

with torch.device("meta"):
    fmoe.compile(train_lm.MoELM(96, context=64))
count += 1
# The expert-parallel layers of tests/test_distributed.py (GPU variant); no
# process group here, so through the compiler's own entry.
import test_distributed  # noqa: E402

for world in (2, 4):
    for strategy, shadow in (("contiguous", None), ("round-robin", None), ("contiguous", "1")):
        with torch.device("meta"):
            ep = fmoe.FMoETransformerMLP(
                num_expert=test_distributed.LOCAL, d_model=test_distributed.D_MODEL,
                d_hidden=test_distributed.D_HIDDEN, top_k=2, world_size=world,
            )
        cfg = ep.moe_config()
        fmoe.compiler._compile_ir(
            fmoe.compiler.emit_mlir(cfg, "moe_layer"), "moe_layer",
            {"chip": "sm_90", "strategy": strategy, **({"shadow": shadow} if shadow else {})}, False,
        )
        count += 1
# bench/bench_ep.py: the benchmark shapes with the experts over 2 and 4 GPUs.
import bench_ep  # noqa: E402

for world in (2, 4):
    for name in ("classic", "mixtral_gelu"):
        ep = bench_ep.make_layer(bench_moe.SHAPES[name], world, "meta")
        fmoe.compiler._compile_ir(
            fmoe.compiler.emit_mlir(ep.moe_config(), "moe_layer"), "moe_layer", {"chip": "sm_90"}, False
        )
        count += 1
# The commit the modules were compiled from (the GPU machine's copy of the
# tree may not carry an up-to-date .git): run_device.sh reports it.
import subprocess  # noqa: E402

head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
(fmoe.compiler.cache_dir() / "SOURCE").write_text(f"{head}{' (uncommitted changes)' if dirty else ''}\n")
print(f"compiled {count} layers into {fmoe.compiler.cache_dir()} from {head}")
