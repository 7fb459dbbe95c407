"""Ready-made datasets, codecs and losses for the bundled experiments.

``gwn-fast train/eval/sweep/demo`` are built on these; use them as starting points for
your own data. Each recipe returns objects of the public API (``GrayWynerCodec``,
``GrayWynerLoss``, ``torch.utils.data.Dataset``), nothing private.

- ``digits``: coloured handwritten digits (scikit-learn's 8x8 digits, upsampled to 16x16),
  task 1 = digit, task 2 = colour, cross-entropy; rates in bits per image. The
  ``"separated"`` architecture (Y0 from an encoder of its own: on a 2x2 grid the shared
  architecture's match-and-merge left about 15 % of Y0's elements mismatched at beta = 1),
  f0/f1/f2 of three stride-2 3x3 convolutions to 2 channels each on a 2x2 grid (last layer
  at 0.1 of the default initialisation), Y0 prior ``"positional"`` (a Gaussian per
  element, as Y1 and Y2 have), ELU-64 MLP heads, ``context="autoregressive"`` (the codes
  the tasks learn are sparse, mostly one nonzero element out of 8, which the
  context-free prior coded 1.4-1.9 bits per channel above their empirical entropy; the
  context, the 2x2 grid's positions in raster order, cut that by 0.2-0.6 bits and
  lifted colour accuracy at beta = 2 from 0.983-0.990 to 1.000 on seeds 0 and 1),
  ``rate_grad="smooth"``, rate weight alpha = 0.3 with the digit and colour
  cross-entropies weighted 4 and 6 (``lmbda = (4, 6) / alpha``), beta
  ramped from ``29 beta - 28`` to its target over the first half of the 300 epochs (none
  at beta = 1, where Y0 fills from the start; from 30 at beta = 2, so Y0 stays shut while
  the private channels learn their tasks and only what pays for itself at the target
  price moves in: from 5, one seed in five let the digit into Y0 in the first epochs and
  kept it there), colours redrawn and images shifted by up to 1 pixel every epoch.
  Chosen on seeds 0, 1 and 3 among the variants in experiments/RESULTS.md.
- ``synthetic``: the paper's discrete source (two SxS sources of symbols 0..8 seen by both
  encoders as 2 channels), "linear regression" tasks, MSE; rates in bits per position.
  (Rate weight alpha = 0.3 with 1000 epochs was measured to work before; in the minutes a
  CPU demo has, alpha = 0.1 with lr 1e-2 and batch 64 learns the tasks, 0.3 did not.)
- ``stereo``: Middlebury's motorcycle (bundled with scikit-image), x1 = left, x2 = right;
  task 1 = left view, task 2 = disparity, MSE; rates in bits per pixel.
"""

from __future__ import annotations

import torch

from gwn_fast.losses import GrayWynerLoss
from gwn_fast.models import GrayWynerCodec

__all__ = ["DATASETS", "RATE_UNITS", "TRAINING", "make_datasets", "make_codec", "make_loss", "task_kinds"]

DATASETS = ("digits", "synthetic", "stereo")
# What one "unit" of reported rate is, per dataset (for tables and plots).
RATE_UNITS = {"digits": "bits/image", "synthetic": "bits/position", "stereo": "bits/pixel"}
# The one-cycle shape of the digits recipe: a short warm-up, cosine decay to lr/1000.
_DIGITS_CYCLE = {"pct_start": 0.05, "anneal_strategy": "cos", "div_factor": 10.0, "final_div_factor": 100.0}
# Default model and optimisation per recipe (Adam, one-cycle schedule peaking at lr), the
# defaults of `gwn-fast train`, `python -m gwn_fast.train` and `experiment.run`:
#   architecture, context, rate_grad, y0_prior: the codec's; alpha: rate weight of the loss;
#   one_cycle: extra OneCycleLR arguments; beta_warmup: (start beta, or "<a>beta-<b>" for a beta - b, fraction of the epochs)
#   of a linear ramp of beta to its target, or None; resample: draw fresh digit colours
#   every epoch, max_shift: move training images by up to that many pixels (digits);
#   task_weights: the distortions' weights relative to 1/alpha.
# Digits: measured on coloured digits, 5 seeds (experiments/RESULTS.md).
TRAINING = {
    "digits": {
        "lr": 2e-3, "batch_size": 256, "epochs": 300, "alpha": 0.3, "architecture": "separated",
        "context": "autoregressive", "rate_grad": "smooth", "y0_prior": "positional",
        "one_cycle": _DIGITS_CYCLE, "beta_warmup": ("29beta-28", 0.5), "resample": True, "max_shift": 1,
        "task_weights": (4.0, 6.0),
    },
    "synthetic": {
        "lr": 2e-3, "batch_size": 64, "epochs": 20, "alpha": 0.02, "architecture": "shared", "context": "checkerboard",
        "rate_grad": "smooth", "y0_prior": "gaussian",
        "one_cycle": {}, "beta_warmup": None, "resample": False, "max_shift": 0, "task_weights": (1.0, 1.0),
    },
    "stereo": {
        "lr": 2e-3, "batch_size": 16, "epochs": 30, "alpha": 0.01, "architecture": "shared", "context": "checkerboard",
        "rate_grad": "smooth", "y0_prior": "gaussian",
        "one_cycle": {}, "beta_warmup": None, "resample": False, "max_shift": 0, "task_weights": (1.0, 1.0),
    },
}


def _check(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def task_kinds(dataset: str) -> tuple[str, str]:
    """``("classification"|"regression", ...)`` for tasks 1 and 2."""
    _check(dataset)
    return ("classification", "classification") if dataset == "digits" else ("regression", "regression")


def make_datasets(
    dataset: str, *, setting: str = "mixture", seed: int = 0, size: int | None = None, train_samples=None,
    resample: bool = False,
    max_shift: int = 0,
):
    """``(train, test)`` datasets of dict samples ``{x1[, x2], z1, z2}``.

    ``setting``: the digits' colour setting (``dependent``, ``independent``, ``mixture``);
    ``size``: image size (digits, default 16), source size (synthetic, default 8) or crop
    size (stereo, default 32); ``train_samples``: synthetic/stereo training set size;
    ``resample``: digits' training colours drawn afresh on every access, ``max_shift``:
    digits' training images moved by up to that many pixels on every access (the test set
    stays fixed).
    """
    _check(dataset)
    if dataset == "digits":
        from gwn_fast.data.digits import ColouredDigits

        size = size or 16
        return (
            ColouredDigits("train", setting=setting, size=size, seed=seed, resample=resample, max_shift=max_shift),
            ColouredDigits("test", setting=setting, size=size, seed=seed + 1),
        )
    if dataset == "synthetic":
        from gwn_fast.data.synthetic import SyntheticSource

        size = size or 8
        n = train_samples or 4096
        # One source (pmf, pairing, tasks from seed); test samples drawn past the training ones.
        full = SyntheticSource(n + 256, size=size, seed=seed)
        return torch.utils.data.Subset(full, range(n)), torch.utils.data.Subset(full, range(n, n + 256))
    from gwn_fast.data.stereo import StereoCrops

    size = size or 32
    return (
        StereoCrops("train", crop=size, num_crops=train_samples or 512, seed=seed),
        StereoCrops("test", crop=size, num_crops=64, seed=seed),
    )


# Digits: the analysis transforms' last layer starts at this fraction of PyTorch's default
# initialisation, so the latents start near 0 and the rate, not the initial noise, decides
# what each channel carries.
DIGITS_INIT_GAIN = 0.1


def make_codec(
    dataset: str, *, architecture: str | None = None, context: str | None = None, rate_grad: str | None = None,
    size=None, **overrides,
) -> GrayWynerCodec:
    """A codec sized for ``dataset`` (small enough to train on a CPU in minutes).
    ``architecture``, ``context``, ``rate_grad`` (and ``y0_prior``) default to the
    recipe's (:data:`TRAINING`); ``overrides`` replace any other :class:`GrayWynerCodec`
    argument of the recipe (e.g. ``latent_channels``)."""
    _check(dataset)
    architecture = TRAINING[dataset]["architecture"] if architecture is None else architecture
    overrides.setdefault("y0_prior", TRAINING[dataset]["y0_prior"])
    context = TRAINING[dataset]["context"] if context is None else context
    rate_grad = TRAINING[dataset]["rate_grad"] if rate_grad is None else rate_grad
    if dataset == "digits":
        size = size or 16
        kwargs = dict(
            in_channels=3, out_channels=(10, 10), latent_channels=4, common_channels=2, architecture=architecture,
            context=context, transform="light", hidden_channels=32, depth=3, rate_grad=rate_grad,
            head="mlp", head_hidden=64, head_activation="elu", input_size=(size, size),
        )
        codec = GrayWynerCodec(**{**kwargs, **overrides})
        with torch.no_grad():
            for analysis in codec.analysis:
                last = [m for m in analysis.modules() if isinstance(m, torch.nn.Conv2d)][-1]
                last.weight.mul_(DIGITS_INIT_GAIN)
                last.bias.mul_(DIGITS_INIT_GAIN)
        return codec
    if dataset == "synthetic":
        kwargs = dict(
            in_channels=2, out_channels=(1, 1), latent_channels=32, common_channels=16, architecture=architecture,
            context=context, transform="light", hidden_channels=64, depth=2, rate_grad=rate_grad,
        )
    else:
        kwargs = dict(
            in_channels=3, out_channels=(3, 1), latent_channels=32, common_channels=16, architecture=architecture,
            context=context, transform="light", hidden_channels=64, depth=3, rate_grad=rate_grad,
        )
    return GrayWynerCodec(**{**kwargs, **overrides})


def make_loss(
    dataset: str, *, beta: float = 1.0, alpha: float | None = None, task_weights: tuple[float, float] = (1.0, 1.0),
    align_weight: float = 1.0,
) -> GrayWynerLoss:
    """The loss ``alpha*(beta R0 + R1 + R2) + D1 + D2 + align`` (the paper's weighting),
    written as :class:`GrayWynerLoss` with ``lmbda = 1/alpha`` (times ``task_weights``)
    and the alignment at ``align_weight/alpha``.

    Default ``alpha``: ``TRAINING[dataset]["alpha"]`` (digits: 0.3 per bit per image;
    synthetic 0.02 and stereo 0.01 per bit per pixel).
    """
    _check(dataset)
    if alpha is None:
        alpha = TRAINING[dataset]["alpha"]
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if not align_weight >= 0:
        raise ValueError(f"align_weight must be >= 0, got {align_weight}")
    w = 1.0 / alpha
    lmbda = (w * task_weights[0], w * task_weights[1])
    if dataset == "digits":
        return GrayWynerLoss(beta=beta, lmbda=lmbda, distortion=("cross_entropy", "cross_entropy"), align_weight=w * align_weight, rate_unit="sample")
    return GrayWynerLoss(beta=beta, lmbda=lmbda, distortion=("mse", "mse"), align_weight=w * align_weight)
