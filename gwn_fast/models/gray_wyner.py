"""``GrayWynerCodec``: the trainable three-channel codec with real, per-receiver bitstreams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as nnf
from compressai.models import CompressionModel
from torch import nn

from gwn_fast import functional as F
from gwn_fast.coder import DEFAULT_PRECISION, BitstreamError
from gwn_fast.entropy_models import CONTEXTS, GaussianCoder, GaussianLatentCodec
from gwn_fast.ops.reference import quantize_ref
from gwn_fast.models.transforms import image_analysis, image_synthesis, light_analysis, light_synthesis, mlp_head

__all__ = ["ARCHITECTURES", "STREAMS", "Y0_PRIORS", "GrayWynerCodec", "LazyLikelihoods", "quantize_ste"]

ARCHITECTURES = ("shared", "separated", "combined", "independent", "joint")
TRANSFORMS = ("image", "light")
HEADS = ("conv", "mlp")
STREAMS = {"y0": "common", "y1": "private1", "y2": "private2"}
RATE_GRADS = F.RATE_GRADS
Y0_PRIORS = ("gaussian", "positional", "bottleneck")


class LazyLikelihoods(Mapping):
    """``name -> likelihood``, each computed on first access from a thunk (so training on
    ``out["bits"]`` never builds them). Read-only, like the dict CompressAI returns."""

    def __init__(self, thunks: dict):
        self._thunks = dict(thunks)
        self._values: dict = {}

    def __getitem__(self, name):
        if name not in self._values:
            self._values[name] = self._thunks[name]()
        return self._values[name]

    def __iter__(self):
        return iter(self._thunks)

    def __len__(self):
        return len(self._thunks)


def quantize_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half toward zero (``sign(x) * ceil(|x| - 0.5)``), straight-through gradient."""
    return x + (quantize_ref(x) - x).detach()


class GrayWynerCodec(CompressionModel):
    """A learnable Gray-Wyner network: one encoder, a common and two private bitstreams.

    Receiver ``i`` reads the common channel Y0 and its private channel Yi and predicts
    task ``i``'s target with ``g_i(cat(Y0, Yi))``.

    Args:
        in_channels: channels of each source ``x1``, ``x2``.
        out_channels: ``(c1, c2)``, channels of the two task outputs.
        latent_channels: ``C``, channels of each analysis output (shared architecture).
        common_channels: ``Cb`` (default ``C // 2``): candidate-common channels; the
            private latents have ``C - Cb``.
        architecture: ``"shared"`` (the paper's best: f1, f2 each see both sources; match
            and merge of their candidate-common halves with an alignment loss),
            ``"separated"`` (private-1, private-2 and common encoders), ``"combined"`` (one
            encoder split in three), or the baselines ``"independent"`` (two codecs, no
            common channel; encoder i sees only ``x_i``) and ``"joint"`` (one latent read
            by both decoders, sent as the common channel).
        context: ``"checkerboard"`` (default: two parallel decoding passes),
            ``"autoregressive"`` (5x5 mask-A context, serial decode) or ``"none"``.
        transform: ``"image"`` (the paper's 16x stack) or ``"light"`` (``depth`` stride-2
            3x3 convolutions of ``hidden_channels``).
        analysis, synthesis: optional user modules replacing the built-in transforms:
            ``analysis`` a sequence with one module per encoder of the architecture
            (shared/independent: 2, separated: 3 ``(p1, p2, common)``, combined/joint: 1),
            mapping ``[N, 2*in_channels, H, W]`` (independent: ``[N, in_channels, H, W]``)
            to the latent; ``synthesis`` ``(g1, g2)`` mapping ``[N, C, h, w]`` to task
            outputs (any shape: classification heads welcome). With user analysis modules
            pass ``stride`` (the total downsampling) too.
        rate_grad: how the rate's gradient reaches the latents in training: ``"ste"`` (the
            paper), ``"smooth"`` or ``"noise"`` (see :func:`gwn_fast.functional.gaussian_likelihood`).
        scale_table, precision: the Gaussian tables used for coding (default: 256
            log-spaced scales in [0.11, 256] at 24 bits, within 0.01 % of the ideal
            code length; CompressAI's 64 scales at 16 bits lose about 0.26 %). The tables
            are rebuilt deterministically from these, never stored.
        mean_steps: ``J``: predicted means are quantized to multiples of ``1/J``
            (straight-through) and coded with ``J`` tables per scale, one per fraction of
            the mean, so the coded pmf of an integer latent is its exact bin mass under
            ``N(mean, scale)``, the likelihood ``forward`` gives in eval mode. In training
            the rate is the expected one when the mean is rounded down or up with
            probabilities ``(1 - t, t)``, ``t = frac(J mean)``: smooth in the mean, so
            means settle on grid points, not on the rounding boundaries the integer
            coding path could round either way (see
            :mod:`gwn_fast.entropy_models.gaussian`). ``1``: CompressAI's layout (one
            zero-mean table per scale, the residual binned; a binary element then costs
            about 1.5 bits instead of 1; trained with ``rate_grad="ste"`` residuals park
            on bin edges, where the integer coding path may pick the other bin: measured
            +22 % payload over the estimate on one channel, experiments/RESULTS.md). Tables
            grow ``J``-fold.
        head: ``"conv"`` (the transform's synthesis stack, outputs ``[N, c_i, H, W]``) or
            ``"mlp"`` (classification heads ``[N, c_i]`` of logits: flatten, ``head_hidden``
            units of ``head_activation`` (``"sigmoid"``, the paper's, or ``"elu"``), linear;
            needs ``input_size=(H, W)``).
        y0_prior: the model of the Y0 elements that see no context (the checkerboard's
            first pass; every Y0 element with ``context="none"``): ``"gaussian"``
            (default: a learned per-channel Gaussian), ``"positional"`` (a Gaussian per
            channel and distance to the border: Y0's conditioning branch reads a constant
            plane, so on a tiny grid every element has its own, as Y1 and Y2 already do
            through the zero padding of their Y0 branch) or ``"bottleneck"`` (CompressAI's
            ``EntropyBottleneck`` as :class:`~gwn_fast.models.entropy_parameters.IntegerEntropyBottleneck`:
            a learned non-parametric per-channel density; then :meth:`aux_loss` is its
            real auxiliary loss, to be minimised by an optimiser of the ``quantiles``, and
            its likelihood ignores ``rate_grad``, evaluated at the integer latent).
            The bottleneck is not available with ``context="autoregressive"``. No effect without Y0
            (``architecture="independent"``).

    Shapes: ``x1``, ``x2``: ``[N, in_channels, H, W]``, any ``H, W`` (padded internally
    to the stride, outputs cropped back).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: Sequence[int] = (3, 3),
        latent_channels: int = 192,
        common_channels: int | None = None,
        architecture: str = "shared",
        context: str = "checkerboard",
        transform: str = "image",
        hidden_channels: int = 32,
        depth: int = 3,
        analysis: Sequence[nn.Module] | None = None,
        synthesis: Sequence[nn.Module] | None = None,
        stride: int | None = None,
        rate_grad: str = "ste",
        scale_table=None,
        precision: int = DEFAULT_PRECISION,
        head: str = "conv",
        head_hidden: int = 256,
        input_size: Sequence[int] | None = None,
        y0_prior: str = "gaussian",
        head_activation: str = "sigmoid",
        mean_steps: int = 8,
    ):
        super().__init__()
        if y0_prior not in Y0_PRIORS:
            raise ValueError(f"y0_prior must be one of {Y0_PRIORS}, got {y0_prior!r}")
        if y0_prior == "bottleneck" and context == "autoregressive":
            raise ValueError(
                "y0_prior='bottleneck' needs context='checkerboard' or 'none': with context='autoregressive' "
                "every Y0 element but the first sees context, so no pass is left for a prior of its own"
            )
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if head == "mlp" and (input_size is None or len(tuple(input_size)) != 2):
            raise ValueError(f"head='mlp' needs input_size=(H, W) (its first layer's size depends on it), got {input_size!r}")
        if rate_grad not in RATE_GRADS:
            raise ValueError(f"rate_grad must be one of {RATE_GRADS}, got {rate_grad!r}")
        if len(tuple(out_channels)) != 2:
            raise ValueError(f"out_channels must be a pair (c1, c2), got {out_channels!r}")
        C = int(latent_channels)
        Cb = C // 2 if common_channels is None else int(common_channels)
        if not 0 < Cb < C and architecture not in ("independent", "joint"):
            raise ValueError(f"common_channels must be in (0, latent_channels={C}), got {Cb}")
        Cp = C - Cb
        # Enough to rebuild the model from a checkpoint (user modules excepted).
        self.config = {
            "in_channels": int(in_channels),
            "out_channels": [int(c) for c in out_channels],
            "latent_channels": C,
            "common_channels": Cb,
            "architecture": architecture,
            "context": context,
            "transform": transform,
            "hidden_channels": int(hidden_channels),
            "depth": int(depth),
            "rate_grad": rate_grad,
            "precision": int(precision),
            "custom_modules": analysis is not None or synthesis is not None,
            "head": head,
            "head_hidden": int(head_hidden),
            "input_size": [int(v) for v in input_size] if input_size is not None else None,
            "y0_prior": y0_prior,
            "head_activation": head_activation,
            "mean_steps": int(mean_steps),
        }
        self.in_channels, self.out_channels = int(in_channels), tuple(int(c) for c in out_channels)
        self.latent_channels, self.common_channels = C, Cb
        self.architecture, self.context, self.rate_grad = architecture, context, rate_grad
        self.y0_prior = y0_prior

        if architecture in ("shared", "separated", "combined"):
            self.latent_sizes = {"y0": Cb, "y1": Cp, "y2": Cp}
        elif architecture == "independent":
            self.latent_sizes = {"y1": C, "y2": C}
        else:
            self.latent_sizes = {"y0": C}

        enc_in = self.in_channels if architecture == "independent" else 2 * self.in_channels
        encoder_outputs = {
            "shared": [C, C],
            "separated": [Cp, Cp, Cb],
            "combined": [Cb + 2 * Cp],
            "independent": [C, C],
            "joint": [C],
        }[architecture]
        if transform == "image":
            self.stride = 16
            make_analysis = lambda o: image_analysis(enc_in, o)  # noqa: E731
            make_synthesis = lambda o: image_synthesis(C, o)  # noqa: E731
        else:
            self.stride = 2**depth
            make_analysis = lambda o: light_analysis(enc_in, o, hidden_channels, depth)  # noqa: E731
            make_synthesis = lambda o: light_synthesis(C, o, hidden_channels, depth)  # noqa: E731
        if analysis is not None:
            analysis = list(analysis)
            if len(analysis) != len(encoder_outputs):
                raise ValueError(
                    f"architecture {architecture!r} needs {len(encoder_outputs)} analysis modules, got {len(analysis)}"
                )
            if stride is None:
                raise ValueError("pass stride= (the analysis transforms' total downsampling) with user analysis modules")
        self.analysis = nn.ModuleList(analysis or [make_analysis(o) for o in encoder_outputs])
        if stride is not None:
            if int(stride) < 1:
                raise ValueError(f"stride must be >= 1, got {stride}")
            self.stride = int(stride)
        if synthesis is not None:
            synthesis = list(synthesis)
            if len(synthesis) != 2:
                raise ValueError(f"synthesis must be a pair (g1, g2), got {len(synthesis)} modules")
        if head == "mlp" and synthesis is None:
            h, w = (-(-int(v) // self.stride) for v in input_size)
            synthesis = [mlp_head(C * h * w, o, head_hidden, head_activation) for o in self.out_channels]
        self.synthesis = nn.ModuleList(synthesis or [make_synthesis(o) for o in self.out_channels])

        conditional = "y0" in self.latent_sizes
        # One coder (scale table, precision, mean steps: the tables) shared by the latents.
        self.gaussian = GaussianCoder(scale_table, precision=precision, mean_steps=mean_steps)
        self.latent_codecs = nn.ModuleDict(
            {
                name: GaussianLatentCodec(
                    size,
                    cond_channels=Cb if (conditional and name != "y0") else 0,
                    context=context,
                    coder=self.gaussian,
                    prior=y0_prior if name == "y0" else "gaussian",
                )
                for name, size in self.latent_sizes.items()
            }
        )
        if self.y0_bottleneck is not None:
            # Parameters forward() never uses: the quantiles (trained by aux_loss() alone, which
            # depends on no data, so every replica computes the same update) and, with
            # context="none", Y0's Gaussian prior. DistributedDataParallel must skip them.
            unused = ["latent_codecs.y0.bottleneck.quantiles"]
            if context == "none":
                unused += [
                    f"latent_codecs.y0.entropy_parameters.{n}"
                    for n, _ in self.latent_codecs["y0"].entropy_parameters.named_parameters()
                ]
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, unused)
        self._register_load_state_dict_pre_hook(_rename_legacy_keys, with_module=True)

    @property
    def entropy_parameters(self) -> dict:
        """``{name: LatentEntropyParameters}``, the float (training) networks of each latent."""
        return {name: lc.entropy_parameters for name, lc in self.latent_codecs.items()}

    @property
    def y0_bottleneck(self):
        """Y0's :class:`~gwn_fast.entropy_models.IntegerEntropyBottleneck` (``y0_prior="bottleneck"``), else None."""
        lc = self.latent_codecs["y0"] if "y0" in self.latent_codecs else None
        return lc.bottleneck if lc is not None else None

    @classmethod
    def from_config(cls, config: dict, source: str = "config") -> "GrayWynerCodec":
        """Rebuild an (untrained) codec from ``codec.config``; load its state dict next.

        The config is validated first (types, choices and the size bounds of
        :data:`gwn_fast.checkpoint.CONFIG_BOUNDS`), so a config from a file cannot ask for
        an absurd model; errors are :class:`gwn_fast.checkpoint.CheckpointError` naming
        ``source``."""
        from gwn_fast.checkpoint import CheckpointError, validate_config

        config = validate_config(config, source)
        # Checkpoints written before mean_steps existed used CompressAI's table layout.
        config.setdefault("mean_steps", 1)
        if config.pop("custom_modules", False):
            raise CheckpointError(f"{source}: this codec was built with user analysis/synthesis modules: rebuild it yourself")
        try:
            return cls(**config)
        except ValueError as err:
            raise CheckpointError(f"{source}: invalid codec config: {err}") from None

    # ---------------------------------------------------------------------------------
    # input handling
    # ---------------------------------------------------------------------------------
    def _prepare(self, x1, x2):
        if not isinstance(x1, torch.Tensor) or x1.ndim != 4 or x1.shape[1] != self.in_channels:
            got = tuple(x1.shape) if isinstance(x1, torch.Tensor) else type(x1).__name__
            raise ValueError(f"x1 must be a tensor [N, {self.in_channels}, H, W], got {got}")
        if not x1.is_floating_point():
            raise ValueError(f"x1 must be floating point, got {x1.dtype}")
        if x2 is None:
            x2 = x1
        elif not isinstance(x2, torch.Tensor) or x2.shape != x1.shape:
            got = tuple(x2.shape) if isinstance(x2, torch.Tensor) else type(x2).__name__
            raise ValueError(f"x2 must have x1's shape {tuple(x1.shape)}, got {got}: crop or pad x2 to x1's size")
        elif x2.device != x1.device or x2.dtype != x1.dtype:
            raise ValueError(f"x2 must be on x1's device/dtype ({x1.device}, {x1.dtype}), got ({x2.device}, {x2.dtype})")
        H, W = x1.shape[2], x1.shape[3]
        if H == 0 or W == 0 or x1.shape[0] == 0:
            raise ValueError(f"x1 must be non-empty, got shape {tuple(x1.shape)}")
        pad_h, pad_w = (-H) % self.stride, (-W) % self.stride
        if pad_h or pad_w:
            x1 = nnf.pad(x1, (0, pad_w, 0, pad_h))
            x2 = nnf.pad(x2, (0, pad_w, 0, pad_h))
        return x1, x2, (H, W)

    def _analyze(self, x1, x2, continuous_y0: bool = True):
        """``(latents, continuous, align)``: the quantized latents (integer-valued,
        straight-through), the encoder's unrounded outputs they round (for the shared
        architecture's Y0: ``match * (c1 + c2) / 2`` over the two candidates, 0 where they
        do not match; left out, and its match mask not computed, unless ``continuous_y0``),
        and the alignment loss."""
        arch, a = self.architecture, self.analysis
        both = torch.cat([x1, x2], 1) if arch != "independent" else None
        Cb = self.common_channels
        align = x1.new_zeros(())
        if arch == "shared":
            h1, h2 = a[0](both), a[1](both)
            c1, c2 = h1[:, :Cb], h2[:, :Cb]
            y0, align = F.match_merge(c1, c2, quantize=True)
            continuous = {"y1": h1[:, Cb:], "y2": h2[:, Cb:]}
            if continuous_y0:
                with torch.no_grad():
                    match = quantize_ref(c1) == quantize_ref(c2)
                continuous["y0"] = torch.where(match, 0.5 * (c1 + c2), torch.zeros((), dtype=c1.dtype, device=c1.device))
            latents = {"y0": y0, "y1": quantize_ste(h1[:, Cb:]), "y2": quantize_ste(h2[:, Cb:])}
            return latents, continuous, align
        if arch == "separated":
            continuous = {"y0": a[2](both), "y1": a[0](both), "y2": a[1](both)}
        elif arch == "combined":
            Cp = self.latent_sizes["y1"]
            h = a[0](both)
            continuous = {"y1": h[:, :Cp], "y2": h[:, Cp : 2 * Cp], "y0": h[:, 2 * Cp :]}
        elif arch == "independent":
            continuous = {"y1": a[0](x1), "y2": a[1](x2)}
        else:
            continuous = {"y0": a[0](both)}
        return {name: quantize_ste(u) for name, u in continuous.items()}, continuous, align

    def _synthesize(self, latents, size, receivers=(1, 2)):
        H, W = size
        out = {}
        for i in receivers:
            own = latents.get(f"y{i}")
            parts = [t for t in (latents.get("y0"), own) if t is not None]
            z = self.synthesis[i - 1](torch.cat(parts, 1))
            if z.ndim == 4 and z.shape[2] >= H and z.shape[3] >= W and z.shape[2] % self.stride == 0:
                z = z[:, :, :H, :W]
            out[i] = z
        return out

    # ---------------------------------------------------------------------------------
    # training / rate estimate
    # ---------------------------------------------------------------------------------
    def forward(self, x1: torch.Tensor, x2: torch.Tensor | None = None) -> dict:
        """Training / rate-estimate pass.

        Returns a dict:

        - ``"z_hat"``: ``{1: z1, 2: z2}``, the task outputs;
        - ``"bits"``: ``{"y0", "y1", "y2"}`` -> ``[N]``, each sample's rate in bits (the
          fused :func:`gwn_fast.functional.gaussian_rate`; no likelihood tensor is made);
        - ``"likelihoods"``: a read-only mapping ``{"y0", "y1", "y2"}`` -> ``[N, C, h, w]``
          (CompressAI's contract), computed on first access; ``-log2`` of it has
          ``"bits"``' values and gradients (with ``rate_grad="noise"`` it draws its own
          noise sample);
        - ``"align_loss"`` (scalar), ``"latents"`` (the quantized latents, as decoded),
          ``"num_pixels"`` (``N*H*W``).

        Channels an architecture lacks are absent. In training mode the rate's gradient
        follows ``rate_grad`` (in eval mode always ``"ste"``); the contexts, conditioning
        branches and synthesis see the quantized latents, as the decoder does.
        """
        x1p, x2p, size = self._prepare(x1, x2)
        rate_grad = self.rate_grad if self.training else "ste"
        latents, continuous, align = self._analyze(x1p, x2p, continuous_y0=rate_grad != "ste")
        bits, likelihoods = {}, {}
        for name, y in latents.items():
            u = continuous[name] if rate_grad != "ste" else None
            bits[name], likelihoods[name] = self.latent_codecs[name](y, u, latents.get("y0"), rate_grad)
        return {
            "z_hat": self._synthesize(latents, size),
            "bits": bits,
            "likelihoods": LazyLikelihoods(likelihoods),
            "align_loss": align,
            "latents": latents,
            "num_pixels": x1.shape[0] * size[0] * size[1],
        }

    # ---------------------------------------------------------------------------------
    # tables
    # ---------------------------------------------------------------------------------
    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False) -> bool:
        """Build the CDF tables (CompressAI semantics). Returns True if anything was built."""
        updated = super().update(force=force, update_quantiles=update_quantiles) if any(
            True for _ in self._compressai_entropy_modules()
        ) else False
        if scale_table is not None:
            table = torch.as_tensor(scale_table, dtype=torch.float64)
            if not torch.equal(table, self.gaussian.scale_table.cpu()):
                self.gaussian.scale_table = table.to(self.gaussian.scale_table.device)
                force = True
        updated = self.gaussian.update(force=force) or updated
        for lc in self.latent_codecs.values():
            updated = lc.update(force=False) or updated  # tables done above; integer networks re-derived
        return updated

    def _compressai_entropy_modules(self):
        from compressai.entropy_models import EntropyModel

        return (m for m in self.modules() if isinstance(m, EntropyModel))

    def aux_loss(self) -> torch.Tensor:
        """CompressAI's auxiliary loss: the bottleneck's quantile loss with
        ``y0_prior="bottleneck"`` (it trains only ``latent_codecs.y0.bottleneck.quantiles``, which set the
        tables' range); zero with the Gaussian prior. Always a tensor, so ``.backward()`` works."""
        loss = super().aux_loss()
        if isinstance(loss, torch.Tensor):
            return loss
        return next(self.parameters()).new_zeros(())

    # ---------------------------------------------------------------------------------
    # real bitstreams
    # ---------------------------------------------------------------------------------
    def _latent_shape(self, size):
        H, W = size
        return -(-H // self.stride), -(-W // self.stride)

    def _check_tables(self) -> None:
        for lc in self.latent_codecs.values():
            lc.check_ready()  # raises with the fix if update() was not called

    def _check_compress_input(self, x1, x2) -> None:
        """What ``compress`` refuses up front, naming the argument and the fix: inputs the
        decoder could not rebuild (non-finite values), or that do not fit the model."""
        param = next(self.parameters())
        for arg, x in (("x1", x1), ("x2", x2)):
            if x is None or not isinstance(x, torch.Tensor):
                continue
            if not x.is_floating_point():
                raise ValueError(f"{arg} must be a floating-point tensor, got {x.dtype}: pass {arg}.float()")
            if x.dtype != param.dtype:
                raise ValueError(
                    f"{arg} has dtype {x.dtype} but the codec's weights are {param.dtype}: pass {arg}.to({param.dtype})"
                )
            if x.device != param.device:
                raise ValueError(f"{arg} is on {x.device} but the codec is on {param.device}: pass {arg}.to('{param.device}')")
            if x.ndim == 4 and x.numel() and not bool(torch.isfinite(x).all()):
                bad = int((~torch.isfinite(x)).sum())
                raise ValueError(
                    f"{arg} holds {bad} non-finite values (NaN or inf), which cannot be coded: clean the input "
                    f"first (e.g. torch.nan_to_num({arg}))"
                )
        size = self.config.get("input_size")
        if (
            self.config.get("head") == "mlp"
            and size is not None
            and isinstance(x1, torch.Tensor)
            and x1.ndim == 4
            and list(x1.shape[2:]) != list(size)
        ):
            raise ValueError(
                f"x1 is {x1.shape[2]}x{x1.shape[3]} but this codec's MLP heads were built for input_size="
                f"({size[0]}, {size[1]}): resize or crop the input to {size[0]}x{size[1]}"
            )

    @torch.no_grad()
    def compress(self, x1: torch.Tensor, x2: torch.Tensor | None = None, *, single_stream: bool = False) -> dict:
        """Encode to real bitstreams.

        Args:
            x1, x2: ``[N, in_channels, H, W]`` (``x2=None``: x1 feeds both encoders).
            single_stream: ``False`` (default): one ``bytes`` per sample and channel, so
                samples decode independently. ``True``: one ``bytes`` per channel for the
                whole batch (the samples' symbols back to back), which pays the stream's
                fixed cost (header, checksum, flush: a few bytes) once instead of per
                sample; use it for tiny latents, e.g. when sending a whole test set.
        Returns:
            ``{"strings": {"common": [...], "private1": [...], "private2": [...]},
            "shape": {"input": (H, W), "latent": (h, w), "samples": N, "single_stream": bool}}``
            (channels the architecture lacks are absent).
        """
        self._check_tables()
        self._check_compress_input(x1, x2)
        x1p, x2p, size = self._prepare(x1, x2)
        latents, _, _ = self._analyze(x1p, x2p, continuous_y0=False)
        expected = self._latent_shape(size)
        for name, y in latents.items():
            if tuple(y.shape[2:]) != expected:
                raise ValueError(
                    f"the analysis transform gives a {tuple(y.shape[2:])} latent for a {size} input, not "
                    f"{expected} as stride={self.stride} implies: pass the analysis modules' true stride"
                )
            bad = ~torch.isfinite(y) | (y.abs() > 2**31 - 1)
            if bool(bad.any()):
                raise ValueError(
                    f"x1/x2 give latent values outside the coder's int32 range (latent {name!r} holds "
                    f"{int(bad.sum())} values that are inf/NaN or beyond +-2**31): the input is far outside what "
                    "the codec was trained on (scale it as at training time)"
                )
        y0 = latents.get("y0")
        strings = {
            STREAMS[name]: self.latent_codecs[name].compress(y, y0, single_stream=single_stream)
            for name, y in latents.items()
        }
        shape = {
            "input": tuple(size),
            "latent": tuple(latents[next(iter(latents))].shape[2:]),
            "samples": int(x1.shape[0]),
            "single_stream": bool(single_stream),
        }
        return {"strings": strings, "shape": shape}

    @staticmethod
    def _receivers(receivers) -> tuple[int, ...]:
        """``receivers`` as a tuple: a single int (``receivers=1``) or a sequence of them."""
        if isinstance(receivers, (int, np.integer)) and not isinstance(receivers, bool):
            receivers = (int(receivers),)
        try:
            receivers = tuple(receivers)
        except TypeError:
            raise TypeError(f"receivers must be 1, 2 or a sequence of them such as (1, 2), got {receivers!r}") from None
        if (
            not receivers
            or any(isinstance(r, bool) or r not in (1, 2) for r in receivers)
            or len(set(receivers)) != len(receivers)
        ):
            raise ValueError(f"receivers must be 1, 2 or a non-empty subset of (1, 2), got {receivers!r}")
        return tuple(int(r) for r in receivers)

    def _check_stream_shape(self, shape: dict, limits, channels: int, count: int) -> tuple:
        """The ``shape`` dict (from a container or ``compress()``) checked against itself,
        the model and ``limits`` before anything is allocated from it; returns
        ``(input, latent, samples_or_None, single_stream)``. Raises BitstreamError."""
        from gwn_fast.container import check_header

        def pair(key):
            v = shape[key]
            if not isinstance(v, (tuple, list)) or len(v) != 2 or not all(
                isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in v
            ):
                raise BitstreamError(f"shape[{key!r}] must be a pair of integers, got {v!r}")
            return int(v[0]), int(v[1])

        (H, W), (h, w) = pair("input"), pair("latent")
        single = shape.get("single_stream", False)
        if not isinstance(single, (bool, np.bool_)):
            raise BitstreamError(f"shape['single_stream'] must be a bool, got {single!r}")
        samples = shape.get("samples")
        if samples is not None and (not isinstance(samples, (int, np.integer)) or isinstance(samples, bool)):
            raise BitstreamError(f"shape['samples'] must be an integer, got {samples!r}")
        if single and samples is None:
            raise BitstreamError("shape says single_stream but not how many samples ('samples')")
        # Per-sample streams decode any subset of samples; a single stream holds them all.
        if single and count != 1:
            raise BitstreamError(f"shape says single_stream but strings hold {count} streams per channel, not 1")
        # (per-sample streams: any subset of a batch's samples decodes with its shape dict)
        n = int(samples) if single else count
        if n < 1:
            raise BitstreamError("strings hold no streams: nothing to decode")
        check_header(H, W, h, w, n, limits)
        expected = self._latent_shape((H, W))
        if (h, w) != expected:
            raise BitstreamError(
                f"the latent grid {h}x{w} does not match the input size {H}x{W} at this model's stride "
                f"{self.stride} (expected {expected[0]}x{expected[1]}): the stream is corrupt or was written "
                "by a codec of another configuration"
            )
        size = self.config.get("input_size")
        if self.config.get("head") == "mlp" and size is not None and [H, W] != list(size):
            raise BitstreamError(
                f"the stream is for {H}x{W} inputs but this codec's MLP heads take {size[0]}x{size[1]}: "
                "it was written by another codec (or is corrupt)"
            )
        if n * channels * h * w > limits.max_latent_elements:
            raise BitstreamError(
                f"decoding needs {n:,} x {channels} x {h} x {w} = {n * channels * h * w:,} latent values, more than "
                f"limits.max_latent_elements={limits.max_latent_elements:,} (corrupt, or pass a larger "
                "gwn_fast.container.Limits)"
            )
        return (H, W), (h, w), n, bool(single)

    @torch.no_grad()
    def decompress(self, strings: dict, shape: dict, receivers: Sequence[int] | int = (1, 2), *, limits=None) -> dict:
        """Decode what receivers need: the common channel plus each one's private channel.

        ``decompress(strings, shape, receivers=(1,))`` (or ``receivers=1``) works without
        ``"private2"``. Returns ``{"z_hat": {i: prediction}, "latents": {...}}`` (float32,
        on the model's device).

        Everything is checked before anything is allocated or decoded: the shape's fields
        against each other, the model (latent grid = input size / stride; MLP heads' input
        size) and ``limits`` (a :class:`gwn_fast.container.Limits`, default
        ``container.DEFAULT_LIMITS``); every stream's header, its symbol count against the
        latent shape. Then each stream's checksum is verified as it is decoded.

        Raises:
            BitstreamError: the streams or the shape are corrupt, exceed ``limits``, or
                were written by a codec of another configuration.
            ValueError / TypeError: bad arguments (``receivers``, a ``shape`` that is not
                compress()'s dict, a channel the receivers need is missing).
            RuntimeError: ``update()`` was not called.
        """
        from gwn_fast.container import DEFAULT_LIMITS, Limits

        self._check_tables()
        receivers = self._receivers(receivers)
        limits = DEFAULT_LIMITS if limits is None else limits
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a gwn_fast.container.Limits, got {type(limits).__name__}")
        if not isinstance(shape, dict) or "input" not in shape or "latent" not in shape:
            raise ValueError("shape must be the 'shape' dict returned by compress() (or container.unpack())")
        if not isinstance(strings, dict):
            raise ValueError(f"strings must be the 'strings' dict returned by compress(), got {type(strings).__name__}")
        needed = [n for n in ("y0", *(f"y{r}" for r in receivers)) if n in self.latent_sizes]
        for name in needed:
            if STREAMS[name] not in strings:
                hint = f"; pass receivers=({3 - int(name[1])},) to decode the other receiver only" if name != "y0" else ""
                # a BitstreamError: the container (e.g. another receiver's extract) lacks it
                raise BitstreamError(f"strings lacks {STREAMS[name]!r}, needed by receivers {receivers}{hint}")
            streams = strings[STREAMS[name]]
            if not isinstance(streams, (list, tuple)) or not all(isinstance(b, (bytes, bytearray, memoryview)) for b in streams):
                raise ValueError(f"strings[{STREAMS[name]!r}] must be a list of bytes (one per sample, or one)")
        counts = {len(strings[STREAMS[n]]) for n in needed}
        if len(counts) != 1:
            raise BitstreamError(f"strings hold different numbers of streams per channel: {sorted(counts)}")
        channels = sum(self.latent_sizes[n] for n in needed)
        input_size, latent_shape, samples, single = self._check_stream_shape(shape, limits, channels, counts.pop())
        h, w = latent_shape
        # Every stream's header, before decoding anything: its symbol count must be what
        # the latent shape needs (a shape from another image or a codec of another
        # configuration is caught here, in these words).
        decoders = {
            name: self.latent_codecs[name].open_streams(
                strings[STREAMS[name]], latent_shape, samples, single, STREAMS[name], limits.max_symbols
            )
            for name in needed
        }
        device = next(self.parameters()).device
        latents = {}
        for name in needed:  # y0 first: the private latents are conditioned on it
            try:
                latents[name] = self.latent_codecs[name].decompress(
                    decoders[name], latent_shape, samples, latents.get("y0"), single_stream=single, device=device
                )
            except BitstreamError:
                raise
            except ValueError as err:
                # e.g. symbols decoded from corrupt bytes: still the bytes' fault
                raise BitstreamError(f"the {STREAMS[name]} stream is corrupt: {str(err).splitlines()[0]}") from None
            decoders[name] = None  # release the streams
        latents = {n: v.to(torch.float32) for n, v in latents.items()}
        return {"z_hat": self._synthesize(latents, input_size, receivers), "latents": latents}


def _rename_legacy_keys(module, state_dict, prefix, *args, **kwargs):
    """Checkpoints written before the latent codecs (``entropy_parameters.<name>.*``,
    ``y0_bottleneck.*``) load into ``latent_codecs.<name>.*``. Their integer entropy
    parameters did not exist: they are derived by ``update()``, so missing ones stay at
    their empty defaults (flagged not ready) instead of failing a strict load."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix) :]
        if rest.startswith("entropy_parameters."):
            name, _, tail = rest[len("entropy_parameters.") :].partition(".")
            state_dict[f"{prefix}latent_codecs.{name}.entropy_parameters.{tail}"] = state_dict.pop(key)
        elif rest.startswith("y0_bottleneck."):
            state_dict[f"{prefix}latent_codecs.y0.bottleneck.{rest[len('y0_bottleneck.'):]}"] = state_dict.pop(key)
    legacy = any(k.startswith(prefix + "latent_codecs.") and ".entropy_parameters." in k for k in state_dict) and not any(
        k.startswith(prefix + "latent_codecs.") and ".integer." in k for k in state_dict
    )
    if legacy:
        for name, lc in module.latent_codecs.items():
            for key, value in lc.integer.state_dict().items():
                state_dict.setdefault(f"{prefix}latent_codecs.{name}.integer.{key}", value)
