"""One registry of the losses the latent search can minimise.

Every loss is an `nn.Module` called as `loss(input, target)` on images in [-1, 1] with
shape (B, C, H, W) and returns one value per image, shape (B,), lower is better. It is
built by `make_loss(name, **params)`; `LOSSES[name]` holds its metadata. The functional
cores behind them (e.g. `ssim.ssim`) take the data range as an explicit argument.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class LossSpec:
    """Metadata of a registered loss.

    data_range: the range of the images the loss is defined on (inputs are mapped to it);
    higher_is_better: of the underlying similarity (False: a distance); deterministic:
    False when the training-mode loss is random (Watson's grid shifts; eval mode is
    always deterministic); channels: image channel counts supported.
    """

    name: str
    factory: Callable[..., nn.Module]
    description: str
    data_range: tuple[float, float]
    higher_is_better: bool = False
    deterministic: bool = True
    channels: tuple[int, ...] = (1, 3)


LOSSES: dict[str, LossSpec] = {}


def register_loss(
    name: str,
    description: str,
    data_range: tuple[float, float],
    higher_is_better: bool = False,
    deterministic: bool = True,
    channels: tuple[int, ...] = (1, 3),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator adding a loss to `LOSSES` under `name`."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} registered twice")
        LOSSES[name] = LossSpec(name, factory, description, data_range, higher_is_better, deterministic, channels)
        return factory

    return deco


def make_loss(name: str, channels: int | None = None, **params: object) -> nn.Module:
    """Build the registered loss `name`; `channels` checks the images are supported."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    spec = LOSSES[name]
    if channels is not None and channels not in spec.channels:
        raise ValueError(f"loss {name!r} supports {spec.channels} channels, not {channels}")
    return spec.factory(**params)


# Importing the modules fills the registry; their order is the order of --loss choices.
from codec.losses import pixel, ssim, watson  # noqa: E402,F401
