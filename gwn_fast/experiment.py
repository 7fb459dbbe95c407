"""One training + evaluation run of a bundled recipe, and grids of them.

    from gwn_fast.experiment import run
    result = run("digits", beta=2.0, epochs=300, out_dir="runs/b2")

Each run writes ``checkpoint.pt`` (model + the recipe, so ``gwn-fast eval`` can rebuild
the data), ``metrics.jsonl`` (one line per epoch) and ``result.json`` (the evaluation on the
test set with real bitstreams, plus the run's settings). This is what ``gwn-fast train``,
``eval``, ``sweep`` and ``demo`` call.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import torch

from gwn_fast import recipes
from gwn_fast.evaluate import evaluate
from gwn_fast.train import fit, load_checkpoint, save_checkpoint

__all__ = ["evaluate_checkpoint", "run", "sweep"]

# beta_warmup's start may be "<a>beta-<b>", i.e. a * beta - b: the digits recipe's
# "29beta-28" is no ramp at beta = 1 (every bit costs the same in Y0 as in Y1 or Y2, and a
# ramp from above drains Y0 for good), from 15.5 at beta = 1.5 and from 30 at beta = 2 (Y0
# starts shut while the private channels learn the tasks, so only what pays for itself at
# the target price moves in; from 5, one seed in five kept the digit in Y0 for good).
_WARMUP_START = re.compile(r"^(\d+(?:\.\d+)?)beta-(\d+(?:\.\d+)?)$")


def warmup_start(start, beta: float) -> float:
    """``start`` of a ``beta_warmup``: a number, or ``"<a>beta-<b>"`` for ``a beta - b``."""
    if isinstance(start, str):
        m = _WARMUP_START.match(start.replace(" ", "").replace("*", ""))
        if m is None:
            raise ValueError(f"beta_warmup's start must be a number or '<a>beta-<b>' (e.g. '4beta-3'), got {start!r}")
        return float(m.group(1)) * beta - float(m.group(2))
    return float(start)


_UNITS = {"digits": ("image", 1), "synthetic": ("position", 2), "stereo": ("pixel", 1)}


def _recipe(dataset, setting, seed, size, train_samples, architecture, context, rate_grad, beta, alpha):
    return {
        "dataset": dataset,
        "setting": setting,
        "seed": seed,
        "size": size,
        "train_samples": train_samples,
        "architecture": architecture,
        "context": context,
        "rate_grad": rate_grad,
        "beta": beta,
        "alpha": alpha,
    }


def _evaluate(codec, recipe: dict) -> dict:
    _, test = recipes.make_datasets(
        recipe["dataset"], setting=recipe["setting"], seed=recipe["seed"], size=recipe["size"],
        train_samples=recipe["train_samples"],
    )
    unit, positions = _UNITS[recipe["dataset"]]
    metrics = evaluate(codec, test, tasks=recipes.task_kinds(recipe["dataset"]), unit=unit, positions_per_pixel=positions)
    if recipe["dataset"] == "digits":
        from gwn_fast.data.digits import label_mutual_information

        metrics["mutual_information_bits"] = label_mutual_information(recipe["setting"], test.digit_frequencies())
    return metrics


def run(
    dataset: str = "digits",
    *,
    architecture: str | None = None,
    beta: float = 1.0,
    alpha: float | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    setting: str = "mixture",
    size: int | None = None,
    train_samples: int | None = None,
    context: str | None = None,
    rate_grad: str | None = None,
    beta_warmup: tuple[float, float] | None | str = "recipe",
    device: str = "cpu",
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    distributed: bool = False,
    evaluate_result: bool = True,
    save_rank_weights: bool = False,
    codec_options: dict | None = None,
    max_shift: int | None = None,
    task_weights: tuple[float, float] | None = None,
    align_weight: float = 1.0,
) -> dict:
    """Train a recipe's codec and evaluate it on the test set with real bitstreams.

    ``architecture``, ``epochs``, ``batch_size``, ``lr``, ``alpha``, ``context``, ``rate_grad``,
    ``beta_warmup`` (``(start, fraction)``: beta ramps linearly from ``start`` to ``beta``
    over that fraction of the epochs, ``start="29beta-28"`` for ``29 beta - 28``; ``None``: no
    ramp), ``max_shift`` (training images moved by up to that many pixels)
    and ``task_weights`` (the two distortions' weights relative to ``1/alpha``) default to
    the recipe's (:data:`gwn_fast.recipes.TRAINING`); ``align_weight``: the alignment
    term's weight relative to ``1/alpha``.

    Returns the evaluation (see :func:`gwn_fast.evaluate.evaluate`) merged with the run's
    settings and ``train_s``; with ``out_dir`` also writes the files named in the module
    docstring (``resume=True`` continues from its checkpoint). ``distributed``: run under
    torchrun with the process group initialised (see ``python -m gwn_fast.train``);
    ``save_rank_weights`` writes every rank's final weights to ``out_dir/rank{r}.pt``;
    ``codec_options`` overrides arguments of the recipe's codec (:func:`recipes.make_codec`).
    """
    recipes.make_loss(dataset)  # validates dataset before anything is built
    defaults = recipes.TRAINING[dataset]
    epochs = defaults["epochs"] if epochs is None else epochs
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    lr = defaults["lr"] if lr is None else lr
    architecture = defaults["architecture"] if architecture is None else architecture
    context = defaults["context"] if context is None else context
    rate_grad = defaults["rate_grad"] if rate_grad is None else rate_grad
    beta_warmup = defaults["beta_warmup"] if isinstance(beta_warmup, str) and beta_warmup == "recipe" else beta_warmup
    if beta_warmup is not None:
        beta_warmup = (warmup_start(beta_warmup[0], beta), float(beta_warmup[1]))
        if not 0 < beta_warmup[1] <= 1:
            raise ValueError(f"beta_warmup's fraction must be in (0, 1], got {beta_warmup[1]}")
    alpha = defaults["alpha"] if alpha is None else alpha
    max_shift = defaults["max_shift"] if max_shift is None else max_shift
    task_weights = tuple(defaults["task_weights"] if task_weights is None else task_weights)
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if not batch_size >= 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    torch.manual_seed(seed)
    recipe = _recipe(dataset, setting, seed, size, train_samples, architecture, context, rate_grad, beta, alpha)
    recipe.update(
        epochs=epochs, batch_size=batch_size, lr=lr, beta_warmup=beta_warmup, max_shift=max_shift,
        task_weights=list(task_weights), align_weight=align_weight,
    )
    train_set, _ = recipes.make_datasets(
        dataset, setting=setting, seed=seed, size=size, train_samples=train_samples, resample=defaults["resample"],
        max_shift=max_shift,
    )
    codec = recipes.make_codec(
        dataset, architecture=architecture, context=context, rate_grad=rate_grad, size=size, **(codec_options or {})
    )
    loss = recipes.make_loss(dataset, beta=beta, alpha=alpha, task_weights=task_weights, align_weight=align_weight)
    sampler = None
    if distributed:
        sampler = torch.utils.data.distributed.DistributedSampler(train_set, shuffle=True, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, generator=generator
    )
    out = Path(out_dir) if out_dir is not None else None

    def schedule_beta(epoch: int) -> None:
        if beta_warmup is not None:
            start, fraction = beta_warmup
            ramp = min(1.0, epoch / max(1.0, fraction * epochs))
            loss.beta = start + (beta - start) * ramp

    t0 = time.perf_counter()
    history = fit(
        codec, loss, loader, epochs=epochs, lr=lr, device=device, progress=progress, distributed=distributed,
        one_cycle=defaults["one_cycle"] or True, on_epoch=schedule_beta,
        metrics_path=out / "metrics.jsonl" if out else None,
        checkpoint_path=out / "checkpoint.pt" if out else None,
        resume=resume,
    )
    train_s = time.perf_counter() - t0
    codec.to("cpu")
    rank = torch.distributed.get_rank() if distributed else 0
    if save_rank_weights and out is not None:
        torch.save(codec.state_dict(), out / f"rank{rank}.pt")
    if out is not None and rank == 0:
        # The final checkpoint carries the recipe, so `gwn-fast eval` can rebuild the data.
        save_checkpoint(out / "checkpoint.pt", codec, epoch=epochs, extra={"history": history, "recipe": recipe})
    if rank != 0 or not evaluate_result:
        return {**recipe, "train_s": train_s}
    result = {**recipe, "train_s": train_s, **_evaluate(codec, recipe)}
    result["train_loss"] = history[-1]["loss"] if history else math.nan
    if out is not None:
        (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def _check_recipe(recipe: dict, path) -> dict:
    """The recipe of a checkpoint from elsewhere, checked before it builds a data set."""
    from gwn_fast.checkpoint import CheckpointError

    def fail(msg):
        raise CheckpointError(f"{path}: recipe field {msg}")

    if recipe.get("dataset") not in recipes.DATASETS:
        fail(f"'dataset' must be one of {recipes.DATASETS}, got {recipe.get('dataset')!r}")
    for key, hi in (("size", 1 << 12), ("train_samples", 1 << 22), ("seed", 1 << 63)):
        v = recipe.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi):
            fail(f"{key!r} must be None or an integer in [0, {hi}], got {v!r}")
    if not isinstance(recipe.get("setting"), (str, type(None))):
        fail(f"'setting' must be a string, got {recipe.get('setting')!r}")
    return recipe


def evaluate_checkpoint(path: str | Path) -> dict:
    """Evaluate a checkpoint written by :func:`run` on its recipe's test set."""
    from gwn_fast.checkpoint import CheckpointError, load_state
    from gwn_fast.models import GrayWynerCodec

    state = load_state(path)  # weights_only=True: nothing in the file runs
    extra = state.get("extra")
    recipe = extra.get("recipe") if isinstance(extra, dict) else None
    if not isinstance(recipe, dict) or state.get("config") is None:
        raise CheckpointError(
            f"{path} was not written by gwn_fast.experiment.run (no recipe in it); use gwn_fast.evaluate.evaluate"
        )
    recipe = _check_recipe(recipe, path)
    codec = GrayWynerCodec.from_config(state["config"], source=str(path))
    load_checkpoint(path, codec)
    return {**recipe, **_evaluate(codec.eval(), recipe)}


def sweep(
    dataset: str,
    *,
    betas=(1.0, 1.5, 2.0),
    alphas=(None,),
    architectures=None,
    seeds=(0,),
    out_dir: str | Path = "sweep",
    **kwargs,
) -> list[dict]:
    """:func:`run` over the grid ``architectures x betas x alphas x seeds``; one
    sub-directory per run and every result appended to ``out_dir/results.jsonl``. Runs
    with a ``result.json`` already present are loaded, not retrained (resumable).
    ``architectures``: default the recipe's one."""
    if architectures is None:
        recipes.make_loss(dataset)  # validates dataset
        architectures = (recipes.TRAINING[dataset]["architecture"],)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for architecture in architectures:
        for beta in betas:
            for alpha in alphas:
                for seed in seeds:
                    name = f"{architecture}_beta{beta:g}_alpha{alpha if alpha is not None else 'default'}_seed{seed}"
                    run_dir = out / name
                    if (run_dir / "result.json").exists():
                        result = json.loads((run_dir / "result.json").read_text())
                    else:
                        result = run(
                            dataset, architecture=architecture, beta=beta, alpha=alpha, seed=seed, out_dir=run_dir,
                            **kwargs,
                        )
                        with open(out / "results.jsonl", "a") as f:
                            f.write(json.dumps({"run": name, **result}) + "\n")
                    results.append({"run": name, **result})
    return results
