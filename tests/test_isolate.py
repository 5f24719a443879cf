"""A native crash in the face finder costs one image, never the run (issue #24)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from codec.cli import main
from codec.errors import ImageError
from codec.isolate import Detector
from tests.conftest import SAMPLES

CRASHING = "tests.crashing_finder:crash_on_red"


def _red(size=(120, 100)) -> Image.Image:
    return Image.new("RGB", size, (255, 0, 0))


def test_the_worker_finds_what_the_finder_finds_in_process() -> None:
    from codec.align import detect

    photo = Image.open(SAMPLES / "astronaut_photo.jpg").convert("RGB")
    with Detector(preload=True) as finder:  # loading its models at once, as encode has it do
        got, want = finder(photo), detect(photo)
    assert len(got) == len(want) == 1  # the face; the mission patch is no face (test_align)
    for a, b in zip(got, want, strict=True):
        assert a.box == b.box and np.array_equal(a.landmarks, b.landmarks)


def test_a_worker_never_asked_is_stopped_at_once_and_one_asked_ends_on_its_own() -> None:
    """A run that fails before its first photo (an output refused) does not wait for the
    preloading worker to finish loading models nobody will use."""
    unused = Detector(preload=True)
    proc = unused._proc
    unused.close()
    assert proc.returncode == -9  # killed, not waited for
    with Detector() as used:
        used(_red())
        proc = used._proc
    assert proc.returncode == 0  # it read the end of its input and returned


def test_a_crashed_worker_fails_its_image_and_the_next_one_gets_a_fresh_worker() -> None:
    with Detector(CRASHING) as finder:
        with pytest.raises(ImageError, match=r"face finder crashed on this image \(.*SIGKILL\)"):
            finder(_red())
        assert finder(Image.new("RGB", (120, 100), (128, 128, 128))) == []  # a fresh worker answers


def test_keep_going_survives_a_crash_in_the_face_finder(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("codec.isolate.TARGET", CRASHING)
    src = tmp_path / "in"
    src.mkdir()
    Image.open(SAMPLES / "astronaut_photo.jpg").save(src / "a_photo.jpg")
    _red().save(src / "b_red.png")
    Image.open(SAMPLES / "grace_hopper.png").save(src / "c_hopper.png")
    out, report = tmp_path / "out", tmp_path / "report.csv"
    r = CliRunner().invoke(
        main,
        ["encode", str(src), "-o", str(out), "--steps", "0", "--keep-going", "--report", str(report)],
        catch_exceptions=False,
    )
    assert r.exit_code == 1
    assert "b_red.png" in r.output and "face finder crashed" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in out.iterdir()) == ["a_photo.pgz", "c_hopper.pgz"]
    rows = list(csv.DictReader(report.open()))
    assert [bool(row["error"]) for row in rows] == [False, True, False]
