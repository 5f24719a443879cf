"""percodec: a perceptual image codec built on GAN inversion.

import codec
data = codec.encode("face.png")          # about a hundred bytes
image = codec.decode(data)               # a PIL image
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["encode", "decode", "encode_batch", "EncodeOptions", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `percodec --help` and the container tools need not import torch's whole stack.
    if name in ("encode", "decode", "encode_batch", "EncodeOptions"):
        from codec import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'codec' has no attribute {name!r}")
