"""`percodec train-generator`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from codec.cli import MAX_SEED, Finite, friendly_errors, main


class MixSource(click.ParamType):
    """DATASET:ROOT=SHARE, e.g. photos:~/data/utkface=0.2."""

    name = "DATASET:ROOT=SHARE"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str, float]:
        import math

        if isinstance(value, tuple):
            return value
        dataset, colon, rest = str(value).partition(":")
        root, eq, share = rest.rpartition("=")
        if not colon or not eq or dataset not in ("celeba", "folder", "photos"):
            self.fail(f"{value!r} is not DATASET:ROOT=SHARE with DATASET celeba, folder or photos", param, ctx)
        try:
            w = float(share)
        except ValueError:
            self.fail(f"the share {share!r} in {value!r} is not a number", param, ctx)
        if not (math.isfinite(w) and 0 < w < 1):
            self.fail(f"the share in {value!r} must lie between 0 and 1", param, ctx)
        path = Path(root).expanduser()
        if not path.is_dir():
            self.fail(f"{root}: no such folder", param, ctx)
        return dataset, str(path), w


@main.command("train-generator")
@click.option(
    "--dataset",
    type=click.Choice(["celeba", "mnist", "folder", "photos"]),
    default="celeba",
    show_default=True,
    help="celeba: official layout (img_align_celeba/ + list_eval_partition.txt); mnist: the four raw "
    "files; folder: every image under --data-root, centre-cropped; photos: every photo under --data-root, "
    "its largest face found and framed as encode frames it (--framing-from), once, cached (--data-cache); "
    "split by a hash of each path (train 90%, valid 5%, test 5%).",
)
@click.option(
    "--mix",
    "mix",
    type=MixSource(),
    multiple=True,
    help="Another source of training images and its share of every batch, e.g. 'photos:~/data/utkface=0.2' "
    "(celeba, folder or photos; repeat for more); --dataset gets the rest. A source smaller than its share "
    "repeats its images.",
)
@click.option(
    "--framing-from",
    default="celeba64",
    show_default=True,
    help="photos: the model whose framing the faces are framed on (the model trained should ship with it).",
)
@click.option("--data-root", type=click.Path(file_okay=False), help="Dataset folder (e.g. ../shared/datasets).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    required=True,
    help="Run folder: checkpoint.pt, generator.safetensors, samples/, train.log.jsonl.",
)
@click.option(
    "--data-cache",
    type=click.Path(file_okay=False),
    help="Where the prepared training images (decoded, faces framed) are cached [OUT/cache]; runs on the same "
    "data can share one (framing a photo folder's faces takes minutes per thousand photos).",
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
    "detail: the RD model the detail latent builds on, or a detail model to fine-tune (its weights and rate weights; "
    "needed on --resume too). rd: --nz may be larger (the "
    "generator starts blind to the extra latent dimensions), or --size twice the source's (its stages at the sides "
    "both have start from the source's). The rate weight starts at "
    "the source's, the optimisers fresh.",
)
@click.option(
    "--objective",
    type=click.Choice(["gan", "rd", "detail"]),
    default="gan",
    show_default=True,
    help="gan: DCGAN generator against its discriminator (the reference method); rd: encoder, learned "
    "prior and generator trained as a compressor (rate + distortion [+ adversarial]), writes model.safetensors; "
    "detail: a spatial detail latent on top of the RD model --init-from (which stays as it is), for the "
    "qualities past a few hundred bytes.",
)
@click.option(
    "--distortion",
    default="mse",
    show_default=True,
    help="rd, detail: distortion from the loss registry, or a weighted mix such as 'ms-ssim=1,mse=0.1'.",
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
    help="rd: quantisation steps drawn per image (log-uniform) so that one model serves every level.",
)
@click.option(
    "--detail-lambdas",
    type=(Finite(min=0, min_open=True), Finite(min=0, min_open=True)),
    default=None,
    help="detail: rate weights per pixel of the coarsest and the finest detail level (log-spaced between) "
    "[a new detail latent: 0.25 0.006; a fine-tune: the model's own]. A smaller second value reaches "
    "larger files.",
)
@click.option(
    "--detail-context-width",
    type=click.IntRange(1),
    default=None,
    help="detail, fine-tuning a detail model: train a new entropy network this many channels wide on "
    "the rate alone, every other weight kept (a lighter one makes decoding faster: every decoder runs "
    "it in float64).",
)
@click.option(
    "--detail-identity",
    type=(Finite(min=0, min_open=True), click.IntRange(2)),
    default=None,
    help="detail: add the identity term (keeps the person) to the distortion at the coarse detail levels "
    "only: weight W at level 1, falling linearly to 0 at level K [off].",
)
@click.option(
    "--valid-every", type=click.IntRange(1), default=250, show_default=True, help="rd: steps between validations."
)
@click.option("--dry-run", is_flag=True, help="A few steps on fake data: a smoke test needing no dataset.")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs still go to train.log.jsonl).")
@friendly_errors
def train_generator(no_progress: bool, **kwargs: Any) -> None:
    """Train the shared decoder on CelebA, MNIST or an image folder: a DCGAN generator alone
    (--objective gan), inside a compressor (--objective rd), or a detail latent on top of a
    trained compressor (--objective detail).

    \b
    Runs on one CPU or GPU, or data-parallel under
      torchrun --nproc-per-node N -m codec.cli train-generator ...
    Example:
      percodec train-generator --dataset mnist --data-root ../shared/datasets --out runs/mnist --epochs 3
      percodec train-generator --objective detail --init-from models/celeba64-id.safetensors \\
          --dataset celeba --data-root ../shared/datasets --out runs/detail --width 32 --nz 512 \\
          --distortion ms-ssim=1,mse=4 --lr 5e-4 --lr-drop 14000 --steps 17000 --batch-size 32
    """
    from codec.shard import Shard
    from codec.train import TrainConfig, train

    _check_objective_options(kwargs["objective"])
    photos = kwargs["dataset"] == "photos" or any(d == "photos" for d, _, _ in kwargs["mix"])
    if not photos and click.get_current_context().get_parameter_source("framing_from") not in (
        None,
        ParameterSource.DEFAULT,
    ):
        raise click.UsageError("--framing-from applies to --dataset photos (or a photos source in --mix)")
    if sum(w for _, _, w in kwargs["mix"]) >= 1:
        raise click.UsageError("--mix shares add up to 1 or more: --dataset must keep a share of the batches")
    kwargs["mix"] = tuple(kwargs["mix"])
    if kwargs["dry_run"] and kwargs["steps"] is None and kwargs["epochs"] is None:
        kwargs["steps"] = 3
    result = train(TrainConfig(progress=not no_progress, **kwargs))
    if result.interrupted:
        click.echo(f"stopped on request at step {result.steps}; checkpoint written: continue with --resume", err=True)
        sys.exit(130)
    if Shard.from_env().main:
        click.echo(
            f"trained to step {result.steps} ({result.images_seen:,} images seen); this run "
            f"{result.seconds:.0f} s at {result.images_per_second:.0f} images/s; "
            f"model: {result.model_path}"
        )


def _check_objective_options(objective: str) -> None:
    """Refuse an option given on the command line that `objective` does not take (it would be
    silently ignored: --objective gan --target-bytes 90 exited 0); which objectives take
    which options is `codec.objectives.OBJECTIVES`."""
    from codec import objectives

    ctx = click.get_current_context()
    given = [
        p.name for p in ctx.command.params if ctx.get_parameter_source(p.name) not in (None, ParameterSource.DEFAULT)
    ]
    try:
        objectives.refuse_others(objective, given)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
