"""Ship a trained run as a package model: models/NAME.safetensors (float16), NAME.png, NAME.md.

    python scripts/ship_model.py ~/percodec-runs/celeba64 celeba64-gan [--note "text for the card"]
    python scripts/ship_model.py ~/percodec-runs/rd-celeba64 celeba64     # a rate-distortion run
    python scripts/ship_model.py RUN celeba64 --level-bytes 50,62,75,90,110,135,170,220,300,400
    python scripts/ship_model.py models/celeba64-detail.safetensors celeba64-detail  # re-pick its levels

GAN-only runs (generator.safetensors): the grid is rendered from the shipped (half-precision)
weights with the same fixed latents as the training grids (seed 1234). Rate-distortion runs
(model.safetensors): the grid shows faces decoded from latents drawn from the shipped
prior's own coding tables at the default quality (no training image enters the
repository), and NAME_curve.png the validation curves from the run's log. `--level-bytes`
re-spaces its quality levels: level i gets the quantisation step at which the encoder's
latents of 500 CelebA *valid* faces code to the i-th mean size (ideal code length + header).
The card is filled from the run's metadata, with the exact command that continues the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from codec.detailmodel import pair_table
from codec.generator import fingerprint, load_generator, save_generator
from codec.images import save_grid

MODELS = Path(__file__).resolve().parent.parent / "models"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "run",
        type=Path,
        help="training run folder (holds generator.safetensors or model.safetensors), or a detail "
        "model file whose levels to pick again",
    )
    ap.add_argument("name", help="model name, e.g. celeba64")
    ap.add_argument("--note", default="", help="extra paragraph for the card")
    ap.add_argument("--level-bytes", help="rd: comma-separated mean bytes of the quality levels, lowest first")
    ap.add_argument("--data-root", default="../shared/datasets", help="rd with --level-bytes: where CelebA is")
    ap.add_argument(
        "--framing-from",
        help="copy the framing measured for this model (same training data and crop, so the same framing) "
        "instead of measuring it again with scripts/measure_framing.py",
    )
    args = ap.parse_args()
    targets = [float(b) for b in args.level_bytes.split(",")] if args.level_bytes else None
    if args.run.is_file() and _is_detail(args.run):  # a detail model file: pick its levels again
        repick_detail(args.run, args.name, targets or DETAIL_BYTES, args.data_root)
    elif (args.run / "model.safetensors").is_file() and _is_detail(args.run / "model.safetensors"):
        ship_detail(args.run, args.name, args.note, targets or DETAIL_BYTES, args.data_root)
    elif (args.run / "model.safetensors").is_file():
        ship_rd(args.run, args.name, args.note, targets, args.data_root)
    else:
        ship_gan(args.run, args.name, args.note)
    if args.framing_from:
        from codec.align import copy_framing
        from codec.generator import resolve_model

        copy_framing(resolve_model(args.framing_from), MODELS / f"{args.name}.safetensors")


def ship_gan(run: Path, name: str, note: str) -> None:
    g, card = load_generator(run / "generator.safetensors")
    out = MODELS / f"{name}.safetensors"
    save_generator(g, out, card, half=True)
    shipped, _ = load_generator(out)
    fixed_z = torch.randn(64, shipped.config.nz, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        save_grid(shipped(fixed_z), MODELS / f"{name}.png")

    c = shipped.config
    params = sum(p.numel() for p in shipped.parameters())
    log = run / "train.log.jsonl"
    last = json.loads(log.read_text().splitlines()[-1]) if log.is_file() and log.read_text().strip() else {}
    hours = float(card.get("wall_seconds", 0)) / 3600
    rows = [
        (
            "architecture",
            f"DCGAN generator (Radford et al. 2016): nz={c.nz}, width ngf={c.ngf} "
            f"(classic = 64), {c.n_up + 1} transposed convolutions, output {c.size}x{c.size}x{c.nc}, "
            "BatchNorm statistics recalibrated over 8 x 256 latents at export",
        ),
        ("parameters", f"{params:,}"),
        ("weights", f"float16 safetensors, {out.stat().st_size:,} bytes; fingerprint {fingerprint(shipped).hex()}"),
        (
            "data",
            f"{card.get('dataset')} split '{card.get('split')}' ({card.get('train_images')} images, "
            f"{card.get('skipped_images', '0')} unreadable skipped); centre crop {c.crop:.4f} of the shorter side, "
            f"bicubic resize to {c.size}",
        ),
        (
            "images seen",
            f"{int(card.get('images_seen', 0)):,} ({card.get('steps')} steps x batch {card.get('batch_size')})",
        ),
        ("seed", card.get("seed", "")),
        ("hardware", card.get("hardware", "")),
        ("wall time", f"{hours:.2f} h of training (all sessions of the run together)"),
        (
            "last logged losses",
            f"D {last.get('loss_d', float('nan')):.3f}, G {last.get('loss_g', float('nan')):.3f}" if last else "n/a",
        ),
        ("command", f"`{card.get('command', '')}` (a resumed run repeats it with `--resume`)"),
        ("code version", card.get("code_version", "")),
        ("date", card.get("date", "")),
    ]
    lines = [
        f"# Model card: {name}",
        "",
        f"The generator shipped with percodec as `--model {name}`; sender and receiver must hold these exact weights.",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", f"![64 samples from fixed latents]({name}.png)", ""]
    if note:
        lines += [note, ""]
    (MODELS / f"{name}.md").write_text("\n".join(lines))
    print(f"shipped {out} ({out.stat().st_size:,} bytes), card and grid beside it")


def ship_rd(run: Path, name: str, note: str, level_bytes: list[float] | None, data_root: str) -> None:
    from codec.ladder import DEFAULT_LEVEL
    from codec.rdmodel import load_rd, save_rd, steps_for_bytes

    m, card = load_rd(run / "model.safetensors")
    if level_bytes:
        from codec.data import load_dataset

        valid = load_dataset("celeba", data_root, "valid", size=m.config.size, limit=500, progress=False).images
        x = torch.from_numpy(valid.copy()).float() / 127.5 - 1
        m.steps = steps_for_bytes(m, x, level_bytes)
    out = MODELS / f"{name}.safetensors"
    save_rd(m, out, card, half=True)
    shipped, _ = load_rd(out)
    _prior_grid(shipped, DEFAULT_LEVEL, MODELS / f"{name}.png")
    log = [json.loads(line) for line in (run / "train.log.jsonl").read_text().splitlines() if line.strip()]
    val = [r for r in log if "val_psnr" in r]
    _curves(val, int(card["batch_size"]), MODELS / f"{name}_curve.png")
    c = shipped.config
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    cfg = json.loads(torch.load(run / "checkpoint.pt", weights_only=True, map_location="cpu")["train_config"])
    last = val[-1]
    resume = card["command"] if "--resume" in card["command"] else card["command"] + " --resume"
    rows = [
        ("architecture", f"encoder (DCGAN-discriminator shaped, width {c.ndf}) -> {c.nz}-dim latent -> factorised "
         f"learned prior (Ballé et al. 2017) -> DCGAN generator (width ngf={c.ngf}), output {c.size}x{c.size}x{c.nc}"),
        ("parameters", f"{count(shipped):,}: encoder {count(shipped.encoder):,}, prior {count(shipped.prior):,}, "
         f"generator {count(shipped.generator):,}"),
        ("weights", f"float16 encoder and generator, float32 prior, safetensors, {out.stat().st_size:,} bytes; "
         f"fingerprint {shipped.fingerprint().hex()}"),
        ("quality levels", ", ".join(f"{lv}: step {s:g}" for lv, s in enumerate(shipped.steps, start=1))
         + (f" (spaced to mean {', '.join(f'{b:g}' for b in level_bytes)} B on 500 CelebA valid faces, encoder only)"
            if level_bytes else "")),
        ("data", f"{card.get('dataset')} split '{card.get('split')}' ({card.get('train_images')} images); centre crop "
         f"{c.crop:.4f} of the shorter side, bicubic resize to {c.size}; random horizontal flips"),
        ("objective", f"distortion `{cfg['distortion']}` + β·rate, β steered to {cfg['target_bytes']:g} bytes at "
         f"quality 4 (final β = {card.get('beta')} per pixel); adversarial weight {cfg['adv_weight']:g}; steps drawn "
         f"from {cfg['step_range']}; Adam lr {cfg['lr']:g} (prior 1e-3)"
         + (f", x0.1 from step {cfg['lr_drop']}" if cfg.get("lr_drop") is not None else "")),
        ("images seen", f"{int(card['images_seen']):,} ({card['steps']} steps x batch {card['batch_size']})"
         + (f", after a warm start from {card['init_from']} ({card['init_images_seen']} images, "
            f"{card['init_wall_seconds']} s)" if "init_from" in card else "")),
        ("wall time", f"{float(card.get('wall_seconds', 0)) / 3600:.2f} h ({card.get('hardware')}, all sessions)"),
        ("last validation", f"{last['val_psnr']:.2f} dB PSNR, SSIM {last['val_ssim']:.3f} at {last['val_bytes']:.1f} B "
         f"(ideal code length + header, encoder only, quality 4, {cfg['valid_images']} CelebA valid faces)"),
        ("continue training", f"`{resume}` (raise `--steps`)"),
        ("code version", card.get("code_version", "")),
        ("date", card.get("date", "")),
    ]  # fmt: skip
    intro = (f"The rate-distortion model shipped with percodec as `--model {name}`; sender and receiver must hold "
             "these exact weights and coding tables.")  # fmt: skip
    lines = [f"# Model card: {name}", "", intro, "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", f"![validation curves]({name}_curve.png)", "",
              f"![faces decoded from latents drawn from the prior's tables at quality {DEFAULT_LEVEL}]({name}.png)",
              ""]  # fmt: skip
    if note:
        lines += [note, ""]
    (MODELS / f"{name}.md").write_text("\n".join(lines))
    print(f"shipped {out} ({out.stat().st_size:,} bytes), card, curves and grid beside it")


#: Mean file sizes the levels of a detail model are picked for (--level-bytes overrides).
DETAIL_BYTES = [180, 200, 230, 260, 300, 350, 400, 460, 520, 600, 700, 820, 950, 1020]


def _is_detail(path: Path) -> bool:
    from codec.detailmodel import is_detail_file

    return is_detail_file(path)


def ship_detail(run: Path, name: str, note: str, level_bytes: list[float], data_root: str) -> None:
    """A detail run's model with the (global level, detail level) pairs that give the best
    PSNR at each mean size of `level_bytes` on 500 CelebA valid faces (encoders only); a run
    from scratch has its detail levels doubled first (`_densify`), a fine-tune keeps its
    start's (each ship used to double them again: celeba64-detail3 has 64, and picking among
    its 320 pairs takes 25 minutes here)."""
    from codec.detailmodel import load_detail

    m, card = load_detail(run / "model.safetensors")
    if not m.lambdas:
        raise SystemExit(f"{run}: its model has no rate weights stored: export it again with this code (--resume)")
    if not _tunes_detail(card):  # a fine-tune's levels are its start's, already doubled when that shipped
        _densify(m)
    shipped, chosen = _pick_and_save(m, card, level_bytes, data_root, MODELS / f"{name}.safetensors")
    detail_prior_grid(shipped, MODELS / f"{name}.png")
    _detail_card(run, name, note, shipped, card, chosen, level_bytes, MODELS / f"{name}.safetensors")


def repick_detail(path: Path, name: str, level_bytes: list[float], data_root: str) -> None:
    """Pick a shipped (or exported) detail model's levels again, among every pair of its
    global steps and detail gains, for other mean sizes; the card's levels row and grid follow.
    Its fingerprint changes with its pairs: only for a model whose files nobody holds yet."""
    from codec.detailmodel import every_pair, load_detail

    m, card = load_detail(path)
    m.pairs = every_pair(len(m.steps), m.detail.config.levels)
    out = MODELS / f"{name}.safetensors"
    shipped, chosen = _pick_and_save(m, card, level_bytes, data_root, out)
    detail_prior_grid(shipped, MODELS / f"{name}.png")  # its lowest, middle and top levels moved
    md = MODELS / f"{name}.md"
    if md.is_file():
        rows = md.read_text().splitlines()
        row = f"| quality levels | {_levels_row(shipped, chosen, level_bytes)} |"
        fp = f"fingerprint {shipped.fingerprint().hex()}"
        rows = [row if r.startswith("| quality levels |") else r for r in rows]
        rows = [r.split("fingerprint ")[0] + fp + " |" if r.startswith("| weights |") else r for r in rows]
        md.write_text("\n".join(rows) + "\n")


def _pick_and_save(m, card: dict, level_bytes: list[float], data_root: str, out: Path) -> tuple[object, list]:
    """Choose m's pairs for `level_bytes` (the best PSNR within each mean size on 500 CelebA
    valid faces), write the model with just those, and load it back."""
    from codec.data import load_dataset
    from codec.detailmodel import load_detail, save_detail

    valid = load_dataset("celeba", data_root, "valid", size=m.config.size, limit=500, progress=False).images
    x = torch.from_numpy(valid.copy()).float() / 127.5 - 1
    table = pair_table(m, x)
    chosen = []
    for target in level_bytes:
        fits = [(p, b, q) for p, (b, q) in table.items() if b <= target]
        if fits:
            best = max(fits, key=lambda t: t[2])
            if best[0] not in [c[0] for c in chosen]:
                chosen.append(best)
    chosen.sort(key=lambda t: t[1])
    for (g, k), b, q in chosen:
        print(f"global level {g:2d} detail level {k}: {b:6.1f} B {q:.2f} dB")
    globals_ = sorted({g for (g, _), _, _ in chosen})
    pairs = tuple((globals_.index(g) + 1, k) for (g, k), _, _ in chosen)
    save_detail(m, m.detail, out, card, global_levels=tuple(globals_), pairs=pairs, half=True, lambdas=m.lambdas)
    return load_detail(out)[0], chosen


def _levels_row(shipped, chosen: list, level_bytes: list[float]) -> str:
    levels = ", ".join(
        f"{i}: global step {shipped.step_of(g):g} + detail level {k} ({b:.0f} B, {q:.2f} dB)"
        for i, ((g, k), ((_, _), b, q)) in enumerate(zip(shipped.pairs, chosen, strict=True), start=1)
    )
    sizes = ", ".join(f"{b:g}" for b in level_bytes)
    return levels + f" (picked on 500 CelebA valid faces, encoders only, for mean sizes {sizes} B)"


@torch.no_grad()
def _densify(m) -> None:
    """Twice the detail levels: between each two trained gain vectors their geometric
    mean, and one past the finest (its step from the one before again), with the rate
    weights interpolated alike: more sizes to choose from (gained VAEs interpolate so)."""
    from codec.detail import DetailNet

    g, lam = m.detail.log_gain, torch.tensor(m.lambdas).log()
    rows = [g[0]]
    weights = [lam[0]]
    for i in range(1, len(g)):
        rows += [(g[i - 1] + g[i]) / 2, g[i]]
        weights += [(lam[i - 1] + lam[i]) / 2, lam[i]]
    rows.append(2 * g[-1] - g[-2])
    weights.append(2 * lam[-1] - lam[-2])
    old = m.detail
    net = DetailNet(dataclasses.replace(old.config, levels=len(rows)), m.generator)
    state = old.state_dict()
    state["log_gain"] = torch.stack(rows)
    net.load_state_dict(state)
    m.detail = net.eval().requires_grad_(False)
    m.lambdas = tuple(weights_.item() for weights_ in torch.stack(weights).exp())
    m.pairs = tuple((gl, k) for gl in range(1, len(m.steps) + 1) for k in range(1, len(rows) + 1))


def _tunes_detail(card: dict) -> bool:
    """Whether a detail run fine-tuned a detail model (its card's start is one)."""
    tuned = Path(card.get("init_from", ""))
    return tuned.is_file() and _is_detail(tuned)


def _rd_base(init_from: str) -> str:
    """The RD model under a detail run's start, through any chain of detail fine-tunes (each
    model file's card names what it started from)."""
    from codec.generator import read_metadata

    while Path(init_from).is_file() and _is_detail(Path(init_from)):
        init_from = json.loads(read_metadata(init_from).get("card", "{}")).get("init_from", "?")
    return init_from


def _detail_card(run, name, note, shipped, card, chosen, level_bytes, out) -> None:
    c, d = shipped.config, shipped.detail.config
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    cfg = json.loads(torch.load(run / "checkpoint.pt", weights_only=True, map_location="cpu")["train_config"])
    resume = card["command"] if "--resume" in card["command"] else card["command"] + " --resume"
    tuned, fine_tune = card.get("init_from", ""), _tunes_detail(card)
    base = "the RD model " + _rd_base(tuned)
    ctx = cfg.get("detail_context_width")  # a run that trained a new entropy network alone
    objective = (
        f"a new entropy network alone ({ctx} hidden channels), on the rate at every detail level; the "
        "analysis, synthesis and gains frozen as the start's"
        if ctx
        else f"distortion `{cfg['distortion']}` + λ_k·rate, λ log-spaced per detail level from "
        f"{shipped.lambdas[0]:.3g} to {shipped.lambdas[-1]:.3g} per pixel; global levels drawn per image"
    )
    if not ctx and cfg.get("detail_identity"):  # --detail-identity W K
        w, k = cfg["detail_identity"]
        objective += f"; + the identity term at the coarse detail levels: weight {w:g} at level 1, 0 from level {k}"

    rows = [
        ("architecture", f"{base} (encoder, factorised prior, DCGAN generator width "
         f"{c.ngf}, {c.nz}-dim global latent; frozen) + a detail latent of {d.channels} channels at "
         f"{c.size // 4}x{c.size // 4} (analysis from the image and the global latent's image; Gaussian entropy "
         f"model ({d.context_channels} hidden channels) predicted from the generator's {c.size // 4}x{c.size // 4} "
         "features; synthesis added to the generator at 16x16, 32x32 and before its tanh; a gain vector per "
         "detail level): codec/detail.py"),
        ("parameters", f"{count(shipped):,}: detail networks {count(shipped.detail):,}"),
        ("weights", f"float16 networks, float32 prior, safetensors, {out.stat().st_size:,} bytes; "
         f"fingerprint {shipped.fingerprint().hex()}"),
        ("quality levels", _levels_row(shipped, chosen, level_bytes)),
        ("objective", f"{objective}; Adam lr {cfg['lr']:g}"
         + (f", x0.1 from step {cfg['lr_drop']}" if cfg.get("lr_drop") is not None else "")),
        ("data", f"{card.get('dataset')} split '{card.get('split')}' ({card.get('train_images')} images); random "
         "horizontal flips"),
        ("images seen", f"{int(card['images_seen']):,} ({card['steps']} steps x batch {card['batch_size']})"
         + (f", fine-tuning {tuned} ({card.get('init_images_seen')} images before)" if fine_tune else "")),
        ("wall time", f"{float(card.get('wall_seconds', 0)) / 3600:.2f} h ({card.get('hardware')}, all sessions)"),
        ("continue training", f"`{resume}` (raise `--steps`)"),
        ("code version", card.get("code_version", "")),
        ("date", card.get("date", "")),
    ]  # fmt: skip
    intro = (f"The detail model shipped with percodec as `--model {name}`: the upper rungs of the quality ladder. "
             "Sender and receiver must hold these exact weights and coding tables.")  # fmt: skip
    lines = [f"# Model card: {name}", "", intro, "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    if note:
        lines += ["", note]
    (MODELS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print(f"shipped {out} ({out.stat().st_size:,} bytes) and its card")


def _draw(counts: np.ndarray, length: int, rng: np.random.Generator, n: int | None = None) -> np.ndarray:
    p = counts[:length].astype(np.float64)
    return rng.choice(length, size=n, p=p / p.sum())


def detail_prior_grid(m, path: Path, count: int = 8, seed: int = 1234) -> None:
    """Faces decoded from symbols drawn from the detail model's own tables (no photo): a
    column per face (one uniform draw per global dimension, read through each level's
    table), a row per quality (lowest, middle, top), each level's detail drawn from the
    Gaussians its global latent predicts."""
    from codec.detailmodel import DetailCode

    rng = np.random.default_rng(seed)
    st = m.scale_tables
    levels = sorted({1, (len(m.pairs) + 1) // 2, len(m.pairs)})
    cums = {}
    for lv in levels:
        t = m.global_table(lv)
        cums[lv] = [
            np.cumsum(t.counts[d, : t.lengths[d]]) / t.counts[d, : t.lengths[d]].sum() for d in range(len(t.offsets))
        ]
    rows = []
    for _ in range(count):
        u = rng.random(len(m.tables[1].offsets))  # one draw per dimension, read through each level's table
        for lv in levels:
            t = m.global_table(lv)
            sym = np.array([t.offsets[d] + int(np.searchsorted(c, u[d])) for d, c in enumerate(cums[lv])])
            mean, idx = m.side_info(sym, lv)
            k = np.vectorize(lambda r: st.offsets[r] + _draw(st.counts[r], st.lengths[r], rng))(idx)
            rows.append(m.image(DetailCode(sym, k, mean, idx), lv))
    with torch.no_grad():
        save_grid(torch.cat([torch.cat(rows[i :: len(levels)]) for i in range(len(levels))]), path, nrow=count)


def _prior_grid(m, level: int, path: Path, count: int = 64) -> None:
    """Faces decoded from symbols drawn per dimension from the level's coding tables."""
    t = m.tables[level]
    rng = np.random.default_rng(1234)
    sym = np.empty((count, len(t.offsets)), dtype=np.int64)
    for d in range(len(t.offsets)):
        sym[:, d] = t.offsets[d] + _draw(t.counts[d], t.lengths[d], rng, count)
    with torch.no_grad():
        save_grid(m.generator(m.prior.dequantize(torch.from_numpy(sym), t.step)), path)


def _curves(val: list[dict], batch: int, path: Path) -> None:
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


if __name__ == "__main__":
    main()
