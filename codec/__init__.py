"""percodec: a perceptual face codec built on a shared generative decoder.

import codec
data = codec.encode("face.png")          # about a hundred bytes
image = codec.decode(data)               # a PIL image
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
#: Each public name and the module that holds it, imported on first use: `percodec --help`
#: and the container tools need not import torch's whole stack.
_HOMES = {
    **dict.fromkeys(["encode", "decode", "encode_batch", "encode_iter", "describe", "EncodeOptions", "EncodeResult"],
                    "codec.pipeline"),
    **dict.fromkeys(["PercodecError", "ImageError", "ModelError", "DataError", "WriteError", "OutputExistsError"],
                    "codec.errors"),
    "ContainerError": "codec.container",
}  # fmt: skip
__all__ = [*_HOMES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'codec' has no attribute {name!r}")
