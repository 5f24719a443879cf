"""Outputs are claimed exclusively and checked before any work (issue #24)."""

import errno
import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from codec.cli import main
from codec.errors import OutputExistsError
from codec.fileio import write_bytes
from tests.test_batch import _faces


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _another_run_writes(monkeypatch, target: Path, data: bytes = b"the other run's file") -> None:
    """Between this run's up-front check and its write, another run writes `target` (the
    moment after the temporary file is made)."""
    mkstemp = tempfile.mkstemp

    def racing_mkstemp(*args, **kwargs):
        made = mkstemp(*args, **kwargs)
        if not target.exists():
            target.write_bytes(data)
        return made

    monkeypatch.setattr("codec.fileio.tempfile.mkstemp", racing_mkstemp)


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".percodec-")]


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_a_name_another_run_wrote_meanwhile_is_never_replaced(tmp_path, monkeypatch, links) -> None:
    if not links:
        monkeypatch.setattr("codec.fileio.os.link", _no_links)
    target = tmp_path / "x.pgz"
    _another_run_writes(monkeypatch, target)
    with pytest.raises(OutputExistsError, match="another run"):
        write_bytes(target, b"this run's file")
    assert target.read_bytes() == b"the other run's file" and not _leftovers(tmp_path)
    write_bytes(target, b"this run's file", force=True)  # --force replaces, as asked
    assert target.read_bytes() == b"this run's file"
    fresh = tmp_path / "y.pgz"
    write_bytes(fresh, b"new")
    assert fresh.read_bytes() == b"new" and not _leftovers(tmp_path)


def _no_links(src, dst):
    raise OSError(errno.EPERM, os.strerror(errno.EPERM))


def test_encode_loses_a_race_with_one_line_or_skips_with_skip_existing(
    tmp_path, tiny_generator, tiny_model_file, monkeypatch
) -> None:
    _faces(tmp_path / "in", tiny_generator, 2)
    out = tmp_path / "out"
    base = ["encode", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_file), "--steps", "2"]
    _another_run_writes(monkeypatch, out / "face0.pgz")
    r = _run(*base)
    assert r.exit_code == 1 and "face0.pgz was written by another run meanwhile" in r.output
    assert (out / "face0.pgz").read_bytes() == b"the other run's file"

    (out / "face0.pgz").unlink()
    r = _run(*base, "--keep-going", "--report", str(tmp_path / "r.csv"))
    assert r.exit_code == 1 and (out / "face1.pgz").is_file()  # the rest is coded
    assert (out / "face0.pgz").read_bytes() == b"the other run's file"

    for p in out.iterdir():
        p.unlink()
    r = _run(*base, "--skip-existing")
    assert r.exit_code == 0 and "1 skipped" in r.output
    assert (out / "face0.pgz").read_bytes() == b"the other run's file" and (out / "face1.pgz").is_file()


def test_an_input_is_never_an_output_even_with_force(tmp_path, tiny_generator, no_model_load) -> None:
    (face,) = _faces(tmp_path / "in", tiny_generator, 1)
    photo = face.read_bytes()
    r = _run("encode", str(face), str(face), "--force")
    assert r.exit_code == 1 and "is an input as well as the output" in r.output
    r = _run("encode", str(face), str(tmp_path / "x.pgz"), "--save-crop", str(face), "--force")
    assert r.exit_code == 1 and "is an input as well as --save-crop" in r.output
    os.link(face, tmp_path / "alias.png")  # another name of the same file
    r = _run("encode", str(face), str(tmp_path / "alias.png"), "--force")
    assert r.exit_code == 1 and "is an input" in r.output
    assert face.read_bytes() == photo


def test_two_kinds_of_output_under_one_name_are_refused_by_kind(tmp_path, tiny_generator, no_model_load) -> None:
    (face,) = _faces(tmp_path / "in", tiny_generator, 1)
    out = str(tmp_path / "x.pgz")
    r = _run("encode", str(face), out, "--save-crop", out)
    assert r.exit_code != 0 and "--save-crop" in r.output
    r = _run("encode", str(face), str(tmp_path / "x.csv"), "--report", str(tmp_path / "x.csv"))
    assert r.exit_code == 1 and "as the output and as --report" in r.output


def test_save_crop_is_checked_before_any_file_is_written(tmp_path, tiny_generator, no_model_load) -> None:
    (face,) = _faces(tmp_path / "in", tiny_generator, 1)
    out = tmp_path / "x.pgz"
    for crop, says in [("crop.nosuch", "not an image type"), ("-", "stdout")]:
        r = _run("encode", str(face), str(out), "--save-crop", crop if crop == "-" else str(tmp_path / crop))
        assert r.exit_code == 2 and says in r.output
    assert not out.exists() and not (tmp_path / "-").exists()


def test_a_crop_gets_the_format_its_name_asks_for(tmp_path, tiny_generator, tiny_model_file) -> None:
    from PIL import Image

    (face,) = _faces(tmp_path / "in", tiny_generator, 1)
    crop = tmp_path / "crop.webp"
    r = _run("encode", str(face), str(tmp_path / "x.pgz"), "--model", str(tiny_model_file), "--steps", "2",
             "--save-crop", str(crop), "-q")  # fmt: skip
    assert r.exit_code == 0, r.output
    with Image.open(crop) as im:
        assert im.format == "WEBP" and im.size == (16, 16)


def test_a_failed_run_leaves_no_empty_output_folder(tmp_path, tiny_model_file) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    out = tmp_path / "new" / "out"
    r = _run("encode", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_model_file), "--steps", "2")
    assert r.exit_code == 1 and not (tmp_path / "new").exists()


def test_decode_refuses_a_format_its_name_contradicts(tmp_path, tiny_generator, tiny_model_file) -> None:
    (face,) = _faces(tmp_path / "in", tiny_generator, 1)
    pgz = tmp_path / "x.pgz"
    assert _run("encode", str(face), str(pgz), "--model", str(tiny_model_file), "--steps", "2", "-q").exit_code == 0
    r = _run("decode", str(pgz), str(tmp_path / "x.png"), "--format", "webp", "--model", str(tiny_model_file))
    assert r.exit_code == 2 and "named as PNG" in r.output and not (tmp_path / "x.png").exists()
    r = _run("decode", str(pgz), str(tmp_path / "x.jpg"), "--format", "jpg", "--model", str(tiny_model_file))
    assert r.exit_code == 0, r.output


def test_decode_names_the_file_whose_checksum_fails(tmp_path, tiny_generator, tiny_model_file) -> None:
    (face,) = _faces(tmp_path / "in", tiny_generator, 1)
    pgz = tmp_path / "pgz"
    pgz.mkdir()
    assert _run("encode", str(face), str(pgz / "a.pgz"), "--model", str(tiny_model_file), "--steps", "2").exit_code == 0
    data = bytearray((pgz / "a.pgz").read_bytes())
    data[-1] ^= 0xFF
    (pgz / "b.pgz").write_bytes(bytes(data))
    r = _run("decode", str(pgz), "-o", str(tmp_path / "dec"), "--model", str(tiny_model_file))
    assert r.exit_code == 1 and f"{pgz / 'b.pgz'}: " in r.output.splitlines()[-1]
