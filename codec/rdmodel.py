"""The rate-distortion model: encoder E, learned prior and DCGAN generator G, in one file.

A model file (safetensors, no pickle) holds the three networks under the prefixes
`encoder.`, `prior.` and `generator.`, the integer coding tables of every level
(`tables.<level>.offsets|lengths|packed`, docs/FORMAT.md), and metadata: the `ModelConfig`, the quality
levels' quantisation steps and a model card. The fingerprint covers what decoding needs
(generator weights and coding tables), so a file made for another generator or prior is
refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from codec.container import OVERHEAD_V2
from codec.encoder import Encoder
from codec.entropy import LevelTables, build_tables
from codec.errors import ModelError
from codec.generator import Generator, ModelConfig, fingerprint, read_model_file, write_model_file
from codec.prior import FactorizedPrior

KIND = "rd"

#: Quantisation step of each level (1 = coarsest). Frozen once a model ships: a
#: file stores its level, and the level's tables decode it. Levels added to a shipped model
#: (`add_levels`) take the next numbers, whatever their step.
DEFAULT_STEP_SIZES = (2.0, 1.6, 1.25, 1.0, 0.8, 0.63, 0.5, 0.4)


class RDModel(nn.Module):
    """E, prior and G together; `step_sizes[level - 1]` is the quantisation step size of a level."""

    def __init__(
        self, config: ModelConfig, step_sizes: tuple[float, ...] = DEFAULT_STEP_SIZES, released: tuple[int, ...] = ()
    ) -> None:
        super().__init__()
        self.config = config
        self.step_sizes = tuple(step_sizes)
        self.released = tuple(released)  # level counts it shipped with before levels were added
        self.encoder = Encoder(config)
        self.prior = FactorizedPrior(config.nz)
        self.generator = Generator(config)
        self.tables: dict[int, LevelTables] = {}

    def build_tables(self) -> None:
        """Integer coding tables of every level from the prior as it is now."""
        self.tables = {lv: build_tables(self.prior, s) for lv, s in enumerate(self.step_sizes, start=1)}

    def step_of(self, level: int) -> float:
        if not 1 <= level <= len(self.step_sizes):
            raise ValueError(f"level {level} is out of range: this model has levels 1..{len(self.step_sizes)}")
        return self.step_sizes[level - 1]

    def level_steps(self, levels: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        """Each row's quantisation step (B, 1), for rows coded at several levels at once."""
        return torch.tensor([[self.step_of(lv)] for lv in levels], device=device)

    @torch.no_grad()
    def decode_symbols(self, symbols: torch.Tensor, levels: Sequence[int]) -> torch.Tensor:
        """Symbols (B, nz), row i coded at quality `levels[i]` -> images (B, C, H, W) in [-1, 1]:
        what `decode` regenerates (it decodes one file at a time; a batch may differ from that
        in the last float bit)."""
        return self.generator(self.prior.dequantize(symbols, self.level_steps(levels, symbols.device)))

    # --- what the rate-distortion backend codes with (codec.family.CodingModel) --------------

    @property
    def level_count(self) -> int:
        return len(self.step_sizes)

    def has_level(self, level: int) -> bool:
        return level in self.tables

    def byte_order(self) -> list[int]:
        """Its levels from the fewest bytes to the most: by step, coarsest first (levels are
        numbered as they were added: celeba64's 9-11 are coarser than its 1-8)."""
        return sorted(range(1, len(self.step_sizes) + 1), key=lambda lv: -self.step_sizes[lv - 1])

    def search(
        self,
        x: torch.Tensor,
        levels: Sequence[int],
        loss_fn: nn.Module,
        steps: int,
        on_step: Callable[[int, int], None] | None = None,
        budget_bits: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Each image's symbols (nz,) at its level: the encoder's, refined (inversion.refine)."""
        from codec.inversion import refine

        return list(refine(self, x, loss_fn, levels, steps, on_step=on_step, budget_bits=budget_bits).cpu())

    def start_bytes(
        self, x: torch.Tensor, level: int, cache: dict, cap: float = float("inf")
    ) -> tuple[list[torch.Tensor], np.ndarray]:
        """The encoder's own symbols of each image at `level`, and their file sizes at the
        ideal code length (never above the real ones). `cache` keeps the encoder's output
        across levels of one batch; `cap` (the byte budget) is for models that can skip work
        over it."""
        if "y" not in cache:
            with torch.no_grad():
                cache["y"] = self.encoder(x)
        table = self.tables[level]
        sym = table.clamp(self.prior.quantize(cache["y"], table.step)).cpu()
        return list(sym), OVERHEAD_V2 + table.bits(sym).numpy() / 8

    def pack(self, code: torch.Tensor, level: int) -> bytes:
        """One image's payload."""
        return self.tables[level].encode(code.numpy())

    def unpack(self, payload: bytes, level: int) -> torch.Tensor:
        """The inverse of `pack` (CodingError for a payload it never writes)."""
        return torch.from_numpy(self.tables[level].decode(payload))

    def image(self, code: torch.Tensor, level: int) -> torch.Tensor:
        """The decoded image (1, C, H, W) in [-1, 1], as `decode` makes it."""
        return self.decode_symbols(code[None], [level])

    def ideal_bytes(self, y_hat: torch.Tensor, step: torch.Tensor | float) -> torch.Tensor:
        """File size of each rounded latent (B, nz) at its ideal code length, header included."""
        return OVERHEAD_V2 + self.prior.bits(y_hat, step) / 8

    def fingerprint(self, levels: int | None = None, generator: bytes | None = None) -> bytes:
        """8 bytes over the generator's fingerprint (`generator`, where the caller has it)
        and every level's tables (or those of levels 1..`levels`)."""
        h = hashlib.sha256(fingerprint(self.generator) if generator is None else generator)
        for lv, t in sorted(self.tables.items()):
            if levels is not None and lv > levels:
                break
            h.update(f"{lv}:{t.step!r}".encode())
            for a in (t.offsets, t.lengths, t.counts):
                h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())  # dtype-independent
        return h.digest()[:8]

    def fingerprints(self) -> list[bytes]:
        """Every fingerprint this model answers to: its own, then those it had before levels
        were added. Each is computed from the tables it holds now, so a file made before
        decodes here only if the levels it can use are unchanged."""
        g = fingerprint(self.generator)  # hashing every weight once, not once per fingerprint
        return [self.fingerprint(generator=g), *(self.fingerprint(n, g) for n in self.released)]


def warm_start(model: RDModel, source: RDModel) -> None:
    """Copy `source`'s trained weights into `model`, which may have a larger latent.

    Everything but the latent's width must match. The generator's weights from extra latent
    dimensions start at zero, so the warm-started model decodes exactly as `source` did; the
    encoder's rows for them keep their random initialisation, so the extra dimensions vary
    from image to image from the first step and the generator's gradient can put them to
    use. (Starting them silent instead - zero encoder rows, narrow densities - was tried:
    the rate term held them at zero and they stayed unused.) Their densities start around
    zero at about the spread of the fresh encoder rows' outputs (std ~0.5 on faces).
    """
    a, b = source.config, model.config
    if (a.ngf, a.ndf, a.nc, a.nz) == (b.ngf, b.ndf, b.nc, b.nz) and a.size < b.size:
        _warm_start_larger(model, source)
        return
    if (a.ngf, a.ndf, a.nc, a.size) != (b.ngf, b.ndf, b.nc, b.size) or a.nz > b.nz:
        raise ValueError(f"cannot start a {b} model from a {a} one: only the latent, or the image side, may grow")
    with torch.no_grad():
        model.prior.load_state_dict(FactorizedPrior(b.nz, init_scale=0.5).state_dict())
        for bias in model.prior.biases:
            bias.zero_()  # each new density's median on its centre (0)
        model.generator.main[0].weight.zero_()
        theirs = dict([*source.named_parameters(), *source.named_buffers()])
        for name, dst in [*model.named_parameters(), *model.named_buffers()]:
            src = theirs[name]
            dst[tuple(slice(0, n) for n in src.shape)] = src


def _by_side(net: nn.Module, side: int) -> dict[int, list[nn.Module]]:
    """A DCGAN-shaped network's layers grouped by the side of the maps they put out: each
    (transposed) convolution with the BatchNorm after it (1: the encoder's latent)."""
    out: dict[int, list[nn.Module]] = {}
    for layer in net.main:
        if isinstance(layer, nn.Conv2d):
            side = side // 2 if layer.stride[0] == 2 else 1
        elif isinstance(layer, nn.ConvTranspose2d):
            side = side * 2 if layer.stride[0] == 2 else 4
        else:
            if not isinstance(layer, nn.BatchNorm2d):
                continue
        out.setdefault(side, []).append(layer)
    return out


@torch.no_grad()
def _warm_start_larger(model: RDModel, source: RDModel) -> None:
    """Warm-start a model for a larger image side from a trained smaller one (same widths:
    the larger has twice the channels at each side). Its layers that put out the same side
    as one of the source's (the generator's stages up to the source's last hidden side, the
    encoder's from half the source's side down, the latent) take the source's weights in
    their first channels, and the weights from their new input channels into those are
    zero: the source's channels compute exactly what they did in the source, given the
    same inputs. The rest (the new channels, the stages at the new sides, the generator's
    output and the encoder's first stages, which see a larger image) start fresh. The prior
    is the source's."""
    pairs = []
    for name, side in (("generator", 1), ("encoder", source.config.size)):
        theirs = _by_side(getattr(source, name), side)
        ours = _by_side(getattr(model, name), side * model.config.size // source.config.size if side > 1 else 1)
        keep = [s for s in theirs if s in ours and not (name == "generator" and s == source.config.size)]
        keep = [s for s in keep if not (name == "encoder" and s == source.config.size // 2)]  # took the image
        pairs += [(d, t) for s in keep for d, t in zip(ours[s], theirs[s], strict=True)]
    for dst, src in pairs:
        for pname, p in [*src.named_parameters(recurse=False), *src.named_buffers(recurse=False)]:
            q = getattr(dst, pname)
            if q.dim() == 4:  # conv weights: zero from new inputs into the kept outputs
                outputs = 0 if isinstance(dst, nn.Conv2d) else 1  # ConvTranspose2d: (in, out, k, k)
                index = [slice(None)] * 4
                index[outputs] = slice(0, p.shape[outputs])
                q[tuple(index)] = 0
            q[tuple(slice(0, n) for n in p.shape)] = p
    model.prior.load_state_dict(source.prior.state_dict())


@torch.no_grad()
def steps_for_bytes(model: RDModel, images: torch.Tensor, targets: list[float]) -> tuple[float, ...]:
    """The quantisation step at which the encoder's latents of `images` (N, C, H, W) in
    [-1, 1] code to each target mean file size (ideal code length + header), found by
    bisection on log(step) and rounded to three significant figures: how a model's quality
    levels are spaced before it ships."""
    y = model.encoder(images)

    def mean_bytes(step: float) -> float:
        return model.ideal_bytes(model.prior.rounded(y, step), step).mean().item()

    steps = []
    for target in targets:
        lo, hi = np.log(1e-3), np.log(100.0)  # bytes fall as the step grows
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if mean_bytes(float(np.exp(mid))) > target else (lo, mid)
        steps.append(float(f"{np.exp((lo + hi) / 2):.3g}"))
    return tuple(steps)


def save_rd(model: RDModel, path: str | Path, card: dict[str, str] | None = None, half: bool = False) -> None:
    """Write the model (tables built now) atomically. half=True stores the encoder's and
    generator's weights as float16 (the fingerprint is that of the rounded weights, which
    every decoder loads); the prior and its centres stay float32, being tiny and exact."""
    meta = {"percodec_model": KIND, **file_meta(model), "card": json.dumps(card or {}, sort_keys=True)}
    if model.released:
        meta["released"] = json.dumps(model.released)
    write_model_file(path, file_state(model, half), meta)


def file_state(model: RDModel, half: bool = False) -> dict[str, torch.Tensor]:
    """The model's tensors as its file holds them (a detail model's file holds them too):
    the networks, float16 but for the prior where `half`, and every level's packed tables,
    built now."""
    model.build_tables()
    tables = {f"tables.{lv}.{k}": torch.from_numpy(a) for lv, t in model.tables.items() for k, a in t.packed().items()}
    return {**half_state(model, half), **tables}


def half_state(module: nn.Module, half: bool, prefix: str = "") -> dict[str, torch.Tensor]:
    """A module's weights to store (BatchNorm's step counter plays no part in decoding),
    float16 where `half`, but for the prior's, being tiny and exact."""
    state = module.state_dict()
    state = {prefix + k: v.detach().cpu().contiguous() for k, v in state.items() if "num_batches" not in k}
    if half:
        state = {k: v.half() if v.is_floating_point() and not k.startswith("prior.") else v for k, v in state.items()}
    return state


def file_meta(model: RDModel) -> dict[str, str]:
    """The metadata that rebuilds the model's networks and levels (`from_file`)."""
    return {"config": model.config.to_json(), "steps": json.dumps(model.step_sizes)}


def level_count(path: str | Path, meta: dict[str, str]) -> int:
    """How many levels an RD model file has, from its metadata alone."""
    from codec.modelfile import steps_field

    return len(steps_field(path, meta))


def load_rd(path: str | Path, device: str | torch.device = "cpu") -> tuple[RDModel, dict[str, str]]:
    """Load an RD model (eval mode, frozen) with its tables and card."""
    from codec.modelfile import card_field

    path = Path(path)
    meta, state = read_model_file(path)
    if meta.get("percodec_model") != KIND:
        raise ModelError(f"{path}: not a percodec rate-distortion model")
    model = from_file(path, meta, state)
    model.eval().requires_grad_(False).to(device)
    return model, card_field(path, meta)


def from_file(path: Path, meta: dict[str, str], state: dict[str, torch.Tensor]) -> RDModel:
    """The RD model that a file's metadata and tensors (its networks' and tables', no other)
    describe, checked (codec.modelfile)."""
    from codec.modelfile import MAX_LEVELS, build_checked, config_field, field, is_int, steps_field

    config = config_field(path, meta, "config", ModelConfig)
    steps = steps_field(path, meta)
    released = field(path, meta, "released", lambda v: isinstance(v, list) and all(is_int(n, 1, MAX_LEVELS) for n in v),
                     "a list of level counts", default=[])  # fmt: skip
    tables = {k: v for k, v in state.items() if k.startswith("tables.")}
    weights = {k: v.float() for k, v in state.items() if not k.startswith("tables.")}
    model = build_checked(path, lambda: RDModel(config, steps, tuple(released)), weights)
    for lv, step in enumerate(model.step_sizes, start=1):
        model.tables[lv] = _read_tables(path, tables, lv, step)
    return model


def add_levels(path: str | Path, steps: list[float]) -> RDModel:
    """Give a model file more levels (numbered after its last) without breaking a
    file made with it: weights, other metadata and the old levels' tables stay as they
    are; the model gets a new fingerprint and keeps answering to the old one
    (`RDModel.fingerprints`). Rewrites the file atomically; returns the new model."""
    path = Path(path)
    model, _ = load_rd(path)
    old = model.fingerprint()
    meta, state = read_model_file(path)
    grown = RDModel(model.config, (*model.step_sizes, *steps), (*model.released, len(model.step_sizes)))
    grown.load_state_dict(model.state_dict())
    grown.build_tables()
    if grown.fingerprint(len(model.step_sizes)) != old:
        raise ModelError(f"{path}: its tables do not rebuild exactly from its prior; levels cannot be added")
    for lv, t in grown.tables.items():
        state.update({f"tables.{lv}.{k}": torch.from_numpy(a) for k, a in t.packed().items()})
    meta.update(steps=json.dumps(grown.step_sizes), released=json.dumps(grown.released))
    write_model_file(path, state, meta)
    return load_rd(path)[0]


def _read_tables(path: Path, tables: dict[str, torch.Tensor], lv: int, step: float) -> LevelTables:
    """A level's tables: packed (what save_rd writes) or, in older files, padded int32 counts;
    the same integers either way, so the fingerprint and every file made with it stay valid."""
    part = {k.rsplit(".", 1)[1]: v.numpy() for k, v in tables.items() if k.startswith(f"tables.{lv}.")}
    try:
        if "packed" in part:
            return LevelTables.unpack(step, part["offsets"], part["lengths"], part["packed"])
        return LevelTables(step, part["offsets"].astype(np.int64), part["lengths"].astype(np.int64), part["counts"])
    except KeyError:
        raise ModelError(f"{path}: coding tables of level {lv} are missing") from None
    except ValueError as exc:
        raise ModelError(f"{path}: coding tables of level {lv} are damaged ({exc})") from None
