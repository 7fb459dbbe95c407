"""GrayWynerCodec compress/decompress time vs CompressAI's bmshj2018-hyperprior.

    pytest --benchmark-only                                    # from the root, with the others
    pytest benchmarks/bench_codec.py --benchmark-only          # 1x3x256x256 (fast set)
    GWN_BENCH_FULL=1 pytest benchmarks/bench_codec.py --benchmark-only   # and 4x3x256x256

Untrained models (timing does not depend on training much), on CUDA when there is one
(both models' networks; our entropy parameters run in float64 on the CPU on both sides, by
design), else on the CPU. Our time is split into network (transforms and entropy-parameter
networks) and entropy coding (index building, symbol mapping and rANS), measured by
wrapping the entropy-coding calls.
"""

import os
import time

import pytest
import torch

from gwn_fast import GrayWynerCodec
from gwn_fast.entropy_models import GaussianCoder

FULL = os.environ.get("GWN_BENCH_FULL") == "1"
SHAPES = [(1, 3, 256, 256), (4, 3, 256, 256)] if FULL else [(1, 3, 256, 256)]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_results: dict = {}


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


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
    return codec.to(DEVICE)


@pytest.fixture(scope="module")
def anchor():
    from compressai.zoo import bmshj2018_hyperprior

    torch.manual_seed(0)
    net = bmshj2018_hyperprior(quality=3, pretrained=False).eval()
    net.update(force=True)
    return net.to(DEVICE)


def _best(fn, rounds):
    best, value = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        value = fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best, value


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_codec_compress_decompress(benchmark, ours, anchor, shape, monkeypatch):
    x = torch.rand(shape, device=DEVICE)
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
        _sync()
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


def table():
    rows = []
    for shape, r in _results.items():
        name = "x".join(map(str, shape))
        rows.append([
            name, "gwn_fast GrayWynerCodec", f"{r['ours_compress_ms']:.1f}", f"{r['ours_decompress_ms']:.1f}",
            f"{100 * r['ours_coding_share_compress']:.1f}%", f"{100 * r['ours_coding_share_decompress']:.1f}%",
            f"{r['anchor_compress_ms'] / r['ours_compress_ms']:.2f}", f"{r['anchor_decompress_ms'] / r['ours_decompress_ms']:.2f}",
            f"{r['ours_us_per_pixel_enc']:.2f}",
        ])
        rows.append([
            name, "bmshj2018-hyperprior", f"{r['anchor_compress_ms']:.1f}", f"{r['anchor_decompress_ms']:.1f}",
            "-", "-", "1.00", "1.00", f"{r['anchor_us_per_pixel_enc']:.2f}",
        ])
    where = torch.cuda.get_device_name() if DEVICE == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    return (
        f"Codec: GrayWynerCodec (shared, checkerboard, 192/96 ch) vs CompressAI bmshj2018-hyperprior, untrained, {where}",
        ["input", "model", "compress ms", "decompress ms", "coding % enc", "coding % dec", "x anchor enc",
         "x anchor dec", "us/pixel enc"],
        rows,
        "llrrrrrrr",
        [
            "x anchor = hyperprior time / ours (above 1: ours faster); ours runs two encoders and two decoders "
            "(both receivers decoded) and its entropy parameters in float64 on the CPU for exact decoding.",
            "coding % = share of the time in index building and rANS; the rest is the networks.",
        ],
    )

