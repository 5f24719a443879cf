"""The same-person check (dlib's face descriptor), on the public-domain samples."""

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLES

faces = pytest.importorskip("codec.faces")
pytest.importorskip("dlib")


def _load(name: str) -> np.ndarray:
    return np.asarray(Image.open(SAMPLES / name).convert("RGB").resize((64, 64)))


def test_same_face_is_the_same_person_and_two_people_are_not() -> None:
    a, b = _load("astronaut.png"), _load("grace_hopper.png")
    assert faces.same_person(np.stack([a, b]), np.stack([a, b])).all()
    assert not faces.same_person(np.stack([a, b]), np.stack([b, a])).any()
    noise = np.random.default_rng(0).integers(0, 256, a.shape, dtype=np.uint8)
    assert not faces.same_person(a[None], noise[None]).any()
