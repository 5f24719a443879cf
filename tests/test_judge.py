"""The second recogniser (codec.judge): its TensorFlow.js graph run by torch (codec.tfjs)
with TensorFlow's semantics, checked against TensorFlow.js itself under node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import judge
from codec.errors import ModelError
from codec.tfjs import OPS, GraphModel
from tests.conftest import ROOT, SAMPLES

needs_judge = pytest.mark.skipif(not judge.available(), reason="the judge's weights are not fetched (make judge)")
TFJS = Path(os.environ.get("PERCODEC_TFJS", Path.home() / ".cache" / "percodec" / "tfjs"))


def _graph(tmp_path: Path, nodes: list[dict], weights: dict[str, np.ndarray], output: str) -> GraphModel:
    """A hand-written TensorFlow.js graph model: nodes, and its constants' values."""
    (tmp_path / "w.bin").write_bytes(b"".join(v.astype("<f4").tobytes() for v in weights.values()))
    manifest = [{"paths": ["w.bin"], "weights": [{"name": k, "shape": list(v.shape), "dtype": "float32"}
                                                 for k, v in weights.items()]}]  # fmt: skip
    consts = [{"name": k, "op": "Const"} for k in weights]
    spec = {"format": "graph-model", "modelTopology": {"node": [{"name": "x", "op": "Placeholder"}, *consts, *nodes]},
            "weightsManifest": manifest}  # fmt: skip
    (tmp_path / "model.json").write_text(json.dumps(spec))
    return GraphModel(tmp_path / "model.json", output)


def _attr(padding: str, stride: int, fused: list[str]) -> dict:
    import base64

    enc = [base64.b64encode(s.encode()).decode() for s in fused]
    strides = {"list": {"i": ["1", str(stride), str(stride), "1"]}}
    return {"padding": {"s": base64.b64encode(padding.encode()).decode()}, "strides": strides,
            "fused_ops": {"list": {"s": enc}}}  # fmt: skip


def test_same_padding_puts_the_odd_pixel_after_as_tensorflow_does(tmp_path) -> None:
    node = {"name": "y", "op": "_FusedConv2D", "input": ["x", "k", "b"], "attr": _attr("SAME", 2, ["BiasAdd"])}
    m = _graph(tmp_path, [node], {"k": np.ones((3, 3, 1, 1)), "b": np.zeros(1)}, "y")
    y = m(torch.ones(1, 4, 4, 1))[0, :, :, 0]
    assert y.tolist() == [[9.0, 6.0], [6.0, 4.0]]  # TensorFlow: no pad before, one row/column after


def test_fused_bias_and_relu_and_a_depthwise_convolution(tmp_path) -> None:
    node = {"name": "y", "op": "FusedDepthwiseConv2dNative", "input": ["x", "k", "b"],
            "attr": _attr("VALID", 1, ["BiasAdd", "Relu"])}  # fmt: skip
    k = np.stack([np.ones((2, 2)), -np.ones((2, 2))], axis=-1)[..., None]  # (2, 2, 2 channels, 1)
    m = _graph(tmp_path, [node], {"k": k, "b": np.array([0.5, 0.5])}, "y")
    y = m(torch.ones(1, 3, 3, 2))
    assert y.shape == (1, 2, 2, 2) and (y[..., 0] == 4.5).all() and (y[..., 1] == 0).all()  # -4 + 0.5, relu'd


def test_pad_reshape_and_matmul_as_tensorflow_defines_them(tmp_path) -> None:
    nodes = [{"name": "p", "op": "Pad", "input": ["x", "pads"]},
             {"name": "r", "op": "Reshape", "input": ["p", "shape"]},
             {"name": "y", "op": "MatMul", "input": ["r", "w"], "attr": {"transpose_b": {"b": True}}}]  # fmt: skip
    pads = np.array([[0, 0], [1, 0], [0, 2], [0, 0]])  # one row before, two columns after
    m = _graph(tmp_path, nodes, {"pads": pads, "shape": np.array([-1, 12]), "w": np.ones((3, 12))}, "y")
    x = torch.arange(1, 5, dtype=torch.float32).reshape(1, 2, 2, 1)
    y = m(x)
    assert y.shape == (1, 3) and (y == 10).all()  # each row of w sums the 12 values: 1..4 and the zeros padded in
    p = OPS["Pad"]([x, torch.tensor(pads)], {})
    assert p.shape == (1, 3, 4, 1) and p[0, 0].abs().sum() == 0 and p[0, 1:, :2, 0].tolist() == [[1, 2], [3, 4]]


def test_an_unsupported_op_is_refused_when_the_model_loads(tmp_path) -> None:
    with pytest.raises(ModelError, match="ops Erf are not supported"):
        _graph(tmp_path, [{"name": "y", "op": "Erf", "input": ["x"]}], {"k": np.ones(1)}, "y")


@needs_judge
@pytest.mark.slow  # 5 s: node and TensorFlow.js
@pytest.mark.skipif(shutil.which("node") is None or not (TFJS / "node_modules" / "@tensorflow" / "tfjs").is_dir(),
                    reason="node with @tensorflow/tfjs (make judge) is needed for the oracle")  # fmt: skip
@pytest.mark.parametrize("net", list(judge.NETS))
def test_the_judge_equals_tensorflow_js_on_real_faces(tmp_path, net) -> None:
    from PIL import Image

    spec = judge.NETS[net]
    faces = [judge.shown(np.asarray(Image.open(p).convert("RGB").resize((64, 64))), net) for p in
             (SAMPLES / "astronaut.png", SAMPLES / "grace_hopper.png")]  # fmt: skip
    x = np.stack(faces).astype(np.float32)  # 0..255, as the package's library feeds it
    assert x.shape[1:] == (spec.side, spec.side, 3)
    x.tofile(tmp_path / "in.f32")
    model = judge.models_dir() / spec.model
    done = subprocess.run(["node", str(ROOT / "tests" / "tfjs_oracle.js"), str(model), str(tmp_path / "in.f32"), "2",
                           spec.output, str(tmp_path / "out.f32")], cwd=TFJS, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "NODE_PATH": str(TFJS / "node_modules")})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = np.fromfile(tmp_path / "out.f32", np.float32).reshape(2, -1)
    ours = judge.load_judge(net)(torch.from_numpy(x)).numpy()
    assert np.abs(theirs - ours).max() < 1e-4 * np.abs(theirs).max()


@needs_judge
@pytest.mark.parametrize("net", list(judge.NETS))
def test_the_judge_tells_two_people_apart_and_a_face_from_itself(net) -> None:
    from PIL import Image

    faces = np.stack([np.asarray(Image.open(p).convert("RGB").resize((64, 64))) for p in
                      (SAMPLES / "astronaut.png", SAMPLES / "grace_hopper.png")])  # fmt: skip
    d = judge.describe(np.concatenate([faces, faces[:1, :, ::-1]]), net=net)  # the astronaut mirrored is still her
    assert np.allclose(np.linalg.norm(d, axis=1), 1)
    assert d[0] @ d[2] > 0.8 > 0.5 > d[0] @ d[1]


def test_missing_weights_are_one_clear_error_naming_make_judge(tmp_path, monkeypatch) -> None:
    from codec.losses import make_mix

    monkeypatch.setenv("PERCODEC_HUMAN_MODELS", str(tmp_path))
    judge.load_judge.cache_clear()
    try:
        with pytest.raises(ModelError, match="make judge"):
            make_mix("ms-ssim=1,faceres=0.2")
    finally:
        judge.load_judge.cache_clear()


@needs_judge
def test_the_faceres_loss_sees_what_the_judge_sees_and_pulls_towards_the_person() -> None:
    """The loss's descriptor is the judge's own (up to the resize's kernel), it is 0 for a face
    and itself, larger for another person than for a slightly blurred copy, and a gradient
    reaches the input in eval (search) and training (jittered) mode alike."""
    from PIL import Image

    from codec.losses import make_mix

    faces = np.stack([np.asarray(Image.open(p).convert("RGB").resize((64, 64))) for p in
                      (SAMPLES / "astronaut.png", SAMPLES / "grace_hopper.png")])  # fmt: skip
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1
    loss = make_mix("faceres").eval()
    with torch.no_grad():
        ours = loss.descriptors(x).double().numpy()
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    assert (ours * judge.describe(faces)).sum(1).min() > 0.995
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    with torch.no_grad():
        same, near, other = loss(x, x), loss(blurred, x), loss(x.flip(0), x)
    assert same.abs().max() < 1e-5 and (near < other).all()
    for mode in (loss.eval, loss.train):
        mode()
        y = blurred.clone().requires_grad_(True)
        loss(y, x).sum().backward()
        assert y.grad is not None and y.grad.abs().sum() > 0
