"""Triton kernels (run by Triton's interpreter on CPU) against the PyTorch reference.

Tolerance rule per dtype (tests/utils.py): |kernel - ref_fp32| <= 2 |ref_dtype - ref_fp32|
+ atol + rtol |ref_fp32|, with atol 1e-4 / 1e-2 / 5e-2 and rtol 1e-5 / 1e-3 / 1e-2 for
float32 / float16 / bfloat16. ``ref_fp32`` is the reference on the same input values in
float32; ``ref_dtype`` the reference computed in the dtype (forward) or rounded to it
(gradients, which the reference always computes in float32).
"""

import math

import pytest
import torch
from utils import assert_verbose_allclose, assert_within_rule, float64_bits, gaussian_inputs

from gwn_fast import functional as F
from gwn_fast import kernels
from gwn_fast.ops import backend, reference

pytest.importorskip("triton")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# 1 element, odd sizes, several programs per row (the reduction uses 2048-element blocks),
# and a permuted (non-contiguous) 4-D tensor.
SHAPES = {
    "one": (1,),
    "seven": (7,),
    "odd-3d": (3, 5, 17),
    "rows-over-a-block": (3, 2100),
    "permuted-4d": (2, 3, 33, 9),
}


def _make(shape_id, dtype, spread=2.0, scale_range=(0.05, 40.0)):
    shape = SHAPES[shape_id]
    if shape_id == "permuted-4d":
        tensors = gaussian_inputs((shape[0], shape[2], shape[3], shape[1]), spread=spread, scale_range=scale_range)
        tensors = [t.permute(0, 3, 1, 2) for t in tensors]
        assert not tensors[0].is_contiguous()
    else:
        tensors = gaussian_inputs(shape, spread=spread, scale_range=scale_range)
    return [t.to(dtype) for t in tensors]


def _leaves(tensors, dtype=None):
    return [t.detach().to(dtype or t.dtype).requires_grad_() for t in tensors]


def _gaussian_outputs(y, scales, means, rate_grad):
    """Likelihood, total bits, per-sample bits, and the gradients of each."""
    p = F.gaussian_likelihood(y, scales, means, rate_grad=rate_grad)
    bits = F.gaussian_rate(y, scales, means, rate_grad=rate_grad)
    per_sample = F.gaussian_rate(y, scales, means, reduction="batch", rate_grad=rate_grad)
    generator = torch.Generator().manual_seed(7)
    upstream_p = torch.randn(p.shape, generator=generator).to(p.dtype)
    upstream_rows = torch.rand(per_sample.shape, generator=generator).to(per_sample.dtype) - 0.25
    grads_p = torch.autograd.grad(p, (y, scales, means), upstream_p)
    grads_bits = torch.autograd.grad(bits, (y, scales, means))
    grads_rows = torch.autograd.grad(per_sample, (y, scales, means), upstream_rows)
    return {"p": p, "bits": bits, "per_sample": per_sample}, {"p": grads_p, "bits": grads_bits, "rows": grads_rows}


def _assert_within_rules(values, grads, values32, grads32, ref_dtype, grads_dtype, dtype):
    """Triton outputs against the float32 reference, within the dtype's rule (the
    reference run in ``dtype`` gives the rounding allowance)."""
    for key, value in values.items():
        assert value.shape == values32[key].shape
        assert_within_rule(value, values32[key], ref_dtype[key], dtype, name=key)
    for key in grads:
        for name, got, want, rounded in zip(("y", "scales", "means"), grads[key], grads32[key], grads_dtype[key]):
            assert got.dtype == dtype
            assert_within_rule(got, want, rounded, dtype, name=f"d{key}/d{name}")


@pytest.mark.parametrize("rate_grad", ["ste", "smooth"])
@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gaussian_kernels_match_the_reference(dtype, shape_id, rate_grad):
    inputs = _make(shape_id, dtype)
    with backend("triton"):
        values, grads = _gaussian_outputs(*_leaves(inputs), rate_grad)
    with backend("reference"):
        values32, grads32 = _gaussian_outputs(*_leaves(inputs, torch.float32), rate_grad)
        _, grads_dtype = _gaussian_outputs(*_leaves(inputs), rate_grad)
    y, scales, means = inputs
    ref_dtype = {
        "p": reference.gaussian_likelihood_ref(y, scales, means, upcast=False),
        "bits": reference.gaussian_rate_ref(y, scales, means, upcast=False),
        "per_sample": reference.gaussian_rate_ref(y, scales, means, per_batch=True, upcast=False),
    }
    _assert_within_rules(values, grads, values32, grads32, ref_dtype, grads_dtype, dtype)


def _on_and_off_the_grid(means, steps):
    """``means`` with about a third moved exactly onto the ``1/steps`` grid and a third onto
    half-integers (also grid points for even ``steps``); exact in every tested dtype."""
    pick = torch.rand(means.shape)
    grid = torch.where(pick < 0.3, torch.round(means.float() * steps) / steps, means.float())
    return torch.where(pick > 0.7, torch.round(means.float()) + 0.5, grid).to(means.dtype)


def _rate_outputs(y, scales, means, wrt, **kw):
    """Total and per-sample bits of ``F.gaussian_rate(..., **kw)``, and the gradients of
    each with respect to ``wrt`` (per-sample upstreams of both signs)."""
    bits = F.gaussian_rate(y, scales, means, **kw)
    per_sample = F.gaussian_rate(y, scales, means, reduction="batch", **kw)
    upstream_rows = torch.rand(per_sample.shape, generator=torch.Generator().manual_seed(7)).to(per_sample.dtype) - 0.25
    grads_bits = torch.autograd.grad(bits, wrt)
    grads_rows = torch.autograd.grad(per_sample, wrt, upstream_rows)
    return {"bits": bits, "per_sample": per_sample}, {"bits": grads_bits, "rows": grads_rows}


def _mean_grid_outputs(y, scales, means, rate_grad, round_residual, steps):
    """Total and per-sample bits with ``mean_steps``, and the gradients of each."""
    kw = {"rate_grad": rate_grad, "round_residual": round_residual, "mean_steps": steps}
    return _rate_outputs(y, scales, means, (y, scales, means), **kw)


@pytest.mark.parametrize(("rate_grad", "round_residual"), [("ste", False), ("smooth", False), ("ste", True), ("smooth", True)])
@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gaussian_rate_kernels_with_mean_steps_match_the_reference(dtype, shape_id, rate_grad, round_residual):
    # mean_steps = 8: the expected rate over each mean's two grid neighbours, forward and
    # backward (the means' gradient is J (b_above - b_below)), in one fused pass.
    steps = 8
    y, scales, means = _make(shape_id, dtype)
    inputs = (y, scales, _on_and_off_the_grid(means, steps))
    with backend("triton"):
        values, grads = _mean_grid_outputs(*_leaves(inputs), rate_grad, round_residual, steps)
    with backend("reference"):
        values32, grads32 = _mean_grid_outputs(*_leaves(inputs, torch.float32), rate_grad, round_residual, steps)
        _, grads_dtype = _mean_grid_outputs(*_leaves(inputs), rate_grad, round_residual, steps)
    ref_dtype = {
        key: reference.gaussian_rate_ref(*inputs, round_residual=round_residual, per_batch=key == "per_sample", upcast=False, mean_steps=steps)
        for key in values
    }
    _assert_within_rules(values, grads, values32, grads32, ref_dtype, grads_dtype, dtype)
    if dtype == torch.float32 and not round_residual:  # the mean's gradient is not the residual's
        assert not torch.allclose(grads["bits"][2], -grads["bits"][0])


def _smooth_latent_outputs(latent, scales, means, steps):
    """``"smooth"`` rate with the encoder's unrounded output (one op: the latent gets the
    continuous rate's derivative, scales and means the exact rate's at the rounded y)."""
    y = latent + (torch.round(latent) - latent).detach()
    kw = {"rate_grad": "smooth", "latent": latent, "mean_steps": steps}
    return _rate_outputs(y, scales, means, (latent, scales, means), **kw)


@pytest.mark.parametrize("steps", [1, 8])
@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_smooth_rate_kernel_with_a_latent_matches_the_reference(dtype, shape_id, steps):
    # The kernel's LATENT path: gradients at two points (the latent, unrounded; y, binned)
    # in one backward, per-sample upstreams of both signs.
    latent, scales, means = _make(shape_id, dtype)
    inputs = (latent, scales, _on_and_off_the_grid(means, steps))
    with backend("triton"):
        values, grads = _smooth_latent_outputs(*_leaves(inputs), steps)
    with backend("reference"):
        values32, grads32 = _smooth_latent_outputs(*_leaves(inputs, torch.float32), steps)
        _, grads_dtype = _smooth_latent_outputs(*_leaves(inputs), steps)
    y = torch.round(latent)
    ref_dtype = {
        key: reference.gaussian_rate_ref(y, scales, inputs[2], per_batch=key == "per_sample", upcast=False, mean_steps=steps)
        for key in values
    }
    _assert_within_rules(values, grads, values32, grads32, ref_dtype, grads_dtype, dtype)


@pytest.mark.parametrize("round_residual", [True, False])
def test_gaussian_kernels_without_means_and_without_rounding(round_residual):
    y, scales, _ = _make("odd-3d", torch.float32)
    y = y + torch.rand_like(y) - 0.5
    results = {}
    for name in ("triton", "reference"):
        leaves = _leaves((y, scales))
        with backend(name):
            p = F.gaussian_likelihood(*leaves, round_residual=round_residual)
            bits = F.gaussian_rate(*leaves, round_residual=round_residual)
            grads = torch.autograd.grad(bits + p.sum(), leaves)
        results[name] = (p, bits, *grads)
    for name, got, want in zip(("p", "bits", "dy", "dscales"), results["triton"], results["reference"]):
        assert_verbose_allclose(got, want, atol=1e-4, rtol=1e-5, name=name)


def test_broadcast_scales_and_means():
    y = torch.round(torch.randn(2, 3, 4, 5) * 3)
    scales = torch.rand(3, 1, 1) + 0.1
    means = torch.randn(1, 3, 1, 5)
    results = {}
    for name in ("triton", "reference"):
        leaves = _leaves((y, scales, means))
        with backend(name):
            bits = F.gaussian_rate(*leaves, reduction="batch")
            results[name] = (bits, *torch.autograd.grad(bits.sum(), leaves))
    for name, got, want in zip(("bits", "dy", "dscales", "dmeans"), results["triton"], results["reference"]):
        assert got.shape == want.shape
        assert_verbose_allclose(got, want, atol=1e-4, rtol=1e-5, name=name)


@pytest.mark.parametrize("quantize", [True, False])
@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_match_merge_kernels_match_the_reference(dtype, shape_id, quantize):
    c1, _, _ = _make(shape_id, torch.float32)
    c1 = (c1 + torch.rand_like(c1) - 0.5).to(dtype)
    c2 = torch.where(torch.rand(c1.shape) < 0.5, c1.float(), c1.float() + torch.randn(c1.shape)).to(dtype)
    if dtype == torch.float32 and shape_id == "permuted-4d":
        c2 = c2.permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)  # other strides than c1
    g_y0 = torch.randn(c1.shape).to(dtype)
    results = {}
    for name, cast in (("triton", dtype), ("reference", torch.float32), ("reference-dtype", dtype)):
        leaves = _leaves((c1, c2), cast)
        with backend(name.split("-")[0]):
            y0, align = F.match_merge(*leaves, quantize=quantize)
            grads = torch.autograd.grad((y0, align), leaves, (g_y0.to(cast), torch.tensor(0.7).to(align.dtype)))
        results[name] = (y0, align, *grads)
    y0, align, d1, d2 = results["triton"]
    y0_32, align_32, d1_32, d2_32 = results["reference"]
    assert torch.equal(y0.float(), y0_32.to(dtype).float())  # selection and averaging are exact
    assert_verbose_allclose(align, align_32, rtol=1e-5, atol=1e-6, name="align")
    assert_within_rule(d1, d1_32, results["reference-dtype"][2], dtype, name="dc1")
    assert_within_rule(d2, d2_32, results["reference-dtype"][3], dtype, name="dc2")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_build_indexes_is_bit_identical(dtype):
    table = torch.exp(torch.linspace(math.log(0.11), math.log(256), 64)).to(dtype)
    scales = torch.exp(torch.empty(3, 700).uniform_(math.log(0.01), math.log(1000))).to(dtype)
    scales[0, :64] = table  # exact table values
    scales[1, :3] = torch.tensor([math.nan, math.inf, -math.inf]).to(dtype)
    scales = scales.t()  # non-contiguous
    with backend("triton"):
        ours = F.build_indexes(scales, table)
    with backend("reference"):
        expected = F.build_indexes(scales, table)
    assert ours.dtype == torch.int32
    assert torch.equal(ours, expected)


def test_reductions_are_bitwise_deterministic():
    y, scales, means = _make("rows-over-a-block", torch.float32)
    with backend("triton"):
        first = (F.gaussian_rate(y, scales, means), F.gaussian_rate(y, scales, means, reduction="batch"), F.match_merge(y, means)[1])
        for _ in range(2):
            again = (F.gaussian_rate(y, scales, means), F.gaussian_rate(y, scales, means, reduction="batch"), F.match_merge(y, means)[1])
            assert all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize(
    ("scale_range", "spread"),
    [((0.05, 40.0), 1.0), ((0.01, 1e4), 8.0), ((4.0, 200.0), 3.0), ((0.11, 0.5), 12.0)],
    ids=["typical", "wide-tails", "around-the-series-switch", "small-scales-deep-tails"],
)
def test_triton_bits_match_float64_everywhere(scale_range, spread):
    y, scales, means = gaussian_inputs((64, 128), scale_range=scale_range, spread=spread)
    with backend("triton"):
        likelihood = F.gaussian_likelihood(y, scales, means)
        per_sample = F.gaussian_rate(y, scales, means, reduction="batch")
    exact = float64_bits(y, scales, means)
    tolerance = torch.maximum(torch.full_like(exact, 1e-4), 1e-6 * exact.abs())
    assert_verbose_allclose(-torch.log2(likelihood.double()), exact, atol=tolerance, name="-log2 p vs float64")
    # The fused rate: each row's error is at most the sum of its elements' tolerances, plus
    # float32 summation (128 terms).
    row_tolerance = tolerance.sum(dim=1) + 128 * 2e-7 * exact.sum(dim=1)
    assert_verbose_allclose(per_sample, exact.sum(dim=1), atol=row_tolerance, name="row bits vs float64")


# The interpreter's numpy arithmetic warns on inf - inf and overflow; those are the point.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_non_finite_inputs_behave_like_the_reference():
    nan, inf = math.nan, math.inf
    y = torch.tensor([nan, 1.0, inf, 2.0, 1.0, 1.0, 3.0])
    scales = torch.tensor([1.0, nan, 1.0, 1.0, inf, -inf, 1000.0])
    means = torch.tensor([0.0, 0.0, 0.0, nan, 0.0, 0.0, -inf])
    c2 = torch.tensor([nan, 1.2, inf, 2.0, 1.0, -1.0, 3.0])
    results = {}
    for name in ("triton", "reference"):
        leaves = _leaves((y, scales, means))
        with backend(name):
            p = F.gaussian_likelihood(*leaves)
            bits = F.gaussian_rate(*[t.reshape(7, 1) for t in leaves], reduction="batch")
            grads = torch.autograd.grad(p.sum() + bits.sum(), leaves)
            y0, align = F.match_merge(y, c2)
        results[name] = (p, bits, *grads, y0, align)
    names = ("p", "bits", "dy", "dscales", "dmeans", "y0", "align")
    for name, got, want in zip(names, results["triton"], results["reference"]):
        assert torch.equal(got.isnan(), want.isnan()), name
        assert_verbose_allclose(got, want, atol=1e-4, rtol=1e-5, name=name)


def test_empty_tensors():
    with backend("triton"):
        empty = torch.empty(0, 4, requires_grad=True)
        scales = torch.ones(0, 4, requires_grad=True)
        bits = F.gaussian_rate(empty, scales)
        assert bits.item() == 0.0
        assert F.gaussian_rate(empty, scales, reduction="batch").shape == (0,)
        assert F.gaussian_rate(torch.empty(3, 0), torch.ones(3, 0), reduction="batch").tolist() == [0.0] * 3
        assert F.gaussian_likelihood(empty, scales).shape == (0, 4)
        gy, gs = torch.autograd.grad(bits, (empty, scales))
        assert gy.shape == gs.shape == (0, 4)
        y0, align = F.match_merge(torch.empty(0), torch.empty(0))
        assert y0.shape == (0,) and align.item() == 0.0
        assert F.build_indexes(torch.empty(2, 0), torch.ones(3)).shape == (2, 0)


def test_float64_cannot_be_forced_onto_triton():
    assert kernels.triton_usable("cpu")
    with backend("triton"), pytest.raises(TypeError, match="float16, bfloat16 or float32"):
        F.gaussian_rate(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))


def test_auto_dispatch_keeps_cpu_tensors_on_the_reference(monkeypatch):
    from gwn_fast.ops import _dispatch

    assert not _dispatch.use_triton("auto", torch.zeros(1))
    assert _dispatch.use_triton("triton", torch.zeros(1))


def test_launchers_validate_their_inputs():
    gaussian = pytest.importorskip("gwn_fast.kernels.gaussian")
    merge = pytest.importorskip("gwn_fast.kernels.merge")
    indexes = pytest.importorskip("gwn_fast.kernels.indexes")
    with pytest.raises(ValueError, match="scales must have the shape of y"):
        gaussian.gaussian_likelihood_forward(torch.zeros(3), torch.ones(4), None, 0.11, 1e-9, True)
    with pytest.raises(TypeError, match="means must have the dtype of y"):
        gaussian.gaussian_rate_forward(torch.zeros(3), torch.ones(3), torch.zeros(3).half(), 0.11, 1e-9, True, False)
    with pytest.raises(ValueError, match="grad_bits must have 2 element"):
        gaussian.gaussian_rate_backward(
            torch.ones(3), torch.zeros(2, 3), torch.ones(2, 3), None, 0.11, 1e-9, True, False, True, (True, True, True)
        )
    with pytest.raises(ValueError, match="c1 and c2 must have the same shape"):
        merge.match_merge_forward(torch.zeros(3), torch.zeros(2), True)
    with pytest.raises(TypeError, match="scale_table must have the dtype of scales"):
        indexes.build_indexes_forward(torch.ones(3), torch.ones(3, dtype=torch.float64))


def test_compiled_function_runs_the_kernels():
    y, scales, means = _leaves(_make("odd-3d", torch.float32))

    def step(y, scales, means):
        y0, align = F.match_merge(y, means)
        return F.gaussian_rate(y0, scales, means, rate_grad="smooth") + align

    with backend("triton"):
        eager = step(y, scales, means)
        eager_grads = torch.autograd.grad(eager, (y, scales, means))
        torch._dynamo.reset()
        compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(y, scales, means)
        compiled_grads = torch.autograd.grad(compiled, (y, scales, means))
    assert torch.equal(eager, compiled)
    for got, want in zip(compiled_grads, eager_grads):
        assert torch.equal(got, want)


@pytest.mark.parametrize("mean", [-0.5, 0.5, 1.5, math.nextafter(-0.5, -1.0), math.nextafter(0.5, 1.0), 0.3])
def test_kernel_likelihood_is_a_pmf_at_half_integer_means(mean):
    # The kernels bin the residual as the coder does, k = floor(y - mean + 1/2): over the
    # integers the likelihood sums to 1 for every mean (the paper's half-toward-zero
    # rounding gives up to 2 at mean = +-0.5), and the fused rate and the gradients agree
    # with the reference, whose bins are the same.
    y = torch.arange(-300, 301, dtype=torch.float32)
    for scale in (0.11, 0.2, 0.55, 2.0, 30.0):
        scales = torch.full_like(y, scale)
        means = torch.full_like(y, mean)
        with backend("triton"):
            p = F.gaussian_likelihood(y, scales, means)
            bits = F.gaussian_rate(y, scales, means)
        assert abs(p.double().sum().item() - 1.0) < 1e-6, (mean, scale, p.double().sum().item())
        with backend("reference"):
            expected = F.gaussian_likelihood(y, scales, means)
        assert_verbose_allclose(p, expected, atol=1e-7, rtol=2e-6, name="p")
        assert abs(bits.item() - (-torch.log2(expected.double())).sum().item()) < 1e-3 * max(1.0, bits.item())
