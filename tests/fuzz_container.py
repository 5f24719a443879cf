"""Fuzz the .pgz reader: mutated valid files and random bytes must either parse or raise
ContainerError; anything else (another exception, a hang) is a bug.

    python tests/fuzz_container.py --iterations 100000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codec.container import CodedContainer, Container, ContainerError, from_bytes, to_bytes  # noqa: E402


def _seeds(rng: random.Random) -> list[bytes]:
    out = []
    for bits, nz, side, ch in [(7, 100, 64, 3), (8, 100, 64, 3), (3, 9, 32, 1), (16, 256, 8, 3), (1, 1, 32768, 1)]:
        out.append(
            to_bytes(Container(rng.randbytes(4), bits, side, ch, tuple(rng.randrange(2**bits) for _ in range(nz))))
        )
    for words in (1, 23, 1024):
        out.append(to_bytes(CodedContainer(rng.randbytes(4), rng.randrange(1, 256), rng.randbytes(4 * words))))
    return out


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:  # flip a bit
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # replace a byte
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:  # truncate
            del b[rng.randrange(len(b) + 1) :]
        elif op == 3:  # append
            b += rng.randbytes(rng.randint(1, 8))
        elif op == 4 and b:  # delete a run
            i = rng.randrange(len(b))
            del b[i : i + rng.randint(1, 4)]
        else:  # insert
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 4))
    return bytes(b)


def fuzz(iterations: int, seed: int = 0) -> int:
    """Run the fuzzer; returns how many inputs were tried. Raises on the first bug."""
    rng = random.Random(seed)
    seeds = _seeds(rng)
    parsed = 0
    for n in range(iterations):
        if n % 10 == 0:
            data = rng.randbytes(rng.randint(0, 80))
            if rng.random() < 0.5:
                data = b"PG\x01" + data
        else:
            data = _mutate(rng.choice(seeds), rng)
        try:
            from_bytes(data)
            parsed += 1
        except ContainerError:
            pass
        except Exception as exc:  # a bug: report the input
            raise AssertionError(f"input {data.hex()} raised {type(exc).__name__}: {exc}") from exc
    return iterations


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iterations", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t = time.perf_counter()
    n = fuzz(args.iterations, args.seed)
    print(f"fuzzed {n} inputs in {time.perf_counter() - t:.1f} s: every one parsed or raised ContainerError")
