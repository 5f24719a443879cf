"""The encoder E of the rate-distortion model: image -> latent vector, DCGAN-discriminator shaped."""

from __future__ import annotations

import torch
from torch import nn

from codec.generator import ModelConfig, _init_weights


class Encoder(nn.Module):
    """image (B, nc, size, size) in [-1, 1] -> y (B, nz), unquantised.

    For size 64, ndf 32 (the shipped half width), shapes are:
      (B,3,64,64) -conv 4x4 s2-> (B,32,32,32) -> (B,64,16,16) -> (B,128,8,8) -> (B,256,4,4)
      -conv 4x4 s1-> (B,nz,1,1); LeakyReLU(0.2), BatchNorm after all but the first stage.
    It mirrors the discriminator, with nz outputs instead of one logit.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        ch = c.ndf
        layers: list[nn.Module] = [nn.Conv2d(c.nc, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(c.n_up - 1):  # each stage halves the side and doubles the channels
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers += [nn.Conv2d(ch, c.nz, 4, 1, 0)]  # -> (nz, 1, 1)
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten(1)
