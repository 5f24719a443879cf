"""`percodec bench`."""

from __future__ import annotations

from typing import Any

import click

from codec import defaults
from codec.cli import MAX_BYTES_OPTION, MAX_RESTARTS, MAX_STEPS, LossMix, friendly_errors, main

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
@click.option(
    "--upscaled",
    multiple=True,
    metavar="MODEL",
    help="A rate-distortion model or scale of a smaller side (e.g. celeba64 beside a 128x128 model): it codes "
    "the images shrunk to its side, and its decoded faces are scored upscaled (bicubic) to the bench's; rows at "
    "its default and each --max-bytes; repeatable.",
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
@click.option(
    "--judge/--no-judge",
    default=True,
    show_default=True,
    help="Verify with the judges too, two recognisers of other lineages than dlib's (HSE FaceRes, which only the "
    "faceres loss searches with, and MobileFaceNet, which nothing does; `make judge` fetches them; about 60 ms a "
    "face): a verification table and verify_judge.png / verify_mobileface.png each.",
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
    from codec.shard import Shard

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
    if not Shard.from_env().main:
        return
    paths, summary = write_outputs(cfg, records)
    click.echo(table(summary))
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))
