"""Which model serves which bytes: every level of every candidate model, coded as `encode`
codes it, on CelebA *valid* faces, and the quality ladder that follows.

    python benchmarks/ladder_rungs.py --models celeba64,celeba64-hi [--images 200]
        [--default celeba64:4] [--write models/celeba64.ladder.json] [--rows runs/ladder_rows.json]
        [--exclude MODEL:LEVEL,...]

Each (model, level) is coded with encode's defaults at that level (refinement included,
real files, every byte counted). The ladder keeps the rungs no other rung beats: a rung is
dropped when another one costs no more bytes and gives at least its PSNR and its SSIM, or
when the straight line between its neighbours on the ladder does, at its bytes, and those
neighbours lie within NEAR of each other in bytes. (A rung under a long line still serves
every cap between its neighbours, since a file takes one rung, never a mix: the first run
with the detail model, unbounded, dropped celeba64-id's levels 6-10 under the line from
146 B to the detail's 269 B and left no quality between them.) The
kept rungs, in order of bytes, are qualities 1..N; `--default` names the rung that becomes
the default quality (it must be kept). `--write` stores the ladder (see codec.ladder).
`--rows FILE` keeps each measured level there, keyed by the model's fingerprint, so a
rerun with one more model measures only that one. `--exclude` keeps rungs off the ladder
that PSNR and SSIM would take but the cross-photo column refuses (measured apart, per rung,
with `benchmarks/identity_refine.py --model M --quality LEVEL --weights 0.5 --steps-list 12`:
the shipped scale leaves out celeba64-detail's levels 1-4, which keep the person worse than
the celeba64-id rungs they would replace).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from codec.data import load_dataset
from codec.family import level_count
from codec.generator import resolve_model
from codec.images import uint8_to_pil
from codec.pipeline import EncodeOptions, encode_batch, load_model


def measure(models: list[str], images: list, store: Path | None = None, batch: int = 50) -> list[dict]:
    known = json.loads(store.read_text()) if store and store.is_file() else {}
    rows = []
    for name in models:
        fp = load_model(name)[1].hex()
        for level in range(1, level_count(resolve_model(name)) + 1):
            key = f"{fp}:{level}:{len(images)}"
            if key not in known:
                opts = EncodeOptions(model=str(resolve_model(name)), quality=level, batch_size=batch)
                res = encode_batch(images, opts)
                known[key] = {
                    "bytes": float(np.mean([r.num_bytes for r in res])),
                    "max": max(r.num_bytes for r in res),
                    "psnr": float(np.mean([r.psnr for r in res])),
                    "ssim": float(np.mean([r.ssim for r in res])),
                }
                if store:
                    store.parent.mkdir(parents=True, exist_ok=True)
                    store.write_text(json.dumps(known, indent=1))
            rows.append({"model": name, "level": level, **known[key]})
            print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict) -> str:
    size = f"{r['bytes']:6.1f} B (max {r['max']:3d})"
    return f"{r['model']:<12} level {r['level']}: {size}, {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}"


#: Neighbours at most this ratio apart in bytes may drop the rung between them (see above).
NEAR = 1.15


def frontier(rows: list[dict]) -> list[dict]:
    """The rungs no other rung beats (no more bytes, at least the PSNR and the SSIM; nor the
    line between near neighbours), by bytes."""

    def beaten(r: dict) -> bool:
        return any(
            o is not r and o["bytes"] <= r["bytes"] and o["psnr"] >= r["psnr"] and o["ssim"] >= r["ssim"] for o in rows
        )

    kept = sorted((r for r in rows if not beaten(r)), key=lambda r: r["bytes"])
    while True:  # also drop a rung its neighbours' straight line beats at its bytes, in PSNR and SSIM
        below = [
            i
            for i in range(1, len(kept) - 1)
            if kept[i + 1]["bytes"] <= NEAR * kept[i - 1]["bytes"] and _under(kept[i - 1], kept[i], kept[i + 1])
        ]
        if not below:
            return kept
        del kept[below[0]]


def _under(lo: dict, r: dict, hi: dict) -> bool:
    t = (r["bytes"] - lo["bytes"]) / (hi["bytes"] - lo["bytes"])
    return all(lo[m] + t * (hi[m] - lo[m]) >= r[m] for m in ("psnr", "ssim"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="celeba64,celeba64-hi")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--default", default="celeba64:4", help="MODEL:LEVEL of the default quality")
    ap.add_argument("--write", type=Path, help="write the ladder here (e.g. models/celeba64.ladder.json)")
    ap.add_argument("--rows", type=Path, help="keep measured levels in this JSON file and reuse them")
    ap.add_argument("--exclude", default="", help="MODEL:LEVEL,... rungs to leave off the ladder")
    args = ap.parse_args()
    excluded = {(m, int(lv)) for m, lv in (e.rsplit(":", 1) for e in args.exclude.split(",") if e)}
    data = load_dataset("celeba", args.data_root, "valid", size=64, limit=args.images, progress=False)
    images = [uint8_to_pil(torch.from_numpy(np.ascontiguousarray(x))) for x in data.images]
    print(f"{len(images)} CelebA valid faces, encode's defaults at each level")
    rows = measure(args.models.split(","), images, args.rows)
    kept = frontier([r for r in rows if (r["model"], r["level"]) not in excluded])
    model, level = args.default.rsplit(":", 1)
    default = next((q for q, r in enumerate(kept, start=1) if (r["model"], r["level"]) == (model, int(level))), None)
    print("\nladder (quality: rung):")
    for q, r in enumerate(kept, start=1):
        mark = "  <- default" if q == default else ""
        print(f"  {q:2d}: {_line(r)}{mark}")
    if default is None:
        raise SystemExit(f"the default rung {args.default} is beaten by another: choose another default")
    if args.write:
        rungs = ",\n".join(f"  {json.dumps([r['model'], r['level']])}" for r in kept)
        args.write.write_text(f'{{"default": {default}, "rungs": [\n{rungs}\n]}}\n')
        print(f"wrote {args.write}")


if __name__ == "__main__":
    from codec.cli import friendly_errors  # a missing data folder is one line, not a traceback

    friendly_errors(main)()
