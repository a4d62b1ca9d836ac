"""The expression encoder: the AU-related feature of a face crop, and the 17 AU intensities read from it.

The AU head is the auxiliary task of the transfer paper (labels: the project's own AU estimates, each relative to
the person's neutral); during training it also scores the generator's outputs (AU regression on outputs).
"""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from .blocks import ConvBlock, Down, level_channels
from .config import ModelConfig


class ExpressionEncoder(nn.Module):
    """(B, 3, S, S) in [-1, 1] -> feature (B, expression_dim) and AUs (B, au_count) in [0, 5]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = level_channels(config.channels, config.max_channels, config.depth)
        self.stem = ConvBlock(3, widths[0])
        self.levels = nn.Sequential(*(Down(a, b) for a, b in pairwise(widths)))
        self.project = nn.Linear(widths[-1], config.expression_dim)
        self.au_head = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(config.expression_dim, config.au_count))

    def forward_features(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> (B, expression_dim)."""
        pooled = self.levels(self.stem(image)).mean(dim=(2, 3))
        return self.project(pooled)

    def forward_head(self, feature: torch.Tensor) -> torch.Tensor:
        """(B, expression_dim) -> (B, au_count) intensities in [0, 5]."""
        return 5.0 * torch.sigmoid(self.au_head(feature))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.forward_features(image)
        return feature, self.forward_head(feature)
