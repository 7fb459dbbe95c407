"""A fast, safe rANS entropy coder over CompressAI-compatible CDF tables.

>>> from gwn_fast.coder import CdfTables, encode, decode
>>> tables = CdfTables.from_gaussian([0.5, 1.0, 4.0])
>>> data = encode(symbols, indexes, tables)          # bytes
>>> out = decode(data, indexes, tables)              # int32 array shaped like indexes
>>> indexes = build_indexes(scales, [0.5, 1.0, 4.0])   # scales -> table indexes (int32)

The bitstream format (versioned, little-endian, chunked, checksummed) is described in
``docs/bitstream.md``. Corrupt streams, and streams decoded with other indexes or tables
than they were encoded with, raise :class:`BitstreamError` (a ``ValueError``).
"""

from gwn_fast._rans import BitstreamError
from gwn_fast.coder.stream import Decoder, decode, encode, fixed_overhead
from gwn_fast.coder.tables import MAX_PRECISION, CdfTables, build_indexes

__all__ = [
    "BitstreamError",
    "CdfTables",
    "Decoder",
    "MAX_PRECISION",
    "build_indexes",
    "decode",
    "encode",
    "fixed_overhead",
]
