"""The training and coding part of ``benchmarks/gpu_check.sh``: a few training steps of the
paper's image codec with the Triton kernels, then compress on the GPU and decompress on
the CPU, compared with the GPU's own forward pass. Writes a markdown fragment.

    python benchmarks/gpu_check.py --report part.md            # CUDA when there is one
    python benchmarks/gpu_check.py --device cpu --report part.md   # a small CPU dry run

On CUDA: ``GrayWynerCodec()`` (shared, checkerboard, the paper's image stack, 192/96
channels), batch 4 of 3x256x256, under ``backend("triton")``, which raises if the Triton
kernels cannot run, so a pass means they ran. On the CPU (no GPU): the same code at 1x64x64
with the default backend, to check the script itself. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import traceback

import torch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _images(n, size, device, seed):
    g = torch.Generator().manual_seed(seed)
    # smooth-ish content: low-resolution noise upsampled, in [0, 1]
    low = torch.rand(n, 3, max(size // 8, 1), max(size // 8, 1), generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False).to(device)


def train_steps(codec, device, steps, batch, size, force_triton):
    from gwn_fast import GrayWynerLoss
    from gwn_fast.ops import backend

    loss_fn = GrayWynerLoss()
    params = [p for n, p in codec.named_parameters() if not n.endswith("quantiles")]
    aux = [p for n, p in codec.named_parameters() if n.endswith("quantiles")]
    opt = torch.optim.Adam(params, lr=1e-4)
    aux_opt = torch.optim.Adam(aux, lr=1e-3) if aux else None
    x = _images(batch, size, device, seed=0)
    codec.train()
    rows = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ctx = backend("triton") if force_triton else contextlib.nullcontext()
    with ctx:
        for step in range(steps):
            _sync(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            out = codec(x)
            terms = loss_fn(out, (x, x))
            terms["loss"].backward()
            grads_finite = all(torch.isfinite(p.grad).all().item() for p in params if p.grad is not None)
            opt.step()
            if aux_opt is not None:
                aux_opt.zero_grad(set_to_none=True)
                codec.aux_loss().backward()
                aux_opt.step()
            _sync(device)
            rows.append(
                {
                    "step": step,
                    "ms": 1e3 * (time.perf_counter() - t0),
                    "loss": float(terms["loss"]),
                    "r0": float(terms["r0"]),
                    "r1": float(terms["r1"]),
                    "r2": float(terms["r2"]),
                    "grads_finite": grads_finite,
                }
            )
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return rows, peak


def code_across_devices(codec, device, batch, size):
    """Compress on ``device``, decompress on ``device`` and on a CPU copy; compare."""
    codec.eval().update(force=True)
    x = _images(batch, size, device, seed=1)
    with torch.no_grad():
        out = codec(x)
        _sync(device)
        t0 = time.perf_counter()
        enc = codec.compress(x)
        t_enc = time.perf_counter() - t0
        # The receiver's side: a fresh CPU model from the config and the state dict (tables
        # included), as a decoder on another machine would build it.
        cpu_codec = type(codec).from_config(codec.config)
        cpu_codec.load_state_dict({k: v.cpu() for k, v in codec.state_dict().items()})
        cpu_codec.eval()
        t0 = time.perf_counter()
        dec_cpu = cpu_codec.decompress(enc["strings"], enc["shape"])
        t_dec = time.perf_counter() - t0
        dec_dev = codec.decompress(enc["strings"], enc["shape"])
    nbytes = sum(len(s) for strings in enc["strings"].values() for s in strings)
    result = {
        "compress_ms": 1e3 * t_enc,
        "decompress_cpu_ms": 1e3 * t_dec,
        "bytes": nbytes,
        "bpp": 8 * nbytes / (batch * size * size),
        "latents": {},
        "z_hat_max_abs_diff": {},
    }
    for name, ref in out["latents"].items():
        ref = ref.cpu()
        got = dec_cpu["latents"][name].cpu()
        result["latents"][name] = {
            "elements": ref.numel(),
            "cpu_decode_mismatches": int((got != ref).sum()),
            "device_decode_mismatches": int((dec_dev["latents"][name].cpu() != ref).sum()),
        }
    for i, ref in out["z_hat"].items():
        result["z_hat_max_abs_diff"][i] = float((dec_cpu["z_hat"][i].cpu() - ref.cpu()).abs().max())
    return result


def render(device, info, train, peak, coding, errors):
    lines = [f"## Training and coding check ({info})", ""]
    if train:
        lines += ["| step | ms | loss | r0 | r1 | r2 | grads finite |", "|---:|---:|---:|---:|---:|---:|---|"]
        for r in train:
            lines.append(
                f"| {r['step']} | {r['ms']:.1f} | {r['loss']:.4g} | {r['r0']:.4g} | {r['r1']:.4g} | {r['r2']:.4g} "
                f"| {r['grads_finite']} |"
            )
        if device.type == "cuda":
            lines.append(f"\nPeak GPU memory: {peak:.2f} GiB. Step 0 includes Triton compilation and warm-up.")
    if coding:
        lines += [
            "",
            f"Compress on {device.type} {coding['compress_ms']:.0f} ms, decompress on CPU "
            f"{coding['decompress_cpu_ms']:.0f} ms; {coding['bytes']} bytes, {coding['bpp']:.3f} bpp.",
            "",
            f"| latent | elements | mismatches: fresh CPU model's decode vs {device.type} forward "
            f"| mismatches: the {device.type} model's decode vs its forward |",
            "|---|---:|---:|---:|",
        ]
        for name, r in coding["latents"].items():
            lines.append(f"| {name} | {r['elements']} | {r['cpu_decode_mismatches']} | {r['device_decode_mismatches']} |")
        diffs = ", ".join(f"receiver {i}: {d:.2e}" for i, d in coding["z_hat_max_abs_diff"].items())
        lines.append(f"\nmax |z_hat (CPU decode) - z_hat ({device.type} forward)|: {diffs}")
    if errors:
        lines += ["", "**Failures:**", ""] + [f"- {e}" for e in errors]
    else:
        lines += ["", "All checks passed."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="default: 4 on CUDA, 1 on CPU")
    parser.add_argument("--size", type=int, default=None, help="default: 256 on CUDA, 64 on CPU")
    parser.add_argument("--report", default=None, help="markdown fragment to write")
    parser.add_argument("--json", default=None, help="raw results as JSON")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch or (4 if cuda else 1)
    size = args.size or (256 if cuda else 64)

    from gwn_fast import GrayWynerCodec, kernels

    force_triton = cuda
    where = torch.cuda.get_device_name(device) if cuda else "CPU dry run, no GPU: default backend"
    info = f"{where}; GrayWynerCodec() image codec, batch {batch}x3x{size}x{size}, {args.steps} steps"
    if cuda:
        info += f"; Triton forced (usable: {kernels.triton_usable(device)})"
    errors, train, peak, coding = [], [], float("nan"), None
    torch.manual_seed(0)
    codec = GrayWynerCodec().to(device)
    try:
        train, peak = train_steps(codec, device, args.steps, batch, size, force_triton)
        for r in train:
            if not (math.isfinite(r["loss"]) and r["grads_finite"]):
                errors.append(f"step {r['step']}: loss {r['loss']} / gradients finite: {r['grads_finite']}")
    except Exception:  # noqa: BLE001 - report any failure, then go on to the coding check
        errors.append("training failed:\n\n```\n" + traceback.format_exc()[-3000:] + "```")
    try:
        coding = code_across_devices(codec, device, max(1, min(batch, 2)), size)
        for name, r in coding["latents"].items():
            if r["cpu_decode_mismatches"]:
                errors.append(f"{name}: {r['cpu_decode_mismatches']} of {r['elements']} latents differ (CPU decode)")
            if r["device_decode_mismatches"]:
                errors.append(f"{name}: {r['device_decode_mismatches']} latents differ ({device.type} decode)")
    except Exception:  # noqa: BLE001
        errors.append("coding failed:\n\n```\n" + traceback.format_exc()[-3000:] + "```")
    text = render(device, info, train, peak, coding, errors)
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "train": train, "peak_gib": peak, "coding": coding, "errors": errors}, f, indent=1)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
