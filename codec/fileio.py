"""Safe file I/O: atomic writes that never clobber without force, and '-' for stdio."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO

from codec.errors import DataError, OutputExistsError, PercodecError, WriteError

#: The file suffixes read as images in a folder of inputs or training photos.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def read_bytes(path: str | Path, limit: int, what: str) -> bytes:
    """Read a whole file, or stdin when path is '-', of at most `limit` bytes: at most
    limit + 1 are read, so an endless pipe or a huge (sparse) file costs no memory, and a
    longer input is refused in one line saying it is too large to be `what`."""
    if str(path) == "-":
        if sys.stdin is None:  # started with stdin closed (<&-)
            raise PercodecError("stdin is closed: nothing to read for '-'")
        data = _read_at_most(sys.stdin.buffer, limit)
        name = "stdin"
    else:
        require_file(path)
        with open(path, "rb") as f:
            data = _read_at_most(f, limit)
        name = str(path)
    if len(data) > limit:
        raise PercodecError(f"{name}: over {limit:,} bytes, too large for {what}")
    return data


def _read_at_most(f: BinaryIO, limit: int) -> bytes:
    chunks, left = [], limit + 1
    while left > 0 and (chunk := f.read(min(left, 1 << 20))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def require_file(path: str | Path, error: type[PercodecError] = PercodecError) -> None:
    """Raise `error` naming what `path` is when it is not a regular file one can read."""
    p = Path(path)
    if p.is_file():
        return
    if p.is_dir():
        raise error(f"{p}: is a folder, not a file (give it with -o OUTDIR to take every file in it)")
    if p.exists():
        raise error(f"{p}: not a regular file (a device or pipe); to read a stream, give '-' and pipe it in")
    raise error(f"{p}: no such file")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes, force: bool = False, mode: int | None = None) -> None:
    """Write atomically (temporary file in the same folder, then into place); '-' is stdout.
    The one atomic writer: models, checkpoints and caches are serialised to bytes first.

    Without force the name is claimed exclusively: the finished temporary file is hard-linked
    to it, which fails if the name exists, so of two runs writing one name at once exactly
    one wins and the other gets OutputExistsError, never a silent replace. With force an
    existing file is replaced (rename). A failed write leaves nothing behind.
    """
    if str(path) == "-":
        _write_stdout(data)
        return
    p = Path(path)
    if p.is_dir():
        raise PercodecError(f"{p} is a folder")
    if p.exists() and not force:
        raise OutputExistsError(f"{p} exists: pass --force to overwrite it")
    if not p.parent.is_dir():
        raise PercodecError(f"folder {p.parent} does not exist")
    try:
        # A short temporary name: a target whose name is at the file system's limit still fits.
        fd, tmp = tempfile.mkstemp(prefix=".percodec-", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        raise WriteError(f"{p}: cannot write ({exc.strerror})") from None
    try:
        # mkstemp makes the file private (0600); give it `mode`, or the one a plain open()
        # would: the replaced file's, or 0666 less the umask.
        if mode is None:
            mode = p.stat().st_mode & 0o7777 if p.exists() else 0o666 & ~_umask()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _put_in_place(tmp, p, force)
    except OSError as exc:  # full disk, quota, name too long: no partial file, one line
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"{p}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_stdout(data: bytes) -> None:
    # Straight to the descriptor: bytes that a full or closed stdout refused would otherwise
    # stay in Python's buffer and fail again at exit (exit code 120 after the message).
    if sys.stdout is None:  # started with stdout closed (>&-)
        raise WriteError("stdout is closed: nowhere to write '-'")
    try:
        sys.stdout.flush()
        try:
            fd = sys.stdout.fileno()
        except (OSError, ValueError):  # a stream without a descriptor (tests, embedding)
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
            return
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise WriteError(f"stdout: cannot write ({exc.strerror or exc})") from None


def _put_in_place(tmp: str, p: Path, force: bool) -> None:
    if force:
        os.replace(tmp, p)
        return
    try:
        os.link(tmp, p)
    except FileExistsError:
        raise _lost_race(p) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        _claim_then_replace(tmp, p)  # a file system without hard links
        return
    os.unlink(tmp)


def _claim_then_replace(tmp: str, p: Path) -> None:
    # The name is claimed with an exclusive create, then the finished file renamed over the
    # claim: still exclusive, though for a moment the name holds an empty file.
    try:
        os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise _lost_race(p) from None
    os.replace(tmp, p)


def _lost_race(p: Path) -> OutputExistsError:
    return OutputExistsError(f"{p} was written by another run meanwhile: left as it is")


def load_torch_file(path: str | Path, what: str, map_location: object = "cpu") -> object:
    """`torch.load(path, weights_only=True)`; a garbage, truncated or foreign file raises
    PercodecError in one line naming it and `what` it should be (torch's own message is a
    paragraph that advises weights_only=False, which would run the file's code)."""
    import pickle
    import warnings

    import torch

    require_file(path)
    try:
        with warnings.catch_warnings():  # a foreign file's "pickle protocol" warning is noise here
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError):
        raise PercodecError(f"{path}: not a readable {what} (not a torch.save file, or cut short)") from None
    except (RuntimeError, ValueError, OSError) as exc:
        cause = str(exc).strip().split(". ")[0].splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise PercodecError(f"{path}: not a readable {what} ({cause})") from None


def folder_files(root: str | Path) -> list[Path]:
    """Every image file under `root`, recursively, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
