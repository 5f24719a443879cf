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
from tests.conftest import SAMPLES

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


@pytest.mark.slow  # 6 s
def test_train_generator_trains_on_a_photo_folder(folder, tmp_path) -> None:
    from click.testing import CliRunner

    from codec.cli import main
    from codec.generator import read_metadata

    for i in range(40):  # enough photos for a batch of each split
        (folder / f"x{i:02d}.jpg").symlink_to(folder / "a.jpg")
    r = CliRunner().invoke(main, ["train-generator", "--objective", "rd", "--dataset", "photos", "--data-root",
                                  str(folder), "--out", str(tmp_path / "run"), "--width", "4", "--nz", "8",
                                  "--batch-size", "2", "--steps", "2", "--no-progress"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "percodec: skipped: " in r.output and "c.png: no face found" in r.output
    card = read_metadata(tmp_path / "run" / "model.safetensors")["card"]
    assert '"dataset": "photos"' in card and '"framing_from": "celeba64"' in card
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
