"""What every backend shares: the options of an encode, its results, and the search's loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image

from codec import align
from codec.defaults import DEFAULT_MODEL
from codec.generator import resolve_model
from codec.inversion import SearchConfig
from codec.losses import make_mix, parse_mix
from codec.metrics import bpp

ImageLike = str | Path | bytes | BinaryIO | Image.Image


@dataclass
class EncodeOptions:
    """Options of `encode`; see `percodec encode --help` for their meaning."""

    model: str | Path = DEFAULT_MODEL
    loss: str | None = None  # None: DEFAULT_LOSS (GAN-only model) or RD_LOSS (RD model)
    bits: int | None = None
    max_bytes: int | None = None
    steps: int | None = None  # None: SearchConfig.steps (GAN model) or RD_STEPS (RD model)
    quality: int | None = None
    restarts: int | None = None  # GAN-only models; None: SearchConfig.restarts
    lr: float = SearchConfig.lr
    prior: float = SearchConfig.prior
    seed: int | None = None  # GAN-only models: the starting latents' seed [0]
    device: str = "auto"
    crop: float | None = None
    align: bool = True  # find and align the face in inputs larger than the model's size
    face: int = 1  # which face, by box area (1 = largest)
    require_face: bool = False  # no face found: error instead of the centre crop
    batch_size: int = 32
    loss_params: dict[str, object] = field(default_factory=dict)


@dataclass
class EncodeResult:
    """One encoded image: the file bytes, the model-sized input and what decoding gives."""

    data: bytes
    original: torch.Tensor  # uint8 (C, H, W): the preprocessed input
    decoded: torch.Tensor  # uint8 (C, H, W): exactly what decode() produces
    psnr: float
    ssim: float
    search_loss: float
    steps: int
    bits: int  # GAN-only models: bits per dimension (0 for rate-distortion models)
    quality: int | None = None  # rate-distortion models: the quality on the ladder (docs/GLOSSARY.md)
    model: str = ""  # rate-distortion models: the model of the quality's rung
    level: int | None = None  # rate-distortion models: the rung's level of that model (in the file's header)
    where: str = "centre crop"  # how the input was framed (see `frame`)
    notes: tuple[str, ...] = ()
    seconds: float = 0.0  # wall time, the batch's shared out evenly
    loss: str = ""  # the loss the search minimised

    @property
    def num_bytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return bpp(len(self.data), *self.original.shape[-2:])


BatchCoder = Callable[[torch.Tensor, int], list[EncodeResult]]
Tick = Callable[[float], None]  # images' worth of search done (see encode_iter)


def steps_of(tick: Tick, rows: int) -> Callable[[int, int], None]:
    """A search's on_step(step, total) over `rows` images, reported to `tick`."""
    return lambda step, total: tick(rows / total)


def search_loss(spec: str, channels: int, params: dict, model: str | Path, device: torch.device) -> torch.nn.Module:
    """The search's loss (eval mode: deterministic); an identity term is told the model's
    framing, so that its face chip is cut where the model's crops put the face."""
    if "identity" in parse_mix(spec) and "framing" not in params:
        framing = align.read_framing(resolve_model(model))
        params = {**params, **({"framing": framing.tolist()} if framing is not None else {})}
    return make_mix(spec, channels, **params).to(device).eval()
