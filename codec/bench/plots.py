"""Bench figures: the rate-distortion and verification plots and the image grid."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from codec.bench.config import BenchConfig, _rd_suffix, eigenbasis, grid_levels, load_images, write_result
from codec.bench.runs import reconstruct


def _write_figure(fig, path: Path) -> None:
    """A figure as a PNG through `_write`; the figure is closed either way."""
    import matplotlib.pyplot as plt

    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        write_result(path, buf.getvalue())
    finally:
        plt.close(fig)


def _save(fig, title: str, path: Path) -> None:
    """Title, lay out, write and close a figure."""

    fig.suptitle(title)
    fig.tight_layout()
    _write_figure(fig, path)


def _family_lines(ax, summary: list[dict], x: str, y: Callable[[dict], float]) -> None:
    """One line per codec family (a point for a single row; a star for percodec's), by `x`."""
    import matplotlib

    fams: dict[str, list[dict]] = {}
    for r in summary:
        fams.setdefault(r["family"], []).append(r)
    # more families than matplotlib's 10-colour cycle (WebP and AVIF drew alike): tab20's
    # strong colours first, then its light ones
    tab20 = matplotlib.colormaps["tab20"].colors
    colours = tab20[0::2] + tab20[1::2]
    for i, (fam, rs) in enumerate(sorted(fams.items())):
        rs = sorted(rs, key=lambda r: r[x])
        style = "o-" if len(rs) > 1 else ("*" if fam.startswith("percodec") else "s")
        ax.plot([r[x] for r in rs], [y(r) for r in rs], style, label=fam, ms=9 if style == "*" else 5,
                color=colours[i % len(colours)])  # fmt: skip


def plot_rd(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, m in zip(axes, ("ssim", "psnr"), strict=True):
        _family_lines(ax, summary, "bpp", lambda r, m=m: r[m])
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    for ax, m in zip(axes, ("SSIM", "PSNR (dB)"), strict=True):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([0.1, 0.2, 0.5, 1, 2, 4, 8]))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("bits per pixel (whole files)")
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    _save(fig, "rate-distortion, means over images", path)


def plot_verify(summary: list[dict], originals: dict, path: Path, by: str = "dlib") -> None:
    """Cross-photo accept rate by recogniser `by` against file size for every codec family, the
    originals on top."""
    import matplotlib

    from codec import verify

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    pre = verify.prefix(by)
    scored = [r for r in summary if pre + "tar_1" in r]
    for ax, tag, far in zip(axes, ("1", "01"), ("1%", "0.1%"), strict=True):
        ax.axhline(100 * originals[f"tar_{tag}"], color="k", ls="--", lw=1, label="originals (the ceiling)")
        _family_lines(ax, scored, "bytes", lambda r, t=pre + f"tar_{tag}": 100 * r[t])
        ax.set_xscale("log")
        ax.set_xlabel("bytes per face (whole files)")
        ax.set_ylabel(f"accepted as the person at {far} false accepts (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    _save(fig, f"cross-photo verification by {verify.RECOGNISERS[by][1]}:\ndecoded face against other photos "
          "of the same person", path)  # fmt: skip


def plot_webp_wins(wins: list[dict], path: Path) -> None:
    """Share of faces where WebP, in at most percodec's bytes, beats its PSNR, per row (tables.webp_wins)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    x = [w["bytes"] for w in wins]
    ax.errorbar(x, [100 * w["share"] for w in wins], yerr=[100 * w["share_ci"] for w in wins], fmt="o-", capsize=3)
    for w in wins:
        ax.annotate(_rd_suffix(w["setting"]).strip(), (w["bytes"], 100 * w["share"]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))  # fmt: skip
    ax.set_ylim(0, 100)
    ax.set_xlabel("percodec bytes per face (mean)")
    ax.set_ylabel("faces where WebP wins (%)")
    ax.grid(alpha=0.3)
    _save(fig, "WebP in at most percodec's bytes, face by face (PSNR)", path)


def plot_grid(cfg: BenchConfig, records: list[dict], path: Path, rows: int = 6) -> None:
    """Original, percodec per loss (and a lower and a higher level of the first),
    eigenface and WebP at the same bytes, smallest JPEG, k-means K=4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec.ladder import ladder_for
    from codec.zoo import load_model

    ladder = ladder_for(cfg.model)
    g, _ = load_model(ladder.rungs[0].model if ladder else cfg.model)
    names, images = load_images(cfg, g.config.size, g.config.nc, g.config.crop)
    other_rates = [f" q={q}" for q in grid_levels(len(ladder), ladder.default)] if ladder else []
    cols = [
        r["codec"]
        for r in records
        if r["codec"].startswith("percodec") and (not r.get("sweep") or r["codec"].endswith(tuple(other_rates)))
    ]
    cols = list(dict.fromkeys(cols)) + [
        "webp @ percodec bytes",
        "eigenface @ percodec bytes",
        "jpeg q=1",
        "k-means K=4",
    ]
    cols = [c for c in cols if any(r["codec"] == c for r in records)]
    basis = eigenbasis(cfg, g.config.size, g.config.nc, g.config.crop) if cfg.dataset == "celeba" else None
    pick = list(range(min(rows, len(names))))
    fig, axes = plt.subplots(len(pick), 1 + len(cols), figsize=(1.5 * (1 + len(cols)), 1.75 * len(pick)), squeeze=False)
    by = {(r["codec"], r["image"]): r for r in records}
    for a, i in enumerate(pick):
        axes[a][0].imshow(images[i].squeeze(), cmap="gray")
        axes[a][0].set_title("original" if a == 0 else "", fontsize=7)
        for b, c in enumerate(cols, start=1):
            r = by.get((c, names[i]))
            if r is None:
                continue
            axes[a][b].imshow(reconstruct(r, images[i], cfg.model, basis).squeeze(), cmap="gray")
            if a == 0:
                title = c.replace(" @ percodec bytes", " (same B)").replace(" q=", "\nq=").replace(" max ", "\nmax ")
                title = title.replace(" default", "\ndefault")  # long loss names would overlap
                if len(cfg.losses) == 1:  # one loss: the column says which model and setting only
                    title = title.replace(f" {cfg.losses[0]}", "")
                title = title.replace("-upscaled", " upscaled").replace("percodec-", "")
                axes[a][b].set_title(title, fontsize=7)
            axes[a][b].set_xlabel(f"{int(r['bytes'])} B, {r['ssim']:.2f}", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    _write_figure(fig, path)
