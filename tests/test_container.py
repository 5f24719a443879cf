import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.container import (
    OVERHEAD_BYTES,
    OVERHEAD_V2,
    CodedContainer,
    Container,
    ContainerError,
    crc16,
    from_bytes,
    to_bytes,
)
from codec.quantize import quantize

# A fixed latent through the 7-bit quantiser: the format must never change silently.
LINSPACE_7BIT = bytes.fromhex(
    "504701a1b2c3d40663630000000000000000000810204102040c18408143060e2048b18347902450b183470fa148994ac5ec9ab8"
    "76fa0c48f2a6d0a75acdbbd831e5cfa75eddfc3973e9dbbf8f3e7d7bf7f3e7dfbf7f7efdfbfffffffffffffffff076da"
)
# Checked by hand: 3-bit symbols 0..7,7 pack to 05 39 77 e0 (5 zero padding bits).
SMALL = bytes.fromhex("50470100ff00ff020851053977e09777")


def test_bytes_literal_of_a_fixed_latent() -> None:
    symbols = tuple(quantize(torch.linspace(-3, 3, 100), 7).tolist())
    c = Container(bytes.fromhex("a1b2c3d4"), 7, 64, 3, symbols)
    assert to_bytes(c) == LINSPACE_7BIT
    assert len(LINSPACE_7BIT) == 100 == OVERHEAD_BYTES + 88
    assert from_bytes(LINSPACE_7BIT) == c


def test_small_literal_and_header_fields() -> None:
    c = Container(bytes.fromhex("00ff00ff"), 3, 32, 1, (0, 1, 2, 3, 4, 5, 6, 7, 7))
    assert to_bytes(c) == SMALL
    assert SMALL[7] == 0x02 and SMALL[8] == 8 and SMALL[9] == 0x51  # 3 bits; nz 9; side 2^5, 1 channel


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1


@settings(max_examples=200, deadline=None)
@given(
    bits=st.integers(1, 16),
    nz=st.integers(1, 256),
    side_log2=st.integers(3, 15),
    channels=st.sampled_from([1, 3]),
    fp=st.binary(min_size=4, max_size=4),
    data=st.data(),
)
def test_roundtrip(bits, nz, side_log2, channels, fp, data) -> None:
    symbols = data.draw(st.lists(st.integers(0, 2**bits - 1), min_size=nz, max_size=nz))
    c = Container(fp, bits, 1 << side_log2, channels, tuple(symbols))
    raw = to_bytes(c)
    assert len(raw) == c.total_bytes
    assert from_bytes(raw) == c


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda b: b[:5], "truncated"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b"XY" + b[2:], "not a percodec file"),
        (lambda b: b[:2] + b"\x03" + b[3:], "version 3"),
        (lambda b: b[:7] + bytes([0x16]) + b[8:], "quantiser id 1"),
        (lambda b: b[:20] + bytes([b[20] ^ 0x10]) + b[21:], "checksum"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum"),
        (lambda b: b"", "truncated"),
    ],
)
def test_malformed_inputs_raise_the_one_error(mutate, match) -> None:
    with pytest.raises(ContainerError, match=match):
        from_bytes(mutate(LINSPACE_7BIT))


def _with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


def test_bad_fields_with_valid_checksum() -> None:
    body = bytearray(SMALL[:-2])
    body[9] = 0x52  # 2 channels
    with pytest.raises(ContainerError, match="image field"):
        from_bytes(_with_crc(bytes(body)))
    body = bytearray(SMALL[:-2])
    body[-1] |= 0x01  # a padding bit set
    with pytest.raises(ContainerError, match="padding"):
        from_bytes(_with_crc(bytes(body)))


def test_every_single_bit_flip_is_rejected() -> None:
    for i in range(len(SMALL) * 8):
        flipped = bytearray(SMALL)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(ContainerError):
            from_bytes(bytes(flipped))


def test_fuzz_script_smoke() -> None:
    from tests.fuzz_container import fuzz

    assert fuzz(2000, seed=1) == 2000


# Version 2: header 50 47 02 | fingerprint | level, the payload words, CRC-16 little-endian.
V2_LITERAL = bytes.fromhex("504702a1b2c3d40401000000020000003865")


def test_v2_bytes_literal() -> None:
    c = CodedContainer(bytes.fromhex("a1b2c3d4"), 4, bytes.fromhex("0100000002000000"))
    data = to_bytes(c)
    assert data == V2_LITERAL and int.from_bytes(data[-2:], "little") == crc16(data[:-2])
    assert len(data) == OVERHEAD_V2 + 8 == c.total_bytes
    assert from_bytes(data) == c


@given(st.binary(min_size=4, max_size=4), st.integers(1, 255), st.integers(1, 64))
@settings(max_examples=50, deadline=None)
def test_v2_round_trip(fp: bytes, level: int, words: int) -> None:
    c = CodedContainer(fp, level, bytes((7 * i) % 256 for i in range(4 * words)))
    assert from_bytes(to_bytes(c)) == c


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda b: b[:-3] + b[-2:], "checksum"),
        (lambda b: b[:9], "truncated"),
        (lambda b: b[:9] + b[-2:], "checksum"),
        (lambda b: b[:7] + b"\x00" + b[8:], "checksum"),
        (lambda b: b[:12] + bytes([b[12] ^ 4]) + b[13:], "checksum"),
    ],
)
def test_v2_malformed_inputs(mutate, match) -> None:
    good = to_bytes(CodedContainer(bytes.fromhex("a1b2c3d4"), 4, bytes.fromhex("0100000002000000")))
    with pytest.raises(ContainerError, match=match):
        from_bytes(mutate(good))


def test_v2_header_rules_hold_even_with_a_valid_checksum() -> None:
    def sealed(body: bytes) -> bytes:
        return body + crc16(body).to_bytes(2, "little")

    with pytest.raises(ContainerError, match="longer than any percodec file"):
        from_bytes(sealed(bytes.fromhex("504702a1b2c3d404") + bytes(4097)))
    with pytest.raises(ContainerError, match="level 0"):
        from_bytes(sealed(bytes.fromhex("504702a1b2c3d40001000000")))
