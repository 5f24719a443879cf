"""Measure a model's framing on its training split and store it in the model file.

    python scripts/measure_framing.py models/celeba64.safetensors --data-root ../shared/datasets [--images 2000]

The framing is where the face's key points (eye centres, mouth corners, from dlib's 68
landmarks) sit, on average, in the training crops (CelebA:
the centred 140x140 square of the aligned 178x218 images, the crop `fit_to_model` takes).
`encode` warps a photo so that its face's landmarks land there. It is metadata outside the
fingerprint: files made before keep decoding.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from codec.align import measure_framing, write_framing
from codec.data import celeba_files
from codec.images import CELEBA_CROP


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--images", type=int, default=2000)
    args = ap.parse_args()
    files = celeba_files(args.data_root, "train")[: args.images]
    images = [Image.open(f).convert("RGB") for f in files]
    w, h = images[0].size
    side = round(min(w, h) * CELEBA_CROP)  # the square fit_to_model takes
    left, top = (w - side) // 2, (h - side) // 2
    box = (left, top, left + side, top + side)
    framing, used = measure_framing(images, box)
    write_framing(args.model, framing, used)
    print(f"{args.model}: framing from {used} of {len(images)} training faces (one face found in each)")


if __name__ == "__main__":
    main()
