r"""The MoE layers in plain PyTorch: ``FMoELinear``, ``FMoE``, ``FMoETransformerMLP``.

These keep FastMoE's Python API and semantics. They run uncompiled on any
device, with autograd, and are the reference that ``fmoe.compile`` replaces by
a compiled layer sharing the same parameters.

Routing semantics (FastMoE's): for a token ``b`` routed by the gate to experts
``idx[b, 0..k-1]`` with scores ``score[b, 0..k-1]``,
``out[b] = sum_k score[b, k] * expert_{idx[b, k]}(x[b])``; an index ``-1`` is a
dropped slot that contributes 0. Global expert ``e`` lives on rank
``e // num_expert`` (local slot ``e % num_expert``); the uncompiled layers run
with ``world_size == 1`` only.

The uncompiled path synchronises with the host once per forward (the per-expert
token counts are read on the CPU, as FastMoE does); the compiled path does not.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils._pytree import tree_flatten, tree_unflatten

from .gates import NaiveGate

__all__ = [
    "FMoELinear",
    "FMoE",
    "FMoETransformerMLP",
    "mark_module_parallel_comm",
    "ACTIVATIONS",
]

#: Use ``torch._grouped_mm`` for ``FMoELinear`` on the CPU when its alignment
#: and dtype rules allow (see ``_grouped_mm_ok``). Tests switch it off to
#: exercise the padded-``bmm`` path.
_USE_GROUPED_MM = True


def mark_module_parallel_comm(module: nn.Module, comm: str) -> None:
    r"""Tag every parameter of ``module`` with ``p.dp_comm = comm``.

    ``DistributedGroupedDataParallel`` all-reduces each parameter's gradient in
    the communicator named by its tag (``"none"``: never, as for
    expert-parallel experts; ``"gate"``, ``"dp"``, ``"world"``, ...).
    """
    for p in module.parameters():
        setattr(p, "dp_comm", comm)


# --------------------------------------------------------------------------
# FMoELinear
# --------------------------------------------------------------------------


def _counts_on_cpu(fwd_expert_count: Any, num_expert: int, n_rows: int, who: str) -> torch.Tensor:
    counts = torch.as_tensor(fwd_expert_count).to("cpu", torch.int64)
    if counts.dim() != 1 or counts.numel() != num_expert:
        raise ValueError(
            f"{who}: expects fwd_expert_count to be a 1-D tensor of {num_expert} "
            f"counts, got shape {tuple(counts.shape)}"
        )
    if num_expert and int(counts.min()) < 0:
        raise ValueError(f"{who}: fwd_expert_count has a negative count: {counts.tolist()}")
    total = int(counts.sum())
    if total != n_rows:
        raise ValueError(
            f"{who}: fwd_expert_count sums to {total} but the input has {n_rows} rows"
        )
    return counts


def _grouped_mm_ok(inp: torch.Tensor, weight: torch.Tensor) -> bool:
    # torch._grouped_mm on the CPU takes fp32/bf16/fp16 with rows aligned to
    # 16 bytes; on CUDA it depends on the architecture, so CUDA takes the
    # portable padded-bmm path instead.
    if not (_USE_GROUPED_MM and hasattr(torch, "_grouped_mm")):
        return False
    if inp.device.type != "cpu" or inp.shape[0] == 0:
        return False
    if weight.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return False
    esize = weight.element_size()
    return (weight.shape[1] * esize) % 16 == 0 and (weight.shape[2] * esize) % 16 == 0


def _contiguous_grad(grad: torch.Tensor) -> torch.Tensor:
    # _grouped_mm's backward rejects the stride-0 gradients that e.g. `.sum()`
    # produces.
    return grad.contiguous()


def grouped_linear(
    inp: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    fwd_expert_count: Any,
) -> torch.Tensor:
    r"""``out[r] = inp[r] @ weight[e(r)].T + bias[e(r)]`` for rows grouped by expert.

    Args:
        inp: ``[N, in]``, rows of expert 0 first, then expert 1, ...; cast to
            ``weight.dtype``.
        weight: ``[E, out, in]``.
        bias: ``[E, out]`` or ``None``.
        fwd_expert_count: ``[E]`` integer counts (CPU or device) summing to ``N``.

    Returns:
        ``[N, out]`` in ``weight.dtype``.

    No Python loop over experts: on the CPU ``torch._grouped_mm`` when its
    rules allow, otherwise the rows are scattered into a zero-padded
    ``[E, max_count, in]`` buffer and multiplied with one ``torch.bmm``. Both
    paths are deterministic (no atomics).
    """
    num_expert, out_feat, in_feat = weight.shape
    if inp.dim() != 2 or inp.shape[1] != in_feat:
        raise ValueError(
            f"FMoELinear: expects input [N, {in_feat}], got shape {tuple(inp.shape)}"
        )
    n_rows = inp.shape[0]
    counts = _counts_on_cpu(fwd_expert_count, num_expert, n_rows, "FMoELinear")
    inp = inp.to(weight.dtype)
    expert_of_row = torch.repeat_interleave(torch.arange(num_expert), counts)

    if _grouped_mm_ok(inp, weight):
        offs = torch.cumsum(counts, 0).to(torch.int32)
        out = torch._grouped_mm(inp.contiguous(), weight.transpose(1, 2), offs=offs)
        if out.requires_grad:
            out.register_hook(_contiguous_grad)
        if bias is not None:
            out = out + bias.index_select(0, expert_of_row.to(inp.device))
        return out

    max_count = int(counts.max()) if num_expert else 0
    starts = torch.cumsum(counts, 0) - counts
    pos_in_group = torch.arange(n_rows) - starts[expert_of_row]
    slot = (expert_of_row * max_count + pos_in_group).to(inp.device)
    padded = inp.new_zeros(num_expert * max_count, in_feat).index_copy(0, slot, inp)
    out = torch.bmm(padded.view(num_expert, max_count, in_feat), weight.transpose(1, 2))
    if bias is not None:
        # Added before the un-padding so that the bias gradient is a plain
        # (deterministic) reduction rather than an index_add.
        out = out + bias.unsqueeze(1)
    return out.reshape(num_expert * max_count, out_feat).index_select(0, slot)


class FMoELinear(nn.Module):
    r"""``num_expert`` linear layers applied to rows grouped by expert (FastMoE's ``FMoELinear``).

    Args:
        num_expert: number of experts ``E``.
        in_feat, out_feat: feature sizes.
        bias: whether there is a bias ``[E, out_feat]`` (initialised to zero).
        rank: kept for FastMoE compatibility (unused).

    Parameters: ``weight`` ``[E, out_feat, in_feat]``, each expert's slice
    initialised like ``nn.Linear`` (``kaiming_uniform_(a=sqrt(5))``, bound
    ``1/sqrt(in_feat)``). FastMoE applies the init to the 3-D tensor at once,
    which gives a bound ``1/sqrt(out_feat*in_feat)``; per expert is what a
    stack of ``nn.Linear`` would have.
    """

    def __init__(
        self, num_expert: int, in_feat: int, out_feat: int, bias: bool = True, rank: int = 0
    ) -> None:
        super().__init__()
        self.num_expert = num_expert
        self.in_feat = in_feat
        self.out_feat = out_feat
        self.rank = rank
        self.weight = nn.Parameter(torch.empty(num_expert, out_feat, in_feat))
        if bias:
            self.bias = nn.Parameter(torch.zeros(num_expert, out_feat))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Per-expert ``nn.Linear`` weight init; zero bias."""
        with torch.no_grad():
            for w in self.weight:
                nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            if self.bias is not None:
                self.bias.zero_()

    def forward(self, inp: torch.Tensor, fwd_expert_count: Any) -> torch.Tensor:
        r"""Apply expert ``e``'s linear to its rows.

        Args:
            inp: ``[N, in_feat]``, rows grouped by expert (expert 0 first).
            fwd_expert_count: ``[E]`` integer row counts, CPU or device tensor
                (or a sequence), summing to ``N``.

        Returns:
            ``[N, out_feat]`` in the weight's dtype.
        """
        return grouped_linear(inp, self.weight, self.bias, fwd_expert_count)

    def extra_repr(self) -> str:
        return (
            f"num_expert={self.num_expert}, in_features={self.in_feat}, "
            f"out_features={self.out_feat}, bias={self.bias is not None}, rank={self.rank}"
        )


# --------------------------------------------------------------------------
# FMoE
# --------------------------------------------------------------------------

_EP_MESSAGE = (
    "expert parallelism (world_size > 1) runs through fmoe.compile with a process "
    "group; the uncompiled {cls} runs with world_size=1 only (got world_size={ws})"
)


class FMoE(nn.Module):
    r"""A general MoE layer (FastMoE's ``FMoE``).

    Args:
        num_expert: experts **per worker**.
        d_model: input feature size.
        world_size: workers holding different experts; total experts
            ``num_expert * world_size``. The uncompiled forward needs 1.
        mp_group: deprecated alias of ``slice_group``.
        slice_group: ranks holding the same batch (each would compute a slice).
            Accepted; the uncompiled forward refuses a group of size > 1.
        moe_group: the process group of the expert-parallel all-to-all.
        top_k: experts per token.
        gate: a gate class. A subclass of :class:`NaiveGate` is built as
            ``gate(d_model, num_expert, world_size, top_k, gate_bias=gate_bias)``,
            anything else as ``gate(d_model, num_expert, world_size, top_k)``
            (unlike FastMoE, a plain factory function is accepted too).
        expert: ``None`` (fused: a subclass assigns ``self.experts``, called as
            ``experts(inp, fwd_expert_count)``); a callable ``f(d_model) ->
            nn.Module`` instantiated ``num_expert`` times; or a list of such
            callables (``num_expert`` becomes its length). Expert modules are
            called as ``module(x, fwd_expert_count)``.
        gate_hook: called as ``gate_hook(topk_idx, topk_score, None)`` after gating.
        mask, mask_dict: per-token mask; tokens with ``mask == 0`` are routed,
            a token with ``mask == m`` gets ``mask_dict[m]`` (``[d_out]``) as
            its output in every top-k slot (then weighted by the scores).
        gate_bias: whether the gate linear has a bias (NaiveGate family only).

    Input: a tensor ``[..., d_model]`` (any leading dims, possibly empty), or a
    nested list/tuple/dict of tensors with equal dim 0 (FastMoE's
    multi-input form: the gate is then called on the structure itself).
    Output: same leading dims; last dim is the experts' output size.
    """

    def __init__(
        self,
        num_expert: int = 32,
        d_model: int = 1024,
        world_size: int = 1,
        mp_group: Any = None,
        slice_group: Any = None,
        moe_group: Any = None,
        top_k: int = 2,
        gate: Callable[..., nn.Module] = NaiveGate,
        expert: Union[None, Callable[[int], nn.Module], Sequence[Callable[[int], nn.Module]]] = None,
        gate_hook: Optional[Callable[..., Any]] = None,
        mask: Optional[torch.Tensor] = None,
        mask_dict: Optional[Dict[int, torch.Tensor]] = None,
        gate_bias: bool = True,
    ) -> None:
        super().__init__()
        self.num_expert = num_expert
        self.d_model = d_model
        self.world_size = world_size

        self.slice_group = slice_group
        if mp_group is not None:
            import warnings

            warnings.warn(
                "FMoE: mp_group is deprecated, use slice_group", FutureWarning, stacklevel=2
            )
            self.slice_group = mp_group
        if self.slice_group is None:
            self.slice_size = 1
            self.slice_rank = 0
        else:
            self.slice_size = self.slice_group.size()
            self.slice_rank = self.slice_group.rank()

        self.top_k = top_k
        if isinstance(expert, (list, tuple)):
            self.experts: Optional[nn.Module] = nn.ModuleList([e(d_model) for e in expert])
            self.experts_fused = False
            self.num_expert = num_expert = len(expert)
        elif expert is not None:
            self.experts = nn.ModuleList([expert(d_model) for _ in range(num_expert)])
            self.experts_fused = False
        else:
            self.experts = None
            self.experts_fused = True

        tot_expert = num_expert * world_size
        if not isinstance(top_k, int) or top_k < 1 or top_k > tot_expert:
            raise ValueError(
                f"{type(self).__name__}: expects 1 <= top_k <= num_expert * world_size "
                f"(= {num_expert} * {world_size} = {tot_expert}), got top_k={top_k}"
            )

        if isinstance(gate, type) and issubclass(gate, NaiveGate):
            self.gate = gate(d_model, num_expert, world_size, top_k, gate_bias=gate_bias)
        else:
            self.gate = gate(d_model, num_expert, world_size, top_k)
        self.gate_hook = gate_hook
        self.mask = mask
        self.mask_dict = mask_dict
        self.moe_group = moe_group

    # -- experts -----------------------------------------------------------

    def expert_fn(self, inp: Any, fwd_expert_count: torch.Tensor) -> Any:
        r"""Run the experts on rows grouped by expert.

        Args:
            inp: ``[N, d]`` tensor (or nested structure of them), rows grouped
                by local expert.
            fwd_expert_count: ``[num_expert]`` int64 CPU tensor of row counts.

        Returns:
            The experts' outputs, ``[N, d_out]`` (same structure as ``inp``).
        """
        if self.experts_fused:
            if self.experts is None:
                raise RuntimeError(
                    f"{type(self).__name__}: expert=None means fused experts, but no "
                    "self.experts module was assigned (a subclass must set it)"
                )
            return self.experts(inp, fwd_expert_count)
        counts = fwd_expert_count.tolist()
        leaves, spec = tree_flatten(inp)
        outputs: List[Any] = []
        base = 0
        for i, count in enumerate(counts):
            part = tree_unflatten([t[base : base + count] for t in leaves], spec)
            outputs.append(self.experts[i](part, fwd_expert_count[i : i + 1]))
            base += count
        out_leaves = [tree_flatten(o)[0] for o in outputs]
        out_spec = tree_flatten(outputs[0])[1]
        cat = [torch.cat([o[j] for o in out_leaves], dim=0) for j in range(len(out_leaves[0]))]
        return tree_unflatten(cat, out_spec)

    def expert_fn_single(self, inp: Any, fwd_expert_count: torch.Tensor, idx: int) -> Any:
        """Run local expert ``idx`` alone on its rows (FastMoE's smart-schedule hook)."""
        return self.experts[idx](inp, fwd_expert_count)

    def mark_parallel_comm(self, expert_dp_comm: str = "none") -> None:
        r"""Tag expert parameters with ``dp_comm = expert_dp_comm`` and gate parameters with ``"gate"``."""
        if self.experts is not None:
            mark_module_parallel_comm(self.experts, expert_dp_comm)
        mark_module_parallel_comm(self.gate, "gate")

    # -- forward -------------------------------------------------------------

    def _check_runnable(self) -> None:
        if self.world_size > 1:
            raise RuntimeError(_EP_MESSAGE.format(cls=type(self).__name__, ws=self.world_size))
        if self.slice_size > 1:
            raise RuntimeError(
                f"{type(self).__name__}: a slice_group of size {self.slice_size} needs the "
                "distributed runtime (fmoe.compile); the uncompiled layer runs unsliced only"
            )

    def forward(self, moe_inp: Any) -> Any:
        r"""Route, run the experts and combine.

        Args:
            moe_inp: ``[..., d_model]`` tensor, or a nested structure of
                tensors with equal dim 0.

        Returns:
            ``[..., d_out]`` (or the experts' output structure, each ``[B, d_out]``).
        """
        self._check_runnable()
        if torch.is_tensor(moe_inp):
            if moe_inp.dim() == 0 or moe_inp.shape[-1] != self.d_model:
                raise ValueError(
                    f"{type(self).__name__}: expected input with last dimension "
                    f"d_model={self.d_model}, got shape {tuple(moe_inp.shape)}"
                )
            lead = moe_inp.shape[:-1]
            flat = moe_inp.reshape(-1, self.d_model)
            out = self._moe_forward(flat, [flat], tree_flatten(flat)[1])
            return out.reshape(*lead, out.shape[-1])
        leaves, spec = tree_flatten(moe_inp)
        if not leaves or not all(torch.is_tensor(t) for t in leaves):
            raise TypeError(
                f"{type(self).__name__}: expects a tensor or a nested structure of tensors"
            )
        sizes = {t.shape[0] for t in leaves}
        if len(sizes) != 1:
            raise ValueError(
                f"{type(self).__name__}: MoE inputs must have the same batch size, got {sorted(sizes)}"
            )
        return self._moe_forward(moe_inp, leaves, spec)

    def _moe_forward(self, gate_inp: Any, leaves: List[torch.Tensor], spec: Any) -> Any:
        batch = leaves[0].shape[0]
        k = self.top_k
        device = leaves[0].device
        topk_idx, topk_score = self.gate(gate_inp)[:2]
        if self.gate_hook is not None:
            self.gate_hook(topk_idx, topk_score, None)
        if topk_idx.numel() != batch * k or topk_score.numel() != batch * k:
            raise ValueError(
                f"{type(self).__name__}: the gate returned idx {tuple(topk_idx.shape)} and "
                f"score {tuple(topk_score.shape)}, expected [{batch}, top_k={k}]"
            )
        topk_idx = topk_idx.reshape(batch, k).long()
        topk_score = topk_score.reshape(batch, k)

        masked = self.mask is not None and self.mask_dict is not None
        if masked:
            mask = self.mask.reshape(-1).to(device)
            if mask.numel() != batch:
                raise ValueError(
                    f"{type(self).__name__}: mask has {mask.numel()} entries for {batch} tokens"
                )
            topk_idx = topk_idx.masked_fill((mask != 0).unsqueeze(1), -1)

        # Sort the (token, slot) pairs by expert; dropped slots (-1) sort last
        # under the key tot_expert and are cut off; ids >= tot_expert get the
        # key tot_expert + 1 and are reported.
        tot_expert = self.num_expert * self.world_size
        flat_idx = topk_idx.reshape(-1)
        key = torch.where(flat_idx >= tot_expert, torch.full_like(flat_idx, tot_expert + 1), flat_idx)
        key = torch.where(flat_idx < 0, torch.full_like(flat_idx, tot_expert), key)
        counts_all = torch.bincount(key, minlength=tot_expert + 2).cpu()
        if int(counts_all[tot_expert + 1]):
            raise ValueError(
                f"{type(self).__name__}: the gate returned an expert id >= "
                f"num_expert * world_size = {tot_expert}"
            )
        fwd_expert_count = counts_all[:tot_expert].clone()
        n_routed = int(fwd_expert_count.sum())
        order = torch.argsort(key, stable=True)[:n_routed]
        token = torch.div(order, k, rounding_mode="floor")

        expert_inp = tree_unflatten([t.index_select(0, token) for t in leaves], spec)
        expert_out = self.expert_fn(expert_inp, fwd_expert_count)

        score3 = topk_score.reshape(batch, 1, k)

        def combine(y: torch.Tensor) -> torch.Tensor:
            if y.dim() != 2 or y.shape[0] != n_routed:
                raise ValueError(
                    f"{type(self).__name__}: experts must return [rows, d_out] with "
                    f"{n_routed} rows, got {tuple(y.shape)}"
                )
            dim = y.shape[-1]
            slots = y.new_zeros(batch * k, dim).index_copy(0, order, y).view(batch, k, dim)
            if masked:
                for m, value in self.mask_dict.items():
                    sel = (mask == m).view(batch, 1, 1)
                    slots = torch.where(sel, value.to(slots).expand_as(slots), slots)
            # Weighted sum in fp32 at least (as the compiled epilogue does), so
            # that bf16/fp16 layers do not lose the score gradient to rounding.
            acc = torch.promote_types(slots.dtype, torch.float32)
            out = torch.bmm(score3.to(acc), slots.to(acc)).view(batch, dim)
            return out.to(slots.dtype)

        out_leaves, out_spec = tree_flatten(expert_out)
        return tree_unflatten([combine(y) for y in out_leaves], out_spec)


# --------------------------------------------------------------------------
# FMoETransformerMLP
# --------------------------------------------------------------------------

#: Activation names understood by the compiler: name -> (factory, is_glu).
ACTIVATIONS: Dict[str, Tuple[Callable[[], nn.Module], bool]] = {
    "relu": (nn.ReLU, False),
    "gelu": (nn.GELU, False),
    "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), False),
    "silu": (nn.SiLU, False),
    "swiglu": (nn.SiLU, True),
    "geglu": (nn.GELU, True),
}


def _activation_kind(act: Any) -> Optional[str]:
    """The compiler's name of an elementwise activation (``None`` if it has none)."""
    if type(act) is nn.ReLU or act is F.relu or act is torch.relu:
        return "relu"
    if type(act) is nn.GELU:
        return {"none": "gelu", "tanh": "gelu_tanh"}.get(act.approximate)
    if act is F.gelu:
        return "gelu"
    if type(act) is nn.SiLU or act is F.silu:
        return "silu"
    return None


class _Expert(nn.Module):
    r"""All local experts of an MLP as fused ``FMoELinear`` layers (FastMoE 1.0's ``_Expert``).

    ``htoh4``: ``[E, d_hidden, d_model]`` (+ bias), ``h4toh``: ``[E, d_model,
    d_hidden]`` (+ bias), and for GLU forms ``up``: ``[E, d_hidden, d_model]``
    (no bias): ``h4toh(act(htoh4(x)) * up(x))``.
    """

    def __init__(
        self,
        num_expert: int,
        d_model: int,
        d_hidden: int,
        activation: Callable[[torch.Tensor], torch.Tensor],
        rank: int = 0,
        glu: bool = False,
    ) -> None:
        super().__init__()
        self.htoh4 = FMoELinear(num_expert, d_model, d_hidden, bias=True, rank=rank)
        self.h4toh = FMoELinear(num_expert, d_hidden, d_model, bias=True, rank=rank)
        self.glu = glu
        if glu:
            self.up = FMoELinear(num_expert, d_model, d_hidden, bias=False, rank=rank)
        else:
            self.up = None
        self.activation = activation

    def forward(self, inp: torch.Tensor, fwd_expert_count: torch.Tensor) -> torch.Tensor:
        """``inp`` ``[N, d_model]`` grouped by expert → ``[N, d_model]``."""
        x = self.activation(self.htoh4(inp, fwd_expert_count))
        if self.up is not None:
            x = x * self.up(inp, fwd_expert_count)
        return self.h4toh(x, fwd_expert_count)


class FMoETransformerMLP(FMoE):
    r"""An MoE MLP block (FastMoE's ``FMoETransformerMLP``), without norm/residual/dropout.

    Args:
        num_expert: experts per worker.
        d_model, d_hidden: model and hidden sizes.
        activation: an ``nn.Module``/function (``nn.GELU()`` with
            ``approximate`` ``'none'`` or ``'tanh'``, ``nn.ReLU()``,
            ``nn.SiLU()``, or any callable when not compiled), or one of the
            strings ``"relu"``, ``"gelu"``, ``"gelu_tanh"``, ``"silu"``,
            ``"swiglu"``, ``"geglu"``. The GLU forms add ``experts.up`` and
            compute ``act(htoh4(x)) * up(x)``. The default ``"gelu"`` is
            FastMoE's ``nn.GELU()``.
        expert_dp_comm: ``dp_comm`` tag of the expert parameters.
        expert_rank: kept for FastMoE compatibility.
        **kwargs: passed to :class:`FMoE` (``world_size``, ``top_k``, ``gate``,
            ``gate_bias``, ``moe_group``, ...).

    Parameters (FastMoE 1.0 names): ``gate.gate.weight`` ``[E*world,
    d_model]``, ``gate.gate.bias``, ``experts.htoh4.weight`` ``[E, d_hidden,
    d_model]``, ``experts.htoh4.bias`` ``[E, d_hidden]``,
    ``experts.h4toh.weight`` ``[E, d_model, d_hidden]``,
    ``experts.h4toh.bias`` ``[E, d_model]`` (+ ``experts.up.weight`` for
    GLU). A FastMoE 1.1 state dict (one ``_Expert`` per expert,
    ``experts.<i>.htoh4.weight`` ``[1, d_hidden, d_model]``, ...) also loads.
    """

    def __init__(
        self,
        num_expert: int = 32,
        d_model: int = 1024,
        d_hidden: int = 4096,
        activation: Union[str, Callable[[torch.Tensor], torch.Tensor]] = "gelu",
        expert_dp_comm: str = "none",
        expert_rank: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_expert=num_expert, d_model=d_model, **kwargs)
        glu = False
        if isinstance(activation, str):
            if activation not in ACTIVATIONS:
                raise ValueError(
                    f"{type(self).__name__}: unknown activation {activation!r}; expected "
                    f"one of {sorted(ACTIVATIONS)} or a callable"
                )
            factory, glu = ACTIVATIONS[activation]
            activation = factory()
        self.d_hidden = d_hidden
        self.experts = _Expert(
            self.num_expert, d_model, d_hidden, activation, rank=expert_rank, glu=glu
        )
        self.mark_parallel_comm(expert_dp_comm)
        self.register_load_state_dict_pre_hook(_stack_fastmoe11_experts)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        r"""``inp`` ``[..., d_model]`` → ``[..., d_model]`` (same shape)."""
        if not torch.is_tensor(inp) or inp.dim() == 0 or inp.shape[-1] != self.d_model:
            shape = tuple(inp.shape) if torch.is_tensor(inp) else type(inp).__name__
            raise ValueError(
                f"{type(self).__name__}: expected input with last dimension "
                f"d_model={self.d_model}, got {shape}"
            )
        original_shape = inp.shape
        out = super().forward(inp.reshape(-1, self.d_model))
        return out.reshape(original_shape)

    def activation_name(self) -> str:
        r"""The compiler's name of this layer's activation (raises ``ValueError`` if it has none)."""
        act = self.experts.activation
        kind = _activation_kind(act)
        if self.experts.up is not None:
            kind = {"silu": "swiglu", "gelu": "geglu"}.get(kind or "")
        if kind is None:
            raise ValueError(
                f"{type(self).__name__}: activation {act!r}"
                f"{' (GLU form)' if self.experts.up is not None else ''} is not supported "
                f"by fmoe.compile; supported: {sorted(ACTIVATIONS)} (nn.ReLU, nn.GELU, "
                "nn.GELU(approximate='tanh'), nn.SiLU or their string names)"
            )
        return kind

    def moe_operands(self) -> Dict[str, nn.Parameter]:
        r"""The parameters a compiled layer takes, name → ``nn.Parameter`` in
        operand order (``moe_config()["params"]``), without ``moe_config``'s
        checks: what a compiled layer's forward reads every step."""
        gate = self.gate.gate
        experts = self.experts
        params: Dict[str, nn.Parameter] = {"gate_weight": gate.weight}
        if gate.bias is not None:
            params["gate_bias"] = gate.bias
        params["fc1_weight"] = experts.htoh4.weight
        if experts.htoh4.bias is not None:
            params["fc1_bias"] = experts.htoh4.bias
        if experts.up is not None:
            params["up_weight"] = experts.up.weight
        params["fc2_weight"] = experts.h4toh.weight
        if experts.h4toh.bias is not None:
            params["fc2_bias"] = experts.h4toh.bias
        return params

    def moe_config(self) -> Dict[str, Any]:
        r"""Everything ``fmoe.compile`` needs to build this layer.

        Returns a dict with:

        - ``num_experts`` (total, ``num_expert*world_size``), ``num_expert``
          (per rank), ``world_size``, ``top_k``, ``d_model``, ``d_hidden``;
        - ``activation``: one of ``relu, gelu, gelu_tanh, silu, swiglu, geglu``;
        - ``gate_kind``: the gate's ``fmoe_gate_kind`` (``naive``,
          ``softmax_topk``, ``sigmoid``); ``renormalize`` (bool);
        - ``gate_bias``, ``fc1_bias``, ``fc2_bias`` (bools);
        - ``dtype``: the dtype of ``fc1_weight``;
        - ``gate_hook``: the hook or ``None`` (a compiled layer must call it
          or refuse);
        - ``params``: name → ``nn.Parameter`` in operand order: ``gate_weight``
          ``[num_experts, d_model]``, ``gate_bias`` ``[num_experts]`` (if
          any), ``fc1_weight`` ``[num_expert, d_hidden, d_model]``,
          ``fc1_bias`` ``[num_expert, d_hidden]``, ``up_weight``
          ``[num_expert, d_hidden, d_model]`` (GLU only), ``fc2_weight``
          ``[num_expert, d_model, d_hidden]``, ``fc2_bias`` ``[num_expert,
          d_model]``.

        Raises:
            ValueError: the activation or gate cannot be compiled, or a
                ``mask``/``mask_dict`` is set.
        """
        name = type(self).__name__
        gate = self.gate
        kind = vars(type(gate)).get("fmoe_gate_kind")
        if kind is None:
            raise ValueError(
                f"{name}: gate {type(gate).__name__} cannot be compiled: its class does not "
                "declare fmoe_gate_kind (use NaiveGate, SoftmaxTopKGate or SigmoidGate, or "
                "declare the kind in the subclass if its routing is exactly that gate's)"
            )
        if not isinstance(getattr(gate, "gate", None), nn.Linear):
            raise ValueError(f"{name}: gate {type(gate).__name__} has no `gate` nn.Linear")
        if self.mask is not None or self.mask_dict is not None:
            raise ValueError(f"{name}: a layer with mask/mask_dict cannot be compiled")
        if not isinstance(self.experts, _Expert):
            raise ValueError(f"{name}: self.experts was replaced by {type(self.experts).__name__}")
        activation = self.activation_name()
        experts = self.experts
        params = self.moe_operands()
        return {
            "num_experts": self.num_expert * self.world_size,
            "num_expert": self.num_expert,
            "world_size": self.world_size,
            "top_k": self.top_k,
            "d_model": self.d_model,
            "d_hidden": self.d_hidden,
            "activation": activation,
            "gate_kind": kind,
            "renormalize": bool(getattr(gate, "renormalize", False)),
            "gate_bias": gate.gate.bias is not None,
            "fc1_bias": experts.htoh4.bias is not None,
            "fc2_bias": experts.h4toh.bias is not None,
            "dtype": experts.htoh4.weight.dtype,
            "gate_hook": self.gate_hook,
            "params": params,
        }


def _stack_fastmoe11_experts(
    module: nn.Module,
    state_dict: Dict[str, Any],
    prefix: str,
    local_metadata: Any,
    strict: bool,
    missing_keys: List[str],
    unexpected_keys: List[str],
    error_msgs: List[str],
) -> None:
    # FastMoE >= 1.1 stores one single-expert _Expert per expert
    # (`experts.<i>.htoh4.weight` [1, H, D]); stack them into 1.0's fused layout.
    n = module.num_expert
    for lin in ("htoh4", "h4toh"):
        for p in ("weight", "bias"):
            fused = f"{prefix}experts.{lin}.{p}"
            parts = [f"{prefix}experts.{i}.{lin}.{p}" for i in range(n)]
            if fused not in state_dict and all(key in state_dict for key in parts):
                state_dict[fused] = torch.cat([state_dict.pop(key) for key in parts], dim=0)
