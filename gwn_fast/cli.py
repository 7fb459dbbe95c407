"""The ``gwn-fast`` command line (also ``python -m gwn_fast``)."""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main"]


def _coder_demo(args) -> int:
    """Code a Gaussian-conditional latent with our coder and CompressAI's, side by side."""
    import numpy as np
    import torch
    from compressai.entropy_models import GaussianConditional

    from gwn_fast.coder import CdfTables, decode, encode

    rng = np.random.default_rng(args.seed)
    n = args.symbols
    scale_table = np.exp(np.linspace(np.log(0.11), np.log(256.0), 64))
    scales = np.exp(rng.uniform(np.log(0.11), np.log(256.0), n))
    values = np.round(rng.normal(0.0, scales))
    print(f"latent: {n:,} symbols, scales log-uniform in [0.11, 256], CompressAI's 64-entry scale table")

    gc = GaussianConditional(scale_table.tolist())
    gc.update()
    x = torch.from_numpy(values).float().reshape(1, 1, -1)
    s = torch.from_numpy(scales).float().reshape(1, 1, -1)
    indexes = gc.build_indexes(s)
    t0 = time.perf_counter()
    strings = gc.compress(x, indexes)
    t1 = time.perf_counter()
    ref = gc.decompress(strings, indexes)
    t2 = time.perf_counter()
    assert torch.equal(ref, x)
    rows = [("CompressAI GaussianConditional", n / (t1 - t0) / 1e6, n / (t2 - t1) / 1e6, len(strings[0]))]

    tables = CdfTables.from_gaussian(scale_table)
    sym = values.astype(np.int32)
    idx = indexes.int().numpy().reshape(-1)
    for threads in (1, None):
        t0 = time.perf_counter()
        data = encode(sym, idx, tables, threads=threads)
        t1 = time.perf_counter()
        out = decode(data, idx, tables, threads=threads)
        t2 = time.perf_counter()
        if not np.array_equal(out, sym):
            print("round trip FAILED", file=sys.stderr)
            return 1
        label = f"gwn_fast.coder ({'all cores' if threads is None else '1 thread'})"
        rows.append((label, n / (t1 - t0) / 1e6, n / (t2 - t1) / 1e6, len(data)))

    base_enc, base_dec = rows[0][1], rows[0][2]
    print(f"\n{'coder':34s} {'enc Msym/s':>11s} {'dec Msym/s':>11s} {'x enc':>6s} {'x dec':>6s} {'bytes':>10s}")
    for name, enc, dec, size in rows:
        print(f"{name:34s} {enc:11.1f} {dec:11.1f} {enc / base_enc:6.1f} {dec / base_dec:6.1f} {size:10,d}")
    print("\nround trips exact; streams are checksummed (a wrong table or index raises BitstreamError)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gwn-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("coder-demo", help="entropy-code a synthetic latent, ours vs CompressAI")
    demo.add_argument("--symbols", type=int, default=1_000_000, help="latent size (default 1e6)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_coder_demo)
    args = parser.parse_args(argv)
    if getattr(args, "symbols", 1) < 1:
        parser.error("--symbols must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
