"""How far model-sized crops sit off a model's framing, and how many encode would frame again.

A model-sized input (64x64 for the shipped faces) is coded as it is when its face already sits
on the model's framing, and framed as a photo is when it is beyond align.OFF_SCALE or
align.OFF_SHIFT (`align.off_framing`). This measures, on a split's CelebA crops (which are
framed by construction and must pass as they are) and on given images (the shipped samples by
default), the scale and centre shift that would frame each face, their percentiles, and how
many are beyond the bounds.

    python benchmarks/off_framing.py --data-root ../shared/datasets --split valid --images 2000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True, help="a CelebA root (img_align_celeba/ and the split list)")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--model", default="celeba64")
    ap.add_argument("extra", nargs="*", type=Path, help="model-sized images to report one by one [the samples]")
    args = ap.parse_args()
    from codec import align
    from codec.data import load_dataset
    from codec.ladder import framing_of
    from codec.zoo import load_model, resolve

    base = resolve(args.model).base
    framing, size = framing_of(base), load_model(base)[0].config.size
    crops = load_dataset("celeba", args.data_root, args.split, size=size, limit=args.images, cache_dir="runs/cache")

    def offset(img: Image.Image) -> tuple[float, float] | None:
        faces = align.find_faces(img)
        return align.framing_offset(max(faces, key=lambda f: f.area), framing, size) if faces else None

    offsets = [offset(Image.fromarray(c.transpose(1, 2, 0))) for c in crops.images]
    found = np.array([o for o in offsets if o is not None])
    lo, hi = align.OFF_SCALE
    beyond = (found[:, 0] < lo) | (found[:, 0] > hi) | (found[:, 1] > align.OFF_SHIFT * size)
    print(f"{len(crops.images)} {args.split} crops at {size}x{size}, a face found in {len(found)}")
    q = [1, 5, 50, 95, 99]
    print("percentiles", q)
    scale = found[:, 0]
    print("  scale   ", np.percentile(scale, q).round(3), f"min {scale.min():.3f} max {scale.max():.3f}")
    print("  shift px", np.percentile(found[:, 1], q).round(2), f"max {found[:, 1].max():.2f}")
    print(f"beyond {lo}-{hi}x or {align.OFF_SHIFT * size:.0f} px (framed again by encode): {int(beyond.sum())}")
    for path in args.extra or sorted((ROOT / "samples").glob("*.png")):
        img = Image.open(path).convert("RGB")
        off = offset(img)
        say = "no face found" if off is None else f"scale {off[0]:.2f}, shift {off[1]:.1f} px"
        print(f"{path.name}: {say}; {align.off_framing(align.find_faces(img), framing, size) or 'on the framing'}")


if __name__ == "__main__":
    from codec.cli import friendly_errors

    friendly_errors(main)()
