"""Measure where dlib's face chip puts a model's framing (the identity loss's fixed warp).

    python scripts/measure_chip.py [--model models/celeba64.safetensors] [--images 1000]

dlib cuts its 150x150 recognition chip with a similarity transform fitted to the 5-point
landmarks (`get_face_chip_details`, padding 0.25). The identity loss cannot landmark inside
the search loop, so it warps a model's crop with one fixed transform: the one taking the
model's framing (mean eye centres and mouth centre in its crops) onto where dlib's chips put
those points on average. Measured the way the bench and `codec.faces` give dlib a
model-sized face (upscaled, detected, 5 landmarks in the detector's box), on training crops. It
prints those positions, in [0, 1] of the chip (pixel edges at 0 and 1), for
`codec.losses.identity.CHIP_KEY_POINTS`, and, on validation crops, how close the fixed
warp's descriptor comes to dlib's own per-crop chip.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from codec.align import read_framing, similarity
from codec.data import load_dataset
from codec.facenet import CHIP_SIZE
from codec.faces import UPSCALE, landmarks, load_dlib


def chip_mapping(details) -> np.ndarray:
    """2x3 matrix taking photo pixel coordinates into dlib's chip (its get_mapping_to_chip)."""
    r, a = details.rect, details.angle
    centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    corners = np.array([[r.left(), r.top()], [r.right(), r.top()], [r.right(), r.bottom()]])
    chip = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], dtype=np.float64)
    return similarity((corners - centre) @ rot.T + centre, chip)


def chip_key_points(crops: np.ndarray, framing: np.ndarray) -> np.ndarray:
    """Mean position in dlib's chips (in [0, 1]) of the framing's points, over uint8 crops (N, 3, H, W)."""
    side = crops.shape[-1] * UPSCALE
    pts = []
    for c in crops:
        s5 = landmarks(c.transpose(1, 2, 0))
        m = chip_mapping(load_dlib().get_face_chip_details(s5, CHIP_SIZE, 0.25))
        k = framing * side - 0.5  # [0, 1] of the crop -> pixel centres of its upscaled copy
        pts.append((k @ m[:, :2].T + m[:, 2] + 0.5) / CHIP_SIZE)  # chip pixel centres -> [0, 1]
    return np.mean(pts, axis=0)


def check_warp(data_root: str, images: int) -> None:
    from codec.faces import _describe
    from codec.losses.identity import IdentityLoss

    crops = load_dataset("celeba", data_root, "valid", limit=images).images
    x = torch.from_numpy(crops).float() / 127.5 - 1
    loss = IdentityLoss().eval()
    with torch.no_grad():
        ours = loss.descriptors(x).numpy()
    theirs = np.stack([_describe(np.ascontiguousarray(c.transpose(1, 2, 0)))[1] for c in crops])
    d = np.linalg.norm(ours - theirs, axis=1)
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    print(
        f"fixed warp vs dlib's landmarked chip on {len(x)} valid crops: distance mean {d.mean():.3f} "
        f"(median {np.median(d):.3f}, share under 0.6: {(d < 0.6).mean():.3f}), cosine mean {cos.mean():.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/celeba64.safetensors", help="the model whose framing to place")
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--check", type=int, default=300, help="valid crops to compare the fixed warp on (0: skip)")
    args = ap.parse_args()
    framing = read_framing(args.model)
    crops = load_dataset("celeba", args.data_root, "train", limit=args.images).images
    keys = chip_key_points(crops, framing)
    print(f"CHIP_KEY_POINTS from {len(crops)} training crops, framing of {args.model}:")
    print(np.array2string(np.round(keys, 5), separator=", "))
    if args.check:
        check_warp(args.data_root, args.check)


if __name__ == "__main__":
    main()
