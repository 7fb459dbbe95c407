"""Private Triton kernels and their launchers (installed as ``gwn_fast.kernels``).

Nothing here is public API: :mod:`gwn_fast.ops` registers each launcher as a
``torch.library`` op and :mod:`gwn_fast.functional` is the public face.

This ``__init__`` is only the gate that says whether Triton can run on a device. It
imports no kernel module, so importing it works on machines without Triton or without
a GPU driver; :mod:`gwn_fast.ops` imports the kernel modules (``merge``, ``gaussian``,
``indexes``) lazily, the first time a Triton launch is chosen.

The gate is deliberately not ``torch.utils._triton.has_triton()``: that is False without a
GPU, which would also switch off the interpreter (``TRITON_INTERPRET=1``), the only way the
kernels run on a CPU-only machine.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

__all__ = ["interpreter_active", "triton_available", "triton_usable"]

# Triton reads TRITON_INTERPRET when a kernel is decorated, i.e. when the kernel modules
# are imported; reading it once, at import, keeps the gate consistent with the kernels.
_INTERPRET_ENV_SET = bool(os.environ.get("TRITON_INTERPRET"))


@functools.cache
def triton_available() -> bool:
    """True when the ``triton`` package can be imported (it may still lack a driver)."""
    return importlib.util.find_spec("triton") is not None


@functools.cache
def interpreter_active() -> bool:
    """True when Triton runs kernels in its interpreter (``TRITON_INTERPRET=1`` at import)."""
    if not (_INTERPRET_ENV_SET and triton_available()):
        return False
    try:
        # Triton >= 3.4: its own parser decides which spellings count as true ("1", "true", ...).
        from triton import knobs
    except ImportError:
        # Triton 3.0-3.3 have no knobs; their @jit interprets exactly when the variable is "1".
        return os.environ.get("TRITON_INTERPRET", "0") == "1"
    return bool(knobs.runtime.interpret)


@functools.cache
def _gpu_driver_works() -> bool:
    # Asking Triton for its active target initialises the driver; on a machine without a
    # GPU (or with a broken driver) this raises, and the answer is simply "no".
    try:
        from triton.runtime import driver

        driver.active.get_current_target()
    except Exception:  # noqa: BLE001 - any failure means Triton cannot launch here
        return False
    return True


def triton_usable(device: torch.device | str) -> bool:
    """Whether the Triton kernels can run on tensors living on ``device``.

    - Interpreter active: yes for CPU and CUDA tensors (the interpreter copies to host).
    - Otherwise: only CUDA tensors (NVIDIA or ROCm builds), with Triton importable and
      its GPU driver working.
    """
    device = torch.device(device)
    if not triton_available():
        return False
    if interpreter_active():
        return device.type in ("cpu", "cuda")
    return device.type == "cuda" and torch.cuda.is_available() and _gpu_driver_works()
