"""The generator: a U-Net with multi-scale feature fusion skips, a motion step and a texture step.

From the manipulation paper: the skips pass through multi-scale fusion (MSF) blocks that mix each level's AU-free
feature with the next coarser one and with the condition (the AU-related feature of the driver and the relative AU
vector), so only the regions whose AUs change are rewritten. From the deformation paper: the decoder first predicts
a deformation field that warps the input crop (motion), then a texture residual and a blend mask that add what a
warp cannot (teeth, mouth interior, shading); where the mask is 0 the warped input is kept as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import ConvBlock, ResBlock, level_channels, upsample
from .config import ModelConfig

CONDITION_CHANNELS = 16  # the condition vector, projected and tiled, at each fusion block


@dataclass
class GeneratorOutput:
    """What the generator makes of one batch; every image is (B, 3, S, S) in about [-1, 1]."""

    image: torch.Tensor  # the edited crop: warped + mask * residual
    warped: torch.Tensor  # the input after the motion step alone
    flow: torch.Tensor  # (B, S, S, 2) displacement in grid_sample's normalised units
    residual: torch.Tensor  # (B, 3, S, S) texture step
    mask: torch.Tensor  # (B, 1, S, S) in [0, 1]: where the texture step is used


class FusionBlock(nn.Module):
    """MSF: level k's feature, the coarser level k+1 upsampled, and the tiled condition -> (B, c_k, h_k, w_k)."""

    def __init__(self, fine: int, coarse: int, condition: int) -> None:
        super().__init__()
        self.condition = nn.Linear(condition, CONDITION_CHANNELS)
        self.mix = nn.Conv2d(fine + coarse + CONDITION_CHANNELS, fine, 1)
        self.refine = ConvBlock(fine, fine)

    def forward(self, fine: torch.Tensor, coarse: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        size = fine.shape[-2:]
        tiled = self.condition(condition)[:, :, None, None].expand(-1, -1, *size)
        return self.refine(self.mix(torch.cat([fine, upsample(coarse, size), tiled], dim=1)))


class UpLevel(nn.Module):
    """Decoder step: upsample to level k and merge with its fused skip -> (B, c_k, h_k, w_k)."""

    def __init__(self, coarse: int, fine: int) -> None:
        super().__init__()
        self.merge = ConvBlock(coarse + fine, fine)
        self.refine = ConvBlock(fine, fine)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.refine(self.merge(torch.cat([upsample(x, skip.shape[-2:]), skip], dim=1)))


class Generator(nn.Module):
    """AU-free features of the target crop + condition -> ``GeneratorOutput``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        widths = level_channels(config.channels, config.max_channels, config.depth)
        condition = config.expression_dim + config.au_count
        self.max_flow = config.max_flow
        self.flow_level = min(2, config.depth - 1)  # the field is predicted at S/4 and upsampled: smooth motion
        self.inject = nn.Conv2d(widths[-1] + CONDITION_CHANNELS, widths[-1], 1)
        self.condition = nn.Linear(condition, CONDITION_CHANNELS)
        self.bottleneck = nn.Sequential(ResBlock(widths[-1]), ResBlock(widths[-1]))
        self.fusions = nn.ModuleList(FusionBlock(widths[k], widths[k + 1], condition) for k in range(config.depth))
        self.ups = nn.ModuleList(UpLevel(widths[k + 1], widths[k]) for k in range(config.depth))
        self.flow_head = nn.Conv2d(widths[self.flow_level], 2, 3, 1, 1)
        self.texture_head = nn.Conv2d(widths[0], 4, 3, 1, 1)
        nn.init.zeros_(self.flow_head.weight)  # start as the identity warp
        nn.init.zeros_(self.flow_head.bias)

    def forward(self, image: torch.Tensor, features: list[torch.Tensor], expression: torch.Tensor,
                relative_aus: torch.Tensor) -> GeneratorOutput:
        """image (B, 3, S, S) the target crop; features from ``AppearanceEncoder``; expression (B, E) from the
        driver's ``ExpressionEncoder``; relative_aus (B, 17) destination AUs minus the crop's own."""
        condition = torch.cat([expression, relative_aus.to(expression.dtype)], dim=1)
        x = self._bottleneck(features[-1], condition)
        flow = None
        for k in reversed(range(len(self.ups))):
            skip = self.fusions[k](features[k], features[k + 1], condition)
            x = self.ups[k](x, skip)
            if k == self.flow_level:
                flow = upsample(self.flow_head(x), image.shape[-2:])
        return self._compose(image, flow, self.texture_head(x))

    def _bottleneck(self, feature: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        tiled = self.condition(condition)[:, :, None, None].expand(-1, -1, *feature.shape[-2:])
        return self.bottleneck(self.inject(torch.cat([feature, tiled], dim=1)))

    def _compose(self, image: torch.Tensor, flow: torch.Tensor, texture: torch.Tensor) -> GeneratorOutput:
        flow = self.max_flow * torch.tanh(flow).permute(0, 2, 3, 1)
        warped = warp(image, flow)
        residual = 2.0 * torch.tanh(texture[:, :3])
        mask = torch.sigmoid(texture[:, 3:] - 2.0)  # starts mostly closed: the warp alone
        return GeneratorOutput(warped + mask * residual, warped, flow, residual, mask)


def identity_grid(batch: int, height: int, width: int, device, dtype) -> torch.Tensor:
    """(B, H, W, 2) sampling grid of the identity warp in grid_sample's normalised coordinates."""
    theta = torch.eye(2, 3, device=device, dtype=dtype).expand(batch, 2, 3)
    return F.affine_grid(theta, [batch, 1, height, width], align_corners=False)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: out(p) = image(p + flow(p)); image (B, C, H, W), flow (B, H, W, 2) normalised units."""
    b, _, h, w = image.shape
    grid = identity_grid(b, h, w, image.device, image.dtype) + flow.to(image.dtype)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)
