"""SSIM (Wang et al. 2004) and MS-SSIM (Wang, Simoncelli & Bovik 2003).

SSIM: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, C = (K * data_range)^2, the map
over the valid (unpadded) area, averaged over pixels and channels. This equals
scikit-image's structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=L, channel_axis=...).

MS-SSIM at small sizes: five scales of an 11x11 window need a side over 160 px, so the
number of scales is the largest n <= 5 for which the coarsest scale is still at least as
large as the window (64x64: 3 scales 64/32/16; 32x32: 2 scales), with Wang's first n
weights (0.0448, 0.2856, 0.3001, ...) renormalised to sum to one. Scales are made by 2x2
average pooling; contrast-structure terms at every scale but the last, full SSIM at the
last, combined as a weighted product. Negative terms are clamped to zero before the
fractional powers (as pytorch-msssim and torchmetrics' "relu" normalisation do), which
keeps the loss and its gradients finite.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from codec.losses import register_loss

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@functools.lru_cache(maxsize=16)
def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (float64, CPU; cast where used)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    # Separable valid convolution, one group per channel.
    c = x.shape[1]
    k = win.to(x.dtype).to(x.device)
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_terms(
    x: torch.Tensor, y: torch.Tensor, data_range: float, win: torch.Tensor, k1: float, k2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean SSIM and mean contrast-structure term, each (B,)."""
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    # One blur call on the five stacked signals instead of five calls.
    b, c = x.shape[:2]
    stats = _blur(torch.cat([x, y, x * x, y * y, x * y], 1), win)
    mx, my, sxx, syy, sxy = stats.split(c, 1)
    mx2, my2, mxy = mx * mx, my * my, mx * my
    vx, vy, cov = sxx - mx2, syy - my2, sxy - mxy
    cs = (2 * cov + c2) / (vx + vy + c2)
    lum = (2 * mxy + c1) / (mx2 + my2 + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """SSIM of each image pair in a batch (B, C, H, W) -> (B,); images must be >= win_size."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ssim needs two (B, C, H, W) tensors of one shape, got {x.shape} and {y.shape}")
    if min(x.shape[-2:]) < win_size:
        raise ValueError(f"images of {tuple(x.shape[-2:])} are smaller than the {win_size}x{win_size} window")
    return _ssim_terms(x, y, data_range, gaussian_window(win_size, sigma), k1, k2)[0]


def ms_ssim_scales(side: int, win_size: int = 11, max_scales: int = 5) -> int:
    """How many scales fit: the coarsest side (side / 2^(n-1)) must be >= win_size."""
    n = 1
    while n < max_scales and side // 2**n >= win_size:
        n += 1
    return n


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    scales: int | None = None,
) -> torch.Tensor:
    """MS-SSIM of each image pair (B, C, H, W) -> (B,), with the scale rule of the module doc."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ms_ssim needs two (B, C, H, W) tensors of one shape, got {x.shape} and {y.shape}")
    n = scales or ms_ssim_scales(min(x.shape[-2:]), win_size)
    if min(x.shape[-2:]) // 2 ** (n - 1) < win_size:
        raise ValueError(f"{n} scales of a {win_size}x{win_size} window do not fit {tuple(x.shape[-2:])} images")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:n], dtype=x.dtype, device=x.device)
    weights = weights / weights.sum()
    win = gaussian_window(win_size, sigma)
    terms = []
    for i in range(n):
        s, cs = _ssim_terms(x, y, data_range, win, k1, k2)
        terms.append(s if i == n - 1 else cs)
        if i < n - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stack = torch.stack(terms, 1).clamp_min(1e-8)  # clamp: see module doc
    return stack.pow(weights).prod(1)


class _SimilarityLoss(nn.Module):
    """1 - similarity, on images mapped from [-1, 1] to [0, 1] (the luminance term is not
    shift-invariant, so the range must be the one SSIM is defined on). Subclasses set
    `similarity` to ssim or ms_ssim."""

    similarity: Callable[..., torch.Tensor]

    def __init__(self, win_size: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        self.win_size, self.sigma = win_size, sigma

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 1.0 - self.similarity((input + 1) / 2, (target + 1) / 2, 1.0, self.win_size, self.sigma)


@register_loss(
    "ssim",
    "1 - SSIM (Wang et al. 2004): local luminance, contrast, structure",
    data_range=(0.0, 1.0),
    higher_is_better=True,
)
class SSIMLoss(_SimilarityLoss):
    similarity = staticmethod(ssim)


@register_loss(
    "ms-ssim", "1 - MS-SSIM: SSIM over 3 scales at 64x64 (2 at 32x32)", data_range=(0.0, 1.0), higher_is_better=True
)
class MSSSIMLoss(_SimilarityLoss):
    similarity = staticmethod(ms_ssim)
