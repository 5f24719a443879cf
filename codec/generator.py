"""The DCGAN generator (the shared decoder) and its discriminator, with safe weight files.

Weights are stored as safetensors (no pickle: loading a model cannot run code) with string
metadata holding the `ModelConfig` needed to rebuild the network and a model card
(dataset, split, images seen, seed, command, code version). `fingerprint` is a short,
stable hash of the weights as the decoder uses them; compressed files carry it so that a
file is only ever decoded by the generator it was made for.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from codec.defaults import is_int, is_number
from codec.errors import ModelError
from codec.fileio import write_bytes

FORMAT_VERSION = "1"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a generator/discriminator pair.

    nz: latent size; ngf/ndf: generator/discriminator width at their narrowest layer
    (64 is the classic DCGAN); nc: image channels; size: output side (a power of two,
    at least 8); crop: the centre-crop fraction of `images.fit_to_model` used for data.
    """

    nz: int = 100
    ngf: int = 64
    ndf: int = 64
    nc: int = 3
    size: int = 64
    crop: float = 1.0

    def __post_init__(self) -> None:
        for name in ("nz", "ngf", "ndf", "nc", "size"):
            if not is_int(getattr(self, name)):
                raise ValueError(f"{name} must be an integer, got {getattr(self, name)!r}")
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        if min(self.nz, self.ngf, self.ndf) < 1 or self.nc not in (1, 3):
            raise ValueError(f"invalid model config {self}")
        if not is_number(self.crop, 0, 1) or self.crop == 0:
            raise ValueError(f"crop must be a number in (0, 1], got {self.crop!r}")

    @property
    def n_up(self) -> int:
        """Number of stride-2 stages between the 4x4 seed and the output size."""
        return int(math.log2(self.size // 4))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls(**json.loads(text))


def _init_weights(m: nn.Module) -> None:
    # Radford et al.: all weights from N(0, 0.02); BN scale from N(1, 0.02). Nothing to draw
    # for a network built on the meta device to learn its shapes (codec.modelfile), where
    # drawing would cost a second of imports.
    if getattr(m, "weight", None) is not None and m.weight.is_meta:
        return
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """z (B, nz) -> image (B, nc, size, size) in [-1, 1].

    For size 64, ngf 64 (classic DCGAN), shapes are:
      z (B,100,1,1) -ConvT 4x4 s1-> (B,512,4,4) -ConvT s2-> (B,256,8,8) -> (B,128,16,16)
      -> (B,64,32,32) -ConvT s2, tanh-> (B,3,64,64); BatchNorm + ReLU after each hidden layer.
    Size 32 drops the widest stage: (B,256,4,4) -> (B,128,8,8) -> (B,64,16,16) -> (B,nc,32,32).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        ch = c.ngf * 2 ** (c.n_up - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(c.nz, ch, 4, 1, 0, bias=False),  # -> (ch, 4, 4)
            nn.BatchNorm2d(ch),
            nn.ReLU(True),
        ]
        for _ in range(c.n_up - 1):  # each stage doubles the side and halves the channels
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, c.nc, 4, 2, 1, bias=False), nn.Tanh()]  # -> (nc, size, size)
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self._seed(z)
        for layer in itertools.islice(self.main, 1, None):
            x = layer(x)
        return x

    def _seed(self, z: torch.Tensor) -> torch.Tensor:
        # The first layer sees a 1x1 input, so it is a matrix product (nz -> ch*4*4) with the
        # same weights; as one it runs 3-7x faster on a CPU than conv_transpose2d does.
        b, seed = z.shape[0], self.main[0]
        return (z.reshape(b, -1) @ seed.weight.flatten(1)).view(b, seed.out_channels, 4, 4)

    # --- named stages: where another network joins G (codec.detail) ------------------------
    # `main` is [seed ConvT, BN, ReLU] + [ConvT, BN, ReLU] per hidden stage + [ConvT, Tanh];
    # its layer names are part of every model file and fingerprint, so they stay as they are.

    def end_of(self, side: int) -> int:
        """Index in `main` just past the ReLU of the stage whose features are side x side
        (4, 8, ..., size/2)."""
        if side < 4 or side >= self.config.size or side & (side - 1):
            raise ValueError(f"a {self.config.size}px generator has features at sides 4..{self.config.size // 2}, "
                             f"not {side}")  # fmt: skip
        return 3 * int(math.log2(side // 4)) + 3

    def channels_at(self, side: int) -> int:
        """Channels of G's features at `side`."""
        return self.main[self.end_of(side) - 2].num_features

    def features(self, z: torch.Tensor, side: int) -> torch.Tensor:
        """G's feature maps at `side` (after their ReLU) for latents z (B, nz)."""
        x = self._seed(z)
        for layer in itertools.islice(self.main, 1, self.end_of(side)):
            x = layer(x)
        return x

    def draw(
        self,
        f: torch.Tensor,
        side: int,
        adds: tuple[torch.Tensor, ...] = (),
        before_tanh: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The image G draws from its features f at `side`: adds[k] is added to the features
        at side * 2**k (k = 0: f itself), `before_tanh` to the last layer's output."""
        layers = list(self.main)[self.end_of(side) :]
        x = f
        for k in range(0, len(layers) - 2, 3):  # each hidden stage: ConvT, BN, ReLU
            if k // 3 < len(adds):
                x = x + adds[k // 3]
            conv, bn, relu = layers[k : k + 3]
            x = relu(bn(conv(x)))
        if len(adds) > (stages := (len(layers) - 2) // 3):
            x = x + adds[stages]
        x = layers[-2](x)
        return layers[-1](x if before_tanh is None else x + before_tanh)


class Discriminator(nn.Module):
    """image (B, nc, size, size) -> real/fake logit (B,); mirrors the generator.

    For size 64, ndf 64: (B,3,64,64) -conv s2-> (B,64,32,32) -> (B,128,16,16) -> (B,256,8,8)
    -> (B,512,4,4) -conv 4x4 s1-> (B,1,1,1); LeakyReLU(0.2), BatchNorm after all but the first.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = config
        ch = c.ndf
        layers: list[nn.Module] = [nn.Conv2d(c.nc, ch, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for _ in range(c.n_up - 1):
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch * 2),
                nn.LeakyReLU(0.2, True),
            ]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]  # logits, no sigmoid
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


@torch.no_grad()
def recalibrate_batchnorm(g: Generator, batches: int = 32, batch_size: int = 256, seed: int = 0) -> Generator:
    """Return a copy of `g` whose BatchNorm running statistics are exact averages over
    `batches` batches of z ~ N(0, I).

    Training tracks them with a fast-moving average over recent (changing) weights; the
    decoder runs in eval mode, so exact population statistics give cleaner images.
    """
    g = copy.deepcopy(g)
    device = next(g.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    for m in g.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    g.train()
    for _ in range(batches):
        g(torch.randn(batch_size, g.config.nz, generator=gen).to(device))
    g.eval()
    return g


def _decoder_state(g: Generator) -> dict[str, torch.Tensor]:
    # num_batches_tracked plays no part in eval-mode decoding, so it is not part of a model.
    return {k: v for k, v in g.state_dict().items() if not k.endswith("num_batches_tracked")}


def fingerprint(g: Generator) -> bytes:
    """8-byte SHA-256 prefix of the config and the float32 weights (sorted by name).

    Computed on the weights as decoding uses them, so a half-precision file and the
    float32 generator loaded from it have the same fingerprint.
    """
    h = hashlib.sha256(g.config.to_json().encode())
    for name, t in sorted(_decoder_state(g).items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.digest()[:8]


def save_generator(g: Generator, path: str | Path, card: dict[str, str] | None = None, half: bool = False) -> None:
    """Write `g` as safetensors with its config and model card in the metadata.

    half=True stores float16 weights (the fingerprint is then that of the rounded weights,
    which is what every decoder loads). The write is atomic.
    """
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in _decoder_state(g).items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {"percodec_model": FORMAT_VERSION, "config": g.config.to_json()}
    meta["card"] = json.dumps(card or {}, sort_keys=True)
    write_model_file(path, state, meta)


def write_model_file(path: str | Path, state: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Atomically write tensors and string metadata as safetensors, readable by everyone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # package data: readable by everyone, like any installed file
    write_bytes(path, safetensors_bytes(state, metadata=meta), force=True, mode=0o644)


def read_metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's metadata alone (no tensors read); ModelError when unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"{path}: not a readable safetensors model ({exc})") from None


def read_model_file(path: str | Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a safetensors file; ModelError when missing or unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model file") from None
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"{path}: not a readable safetensors model ({exc})") from None


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[Generator, dict[str, str]]:
    """Load a generator (eval mode, float32, frozen) and its model card from safetensors."""
    from codec.modelfile import build_checked, card_field, config_field

    path = Path(path)
    meta, state = read_model_file(path)
    if meta.get("percodec_model") != FORMAT_VERSION:
        from codec.family import of_kind

        other = of_kind(meta.get("percodec_model"))
        if other is not None:
            raise ModelError(f"{path} is a {other.words}, not a GAN-only generator (training warm-starts one with "
                             f"--objective {other.objective} --init-from)")  # fmt: skip
    if meta.get("percodec_model") != FORMAT_VERSION or "config" not in meta:
        raise ModelError(f"{path}: not a percodec generator (missing percodec metadata)")
    config = config_field(path, meta, "config", ModelConfig)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    g = build_checked(path, lambda: Generator(config), state)
    g.eval().requires_grad_(False).to(device)
    return g, card_field(path, meta)


def shipped_models() -> dict[str, Path]:
    """Name -> path of every generator shipped with the package (models/*.safetensors)."""
    root = Path(str(resources.files("codec.models")))
    return dict(_shipped_in(root, root.stat().st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _shipped_in(root: Path, mtime_ns: int) -> tuple[tuple[str, Path], ...]:
    # Cached per folder state (a model added or removed changes its mtime): decoding many
    # files looks models up for each one.
    return tuple(sorted((p.name.removesuffix(".safetensors"), p) for p in root.glob("*.safetensors")))


def resolve_model(name_or_path: str | Path) -> Path:
    """A shipped model's name (e.g. 'celeba64') or a path to a .safetensors file -> path."""
    p = Path(name_or_path)
    shown = str(p) if len(str(p)) <= 200 else str(p)[:100] + "..."
    try:
        exists = p.exists()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL in it
        raise ModelError(f"{shown!r}: not a usable model path ({getattr(exc, 'strerror', None) or exc})") from None
    if p.suffix == ".safetensors" or exists:
        if p.is_dir():
            raise ModelError(f"{shown}: is a folder, not a model file (.safetensors or .ladder.json)")
        if not p.is_file():
            raise ModelError(f"{shown}: {'not a regular file (a device or pipe)' if exists else 'no such model file'}")
        return p
    models = shipped_models()
    if str(name_or_path) in models:
        return models[str(name_or_path)]
    raise ModelError(
        f"unknown model {shown!r}: shipped models are {', '.join(models) or 'none'}, "
        "or give a path to a .safetensors file"
    )
