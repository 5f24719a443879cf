"""Datasets: CelebA (official layout), MNIST (its four raw files) and any image folder.

Every dataset is turned into one uint8 tensor (N, C, size, size) by the shared
preprocessing `images.fit_to_model`, decoded in parallel once and cached as .npy, so the
training loop indexes memory and never waits on JPEG decoding. Unreadable images are
skipped and counted, never a crash.

Splits: CelebA uses list_eval_partition.txt (0 train, 1 valid, 2 test). MNIST: train is
the first 55,000 images of the training file, valid the last 5,000, test the t10k file.
A folder has a single split "all" (other split names are refused).

torchvision.datasets.CelebA is not used: it insists on every annotation file of the full
download and their checksums, while a CelebA subset (or a copy without the attribute
files) only needs img_align_celeba/ and list_eval_partition.txt here.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import sys
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codec.errors import DataError, ImageError
from codec.fileio import folder_files
from codec.images import CELEBA_CROP, fit_to_model, open_image, to_uint8_array

DATASETS = ("celeba", "mnist", "folder", "photos")
SPLITS = {"train": 0, "valid": 1, "test": 2}
MNIST_VALID = 5000


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset gives a model by default: channels, side and crop fraction."""

    nc: int
    size: int
    crop: float


DEFAULTS = {
    "celeba": DatasetInfo(nc=3, size=64, crop=CELEBA_CROP),
    "mnist": DatasetInfo(nc=1, size=32, crop=1.0),
    "folder": DatasetInfo(nc=3, size=64, crop=1.0),
    "photos": DatasetInfo(nc=3, size=64, crop=1.0),  # framed by a model's framing (codec.photos), not cropped
}


@dataclass
class ImageSet:
    """A preprocessed split: `images` uint8 (N, C, H, W), names, and how many were skipped."""

    images: np.ndarray
    names: list[str]
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.images)


def find_celeba(root: str | Path) -> Path:
    """Accept the folder holding img_align_celeba/ or one that holds celeba/ in turn."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist: pass --data-root pointing at your CelebA copy")
    for cand in (root, root / "celeba"):
        if (cand / "img_align_celeba").is_dir() and (cand / "list_eval_partition.txt").is_file():
            return cand
    raise DataError(
        f"{root} is not a CelebA folder: expected img_align_celeba/ and list_eval_partition.txt "
        "(the official layout) in it or in its celeba/ subfolder"
    )


def celeba_files(root: str | Path, split: str) -> list[Path]:
    """Image paths of a CelebA split, in partition-file order, skipping absent files."""
    root = find_celeba(root)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    want = str(SPLITS[split])
    folder = root / "img_align_celeba"
    present = set(os.listdir(folder))
    files = []
    for line in (root / "list_eval_partition.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == want and parts[0] in present:
            files.append(folder / parts[0])
    return files


def read_identities(path: str | Path) -> dict[str, str]:
    """An identity file in CelebA's format (`identity_CelebA.txt`: one '<file> <identity>' per
    line, no header) as {file: identity}; also what `bench --identities` reads for a folder
    (file names relative to the folder)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"identity file {path} does not exist")
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}, line {n}: expected '<file> <identity>', found {line.strip()!r}")
        out[parts[0].strip()] = parts[1]
    if not out:
        raise DataError(f"identity file {path} holds no '<file> <identity>' lines")
    return out


def celeba_identities(root: str | Path) -> dict[str, str] | None:
    """CelebA's identity labels (identity_CelebA.txt beside the partition file), or None
    where the copy has none."""
    path = find_celeba(root) / "identity_CelebA.txt"
    return read_identities(path) if path.is_file() else None


def _mnist_dir(root: Path) -> Path:
    for cand in (root, root / "raw", root / "MNIST" / "raw"):
        if (cand / "train-images-idx3-ubyte.gz").is_file() or (cand / "train-images-idx3-ubyte").is_file():
            return cand
    raise DataError(
        f"{root} has no MNIST files: expected train-images-idx3-ubyte.gz etc. in it, in raw/ or in MNIST/raw/"
    )


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as a numpy array.

    Our own reader, not torchvision.datasets.MNIST: that class only reads the unpacked
    files, so it would have to write them beside the read-only gzipped originals.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file")
    return body.reshape(dims)


def load_mnist(root: str | Path, split: str, size: int = 32) -> ImageSet:
    """MNIST digits, zero-padded from 28x28 to `size` (32: the classic LeNet padding)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist: pass --data-root pointing at MNIST")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    d = _mnist_dir(root)
    stem = "t10k" if split == "test" else "train"
    path = d / f"{stem}-images-idx3-ubyte.gz"
    if not path.exists():
        path = d / f"{stem}-images-idx3-ubyte"
    x = read_idx(path)
    if split == "train":
        x = x[:-MNIST_VALID]
    elif split == "valid":
        x = x[-MNIST_VALID:]
    if size < 28:
        raise DataError("MNIST needs size >= 28")
    pad = size - 28
    x = np.pad(x, ((0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
    return ImageSet(np.ascontiguousarray(x[:, None]), [f"{stem}-{i}" for i in range(len(x))])


def _prepare_one(args: tuple[str, int, int, float]) -> np.ndarray | str:
    """The preprocessed image, or why it could not be read."""
    path, nc, size, crop = args
    try:
        return to_uint8_array(fit_to_model(open_image(path, channels=nc), size, crop))
    except ImageError as exc:
        return str(exc) if path in str(exc) else f"{path}: {exc}"


def prepare_files(
    files: Sequence[Path],
    nc: int,
    size: int,
    crop: float,
    workers: int | None = None,
    progress: bool = False,
    on_skip: Callable[[str], None] | None = None,
) -> ImageSet:
    """Decode and preprocess image files in parallel; unreadable ones are skipped, counted
    and each passed to `on_skip` (why, naming the file) as it is met."""
    jobs = [(str(f), nc, size, crop) for f in files]
    workers = workers or min(len(jobs), os.cpu_count() or 1) or 1
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(jobs) > 64:
            ex = stack.enter_context(ProcessPoolExecutor(workers))
            stream = ex.map(_prepare_one, jobs, chunksize=64)
        else:
            stream = map(_prepare_one, jobs)
        results = []
        for r in _progress(stream, len(jobs), progress):
            if isinstance(r, str):
                if on_skip is not None:
                    on_skip(r)
                r = None
            results.append(r)
    keep = [i for i, r in enumerate(results) if r is not None]
    arr = np.stack([results[i] for i in keep]) if keep else np.zeros((0, nc, size, size), np.uint8)
    return ImageSet(arr, [Path(files[i]).name for i in keep], skipped=len(files) - len(keep))


def _progress(it, total: int, enabled: bool):
    if not enabled:
        return it
    from tqdm import tqdm

    return tqdm(it, total=total, desc="preparing images", unit="img", leave=False, disable=None)


def load_dataset(
    dataset: str,
    root: str | Path,
    split: str = "train",
    size: int | None = None,
    nc: int | None = None,
    crop: float | None = None,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    on_skip: Callable[[str], None] | None = None,
    framing: np.ndarray | None = None,
) -> ImageSet:
    """Load a split of a dataset as preprocessed uint8 images, cached under `cache_dir`.

    dataset: 'celeba', 'mnist', 'folder' or 'photos' (each photo's face found and framed on
    `framing`, codec.photos); size/nc/crop default to the dataset's `DEFAULTS`. limit keeps
    the first N files of the split (in their listed order).
    `on_skip` hears of each unreadable image (or, from a cache, how many were skipped); a
    damaged cache is made again.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    info = DEFAULTS[dataset]
    size, nc, crop = size or info.size, nc or info.nc, crop or info.crop
    if dataset == "mnist":
        s = load_mnist(root, split, size)
        if limit:
            s = ImageSet(s.images[:limit], s.names[:limit])
        return s
    if dataset == "photos":
        return _load_photos(root, split, size, limit, cache_dir, progress, on_skip, framing)
    if dataset == "celeba":
        files = celeba_files(root, split)
    else:
        if split not in ("all", "train"):
            raise DataError("a folder dataset has no splits: use --split all")
        files = folder_files(root)
    if limit:
        files = files[:limit]
    if not files:
        raise DataError(f"no images found for {dataset} split {split!r} under {root}")
    cache = None
    if cache_dir is not None:
        key = hashlib.sha256(
            repr((dataset, str(Path(root).resolve()), split, size, nc, crop, [f.name for f in files])).encode()
        ).hexdigest()[:16]
        cache = Path(cache_dir) / f"{dataset}-{split}-{size}-{key}.npz"
        cached = read_cache(cache, on_skip)
        if cached is not None:
            return cached
    s = prepare_files(files, nc, size, crop, progress=progress, on_skip=on_skip)
    if len(s) == 0:
        raise DataError(f"none of the {len(files)} images under {root} could be read")
    if cache is not None:
        save_npz(cache, images=s.images, names=np.array(s.names), skipped=s.skipped)
    return s


def _load_photos(
    root: str | Path,
    split: str,
    size: int,
    limit: int | None,
    cache_dir: str | Path | None,
    progress: bool,
    on_skip: Callable[[str], None] | None,
    framing: np.ndarray | None,
) -> ImageSet:
    """A photo folder's split, every face framed on `framing` (codec.photos), cached in parts."""
    from codec.photos import photo_files, prepare_photos

    if framing is None:
        raise DataError("a photo folder needs a framing to frame its faces on (a model's: --framing-from)")
    files = photo_files(root, split)[:limit]
    if not files:
        raise DataError(f"no photos found for split {split!r} under {root}")
    cache = None
    if cache_dir is not None:
        key = hashlib.sha256(repr((str(Path(root).resolve()), size, np.round(framing, 5).tolist())).encode())
        cache = Path(cache_dir) / f"photos-{size}-{key.hexdigest()[:12]}"
    images, names, skipped = prepare_photos(files, framing, size, cache, os.cpu_count() or 1, progress, on_skip)
    if len(images) == 0:
        raise DataError(f"no face found in any of the {len(files)} photos under {root}")
    return ImageSet(images, names, skipped)


def read_cache(
    cache: Path, on_skip: Callable[[str], None] | None, skipped_are: str = "unreadable image(s)"
) -> ImageSet | None:
    """A cached split (or part of one, codec.photos), or None when there is none or it is
    damaged (then made again); `on_skip` hears how many `skipped_are` it left out."""
    if cache.exists() and not cache.is_file():
        raise DataError(f"{cache}: not a regular file (a folder, device or pipe) where the data cache goes")
    if not cache.is_file():
        return None
    try:
        with np.load(cache) as z:
            s = ImageSet(z["images"], list(z["names"]), int(z["skipped"]))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        print(f"percodec: {cache}: damaged data cache ({type(exc).__name__}): made again", file=sys.stderr)
        return None
    if s.images.ndim != 4 or len(s.names) != len(s.images):
        print(f"percodec: {cache}: damaged data cache (shapes): made again", file=sys.stderr)
        return None
    if s.skipped and on_skip is not None:
        on_skip(f"{s.skipped} {skipped_are} left out when {cache.name} was made")
    return s


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write a cache file atomically (torchrun ranks may write the same cache at once: each
    writes its own temporary file, and the last rename wins with identical contents)."""
    from codec.fileio import write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue(), force=True)
