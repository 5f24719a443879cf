"""docs/align_demo.png: a whole photo with the face percodec found, the aligned crop it
encoded, and the decoded face.

    python scripts/align_figure.py [samples/astronaut_photo.jpg] [--model celeba64]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from codec import align  # noqa: E402
from codec.generator import resolve_model  # noqa: E402
from codec.pipeline import EncodeOptions, decode_tensor, encode_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photo", nargs="?", type=Path, default=ROOT / "samples" / "astronaut_photo.jpg")
    ap.add_argument("--model", default="celeba64")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "align_demo.png")
    args = ap.parse_args()
    photo = Image.open(args.photo).convert("RGB")
    face = align.detect(photo)[0]
    (r,) = encode_batch([args.photo], EncodeOptions(model=args.model))
    decoded = decode_tensor(r.data, args.model)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    axes[0].imshow(photo)
    left, top, right, bottom = face.box
    axes[0].add_patch(Rectangle((left, top), right - left, bottom - top, fill=False, color="yellow", lw=2))
    axes[0].plot(*face.landmarks.T, ".", color="cyan", ms=2)
    axes[0].set_title(f"photo {photo.width}x{photo.height}: face found", fontsize=9)
    axes[1].imshow(r.original.permute(1, 2, 0).numpy())
    axes[1].set_title("aligned 64x64 crop (what is coded)", fontsize=9)
    axes[2].imshow(decoded.permute(1, 2, 0).numpy())
    axes[2].set_title(f"decoded from {r.num_bytes} bytes\nPSNR {r.psnr:.1f} dB, SSIM {r.ssim:.2f}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    coded_by = f", quality {r.quality} ({r.model})" if r.quality else f" ({resolve_model(args.model).name})"
    fig.suptitle(f"model {args.model}{coded_by}", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
