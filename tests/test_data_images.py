"""The image datasets: coloured digits (scikit-learn) and stereo crops (scikit-image)."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")
pytest.importorskip("skimage")

from gwn_fast.data import digits as D  # noqa: E402
from gwn_fast.data import stereo as S  # noqa: E402
from gwn_fast.data import ColouredDigits, StereoCrops, colour_distribution, label_mutual_information  # noqa: E402


def _empirical_mi(a: np.ndarray, b: np.ndarray) -> float:
    joint = np.zeros((10, 10))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log2(joint[nz] / (pa @ pb)[nz])).sum())


# ---------------------------------------------------------------- colour distribution / MI


@pytest.mark.parametrize("setting", D.SETTINGS)
def test_colour_distribution_rows_are_distributions(setting):
    table = colour_distribution(setting)
    assert table.shape == (10, 10)
    assert np.all(table >= 0)
    np.testing.assert_allclose(table.sum(1), 1.0)


def test_mixture_definition():
    table = colour_distribution("mixture")
    for d in range(3):
        assert table[d, d] == 1.0
    np.testing.assert_allclose(table[3:6], 0.1)
    windows = {6: {5, 6, 7, 8}, 7: {6, 7, 8, 9}, 8: {7, 8, 9, 0}, 9: {8, 9, 0, 1}}
    for d, window in windows.items():
        assert set(np.flatnonzero(table[d])) == window
        np.testing.assert_allclose(table[d, sorted(window)], 0.25)


def test_label_mutual_information_closed_forms():
    assert label_mutual_information("dependent") == pytest.approx(math.log2(10), abs=1e-12)
    assert label_mutual_information("independent") == 0.0
    # Mixture, uniform digits, derived by hand. H(colour | digit) = (3*0 + 3*log2(10) + 4*2) / 10.
    # p(colour): 0.1 from the fixed digit (colours 0-2) + 0.03 from digits 3-5 (every colour)
    # + 0.025 per 6-9 window holding the colour (windows 6:{5..8} 7:{6..9} 8:{7,8,9,0} 9:{8,9,0,1}).
    p = [
        0.1 + 0.03 + 0.05,  # colour 0: digit 0, windows of 8 and 9
        0.1 + 0.03 + 0.025,  # colour 1: digit 1, window of 9
        0.1 + 0.03,  # colour 2: digit 2
        0.03,
        0.03,
        0.03 + 0.025,  # colour 5: window of 6
        0.03 + 0.05,  # colour 6: windows of 6, 7
        0.03 + 0.075,  # colour 7: windows of 6, 7, 8
        0.03 + 0.1,  # colour 8: all four windows
        0.03 + 0.075,  # colour 9: windows of 7, 8, 9
    ]
    assert sum(p) == pytest.approx(1.0)
    expected = -sum(q * math.log2(q) for q in p) - (0.3 * math.log2(10) + 0.8)
    assert expected == pytest.approx(1.338923, abs=1e-6)
    assert label_mutual_information("mixture") == pytest.approx(expected, abs=1e-12)


def test_label_mutual_information_digit_frequencies():
    # Only digits 0-2 (fixed colours): MI = log2(3). Only 3-5 (uniform colours): MI = 0.
    assert label_mutual_information("mixture", [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]) == pytest.approx(math.log2(3))
    assert label_mutual_information("mixture", [0, 0, 0, 5, 5, 5, 0, 0, 0, 0]) == pytest.approx(0.0, abs=1e-12)
    # Weights are normalised.
    assert label_mutual_information("mixture", np.full(10, 7.0)) == pytest.approx(label_mutual_information("mixture"))


@pytest.mark.parametrize("bad", [np.ones(9), -np.ones(10), np.zeros(10), [np.nan] * 10])
def test_label_mutual_information_bad_frequencies(bad):
    with pytest.raises(ValueError, match="digit_frequencies"):
        label_mutual_information("mixture", bad)


def test_bad_setting_raises():
    with pytest.raises(ValueError, match="setting.*dependent.*independent.*mixture"):
        colour_distribution("partial")
    with pytest.raises(ValueError, match="setting"):
        label_mutual_information("nope")
    with pytest.raises(ValueError, match="setting"):
        ColouredDigits(setting="nope")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"split": "val"}, "split"), ({"size": 0}, "size"), ({"size": 2.5}, "size"), ({"seed": -1}, "seed")],
)
def test_coloured_digits_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ColouredDigits(**kwargs)


# ---------------------------------------------------------------- ColouredDigits


def test_split_sizes_disjoint_and_stratified():
    train, test = D.split_indices("train"), D.split_indices("test")
    assert len(train) == 1500 and len(test) == 297
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.union1d(train, test), np.arange(1797))
    # Same split whatever the setting and colour seed.
    a = ColouredDigits("test", setting="dependent", seed=0)
    b = ColouredDigits("test", setting="independent", seed=5)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.digits, b.digits)
    assert np.array_equal(a.indices.numpy(), test)
    counts = np.bincount(a.digits.numpy(), minlength=10)
    assert counts.sum() == 297 and counts.min() >= 29 and counts.max() <= 30  # stratified
    np.testing.assert_allclose(a.digit_frequencies(), counts / 297)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_item_shapes_dtypes_ranges(size):
    ds = ColouredDigits("test", setting="mixture", size=size)
    assert len(ds) == 297
    item = ds[3]
    assert set(item) == {"x1", "z1", "z2"}
    x = item["x1"]
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert item["z1"].dtype == torch.int64 and item["z1"].shape == ()
    assert item["z2"].dtype == torch.int64 and item["z2"].shape == ()
    assert int(item["z1"]) == int(ds.digits[3]) and int(item["z2"]) == int(ds.colours[3])
    # The tint: x = intensity * rgb of the colour.
    rgb = torch.tensor(D.COLOURS[D.COLOUR_NAMES[int(item["z2"])]])
    torch.testing.assert_close(x, ds.intensity[3][None] * rgb[:, None, None])
    assert ds.digits.dtype == torch.int64 and ds.colours.dtype == torch.int64


def test_colours_are_distinct():
    rgb = np.array(list(D.COLOURS.values()))
    assert rgb.shape == (10, 3) and rgb.min() >= 0 and rgb.max() <= 1
    dist = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert dist[~np.eye(10, dtype=bool)].min() > 0.3


def test_images_are_real_digits():
    images, labels = D.load_digit_images()
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    ds = ColouredDigits("train", size=8)
    idx = ds.indices.numpy()
    torch.testing.assert_close(ds.intensity, torch.from_numpy(images[idx]))


def test_deterministic_with_seed():
    a = ColouredDigits("train", setting="mixture", seed=3)
    b = ColouredDigits("train", setting="mixture", seed=3)
    c = ColouredDigits("train", setting="mixture", seed=4)
    assert torch.equal(a.colours, b.colours)
    assert not torch.equal(a.colours, c.colours)
    assert torch.equal(a[10]["x1"], b[10]["x1"])
    r1 = ColouredDigits("train", setting="independent", seed=1, resample=True)
    r2 = ColouredDigits("train", setting="independent", seed=1, resample=True)
    draws1 = [int(r1[0]["z2"]) for _ in range(50)]
    assert draws1 == [int(r2[0]["z2"]) for _ in range(50)]
    assert len(set(draws1)) > 1  # re-drawn on every access


def test_colour_statistics_follow_setting():
    dep = ColouredDigits("train", setting="dependent")
    assert torch.equal(dep.colours, dep.digits)

    ind = ColouredDigits("train", setting="independent")
    assert _empirical_mi(ind.digits.numpy(), ind.colours.numpy()) < 0.1  # plug-in bias ~ 81/(2 N ln2) = 0.04
    assert np.bincount(ind.colours.numpy(), minlength=10).min() > 100

    mix = ColouredDigits("train", setting="mixture", seed=2)
    d, c = mix.digits.numpy(), mix.colours.numpy()
    table = colour_distribution("mixture")
    assert np.all(table[d, c] > 0)  # only colours the setting allows
    for digit in range(10):
        freq = np.bincount(c[d == digit], minlength=10) / (d == digit).sum()
        assert np.abs(freq - table[digit]).max() < 0.15
    mi = _empirical_mi(d, c)
    assert abs(mi - mix.mutual_information()) < 0.1


def test_resampled_colours_follow_setting():
    ds = ColouredDigits("train", setting="mixture", resample=True)
    table = colour_distribution("mixture")
    draws = np.array([int(ds[i % len(ds)]["z2"]) for i in range(2000)])
    digits = ds.digits.numpy()[np.arange(2000) % len(ds)]
    assert np.all(table[digits, draws] > 0)
    sel = draws[digits == 6]
    assert set(np.unique(sel)) == {5, 6, 7, 8}


# ---------------------------------------------------------------- StereoCrops


def test_full_views_and_invalid_disparity():
    left, right, disp = S.load_motorcycle()
    assert left.shape == right.shape == (500, 741, 3) and disp.shape == (500, 741)
    invalid = ~np.isfinite(disp)
    assert 0.01 < invalid.mean() < 0.2  # unknown pixels are +inf
    views = S.full_views(2)
    assert views["left"].shape == views["right"].shape == (3, 250, 370)
    assert views["disparity"].shape == views["valid"].shape == (1, 250, 370)
    assert views["valid"].dtype == torch.bool
    z = views["disparity"]
    assert torch.isfinite(z).all() and float(z.min()) == 0.0 and float(z.max()) == pytest.approx(1.0)
    assert (z[~views["valid"]] == 0).all() and (z[views["valid"]] > 0).all()
    assert views["disparity_scale"] == pytest.approx(float(disp[~invalid].max()) / 2, rel=0.02)


def test_stereo_crop_items():
    ds = StereoCrops("train", crop=32, num_crops=20, seed=0)
    assert len(ds) == 20
    item = ds[5]
    assert set(item) == {"x1", "x2", "z1", "z2", "valid"}
    for key in ("x1", "x2", "z1"):
        assert item[key].shape == (3, 32, 32) and item[key].dtype == torch.float32
        assert 0.0 <= float(item[key].min()) and float(item[key].max()) <= 1.0
    assert item["z2"].shape == (1, 32, 32) and item["z2"].dtype == torch.float32
    assert item["valid"].shape == (1, 32, 32) and item["valid"].dtype == torch.bool
    assert torch.equal(item["z1"], item["x1"])
    assert not torch.equal(item["x1"], item["x2"])
    # The valid mask matches the disparity: 0 exactly where invalid, in (0, 1] where valid.
    assert (item["z2"][~item["valid"]] == 0).all()
    assert (item["z2"][item["valid"]] > 0).all() and float(item["z2"].max()) <= 1.0
    # The crop is the full view at its position.
    views = S.full_views(2)
    r, c = (int(v) for v in ds.positions[5])
    torch.testing.assert_close(item["x1"], views["left"][:, r : r + 32, c : c + 32])
    torch.testing.assert_close(item["valid"], views["valid"][:, r : r + 32, c : c + 32])


@pytest.mark.parametrize(("crop", "downsample"), [(64, 2), (32, 1), (16, 4)])
def test_stereo_train_and_test_regions_do_not_overlap(crop, downsample):
    train = StereoCrops("train", crop=crop, num_crops=200, seed=1, downsample=downsample)
    test = StereoCrops("test", crop=crop, num_crops=200, seed=1, downsample=downsample)
    train_last_col = int((train.positions[:, 1] + crop).max())  # exclusive
    test_first_col = int(test.positions[:, 1].min())
    assert train_last_col <= train.region[1] <= test.region[0] <= test_first_col
    assert int((test.positions[:, 1] + crop).max()) <= test.width
    assert int((train.positions[:, 0] + crop).max()) <= train.height
    # The gap is at least crop/2 and the largest disparity (no scene point reaches both sets).
    assert test_first_col - train_last_col >= max(crop // 2, math.ceil(train.disparity_scale))


def test_stereo_deterministic_with_seed():
    a = StereoCrops("train", crop=32, num_crops=30, seed=3)
    b = StereoCrops("train", crop=32, num_crops=30, seed=3)
    c = StereoCrops("train", crop=32, num_crops=30, seed=4)
    assert torch.equal(a.positions, b.positions) and not torch.equal(a.positions, c.positions)
    # The test set does not depend on the seed.
    t3 = StereoCrops("test", crop=32, num_crops=30, seed=3)
    t4 = StereoCrops("test", crop=32, num_crops=30, seed=4)
    assert torch.equal(t3.positions, t4.positions)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"split": "val"}, "split"),
        ({"crop": 0}, "crop"),
        ({"crop": 300}, "crop"),
        ({"num_crops": 0}, "num_crops"),
        ({"seed": -2}, "seed"),
        ({"downsample": 0}, "downsample"),
    ],
)
def test_stereo_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        StereoCrops(**kwargs)
