"""The rANS coder: round trips, determinism, CompressAI parity, error handling."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gwn_fast
from gwn_fast import _rans
from gwn_fast.coder import BitstreamError, CdfTables, Decoder, decode, encode, fixed_overhead

INT32_MIN, INT32_MAX = np.iinfo(np.int32).min, np.iinfo(np.int32).max
SCALES = np.exp(np.linspace(np.log(0.11), np.log(256.0), 64))
EXPECTED = Path(__file__).parent / "expected" / "coder_golden.json"


@pytest.fixture(scope="module")
def gaussian_tables():
    return CdfTables.from_gaussian(SCALES)


def gaussian_latent(n, seed=0):
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.uniform(np.log(0.11), np.log(256.0), n))
    idx = np.minimum(np.searchsorted(SCALES, scale), len(SCALES) - 1).astype(np.int32)
    sym = np.round(rng.normal(0.0, scale)).astype(np.int32)
    return sym, idx


def table_information_bits(sym, idx, tables):
    """Ideal size in bits of (sym, idx) under the quantized tables (escapes included)."""
    bits = 0.0
    total = 1 << tables.precision
    for s, t in zip(sym.tolist(), idx.tolist()):
        c, n, off = tables.cdfs[t], int(tables.cdf_lengths[t]), int(tables.offsets[t])
        v = s - off
        if 0 <= v < n - 2:
            bits += -np.log2((c[v + 1] - c[v]) / total)
        else:
            esc = n - 2
            raw = -2 * v - 1 if v < 0 else 2 * (v - esc)
            nibbles = (int(raw).bit_length() + 3) // 4
            bits += -np.log2((c[esc + 1] - c[esc]) / total) + 4 + 4 * nibbles
    return bits


# --- round trips -------------------------------------------------------------------

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=40)
values = st.one_of(
    st.integers(-40, 40),
    st.sampled_from([INT32_MIN, INT32_MAX, INT32_MIN + 1, INT32_MAX - 1, 0]),
    st.integers(INT32_MIN, INT32_MAX),
)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), shape=shapes, precision=st.sampled_from([12, 16, 20]))
def test_round_trip_property(data, shape, precision):
    tables = CdfTables.from_gaussian(SCALES[:40], precision=precision)
    sym = data.draw(hnp.arrays(np.int32, shape, elements=values))
    idx = data.draw(hnp.arrays(np.int32, shape, elements=st.integers(0, tables.num_tables - 1)))
    chunk = data.draw(st.sampled_from([16, 64, 1 << 18]))
    stream = encode(sym, idx, tables, threads=1, chunk_size=chunk)
    for threads in (1, 2, 5):
        assert encode(sym, idx, tables, threads=threads, chunk_size=chunk) == stream
        out = decode(stream, idx, tables, threads=threads)
        assert out.dtype == np.int32 and out.shape == sym.shape
        np.testing.assert_array_equal(out, sym)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 3000), cuts=st.lists(st.integers(0, 3000), max_size=8), seed=st.integers(0, 2**16))
def test_streaming_decode_in_arbitrary_blocks(n, cuts, seed):
    tables = CdfTables.from_gaussian(SCALES)
    sym, idx = gaussian_latent(n, seed)
    stream = encode(sym, idx, tables, chunk_size=256)
    dec = Decoder(stream, tables)
    assert dec.num_symbols == n
    bounds = sorted({0, n, *[c for c in cuts if c <= n]})
    parts = [dec.decode(idx[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    dec.finish()
    assert dec.remaining == 0
    np.testing.assert_array_equal(np.concatenate(parts) if parts else np.zeros(0, np.int32), sym)


def test_random_tables_from_pmfs_round_trip():
    rng = np.random.default_rng(3)
    pmfs = [rng.dirichlet(np.full(k, 0.3)) for k in (1, 2, 7, 100, 300)]
    tables = CdfTables.from_pmfs(pmfs, offsets=[0, -1, 5, -50, 1000], precision=16)
    assert tables.num_tables == 5
    idx = rng.integers(0, 5, 20000).astype(np.int32)
    sym = rng.integers(-100, 1400, 20000).astype(np.int32)
    np.testing.assert_array_equal(decode(encode(sym, idx, tables), idx, tables), sym)


def test_torch_tensors_any_layout(gaussian_tables):
    sym, idx = gaussian_latent(2 * 3 * 5 * 7)
    s4 = torch.from_numpy(sym).reshape(2, 3, 5, 7).permute(0, 2, 3, 1)  # non-contiguous
    i4 = torch.from_numpy(idx).reshape(2, 3, 5, 7).permute(0, 2, 3, 1)
    assert not s4.is_contiguous()
    stream = encode(s4, i4, gaussian_tables)
    out = decode(stream, i4, gaussian_tables)
    assert out.shape == (2, 5, 7, 3)
    np.testing.assert_array_equal(out, s4.numpy())


def test_int32_extremes_round_trip_with_extreme_offsets():
    # Tables whose range sits at either end of int32: escapes must not overflow.
    pmf = np.full(10, 0.1)
    tables = CdfTables.from_pmfs([pmf, pmf, pmf], offsets=[INT32_MIN, INT32_MAX - 9, 0])
    ext = np.array([INT32_MIN, INT32_MAX, 0, -1, INT32_MIN + 9, INT32_MAX - 9], np.int32)
    sym = np.tile(ext, 3)
    idx = np.repeat(np.arange(3, dtype=np.int32), ext.size)
    np.testing.assert_array_equal(decode(encode(sym, idx, tables), idx, tables), sym)


# --- anchor bugs (CompressAI) --------------------------------------------------------

def test_single_symbol_encodes(gaussian_tables):
    # CompressAI's encoder aborts on a single-symbol tensor.
    for value in (0, 3, -700, INT32_MAX):
        sym = np.array([value], np.int32)
        idx = np.array([5], np.int32)
        np.testing.assert_array_equal(decode(encode(sym, idx, gaussian_tables), idx, gaussian_tables), sym)


def test_short_streams_full_of_escapes(gaussian_tables):
    # CompressAI overruns its buffer on short streams with escapes.
    for n in range(1, 12):
        sym = np.where(np.arange(n) % 2 == 0, INT32_MIN, INT32_MAX).astype(np.int32)
        idx = np.zeros(n, np.int32)  # the narrowest table: everything escapes
        stream = encode(sym, idx, gaussian_tables)
        np.testing.assert_array_equal(decode(stream, idx, gaussian_tables), sym)


# --- size -----------------------------------------------------------------------------

def test_small_streams_stay_within_12_bytes_of_ideal(gaussian_tables):
    worst = 0.0
    for n in range(0, 65):
        for seed in range(3):
            sym, idx = gaussian_latent(n, seed)
            ideal = table_information_bits(sym, idx, gaussian_tables) / 8
            excess = len(encode(sym, idx, gaussian_tables)) - ideal
            worst = max(worst, excess)
    assert worst <= 12.0, worst


def test_large_stream_overhead_is_small(gaussian_tables):
    sym, idx = gaussian_latent(300_000, 1)
    ideal = table_information_bits(sym[:20000], idx[:20000], gaussian_tables) / 8
    size = len(encode(sym[:20000], idx[:20000], gaussian_tables))
    assert size <= ideal * 1.002 + 64


# --- determinism and golden streams ----------------------------------------------------

def golden_cases():
    rng = np.random.default_rng(2026)
    n = 700
    sym, idx = gaussian_latent(n, 7)
    sym[::97] = INT32_MIN
    sym[5::101] = INT32_MAX
    return {
        "empty": (np.zeros(0, np.int32), np.zeros(0, np.int32), 1 << 18),
        "one": (np.array([2], np.int32), np.array([10], np.int32), 1 << 18),
        "small": (sym[:40], idx[:40], 1 << 18),
        "lanes_chunks_escapes": (sym, idx, 256),
        "uniform": (rng.integers(-3, 4, 50).astype(np.int32), np.full(50, 20, np.int32), 16),
        # a 4-lane chunk (lane-0 tail, lanes 1..3 moved through lane 0) and a 1-lane one
        "four_lanes": (np.concatenate([sym, sym[:500]]), np.concatenate([idx, idx[:500]]), 1024),
        # most probable symbols only: lane 0 never holds enough to seed lanes 1..3
        "mps_run": (np.zeros(600, np.int32), np.zeros(600, np.int32), 1 << 18),
    }


def test_golden_bitstreams(gaussian_tables):
    table_digest = hashlib.sha256(
        gaussian_tables.cdfs.tobytes() + gaussian_tables.cdf_lengths.tobytes() + gaussian_tables.offsets.tobytes()
    ).hexdigest()
    current = {"gaussian_tables_sha256": table_digest}
    for name, (sym, idx, chunk) in golden_cases().items():
        current[name] = encode(sym, idx, gaussian_tables, chunk_size=chunk).hex()
    if os.environ.get("GENERATE_EXPECTED") == "1":
        EXPECTED.write_text(json.dumps(current, indent=1) + "\n")
    expected = json.loads(EXPECTED.read_text())
    # Tables are built in deterministic arithmetic: a change here is a format change.
    assert current["gaussian_tables_sha256"] == expected["gaussian_tables_sha256"]
    for name, (sym, idx, _) in golden_cases().items():
        assert current[name] == expected[name], f"stream {name!r} changed: bump the format version?"
        np.testing.assert_array_equal(decode(bytes.fromhex(expected[name]), idx, gaussian_tables), sym)


def test_gaussian_tables_are_deterministic_and_sane():
    a = CdfTables.from_gaussian(SCALES)
    b = CdfTables.from_gaussian(torch.tensor(SCALES, dtype=torch.float64))
    assert a == b and a.fingerprint == b.fingerprint
    # close to the continuous model: central symbol of scale 1 has p ~ 0.3829
    t = int(np.argmin(np.abs(SCALES - 1.0)))
    c, off = a.cdfs[t], int(a.offsets[t])
    p0 = (c[-off + 1] - c[-off]) / 65536
    from scipy.stats import norm

    s = SCALES[t]
    assert abs(p0 - (norm.cdf(0.5 / s) - norm.cdf(-0.5 / s))) < 2e-4


def test_deterministic_normal_tail_accuracy():
    from scipy.special import ndtr

    from gwn_fast import _rans

    for x in [0.0, 0.1, 0.7, 1.5, 2.4, 2.6, 3.5, 5.0, 8.0, 12.0, 20.0, 30.0]:
        ref = ndtr(-x)
        assert abs(_rans.normal_upper_tail(x) - ref) <= 1e-12 * ref, x


# --- CompressAI parity -------------------------------------------------------------------

def test_compressai_gaussian_conditional_tables():
    from compressai.entropy_models import GaussianConditional

    gc = GaussianConditional(SCALES.tolist())
    gc.update()
    tables = CdfTables.from_compressai(gc)
    torch.manual_seed(0)
    scales = torch.exp(torch.empty(1, 8, 16, 16).uniform_(np.log(0.11), np.log(256)))
    x = torch.randn_like(scales) * scales * 1.5  # some values escape
    indexes = gc.build_indexes(scales).int()
    symbols = gc.quantize(x, "symbols")
    stream = encode(symbols, indexes, tables)
    np.testing.assert_array_equal(decode(stream, indexes, tables), symbols.numpy())
    # CompressAI's own coder, same tables: we decode its symbols identically
    strings = gc.compress(x, indexes)
    np.testing.assert_array_equal(gc.decompress(strings, indexes).numpy(), decode(stream, indexes, tables))


def test_compressai_entropy_bottleneck_tables():
    from compressai.entropy_models import EntropyBottleneck

    torch.manual_seed(1)
    eb = EntropyBottleneck(4)
    eb.update(force=True)
    tables = CdfTables.from_compressai(eb)
    x = torch.randn(2, 4, 9, 11) * 4
    indexes = eb._build_indexes(x.size()).int()
    medians = eb._get_medians().detach()
    symbols = eb.quantize(x, "symbols", medians.reshape(1, 4, 1, 1).expand_as(x))
    stream = encode(symbols, indexes, tables)
    np.testing.assert_array_equal(decode(stream, indexes, tables), symbols.numpy())


# --- corrupt input ------------------------------------------------------------------------

def small_stream(tables):
    sym, idx = gaussian_latent(30, 5)
    return encode(sym, idx, tables), sym, idx


def test_truncation_at_every_length(gaussian_tables):
    stream, sym, idx = small_stream(gaussian_tables)
    for cut in range(len(stream)):
        with pytest.raises(BitstreamError):
            decode(stream[:cut], idx, gaussian_tables)


def test_every_bit_flip_raises_or_decodes_correctly(gaussian_tables):
    stream, sym, idx = small_stream(gaussian_tables)
    raised = 0
    for bit in range(8 * len(stream)):
        mutated = bytearray(stream)
        mutated[bit // 8] ^= 1 << (bit % 8)
        try:
            out = decode(bytes(mutated), idx, gaussian_tables)
        except BitstreamError:
            raised += 1
        else:  # e.g. a larger chunk size that still holds every symbol: harmless
            np.testing.assert_array_equal(out, sym)
    assert raised >= 8 * len(stream) - 8


def test_random_bytes_raise(gaussian_tables):
    rng = np.random.default_rng(0)
    idx = np.zeros(10, np.int32)
    for size in range(0, 200):
        with pytest.raises(BitstreamError):
            decode(rng.integers(0, 256, size, dtype=np.uint8).tobytes(), idx, gaussian_tables)


def test_wrong_header_fields(gaussian_tables):
    stream, sym, idx = small_stream(gaussian_tables)
    with pytest.raises(BitstreamError, match="magic"):
        decode(b"\x00" + stream[1:], idx, gaussian_tables)
    for version in (1, 3, 7):
        with pytest.raises(BitstreamError, match=f"version {version} .*reads version 2"):
            decode(stream[:1] + bytes([(version << 5) | 15]) + stream[2:], idx, gaussian_tables)
    with pytest.raises(BitstreamError, match="precision"):
        decode(stream, idx, CdfTables.from_gaussian(SCALES, precision=15))
    with pytest.raises(BitstreamError, match="symbols"):
        decode(stream, idx[:-1], gaussian_tables)


def test_wrong_indexes_or_tables_raise(gaussian_tables):
    stream, sym, idx = small_stream(gaussian_tables)
    wrong = idx.copy()
    wrong[3] = (wrong[3] + 1) % 64
    with pytest.raises(BitstreamError, match="indexes or tables differ"):
        decode(stream, wrong, gaussian_tables)
    other = CdfTables.from_gaussian(SCALES * 1.01)
    with pytest.raises(BitstreamError):
        decode(stream, idx, other)
    # the streaming decoder notices at the end of the chunk
    dec = Decoder(stream, gaussian_tables)
    with pytest.raises(BitstreamError):
        dec.decode(wrong)
    with pytest.raises(BitstreamError, match="unusable"):
        dec.decode(wrong[:1])


def test_streaming_decoder_misuse(gaussian_tables):
    stream, sym, idx = small_stream(gaussian_tables)
    dec = Decoder(stream, gaussian_tables)
    dec.decode(idx[:10])
    with pytest.raises(BitstreamError, match="not used up"):
        dec.finish()
    with pytest.raises(ValueError, match="indexes asks for"):
        dec.decode(np.zeros(100, np.int32))


# --- format version 2: 4-lane chunks, lane-0 tail, moved lane states -----------------------

# Streams of format version 1 (from tests/expected/coder_golden.json before v2).
V1_STREAMS = {
    "one": ("c72f0112fdffd0bad9e5", np.array([2], np.int32), np.array([10], np.int32)),
    "empty": ("c72f0012", np.zeros(0, np.int32), np.zeros(0, np.int32)),
}


def test_version_1_streams_are_refused(gaussian_tables):
    assert _rans.FORMAT_VERSION == 2
    for hexdata, sym, idx in V1_STREAMS.values():
        with pytest.raises(BitstreamError, match=r"unsupported stream format version 1 \(this build reads version 2\)"):
            decode(bytes.fromhex(hexdata), idx, gaussian_tables)
        with pytest.raises(BitstreamError, match="version 1"):
            Decoder(bytes.fromhex(hexdata), gaussian_tables)


def chunk_tail(stream, chunk=0):
    """(tail length, byte offset of its varint) of a 4-lane chunk."""
    begin = _rans.stream_layout(stream)[chunk][0]
    value, shift, pos = 0, 0, begin
    while True:
        byte = stream[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, begin


def prefix_then_mps(m, k):
    """k int32 extremes (all escapes, ~50 bits each) then most probable symbols."""
    sym = np.zeros(m, np.int32)
    sym[:k] = np.where(np.arange(k) % 2 == 0, INT32_MAX, INT32_MIN)
    return sym, np.zeros(m, np.int32)


def test_four_lane_split_edge_cases(gaussian_tables):
    # Symbols [0, m - t) are interleaved, the last t go to lane 0 alone: make the
    # interleaved part 0..3 symbols long (lanes with no symbols at all), and cut
    # streaming blocks at the split.
    splits = set()
    for m in (512, 514, 1000):
        for k in range(0, 14):
            sym, idx = prefix_then_mps(m, k)
            if k > 8:
                sym[-3:] = [INT32_MIN, 99999, -99999]  # escapes at the end of the tail
            stream = encode(sym, idx, gaussian_tables)
            tail, _ = chunk_tail(stream)
            assert 1 <= tail <= m
            split = m - tail
            splits.add(min(split, 4))
            np.testing.assert_array_equal(decode(stream, idx, gaussian_tables), sym)
            for cut in {max(split - 1, 0), split, split + 1}:
                dec = Decoder(stream, gaussian_tables)
                parts = [dec.decode(idx[:cut]), dec.decode(idx[cut:cut]), dec.decode(idx[cut:])]
                dec.finish()
                np.testing.assert_array_equal(np.concatenate(parts), sym)
    assert splits == {0, 1, 2, 3, 4}


def test_most_probable_runs_and_escapes_at_lane_ends(gaussian_tables):
    rng = np.random.default_rng(4)
    sym, idx = gaussian_latent(6000, 3)
    sym[4000:] = 0
    idx[4000:] = 0  # a run of the most probable symbol of the narrowest table
    for pos in (0, 1, 2, 3, 4095, 4094, 4093, 4092, 4096, 5999):  # escapes at lane ends
        sym[pos] = rng.choice([INT32_MIN, INT32_MAX, 77777])
    for chunk in (512, 1024, 4096, 1 << 18):
        stream = encode(sym, idx, gaussian_tables, chunk_size=chunk)
        for threads in (1, 3):
            np.testing.assert_array_equal(decode(stream, idx, gaussian_tables, threads=threads), sym)
    all_mps = np.zeros(1 << 14, np.int32)
    stream = encode(all_mps, all_mps, gaussian_tables)
    assert chunk_tail(stream)[0] == all_mps.size  # lane 0 never holds enough: no lanes 1..3
    np.testing.assert_array_equal(decode(stream, all_mps, gaussian_tables), all_mps)
    assert len(stream) < 16


def test_corrupt_tail_length_raises(gaussian_tables):
    sym, idx = gaussian_latent(700, 9)
    stream = encode(sym, idx, gaussian_tables)
    tail, at = chunk_tail(stream)
    assert stream[at] < 0x80
    for value in range(256):
        if value == tail:
            continue
        bad = stream[:at] + bytes([value]) + stream[at + 1 :]
        with pytest.raises(BitstreamError):
            decode(bad, idx, gaussian_tables)
        with pytest.raises(BitstreamError):
            dec = Decoder(bad, gaussian_tables)
            dec.decode(idx)
            dec.finish()
    for value in (699, 700, 701, 1 << 14, 1 << 40):  # multi-byte tail lengths
        enc = bytearray()
        while True:
            enc.append((value & 0x7F) | (0x80 if value >= 0x80 else 0))
            value >>= 7
            if not value:
                break
        with pytest.raises(BitstreamError):
            decode(stream[:at] + bytes(enc) + stream[at + 1 :], idx, gaussian_tables)
    with pytest.raises(BitstreamError):
        decode(stream[:at] + b"\xff" * 12 + stream[at + 1 :], idx, gaussian_tables)


def test_four_lane_truncation_and_bit_flips(gaussian_tables):
    sym, idx = gaussian_latent(600, 2)
    stream = encode(sym, idx, gaussian_tables)
    assert _rans.stream_layout(stream)[0][2] >= _rans.MULTI_LANE_MIN_SYMBOLS
    for cut in range(len(stream)):  # truncated tail length, states, words
        with pytest.raises(BitstreamError):
            decode(stream[:cut], idx, gaussian_tables)
    raised = 0
    for bit in range(8 * len(stream)):
        mutated = bytearray(stream)
        mutated[bit // 8] ^= 1 << (bit % 8)
        try:
            out = decode(bytes(mutated), idx, gaussian_tables)
        except BitstreamError:
            raised += 1
        else:
            np.testing.assert_array_equal(out, sym)
    assert raised >= 8 * len(stream) - 8


def test_chunk_size_byte_only_when_it_matters(gaussian_tables):
    sym, idx = gaussian_latent(100, 1)
    default = encode(sym, idx, gaussian_tables)
    for chunk in (128, 1024, 1 << 18, 1 << 30):  # one chunk either way: same bytes
        assert encode(sym, idx, gaussian_tables, chunk_size=chunk) == default
    small = encode(sym, idx, gaussian_tables, chunk_size=16)
    assert len(_rans.stream_layout(small)) == 7
    np.testing.assert_array_equal(decode(small, idx, gaussian_tables), sym)


def test_fixed_overhead_matches_table_model(gaussian_tables):
    # fixed_overhead splits a stream into fixed cost and payload; the payload is what the
    # symbols cost under the tables to within about a bit per chunk.
    for n, chunk in ((0, None), (1, None), (40, None), (600, None), (5000, 1024), (30000, None)):
        sym, idx = gaussian_latent(n, n)
        stream = encode(sym, idx, gaussian_tables, chunk_size=chunk)
        payload = len(stream) - fixed_overhead(stream)
        chunks = max(1, len(_rans.stream_layout(stream)))
        assert abs(payload - table_information_bits(sym, idx, gaussian_tables) / 8) <= 0.5 * chunks, n


def test_four_lane_fixed_cost_is_small(gaussian_tables):
    # v1 spent ~31 bytes here (4 x 8-byte states, 3 lanes starting at 2^31); v2: header,
    # the 32-bit checksum, the tail length and under a byte of flush slack.
    excess = []
    for seed in range(3):
        sym, idx = gaussian_latent(30000, seed)
        stream = encode(sym, idx, gaussian_tables)
        excess.append(len(stream) - table_information_bits(sym, idx, gaussian_tables) / 8)
        assert fixed_overhead(stream) <= 13
    assert max(excess) <= 13, excess


# --- bad arguments ------------------------------------------------------------------------

def test_bad_arguments_name_the_argument(gaussian_tables):
    sym, idx = gaussian_latent(10)
    with pytest.raises(ValueError, match="symbols shape"):
        encode(sym, idx[:5], gaussian_tables)
    with pytest.raises(ValueError, match="symbols must have dtype int32"):
        encode(sym.astype(np.float32), idx, gaussian_tables)
    with pytest.raises(ValueError, match="indexes must have dtype int32"):
        encode(sym, idx.astype(np.int64), gaussian_tables)
    with pytest.raises(ValueError, match=r"indexes\[2\] = 64 is out of range"):
        bad = idx.copy()
        bad[2] = 64
        encode(sym, bad, gaussian_tables)
    with pytest.raises(ValueError, match="out of range"):
        decode(encode(sym, idx, gaussian_tables), np.full(10, -1, np.int32), gaussian_tables)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        encode(sym, idx, gaussian_tables, threads=-1)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        decode(b"", idx, gaussian_tables, threads=0)
    with pytest.raises(TypeError, match="symbols must be a numpy array"):
        encode(sym.tolist(), idx, gaussian_tables)
    with pytest.raises(TypeError, match="tables must be"):
        encode(sym, idx, "tables")
    with pytest.raises(ValueError, match="chunk_size"):
        encode(sym, idx, gaussian_tables, chunk_size=1000)
    with pytest.raises(TypeError, match="data must be bytes"):
        decode("abc", idx, gaussian_tables)


def test_bad_tables_name_table_and_fault():
    cdf = np.array([[0, 100, 65536, 0], [0, 30000, 30000, 65536]], np.int32)
    with pytest.raises(ValueError, match=r"table 1: cdf is not strictly increasing at symbol 1"):
        CdfTables(cdf, np.array([3, 4], np.int32), np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="table 0: cdf must start at 0"):
        CdfTables(np.array([[5, 65536]], np.int32), np.array([2], np.int32), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match=r"table 0: cdf must end at 1 << precision = 65536"):
        CdfTables(np.array([[0, 65535]], np.int32), np.array([2], np.int32), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match=r"cdf_lengths\[0\] = 5 is out of range \[2, 2\]"):
        CdfTables(np.array([[0, 65536]], np.int32), np.array([5], np.int32), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="precision must be in"):
        CdfTables(np.array([[0, 65536]], np.int32), np.array([2], np.int32), np.zeros(1, np.int32), precision=30)
    with pytest.raises(ValueError, match="offsets must have shape"):
        CdfTables(np.array([[0, 65536]], np.int32), np.array([2], np.int32), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="cdfs must have dtype int32"):
        CdfTables(np.array([[0, 65536]], np.float32), np.array([2], np.int32), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="scale_table"):
        CdfTables.from_gaussian([1.0, -2.0])
    with pytest.raises(ValueError, match="raise precision"):
        CdfTables.from_gaussian([1000.0], precision=8)


def test_bitstream_error_is_exported():
    assert gwn_fast.BitstreamError is BitstreamError
    assert issubclass(BitstreamError, ValueError)
