"""Latent codecs: one module per coded latent, owning its entropy model end to end.

:class:`GaussianLatentCodec` is what CompressAI's ``compressai.latent_codecs`` are for its
models: it owns a latent's entropy parameters (optionally conditioned on another latent),
its spatial context (``"none"``, ``"checkerboard"``, ``"autoregressive"``), its prior for
the elements that see no context (the Gaussian head's own, or an
:class:`~gwn_fast.entropy_models.bottleneck.IntegerEntropyBottleneck`), its tables, and
its ``forward`` (rates for training), :meth:`~GaussianLatentCodec.compress` and
:meth:`~GaussianLatentCodec.decompress`, on batches. The Gray-Wyner codec composes three:
a common one (Y0) and two conditioned on Y0.

Coding runs the integer twin of the entropy parameters
(:mod:`gwn_fast.entropy_models.integer`) on the latents' device, for the whole batch at
once; only integer symbols and table indexes cross to the C++ coder. The bits therefore
do not depend on the device, the batch, the thread count or the BLAS, so a stream
written on a GPU decodes on a CPU and the other way round.

Stream layout (what :meth:`compress` writes; streams are the coder's, see
``docs/bitstream.md``): the latent is coded in *passes* (``"none"``: one; checkerboard:
the anchors ``(i + j)`` even, then the rest; autoregressive: one per position in raster
order). Within a pass each sample's elements follow in channel-major order, then the
positions of the pass in raster order. A per-sample stream holds one sample's passes in
order; a single stream for the batch holds, for each pass, every sample's elements of
that pass, sample after sample, so batches decode pass by pass from one stream too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from gwn_fast import functional as F
from gwn_fast.coder import BitstreamError, CdfTables, Decoder, encode
from gwn_fast.entropy_models.bottleneck import IntegerEntropyBottleneck
from gwn_fast.entropy_models.gaussian import GaussianCoder
from gwn_fast.entropy_models.integer import FRACTION_BITS, IntegerEntropyParameters
from gwn_fast.entropy_models.parameters import CONTEXTS, LatentEntropyParameters, checkerboard_anchor_mask

__all__ = ["PRIORS", "GaussianLatentCodec"]

PRIORS = ("gaussian", "positional", "bottleneck")


class GaussianLatentCodec(nn.Module):
    """A conditional Gaussian latent codec with spatial context.

    Args:
        channels: ``C``, the latent's channels.
        cond_channels: channels of the latent it is conditioned on (0: none).
        context: ``"checkerboard"``, ``"autoregressive"`` or ``"none"``.
        coder: a :class:`GaussianCoder` shared with other latent codecs (its owner
            registers and updates it); ``None``: this codec owns one (64 log-spaced
            scales, 16 bits, ``mean_steps`` as given).
        prior: the model of the elements that see no context (every element with
            ``context="none"``, the checkerboard's anchors): ``"gaussian"`` (one learned
            Gaussian per channel), ``"positional"`` (the entropy parameters' conditioning
            branch reads a constant plane of ones instead of another latent, so, through
            its zero padding, elements within three of the border, every element of a
            tiny grid, get a Gaussian of their own, while the interior shares one per
            channel; needs ``cond_channels=0``) or ``"bottleneck"``.
            The bottleneck needs an unconditioned latent and no autoregressive context.
        hidden: hidden width of the entropy-parameter networks (default ``max(2C, 8)``).

    Shapes: latents ``[N, C, h, w]`` (integer-valued), ``cond`` ``[N, cond_channels, h, w]``.
    """

    def __init__(
        self,
        channels: int,
        cond_channels: int = 0,
        context: str = "checkerboard",
        *,
        coder: GaussianCoder | None = None,
        prior: str = "gaussian",
        hidden: int | None = None,
        mean_steps: int = 8,
    ):
        super().__init__()
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        if prior == "bottleneck" and (context == "autoregressive" or cond_channels):
            raise ValueError("prior='bottleneck' needs an unconditioned latent with context 'none' or 'checkerboard'")
        if prior == "positional" and cond_channels:
            raise ValueError("prior='positional' needs an unconditioned latent (cond_channels=0): its conditioning "
                             "branch reads the constant plane")
        self.channels, self.context = int(channels), context
        self.positional = prior == "positional"
        self.entropy_parameters = LatentEntropyParameters(
            self.channels, 1 if self.positional else cond_channels, context, hidden
        )
        self.integer = IntegerEntropyParameters(self.entropy_parameters)
        if coder is None:
            self.gaussian = GaussianCoder(mean_steps=mean_steps)
        else:
            if not isinstance(coder, GaussianCoder):
                raise TypeError(f"coder must be a GaussianCoder, got {type(coder).__name__}")
            object.__setattr__(self, "_shared_coder", coder)  # not a submodule: its owner saves it
        self.bottleneck = (
            IntegerEntropyBottleneck(self.channels, entropy_coder_precision=self.coder.precision)
            if prior == "bottleneck"
            else None
        )
        self._tables_cache = None
        self._integer_source = None  # the float weights' versions the integer net was derived from
        self.register_load_state_dict_post_hook(_integer_loaded)

    def _weights_key(self) -> tuple:
        return tuple((t.data_ptr(), t._version) for t in self.entropy_parameters.parameters())

    def sync_integer(self, force: bool = False) -> bool:
        """Derive the integer entropy parameters again if ``force`` or the float weights
        changed since they were derived (an optimiser step, or a load without integer
        buffers). Returns whether the integer buffers changed. Buffers restored by
        ``load_state_dict`` together with their float weights are kept as they are."""
        key = self._weights_key()
        if not force and self.integer.ready and self._integer_source == key:
            return False
        before = {k: v.clone() for k, v in self.integer.state_dict().items()}
        self.integer.quantize_from(self.entropy_parameters)
        self._integer_source = key
        return any(not torch.equal(v, self.integer.state_dict()[k]) for k, v in before.items())

    @property
    def coder(self) -> GaussianCoder:
        own = self._modules.get("gaussian")
        return own if own is not None else self._shared_coder

    @property
    def conditional(self) -> bool:
        """Whether the entropy parameters read another latent (``cond``)."""
        return self.entropy_parameters.cond is not None and not self.positional

    def _cond_input(self, cond: torch.Tensor | None, y: torch.Tensor):
        """What the conditioning branch reads for the latent ``y`` ``[N, C, h, w]``:
        ``cond``, the constant plane ``[N, 1, h, w]`` (``prior="positional"``), or None
        (no branch). A missing ``cond`` is reported by the branch itself."""
        if self.positional:
            return y.new_ones(y.shape[0], 1, y.shape[2], y.shape[3])
        return cond if self.conditional else None

    # -- training ----------------------------------------------------------------------
    def forward(self, y: torch.Tensor, latent: torch.Tensor | None = None, cond: torch.Tensor | None = None, rate_grad: str = "ste"):
        """``(bits [N], likelihood thunk)``: each sample's rate in bits (fused
        :func:`gwn_fast.functional.gaussian_rate` where no bottleneck is involved) and a
        function returning the likelihood ``[N, C, h, w]``.

        ``y``: the quantized latent (integer-valued, straight-through gradient);
        ``latent``: the unrounded latent it rounds (needed for ``rate_grad`` other than
        ``"ste"``; see :func:`gwn_fast.functional.gaussian_likelihood`)."""
        if rate_grad != "ste" and latent is None:
            raise ValueError(f"rate_grad={rate_grad!r} needs the unrounded latent (latent=)")
        u = latent if rate_grad != "ste" else None
        cond = self._cond_input(cond, y)
        prior = self.bottleneck
        if prior is not None and self.context == "none":
            lik = prior.likelihood(y, latent=u, rate_grad=rate_grad)
            return -torch.log2(lik).flatten(1).sum(1), lambda: lik
        scales, means = self.entropy_parameters(y, cond)
        kw = {"rate_grad": rate_grad, "latent": u, "round_residual": self.coder.round_residual}
        if self.training and self.coder.mean_steps > 1:
            # The expected rate when the mean is rounded down or up to the 1/J grid with
            # probabilities (1 - t, t), t = frac(J mu): a real rate (of a code that draws
            # the rounding), smooth in mu, and its gradient moves mu toward the better grid
            # point. A straight-through rounding instead parks mu on the boundary between
            # two grid points (its gradient points at the boundary from both sides), where
            # the integer coding path, 2**-12 away, rounds it either way at random.
            if prior is None:
                # One fused pass over both grid neighbours; no likelihood tensor unless the
                # thunk is called.
                bits = F.gaussian_rate(y, scales, means, reduction="batch", mean_steps=self.coder.mean_steps, **kw)
                return bits, lambda: torch.exp2(-self._mean_step_bits(y, scales, means, kw))
            gaussian = torch.exp2(-self._mean_step_bits(y, scales, means, kw))
        else:
            means = self.coder.quantize_means(means)
            if prior is None:
                bits = F.gaussian_rate(y, scales, means, reduction="batch", **kw)
                return bits, lambda: F.gaussian_likelihood(y, scales, means, **kw)
            gaussian = F.gaussian_likelihood(y, scales, means, **kw)
        # checkerboard: the anchors (first pass) on the bottleneck, the rest Gaussian
        anchor = checkerboard_anchor_mask(y.shape[2], y.shape[3], y.device, torch.bool)
        lik = torch.where(anchor, prior.likelihood(y, latent=u, rate_grad=rate_grad).to(gaussian.dtype), gaussian)
        return -torch.log2(lik).flatten(1).sum(1), lambda: lik

    def _mean_step_bits(self, y, scales, means, kw) -> torch.Tensor:
        """Per element: ``(1 - t) bits(floor(J mu) / J) + t bits(floor(J mu) / J + 1/J)``
        with ``t = J mu - floor(J mu)`` (its gradient reaches ``mu`` through ``t``): what
        ``F.gaussian_rate(..., mean_steps=J)`` sums, kept per element for the checkerboard
        with a bottleneck prior and for the likelihood thunk."""
        J = self.coder.mean_steps
        scaled = means * J
        low = torch.floor(scaled.detach())
        t = scaled - low
        below = -torch.log2(F.gaussian_likelihood(y, scales, low / J, **kw))
        above = -torch.log2(F.gaussian_likelihood(y, scales, (low + 1) / J, **kw))
        return below + t * (above - below)

    # -- tables ------------------------------------------------------------------------
    def update(self, force: bool = False, update_quantiles: bool = False) -> bool:
        """Build what coding needs: the owned coder's tables, the bottleneck's tables, and
        the integer entropy parameters (re-derived from the float weights on every call:
        it is cheap and deterministic, so weights trained further are never coded with a
        stale integer network). Returns whether anything changed."""
        changed = False
        if "gaussian" in self._modules:
            changed |= self.gaussian.update(force=force)
        if self.bottleneck is not None:
            changed |= bool(self.bottleneck.update(force=force, update_quantiles=update_quantiles))
        return self.sync_integer(force=True) or changed

    def check_ready(self) -> None:
        """Raise ``RuntimeError`` naming the fix if ``update()`` was not called."""
        self.coder.tables()
        if self.bottleneck is not None and not self.bottleneck.ready:
            raise RuntimeError("Y0's EntropyBottleneck has no CDF tables yet: call codec.update() before compress()/decompress()")
        self.sync_integer()

    def stream_tables(self) -> CdfTables:
        """The table set of this latent's streams: the Gaussian tables, followed (with the
        bottleneck prior) by one table per channel, the bottleneck's."""
        gaussian = self.coder.tables()
        eb = self.bottleneck
        if eb is None:
            return gaussian
        if not eb.ready:
            raise RuntimeError("Y0's EntropyBottleneck has no CDF tables yet: call codec.update() before compress()/decompress()")
        # Rebuilt only when a source changed: update() replaces the buffers, loading a
        # state dict writes them in place (bumping their version).
        sources = (eb._quantized_cdf, eb._cdf_length, eb._offset, eb._medians)
        key = (gaussian, tuple((t, t._version) for t in sources))
        cached = self._tables_cache
        if cached is not None and cached[0][0] is key[0] and all(
            a is b and va == vb for (a, va), (b, vb) in zip(cached[0][1], key[1])
        ):
            return cached[1]
        if eb.entropy_coder_precision != gaussian.precision:
            raise RuntimeError(
                f"the bottleneck's tables have precision {eb.entropy_coder_precision}, the Gaussian ones {gaussian.precision}"
            )
        e_cdfs = eb._quantized_cdf.detach().cpu().to(torch.int32).numpy()
        e_lengths = eb._cdf_length.detach().cpu().to(torch.int32).numpy().reshape(-1)
        # Absolute offsets: row c codes the values _medians[c] + _offset[c] + s, so the
        # symbol of a value is the value itself.
        e_offsets = (eb._offset.detach().cpu().long() + eb._medians.detach().cpu().long()).to(torch.int32).numpy()
        e_flat = np.concatenate([e_cdfs[c, :n] for c, n in enumerate(e_lengths.tolist())])
        tables = CdfTables.from_flat(
            np.concatenate([gaussian.cdf_data, e_flat]),
            np.concatenate([gaussian.cdf_lengths, e_lengths]),
            np.concatenate([gaussian.offsets, e_offsets]),
            precision=gaussian.precision,
        )
        self._tables_cache = (key, tables)
        return tables

    # -- coding ------------------------------------------------------------------------
    def _prior_indexes(self, y: torch.Tensor) -> torch.Tensor:
        """Table index of each element of ``y`` ``[N, C, ...]`` under the bottleneck: its
        channel's row, after the Gaussian tables."""
        base = self.coder.tables().num_tables
        shape = (1, self.channels) + (1,) * (y.ndim - 2)
        return (base + torch.arange(self.channels, dtype=torch.int32, device=y.device)).view(shape).expand(y.shape)

    def _gaussian_offsets(self, scales, means):
        return self.coder.integer_offsets(scales, means, FRACTION_BITS)

    def _passes(self, h: int, w: int, device) -> list:
        """The element masks ``[h, w]`` (bool) of the passes, in decode order, or
        ``"positions"`` for the autoregressive raster scan."""
        if self.context == "checkerboard":
            a = checkerboard_anchor_mask(h, w, device, torch.bool)[0, 0]
            return [a, ~a]
        if self.context == "autoregressive":
            return ["positions"]
        return [torch.ones(h, w, dtype=torch.bool, device=device)]

    def _pass_params(self, p: int, y: torch.Tensor, cond_feat):
        """``(n, table)`` of every element for pass ``p`` (``y``: what is decoded so far)."""
        first = p == 0
        if self.bottleneck is not None and first:
            return torch.zeros(y.shape, dtype=torch.int64, device=y.device), self._prior_indexes(y)
        if self.context == "checkerboard":
            s, m = self.integer.checkerboard_params(y, cond_feat, anchors_only=first)
        else:
            s, m = self.integer.head_params(cond_feat, None, y)
        return self._gaussian_offsets(s, m)

    @torch.no_grad()
    def symbols(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``[(symbols, indexes)]`` per pass group, each int32 ``[N, P, m]`` on the CPU
        (``P`` passes of ``m`` elements per sample), in decode order."""
        self.check_ready()
        y = y.detach()
        cond = self._cond_input(cond, y)
        cond_feat = self.integer.cond_features(cond.detach() if cond is not None else None)
        groups = []
        if self.context == "autoregressive":
            s, m = self.integer.head_params(cond_feat, self.integer.context_features(y), y)
            n, t = self._gaussian_offsets(s, m)
            k = self.coder.integer_symbols(y, n)
            order = lambda v: v.permute(0, 2, 3, 1).reshape(y.shape[0], -1, self.channels)  # noqa: E731
            return [(order(k).cpu(), order(t).cpu())]
        for p, mask in enumerate(self._passes(y.shape[2], y.shape[3], y.device)):
            n, t = self._pass_params(p, y, cond_feat)
            k = self.coder.integer_symbols(y[:, :, mask], n[:, :, mask])
            groups.append((k.reshape(y.shape[0], 1, -1).cpu(), t[:, :, mask].reshape(y.shape[0], 1, -1).cpu()))
        return groups

    @torch.no_grad()
    def compress(self, y: torch.Tensor, cond: torch.Tensor | None = None, *, single_stream: bool = False) -> list[bytes]:
        """Streams of the integer-valued latent ``y`` ``[N, C, h, w]`` (``cond``: the
        decoded conditioning latent): one per sample, or one for the batch."""
        groups = self.symbols(y, cond)
        tables = self.stream_tables()
        if single_stream:
            sym = torch.cat([k.transpose(0, 1).reshape(-1) for k, _ in groups]).numpy()
            idx = torch.cat([t.transpose(0, 1).reshape(-1) for _, t in groups]).numpy()
            return [encode(sym, idx, tables, threads=1)]
        out = []
        for b in range(y.shape[0]):
            sym = torch.cat([k[b].reshape(-1) for k, _ in groups]).numpy()
            idx = torch.cat([t[b].reshape(-1) for _, t in groups]).numpy()
            out.append(encode(sym, idx, tables, threads=1))
        return out

    def open_streams(self, streams: Sequence[bytes], latent_shape, samples: int, single_stream: bool, label: str, max_symbols: int) -> list[Decoder]:
        """Decoders for ``streams``, each header checked against the latent's size before
        anything is decoded. Raises :class:`BitstreamError` naming ``label``."""
        h, w = latent_shape
        per = self.channels * h * w * (samples if single_stream else 1)
        tables = self.stream_tables()
        decoders = []
        for b, data in enumerate(streams):
            dec = Decoder(data, tables)
            if dec.num_symbols != per:
                where = f"the {label} stream" + ("" if single_stream else f" of sample {b}")
                raise BitstreamError(
                    f"{where} holds {dec.num_symbols:,} symbols but a {self.channels}-channel {h}x{w} latent"
                    f"{f' x {samples} samples' if single_stream else ''} needs {per:,}: the shape does not belong to "
                    "these streams, or they were written by a codec of another configuration"
                )
            if dec.num_symbols > max_symbols:
                raise BitstreamError(
                    f"the {label} stream declares {dec.num_symbols:,} symbols, more than limits.max_symbols={max_symbols:,}"
                )
            decoders.append(dec)
        return decoders

    @staticmethod
    def _decode(decoders: list[Decoder], single_stream: bool, t: torch.Tensor) -> torch.Tensor:
        """The next symbols of each sample: ``t`` int32 ``[N, m]`` indexes -> int64 ``[N, m]``."""
        idx = t.to("cpu", torch.int32).numpy()
        rows = [(decoders[0] if single_stream else decoders[b]).decode(np.ascontiguousarray(idx[b])) for b in range(idx.shape[0])]
        return torch.from_numpy(np.stack(rows)).to(t.device, torch.int64)

    @torch.no_grad()
    def decompress(
        self,
        decoders: list[Decoder],
        latent_shape,
        samples: int,
        cond: torch.Tensor | None = None,
        *,
        single_stream: bool = False,
        device=None,
    ) -> torch.Tensor:
        """The latent ``[samples, C, h, w]`` (integer-valued float64 on ``device``) from
        :meth:`open_streams`' decoders, pass by pass for the whole batch. Each
        per-sample decoder is finished (its checksum checked) here; a single stream's
        is finished too."""
        self.check_ready()
        h, w = latent_shape
        device = torch.device("cpu") if device is None else torch.device(device)
        y = torch.zeros(samples, self.channels, h, w, dtype=torch.float64, device=device)
        cond = self._cond_input(cond, y)
        cond_feat = self.integer.cond_features(cond.to(device) if cond is not None else None)
        if self.context == "autoregressive":
            self._decode_raster(decoders, single_stream, y, cond_feat)
        else:
            for p, mask in enumerate(self._passes(h, w, device)):
                n, t = self._pass_params(p, y, cond_feat)
                k = self._decode(decoders, single_stream, t[:, :, mask].reshape(samples, -1))
                y[:, :, mask] = (k.view(samples, self.channels, -1) + n[:, :, mask]).to(torch.float64)
        for dec in decoders:
            dec.finish()
        return y

    def _decode_raster(self, decoders, single_stream, y, cond_feat) -> None:
        """Autoregressive decode: each position from its 5x5 causal window only (the
        masked convolution without padding), so the cost is linear in the positions."""
        N, C, h, w = y.shape
        padded = torch.zeros(N, C, h + 4, w + 4, dtype=torch.float64, device=y.device)
        for i in range(h):
            for j in range(w):
                window = padded[:, :, i : i + 5, j : j + 5]
                ctx = self.integer.context_features(window, padding=0)
                cf = cond_feat[:, :, i : i + 1, j : j + 1] if cond_feat is not None else None
                s, m = self.integer.head_params(cf, ctx, ctx[:, :C])
                n, t = self._gaussian_offsets(s, m)
                k = self._decode(decoders, single_stream, t.reshape(N, C))
                padded[:, :, i + 2, j + 2] = (k + n.reshape(N, C)).to(torch.float64)
        y.copy_(padded[:, :, 2 : h + 2, 2 : w + 2])


def _integer_loaded(module: GaussianLatentCodec, incompatible_keys) -> None:
    # Loaded together with the float weights: those integer buffers are the ones to code
    # with (a checkpoint's streams were written with them). Not ready: derived when needed.
    module._integer_source = module._weights_key() if module.integer.ready else None
