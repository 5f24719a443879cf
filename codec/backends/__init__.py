"""The coding methods behind one contract. Each backend checks the options it takes, codes
batches of model-sized images into files of its container version, judges whether an
existing file can stand (--skip-existing), decodes and describes its files.

- `rd.RateDistortion`: rate-distortion models and their quality ladders (the default);
- `gan.GanOnly`: GAN-only generators searched by inversion (the reference method).

`for_model` picks the backend a resolved --model (`zoo.resolve`) codes with, `for_file` the
one a file needs. To add a method: a module here with a class of these methods, and a line
in each picker.
"""

from __future__ import annotations

from typing import Protocol

import torch

from codec.container import CodedContainer, Container
from codec.encoding import BatchCoder, EncodeOptions, Tick
from codec.zoo import Resolved


class Backend(Protocol):
    """What a backend does (see the module's docstring)."""

    container: type  # the file version it writes and reads
    words: str  # the models it codes with, in messages
    #: EncodeOptions fields only this backend takes (another backend refuses them when set).
    options: tuple[str, ...]

    def coder(
        self, base: torch.nn.Module, fp: bytes, o: EncodeOptions, model: Resolved, device: torch.device, tick: Tick,
        batch: int,
    ) -> BatchCoder:  # fmt: skip
        """Check `o` (options it does not take are errors when given) and return the
        function coding a batch (B, C, H, W) in [-1, 1] into EncodeResults with `model`
        (`base`: its loaded base model, `fp` that model's fingerprint)."""
        ...

    def reusable(self, c: Container | CodedContainer, data: bytes, o: EncodeOptions, model: Resolved) -> str | None:
        """Why an existing file cannot stand for coding with `o` and `model`; None when it can."""
        ...

    def decode(self, c: Container | CodedContainer, model: torch.nn.Module, name: str) -> torch.Tensor:
        """The file's image, uint8 (C, H, W), with `model` (named `name`)."""
        ...

    def describe(self, c: Container | CodedContainer, data: bytes, model: str | None) -> dict[str, object]:
        """The header's fields for `percodec info` (`model`: the shipped name, if any)."""
        ...


def for_model(model: Resolved) -> Backend:
    """The backend that codes with a resolved --model (its family's)."""
    from codec.backends.gan import GanOnly
    from codec.backends.rd import RateDistortion

    return RateDistortion() if model.backend == "rd" else GanOnly()


def refuse_others(backend: Backend, o: EncodeOptions) -> None:
    """ValueError for an option set (away from its default) that only another backend takes:
    it would be silently ignored (`--bits` with a rate-distortion model)."""
    from dataclasses import fields

    from codec.defaults import flag

    for other in _backends():
        if type(other) is type(backend):
            continue
        for f in fields(o):
            if f.name in other.options and f.name not in backend.options and getattr(o, f.name) != f.default:
                takes = " or ".join(flag(name) for name in backend.options[:2])
                raise ValueError(f"{flag(f.name)} applies to {other.words}; {backend.words} take {takes}")


def _backends() -> tuple[Backend, ...]:
    """Every backend, once."""
    from codec.backends.gan import GanOnly
    from codec.backends.rd import RateDistortion

    return RateDistortion(), GanOnly()


def for_file(c: Container | CodedContainer) -> Backend:
    """The backend whose files have `c`'s container version."""
    return next(b for b in _backends() if isinstance(c, b.container))
