"""``DistributedGroupedDataParallel``: FastMoE's gradient reduction by tag.

Every parameter carries a ``dp_comm`` tag (``FMoE.mark_parallel_comm`` sets
``"none"`` on expert-parallel experts and ``"gate"`` on the gate; untagged
parameters are ``"dp"``). Gradients are averaged over the process group of
their tag; tags with no group (``"none"``) are left alone, since each rank
holds different experts.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistributedGroupedDataParallel"]


class DistributedGroupedDataParallel(nn.Module):
    r"""Wraps ``module``; reduces gradients per ``dp_comm`` tag.

    Args:
        module: the model.
        auto_allreduce: reduce each gradient during backward, as soon as it
            is accumulated (users then cannot forget ``allreduce_gradients``);
            call ``remove_hooks()`` before destroying the process groups.
        need_sync: broadcast every parameter from its group's first rank now.
        **kwargs: ``<tag>_group=ProcessGroup`` for each tag (``dp_group``,
            ``gate_group``, ``moe_group``, ``world_group``, or any other);
            ``dp``, ``gate``, ``moe`` and ``world`` default to the world group.
    """

    def __init__(self, module: nn.Module, auto_allreduce: bool = False, need_sync: bool = True, **kwargs: Any):
        super().__init__()
        if not dist.is_initialized():
            raise RuntimeError("DistributedGroupedDataParallel needs torch.distributed to be initialised")
        self.module = module
        self.comms: Dict[str, Any] = {}
        for key, value in kwargs.items():
            if not key.endswith("_group"):
                raise TypeError(f"unexpected argument {key!r} (groups are passed as <tag>_group=...)")
            self.comms[key[: -len("_group")]] = value
        for tag in ("dp", "gate", "moe", "world"):
            self.comms.setdefault(tag, dist.group.WORLD)
        if need_sync:
            self._sync_params()
        self._hooks: List[Any] = []
        if auto_allreduce:
            for p in self.module.parameters():
                if p.requires_grad and self._tag(p) in self.comms:
                    self._hooks.append(p.register_post_accumulate_grad_hook(self._reduce_one))

    @staticmethod
    def _tag(p: nn.Parameter) -> str:
        return getattr(p, "dp_comm", "dp")

    def _groups(self, with_grads: bool) -> Dict[Tuple[str, torch.dtype], List[nn.Parameter]]:
        buckets: Dict[Tuple[str, torch.dtype], List[nn.Parameter]] = {}
        for p in self.module.parameters():
            if self._tag(p) not in self.comms or (with_grads and p.grad is None):
                continue
            buckets.setdefault((self._tag(p), p.dtype), []).append(p)
        return buckets

    def _sync_params(self) -> None:
        for (tag, _), params in self._groups(with_grads=False).items():
            group = self.comms[tag]
            src = dist.get_global_rank(group, 0)
            for p in params:
                dist.broadcast(p.data, src, group=group)

    def _reduce_one(self, p: nn.Parameter) -> None:
        group = self.comms[self._tag(p)]
        dist.all_reduce(p.grad, group=group)
        p.grad.div_(dist.get_world_size(group))

    def allreduce_gradients(self, no_scale: bool = False, reduce_after: bool = False, fp32_allreduce: bool = False) -> None:
        """Average (sum with ``no_scale``) every tagged gradient over its group.

        ``reduce_after`` divides after the sum instead of before (the same
        result up to rounding); ``fp32_allreduce`` reduces 16-bit gradients in
        fp32.
        """
        for (tag, _), params in self._groups(with_grads=True).items():
            group = self.comms[tag]
            size = dist.get_world_size(group)
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            if fp32_allreduce:
                flat = flat.float()
            if not no_scale and not reduce_after:
                flat.div_(size)
            dist.all_reduce(flat, group=group)
            if not no_scale and reduce_after:
                flat.div_(size)
            offset = 0
            for p in params:
                n = p.grad.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                offset += n

    allreduce_params = allreduce_gradients

    def remove_hooks(self) -> None:
        """Stops the automatic reduction (call before tearing the groups down)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)
