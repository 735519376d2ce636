r"""Brute-force MoE reference: explicit per-token, per-slot loops, no grouping.

Everything here is written from the math, independently of ``fmoe.layers``:
for each token ``t`` and each of its ``k`` slots with expert ``e`` and score
``s``, ``out[t] += s * (act(x[t] @ W1[e].T + b1[e]) [* (x[t] @ Wup[e].T)]) @ W2[e].T + b2[e]``.
Slots with ``e == -1`` contribute nothing. It is slow and meant for small sizes.

The functions are differentiable, so the same code gives reference gradients.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _relu(h: torch.Tensor) -> torch.Tensor:
    return torch.where(h > 0, h, torch.zeros_like(h))


def _gelu(h: torch.Tensor) -> torch.Tensor:
    return 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))


def _gelu_tanh(h: torch.Tensor) -> torch.Tensor:
    return 0.5 * h * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (h + 0.044715 * h**3)))


def _silu(h: torch.Tensor) -> torch.Tensor:
    return h / (1.0 + torch.exp(-h))


#: activation name -> (elementwise function, is_glu)
REF_ACTIVATIONS: Dict[str, Tuple[Callable[[torch.Tensor], torch.Tensor], bool]] = {
    "relu": (_relu, False),
    "gelu": (_gelu, False),
    "gelu_tanh": (_gelu_tanh, False),
    "silu": (_silu, False),
    "swiglu": (_silu, True),
    "geglu": (_gelu, True),
}


def brute_force_moe(
    x: torch.Tensor,
    idx: torch.Tensor,
    score: torch.Tensor,
    weights: Dict[str, torch.Tensor],
    activation: str,
    dtype: Optional[torch.dtype] = torch.float64,
) -> torch.Tensor:
    r"""The MoE MLP output, token by token.

    Args:
        x: ``[T, D]``.
        idx: ``[T, k]`` integer expert ids (``-1`` = dropped slot).
        score: ``[T, k]``.
        weights: ``fc1_weight [E, H, D]``, ``fc2_weight [E, D, H]``, and
            optionally ``fc1_bias [E, H]``, ``fc2_bias [E, D]``,
            ``up_weight [E, H, D]`` (required for GLU activations).
        activation: a key of :data:`REF_ACTIVATIONS`.
        dtype: compute dtype (default fp64; ``None`` keeps the inputs' dtype).
            Inputs are converted with ``.to`` so gradients flow back to them.

    Returns:
        ``[T, D]`` in ``dtype``.
    """
    act, glu = REF_ACTIVATIONS[activation]
    cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
    x = cast(x)
    score = cast(score)
    w = {name: cast(t) for name, t in weights.items() if t is not None}
    if glu and "up_weight" not in w:
        raise ValueError(f"activation {activation} needs up_weight")
    tokens = x.shape[0]
    d_out = w["fc2_weight"].shape[1]
    rows = []
    for t in range(tokens):
        acc = x.new_zeros(d_out)
        for slot in range(idx.shape[1]):
            e = int(idx[t, slot])
            if e < 0:
                continue
            h = w["fc1_weight"][e] @ x[t]
            if "fc1_bias" in w:
                h = h + w["fc1_bias"][e]
            h = act(h)
            if glu:
                h = h * (w["up_weight"][e] @ x[t])
            y = w["fc2_weight"][e] @ h
            if "fc2_bias" in w:
                y = y + w["fc2_bias"][e]
            acc = acc + score[t, slot] * y
        rows.append(acc)
    if not rows:
        return x.new_zeros(0, d_out)
    return torch.stack(rows)


def brute_force_gate(
    x: torch.Tensor,
    gate_weight: torch.Tensor,
    gate_bias: Optional[torch.Tensor],
    kind: str,
    top_k: int,
    renormalize: bool = False,
    idx: Optional[torch.Tensor] = None,
    dtype: Optional[torch.dtype] = torch.float64,
) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""The gate, written out per kind.

    ``logits = x @ Wg.T + bg``; the ``top_k`` largest logits are picked (or
    the given ``idx`` is used, so that a low-precision layer's routing can be
    replayed); the score is

    - ``naive``: softmax over the k picked logits;
    - ``softmax_topk``: softmax over all logits, at the picked experts;
    - ``sigmoid``: sigmoid of the picked logits;

    and with ``renormalize`` the k scores are divided by their sum.

    Returns:
        ``(idx [T, k] int64, score [T, k] in dtype)``.
    """
    cast = (lambda t: t.to(dtype)) if dtype is not None else (lambda t: t)
    x = cast(x)
    logits = x @ cast(gate_weight).T
    if gate_bias is not None:
        logits = logits + cast(gate_bias)
    if idx is None:
        idx = torch.topk(logits, top_k, dim=-1).indices
    picked = torch.gather(logits, -1, idx)
    if kind == "naive":
        score = torch.exp(picked - picked.max(dim=-1, keepdim=True).values)
        score = score / score.sum(dim=-1, keepdim=True)
    elif kind == "softmax_topk":
        p = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
        p = p / p.sum(dim=-1, keepdim=True)
        score = torch.gather(p, -1, idx)
    elif kind == "sigmoid":
        score = 1.0 / (1.0 + torch.exp(-picked))
    else:
        raise ValueError(f"unknown gate kind {kind}")
    if renormalize and kind != "naive":
        score = score / score.sum(dim=-1, keepdim=True)
    return idx, score


def layer_weights(layer: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The expert weights of an ``FMoETransformerMLP``, read by parameter name."""
    ex = layer.experts
    weights = {
        "fc1_weight": ex.htoh4.weight,
        "fc1_bias": ex.htoh4.bias,
        "fc2_weight": ex.h4toh.weight,
        "fc2_bias": ex.h4toh.bias,
    }
    if getattr(ex, "up", None) is not None:
        weights["up_weight"] = ex.up.weight
    return {k: v for k, v in weights.items() if v is not None}


def gate_kind_of(gate: torch.nn.Module) -> str:
    """The routing rule of one of fmoe's gates, decided by class (not by its metadata)."""
    from fmoe.gates import NaiveGate, SigmoidGate, SoftmaxTopKGate

    if isinstance(gate, SigmoidGate):
        return "sigmoid"
    if isinstance(gate, SoftmaxTopKGate):
        return "softmax_topk"
    if isinstance(gate, NaiveGate):
        return "naive"
    raise ValueError(f"no reference for gate {type(gate).__name__}")


def brute_force_layer(
    layer: torch.nn.Module,
    x: torch.Tensor,
    activation: str,
    idx: Optional[torch.Tensor] = None,
    dtype: Optional[torch.dtype] = torch.float64,
) -> torch.Tensor:
    r"""Brute-force ``FMoETransformerMLP`` forward with the layer's own parameters.

    Args:
        layer: an ``FMoETransformerMLP`` (world_size 1).
        x: ``[..., d_model]``.
        activation: a key of :data:`REF_ACTIVATIONS`.
        idx: optional ``[T, k]`` routing to replay (``T`` = tokens of ``x``).
        dtype: compute dtype (default fp64).

    Returns:
        ``[..., d_model]`` in ``dtype``; differentiable w.r.t. ``x`` and the
        layer's parameters.
    """
    gate = layer.gate
    flat = x.reshape(-1, x.shape[-1])
    idx, score = brute_force_gate(
        flat,
        gate.gate.weight,
        gate.gate.bias,
        gate_kind_of(gate),
        layer.top_k,
        renormalize=bool(getattr(gate, "renormalize", False)),
        idx=idx,
        dtype=dtype,
    )
    out = brute_force_moe(flat, idx, score, layer_weights(layer), activation, dtype=dtype)
    return out.reshape(*x.shape[:-1], out.shape[-1])
