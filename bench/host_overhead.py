"""Where the host spends an eager fmoe step, on the GPU machine.

For one shape of bench_moe.py: the host time of fmoe's forward call and of
its backward (torch.autograd.grad), measured while the GPU is kept busy
(torch.cuda._sleep), so that no call waits for the device and the times
are the host's alone; beside them the same step's GPU time (CUDA events,
GPU not pre-loaded). With FMOE_HOST_TIMING=1 the runtime also prints, at
exit, the host time of each command of the programs.

    FMOE_HOST_TIMING=1 python3 bench/host_overhead.py --shape fine_grained
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from bench_moe import SHAPES, make_layer  # noqa: E402

import fmoe  # noqa: E402  (bench_moe put python/ on the path)


def torch_ops(s) -> None:
    """Host time per call of the torch GEMMs fmoe's runtime calls for this
    shape's gate (GPU kept busy, so nothing waits for the device)."""
    x = torch.randn(s["T"], s["d"], device="cuda", dtype=torch.bfloat16)
    w = torch.randn(s["E"], s["d"], device="cuda", dtype=torch.bfloat16)
    out = torch.empty(s["T"], s["E"], device="cuda")
    g = torch.randn(s["T"], s["E"], device="cuda", dtype=torch.bfloat16)
    ops = {
        "mm bf16": lambda: torch.mm(x, w.t()),
        "mm out_dtype=f32": lambda: torch.mm(x, w.t(), out_dtype=torch.float32),
        "mm out= f32 (out_dtype)": lambda: torch.mm(x, w.t(), out_dtype=torch.float32, out=out),
        "addmm_ bf16 (gate dx)": lambda: x.addmm_(g, w),
    }
    for name, op in ops.items():
        for _ in range(3):
            op()
        times = []
        for _ in range(30):
            torch.cuda.synchronize()
            torch.cuda._sleep(10_000_000)
            t0 = time.perf_counter()
            op()
            times.append((time.perf_counter() - t0) * 1e6)
        print(f"  torch {name:28} host {statistics.median(times):8.1f} us per call", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="fine_grained", choices=sorted(SHAPES))
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--torch-ops", action="store_true", help="also the host time of torch's gate GEMMs")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("host_overhead.py: needs a GPU")
    s = SHAPES[args.shape]
    if args.torch_ops:
        torch_ops(s)
    layer = make_layer(s)
    params = list(layer.parameters())
    fn = fmoe.compile(layer)

    def inputs():
        x = torch.randn(s["T"], s["d"], device="cuda", dtype=torch.bfloat16, requires_grad=True)
        g = torch.randn(s["T"], s["d"], device="cuda", dtype=torch.bfloat16)
        return x, g

    fwd, bwd, gpu = [], [], []
    for i in range(3 + args.iters):
        x, g = inputs()
        torch.cuda.synchronize()
        # Host alone: the device has ~20 ms of sleep queued ahead of the step.
        torch.cuda._sleep(30_000_000)
        t0 = time.perf_counter()
        y = fn(x)
        t1 = time.perf_counter()
        torch.autograd.grad(y, [x, *params], g)
        t2 = time.perf_counter()
        torch.cuda.synchronize()
        # The step as bench_moe times it (device idle at the start).
        x, g = inputs()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        y = fn(x)
        torch.autograd.grad(y, [x, *params], g)
        end.record()
        end.synchronize()
        if i >= 3:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
            gpu.append(start.elapsed_time(end))
    med = statistics.median
    print(
        f"{args.shape}: host forward {med(fwd):.3f} ms, host backward {med(bwd):.3f} ms, "
        f"eager step {med(gpu):.3f} ms (median of {args.iters})",
        flush=True,
    )


if __name__ == "__main__":
    main()
