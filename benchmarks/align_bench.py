"""Face finding and framing against the issue's targets (CelebA test faces).

    python benchmarks/align_bench.py --data-root ../shared/datasets [--images 200] [--skip corners,photos,speed]

1. corners: on CelebA's aligned test images, the aligned crop's corners against the
   official crop (the centred 140x140 square), mean displacement in pixels at 64x64; and the
   aligned crop's PSNR against the official one, beside a one-pixel shift of it for scale.
2. photos: each test face pasted into a larger photo (scaled 1.5-2.5x, shifted, rotated up
   to +-15 degrees, on a textured background); detection rate, and the decoded face's PSNR
   against the original centre crop, beside encoding that crop directly (shipped model,
   default settings), and against the aligned crop that was coded; for scale, the centre
   crop moved by half a pixel, coded the same way.
3. speed: detection + landmarks + warp of a 1-megapixel and a 24-megapixel photo.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

from codec import align
from codec.data import celeba_files
from codec.generator import resolve_model
from codec.images import CELEBA_CROP, fit_to_model
from codec.metrics import psnr
from codec.pipeline import EncodeOptions, decode_tensor, encode_batch


def corner_error(files: list, framing: np.ndarray) -> tuple[float, float, int]:
    errs = []
    for f in files:
        img = Image.open(f).convert("RGB")
        faces = align.detect(img)
        if not faces:
            continue
        w, h = img.size
        side = round(min(w, h) * CELEBA_CROP)
        left, top = (w - side) // 2, (h - side) // 2
        m = align.transform(faces[0], framing, 64)
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))
        got = (inv @ np.array([[0, 0, 1], [64, 0, 1], [0, 64, 1], [64, 64, 1]]).T)[:2].T
        want = np.array([[left, top], [left + side, top], [left, top + side], [left + side, top + side]])
        errs.append(np.linalg.norm(got - want, axis=1).mean() * 64 / side)
    return float(np.mean(errs)), float(np.median(errs)), len(errs)


def framing_psnr(files: list, framing: np.ndarray) -> None:
    """How far the aligned crop of an (unpasted) original is from the official crop, in PSNR,
    beside the official crop shifted by one pixel at 64x64 for scale."""
    faces = [Image.open(f).convert("RGB") for f in files]
    official = _stack([fit_to_model(f, 64, CELEBA_CROP) for f in faces])
    aligned = _stack([align.align(f, framing, 64).image for f in faces])
    shifted = _stack([fit_to_model(_shift(f, 1.0), 64, CELEBA_CROP) for f in faces])
    print(
        f"framing: aligned originals against the official crop {psnr(aligned, official).mean().item():.2f} dB; "
        f"the official crop shifted by 1 px {psnr(shifted, official).mean().item():.2f} dB"
    )


def _stack(images: list) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(i).transpose(2, 0, 1).copy()) for i in images])


def synthetic_photo(face: Image.Image, rng: np.random.Generator) -> Image.Image:
    scale, angle = rng.uniform(1.5, 2.5), rng.uniform(-15, 15)
    f = face.resize((round(face.width * scale), round(face.height * scale)), Image.Resampling.BICUBIC)
    f = f.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=tuple(rng.integers(0, 256, 3)))
    w, h = f.width + rng.integers(100, 600), f.height + rng.integers(100, 400)
    bg = rng.integers(40, 220, (h // 12 + 1, w // 12 + 1, 3), dtype=np.uint8)
    photo = Image.fromarray(bg).resize((w, h), Image.Resampling.BICUBIC)
    photo.paste(f, (int(rng.integers(0, w - f.width + 1)), int(rng.integers(0, h - f.height + 1))))
    return photo


def photos(files: list, model: str) -> None:
    rng = np.random.default_rng(0)
    faces = [Image.open(f).convert("RGB") for f in files]
    crops = [fit_to_model(f, 64, CELEBA_CROP) for f in faces]
    pasted = [synthetic_photo(f, rng) for f in faces]
    found = sum(1 for p in pasted if align.detect(p))
    opts = EncodeOptions(model=model)
    target = _stack(crops)

    def decoded_psnr(inputs: list) -> tuple[float, float, torch.Tensor]:
        """PSNR of the decoded faces against the official centre crop and against the crop
        that was coded, and the coded crops."""
        res = encode_batch(inputs, opts)
        dec = torch.stack([decode_tensor(r.data, model) for r in res])
        coded = torch.stack([r.original for r in res])
        return psnr(dec, target).mean().item(), psnr(dec, coded).mean().item(), coded

    direct, _, _ = decoded_psnr(crops)
    via_photo, vs_coded, coded = decoded_psnr(pasted)
    print(f"photos: faces found in {found}/{len(pasted)} ({100 * found / len(pasted):.1f}%)")
    print(
        f"decoded PSNR against the centre crop: crop given directly {direct:.2f} dB, via the photo {via_photo:.2f} dB"
    )
    print(f"via the photo, against the aligned crop that was coded: {vs_coded:.2f} dB")
    print(f"the aligned crop itself against the centre crop (no coding): {psnr(coded, target).mean().item():.2f} dB")
    half, _, moved = decoded_psnr([fit_to_model(_shift(f, 0.5), 64, CELEBA_CROP) for f in faces])
    print(
        f"for scale: the centre crop moved by half a pixel ({psnr(moved, target).mean().item():.2f} dB from it), "
        f"coded: {half:.2f} dB against the centre crop ({half - direct:+.2f} dB)"
    )


def _shift(face: Image.Image, pixels: float) -> Image.Image:
    """The face moved right by `pixels` of the 64x64 crop (bicubic, sub-pixel)."""
    px = face.width * CELEBA_CROP / 64 * pixels
    return face.transform(face.size, Image.Transform.AFFINE, (1, 0, px, 0, 1, 0), Image.Resampling.BICUBIC)


def speed(face: Image.Image, framing: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    for mp, side in ((1, 1000), (24, 4900)):
        base = synthetic_photo(face, rng)
        photo = base.resize((side, round(side * base.height / base.width)), Image.Resampling.BICUBIC)
        align.align(photo, framing, 64)  # warm-up (model loading)
        t = time.perf_counter()
        for _ in range(5):
            align.align(photo, framing, 64)
        print(f"speed: {mp} MP photo ({photo.width}x{photo.height}): {(time.perf_counter() - t) / 5 * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--model", default="celeba64")
    ap.add_argument("--skip", default="")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    files = celeba_files(args.data_root, "test")[: args.images]
    framing = align.read_framing(resolve_model(args.model))
    if "corners" not in skip:
        mean, median, n = corner_error(files[:100], framing)
        print(f"corners: mean displacement {mean:.2f} px at 64x64 (median {median:.2f}) over {n} faces")
        framing_psnr(files[:200], framing)
    if "speed" not in skip:
        speed(Image.open(files[0]).convert("RGB"), framing)
    if "photos" not in skip:
        photos(files, args.model)


if __name__ == "__main__":
    from codec.cli import friendly_errors  # a missing data folder is one line, not a traceback

    friendly_errors(main)()
