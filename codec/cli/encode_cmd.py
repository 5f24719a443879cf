"""`percodec encode`: options checked, outputs planned and checked, then coded batch by batch."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import click

from codec import defaults
from codec.cli import (
    MAX_BATCH,
    MAX_BYTES_OPTION,
    MAX_RESTARTS,
    MAX_SEED,
    MAX_STEPS,
    BatchFlags,
    Finite,
    LossMix,
    Sharing,
    batch_options,
    batch_run,
    finish_batch,
    friendly_errors,
    main,
    progress_bar,
    sources_and_targets,
)
from codec.defaults import MAX_FACE, MAX_QUALITY
from codec.errors import PercodecError


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IN... [OUT]")
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(file_okay=False),
    help="Encode every IN (files or folders) into this folder as NAME.pgz; without it, give exactly IN and OUT.",
)
@click.option(
    "--model",
    default="celeba64",
    show_default=True,
    help="Shipped model name (celeba64: one quality scale from about 50 B to 1 KB over the models celeba64, "
    "celeba64-id and celeba64-detail3; celeba64-gan: the GAN-only reference), a .safetensors path, or a "
    ".ladder.json path.",
)
@click.option(
    "--loss",
    type=LossMix(),
    help=f"What the search minimises: {', '.join(defaults.LOSS_NAMES)}, or a weighted mix such as "
    f"'ms-ssim=1,mse=3' [rate-distortion models: {defaults.RD_LOSS}; GAN-only: {defaults.DEFAULT_LOSS}]; see README "
    "'Which loss'.",
)
@click.option(
    "--loss-params",
    type=click.Path(dir_okay=False, exists=True),
    help="Parameter file for the loss (Watson: the authors' .pth state dicts).",
)
@click.option(
    "--steps",
    type=click.IntRange(0, MAX_STEPS),
    help=f"Most search steps per image [rate-distortion model: {defaults.RD_STEPS} of refinement from the "
    "encoder's latent, "
    f"0 = encoder only; GAN model: {defaults.GAN_STEPS}, stopping early when the loss stalls].",
)
@click.option(
    "--quality",
    type=click.IntRange(1, MAX_QUALITY),
    help="Rate-distortion models: a fixed quality, higher = more bytes (celeba64: 1..28 over three models, "
    "51 to 1,023 B on average over 200 CelebA valid faces, docs/FORMAT.md; a detailed face takes more: the "
    "sample faces 1.1-1.7 KB at 28; a single model: its levels) [per image, the highest quality whose file "
    "fits --max-bytes].",
)
@click.option(
    "--restarts",
    type=click.IntRange(1, MAX_RESTARTS),
    help="GAN-only models: starting latents searched together, the best kept after 20% of the steps [4].",
)
@click.option("--bits", type=click.IntRange(1, 16), help="Bits per latent dimension [7: 100-byte files for nz=100].")
@click.option(
    "--max-bytes",
    type=click.IntRange(1, MAX_BYTES_OPTION),
    help="Files fit this many bytes, header included: per image the highest quality (GAN-only model: the most "
    "bits) that fits [rate-distortion model: 112; with --quality: an error where it does not fit].",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), help="GAN-only models: seed of the starting latents [0].")
@click.option(
    "--crop",
    type=Finite(0, 1, min_open=True),
    help="With --no-align: centre-crop fraction of the shorter side [the model's: 0.787 for CelebA faces].",
)
@click.option(
    "--no-align",
    "no_align",
    is_flag=True,
    help="Do not look for the face: centre-crop instead (otherwise a photo is searched for a face, framed like "
    "the training faces, and a model-sized crop is taken as it is only where its face already sits so).",
)
@click.option(
    "--face", type=click.IntRange(1, MAX_FACE), default=1, show_default=True, help="Which face, by size (1 = largest)."
)
@click.option("--require-face", is_flag=True, help="Refuse an input with no face instead of coding its centre crop.")
@click.option(
    "--save-crop",
    type=click.Path(),
    help="Write the exact model-sized image that was compressed (a file for one input, a folder for many).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH),
    default=32,
    show_default=True,
    help="Images searched together (where a GPU pays off); each batch's files are written when it finishes.",
)
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Leave outputs that already hold a valid file for this model and rate setting (finish an "
    "interrupted run); an existing invalid one is refused unless --force.",
)
@batch_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-file lines (errors still show).")
@friendly_errors
def encode(
    inputs: tuple[str, ...],
    out_dir: str | None,
    loss_params: str | None,
    force: bool,
    keep_going: bool,
    report: str | None,
    skip_existing: bool,
    quiet: bool,
    no_align: bool,
    save_crop: str | None,
    **opts: Any,
) -> None:
    """Compress face images to .pgz files of about a hundred bytes (up to about 1 KB with --max-bytes or --quality).

    \b
    Examples:
      percodec encode face.png face.pgz
      percodec encode --loss ms-ssim --max-bytes 64 face.jpg small.pgz
      percodec encode --max-bytes 1024 face.jpg detailed.pgz
      percodec encode photos/ more.png -o encoded/ --keep-going --report encoded/report.csv
      cat face.png | percodec encode - - > face.pgz

    Prints each file's size, bits per pixel, and the PSNR/SSIM of exactly what
    `percodec decode` will produce, measured against the model-sized input. Files are
    written as their batch finishes: after Ctrl-C, rerun with --skip-existing to finish.
    """
    if opts["crop"] is not None and not no_align:
        raise click.UsageError("--crop sets the centre crop, which only --no-align uses: add --no-align")
    opts["align"] = not no_align
    sources, targets = sources_and_targets(inputs, out_dir, ".pgz", "images")
    run = BatchFlags(force, keep_going, report, quiet, skip_existing)
    sharing = Sharing.start("encode", sources, targets)
    with _face_finder(sources, opts["align"]) as finder:
        _encode(sources, targets, opts, finder, loss_params, save_crop, run, sharing)


def _face_finder(sources: list[str], align: bool) -> Any:
    """A face-finder worker started now, before torch loads, when an input will likely be
    searched for a face: its ~0.6 s of model loading then overlaps this process's start-up
    (and a crash in it costs one image). Otherwise the pipeline picks (see encode_iter)."""
    from codec.isolate import Detector

    # Only a cold process gains (torch not yet imported: a command run, not a CliRunner or a
    # caller's process, where the pipeline's own choice finds faces without a worker's start).
    if align and "torch" not in sys.modules and any(_needs_finding(s) for s in sources[:32]):  # a batch's first tell
        return Detector(preload=True)
    return contextlib.nullcontext(None)


def _needs_finding(source: str) -> bool:
    # Every colour input is looked at: a photo for its face, a model-sized crop for whether its
    # face sits on the model's framing (pipeline.frame). Grey images (digits) are not. A
    # wrong guess costs only the worker's time on another core.
    from PIL import Image

    if source == "-" or not Path(source).is_file():  # never open a pipe here: it would block
        return False
    try:
        with Image.open(source) as im:
            return not (im.mode in ("1", "L", "LA", "La", "I", "F") or im.mode.startswith("I;"))
    except Exception:
        return False


def _encode(
    sources: list[str],
    targets: list[str],
    opts: dict[str, Any],
    finder: Any,
    loss_params: str | None,
    save_crop: str | None,
    run: BatchFlags,
    sharing: Sharing,
) -> None:
    """Check every output, then encode what is not done yet (see `encode`); every process
    of a sharded run checks them all before any writes one."""
    from codec.batch import check_outputs, check_report_name, check_roles
    from codec.pipeline import EncodeOptions

    crops = _crop_paths(save_crop, sources)
    options = EncodeOptions(**opts)
    if loss_params:
        options.loss_params = {"params_file": loss_params}
    # Every output is checked before the model is loaded or any search runs.
    check_report_name(run.report)
    check_roles(sources, {"the output": targets, "--save-crop": crops, "--report": [run.report]})
    existing = {t for t in targets if run.skip_existing and t != "-" and Path(t).is_file()}
    kept_crops = {str(c) for t, c in zip(targets, crops, strict=True) if t in existing and c is not None}
    check_outputs([*targets, *crops, run.report], force=run.force, keep=existing | kept_crops)
    skip = _reusable(existing, options, run.force)
    sharing.board.barrier("checked")
    todo = [i for i, t in enumerate(targets) if t not in skip]
    _encode_files(
        [sources[i] for i in todo],
        [targets[i] for i in todo],
        [crops[i] for i in todo],
        options,
        run,
        len(skip),
        sharing,
        finder,
    )


def _reusable(existing: set[str], options: Any, force: bool) -> set[str]:
    """The existing outputs --skip-existing may keep; an invalid one is an error without --force."""
    from codec.container import read_file
    from codec.pipeline import reusable

    keep = set()
    for t in sorted(existing):
        why = reusable(read_file(t), options)
        if why is None:
            keep.add(t)
        elif not force:
            raise PercodecError(f"{t} exists but {why}: pass --force to replace it")
    return keep


def _encode_files(
    sources: list[str],
    targets: list[str],
    crops: list[Path | None],
    options: Any,
    run: BatchFlags,
    skipped: int,
    sharing: Sharing,
    finder: Any = None,
) -> None:
    """Encode and write each file as its batch finishes (see `encode`): this process's
    share of the batches under torchrun, every batch alone."""
    import time

    from codec.batch import Outputs, Row
    from codec.errors import OutputExistsError
    from codec.images import read_stdin
    from codec.pipeline import encode_iter

    sharded, main_rank = sharing.shard.sharded, sharing.shard.main
    bar = progress_bar(len(sources), "encoding", run.quiet or not main_rank)
    outputs = Outputs(force=run.force, skip_existing=run.skip_existing)
    rows: list[Row] = []
    t0 = time.perf_counter()
    loaded = [read_stdin() if s == "-" else s for s in sources]
    ticks = bar.update if bar is not None and not sharded else None  # alone: fractions of a batch too
    batches = sharing.batches(len(sources), options.batch_size)
    hint = "; rerun with --skip-existing to finish"
    with batch_run(run.report, rows, len(sources), "encoded", hint, run.force, sharing.shard):
        for i, r in encode_iter(loaded, options, ticks, run.keep_going, finder, batches):
            sharing.finished(bar if sharded else None)
            src, dst = sources[i], targets[i]
            if isinstance(r, PercodecError):
                rows.append(Row(src, error=str(r)))
                click.echo(f"percodec: skipped: {r}", err=True)
                continue
            try:
                written = _write_encoded(outputs, r, dst, crops[i])
            except OutputExistsError as exc:  # another run claimed the name after the up-front check
                if not run.keep_going:
                    raise
                rows.append(Row(src, error=str(exc)))
                click.echo(f"percodec: skipped: {exc}", err=True)
                continue
            if not written:
                skipped += 1
                click.echo(f"percodec: skipped: {dst} was written by another run meanwhile", err=True)
                continue
            rows.append(Row(src, dst, r.num_bytes, r.bpp, r.psnr, r.ssim, r.steps, r.seconds))
            for note in r.notes:
                click.echo(f"{src}: note: {note}", err=True)
            if not run.quiet:
                click.echo(_encoded_line(src, dst, r), err=dst == "-")
    if bar is not None:
        bar.close()
    finish_batch(sharing, rows, sources, run, "encoded", skipped, time.perf_counter() - t0)


def _write_encoded(outputs: Any, r: Any, dst: str, crop: Path | None) -> bool:
    """Write one result's file (and its crop); False where another run wrote the file first
    and --skip-existing leaves it."""
    from codec.images import format_for, image_bytes, uint8_to_pil

    if not outputs.write(dst, r.data):
        return False
    if crop is not None:
        outputs.write(crop, image_bytes(uint8_to_pil(r.original), format_for(crop.suffix)))
    return True


def _encoded_line(src: str, dst: str, r: Any) -> str:
    rate = f"{r.bits} bits" if r.bits else f"quality {r.quality} ({Path(r.model).stem})"
    return (
        f"{src} -> {dst}: {r.num_bytes} bytes ({r.bpp:.3f} bpp), PSNR {r.psnr:.2f} dB, SSIM {r.ssim:.3f} "
        f"[{r.loss}, {rate}, {r.steps} steps; {r.where}]"
    )


def _crop_paths(save_crop: str | None, sources: list[str]) -> list[Path | None]:
    """Where --save-crop writes each input's model-sized crop: the file named (one input,
    its extension saying the format) or NAME.crop.png in the folder named."""
    from codec.images import format_for

    if save_crop is None:
        return [None] * len(sources)
    if save_crop == "-":
        raise click.BadParameter("the crop cannot go to stdout: name a file or a folder", param_hint="--save-crop")
    if len(sources) == 1 and Path(save_crop).suffix and not Path(save_crop).is_dir():
        try:
            format_for(Path(save_crop).suffix)
        except PercodecError as exc:
            raise click.BadParameter(f"{save_crop}: {exc}", param_hint="--save-crop") from None
        return [Path(save_crop)]
    return [Path(save_crop) / (Path(s).stem + ".crop.png") for s in sources]
