r"""Gates: the routers that pick, for every token, ``top_k`` experts and their scores.

Every gate is an ``nn.Module`` whose ``forward(inp)`` maps ``inp`` of shape
``[B, d_model]`` to ``(topk_idx, topk_score)``:

- ``topk_idx``: ``[B, top_k]`` ``torch.int64``, global expert ids in
  ``[0, num_expert * world_size)``; ``-1`` would mean a dropped slot (none of
  the gates here drops any).
- ``topk_score``: ``[B, top_k]``, in the input's dtype.

The router runs in fp32 (fp64 if the input or the gate weight is fp64):
logits, top-k and softmax/sigmoid, whatever the storage dtype, as a fused gate
kernel that accumulates in fp32 and never rounds the logits does. FastMoE
computes the logits in the gate weight's dtype; with bf16 weights that rounds
the logits to bf16, which can change the top-k choice among close experts and
costs accuracy in the gate gradient. ``return_all_scores`` returns these fp32
logits.

Slot order and ties: the ``top_k`` experts are chosen with
``torch.topk(logits, top_k, sorted=True)`` over the *logits* (softmax and
sigmoid are monotonic, so this is the top-k of the probabilities without the
rounding ties that exponentiation can create). Slots are sorted by decreasing
logit. FastMoE passes ``sorted=False``, whose slot order is unspecified; the
layer output does not depend on the slot order, and a fixed order lets a
compiled layer be compared with this one slot by slot. Among equal logits the
pick is whatever ``torch.topk`` returns.

The compiler (``fmoe.compile``) recognises a gate by its class attribute
``fmoe_gate_kind`` (``"naive"``, ``"softmax_topk"``, ``"sigmoid"``); a gate
class without one can run uncompiled but cannot be compiled.
"""

from __future__ import annotations

from typing import ClassVar, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["BaseGate", "NaiveGate", "SoftmaxTopKGate", "SigmoidGate"]

GateOutput = Union[
    Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor, torch.Tensor]
]


class BaseGate(nn.Module):
    r"""Base class of all gates (FastMoE's ``BaseGate``).

    Args:
        num_expert: experts per worker.
        world_size: number of workers holding different experts; the gate
            routes over ``tot_expert = num_expert * world_size`` experts.

    A gate may record a balance loss with :meth:`set_loss`; the training loop
    reads it with :meth:`get_loss`.
    """

    #: What the compiler calls this gate; ``None`` means "not compilable".
    fmoe_gate_kind: ClassVar[Optional[str]] = None

    def __init__(self, num_expert: int, world_size: int) -> None:
        super().__init__()
        self.world_size = world_size
        self.num_expert = num_expert
        self.tot_expert = world_size * num_expert
        self.loss: Optional[torch.Tensor] = None

    def set_loss(self, loss: Optional[torch.Tensor]) -> None:
        """Record the balance loss of the last forward."""
        self.loss = loss

    def get_loss(self, clear: bool = True) -> Optional[torch.Tensor]:
        """Return the recorded balance loss; forget it unless ``clear=False``."""
        loss = self.loss
        if clear:
            self.loss = None
        return loss

    @property
    def has_loss(self) -> bool:
        """Whether a balance loss is recorded."""
        return self.loss is not None


def _check_top_k(cls_name: str, top_k: int, tot_expert: int) -> None:
    if not isinstance(top_k, int) or isinstance(top_k, bool):
        raise TypeError(f"{cls_name}: top_k must be an int, got {top_k!r}")
    if top_k < 1 or top_k > tot_expert:
        raise ValueError(
            f"{cls_name}: expects 1 <= top_k <= num_expert * world_size "
            f"(= {tot_expert}), got top_k={top_k}"
        )


class NaiveGate(BaseGate):
    r"""FastMoE's default gate: a linear layer, top-k of the logits, softmax over the k.

    ``logits = inp @ gate.weight.T + gate.bias`` (``gate.weight``:
    ``[num_expert*world_size, d_model]``); the ``top_k`` largest logits are
    picked and their softmax (over the k picked values only, fp32 math) is the
    score. Sets a dummy zero balance loss, as FastMoE does.

    Args:
        d_model: input feature size.
        num_expert: experts per worker.
        world_size: workers holding different experts.
        top_k: experts per token, ``1 <= top_k <= num_expert*world_size``.
        gate_bias: whether the gate linear has a bias.
    """

    fmoe_gate_kind: ClassVar[Optional[str]] = "naive"
    #: Whether the k picked scores are divided by their sum (NaiveGate's
    #: softmax over the k already sums to one, so it never does).
    renormalize: bool = False

    def __init__(
        self,
        d_model: int,
        num_expert: int,
        world_size: int,
        top_k: int = 2,
        gate_bias: bool = True,
    ) -> None:
        super().__init__(num_expert, world_size)
        _check_top_k(type(self).__name__, top_k, self.tot_expert)
        self.d_model = d_model
        self.gate = nn.Linear(d_model, self.tot_expert, bias=gate_bias)
        self.top_k = top_k

    def _logits(self, inp: torch.Tensor) -> torch.Tensor:
        if inp.shape[-1] != self.d_model:
            raise ValueError(
                f"{type(self).__name__}: expected input with last dimension "
                f"d_model={self.d_model}, got shape {tuple(inp.shape)}"
            )
        # fp32 router whatever the storage dtype: bf16 logits would perturb
        # the top-k choice and lose the gate gradient to rounding. Autocast
        # would undo the upcast.
        acc = torch.promote_types(
            torch.promote_types(inp.dtype, self.gate.weight.dtype), torch.float32
        )
        weight = self.gate.weight.to(acc)
        bias = None if self.gate.bias is None else self.gate.bias.to(acc)
        with torch.autocast(inp.device.type, enabled=False):
            return F.linear(inp.to(acc), weight, bias)

    def _pick(self, logits: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        val, idx = torch.topk(logits, k=self.top_k, dim=-1, largest=True, sorted=True)
        return val, idx

    def _dummy_loss(self, inp: torch.Tensor) -> None:
        self.set_loss(torch.zeros(1, device=inp.device, requires_grad=True))

    def forward(self, inp: torch.Tensor, return_all_scores: bool = False) -> GateOutput:
        r"""Route ``inp``.

        Args:
            inp: ``[B, d_model]`` (any leading dims are allowed and kept).
            return_all_scores: also return the raw logits ``[B, tot_expert]``.

        Returns:
            ``(topk_idx [B, top_k] int64, topk_score [B, top_k])`` and, if
            ``return_all_scores``, the logits.
        """
        logits = self._logits(inp)
        val, idx = self._pick(logits)
        score = F.softmax(val, dim=-1).to(inp.dtype)
        self._dummy_loss(inp)
        if return_all_scores:
            return idx, score, logits
        return idx, score


class SoftmaxTopKGate(NaiveGate):
    r"""Softmax over *all* experts, then the top-k probabilities (Mixtral/Switch style).

    ``p = softmax(logits)`` in fp32; the score of the picked expert ``e`` is
    ``p[e]``, or ``p[e] / sum_k p[picked_k]`` with ``renormalize=True`` (which
    equals :class:`NaiveGate`'s score up to rounding).

    Args: as :class:`NaiveGate`, plus ``renormalize``.
    """

    fmoe_gate_kind: ClassVar[Optional[str]] = "softmax_topk"

    def __init__(
        self,
        d_model: int,
        num_expert: int,
        world_size: int,
        top_k: int = 2,
        gate_bias: bool = True,
        renormalize: bool = False,
    ) -> None:
        super().__init__(d_model, num_expert, world_size, top_k, gate_bias=gate_bias)
        self.renormalize = bool(renormalize)

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits, dim=-1)

    def forward(self, inp: torch.Tensor, return_all_scores: bool = False) -> GateOutput:
        r"""Route ``inp`` (``[B, d_model]``); returns as :meth:`NaiveGate.forward`."""
        logits = self._logits(inp)
        _, idx = self._pick(logits)
        score = torch.gather(self._probs(logits), -1, idx)
        if self.renormalize and self.top_k == 1:
            # p / p: exactly 1 with an exactly zero gradient (and no 0/0 when
            # a sigmoid underflows); `* 0` keeps the gate in the graph.
            score = score * 0 + 1
        elif self.renormalize:
            score = score / score.sum(dim=-1, keepdim=True)
        score = score.to(inp.dtype)
        self._dummy_loss(inp)
        if return_all_scores:
            return idx, score, logits
        return idx, score


class SigmoidGate(SoftmaxTopKGate):
    r"""Independent sigmoid per expert, then top-k (DeepSeek-V3 style, without bias correction).

    ``p = sigmoid(logits)`` in fp32; the score is ``p[e]``, or ``p[e] / sum_k
    p[picked_k]`` with ``renormalize=True``.

    Args: as :class:`SoftmaxTopKGate`.
    """

    fmoe_gate_kind: ClassVar[Optional[str]] = "sigmoid"

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)
