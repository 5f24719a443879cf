"""Sharded encode: one `percodec encode` process against the same command under torchrun
with N processes, on the same folder of CelebA valid photos (found, framed, coded at the
default), whole commands timed (start-up included). Rounds alternate the two and report
each round's throughput ratio (pairing cancels drift in the machine's load) and whether the
files are byte-identical. Target (issue #38): 2 processes of a 2-core machine, batch 32, one
thread each >= 1.8x one process. Run with nothing else busy:

    python benchmarks/shard_speed.py --data-root ../shared/datasets --images 128 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t0


def _same(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir())
    return names == sorted(p.name for p in b.iterdir()) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from codec.data import celeba_files

    try:
        files = celeba_files(args.data_root, "valid")[: args.images]
    except Exception as exc:  # noqa: BLE001 - a missing data root is one line
        raise SystemExit(f"shard_speed: {exc}") from None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "codec.cli", "encode"]
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc)]
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        for f in files:
            shutil.copy(f, photos / f.name)
        ratios, alone_s, shard_s, same = [], [], [], True
        for r in range(args.rounds):
            one, many = Path(tmp) / f"one{r}", Path(tmp) / f"many{r}"
            flags = [str(photos), "-q", "--batch-size", str(args.batch_size)]
            a = _timed([*cli, *flags, "-o", str(one)], env)
            b = _timed([*run, "-m", "codec.cli", "encode", *flags, "-o", str(many)], env)
            alone_s.append(a)
            shard_s.append(b)
            ratios.append(a / b)
            same &= _same(one, many)
    n = len(files)
    print(f"{n} CelebA valid photos, batch {args.batch_size}, one thread per process, {args.rounds} round(s)")
    for name, s in (("one process", alone_s), (f"{args.nproc} processes", shard_s)):
        print(f"{name + ':':17} {statistics.median(s):6.1f} s  ({n / statistics.median(s):.2f} faces/s)")
    print(f"throughput ratio: {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)}); "
          f"files byte-identical: {'yes' if same else 'NO'}")  # fmt: skip


if __name__ == "__main__":
    main()
