"""Watson's perceptual distance on 8x8 DCT blocks and its DFT variant (Czolbe et al. 2020).

Per channel, with c0 the target's block coefficients and c1 the input's:
  luminance masking  T_L = T * ((C0_dc + eps) / (mean_dc(C0) + eps))^alpha, the mean over
                     the blocks of *each image* (the reference averages over the batch, which
                     makes one image's loss depend on its batch-mates);
  contrast masking   S = smax(T_L, (|C0| + eps)^r * T_L^(1-r)), smax(a, b) the softmax-
                     weighted mean a*e^a/(e^a+e^b) + b*e^b/(e^a+e^b) = b + (a-b)*sigmoid(a-b);
  pooling            D = (sum over blocks and coefficients of (|C1 - C0|/S + eps)^p + eps)^(1/p).
DFT variant: C are block-rfft amplitudes |c + eps| (coefficients divided by 64) and a phase
term sum w_phase * acos(cos(phi0 - phi1) * (1 - 1e-7)) is added; the four purely real
coefficients have phase weight 0. Colour: RGB in [0,1] -> YCbCr (bias 0, .5, .5), one model
per channel, combined with weights softmax(w_tild). Distances use sum reduction per image,
exactly as the authors' reference, whose parameter files `load_params` reads.

Speed: an 8x8 block DCT or rfft is a fixed linear map of the block's 64 pixels, so the whole
transform is one matrix product over all blocks; the phase difference comes from one complex
product (cos(phi0 - phi1) = Re(c0 conj c1) / (|c0| |c1|)), not two atan2 calls.

Block-grid shift: in training mode each image is rolled circularly by its own random offset
in [-4, 4]^2 (or by the `shifts` passed in) so that block edges are not always in the same
place (the paper's defence against block artefacts); eval mode is deterministic (no shift).

Default parameters (no file): DCT uses Watson's 8x8 threshold table, alpha 0.649, r 0.7,
p 4. DFT uses the reference's untuned start, T = 1, alpha 0.1, r 0.2, p 1, phase weights
e^-2: a masked L1 on amplitudes plus a light phase term, with no tuning data we could ship.
The authors' BAPPS-tuned parameters load with --loss-params FILE.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import nn

from codec.losses import register_loss

EPS = 1e-10
B = 8  # block size
# Watson (1993) DCT luminance thresholds for 8x8 blocks, as in the reference implementation.
WATSON_TABLE = (
    (1.40, 1.01, 1.16, 1.66, 2.40, 3.43, 4.79, 6.56),
    (1.01, 1.45, 1.32, 1.52, 2.00, 2.71, 3.67, 4.93),
    (1.16, 1.32, 2.24, 2.59, 2.98, 3.64, 4.60, 5.88),
    (1.66, 1.52, 2.59, 3.77, 4.55, 5.30, 6.28, 7.60),
    (2.40, 2.00, 2.98, 4.55, 6.15, 7.46, 8.71, 10.17),
    (3.43, 2.71, 3.64, 5.30, 7.46, 9.62, 11.58, 13.51),
    (4.79, 3.67, 4.60, 6.28, 8.71, 11.58, 14.50, 17.29),
    (6.56, 4.93, 5.88, 7.60, 10.17, 13.51, 17.29, 21.15),
)
# RGB -> YCbCr with the reference's 4-digit constants (rows R, G, B; columns Y, Cb, Cr). Grey
# pixels then get Cb, Cr = 0.5 + ~1e-8, whose tiny block coefficients the phase term sees, so
# matching the reference's constants matters for its golden values.
YCBCR = ((0.299, -0.1687, 0.5), (0.587, -0.3313, -0.4187), (0.114, 0.5, -0.0813))
YCBCR_BIAS = (0.0, 0.5, 0.5)
GREY = (0.3, 0.59, 0.11)
NF = B * (B // 2 + 1)  # rfft coefficients per block: 8 x 5
REAL_COEFFS = ((0, 0), (0, B // 2), (B // 2, 0), (B // 2, B // 2))


@functools.lru_cache(maxsize=4)
def dct_matrix(n: int = B) -> torch.Tensor:
    """Orthonormal DCT-II matrix A (n, n): coefficients = A @ block @ A.T."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    a = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    a[0] /= math.sqrt(2)
    return a


@functools.lru_cache(maxsize=4)
def block_dct_map() -> torch.Tensor:
    """(64, 64) map from a flattened block to its flattened DCT coefficients (float64)."""
    a = dct_matrix()
    return torch.kron(a, a).T.contiguous()


def to_blocks(x: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, K, 64) non-overlapping 8x8 blocks, rolled per image by shifts (N, 2).

    Sides that are not multiples of 8 lose their last partial block.
    """
    n, c, h, w = x.shape
    if shifts is not None and bool(shifts.any()):
        dev = x.device
        rows = (torch.arange(h, device=dev)[None, :] - shifts[:, :1].to(dev)) % h  # (N, H)
        cols = (torch.arange(w, device=dev)[None, :] - shifts[:, 1:].to(dev)) % w  # (N, W)
        x = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
        x = x.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    h8, w8 = h // B, w // B
    if h8 == 0 or w8 == 0:
        raise ValueError(f"Watson losses need images of at least 8x8, got {h}x{w}")
    x = x[:, :, : h8 * B, : w8 * B]
    return x.reshape(n, c, h8, B, w8, B).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h8 * w8, B * B)


def _transform(blocks: torch.Tensor, m: torch.Tensor, dc_gain: float) -> torch.Tensor:
    """Block transform as one matrix product, on centred blocks.

    Subtracting each block's mean first keeps the tiny AC coefficients of near-flat blocks
    (e.g. grey pixels' Cb = 0.5 + 1 ulp) accurate in float32; the mean's transform is just
    the DC coefficient, dc_gain * mean (8 for the orthonormal DCT, 1 for the rfft / 64).
    """
    mu = blocks.mean(-1, keepdim=True)
    c = (blocks - mu) @ m.to(blocks)
    return torch.cat([c[..., :1] + dc_gain * mu, c[..., 1:]], -1)


def _rfft_blocks(blocks: torch.Tensor) -> torch.Tensor:
    """(..., 64) blocks -> (..., 40) complex rfft2 coefficients / 64, in one batched call.

    The FFT (rather than the equivalent matrix product) reproduces the reference's float32
    rounding on near-flat blocks, whose tiny coefficients' phases enter the phase term.
    """
    lead = blocks.shape[:-1]
    return torch.fft.rfft2(blocks.view(*lead, B, B), norm="forward").reshape(*lead, NF)


def smooth_max(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a*softmax(a,b)[0] + b*softmax(a,b)[1], written as b + (a - b) * sigmoid(a - b)."""
    return b + (a - b) * torch.sigmoid(a - b)


class _Channel(nn.Module):
    """Parameters of one channel's model, stored as the reference stores them."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        if kind == "dct":
            t, alpha, r, p = torch.tensor(WATSON_TABLE, dtype=torch.float64).log(), 0.649, 0.7, 4.0
        else:
            t, alpha, r, p = torch.zeros(B, B // 2 + 1, dtype=torch.float64), 0.1, 0.2, 1.0
        self.register_buffer("t_tild", t.float())
        self.register_buffer("alpha", torch.tensor(alpha))
        self.register_buffer("w_tild", torch.tensor(math.log(r / (1 - r))))
        self.register_buffer("beta", torch.tensor(p))
        if kind == "dft":
            self.register_buffer("w_phase_tild", torch.full((B, B // 2 + 1), -2.0))

    def load(self, state: dict[str, torch.Tensor], prefix: str = "") -> None:
        for name, buf in self.named_buffers():
            key = prefix + name
            if key not in state:
                raise ValueError(f"parameter file lacks {key!r}")
            if state[key].shape != buf.shape:
                raise ValueError(f"parameter {key!r} has shape {tuple(state[key].shape)}, expected {tuple(buf.shape)}")
            buf.copy_(state[key].to(buf.dtype))


def _pow(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    # One exponent for all channels: a Python float takes pow's fast scalar paths.
    if e.numel() == 1 or bool((e == e.flatten()[0]).all()):
        v = float(e.flatten()[0])
        return x if v == 1.0 else x.pow(v)
    return x.pow(e)


def watson_distance(chans: list[_Channel], x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Per-channel distances (N, C) of target blocks x0 and input blocks x1, both (N, C, K, 64).

    All channels are computed together, their parameters broadcast over (1, C, 1, ...).
    """
    kind = chans[0].kind
    t = torch.stack([c.t_tild for c in chans]).exp().flatten(1)[:, None]  # (C, 1, F)
    alpha = torch.stack([c.alpha for c in chans]).view(-1, 1)  # (C, 1)
    r = torch.sigmoid(torch.stack([c.w_tild for c in chans])).view(-1, 1, 1)
    beta = torch.stack([c.beta for c in chans]).view(-1, 1, 1)
    if kind == "dct":
        a0, a1 = _transform(x0, block_dct_map(), 8.0), _transform(x1, block_dct_map(), 8.0)
        dc = a0[..., 0].clamp_min(0)  # negative DC (inputs outside [0,1]) would give NaN
        phase = None
    else:
        shift = torch.complex(torch.tensor(EPS), torch.tensor(EPS)).to(x0.device)
        with torch.no_grad():
            c0 = _rfft_blocks(x0)
            a0 = (c0 + shift).abs()
            # Conjugate unit phasor of the target, phase convention atan2(im, re + eps).
            p0 = c0 + EPS
            p0 = p0.conj() / p0.abs()
        c1 = _rfft_blocks(x1)
        a1 = (c1 + shift).abs()
        dc = a0[..., 0]
        # cos(phi0 - phi1) = Re(conj(c0') c1') / (|c0'| |c1'|): one complex product, no atan2.
        p1 = c1 + EPS
        cos = (torch.view_as_real(p0 * p1)[..., 0] / p1.abs()).clamp(-1.0, 1.0)
        w_phase = torch.stack([c.w_phase_tild for c in chans]).exp()
        w_phase[:, [i for i, _ in REAL_COEFFS], [j for _, j in REAL_COEFFS]] = 0.0
        phase = (torch.acos(cos * (1 - 1e-7)) * w_phase.flatten(1)[:, None]).sum((2, 3))
    with torch.no_grad():  # the masking thresholds depend on the target only
        lum = _pow((dc + EPS) / (dc.mean(-1, keepdim=True) + EPS), alpha)  # (N, C, K)
        t_l = t * lum[..., None]
        s = smooth_max(t_l, _pow(a0.abs() + EPS, r) * _pow(t_l, 1 - r))
    d = _pow(((a1 - a0) / s).abs() + EPS, beta).sum((2, 3))
    d = _pow(d + EPS, 1 / beta.view(-1))
    return d if phase is None else d + phase


class WatsonDistance(nn.Module):
    """Watson distance of `kind` 'dct' or 'dft' for images in [0, 1] with 1 or 3 channels.

    forward(input, target, shifts=None) -> (N,). `params_file`: the authors' state dict
    (rgb_* or gray_* .pth; loaded with weights_only=True). Colour images with a grey
    parameter file are converted to grey (0.3 R + 0.59 G + 0.11 B).
    """

    def __init__(self, kind: str = "dft", params_file: str | Path | None = None, max_shift: int = 4) -> None:
        super().__init__()
        if kind not in ("dct", "dft"):
            raise ValueError(f"kind must be 'dct' or 'dft', got {kind!r}")
        self.kind, self.max_shift = kind, max_shift
        self.ly, self.lcb, self.lcr = _Channel(kind), _Channel(kind), _Channel(kind)
        self.register_buffer("w_tild", torch.zeros(3))
        self.register_buffer("ycbcr", torch.tensor(YCBCR))
        self.register_buffer("ycbcr_bias", torch.tensor(YCBCR_BIAS))
        self.grey_params = False
        if params_file is not None:
            self.load_params(params_file)

    def load_params(self, path: str | Path) -> None:
        """Load the reference's parameter file (keys as in its README)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable parameter file ({exc})") from None
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict")
        if "ly.t_tild" in state:
            for name in ("ly", "lcb", "lcr"):
                getattr(self, name).load(state, name + ".")
            self.w_tild.copy_(state["w_tild"].float())
            if "to_YCbCr.transform" in state:
                self.ycbcr.copy_(state["to_YCbCr.transform"].float())
                self.ycbcr_bias.copy_(state["to_YCbCr.bias"].float())
            self.grey_params = False
        else:
            self.ly.load(state)
            self.grey_params = True

    def forward(self, input: torch.Tensor, target: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor:
        if input.shape != target.shape:
            raise ValueError(f"input {tuple(input.shape)} and target {tuple(target.shape)} differ")
        if shifts is None and self.training and self.max_shift > 0:
            shifts = torch.randint(-self.max_shift, self.max_shift + 1, (input.shape[0], 2))
        c = input.shape[1]
        if c == 3 and self.grey_params:
            g = torch.tensor(GREY, dtype=input.dtype, device=input.device).view(1, 3, 1, 1)
            input, target, c = (input * g).sum(1, keepdim=True), (target * g).sum(1, keepdim=True), 1
        if c == 1:
            return watson_distance([self.ly], to_blocks(target, shifts), to_blocks(input, shifts))[:, 0]
        if c != 3:
            raise ValueError(f"Watson losses take 1 or 3 channels, got {c}")
        # RGB -> YCbCr, then blocks of both images in one call.
        both = torch.cat([target, input], 0)
        # As the reference computes it, so float32 rounding of grey pixels' Cb/Cr matches.
        both = (both.permute(0, 2, 3, 1) @ self.ycbcr.to(both) + self.ycbcr_bias.to(both)).permute(0, 3, 1, 2)
        blocks = to_blocks(both, None if shifts is None else shifts.repeat(2, 1))
        x0, x1 = blocks.chunk(2, 0)
        return watson_distance([self.ly, self.lcb, self.lcr], x0, x1) @ torch.softmax(self.w_tild, 0)


class _WatsonLoss(nn.Module):
    """Registry adapter: images in [-1, 1] mapped to [0, 1], grid shifts in training mode."""

    random_shift = True

    def __init__(self, kind: str, params_file: str | Path | None = None) -> None:
        super().__init__()
        self.watson = WatsonDistance(kind, params_file)

    def forward(self, input: torch.Tensor, target: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor:
        return self.watson((input + 1) / 2, (target + 1) / 2, shifts)


@register_loss(
    "watson-dct",
    "Watson's DCT-block perceptual distance (luminance and contrast masking)",
    data_range=(0.0, 1.0),
    deterministic=False,
)
class WatsonDCTLoss(_WatsonLoss):
    def __init__(self, params_file: str | Path | None = None) -> None:
        super().__init__("dct", params_file)


@register_loss(
    "watson-dft",
    "Watson distance on DFT blocks with a phase term (Czolbe et al. 2020): robust to small shifts",
    data_range=(0.0, 1.0),
    deterministic=False,
)
class WatsonDFTLoss(_WatsonLoss):
    def __init__(self, params_file: str | Path | None = None) -> None:
        super().__init__("dft", params_file)
