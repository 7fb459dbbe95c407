"""Kept for imports written before the entropy models moved to :mod:`gwn_fast.entropy_models`."""

from gwn_fast.entropy_models.bottleneck import IntegerEntropyBottleneck
from gwn_fast.entropy_models.parameters import CONTEXTS, LatentEntropyParameters, checkerboard_anchor_mask

__all__ = ["CONTEXTS", "IntegerEntropyBottleneck", "LatentEntropyParameters", "checkerboard_anchor_mask"]
