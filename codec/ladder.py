"""Quality ladders: one `--quality` scale over several rate-distortion models.

A model trained for one rate serves about a factor of two in bytes around it (its levels are
quantisation steps); beyond that a model trained for more bytes does better, because the
latent's width, not the step, limits it (README, `benchmarks/rd_ceiling.py`). A ladder lists
(model, level) rungs in order of bytes, so quality N is the N-th rung whichever model holds
it. A file's header names its model (fingerprint) and that model's level, so files need no
change: the ladder only maps qualities to rungs and back.

A ladder is a JSON file, `{"default": 4, "rungs": [["celeba64", 1], ["celeba64-hi", 2]]}`,
whose rung models are shipped names or paths relative to the file. The shipped model NAME
stands for its ladder when `models/NAME.ladder.json` exists; a path ending in `.ladder.json`
is a ladder too; any other rate-distortion model is a ladder of its own levels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from codec import family
from codec.errors import ModelError
from codec.generator import resolve_model, shipped_models

SUFFIX = ".ladder.json"
#: Longest ladder file read (a scale of 255 rungs with long paths is ~100 KB).
MAX_LADDER_BYTES = 1 << 20
#: A single model's default level (its ladder's default, where it has at least this many).
DEFAULT_LEVEL = 4


@dataclass(frozen=True)
class Rung:
    """Quality level `level` of the model `model` (a shipped name or a path)."""

    model: str
    level: int


@dataclass(frozen=True)
class Ladder:
    """Qualities 1..len(rungs), fewest bytes first; `default` is the quality `encode` uses."""

    name: str
    rungs: tuple[Rung, ...]
    default: int

    def __len__(self) -> int:
        return len(self.rungs)

    def rung(self, quality: int) -> Rung:
        if not 1 <= quality <= len(self.rungs):
            raise ValueError(f"quality {quality} is out of range: {self.name} has qualities 1..{len(self.rungs)}")
        return self.rungs[quality - 1]

    def models(self) -> list[str]:
        """The rung models, each once, in rung order."""
        return list(dict.fromkeys(r.model for r in self.rungs))

    def quality_of(self, model: str, level: int) -> int | None:
        """The quality whose rung is `level` of `model`, or None when no rung is."""
        return next((q for q, r in enumerate(self.rungs, start=1) if r == Rung(model, level)), None)


def ladder_file(model: str | Path) -> Path | None:
    """The ladder file `model` names: a `.ladder.json` path, or a shipped name's ladder."""
    if str(model).endswith(SUFFIX):
        if not Path(model).is_file():
            why = "not a regular file (a device or pipe)" if Path(model).exists() else "no such ladder file"
            raise ModelError(f"{model}: {why}")
        return Path(model)
    if str(model) in shipped_models():
        entry = resources.files("codec.models") / f"{model}{SUFFIX}"
        return Path(str(entry)) if entry.is_file() else None
    return None


def read_ladder(path: Path) -> Ladder:
    """A ladder file, checked: every rung a level its rate-distortion model has."""
    return _read_ladder(path.resolve(), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_ladder(path: Path, mtime_ns: int) -> Ladder:
    # Cached per file state: decoding many files reads the ladder for each one.
    from codec.fileio import read_bytes
    from codec.modelfile import field

    text = read_bytes(path, MAX_LADDER_BYTES, "a ladder file")
    try:
        text = text.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not a ladder file (not UTF-8 text)") from None
    spec = field(path, {"ladder": text}, "ladder", _ladder_ok,
                 '{"default": QUALITY, "rungs": [[MODEL, LEVEL], ...]} with whole-number levels',
                 label="not a ladder file: it")  # fmt: skip
    pairs = [(m, lv) for m, lv in spec["rungs"]]
    default = spec["default"]
    rungs = tuple(Rung(_rung_model(path, m), lv) for m, lv in pairs)
    levels = {m: family.level_count(resolve_model(m)) for m in {r.model for r in rungs}}
    for r in rungs:
        if levels[r.model] is None:
            raise ModelError(f"{path}: {r.model} is a GAN-only generator, which has no levels")
        if not 1 <= r.level <= levels[r.model]:
            raise ModelError(f"{path}: {r.model} has no level {r.level}")
    if not rungs or not 1 <= default <= len(rungs):
        raise ModelError(f"{path}: the default quality {default} is not one of its {len(rungs)} rungs")
    name = path.name.removesuffix(SUFFIX)
    return Ladder(name, rungs, default)


def _ladder_ok(spec: object) -> bool:
    from codec.modelfile import MAX_LEVELS, is_int

    if not isinstance(spec, dict) or not isinstance(spec.get("rungs"), list) or "default" not in spec:
        return False
    rungs = spec["rungs"]
    good = all(isinstance(r, list) and len(r) == 2 and _model_name_ok(r[0]) and is_int(r[1], 1, MAX_LEVELS)
               for r in rungs)  # fmt: skip
    return good and is_int(spec["default"], 1, MAX_LEVELS)


def _model_name_ok(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= 4096 and "\0" not in name


def _rung_model(ladder: Path, model: str) -> str:
    """A rung's model: a shipped name as it is, a path relative to the ladder file."""
    if model in shipped_models():
        return model
    return str((ladder.parent / model).resolve())


def ladder_for(model: str | Path) -> Ladder | None:
    """The quality ladder `--model` stands for; None for a GAN-only model."""
    path = ladder_file(model)
    if path is not None:
        return read_ladder(path)
    file = resolve_model(model)
    n = family.level_count(file)
    if n is None:  # a GAN-only generator
        return None
    return Ladder(str(model), tuple(Rung(str(model), lv) for lv in range(1, n + 1)), min(DEFAULT_LEVEL, n))


def shipped_ladders() -> list[Ladder]:
    """Every ladder shipped with the package (models/*.ladder.json)."""
    return [read_ladder(p) for name in shipped_models() if (p := ladder_file(name)) is not None]


def framing_of(model: str | Path) -> np.ndarray | None:
    """The framing `model` finds faces with (`codec.align`): its own file's; else, for a model
    that is a rung of a shipped scale (the detail models ship without one), the scale's, as
    every rung of a scale frames its faces alike (`zoo.resolve(model).base`); None: it codes centre crops."""
    from codec import align

    path = resolve_model(model)
    own = align.read_framing(path)
    if own is not None:
        return own
    for ladder in shipped_ladders():
        if any(resolve_model(r.model).resolve() == path.resolve() for r in ladder.rungs):
            return align.read_framing(resolve_model(ladder.rungs[0].model))
    return None
