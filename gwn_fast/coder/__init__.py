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
from gwn_fast.coder.tables import (
    DEFAULT_PRECISION,
    DEFAULT_SCALE_COUNT,
    MAX_MEAN_STEPS,
    MAX_PRECISION,
    CdfTables,
    build_indexes,
    log_scale_table,
)

__all__ = [
    "BitstreamError",
    "CdfTables",
    "DEFAULT_PRECISION",
    "DEFAULT_SCALE_COUNT",
    "Decoder",
    "MAX_MEAN_STEPS",
    "MAX_PRECISION",
    "build_indexes",
    "decode",
    "encode",
    "fixed_overhead",
    "log_scale_table",
]
