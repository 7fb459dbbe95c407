"""Datasets for the Gray-Wyner experiments (all offline, nothing is downloaded).

- :mod:`gwn_fast.data.digits`: :class:`ColouredDigits`, scikit-learn's real 8x8 handwritten
  digits, tinted with 10 colours (task 1 digit, task 2 colour); needs scikit-learn.
- :mod:`gwn_fast.data.stereo`: :class:`StereoCrops`, crops of scikit-image's bundled
  Middlebury Motorcycle stereo pair (task 1 left view, task 2 disparity); needs scikit-image.
- :mod:`gwn_fast.data.synthetic`: ``SyntheticSource`` and ``joint_pmf``, the paper's
  synthetic correlated sources; loaded on first access.

scikit-learn and scikit-image are imported only when data is loaded.
"""

from __future__ import annotations

import importlib

from gwn_fast.data.digits import (
    COLOUR_NAMES,
    COLOURS,
    ColouredDigits,
    colour_distribution,
    label_mutual_information,
)
from gwn_fast.data.stereo import StereoCrops, full_views

_LAZY_SYNTHETIC = ("SyntheticSource", "joint_pmf")

__all__ = [
    "COLOURS",
    "COLOUR_NAMES",
    "ColouredDigits",
    "StereoCrops",
    "SyntheticSource",
    "colour_distribution",
    "full_views",
    "joint_pmf",
    "label_mutual_information",
]


def __getattr__(name: str):
    if name in _LAZY_SYNTHETIC:
        return getattr(importlib.import_module("gwn_fast.data.synthetic"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
