"""``fmoe.compile``: compile every MoE layer of a model.

Each supported layer (a :class:`fmoe.FMoETransformerMLP`) becomes one
``fmoe.moe`` op in MLIR text, which ``fmoe-compile`` (the compiler's CLI)
turns into a compiled module. Modules are cached under ``$FMOE_CACHE_DIR``
(default ``~/.cache/fmoe``) by a hash of the IR, the options (the target
among them) and the compiler ABI tag, so a machine without the compiler (the
runtime-only GPU node) can load modules compiled elsewhere; where the
compiler is present, a module made by another build of it is compiled again.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import _ops

__all__ = ["compile", "CompileError", "cache_dir", "emit_mlir"]

#: Bumped with every change that alters the compiled modules.
COMPILER_ABI = "fmoe-5"

_DTYPE_NAMES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}


class CompileError(RuntimeError):
    """A layer could not be compiled, or its compiled module not loaded."""


def cache_dir() -> Path:
    """Where compiled modules are kept: ``$FMOE_CACHE_DIR`` or ``~/.cache/fmoe``."""
    return Path(os.environ.get("FMOE_CACHE_DIR", Path.home() / ".cache" / "fmoe"))


def _compiler() -> Optional[Path]:
    """The ``fmoe-compile`` executable, or None on a runtime-only install."""
    env = os.environ.get("FMOE_COMPILER")
    candidates = [Path(env)] if env else []
    package = Path(__file__).resolve().parent
    build = Path(os.environ.get("FMOE_BUILD_DIR", package.parent.parent / "build"))
    # `pip install .` puts the tools beside the interpreter (the environment's
    # scripts directory), which need not be on PATH.
    scripts = Path(sys.executable).parent / "fmoe-compile"
    candidates += [scripts, build / "bin" / "fmoe-compile"]
    which = shutil.which("fmoe-compile")
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None


def emit_mlir(cfg: Dict[str, Any], name: str = "layer") -> str:
    """The layer described by ``cfg`` (``FMoE.moe_config()``) as an ``fmoe.moe`` op."""
    dtype = _DTYPE_NAMES.get(cfg["dtype"])
    if dtype is None:
        raise CompileError(f"{name}: dtype {cfg['dtype']} is not supported (f32, bf16, f16)")
    params: Dict[str, nn.Parameter] = cfg["params"]
    args, types, operands = [], [], []
    keyword = {
        "gate_weight": "gate", "gate_bias": "bias", "fc1_weight": "fc1", "fc1_bias": "bias",
        "up_weight": "up", "fc2_weight": "fc2", "fc2_bias": "bias",
    }
    d = cfg["d_model"]
    x_type = f"tensor<?x{d}x{dtype}>"
    for pname, p in params.items():
        ty = "tensor<" + "x".join(str(s) for s in p.shape) + f"x{dtype}>"
        args.append(f"%{pname}: {ty}")
        types.append(ty)
        operands.append(f"{keyword[pname]} %{pname}")
    attrs = [
        f"activation = #fmoe<activation {cfg['activation']}>",
        f"gate = #fmoe<gate {cfg['gate_kind']}>",
        f"num_experts = {cfg['num_experts']} : i64",
        f"top_k = {cfg['top_k']} : i64",
        f"world_size = {cfg['world_size']} : i64",
    ]
    if cfg.get("renormalize"):
        attrs.append("renormalize")
    if cfg.get("capacity_factor") is not None:
        attrs.append(f"capacity_factor = {float(cfg['capacity_factor'])!r}")
    return (
        f"func.func @{name}(%input: {x_type}, {', '.join(args)}) -> {x_type} {{\n"
        f"  %y = fmoe.moe %input {' '.join(operands)}\n"
        f"      {{{', '.join(attrs)}}}\n"
        f"      : ({x_type}, {', '.join(types)}) -> {x_type}\n"
        f"  return %y : {x_type}\n"
        "}\n"
    )


@dataclass
class _Buffer:
    name: str
    dtype: str
    role: str
    clobbered: bool = False  # an input the program overwrites


@dataclass
class _ModuleInfo:
    """What Python needs to know of a module file (the C++ runtime validates it)."""

    path: Path
    handle: int
    programs: Dict[str, List[_Buffer]] = field(default_factory=dict)


_modules: Dict[int, _ModuleInfo] = {}


def _module_by_handle(handle: int) -> _ModuleInfo:
    return _modules[handle]


def _load(path: Path) -> _ModuleInfo:
    _ops.load_library()
    try:
        handle = torch.ops.fmoe.load(str(path))
    except RuntimeError as e:
        raise CompileError(
            f"{e}\nThe cached module {path} cannot be used: delete it, or call "
            "fmoe.compile(..., recompile=True) to compile it again."
        ) from None
    info = _ModuleInfo(path, handle)
    current = None
    with open(path, "rb") as f:
        for raw in f:
            if raw.startswith(b"ptx "):
                break
            words = raw.decode("utf-8", "replace").split()
            if words[:1] == ["program"]:
                current = info.programs.setdefault(words[1], [])
            elif words[:1] == ["buffer"] and current is not None:
                current.append(_Buffer(words[1], words[2], words[3], words[-1] == "clobbered"))
    _modules[handle] = info
    return info


_stamps: Dict[Path, str] = {}


def _compiler_stamp(compiler: Path) -> str:
    """A hash of the compiler binary: a module compiled by another build of the
    compiler is compiled again when this one is at hand."""
    if compiler not in _stamps:
        _stamps[compiler] = hashlib.sha256(compiler.read_bytes()).hexdigest()[:16]
    return _stamps[compiler]


def _compile_ir(ir: str, name: str, options: Dict[str, Any], recompile: bool) -> _ModuleInfo:
    compiler = _compiler()
    # The key holds what both a compiler machine and a runtime-only machine
    # know (IR, options, ABI tag); the compiler's own identity is kept beside
    # the module, so the machine that has the compiler notices a stale module.
    # A load profile enters the key by its content (its file is named by a
    # hash of it), not by where this machine keeps it.
    key_options = {k: Path(v).name if k == "load-profile" else v for k, v in options.items()}
    key_text = "\n".join([COMPILER_ABI, repr(sorted(key_options.items())), ir])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:24]
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{name}-{key}.fmoe"
    source = directory / f"{name}-{key}.mlir"
    # Ranks of one node share the cache: every write goes through a file of
    # this process's own and an atomic rename.
    tmp = f".{os.getpid()}.tmp"
    if not source.exists():
        Path(str(source) + tmp).write_text(ir)
        os.replace(str(source) + tmp, source)
    stamp = directory / f"{name}-{key}.stamp"
    if compiler is not None and target.exists() and not recompile:
        recompile = not stamp.exists() or stamp.read_text() != _compiler_stamp(compiler)
    if recompile or not target.exists():
        if compiler is None:
            raise CompileError(
                f"{name}: no compiled module in the cache ({target}) and no fmoe compiler on this "
                "machine (runtime-only install). Compile it ahead of time on a machine with the "
                f"compiler:\n  fmoe-compile {source.name} -o {target.name}"
                + "".join(f" --{k}={v}" for k, v in sorted(options.items()))
                + f"\nand copy {target.name} into {directory} here (the IR was written to {source})."
            )
        cmd = [str(compiler), str(source), "-o", str(target) + tmp]
        cmd += [f"--{k}={v}" for k, v in sorted(options.items())]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise CompileError(f"{name}: fmoe-compile failed:\n{done.stderr.strip()}")
        os.replace(str(target) + tmp, target)
        Path(str(stamp) + tmp).write_text(_compiler_stamp(compiler))
        os.replace(str(stamp) + tmp, stamp)
    return _load(target)


class CompiledMoE:
    """Mixin placed in front of an MoE layer's class by :func:`compile`.

    The layer keeps its parameters (the very same ``nn.Parameter`` objects as
    the original layer) and runs its forward and backward through the
    compiled module.
    """

    _fmoe_modules: Dict[torch.dtype, _ModuleInfo]
    _fmoe_options: Dict[str, Any]
    _fmoe_name: str

    def _fmoe_module_for(self, dtype: torch.dtype) -> _ModuleInfo:
        info = self._fmoe_modules.get(dtype)
        if info is None:
            cfg = self.moe_config()
            info = _compile_ir(emit_mlir(cfg, self._fmoe_name), self._fmoe_name, self._fmoe_options, False)
            self._fmoe_modules[dtype] = info
        return info

    def forward(self, inp: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``inp: [..., d_model]`` in the layer's dtype and device → same shape."""
        # The compiled module was checked by moe_config() when it was built;
        # each step only reads the parameters (moe_config's checks and dict
        # cost tens of microseconds of host time at the start of a forward,
        # when the GPU waits for the host).
        if self.mask is not None or self.mask_dict is not None:
            raise ValueError(f"{self._fmoe_name}: a layer with mask/mask_dict cannot be compiled")
        d = self.d_model
        params = list(self.moe_operands().values())
        if not isinstance(inp, torch.Tensor):
            raise TypeError(f"{self._fmoe_name}: expected a tensor input, got {type(inp).__name__}")
        if inp.dim() == 0 or inp.shape[-1] != d:
            raise ValueError(
                f"{self._fmoe_name}: expected input of shape [..., {d}] (d_model), got {list(inp.shape)}"
            )
        if inp.dtype != params[0].dtype:
            raise TypeError(
                f"{self._fmoe_name}: expected input dtype {params[0].dtype} (the layer's), got {inp.dtype}"
            )
        if inp.device != params[0].device:
            raise ValueError(
                f"{self._fmoe_name}: input is on {inp.device} but the layer's parameters are on "
                f"{params[0].device}"
            )
        info = self._fmoe_module_for(inp.dtype)
        rows = inp.reshape(-1, d)
        out = _ops.LayerFunction.apply(info.handle, d, self._fmoe_group, rows, *params)
        return out.reshape(inp.shape)


def _with_load_profile(options: Dict[str, Any], name: str, num_experts: int) -> Dict[str, Any]:
    """Resolves ``load_profile`` for one layer: a file path is used as is; a
    list of loads, or a ``{layer name: loads}`` dict (``fmoe.record_load``),
    is written to a file named by its contents (so the cache key follows the
    profile)."""
    profile = options.get("load-profile")
    if profile is None or isinstance(profile, (str, Path)):
        return options
    loads = profile.get(name) if isinstance(profile, dict) else profile
    if loads is None:
        raise CompileError(f"cannot compile MoE layer '{name}': the load profile has no entry for it")
    if len(loads) != num_experts:
        raise CompileError(
            f"cannot compile MoE layer '{name}': the load profile has {len(loads)} entries for "
            f"{num_experts} experts"
        )
    text = " ".join(repr(float(v)) for v in loads) + "\n"
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"load-{hashlib.sha256(text.encode()).hexdigest()[:16]}.txt"
    if not path.exists():
        tmp = Path(f"{path}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return {**options, "load-profile": str(path)}


def _expert_group(layer: nn.Module, name: str, world_size: int) -> str:
    """The name of the process group the layer's experts are spread over."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise CompileError(
            f"cannot compile MoE layer '{name}': world_size={world_size} needs torch.distributed "
            "to be initialised (e.g. under torchrun) before fmoe.compile"
        )
    group = getattr(layer, "moe_group", None) or dist.group.WORLD
    size = dist.get_world_size(group)
    if size != world_size:
        raise CompileError(
            f"cannot compile MoE layer '{name}': world_size={world_size} but its moe_group has "
            f"{size} ranks"
        )
    return group.group_name


def _check_ranks_agree(layer: nn.Module, name: str, info: _ModuleInfo) -> None:
    """Every rank of the group must run the same compiled module (same layer
    configuration, placement and options), or the exchanges would mismatch."""
    import torch.distributed as dist

    group = getattr(layer, "moe_group", None) or dist.group.WORLD
    mine = info.path.name
    every: List[Optional[str]] = [None] * dist.get_world_size(group)
    dist.all_gather_object(every, mine, group=group)
    if any(other != mine for other in every):
        raise CompileError(
            f"cannot compile MoE layer '{name}': the ranks of its group compiled different "
            f"modules ({', '.join(f'rank {r}: {m}' for r, m in enumerate(every))}); every rank must "
            "build the layer with the same configuration and compile it with the same options"
        )


_compiled_classes: Dict[type, type] = {}


def _compiled_class(cls: type) -> type:
    if cls not in _compiled_classes:
        _compiled_classes[cls] = type(f"Compiled{cls.__name__}", (CompiledMoE, cls), {})
    return _compiled_classes[cls]


def _is_moe_layer(m: nn.Module) -> bool:
    return hasattr(m, "moe_config") and not isinstance(m, CompiledMoE)


def _compile_layer(layer: nn.Module, name: str, options: Dict[str, Any], recompile: bool) -> nn.Module:
    try:
        cfg = layer.moe_config()
    except ValueError as e:
        raise CompileError(f"cannot compile MoE layer '{name}': {e}") from None
    if cfg.get("gate_hook") is not None:
        raise CompileError(f"cannot compile MoE layer '{name}': gate_hook is not supported by compiled layers")
    group_name = None
    if cfg["world_size"] != 1:
        group_name = _expert_group(layer, name, cfg["world_size"])
    symbol = "moe_" + "".join(c if c.isalnum() else "_" for c in (name or "layer"))
    options = _with_load_profile(options, name, cfg["num_experts"])
    compiled = copy.copy(layer)
    compiled.__class__ = _compiled_class(type(layer))
    compiled._fmoe_name = symbol
    compiled._fmoe_options = dict(options)
    compiled._fmoe_group = group_name
    compiled._fmoe_modules = {}
    info = _compile_ir(emit_mlir(cfg, symbol), symbol, options, recompile)
    compiled._fmoe_modules[cfg["dtype"]] = info
    if group_name is not None:
        _check_ranks_agree(layer, name, info)
    return compiled


def _rebuild(module: nn.Module, prefix: str, options: Dict[str, Any], recompile: bool, count: List[int]) -> nn.Module:
    if _is_moe_layer(module):
        count[0] += 1
        return _compile_layer(module, prefix, options, recompile)
    new = copy.copy(module)
    new._modules = {}
    for child_name, child in module._modules.items():
        full = f"{prefix}.{child_name}" if prefix else child_name
        new._modules[child_name] = None if child is None else _rebuild(child, full, options, recompile, count)
    return new


def compile(
    module: nn.Module,
    *,
    recompile: bool = False,
    chip: str = "sm_90",
    placement: Optional[str] = None,
    shadow: Union[int, Sequence[int], None] = None,
    keep_saved: bool = False,
    **options: Any,
) -> nn.Module:
    """Compile every MoE layer of ``module`` (or ``module`` itself if it is one).

    Returns a new module of the same structure whose MoE layers run through
    the compiled fmoe runtime. Parameters and buffers are shared with
    ``module``: an optimizer built on ``module.parameters()`` trains the
    compiled model, and both see the same values. ``recompile=True`` ignores
    the cache. ``placement`` chooses where an expert-parallel layer's experts
    live ("contiguous", FastMoE's and the default; "round-robin"; "balanced"
    with ``load_profile=<file>``): rank r's local expert slots then hold its
    experts in ascending global id. ``shadow`` replicates hot experts on
    every rank (FasterMoE's shadowing, decided at compile time): a list of
    global expert ids, or a number N for the N most loaded experts of
    ``load_profile``. A shadowed expert's tokens are computed on the rank
    that routed them; its parameters are broadcast from their owner each
    forward and its gradients summed back into the owner's in the backward,
    so parameters, optimizer and checkpoints are as without shadowing.
    By default a layer's backward writes its
    gradients over the activation the forward saved, once it has read it for
    the last time: one buffer of ``T*top_k x d_hidden`` less at the peak, but
    a graph can then be back-propagated only once. ``keep_saved=True`` keeps
    the saved values intact, for ``retain_graph=True`` and several backward
    passes through one graph. ``keep_activations=True`` (bf16 GeLU experts
    with both biases) keeps the activations from the forward: the backward's
    first GEMM applies GeLU's derivative in its epilogue instead of a pass
    over the pre-activation (0.5-1.5 % of a step on the H200 benchmarks), at
    one more ``T*top_k x d_hidden`` buffer held until the backward ends.
    Other keyword options go to ``fmoe-compile``.

    Raises:
        CompileError: a layer cannot be compiled (the message names the layer
            and the reason), the compiler is missing and the module is not
            cached, or a cached module is corrupt.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"fmoe.compile expects an nn.Module, got {type(module).__name__}")
    opts = {"chip": chip, **{k.replace("_", "-"): v for k, v in options.items()}}
    if placement is not None:
        opts["strategy"] = placement
    if shadow is not None and not isinstance(shadow, (int, str)):
        shadow = list(shadow)  # a generator is read once
    if isinstance(shadow, bool) or not (
        shadow is None or isinstance(shadow, int) or all(isinstance(e, int) for e in shadow)
    ):
        raise TypeError(f"fmoe.compile: shadow must be a number of experts or a list of expert ids, got {shadow!r}")
    if isinstance(shadow, int):
        if shadow < 0:
            raise ValueError(f"fmoe.compile: shadow={shadow}: expected a non-negative number of experts")
        if shadow:
            if "load-profile" not in opts:
                raise ValueError(
                    f"fmoe.compile: shadow={shadow} shadows the most loaded experts and needs "
                    "load_profile= (fmoe.record_load); or pass a list of expert ids"
                )
            opts["shadow-hot"] = shadow
    elif shadow:
        opts["shadow"] = ",".join(str(e) for e in shadow)
    if keep_saved:
        opts["keep-saved"] = "true"
    count = [0]
    compiled = _rebuild(module, "", opts, recompile, count)
    if count[0] == 0:
        raise CompileError(
            f"fmoe.compile found no MoE layer in {type(module).__name__} "
            "(supported: fmoe.FMoETransformerMLP and subclasses)"
        )
    return compiled
