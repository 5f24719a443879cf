"""encode(image) -> bytes and decode(bytes) -> image: what is common to every backend.

image -> images.read_input -> frame (face found and aligned, or centre crop) -> [-1,1] tensor
      -> zoo.resolve(model) -> backends.for_model(resolved).coder -> batch of EncodeResults (file bytes, decoded image)
bytes -> container.from_bytes -> backends.for_file(c).decode with zoo.model_for(c) -> image

The backends (codec.backends.rd, codec.backends.gan) know their method; the zoo
(codec.zoo) knows the models; this module reads and frames inputs, batches them, streams
results and dispatches. Names other modules reach here for are re-exported below.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec import align, backends, container, zoo
from codec.backends.gan import bits_for_budget
from codec.container import ContainerError
from codec.defaults import (
    DEFAULT_BITS,
    DEFAULT_LOSS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MODEL,
    MAX_SIDE,
    RD_LOSS,
    RD_STEPS,
    check_int,
)
from codec.devices import pick_device
from codec.encoding import EncodeOptions, EncodeResult, ImageLike, search_loss
from codec.errors import ImageError, PercodecError
from codec.images import fit_to_model, input_name, read_input, to_tensor, uint8_to_pil
from codec.isolate import Detector
from codec.ladder import framing_of
from codec.shard import Shard
from codec.zoo import answers_to, find_shipped, load_model, model_for

__all__ = [
    "DEFAULT_BITS", "DEFAULT_LOSS", "DEFAULT_MAX_BYTES", "DEFAULT_MODEL", "RD_LOSS", "RD_STEPS",
    "EncodeOptions", "EncodeResult", "ImageLike", "Framed",
    "answers_to", "bits_for_budget", "decode", "decode_tensor", "describe", "encode", "encode_batch",
    "encode_iter", "find_shipped", "frame", "load_model", "model_for", "pick_device", "reusable", "search_loss",
]  # fmt: skip


@dataclass
class Framed:
    """A model-sized input and how it was framed (for the summary and --save-crop)."""

    tensor: torch.Tensor
    where: str  # e.g. "face 1 of 2 at (120, 80)-(260, 220), angle 4.1 deg" or "centre crop"
    notes: tuple[str, ...] = ()


def frame(
    image: ImageLike,
    framing: np.ndarray | None,
    size: int,
    channels: int,
    crop: float,
    o: EncodeOptions,
    finder: Callable[..., list[align.Face]] = align.detect,
) -> Framed:
    """Read an input and make the model-sized crop: the face found (by `finder`) and aligned
    as the model's training faces (`framing`, `ladder.framing_of`, where the model has one),
    else the centre crop. A model-sized input is taken as it is, as a crop already framed,
    unless its face sits far off the framing (`align.off_framing`: a tight portrait, a face
    off-centre), when it is framed as a photo is."""
    img, notes = read_input(image, channels)
    if min(img.size) < size:
        notes += (f"image is {img.size[0]}x{img.size[1]}, smaller than the model's {size}x{size}: upscaled",)
    crop = o.crop if o.crop is not None else crop
    framing = framing if o.align and channels == 3 else None
    name = input_name(image)
    try:
        faces = None  # found once, where a model-sized input is looked at
        if framing is not None and img.size == (size, size):
            faces = align.find_faces(img, finder)
            off = align.off_framing(faces, framing, size)
            if off is None:
                framing = None
            else:
                notes += (f"its face sat off the model's framing ({off}): framed as a photo is",)
        if framing is None:
            return Framed(to_tensor(fit_to_model(img, size, crop)), "centre crop", notes)
        a = align.align(img, framing, size, o.face, finder, faces)
    except ImageError as exc:
        raise ImageError(f"{name}: {exc}") from None
    if a.face is None:
        if o.require_face:
            raise ImageError(f"{name}: no face found (--require-face)")
        return Framed(
            to_tensor(fit_to_model(img, size, crop)), "centre crop", (*notes, "no face found: coded the centre crop")
        )
    box = a.face.box
    where = f"face {o.face} of {a.found} at ({box[0]}, {box[1]})-({box[2]}, {box[3]}), angle {a.face.angle:.1f} deg"
    return Framed(to_tensor(a.image), where, (*notes, *a.warnings))


def encode_iter(
    images: Sequence[ImageLike],
    options: EncodeOptions | None = None,
    on_progress: Callable[[float], None] | None = None,
    keep_going: bool = False,
    finder: Callable[..., list[align.Face]] | None = None,
    batches: Iterable[Sequence[int]] | None = None,
) -> Iterator[tuple[int, EncodeResult | PercodecError]]:
    """Encode images `options.batch_size` at a time, yielding (index, result) in input
    order as each batch finishes, so a caller can keep every finished result. `batches`:
    the indices of each batch, in the order to code them [consecutive runs of batch_size];
    a sharded run (codec.shard) hands each process the batches it claims.

    Inputs are read one batch at a time. A bad input raises its PercodecError, or with
    `keep_going` is yielded in place of its result while the rest go on. Options are
    checked (and the model loaded) before the first input is read. `on_progress(n)` is
    called as the search advances, n being images' worth of work (fractions while a batch
    is searched); the calls add up to len(images). `finder` finds the faces: `align.detect`
    or a `codec.isolate.Detector` [a Detector where a batch is at stake, else in process].
    """
    if isinstance(images, str | bytes | bytearray | Path | Image.Image):
        raise TypeError(f"images must be a sequence of images, got one {type(images).__name__}: use encode() for one")
    o = options or EncodeOptions()
    device = pick_device(o.device, Shard.from_env().local_rank)  # under torchrun: this process's GPU
    model = zoo.resolve(o.model)  # once: the scale, its base model and backend travel from here
    backend = backends.for_model(model)
    backends.refuse_others(backend, o)
    g, fp = zoo.load_model(model.base, device)
    progress = _Progress(on_progress)
    code = backend.coder(g, fp, o, model, device, progress.tick, min(o.batch_size, len(images)))
    cfg = g.config
    framing = framing_of(model.base) if cfg.nc == 3 else None
    if framing is None and (o.require_face or o.face != 1):
        flag = "--require-face" if o.require_face else "--face"
        raise ValueError(f"{flag} needs a model that finds faces: {o.model} has no framing and codes centre crops")
    if finder is not None:
        own = contextlib.nullcontext(finder)
    elif keep_going or len(images) > 1:  # a native crash in the face finder must cost one image only
        own = Detector()
    else:
        own = contextlib.nullcontext(align.detect)
    if batches is None:
        batches = (
            range(start, min(start + o.batch_size, len(images))) for start in range(0, len(images), o.batch_size)
        )
    with own as finder:
        for batch in batches:
            t0 = time.perf_counter()
            out: dict[int, EncodeResult | PercodecError] = {}
            framed: dict[int, Framed] = {}
            for i in batch:
                try:
                    framed[i] = frame(images[i], framing, cfg.size, cfg.nc, cfg.crop, o, finder)
                except PercodecError as exc:
                    if not keep_going:
                        raise
                    out[i] = exc
            if framed:
                results = code(torch.stack([f.tensor for f in framed.values()]), batch[0])
                seconds = (time.perf_counter() - t0) / len(results)
                for (i, f), r in zip(framed.items(), results, strict=True):
                    r.where, r.notes, r.seconds = f.where, (*f.notes, *r.notes), seconds
                    out[i] = r
            progress.end_batch(len(out))
            yield from sorted(out.items())


class _Progress:
    """Calls on_progress(n) as work is done, n in images' worth; a batch's calls add up to
    its size (a search that stops early, or never runs, is topped up at the batch's end)."""

    def __init__(self, on_progress: Callable[[float], None] | None) -> None:
        self.on_progress, self.in_batch = on_progress, 0.0

    def tick(self, n: float) -> None:
        self.in_batch += n
        if self.on_progress is not None:
            self.on_progress(n)

    def end_batch(self, images: int) -> None:
        if images - self.in_batch > 1e-9:
            self.tick(images - self.in_batch)
        self.in_batch = 0.0


def encode_batch(
    images: Sequence[ImageLike],
    options: EncodeOptions | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> list[EncodeResult]:
    """Encode several images, searched `options.batch_size` at a time; the first bad
    input raises (see `encode_iter` to keep results as they finish, and for on_progress)."""
    return [r for _, r in encode_iter(images, options, on_progress)]  # type: ignore[misc]


def reusable(data: bytes, options: EncodeOptions) -> str | None:
    """Why existing .pgz bytes cannot stand for encoding with `options` (None: they can):
    they must parse and match the model's fingerprint and the rate setting asked for."""
    try:
        c = container.from_bytes(data)
    except ContainerError as exc:
        return f"is not a valid .pgz file ({exc})"
    model = zoo.resolve(options.model)
    return backends.for_model(model).reusable(c, data, options, model)


def encode(image: ImageLike, **options: object) -> bytes:
    """Compress one image to .pgz bytes. Options: the fields of `EncodeOptions`."""
    return encode_batch([image], EncodeOptions(**options))[0].data  # type: ignore[arg-type]


def describe(data: bytes) -> dict[str, object]:
    """What a .pgz file's header says, as plain fields (`percodec info`, `--json`)."""
    c = container.from_bytes(data)
    model = zoo.find_shipped(c.fingerprint)
    out: dict[str, object] = {"bytes": len(data), "model": model, "fingerprint": c.fingerprint.hex()}
    return {**out, **backends.for_file(c).describe(c, data, model)}


def decode_tensor(data: bytes, model: str | Path | None = None) -> torch.Tensor:
    """.pgz bytes -> uint8 tensor (C, H, W) at the model's size."""
    if model is not None and not isinstance(model, str | Path):
        raise TypeError(f"model must be a shipped name or a path, got {type(model).__name__}")
    c = container.from_bytes(data)
    g, name = zoo.model_for(c, model)
    return backends.for_file(c).decode(c, g, name)


def decode(data: bytes, model: str | Path | None = None, size: tuple[int, int] | None = None) -> Image.Image:
    """Regenerate the image from .pgz bytes; `size` (W, H) resizes the output (bicubic)."""
    if size is not None:
        if not isinstance(size, tuple | list) or len(size) != 2:
            raise TypeError(f"size must be (width, height), got {size!r}")
        for name, side in zip(("width", "height"), size, strict=True):
            check_int(f"size {name}", side, 1, MAX_SIDE)
        size = (size[0], size[1])
    img = uint8_to_pil(decode_tensor(data, model))
    if size is not None and size != img.size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    return img
