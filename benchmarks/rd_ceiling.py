"""Where a rate-distortion model's quality stops growing with bytes, and why.

    python benchmarks/rd_ceiling.py [--model celeba64] [--images 100] [--data-root ../shared/datasets]

On CelebA *valid* faces, PSNR/SSIM of:
1. the encoder's latent quantised with ever finer steps (ideal code length + header), and
   not quantised at all: the model's own ceiling, whatever the bytes;
2. the best latent for the generator, found by 300 Adam steps of MSE from the encoder's
   start, not quantised: the ceiling of the generator behind its nz-wide input;
3. the same search over the generator's first feature map (nz -> ch x 4 x 4) instead of the
   latent: what the rest of the generator could show if the latent were not the bottleneck.
The gaps say where capacity is missing: 1 -> 2 is the encoder, 2 -> 3 the latent's width.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from codec.data import load_dataset
from codec.generator import resolve_model
from codec.images import float_to_uint8
from codec.metrics import psnr, ssim
from codec.rdmodel import load_rd


def _row(label: str, out: torch.Tensor, x: torch.Tensor, nbytes: float | None = None) -> None:
    dec = float_to_uint8(out.detach())
    size = f"{nbytes:6.1f} B" if nbytes is not None else "       -"
    quality = f"{psnr(dec, x).mean().item():6.2f} dB  SSIM {ssim(dec, x).mean().item():.4f}"
    print(f"{label:<48} {size}  {quality}", flush=True)


def _search(forward, start: torch.Tensor, target: torch.Tensor, steps: int = 300, lr: float = 0.02) -> torch.Tensor:
    v = start.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    for _ in range(steps):
        loss = (forward(v) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return forward(v).detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="celeba64")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--data-root", default="../shared/datasets")
    args = ap.parse_args()
    m, _ = load_rd(resolve_model(args.model))
    data = load_dataset("celeba", args.data_root, "valid", size=m.config.size, limit=args.images, progress=False)
    x = torch.from_numpy(np.ascontiguousarray(data.images))
    xf = x.float() / 127.5 - 1
    print(f"{args.model}: nz {m.config.nz}, {len(x)} CelebA valid faces")
    with torch.no_grad():
        y = m.encoder(xf)
        for step in (2.0, 1.0, 0.5, 0.25, 0.1):
            y_hat = m.prior.rounded(y, step)
            nbytes = m.ideal_bytes(y_hat, step).mean().item()
            _row(f"1. encoder, step {step:g}", m.generator(y_hat), x, nbytes)
        _row("1. encoder, not quantised", m.generator(y), x)
    _row("2. best latent for the generator (MSE search)", _search(m.generator, y, xf), x)
    first, rest = m.generator.main[0], m.generator.main[1:]
    with torch.no_grad():
        features = first(y.view(len(y), -1, 1, 1))
    _row("3. best first feature map (MSE search)", _search(rest, features, xf, lr=0.01), x)


if __name__ == "__main__":
    from codec.cli import friendly_errors  # a missing data folder is one line, not a traceback

    friendly_errors(main)()
