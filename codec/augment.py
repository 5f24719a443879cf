"""DiffAugment-style differentiable augmentation for the discriminator (Zhao et al. 2020).

Both real and generated images go through the same kind of random translation and cutout
before the discriminator sees them, so with few training faces it cannot simply memorise
them, while the generator's gradient still flows through the (differentiable) ops.

These are seeded tensor functions rather than torchvision.transforms.v2: v2 draws one set
of parameters per call (the whole batch alike), while DiffAugment needs per-image choices
drawn from the step's generator, so that a resumed run repeats them exactly.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def translate(x: torch.Tensor, gen: torch.Generator, fraction: float = 0.125) -> torch.Tensor:
    """Shift each image by up to `fraction` of its side (whole pixels), zeros shifted in."""
    b, _, h, w = x.shape
    shift = torch.randint(-int(h * fraction), int(h * fraction) + 1, (b, 2), generator=gen).to(x.device)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * shift[:, 0] / w
    theta[:, 1, 2] = -2 * shift[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def cutout(x: torch.Tensor, gen: torch.Generator, fraction: float = 0.5) -> torch.Tensor:
    """Zero one square of `fraction` of the side per image, at a random place."""
    b, _, h, w = x.shape
    ch, cw = int(h * fraction), int(w * fraction)
    top = torch.randint(0, h - ch + 1, (b, 1, 1), generator=gen).to(x.device)
    left = torch.randint(0, w - cw + 1, (b, 1, 1), generator=gen).to(x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    hole = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)
    return x * (~hole)[:, None].to(x.dtype)


def diff_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Translation then cutout, as DiffAugment's 'translation,cutout' policy."""
    return cutout(translate(x, gen), gen)
