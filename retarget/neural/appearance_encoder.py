"""The appearance encoder: the AU-free feature of a face crop (identity, pose, texture, lighting), spatial.

It returns one feature map per level; the deepest, ``features[-1]`` (B, C, S / 2**depth, S / 2**depth), is the
AU-free feature that the AU classifier (``au_classifier.py``) tries to read AUs from, and the shallower ones feed
the generator's multi-scale fusion skips.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from .blocks import ConvBlock, Down, ResBlock, level_channels
from .config import ModelConfig


class AppearanceEncoder(nn.Module):
    """(B, 3, S, S) in [-1, 1] -> [(B, c_k, S / 2**k, S / 2**k) for k in 0..depth]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = level_channels(config.channels, config.max_channels, config.depth)
        self.stem = ConvBlock(3, widths[0])
        self.levels = nn.ModuleList(Down(a, b) for a, b in pairwise(widths))
        self.bottleneck = ResBlock(widths[-1])

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stem(image)]
        for level in self.levels:
            features.append(level(features[-1]))
        features[-1] = self.bottleneck(features[-1])
        return features
