"""Write a candidate detail model: a shipped detail model's networks over other global levels
of its RD model, with every (global level, detail level) pair of those given, to measure
pairs the shipped model does not hold (with benchmarks/identity_refine.py --model OUT).

    python scripts/detail_candidate.py runs/cand.safetensors --detail celeba64-detail3 \\
        --rd celeba64-id --global-levels 5,6,7,8,9 --detail-levels 1,2,3,4,5,6,8,10,13

Level n of OUT is the n-th pair, global levels outermost: with the command above, level 19
is (celeba64-id's level 7, detail level 1). Not a model to ship (its fingerprint is new).
"""

from __future__ import annotations

import argparse

import torch

from codec.detailmodel import save_detail
from codec.pipeline import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="the candidate model file to write (.safetensors)")
    ap.add_argument("--detail", default="celeba64-detail3", help="the detail model whose networks to use")
    ap.add_argument("--rd", default="celeba64-id", help="the RD model under it, whose levels to choose from")
    ap.add_argument("--global-levels", required=True, help="comma-separated levels of --rd")
    ap.add_argument("--detail-levels", required=True, help="comma-separated detail levels of --detail")
    args = ap.parse_args()
    detail, rd = load_model(args.detail)[0], load_model(args.rd)[0]
    for part in ("encoder", "prior", "generator"):  # the detail model must sit on exactly this RD model
        a, b = getattr(detail.base, part).state_dict(), getattr(rd, part).state_dict()
        if a.keys() != b.keys() or not all(torch.equal(a[k].float(), b[k].float()) for k in a):
            raise SystemExit(f"{args.detail}'s {part} is not {args.rd}'s")
    gs = tuple(int(v) for v in args.global_levels.split(","))
    ks = tuple(int(v) for v in args.detail_levels.split(","))
    pairs = tuple((i, k) for i in range(1, len(gs) + 1) for k in ks)
    card = {"candidate": f"{args.detail} over {args.rd} levels {gs}, detail levels {ks}"}
    save_detail(rd, detail.detail, args.out, card, global_levels=gs, pairs=pairs, half=True, lambdas=detail.lambdas)
    print(f"wrote {args.out}: {len(pairs)} levels")


if __name__ == "__main__":
    main()
