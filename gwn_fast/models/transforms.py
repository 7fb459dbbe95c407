"""Analysis / synthesis transforms.

- ``image``: the paper's stack (ELIC-like): four 5x5 stride-2 convolutions, 16x
  downsampling, each of the first three followed by residual bottleneck blocks; no GDN.
- ``light``: ``depth`` stride-2 3x3 convolutions (2**depth downsampling) for small inputs
  (8x8 to 32x32 images, synthetic sources).
"""

from __future__ import annotations

from torch import nn

__all__ = ["ResidualBottleneck", "image_analysis", "image_synthesis", "light_analysis", "light_synthesis", "mlp_head"]


class ResidualBottleneck(nn.Module):
    """x + (1x1 -> ELU -> 3x3 -> ELU -> 1x1)(x); shape-preserving ``[B, C, H, W]``."""

    def __init__(self, channels: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ELU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ELU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x):
        return x + self.body(x)


def image_analysis(in_channels: int, out_channels: int, widths=(24, 48, 192), blocks: int = 3) -> nn.Sequential:
    """``[B, in, H, W] -> [B, out, H/16, W/16]`` (H, W multiples of 16)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        layers.append(nn.Conv2d(channels, width, 5, stride=2, padding=2))
        layers.extend(ResidualBottleneck(width) for _ in range(blocks))
        channels = width
    layers.append(nn.Conv2d(channels, out_channels, 5, stride=2, padding=2))
    return nn.Sequential(*layers)


def image_synthesis(in_channels: int, out_channels: int, widths=(192, 48, 24), blocks: int = 3) -> nn.Sequential:
    """``[B, in, h, w] -> [B, out, 16h, 16w]``: the mirror of :func:`image_analysis`."""
    layers: list[nn.Module] = []
    channels = in_channels
    for width in widths:
        layers.append(nn.ConvTranspose2d(channels, width, 5, stride=2, padding=2, output_padding=1))
        layers.extend(ResidualBottleneck(width) for _ in range(blocks))
        channels = width
    layers.append(nn.ConvTranspose2d(channels, out_channels, 5, stride=2, padding=2, output_padding=1))
    return nn.Sequential(*layers)


def _light_stack(in_channels: int, out_channels: int, hidden: int, depth: int, stride2_layer) -> nn.Sequential:
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    layers: list[nn.Module] = []
    channels = in_channels
    for i in range(depth):
        last = i == depth - 1
        layers.append(stride2_layer(channels, out_channels if last else hidden))
        if not last:
            layers.append(nn.LeakyReLU(0.1))
        channels = hidden
    return nn.Sequential(*layers)


def light_analysis(in_channels: int, out_channels: int, hidden: int = 32, depth: int = 3) -> nn.Sequential:
    """``[B, in, H, W] -> [B, out, H/2**depth, W/2**depth]``."""
    return _light_stack(in_channels, out_channels, hidden, depth, lambda i, o: nn.Conv2d(i, o, 3, stride=2, padding=1))


def light_synthesis(in_channels: int, out_channels: int, hidden: int = 32, depth: int = 3) -> nn.Sequential:
    """``[B, in, h, w] -> [B, out, h*2**depth, w*2**depth]``."""
    return _light_stack(
        in_channels, out_channels, hidden, depth,
        lambda i, o: nn.ConvTranspose2d(i, o, 3, stride=2, padding=1, output_padding=1),
    )


HEAD_ACTIVATIONS = {"sigmoid": nn.Sigmoid, "elu": nn.ELU}


def mlp_head(in_features: int, out_features: int, hidden: int = 256, activation: str = "sigmoid") -> nn.Sequential:
    """``[B, C, h, w] -> [B, out]``: flatten, one hidden layer (``"sigmoid"``: the paper's
    MNIST heads, or ``"elu"``), logits out. ``in_features = C * h * w``."""
    if activation not in HEAD_ACTIVATIONS:
        raise ValueError(f"head_activation must be one of {tuple(HEAD_ACTIVATIONS)}, got {activation!r}")
    return nn.Sequential(
        nn.Flatten(), nn.Linear(in_features, hidden), HEAD_ACTIVATIONS[activation](), nn.Linear(hidden, out_features)
    )
