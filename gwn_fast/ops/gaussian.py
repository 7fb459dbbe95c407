"""``gwn_fast::gaussian_likelihood`` and ``gwn_fast::gaussian_rate`` (the likelihood fused
with ``-log2`` and the sum) as ``torch.library`` custom ops with registered autograd and
fake (meta) implementations.

``smooth`` selects the rate gradient: False is the paper's straight-through rule (derivative
at the rounded residual), True the derivative of the continuous likelihood (or rate) at the
unrounded residual. Forward values never depend on it.

``mean_steps`` (the rate only): ``J > 1`` makes each element's bits the expected rate
over the mean's two neighbours on the ``1/J`` grid, in the same single pass (see
:func:`gwn_fast.ops.reference.gaussian_rate_ref`); 1 is the rate at the mean itself.
"""

from __future__ import annotations

import torch

from gwn_fast.ops import reference
from gwn_fast.ops._dispatch import kernel_module, use_triton

__all__ = ["gaussian_likelihood", "gaussian_likelihood_backward", "gaussian_rate", "gaussian_rate_backward"]


def _fake_grads(y, means, need_y, need_scales, need_means):
    def make(need):
        return y.new_empty(y.shape if need else (0,))

    return make(need_y), make(need_scales), make(need_means and means is not None)


# --------------------------------------------------------------------------------------
# likelihood
# --------------------------------------------------------------------------------------
@torch.library.custom_op("gwn_fast::gaussian_likelihood", mutates_args=())
def gaussian_likelihood(
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None,
    scale_bound: float,
    likelihood_bound: float,
    round_residual: bool,
    smooth: bool,
    impl: str,
) -> torch.Tensor:
    """Bounded likelihood per element (shape and dtype of ``y``); see the functional API."""
    if use_triton(impl, y):
        return kernel_module("gaussian").gaussian_likelihood_forward(
            y, scales, means, scale_bound, likelihood_bound, round_residual
        )
    return reference.gaussian_likelihood_ref(y, scales, means, scale_bound, likelihood_bound, round_residual)


@gaussian_likelihood.register_fake
def _(y, scales, means, scale_bound, likelihood_bound, round_residual, smooth, impl):
    return y.new_empty(y.shape)


@torch.library.custom_op("gwn_fast::gaussian_likelihood_backward", mutates_args=())
def gaussian_likelihood_backward(
    grad_p: torch.Tensor,
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None,
    scale_bound: float,
    likelihood_bound: float,
    round_residual: bool,
    smooth: bool,
    need_y: bool,
    need_scales: bool,
    need_means: bool,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(grad_y, grad_scales, grad_means)``; gradients not needed are empty tensors."""
    args = (y, scales, means, scale_bound, likelihood_bound, round_residual, smooth, (need_y, need_scales, need_means))
    if use_triton(impl, y):
        return kernel_module("gaussian").gaussian_likelihood_backward(grad_p, *args)
    return reference.gaussian_likelihood_backward_ref(grad_p, *args)


@gaussian_likelihood_backward.register_fake
def _(grad_p, y, scales, means, scale_bound, likelihood_bound, round_residual, smooth, need_y, need_scales, need_means, impl):
    return _fake_grads(y, means, need_y, need_scales, need_means)


def _setup_likelihood(ctx, inputs, output):
    y, scales, means, scale_bound, likelihood_bound, round_residual, smooth, impl = inputs
    ctx.save_for_backward(y, scales, means)
    ctx.options = (scale_bound, likelihood_bound, round_residual, smooth)
    ctx.impl = impl


def _backward_likelihood(ctx, grad_p):
    y, scales, means = ctx.saved_tensors
    need_y, need_scales, need_means = ctx.needs_input_grad[:3]
    grad_y, grad_scales, grad_means = gaussian_likelihood_backward(
        grad_p, y, scales, means, *ctx.options, need_y, need_scales, need_means, ctx.impl
    )
    return (
        grad_y if need_y else None,
        grad_scales if need_scales else None,
        grad_means if need_means and means is not None else None,
        None,
        None,
        None,
        None,
        None,
    )


gaussian_likelihood.register_autograd(_backward_likelihood, setup_context=_setup_likelihood)


# --------------------------------------------------------------------------------------
# rate: -log2(likelihood) summed, the likelihood never stored
# --------------------------------------------------------------------------------------
@torch.library.custom_op("gwn_fast::gaussian_rate", mutates_args=())
def gaussian_rate(
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None,
    scale_bound: float,
    likelihood_bound: float,
    round_residual: bool,
    smooth: bool,
    per_batch: bool,
    mean_steps: int,
    latent: torch.Tensor | None,
    impl: str,
) -> torch.Tensor:
    """Total bits (a scalar), or bits per sample ``[B]`` when ``per_batch``; float32 or wider.

    ``latent`` (``"smooth"`` with the encoder's unrounded output, shape of ``y``) changes
    only the backward: the latent gets the continuous rate's gradient, ``y`` none (see
    :func:`gwn_fast.ops.reference.gaussian_rate_backward_ref`). The value is always at ``y``."""
    if use_triton(impl, y):
        return kernel_module("gaussian").gaussian_rate_forward(
            y, scales, means, scale_bound, likelihood_bound, round_residual, per_batch, mean_steps=mean_steps
        )
    return reference.gaussian_rate_ref(
        y, scales, means, scale_bound, likelihood_bound, round_residual, per_batch, mean_steps=mean_steps
    )


@gaussian_rate.register_fake
def _(y, scales, means, scale_bound, likelihood_bound, round_residual, smooth, per_batch, mean_steps, latent, impl):
    shape = (y.shape[0],) if per_batch else ()
    return y.new_empty(shape, dtype=torch.promote_types(y.dtype, torch.float32))


@torch.library.custom_op("gwn_fast::gaussian_rate_backward", mutates_args=())
def gaussian_rate_backward(
    grad_bits: torch.Tensor,
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None,
    scale_bound: float,
    likelihood_bound: float,
    round_residual: bool,
    smooth: bool,
    per_batch: bool,
    mean_steps: int,
    need_y: bool,
    need_scales: bool,
    need_means: bool,
    latent: torch.Tensor | None,
    impl: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(grad_y, grad_scales, grad_means)`` of :func:`gaussian_rate`; unneeded ones empty.
    With ``latent`` the first is the latent's gradient (``need_y`` asks for it)."""
    args = (
        y,
        scales,
        means,
        scale_bound,
        likelihood_bound,
        round_residual,
        smooth,
        per_batch,
        (need_y, need_scales, need_means),
    )
    if use_triton(impl, y):
        return kernel_module("gaussian").gaussian_rate_backward(grad_bits, *args, mean_steps=mean_steps, latent=latent)
    return reference.gaussian_rate_backward_ref(grad_bits, *args, mean_steps=mean_steps, latent=latent)


@gaussian_rate_backward.register_fake
def _(
    grad_bits,
    y,
    scales,
    means,
    scale_bound,
    likelihood_bound,
    round_residual,
    smooth,
    per_batch,
    mean_steps,
    need_y,
    need_scales,
    need_means,
    latent,
    impl,
):
    return _fake_grads(y, means, need_y, need_scales, need_means)


def _setup_rate(ctx, inputs, output):
    y, scales, means, scale_bound, likelihood_bound, round_residual, smooth, per_batch, mean_steps, latent, impl = inputs
    ctx.save_for_backward(y, scales, means, latent)
    ctx.options = (scale_bound, likelihood_bound, round_residual, smooth, per_batch, mean_steps)
    ctx.impl = impl


def _backward_rate(ctx, grad_bits):
    y, scales, means, latent = ctx.saved_tensors
    need_y, need_scales, need_means = ctx.needs_input_grad[:3]
    # With a latent, the first gradient is the latent's and y gets none.
    need_first = ctx.needs_input_grad[9] if latent is not None else need_y
    grad_first, grad_scales, grad_means = gaussian_rate_backward(
        grad_bits, y, scales, means, *ctx.options, need_first, need_scales, need_means, latent, ctx.impl
    )
    return (
        grad_first if need_y and latent is None else None,
        grad_scales if need_scales else None,
        grad_means if need_means and means is not None else None,
        None,
        None,
        None,
        None,
        None,
        None,
        grad_first if latent is not None and need_first else None,
        None,
    )


gaussian_rate.register_autograd(_backward_rate, setup_context=_setup_rate)
