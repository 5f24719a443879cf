"""Latent quantisation: z <-> integer symbols <-> packed bits (pure functions).

The quantiser is uniform in the standard normal CDF: symbol = floor(Phi(z) * 2^bits), so
under the N(0, I) prior of the generator every symbol is equally likely and fixed-length
codes are optimal. Reconstruction takes the middle of each bin in probability space.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Frozen on-disk quantiser ids (docs/FORMAT.md); never renumber.
GAUSSIAN_CDF = 0
MIN_BITS, MAX_BITS = 1, 16


def check_bits(bits: int) -> int:
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits per latent dimension must be {MIN_BITS}..{MAX_BITS}, got {bits}")
    return bits


def quantize(z: torch.Tensor, bits: int) -> torch.Tensor:
    """Float latents -> int64 symbols in [0, 2^bits)."""
    levels = 2 ** check_bits(bits)
    u = torch.special.ndtr(z.double())
    return (u * levels).floor().clamp_(0, levels - 1).long()


def dequantize(symbols: torch.Tensor, bits: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Symbols -> latent values at the probability-midpoints of their bins."""
    levels = 2 ** check_bits(bits)
    return torch.special.ndtri((symbols.double() + 0.5) / levels).to(dtype)


def payload_size(nz: int, bits: int) -> int:
    """Bytes needed for nz symbols of `bits` bits."""
    return math.ceil(nz * bits / 8)


def pack(symbols: np.ndarray | list[int], bits: int) -> bytes:
    """Symbols -> bytes, `bits` bits each, most significant bit first, zero padding."""
    s = np.asarray(symbols, dtype=np.int64)
    if s.ndim != 1 or (s.size and (s.min() < 0 or s.max() >= 2 ** check_bits(bits))):
        raise ValueError(f"symbols must be a 1-D sequence of {bits}-bit values")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    bitarr = ((s[:, None] >> shifts) & 1).astype(np.uint8).ravel()
    return np.packbits(bitarr).tobytes()


def unpack(data: bytes, n: int, bits: int) -> np.ndarray:
    """Bytes -> n symbols; raises ValueError on a wrong length or non-zero padding bits."""
    check_bits(bits)
    if len(data) != payload_size(n, bits):
        raise ValueError(f"payload has {len(data)} bytes, {payload_size(n, bits)} expected")
    bitarr = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bitarr[n * bits :].any():
        raise ValueError("non-zero padding bits after the last symbol")
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)
    return bitarr[: n * bits].reshape(n, bits).astype(np.int64) @ weights
