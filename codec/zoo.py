"""The model zoo: the one place that turns a --model (a shipped name, a .safetensors or a
.ladder.json path) or a file's fingerprint into loaded networks, cached per process.

`resolve` resolves a --model once (its scale, base model and backend), for the pipeline;
which *backend* codes with it is `codec.backends.for_model`; quality ladders are
`codec.ladder`; model families and their file formats are `codec.family`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from codec import family
from codec.container import CodedContainer, Container, ContainerError
from codec.family import CodingModel
from codec.generator import Generator, fingerprint, resolve_model, shipped_models
from codec.ladder import Ladder, ladder_file, ladder_for

#: A loaded model: a GAN-only generator or a rate-distortion family's model.
Model = Generator | CodingModel


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float, device: str) -> tuple[Model, tuple[bytes, ...]]:
    m, _ = family.of_file(path).load(path, device)
    return m, tuple(m.fingerprints()) if isinstance(m, CodingModel) else (fingerprint(m),)


def load_file(model: str | Path, device: str | torch.device = "cpu") -> tuple[Model, dict[str, str]]:
    """A model by shipped name or path, freshly loaded (not cached: training changes it),
    with its model card."""
    path = resolve_model(model)
    return family.of_file(path).load(path, device)


def load_model(model: str | Path, device: str | torch.device = "cpu") -> tuple[Model, bytes]:
    """A model by shipped name or path (cached), with its 8-byte fingerprint: a GAN-only
    `Generator` or a rate-distortion family's `CodingModel`."""
    m, fps = _loaded(model, device)
    return m, fps[0]


def _file_state(model: str | Path) -> tuple[str, float]:
    """A model's file and its modification time: what the caches below are keyed by."""
    path = resolve_model(model)
    return str(path), path.stat().st_mtime


def _loaded(model: str | Path, device: str | torch.device = "cpu") -> tuple[Model, tuple[bytes, ...]]:
    """A model and every fingerprint it answers to (its own first)."""
    return _load(*_file_state(model), str(device))


@functools.cache
def _fingerprints(path: str, mtime: float) -> tuple[bytes, ...]:
    # Kept apart from the model cache: looking a file's fingerprint up among every shipped
    # model must not evict the loaded models, nor load each model again on each look-up.
    return _load(path, mtime, "cpu")[1]


def _answers(fps: tuple[bytes, ...], prefix: bytes) -> bool:
    return any(fp[: len(prefix)] == prefix for fp in fps)


def answers_to(model: str | Path, prefix: bytes) -> bool:
    """Whether a model's fingerprint starts with `prefix` (a file header's), or one it had
    before levels were added to it (rdmodel.add_levels) does."""
    return _answers(_fingerprints(*_file_state(model)), prefix)


def find_shipped(fp: bytes) -> str | None:
    """Name of the shipped model whose fingerprint starts with fp, if any."""
    return next((name for name in shipped_models() if answers_to(name, fp)), None)


def model_for(c: Container | CodedContainer, model: str | Path | None = None) -> tuple[Model, str]:
    """The generator a container needs: `model` (or one of its ladder's rung models) if
    given, checked, else the shipped match."""
    want = c.fingerprint.hex()
    if model is not None:
        ladder = ladder_for(model)
        names = ladder.models() if ladder else [str(model)]
        tried = []
        for name in names:
            g, fps = _loaded(name)  # one look-up per rung: decoding many files asks for each
            if _answers(fps, c.fingerprint):
                return g, name
            tried.append(f"{name} {fps[0][:4].hex()}" if len(names) > 1 else f"fingerprint {fps[0][:4].hex()}")
        needed = find_shipped(c.fingerprint)
        hint = f"model {needed!r}" if needed else f"a generator with fingerprint {want}, not a shipped one"
        has = f"has {tried[0]}" if len(names) == 1 else f"holds models with fingerprints {', '.join(tried)}"
        raise ContainerError(f"this file was made for {hint}; {model} {has}")
    name = find_shipped(c.fingerprint)
    if name is None:
        raise ContainerError(
            f"this file needs a generator with fingerprint {want}, which is not a shipped model: pass --model PATH"
        )
    return load_model(name)[0], name


#: What a shipped model may be (models/manifest.json).
STATUSES = ("scale", "retired", "reference")


def manifest() -> dict[str, dict]:
    """Every shipped model's status, family and lineage (models/manifest.json): which are
    rungs of a scale, which are retired (kept so old files decode), which are references."""
    import json
    from importlib import resources

    path = Path(str(resources.files("codec.models"))) / "manifest.json"
    return json.loads(path.read_text())["models"] if path.is_file() else {}


@dataclass(frozen=True)
class Resolved:
    """A --model resolved once, as it travels through an encode: what it names, its quality
    scale and the backend that codes with it."""

    given: str  # as the caller named it
    ladder: Ladder | None  # its qualities: a scale's rungs or a model's own levels (None: GAN-only)
    scale: bool  # it names a scale (.ladder.json or a shipped scale), not a single model
    base: str  # the model standing for size, channels and framing: a scale's first rung, else itself
    backend: str  # codec.backends: "rd" or "gan"


def resolve(model: str | Path) -> Resolved:
    """Resolve `--model` (a shipped name, a model file or a .ladder.json) once."""
    ladder = ladder_for(model)
    scale = ladder_file(model) is not None
    base = ladder.rungs[0].model if ladder else str(model)
    backend = "rd" if ladder is not None else family.of_file(resolve_model(model)).backend
    return Resolved(str(model), ladder, scale, base, backend)


def catalogue() -> list[dict]:
    """Every shipped model as `percodec models` lists it: name, family, status and lineage
    (the manifest), levels, file size, and the shipped scales it is a rung model of."""
    from codec.ladder import shipped_ladders

    entries, scales = manifest(), shipped_ladders()
    rows = []
    for name, path in sorted(shipped_models().items()):
        entry = entries.get(name, {})
        rows.append({
            "name": name, "family": family.of_file(path).name, "status": entry.get("status", "?"),
            "levels": family.level_count(path), "bytes": path.stat().st_size,
            "scales": [ladder.name for ladder in scales if name in ladder.models()],
            "from": entry.get("from"), "base": entry.get("base"),
        })  # fmt: skip
    return rows
