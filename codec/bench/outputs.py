"""Writing a bench's outputs: records, summaries, tables and figures into OUT."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from codec import verify
from codec.bench.config import METRICS, BenchConfig, protocols_for, write_result
from codec.bench.plots import plot_grid, plot_rd, plot_verify, plot_webp_wins
from codec.bench.tables import (
    BD_WINDOW,
    bd_rate_line,
    bd_rates,
    different_people_line,
    originals_row,
    quality_table,
    summarize,
    table,
    verification_table,
    webp_wins,
    webp_wins_table,
)


def write_outputs(cfg: BenchConfig, records: list[dict]) -> tuple[dict[str, Path], list[dict]]:
    """results.json, per_image.csv, results.md, rd.png, grid.png, (with --max-bytes rows of 300
    B or more) webp_wins.png and (with identity labels) verify.png, and verify_judge.png and
    verify_mobileface.png where the judges have been fetched, under cfg.out; returns their paths
    and the summary rows."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    protocols = protocols_for(cfg)
    summary = summarize(records, protocols)
    paths = {
        "json": out / "results.json",
        "csv": out / "per_image.csv",
        "md": out / "results.md",
        "rd": out / "rd.png",
        "grid": out / "grid.png",
    }
    head = {_originals_key(by): originals_row(p) for by, p in protocols.items()}
    rates, windowed = bd_rates(summary), bd_rates(summary, BD_WINDOW)
    wins = webp_wins(records)
    result = {"config": asdict(cfg), **head, "bd_rate": rates, "bd_rate_window": windowed, "webp_wins": wins,
              "summary": summary}  # fmt: skip
    write_result(paths["json"], json.dumps(result, indent=1, default=str))
    keys = ["image", "codec", "family", "setting", *METRICS, "reached"]
    rows = io.StringIO(newline="")
    w = csv.DictWriter(rows, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(sorted(records, key=lambda r: (r["codec"], r["image"])))
    write_result(paths["csv"], rows.getvalue())
    n = summary[0]["n"] if summary else 0
    cross = "".join(
        f"\nCross-photo verification by {_words(by, cfg)}:\n\n{verification_table(summary, p, by)}"
        for by, p in protocols.items()
    )
    write_result(
        paths["md"],
        f"{n} images, dataset {cfg.dataset} ({cfg.split}), model {cfg.model}, "
        f"{cfg.steps if cfg.steps is not None else 'default'} steps\n\n"
        + table(summary, markdown=True)
        + "\n"
        + different_people_line(cfg)
        + bd_rate_line(rates, windowed)
        + cross
        + (f"\nEvery quality beside eigenface at its bytes:\n\n{q}" if (q := quality_table(summary)) else "")
        + (f"\nFace by face, WebP in at most percodec's bytes:\n\n{w}" if (w := webp_wins_table(wins)) else ""),
    )
    plot_rd(summary, paths["rd"])
    plot_grid(cfg, records, paths["grid"])
    if wins:
        paths["webp_wins"] = out / "webp_wins.png"
        plot_webp_wins(wins, paths["webp_wins"])
    for by in protocols:
        key = "verify" if by == "dlib" else f"verify_{by}"
        paths[key] = out / f"{key}.png"
        plot_verify(summary, head[_originals_key(by)], paths[key], by)
    return paths, summary


def _originals_key(by: str) -> str:
    """results.json's key of the originals' rates by recogniser `by` ('originals' is dlib's, as before the judges)."""
    return "originals" if by == "dlib" else f"originals_{by}"


def _words(by: str, cfg: BenchConfig) -> str:
    """A recogniser's name in a table's title, and whether this bench's search used it."""
    name = verify.RECOGNISERS[by][2]
    if verify.searched_with(by, cfg.losses):
        return f"{name}, which this bench's search used (not held out)"
    return name if by == "dlib" else f"{name}, held out"


#: The file sizes (bytes) over which the windowed BD-rate is taken (issue #23's range).
