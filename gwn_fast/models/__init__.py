"""Models: the Gray-Wyner codec, its transforms and entropy-parameter networks."""

from gwn_fast.models.entropy_parameters import CONTEXTS, LatentEntropyParameters, checkerboard_anchor_mask
from gwn_fast.models.gray_wyner import ARCHITECTURES, STREAMS, GrayWynerCodec, quantize_ste

__all__ = [
    "ARCHITECTURES",
    "CONTEXTS",
    "STREAMS",
    "GrayWynerCodec",
    "LatentEntropyParameters",
    "checkerboard_anchor_mask",
    "quantize_ste",
]
