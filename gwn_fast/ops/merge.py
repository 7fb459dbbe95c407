"""``gwn_fast::match_merge``: match-and-merge with the fused alignment loss, as a
``torch.library`` custom op with a registered autograd and fake (meta) implementations."""

from __future__ import annotations

import torch

from gwn_fast.ops import reference
from gwn_fast.ops._dispatch import kernel_module, use_triton

__all__ = ["match_merge", "match_merge_backward"]


@torch.library.custom_op("gwn_fast::match_merge", mutates_args=())
def match_merge(c1: torch.Tensor, c2: torch.Tensor, quantize: bool, impl: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y0, align)`` of :func:`gwn_fast.functional.match_merge`; ``impl`` is a backend name."""
    if use_triton(impl, c1):
        return kernel_module("merge").match_merge_forward(c1, c2, quantize)
    return reference.match_merge_ref(c1, c2, quantize)


@match_merge.register_fake
def _(c1, c2, quantize, impl):
    return c1.new_empty(c1.shape), c1.new_empty((), dtype=torch.promote_types(c1.dtype, torch.float32))


@torch.library.custom_op("gwn_fast::match_merge_backward", mutates_args=())
def match_merge_backward(
    grad_y0: torch.Tensor, grad_align: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, quantize: bool, impl: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grad_c1, grad_c2)`` of :func:`match_merge` (straight-through, mask without gradient)."""
    if use_triton(impl, c1):
        return kernel_module("merge").match_merge_backward(grad_y0, grad_align, c1, c2, quantize)
    return reference.match_merge_backward_ref(grad_y0, grad_align, c1, c2, quantize)


@match_merge_backward.register_fake
def _(grad_y0, grad_align, c1, c2, quantize, impl):
    return c1.new_empty(c1.shape), c2.new_empty(c2.shape)


def _setup_context(ctx, inputs, output):
    c1, c2, quantize, impl = inputs
    ctx.save_for_backward(c1, c2)
    ctx.quantize, ctx.impl = quantize, impl


def _backward(ctx, grad_y0, grad_align):
    c1, c2 = ctx.saved_tensors
    grad_c1, grad_c2 = match_merge_backward(grad_y0, grad_align, c1, c2, ctx.quantize, ctx.impl)
    return grad_c1, grad_c2, None, None


match_merge.register_autograd(_backward, setup_context=_setup_context)
