"""Reporting metrics on 8-bit images (separate from the training losses).

All take uint8 tensors (B, C, H, W) (or (C, H, W)) in [0, 255] and return one value per
image as float64. SSIM and MS-SSIM use the functional cores of codec.losses.ssim with
data_range 255 (Wang et al. settings; equal to scikit-image's structural_similarity with
gaussian_weights=True, sigma=1.5, use_sample_covariance=False).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from codec.losses.ssim import ms_ssim as _ms_ssim
from codec.losses.ssim import ssim as _ssim


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() == 3:
        x, y = x[None], y[None]
    return x.double(), y.double()


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the 0-255 scale."""
    x, y = _pair(x, y)
    return (x - y).square().flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB with peak 255 (inf for identical images)."""
    return 10 * torch.log10(255.0**2 / mse(x, y))


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM (Wang et al. 2004) of 8-bit images."""
    return _ssim(*_pair(x, y), data_range=255.0)


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of 8-bit images (scales as in codec.losses.ssim)."""
    return _ms_ssim(*_pair(x, y), data_range=255.0)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel: 8 * bytes / (H * W), every byte of the file counted."""
    return 8.0 * num_bytes / (height * width)


def bd_rate(
    rate_a: Sequence[float], dist_a: Sequence[float], rate_b: Sequence[float], dist_b: Sequence[float]
) -> float:
    """Bjøntegaard delta rate of curve B against curve A, in percent: how many more bytes
    (negative: fewer) B needs for the same quality, averaged over the quality range both
    curves cover (VCEG-M33: log rate fitted as a cubic in the quality - a lower degree with
    fewer than four points - and integrated). NaN when the ranges do not overlap or a curve
    has fewer than two points."""
    curves = []
    for rate, dist in ((rate_a, dist_a), (rate_b, dist_b)):
        r, d = np.log(np.asarray(rate, dtype=float)), np.asarray(dist, dtype=float)
        if len(r) < 2 or len(np.unique(d)) < 2:
            return math.nan
        curves.append((np.polyfit(d, r, min(3, len(d) - 1)), d.min(), d.max()))
    lo, hi = max(curves[0][1], curves[1][1]), min(curves[0][2], curves[1][2])
    if not hi > lo:
        return math.nan
    area = [np.diff(np.polyval(np.polyint(p), [lo, hi]))[0] for p, _, _ in curves]
    return float((math.exp((area[1] - area[0]) / (hi - lo)) - 1) * 100)
