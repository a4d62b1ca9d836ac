"""Patch discriminators at several scales; their intermediate features also serve the feature-matching loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import ModelConfig


class PatchDiscriminator(nn.Module):
    """(B, 3, S, S) -> features of each layer and (B, 1, s, s) realness logits, one per patch."""

    def __init__(self, channels: int, layers: int, max_channels: int = 256) -> None:
        super().__init__()
        blocks, cin = [], 3
        for k in range(layers + 1):
            cout = min(channels * 2 ** k, max_channels)
            norm = nn.Identity() if k == 0 else nn.GroupNorm(min(8, cout), cout)
            blocks.append(nn.Sequential(nn.Conv2d(cin, cout, 4, 2 if k < layers else 1, 1), norm,
                                        nn.LeakyReLU(0.2)))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.logits = nn.Conv2d(cin, 1, 3, 1, 1)

    def forward(self, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        features, x = [], image
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features, self.logits(x)


class MultiScaleDiscriminator(nn.Module):
    """One ``PatchDiscriminator`` per scale (the crop, then halved each time)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            PatchDiscriminator(config.discriminator_channels, config.discriminator_layers)
            for _ in range(config.discriminator_scales))

    def forward(self, image: torch.Tensor) -> list[tuple[list[torch.Tensor], torch.Tensor]]:
        out = []
        for k, disc in enumerate(self.scales):
            out.append(disc(image if k == 0 else F.avg_pool2d(image, 2 ** k)))
        return out
