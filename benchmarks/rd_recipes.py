"""Which rate-distortion recipe to ship: equal-length runs at the same rate, then a table.

    python benchmarks/rd_recipes.py train --data-root ../shared/datasets [--steps 800]
    python benchmarks/rd_recipes.py table --data-root ../shared/datasets [--images 500]

`train` runs every recipe below for the same number of steps (batch 128) into
runs/recipes/<name>, each resumable (rerun the same command to continue after a stop). The
rate weight of every run is steered to the same mean size (--target-bytes), so rows
compare at equal rate. `table` codes 300 CelebA *valid* images (recipe choice is tuning) with
each run's encoder alone at quality 4 and reports real coded bytes, PSNR, SSIM, MS-SSIM, sharpness
(Laplacian variance of the decoded face over the original's) and, when dlib is installed,
the same-person rate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

#: name -> (distortion, adversarial weight); weights put the adversarial term at about a
#: tenth of each distortion's typical value on faces (MSE ~0.01, 1-MS-SSIM ~0.03, Watson ~200).
RECIPES = {
    "mse": ("mse", 0.0),
    "ms-ssim": ("ms-ssim", 0.0),
    "watson-dft": ("watson-dft", 0.0),
    "mse+adv": ("mse", 0.001),
    "ms-ssim+adv": ("ms-ssim", 0.003),
    "watson-dft+adv": ("watson-dft", 20.0),
    # Added after the first rows: MS-SSIM kept people and SSIM, MSE kept PSNR; weights make
    # the two terms about equal on faces at this rate (1-MS-SSIM ~0.1, MSE ~0.03).
    "ms-ssim+mse": ("ms-ssim=1,mse=3", 0.0),
}


def train_all(args: argparse.Namespace) -> None:
    from codec.train import TrainConfig, train

    for name in args.only or RECIPES:
        distortion, adv = RECIPES[name]
        out = args.out / name
        cfg = TrainConfig(
            dataset="celeba", data_root=args.data_root, out=str(out), objective="rd", distortion=distortion,
            adv_weight=adv, ngf=32, lr=args.lr, nz=args.nz, steps=args.steps, batch_size=128, resume=True,
            checkpoint_every=100, sample_every=args.steps, valid_every=100, progress=False,
            target_bytes=args.target_bytes,
        )  # fmt: skip
        res = train(cfg)
        print(f"{name}: step {res.steps}, {res.images_per_second:.0f} images/s", flush=True)
        if res.interrupted:
            return


def laplacian_variance(images: np.ndarray) -> np.ndarray:
    """Variance of the 4-neighbour Laplacian of the grey image, per image (N, H, W, C) uint8."""
    g = images.astype(np.float64).mean(-1)
    lap = g[:, 1:-1, :-2] + g[:, 1:-1, 2:] + g[:, :-2, 1:-1] + g[:, 2:, 1:-1] - 4 * g[:, 1:-1, 1:-1]
    return lap.reshape(len(g), -1).var(1)


@torch.no_grad()
def evaluate(model_path: Path, images: np.ndarray, level: int = 4, same=None) -> dict[str, float]:
    """Encoder-only coding of uint8 images (N, C, H, W) at `level`: real coded bytes and metrics."""
    from codec.container import OVERHEAD_V2
    from codec.metrics import ms_ssim, psnr, ssim
    from codec.rdmodel import load_rd

    m, _ = load_rd(model_path)
    x = torch.from_numpy(images)
    t = m.tables[level]
    sym = t.clamp(m.prior.quantize(m.encoder(x.float() / 127.5 - 1), m.step_of(level)))
    dec = ((m.generator(m.prior.dequantize(sym, m.step_of(level))).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    nbytes = np.array([OVERHEAD_V2 + len(t.encode(s.numpy())) for s in sym])
    hwc = lambda a: a.permute(0, 2, 3, 1).numpy()  # noqa: E731
    row = {
        "bytes": float(nbytes.mean()),
        "bytes_max": int(nbytes.max()),
        "psnr": psnr(dec, x).mean().item(),
        "ssim": ssim(dec, x).mean().item(),
        "ms_ssim": ms_ssim(dec, x).mean().item(),
        "sharpness": float(laplacian_variance(hwc(dec)).mean() / laplacian_variance(hwc(x)).mean()),
    }
    if same is not None:  # a faces.SamePerson, shared so each original is described once
        row["same_person"] = float(np.mean([same(a, b) for a, b in zip(hwc(x), hwc(dec), strict=True)]))
    return row


def recipe_table(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from codec import faces
    from codec.data import load_dataset

    data = load_dataset("celeba", args.data_root, "valid", size=64, limit=args.images, progress=False)
    same = faces.SamePerson() if faces.available() else None
    rows = {}
    for name in args.only or RECIPES:
        path = args.out / name / "model.safetensors"
        if path.is_file():
            rows[name] = evaluate(path, np.ascontiguousarray(data.images), same=same)
            print(name, {k: round(float(v), 4) for k, v in rows[name].items()}, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["train", "table"])
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "recipes")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--nz", type=int, default=192)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--target-bytes", type=float, default=96.0)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--only", nargs="*", choices=list(RECIPES))
    args = ap.parse_args()
    if args.what == "train":
        train_all(args)
    else:
        print(json.dumps(recipe_table(args), indent=1))


if __name__ == "__main__":
    from codec.cli import friendly_errors  # a missing data folder is one line, not a traceback

    friendly_errors(main)()
