"""Times one MoE layer (gate included), forward and forward+backward, bf16,
on the GPU: fmoe's compiled layer against, in the same run,
  (a) loop:        a PyTorch loop over the experts (the Hugging Face style),
  (b) grouped_mm:  sort + torch._grouped_mm + index_add in PyTorch,
  (c) dense:       the same expert FLOPs as one dense MLP over T*k rows (cuBLAS),
                   the bound fmoe is measured against;
and fmoe_graph: fmoe's step replayed from a CUDA graph (what is left without
the host's launch overhead; not a baseline); fmoe_unfused: fmoe compiled
with --no-fused-epilogues (bias and activation in row kernels instead of the
grouped GEMMs' epilogues), for comparing the compiler's two choices;
fmoe_keep: fmoe compiled with keep_activations=True (the forward keeps the
activations, the backward's da GEMM applies GeLU's derivative in its
epilogue); fmoe_owngemm: fmoe with its plain grouped GEMMs on its own sm90
kernel instead of torch's (FMOE_PLAIN_GEMM=own).
Median of CUDA-event timings after warm-up, fresh random inputs every
iteration; peak memory beside each. Prints a table and writes JSON.

    python3 bench/bench_moe.py [--shapes classic,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
import fmoe  # noqa: E402

SHAPES = {
    "classic": dict(T=16384, d=1024, h=4096, E=16, k=2, act="gelu"),
    "mixtral_gelu": dict(T=8192, d=4096, h=14336, E=8, k=2, act="gelu"),
    "mixtral_swiglu": dict(T=8192, d=4096, h=14336, E=8, k=2, act="swiglu"),
    "fine_grained": dict(T=16384, d=2048, h=1024, E=64, k=8, act="gelu"),
}


def make_layer(s, device="cuda", dtype=torch.bfloat16):
    with torch.device(device):
        layer = fmoe.FMoETransformerMLP(
            num_expert=s["E"], d_model=s["d"], d_hidden=s["h"], top_k=s["k"], activation=s["act"]
        )
    return layer.to(dtype)


def act_fn(name):
    return {"gelu": F.gelu, "swiglu": F.silu}[name]


def route(x, layer):
    # fp32 logits, as fmoe's gate computes them, so that both route alike.
    gate = layer.gate.gate
    logits = F.linear(x.float(), gate.weight.float(), gate.bias.float())
    val, idx = torch.topk(logits, layer.top_k, dim=-1)
    return idx, torch.softmax(val, -1).to(x.dtype)


def experts(layer):
    ex = layer.experts
    up = ex.up.weight if ex.up is not None else None
    return ex.htoh4.weight, ex.htoh4.bias, up, ex.h4toh.weight, ex.h4toh.bias


def loop_moe(layer, act):
    w1, b1, up, w2, b2 = experts(layer)

    def f(x):
        idx, score = route(x, layer)
        out = torch.zeros_like(x)
        for e in range(w1.shape[0]):
            tok, slot = torch.where(idx == e)
            h = F.linear(x[tok], w1[e], b1[e] if b1 is not None else None)
            h = act(h) * F.linear(x[tok], up[e]) if up is not None else act(h)
            y = F.linear(h, w2[e], b2[e] if b2 is not None else None)
            out.index_add_(0, tok, y * score[tok, slot, None])
        return out

    return f


def grouped_mm_moe(layer, act):
    w1, b1, up, w2, b2 = experts(layer)
    n_exp = w1.shape[0]

    def f(x):
        idx, score = route(x, layer)
        flat = idx.flatten()
        order = torch.argsort(flat, stable=True)
        tok = order // layer.top_k
        offs = torch.cumsum(torch.bincount(flat, minlength=n_exp), 0).to(torch.int32)
        xs = x[tok]
        h = torch._grouped_mm(xs, w1.transpose(1, 2), offs=offs)
        if b1 is not None:
            h = h + b1[flat[order]]
        h = act(h) * torch._grouped_mm(xs, up.transpose(1, 2), offs=offs) if up is not None else act(h)
        y = torch._grouped_mm(h, w2.transpose(1, 2), offs=offs)
        if b2 is not None:
            y = y + b2[flat[order]]
        y = y * score.flatten()[order, None]
        return torch.zeros_like(x).index_add_(0, tok, y)

    return f


def dense_bound(layer, act, s):
    """The expert FLOPs as one dense MLP over T*k rows (no gate, no routing)."""
    w1, b1, up, w2, b2 = (t[0].detach().clone().requires_grad_() if t is not None else None for t in experts(layer))

    def f(xr):  # xr: [T*k, d], the routed rows
        h = F.linear(xr, w1, b1)
        h = act(h) * F.linear(xr, up) if up is not None else act(h)
        return F.linear(h, w2, b2)

    return f, [p for p in (w1, b1, up, w2, b2) if p is not None]


def time_it(fn, s, backward, params, warmup=3, iters=10, rows=None):
    times = []
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + iters):
        n = rows or s["T"]
        x = torch.randn(n, s["d"], device="cuda", dtype=torch.bfloat16, requires_grad=backward)
        g = torch.randn(n, s["d"], device="cuda", dtype=torch.bfloat16) if backward else None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        y = fn(x)
        if backward:
            torch.autograd.grad(y, [x, *params], g)
        end.record()
        end.synchronize()
        if i >= warmup:
            times.append(start.elapsed_time(end))
        del x, y, g
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    return statistics.median(times), peak


def time_graph(fn, s, backward, params, warmup=3, iters=10):
    """The same step replayed from a CUDA graph (a static input refilled
    with fresh random values each time): the step without the host's launch
    overhead and start-up latency, i.e. how much of the eager time is the
    GPU waiting for the host."""
    x = torch.randn(s["T"], s["d"], device="cuda", dtype=torch.bfloat16, requires_grad=backward)
    g = torch.randn_like(x) if backward else None

    def step():
        y = fn(x)
        return torch.autograd.grad(y, [x, *params], g) if backward else y

    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()  # noqa: F841 (kept alive for the replays)
    times = []
    for _ in range(iters):
        fresh = torch.randn(s["T"], s["d"], device="cuda", dtype=torch.bfloat16)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with torch.no_grad():
            x.copy_(fresh)
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    del graph
    return statistics.median(times), peak


# Environment of the fmoe variants that differ only in how the runtime runs
# the same module.
IMPL_ENV = {
    "fmoe_owngemm": {"FMOE_PLAIN_GEMM": "own"},
}


@contextlib.contextmanager
def env(values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def timeline(p, top=8):
    """Where the GPU waits within one step: the device's kernels and memory
    operations in start order, the idle time between the first start and
    the last end, and the longest gaps with the operations around them."""
    ops = sorted(
        (e.time_range.start, e.time_range.end, e.name)
        for e in p.events()
        if e.device_type == torch.autograd.DeviceType.CUDA
    )
    if not ops:
        return
    busy = sum(end - start for start, end, _ in ops)
    span = ops[-1][1] - ops[0][0]
    gaps, last_end, last_name = [], ops[0][1], ops[0][2]
    for start, end, name in ops[1:]:
        if start > last_end:
            gaps.append((start - last_end, last_name, name))
        if end > last_end:
            last_end, last_name = end, name
    idle = sum(g for g, _, _ in gaps)
    print(f"   timeline: {len(ops)} device operations, busy {busy / 1e3:.3f} ms, span {span / 1e3:.3f} ms, "
          f"idle {idle / 1e3:.3f} ms in {len(gaps)} gaps")
    for g, before, after in sorted(gaps, reverse=True)[:top]:
        print(f"   gap {g:7.1f} us  {before[:50]:50} -> {after[:50]}")


def start_trace(p, first=14):
    """The start of the step, host and device side by side: the host's
    launch calls (runtime and driver API) and the device's operations in
    start order, in microseconds from the step's first host call, up to the
    `first`-th device operation."""
    events = sorted((e.time_range.start, e.time_range.end, e.device_type, e.name) for e in p.events())
    host_calls = [e for e in events if e[2] == torch.autograd.DeviceType.CPU and e[3].startswith(("cu", "cuda"))]
    device_ops = [e for e in events if e[2] == torch.autograd.DeviceType.CUDA]
    if not host_calls or not device_ops:
        return
    t0 = min(host_calls[0][0], device_ops[0][0])
    last = device_ops[min(first, len(device_ops)) - 1][0]
    print("   start of the step (us from the first host call): host call | device operation")
    for start, end, dev, name in sorted(e for e in host_calls + device_ops if e[0] <= last):
        side = "host  " if dev == torch.autograd.DeviceType.CPU else "device"
        print(f"   {side} {start - t0:9.1f} .. {end - t0:9.1f}  {name[:70]}")


def profile(fn, params, s, name, trace_start=False):
    """Per-kernel GPU time of one fmoe forward+backward, and where the GPU
    waits in it (the step starts on an idle GPU, as time_it's do)."""
    from torch.profiler import ProfilerActivity, profile as prof

    x = torch.randn(s["T"], s["d"], device="cuda", dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn_like(x)
    for _ in range(2):
        torch.autograd.grad(fn(x), [x, *params], g)
    torch.cuda.synchronize()
    activities = [ProfilerActivity.CUDA] + ([ProfilerActivity.CPU] if trace_start else [])
    with prof(activities=activities) as p:
        torch.autograd.grad(fn(x), [x, *params], g)
        torch.cuda.synchronize()
    print(f"-- {name}: fmoe fwd+bwd, per kernel")
    print(p.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60))
    timeline(p)
    if trace_start:
        start_trace(p)


def check(fn, ref, params, s):
    """fmoe against the grouped_mm baseline on one batch: relative error
    (norm of the difference / norm of the reference) of the output, dx and
    the first expert weight's gradient. A few near-tied tokens may route
    differently; bf16 rounding gives ~1e-2."""
    x = torch.randn(s["T"], s["d"], device="cuda", dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn_like(x)
    errs = []
    outs = []
    for f in (fn, ref):
        y = f(x)
        dx, dw = torch.autograd.grad(y, [x, params[2]], g)
        outs.append([y.float(), dx.float(), dw.float()])
    for a, b in zip(*outs):
        errs.append(((a - b).norm() / b.norm().clamp_min(1e-30)).item())
    return errs


def flops(s, backward):
    mats = 3 if s["act"] in ("swiglu", "geglu") else 2
    f = 2 * s["T"] * s["k"] * s["d"] * s["h"] * mats
    return f * (3 if backward else 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--impls", default="fmoe,fmoe_graph,loop,grouped_mm,dense")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--profile", action="store_true", help="per-kernel times of fmoe's fwd+bwd")
    ap.add_argument(
        "--trace-start", action="store_true", help="with --profile: the host's calls beside the device's first operations"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    results = []
    gpu = torch.cuda.get_device_name()
    print(f"# {gpu}, torch {torch.__version__}, bf16, median of {args.iters} after warm-up")
    print(f"{'shape':15} {'impl':11} {'pass':8} {'ms':>9} {'TFLOP/s':>8} {'vs dense':>9} {'peak GiB':>9}")
    for name in args.shapes.split(","):
        s = SHAPES[name]
        layer = make_layer(s)
        params = list(layer.parameters())
        act = act_fn(s["act"])
        impls = {}
        for impl in args.impls.split(","):
            if impl in ("fmoe", "fmoe_owngemm"):
                impls[impl] = (fmoe.compile(layer), params)
            elif impl == "fmoe_graph":
                impls[impl] = (fmoe.compile(layer), params)
            elif impl == "fmoe_keep":
                # The forward keeps act(h): the backward's da GEMM applies
                # gelu'(h) in its epilogue (more memory, one pass less).
                impls[impl] = (fmoe.compile(layer, keep_activations=True), params)
            elif impl == "fmoe_unfused":
                # The compiler's other choice: bias and activation in row
                # kernels instead of the GEMM epilogues.
                impls[impl] = (fmoe.compile(layer, no_fused_epilogues="true"), params)
            elif impl == "loop":
                impls[impl] = (loop_moe(layer, act), params)
            elif impl == "grouped_mm":
                impls[impl] = (grouped_mm_moe(layer, act), params)
            elif impl == "dense":
                impls[impl] = dense_bound(layer, act, s)
        if "fmoe" in impls and "grouped_mm" in impls:
            e = check(impls["fmoe"][0], impls["grouped_mm"][0], params, s)
            print(f"{name:15} check: fmoe vs grouped_mm relative error: output {e[0]:.1e}, "
                  f"dx {e[1]:.1e}, d fc1 weight {e[2]:.1e}")
            results.append(dict(shape=name, check=dict(output=e[0], dx=e[1], dw=e[2])))
        for backward in (False, True):
            rows = {}
            for impl, (fn, ps) in impls.items():
                try:
                    nrows = s["T"] * s["k"] if impl == "dense" else None
                    with env(IMPL_ENV.get(impl, {})):
                        if impl == "fmoe_graph":
                            ms, peak = time_graph(fn, s, backward, ps, iters=args.iters)
                        else:
                            ms, peak = time_it(fn, s, backward, ps, iters=args.iters, rows=nrows)
                except Exception as e:  # report, keep measuring the others
                    print(f"{name:15} {impl:11} {'fwd+bwd' if backward else 'fwd':8} failed: {e}")
                    continue
                rows[impl] = (ms, peak)
            dense_ms = rows.get("dense", (float("nan"),))[0]
            for impl, (ms, peak) in rows.items():
                tf = flops(s, backward) / ms / 1e9
                ratio = ms / dense_ms
                p = "fwd+bwd" if backward else "fwd"
                print(f"{name:15} {impl:11} {p:8} {ms:9.2f} {tf:8.1f} {ratio:9.2f} {peak:9.2f}")
                results.append(dict(shape=name, impl=impl, pass_=p, ms=ms, tflops=tf, vs_dense=ratio,
                                    peak_gib=peak, gpu=gpu, **s))
        if args.profile:
            for impl in ("fmoe", "fmoe_owngemm"):
                if impl in impls:
                    with env(IMPL_ENV.get(impl, {})):
                        profile(impls[impl][0], params, s, f"{name} ({impl})", args.trace_start)
        del impls, layer, params
        torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
