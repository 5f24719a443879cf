"""What an encode takes and gives, shared by every backend: its options (`EncodeOptions`), its
results (`EncodeResult`), the batch coder's type, and the search's loss."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch
from PIL import Image

from codec.defaults import (
    DEFAULT_MODEL,
    MAX_BATCH,
    MAX_BYTES_OPTION,
    MAX_FACE,
    MAX_QUALITY,
    MAX_RESTARTS,
    MAX_SEED,
    MAX_STEPS,
    check_float,
    check_int,
)
from codec.errors import PercodecError
from codec.generator import resolve_model
from codec.inversion import SearchConfig
from codec.ladder import framing_of
from codec.losses import make_mix, parse_mix
from codec.metrics import bpp
from codec.quantize import MAX_BITS, MIN_BITS

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

    def __post_init__(self) -> None:
        # The command line's bounds, for API callers too: each field's type and range is
        # checked here, naming the field, before any model is loaded.
        if not isinstance(self.model, str | Path) or not str(self.model):
            raise TypeError(f"model must be a shipped name or a path, got {self.model!r}")
        if self.loss is not None:
            if not isinstance(self.loss, str):
                raise TypeError(f"loss must be a loss name or mix such as 'ms-ssim=1,mse=3', got {self.loss!r}")
            parse_mix(self.loss)
        check_int("bits", self.bits, MIN_BITS, MAX_BITS, optional=True)
        check_int("max_bytes", self.max_bytes, 1, MAX_BYTES_OPTION, optional=True)
        check_int("steps", self.steps, 0, MAX_STEPS, optional=True)
        check_int("quality", self.quality, 1, MAX_QUALITY, optional=True)
        check_int("restarts", self.restarts, 1, MAX_RESTARTS, optional=True)
        check_float("lr", self.lr, 0.0, 1e6, lo_open=True)
        check_float("prior", self.prior, 0.0, 1e6)
        check_int("seed", self.seed, 0, MAX_SEED, optional=True)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        check_float("crop", self.crop, 0.0, 1.0, lo_open=True, optional=True)
        for name in ("align", "require_face"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_int("face", self.face, 1, MAX_FACE)
        check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        if not isinstance(self.loss_params, dict):
            raise TypeError(f"loss_params must be a dict, got {type(self.loss_params).__name__}")


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


#: Search losses built in this process, newest last (see `search_loss`).
_SEARCH_LOSSES: OrderedDict[str, torch.nn.Module] = OrderedDict()


def _stamp(value: object) -> int | None:
    """A file's modification time, where a value names one (a model, a loss's params file)."""
    if isinstance(value, str | Path):
        try:
            return os.stat(resolve_model(value) if isinstance(value, str) else value).st_mtime_ns
        except (OSError, ValueError, PercodecError):  # not a file: the key has the name itself
            return None
    return None


def search_loss(spec: str, channels: int, params: dict, model: str | Path, device: torch.device) -> torch.nn.Module:
    """The search's loss (eval mode: deterministic); an identity term is told the model's
    framing, so that its face chip is cut where the model's crops put the face.

    Kept per process and shared by every search that asks for the same (building one copies
    dlib's network, a tenth of a warm single-face encode): callers must not change it."""
    key = json.dumps([spec, channels, params, str(model), str(device), [_stamp(v) for v in (model, *params.values())]],
                     sort_keys=True, default=str)  # fmt: skip
    if key in _SEARCH_LOSSES:
        _SEARCH_LOSSES.move_to_end(key)
        return _SEARCH_LOSSES[key]
    if "identity" in parse_mix(spec) and "framing" not in params:
        framing = framing_of(model)
        params = {**params, **({"framing": framing.tolist()} if framing is not None else {})}
    _SEARCH_LOSSES[key] = make_mix(spec, channels, **params).to(device).eval()
    while len(_SEARCH_LOSSES) > 4:
        _SEARCH_LOSSES.popitem(last=False)
    return _SEARCH_LOSSES[key]
