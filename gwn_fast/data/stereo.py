"""Crops of a real stereo pair: the Middlebury 2014 "Motorcycle" scene bundled with scikit-image.

``skimage.data.stereo_motorcycle()`` reads three files shipped inside the scikit-image
wheel (``skimage/data/motorcycle_{left,right}.png``, ``motorcycle_disp.npz``), so nothing
is downloaded. It gives the left and right views (``500 x 741 x 3`` uint8) and the
ground-truth disparity of the left view (``500 x 741`` float32, in pixels).

Facts about the disparity, checked on the bundled data:

- Unknown pixels are ``+inf`` (about 7.3% of the image), not NaN as scikit-image's
  docstring says, and not 0. Valid values lie in about [7.2, 59.9] pixels.
- It lives on the left view's grid: ``left[r, c]`` matches ``right[r, c - d[r, c]]``
  (mean absolute photometric error 8.2 grey levels, against 39.5 with no shift and 47.5
  with the opposite sign).

Downsampling by ``k`` averages ``k x k`` blocks of both views; a block's disparity is valid
when at least half of its pixels are, and is the mean of those pixels divided by ``k``
(at ``k = 2`` 95.8% of the pixels are valid, against 92.7% at full size, because unknown
pixels come in thin occlusion strips and speckles).

Two tasks, as in the paper's reconstruction + depth setting: task 1 reconstructs the left
view (``z1 = x1``), task 2 predicts the normalised disparity (``z2``) where ``valid``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as nnf
from torch.utils.data import Dataset

__all__ = ["TEST_CROP_SEED", "TRAIN_FRACTION", "StereoCrops", "full_views", "load_motorcycle"]

TRAIN_FRACTION = 0.7
"""Train crops lie in the columns ``[0, floor(0.7 * W))`` of the (downsampled) image."""

TEST_CROP_SEED = 7919
"""Seed of the test crop positions: constant, so the test set does not depend on ``seed``."""


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


@functools.lru_cache(maxsize=1)
def load_motorcycle() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw bundled pair.

    Returns:
        ``(left, right, disparity)``: uint8 ``[500, 741, 3]`` twice and float32 ``[500, 741]``
        (pixels, ``+inf`` where unknown). Cached and read-only.

    Raises:
        ImportError: scikit-image is not installed.
    """
    try:
        from skimage import data as skdata
    except ImportError as err:  # pragma: no cover - exercised only without scikit-image
        raise ImportError(
            "gwn_fast.data.stereo needs scikit-image for its bundled stereo pair: pip install scikit-image"
        ) from err
    left, right, disparity = skdata.stereo_motorcycle()
    out = (np.asarray(left), np.asarray(right), np.asarray(disparity, dtype=np.float32))
    for a in out:
        a.setflags(write=False)
    return out


@functools.lru_cache(maxsize=4)
def _views(downsample: int) -> dict:
    left, right, disparity = load_motorcycle()
    k = downsample

    def image(a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)  # [1, 3, H, W]
        if k > 1:
            t = nnf.avg_pool2d(t, k)  # area average; trailing rows/columns that do not fill a block are dropped
        return t[0].clamp_(0.0, 1.0).contiguous()

    valid = np.isfinite(disparity) & (disparity > 0)
    disp = torch.from_numpy(np.where(valid, disparity, 0.0).astype(np.float32))[None, None]
    mask = torch.from_numpy(valid.astype(np.float32))[None, None]
    if k > 1:
        # A downsampled pixel is valid if at least half of its k x k block is; its disparity is
        # the mean over the block's valid pixels, divided by k to stay in (downsampled) pixels.
        frac = nnf.avg_pool2d(mask, k)
        disp = nnf.avg_pool2d(disp, k) / frac.clamp_min(1e-12) / k
        mask = (frac >= 0.5).float()
    valid_t = mask[0] > 0.5  # [1, H, W] bool
    disp_px = torch.where(valid_t, disp[0], torch.zeros(()))
    scale = float(disp_px[valid_t].max())
    return {
        "left": image(left),
        "right": image(right),
        "disparity": (disp_px / scale).clamp_(0.0, 1.0),
        "disparity_px": disp_px,
        "valid": valid_t,
        "disparity_scale": scale,
    }


def full_views(downsample: int = 2) -> dict:
    """The whole (downsampled) stereo pair, for plotting.

    Args:
        downsample: integer area-averaging factor (1 keeps 500 x 741; 2 gives 250 x 370).

    Returns:
        dict with ``"left"``, ``"right"`` float32 ``[3, H, W]`` in [0, 1]; ``"disparity"``
        float32 ``[1, H, W]`` in [0, 1] (``disparity_px / disparity_scale``, 0 where invalid);
        ``"disparity_px"`` float32 ``[1, H, W]`` in downsampled pixels (0 where invalid);
        ``"valid"`` bool ``[1, H, W]``; ``"disparity_scale"`` float, the largest valid
        disparity of the image in downsampled pixels. Fresh copies, safe to modify.

    Raises:
        ValueError: ``downsample`` is not a positive int.
    """
    k = _check_int("downsample", downsample, 1)
    return {key: (v.clone() if torch.is_tensor(v) else v) for key, v in _views(k).items()}


class StereoCrops(Dataset):
    """Fixed random crops of the Motorcycle stereo pair.

    Layout (columns of the downsampled image, width ``W``): train crops lie inside
    ``[0, train_end)`` with ``train_end = floor(0.7 * W)``; test crops inside
    ``[test_start, W)`` with ``test_start = train_end + margin`` and
    ``margin = max(crop // 2, ceil(disparity_scale))``. The margin of at least the largest
    disparity also keeps scene content of the test region out of the train crops' right
    view (a right-view pixel at column ``c`` shows the left-view point at ``c + d``).

    Crop positions are drawn once at construction: train with
    ``numpy.random.default_rng(seed)``, test with the constant :data:`TEST_CROP_SEED`
    (the test set is the same for every ``seed``). Rows are uniform over the full height.

    Each item is a dict:

    - ``"x1"``: left view, float32 ``[3, crop, crop]`` in [0, 1].
    - ``"x2"``: right view at the same pixel coordinates, float32 ``[3, crop, crop]``.
    - ``"z1"``: target of task 1, a copy of ``x1`` (left view reconstruction).
    - ``"z2"``: left-view disparity / ``disparity_scale``, float32 ``[1, crop, crop]`` in [0, 1],
      0 where invalid.
    - ``"valid"``: bool ``[1, crop, crop]``, where ``z2`` is ground truth.

    Args:
        split: ``"train"`` or ``"test"``.
        crop: crop side in (downsampled) pixels.
        num_crops: number of crops (the dataset length).
        seed: seed of the train crop positions.
        downsample: integer area-averaging factor applied to both views and the disparity.

    Attributes:
        positions: int64 ``[num_crops, 2]`` top-left ``(row, column)`` of each crop.
        region: ``(first, end)`` columns this split's crops lie in; ``train_region``,
            ``test_region`` both of them.
        disparity_scale: float, the normalising constant of ``z2`` (pixels).
        height, width: size of the downsampled image.
    """

    def __init__(self, split: str = "train", crop: int = 64, num_crops: int = 512, seed: int = 0, downsample: int = 2):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.crop = _check_int("crop", crop, 1)
        self.num_crops = _check_int("num_crops", num_crops, 1)
        self.seed = _check_int("seed", seed, 0)
        self.downsample = _check_int("downsample", downsample, 1)
        self.split = split

        views = _views(self.downsample)
        self._left, self._right = views["left"], views["right"]
        self._disparity, self._valid = views["disparity"], views["valid"]
        self.disparity_scale = views["disparity_scale"]
        self.height, self.width = (int(s) for s in self._left.shape[-2:])

        c = self.crop
        train_end = int(math.floor(TRAIN_FRACTION * self.width))
        margin = max(c // 2, int(math.ceil(self.disparity_scale)))
        test_start = train_end + margin
        self.train_region = (0, train_end)
        self.test_region = (test_start, self.width)
        if c > self.height or c > train_end or c > self.width - test_start:
            raise ValueError(
                f"crop={c} does not fit: the image is {self.height} x {self.width} (downsample={self.downsample}), "
                f"train columns [0, {train_end}), test columns [{test_start}, {self.width})"
            )
        self.region = self.train_region if split == "train" else self.test_region
        rng = np.random.default_rng(self.seed if split == "train" else TEST_CROP_SEED)
        rows = rng.integers(0, self.height - c, size=self.num_crops, endpoint=True)
        cols = rng.integers(self.region[0], self.region[1] - c, size=self.num_crops, endpoint=True)
        self.positions = torch.from_numpy(np.stack([rows, cols], axis=1).astype(np.int64))

    def __len__(self) -> int:
        return self.num_crops

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -self.num_crops <= i < self.num_crops:
            raise IndexError(f"index {i} out of range for {self.num_crops} crops")
        r, col = (int(v) for v in self.positions[i])
        window = (..., slice(r, r + self.crop), slice(col, col + self.crop))
        x1 = self._left[window].clone()
        return {
            "x1": x1,
            "x2": self._right[window].clone(),
            "z1": x1.clone(),
            "z2": self._disparity[window].clone(),
            "valid": self._valid[window].clone(),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, crop={self.crop}, num_crops={self.num_crops}, "
            f"seed={self.seed}, downsample={self.downsample}, region={self.region})"
        )
