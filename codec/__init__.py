"""percodec: a perceptual image codec built on GAN inversion.

import codec
data = codec.encode("face.png")          # about a hundred bytes
image = codec.decode(data)               # a PIL image
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = [
    "encode", "decode", "encode_batch", "encode_iter", "describe", "EncodeOptions", "EncodeResult",
    "PercodecError", "ImageError", "ModelError", "DataError", "WriteError", "OutputExistsError", "ContainerError",
    "__version__",
]  # fmt: skip
_PIPELINE = {"encode", "decode", "encode_batch", "encode_iter", "describe", "EncodeOptions", "EncodeResult"}
_ERRORS = {"PercodecError", "ImageError", "ModelError", "DataError", "WriteError", "OutputExistsError"}


def __getattr__(name: str) -> Any:
    # Lazy: `percodec --help` and the container tools need not import torch's whole stack.
    if name in _PIPELINE:
        from codec import pipeline

        return getattr(pipeline, name)
    if name in _ERRORS:
        from codec import errors

        return getattr(errors, name)
    if name == "ContainerError":
        from codec.container import ContainerError

        return ContainerError
    raise AttributeError(f"module 'codec' has no attribute {name!r}")
