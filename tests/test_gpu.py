"""The compiled layer on the GPU (CUDA backend): numerics in fp32, bf16 and
fp16 against the brute-force MoE and against the CPU backend, CUDA-graph
capture and replay, skewed routing. Marked `gpu`: skipped without a GPU.

On a machine without the compiler (the GPU machine), the modules come from
the fmoe.compile cache, filled beforehand by `bench/prepare_cache.py`, which
compiles every configuration listed in GPU_CONFIGS.
"""

import copy

import pytest
import torch

import fmoe
from reference import brute_force_layer

D_MODEL, D_HIDDEN = 24, 40
TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-2}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}

# (num_expert, top_k, activation, dtype name): every layer the GPU tests build.
GPU_CONFIGS = [
    (e, k, act, dt)
    for (e, k) in [(1, 1), (2, 2), (4, 1), (4, 3), (8, 2), (16, 16)]
    for act in ["gelu"]
    for dt in DTYPES
] + [(8, 2, act, "bf16") for act in ["relu", "gelu_tanh", "silu", "swiglu", "geglu"]]
# Rows long enough for the compiler's vector column bodies (8, 4 and 2
# columns per access): (num_expert, top_k, activation, dtype, d_model, d_hidden).
# With 64 experts the gate's logits come from a GEMM with an f32 result
# (cuBLAS through torch in bf16, the runtime's kernel in fp16).
WIDE_CONFIGS = (
    [(4, 2, "gelu", dt, 512, 2048) for dt in DTYPES]
    + [(4, 2, act, "bf16", 1024, 1536) for act in ["swiglu", "relu", "gelu_tanh", "geglu"]]
    + [(64, 8, "gelu", dt, 256, 512) for dt in DTYPES]
    # Fine-grained (d_hidden <= d_model): the forward saves the gathered rows.
    + [(16, 4, act, "bf16", 512, 256) for act in ["gelu", "swiglu"]]
)


def make_layer(e, k, activation, dtype, device="cpu", seed=0, d_model=D_MODEL, d_hidden=D_HIDDEN):
    torch.manual_seed(seed)
    with torch.device(device):
        layer = fmoe.FMoETransformerMLP(
            num_expert=e, d_model=d_model, d_hidden=d_hidden, top_k=k, activation=activation
        )
    if device != "meta":
        with torch.no_grad():
            for name, p in layer.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0, 0.1)
    return layer.to(dtype)


def rel_err(a, ref):
    """Max abs error relative to the reference's largest magnitude (floored at
    1e-6, so that gradients that are zero up to rounding compare absolutely)."""
    if ref.numel() == 0:
        return 0.0
    scale = max(ref.abs().max().item(), 1e-6)
    return (a.double().cpu() - ref.double().cpu()).abs().max().item() / scale


def run(layer, x, g):
    x = x.detach().clone().requires_grad_()
    y = layer(x)
    grads = torch.autograd.grad(y, [x, *layer.parameters()], g)
    return y.detach(), grads


def check_layer(cpu_layer, act, dtype, shapes, **options):
    """The compiled layer on the GPU against the fp64 brute force (and, in
    fp32, against the CPU backend) for inputs of each shape. `options` go
    to fmoe.compile."""
    gpu_layer = copy.deepcopy(cpu_layer).cuda()
    compiled_gpu = fmoe.compile(gpu_layer, **options)
    for shape in shapes:
        torch.manual_seed(2)
        x = torch.randn(*shape, dtype=dtype)
        g = torch.randn(*shape, dtype=dtype)
        y, grads = run(compiled_gpu, x.cuda(), g.cuda())
        # The brute force, in fp64 from the same parameters.
        ref_layer = copy.deepcopy(cpu_layer).double()
        xr = x.double().requires_grad_()
        yr = brute_force_layer(ref_layer, xr, act)
        assert rel_err(y, yr) <= TOL[dtype], f"forward {shape}: {rel_err(y, yr)}"
        if x.numel() == 0:
            continue
        grads_ref = torch.autograd.grad(yr, [xr, *ref_layer.parameters()], g.double())
        names = ["input"] + [n for n, _ in cpu_layer.named_parameters()]
        # The gate's gradient is a difference of dot products (the scores'
        # gradients), ill-conditioned for a single token: its error grows with
        # the cancellation whatever the summation order, so it is held to ten
        # times eager PyTorch's own error on the same input. In 16-bit
        # storage fmoe also rounds h before the activation and, off the
        # bf16 bias-epilogue GEMMs, the GEMM result before the bias: every
        # gradient is held to three times eager's error there.
        _, grads_eager = run(copy.deepcopy(cpu_layer).cuda(), x.cuda(), g.cuda())
        for n, a, b, c in zip(names, grads, grads_ref, grads_eager):
            tol = TOL[dtype] * (4 if dtype != torch.float32 else 1)
            if dtype != torch.float32:
                tol = max(tol, 3 * rel_err(c, b))
            if n.startswith("gate."):
                tol = max(tol, 10 * rel_err(c, b))
            assert rel_err(a, b) <= tol, f"grad {n} {shape}: {rel_err(a, b)} (eager {rel_err(c, b)})"
        # The CPU backend on the same inputs (the oracle of the CUDA backend).
        if dtype == torch.float32:
            yc, grads_c = run(fmoe.compile(cpu_layer), x, g)
            assert rel_err(y, yc) <= 1e-5
            for n, a, b in zip(names, grads, grads_c):
                assert rel_err(a, b) <= 1e-5, n


@pytest.mark.gpu
@pytest.mark.parametrize("e,k,act,dt", GPU_CONFIGS, ids=[f"E{e}k{k}-{a}-{d}" for e, k, a, d in GPU_CONFIGS])
def test_gpu_matches_brute_force_and_cpu_backend(e, k, act, dt):
    check_layer(
        make_layer(e, k, act, DTYPES[dt]), act, DTYPES[dt],
        [(0, D_MODEL), (1, D_MODEL), (7, D_MODEL), (3, 257, D_MODEL)],
    )


@pytest.mark.gpu
@pytest.mark.parametrize(
    "e,k,act,dt,d,h", WIDE_CONFIGS, ids=[f"E{e}k{k}-{a}-{t}-{d}x{h}" for e, k, a, t, d, h in WIDE_CONFIGS]
)
def test_vector_column_bodies(e, k, act, dt, d, h):
    layer = make_layer(e, k, act, DTYPES[dt], d_model=d, d_hidden=h)
    check_layer(layer, act, DTYPES[dt], [(5, d), (96, d)])


@pytest.mark.gpu
def test_bias_gemm_without_the_fused_kernel(monkeypatch):
    """FMOE_NO_FUSED_GEMM=1: the bf16 bias GEMMs run as the plain grouped
    GEMM and a bias pass (the path of other GPUs and of builds without the
    CUTLASS headers), within the same bounds."""
    monkeypatch.setenv("FMOE_NO_FUSED_GEMM", "1")
    layer = make_layer(4, 2, "gelu", torch.bfloat16, d_model=512, d_hidden=2048)
    check_layer(layer, "gelu", torch.bfloat16, [(5, 512), (96, 512)])


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [True, False], ids=["cutlass", "fallback"])
def test_keep_activations(fused, monkeypatch):
    """keep_activations=True: the backward's da GEMM applies gelu'(h) in its
    epilogue and writes dh over h (CUTLASS DGrad in place), or, with
    FMOE_NO_FUSED_GEMM=1, the plain GEMM into a scratch buffer and a dGeLU
    pass; within the same bounds as the default module."""
    if not fused:
        monkeypatch.setenv("FMOE_NO_FUSED_GEMM", "1")
    layer = make_layer(4, 2, "gelu", torch.bfloat16, d_model=512, d_hidden=2048)
    check_layer(layer, "gelu", torch.bfloat16, [(5, 512), (96, 512)], keep_activations=True)


@pytest.mark.gpu
@pytest.mark.parametrize("fused", [True, False], ids=["cutlass", "fallback"])
def test_activation_in_gemm_epilogues(fused, monkeypatch):
    """d_model >= 2048 (bf16 GeLU, both biases): fc1's GEMM stores h and
    gelu(h) (CUTLASS BiasAct), the da GEMM stores dh over h and gelu(h)
    beside (DAct in place); with FMOE_NO_FUSED_GEMM=1 the plain GEMMs and
    passes that write the same. Within the default module's bounds, empty experts included."""
    if not fused:
        monkeypatch.setenv("FMOE_NO_FUSED_GEMM", "1")
    layer = make_layer(8, 2, "gelu", torch.bfloat16, d_model=2048, d_hidden=256)
    check_layer(layer, "gelu", torch.bfloat16, [(3, 2048), (96, 2048)])


@pytest.mark.gpu
def test_misaligned_input_view():
    # A view that starts 2 bytes into its storage: the kernels need 16-byte
    # aligned buffers, so the op copies it; the result must not change.
    e, k, act, dt, d, h = WIDE_CONFIGS[1]
    layer = make_layer(e, k, act, DTYPES[dt], d_model=d, d_hidden=h).cuda()
    compiled = fmoe.compile(layer)
    x = torch.randn(64, d, dtype=DTYPES[dt], device="cuda")
    storage = torch.empty(64 * d + 1, dtype=x.dtype, device="cuda")
    view = storage[1:].view(64, d)
    view.copy_(x)
    assert view.data_ptr() % 16 != 0
    torch.testing.assert_close(compiled(view), compiled(x), rtol=0, atol=0)


@pytest.mark.gpu
def test_cuda_graph_capture_and_replay():
    layer = make_layer(8, 2, "gelu", torch.bfloat16, device="cuda")
    compiled = fmoe.compile(layer)
    static_x = torch.randn(64, D_MODEL, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    params = list(layer.parameters())

    def step():
        y = compiled(static_x)
        return (y.float() ** 2).sum(), y

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):  # warm up: modules loaded, kernels JIT-compiled
            loss, _ = step()
            torch.autograd.grad(loss, [static_x, *params])
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss, y = step()
        grads = torch.autograd.grad(loss, [static_x, *params])
    for trial in range(3):
        fresh = torch.randn(64, D_MODEL, device="cuda", dtype=torch.bfloat16)
        with torch.no_grad():
            static_x.copy_(fresh)
        graph.replay()
        x = fresh.clone().requires_grad_()
        loss_e, y_e = (lambda out: ((out.float() ** 2).sum(), out))(compiled(x))
        grads_e = torch.autograd.grad(loss_e, [x, *params])
        assert rel_err(y, y_e) <= 1e-2, trial
        for a, b in zip(grads, grads_e):
            assert rel_err(a, b) <= 5e-2, trial


@pytest.mark.gpu
def test_skewed_routing():
    # Expert 0 wins every token's first slot; experts 5..7 receive nothing.
    layer = make_layer(8, 2, "gelu", torch.float32)
    with torch.no_grad():
        layer.gate.gate.bias.copy_(torch.tensor([50.0, 1, 1, 1, 1, -50, -50, -50]))
    gpu_layer = copy.deepcopy(layer).cuda()
    compiled = fmoe.compile(gpu_layer)
    x = torch.randn(300, D_MODEL)
    g = torch.randn(300, D_MODEL)
    y, grads = run(compiled, x.cuda(), g.cuda())
    ref_layer = copy.deepcopy(layer).double()
    xr = x.double().requires_grad_()
    yr = brute_force_layer(ref_layer, xr, "gelu")
    assert rel_err(y, yr) <= 1e-5
    grads_ref = torch.autograd.grad(yr, [xr, *ref_layer.parameters()], g.double())
    for a, b in zip(grads, grads_ref):
        assert rel_err(a, b) <= 1e-5
    # Experts without tokens get zero weight gradients.
    w1_grad = grads[1 + [n for n, _ in layer.named_parameters()].index("experts.htoh4.weight")]
    assert w1_grad[5:].abs().max().item() == 0.0


@pytest.mark.gpu
@pytest.mark.parametrize("e,k,d,h", [(16, 16, D_MODEL, D_HIDDEN), (64, 8, 256, 512)], ids=["gate_route", "bias_route"])
def test_nan_gate_logits_route_as_on_the_cpu(e, k, d, h):
    """Fewer non-NaN gate logits than top_k: the GPU's routing (a lane per
    token from registers with 16 experts, a warp per token with 64) picks
    what the CPU backend picks, no expert twice; the output matches."""
    cpu_layer = make_layer(e, k, "gelu", torch.float32, d_model=d, d_hidden=h)
    with torch.no_grad():
        cpu_layer.gate.gate.weight[5:] = float("nan")
    gpu_layer = copy.deepcopy(cpu_layer).cuda()
    torch.manual_seed(3)
    x = torch.randn(33, d)
    y_cpu = fmoe.compile(cpu_layer)(x)
    y_gpu = fmoe.compile(gpu_layer)(x.cuda())
    assert torch.isfinite(y_cpu).all()
    assert rel_err(y_gpu, y_cpu) <= 1e-5
