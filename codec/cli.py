"""The `percodec` command line: a thin layer over the library.

Every library error (codec.errors.PercodecError, or a ValueError/FileExistsError from
argument checks) becomes one line on stderr and exit code 1 (2 for usage errors), never a
traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from codec import defaults
from codec.errors import PercodecError, WriteError

#: Bounds on counts a user types: far beyond any use, and inside what torch and the
#: file format take (a huge --steps ran without end, a huge --seed overflowed in torch).
MAX_STEPS = 100_000
MAX_SEED = 2**32 - 1
MAX_BYTES_OPTION = 1 << 20
MAX_RESTARTS = 64
MAX_BATCH = 4096


class Finite(click.FloatRange):
    """A float range that also refuses nan and inf (click's FloatRange lets nan through)."""

    name = "float"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        import math

        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected errors into a one-line message and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (PercodecError, ValueError, FileExistsError, FileNotFoundError) as exc:
            click.echo(f"percodec: error: {exc}", err=True)
            sys.exit(1)
        except OSError as exc:  # unreadable input, permissions: name the file, no traceback
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"percodec: error: {where}{exc.strerror or exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("percodec: interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="percodec")
def main() -> None:
    """percodec: compress face images to about a hundred bytes by GAN inversion.

    \b
    A DCGAN generator shared by sender and receiver is the decoder: `encode` searches for
    the latent vector whose generated image best matches yours and stores it in a tiny
    .pgz file; `decode` regenerates the image from it.
    """


@main.command("train-generator")
@click.option(
    "--dataset",
    type=click.Choice(["celeba", "mnist", "folder"]),
    default="celeba",
    show_default=True,
    help="celeba: official layout (img_align_celeba/ + list_eval_partition.txt); mnist: the four raw "
    "files; folder: every image under --data-root.",
)
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (e.g. ../shared/datasets).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Run folder: checkpoint.pt, generator.safetensors, samples/, train.log.jsonl.",
)
@click.option("--split", default="train", show_default=True, help="Split to train on (folder: all).")
@click.option("--steps", type=click.IntRange(1, 10**9), help="Total optimiser steps (a resumed run continues to this).")
@click.option("--epochs", type=Finite(min=0, min_open=True), help="Total epochs, if --steps is not given [5].")
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=128,
    show_default=True,
    help="Global batch size, split evenly across torchrun processes.",
)
@click.option("--nz", type=click.IntRange(1), default=100, show_default=True, help="Latent size.")
@click.option(
    "--width",
    "ngf",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Generator width (64 = classic DCGAN, 3.6M parameters at 64x64; 32 = half, 1.1M).",
)
@click.option("--d-width", "ndf", type=click.IntRange(1), help="Discriminator width [same as --width].")
@click.option("--size", type=click.IntRange(8), help="Image side [celeba/folder 64, mnist 32].")
@click.option("--lr", type=Finite(min=0, min_open=True), default=2e-4, show_default=True)
@click.option(
    "--lr-drop",
    type=click.IntRange(0),
    metavar="STEP",
    help="From this step on, every learning rate x0.1 (the usual final phase of compression training).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto picks CUDA when present.",
)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--limit", type=click.IntRange(1), help="Use only the first N images of the split.")
@click.option("--flip/--no-flip", default=None, help="Random horizontal flips [on, off for mnist].")
@click.option(
    "--sample-every",
    type=click.IntRange(1),
    default=500,
    show_default=True,
    help="Steps between sample grids (fixed latents, so grids are comparable).",
)
@click.option("--checkpoint-every", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--resume", is_flag=True, help="Continue exactly from --out/checkpoint.pt.")
@click.option("--force", is_flag=True, help="Start over in an --out that holds another run's checkpoint or model.")
@click.option(
    "--init-generator",
    type=click.Path(dir_okay=False, exists=True),
    help="gan: start a new run's generator from these weights (.safetensors), e.g. a shipped model.",
)
@click.option(
    "--init-from",
    type=click.Path(dir_okay=False, exists=True),
    help="rd: start a new run from this RD model (encoder, prior, generator), e.g. models/celeba64.safetensors; "
    "--nz may be larger (the generator starts blind to the extra latent dimensions). The rate weight starts at "
    "the source's, the optimisers fresh.",
)
@click.option(
    "--objective",
    type=click.Choice(["gan", "rd"]),
    default="gan",
    show_default=True,
    help="gan: DCGAN generator against its discriminator (the reference method); rd: encoder, learned "
    "prior and generator trained as a compressor (rate + distortion [+ adversarial]), writes model.safetensors.",
)
@click.option(
    "--distortion",
    default="mse",
    show_default=True,
    help="rd: distortion from the loss registry, or a weighted mix such as 'ms-ssim=1,mse=0.1'.",
)
@click.option(
    "--target-bytes",
    type=Finite(min=12, min_open=True),
    default=96.0,
    show_default=True,
    help="rd: mean file size (header included) at quality 4 that the rate weight is steered to.",
)
@click.option(
    "--adv-weight",
    type=Finite(min=0),
    default=0.0,
    show_default=True,
    help="rd: weight of the adversarial term (DCGAN discriminator with DiffAugment); 0 turns it off.",
)
@click.option(
    "--step-range",
    type=(Finite(min=0, min_open=True), Finite(min=0, min_open=True)),
    default=(0.5, 2.0),
    show_default=True,
    help="rd: quantisation steps drawn per image (log-uniform) so that one model serves every quality level.",
)
@click.option(
    "--valid-every", type=click.IntRange(1), default=250, show_default=True, help="rd: steps between validations."
)
@click.option("--dry-run", is_flag=True, help="A few steps on fake data: a smoke test needing no dataset.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs still go to train.log.jsonl).")
@friendly_errors
def train_generator(no_progress: bool, **kwargs: Any) -> None:
    """Train the shared decoder on CelebA, MNIST or an image folder: a DCGAN generator alone
    (--objective gan) or inside a compressor (--objective rd).

    \b
    Runs on one CPU or GPU, or data-parallel under
      torchrun --nproc-per-node N -m codec.cli train-generator ...
    Example:
      percodec train-generator --dataset mnist --data-root ../shared/datasets --out runs/mnist --epochs 3
    """
    from codec.train import TrainConfig, train

    if kwargs["dry_run"] and kwargs["steps"] is None and kwargs["epochs"] is None:
        kwargs["steps"] = 3
    result = train(TrainConfig(progress=not no_progress, **kwargs))
    if result.interrupted:
        click.echo(f"stopped on request at step {result.steps}; checkpoint written: continue with --resume", err=True)
        sys.exit(130)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(
            f"trained to step {result.steps} ({result.images_seen:,} images seen); this run "
            f"{result.seconds:.0f} s at {result.images_per_second:.0f} images/s; "
            f"model: {result.model_path}"
        )


#: The GAN-only model shown beside a rate-distortion model in the bench (face datasets).
GAN_REFERENCE = "celeba64-gan"


def _is_rd(model: str) -> bool:
    from codec.ladder import ladder_for

    return ladder_for(model) is not None


def _default_bench_losses(model: str) -> tuple[str, ...]:
    from codec.defaults import LOSS_NAMES, RD_LOSS

    return (RD_LOSS, *LOSS_NAMES) if _is_rd(model) else LOSS_NAMES


def _default_reference(model: str, dataset: str) -> str:
    from codec.generator import shipped_models

    wanted = dataset != "mnist" and GAN_REFERENCE in shipped_models() and _is_rd(model)
    return GAN_REFERENCE if wanted else "none"


class LossMix(click.ParamType):
    """A registered loss or a weighted mix of them, e.g. 'ms-ssim=1,mse=3'."""

    name = "LOSS"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from codec.defaults import parse_mix

        try:
            parse_mix(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return value


def _expand_inputs(inputs: tuple[str, ...], kind: str = "images") -> list[str]:
    """Files as given, folders replaced by the images (or .pgz files) under them."""
    from codec.data import folder_files

    files: list[str] = []
    for item in inputs:
        if item != "-" and Path(item).is_dir():
            if not os.access(item, os.R_OK | os.X_OK):
                raise PercodecError(f"{item}: folder cannot be read (permission denied)")
            found = folder_files(item) if kind == "images" else sorted(Path(item).rglob("*.pgz"))
            if not found:
                raise PercodecError(f"{item}: folder holds no {kind}")
            files += [str(p) for p in found]
        else:
            files.append(item)
    return files


def _sources_and_targets(
    inputs: tuple[str, ...], out_dir: str | None, suffix: str, kind: str
) -> tuple[list[str], list[str]]:
    """IN OUT, or many inputs (files, folders) written into out_dir as NAME + suffix."""
    from codec.batch import targets_in

    if out_dir is None:
        if len(inputs) != 2:
            raise click.UsageError("give IN and OUT, or several inputs with -o OUTDIR")
        return [inputs[0]], [inputs[1]]
    sources = _expand_inputs(inputs, kind)
    if "-" in sources:
        raise click.UsageError("'-' (stdin) needs the IN OUT form, not -o")
    return sources, targets_in(out_dir, sources, suffix)


def _parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WxH, e.g. 128x128", param_hint="--size") from None
    if not (0 < w <= 8192 and 0 < h <= 8192):
        raise click.BadParameter("sides must be 1..8192", param_hint="--size")
    return w, h


@contextlib.contextmanager
def _batch_run(report: str | None, rows: list, todo: int, verb: str, hint: str, force: bool) -> Iterator[None]:
    """SIGTERM acts as Ctrl-C; either ends the run with exit 130 and a count of what was
    kept. The --report file is written however the run ends."""
    from codec.batch import write_report

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, terminate)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        yield
    except KeyboardInterrupt:
        done = sum(1 for r in rows if not r.error)
        click.echo(f"percodec: interrupted: {done} of {todo} {verb}, finished files kept{hint}", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
        if report is not None:
            write_report(report, rows, force=force)


def _summary(verb: str, done: int, failed: int, skipped: int, seconds: float) -> str:
    parts = [f"{verb} {done} file(s)"]
    if failed:
        parts.append(f"{failed} failed")
    if skipped:
        parts.append(f"{skipped} skipped (already done)")
    return ", ".join(parts) + f" in {seconds:.1f} s"


_BATCH_OPTIONS = [
    click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs."),
    click.option(
        "-k",
        "--keep-going",
        is_flag=True,
        help="Report a bad input by name and go on with the rest (exit code 1 at the end if any failed).",
    ),
    click.option(
        "--report",
        type=click.Path(dir_okay=False),
        help="Write one row per input (input, output, bytes, bpp, PSNR, SSIM, steps, seconds, error) "
        "to this .csv or .json file, also with -q.",
    ),
]


def _batch_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_BATCH_OPTIONS):
        fn = option(fn)
    return fn


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
    help="Shipped model name (celeba64: one quality scale over the models celeba64 and celeba64-id; celeba64-gan: "
    "the GAN-only reference), a .safetensors path, or a .ladder.json path.",
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
    type=click.IntRange(1),
    help="Rate-distortion models: a fixed quality, higher = more bytes (celeba64: 1..N over two models, see "
    "README; a single model: its levels) [per image, the highest quality whose file fits --max-bytes].",
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
@click.option(
    "--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True, help="Seed of the starting latents."
)
@click.option(
    "--crop",
    type=Finite(0, 1, min_open=True),
    help="With --no-align: centre-crop fraction of the shorter side [the model's: 0.787 for CelebA faces].",
)
@click.option(
    "--no-align",
    "no_align",
    is_flag=True,
    help="Do not look for the face: centre-crop instead (photos larger than the model's size are "
    "otherwise searched for a face and framed like the training faces).",
)
@click.option("--face", type=click.IntRange(1), default=1, show_default=True, help="Which face, by size (1 = largest).")
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
@_batch_options
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
    """Compress images to .pgz files of about a hundred bytes.

    \b
    Examples:
      percodec encode face.png face.pgz
      percodec encode --loss ms-ssim --max-bytes 64 face.jpg small.pgz
      percodec encode photos/ more.png -o encoded/ --keep-going --report encoded/report.csv
      cat face.png | percodec encode - - > face.pgz

    Prints each file's size, bits per pixel, and the PSNR/SSIM of exactly what
    `percodec decode` will produce, measured against the model-sized input. Files are
    written as their batch finishes: after Ctrl-C, rerun with --skip-existing to finish.
    """
    if opts["crop"] is not None and not no_align:
        raise click.UsageError("--crop sets the centre crop, which only --no-align uses: add --no-align")
    opts["align"] = not no_align
    sources, targets = _sources_and_targets(inputs, out_dir, ".pgz", "images")
    run = _BatchFlags(force, keep_going, report, quiet, skip_existing)
    with _face_finder(sources, opts["align"]) as finder:
        _encode(sources, targets, opts, finder, loss_params, save_crop, run)


@dataclasses.dataclass(frozen=True)
class _BatchFlags:
    """How a batch command treats its outputs and failures (the _BATCH_OPTIONS, -q, --skip-existing)."""

    force: bool
    keep_going: bool
    report: str | None
    quiet: bool
    skip_existing: bool = False


def _face_finder(sources: list[str], align: bool) -> Any:
    """A face-finder worker started now, before torch loads, when an input will likely be
    searched for a face: its ~0.6 s of model loading then overlaps this process's start-up
    (and a crash in it costs one image). Otherwise the pipeline picks (see encode_iter)."""
    from codec.isolate import Detector

    if align and any(_needs_finding(s) for s in sources[:32]):  # a batch's first images tell
        return Detector(preload=True)
    return contextlib.nullcontext(None)


def _needs_finding(source: str) -> bool:
    # The shipped face models are 64 px: an input of that size (or smaller and square) is
    # coded as it is. A wrong guess costs only the worker's time on another core.
    from PIL import Image

    if source == "-" or not Path(source).is_file():  # never open a pipe here: it would block
        return False
    try:
        with Image.open(source) as im:
            w, h = im.size
    except Exception:
        return False
    return w != h or w > 64


def _encode(
    sources: list[str],
    targets: list[str],
    opts: dict[str, Any],
    finder: Any,
    loss_params: str | None,
    save_crop: str | None,
    run: _BatchFlags,
) -> None:
    """Check every output, then encode what is not done yet (see `encode`)."""
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
    todo = [i for i, t in enumerate(targets) if t not in skip]
    _encode_files(
        [sources[i] for i in todo],
        [targets[i] for i in todo],
        [crops[i] for i in todo],
        options,
        run,
        len(skip),
        finder,
    )


def _reusable(existing: set[str], options: Any, force: bool) -> set[str]:
    """The existing outputs --skip-existing may keep; an invalid one is an error without --force."""
    from codec.fileio import read_bytes
    from codec.pipeline import reusable

    keep = set()
    for t in sorted(existing):
        why = reusable(read_bytes(t), options)
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
    run: _BatchFlags,
    skipped: int,
    finder: Any = None,
) -> None:
    """Encode and write each file as its batch finishes (see `encode`)."""
    import time

    from codec.batch import Outputs, Row
    from codec.errors import OutputExistsError
    from codec.fileio import read_bytes
    from codec.pipeline import encode_iter

    bar = _progress_bar(len(sources), "encoding", run.quiet)
    outputs = Outputs(force=run.force, skip_existing=run.skip_existing)
    rows: list[Row] = []
    t0 = time.perf_counter()
    loaded = [read_bytes(s) if s == "-" else s for s in sources]
    with _batch_run(run.report, rows, len(sources), "encoded", "; rerun with --skip-existing to finish", run.force):
        for i, r in encode_iter(loaded, options, bar.update if bar else None, run.keep_going, finder):
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
    failed = sum(1 for r in rows if r.error)
    if not run.quiet:
        click.echo(_summary("encoded", len(rows) - failed, failed, skipped, time.perf_counter() - t0), err=True)
    if failed:
        sys.exit(1)


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


def _progress_bar(total: int, desc: str, quiet: bool) -> Any:
    """A tqdm bar on stderr counting images (None with -q; hidden when stderr is no terminal)."""
    if quiet:
        return None
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="img",
        desc=desc,
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=None,  # no bar when stderr is not a terminal (logs, pipes)
        bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}]",
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


def _image_format(dst: str | None, fmt: str | None) -> tuple[str, str]:
    """(Pillow format, file suffix) from --format or OUT's extension [PNG]; the two must agree."""
    from PIL import Image

    exts = Image.registered_extensions()
    ext = Path(dst).suffix.lower() if dst not in (None, "-") else ""
    named = exts.get(ext)
    if fmt is None:
        if ext and named not in Image.SAVE:
            raise click.UsageError(f"unknown image extension {ext!r}: use .png, .jpg, .webp ... or --format")
        return (named, ext) if named else ("PNG", ".png")
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
@_batch_options
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

    wh = _parse_size(size)
    pil_format, suffix = _image_format(inputs[-1] if out_dir is None and len(inputs) == 2 else None, fmt)
    sources, targets = _sources_and_targets(inputs, out_dir, suffix, ".pgz files")
    check_report_name(report)
    check_roles(sources, {"the output": targets, "--report": [report]})
    check_outputs([*targets, report], force=force)
    outputs = Outputs(force=force)
    rows: list[Row] = []
    t0 = time.perf_counter()
    with _batch_run(report, rows, len(sources), "decoded", "", force):
        for src, dst in zip(sources, targets, strict=True):
            try:
                rows.append(_decode_one(src, dst, outputs, model, wh, pil_format))
            except PercodecError as exc:
                rows.append(Row(src, error=str(exc)))
                if isinstance(exc, WriteError):
                    raise
                named = str(exc) if str(exc).startswith(src) else f"{src}: {exc}"
                if not keep_going:
                    raise type(exc)(named) from None
                click.echo(f"percodec: skipped: {named}", err=True)
                continue
            if not quiet and dst != "-":
                click.echo(f"{src} -> {dst}", err=True)
    failed = sum(1 for r in rows if r.error)
    if not quiet and len(sources) > 1:
        click.echo(_summary("decoded", len(rows) - failed, failed, 0, time.perf_counter() - t0), err=True)
    if failed:
        sys.exit(1)


def _decode_one(src: str, dst: str, outputs: Any, model: str | None, wh: tuple[int, int] | None, fmt: str) -> Any:
    """Decode one file and write it; its report row."""
    import time

    from codec.batch import Row
    from codec.fileio import read_bytes
    from codec.images import image_bytes
    from codec.metrics import bpp
    from codec.pipeline import decode as decode_image

    t0 = time.perf_counter()
    data = read_bytes(src)
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

    from codec.fileio import read_bytes
    from codec.pipeline import describe

    blocks: list[dict[str, Any]] = []
    failed = 0
    for src in _expand_inputs(inputs, ".pgz files"):
        try:
            blocks.append({"file": src, **describe(read_bytes(src))})
        except PercodecError as exc:
            failed += 1
            blocks.append({"file": src, "error": str(exc)})
            click.echo(f"percodec: error: {src}: {exc}", err=True)
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


@main.command()
@click.option(
    "--dataset",
    type=click.Choice(["celeba", "samples", "folder", "mnist"]),
    default="celeba",
    show_default=True,
    help="samples: the repository's samples/ faces, no data needed.",
)
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (e.g. ../shared/datasets).")
@click.option("--split", default="test", show_default=True, help="Split to report on.")
@click.option("--limit", type=click.IntRange(1), help="Use the first N images of the split.")
@click.option(
    "--loss",
    "losses",
    multiple=True,
    type=LossMix(),
    help="percodec rows, repeatable, mixes allowed [a rate-distortion model's default mix, then every "
    "registered loss].",
)
@click.option(
    "--bits",
    "bits",
    multiple=True,
    type=click.IntRange(1, 16),
    help="Bits per latent dimension, repeatable for a rate curve [7].",
)
@click.option(
    "--steps",
    type=click.IntRange(0, MAX_STEPS),
    help=f"Search steps per image [GAN model {defaults.GAN_STEPS}; rate-distortion model {defaults.RD_STEPS}].",
)
@click.option(
    "--quality",
    "qualities",
    type=click.IntRange(1),
    multiple=True,
    help="Rate-distortion model: quality (qualities), one percodec row each [the default]; every quality is "
    "swept for the plot.",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(1, MAX_BYTES_OPTION),
    multiple=True,
    help="Rate-distortion model: also a row coded with encode --max-bytes N (the best quality that fits, "
    "per image; the first --loss), with eigenface at its bytes; repeatable.",
)
@click.option("--restarts", type=click.IntRange(1, MAX_RESTARTS), default=4, show_default=True)
@click.option("--model", default=None, help="Model name or path [celeba64; mnist32 for --dataset mnist].")
@click.option(
    "--reference-model",
    help="A GAN-only model whose row (its default loss, first --bits) stands beside a rate-distortion model's "
    "[celeba64-gan for face datasets; 'none' to leave it out].",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="runs/bench",
    show_default=True,
    help="Results folder; its cache/ makes an interrupted run resume.",
)
@click.option(
    "--identities",
    type=click.Path(dir_okay=False, exists=True),
    help="--dataset folder: an identity file ('<file> <identity>' per line, CelebA's format, files relative to "
    "--data-root) for the cross-photo verification column [CelebA: its identity_CelebA.txt; without labels "
    "the column is left out].",
)
@click.option("--no-sweep", is_flag=True, help="Skip the extra quality settings drawn in the rate-distortion plot.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def bench(
    losses: tuple[str, ...],
    bits: tuple[int, ...],
    qualities: tuple[int, ...],
    model: str | None,
    reference_model: str | None,
    no_sweep: bool,
    quiet: bool,
    **kwargs: Any,
) -> None:
    """Compare percodec with eigenfaces, JPEG, WebP, AVIF and k-means on a dataset.

    \b
    Writes OUT/results.json, per_image.csv, results.md, rd.png (SSIM and PSNR against bits
    per pixel) and grid.png (what each codec makes of the same faces), and prints the table.
    Protocol: docs/BENCH.md. Example:
      percodec bench --dataset celeba --data-root ../shared/datasets --limit 200
      percodec bench --dataset samples --steps 50       # no data needed
    Under torchrun the images are sharded across processes and merged by rank 0.
    """
    from codec.bench import BenchConfig, run, table, write_outputs

    if kwargs["dataset"] in ("celeba", "folder", "mnist") and not kwargs["data_root"]:
        raise click.UsageError(f"--dataset {kwargs['dataset']} needs --data-root")
    model = model or ("mnist32" if kwargs["dataset"] == "mnist" else "celeba64")
    if reference_model is None:
        reference_model = _default_reference(model, kwargs["dataset"])
    cfg = BenchConfig(
        losses=losses or _default_bench_losses(model),
        bits=bits or (7,),
        qualities=qualities,
        sweep=not no_sweep,
        model=model,
        reference=None if reference_model == "none" else reference_model,
        **kwargs,
    )
    records = run(cfg, progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    paths, summary = write_outputs(cfg, records)
    click.echo(table(summary))
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
