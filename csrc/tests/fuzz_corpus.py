"""Seed corpus for csrc/tests/fuzz_decoder.cpp: valid streams (byte 0 = the index pattern)
of the target's tables (16, 20 and 24 bits), with escapes, 1- and 4-lane chunks and several chunk sizes.

    python csrc/tests/fuzz_corpus.py build-fuzz/corpus
"""

import sys
from pathlib import Path

import numpy as np

from gwn_fast.coder import CdfTables, encode

SCALES = 0.11 * 2.0 ** (0.75 * np.arange(16))  # as fuzz_decoder.cpp


def index_of(mode: int, n: int, num_tables: int) -> np.ndarray:
    i = np.arange(n, dtype=np.uint64)
    return ((mode + i * (mode | 1)) % num_tables).astype(np.int32)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(13)
    k = 0
    for precision, n in [(16, n) for n in (0, 1, 2, 7, 64, 511, 512, 600, 1500, 5000)] + [
        (p, n) for p in (20, 24) for n in (1, 600, 5000)
    ]:
        tables = CdfTables.from_gaussian(SCALES, precision=precision, tail_mass=1e-9)
        for mode in (0, 1, 5, 42, 200):
            idx = index_of(mode, n, tables.num_tables)
            sym = np.round(rng.normal(0, SCALES[idx])).astype(np.int32)
            if n and mode == 42:
                sym[rng.integers(0, n, size=max(1, n // 50))] = rng.integers(-(2**31), 2**31 - 1, size=max(1, n // 50))
            for chunk in (None, 16, 256):
                data = encode(sym, idx, tables, threads=1, chunk_size=chunk)
                (out / f"seed{k:04d}").write_bytes(bytes([mode]) + data)
                k += 1
    print(f"{k} seeds in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "build-fuzz/corpus"))
