import csv
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from codec import baselines as B
from codec.bench import BenchConfig, load_images, quality_table, reconstruct
from codec.cli import main
from codec.generator import load_generator
from tests.conftest import SAMPLES, run_torchrun


def _bench_args(out, model, *extra) -> list[str]:
    """A fast bench on the samples: the tiny model, 3 steps, one restart, the MSE loss."""
    return [
        "bench",
        "--dataset",
        "samples",
        "--model",
        str(model),
        "--steps",
        "3",
        "--restarts",
        "1",
        "--loss",
        "mse",
        "--out",
        str(out),
        "-q",
        *extra,
    ]


def _bench(out, model, *extra):
    return CliRunner().invoke(main, _bench_args(out, model, *extra), catch_exceptions=False)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One bench run on the samples with a tiny model, shared by the tests that read it."""
    from codec.generator import Generator, save_generator
    from tests.conftest import tiny_config

    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    model = root / "tiny.safetensors"
    save_generator(Generator(tiny_config()).eval(), model, {"dataset": "none"})
    r = _bench(root / "b", model, "--no-sweep")
    assert r.exit_code == 0, r.output
    return root / "b", model


def _bench_images(model) -> dict:
    """The bench's preprocessed sample images by name, as every codec saw them."""
    g, _ = load_generator(model)
    names, images = load_images(BenchConfig(dataset="samples", model=str(model)), g.config.size, g.config.nc, 1.0)
    return dict(zip(names, images, strict=True))


def _records(out):
    with open(out / "per_image.csv") as f:
        return list(csv.DictReader(f))


def test_outputs_and_table(bench_run) -> None:
    out, _ = bench_run
    for name in ("results.json", "per_image.csv", "results.md", "rd.png", "grid.png"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "results.json").read_text())["summary"]
    codecs = {r["codec"] for r in summary}
    assert {
        "percodec mse",
        "webp @ percodec bytes",
        "jpeg scan-only @ percodec bytes",
        "jpeg q=10",
        "jpeg q=1",
        "webp q=0",
        "k-means K=4",
        "k-means K=8",
        "k-means K=16",
    } <= codecs
    assert all(r["n"] == 3 for r in summary)  # the two 64x64 faces and the astronaut photo
    assert "| percodec mse |" in (out / "results.md").read_text()
    from codec import faces

    if faces.available():
        assert "sanity line" in (out / "results.md").read_text()


def test_byte_accounting_matches_real_files(bench_run) -> None:
    out, model = bench_run
    img = _bench_images(model)
    size = load_generator(model)[0].config.size
    for r in _records(out):
        rec = {**r, "setting": float(r["setting"])}
        n = int(float(r["bytes"]))
        assert float(r["bpp"]) == pytest.approx(8 * n / (size * size))
        if r["family"].startswith("percodec"):
            continue
        fam, q = r["family"].removesuffix("-matched"), int(rec["setting"])
        codec = {"jpeg": B.jpeg, "webp": B.webp, "avif": B.avif, "kmeans": B.KMeansPalette}.get(fam)
        codec = codec(q, 3) if codec else B.JpegScanOnly(q, 3, (size, size))
        assert len(codec.encode(img[r["image"]])) == n, r["codec"]
    cache = [
        json.loads(line) for f in (out / "cache").glob("percodec-mse*.jsonl") for line in f.read_text().splitlines()
    ]
    assert cache and all(len(c["data"]) // 2 == c["bytes"] for c in cache)


def test_metrics_match_scikit_image(bench_run) -> None:
    out, model = bench_run
    img = _bench_images(model)
    cache = {
        (c["codec"], c["image"]): c
        for f in (out / "cache").glob("*.jsonl")
        for c in map(json.loads, f.read_text().splitlines())
    }
    for (codec, name), rec in cache.items():
        dec = reconstruct(rec, img[name], str(model))
        want_p = peak_signal_noise_ratio(img[name], dec, data_range=255)
        want_s = structural_similarity(
            img[name],
            dec,
            channel_axis=2,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=255,
        )
        assert rec["psnr"] == pytest.approx(want_p, abs=1e-6), codec
        assert rec["ssim"] == pytest.approx(want_s, abs=1e-5), codec


def test_interrupted_run_resumes_from_cache(bench_run) -> None:
    out, model = bench_run
    files = {f: f.read_text() for f in (out / "cache").glob("*.jsonl")}
    r = _bench(out, model, "--no-sweep")
    assert r.exit_code == 0
    assert {f: f.read_text() for f in (out / "cache").glob("*.jsonl")} == files  # nothing recomputed


@pytest.mark.slow
def test_torchrun_shards_merge_to_the_single_process_result(tmp_path, tiny_model_file) -> None:
    single = _bench(tmp_path / "one", tiny_model_file, "--no-sweep")
    assert single.exit_code == 0
    done = run_torchrun(["-m", "codec.cli", *_bench_args(tmp_path / "two", tiny_model_file, "--no-sweep")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(list((tmp_path / "two" / "cache").glob("*.rank1.jsonl"))) > 0  # rank 1 did real work

    def key(rows):
        return {(r["codec"], r["image"]): (r["bytes"], r["psnr"], r["ssim"]) for r in rows}

    assert key(_records(tmp_path / "one")) == key(_records(tmp_path / "two"))


def test_bench_needs_data_root_for_celeba() -> None:
    r = CliRunner().invoke(main, ["bench", "--dataset", "celeba"])
    assert r.exit_code == 2 and "--data-root" in r.output


def test_eigenface_codec_round_trips_and_trades_bytes_for_quality() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 8, 8, 3)).astype(float)
    faces = np.clip(base + rng.normal(0, 30, (200, 8, 8, 3)), 0, 255).astype(np.uint8)
    basis = B.fit_eigenfaces(faces, k=16)
    assert np.allclose(basis.components @ basis.components.T, np.eye(16), atol=1e-5)
    img = faces[0]
    sizes, errors = [], []
    for q in (0, 30, 60):
        codec = B.EigenfaceCodec(basis, q)
        data = codec.encode(img)
        dec = codec.decode(data)
        assert dec.shape == img.shape and dec.dtype == np.uint8
        assert np.array_equal(B.EigenfaceCodec(basis, q).decode(data), dec)  # deterministic
        sizes.append(len(data))
        errors.append(np.abs(dec.astype(float) - img).mean())
    assert sizes[0] <= sizes[1] <= sizes[2] and sizes[0] < sizes[2]
    assert errors[2] < errors[0]


def test_eigenface_codec_takes_the_finest_steps_a_bisection_tries() -> None:
    """At its top quality a wide coefficient needs more symbols than the coder's precision
    holds (a 1 KB bench bisection reached it and stopped the run): the table is clamped
    instead, and the codec still round-trips, finer than a coarser quality."""
    rng = np.random.default_rng(1)
    pattern = rng.choice([-127.0, 127.0], (32, 32, 3))  # one strong component
    faces = np.clip(128 + rng.uniform(-1, 1, (100, 1, 1, 1)) * pattern + rng.normal(0, 2, (100, 32, 32, 3)), 0, 255)
    basis = B.fit_eigenfaces(faces.astype(np.uint8), k=8)
    top, mid = B.EigenfaceCodec(basis, 100), B.EigenfaceCodec(basis, 40)
    assert 5.5 * basis.spread.max() / top.step > 1 << 14  # wider than the coder holds, unclamped
    img = faces[3].astype(np.uint8)
    err = [np.abs(c.decode(c.encode(img)).astype(float) - img).mean() for c in (top, mid)]
    assert err[0] <= err[1]


def test_the_quality_table_pairs_each_quality_with_eigenface_at_its_bytes() -> None:
    """Rows are paired by what they are (the setting an eigenface row was bisected to), not by
    their labels."""

    def row(codec: str, family: str, setting: object, psnr: float, ssim: float, same: float) -> dict:
        return {"codec": codec, "family": family, "setting": setting, "bytes": 60.0, "psnr": psnr, "ssim": ssim,
                "same_person": same}  # fmt: skip

    summary = [
        row("percodec mse default", "percodec-mse-rd-default", "default", 25.0, 0.8, 0.9),
        row("percodec mse q=1", "percodec-mse-rd", 1, 22.5, 0.75, 0.875),
        row("percodec mse q=2", "percodec-mse-rd", 2, 23.0, 0.76, 0.9),  # no eigenface row: left out
        {**row("eigenface @ q=1 bytes", "eigenface-matched", 1.5, 22.25, 0.70, 0.75), "matched_to": 1},
        {**row("eigenface @ percodec bytes", "eigenface-matched", 1.2, 24.0, 0.7, 0.5), "matched_to": "default"},
    ]
    lines = quality_table(summary).splitlines()
    assert len(lines) == 3 and lines[2].startswith("| 1 | 60.0 | 22.50 / 0.750 / 88% | 60.0 | 22.25 / 0.700 / 75%")
    assert lines[2].endswith("| +0.25 dB, +0.050 |")
    assert quality_table(summary[:1]) == ""


def test_bd_rate_is_the_rate_ratio_of_curves_that_differ_by_one() -> None:
    import math

    from codec.metrics import bd_rate

    rate = [100, 180, 300, 520, 800]
    psnr = [22.0, 24.5, 26.8, 29.0, 31.2]
    assert bd_rate(rate, psnr, rate, psnr) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(rate, psnr, [r * 0.5 for r in rate], psnr) == pytest.approx(-50.0)  # half the bytes
    assert bd_rate(rate, psnr, [r * 1.25 for r in rate], psnr) == pytest.approx(25.0)
    assert math.isnan(bd_rate(rate, psnr, rate, [p + 20 for p in psnr]))  # no common quality
    # Only the common range counts: a curve that is better only where the other never goes.
    longer = rate + [1200, 2000]
    assert bd_rate(rate, psnr, [r * 0.5 for r in longer], psnr + [33.0, 35.0]) == pytest.approx(-50.0, abs=1.0)


def test_the_bench_reports_bd_rate_against_webp() -> None:
    from codec.bench import bd_rates

    summary = [
        {"family": "percodec-mse-rd", "bytes": b, "psnr": p, "ssim": p / 40}
        for b, p in [(60, 22), (120, 25), (250, 28)]
    ] + [{"family": "webp", "bytes": b * 2, "psnr": p, "ssim": p / 40} for b, p in [(60, 22), (120, 25), (250, 28)]]
    rates = bd_rates(summary)
    assert rates["webp"]["psnr"] == pytest.approx(-50.0) and rates["webp"]["ssim"] == pytest.approx(-50.0)
    assert "avif" not in rates  # no curve, no figure


def test_the_windowed_bd_rate_counts_only_the_points_within_the_window() -> None:
    """Within 200-1000 B percodec's curve needs half the bytes; below it, the same as WebP:
    the window's figure is the window's alone, the whole overlap's lies between."""
    from codec.bench import BD_WINDOW, bd_rates

    low = [(60, 22.0), (90, 23.0), (130, 24.0), (180, 25.0)]
    high = [(200, 27.0), (300, 29.0), (400, 31.0), (500, 33.0)]
    ours = [{"family": "percodec-mse-rd", "bytes": b, "psnr": p, "ssim": p / 40} for b, p in low + high]
    theirs = low + [(b * 2, p) for b, p in high]
    webp = [{"family": "webp", "bytes": b, "psnr": p, "ssim": p / 40} for b, p in theirs]
    window = bd_rates(ours + webp, BD_WINDOW)["webp"]
    assert window["psnr"] == pytest.approx(-50.0) and window["ssim"] == pytest.approx(-50.0)
    assert -50.0 < bd_rates(ours + webp)["webp"]["psnr"] < -5.0


def test_every_family_gets_its_own_colour() -> None:
    """More codec families than matplotlib's 10-colour cycle: no two draw alike (WebP and
    AVIF did)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codec.bench.plots import _family_lines

    summary = [{"family": f"codec{i:02d}", "bpp": b, "psnr": 20.0 + i + b} for i in range(12) for b in (0.5, 1.0)]
    fig, ax = plt.subplots()
    _family_lines(ax, summary, "bpp", lambda r: r["psnr"])
    colours = [line.get_color() for line in ax.get_lines()]
    plt.close(fig)
    assert len(colours) == 12 and len(set(map(str, colours))) == 12


def test_webp_wins_counts_the_faces_where_webp_within_our_bytes_beats_us(tmp_path) -> None:
    from codec.bench.plots import plot_webp_wins
    from codec.bench.tables import webp_wins, webp_wins_table

    def rec(codec: str, family: str, setting: object, image: str, nbytes: int, psnr: float, **extra: object) -> dict:
        return {"codec": codec, "family": family, "setting": setting, "image": image, "bytes": nbytes, "psnr": psnr,
                **extra}  # fmt: skip

    records = []
    for i, (ours, theirs) in enumerate([(30.0, 29.0), (30.0, 31.0), (30.0, 29.5), (30.0, 30.5)]):
        records += [rec("percodec mse max 520 B", "percodec-mse-rd-max", "max:520", f"f{i}", 500, ours),
                    rec("webp @ max 520 B bytes", "webp-matched", 40, f"f{i}", 480, theirs, matched_to="max:520"),
                    rec("percodec mse default", "percodec-mse-rd-default", "default", f"f{i}", 110, 25.0),
                    rec("webp @ percodec bytes", "webp-matched", 0, f"f{i}", 200, 26.0, matched_to="default"),
                    rec("percodec-small-upscaled mse max 520 B", "percodec-small-upscaled-mse-rd-max", "max:520",
                        f"f{i}", 500, 10.0),
                    rec("percodec mse max 300 B", "percodec-mse-rd-max", "max:300", f"f{i}", 290, 28.0),
                    rec("webp @ max 300 B bytes", "webp-matched", 20, f"f{i}", 280, 27.0,
                        matched_to="max:300")]  # fmt: skip
    records += [rec("percodec mse max 1024 B", "percodec-mse-rd-max", "max:1024", "f0", 130, 24.0),
                rec("webp @ max 1024 B bytes", "webp-matched", 0, "f0", 380, 25.8, matched_to="max:1024",
                    reached=False)]  # fmt: skip  # a 128x128 row of 130 B: WebP cannot go that low
    # by bytes; the default's 110 B are under 300 B; the upscaled row is not ours to pair
    tiny, low, row = webp_wins(records)
    assert tiny["setting"] == "max:1024" and tiny["share"] == 0
    assert low["setting"] == "max:300" and low["share"] == 0  # its cap, not its mean (290 B), says 300 B
    assert row["setting"] == "max:520" and row["n"] == 4 and row["share"] == 0.5 and row["webp_bytes"] == 480
    assert "| max 520 B | 500.0 | 480.0 | 50.0%" in webp_wins_table([row]) and webp_wins_table([]) == ""
    plot_webp_wins([row], tmp_path / "w.png")
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"


def test_eigenfaces_of_more_faces_than_fit_in_memory_are_fitted_on_an_even_subset(monkeypatch) -> None:
    faces = np.random.default_rng(3).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    whole = B.fit_eigenfaces(faces, k=4)
    monkeypatch.setattr(B, "EIGEN_FIT_BYTES", 10 * 6 * 6 * 3 * 4)  # room for 10 faces: every 4th is used
    capped = B.fit_eigenfaces(faces, k=4)
    assert np.array_equal(capped.mean, B.fit_eigenfaces(faces[::4], k=4).mean)
    assert np.allclose(capped.mean, faces[::4].reshape(10, -1).mean(0) / 255)
    assert not np.allclose(capped.mean, whole.mean)


def test_a_folder_is_framed_once_per_process_and_again_when_a_photo_changes(tmp_path, monkeypatch) -> None:
    import shutil

    import codec.pipeline
    from codec.bench import config

    shutil.copy(SAMPLES / "astronaut.png", tmp_path / "a.png")
    calls = []
    real = codec.pipeline.frame
    monkeypatch.setattr(codec.pipeline, "frame", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    monkeypatch.setattr(config, "_FRAMED", {})
    cfg = BenchConfig(dataset="folder", data_root=str(tmp_path), split="all", model="celeba64")
    first = load_images(cfg, 64, 3, 1.0)
    first[1][:] = 0  # a caller's changes stay its own
    again = load_images(cfg, 64, 3, 1.0)
    assert len(calls) == 1 and again[0] == ["a.png"] and again[1].any()
    os.utime(tmp_path / "a.png", ns=(1, 1))
    load_images(cfg, 64, 3, 1.0)
    assert len(calls) == 2
