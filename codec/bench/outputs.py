"""Writing a bench's outputs: records, summaries, tables and figures into OUT."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path

from codec.bench.config import METRICS, BenchConfig, protocol_for, write_result
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
    B or more) webp_wins.png and (with identity labels) verify.png, and verify_judge.png where
    the held-out judge has been fetched, under cfg.out; returns their paths and the summary rows."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    protocol, judge = protocol_for(cfg), protocol_for(cfg, "judge")
    summary = summarize(records, protocol, judge)
    paths = {
        "json": out / "results.json",
        "csv": out / "per_image.csv",
        "md": out / "results.md",
        "rd": out / "rd.png",
        "grid": out / "grid.png",
    }
    head = {"originals": originals_row(protocol)} if protocol is not None and protocol.has_pairs else {}
    if judge is not None and judge.has_pairs:
        head["originals_judge"] = originals_row(judge)
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
        f"\nCross-photo verification by {words}:\n\n{verification_table(summary, p, by)}"
        for by, p, words in (("dlib", protocol, "dlib"), ("judge", judge, "the held-out judge"))
        if p is not None and p.has_pairs
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
    if "originals" in head:
        paths["verify"] = out / "verify.png"
        plot_verify(summary, head["originals"], paths["verify"])
    if "originals_judge" in head:
        paths["verify_judge"] = out / "verify_judge.png"
        plot_verify(summary, head["originals_judge"], paths["verify_judge"], "judge")
    return paths, summary


#: The file sizes (bytes) over which the windowed BD-rate is taken (issue #23's range).
