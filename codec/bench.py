"""percodec against JPEG, WebP, AVIF and k-means on a dataset: rows, tables, plots.

Protocol (docs/BENCH.md): every codec sees the same model-sized 8-bit image (the shared
preprocessing), metrics are computed on 8-bit images at that size, every byte of every file
counts (bpp = 8 * bytes / (H * W)), and the generator is not counted (the scan-only JPEG row
is its analogue: tables held by the decoder). Per-image records are cached as JSON lines in
OUT/cache, so an interrupted run resumes; under torchrun each rank takes every W-th image
and rank 0 merges the caches.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec import baselines as B
from codec import metrics, verify
from codec.errors import WriteError
from codec.family import CodingModel
from codec.losses import LOSSES
from codec.losses.watson import WatsonDistance
from codec.shard import Shard

METRICS = ("bytes", "bpp", "ratio", "psnr", "mse", "ssim", "ms_ssim", "watson_dft", "same_person", "enc_ms", "dec_ms")


#: Eigenface's coarsest quality (step 16): its quality-0 files (~79 B) are over percodec's
#: lowest levels, so the matched rows may go coarser.
EIGENFACE_LO = -48


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
    device: str = "auto"
    seed: int = 0
    out: str = "runs/bench"
    batch_size: int = 32
    sweep: bool = True
    identities: str | None = None  # folder datasets: '<file> <identity>' lines for cross-photo verification


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


def _framed_folder(cfg: BenchConfig, size: int, nc: int, crop: float) -> tuple[list[str], np.ndarray]:
    from codec.data import folder_files
    from codec.errors import ImageError
    from codec.images import float_to_uint8
    from codec.ladder import framing_of
    from codec.pipeline import EncodeOptions, frame
    from codec.zoo import resolve

    if cfg.dataset == "samples":
        root = Path(cfg.data_root) if cfg.data_root else Path(str(resources.files("codec.samples")))
        root = root if root.is_dir() else Path("samples")
    else:
        root = Path(cfg.data_root or ".")
    names, images, faces, skipped = [], [], 0, []
    framing = framing_of(resolve(cfg.model).base) if nc == 3 else None
    for path in folder_files(root)[: cfg.limit]:
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


def verification(cfg: BenchConfig, names: list[str], images: np.ndarray, crop: float) -> verify.Protocol | None:
    """The cross-photo protocol for the coded faces, or None where it cannot run: grey
    images, no dlib, or no identity labels (CelebA's identity_CelebA.txt; a folder's
    --identities file). CelebA's pool is the whole split; a folder's, its images."""
    from codec import faces
    from codec.data import celeba_identities, load_dataset, read_identities, save_npz

    if images.shape[-1] != 3 or not faces.available():
        return None
    if cfg.dataset == "celeba":
        identities = celeba_identities(cfg.data_root or ".")
    else:
        identities = read_identities(cfg.identities) if cfg.identities else None
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
    path = Path(cfg.out) / "cache" / f"pool-descriptors-{_key(cfg.dataset, pool_names, pool.shape)}.npz"
    if path.is_file():
        desc = np.load(path)["desc"]
    else:
        desc = faces.describe(pool)
        save_npz(path, desc=desc)
    return verify.build(names, list(pool_names), desc, identities, seed=cfg.seed)


class Scorer:
    """Per-image metrics of a decoded 8-bit image against its original."""

    def __init__(self, channels: int = 3) -> None:
        from codec import faces

        self.watson = WatsonDistance("dft").eval()
        # Same person: dlib's descriptor within 0.6 of the original's (colour faces only).
        self.same_person = faces.SamePerson() if channels == 3 and faces.available() else None

    def __call__(self, orig: np.ndarray, dec: np.ndarray, nbytes: int, png: int) -> dict[str, float]:
        a = torch.tensor(orig).permute(2, 0, 1)[None]
        b = torch.tensor(dec).permute(2, 0, 1)[None]
        h, w = orig.shape[:2]
        with torch.no_grad():
            wd = self.watson(b.float() / 255, a.float() / 255).item()
        mse = metrics.mse(b, a).item()
        return {
            "bytes": nbytes,
            "bpp": metrics.bpp(nbytes, h, w),
            "ratio": png / nbytes,
            "psnr": metrics.psnr(b, a).item() if mse > 0 else math.inf,
            "mse": mse,
            "ssim": metrics.ssim(b, a).item(),
            "ms_ssim": metrics.ms_ssim(b, a).item(),
            "watson_dft": wd,
            **(self._person(orig, dec) if self.same_person else {}),
        }

    def _person(self, orig: np.ndarray, dec: np.ndarray) -> dict:
        """Same photo: the decoded face within dlib's 0.6 of its original; and the decoded
        face's descriptor, for cross-photo verification (codec.verify)."""
        same, got = self.same_person.score(orig, dec)
        return {"same_person": float(same), "desc": verify.pack(got)}


class Cache:
    """JSON-lines records per (row, image), one file per row and rank."""

    def __init__(self, root: Path, rank: int) -> None:
        self.root, self.rank = root, rank
        root.mkdir(parents=True, exist_ok=True)

    def _files(self, key: str) -> list[Path]:
        return sorted(self.root.glob(f"{key}.rank*.jsonl"))

    def load(self, key: str) -> dict[str, dict]:
        """The records cached for a row. A damaged line (a run killed mid-write, a full disk)
        is skipped with a note, so its image is coded again, where it used to stop every later run."""
        out = {}
        for f in self._files(key):
            damaged = 0
            for line in f.read_text(errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    out[rec["image"]] = rec
                except (ValueError, KeyError, TypeError, RecursionError):
                    damaged += 1
            if damaged:
                print(f"percodec: {f}: {damaged} damaged cache line(s) skipped; their images are coded again",
                      file=sys.stderr)  # fmt: skip
        return out

    def append(self, key: str, records: list[dict]) -> None:
        path = self.root / f"{key}.rank{self.rank}.jsonl"
        text = "".join(json.dumps(r) + "\n" for r in records)
        try:
            with open(path, "ab+") as f:
                f.seek(0, os.SEEK_END)
                if f.tell():  # a line cut short by a killed run must not swallow the next record
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        text = "\n" + text
                f.write(text.encode())
        except OSError as exc:
            raise WriteError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _key(*parts: object) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    slug = "".join(c if c.isalnum() else "-" for c in str(parts[0]))[:40]
    return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def _cap(setting: int | str) -> int | None:
    """The byte cap of a --max-bytes row's setting ("max:N"); None for a quality or "default"."""
    return int(setting.split(":")[1]) if isinstance(setting, str) and setting.startswith("max:") else None


def _rd_suffix(setting: int | str) -> str:
    """A rate-distortion row's label: ' q=5' for a quality, ' max 112 B' for a --max-bytes row,
    ' default' for the row coded with encode's defaults."""
    if setting == "default":
        return " default"
    return f" max {_cap(setting)} B" if _cap(setting) else f" q={setting}"


def check(cfg: BenchConfig) -> None:
    """Refuse, before any work, a split the dataset lacks and a reference model that is
    missing or not GAN-only."""
    from codec.data import SPLITS
    from codec.zoo import load_model

    if cfg.dataset in ("samples", "folder"):
        if cfg.split not in ("test", "all"):
            raise ValueError(f"--dataset {cfg.dataset} has no splits (every image is used): drop --split {cfg.split}")
    elif cfg.split not in SPLITS:
        raise ValueError(f"unknown split {cfg.split!r}: choose one of {', '.join(SPLITS)}")
    if cfg.reference and isinstance(load_model(cfg.reference)[0], CodingModel):
        raise ValueError(f"--reference-model {cfg.reference} must be a GAN-only model")
    if cfg.dataset in ("celeba", "mnist"):  # a dataset of fixed channels: the model must code as many
        from codec.data import DEFAULTS
        from codec.zoo import resolve

        want, has = DEFAULTS[cfg.dataset].nc, load_model(resolve(cfg.model).base)[0].config.nc
        if want != has:
            raise ValueError(f"--dataset {cfg.dataset} has {want}-channel images and --model {cfg.model} codes {has}: "
                             f"pick a model for {'grey' if want == 1 else 'colour'} images")  # fmt: skip
    if cfg.identities:
        _check_identities(cfg)


def _check_identities(cfg: BenchConfig) -> None:
    """--identities names a folder's people: two or more among its images, one with two photos."""
    from collections import Counter

    from codec.data import folder_files, read_identities

    if cfg.dataset not in ("folder", "samples"):
        raise ValueError(f"--identities applies to --dataset folder; {cfg.dataset} brings its own identity labels")
    root = Path(cfg.data_root or ".")
    ids = read_identities(cfg.identities)
    files = [str(p.relative_to(root)) for p in folder_files(root)[: cfg.limit]] if root.is_dir() else []
    people = Counter(ids[f] for f in files if f in ids)
    if len(people) < 2 or max(people.values()) < 2:
        raise ValueError(
            f"{cfg.identities} names {sum(people.values())} of the {len(files)} images under {root} ({len(people)} "
            "people): cross-photo verification needs two people or more, one of them in two photos"
        )


def run(cfg: BenchConfig, progress: bool = True) -> list[dict]:
    """Compute (or load from cache) every row for every image; returns per-image records.

    Rows in order: percodec's (then a GAN-only reference's), the classic codecs bisected to
    percodec's bytes (eigenface first, the strongest), the classic codecs at fixed settings.
    """
    check(cfg)
    bench = _BenchRun(cfg, progress)
    bench.percodec_rows()
    bench.matched_rows()
    bench.fixed_rows()
    return bench.records()


class _BenchRun:
    """One bench run's state: the images (this rank's share), the cache, the rows so far."""

    def __init__(self, cfg: BenchConfig, progress: bool) -> None:
        from codec.ladder import ladder_for
        from codec.zoo import find_shipped, load_model, resolve

        self.cfg = cfg
        shard = Shard.from_env()
        self.rank, self.world = shard.rank, shard.world
        self.ladder = ladder_for(cfg.model)
        self.g, fp = load_model(resolve(cfg.model).base)
        # what the cached rows were coded with: every rung model's fingerprint and level
        rungs = [(load_model(r.model)[1].hex(), r.level) for r in self.ladder.rungs] if self.ladder else []
        self.model_key = _key("ladder", rungs, self.ladder.default) if self.ladder else fp.hex()
        c = self.g.config
        self.nc = c.nc
        self.names, self.images = load_images(cfg, c.size, c.nc, c.crop)
        self.mine = list(range(self.rank, len(self.names), self.world))
        self.cache = Cache(Path(cfg.out) / "cache", self.rank)
        self.score = Scorer(c.nc)
        self.png = {self.names[i]: B.png_size(self.images[i]) for i in range(len(self.names))}
        self.keys: list[str] = []
        self.budget: dict[str, int] = {}  # image -> bytes of the first percodec row (the matched rows' target)
        self.row_keys: dict[str, str] = {}  # percodec row label -> its cache key
        self.bar = None
        if progress and self.rank == 0:
            from tqdm import tqdm

            self.bar = tqdm(desc="bench", unit="row", leave=False, disable=None)
        find_shipped(fp[:4])  # load and fingerprint the shipped models now, not inside a timed decode
        rd = self.ladder is not None
        qualities = cfg.qualities if rd else ()
        self.settings = [(q, False) for q in qualities or ("default",)] if rd else [(b, False) for b in cfg.bits]
        if rd and cfg.sweep:
            self.settings += [(q, True) for q in range(1, len(self.ladder) + 1) if q not in qualities]

    def _tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def finish(
        self, key: str, compute: Callable[[int], dict], current: Callable[[dict, int], bool] | None = None
    ) -> None:
        """Compute this rank's records of a row not yet cached (or cached but no longer `current`)."""
        self.keys.append(key)
        done = self.cache.load(key)
        names = self.names
        recs = [compute(i) for i in self.mine if names[i] not in done or (current and not current(done[names[i]], i))]
        if recs:
            self.cache.append(key, recs)
        self._tick()

    def record(self, i: int, codec: str, family: str, setting: object, decoded: np.ndarray, size: int,
               enc_ms: float, dec_ms: float, **extra: object) -> dict:  # fmt: skip
        """One image's record in a row: who coded it how, its scores and times."""
        name = self.names[i]
        scores = self.score(self.images[i], decoded, size, self.png[name])
        return {"image": name, "codec": codec, "family": family, "setting": setting, **scores,
                "enc_ms": enc_ms, "dec_ms": dec_ms, **extra}  # fmt: skip

    def classic(self, codec: B.Codec, extra: dict | None = None) -> Callable[[int], dict]:
        """An image's record for a classic codec at a fixed setting."""

        def compute(i: int) -> dict:
            t = time.perf_counter()
            data = codec.encode(self.images[i])
            enc = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            dec = codec.decode(data)
            dec_ms = (time.perf_counter() - t) * 1000
            return self.record(i, codec.name, codec.family, codec.setting, dec, len(data), enc, dec_ms, **(extra or {}))

        return compute

    def percodec_rows(self) -> None:
        """One row per (loss, bits) or, for a rate-distortion model, per loss at encode's
        defaults (the best quality under the default cap) or at each asked --quality; the
        first row sets the byte budget of the matched rows. A rate-distortion model's
        qualities are swept for the plot. A GAN-only reference model adds its row at its
        own defaults."""
        from codec.pipeline import DEFAULT_LOSS
        from codec.zoo import load_model

        cfg, rd = self.cfg, self.ladder is not None
        caps = [(f"max:{n}", False) for n in cfg.max_bytes]
        self.percodec(cfg.model, rd, self.model_key, self.settings + caps, cfg.losses, "")
        if cfg.reference:
            ref_fp = load_model(cfg.reference)[1]
            self.percodec(cfg.reference, False, ref_fp.hex(), [(cfg.bits[0], False)], (DEFAULT_LOSS,), "-gan")

    def percodec(self, model: str, rd: bool, key_of_model: str, settings: list, losses: tuple, tag: str) -> None:
        cfg = self.cfg
        for setting, is_sweep in settings:
            capped = _cap(setting) is not None  # "max:N", a --max-bytes row
            for loss in losses[:1] if is_sweep or capped else losses:
                label = f"percodec{tag} {loss}" + (
                    _rd_suffix(setting) if rd else (f" {setting}b" if len(cfg.bits) > 1 else "")
                )
                key = _key(label, key_of_model, cfg.steps, cfg.restarts, cfg.seed, setting)
                self.keys.append(key)
                self.row_keys[label] = key
                done = self.cache.load(key)
                todo = [i for i in self.mine if self.names[i] not in done]
                opts = self._options(model, rd, loss, setting, capped)
                family = f"percodec{tag}-{loss}" + ("-rd" if rd else "") + ("-max" if capped else "")
                family += "-default" if setting == "default" else ""
                for start in range(0, len(todo), cfg.batch_size):
                    chunk = todo[start : start + cfg.batch_size]
                    self.cache.append(key, self.encode_rows(chunk, opts, label, family, setting, is_sweep))
                self._tick()
                if not self.budget:
                    self.budget.update({r["image"]: int(r["bytes"]) for r in self.cache.load(key).values()})

    def _options(self, model: str, rd: bool, loss: str, setting: int | str, capped: bool) -> Any:
        from codec.pipeline import EncodeOptions

        cfg = self.cfg
        if capped:
            knob = {"max_bytes": _cap(setting)}
        elif rd:
            knob = {} if setting == "default" else {"quality": setting}
        else:
            knob = {"bits": setting, "restarts": cfg.restarts, "seed": cfg.seed}
        steps = cfg.steps if model == cfg.model else None
        return EncodeOptions(model=model, loss=loss, steps=steps, device=cfg.device, batch_size=cfg.batch_size, **knob)

    def encode_rows(
        self, chunk: list[int], opts: Any, label: str, family: str, setting: int | str, sweep: bool
    ) -> list:
        from codec.images import uint8_to_pil
        from codec.pipeline import decode_tensor, encode_batch

        t = time.perf_counter()
        res = encode_batch([uint8_to_pil(torch.from_numpy(self.images[i]).permute(2, 0, 1)) for i in chunk], opts)
        enc_ms = (time.perf_counter() - t) * 1000 / len(chunk)
        recs = []
        for i, r in zip(chunk, res, strict=True):
            t = time.perf_counter()
            dec = decode_tensor(r.data, opts.model)
            dec_ms = (time.perf_counter() - t) * 1000
            extra = {"data": r.data.hex(), "model": str(opts.model), **({"sweep": True} if sweep else {})}
            recs.append(self.record(i, label, family, setting, dec.permute(1, 2, 0).numpy(), r.num_bytes, enc_ms,
                                    dec_ms, **extra))  # fmt: skip
        return recs

    def level_bytes(self, level: int | str) -> dict[str, int]:
        recs = self.cache.load(self.row_keys[f"percodec {self.cfg.losses[0]}{_rd_suffix(level)}"]).values()
        return {r["image"]: int(r["bytes"]) for r in recs}

    def matched(
        self, name: str, family: str, make: Callable[[int], B.Codec], lo: int = 0, level: int | str | None = None
    ) -> None:
        """`name` bisected per image to the default percodec row's bytes, or to those of
        the swept quality `level` (a sweep row, for the plot) or of a --max-bytes row."""
        target = self.budget if level is None else self.level_bytes(level)
        key = _key(f"{name} matched", self.cfg.bits[0], self.model_key, lo, *(() if level is None else (level,)))
        where = "percodec bytes" if level is None else f"{_rd_suffix(level).strip()} bytes"
        sweep = level is not None and _cap(level) is None

        def compute(i: int) -> dict:
            t = time.perf_counter()
            data, q, reached = B.fit_budget(make, self.images[i], target[self.names[i]], lo=lo)
            enc = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            dec = make(q).decode(data)
            dec_ms = (time.perf_counter() - t) * 1000
            extra = {"reached": reached, "budget": target[self.names[i]], **({"sweep": True} if sweep else {})}
            return self.record(i, f"{name} @ {where}", family + "-matched", q, dec, len(data), enc, dec_ms, **extra)

        # A cached row counts only if it was bisected to today's budget: a percodec row
        # that changed (a code fix, a cache file removed) makes its matched rows recompute.
        self.finish(key, compute, lambda rec, i: rec.get("budget") == target[self.names[i]])

    def matched_rows(self) -> None:
        """The classic codecs bisected to percodec's bytes, the strongest baseline first."""
        if not self.budget:
            return
        cfg, nc, rd = self.cfg, self.nc, self.ladder is not None
        if cfg.dataset == "celeba":
            c = self.g.config
            basis = eigenbasis(cfg, c.size, nc, c.crop)
            eigen = lambda q: B.EigenfaceCodec(basis, q)  # noqa: E731
            self.matched("eigenface", "eigenface", eigen, lo=EIGENFACE_LO)
            for level, _ in self.settings[1:] if rd else []:  # the curve beside percodec's levels
                self.matched("eigenface", "eigenface", eigen, lo=EIGENFACE_LO, level=level)
            for n in cfg.max_bytes if rd else ():
                self.matched("eigenface", "eigenface", eigen, lo=EIGENFACE_LO, level=f"max:{n}")
        self.matched("webp", "webp", lambda q: B.webp(q, nc))
        shape = self.images.shape[1:3][::-1]
        self.matched("jpeg scan-only", "jpeg-scan", lambda q: B.JpegScanOnly(q, nc, shape), lo=1)
        if B.has_avif():
            self.matched("avif", "avif", lambda q: B.avif(q, nc))

    def fixed_rows(self) -> None:
        """The classic codecs at fixed settings (and, for the plot, a sweep of them)."""
        nc = self.nc
        fixed: list[B.Codec] = [
            B.jpeg(10, nc),
            B.jpeg(1, nc),
            B.webp(0, nc),
            B.webp(10, nc),  # where WebP meets percodec's top qualities (~350 B) and passes them (~500 B)
            B.webp(30, nc),
            B.webp(70, nc),  # ~820 B: the ladder's upper end (issue #23: 33.5 dB at 820 B)
            B.KMeansPalette(4, nc),
            B.KMeansPalette(8, nc),
            B.KMeansPalette(16, nc),
        ]
        if B.has_avif():
            fixed.append(B.avif(0, nc))
        sweep: list[B.Codec] = []
        if self.cfg.sweep:
            # curves to past 1 KB, where the quality ladder ends
            sweep += [B.jpeg(q, nc) for q in (5, 20, 30, 50, 70)] + [B.webp(q, nc) for q in (5, 20, 40, 50, 60, 80)]
            sweep += [B.KMeansPalette(2, nc)]
            if B.has_avif():
                sweep += [B.avif(q, nc) for q in (10, 20, 40, 60, 75)]
        for codec in fixed:
            self.finish(_key(codec.name, nc), self.classic(codec))
        for codec in sweep:
            self.finish(_key(codec.name, nc), self.classic(codec, {"sweep": True}))

    def records(self) -> list[dict]:
        """Every rank's records of every row (rank 0 merges after the others are on disk)."""
        if self.bar is not None:
            self.bar.close()
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo")
            dist.barrier()  # every shard's records are on disk before rank 0 merges
        wanted = set(self.names)
        return [r for k in self.keys for r in self.cache.load(k).values() if r["image"] in wanted]


def summarize(records: list[dict], protocol: verify.Protocol | None = None) -> list[dict]:
    """Per codec, in the order `run` made the rows: means and 95% confidence half-widths
    (normal approximation) of METRICS; with a verification `protocol`, each row's
    cross-photo accept rates (codec.verify.rates) too."""
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["codec"], []).append(r)
    out = []
    for name, rs in by.items():
        row: dict = {
            "codec": name,
            "family": rs[0]["family"],
            "setting": rs[0]["setting"],
            "n": len(rs),
            "sweep": bool(rs[0].get("sweep")),
        }
        for m in METRICS:
            v = np.array([r.get(m, math.nan) for r in rs], dtype=float)
            finite = v[np.isfinite(v)]
            row[m] = float(finite.mean()) if len(finite) else (math.nan if m == "same_person" else math.inf)
            row[m + "_ci"] = float(1.96 * finite.std(ddof=1) / math.sqrt(len(finite))) if len(finite) > 1 else 0.0
        if "reached" in rs[0]:
            row["reached"] = sum(bool(r["reached"]) for r in rs)
        if protocol is not None and protocol.has_pairs and any("desc" in r for r in rs):
            row.update(verify.rates(protocol, _descriptors(protocol, rs)))
        out.append(row)
    return out


def _descriptors(protocol: verify.Protocol, rs: list[dict]) -> np.ndarray:
    """A row's decoded descriptors in the protocol's face order (NaN where not scored)."""
    at = {n: i for i, n in enumerate(protocol.names)}
    desc = np.full((len(protocol.names), 128), np.nan)
    for r in rs:
        if "desc" in r and r["image"] in at:
            desc[at[r["image"]]] = verify.unpack(r["desc"])
    return desc


def originals_row(protocol: verify.Protocol) -> dict:
    """The ceiling: the originals' own cross-photo accept rates."""
    return {
        "codec": "originals",
        "family": "originals",
        "n": len(protocol.names),
        **verify.rates(protocol, protocol.originals),
    }


def verification_table(summary: list[dict], protocol: verify.Protocol) -> str:
    """Markdown: every main row's cross-photo accept rates at the originals' 1% and 0.1%
    false-accept thresholds, with 95% bootstrap intervals and the ratio to the originals."""
    top = originals_row(protocol)
    heads = ["codec", "bytes", "accepted at 1% FA", "x originals", "accepted at 0.1% FA", "x originals",
             "decoded false accepts at 1% FA", "same photo"]  # fmt: skip
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for r in [top] + [r for r in summary if "tar_1" in r and not r["sweep"]]:
        cells = [r["codec"], f"{r['bytes']:.1f}" if "bytes" in r else "-"]
        for tag in ("1", "01"):
            cells += [f"{100 * r[f'tar_{tag}']:.1f}% [{100 * r[f'tar_{tag}_lo']:.1f}, {100 * r[f'tar_{tag}_hi']:.1f}]",
                      f"{r[f'tar_{tag}'] / top[f'tar_{tag}']:.2f}x"]  # fmt: skip
        same = r.get("same_person", math.nan)
        cells += [f"{100 * r['far_1']:.1f}%", "-" if math.isnan(same) else f"{100 * same:.0f}%"]
        out.append("| " + " | ".join(cells) + " |")
    pairs = int(top["pairs"])
    return (
        f"{pairs} genuine pairs (each coded face against every other photo of the same person in the "
        f"split), {verify.IMPOSTORS} impostor photos per face; thresholds where the originals' impostor pairs "
        f"are accepted 1% (distance {protocol.thresholds[0]:.3f}) and 0.1% ({protocol.thresholds[1]:.3f}) of "
        "the time; dlib's descriptors.\n\n" + "\n".join(out) + "\n"
    )


def table(summary: list[dict], markdown: bool = False) -> str:
    """The main rows (no sweep points) as a text or Markdown table."""
    heads = [
        "codec",
        "bytes",
        "bpp",
        "ratio",
        "PSNR dB",
        "MSE",
        "SSIM",
        "MS-SSIM",
        "Watson-DFT",
        "same person",
        "cross-photo",
        "enc ms",
        "dec ms",
        "reached",
    ]
    lines = []
    for r in (r for r in summary if not r["sweep"]):
        lines.append(
            [
                r["codec"],
                f"{r['bytes']:.1f}",
                f"{r['bpp']:.3f}",
                f"{r['ratio']:.1f}",
                f"{r['psnr']:.2f} ± {r['psnr_ci']:.2f}",
                f"{r['mse']:.1f}",
                f"{r['ssim']:.4f} ± {r['ssim_ci']:.4f}",
                f"{r['ms_ssim']:.4f}",
                f"{r['watson_dft']:.1f}",
                "" if math.isnan(r["same_person"]) else f"{100 * r['same_person']:.0f}%",
                f"{100 * r['tar_1']:.0f}%" if "tar_1" in r else "",
                f"{r['enc_ms']:.1f}",
                f"{r['dec_ms']:.2f}",
                f"{r['reached']}/{r['n']}" if "reached" in r else "",
            ]
        )
    if markdown:
        out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        return "\n".join(out + ["| " + " | ".join(cells) + " |" for cells in lines])
    widths = (
        [max(len(h), *(len(cells[i]) for cells in lines)) for i, h in enumerate(heads)]
        if lines
        else [len(h) for h in heads]
    )
    fmt = "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join(
        [fmt.format(*heads), fmt.format(*["-" * w for w in widths])] + [fmt.format(*cells) for cells in lines]
    )


def quality_table(summary: list[dict]) -> str:
    """Markdown: each swept quality of a rate-distortion model beside eigenface bisected to
    that quality's bytes (the rate-distortion plot's two curves, as numbers); '' if none."""
    rows = {r["codec"]: r for r in summary}

    def eigen(r: dict) -> dict | None:
        is_quality = r["family"].endswith("-rd") and r["codec"].endswith(f" q={r['setting']}")
        return rows.get(f"eigenface @ q={r['setting']} bytes") if is_quality else None

    pairs = [(r, e) for r in summary if r["family"].startswith("percodec") and (e := eigen(r)) is not None]
    if not pairs:
        return ""

    def cells(r: dict) -> str:
        same = "" if math.isnan(r["same_person"]) else f" / {100 * r['same_person']:.0f}%"
        return f"{r['bytes']:.1f} | {r['psnr']:.2f} / {r['ssim']:.3f}{same}"

    out = [
        "| quality | percodec bytes | PSNR / SSIM / same | eigenface bytes | PSNR / SSIM / same "
        "| percodec - eigenface |",
        "|---|---|---|---|---|---|",
    ]
    for p, e in pairs:
        lead = f"{p['psnr'] - e['psnr']:+.2f} dB, {p['ssim'] - e['ssim']:+.3f}"
        out.append(f"| {p['setting']} | {cells(p)} | {cells(e)} | {lead} |")
    return "\n".join(out) + "\n"


def protocol_for(cfg: BenchConfig) -> verify.Protocol | None:
    """The cross-photo verification protocol of a bench run's faces (None: it cannot run)."""
    from codec.zoo import load_model, resolve

    g, _ = load_model(resolve(cfg.model).base)
    names, images = load_images(cfg, g.config.size, g.config.nc, g.config.crop)
    return verification(cfg, names, images, g.config.crop)


def write_outputs(cfg: BenchConfig, records: list[dict]) -> tuple[dict[str, Path], list[dict]]:
    """results.json, per_image.csv, results.md, rd.png, grid.png and (with identity labels)
    verify.png under cfg.out; returns their paths and the summary rows."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    protocol = protocol_for(cfg)
    summary = summarize(records, protocol)
    paths = {
        "json": out / "results.json",
        "csv": out / "per_image.csv",
        "md": out / "results.md",
        "rd": out / "rd.png",
        "grid": out / "grid.png",
    }
    head = {"originals": originals_row(protocol)} if protocol is not None and protocol.has_pairs else {}
    rates, windowed = bd_rates(summary), bd_rates(summary, BD_WINDOW)
    result = {"config": asdict(cfg), **head, "bd_rate": rates, "bd_rate_window": windowed, "summary": summary}
    _write(paths["json"], json.dumps(result, indent=1, default=str))
    keys = ["image", "codec", "family", "setting", *METRICS, "reached"]
    rows = io.StringIO(newline="")
    w = csv.DictWriter(rows, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(sorted(records, key=lambda r: (r["codec"], r["image"])))
    _write(paths["csv"], rows.getvalue())
    n = summary[0]["n"] if summary else 0
    cross = f"\nCross-photo verification:\n\n{verification_table(summary, protocol)}" if head else ""
    _write(
        paths["md"],
        f"{n} images, dataset {cfg.dataset} ({cfg.split}), model {cfg.model}, "
        f"{cfg.steps if cfg.steps is not None else 'default'} steps\n\n"
        + table(summary, markdown=True)
        + "\n"
        + different_people_line(cfg)
        + bd_rate_line(rates, windowed)
        + cross
        + (f"\nEvery quality beside eigenface at its bytes:\n\n{q}" if (q := quality_table(summary)) else ""),
    )
    plot_rd(summary, paths["rd"])
    plot_grid(cfg, records, paths["grid"])
    if head:
        paths["verify"] = out / "verify.png"
        plot_verify(summary, head["originals"], paths["verify"])
    return paths, summary


#: The file sizes (bytes) over which the windowed BD-rate is taken (issue #23's range).
BD_WINDOW = (200.0, 1000.0)


def bd_rates(summary: list[dict], window: tuple[float, float] | None = None) -> dict[str, dict[str, float]]:
    """Per classic codec with a curve (webp, avif, jpeg: fixed and swept settings), the
    Bjøntegaard delta rate of percodec's quality curve (its first loss's rate-distortion
    rows) against it, in percent at equal PSNR and at equal SSIM, over the range both
    reach (codec.metrics.bd_rate; negative: percodec needs fewer bytes). With `window`
    (lo, hi) only the points of both curves whose mean size lies within it count."""
    from codec.metrics import bd_rate

    lo, hi = window or (0.0, math.inf)

    def curve(family: str) -> list[dict]:
        rows = (r for r in summary if r["family"] == family and lo <= r["bytes"] <= hi)
        return sorted(rows, key=lambda r: r["bytes"])

    ours = next((curve(r["family"]) for r in summary if r["family"].startswith("percodec-")
                 and r["family"].endswith("-rd")), [])  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    for family in ("webp", "avif", "jpeg"):
        theirs = curve(family)
        if len(ours) < 2 or len(theirs) < 2:
            continue
        out[family] = {
            m: bd_rate(
                [r["bytes"] for r in theirs], [r[m] for r in theirs], [r["bytes"] for r in ours], [r[m] for r in ours]
            )  # fmt: skip
            for m in ("psnr", "ssim")
        }
    return out


def bd_rate_line(rates: dict[str, dict[str, float]], windowed: dict[str, dict[str, float]] | None = None) -> str:
    """results.md's BD-rate sentences: over the common range, and within BD_WINDOW."""
    if not rates:
        return ""

    def parts(r: dict[str, dict[str, float]]) -> str:
        return "; ".join(f"{fam} {v['psnr']:+.1f}% (PSNR), {v['ssim']:+.1f}% (SSIM)" for fam, v in r.items())

    lo, hi = BD_WINDOW
    within = f"\nThe same over the points of {lo:g}-{hi:g} B only: {parts(windowed)}\n" if windowed else ""
    return (
        "\nBD-rate of percodec's quality curve against each classic codec's (bytes it needs more, "
        "negative = fewer, at equal quality over the range both reach): " + parts(rates) + "\n" + within
    )


def different_people_line(cfg: BenchConfig) -> str:
    """The same-person column's sanity line: how often two *different* test faces pass."""
    from codec import faces
    from codec.zoo import load_model, resolve

    g, _ = load_model(resolve(cfg.model).base)
    if g.config.nc != 3 or not faces.available():
        return ""
    _, images = load_images(cfg, g.config.size, g.config.nc, g.config.crop)
    if len(images) < 2:
        return ""
    rate = faces.different_people_rate(images)
    return f"\nSame person, sanity line: two different faces of this set pass {100 * rate:.0f}% of the time.\n"


def _write(path: Path, data: str | bytes) -> None:
    """A result file, written whole or not at all (a full disk is a WriteError naming it)."""
    from codec.fileio import write_bytes

    write_bytes(path, data.encode() if isinstance(data, str) else data, force=True)


def _write_figure(fig, path: Path) -> None:
    """A figure as a PNG through `_write`; the figure is closed either way."""
    import matplotlib.pyplot as plt

    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        _write(path, buf.getvalue())
    finally:
        plt.close(fig)


def _save(fig, title: str, path: Path) -> None:
    """Title, lay out, write and close a figure."""

    fig.suptitle(title)
    fig.tight_layout()
    _write_figure(fig, path)


def _family_lines(ax, summary: list[dict], x: str, y: Callable[[dict], float]) -> None:
    """One line per codec family (a point for a single row; a star for percodec's), by `x`."""
    import matplotlib

    fams: dict[str, list[dict]] = {}
    for r in summary:
        fams.setdefault(r["family"], []).append(r)
    # more families than matplotlib's 10-colour cycle (WebP and AVIF drew alike): tab20's
    # strong colours first, then its light ones
    tab20 = matplotlib.colormaps["tab20"].colors
    colours = tab20[0::2] + tab20[1::2]
    for i, (fam, rs) in enumerate(sorted(fams.items())):
        rs = sorted(rs, key=lambda r: r[x])
        style = "o-" if len(rs) > 1 else ("*" if fam.startswith("percodec") else "s")
        ax.plot([r[x] for r in rs], [y(r) for r in rs], style, label=fam, ms=9 if style == "*" else 5,
                color=colours[i % len(colours)])  # fmt: skip


def plot_rd(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, m in zip(axes, ("ssim", "psnr"), strict=True):
        _family_lines(ax, summary, "bpp", lambda r, m=m: r[m])
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    for ax, m in zip(axes, ("SSIM", "PSNR (dB)"), strict=True):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([0.1, 0.2, 0.5, 1, 2, 4, 8]))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("bits per pixel (whole files)")
        ax.set_ylabel(m)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    _save(fig, "rate-distortion, means over images", path)


def plot_verify(summary: list[dict], originals: dict, path: Path) -> None:
    """Cross-photo accept rate against file size for every codec family, the originals on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    scored = [r for r in summary if "tar_1" in r]
    for ax, tag, far in zip(axes, ("1", "01"), ("1%", "0.1%"), strict=True):
        ax.axhline(100 * originals[f"tar_{tag}"], color="k", ls="--", lw=1, label="originals (the ceiling)")
        _family_lines(ax, scored, "bytes", lambda r, tag=tag: 100 * r[f"tar_{tag}"])
        ax.set_xscale("log")
        ax.set_xlabel("bytes per face (whole files)")
        ax.set_ylabel(f"accepted as the person at {far} false accepts (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    _save(fig, "cross-photo verification: decoded face against other photos of the same person", path)


def plot_grid(cfg: BenchConfig, records: list[dict], path: Path, rows: int = 6) -> None:
    """Original, percodec per loss (and a lower and a higher level of the first),
    eigenface and WebP at the same bytes, smallest JPEG, k-means K=4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec.ladder import ladder_for
    from codec.zoo import load_model

    ladder = ladder_for(cfg.model)
    g, _ = load_model(ladder.rungs[0].model if ladder else cfg.model)
    names, images = load_images(cfg, g.config.size, g.config.nc, g.config.crop)
    other_rates = [f" q={q}" for q in grid_levels(len(ladder), ladder.default)] if ladder else []
    cols = [
        r["codec"]
        for r in records
        if r["codec"].startswith("percodec") and (not r.get("sweep") or r["codec"].endswith(tuple(other_rates)))
    ]
    cols = list(dict.fromkeys(cols)) + [
        "webp @ percodec bytes",
        "eigenface @ percodec bytes",
        "jpeg q=1",
        "k-means K=4",
    ]
    cols = [c for c in cols if any(r["codec"] == c for r in records)]
    basis = eigenbasis(cfg, g.config.size, g.config.nc, g.config.crop) if cfg.dataset == "celeba" else None
    pick = list(range(min(rows, len(names))))
    fig, axes = plt.subplots(len(pick), 1 + len(cols), figsize=(1.5 * (1 + len(cols)), 1.75 * len(pick)), squeeze=False)
    by = {(r["codec"], r["image"]): r for r in records}
    for a, i in enumerate(pick):
        axes[a][0].imshow(images[i].squeeze(), cmap="gray")
        axes[a][0].set_title("original" if a == 0 else "", fontsize=7)
        for b, c in enumerate(cols, start=1):
            r = by.get((c, names[i]))
            if r is None:
                continue
            axes[a][b].imshow(reconstruct(r, images[i], cfg.model, basis).squeeze(), cmap="gray")
            if a == 0:
                title = c.replace(" @ percodec bytes", " (same B)").replace(" q=", "\nq=").replace(" max ", "\nmax ")
                title = title.replace(" default", "\ndefault")  # long loss names would overlap
                axes[a][b].set_title(title, fontsize=7)
            axes[a][b].set_xlabel(f"{int(r['bytes'])} B, {r['ssim']:.2f}", fontsize=6)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    _write_figure(fig, path)


def reconstruct(record: dict, img: np.ndarray, model: str, basis: B.Eigenbasis | None = None) -> np.ndarray:
    """A row's decoded image: percodec records keep their file's bytes; classic rows are
    deterministic given family and setting, so they are encoded again."""
    from codec.pipeline import decode_tensor

    if "data" in record:
        return decode_tensor(bytes.fromhex(record["data"]), record.get("model", model)).permute(1, 2, 0).numpy()
    nc, q = img.shape[-1], int(record["setting"])
    family = record["family"].removesuffix("-matched")
    make = {
        "jpeg": lambda: B.jpeg(q, nc),
        "webp": lambda: B.webp(q, nc),
        "avif": lambda: B.avif(q, nc),
        "kmeans": lambda: B.KMeansPalette(q, nc),
        "jpeg-scan": lambda: B.JpegScanOnly(q, nc, img.shape[1::-1]),
        "eigenface": lambda: B.EigenfaceCodec(basis, q),
    }[family]()
    return make.decode(make.encode(img))
