"""Evaluate a trained codec with real bitstreams: rates per channel, transmit and receive
rate, the likelihood estimate beside them, task quality per receiver, coding time; and
BD-rate between rate-quality curves.

    from gwn_fast.evaluate import evaluate, bd_rate
    metrics = evaluate(codec, test_set, tasks=("classification", "classification"), unit="image")
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from gwn_fast import container
from gwn_fast.coder import fixed_overhead

__all__ = ["UNITS", "bd_rate", "collate", "evaluate", "task_quality"]

# What a reported rate is divided by.
UNITS = ("image", "pixel", "position")
_CHANNEL_OF = {"r0": "common", "r1": "private1", "r2": "private2"}


def collate(dataset, limit: int | None = None) -> dict:
    """The whole dataset (or its first ``limit`` samples) as one batch dict of tensors."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ValueError("dataset is empty")
    items = [dataset[i] for i in range(n)]
    return {k: torch.stack([torch.as_tensor(item[k]) for item in items]) for k in items[0]}


def task_quality(prediction: torch.Tensor, target: torch.Tensor, kind: str, valid: torch.Tensor | None = None) -> dict:
    """``{"accuracy": ...}`` for ``classification`` (prediction ``[N, K]`` logits, target
    ``[N]``), ``{"mse": ..., "psnr": ...}`` for ``regression`` (same shapes; PSNR for a
    peak of 1; ``valid`` masks elements out of the MSE)."""
    if kind == "classification":
        return {"accuracy": float((prediction.argmax(1) == target).double().mean())}
    if kind != "regression":
        raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}")
    err = (prediction.double() - target.double()).square()
    mse = float(err[valid].mean() if valid is not None else err.mean())
    return {"mse": mse, "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else math.inf}


@torch.no_grad()
def evaluate(
    codec,
    dataset,
    *,
    tasks: Sequence[str] = ("regression", "regression"),
    unit: str = "pixel",
    positions_per_pixel: int = 1,
    single_stream: bool = True,
    limit: int | None = None,
) -> dict:
    """Compress ``dataset`` to real bitstreams, decode per receiver, and measure.

    Args:
        codec: a trained :class:`gwn_fast.GrayWynerCodec` (``update()`` is called here).
        dataset: dict samples ``{x1[, x2], z1, z2[, valid]}``.
        tasks: kind of task 1 and 2: ``"classification"`` or ``"regression"``.
        unit: rates per ``"image"``, ``"pixel"`` (of x1) or ``"position"`` (pixels times
            ``positions_per_pixel``, e.g. 2 for the synthetic source's two channels).
        single_stream: code the whole set as one stream per channel (the fixed cost of a
            stream, a few bytes, is paid once), else one stream per sample.
    Returns:
        A flat dict: ``r0, r1, r2, rate_transmit, rate_receive`` from the real bytes;
        ``payload_*`` the same without the streams' fixed cost; ``est_*`` the likelihood
        estimate of ``forward``; ``overhead_bytes``, ``bytes``, ``samples``, ``unit``;
        per receiver ``i`` the quality of its decoded prediction (``acc{i}`` or
        ``mse{i}``/``psnr{i}``); ``max_decode_error`` (decoded vs forward predictions);
        ``encode_s``, ``decode_s`` (both receivers).
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    batch = collate(dataset, limit)
    x1, x2 = batch["x1"], batch.get("x2")
    codec.eval()
    codec.update()
    n = x1.shape[0]
    per = {"image": n, "pixel": n * x1.shape[2] * x1.shape[3]}.get(unit, n * x1.shape[2] * x1.shape[3] * positions_per_pixel)

    out = codec(x1, x2)
    est = {}
    for key, name in (("r0", "y0"), ("r1", "y1"), ("r2", "y2")):
        lik = out["likelihoods"].get(name)
        est[key] = float((-torch.log2(lik.double())).sum()) / per if lik is not None else 0.0

    t0 = time.perf_counter()
    enc = codec.compress(x1, x2, single_stream=single_stream)
    encode_s = time.perf_counter() - t0
    packed = container.pack(enc)
    decoded = {}
    t0 = time.perf_counter()
    for receiver in (1, 2):
        part = container.unpack(container.extract(packed, receiver))
        decoded[receiver] = codec.decompress(part["strings"], part["shape"], receivers=(receiver,))["z_hat"][receiver]
    decode_s = time.perf_counter() - t0

    real = container.rates(enc, per=per)
    overhead = {k: sum(fixed_overhead(s) for s in enc["strings"].get(c, ())) for k, c in _CHANNEL_OF.items()}
    payload = {k: real[k] - 8 * overhead[k] / per for k in _CHANNEL_OF}
    result = {
        "samples": n,
        "unit": unit,
        **{k: real[k] for k in ("r0", "r1", "r2", "rate_transmit", "rate_receive")},
        **{f"payload_{k}": v for k, v in payload.items()},
        "payload_rate_transmit": sum(payload.values()),
        "payload_rate_receive": 2 * payload["r0"] + payload["r1"] + payload["r2"],
        **{f"est_{k}": v for k, v in est.items()},
        "est_rate_transmit": sum(est.values()),
        "est_rate_receive": 2 * est["r0"] + est["r1"] + est["r2"],
        "bytes": len(packed),
        "overhead_bytes": sum(overhead.values()),
        "encode_s": encode_s,
        "decode_s": decode_s,
    }
    max_err = 0.0
    for i, kind in zip((1, 2), tasks):
        target = batch[f"z{i}"]
        valid = batch.get("valid") if i == 2 else None
        quality = task_quality(decoded[i], target, kind, valid)
        for k, v in quality.items():
            result[f"{'acc' if k == 'accuracy' else k}{i}"] = v
        max_err = max(max_err, float((decoded[i] - out["z_hat"][i]).abs().max()))
    result["max_decode_error"] = max_err
    return result


def bd_rate(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]) -> float:
    """Bjontegaard delta rate in percent of ``test`` against ``anchor``.

    Each curve is a sequence of ``(rate, quality)`` points (higher quality is better, at
    least 4 points with distinct qualities). Cubic fit of log-rate over quality on the
    overlapping quality range, as the paper does; negative = ``test`` saves rate. Uses the
    ``bjontegaard`` package when installed, otherwise the same formula with numpy.
    """
    import numpy as np

    a = sorted((float(r), float(q)) for r, q in anchor)
    t = sorted((float(r), float(q)) for r, q in test)
    for name, curve in (("anchor", a), ("test", t)):
        if len(curve) < 4:
            raise ValueError(f"{name} needs at least 4 (rate, quality) points for a cubic fit, got {len(curve)}")
        if any(r <= 0 for r, _ in curve):
            raise ValueError(f"{name} rates must be positive (log-rate fit)")
    try:
        import bjontegaard
    except ImportError:
        bjontegaard = None
    if bjontegaard is not None:
        # "cubic": a least-squares cubic polynomial of log-rate over quality (VCEG-M33).
        return float(
            bjontegaard.bd_rate(
                [r for r, _ in a], [q for _, q in a], [r for r, _ in t], [q for _, q in t],
                method="cubic", require_matching_points=False, min_overlap=0.0,
            )
        )
    qa, la = np.array([q for _, q in a]), np.log([r for r, _ in a])
    qt, lt = np.array([q for _, q in t]), np.log([r for r, _ in t])
    lo, hi = max(qa.min(), qt.min()), min(qa.max(), qt.max())
    if not lo < hi:
        raise ValueError("the two curves' quality ranges do not overlap")
    pa, pt = np.polyint(np.polyfit(qa, la, 3)), np.polyint(np.polyfit(qt, lt, 3))
    diff = (np.polyval(pt, hi) - np.polyval(pt, lo) - np.polyval(pa, hi) + np.polyval(pa, lo)) / (hi - lo)
    return float((math.exp(diff) - 1) * 100)
