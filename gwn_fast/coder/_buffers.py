"""Argument checking shared by the coder facade: everything becomes a contiguous
numpy buffer of the exact dtype the C++ core reads, or a ValueError/TypeError that
names the argument. Nothing is converted through Python lists."""

from __future__ import annotations

import os
import sys

import numpy as np

__all__ = ["as_int32", "as_float64", "resolve_threads"]


def _to_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    torch = sys.modules.get("torch")  # a tensor can only exist if torch is imported
    if torch is not None and isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise ValueError(f"{name} must be a CPU tensor, got a tensor on {x.device}; call .cpu() first")
        return x.detach().numpy()
    raise TypeError(f"{name} must be a numpy array or a CPU torch tensor, got {type(x).__name__}")


def as_int32(x, name: str) -> np.ndarray:
    """``x`` as a C-contiguous int32 numpy array of the same shape (a view when possible)."""
    arr = _to_numpy(x, name)
    if arr.dtype != np.int32:
        raise ValueError(f"{name} must have dtype int32, got {arr.dtype}")
    # not np.ascontiguousarray: it turns 0-d arrays into 1-d ones
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def as_float64(x, name: str) -> np.ndarray:
    """``x`` (floating point; lists allowed: this is for table construction, not coding)
    as a C-contiguous float64 numpy array."""
    arr = np.asarray(x, dtype=np.float64) if isinstance(x, (list, tuple)) else _to_numpy(x, name)
    if arr.dtype.kind != "f":
        raise ValueError(f"{name} must have a floating-point dtype, got {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def resolve_threads(threads) -> int:
    """``None`` -> all usable cores; otherwise a positive int."""
    if threads is None:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            return max(1, os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be a positive int or None, got {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1 (or None for all cores), got {threads}")
    return int(threads)
