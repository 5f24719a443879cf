"""The .pgz file format, versions 1 and 2: see docs/FORMAT.md for the byte tables.

Version 1 holds fixed-length symbols for a GAN-only generator (`Container`); version 2 an
entropy-coded latent of a rate-distortion model at a level (`CodedContainer`).

`to_bytes` / `from_bytes` convert between `Container` and bytes; `read_file` reads one, bounded.
Every malformed input raises `ContainerError` with a message naming the rule it broke.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

import numpy as np

from codec.errors import PercodecError
from codec.quantize import GAUSSIAN_CDF, MAX_BITS, MIN_BITS, pack, payload_size, unpack

MAGIC = b"PG"
VERSION = 1
FINGERPRINT_BYTES = 4
_HEADER = struct.Struct("<2sB4sBBB")  # magic, version, fingerprint, quantiser, nz-1, image
HEADER_BYTES = _HEADER.size  # 10
CHECKSUM_BYTES = 2
OVERHEAD_BYTES = HEADER_BYTES + CHECKSUM_BYTES  # 12
QUANTIZERS = {GAUSSIAN_CDF: "gaussian-cdf"}
_HEADER_V2 = struct.Struct("<2sB4sB")  # magic, version, fingerprint, level
#: Version 2 (entropy-coded latents): header + CRC-16 = 10 bytes; the payload is the rest.
OVERHEAD_V2 = _HEADER_V2.size + CHECKSUM_BYTES
#: Longest v2 payload accepted (far above any real latent).
MAX_PAYLOAD_V2 = 4096
#: Longest file of either version (v1: 256 dimensions of 16 bits); readers read no more.
MAX_FILE_BYTES = max(OVERHEAD_BYTES + payload_size(256, MAX_BITS), OVERHEAD_V2 + MAX_PAYLOAD_V2)


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


@dataclass(frozen=True)
class CodedContainer:
    """A version-2 file: which model, which level, and the coder's payload."""

    fingerprint: bytes
    level: int
    payload: bytes

    def __post_init__(self) -> None:
        if len(self.fingerprint) != FINGERPRINT_BYTES:
            raise ValueError(f"fingerprint must be {FINGERPRINT_BYTES} bytes")
        if not 1 <= self.level <= 255:
            raise ValueError(f"a level must be 1..255, got {self.level}")
        if len(self.payload) > MAX_PAYLOAD_V2:
            raise ValueError(f"payload must be at most {MAX_PAYLOAD_V2} bytes")

    @property
    def total_bytes(self) -> int:
        return OVERHEAD_V2 + len(self.payload)


def read_file(path: str) -> bytes:
    """A .pgz file's bytes (or stdin's for '-'), reading no more than any .pgz file holds."""
    from codec.fileio import read_bytes

    return read_bytes(path, MAX_FILE_BYTES, "a percodec file")


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
    return binascii.crc_hqx(data, 0xFFFF)


def to_bytes(c: Container | CodedContainer) -> bytes:
    """Serialise a container (docs/FORMAT.md)."""
    if isinstance(c, CodedContainer):
        body = _HEADER_V2.pack(MAGIC, 2, c.fingerprint, c.level) + c.payload
        return body + crc16(body).to_bytes(2, "little")
    image = (c.size.bit_length() - 1) << 4 | c.channels
    head = _HEADER.pack(MAGIC, VERSION, c.fingerprint, c.quantizer << 4 | (c.bits - 1), c.nz - 1, image)
    body = head + pack(np.asarray(c.symbols), c.bits)
    return body + crc16(body).to_bytes(2, "little")


def from_bytes(data: bytes) -> Container | CodedContainer:
    """Parse and validate a .pgz file; raises ContainerError on any malformed input (and
    TypeError for anything but bytes, before copying it)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        hint = " (a file name? read it first: Path(name).read_bytes())" if isinstance(data, str) else ""
        raise TypeError(f"a .pgz file must be given as bytes, got {type(data).__name__}{hint}")
    if len(data) > MAX_FILE_BYTES:
        raise ContainerError(f"{len(data):,} bytes: longer than any percodec file (at most {MAX_FILE_BYTES:,})")
    data = bytes(data)
    if len(data) < OVERHEAD_V2:
        raise ContainerError(f"truncated: {len(data)} bytes, a .pgz file has at least {OVERHEAD_V2}")
    if data[:2] != MAGIC:
        raise ContainerError(f"not a percodec file (magic {data[:2]!r}, expected {MAGIC!r})")
    if data[2] == 2:
        return _from_bytes_v2(data)
    if data[2] != VERSION:
        raise ContainerError(f"unsupported format version {data[2]} (this percodec reads versions 1 and 2)")
    if len(data) < OVERHEAD_BYTES:
        raise ContainerError(f"truncated: {len(data)} bytes, a version-1 file has at least {OVERHEAD_BYTES}")
    magic, version, fp, quant, nz1, image = _HEADER.unpack_from(data)
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


def _from_bytes_v2(data: bytes) -> CodedContainer:
    if crc16(data[:-2]) != int.from_bytes(data[-2:], "little"):
        raise ContainerError("checksum mismatch: the file is corrupt or truncated")
    _, _, fp, level = _HEADER_V2.unpack_from(data)
    payload = data[_HEADER_V2.size : -2]  # at most MAX_PAYLOAD_V2: from_bytes refused longer files
    if level == 0:
        raise ContainerError("level 0 does not exist (a model's levels count from 1)")
    return CodedContainer(fp, level, payload)
