"""The uncompiled fmoe layers against the brute-force reference (tests/reference.py).

Run: ``PYTHONPATH=python python3 -m pytest -q tests/test_layers.py``.
Tests marked ``gpu`` run on CUDA and are skipped without a CUDA device.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import pytest
import torch
import torch.nn as nn

import fmoe
import fmoe.layers as fmoe_layers
from fmoe import FMoE, FMoELinear, FMoETransformerMLP
from fmoe.gates import BaseGate, NaiveGate, SigmoidGate, SoftmaxTopKGate
from reference import (
    brute_force_gate,
    brute_force_layer,
    brute_force_moe,
    gate_kind_of,
    layer_weights,
)

D_MODEL = 24
D_HIDDEN = 40
FP32_TOL = 1e-5
BF16_TOL = 2e-2

_CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ],
)
DEVICES = ["cpu", _CUDA]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def rel_err(actual: torch.Tensor, expected: torch.Tensor, min_scale: float = 0.0) -> float:
    """max |actual - expected| / max(max |expected|, min_scale, 1e-9) (0 for empty tensors).

    The 1e-9 floor makes a mathematically zero reference (e.g. the gate
    gradient of a renormalised top-1 gate, fp64 round-off ~1e-16) compare
    absolutely.
    """
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if expected.numel() == 0:
        return 0.0
    a = actual.detach().double().cpu()
    e = expected.detach().double().cpu()
    assert torch.isfinite(a).all(), "non-finite values"
    scale = max(e.abs().max().item(), min_scale, 1e-9)
    return (a - e).abs().max().item() / scale


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str, min_scale: float = 0.0
) -> None:
    err = rel_err(actual, expected, min_scale)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e}"


def randomize_(layer: nn.Module, seed: int) -> None:
    """Non-zero biases (FMoELinear starts them at zero) so that they are tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def make_mlp(
    num_expert: int,
    top_k: int,
    activation="gelu",
    seed: int = 0,
    **kwargs,
) -> FMoETransformerMLP:
    torch.manual_seed(seed)
    layer = FMoETransformerMLP(
        num_expert=num_expert,
        d_model=D_MODEL,
        d_hidden=D_HIDDEN,
        activation=activation,
        top_k=top_k,
        **kwargs,
    )
    randomize_(layer, seed + 1)
    return layer


def grad_output(shape: Sequence[int], like: torch.Tensor, seed: int = 7) -> torch.Tensor:
    """A fixed random upstream gradient."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float64).to(like)


def forward_backward(
    layer: nn.Module, x: torch.Tensor, grad_out_seed: int = 7
) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
    """Output, input grad and every parameter grad (zeros where autograd has none)."""
    x = x.detach().requires_grad_(True)
    out = layer(x)
    names, params = zip(*layer.named_parameters())
    grads = torch.autograd.grad(
        out, [x, *params], grad_output(out.shape, out, grad_out_seed), allow_unused=True
    )
    grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip([x, *params], grads)]
    return out, grads[0], dict(zip(names, grads[1:]))


def reference_forward_backward(
    layer: FMoETransformerMLP,
    x: torch.Tensor,
    activation: str,
    grad_out_seed: int = 7,
    idx: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
    """The same through the brute force (fp64 math on the layer's own parameters)."""
    x = x.detach().requires_grad_(True)
    out = brute_force_layer(layer, x, activation, idx=idx)
    names, params = zip(*layer.named_parameters())
    if out.numel() == 0:
        return out, torch.zeros_like(x), {n: torch.zeros_like(p) for n, p in zip(names, params)}
    g = grad_output(out.shape, out, grad_out_seed)
    grads = torch.autograd.grad(out, [x, *params], g, allow_unused=True)
    grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip([x, *params], grads)]
    return out, grads[0], dict(zip(names, grads[1:]))


def gate_grad_scales(
    layer: FMoETransformerMLP,
    x: torch.Tensor,
    activation: str,
    idx: Optional[torch.Tensor],
    grad_out_seed: int = 7,
) -> Dict[str, float]:
    r"""Error scales for the gate parameter gradients.

    ``d gate.bias = sum_t dlogits[t]`` and ``d gate.weight = sum_t dlogits[t] x[t]^T``
    are sums of terms that cancel (the softmax gradient sums to zero over the
    experts), so their max abs value can be far below the size of the terms,
    and any rounding in the terms shows up as a large relative error. A
    rounding error is bounded by ``eps * sum_t |dlogits[t]| (|x[t]|)``; that
    sum is used as the error scale when it exceeds the max abs value.
    """
    flat = x.detach().reshape(-1, x.shape[-1]).double()
    if flat.shape[0] == 0:
        return {}
    gate = layer.gate
    tot = gate.tot_expert
    bias = gate.gate.bias
    bias0 = bias.detach().double() if bias is not None else torch.zeros(tot, dtype=torch.float64)
    # A per-token copy of the bias: its gradient is dlogits[t].
    bias_tok = bias0.to(flat.device).expand(flat.shape[0], tot).clone().requires_grad_(True)
    rid, rscore = brute_force_gate(
        flat,
        gate.gate.weight.detach(),
        bias_tok,
        gate_kind_of(gate),
        layer.top_k,
        renormalize=bool(getattr(gate, "renormalize", False)),
        idx=idx,
    )
    weights = {k: v.detach() for k, v in layer_weights(layer).items()}
    out = brute_force_moe(flat, rid, rscore, weights, activation)
    (dlogits,) = torch.autograd.grad(out, bias_tok, grad_output(out.shape, out, grad_out_seed))
    a = dlogits.abs()
    return {
        "gate.gate.bias": float(a.sum(0).max()),
        "gate.gate.weight": float((a.T @ flat.abs()).max()),
    }


def check_against_reference(
    layer: FMoETransformerMLP,
    x: torch.Tensor,
    activation: str,
    tol: float,
    replay_routing: bool = False,
) -> None:
    """Output, input grad and all parameter grads within ``tol`` of the brute force.

    The error is relative to the max abs value of the reference tensor; for
    the gate parameters, to the larger of that and :func:`gate_grad_scales`.
    """
    out, gx, gp = forward_backward(layer, x)
    idx = None
    if replay_routing:
        with torch.no_grad():
            idx = layer.gate(x.reshape(-1, x.shape[-1]))[0]
    ref, rgx, rgp = reference_forward_backward(layer, x, activation, idx=idx)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert_close(out, ref, tol, "output")
    assert_close(gx, rgx, tol, "input grad")
    assert set(gp) == set(rgp)
    scales = gate_grad_scales(layer, x, activation, idx)
    for name in gp:
        assert_close(gp[name], rgp[name], tol, f"grad of {name}", min_scale=scales.get(name, 0.0))


def k_values(num_expert: int) -> List[int]:
    return sorted({k for k in (1, 2, num_expert) if k <= num_expert})


# --------------------------------------------------------------------------
# FMoETransformerMLP vs brute force: the main matrix
# --------------------------------------------------------------------------

MATRIX = [(e, k) for e in (1, 2, 4) for k in k_values(e)]


@pytest.mark.parametrize("num_expert,top_k", MATRIX)
@pytest.mark.parametrize("tokens", [0, 1, 7])
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize(
    "device,path",
    [("cpu", "auto"), ("cpu", "bmm"), pytest.param(*_CUDA.values, "auto", marks=_CUDA.marks)],
)
def test_mlp_fp32(num_expert, top_k, tokens, ndim, device, path, monkeypatch):
    if path == "bmm":
        monkeypatch.setattr(fmoe_layers, "_USE_GROUPED_MM", False)
    layer = make_mlp(num_expert, top_k, seed=num_expert * 10 + top_k).to(device)
    torch.manual_seed(tokens)
    shape = (tokens, D_MODEL) if ndim == 2 else (2, tokens, D_MODEL)
    x = torch.randn(shape, device=device)
    check_against_reference(layer, x, "gelu", FP32_TOL)


@pytest.mark.parametrize("num_expert,top_k", [(1, 1), (2, 1), (2, 2), (4, 2), (4, 4)])
@pytest.mark.parametrize("activation", ["gelu", "swiglu"])
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("device", DEVICES)
def test_mlp_bf16(num_expert, top_k, activation, ndim, device):
    layer = make_mlp(num_expert, top_k, activation=activation, seed=3).to(device, torch.bfloat16)
    torch.manual_seed(5)
    shape = (7, D_MODEL) if ndim == 2 else (2, 7, D_MODEL)
    x = torch.randn(shape, device=device).to(torch.bfloat16)
    # bf16 logits may order near-equal experts differently from fp64: replay
    # the layer's routing in the reference (the scores are still recomputed).
    check_against_reference(layer, x, activation, BF16_TOL, replay_routing=True)


@pytest.mark.parametrize(
    "activation,name",
    [
        ("relu", "relu"),
        ("gelu", "gelu"),
        ("gelu_tanh", "gelu_tanh"),
        ("silu", "silu"),
        ("swiglu", "swiglu"),
        ("geglu", "geglu"),
        (nn.ReLU(), "relu"),
        (nn.GELU(), "gelu"),
        (nn.GELU(approximate="tanh"), "gelu_tanh"),
        (nn.SiLU(), "silu"),
        (torch.nn.functional.gelu, "gelu"),
    ],
    ids=lambda a: a if isinstance(a, str) else getattr(a, "__name__", repr(a)),
)
@pytest.mark.parametrize("device", DEVICES)
def test_activations(activation, name, device):
    layer = make_mlp(4, 2, activation=activation, seed=11).to(device)
    assert layer.moe_config()["activation"] == name
    assert (layer.experts.up is not None) == name.endswith("glu")
    torch.manual_seed(1)
    check_against_reference(layer, torch.randn(2, 7, D_MODEL, device=device), name, FP32_TOL)


GATES = [
    (NaiveGate, {}),
    (NaiveGate, {"gate_bias": False}),
    (SoftmaxTopKGate, {}),
    (SoftmaxTopKGate, {"renormalize": True}),
    (SigmoidGate, {}),
    (SigmoidGate, {"renormalize": True}),
]




@pytest.mark.parametrize("gate_cls,extra", GATES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_gate_kinds_in_mlp(gate_cls, extra, top_k):
    kwargs = {"gate_bias": extra.get("gate_bias", True)}
    if "renormalize" in extra:
        # A gate class is used directly when it is a NaiveGate subclass; a
        # subclass pins renormalize=True.
        gate = type(f"Renorm{gate_cls.__name__}", (gate_cls,), {})
        gate.__init__ = lambda self, d, n, w, k, gate_bias=True: gate_cls.__init__(
            self, d, n, w, k, gate_bias=gate_bias, renormalize=True
        )
    else:
        gate = gate_cls
    layer = make_mlp(4, top_k, seed=top_k, gate=gate, **kwargs)
    assert isinstance(layer.gate, gate_cls)
    assert (layer.gate.gate.bias is not None) == kwargs["gate_bias"]
    assert getattr(layer.gate, "renormalize", False) == extra.get("renormalize", False)
    torch.manual_seed(2)
    check_against_reference(layer, torch.randn(7, D_MODEL), "gelu", FP32_TOL)


# --------------------------------------------------------------------------
# Gates alone
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gate_cls,extra", GATES, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("top_k", [1, 3, 6])
def test_gate_outputs(gate_cls, extra, top_k):
    torch.manual_seed(top_k)
    gate = gate_cls(D_MODEL, 3, 2, top_k, **extra)  # 3 experts x world 2 = 6 ids
    assert gate.tot_expert == 6 and gate.num_expert == 3 and gate.world_size == 2
    assert gate.gate.weight.shape == (6, D_MODEL)
    x = torch.randn(9, D_MODEL)
    idx, score = gate(x)
    assert idx.dtype == torch.int64 and idx.shape == (9, top_k)
    assert score.dtype == torch.float32 and score.shape == (9, top_k)
    ref_idx, ref_score = brute_force_gate(
        x,
        gate.gate.weight,
        gate.gate.bias,
        {NaiveGate: "naive", SoftmaxTopKGate: "softmax_topk", SigmoidGate: "sigmoid"}[gate_cls],
        top_k,
        renormalize=extra.get("renormalize", False),
    )
    assert torch.equal(idx, ref_idx), "routing differs from top-k of the logits"
    assert_close(score, ref_score, FP32_TOL, "scores")
    # Slots are sorted by decreasing logit (documented choice).
    logits = gate.gate(x)
    picked = torch.gather(logits, 1, idx)
    assert (picked[:, :-1] >= picked[:, 1:]).all()
    idx3, score3, all_logits = gate(x, return_all_scores=True)
    assert torch.equal(idx3, idx) and torch.allclose(all_logits, logits)


def test_gate_kind_attributes():
    assert BaseGate.fmoe_gate_kind is None
    assert NaiveGate.fmoe_gate_kind == "naive"
    assert SoftmaxTopKGate.fmoe_gate_kind == "softmax_topk"
    assert SigmoidGate.fmoe_gate_kind == "sigmoid"


def test_gate_loss_api():
    gate = NaiveGate(D_MODEL, 4, 1, top_k=2)
    assert not gate.has_loss and gate.get_loss() is None
    gate(torch.randn(3, D_MODEL))
    assert gate.has_loss
    loss = gate.get_loss(clear=False)
    assert loss is not None and float(loss.detach().sum()) == 0.0
    assert gate.has_loss
    assert gate.get_loss() is loss
    assert not gate.has_loss
    gate.set_loss(torch.ones(1))
    assert gate.has_loss


@pytest.mark.parametrize("gate_cls", [NaiveGate, SoftmaxTopKGate, SigmoidGate])
def test_router_runs_in_fp32(gate_cls):
    # Documented choice: bf16 parameters/inputs, fp32 logits (never rounded to bf16).
    torch.manual_seed(12)
    gate = gate_cls(D_MODEL, 8, 1, top_k=2).to(torch.bfloat16)
    x = torch.randn(16, D_MODEL).to(torch.bfloat16)
    idx, score, logits = gate(x, return_all_scores=True)
    expected = x.float() @ gate.gate.weight.float().T + gate.gate.bias.float()
    assert logits.dtype == torch.float32
    assert torch.allclose(logits, expected, rtol=1e-6, atol=1e-6)
    assert torch.equal(idx, torch.topk(expected, 2, dim=-1).indices)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gate(x.float(), return_all_scores=True)[2].dtype == torch.float32


def test_naive_gate_bf16_scores_dtype():
    gate = NaiveGate(D_MODEL, 4, 1, top_k=2).to(torch.bfloat16)
    idx, score = gate(torch.randn(5, D_MODEL, dtype=torch.bfloat16))
    assert score.dtype == torch.bfloat16
    assert torch.allclose(score.float().sum(-1), torch.ones(5), atol=1e-2)


# --------------------------------------------------------------------------
# Parameters, state_dict, moe_config
# --------------------------------------------------------------------------

FASTMOE_10_NAMES = [
    "gate.gate.weight",
    "gate.gate.bias",
    "experts.htoh4.weight",
    "experts.htoh4.bias",
    "experts.h4toh.weight",
    "experts.h4toh.bias",
]


@pytest.mark.parametrize("world_size", [1, 2])
def test_parameter_names_and_shapes(world_size):
    e = 4
    layer = FMoETransformerMLP(e, D_MODEL, D_HIDDEN, world_size=world_size)
    shapes = {n: tuple(p.shape) for n, p in layer.named_parameters()}
    assert list(shapes) == FASTMOE_10_NAMES
    assert shapes == {
        "gate.gate.weight": (e * world_size, D_MODEL),
        "gate.gate.bias": (e * world_size,),
        "experts.htoh4.weight": (e, D_HIDDEN, D_MODEL),
        "experts.htoh4.bias": (e, D_HIDDEN),
        "experts.h4toh.weight": (e, D_MODEL, D_HIDDEN),
        "experts.h4toh.bias": (e, D_MODEL),
    }
    assert list(layer.state_dict()) == FASTMOE_10_NAMES
    glu = FMoETransformerMLP(e, D_MODEL, D_HIDDEN, activation="swiglu")
    assert [n for n, _ in glu.named_parameters()] == FASTMOE_10_NAMES + ["experts.up.weight"]
    assert glu.experts.up.weight.shape == (e, D_HIDDEN, D_MODEL) and glu.experts.up.bias is None


def test_defaults_match_fastmoe():
    layer = FMoETransformerMLP(num_expert=2, d_model=8, d_hidden=16)
    assert layer.top_k == 2 and layer.world_size == 1
    assert type(layer.gate) is NaiveGate
    assert type(layer.experts.activation) is nn.GELU
    assert layer.experts.activation.approximate == "none"
    # FMoELinear init: per-expert nn.Linear bound, zero bias.
    lin = FMoELinear(3, 50, 7)
    assert lin.weight.shape == (3, 7, 50) and lin.bias.shape == (3, 7)
    assert float(lin.bias.detach().abs().max()) == 0.0
    bound = 1.0 / math.sqrt(50)
    assert float(lin.weight.detach().abs().max()) <= bound
    assert float(lin.weight.detach().abs().max()) > 0.8 * bound
    assert FMoELinear(2, 4, 5, bias=False).bias is None


def test_mark_parallel_comm():
    layer = FMoETransformerMLP(2, D_MODEL, D_HIDDEN, expert_dp_comm="dp")
    tags = {n: p.dp_comm for n, p in layer.named_parameters()}
    assert tags == {n: ("gate" if n.startswith("gate.") else "dp") for n in FASTMOE_10_NAMES}
    layer.mark_parallel_comm("none")
    assert layer.experts.htoh4.weight.dp_comm == "none" and layer.gate.gate.bias.dp_comm == "gate"
    generic = FMoE(num_expert=2, d_model=D_MODEL, expert=lambda d: nn.Linear(d, d))
    generic.mark_parallel_comm("world")
    assert all(p.dp_comm == "world" for p in generic.experts.parameters())
    assert all(p.dp_comm == "gate" for p in generic.gate.parameters())


def _fastmoe_state_dict(e: int, seed: int) -> Dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return scale * torch.randn(shape, generator=gen)

    return {
        "gate.gate.weight": r(e, D_MODEL),
        "gate.gate.bias": r(e),
        "experts.htoh4.weight": r(e, D_HIDDEN, D_MODEL),
        "experts.htoh4.bias": r(e, D_HIDDEN, scale=0.1),
        "experts.h4toh.weight": r(e, D_MODEL, D_HIDDEN),
        "experts.h4toh.bias": r(e, D_MODEL, scale=0.1),
    }


def _expected_from_state_dict(sd, x, top_k):
    idx, score = brute_force_gate(x, sd["gate.gate.weight"], sd["gate.gate.bias"], "naive", top_k)
    weights = {
        "fc1_weight": sd["experts.htoh4.weight"],
        "fc1_bias": sd["experts.htoh4.bias"],
        "fc2_weight": sd["experts.h4toh.weight"],
        "fc2_bias": sd["experts.h4toh.bias"],
    }
    return brute_force_moe(x, idx, score, weights, "gelu")


def test_fastmoe_10_state_dict_loads():
    e = 4
    sd = _fastmoe_state_dict(e, seed=21)
    layer = FMoETransformerMLP(e, D_MODEL, D_HIDDEN)
    result = layer.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(7, D_MODEL)
    with torch.no_grad():
        assert_close(layer(x), _expected_from_state_dict(sd, x, 2), FP32_TOL, "output")


def test_fastmoe_11_per_expert_state_dict_loads():
    # FastMoE >= 1.1 keeps one single-expert _Expert per expert.
    e = 3
    fused = _fastmoe_state_dict(e, seed=22)
    sd = {"gate.gate.weight": fused["gate.gate.weight"], "gate.gate.bias": fused["gate.gate.bias"]}
    for i in range(e):
        for lin in ("htoh4", "h4toh"):
            for p in ("weight", "bias"):
                sd[f"experts.{i}.{lin}.{p}"] = fused[f"experts.{lin}.{p}"][i : i + 1].clone()
    layer = FMoETransformerMLP(e, D_MODEL, D_HIDDEN)
    result = layer.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for name, value in fused.items():
        assert torch.equal(layer.state_dict()[name], value), name
    # A model that nests the layer loads too (the prefix is honoured).
    outer = nn.Sequential(FMoETransformerMLP(e, D_MODEL, D_HIDDEN))
    outer.load_state_dict({f"0.{k}": v for k, v in sd.items()}, strict=True)
    assert torch.equal(outer[0].experts.h4toh.bias, fused["experts.h4toh.bias"])


def test_moe_config():
    layer = make_mlp(4, 2, activation="swiglu", world_size=2, gate_bias=False)
    cfg = layer.moe_config()
    expected = {
        "num_experts": 8,
        "num_expert": 4,
        "world_size": 2,
        "top_k": 2,
        "d_model": D_MODEL,
        "d_hidden": D_HIDDEN,
        "activation": "swiglu",
        "gate_kind": "naive",
        "renormalize": False,
        "gate_bias": False,
        "fc1_bias": True,
        "fc2_bias": True,
        "dtype": torch.float32,
        "gate_hook": None,
    }
    assert {k: v for k, v in cfg.items() if k != "params"} == expected
    params = cfg["params"]
    assert list(params) == ["gate_weight", "fc1_weight", "fc1_bias", "up_weight", "fc2_weight", "fc2_bias"]
    assert params["gate_weight"] is layer.gate.gate.weight
    assert params["fc1_weight"] is layer.experts.htoh4.weight
    assert params["fc1_bias"] is layer.experts.htoh4.bias
    assert params["up_weight"] is layer.experts.up.weight
    assert params["fc2_weight"] is layer.experts.h4toh.weight
    assert params["fc2_bias"] is layer.experts.h4toh.bias

    plain = make_mlp(2, 1, activation=nn.ReLU())
    assert list(plain.moe_config()["params"]) == [
        "gate_weight", "gate_bias", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"
    ]
    renorm = make_mlp(2, 2, gate=SigmoidGate)
    renorm.gate.renormalize = True
    cfg = renorm.moe_config()
    assert cfg["gate_kind"] == "sigmoid" and cfg["renormalize"] is True
    assert make_mlp(2, 2, gate=SoftmaxTopKGate).moe_config()["gate_kind"] == "softmax_topk"
    bf = make_mlp(2, 2).to(torch.bfloat16)
    assert bf.moe_config()["dtype"] == torch.bfloat16


def test_moe_config_rejects_what_cannot_compile():
    with pytest.raises(ValueError, match=r"FMoETransformerMLP.*Tanh"):
        FMoETransformerMLP(2, D_MODEL, D_HIDDEN, activation=nn.Tanh()).moe_config()
    with pytest.raises(ValueError, match=r"FMoETransformerMLP.*GELU"):
        layer = FMoETransformerMLP(2, D_MODEL, D_HIDDEN, activation="swiglu")
        layer.experts.activation = nn.GELU(approximate="tanh")  # no GLU form of it
        layer.moe_config()

    class UserGate(NaiveGate):  # inherits "naive" but may route differently
        pass

    with pytest.raises(ValueError, match="fmoe_gate_kind"):
        FMoETransformerMLP(2, D_MODEL, D_HIDDEN, gate=UserGate).moe_config()

    class DeclaredGate(NaiveGate):
        fmoe_gate_kind = "naive"

    assert FMoETransformerMLP(2, D_MODEL, D_HIDDEN, gate=DeclaredGate).moe_config()["gate_kind"] == "naive"
    with pytest.raises(ValueError, match="mask"):
        FMoETransformerMLP(
            2, D_MODEL, D_HIDDEN, mask=torch.zeros(3), mask_dict={1: torch.zeros(D_MODEL)}
        ).moe_config()


# --------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------


def test_wrong_last_dim():
    layer = FMoETransformerMLP(2, D_MODEL, D_HIDDEN)
    with pytest.raises(ValueError, match=r"d_model=24.*\(7, 23\)"):
        layer(torch.randn(7, 23))
    with pytest.raises(ValueError, match="d_model=24"):
        layer(torch.randn(2, 3, 25))
    with pytest.raises(ValueError, match="d_model=24"):
        FMoE(num_expert=2, d_model=D_MODEL, expert=lambda d: _NaiveExpert(d))(torch.randn(4, 8))
    with pytest.raises(ValueError, match="d_model=24"):
        NaiveGate(D_MODEL, 2, 1)(torch.randn(3, 5))


@pytest.mark.parametrize("num_expert,world_size,top_k", [(2, 1, 3), (1, 1, 2), (2, 2, 5), (4, 1, 0)])
def test_top_k_checked_at_construction(num_expert, world_size, top_k):
    with pytest.raises(ValueError, match="top_k"):
        FMoETransformerMLP(num_expert, D_MODEL, D_HIDDEN, world_size=world_size, top_k=top_k)
    with pytest.raises(ValueError, match="top_k"):
        NaiveGate(D_MODEL, num_expert, world_size, top_k=top_k)
    with pytest.raises(ValueError, match="top_k"):
        SigmoidGate(D_MODEL, num_expert, world_size, top_k=top_k)


def test_top_k_limit_counts_all_ranks():
    layer = FMoETransformerMLP(2, D_MODEL, D_HIDDEN, world_size=2, top_k=4)
    assert layer.gate.tot_expert == 4


def test_world_size_above_one_needs_compile():
    layer = FMoETransformerMLP(2, D_MODEL, D_HIDDEN, world_size=2)
    with pytest.raises(RuntimeError, match=r"expert parallelism \(world_size > 1\) runs through fmoe.compile"):
        layer(torch.randn(3, D_MODEL))


def test_unknown_activation_string():
    with pytest.raises(ValueError, match="swish"):
        FMoETransformerMLP(2, D_MODEL, D_HIDDEN, activation="swish")


def test_fused_fmoe_without_experts():
    layer = FMoE(num_expert=2, d_model=D_MODEL)
    with pytest.raises(RuntimeError, match="self.experts"):
        layer(torch.randn(3, D_MODEL))


def test_gate_out_of_range_id():
    class BadGate(nn.Module):
        def __init__(self, d, n, w, k):
            super().__init__()
            self.n, self.k = n * w, k

        def forward(self, x):
            idx = torch.full((x.shape[0], self.k), self.n, dtype=torch.long)
            return idx, torch.ones(x.shape[0], self.k)

    layer = FMoETransformerMLP(2, D_MODEL, D_HIDDEN, gate=BadGate, top_k=1)
    with pytest.raises(ValueError, match="expert id"):
        layer(torch.randn(3, D_MODEL))


# --------------------------------------------------------------------------
# FMoELinear
# --------------------------------------------------------------------------


def _linear_reference(x, weight, bias, counts):
    rows = []
    e = 0
    bounds = torch.cumsum(torch.as_tensor(counts), 0).tolist()
    for r in range(x.shape[0]):
        while r >= bounds[e]:
            e += 1
        y = weight[e].double() @ x[r].double()
        if bias is not None:
            y = y + bias[e].double()
        rows.append(y)
    if not rows:
        return torch.zeros(0, weight.shape[1], dtype=torch.float64)
    return torch.stack(rows)


@pytest.mark.parametrize("in_feat,out_feat", [(24, 40), (5, 3)])
@pytest.mark.parametrize("counts", [[3, 0, 4], [0, 0, 0], [0, 6, 0], [1, 1, 1]])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("path", ["auto", "bmm"])
@pytest.mark.parametrize("count_kind", ["cpu", "device", "list"])
@pytest.mark.parametrize("device", DEVICES)
def test_fmoe_linear(in_feat, out_feat, counts, dtype, bias, path, count_kind, device, monkeypatch):
    if path == "bmm":
        monkeypatch.setattr(fmoe_layers, "_USE_GROUPED_MM", False)
    torch.manual_seed(sum(counts) + in_feat)
    lin = FMoELinear(3, in_feat, out_feat, bias=bias).to(device, dtype)
    if bias:
        with torch.no_grad():
            lin.bias.normal_()
    n = sum(counts)
    x = torch.randn(n, in_feat, device=device, dtype=dtype, requires_grad=True)
    count_arg = {
        "cpu": torch.tensor(counts),
        "device": torch.tensor(counts, device=device, dtype=torch.int32),
        "list": counts,
    }[count_kind]
    out = lin(x, count_arg)
    assert out.shape == (n, out_feat) and out.dtype == dtype
    g = torch.randn(out.shape, device=device, dtype=dtype)
    params = [x, lin.weight] + ([lin.bias] if bias else [])
    grads = torch.autograd.grad(out, params, g)
    ref_params = [p.detach().double().cpu().requires_grad_(True) for p in params]
    ref = _linear_reference(ref_params[0], ref_params[1], ref_params[2] if bias else None, counts)
    tol = FP32_TOL if dtype == torch.float32 else 1e-12
    assert_close(out, ref, tol, "output")
    if n == 0:
        for gr in grads:
            assert float(gr.abs().sum()) == 0.0
        return
    ref_grads = torch.autograd.grad(ref, ref_params, g.double().cpu())
    for name, gr, rg in zip(["input", "weight", "bias"], grads, ref_grads):
        assert_close(gr, rg, tol, f"{name} grad")


def test_fmoe_linear_casts_input_and_uses_grouped_mm(monkeypatch):
    calls = []
    real = torch._grouped_mm

    def spy(*args, **kwargs):
        calls.append(args[0].dtype)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "_grouped_mm", spy)
    lin = FMoELinear(2, D_MODEL, D_HIDDEN)
    x = torch.randn(5, D_MODEL, dtype=torch.float64)
    out = lin(x, torch.tensor([2, 3]))
    assert out.dtype == torch.float32
    assert calls == [torch.float32], "fp32 CPU with 16-byte rows should take torch._grouped_mm"
    lin(torch.randn(5, D_MODEL), torch.tensor([2, 3])).sum().backward()  # stride-0 grad
    assert lin.weight.grad is not None
    FMoELinear(2, 5, 3)(torch.randn(5, 5), torch.tensor([2, 3]))
    assert len(calls) == 2, "unaligned rows must not take torch._grouped_mm"


def test_fmoe_linear_bad_counts():
    lin = FMoELinear(3, 4, 5)
    with pytest.raises(ValueError, match="sums to 4 but the input has 5 rows"):
        lin(torch.randn(5, 4), torch.tensor([1, 1, 2]))
    with pytest.raises(ValueError, match="3 counts"):
        lin(torch.randn(5, 4), torch.tensor([5]))
    with pytest.raises(ValueError, match=r"input \[N, 4\]"):
        lin(torch.randn(5, 6), torch.tensor([1, 2, 2]))
    with pytest.raises(ValueError, match="negative"):
        lin(torch.randn(1, 4), torch.tensor([-1, 1, 1]))


# --------------------------------------------------------------------------
# FMoE with arbitrary experts, dropped slots, hooks, masks, nested inputs
# --------------------------------------------------------------------------


class _NaiveExpert(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.fc = nn.Linear(d_model, d_model)

    def forward(self, x, fwd_expert_count):
        assert fwd_expert_count.numel() == 1 and int(fwd_expert_count[0]) == x.shape[0]
        return self.fc(x)


class _LinearExpert(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.fc1 = nn.Linear(d_model, 2 * d_model)
        self.fc2 = nn.Linear(2 * d_model, d_model)

    def forward(self, x, fwd_expert_count):
        return self.fc2(torch.relu(self.fc1(x)))


def _per_token_reference(layer: FMoE, x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1])
    idx, score = layer.gate(flat)
    rows = []
    for t in range(flat.shape[0]):
        acc = 0
        for s in range(idx.shape[1]):
            e = int(idx[t, s])
            if e >= 0:
                acc = acc + score[t, s] * layer.experts[e](flat[t : t + 1], torch.tensor([1]))[0]
        rows.append(acc if torch.is_tensor(acc) else flat.new_zeros(flat.shape[-1]))
    out = torch.stack(rows) if rows else flat.new_zeros(0, flat.shape[-1])
    return out.reshape(x.shape)


@pytest.mark.parametrize(
    "expert",
    [_NaiveExpert, _LinearExpert, [_NaiveExpert, _LinearExpert, _NaiveExpert]],
    ids=["naive", "linear", "hetero"],
)
@pytest.mark.parametrize("tokens", [0, 1, 7])
@pytest.mark.parametrize("top_k", [1, 2])
def test_fmoe_generic_experts(expert, tokens, top_k):
    torch.manual_seed(tokens * 3 + top_k)
    layer = FMoE(num_expert=4, d_model=D_MODEL, top_k=top_k, expert=expert)
    assert layer.num_expert == (3 if isinstance(expert, list) else 4)
    assert len(layer.experts) == layer.num_expert
    x = torch.randn(2, tokens, D_MODEL)
    out, gx, gp = forward_backward(layer, x, grad_out_seed=3)
    xr = x.detach().requires_grad_(True)
    ref = _per_token_reference(layer, xr)
    names, params = zip(*layer.named_parameters())
    if ref.numel():
        g = grad_output(ref.shape, ref, 3)
        rgrads = torch.autograd.grad(ref, [xr, *params], g, allow_unused=True)
        rgrads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip([xr, *params], rgrads)]
    else:
        rgrads = [torch.zeros_like(t) for t in [xr, *params]]
    assert out.shape == x.shape
    assert_close(out, ref, FP32_TOL, "output")
    assert_close(gx, rgrads[0], FP32_TOL, "input grad")
    for name, rg in zip(names, rgrads[1:]):
        assert_close(gp[name], rg, FP32_TOL, f"grad of {name}")


class _DroppingGate(nn.Module):
    """A NaiveGate whose second slot is dropped (-1) for even tokens."""

    def __init__(self, d_model, num_expert, world_size, top_k):
        super().__init__()
        self.inner = NaiveGate(d_model, num_expert, world_size, top_k)

    def forward(self, x):
        idx, score = self.inner(x)
        idx = idx.clone()
        idx[0::2, -1] = -1
        return idx, score


def test_dropped_slots_contribute_zero():
    torch.manual_seed(4)
    layer = FMoETransformerMLP(4, D_MODEL, D_HIDDEN, gate=_DroppingGate, top_k=2)
    randomize_(layer, 9)
    x = torch.randn(7, D_MODEL, requires_grad=True)
    out = layer(x)
    idx, score = layer.gate(x)
    assert (idx[0::2, 1] == -1).all() and (idx[1::2] >= 0).all()
    w = {
        "fc1_weight": layer.experts.htoh4.weight,
        "fc1_bias": layer.experts.htoh4.bias,
        "fc2_weight": layer.experts.h4toh.weight,
        "fc2_bias": layer.experts.h4toh.bias,
    }
    ref = brute_force_moe(x, idx, score, w, "gelu")
    assert_close(out, ref, FP32_TOL, "output")
    g = torch.randn(out.shape)
    params = [x] + list(layer.parameters())
    grads = torch.autograd.grad(out, params, g)
    rgrads = torch.autograd.grad(ref, params, g.double())
    for gr, rg in zip(grads, rgrads):
        assert_close(gr, rg, FP32_TOL, "grad")
    # All slots dropped: zero output.
    layer.gate.forward = lambda x: (
        torch.full((x.shape[0], 2), -1, dtype=torch.long),
        torch.ones(x.shape[0], 2),
    )
    assert float(layer(x).detach().abs().max()) == 0.0


def test_gate_hook_called():
    calls = []
    layer = FMoETransformerMLP(
        4, D_MODEL, D_HIDDEN, top_k=2, gate_hook=lambda i, s, extra: calls.append((i, s, extra))
    )
    x = torch.randn(2, 3, D_MODEL)
    layer(x)
    assert len(calls) == 1
    idx, score, extra = calls[0]
    assert idx.shape == (6, 2) and score.shape == (6, 2) and extra is None
    ref_idx, _ = layer.gate(x.reshape(-1, D_MODEL))
    assert torch.equal(idx, ref_idx)


def test_mask_and_mask_dict():
    torch.manual_seed(6)
    mask = torch.tensor([0, 1, 0, 2, 0, 0, 1])
    v1, v2 = torch.randn(D_MODEL), torch.randn(D_MODEL)
    layer = FMoETransformerMLP(4, D_MODEL, D_HIDDEN, top_k=2, mask=mask, mask_dict={1: v1, 2: v2})
    randomize_(layer, 2)
    x = torch.randn(7, D_MODEL)
    with torch.no_grad():
        out = layer(x)
        ref = brute_force_layer(layer, x, "gelu")
    routed = mask == 0
    assert_close(out[routed], ref[routed], FP32_TOL, "routed tokens")
    # A masked token gets mask_dict[m] in every slot, weighted by scores that sum to 1.
    assert_close(out[mask == 1], v1.expand(2, -1).double(), FP32_TOL, "mask 1")
    assert_close(out[mask == 2], v2.expand(1, -1).double(), FP32_TOL, "mask 2")


class _DictExpert(nn.Module):
    def __init__(self, d_model):
        super().__init__()
        self.a = nn.Linear(d_model, d_model)
        self.b = nn.Linear(5, 3)

    def forward(self, inp, fwd_expert_count):
        return {"a": self.a(inp["a"]), "b": self.b(inp["b"])}


class _DictGate(NaiveGate):
    def forward(self, inp, return_all_scores=False):
        return super().forward(inp["a"], return_all_scores)


def test_nested_inputs():
    torch.manual_seed(8)
    layer = FMoE(num_expert=3, d_model=D_MODEL, top_k=2, gate=_DictGate, expert=_DictExpert)
    x = {"a": torch.randn(6, D_MODEL), "b": torch.randn(6, 5)}
    out = layer(x)
    assert set(out) == {"a", "b"} and out["a"].shape == (6, D_MODEL) and out["b"].shape == (6, 3)
    idx, score = layer.gate(x)
    for t in range(6):
        for key in ("a", "b"):
            ref = sum(
                score[t, s] * layer.experts[int(idx[t, s])]({k: v[t : t + 1] for k, v in x.items()}, None)[key][0]
                for s in range(2)
            )
            assert_close(out[key][t], ref, FP32_TOL, f"token {t} leaf {key}")
    with pytest.raises(ValueError, match="same batch size"):
        layer({"a": torch.randn(6, D_MODEL), "b": torch.randn(5, 5)})


def test_gate_factory_function_accepted():
    # FastMoE calls issubclass() on `gate` and so rejects factories; fmoe accepts them.
    made = []

    def factory(d_model, num_expert, world_size, top_k):
        made.append((d_model, num_expert, world_size, top_k))
        return NaiveGate(d_model, num_expert, world_size, top_k)

    layer = FMoETransformerMLP(4, D_MODEL, D_HIDDEN, gate=factory, top_k=2)
    assert made == [(D_MODEL, 4, 1, 2)]
    layer(torch.randn(3, D_MODEL))


def test_public_api():
    for name in ["FMoE", "FMoELinear", "FMoETransformerMLP", "NaiveGate", "SoftmaxTopKGate", "SigmoidGate", "BaseGate"]:
        assert hasattr(fmoe, name), name
    assert fmoe.gates.NaiveGate is NaiveGate
