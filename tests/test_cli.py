import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from codec.cli import main
from codec.images import to_pil
from tests.conftest import ROOT


@pytest.fixture
def face(tmp_path, tiny_generator) -> Path:
    z = torch.randn(1, tiny_generator.config.nz, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        img = to_pil(tiny_generator(z)[0])
    path = tmp_path / "face.png"
    img.save(path)
    return path


def _run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def _enc(model: Path, *args: str):
    return _run("encode", "--model", str(model), "--loss", "mse", "--steps", "10", "--restarts", "1", "-q", *args)


def test_encode_info_decode(tmp_path, face, tiny_model_file) -> None:
    out = tmp_path / "face.pgz"
    r = _run("encode", str(face), str(out), "--model", str(tiny_model_file), "--steps", "10", "--loss", "l1")
    assert r.exit_code == 0, r.output
    assert "19 bytes" in r.output and "PSNR" in r.output and "SSIM" in r.output and "bpp" in r.output
    r = _run("info", str(out))
    assert r.exit_code == 0 and "7 bits x 8 dimensions" in r.output and "16x16" in r.output
    png = tmp_path / "dec.png"
    r = _run("decode", str(out), str(png), "--model", str(tiny_model_file), "--size", "32x24")
    assert r.exit_code == 0, r.output
    assert Image.open(png).size == (32, 24)


def test_outputs_are_never_overwritten_without_force(tmp_path, face, tiny_model_file) -> None:
    out = tmp_path / "face.pgz"
    out.write_bytes(b"precious")
    r = _enc(tiny_model_file, str(face), str(out))
    assert r.exit_code == 1 and "exists" in r.output and "--force" in r.output
    assert out.read_bytes() == b"precious"
    assert _enc(tiny_model_file, str(face), str(out), "--force").exit_code == 0
    assert out.read_bytes() != b"precious"


def test_outputs_get_the_usual_file_mode(tmp_path) -> None:
    """Atomic writes go through a private temporary file; the result must not stay private."""
    from codec.fileio import write_bytes

    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "new.pgz", b"x")
        assert stat.S_IMODE((tmp_path / "new.pgz").stat().st_mode) == 0o644
        kept = tmp_path / "kept.pgz"
        kept.write_bytes(b"old")
        kept.chmod(0o640)
        write_bytes(kept, b"new", force=True)
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_bytes() == b"new"
    finally:
        os.umask(old)


@pytest.mark.parametrize(
    "content,match",
    [(None, "no such file"), (b"", "empty"), (b"garbage", "not a readable image")],
)
def test_bad_images_give_one_line_errors(tmp_path, tiny_model_file, content, match) -> None:
    src = tmp_path / "in.png"
    if content is not None:
        src.write_bytes(content)
    r = _enc(tiny_model_file, str(src), str(tmp_path / "o.pgz"))
    assert r.exit_code == 1 and match in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not (tmp_path / "o.pgz").exists()


def test_corrupt_container_is_one_line(tmp_path, face, tiny_model_file) -> None:
    out = tmp_path / "f.pgz"
    _enc(tiny_model_file, str(face), str(out))
    out.write_bytes(out.read_bytes()[:-3])
    for cmd in (["info", str(out)], ["decode", str(out), str(tmp_path / "x.png")]):
        r = _run(*cmd)
        assert r.exit_code == 1 and "truncated" in r.output and len(r.output.strip().splitlines()) == 1


def test_many_images_into_a_folder(tmp_path, face, tiny_model_file) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        shutil.copy(face, folder / name)
    shutil.copy(face, tmp_path / "c.png")
    r = _enc(tiny_model_file, str(folder), str(tmp_path / "c.png"), "-o", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.pgz", "b.pgz", "c.pgz"]


def test_stdin_stdout(tmp_path, face, tiny_model_file) -> None:
    r = CliRunner().invoke(
        main, ["encode", "--model", str(tiny_model_file), "--steps", "5", "-q", "-", "-"], input=face.read_bytes()
    )
    assert r.exit_code == 0
    data = r.stdout_bytes
    assert data[:2] == b"PG" and len(data) == 19


def test_usage_errors(tmp_path, face, tiny_model_file) -> None:
    assert _enc(tiny_model_file, str(face)).exit_code == 2  # OUT missing
    r = _run("decode", "x.pgz", str(tmp_path / "y.unknownext"))
    assert r.exit_code == 2 and "extension" in r.output
    r = _run("encode", str(face), str(tmp_path / "o.pgz"), "--loss", "nope")
    assert r.exit_code == 2
    r = _run("encode", str(face), str(tmp_path / "o.pgz"), "--model", "no-such-model", "-q")
    assert r.exit_code == 1 and "unknown model" in r.output


def test_help_lists_losses_and_commands() -> None:
    r = _run("--help")
    for cmd in ("encode", "decode", "info", "train-generator"):
        assert cmd in r.output
    r = _run("encode", "--help")
    assert "mse" in r.output and "ssim" in r.output and "--max-bytes" in r.output


@pytest.mark.slow
def test_installed_console_script(tmp_path, face, tiny_model_file) -> None:
    exe = Path(sys.executable).parent / "percodec"
    if not exe.exists():
        pytest.skip("percodec console script not installed in this environment")
    out = tmp_path / "s.pgz"
    done = subprocess.run(
        [str(exe), "encode", str(face), str(out), "--model", str(tiny_model_file), "--steps", "5", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run([str(exe), "info", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "percodec .pgz version 1" in done.stdout
    bad = subprocess.run([str(exe), "info", str(face)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "not a percodec file" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow  # 2 s: a process
def test_a_reader_that_stops_reading_ends_the_command_quietly() -> None:
    """`percodec models | head -1`: no error line, the exit status of a tool stopped by SIGPIPE."""
    exe = Path(sys.executable).parent / "percodec"
    if not exe.exists():
        pytest.skip("percodec console script not installed in this environment")
    r, w = os.pipe()
    os.close(r)  # the reader is gone before anything is written
    try:
        done = subprocess.run([str(exe), "models"], stdout=w, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w)
    assert done.returncode == 141 and done.stderr == ""


def test_loss_takes_a_weighted_mix(tmp_path, face, tiny_model_file) -> None:
    r = _run("encode", str(face), str(tmp_path / "m.pgz"), "--model", str(tiny_model_file), "--steps", "3",
             "--loss", "ssim=1,mse=3")  # fmt: skip
    assert r.exit_code == 0 and "[ssim=1,mse=3," in r.output
    r = _run("encode", str(face), str(tmp_path / "n.pgz"), "--loss", "ssim=1,nope=2")
    assert r.exit_code == 2 and "unknown loss 'nope'" in r.output


def test_the_command_line_parses_and_checks_options_without_importing_torch() -> None:
    # Options are checked, and the face finder's worker started, before torch's ~1.5 s import.
    code = (
        "import sys; from codec.cli import main, LossMix, sources_and_targets; "
        "LossMix().convert('ms-ssim=1,mse=3', None, None); sources_and_targets(('samples',), 'out', '.pgz', 'images'); "
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    )  # a folder of inputs with -o is listed without torch too (it cost -o runs the finder's head start)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "torch" not in done.stdout
