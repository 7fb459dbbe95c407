"""Match-and-merge of the two candidate-common tensors, fused with the alignment loss.

Forward (``n`` elements, ``q = round_half_toward_zero(c)`` or ``q = c``):

    y0    = q1 where q1 == q2, else 0          (== (q1 + q2) / 2 where they match)
    align = sum((q1 - q2)^2) / n

Backward (straight-through quantizer, the match mask passes no gradient):

    dc1 = 0.5 * g_y0 * match + g_align * 2 * (q1 - q2) / n
    dc2 = 0.5 * g_y0 * match - g_align * 2 * (q1 - q2) / n

Arithmetic is float32 for float16/bfloat16/float32 inputs; ``y0`` has the inputs' dtype and
``align`` is float32. The sum is deterministic (see :mod:`.utils`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .utils import (
    ELEMENTWISE_BLOCK,
    REDUCE_BLOCK,
    device_context,
    ensure_contiguous,
    num_warps_for,
    round_half_toward_zero,
    sum_partials,
)

__all__ = ["match_merge_backward", "match_merge_forward"]


@triton.jit
def _match_merge_fwd_kernel(c1_ptr, c2_ptr, y0_ptr, partials_ptr, n, QUANTIZE: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offsets = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    q1 = tl.load(c1_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    q2 = tl.load(c2_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if QUANTIZE:
        q1 = round_half_toward_zero(q1)
        q2 = round_half_toward_zero(q2)
    # Where they match the average is q1 itself; taking q1 avoids overflow in q1 + q2.
    y0 = tl.where(q1 == q2, q1, 0.0)
    tl.store(y0_ptr + offsets, y0.to(y0_ptr.dtype.element_ty), mask=mask)
    diff = q1 - q2
    tl.store(partials_ptr + pid, tl.sum(tl.where(mask, diff * diff, 0.0), axis=0))


@triton.jit
def _match_merge_bwd_kernel(
    c1_ptr,
    c2_ptr,
    grad_y0_ptr,
    grad_align_ptr,
    grad_c1_ptr,
    grad_c2_ptr,
    n,
    two_over_n,
    QUANTIZE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    q1 = tl.load(c1_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    q2 = tl.load(c2_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if QUANTIZE:
        q1 = round_half_toward_zero(q1)
        q2 = round_half_toward_zero(q2)
    grad_y0 = tl.load(grad_y0_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    # The scalar upstream gradient is read on the device: no host synchronisation.
    grad_align = tl.load(grad_align_ptr).to(tl.float32)
    shared = tl.where(q1 == q2, 0.5 * grad_y0, 0.0)
    pull = (grad_align * two_over_n) * (q1 - q2)
    tl.store(grad_c1_ptr + offsets, (shared + pull).to(grad_c1_ptr.dtype.element_ty), mask=mask)
    tl.store(grad_c2_ptr + offsets, (shared - pull).to(grad_c2_ptr.dtype.element_ty), mask=mask)


def _check_pair(c1: torch.Tensor, c2: torch.Tensor) -> None:
    if c1.shape != c2.shape:
        raise ValueError(f"c1 and c2 must have the same shape, got {tuple(c1.shape)} and {tuple(c2.shape)}")
    if c1.dtype != c2.dtype:
        raise TypeError(f"c1 and c2 must have the same dtype, got {c1.dtype} and {c2.dtype}")
    if c1.device != c2.device:
        raise ValueError(f"c1 and c2 must be on the same device, got {c1.device} and {c2.device}")


def match_merge_forward(c1: torch.Tensor, c2: torch.Tensor, quantize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton forward. ``c1``, ``c2``: any shape ``S``, same dtype and device.

    Returns ``(y0, align)``: ``y0`` of shape ``S`` (contiguous, the inputs' dtype), ``align``
    a float32 scalar (0 for empty inputs).
    """
    _check_pair(c1, c2)
    c1, c2 = ensure_contiguous(c1), ensure_contiguous(c2)
    n = c1.numel()
    y0 = torch.empty_like(c1, memory_format=torch.contiguous_format)
    if n == 0:
        return y0, torch.zeros((), dtype=torch.float32, device=c1.device)
    num_programs = triton.cdiv(n, REDUCE_BLOCK)
    partials = torch.empty((1, num_programs), dtype=torch.float32, device=c1.device)
    with device_context(c1):
        _match_merge_fwd_kernel[(num_programs,)](
            c1, c2, y0, partials, n, QUANTIZE=quantize, BLOCK=REDUCE_BLOCK, num_warps=num_warps_for(REDUCE_BLOCK)
        )
    align = sum_partials(partials).reshape(()) / n
    return y0, align


def match_merge_backward(
    grad_y0: torch.Tensor, grad_align: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, quantize: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton backward. ``grad_y0``: shape ``S``; ``grad_align``: a scalar tensor.

    Returns ``(grad_c1, grad_c2)``, both of shape ``S`` in the inputs' dtype.
    """
    _check_pair(c1, c2)
    if grad_y0.shape != c1.shape:
        raise ValueError(f"grad_y0 must have shape {tuple(c1.shape)}, got {tuple(grad_y0.shape)}")
    if grad_align.numel() != 1:
        raise ValueError(f"grad_align must be a scalar, got shape {tuple(grad_align.shape)}")
    c1, c2, grad_y0 = ensure_contiguous(c1), ensure_contiguous(c2), ensure_contiguous(grad_y0)
    grad_align = ensure_contiguous(grad_align.reshape(1))
    n = c1.numel()
    grad_c1 = torch.empty_like(c1, memory_format=torch.contiguous_format)
    grad_c2 = torch.empty_like(c2, memory_format=torch.contiguous_format)
    if n == 0:
        return grad_c1, grad_c2
    grid = (triton.cdiv(n, ELEMENTWISE_BLOCK),)
    with device_context(c1):
        _match_merge_bwd_kernel[grid](
            c1,
            c2,
            grad_y0,
            grad_align,
            grad_c1,
            grad_c2,
            n,
            2.0 / n,
            QUANTIZE=quantize,
            BLOCK=ELEMENTWISE_BLOCK,
            num_warps=num_warps_for(ELEMENTWISE_BLOCK),
        )
    return grad_c1, grad_c2
