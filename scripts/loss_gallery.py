"""The same faces encoded with every loss at the same file size: docs/losses.png.

    python scripts/loss_gallery.py [--steps N] [--model celeba64] [--out docs/losses.png] IMAGE...

Each row is one input (default: the samples/ faces); the columns are the model-sized input
and the decoded file for each search loss (a rate-distortion model's default mix first), at
the model's default rate and steps, with the PSNR, SSIM and size of what decode produces.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from codec import family  # noqa: E402
from codec.generator import resolve_model  # noqa: E402
from codec.losses import LOSSES  # noqa: E402
from codec.pipeline import RD_LOSS, EncodeOptions, encode_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", type=Path)
    ap.add_argument("--steps", type=int, help="[the model's default]")
    ap.add_argument("--model", default="celeba64")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "losses.png")
    args = ap.parse_args()
    images = args.images or sorted((ROOT / "samples").glob("*.png"))
    rd = family.of_file(resolve_model(args.model)).name != "gan"
    losses = [RD_LOSS, *LOSSES] if rd else list(LOSSES)
    results = {
        name: encode_batch(images, EncodeOptions(model=args.model, loss=name, steps=args.steps)) for name in losses
    }
    cols = 1 + len(losses)
    fig, axes = plt.subplots(len(images), cols, figsize=(1.6 * cols, 1.9 * len(images)), squeeze=False)
    for i in range(len(images)):
        first = next(iter(results.values()))[i]
        axes[i][0].imshow(first.original.permute(1, 2, 0).numpy(), cmap="gray")
        if i == 0:
            axes[i][0].set_title("input", fontsize=8)
        for j, name in enumerate(losses, start=1):
            r = results[name][i]
            axes[i][j].imshow(r.decoded.permute(1, 2, 0).numpy(), cmap="gray")
            if i == 0:
                axes[i][j].set_title(name, fontsize=8)
            axes[i][j].set_xlabel(f"{r.psnr:.1f} dB / {r.ssim:.2f}\n{r.num_bytes} B", fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    steps = args.steps if args.steps is not None else next(iter(results.values()))[0].steps
    fig.suptitle(f"model {args.model}, {steps} steps (at most); PSNR / SSIM of the decoded file", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
