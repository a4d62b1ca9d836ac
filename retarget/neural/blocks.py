"""Building blocks shared by the networks: conv layers with normalisation, down and up steps."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def level_channels(channels: int, max_channels: int, depth: int) -> list[int]:
    """Channel width of each level 0..depth: doubling from ``channels``, capped at ``max_channels``."""
    return [min(channels * 2 ** k, max_channels) for k in range(depth + 1)]


class ConvBlock(nn.Module):
    """3x3 conv, group norm, LeakyReLU: (B, cin, H, W) -> (B, cout, H / stride, W / stride)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm = nn.GroupNorm(min(8, cout), cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), 0.2)


class ResBlock(nn.Module):
    """Two ConvBlocks with a residual connection; (B, C, H, W) -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = ConvBlock(channels, channels)
        self.b = ConvBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class Down(nn.Module):
    """Halve the resolution: (B, cin, H, W) -> (B, cout, H/2, W/2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.down = ConvBlock(cin, cout, stride=2)
        self.refine = ConvBlock(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.down(x))


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to (B, C, *size)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
