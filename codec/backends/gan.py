"""The GAN-only backend (the reference method): search the generator's latent space for
the input (codec.inversion.invert), quantise the latent uniformly and write a version-1
file of fixed size (`--bits` per dimension, or the most that fit `--max-bytes`)."""

from __future__ import annotations

import torch

from codec import container, zoo
from codec.container import FINGERPRINT_BYTES, OVERHEAD_BYTES, CodedContainer, Container, ContainerError
from codec.defaults import DEFAULT_BITS, DEFAULT_LOSS
from codec.encoding import BatchCoder, EncodeOptions, EncodeResult, Tick, search_loss, steps_of
from codec.family import CodingModel
from codec.generator import Generator
from codec.images import float_to_uint8
from codec.inversion import SearchConfig, invert
from codec.metrics import bpp, psnr, ssim
from codec.quantize import MAX_BITS, MIN_BITS, dequantize, payload_size
from codec.zoo import Resolved

#: A GAN-only search holds restarts x batch size latents with their generator activations:
#: peak memory 1.3-2.5 MB per latent for celeba64-gan (watson-dft, ms-ssim, ssim; 256
#: latents, measured with ru_maxrss), so 4096 is ~10 GB.
MAX_SEARCH_ROWS = 4096


def bits_for_budget(nz: int, max_bytes: int) -> int:
    """The most bits per dimension whose file fits in max_bytes."""
    for bits in range(MAX_BITS, MIN_BITS - 1, -1):
        if OVERHEAD_BYTES + payload_size(nz, bits) <= max_bytes:
            return bits
    need = OVERHEAD_BYTES + payload_size(nz, MIN_BITS)
    raise ValueError(f"--max-bytes {max_bytes} is too small: the smallest file for nz={nz} is {need} bytes")


def gan_bits(nz: int, o: EncodeOptions) -> int:
    """Bits per dimension for a GAN-only model: --bits, or the most that fit --max-bytes."""
    bits = o.bits if o.bits is not None else (bits_for_budget(nz, o.max_bytes) if o.max_bytes else DEFAULT_BITS)
    if o.max_bytes is not None and OVERHEAD_BYTES + payload_size(nz, bits) > o.max_bytes:
        raise ValueError(
            f"{bits} bits per dimension make {OVERHEAD_BYTES + payload_size(nz, bits)}-byte files, "
            f"over --max-bytes {o.max_bytes}"
        )
    return bits


class GanOnly:
    """The `codec.backends.Backend` of GAN-only models (`Generator`), version-1 files."""

    container = Container
    words = "GAN-only models"
    options = ("bits", "restarts", "seed", "lr", "prior")

    def coder(
        self, g: Generator, fp: bytes, o: EncodeOptions, model: Resolved, device: torch.device, tick: Tick, batch: int
    ) -> BatchCoder:
        """Check the options for a GAN-only model (`batch` images at most searched at once)
        and return: batch (B, C, H, W) -> results."""
        cfg = g.config
        bits = gan_bits(cfg.nz, o)
        rows = (o.restarts or SearchConfig.restarts) * batch
        if rows > MAX_SEARCH_ROWS:
            raise ValueError(
                f"--restarts x --batch-size is {rows} latents searched at once, over the {MAX_SEARCH_ROWS} that fit "
                "in memory (up to 2.5 MB each): lower --batch-size"
            )
        # eval(): deterministic by default; the search passes Watson's grid shifts explicitly.
        loss = o.loss or DEFAULT_LOSS
        loss_fn = search_loss(loss, cfg.nc, o.loss_params, model.base, device)
        search = SearchConfig(
            steps=o.steps if o.steps is not None else SearchConfig.steps,
            restarts=o.restarts or SearchConfig.restarts,
            lr=o.lr,
            prior=o.prior,
            seed=o.seed if o.seed is not None else 0,
        )
        decoder, _ = zoo.load_model(model.base, "cpu")  # decode() runs on CPU: report exactly its output

        def code(x: torch.Tensor, first: int) -> list[EncodeResult]:
            res = invert(g, x.to(device), loss_fn, bits, search, steps_of(tick, len(x)))
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

    def reusable(self, c: Container | CodedContainer, data: bytes, o: EncodeOptions, model: Resolved) -> str | None:
        """Why an existing file cannot stand for coding with `o` (None: it can)."""
        g, _ = zoo.load_model(model.base)
        if not zoo.answers_to(model.base, c.fingerprint):
            return "was made with another model"
        if isinstance(c, CodedContainer):
            return "is a version-2 file; this model writes version 1"
        want = gan_bits(g.config.nz, o)
        return None if c.bits == want else f"has {c.bits} bits per dimension, not {want}"

    def decode(self, c: Container, g: Generator | CodingModel, name: str) -> torch.Tensor:
        """A version-1 file's image, uint8 (C, H, W)."""
        if not isinstance(g, Generator):
            raise ContainerError(f"{name} is a rate-distortion model; this version-1 file needs a GAN-only generator")
        if (g.config.size, g.config.nc, g.config.nz) != (c.size, c.channels, c.nz):
            raise ContainerError(f"file describes {c.size}x{c.size}x{c.channels}, nz={c.nz}; the model does not match")
        with torch.no_grad():
            return float_to_uint8(g(dequantize(torch.tensor([c.symbols]), c.bits)))[0]

    def describe(self, c: Container, data: bytes, model: str | None) -> dict[str, object]:
        """A version-1 header's fields (`percodec info`)."""
        return dict(
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
