"""gwn_fast: a learnable Gray-Wyner network codec with real bitstreams.

Public pieces so far:
- :mod:`gwn_fast.coder`: the C++ rANS entropy coder (``CdfTables``, ``encode``,
  ``decode``, ``Decoder``).
- :class:`BitstreamError`: raised for a corrupt or mismatched bitstream.
"""

from gwn_fast.coder import BitstreamError

__version__ = "0.1.0"

__all__ = ["BitstreamError", "__version__"]
