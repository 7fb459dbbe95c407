"""Public functional API of the GWN's element-wise hot spots.

    from gwn_fast import functional as F
    y0, align = F.match_merge(c1, c2, quantize=True)
    p    = F.gaussian_likelihood(y, scales, means)          # per-element likelihood
    bits = F.gaussian_rate(y, scales, means)                # fused -log2 + sum
    idx  = F.build_indexes(scales, scale_table)             # int32 table indexes

Dispatch: CUDA tensors run fused Triton kernels, CPU tensors (and float64) the PyTorch
reference; :func:`gwn_fast.ops.backend` forces either. Every function validates its inputs
and raises ``TypeError``/``ValueError`` naming the argument; none adds a host
synchronisation. Non-finite inputs are documented per function (and in docs/kernels.md).
"""

from __future__ import annotations

import math

import torch

from gwn_fast import ops
from gwn_fast.ops._dispatch import check_impl, current_backend

__all__ = ["RATE_GRADS", "REDUCTIONS", "build_indexes", "gaussian_likelihood", "gaussian_rate", "match_merge"]

RATE_GRADS = ("ste", "smooth", "noise")
REDUCTIONS = ("sum", "batch")


def _check_float_tensor(name: str, value: object) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")


def _check_same_device(name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if value.device != ref.device:
        raise ValueError(f"{name} must be on the device of {ref_name} ({ref.device}), got {value.device}")


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return float(value)


def _backend_for(tensor: torch.Tensor) -> str:
    """The current backend, checked eagerly against ``tensor`` so that errors point at the
    caller. Under torch.compile the op itself raises the same error when it runs (the
    Triton gate asks Triton's C++ runtime, which Dynamo cannot trace)."""
    impl = current_backend()
    if not torch.compiler.is_compiling():
        check_impl(impl, tensor)
    return impl


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def match_merge(c1: torch.Tensor, c2: torch.Tensor, quantize: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise match-and-merge of two candidate-common tensors, with the alignment loss.

    With ``q = round(c)`` (ties toward zero, straight-through gradient) when ``quantize``,
    else ``q = c``: ``y0 = (q1 + q2) / 2`` where ``q1 == q2`` and 0 elsewhere, and
    ``align = mean((q1 - q2)^2)`` over all elements.

    Gradients: ``dc1 = 0.5 g_y0 match + 2 g_align (q1 - q2) / n`` and ``dc2 = 0.5 g_y0
    match - 2 g_align (q1 - q2) / n``; the match mask passes none.

    Args:
        c1, c2: floating tensors of one shape ``S`` on one device (dtypes are promoted).
    Returns:
        ``y0`` of shape ``S`` (the promoted dtype) and ``align``, a scalar of at least
        float32. Empty inputs give an empty ``y0`` and ``align = 0``. A NaN in either input
        gives ``y0 = 0`` there (NaN matches nothing) and a NaN ``align``.
    """
    _check_float_tensor("c1", c1)
    _check_float_tensor("c2", c2)
    if c1.shape != c2.shape:
        raise ValueError(f"c1 and c2 must have the same shape, got {tuple(c1.shape)} and {tuple(c2.shape)}")
    _check_same_device("c2", c2, "c1", c1)
    dtype = torch.promote_types(c1.dtype, c2.dtype)
    c1, c2 = c1.to(dtype), c2.to(dtype)
    impl = _backend_for(c1)
    return ops.match_merge(c1, c2, bool(quantize), impl)


def _gaussian_inputs(
    y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate, promote to one dtype, and broadcast ``scales``/``means`` to ``y``'s shape."""
    _check_float_tensor("y", y)
    _check_float_tensor("scales", scales)
    if means is not None:
        _check_float_tensor("means", means)
    named = [("scales", scales)] + ([("means", means)] if means is not None else [])
    dtype = y.dtype
    for name, tensor in named:
        _check_same_device(name, tensor, "y", y)
        try:
            broadcast = torch.broadcast_shapes(tensor.shape, y.shape)
        except RuntimeError:
            broadcast = None
        if broadcast != y.shape:
            raise ValueError(f"{name} of shape {tuple(tensor.shape)} cannot be broadcast to the shape of y {tuple(y.shape)}")
        dtype = torch.promote_types(dtype, tensor.dtype)
    # expand() makes no copy; autograd sums the gradient of a broadcast input back.
    y = y.to(dtype)
    scales = scales.to(dtype).expand(y.shape)
    means = means.to(dtype).expand(y.shape) if means is not None else None
    return y, scales, means


def _check_latent(latent: torch.Tensor | None, y: torch.Tensor) -> torch.Tensor | None:
    if latent is None:
        return None
    _check_float_tensor("latent", latent)
    if latent.shape != y.shape:
        raise ValueError(f"latent must have the shape of y {tuple(y.shape)}, got {tuple(latent.shape)}")
    _check_same_device("latent", latent, "y", y)
    return latent.to(y.dtype)


def _smooth_surrogate(exact: torch.Tensor, continuous: torch.Tensor) -> torch.Tensor:
    """``exact`` in value; plus ``continuous``'s gradient (``continuous - continuous.detach()``
    is 0 in value)."""
    return exact + (continuous - continuous.detach())


def _by_rate_grad(evaluate, smooth, y, scales, means, round_residual: bool, rate_grad: str, latent):
    """One ``rate_grad`` mode of ``evaluate(at, scales, means, round_residual, smooth_op)``
    (the likelihood or the rate op); ``smooth(exact, continuous)`` combines the two passes
    of ``"smooth"`` with a latent, or is None where ``evaluate(..., latent=latent)`` does
    it in one op (the rate: its backward differentiates at the latent itself)."""
    if rate_grad == "noise":
        u = y if latent is None else latent
        return evaluate(u + torch.empty_like(u).uniform_(-0.5, 0.5), scales, means, False)
    if rate_grad == "smooth":
        if latent is None:
            return evaluate(y, scales, means, round_residual, True)
        if smooth is None:
            return evaluate(y.detach(), scales, means, round_residual, False, latent)
        exact = evaluate(y.detach(), scales, means, round_residual)
        continuous = evaluate(latent, scales.detach(), means.detach() if means is not None else None, False)
        return smooth(exact, continuous)
    return evaluate(y, scales, means, round_residual)


_RATE_GRAD_DOC = """``rate_grad`` chooses how gradients reach the latent. ``y`` is the latent the rate is
    evaluated at (in a codec: the rounded latent ``Q(u)``), ``latent`` the encoder's
    unrounded output ``u`` of which ``y`` is the rounding (default: ``y`` itself):

    - ``"ste"`` (the paper): value and derivatives at the binned residual
      ``floor(y - mean + 1/2)``; the gradient reaches ``y`` (and through the codec's
      straight-through rounding, ``u``). ``latent`` is ignored.
    - ``"smooth"``: the value is the exact bin probability at ``y`` (as ``"ste"``); the
      gradients to ``means``/``scales`` are ``"ste"``'s; the gradient to the latent is
      ``d/du`` of the continuous rate ``-log2(Phi((u - mean + 1/2)/s) - Phi((u - mean -
      1/2)/s))`` at the *unrounded* ``u``, and it reaches ``latent`` (``y`` gets none when
      ``latent`` is given). It pulls an element inside its bin toward the mean. Without
      ``latent`` (``u = y``) every derivative, ``means``/``scales`` included, is taken at
      the unrounded residual.
    - ``"noise"``: CompressAI's proxy: the value and every gradient at ``u + U(-1/2, 1/2)``
      (a fresh sample), no binning; ``y`` gets no gradient when ``latent`` is given."""


def gaussian_likelihood(
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None = None,
    *,
    scale_bound: float = 0.11,
    likelihood_bound: float = 1e-9,
    round_residual: bool = True,
    rate_grad: str = "ste",
    latent: torch.Tensor | None = None,
) -> torch.Tensor:
    """Likelihood of each element's integer bin under a conditional Gaussian.

    ``r = y - means`` (``y`` without means), binned as ``k = floor(r + 1/2)`` when
    ``round_residual`` (the entropy coder's own map: a bijection between the integers and
    the bins for any mean, so the likelihood of integer ``y`` sums to 1 over the
    integers); ``p = Phi((k + 0.5)/s) - Phi((k - 0.5)/s)`` with ``s = max(scales,
    scale_bound)``, then ``p = max(p, likelihood_bound)``. Both bounds pass the gradient
    where ``x >= bound`` or where the incoming gradient is negative (CompressAI's
    LowerBound). (The paper's code rounds ``r`` half toward zero, which maps two integers
    to one bin when the mean ends in .5: its "likelihood" then sums to up to 2, and
    training learns to put means there. That mode is not offered.)

    {rate_grad_doc}
    ``-log2`` of this likelihood has the values and gradients of :func:`gaussian_rate` in
    every mode when ``latent`` is given (the codec's use). For ``"smooth"`` without
    ``latent`` its gradient divides the continuous ``p'`` by the binned ``p``, where the
    rate divides by the continuous one.

    Args:
        y: floating tensor, any shape ``S``.
        scales, means: floating tensors broadcastable to ``S`` (dtypes are promoted).
        latent: ``"smooth"``/``"noise"`` only: floating tensor of shape ``S``.
    Returns:
        The bounded likelihood, shape ``S``, the promoted dtype and at least float32. A NaN
        input gives NaN for that element; an infinite residual gives ``likelihood_bound``.
    """
    y, scales, means = _gaussian_inputs(y, scales, means)
    if y.dtype in (torch.float16, torch.bfloat16):
        # At least float32 out: float16 cannot hold the 1e-9 bound (it would round to 0 and
        # make the rate infinite), and autocast hands us half-precision means and scales.
        y, scales = y.float(), scales.float()
        means = means.float() if means is not None else None
    scale_bound = _check_positive("scale_bound", scale_bound)
    likelihood_bound = _check_positive("likelihood_bound", likelihood_bound)
    _check_choice("rate_grad", rate_grad, RATE_GRADS)
    latent = _check_latent(latent, y)
    impl = _backend_for(y)

    def lik(at, sc, mu, rounding, smooth=False):
        return ops.gaussian_likelihood(at, sc, mu, scale_bound, likelihood_bound, rounding, smooth, impl)

    def smooth(exact, continuous):
        # d(-log2 p)/du is the continuous rate's: the gradient of p is p_exact * d log p_c.
        return exact * torch.exp(_smooth_surrogate(torch.zeros_like(continuous), torch.log(continuous)))

    return _by_rate_grad(lik, smooth, y, scales, means, bool(round_residual), rate_grad, latent)


def gaussian_rate(
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None = None,
    *,
    reduction: str = "sum",
    scale_bound: float = 0.11,
    likelihood_bound: float = 1e-9,
    round_residual: bool = True,
    rate_grad: str = "ste",
    latent: torch.Tensor | None = None,
    mean_steps: int = 1,
) -> torch.Tensor:
    """Rate in bits, ``sum(-log2(gaussian_likelihood(...)))``, fused with the reduction.

    Same maths and keywords as :func:`gaussian_likelihood`; the Triton path never writes
    the likelihood to memory, forward or backward. The backward divides by the bounded
    likelihood, so gradients stay finite where float32 underflows.

    {rate_grad_doc}
    With ``"smooth"`` and ``latent`` it is still one op: the forward evaluates the rate at
    ``y`` only, and the backward adds the continuous rate's derivative at ``latent``.

    ``mean_steps = J > 1`` (training with means coded on a ``1/J`` grid): each element's
    bits are the expected rate when its mean is rounded down or up to the grid with
    probabilities ``(1 - t, t)``, in the same single pass::

        b(m) = -log2(gaussian_likelihood(y, scales, m, ...))   (every mode as above)
        bits = (1 - t) b(floor(J mu) / J) + t b((floor(J mu) + 1) / J),  t = J mu - floor(J mu)

    The grid points are constants (``floor`` passes no gradient): ``y``, ``scales`` and
    ``latent`` get the ``t``-weighted mix of the two rates' gradients, ``means`` only
    ``J (b_above - b_below)``, which moves the mean toward the cheaper grid point. In
    ``"noise"`` mode both neighbours see the same noise sample. ``mean_steps=1`` (the
    default) is the rate at the mean itself; without ``means`` (mean 0, on every grid)
    ``mean_steps`` changes nothing.

    Args:
        y: floating tensor of shape ``S``; ``S[0] = B`` for ``reduction="batch"``.
        scales, means: broadcastable to ``S``.
        reduction: ``"sum"`` (a scalar) or ``"batch"`` (bits per sample, shape ``[B]``).
        latent: ``"smooth"``/``"noise"`` only: floating tensor of shape ``S``.
        mean_steps: ``J``, an int ``>= 1``.
    Returns:
        Bits, at least float32. Deterministic: the same input gives the same bits on every
        run. Empty inputs give 0; a NaN input makes its sum NaN.
    """
    _check_choice("reduction", reduction, REDUCTIONS)
    y, scales, means = _gaussian_inputs(y, scales, means)
    if reduction == "batch" and y.dim() == 0:
        raise ValueError("reduction='batch' needs y with a batch dimension, got a 0-d tensor")
    scale_bound = _check_positive("scale_bound", scale_bound)
    likelihood_bound = _check_positive("likelihood_bound", likelihood_bound)
    _check_choice("rate_grad", rate_grad, RATE_GRADS)
    latent = _check_latent(latent, y)
    mean_steps = ops.reference.check_mean_steps(mean_steps)
    if means is None:
        mean_steps = 1  # the mean is 0, a point of every grid: the same rate in one pass
    impl = _backend_for(y)
    per_batch = reduction == "batch"

    def rate(at, sc, mu, rounding, smooth=False, at_latent=None):
        return ops.gaussian_rate(at, sc, mu, scale_bound, likelihood_bound, rounding, smooth, per_batch, mean_steps, at_latent, impl)

    return _by_rate_grad(rate, None, y, scales, means, bool(round_residual), rate_grad, latent)


gaussian_likelihood.__doc__ = gaussian_likelihood.__doc__.format(rate_grad_doc=_RATE_GRAD_DOC)
gaussian_rate.__doc__ = gaussian_rate.__doc__.format(rate_grad_doc=_RATE_GRAD_DOC)


def build_indexes(scales: torch.Tensor, scale_table: torch.Tensor) -> torch.Tensor:
    """Scale-table index of each scale, with CompressAI's semantics.

    The smallest ``i`` with ``scales <= scale_table[i]``, else the last index (for an
    ascending table; in general ``(T - 1) - #{i < T - 1 : scale <= scale_table[i]}``, which
    is what CompressAI computes). Comparisons are exact, in the scales' dtype (the table is
    cast to it), so equal scales give equal indexes on CPU and GPU. A NaN scale gets the
    last index.

    Args:
        scales: floating tensor, any shape ``S``.
        scale_table: non-empty 1-D floating tensor on the scales' device.
    Returns:
        int32 tensor of shape ``S``.
    """
    _check_float_tensor("scales", scales)
    _check_float_tensor("scale_table", scale_table)
    if scale_table.dim() != 1 or scale_table.numel() == 0:
        raise ValueError(f"scale_table must be a non-empty 1-D tensor, got shape {tuple(scale_table.shape)}")
    _check_same_device("scale_table", scale_table, "scales", scales)
    impl = _backend_for(scales)
    return ops.build_indexes(scales, scale_table.to(scales.dtype), impl)
