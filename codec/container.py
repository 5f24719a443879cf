"""The .pgz file format (version 1): see docs/FORMAT.md for the byte table.

`to_bytes` / `from_bytes` convert between `Container` and bytes; `read` / `write` do files.
Every malformed input raises `ContainerError` with a message naming the rule it broke.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.errors import PercodecError
from codec.fileio import read_bytes, write_bytes
from codec.quantize import GAUSSIAN_CDF, MAX_BITS, MIN_BITS, pack, payload_size, unpack

MAGIC = b"PG"
VERSION = 1
FINGERPRINT_BYTES = 4
_HEADER = struct.Struct("<2sB4sBBB")  # magic, version, fingerprint, quantiser, nz-1, image
HEADER_BYTES = _HEADER.size  # 10
CHECKSUM_BYTES = 2
OVERHEAD_BYTES = HEADER_BYTES + CHECKSUM_BYTES  # 12
QUANTIZERS = {GAUSSIAN_CDF: "gaussian-cdf"}


class ContainerError(PercodecError):
    """A .pgz input is malformed, corrupt, or made for another model."""


@dataclass(frozen=True)
class Container:
    """A decoded .pgz file: which model, how the latent was quantised, and its symbols."""

    fingerprint: bytes
    bits: int
    size: int
    channels: int
    symbols: tuple[int, ...]
    quantizer: int = GAUSSIAN_CDF

    @property
    def nz(self) -> int:
        return len(self.symbols)

    @property
    def total_bytes(self) -> int:
        return OVERHEAD_BYTES + payload_size(self.nz, self.bits)

    def __post_init__(self) -> None:
        if len(self.fingerprint) != FINGERPRINT_BYTES:
            raise ValueError(f"fingerprint must be {FINGERPRINT_BYTES} bytes")
        if not MIN_BITS <= self.bits <= MAX_BITS or self.quantizer not in QUANTIZERS:
            raise ValueError(f"unsupported quantiser {self.quantizer} with {self.bits} bits")
        if not 1 <= len(self.symbols) <= 256:
            raise ValueError("latent size must be 1..256")
        if self.channels not in (1, 3) or self.size & (self.size - 1) or not 8 <= self.size <= 2**15:
            raise ValueError(f"unsupported image {self.size}x{self.size}x{self.channels}")


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    return binascii.crc_hqx(data, 0xFFFF)


def to_bytes(c: Container) -> bytes:
    """Serialise a container (docs/FORMAT.md)."""
    image = (c.size.bit_length() - 1) << 4 | c.channels
    head = _HEADER.pack(MAGIC, VERSION, c.fingerprint, c.quantizer << 4 | (c.bits - 1), c.nz - 1, image)
    body = head + pack(np.asarray(c.symbols), c.bits)
    return body + crc16(body).to_bytes(2, "little")


def from_bytes(data: bytes) -> Container:
    """Parse and validate a .pgz file; raises ContainerError on any malformed input."""
    data = bytes(data)
    if len(data) < OVERHEAD_BYTES:
        raise ContainerError(f"truncated: {len(data)} bytes, a .pgz file has at least {OVERHEAD_BYTES}")
    magic, version, fp, quant, nz1, image = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ContainerError(f"not a percodec file (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise ContainerError(f"unsupported format version {version} (this percodec reads version {VERSION})")
    qid, bits, nz = quant >> 4, (quant & 0x0F) + 1, nz1 + 1
    if qid not in QUANTIZERS:
        raise ContainerError(f"unknown quantiser id {qid}")
    expected = OVERHEAD_BYTES + payload_size(nz, bits)
    if len(data) < expected:
        raise ContainerError(f"truncated: {len(data)} bytes, the header promises {expected}")
    if len(data) > expected:
        raise ContainerError(f"{len(data) - expected} trailing bytes after the {expected}-byte file")
    if crc16(data[:-2]) != int.from_bytes(data[-2:], "little"):
        raise ContainerError("checksum mismatch: the file is corrupt")
    side_log2, channels = image >> 4, image & 0x0F
    if channels not in (1, 3) or not 3 <= side_log2 <= 15:
        raise ContainerError(f"invalid image field: side 2^{side_log2}, {channels} channels")
    try:
        symbols = unpack(data[HEADER_BYTES:-2], nz, bits)
    except ValueError as exc:
        raise ContainerError(str(exc)) from None
    return Container(fp, bits, 1 << side_log2, channels, tuple(int(s) for s in symbols), qid)


def read(path: str | Path) -> Container:
    """Read and parse a .pgz file ('-' reads stdin)."""
    return from_bytes(read_bytes(path))


def write(path: str | Path, c: Container, force: bool = False) -> int:
    """Write a container atomically ('-' writes stdout); returns the bytes written."""
    data = to_bytes(c)
    write_bytes(path, data, force=force)
    return len(data)
