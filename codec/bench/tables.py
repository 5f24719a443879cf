"""Bench summaries: per-codec means, the tables (text and markdown), BD-rates and the verification table."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from codec import verify
from codec.bench.config import METRICS, OPTIONAL_METRICS, BenchConfig, _cap, _rd_suffix, load_images


def summarize(records: list[dict], protocols: Mapping[str, verify.Protocol | None] | None = None) -> list[dict]:
    """Per codec, in the order `run` made the rows: means and 95% confidence half-widths
    (normal approximation) of METRICS; with verification `protocols` (recogniser -> its
    protocol; codec.verify.RECOGNISERS), each row's cross-photo accept rates by each
    (codec.verify.rates; keys prefixed by verify.prefix: dlib's bare, 'judge_', 'mobileface_')
    where every record of the row has that recogniser's descriptor."""
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["codec"], []).append(r)
    out = []
    for name, rs in by.items():
        row: dict = {
            "codec": name,
            "family": rs[0]["family"],
            "setting": rs[0]["setting"],
            "n": len(rs),
            "sweep": bool(rs[0].get("sweep")),
        }
        for m in METRICS:
            v = np.array([r.get(m, math.nan) for r in rs], dtype=float)
            finite = v[np.isfinite(v)]
            row[m] = float(finite.mean()) if len(finite) else (math.nan if m in OPTIONAL_METRICS else math.inf)
            row[m + "_ci"] = float(1.96 * finite.std(ddof=1) / math.sqrt(len(finite))) if len(finite) > 1 else 0.0
        if "reached" in rs[0]:
            row["reached"] = sum(bool(r["reached"]) for r in rs)
            row["matched_to"] = rs[0].get("matched_to")  # the percodec row's setting it was bisected to
        for by, p in (protocols or {}).items():
            field = verify.RECOGNISERS[by][0]
            if p is not None and p.has_pairs and all(field in r for r in rs):
                row.update({verify.prefix(by) + k: v for k, v in verify.rates(p, _descriptors(p, rs, field)).items()})
        out.append(row)
    return out


def _descriptors(protocol: verify.Protocol, rs: list[dict], field: str = "desc") -> np.ndarray:
    """A row's decoded descriptors (record `field`) in the protocol's face order (NaN where not scored)."""
    at = {n: i for i, n in enumerate(protocol.names)}
    desc = np.full((len(protocol.names), protocol.pool.shape[1]), np.nan)
    for r in rs:
        if field in r and r["image"] in at:
            desc[at[r["image"]]] = verify.unpack(r[field])
    return desc


def originals_row(protocol: verify.Protocol) -> dict:
    """The ceiling: the originals' own cross-photo accept rates."""
    return {
        "codec": "originals",
        "family": "originals",
        "n": len(protocol.names),
        **verify.rates(protocol, protocol.originals),
    }


def verification_table(summary: list[dict], protocol: verify.Protocol, by: str = "dlib") -> str:
    """Markdown: every main row's cross-photo accept rates by recogniser `by` at the originals'
    1% and 0.1% false-accept thresholds, with 95% bootstrap intervals and the ratio to the originals."""
    top, pre = originals_row(protocol), verify.prefix(by)
    heads = ["codec", "bytes", "accepted at 1% FA", "x originals", "accepted at 0.1% FA", "x originals",
             "decoded false accepts at 1% FA", "same photo" + ("" if by == "dlib" else " (dlib)")]  # fmt: skip
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    rows = [{pre + k: v for k, v in top.items()} | {"codec": "originals"}]
    for r in rows + [r for r in summary if pre + "tar_1" in r and not r["sweep"]]:
        cells = [r["codec"], f"{r['bytes']:.1f}" if "bytes" in r else "-"]
        for tag in ("1", "01"):
            t = pre + f"tar_{tag}"
            cells += [f"{100 * r[t]:.1f}% [{100 * r[t + '_lo']:.1f}, {100 * r[t + '_hi']:.1f}]",
                      f"{r[t] / top[f'tar_{tag}']:.2f}x"]  # fmt: skip
        # same photo: dlib's 0.6 rule (codec.faces), whichever recogniser the table is by
        same = r.get("same_person", math.nan)
        cells += [f"{100 * r[pre + 'far_1']:.1f}%", "-" if math.isnan(same) else f"{100 * same:.0f}%"]
        out.append("| " + " | ".join(cells) + " |")
    pairs = int(top["pairs"])
    return (
        f"{pairs} genuine pairs (each coded face against every other photo of the same person in the "
        f"split), {verify.IMPOSTORS} impostor photos per face; thresholds where the originals' impostor pairs "
        f"are accepted 1% (distance {protocol.thresholds[0]:.3f}) and 0.1% ({protocol.thresholds[1]:.3f}) of "
        f"the time; descriptors by {verify.RECOGNISERS[by][1]}.\n\n" + "\n".join(out) + "\n"
    )


def table(summary: list[dict], markdown: bool = False) -> str:
    """The main rows (no sweep points) as a text or Markdown table."""
    heads = [
        "codec",
        "bytes",
        "bpp",
        "ratio",
        "PSNR dB",
        "MSE",
        "SSIM",
        "MS-SSIM",
        "Watson-DFT",
        "same person",
        "cross-photo",
        "enc ms",
        "dec ms",
        "reached",
    ]
    lines = []
    for r in (r for r in summary if not r["sweep"]):
        lines.append(
            [
                r["codec"],
                f"{r['bytes']:.1f}",
                f"{r['bpp']:.3f}",
                f"{r['ratio']:.1f}",
                f"{r['psnr']:.2f} ± {r['psnr_ci']:.2f}",
                f"{r['mse']:.1f}",
                f"{r['ssim']:.4f} ± {r['ssim_ci']:.4f}",
                f"{r['ms_ssim']:.4f}",
                f"{r['watson_dft']:.1f}",
                "" if math.isnan(r["same_person"]) else f"{100 * r['same_person']:.0f}%",
                f"{100 * r['tar_1']:.0f}%" if "tar_1" in r else "",
                f"{r['enc_ms']:.1f}",
                f"{r['dec_ms']:.2f}",
                f"{r['reached']}/{r['n']}" if "reached" in r else "",
            ]
        )
    if markdown:
        out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        return "\n".join(out + ["| " + " | ".join(cells) + " |" for cells in lines])
    widths = (
        [max(len(h), *(len(cells[i]) for cells in lines)) for i, h in enumerate(heads)]
        if lines
        else [len(h) for h in heads]
    )
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join(
        [fmt.format(*heads), fmt.format(*["-" * w for w in widths])] + [fmt.format(*cells) for cells in lines]
    )


def quality_table(summary: list[dict]) -> str:
    """Markdown: each swept quality of a rate-distortion model beside eigenface bisected to
    that quality's bytes (the rate-distortion plot's two curves, as numbers); '' if none."""
    matched = {r["matched_to"]: r for r in summary if r["family"] == "eigenface-matched" and r.get("matched_to")}

    def eigen(r: dict) -> dict | None:  # a quality row (its setting a number, not a cap) and its match
        is_quality = r["family"].endswith("-rd") and type(r["setting"]) is int
        return matched.get(r["setting"]) if is_quality else None

    pairs = [(r, e) for r in summary if r["family"].startswith("percodec") and (e := eigen(r)) is not None]
    if not pairs:
        return ""

    def cells(r: dict) -> str:
        same = "" if math.isnan(r["same_person"]) else f" / {100 * r['same_person']:.0f}%"
        return f"{r['bytes']:.1f} | {r['psnr']:.2f} / {r['ssim']:.3f}{same}"

    out = [
        "| quality | percodec bytes | PSNR / SSIM / same | eigenface bytes | PSNR / SSIM / same "
        "| percodec - eigenface |",
        "|---|---|---|---|---|---|",
    ]
    for p, e in pairs:
        lead = f"{p['psnr'] - e['psnr']:+.2f} dB, {p['ssim'] - e['ssim']:+.3f}"
        out.append(f"| {p['setting']} | {cells(p)} | {cells(e)} | {lead} |")
    return "\n".join(out) + "\n"


#: From this many bytes on, WebP's files compete with ours face by face (webp_wins).
WEBP_FROM = 300


def webp_wins(records: list[dict], lo: float = WEBP_FROM) -> list[dict]:
    """Per main percodec row of `lo` bytes or more (its --max-bytes cap, else its mean) with
    WebP bisected to its bytes (`bench --max-bytes`): the share of faces where WebP, in at
    most our file's bytes, beats our PSNR, with its 95% interval (normal approximation). A face
    whose file is smaller than WebP's smallest ('reached' false) is no win for WebP."""
    ours: dict[object, dict[str, dict]] = {}
    webp: dict[object, dict[str, dict]] = {}
    for r in records:
        if r["codec"].startswith("percodec ") and r["family"].endswith(("-max", "-default")):
            ours.setdefault(r["setting"], {})[r["image"]] = r
        elif r["family"] == "webp-matched":
            webp.setdefault(r.get("matched_to"), {})[r["image"]] = r
    out = []
    for setting, mine in ours.items():
        theirs = webp.get(setting, {})
        faces = [i for i in mine if i in theirs]
        if not faces:
            continue
        if (_cap(setting) or np.mean([mine[i]["bytes"] for i in faces])) < lo:
            continue
        wins = np.array([theirs[i].get("reached", True) and theirs[i]["psnr"] > mine[i]["psnr"] for i in faces],
                        dtype=float)  # fmt: skip
        half = 1.96 * math.sqrt(wins.mean() * (1 - wins.mean()) / len(wins))
        out.append({"setting": setting, "n": len(faces), "bytes": float(np.mean([mine[i]["bytes"] for i in faces])),
                    "webp_bytes": float(np.mean([theirs[i]["bytes"] for i in faces])), "share": float(wins.mean()),
                    "share_ci": half})  # fmt: skip
    return sorted(out, key=lambda w: w["bytes"])


def webp_wins_table(wins: list[dict]) -> str:
    """Markdown of `webp_wins`; '' where there is none."""
    if not wins:
        return ""
    out = ["| percodec row | bytes | WebP bytes | faces where WebP beats percodec in PSNR |", "|---|---|---|---|"]
    for w in wins:
        out.append(f"| {_rd_suffix(w['setting']).strip()} | {w['bytes']:.1f} | {w['webp_bytes']:.1f} | "
                   f"{100 * w['share']:.1f}% ± {100 * w['share_ci']:.1f} (of {w['n']}) |")  # fmt: skip
    return "\n".join(out) + "\n"


BD_WINDOW = (200.0, 1000.0)


def bd_rates(summary: list[dict], window: tuple[float, float] | None = None) -> dict[str, dict[str, float]]:
    """Per classic codec with a curve (webp, avif, jpeg: fixed and swept settings), the
    Bjøntegaard delta rate of percodec's quality curve (its first loss's rate-distortion
    rows) against it, in percent at equal PSNR and at equal SSIM, over the range both
    reach (codec.metrics.bd_rate; negative: percodec needs fewer bytes). With `window`
    (lo, hi) only the points of both curves whose mean size lies within it count."""
    from codec.metrics import bd_rate

    lo, hi = window or (0.0, math.inf)

    def curve(family: str) -> list[dict]:
        rows = (r for r in summary if r["family"] == family and lo <= r["bytes"] <= hi)
        return sorted(rows, key=lambda r: r["bytes"])

    ours = next((curve(r["family"]) for r in summary if r["family"].startswith("percodec-")
                 and r["family"].endswith("-rd")), [])  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    for family in ("webp", "avif", "jpeg"):
        theirs = curve(family)
        if len(ours) < 2 or len(theirs) < 2:
            continue
        out[family] = {
            m: bd_rate(
                [r["bytes"] for r in theirs], [r[m] for r in theirs], [r["bytes"] for r in ours], [r[m] for r in ours]
            )  # fmt: skip
            for m in ("psnr", "ssim")
        }
    return out


def bd_rate_line(rates: dict[str, dict[str, float]], windowed: dict[str, dict[str, float]] | None = None) -> str:
    """results.md's BD-rate sentences: over the common range, and within BD_WINDOW."""
    if not rates:
        return ""

    def parts(r: dict[str, dict[str, float]]) -> str:
        return "; ".join(f"{fam} {v['psnr']:+.1f}% (PSNR), {v['ssim']:+.1f}% (SSIM)" for fam, v in r.items())

    lo, hi = BD_WINDOW
    within = f"\nThe same over the points of {lo:g}-{hi:g} B only: {parts(windowed)}\n" if windowed else ""
    return (
        "\nBD-rate of percodec's quality curve against each classic codec's (bytes it needs more, "
        "negative = fewer, at equal quality over the range both reach): " + parts(rates) + "\n" + within
    )


def different_people_line(cfg: BenchConfig) -> str:
    """The same-person column's sanity line: how often two *different* test faces pass."""
    from codec import faces
    from codec.zoo import load_model, resolve

    g, _ = load_model(resolve(cfg.model).base)
    if g.config.nc != 3 or not faces.available():
        return ""
    _, images = load_images(cfg, g.config.size, g.config.nc, g.config.crop)
    if len(images) < 2:
        return ""
    rate = faces.different_people_rate(images)
    return f"\nSame person, sanity line: two different faces of this set pass {100 * rate:.0f}% of the time.\n"
