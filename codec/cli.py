"""The `percodec` command line: a thin layer over the library.

Every library error (codec.errors.PercodecError, or a ValueError/FileExistsError from
argument checks) becomes one line on stderr and exit code 1 (2 for usage errors), never a
traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
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
@click.option("--dataset", type=click.Choice(["celeba", "mnist", "folder"]), default="celeba", show_default=True,
              help="celeba: official layout (img_align_celeba/ + list_eval_partition.txt); mnist: the four raw "
                   "files; folder: every image under --data-root.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (e.g. ../shared/datasets).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Run folder: checkpoint.pt, generator.safetensors, samples/, train.log.jsonl.")
@click.option("--split", default="train", show_default=True, help="Split to train on (folder: all).")
@click.option("--steps", type=click.IntRange(1), help="Total optimiser steps (a resumed run continues to this).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Total epochs, if --steps is not given [5].")
@click.option("--batch-size", type=click.IntRange(1), default=128, show_default=True,
              help="Global batch size, split evenly across torchrun processes.")
@click.option("--nz", type=click.IntRange(1), default=100, show_default=True, help="Latent size.")
@click.option("--width", "ngf", type=click.IntRange(1), default=64, show_default=True,
              help="Generator width (64 = classic DCGAN, 3.6M parameters at 64x64; 32 = half, 1.1M).")
@click.option("--d-width", "ndf", type=click.IntRange(1), help="Discriminator width [same as --width].")
@click.option("--size", type=click.IntRange(8), help="Image side [celeba/folder 64, mnist 32].")
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto picks CUDA when present.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(1), help="Use only the first N images of the split.")
@click.option("--flip/--no-flip", default=None, help="Random horizontal flips [on, off for mnist].")
@click.option("--sample-every", type=click.IntRange(1), default=500, show_default=True,
              help="Steps between sample grids (fixed latents, so grids are comparable).")
@click.option("--checkpoint-every", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--resume", is_flag=True, help="Continue exactly from --out/checkpoint.pt.")
@click.option("--dry-run", is_flag=True, help="A few steps on fake data: a smoke test needing no dataset.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs still go to train.log.jsonl).")
@friendly_errors
def train_generator(no_progress: bool, **kwargs: Any) -> None:
    """Train the DCGAN generator (the shared decoder) on CelebA, MNIST or an image folder.

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
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        click.echo(
            f"trained to step {result.steps} ({result.images_seen:,} images seen); this run "
            f"{result.seconds:.0f} s at {result.images_per_second:.0f} images/s; "
            f"generator: {result.out / 'generator.safetensors'}"
        )


if __name__ == "__main__":
    main()
