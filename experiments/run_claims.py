"""Runs behind experiments/RESULTS.md. Each block is resumable (finished runs are loaded).

    python experiments/run_claims.py beta        # claim 1: R0 vs beta (digits mixture, synthetic)
    python experiments/run_claims.py boundaries  # claim 2: independent at beta=2, dependent at beta=1
    python experiments/run_claims.py arch        # claims 3-4: architectures x alpha on digits
    python experiments/run_claims.py synthetic   # claim 5: synthetic source vs Blahut-Arimoto
    python experiments/run_claims.py stereo      # claim 6: stereo pair, shared vs independent
    python experiments/run_claims.py known_good  # claims 1-2 with the long, slow setting
    python experiments/run_claims.py all

Outputs: experiments/runs/<block>/.../result.json and results.jsonl (not committed);
`python experiments/summarize.py` turns them into the tables and figures.
"""

import os
import sys
from pathlib import Path

import torch

from gwn_fast.experiment import sweep
from gwn_fast.models.gray_wyner import ARCHITECTURES

ROOT = Path(__file__).resolve().parent / "runs"
torch.set_num_threads(int(os.environ.get("GWN_THREADS", "1")))
EPOCHS = int(os.environ.get("GWN_EPOCHS", "0")) or None  # 0: the recipe's default


def beta():
    sweep("digits", betas=(1.0, 1.5, 2.0), seeds=(0, 1), setting="mixture", out_dir=ROOT / "beta_digits",
          epochs=EPOCHS, progress=False)
    sweep("digits", betas=(1.0, 2.0), seeds=(0,), setting="mixture", out_dir=ROOT / "beta_digits_long",
          epochs=200, progress=False)


def boundaries():
    sweep("digits", betas=(2.0,), setting="independent", out_dir=ROOT / "independent_beta2", epochs=EPOCHS, progress=False)
    sweep("digits", betas=(1.0,), setting="dependent", out_dir=ROOT / "dependent_beta1", epochs=EPOCHS, progress=False)


def arch():
    # 5 architectures x 5 alphas x 3 seeds at beta = 1 (BD-rate on Rt against joint).
    # GWN_ARCHS=a,b runs a subset (two workers split the grid); GWN_EPOCHS shortens runs.
    archs = tuple(os.environ["GWN_ARCHS"].split(",")) if os.environ.get("GWN_ARCHS") else ARCHITECTURES
    sweep("digits", betas=(1.0,), alphas=(0.1, 0.2, 0.3, 0.5, 1.0), seeds=(0, 1, 2), architectures=archs,
          out_dir=ROOT / "arch_digits_3seeds", epochs=EPOCHS, progress=False)


def synthetic():
    sweep("synthetic", betas=(1.0, 1.5, 2.0), alphas=(0.02,), out_dir=ROOT / "synthetic", epochs=EPOCHS, progress=False)
    sweep("synthetic", betas=(1.0,), alphas=(0.005, 0.08), out_dir=ROOT / "synthetic", epochs=EPOCHS, progress=False)


def stereo():
    sweep("stereo", betas=(1.0, 2.0), alphas=(0.003, 0.01, 0.03), architectures=("shared",), out_dir=ROOT / "stereo",
          epochs=EPOCHS, progress=False)
    sweep("stereo", betas=(1.0,), alphas=(0.003, 0.01, 0.03), architectures=("independent",), out_dir=ROOT / "stereo",
          epochs=EPOCHS, progress=False)


def known_good():
    # The setting measured to work before this library's recipe existed (1000 epochs, batch
    # 256, alpha 0.3, lr 2e-3): about 4 minutes per run here.
    common = dict(alphas=(0.3,), epochs=1000, batch_size=256, lr=2e-3, progress=False)
    sweep("digits", betas=(1.0, 2.0), setting="mixture", out_dir=ROOT / "known_good_mixture", **common)
    sweep("digits", betas=(2.0,), setting="independent", out_dir=ROOT / "known_good_independent", **common)


BLOCKS = {"known_good": known_good, "beta": beta, "boundaries": boundaries, "arch": arch, "synthetic": synthetic, "stereo": stereo}

if __name__ == "__main__":
    names = sys.argv[1:] or ["all"]
    for name in (list(BLOCKS) if names == ["all"] else names):
        if name not in BLOCKS:
            raise SystemExit(f"unknown block {name!r}; choose from {sorted(BLOCKS)} or all")
        print(f"== {name} ==", flush=True)
        BLOCKS[name]()
