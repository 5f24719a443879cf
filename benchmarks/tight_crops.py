"""Tight crops through encode's framing: how many faces are found, and how many framed crops
carry padding (black, or since the photo is extended by its blurred mirror, none).

    python benchmarks/tight_crops.py ~/data/utkface [--photos 300] [--model celeba64]

Every k-th photo of the folder (sorted), framed by `codec.align.align` as `encode` frames it.
A crop counts as padded where over 1% of its pixels are pure black (RGB sum under 10) *and*
those pixels touch its border; dark hair or a dark background inside the photo does not
touch a mirrored border in one flat block, but can, so look at the saved strip (--strip).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--model", default="celeba64")
    ap.add_argument("--strip", type=Path, help="save the padded crops' first 8 beside their photos here (PNG)")
    args = ap.parse_args()
    from PIL import Image

    from codec import align
    from codec.fileio import folder_files
    from codec.generator import resolve_model
    from codec.images import open_image

    files = folder_files(args.folder)
    files = files[:: max(1, len(files) // args.photos)][: args.photos]
    framing = align.read_framing(resolve_model(args.model))
    size = 64
    found, padded = 0, []
    for f in files:
        photo = open_image(f)
        a = align.align(photo, framing, size)
        if a.face is None:
            continue
        found += 1
        crop = np.asarray(a.image)
        black = crop.astype(int).sum(-1) < 10
        edge = np.concatenate([black[0], black[-1], black[:, 0], black[:, -1]])
        if black.mean() > 0.01 and edge.mean() > 0.25:
            padded.append(np.concatenate([np.asarray(photo.convert("RGB").resize((size, size))), crop], 0))
    print(f"{len(files)} photos of {args.folder}: a face found in {found}; crops padded black along their border: "
          f"{len(padded)}")  # fmt: skip
    if args.strip and padded:
        Image.fromarray(np.concatenate(padded[:8], 1)).save(args.strip)


if __name__ == "__main__":
    main()
