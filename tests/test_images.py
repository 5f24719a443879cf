import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from codec.errors import ImageError
from codec.images import float_to_uint8, open_image, save_grid, to_tensor, uint8_to_float


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_modes_are_converted() -> None:
    p = Image.new("P", (4, 4))
    p.putpalette([255, 0, 0] * 256)
    assert open_image(_png_bytes(p)).getpixel((0, 0)) == (255, 0, 0)
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # fully transparent -> white
    assert open_image(_png_bytes(rgba)).getpixel((0, 0)) == (255, 255, 255)
    la = Image.new("LA", (4, 4), (10, 255))
    assert open_image(_png_bytes(la)).getpixel((0, 0)) == (10, 10, 10)
    g16 = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert open_image(_png_bytes(g16)).getpixel((0, 0)) == (255, 255, 255)
    assert open_image(_png_bytes(Image.new("RGB", (4, 4), (9, 9, 9))), channels=1).mode == "L"


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (6, 4), (0, 0, 0))
    img.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=100)
    out = open_image(buf.getvalue())
    assert out.size == (4, 6)
    assert out.getpixel((3, 0))[0] > 200  # the top-left pixel moved to the top-right


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty"),
        (b"definitely not an image", "not a readable image"),
        (_png_bytes(Image.new("RGB", (64, 64), (1, 2, 3)))[:60], "not a readable image"),
    ],
)
def test_bad_inputs(data, match) -> None:
    with pytest.raises(ImageError, match=match):
        open_image(data)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="megapixels|bomb"):
        open_image(bomb)


def test_missing_and_empty_files(tmp_path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        open_image(tmp_path / "empty.png")


def test_uint8_float_roundtrip_is_exact() -> None:
    u = torch.arange(256, dtype=torch.uint8).view(1, 16, 16)
    assert torch.equal(float_to_uint8(uint8_to_float(u)), u)
    img = Image.fromarray(u[0].numpy())
    assert torch.equal(float_to_uint8(to_tensor(img)), u)


def test_save_grid_maps_range_and_pads_white(tmp_path) -> None:
    x = torch.full((5, 3, 8, 8), -1.0)
    x[1] = 1.0
    save_grid(x, tmp_path / "g.png", nrow=3)
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    assert grid.shape == (2 * 10 + 2, 3 * 10 + 2, 3)
    assert grid[2:10, 2:10].max() == 0 and grid[2:10, 12:20].min() == 255  # -1 -> black, 1 -> white
    assert grid[0].min() == 255  # padding is white
