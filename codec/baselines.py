"""Classic codecs for the benchmark, behind one small protocol (after CompressAI's bench).

Every codec maps an 8-bit image array (H, W, C) to bytes and back, in memory. Byte counts
are whole files (headers included), except `JpegScanOnly`, which is JPEG with its standard
tables and headers held by the decoder: the fair analogue of percodec's shared generator.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image, features


class Baseline(Protocol):
    """name: a row label; setting: the knob swept for rate-distortion curves."""

    name: str
    family: str
    setting: float

    def encode(self, img: np.ndarray) -> bytes: ...

    def decode(self, data: bytes) -> np.ndarray: ...


def _pil(img: np.ndarray) -> Image.Image:
    return Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)


def _arr(img: Image.Image, channels: int) -> np.ndarray:
    a = np.asarray(img.convert("L" if channels == 1 else "RGB"))
    return a[..., None] if channels == 1 else a


@dataclass
class PillowCodec:
    """JPEG, WebP or AVIF through Pillow at a fixed quality."""

    fmt: str
    quality: int
    channels: int = 3
    options: tuple[tuple[str, object], ...] = ()
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"{self.fmt.lower()} q={self.quality}"

    @property
    def family(self) -> str:
        return self.fmt.lower()

    @property
    def setting(self) -> float:
        return self.quality

    def encode(self, img: np.ndarray) -> bytes:
        buf = io.BytesIO()
        _pil(img).save(buf, format=self.fmt, quality=self.quality, **dict(self.options))
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        return _arr(Image.open(io.BytesIO(data)), self.channels)


def jpeg(quality: int, channels: int = 3) -> PillowCodec:
    return PillowCodec("JPEG", quality, channels, (("optimize", True),))


def webp(quality: int, channels: int = 3) -> PillowCodec:
    return PillowCodec("WEBP", quality, channels, (("method", 6),))


def avif(quality: int, channels: int = 3) -> PillowCodec:
    return PillowCodec("AVIF", quality, channels, (("speed", 0),))


def has_avif() -> bool:
    return bool(features.check("avif"))


def _sos_end(jpg: bytes) -> int:
    """Offset just past the start-of-scan header: where the entropy-coded data begins."""
    i = 2
    while i + 4 <= len(jpg):
        if jpg[i] != 0xFF:
            raise ValueError("malformed JPEG marker stream")
        marker, length = jpg[i + 1], int.from_bytes(jpg[i + 2 : i + 4], "big")
        if marker == 0xDA:
            return i + 2 + length
        i += 2 + length
    raise ValueError("no start-of-scan marker")


@dataclass
class JpegScanOnly:
    """Baseline JPEG with standard tables, of which only the scan data is stored (plus one
    quality byte); the decoder rebuilds the headers from the quality and the image size it
    knows, as percodec's decoder knows its generator."""

    quality: int
    channels: int = 3
    size: tuple[int, int] = (64, 64)

    @property
    def name(self) -> str:
        return f"jpeg scan-only q={self.quality}"

    family = "jpeg-scan"

    @property
    def setting(self) -> float:
        return self.quality

    def _full(self, img: Image.Image) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=self.quality, optimize=False)
        return buf.getvalue()

    def encode(self, img: np.ndarray) -> bytes:
        full = self._full(_pil(img))
        return bytes([self.quality]) + full[_sos_end(full) : -2]

    def decode(self, data: bytes) -> np.ndarray:
        mode = "L" if self.channels == 1 else "RGB"
        header = self._full(Image.new(mode, self.size))
        header = header[: _sos_end(header)]
        return _arr(Image.open(io.BytesIO(header + data[1:] + b"\xff\xd9")), self.channels)


@dataclass
class KMeansPalette:
    """k-means colour quantisation (k-means++ start, Lloyd iterations, seeded), stored as an
    optimised palette PNG with the fewest bits per index."""

    k: int
    channels: int = 3
    iterations: int = 25
    seed: int = 0

    @property
    def name(self) -> str:
        return f"k-means K={self.k}"

    family = "kmeans"

    @property
    def setting(self) -> float:
        return self.k

    def encode(self, img: np.ndarray) -> bytes:
        px = img.reshape(-1, img.shape[-1]).astype(np.float64)
        rng = np.random.default_rng(self.seed)
        centers = [px[rng.integers(len(px))]]
        for _ in range(1, self.k):
            d = ((px[:, None] - np.array(centers)[None]) ** 2).sum(-1).min(1)
            p = d / d.sum() if d.sum() > 0 else None
            centers.append(px[rng.choice(len(px), p=p)])
        c = np.array(centers)
        for _ in range(self.iterations):
            labels = ((px[:, None] - c[None]) ** 2).sum(-1).argmin(1)
            for j in range(self.k):
                if (labels == j).any():
                    c[j] = px[labels == j].mean(0)
        labels = ((px[:, None] - c[None]) ** 2).sum(-1).argmin(1)
        palette = np.clip(np.round(c), 0, 255).astype(np.uint8)
        pal_img = Image.fromarray(labels.reshape(img.shape[:2]).astype(np.uint8), mode="P")
        rgb = palette if palette.shape[1] == 3 else np.repeat(palette, 3, 1)
        pal_img.putpalette(rgb.flatten().tolist())
        buf = io.BytesIO()
        bits = max(1, int(np.ceil(np.log2(self.k))))
        pal_img.save(buf, format="PNG", optimize=True, bits=bits)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        return _arr(Image.open(io.BytesIO(data)), self.channels)


def png_size(img: np.ndarray) -> int:
    """Bytes of the lossless reference: an optimised PNG of the image."""
    buf = io.BytesIO()
    _pil(img).save(buf, format="PNG", optimize=True)
    return len(buf.getvalue())


def fit_budget(make, img: np.ndarray, budget: int, lo: int = 0, hi: int = 100) -> tuple[bytes, int, bool]:
    """Bisect the integer quality for the largest output within `budget` bytes.

    Returns (data, quality, reached); when even quality `lo` is over budget, that file is
    returned with reached=False.
    """
    best = None
    data_lo = make(lo).encode(img)
    if len(data_lo) > budget:
        return data_lo, lo, False
    best = (data_lo, lo)
    a, b = lo + 1, hi
    while a <= b:
        mid = (a + b) // 2
        d = make(mid).encode(img)
        if len(d) <= budget:
            best, a = (d, mid), mid + 1
        else:
            b = mid - 1
    return best[0], best[1], True


@dataclass(frozen=True)
class Eigenbasis:
    """PCA of training faces: mean (D,), components (K, D) orthonormal, spread (K,) of each
    coefficient over the training set; pixels in [0, 1], D = H*W*C."""

    mean: np.ndarray
    components: np.ndarray
    spread: np.ndarray
    shape: tuple[int, int, int]


#: The most float32 bytes a PCA's data matrix may take (4 GiB): 87,381 faces at 64x64,
#: 21,845 at 128x128.
EIGEN_FIT_BYTES = 4 << 30


def fit_eigenfaces(images: np.ndarray, k: int = 512, seed: int = 0) -> Eigenbasis:
    """PCA of uint8 faces (N, H, W, C) by randomised SVD (k components). Where N faces would
    take more than EIGEN_FIT_BYTES as floats, an evenly spaced subset that fits is used (the
    50,213 CelebA training faces at 128x128 took 20 GB and were killed)."""
    import torch

    dims = int(np.prod(images.shape[1:]))
    images = images[:: -(-len(images) * dims * 4 // EIGEN_FIT_BYTES)]
    x = torch.from_numpy(images.reshape(len(images), -1)).float()
    x /= 255  # in place, as is the centring: one copy of the data as floats
    mean = x.mean(0)
    x -= mean
    torch.manual_seed(seed)
    _, s, v = torch.svd_lowrank(x, q=k, niter=4)
    spread = s / (len(images) - 1) ** 0.5
    as64 = lambda t: t.double().numpy()  # noqa: E731
    return Eigenbasis(as64(mean), as64(v.t().contiguous()), as64(spread), tuple(images.shape[1:]))


class EigenfaceCodec:
    """The classic domain-specific yardstick: PCA coefficients, each rounded with one step
    and entropy-coded (constriction's ANS, as percodec's own files) under a Gaussian with
    that coefficient's training spread. `quality` (-48..100) sets the step, 2^(-quality/12)."""

    family = "eigenface"

    def __init__(self, basis: Eigenbasis, quality: int) -> None:
        self.basis, self.quality = basis, quality
        self.step = 2.0 ** (-quality / 12)

    @property
    def name(self) -> str:
        return f"eigenface q={self.quality}"

    @property
    def setting(self) -> float:
        return self.quality

    def _tables(self):
        return _eigen_tables(self.basis.spread.tobytes(), self.step)

    def encode(self, img: np.ndarray) -> bytes:
        b = self.basis
        coef = b.components @ (img.reshape(-1) / 255 - b.mean)
        t = self._tables()
        sym = np.clip(np.round(coef / self.step).astype(np.int64), t.offsets, t.offsets + t.lengths - 1)
        return t.encode(sym)

    def decode(self, data: bytes) -> np.ndarray:
        b = self.basis
        coef = self._tables().decode(data) * self.step
        x = b.mean + coef @ b.components
        return np.clip(np.round(x * 255), 0, 255).astype(np.uint8).reshape(b.shape)


@functools.lru_cache(maxsize=128)
def _eigen_tables(spread: bytes, step: float):
    """Integer tables of zero-mean Gaussians with the given spreads, quantised with `step`.
    Each table spans ±5.5 sigma, or as many steps as the coder's precision holds (the finest
    steps of a bench's bisection towards 1 KB): coefficients beyond are clamped."""
    import torch

    from codec.entropy import PRECISION, LevelTables, _integer_pmf

    sigma = np.frombuffer(spread, dtype=np.float64)
    widest = (1 << (PRECISION - 1)) // 2 - 1  # 2 * widest + 1 symbols: half the coder's counts
    half = np.clip(np.ceil(5.5 * sigma / step), 1, widest).astype(np.int64)  # beyond: clamped
    lengths = 2 * half + 1
    counts = np.zeros((len(sigma), int(lengths.max())), dtype=np.int32)
    for d, (s, h) in enumerate(zip(sigma, half, strict=True)):
        edges = (np.arange(-h, h + 2) - 0.5) * step / s
        cdf = torch.special.ndtr(torch.from_numpy(edges)).numpy()
        counts[d, : 2 * h + 1] = _integer_pmf(np.maximum(np.diff(cdf), 1e-12))
    return LevelTables(step, -half, lengths, counts)
