"""Training objectives: what `train-generator --objective NAME` trains, and the contract the
training loop (codec.train) drives each one through.

An objective is registered here with the `TrainConfig` options only it (of the objectives)
takes; `train` and `train-generator` refuse another objective's option instead of ignoring
it. The registry is torch-free, so the command line checks options before importing torch.

Adding an objective: a module in this package with a class meeting `Objective` (and its
`from_config`), and one line in `OBJECTIVES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from codec.defaults import flag

if TYPE_CHECKING:
    import torch


class Objective(Protocol):
    """What the training loop calls. Modules that train are wrapped by the `wrap` the loop
    gives `from_config` (DistributedDataParallel under torchrun), and every training forward
    goes through a wrapper, so that gradients are averaged over the ranks."""

    model_file: ClassVar[str]  # the file `export` writes into the run folder

    @classmethod
    def from_config(
        cls, cfg: Any, mcfg: Any, device: torch.device, wrap: Callable, valid: Callable[[], torch.Tensor],
        resuming: bool,
    ) -> Objective:  # fmt: skip
        """The objective of a run (`codec.train.TrainConfig`, the model's config); `valid()`
        loads the validation images (uint8), for objectives that validate."""
        ...

    def step(self, x: torch.Tensor, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """One optimiser step on a batch in [-1, 1]; the metrics to log."""
        ...

    def optimizers(self) -> list[torch.optim.Optimizer]: ...

    def modules(self) -> dict[str, torch.nn.Module]:
        """The networks checked for non-finite weights and whose buffers are synchronised."""
        ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def validate(self) -> dict[str, float]:
        """Validation metrics (empty: none)."""
        ...

    def save_samples(self, path: Path) -> None: ...

    def export(self, path: Path, card: dict[str, str]) -> None:
        """Write the trained model file (its family's format) with its card."""
        ...


@dataclass(frozen=True)
class ObjectiveKind:
    """A registered objective: its name, its class (`module:Class`), and the `TrainConfig`
    fields only it and the objectives sharing them take."""

    name: str
    cls: str
    options: tuple[str, ...]

    def load(self) -> type[Objective]:
        module, name = self.cls.split(":")
        return getattr(importlib.import_module(module), name)


OBJECTIVES = {
    o.name: o
    for o in (
        ObjectiveKind("gan", "codec.objectives.gan:GanObjective", ("init_generator",)),
        ObjectiveKind("rd", "codec.objectives.rd:RDObjective",
                      ("init_from", "distortion", "target_bytes", "adv_weight", "step_range", "valid_every")),
        ObjectiveKind("detail", "codec.objectives.detail:DetailObjective",
                      ("init_from", "distortion", "valid_every", "detail_lambdas", "detail_context_width",
                       "detail_identity")),
    )
}  # fmt: skip


def of_name(name: str) -> ObjectiveKind:
    """The registered objective `name`; ValueError naming the others."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def takers(option: str) -> tuple[str, ...]:
    """The objectives that take `option` (empty: every objective does)."""
    return tuple(o.name for o in OBJECTIVES.values() if option in o.options)


def refuse_others(name: str, given: list[str]) -> None:
    """ValueError for the first of `given` (TrainConfig fields) that other objectives take
    and `name` does not: it would be silently ignored."""
    for option in given:
        owners = takers(option)
        if owners and name not in owners:
            raise ValueError(f"{flag(option)} applies to --objective {' or '.join(owners)}, not {name}")
