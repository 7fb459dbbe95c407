"""Plain PyTorch references (``*_ref``): the test oracle, the CPU path and the benchmark
baseline of every op in :mod:`gwn_fast.ops`.

Each op has a forward ``<op>_ref`` and, where it has inputs that take gradients, a
hand-written ``<op>_backward_ref`` with the same rules as the Triton kernels (see
:mod:`gwn_fast.kernels.gaussian` and :mod:`gwn_fast.kernels.merge`). They take plain
tensors and build no autograd graph: :mod:`gwn_fast.ops` wires them into ``torch.library``.

``upcast=True`` (the CPU path) computes float16/bfloat16 inputs in float32 and casts the
result back, as the kernels do; ``upcast=False`` computes in the input dtype, which is the
``torch_dtype`` term of the kernel-vs-reference tolerance rule.

The Gaussian follows CompressAI's maths: ``|y - mean|`` and erfc, ``mass = (erfc(x_lo) -
erfc(x_hi)) / 2`` with ``x_lo = (a - 0.5) / (s sqrt 2)``, ``x_hi = (a + 0.5) / (s sqrt 2)``.
Both erfc arguments grow with ``|r|``, so the tails are small numbers computed relative to
themselves (no ``1 - Phi``). Where the bounded scale is ``>= 8`` the bin is narrow and the
erfc difference would cancel (~``s * 1e-7`` relative), so the midpoint expansion of the bin
integral is used there instead, as in the kernels.

For speed on one CPU thread the Gaussian work runs in chunks that stay in cache, with
in-place arithmetic on temporaries, and the rate's backward is written by hand (no
autograd graph); results do not depend on the chunk size.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "CHUNK_ELEMENTS",
    "SERIES_MIN_SCALE",
    "bin_mass_ref",
    "build_indexes_ref",
    "gaussian_likelihood_backward_ref",
    "gaussian_likelihood_ref",
    "gaussian_rate_backward_ref",
    "gaussian_rate_ref",
    "match_merge_backward_ref",
    "match_merge_ref",
    "quantize_ref",
]

# Bounded scales from here on use the midpoint expansion of the bin mass. Below it the
# erfc difference loses at most ~4e-5 bits (measured; it grows like s * 1e-7 relative). The
# Triton kernels switch at 8 instead: their tail erfc is a little less precise than
# PyTorch's, and on a GPU the extra expansion costs nothing.
SERIES_MIN_SCALE = 64.0
# Elements per chunk of the Gaussian CPU path (512 KiB per float32 temporary): small enough
# for the temporaries to stay in cache, large enough that the per-op dispatch overhead is
# small (measured on one thread: 128 Ki beat 32 Ki by ~25% and 1 Mi by ~15%).
CHUNK_ELEMENTS = 1 << 17

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_LN2 = math.log(2.0)
# Residual magnitudes are capped in the Gaussian so that u * phi(u) is 0, not inf * 0, for
# infinite residuals (the mass there is 0 either way).
_MAX_MAGNITUDE = 1e30
_HALF_DTYPES = (torch.float16, torch.bfloat16)


def _compute_dtype(dtype: torch.dtype, upcast: bool) -> torch.dtype:
    return torch.float32 if upcast and dtype in _HALF_DTYPES else dtype


def _sum_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of the scalar results (``align``, bits): at least float32."""
    return torch.promote_types(dtype, torch.float32)


def quantize_ref(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * ceil(|x| - 0.5)``: the paper's rounding, ties toward zero. Any shape."""
    return torch.sign(x) * torch.ceil(x.abs() - 0.5)


# --------------------------------------------------------------------------------------
# match and merge
# --------------------------------------------------------------------------------------
def _blocks(shape: tuple, chunk: int | None = None):
    """Index tuples that split a tensor of ``shape`` into views of about ``chunk`` elements
    (at least one innermost row): the leading dimension is cut first, so a strided input
    (a channel slice of a latent) is walked in place, never copied."""
    chunk = CHUNK_ELEMENTS if chunk is None else chunk
    if len(shape) <= 1:
        n = shape[0] if shape else 1
        for start in range(0, n, chunk):
            yield (slice(start, min(start + chunk, n)),) if shape else ()
        return
    inner = math.prod(shape[1:])
    if inner >= chunk:
        for i in range(shape[0]):
            for rest in _blocks(shape[1:], chunk):
                yield (i, *rest)
        return
    step = max(1, chunk // max(inner, 1))
    for start in range(0, shape[0], step):
        yield (slice(start, min(start + step, shape[0])),)


def _quantize_into(x: torch.Tensor, out: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """:func:`quantize_ref` of ``x`` written into ``out`` (``tmp`` a scratch of the same
    shape): the same operations on the same values, so the same bits (signed zeros too)."""
    torch.abs(x, out=out).sub_(0.5).ceil_()
    return out.mul_(torch.sign(x, out=tmp))


class _Scratch:
    """Contiguous scratch tensors of one dtype, reused from block to block (blocks fit in
    cache, so the work of an element never goes back to memory between operations)."""

    def __init__(self, count: int, size: int, dtype: torch.dtype, device: torch.device):
        self._flat = [torch.empty(size, dtype=dtype, device=device) for _ in range(count)]

    def take(self, shape) -> list[torch.Tensor]:
        n = math.prod(shape)
        return [t[:n].view(shape) for t in self._flat]


def _merge_blocks(c1: torch.Tensor, c2: torch.Tensor, dtype: torch.dtype, quantize: bool, scratch: _Scratch):
    """``(index, q1, q2)`` per block: the blocks of ``c1``/``c2`` in ``dtype``, quantized
    when asked (into scratch tensors, never into the inputs)."""
    for index in _blocks(tuple(c1.shape)):
        b1, b2 = c1[index], c2[index]
        q1, q2 = b1.to(dtype), b2.to(dtype)
        if quantize:
            s1, s2, tmp = scratch.take(b1.shape)[:3]
            q1, q2 = _quantize_into(q1, s1, tmp), _quantize_into(q2, s2, tmp)
        yield index, q1, q2


def match_merge_ref(
    c1: torch.Tensor, c2: torch.Tensor, quantize: bool = True, upcast: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``y0 = q1`` where ``q1 == q2`` else 0, and ``align = mean((q1 - q2)^2)``.

    ``c1``, ``c2``: shape ``S``, one dtype. Returns ``y0`` (shape ``S``, the inputs' dtype)
    and ``align`` (a scalar, at least float32; 0 for empty inputs).

    Runs in cache-sized blocks (see :func:`_blocks`); the values are bit for bit those of
    the one-pass formula ``where(q1 == q2, q1, 0)`` and ``(q1 - q2).square().mean()``
    (the squares are kept whole so that the mean is PyTorch's own reduction).
    """
    dtype = _compute_dtype(c1.dtype, upcast)
    y0 = torch.empty(c1.shape, dtype=c1.dtype, device=c1.device)
    if c1.numel() == 0:
        return y0, torch.zeros((), dtype=_sum_dtype(c1.dtype), device=c1.device)
    zero = torch.zeros((), dtype=dtype, device=c1.device)
    squares = torch.empty(c1.shape, dtype=dtype, device=c1.device)
    scratch = _Scratch(3, min(CHUNK_ELEMENTS, c1.numel()), dtype, c1.device)
    for index, q1, q2 in _merge_blocks(c1, c2, dtype, quantize, scratch):
        if y0.dtype == dtype:
            torch.where(q1 == q2, q1, zero, out=y0[index])
        else:  # float16/bfloat16 computed in float32: cast on the way out
            y0[index] = torch.where(q1 == q2, q1, zero)
        torch.sub(q1, q2, out=squares[index]).square_()
    return y0, squares.mean().to(_sum_dtype(c1.dtype))


def match_merge_backward_ref(
    grad_y0: torch.Tensor, grad_align: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, quantize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``dc1 = 0.5 g_y0 match + 2 g_align (q1 - q2) / n``, ``dc2 = 0.5 g_y0 match - ...``.

    Straight-through quantizer; the match mask passes no gradient. Shapes as the forward;
    ``grad_align`` is a scalar tensor. Returns gradients in the inputs' dtype (contiguous).

    The rounding is recomputed block by block, in cache, which costs less than writing a
    mask and the differences to memory in the forward and reading them back here.
    """
    dtype = _compute_dtype(c1.dtype, True)
    grad_c1 = torch.empty(c1.shape, dtype=c1.dtype, device=c1.device)
    grad_c2 = torch.empty(c2.shape, dtype=c2.dtype, device=c2.device)
    if c1.numel() == 0:
        return grad_c1, grad_c2
    n = c1.numel()
    zero = torch.zeros((), dtype=dtype, device=c1.device)
    pull_scale = grad_align.to(dtype) * (2.0 / n)
    grad_y0 = grad_y0.expand(c1.shape)
    scratch = _Scratch(3, min(CHUNK_ELEMENTS, n), dtype, c1.device)
    for index, q1, q2 in _merge_blocks(c1, c2, dtype, quantize, scratch):
        shared = torch.where(q1 == q2, 0.5 * grad_y0[index].to(dtype), zero)
        pull = torch.sub(q1, q2).mul_(pull_scale)
        if grad_c1.dtype == dtype:
            torch.add(shared, pull, out=grad_c1[index])
            torch.sub(shared, pull, out=grad_c2[index])
        else:  # float16/bfloat16 computed in float32: cast on the way out
            grad_c1[index] = shared + pull
            grad_c2[index] = shared.sub_(pull)
    return grad_c1, grad_c2


# --------------------------------------------------------------------------------------
# Gaussian
# --------------------------------------------------------------------------------------
def _chunks(n: int):
    for start in range(0, n, CHUNK_ELEMENTS):
        yield slice(start, min(start + CHUNK_ELEMENTS, n))


def _flat(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    # A flat view (a copy only when the layout or dtype requires one).
    return None if tensor is None else tensor.to(dtype).reshape(-1)


def _check_bounds(scale_bound: float, likelihood_bound: float) -> None:
    if not scale_bound > 0:
        raise ValueError(f"scale_bound must be positive, got {scale_bound}")
    if not likelihood_bound > 0:
        raise ValueError(f"likelihood_bound must be positive, got {likelihood_bound}")


def _rows(y: torch.Tensor, per_batch: bool) -> tuple[int, int]:
    """(rows, row_len) of the reduction: one row per sample, or one row in all."""
    if not per_batch:
        return 1, y.numel()
    if y.dim() == 0:
        raise ValueError("reduction='batch' needs y with a batch dimension, got a 0-d tensor")
    rows = y.shape[0]
    return rows, (y.numel() // rows if rows else 0)


def _may_be_narrow(bounded_scale: torch.Tensor) -> bool:
    # On CPU one max() lets chunks without narrow bins skip the expansion; on other devices
    # (the reference on a GPU) evaluate it rather than synchronise with the host. A NaN
    # maximum answers True: the NaN lanes stay NaN either way.
    if bounded_scale.device.type != "cpu" or bounded_scale.numel() == 0:
        return bounded_scale.numel() > 0
    return not bool(bounded_scale.max() < SERIES_MIN_SCALE)


def _series_mass(magnitude: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # Midpoint expansion of the bin integral: w phi(m) (1 + w^2 He2(m)/24 + w^4 He4(m)/1920),
    # w = 1/s, m = a/s. For w <= 1/8 the truncation is below 1e-6 relative wherever the
    # mass exceeds 1e-10; m is capped at 40 (phi(40) == 0) so that no inf * 0 appears.
    w = scale.reciprocal()
    m2 = (magnitude * w).clamp_max_(40.0).square_()
    w2 = w.square()
    correction = (m2 - 6.0).mul_(m2).add_(3.0).mul_(w2).div_(1920.0).add_((m2 - 1.0).div_(24.0)).mul_(w2).add_(1.0)
    return m2.mul_(-0.5).exp_().mul_(w).mul_(_INV_SQRT_2PI).mul_(correction)


def _twice_mass(
    magnitude: torch.Tensor, bounded_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``2 * mass`` of each bin, and ``(x_lo, x_hi, k)`` with ``k = 1 / (s sqrt 2)``,
    ``x_lo = (a - 0.5) k``, ``x_hi = (a + 0.5) k`` (the backward needs them). Working with
    twice the mass saves a multiplication: ``mass = (erfc(x_lo) - erfc(x_hi)) / 2``."""
    k = bounded_scale.reciprocal().mul_(_SQRT_HALF)
    x_lo = (magnitude - 0.5).mul_(k)
    x_hi = x_lo + k
    twice = torch.special.erfc(x_lo).sub_(torch.special.erfc(x_hi))
    if _may_be_narrow(bounded_scale):
        narrow = bounded_scale >= SERIES_MIN_SCALE
        twice = torch.where(narrow, _series_mass(magnitude, bounded_scale).mul_(2.0), twice)
    return twice, x_lo, x_hi, k


def bin_mass_ref(magnitude: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``Phi((0.5 - a)/s) - Phi((-0.5 - a)/s)`` for ``a >= 0`` and ``s > 0`` (one shape).

    CompressAI's erfc form, with the midpoint expansion where ``s >= SERIES_MIN_SCALE``.
    NaN in, NaN out.
    """
    return _twice_mass(magnitude, scale)[0].mul_(0.5)


def _magnitude(y: torch.Tensor, means: torch.Tensor | None, round_residual: bool) -> torch.Tensor:
    """``|k|`` with ``k = floor(r + 1/2)`` (the coder's bijective bin map) when
    ``round_residual``, else ``|r|``; ``r = y - means``. A fresh tensor."""
    residual = y - means if means is not None else y.clone()
    if round_residual:
        residual.add_(0.5).floor_()
    return residual.abs_()


def gaussian_likelihood_ref(
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None = None,
    scale_bound: float = 0.11,
    likelihood_bound: float = 1e-9,
    round_residual: bool = True,
    upcast: bool = True,
) -> torch.Tensor:
    """Bounded likelihood of each element's bin. ``y``, ``scales``, ``means``: shape ``S``.

    Returns shape ``S`` in ``y``'s dtype.
    """
    _check_bounds(scale_bound, likelihood_bound)
    dtype = _compute_dtype(y.dtype, upcast)
    flat_y, flat_scales, flat_means = _flat(y, dtype), _flat(scales, dtype), _flat(means, dtype)
    out = torch.empty(y.numel(), dtype=dtype, device=y.device)
    for part in _chunks(out.numel()):
        magnitude = _magnitude(flat_y[part], flat_means[part] if flat_means is not None else None, round_residual)
        twice, _, _, _ = _twice_mass(magnitude, flat_scales[part].clamp_min(scale_bound))
        torch.mul(twice, 0.5, out=out[part]).clamp_min_(likelihood_bound)
    return out.reshape(y.shape).to(y.dtype)


def _row_chunks(rows: int, row_len: int):
    """Chunks of the flat ``[rows, row_len]`` layout that never straddle a row boundary:
    ``(flat slice, first row, rows in chunk)`` for groups of whole short rows, or pieces of
    one long row (``rows in chunk == 0`` marks a piece)."""
    if row_len <= CHUNK_ELEMENTS:
        step = max(1, CHUNK_ELEMENTS // max(row_len, 1))
        for first in range(0, rows, step):
            count = min(step, rows - first)
            yield slice(first * row_len, (first + count) * row_len), first, count
    else:
        for row in range(rows):
            for part in _chunks(row_len):
                yield slice(row * row_len + part.start, row * row_len + part.stop), row, 0


def check_mean_steps(mean_steps: object) -> int:
    """``mean_steps`` as an int, or a ValueError naming it (the one check of the rate's
    ``mean_steps``, used by :func:`gwn_fast.functional.gaussian_rate` too)."""
    if isinstance(mean_steps, bool) or not isinstance(mean_steps, numbers.Integral) or mean_steps < 1:
        raise ValueError(f"mean_steps must be an int >= 1 (1: the rate at the mean itself), got {mean_steps!r}")
    return int(mean_steps)


def _mean_grid(means: torch.Tensor, mean_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grid, t)``: ``grid`` of shape ``[2, n]`` holds the mean's two neighbours on the
    ``1/J`` grid, ``floor(J mu) / J`` and ``(floor(J mu) + 1) / J``, and ``t = J mu -
    floor(J mu)`` in ``[0, 1)`` is the weight of the upper one (the same operations as the
    two-pass formula they replace, so the same values). Both neighbours then go through
    one evaluation of twice the length: half the per-op overhead on small latents."""
    scaled = means * mean_steps
    low = torch.floor(scaled)
    t = scaled - low
    grid = torch.stack((low, low + 1))
    return grid.div_(mean_steps), t


def _bits_of(twice: torch.Tensor, likelihood_bound: float) -> torch.Tensor:
    """``-log2(max(mass, bound))`` from ``2 mass`` (in place): ``1 - log2(max(2 mass, 2
    bound))``, as scaling by 2 is exact."""
    return twice.clamp_min_(2.0 * likelihood_bound).log2_().neg_().add_(1.0)


def _chunk_bits(y, scales, means, scale_bound, likelihood_bound, round_residual) -> torch.Tensor:
    magnitude = _magnitude(y, means, round_residual)
    twice, _, _, _ = _twice_mass(magnitude, scales.clamp_min(scale_bound))
    return _bits_of(twice, likelihood_bound)


def gaussian_rate_ref(
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None = None,
    scale_bound: float = 0.11,
    likelihood_bound: float = 1e-9,
    round_residual: bool = True,
    per_batch: bool = False,
    upcast: bool = True,
    mean_steps: int = 1,
) -> torch.Tensor:
    """``sum(-log2(likelihood))``: a scalar, or ``[B]`` per sample when ``per_batch``.

    Inputs of shape ``S`` (``S[0] = B``); the result is at least float32. Bits are summed
    per chunk (no full-size temporary: on CPU a fresh large buffer costs more in page
    faults than the arithmetic), then the chunk sums of a row in order: deterministic.

    ``mean_steps = J > 1`` (with means): each element's bits are the expected rate over
    the mean's two neighbours on the ``1/J`` grid, ``(1 - t) b(floor(J mu)/J) + t
    b((floor(J mu) + 1)/J)``, ``t = J mu - floor(J mu)``. ``J = 1``: the rate at ``mu``.
    """
    _check_bounds(scale_bound, likelihood_bound)
    mean_steps = check_mean_steps(mean_steps)
    rows, row_len = _rows(y, per_batch)
    dtype = _compute_dtype(y.dtype, upcast)
    flat_y, flat_scales, flat_means = _flat(y, dtype), _flat(scales, dtype), _flat(means, dtype)
    grid = mean_steps > 1 and flat_means is not None  # without means, mu = 0 is on the grid
    total = torch.zeros(rows, dtype=_sum_dtype(y.dtype), device=y.device)
    pieces: dict[int, list[torch.Tensor]] = {}
    for part, first, count in _row_chunks(rows, row_len):
        chunk_y, chunk_scales = flat_y[part], flat_scales[part]
        if grid:
            neighbours, t = _mean_grid(flat_means[part], mean_steps)
            below, above = _chunk_bits(chunk_y, chunk_scales, neighbours, scale_bound, likelihood_bound, round_residual)
            bits = above.sub_(below).mul_(t).add_(below).to(total.dtype)  # below + t (above - below)
        else:
            chunk_means = flat_means[part] if flat_means is not None else None
            bits = _chunk_bits(chunk_y, chunk_scales, chunk_means, scale_bound, likelihood_bound, round_residual).to(total.dtype)
        if count:
            total[first : first + count] = bits.reshape(count, row_len).sum(dim=1)
        else:
            pieces.setdefault(first, []).append(bits.sum())
    for row, sums in pieces.items():
        total[row] = torch.stack(sums).sum()
    return total if per_batch else total.reshape(())


def _bound_never_blocks(grad_bits: torch.Tensor) -> bool:
    # Asked once per call, and only on CPU (a GPU would have to synchronise): with positive
    # upstream bits gradients, d(bits)/d(mass) < 0 everywhere, so CompressAI's rule never
    # blocks it at the likelihood bound and the mask can be skipped.
    return grad_bits.device.type == "cpu" and bool((grad_bits > 0).all())


def _grads_chunk(
    grad_residual: torch.Tensor | None,
    grad_scale: torch.Tensor | None,
    upstream: torch.Tensor,
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None,
    scale_bound: float,
    likelihood_bound: float,
    round_residual: bool,
    rate: bool,
    mask_likelihood_bound: bool,
) -> torch.Tensor:
    """Writes the gradients w.r.t. the residual and the raw scale of one chunk (either
    output may be None: not computed).

    ``upstream``: dL/d(likelihood) per element, or dL/d(bits) (``rate``; a 0-d tensor or
    one value per element). Same rules as the kernels: CompressAI's LowerBound rule for
    both bounds, the rate divided by the bounded likelihood. Returns ``2 * mass`` at the
    magnitude the derivatives were taken at (unbounded; the mean-grid backward reuses it).
    """
    residual = y - means if means is not None else y
    magnitude = _magnitude(y, means, round_residual)
    # Capped so that u * phi(u) below is 0, not inf * 0, for infinite residuals.
    magnitude.clamp_max_(_MAX_MAGNITUDE)
    twice, x_lo, x_hi, k = _twice_mass(magnitude, scales.clamp_min(scale_bound))
    if rate:
        # d bits / d mass = -1 / (ln2 max(mass, bound)) = -2 / (ln2 max(2 mass, 2 bound)).
        grad_mass = twice.clamp_min(2.0 * likelihood_bound).reciprocal_().mul_(upstream * (-2.0 / _LN2))
    else:
        grad_mass = upstream.clone()
    if mask_likelihood_bound:
        # LowerBound rule: below the bound only a negative gradient passes (NaN stays NaN).
        grad_mass = torch.where(twice < 2.0 * likelihood_bound, grad_mass.clamp_max(0.0), grad_mass)
    # With e = exp(-x^2) (= sqrt(2 pi) phi at u = -sqrt(2) x_lo and l = -sqrt(2) x_hi):
    # d mass/d a = (phi(l) - phi(u))/s = -(e_lo - e_hi) k/sqrt(pi)
    # d mass/d s = (l phi(l) - u phi(u))/s = (x_lo e_lo - x_hi e_hi) k sqrt(2/pi)
    negative_factor = grad_mass.mul_(k).mul_(-_INV_SQRT_PI)
    e_lo = x_lo.square().neg_().exp_()
    e_hi = x_hi.square().neg_().exp_()
    if grad_scale is not None:
        unbounded = x_hi.mul_(e_hi).sub_(x_lo.mul_(e_lo)).mul_(negative_factor).mul_(math.sqrt(2.0))
        torch.where(scales < scale_bound, unbounded.clamp_max(0.0), unbounded, out=grad_scale)
    # e_lo >= e_hi since |x_lo| <= |x_hi|; copysign applies d|r|/dr = sign(r) (and the two
    # are equal at r = 0, where the derivative is 0).
    if grad_residual is not None:
        torch.mul(torch.copysign(e_lo.sub_(e_hi), residual), negative_factor, out=grad_residual)
    return twice


def _backward(
    upstream_of, y, scales, means, scale_bound, likelihood_bound, round_residual, rate, needs, mask_likelihood_bound=True,
    latent=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chunked gradients ``(grad_y, grad_scales, grad_means)``. With ``latent`` (the rate's
    ``"smooth"`` with the encoder's output) the first is the latent's, taken unrounded at
    ``latent``, and ``scales``/``means`` get the gradients at ``y``, in the same loop."""
    _check_bounds(scale_bound, likelihood_bound)
    dtype = _compute_dtype(y.dtype, True)
    flat_y, flat_scales, flat_means = _flat(y, dtype), _flat(scales, dtype), _flat(means, dtype)
    flat_latent = _flat(latent, dtype)
    n = y.numel()
    need_y, need_scales, need_means = needs[0], needs[1], needs[2] and means is not None
    # Only the requested outputs are allocated (distinct tensors: op outputs must not alias),
    # and the chunks are written straight into them.
    grad_y, grad_scales, grad_means = (
        torch.empty(n if need else 0, dtype=y.dtype, device=y.device) for need in (need_y, need_scales, need_means)
    )
    cast = dtype != y.dtype
    # y's own residual gradient: the first output, or (negated) the means'.
    y_residual = (need_y and latent is None) or need_means
    for part in _chunks(n) if (need_y or need_scales or need_means) else ():
        chunk_means = flat_means[part] if flat_means is not None else None
        upstream = upstream_of(part)
        chunk_residual = chunk_scale = None
        if y_residual:
            direct = need_y and latent is None and not cast
            chunk_residual = grad_y[part] if direct else torch.empty(part.stop - part.start, dtype=dtype, device=y.device)
        if need_scales:
            chunk_scale = grad_scales[part] if not cast else torch.empty(part.stop - part.start, dtype=dtype, device=y.device)
        if chunk_residual is not None or chunk_scale is not None:
            options = (scale_bound, likelihood_bound, round_residual, rate, mask_likelihood_bound)
            _grads_chunk(chunk_residual, chunk_scale, upstream, flat_y[part], flat_scales[part], chunk_means, *options)
        if latent is not None and need_y:
            chunk_latent = grad_y[part] if not cast else torch.empty(part.stop - part.start, dtype=dtype, device=y.device)
            options = (scale_bound, likelihood_bound, False, rate, mask_likelihood_bound)
            _grads_chunk(chunk_latent, None, upstream, flat_latent[part], flat_scales[part], chunk_means, *options)
            if cast:
                grad_y[part] = chunk_latent
        elif need_y and cast:
            grad_y[part] = chunk_residual
        if need_scales and cast:
            grad_scales[part] = chunk_scale
        if need_means:
            if cast:
                grad_means[part] = chunk_residual.neg()
            else:
                torch.neg(chunk_residual, out=grad_means[part])
    return tuple(
        grad.reshape(y.shape) if need else grad for grad, need in zip((grad_y, grad_scales, grad_means), (need_y, need_scales, need_means))
    )


def _mean_grid_backward(
    upstream_of, y, scales, means, scale_bound, likelihood_bound, round_residual, smooth, mean_steps, needs, mask_likelihood_bound,
    latent=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the expected rate over the mean's two grid neighbours (``J > 1``):
    ``y`` and ``scales`` get ``(1 - t)`` times the lower neighbour's rate gradient plus
    ``t`` times the upper one's (each with its own bound rules, as two rate passes would);
    ``means`` only ``J (b_above - b_below)`` through ``t`` (the neighbours are constants).
    With ``latent`` the first gradient is the latent's, taken unrounded at ``latent``, and
    the others are those at ``y``, in the same loop."""
    dtype = _compute_dtype(y.dtype, True)
    flat_y, flat_scales, flat_means = _flat(y, dtype), _flat(scales, dtype), _flat(means, dtype)
    flat_latent = _flat(latent, dtype)
    n = y.numel()
    need_y, need_scales, need_means = needs
    grad_y, grad_scales, grad_means = (
        torch.empty(n if need else 0, dtype=y.dtype, device=y.device) for need in (need_y, need_scales, need_means)
    )
    grads_round = round_residual and not smooth
    for part in _chunks(n):
        chunk_y, chunk_scales = flat_y[part], flat_scales[part]
        neighbours, t = _mean_grid(flat_means[part], mean_steps)
        upstream = upstream_of(part)
        # Each neighbour's rate gradient, taken for its share of the upstream gradient (as
        # in two passes: the bound rules see the weighted upstream), in one [2, n] pass.
        weights = torch.stack((1.0 - t, t)).mul_(upstream)
        grad_residual = torch.empty_like(neighbours) if need_y else None
        grad_scale = torch.empty_like(neighbours) if need_scales else None
        options = (scale_bound, likelihood_bound, grads_round, True, mask_likelihood_bound)
        twice = None
        if latent is None:
            twice = _grads_chunk(grad_residual, grad_scale, weights, chunk_y, chunk_scales, neighbours, *options)
        else:
            if need_y:  # the latent's: unrounded, no binning
                unrounded = (scale_bound, likelihood_bound, False, True, mask_likelihood_bound)
                _grads_chunk(grad_residual, None, weights, flat_latent[part], chunk_scales, neighbours, *unrounded)
            if need_scales:
                twice = _grads_chunk(None, grad_scale, weights, chunk_y, chunk_scales, neighbours, *options)
        if need_y:
            grad_y[part] = grad_residual[0].add_(grad_residual[1])
        if need_scales:
            grad_scales[part] = grad_scale[0].add_(grad_scale[1])
        if need_means:
            if twice is None or grads_round != round_residual:  # none yet, or unrounded ("smooth")
                bits = _chunk_bits(chunk_y, chunk_scales, neighbours, scale_bound, likelihood_bound, round_residual)
            else:
                bits = _bits_of(twice, likelihood_bound)
            # d/d mu of below + t (above - below), t = J mu - floor(J mu): J (above - below)
            grad_means[part] = bits[1].sub_(bits[0]).mul_(upstream).mul_(mean_steps)
    return tuple(
        grad.reshape(y.shape) if need else grad for grad, need in zip((grad_y, grad_scales, grad_means), needs)
    )


def gaussian_likelihood_backward_ref(
    grad_p: torch.Tensor,
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None = None,
    scale_bound: float = 0.11,
    likelihood_bound: float = 1e-9,
    round_residual: bool = True,
    smooth: bool = False,
    needs: tuple[bool, bool, bool] = (True, True, True),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`gaussian_likelihood_ref` for the upstream ``grad_p`` (shape ``S``).

    ``smooth=False`` ("ste"): derivative at the rounded residual, identity through the
    rounding. ``smooth=True``: derivative of the continuous likelihood at the unrounded
    residual. Returns ``(grad_y, grad_scales, grad_means)``; those not in ``needs`` (and
    ``grad_means`` without means) are empty tensors.
    """
    flat_grad = grad_p.to(_compute_dtype(y.dtype, True)).reshape(-1)
    return _backward(
        lambda part: flat_grad[part],
        y,
        scales,
        means,
        scale_bound,
        likelihood_bound,
        round_residual and not smooth,
        False,
        needs,
    )


def gaussian_rate_backward_ref(
    grad_bits: torch.Tensor,
    y: torch.Tensor,
    scales: torch.Tensor,
    means: torch.Tensor | None = None,
    scale_bound: float = 0.11,
    likelihood_bound: float = 1e-9,
    round_residual: bool = True,
    smooth: bool = False,
    per_batch: bool = False,
    needs: tuple[bool, bool, bool] = (True, True, True),
    mean_steps: int = 1,
    latent: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`gaussian_rate_ref` for ``grad_bits`` (a scalar, or ``[B]``).

    ``smooth=True``: the derivative of the continuous rate ``-log2 p(r)`` at the unrounded
    residual. ``mean_steps = J > 1``: the gradients of the expected rate over the mean's
    two grid neighbours (see :func:`gaussian_rate_ref`): the ``t``-weighted mix of the
    two rates' gradients to ``y`` and ``scales``, ``J (b_above - b_below)`` to ``means``.
    Returns ``(grad_y, grad_scales, grad_means)`` as
    :func:`gaussian_likelihood_backward_ref` does.

    ``latent`` (shape of ``y``; ``rate_grad="smooth"`` with the encoder's unrounded
    output): the first gradient is then the latent's, the continuous rate's derivative at
    ``latent - means`` (no binning, ``smooth`` ignored), and ``scales``/``means`` get the
    exact rate's gradients at ``y`` (``y`` itself gets none): what the two passes ``rate(y)
    (y detached)`` and ``rate(latent, unrounded; scales and means detached)`` give, in one.
    """
    mean_steps = check_mean_steps(mean_steps)
    if latent is not None:
        smooth = False  # the latent's derivative is the unrounded one; y's are exact
    rows, row_len = _rows(y, per_batch)
    per_row = grad_bits.to(_compute_dtype(y.dtype, True)).reshape(rows)
    if per_batch:

        def upstream_of(part: slice) -> torch.Tensor:
            return per_row[torch.arange(part.start, part.stop, device=y.device) // max(row_len, 1)]
    else:

        def upstream_of(part: slice) -> torch.Tensor:
            return per_row[0]

    mask_likelihood_bound = not _bound_never_blocks(grad_bits)
    if mean_steps > 1 and means is not None:  # without means, mu = 0 is on the grid
        _check_bounds(scale_bound, likelihood_bound)
        options = (scale_bound, likelihood_bound, round_residual, smooth, mean_steps)
        return _mean_grid_backward(upstream_of, y, scales, means, *options, tuple(needs), mask_likelihood_bound, latent)
    return _backward(
        upstream_of,
        y,
        scales,
        means,
        scale_bound,
        likelihood_bound,
        round_residual and not smooth,
        True,
        needs,
        mask_likelihood_bound=mask_likelihood_bound,
        latent=latent,
    )


# --------------------------------------------------------------------------------------
# indexes
# --------------------------------------------------------------------------------------
def build_indexes_ref(scales: torch.Tensor, scale_table: torch.Tensor) -> torch.Tensor:
    """CompressAI's ``build_indexes``: ``(T - 1) - #{i < T - 1 : scale <= table[i]}``.

    For an ascending table, the smallest ``i`` with ``scale <= table[i]``, else ``T - 1``.
    ``scales``: any shape ``S``; ``scale_table``: 1-D, the scales' dtype. Returns int32 ``S``.
    """
    indexes = torch.full(scales.shape, scale_table.numel() - 1, dtype=torch.int32, device=scales.device)
    for bound in scale_table[:-1]:
        indexes -= (scales <= bound).to(torch.int32)
    return indexes
