"""The synthetic discrete source of the paper's first experiment.

Two ``S x S`` sources X1 and X2 of symbols in ``{0, ..., 8}`` (``2*S*S`` positions in
all; position ``k < S*S`` is X1 in row-major order, the rest X2). A fixed random pairing
of the positions makes about 89% of them come in pairs that share one draw from a 9x9
table (:func:`joint_pmf`); pairs straddling X1 and X2 are their common information, pairs
inside one source are redundancy within that source. Each source also has a fixed
near-identity linear "regression" task ``z_i = T_i vec(X_i)`` (:func:`task_matrix`).

Public API: :func:`joint_pmf`, :func:`pairing_map`, :func:`pairing_statistics`,
:func:`task_matrix` and the :class:`SyntheticSource` dataset. The theoretical curves of
this source are :func:`gwn_fast.theory.synthetic_curves`.

Seeds: every function takes a seed accepted by :func:`numpy.random.default_rng` (a
nonnegative int or a sequence of them) and is deterministic in it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["SyntheticSource", "joint_pmf", "pairing_map", "pairing_statistics", "task_matrix"]

NUM_SYMBOLS = 9
"""Alphabet size: symbols ``0..8``."""
OFFSET = (NUM_SYMBOLS - 1) // 2
"""Shift of the Gaussian samples and half-range of the alphabet (4)."""

Seed = int | Sequence[int]


def _check_seed(seed, name: str = "seed") -> int | tuple[int, ...]:
    values = (seed,) if isinstance(seed, (int, np.integer)) else seed
    try:
        values = tuple(values)
    except TypeError:
        values = None
    if (
        not values
        or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in values)
    ):
        msg = f"{name} must be a nonnegative int or a non-empty sequence of them, got {seed!r}"
        raise ValueError(msg)
    return int(seed) if isinstance(seed, (int, np.integer)) else tuple(int(v) for v in values)


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        msg = f"{name} must be an integer >= {minimum}, got {value!r}"
        raise ValueError(msg)
    return int(value)


def joint_pmf(rho: float = 1.0, variance: float = 4.0, samples: int = 100_000, seed: Seed = 0) -> np.ndarray:
    """The 9x9 pmf of symbol pairs, estimated from a quantised bivariate Gaussian.

    Draws ``samples`` pairs ``(u, v)`` with ``u = z``, ``v = rho*z + sqrt(1-rho^2)*n``
    for independent ``z, n ~ N(0, variance)`` (so ``rho = +-1`` is fine: ``v = +-u``),
    maps each coordinate to ``clip(round(. + 4), 0, 8)`` (round half to even), counts
    the pairs, adds 1 to every cell (Laplace smoothing) and normalises.

    Args:
        rho: correlation in ``[-1, 1]``.
        variance: variance of each coordinate (``> 0``).
        samples: number of Gaussian pairs (``>= 0``).
        seed: seed of the ``numpy.random.Generator``.

    Returns:
        float64 array ``[9, 9]``, ``pmf[a, b] = P(first = a, second = b)``, all entries
        ``> 0``, summing to 1.
    """
    rho = float(rho)
    if not -1.0 <= rho <= 1.0:
        msg = f"rho must be in [-1, 1], got {rho!r}"
        raise ValueError(msg)
    variance = float(variance)
    if not (math.isfinite(variance) and variance > 0):
        msg = f"variance must be a finite number > 0, got {variance!r}"
        raise ValueError(msg)
    samples = _check_int(samples, "samples", 0)
    rng = np.random.default_rng(_check_seed(seed))
    std = math.sqrt(variance)
    z = rng.standard_normal(samples) * std
    noise = rng.standard_normal(samples) * std
    second = rho * z + math.sqrt(max(0.0, 1.0 - rho * rho)) * noise
    a = np.clip(np.rint(z + OFFSET), 0, NUM_SYMBOLS - 1).astype(np.int64)
    b = np.clip(np.rint(second + OFFSET), 0, NUM_SYMBOLS - 1).astype(np.int64)
    counts = np.bincount(a * NUM_SYMBOLS + b, minlength=NUM_SYMBOLS**2).astype(np.float64) + 1.0
    return (counts / counts.sum()).reshape(NUM_SYMBOLS, NUM_SYMBOLS)


def pairing_map(num_positions: int, seed: Seed, pair_probability: float = 0.8) -> np.ndarray:
    """A random pairing of positions: the partner of each position, or -1.

    Shuffles ``0..num_positions-1`` and walks through the shuffled order: at each step,
    with probability ``pair_probability`` the current index and the next one (the next
    not yet visited) become a pair and the walk moves past both; otherwise the current
    index stays single and the walk moves one step. The last index is always single if
    it is reached on its own. The expected fraction of paired positions is
    ``2p / (1 + p)`` for large maps (0.889 at ``p = 0.8``).

    Args:
        num_positions: number of positions (``>= 0``).
        seed: seed of the ``numpy.random.Generator``.
        pair_probability: probability of pairing at each step, in ``[0, 1]``.

    Returns:
        int64 array ``[num_positions]``: ``out[i]`` is ``i``'s partner or ``-1``. It is an
        involution on the paired positions: ``out[out[i]] == i`` and ``out[i] != i``.
    """
    n = _check_int(num_positions, "num_positions", 0)
    p = float(pair_probability)
    if not 0.0 <= p <= 1.0:
        msg = f"pair_probability must be in [0, 1], got {pair_probability!r}"
        raise ValueError(msg)
    rng = np.random.default_rng(_check_seed(seed))
    order = rng.permutation(n)
    pair = rng.random(n) < p  # decision of step k (at most n steps)
    # Start of step k in the shuffled order: steps advance 2 when pairing, else 1.
    step = 1 + pair.astype(np.int64)
    start = np.cumsum(step) - step
    reached = start < n
    start, pair = start[reached], pair[reached] & (start[reached] + 1 < n)
    first, second = order[start[pair]], order[start[pair] + 1]
    out = np.full(n, -1, dtype=np.int64)
    out[first] = second
    out[second] = first
    return out


def pairing_statistics(pairing: np.ndarray, positions_per_source: int) -> dict[str, float]:
    """Fractions of positions that are single, paired within a source, or paired across.

    Args:
        pairing: int array ``[N]`` from :func:`pairing_map` (partner or -1), an
            involution on its paired positions.
        positions_per_source: positions ``< positions_per_source`` belong to X1, the
            others to X2.

    Returns:
        ``{"single", "within", "cross"}`` fractions of the ``N`` positions (sum 1).
    """
    pairing = np.asarray(pairing)
    if pairing.ndim != 1 or pairing.size == 0 or not np.issubdtype(pairing.dtype, np.integer):
        msg = f"pairing must be a non-empty 1-D integer array, got shape {pairing.shape}, dtype {pairing.dtype}"
        raise ValueError(msg)
    n = pairing.size
    index = np.arange(n)
    paired = pairing >= 0
    if np.any(pairing >= n) or np.any(pairing < -1) or np.any(pairing[paired] == index[paired]):
        msg = "pairing must hold partner indices in [0, N) different from the position itself, or -1"
        raise ValueError(msg)
    if np.any(pairing[pairing[paired]] != index[paired]):
        msg = "pairing must be an involution: pairing[pairing[i]] == i for paired i"
        raise ValueError(msg)
    split = _check_int(positions_per_source, "positions_per_source", 0)
    cross = paired & ((index < split) != (pairing < split))
    return {
        "single": float(np.mean(~paired)),
        "within": float(np.mean(paired & ~cross)),
        "cross": float(np.mean(cross)),
    }


def task_matrix(dim: int, seed: Seed) -> torch.Tensor:
    """A random near-identity matrix with unit determinant (the paper's "regression" task).

    Entries ``N(0, 0.001^2)`` clipped to ``[-0.01, 0.01]``; the diagonal is replaced by
    the row sums of absolute values (taken before the replacement); then the matrix
    exponential, rescaled so that ``log|det| = 0``. Since ``det exp(A) = exp(tr A)``, the
    mean diagonal is subtracted before exponentiating (this is the same rescaling and
    keeps ``matrix_exp`` well scaled); a final division by ``exp(logdet / dim)``
    removes the remaining round-off.

    Args:
        dim: matrix size (``>= 1``).
        seed: seed of the ``numpy.random.Generator``.

    Returns:
        float64 tensor ``[dim, dim]`` with ``slogdet = (1, ~0)``.
    """
    dim = _check_int(dim, "dim", 1)
    rng = np.random.default_rng(_check_seed(seed))
    a = np.clip(rng.normal(0.0, 1e-3, size=(dim, dim)), -1e-2, 1e-2)
    diagonal = np.abs(a).sum(axis=1)
    np.fill_diagonal(a, diagonal - diagonal.mean())
    m = torch.linalg.matrix_exp(torch.from_numpy(a))
    _, logdet = torch.linalg.slogdet(m)
    return m / torch.exp(logdet / dim)


class SyntheticSource(Dataset):
    """Samples of the paper's synthetic two-source discrete data set.

    Fixed per data set (all from ``seed``): the pmf ``joint_pmf(rho, seed=seed)``, the
    pairing ``pairing_map(2*size*size, seed, pair_probability)`` and the task matrices
    ``T1 = task_matrix(size*size, (seed, 1))``, ``T2 = task_matrix(size*size, (seed, 2))``.
    Sample ``i`` is drawn with ``numpy.random.default_rng((seed, 3, i))``: every pair
    ``(j, k)`` with ``j < k`` gets one draw ``(a, b) ~ pmf`` (``j`` takes ``a``, ``k``
    takes ``b``), every single position a draw from the row marginal ``pmf.sum(1)``. So
    items are reproducible and random-access. Position ``p < size*size`` is
    ``X1.flatten()[p]``, the rest ``X2.flatten()[p - size*size]`` (row-major).

    Items are generated on init when ``num_samples * 2 * size * size <= 2**24`` (or as
    ``precompute`` says), otherwise on access; both give identical items. At the paper's
    ``size = 64`` the two 4096x4096 float64 matrix exponentials dominate construction
    (about 25 s each on 2 CPU cores).

    Each item is a dict:

    - ``"x1"``: float32 ``[2, S, S]``, X1 and X2 scaled to ``[-1, 1]`` (``symbol/4 - 1``)
      as two channels. There is no ``"x2"``: both encoders see this tensor.
    - ``"z1"``: float32 ``[1, S, S]``, ``T1 @ vec(X1 scaled)`` reshaped row-major
      (computed in float64).
    - ``"z2"``: float32 ``[1, S, S]``, the same with ``T2`` and X2.
    - ``"symbols"``: int64 ``[2, S, S]``, the raw symbols of X1 and X2.

    Args:
        num_samples: length of the data set (``>= 0``).
        size: side ``S`` of each source (``>= 1``; 64 in the paper).
        rho: correlation of the pair table, in ``[-1, 1]``.
        seed: data-set seed (nonnegative int; the paper used 110069).
        pair_probability: pairing probability of :func:`pairing_map`.
        precompute: force (True) or skip (False) generation on init; default automatic.

    Attributes:
        pmf: float64 ``[9, 9]``. pairing: int64 ``[2*S*S]``. T1, T2: float64 tensors
        ``[S*S, S*S]``. size, rho, seed, num_samples.
    """

    def __init__(
        self,
        num_samples: int,
        size: int = 8,
        rho: float = 1.0,
        seed: int = 0,
        *,
        pair_probability: float = 0.8,
        precompute: bool | None = None,
    ) -> None:
        self.num_samples = _check_int(num_samples, "num_samples", 0)
        self.size = _check_int(size, "size", 1)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            msg = f"seed must be a nonnegative int, got {seed!r}"
            raise ValueError(msg)
        self.seed = int(seed)
        self.rho = float(rho)
        dim = self.size * self.size
        self.pmf = joint_pmf(self.rho, seed=self.seed)
        self.pairing = pairing_map(2 * dim, self.seed, pair_probability)
        self.T1 = task_matrix(dim, (self.seed, 1))
        self.T2 = task_matrix(dim, (self.seed, 2))

        index = np.arange(2 * dim)
        self._first = np.flatnonzero(self.pairing > index)  # smaller index of each pair
        self._second = self.pairing[self._first]
        self._single = np.flatnonzero(self.pairing < 0)
        self._pair_cdf = np.cumsum(self.pmf.reshape(-1))
        self._single_cdf = np.cumsum(self.pmf.sum(axis=1))

        if precompute is None:
            precompute = self.num_samples * 2 * dim <= 2**24
        self._symbols = self._z = None
        if precompute:
            symbols = np.zeros((self.num_samples, 2 * dim), dtype=np.uint8)
            for i in range(self.num_samples):
                symbols[i] = self._draw(i)
            self._symbols = torch.from_numpy(symbols)  # uint8 [N, 2*S*S]
            self._z = self._tasks(self._symbols)  # float32 [N, 2, S*S]

    def _draw(self, index: int) -> np.ndarray:
        """Raw symbols of sample ``index``: uint8 ``[2*S*S]``."""
        rng = np.random.default_rng((self.seed, 3, index))
        out = np.empty(self.pairing.size, dtype=np.uint8)
        pairs = np.searchsorted(self._pair_cdf, rng.random(self._first.size), side="right")
        pairs = np.minimum(pairs, NUM_SYMBOLS**2 - 1)  # guard against cdf[-1] < 1 by round-off
        out[self._first] = pairs // NUM_SYMBOLS
        out[self._second] = pairs % NUM_SYMBOLS
        singles = np.searchsorted(self._single_cdf, rng.random(self._single.size), side="right")
        out[self._single] = np.minimum(singles, NUM_SYMBOLS - 1)
        return out

    def _tasks(self, symbols: torch.Tensor) -> torch.Tensor:
        """Task targets of symbols ``[N, 2*S*S]``: float32 ``[N, 2, S*S]``."""
        dim = self.size * self.size
        scaled = symbols.to(torch.float64) / OFFSET - 1.0
        z1 = scaled[:, :dim] @ self.T1.T
        z2 = scaled[:, dim:] @ self.T2.T
        return torch.stack([z1, z2], dim=1).to(torch.float32)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if isinstance(index, torch.Tensor):
            index = int(index)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            msg = f"index must be an integer, got {type(index).__name__}"
            raise TypeError(msg)
        if not -self.num_samples <= index < self.num_samples:
            msg = f"index {index} out of range for a data set of {self.num_samples} samples"
            raise IndexError(msg)
        index = int(index) % self.num_samples
        s = self.size
        if self._symbols is not None:
            symbols, z = self._symbols[index], self._z[index]
        else:
            symbols = torch.from_numpy(self._draw(index))
            z = self._tasks(symbols[None])[0]
        symbols = symbols.to(torch.int64).view(2, s, s)
        return {
            "x1": symbols.to(torch.float32) / OFFSET - 1.0,
            "z1": z[0].view(1, s, s).clone(),
            "z2": z[1].view(1, s, s).clone(),
            "symbols": symbols,
        }
