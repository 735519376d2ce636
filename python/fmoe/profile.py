"""Recording how many tokens each expert receives, for balanced placement.

    load = fmoe.record_load(model, batches)          # {layer name: [count per expert]}
    compiled = fmoe.compile(model, placement="balanced", load_profile=load)

The profile is measured on real batches with the uncompiled model's gates
(routing is the same compiled or not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Union

import torch
from torch import nn

__all__ = ["record_load", "save_load", "LoadProfile"]

#: A layer's profile: one token count (or any non-negative load) per expert.
LoadProfile = List[float]


def _moe_layers(model: nn.Module):
    if hasattr(model, "moe_config"):
        yield "", model
        return
    for name, m in model.named_modules():
        if hasattr(m, "moe_config"):
            yield name, m


@torch.no_grad()
def record_load(model: nn.Module, batches: Iterable[object]) -> Dict[str, LoadProfile]:
    """Runs ``model`` on each batch and counts, per MoE layer, the (token,
    slot) pairs routed to each of its experts (``num_expert × world_size``
    counts; dropped slots are not counted).

    Args:
        model: the uncompiled model (its gates are observed).
        batches: inputs passed to ``model`` one by one (a tuple is unpacked).

    Returns:
        ``{layer name: counts}``; the name of a bare layer is ``""``.
    """
    counts: Dict[str, torch.Tensor] = {}
    hooks = []
    for name, layer in _moe_layers(model):
        total = layer.num_expert * layer.world_size
        counts[name] = torch.zeros(total, dtype=torch.long)

        def hook(_module, _inputs, output, name=name, total=total):
            idx = output[0].reshape(-1)
            idx = idx[idx >= 0].to("cpu", torch.long)
            counts[name] += torch.bincount(idx, minlength=total)

        hooks.append(layer.gate.register_forward_hook(hook))
    if not hooks:
        raise ValueError(f"record_load found no MoE layer in {type(model).__name__}")
    try:
        for batch in batches:
            model(*batch) if isinstance(batch, tuple) else model(batch)
    finally:
        for h in hooks:
            h.remove()
    return {name: [float(c) for c in cnt.tolist()] for name, cnt in counts.items()}


def save_load(profile: LoadProfile, path: Union[str, Path]) -> Path:
    """Writes one layer's profile in the compiler's format (one number per
    expert, whitespace separated): ``fmoe-compile --strategy=balanced
    --load-profile=<path>``."""
    path = Path(path)
    path.write_text(" ".join(repr(float(v)) for v in profile) + "\n")
    return path
