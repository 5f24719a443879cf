"""Training faces from a folder of photos (codec.photos): framed as encode frames them, split
by a hash of the path, prepared once in cached parts, skipped photos named."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec import photos
from codec.ladder import framing_of
from tests.conftest import ROOT, SAMPLES

pytest.importorskip("dlib")


def test_the_split_is_a_fixed_function_of_the_path_with_90_5_5_shares() -> None:
    names = [f"p/{i:05d}.jpg" for i in range(4000)]
    counts = Counter(photos.split_of(n) for n in names)
    assert 0.88 < counts["train"] / 4000 < 0.92 and 0.04 < counts["valid"] / 4000 < 0.06
    assert [photos.split_of(n) for n in names[:50]] == [photos.split_of(n) for n in names[:50]]


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    Image.open(SAMPLES / "astronaut_photo.jpg").save(root / "a.jpg")
    tight = Image.open(SAMPLES / "astronaut_photo.jpg").crop((170, 70, 275, 185))  # a tight crop: no margin
    tight.resize((200, 200)).save(root / "b.jpg")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(90, 110, (120, 160, 3), dtype=np.uint8)).save(root / "c.png")  # no face
    (root / "d.jpg").write_bytes(b"not an image")
    return root


def test_faces_are_framed_as_encode_frames_them_and_the_rest_named(folder, tmp_path) -> None:
    from codec import align
    from codec.images import open_image, to_uint8_array

    skipped: list[str] = []
    framing = framing_of("celeba64")
    images, names, n_skipped = photos.prepare_photos(
        photos.photo_files(folder, "all"), framing, 64, tmp_path / "cache", 2, on_skip=skipped.append
    )
    assert names == ["a.jpg", "b.jpg"] and n_skipped == 2 and images.shape == (2, 3, 64, 64)
    assert any("c.png: no face found" in s for s in skipped) and any("d.jpg" in s for s in skipped)
    as_encode = to_uint8_array(align.align(open_image(folder / "a.jpg"), framing, 64).image)
    assert np.abs(images[0].astype(int) - as_encode.astype(int)).mean() < 1  # the same crop as encode's
    corners = images[1][:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.mean() > 20  # past the tight crop: its blurred mirror, not black


def test_a_prepared_part_is_read_back_not_made_again(folder, tmp_path, monkeypatch) -> None:
    files, framing = photos.photo_files(folder, "all"), framing_of("celeba64")
    first = photos.prepare_photos(files, framing, 64, tmp_path / "cache", 1)
    monkeypatch.setattr(photos, "frame_photo", lambda *a: pytest.fail("the cached part was made again"))
    skipped: list[str] = []
    again = photos.prepare_photos(files, framing, 64, tmp_path / "cache", 1, on_skip=skipped.append)
    assert np.array_equal(first[0], again[0]) and first[1:] == again[1:]
    assert skipped == ["2 photo(s) without a face left out when " + next((tmp_path / "cache").glob("*.npz")).name
                       + " was made"]  # fmt: skip


@pytest.mark.slow  # 10 s
def test_train_generator_trains_on_a_photo_folder(folder, tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from codec.cli import main
    from codec.generator import read_metadata

    for i in range(40):  # enough photos for a batch of each split
        (folder / f"x{i:02d}.jpg").symlink_to(folder / "a.jpg")

    def train(out: str) -> str:
        r = CliRunner().invoke(main, ["train-generator", "--objective", "rd", "--dataset", "photos", "--data-root",
                                      str(folder), "--out", str(tmp_path / out), "--width", "4", "--nz", "8",
                                      "--batch-size", "2", "--steps", "2", "--no-progress",
                                      "--data-cache", str(tmp_path / "faces")])  # fmt: skip
        assert r.exit_code == 0, r.output
        return r.output

    output = train("run")
    assert "percodec: skipped: " in output and "c.png: no face found" in output
    card = read_metadata(tmp_path / "run" / "model.safetensors")["card"]
    assert '"dataset": "photos"' in card and '"framing_from": "celeba64"' in card
    assert any((tmp_path / "faces").glob("photos-*/part-*.npz")) and not (tmp_path / "run" / "cache").exists()
    # a second run on the same photos with the same --data-cache frames nothing again
    monkeypatch.setattr(photos, "frame_photo", lambda *a: pytest.fail("a cached face was framed again"))
    assert "without a face left out when" in train("run2")
    r = CliRunner().invoke(main, ["train-generator", "--dataset", "celeba", "--framing-from", "celeba64",
                                  "--out", str(tmp_path / "other"), "--dry-run"])  # fmt: skip
    assert r.exit_code == 2 and "--framing-from applies to --dataset photos" in r.output


def test_a_part_framed_the_old_way_is_made_again(folder, tmp_path, monkeypatch) -> None:
    """Cached crops are keyed by how crops are framed (align.FRAMING_VERSION): after a change to
    the framing, a cached part is not read back as if it were today's."""
    from codec import align

    files, framing = photos.photo_files(folder, "all"), framing_of("celeba64")
    photos.prepare_photos(files, framing, 64, tmp_path / "cache", 1)
    calls: list[object] = []
    real = photos.frame_photo
    monkeypatch.setattr(photos, "frame_photo", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(align, "FRAMING_VERSION", align.FRAMING_VERSION + 1)
    photos.prepare_photos(files, framing, 64, tmp_path / "cache", 1)
    assert len(calls) == len(files)


def test_subgroups_reads_age_and_ethnicity_from_utkface_and_all_age_faces_names() -> None:
    """benchmarks/subgroups.py's labels: UTKFace's age_gender_race names and All-Age-Faces'
    NNNNNAxx.jpg (age only: its column is "unlabelled"); anything else is left out."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("subgroups", ROOT / "benchmarks" / "subgroups.py")
    sub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sub)
    band = {lo: i for i, (lo, _) in enumerate(sub.BANDS)}
    assert sub.label("85_1_1_20170110182743000.jpg.chip.jpg") == (band[80], sub.ETHNICITIES.index("black"))
    assert sub.label("1_0_2_20161219140530307.jpg.chip.jpg") == (band[0], sub.ETHNICITIES.index("asian"))
    assert sub.label("13321A80.jpg") == (band[80], sub.UNLABELLED)
    assert sub.label("00004A02.jpg") == (band[0], sub.UNLABELLED)
    for odd in ("61_1_20170109142408075.jpg.chip.jpg", "30_0_9_x.jpg", "30_0_5_x.jpg", "0001A02.jpg", "portrait.jpg"):
        assert sub.label(odd) is None, odd
