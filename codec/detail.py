"""The detail latent: a spatial latent that carries what the global latent cannot.

A global latent (nz numbers, `codec.rdmodel`) stops paying past ~250 bytes: it draws the
face, not its detail. The detail latent is a grid (C channels at a quarter of the image's
side, 16x16 for 64x64 faces) that the generator takes in on top of its own feature maps:

    z_hat (global, decoded first) -> G's features f at side/4 -> base image G(z_hat)
    y = A(x, G(z_hat))                         analysis: sees the image and what z_hat draws
    (mu, sigma) = P(f)                         entropy model: predicted from z_hat alone
    y_hat = mu + round(y - mu)                 (per detail level, in the level's gain units)
    x_hat = G_rest(f + S16(y_hat), + S32, + S64)  synthesis: added at 16x16, 32x32 and 64x64

The generator's own weights stay as they are (it is the shared decoder's backbone); the
analysis, entropy model and synthesis are trained with the rate-distortion objective
(`codec.objectives.detail`). Rate control is a gain per channel and detail level (Cui et
al.'s gained VAE): one network serves every level.

Coding must agree bit for bit on every machine, and mu and sigma come out of a float
network. So the decoder and the encoder compute them in float64 on one image at a time, and
quantise them coarsely: sigma to one of `SCALES` table scales, mu to a grid of 1/MEAN_GRID.
Only a float64 value within ~1e-12 of a bucket edge could land differently on two machines.
Each table scale has an integer table (as the global latent's, `codec.entropy`) stored in
the model file, and the symbols of one scale are coded together (one coder call per scale).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from codec.defaults import is_int
from codec.entropy import LevelTables, integer_pmf_table
from codec.generator import Generator

#: Table scales: log-spaced from SCALE_MIN to SCALE_MAX (as CompressAI's scale table).
SCALES, SCALE_MIN, SCALE_MAX = 64, 0.11, 64.0
#: Predicted means are rounded to multiples of 1/MEAN_GRID.
MEAN_GRID = 8
#: Smallest bin probability used for rates.
MIN_LIKELIHOOD = 1e-9


@dataclass(frozen=True)
class DetailConfig:
    """channels: latent channels; width: hidden channels of the detail networks; levels:
    how many gain vectors (detail levels); context_width: hidden channels of the entropy
    (context) network, which every decoder runs in float64 (0: `width`)."""

    channels: int = 32
    width: int = 96
    levels: int = 8
    context_width: int = 0

    def __post_init__(self) -> None:
        for name in ("channels", "width", "levels", "context_width"):
            v = getattr(self, name)
            if not is_int(v, 0 if name == "context_width" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'context_width' else 'positive'} "
                                 f"integer, got {v!r}")  # fmt: skip

    @property
    def context_channels(self) -> int:
        """The entropy network's hidden channels."""
        return self.context_width or self.width

    @classmethod
    def from_dict(cls, d: dict) -> DetailConfig:
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(i: int, o: int, k: int = 3, s: int = 1) -> nn.Conv2d:
    return nn.Conv2d(i, o, k, s, k // 2)


class DetailNet(nn.Module):
    """Analysis, entropy model and synthesis of the detail latent for one generator."""

    def __init__(self, config: DetailConfig, g: Generator) -> None:
        super().__init__()
        c, w, nc = config.channels, config.width, g.config.nc
        f_ch = g.channels_at(join_side(g))  # channels of G's features where the detail joins
        h_ch = g.channels_at(2 * join_side(g))  # ... and at twice that side
        self.config = config
        self.analysis = nn.Sequential(
            _conv(2 * nc, w, 5, 2), nn.GELU(), _conv(w, w, 5, 2), nn.GELU(), _conv(w, w), nn.GELU(), _conv(w, c)
        )
        cw = config.context_channels
        self.context = nn.Sequential(_conv(f_ch, cw), nn.GELU(), _conv(cw, cw), nn.GELU(), _conv(cw, 2 * c))
        self.synth = nn.Sequential(_conv(c, w), nn.GELU(), _conv(w, w), nn.GELU())
        self.to16 = nn.Conv2d(w, f_ch, 1)
        self.up32 = nn.Sequential(nn.ConvTranspose2d(w, w // 2, 4, 2, 1), nn.GELU())
        self.to32 = nn.Conv2d(w // 2, h_ch, 1)
        self.up64 = nn.Sequential(nn.ConvTranspose2d(w // 2, w // 4, 4, 2, 1), nn.GELU())
        self.to64 = _conv(w // 4, nc)
        for last in (self.to16, self.to32, self.to64):  # about G's own image at the start
            if last.weight.is_meta:  # built to learn its shapes (codec.modelfile): nothing to draw
                break
            # small, not zero: zero output weights starve the layers before them of gradient
            # (a λ = 0 fit of 16 faces took ~100 steps to move off the global latent's PSNR)
            nn.init.normal_(last.weight, 0.0, 1e-3)
            nn.init.zeros_(last.bias)
        # log gain per level and channel; level 1 is the coarsest (fewest bytes)
        if self.to64.weight.is_meta:  # shapes only (codec.modelfile): linspace there imports sympy (0.4 s)
            self.log_gain = nn.Parameter(torch.empty(config.levels, c))
        else:
            self.log_gain = nn.Parameter(torch.linspace(-1.0, 1.5, config.levels)[:, None].repeat(1, c))

    def gains(self, levels: torch.Tensor) -> torch.Tensor:
        """(B,) detail levels (1-based) -> (B, C, 1, 1) gains."""
        return self.log_gain[levels - 1].exp()[:, :, None, None]

    def predict(self, f: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and scales (B, C, h, w) of the gained latent, from G's features f."""
        mu, s = self.context(f).chunk(2, dim=1)
        return mu * gain, F.softplus(s) * gain + 1e-3

    def additions(self, y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the (un-gained) detail latent adds to G at side/4, side/2 and before the tanh."""
        a = self.synth(y_hat)
        u32 = self.up32(a)
        return self.to16(a), self.to32(u32), self.to64(self.up64(u32))


def join_side(g: Generator) -> int:
    """The side of G's features where the detail joins: a quarter of the image's."""
    return g.config.size // 4


def features(g: Generator, z: torch.Tensor) -> torch.Tensor:
    """G's feature maps at side/4 (after their ReLU), where the detail joins."""
    return g.features(z, join_side(g))


def float64_generator(g: Generator) -> Generator:
    """A float64 CPU copy of G for the side information every decoder computes, its
    transposed convolutions up to side/4 done as matrix products (`MatmulTransposed`)."""
    g = copy.deepcopy(g).double().cpu().eval()
    for i in range(1, g.end_of(join_side(g))):
        if isinstance(g.main[i], nn.ConvTranspose2d):
            g.main[i] = MatmulTransposed(g.main[i])
    return g


class MatmulTransposed(nn.Module):
    """A bias-free transposed convolution as one matrix product and a fold. In float64,
    PyTorch's own took 1.7x as long on this CPU (1.25 ms against 0.73 for G's 256->128
    layer on one image, 2 threads), and float64 is where decoding spends most of its time."""

    def __init__(self, layer: nn.ConvTranspose2d) -> None:
        super().__init__()
        if layer.bias is not None or layer.groups != 1 or layer.output_padding != (0, 0):
            raise ValueError("only a bias-free, ungrouped transposed convolution without output padding")
        self.register_buffer("cols", layer.weight.detach().reshape(layer.in_channels, -1).t().contiguous())
        self.k, self.s, self.p = layer.kernel_size, layer.stride, layer.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        (k0, k1), (s0, s1), (p0, p1) = self.k, self.s, self.p
        out = ((h - 1) * s0 - 2 * p0 + k0, (w - 1) * s1 - 2 * p1 + k1)
        return F.fold(self.cols @ x.reshape(b, c, h * w), out, self.k, stride=self.s, padding=self.p)


def render(g: Generator, f: torch.Tensor, add: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """The image G draws from features f at side/4, with the detail's additions at side/4,
    side/2 and before the tanh (`DetailNet.additions`; None: G's own image)."""
    if add is None:
        return g.draw(f, join_side(g))
    return g.draw(f, join_side(g), add[:2], add[2])


def likelihood(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Probability of the unit bin centred on y under N(mu, sigma^2)."""
    d = (y - mu).abs()  # the upper tail is the more precise side
    upper = torch.special.ndtr((0.5 - d) / sigma)
    lower = torch.special.ndtr((-0.5 - d) / sigma)
    return (upper - lower).clamp_min(MIN_LIKELIHOOD)


def bits(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Ideal code length in bits of each image's detail (B, C, h, w) -> (B,)."""
    return -torch.log2(likelihood(y, mu, sigma)).flatten(1).sum(1)


def round_around(y: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """mu + round(y - mu), straight-through (identity gradient)."""
    return y + (mu + torch.round(y - mu) - y).detach()


# --- exact coding --------------------------------------------------------------------


def table_scales() -> np.ndarray:
    return np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), SCALES))


def scale_index(sigma: np.ndarray) -> np.ndarray:
    """Each predicted scale's table (nearest in log), from float64 values."""
    t = (np.log(np.clip(sigma, SCALE_MIN, SCALE_MAX)) - math.log(SCALE_MIN)) / math.log(SCALE_MAX / SCALE_MIN)
    return np.rint(t * (SCALES - 1)).astype(np.int64)


def quantised_mean(mu: np.ndarray) -> np.ndarray:
    return np.rint(mu * MEAN_GRID) / MEAN_GRID


def build_scale_tables(tail: float = 1e-6) -> LevelTables:
    """One integer table per table scale, as rows of a LevelTables (row i = scale i): the
    zero-mean Gaussian's unit bins, the tails beyond `tail` mass clamped."""
    rows = []
    for s in table_scales():
        half = max(1, int(math.ceil(s * math.sqrt(2) * _erfcinv(tail))))
        k = np.arange(-half, half + 1, dtype=np.float64)
        cdf = 0.5 * (1 + _erf_vec((k + 0.5) / (s * math.sqrt(2))))
        p = np.diff(np.concatenate([[0.0], cdf]))
        p[-1] += 1 - cdf[-1]
        rows.append((-half, p))
    return integer_pmf_table(rows)


def _erf_vec(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


def _erfcinv(p: float) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if math.erfc(mid) > p else (lo, mid)
    return hi
