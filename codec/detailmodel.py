"""An RD model with a detail latent: the file, its levels and its exact coding.

A detail model is an `RDModel` (encoder, prior, generator, the global latent's levels and
tables, all as in the model it was trained on) plus a `DetailNet` (codec.detail) and the
integer tables of the detail's table scales. Its quality levels are pairs: level n codes
the global latent at global step `steps[g - 1]` and the detail at gain `k`, for
`(g, k) = pairs[n - 1]`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from codec.detail import DetailConfig, DetailNet, build_scale_tables
from codec.entropy import LevelTables
from codec.generator import ModelConfig, read_model_file, write_model_file
from codec.rdmodel import RDModel, _read_tables

KIND = "rd-detail"


class DetailModel(RDModel):
    """The global RD model's parts, a detail network, and (global level, detail level) pairs."""

    def __init__(
        self,
        config: ModelConfig,
        steps: tuple[float, ...],
        detail: DetailConfig,
        pairs: tuple[tuple[int, int], ...],
    ) -> None:
        super().__init__(config, steps)
        self.detail = DetailNet(detail, self.generator)
        self.pairs = tuple(tuple(p) for p in pairs)
        self.scale_tables: LevelTables | None = None

    def build_tables(self) -> None:
        super().build_tables()
        self.scale_tables = build_scale_tables()

    def fingerprint(self, levels: int | None = None) -> bytes:
        """8 bytes over the global model's fingerprint, the detail weights, pairs and tables."""
        h = hashlib.sha256(super().fingerprint())
        h.update(json.dumps(self.pairs).encode())
        for name, t in sorted(self.detail.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        t = self.scale_tables
        for a in (t.offsets, t.lengths, t.counts):
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
        return h.digest()[:8]


def save_detail(
    base: RDModel,
    net: DetailNet,
    path: str | Path,
    card: dict[str, str] | None = None,
    global_levels: tuple[int, ...] | None = None,
    pairs: tuple[tuple[int, int], ...] | None = None,
    half: bool = False,
) -> None:
    """Write a detail model: `base`'s networks with the global levels `global_levels` of it
    (default: all), `net`, and the level pairs (default: every global level with every
    detail level). Atomic."""
    global_levels = global_levels or tuple(range(1, len(base.steps) + 1))
    steps = tuple(base.step_of(g) for g in global_levels)
    k = net.config.levels
    pairs = pairs or tuple((g, d) for g in range(1, len(steps) + 1) for d in range(1, k + 1))
    model = DetailModel(base.config, steps, net.config, pairs)
    model.encoder.load_state_dict(base.encoder.state_dict())
    model.prior.load_state_dict(base.prior.state_dict())
    model.generator.load_state_dict(base.generator.state_dict())
    model.detail.load_state_dict(net.state_dict())
    model.build_tables()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if "num_batches" not in k}
    if half:
        state = {k: v.half() if v.is_floating_point() and not k.startswith("prior.") else v for k, v in state.items()}
    for lv, t in model.tables.items():
        state.update({f"tables.{lv}.{k}": torch.from_numpy(a) for k, a in t.packed().items()})
    state.update({f"scales.{k}": torch.from_numpy(a) for k, a in model.scale_tables.packed().items()})
    meta = {
        "percodec_model": KIND,
        "config": model.config.to_json(),
        "detail_config": json.dumps(net.config.to_dict()),
        "steps": json.dumps(steps),
        "pairs": json.dumps(pairs),
        "card": json.dumps(card or {}, sort_keys=True),
    }
    write_model_file(path, state, meta)


def load_detail(path: str | Path, device: str | torch.device = "cpu") -> tuple[DetailModel, dict[str, str]]:
    """Load a detail model (eval mode, frozen) with its tables and card."""
    from codec.errors import ModelError

    path = Path(path)
    meta, state = read_model_file(path)
    if meta.get("percodec_model") != KIND:
        raise ModelError(f"{path}: not a percodec detail model")
    model = DetailModel(
        ModelConfig.from_json(meta["config"]),
        tuple(json.loads(meta["steps"])),
        DetailConfig.from_dict(json.loads(meta["detail_config"])),
        tuple(tuple(p) for p in json.loads(meta["pairs"])),
    )
    weights = {k: v.float() for k, v in state.items() if not k.startswith(("tables.", "scales."))}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if "num_batches" not in k]
    if missing or unexpected:
        raise ModelError(f"{path}: weights do not match the config (missing {missing}, unexpected {unexpected})")
    tables = {k: v for k, v in state.items() if k.startswith("tables.")}
    for lv, step in enumerate(model.steps, start=1):
        model.tables[lv] = _read_tables(path, tables, lv, step)
    s = {k.split(".", 1)[1]: v.numpy() for k, v in state.items() if k.startswith("scales.")}
    try:
        model.scale_tables = LevelTables.unpack(1.0, s["offsets"], s["lengths"], s["packed"])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path}: the detail's coding tables are missing or damaged ({exc})") from None
    model.eval().requires_grad_(False).to(device)
    return model, json.loads(meta.get("card", "{}"))
