"""The AU classifier of the multi-class adversarial game (transfer paper).

It reads the AU-free feature and predicts, for each AU, which intensity class (0..5, rounded) the face shows.
The classifier minimises its cross-entropy; the appearance encoder minimises ``confusion_loss``, the
cross-entropy of the classifier's predictions against the uniform distribution, so that at equilibrium the AU-free
feature says nothing about the AUs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import ConvBlock
from .config import ModelConfig


class AUClassifier(nn.Module):
    """(B, C, h, w) AU-free feature -> (B, au_count, au_bins) logits."""

    def __init__(self, config: ModelConfig, feature_channels: int) -> None:
        super().__init__()
        self.au_count, self.au_bins = config.au_count, config.au_bins
        self.body = nn.Sequential(ConvBlock(feature_channels, feature_channels), ConvBlock(feature_channels, 64))
        self.head = nn.Linear(64, config.au_count * config.au_bins)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        pooled = self.body(feature).mean(dim=(2, 3))
        return self.head(pooled).view(-1, self.au_count, self.au_bins)


def au_classes(aus: torch.Tensor, bins: int) -> torch.Tensor:
    """(B, A) intensities in [0, 5] -> (B, A) int64 classes 0..bins-1."""
    scaled = aus.clamp(0, 5) * (bins - 1) / 5.0
    return scaled.round().long()


def classifier_loss(logits: torch.Tensor, aus: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, A, K) logits against the AU classes; the classifier's objective."""
    classes = au_classes(aus, logits.shape[-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), classes.reshape(-1))


def confusion_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, A, K) logits against the uniform distribution; the encoder's objective.

    Its minimum, log K, is reached when every class is equally likely.
    """
    return -F.log_softmax(logits.float(), dim=-1).mean(dim=-1).mean()
