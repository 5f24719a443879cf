"""The `percodec` command line: a thin layer over the library.

Every library error (codec.errors.PercodecError, or a ValueError/FileExistsError from
argument checks) becomes one line on stderr and exit code 1 (2 for usage errors), never a
traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from codec.errors import PercodecError


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected errors into a one-line message and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (PercodecError, ValueError, FileExistsError, FileNotFoundError) as exc:
            click.echo(f"percodec: error: {exc}", err=True)
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
@click.option("--steps", type=click.IntRange(1), help="Total optimiser steps (a resumed run continues to this).")
@click.option(
    "--epochs", type=click.FloatRange(min=0, min_open=True), help="Total epochs, if --steps is not given [5]."
)
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
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto picks CUDA when present.",
)
@click.option("--seed", type=int, default=0, show_default=True)
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
@click.option(
    "--init-generator",
    type=click.Path(dir_okay=False, exists=True),
    help="Start a new run's generator from these weights (.safetensors), e.g. a shipped model.",
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
    type=click.FloatRange(min=12, min_open=True),
    default=96.0,
    show_default=True,
    help="rd: mean file size (header included) at quality 4 that the rate weight is steered to.",
)
@click.option(
    "--adv-weight",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="rd: weight of the adversarial term (DCGAN discriminator with DiffAugment); 0 turns it off.",
)
@click.option(
    "--step-range",
    type=(click.FloatRange(min=0, min_open=True), click.FloatRange(min=0, min_open=True)),
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


def _loss_names() -> list[str]:
    from codec.losses import LOSSES

    return list(LOSSES)


def _expand_inputs(inputs: tuple[str, ...]) -> list[str]:
    from codec.data import folder_files

    files: list[str] = []
    for item in inputs:
        if item != "-" and Path(item).is_dir():
            found = [str(p) for p in folder_files(item)]
            if not found:
                raise PercodecError(f"{item}: folder holds no images")
            files += found
        else:
            files.append(item)
    return files


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


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="IN... [OUT]")
@click.option(
    "-o",
    "--out-dir",
    type=click.Path(file_okay=False),
    help="Encode every IN (files or folders) into this folder as NAME.pgz; without it, give exactly IN and OUT.",
)
@click.option("--model", default="celeba64", show_default=True, help="Shipped model name or .safetensors path.")
@click.option(
    "--loss",
    type=click.Choice(_loss_names()),
    default="ssim",
    show_default=True,
    help="What the search minimises; see README 'Which loss'.",
)
@click.option(
    "--loss-params",
    type=click.Path(dir_okay=False, exists=True),
    help="Parameter file for the loss (Watson: the authors' .pth state dicts).",
)
@click.option(
    "--steps",
    type=click.IntRange(0),
    help="Most search steps per image [GAN model: 300, stopping early when the loss stalls; "
    "rate-distortion model: 50 of refinement from the encoder's latent, 0 = encoder only].",
)
@click.option(
    "--quality",
    type=click.IntRange(1),
    help="Rate-distortion models: quality level, higher = more bytes [4].",
)
@click.option(
    "--restarts",
    type=click.IntRange(1),
    default=4,
    show_default=True,
    help="Starting latents searched together; the best is kept after 20% of the steps.",
)
@click.option("--bits", type=click.IntRange(1, 16), help="Bits per latent dimension [7: 100-byte files for nz=100].")
@click.option("--max-bytes", type=click.IntRange(1), help="Pick the most bits whose file fits this many bytes.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the starting latents.")
@click.option(
    "--crop",
    type=click.FloatRange(0, 1, min_open=True),
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
    type=click.IntRange(1),
    default=32,
    show_default=True,
    help="Images searched together (where a GPU pays off).",
)
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no report.")
@friendly_errors
def encode(
    inputs: tuple[str, ...],
    out_dir: str | None,
    loss_params: str | None,
    force: bool,
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
      percodec encode photos/ more.png -o encoded/
      cat face.png | percodec encode - - > face.pgz

    Prints each file's size, bits per pixel, and the PSNR/SSIM of exactly what
    `percodec decode` will produce, measured against the model-sized input.
    """
    import time

    from codec.fileio import read_bytes, write_bytes
    from codec.pipeline import EncodeOptions, encode_batch

    if opts["crop"] is not None and not no_align:
        raise click.UsageError("--crop sets the centre crop, which only --no-align uses: add --no-align")
    opts["align"] = not no_align
    if out_dir is None:
        if len(inputs) != 2:
            raise click.UsageError("give IN and OUT, or several inputs with -o OUTDIR")
        sources, targets = [inputs[0]], [inputs[1]]
    else:
        sources = _expand_inputs(inputs)
        if "-" in sources:
            raise click.UsageError("'-' (stdin) needs the IN OUT form, not -o")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        targets = [str(Path(out_dir) / (Path(s).stem + ".pgz")) for s in sources]
        dupes = {t for t in targets if targets.count(t) > 1}
        if dupes:
            raise PercodecError(f"several inputs would write {sorted(dupes)[0]}: rename them or encode separately")
    for t in targets:  # refuse before any work is done
        if t != "-" and Path(t).exists() and not force:
            raise PercodecError(f"{t} exists: pass --force to overwrite it")
    loaded = [read_bytes(s) if s == "-" else s for s in sources]
    options = EncodeOptions(**opts)
    if loss_params:
        options.loss_params = {"params_file": loss_params}
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(
            total=(opts["steps"] or 0) * -(-len(sources) // opts["batch_size"]) or None,
            unit="step",
            desc="searching",
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
            disable=None,  # no bar when stderr is not a terminal (logs, pipes)
        )

    def on_step(step: int, total: int) -> None:
        if bar is not None:
            bar.update(1)

    t0 = time.perf_counter()
    results = encode_batch(loaded, options, on_step)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    crops = _crop_paths(save_crop, sources)
    for src, dst, r, crop_path in zip(sources, targets, results, crops, strict=True):
        write_bytes(dst, r.data, force=force)
        if crop_path is not None:
            from codec.images import uint8_to_pil

            uint8_to_pil(r.original).save(crop_path)
        for note in r.notes:
            click.echo(f"{src}: note: {note}", err=True)
        if not quiet:
            click.echo(
                f"{src} -> {dst}: {r.num_bytes} bytes ({r.bpp:.3f} bpp), PSNR {r.psnr:.2f} dB, SSIM {r.ssim:.3f} "
                f"[{options.loss}, {f'{r.bits} bits' if r.bits else f'quality {r.level}'}, "
                f"{r.steps} steps; {r.where}]",
                err=dst == "-",
            )
    if not quiet:
        click.echo(f"encoded {len(results)} image(s) in {seconds:.1f} s", err=True)


def _crop_paths(save_crop: str | None, sources: list[str]) -> list[Path | None]:
    """Where --save-crop writes each input's model-sized crop (PNG)."""
    if save_crop is None:
        return [None] * len(sources)
    if len(sources) == 1 and Path(save_crop).suffix:
        return [Path(save_crop)]
    folder = Path(save_crop)
    folder.mkdir(parents=True, exist_ok=True)
    return [folder / (Path(s).stem + ".crop.png") for s in sources]


@main.command()
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="OUT")
@click.option("--model", help="Model name or .safetensors path [the shipped model the file was made for].")
@click.option("--size", help="Resize the output to WxH (bicubic), e.g. 128x128 [the model's size].")
@click.option("--format", "fmt", help="Image format when OUT is '-' or has no known extension [png].")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing OUT.")
@friendly_errors
def decode(src: str, dst: str, model: str | None, size: str | None, fmt: str | None, force: bool) -> None:
    """Regenerate an image from a .pgz file; the format follows OUT's extension.

    \b
    Examples:
      percodec decode face.pgz face.png
      percodec decode face.pgz big.jpg --size 256x256
    """
    import io

    from PIL import Image

    from codec.fileio import read_bytes, write_bytes
    from codec.pipeline import decode as decode_image

    wh = _parse_size(size)
    if fmt is None:
        ext = Path(dst).suffix.lower()
        fmt = "PNG" if dst == "-" or not ext else Image.registered_extensions().get(ext)
        if fmt is None:
            raise click.UsageError(f"unknown image extension {ext!r}: use .png, .jpg, .webp ... or --format")
    if dst != "-" and Path(dst).exists() and not force:
        raise PercodecError(f"{dst} exists: pass --force to overwrite it")
    img = decode_image(read_bytes(src), model=model, size=wh)
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt.upper())
    except (KeyError, ValueError, OSError) as exc:
        raise PercodecError(f"cannot write {fmt} images: {exc}") from None
    write_bytes(dst, buf.getvalue(), force=force)


@main.command()
@click.argument("src", metavar="IN")
@friendly_errors
def info(src: str) -> None:
    """Show a .pgz file's header: model, quantiser, sizes."""
    from codec import container
    from codec.fileio import read_bytes
    from codec.pipeline import find_shipped

    data = read_bytes(src)
    c = container.from_bytes(data)
    name = find_shipped(c.fingerprint)
    model = f"{name or 'not a shipped model'} (fingerprint {c.fingerprint.hex()})"
    if isinstance(c, container.CodedContainer):
        rows = [
            ("file", f"{src} ({len(data)} bytes: header+checksum {container.OVERHEAD_V2}, latent {len(c.payload)})"),
            ("format", "percodec .pgz version 2 (entropy-coded latent)"),
            ("model", model),
            ("quality", str(c.level)),
        ]
    else:
        rows = [
            (
                "file",
                f"{src} ({len(data)} bytes: header+checksum {container.OVERHEAD_BYTES}, "
                f"latent {len(data) - container.OVERHEAD_BYTES})",
            ),
            ("format", f"percodec .pgz version {container.VERSION}"),
            ("model", model),
            ("quantiser", f"{container.QUANTIZERS[c.quantizer]}, {c.bits} bits x {c.nz} dimensions"),
            ("image", f"{c.size}x{c.size}, {c.channels} channel(s); {8 * len(data) / c.size**2:.3f} bits per pixel"),
        ]
    for k, v in rows:
        click.echo(f"{k:>10}: {v}")


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
    type=click.Choice(_loss_names()),
    help="percodec rows, repeatable [every registered loss].",
)
@click.option(
    "--bits",
    "bits",
    multiple=True,
    type=click.IntRange(1, 16),
    help="Bits per latent dimension, repeatable for a rate curve [7].",
)
@click.option(
    "--steps", type=click.IntRange(0), help="Search steps per image [GAN model 300; rate-distortion model 50]."
)
@click.option(
    "--quality",
    "qualities",
    type=click.IntRange(1),
    multiple=True,
    help="Rate-distortion model: quality level(s), one percodec row each [4]; every level is swept for the plot.",
)
@click.option("--restarts", type=click.IntRange(1), default=4, show_default=True)
@click.option("--model", default=None, help="Model name or path [celeba64; mnist32 for --dataset mnist].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="runs/bench",
    show_default=True,
    help="Results folder; its cache/ makes an interrupted run resume.",
)
@click.option("--no-sweep", is_flag=True, help="Skip the extra quality settings drawn in the rate-distortion plot.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@friendly_errors
def bench(
    losses: tuple[str, ...],
    bits: tuple[int, ...],
    qualities: tuple[int, ...],
    model: str | None,
    no_sweep: bool,
    quiet: bool,
    **kwargs: Any,
) -> None:
    """Compare percodec with JPEG, WebP, AVIF and k-means on a dataset.

    \b
    Writes OUT/results.json, per_image.csv, results.md, rd.png (SSIM and PSNR against bits
    per pixel) and grid.png (what each codec makes of the same faces), and prints the table.
    Protocol: docs/BENCH.md. Example:
      percodec bench --dataset celeba --data-root ../shared/datasets --limit 200
      percodec bench --dataset samples --steps 50       # no data needed
    Under torchrun the images are sharded across processes and merged by rank 0.
    """
    from codec.bench import BenchConfig, run, summarize, table, write_outputs
    from codec.losses import LOSSES

    if kwargs["dataset"] in ("celeba", "folder", "mnist") and not kwargs["data_root"]:
        raise click.UsageError(f"--dataset {kwargs['dataset']} needs --data-root")
    cfg = BenchConfig(
        losses=losses or tuple(LOSSES),
        bits=bits or (7,),
        qualities=qualities or (4,),
        sweep=not no_sweep,
        model=model or ("mnist32" if kwargs["dataset"] == "mnist" else "celeba64"),
        **kwargs,
    )
    records = run(cfg, progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    paths = write_outputs(cfg, records)
    click.echo(table(summarize(records)))
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
