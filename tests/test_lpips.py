"""LPIPS (codec.lpips) against the `lpips` package's own implementation, on the same weights;
its weights file checked before it is read. Skipped where `make lpips` has not fetched them."""

from __future__ import annotations

import io
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from codec import lpips as ours
from codec.errors import ModelError
from tests.conftest import SAMPLES

pytestmark = pytest.mark.skipif(not ours.available(), reason="LPIPS weights not fetched (make lpips)")


@pytest.fixture(scope="module")
def reference():
    """The `lpips` package's LPIPS (v0.1, AlexNet) with the fetched AlexNet convolutions in
    place of torchvision's download; its linear heads are its own."""
    lp = pytest.importorskip("lpips")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = lp.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    state, w = ref.state_dict(), ours.read_weights(ours.weights_file())
    for i, name in enumerate(["net.slice1.0", "net.slice2.3", "net.slice3.6", "net.slice4.8", "net.slice5.10"]):
        state[f"{name}.weight"], state[f"{name}.bias"] = w[f"convs.{i}.weight"], w[f"convs.{i}.bias"]
    ref.load_state_dict(state)
    return ref


def _faces() -> tuple[torch.Tensor, torch.Tensor]:
    """The sample face and its JPEG at quality 10, 64x64, uint8 (1, 3, 64, 64) each."""
    face = Image.open(SAMPLES / "astronaut.png").convert("RGB").resize((64, 64))
    buf = io.BytesIO()
    face.save(buf, "JPEG", quality=10)
    pair = [face, Image.open(io.BytesIO(buf.getvalue()))]
    return tuple(torch.from_numpy(np.array(p)).permute(2, 0, 1)[None] for p in pair)


@pytest.mark.slow  # the reference builds torchvision's whole AlexNet: 1.5 s
def test_the_heads_are_the_lpips_packages_v0_1_alexnet_heads(reference) -> None:
    w = ours.read_weights(ours.weights_file())
    for i in range(5):
        assert torch.allclose(reference.state_dict()[f"lin{i}.model.1.weight"].flatten(), w[f"heads.{i}"], atol=1e-7)


@pytest.mark.slow
def test_distances_equal_the_lpips_packages(reference) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
    y = (x + 0.3 * torch.randn(4, 3, 64, 64, generator=g)).clamp(-1, 1)
    a, b = _faces()
    x, y = torch.cat([x, a.float() / 127.5 - 1]), torch.cat([y, b.float() / 127.5 - 1])
    with torch.no_grad():
        assert torch.allclose(ours.load()(x, y), reference(x, y).flatten(), rtol=1e-5, atol=1e-7)


def test_equal_images_are_at_zero_and_a_coarser_jpeg_is_further() -> None:
    a, b = _faces()
    assert ours.distance(a, a).item() == 0.0
    buf = io.BytesIO()
    Image.fromarray(a[0].permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=90)
    fine = torch.from_numpy(np.array(Image.open(io.BytesIO(buf.getvalue())))).permute(2, 0, 1)[None]
    assert 0 < ours.distance(a, fine).item() < ours.distance(a, b).item()


def test_a_weights_file_is_read_only_if_it_is_the_one_checked(tmp_path) -> None:
    fake = tmp_path / "alexnet.ckpt"
    fake.write_bytes(pickle.dumps({"AlexNet_0": {}}))
    with pytest.raises(ModelError, match="SHA-256 differs"):
        ours.read_weights(fake)

    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        ours._ArraysOnly(io.BytesIO(pickle.dumps(Evil()))).load()
