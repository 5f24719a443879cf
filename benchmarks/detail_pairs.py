"""Detail models compared on valid faces: the best PSNR within each mean size, over every
(global level, detail level) pair each model file holds, encoders only.

    python benchmarks/detail_pairs.py --data-root ../shared/datasets --images 200 \\
        models/celeba64-detail.safetensors runs/detail-fine/model.safetensors

Sizes are ideal code lengths plus the header and PSNR is of the float32 decode, as
`percodec ship` measures when it picks a model's levels (`codec.detailmodel.pair_table`),
so a run's exported model and a shipped one compare before either is shipped.
"""

from __future__ import annotations

import argparse

import torch

from codec.data import load_dataset
from codec.detailmodel import every_pair, load_detail, pair_table

SIZES = (180, 200, 230, 260, 300, 350, 400, 460, 520, 600, 700, 820, 950, 1024, 1100)


def best_within(path: str, x: torch.Tensor) -> list[float]:
    m, _ = load_detail(path)
    m.pairs = every_pair(m.base.level_count, m.detail.config.levels)
    table = pair_table(m, x).values()
    return [max((q for b, q in table if b <= size), default=float("nan")) for size in SIZES]


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="detail model files (.safetensors)")
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--images", type=int, default=200, help="first N CelebA valid faces")
    args = ap.parse_args()
    valid = load_dataset("celeba", args.data_root, "valid", size=64, limit=args.images).images
    x = torch.from_numpy(valid.copy()).float() / 127.5 - 1
    print(f"best PSNR (dB) within a mean size, {len(x)} valid faces")
    print(f"{'bytes':>40} " + " ".join(f"{s:>6}" for s in SIZES))
    for path in args.models:
        print(f"{path[-40:]:>40} " + " ".join(f"{q:6.2f}" for q in best_within(path, x)))


if __name__ == "__main__":
    main()
