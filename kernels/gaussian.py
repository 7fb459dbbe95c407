"""Conditional Gaussian likelihood of integer bins, and its rate fused with the reduction.

For each element, with the residual ``r = y - mean`` (or ``y`` without means), its
magnitude ``a = |floor(r + 1/2)|`` (``|r|`` when ``ROUND`` is off; ``floor(r + 1/2)`` is
the coder's bin map, a bijection between integer ``y`` and bins for any mean, so the
likelihood sums to 1 over the integers) and the bounded scale ``s = max(scale, scale_bound)``:

    mass = Phi((0.5 - a) / s) - Phi((-0.5 - a) / s)
    p    = max(mass, likelihood_bound)            bits = -log2(p)

Bounds follow CompressAI's LowerBound gradient rule: the gradient passes where
``x >= bound`` or where the gradient arriving at the bound is negative. Both bounds keep
NaN (``x < bound`` is False for NaN), so a NaN in any input of an element gives NaN for
that element's value and gradients.

Numerics (float32 throughout, inputs of any float dtype are upcast on load). With
``x_lo = (a - 0.5) / (s sqrt 2)`` and ``x_hi = (a + 0.5) / (s sqrt 2)``, ``mass =
(erfc(x_lo) - erfc(x_hi)) / 2``: CompressAI's form, where both erfc arguments grow with
``|r|`` so the tails are small numbers computed relative to themselves (no ``1 - Phi``).

- erfc is our own approximation for ``x >= 0`` (:func:`_erfc_nonnegative`, relative
  error < 6e-7), with ``erfc(-x) = 2 - erfc(x)`` for the central bin. Triton's interpreter
  has no libdevice ``erfc``, and one formula per bin edge keeps the GPU kernels lean.
- Narrow bins, ``s >= 8``: the difference of two erfc values of similar size would cancel
  (about ``s * 1e-7`` relative: 2e-4 bits at ``s = 1000``), so the mass is the midpoint
  expansion ``w phi(m) (1 + w^2 He2(m)/24 + w^4 He4(m)/1920)``, ``w = 1/s``, ``m = a/s``,
  truncated below 1e-6 relative wherever the mass exceeds 1e-10.

The rate backward divides by the *bounded* ``p``, so it stays finite where the float32
mass underflows to 0.

Mean grid (the rate kernels' ``MEAN_GRID``, ``mean_steps = J > 1``): each element's bits
are the expected rate over its mean's two neighbours on the ``1/J`` grid, ``(1 - t)
b(floor(J mu)/J) + t b((floor(J mu) + 1)/J)`` with ``t = J mu - floor(J mu)``, both
evaluated in registers in the same pass. The backward gives ``y`` and the scale the
``t``-weighted mix of the two rates' gradients (each with its own bound rules) and the
mean ``J (b_above - b_below)`` (the grid points are constants).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .utils import ELEMENTWISE_BLOCK, REDUCE_BLOCK, device_context, ensure_contiguous, num_warps_for, sum_partials

__all__ = [
    "gaussian_likelihood_backward",
    "gaussian_likelihood_forward",
    "gaussian_rate_backward",
    "gaussian_rate_forward",
]

_SQRT_HALF = tl.constexpr(0.7071067811865476)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)
_INV_SQRT_PI = tl.constexpr(0.5641895835477563)
_LN2 = tl.constexpr(0.6931471805599453)
# Bounded scales from here on use the midpoint expansion (see the module docstring). Below
# it the erfc difference loses at most ~1e-5 relative with our float32 erfc.
_SERIES_MIN_SCALE = tl.constexpr(8.0)
# Residual magnitudes are capped here in the derivative so that u * phi(u) stays 0 rather
# than inf * 0 for infinite residuals.
_MAX_MAGNITUDE = tl.constexpr(1e30)


@triton.jit
def _lower_bound(x, bound):
    # max(x, bound) that keeps NaN: NaN < bound is False.
    return tl.where(x < bound, bound, x)


@triton.jit
def _erfc_nonnegative(x):
    # erfc(x) for x >= 0 as t * exp(P(t) - x^2), t = 1 / (1 + x/2). P (degree 11) was fitted
    # by us, by weighted least squares in float64, to log(erfcx(x) / t) over [0, 1e4]
    # (max error 9e-9). In float32 the relative error is < 6e-7 for x < 2 and < 4e-6 up to
    # x = 6, beyond which the mass is far below any likelihood bound. One formula for all
    # x >= 0 means one evaluation per bin edge, no per-branch work (GPU lanes would run
    # every branch of a where()).
    t = 1.0 / (1.0 + 0.5 * x)
    poly = -0.17310123145580292
    poly = poly * t + 0.9590743184089661
    poly = poly * t - 2.125170946121216
    poly = poly * t + 2.2862579822540283
    poly = poly * t - 1.1264821290969849
    poly = poly * t + 0.2791471481323242
    poly = poly * t - 0.21283754706382751
    poly = poly * t - 0.07962051033973694
    poly = poly * t + 0.08327360451221466
    poly = poly * t + 0.3749699890613556
    poly = poly * t + 1.0000014305114746
    poly = poly * t - 1.2655121088027954
    return t * tl.exp(poly - x * x)


@triton.jit
def _bin_mass(a, s):
    # Phi((0.5 - a) / s) - Phi((-0.5 - a) / s) for a >= 0 and s > 0, float32.
    inv_s = 1.0 / s
    k = _SQRT_HALF * inv_s
    x_lo = (a - 0.5) * k
    x_hi = (a + 0.5) * k  # > 0
    # erfc(x_lo) for either sign: erfc(-x) = 2 - erfc(x). With x_lo < 0 the mass is
    # 1 - (erfc(|x_lo|) + erfc(x_hi)) / 2 >= erf(1 / (16 sqrt 2)) ~ 0.05 here (s < 8).
    erfc_lo = _erfc_nonnegative(tl.abs(x_lo))
    erfc_lo = tl.where(x_lo < 0, 2.0 - erfc_lo, erfc_lo)
    mass = 0.5 * (erfc_lo - _erfc_nonnegative(x_hi))
    # Narrow bins (s >= 8): the erfc difference would cancel; use the midpoint expansion.
    # The test is per block, so blocks without narrow bins skip the expansion entirely.
    if tl.max(s, axis=0) >= _SERIES_MIN_SCALE:
        w = inv_s
        m = tl.where(a * w < 40.0, a * w, 40.0)  # phi(40) == 0 in float32: no inf * 0
        m2 = m * m
        w2 = w * w
        correction = 1.0 + w2 * ((m2 - 1.0) * (1.0 / 24.0) + w2 * (((m2 - 6.0) * m2 + 3.0) * (1.0 / 1920.0)))
        series = (w * _INV_SQRT_2PI) * tl.exp(-0.5 * m2) * correction
        mass = tl.where(s >= _SERIES_MIN_SCALE, series, mass)
    return tl.where((a != a) | (s != s), a + s, mass)


@triton.jit
def _load_residuals_and_scale(
    y_ptr, latent_ptr, scales_ptr, means_ptr, offsets, mask, HAS_MEANS: tl.constexpr, LATENT: tl.constexpr
):
    # (y - mean, latent - mean, scale), the mean loaded once; without LATENT the second is
    # the first (latent_ptr is not read).
    residual = tl.load(y_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    latent = residual
    if LATENT:
        latent = tl.load(latent_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if HAS_MEANS:
        mean = tl.load(means_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        residual = residual - mean
        latent = latent - mean
    scale = tl.load(scales_ptr + offsets, mask=mask, other=1.0).to(tl.float32)
    return residual, latent, scale


@triton.jit
def _load_residual_and_scale(y_ptr, scales_ptr, means_ptr, offsets, mask, HAS_MEANS: tl.constexpr):
    residual, _, scale = _load_residuals_and_scale(y_ptr, y_ptr, scales_ptr, means_ptr, offsets, mask, HAS_MEANS, False)
    return residual, scale


@triton.jit
def _grid_residuals(x, low, mean_steps):
    # x minus the mean's two grid neighbours, in the order of operations of the two-pass
    # formula (J mu, floor, then low / J).
    return x - low / mean_steps, x - (low + 1.0) / mean_steps


@triton.jit
def _load_mean_grid(y_ptr, scales_ptr, means_ptr, offsets, mask, mean_steps):
    # The residuals at the mean's two grid neighbours, the upper one's weight t, the scale
    # and low = floor(J mu) (for other values' residuals, see _grid_residuals).
    y = tl.load(y_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    scaled = tl.load(means_ptr + offsets, mask=mask, other=0.0).to(tl.float32) * mean_steps
    low = tl.math.floor(scaled)
    t = scaled - low
    residual_below, residual_above = _grid_residuals(y, low, mean_steps)
    scale = tl.load(scales_ptr + offsets, mask=mask, other=1.0).to(tl.float32)
    return residual_below, residual_above, t, scale, low


@triton.jit
def _mean_grid_rate_grads(below, above, t, scale, grad_bits, scale_bound, likelihood_bound, ROUND: tl.constexpr, SMOOTH: tl.constexpr):
    # The t-weighted mix of the two neighbours' rate gradients (residual, scale), each
    # neighbour with its share of the upstream (its own bound rules), and both masses.
    grad_below, grad_scale_below, mass_below = _gaussian_grads(
        below, scale, grad_bits * (1.0 - t), scale_bound, likelihood_bound, ROUND=ROUND, SMOOTH=SMOOTH, RATE=True
    )
    grad_above, grad_scale_above, mass_above = _gaussian_grads(
        above, scale, grad_bits * t, scale_bound, likelihood_bound, ROUND=ROUND, SMOOTH=SMOOTH, RATE=True
    )
    return grad_below + grad_above, grad_scale_below + grad_scale_above, mass_below, mass_above


@triton.jit
def _likelihood(residual, scale, scale_bound, likelihood_bound, ROUND: tl.constexpr):
    if ROUND:
        magnitude = tl.abs(tl.math.floor(residual + 0.5))  # |k|, k = floor(r + 1/2): the coder's bin
    else:
        magnitude = tl.abs(residual)
    return _lower_bound(_bin_mass(magnitude, _lower_bound(scale, scale_bound)), likelihood_bound)


@triton.jit
def _row_offsets(programs_per_row, row_len, BLOCK: tl.constexpr):
    # Programs tile each row of [rows, row_len] separately (rows = 1 for whole tensors).
    pid = tl.program_id(0)
    row = pid // programs_per_row
    columns = (pid % programs_per_row).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = columns < row_len
    return row, row.to(tl.int64) * row_len + columns, mask


@triton.jit
def _gaussian_likelihood_fwd_kernel(
    y_ptr,
    scales_ptr,
    means_ptr,
    likelihood_ptr,
    n,
    scale_bound,
    likelihood_bound,
    HAS_MEANS: tl.constexpr,
    ROUND: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    residual, scale = _load_residual_and_scale(y_ptr, scales_ptr, means_ptr, offsets, mask, HAS_MEANS)
    p = _likelihood(residual, scale, scale_bound, likelihood_bound, ROUND)
    tl.store(likelihood_ptr + offsets, p.to(likelihood_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gaussian_rate_fwd_kernel(
    y_ptr,
    scales_ptr,
    means_ptr,
    partials_ptr,
    row_len,
    programs_per_row,
    scale_bound,
    likelihood_bound,
    mean_steps,
    HAS_MEANS: tl.constexpr,
    ROUND: tl.constexpr,
    MEAN_GRID: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # The likelihood never leaves registers: each program writes one partial sum of bits.
    _, offsets, mask = _row_offsets(programs_per_row, row_len, BLOCK)
    if MEAN_GRID:
        below, above, t, scale, _ = _load_mean_grid(y_ptr, scales_ptr, means_ptr, offsets, mask, mean_steps)
        bits_below = -tl.log2(_likelihood(below, scale, scale_bound, likelihood_bound, ROUND))
        bits_above = -tl.log2(_likelihood(above, scale, scale_bound, likelihood_bound, ROUND))
        bits = bits_below + t * (bits_above - bits_below)
    else:
        residual, scale = _load_residual_and_scale(y_ptr, scales_ptr, means_ptr, offsets, mask, HAS_MEANS)
        bits = -tl.log2(_likelihood(residual, scale, scale_bound, likelihood_bound, ROUND))
    tl.store(partials_ptr + tl.program_id(0), tl.sum(tl.where(mask, bits, 0.0), axis=0))


@triton.jit
def _gaussian_grads(
    residual,
    scale,
    upstream,
    scale_bound,
    likelihood_bound,
    ROUND: tl.constexpr,
    SMOOTH: tl.constexpr,
    RATE: tl.constexpr,
):
    # Gradients (w.r.t. the residual and the raw scale) of the likelihood (RATE False,
    # upstream = dL/dp per element) or of the bits (RATE True, upstream = dL/dbits).
    # "ste" differentiates at the rounded residual with the identity through the rounding;
    # "smooth" (SMOOTH) differentiates the continuous likelihood at the unrounded residual.
    # Also returns the (unbounded) mass at the magnitude the derivatives were taken at.
    if ROUND and not SMOOTH:
        magnitude = tl.abs(tl.math.floor(residual + 0.5))
    else:
        magnitude = tl.abs(residual)
    s = _lower_bound(scale, scale_bound)
    mass = _bin_mass(magnitude, s)
    if RATE:
        grad_mass = -upstream / (_LN2 * _lower_bound(mass, likelihood_bound))
    else:
        grad_mass = upstream
    grad_mass = tl.where((mass < likelihood_bound) & (grad_mass >= 0.0), 0.0, grad_mass)

    capped = tl.where(magnitude > _MAX_MAGNITUDE, _MAX_MAGNITUDE, magnitude)
    inv_s = 1.0 / s
    k = _SQRT_HALF * inv_s
    x_lo = (capped - 0.5) * k  # = -u / sqrt(2), u = (0.5 - a) / s
    x_hi = (capped + 0.5) * k  # = -l / sqrt(2), l = (-0.5 - a) / s
    e_lo = tl.exp(-x_lo * x_lo)  # = sqrt(2 pi) phi(u)
    e_hi = tl.exp(-x_hi * x_hi)  # = sqrt(2 pi) phi(l)
    dmass_da = (e_hi - e_lo) * (_INV_SQRT_2PI * inv_s)  # (phi(l) - phi(u)) / s
    dmass_ds = (x_lo * e_lo - x_hi * e_hi) * (_INV_SQRT_PI * inv_s)  # (l phi(l) - u phi(u)) / s

    sign = tl.where(residual > 0, 1.0, tl.where(residual < 0, -1.0, 0.0))
    grad_residual = grad_mass * dmass_da * sign
    grad_scale = grad_mass * dmass_ds
    grad_scale = tl.where((scale < scale_bound) & (grad_scale >= 0.0), 0.0, grad_scale)
    return grad_residual, grad_scale, mass


@triton.jit
def _store_grads(
    grad_residual,
    grad_scale,
    grad_mean,
    grad_y_ptr,
    grad_scales_ptr,
    grad_means_ptr,
    offsets,
    mask,
    NEED_Y: tl.constexpr,
    NEED_SCALES: tl.constexpr,
    NEED_MEANS: tl.constexpr,
):
    if NEED_Y:
        tl.store(grad_y_ptr + offsets, grad_residual.to(grad_y_ptr.dtype.element_ty), mask=mask)
    if NEED_SCALES:
        tl.store(grad_scales_ptr + offsets, grad_scale.to(grad_scales_ptr.dtype.element_ty), mask=mask)
    if NEED_MEANS:
        tl.store(grad_means_ptr + offsets, grad_mean.to(grad_means_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gaussian_likelihood_bwd_kernel(
    grad_p_ptr,
    y_ptr,
    scales_ptr,
    means_ptr,
    grad_y_ptr,
    grad_scales_ptr,
    grad_means_ptr,
    n,
    scale_bound,
    likelihood_bound,
    HAS_MEANS: tl.constexpr,
    ROUND: tl.constexpr,
    SMOOTH: tl.constexpr,
    NEED_Y: tl.constexpr,
    NEED_SCALES: tl.constexpr,
    NEED_MEANS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    residual, scale = _load_residual_and_scale(y_ptr, scales_ptr, means_ptr, offsets, mask, HAS_MEANS)
    grad_p = tl.load(grad_p_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    grad_residual, grad_scale, _ = _gaussian_grads(
        residual, scale, grad_p, scale_bound, likelihood_bound, ROUND=ROUND, SMOOTH=SMOOTH, RATE=False
    )
    _store_grads(
        grad_residual, grad_scale, -grad_residual, grad_y_ptr, grad_scales_ptr, grad_means_ptr, offsets, mask, NEED_Y, NEED_SCALES, NEED_MEANS
    )


@triton.jit
def _gaussian_rate_bwd_kernel(
    grad_bits_ptr,
    y_ptr,
    scales_ptr,
    means_ptr,
    latent_ptr,
    grad_y_ptr,
    grad_scales_ptr,
    grad_means_ptr,
    row_len,
    programs_per_row,
    scale_bound,
    likelihood_bound,
    mean_steps,
    HAS_MEANS: tl.constexpr,
    ROUND: tl.constexpr,
    SMOOTH: tl.constexpr,
    MEAN_GRID: tl.constexpr,
    LATENT: tl.constexpr,
    NEED_Y: tl.constexpr,
    NEED_SCALES: tl.constexpr,
    NEED_MEANS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Recomputes the likelihood from the inputs: it is never stored, forward or backward.
    # LATENT ("smooth" with the encoder's unrounded output): scales and means get the exact
    # rate's gradients at y, and grad_y_ptr receives the latent's, the continuous rate's
    # derivative at latent - mean (no binning).
    row, offsets, mask = _row_offsets(programs_per_row, row_len, BLOCK)
    grad_bits = tl.load(grad_bits_ptr + row).to(tl.float32)  # one upstream value per row
    if MEAN_GRID:
        below, above, t, scale, low = _load_mean_grid(y_ptr, scales_ptr, means_ptr, offsets, mask, mean_steps)
        grad_residual, grad_scale, mass_below, mass_above = _mean_grid_rate_grads(
            below, above, t, scale, grad_bits, scale_bound, likelihood_bound, ROUND=ROUND, SMOOTH=SMOOTH
        )
        grad_mean = grad_residual  # a placeholder where NEED_MEANS is off
        if NEED_MEANS:
            # d/d mu of b_below + t (b_above - b_below): J (b_above - b_below), with the
            # values at the rounded residual also where "smooth" differentiated unrounded.
            if ROUND and SMOOTH:
                p_below = _likelihood(below, scale, scale_bound, likelihood_bound, ROUND)
                p_above = _likelihood(above, scale, scale_bound, likelihood_bound, ROUND)
            else:
                p_below = _lower_bound(mass_below, likelihood_bound)
                p_above = _lower_bound(mass_above, likelihood_bound)
            grad_mean = (tl.log2(p_below) - tl.log2(p_above)) * grad_bits * mean_steps
        if LATENT:
            latent = tl.load(latent_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            below, above = _grid_residuals(latent, low, mean_steps)
            grad_residual, _, _, _ = _mean_grid_rate_grads(
                below, above, t, scale, grad_bits, scale_bound, likelihood_bound, ROUND=False, SMOOTH=False
            )
    else:
        residual, latent_residual, scale = _load_residuals_and_scale(
            y_ptr, latent_ptr, scales_ptr, means_ptr, offsets, mask, HAS_MEANS, LATENT
        )
        grad_residual, grad_scale, _ = _gaussian_grads(
            residual, scale, grad_bits, scale_bound, likelihood_bound, ROUND=ROUND, SMOOTH=SMOOTH, RATE=True
        )
        grad_mean = -grad_residual
        if LATENT:
            grad_residual, _, _ = _gaussian_grads(
                latent_residual, scale, grad_bits, scale_bound, likelihood_bound, ROUND=False, SMOOTH=False, RATE=True
            )
    _store_grads(
        grad_residual, grad_scale, grad_mean, grad_y_ptr, grad_scales_ptr, grad_means_ptr, offsets, mask, NEED_Y, NEED_SCALES, NEED_MEANS
    )


# --------------------------------------------------------------------------------------
# launchers
# --------------------------------------------------------------------------------------
def _check_inputs(y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None, latent: torch.Tensor | None = None) -> None:
    for name, tensor in (("scales", scales), ("means", means), ("latent", latent)):
        if tensor is None:
            continue
        if tensor.shape != y.shape:
            raise ValueError(f"{name} must have the shape of y {tuple(y.shape)}, got {tuple(tensor.shape)}")
        if tensor.dtype != y.dtype:
            raise TypeError(f"{name} must have the dtype of y ({y.dtype}), got {tensor.dtype}")
        if tensor.device != y.device:
            raise ValueError(f"{name} must be on the device of y ({y.device}), got {tensor.device}")


def _rows(y: torch.Tensor, per_batch: bool) -> tuple[int, int]:
    """(rows, row_len) of the reduction layout: one row per sample, or one row in all."""
    if not per_batch:
        return 1, y.numel()
    if y.dim() == 0:
        raise ValueError("reduction='batch' needs y with a batch dimension, got a 0-d tensor")
    rows = y.shape[0]
    return rows, (y.numel() // rows if rows else 0)


def _grad_buffers(y: torch.Tensor, needs: tuple[bool, bool, bool]) -> list[torch.Tensor]:
    # Gradients that are not needed come back as empty tensors and are never written.
    return [torch.empty_like(y, memory_format=torch.contiguous_format) if need else y.new_empty(0) for need in needs]


def gaussian_likelihood_forward(
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None,
    scale_bound: float,
    likelihood_bound: float,
    round_residual: bool,
) -> torch.Tensor:
    """Triton forward. ``y``, ``scales``, ``means`` (optional): one shape ``S``, one dtype.

    Returns the bounded likelihood, shape ``S``, contiguous, in ``y``'s dtype.
    """
    _check_inputs(y, scales, means)
    y, scales = ensure_contiguous(y), ensure_contiguous(scales)
    means = ensure_contiguous(means) if means is not None else None
    n = y.numel()
    likelihood = torch.empty_like(y, memory_format=torch.contiguous_format)
    if n == 0:
        return likelihood
    grid = (triton.cdiv(n, ELEMENTWISE_BLOCK),)
    with device_context(y):
        _gaussian_likelihood_fwd_kernel[grid](
            y,
            scales,
            means if means is not None else y,
            likelihood,
            n,
            float(scale_bound),
            float(likelihood_bound),
            HAS_MEANS=means is not None,
            ROUND=round_residual,
            BLOCK=ELEMENTWISE_BLOCK,
            num_warps=num_warps_for(ELEMENTWISE_BLOCK),
        )
    return likelihood


def gaussian_likelihood_backward(
    grad_p: torch.Tensor,
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None,
    scale_bound: float,
    likelihood_bound: float,
    round_residual: bool,
    smooth: bool,
    needs: tuple[bool, bool, bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton backward of :func:`gaussian_likelihood_forward`. ``grad_p``: shape ``S``.

    ``needs``: which of ``(grad_y, grad_scales, grad_means)`` to compute; the others come
    back as empty tensors. Computed gradients have shape ``S`` and ``y``'s dtype.
    """
    _check_inputs(y, scales, means)
    if grad_p.shape != y.shape:
        raise ValueError(f"grad_p must have the shape of y {tuple(y.shape)}, got {tuple(grad_p.shape)}")
    needs = (needs[0], needs[1], needs[2] and means is not None)
    y, scales, grad_p = ensure_contiguous(y), ensure_contiguous(scales), ensure_contiguous(grad_p)
    means = ensure_contiguous(means) if means is not None else None
    grad_y, grad_scales, grad_means = _grad_buffers(y, needs)
    n = y.numel()
    if n == 0 or not any(needs):
        return grad_y, grad_scales, grad_means
    grid = (triton.cdiv(n, ELEMENTWISE_BLOCK),)
    with device_context(y):
        _gaussian_likelihood_bwd_kernel[grid](
            grad_p,
            y,
            scales,
            means if means is not None else y,
            grad_y if needs[0] else y,
            grad_scales if needs[1] else y,
            grad_means if needs[2] else y,
            n,
            float(scale_bound),
            float(likelihood_bound),
            HAS_MEANS=means is not None,
            ROUND=round_residual,
            SMOOTH=smooth,
            NEED_Y=needs[0],
            NEED_SCALES=needs[1],
            NEED_MEANS=needs[2],
            BLOCK=ELEMENTWISE_BLOCK,
            num_warps=num_warps_for(ELEMENTWISE_BLOCK),
        )
    return grad_y, grad_scales, grad_means


def gaussian_rate_forward(
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None,
    scale_bound: float,
    likelihood_bound: float,
    round_residual: bool,
    per_batch: bool,
    mean_steps: int = 1,
) -> torch.Tensor:
    """Triton fused ``sum(-log2(likelihood))``; the likelihood is never written to memory.

    Returns float32 bits: a scalar, or shape ``[B]`` (``B = y.shape[0]``) when
    ``per_batch``. Deterministic: fixed per-program partials, summed in a fixed order.
    ``mean_steps = J > 1`` (with ``means``): the expected rate over the mean's two
    neighbours on the ``1/J`` grid (the module docstring); without means it changes nothing.
    """
    _check_inputs(y, scales, means)
    rows, row_len = _rows(y, per_batch)
    y, scales = ensure_contiguous(y), ensure_contiguous(scales)
    means = ensure_contiguous(means) if means is not None else None
    programs_per_row = triton.cdiv(row_len, REDUCE_BLOCK)
    partials = torch.empty((rows, programs_per_row), dtype=torch.float32, device=y.device)
    if partials.numel():
        with device_context(y):
            _gaussian_rate_fwd_kernel[(rows * programs_per_row,)](
                y,
                scales,
                means if means is not None else y,
                partials,
                row_len,
                programs_per_row,
                float(scale_bound),
                float(likelihood_bound),
                float(mean_steps),
                HAS_MEANS=means is not None,
                ROUND=round_residual,
                MEAN_GRID=mean_steps > 1 and means is not None,
                BLOCK=REDUCE_BLOCK,
                num_warps=num_warps_for(REDUCE_BLOCK),
            )
    bits = sum_partials(partials)
    return bits if per_batch else bits.reshape(())


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
    needs: tuple[bool, bool, bool],
    mean_steps: int = 1,
    latent: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triton backward of :func:`gaussian_rate_forward`. ``grad_bits``: a scalar, or ``[B]``
    when ``per_batch``. ``needs`` as in :func:`gaussian_likelihood_backward`;
    ``mean_steps`` as in the forward. ``latent`` (shape and dtype of ``y``): the first
    gradient is the latent's (see :func:`gwn_fast.ops.reference.gaussian_rate_backward_ref`)."""
    _check_inputs(y, scales, means, latent)
    latent = ensure_contiguous(latent) if latent is not None else None
    rows, row_len = _rows(y, per_batch)
    if grad_bits.numel() != rows:
        raise ValueError(f"grad_bits must have {rows} element(s), got shape {tuple(grad_bits.shape)}")
    needs = (needs[0], needs[1], needs[2] and means is not None)
    y, scales = ensure_contiguous(y), ensure_contiguous(scales)
    means = ensure_contiguous(means) if means is not None else None
    grad_bits = ensure_contiguous(grad_bits.reshape(rows).to(torch.float32))
    grad_y, grad_scales, grad_means = _grad_buffers(y, needs)
    programs_per_row = triton.cdiv(row_len, ELEMENTWISE_BLOCK)
    if rows * programs_per_row == 0 or not any(needs):
        return grad_y, grad_scales, grad_means
    with device_context(y):
        _gaussian_rate_bwd_kernel[(rows * programs_per_row,)](
            grad_bits,
            y,
            scales,
            means if means is not None else y,
            latent if latent is not None else y,
            grad_y if needs[0] else y,
            grad_scales if needs[1] else y,
            grad_means if needs[2] else y,
            row_len,
            programs_per_row,
            float(scale_bound),
            float(likelihood_bound),
            float(mean_steps),
            HAS_MEANS=means is not None,
            ROUND=round_residual,
            SMOOTH=smooth,
            MEAN_GRID=mean_steps > 1 and means is not None,
            LATENT=latent is not None,
            NEED_Y=needs[0],
            NEED_SCALES=needs[1],
            NEED_MEANS=needs[2],
            BLOCK=ELEMENTWISE_BLOCK,
            num_warps=num_warps_for(ELEMENTWISE_BLOCK),
        )
    return grad_y, grad_scales, grad_means
