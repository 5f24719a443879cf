"""The learned prior of the rate-distortion model: a factorised density per latent dimension.

Ballé, Laparra & Simoncelli / Ballé et al. 2017 ("variational image compression", the
density of CompressAI's EntropyBottleneck, re-derived here): each latent dimension d has a
cumulative c_d(v) = sigmoid(f_d(v)), where f_d is a small monotone network
R -> R^3 -> R^3 -> R^3 -> R whose matrices are kept positive through softplus and whose
tanh "factors" bend it. The probability of the quantisation bin of width `step` centred on
v is c_d(v + step/2) - c_d(v - step/2); training adds uniform noise of that width instead of
rounding (the bin probability is then the noisy latent's density), so the rate term
-log2 p is differentiable.

Rounding is anchored at a per-dimension centre (the running mean of the encoder's output,
tracked in training), so a dimension the encoder leaves constant costs no bits and is
reproduced exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: Smallest bin probability used for rates, so that log2 stays finite.
MIN_LIKELIHOOD = 1e-9


class FactorizedPrior(nn.Module):
    """Per-dimension learned density over a latent vector y (B, nz)."""

    def __init__(self, nz: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((nz, dims[i + 1], dims[i]), init)))
            # uniform_ in place: the same draws as rand() - 0.5, and no arithmetic for a
            # network built on the meta device (codec.modelfile), where it imports torch._dynamo
            self.biases.append(nn.Parameter(torch.empty(nz, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(nz, dims[i + 1], 1)))
        self.register_buffer("centre", torch.zeros(nz))
        self.nz = nz

    def logits_cdf(self, v: torch.Tensor) -> torch.Tensor:
        """f(v): (B, nz) -> (B, nz), the logit of each dimension's cumulative at v."""
        x = v.t().unsqueeze(1)  # (nz, 1, B)
        for i, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(m), x) + b  # (nz, out, B)
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x.squeeze(1).t()

    def likelihood(self, v: torch.Tensor, step: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Probability of the width-`step` bin centred on each value of v (B, nz)."""
        half = torch.as_tensor(step, dtype=v.dtype, device=v.device) / 2
        lower = self.logits_cdf(v - half)
        upper = self.logits_cdf(v + half)
        # Evaluate on the side of the median where the sigmoids are far from 1 (precision);
        # never a zero sign, which would give a bin straddling the median probability 0.
        sign = torch.where(lower + upper > 0, -1.0, 1.0).to(v.dtype).detach()
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return p.clamp_min(MIN_LIKELIHOOD)

    def bits(self, v: torch.Tensor, step: torch.Tensor | float = 1.0) -> torch.Tensor:
        """-log2 of the bin probabilities, summed per row: (B, nz) -> (B,)."""
        return -torch.log2(self.likelihood(v, step)).sum(1)

    def quantize(self, y: torch.Tensor, step: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Integer symbols: y rounded to the grid of `step` anchored at the centre."""
        return torch.round((y - self.centre) / step).long()

    def dequantize(self, symbols: torch.Tensor, step: torch.Tensor | float = 1.0) -> torch.Tensor:
        return symbols.to(self.centre.dtype) * step + self.centre

    def rounded(self, y: torch.Tensor, step: torch.Tensor | float = 1.0) -> torch.Tensor:
        """y on the grid of `step`: the latent that coding reproduces."""
        return self.dequantize(self.quantize(y, step), step)

    def round_ste(self, y: torch.Tensor, step: torch.Tensor | float = 1.0) -> torch.Tensor:
        """Rounded in the forward pass, identity gradient (straight-through)."""
        return y + (self.rounded(y.detach(), step) - y).detach()

    def noisy(self, y: torch.Tensor, step: torch.Tensor | float, gen: torch.Generator | None) -> torch.Tensor:
        """Training's stand-in for rounding: uniform noise of one bin's width."""
        u = torch.rand(y.shape, generator=gen).to(y.device) - 0.5
        return y + u * step

    @torch.no_grad()
    def track_centre(self, y: torch.Tensor, momentum: float = 0.01) -> None:
        self.centre.lerp_(y.detach().mean(0), momentum)
