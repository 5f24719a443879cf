"""The one device picker: --device auto|cpu|cuda -> torch.device."""

from __future__ import annotations

import torch


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA (this rank's GPU under torchrun) when present, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but no CUDA GPU is available")
        return torch.device("cuda", local_rank)
    return torch.device(name)
