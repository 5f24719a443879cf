"""Batch work that never loses results, and every failure a one-line error (issue #10)."""

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from codec.cli import main
from codec.images import to_pil

EXE = Path(sys.executable).parent / "percodec"
needs_script = pytest.mark.skipif(not EXE.exists(), reason="percodec console script not installed")


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _faces(folder: Path, g, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        z = torch.randn(1, g.config.nz, generator=torch.Generator().manual_seed(i))
        with torch.no_grad():
            img = to_pil(g(z)[0])
        paths.append(folder / f"face{i}.png")
        img.save(paths[-1])
    return paths


def _script(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=timeout)


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


@needs_script
def test_keep_going_writes_every_good_face_and_names_the_bad_ones(tmp_path, tiny_generator, tiny_model_file) -> None:
    src = tmp_path / "in"
    good = _faces(src, tiny_generator, 3)
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (9, 9, 9)).save(buf, format="PNG")
    (src / "truncated.png").write_bytes(buf.getvalue()[:40])
    (src / "empty.png").write_bytes(b"")
    out, report = tmp_path / "out", tmp_path / "report.csv"
    args = ["encode", str(src), "-o", str(out), "--model", str(tiny_model_file), "--steps", "3", "--batch-size", "2"]
    done = _script(*args, "--keep-going", "-q", "--report", str(report))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.stem + ".pgz" for p in good)
    assert "truncated.png" in done.stderr and "empty.png" in done.stderr
    rows = report.read_text().splitlines()
    assert rows[0] == "input,output,bytes,bpp,psnr,ssim,steps,seconds,error" and len(rows) == 6
    assert sum(1 for r in rows[1:] if r.endswith(",")) == 3  # three rows without an error

    stopped = _script(*args, "--force")  # without --keep-going: stop at the first bad input
    assert stopped.returncode == 1 and stopped.stderr.strip().count("\n") == 0
    assert "empty.png" in stopped.stderr


@needs_script
@pytest.mark.slow  # 7 s each: a process started, stopped and started again
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_keeps_finished_files_and_skip_existing_completes_it(
    sig, tmp_path, tiny_generator, tiny_model_file
) -> None:
    src = tmp_path / "in"
    _faces(src, tiny_generator, 40)  # enough that the run outlasts the poll: a tiny model's search stops early
    out = tmp_path / "out"
    args = ["encode", str(src), "-o", str(out), "--model", str(tiny_model_file), "--loss", "mse", "--batch-size", "1"]
    proc = subprocess.Popen([str(EXE), *args, "--steps", "4000", "-q"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # the first file: generous, for a loaded machine
    while not (out.is_dir() and list(out.glob("*.pgz"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    kept = {p.name: p.read_bytes() for p in out.glob("*.pgz")}
    assert 1 <= len(kept) < 40 and _no_temporaries(out)

    done = _script(*args, "--steps", "2", "--skip-existing")
    assert done.returncode == 0, done.stderr
    assert f"{len(kept)} skipped" in done.stderr
    assert len(list(out.glob("*.pgz"))) == 40
    assert all((out / name).read_bytes() == data for name, data in kept.items())  # left alone


def test_skip_existing_refuses_an_invalid_output_unless_forced(tmp_path, tiny_generator, tiny_model_file) -> None:
    (face,) = _faces(tmp_path / "in", tiny_generator, 1)
    out = tmp_path / "face.pgz"
    base = ["encode", str(face), str(out), "--model", str(tiny_model_file), "--steps", "2", "-q"]
    out.write_bytes(b"half a file")
    r = _run(*base, "--skip-existing")
    assert r.exit_code == 1 and "not a valid .pgz" in r.output and out.read_bytes() == b"half a file"
    assert _run(*base, "--skip-existing", "--force").exit_code == 0
    good = out.read_bytes()
    r = _run(*base, "--skip-existing", "--bits", "5")  # another rate setting: not the same result
    assert r.exit_code == 1 and "bits per dimension" in r.output
    assert _run(*base, "--skip-existing").exit_code == 0 and out.read_bytes() == good


def test_outputs_are_checked_before_the_model_is_loaded(tmp_path, tiny_generator, no_model_load) -> None:
    faces = _faces(tmp_path / "a", tiny_generator, 2)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    base = ["encode", "--steps", "3000", "-q"]
    r = _run(*base, str(faces[0]), str(blocker / "sub" / "x.pgz"))
    assert r.exit_code == 1 and "cannot be made" in r.output
    r = _run(*base, str(faces[0]), "-o", str(blocker / "out"))
    assert r.exit_code == 1 and "not a folder" in r.output
    (tmp_path / "b").mkdir()
    twin = tmp_path / "b" / faces[0].name
    twin.write_bytes(faces[0].read_bytes())
    r = _run(*base, str(faces[0]), str(twin), "-o", str(tmp_path / "o"))
    assert r.exit_code == 1 and "several inputs would write" in r.output
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "face1.pgz").write_bytes(b"keep")
    r = _run(*base, str(tmp_path / "a"), "-o", str(tmp_path / "o"))
    assert r.exit_code == 1 and "exists" in r.output and (tmp_path / "o" / "face1.pgz").read_bytes() == b"keep"
    long = tmp_path / ("n" * 252 + ".j")
    long.write_bytes(faces[0].read_bytes())
    r = _run(*base, str(long), "-o", str(tmp_path / "o2"))
    assert r.exit_code == 1 and "longer than this file system allows" in r.output
    r = _run(*base, str(faces[0]), str(tmp_path / "x.pgz"), "--report", str(tmp_path / "r.txt"))
    assert r.exit_code == 1 and ".csv or .json" in r.output


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_folder_is_refused_up_front(tmp_path, tiny_generator, no_model_load) -> None:
    (face,) = _faces(tmp_path / "a", tiny_generator, 1)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    r = _run("encode", str(face), str(ro / "x.pgz"), "-q")
    assert r.exit_code == 1 and "not writable" in r.output


def test_a_full_disk_is_one_line_naming_the_file_and_keeps_earlier_files(
    tmp_path, tiny_generator, tiny_model_file, monkeypatch
) -> None:
    _faces(tmp_path / "in", tiny_generator, 3)
    real_link, calls = os.link, []

    def link(a, b):  # the step that puts a finished file in place without --force
        calls.append(b)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_link(a, b)

    monkeypatch.setattr("codec.fileio.os.link", link)
    out = tmp_path / "out"
    r = _run("encode", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_file), "--steps", "2",
             "--batch-size", "1", "--keep-going")  # fmt: skip
    assert r.exit_code == 1
    last = r.output.strip().splitlines()[-1]
    assert last == f"percodec: error: {out / 'face1.pgz'}: cannot write (No space left on device)"
    assert sorted(p.name for p in out.iterdir()) == ["face0.pgz"]  # earlier file kept, no partial one


def test_loss_params_for_a_loss_without_parameters_is_one_line(tmp_path, tiny_generator, tiny_model_file) -> None:
    (face,) = _faces(tmp_path / "in", tiny_generator, 1)
    params = tmp_path / "p.pth"
    params.write_bytes(b"x")
    r = _run("encode", str(face), str(tmp_path / "o.pgz"), "--model", str(tiny_model_file), "--loss", "ssim",
             "--loss-params", str(params))  # fmt: skip
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "takes no params_file" in r.output
    assert "watson-dft" in r.output


def _encoded(tmp_path: Path, g, model: Path, n: int) -> Path:
    faces = _faces(tmp_path / "in", g, n)
    out = tmp_path / "pgz"
    assert _run("encode", *map(str, faces), "-o", str(out), "--model", str(model), "--steps", "2", "-q").exit_code == 0
    return out


def test_decode_and_info_take_many_files_and_folders(tmp_path, tiny_generator, tiny_model_file) -> None:
    pgz = _encoded(tmp_path, tiny_generator, tiny_model_file, 3)
    (pgz / "broken.pgz").write_bytes(b"PGZ nonsense")
    dec = tmp_path / "dec"
    base = ["decode", str(pgz), "-o", str(dec), "--model", str(tiny_model_file), "--format", "jpeg"]
    r = _run(*base, "--keep-going", "--report", str(tmp_path / "r.json"))
    assert r.exit_code == 1 and "broken.pgz" in r.output and "decoded 3 file(s), 1 failed" in r.output
    assert sorted(p.name for p in dec.iterdir()) == ["face0.jpg", "face1.jpg", "face2.jpg"]
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [bool(row["error"]) for row in rows] == [True, False, False, False]  # broken sorts first
    r = _run(*base)
    assert r.exit_code == 1 and "exists" in r.output  # refused before decoding anything

    r = _run("info", str(pgz / "face0.pgz"), str(pgz / "face1.pgz"))
    assert r.exit_code == 0 and r.output.count("format: percodec .pgz version 1") == 2
    r = _run("info", "--json", str(pgz))
    blocks = json.loads(r.output[r.output.index("[") :])
    assert r.exit_code == 1 and len(blocks) == 4 and "error" in blocks[0]
    assert blocks[1]["bits"] == 7 and blocks[1]["bytes"] == 19 and blocks[1]["version"] == 1


def test_train_generator_never_replaces_another_runs_model(tmp_path) -> None:
    from tests.test_train import TINY_ARGS

    out = tmp_path / "run"
    out.mkdir()
    model = out / "generator.safetensors"
    model.write_bytes(b"someone's model")
    r = _run("train-generator", "--dry-run", "--out", str(out), *TINY_ARGS, "--no-progress")
    assert r.exit_code == 1 and "--force" in r.output and model.read_bytes() == b"someone's model"
    r = _run("train-generator", "--dry-run", "--out", str(out), *TINY_ARGS, "--no-progress", "--resume")
    assert r.exit_code == 1 and model.read_bytes() == b"someone's model"
    r = _run("train-generator", "--dry-run", "--out", str(out), *TINY_ARGS, "--no-progress", "--force")
    assert r.exit_code == 0 and model.read_bytes() != b"someone's model"


# --- images ------------------------------------------------------------------------------------


def test_pil_inputs_get_their_exif_orientation_as_files_do() -> None:
    from codec.images import open_image

    img = Image.new("RGB", (6, 4), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    assert open_image(Image.open(io.BytesIO(buf.getvalue()))).size == open_image(buf.getvalue()).size == (4, 6)


def test_wide_and_float_images_are_scaled_or_refused() -> None:
    from codec.errors import ImageError
    from codec.images import open_image

    def tiff(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="TIFF")
        return buf.getvalue()

    assert open_image(tiff(np.full((4, 4), 0.5, np.float32))).getpixel((0, 0)) == (128, 128, 128)
    assert open_image(tiff(np.full((4, 4), 200.0, np.float32))).getpixel((0, 0)) == (200, 200, 200)
    assert open_image(tiff(np.full((4, 4), 32768, np.uint16))).getpixel((0, 0)) == (128, 128, 128)
    for bad in (-1.0, np.nan, 1e6):
        with pytest.raises(ImageError, match="cannot convert"):
            open_image(tiff(np.full((4, 4), bad, np.float32)))


def test_cmyk_animated_and_tiny_images_encode_with_notes(tmp_path, tiny_model_file) -> None:
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(cmyk)
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1), (5, 6, 7)).save(tiny)
    out = tmp_path / "o"
    r = _run("encode", str(cmyk), str(gif), str(tiny), "-o", str(out), "--model", str(tiny_model_file),
             "--steps", "2", "--save-crop", str(tmp_path / "crops"))  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "anim.gif: note: animated image: coded its first frame of 3" in r.output
    assert "tiny.png: note: image is 1x1, smaller than the model's 16x16: upscaled" in r.output
    red = np.asarray(Image.open(tmp_path / "crops" / "cmyk.crop.png"))
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 60  # CMYK (0, 255, 255, 0) is red
    first = np.asarray(Image.open(tmp_path / "crops" / "anim.crop.png"))
    assert first[..., 0].mean() > 200 and first[..., 2].mean() < 60
