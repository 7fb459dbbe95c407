"""Blahut-Arimoto against closed forms, and the synthetic experiment's theoretical curves."""

import math

import numpy as np
import pytest

from gwn_fast.theory import blahut_arimoto, synthetic_curves

PAPER_SLOPES = (0.1, 2.0, 5.0, 7.0, 100.0)


def _binary_entropy(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -p * math.log2(p) - (1 - p) * math.log2(1 - p)


@pytest.fixture(scope="module")
def paper_curves():
    return synthetic_curves(PAPER_SLOPES, rho=1.0, seed=0)


@pytest.mark.parametrize("p", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("slope", [1.5, 2.0, 3.0, 5.0])
def test_binary_hamming_matches_closed_form(p, slope):
    """Bernoulli(p) with Hamming distortion: R(D) = h(p) - h(D) for D < min(p, 1-p)."""
    result = blahut_arimoto([1 - p, p], [[0.0, 1.0], [1.0, 0.0]], slope)
    d = result["distortion"]
    # At slope s the optimal test channel has crossover D = 1 / (1 + e^s).
    assert d == pytest.approx(1 / (1 + math.exp(slope)), abs=1e-7)
    assert d < min(p, 1 - p)
    assert result["rate_bits"] == pytest.approx(_binary_entropy(p) - _binary_entropy(d), abs=1e-7)
    assert result["channel"].shape == (2, 2)
    np.testing.assert_allclose(result["channel"].sum(axis=1), 1.0, atol=1e-12)
    assert result["q_xhat"].sum() == pytest.approx(1.0)


def test_binary_small_slope_gives_zero_rate():
    """Below the critical slope the optimum is R = 0, D = min(p, 1-p)."""
    result = blahut_arimoto([0.7, 0.3], [[0.0, 1.0], [1.0, 0.0]], 0.5)
    assert result["rate_bits"] < 1e-6
    assert result["distortion"] == pytest.approx(0.3, abs=1e-5)


@pytest.mark.parametrize("slope", [2.0, 5.0])
def test_discretised_gaussian_squared_error(slope):
    """A fine grid of N(0, 1): R(D) = 0.5 log2(var / D), D = 1 / (2 slope), within 0.01 bit."""
    grid = np.arange(-6.0, 6.0 + 1e-9, 0.05)
    px = np.exp(-(grid**2) / 2)
    px /= px.sum()
    variance = float(np.sum(px * grid**2))
    distortion = (grid[:, None] - grid[None, :]) ** 2
    result = blahut_arimoto(px, distortion, slope, iterations=1000)
    d = result["distortion"]
    assert d == pytest.approx(1 / (2 * slope), rel=0.02)
    assert result["rate_bits"] == pytest.approx(0.5 * math.log2(variance / d), abs=0.01)


def test_rate_and_distortion_monotone_in_slope():
    rng = np.random.default_rng(1)
    px = rng.random(7)
    px /= px.sum()
    distortion = rng.random((7, 5)) * 3
    points = [blahut_arimoto(px, distortion, s) for s in (0.1, 0.5, 1, 2, 4, 8, 16)]
    rates = [pt["rate_bits"] for pt in points]
    dists = [pt["distortion"] for pt in points]
    assert all(b >= a - 1e-9 for a, b in zip(rates, rates[1:]))
    assert all(b <= a + 1e-9 for a, b in zip(dists, dists[1:]))
    # The rate never exceeds the source entropy.
    entropy = -np.sum(px * np.log2(px))
    assert max(rates) <= entropy + 1e-9


def test_large_slope_does_not_underflow():
    px = np.full(9, 1 / 9)
    symbols = np.arange(9.0)
    result = blahut_arimoto(px, (symbols[:, None] - symbols[None, :]) ** 2 / 16, 1000.0)
    assert np.all(np.isfinite(result["channel"]))
    assert result["rate_bits"] == pytest.approx(math.log2(9), abs=1e-6)
    assert result["distortion"] < 1e-6


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"px": [0.5, -0.1, 0.6]}, "px"),
        ({"px": [0.5, 0.4]}, "px"),
        ({"px": [[0.5, 0.5]]}, "px"),
        ({"distortion": np.zeros((3, 2))}, "distortion"),
        ({"distortion": [[0.0, np.nan], [1.0, 0.0]]}, "distortion"),
        ({"slope": 0.0}, "slope"),
        ({"slope": -1.0}, "slope"),
        ({"iterations": 0}, "iterations"),
        ({"tol": -1.0}, "tol"),
    ],
)
def test_blahut_arimoto_bad_arguments(kwargs, name):
    args = {"px": [0.5, 0.5], "distortion": [[0.0, 1.0], [1.0, 0.0]], "slope": 1.0} | kwargs
    with pytest.raises(ValueError, match=name):
        blahut_arimoto(**args)


def test_synthetic_curves_keys_and_order(paper_curves):
    assert [c["slope"] for c in paper_curves] == list(PAPER_SLOPES)
    for c in paper_curves:
        assert set(c) == {"slope", "distortion", "rate_joint", "rate_independent", "mutual_information"}
        assert all(isinstance(v, float) for v in c.values())
        assert c["mutual_information"] >= 0
        assert c["rate_independent"] >= c["rate_joint"]
        assert c["mutual_information"] == pytest.approx(c["rate_independent"] - c["rate_joint"])
    rates = [c["rate_joint"] for c in paper_curves]
    dists = [c["distortion"] for c in paper_curves]
    assert rates == sorted(rates)
    assert dists == sorted(dists, reverse=True)


def test_synthetic_curves_limits(paper_curves):
    """Small slope: zero rate at the source variance; large slope: lossless entropy."""
    from gwn_fast.data.synthetic import joint_pmf, pairing_map, pairing_statistics

    pmf = joint_pmf(1.0, seed=0)
    marginal = pmf.sum(axis=1)
    symbols = np.arange(9) / 4 - 1
    # Zero rate: every position is reproduced by the best constant symbol. Far below the
    # critical slope Blahut-Arimoto concentrates q slowly (1000 iterations leave a little
    # mass on the neighbours of the best symbol), hence the 0.5% tolerance.
    d_max = min(float(np.sum(marginal * (symbols - x) ** 2)) for x in symbols)
    assert paper_curves[0]["rate_joint"] < 1e-4
    assert paper_curves[0]["distortion"] == pytest.approx(d_max, rel=5e-3)

    stats = pairing_statistics(pairing_map(8192, 0), 4096)
    h_pair = -np.sum(pmf * np.log2(pmf))
    h_single = -np.sum(marginal * np.log2(marginal))
    lossless_joint = (stats["within"] + stats["cross"]) * h_pair / 2 + stats["single"] * h_single
    assert paper_curves[-1]["rate_joint"] == pytest.approx(lossless_joint, abs=0.01)
    # At rho = 1 the paired symbols are (almost) equal, so a cross pair saves about H(a)/2 per position.
    assert paper_curves[-1]["mutual_information"] == pytest.approx(stats["cross"] * h_single / 2, abs=0.01)


def test_synthetic_curves_zero_correlation_has_no_mutual_information():
    for c in synthetic_curves((2.0, 7.0, 100.0), rho=0.0, seed=0):
        assert abs(c["mutual_information"]) < 5e-3
        if c["slope"] > 2:  # slope 2 is below the critical slope of the uncorrelated source
            assert c["rate_joint"] > 0.1


def test_synthetic_curves_mutual_information_grows_with_correlation():
    mi = [synthetic_curves((5.0,), rho=rho)[0]["mutual_information"] for rho in (0.3, 0.9)]
    assert 0 <= mi[0] < mi[1]


def test_synthetic_curves_split_within_source_pairs():
    """Splitting every pair also counts the within-source redundancy: about twice the MI."""
    (default,) = synthetic_curves((100.0,))
    (split,) = synthetic_curves((100.0,), split_within_source_pairs=True)
    assert split["rate_joint"] == pytest.approx(default["rate_joint"])
    assert split["mutual_information"] == pytest.approx(2 * default["mutual_information"], rel=0.05)


def test_synthetic_curves_reproduce_published_reference():
    """``single_channel="joint"`` is the authors' convention; their published theoretical
    curves (per 64x64 pixel, both sources, distortion sqrt of the summed MSE) are
    Joint (rate, distortion) = (0.5168, 0.4949), (1.2361, 0.3129), (1.4680, 0.2706) and
    mutual information 0.2076, 0.4960, 0.5886 at slopes 2, 5, 7.
    Our pmf and pairing map are other random draws, hence the tolerances."""
    published = [(0.5168, 0.4949, 0.2076), (1.2361, 0.3129, 0.4960), (1.4680, 0.2706, 0.5886)]
    curves = synthetic_curves((2.0, 5.0, 7.0), single_channel="joint")
    for c, (rate, dist, mi) in zip(curves, published):
        assert 2 * c["rate_joint"] == pytest.approx(rate, abs=0.02)
        assert math.sqrt(2 * c["distortion"]) == pytest.approx(dist, abs=0.01)
        assert 2 * c["mutual_information"] == pytest.approx(mi, abs=0.02)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"slopes": (1.0, 0.0)}, "slopes"),
        ({"slopes": ()}, "slopes"),
        ({"rho": 1.5}, "rho"),
        ({"single_channel": "other"}, "single_channel"),
        ({"num_positions": 7}, "num_positions"),
        ({"pair_probability": -0.1}, "pair_probability"),
        ({"seed": -1}, "seed"),
    ],
)
def test_synthetic_curves_bad_arguments(kwargs, name):
    args = {"slopes": (1.0,)} | kwargs
    with pytest.raises(ValueError, match=name):
        synthetic_curves(**args)
