"""Element-wise GWN ops: our CPU path / Triton kernels vs composed eager PyTorch, one run.

    pytest --benchmark-only                      # from the root: every bench module, fast sizes
    pytest benchmarks/bench_kernels.py --benchmark-only
    GWN_BENCH_FULL=1 pytest --benchmark-only     # full sizes

Sizes (float32 elements): fast set 1M, 4M on CPU and 4M, 64M on CUDA; full set 1M-16M on
CPU and 1M-64M on CUDA.

Ops and providers (best of several rounds, forward and forward+backward):

- ``gaussian_rate``: ``sum(-log2 p)`` of a conditional Gaussian with means, on already
  rounded values (``round_residual=False``, so every provider computes the same maths):
  - ``compressai``: CompressAI's ``GaussianConditional._likelihood`` (its scale
    ``LowerBound`` included) + ``likelihood_lower_bound`` + ``-log2`` + ``sum``, the way a
    CompressAI model composes it (the anchor of every ratio; it is the eager composition);
  - ``reference``: ``gwn_fast.functional.gaussian_rate`` under ``backend("reference")``
    (our CPU path: chunked, in-place, hand-written backward);
  - ``compiled``: ``torch.compile`` of the same composed formula as ``compressai``
    (the one-graph baseline; ``GWN_BENCH_COMPILE=0`` skips it on CPU);
  - ``triton``: ``gaussian_rate`` on CUDA tensors (skipped with a reason without a GPU).
- ``match_merge``: quantize both candidates, merge where equal, ``mean((q1-q2)^2)``:
  ``eager`` (plain ``torch.where``/``mean`` with straight-through rounding through
  autograd; the anchor), ``reference``, ``compiled``, ``triton`` as above.
- ``copy``: ``dst.copy_(src)`` of N float32 on the same device, in the same run: on a GPU
  a device-to-device copy, i.e. the memory bandwidth the device achieves, which the
  ``% copy`` column divides by.

CPU runs use one thread (``GWN_BENCH_THREADS`` overrides); on CUDA the times come from
``triton.testing.do_bench`` (minimum). The table printed at the end of the run gives time,
effective GB/s (minimal traffic: the inputs read once, outputs written once; for
forward+backward the backward reads the inputs again and writes one gradient per input),
its share of the copy bandwidth, and the speed-up over the anchor and over ``torch.compile``
measured in the same run. Rows that cannot run here are listed with the reason.
"""

from __future__ import annotations

import contextlib
import os
import time

import pytest
import torch

from gwn_fast import functional as F
from gwn_fast.ops import backend

FULL = os.environ.get("GWN_BENCH_FULL") == "1"
CUDA = torch.cuda.is_available()
M = 1 << 20
if CUDA:
    SIZES = [1 * M, 4 * M, 16 * M, 64 * M] if FULL else [4 * M, 64 * M]
else:
    SIZES = [1 * M, 4 * M, 16 * M] if FULL else [1 * M, 4 * M]
THREADS = int(os.environ.get("GWN_BENCH_THREADS", "1"))
# torch.compile of the anchors: on by default (about 35 s of compiling for the fast set on 2
# CPU cores, cold cache); GWN_BENCH_COMPILE=0 leaves those rows out on CPU.
COMPILE_ON_CPU = os.environ.get("GWN_BENCH_COMPILE", "1") != "0"
DEVICE = "cuda" if CUDA else "cpu"
NO_CUDA = "skipped: needs a CUDA GPU (none here)"
NO_COMPILE = "skipped: GWN_BENCH_COMPILE=0"
_rows: dict = {}


def _sync():
    if CUDA:
        torch.cuda.synchronize()


def _best(fn, rounds):
    """Seconds: on CUDA the minimum of ``triton.testing.do_bench``; on CPU the best of
    ``rounds`` wall-clock runs. Both after one warm-up call (compile, autotune, allocator)."""
    fn()  # warm-up (allocator, compile caches, Triton autotune)
    _sync()
    if CUDA:
        from triton.testing import do_bench

        return do_bench(fn, warmup=25, rep=100, return_mode="min") / 1e3
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best


def _rounds(n):
    return 5 if n <= (4 << 20) else 3


@contextlib.contextmanager
def _cpu_threads():
    """One torch thread on CPU (``GWN_BENCH_THREADS``), restored afterwards."""
    previous = torch.get_num_threads()
    if not CUDA:
        torch.set_num_threads(THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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


_compiled: dict = {}


def _compile(key, fn):
    # One compiled function per op and mode: a new size recompiles (or goes dynamic) in
    # the same cache instead of starting from scratch.
    if key not in _compiled:
        _compiled[key] = torch.compile(fn)
    return _compiled[key]


def _provider_fn(op, provider, mode, gc):
    if op == "gaussian_rate":
        if provider == "compressai":
            return _compressai_rate(gc), None
        if provider == "compiled":
            return _compile((op, mode), _compressai_rate(gc)), None
        return _ours_rate, ("reference" if provider == "reference" else "triton")
    if provider == "eager":
        return _eager_merge, None
    if provider == "compiled":
        return _compile((op, mode), _eager_merge), None
    return F.match_merge, ("reference" if provider == "reference" else "triton")


OPS = {
    "gaussian_rate": ["compressai", "reference", "compiled", "triton"],
    "match_merge": ["eager", "reference", "compiled", "triton"],
}
CASES = [(op, p) for op, providers in OPS.items() for p in providers]
MODES = ["fwd", "fwd+bwd"]


def _traffic(op, mode, n):
    """Minimal bytes moved: inputs once and outputs once; the backward reads the inputs
    again and writes one gradient per input (match_merge also reads y0's gradient)."""
    n_in = 3 if op == "gaussian_rate" else 2
    traffic = (n_in + (1 if op == "match_merge" else 0)) * n * 4
    if mode == "fwd+bwd":
        traffic += 2 * n_in * n * 4 + (n * 4 if op == "match_merge" else 0)
    return traffic


@pytest.fixture(scope="module")
def gaussian_conditional():
    from compressai.entropy_models import GaussianConditional

    return GaussianConditional(None).to(DEVICE)


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n >> 20}M")
def test_copy_bandwidth(benchmark, n):
    """The same run's memory-bandwidth yardstick: ``dst.copy_(src)``, N float32."""
    with _cpu_threads():
        src = torch.randn(n, device=DEVICE)
        dst = torch.empty_like(src)
        seconds = _best(lambda: dst.copy_(src), _rounds(n))
        row = {"ms": seconds * 1e3, "gb_s": 2 * n * 4 / seconds / 1e9}
        benchmark.extra_info.update(row)
        benchmark.pedantic(lambda: dst.copy_(src), rounds=1, iterations=1)
    _rows[("copy", "-", n, "copy")] = row


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n >> 20}M")
@pytest.mark.parametrize("op,provider", CASES, ids=[f"{o}-{p}" for o, p in CASES])
def test_kernel(benchmark, op, provider, n, mode, gaussian_conditional):
    key = (op, mode, n, provider)
    if provider == "triton" and not CUDA:
        _rows[key] = {"skip": NO_CUDA}
        pytest.skip(NO_CUDA)
    if provider == "compiled" and not CUDA and not COMPILE_ON_CPU:
        _rows[key] = {"skip": NO_COMPILE}
        pytest.skip(NO_COMPILE)
    with _cpu_threads():
        fn, impl = _provider_fn(op, provider, mode, gaussian_conditional)
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
        row = {"ms": seconds * 1e3, "gb_s": _traffic(op, mode, n) / seconds / 1e9}
        benchmark.extra_info.update(row)
        benchmark.pedantic(run, rounds=1, iterations=1)
    _rows[key] = row


def _fmt(x, digits=2):
    return f"{x:.{digits}f}"


def table():
    """The side-by-side rows: one per op, mode, size and provider, skipped ones included."""
    rows = []
    for op, providers in OPS.items():
        for mode in MODES:
            for n in SIZES:
                anchor = _rows.get((op, mode, n, providers[0]), {})
                compiled = _rows.get((op, mode, n, "compiled"), {})
                copy = _rows.get(("copy", "-", n, "copy"), {})
                for provider in providers:
                    r = _rows.get((op, mode, n, provider))
                    if r is None:
                        continue
                    label = [op, mode, f"{n >> 20}M", provider]
                    if "skip" in r:
                        rows.append([*label, "-", "-", "-", "-", "-", r["skip"]])
                        continue
                    rows.append([
                        *label,
                        _fmt(r["ms"], 3 if r["ms"] < 1 else 2),
                        _fmt(r["gb_s"]),
                        _fmt(100 * r["gb_s"] / copy["gb_s"], 1) + "%" if "gb_s" in copy else "-",
                        _fmt(anchor["ms"] / r["ms"]) if "ms" in anchor else "-",
                        _fmt(compiled["ms"] / r["ms"]) if "ms" in compiled else "-",
                        "",
                    ])
    for n in SIZES:
        r = _rows.get(("copy", "-", n, "copy"))
        if r:
            rows.append(["copy", "-", f"{n >> 20}M", "copy", _fmt(r["ms"], 3), _fmt(r["gb_s"]), "100.0%", "-", "-", ""])
    where = f"{torch.cuda.get_device_name()}" if CUDA else f"CPU, {THREADS} torch thread(s)"
    return (
        f"Element-wise ops on {where}, float32",
        ["op", "mode", "N", "provider", "ms", "GB/s", "% copy", "x anchor", "x compile", "note"],
        rows,
        "llrlrrrrrl",
        [
            "x anchor = anchor time / provider time, the anchor being the op's eager composition "
            "(CompressAI's for gaussian_rate, plain torch for match_merge), measured in this run; "
            "x compile likewise against torch.compile of that composition.",
            "GB/s = minimal traffic / time; % copy = that GB/s over the same-size dst.copy_(src) of this run "
            + ("(device-to-device: the device's achievable memory bandwidth)." if CUDA else "(one CPU thread)."),
        ],
    )

