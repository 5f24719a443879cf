"""A slow rank: the shared queue that sharded encode uses against a deterministic split.

Issue #38 asked which of the two a sharded `encode` should use: every process taking a fixed
share of the sorted inputs, or a queue (torch.distributed's store hands out batches as
processes ask). On a machine whose processes run at the same speed the two take the same
time; they differ when one is slower (a busier node, a smaller GPU). Here one is made slower:
each process is pinned to its own core (`taskset`) and a busy loop shares rank 1's core, so
rank 1 runs at about half speed. Timed, whole commands, start-up included:

- queue: `torchrun --nproc-per-node 2 ... encode` (what ships);
- split: the same two pinned processes run side by side as plain `encode`s, rank r coding
  the r-th half of the sorted photos (a deterministic split), the time being the slower one's.

Rounds alternate the two. Linux only (`taskset`); run with nothing else busy:

    python benchmarks/shard_balance.py --data-root ../shared/datasets --images 256 --rounds 2
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


def _wait_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(map(str, p.args))} failed:\n{err[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        raise SystemExit("shard_balance: needs taskset (util-linux) and two cores or more")
    from codec.data import celeba_files

    try:
        files = sorted(celeba_files(args.data_root, "valid")[: args.images])
    except Exception as exc:  # noqa: BLE001 - a missing data root is one line
        raise SystemExit(f"shard_balance: {exc}") from None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    encode = [sys.executable, "-m", "codec.cli", "encode", "-q", "--batch-size", str(args.batch_size)]
    hog = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
    queue_s, split_s = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            halves = [Path(tmp) / "half0", Path(tmp) / "half1"]
            for h in halves:
                h.mkdir()
            for i, f in enumerate(files):
                shutil.copy(f, halves[i * 2 // len(files)] / f.name)
            pin = Path(tmp) / "pin.sh"  # each torchrun process on the core of its local rank
            pin.write_text('#!/bin/sh\nexec taskset -c "$LOCAL_RANK" "$@"\n')
            pin.chmod(0o755)
            for r in range(args.rounds):
                out = Path(tmp) / f"queue{r}"
                t0 = time.perf_counter()
                run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                       "--no-python", str(pin), *encode, *map(str, halves), "-o", str(out)]  # fmt: skip
                _wait_all([subprocess.Popen(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)])
                queue_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                split = Path(tmp) / f"split{r}"
                procs = [subprocess.Popen(["taskset", "-c", str(k), *encode, str(h), "-o", str(split)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                         for k, h in enumerate(halves)]  # fmt: skip
                _wait_all(procs)
                split_s.append(time.perf_counter() - t0)
                assert len(list(out.iterdir())) == len(files) == len(list(split.iterdir()))
    finally:
        hog.kill()
    q, s = statistics.median(queue_s), statistics.median(split_s)
    print(f"{len(files)} CelebA valid photos, batch {args.batch_size}, one thread per process, rank 1 sharing its "
          f"core with a busy loop, {args.rounds} round(s)")  # fmt: skip
    print(f"queue (torchrun, as shipped): {q:6.1f} s  ({len(files) / q:.2f} faces/s)")
    print(f"deterministic split:          {s:6.1f} s  ({len(files) / s:.2f} faces/s)")
    rounds = ", ".join(f"{b / a:.2f}" for a, b in zip(queue_s, split_s, strict=True))
    print(f"split / queue: {s / q:.2f}x (rounds: {rounds})")


if __name__ == "__main__":
    main()
