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


def _load_input(path: str):
    """``[N, C, H, W]`` float tensor from .pt / .npy, or ``[1, 3, H, W]`` in [0, 1] from an image."""
    import numpy as np
    import torch

    if path.endswith(".pt"):
        x = torch.load(path, weights_only=True)
    elif path.endswith(".npy"):
        x = torch.from_numpy(np.load(path))
    else:
        from PIL import Image

        x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
        x = x.permute(2, 0, 1)[None]
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):
        raise SystemExit(f"{path}: expected a [N, C, H, W] or [C, H, W] tensor")
    return (x[None] if x.ndim == 3 else x).float()


def _compress(args) -> int:
    from gwn_fast import container
    from gwn_fast.train import load_codec

    codec = load_codec(args.checkpoint)
    codec.update()
    x1 = _load_input(args.input)
    x2 = _load_input(args.input2) if args.input2 else None
    t0 = time.perf_counter()
    enc = codec.compress(x1, x2)
    seconds = time.perf_counter() - t0
    blob = container.pack(enc)
    with open(args.output, "wb") as f:
        f.write(blob)
    r = container.rates(enc, per=x1.shape[0])
    print(
        f"{args.output}: {len(blob):,} bytes for {x1.shape[0]} sample(s) in {seconds:.3f} s; per sample "
        f"R0 {r['r0']:.0f}, R1 {r['r1']:.0f}, R2 {r['r2']:.0f}, Rt {r['rate_transmit']:.0f}, Rr {r['rate_receive']:.0f} bits"
    )
    return 0


def _decompress(args) -> int:
    import torch

    from gwn_fast import container
    from gwn_fast.train import load_codec

    codec = load_codec(args.checkpoint)
    codec.update()
    with open(args.input, "rb") as f:
        enc = container.unpack(f.read())
    t0 = time.perf_counter()
    dec = codec.decompress(enc["strings"], enc["shape"], receivers=(args.receiver,))
    z = dec["z_hat"][args.receiver]
    torch.save(z, args.output)
    print(f"{args.output}: receiver {args.receiver} prediction {tuple(z.shape)} in {time.perf_counter() - t0:.3f} s")
    return 0


def _split(args) -> int:
    from pathlib import Path

    from gwn_fast import container

    data = Path(args.input).read_bytes()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for receiver in (1, 2):
        part = container.extract(data, receiver)
        path = out / f"receiver{receiver}.gwn"
        path.write_bytes(part)
        print(f"{path}: {len(part):,} bytes (common + private{receiver})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gwn-fast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("coder-demo", help="entropy-code a synthetic latent, ours vs CompressAI")
    demo.add_argument("--symbols", type=int, default=1_000_000, help="latent size (default 1e6)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_coder_demo)

    comp = sub.add_parser("compress", help="compress inputs to a container file with a trained checkpoint")
    comp.add_argument("checkpoint")
    comp.add_argument("input", help=".pt/.npy tensor [N, C, H, W] or an image file")
    comp.add_argument("output", help="container file to write")
    comp.add_argument("--input2", help="the second source (default: input feeds both encoders)")
    comp.set_defaults(func=_compress)

    dec = sub.add_parser("decompress", help="decode one receiver's prediction from a container")
    dec.add_argument("checkpoint")
    dec.add_argument("input", help="container (full, or what `split` wrote for this receiver)")
    dec.add_argument("output", help=".pt file for the prediction")
    dec.add_argument("--receiver", type=int, choices=(1, 2), required=True)
    dec.set_defaults(func=_decompress)

    split = sub.add_parser("split", help="write what each receiver needs (no decoding)")
    split.add_argument("input")
    split.add_argument("--out-dir", required=True)
    split.set_defaults(func=_split)
    args = parser.parse_args(argv)
    if getattr(args, "symbols", 1) < 1:
        parser.error("--symbols must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
