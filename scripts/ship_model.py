"""Ship a trained run as a package model: models/NAME.safetensors (float16), NAME.png, NAME.md.

    python scripts/ship_model.py ~/percodec-runs/celeba64 celeba64 [--note "text for the card"]

The sample grid is rendered from the shipped (half-precision) weights with the same fixed
latents as the training grids (seed 1234), and the card is filled from the run's metadata.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from codec.generator import fingerprint, load_generator, save_generator
from codec.images import save_grid

MODELS = Path(__file__).resolve().parent.parent / "models"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="training run folder (holds generator.safetensors)")
    ap.add_argument("name", help="model name, e.g. celeba64")
    ap.add_argument("--note", default="", help="extra paragraph for the card")
    args = ap.parse_args()

    g, card = load_generator(args.run / "generator.safetensors")
    out = MODELS / f"{args.name}.safetensors"
    save_generator(g, out, card, half=True)
    shipped, _ = load_generator(out)
    fixed_z = torch.randn(64, shipped.config.nz, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        save_grid(shipped(fixed_z), MODELS / f"{args.name}.png")

    c = shipped.config
    params = sum(p.numel() for p in shipped.parameters())
    log = args.run / "train.log.jsonl"
    last = json.loads(log.read_text().splitlines()[-1]) if log.is_file() and log.read_text().strip() else {}
    hours = float(card.get("wall_seconds", 0)) / 3600
    rows = [
        (
            "architecture",
            f"DCGAN generator (Radford et al. 2016): nz={c.nz}, width ngf={c.ngf} "
            f"(classic = 64), {c.n_up + 1} transposed convolutions, output {c.size}x{c.size}x{c.nc}, "
            "BatchNorm statistics recalibrated over 8 x 256 latents at export",
        ),
        ("parameters", f"{params:,}"),
        ("weights", f"float16 safetensors, {out.stat().st_size:,} bytes; fingerprint {fingerprint(shipped).hex()}"),
        (
            "data",
            f"{card.get('dataset')} split '{card.get('split')}' ({card.get('train_images')} images, "
            f"{card.get('skipped_images', '0')} unreadable skipped); centre crop {c.crop:.4f} of the shorter side, "
            f"bicubic resize to {c.size}",
        ),
        (
            "images seen",
            f"{int(card.get('images_seen', 0)):,} ({card.get('steps')} steps x batch {card.get('batch_size')})",
        ),
        ("seed", card.get("seed", "")),
        ("hardware", card.get("hardware", "")),
        ("wall time", f"{hours:.2f} h of training (all sessions of the run together)"),
        (
            "last logged losses",
            f"D {last.get('loss_d', float('nan')):.3f}, G {last.get('loss_g', float('nan')):.3f}" if last else "n/a",
        ),
        ("command", f"`{card.get('command', '')}` (a resumed run repeats it with `--resume`)"),
        ("code version", card.get("code_version", "")),
        ("date", card.get("date", "")),
    ]
    lines = [
        f"# Model card: {args.name}",
        "",
        "The generator shipped with percodec as `--model "
        f"{args.name}`; sender and receiver must hold these exact weights.",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", f"![64 samples from fixed latents]({args.name}.png)", ""]
    if args.note:
        lines += [args.note, ""]
    (MODELS / f"{args.name}.md").write_text("\n".join(lines))
    print(f"shipped {out} ({out.stat().st_size:,} bytes), card and grid beside it")


if __name__ == "__main__":
    main()
