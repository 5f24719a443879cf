"""The rate-distortion backend (the shipped default): an encoder's latent, refined under a
perceptual loss without outgrowing the byte budget (codec.inversion.refine), entropy-coded
with the model's learned prior (codec.entropy) into a version-2 file. A model's qualities
are the rungs of its ladder (codec.ladder): a level of one of the ladder's models each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from codec import container, zoo
from codec.container import FINGERPRINT_BYTES, OVERHEAD_V2, CodedContainer, Container, ContainerError
from codec.defaults import DEFAULT_MAX_BYTES, RD_LOSS, RD_STEPS
from codec.encoding import BatchCoder, EncodeOptions, EncodeResult, Tick, search_loss, steps_of
from codec.entropy import CodingError
from codec.family import CodingModel
from codec.generator import Generator
from codec.images import float_to_uint8
from codec.ladder import Ladder, Rung, shipped_ladders
from codec.metrics import psnr, ssim
from codec.zoo import Resolved

#: Under a byte cap the refinement may let a file grow to the cap less this many bytes (the
#: coder's real payload runs a little over the ideal code length the search sees). On 200
#: CelebA valid faces at the default cap: 0 -> 25.20 dB (refined files outgrew the cap and
#: fell back to the encoder's latent), 1.5 -> 25.27, 3 -> 25.34 dB / SSIM 0.8297 (108.1 B),
#: 6 -> 25.31; not growing at all 25.26 dB / 0.8268 (104.9 B).
CAP_SLACK_BYTES = 3


class RateDistortion:
    """The `codec.backends.Backend` of rate-distortion families' models (`CodingModel`) and their ladders,
    version-2 files."""

    container = CodedContainer
    words = "rate-distortion models"
    options = ("quality",)

    def coder(
        self, base: CodingModel, fp: bytes, o: EncodeOptions, model: Resolved, device: torch.device, tick: Tick,
        batch: int,
    ) -> BatchCoder:  # fmt: skip
        """Encoder start + rate-aware refinement + entropy coding (see inversion.refine).

        The quality is --quality, or else the highest quality whose encoder-only file fits
        --max-bytes (default DEFAULT_MAX_BYTES), per image; a refined file that outgrows the
        budget falls back to the encoder's own latent (which fits it). Each quality is a rung
        of the ladder: a level of one of its models.
        """
        ladder = model.ladder
        if o.quality is not None:
            ladder.rung(o.quality)  # range check before any work
        models, decoders = _rung_models(ladder, base, device)
        loss = o.loss or RD_LOSS
        loss_fn = search_loss(loss, base.config.nc, o.loss_params, ladder.rungs[0].model, device)
        steps = RD_STEPS if o.steps is None else o.steps
        candidates, max_bytes = _rate_setting(o, ladder)
        if o.quality is None and not model.scale:
            # a model's own levels are numbered as they were added, not by size (celeba64's
            # 9-11 are coarser than its 1-8): its cap search tries the most bytes first
            order = base.byte_order()
            candidates.sort(key=lambda q: -order.index(ladder.rung(q).level))

        def code(x: torch.Tensor, first: int) -> list[EncodeResult]:
            x = x.to(device)
            qualities, budgets = _pick_levels(ladder, models, x, candidates, max_bytes, first, o.max_bytes is not None)
            rungs = [ladder.rung(q) for q in qualities]
            sym: list = [None] * len(x)  # each row's code (what its model packs into a payload)

            room = torch.tensor([0.0 if b is None else (b - OVERHEAD_V2 - CAP_SLACK_BYTES) * 8 for b in budgets])

            def search(rows: list[int], n: int) -> None:
                for name, sub in _rows_by_model([rungs[i] for i in rows]).items():  # one search per model
                    at = [rows[j] for j in sub]
                    on_step = steps_of(tick, len(at)) if n else None
                    levels = [rungs[i].level for i in at]
                    found = models[name][0].search(x[at], levels, loss_fn, n, on_step=on_step, budget_bits=room[at])
                    for i, code in zip(at, found, strict=True):
                        sym[i] = code

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
                    r.notes += (_over_the_default_cap(ladder, max_bytes, r.num_bytes),)
            return results

        return code

    def reusable(self, c: Container | CodedContainer, data: bytes, o: EncodeOptions, model: Resolved) -> str | None:
        """Why an existing file cannot stand for coding with `o` (None: it can): the model
        (a rung of the ladder) and the rate setting must match."""
        ladder = model.ladder
        rungs = [name for name in ladder.models() if zoo.answers_to(name, c.fingerprint)]
        if not rungs:
            return "was made with another model"
        if not isinstance(c, CodedContainer):
            return "is a version-1 file; this model writes version 2"
        quality = ladder.quality_of(rungs[0], c.level)
        qualities, max_bytes = _rate_setting(o, ladder)
        if quality not in qualities:
            have = f"quality {quality}" if quality else f"level {c.level} of {rungs[0]}, not on this model's scale"
            return f"has {have}, not {qualities[0] if len(qualities) == 1 else f'at most {qualities[0]}'}"
        return None if max_bytes is None or len(data) <= max_bytes else f"is over {max_bytes} bytes"

    def decode(self, c: CodedContainer, g: Generator | CodingModel, name: str) -> torch.Tensor:
        """A version-2 file's image, uint8 (C, H, W)."""
        if not isinstance(g, CodingModel) or not g.has_level(c.level):
            raise ContainerError(f"{name} cannot decode this version-2 file (level {c.level})")
        try:
            code = g.unpack(c.payload, c.level)
        except CodingError as exc:
            raise ContainerError(f"corrupt payload: {exc}") from None
        return float_to_uint8(g.image(code, c.level))[0]

    def describe(self, c: CodedContainer, data: bytes, model: str | None) -> dict[str, object]:
        """A version-2 header's fields (`percodec info`), with the quality on a shipped ladder
        where the file is on one."""
        out: dict[str, object] = dict(version=2, header_bytes=OVERHEAD_V2, latent_bytes=len(c.payload), level=c.level)
        out.update(quality=None, scale=None)
        for ladder in shipped_ladders() if model else []:
            q = ladder.quality_of(model, c.level)
            if q is not None:
                out.update(quality=q, scale=ladder.name)
                break
        return out


def _rung_models(
    ladder: Ladder, base: CodingModel, device: torch.device
) -> tuple[dict[str, tuple[CodingModel, bytes]], dict[str, CodingModel]]:
    """Every rung model on `device` (with its fingerprint) and on the CPU, where decode()
    runs, so a result reports exactly what decoding gives; loaded and checked before any work."""
    models = {name: zoo.load_model(name, device) for name in ladder.models()}
    for name, (m, _) in models.items():
        if not isinstance(m, CodingModel) or m.config.size != base.config.size or m.config.nc != base.config.nc:
            raise ValueError(f"{ladder.name}: rung model {name} is not a {base.config.size}px rate-distortion model")
    return models, {name: zoo.load_model(name, "cpu")[0] for name in models}


def _over_the_default_cap(ladder: Ladder, cap: int, size: int) -> str:
    return (
        f"no quality of {ladder.name} fits the default {cap} bytes: coded at its default quality {ladder.default} "
        f"({size} bytes); --max-bytes or --quality chooses"
    )


def _rows_by_model(rungs: Sequence[Rung]) -> dict[str, list[int]]:
    """Row indices of each rung model, models in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, r in enumerate(rungs):
        out.setdefault(r.model, []).append(i)
    return out


def _file(m: CodingModel, fp: bytes, level: int, code: object) -> bytes:
    payload = m.pack(code, level)
    return container.to_bytes(CodedContainer(fp[:FINGERPRINT_BYTES], level, payload))


def _rate_setting(o: EncodeOptions, ladder: Ladder) -> tuple[list[int], int | None]:
    """Candidate qualities (best first) on the ladder, and the byte budget."""
    if o.quality is not None:
        return [o.quality], o.max_bytes
    return list(range(len(ladder), 0, -1)), o.max_bytes or DEFAULT_MAX_BYTES


def _pick_levels(
    ladder: Ladder,
    models: dict[str, tuple[CodingModel, bytes]],
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
    caches: dict[str, dict] = {}  # per rung model: what its levels share (its encoder's output)
    codes: dict[int, Sequence] = {}  # quality -> the batch's encoder-only codes
    floors: dict[int, np.ndarray] = {}  # quality -> their file sizes, estimated from below

    def floor(q: int, i: int) -> float:
        if q not in codes:
            rung = ladder.rung(q)
            m, _ = models[rung.model]
            codes[q], floors[q] = m.start_bytes(x, rung.level, caches.setdefault(rung.model, {}), max_bytes)
        return float(floors[q][i])

    def size(q: int, i: int) -> int:
        rung = ladder.rung(q)
        return OVERHEAD_V2 + len(models[rung.model][0].pack(codes[q][i], rung.level))

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
    decoders: dict[str, CodingModel],
    rungs: Sequence[Rung],
    qualities: Sequence[int],
    sym: Sequence[object],
    files: Sequence[bytes],
    x: torch.Tensor,
    steps: int,
    loss: str,
) -> list[EncodeResult]:
    """The batch's results, each decoded on the CPU exactly as `decode` does: one file at a
    time, since a batched generator run may differ in the last float bit on some machines."""
    decoded = torch.stack([float_to_uint8(decoders[r.model].image(sym[i], r.level))[0] for i, r in enumerate(rungs)])
    original = float_to_uint8(x)
    p, s = psnr(decoded, original), ssim(decoded, original)
    return [
        EncodeResult(
            files[i], original[i], decoded[i], float(p[i]), float(s[i]), 0.0, steps, 0, q, r.model, r.level, loss=loss
        )  # fmt: skip
        for i, (q, r) in enumerate(zip(qualities, rungs, strict=True))
    ]
