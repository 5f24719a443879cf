"""encode(image) -> bytes and decode(bytes) -> image: the only place that knows the order.

image -> images.open_image -> fit_to_model -> [-1,1] tensor
      -> inversion.invert(G, loss) -> symbols -> container.to_bytes
bytes -> container.from_bytes -> quantize.dequantize -> G(z) -> 8-bit image
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from codec import align, container
from codec.container import FINGERPRINT_BYTES, OVERHEAD_BYTES, OVERHEAD_V2, CodedContainer, Container, ContainerError
from codec.defaults import DEFAULT_BITS, DEFAULT_LOSS, DEFAULT_MAX_BYTES, DEFAULT_MODEL, RD_LOSS, RD_STEPS
from codec.entropy import CodingError
from codec.errors import ImageError, PercodecError
from codec.generator import Generator, fingerprint, load_generator, resolve_model, shipped_models
from codec.images import fit_to_model, float_to_uint8, input_name, open_image, read_input, to_tensor, uint8_to_pil
from codec.inversion import SearchConfig, invert, refine
from codec.isolate import Detector
from codec.ladder import Ladder, Rung, ladder_for, shipped_ladders
from codec.losses import make_mix, parse_mix
from codec.metrics import bpp, psnr, ssim
from codec.quantize import MAX_BITS, MIN_BITS, dequantize, payload_size
from codec.rdmodel import RDModel, is_rd_file, load_rd

#: Under a byte cap the refinement may let a file grow to the cap less this many bytes (the
#: coder's real payload runs a little over the ideal code length the search sees). On 200
#: CelebA valid faces at the default cap: 0 -> 25.20 dB (refined files outgrew the cap and
#: fell back to the encoder's latent), 1.5 -> 25.27, 3 -> 25.34 dB / SSIM 0.8297 (108.1 B),
#: 6 -> 25.31; not growing at all 25.26 dB / 0.8268 (104.9 B).
CAP_SLACK_BYTES = 3

#: A GAN-only search holds restarts x batch size latents with their generator activations:
#: peak memory 1.3-2.5 MB per latent for celeba64-gan (watson-dft, ms-ssim, ssim; 256
#: latents, measured with ru_maxrss), so 4096 is ~10 GB.
MAX_SEARCH_ROWS = 4096

ImageLike = str | Path | bytes | BinaryIO | Image.Image


@dataclass
class EncodeOptions:
    """Options of `encode`; see `percodec encode --help` for their meaning."""

    model: str | Path = DEFAULT_MODEL
    loss: str | None = None  # None: DEFAULT_LOSS (GAN-only model) or RD_LOSS (RD model)
    bits: int | None = None
    max_bytes: int | None = None
    steps: int | None = None  # None: SearchConfig.steps (GAN model) or RD_STEPS (RD model)
    quality: int | None = None
    restarts: int | None = None  # GAN-only models; None: SearchConfig.restarts
    lr: float = SearchConfig.lr
    prior: float = SearchConfig.prior
    seed: int = 0
    device: str = "auto"
    crop: float | None = None
    align: bool = True  # find and align the face in inputs larger than the model's size
    face: int = 1  # which face, by box area (1 = largest)
    require_face: bool = False  # no face found: error instead of the centre crop
    batch_size: int = 32
    loss_params: dict[str, object] = field(default_factory=dict)


@dataclass
class EncodeResult:
    """One encoded image: the file bytes, the model-sized input and what decoding gives."""

    data: bytes
    original: torch.Tensor  # uint8 (C, H, W): the preprocessed input
    decoded: torch.Tensor  # uint8 (C, H, W): exactly what decode() produces
    psnr: float
    ssim: float
    search_loss: float
    steps: int
    bits: int  # GAN-only models: bits per dimension (0 for rate-distortion models)
    level: int | None = None  # rate-distortion models: the quality (the ladder's, see codec.ladder)
    model: str = ""  # rate-distortion models: the model that coded it (a ladder's rung)
    where: str = "centre crop"  # how the input was framed (see `frame`)
    notes: tuple[str, ...] = ()
    seconds: float = 0.0  # wall time, the batch's shared out evenly
    loss: str = ""  # the loss the search minimised

    @property
    def num_bytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return bpp(len(self.data), *self.original.shape[-2:])


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA GPU is available")
    return torch.device(name)


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime: float, device: str) -> tuple[Generator | RDModel, tuple[bytes, ...]]:
    if is_rd_file(path):
        m, _ = load_rd(path, device)
        return m, tuple(m.fingerprints())
    g, _ = load_generator(path, device)
    return g, (fingerprint(g),)


def load_model(model: str | Path, device: str | torch.device = "cpu") -> tuple[Generator | RDModel, bytes]:
    """A model by shipped name or path (cached), with its 8-byte fingerprint: a GAN-only
    `Generator` or a rate-distortion `RDModel`."""
    path = resolve_model(model)
    m, fps = _load(str(path), path.stat().st_mtime, str(device))
    return m, fps[0]


def answers_to(model: str | Path, prefix: bytes) -> bool:
    """Whether a model's fingerprint starts with `prefix` (a file header's), or one it had
    before levels were added to it (rdmodel.add_levels) does."""
    path = resolve_model(model)
    _, fps = _load(str(path), path.stat().st_mtime, "cpu")
    return any(fp[: len(prefix)] == prefix for fp in fps)


def bits_for_budget(nz: int, max_bytes: int) -> int:
    """The most bits per dimension whose file fits in max_bytes."""
    for bits in range(MAX_BITS, MIN_BITS - 1, -1):
        if OVERHEAD_BYTES + payload_size(nz, bits) <= max_bytes:
            return bits
    need = OVERHEAD_BYTES + payload_size(nz, MIN_BITS)
    raise ValueError(f"--max-bytes {max_bytes} is too small: the smallest file for nz={nz} is {need} bytes")


def prepare(image: ImageLike, size: int, channels: int, crop: float) -> torch.Tensor:
    """Any supported image -> the model's input tensor (C, size, size) in [-1, 1], centre-cropped."""
    return to_tensor(fit_to_model(open_image(image, channels), size, crop))


@dataclass
class Framed:
    """A model-sized input and how it was framed (for the summary and --save-crop)."""

    tensor: torch.Tensor
    where: str  # e.g. "face 1 of 2 at (120, 80)-(260, 220), angle 4.1 deg" or "centre crop"
    notes: tuple[str, ...] = ()


def frame(
    image: ImageLike,
    model_path: Path,
    size: int,
    channels: int,
    crop: float,
    o: EncodeOptions,
    finder: Callable[..., list[align.Face]] = align.detect,
) -> Framed:
    """Read an input and make the model-sized crop: the face found (by `finder`) and aligned
    as the model's training faces (when the model has a framing and the input is not already
    model-sized), else the centre crop."""
    img, notes = read_input(image, channels)
    if min(img.size) < size:
        notes += (f"image is {img.size[0]}x{img.size[1]}, smaller than the model's {size}x{size}: upscaled",)
    crop = o.crop if o.crop is not None else crop
    framing = align.read_framing(model_path) if o.align and channels == 3 and img.size != (size, size) else None
    if framing is None:
        return Framed(to_tensor(fit_to_model(img, size, crop)), "centre crop", notes)
    name = input_name(image)
    try:
        a = align.align(img, framing, size, o.face, finder)
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
) -> Iterator[tuple[int, EncodeResult | PercodecError]]:
    """Encode images `options.batch_size` at a time, yielding (index, result) in input
    order as each batch finishes, so a caller can keep every finished result.

    Inputs are read one batch at a time. A bad input raises its PercodecError, or with
    `keep_going` is yielded in place of its result while the rest go on. Options are
    checked (and the model loaded) before the first input is read. `on_progress(n)` is
    called as the search advances, n being images' worth of work (fractions while a batch
    is searched); the calls add up to len(images). `finder` finds the faces: `align.detect`
    or a `codec.isolate.Detector` [a Detector where a batch is at stake, else in process].
    """
    o = options or EncodeOptions()
    device = pick_device(o.device)
    ladder = ladder_for(o.model)
    base = ladder.rungs[0].model if ladder else str(o.model)
    g, fp = load_model(base, device)
    progress = _Progress(on_progress)
    if ladder:
        code = _rd_coder(ladder, g, o, device, progress.tick)
    else:
        code = _gan_coder(g, fp, o, device, progress.tick, min(o.batch_size, len(images)))
    path, cfg = resolve_model(base), g.config
    if finder is not None:
        own = contextlib.nullcontext(finder)
    elif keep_going or len(images) > 1:  # a native crash in the face finder must cost one image only
        own = Detector()
    else:
        own = contextlib.nullcontext(align.detect)
    with own as finder:
        for start in range(0, len(images), o.batch_size):
            t0 = time.perf_counter()
            out: dict[int, EncodeResult | PercodecError] = {}
            framed: dict[int, Framed] = {}
            for i in range(start, min(start + o.batch_size, len(images))):
                try:
                    framed[i] = frame(images[i], path, cfg.size, cfg.nc, cfg.crop, o, finder)
                except PercodecError as exc:
                    if not keep_going:
                        raise
                    out[i] = exc
            if framed:
                results = code(torch.stack([f.tensor for f in framed.values()]), start)
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


def _gan_bits(nz: int, o: EncodeOptions) -> int:
    """Bits per dimension for a GAN-only model: --bits, or the most that fit --max-bytes."""
    bits = o.bits if o.bits is not None else (bits_for_budget(nz, o.max_bytes) if o.max_bytes else DEFAULT_BITS)
    if o.max_bytes is not None and OVERHEAD_BYTES + payload_size(nz, bits) > o.max_bytes:
        raise ValueError(
            f"{bits} bits per dimension make {OVERHEAD_BYTES + payload_size(nz, bits)}-byte files, "
            f"over --max-bytes {o.max_bytes}"
        )
    return bits


BatchCoder = Callable[[torch.Tensor, int], list[EncodeResult]]
Tick = Callable[[float], None]  # images' worth of search done (see encode_iter)


def _steps_of(tick: Tick, rows: int) -> Callable[[int, int], None]:
    """A search's on_step(step, total) over `rows` images, reported to `tick`."""
    return lambda step, total: tick(rows / total)


def search_loss(spec: str, channels: int, params: dict, model: str | Path, device: torch.device) -> torch.nn.Module:
    """The search's loss (eval mode: deterministic); an identity term is told the model's
    framing, so that its face chip is cut where the model's crops put the face."""
    if "identity" in parse_mix(spec) and "framing" not in params:
        framing = align.read_framing(resolve_model(model))
        params = {**params, **({"framing": framing.tolist()} if framing is not None else {})}
    return make_mix(spec, channels, **params).to(device).eval()


def _gan_coder(g: Generator, fp: bytes, o: EncodeOptions, device: torch.device, tick: Tick, batch: int) -> BatchCoder:
    """Checks the options for a GAN-only model (`batch` images at most searched at once)
    and returns: batch (B, C, H, W) -> results."""
    if o.quality is not None:
        raise ValueError("--quality applies to rate-distortion models; this GAN-only model takes --bits")
    cfg = g.config
    bits = _gan_bits(cfg.nz, o)
    rows = (o.restarts or SearchConfig.restarts) * batch
    if rows > MAX_SEARCH_ROWS:
        raise ValueError(
            f"--restarts x --batch-size is {rows} latents searched at once, over the {MAX_SEARCH_ROWS} that fit "
            "in memory (up to 2.5 MB each): lower --batch-size"
        )
    # eval(): deterministic by default; the search passes Watson's grid shifts explicitly.
    loss = o.loss or DEFAULT_LOSS
    loss_fn = search_loss(loss, cfg.nc, o.loss_params, o.model, device)
    search = SearchConfig(
        steps=o.steps if o.steps is not None else SearchConfig.steps,
        restarts=o.restarts or SearchConfig.restarts,
        lr=o.lr,
        prior=o.prior,
        seed=o.seed,
    )
    decoder, _ = load_model(o.model, "cpu")  # decode() runs on CPU: report exactly its output

    def code(x: torch.Tensor, first: int) -> list[EncodeResult]:
        res = invert(g, x.to(device), loss_fn, bits, search, _steps_of(tick, len(x)))
        with torch.no_grad():  # one at a time, as decode() runs (see _rd_results)
            decoded = torch.cat([float_to_uint8(decoder(dequantize(row[None], bits))) for row in res.symbols.cpu()])
        original = float_to_uint8(x)
        p, s = psnr(decoded, original), ssim(decoded, original)
        return [
            EncodeResult(
                container.to_bytes(
                    Container(fp[:FINGERPRINT_BYTES], bits, cfg.size, cfg.nc, tuple(res.symbols[i].tolist()))
                ),
                original[i],
                decoded[i],
                float(p[i]),
                float(s[i]),
                float(res.loss[i]),
                int(res.steps[i]),
                bits,
                loss=loss,
            )
            for i in range(len(x))
        ]

    return code


def _rd_coder(ladder: Ladder, base: RDModel, o: EncodeOptions, device: torch.device, tick: Tick) -> BatchCoder:
    """Encoder start + rate-aware refinement + entropy coding (see inversion.refine).

    The quality is --quality, or else the highest quality whose encoder-only file fits
    --max-bytes (default DEFAULT_MAX_BYTES), per image; a refined file that outgrows the budget falls back
    to the encoder's own latent (which fits it). Each quality is a rung of the ladder: a
    level of one of its models.
    """
    for given, name in ((o.bits, "--bits"), (o.restarts, "--restarts")):
        if given is not None:
            raise ValueError(f"{name} applies to GAN-only models; a rate-distortion model takes --quality")
    if o.quality is not None:
        ladder.rung(o.quality)  # range check before any work
    models = {name: load_model(name, device) for name in ladder.models()}  # every rung model, before any work
    decoders = {name: load_model(name, "cpu")[0] for name in models}  # decode() runs on CPU: report its output
    for name, (m, _) in models.items():
        if not isinstance(m, RDModel) or m.config.size != base.config.size or m.config.nc != base.config.nc:
            raise ValueError(f"{ladder.name}: rung model {name} is not a {base.config.size}px rate-distortion model")
    loss = o.loss or RD_LOSS
    loss_fn = search_loss(loss, base.config.nc, o.loss_params, ladder.rungs[0].model, device)
    steps = RD_STEPS if o.steps is None else o.steps
    candidates, max_bytes = _rate_setting(o, ladder)

    def code(x: torch.Tensor, first: int) -> list[EncodeResult]:
        x = x.to(device)
        qualities, budgets = _pick_levels(ladder, models, x, candidates, max_bytes, first, o.max_bytes is not None)
        rungs = [ladder.rung(q) for q in qualities]
        sym: list[torch.Tensor] = [torch.empty(0)] * len(x)  # each row's symbols (its model's nz)

        room = torch.tensor([0.0 if b is None else (b - OVERHEAD_V2 - CAP_SLACK_BYTES) * 8 for b in budgets])

        def search(rows: list[int], n: int) -> None:
            for name, sub in _rows_by_model([rungs[i] for i in rows]).items():  # one search per model
                at = [rows[j] for j in sub]
                on_step = _steps_of(tick, len(at)) if n else None
                levels = [rungs[i].level for i in at]
                found = refine(models[name][0], x[at], loss_fn, levels, n, on_step=on_step, budget_bits=room[at])
                for i, row in zip(at, found.cpu(), strict=True):
                    sym[i] = row

        search(list(range(len(x))), steps)
        files = [_file(*models[r.model], r.level, sym[i]) for i, r in enumerate(rungs)]
        outgrown = [i for i, b in enumerate(budgets) if b is not None and len(files[i]) > b]
        if outgrown:  # back to the encoder's own latent, which fits
            search(outgrown, 0)
            for i in outgrown:
                files[i] = _file(*models[rungs[i].model], rungs[i].level, sym[i])
        results = _rd_results(decoders, rungs, qualities, sym, files, x.cpu(), steps, loss)
        for r, budget in zip(results, budgets, strict=True):
            if max_bytes is not None and budget is None:  # the default cap, which no quality met
                r.notes += (
                    f"no quality of {ladder.name} fits the default {max_bytes} bytes: coded at its default "
                    f"quality {ladder.default} ({r.num_bytes} bytes); --max-bytes or --quality chooses",
                )
        return results

    return code


def _rows_by_model(rungs: Sequence[Rung]) -> dict[str, list[int]]:
    """Row indices of each rung model, models in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(rungs):
        out.setdefault(r.model, []).append(i)
    return out


def reusable(data: bytes, options: EncodeOptions) -> str | None:
    """Why existing .pgz bytes cannot stand for encoding with `options` (None: they can):
    they must parse and match the model's fingerprint and the rate setting asked for."""
    try:
        c = container.from_bytes(data)
    except ContainerError as exc:
        return f"is not a valid .pgz file ({exc})"
    ladder = ladder_for(options.model)
    if ladder:
        rungs = [name for name in ladder.models() if answers_to(name, c.fingerprint)]
        if not rungs:
            return "was made with another model"
        if not isinstance(c, CodedContainer):
            return "is a version-1 file; this model writes version 2"
        quality = ladder.quality_of(rungs[0], c.level)
        qualities, max_bytes = _rate_setting(options, ladder)
        if quality not in qualities:
            have = f"quality {quality}" if quality else f"level {c.level} of {rungs[0]}, not on this model's scale"
            return f"has {have}, not {qualities[0] if len(qualities) == 1 else f'at most {qualities[0]}'}"
        return None if max_bytes is None or len(data) <= max_bytes else f"is over {max_bytes} bytes"
    g, _ = load_model(options.model)
    if not answers_to(options.model, c.fingerprint):
        return "was made with another model"
    if isinstance(c, CodedContainer):
        return "is a version-2 file; this model writes version 1"
    want = _gan_bits(g.config.nz, options)
    return None if c.bits == want else f"has {c.bits} bits per dimension, not {want}"


def _file(m: RDModel, fp: bytes, level: int, symbols: torch.Tensor) -> bytes:
    payload = m.tables[level].encode(symbols.numpy())
    return container.to_bytes(CodedContainer(fp[:FINGERPRINT_BYTES], level, payload))


def _rate_setting(o: EncodeOptions, ladder: Ladder) -> tuple[list[int], int | None]:
    """Candidate qualities (best first) on the ladder, and the byte budget."""
    if o.quality is not None:
        return [o.quality], o.max_bytes
    return list(range(len(ladder), 0, -1)), o.max_bytes or DEFAULT_MAX_BYTES


def _pick_levels(
    ladder: Ladder,
    models: dict[str, tuple[RDModel, bytes]],
    x: torch.Tensor,
    candidates: list[int],
    max_bytes: int | None,
    first: int,
    strict: bool = True,
) -> tuple[list[int], list[int | None]]:
    """Per image: the first candidate quality whose encoder-only file fits max_bytes, and
    the budget its refined file must keep (the encoder's own file fits it). Where none
    fits: an error (strict: the user's --max-bytes) or the ladder's default with no budget."""
    if max_bytes is None:
        return [candidates[0]] * len(x), [None] * len(x)
    latents: dict[str, torch.Tensor] = {}  # each rung model's encoder runs once per batch
    symbols: dict[int, torch.Tensor] = {}  # quality -> the batch's clamped symbols
    floors: dict[int, np.ndarray] = {}  # quality -> their ideal file sizes, never above the real ones

    def floor(q: int, i: int) -> float:
        if q not in symbols:
            rung = ladder.rung(q)
            m, _ = models[rung.model]
            if rung.model not in latents:
                with torch.no_grad():
                    latents[rung.model] = m.encoder(x)
            table = m.tables[rung.level]
            symbols[q] = table.clamp(m.prior.quantize(latents[rung.model], table.step)).cpu()
            floors[q] = OVERHEAD_V2 + table.bits(symbols[q]).numpy() / 8
        return float(floors[q][i])

    def size(q: int, i: int) -> int:
        rung = ladder.rung(q)
        return OVERHEAD_V2 + len(models[rung.model][0].tables[rung.level].encode(symbols[q][i].numpy()))

    out: list[int] = []
    budgets: list[int | None] = []
    for i in range(len(x)):
        # the real size is only taken where the ideal one fits: one or two coder runs per image
        fit = next((q for q in candidates if floor(q, i) <= max_bytes and size(q, i) <= max_bytes), None)
        if fit is not None:
            out.append(fit)
            budgets.append(max_bytes)
        elif not strict:  # the default cap: a model for more bytes keeps its default quality
            out.append(ladder.default)
            budgets.append(None)
        else:
            q = min(candidates, key=lambda c: floor(c, i))
            raise ValueError(
                f"image {first + i + 1}: its encoder's file at quality {q}, the smallest, is {size(q, i)} bytes, "
                f"over --max-bytes {max_bytes}"
            )
    return out, budgets


def _rd_results(
    decoders: dict[str, RDModel],
    rungs: Sequence[Rung],
    qualities: Sequence[int],
    sym: Sequence[torch.Tensor],
    files: Sequence[bytes],
    x: torch.Tensor,
    steps: int,
    loss: str,
) -> list[EncodeResult]:
    """The batch's results, each decoded on the CPU exactly as `decode` does: one file at a
    time, since a batched generator run may differ in the last float bit on some machines."""
    decoded = torch.stack([float_to_uint8(decoders[r.model].decode_symbols(sym[i][None], [r.level]))[0]
                           for i, r in enumerate(rungs)])  # fmt: skip
    original = float_to_uint8(x)
    p, s = psnr(decoded, original), ssim(decoded, original)
    return [
        EncodeResult(files[i], original[i], decoded[i], float(p[i]), float(s[i]), 0.0, steps, 0, q, r.model, loss=loss)
        for i, (q, r) in enumerate(zip(qualities, rungs, strict=True))
    ]


def encode(image: ImageLike, **options: object) -> bytes:
    """Compress one image to .pgz bytes. Options: the fields of `EncodeOptions`."""
    return encode_batch([image], EncodeOptions(**options))[0].data  # type: ignore[arg-type]


def model_for(c: Container | CodedContainer, model: str | Path | None = None) -> tuple[Generator | RDModel, str]:
    """The generator a container needs: `model` (or one of its ladder's rung models) if
    given, checked, else the shipped match."""
    want = c.fingerprint.hex()
    if model is not None:
        ladder = ladder_for(model)
        names = ladder.models() if ladder else [str(model)]
        tried = []
        for name in names:
            g, fp = load_model(name)
            if answers_to(name, c.fingerprint):
                return g, name
            tried.append(f"{name} {fp[:4].hex()}" if len(names) > 1 else f"fingerprint {fp[:4].hex()}")
        needed = find_shipped(c.fingerprint)
        hint = f"model {needed!r}" if needed else f"a generator with fingerprint {want}, not a shipped one"
        has = f"has {tried[0]}" if len(names) == 1 else f"holds models with fingerprints {', '.join(tried)}"
        raise ContainerError(f"this file was made for {hint}; {model} {has}")
    name = find_shipped(c.fingerprint)
    if name is None:
        raise ContainerError(
            f"this file needs a generator with fingerprint {want}, which is not a shipped model: pass --model PATH"
        )
    return load_model(name)[0], name


def find_shipped(fp: bytes) -> str | None:
    """Name of the shipped model whose fingerprint starts with fp, if any."""
    return next((name for name in shipped_models() if answers_to(name, fp)), None)


def describe(data: bytes) -> dict[str, object]:
    """What a .pgz file's header says, as plain fields (`percodec info`, `--json`)."""
    c = container.from_bytes(data)
    out: dict[str, object] = {"bytes": len(data), "model": find_shipped(c.fingerprint)}
    out["fingerprint"] = c.fingerprint.hex()
    if isinstance(c, CodedContainer):
        out.update(version=2, header_bytes=OVERHEAD_V2, latent_bytes=len(c.payload), level=c.level)
        out.update(quality=None, scale=None)  # the quality on a shipped ladder, where the file is on one
        for ladder in shipped_ladders() if out["model"] else []:
            q = ladder.quality_of(str(out["model"]), c.level)
            if q is not None:
                out.update(quality=q, scale=ladder.name)
                break
    else:
        out.update(
            version=container.VERSION,
            header_bytes=OVERHEAD_BYTES,
            latent_bytes=len(data) - OVERHEAD_BYTES,
            quantizer=container.QUANTIZERS[c.quantizer],
            bits=c.bits,
            nz=c.nz,
            size=c.size,
            channels=c.channels,
            bpp=bpp(len(data), c.size, c.size),
        )
    return out


def decode_tensor(data: bytes, model: str | Path | None = None) -> torch.Tensor:
    """.pgz bytes -> uint8 tensor (C, H, W) at the model's size."""
    c = container.from_bytes(data)
    g, name = model_for(c, model)
    if isinstance(c, CodedContainer):
        if not isinstance(g, RDModel) or c.level not in g.tables:
            raise ContainerError(f"{name} cannot decode this version-2 file (quality {c.level})")
        try:
            symbols = g.tables[c.level].decode(c.payload)
        except CodingError as exc:
            raise ContainerError(f"corrupt payload: {exc}") from None
        return float_to_uint8(g.decode_symbols(torch.from_numpy(symbols)[None], [c.level]))[0]
    if not isinstance(g, Generator):
        raise ContainerError(f"{name} is a rate-distortion model; this version-1 file needs a GAN-only generator")
    if (g.config.size, g.config.nc, g.config.nz) != (c.size, c.channels, c.nz):
        raise ContainerError(f"file describes {c.size}x{c.size}x{c.channels}, nz={c.nz}; the model does not match")
    with torch.no_grad():
        return float_to_uint8(g(dequantize(torch.tensor([c.symbols]), c.bits)))[0]


def decode(data: bytes, model: str | Path | None = None, size: tuple[int, int] | None = None) -> Image.Image:
    """Regenerate the image from .pgz bytes; `size` (W, H) resizes the output (bicubic)."""
    img = uint8_to_pil(decode_tensor(data, model))
    if size is not None and size != img.size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    return img
