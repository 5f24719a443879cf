"""Safe file I/O: atomic writes that never clobber without force, and '-' for stdio."""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from pathlib import Path

from codec.errors import OutputExistsError, PercodecError, WriteError


def read_bytes(path: str | Path) -> bytes:
    """Read a whole file, or stdin when path is '-'."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    p = Path(path)
    if not p.is_file():
        raise PercodecError(f"{p}: no such file")
    return p.read_bytes()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes, force: bool = False) -> None:
    """Write atomically (temporary file in the same folder, then into place); '-' is stdout.

    Without force the name is claimed exclusively: the finished temporary file is hard-linked
    to it, which fails if the name exists, so of two runs writing one name at once exactly
    one wins and the other gets OutputExistsError, never a silent replace. With force an
    existing file is replaced (rename). A failed write leaves nothing behind.
    """
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
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
        # mkstemp makes the file private (0600); give it the mode a plain open() would:
        # the replaced file's, or 0666 less the umask.
        os.fchmod(fd, p.stat().st_mode & 0o7777 if p.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _put_in_place(tmp, p, force)
    except OutputExistsError:
        Path(tmp).unlink(missing_ok=True)
        raise
    except OSError as exc:  # full disk, quota, name too long: no partial file, one line
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"{p}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _put_in_place(tmp: str, p: Path, force: bool) -> None:
    if force:
        os.replace(tmp, p)
        return
    try:
        os.link(tmp, p)
    except FileExistsError:
        raise OutputExistsError(f"{p} was written by another run meanwhile: left as it is") from None
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
        raise OutputExistsError(f"{p} was written by another run meanwhile: left as it is") from None
    os.replace(tmp, p)
