"""Face recognition for the bench's same-photo and cross-photo columns: dlib's face descriptor.

dlib (the `dlib-bin` wheel) and its trained models from the `face-recognition-models`
package work offline: nothing is downloaded at run time. Two faces are the same person when
their 128-d descriptors lie within `SAME_PERSON` (dlib's usual 0.6) of each other.

Model-sized faces (64x64 aligned crops) are upscaled (`UPSCALE`) for dlib's detector and
landmarker; the decoded version of a face is cut at its *original's* landmarks, so the
descriptors compare faces, not where a landmarker puts its points. The network itself runs
as `codec.facenet` (dlib's, in torch, batched).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from codec.dlibmodels import FaceModelsMissing, available, detector, load_dlib, model_file

__all__ = ["FaceModelsMissing", "SamePerson", "available", "describe", "descriptors", "same_person"]

#: dlib's threshold on descriptor distance for "same person".
SAME_PERSON = 0.6
#: Model-sized faces are upscaled this many times before dlib's detector and landmarker see
#: them: HOG finds faces from about 80 px, and landmarks placed in the whole 64-px image's box
#: wobble (rotation spread ~15 degrees) so far that the originals' own cross-photo accept
#: rate falls from 89% to 19% (500 CelebA valid faces against the whole valid split, measured
#: once with both landmarkings; upscaling 4x without the detector gave 16%).
UPSCALE = 4


@functools.lru_cache(maxsize=1)
def _shape5():
    return load_dlib().shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))


@functools.lru_cache(maxsize=1)
def dlib_recogniser():
    """dlib's own recognition network (C++): the oracle `codec.facenet` is tested against."""
    return load_dlib().face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))


def upscaled(face: np.ndarray) -> np.ndarray:
    """A model-sized face (H, W, 3) uint8, UPSCALE times larger (bicubic)."""
    h, w = face.shape[:2]
    return np.asarray(Image.fromarray(np.ascontiguousarray(face)).resize((w * UPSCALE, h * UPSCALE), Image.BICUBIC))


def landmarks(face: np.ndarray):
    """dlib's 5 landmarks of a model-sized face (H, W, 3), in its `upscaled` copy: found in the
    box dlib's detector gives there (in the whole image where it finds none)."""
    big = upscaled(face)
    found = detector()(big, 0)
    box = found[0] if found else load_dlib().rectangle(0, 0, big.shape[1] - 1, big.shape[0] - 1)
    return _shape5()(big, box)


def chip(face: np.ndarray, shape) -> np.ndarray:
    """dlib's 150x150 recognition chip of a model-sized face (H, W, 3) uint8 at `landmarks`
    (get_face_chip, padding 0.25, on the upscaled copy: what compute_face_descriptor cuts)."""
    from codec.facenet import CHIP_SIZE

    return np.asarray(load_dlib().get_face_chip(upscaled(face), shape, CHIP_SIZE, 0.25))


def descriptors(chips: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """dlib's descriptors (N, 128) of chips, computed by `codec.facenet` (dlib's network in
    torch, equal to dlib's to 1e-6 and batched: about 10x faster here)."""
    import torch

    from codec.facenet import load_facenet

    net, out = load_facenet(), []
    with torch.no_grad():
        for i in range(0, len(chips), batch):
            x = torch.from_numpy(np.stack(chips[i : i + batch]).astype(np.float32)).permute(0, 3, 1, 2)
            out.append(net(x).double().numpy())
    return np.concatenate(out) if out else np.zeros((0, 128))


def _describe(face: np.ndarray) -> tuple[object, np.ndarray]:
    """A model-sized face's (H, W, 3) uint8 `landmarks` and its descriptor."""
    shape = landmarks(face)
    return shape, descriptors([chip(face, shape)])[0]


class SamePerson:
    """Scores decoded faces one at a time, remembering each original's landmarks and
    descriptor (the bench scores many codecs against the same originals)."""

    def __init__(self) -> None:
        self._orig: dict[bytes, tuple[object, np.ndarray]] = {}

    def original(self, orig: np.ndarray) -> tuple[object, np.ndarray]:
        """An original's landmarks (found once) and descriptor."""
        key = orig.tobytes()
        if key not in self._orig:
            self._orig[key] = _describe(orig)
        return self._orig[key]

    def descriptor(self, orig: np.ndarray, dec: np.ndarray) -> np.ndarray:
        """The decoded face's descriptor, its chip cut at the original's landmarks (so that the
        codec is judged on the face, not on where a landmarker puts its points)."""
        shape, _ = self.original(orig)
        return descriptors([chip(dec, shape)])[0]

    def score(self, orig: np.ndarray, dec: np.ndarray) -> tuple[bool, np.ndarray]:
        """Whether the decoded face passes as its original's person, and its descriptor."""
        got = self.descriptor(orig, dec)
        return bool(np.linalg.norm(self.original(orig)[1] - got) < SAME_PERSON), got

    def __call__(self, orig: np.ndarray, dec: np.ndarray) -> bool:
        return self.score(orig, dec)[0]


def describe(faces: np.ndarray) -> np.ndarray:
    """Descriptors (N, 128) of model-sized faces (N, H, W, 3) uint8, each at its own landmarks."""
    return descriptors([chip(f, landmarks(f)) for f in faces])


def same_person(originals: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """Per face: whether the decoded face is recognised as the original's person (bool (N,))."""
    score = SamePerson()
    return np.array([score(a, b) for a, b in zip(originals, decoded, strict=True)])


def different_people_rate(originals: np.ndarray) -> float:
    """Sanity line: the share of pairs of *different* faces (each with the next one) that
    the recogniser calls the same person; 0 would be perfect."""
    a = describe(originals)
    return float((np.linalg.norm(a - np.roll(a, 1, axis=0), axis=1) < SAME_PERSON).mean())
