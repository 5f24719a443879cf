"""`percodec decode` and `percodec info`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from codec.cli import (
    BatchFlags,
    Sharing,
    batch_options,
    batch_run,
    expand_inputs,
    finish_batch,
    friendly_errors,
    main,
    parse_size,
    sources_and_targets,
)
from codec.errors import PercodecError, WriteError

#: Files a decoding process claims at a time in a sharded run (a few ms each).
DECODE_BATCH = 16


def _image_format(dst: str | None, fmt: str | None) -> tuple[str, str]:
    """(Pillow format, file suffix) from --format or OUT's extension [PNG]; the two must agree."""
    from PIL import Image

    from codec.images import format_for

    exts = Image.registered_extensions()
    ext = Path(dst).suffix.lower() if dst not in (None, "-") else ""
    named = exts.get(ext)
    if fmt is None:
        if not ext:
            return "PNG", ".png"
        try:
            return format_for(ext), ext
        except PercodecError:
            raise click.UsageError(f"unknown image extension {ext!r}: use .png, .jpg, .webp ... or --format") from None
    fmt = "JPEG" if fmt.upper() == "JPG" else fmt.upper()
    suffix = ".jpg" if fmt == "JPEG" else next((e for e, f in exts.items() if f == fmt), None)
    if suffix is None or fmt not in Image.SAVE:
        raise click.UsageError(f"unknown image format {fmt.lower()!r}: use png, jpeg, webp ...")
    if named is not None and named != fmt:
        raise click.UsageError(f"--format {fmt.lower()} but {dst} is named as {named} (drop --format or rename it)")
    return fmt, suffix


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IN... [OUT]")
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(file_okay=False),
    help="Decode every IN (.pgz files or folders of them) into this folder as NAME.png (or --format); "
    "without it, give exactly IN and OUT.",
)
@click.option("--model", help="Model name or .safetensors path [the shipped model the file was made for].")
@click.option("--size", help="Resize the output to WxH (bicubic), e.g. 128x128 [the model's size].")
@click.option("--format", "fmt", help="Image format when OUT is '-' or has no known extension, or for -o [png].")
@batch_options
@click.option("-q", "--quiet", is_flag=True, help="No per-file lines (errors still show).")
@friendly_errors
def decode(
    inputs: tuple[str, ...],
    out_dir: str | None,
    model: str | None,
    size: str | None,
    fmt: str | None,
    force: bool,
    keep_going: bool,
    report: str | None,
    quiet: bool,
) -> None:
    """Regenerate images from .pgz files; the format follows OUT's extension.

    \b
    Examples:
      percodec decode face.pgz face.png
      percodec decode face.pgz big.jpg --size 256x256
      percodec decode encoded/ -o decoded/ --format webp --keep-going
    """
    import time

    from codec.batch import Outputs, Row, check_outputs, check_report_name, check_roles

    wh = parse_size(size)
    pil_format, suffix = _image_format(inputs[-1] if out_dir is None and len(inputs) == 2 else None, fmt)
    sources, targets = sources_and_targets(inputs, out_dir, suffix, ".pgz files")
    check_report_name(report)
    check_roles(sources, {"the output": targets, "--report": [report]})
    check_outputs([*targets, report], force=force)
    sharing = Sharing.start("decode", sources, targets)
    sharing.board.barrier("checked")  # every process checked every output before any writes one
    outputs = Outputs(force=force)
    rows: list[Row] = []
    t0 = time.perf_counter()
    mine = (i for batch in sharing.batches(len(sources), DECODE_BATCH) for i in batch)  # claimed as they go
    with batch_run(report, rows, len(sources), "decoded", "", force, sharing.shard):
        for i in mine:
            src, dst = sources[i], targets[i]
            try:
                rows.append(_decode_one(src, dst, outputs, model, wh, pil_format))
            except PercodecError as exc:
                rows.append(Row(src, error=str(exc)))
                if isinstance(exc, WriteError):
                    raise
                named = _naming(src, exc)
                if not keep_going:
                    raise type(exc)(named) from None
                click.echo(f"percodec: skipped: {named}", err=True)
                continue
            finally:
                sharing.finished(None)
            if not quiet and dst != "-":
                click.echo(f"{src} -> {dst}", err=True)
    run = BatchFlags(force, keep_going, report, quiet)
    finish_batch(sharing, rows, sources, run, "decoded", 0, time.perf_counter() - t0, show=len(sources) > 1)


def _naming(src: str, exc: Exception) -> str:
    """The error's message naming its input once (read errors name the file, or stdin, already)."""
    return str(exc) if str(exc).startswith((src, "stdin")) else f"{src}: {exc}"


def _decode_one(src: str, dst: str, outputs: Any, model: str | None, wh: tuple[int, int] | None, fmt: str) -> Any:
    """Decode one file and write it; its report row."""
    import time

    from codec.batch import Row
    from codec.container import read_file
    from codec.images import image_bytes
    from codec.metrics import bpp
    from codec.pipeline import decode as decode_image

    t0 = time.perf_counter()
    data = read_file(src)
    img = decode_image(data, model=model, size=wh)
    outputs.write(dst, image_bytes(img, fmt))
    return Row(src, dst, len(data), bpp(len(data), img.height, img.width), seconds=time.perf_counter() - t0)


def _info_lines(d: dict[str, Any]) -> list[tuple[str, str]]:
    model = f"{d['model'] or 'not a shipped model'} (fingerprint {d['fingerprint']})"
    rows = [
        ("file", f"{d['file']} ({d['bytes']} bytes: header+checksum {d['header_bytes']}, latent {d['latent_bytes']})"),
    ]
    if d["version"] == 2:
        quality = f"level {d['level']} of its model"
        if d["quality"] is not None:
            quality = f"{d['quality']} on the {d['scale']} scale ({quality})"
        return [*rows, ("format", "percodec .pgz version 2 (entropy-coded latent)"), ("model", model),
                ("quality", quality)]  # fmt: skip
    return [
        *rows,
        ("format", f"percodec .pgz version {d['version']}"),
        ("model", model),
        ("quantiser", f"{d['quantizer']}, {d['bits']} bits x {d['nz']} dimensions"),
        ("image", f"{d['size']}x{d['size']}, {d['channels']} channel(s); {d['bpp']:.3f} bits per pixel"),
    ]


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IN...")
@click.option("--json", "as_json", is_flag=True, help="One JSON list of objects (one per file) for scripts.")
@friendly_errors
def info(inputs: tuple[str, ...], as_json: bool) -> None:
    """Show .pgz files' headers: model, quality or quantiser, sizes. Folders are searched for
    .pgz files; a bad file is reported and the others still shown (exit code 1)."""
    import json

    from codec.container import read_file
    from codec.pipeline import describe

    blocks: list[dict[str, Any]] = []
    failed = 0
    for src in expand_inputs(inputs, ".pgz files"):
        try:
            blocks.append({"file": src, **describe(read_file(src))})
        except PercodecError as exc:
            failed += 1
            blocks.append({"file": src, "error": str(exc)})
            click.echo(f"percodec: error: {_naming(src, exc)}", err=True)
    if as_json:
        click.echo(json.dumps(blocks, indent=1))
    else:
        good = [b for b in blocks if "error" not in b]
        for n, b in enumerate(good):
            if n:
                click.echo("")
            for k, v in _info_lines(b):
                click.echo(f"{k:>10}: {v}")
    if failed:
        sys.exit(1)
