"""Safe file I/O: atomic writes that never clobber without force, and '-' for stdio."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from codec.errors import PercodecError, WriteError


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
    """Write atomically (temporary file in the same folder, then rename); '-' is stdout.

    An existing file is kept unless force is true; a failed write leaves nothing behind.
    """
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    p = Path(path)
    if p.exists() and not force:
        raise PercodecError(f"{p} exists: pass --force to overwrite it")
    if p.is_dir():
        raise PercodecError(f"{p} is a folder")
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
        os.replace(tmp, p)
    except OSError as exc:  # full disk, quota, name too long: no partial file, one line
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"{p}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
