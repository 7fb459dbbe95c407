"""Test helpers: verbose closeness assertions, the kernel-vs-reference tolerance rule, and
independent autograd oracles for the straight-through and bound rules."""

from __future__ import annotations

import math

import torch

# Per-dtype absolute and relative tolerances of the kernel-vs-reference rule. The relative
# term (not in the bare rule) covers gradients of size ~1e3, where float32 formulas that
# differ by a few ulps (erf vs erfc forms, x_lo + k vs (a + 0.5) k) differ by ~1e-3.
ATOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2, torch.float64: 1e-10}
RTOL = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2, torch.float64: 1e-10}


def assert_verbose_allclose(
    actual: torch.Tensor,
    expected: torch.Tensor,
    atol: float | torch.Tensor = 0.0,
    rtol: float = 0.0,
    name: str = "tensor",
    max_report: int = 5,
) -> None:
    """Like ``torch.testing.assert_close`` (NaN equals NaN, infinities must match), but the
    message lists the number of mismatches and the worst ones with their indices.

    ``atol`` may be a tensor (a per-element tolerance).
    """
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    actual64, expected64 = actual.detach().double().cpu(), expected.detach().double().cpu()
    atol64 = atol.detach().double().cpu() if isinstance(atol, torch.Tensor) else torch.tensor(float(atol))
    both_nan = actual64.isnan() & expected64.isnan()
    same_inf = actual64.isinf() & (actual64 == expected64)
    error = (actual64 - expected64).abs()
    allowed = atol64 + rtol * expected64.abs()
    bad = ~(both_nan | same_inf | (error <= allowed))
    if not bool(bad.any()):
        return
    count = int(bad.sum())
    excess = torch.where(bad, (error - allowed).nan_to_num(nan=math.inf), torch.full_like(error, -math.inf))
    worst = excess.reshape(-1).argsort(descending=True)[: min(max_report, count)]
    lines = []
    for flat in worst.tolist():
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), actual.shape)) if actual.dim() else ()
        lines.append(
            f"  at {index}: actual {actual64.reshape(-1)[flat].item()!r}, expected {expected64.reshape(-1)[flat].item()!r}, "
            f"allowed error {allowed.expand_as(error).reshape(-1)[flat].item():.3g}"
        )
    raise AssertionError(
        f"{name}: {count} of {actual.numel()} elements differ beyond tolerance "
        f"(max abs error {error[bad].max().item():.3g}); worst:\n" + "\n".join(lines)
    )


def assert_within_rule(
    kernel: torch.Tensor,
    ref_fp32: torch.Tensor,
    ref_dtype: torch.Tensor,
    dtype: torch.dtype,
    name: str = "tensor",
) -> None:
    """The kernel-vs-reference rule: ``|kernel - ref_fp32| <= 2 |ref_dtype - ref_fp32| +
    atol(dtype) + rtol(dtype) |ref_fp32|``.

    ``ref_fp32``: the reference on the same input values in float32; ``ref_dtype``: the
    reference computed in ``dtype`` (its rounding error is what the kernel may double).
    Where ``ref_dtype`` is not finite its deviation gives no slack.
    """
    deviation = (ref_dtype.double() - ref_fp32.double()).abs()
    deviation = torch.where(deviation.isfinite(), deviation, torch.zeros_like(deviation))
    assert_verbose_allclose(
        kernel, ref_fp32, atol=2 * deviation + ATOL[dtype], rtol=RTOL[dtype], name=f"{name} ({dtype})"
    )


# --------------------------------------------------------------------------------------
# independent oracles (plain autograd, float64), written without the library's code
# --------------------------------------------------------------------------------------
class _LowerBound(torch.autograd.Function):
    """max(x, bound); the gradient passes where x >= bound or where it is negative."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.clamp_min(x, bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes, None


def _round_ste(x):
    # The residual's bin: k = floor(r + 1/2), the coder's bijective map (straight-through).
    rounded = torch.floor(x + 0.5)
    return x + (rounded - x).detach()


def _phi_cdf(x):
    return 0.5 * torch.special.erfc(-x / math.sqrt(2.0))


def _raw_likelihood(residual, scales, scale_bound):
    a = residual.abs()
    s = _LowerBound.apply(scales, scale_bound)
    return _phi_cdf((0.5 - a) / s) - _phi_cdf((-0.5 - a) / s)


def oracle_likelihood(y, scales, means=None, scale_bound=0.11, likelihood_bound=1e-9, round_residual=True, mode="ste"):
    """Differentiable likelihood with the library's documented gradient rules.

    ``mode="ste"``: straight-through rounding of the residual. ``"smooth"``: value at the
    rounded residual, gradient of the continuous likelihood at the unrounded one.
    """
    residual = y - means if means is not None else y
    if not round_residual or mode == "ste":
        r = _round_ste(residual) if round_residual else residual
        return _LowerBound.apply(_raw_likelihood(r, scales, scale_bound), likelihood_bound)
    continuous = _LowerBound.apply(_raw_likelihood(residual, scales, scale_bound), likelihood_bound)
    rounded = _LowerBound.apply(_raw_likelihood(_round_ste(residual), scales, scale_bound), likelihood_bound)
    return continuous + (rounded - continuous).detach()


def oracle_bits(y, scales, means=None, scale_bound=0.11, likelihood_bound=1e-9, round_residual=True, mode="ste"):
    """Per-element bits whose gradient is the library's: for ``"smooth"``, the gradient of
    the continuous rate ``-log2 p(r)`` at the unrounded residual."""
    if mode == "ste" or not round_residual:
        return -torch.log2(oracle_likelihood(y, scales, means, scale_bound, likelihood_bound, round_residual, "ste"))
    residual = y - means if means is not None else y
    continuous = -torch.log2(_LowerBound.apply(_raw_likelihood(residual, scales, scale_bound), likelihood_bound))
    rounded = -torch.log2(_LowerBound.apply(_raw_likelihood(_round_ste(residual), scales, scale_bound), likelihood_bound))
    return continuous + (rounded - continuous).detach()


def float64_bits(y, scales, means=None, scale_bound=0.11, likelihood_bound=1e-9, round_residual=True):
    """Bits per element in float64 with the erfc form. The residual is formed in the inputs'
    dtype (as the library does) so that both sides round it to the same bin."""
    residual = (y - means if means is not None else y).double()
    a = torch.floor(residual + 0.5).abs() if round_residual else residual.abs()
    s = scales.double().clamp_min(scale_bound)
    c = math.sqrt(0.5)
    p = 0.5 * (torch.special.erfc((a - 0.5) * c / s) - torch.special.erfc((a + 0.5) * c / s))
    return -torch.log2(p.clamp_min(likelihood_bound))


def gaussian_inputs(shape, dtype=torch.float32, device="cpu", scale_range=(0.05, 40.0), spread=1.0, generator=None):
    """Integer-valued latents ``y`` around ``means`` with log-uniform ``scales``; ``spread``
    widens the residuals (``> 1`` reaches the tails)."""
    low, high = math.log(scale_range[0]), math.log(scale_range[1])
    scales = torch.empty(shape).uniform_(low, high, generator=generator).exp_()
    means = torch.randn(shape, generator=generator) * 3
    y = torch.round(means + spread * scales * torch.randn(shape, generator=generator))
    return tuple(t.to(device=device, dtype=dtype) for t in (y, scales, means))
