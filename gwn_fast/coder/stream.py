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
            2**18). Recorded in the header when it changes the chunking (a stream that
            fits one chunk is the same for every chunk size).

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


# Mean of log2(1 + u), u ~ U[0, 1): the excess over its bit count of a state 2^b + (b
# uniform bits), such as lane 0's initial state 2^32 + h (h the uniform 32-bit checksum).
_UNIFORM_STATE_EXCESS = (2 * math.log(2) - 1) / math.log(2)
_LOW = 1 << 31


def _pop_bits(x: int, bits: int, data: bytes, pos: int) -> tuple[int, int, int]:
    """One raw-bits decoder step on a lane state (as the C++ decoder does it)."""
    value = x & ((1 << bits) - 1)
    x >>= bits
    if x < _LOW:
        x = (x << 32) | int.from_bytes(data[pos : pos + 4], "little")
        pos += 4
    return value, x, pos


def fixed_overhead(data: bytes) -> float:
    """Bytes of ``data`` that carry no symbol information: the header (with chunk
    lengths) plus, per chunk, the checksum-carrying initial state, the tail length and
    the slack of the stored final states. The rest, ``len(data) - fixed_overhead(data)``,
    is the payload: what the symbols cost under the tables (to within about a bit per
    chunk: the lane states that travel through lane 0 are counted at their exact cost
    when stored and at their mean when reclaimed). Raises BitstreamError for a malformed
    header.
    """
    data = _as_bytes(data)
    chunks = _rans.stream_layout(data)
    if not chunks:
        return float(len(data))
    # Lane 0 starts at 2**32 + h with h the (uniform) 32-bit checksum: log2 of that is
    # 32 + 0.557 bits on average (exact to within 0.56 bit per chunk).
    checksum_state_bits = 32 + _UNIFORM_STATE_EXCESS
    bits = 8.0 * chunks[0][0]  # header
    for begin, end, symbols in chunks:
        pos = begin
        tail = symbols
        if symbols >= _rans.MULTI_LANE_MIN_SYMBOLS:  # varint tail length
            tail, shift = 0, 0
            while pos < end:
                byte = data[pos]
                pos += 1
                tail |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            bits += 8 * (pos - begin)
        stored = 4 + (end - pos) % 4
        state = int.from_bytes(data[pos : pos + stored], "little")
        pos += stored
        if state < _LOW:  # a split state: its low word follows
            state = (state << 32) | int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
            stored += 4
        bits += 8 * stored - math.log2(max(state, 1)) + checksum_state_bits
        if tail < symbols:
            # Lanes 1..3 live in lane 0: each end state y costs 5 + floor(log2 y) bits
            # where it is stored, minus its log2; each initial state, popped out of lane
            # 0 as 5 + e uniform bits, gives back 5 - 0.557 bits on average.
            for _ in range(3):
                e, state, pos = _pop_bits(state, 5, data, pos)
                low, state, pos = _pop_bits(state, 31, data, pos)
                high = 0
                if e:
                    high, state, pos = _pop_bits(state, e, data, pos)
                y = (1 << (31 + e)) | (high << 31) | low
                bits += (5 + 31 + e - math.log2(y)) - (5 - _UNIFORM_STATE_EXCESS)
    return bits / 8
