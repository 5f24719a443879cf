"""`percodec ship`: a trained model into the package (codec.ship)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from codec.cli import friendly_errors, main


class Sizes(click.ParamType):
    """Comma-separated mean file sizes in bytes, e.g. '50,62,75'."""

    name = "B,B,..."

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        try:
            sizes = tuple(float(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r}: give sizes in bytes separated by commas, e.g. 50,62,75", param, ctx)
        if not all(16 <= s <= 1 << 20 for s in sizes) or len(sizes) > 64:
            self.fail(f"{value!r}: at most 64 sizes, each from 16 B to 1 MiB", param, ctx)
        return sizes


def _shared(fn: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--data-root",
                type=click.Path(file_okay=False),
                help="Where CelebA is (its valid faces space or pick the levels; e.g. ../shared/datasets).",
            ),  # fmt: skip
            click.option(
                "--faces",
                type=click.IntRange(8, 5000),
                default=500,
                show_default=True,
                help="How many CelebA valid faces to measure sizes on.",
            ),  # fmt: skip
            click.option(
                "--into",
                type=click.Path(file_okay=False, exists=True),
                help="Model folder to write into [the package's models/].",
            ),  # fmt: skip
            click.option("--force", is_flag=True, help="Replace a model of that name."),
        ]
    ):
        fn = option(fn)
    return fn


def _options(kw: dict, **more: Any):
    from codec.ship import ShipOptions

    root, n = kw["data_root"], kw["faces"]

    def faces(side: int):
        import torch

        from codec.data import load_dataset

        if not root:
            raise click.UsageError("measuring sizes needs --data-root (the folder that holds celeba/)")
        images = load_dataset("celeba", root, "valid", size=side, limit=n, progress=False).images
        return torch.from_numpy(images.copy()).float() / 127.5 - 1

    extra = {"into": Path(kw["into"])} if kw["into"] else {}
    return ShipOptions(faces=faces, faces_words=f"{n} CelebA valid faces", force=kw["force"], **extra, **more)


@main.group()
def ship() -> None:
    """Ship a trained model into the package: its half-precision file, card and pictures.

    \b
    percodec ship run RUN NAME       a training run folder as models/NAME.safetensors
    percodec ship add-levels MODEL   more levels for a shipped rate-distortion model
    percodec ship repick MODEL NAME  a detail model's levels picked again (new fingerprint)
    percodec ship share-base MODEL BASE  a detail model names its base instead of holding it
    """


@ship.command("run")
@click.argument("run", type=click.Path(file_okay=False, exists=True))
@click.argument("name")
@click.option("--note", default="", help="A paragraph for the card.")
@click.option("--level-bytes", type=Sizes(), help="Mean sizes of the levels, lowest first (rate-distortion: "
              "re-spaced; detail: picked) [rd: as trained; detail: 180 .. 1020].")  # fmt: skip
@click.option("--framing-from", help="Copy the framing of this model (same training crops) instead of measuring "
              "it with scripts/measure_framing.py.")  # fmt: skip
@_shared
@friendly_errors
def ship_run(run: str, name: str, note: str, level_bytes: tuple[float, ...] | None, framing_from: str | None,
             **kw: Any) -> None:  # fmt: skip
    """Ship training run folder RUN as model NAME.

    \b
    Examples:
      percodec ship run ~/percodec-runs/rd-celeba64 celeba64x --data-root ../shared/datasets \\
          --level-bytes 50,62,75,90,110,135,170,220,300,400
      percodec ship run ~/percodec-runs/detail celeba64-detail4 --data-root ../shared/datasets
    """
    from codec.ship import ship as ship_model

    out = ship_model(Path(run), name, _options(kw, note=note, level_bytes=level_bytes))
    if framing_from:
        from codec.align import copy_framing
        from codec.generator import resolve_model

        copy_framing(resolve_model(framing_from), out)
    click.echo(f"shipped {out} ({out.stat().st_size:,} bytes), its card and pictures beside it")


@ship.command("add-levels")
@click.argument("model")
@click.option("--level-bytes", type=Sizes(), required=True, help="Mean sizes of the new levels.")
@_shared
@friendly_errors
def ship_add_levels(model: str, level_bytes: tuple[float, ...], **kw: Any) -> None:
    """Give shipped rate-distortion MODEL more levels; its old files still decode.

    \b
    Example:
      percodec ship add-levels celeba64 --level-bytes 49,54,60 --data-root ../shared/datasets
    """
    from codec.ship import add_levels

    path = add_levels(model, level_bytes, _options({**kw, "force": True}))
    click.echo(f"{path}: {len(level_bytes)} levels added; its card follows")


@ship.command("repick")
@click.argument("model")
@click.argument("name")
@click.option("--level-bytes", type=Sizes(), help="Mean sizes to pick for [180 .. 1020].")
@_shared
@friendly_errors
def ship_repick(model: str, name: str, level_bytes: tuple[float, ...] | None, **kw: Any) -> None:
    """Pick detail MODEL's levels again as NAME (its fingerprint changes: only for a model
    nobody holds files of yet)."""
    from codec.ship import repick

    out = repick(model, name, _options(kw, level_bytes=level_bytes))
    click.echo(f"shipped {out} ({out.stat().st_size:,} bytes)")


@ship.command("share-base")
@click.argument("model")
@click.argument("base")
@friendly_errors
def ship_share_base(model: str, base: str) -> None:
    """Make detail MODEL name its base, the RD model BASE beside it, instead of holding the
    base's networks: the same model and fingerprint in a smaller file.

    \b
    Example:
      percodec ship share-base celeba64-detail3 celeba64-id
    """
    from codec.detailmodel import share_base
    from codec.generator import resolve_model

    path = resolve_model(model)
    saved = share_base(path, base)
    click.echo(f"{path}: names {base} as its base; {saved:,} bytes smaller ({path.stat().st_size:,} bytes)")
