"""The codec's defaults and the names a user types, in one module that loads without torch,
so that the command line parses and checks its options before the heavy imports start.

`codec.pipeline` and `codec.losses` use these (and re-export them); tests check that
LOSS_NAMES is the loss registry's list.
"""

from __future__ import annotations

import math

#: Every registered loss (codec.losses.LOSSES), in registry order.
LOSS_NAMES = ("mse", "l1", "ssim", "ms-ssim", "watson-dct", "watson-dft", "identity", "faceres")

DEFAULT_MODEL = "celeba64"
DEFAULT_LOSS = "ssim"  # GAN-only models' search
DEFAULT_BITS = 7
#: Rate-distortion models: refinement loss and steps, chosen on 200 CelebA valid faces at
#: the default cap (`make bench-identity`, table in the README): the training distortion
#: with dlib's identity term at weight 0.5 for 12 steps keeps the person in a cross-photo
#: check 0.90x as often as the original crops do (0.72x at the strict 0.1% threshold) for
#: 25.15 dB / SSIM 0.822, in 1.9x the time of the identity-free 25 steps (25.30 dB / 0.827,
#: 0.76x / 0.42x); at 25 steps identity=0.3 reaches 0.92x but costs 3.9x.
RD_LOSS = "ms-ssim=1,mse=3,identity=0.5"
RD_STEPS = 12
#: With neither --quality nor --max-bytes, each image gets the highest quality whose file
#: fits this many bytes (as --max-bytes 112 would): on 500 CelebA test faces 108.4 B and
#: 25.06 dB / SSIM 0.820 with the refinement above (README), against 92.6 B and 24.60 / 0.800
#: at the fixed quality 7, celeba64's level 4, which was the default before. A model none of
#: whose levels fit keeps the ladder's default quality instead of failing.
DEFAULT_MAX_BYTES = 112
#: The GAN-only search's default number of steps (codec.inversion.SearchConfig).
GAN_STEPS = 300


#: Bounds on counts a user types, on the command line and in the Python API alike: far beyond
#: any use, and inside what torch and the file format take (a huge --steps ran without end, a
#: huge --seed overflowed in torch).
MAX_STEPS = 100_000
MAX_SEED = 2**32 - 1
MAX_BYTES_OPTION = 1 << 20
MAX_RESTARTS = 64
MAX_BATCH = 4096
MAX_QUALITY = 255  # a file's header holds the level in one byte
MAX_FACE = 1000
#: Largest side `decode` resizes to (--size, decode(size=)).
MAX_SIDE = 8192


def flag(field: str) -> str:
    """The command-line flag of an options field: 'max_bytes' -> '--max-bytes'."""
    return "--" + field.replace("_", "-")


def is_int(v: object, lo: float = -math.inf, hi: float = math.inf) -> bool:
    """An int (not a bool: True is no count) in lo..hi."""
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def is_number(v: object, lo: float = -math.inf, hi: float = math.inf) -> bool:
    """A real number (not a bool), finite, in lo..hi."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def check_int(name: str, value: object, lo: int, hi: int, optional: bool = False) -> None:
    """`value` is an int (not a bool) in lo..hi, or None when optional; else TypeError or
    ValueError naming `name`."""
    if value is None and optional:
        return
    if not is_int(value):
        kind = "an integer" + (" or None" if optional else "")
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi:,}, got {value:,}")


def check_float(name: str, value: object, lo: float, hi: float, lo_open: bool = False, optional: bool = False) -> None:
    """`value` is a finite real number in lo..hi (lo excluded when lo_open), or None when
    optional; else TypeError or ValueError naming `name`."""
    if value is None and optional:
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not is_number(value, lo, hi) or (lo_open and value == lo):
        raise ValueError(f"{name} must be a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {value!r}")


#: Bounds on a mix's weights: a weight of 1e300 made every float32 loss inf, and the search
#: silently stood still.
MIN_WEIGHT, MAX_WEIGHT = 1e-6, 1e6


def parse_mix(spec: str) -> dict[str, float]:
    """'ms-ssim=1,mse=0.1' -> {'ms-ssim': 1.0, 'mse': 0.1}; a bare name has weight 1."""
    out: dict[str, float] = {}
    for item in spec.split(","):
        name, eq, weight = item.strip().partition("=")
        if name not in LOSS_NAMES:
            raise ValueError(f"unknown loss {name!r} in {spec!r}: choose from {', '.join(LOSS_NAMES)}")
        if name in out:
            raise ValueError(f"loss {name!r} appears twice in {spec!r}")
        if eq and not weight.strip():
            raise ValueError(f"{name!r} in {spec!r} has '=' but no weight")
        try:
            out[name] = float(weight) if eq else 1.0
        except ValueError:
            raise ValueError(f"weight {weight!r} of {name!r} in {spec!r} is not a number") from None
        if not (math.isfinite(out[name]) and out[name] > 0):
            raise ValueError(f"weight of {name!r} in {spec!r} must be a positive finite number")
        if not MIN_WEIGHT <= out[name] <= MAX_WEIGHT:  # float32 losses overflow (or vanish) past these
            raise ValueError(
                f"weight of {name!r} in {spec!r} must lie in {MIN_WEIGHT:g}..{MAX_WEIGHT:g} (weights are relative)"
            )
    return out
