"""Coloured handwritten digits: a small, offline stand-in for the paper's coloured MNIST.

The images are the 1,797 real 8x8 handwritten digits bundled with scikit-learn
(``sklearn.datasets.load_digits``, pixel values 0..16), so nothing is downloaded.
Each grey image is scaled to [0, 1], upsampled to ``size x size`` and tinted with one
of 10 named colours: ``x1 = intensity * rgb`` (black stays black, full ink becomes the
colour, as PIL's ``ImageOps.colorize(img, "black", colour)`` in the paper's code).

Task 1 is the digit (``z1``), task 2 the colour (``z2``). How much the two tasks share
is set by ``p(colour | digit)``, see :func:`colour_distribution`:

- ``"dependent"``: colour = digit, ``I(digit; colour) = log2(10)`` bits (uniform digits).
- ``"independent"``: uniform colour, ``I = 0``.
- ``"mixture"``: digits 0-2 a fixed colour, 3-5 a uniform colour, 6-9 a colour uniform
  over a window of 4 consecutive colours ``{d-1, d, d+1, d+2} mod 10``. Under uniform
  digits ``I = 1.3389`` bits (closed form in :func:`label_mutual_information`).

The train/test split is a stratified split with a fixed seed (:data:`SPLIT_SEED`),
identical for every colour setting and every colour seed: 1,500 train, 297 test images.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as nnf
from torch.utils.data import Dataset

__all__ = [
    "COLOURS",
    "COLOUR_NAMES",
    "MIXTURE_WINDOWS",
    "NUM_CLASSES",
    "SETTINGS",
    "SPLIT_SEED",
    "TEST_SIZE",
    "ColouredDigits",
    "colour_distribution",
    "label_mutual_information",
    "load_digit_images",
    "split_indices",
]

NUM_CLASSES = 10
"""Number of digits and of colours."""

SETTINGS = ("dependent", "independent", "mixture")
"""The three colour settings of the paper's MNIST experiment."""

SPLIT_SEED = 20240501
"""Seed of the stratified train/test split. Constant: the split never depends on ``seed``."""

TEST_SIZE = 297
"""Number of test images (the remaining 1,500 of the 1,797 are the train split)."""

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 0.8, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "orange": (1.0, 0.5, 0.0),
    "purple": (0.5, 0.0, 0.5),
    "white": (1.0, 1.0, 1.0),
    "brown": (0.55, 0.27, 0.07),
}
"""The 10 named colours, in class order (colour index ``k`` is the ``k``-th entry)."""

COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
"""Colour names in class order."""

MIXTURE_WINDOWS: dict[int, tuple[int, ...]] = {
    d: tuple((d + k) % NUM_CLASSES for k in (-1, 0, 1, 2)) for d in range(6, 10)
}
"""Colour windows of digits 6-9 in the ``"mixture"`` setting: ``{d-1, d, d+1, d+2} mod 10``.

6 -> (5, 6, 7, 8), 7 -> (6, 7, 8, 9), 8 -> (7, 8, 9, 0), 9 -> (8, 9, 0, 1). Neighbouring
windows share 3 colours, and the windows of 8 and 9 wrap onto the fixed colours of digits
0 and 1, so a colour alone does not identify the digit.
"""


def _check_setting(setting) -> str:
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    return setting


def colour_distribution(setting: str) -> np.ndarray:
    """``p(colour | digit)`` of a setting.

    Args:
        setting: ``"dependent"``, ``"independent"`` or ``"mixture"``.

    Returns:
        float64 array ``[10 digits, 10 colours]``; every row sums to 1.

    Raises:
        ValueError: unknown ``setting``.
    """
    _check_setting(setting)
    table = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.float64)
    if setting == "dependent":
        table[np.arange(NUM_CLASSES), np.arange(NUM_CLASSES)] = 1.0
    elif setting == "independent":
        table[:] = 1.0 / NUM_CLASSES
    else:  # mixture
        for d in range(3):
            table[d, d] = 1.0
        table[3:6] = 1.0 / NUM_CLASSES
        for d, window in MIXTURE_WINDOWS.items():
            table[d, list(window)] = 1.0 / len(window)
    return table


def _entropy_bits(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def label_mutual_information(setting: str, digit_frequencies=None) -> float:
    """``I(digit; colour)`` in bits for a setting and a digit distribution.

    ``I = H(colour) - sum_d p(d) H(colour | digit = d)``.

    Closed form of the ``"mixture"`` setting under uniform digits: the conditional entropy
    is ``(3*0 + 3*log2(10) + 4*2) / 10 = 0.3*log2(10) + 0.8``, and the colour marginal is
    ``p(c) = (0.18, 0.155, 0.13, 0.03, 0.03, 0.055, 0.08, 0.105, 0.13, 0.105)`` for colours
    0..9, so ``I = H(p) - 0.3*log2(10) - 0.8 = 1.338923`` bits.

    Args:
        setting: ``"dependent"``, ``"independent"`` or ``"mixture"``.
        digit_frequencies: ``[10]`` non-negative weights of the digits (normalised here);
            ``None`` for uniform digits.

    Returns:
        The mutual information in bits (a Python float, >= 0).

    Raises:
        ValueError: unknown ``setting`` or malformed ``digit_frequencies``.
    """
    table = colour_distribution(setting)
    if digit_frequencies is None:
        pd = np.full(NUM_CLASSES, 1.0 / NUM_CLASSES)
    else:
        pd = np.asarray(digit_frequencies, dtype=np.float64)
        if pd.shape != (NUM_CLASSES,) or not np.all(np.isfinite(pd)) or np.any(pd < 0) or pd.sum() <= 0:
            raise ValueError(
                f"digit_frequencies must be {NUM_CLASSES} finite non-negative weights with a positive sum, "
                f"got {digit_frequencies!r}"
            )
        pd = pd / pd.sum()
    marginal = pd @ table
    conditional = sum(pd[d] * _entropy_bits(table[d]) for d in range(NUM_CLASSES))
    mi = _entropy_bits(marginal) - conditional
    return 0.0 if mi < 1e-12 else float(mi)  # round-off of an exact zero (e.g. "independent")


def _sklearn_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - exercised only without sklearn
        raise ImportError(
            "gwn_fast.data.digits needs scikit-learn for its bundled digits: pip install scikit-learn"
        ) from err
    return load_digits()


@functools.lru_cache(maxsize=1)
def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 bundled digits.

    Returns:
        ``(images, labels)``: float32 ``[1797, 8, 8]`` in [0, 1] (the 0..16 values / 16)
        and int64 ``[1797]`` digits 0..9. Cached; do not modify in place.
    """
    bunch = _sklearn_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0).clip(0.0, 1.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@functools.lru_cache(maxsize=2)
def _split(split: str) -> np.ndarray:
    _, labels = load_digit_images()
    n = labels.shape[0]
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    # Largest-remainder allocation of the TEST_SIZE test images, proportional to each digit's count.
    quota = TEST_SIZE * counts / n
    n_test = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - n_test), kind="stable")
    n_test[order[: TEST_SIZE - n_test.sum()]] += 1
    rng = np.random.default_rng(SPLIT_SEED)
    test = []
    for d in range(NUM_CLASSES):
        members = np.flatnonzero(labels == d)
        test.append(rng.permutation(members)[: n_test[d]])
    test = np.sort(np.concatenate(test))
    is_test = np.zeros(n, dtype=bool)
    is_test[test] = True
    out = test if split == "test" else np.flatnonzero(~is_test)
    out.setflags(write=False)
    return out


def split_indices(split: str) -> np.ndarray:
    """Indices into :func:`load_digit_images` of a split (sorted, int64).

    Stratified by digit with the fixed :data:`SPLIT_SEED`: ``"test"`` has 297 images,
    ``"train"`` the other 1,500. The two are disjoint and cover all 1,797 images.

    Raises:
        ValueError: ``split`` is not ``"train"`` or ``"test"``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return _split(split)


class ColouredDigits(Dataset):
    """Coloured 8x8 handwritten digits, upsampled to ``size x size``.

    Each item is a dict:

    - ``"x1"``: float32 ``[3, size, size]`` in [0, 1], the tinted image ``intensity * rgb``.
    - ``"z1"``: int64 scalar, the digit (task 1).
    - ``"z2"``: int64 scalar, the colour index into :data:`COLOURS` (task 2).

    Colours. With ``resample=False`` every image gets one colour drawn from
    ``p(colour | digit)`` at construction with ``numpy.random.default_rng(seed)``, so the
    dataset is a fixed, deterministic set (:attr:`colours`). With ``resample=True`` (the
    paper's loader) a fresh colour is drawn on every ``__getitem__``: in the main process
    from a ``numpy`` generator seeded with ``seed`` and advanced by every call; in a
    ``DataLoader`` worker from a generator seeded with ``(seed, worker_info.seed)``, so
    workers draw different streams, each epoch differs, and a run is reproducible under
    ``torch.manual_seed``. :attr:`colours` then holds the construction-time draw only.

    Args:
        split: ``"train"`` (1,500 images) or ``"test"`` (297), see :func:`split_indices`.
        setting: ``"dependent"``, ``"independent"`` or ``"mixture"``.
        size: output side in pixels (bicubic upsampling of the 8x8 images, clamped to [0, 1]).
        seed: seed of the colour draws (not of the split, which is fixed).
        resample: re-draw the colour on every access.
        max_shift: move each image by a random offset in ``[-max_shift, max_shift]`` pixels
            per axis on every access (training augmentation; the generator of ``resample``).

    Attributes:
        digits: int64 ``[N]`` digit of each image.
        colours: int64 ``[N]`` colour of each image (construction-time draw).
        indices: int64 ``[N]`` indices of the images in :func:`load_digit_images`.
        setting, split, size, seed, resample: the arguments.
        intensity: float32 ``[N, size, size]`` upsampled grey images in [0, 1].
        palette: float32 ``[10, 3]`` RGB of the colours.
    """

    def __init__(
        self, split: str = "train", setting: str = "mixture", size: int = 16, seed: int = 0, resample: bool = False,
        max_shift: int = 0,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        _check_setting(setting)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.split = split
        self.setting = setting
        self.size = int(size)
        self.seed = int(seed)
        self.resample = bool(resample)
        if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or not 0 <= max_shift < size:
            raise ValueError(f"max_shift must be an int in [0, size), got {max_shift!r}")
        self.max_shift = int(max_shift)

        images, labels = load_digit_images()
        idx = split_indices(split)
        self.indices = torch.from_numpy(idx.astype(np.int64))
        self.digits = torch.from_numpy(labels[idx].copy())
        grey = torch.from_numpy(images[idx].copy()).unsqueeze(1)  # [N, 1, 8, 8]
        if self.size != grey.shape[-1]:
            grey = nnf.interpolate(grey, size=(self.size, self.size), mode="bicubic", align_corners=False)
        self.intensity = grey.clamp_(0.0, 1.0).squeeze(1).contiguous()  # [N, S, S]
        self.palette = torch.tensor(list(COLOURS.values()), dtype=torch.float32)  # [10, 3]

        self._table = colour_distribution(setting)
        self._cdf = np.cumsum(self._table, axis=1)
        self._cdf[:, -1] = 1.0
        self._rng = np.random.default_rng(self.seed)
        self.colours = torch.from_numpy(self._draw(self.digits.numpy(), self._rng))
        self._worker_key = None  # (worker id, worker seed) the current self._rng belongs to

    def _draw(self, digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One colour per digit from ``p(colour | digit)``; int64 array shaped like ``digits``."""
        u = rng.random(digits.shape)
        cdf = self._cdf[digits]  # [..., 10]
        return (u[..., None] >= cdf).sum(axis=-1).clip(0, NUM_CLASSES - 1).astype(np.int64)

    def _resample_rng(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self._rng
        key = (info.id, info.seed)
        if self._worker_key != key:
            self._rng = np.random.default_rng([self.seed, info.seed % (2**63)])
            self._worker_key = key
        return self._rng

    def __len__(self) -> int:
        return int(self.digits.shape[0])

    def digit_frequencies(self) -> np.ndarray:
        """Empirical digit distribution of this split: float64 ``[10]`` summing to 1."""
        counts = np.bincount(self.digits.numpy(), minlength=NUM_CLASSES).astype(np.float64)
        return counts / counts.sum()

    def mutual_information(self) -> float:
        """``I(digit; colour)`` in bits of ``p(colour | digit)`` under this split's digit frequencies."""
        return label_mutual_information(self.setting, self.digit_frequencies())

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} images")
        digit = self.digits[i]
        if self.resample:
            colour = int(self._draw(np.asarray(int(digit)), self._resample_rng()))
        else:
            colour = int(self.colours[i])
        grey = self.intensity[i]
        if self.max_shift:
            grey = self._shifted(grey, self._resample_rng().integers(-self.max_shift, self.max_shift + 1, size=2))
        x1 = grey.unsqueeze(0) * self.palette[colour].view(3, 1, 1)  # [3, S, S]
        return {"x1": x1, "z1": digit.clone(), "z2": torch.tensor(colour, dtype=torch.int64)}

    @staticmethod
    def _shifted(grey: torch.Tensor, shift) -> torch.Tensor:
        """``grey`` moved by ``(dy, dx)`` pixels, zeros shifted in."""
        dy, dx = int(shift[0]), int(shift[1])
        out = torch.zeros_like(grey)
        h, w = grey.shape
        out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = grey[
            max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
        return out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, setting={self.setting!r}, size={self.size}, "
            f"seed={self.seed}, resample={self.resample}, n={len(self)})"
        )

