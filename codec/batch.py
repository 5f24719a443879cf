"""Batch work over many files: outputs checked before any work, a report of every input.

`check_outputs` refuses, before a model is loaded or a search runs, every output that could
not be written: two inputs mapping to one name, an existing file without --force, a name
longer than the file system allows, a folder that cannot be made or written. Results are
then written one by one as they finish (codec.fileio.write_bytes is atomic), so an
interrupted or failing run keeps everything finished before it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from codec.errors import OutputExistsError, PercodecError
from codec.fileio import write_bytes

REPORT_SUFFIXES = (".csv", ".json")


@dataclass
class Row:
    """One input of a batch run, as the --report file lists it."""

    input: str
    output: str = ""
    bytes: int | None = None
    bpp: float | None = None
    psnr: float | None = None
    ssim: float | None = None
    steps: int | None = None
    seconds: float | None = None
    error: str = ""


def targets_in(out_dir: str | Path, sources: Sequence[str], suffix: str) -> list[str]:
    """Output names for inputs written into one folder: the input's stem + suffix."""
    return [str(Path(out_dir) / (Path(s).stem + suffix)) for s in sources]


def check_outputs(targets: Iterable[str | Path | None], *, force: bool, keep: Collection[str] = ()) -> None:
    """Raise PercodecError for the first output that could not be written (see module doc).

    `keep`: existing outputs the caller will leave alone (e.g. --skip-existing), so their
    existence is not a conflict. '-' (stdout) and None are ignored.
    """
    paths = [Path(t) for t in targets if t is not None and str(t) != "-"]
    twice = [p for p, n in Counter(paths).items() if n > 1]
    if twice:
        raise PercodecError(f"several inputs would write {twice[0]}: rename them or encode them separately")
    for folder in dict.fromkeys(p.parent for p in paths):
        _check_folder(folder)
    for p in paths:
        limit = _name_max(p.parent)
        if len(os.fsencode(p.name)) > limit:
            raise PercodecError(f"{p}: the name is longer than this file system allows ({limit} bytes)")
        if p.is_dir():
            raise PercodecError(f"{p} is a folder")
        if p.exists() and not force and str(p) not in keep:
            raise PercodecError(f"{p} exists: pass --force to overwrite it")


def check_roles(sources: Sequence[str], outputs: dict[str, Sequence[str | Path | None]]) -> None:
    """Refuse an output that is also an input (even with --force: the input is being read)
    or that two kinds of output share (e.g. --save-crop naming OUT). `outputs` maps a kind
    ('output', '--save-crop', '--report') to its paths; '-' and None are ignored."""
    inputs = {_identity(s): s for s in sources if s != "-"}
    owner: dict[object, str] = {}
    for kind, paths in outputs.items():
        for p in paths:
            if p is None or str(p) == "-":
                continue
            key = _identity(p)
            if key in inputs:
                raise PercodecError(f"{p} is an input as well as {kind}: choose another name")
            if owner.setdefault(key, kind) != kind:
                raise PercodecError(f"{p} is named as {owner[key]} and as {kind}: give them different names")


def _identity(path: str | Path) -> object:
    """A key equal for two names of one file (links, relative paths), also for a name that
    does not exist yet."""
    p = Path(path)
    try:
        st = p.stat()
        return (st.st_dev, st.st_ino)
    except OSError:
        return os.path.normcase(os.path.abspath(p))


@dataclass
class Outputs:
    """Writes a batch run's checked outputs: each name claimed exclusively unless `force`
    (codec.fileio.write_bytes), its folder made on first use, so an interrupted run leaves
    no empty folder behind."""

    force: bool = False
    skip_existing: bool = False

    def write(self, path: str | Path, data: bytes) -> bool:
        """Write `data`; False where another run created the name since the check and
        `skip_existing` leaves that file (otherwise OutputExistsError)."""
        if str(path) != "-":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            write_bytes(path, data, force=self.force)
        except OutputExistsError:
            if self.skip_existing:
                return False
            raise
        return True


def _existing_ancestor(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_folder(folder: Path) -> None:
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise PercodecError(f"folder {folder} cannot be made: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        what = "is not writable" if base == folder else f"cannot be made: {base} is not writable"
        raise PercodecError(f"folder {folder} {what}")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(_existing_ancestor(folder), "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def check_report_name(path: str | None) -> None:
    """A --report path must end in .csv or .json (its writability is checked with the outputs)."""
    if path is not None and Path(path).suffix.lower() not in REPORT_SUFFIXES:
        raise PercodecError(f"--report {path}: name it .csv or .json")


def _cell(v: object) -> object:
    return "" if v is None else f"{v:.4f}" if isinstance(v, float) else v


def write_part(path: str | Path, rank: int, rows: Sequence[Row]) -> Path:
    """One process's rows of an interrupted sharded run (rank 0 merges them only at the
    end), beside the --report it was to be part of: REPORT's name with .rankN (then -2, -3,
    ... where an earlier interrupted run left one). The name written."""
    p = Path(path)
    for n in range(1, 1000):
        part = p.with_name(f"{p.stem}.rank{rank}{'' if n == 1 else f'-{n}'}{p.suffix}")
        try:
            write_report(part, rows)
            return part
        except OutputExistsError:
            continue
    raise OutputExistsError(f"{p.parent}: a thousand parts of {p.name} for rank {rank} are there already")


def write_report(path: str | Path, rows: Sequence[Row], force: bool = False) -> None:
    """All rows as CSV or JSON (by the name's suffix), written atomically (exclusively
    unless `force`)."""
    if Path(path).suffix.lower() == ".json":
        text = json.dumps([asdict(r) for r in rows], indent=1) + "\n"
    else:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow([f.name for f in fields(Row)])
        for r in rows:
            writer.writerow([_cell(v) for v in asdict(r).values()])
        text = buf.getvalue()
    write_bytes(path, text.encode(), force=force)
