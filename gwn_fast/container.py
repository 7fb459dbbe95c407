"""One byte string for a whole ``compress()`` result, and per-receiver extraction.

Layout of version 4 (what :func:`pack` writes; little-endian, varint = unsigned LEB128;
``docs/bitstream.md`` has the table and the integrity guarantees):

``b"GWNC"``, u8 version (4), varint H, W, h, w, N (samples), u8 flags (bit 0 common,
1 private1, 2 private2 present; bit 3: one stream per channel for all samples, see
``compress(single_stream=True)``; bits 4-6 zero; bit 7 always set), the section table
(varint byte length of every stream: each present channel in that order, N streams each,
or 1), the streams back to back, and a u32 CRC-32 (``zlib.crc32``) of every byte before it.

Version 4 has version 3's layout; its streams are coded with the integer entropy
parameters (:mod:`gwn_fast.entropy_models.integer`), exact on every device, and its
single streams are laid out pass by pass (:mod:`gwn_fast.entropy_models.latent_codec`).
Versions 2 and 3 hold streams of the earlier float64 entropy parameters, which this
version does not rebuild: :func:`unpack` refuses them with a :class:`~gwn_fast.BitstreamError`
that names the version (decode them with the release that wrote them, and re-encode).

:func:`unpack` checks, before it allocates anything from the header: the magic, the
version, the CRC (v3), every field against the others and against :class:`Limits`
(``1 <= h <= H``, ``1 <= w <= W``, ``1 <= N <= max_samples``, ``N*H*W <= max_pixels``),
and that the section lengths add up to exactly the bytes present. What depends on the
model (the latent grid against the input size and the stride, the streams' symbol counts
against the latent shape) is checked by ``GrayWynerCodec.decompress`` before decoding.
Every failure is a :class:`~gwn_fast.BitstreamError` saying what is wrong.

:func:`extract` keeps the channels a receiver needs by copying sections: nothing is decoded.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from gwn_fast.coder import BitstreamError

__all__ = ["DEFAULT_LIMITS", "Limits", "pack", "unpack", "extract", "rates"]

MAGIC = b"GWNC"
VERSION = 4
READ_VERSIONS = (4,)
LEGACY_VERSIONS = (2, 3)  # float64 coding path: refused with their own message
SINGLE_STREAM_FLAG = 0x08
V3_FLAG = 0x80  # set in every file since version 3; version 2 required bits 4-7 clear
CHANNELS = ("common", "private1", "private2")
RECEIVER_CHANNELS = {1: ("common", "private1"), 2: ("common", "private2")}


@dataclass(frozen=True)
class Limits:
    """What a decoder agrees to allocate for one container, checked before it allocates.

    The defaults are far above the bundled recipes (a digits test set of 10,000 images, a
    few 4K frames) and keep a crafted 80-byte file from asking for gigabytes. Raise them
    for bigger inputs: ``unpack(data, limits=Limits(max_pixels=1 << 30))``, and the same
    ``limits=`` for ``GrayWynerCodec.decompress``.

    Attributes:
        max_samples: samples ``N`` in one container.
        max_pixels: input positions of all samples together, ``N * H * W`` (bounds the
            decoded output and the synthesis transforms' activations).
        max_latent_elements: decoded latent values of all samples and channels together,
            ``N * (sum of the decoded latents' channels) * h * w``.
        max_symbols: symbols one rANS stream may declare (its own header says how many).
    """

    max_samples: int = 1 << 16
    max_pixels: int = 1 << 27
    max_latent_elements: int = 1 << 25
    max_symbols: int = 1 << 25

    def __post_init__(self):
        for name in ("max_samples", "max_pixels", "max_latent_elements", "max_symbols"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Limits.{name} must be a positive integer, got {v!r}")


DEFAULT_LIMITS = Limits()


def _put_varint(out: bytearray, v: int) -> None:
    if v < 0:
        raise ValueError(f"cannot store negative value {v}")
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _get_varint(data: bytes, pos: int, what: str = "field") -> tuple[int, int]:
    v = shift = 0
    while True:
        if pos >= len(data):
            raise BitstreamError(f"truncated container (in the {what})")
        b = data[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, pos
        shift += 7
        if shift > 63:
            raise BitstreamError(f"corrupt container: the {what} overflows 64 bits")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_header(H, W, h, w, n, limits: Limits | None = None) -> None:
    """The model-free field checks of a container header (see the module doc); raises
    :class:`BitstreamError` saying which field is wrong."""
    limits = limits or DEFAULT_LIMITS
    for name, v in (("input height H", H), ("input width W", W), ("latent height h", h), ("latent width w", w),
                    ("sample count N", n)):
        if not _is_int(v) or v < 1:
            raise BitstreamError(f"corrupt container: {name} is {v!r}, must be a positive integer")
    if h > H or w > W:
        raise BitstreamError(f"corrupt container: latent grid {h}x{w} is larger than the input {H}x{W}")
    if n > limits.max_samples:
        raise BitstreamError(
            f"container holds {n:,} samples, more than limits.max_samples={limits.max_samples:,} "
            "(corrupt, or pass a larger gwn_fast.container.Limits)"
        )
    if n * H * W > limits.max_pixels:
        raise BitstreamError(
            f"container declares {n:,} samples of {H}x{W} = {n * H * W:,} positions, more than "
            f"limits.max_pixels={limits.max_pixels:,} (corrupt, or pass a larger gwn_fast.container.Limits)"
        )


def pack(enc: dict) -> bytes:
    """``compress()``'s ``{"strings", "shape"}`` as one byte string (format version 4)."""
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
    H, W, h, w = (int(v) for v in (H, W, h, w))
    try:
        # Never write what unpack refuses (the limits are the reader's business).
        check_header(H, W, h, w, n, Limits(max_samples=max(n, 1), max_pixels=max(n * H * W, 1)))
    except BitstreamError as err:
        raise ValueError(f"enc['shape'] is not a valid compress() shape: {err}") from None
    out = bytearray(MAGIC)
    out.append(VERSION)
    for v in (H, W, h, w, n):
        _put_varint(out, v)
    out.append(sum(1 << i for i, c in enumerate(CHANNELS) if c in strings) | (SINGLE_STREAM_FLAG if single else 0) | V3_FLAG)
    payload = []
    for c in present:
        for s in strings[c]:
            if not isinstance(s, (bytes, bytearray, memoryview)):
                raise TypeError(f"enc['strings'][{c!r}] must hold bytes, got {type(s).__name__}")
            _put_varint(out, len(s))
            payload.append(bytes(s))
    out += b"".join(payload)
    out += zlib.crc32(out).to_bytes(4, "little")
    return bytes(out)


def unpack(data: bytes, *, limits: Limits | None = None) -> dict:
    """Inverse of :func:`pack`: ``{"strings": ..., "shape": ...}`` for ``decompress``.

    Reads format version 4. Raises :class:`BitstreamError` (before allocating anything
    from the header) for a damaged or truncated container, a CRC mismatch, a header
    outside ``limits`` (default :data:`DEFAULT_LIMITS`), or a version-2/3 container (the
    float64 coding path, named in the message)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    limits = DEFAULT_LIMITS if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a gwn_fast.container.Limits, got {type(limits).__name__}")
    if data[:4] != MAGIC:
        raise BitstreamError("not a gwn_fast container (bad magic: expected b'GWNC')")
    if len(data) < 5:
        raise BitstreamError("truncated container (no version byte)")
    version = data[4]
    if version in LEGACY_VERSIONS:
        raise BitstreamError(
            f"container version {version} holds streams of the float64 entropy parameters of earlier gwn_fast "
            f"releases, which this release (container version {VERSION}, integer entropy parameters) does not "
            "decode: decode it with the release that wrote it, then re-encode"
        )
    if version not in READ_VERSIONS:
        raise BitstreamError(f"unsupported container version {version} (this build reads versions {READ_VERSIONS})")
    if version == 4:
        if len(data) < 5 + 4:
            raise BitstreamError("truncated container (no checksum)")
        body, stored = data[:-4], int.from_bytes(data[-4:], "little")
        actual = zlib.crc32(body)
        if actual != stored:
            raise BitstreamError(
                f"container checksum mismatch (CRC-32 {actual:#010x}, stored {stored:#010x}): "
                "the file is corrupt or truncated"
            )
    else:
        body = data
    pos = 5
    vals = []
    for what in ("input height H", "input width W", "latent height h", "latent width w", "sample count N"):
        v, pos = _get_varint(body, pos, what)
        vals.append(v)
    H, W, h, w, n = vals
    if pos >= len(body):
        raise BitstreamError("truncated container (no flags byte)")
    mask = body[pos]
    pos += 1
    if mask & 0x70 or not mask & V3_FLAG:
        raise BitstreamError(f"corrupt container: flags {mask:#04x} (version 4 sets bit 7 and clears bits 4-6)")
    check_header(H, W, h, w, n, limits)
    single = bool(mask & SINGLE_STREAM_FLAG)
    present = [c for i, c in enumerate(CHANNELS) if mask & (1 << i)]
    per_channel = 1 if single else n
    strings = {}
    sizes = []
    for c in present:
        for i in range(per_channel):
            size, pos = _get_varint(body, pos, f"section table ({c} stream {i} length)")
            sizes.append(size)
    if sum(sizes) != len(body) - pos:
        raise BitstreamError(
            f"corrupt container: the section table adds up to {sum(sizes):,} bytes but "
            f"{len(body) - pos:,} follow it"
        )
    it = iter(sizes)
    for c in present:
        items = []
        for _ in range(per_channel):
            size = next(it)
            items.append(body[pos : pos + size])
            pos += size
        strings[c] = items
    shape = {"input": (H, W), "latent": (h, w), "samples": n, "single_stream": single}
    return {"strings": strings, "shape": shape}


def extract(data: bytes, receiver: int, *, limits: Limits | None = None) -> bytes:
    """The container holding only what ``receiver`` (1 or 2) needs (common + its private).

    Checks ``data`` as :func:`unpack` does and writes the current version (4)."""
    if isinstance(receiver, bool) or receiver not in RECEIVER_CHANNELS:
        raise ValueError(f"receiver must be 1 or 2, got {receiver!r}")
    enc = unpack(data, limits=limits)
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
