"""Running a bench: every codec over every image, scored once and cached as JSON lines (an
interrupted run resumes; under torchrun each rank takes every W-th image), after checks
made before any work."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec import baselines as B
from codec import lpips, metrics, verify
from codec.bench.config import EIGENFACE_LO, BenchConfig, _cap, _key, _rd_suffix, eigenbasis, labelled, load_images
from codec.errors import WriteError
from codec.family import CodingModel
from codec.losses.watson import WatsonDistance
from codec.lpips import MIN_SIDE
from codec.shard import Shard


class Scorer:
    """Per-image metrics of a decoded 8-bit image against its original."""

    def __init__(self, channels: int = 3, judge: bool = True, model: str = "celeba64") -> None:
        from codec import faces
        from codec.bench.config import describer

        self.watson = WatsonDistance("dft").eval()
        # LPIPS (AlexNet, v0.1) where its weights have been fetched (`make lpips`); colour only.
        self.lpips = channels == 3 and lpips.available()
        # Same person: dlib's descriptor within 0.6 of the original's (colour faces only).
        self.same_person = faces.SamePerson() if channels == 3 and faces.available() else None
        # The judges' descriptors (codec.verify) where their weights have been fetched (`make judge`),
        # by record field; faces framed as `model`'s.
        self.judges = {verify.RECOGNISERS[by][0]: describe for by in verify.JUDGE_NETS
                       for ready, describe in [describer(by, judge, model)] if ready and channels == 3}  # fmt: skip

    def __call__(self, orig: np.ndarray, dec: np.ndarray, nbytes: int, png: int, identity: bool = True) -> dict:
        """The scores; `identity` False (a sweep point, plotted but never verified) skips the judges (60 ms a face)."""
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
            **({"lpips": lpips.distance(b, a).item()} if self.lpips and min(h, w) >= MIN_SIDE else {}),  # fmt: skip
            **(self._person(orig, dec) if self.same_person else {}),
            **({k: verify.pack(describe(dec[None])[0]) for k, describe in self.judges.items()} if identity else {}),
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
    for small in cfg.upscaled:
        _scale_key(small)  # a rate-distortion model or scale, or a clear error before any work
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

    from codec.data import read_identities
    from codec.fileio import folder_files

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
        self.model_key = _scale_key(cfg.model) if self.ladder else fp.hex()
        c = self.g.config
        self.nc = c.nc
        self.names, self.images = load_images(cfg, c.size, c.nc, c.crop)
        self.mine = list(range(self.rank, len(self.names), self.world))
        self.cache = Cache(Path(cfg.out) / "cache", self.rank)
        # the judge's descriptors only serve cross-photo verification: only where there are identity labels
        self.score = Scorer(c.nc, cfg.judge and labelled(cfg), cfg.model)
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
        scores = self.score(self.images[i], decoded, size, self.png[name], identity=not extra.get("sweep"))
        return {"image": name, "codec": codec, "family": family, "setting": setting, **scores,
                "enc_ms": enc_ms, "dec_ms": dec_ms, **extra}  # fmt: skip

    def classic(self, codec: B.Baseline, extra: dict | None = None) -> Callable[[int], dict]:
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
        for small in cfg.upscaled:
            self.percodec(small, True, _scale_key(small), [("default", False), *caps], cfg.losses[:1],
                          f"-{Path(small).name.removesuffix('.ladder.json').removesuffix('.safetensors')}-upscaled",
                          upscale=True)  # fmt: skip

    def percodec(self, model: str, rd: bool, key_of_model: str, settings: list, losses: tuple, tag: str,
                 upscale: bool = False) -> None:  # fmt: skip
        """Rows of `model` at each setting (and loss); `upscale`: a model of a smaller side,
        coding the images shrunk to it, its decoded faces scored upscaled to the bench's side."""
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
                    self.cache.append(key, self.encode_rows(chunk, opts, label, family, setting, is_sweep, upscale))
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
        self, chunk: list[int], opts: Any, label: str, family: str, setting: int | str, sweep: bool,
        upscale: bool = False,
    ) -> list:  # fmt: skip
        from PIL import Image

        from codec.images import uint8_to_pil
        from codec.pipeline import decode_tensor, encode_batch
        from codec.zoo import load_model, resolve

        images = [uint8_to_pil(torch.from_numpy(self.images[i]).permute(2, 0, 1)) for i in chunk]
        if upscale:  # shrunk as the smaller model's own crops are made (bicubic)
            side = load_model(resolve(opts.model).base)[0].config.size
            images = [im.resize((side, side), Image.Resampling.BICUBIC) for im in images]
        t = time.perf_counter()
        res = encode_batch(images, opts)
        enc_ms = (time.perf_counter() - t) * 1000 / len(chunk)
        recs = []
        for i, r in zip(chunk, res, strict=True):
            t = time.perf_counter()
            dec = decode_tensor(r.data, opts.model).permute(1, 2, 0).numpy()
            dec = upscaled(dec, self.images[i].shape[0]) if upscale else dec
            dec_ms = (time.perf_counter() - t) * 1000
            extra = {"data": r.data.hex(), "model": str(opts.model), **({"sweep": True} if sweep else {}),
                     **({"upscaled_from": r.original.shape[-1]} if upscale else {})}  # fmt: skip
            recs.append(self.record(i, label, family, setting, dec, r.num_bytes, enc_ms, dec_ms, **extra))
        return recs

    def level_bytes(self, level: int | str) -> dict[str, int]:
        recs = self.cache.load(self.row_keys[f"percodec {self.cfg.losses[0]}{_rd_suffix(level)}"]).values()
        return {r["image"]: int(r["bytes"]) for r in recs}

    def matched(
        self, name: str, family: str, make: Callable[[int], B.Baseline], lo: int = 0, level: int | str | None = None
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
            extra = {"reached": reached, "budget": target[self.names[i]], "matched_to": "default" if level is None
                     else level, **({"sweep": True} if sweep else {})}  # fmt: skip
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
        for n in cfg.max_bytes if rd else ():  # per face: does WebP within our bytes beat us? (tables.webp_wins)
            self.matched("webp", "webp", lambda q: B.webp(q, nc), level=f"max:{n}")
        shape = self.images.shape[1:3][::-1]
        self.matched("jpeg scan-only", "jpeg-scan", lambda q: B.JpegScanOnly(q, nc, shape), lo=1)
        if B.has_avif():
            self.matched("avif", "avif", lambda q: B.avif(q, nc))

    def fixed_rows(self) -> None:
        """The classic codecs at fixed settings (and, for the plot, a sweep of them)."""
        nc = self.nc
        fixed: list[B.Baseline] = [
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
        sweep: list[B.Baseline] = []
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


def upscaled(image: np.ndarray, side: int) -> np.ndarray:
    """A decoded face (H, W, C) uint8 resized (bicubic) to side x side."""
    from PIL import Image

    small = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
    return np.asarray(small.resize((side, side), Image.Resampling.BICUBIC)).reshape(side, side, image.shape[-1])


def _scale_key(model: str) -> str:
    """What a rate-distortion model's cached rows were coded with: every rung model's
    fingerprint and level."""
    from codec.ladder import ladder_for
    from codec.zoo import load_model

    ladder = ladder_for(model)
    if ladder is None:
        raise ValueError(f"--upscaled {model}: not a rate-distortion model or scale")
    return _key("ladder", [(load_model(r.model)[1].hex(), r.level) for r in ladder.rungs], ladder.default)


def reconstruct(record: dict, img: np.ndarray, model: str, basis: B.Eigenbasis | None = None) -> np.ndarray:
    """A row's decoded image: percodec records keep their file's bytes; classic rows are
    deterministic given family and setting, so they are encoded again."""
    from codec.pipeline import decode_tensor

    if "data" in record:
        dec = decode_tensor(bytes.fromhex(record["data"]), record.get("model", model)).permute(1, 2, 0).numpy()
        return upscaled(dec, img.shape[0]) if "upscaled_from" in record else dec
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
