"""Same files, same images: a digest of what this code writes and decodes on CelebA faces, to
hold a restructuring to byte-identical output.

Encodes N faces of a split (model-sized crops, so no face finding) at each setting, and
records every file's SHA-256, the SHA-256 of the image `decode` makes of it, its size and
PSNR (where files differ, the comparison says whether they are as good). Run it on
the code before and after a change, then compare:

    PERCODEC_TREE=/path/to/old/checkout python benchmarks/same_files.py --data-root ../shared/datasets \\
        --images 200 --out /tmp/before.json
    python benchmarks/same_files.py --data-root ../shared/datasets --images 200 --out /tmp/after.json
    python benchmarks/same_files.py --compare /tmp/before.json /tmp/after.json

PERCODEC_TREE names the checkout whose `codec` package is imported (default: this one).
Settings: the default (the scale at its default cap), the scale at --max-bytes 520 and 1024
(detail models), two qualities of the scale by number, and the GAN-only reference (a few
faces: its search is slow).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("PERCODEC_TREE") or str(ROOT))

#: name -> (EncodeOptions fields, faces it codes at most)
SETTINGS: dict[str, tuple[dict, int | None]] = {
    "default": ({}, None),
    "max-bytes-520": ({"max_bytes": 520}, None),
    "max-bytes-1024": ({"max_bytes": 1024}, None),
    "quality-2": ({"quality": 2}, None),
    "quality-9": ({"quality": 9}, None),
    "gan-reference": ({"model": "celeba64-gan", "steps": 60, "restarts": 2}, 8),
}


def digest(data_root: str, images: int, settings: list[str]) -> dict[str, list[list]]:
    """Setting -> [file SHA-256, decoded image SHA-256, bytes, PSNR] per face."""
    import numpy as np
    from PIL import Image

    from codec.data import load_dataset
    from codec.pipeline import EncodeOptions, decode_tensor, encode_batch

    s = load_dataset("celeba", data_root, "valid", size=64, limit=images, cache_dir="runs/cache")
    faces = [Image.fromarray(f.transpose(1, 2, 0)) for f in s.images]
    out: dict[str, list[list[str]]] = {}
    for name in settings:
        options, most = SETTINGS[name]
        rows, sizes = [], []
        for r in encode_batch(faces[:most], EncodeOptions(**options)):
            image = decode_tensor(r.data).numpy()
            rows.append([hashlib.sha256(r.data).hexdigest(), hashlib.sha256(np.ascontiguousarray(image)).hexdigest(),
                         len(r.data), r.psnr])  # fmt: skip
            sizes.append(len(r.data))
        out[name] = rows
        print(f"{name}: {len(rows)} files, {np.mean(sizes):.1f} bytes on average", file=sys.stderr, flush=True)
    return out


def _mean(rows: list[list], k: int) -> float:
    return sum(r[k] for r in rows) / len(rows)


def compare(a: dict, b: dict) -> int:
    """Print each setting's agreement; the number of files or images that differ."""
    bad = 0
    for name in sorted(set(a) | set(b)):
        x, y = a.get(name, []), b.get(name, [])
        files = sum(p[0] != q[0] for p, q in zip(x, y, strict=False)) + abs(len(x) - len(y))
        images = sum(p[1] != q[1] for p, q in zip(x, y, strict=False))
        bad += files + images
        print(f"{name}: {min(len(x), len(y))} faces, {files} files differ, {images} decoded images differ")
        if files and all(len(r) == 4 for r in x + y):  # where files differ: are they as good?
            print(f"  bytes {_mean(x, 2):.1f} -> {_mean(y, 2):.1f}, PSNR {_mean(x, 3):.3f} -> {_mean(y, 3):.3f} dB "
                  f"(most bytes {max(r[2] for r in x)} -> {max(r[2] for r in y)})")  # fmt: skip
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", help="holds CelebA (celeba/ with its valid split)")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--out", type=Path, help="write the digest here (JSON)")
    ap.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="compare two digests")
    args = ap.parse_args()
    if args.compare:
        sys.exit(1 if compare(*(json.loads(p.read_text()) for p in args.compare)) else 0)
    if not args.data_root or not args.out:
        ap.error("--data-root and --out are needed to make a digest")
    args.out.write_text(json.dumps(digest(args.data_root, args.images, args.settings), indent=1))


if __name__ == "__main__":
    main()
