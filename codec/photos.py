"""Training faces from any folder of photos, framed exactly as `encode` frames them.

`train-generator --dataset photos --data-root FOLDER` trains on the faces of a folder of
photos (UTKFace, All-Age-Faces, a user's own): each photo is read, its largest face found and
landmarked by the project's finder and warped onto a model's framing (`--framing-from`,
celeba64's by default), as `encode` does, never a centre crop. A photo where no face is found
is looked at again with a border around it (tight crops such as UTKFace's leave the detector
no margin); one that still shows none, or cannot be read, is named on stderr as it is skipped.

The finder runs once per photo, in worker processes (`codec.isolate.Detector`, one per core:
a crash in native code costs one photo), and the crops are cached in parts of `PART` photos,
each written whole as it is done: an interrupted preparation resumes at its next part.

A folder has no official split: each photo's split is fixed by a hash of its path within the
folder (`split_of`): 90% train, 5% valid, 5% test, the same on every machine and for every
model, so a held-out photo is never trained on.
"""

from __future__ import annotations

import hashlib
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from codec.errors import DataError, ImageError

if TYPE_CHECKING:
    from codec.data import ImageSet

#: Photos per cached part (a few minutes of finding on one core).
PART = 512
#: Of 20 buckets of a hash of the photo's path: which splits hold which.
BUCKETS = {"train": range(0, 18), "valid": range(18, 19), "test": range(19, 20)}


def split_of(relative: str) -> str:
    """The split of a photo by its path within the folder ('a/b.jpg'): train, valid or test."""
    bucket = int.from_bytes(hashlib.sha256(relative.encode()).digest()[:4], "big") % 20
    return next(name for name, r in BUCKETS.items() if bucket in r)


def photo_files(root: str | Path, split: str) -> list[Path]:
    """The photos of a split ('all': every one) under `root`, sorted by path."""
    from codec.fileio import folder_files

    if split != "all" and split not in BUCKETS:
        raise DataError(f"unknown split {split!r} of a photo folder: choose train, valid, test or all")
    root = Path(root)
    files = folder_files(root)
    return files if split == "all" else [f for f in files if split_of(f.relative_to(root).as_posix()) == split]


def frame_photo(path: Path, framing: np.ndarray, size: int, finder: Callable) -> np.ndarray | str:
    """The largest face of a photo as a uint8 (3, size, size) crop on `framing`, or why there
    is none: found and framed as `encode` finds and frames it (`codec.align`: a tight crop is
    looked at inside a border, and mirrored where the framing reaches past it)."""
    from codec import align
    from codec.images import open_image, to_uint8_array

    try:
        img = open_image(path)
        faces = align.find_faces(img, finder)
    except ImageError as exc:
        return str(exc) if str(path) in str(exc) else f"{path}: {exc}"
    if not faces:
        return f"{path}: no face found"
    face = max(faces, key=lambda f: f.area)
    return to_uint8_array(align.framed(img, face, framing, size))


def prepare_photos(
    files: Sequence[Path],
    framing: np.ndarray,
    size: int,
    cache: Path | None,
    workers: int,
    progress: bool = False,
    on_skip: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, list[str], int]:
    """(crops uint8 (N, 3, size, size), their file names, photos skipped), made in parts of
    PART photos by `workers` face finders; each part cached under `cache` as it is done
    (and read back from there), so an interrupted preparation resumes where it stopped."""
    from codec import align
    from codec.data import read_cache, save_npz
    from codec.isolate import Detector

    parts = [files[i : i + PART] for i in range(0, len(files), PART)]
    done: list[ImageSet] = []
    detectors = [Detector() for _ in range(max(1, workers))]
    bar = _bar(len(files), progress)
    try:
        with ThreadPoolExecutor(len(detectors)) as pool:
            for part in parts:
                # keyed by the photos and how crops are framed: a part framed the old way is made again
                key = _key([f"framing {align.FRAMING_VERSION}", *(str(p) for p in part)])
                path = cache / f"part-{key}.npz" if cache is not None else None
                got = read_cache(path, on_skip, "photo(s) without a face") if path is not None else None
                if got is None:
                    got = _make_part(part, framing, size, pool, detectors, on_skip)
                    if path is not None:
                        save_npz(path, images=got.images, names=np.array(got.names), skipped=got.skipped)
                done.append(got)
                if bar is not None:
                    bar.update(len(part))
    finally:
        for d in detectors:
            d.close()
        if bar is not None:
            bar.close()
    images = np.concatenate([s.images for s in done]) if done else np.zeros((0, 3, size, size), np.uint8)
    return images, [n for s in done for n in s.names], sum(s.skipped for s in done)


def _make_part(
    part: Sequence[Path],
    framing: np.ndarray,
    size: int,
    pool: ThreadPoolExecutor,
    detectors: list,
    on_skip: Callable[[str], None] | None,
) -> ImageSet:
    from codec.data import ImageSet

    free: queue.Queue = queue.Queue()
    for d in detectors:
        free.put(d)

    def one(p: Path) -> np.ndarray | str:  # each finder serves one photo at a time
        d = free.get()
        try:
            return frame_photo(p, framing, size, d)
        finally:
            free.put(d)

    jobs = [pool.submit(one, p) for p in part]
    kept, names = [], []
    for p, job in zip(part, jobs, strict=True):
        r = job.result()
        if isinstance(r, str):
            if on_skip is not None:
                on_skip(r)
            continue
        kept.append(r)
        names.append(p.name)
    arr = np.stack(kept) if kept else np.zeros((0, 3, size, size), np.uint8)
    return ImageSet(arr, names, len(part) - len(kept))


def _key(items: list[str]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="finding faces", unit="photo", leave=False, disable=None)
