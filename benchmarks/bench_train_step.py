"""One whole training step (forward, loss, backward, optimiser step): the library's fused
path against an eager CompressAI-style composition of the same model, in the same run.

    pytest --benchmark-only                                          # from the root, with the others
    pytest benchmarks/bench_train_step.py --benchmark-only           # this file alone (fast set)
    GWN_BENCH_FULL=1 pytest benchmarks/bench_train_step.py --benchmark-only   # the paper's 4x3x256x256

Models (untrained; a step's cost hardly depends on training):

- ``digits``: ``gwn_fast.recipes.make_codec("digits", architecture="shared", context="none",
  y0_prior="gaussian")`` (the recipe's codec in the shared architecture, so match and
  merge is on the path; ``rate_grad="smooth"``, no context), batch 256 of 3x16x16, the recipe's loss
  (cross-entropy on random labels, rates per sample).
- ``image``: ``GrayWynerCodec()`` with its defaults (the paper's image transforms, 192
  latent channels, checkerboard context, ``rate_grad="ste"``), :class:`GrayWynerLoss` (MSE
  against the input); 1x3x64x64 in the fast set, 4x3x256x256 (the paper's) in the full set.

Providers, each with its own copy of the same initial weights and its own Adam:

- ``fused``: the library as users train it: ``out["bits"]`` from the fused
  ``gaussian_rate`` (with ``mean_steps`` > 1 in training its ``mean_steps`` mode: the
  expected rate over the mean's two grid neighbours, in the same pass) and the fused
  ``match_merge`` (on the CPU their ``torch.library`` CPU kernels, i.e. the blocked
  references; on CUDA the Triton kernels).
- ``composed`` (the anchor): the same model, the same networks and mean quantization, but
  each latent's rate is ``-log2`` of a likelihood composed eagerly from CompressAI's own
  ``GaussianConditional`` maths (``_likelihood``: ``|r|``, lower-bounded scale, two erfc
  CDFs; then ``likelihood_lower_bound``), with the rate-gradient mode (``ste``/``smooth``)
  written in plain autograd on top, and ``match_merge`` replaced by the plain eager
  composition of :mod:`bench_kernels` (straight-through rounding through autograd). That is
  the step a CompressAI user would write, materialising every likelihood.

The two providers' first-step losses are checked to agree before timing. Steps of the two
providers alternate (fused, composed, fused, ...) so that both see the same machine load;
the time is the best step of each. CPU rows use one torch thread (``GWN_BENCH_THREADS``).
Rows for CUDA are listed with the reason when there is no GPU.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from unittest import mock

import pytest
import torch

from gwn_fast import GrayWynerCodec, recipes
from gwn_fast.losses import GrayWynerLoss
from gwn_fast.models import gray_wyner

FULL = os.environ.get("GWN_BENCH_FULL") == "1"
CUDA = torch.cuda.is_available()
THREADS = int(os.environ.get("GWN_BENCH_THREADS", "1"))
NO_CUDA = "skipped: needs a CUDA GPU (none here)"
SHAPES = {
    "digits": (256, 3, 16, 16),
    "image": (4, 3, 256, 256) if FULL else (1, 3, 64, 64),
}
PROVIDERS = ("composed", "fused")
_rows: dict = {}


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@contextlib.contextmanager
def _cpu_threads(device):
    previous = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---- the anchor: CompressAI's likelihood maths and the eager merge, composed -----------
def _eager_merge(c1, c2, quantize=True):
    q1 = c1 + (torch.sign(c1) * torch.ceil(c1.abs() - 0.5) - c1).detach()
    q2 = c2 + (torch.sign(c2) * torch.ceil(c2.abs() - 0.5) - c2).detach()
    match = (q1 == q2).detach()
    y0 = torch.where(match, 0.5 * (q1 + q2), torch.zeros_like(q1))
    return y0, (q1 - q2).square().mean()


def _composed_likelihood(gc, y, scales, means, *, rate_grad, latent, round_residual):
    """The library's likelihood (same modes and bounds) as an eager CompressAI composition."""

    def lik(at, sc, mu, rounding):
        r = at - mu
        if rounding:  # the binned residual floor(r + 1/2), straight-through
            r = r + (torch.floor(r + 0.5) - r).detach()
        return gc.likelihood_lower_bound(gc._likelihood(r, sc))

    if rate_grad == "ste" or latent is None:
        return lik(y, scales, means, round_residual)
    if rate_grad == "noise":
        return lik(latent + torch.empty_like(latent).uniform_(-0.5, 0.5), scales, means, False)
    exact = lik(y.detach(), scales, means, round_residual)
    log_continuous = torch.log(lik(latent, scales.detach(), means.detach(), False))
    return exact * torch.exp(log_continuous - log_continuous.detach())


def _composed_forward(lc, gc):
    """A replacement for one latent codec's ``forward`` (Gaussian prior only): the same
    entropy parameters and the same rate (with ``mean_steps`` J > 1 in training, the
    expected rate over the mean's two grid neighbours), from the composed likelihood."""

    def forward(y, latent=None, cond=None, rate_grad="ste"):
        ep = lc.entropy_parameters
        scales, means = ep(y, cond if ep.cond is not None else None)
        kw = {"rate_grad": rate_grad, "latent": latent if rate_grad != "ste" else None}
        J = lc.coder.mean_steps
        if lc.training and J > 1:
            scaled = means * J
            low = torch.floor(scaled.detach())
            t = scaled - low
            below = -torch.log2(_composed_likelihood(gc, y, scales, low / J, round_residual=False, **kw))
            above = -torch.log2(_composed_likelihood(gc, y, scales, (low + 1) / J, round_residual=False, **kw))
            bits = below + t * (above - below)
        else:
            means = lc.coder.quantize_means(means)
            lik = _composed_likelihood(gc, y, scales, means, round_residual=lc.coder.round_residual, **kw)
            bits = -torch.log2(lik)
        return bits.flatten(1).sum(1), lambda: torch.exp2(-bits)

    return forward


@contextlib.contextmanager
def _composed_merge():
    # The codec calls F.match_merge through gwn_fast.functional; the anchor's steps swap in
    # the eager composition for their duration (steps run one at a time).
    with mock.patch.object(gray_wyner.F, "match_merge", _eager_merge):
        yield


# ---- the models ------------------------------------------------------------------------
def _setup(model, device):
    """``(codec, loss, x, targets)`` for ``model`` on ``device``, seeded."""
    torch.manual_seed(0)
    shape = SHAPES[model]
    x = torch.rand(shape)
    if model == "digits":
        codec = recipes.make_codec("digits", architecture="shared", context="none", y0_prior="gaussian")
        loss = recipes.make_loss("digits")
        targets = (torch.randint(0, 10, (shape[0],)), torch.randint(0, 10, (shape[0],)))
    else:
        codec, loss = GrayWynerCodec(), GrayWynerLoss()
        targets = (x, x)
    if codec.y0_bottleneck is not None:
        raise ValueError("the composed anchor models a Gaussian Y0 prior only")
    return codec.train().to(device), loss, x.to(device), tuple(t.to(device) for t in targets)


def _steppers(model, device):
    """``{provider: step()}``, each with its own codec copy and Adam."""
    from compressai.entropy_models import GaussianConditional

    codec, loss_fn, x, targets = _setup(model, device)
    gc = GaussianConditional(None, scale_bound=0.11, likelihood_bound=1e-9).to(device)
    steppers = {}
    for provider in PROVIDERS:
        net = copy.deepcopy(codec)
        if provider == "composed":
            for lc in net.latent_codecs.values():
                lc.forward = _composed_forward(lc, gc)  # an instance attribute: this copy only
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
        merge = _composed_merge if provider == "composed" else contextlib.nullcontext

        def step(net=net, optimizer=optimizer, merge=merge):
            optimizer.zero_grad(set_to_none=True)
            with merge():
                out = net(x)
            loss = loss_fn(out, targets)["loss"]
            loss.backward()
            optimizer.step()
            return loss.detach()

        steppers[provider] = step
    return steppers


def _rounds(model, device):
    # Steps of a few ms on a shared machine: the best of many is the stable statistic.
    if device == "cuda":
        return 20
    if model == "image":
        return 3 if FULL else 8
    return 20


CASES = [(m, d) for m in SHAPES for d in ("cpu", "cuda")]


@pytest.mark.parametrize("model,device", CASES, ids=[f"{m}-{d}" for m, d in CASES])
def test_train_step(benchmark, model, device):
    if device == "cuda" and not CUDA:
        for provider in PROVIDERS:
            _rows[(model, device, provider)] = {"skip": NO_CUDA}
        pytest.skip(NO_CUDA)
    with _cpu_threads(device):
        steppers = _steppers(model, device)
        # The first step of each, from the same weights and batch: the anchor must compute
        # the same loss (the fused rate is exact to float32 rounding; CompressAI's erfc
        # difference loses a little precision at large scales).
        first = {p: s() for p, s in steppers.items()}
        _sync(device)
        torch.testing.assert_close(first["fused"], first["composed"], rtol=1e-4, atol=1e-4)
        best = dict.fromkeys(PROVIDERS, float("inf"))
        for _ in range(_rounds(model, device)):
            for provider in ("fused", "composed"):
                t0 = time.perf_counter()
                steppers[provider]()
                _sync(device)
                best[provider] = min(best[provider], time.perf_counter() - t0)
        for provider in PROVIDERS:
            _rows[(model, device, provider)] = {"ms": best[provider] * 1e3}
        benchmark.extra_info.update({f"{p}_ms": best[p] * 1e3 for p in PROVIDERS})
        benchmark.extra_info["speedup_vs_composed"] = best["composed"] / best["fused"]
        benchmark.pedantic(steppers["fused"], rounds=1, iterations=1)


def table():
    rows = []
    for model, device in CASES:
        anchor = _rows.get((model, device, "composed"), {})
        for provider in PROVIDERS:
            r = _rows.get((model, device, provider))
            if r is None:
                continue
            label = [model, "x".join(map(str, SHAPES[model])), device, provider]
            if "skip" in r:
                rows.append([*label, "-", "-", r["skip"]])
                continue
            backend = ("triton" if device == "cuda" else "cpu reference") if provider == "fused" else "eager"
            ratio = f"{anchor['ms'] / r['ms']:.2f}" if "ms" in anchor else "-"
            rows.append([*label, f"{r['ms']:.1f}", ratio, backend])
    where = f"CPU: {THREADS} torch thread(s)" + (f"; CUDA: {torch.cuda.get_device_name()}" if CUDA else "")
    return (
        f"Training step (forward + loss + backward + Adam), float32, {where}",
        ["model", "input", "device", "provider", "ms/step", "x composed", "note"],
        rows,
        "llllrrl",
        [
            (
                "fused = out['bits'] from the fused gaussian_rate and the fused match_merge; composed = the same "
                "model with each rate -log2 of CompressAI's GaussianConditional likelihood maths and the eager merge "
                "(the anchor, measured in this run, steps alternating with the fused ones)."
            ),
            "x composed = composed ms / fused ms (above 1: the fused path is faster). Best step of the run.",
        ],
    )

