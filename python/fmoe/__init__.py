r"""fmoe: a compiler and runtime for Mixture-of-Experts layers with FastMoE's Python API.

The layers (:class:`FMoE`, :class:`FMoETransformerMLP`, :class:`FMoELinear`)
and the gates run uncompiled in plain PyTorch; ``fmoe.compile`` replaces them
by compiled layers that share their parameters.
"""

from . import gates
from .gates import BaseGate, NaiveGate, SigmoidGate, SoftmaxTopKGate
from .layers import FMoE, FMoELinear, FMoETransformerMLP, mark_module_parallel_comm

__all__ = [
    "gates",
    "BaseGate",
    "NaiveGate",
    "SoftmaxTopKGate",
    "SigmoidGate",
    "FMoE",
    "FMoELinear",
    "FMoETransformerMLP",
    "mark_module_parallel_comm",
]

from . import compiler
from .compiler import CompileError, compile
from .distributed import DistributedGroupedDataParallel
from .profile import record_load, save_load

__all__ += ["compiler", "compile", "CompileError", "DistributedGroupedDataParallel", "record_load", "save_load"]
