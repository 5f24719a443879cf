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

from codec.defaults import MAX_BATCH, MAX_BYTES_OPTION, MAX_RESTARTS, MAX_SEED, MAX_SIDE, MAX_STEPS  # noqa: F401
from codec.errors import PercodecError


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
        except BrokenPipeError:  # `percodec models | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
            sys.exit(128 + signal.SIGPIPE)  # as a tool killed by SIGPIPE, which the shell expects
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
    """percodec: a perceptual face codec, about a hundred bytes a face (up to ~1 KB).

    \b
    A trained generator shared by sender and receiver is the decoder: `encode` finds the
    face in a photo, frames it, maps it to latents with an encoder, refines them under a
    perceptual loss and entropy-codes them into a small .pgz file; `decode` regenerates the
    face. The GAN-only search of the original design stays as the reference method.
    """


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


def expand_inputs(inputs: tuple[str, ...], kind: str = "images") -> list[str]:
    """Files as given, folders replaced by the images (or .pgz files) under them."""
    from codec.fileio import folder_files

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


def sources_and_targets(
    inputs: tuple[str, ...], out_dir: str | None, suffix: str, kind: str
) -> tuple[list[str], list[str]]:
    """IN OUT, or many inputs (files, folders) written into out_dir as NAME + suffix."""
    from codec.batch import targets_in

    if out_dir is None:
        if len(inputs) != 2:
            raise click.UsageError("give IN and OUT, or several inputs with -o OUTDIR")
        return [inputs[0]], [inputs[1]]
    sources = expand_inputs(inputs, kind)
    if "-" in sources:
        raise click.UsageError("'-' (stdin) needs the IN OUT form, not -o")
    return sources, targets_in(out_dir, sources, suffix)


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not WxH, e.g. 128x128", param_hint="--size") from None
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise click.BadParameter(f"sides must be 1..{MAX_SIDE}", param_hint="--size")
    return w, h


@contextlib.contextmanager
def batch_run(
    report: str | None, rows: list, todo: int, verb: str, hint: str, force: bool, shard: Any = None
) -> Iterator[None]:
    """SIGTERM acts as Ctrl-C; either ends the run with exit 130 and a count of what was
    kept. The --report file is written however the run ends; in a sharded run (`shard`,
    whose rank 0 merges the report at the end) only if interrupted, as this process's part
    (`codec.batch.write_part`)."""
    from codec.batch import write_part, write_report

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    sharded = shard is not None and shard.sharded
    old = signal.signal(signal.SIGTERM, terminate)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        yield
    except KeyboardInterrupt:
        done = sum(1 for r in rows if not r.error)
        kept = f"; this process's rows in {write_part(report, shard.rank, rows)}" if sharded and report else ""
        click.echo(f"percodec: interrupted: {done} of {todo} {verb}, finished files kept{hint}{kept}", err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, old)
        signal.signal(signal.SIGINT, old_int)
        if report is not None and not sharded:
            write_report(report, rows, force=force)


def summary(verb: str, done: int, failed: int, skipped: int, seconds: float) -> str:
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


def batch_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_BATCH_OPTIONS):
        fn = option(fn)
    return fn


@dataclasses.dataclass(frozen=True)
class BatchFlags:
    """How a batch command treats its outputs and failures (the _BATCH_OPTIONS, -q, --skip-existing)."""

    force: bool
    keep_going: bool
    report: str | None
    quiet: bool
    skip_existing: bool = False


def progress_bar(total: int, desc: str, quiet: bool) -> Any:
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


@dataclasses.dataclass
class Sharing:
    """How a batch command shares its inputs with the other processes of a torchrun run
    (codec.shard): one alone has a board in memory and works as before."""

    shard: Any  # codec.shard.Shard
    board: Any  # codec.shard.Board

    @classmethod
    def start(cls, command: str, sources: list[str], targets: list[str]) -> Sharing:
        """This process's place; under torchrun its share of the cores, and '-' refused."""
        from codec.shard import Board, Shard

        shard = Shard.from_env()
        if shard.sharded:
            if "-" in sources or "-" in targets:
                raise click.UsageError("'-' (stdin or stdout) cannot be shared by torchrun's processes: name files")
            import torch

            torch.set_num_threads(shard.cpu_threads())
        return cls(shard, Board(shard, command))

    def batches(self, n: int, size: int) -> Any:
        """The batches of inputs 0..n-1 this process claims (all of them, alone)."""
        return self.board.batches(range(n), size)

    def finished(self, bar: Any, n: int = 1) -> None:
        """n more inputs done here; rank 0's bar shows the count over every process."""
        done = self.board.done(n)
        if bar is not None:
            bar.update(done - bar.n)

    def merge(self, rows: list, sources: list[str]) -> tuple[list, list[int]] | None:
        """On rank 0: every process's rows in input order, and each rank's count of files
        made; None on the others."""
        from codec.batch import Row

        parts = self.board.gather([dataclasses.asdict(r) for r in rows])
        if parts is None:
            return None
        order = {s: i for i, s in enumerate(sources)}
        merged = sorted((Row(**r) for part in parts for r in part), key=lambda r: order.get(r.input, len(order)))
        return merged, [sum(1 for r in part if not r["error"]) for part in parts]


def finish_batch(sharing: Sharing, rows: list, sources: list[str], run: BatchFlags, verb: str, skipped: int,
                 seconds: float, show: bool = True) -> None:  # fmt: skip
    """End a batch command: the summary (`show`, and not -q) and, for a sharded run, the
    merged --report with each rank's count, on rank 0; exit 1 where an input failed (on
    rank 0: any process's)."""
    from codec.batch import write_report

    counts = [len(rows) - sum(1 for r in rows if r.error)]
    if sharing.shard.sharded:
        merged = sharing.merge(rows, sources)
        if merged is None:  # not rank 0: it reports for everyone
            sys.exit(1 if any(r.error for r in rows) else 0)
        rows, counts = merged
        if run.report is not None:
            write_report(run.report, rows, force=run.force)
    failed = sum(1 for r in rows if r.error)
    if show and not run.quiet:
        line = summary(verb, len(rows) - failed, failed, skipped, seconds)
        if len(counts) > 1:
            line += f" ({', '.join(f'rank {r}: {n}' for r, n in enumerate(counts))})"
        click.echo(line, err=True)
    if failed:
        sys.exit(1)


# The commands register themselves on `main` as their modules load.
from codec.cli import bench_cmd, decode_cmd, encode_cmd, models_cmd, ship_cmd, train_cmd  # noqa: E402,F401 isort: skip
