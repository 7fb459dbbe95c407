"""Y0's prior of its own: learned per-channel Gaussian vs CompressAI's EntropyBottleneck.

The Y0 elements that see no context (the checkerboard's first pass; every Y0 element with
context="none") need a prior of their own. This script trains the digits recipe with
``GrayWynerCodec(..., y0_prior="gaussian" | "bottleneck")`` and measures the real rate.

    python experiments/prior_choice.py            # all runs (resumable), then the table
    python experiments/prior_choice.py --table    # only print the table of finished runs
    python experiments/prior_choice.py --verify-loop   # check the loop below against fit()

Runs: both priors x ``--seeds`` (default 0, 1) with the default checkerboard context, and
both priors x ``--none-seeds`` (default 0) with context="none" (Y0 entirely on the prior). Training is the digits recipe
(Adam, one-cycle lr 1e-2, batch 64, 60 epochs, grad clip 1, make_loss("digits", beta=1))
in the loop of ``gwn_fast.train.fit`` written out here, because the bottleneck also needs
its auxiliary optimiser (Adam on ``y0_bottleneck.quantiles``, lr ``--aux-lr``, CompressAI's
default 1e-3) stepped on ``codec.aux_loss()`` after every step. The Gaussian runs go
through the same loop (no aux loss to minimise; ``--verify-loop`` checks that the loop
reproduces ``fit`` bit for bit on a short run).

Evaluation: ``gwn_fast.evaluate.evaluate`` on the test set (real bitstreams, bits per
image). For the bottleneck also the real R0 with its quantiles re-found by CompressAI's
bisection (``update(force=True, update_quantiles=True)``): only the tables' range changes,
so this shows what the aux optimiser's quantiles cost in escapes.

Refit (``--refit``, after the runs): measured rate of the two prior families on the *same*
latents. Training is noisy from seed to seed, and a prior changes what the encoder puts
in Y0, so the end-to-end R0 mixes the prior's fit with the training's luck. For each
trained codec, frozen, the context-free Y0 elements (checkerboard anchors, or all of Y0
with context="none") of the training set are fitted by a fresh per-channel Gaussian
(the Gaussian prior's form: scale and mean per channel, the codec's discretized Gaussian
likelihood, fitted exactly by grid search) and a fresh ``IntegerEntropyBottleneck``
(Adam, 3000 full-batch steps); their bits on the test set's
elements are compared with the codec's own prior and with the per-channel empirical pmf
of the training set (add-1/2 smoothed): the best any per-channel i.i.d. prior can learn
from those samples.

Outputs: experiments/runs/prior_choice/<run>/result.json, codec.pt and results.jsonl;
refit.json per run with ``--refit``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from gwn_fast import functional as F
from gwn_fast import recipes
from gwn_fast.evaluate import collate, evaluate
from gwn_fast.models import GrayWynerCodec, checkerboard_anchor_mask
from gwn_fast.models.entropy_parameters import IntegerEntropyBottleneck
from gwn_fast.train import fit, unpack_batch

ROOT = Path(__file__).resolve().parent / "runs" / "prior_choice"
DATASET = "digits"
PRIORS = ("gaussian", "bottleneck")


def runs(seeds, none_seeds) -> list[tuple[str, str, int]]:
    """``(y0_prior, context, seed)``: both priors per checkerboard seed, then per "none" seed."""
    return [(p, "checkerboard", s) for s in seeds for p in PRIORS] + [(p, "none", s) for s in none_seeds for p in PRIORS]
TASKS = ("classification", "classification")


def make_codec(y0_prior: str, context: str) -> GrayWynerCodec:
    """``recipes.make_codec("digits", architecture="shared", context=context)`` plus ``y0_prior``."""
    # The shared architecture the comparison was measured with (the recipe's is now separated).
    reference = recipes.make_codec(DATASET, architecture="shared", context=context)
    return GrayWynerCodec.from_config({**reference.config, "y0_prior": y0_prior})


def _is_quantile(name: str) -> bool:
    return name.endswith(".quantiles")


def train(codec, loss_fn, loader, *, epochs: int, lr: float, aux_lr: float | None, grad_clip: float = 1.0) -> list[dict]:
    """``gwn_fast.train.fit``'s loop (Adam + one-cycle + clipping, on the CPU), plus an aux
    optimiser on the bottleneck's quantiles when ``aux_lr`` is given."""
    params = [p for n, p in codec.named_parameters() if p.requires_grad and not _is_quantile(n)]
    quantiles = [p for n, p in codec.named_parameters() if p.requires_grad and _is_quantile(n)]
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(loader))
    aux_optimizer = torch.optim.Adam(quantiles, lr=aux_lr) if (aux_lr and quantiles) else None
    history = []
    codec.train()
    for epoch in range(epochs):
        sums: dict[str, float] = {}
        count = 0
        for batch in loader:
            x1, x2, targets = unpack_batch(batch)
            terms = loss_fn(codec(x1, x2), targets)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            scheduler.step()
            if aux_optimizer is not None:
                aux = codec.aux_loss()
                aux_optimizer.zero_grad(set_to_none=True)
                aux.backward()
                aux_optimizer.step()
                terms = {**terms, "aux": aux.detach()}
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            count += 1
        history.append({"epoch": epoch + 1, **{k: v / count for k, v in sums.items()}})
    codec.eval()
    return history


def _setup(y0_prior, context, seed, batch_size):
    torch.manual_seed(seed)
    train_set, test_set = recipes.make_datasets(DATASET, seed=seed)
    codec = make_codec(y0_prior, context)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    return codec, loader, test_set


def one_run(y0_prior, context, seed, args) -> dict:
    codec, loader, test_set = _setup(y0_prior, context, seed, args.batch_size)
    loss_fn = recipes.make_loss(DATASET, beta=args.beta)
    t0 = time.perf_counter()
    history = train(
        codec, loss_fn, loader, epochs=args.epochs, lr=args.lr, aux_lr=args.aux_lr if y0_prior == "bottleneck" else None
    )
    train_s = time.perf_counter() - t0
    codec.update(force=True)
    run_dir = args.out / f"{y0_prior}_{context}_seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"config": codec.config, "model": codec.state_dict()}, run_dir / "codec.pt")
    metrics = evaluate(codec, test_set, tasks=TASKS, unit="image")
    result = {
        "y0_prior": y0_prior,
        "context": context,
        "seed": seed,
        "beta": args.beta,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "aux_lr": args.aux_lr if y0_prior == "bottleneck" else None,
        "train_s": train_s,
        "train_loss": history[-1]["loss"],
        **metrics,
    }
    if codec.y0_bottleneck is not None:
        eb = codec.y0_bottleneck
        result["aux_loss"] = codec.aux_loss().item()
        result["quantiles"] = eb.quantiles.detach()[:, 0, :].tolist()
        result["table_lengths"] = eb._cdf_length.tolist()
        codec.update(force=True, update_quantiles=True)
        again = evaluate(codec, test_set, tasks=TASKS, unit="image")
        result["r0_bisect_quantiles"] = again["r0"]
        result["payload_r0_bisect_quantiles"] = again["payload_r0"]
        result["bisect_quantiles"] = eb.quantiles.detach()[:, 0, :].tolist()
    return result


def verify_loop(args) -> None:
    """The loop above (aux optimiser off) against ``fit`` on a 3-epoch run: same history."""
    histories = []
    for use_fit in (True, False):
        codec, loader, _ = _setup("gaussian", "checkerboard", 0, args.batch_size)
        loss_fn = recipes.make_loss(DATASET, beta=args.beta)
        if use_fit:
            h = fit(codec, loss_fn, loader, epochs=3, lr=args.lr, progress=False)
        else:
            h = train(codec, loss_fn, loader, epochs=3, lr=args.lr, aux_lr=None)
        histories.append([r["loss"] for r in h])
    print("fit :", histories[0])
    print("loop:", histories[1])
    print("identical" if histories[0] == histories[1] else "DIFFERENT")


def table(results: list[dict]) -> str:
    head = "| prior | context | seed | R0 real | R0 est | R1 | R2 | R0+R1+R2 | acc1 | acc2 | R0 real (bisected quantiles) |"
    lines = [head, "|" + "---|" * 11]
    for r in results:
        bis = r.get("r0_bisect_quantiles")
        lines.append(
            f"| {r['y0_prior']} | {r['context']} | {r['seed']} | {r['r0']:.3f} | {r['est_r0']:.3f} | {r['r1']:.3f} | "
            f"{r['r2']:.3f} | {r['rate_transmit']:.3f} | {r['acc1']:.3f} | {r['acc2']:.3f} | {'' if bis is None else f'{bis:.3f}'} |"
        )
    # means over seeds, per context and prior
    for context in ("checkerboard", "none"):
        for prior in PRIORS:
            rs = [r for r in results if r["y0_prior"] == prior and r["context"] == context]
            if len(rs) > 1:
                m = lambda k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
                lines.append(
                    f"| {prior} | {context} | mean of {len(rs)} | {m('r0'):.3f} | {m('est_r0'):.3f} | {m('r1'):.3f} | "
                    f"{m('r2'):.3f} | {m('rate_transmit'):.3f} | {m('acc1'):.3f} | {m('acc2'):.3f} | |"
                )
    return "\n".join(lines)


# -----------------------------------------------------------------------------------------
# refit: both prior families on the same frozen latents
# -----------------------------------------------------------------------------------------
@torch.no_grad()
def _context_free_y0(codec, dataset):
    """``(values [n, C] per image and element, own-prior likelihoods like values)``: the
    Y0 elements that see no context, flattened per channel."""
    batch = collate(dataset)
    out = codec(batch["x1"], batch.get("x2"))
    y0, lik = out["latents"]["y0"], out["likelihoods"]["y0"]
    if codec.context == "checkerboard":
        mask = checkerboard_anchor_mask(y0.shape[2], y0.shape[3], dtype=torch.bool)[0, 0]
    else:
        mask = torch.ones(y0.shape[2:], dtype=torch.bool)
    pick = lambda t: t[:, :, mask].permute(0, 2, 1).reshape(-1, t.shape[1])  # noqa: E731
    return pick(y0).double(), pick(lik).double(), y0.shape[0]


def _fit_gaussian(train_values):
    """Per-channel (scale, mean) minimising the training bits of the discretized Gaussian
    the codec codes with (residual rounded, so the bits are piecewise constant in the
    mean and gradients mislead): an exhaustive grid, means in [-3, 3] step 1/40 around
    the channel's rounded median, scales log-spaced in [0.11, 64] (400 points)."""
    channels = train_values.shape[1]
    scales = torch.exp(torch.linspace(math.log(0.11), math.log(64.0), 400, dtype=torch.float64))
    # half a step off the grid of 1/40: never a mean ending in .5 exactly, where rounding
    # the residual half toward zero gives two integers the same bin (not a pmf; the coder's
    # floor(y - mu + 0.5) has no such tie)
    offsets = (torch.arange(-120, 120, dtype=torch.float64) + 0.5) / 40
    best_scale, best_mean = torch.empty(channels, dtype=torch.float64), torch.empty(channels, dtype=torch.float64)
    for c in range(channels):
        v = train_values[:, c]
        values, counts = torch.unique(v, return_counts=True)  # bits summed per distinct value
        means = torch.round(v.median()) + offsets
        shape = (len(scales), len(means), len(values))
        lik = F.gaussian_likelihood(
            values.expand(shape), scales[:, None, None].expand(shape), means[None, :, None].expand(shape)
        )
        bits = -(torch.log2(lik) * counts).sum(-1)  # [scales, means]
        i = int(torch.argmin(bits))
        best_scale[c], best_mean[c] = scales[i // len(means)], means[i % len(means)]
    return lambda v: F.gaussian_likelihood(v, best_scale, best_mean)  # noqa: E731


def _fit_bottleneck(train_values, steps=3000):
    torch.manual_seed(0)
    eb = IntegerEntropyBottleneck(train_values.shape[1]).double()
    params = [p for n, p in eb.named_parameters() if n != "quantiles"]
    opt = torch.optim.Adam(params, lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    x = train_values[:, :, None, None]  # [n, C, 1, 1]
    for _ in range(steps):
        loss = -torch.log2(eb.likelihood(x)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return lambda v: eb.likelihood(v[:, :, None, None])[:, :, 0, 0].detach()  # noqa: E731


def _empirical_bits(train_values, test_values) -> float:
    """Total bits of the test values under each channel's add-1/2 smoothed train pmf
    (support: the values seen in either set)."""
    bits = 0.0
    for c in range(train_values.shape[1]):
        tr, te = train_values[:, c].long(), test_values[:, c].long()
        support = torch.unique(torch.cat([tr, te]))
        counts = (tr[:, None] == support[None, :]).sum(0).double() + 0.5
        pmf = counts / counts.sum()
        idx = torch.searchsorted(support, te)
        bits += float(-torch.log2(pmf[idx]).sum())
    return bits


def refit(run_dir: Path) -> dict:
    state = torch.load(run_dir / "codec.pt", weights_only=True)  # data, not code
    codec = GrayWynerCodec.from_config(state["config"])
    codec.load_state_dict(state["model"])
    codec.eval()
    result = json.loads((run_dir / "result.json").read_text())
    train_set, test_set = recipes.make_datasets(DATASET, seed=result["seed"])
    train_v, _, _ = _context_free_y0(codec, train_set)
    test_v, own_lik, n_test = _context_free_y0(codec, test_set)
    bits = lambda lik: float(-torch.log2(lik.double()).sum()) / n_test  # noqa: E731
    gaussian = _fit_gaussian(train_v)
    with torch.enable_grad():
        bottleneck = _fit_bottleneck(train_v)
    return {
        "y0_prior": result["y0_prior"],
        "context": result["context"],
        "seed": result["seed"],
        "elements_per_image": test_v.numel() / n_test,
        "own_bits": bits(own_lik),
        "gaussian_refit_bits": bits(gaussian(test_v)),
        "bottleneck_refit_bits": bits(bottleneck(test_v)),
        "empirical_bits": _empirical_bits(train_v, test_v) / n_test,
        "distinct_values_per_channel": [int(torch.unique(train_v[:, c]).numel()) for c in range(train_v.shape[1])],
    }


def refit_table(rows: list[dict]) -> str:
    lines = [
        "| trained with | context | seed | elems/img | own prior | Gaussian refit | bottleneck refit | empirical pmf |",
        "|" + "---|" * 8,
    ]
    for r in rows:
        lines.append(
            f"| {r['y0_prior']} | {r['context']} | {r['seed']} | {r['elements_per_image']:g} | {r['own_bits']:.3f} | "
            f"{r['gaussian_refit_bits']:.3f} | {r['bottleneck_refit_bits']:.3f} | {r['empirical_bits']:.3f} |"
        )
    for context in ("checkerboard", "none"):
        rs = [r for r in rows if r["context"] == context]
        if rs:
            m = lambda k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
            lines.append(
                f"| all | {context} | mean of {len(rs)} | | {m('own_bits'):.3f} | {m('gaussian_refit_bits'):.3f} | "
                f"{m('bottleneck_refit_bits'):.3f} | {m('empirical_bits'):.3f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--aux-lr", type=float, default=1e-3)
    p.add_argument("--out", type=Path, default=ROOT)
    p.add_argument("--table", action="store_true", help="print the table of finished runs only")
    p.add_argument("--verify-loop", action="store_true")
    p.add_argument("--refit", action="store_true", help="refit both priors on the finished runs' frozen latents")
    p.add_argument("--seeds", default="0,1", help="seeds of the checkerboard runs")
    p.add_argument("--none-seeds", default="0", help="seeds of the context='none' runs")
    p.add_argument("--only", default=None, help="comma list of run names to do (default: all)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.verify_loop:
        verify_loop(args)
        return 0
    if args.refit:
        rows = []
        for run_dir in sorted(d for d in args.out.iterdir() if (d / "codec.pt").exists()):
            path = run_dir / "refit.json"
            if not path.exists():
                path.write_text(json.dumps(refit(run_dir), indent=2))
            rows.append(json.loads(path.read_text()))
        rows.sort(key=lambda r: (r["context"], r["seed"], r["y0_prior"]))
        print(refit_table(rows))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    seeds = [int(v) for v in args.seeds.split(",") if v]
    none_seeds = [int(v) for v in args.none_seeds.split(",") if v]
    for y0_prior, context, seed in runs(seeds, none_seeds):
        name = f"{y0_prior}_{context}_seed{seed}"
        path = args.out / name / "result.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
            continue
        if args.table or (args.only and name not in args.only.split(",")):
            continue
        result = one_run(y0_prior, context, seed, args)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2))
        with open(args.out / "results.jsonl", "a") as f:
            f.write(json.dumps({"run": name, **result}) + "\n")
        print(name, {k: round(v, 4) for k, v in result.items() if isinstance(v, float) and math.isfinite(v)}, flush=True)
        results.append(result)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
