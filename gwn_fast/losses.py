"""The Gray-Wyner rate-distortion loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as nnf
from torch import nn

__all__ = ["GrayWynerLoss"]

_DISTORTIONS = {"mse": nnf.mse_loss, "cross_entropy": nnf.cross_entropy}


def _distortion(spec, name: str) -> Callable:
    if callable(spec):
        return spec
    if spec in _DISTORTIONS:
        return _DISTORTIONS[spec]
    raise ValueError(f"{name} must be 'mse', 'cross_entropy' or a callable(prediction, target), got {spec!r}")


class GrayWynerLoss(nn.Module):
    """``beta*r0 + r1 + r2 + l1*d1 + l2*d2 + align_weight*align``.

    ``beta = 1`` is transmit-optimal (total rate ``Rt = R0 + R1 + R2``), ``beta = 2``
    receive-optimal (``Rr = 2 R0 + R1 + R2``); ``beta`` in between trades the two.

    The paper's code weighs the rates by ``alpha`` and keeps distortions and alignment at
    weight 1: ``alpha*(beta*R0 + R1 + R2) + D1 + D2 + align``. Divided by ``alpha`` that is
    this loss with ``lmbda = (1/alpha, 1/alpha)`` and ``align_weight = 1/alpha``.

    Args:
        beta: price of the common channel relative to a private one.
        lmbda: ``(l1, l2)`` distortion weights.
        distortion: ``(d1, d2)``, each ``"mse"``, ``"cross_entropy"`` or a callable
            ``(prediction, target) -> scalar``.
        align_weight: weight of the alignment loss of the shared architecture.
        rate_unit: ``"pixel"`` (bits per input pixel, the default) or ``"sample"`` (bits
            per sample, natural for tiny inputs such as 16x16 digits).

    ``forward(out, (z1, z2))`` takes the codec's output and the two targets and returns a
    dict with ``loss, r0, r1, r2, rate_transmit, rate_receive, d1, d2, align``; rates are
    in bits per input pixel (total bits / (N * H * W) of ``x1``) or per sample (see
    ``rate_unit``); channels an architecture lacks count 0.
    """

    def __init__(
        self,
        beta: float = 1.5,
        lmbda: Sequence[float] = (1.0, 1.0),
        distortion: Sequence = ("mse", "mse"),
        align_weight: float = 1.0,
        rate_unit: str = "pixel",
    ):
        super().__init__()
        if rate_unit not in ("pixel", "sample"):
            raise ValueError(f"rate_unit must be 'pixel' or 'sample', got {rate_unit!r}")
        self.rate_unit = rate_unit
        if len(tuple(lmbda)) != 2:
            raise ValueError(f"lmbda must be a pair (l1, l2), got {lmbda!r}")
        if len(tuple(distortion)) != 2:
            raise ValueError(f"distortion must be a pair (d1, d2), got {distortion!r}")
        self.beta = float(beta)
        self.lmbda = tuple(float(v) for v in lmbda)
        self.distortion = tuple(_distortion(d, f"distortion[{i}]") for i, d in enumerate(distortion))
        self.align_weight = float(align_weight)

    def forward(self, out: dict, targets: Sequence[torch.Tensor]) -> dict:
        if len(tuple(targets)) != 2:
            raise ValueError("targets must be a pair (z1, z2)")
        for key in ("z_hat", "num_pixels"):
            if key not in out:
                raise ValueError(f"out lacks {key!r}: pass the dict returned by GrayWynerCodec.forward")
        if "bits" not in out and "likelihoods" not in out:
            raise ValueError("out lacks 'bits' (or 'likelihoods'): pass the dict returned by GrayWynerCodec.forward")
        z_hat = out["z_hat"]
        ref = z_hat[1]
        num_pixels = out["num_pixels"] if self.rate_unit == "pixel" else ref.shape[0]
        # The codec's fused per-sample bits; CompressAI-style outputs carry likelihoods only.
        bits = out["bits"] if "bits" in out else {n: -torch.log2(p).sum() for n, p in out["likelihoods"].items()}
        rates = {}
        for name in ("y0", "y1", "y2"):
            rates[name] = bits[name].sum() / num_pixels if name in bits else ref.new_zeros(())
        d1 = self.distortion[0](z_hat[1], targets[0])
        d2 = self.distortion[1](z_hat[2], targets[1])
        align = out.get("align_loss", ref.new_zeros(()))
        r0, r1, r2 = rates["y0"], rates["y1"], rates["y2"]
        loss = self.beta * r0 + r1 + r2 + self.lmbda[0] * d1 + self.lmbda[1] * d2 + self.align_weight * align
        return {
            "loss": loss,
            "r0": r0,
            "r1": r1,
            "r2": r2,
            "rate_transmit": r0 + r1 + r2,
            "rate_receive": 2 * r0 + r1 + r2,
            "d1": d1,
            "d2": d2,
            "align": align,
        }
