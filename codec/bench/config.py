"""Bench settings and inputs: the images a bench codes, the eigenface basis, the cross-photo
verification protocol, and result files written whole."""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from codec import baselines as B
from codec import verify
from codec.losses import LOSSES

METRICS = ("bytes", "bpp", "ratio", "psnr", "mse", "ssim", "ms_ssim", "watson_dft", "lpips", "same_person", "enc_ms",
           "dec_ms")  # fmt: skip
#: Metrics a record may lack (no face models, no LPIPS weights here): NaN in a summary, not inf.
OPTIONAL_METRICS = ("lpips", "same_person")


#: Eigenface's coarsest quality (step 16): its quality-0 files (~79 B) are over percodec's
#: lowest levels, so the matched rows may go coarser.
EIGENFACE_LO = -48


def _cap(setting: int | str) -> int | None:
    """The byte cap of a --max-bytes row's setting ("max:N"); None for a quality or "default"."""
    return int(setting.split(":")[1]) if isinstance(setting, str) and setting.startswith("max:") else None


def _rd_suffix(setting: int | str) -> str:
    """A rate-distortion row's label: ' q=5' for a quality, ' max 112 B' for a --max-bytes row,
    ' default' for the row coded with encode's defaults."""
    if setting == "default":
        return " default"
    return f" max {_cap(setting)} B" if _cap(setting) else f" q={setting}"


def grid_levels(qualities: int, default: int) -> tuple[int, int]:
    """The two qualities shown in the grid beside the default one: a lower and a higher."""
    return max(1, default - 2), default + (qualities - default) * 2 // 3


@dataclass
class BenchConfig:
    """Settings of `percodec bench` (see its --help)."""

    dataset: str = "samples"
    data_root: str | None = None
    split: str = "test"
    limit: int | None = None
    losses: tuple[str, ...] = tuple(LOSSES)
    bits: tuple[int, ...] = (7,)
    qualities: tuple[int, ...] = ()  # rate-distortion: () = one row at encode's defaults
    max_bytes: tuple[int, ...] = ()  # rate-distortion: a row coded with --max-bytes N (first loss), each
    steps: int | None = None
    restarts: int = 4
    model: str = "celeba64"
    reference: str | None = None  # a GAN-only model whose rows stand beside the main model's
    # rate-distortion models (scales) of a smaller side: each codes the images shrunk to its side, and
    # its decoded faces are scored upscaled (bicubic) to the bench's (rows at the default and each --max-bytes)
    upscaled: tuple[str, ...] = ()
    device: str = "auto"
    seed: int = 0
    out: str = "runs/bench"
    batch_size: int = 32
    sweep: bool = True
    identities: str | None = None  # folder datasets: '<file> <identity>' lines for cross-photo verification
    judge: bool = True  # verify with the held-out judge too, where it has been fetched (codec.verify)


def load_images(cfg: BenchConfig, size: int, nc: int, crop: float) -> tuple[list[str], np.ndarray]:
    """Names and uint8 images (N, H, W, C) at the model's size. CelebA and MNIST take the shared
    centre crop (CelebA's images are aligned already); folder images and the samples are
    framed as `encode` frames them: the face found and aligned when the model has a framing."""
    from codec.data import load_dataset

    if cfg.dataset in ("samples", "folder"):
        return _framed_folder(cfg, size, nc, crop)
    s = load_dataset(
        cfg.dataset,
        cfg.data_root or ".",
        cfg.split,
        size=size,
        nc=nc,
        crop=crop,
        limit=cfg.limit,
        cache_dir=Path(cfg.out) / "cache",
    )
    return s.names, s.images.transpose(0, 2, 3, 1).copy()


#: The last folder framed in this process (see _framed_folder).
_FRAMED: dict[tuple, tuple[list[str], np.ndarray]] = {}


def _framed_folder(cfg: BenchConfig, size: int, nc: int, crop: float) -> tuple[list[str], np.ndarray]:
    """A folder's images framed as encode frames them; kept for the process, since a bench
    asks again for its outputs (the sanity line, the grid, the protocol): framing 1,045
    photos took minutes each time."""
    from codec.fileio import folder_files

    if cfg.dataset == "samples":
        root = Path(cfg.data_root) if cfg.data_root else Path(str(resources.files("codec.samples")))
        root = root if root.is_dir() else Path("samples")
    else:
        root = Path(cfg.data_root or ".")
    files = folder_files(root)[: cfg.limit]
    key = (str(root.resolve()), tuple((str(p), p.stat().st_mtime_ns) for p in files), cfg.model, size, nc, crop)
    if key not in _FRAMED:
        _FRAMED.clear()
        _FRAMED[key] = _frame_all(cfg, root, files, size, nc, crop)
    names, images = _FRAMED[key]
    return list(names), images.copy()


def _frame_all(cfg: BenchConfig, root: Path, files: list[Path], size: int, nc: int,
               crop: float) -> tuple[list[str], np.ndarray]:  # fmt: skip
    from codec.errors import ImageError
    from codec.images import float_to_uint8
    from codec.ladder import framing_of
    from codec.pipeline import EncodeOptions, frame
    from codec.zoo import resolve

    names, images, faces, skipped = [], [], 0, []
    framing = framing_of(resolve(cfg.model).base) if nc == 3 else None
    for path in files:
        try:
            f = frame(path, framing, size, nc, crop, EncodeOptions(model=cfg.model))
        except ImageError:
            skipped.append(path.name)  # unreadable files are skipped (and named), as in every dataset
            continue
        faces += f.where.startswith("face")
        names.append(str(path.relative_to(root)))
        images.append(float_to_uint8(f.tensor).permute(1, 2, 0).numpy())
    if not images:
        raise ValueError(f"no readable images in {root}")
    msg = f"{cfg.dataset}: {len(images)} images; a face found and aligned in {faces}, the rest model-sized or centred"
    if skipped:
        msg += f"; {len(skipped)} unreadable skipped: {', '.join(skipped[:5])}" + (" ..." if len(skipped) > 5 else "")
    print(msg, file=sys.stderr)
    return names, np.stack(images)


def eigenbasis(cfg: BenchConfig, size: int, nc: int, crop: float, k: int = 512) -> B.Eigenbasis:
    """PCA of the dataset's *train* split (fitted once, cached in OUT/cache)."""
    from codec.data import load_dataset, save_npz

    path = Path(cfg.out) / "cache" / f"eigenbasis-{_key(cfg.dataset, str(cfg.data_root), size, nc, crop, k)}.npz"
    if path.is_file():
        z = np.load(path)
        return B.Eigenbasis(z["mean"], z["components"], z["spread"], tuple(int(v) for v in z["shape"]))
    train = load_dataset(cfg.dataset, cfg.data_root or ".", "train", size=size, nc=nc, crop=crop,
                         cache_dir=Path(cfg.out) / "cache")  # fmt: skip
    basis = B.fit_eigenfaces(train.images.transpose(0, 2, 3, 1), k)
    save_npz(path, mean=basis.mean, components=basis.components, spread=basis.spread, shape=np.array(basis.shape))
    return basis


def verification(
    cfg: BenchConfig, names: list[str], images: np.ndarray, crop: float, by: str = "dlib"
) -> verify.Protocol | None:
    """The cross-photo protocol for the coded faces by recogniser `by` (codec.verify.RECOGNISERS),
    or None where it cannot run: grey images, that recogniser missing (dlib's models, the
    judges not fetched or not asked for), or no identity labels (CelebA's identity_CelebA.txt;
    a folder's --identities file). CelebA's pool is the whole split; a folder's, its images."""
    from codec.data import celeba_identities, load_dataset, read_identities, save_npz

    ready, describe = describer(by, cfg.judge, cfg.model)
    if images.shape[-1] != 3 or not ready or not labelled(cfg):
        return None
    identities = celeba_identities(cfg.data_root or ".") if cfg.dataset == "celeba" else read_identities(cfg.identities)
    if not identities:
        return None
    pool_names, pool = names, images
    if cfg.dataset == "celeba":
        size, nc = images.shape[1], images.shape[-1]
        s = load_dataset("celeba", cfg.data_root or ".", cfg.split, size=size, nc=nc, crop=crop,
                         cache_dir=Path(cfg.out) / "cache")  # fmt: skip
        pool_names, pool = s.names, s.images.transpose(0, 2, 3, 1)
    missing = sorted(set(names) - set(pool_names))
    if missing:
        raise ValueError(f"coded faces not in the verification pool: {', '.join(missing[:3])}")
    tag = "" if by == "dlib" else f"{by}-"  # dlib's cache keeps its name from before the judge
    path = Path(cfg.out) / "cache" / f"pool-descriptors-{tag}{_key(cfg.dataset, pool_names, pool.shape)}.npz"
    if path.is_file():
        desc = np.load(path)["desc"]
    else:
        desc = describe(pool)
        save_npz(path, desc=desc)
    return verify.build(names, list(pool_names), desc, identities, seed=cfg.seed)


def describer(by: str, judges: bool, model: str) -> tuple[bool, Callable[[np.ndarray], np.ndarray]]:
    """Whether recogniser `by` can run (a judge: fetched, and `judges` asked for) and its
    describe(faces (N, H, W, 3) uint8) -> L2-normalised descriptors, for faces framed as `model`'s."""
    from codec import faces, judge
    from codec.ladder import framing_of
    from codec.zoo import resolve

    if by == "dlib":
        return faces.available(), faces.describe
    net = verify.JUDGE_NETS[by]
    framing = framing_of(resolve(model).base) if judge.NETS[net].arcface else None
    return judges and judge.available(net), functools.partial(judge.describe, net=net, framing=framing)


def labelled(cfg: BenchConfig) -> bool:
    """Whether the bench's faces have identity labels to verify with: CelebA's, or a folder's --identities."""
    return cfg.dataset == "celeba" or bool(cfg.identities)


def protocols_for(cfg: BenchConfig) -> dict[str, verify.Protocol]:
    """The cross-photo verification protocols of a bench run's faces, by every recogniser
    (codec.verify.RECOGNISERS) that can run and has genuine pairs to verify."""
    from codec.zoo import load_model, resolve

    g, _ = load_model(resolve(cfg.model).base)
    names, images = load_images(cfg, g.config.size, g.config.nc, g.config.crop)
    made = {by: verification(cfg, names, images, g.config.crop, by) for by in verify.RECOGNISERS}
    return {by: p for by, p in made.items() if p is not None and p.has_pairs}


def write_result(path: Path, data: str | bytes) -> None:
    """A result file, written whole or not at all (a full disk is a WriteError naming it)."""
    from codec.fileio import write_bytes

    write_bytes(path, data.encode() if isinstance(data, str) else data, force=True)


def _key(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    slug = "".join(c if c.isalnum() else "-" for c in str(parts[0]))[:40]
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
