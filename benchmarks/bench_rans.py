"""rANS coder throughput and size vs CompressAI and constriction, measured in one run.

    pytest --benchmark-only                                   # from the root, with the others
    pytest benchmarks/bench_rans.py --benchmark-only          # N = 1e5, 1e6 (fast set)
    GWN_BENCH_FULL=1 pytest benchmarks/bench_rans.py --benchmark-only   # N = 1e5, 1e6, 4e6

The coder runs on the CPU whatever the machine; its table is printed at the end of the run.

A Gaussian-conditional latent: scales log-uniform in [0.11, 256], mean 0, values
round(N(0, scale)); CompressAI's 64-entry scale table. Providers (best of several rounds):
- ``compressai_e2e``: ``GaussianConditional.compress/decompress`` from tensors, indexes
  built from the scales (what a CompressAI model does), torch on one thread;
- ``compressai_raw``: ``compressai.ans.RansEncoder/RansDecoder`` with the same tables
  (the Python-list conversion it needs is included);
- ``constriction``: ``AnsCoder`` with a per-symbol ``QuantizedGaussian``;
- ``ours_1t`` / ``ours_all``: ``gwn_fast.coder`` on one / all cores, with CompressAI's
  tables (``from_compressai``: same model, so sizes compare coders) and end to end from
  tensors (``ours_e2e``: scales -> ``gwn_fast.coder.build_indexes`` over CompressAI's
  scale table, the same indexes as ``gc.build_indexes`` -> encode, like
  ``compressai_e2e``; one thread, torch included);
- ``ours_fine``: our deterministic tables with a finer scale table and nearest-in-log
  indexes, the option that comes within 0.05% of the ideal size.
Sizes: overhead vs the ideal information content (sum of -log2 p under the continuous-
scale discretized Gaussian, float64) and vs the table model actually used.
"""

import contextlib
import os
import time

import numpy as np
import pytest
import torch
from scipy.special import ndtr

from gwn_fast.coder import CdfTables, build_indexes, decode, encode

FULL = os.environ.get("GWN_BENCH_FULL") == "1"
SIZES = [100_000, 1_000_000, 4_000_000] if FULL else [100_000, 1_000_000]
SCALE_TABLE = np.exp(np.linspace(np.log(0.11), np.log(256.0), 64))
FINE_TABLE = np.exp(np.linspace(np.log(0.11), np.log(256.0), 512))
PROVIDERS = ["compressai_e2e", "compressai_raw", "constriction", "ours_1t", "ours_all", "ours_e2e", "ours_fine"]
ONE_THREAD = {"compressai_e2e", "ours_e2e"}  # end to end from tensors: torch on one thread too
_rows: dict = {}


def _rounds(n):
    return 5 if n <= 100_000 else 3 if n <= 1_000_000 else 2


def _best(fn, rounds):
    best, value = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


@contextlib.contextmanager
def _torch_threads(provider):
    """torch.set_num_threads(1) for the end-to-end providers (restored afterwards)."""
    if provider not in ONE_THREAD:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _latent(n, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.uniform(np.log(0.11), np.log(256.0), n))
    values = np.round(rng.normal(0.0, scales))
    return scales, values


def ideal_bits(values, scales):
    """Sum of -log2 P(v) for v ~ round(N(0, s)), upper-tail form for accuracy."""
    a = np.abs(values)
    p = ndtr(-(a - 0.5) / scales) - ndtr(-(a + 0.5) / scales)
    p = np.where(a == 0, 1.0 - 2.0 * ndtr(-0.5 / scales), p)
    return float(-np.log2(p).sum())


def table_bits(symbols, indexes, tables):
    """Information content under the quantized tables, escapes (count + nibbles) included."""
    total = float(1 << tables.precision)
    cdfs, lengths, offsets = tables.cdfs.astype(np.int64), tables.cdf_lengths, tables.offsets
    v = symbols.astype(np.int64) - offsets[indexes]
    esc = lengths[indexes].astype(np.int64) - 2
    inside = (v >= 0) & (v < esc)
    s = np.where(inside, v, esc)
    freq = cdfs[indexes, s + 1] - cdfs[indexes, s]
    bits = -np.log2(freq / total).sum()
    raw = np.where(v < 0, -2 * v - 1, 2 * (v - esc))[~inside]
    nibbles = np.ceil(np.log2(raw.astype(np.float64) + 1) / 4)
    return float(bits + (4 + 4 * nibbles).sum())


@pytest.fixture(scope="module")
def gaussian_conditional():
    from compressai.entropy_models import GaussianConditional

    gc = GaussianConditional(SCALE_TABLE.tolist())
    gc.update()
    return gc


def _case(provider, n, gc):
    scales, values = _latent(n)
    x = torch.from_numpy(values).float().reshape(1, 1, -1)
    s = torch.from_numpy(scales).float().reshape(1, 1, -1)
    idx_t = gc.build_indexes(s)
    idx = idx_t.int().numpy().reshape(-1)
    sym = values.astype(np.int32)
    rounds = _rounds(n)
    tables = CdfTables.from_compressai(gc)
    model_tables, model_sym, model_idx = tables, sym, idx

    if provider == "compressai_e2e":
        def enc():
            return gc.compress(x, gc.build_indexes(s))

        def dec(strings):
            return gc.decompress(strings, gc.build_indexes(s))

        size = lambda out: len(out[0])  # noqa: E731
        check = lambda out: torch.equal(out, x)  # noqa: E731
    elif provider == "compressai_raw":
        from compressai.ans import RansDecoder, RansEncoder

        cdfs = gc._quantized_cdf.tolist()
        lengths = gc._cdf_length.reshape(-1).int().tolist()
        offsets = gc._offset.reshape(-1).int().tolist()

        def enc():
            return RansEncoder().encode_with_indexes(sym.tolist(), idx.tolist(), cdfs, lengths, offsets)

        def dec(data):
            return RansDecoder().decode_with_indexes(data, idx.tolist(), cdfs, lengths, offsets)

        size = len
        check = lambda out: np.array_equal(np.asarray(out, np.int32), sym)  # noqa: E731
    elif provider == "constriction":
        constriction = pytest.importorskip("constriction")
        model = constriction.stream.model.QuantizedGaussian(-(1 << 15), 1 << 15)
        zeros = np.zeros(n)
        stds = scales.astype(np.float64)

        def enc():
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(sym, model, zeros, stds)
            return coder.get_compressed()

        def dec(data):
            return constriction.stream.stack.AnsCoder(data).decode(model, zeros, stds)

        size = lambda out: out.nbytes  # noqa: E731
        check = lambda out: np.array_equal(out, sym)  # noqa: E731
        model_tables = None
    elif provider in ("ours_1t", "ours_all"):
        threads = 1 if provider == "ours_1t" else None

        def enc():
            return encode(sym, idx, tables, threads=threads)

        def dec(data):
            return decode(data, idx, tables, threads=threads)

        size = len
        check = lambda out: np.array_equal(out, sym)  # noqa: E731
    elif provider == "ours_e2e":
        table = gc.scale_table  # CompressAI's own table: the same rule gives its indexes

        def indexes():
            return build_indexes(s.reshape(-1), table, threads=1)

        assert np.array_equal(indexes(), idx), "ours_e2e: indexes differ from gc.build_indexes"

        def enc():
            return encode(x.reshape(-1).int().numpy(), indexes(), tables, threads=1)

        def dec(data):
            return torch.from_numpy(decode(data, indexes(), tables, threads=1)).float()

        size = len
        check = lambda out: torch.equal(out, x.reshape(-1))  # noqa: E731
    elif provider == "ours_fine":
        fine = CdfTables.from_gaussian(FINE_TABLE, precision=16)
        bounds = np.sqrt(FINE_TABLE[:-1] * FINE_TABLE[1:])
        fidx = np.searchsorted(bounds, scales).astype(np.int32)
        model_tables, model_idx = fine, fidx

        def enc():
            return encode(sym, fidx, fine, threads=1)

        def dec(data):
            return decode(data, fidx, fine, threads=1)

        size = len
        check = lambda out: np.array_equal(out, sym)  # noqa: E731
    else:
        raise AssertionError(provider)

    with _torch_threads(provider):
        t_enc, data = _best(enc, rounds)
        t_dec, out = _best(lambda: dec(data), rounds)
    assert check(out), f"{provider}: round trip failed"
    nbytes = size(data)
    ideal = ideal_bits(values, scales) / 8
    row = {
        "enc_ms": 1e3 * t_enc,
        "dec_ms": 1e3 * t_dec,
        "enc_msym_s": n / t_enc / 1e6,
        "dec_msym_s": n / t_dec / 1e6,
        "bytes": nbytes,
        "overhead_vs_ideal_pct": 100 * (nbytes / ideal - 1),
        "overhead_vs_table_pct": (
            100 * (nbytes / (table_bits(model_sym, model_idx, model_tables) / 8) - 1) if model_tables else float("nan")
        ),
    }
    return row, enc


@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"N{n:.0e}")
@pytest.mark.parametrize("provider", PROVIDERS)
def test_rans(benchmark, provider, n, gaussian_conditional):
    row, enc = _case(provider, n, gaussian_conditional)
    benchmark.extra_info.update(row)
    with _torch_threads(provider):
        benchmark.pedantic(enc, rounds=1, iterations=1)
    _rows[(n, provider)] = row


def table():
    rows = []
    for n in SIZES:
        base = _rows.get((n, "compressai_e2e"))
        for provider in PROVIDERS:
            r = _rows.get((n, provider))
            if r is None:
                continue
            xe = f"{base['enc_ms'] / r['enc_ms']:.1f}" if base else "-"
            xd = f"{base['dec_ms'] / r['dec_ms']:.1f}" if base else "-"
            vs_table = r["overhead_vs_table_pct"]
            rows.append([
                f"{n:.0e}", provider, f"{r['enc_ms']:.2f}", f"{r['dec_ms']:.2f}", f"{r['enc_msym_s']:.1f}",
                f"{r['dec_msym_s']:.1f}", xe, xd, f"{r['bytes']:,d}", f"{r['overhead_vs_ideal_pct']:+.3f}%",
                "(own model)" if vs_table != vs_table else f"{vs_table:+.3f}%",
            ])
    return (
        "rANS coders on the CPU, Gaussian-conditional latent (scales log-uniform [0.11, 256], 64-entry table)",
        ["N", "provider", "enc ms", "dec ms", "enc Msym/s", "dec Msym/s", "x enc", "x dec", "bytes", "vs ideal", "vs table"],
        rows,
        "rlrrrrrrrrr",
        [
            "x enc / x dec = compressai_e2e time / provider time (CompressAI's GaussianConditional.compress/"
            "decompress from tensors, build_indexes included), measured in this run.",
            "ours_1t / ours_e2e / compressai_e2e on one thread, ours_all on every core; vs ideal: bytes over "
            "sum(-log2 p) in float64; vs table: over the information content under the tables used.",
        ],
    )

