"""``gwn_fast::build_indexes``: scale-table indexes (CompressAI's semantics), as a
``torch.library`` custom op with a fake (meta) implementation. Integer output: no autograd."""

from __future__ import annotations

import torch

from gwn_fast.ops import reference
from gwn_fast.ops._dispatch import kernel_module, use_triton

__all__ = ["build_indexes"]


@torch.library.custom_op("gwn_fast::build_indexes", mutates_args=())
def build_indexes(scales: torch.Tensor, scale_table: torch.Tensor, impl: str) -> torch.Tensor:
    """int32 table index per scale (shape of ``scales``); see the functional API."""
    if use_triton(impl, scales):
        return kernel_module("indexes").build_indexes_forward(scales, scale_table)
    return reference.build_indexes_ref(scales, scale_table)


@build_indexes.register_fake
def _(scales, scale_table, impl):
    return scales.new_empty(scales.shape, dtype=torch.int32)
