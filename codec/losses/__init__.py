"""One registry of the losses the latent search can minimise.

Every loss is an `nn.Module` called as `loss(input, target)` on images in [-1, 1] with
shape (B, C, H, W) and returns one value per image, shape (B,), lower is better. It is
built by `make_loss(name, **params)`; `LOSSES[name]` holds its metadata. The functional
cores behind them (e.g. `ssim.ssim`) take the data range as an explicit argument.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from codec.defaults import LOSS_NAMES, parse_mix


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


def _params_of(name: str) -> set[str]:
    """The keyword parameters a registered loss's factory takes (e.g. Watson's params_file)."""
    return set(inspect.signature(LOSSES[name].factory).parameters)


def make_loss(name: str, channels: int | None = None, **params: object) -> nn.Module:
    """Build the registered loss `name`; `channels` checks the images are supported."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    spec = LOSSES[name]
    if channels is not None and channels not in spec.channels:
        raise ValueError(f"loss {name!r} supports {spec.channels} channels, not {channels}")
    if unknown := sorted(set(params) - _params_of(name)):
        with_params = [n for n in LOSSES if _params_of(n) & set(params)]
        hint = f": only {', '.join(with_params)} take it" if with_params else ""
        raise ValueError(f"loss {name!r} takes no {', '.join(unknown)} (--loss-params){hint}")
    return spec.factory(**params)


class WeightedSum(nn.Module):
    """sum_i w_i * loss_i(input, target): a mix such as 'ms-ssim=1,mse=0.1'."""

    def __init__(self, parts: dict[str, nn.Module], weights: dict[str, float]) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(parts)
        self.weights = dict(weights)
        self.random_shift = any(getattr(p, "random_shift", False) for p in parts.values())

    def forward(self, input: torch.Tensor, target: torch.Tensor, **kwargs: object) -> torch.Tensor:
        total = 0
        for name, loss in self.parts.items():
            extra = kwargs if getattr(loss, "random_shift", False) else {}
            total = total + self.weights[name] * loss(input, target, **extra)
        return total


def make_mix(spec: str, channels: int | None = None, **params: object) -> nn.Module:
    """A loss or a weighted mix of registered losses from its text form (see `parse_mix`).
    `params` go to the parts that take them (e.g. a Watson loss's params_file)."""
    weights = parse_mix(spec)
    if len(weights) == 1 and next(iter(weights.values())) == 1.0:
        return make_loss(next(iter(weights)), channels, **params)
    takes = {n: _params_of(n) for n in weights}
    if unused := sorted(set(params) - set().union(*takes.values())):
        raise ValueError(f"no loss in {spec!r} takes {', '.join(unused)} (--loss-params)")
    parts = {n: make_loss(n, channels, **{k: v for k, v in params.items() if k in takes[n]}) for n in weights}
    return WeightedSum(parts, weights)


# Importing the modules fills the registry; their order is the order of --loss choices.
from codec.losses import pixel, ssim, watson  # noqa: E402,F401

from codec.losses import identity  # noqa: E402,F401 isort: skip (last among the choices)

if tuple(LOSSES) != LOSS_NAMES:  # the command line names the losses without importing them
    raise RuntimeError(f"codec.defaults.LOSS_NAMES {LOSS_NAMES} is not the registry's {tuple(LOSSES)}")
