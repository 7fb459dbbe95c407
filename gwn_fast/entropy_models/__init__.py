"""Entropy models: tables in buffers, symbol mapping, streaming decode."""

from gwn_fast.entropy_models.gaussian import GaussianCoder, default_scale_table

__all__ = ["GaussianCoder", "default_scale_table"]
