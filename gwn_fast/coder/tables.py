"""CDF table sets: validated once, built deterministically, stored as plain arrays."""

from __future__ import annotations

import sys

import numpy as np

from gwn_fast import _rans
from gwn_fast.coder._buffers import _to_numpy, as_float64, as_int32, resolve_threads

__all__ = [
    "CdfTables",
    "DEFAULT_PRECISION",
    "DEFAULT_SCALE_COUNT",
    "MAX_MEAN_STEPS",
    "MAX_PRECISION",
    "build_indexes",
    "log_scale_table",
]

MAX_PRECISION: int = _rans.MAX_PRECISION
MAX_MEAN_STEPS: int = _rans.MAX_MEAN_STEPS

# The codec default, recommended by issue 12's measurements (benchmarks/RESULTS.md): the
# finest grid and precision that keep the coder's speed goals with mean_steps = 8.
DEFAULT_SCALE_COUNT: int = 256
DEFAULT_PRECISION: int = 24


def _check_int(name: str, value, high: int, not_int_error: type[Exception]) -> int:
    """``value`` as an int in ``[1, high]``; ``not_int_error`` for a non-integer (bools
    included), ``ValueError`` outside the range, each naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise not_int_error(f"{name} must be an int in [1, {high}], got {value!r}")
    if not 1 <= value <= high:
        raise ValueError(f"{name} must be in [1, {high}], got {value}")
    return int(value)


def _check_precision(precision) -> int:
    return _check_int("precision", precision, MAX_PRECISION, TypeError)


def _check_mean_steps(mean_steps) -> int:
    return _check_int("mean_steps", mean_steps, MAX_MEAN_STEPS, ValueError)


def log_scale_table(num: int = None, low: float = 0.11, high: float = 256.0) -> np.ndarray:
    """``num`` scales log-spaced from ``low`` to ``high`` (both included), float64: the
    codec's scale grid (default ``DEFAULT_SCALE_COUNT`` in ``[0.11, 256]``).

    Index it nearest in log-scale (``build_indexes(scales, np.sqrt(t[:-1] * t[1:]))``, i.e.
    against the geometric midpoints) rather than rounding up: at the same count that loses
    about 4x less (see benchmarks/RESULTS.md)."""
    if num is None:
        num = DEFAULT_SCALE_COUNT
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive int, got {num!r}")
    low, high = float(low), float(high)
    if not (0.0 < low <= high and np.isfinite(high)):
        raise ValueError(f"low and high must satisfy 0 < low <= high < inf, got low={low}, high={high}")
    if num == 1:
        return np.array([low], dtype=np.float64)
    return np.exp(np.linspace(np.log(low), np.log(high), int(num)))


class CdfTables:
    """A set of T quantized CDFs, one per table index, for :func:`gwn_fast.coder.encode`.

    The arrays mean exactly what CompressAI's ``_quantized_cdf``, ``_cdf_length`` and
    ``_offset`` buffers mean, so an updated CompressAI entropy model's tables work
    unchanged (see :meth:`from_compressai`):

    - ``cdfs``: int32 ``[T, L]``; row ``t`` holds ``cdf_lengths[t]`` entries
      ``c[0] = 0 < c[1] < ... < c[len-1] = 1 << precision`` (later entries ignored).
    - ``cdf_lengths``: int32 ``[T]``, in ``[2, L]``.
    - ``offsets``: int32 ``[T]``: symbol ``s < len - 2`` codes the value ``offsets[t] + s``;
      symbol ``len - 2`` is the escape, used for any other int32 value.

    Storage is compact (ragged): the rows are kept back to back, once, in the C++ table
    set (``cdf_data``, row ``t`` at ``cdf_begin[t]``), so thousands of tables of very
    different lengths cost what their entries cost. The padded ``cdfs`` array is built
    only when asked for (then kept); :meth:`from_flat` builds tables from the compact
    layout directly.

    The tables are validated once, here (a bad table raises ``ValueError`` naming it and
    the fault), and kept in C++ ready for coding: no per-call copy or rebuild.
    :meth:`from_gaussian` and :meth:`from_pmfs` compute them in deterministic arithmetic,
    so they are bit-identical wherever they are built: a model can store its scale table
    and rebuild the tables at load instead of storing them.
    """

    def __init__(self, cdfs, cdf_lengths, offsets, precision: int = 16):
        precision = _check_precision(precision)
        cdfs = as_int32(cdfs, "cdfs")
        if cdfs.ndim != 2:
            raise ValueError(f"cdfs must be 2-D [T, L], got shape {tuple(cdfs.shape)}")
        cdf_lengths = as_int32(cdf_lengths, "cdf_lengths").reshape(-1)
        offsets = as_int32(offsets, "offsets").reshape(-1)
        self._set(_rans.TableSet(cdfs, cdf_lengths, offsets, precision), cdf_lengths, offsets)

    def _set(self, native, cdf_lengths, offsets) -> None:
        self._native = native
        self._cdf_lengths, self._offsets = cdf_lengths.copy(), offsets.copy()
        self._cdf_begin = np.zeros(cdf_lengths.size, dtype=np.int64)
        np.cumsum(cdf_lengths[:-1], out=self._cdf_begin[1:])
        self._cdfs = None  # the padded view, built on request
        for arr in (self._cdf_lengths, self._offsets, self._cdf_begin):
            arr.flags.writeable = False  # the C++ copy is what codes: keep the two in sync

    # -- constructors ---------------------------------------------------------------
    @classmethod
    def from_flat(cls, cdf_data, cdf_lengths, offsets, precision: int = 16) -> "CdfTables":
        """Tables from the compact layout: ``cdf_data`` (int32, 1-D) holds the rows back to
        back, row ``t`` being the ``cdf_lengths[t]`` entries after row ``t - 1``; the rows
        mean what ``cdfs`` rows mean. ``cdf_lengths.sum()`` must equal ``cdf_data.size``."""
        precision = _check_precision(precision)
        data = as_int32(cdf_data, "cdf_data")
        if data.ndim != 1:
            raise ValueError(f"cdf_data must be 1-D, got shape {tuple(data.shape)}")
        cdf_lengths = as_int32(cdf_lengths, "cdf_lengths").reshape(-1)
        offsets = as_int32(offsets, "offsets").reshape(-1)
        self = cls.__new__(cls)
        self._set(_rans.TableSet.from_flat(data, cdf_lengths, offsets, precision), cdf_lengths, offsets)
        return self

    @classmethod
    def from_gaussian(
        cls, scale_table, *, precision: int = 16, tail_mass: float = 1e-9, mean_steps: int = 1
    ) -> "CdfTables":
        """Discretized Gaussians, ``mean_steps`` per scale.

        ``mean_steps = 1`` (default): one zero-mean table per scale, CompressAI's
        GaussianConditional layout: support ``[-m, m]``, ``m = ceil(scale * q)`` with ``q``
        the normal quantile of ``tail_mass / 2``, offsets ``-m``, the tails in the escape
        symbol.

        ``mean_steps = J`` in ``[2, 64]``: ``S * J`` tables; table ``i * J + j`` is
        ``N(j / J, scale_i)`` on the unit bins of the integers ``-m .. m + 1`` (``m`` as
        above), offset ``-m``, both tails in the escape symbol. A value ``x`` with mean
        ``mu`` quantized to ``n + j / J`` (``n`` an integer) codes ``x - n`` with table
        ``i * J + j``.

        ``scale_table``: 1-D floats, each > 0. Computed in C++ with a deterministic erfc
        made of basic IEEE operations only (each bin's mass from the tail on the side away
        from the mean), so the same scales give bit-identical tables on every machine
        (CompressAI's float32 libm erfc does not).

        Raises ``ValueError`` for a bad ``precision``, ``tail_mass`` or ``mean_steps``
        (an int in ``[1, 64]``), or a scale whose table does not fit in ``1 << precision``.
        """
        precision = _check_precision(precision)
        mean_steps = _check_mean_steps(mean_steps)
        scales = as_float64(scale_table, "scale_table").reshape(-1)
        if scales.size == 0:
            raise ValueError("scale_table must not be empty")
        data, lengths, offsets = _rans.build_gaussian_tables(scales, precision, float(tail_mass), mean_steps)
        return cls.from_flat(data, lengths, offsets, precision)

    @classmethod
    def from_pmfs(cls, pmfs, offsets, *, precision: int = 16) -> "CdfTables":
        """Tables from probability mass functions.

        ``pmfs``: a sequence of 1-D arrays (lengths may differ) or a 2-D array ``[T, K]``;
        row ``t`` gives the probabilities of the values ``offsets[t], offsets[t] + 1, ...``.
        The escape symbol gets the missing mass ``max(0, 1 - sum)`` (at least one slot),
        rows are normalised, and every symbol gets at least one slot of ``1 << precision``.
        Quantization is integer arithmetic after one IEEE multiply per symbol, so the
        same float64 pmfs give the same tables everywhere.
        """
        precision = _check_precision(precision)
        if isinstance(pmfs, np.ndarray) or hasattr(pmfs, "detach"):
            rows = as_float64(pmfs, "pmfs")
            if rows.ndim != 2:
                raise ValueError(f"pmfs must be 2-D [T, K] or a sequence of 1-D arrays, got shape {rows.shape}")
            lengths = np.full(rows.shape[0], rows.shape[1], dtype=np.int32)
        else:
            items = [as_float64(p, f"pmfs[{i}]").reshape(-1) for i, p in enumerate(pmfs)]
            if not items:
                raise ValueError("pmfs must hold at least one pmf")
            width = max(p.size for p in items)
            rows = np.zeros((len(items), max(width, 1)), dtype=np.float64)
            for i, p in enumerate(items):
                rows[i, : p.size] = p
            lengths = np.array([p.size for p in items], dtype=np.int32)
        offsets = as_int32(np.asarray(offsets, dtype=np.int32) if isinstance(offsets, (list, tuple, int)) else offsets, "offsets").reshape(-1)
        if offsets.size != rows.shape[0]:
            raise ValueError(f"offsets must have one entry per pmf ({rows.shape[0]}), got {offsets.size}")
        data, cdf_lengths = _rans.build_pmf_tables(rows, lengths, precision)
        return cls.from_flat(data, cdf_lengths, offsets, precision)

    @classmethod
    def from_compressai(cls, entropy_model) -> "CdfTables":
        """The tables of an updated CompressAI ``EntropyBottleneck`` or ``GaussianConditional``."""
        for attr in ("_quantized_cdf", "_cdf_length", "_offset"):
            if not hasattr(entropy_model, attr):
                raise TypeError(f"entropy_model has no {attr}: not a CompressAI EntropyModel")
        if entropy_model._quantized_cdf.numel() == 0:
            raise RuntimeError("entropy_model has no tables yet: call its update() first")
        return cls(
            entropy_model._quantized_cdf.cpu().int(),
            entropy_model._cdf_length.cpu().int(),
            entropy_model._offset.cpu().int(),
            precision=int(entropy_model.entropy_coder_precision),
        )

    # -- views ----------------------------------------------------------------------
    @property
    def cdfs(self) -> np.ndarray:
        """int32 ``[T, L]`` (read-only), ``L = max(cdf_lengths)``, rows padded with zeros.

        Built from the compact rows on first access and kept: ``T * L * 4`` bytes, which
        for thousands of tables of very different lengths is far more than the tables
        (``nbytes``). Prefer ``cdf_data`` / ``cdf_begin`` where a flat form will do."""
        if self._cdfs is None:
            lengths = self._cdf_lengths.astype(np.int64)
            width = int(lengths.max())
            out = np.zeros((lengths.size, width), dtype=np.int32)
            cols = np.arange(lengths.sum()) - np.repeat(self._cdf_begin, lengths)
            out[np.repeat(np.arange(lengths.size), lengths), cols] = self.cdf_data
            out.flags.writeable = False
            self._cdfs = out
        return self._cdfs

    @property
    def cdf_data(self) -> np.ndarray:
        """int32 ``[sum(cdf_lengths)]`` (read-only): the rows back to back, as coded (a view
        of the C++ tables, no copy)."""
        return self._native.cdf_data

    @property
    def cdf_begin(self) -> np.ndarray:
        """int64 ``[T]`` (read-only): row ``t`` is ``cdf_data[cdf_begin[t] : cdf_begin[t] +
        cdf_lengths[t]]``."""
        return self._cdf_begin

    @property
    def nbytes(self) -> int:
        """Bytes these tables hold: the C++ rows and decode lookup, lengths, offsets and row
        starts (plus the padded ``cdfs`` array if it was asked for)."""
        n = self._native.nbytes + self._cdf_lengths.nbytes + self._offsets.nbytes + self._cdf_begin.nbytes
        return n + (self._cdfs.nbytes if self._cdfs is not None else 0)

    @property
    def cdf_lengths(self) -> np.ndarray:
        """int32 ``[T]`` (read-only)."""
        return self._cdf_lengths

    @property
    def offsets(self) -> np.ndarray:
        """int32 ``[T]`` (read-only)."""
        return self._offsets

    @property
    def precision(self) -> int:
        return self._native.precision

    @property
    def num_tables(self) -> int:
        return self._native.num_tables

    @property
    def fingerprint(self) -> int:
        """64-bit hash of the tables; streams carry a checksum seeded with it."""
        return self._native.fingerprint

    def __len__(self) -> int:
        return self.num_tables

    def __eq__(self, other) -> bool:
        if not isinstance(other, CdfTables):
            return NotImplemented
        return (
            self.precision == other.precision
            and np.array_equal(self._cdf_lengths, other._cdf_lengths)
            and np.array_equal(self._offsets, other._offsets)
            and np.array_equal(self.cdf_data, other.cdf_data)
        )

    __hash__ = None

    def __repr__(self) -> str:
        return (
            f"CdfTables(num_tables={self.num_tables}, max_length={int(self._cdf_lengths.max())}, "
            f"precision={self.precision}, fingerprint={self.fingerprint:#018x})"
        )


# -- scale -> table index ---------------------------------------------------------------
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _scales_array(scales) -> tuple[np.ndarray, str]:
    """``scales`` as a numpy array plus the name of the dtype its comparisons use.
    bfloat16 tensors (which numpy cannot hold) come back widened to float32, exactly."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(scales, torch.Tensor):
        if not scales.is_floating_point():
            raise TypeError(f"scales must be a floating-point array or tensor, got dtype {scales.dtype}")
        if scales.dtype == torch.bfloat16:
            if scales.device.type != "cpu":
                raise ValueError(f"scales must be a CPU tensor, got a tensor on {scales.device}; call .cpu() first")
            return scales.detach().float().numpy(), "bfloat16"
    arr = _to_numpy(scales, "scales")
    if arr.dtype.kind != "f" or arr.dtype.newbyteorder("=") not in _FLOAT_DTYPES:
        raise TypeError(f"scales must have dtype float16, float32 or float64 (or bfloat16), got {arr.dtype}")
    return arr, arr.dtype.newbyteorder("=").name


def _table_array(table) -> np.ndarray:
    """``table`` (1-D floats; a list is fine: it is small) as float64, exactly."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(table, torch.Tensor):
        if not table.is_floating_point():
            raise TypeError(f"table must be a floating-point array or tensor, got dtype {table.dtype}")
        if table.device.type != "cpu":
            raise ValueError(f"table must be a CPU tensor, got a tensor on {table.device}; call .cpu() first")
        arr = table.detach().double().numpy()
    elif isinstance(table, (list, tuple)):
        try:
            arr = np.asarray(table, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"table must be a sequence of floats: {exc}") from None
    elif isinstance(table, np.ndarray):
        if table.dtype.kind != "f" or table.dtype.newbyteorder("=") not in _FLOAT_DTYPES:
            raise TypeError(f"table must have dtype float16, float32 or float64, got {table.dtype}")
        arr = table.astype(np.float64)
    else:
        raise TypeError(f"table must be a numpy array, a CPU torch tensor or a list of floats, got {type(table).__name__}")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"table must be a non-empty 1-D array, got shape {tuple(arr.shape)}")
    if np.isnan(arr).any():
        raise ValueError(f"table must not contain NaN (entry {int(np.flatnonzero(np.isnan(arr))[0])} is NaN)")
    return arr


def _table_in(table: np.ndarray, compare: str) -> np.ndarray:
    """The float64 table rounded to the comparison dtype as ``tensor.to(dtype)`` does it
    (torch rounds float64 to float16/bfloat16 through float32, so that is done here too),
    in the dtype the C++ core reads (float16/bfloat16 values widened to float32 exactly)."""
    with np.errstate(over="ignore"):
        if compare == "float64":
            return table
        if compare == "float32":
            return table.astype(np.float32)
        if compare == "float16":
            return table.astype(np.float32).astype(np.float16).astype(np.float32)
    import torch  # bfloat16: the scales were a tensor, so torch is there

    return torch.from_numpy(table).to(torch.bfloat16).float().numpy()


def build_indexes(scales, table, threads: int | None = 1) -> np.ndarray:
    """Table index of each scale, with CompressAI's ``build_indexes`` semantics.

    The index of ``s`` is ``(T - 1) - #{i < T - 1 : s <= table[i]}``: for an ascending
    table the smallest ``i`` with ``s <= table[i]``, else ``T - 1`` (the last entry is
    never compared); a NaN scale gets ``T - 1``. The result is bit-identical to
    :func:`gwn_fast.functional.build_indexes`, and to CompressAI's ``GaussianConditional
    .build_indexes`` given its ``scale_table`` (its lower bound on the scales changes no
    index while it is at most ``scale_table[0]``, as by default): comparisons are exact,
    in the scales' dtype, with the table rounded to that dtype.

    Any table order is accepted and equally fast: the index counts entries, so the C++
    core sorts the compared entries once, then locates each scale by a lookup on its
    bits plus exact comparisons (float32/float64 natively; float16 and bfloat16 scales
    are compared exactly through float32).

    Args:
        scales: floating numpy array or CPU torch tensor, any shape, contiguous or not
            (float16, float32, float64; bfloat16 tensors).
        table: non-empty 1-D floats without NaN (numpy array, CPU tensor or list).
        threads: ranges processed at once (default 1; ``None``: all cores). The result
            does not depend on it.

    Returns:
        int32 numpy array shaped like ``scales``, values in ``[0, T)``.
    """
    arr, compare = _scales_array(scales)
    tab = _table_in(_table_array(table), compare)
    threads = resolve_threads(threads)
    if arr.dtype != tab.dtype:  # float16 (or non-native byte order): widen exactly
        arr = arr.astype(tab.dtype)
    # not np.ascontiguousarray: it turns 0-d arrays into 1-d ones
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    return _rans.build_indexes(arr, np.ascontiguousarray(tab), threads)
