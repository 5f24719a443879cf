"""How sure dlib's HOG detector is of real faces: the score of every detection in a sample of
photos, as percentiles, for the photos with one face and for all. `codec.align.CONFIRM_SCORE`
is read against it: a weak detection beside a larger face is confirmed by the CNN detector,
since a cut at any score would also drop real faces.

    python benchmarks/detect_scores.py ~/data/celeba-wild --photos 300
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--photos", type=int, default=300, help="a random sample of this many (seed 0)")
    args = ap.parse_args()
    from codec.align import DETECT_SIDE, _detector
    from codec.fileio import folder_files

    files = folder_files(args.folder)
    random.Random(0).shuffle(files)
    single, every = [], []
    for path in files[: args.photos]:
        try:
            img = Image.open(path).convert("RGB")
        except OSError:
            continue
        scale = min(1.0, DETECT_SIDE / max(img.size))
        small = img if scale == 1 else img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
        arr = np.asarray(small)
        _, scores, _ = _detector().run(arr, 0, 0.0)
        if not len(scores):
            _, scores, _ = _detector().run(arr, 1, 0.0)
        every += list(scores)
        if len(scores) == 1:
            single += list(scores)
    pcts = (0, 1, 5, 50)
    for name, s in (("photos with one face", single), ("every detection", every)):
        got = np.percentile(s, pcts) if s else [float("nan")] * len(pcts)
        print(f"{name} ({len(s)}): " + ", ".join(f"p{p} {v:.2f}" for p, v in zip(pcts, got, strict=True)))


if __name__ == "__main__":
    main()
