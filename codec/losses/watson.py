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

Speed: an 8x8 block DCT is a fixed linear map of the block's 64 pixels, so the whole
transform is one matrix product over all blocks. The DFT distance, the one the search uses
most, is a custom autograd function: it works a few images at a time (so its temporaries
stay in cache), takes the phase difference from one dot product with the target's unit
phasor (cos(phi0 - phi1) = <c0, c1> / (|c0| |c1|), no atan2), and writes its gradient out
by hand during the forward pass, where the rfft's transpose is one (80, 64) matrix product.

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
from typing import NamedTuple

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


def _roll(x: torch.Tensor, shifts: torch.Tensor | None) -> torch.Tensor:
    """(N, C, H, W) rolled circularly, image i by shifts[i] = (rows, columns), as torch.roll does."""
    if shifts is None or not bool(shifts.any()):
        return x
    n, c, h, w = x.shape
    dev = x.device
    rows = (torch.arange(h, device=dev)[None, :] - shifts[:, :1].to(dev)) % h  # (N, H)
    cols = (torch.arange(w, device=dev)[None, :] - shifts[:, 1:].to(dev)) % w  # (N, W)
    x = x.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def from_blocks(blocks: torch.Tensor, size: tuple[int, int], shifts: torch.Tensor | None = None) -> torch.Tensor:
    """The transpose of to_blocks: (N, C, K, 64) -> (N, C, H, W), rolled back, zeros where cropped."""
    n, c = blocks.shape[:2]
    h, w = size
    h8, w8 = h // B, w // B
    x = blocks.view(n, c, h8, w8, B, B).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h8 * B, w8 * B)
    if (h8 * B, w8 * B) != (h, w):
        x = nn.functional.pad(x, (0, w - w8 * B, 0, h - h8 * B))
    return _roll(x, None if shifts is None else -shifts)


def to_blocks(x: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, K, 64) non-overlapping 8x8 blocks, rolled per image by shifts (N, 2).

    Sides that are not multiples of 8 lose their last partial block.
    """
    n, c, h, w = x.shape
    x = _roll(x, shifts)
    h8, w8 = h // B, w // B
    if h8 == 0 or w8 == 0:
        raise ValueError(f"Watson losses need images of at least 8x8, got {h}x{w}")
    x = x[:, :, : h8 * B, : w8 * B]
    return x.reshape(n, c, h8, B, w8, B).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h8 * w8, B * B)


def _block_dct(blocks: torch.Tensor) -> torch.Tensor:
    """(..., 64) blocks -> (..., 64) orthonormal DCT coefficients, as one matrix product.

    Subtracting each block's mean first keeps the tiny AC coefficients of near-flat blocks
    (e.g. grey pixels' Cb = 0.5 + 1 ulp) accurate in float32; the mean's transform is just
    the DC coefficient, 8 * mean.
    """
    mu = blocks.mean(-1, keepdim=True)
    c = (blocks - mu) @ block_dct_map().to(blocks)
    return torch.cat([c[..., :1] + 8 * mu, c[..., 1:]], -1)


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


Exponent = float | torch.Tensor


def _exponent(e: torch.Tensor) -> Exponent:
    """A per-channel exponent as one Python float when every channel has the same: pow's fast path."""
    flat = e.flatten()
    return float(flat[0]) if bool((flat == flat[0]).all()) else e


def _pow(x: torch.Tensor, e: Exponent) -> torch.Tensor:
    if isinstance(e, float):
        return x if e == 1.0 else x.pow(e)
    return x.pow(e)


class _Params(NamedTuple):
    """All channels' parameters, broadcast over (C, 1, F) / (C, 1) for (N, C, K, F) blocks."""

    t: torch.Tensor  # (C, 1, F) thresholds T
    alpha: Exponent  # (C, 1) luminance masking
    r: Exponent  # (C, 1, 1) contrast masking
    beta: Exponent  # (C, 1, 1) pooling p
    w: torch.Tensor | None  # (C, 1, F) DFT phase weights, 0 for the four purely real coefficients

    @property
    def inv_beta(self) -> Exponent:
        return 1 / self.beta if isinstance(self.beta, float) else 1 / self.beta[:, 0, 0]


def _params(chans: list[_Channel]) -> _Params:
    w = None
    if chans[0].kind == "dft":
        w = torch.stack([c.w_phase_tild for c in chans]).exp()
        w[:, [i for i, _ in REAL_COEFFS], [j for _, j in REAL_COEFFS]] = 0.0
        w = w.flatten(1)[:, None]
    return _Params(
        t=torch.stack([c.t_tild for c in chans]).exp().flatten(1)[:, None],
        alpha=_exponent(torch.stack([c.alpha for c in chans]).view(-1, 1)),
        r=_exponent(torch.sigmoid(torch.stack([c.w_tild for c in chans])).view(-1, 1, 1)),
        beta=_exponent(torch.stack([c.beta for c in chans]).view(-1, 1, 1)),
        w=w,
    )


def _masks(dc: torch.Tensor, a0: torch.Tensor, p: _Params) -> torch.Tensor:
    """Masking thresholds S (N, C, K, F) from the target's DC terms (N, C, K) and magnitudes a0.

    T_L^(1-r) is taken as T^(1-r) * lum^(1-r), so the pows run on small tensors.
    """
    lum = _pow((dc + EPS) / (dc.mean(-1, keepdim=True) + EPS), p.alpha)[..., None]  # (N, C, K, 1)
    t_l = p.t * lum
    return smooth_max(t_l, _pow(a0 + EPS, p.r).mul_(_pow(p.t, 1 - p.r)).mul_(_pow(lum, 1 - p.r)))


def dct_distance(chans: list[_Channel], x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Per-channel Watson-DCT distances (N, C) of target blocks x0 and input blocks x1, both (N, C, K, 64).

    All channels are computed together, their parameters broadcast over (1, C, 1, ...).
    """
    p = _params(chans)
    a0, a1 = _block_dct(x0), _block_dct(x1)
    with torch.no_grad():  # the masking thresholds depend on the target only
        # A negative DC (inputs outside [0, 1]) would give NaN.
        s = _masks(a0[..., 0].clamp_min(0), a0.abs(), p)
    d = _pow(((a1 - a0) / s).abs() + EPS, p.beta).sum((2, 3))
    return _pow(d + EPS, p.inv_beta)


@functools.lru_cache(maxsize=8)
def rfft_maps_t(dtype: torch.dtype = torch.float64, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(40, 64) real and imaginary parts of the block rfft's transpose: re = block @ Re.T."""
    c = torch.fft.rfft2(torch.eye(B * B, dtype=torch.float64).view(-1, B, B), norm="forward").reshape(B * B, NF)
    return c.real.T.to(device, dtype).contiguous(), c.imag.T.to(device, dtype).contiguous()


def _rfft_planar(blocks: torch.Tensor) -> torch.Tensor:
    """(..., 64) blocks -> (2, ..., 40): real and imaginary parts of the rfft2 / 64 (views).

    An FFT rather than the equivalent matrix product: it reproduces the reference's float32
    rounding on near-flat blocks, whose tiny coefficients' phases enter the phase term. The
    rfft along rows then the FFT along columns is what rfft2 does inside, bit for bit, in
    about half the time for 8x8 transforms.
    """
    lead = blocks.shape[:-1]
    c = torch.fft.fft(torch.fft.rfft(blocks.view(*lead, B, B), norm="forward"), dim=-2, norm="forward")
    return torch.view_as_real(c).movedim(-1, 0).reshape(2, *lead, NF)


ACOS_SHRINK = 1 - 1e-7  # the reference's acos(cos * (1 - 1e-7)), which keeps acos' finite
CHUNK = 32  # images per pass of the fused DFT distance on a CPU: temporaries of ~1 MB, about L2 size


def _dft_chunk(
    x0: torch.Tensor, x1: torch.Tensor, p: _Params, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Watson-DFT distances (n, C) of a few images and, if asked, their gradient wrt x1's blocks.

    With c = re + i im the rfft coefficients (target 0, input 1):
      amplitude a = |c + eps(1 + i)|, term (sum ((|a1 - a0| / s) + eps)^p + eps)^(1/p);
      phase     cos = <c0 + eps, c1 + eps> / (|c0 + eps| |c1 + eps|) (eps on the real part),
                term sum w acos(cos * (1 - 1e-7)).
    The gradient is written out by hand, as cheap passes over real tensors; autograd
    through complex abs and acos costs several times as many.
    """
    re0, im0 = _rfft_planar(x0)
    re1, im1 = _rfft_planar(x1)
    # The target's side: amplitudes, masks and its unit phasor (ur, ui).
    re0.add_(EPS)
    a0 = torch.hypot(re0, im0 + EPS)
    inv_m0 = (re0 * re0).addcmul_(im0, im0).rsqrt_()
    ur, ui = re0.mul_(inv_m0), im0.mul_(inv_m0)
    inv_s = _masks(a0[..., 0], a0, p).reciprocal_()
    # The input's side.
    pr, im1_eps = re1.add_(EPS), im1 + EPS
    a1 = torch.hypot(pr, im1_eps)
    inv_m1 = (pr * pr).addcmul_(im1, im1).rsqrt_()
    ex, ey = pr * inv_m1, im1 * inv_m1  # the input's unit phasor
    # cos is below 1 but for rounding; the clamp is a guard, and the gradient below is the
    # unclamped formula, which is the derivative of the atan2 form (finite at cos = 1).
    cos = (ur * ex).addcmul_(ui, ey).clamp_(-1, 1)
    phase = torch.acos(cos * ACOS_SHRINK).mul_(p.w).sum((2, 3))
    q = (a1 - a0).mul_(inv_s)
    e = q.abs().add_(EPS)
    total = _pow(e, p.beta).sum((2, 3)) + EPS
    out = _pow(total, p.inv_beta).add_(phase)
    if not need_grad:
        return out, None
    # d/da1 of the amplitude term, then through a1 = |(pr, im1 + eps)|.
    ga = q.sign_().mul_(inv_s).div_(a1)
    if not (isinstance(p.beta, float) and p.beta == 1.0):
        ga.mul_(_pow(e, p.beta - 1)).mul_(_pow(total, p.inv_beta - 1)[..., None, None])
    g_re = ga * pr
    g_im = ga.mul_(im1_eps)
    # d/dcos of the phase term, then through cos, the angle to the fixed unit vector (ur, ui).
    gc = (cos * ACOS_SHRINK).square_().neg_().add_(1).rsqrt_().mul_(p.w * -ACOS_SHRINK).mul_(inv_m1)
    g_re.addcmul_(gc, ur.sub_(ex.mul_(cos)))
    g_im.addcmul_(gc, ui.sub_(ey.mul_(cos)))
    # Back through the rfft: its transpose, as two small matrix products.
    m_re, m_im = rfft_maps_t(g_re.dtype, str(g_re.device))
    g = torch.mm(g_re.view(-1, NF), m_re)
    return out, g.addmm_(g_im.view(-1, NF), m_im).view(x1.shape)


def dft_distance(
    chans: list[_Channel], weights: torch.Tensor, blocks: _Blocks, input: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Watson-DFT distances (N,) of images, sum over channels of weights[c] * distance_c.

    `blocks(images, rows)` turns images[rows] into the model's (n, C, K, 64) blocks and
    `blocks.transpose` carries their gradient back to the images.
    """
    need_grad = torch.is_grad_enabled() and input.requires_grad
    return _DFTDistance.apply(input, target, blocks, weights, _params(chans), need_grad)


class _DFTDistance(torch.autograd.Function):
    """Watson-DFT distances (N,) with a gradient for the input images only.

    On a CPU the forward pass runs CHUNK images at a time (colour conversion and blocks
    included, so that nothing large leaves the cache) and, when the input needs a gradient,
    computes it there too: the search always needs it, and backward is then one product.
    """

    @staticmethod
    def forward(ctx, input, target, blocks, weights, params, need_grad):  # type: ignore[override]
        n = input.shape[0]
        out = input.new_empty(n)
        grad = torch.empty_like(input) if need_grad else None
        wc = weights.to(input)
        step = CHUNK if input.device.type == "cpu" else n  # a GPU wants the whole batch at once
        for i in range(0, n, step):
            rows = slice(i, i + step)
            d, g = _dft_chunk(blocks(target[rows], rows), blocks(input[rows], rows), params, need_grad)
            out[rows] = d @ wc
            if grad is not None:
                grad[rows] = blocks.transpose(g.mul_(wc[:, None, None]), rows, input[rows].shape)
        ctx.save_for_backward(grad)
        return out

    @staticmethod
    def backward(ctx, gout):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        if grad is None:
            raise RuntimeError("Watson-DFT: backward through a distance computed without a gradient")
        return (grad * gout.view(-1, *[1] * (grad.dim() - 1)),) + (None,) * 5


def _to_ycbcr(x: torch.Tensor, m: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> YCbCr: ((R m[0] + G m[1]) + B m[2]) + bias.

    The same float32 roundings as the reference's x.permute(0, 2, 3, 1) @ m + bias (grey
    pixels' Cb and Cr, 0.5 + a few ulps, must match for its golden values), at a fraction
    of the cost of a matrix product with 3 columns.
    """
    v = [m[i].view(1, 3, 1, 1) for i in range(3)]
    # Separate products and sums, no fused multiply-add: the rounding must be the reference's.
    return (x[:, :1] * v[0]).add_(x[:, 1:2] * v[1]).add_(x[:, 2:3] * v[2]).add_(bias.view(1, 3, 1, 1))


class _Blocks:
    """Images -> the model's 8x8 blocks ([-1, 1] -> [0, 1] if signed; grey or YCbCr; grid
    shift), and the transpose of that linear map, which carries block gradients back."""

    def __init__(self, model: WatsonDistance, shifts: torch.Tensor | None) -> None:
        self.signed, self.grey, self.shifts = model.signed, model.grey_params, shifts
        self.m, self.bias = model.ycbcr, model.ycbcr_bias

    def _shifts(self, rows: slice) -> torch.Tensor | None:
        return None if self.shifts is None else self.shifts[rows]

    def __call__(self, x: torch.Tensor, rows: slice = slice(None)) -> torch.Tensor:
        if x.shape[1] == 3 and self.grey:
            if self.signed:
                x = (x + 1) / 2
            x = (x * torch.tensor(GREY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif x.shape[1] == 3:
            m, bias = self.m.to(x), self.bias.to(x)
            if self.signed:  # (x + 1) / 2 folded into the colour transform: two passes fewer
                m, bias = m / 2, bias + m.sum(0) / 2
            x = _to_ycbcr(x, m, bias)
        elif self.signed:
            x = (x + 1) / 2
        return to_blocks(x, self._shifts(rows))

    def transpose(self, g: torch.Tensor, rows: slice, shape: torch.Size) -> torch.Tensor:
        """Gradient (n, C_in, H, W) of the images from the gradient g (n, C, K, 64) of their blocks."""
        scale = 0.5 if self.signed else 1.0
        if shape[1] == 3 and self.grey:
            g = g * (torch.tensor(GREY, dtype=g.dtype, device=g.device) * scale).view(1, 3, 1, 1)
        elif shape[1] == 3:
            # Moving pixels commutes with mixing channels, so mix in block layout: g_rgb = M g_ycc.
            m = (self.m * scale).tolist()
            mixed = torch.empty_like(g)
            for i in range(3):
                torch.mul(g[:, 0], m[i][0], out=mixed[:, i])
                mixed[:, i].add_(g[:, 1], alpha=m[i][1]).add_(g[:, 2], alpha=m[i][2])
            g = mixed
        elif scale != 1.0:
            g = g * scale
        return from_blocks(g, (shape[2], shape[3]), self._shifts(rows))


class WatsonDistance(nn.Module):
    """Watson distance of `kind` 'dct' or 'dft' for images in [0, 1] with 1 or 3 channels.

    forward(input, target, shifts=None) -> (N,). `params_file`: the authors' state dict
    (rgb_* or gray_* .pth; loaded with weights_only=True). Colour images with a grey
    parameter file are converted to grey (0.3 R + 0.59 G + 0.11 B). `signed`: images come
    in [-1, 1] and are mapped to [0, 1] (a few images at a time, as the DFT distance goes).
    """

    def __init__(
        self, kind: str = "dft", params_file: str | Path | None = None, max_shift: int = 4, signed: bool = False
    ) -> None:
        super().__init__()
        if kind not in ("dct", "dft"):
            raise ValueError(f"kind must be 'dct' or 'dft', got {kind!r}")
        self.kind, self.max_shift, self.signed = kind, max_shift, signed
        self.ly, self.lcb, self.lcr = _Channel(kind), _Channel(kind), _Channel(kind)
        self.register_buffer("w_tild", torch.zeros(3))
        self.register_buffer("ycbcr", torch.tensor(YCBCR))
        self.register_buffer("ycbcr_bias", torch.tensor(YCBCR_BIAS))
        self.grey_params = False
        if params_file is not None:
            self.load_params(params_file)

    def load_params(self, path: str | Path) -> None:
        """Load the reference's parameter file (keys as in its README)."""
        from codec.fileio import load_torch_file

        state = load_torch_file(path, "Watson parameter file")
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
        if c not in (1, 3):
            raise ValueError(f"Watson losses take 1 or 3 channels, got {c}")
        if c == 3 and not self.grey_params:
            chans, weights = [self.ly, self.lcb, self.lcr], torch.softmax(self.w_tild, 0)
        else:
            chans, weights = [self.ly], torch.ones(1, device=self.w_tild.device)

        blocks = _Blocks(self, shifts)
        if self.kind == "dft":
            return dft_distance(chans, weights, blocks, input, target)
        return dct_distance(chans, blocks(target), blocks(input)) @ weights.to(input)


class _WatsonLoss(nn.Module):
    """Registry adapter: images in [-1, 1], grid shifts in training mode."""

    random_shift = True

    def __init__(self, kind: str, params_file: str | Path | None = None) -> None:
        super().__init__()
        self.watson = WatsonDistance(kind, params_file, signed=True)

    def forward(self, input: torch.Tensor, target: torch.Tensor, shifts: torch.Tensor | None = None) -> torch.Tensor:
        return self.watson(input, target, shifts)


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
