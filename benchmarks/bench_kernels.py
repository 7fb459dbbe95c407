"""Element-wise GWN ops: our CPU path / Triton kernels vs composed eager PyTorch, one run.

    pytest benchmarks/bench_kernels.py --benchmark-only -s                  # 1M..64M elements
    GWN_BENCH_QUICK=1 pytest benchmarks/bench_kernels.py --benchmark-only -s  # 1M, 4M only

Ops and providers (best of several rounds, forward and forward+backward):

- ``gaussian_rate``: ``sum(-log2 p)`` of a conditional Gaussian with means, on already
  rounded values (``round_residual=False``, so every provider computes the same maths):
  - ``compressai``: CompressAI's ``GaussianConditional._likelihood`` (its scale
    ``LowerBound`` included) + ``likelihood_lower_bound`` + ``-log2`` + ``sum``, the way a
    CompressAI model composes it (the anchor of every ratio);
  - ``reference``: ``gwn_fast.functional.gaussian_rate`` under ``backend("reference")``
    (our CPU path: chunked, in-place, hand-written backward);
  - ``compiled``: ``torch.compile`` of the same composed formula as ``compressai``
    (the one-graph baseline; not measured on CPU by default, see ``GWN_BENCH_COMPILE``);
  - ``triton``: ``gaussian_rate`` on CUDA tensors (skipped with a reason without a GPU).
- ``match_merge``: quantize both candidates, merge where equal, ``mean((q1-q2)^2)``:
  ``eager`` (plain ``torch.where``/``mean`` with straight-through rounding through
  autograd), ``reference``, ``compiled``, ``triton`` as above.

CPU runs use one thread (``GWN_BENCH_THREADS`` overrides). The table printed at the end gives
time, effective GB/s (minimal traffic: the inputs read once, outputs written once; for
forward+backward the backward reads the inputs again and writes one gradient per input)
and the speed-up over the anchor measured in the same run.
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from gwn_fast import functional as F
from gwn_fast.ops import backend

QUICK = os.environ.get("GWN_BENCH_QUICK") == "1"
CUDA = torch.cuda.is_available()
SIZES = [1 << 20, 4 << 20] if QUICK or not CUDA else [1 << 20, 4 << 20, 16 << 20, 64 << 20]
if not CUDA and not QUICK:
    SIZES.append(16 << 20)
THREADS = int(os.environ.get("GWN_BENCH_THREADS", "1"))
# torch.compile on CPU takes a minute per variant and gave no gain here; opt in with =1.
COMPILE_ON_CPU = os.environ.get("GWN_BENCH_COMPILE") == "1"
DEVICE = "cuda" if CUDA else "cpu"
_rows: dict = {}


def _sync():
    if CUDA:
        torch.cuda.synchronize()


def _best(fn, rounds):
    fn()  # warm-up (allocator, compile caches, Triton autotune)
    _sync()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best


def _rounds(n):
    return 10 if CUDA else 5 if n <= (4 << 20) else 3


# ---- the anchors: composed eager PyTorch -----------------------------------------------
def _compressai_rate(gc):
    def rate(y, scales, means):
        p = gc._likelihood(y, scales, means)
        p = gc.likelihood_lower_bound(p)
        return (-torch.log2(p)).sum()

    return rate


def _eager_merge(c1, c2):
    q1 = c1 + (torch.sign(c1) * torch.ceil(c1.abs() - 0.5) - c1).detach()
    q2 = c2 + (torch.sign(c2) * torch.ceil(c2.abs() - 0.5) - c2).detach()
    match = (q1 == q2).detach()
    y0 = torch.where(match, 0.5 * (q1 + q2), torch.zeros_like(q1))
    return y0, (q1 - q2).square().mean()


def _ours_rate(y, scales, means):
    return F.gaussian_rate(y, scales, means, round_residual=False)


def _inputs(op, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    if op == "gaussian_rate":
        scales = torch.exp(torch.empty(n).uniform_(-2.3, 3.0, generator=g))
        means = torch.randn(n, generator=g)
        y = torch.round(torch.randn(n, generator=g) * scales + means)
        return [t.to(DEVICE) for t in (y, scales, means)]
    c1 = torch.randn(n, generator=g) * 2
    c2 = c1 + 0.4 * torch.randn(n, generator=g)
    return [t.to(DEVICE) for t in (c1, c2)]


def _provider_fn(op, provider, gc):
    if op == "gaussian_rate":
        if provider == "compressai":
            return _compressai_rate(gc), None
        if provider == "compiled":
            return torch.compile(_compressai_rate(gc)), None
        return _ours_rate, ("reference" if provider == "reference" else "triton")
    if provider == "eager":
        return _eager_merge, None
    if provider == "compiled":
        return torch.compile(_eager_merge), None
    return F.match_merge, ("reference" if provider == "reference" else "triton")


OPS = {
    "gaussian_rate": ["compressai", "reference", "compiled", "triton"],
    "match_merge": ["eager", "reference", "compiled", "triton"],
}
CASES = [(op, p) for op, providers in OPS.items() for p in providers]


@pytest.fixture(scope="module")
def gaussian_conditional():
    from compressai.entropy_models import GaussianConditional

    return GaussianConditional(None).to(DEVICE)


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n >> 20}M")
@pytest.mark.parametrize("op,provider", CASES, ids=[f"{o}-{p}" for o, p in CASES])
def test_kernel(benchmark, op, provider, n, mode, gaussian_conditional):
    if provider == "triton" and not CUDA:
        pytest.skip("Triton kernels are benchmarked on CUDA only (no GPU here)")
    if provider == "compiled" and not CUDA and not COMPILE_ON_CPU:
        pytest.skip("torch.compile on CPU is opt-in (GWN_BENCH_COMPILE=1)")
    previous_threads = torch.get_num_threads()
    if not CUDA:
        torch.set_num_threads(THREADS)
    try:
        fn, impl = _provider_fn(op, provider, gaussian_conditional)
        inputs = _inputs(op, n)

        def run():
            args = [t.detach().requires_grad_(mode == "fwd+bwd") for t in inputs]
            if impl is None:
                out = fn(*args)
            else:
                with backend(impl):
                    out = fn(*args)
            if mode == "fwd+bwd":
                loss = out if op == "gaussian_rate" else out[0].sum() + out[1]
                loss.backward()
            return out

        seconds = _best(run, _rounds(n))
        n_in = len(inputs)
        n_out = 1 if op == "gaussian_rate" else 1  # a scalar; y0 for match_merge
        traffic = (n_in + (n_out if op == "match_merge" else 0)) * n * 4
        if mode == "fwd+bwd":
            traffic += 2 * n_in * n * 4 + (n * 4 if op == "match_merge" else 0)
        row = {"ms": seconds * 1e3, "gb_s": traffic / seconds / 1e9}
        benchmark.extra_info.update(row)
        benchmark.pedantic(run, rounds=1, iterations=1)
        _rows[(op, mode, n, provider)] = row
    finally:
        torch.set_num_threads(previous_threads)


def teardown_module(module):
    if not _rows:
        return
    where = torch.cuda.get_device_name() if CUDA else f"CPU, {THREADS} thread(s)"
    print(f"\n\nElement-wise ops on {where} (float32; ratio = anchor time / provider time)")
    print(f"{'op':>14s} {'mode':>8s} {'N':>5s} {'provider':>11s} {'ms':>9s} {'GB/s':>7s} {'x anchor':>9s}")
    for op, providers in OPS.items():
        for mode in ("fwd", "fwd+bwd"):
            for n in SIZES:
                base = _rows.get((op, mode, n, providers[0]))
                for provider in providers:
                    r = _rows.get((op, mode, n, provider))
                    if r is None:
                        continue
                    ratio = base["ms"] / r["ms"] if base else float("nan")
                    print(
                        f"{op:>14s} {mode:>8s} {n >> 20:4d}M {provider:>11s} {r['ms']:9.2f} {r['gb_s']:7.2f} {ratio:9.2f}"
                    )
