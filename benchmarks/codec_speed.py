"""Encode/decode speed, quantisation loss and quality against search steps.

    python benchmarks/codec_speed.py --data-root ../shared/datasets [--images 50] [--device cpu]

1. Seconds per image to encode at default settings, one image at a time and 32 at once.
2. Decode milliseconds per image (container parse + generator + 8-bit conversion); with
   --pair MODEL, that model's decode timed in the same rounds, alternating (e.g. celeba128
   against celeba64: a ratio that holds on a busy machine); for a
   rate-distortion ladder also per quality (--qualities, default: every fourth and the top):
   encode and decode time, bytes and PSNR at each.
3. Quantisation loss: mean PSNR of the float-latent search against the default 7-bit
   quantisation-aware search on the valid images (the quantised one is what files hold).
4. Quality against steps (50, 100, 200, 500, 1000 at most; early stopping on as by default);
   for a rate-distortion model per search loss (--loss 'ssim;mse'), with the share of faces
   the recogniser still calls the same person.
Images: the first N of CelebA's valid split (tuning data; reported results use test).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codec.data import load_dataset  # noqa: E402
from codec.family import CodingModel  # noqa: E402
from codec.images import float_to_uint8, uint8_to_float, uint8_to_pil  # noqa: E402
from codec.inversion import SearchConfig, invert  # noqa: E402
from codec.losses import make_loss  # noqa: E402
from codec.metrics import psnr, ssim  # noqa: E402
from codec.pipeline import DEFAULT_BITS, DEFAULT_LOSS, RD_LOSS, EncodeOptions, decode_tensor, encode_batch, load_model  # noqa: E402

ROUNDS = 3  # timed repeats per figure; the median is reported


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default="../shared/datasets")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--model", default="celeba64")
    ap.add_argument(
        "--loss", help="search loss [the model's default]; for a rate-distortion model several, ';'-separated"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps-list", default="50,100,200,500,1000")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: speed,quant,steps,qualities")
    ap.add_argument("--qualities", help="rate-distortion: comma list of qualities to time [every fourth, the top]")
    ap.add_argument("--pair", help="rate-distortion: another model whose decode is timed alternately with --model's")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    dev = torch.device(args.device)
    g, _ = load_model(args.model, dev)
    c = g.config
    data = load_dataset("celeba", args.data_root, "valid", size=c.size, nc=c.nc, crop=c.crop,
                        limit=max(args.images, 32), cache_dir="runs/cache")  # fmt: skip
    pils = [uint8_to_pil(torch.from_numpy(im)) for im in data.images]
    args.loss = args.loss or (RD_LOSS if isinstance(g, CodingModel) else DEFAULT_LOSS)
    threads = torch.get_num_threads()
    print(f"model {args.model}, loss {args.loss}, device {dev} ({threads} threads), CelebA valid images")
    if isinstance(g, CodingModel):
        rd_speed(args, pils, skip)
        return

    if "speed" not in skip:
        opts = EncodeOptions(model=args.model, loss=args.loss, device=args.device)
        t = time.perf_counter()
        singles = [encode_batch([p], opts)[0] for p in pils[:4]]
        one = (time.perf_counter() - t) / 4
        t = time.perf_counter()
        encode_batch(pils[:32], opts)
        many = (time.perf_counter() - t) / 32
        t = time.perf_counter()
        for r in singles * 25:
            decode_tensor(r.data)
        dec = (time.perf_counter() - t) / (len(singles) * 25) * 1000
        print(f"encode, default settings: {one:.2f} s/image one at a time, {many:.2f} s/image in a batch of 32")
        print(f"decode: {dec:.2f} ms/image")

    x = uint8_to_float(torch.from_numpy(data.images[: args.images])).to(dev)
    target8 = float_to_uint8(x.cpu())
    loss = make_loss(args.loss).to(dev).eval()

    def quality(res) -> tuple[float, float]:
        with torch.no_grad():
            out = float_to_uint8(g(res.z.to(dev)).cpu())
        return psnr(out, target8).mean().item(), ssim(out, target8).mean().item()

    if "quant" not in skip:
        cfg = SearchConfig()
        pf, sf = quality(invert(g, x, loss, None, cfg))
        pq, sq = quality(invert(g, x, loss, DEFAULT_BITS, cfg))
        print(
            f"quantisation ({DEFAULT_BITS} bits, {args.images} images): float latent PSNR {pf:.2f} dB / SSIM "
            f"{sf:.4f}; quantised {pq:.2f} dB / {sq:.4f}; PSNR lost {pf - pq:+.2f} dB"
        )

    if "steps" not in skip:
        print(f"{'steps':>6} {'PSNR dB':>8} {'SSIM':>7} {'s/image':>8}")
        for steps in (int(s) for s in args.steps_list.split(",")):
            t = time.perf_counter()
            res = invert(g, x, loss, DEFAULT_BITS, SearchConfig(steps=steps))
            sec = (time.perf_counter() - t) / len(x)
            p, s = quality(res)
            print(f"{steps:6d} {p:8.2f} {s:7.4f} {sec:8.2f}")


def rd_speed(args: argparse.Namespace, pils: list, skip: set[str]) -> None:
    """A rate-distortion model: encoder-only, default and refined encodes; decode."""

    def timed(images: list, model: str = args.model, **kw) -> tuple[list, float]:
        t = time.perf_counter()
        loss = args.loss.split(";")[0]  # speed: the first (default) loss
        res = encode_batch(images, EncodeOptions(model=model, loss=loss, device=args.device, **kw))
        return res, (time.perf_counter() - t) / len(images) * 1000

    if "speed" not in skip:
        timed(pils[:32], steps=0)  # warm-up: model load, tables, the batch's shapes
        timed(pils[:32])
        enc0 = statistics.median(timed(pils[:32], steps=0)[1] for _ in range(ROUNDS))
        runs = [timed(pils[:32]) for _ in range(ROUNDS)]
        res, enc = runs[0][0], statistics.median(ms for _, ms in runs)

        def decode_ms(files: list, model: str) -> float:
            t = time.perf_counter()
            for r in files:
                decode_tensor(r.data, model)
            return (time.perf_counter() - t) / len(files) * 1000

        pair = timed(pils[:32], args.pair, steps=0)[0] if args.pair else []
        times: dict[str, list[float]] = {args.model: [], **({args.pair: []} if args.pair else {})}
        for _ in range(ROUNDS * 2):  # alternating, so that both see the same machine
            times[args.model].append(decode_ms(res, args.model))
            if args.pair:
                times[args.pair].append(decode_ms(pair, args.pair))
        dec = statistics.median(times[args.model])
        print(f"batch of 32 (median of {ROUNDS}): encoder only {enc0:.1f} ms/image, default encode {enc:.1f} ms/image")
        print(f"decode, one file at a time: {dec:.2f} ms/image")
        if args.pair:
            other = statistics.median(times[args.pair])
            print(f"decode of {args.pair} in the same rounds: {other:.2f} ms/image ({dec / other:.2f}x it)")
    if "qualities" not in skip:
        per_quality(args, pils[:32])
    if "steps" not in skip:
        from codec.faces import same_person

        print(f"{'search loss':>20} {'steps':>6} {'bytes':>6} {'PSNR dB':>8} {'SSIM':>7} {'same':>6} {'ms/image':>9}")
        for loss in args.loss.split(";"):
            for steps in (int(s) for s in args.steps_list.split(",")):
                t = time.perf_counter()
                res = encode_batch(
                    pils[: args.images], EncodeOptions(model=args.model, loss=loss, device=args.device, steps=steps)
                )
                ms = (time.perf_counter() - t) / len(res) * 1000
                n = len(res)
                nhwc = lambda t: t.permute(1, 2, 0).numpy()  # noqa: E731
                same = same_person(np.stack([nhwc(r.original) for r in res]), np.stack([nhwc(r.decoded) for r in res]))
                print(
                    f"{loss:>20} {steps:6d} {sum(r.num_bytes for r in res) / n:6.1f} "
                    f"{sum(r.psnr for r in res) / n:8.2f} {sum(r.ssim for r in res) / n:7.4f} "
                    f"{100 * same.mean():5.1f}% {ms:9.1f}"
                )


def _decode_ms(results: list, model: str) -> float:
    t = time.perf_counter()
    for r in results:
        decode_tensor(r.data, model)
    return (time.perf_counter() - t) / len(results) * 1000


def per_quality(args: argparse.Namespace, pils: list) -> None:
    """Encode (batch of 32, default search) and decode (one file at a time) per quality."""
    from codec.ladder import ladder_for

    ladder = ladder_for(args.model)
    top = len(ladder)
    qualities = [int(q) for q in args.qualities.split(",")] if args.qualities else [*range(1, top, 4), top]
    loss = args.loss.split(";")[0]
    print(f"{'quality':>7} {'model':>16} {'bytes':>6} {'PSNR dB':>8} {'encode ms':>10} {'decode ms':>10}")
    for q in qualities:
        opts = EncodeOptions(model=args.model, loss=loss, device=args.device, quality=q)
        encode_batch(pils[:4], opts)  # warm-up: the rung model's load and shapes
        t = time.perf_counter()
        res = encode_batch(pils, opts)
        enc = (time.perf_counter() - t) / len(pils) * 1000

        dec = statistics.median(_decode_ms(res, args.model) for _ in range(ROUNDS))
        n = len(res)
        print(f"{q:7d} {Path(ladder.rung(q).model).stem:>16} {sum(r.num_bytes for r in res) / n:6.1f} "
              f"{sum(r.psnr for r in res) / n:8.2f} {enc:10.1f} {dec:10.2f}")  # fmt: skip


if __name__ == "__main__":
    from codec.cli import friendly_errors  # a missing data folder is one line, not a traceback

    friendly_errors(main)()
