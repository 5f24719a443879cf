"""Who percodec codes worse: UTKFace's (or All-Age-Faces') held-out photos by age band x ethnicity.

The photos of the test split of a UTKFace folder (codec.photos: 5% by a hash of the path,
never trained on) are framed as encode frames them, coded at the default (at most 112 B) and
at `--max-bytes` caps, and scored against their framed crops: PSNR, SSIM and same-photo
identity (dlib's descriptor of the decoded face within SAME_PERSON of the original's). Tables:
mean PSNR per age band x ethnicity cell (n under it; a cell more than 1 dB below the overall
mean is marked), and per age band and per ethnicity the mean, the worst 5% of faces' mean
PSNR and the same-photo accept rate. UTKFace's file names give age, gender and ethnicity
(0 white, 1 black, 2 asian, 3 indian, 4 other), as its authors labelled them; All-Age-Faces'
(NNNNNAxx.jpg) give the age alone (its faces are mostly East Asian, not labelled one by one:
their column is "unlabelled").

    python benchmarks/subgroups.py --data-root ~/data/utkface              # all ~1,100 test photos
    python benchmarks/subgroups.py --data-root ~/data/utkface --max-bytes 520 --out runs/subgroups.json
    python benchmarks/subgroups.py --data-root ~/data/all-age-faces       # ~650 test photos, by age
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BANDS = ((0, 2), (3, 9), (10, 19), (20, 39), (40, 59), (60, 79), (80, 200))
ETHNICITIES = ("white", "black", "asian", "indian", "other", "unlabelled")
UNLABELLED = ETHNICITIES.index("unlabelled")
#: An All-Age-Faces name: five digits, "A", the age.
ALL_AGE = re.compile(r"\d{5}A(\d{2})\.jpg")
#: A cell this many dB under the overall mean is marked (issue #34's target).
GAP = 1.0


def label(name: str) -> tuple[int, int] | None:
    """(age band index, ethnicity index) from a UTKFace or All-Age-Faces name (the latter's
    ethnicity UNLABELLED), or None where it is neither."""
    if m := ALL_AGE.fullmatch(name):
        age, race = int(m.group(1)), UNLABELLED
    else:
        parts = name.split("_")
        try:
            age, race = int(parts[0]), int(parts[2])
        except (IndexError, ValueError):
            return None
        if not 0 <= race < UNLABELLED:
            return None
    band = next((i for i, (lo, hi) in enumerate(BANDS) if lo <= age <= hi), None)
    return (band, race) if band is not None else None


def _band(i: int) -> str:
    lo, hi = BANDS[i]
    return f"{lo}+" if hi >= 200 else f"{lo}-{hi}"


def _code(crops: np.ndarray, cap: int | None, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bytes, psnr, ssim, decoded uint8 (N, H, W, 3)) of every crop at the default or a cap."""
    from codec.pipeline import EncodeOptions, encode_batch

    images = [Image.fromarray(c.transpose(1, 2, 0)) for c in crops]
    opts = EncodeOptions(model=model, **({"max_bytes": cap} if cap else {}))
    res = encode_batch(images, opts)
    dec = np.stack([r.decoded.permute(1, 2, 0).numpy() for r in res])
    return (np.array([r.num_bytes for r in res]), np.array([r.psnr for r in res]), np.array([r.ssim for r in res]),
            dec)  # fmt: skip


def _tables(labels: list[tuple[int, int]], psnr: np.ndarray, ssim: np.ndarray, same: np.ndarray) -> dict:
    band = np.array([b for b, _ in labels])
    eth = np.array([e for _, e in labels])
    overall = float(psnr.mean())
    cells = {}
    for b in range(len(BANDS)):
        for e in range(len(ETHNICITIES)):
            m = (band == b) & (eth == e)
            if m.any():
                cells[f"{_band(b)}|{ETHNICITIES[e]}"] = {"n": int(m.sum()), "psnr": float(psnr[m].mean())}

    def group(mask: np.ndarray) -> dict:
        worst = np.sort(psnr[mask])[: max(1, int(np.ceil(0.05 * mask.sum())))]
        return {"n": int(mask.sum()), "psnr": float(psnr[mask].mean()), "ssim": float(ssim[mask].mean()),
                "worst5_psnr": float(worst.mean()), "same_photo": float(same[mask].mean())}  # fmt: skip

    rows = {"all": group(np.ones(len(psnr), bool))}
    rows |= {f"age {_band(b)}": group(band == b) for b in range(len(BANDS)) if (band == b).any()}
    rows |= {ETHNICITIES[e]: group(eth == e) for e in range(len(ETHNICITIES)) if (eth == e).any()}
    return {"overall_psnr": overall, "cells": cells, "groups": rows}


def _print(title: str, t: dict) -> None:
    print(f"\n### {title}\n")
    print("mean PSNR (dB) by age band x ethnicity (n); * = more than 1.0 dB under the overall "
          f"{t['overall_psnr']:.2f} dB\n")  # fmt: skip
    shown = [e for e in ETHNICITIES if any(k.endswith(f"|{e}") for k in t["cells"])]  # the labels this data has
    print("| age | " + " | ".join(shown) + " |")
    print("|---|" + "---|" * len(shown))
    for b in range(len(BANDS)):
        row = []
        for e in shown:
            c = t["cells"].get(f"{_band(b)}|{e}")
            mark = "*" if c and c["psnr"] < t["overall_psnr"] - GAP else ""
            row.append(f"{c['psnr']:.2f}{mark} ({c['n']})" if c else "–")
        print(f"| {_band(b)} | " + " | ".join(row) + " |")
    print("\n| group | n | PSNR | SSIM | worst 5% PSNR | same-photo accept |")
    print("|---|---|---|---|---|---|")
    for name, g in t["groups"].items():
        print(f"| {name} | {g['n']} | {g['psnr']:.2f} | {g['ssim']:.3f} | {g['worst5_psnr']:.2f} | "
              f"{100 * g['same_photo']:.1f}% |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data-root",
        required=True,
        help="a UTKFace folder (age_gender_race_date.jpg.chip.jpg files) or an All-Age-Faces one (NNNNNAxx.jpg)",
    )
    ap.add_argument("--model", default="celeba64")
    ap.add_argument("--images", type=int, help="the first N test photos [all]")
    ap.add_argument("--max-bytes", type=int, action="append", default=[], help="a cap besides the default (repeat)")
    ap.add_argument("--cache", default="runs/cache", help="where the framed crops are cached")
    ap.add_argument("--out", help="write the tables as JSON here")
    args = ap.parse_args()
    from codec import faces
    from codec.errors import PercodecError
    from codec.ladder import framing_of
    from codec.photos import photo_files, prepare_photos
    from codec.zoo import resolve

    try:
        files = [f for f in photo_files(args.data_root, "test") if label(f.name) is not None][: args.images]
    except PercodecError as exc:
        raise SystemExit(f"subgroups: {exc}") from None
    framing = framing_of(resolve(args.model).base)
    cache = Path(args.cache) / f"subgroups-{Path(args.data_root).name}"
    crops, names, skipped = prepare_photos(files, framing, 64, cache, 2, progress=True)
    labels = [label(n) for n in names]
    print(
        f"{len(names)} test photos of {Path(args.data_root).name} framed ({skipped} without a face found), "
        f"model {args.model}"
    )
    score = faces.SamePerson()
    originals = crops.transpose(0, 2, 3, 1)
    out = {}
    for cap in [None, *args.max_bytes]:
        size, psnr, ssim, dec = _code(crops, cap, args.model)
        same = np.array([score(o, d) for o, d in zip(originals, dec, strict=True)])
        title = f"default (at most 112 B; mean {size.mean():.1f} B)" if cap is None else f"--max-bytes {cap} " \
            f"(mean {size.mean():.1f} B)"  # fmt: skip
        out[title] = _tables(labels, psnr, ssim, same)
        _print(title, out[title])
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
