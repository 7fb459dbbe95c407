"""gwn_fast: a learnable Gray-Wyner network codec with real bitstreams.

Public pieces so far:
- :mod:`gwn_fast.coder`: the C++ rANS entropy coder (``CdfTables``, ``encode``,
  ``decode``, ``Decoder``).
- :class:`BitstreamError`: raised for a corrupt or mismatched bitstream.
- :class:`CheckpointError`: raised for a file that is not a loadable gwn_fast checkpoint
  (checkpoints are read with ``torch.load(weights_only=True)``: see :mod:`gwn_fast.checkpoint`).
"""

import warnings as _warnings

with _warnings.catch_warnings():
    # CompressAI imports torch_geometric, whose module-level torch.jit.script calls warn on
    # every import under recent torch: silence that one warning, for this import only.
    _warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import compressai  # noqa: F401

from gwn_fast import container, functional
from gwn_fast.checkpoint import CheckpointError
from gwn_fast.coder import BitstreamError
from gwn_fast.losses import GrayWynerLoss
from gwn_fast.models import GrayWynerCodec

__version__ = "0.1.0"

__all__ = ["BitstreamError", "CheckpointError", "GrayWynerCodec", "GrayWynerLoss", "__version__", "container", "functional"]
