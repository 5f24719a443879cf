"""Image files <-> tensors, and the one preprocessing every part of percodec shares.

Tensors are float in [-1, 1] with shape (C, H, W) (or (B, C, H, W)); PIL images are 8-bit.
`fit_to_model` is the single definition of "crop around the face and resize": a centred
square whose side is `crop` times the shorter image side, resized with Pillow's
antialiased bicubic filter. CelebA's aligned 178x218 faces with crop = 140/178 give the
usual centred 140x140 face crop. An image already at the model's size passes unchanged.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from codec.errors import ImageError
from codec.fileio import require_file

#: Refuse images with more pixels than this (decompression bombs): 64 megapixels.
MAX_PIXELS = 64 * 1024 * 1024
#: Longest image read from stdin: MAX_PIXELS of uncompressed 16-bit RGBA, plus 1 MiB of
#: metadata (a file on disk is opened by name, and only its pixels are counted).
MAX_STDIN_BYTES = MAX_PIXELS * 8 + (1 << 20)

#: Crop fraction for CelebA's aligned 178x218 images: the centred 140x140 face.
CELEBA_CROP = 140 / 178


def read_stdin() -> bytes:
    """An image piped to stdin, as bytes, refused past MAX_STDIN_BYTES."""
    from codec.fileio import read_bytes

    return read_bytes("-", MAX_STDIN_BYTES, "an image (the largest allowed is 64 MP)")


def open_image(source: str | Path | bytes | BinaryIO | Image.Image, channels: int = 3) -> Image.Image:
    """Read an image (a file, its bytes, or a PIL image) as 8-bit RGB (channels=3) or L.

    EXIF orientation is applied; palette, alpha, grey, CMYK, 16-bit and float modes are
    converted (transparent areas are composited on white). Raises ImageError for missing,
    empty, corrupt, oversized or unconvertible images, with nothing else touched.
    """
    return read_input(source, channels)[0]


def read_input(
    source: str | Path | bytes | BinaryIO | Image.Image, channels: int = 3
) -> tuple[Image.Image, tuple[str, ...]]:
    """`open_image`, plus notes a user should see (only the first frame of an animation
    is used; an image smaller than a model wants is upscaled)."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, str | Path | bytes | bytearray) or hasattr(source, "read"):
        img = _read_file(source)
    else:
        hint = ": make it one with PIL.Image.fromarray" if hasattr(source, "__array__") else ""
        kind = type(source).__name__
        raise TypeError(f"an image must be a path, bytes, a binary file or a PIL image, got {kind}{hint}")
    if 0 in img.size:
        raise ImageError(f"{input_name(source)}: the image is {img.size[0]}x{img.size[1]}: no pixels to code")
    notes = []
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        notes.append(f"animated image: coded its first frame of {frames}")
    try:
        img = ImageOps.exif_transpose(img)
        return convert_mode(img, channels), tuple(notes)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{input_name(source)}: cannot convert a {img.mode} image to 8 bits ({exc})") from None


def input_name(source: object) -> str:
    """How messages name an input: its path, '<bytes>', or 'image' for a PIL image."""
    if isinstance(source, Image.Image):
        return "image"
    return "<bytes>" if isinstance(source, bytes | bytearray) else str(getattr(source, "name", source))


def _read_file(source: str | Path | bytes | BinaryIO) -> Image.Image:
    name = input_name(source)
    try:
        if isinstance(source, bytes | bytearray):
            if not source:
                raise ImageError("input image is empty (0 bytes)")
            source = io.BytesIO(source)
        elif isinstance(source, str | Path):
            path = Path(source)
            require_file(path, ImageError)
            if path.stat().st_size == 0:
                raise ImageError(f"{path}: file is empty (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(
                    f"{name}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the "
                    f"{MAX_PIXELS / 1e6:.0f} MP limit (possible decompression bomb)"
                )
            img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({exc})") from None
    except Image.DecompressionBombWarning as exc:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: not a readable image ({exc})") from None
    return img


def convert_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode -> 8-bit RGB (channels=3) or L; transparency is composited on white.

    The range of wide samples is decided by the file's type, or by the bulk of its values,
    never by one value: integer modes wider than 8 bits (16-bit PNG and TIFF, 32-bit TIFF)
    are read as 0..65535 (32-bit values beyond it are refused); float images are read as
    0..1 when 99% of their values are at most 1, else as 0..255, and the stray values beyond
    the range (at most 1% of them) are clipped; NaN, infinity or more strays are refused.
    """
    if img.mode in ("P", "PA") or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        if arr.min() < 0 or arr.max() > 65535:  # 32-bit data: its range is not known, so not guessed
            raise ValueError(f"32-bit integer values {arr.min():.0f}..{arr.max():.0f} are outside 0..65535")
        img = Image.fromarray(np.clip(arr / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif img.mode == "F":
        img = Image.fromarray(_float_to_8bit(np.asarray(img, dtype=np.float64)))
    return img.convert("RGB" if channels == 3 else "L")


#: The share of a float image's values that may lie outside its range and be clipped.
FLOAT_STRAYS = 0.01


def _float_to_8bit(arr: np.ndarray) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise ValueError("float values must be finite (this image has NaN or infinity)")
    hi = 1.0 if np.quantile(arr, 1 - FLOAT_STRAYS) <= 1.0 else 255.0
    strays = np.count_nonzero((arr < 0) | (arr > hi)) / arr.size
    if strays > FLOAT_STRAYS:
        raise ValueError(
            f"{strays:.1%} of the float values lie outside 0..{hi:g} (at most {FLOAT_STRAYS:.0%} are clipped): "
            "float images must hold 0..1 or 0..255"
        )
    return np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)


def fit_to_model(img: Image.Image, size: int, crop: float = 1.0) -> Image.Image:
    """Centre-crop a square of side `crop` x shorter side, then resize to size x size.

    An image already size x size is returned unchanged, so model-sized inputs and the
    outputs of `decode` pass through exactly.
    """
    if img.size == (size, size):
        return img
    if not 0.0 < crop <= 1.0:
        raise ValueError(f"crop must be in (0, 1], got {crop}")
    w, h = img.size
    side = max(1, round(min(w, h) * crop))
    left, top = (w - side) // 2, (h - side) // 2
    img = img.crop((left, top, left + side, top + side))
    return img.resize((size, size), Image.Resampling.BICUBIC)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """8-bit PIL image -> float tensor (C, H, W) in [-1, 1]."""
    return uint8_to_float(torch.from_numpy(to_uint8_array(img)))


def to_uint8_array(img: Image.Image) -> np.ndarray:
    """PIL image -> writable uint8 array (C, H, W)."""
    arr = np.array(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def uint8_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 tensor in [0, 255] -> float32 in [-1, 1]: the single place of this mapping."""
    return x.float().div_(127.5).sub_(1.0)


def float_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float tensor in [-1, 1] -> uint8 in [0, 255], rounding to nearest."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round_().to(torch.uint8)


def to_pil(x: torch.Tensor) -> Image.Image:
    """Float tensor (C, H, W) in [-1, 1] -> 8-bit PIL image (RGB or L)."""
    return uint8_to_pil(float_to_uint8(x.cpu()))


def uint8_to_pil(x: torch.Tensor) -> Image.Image:
    """uint8 tensor (C, H, W) -> PIL image (RGB or L)."""
    arr = x.cpu().numpy()
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], mode="L")
    return Image.fromarray(arr.transpose(1, 2, 0), mode="RGB")


def format_for(suffix: str) -> str:
    """The Pillow format that writes files named `*suffix` ('.png' -> 'PNG'); ImageError
    for an extension Pillow cannot write."""
    fmt = Image.registered_extensions().get(suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(f"{suffix or 'no extension'}: not an image type that can be written (.png, .jpg, .webp ...)")
    return fmt


def image_bytes(img: Image.Image, fmt: str) -> bytes:
    """`img` as the bytes of a file in format `fmt` (a Pillow name such as 'PNG')."""
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt)
        written = Image.open(io.BytesIO(buf.getvalue())).size
    except (KeyError, ValueError, OSError) as exc:
        raise ImageError(f"cannot write {fmt} images: {exc}") from None
    if written != img.size:  # ICO, for one, silently shrinks anything over 256x256
        raise ImageError(f"{fmt} cannot hold a {img.width}x{img.height} image (it would be {written[0]}x{written[1]})")
    return buf.getvalue()


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> None:
    """Tile a batch (B, C, H, W) in [-1, 1] into one image file, `nrow` per row, white gaps."""
    from torchvision.utils import save_image  # imported here: only grids need torchvision

    save_image(images.detach().cpu().float(), path, nrow=nrow, normalize=True, value_range=(-1, 1), pad_value=1.0)
