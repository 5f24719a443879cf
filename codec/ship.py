"""Shipping a trained model: the package's `models/NAME.safetensors` (half precision), its
model card `NAME.md` and its pictures, from a training run folder (`percodec ship`).

Each family ships its own way (`codec.family`: a family names its ship step here):
- a GAN-only run (generator.safetensors): a grid rendered from the shipped weights with
  the training grids' fixed latents (seed 1234);
- a rate-distortion run (model.safetensors): faces decoded from latents drawn from the
  shipped prior's own tables at the default level (no training image enters the
  repository) and the run's validation curves; `level_bytes` re-spaces its levels so that
  level i codes the picking faces to the i-th mean size (`rdmodel.steps_for_bytes`);
- a detail run: the (global level, detail level) pairs with the best PSNR within each mean
  size of `level_bytes` on the picking faces (`pick_pairs`), its detail levels doubled
  first for a run from scratch (`densify`; a fine-tune's were doubled when its start
  shipped).

Levels are picked on faces the caller supplies (the command: 500 CelebA valid faces), never
on test faces. A shipped model's levels can also be added to (`add_levels`: its old files
keep decoding) or, for a detail model nobody holds files of yet, picked again (`repick`).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codec import family
from codec.detailmodel import NAME
from codec.errors import ModelError, OutputExistsError
from codec.fileio import write_bytes

#: Mean file sizes a detail model's levels are picked for when none are given.
DETAIL_BYTES = (180, 200, 230, 260, 300, 350, 400, 460, 520, 600, 700, 820, 950, 1020)
#: The model files a training run folder holds, by the families that write them.
RUN_FILES = ("model.safetensors", "generator.safetensors")


def models_dir() -> Path:
    """The package's model folder (`models/` of the checkout), where shipped models live."""
    from importlib import resources

    return Path(str(resources.files("codec.models")))


@dataclass(frozen=True)
class ShipOptions:
    """How to ship. `faces(side)` gives the faces (N, C, side, side in [-1, 1]) levels are
    spaced or picked on, described in the card by `faces_words`; a family that needs them
    refuses to ship without."""

    into: Path = field(default_factory=models_dir)
    note: str = ""
    level_bytes: tuple[float, ...] | None = None
    faces: Callable[[int], torch.Tensor] | None = None
    faces_words: str = "500 CelebA valid faces"
    force: bool = False

    def target(self, name: str, suffix: str = ".safetensors") -> Path:
        return self.into / f"{name}{suffix}"

    def need_faces(self, why: str, side: int) -> torch.Tensor:
        if self.faces is None:
            raise ValueError(f"{why} needs faces to measure sizes on (the command: --data-root with CelebA)")
        return self.faces(side)


def run_model_file(run: Path) -> Path:
    """The model file of a training run folder; FileNotFoundError if it holds none."""
    found = next((run / f for f in RUN_FILES if (run / f).is_file()), None)
    if found is None:
        raise FileNotFoundError(f"{run}: holds no {' or '.join(RUN_FILES)}: not a training run folder")
    return found


def ship(run: str | Path, name: str, options: ShipOptions) -> Path:
    """Ship the model of training run folder `run` as `name`; the shipped file's path."""
    _check_name(name)
    model_file = run_model_file(Path(run))
    _refuse_existing(name, options)
    return family.of_file(model_file).ship(Path(run), name, options)


def _check_name(name: str) -> None:
    if not re.fullmatch(NAME, name) or name.endswith((".safetensors", ".md")):
        raise ValueError(f"model name {name[:80]!r}: lower-case letters, digits, '.', '_' and '-' (e.g. celeba64)")


def _refuse_existing(name: str, options: ShipOptions) -> None:
    out = options.target(name)
    if out.exists() and not options.force:
        raise OutputExistsError(f"{out} exists: pass --force to replace the shipped model")


# --- GAN-only generators ----------------------------------------------------------------------


def ship_gan(run: Path, name: str, options: ShipOptions) -> Path:
    """A GAN-only run's generator, its grid from fixed latents, and its card."""
    from codec.generator import fingerprint, load_generator, save_generator
    from codec.images import save_grid

    g, card = load_generator(run / "generator.safetensors")
    out = options.target(name)
    save_generator(g, out, card, half=True)
    shipped, _ = load_generator(out)
    fixed_z = torch.randn(64, shipped.config.nz, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        save_grid(shipped(fixed_z), options.target(name, ".png"))
    c, last = shipped.config, _log(run)[-1:] or [{}]
    rows = [
        ("architecture", f"DCGAN generator (Radford et al. 2016): nz={c.nz}, width ngf={c.ngf} (classic = 64), "
         f"{c.n_up + 1} transposed convolutions, output {c.size}x{c.size}x{c.nc}, BatchNorm statistics "
         "recalibrated over 8 x 256 latents at export"),
        ("parameters", f"{_count(shipped):,}"),
        ("weights", f"float16 safetensors, {out.stat().st_size:,} bytes; fingerprint {fingerprint(shipped).hex()}"),
        ("data", f"{card.get('dataset')} split '{card.get('split')}' ({card.get('train_images')} images, "
         f"{card.get('skipped_images', '0')} unreadable skipped); centre crop {c.crop:.4f} of the shorter side, "
         f"bicubic resize to {c.size}"),
        ("images seen", f"{int(card.get('images_seen', 0)):,} ({card.get('steps')} steps x batch "
         f"{card.get('batch_size')})"),
        ("seed", card.get("seed", "")),
        ("hardware", card.get("hardware", "")),
        ("wall time", f"{float(card.get('wall_seconds', 0)) / 3600:.2f} h of training (all sessions of the run "
         "together)"),
        ("last logged losses", f"D {last[0].get('loss_d', float('nan')):.3f}, G "
         f"{last[0].get('loss_g', float('nan')):.3f}" if last[0] else "n/a"),
        ("command", f"`{card.get('command', '')}` (a resumed run repeats it with `--resume`)"),
        ("code version", card.get("code_version", "")),
        ("date", card.get("date", "")),
    ]  # fmt: skip
    intro = (
        f"The generator shipped with percodec as `--model {name}`; sender and receiver must hold these exact weights."
    )
    _write_card(options, name, intro, rows, [f"![64 samples from fixed latents]({name}.png)"])
    return out


# --- rate-distortion models -------------------------------------------------------------------


def ship_rd(run: Path, name: str, options: ShipOptions) -> Path:
    """A rate-distortion run's model (levels re-spaced to `level_bytes` if given), a grid
    drawn from its prior's tables, its validation curves, and its card."""
    from codec.ladder import DEFAULT_LEVEL
    from codec.rdmodel import load_rd, save_rd, steps_for_bytes

    m, card = load_rd(run / "model.safetensors")
    card = through_unshipped(card)
    if options.level_bytes:
        m.step_sizes = steps_for_bytes(
            m, options.need_faces("spacing levels", m.config.size), list(options.level_bytes)
        )
    out = options.target(name)
    save_rd(m, out, card, half=True)
    shipped, _ = load_rd(out)
    level = min(DEFAULT_LEVEL, shipped.level_count)  # a model spaced to fewer levels: its top
    prior_grid(shipped, level, options.target(name, ".png"))
    val = [r for r in _log(run) if "val_psnr" in r]
    if val:
        curves(val, int(card["batch_size"]), options.target(name, "_curve.png"))
    pictures = [f"![validation curves]({name}_curve.png)"] if val else []
    pictures.append(f"![faces decoded from latents drawn from the prior's tables at level {level}]({name}.png)")
    intro = (f"The rate-distortion model shipped with percodec as `--model {name}`; sender and receiver must hold "
             "these exact weights and coding tables.")  # fmt: skip
    _write_card(options, name, intro, _rd_rows(run, shipped, card, out, options, val), pictures)
    return out


def _rd_rows(run: Path, shipped, card: dict, out: Path, options: ShipOptions, val: list[dict]) -> list:
    c, cfg = shipped.config, _train_config(run)
    spaced = options.level_bytes
    return [
        ("architecture", f"encoder (DCGAN-discriminator shaped, width {c.ndf}) -> {c.nz}-dim latent -> factorised "
         f"learned prior (Ballé et al. 2017) -> DCGAN generator (width ngf={c.ngf}), output {c.size}x{c.size}x{c.nc}"),
        ("parameters", f"{_count(shipped):,}: encoder {_count(shipped.encoder):,}, prior {_count(shipped.prior):,}, "
         f"generator {_count(shipped.generator):,}"),
        ("weights", f"float16 encoder and generator, float32 prior, safetensors, {out.stat().st_size:,} bytes; "
         f"fingerprint {shipped.fingerprint().hex()}"),
        ("quality levels", ", ".join(f"{lv}: step {s:g}" for lv, s in enumerate(shipped.step_sizes, start=1))
         + (f" (spaced to mean {_sizes(spaced)} B on {options.faces_words}, encoder only)" if spaced else "")),
        ("data", f"{card.get('dataset')} split '{card.get('split')}' ({card.get('train_images')} images); centre crop "
         f"{c.crop:.4f} of the shorter side, bicubic resize to {c.size}; random horizontal flips"),
        ("objective", f"distortion `{cfg['distortion']}` + β·rate, β steered to {cfg['target_bytes']:g} bytes at "
         f"level 4 (final β = {card.get('beta')} per pixel); adversarial weight {cfg['adv_weight']:g}; steps drawn "
         f"from {cfg['step_range']}; Adam lr {cfg['lr']:g} (prior 1e-3)" + _lr_drop(cfg)),
        ("images seen", f"{int(card['images_seen']):,} ({card['steps']} steps x batch {card['batch_size']})"
         + (f", after a warm start from {card['init_from']}" + (" and the runs between" if "init_via" in card else "")
            + f" ({card['init_images_seen']} images, {card['init_wall_seconds']} s)" if "init_from" in card else "")
         + (f"; the runs between, not shipped: {card['init_via']}" if "init_via" in card else "")),
        ("wall time", f"{float(card.get('wall_seconds', 0)) / 3600:.2f} h ({card.get('hardware')}, all sessions)"),
        ("last validation", f"{val[-1]['val_psnr']:.2f} dB PSNR, SSIM {val[-1]['val_ssim']:.3f} at "
         f"{val[-1]['val_bytes']:.1f} B (ideal code length + header, encoder only, level 4, {cfg['valid_images']} "
         "CelebA valid faces)" if val else "n/a"),
        ("continue training", f"`{_resume(card)}` (raise `--steps`)"),
        ("code version", card.get("code_version", "")),
        ("date", card.get("date", "")),
    ]  # fmt: skip


def add_levels(model: str | Path, level_bytes: Sequence[float], options: ShipOptions) -> Path:
    """Give a shipped rate-distortion model more levels, spaced to `level_bytes` on `faces`;
    weights and old levels stay, so every file made with it still decodes
    (`rdmodel.add_levels`). The card's levels and weights rows follow."""
    from codec.generator import resolve_model
    from codec.rdmodel import add_levels as grow
    from codec.rdmodel import load_rd, steps_for_bytes

    path = resolve_model(model)
    if family.of_file(path).name != "rd":
        raise ModelError(f"{path}: levels can be added to a rate-distortion model only")
    m, _ = load_rd(path)
    steps = steps_for_bytes(m, options.need_faces("spacing levels", m.config.size), list(level_bytes))
    first = len(m.step_sizes) + 1
    grown = grow(path, list(steps))
    added = ", ".join(f"{lv}: step {s:g}" for lv, s in enumerate(steps, start=first))
    row = (f"; added after shipping: {added} (mean {_sizes(level_bytes)} B on {options.faces_words}, encoder only; "
           "files made before still decode)")  # fmt: skip
    earlier = ", ".join(grown.fingerprint(n).hex() for n in grown.released)
    weights = (f"safetensors, {path.stat().st_size:,} bytes; fingerprint {grown.fingerprint().hex()} "
               f"(earlier: {earlier})")  # fmt: skip
    _edit_card(path.with_suffix(".md"), lambda r: r[:-2] + row + " |" if r.startswith("| quality levels |") else r,
               lambda text: re.sub(r"safetensors, [\d,]+ bytes; fingerprint [0-9a-f]+( \(earlier: [^)]*\))?",
                                   weights, text))  # fmt: skip
    return path


# --- detail models ----------------------------------------------------------------------------


def ship_detail(run: Path, name: str, options: ShipOptions) -> Path:
    """A detail run's model with the pairs picked for `level_bytes` (default DETAIL_BYTES),
    a grid drawn from its tables, and its card."""
    from codec.detailmodel import load_detail

    m, card = load_detail(run / "model.safetensors")
    if not m.lambdas:
        raise ModelError(f"{run}: its model has no rate weights stored: export it again with this code (--resume)")
    if not _tunes_detail(card):  # a fine-tune's levels are its start's, already doubled when that shipped
        m = densify(m)
    level_bytes = options.level_bytes or DETAIL_BYTES
    out = options.target(name)
    shipped, chosen = _pick_and_save(m, card, level_bytes, options, out)
    detail_grid(shipped, options.target(name, ".png"))
    intro = (f"The detail model shipped with percodec as `--model {name}`: the upper rungs of the quality ladder. "
             "Sender and receiver must hold these exact weights and coding tables.")  # fmt: skip
    rows = _detail_rows(run, shipped, card, chosen, level_bytes, out, options.faces_words)
    _write_card(options, name, intro, rows, [f"![faces decoded from the model's own tables]({name}.png)"])
    return out


def repick(model: str | Path, name: str, options: ShipOptions) -> Path:
    """Pick a detail model's levels again, among every pair of its global levels and detail
    gains, for `level_bytes`; the card's levels and weights rows and its grid follow. Its
    fingerprint changes with its pairs: only for a model whose files nobody holds yet."""
    from codec.detailmodel import every_pair, load_detail
    from codec.generator import resolve_model

    _check_name(name)
    path = resolve_model(model)
    if family.of_file(path).name != "detail":
        raise ModelError(f"{path}: only a detail model's levels can be picked again")
    _refuse_existing(name, options)
    m, card = load_detail(path)
    m.pairs = every_pair(m.base.level_count, m.detail.config.levels)
    level_bytes = options.level_bytes or DETAIL_BYTES
    out = options.target(name)
    shipped, chosen = _pick_and_save(m, card, level_bytes, options, out)
    detail_grid(shipped, options.target(name, ".png"))
    row = f"| quality levels | {_levels_row(shipped, chosen, level_bytes, options.faces_words)} |"
    fp = f"fingerprint {shipped.fingerprint().hex()}"
    _edit_card(options.target(name, ".md"), lambda r: row if r.startswith("| quality levels |") else r,
               lambda text: re.sub(r"fingerprint [0-9a-f]+", fp, text))  # fmt: skip
    return out


Chosen = tuple[tuple[int, int], float, float]  # (global level, detail level), mean bytes, PSNR


def pick_pairs(table: dict[tuple[int, int], tuple[float, float]], level_bytes: Sequence[float]) -> list[Chosen]:
    """For each mean size, the pair of `table` (pair -> (mean bytes, PSNR)) with the best PSNR
    within it; each pair once, in byte order (a size nothing fits is left out)."""
    chosen: list[Chosen] = []
    for target in level_bytes:
        fits = [(p, b, q) for p, (b, q) in table.items() if b <= target]
        if fits:
            best = max(fits, key=lambda t: t[2])
            if best[0] not in [c[0] for c in chosen]:
                chosen.append(best)
    return sorted(chosen, key=lambda t: t[1])


def _pick_and_save(m, card: dict, level_bytes: Sequence[float], options: ShipOptions, out: Path) -> tuple:
    """m with the pairs picked for `level_bytes` on the options' faces, written to `out` with
    just the global levels they use, and loaded back."""
    from codec.detailmodel import load_detail, pair_table, save_detail

    faces = options.need_faces("picking detail levels", m.config.size)
    chosen = pick_pairs(pair_table(m, faces), level_bytes)
    if not chosen:
        raise ValueError(f"no level of the model codes within {min(level_bytes):g} B on average: give larger sizes")
    globals_ = sorted({g for (g, _), _, _ in chosen})
    pairs = tuple((globals_.index(g) + 1, k) for (g, k), _, _ in chosen)
    save_detail(m.base, m.detail, out, card, global_levels=tuple(globals_), pairs=pairs, half=True, lambdas=m.lambdas)
    share_shipped_base(out)
    return load_detail(out)[0], chosen


def share_shipped_base(path: Path) -> str | None:
    """Make a detail model file name its base instead of holding it, where an RD model beside
    it is that base (`detailmodel.share_base`); the base's name, or None."""
    from codec.detailmodel import share_base

    for rd in sorted(path.parent.glob("*.safetensors")):
        if rd == path or not re.fullmatch(NAME, rd.stem):
            continue
        try:
            if family.of_file(rd).name == "rd":
                share_base(path, rd.stem)
                return rd.stem
        except ModelError:
            continue  # not a model, or another model's weights
    return None


@torch.no_grad()
def densify(m):
    """A detail model with twice the detail levels: between each two trained gain vectors
    their geometric mean, and one past the finest (its step from the one before again), the
    rate weights interpolated alike; every global level paired with every detail level.
    More sizes to choose from (gained VAEs interpolate so)."""
    from codec.detail import DetailNet
    from codec.detailmodel import DetailModel, every_pair

    g, lam = m.detail.log_gain, torch.tensor(m.lambdas).log()
    if len(g) < 2:
        raise ModelError("a detail model with one detail level has no step to densify by")
    rows, weights = [g[0]], [lam[0]]
    for i in range(1, len(g)):
        rows += [(g[i - 1] + g[i]) / 2, g[i]]
        weights += [(lam[i - 1] + lam[i]) / 2, lam[i]]
    rows.append(2 * g[-1] - g[-2])
    weights.append(2 * lam[-1] - lam[-2])
    net = DetailNet(dataclasses.replace(m.detail.config, levels=len(rows)), m.base.generator)
    state = m.detail.state_dict()
    state["log_gain"] = torch.stack(rows)
    net.load_state_dict(state)
    lambdas = tuple(w.item() for w in torch.stack(weights).exp())
    pairs = every_pair(m.base.level_count, len(rows))
    return DetailModel(m.base, net.eval().requires_grad_(False), pairs, lambdas)


def through_unshipped(card: dict) -> dict:
    """A run's card with its start traced back to a shipped model: a run warm-started from
    another run's model that was never shipped (a model trained at 128x128 from celeba64, then
    fine-tuned with the identity term) names the shipped ancestor as its start, with the images
    and seconds of the runs between added, and lists those runs under 'init_via' (a start
    whose file is gone here is kept as it is)."""
    from codec.generator import read_metadata, shipped_models

    card, via = dict(card), []
    shipped = {p.resolve() for p in shipped_models().values()}
    while "init_from" in card and (start := Path(card["init_from"])).is_file() and start.resolve() not in shipped:
        before = json.loads(read_metadata(start).get("card", "{}"))
        if "init_from" not in before or len(via) > 16:
            break
        via.append(f"{start} ({int(before['images_seen']):,} images, {before.get('steps', '?')} steps)")
        card["init_from"] = before["init_from"]
        card["init_images_seen"] = str(int(card["init_images_seen"]) + int(before.get("init_images_seen", 0)))
        card["init_wall_seconds"] = str(
            int(float(card["init_wall_seconds"])) + int(float(before.get("init_wall_seconds", 0)))
        )
    if via:
        card["init_via"] = "; ".join(reversed(via))
    return card


def _tunes_detail(card: dict) -> bool:
    """Whether a detail run fine-tuned a detail model (its card's start is one)."""
    tuned = Path(card.get("init_from", ""))
    return tuned.is_file() and family.of_file(tuned).name == "detail"


def _rd_base(init_from: str) -> str:
    """The RD model under a detail run's start, through any chain of detail fine-tunes (each
    model file's card names what it started from)."""
    from codec.generator import read_metadata

    seen = set()
    while Path(init_from).is_file() and family.of_file(init_from).name == "detail" and init_from not in seen:
        seen.add(init_from)
        init_from = json.loads(read_metadata(init_from).get("card", "{}")).get("init_from", "?")
    return init_from


def _levels_row(shipped, chosen: list[Chosen], level_bytes: Sequence[float], faces_words: str) -> str:
    levels = ", ".join(
        f"{i}: global step {shipped.base.step_of(g):g} + detail level {k} ({b:.0f} B, {q:.2f} dB)"
        for i, ((g, k), (_, b, q)) in enumerate(zip(shipped.pairs, chosen, strict=True), start=1)
    )
    return levels + f" (picked on {faces_words}, encoders only, for mean sizes {_sizes(level_bytes)} B)"


def _detail_objective(cfg: dict, shipped) -> str:
    ctx = cfg.get("detail_context_width")  # a run that trained a new entropy network alone
    if ctx:
        return (f"a new entropy network alone ({ctx} hidden channels), on the rate at every detail level; the "
                "analysis, synthesis and gains frozen as the start's")  # fmt: skip
    lam = shipped.lambdas
    text = (f"distortion `{cfg['distortion']}` + λ_k·rate, λ log-spaced per detail level from {lam[0]:.3g} to "
            f"{lam[-1]:.3g} per pixel; global levels drawn per image")  # fmt: skip
    if cfg.get("detail_identity"):  # --detail-identity W K
        w, k = cfg["detail_identity"]
        text += f"; + the identity term at the coarse detail levels: weight {w:g} at level 1, 0 from level {k}"
    return text + f"; Adam lr {cfg['lr']:g}" + _lr_drop(cfg)


def _detail_rows(run, shipped, card, chosen, level_bytes, out: Path, faces_words: str) -> list:
    c, d, cfg = shipped.config, shipped.detail.config, _train_config(run)
    tuned, side = card.get("init_from", ""), c.size // 4
    return [
        ("architecture", f"the RD model {_rd_base(tuned)} (encoder, factorised prior, DCGAN generator width "
         f"{c.ngf}, {c.nz}-dim global latent; frozen) + a detail latent of {d.channels} channels at "
         f"{side}x{side} (analysis from the image and the global latent's image; Gaussian entropy "
         f"model ({d.context_channels} hidden channels) predicted from the generator's {side}x{side} "
         "features; synthesis added to the generator at the next two sides and before its tanh; a gain vector per "
         "detail level): codec/detail.py"),
        ("parameters", f"{_count(shipped):,}: detail networks {_count(shipped.detail):,}"),
        ("weights", f"float16 networks, float32 prior, safetensors, {out.stat().st_size:,} bytes; "
         f"fingerprint {shipped.fingerprint().hex()}"),
        ("quality levels", _levels_row(shipped, chosen, level_bytes, faces_words)),
        ("objective", _detail_objective(cfg, shipped)),
        ("data", f"{card.get('dataset')} split '{card.get('split')}' ({card.get('train_images')} images); random "
         "horizontal flips"),
        ("images seen", f"{int(card['images_seen']):,} ({card['steps']} steps x batch {card['batch_size']})"
         + (f", fine-tuning {tuned} ({card.get('init_images_seen')} images before)" if _tunes_detail(card) else "")),
        ("wall time", f"{float(card.get('wall_seconds', 0)) / 3600:.2f} h ({card.get('hardware')}, all sessions)"),
        ("continue training", f"`{_resume(card)}` (raise `--steps`)"),
        ("code version", card.get("code_version", "")),
        ("date", card.get("date", "")),
    ]  # fmt: skip


# --- pictures ---------------------------------------------------------------------------------


def _draw(counts: np.ndarray, length: int, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    p = counts[:length].astype(np.float64)
    return rng.choice(length, size=n, p=p / p.sum())


@torch.no_grad()
def prior_grid(m, level: int, path: Path, count: int = 64) -> None:
    """Faces decoded from symbols drawn per dimension from a level's coding tables."""
    from codec.images import save_grid

    t = m.tables[level]
    rng = np.random.default_rng(1234)
    sym = np.empty((count, len(t.offsets)), dtype=np.int64)
    for d in range(len(t.offsets)):
        sym[:, d] = t.offsets[d] + _draw(t.counts[d], t.lengths[d], rng, count)
    save_grid(m.generator(m.prior.dequantize(torch.from_numpy(sym), t.step)), path)


@torch.no_grad()
def detail_grid(m, path: Path, count: int = 8, seed: int = 1234) -> None:
    """Faces decoded from symbols drawn from a detail model's own tables (no photo): a column
    per face (one uniform draw per global dimension, read through each level's table), a row
    per level (lowest, middle, top), each level's detail drawn from the Gaussians its global
    latent predicts."""
    from codec.detailmodel import DetailCode
    from codec.images import save_grid

    rng = np.random.default_rng(seed)
    st = m.scale_tables
    levels = sorted({1, (len(m.pairs) + 1) // 2, len(m.pairs)})
    cums = {}
    for lv in levels:
        t = m.global_table(lv)
        cums[lv] = [np.cumsum(t.counts[d, : t.lengths[d]]) / t.counts[d, : t.lengths[d]].sum()
                    for d in range(len(t.offsets))]  # fmt: skip
    rows = []
    for _ in range(count):
        u = rng.random(len(m.base.tables[1].offsets))
        for lv in levels:
            t = m.global_table(lv)
            sym = np.array([t.offsets[d] + int(np.searchsorted(c, u[d])) for d, c in enumerate(cums[lv])])
            mean, idx = m.side_info(sym, lv)
            k = np.vectorize(lambda r: st.offsets[r] + _draw(st.counts[r], st.lengths[r], rng))(idx)
            rows.append(m.image(DetailCode(sym, k, mean, idx), lv))
    save_grid(torch.cat([torch.cat(rows[i :: len(levels)]) for i in range(len(levels))]), path, nrow=count)


def curves(val: list[dict], batch: int, path: Path) -> None:
    """A run's validation PSNR, SSIM and bytes against the images it had seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = [r["step"] * batch / 1e6 for r in val]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key, label in zip(axes, ("val_psnr", "val_ssim", "val_bytes"), ("PSNR (dB)", "SSIM", "bytes"), strict=True):
        ax.plot(seen, [r[key] for r in val], lw=1)
        ax.set_xlabel("million images seen")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- cards and run folders --------------------------------------------------------------------


def _write_card(options: ShipOptions, name: str, intro: str, rows: list, pictures: list[str]) -> None:
    lines = [f"# Model card: {name}", "", intro, "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    for p in pictures:
        lines += ["", p]
    if options.note:
        lines += ["", options.note]
    write_bytes(options.target(name, ".md"), ("\n".join(lines) + "\n").encode(), force=True)


def _edit_card(card: Path, row, text) -> None:
    """Rewrite a card's rows (`row`: line -> line) and then its text (`text`); no card, nothing."""
    if card.is_file():
        lines = [row(r) for r in card.read_text().splitlines()]
        write_bytes(card, (text("\n".join(lines)) + "\n").encode(), force=True)


def _log(run: Path) -> list[dict]:
    log = run / "train.log.jsonl"
    return [json.loads(r) for r in log.read_text().splitlines() if r.strip()] if log.is_file() else []


def _train_config(run: Path) -> dict:
    from codec.fileio import load_torch_file

    ckpt = load_torch_file(run / "checkpoint.pt", "checkpoint")
    return json.loads(ckpt["train_config"])


def _resume(card: dict) -> str:
    return card["command"] if "--resume" in card["command"] else card["command"] + " --resume"


def _lr_drop(cfg: dict) -> str:
    return f", x0.1 from step {cfg['lr_drop']}" if cfg.get("lr_drop") is not None else ""


def _sizes(level_bytes: Sequence[float]) -> str:
    return ", ".join(f"{b:g}" for b in level_bytes)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
