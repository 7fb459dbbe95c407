"""The public functional API: validation, broadcasting, reductions, determinism, backend
selection, rate_grad modes, and parity with CompressAI's composed likelihood."""

import math

import pytest
import torch
from utils import assert_verbose_allclose, gaussian_inputs

from gwn_fast import functional as F
from gwn_fast import kernels
from gwn_fast.ops import backend, current_backend


# --------------------------------------------------------------------------------------
# bad input -> clear errors
# --------------------------------------------------------------------------------------
def test_mismatched_shapes_name_the_arguments():
    with pytest.raises(ValueError, match="c1 and c2 must have the same shape"):
        F.match_merge(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"scales of shape \(4,\) cannot be broadcast to the shape of y \(3,\)"):
        F.gaussian_likelihood(torch.zeros(3), torch.ones(4))
    with pytest.raises(ValueError, match="means"):
        F.gaussian_rate(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(3, 2))
    # y defines the shape: a larger scales tensor is not broadcast down.
    with pytest.raises(ValueError, match="scales"):
        F.gaussian_likelihood(torch.zeros(3), torch.ones(2, 3))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: F.match_merge(torch.zeros(3, dtype=torch.int32), torch.zeros(3)), "c1"),
        (lambda: F.match_merge(torch.zeros(3), torch.zeros(3, dtype=torch.int64)), "c2"),
        (lambda: F.gaussian_likelihood(torch.zeros(3, dtype=torch.int64), torch.ones(3)), "y"),
        (lambda: F.gaussian_rate(torch.zeros(3), torch.ones(3, dtype=torch.int32)), "scales"),
        (lambda: F.gaussian_rate(torch.zeros(3), torch.ones(3), torch.zeros(3, dtype=torch.bool)), "means"),
        (lambda: F.build_indexes(torch.ones(3, dtype=torch.int32), torch.ones(2)), "scales"),
        (lambda: F.build_indexes(torch.ones(3), torch.ones(2, dtype=torch.int32)), "scale_table"),
        (lambda: F.gaussian_likelihood([0.0, 1.0], torch.ones(2)), "y"),
    ],
)
def test_non_float_inputs_raise_type_error(call, name):
    with pytest.raises(TypeError, match=name):
        call()


def test_wrong_devices_raise_value_error():
    # The meta device stands in for a second device on a CPU-only machine.
    on_meta = torch.ones(3, device="meta")
    with pytest.raises(ValueError, match=r"scales must be on the device of y \(cpu\), got meta"):
        F.gaussian_likelihood(torch.zeros(3), on_meta)
    with pytest.raises(ValueError, match="means must be on the device of y"):
        F.gaussian_rate(torch.zeros(3), torch.ones(3), on_meta)
    with pytest.raises(ValueError, match="c2 must be on the device of c1"):
        F.match_merge(torch.zeros(3), on_meta)
    with pytest.raises(ValueError, match="scale_table must be on the device of scales"):
        F.build_indexes(torch.ones(3), on_meta)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"rate_grad": "straight"}, ValueError, r"rate_grad must be one of \('ste', 'smooth', 'noise'\)"),
        ({"scale_bound": 0.0}, ValueError, "scale_bound must be a positive finite number"),
        ({"likelihood_bound": -1e-9}, ValueError, "likelihood_bound"),
        ({"likelihood_bound": math.nan}, ValueError, "likelihood_bound"),
        ({"scale_bound": math.inf}, ValueError, "scale_bound"),
        ({"scale_bound": True}, TypeError, "scale_bound must be a number"),
        ({"scale_bound": torch.tensor(0.1)}, TypeError, "scale_bound"),
    ],
)
def test_bad_options_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        F.gaussian_likelihood(torch.zeros(3), torch.ones(3), **kwargs)
    with pytest.raises(error, match=message):
        F.gaussian_rate(torch.zeros(3), torch.ones(3), **kwargs)


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, "8", None])
def test_bad_mean_steps_raise(bad):
    with pytest.raises(ValueError, match=r"mean_steps must be an int >= 1 .*got"):
        F.gaussian_rate(torch.zeros(3), torch.ones(3), torch.zeros(3), mean_steps=bad)
    with pytest.raises(ValueError, match="mean_steps"):  # checked with or without means
        F.gaussian_rate(torch.zeros(3), torch.ones(3), mean_steps=bad)


def test_bad_reduction_and_table_raise():
    with pytest.raises(ValueError, match=r"reduction must be one of \('sum', 'batch'\), got 'mean'"):
        F.gaussian_rate(torch.zeros(3), torch.ones(3), reduction="mean")
    with pytest.raises(ValueError, match="batch dimension"):
        F.gaussian_rate(torch.tensor(0.0), torch.tensor(1.0), reduction="batch")
    with pytest.raises(ValueError, match="scale_table must be a non-empty 1-D tensor"):
        F.build_indexes(torch.ones(3), torch.ones(2, 2))
    with pytest.raises(ValueError, match="scale_table must be a non-empty 1-D tensor"):
        F.build_indexes(torch.ones(3), torch.ones(0))


def test_backend_validates_its_name_and_restores_the_previous_one():
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'triton', 'reference'\)"):
        with backend("cuda"):
            pass
    assert current_backend() == "auto"
    with backend("reference"):
        assert current_backend() == "reference"
        with pytest.raises(RuntimeError, match="boom"), backend("auto"):
            raise RuntimeError("boom")
        assert current_backend() == "reference"
    assert current_backend() == "auto"


@pytest.mark.skipif(kernels.triton_usable("cpu"), reason="the Triton interpreter is active")
def test_forcing_triton_where_it_cannot_run_says_why():
    message = "Triton cannot run on cpu tensors"
    with backend("triton"):
        with pytest.raises(RuntimeError, match=message):
            F.gaussian_rate(torch.zeros(3), torch.ones(3))
        with pytest.raises(RuntimeError, match=message):
            F.match_merge(torch.zeros(3), torch.zeros(3))
        with pytest.raises(RuntimeError, match=message):
            F.build_indexes(torch.ones(3), torch.ones(2))


# --------------------------------------------------------------------------------------
# semantics
# --------------------------------------------------------------------------------------
def test_means_and_scales_broadcast_like_their_expanded_versions():
    y = torch.round(torch.randn(2, 3, 4, 5) * 3).requires_grad_()
    scales = (torch.rand(3, 1, 1) + 0.2).requires_grad_()
    means = torch.randn(1, 3, 1, 5).requires_grad_()
    bits = F.gaussian_rate(y, scales, means)
    grads = torch.autograd.grad(bits, (y, scales, means))

    expanded = [t.detach().expand(y.shape).clone().requires_grad_() for t in (scales, means)]
    bits_expanded = F.gaussian_rate(y, *expanded)
    grads_expanded = torch.autograd.grad(bits_expanded, (y, *expanded))
    assert bits.item() == pytest.approx(bits_expanded.item(), rel=1e-6)
    assert_verbose_allclose(grads[0], grads_expanded[0], name="grad y")
    assert_verbose_allclose(grads[1], grads_expanded[1].sum((0, 2, 3), keepdim=True)[0], atol=1e-4, name="grad scales")
    assert_verbose_allclose(grads[2], grads_expanded[2].sum((0, 2), keepdim=True), atol=1e-4, name="grad means")


def test_mixed_float_dtypes_are_promoted():
    y = torch.round(torch.randn(8) * 2)
    p = F.gaussian_likelihood(y, torch.ones(8, dtype=torch.float64))
    assert p.dtype == torch.float64
    bits = F.gaussian_rate(y.half(), torch.ones(8, dtype=torch.bfloat16))
    assert bits.dtype == torch.float32  # float16 x bfloat16 -> float32
    y0, align = F.match_merge(y.half(), y.double())
    assert y0.dtype == torch.float64 and align.dtype == torch.float64


def test_half_precision_results_keep_their_dtype():
    y, scales, means = gaussian_inputs((64,), dtype=torch.float16)
    # Likelihoods are at least float32: float16 cannot hold the 1e-9 bound.
    assert F.gaussian_likelihood(y, scales, means).dtype == torch.float32
    assert F.gaussian_rate(y, scales, means).dtype == torch.float32
    y0, align = F.match_merge(y, means)
    assert y0.dtype == torch.float16 and align.dtype == torch.float32


def test_batch_reduction_sums_to_the_total():
    y, scales, means = gaussian_inputs((4, 3, 5, 7))
    per_sample = F.gaussian_rate(y, scales, means, reduction="batch")
    assert per_sample.shape == (4,)
    total = F.gaussian_rate(y, scales, means)
    assert total.shape == ()
    assert per_sample.sum().item() == pytest.approx(total.item(), rel=1e-6)
    for b in range(4):
        assert per_sample[b].item() == pytest.approx(F.gaussian_rate(y[b], scales[b], means[b]).item(), rel=1e-6)


def test_rate_equals_minus_log2_of_the_likelihood():
    y, scales, means = (t.requires_grad_() for t in gaussian_inputs((1000,), scale_range=(0.05, 200.0), spread=2.0))
    bits = F.gaussian_rate(y, scales, means)
    composed = (-torch.log2(F.gaussian_likelihood(y, scales, means))).sum()
    assert bits.item() == pytest.approx(composed.item(), rel=1e-5)
    grads = torch.autograd.grad(bits, (y, scales, means))
    grads_composed = torch.autograd.grad(composed, (y, scales, means))
    for name, a, b in zip(("y", "scales", "means"), grads, grads_composed):
        assert_verbose_allclose(a, b, atol=1e-4, rtol=1e-4, name=f"grad {name}")


def test_smooth_rate_gradient_divides_by_the_continuous_likelihood():
    # Documented difference: the fused smooth rate differentiates -log2 p(r) at the
    # unrounded r, while -log2 of the smooth likelihood divides p'(r) by p(round(r)).
    y = torch.tensor([1.4], dtype=torch.float64, requires_grad=True)
    scales = torch.tensor([0.5], dtype=torch.float64)
    (fused,) = torch.autograd.grad(F.gaussian_rate(y, scales, rate_grad="smooth"), y)
    p_smooth = F.gaussian_likelihood(y, scales, rate_grad="smooth")
    (composed,) = torch.autograd.grad(-torch.log2(p_smooth).sum(), y)
    p_continuous = F.gaussian_likelihood(y.detach(), scales, round_residual=False)
    assert fused.item() == pytest.approx(composed.item() * p_smooth.item() / p_continuous.item(), rel=1e-9)


def test_ste_and_smooth_share_values():
    y, scales, means = gaussian_inputs((500,), spread=2.0)
    for fn in (F.gaussian_likelihood, F.gaussian_rate):
        assert torch.equal(fn(y, scales, means, rate_grad="ste"), fn(y, scales, means, rate_grad="smooth"))


def test_noise_mode_adds_fresh_uniform_noise_and_ignores_rounding():
    y = torch.zeros(20000)
    scales = torch.full((20000,), 2.0)
    torch.manual_seed(1)
    noisy = F.gaussian_likelihood(y, scales, rate_grad="noise")
    torch.manual_seed(1)
    again = F.gaussian_likelihood(y, scales, rate_grad="noise", round_residual=False)
    assert torch.equal(noisy, again)  # seeded: reproducible, round_residual irrelevant
    torch.manual_seed(1)
    expected = F.gaussian_likelihood(y + torch.empty_like(y).uniform_(-0.5, 0.5), scales, round_residual=False)
    assert torch.equal(noisy, expected)
    rounded = F.gaussian_likelihood(y, scales)
    assert noisy.std() > 0 and bool((noisy < rounded).all())  # the mode is at r = 0


def test_reductions_are_bitwise_deterministic():
    y, scales, means = gaussian_inputs((2, 8, 33, 17), spread=2.0)
    first_bits = F.gaussian_rate(y, scales, means, reduction="batch")
    _, first_align = F.match_merge(y, means)
    for _ in range(3):
        assert torch.equal(F.gaussian_rate(y, scales, means, reduction="batch"), first_bits)
        assert torch.equal(F.match_merge(y, means)[1], first_align)


def test_non_contiguous_inputs():
    y, scales, means = gaussian_inputs((4, 6, 5, 3))
    permuted = [t.permute(0, 3, 1, 2) for t in (y, scales, means)]
    contiguous = [t.contiguous() for t in permuted]
    assert torch.equal(F.gaussian_likelihood(*permuted), F.gaussian_likelihood(*contiguous))
    assert torch.equal(F.gaussian_rate(*permuted, reduction="batch"), F.gaussian_rate(*contiguous, reduction="batch"))
    y0, align = F.match_merge(permuted[0], permuted[2])
    y0_c, align_c = F.match_merge(contiguous[0], contiguous[2])
    assert torch.equal(y0, y0_c) and torch.equal(align, align_c)


# --------------------------------------------------------------------------------------
# parity with CompressAI (round_residual=False is CompressAI's GaussianConditional)
# --------------------------------------------------------------------------------------
def test_likelihood_and_gradients_match_compressai():
    compressai_models = pytest.importorskip("compressai.entropy_models")
    conditional = compressai_models.GaussianConditional(None)
    y, scales, means = gaussian_inputs((4096,), scale_range=(0.02, 40.0), spread=3.0)
    y = y + torch.rand_like(y) - 0.5  # non-integer residuals
    inputs = [t.clone().requires_grad_() for t in (y, scales, means)]
    theirs = conditional.likelihood_lower_bound(conditional._likelihood(*inputs))
    their_grads = torch.autograd.grad((-torch.log2(theirs)).sum(), inputs)

    ours_inputs = [t.clone().requires_grad_() for t in (y, scales, means)]
    ours = F.gaussian_likelihood(*ours_inputs, round_residual=False)
    our_grads = torch.autograd.grad(F.gaussian_rate(*ours_inputs, round_residual=False), ours_inputs)
    assert_verbose_allclose(ours, theirs, atol=1e-7, rtol=1e-4, name="likelihood")
    for name, a, b in zip(("y", "scales", "means"), our_grads, their_grads):
        assert_verbose_allclose(a, b, atol=1e-4, rtol=1e-3, name=f"grad {name}")
