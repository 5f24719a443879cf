"""Checks on a model file before anything is built from it.

A model file's metadata is typed JSON (`field`), its config must describe a network
(`config_field`), and its weights must be exactly the tensors that network has, every one
finite (`build_checked`): the network is first built on torch's meta device, which allocates
nothing, so a config that lies (size 4096, nz 1e8) costs no memory and a file whose weights
do not fit its config is refused in one line naming the file and what is wrong, never a
"size mismatch" traceback or a model of NaNs that encodes to black.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from codec.defaults import is_int, is_number  # noqa: F401 - the metadata checks' predicates, re-exported
from codec.errors import ModelError

#: Most levels a model may have: a file's header holds its level in one byte.
MAX_LEVELS = 255
_REQUIRED = object()
M = TypeVar("M", bound=nn.Module)


def field(
    path: str | Path,
    meta: dict[str, str],
    key: str,
    check: Callable[[Any], bool],
    want: str,
    default: Any = _REQUIRED,
    label: str | None = None,
) -> Any:
    """Metadata `key` parsed as JSON and passing `check` (`want` says what it must be);
    `default` when absent, or ModelError when it is required. Messages call it `label`
    [metadata 'key']."""
    label = label or f"metadata {key!r}"
    text = meta.get(key)
    if text is None:
        if default is _REQUIRED:
            raise ModelError(f"{path}: its metadata has no {key!r}: not a complete percodec model")
        return default
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise ModelError(f"{path}: {label} is not valid JSON") from None
    try:
        ok = check(value)
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ModelError(f"{path}: {label} must be {want}, not {_short(text)}")
    return value


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def steps_field(path: str | Path, meta: dict[str, str]) -> tuple[float, ...]:
    """The levels' quantisation steps: 1..MAX_LEVELS positive numbers (a step of 0
    made a 10-byte file at 11 dB)."""
    steps = field(path, meta, "steps", lambda v: isinstance(v, list) and 1 <= len(v) <= MAX_LEVELS
                  and all(is_number(s, 1e-4, 1e4) for s in v),
                  f"a list of 1..{MAX_LEVELS} quantisation steps in 1e-4..1e4")  # fmt: skip
    return tuple(float(s) for s in steps)


def card_field(path: str | Path, meta: dict[str, str]) -> dict[str, str]:
    """The model card (a JSON object; {} when absent)."""
    return field(path, meta, "card", lambda v: isinstance(v, dict), "a JSON object", default={})


def config_field(path: str | Path, meta: dict[str, str], key: str, make: Callable[..., Any]) -> Any:
    """A config dataclass built from metadata `key` (a JSON object of its fields); the
    dataclass checks its fields' types and ranges."""
    spec = field(path, meta, key, lambda v: isinstance(v, dict), "a JSON object of config fields")
    try:
        return make(**spec)
    except TypeError as exc:  # unknown or missing fields
        raise ModelError(f"{path}: metadata {key!r} is not a valid config ({exc})") from None
    except ValueError as exc:
        raise ModelError(f"{path}: metadata {key!r}: {exc}") from None


def build_checked(path: str | Path, factory: Callable[[], M], weights: dict[str, torch.Tensor]) -> M:
    """`factory()`'s network with `weights` as its tensors (not copied: the caller gives up
    its own), once they are known to be exactly its tensors (names and shapes, compared on
    the meta device first) and all finite."""
    try:
        with torch.device("meta"):
            probe = factory()
    except (TypeError, ValueError, RuntimeError, OverflowError, ZeroDivisionError) as exc:
        raise ModelError(f"{path}: its config does not describe a network ({exc})") from None
    held = probe.state_dict()
    want = _shapes(held)
    got = _shapes(weights)
    problems = [
        _names("missing", sorted(want.keys() - got.keys())),
        _names("unexpected", sorted(got.keys() - want.keys())),
        _names("wrong shape", [f"{k} {list(got[k])} (config: {list(want[k])})" for k in sorted(want.keys() & got.keys())
                               if want[k] != got[k]]),
    ]  # fmt: skip
    if any(problems):
        raise ModelError(f"{path}: its weights do not match its config: {'; '.join(p for p in problems if p)}")
    for name, t in weights.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ModelError(f"{path}: weight {name} holds NaN or infinity: the model is damaged")
    # The checked meta network itself takes the weights as its tensors: building it a second
    # time for real would draw random weights only to overwrite them (a third of a cold
    # encode's model loading). Buffers no file stores (BatchNorm's step counter) start at zero.
    # The tensors become the network's own (the caller hands over fresh ones), in its dtypes.
    probe.load_state_dict({k: v.to(held[k].dtype) for k, v in weights.items() if k in held}, strict=False, assign=True)
    for m in probe.modules():
        for k, b in m._buffers.items():
            if b is not None and b.is_meta:
                m._buffers[k] = torch.zeros(b.shape, dtype=b.dtype)
    left = [f"{type(m).__name__}.{k}" for m in probe.modules() for k, v in [*vars(m).items(), *m.named_parameters(
        recurse=False)] if isinstance(v, torch.Tensor) and v.is_meta]  # fmt: skip
    if left:  # a tensor kept outside the weights has no storage: a bug in the network's class
        raise RuntimeError(f"{path}: {', '.join(left)} left on the meta device")
    return probe


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    # BatchNorm's step counter plays no part in decoding and is not stored.
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _names(what: str, items: list[str]) -> str:
    if not items:
        return ""
    more = f" and {len(items) - 3} more" if len(items) > 3 else ""
    return f"{what} {', '.join(items[:3])}{more}"
