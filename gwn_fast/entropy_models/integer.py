"""Integer entropy parameters: the coding path that gives the same bits on every device.

Training runs :class:`~gwn_fast.entropy_models.parameters.LatentEntropyParameters` in
float. For coding, :meth:`IntegerEntropyParameters.quantize_from` derives an exact integer
version of it (Ballé, Johnston & Minnen, "Integer networks for data compression with
latent-variable models", ICLR 2019), which both the encoder and the decoder run.

Fixed point (``FRACTION_BITS = 12``):

- every activation is an integer ``a`` standing for ``a / 2**12``, clamped to
  ``|a| <= ACTIVATION_LIMIT = 2**24`` (the real value to ``+-4096``); the integer latents
  enter as ``clamp(y, -4096, 4096) * 2**12``;
- each output channel ``o`` of a convolution has integer weights
  ``w_q = round(w * 2**f_o)`` with ``|w_q| < 2**B`` (``B <= 16`` chosen from the fan-in so
  that ``fan_in * 2**B * 2**24 <= 2**52``) and an integer bias
  ``round(b * 2**(f_o + 12))``; the accumulator ``sum(w_q * a) + b_q`` then stays below
  ``2**53`` in every partial sum, and is brought back to activation units by
  ``floor((acc + 2**(f_o - 1)) / 2**f_o)``;
- ``LeakyReLU(s)`` is ``floor(a * round(s * 2**16) / 2**16)`` on negatives; ``ELU`` a
  lookup table of ``round(expm1(-k / 2**12) * 2**12)`` (derived identically on every machine, see :func:`elu_table`).

Every tensor of the integer path is an integer-valued float64 tensor whose partial sums
are integers below ``2**53``: float64 adds and multiplies them exactly, so any BLAS,
thread count, summation order or device (CPU, CUDA; cuDNN is switched off for these
convolutions so no FFT or Winograd algorithm is picked) gives the same bits.
Quantization is deterministic too (``frexp``, multiplications by powers of two and
rounding), so the same float weights give the same integer network everywhere.

The outputs are a scale and a mean in activation units; :class:`~gwn_fast.entropy_models.gaussian.GaussianCoder`
turns them into a table index and an integer offset by integer comparisons and floors.
"""

from __future__ import annotations

import math

import torch
from compressai.layers import MaskedConv2d
from torch import nn

from gwn_fast.entropy_models.parameters import LatentEntropyParameters, checkerboard_anchor_mask

__all__ = ["ACTIVATION_LIMIT", "FRACTION_BITS", "IntegerConv2d", "IntegerEntropyParameters", "LATENT_LIMIT"]

FRACTION_BITS = 12
ONE = float(1 << FRACTION_BITS)
ACTIVATION_LIMIT = float(1 << 24)
LATENT_LIMIT = 4096.0  # integer latents enter the networks clamped to this magnitude
_SUM_BITS = 52  # every accumulator stays below 2**52 (plus a bias below 2**51)
_MAX_WEIGHT_BITS = 16
_MAX_SHIFT = 28
_SLOPE_BITS = 16
ELU_TABLE_SIZE = 16 << FRACTION_BITS  # expm1(-16) * 4096 rounds to -4096: beyond it, constant


def _float64_cache(module: nn.Module, device, names: tuple[str, ...], make) -> tuple:
    """``make()``'s float64 copies of the buffers ``names`` on ``device``, kept until a
    buffer changes (update(), load_state_dict) so the per-position decode loop does not
    convert them again."""
    key = (torch.device(device), tuple((getattr(module, n).data_ptr(), getattr(module, n)._version) for n in names))
    cached = module.__dict__.get("_f64")
    if cached is None or cached[0] != key:
        cached = (key, make())
        module.__dict__["_f64"] = cached
    return cached[1]


def _clamp(a: torch.Tensor) -> torch.Tensor:
    return a.clamp_(-ACTIVATION_LIMIT, ACTIVATION_LIMIT)


def _integer_convolution(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding, groups: int) -> torch.Tensor:
    # cuDNN may pick FFT/Winograd algorithms, which are not exact; the native path is
    # im2col + GEMM, exact on integers whose partial sums (bias included, in any order)
    # stay below 2**53.
    with torch.backends.cudnn.flags(enabled=False):
        return nn.functional.conv2d(a, weight, bias, 1, padding, 1, groups)


class IntegerConv2d(nn.Module):
    """A stride-1 ``Conv2d`` in fixed point (see the module docstring).

    Buffers: ``weight`` int32 ``[O, I/groups, k, k]``, ``shift`` int32 ``[O]`` (``f_o``),
    ``bias`` int64 ``[O]``. ``forward``: activations ``[N, I, H, W]`` (integer-valued
    float64) -> ``[N, O, H', W']`` (same kind, clamped)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
            raise TypeError("the integer path supports stride-1, undilated, zero-padded convolutions only")
        self.padding = conv.padding
        self.groups = conv.groups
        self.register_buffer("weight", torch.zeros(conv.weight.shape, dtype=torch.int32))
        self.register_buffer("shift", torch.zeros(conv.out_channels, dtype=torch.int32))
        self.register_buffer("bias", torch.zeros(conv.out_channels, dtype=torch.int64))

    @torch.no_grad()
    def quantize_from(self, conv: nn.Conv2d) -> None:
        w = conv.weight.detach().to("cpu", torch.float64)
        if isinstance(conv, MaskedConv2d):
            w = w * conv.mask.detach().to("cpu", torch.float64)
        if not bool(torch.isfinite(w).all()):
            raise ValueError("a convolution of the entropy parameters has non-finite weights")
        fan_in = w[0].numel()
        bits = min(_MAX_WEIGHT_BITS, _SUM_BITS - 24 - math.ceil(math.log2(fan_in)))
        peak = w.abs().flatten(1).amax(1)
        # f_o: the largest shift with |w| * 2**f_o < 2**bits (frexp: exact exponent).
        _, exponent = torch.frexp(peak)
        shift = (bits - exponent.to(torch.int64)).clamp(max=_MAX_SHIFT)
        shift = torch.where(peak > 0, shift, torch.zeros_like(shift))
        if bool((shift < 0).any()):
            raise ValueError(f"an entropy-parameter weight of magnitude {float(peak.max()):.3g} is too large for the integer path")
        wq = torch.round(torch.ldexp(w, shift.view(-1, *([1] * (w.ndim - 1))).double()))
        b = conv.bias.detach().to("cpu", torch.float64) if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
        bq = torch.round(torch.ldexp(b, (shift + FRACTION_BITS).double()))
        if not bool(torch.isfinite(bq).all()) or bool((bq.abs() >= 2.0**51).any()):
            raise ValueError(f"an entropy-parameter bias of magnitude {float(b.abs().max()):.3g} is too large for the integer path")
        self.weight.copy_(wq.to(torch.int32))
        self.shift.copy_(shift.to(torch.int32))
        self.bias.copy_(bq.to(torch.int64))

    def _prepared(self, device):
        def make():
            scale = torch.ldexp(torch.ones(self.shift.shape, dtype=torch.float64), self.shift.to(torch.float64))
            half = torch.where(self.shift > 0, scale / 2, torch.zeros_like(scale))
            # acc + bias + half in one add: bias + half is an integer plus 2**(f-1), exact
            return (
                self.weight.to(device, torch.float64),
                (self.bias.to(torch.float64) + half).to(device),
                (1.0 / scale).to(device).view(1, -1, 1, 1),  # a power of two: multiplying is exact
            )

        return _float64_cache(self, device, ("weight", "shift", "bias"), make)

    def forward(self, a: torch.Tensor, padding=None) -> torch.Tensor:
        """``floor((conv(a, w_q) + b_q + 2**(f-1)) / 2**f)``, clamped (exact in float64)."""
        pad = self.padding if padding is None else padding
        weight, offset, inverse_scale = self._prepared(a.device)
        acc = _integer_convolution(a, weight, offset, pad, self.groups)
        return _clamp(acc.mul_(inverse_scale).floor_())


class _IntegerSequential(nn.Module):
    """A float ``nn.Sequential`` of Conv2d / ELU / LeakyReLU, in fixed point."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        self.layers = nn.ModuleList()
        self.kinds: list[tuple[str, int]] = []
        for layer in net:
            if isinstance(layer, nn.Conv2d):
                self.layers.append(IntegerConv2d(layer))
                self.kinds.append(("conv", len(self.layers) - 1))
            elif isinstance(layer, nn.ELU):
                if layer.alpha != 1.0:
                    raise TypeError(f"the integer path supports ELU(alpha=1) only, got alpha={layer.alpha}")
                self.kinds.append(("elu", 0))
            elif isinstance(layer, nn.LeakyReLU):
                self.kinds.append(("leaky", round(layer.negative_slope * (1 << _SLOPE_BITS))))
            else:
                raise TypeError(f"the integer path supports Conv2d, ELU and LeakyReLU layers, not {type(layer).__name__}")

    def quantize_from(self, net: nn.Sequential) -> None:
        convs = [m for m in net if isinstance(m, nn.Conv2d)]
        for q, conv in zip(self.layers, convs):
            q.quantize_from(conv)

    def forward(self, a: torch.Tensor, elu_table: torch.Tensor) -> torch.Tensor:
        for kind, arg in self.kinds:
            if kind == "conv":
                a = self.layers[arg](a)
            elif kind == "elu":
                # table[0] = 0, so positives add 0 to themselves and negatives look up
                index = a.neg().clamp_(0, ELU_TABLE_SIZE - 1).long()
                a = elu_table[index].add_(a.clamp(min=0))
            else:
                # floor(a * P / 2**16) on negatives: P / 2**16 is exact, and so is the product
                a = a.clamp(max=0).mul_(arg / float(1 << _SLOPE_BITS)).floor_().add_(a.clamp(min=0))
        return a


_ELU_TABLE: torch.Tensor | None = None


def elu_table() -> torch.Tensor:
    """int32 ``[ELU_TABLE_SIZE]``: ``round(expm1(-k / 2**12) * 2**12)``, the same on every
    machine: float64 ``expm1`` is within a few ulps everywhere, and entries whose value
    lies within ``1e-6`` of a rounding tie (none does at this size) are recomputed
    exactly with :mod:`decimal`, so no platform difference can change a rounding."""
    global _ELU_TABLE
    if _ELU_TABLE is None:
        k = torch.arange(ELU_TABLE_SIZE, dtype=torch.float64)
        v = torch.expm1(-k / ONE) * ONE
        table = torch.round(v)
        near_tie = ((v - torch.floor(v) - 0.5).abs() < 1e-6).nonzero().flatten().tolist()
        if near_tie:
            import decimal

            ctx = decimal.Context(prec=40)
            for i in near_tie:
                exact = (ctx.exp(decimal.Decimal(-i) / int(ONE)) - 1) * int(ONE)
                table[i] = float(exact.to_integral_value(rounding=decimal.ROUND_HALF_EVEN, context=ctx))
        _ELU_TABLE = table.to(torch.int32)
    return _ELU_TABLE


def latent_activations(y: torch.Tensor) -> torch.Tensor:
    """Integer latents ``y`` (any float dtype, integer-valued) as activations: float64
    ``clamp(y, +-LATENT_LIMIT) * 2**12``."""
    return y.to(torch.float64).clamp(-LATENT_LIMIT, LATENT_LIMIT) * ONE


class IntegerEntropyParameters(nn.Module):
    """The fixed-point twin of a :class:`LatentEntropyParameters` (same structure, integer
    buffers), built by :meth:`quantize_from` and kept in the state dict.

    All methods take integer latents (any float dtype) and return ``(scales, means)`` as
    integer-valued float64 tensors in units of ``2**-12`` (see the module docstring),
    shaped ``[N, C, h, w]`` like the float model's outputs. They run on the device of
    their inputs; the result does not depend on it, on the batch or on threads.
    """

    def __init__(self, params: LatentEntropyParameters):
        super().__init__()
        self.channels = params.channels
        self.context = params.context
        self.cond = _IntegerSequential(params.cond) if params.cond is not None else None
        self.ctx = IntegerConv2d(params.ctx) if params.ctx is not None else None
        self.head = _IntegerSequential(params.head) if params.head is not None else None
        self.register_buffer("prior", torch.zeros(2 * params.channels, dtype=torch.int64))
        # derived (elu_table()), not stored: 256 kB per latent otherwise
        self.register_buffer("elu_table", elu_table().clone(), persistent=False)
        self.register_buffer("ready_flag", torch.zeros((), dtype=torch.uint8))

    @property
    def ready(self) -> bool:
        return bool(self.ready_flag)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "elu_table", None)  # stored by the first integer version
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def quantize_from(self, params: LatentEntropyParameters) -> None:
        """Derive the integer network from ``params``' float weights (deterministic: the
        same weights give the same buffers on any machine)."""
        if self.cond is not None:
            self.cond.quantize_from(params.cond)
        if self.ctx is not None:
            self.ctx.quantize_from(params.ctx)
        if self.head is not None:
            self.head.quantize_from(params.head)
        else:
            p = params.prior.detach().to("cpu", torch.float64).reshape(-1)
            self.prior.copy_(torch.round(p.clamp(-ACTIVATION_LIMIT / ONE, ACTIVATION_LIMIT / ONE) * ONE).to(torch.int64))
        self.ready_flag.fill_(1)

    def _elu(self, device) -> torch.Tensor:
        return _float64_cache(self, device, ("elu_table",), lambda: self.elu_table.to(device, torch.float64))

    def _check(self):
        if not self.ready:
            raise RuntimeError("the integer entropy parameters are not built yet: call codec.update() first")

    def cond_features(self, cond: torch.Tensor | None) -> torch.Tensor | None:
        """Conditioning features ``[N, 2C, h, w]`` from the integer conditioning latent."""
        self._check()
        if self.cond is None:
            return None
        if cond is None:
            raise ValueError("this latent is coded conditionally: pass the common latent as cond")
        return self.cond(latent_activations(cond), self._elu(cond.device))

    def context_features(self, y_visible: torch.Tensor, padding=None) -> torch.Tensor:
        """Context features from the integer latent a decoder already has (zeros elsewhere)."""
        return self.ctx(latent_activations(y_visible), padding)

    def head_params(self, cond_feat, ctx_feat, like: torch.Tensor):
        """``(scales, means)`` from the features (``None``: absent/zero), shaped like ``like``."""
        self._check()
        if self.head is None:
            p = self.prior.to(like.device, torch.float64).view(1, -1, 1, 1)
            p = p.expand(like.shape[0], -1, like.shape[2], like.shape[3])
            return p[:, : self.channels], p[:, self.channels :]
        feats = []
        if self.cond is not None:
            feats.append(cond_feat)
        if self.ctx is not None:
            if ctx_feat is None:
                ctx_feat = torch.zeros(
                    like.shape[0], 2 * self.channels, like.shape[2], like.shape[3], dtype=torch.float64, device=like.device
                )
            feats.append(ctx_feat)
        out = self.head(torch.cat(feats, 1), self._elu(like.device))
        return out[:, : self.channels], out[:, self.channels :]

    def checkerboard_params(self, y: torch.Tensor, cond_feat, anchors_only: bool):
        """The checkerboard's first pass (no context) or second (context from the anchors)."""
        if anchors_only:
            return self.head_params(cond_feat, None, y)
        anchor = checkerboard_anchor_mask(y.shape[2], y.shape[3], y.device, torch.float64)
        ctx = self.context_features(y.to(torch.float64) * anchor) * (1 - anchor)
        return self.head_params(cond_feat, ctx, y)

    def forward(self, y: torch.Tensor, cond: torch.Tensor | None = None):
        """One-shot parameters of every element, equal to what decoding computes."""
        cond_feat = self.cond_features(cond)
        if self.context == "checkerboard":
            anchor = checkerboard_anchor_mask(y.shape[2], y.shape[3], y.device, torch.bool)
            s1, m1 = self.checkerboard_params(y, cond_feat, True)
            s2, m2 = self.checkerboard_params(y, cond_feat, False)
            return torch.where(anchor, s1, s2), torch.where(anchor, m1, m2)
        if self.context == "autoregressive":
            return self.head_params(cond_feat, self.context_features(y), y)
        return self.head_params(cond_feat, None, y)
