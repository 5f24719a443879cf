"""dlib's recognition network in torch (against dlib itself) and the identity loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import DATASETS, SAMPLES

pytest.importorskip("dlib")
facenet = pytest.importorskip("codec.facenet")
from codec import dlibmodels, faces  # noqa: E402
from codec.losses import make_mix  # noqa: E402
from codec.losses.identity import IdentityLoss  # noqa: E402

CELEBA = DATASETS / "celeba"


def _dlib_chip_and_descriptor(img: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """dlib's own pipeline on a photo: detector, 5 landmarks, 150x150 chip, descriptor."""
    dlib, rec = faces.load_dlib(), faces.dlib_recogniser()
    found = dlib.get_frontal_face_detector()(img, 1)
    if not found:
        return None
    shape = faces._shape5()(img, found[0])
    chip = np.asarray(dlib.get_face_chip(img, shape, facenet.CHIP_SIZE, 0.25))
    return chip, np.asarray(rec.compute_face_descriptor(img, shape))


def test_the_bench_descriptor_is_dlibs() -> None:
    face = np.asarray(Image.open(SAMPLES / "astronaut.png").convert("RGB").resize((64, 64)))
    rec = faces.dlib_recogniser()  # landmarks live on the upscaled copy dlib is shown
    want = np.asarray(rec.compute_face_descriptor(faces.upscaled(face), faces.landmarks(face)))
    assert np.abs(faces.describe(face[None])[0] - want).max() < 1e-4


def _ours(chips: list[np.ndarray]) -> np.ndarray:
    x = torch.from_numpy(np.stack(chips).astype(np.float32)).permute(0, 3, 1, 2)
    with torch.no_grad():
        return facenet.load_facenet()(x).numpy()


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_descriptor_equals_dlibs_on_the_sample_photos() -> None:
    got = [_dlib_chip_and_descriptor(np.asarray(Image.open(SAMPLES / n).convert("RGB")))
           for n in ("astronaut_photo.jpg", "astronaut.png")]  # fmt: skip
    chips, want = zip(*[g for g in got if g is not None], strict=True)
    assert len(chips) == 2
    ours = _ours(list(chips))
    assert _cosine(ours, np.stack(want)).min() >= 0.999
    assert np.abs(ours - np.stack(want)).max() < 1e-3  # the same numbers, not only the same direction


@pytest.mark.slow
@pytest.mark.skipif(not CELEBA.is_dir(), reason="needs ../shared/datasets/celeba")
def test_descriptor_equals_dlibs_on_real_faces() -> None:
    from codec.data import celeba_files

    got = []
    for f in celeba_files(DATASETS, "valid")[:16]:
        g = _dlib_chip_and_descriptor(np.asarray(Image.open(f).convert("RGB")))
        if g is not None:
            got.append(g)
    assert len(got) >= 12
    chips, want = zip(*got, strict=True)
    assert _cosine(_ours(list(chips)), np.stack(want)).min() >= 0.999


def test_parser_refuses_truncated_and_foreign_files(tmp_path) -> None:
    data = facenet.model_file().read_bytes()
    (tmp_path / "cut.dat").write_bytes(data[: len(data) // 2])
    with pytest.raises(facenet.DlibFormatError, match="ends early"):
        facenet.read_dlib_weights(tmp_path / "cut.dat")
    (tmp_path / "long.dat").write_bytes(data + b"\0")
    with pytest.raises(facenet.DlibFormatError, match="left over"):
        facenet.read_dlib_weights(tmp_path / "long.dat")
    with pytest.raises(facenet.DlibFormatError):  # dlib's landmark model: another kind of object
        facenet.read_dlib_weights(dlibmodels.model_file("shape_predictor_5_face_landmarks.dat"))


def _face(name: str) -> torch.Tensor:
    img = Image.open(SAMPLES / name).convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float()[None] / 127.5 - 1


def test_identity_loss_is_zero_for_the_same_face_and_larger_for_another_person() -> None:
    a, b = _face("astronaut.png"), _face("grace_hopper.png")
    loss = IdentityLoss().eval()
    same, other = loss(torch.cat([a, b]), torch.cat([a, b])), loss(a, b)
    assert same.shape == (2,) and same.abs().max() < 1e-5
    assert other.item() > 0.05
    loss.train()  # jittered chips, but the same jitter for both images
    assert loss(a, a).abs().item() < 1e-5


def test_identity_loss_gradient_reaches_the_image_and_eval_mode_repeats() -> None:
    a, b = _face("astronaut.png"), _face("grace_hopper.png")
    x = (0.5 * a + 0.5 * b).requires_grad_(True)
    loss = IdentityLoss().eval()
    v = loss(x, a)
    v.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(loss(x.detach(), a), v.detach())
    loss.train()
    torch.manual_seed(0)
    jittered = [loss(x.detach(), a).item() for _ in range(3)]
    assert len(set(jittered)) == 3  # each call draws its own jitter


def test_several_views_average_fixed_chips_the_first_being_the_plain_one() -> None:
    a, b = _face("astronaut.png"), _face("grace_hopper.png")
    x = torch.cat([0.5 * a + 0.5 * b, a])
    target = torch.cat([a, a])
    one, four = IdentityLoss().eval(), IdentityLoss(views=4).eval()
    got = four(x, target)
    assert got.shape == (2,) and torch.equal(four(x, target), got)  # fixed views: the same each call
    assert got[1].abs() < 1e-5 and got[0] > 0.01  # a face through any view is itself
    plain = four.descriptors(x, four.fixed[:1].expand(2, 3, 3))  # view 0 is no jitter at all
    assert torch.allclose(plain, one.descriptors(x), atol=1e-5)
    assert not torch.allclose(got[0], one(x, target)[0])  # the others are jittered
    for bad in (0, 17, 2.5):
        with pytest.raises(ValueError, match="views"):
            IdentityLoss(views=bad)


def test_identity_mixes_with_other_losses_and_takes_grey_images() -> None:
    mix = make_mix("ms-ssim=1,mse=3,identity=0.5", 3).eval()
    a, b = _face("astronaut.png"), _face("grace_hopper.png")
    assert mix(a, b).item() > mix(a, a).item()
    grey = a.mean(1, keepdim=True)
    assert make_mix("identity", 1).eval()(grey, grey).abs().item() < 1e-5


@pytest.mark.slow
@pytest.mark.skipif(not CELEBA.is_dir(), reason="needs ../shared/datasets/celeba")
def test_the_fixed_warp_agrees_with_dlibs_landmarked_chips_on_model_crops() -> None:
    from codec.data import load_dataset

    crops = load_dataset("celeba", DATASETS, "valid", limit=48).images
    with torch.no_grad():
        ours = IdentityLoss().eval().descriptors(torch.from_numpy(crops).float() / 127.5 - 1).numpy()
    hwc = np.ascontiguousarray(crops.transpose(0, 2, 3, 1))
    rec = faces.dlib_recogniser()  # dlib's own C++ descriptors, each at its crop's own landmarks
    theirs = np.stack([np.asarray(rec.compute_face_descriptor(faces.upscaled(c), faces.landmarks(c))) for c in hwc])
    # one fixed warp against each crop's own landmarks: single faces differ a little
    assert _cosine(ours, theirs).mean() > 0.97  # measured 0.99 on 300 valid crops
    # and it tells people apart: each crop is closer to its own dlib descriptor than to the others'
    d = np.linalg.norm(ours[:, None] - theirs[None], axis=2)
    assert (d.argmin(1) == np.arange(len(d))).mean() > 0.9  # chance: 1/48


def test_a_search_target_is_described_once_and_a_changed_one_again() -> None:
    a, b = _face("astronaut.png"), _face("grace_hopper.png")
    loss = IdentityLoss().eval()
    target = a.clone()
    first = loss(b, target)
    calls = []
    loss.net.register_forward_hook(lambda *_: calls.append(1))
    assert torch.equal(loss(b, target), first) and len(calls) == 1  # only the input went through
    target.copy_(b)  # the same tensor, new contents
    assert loss(b, target).abs().item() < 1e-5 and len(calls) == 3


def test_the_search_tells_the_identity_loss_its_models_framing(tmp_path) -> None:
    from codec.align import read_framing, write_framing
    from codec.generator import resolve_model
    from codec.losses.identity import chip_theta
    from codec.pipeline import search_loss

    mix = search_loss("ms-ssim=1,mse=3,identity=0.3", 3, {}, "celeba64", torch.device("cpu"))
    framing = read_framing(resolve_model("celeba64"))
    assert torch.allclose(mix.parts["identity"].theta, chip_theta(framing))
    # a model framed otherwise (its faces higher in the crop) gets another chip
    other = tmp_path / "other.safetensors"
    other.write_bytes(resolve_model("celeba64").read_bytes())
    write_framing(other, framing - [0, 0.1], 100)
    theta = search_loss("identity", 3, {}, str(other), torch.device("cpu")).theta
    assert not torch.allclose(theta, chip_theta(framing))


def test_moving_a_loss_leaves_the_verifiers_network_alone() -> None:
    loss = IdentityLoss().double()
    assert loss.net.fc.dtype == torch.float64
    assert facenet.load_facenet().fc.dtype == torch.float32
