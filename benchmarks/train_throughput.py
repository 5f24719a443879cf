"""Training throughput: the real data pipeline against a bare loop of the same networks.

    python benchmarks/train_throughput.py --data-root ../shared/datasets [--width 32] [--device cpu]

Both loops call codec.objectives.gan.gan_step with the same networks and batch size; the real one
gets its batches from codec.train.make_batch over the cached CelebA train split (indexing,
uint8 -> float, flips, transfer), the bare one from tensors made up front on the device.
They run in alternating rounds so that machine load affects both alike. The data
pipeline's cost is 1 - real/bare throughput.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codec.data import load_dataset  # noqa: E402
from codec.generator import Discriminator, Generator, ModelConfig  # noqa: E402
from codec.images import CELEBA_CROP  # noqa: E402
from codec.objectives.gan import gan_step  # noqa: E402
from codec.train import SampleStream, make_batch, pick_device  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=10, help="steps per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--cache-dir", default="runs/cache")
    args = ap.parse_args()
    dev = pick_device(args.device)
    data = load_dataset("celeba", args.data_root, "train", cache_dir=args.cache_dir, progress=True)
    images = torch.from_numpy(data.images)
    cfg = ModelConfig(ngf=args.width, ndf=args.width, crop=CELEBA_CROP)
    torch.manual_seed(0)
    G, D = Generator(cfg).to(dev), Discriminator(cfg).to(dev)
    optG = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    optD = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    stream = SampleStream(len(images), args.batch_size, seed=0)
    fixed_x = torch.rand(args.batch_size, 3, 64, 64, device=dev) * 2 - 1
    fixed_z = torch.randn(args.batch_size, 100, device=dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def real(step0: int) -> float:
        sync()
        t = time.perf_counter()
        for s in range(step0, step0 + args.steps):
            x, gen = make_batch(images, stream, s, 0, 0, True, dev)
            gan_step(G, D, optG, optD, x, torch.randn(len(x), 100, generator=gen).to(dev))
        sync()
        return args.steps * args.batch_size / (time.perf_counter() - t)

    def bare() -> float:
        sync()
        t = time.perf_counter()
        for _ in range(args.steps):
            gan_step(G, D, optG, optD, fixed_x, fixed_z)
        sync()
        return args.steps * args.batch_size / (time.perf_counter() - t)

    real(0), bare()  # warm-up
    r, b = [], []
    for i in range(args.rounds):
        r.append(real((i + 1) * args.steps))
        b.append(bare())
    rr, bb = statistics.median(r), statistics.median(b)
    gp = sum(p.numel() for p in G.parameters())
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; generator width {args.width} ({gp / 1e6:.2f} M parameters), batch {args.batch_size}")
    print(f"real pipeline: {rr:8.1f} images/s   (rounds: {', '.join(f'{v:.0f}' for v in r)})")
    print(f"bare loop:     {bb:8.1f} images/s   (rounds: {', '.join(f'{v:.0f}' for v in b)})")
    print(f"data pipeline cost: {100 * (1 - rr / bb):.1f}% of throughput")


if __name__ == "__main__":
    from codec.cli import friendly_errors  # a missing data folder is one line, not a traceback

    friendly_errors(main)()
