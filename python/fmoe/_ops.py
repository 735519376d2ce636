"""The compiled layer's operator: loading ``torch.ops.fmoe``, autograd and
shape propagation.

``torch.ops.fmoe.run(handle, program, tokens, inputs)`` runs one program of a
compiled module (see ``python/csrc/fmoe_ops.cpp``). This file wraps the
forward and backward programs into one autograd function and registers a
fake kernel so that shape propagation and ``torch.compile`` tracing work
without running anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence

import torch

_PACKAGE = Path(__file__).resolve().parent
_REPO_BUILD = _PACKAGE.parent.parent / "build"


def _library_candidates() -> List[Path]:
    env = os.environ.get("FMOE_OPS_LIBRARY")
    found = [Path(env)] if env else []
    build = Path(os.environ.get("FMOE_BUILD_DIR", _REPO_BUILD))
    found += [_PACKAGE / "lib" / "libfmoe_ops.so", build / "lib" / "libfmoe_ops.so"]
    return found


_loaded: Optional[Path] = None


def load_library() -> Path:
    """Loads the custom-op library once; raises with the paths it tried."""
    global _loaded
    if _loaded is not None:
        return _loaded
    tried = _library_candidates()
    for path in tried:
        if path.is_file():
            torch.ops.load_library(str(path))
            _loaded = path
            _register_fake()
            return path
    raise RuntimeError(
        "fmoe: the runtime library (libfmoe_ops.so) is not built; looked in: "
        + ", ".join(str(p) for p in tried)
        + ". Build it with `bash scripts/build.sh` or install the package with `pip install .`"
    )


def _register_fake() -> None:
    @torch.library.register_fake("fmoe::run")
    def _run_fake(handle: int, program: str, tokens: int, inputs: Sequence[torch.Tensor], group=None):
        sizes = torch.ops.fmoe.output_sizes(handle, program, tokens)
        dtypes = _output_dtypes(handle, program)
        device = inputs[0].device
        # A negative size -c: c elements per row an expert-parallel exchange
        # receives (data dependent): one unbacked row count shared by them.
        received = torch.library.get_ctx().new_dynamic_size() if any(n < 0 for n in sizes) else None
        return [
            torch.empty(n if n >= 0 else received * -n, dtype=d, device=device)
            for n, d in zip(sizes, dtypes)
        ]


_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "i32": torch.int32}


def _program(handle: int, program: str) -> list:
    """The buffers of `program` of module `handle` (parsed when it was loaded)."""
    from .compiler import _module_by_handle

    return _module_by_handle(handle).programs[program]


def _output_dtypes(handle: int, program: str) -> List[torch.dtype]:
    return [_DTYPES[b.dtype] for b in _program(handle, program) if b.role == "output"]


def _clobbered_inputs(handle: int, program: str) -> List[bool]:
    return [b.clobbered for b in _program(handle, program) if b.role == "input"]


class LayerFunction(torch.autograd.Function):
    """Forward and backward of one compiled MoE layer on ``[T, d_model]`` rows.

    Inputs: the module handle, the layer shape (d_model), the name of the
    expert-parallel process group (None on one rank), the rows and the
    weights in the module's operand order. The forward program returns the
    output and the values the backward program reads; those are saved.
    """

    @staticmethod
    def forward(
        ctx, handle: int, d_model: int, group: Optional[str], x: torch.Tensor, *weights: torch.Tensor
    ) -> torch.Tensor:
        tokens = x.shape[0]
        outs = torch.ops.fmoe.run(handle, "forward", tokens, [x, *weights], group)
        ctx.handle = handle
        ctx.group = group
        ctx.tokens = tokens
        ctx.save_for_backward(x, *weights, *outs[1:])
        ctx.num_weights = len(weights)
        return outs[0].view(tokens, d_model)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        try:
            saved = ctx.saved_tensors
        except RuntimeError as e:
            if "modified by an inplace operation" in str(e) and any(_clobbered_inputs(ctx.handle, "backward")):
                raise RuntimeError(
                    "fmoe: a second backward through an MoE layer's graph. Its first backward "
                    "reused the memory of the activations the forward saved. To back-propagate "
                    "through one graph more than once (retain_graph=True), compile with "
                    "fmoe.compile(..., keep_saved=True)."
                ) from e
            raise
        x, weights, rest = saved[0], saved[1 : 1 + ctx.num_weights], saved[1 + ctx.num_weights :]
        inputs = [grad_out.contiguous(), x, *weights, *rest]
        try:
            grads = torch.ops.fmoe.run(ctx.handle, "backward", ctx.tokens, inputs, ctx.group)
        finally:
            # The backward reuses the memory of saved values it has read for
            # the last time (the pre-activation): mark them modified, even
            # when it failed part way, so that another backward through this
            # graph (retain_graph=True, or a retry) fails loudly instead of
            # reading gradients as activations.
            for t, clobbered in zip(inputs, _clobbered_inputs(ctx.handle, "backward")):
                if clobbered:
                    torch.autograd.graph.increment_version(t)
        shaped = [g.view(t.shape) for g, t in zip(grads, (x, *weights))]
        return (None, None, None, *shaped)
