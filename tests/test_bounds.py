"""Bounded reads, the Python API's bounds and how wide image samples are read (issue #37):
each case refused in one line (or a TypeError naming the argument), nothing read past the
format's bound, nothing written."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import codec
from codec.cli import main
from codec.container import MAX_FILE_BYTES, CodedContainer, ContainerError, crc16, from_bytes, to_bytes
from codec.errors import PercodecError, WriteError
from codec.fileio import read_bytes, write_bytes
from codec.images import open_image
from tests.conftest import SAMPLES


class Endless(io.RawIOBase):
    """An endless stream of zeros that counts what was read from it (`cat /dev/zero`)."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        b[:] = bytes(len(b))
        self.served += len(b)
        return len(b)


def _one_line(r, says: str) -> None:
    assert r.exit_code == 1, r.output
    assert says in r.output and "Traceback" not in r.output
    assert r.output.count("\n") == 1, r.output


@pytest.mark.parametrize("command", ["info", "decode"])
def test_an_endless_stdin_is_refused_after_reading_one_byte_past_the_bound(tmp_path, command) -> None:
    stream = Endless()
    args = [command, "-"] + ([str(tmp_path / "x.png")] if command == "decode" else [])
    r = CliRunner().invoke(main, args, input=io.BufferedReader(stream), catch_exceptions=False)
    _one_line(r, f"over {MAX_FILE_BYTES:,} bytes, too large for a percodec file")
    assert stream.served <= MAX_FILE_BYTES + 1 + io.DEFAULT_BUFFER_SIZE
    assert not (tmp_path / "x.png").exists()


def test_a_huge_sparse_file_is_refused_without_reading_it(tmp_path) -> None:
    big = tmp_path / "big.pgz"
    with open(big, "wb") as f:
        f.truncate(12 << 30)  # 12 GB, sparse: costs no disk
    r = CliRunner().invoke(main, ["decode", str(big), str(tmp_path / "x.png")], catch_exceptions=False)
    _one_line(r, "too large for a percodec file")
    with pytest.raises(PercodecError, match="over 10 bytes"):
        read_bytes(big, 10, "a test")


def test_the_longest_file_of_the_format_is_read_and_parsed() -> None:
    longest = to_bytes(CodedContainer(bytes(4), 1, bytes(MAX_FILE_BYTES - 10)))
    assert len(longest) == MAX_FILE_BYTES and from_bytes(longest).payload == bytes(MAX_FILE_BYTES - 10)
    body = bytes.fromhex("504702a1b2c3d401") + bytes(MAX_FILE_BYTES - 9)
    with pytest.raises(ContainerError, match="longer than any percodec file"):
        from_bytes(body + crc16(body).to_bytes(2, "little"))


def test_info_names_a_missing_file_once() -> None:
    r = CliRunner().invoke(main, ["info", "no-such.pgz"], catch_exceptions=False)
    _one_line(r, "no-such.pgz: no such file")
    assert r.output.count("no-such.pgz") == 1


def test_closed_stdin_and_stdout_are_one_line(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(PercodecError, match="stdin is closed"):
        read_bytes("-", 100, "a test")
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(WriteError, match="stdout is closed"):
        write_bytes("-", b"x")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_is_a_write_error_with_nothing_left_buffered(monkeypatch) -> None:
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        with pytest.raises(WriteError, match="stdout: cannot write"):
            write_bytes("-", b"x" * 100)
        full.flush()  # nothing was left in Python's buffer to fail again at exit (exit code 120)


@pytest.mark.parametrize(
    "call, error, says",
    [
        (lambda: codec.decode(10**10), TypeError, "must be given as bytes, got int"),
        (lambda: codec.decode("face.pgz"), TypeError, "read it first"),
        (lambda: codec.decode(np.zeros(10, np.uint8)), TypeError, "got ndarray"),
        (lambda: codec.decode(None), TypeError, "got NoneType"),
        (lambda: codec.decode(bytes(MAX_FILE_BYTES + 1)), ContainerError, "longer than any percodec file"),
        (lambda: codec.decode(b"", size=(100000, 100000)), ValueError, "size width must be in 1..8,192"),
        (lambda: codec.decode(b"", size=(64,)), TypeError, "size must be (width, height)"),
        (lambda: codec.encode(SAMPLES / "astronaut.png", steps=10**9), ValueError, "steps must be in 0..100,000"),
        (lambda: codec.encode(SAMPLES / "astronaut.png", steps=-1), ValueError, "steps must be in"),
        (lambda: codec.encode(SAMPLES / "astronaut.png", face=0), ValueError, "face must be in 1.."),
        (lambda: codec.encode(SAMPLES / "astronaut.png", face=-1), ValueError, "face must be in 1.."),
        (lambda: codec.encode(SAMPLES / "astronaut.png", max_bytes=0), ValueError, "max_bytes must be in 1.."),
        (lambda: codec.encode(SAMPLES / "astronaut.png", restarts=0), ValueError, "restarts must be in 1.."),
        (lambda: codec.encode(SAMPLES / "astronaut.png", lr=float("nan")), ValueError, "lr must be a finite"),
        (lambda: codec.encode(SAMPLES / "astronaut.png", batch_size=0), ValueError, "batch_size must be in 1.."),
        (lambda: codec.encode(SAMPLES / "astronaut.png", seed=2**70), ValueError, "seed must be in 0.."),
        (lambda: codec.encode(SAMPLES / "astronaut.png", steps=True), TypeError, "steps must be an integer"),
        (lambda: codec.encode(SAMPLES / "astronaut.png", quality="5"), TypeError, "quality must be an integer"),
        (lambda: codec.encode(SAMPLES / "astronaut.png", loss="nope"), ValueError, "unknown loss"),
        (lambda: codec.encode(SAMPLES / "astronaut.png", device="tpu"), ValueError, "device must be"),
        (lambda: codec.decode(b"", model=123), TypeError, "model must be a shipped name or a path"),
        (lambda: codec.encode_batch(str(SAMPLES / "astronaut.png")), TypeError, "use encode() for one"),
    ],
)
def test_the_api_refuses_what_the_command_line_refuses_naming_the_argument(call, error, says) -> None:
    with pytest.raises(error, match=says.replace("(", r"\(").replace(")", r"\)")):
        call()


@pytest.mark.parametrize(
    "image, says",
    [
        (None, "got NoneType"),
        (np.zeros((64, 64, 3), np.uint8), "PIL.Image.fromarray"),
        (12, "got int"),
    ],
)
def test_encode_names_what_an_image_must_be(image, says) -> None:
    with pytest.raises(TypeError, match=says):
        open_image(image)


def test_an_empty_image_is_one_line() -> None:
    with pytest.raises(codec.ImageError, match="0x0: no pixels"):
        open_image(Image.new("RGB", (0, 0)))


def _float_tiff(tmp_path: Path, arr: np.ndarray) -> Path:
    path = tmp_path / "f.tif"
    Image.fromarray(arr.astype(np.float32), mode="F").save(path)
    return path


def test_one_stray_float_value_does_not_change_how_the_image_is_read(tmp_path) -> None:
    arr = np.full((32, 32), 0.5)
    arr[0, 0] = 1.0000001  # read as 0..255 before: the whole image nearly black
    img = np.asarray(open_image(_float_tiff(tmp_path, arr), channels=1))
    assert img[5, 5] == 128 and img[0, 0] == 255
    arr = np.full((32, 32), 100.0)
    arr[0, 0] = -0.001  # refused before
    assert np.asarray(open_image(_float_tiff(tmp_path, arr), channels=1))[5, 5] == 100


def test_a_float_image_mostly_outside_its_range_is_refused(tmp_path) -> None:
    arr = np.full((32, 32), 0.5)
    arr[:4] = -3.0  # 12.5% strays
    with pytest.raises(codec.ImageError, match="12.5% of the float values lie outside 0..1"):
        open_image(_float_tiff(tmp_path, arr))


def test_16_bit_images_are_read_as_16_bit_whatever_their_values(tmp_path) -> None:
    for top in (255, 300, 65535):  # one value of 300 switched the scale before
        arr = np.full((32, 32), 100, np.uint16)
        arr[0, 0] = top
        Image.fromarray(arr).save(tmp_path / "a.png")
        assert np.asarray(open_image(tmp_path / "a.png", channels=1))[5, 5] == 0  # 100 of 65535
    arr = np.full((32, 32), 32896, np.uint16)
    Image.fromarray(arr).save(tmp_path / "b.png")
    assert np.asarray(open_image(tmp_path / "b.png", channels=1))[5, 5] == 128
