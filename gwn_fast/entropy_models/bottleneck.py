"""CompressAI's ``EntropyBottleneck`` laid on the integer grid, for latents already quantized."""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck

from gwn_fast.functional import RATE_GRADS

__all__ = ["IntegerEntropyBottleneck"]


class IntegerEntropyBottleneck(EntropyBottleneck):
    """CompressAI's ``EntropyBottleneck`` for latents that are already integers.

    CompressAI codes ``round(x - median)`` with tables of the density sampled at
    ``median + k``: for a fractional median those points are not the integers a
    quantized latent takes, so the coded pmf would not be the likelihood the rate
    estimate uses (and ``round(y - median)`` is not even injective when the median ends
    in .5). Here the median is rounded (``floor(m + 0.5)``) when the tables are built, so
    table row ``c`` holds the density's mass on the integer bins ``[v - 0.5, v + 0.5]``
    of ``v = med_c - minima_c, ..., med_c + maxima_c`` (plus the escape), exactly the
    likelihood :meth:`likelihood` gives an integer ``v``. Everything else is CompressAI's:
    the parameters, the quantiles and their auxiliary :meth:`loss`, the buffers
    ``_quantized_cdf``, ``_cdf_length`` and ``_offset`` (``-minima``, relative to the
    median, with CompressAI's meaning), plus one buffer ``_medians`` (int32 ``[C]``, the
    integer medians the tables were built around; the value ``v`` of channel ``c`` is
    coded as the symbol ``v - _medians[c]``), so CompressAI's own ``compress`` /
    ``decompress`` round-trip integer tensors exactly too.
    """

    def __init__(self, channels: int, *args, **kwargs):
        super().__init__(channels, *args, **kwargs)
        self.register_buffer("_medians", torch.zeros(self.channels, dtype=torch.int32))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Tables from a checkpoint differ in size from the empty ones; resized here (not
        # only by CompressionModel.load_state_dict) so any parent module, and keys renamed
        # by a parent's load hook, load them.
        for name in ("_quantized_cdf", "_offset", "_cdf_length", "_medians"):
            key = prefix + name
            if key in state_dict and getattr(self, name).shape != state_dict[key].shape:
                setattr(self, name, torch.empty_like(getattr(self, name)).resize_(state_dict[key].shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def ready(self) -> bool:
        return self._offset.numel() > 0

    def _get_medians(self) -> torch.Tensor:
        # [C, 1, 1] like CompressAI's; the integer medians of the tables once built.
        if self.ready:
            return self._medians.to(self.quantiles.dtype).view(-1, 1, 1)
        return torch.floor(self.quantiles[:, :, 1:2].detach() + 0.5)

    @torch.no_grad()
    def update(self, force: bool = False, update_quantiles: bool = False) -> bool:
        """Build the tables (CompressAI's procedure, about the rounded medians)."""
        if self.ready and not force:
            return False
        if update_quantiles:
            self._update_quantiles()
        q = self.quantiles.detach()[:, 0, :]
        medians = torch.floor(q[:, 1] + 0.5)
        minima = torch.clamp(torch.ceil(medians - q[:, 0]).int(), min=0)
        maxima = torch.clamp(torch.ceil(q[:, 2] - medians).int(), min=0)
        pmf_start = medians - minima  # integer-valued
        pmf_length = maxima + minima + 1
        max_length = int(pmf_length.max().item())
        samples = torch.arange(max_length, device=q.device, dtype=q.dtype)[None, :] + pmf_start[:, None]
        pmf, lower, upper = self._likelihood(samples[:, None, :], stop_gradient=True)
        pmf = pmf[:, 0, :]
        tail_mass = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
        self._quantized_cdf = self._pmf_to_cdf(pmf, tail_mass, pmf_length, max_length)
        self._cdf_length = (pmf_length + 2).int()
        self._offset = (-minima).int()
        self._medians = medians.int()
        return True

    def _likelihood(self, inputs: torch.Tensor, stop_gradient: bool = False):
        # CompressAI's, with tensorflow-compression's reflection: the difference of two
        # sigmoids is taken on the side where they are small, so the upper tail keeps its
        # float32 precision (sigmoid(u) - sigmoid(l) rounds to 0 once both are near 1).
        lower = self._logits_cumulative(inputs - 0.5, stop_gradient=stop_gradient)
        upper = self._logits_cumulative(inputs + 0.5, stop_gradient=stop_gradient)
        sign = torch.where(lower + upper > 0, -1.0, 1.0).to(lower.dtype).detach()
        likelihood = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return likelihood, lower, upper

    def likelihood(self, y: torch.Tensor, latent: torch.Tensor | None = None, rate_grad: str = "ste") -> torch.Tensor:
        """Bounded likelihood of integer-valued ``y`` ``[N, C, ...]`` (quantized already: no
        noise, no rounding), shaped like ``y``; differentiable in ``y`` and the density's
        parameters (not the quantiles).

        ``rate_grad`` and ``latent`` (the unrounded latent ``y`` rounds, shaped like ``y``)
        as in :func:`gwn_fast.functional.gaussian_likelihood`: ``"smooth"`` keeps the exact
        value at ``y`` and the parameters' exact gradients, and gives ``latent`` the
        gradient of the continuous bin mass ``P([u - 1/2, u + 1/2])`` at ``u``; ``"noise"``
        evaluates everything at ``latent + U(-1/2, 1/2)``."""
        if y.ndim < 2 or y.shape[1] != self.channels:
            raise ValueError(f"expected [N, {self.channels}, ...], got {tuple(y.shape)}")
        if rate_grad not in RATE_GRADS:
            raise ValueError(f"rate_grad must be one of {RATE_GRADS}, got {rate_grad!r}")
        if latent is not None and latent.shape != y.shape:
            raise ValueError(f"latent must have the shape of y {tuple(y.shape)}, got {tuple(latent.shape)}")
        if latent is None or rate_grad == "ste":
            return self._bounded(y)
        if rate_grad == "noise":
            return self._bounded(latent + torch.empty_like(latent).uniform_(-0.5, 0.5))
        exact = self._bounded(y.detach())
        log_continuous = torch.log(self._bounded(latent, stop_gradient=True))
        return exact * torch.exp(log_continuous - log_continuous.detach())

    def _bounded(self, y: torch.Tensor, stop_gradient: bool = False) -> torch.Tensor:
        perm = (1, 0, *range(2, y.ndim))
        values = y.permute(*perm).reshape(self.channels, 1, -1)
        lik, _, _ = self._likelihood(values.to(self.quantiles.dtype), stop_gradient=stop_gradient)
        if self.use_likelihood_bound:
            lik = self.likelihood_lower_bound(lik)
        shape = (self.channels, y.shape[0], *y.shape[2:])
        return lik.reshape(shape).permute(*perm)
