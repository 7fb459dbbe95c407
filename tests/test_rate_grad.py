"""Rate-gradient modes and the likelihood as a pmf, tested where they matter: the gradient
that reaches the encoder's unrounded output through the whole codec, and the coded bytes
against the trained likelihood."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gwn_fast import GrayWynerCodec, GrayWynerLoss
from gwn_fast import functional as F
from gwn_fast.coder import fixed_overhead
from gwn_fast.models.entropy_parameters import checkerboard_anchor_mask


# --------------------------------------------------------------------------------------
# independent oracles (float64, autograd through torch.special.ndtr)
# --------------------------------------------------------------------------------------
def bin_bits(residual: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``-log2(Phi((r + 1/2)/s) - Phi((r - 1/2)/s))`` per element, differentiable in ``r``."""
    mass = torch.special.ndtr((residual + 0.5) / scale) - torch.special.ndtr((residual - 0.5) / scale)
    return -torch.log2(mass)


def continuous_rate_grad(u: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """d/du of the continuous bin rate at the unrounded ``u``."""
    u = u.detach().double().requires_grad_()
    (grad,) = torch.autograd.grad(bin_bits(u - mean.double(), scale.double()).sum(), u)
    return grad


def exact_bits(y: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Bits of integer ``y`` in its coder bin ``k = floor(y - mean + 1/2)``."""
    k = torch.floor(y.double() - mean.double() + 0.5)
    return bin_bits(k, scale.double())


# --------------------------------------------------------------------------------------
# the likelihood is a pmf over the integers, for every mean
# --------------------------------------------------------------------------------------
HALF = -0.5
MEANS = [-0.5, 0.5, 1.5, -1.5, 0.3, 2.5, math.nextafter(-0.5, -1), math.nextafter(-0.5, 0), math.nextafter(0.5, 1)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mean", MEANS)
def test_likelihood_sums_to_one_over_the_integers(mean, dtype):
    y = torch.arange(-300, 301, dtype=dtype)
    for scale in (0.11, 0.2, 0.55, 2.0, 7.0, 30.0):
        s = torch.tensor(scale, dtype=dtype)
        m = torch.tensor(mean, dtype=dtype)
        total = F.gaussian_likelihood(y, s, m).double().sum().item()
        # Bins past the tails are floored at likelihood_bound = 1e-9 each (< 6e-7 in all).
        assert abs(total - 1.0) < 1e-6, (mean, scale, total)
        bits = F.gaussian_rate(y, s.expand_as(y), m.expand_as(y), reduction="batch").double()
        torch.testing.assert_close(bits, -torch.log2(F.gaussian_likelihood(y, s, m).double()), rtol=2e-6, atol=1e-5)


def test_bins_follow_the_coder_map_at_half_integer_means():
    # mean = -0.5: y = -1 and y = 0 are the bins k = -1 and k = 0, not one shared bin.
    y = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    p = F.gaussian_likelihood(y, torch.tensor(0.55, dtype=torch.float64), torch.tensor(-0.5, dtype=torch.float64))
    expected = torch.exp2(-exact_bits(y, torch.tensor(-0.5, dtype=torch.float64), torch.tensor(0.55, dtype=torch.float64)))
    torch.testing.assert_close(p, expected, rtol=1e-9, atol=0)
    assert abs(p.sum().item() - (p[0] + p[1]).item()) < 1e-15 and p.sum().item() < 1.0


# --------------------------------------------------------------------------------------
# functional level: the fused rate and -log2(likelihood) agree in every mode
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate_grad", ["ste", "smooth", "noise"])
def test_fused_rate_and_likelihood_agree_in_every_mode(rate_grad):
    g = torch.Generator().manual_seed(0)
    u = (torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64) * 2).requires_grad_()
    scales = (torch.rand(4, 3, 5, 5, generator=g, dtype=torch.float64) * 3 + 0.2).requires_grad_()
    means = (torch.randn(4, 3, 5, 5, generator=g, dtype=torch.float64)).requires_grad_()
    y = u + (torch.round(u) - u).detach()
    results = []
    for fused in (True, False):
        torch.manual_seed(5)  # the same noise sample for both ("noise")
        if fused:
            bits = F.gaussian_rate(y, scales, means, reduction="batch", rate_grad=rate_grad, latent=u)
        else:
            p = F.gaussian_likelihood(y, scales, means, rate_grad=rate_grad, latent=u)
            bits = -torch.log2(p).flatten(1).sum(1)
        grads = torch.autograd.grad(bits.sum(), (u, scales, means))
        results.append((bits, *grads))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------------
# functional level: mean_steps, the expected rate over the mean's two grid neighbours
# --------------------------------------------------------------------------------------
def two_pass_bits(y, scales, means, J, reduction, seed=None, per_element_rate=False, **kw):
    """What ``gaussian_rate(..., mean_steps=J)`` fuses: the rate of two likelihood passes
    at the mean's grid neighbours, ``(1 - t) b(floor(J mu)/J) + t b((floor(J mu) + 1)/J)``
    (floor detached), as the latent codec computed it before; ``J = 1`` is one pass at the
    mean. Each pass draws its "noise" sample from ``seed``, as the fused pass draws one.

    ``per_element_rate``: ``b`` from ``gaussian_rate`` (``mean_steps=1``) per element
    instead of ``-log2(gaussian_likelihood)``. The two differ in one gradient only:
    ``"smooth"`` without a latent on a binned residual, where the likelihood's is the
    continuous likelihood's derivative over the exact one and the rate's that of the
    continuous rate (the codec always passes the latent)."""

    def b(mean):
        if seed is not None:
            torch.manual_seed(seed)
        if per_element_rate:
            column = lambda t: t.reshape(-1, 1) if t is not None else None  # noqa: E731
            at = {**kw, "latent": column(kw.get("latent"))}
            return F.gaussian_rate(column(y), column(scales), column(mean), reduction="batch", **at).reshape(y.shape)
        return -torch.log2(F.gaussian_likelihood(y, scales, mean, **kw))

    if J == 1:
        bits = b(means)
    else:
        scaled = means * J
        low = torch.floor(scaled.detach())
        t = scaled - low
        below, above = b(low / J), b((low + 1) / J)
        bits = below + t * (above - below)
    return bits.flatten(1).sum(1) if reduction == "batch" else bits.sum()


def _grid_test_inputs():
    g = torch.Generator().manual_seed(3)
    shape = (3, 2, 4, 5)
    u = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).requires_grad_()
    y = torch.round(u.detach()).requires_grad_()  # the rounded latent, its own leaf
    scales = torch.rand(shape, generator=g, dtype=torch.float64) * 3 + 0.05
    means = torch.randn(shape, generator=g, dtype=torch.float64)
    flat_means, flat_scales, flat_y = means.view(-1), scales.view(-1), y.detach().view(-1)
    # exactly on grid points (of J = 8, some of J = 2 and 1), half-integers, next to them
    special = [0.0, 0.25, -1.375, 2.0, 0.5, -0.5, 1.5, -2.5, 0.625, math.nextafter(0.5, 1.0), math.nextafter(-0.5, -1.0), 0.124]
    flat_means[: len(special)] = torch.tensor(special, dtype=torch.float64)
    # far out in the tails at small scales: the likelihood bound and its gradient rule
    flat_y[-4:] = torch.tensor([9.0, -11.0, 14.0, 7.0], dtype=torch.float64)
    flat_scales[-4:] = torch.tensor([0.2, 0.3, 0.12, 0.08], dtype=torch.float64)
    flat_scales[-5] = 0.02  # below the scale bound
    return y, u, scales.requires_grad_(), means.requires_grad_()


@pytest.mark.parametrize("with_latent", [True, False], ids=["latent", "no-latent"])
@pytest.mark.parametrize("round_residual", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "batch"])
@pytest.mark.parametrize("rate_grad", ["ste", "smooth", "noise"])
@pytest.mark.parametrize("J", [1, 2, 8])
def test_fused_mean_steps_rate_equals_the_two_pass_formula(J, rate_grad, reduction, round_residual, with_latent):
    # Without a latent, "smooth" is the op's own smooth gradient and "noise" perturbs y.
    y, u, scales, means = _grid_test_inputs()
    kw = {"rate_grad": rate_grad, "latent": u if with_latent else None, "round_residual": round_residual}
    leaves = (y, scales, means, u)
    # Upstream gradients of both signs (the likelihood bound's rule depends on the sign).
    upstream = torch.tensor([0.7, -0.4, 1.3], dtype=torch.float64) if reduction == "batch" else torch.tensor(1.0, dtype=torch.float64)
    results = []
    for fused in (True, False):
        if fused:
            torch.manual_seed(9)
            bits = F.gaussian_rate(y, scales, means, reduction=reduction, mean_steps=J, **kw)
        else:
            per_element_rate = rate_grad == "smooth" and not with_latent and round_residual
            bits = two_pass_bits(y, scales, means, J, reduction, seed=9, per_element_rate=per_element_rate, **kw)
        grads = torch.autograd.grad(bits, leaves, upstream, allow_unused=True)
        results.append((bits, *grads))
    names = ("bits", "dy", "dscales", "dmeans", "dlatent")
    for name, got, want in zip(names, *results):
        assert (got is None) == (want is None), name
        if got is not None:
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f"{name}: {m}")
    # the mean's gradient J (b_above - b_below) is nonzero almost everywhere (with the
    # residual binned, the two neighbours mostly share a bin and so their bits)
    if J > 1 and not round_residual:
        assert bool((results[0][3] != 0).float().mean() > 0.9)


def test_mean_steps_is_exact_on_its_own_limits():
    y, u, scales, means = _grid_test_inputs()
    y, scales, means = y.detach(), scales.detach(), means.detach()
    # mean_steps=1 is the rate at the mean itself (the same op call as without it)
    assert torch.equal(F.gaussian_rate(y, scales, means, mean_steps=1), F.gaussian_rate(y, scales, means))
    # without means the mean is 0, on every grid: the same bits for every J
    for J in (2, 8):
        assert torch.equal(F.gaussian_rate(y, scales, mean_steps=J, reduction="batch"), F.gaussian_rate(y, scales, reduction="batch"))
    # means on the grid: the rate at the mean (t = 0)
    on_grid = torch.round(means * 8) / 8
    torch.testing.assert_close(F.gaussian_rate(y, scales, on_grid, mean_steps=8), F.gaussian_rate(y, scales, on_grid), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------------------
# model level: the gradient that reaches the encoder's output
# --------------------------------------------------------------------------------------
class FixedOutput(nn.Module):
    """An 'encoder' whose output is a parameter: its .grad is what reaches the encoder."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = nn.Parameter(value.clone())

    def forward(self, x):
        return self.value


class Flatten(nn.Module):
    def __init__(self, n_in, n_out):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_in, n_out))

    def forward(self, y):
        return self.net(y)


def fixed_codec(h1, h2, context="none", rate_grad="smooth", architecture="shared", mean_steps=8, **kwargs):
    C, h, w = h1.shape[1:]
    modules = [FixedOutput(h1), FixedOutput(h2)] if architecture == "shared" else [FixedOutput(h1)]
    codec = GrayWynerCodec(
        in_channels=1, out_channels=(2, 2), latent_channels=C, common_channels=C // 2, architecture=architecture,
        context=context, rate_grad=rate_grad, analysis=modules, stride=1, mean_steps=mean_steps,
        synthesis=[Flatten(C * h * w, 2), Flatten(C * h * w, 2)], **kwargs,
    )
    return codec.double().train()


def coded_bits(codec, y, means, scales):
    """Bits of integer ``y`` under the codec's coded pmf: the bin of the quantized mean
    (``mean_steps > 1``) or the binned residual (``mean_steps = 1``)."""
    if codec.gaussian.mean_steps == 1:
        return exact_bits(y, means, scales)
    return bin_bits(y.double() - codec.gaussian.quantize_means(means).double(), scales.double())


def training_bits(codec, y, means, scales):
    """Bits the codec trains on: with ``mean_steps = J > 1`` the expected coded cost when
    the mean is rounded down or up to the 1/J grid with probabilities ``(1 - t, t)``,
    ``t = frac(J mu)``; with ``J = 1`` the coded cost."""
    J = codec.gaussian.mean_steps
    if J == 1:
        return coded_bits(codec, y, means, scales)
    low = torch.floor(means.double() * J)
    t = means.double() * J - low
    return (1 - t) * coded_bits(codec, y, low / J, scales) + t * coded_bits(codec, y, (low + 1) / J, scales)


def y0_prior(codec):
    """(scales, quantized means) of Y0's per-channel prior (context "none"), ``[1, Cb, 1, 1]`` each."""
    scales, means = codec.entropy_parameters["y0"].prior.detach().chunk(2, 1)
    return scales.clamp_min(0.11), codec.gaussian.quantize_means(means)


def _candidates():
    # Common halves (channels 0, 1): matching pairs inside their bins (both round to 0 or to
    # 1), and pairs that do not match (0.3 vs 0.7). Private halves (channels 2, 3) anywhere.
    c1 = torch.tensor([[[0.30, -0.45], [0.20, 1.30]], [[0.30, 0.10], [-0.2, 0.45]]], dtype=torch.float64)
    c2 = torch.tensor([[[0.20, -0.10], [0.70, 0.80]], [[0.10, 0.40], [-0.3, 0.30]]], dtype=torch.float64)
    p1 = torch.tensor([[[0.40, -0.3], [1.6, -2.2]], [[0.05, 0.45], [-0.45, 2.7]]], dtype=torch.float64)
    p2 = torch.tensor([[[-0.2, 0.1], [0.49, -1.2]], [[0.35, -0.4], [3.4, 0.2]]], dtype=torch.float64)
    h1 = torch.cat([c1, p1]).unsqueeze(0)
    h2 = torch.cat([c2, p2]).unsqueeze(0)
    return h1, h2


def _set_prior(codec, scale, mean):
    with torch.no_grad():
        ep = codec.entropy_parameters["y0"]
        ep.prior[:, : ep.channels] = scale
        ep.prior[:, ep.channels :] = mean


@pytest.mark.parametrize("mean_steps", [1, 8])
def test_smooth_gradient_reaches_the_unrounded_common_latent(mean_steps):
    h1, h2 = _candidates()
    codec = fixed_codec(h1, h2, rate_grad="smooth", mean_steps=mean_steps)
    _set_prior(codec, 0.5, 0.0)
    out = codec(torch.zeros(1, 1, 2, 2, dtype=torch.float64))
    out["bits"]["y0"].sum().backward()
    c1, c2 = h1[0, :2], h2[0, :2]
    match = torch.round(c1) == torch.round(c2)  # no ties in these values
    u0 = torch.where(match, 0.5 * (c1 + c2), torch.zeros_like(c1))
    scales, means = y0_prior(codec)
    expected = 0.5 * continuous_rate_grad(u0, means[0], scales[0]) * match
    got1, got2 = codec.analysis[0].value.grad[0, :2], codec.analysis[1].value.grad[0, :2]
    torch.testing.assert_close(got1, expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got2, expected, rtol=1e-9, atol=1e-12)
    # Inside their bin (rounding to the mean's bin) matched elements are pulled toward the
    # mean: a nonzero gradient of the sign of u0 - mean.
    inside = match & (torch.round(u0) == 0) & (u0 != 0)
    assert inside.sum() >= 4
    assert bool((torch.sign(got1[inside]) == torch.sign(u0[inside])).all())
    assert bool((got1[inside].abs() > 0.1).all())
    # The value stays the exact bin rate at the rounded latent.
    y0 = out["latents"]["y0"][0]
    torch.testing.assert_close(out["bits"]["y0"].sum(), coded_bits(codec, y0, means[0], scales[0]).sum(), rtol=1e-6, atol=1e-6)


def test_ste_gradient_is_the_papers_at_the_rounded_residual():
    h1, h2 = _candidates()
    codec = fixed_codec(h1, h2, rate_grad="ste", mean_steps=1)
    _set_prior(codec, 0.5, 0.0)
    out = codec(torch.zeros(1, 1, 2, 2, dtype=torch.float64))
    out["bits"]["y0"].sum().backward()
    y0 = out["latents"]["y0"][0].detach()
    scales, means = y0_prior(codec)
    match = torch.round(h1[0, :2]) == torch.round(h2[0, :2])
    # d bits/d y0 at the rounded residual, halved onto each candidate where they match.
    expected = 0.5 * continuous_rate_grad(torch.floor(y0 - means[0] + 0.5) + means[0], means[0], scales[0]) * match
    torch.testing.assert_close(codec.analysis[0].value.grad[0, :2], expected, rtol=1e-9, atol=1e-12)
    # Elements in the mean's bin get no gradient: what "smooth" exists to fix.
    assert bool((codec.analysis[0].value.grad[0, :2][y0 == 0] == 0).all())


def test_smooth_gradient_of_private_latents_through_the_conditional_model():
    h1, h2 = _candidates()
    codec = fixed_codec(h1, h2, context="checkerboard", rate_grad="smooth")
    ep = codec.entropy_parameters["y1"]
    with torch.no_grad():
        # Scales near 1 and means near 0.2 (a trained model's range, far from the bound).
        ep.head[-1].weight.mul_(0.01)
        ep.head[-1].bias.copy_(torch.tensor([1.3, 0.9, 0.2, -0.1], dtype=torch.float64))
    out = codec(torch.zeros(1, 1, 2, 2, dtype=torch.float64))
    out["bits"]["y1"].sum().backward()
    with torch.no_grad():
        scales, means = ep(out["latents"]["y1"], out["latents"]["y0"])
    # training with mean_steps J: the expected rate over the two grid means around mu
    J = codec.gaussian.mean_steps
    low = torch.floor(means * J)
    t = means * J - low
    u1 = h1[0, 2:]
    s = scales[0].clamp_min(0.11)
    expected = (1 - t[0]) * continuous_rate_grad(u1, low[0] / J, s) + t[0] * continuous_rate_grad(u1, (low[0] + 1) / J, s)
    got = codec.analysis[0].value.grad[0, 2:]
    # Non-anchors feed no context: their gradient is the direct term alone.
    rest = ~checkerboard_anchor_mask(2, 2, dtype=torch.bool)[0, 0].expand_as(u1)
    torch.testing.assert_close(got[rest], expected[rest], rtol=1e-7, atol=1e-9)
    assert bool((got[rest].abs() > 1e-3).all())


def test_noise_mode_takes_the_rate_at_the_continuous_latent_plus_noise():
    h1, h2 = _candidates()
    codec = fixed_codec(h1, h2, rate_grad="noise", architecture="joint")
    _set_prior(codec, 0.7, 0.25)  # on the 1/8 grid of the coded means
    torch.manual_seed(11)
    out = codec(torch.zeros(1, 1, 2, 2, dtype=torch.float64))
    torch.manual_seed(11)
    noise = torch.empty_like(h1).uniform_(-0.5, 0.5)
    out["bits"]["y0"].sum().backward()
    scales, means = y0_prior(codec)
    u = h1[0] + noise[0]
    torch.testing.assert_close(out["bits"]["y0"].sum(), bin_bits(u - means[0], scales[0]).sum(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(codec.analysis[0].value.grad[0], continuous_rate_grad(u, means[0], scales[0]), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("rate_grad", ["ste", "smooth", "noise"])
@pytest.mark.parametrize("context", ["none", "checkerboard"])
def test_bottleneck_prior_modes_reach_the_encoder(rate_grad, context):
    h1, h2 = _candidates()
    codec = fixed_codec(h1, h2, context=context, rate_grad=rate_grad, y0_prior="bottleneck")
    out = codec(torch.zeros(1, 1, 2, 2, dtype=torch.float64))
    out["bits"]["y0"].sum().backward()
    grad = codec.analysis[0].value.grad[0, :2]
    y0 = out["latents"]["y0"][0]
    anchor = checkerboard_anchor_mask(2, 2, dtype=torch.bool)[0, 0].expand_as(y0)
    match = torch.round(h1[0, :2]) == torch.round(h2[0, :2])
    on_prior = anchor if context == "checkerboard" else torch.ones_like(anchor)
    moved = grad[on_prior & match] != 0
    if rate_grad == "ste":
        # Integer latents: the derivative of the bottleneck's bin mass at the integer.
        assert grad.abs().sum() > 0
    else:
        assert bool(moved.all()), grad
    assert bool((grad[~match] == 0).all())
    # The value is the exact bin mass at the integer latent in ste/smooth.
    if rate_grad != "noise":
        lik = codec.y0_bottleneck.likelihood(out["latents"]["y0"].detach())
        bits = -torch.log2(torch.where(on_prior.unsqueeze(0), lik, out["likelihoods"]["y0"].detach()))
        torch.testing.assert_close(out["bits"]["y0"].sum().detach(), bits.sum(), rtol=1e-6, atol=1e-6)


def test_loss_reads_the_fused_bits_and_lazy_likelihoods_agree():
    h1, h2 = _candidates()
    codec = fixed_codec(h1, h2, rate_grad="smooth", context="checkerboard")
    out = codec(torch.zeros(1, 1, 2, 2, dtype=torch.float64))
    assert set(out["likelihoods"]) == {"y0", "y1", "y2"} and len(out["likelihoods"]) == 3
    for name in ("y0", "y1", "y2"):
        torch.testing.assert_close(-torch.log2(out["likelihoods"][name]).flatten(1).sum(1), out["bits"][name], rtol=1e-6, atol=1e-6)
    terms = GrayWynerLoss(beta=2.0, rate_unit="sample")(out, (torch.zeros(1, 2, dtype=torch.float64),) * 2)
    torch.testing.assert_close(terms["r0"], out["bits"]["y0"].sum())


# --------------------------------------------------------------------------------------
# coded bytes equal the trained likelihood, also at a half-integer prior mean
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mean_steps", [1, 8])
def test_payload_matches_the_estimate_at_a_half_integer_mean(mean_steps):
    g = torch.Generator().manual_seed(0)
    n, C, h, w = 64, 4, 2, 2
    # Y0 (2 channels) takes the values -1 and 0 with the mean exactly -0.5: the paper's
    # rounding scores both as one bin; the coder codes two bins.
    y0 = (torch.rand(n, 2, h, w, generator=g) < 0.5).double().neg()
    private = torch.randn(n, 2, h, w, generator=g, dtype=torch.float64) * 2
    latent = torch.cat([y0, private], 1)
    codec = GrayWynerCodec(
        in_channels=C, out_channels=(2, 2), latent_channels=C, common_channels=2, architecture="shared",
        context="none", analysis=[nn.Identity(), nn.Identity()], stride=1, mean_steps=mean_steps,
        synthesis=[Flatten(C * h * w, 2), Flatten(C * h * w, 2)],
    )
    # A scale on the coder's table (about 0.3), so that only the CDFs' 16-bit quantization
    # separates the coded pmf from the likelihood.
    table = codec.gaussian.scale_table
    _set_prior(codec, float(table[(table - 0.3).abs().argmin()]), -0.5)
    codec.eval().update()
    x = latent.float()[:, :C]
    # Both encoders see cat(x, x): take the first C channels as the latent.
    codec.analysis = nn.ModuleList([_FirstChannels(C), _FirstChannels(C)])
    out = codec(x)
    enc = codec.compress(x, single_stream=True)
    # Y0 is the subject (the private latents' untrained conditional models put their
    # values in the escape tails; trained codecs are checked in test_codec.py).
    estimate = out["bits"]["y0"].sum().item()
    stream = enc["strings"]["common"][0]
    payload = 8 * (len(stream) - fixed_overhead(stream))
    assert abs(payload - estimate) <= max(0.01 * estimate, 0.05 * n), (payload, estimate)
    # The estimate is a real code length, not the ~0 bits of the paper's rounding: with
    # one table per fraction of the mean an element of {-1, 0} around mean -1/2 costs
    # about 1 bit; with CompressAI's zero-mean tables more.
    per_element = out["bits"]["y0"].sum().item() / y0.numel()
    assert (0.95 < per_element < 1.1) if mean_steps == 8 else (per_element > 1.2), per_element


class _FirstChannels(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.channels = channels

    def forward(self, x):
        return x[:, : self.channels]


@pytest.mark.parametrize("architecture", ["separated", "combined", "independent", "joint"])
def test_smooth_gradient_reaches_every_architectures_unrounded_latents(architecture):
    # Every latent of every architecture: the rate's gradient at the encoder's output is
    # the continuous rate's at u (the models' means/scales quantized as coded).
    g = torch.Generator().manual_seed(1)
    C, h, w = 4, 2, 2
    sizes = {"separated": [2, 2, 2], "combined": [6], "independent": [4, 4], "joint": [4]}[architecture]
    # Values inside their bins (|u - round(u)| < 1/2 and not 0): "ste" gives them no
    # gradient at mean 0.
    outputs = [(torch.rand(1, n, h, w, generator=g, dtype=torch.float64) - 0.5) * 0.8 + 0.05 for n in sizes]
    codec = GrayWynerCodec(
        in_channels=1, out_channels=(2, 2), latent_channels=C, common_channels=2, architecture=architecture,
        context="none", rate_grad="smooth", analysis=[FixedOutput(o) for o in outputs], stride=1,
        synthesis=[Flatten(C * h * w, 2), Flatten(C * h * w, 2)],
    ).double().train()
    out = codec(torch.zeros(1, 1, h, w, dtype=torch.float64))
    total = sum(b.sum() for b in out["bits"].values())
    total.backward()
    for module in codec.analysis:
        grad = module.value.grad
        assert grad is not None and bool((grad.abs() > 1e-6).all()), (architecture, grad)
    # The value is the (expected, over the mean's two grid neighbours) coded cost of the
    # rounded latents.
    for name, y in out["latents"].items():
        scales, means = codec.entropy_parameters[name](y, out["latents"].get("y0") if codec.entropy_parameters[name].cond is not None else None)
        expected = training_bits(codec, y, means, scales.clamp_min(0.11)).sum()
        torch.testing.assert_close(out["bits"][name].sum(), expected, rtol=1e-6, atol=1e-6)


def _two_pass_forward(lc):
    """The latent codec's training forward before the rate was fused (Gaussian prior,
    ``mean_steps > 1``): the same entropy parameters, the rate from two likelihood passes."""

    def forward(y, latent=None, cond=None, rate_grad="ste"):
        scales, means = lc.entropy_parameters(y, cond if lc.conditional else None)
        kw = {"rate_grad": rate_grad, "latent": latent if rate_grad != "ste" else None, "round_residual": lc.coder.round_residual}
        return two_pass_bits(y, scales, means, lc.coder.mean_steps, "batch", **kw), None

    return forward


def _small_codec(context, rate_grad, mean_steps=8):
    torch.manual_seed(0)
    return GrayWynerCodec(
        in_channels=3, out_channels=(3, 3), latent_channels=8, common_channels=4, transform="light",
        hidden_channels=8, depth=2, context=context, rate_grad=rate_grad, mean_steps=mean_steps,
    ).double().train()


@pytest.mark.parametrize("context", ["none", "checkerboard"])
@pytest.mark.parametrize("rate_grad", ["ste", "smooth"])
def test_fused_mean_steps_training_rate_equals_the_two_pass_codec(rate_grad, context):
    # The codec's training rate with mean_steps = 8 (one fused pass) against the two
    # likelihood passes it replaced: the same bits per latent, the same gradients at the
    # encoder's parameters (and at every other parameter the rates reach).
    codec = _small_codec(context, rate_grad)
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    results = []
    for two_pass in (False, True):
        codec.zero_grad(set_to_none=True)
        if two_pass:
            for lc in codec.latent_codecs.values():
                lc.forward = _two_pass_forward(lc)  # an instance attribute: this codec only
        out = codec(x)
        sum(b.sum() for b in out["bits"].values()).backward()
        grads = {n: p.grad.clone() for n, p in codec.named_parameters() if p.grad is not None}
        results.append(({k: v.detach() for k, v in out["bits"].items()}, grads))
    (bits, grads), (bits_old, grads_old) = results
    assert set(bits) == set(bits_old) == {"y0", "y1", "y2"}
    for name in bits:
        torch.testing.assert_close(bits[name], bits_old[name], rtol=1e-10, atol=1e-10)
    assert set(grads) == set(grads_old)
    encoder = [n for n in grads if n.startswith("analysis.")]
    assert encoder and any(n.startswith("latent_codecs.") for n in grads)
    for name in grads:
        torch.testing.assert_close(grads[name], grads_old[name], rtol=1e-8, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")
    assert all(bool(grads[n].abs().sum() > 0) for n in encoder)


def test_training_rate_makes_no_likelihood_tensor(monkeypatch):
    # The issue: with the Gaussian prior the training rate (mean_steps > 1 included) is the
    # fused gaussian_rate; the likelihood is only made when out["likelihoods"] is read.
    codec = _small_codec("checkerboard", "smooth")
    calls = []
    original = F.gaussian_likelihood
    monkeypatch.setattr(F, "gaussian_likelihood", lambda *a, **k: calls.append(1) or original(*a, **k))
    out = codec(torch.rand(2, 3, 16, 16, dtype=torch.float64))
    sum(b.sum() for b in out["bits"].values()).backward()
    assert not calls
    likelihoods = out["likelihoods"]["y1"]
    assert calls and likelihoods.shape == out["latents"]["y1"].shape


@pytest.mark.parametrize("rate_grad", ["ste", "smooth", "noise"])
def test_training_step_under_bfloat16_autocast_is_finite(rate_grad):
    # CPU autocast hands the entropy models bfloat16 means/scales: rates and gradients
    # stay finite, and rates/likelihoods come back in at least float32.
    torch.manual_seed(0)
    codec = GrayWynerCodec(
        in_channels=3, out_channels=(3, 3), latent_channels=8, common_channels=4, transform="light",
        hidden_channels=8, depth=2, context="checkerboard", rate_grad=rate_grad,
    ).train()
    x = torch.rand(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = codec(x)
        terms = GrayWynerLoss(beta=1.5, lmbda=(100.0, 100.0))(out, (x, x))
    for name in out["bits"]:
        assert out["bits"][name].dtype == torch.float32 and bool(torch.isfinite(out["bits"][name]).all())
        assert out["likelihoods"][name].dtype == torch.float32
    terms["loss"].backward()
    grads = [p.grad for p in codec.parameters() if p.grad is not None]
    assert grads and all(bool(torch.isfinite(g).all()) for g in grads)


def test_mean_steps_training_rate_is_the_expected_rate_over_the_two_grid_means():
    """With mean_steps J, training takes (1 - t) bits(mu_below) + t bits(mu_above),
    t = frac(J mu): smooth in mu, its gradient J (bits_above - bits_below) moves mu toward
    the better grid mean (a straight-through rounding would park mu on the boundary,
    where the integer coding path rounds it either way). Eval mode: the coded cost."""
    from gwn_fast.entropy_models import GaussianLatentCodec

    lc = GaussianLatentCodec(1, context="none", mean_steps=8).double().train()
    with torch.no_grad():
        lc.entropy_parameters.prior.copy_(torch.tensor([0.6, 0.30], dtype=torch.float64).view(1, 2, 1, 1))
    y = torch.tensor([0.0, 0.0, 1.0, 0.0, -1.0], dtype=torch.float64).view(1, 1, 1, 5)
    bits, _ = lc(y)
    s = torch.tensor(0.6, dtype=torch.float64)
    below, above = bin_bits(y - 0.25, s).sum(), bin_bits(y - 0.375, s).sum()
    t = 0.30 * 8 - 2
    torch.testing.assert_close(bits.sum(), (1 - t) * below + t * above, rtol=1e-9, atol=1e-9)
    bits.sum().backward()
    grad_mean = lc.entropy_parameters.prior.grad[0, 1, 0, 0]
    torch.testing.assert_close(grad_mean, 8 * (above - below), rtol=1e-9, atol=1e-9)
    lc.eval()
    with torch.no_grad():
        hard, _ = lc(y)
    torch.testing.assert_close(hard.sum(), below, rtol=1e-9, atol=1e-9)  # 0.30 rounds to 0.25
