"""The sample faces across the quality scale, beside WebP at the same byte caps: docs/ladder.png.

    python scripts/ladder_gallery.py [--caps 112,200,350,520,820,1024] [--out docs/ladder.png] [IMAGE...]
    python scripts/ladder_gallery.py --model celeba128 --caps 112,135,400,520,1024 --out docs/ladder128.png

For each input (default: the samples/ faces, the photo found and framed) and each cap, two
images: percodec's file at `encode --max-bytes CAP` (the highest quality that fits, 12
refinement steps) and WebP's largest quality whose file fits the same cap (method 6, the
input as percodec coded it, at the model's side; "no fit" where even quality 0 is larger).
Each with its size and PSNR / SSIM against that input. A cap above the scale's top rung gets
the top rung. Public-domain faces only (CelebA may not be redistributed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from codec.baselines import webp  # noqa: E402
from codec.metrics import psnr, ssim  # noqa: E402
from codec.pipeline import EncodeOptions, encode_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def webp_within(img: np.ndarray, cap: int) -> tuple[np.ndarray, int] | None:
    """WebP's best quality within `cap` bytes (bisected): the decoded image and its size."""
    lo, hi, best = 0, 100, None
    while lo <= hi:
        q = (lo + hi) // 2
        codec = webp(q)
        data = codec.encode(img)
        if len(data) <= cap:
            best, lo = (codec.decode(data), len(data)), q + 1
        else:
            hi = q - 1
    return best


def scores(decoded: np.ndarray, original: np.ndarray) -> tuple[float, float]:
    a, b = (torch.from_numpy(np.array(x)).permute(2, 0, 1)[None] for x in (decoded, original))
    return float(psnr(a, b)[0]), float(ssim(a, b)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", type=Path)
    ap.add_argument("--caps", default="112,200,350,520,820,1024")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "ladder.png")
    ap.add_argument("--model", default="celeba64", help="the scale (or model) percodec codes with")
    args = ap.parse_args()
    images = args.images or [ROOT / "samples" / n for n in ("astronaut_photo.jpg", "grace_hopper.png")]
    caps = [int(c) for c in args.caps.split(",")]
    coded = {cap: encode_batch(images, EncodeOptions(model=args.model, max_bytes=cap, device="cpu")) for cap in caps}
    cols = 1 + len(caps)
    fig, axes = plt.subplots(2 * len(images), cols, figsize=(1.55 * cols, 3.7 * len(images)), squeeze=False)
    for i in range(len(images)):
        top, bottom = axes[2 * i], axes[2 * i + 1]
        original = coded[caps[0]][i].original.permute(1, 2, 0).numpy()
        top[0].imshow(original)
        top[0].set_title("input", fontsize=8)
        bottom[0].axis("off")
        top[0].set_ylabel(f"percodec {args.model}", fontsize=8)
        for j, cap in enumerate(caps, start=1):
            r = coded[cap][i]
            top[j].imshow(r.decoded.permute(1, 2, 0).numpy())
            top[j].set_title(f"≤ {cap} B", fontsize=8)
            top[j].set_xlabel(f"{r.num_bytes} B, q{r.quality}\n{r.psnr:.1f} dB / {r.ssim:.2f}", fontsize=7)
            fit = webp_within(original, cap)
            if fit is None:
                bottom[j].imshow(np.full_like(original, 255))
                bottom[j].set_xlabel("no fit\n(WebP's floor)", fontsize=7)
            else:
                img, size = fit
                p, s = scores(img, original)
                bottom[j].imshow(img)
                bottom[j].set_xlabel(f"{size} B\n{p:.1f} dB / {s:.2f}", fontsize=7)
            if j == 1:
                bottom[j].set_ylabel("WebP", fontsize=8)
        for ax in [*top, *bottom[1:]]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"encode --model {args.model} --max-bytes CAP (top) and WebP's best quality within CAP (bottom)",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
