"""Gaussian entropy coding of integer latents, with the CDF tables kept in buffers.

:class:`GaussianCoder` is the part of an entropy model that turns integer latents plus
predicted means/scales into bytes and back. The tables (zero-mean discretized Gaussians,
one per entry of a scale table) are built by the coder's deterministic constructor at
:meth:`GaussianCoder.update` and stored as int32 buffers, so they travel in the
``state_dict`` and a decoder never rebuilds them from floats.

Two layouts, chosen by ``mean_steps`` (``J``):

- ``J = 1`` (CompressAI's layout): one zero-mean table per scale. The encoder codes
  ``k = floor(y - mu + 0.5)`` with the table of ``scale``; the decoder recovers
  ``y = ceil(k + mu - 0.5)`` (a bijection for a fixed mean; rounding half toward zero or
  to even would map two integers to one ``k`` when ``mu`` ends in .5). The coded pmf of
  ``y`` depends on ``mu`` only through that rounding, so it is the likelihood with the
  residual binned (``round_residual=True``).
- ``J > 1``: the mean is quantized to ``mu_q = floor(J mu + 1/2) / J`` (straight-through
  in training, :meth:`GaussianCoder.quantize_means`) and each scale has ``J`` tables, one
  per fraction ``j / J`` of the mean: table ``(i, j)`` holds the mass of the integers
  under ``N(j / J, scale_i)`` on their unit bins. With ``n = floor(mu_q)`` and
  ``j = J (mu_q - n)`` the encoder codes ``k = y - n`` with table ``i J + j``. The coded pmf
  of integer ``y`` is then exactly ``Phi((y - mu_q + 1/2)/s) - Phi((y - mu_q - 1/2)/s)``,
  the likelihood at the unrounded residual ``y - mu_q`` (``round_residual=False``), which
  sums to 1 over the integers and, unlike ``J = 1``, can put equal mass on two
  neighbouring integers (``mu_q = -1/2``): a binary latent element costs 1 bit, not ~1.5.
"""

from __future__ import annotations

import torch
from torch import nn

from gwn_fast import functional as F
from gwn_fast.coder import DEFAULT_PRECISION, DEFAULT_SCALE_COUNT, CdfTables, build_indexes, log_scale_table
from gwn_fast.coder.tables import _check_mean_steps, _check_precision

__all__ = ["GaussianCoder", "default_scale_table"]


def default_scale_table(num: int = DEFAULT_SCALE_COUNT, low: float = 0.11, high: float = 256.0) -> torch.Tensor:
    """Log-spaced scales, float64 ``[num]`` (default: the coder's ``DEFAULT_SCALE_COUNT``
    in [0.11, 256]; ``num=64`` is CompressAI's table)."""
    return torch.from_numpy(log_scale_table(num, low, high))


class GaussianCoder(nn.Module):
    """Scale-indexed Gaussian tables, built deterministically, plus the symbol mapping.

    Args:
        scale_table: increasing positive scales (default: ``DEFAULT_SCALE_COUNT`` = 256
            log-spaced in [0.11, 256]).
        precision: bits of the quantized CDFs (1..24; default ``DEFAULT_PRECISION`` = 24).
        tail_mass: probability mass left to the escape symbol.
        mean_steps: ``J``, the tables per scale, one per fraction ``j / J`` of the mean
            (see the module docstring); 1 is CompressAI's layout.

    State: the buffer ``scale_table`` (float64 ``[S]``) and ``tables_built`` (a flag). The
    ``S J`` tables themselves are not stored: :meth:`update` builds them with the C++
    coder's IEEE-only erfc (:meth:`gwn_fast.coder.CdfTables.from_gaussian` with
    ``mean_steps``), which gives bit-identical tables on every machine, so a state dict
    stays small (a few kB instead of 5 MB at 256 scales x 8 mean steps) and a decoder
    rebuilds exactly the encoder's tables from it. Checkpoints that still carry
    CompressAI-style ``_quantized_cdf`` buffers load; those buffers are dropped.
    """

    def __init__(self, scale_table=None, precision: int = DEFAULT_PRECISION, tail_mass: float = 1e-9, mean_steps: int = 1):
        super().__init__()
        self.mean_steps = _check_mean_steps(mean_steps)
        table = default_scale_table() if scale_table is None else torch.as_tensor(scale_table, dtype=torch.float64)
        if table.ndim != 1 or table.numel() == 0 or not bool((table > 0).all()) or not bool((table[1:] > table[:-1]).all()):
            raise ValueError("scale_table must be a non-empty, strictly increasing 1-D list of positive scales")
        self.precision = _check_precision(precision)
        self.tail_mass = float(tail_mass)
        self.register_buffer("scale_table", table.clone())
        self.register_buffer("tables_built", torch.zeros((), dtype=torch.uint8))
        self._tables_cache: tuple | None = None

    # -- tables ------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return bool(self.tables_built)

    def _current_tables(self, force: bool = False) -> bool:
        """Build the tables unless the cached ones match the scale table and settings (or
        ``force``). Returns whether it built them."""
        t = self.scale_table
        key = (t.data_ptr(), t._version, self.precision, self.tail_mass, self.mean_steps)
        if not force and self._tables_cache is not None and self._tables_cache[0] == key:
            return False
        self._tables_cache = (key, self._build())
        return True

    def _build(self) -> CdfTables:
        return CdfTables.from_gaussian(
            self.scale_table.detach().cpu().numpy(), precision=self.precision, tail_mass=self.tail_mass,
            mean_steps=self.mean_steps,
        )

    def update(self, force: bool = False) -> bool:
        """Build the tables (deterministically) if missing, stale or ``force``. Returns whether it did."""
        built = self._current_tables(force=force or not self.ready)
        self.tables_built.fill_(1)
        return built

    def tables(self) -> CdfTables:
        """The coder's tables (built at :meth:`update`, or on first use after loading a
        state dict whose tables were built; rebuilt if the scale table changed)."""
        if not self.ready:
            raise RuntimeError("the entropy model has no CDF tables yet: call codec.update() before compress()/decompress()")
        self._current_tables()
        return self._tables_cache[1]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A scale table of another size; tables stored by earlier versions (rebuilt now).
        key = prefix + "scale_table"
        if key in state_dict:
            self.scale_table = torch.empty_like(self.scale_table).resize_(state_dict[key].shape)
        legacy = [prefix + n for n in ("_quantized_cdf", "_cdf_length", "_offset")]
        if any(k in state_dict for k in legacy):
            built = state_dict[legacy[0]].numel() > 0 if legacy[0] in state_dict else False
            for k in legacy:
                state_dict.pop(k, None)
            state_dict.setdefault(prefix + "tables_built", torch.tensor(int(built), dtype=torch.uint8))
        self._tables_cache = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- means -------------------------------------------------------------------------
    @property
    def round_residual(self) -> bool:
        """Whether the likelihood bins the residual (``J = 1``) or takes the quantized
        mean's exact bin mass (``J > 1``); pass it to :func:`gwn_fast.functional.gaussian_rate`."""
        return self.mean_steps == 1

    def quantize_means(self, means: torch.Tensor) -> torch.Tensor:
        """``floor(J mu + 1/2) / J`` with a straight-through gradient (``J = 1``: ``means``
        unchanged, the residual is binned instead). Shape and dtype of ``means``."""
        if self.mean_steps == 1:
            return means
        J = self.mean_steps
        return means + (torch.floor(means.detach() * J + 0.5) / J - means.detach())

    # -- symbols -----------------------------------------------------------------------
    def indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """Table index per element: the table nearest in log-scale.

        CompressAI takes the smallest ``i`` with ``scale <= scale_table[i]``, i.e. rounds
        every scale *up* to the next entry (up to 13% wider with 64 entries), which costs
        about 2-3% of the rate at low bit rates. Searching the geometric midpoints of the
        table instead picks the nearest entry at no extra cost.

        CPU tensors take the C++ coder's :func:`gwn_fast.coder.build_indexes` (same
        rule, same bits, several times faster than the comparison loop); other devices
        :func:`gwn_fast.functional.build_indexes`. Returns an int32 tensor on the scales'
        device, shaped like ``scales``.
        """
        if scales.device.type == "cpu" and scales.is_floating_point() and not torch.compiler.is_compiling():
            return torch.from_numpy(build_indexes(scales, self._boundaries.cpu()))
        return F.build_indexes(scales, self._boundaries.to(scales.device, scales.dtype))

    @property
    def _boundaries(self) -> torch.Tensor:
        t = self.scale_table
        return torch.cat([torch.sqrt(t[:-1] * t[1:]), t[-1:]])

    @staticmethod
    def symbols(y: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """``k = floor(y - mu + 0.5)`` as int32 (``y`` integer-valued)."""
        return torch.floor(y.double() - means.double() + 0.5).to(torch.int32)

    @staticmethod
    def values(k: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`symbols`: ``y = ceil(k + mu - 0.5)`` (float64)."""
        return torch.ceil(k.double() + means.double() - 0.5)

    # -- the integer coding path ------------------------------------------------------
    def integer_offsets(self, scales: torch.Tensor, means: torch.Tensor, fraction_bits: int = 12):
        """``(n, table)`` of each element from fixed-point ``scales`` and ``means``
        (integer-valued float64, units of ``2**-fraction_bits``, as
        :class:`~gwn_fast.entropy_models.integer.IntegerEntropyParameters` gives them):
        the integer latent ``y`` is coded as the symbol ``y - n`` with table ``table``.

        Integer arithmetic only (exact on any device):

        - table index: the number of log-midpoints of the scale table (as fixed point,
          ``floor(b * 2**F)``) below the scale, i.e. the nearest table entry in
          log-scale, as :meth:`indexes` picks it;
        - ``J = 1``: ``n = ceil(mu - 1/2)`` (so ``y - n = floor(y - mu + 1/2)``, the
          binned residual); ``J > 1``: ``J mu_q = floor(J mu + 1/2)``, ``n = floor(mu_q)``
          and table ``i J + j`` with ``j = J mu_q - J n``.

        Returns int64 ``n`` and int32 ``table``, shaped like ``means``, on its device.
        """
        one = float(1 << fraction_bits)
        thresholds = self._thresholds(scales.device, fraction_bits)
        index = torch.searchsorted(thresholds, scales.to(torch.float64).contiguous(), right=False)
        m = means.to(torch.float64)
        if self.mean_steps == 1:
            n = -torch.floor((one / 2 - m) / one)
            return n.to(torch.int64), index.to(torch.int32)
        J = self.mean_steps
        steps = torch.floor((m * J + one / 2) / one).to(torch.int64)
        n = torch.div(steps, J, rounding_mode="floor")
        return n, (index * J + (steps - n * J)).to(torch.int32)

    def _thresholds(self, device, fraction_bits: int) -> torch.Tensor:
        """``floor(b * 2**F)`` of the log-midpoints ``b`` (float64 on ``device``), cached
        until the scale table changes."""
        t = self.scale_table
        key = (torch.device(device), fraction_bits, t.data_ptr(), t._version)
        cached = self.__dict__.get("_thresholds_cache")
        if cached is None or cached[0] != key:
            value = torch.floor(self._boundaries[:-1].cpu() * float(1 << fraction_bits)).to(device)
            cached = self.__dict__["_thresholds_cache"] = (key, value)
        return cached[1]

    @staticmethod
    def integer_symbols(y: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """``y - n`` as int32 (``y`` integer-valued); ``ValueError`` outside int32."""
        d = y.to(torch.float64) - n.to(torch.float64)
        if not bool(torch.isfinite(d).all()) or bool((d.abs() > 2**31 - 1).any()):
            worst = float(d.abs().nan_to_num(nan=float("inf")).max())
            raise ValueError(
                f"a latent value minus its predicted mean is {worst:.3g}, outside the coder's int32 range: "
                "the input is far outside what the codec was trained on (scale it as at training time)"
            )
        return d.to(torch.int32)
