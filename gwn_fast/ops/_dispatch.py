"""Which implementation an op call runs: the Triton kernels or the PyTorch reference.

The public functional layer reads the current backend once per call and passes it to the
op as its ``impl`` argument; the op's autograd stores it, so the backward runs on the same
implementation as the forward even if it runs after the ``with backend(...)`` block ended.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

import torch

from gwn_fast import kernels

__all__ = ["BACKENDS", "TRITON_DTYPES", "backend", "check_impl", "current_backend", "kernel_module", "use_triton"]

BACKENDS = ("auto", "triton", "reference")
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

# Process-wide (not thread-local) on purpose: torch.compile guards on a module global, and
# the chosen backend travels with each op call anyway (see the module docstring).
_current = "auto"


def current_backend() -> str:
    """The backend new op calls will use: ``"auto"``, ``"triton"`` or ``"reference"``."""
    return _current


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Force the implementation of the ops called inside the block.

    - ``"auto"`` (the default): CUDA tensors run the Triton kernels when Triton works there,
      everything else (CPU tensors, float64, no Triton) runs the PyTorch reference.
    - ``"triton"``: always the Triton kernels; on CPU tensors that needs Triton's
      interpreter (``TRITON_INTERPRET=1`` set before Triton is imported). Raises
      ``RuntimeError`` where Triton cannot run and ``TypeError`` for float64.
    - ``"reference"``: always the PyTorch reference.

    The setting is process-wide, and it is restored on exit.
    """
    global _current
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    previous, _current = _current, name
    try:
        yield
    finally:
        _current = previous


def check_impl(impl: str, tensor: torch.Tensor) -> None:
    """Raise the error :func:`use_triton` would raise, before any work starts."""
    use_triton(impl, tensor)


def use_triton(impl: str, tensor: torch.Tensor) -> bool:
    """Whether an op called with backend ``impl`` on ``tensor`` runs the Triton kernels."""
    if impl == "reference":
        return False
    if impl == "auto":
        return tensor.device.type == "cuda" and tensor.dtype in TRITON_DTYPES and kernels.triton_usable(tensor.device)
    if impl != "triton":
        raise ValueError(f"backend must be one of {BACKENDS}, got {impl!r}")
    if not kernels.triton_usable(tensor.device):
        hint = (
            " (set TRITON_INTERPRET=1 before triton is imported to run the kernels in its interpreter)"
            if tensor.device.type == "cpu" and kernels.triton_available()
            else ""
        )
        raise RuntimeError(f"backend('triton') was requested but Triton cannot run on {tensor.device} tensors{hint}")
    if tensor.dtype not in TRITON_DTYPES:
        raise TypeError(
            f"the Triton kernels take float16, bfloat16 or float32 tensors, got {tensor.dtype}; "
            "use backend('reference') (or 'auto') for other dtypes"
        )
    return True


def kernel_module(name: str) -> ModuleType:
    """Import ``gwn_fast.kernels.<name>`` on first use, so that ``import gwn_fast`` never
    decorates (or needs) a Triton kernel."""
    return importlib.import_module(f"{kernels.__name__}.{name}")
