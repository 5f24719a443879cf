"""Pixel losses: mean squared and mean absolute error per image."""

from __future__ import annotations

import torch
from torch import nn

from codec.losses import register_loss


@register_loss("mse", "mean squared error of pixels (favours blurry averages)", data_range=(-1.0, 1.0))
class MSELoss(nn.Module):
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (input - target).square().flatten(1).mean(1)


@register_loss("l1", "mean absolute error of pixels", data_range=(-1.0, 1.0))
class L1Loss(nn.Module):
    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (input - target).abs().flatten(1).mean(1)
