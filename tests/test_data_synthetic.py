"""The paper's synthetic discrete source: pmf, pairing, task matrices and the dataset."""

import numpy as np
import pytest
import torch

from gwn_fast.data.synthetic import SyntheticSource, joint_pmf, pairing_map, pairing_statistics, task_matrix


@pytest.mark.parametrize("rho", [1.0, 0.5, 0.0, -1.0])
def test_joint_pmf_is_a_positive_pmf(rho):
    pmf = joint_pmf(rho)
    assert pmf.shape == (9, 9)
    assert pmf.dtype == np.float64
    assert pmf.sum() == pytest.approx(1.0)
    assert np.all(pmf > 0)


def test_joint_pmf_rho_one_is_symmetric_and_diagonal():
    pmf = joint_pmf(1.0, samples=100_000)
    np.testing.assert_array_equal(pmf, pmf.T)
    off_diagonal = pmf[~np.eye(9, dtype=bool)]
    # Only the +1 smoothing lands off the diagonal.
    np.testing.assert_allclose(off_diagonal, 1 / (100_000 + 81))
    assert np.trace(pmf) > 0.999


def test_joint_pmf_deterministic_and_seeded():
    np.testing.assert_array_equal(joint_pmf(0.5, seed=3), joint_pmf(0.5, seed=3))
    assert not np.array_equal(joint_pmf(0.5, seed=3), joint_pmf(0.5, seed=4))


def test_joint_pmf_moments():
    """Marginal mean about 4 and variance about 4 (rounding adds 1/12, clipping removes a bit)."""
    pmf = joint_pmf(0.0, samples=200_000)
    a = np.arange(9)
    marginal = pmf.sum(axis=1)
    mean = np.sum(marginal * a)
    assert mean == pytest.approx(4.0, abs=0.02)
    assert 3.6 < np.sum(marginal * (a - mean) ** 2) < 4.1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"rho": 1.01}, "rho"), ({"variance": 0.0}, "variance"), ({"samples": -1}, "samples"), ({"seed": -2}, "seed")],
)
def test_joint_pmf_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        joint_pmf(**kwargs)


def test_pairing_map_is_an_involution_with_expected_fraction():
    n = 200_000
    pairing = pairing_map(n, seed=7)
    assert pairing.shape == (n,)
    assert pairing.dtype == np.int64
    paired = np.flatnonzero(pairing >= 0)
    assert np.all(pairing[pairing[paired]] == paired)
    assert np.all(pairing[paired] != paired)
    assert np.all(pairing >= -1)
    assert len(paired) / n == pytest.approx(2 * 0.8 / 1.8, abs=0.005)  # ~0.889
    stats = pairing_statistics(pairing, n // 2)
    assert stats["single"] + stats["within"] + stats["cross"] == pytest.approx(1.0)
    assert stats["cross"] == pytest.approx(stats["within"], abs=0.01)  # about half the pairs straddle


def test_pairing_map_deterministic_and_extremes():
    np.testing.assert_array_equal(pairing_map(1000, 1), pairing_map(1000, 1))
    assert not np.array_equal(pairing_map(1000, 1), pairing_map(1000, 2))
    np.testing.assert_array_equal(pairing_map(50, 0, pair_probability=0.0), -1)
    assert np.all(pairing_map(50, 0, pair_probability=1.0) >= 0)
    assert pairing_map(51, 0, pair_probability=1.0).tolist().count(-1) == 1
    assert pairing_map(0, 0).shape == (0,)
    assert pairing_map(1, 0).tolist() == [-1]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_positions": -1}, "num_positions"),
        ({"pair_probability": 1.5}, "pair_probability"),
        ({"seed": "a"}, "seed"),
    ],
)
def test_pairing_map_bad_arguments(kwargs, name):
    args = {"num_positions": 10, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=name):
        pairing_map(**args)


def test_pairing_statistics_rejects_non_involution():
    with pytest.raises(ValueError, match="pairing"):
        pairing_statistics(np.array([1, 2, 0]), 1)
    with pytest.raises(ValueError, match="pairing"):
        pairing_statistics(np.array([0, -1]), 1)


@pytest.mark.parametrize("dim", [1, 16, 64])
def test_task_matrix_unit_determinant_near_identity(dim):
    t = task_matrix(dim, seed=5)
    assert t.shape == (dim, dim)
    assert t.dtype == torch.float64
    sign, logdet = torch.linalg.slogdet(t)
    assert sign.item() == 1.0
    assert abs(logdet.item()) < 1e-10
    assert (t - torch.eye(dim, dtype=torch.float64)).abs().max().item() < 0.1
    torch.testing.assert_close(t, task_matrix(dim, seed=5), rtol=0, atol=0)
    if dim > 1:
        assert not torch.equal(t, task_matrix(dim, seed=6))


def test_task_matrix_bad_dim():
    with pytest.raises(ValueError, match="dim"):
        task_matrix(0, seed=0)


def test_dataset_shapes_dtypes_and_contents():
    ds = SyntheticSource(20, size=6, rho=1.0, seed=11)
    assert len(ds) == 20
    assert ds.size == 6
    assert ds.rho == 1.0
    assert ds.pmf.shape == (9, 9)
    assert ds.pairing.shape == (72,)
    assert ds.T1.shape == ds.T2.shape == (36, 36)
    item = ds[4]
    assert set(item) == {"x1", "z1", "z2", "symbols"}
    assert item["x1"].shape == (2, 6, 6) and item["x1"].dtype == torch.float32
    assert item["z1"].shape == (1, 6, 6) and item["z1"].dtype == torch.float32
    assert item["z2"].shape == (1, 6, 6) and item["z2"].dtype == torch.float32
    assert item["symbols"].shape == (2, 6, 6) and item["symbols"].dtype == torch.int64
    symbols = item["symbols"]
    assert symbols.min() >= 0 and symbols.max() <= 8
    torch.testing.assert_close(item["x1"], symbols.float() / 4 - 1)
    assert item["x1"].min() >= -1 and item["x1"].max() <= 1
    for z, t, channel in ((item["z1"], ds.T1, 0), (item["z2"], ds.T2, 1)):
        expected = (t @ (symbols[channel].double().reshape(-1) / 4 - 1)).float().view(1, 6, 6)
        torch.testing.assert_close(z, expected)
    torch.testing.assert_close(ds[-1]["symbols"], ds[19]["symbols"])
    with pytest.raises(IndexError):
        ds[20]


def test_dataset_deterministic_and_random_access():
    a = SyntheticSource(10, size=4, seed=3)
    b = SyntheticSource(10, size=4, seed=3)
    c = SyntheticSource(10, size=4, seed=4)
    lazy = SyntheticSource(10, size=4, seed=3, precompute=False)
    for i in (7, 0, 7):
        for key, value in a[i].items():
            assert torch.equal(value, b[i][key])
            assert torch.equal(value, lazy[i][key])
    assert not torch.equal(a[0]["symbols"], c[0]["symbols"])
    assert not torch.equal(a[0]["symbols"], a[1]["symbols"])
    np.testing.assert_array_equal(a.pairing, pairing_map(32, 3))


def test_dataset_paired_positions_are_correlated():
    ds = SyntheticSource(300, size=8, rho=1.0, seed=0)
    flat = torch.stack([ds[i]["symbols"].reshape(-1) for i in range(len(ds))]).numpy()  # [N, 128]
    dim = 64
    index = np.arange(2 * dim)
    cross = np.flatnonzero((ds.pairing > index) & (index < dim) & (ds.pairing >= dim))
    assert cross.size > 0
    first, second = flat[:, cross], flat[:, ds.pairing[cross]]
    assert np.mean(first == second) > 0.99
    assert np.corrcoef(first.ravel(), second.ravel())[0, 1] > 0.99
    # Single positions are independent of each other.
    singles = np.flatnonzero(ds.pairing < 0)
    assert singles.size >= 2
    r = np.corrcoef(flat[:, singles[0]], flat[:, singles[1]])[0, 1]
    assert abs(r) < 0.2
    # Symbols follow the pmf's marginal (mean 4).
    assert flat.mean() == pytest.approx(4.0, abs=0.1)


def test_dataset_rho_zero_pairs_uncorrelated():
    ds = SyntheticSource(400, size=4, rho=0.0, seed=1)
    flat = torch.stack([ds[i]["symbols"].reshape(-1) for i in range(len(ds))]).numpy()
    first = np.flatnonzero(ds.pairing > np.arange(32))
    r = np.corrcoef(flat[:, first].ravel(), flat[:, ds.pairing[first]].ravel())[0, 1]
    assert abs(r) < 0.1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"size": 0}, "size"), ({"num_samples": -1}, "num_samples"), ({"rho": 2.0}, "rho"), ({"seed": -1}, "seed")],
)
def test_dataset_bad_arguments(kwargs, name):
    args = {"num_samples": 2} | kwargs
    with pytest.raises(ValueError, match=name):
        SyntheticSource(**args)
