"""encode / decode / Decoder: thin wrappers that check arguments and hand buffers to C++."""

from __future__ import annotations

import math

import numpy as np

from gwn_fast import _rans
from gwn_fast.coder._buffers import as_int32, resolve_threads
from gwn_fast.coder.tables import CdfTables

__all__ = ["encode", "decode", "Decoder", "DEFAULT_CHUNK_SIZE", "fixed_overhead"]

DEFAULT_CHUNK_SIZE: int = 1 << _rans.DEFAULT_CHUNK_LOG2


def _check_tables(tables) -> CdfTables:
    if not isinstance(tables, CdfTables):
        raise TypeError(f"tables must be a gwn_fast.coder.CdfTables, got {type(tables).__name__}")
    return tables


def _as_bytes(data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be bytes, got {type(data).__name__}")


def _chunk_log2(chunk_size) -> int:
    if chunk_size is None:
        return _rans.DEFAULT_CHUNK_LOG2
    lo, hi = 1 << _rans.MIN_CHUNK_LOG2, 1 << _rans.MAX_CHUNK_LOG2
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < lo
        or chunk_size > hi
        or chunk_size & (chunk_size - 1)
    ):
        raise ValueError(f"chunk_size must be a power of two in [{lo}, {hi}], got {chunk_size!r}")
    return int(chunk_size).bit_length() - 1


def encode(symbols, indexes, tables: CdfTables, threads: int | None = None, *, chunk_size: int | None = None) -> bytes:
    """Entropy-code ``symbols`` with the tables chosen by ``indexes``.

    Args:
        symbols: int32 numpy array or CPU tensor, any shape, contiguous or not. Any int32
            value is allowed: values outside a table's range take the escape path.
        indexes: int32, same shape as ``symbols``; ``indexes[i]`` in ``[0, len(tables))``.
        tables: the :class:`CdfTables`.
        threads: chunks coded at once (default: all cores). The bytes do not depend on it.
        chunk_size: symbols per independently coded chunk (a power of two; default
            2**18). Recorded in the header.

    Returns:
        The stream as ``bytes``.
    """
    tables = _check_tables(tables)
    sym = as_int32(symbols, "symbols")
    idx = as_int32(indexes, "indexes")
    if sym.shape != idx.shape:
        raise ValueError(f"symbols shape {tuple(sym.shape)} does not match indexes shape {tuple(idx.shape)}")
    return _rans.encode(
        tables._native, sym.reshape(-1), idx.reshape(-1), resolve_threads(threads), _chunk_log2(chunk_size)
    )


def decode(data, indexes, tables: CdfTables, threads: int | None = None) -> np.ndarray:
    """Decode a whole stream made by :func:`encode`.

    Args:
        data: the stream (``bytes``).
        indexes: int32 array/CPU tensor, the encoder's indexes (any shape).
        tables: the encoder's :class:`CdfTables`.
        threads: chunks decoded at once (default: all cores).

    Returns:
        int32 numpy array shaped like ``indexes``.

    Raises:
        BitstreamError: corrupt or truncated data, another format version, or indexes /
            tables that differ from the encoder's (the per-chunk checksum fails).
    """
    tables = _check_tables(tables)
    idx = as_int32(indexes, "indexes")
    out = _rans.decode(tables._native, _as_bytes(data), idx.reshape(-1), resolve_threads(threads))
    return out.reshape(idx.shape)


class Decoder:
    """Streaming decoder: symbols come out in encode order, in blocks of any size.

    For context models that decode in steps (checkerboard passes, autoregressive
    positions)::

        dec = Decoder(data, tables)
        first = dec.decode(indexes_pass1)     # the next len(indexes_pass1) symbols
        second = dec.decode(indexes_pass2)    # indexes may depend on what came before
        dec.finish()                          # checksum verified, stream used up

    Each chunk's checksum is verified when its last symbol is decoded, so a mismatch
    raises :class:`BitstreamError` at the latest on that call; after an error the
    decoder is unusable. Not thread-safe: use one decoder per thread.
    """

    def __init__(self, data, tables: CdfTables):
        self._tables = _check_tables(tables)
        self._native = _rans.StreamDecoder(tables._native, _as_bytes(data))

    @property
    def num_symbols(self) -> int:
        """Symbols in the stream."""
        return self._native.num_symbols

    @property
    def position(self) -> int:
        """Symbols decoded so far."""
        return self._native.position

    @property
    def remaining(self) -> int:
        return self.num_symbols - self.position

    def decode(self, indexes) -> np.ndarray:
        """Decode the next ``indexes.size`` symbols; returns int32 shaped like ``indexes``."""
        idx = as_int32(indexes, "indexes")
        return self._native.decode(idx.reshape(-1)).reshape(idx.shape)

    def finish(self) -> None:
        """Check that every symbol was decoded (checksums are checked per chunk)."""
        self._native.finish()


def fixed_overhead(data: bytes) -> float:
    """Bytes of ``data`` that carry no symbol information: the header (with chunk
    lengths) plus, per rANS lane, the initial state (which holds the checksum) and the
    slack of the stored final state. The rest, ``len(data) - fixed_overhead(data)``, is
    the payload: what the symbols cost under the tables. Raises BitstreamError for a
    malformed header.
    """
    data = _as_bytes(data)
    chunks = _rans.stream_layout(data)
    if not chunks:
        return float(len(data))
    # Lane 0 starts at 2**32 + h with h the (uniform) 32-bit checksum: log2 of that is
    # 32 + (2 ln 2 - 1) / ln 2 on average (exact to within 0.56 bit per chunk).
    checksum_state_bits = 32 + (2 * math.log(2) - 1) / math.log(2)
    bits = 8.0 * chunks[0][0]  # header
    for begin, end, symbols in chunks:
        if symbols >= _rans.MULTI_LANE_MIN_SYMBOLS:
            for lane in range(4):
                state = int.from_bytes(data[begin + 8 * lane : begin + 8 * lane + 8], "little")
                initial = checksum_state_bits if lane == 0 else 31  # else exactly 2**31
                bits += 64 - math.log2(state) + initial
        else:
            stored = 4 + (end - begin) % 4
            state = int.from_bytes(data[begin : begin + stored], "little")
            if state < 1 << 31:  # a split state: its low word follows
                state = (state << 32) | int.from_bytes(data[begin + stored : begin + stored + 4], "little")
                stored += 4
            bits += 8 * stored - math.log2(state) + checksum_state_bits
    return bits / 8
