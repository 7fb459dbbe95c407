"""One byte string for a whole ``compress()`` result, and per-receiver extraction.

Layout (little-endian, varint = unsigned LEB128):
``b"GWNC"``, u8 version (2), varint H, W, h, w, varint N (samples), u8 flags (bit 0
common, 1 private1, 2 private2 present; bit 3: one stream per channel for all samples,
see ``compress(single_stream=True)``), then for each present channel in that order and
each stream (N of them, or 1): varint length + the stream. :func:`extract` keeps the channels a receiver
needs by copying sections: nothing is decoded.
"""

from __future__ import annotations

from gwn_fast.coder import BitstreamError

__all__ = ["pack", "unpack", "extract", "rates"]

MAGIC = b"GWNC"
VERSION = 2
SINGLE_STREAM_FLAG = 0x08
CHANNELS = ("common", "private1", "private2")
RECEIVER_CHANNELS = {1: ("common", "private1"), 2: ("common", "private2")}


def _put_varint(out: bytearray, v: int) -> None:
    if v < 0:
        raise ValueError(f"cannot store negative value {v}")
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _get_varint(data: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        if pos >= len(data):
            raise BitstreamError("truncated container")
        b = data[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, pos
        shift += 7
        if shift > 63:
            raise BitstreamError("corrupt container: varint overflows 64 bits")


def pack(enc: dict) -> bytes:
    """``compress()``'s ``{"strings", "shape"}`` as one byte string."""
    try:
        strings, shape = enc["strings"], enc["shape"]
        (H, W), (h, w) = shape["input"], shape["latent"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError("enc must be the dict returned by GrayWynerCodec.compress()") from err
    present = [c for c in CHANNELS if c in strings]
    unknown = set(strings) - set(CHANNELS)
    if unknown:
        raise ValueError(f"enc['strings'] has unknown channels {sorted(unknown)}; expected {CHANNELS}")
    counts = {len(strings[c]) for c in present}
    if len(counts) > 1:
        raise ValueError(f"channels hold different numbers of streams: {sorted(counts)}")
    streams = counts.pop() if counts else 0
    single = bool(shape.get("single_stream", False))
    n = int(shape.get("samples", streams))
    if present and streams != (1 if single else n):
        raise ValueError(f"enc['strings'] holds {streams} streams per channel; shape says {n} samples, single_stream={single}")
    out = bytearray(MAGIC)
    out.append(VERSION)
    for v in (H, W, h, w, n):
        _put_varint(out, int(v))
    out.append(sum(1 << i for i, c in enumerate(CHANNELS) if c in strings) | (SINGLE_STREAM_FLAG if single else 0))
    for c in present:
        for s in strings[c]:
            _put_varint(out, len(s))
            out += s
    return bytes(out)


def unpack(data: bytes) -> dict:
    """Inverse of :func:`pack`: ``{"strings": ..., "shape": ...}`` for ``decompress``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[:4] != MAGIC:
        raise BitstreamError("not a gwn_fast container (bad magic)")
    if len(data) < 5 or data[4] != VERSION:
        raise BitstreamError(f"unsupported container version {data[4] if len(data) > 4 else None} (this build reads {VERSION})")
    pos = 5
    vals = []
    for _ in range(5):
        v, pos = _get_varint(data, pos)
        vals.append(v)
    H, W, h, w, n = vals
    if pos >= len(data):
        raise BitstreamError("truncated container")
    mask = data[pos]
    pos += 1
    if mask >> 4:
        raise BitstreamError(f"corrupt container: flags {mask:#x}")
    single = bool(mask & SINGLE_STREAM_FLAG)
    strings = {}
    for i, c in enumerate(CHANNELS):
        if not mask & (1 << i):
            continue
        items = []
        for _ in range(1 if single else n):
            size, pos = _get_varint(data, pos)
            if pos + size > len(data):
                raise BitstreamError("truncated container")
            items.append(data[pos : pos + size])
            pos += size
        strings[c] = items
    if pos != len(data):
        raise BitstreamError(f"corrupt container: {len(data) - pos} trailing bytes")
    shape = {"input": (H, W), "latent": (h, w), "samples": n, "single_stream": single}
    return {"strings": strings, "shape": shape}


def extract(data: bytes, receiver: int) -> bytes:
    """The container holding only what ``receiver`` (1 or 2) needs (common + its private)."""
    if receiver not in RECEIVER_CHANNELS:
        raise ValueError(f"receiver must be 1 or 2, got {receiver!r}")
    enc = unpack(data)
    keep = RECEIVER_CHANNELS[receiver]
    enc["strings"] = {c: s for c, s in enc["strings"].items() if c in keep}
    return pack(enc)


def rates(enc: dict, per: int | None = None) -> dict:
    """Rates from the real bytes of ``enc["strings"]``: ``r0, r1, r2`` (bits per channel),
    ``rate_transmit = r0 + r1 + r2`` and ``rate_receive = 2 r0 + r1 + r2``; divided by
    ``per`` (e.g. the number of input pixels or images) when given."""
    strings = enc["strings"] if "strings" in enc else enc
    bits = {c: 8 * sum(len(s) for s in strings.get(c, ())) for c in CHANNELS}
    scale = 1.0 / per if per else 1.0
    r0, r1, r2 = (bits[c] * scale for c in CHANNELS)
    return {"r0": r0, "r1": r1, "r2": r2, "rate_transmit": r0 + r1 + r2, "rate_receive": 2 * r0 + r1 + r2}
