"""Shared fixtures: tiny generators, fake datasets, paths to optional real data."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.generator import Generator, ModelConfig, save_generator

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DATASETS = SHARED / "datasets"
WATSON_REF = SHARED / "reference" / "watson"
SAMPLES = ROOT / "samples"


def tiny_config(nc: int = 3, size: int = 16, nz: int = 8) -> ModelConfig:
    return ModelConfig(nz=nz, ngf=4, ndf=4, nc=nc, size=size, crop=1.0)


def seed_rounding_depends_on_batch(monkeypatch) -> None:
    """Emulate MKL on AVX-512 Intel CPUs, where the last bits of the generator's seed layer
    (a matrix product) depend on the batch's row count: a relative 2^-22 jitter keyed to it."""
    forward = Generator.forward

    def jitter(_module, args):
        (x,) = args
        sign = torch.randint(-1, 2, x.shape[1:], generator=torch.Generator().manual_seed(len(x)))
        return (x * (1 + sign.to(x) * 2.0**-22),)

    def jittered_forward(self, z):
        hook = self.main[1].register_forward_pre_hook(jitter)
        try:
            return forward(self, z)
        finally:
            hook.remove()

    monkeypatch.setattr(Generator, "forward", jittered_forward)


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail if the model is loaded (so no search can have started)."""

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr("codec.zoo.load_model", refuse)


@pytest.fixture
def tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(tiny_config()).eval()


@pytest.fixture
def tiny_model_file(tmp_path: Path, tiny_generator: Generator) -> Path:
    path = tmp_path / "tiny.safetensors"
    save_generator(tiny_generator, path, {"dataset": "none"})
    return path


def _face_like(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    arr = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return Image.fromarray(arr).resize((w, h), Image.Resampling.BILINEAR)


@pytest.fixture
def fake_celeba(tmp_path: Path) -> Path:
    """A CelebA-layout folder: 6 train, 2 valid, 2 test JPEGs plus one corrupt train file."""
    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(1, 11):
        name = f"{i:06d}.jpg"
        _face_like(rng, 178, 218).save(root / "img_align_celeba" / name, quality=90)
        lines.append(f"{name} {0 if i <= 6 else (1 if i <= 8 else 2)}")
    (root / "img_align_celeba" / "000011.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    lines.append("000011.jpg 0")
    lines.append("000012.jpg 0")  # listed but absent (a subset of the full download)
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture
def fake_mnist(tmp_path: Path) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    write_idx(raw / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (5010, 28, 28)))
    write_idx(raw / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (7, 28, 28)))
    return tmp_path


def run_torchrun(args: list[str], nproc: int = 2, timeout: int = 300):
    """Run `python -m torch.distributed.run --standalone` on this checkout; returns the process."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
