"""A straightforward Watson-DFT, written the obvious way (per-block FFT calls, two atan2,
acos of cos), as the speed baseline of benchmarks/loss_speed.py and a second opinion on the
fast version in codec.losses.watson. Single channel; images (N, 1, H, W) in [0, 1]."""

from __future__ import annotations

import torch

from codec.losses.watson import EPS, REAL_COEFFS, WatsonDistance, smooth_max


def naive_watson_dft_channel(ch, x1: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """ch: a codec.losses.watson._Channel of kind 'dft'; x1 input, x0 target: (N, 1, H, W)."""
    n, _, h, w = x0.shape
    blocks0 = x0.unfold(2, 8, 8).unfold(3, 8, 8).reshape(n, -1, 8, 8)
    blocks1 = x1.unfold(2, 8, 8).unfold(3, 8, 8).reshape(n, -1, 8, 8)
    c0 = torch.stack([torch.fft.rfft2(blocks0[:, k]) for k in range(blocks0.shape[1])], 1) / 64
    c1 = torch.stack([torch.fft.rfft2(blocks1[:, k]) for k in range(blocks1.shape[1])], 1) / 64
    a0 = torch.sqrt((c0.real + EPS) ** 2 + (c0.imag + EPS) ** 2)
    a1 = torch.sqrt((c1.real + EPS) ** 2 + (c1.imag + EPS) ** 2)
    t = ch.t_tild.exp()
    r = torch.sigmoid(ch.w_tild)
    dc = a0[:, :, 0, 0]
    t_l = t * ((dc + EPS) / (dc.mean(1, keepdim=True) + EPS)).pow(ch.alpha)[..., None, None]
    s = smooth_max(t_l, (a0.abs() + EPS).pow(r) * t_l.pow(1 - r))
    d = ((((a1 - a0) / s).abs() + EPS).pow(ch.beta).sum((1, 2, 3)) + EPS).pow(1 / ch.beta)
    p0 = torch.atan2(c0.imag, c0.real + EPS)
    p1 = torch.atan2(c1.imag, c1.real + EPS)
    wp = ch.w_phase_tild.exp().clone()
    for i, j in REAL_COEFFS:
        wp[i, j] = 0
    phase = (torch.acos(torch.cos(p0 - p1) * (1 - 1e-7)) * wp).sum((1, 2, 3))
    return d + phase


def naive_watson_dft(model: WatsonDistance, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Colour version: YCbCr, per-channel distances, softmax channel weights."""

    def ycc(x):
        return (x.permute(0, 2, 3, 1) @ model.ycbcr.to(x) + model.ycbcr_bias.to(x)).permute(0, 3, 1, 2)

    i, t = ycc(input), ycc(target)
    w = torch.softmax(model.w_tild, 0)
    chans = (model.ly, model.lcb, model.lcr)
    return sum(w[k] * naive_watson_dft_channel(chans[k], i[:, k : k + 1], t[:, k : k + 1]) for k in range(3))
