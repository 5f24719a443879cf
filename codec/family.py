"""Model families: every kind of model file percodec reads, and what codes with each.

A family is one kind of model file (the `percodec_model` value in its metadata), the module
that loads it, the backend that codes with it (`codec.backends`) and the objective that
trains it (`train-generator --objective`). Whatever must know a file's family asks here;
nothing else tests kind strings. A rate-distortion family's model is a `CodingModel`: what
the rate-distortion backend codes with, whatever its latents.

Adding a family: a module with its model class, its loader and level count, a ship step
(`codec.ship` holds the shipped families' and the helpers), and a line in `FAMILIES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from codec.errors import ModelError


@runtime_checkable
class CodingModel(Protocol):
    """A model the rate-distortion backend codes with: each level codes an image
    into a payload of its own (`codec.rdmodel.RDModel`, `codec.detailmodel.DetailModel`)."""

    @property
    def config(self) -> Any:  # codec.generator.ModelConfig: the image's size and channels
        ...

    @property
    def level_count(self) -> int: ...

    def has_level(self, level: int) -> bool: ...

    def byte_order(self) -> list[int]:
        """Its levels from the fewest bytes to the most."""
        ...

    def search(
        self,
        x: torch.Tensor,
        levels: Sequence[int],
        loss_fn: torch.nn.Module,
        steps: int,
        on_step: Callable[[int, int], None] | None = None,
        budget_bits: torch.Tensor | None = None,
    ) -> Sequence[Any]:
        """Each image's code at its level: the encoder's, refined within its rate (or budget)."""
        ...

    def start_bytes(
        self, x: torch.Tensor, level: int, cache: dict, cap: float = ...
    ) -> tuple[Sequence[Any], np.ndarray]:
        """The encoder's own codes at `level` and their file sizes, estimated from below."""
        ...

    def pack(self, code: Any, level: int) -> bytes: ...

    def unpack(self, payload: bytes, level: int) -> Any: ...

    def image(self, code: Any, level: int) -> torch.Tensor:
        """The decoded image (1, C, H, W) in [-1, 1], as `decode` makes it."""
        ...

    def fingerprints(self) -> list[bytes]:
        """Every fingerprint its files may carry, its own first."""
        ...


def _resolve(ref: str) -> Any:
    """`module:attribute` -> the attribute (families name their functions, so that the
    registry imports nothing until a family is used)."""
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class Family:
    """One kind of model file and everything that handles it, each as `module:function`:
    `loader(path, device) -> (model, card)`; for a rate-distortion family
    `levels(path, meta) -> level count` from metadata alone; `shipper(run, name, options)`
    (codec.ship) writes a trained run's model into the package."""

    name: str
    kind: str  # the file's `percodec_model` metadata
    words: str  # what it is, in messages
    backend: str  # "rd": a CodingModel, coded by codec.backends.rd; "gan": searched by inversion
    objective: str  # the train-generator --objective that makes it
    loader: str
    shipper: str
    levels: str | None = None

    def load(self, path: str | Path, device: str | torch.device = "cpu") -> tuple[Any, dict[str, str]]:
        """The file's model (eval mode, frozen) and its card."""
        return _resolve(self.loader)(path, device)

    def level_count(self, path: str | Path, meta: dict[str, str]) -> int | None:
        """How many levels the file has, from its metadata alone (None: no levels)."""
        return None if self.levels is None else _resolve(self.levels)(path, meta)

    def ship(self, run: Path, name: str, options: Any) -> Path:
        """Ship training run folder `run` as package model `name` (codec.ship.ShipOptions)."""
        return _resolve(self.shipper)(run, name, options)


FAMILIES = (
    Family("gan", "1", "GAN-only generator", "gan", "gan", "codec.generator:load_generator", "codec.ship:ship_gan"),
    Family("rd", "rd", "rate-distortion model", "rd", "rd", "codec.rdmodel:load_rd", "codec.ship:ship_rd",
           "codec.rdmodel:level_count"),
    Family("detail", "rd-detail", "rate-distortion model with a detail latent", "rd", "detail",
           "codec.detailmodel:load_detail", "codec.ship:ship_detail", "codec.detailmodel:level_count"),
)  # fmt: skip


def of_kind(kind: str | None) -> Family | None:
    """The family whose files carry `kind`."""
    return next((f for f in FAMILIES if f.kind == kind), None)


def of_file(path: str | Path) -> Family:
    """The family of a model file, from its metadata; ModelError for a file of none."""
    from codec.generator import read_metadata

    kind = read_metadata(path).get("percodec_model")
    family = of_kind(kind)
    if family is None:
        what = "missing percodec metadata" if kind is None else f"kind {str(kind)[:40]!r}, unknown to this version"
        raise ModelError(f"{path}: not a percodec model ({what})")
    return family


def level_count(path: str | Path) -> int | None:
    """How many levels a model file has (None: a GAN-only generator)."""
    from codec.generator import read_metadata

    return of_file(path).level_count(path, read_metadata(path))
