"""Give a shipped rate-distortion model more quality levels, keeping its old files valid.

    python scripts/add_levels.py celeba64 --level-bytes 49,54,60

Each new level gets the quantisation step at which the encoder's latents of 500 CelebA
*valid* faces code to that mean size (ideal code length + header), and the next level
number. Weights and the old levels' tables stay as they are; the model gets a new
fingerprint and keeps answering to the old one (codec.rdmodel.add_levels), so every file
made with it still decodes. The card's levels and weights rows are updated.
"""

from __future__ import annotations

import argparse
import re

import torch

from codec.data import load_dataset
from codec.generator import resolve_model
from codec.rdmodel import add_levels, load_rd, steps_for_bytes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="shipped model name, e.g. celeba64")
    ap.add_argument("--level-bytes", required=True, help="comma-separated mean bytes of the new levels")
    ap.add_argument("--data-root", default="../shared/datasets", help="where CelebA is")
    args = ap.parse_args()
    path = resolve_model(args.model)
    m, _ = load_rd(path)
    targets = [float(b) for b in args.level_bytes.split(",")]
    valid = load_dataset("celeba", args.data_root, "valid", size=m.config.size, limit=500, progress=False).images
    steps = steps_for_bytes(m, torch.from_numpy(valid.copy()).float() / 127.5 - 1, targets)
    first = len(m.steps) + 1
    grown = add_levels(path, list(steps))
    card = path.with_suffix(".md")
    if card.is_file():
        added = ", ".join(f"{lv}: step {s:g}" for lv, s in enumerate(steps, start=first))
        spaced = ", ".join(f"{b:g}" for b in targets)
        text = re.sub(
            r"(\| quality levels \| [^\n]*) \|\n",
            lambda mt: (
                f"{mt.group(1)}; added after shipping: {added} (mean {spaced} B on 500 CelebA valid faces, "
                f"encoder only; files made before still decode) |\n"
            ),
            card.read_text(),
        )
        text = re.sub(
            r"safetensors, [\d,]+ bytes; fingerprint [0-9a-f]+( \(earlier: [^)]*\))?",
            f"safetensors, {path.stat().st_size:,} bytes; fingerprint {grown.fingerprint().hex()} "
            f"(earlier: {', '.join(grown.fingerprint(n).hex() for n in grown.released)})",
            text,
        )
        card.write_text(text)
    print(f"{path}: levels {first}..{len(grown.steps)} added (steps {', '.join(f'{s:g}' for s in steps)})")
    print(f"fingerprint {grown.fingerprint().hex()}, still answering to {[f.hex() for f in grown.fingerprints()[1:]]}")


if __name__ == "__main__":
    main()
