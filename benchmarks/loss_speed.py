"""Forward + backward time and peak memory of every registered loss, relative to MSE.

    python benchmarks/loss_speed.py [--batch 128] [--size 64] [--device cpu|cuda] [--repeats 5]

All losses run in one process on the same random batch (B, 3, S, S) in [-1, 1], in a
randomised interleaved order so that machine load affects them alike; the table reports
the median time per call, its ratio to MSE, and peak memory (CUDA: max allocated; CPU:
the growth of peak RSS over one call in a fresh process per loss, after the batch exists,
with glibc's mmap threshold fixed so that freed tensors leave the resident set; it
includes the input's gradient, 6 MB at the default size). The straightforward Watson-DFT
of benchmarks/watson_naive.py (per-block FFT calls, two atan2, acos of cos) is timed too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from watson_naive import naive_watson_dft  # noqa: E402

from codec.losses import LOSSES, make_loss  # noqa: E402
from codec.losses.watson import WatsonDistance  # noqa: E402


def build(
    args: argparse.Namespace, dev: torch.device
) -> tuple[torch.Tensor, dict[str, Callable[[torch.Tensor], torch.Tensor]]]:
    """The fixed target batch and the timed functions, each loss(x, target)."""
    gen = torch.Generator().manual_seed(0)
    target = (torch.rand(args.batch, 3, args.size, args.size, generator=gen) * 2 - 1).to(dev)
    fns = {}
    for name in LOSSES:
        loss = make_loss(name).to(dev).eval()  # deterministic mode for timing
        fns[name] = lambda x, loss=loss: loss(x, target)
    if not args.no_naive:
        wd = WatsonDistance("dft").to(dev).eval()
        fns["watson-dft (straightforward)"] = lambda x: naive_watson_dft(wd, (x + 1) / 2, (target + 1) / 2)
    return target, fns


def make_input(target: torch.Tensor) -> torch.Tensor:
    """A fresh input batch near the target, needing a gradient."""
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(target.shape, generator=gen).to(target.device)
    return (target + 0.2 * noise).clamp(-1, 1).requires_grad_(True)


def run(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Seconds for one forward + backward of fn on x."""
    dev = x.device
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn(x).sum().backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def peak_rss_mb() -> float:
    """This process's peak resident set. VmHWM belongs to the process's own address space;
    ru_maxrss would carry the parent's peak across fork and exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux (macOS reports bytes)


def cpu_peak_mb(name: str) -> float:
    """Peak-RSS growth of one call of `name`, measured in a fresh process."""
    cmd = [sys.executable, __file__, "--peak-rss-of", name, "--device", "cpu", *sys.argv[1:]]
    # glibc otherwise keeps freed blocks and reuses them unseen; with a fixed mmap threshold
    # every large tensor is mapped and unmapped, so the resident peak follows live memory.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return float(out.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-naive", action="store_true", help="skip the slow straightforward Watson-DFT")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--peak-rss-of", help=argparse.SUPPRESS)  # internal: the child of cpu_peak_mb
    args = ap.parse_args()
    dev = torch.device(args.device)
    target, fns = build(args, dev)
    if args.peak_rss_of:
        x = make_input(target)
        before = peak_rss_mb()
        run(fns[args.peak_rss_of], x)
        print(peak_rss_mb() - before)
        return
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    mem: dict[str, float] = {}
    for name in names:  # warm-up and memory
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            run(fns[name], make_input(target))
            mem[name] = (torch.cuda.max_memory_allocated() - before) / 2**20
        else:
            run(fns[name], make_input(target))
            mem[name] = cpu_peak_mb(name)
    order = list(names)
    for _ in range(args.repeats):
        random.shuffle(order)
        for name in order:
            times[name].append(run(fns[name], make_input(target)))
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["mse"]
    print(
        f"forward+backward, batch {args.batch}x3x{args.size}x{args.size}, {dev}, "
        f"{torch.get_num_threads()} threads, median of {args.repeats}"
    )
    print(f"{'loss':30s} {'ms':>9s} {'x MSE':>7s} {'peak MB':>8s}")
    rows = []
    for k in names:
        print(f"{k:30s} {med[k] * 1000:9.1f} {med[k] / ref:7.1f} {mem[k]:8.0f}")
        rows.append({"loss": k, "ms": med[k] * 1000, "ratio_to_mse": med[k] / ref, "peak_mb": mem[k]})
    if args.json:
        args.json.write_text(json.dumps({"device": str(dev), "batch": args.batch, "rows": rows}, indent=2))


if __name__ == "__main__":
    from codec.cli import friendly_errors  # a missing data folder is one line, not a traceback

    friendly_errors(main)()
