"""Loss terms of training, each a function of tensors (weights live in ``config.LossWeights``)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

DiscriminatorOutput = list[tuple[list[torch.Tensor], torch.Tensor]]  # per scale: (features, logits)


def reconstruction(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of two (B, 3, S, S) images."""
    return F.l1_loss(output.float(), target.float())


def discriminator_hinge(real: DiscriminatorOutput, fakes: list[DiscriminatorOutput]) -> torch.Tensor:
    """The discriminator's hinge loss: real logits above +1, every fake's below -1, summed over scales."""
    loss = sum(F.relu(1 - logits.float()).mean() for _, logits in real)
    for fake in fakes:
        loss = loss + sum(F.relu(1 + logits.float()).mean() for _, logits in fake) / len(fakes)
    return loss


def generator_hinge(fake: DiscriminatorOutput) -> torch.Tensor:
    """The generator's side of the hinge game: raise the fake logits."""
    return -sum(logits.float().mean() for _, logits in fake)


def feature_matching(real: DiscriminatorOutput, fake: DiscriminatorOutput) -> torch.Tensor:
    """L1 between the discriminator's features of real and generated images (real side not trained through).

    Stands in for a perceptual loss: no pretrained VGG can be downloaded here.
    """
    terms = [F.l1_loss(f.float(), r.detach().float()) for (rf, _), (ff, _) in zip(real, fake) for r, f in zip(rf, ff)]
    return sum(terms) / len(terms)


def au_regression(predicted: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of (B, 17) AU intensities."""
    return F.l1_loss(predicted.float(), labels.float())
