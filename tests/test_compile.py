"""The compiled layer (fmoe.compile → compiler → runtime, CPU backend) against a
brute-force PyTorch MoE, forward and backward.

Tolerances: relative to the largest magnitude of the reference tensor,
1e-5 for fp32 and 2e-2 for bf16 (the reference computes in fp64 from the
same parameters).
"""

import copy
import itertools

import pytest
import torch
from torch import nn

import fmoe
from fmoe.compiler import CompileError, cache_dir
from reference import brute_force_layer

TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}
D_MODEL, D_HIDDEN = 24, 40

EK = [(e, k) for e in (1, 2, 4, 8, 16) for k in sorted({1, 2, 3, e}) if k <= e]
SHAPES = {0: (0, D_MODEL), 1: (1, D_MODEL), 7: (7, D_MODEL), 257: (1, 257, D_MODEL)}


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    """Max abs error relative to the reference's largest magnitude (floored at
    1e-6, so that gradients that are zero up to rounding compare absolutely)."""
    if ref.numel() == 0:
        return 0.0
    scale = max(ref.abs().max().item(), 1e-6)
    return (a.double() - ref.double()).abs().max().item() / scale


def make_layer(e, k, dtype, activation="gelu", seed=0, d_model=D_MODEL, d_hidden=D_HIDDEN, **kw):
    torch.manual_seed(seed)
    layer = fmoe.FMoETransformerMLP(
        num_expert=e, d_model=d_model, d_hidden=d_hidden, top_k=k, activation=activation, **kw
    )
    # Give the biases values so that their gradients and uses are tested.
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return layer.to(dtype)


def check_layer(layer, compiled, shape, dtype, activation):
    torch.manual_seed(1)
    x = torch.randn(*shape, dtype=dtype)
    x_ref = x.detach().double().requires_grad_()
    x_c = x.detach().clone().requires_grad_()
    params = list(layer.parameters())
    ref_params = [p.detach().double().requires_grad_() for p in params]
    ref_layer = copy.deepcopy(layer).double()
    with torch.no_grad():
        for p, r in zip(ref_layer.parameters(), ref_params):
            p.copy_(r)
    y_ref = brute_force_layer(ref_layer, x_ref, activation)
    y = compiled(x_c)
    assert y.shape == x.shape and y.dtype == dtype
    tol = TOL[dtype]
    assert rel_err(y, y_ref) <= tol, f"forward: {rel_err(y, y_ref)}"
    if x.numel() == 0:
        return
    g = torch.randn_like(y_ref)
    grads = torch.autograd.grad(y, [x_c, *params], g.to(dtype))
    grads_ref = torch.autograd.grad(y_ref, [x_ref, *ref_layer.parameters()], g)
    names = ["input"] + [n for n, _ in layer.named_parameters()]
    # In bf16 the gate's gradient is a difference of rounded dot products:
    # hold fmoe to twice eager PyTorch's own error at the same precision.
    x_e = x.detach().clone().requires_grad_()
    grads_eager = torch.autograd.grad(layer(x_e), [x_e, *params], g.to(dtype))
    for name, a, b, c in zip(names, grads, grads_ref, grads_eager):
        assert a.shape == b.shape, name
        bound = tol if dtype == torch.float32 else max(4 * tol, 2 * rel_err(c, b))
        assert rel_err(a, b) <= bound, f"grad {name}: {rel_err(a, b)} (eager {rel_err(c, b)})"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("e,k", EK, ids=[f"E{e}k{k}" for e, k in EK])
def test_matches_brute_force(e, k, dtype):
    layer = make_layer(e, k, dtype)
    compiled = fmoe.compile(layer)
    for t, shape in SHAPES.items():
        check_layer(layer, compiled, shape, dtype, "gelu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("gate_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("e,k", [(32, 4), (64, 8)], ids=["E32k4", "E64k8"])
def test_many_experts_gate_by_gemm(e, k, gate_bias, dtype):
    # From 32 experts on, the gate's logits come from a GEMM with an f32
    # result (mixed types in bf16) and a separate kernel adds the bias and
    # routes.
    layer = make_layer(e, k, dtype, gate_bias=gate_bias)
    compiled = fmoe.compile(layer)
    for shape in [(7, D_MODEL), (1, 257, D_MODEL)]:
        check_layer(layer, compiled, shape, dtype, "gelu")


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu"])
def test_activations(activation):
    layer = make_layer(4, 2, torch.float32, activation=activation)
    compiled = fmoe.compile(layer)
    check_layer(layer, compiled, (7, 3, D_MODEL), torch.float32, activation)


@pytest.mark.parametrize("activation", ["swiglu", "geglu"])
def test_glu_biases_in_gemm_epilogues(activation):
    # bf16 GLU experts with both biases: the rows are gathered once for the
    # gate and up GEMMs, fc1's bias comes with the gate half's GEMM (none
    # with the up half's), fc2's with its GEMM; the backward gathers the
    # rows into dy's memory and adds the up half's input gradient in place.
    layer = make_layer(4, 2, torch.bfloat16, activation=activation)
    compiled = fmoe.compile(layer)
    for shape in [(1, D_MODEL), (7, 3, D_MODEL)]:
        check_layer(layer, compiled, shape, torch.bfloat16, activation)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
def test_fine_grained_experts_save_their_rows(activation, dtype):
    # d_hidden <= d_model: the forward saves the gathered rows for the
    # backward (which then does not gather them again).
    torch.manual_seed(0)
    layer = fmoe.FMoETransformerMLP(num_expert=8, d_model=D_MODEL, d_hidden=16, top_k=4, activation=activation)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    layer = layer.to(dtype)
    compiled = fmoe.compile(layer)
    for shape in [(1, D_MODEL), (33, D_MODEL)]:
        check_layer(layer, compiled, shape, dtype, activation)


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu"])
def test_activations_in_vector_bodies(activation):
    # d_hidden 64: 8 rows of 32 threads per block, 2 columns per access, so
    # every activation and its gradient is built on vectors (a compile error
    # or crash here is a compiler bug; the CPU backend then checks numerics).
    torch.manual_seed(0)
    layer = fmoe.FMoETransformerMLP(num_expert=4, d_model=D_MODEL, d_hidden=64, top_k=2, activation=activation)
    compiled = fmoe.compile(layer)
    check_layer(layer, compiled, (9, D_MODEL), torch.float32, activation)


@pytest.mark.parametrize(
    "gate,kw",
    [
        (fmoe.gates.SoftmaxTopKGate, {}),
        (fmoe.gates.SoftmaxTopKGate, {"renormalize": True}),
        (fmoe.gates.SigmoidGate, {}),
        (fmoe.gates.SigmoidGate, {"renormalize": True}),
    ],
    ids=["softmax_topk", "softmax_topk_renorm", "sigmoid", "sigmoid_renorm"],
)
@pytest.mark.parametrize("e", [8, 32])
def test_gate_kinds(gate, kw, e):
    g = type("G", (gate,), {"__init__": lambda self, *a, **k: gate.__init__(self, *a, **{**k, **kw})})
    g.fmoe_gate_kind = gate.fmoe_gate_kind
    layer = make_layer(e, 3, torch.float32, gate=g)
    compiled = fmoe.compile(layer)
    check_layer(layer, compiled, (33, D_MODEL), torch.float32, "gelu")


def test_no_biases():
    torch.manual_seed(0)
    layer = fmoe.FMoETransformerMLP(num_expert=4, d_model=D_MODEL, d_hidden=D_HIDDEN, top_k=2, gate_bias=False)
    with torch.no_grad():
        layer.experts.htoh4.bias = None
        layer.experts.h4toh.bias = None
    compiled = fmoe.compile(layer)
    check_layer(layer, compiled, (9, D_MODEL), torch.float32, "gelu")


class TwoLayerModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(16, D_MODEL)
        self.moe1 = fmoe.FMoETransformerMLP(num_expert=4, d_model=D_MODEL, d_hidden=D_HIDDEN, top_k=2)
        self.norm = nn.LayerNorm(D_MODEL)
        self.moe2 = fmoe.FMoETransformerMLP(num_expert=2, d_model=D_MODEL, d_hidden=D_HIDDEN, top_k=1)
        self.head = nn.Linear(D_MODEL, 3)

    def forward(self, x):
        h = self.embed(x)
        h = h + self.moe1(h)
        h = h + self.moe2(self.norm(h))
        return self.head(h)


def test_training_trajectory_matches_uncompiled():
    torch.manual_seed(0)
    eager = TwoLayerModel()
    ref = copy.deepcopy(eager)
    compiled = fmoe.compile(eager)
    # The compiled model shares the original's parameters.
    assert [p.data_ptr() for p in compiled.parameters()] == [p.data_ptr() for p in eager.parameters()]
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    opt = torch.optim.Adam(eager.parameters(), lr=1e-2)
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(5)
    for step in range(20):
        x = torch.randn(4, 9, 16, generator=gen)
        target = torch.randint(0, 3, (4, 9), generator=gen)
        loss = nn.functional.cross_entropy(compiled(x).flatten(0, 1), target.flatten())
        loss_ref = nn.functional.cross_entropy(ref(x).flatten(0, 1), target.flatten())
        assert abs(loss.item() - loss_ref.item()) <= 1e-4 * max(1.0, abs(loss_ref.item())), step
        opt.zero_grad()
        opt_ref.zero_grad()
        loss.backward()
        loss_ref.backward()
        opt.step()
        opt_ref.step()
    for (n, p), q in zip(eager.named_parameters(), ref.parameters()):
        assert rel_err(p, q) <= 1e-3, n


def test_bad_inputs_raise_and_leave_the_layer_usable():
    layer = make_layer(4, 2, torch.float32)
    compiled = fmoe.compile(layer)
    with pytest.raises(ValueError, match=r"\[\.\.\., 24\] \(d_model\), got \[5, 25\]"):
        compiled(torch.randn(5, 25))
    with pytest.raises(TypeError, match="expected input dtype torch.float32"):
        compiled(torch.randn(5, D_MODEL, dtype=torch.float64))
    with pytest.raises(ValueError, match="input is on meta"):
        compiled(torch.randn(5, D_MODEL, device="meta"))
    check_layer(layer, compiled, (6, D_MODEL), torch.float32, "gelu")


def test_second_backward_through_one_graph_is_refused():
    # The backward writes the pre-activation's gradient over the saved
    # pre-activation: a second backward through the same graph must fail
    # loudly, not read gradients as activations.
    layer = make_layer(4, 2, torch.float32)
    compiled = fmoe.compile(layer)
    x = torch.randn(9, D_MODEL, requires_grad=True)
    loss = compiled(x).square().sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match=r"second backward.*keep_saved=True"):
        loss.backward()
    # A fresh forward trains as before.
    compiled(x).square().sum().backward()


def test_keep_saved_allows_a_second_backward():
    layer = make_layer(4, 2, torch.float32)
    compiled = fmoe.compile(layer, keep_saved=True)
    x = torch.randn(9, D_MODEL, requires_grad=True)
    params = list(layer.parameters())
    loss = compiled(x).square().sum()
    once = torch.autograd.grad(loss, [x, *params], retain_graph=True)
    twice = torch.autograd.grad(loss, [x, *params])
    for a, b in zip(once, twice):
        assert torch.equal(a, b)
    # The same numbers as the default module.
    again = torch.autograd.grad(fmoe.compile(layer)(x).square().sum(), [x, *params])
    for a, b in zip(once, again):
        assert rel_err(a, b) <= 1e-6


@pytest.mark.parametrize("activation", ["gelu", "relu"])
@pytest.mark.parametrize("e,k", [(1, 1), (4, 2), (8, 3)], ids=["E1k1", "E4k2", "E8k3"])
def test_keep_activations(e, k, activation):
    """keep_activations=True: a bf16 GeLU layer with both biases keeps act(h)
    for the backward, whose da GEMM applies gelu'(h) (fmoe_rt_grouped_gemm_dact,
    dh written over h); the numbers match the brute force as the default
    module's do. Other activations compile as without the option."""
    layer = make_layer(e, k, torch.bfloat16, activation=activation, seed=e + k)
    compiled = fmoe.compile(layer, keep_activations=True)
    (info,) = compiled._fmoe_modules.values()
    kept = b"fmoe_rt_grouped_gemm_dact" in info.path.read_bytes()
    assert kept == (activation == "gelu"), "keep_activations was not applied as expected"
    for shape in [SHAPES[1], SHAPES[7], SHAPES[257]]:
        check_layer(layer, compiled, shape, torch.bfloat16, activation)
    # The default module keeps nothing.
    (info,) = fmoe.compile(layer)._fmoe_modules.values()
    assert b"fmoe_rt_grouped_gemm_dact" not in info.path.read_bytes()


@pytest.mark.parametrize("d_model,fused", [(2048, True), (1024, False)], ids=["d2048", "d1024"])
def test_activation_in_gemm_epilogues_from_d_model_2048(d_model, fused):
    """A bf16 GeLU layer with both biases and d_model >= 2048 computes GeLU
    in the expert GEMMs' epilogues: fc1 is fmoe_rt_grouped_gemm_bias_act (h
    and gelu(h)), the backward's da GEMM fmoe_rt_grouped_gemm_dact_act (dh
    over h, gelu(h) beside), with no bias_act or act_and_grad pass; narrower
    layers keep the passes. Either way the numbers match the brute force."""
    layer = make_layer(4, 2, torch.bfloat16, seed=3, d_model=d_model, d_hidden=16)
    compiled = fmoe.compile(layer)
    (info,) = compiled._fmoe_modules.values()
    data = info.path.read_bytes()
    assert (b"fmoe_rt_grouped_gemm_bias_act" in data) == fused
    assert (b"fmoe_rt_grouped_gemm_dact_act" in data) == fused
    assert (b"act_and_grad" in data) != fused
    for shape in [(7, d_model), (1, 33, d_model)]:
        check_layer(layer, compiled, shape, torch.bfloat16, "gelu")


def test_top_k_larger_than_experts_is_refused():
    layer = make_layer(4, 2, torch.float32)
    layer.top_k = 5
    with pytest.raises(CompileError, match=r"top_k <= num_experts \(4\), got 5"):
        fmoe.compile(layer)


def test_unsupported_layer_is_named():
    layer = make_layer(2, 1, torch.float32)
    layer.gate_hook = lambda *a: None
    model = nn.Sequential(nn.Linear(D_MODEL, D_MODEL), layer)
    with pytest.raises(CompileError, match=r"MoE layer '1': gate_hook"):
        fmoe.compile(model)
    with pytest.raises(CompileError, match="found no MoE layer"):
        fmoe.compile(nn.Linear(3, 3))


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_cached_module(damage):
    layer = make_layer(2, 2, torch.float32, seed=7)
    path = fmoe.compile(layer)._fmoe_modules[torch.float32].path
    assert path.parent == cache_dir()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else data.replace(b"target sm_90", b"target sm_80"))
    with pytest.raises(CompileError, match="truncated file|checksum mismatch"):
        fmoe.compile(layer)
    # The original layer still works, and recompiling repairs the cache.
    assert layer(torch.randn(3, D_MODEL)).shape == (3, D_MODEL)
    compiled = fmoe.compile(layer, recompile=True)
    check_layer(layer, compiled, (5, D_MODEL), torch.float32, "gelu")


def test_runtime_only_install_explains_ahead_of_time_compilation(monkeypatch, tmp_path):
    monkeypatch.setenv("FMOE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FMOE_COMPILER", str(tmp_path / "missing"))
    monkeypatch.setattr(fmoe.compiler, "_compiler", lambda: None)
    layer = make_layer(2, 1, torch.float32, seed=11)
    with pytest.raises(CompileError, match="(?s)runtime-only install.*fmoe-compile moe_layer-"):
        fmoe.compile(layer)


def test_fake_tensor_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    layer = make_layer(4, 2, torch.float32)
    compiled = fmoe.compile(layer)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        x = mode.from_tensor(torch.randn(11, D_MODEL))
        y = compiled(x)
        assert y.shape == (11, D_MODEL)


def test_fake_tensor_shapes_of_an_expert_parallel_program():
    """The expert side of an exchange has as many rows as arrive: in fake
    mode those outputs get unbacked (data-dependent) sizes, the rest exact."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    with torch.device("meta"):
        ep = fmoe.FMoETransformerMLP(num_expert=2, d_model=D_MODEL, d_hidden=32, top_k=2, world_size=2)
    cfg = ep.moe_config()
    info = fmoe.compiler._compile_ir(fmoe.compiler.emit_mlir(cfg, "moe_layer"), "moe_layer", {}, False)
    shapes = [p.shape for p in cfg["params"].values()]
    with FakeTensorMode(shape_env=ShapeEnv()):
        inputs = [torch.randn(7, D_MODEL)] + [torch.randn(s) for s in shapes]
        outs = torch.ops.fmoe.run(info.handle, "forward", 7, inputs)
    assert outs[0].shape == (7 * D_MODEL,)
    unbacked = [o for o in outs if not isinstance(o.shape[0], int)]
    assert len(unbacked) == 2, [o.shape for o in outs]  # the saved h and received rows
    # One row count R for both: h has d_hidden columns, the rows d_model.
    symbols = [o.shape[0].node.expr.free_symbols for o in unbacked]
    assert symbols[0] == symbols[1] and len(symbols[0]) == 1, symbols
    r = next(iter(symbols[0]))
    assert {o.shape[0].node.expr for o in unbacked} == {32 * r, D_MODEL * r}


def test_torch_compile_traces_the_layer():
    layer = make_layer(4, 2, torch.float32)
    compiled = fmoe.compile(layer)
    x = torch.randn(10, D_MODEL)
    traced = torch.compile(compiled, backend="eager")
    assert rel_err(traced(x), compiled(x)) == 0.0
    # Forward and backward through AOTAutograd (the backward overwrites a
    # saved value it has read for the last time; the traced graph must
    # still give the eager gradients).
    torch._dynamo.reset()
    x = x.requires_grad_()
    params = list(layer.parameters())
    want = torch.autograd.grad(compiled(x).square().sum(), [x, *params])
    got = torch.autograd.grad(torch.compile(compiled, backend="aot_eager")(x).square().sum(), [x, *params])
    for a, b in zip(got, want):
        assert rel_err(a, b) <= 1e-6


def routed_indices(compiled, layer, x, e, k):
    """The forward program's routing indices for rows x: the int32 output of
    T*k entries whose values are all expert ids or -1 (the slot positions
    and the rows' token ids run past E when T*k and T are above E)."""
    params = list(layer.moe_config()["params"].values())
    info = compiled._fmoe_module_for(x.dtype)
    outs = torch.ops.fmoe.run(info.handle, "forward", x.shape[0], [x, *params])
    found = [
        o.view(-1, k)
        for o in outs[1:]
        if o.dtype == torch.int32 and o.numel() == x.shape[0] * k and o.min() >= -1 and o.max() < e
    ]
    assert len(found) == 1, [(o.dtype, o.shape) for o in outs]
    return found[0]


def test_nan_gate_logits_pick_no_expert_twice():
    """With fewer non-NaN logits than top_k, the rounds after the last real
    pick find nothing (index -1): no expert is picked twice, NaN never."""
    e, k, alive = 16, 16, 6
    layer = make_layer(e, k, torch.float32)
    with torch.no_grad():
        layer.gate.gate.weight[alive:] = float("nan")
    compiled = fmoe.compile(layer)
    x = torch.randn(33, D_MODEL)
    idx = routed_indices(compiled, layer, x, e, k)
    for row in idx.tolist():
        picked = [i for i in row if i >= 0]
        assert sorted(picked) == list(range(alive)), row
        assert row[alive:] == [-1] * (k - alive), row
    assert torch.isfinite(compiled(x)).all()


def test_forward_reads_the_parameters_each_step():
    """A compiled forward reads the layer's parameters every step (a
    parameter replaced after compiling is used) and refuses a mask set after
    compiling."""
    layer = make_layer(4, 2, torch.float32)
    compiled = fmoe.compile(layer)
    x = torch.randn(5, D_MODEL)
    before = compiled(x)
    layer.experts.h4toh.bias = torch.nn.Parameter(layer.experts.h4toh.bias.detach() + 1.0)
    after = compiled(x)
    assert not torch.allclose(before, after)
    assert rel_err(after, brute_force_layer(copy.deepcopy(layer).double(), x.double(), "gelu")) <= 1e-5
    compiled.mask = torch.zeros(5)
    with pytest.raises(ValueError, match="mask"):
        compiled(x)
