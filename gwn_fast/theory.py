"""Theoretical rate-distortion curves (Blahut-Arimoto) for the synthetic experiment.

Two public functions:

- :func:`blahut_arimoto`: one point of the rate-distortion function ``R(D)`` of a
  discrete memoryless source at a given Lagrange slope.
- :func:`synthetic_curves`: the joint / independent / mutual-information curves of the
  paper's synthetic source (:mod:`gwn_fast.data.synthetic`), per position.

Everything is NumPy float64; the functions take and return NumPy arrays and Python
floats. Rates are reported in bits, computed in nats internally.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["blahut_arimoto", "synthetic_curves"]

_LN2 = math.log(2.0)


def _mutual_information_nats(joint: np.ndarray) -> float:
    """``I(X; Y)`` in nats of a joint pmf ``joint`` of shape ``[X, Y]`` (zeros allowed)."""
    px = joint.sum(axis=1, keepdims=True)
    py = joint.sum(axis=0, keepdims=True)
    outer = px * py
    mask = joint > 0
    return float(np.sum(joint[mask] * np.log(joint[mask] / outer[mask])))


def _check_probability_vector(px, name: str) -> np.ndarray:
    px = np.asarray(px, dtype=np.float64)
    if px.ndim != 1 or px.size == 0:
        msg = f"{name} must be a non-empty 1-D probability vector, got shape {tuple(px.shape)}"
        raise ValueError(msg)
    if not np.all(np.isfinite(px)) or np.any(px < 0):
        msg = f"{name} must be finite and nonnegative, got min {px.min()!r}"
        raise ValueError(msg)
    total = float(px.sum())
    if abs(total - 1.0) > 1e-8:
        msg = f"{name} must sum to 1, got sum {total!r}"
        raise ValueError(msg)
    return px


def blahut_arimoto(
    px,
    distortion,
    slope: float,
    iterations: int = 1000,
    tol: float = 1e-12,
) -> dict:
    """One point of ``R(D)`` of a discrete source by the Blahut-Arimoto algorithm.

    Minimises ``I(X; Xhat) + slope * E[d(X, Xhat)]`` over test channels
    ``Q(xhat | x)`` (natural logarithms, so ``slope`` is in nats per unit distortion;
    ``-slope`` is the slope of ``R(D)`` in nats). The iteration is the textbook one:
    ``Q(xhat|x) ∝ q(xhat) exp(-slope d(x, xhat))`` and ``q(xhat) = sum_x p(x) Q(xhat|x)``,
    started from a uniform ``q`` and carried out in the log domain (with the row
    minimum of ``d`` subtracted), so large slopes do not underflow.

    It stops after ``iterations`` updates or once ``max |q_new - q| <= tol``. The
    returned rate and distortion are those of the final channel ``Q``, with the rate
    measured against that channel's own output marginal, so they are an exact
    (achievable) point on or above ``R(D)``.

    Args:
        px: source pmf, shape ``[X]``, nonnegative, summing to 1.
        distortion: distortion matrix ``d[x, xhat]``, shape ``[X, M]``, finite.
        slope: Lagrange multiplier ``> 0``. Larger means lower distortion.
        iterations: maximum number of updates (``>= 1``).
        tol: convergence threshold on the output marginal (``>= 0``).

    Returns:
        A dict with ``rate_bits`` (float, ``I(X; Xhat)`` in bits), ``distortion``
        (float, ``E[d]``), ``channel`` (``[X, M]`` float64, rows sum to 1),
        ``q_xhat`` (``[M]`` float64 output marginal) and ``iterations`` (int, updates
        performed).

    Raises:
        ValueError: naming the argument, for a bad ``px``, ``distortion``, ``slope``,
            ``iterations`` or ``tol``.
    """
    px = _check_probability_vector(px, "px")
    distortion = np.asarray(distortion, dtype=np.float64)
    if distortion.ndim != 2 or distortion.shape[0] != px.shape[0] or distortion.shape[1] == 0:
        msg = (
            f"distortion must have shape [len(px), M] = [{px.shape[0]}, M] with M >= 1, "
            f"got {tuple(distortion.shape)}"
        )
        raise ValueError(msg)
    if not np.all(np.isfinite(distortion)):
        msg = "distortion must be finite"
        raise ValueError(msg)
    slope = float(slope)
    if not math.isfinite(slope) or slope <= 0:
        msg = f"slope must be a finite number > 0, got {slope!r}"
        raise ValueError(msg)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        msg = f"iterations must be an integer >= 1, got {iterations!r}"
        raise ValueError(msg)
    tol = float(tol)
    if not tol >= 0:
        msg = f"tol must be >= 0, got {tol!r}"
        raise ValueError(msg)

    num_out = distortion.shape[1]
    # Row-shifted exponent: the per-row shift cancels in the normalisation of Q.
    exponent = -slope * (distortion - distortion.min(axis=1, keepdims=True))
    with np.errstate(divide="ignore"):
        log_q = np.full(num_out, -math.log(num_out))
        done = 0
        for done in range(1, iterations + 1):
            logits = log_q[None, :] + exponent
            logits -= logits.max(axis=1, keepdims=True)
            channel = np.exp(logits)
            channel /= channel.sum(axis=1, keepdims=True)
            q_new = px @ channel
            change = float(np.max(np.abs(q_new - np.exp(log_q))))
            log_q = np.log(q_new)
            if change <= tol:
                break

    joint = px[:, None] * channel
    q_xhat = joint.sum(axis=0)
    rate = _mutual_information_nats(joint) / _LN2
    return {
        "rate_bits": max(rate, 0.0),
        "distortion": float(np.sum(joint * distortion)),
        "channel": channel,
        "q_xhat": q_xhat,
        "iterations": done,
    }


def _squared_error(num_symbols: int, scale: float) -> np.ndarray:
    """``[(a - b)^2 / scale]`` for ``a, b`` in ``0..num_symbols-1``, shape ``[n, n]``."""
    symbols = np.arange(num_symbols, dtype=np.float64)
    return (symbols[:, None] - symbols[None, :]) ** 2 / scale


def synthetic_curves(
    slopes: Sequence[float],
    rho: float = 1.0,
    seed: int = 0,
    *,
    num_positions: int = 8192,
    pair_probability: float = 0.8,
    iterations: int = 1000,
    single_channel: str = "marginal",
    split_within_source_pairs: bool = False,
) -> list[dict]:
    """Theoretical curves of the synthetic experiment, in bits and distortion per position.

    The source (see :mod:`gwn_fast.data.synthetic`) has ``num_positions`` symbols in
    ``0..8``: the first half is source X1, the second half X2. Pairs of positions share
    one draw ``(a, b)`` from the 9x9 table ``P = joint_pmf(rho, seed=seed)``; the other
    positions are single draws from its row marginal ``p(a) = sum_b P[a, b]``. The
    pairing is ``pairing_map(num_positions, seed, pair_probability)``, the very map
    ``SyntheticSource(size, rho=rho, seed=seed)`` uses when ``num_positions = 2*size*size``.
    From it come three fractions of positions: ``f_single`` (unpaired), ``f_within``
    (paired with a position of the same source) and ``f_cross`` (paired across X1/X2);
    ``f_within + f_cross`` is about 0.89 for ``pair_probability = 0.8``.

    For every slope ``s`` (nats per unit distortion, as in :func:`blahut_arimoto`):

    1. **Pair channel.** Blahut-Arimoto on the 81 pairs ``(a, b)`` with pmf ``P`` and the
       81 reproduction pairs ``(x, y)``, distortion ``((a-x)^2 + (b-y)^2) / 16``
       (squared error summed over both coordinates, symbols scaled to ``[-1, 1]``), at
       slope ``s``. It gives ``R_pair = I(AB; XY)`` and ``D_pair``. From the same joint
       test channel come the per-coordinate ``I_a = I(A; X)``, ``I_b = I(B; Y)`` and the
       per-coordinate distortions ``D_a``, ``D_b`` (``D_a + D_b = D_pair``).
    2. **Single channel.** ``single_channel="marginal"`` (default): Blahut-Arimoto on the
       9-symbol marginal ``p`` with ``(a - x)^2 / 16`` at the same slope ``s``, giving
       ``R_single``, ``D_single``. Using one slope for every independent component is
       what makes the per-position sum a point of the rate-distortion function of the
       whole source. ``single_channel="joint"`` instead takes ``R_single = I_a`` and
       ``D_single = D_a`` from the pair channel (the choice of the authors' script).
    3. **Aggregation per position** (each pair counts as two positions, half its rate and
       distortion each)::

           rate_joint       = (f_within + f_cross) * R_pair / 2 + f_single * R_single
           rate_independent = f_within * R_pair / 2 + f_cross * (I_a + I_b) / 2
                              + f_single * R_single
           mutual_information = rate_independent - rate_joint
                              = f_cross * (I_a + I_b - R_pair) / 2
           distortion       = (f_within + f_cross) * D_pair / 2 + f_single * D_single

       ``rate_joint`` codes X1 and X2 together. ``rate_independent`` codes X1 and X2 each
       on its own: a pair inside one source is still coded jointly, a pair straddling
       the sources is coded coordinate by coordinate through the marginals of the same
       joint test channel. ``mutual_information`` is therefore the rate saved by
       exploiting the cross-source pairs, i.e. the common information of X1 and X2.
       With ``split_within_source_pairs=True`` every pair is split in the independent
       rate (``f_within`` moves into the ``(I_a + I_b) / 2`` term), which also counts
       the redundancy inside each source.

    Units and axes. Rates are bits per position (per symbol of X1 or X2);
    ``distortion`` is the mean squared error per position on the ``[-1, 1]`` scale. The
    paper's script reports per *pixel* of the 64x64 grid with both sources summed, i.e.
    rates ``2 * rate_*`` and distortion axis ``sqrt(2 * distortion)`` (square root of the
    per-pixel summed MSE of both sources), which is not the empirical
    ``RMSE_A + RMSE_B`` axis.

    Args:
        slopes: Lagrange slopes ``> 0`` (the paper uses ``(0.1, 2, 5, 7, 100)``).
        rho: correlation of the underlying bivariate Gaussian, in ``[-1, 1]``.
        seed: seed of the pmf and of the pairing map (``>= 0``).
        num_positions: total positions of the pairing map (``2 * 64 * 64`` in the paper).
        pair_probability: probability of pairing at each step of the pairing walk.
        iterations: Blahut-Arimoto iterations per slope (tolerance ``1e-12``).
        single_channel: ``"marginal"`` or ``"joint"``, see step 2.
        split_within_source_pairs: see step 3.

    Returns:
        One dict per slope, in order, with float values under ``slope``,
        ``distortion``, ``rate_joint``, ``rate_independent`` and ``mutual_information``.

    Raises:
        ValueError: naming the argument, for bad arguments.
    """
    from gwn_fast.data.synthetic import joint_pmf, pairing_map, pairing_statistics  # noqa: PLC0415

    if single_channel not in ("marginal", "joint"):
        msg = f"single_channel must be 'marginal' or 'joint', got {single_channel!r}"
        raise ValueError(msg)
    slopes = [float(s) for s in np.atleast_1d(np.asarray(slopes, dtype=np.float64))]
    if not slopes:
        msg = "slopes must contain at least one slope"
        raise ValueError(msg)
    for s in slopes:
        if not math.isfinite(s) or s <= 0:
            msg = f"slopes must all be finite and > 0, got {s!r}"
            raise ValueError(msg)
    if (
        isinstance(num_positions, bool)
        or not isinstance(num_positions, (int, np.integer))
        or num_positions < 2
        or num_positions % 2
    ):
        msg = f"num_positions must be an even integer >= 2 (two equal sources), got {num_positions!r}"
        raise ValueError(msg)

    pmf = joint_pmf(rho=rho, seed=seed)
    num_symbols = pmf.shape[0]
    stats = pairing_statistics(pairing_map(num_positions, seed, pair_probability), num_positions // 2)
    f_single, f_within, f_cross = stats["single"], stats["within"], stats["cross"]
    if split_within_source_pairs:
        f_split, f_kept = f_within + f_cross, 0.0
    else:
        f_split, f_kept = f_cross, f_within

    scale = ((num_symbols - 1) / 2) ** 2  # 16: symbols scaled to [-1, 1]
    d_single = _squared_error(num_symbols, scale)  # [9, 9]
    # Pair (a, b) -> index a * 9 + b; d[(a,b), (x,y)] = d(a,x) + d(b,y): shape [81, 81].
    d_pair = (d_single[:, None, :, None] + d_single[None, :, None, :]).reshape(num_symbols**2, num_symbols**2)
    p_pair = pmf.reshape(-1)
    p_single = pmf.sum(axis=1)

    curves = []
    for s in slopes:
        pair = blahut_arimoto(p_pair, d_pair, s, iterations=iterations)
        joint = (p_pair[:, None] * pair["channel"]).reshape((num_symbols,) * 4)  # [a, b, x, y]
        joint_a = joint.sum(axis=(1, 3))  # [a, x]
        joint_b = joint.sum(axis=(0, 2))  # [b, y]
        info_a = _mutual_information_nats(joint_a) / _LN2
        info_b = _mutual_information_nats(joint_b) / _LN2
        dist_a = float(np.sum(joint_a * d_single))
        if single_channel == "marginal":
            single = blahut_arimoto(p_single, d_single, s, iterations=iterations)
            rate_single, dist_single = single["rate_bits"], single["distortion"]
        else:
            rate_single, dist_single = info_a, dist_a
        rate_pair = pair["rate_bits"]
        shared = f_kept * rate_pair / 2 + f_single * rate_single
        rate_joint = shared + f_split * rate_pair / 2
        rate_independent = shared + f_split * (info_a + info_b) / 2
        curves.append(
            {
                "slope": s,
                "distortion": (f_within + f_cross) * pair["distortion"] / 2 + f_single * dist_single,
                "rate_joint": rate_joint,
                "rate_independent": rate_independent,
                "mutual_information": rate_independent - rate_joint,
            }
        )
    return curves
