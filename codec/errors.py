"""The library's error types. The CLI maps each to a one-line message and an exit code."""

from __future__ import annotations


class PercodecError(Exception):
    """Base class of every error the library raises on purpose (bad input, bad file)."""


class ImageError(PercodecError):
    """An input image cannot be read: missing, empty, corrupt, too large or unsupported."""


class ModelError(PercodecError):
    """A generator file is missing, malformed or does not match what was asked for."""


class DataError(PercodecError):
    """A dataset root is missing, has the wrong layout, or holds no usable images."""


class WriteError(PercodecError):
    """An output cannot be written (full disk, read-only folder, name too long): a batch
    run stops here even with --keep-going, since the next output would fail alike."""


class OutputExistsError(PercodecError):
    """An output name exists and overwriting was not allowed, or another run created it
    between the up-front check and the write (the write is exclusive, so it never wins)."""


class TrainingError(PercodecError):
    """A training run cannot start (its folder is taken, its networks would not fit in
    memory) or must stop (a loss or weight became NaN or infinite)."""
