"""Coloured digits: the beta contrast of the default recipe over settings, betas and seeds.

Each run is ``gwn_fast.experiment.run("digits", ...)`` with the recipe's defaults (what
``gwn-fast train --dataset digits --setting S --beta B --seed K`` does), evaluated on the
test set with real bitstreams; one JSON line per run is appended to ``--out``. Options
override single recipe entries for the ablations reported in experiments/RESULTS.md.

    OMP_NUM_THREADS=1 python experiments/digits_beta.py --settings mixture --betas 1 2 \
        --seeds 0 1 2 3 4 --out experiments/results/digits_beta.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from gwn_fast.experiment import run

KEYS = ("r0", "r1", "r2", "payload_r0", "payload_r1", "payload_r2", "est_r0", "est_r1", "est_r2", "rate_transmit",
        "rate_receive", "payload_rate_transmit", "acc1", "acc2", "mutual_information_bits", "train_s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--settings", nargs="+", default=["mixture"])
    p.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--context", default=None)
    p.add_argument("--rate-grad", default=None)
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--warmup", type=float, nargs=2, default=None, metavar=("START", "FRACTION"))
    p.add_argument("--no-warmup", action="store_true", help="override the recipe's warm-up with none")
    p.add_argument("--latent-channels", type=int, default=None)
    p.add_argument("--common-channels", type=int, default=None)
    p.add_argument("--hidden-channels", type=int, default=None)
    p.add_argument("--max-shift", type=int, default=None)
    p.add_argument("--task-weights", type=float, nargs=2, default=None)
    p.add_argument("--architecture", default=None, help="default: the recipe's")
    p.add_argument("--align-weight", type=float, default=1.0)
    p.add_argument("--y0-prior", default=None)
    p.add_argument("--mean-steps", type=int, default=None)
    p.add_argument("--tag", default="")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    torch.set_num_threads(1)
    warmup = None if args.no_warmup else (tuple(args.warmup) if args.warmup else "recipe")
    options = {k: v for k, v in (("latent_channels", args.latent_channels), ("common_channels", args.common_channels),
                                              ("hidden_channels", args.hidden_channels),
                                              ("y0_prior", args.y0_prior), ("mean_steps", args.mean_steps))
               if v is not None}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for setting in args.settings:
        for beta in args.betas:
            for seed in args.seeds:
                r = run("digits", setting=setting, beta=beta, seed=seed, epochs=args.epochs, context=args.context,
                        rate_grad=args.rate_grad, alpha=args.alpha, beta_warmup=warmup, progress=False,
                        codec_options=options, max_shift=args.max_shift,
                        task_weights=tuple(args.task_weights) if args.task_weights else None,
                        architecture=args.architecture, align_weight=args.align_weight)
                row = {"tag": args.tag, "setting": setting, "beta": beta, "seed": seed, "context": r["context"],
                       "rate_grad": r["rate_grad"], "alpha": r["alpha"], "epochs": r["epochs"],
                       "beta_warmup": r["beta_warmup"], "max_shift": args.max_shift, "task_weights": args.task_weights,
                       "architecture": r["architecture"], "align_weight": r["align_weight"],
                       **options, **{k: round(float(r[k]), 4) for k in KEYS if k in r}}
                print(json.dumps(row), flush=True)
                with open(out, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
