"""Entropy models: entropy parameters (float for training, integer for coding), tables in
buffers, and the latent codecs that compose them."""

from gwn_fast.entropy_models.bottleneck import IntegerEntropyBottleneck
from gwn_fast.entropy_models.gaussian import GaussianCoder, default_scale_table
from gwn_fast.entropy_models.integer import IntegerEntropyParameters
from gwn_fast.entropy_models.latent_codec import PRIORS, GaussianLatentCodec
from gwn_fast.entropy_models.parameters import CONTEXTS, LatentEntropyParameters, checkerboard_anchor_mask

__all__ = [
    "CONTEXTS",
    "PRIORS",
    "GaussianCoder",
    "GaussianLatentCodec",
    "IntegerEntropyBottleneck",
    "IntegerEntropyParameters",
    "LatentEntropyParameters",
    "checkerboard_anchor_mask",
    "default_scale_table",
]
