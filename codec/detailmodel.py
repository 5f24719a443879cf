"""An RD model with a detail latent: the file, its levels and its exact coding.

A detail model holds an `RDModel` (`base`: encoder, prior, generator and the global levels'
tables, as in the model it was trained on, with the global levels it uses), a `DetailNet`
(codec.detail) and the integer tables of the detail's table scales. Its levels are
pairs: level n codes the global latent at the base's level g and the detail at gain k, for
`(g, k) = pairs[n - 1]`. Its file holds the base's tensors under their names in an RD
model file, the detail network's under `detail.`, and the scale tables under `scales.`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec import rdmodel
from codec.container import OVERHEAD_V2
from codec.detail import (
    DetailConfig,
    DetailNet,
    bits,
    build_scale_tables,
    features,
    float64_generator,
    quantised_mean,
    render,
    round_around,
    scale_index,
)
from codec.entropy import CodingError, LevelTables, finish, new_coder, open_payload
from codec.generator import Generator, ModelConfig, read_model_file, write_model_file
from codec.inversion import refine_within_rate
from codec.rdmodel import RDModel

KIND = "rd-detail"
#: A model name a file may name as its base (no folders: it is looked up beside the file).
NAME = r"[a-z0-9][a-z0-9._-]{0,63}"
#: Adam's step on the global latent (the detail's: 4x). On 16 CelebA valid faces at the
#: finest trained level, 12 steps of ms-ssim=1,mse=3,identity=0.5 within the start's rate:
#: 0.05 and 0.01 lost PSNR (the rounding of thousands of detail symbols moved at once),
#: 0.002 gained 0.07 dB. The encoders' start is close to what this search can find.
SEARCH_LR = 0.002


@dataclass(frozen=True)
class DetailCode:
    """What one file holds: the global latent's symbols (nz,) and the detail's (C, h, w),
    with the side information they were rounded with (quantised means, table rows), which
    the global symbols determine."""

    global_: np.ndarray
    detail: np.ndarray
    mean: np.ndarray
    rows: np.ndarray
    #: G's float64 features at side/4 that the side information came from (not stored in
    #: the file): the image reuses them instead of running those layers again.
    features: torch.Tensor | None = field(default=None, repr=False, compare=False)


class DetailModel(torch.nn.Module):
    """A global RD model (`base`), a detail network, and (global level, detail level) pairs."""

    def __init__(
        self, base: RDModel, detail: DetailNet, pairs: tuple[tuple[int, int], ...], lambdas: tuple[float, ...] = ()
    ) -> None:
        super().__init__()
        self.base = base
        self.detail = detail
        self.pairs = tuple(tuple(p) for p in pairs)
        self.lambdas = tuple(lambdas)  # the rate weight each detail level was trained at
        self.scale_tables: LevelTables | None = None
        object.__setattr__(self, "_exact", None)  # float64 copies (not a submodule)
        object.__setattr__(self, "_drawing", None)  # channels-last copies for `image`

    @property
    def config(self) -> ModelConfig:
        return self.base.config

    @property
    def level_count(self) -> int:
        return len(self.pairs)

    def byte_order(self) -> list[int]:
        """Its levels from the fewest bytes to the most: as numbered (picked so when shipped)."""
        return list(range(1, len(self.pairs) + 1))

    def pair(self, level: int) -> tuple[int, int]:
        """A level's (global level, detail level)."""
        if not 1 <= level <= len(self.pairs):
            raise ValueError(f"level {level} is out of range: this model has levels 1..{len(self.pairs)}")
        return self.pairs[level - 1]

    def global_step(self, level: int) -> float:
        return self.base.step_of(self.pair(level)[0])

    def global_table(self, level: int) -> LevelTables:
        return self.base.tables[self.pair(level)[0]]

    # --- exact side information: what encoder and decoder must agree on ---------------------

    def _float64(self) -> tuple[Generator, torch.nn.Module, torch.Tensor, torch.Tensor]:
        if self._exact is None:
            g = float64_generator(self.base.generator)
            ctx = copy.deepcopy(self.detail.context).double().cpu().eval()
            gains = self.detail.log_gain.detach().double().cpu().exp()
            object.__setattr__(self, "_exact", (g, ctx, gains, self.base.prior.centre.detach().double().cpu()))
        return self._exact

    def side_info(self, global_: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """The detail's quantised means and table rows (C, h, w) given the global symbols,
        computed in float64 on one image, as every decoder does (see codec.detail)."""
        return self._side(global_, level)[:2]

    @torch.no_grad()
    def _side(self, global_: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
        """side_info, and the float64 features it was computed from."""
        g, ctx, gains, centre = self._float64()
        step = self.global_step(level)
        z = torch.from_numpy(np.asarray(global_, dtype=np.float64))[None] * step + centre
        f = features(g, z)
        mu, s = ctx(f).chunk(2, dim=1)
        gain = gains[self.pair(level)[1] - 1][None, :, None, None]
        sigma = torch.nn.functional.softplus(s) * gain + 1e-3
        return quantised_mean((mu * gain)[0].numpy()), scale_index(sigma[0].numpy()), f

    def symbols(self, global_: np.ndarray, y: np.ndarray, level: int) -> DetailCode:
        """The file's symbols for global symbols and a gained detail latent y (C, h, w):
        y rounded around the quantised means, clamped into its tables."""
        mu_q, rows, f = self._side(global_, level)
        t = self.scale_tables
        lo = t.offsets[rows]
        k = np.clip(np.rint(y - mu_q).astype(np.int64), lo, lo + t.lengths[rows] - 1)
        return DetailCode(np.asarray(global_, dtype=np.int64), k, mu_q, rows, f)

    def has_level(self, level: int) -> bool:
        return 1 <= level <= len(self.pairs)

    def pack(self, code: DetailCode, level: int) -> bytes:
        """One payload: the detail's symbols under the global ones (decoded first)."""
        coder = new_coder()
        self.scale_tables.push_rows(coder, code.detail, code.rows)
        self.global_table(level).push(coder, code.global_)
        return finish(coder)

    def unpack(self, payload: bytes, level: int) -> DetailCode:
        """The inverse of `pack`; CodingError unless the payload is exactly one file's."""
        coder = open_payload(payload)
        global_ = self.global_table(level).pop(coder)
        mean, rows, f = self._side(global_, level)
        detail = self.scale_tables.pop_rows(coder, rows)
        if not coder.is_empty():
            raise CodingError("payload holds more data than one file's latents")
        return DetailCode(global_, detail, mean, rows, f)

    def _drawers(self) -> tuple[Generator, DetailNet]:
        # The image's layers in channels-last memory: their convolutions, transposed ones
        # above all, took 1.25x as long in PyTorch's default layout on this CPU (2.2 ms
        # against 2.7 for one image).
        if self._drawing is None:
            cl = torch.channels_last
            g, d = (copy.deepcopy(m).eval().to(memory_format=cl) for m in (self.base.generator, self.detail))
            object.__setattr__(self, "_drawing", (g, d))
        return self._drawing

    @torch.no_grad()
    def image(self, code: DetailCode, level: int) -> torch.Tensor:
        """The decoded image (1, C, H, W) in [-1, 1]: what `decode` shows and what the
        encoder reports, so both call this, one image at a time."""
        g, k = self.pair(level)
        dev, (gen, det) = self.base.prior.centre.device, self._drawers()
        if code.features is not None:
            f = code.features.to(dev, torch.float32)
        else:
            z = self.base.prior.dequantize(torch.from_numpy(code.global_)[None].to(dev), self.base.step_of(g))
            f = features(gen, z)
        gain = det.gains(torch.tensor([k], device=dev))
        y = torch.from_numpy(code.mean + code.detail).float()[None].to(dev) / gain
        cl = torch.channels_last
        return render(gen, f.contiguous(memory_format=cl), det.additions(y.contiguous(memory_format=cl))).contiguous()

    def build_tables(self) -> None:
        self.base.build_tables()
        self.scale_tables = build_scale_tables()

    # --- encode-time search over both latents -----------------------------------------------

    def search(
        self,
        x: torch.Tensor,
        levels: Sequence[int],
        loss_fn: torch.nn.Module,
        steps: int,
        on_step: Callable[[int, int], None] | None = None,
        budget_bits: torch.Tensor | None = None,
        lr: float = SEARCH_LR,
    ) -> list[DetailCode]:
        """Start from the encoders' latents (global and detail) and refine both under
        `loss_fn` + the level's rate weight x rate, on the rounded latents (straight-through),
        with a penalty on any rate above the start's - or above `budget_bits` (B,) where a
        row's budget is larger. Each row's best iterate within that rate wins (the start
        counts), and is then rounded exactly as the decoder will (`symbols`)."""
        s = _Search(self, x, levels)
        if steps:
            s.refine(loss_fn, steps, lr, on_step, budget_bits)
        return [s.code(i) for i in range(len(x))]

    def start_bytes(
        self, x: torch.Tensor, level: int, cache: dict, cap: float = float("inf")
    ) -> tuple[Sequence[DetailCode], np.ndarray]:
        """The encoders' own codes of each image at `level` (each made when read: the exact
        side information costs a float64 pass per image) and an estimate of their file sizes
        a little under the real ones (the rate at the unquantised means and scales). Where no
        image's global latent alone fits `cap`, that is the estimate, and no detail is run."""
        if "y" not in cache:
            with torch.no_grad():
                cache["y"] = self.base.encoder(x)
        table = self.global_table(level)
        sym = table.clamp(self.base.prior.quantize(cache["y"], table.step)).cpu()
        alone = OVERHEAD_V2 + table.bits(sym).numpy() / 8
        if alone.min() > cap:
            return [], alone
        # the work that depends only on the global level is shared by its levels (a cap
        # search tries several levels of one global level in turn)
        g = self.pair(level)[0]
        if ("start", g) not in cache:
            cache["start", g] = _Start(self, x, g, cache["y"])
        start = cache["start", g]
        s = _Search(self, x, [level] * len(x), cache["y"], start.analysed)
        return _LazyCodes(s), OVERHEAD_V2 + start.bits(s.gain).numpy() / 8 * 0.97

    def fingerprints(self) -> list[bytes]:
        """Every fingerprint this model answers to: its own (levels are never added to one)."""
        return [self.fingerprint()]

    def fingerprint(self) -> bytes:
        """8 bytes over the global model's fingerprint, the detail weights, pairs and tables."""
        h = hashlib.sha256(self.base.fingerprint())
        h.update(json.dumps(self.pairs).encode())
        for name, t in sorted(self.detail.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        t = self.scale_tables
        for a in (t.offsets, t.lengths, t.counts):
            h.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
        return h.digest()[:8]


def every_pair(global_levels: int, detail_levels: int) -> tuple[tuple[int, int], ...]:
    """Every (global level, detail level) pair, 1-based: what an exported model holds and
    what its levels are picked among."""
    return tuple((g, d) for g in range(1, global_levels + 1) for d in range(1, detail_levels + 1))


def save_detail(
    base: RDModel,
    net: DetailNet,
    path: str | Path,
    card: dict[str, str] | None = None,
    global_levels: tuple[int, ...] | None = None,
    pairs: tuple[tuple[int, int], ...] | None = None,
    half: bool = False,
    lambdas: tuple[float, ...] = (),
) -> None:
    """Write a detail model: `base`'s networks with the global levels `global_levels` of it
    (default: all), `net`, and the level pairs (default: every global level with every
    detail level). Atomic."""
    global_levels = global_levels or tuple(range(1, len(base.step_sizes) + 1))
    rd = RDModel(base.config, tuple(base.step_of(g) for g in global_levels))
    rd.load_state_dict(base.state_dict())
    model = DetailModel(rd, net, pairs or every_pair(len(global_levels), net.config.levels), lambdas)
    model.build_tables()
    state = {**rdmodel.file_state(rd, half), **rdmodel.half_state(model.detail, half, "detail.")}
    state.update({f"scales.{k}": torch.from_numpy(a) for k, a in model.scale_tables.packed().items()})
    meta = {
        "percodec_model": KIND,
        **rdmodel.file_meta(rd),
        "detail_config": json.dumps(net.config.to_dict()),
        "pairs": json.dumps(model.pairs),
        "lambdas": json.dumps(model.lambdas),
        "card": json.dumps(card or {}, sort_keys=True),
    }
    write_model_file(path, state, meta)


def level_count(path: str | Path, meta: dict[str, str]) -> int:
    """How many levels a detail model file has, from its metadata alone."""
    from codec.modelfile import MAX_LEVELS, field

    return len(field(path, meta, "pairs", lambda v: isinstance(v, list) and len(v) <= MAX_LEVELS,
                     f"a list of at most {MAX_LEVELS} level pairs"))  # fmt: skip


def load_detail(path: str | Path, device: str | torch.device = "cpu") -> tuple[DetailModel, dict[str, str]]:
    """Load a detail model (eval mode, frozen) with its tables and card."""
    from codec.errors import ModelError
    from codec.modelfile import MAX_LEVELS, build_checked, card_field, config_field, field, is_int, is_number

    path = Path(path)
    meta, state = read_model_file(path)
    if meta.get("percodec_model") != KIND:
        raise ModelError(f"{path}: not a percodec detail model")
    if "base_model" in meta:  # the base is another file (share_base)
        base = _shared_base(path, meta)
    else:
        held = {k: v for k, v in state.items() if not k.startswith(("detail.", "scales."))}
        base = rdmodel.from_file(path, meta, held)
    detail = config_field(path, meta, "detail_config", DetailConfig)
    pairs = field(path, meta, "pairs", lambda v: isinstance(v, list) and 1 <= len(v) <= MAX_LEVELS and all(
        isinstance(p, list) and len(p) == 2 and is_int(p[0], 1, len(base.step_sizes)) and is_int(p[1], 1, detail.levels)
        for p in v), f"a list of 1..{MAX_LEVELS} (global level, detail level) pairs of its levels")  # fmt: skip
    lambdas = field(path, meta, "lambdas", lambda v: isinstance(v, list) and all(is_number(x, 0, 1e6) for x in v),
                    "a list of rate weights", default=[])  # fmt: skip
    weights = {k: v.float() for k, v in state.items() if k.startswith("detail.")}
    # under the file's names (`detail.`), so that a mismatch is reported as the file has it
    net = build_checked(path, lambda: torch.nn.ModuleDict({"detail": DetailNet(detail, base.generator)}), weights)
    model = DetailModel(base, net["detail"], tuple(tuple(p) for p in pairs), tuple(lambdas))
    s = {k.split(".", 1)[1]: v.numpy() for k, v in state.items() if k.startswith("scales.")}
    try:
        model.scale_tables = LevelTables.unpack(1.0, s["offsets"], s["lengths"], s["packed"])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{path}: the detail's coding tables are missing or damaged ({exc})") from None
    model.eval().requires_grad_(False).to(device)
    return model, card_field(path, meta)


# --- a base held once: a detail model file may name the RD model file it builds on -------------


def base_file(path: Path, name: str) -> Path:
    """The RD model file a detail model file names: beside it, else a shipped model."""
    from codec.errors import ModelError
    from codec.generator import shipped_models

    beside = path.parent / f"{name}.safetensors"
    if beside.is_file():
        return beside
    if name in shipped_models():
        return shipped_models()[name]
    raise ModelError(f"{path} builds on the RD model {name}: no {beside.name} beside it, and no shipped model {name}")


def _shared_base(path: Path, meta: dict[str, str]) -> RDModel:
    """The base a file names (`base_model`, `base_fingerprint`, `base_levels`): that RD model
    file, checked to be the one the detail was made on, cut to the levels it uses, exactly
    the base the file would otherwise hold (the same weights, steps and tables)."""
    from codec import zoo
    from codec.errors import ModelError
    from codec.modelfile import MAX_LEVELS, build_checked, config_field, field, is_int, steps_field

    name = field(path, meta, "base_model", lambda v: isinstance(v, str) and re.fullmatch(NAME, v) is not None,
                 "a model name")  # fmt: skip
    fp = field(path, meta, "base_fingerprint", lambda v: isinstance(v, str) and re.fullmatch("[0-9a-f]{16}", v)
               is not None, "16 hex digits")  # fmt: skip
    levels = field(path, meta, "base_levels", lambda v: isinstance(v, list) and 1 <= len(v) <= MAX_LEVELS and all(
        is_int(g, 1, MAX_LEVELS) for g in v), f"a list of 1..{MAX_LEVELS} levels")  # fmt: skip
    file = base_file(path, name)
    try:  # through the model cache: an encode that loads the detail model has loaded its base as a rung already
        shared, _ = zoo.load_model(file)
    except ModelError as exc:
        raise ModelError(f"{path} builds on the RD model {name}, which cannot be loaded: {exc}") from None
    if not isinstance(shared, RDModel):
        raise ModelError(f"{path} builds on the RD model {name}, which cannot be loaded: {file}: not a percodec "
                         "rate-distortion model")  # fmt: skip
    if not zoo.answers_to(file, bytes.fromhex(fp)):
        raise ModelError(f"{path} builds on the RD model {name} {fp}, and the {name} found is another "
                         f"({shared.fingerprint().hex()})")  # fmt: skip
    if max(levels) > shared.level_count:
        raise ModelError(f"{path}: its base levels {levels} are not all levels of {name}")
    config = config_field(path, meta, "config", ModelConfig)
    steps = tuple(shared.step_of(g) for g in levels)
    if config != shared.config or steps != tuple(steps_field(path, meta)):
        raise ModelError(f"{path}: its config or steps do not match its base {name}'s levels {levels}")
    weights = {k: v.clone() for k, v in shared.state_dict().items()}  # the cached model's own stay its own
    base = build_checked(file, lambda: RDModel(shared.config, steps), weights)
    base.tables = {i: shared.tables[g] for i, g in enumerate(levels, start=1)}
    return base


def share_base(path: str | Path, name: str) -> int:
    """Rewrite a detail model file to name its base, the RD model file `name` beside it (or
    shipped), instead of holding the base's networks and tables: the same model, the same
    fingerprint, every file made with it still decodes. Refused unless the named file holds
    exactly its base's weights and its global levels' steps. Returns the bytes saved."""
    from codec.errors import ModelError

    if not re.fullmatch(NAME, name):
        raise ModelError(f"base {name[:80]!r}: a model name (looked up beside the file), not a path")
    path = Path(path)
    m, _ = load_detail(path)
    shared, _ = rdmodel.load_rd(base_file(path, name))
    ours, theirs = m.base.state_dict(), shared.state_dict()
    if ours.keys() != theirs.keys() or not all(torch.equal(ours[k], theirs[k]) for k in ours):
        raise ModelError(f"{path}: its base's weights are not those of {name}")
    try:
        levels = [shared.step_sizes.index(s) + 1 for s in m.base.step_sizes]
    except ValueError:
        raise ModelError(f"{path}: its global steps {m.base.step_sizes} are not all levels of {name}") from None
    meta, state = read_model_file(path)
    meta.update(
        base_model=json.dumps(name),
        base_fingerprint=json.dumps(shared.fingerprint().hex()),
        base_levels=json.dumps(levels),
    )
    before = path.stat().st_size
    kept = {k: v for k, v in state.items() if k.startswith(("detail.", "scales."))}
    tmp = path.with_name(f".{path.name}.shared")
    write_model_file(tmp, kept, meta)
    try:
        if load_detail(tmp)[0].fingerprint() != m.fingerprint():
            raise ModelError(f"{path}: sharing {name} would change the model's fingerprint; left as it was")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return before - path.stat().st_size


def _analysed(m: DetailModel, x: torch.Tensor, z: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """The detail encoder's output for images x and their global latent rounded at `step`
    (B, 1), before a detail level's gain."""
    rd = m.base
    f = features(rd.generator, rd.prior.rounded(z, step))
    return m.detail.analysis(torch.cat([x, render(rd.generator, f)], 1))


def _detail_rate(m: DetailModel, f: torch.Tensor, y: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The detail latent y rounded around its prediction from G's features f at a level's
    gain (straight-through), and its ideal code length in bits per image."""
    mu, sigma = m.detail.predict(f, gain)
    y_hat = round_around(y, mu)
    return y_hat, bits(y_hat, mu, sigma)


class _Start:
    """What a batch's levels of one global level share before any refinement: the detail
    encoder's output and the rounded global latent's features and rate, computed once."""

    @torch.no_grad()
    def __init__(self, model: DetailModel, x: torch.Tensor, global_level: int, z: torch.Tensor) -> None:
        rd = model.base
        self.m = model
        step = torch.tensor([[rd.step_of(global_level)]] * len(x), device=x.device)
        self.analysed = _analysed(model, x, z, step)
        z_hat = rd.prior.round_ste(z, step)  # as the search's own rate has it
        self.f, self.global_bits = features(rd.generator, z_hat), rd.prior.bits(z_hat, step)

    @torch.no_grad()
    def bits(self, gain: torch.Tensor) -> torch.Tensor:
        """Each image's rate at the start at a detail level's `gain`: `_Search._rate_and_image`'s
        at the encoders' latents, without drawing the image."""
        return (self.global_bits + _detail_rate(self.m, self.f, self.analysed * gain, gain)[1]).cpu()


class _Search:
    """The encode-time search of one batch: both latents, from the encoders' start."""

    def __init__(
        self,
        model: DetailModel,
        x: torch.Tensor,
        levels: Sequence[int],
        z: torch.Tensor | None = None,
        analysed: torch.Tensor | None = None,
    ) -> None:
        m, rd, dev = model, model.base, x.device
        pairs = [m.pair(lv) for lv in levels]
        self.m, self.x, self.levels = m, x, list(levels)
        self.step = torch.tensor([[rd.step_of(g)] for g, _ in pairs], device=dev)
        self.lam = torch.tensor([m.lambdas[d - 1] for _, d in pairs], device=dev)
        self.gain = m.detail.gains(torch.tensor([d for _, d in pairs], device=dev))
        with torch.no_grad():
            z = rd.encoder(x) if z is None else z
            y = (_analysed(m, x, z, self.step) if analysed is None else analysed) * self.gain
        self.z, self.y = z, y

    def _rate_and_image(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, rd = self.m, self.m.base
        z_hat = rd.prior.round_ste(z, self.step)
        f = features(rd.generator, z_hat)
        y_hat, detail_bits = _detail_rate(m, f, y, self.gain)
        rate = rd.prior.bits(z_hat, self.step) + detail_bits
        return rate, render(rd.generator, f, m.detail.additions(y_hat / self.gain))

    def refine(
        self,
        loss_fn: torch.nn.Module,
        steps: int,
        lr: float,
        on_step: Callable[[int, int], None] | None,
        budget_bits: torch.Tensor | None,
    ) -> None:
        """Both latents refined (`inversion.refine_within_rate`): no more than the start's
        rate, or the budget; the start counts."""
        with torch.no_grad():
            allowed = self._rate_and_image(self.z, self.y)[0]
        if budget_bits is not None:
            allowed = torch.maximum(allowed, budget_bits.to(allowed))
        z, y = self.z.clone().requires_grad_(True), self.y.clone().requires_grad_(True)

        def forward() -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
            return (*self._rate_and_image(z, y), (z, y))

        unscored = torch.full((len(self.x),), float("inf"), device=self.x.device)
        self.z, self.y = refine_within_rate([z, y], [lr, lr * 4], forward, loss_fn, self.x, allowed, steps,
                                            (unscored, (self.z, self.y)), lam=self.lam, score_last=True,
                                            on_step=on_step)  # fmt: skip

    def code(self, i: int) -> DetailCode:
        m, lv, rd = self.m, self.levels[i], self.m.base
        sym = m.global_table(lv).clamp(rd.prior.quantize(self.z[i : i + 1], self.step[i]))[0].cpu().numpy()
        return m.symbols(sym, self.y[i].detach().double().cpu().numpy(), lv)


class _LazyCodes:
    """A batch's codes, each made when first read."""

    def __init__(self, search: _Search) -> None:
        self.search = search
        self.done: dict[int, DetailCode] = {}

    def __getitem__(self, i: int) -> DetailCode:
        if i not in self.done:
            self.done[i] = self.search.code(i)
        return self.done[i]

    def __len__(self) -> int:
        return len(self.search.levels)


@torch.no_grad()
def pair_table(m, x: torch.Tensor) -> dict[tuple[int, int], tuple[float, float]]:
    """(global level, detail level) -> (mean bytes, mean PSNR) of the encoders' codes of
    faces `x` at the ideal code length (header included), decoded in float32: what picking a
    detail model's levels among its pairs (`percodec ship`) and comparing detail models
    (benchmarks/detail_pairs.py) measure."""
    from codec.container import OVERHEAD_V2
    from codec.images import float_to_uint8
    from codec.metrics import psnr

    out = {}
    original = float_to_uint8(x)
    z = m.base.encoder(x)
    for lv, pair in enumerate(m.pairs, start=1):
        s = _Search(m, x, [lv] * len(x), z)
        rate, img = s._rate_and_image(s.z, s.y)
        out[pair] = (OVERHEAD_V2 + rate.mean().item() / 8, psnr(float_to_uint8(img), original).mean().item())
    return out
