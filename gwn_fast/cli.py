"""The ``gwn-fast`` command line (also ``python -m gwn_fast``)."""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main", "EXIT_OK", "EXIT_INTERNAL", "EXIT_USAGE", "EXIT_IO", "EXIT_CHECKPOINT", "EXIT_BITSTREAM",
           "EXIT_INPUT", "EXIT_INTERRUPTED"]

# One exit code per class of failure (listed in `gwn-fast --help`).
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug in gwn_fast or an unexpected failure: rerun with --debug and report it
EXIT_USAGE = 2  # bad command line (argparse's code)
EXIT_IO = 3  # a file or directory cannot be read or written
EXIT_CHECKPOINT = 4  # not a loadable gwn_fast checkpoint
EXIT_BITSTREAM = 5  # the container is corrupt, exceeds the limits, or belongs to another checkpoint
EXIT_INPUT = 6  # the input data cannot be coded with this codec (size, channels, NaN/inf, range)
EXIT_INTERRUPTED = 130

_EPILOG = f"""exit status: {EXIT_OK} success, {EXIT_INTERNAL} internal error (rerun with --debug and report it), \
{EXIT_USAGE} bad command line, {EXIT_IO} file not readable/writable, {EXIT_CHECKPOINT} not a loadable gwn_fast checkpoint, \
{EXIT_BITSTREAM} corrupt or mismatched container, {EXIT_INPUT} input the codec cannot code, {EXIT_INTERRUPTED} interrupted. \
Errors are one line on stderr; --debug (anywhere on the line) prints the traceback instead."""


class InputError(ValueError):
    """An input file the CLI cannot use (unreadable tensor, wrong rank)."""


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
    import pickle

    import numpy as np
    import torch

    try:
        if path.endswith(".pt"):
            x = torch.load(path, weights_only=True)  # data, not code
        elif path.endswith(".npy"):
            x = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            from PIL import Image, UnidentifiedImageError

            try:
                x = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0)
            except UnidentifiedImageError:
                raise InputError(f"{path}: not an image PIL can read; pass a .pt/.npy tensor or an image file") from None
            x = x.permute(2, 0, 1)[None]
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, TypeError, KeyError) as err:
        if isinstance(err, InputError):
            raise
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: cannot read a tensor from it ({detail})") from None
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):
        raise InputError(f"{path}: expected a [N, C, H, W] or [C, H, W] tensor")
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise InputError(f"{path}: expected a real-valued tensor, got {x.dtype}")
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


def _print_table(rows: list[dict], unit: str) -> None:
    keys = [("beta", "beta", "{:>5g}"), ("architecture", "arch", "{:>11s}"), ("r0", "R0", "{:8.2f}"), ("r1", "R1", "{:8.2f}"),
            ("r2", "R2", "{:8.2f}"), ("rate_transmit", "Rt", "{:8.2f}"), ("rate_receive", "Rr", "{:8.2f}"),
            ("est_r0", "R0 est", "{:8.2f}")]
    quality = [k for k in ("acc1", "acc2", "psnr1", "psnr2") if k in rows[0]]
    print(f"rates in {unit} from real bitstreams (est = likelihood estimate)")
    print(" ".join(f"{label:>{8 if k not in ('beta', 'architecture') else (5 if k == 'beta' else 11)}s}" for k, label, _ in keys)
          + "".join(f" {q:>7s}" for q in quality))
    for r in rows:
        print(" ".join(fmt.format(r[k]) for k, _, fmt in keys) + "".join(f" {r[q]:7.3f}" for q in quality))


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``gwn-fast train`` (also ``torchrun ... -m gwn_fast train``): every
    default not given here is the recipe's (:data:`gwn_fast.recipes.TRAINING`)."""
    from gwn_fast.functional import RATE_GRADS
    from gwn_fast.models import ARCHITECTURES, CONTEXTS
    from gwn_fast.recipes import DATASETS

    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--setting", default="mixture", help="digits colour setting: dependent, independent, mixture")
    p.add_argument("--architecture", choices=ARCHITECTURES, default=None, help="default: the recipe's")
    p.add_argument("--context", choices=CONTEXTS, default=None, help="default: the recipe's")
    p.add_argument("--rate-grad", choices=RATE_GRADS, default=None, help="default: the recipe's")
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=None, help="rate weight (default: the recipe's)")
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    p.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    p.add_argument("--batch-size", type=int, default=None, help="per process; default: the recipe's")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--train-samples", type=int, default=None, help="synthetic/stereo training set size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda:LOCAL_RANK when CUDA is available, else cpu")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-eval", action="store_true", help="skip the test-set evaluation")
    p.add_argument("--save-rank-weights", action="store_true", help="torchrun: every rank writes OUT/rank{r}.pt")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train(args) -> int:
    """One recipe run; under torchrun (WORLD_SIZE > 1) each process trains a
    DistributedDataParallel replica on its shard (gloo on CPU, nccl on CUDA) and rank 0
    writes the checkpoint, metrics and evaluation."""
    import json
    import os

    import torch

    from gwn_fast.experiment import run
    from gwn_fast.recipes import RATE_UNITS

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = args.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if distributed:
        import torch.distributed as dist

        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    try:
        result = run(
            args.dataset, architecture=args.architecture, beta=args.beta, alpha=args.alpha, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, seed=args.seed, setting=args.setting, size=args.size,
            train_samples=args.train_samples, context=args.context, rate_grad=args.rate_grad, device=device,
            out_dir=args.out, resume=args.resume, progress=not args.quiet, distributed=distributed,
            evaluate_result=not args.no_eval, save_rank_weights=args.save_rank_weights,
        )
        if distributed and torch.distributed.get_rank() != 0:
            return 0
        if args.no_eval:
            print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}, indent=1))
        else:
            _print_table([result], RATE_UNITS[args.dataset])
        print(f"checkpoint, metrics.jsonl and result.json in {args.out}")
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    return 0


def _eval(args) -> int:
    import json

    from gwn_fast.experiment import evaluate_checkpoint
    from gwn_fast.recipes import RATE_UNITS

    result = evaluate_checkpoint(args.checkpoint)
    _print_table([result], RATE_UNITS[result["dataset"]])
    print(f"encode {result['encode_s']:.3f} s, decode (both receivers) {result['decode_s']:.3f} s for {result['samples']} samples")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def _sweep(args) -> int:
    from gwn_fast.experiment import sweep
    from gwn_fast.recipes import RATE_UNITS

    results = sweep(
        args.dataset, betas=args.betas, alphas=args.alphas or (None,), architectures=args.architectures, seeds=args.seeds,
        out_dir=args.out, epochs=args.epochs, setting=args.setting, device=args.device, progress=not args.quiet,
    )
    _print_table(results, RATE_UNITS[args.dataset])
    print(f"results in {args.out}/results.jsonl; plot with: gwn-fast plot {args.out}/results.jsonl")
    return 0


def _plot(args) -> int:
    import json
    from pathlib import Path

    from gwn_fast import plots

    rows = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{args.results}: no results")
    out = Path(args.out)
    theory = None
    if rows[0].get("dataset") == "synthetic":
        from gwn_fast.theory import synthetic_curves

        theory = synthetic_curves((0.5, 1, 2, 5, 7, 20, 100), seed=rows[0].get("seed", 0))
    written = [plots.plot_rd(rows, out / "rd.png", theory=theory)]
    mi = rows[0].get("mutual_information_bits")
    if mi is not None:
        written.append(plots.plot_r0_vs_mi(rows, out / "r0_vs_mi.png", mi))
    for path in written:
        print(path)
    return 0


def _demo_run(beta: float, epochs: int | None, seed: int, out_dir: str) -> dict:
    # One demo beta in its own process, on one thread (the betas train side by side).
    import torch

    from gwn_fast.experiment import run

    torch.set_num_threads(1)
    return run("digits", beta=beta, epochs=epochs, seed=seed, setting="mixture", out_dir=out_dir, progress=False)


def _demo(args) -> int:
    import json
    import os
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    from pathlib import Path

    from tqdm.auto import tqdm

    from gwn_fast import plots
    from gwn_fast.recipes import TRAINING

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epochs = args.epochs or TRAINING["digits"]["epochs"]
    workers = max(1, min(len(args.betas), args.jobs or os.cpu_count() or 1))
    print(f"coloured digits (mixture), {TRAINING['digits']['architecture']} GWN, {epochs} epochs per beta, betas {args.betas} "
          f"({workers} at a time, one thread each); outputs in {out}/")
    dirs = {beta: out / f"beta{beta:g}" for beta in args.betas}
    for d in dirs.values():
        (d / "metrics.jsonl").unlink(missing_ok=True)  # the bar counts its lines
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {beta: pool.submit(_demo_run, beta, epochs, args.seed, str(d)) for beta, d in dirs.items()}
        total = epochs * len(futures)
        with tqdm(total=total, desc="train", unit="epoch", disable=args.quiet) as bar:
            while not all(f.done() for f in futures.values()):
                done = sum(_count_lines(d / "metrics.jsonl") for d in dirs.values())
                bar.update(min(done, total) - bar.n)
                time.sleep(0.5)
            bar.update(total - bar.n)
        rows = [futures[beta].result() for beta in args.betas]
    summary = [
        {
            "beta": r["beta"],
            "r0": r["r0"], "r1": r["r1"], "r2": r["r2"],
            "rate_transmit": r["rate_transmit"], "rate_receive": r["rate_receive"],
            "payload_r0": r["payload_r0"], "payload_r1": r["payload_r1"], "payload_r2": r["payload_r2"],
            "payload_rate_transmit": r["payload_rate_transmit"], "payload_rate_receive": r["payload_rate_receive"],
            "fixed_overhead_bits": 8 * r["overhead_bytes"] / r["samples"],
            "est_r0": r["est_r0"], "est_r1": r["est_r1"], "est_r2": r["est_r2"],
            "acc_digit": r["acc1"], "acc_colour": r["acc2"],
            "mutual_information_bits": r["mutual_information_bits"],
            "test_images": r["samples"], "train_s": r["train_s"],
        }
        for r in rows
    ]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    mi = rows[0]["mutual_information_bits"]
    print(f"\nrates in bits/image from the real bytes of the {rows[0]['samples']}-image test set, one stream per "
          f"channel; payload = bytes minus each stream's fixed cost (header, checksum, flush)")
    print(f"{'beta':>5} {'R0':>7} {'R1':>7} {'R2':>7} {'Rt':>7} {'Rr':>7} {'R0 est':>7} {'fixed':>6} {'acc dig':>7} {'acc col':>7}")
    for s in summary:
        print(f"{s['beta']:5g} {s['payload_r0']:7.2f} {s['payload_r1']:7.2f} {s['payload_r2']:7.2f} "
              f"{s['payload_rate_transmit']:7.2f} {s['payload_rate_receive']:7.2f} {s['est_r0']:7.2f} "
              f"{s['fixed_overhead_bits']:6.3f} {s['acc_digit']:7.3f} {s['acc_colour']:7.3f}")
    print(f"label mutual information I(digit; colour) on the test set: {mi:.3f} bits")
    by_beta = {s["beta"]: s for s in summary}
    if 1.0 in by_beta and 2.0 in by_beta:
        b1, b2 = by_beta[1.0], by_beta[2.0]
        print(f"theory: R0(beta=2) < I < R0(beta=1): {b2['payload_r0']:.2f} < {mi:.2f} < {b1['payload_r0']:.2f} -> "
              f"{'holds' if b2['payload_r0'] < mi < b1['payload_r0'] else 'FAILS'}; "
              f"Rt(beta=1) <= Rt(beta=2): {b1['payload_rate_transmit']:.2f} <= {b2['payload_rate_transmit']:.2f} -> "
              f"{'holds' if b1['payload_rate_transmit'] <= b2['payload_rate_transmit'] else 'FAILS'}")
    # The plot shows the payloads, as the table does (the fixed cost is the same at every beta).
    payloads = [
        {**r, **{k: r[f"payload_{k}"] for k in ("r0", "r1", "r2", "rate_transmit", "rate_receive")}} for r in rows
    ]
    png = plots.plot_beta_rates(
        payloads, out / "rates.png", mi, title="coloured digits (mixture): the common rate R0 against beta (payloads)"
    )
    print(f"\nwrote {out / 'summary.json'} and {png}")
    return 0


def _count_lines(path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="gwn-fast", description=__doc__, epilog=_EPILOG)
    parser.add_argument("--debug", action="store_true", help="print the traceback of a failure (also after the command)")
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

    from gwn_fast.models import ARCHITECTURES
    from gwn_fast.recipes import DATASETS

    def _recipe_args(p):
        p.add_argument("--dataset", choices=DATASETS, default="digits")
        p.add_argument("--setting", default="mixture", help="digits colour setting: dependent, independent, mixture")
        p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
        p.add_argument("--device", default="cpu")
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    demo_p = sub.add_parser("demo", help="the README's main job: train beta=1 and beta=2 GWNs on coloured digits, "
                            "code the test set to real bitstreams, print and plot the rates")
    demo_p.add_argument("--out", default="gwn_demo", help="output directory (default gwn_demo)")
    demo_p.add_argument("--epochs", type=int, default=None, help="per beta (default: the digits recipe's)")
    demo_p.add_argument("--jobs", type=int, default=None, help="betas trained at once (default: one per core)")
    demo_p.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.0])
    demo_p.add_argument("--seed", type=int, default=0)
    demo_p.add_argument("--quiet", action="store_true")
    demo_p.set_defaults(func=_demo)

    train = sub.add_parser("train", help="train one codec of a bundled recipe and evaluate it "
                           "(multi-process: torchrun --nproc_per_node=N -m gwn_fast train ...)")
    add_train_arguments(train)
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate a checkpoint with real bitstreams")
    ev.add_argument("checkpoint")
    ev.add_argument("--json", help="also write the result here")
    ev.set_defaults(func=_eval)

    sw = sub.add_parser("sweep", help="train and evaluate a beta x alpha (x architecture x seed) grid")
    _recipe_args(sw)
    sw.add_argument("--betas", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    sw.add_argument("--alphas", type=float, nargs="+", default=None)
    sw.add_argument("--architectures", nargs="+", choices=ARCHITECTURES, default=None, help="default: the recipe's")
    sw.add_argument("--seeds", type=int, nargs="+", default=[0])
    sw.add_argument("--out", required=True)
    sw.set_defaults(func=_sweep)

    pl = sub.add_parser("plot", help="RD curves (transmit and receive rate) and R0 vs mutual information, as PNG")
    pl.add_argument("results", help="results.jsonl of a sweep")
    pl.add_argument("--out", default=".", help="directory for the PNGs")
    pl.set_defaults(func=_plot)

    args = parser.parse_args(argv)
    if getattr(args, "epochs", None) is not None and args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if getattr(args, "symbols", 1) < 1:
        parser.error("--symbols must be >= 1")
    return args.func(args)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _classify(err: BaseException, command: str | None) -> tuple[int, str]:
    """(exit code, one line saying what failed and what to do) for a failure."""
    from gwn_fast.checkpoint import CheckpointError
    from gwn_fast.coder import BitstreamError

    if isinstance(err, CheckpointError):
        hint = "pass a checkpoint written by `gwn-fast train` or gwn_fast.train.save_checkpoint"
        return EXIT_CHECKPOINT, f"{_one_line(err)}; {hint}"
    if isinstance(err, BitstreamError):
        return EXIT_BITSTREAM, (
            f"cannot decode the container: {_one_line(err)}; the file is damaged, or decode it with the checkpoint "
            "that wrote it (raise the limits with the Python API for very large inputs)"
        )
    if isinstance(err, OSError):
        what = f"{err.filename}: {err.strerror}" if getattr(err, "filename", None) and err.strerror else _one_line(err)
        return EXIT_IO, f"{what}; check the path and its permissions"
    if isinstance(err, (ValueError, TypeError, FloatingPointError)):
        return EXIT_INPUT, f"{_one_line(err)}"
    return EXIT_INTERNAL, f"internal error ({type(err).__name__}: {_one_line(err)}); rerun with --debug and report it"


def main(argv: list[str] | None = None) -> int:
    """The ``gwn-fast`` command. Returns the exit status; a failure is one line on stderr
    (``gwn-fast <command>: error: ...``) and an exit status of its class (see ``--help``);
    ``--debug`` anywhere on the command line re-raises it with its traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv = [a for a in argv if a != "--debug"]
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        return _run(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("gwn-fast: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001  (the top level of a command-line tool)
        if debug:
            raise
        code, line = _classify(err, command)
        print(f"gwn-fast{' ' + command if command else ''}: error: {line}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
