"""Launch helpers shared by the kernels: block sizes, contiguity, device context, and a
deterministic two-stage sum.

Determinism: every reduction here writes one float32 partial per program and then sums
the partials of a row in a fixed order with :func:`sum_partials`. No float atomics, and
the block sizes are constants (no autotuning), so the order of additions, and hence the
bits of the result, is the same on every run.
"""

from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

__all__ = [
    "ELEMENTWISE_BLOCK",
    "REDUCE_BLOCK",
    "SUM_PARTIALS_BLOCK",
    "device_context",
    "ensure_contiguous",
    "num_warps_for",
    "round_half_toward_zero",
    "sum_partials",
]

# Elements per program of the element-wise kernels (8 per thread with 4 warps).
ELEMENTWISE_BLOCK = 1024
# Elements per program of the fused reductions (one float32 partial each). Fixed: the
# partial layout, and so the summation order, must not depend on anything but the shape.
REDUCE_BLOCK = 2048
# Partials summed per step by the second stage.
SUM_PARTIALS_BLOCK = 1024


def num_warps_for(block: int) -> int:
    """Warps per program: 4 up to 2048 elements per program, 8 above (<= 16 per thread)."""
    return 4 if block <= 2048 else 8


def ensure_contiguous(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor itself if contiguous, else a contiguous copy (kernels index flat memory)."""
    return tensor if tensor.is_contiguous() else tensor.contiguous()


def device_context(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Make ``tensor``'s GPU the current one for the launch (Triton launches on the current
    device); a no-op for CPU tensors (interpreter)."""
    if tensor.device.type == "cuda":
        return torch.cuda.device(tensor.device)
    return contextlib.nullcontext()


@triton.jit
def round_half_toward_zero(x):
    """``sign(x) * ceil(|x| - 0.5)``: the paper's quantizer (ties go toward zero)."""
    magnitude = tl.math.ceil(tl.abs(x) - 0.5)
    return tl.where(x < 0, -magnitude, magnitude)


@triton.jit
def _sum_partials_kernel(partials_ptr, out_ptr, num_partials, BLOCK: tl.constexpr):
    # One program per row; the row's partials are added in a fixed order: a vector
    # accumulator over consecutive tiles, then one tree reduction of the accumulator.
    row = tl.program_id(0).to(tl.int64)
    base = partials_ptr + row * num_partials
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, num_partials, BLOCK):
        offsets = start + tl.arange(0, BLOCK)
        acc += tl.load(base + offsets, mask=offsets < num_partials, other=0.0)
    tl.store(out_ptr + row, tl.sum(acc, axis=0))


def sum_partials(partials: torch.Tensor) -> torch.Tensor:
    """Row sums of a contiguous float32 ``[rows, num_partials]`` tensor, deterministically.

    Returns a float32 tensor of shape ``[rows]``.
    """
    rows, num_partials = partials.shape
    out = torch.empty(rows, dtype=torch.float32, device=partials.device)
    if rows == 0:
        return out
    if num_partials == 0:
        return out.zero_()
    with device_context(partials):
        _sum_partials_kernel[(rows,)](partials, out, num_partials, BLOCK=SUM_PARTIALS_BLOCK, num_warps=4)
    return out
