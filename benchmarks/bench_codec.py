"""GrayWynerCodec compress/decompress time vs CompressAI's bmshj2018-hyperprior.

    pytest benchmarks/bench_codec.py --benchmark-only -s

Untrained models (timing does not depend on training much), CPU. Our time is split into
network (transforms and entropy-parameter networks) and entropy coding (index building,
symbol mapping and rANS), measured by wrapping the entropy-coding calls.
"""

import time

import pytest
import torch

from gwn_fast import GrayWynerCodec
from gwn_fast.entropy_models import GaussianCoder

SHAPES = [(1, 3, 256, 256), (4, 3, 256, 256)]
_results: dict = {}


class CodingTimer:
    """Accumulates the time spent inside GaussianCoder's coding methods."""

    def __init__(self, monkeypatch):
        self.seconds = 0.0
        for name in ("encode", "encode_stream", "decoder", "decode_part"):
            original = getattr(GaussianCoder, name)
            monkeypatch.setattr(GaussianCoder, name, self._wrap(original))

    def _wrap(self, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


@pytest.fixture(scope="module")
def ours():
    torch.manual_seed(0)
    codec = GrayWynerCodec().eval()
    codec.update()
    return codec


@pytest.fixture(scope="module")
def anchor():
    from compressai.zoo import bmshj2018_hyperprior

    torch.manual_seed(0)
    net = bmshj2018_hyperprior(quality=3, pretrained=False).eval()
    net.update(force=True)
    return net


def _best(fn, rounds):
    best, value = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_codec_compress_decompress(benchmark, ours, anchor, shape, monkeypatch):
    x = torch.rand(shape)
    pixels = shape[0] * shape[2] * shape[3]
    with torch.no_grad():
        timer = CodingTimer(monkeypatch)
        t_enc, enc = _best(lambda: ours.compress(x), 3)
        timer.seconds = 0.0
        ours.compress(x)
        coding_enc = timer.seconds
        t_dec, dec = _best(lambda: ours.decompress(enc["strings"], enc["shape"]), 3)
        timer.seconds = 0.0
        ours.decompress(enc["strings"], enc["shape"])
        coding_dec = timer.seconds
        a_enc_t, a_enc = _best(lambda: anchor.compress(x), 3)
        a_dec_t, _ = _best(lambda: anchor.decompress(a_enc["strings"], a_enc["shape"]), 3)
    benchmark.pedantic(lambda: ours.compress(x), rounds=1, iterations=1)
    row = {
        "ours_compress_ms": 1e3 * t_enc,
        "ours_decompress_ms": 1e3 * t_dec,
        "ours_coding_share_compress": coding_enc / t_enc,
        "ours_coding_share_decompress": coding_dec / t_dec,
        "anchor_compress_ms": 1e3 * a_enc_t,
        "anchor_decompress_ms": 1e3 * a_dec_t,
        "ours_us_per_pixel_enc": 1e6 * t_enc / pixels,
        "anchor_us_per_pixel_enc": 1e6 * a_enc_t / pixels,
    }
    benchmark.extra_info.update(row)
    _results[shape] = row


def teardown_module(module):
    if not _results:
        return
    print("\n\nGrayWynerCodec (shared, checkerboard, 192/96 ch) vs bmshj2018-hyperprior (untrained), CPU")
    print(f"{'input':>14s} {'ours enc ms':>11s} {'coding%':>8s} {'ours dec ms':>11s} {'coding%':>8s} {'hyperprior enc':>15s} {'dec':>8s}")
    for shape, r in _results.items():
        print(
            f"{'x'.join(map(str, shape)):>14s} {r['ours_compress_ms']:11.1f} {100 * r['ours_coding_share_compress']:7.1f}% "
            f"{r['ours_decompress_ms']:11.1f} {100 * r['ours_coding_share_decompress']:7.1f}% "
            f"{r['anchor_compress_ms']:15.1f} {r['anchor_decompress_ms']:8.1f}"
        )
