"""Forward + backward time and peak memory of every registered loss, relative to MSE.

    python benchmarks/loss_speed.py [--batch 128] [--size 64] [--device cpu|cuda] [--repeats 5]

All losses run in one process on the same random batch (B, 3, S, S) in [-1, 1], in a
randomised interleaved order so that machine load affects them alike; the table reports
the median time per call, its ratio to MSE, and peak memory (CUDA: max allocated; CPU:
the growth of the process's peak RSS, a coarse figure). The straightforward Watson-DFT
of benchmarks/watson_naive.py (per-block FFT calls, two atan2, acos of cos) is timed too.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from watson_naive import naive_watson_dft  # noqa: E402

from codec.losses import LOSSES, make_loss  # noqa: E402
from codec.losses.watson import WatsonDistance  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-naive", action="store_true", help="skip the slow straightforward Watson-DFT")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    dev = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    target = (torch.rand(args.batch, 3, args.size, args.size, generator=gen) * 2 - 1).to(dev)
    base = (target + 0.2 * torch.randn(target.shape, generator=gen).to(dev)).clamp(-1, 1)

    fns = {}
    for name in LOSSES:
        loss = make_loss(name).to(dev).eval()  # deterministic mode for timing
        fns[name] = lambda x, loss=loss: loss(x, target)
    if not args.no_naive:
        wd = WatsonDistance("dft").to(dev).eval()
        fns["watson-dft (straightforward)"] = lambda x: naive_watson_dft(wd, (x + 1) / 2, (target + 1) / 2)

    def run(fn) -> float:
        x = base.clone().requires_grad_(True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(x).sum().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {k: [] for k in fns}
    mem: dict[str, float] = {}
    for name, fn in fns.items():  # warm-up and memory
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            run(fn)
            mem[name] = (torch.cuda.max_memory_allocated() - before) / 2**20
        else:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            run(fn)
            mem[name] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    order = list(fns)
    for _ in range(args.repeats):
        random.shuffle(order)
        for name in order:
            times[name].append(run(fns[name]))
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["mse"]
    print(
        f"forward+backward, batch {args.batch}x3x{args.size}x{args.size}, {dev}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"{'loss':30s} {'ms':>9s} {'x MSE':>7s} {'peak MB':>8s}")
    rows = []
    for k in fns:
        print(f"{k:30s} {med[k] * 1000:9.1f} {med[k] / ref:7.1f} {mem[k]:8.0f}")
        rows.append({"loss": k, "ms": med[k] * 1000, "ratio_to_mse": med[k] / ref, "peak_mb": mem[k]})
    if args.json:
        args.json.write_text(json.dumps({"device": str(dev), "batch": args.batch, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
