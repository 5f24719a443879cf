"""Hostile values and files: each is refused up front in one line naming the cause, with
nothing written; or, where it is valid, coded with a note (issue #24)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from codec.cli import main
from tests.conftest import SAMPLES
from tests.test_train import TINY_ARGS


def _run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _refused(r, code: int, says: str) -> None:
    assert r.exit_code == code, r.output
    assert says in r.output and "Traceback" not in r.output
    if code == 1:  # a library error: exactly one line
        assert r.output.count("\n") == 1, r.output


@pytest.fixture
def face(tmp_path) -> Path:
    path = tmp_path / "face.png"
    Image.open(SAMPLES / "astronaut.png").save(path)
    return path


@pytest.mark.parametrize(
    "option, says",
    [
        (["--steps", "99999999999999999999999"], "--steps"),
        (["--seed", "99999999999999999999999"], "--seed"),
        (["--seed", "-1"], "--seed"),
        (["--max-bytes", "99999999999999999999999"], "--max-bytes"),
        (["--restarts", "100000"], "--restarts"),
        (["--batch-size", "100000"], "--batch-size"),
        (["--loss", "mse=inf"], "positive finite"),
        (["--loss", "mse=1e400"], "positive finite"),
        (["--loss", "mse=1e300"], "must lie in"),
        (["--loss", "ms-ssim="], "no weight"),
        (["--no-align", "--crop", "nan"], "not a finite number"),
    ],
)
def test_encode_refuses_out_of_range_values_before_any_work(tmp_path, face, no_model_load, option, says) -> None:
    _refused(_run("encode", face, tmp_path / "x.pgz", *option), 2, says)
    assert not (tmp_path / "x.pgz").exists()


def test_options_a_backend_does_not_take_are_errors_when_given(tmp_path, face) -> None:
    _refused(_run("encode", face, tmp_path / "x.pgz", "--restarts", "4"), 1, "--restarts applies to GAN-only")
    _refused(_run("encode", face, tmp_path / "x.pgz", "--bits", "7"), 1, "--bits applies to GAN-only")


def test_a_search_too_big_for_memory_is_refused(tmp_path, face) -> None:
    (tmp_path / "in").mkdir()
    for i in range(65):
        os.link(face, tmp_path / "in" / f"f{i}.png")
    r = _run("encode", tmp_path / "in", "-o", tmp_path / "o", "--model", "celeba64-gan", "--restarts", "64",
             "--batch-size", "65")  # fmt: skip
    _refused(r, 1, "latents searched at once")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "option, says",
    [
        (["--adv-weight", "nan"], "not a finite number"),
        (["--lr", "inf"], "not a finite number"),
        (["--epochs", "nan"], "not a finite number"),
        (["--seed", "-5"], "--seed"),
    ],
)
def test_train_refuses_values_that_are_not_finite(tmp_path, option, says) -> None:
    _refused(_run("train-generator", "--dry-run", "--out", tmp_path / "run", *TINY_ARGS, *option), 2, says)
    assert not (tmp_path / "run").exists()


def test_bench_checks_its_split_and_reference_before_any_work(tmp_path) -> None:
    base = ["bench", "--dataset", "samples", "--out", tmp_path / "b", "-q"]
    _refused(_run(*base, "--split", "nosuchsplit"), 1, "has no splits")
    _refused(_run(*base, "--reference-model", "nosuch"), 1, "unknown model 'nosuch'")
    _refused(_run(*base, "--reference-model", "celeba64-hi"), 1, "must be a GAN-only model")
    assert not (tmp_path / "b").exists()


def test_inputs_that_are_not_files_say_what_they_are(tmp_path) -> None:
    os.mkfifo(tmp_path / "fifo")
    for what, says in [(tmp_path, "is a folder"), ("/dev/null", "not a regular file"),
                       (tmp_path / "fifo", "not a regular file"), (tmp_path / "nope.png", "no such file")]:  # fmt: skip
        _refused(_run("encode", what, tmp_path / "x.pgz"), 1, says)
        _refused(_run("decode", what, tmp_path / "x.png"), 1, says)
    _refused(_run("encode", SAMPLES / "astronaut.png", tmp_path / "x.pgz", "--model", tmp_path), 1, "is a folder")


def test_a_ladder_whose_rung_is_not_a_model_is_one_line(tmp_path, face) -> None:
    (tmp_path / "r1.safetensors").write_text("a text file, renamed")
    (tmp_path / "x.ladder.json").write_text('{"default": 1, "rungs": [["r1.safetensors", 1]]}')
    r = _run("encode", face, tmp_path / "x.pgz", "--model", tmp_path / "x.ladder.json")
    _refused(r, 1, "r1.safetensors: not a readable safetensors model")


def test_garbage_and_truncated_torch_files_are_one_line(tmp_path, face) -> None:
    params = tmp_path / "p.pth"
    params.write_bytes(b"garbage")
    r = _run("encode", face, tmp_path / "x.pgz", "--loss", "watson-dft", "--loss-params", params)
    _refused(r, 1, "p.pth: not a readable Watson parameter file")
    run = tmp_path / "run"
    assert (
        _run("train-generator", "--dry-run", "--out", run, *TINY_ARGS, "--steps", "1", "--no-progress").exit_code == 0
    )
    ckpt = run / "checkpoint.pt"
    whole = ckpt.read_bytes()
    for broken in (b"garbage", whole[: len(whole) // 2]):
        ckpt.write_bytes(broken)
        r = _run("train-generator", "--dry-run", "--out", run, *TINY_ARGS, "--steps", "2", "--resume", "--no-progress")
        _refused(r, 1, "checkpoint.pt: not a readable checkpoint")


def test_init_generator_names_a_rate_distortion_model_as_such(tmp_path) -> None:
    from codec.generator import resolve_model

    r = _run("train-generator", "--dry-run", "--out", tmp_path / "run", "--init-generator",
             resolve_model("celeba64-hi"), "--no-progress")  # fmt: skip
    _refused(r, 1, "is a rate-distortion model")


def test_a_failed_start_leaves_no_run_folder(tmp_path, fake_celeba) -> None:
    run = tmp_path / "new-run"
    r = _run("train-generator", "--data-root", fake_celeba, "--out", run, "--batch-size", "1000", "--no-progress")
    _refused(r, 1, "fewer than one batch")
    assert not run.exists()  # nor its data cache


def test_32_bit_values_beyond_16_bits_are_refused_not_clipped(tmp_path) -> None:
    arr = (np.arange(64 * 64).reshape(64, 64) * 50_000).astype(np.int32)
    Image.fromarray(arr, mode="I").save(tmp_path / "i32.tif")
    _refused(_run("encode", tmp_path / "i32.tif", tmp_path / "x.pgz"), 1, "outside 0..65535")
    Image.fromarray((arr // 50_000).astype(np.int32), mode="I").save(tmp_path / "ok.tif")  # 0..4095: 16-bit data
    assert _run("encode", tmp_path / "ok.tif", tmp_path / "x.pgz", "--steps", "0", "-q").exit_code == 0


def test_a_model_for_more_bytes_than_the_default_cap_says_so(tmp_path, face) -> None:
    r = _run("encode", face, tmp_path / "x.pgz", "--model", "celeba64-hi", "--steps", "0")
    assert r.exit_code == 0 and "no quality of celeba64-hi fits the default 112 bytes" in r.output
    size = (tmp_path / "x.pgz").stat().st_size
    assert size > 112 and f"({size} bytes)" in r.output


def test_decode_with_the_wrong_ladder_names_each_of_its_models(tmp_path, face) -> None:
    assert _run("encode", face, tmp_path / "hi.pgz", "--model", "celeba64-hi", "--steps", "0", "-q").exit_code == 0
    r = _run("decode", tmp_path / "hi.pgz", tmp_path / "x.png", "--model", "celeba64")
    _refused(r, 1, "made for model 'celeba64-hi'; celeba64 holds models with fingerprints celeba64 ")
