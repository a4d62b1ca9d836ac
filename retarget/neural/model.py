"""The networks together: encoders, generator and AU classifier (one module), the discriminator (another).

``RetargetNet.swap`` is the operation of the transfer paper: the AU-free feature of one crop with the AU-related
feature of another, conditioned on the relative AU vector, gives the first face with the second's expression.
"""

from __future__ import annotations

import torch
from torch import nn

from .appearance_encoder import AppearanceEncoder
from .au_classifier import AUClassifier
from .blocks import level_channels
from .config import ModelConfig
from .discriminator import MultiScaleDiscriminator
from .expression_encoder import ExpressionEncoder
from .generator import Generator, GeneratorOutput


class RetargetNet(nn.Module):
    """Everything used at inference, plus the AU classifier that trains against the appearance encoder."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.expression = ExpressionEncoder(config)
        self.appearance = AppearanceEncoder(config)
        self.generator = Generator(config)
        deepest = level_channels(config.channels, config.max_channels, config.depth)[-1]
        self.classifier = AUClassifier(config, deepest)

    def swap(self, appearance: torch.Tensor, expression: torch.Tensor,
             relative_aus: torch.Tensor) -> GeneratorOutput:
        """appearance, expression: (B, 3, S, S) in [-1, 1]; relative_aus (B, 17): expression's AUs minus
        appearance's. Returns the appearance crop with the expression crop's expression."""
        feature, _ = self.expression(expression)
        return self.generator(appearance, self.appearance(appearance), feature, relative_aus)

    def edit(self, image: torch.Tensor, relative_aus: torch.Tensor) -> GeneratorOutput:
        """Relative-AU editing without a driver (manipulation paper): the crop's own AU-related feature."""
        return self.swap(image, image, relative_aus)


def build(config: ModelConfig) -> tuple[RetargetNet, MultiScaleDiscriminator]:
    return RetargetNet(config), MultiScaleDiscriminator(config)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
