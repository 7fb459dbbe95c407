"""Scale-table indexes for entropy coding, with CompressAI's semantics.

``index = (T - 1) - #{i < T - 1 : scale <= table[i]}``: for an ascending table that is the
smallest ``i`` with ``scale <= table[i]``, else the last index ``T - 1``; a NaN scale gets
the last index. Only exact comparisons are involved, so equal input scales give equal
indexes on every device.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .utils import ELEMENTWISE_BLOCK, device_context, ensure_contiguous, num_warps_for

__all__ = ["build_indexes_forward"]


@triton.jit
def _build_indexes_fwd_kernel(scales_ptr, table_ptr, indexes_ptr, n, table_len, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    # Upcasting float16/bfloat16 (scales and table alike) to float32 is exact, so the
    # comparisons are those of the input dtype.
    scales = tl.load(scales_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    at_or_below = tl.zeros([BLOCK], dtype=tl.int32)
    for i in range(0, table_len - 1):
        bound = tl.load(table_ptr + i).to(tl.float32)
        at_or_below += (scales <= bound).to(tl.int32)
    tl.store(indexes_ptr + offsets, (table_len - 1) - at_or_below, mask=mask)


def build_indexes_forward(scales: torch.Tensor, scale_table: torch.Tensor) -> torch.Tensor:
    """Triton table indexes. ``scales``: any shape ``S``; ``scale_table``: 1-D, non-empty,
    same dtype and device. Returns int32 indexes of shape ``S`` (contiguous)."""
    if scale_table.dim() != 1 or scale_table.numel() == 0:
        raise ValueError(f"scale_table must be a non-empty 1-D tensor, got shape {tuple(scale_table.shape)}")
    if scale_table.dtype != scales.dtype:
        raise TypeError(f"scale_table must have the dtype of scales ({scales.dtype}), got {scale_table.dtype}")
    if scale_table.device != scales.device:
        raise ValueError(f"scale_table must be on the device of scales ({scales.device}), got {scale_table.device}")
    scales, scale_table = ensure_contiguous(scales), ensure_contiguous(scale_table)
    indexes = torch.empty(scales.shape, dtype=torch.int32, device=scales.device)
    n = scales.numel()
    if n == 0:
        return indexes
    grid = (triton.cdiv(n, ELEMENTWISE_BLOCK),)
    with device_context(scales):
        _build_indexes_fwd_kernel[grid](
            scales, scale_table, indexes, n, scale_table.numel(), BLOCK=ELEMENTWISE_BLOCK, num_warps=num_warps_for(ELEMENTWISE_BLOCK)
        )
    return indexes
