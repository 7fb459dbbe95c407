"""The PyTorch reference path (the CPU kernels): gradcheck, the straight-through and bound
rules against independent autograd oracles, tail accuracy against float64, edge cases."""

import math

import pytest
import torch
from utils import (
    assert_verbose_allclose,
    float64_bits,
    gaussian_inputs,
    oracle_bits,
    oracle_likelihood,
)

from gwn_fast import functional as F
from gwn_fast.ops import backend, reference


@pytest.fixture(autouse=True)
def _reference_backend():
    with backend("reference"):
        yield


def _quantize(x):
    return torch.sign(x) * torch.ceil(x.abs() - 0.5)


# --------------------------------------------------------------------------------------
# gradcheck (float64, true derivatives: no rounding, inputs inside the bounds)
# --------------------------------------------------------------------------------------
def _inside_bounds_inputs(shape=(2, 3, 5)):
    # Scales above the scale bound and residuals within ~2 scales: likelihoods >> 1e-9.
    scales = torch.rand(shape, dtype=torch.float64) * 3 + 0.3
    means = torch.randn(shape, dtype=torch.float64)
    y = means + scales * torch.randn(shape, dtype=torch.float64).clamp(-2, 2)
    return y.requires_grad_(), scales.requires_grad_(), means.requires_grad_()


@pytest.mark.parametrize("with_means", [True, False])
def test_gradcheck_gaussian_likelihood(with_means):
    y, scales, means = _inside_bounds_inputs()

    def fn(y, scales, means):
        return F.gaussian_likelihood(y, scales, means if with_means else None, round_residual=False)

    assert torch.autograd.gradcheck(fn, (y, scales, means))


@pytest.mark.parametrize("reduction", ["sum", "batch"])
@pytest.mark.parametrize("rate_grad", ["ste", "smooth"])
def test_gradcheck_gaussian_rate(reduction, rate_grad):
    y, scales, means = _inside_bounds_inputs()

    def fn(y, scales, means):
        return F.gaussian_rate(y, scales, means, reduction=reduction, round_residual=False, rate_grad=rate_grad)

    assert torch.autograd.gradcheck(fn, (y, scales, means))


def test_gradcheck_gaussian_rate_with_narrow_bins():
    # Scales >= SERIES_MIN_SCALE use the midpoint expansion for the value; the derivative
    # must still be that of the same function.
    y = (torch.randn(12, dtype=torch.float64) * 80).requires_grad_()
    scales = torch.linspace(50, 300, 12, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda y, s: F.gaussian_rate(y, s, round_residual=False), (y, scales))


def test_gradcheck_match_merge_alignment():
    # Without quantization and with no exact matches, y0 is 0 and only the alignment loss
    # carries a gradient: a true derivative.
    c1 = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)
    c2 = torch.randn(4, 7, dtype=torch.float64, requires_grad=True)

    def fn(c1, c2):
        y0, align = F.match_merge(c1, c2, quantize=False)
        return y0, align

    assert torch.autograd.gradcheck(fn, (c1, c2))


# --------------------------------------------------------------------------------------
# straight-through and bound rules: explicit expected gradients
# --------------------------------------------------------------------------------------
def test_match_merge_values_and_gradients_match_the_formulas():
    c1 = torch.tensor([0.5, 1.5, -1.5, 2.5, 0.2, 3.7, -0.6, 4.0], dtype=torch.float64, requires_grad=True)
    c2 = torch.tensor([0.4, 1.0, -1.2, 2.4, -0.3, 2.6, -1.4, 4.49], dtype=torch.float64, requires_grad=True)
    y0, align = F.match_merge(c1, c2)
    q1, q2 = _quantize(c1.detach()), _quantize(c2.detach())
    # Ties go toward zero: 0.5 -> 0, 1.5 -> 1, -1.5 -> -1, 2.5 -> 2.
    assert q1.tolist() == [0.0, 1.0, -1.0, 2.0, 0.0, 4.0, -1.0, 4.0]
    match = q1 == q2
    assert torch.equal(y0.detach(), torch.where(match, q1, torch.zeros_like(q1)))
    assert align.item() == pytest.approx(((q1 - q2) ** 2).mean().item())

    g_y0 = torch.randn(8, dtype=torch.float64)
    g_align = torch.tensor(1.7, dtype=torch.float64)
    dc1, dc2 = torch.autograd.grad((y0, align), (c1, c2), (g_y0, g_align))
    n = c1.numel()
    expected1 = 0.5 * g_y0 * match + g_align * 2 * (q1 - q2) / n
    expected2 = 0.5 * g_y0 * match - g_align * 2 * (q1 - q2) / n
    assert_verbose_allclose(dc1, expected1, atol=1e-12, name="dc1")
    assert_verbose_allclose(dc2, expected2, atol=1e-12, name="dc2")


def _rule_inputs(n=4000):
    # Scales below the scale bound, residuals far in the tails (likelihood under its bound)
    # and half-integer residuals (rounding ties) all appear.
    y, scales, means = gaussian_inputs((n,), dtype=torch.float64, scale_range=(0.02, 80.0), spread=4.0)
    means[: n // 8] = torch.round(means[: n // 8]) + 0.5  # exact ties
    return y, scales, means


@pytest.mark.parametrize("round_residual", [True, False])
@pytest.mark.parametrize("rate_grad", ["ste", "smooth"])
def test_likelihood_gradients_follow_the_oracle(rate_grad, round_residual):
    y, scales, means = (t.requires_grad_() for t in _rule_inputs())
    upstream = torch.randn(y.shape, dtype=torch.float64)  # both signs: exercises the bound rule
    p = F.gaussian_likelihood(y, scales, means, round_residual=round_residual, rate_grad=rate_grad)
    grads = torch.autograd.grad(p, (y, scales, means), upstream)
    expected_p = oracle_likelihood(y, scales, means, round_residual=round_residual, mode=rate_grad)
    expected = torch.autograd.grad(expected_p, (y, scales, means), upstream)
    assert_verbose_allclose(p, expected_p, atol=1e-15, rtol=1e-9, name="likelihood")
    for name, got, want in zip(("y", "scales", "means"), grads, expected):
        assert_verbose_allclose(got, want, atol=1e-12, rtol=1e-7, name=f"grad {name}")


@pytest.mark.parametrize("upstream", [1.0, -0.5])
@pytest.mark.parametrize("rate_grad", ["ste", "smooth"])
def test_rate_gradients_follow_the_oracle(rate_grad, upstream):
    y, scales, means = (t.requires_grad_() for t in _rule_inputs())
    bits = F.gaussian_rate(y, scales, means, rate_grad=rate_grad)
    grads = torch.autograd.grad(bits, (y, scales, means), torch.tensor(upstream, dtype=torch.float64))
    expected_bits = oracle_bits(y, scales, means, mode=rate_grad)
    expected = torch.autograd.grad(expected_bits.sum(), (y, scales, means), torch.tensor(upstream, dtype=torch.float64))
    assert bits.item() == pytest.approx(expected_bits.sum().item(), rel=1e-12)
    for name, got, want in zip(("y", "scales", "means"), grads, expected):
        assert_verbose_allclose(got, want, atol=1e-9, rtol=1e-7, name=f"grad {name}")


def test_rate_gradient_is_finite_where_float32_likelihood_underflows():
    # Residual 200 at scale 0.2: the float32 mass is exactly 0; the gradient divides by the
    # bounded likelihood instead, and passes (positive upstream) by the LowerBound rule.
    y = torch.tensor([200.0, 3.0], requires_grad=True)
    scales = torch.tensor([0.2, 0.2], requires_grad=True)
    bits = F.gaussian_rate(y, scales)
    assert bits.item() == pytest.approx(2 * -math.log2(1e-9), rel=1e-6)
    gy, gs = torch.autograd.grad(bits, (y, scales))
    assert torch.isfinite(gy).all() and torch.isfinite(gs).all()


def test_smooth_moves_small_residuals_toward_zero_while_ste_does_not():
    # |r| = 0.3 rounds to 0: the straight-through gradient there is 0 (the paper's drift
    # problem); "smooth" differentiates at 0.3 and pushes the residual toward 0.
    y = torch.tensor([0.3, -0.3], dtype=torch.float64, requires_grad=True)
    scales = torch.tensor([1.0, 1.0], dtype=torch.float64)
    (g_ste,) = torch.autograd.grad(F.gaussian_rate(y, scales, rate_grad="ste"), y)
    (g_smooth,) = torch.autograd.grad(F.gaussian_rate(y, scales, rate_grad="smooth"), y)
    assert torch.equal(g_ste, torch.zeros(2, dtype=torch.float64))
    assert g_smooth[0] > 0 and g_smooth[1] < 0  # descent shrinks |r|


# --------------------------------------------------------------------------------------
# accuracy: every element's bits against a float64 evaluation, tails included
# --------------------------------------------------------------------------------------
def _per_element_bits(y, scales, means):
    n = y.numel()
    return F.gaussian_rate(y.reshape(n, 1), scales.reshape(n, 1), means.reshape(n, 1), reduction="batch")


@pytest.mark.parametrize(
    ("scale_range", "spread"),
    [((0.05, 40.0), 1.0), ((0.01, 1e4), 8.0), ((50.0, 1e5), 3.0), ((0.11, 0.5), 12.0)],
    ids=["typical", "wide-tails", "narrow-bins", "small-scales-deep-tails"],
)
def test_float32_bits_match_float64_everywhere(scale_range, spread):
    y, scales, means = gaussian_inputs((1 << 17,), scale_range=scale_range, spread=spread)
    bits = _per_element_bits(y, scales, means)
    exact = float64_bits(y, scales, means)
    tolerance = torch.maximum(torch.full_like(exact, 1e-4), 1e-6 * exact.abs())
    assert_verbose_allclose(bits, exact, atol=tolerance, name="bits vs float64")
    likelihood = F.gaussian_likelihood(y, scales, means)
    assert_verbose_allclose(-torch.log2(likelihood.double()), exact, atol=tolerance, name="-log2 p vs float64")


def test_narrow_bin_expansion_agrees_with_erfc_where_they_switch():
    a = torch.arange(0, 400, dtype=torch.float64)
    s = torch.full_like(a, reference.SERIES_MIN_SCALE)
    erfc_form = 0.5 * (torch.special.erfc((a - 0.5) / (s * math.sqrt(2))) - torch.special.erfc((a + 0.5) / (s * math.sqrt(2))))
    series = reference._series_mass(a, s)
    keep = erfc_form > 1e-10
    assert_verbose_allclose(series[keep], erfc_form[keep], rtol=1e-7, name="series vs erfc")


# --------------------------------------------------------------------------------------
# chunking, non-finite values, empty tensors, indexes
# --------------------------------------------------------------------------------------
def test_results_do_not_depend_on_the_chunk_size(monkeypatch):
    y, scales, means = (t.requires_grad_() for t in gaussian_inputs((3, 1001), scale_range=(0.05, 200.0)))

    def run():
        bits = F.gaussian_rate(y, scales, means, reduction="batch")
        p = F.gaussian_likelihood(y, scales, means)
        return (bits, p, *torch.autograd.grad(bits.sum() + p.sum(), (y, scales, means)))

    big = run()
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 64)
    small = run()
    for name, a, b in zip(("bits", "p", "gy", "gs", "gm"), big, small):
        assert_verbose_allclose(a, b, atol=1e-3 if name == "bits" else 0.0, rtol=1e-6, name=name)


def test_non_finite_inputs_have_the_documented_effect():
    nan, inf = math.nan, math.inf
    y = torch.tensor([nan, 1.0, inf, 2.0, 1.0, 1.0], requires_grad=True)
    scales = torch.tensor([1.0, nan, 1.0, 1.0, inf, -inf], requires_grad=True)
    means = torch.zeros(6, requires_grad=True)
    p = F.gaussian_likelihood(y, scales, means)
    # NaN in -> NaN out for that element only; an infinite residual or an infinite scale
    # gives the likelihood bound; a -inf scale is raised to the scale bound.
    assert p[:2].isnan().all()
    assert p[2].item() == pytest.approx(1e-9) and p[4].item() == pytest.approx(1e-9)
    expected_bounded = F.gaussian_likelihood(torch.tensor([1.0]), torch.tensor([0.11]))
    assert p[5].item() == pytest.approx(expected_bounded.item())
    assert torch.isfinite(p[2:]).all()
    grads = torch.autograd.grad(p.sum(), (y, scales, means))
    for g in grads:
        assert g[:2].isnan().all()
        assert torch.isfinite(g[2:]).all()
    assert grads[0][2] == 0 and grads[1][4] == 0

    bits = F.gaussian_rate(y, scales, means)
    assert bits.isnan()
    finite_bits = F.gaussian_rate(y[2:], scales[2:], means[2:])
    assert torch.isfinite(finite_bits)


def test_match_merge_non_finite_inputs():
    c1 = torch.tensor([math.nan, 1.0, 2.0])
    c2 = torch.tensor([math.nan, 1.2, 2.0])
    y0, align = F.match_merge(c1, c2)
    assert y0.tolist() == [0.0, 1.0, 2.0]  # NaN matches nothing
    assert align.isnan()


def test_empty_inputs():
    empty = torch.empty(0, 3, requires_grad=True)
    scales = torch.ones(0, 3, requires_grad=True)
    p = F.gaussian_likelihood(empty, scales)
    assert p.shape == (0, 3)
    bits = F.gaussian_rate(empty, scales)
    assert bits.shape == () and bits.item() == 0.0
    assert F.gaussian_rate(empty, scales, reduction="batch").shape == (0,)
    gy, gs = torch.autograd.grad(bits, (empty, scales))
    assert gy.shape == (0, 3) and gs.shape == (0, 3)
    rows_without_elements = F.gaussian_rate(torch.empty(2, 0), torch.ones(2, 0), reduction="batch")
    assert rows_without_elements.tolist() == [0.0, 0.0]
    y0, align = F.match_merge(torch.empty(0), torch.empty(0))
    assert y0.shape == (0,) and align.item() == 0.0
    assert F.build_indexes(torch.empty(0, 2), torch.tensor([0.1, 1.0])).shape == (0, 2)


def test_build_indexes_matches_compressai():
    compressai_models = pytest.importorskip("compressai.entropy_models")
    table = torch.exp(torch.linspace(math.log(0.11), math.log(256), 64))
    conditional = compressai_models.GaussianConditional(table.tolist())
    scales = torch.exp(torch.empty(5000).uniform_(math.log(0.01), math.log(1000)))
    scales[:64] = table  # exact table values: scale <= table[i] picks i itself
    scales[64] = math.nan
    ours = F.build_indexes(scales, table)
    assert ours.dtype == torch.int32
    assert torch.equal(ours, conditional.build_indexes(scales))
    assert ours[:64].tolist() == list(range(64))
    assert ours[64].item() == 63


def test_half_precision_reference_paths_run_in_their_dtype():
    y, scales, means = gaussian_inputs((257,), dtype=torch.bfloat16)
    upcast = reference.gaussian_likelihood_ref(y, scales, means)
    native = reference.gaussian_likelihood_ref(y, scales, means, upcast=False)
    assert upcast.dtype == native.dtype == torch.bfloat16
    assert_verbose_allclose(native, upcast, atol=5e-2, name="bf16 native vs upcast")


# --------------------------------------------------------------------------------------
# match_merge's blocked CPU path is the one-pass formula, bit for bit (issue 10)
# --------------------------------------------------------------------------------------
def _one_pass_match_merge(c1, c2, quantize, upcast=True):
    # The formula the blocked reference replaced, kept here as its oracle.
    dtype = torch.float32 if upcast and c1.dtype in (torch.float16, torch.bfloat16) else c1.dtype
    q1, q2 = c1.to(dtype), c2.to(dtype)
    if quantize:
        q1, q2 = reference.quantize_ref(q1), reference.quantize_ref(q2)
    y0 = torch.where(q1 == q2, q1, torch.zeros((), dtype=dtype)).to(c1.dtype)
    align = (q1 - q2).square_().mean().to(torch.promote_types(c1.dtype, torch.float32))
    return y0, align


def _one_pass_match_merge_backward(grad_y0, grad_align, c1, c2, quantize):
    dtype = torch.float32 if c1.dtype in (torch.float16, torch.bfloat16) else c1.dtype
    q1, q2 = c1.to(dtype), c2.to(dtype)
    if quantize:
        q1, q2 = reference.quantize_ref(q1), reference.quantize_ref(q2)
    n = max(q1.numel(), 1)
    shared = torch.where(q1 == q2, 0.5 * grad_y0.to(dtype), torch.zeros((), dtype=dtype))
    pull = (q1 - q2).mul_(grad_align.to(dtype) * (2.0 / n))
    return (shared + pull).to(c1.dtype), (shared - pull).to(c2.dtype)


def _bits(t):
    # Bit patterns, so that -0.0 vs 0.0 counts as a difference; NaNs compared as NaNs.
    t = t.detach()
    if t.dtype == torch.float64:
        return t.view(torch.int64), t.isnan()
    if t.dtype == torch.float32:
        return t.view(torch.int32), t.isnan()
    return t.view(torch.int16), t.isnan()


def _assert_same_bits(got, want, name):
    assert got.shape == want.shape and got.dtype == want.dtype, name
    (gb, gn), (wb, wn) = _bits(got), _bits(want)
    assert torch.equal(gn, wn), f"{name}: NaNs differ"
    assert torch.equal(gb[~gn], wb[~wn]), f"{name}: bits differ"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("quantize", [True, False])
@pytest.mark.parametrize(
    "case", ["flat", "strided-channels", "one-element", "scalar", "wide-rows", "expanded-grad"]
)
def test_issue10_blocked_match_merge_is_bit_identical_to_one_pass(monkeypatch, dtype, quantize, case):
    monkeypatch.setattr(reference, "CHUNK_ELEMENTS", 7)  # many blocks, ragged last ones
    g = torch.Generator().manual_seed(0)
    shape = {"flat": (1001,), "one-element": (1,), "scalar": (), "wide-rows": (2, 3, 5, 4), "expanded-grad": (3, 33)}
    if case == "strided-channels":
        h1 = torch.randn(3, 10, 4, 5, generator=g, dtype=torch.float64) * 2
        h2 = h1 + 0.4 * torch.randn(h1.shape, generator=g, dtype=torch.float64)
        c1, c2 = h1.to(dtype)[:, :6], h2.to(dtype)[:, :6]  # a channel slice, as the codec passes
        assert not c1.is_contiguous()
    else:
        c1 = torch.randn(shape[case], generator=g, dtype=torch.float64) * 2
        c2 = c1 + 0.4 * torch.randn(c1.shape, generator=g, dtype=torch.float64)
        c1, c2 = c1.to(dtype), c2.to(dtype)
    if c1.numel() > 8:  # ties, signed zeros, infinities and NaNs
        specials = torch.tensor([0.5, -0.5, 0.3, -0.3, 1.5, math.inf, -math.inf, math.nan], dtype=dtype)
        lead = (0,) * max(c1.dim() - 2, 0)  # a contiguous inner block, written through a view
        c1[lead].view(-1)[:8] = specials
        c2[lead].view(-1)[:8] = specials.flip(0)
    y0, align = reference.match_merge_ref(c1, c2, quantize)
    want_y0, want_align = _one_pass_match_merge(c1, c2, quantize)
    _assert_same_bits(y0, want_y0, "y0")
    _assert_same_bits(align, want_align, "align")
    assert y0.is_contiguous()
    if case == "expanded-grad":
        grad_y0 = torch.ones((), dtype=dtype).expand(c1.shape)  # what y0.sum() sends back
    else:
        grad_y0 = torch.randn(c1.shape, generator=g, dtype=torch.float64).to(dtype)
    grad_align = torch.tensor(-1.7, dtype=torch.promote_types(dtype, torch.float32))
    got = reference.match_merge_backward_ref(grad_y0, grad_align, c1, c2, quantize)
    want = _one_pass_match_merge_backward(grad_y0, grad_align, c1, c2, quantize)
    for name, a, b in zip(("dc1", "dc2"), got, want):
        _assert_same_bits(a, b, name)
        assert a.is_contiguous()
