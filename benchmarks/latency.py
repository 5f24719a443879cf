"""One face at a time, as a kiosk codes it: the warm Python API (model loaded, process
started) coding the 64x64 sample face at the default and at byte caps; the best of N runs
each, and each cap's time as a ratio to the default's. A cold process is
benchmarks/cold_start.py. Run with nothing else busy:

    python benchmarks/latency.py --runs 5 --max-bytes 300 --max-bytes 520 --max-bytes 1024
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--max-bytes", type=int, action="append", default=[])
    ap.add_argument("--image", default=str(ROOT / "samples" / "astronaut.png"))
    args = ap.parse_args()
    import codec

    print(f"{args.image}, best of {args.runs} warm runs each")
    base = None
    for cap in [None, *args.max_bytes]:
        opts = {} if cap is None else {"max_bytes": cap}
        codec.encode(args.image, **opts)  # load the rung models once
        best, size = float("inf"), 0
        for _ in range(args.runs):
            t0 = time.perf_counter()
            size = len(codec.encode(args.image, **opts))
            best = min(best, time.perf_counter() - t0)
        base = base or best
        name = "default" if cap is None else f"--max-bytes {cap}"
        print(f"{name:17} {1000 * best:6.0f} ms  ({size} B, {best / base:.2f}x the default)")


if __name__ == "__main__":
    main()
