"""Networks that predict (scale, mean) of each latent element, with spatial context.

One :class:`LatentEntropyParameters` per coded latent (Y0, Y1|Y0, Y2|Y0). Its inputs:

- an optional conditioning branch on Y0 (for the private latents: the paper's design);
- an optional spatial context on the latent itself:
  ``"checkerboard"`` (two passes: anchors at (i + j) even, then the rest, seeing the
  anchors; decodes in two parallel steps), ``"autoregressive"`` (a 5x5 mask-A
  convolution, decoded position by position), or ``"none"``.

Anchors (and every element with ``context="none"``) see no context features: for Y0 the
head then reduces to a learned per-channel Gaussian, which is Y0's prior of its own
(``GrayWynerCodec(y0_prior="gaussian")``). The alternative, ``y0_prior="bottleneck"``,
models those elements with :class:`IntegerEntropyBottleneck`, CompressAI's
non-parametric per-channel density with its tables laid on the integer grid.
"""

from __future__ import annotations

import torch
from compressai.layers import MaskedConv2d
from torch import nn

__all__ = ["CONTEXTS", "LatentEntropyParameters", "checkerboard_anchor_mask"]

CONTEXTS = ("checkerboard", "autoregressive", "none")


def checkerboard_anchor_mask(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``[1, 1, H, W]``: 1 where (i + j) is even (anchors, decoded first), else 0."""
    i = torch.arange(height, device=device).view(-1, 1)
    j = torch.arange(width, device=device).view(1, -1)
    return ((i + j) % 2 == 0).to(dtype).view(1, 1, height, width)


class LatentEntropyParameters(nn.Module):
    """``(y [B, C, h, w], cond [B, Cc, h, w] | None) -> (scales, means)``, each ``[B, C, h, w]``."""

    def __init__(self, channels: int, cond_channels: int = 0, context: str = "checkerboard", hidden: int | None = None):
        super().__init__()
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        self.channels = channels
        self.context = context
        width = 2 * channels
        hidden = hidden or max(width, 8)
        self.cond = None
        if cond_channels > 0:
            self.cond = nn.Sequential(
                nn.Conv2d(cond_channels, hidden, 3, padding=1),
                nn.ELU(),
                nn.Conv2d(hidden, hidden, 3, padding=1),
                nn.ELU(),
                nn.Conv2d(hidden, width, 3, padding=1),
            )
        if context == "checkerboard":
            self.ctx = nn.Conv2d(channels, width, 5, padding=2)
        elif context == "autoregressive":
            self.ctx = MaskedConv2d(channels, width, 5, padding=2, mask_type="A")
        else:
            self.ctx = None
        inputs = (width if self.cond is not None else 0) + (width if self.ctx is not None else 0)
        if inputs == 0:
            self.head = None
            self.prior = nn.Parameter(torch.cat([torch.ones(1, channels, 1, 1), torch.zeros(1, channels, 1, 1)], 1))
        else:
            self.head = nn.Sequential(
                nn.Conv2d(inputs, hidden, 1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(hidden, hidden, 1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(hidden, width, 1),
            )

    def cond_features(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        if self.cond is None:
            return None
        if cond is None:
            raise ValueError("this latent is coded conditionally: pass the common latent as cond")
        return self.cond(cond)

    def context_features(self, y_visible: torch.Tensor) -> torch.Tensor:
        """Context features from the part of ``y`` a decoder already has."""
        return self.ctx(y_visible)

    def head_params(self, cond_feat, ctx_feat, like: torch.Tensor):
        """(scales, means) from conditioning and context features (``None`` = absent/zero)."""
        if self.head is None:
            prior = self.prior.to(like.dtype).expand(like.shape[0], -1, like.shape[2], like.shape[3])
            scales, means = prior.chunk(2, 1)
            return scales, means
        feats = []
        if self.cond is not None:
            feats.append(cond_feat)
        if self.ctx is not None:
            if ctx_feat is None:
                ctx_feat = like.new_zeros(like.shape[0], 2 * self.channels, like.shape[2], like.shape[3])
            feats.append(ctx_feat)
        scales, means = self.head(torch.cat(feats, 1)).chunk(2, 1)
        return scales, means

    def forward(self, y: torch.Tensor, cond: torch.Tensor | None = None):
        """One-shot (training / rate estimate) parameters, equal to what decoding computes."""
        cond_feat = self.cond_features(cond)
        ctx_feat = None
        if self.context == "checkerboard":
            anchors = checkerboard_anchor_mask(y.shape[2], y.shape[3], y.device, y.dtype)
            ctx_feat = self.context_features(y * anchors) * (1 - anchors)
        elif self.context == "autoregressive":
            ctx_feat = self.context_features(y)
        return self.head_params(cond_feat, ctx_feat, y)
