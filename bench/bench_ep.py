"""Expert-parallel MoE layer, forward+backward, bf16, on every GPU of a node:
fmoe's compiled layer against, in the same run, a PyTorch baseline
(all_to_all_single with the splits + torch._grouped_mm), and the bandwidth of
all_to_all_single on the same bytes. Tokens per GPU are fixed; the experts
are split over the GPUs.

    torchrun --nproc-per-node 4 bench/bench_ep.py [--shapes classic,mixtral_gelu] [--json out.json]

(`--cpu` runs it on gloo CPU ranks with small shapes, to check the script.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.nn as dnn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "python"), str(ROOT / "bench")]
import fmoe  # noqa: E402
from bench_moe import SHAPES, act_fn  # noqa: E402

SMALL = {"tiny": dict(T=64, d=32, h=64, E=4, k=2, act="gelu")}


def make_layer(s, world, device, dtype=torch.bfloat16):
    with torch.device(device):
        layer = fmoe.FMoETransformerMLP(
            num_expert=s["E"] // world, d_model=s["d"], d_hidden=s["h"], top_k=s["k"],
            activation=s["act"], world_size=world,
        )
    return layer.to(dtype)


def baseline(layer, s, world):
    """Route, exchange with all_to_all_single (host split sizes), grouped GEMMs
    on the received rows, exchange back, combine: the PyTorch way."""
    ex = layer.experts
    w1, b1, w2, b2 = ex.htoh4.weight, ex.htoh4.bias, ex.h4toh.weight, ex.h4toh.bias
    local, k, act = w1.shape[0], s["k"], act_fn(s["act"])

    def f(x):
        # fp32 logits, as fmoe's gate computes them, so that both route alike.
        gate = layer.gate.gate
        logits = F.linear(x.float(), gate.weight.float(), gate.bias.float())
        val, idx = torch.topk(logits, k, dim=-1)
        score = torch.softmax(val, -1).to(x.dtype)
        flat = idx.flatten()
        order = torch.argsort(flat, stable=True)  # global expert order = rank-major
        counts = torch.bincount(flat, minlength=local * world)
        recv_counts = torch.empty_like(counts)
        dist.all_to_all_single(recv_counts, counts)  # [source, local expert]
        send_splits = counts.view(world, local).sum(1).tolist()
        recv_splits = recv_counts.view(world, local).sum(1).tolist()
        xs = x[order // k]
        recv = dnn.all_to_all_single(
            torch.empty(sum(recv_splits), x.shape[1], dtype=x.dtype, device=x.device),
            xs, recv_splits, send_splits,
        )
        expert = torch.repeat_interleave(torch.arange(local, device=x.device).repeat(world), recv_counts)
        perm = torch.argsort(expert, stable=True)
        offs = torch.cumsum(torch.bincount(expert, minlength=local), 0).to(torch.int32)
        rows = recv[perm]
        h = torch._grouped_mm(rows, w1.transpose(1, 2), offs=offs) + b1[expert[perm]]
        y = torch._grouped_mm(act(h), w2.transpose(1, 2), offs=offs) + b2[expert[perm]]
        y_src = torch.empty_like(y).index_copy(0, perm, y)
        back = dnn.all_to_all_single(torch.empty_like(xs), y_src, send_splits, recv_splits)
        back = back * score.flatten()[order, None]
        return torch.zeros_like(x).index_add(0, order // k, back)

    return f


def timed(fn, device, iters, warmup=3):
    times = []
    for i in range(warmup + iters):
        dist.barrier()
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            fn()
            ms = (time.perf_counter() - t0) * 1e3
        if i >= warmup:
            times.append(ms)
    t = torch.tensor([statistics.median(times)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)  # the step is as slow as the slowest rank
    return t.item()


def profile(fn, rank, title):
    """Every rank runs one profiled step (the exchanges need them all); rank 0
    prints where the GPU time and the host time went."""
    from torch.profiler import ProfilerActivity, profile as prof

    dist.barrier()
    torch.cuda.synchronize()
    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
        fn()
        torch.cuda.synchronize()
    if rank == 0:
        print(f"-- {title}")
        table = p.key_averages()
        print(table.table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=50))
        print(table.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=50))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="classic,mixtral_gelu")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--profile", action="store_true", help="rank 0's kernels and host calls of one fmoe step")
    args = ap.parse_args()
    dist.init_process_group("gloo" if args.cpu else "nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cpu") if args.cpu else torch.device("cuda", rank % torch.cuda.device_count())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    shapes = SMALL if args.cpu else SHAPES
    results = []
    if rank == 0:
        print(f"# {world} x {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}, bf16, "
              f"tokens per GPU fixed, median of {args.iters}, slowest rank")
        print(f"{'shape':14} {'GPUs':>4} {'fmoe ms':>9} {'torch ms':>9} {'speed-up':>9} {'a2a GB/s':>9}")
    for name in (args.shapes.split(",") if not args.cpu else SMALL):
        s = shapes[name]
        torch.manual_seed(0)
        layer = make_layer(s, world, device)
        params = list(layer.parameters())
        compiled = fmoe.compile(layer)
        base = baseline(layer, s, world)
        torch.manual_seed(1 + rank)
        x = torch.randn(s["T"], s["d"], device=device, dtype=torch.bfloat16, requires_grad=True)
        g = torch.randn_like(x)

        def step(fn):
            return lambda: torch.autograd.grad(fn(x), [x, *params], g)

        # The two implementations agree (same routing, same weights).
        y_f, y_b = compiled(x), base(x)
        err = ((y_f.float() - y_b.float()).abs().max() / y_b.float().abs().max()).item()
        t_fmoe = timed(step(compiled), device, args.iters)
        t_base = timed(step(base), device, args.iters)
        if args.profile and device.type == "cuda":
            profile(step(compiled), rank, f"{name}, {world} GPUs: fmoe fwd+bwd")
        # all_to_all_single on the rows one exchange moves (T*k rows of d).
        nbytes = s["T"] * s["k"] * s["d"] * 2
        buf_in = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device)
        buf_out = torch.empty_like(buf_in)
        t_a2a = timed(lambda: dist.all_to_all_single(buf_out, buf_in), device, args.iters)
        gbps = nbytes * (world - 1) / world / t_a2a / 1e6
        if rank == 0:
            print(f"{name:14} {world:4d} {t_fmoe:9.2f} {t_base:9.2f} {t_base / t_fmoe:9.2f} {gbps:9.1f}"
                  f"   (max rel diff fmoe vs torch {err:.1e})")
            results.append(dict(shape=name, gpus=world, fmoe_ms=t_fmoe, torch_ms=t_base,
                                a2a_ms=t_a2a, a2a_gbps=gbps, rel_diff=err, **s))
        del compiled, base, layer, params
    if rank == 0 and args.json:
        args.json.write_text(json.dumps(results, indent=1))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
