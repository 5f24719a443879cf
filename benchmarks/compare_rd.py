"""Two or more rate-distortion model files side by side on the same CelebA faces: each level's
mean bytes, PSNR and SSIM with the encoder alone (--steps 0), and the whole encode (the
default refinement) at one byte cap over the model's levels in order of bytes, so a
retrained model can be judged against the one it would replace before it ships.

    python benchmarks/compare_rd.py --data-root ~/data --split valid --images 300 \\
        models/celeba64.safetensors ~/percodec-runs/rd-celeba64-x3/model.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _encode(faces: list[Image.Image], **options: object) -> tuple[float, float, float]:
    from codec.pipeline import EncodeOptions, encode_batch

    res = encode_batch(faces, EncodeOptions(**options))
    return (float(np.mean([r.num_bytes for r in res])), float(np.mean([r.psnr for r in res])),
            float(np.mean([r.ssim for r in res])))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="rate-distortion model files (or shipped names)")
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--split", default="valid")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--max-bytes", type=int, default=112, help="the cap of the whole-encode row")
    args = ap.parse_args()
    from codec.data import load_dataset
    from codec.family import level_count
    from codec.generator import resolve_model

    s = load_dataset("celeba", args.data_root, args.split, size=64, limit=args.images, cache_dir="runs/cache")
    faces = [Image.fromarray(f.transpose(1, 2, 0)) for f in s.images]
    print(f"{len(faces)} CelebA {args.split} faces of {args.data_root}")
    print("\n| model | level | bytes | PSNR | SSIM |")
    print("|---|---|---|---|---|")
    ladders = {}
    for model in args.models:
        sizes = {}
        for level in range(1, level_count(model) + 1):
            b, p, q = _encode(faces, model=model, quality=level, steps=0)
            sizes[level] = b
            print(f"| {model} | {level} | {b:.1f} | {p:.2f} | {q:.3f} |", flush=True)
        ladders[model] = sorted(sizes, key=sizes.get)  # levels added later may be coarser: a scale by bytes
    print(f"\n| model | whole encode at --max-bytes {args.max_bytes}: bytes | PSNR | SSIM |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n, model in enumerate(args.models):
            ladder = Path(tmp) / f"m{n}.ladder.json"
            path = str(resolve_model(model).resolve())
            ladder.write_text(json.dumps({"default": 1, "rungs": [[path, lv] for lv in ladders[model]]}))
            b, p, q = _encode(faces, model=str(ladder), max_bytes=args.max_bytes)
            print(f"| {model} | {b:.1f} | {p:.2f} | {q:.3f} |", flush=True)


if __name__ == "__main__":
    main()
