"""Face finding and framing: synthetic photos made from CelebA faces (skipped without them)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from codec.cli import main
from codec.ladder import framing_of
from tests.conftest import DATASETS, SAMPLES

align = pytest.importorskip("codec.align")
pytest.importorskip("dlib")
CELEBA = DATASETS / "celeba" / "img_align_celeba"
needs_celeba = pytest.mark.skipif(not CELEBA.is_dir(), reason="CelebA not in ../shared/datasets")


def _paste(face: Image.Image, scale: float, angle: float, size: tuple[int, int], at: tuple[int, int]) -> Image.Image:
    """A 'photo': a textured background with the face scaled, rotated and placed at `at`."""
    rng = np.random.default_rng(0)
    bg = Image.fromarray(rng.integers(60, 200, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)).resize(size)
    f = face.resize((round(face.width * scale), round(face.height * scale)), Image.Resampling.BICUBIC)
    f = f.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    bg.paste(f, at)
    return bg


def _framing() -> np.ndarray:
    from codec.generator import resolve_model

    framing = align.read_framing(resolve_model("celeba64"))
    assert framing is not None and framing.shape == (3, 2)
    return framing


def test_similarity_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(size=(68, 2)) * 50
    c, s = np.cos(0.3), np.sin(0.3)
    dst = 1.7 * src @ np.array([[c, -s], [s, c]]).T + [10, -4]
    m = align.similarity(src, dst)
    assert np.allclose(np.hstack([src, np.ones((68, 1))]) @ m.T, dst, atol=1e-9)


@needs_celeba
def test_a_pasted_face_is_found_and_framed_like_its_crop() -> None:
    face = Image.open(sorted(CELEBA.iterdir())[0]).convert("RGB")
    direct = align.align(face, _framing(), 64)
    photo = _paste(face, 2.0, 12, (900, 700), (300, 100))
    pasted = align.align(photo, _framing(), 64)
    assert pasted.face is not None and pasted.found == 1 and abs(pasted.face.angle) > 5
    a, b = (np.asarray(x.image, dtype=float) for x in (direct, pasted))
    assert np.abs(a - b).mean() < 12  # same framing up to resampling


@needs_celeba
def test_aligned_celeba_faces_land_on_the_official_crop() -> None:
    from codec.images import CELEBA_CROP, fit_to_model
    from codec.metrics import psnr

    faces = [Image.open(p).convert("RGB") for p in sorted(CELEBA.iterdir())[:20]]
    stack = lambda ims: torch.stack([torch.from_numpy(np.asarray(i).transpose(2, 0, 1).copy()) for i in ims])  # noqa: E731
    aligned = stack([align.align(f, _framing(), 64).image for f in faces])
    official = stack([fit_to_model(f, 64, CELEBA_CROP) for f in faces])
    assert psnr(aligned, official).mean() > 25  # a one-pixel shift of the official crop: ~22 dB


def test_a_framing_measured_with_both_mouth_corners_reads_as_the_mouth_centre(tmp_path) -> None:
    import json
    import shutil

    from codec.generator import read_model_file, resolve_model, write_model_file

    path = tmp_path / "old.safetensors"
    shutil.copy(resolve_model("celeba64-gan"), path)
    meta, state = read_model_file(path)
    old = [[0.3, 0.4], [0.7, 0.4], [0.35, 0.8], [0.65, 0.82]]
    meta["framing"] = json.dumps({"landmarks": old, "faces": 5})
    write_model_file(path, state, meta)
    assert np.allclose(align.read_framing(path), [[0.3, 0.4], [0.7, 0.4], [0.5, 0.81]])


@needs_celeba
def test_where_hog_finds_no_face_the_cnn_detector_looks_again(monkeypatch) -> None:
    face = Image.open(sorted(CELEBA.iterdir())[1]).convert("RGB")
    photo = _paste(face, 1.8, -10, (700, 600), (150, 120))
    hog = align.detect(photo)
    blind = SimpleNamespace(run=lambda arr, up, threshold: ([], [], []))
    monkeypatch.setattr(align, "_detector", lambda: blind)  # HOG finds nothing, upright or turned
    (cnn,) = align.detect(photo)
    assert np.abs(align.key_points(cnn.landmarks) - align.key_points(hog[0].landmarks)).max() < 6  # same eyes, mouth


def test_no_face_is_a_note_or_an_error(tmp_path) -> None:
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (150, 200, 3), dtype=np.uint8))
    noise.save(tmp_path / "noise.png")
    out = CliRunner().invoke(main, ["encode", str(tmp_path / "noise.png"), str(tmp_path / "n.pgz"), "--steps", "2"])
    assert out.exit_code == 0 and "no face found" in out.output
    out = CliRunner().invoke(
        main, ["encode", str(tmp_path / "noise.png"), str(tmp_path / "m.pgz"), "--steps", "2", "--require-face"]
    )
    assert out.exit_code != 0 and "no face found" in out.output and not (tmp_path / "m.pgz").exists()


def test_crop_needs_no_align_and_model_sized_inputs_framed_as_the_models_pass_unchanged(tmp_path) -> None:
    def encode(src: Path, *more: str) -> tuple[str, np.ndarray]:
        crop = tmp_path / f"crop-{len(list(tmp_path.iterdir()))}.png"
        out = CliRunner().invoke(main, ["encode", str(src), str(tmp_path / f"{crop.stem}.pgz"), "--steps", "2",
                                        "--save-crop", str(crop), *more])  # fmt: skip
        assert out.exit_code == 0, out.output
        return out.output, np.asarray(Image.open(crop))

    out = CliRunner().invoke(main, ["encode", str(SAMPLES / "astronaut.png"), str(tmp_path / "a.pgz"), "--crop", "0.5"])
    assert out.exit_code == 2 and "--no-align" in out.output
    _, framed = encode(SAMPLES / "astronaut_photo.jpg")  # a 64x64 crop framed as the model's faces are
    Image.fromarray(framed).save(tmp_path / "framed.png")
    output, again = encode(tmp_path / "framed.png")
    assert "centre crop" in output and "off the model's framing" not in output and np.array_equal(again, framed)
    # the sample, cropped by hand, sits 15 px off the framing: framed as a photo is, unless --no-align
    original = np.asarray(Image.open(SAMPLES / "astronaut.png").convert("RGB"))
    output, crop = encode(SAMPLES / "astronaut.png")
    assert "its face sat off the model's framing (scaled 0.88x, 15 px off)" in output and "face 1 of 1" in output
    assert align.off_framing(align.find_faces(Image.fromarray(crop)), framing_of("celeba64"), 64) is None  # on it
    assert not np.array_equal(crop, original)
    output, crop = encode(SAMPLES / "astronaut.png", "--no-align")
    assert "centre crop" in output and np.array_equal(crop, original)


@needs_celeba
def test_several_faces_largest_first_and_face_n_picks_another() -> None:
    files = sorted(CELEBA.iterdir())
    big, small = (Image.open(f).convert("RGB") for f in files[:2])
    photo = _paste(big, 2.0, 0, (1200, 700), (50, 100))
    photo.paste(small.resize((267, 327)), (800, 200))
    first, second = align.align(photo, _framing(), 64), align.align(photo, _framing(), 64, face_index=2)
    assert first.found == second.found == 2 and any("2 faces" in w for w in first.warnings)
    assert first.face.box[0] < 600 < second.face.box[0]
    with pytest.raises(Exception, match="only 2 face"):
        align.align(photo, _framing(), 64, face_index=3)


@needs_celeba
def test_small_faces_are_looked_for_when_more_faces_are_asked_for() -> None:
    """Detection looks at twice the size only where it must: --face 2 finds a face too small
    for the first look (about 50 px in the 640-px copy) beside a large one."""
    files = sorted(CELEBA.iterdir())
    big, small = (Image.open(f).convert("RGB") for f in files[:2])
    photo = _paste(big, 2.0, 0, (1200, 700), (50, 100))
    photo.paste(small.resize((100, 122)), (900, 300))
    second = align.align(photo, _framing(), 64, face_index=2)
    assert second.found >= 2 and 850 < second.face.box[0] < 1000


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 200), (200, 3), (39, 400), (64, 20000), (20000, 64)])
def test_shapes_the_detector_cannot_take_are_not_shown_to_it(size) -> None:
    # these shapes crashed the process inside dlib (traceback, SIGSEGV, double free)
    img = Image.new("RGB", size, (120, 100, 90))
    assert align.detect(img) == []


def test_a_weak_detection_beside_a_face_counts_only_if_the_cnn_finds_a_face_there() -> None:
    photo = Image.open(SAMPLES / "astronaut_photo.jpg").convert("RGB")
    (face,) = align.detect(photo)  # the mission patch on the suit (HOG score 0.10) is not a second face
    assert face.box[1] < 200


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_a_photo_taken_sideways_is_coded_upright(turn) -> None:
    photo = Image.open(SAMPLES / "astronaut_photo.jpg").convert("RGB")
    upright = align.align(photo, _framing(), 64)
    turned = align.align(photo.rotate(turn, expand=True), _framing(), 64)
    assert turned.face is not None and abs(abs(turned.face.angle - upright.face.angle) - min(turn, 360 - turn)) < 3
    a, b = (np.asarray(x.image, dtype=np.float64) for x in (upright, turned))
    assert (
        10 * np.log10(255**2 / np.mean((a - b) ** 2)) > 24
    )  # the same crop, upright (27-28 dB; turned a quarter: 8.8)


@pytest.mark.parametrize("turn", [1, 2, 3])
def test_points_found_in_a_turned_photo_map_back_to_the_photo(turn) -> None:
    h, w = 30, 50
    cells = np.random.default_rng(turn).choice(h * w, 68, replace=False)
    pts = np.stack([cells % w, cells // w], axis=1).astype(np.float64)  # (x, y), all distinct
    photo = np.zeros((h, w))
    photo[cells // w, cells % w] = np.arange(1, 69)
    turned = np.rot90(photo, turn)
    where = {int(turned[y, x]): (x, y) for y, x in zip(*np.nonzero(turned), strict=True)}
    found = align.Face((0, 0, 1, 1), np.array([where[i] for i in range(1, 69)], dtype=np.float64))
    assert np.array_equal(align._turned_back(found, turn, photo.shape).landmarks, pts)


def test_a_tight_crop_is_found_and_framed_as_training_frames_it_without_black_corners(tmp_path) -> None:
    """A photo cut at the face's box: the detector gets a margin, the framing that reaches past
    the photo takes the photo's blurred mirror, not black, and encode's crop is exactly the one
    a decoder trained on a photo folder saw (codec.photos); a face well inside a photo is
    framed as before (a plain warp)."""
    from codec.images import open_image
    from codec.photos import frame_photo

    photo = open_image(SAMPLES / "astronaut_photo.jpg")
    whole = align.align(photo, _framing(), 64)
    assert np.array_equal(np.asarray(whole.image), np.asarray(align.warp(photo, whole.face, _framing(), 64)))
    left, top, right, bottom = whole.face.box
    tight = photo.crop((left, top, right, bottom))
    tight.save(tmp_path / "tight.png")
    got = align.align(tight, _framing(), 64)
    assert got.face is not None and align._overshoot(tight, got.face, _framing(), 64) > 0.2 * tight.width
    crop = np.asarray(got.image)
    corners = [crop[:6, :6], crop[:6, -6:], crop[-6:, :6], crop[-6:, -6:]]
    assert min(float(c.mean()) for c in corners) > 20  # black corners read ~0
    trained = frame_photo(tmp_path / "tight.png", _framing(), 64, align.detect)
    assert np.array_equal(trained, crop.transpose(2, 0, 1))


def test_a_model_sized_crop_is_off_the_framing_only_when_its_face_is_far_from_it() -> None:
    """align.off_framing on faces placed exactly: on the framing, a little off (as CelebA's own
    crops are), and scaled or moved beyond the bounds."""
    framing = framing_of("celeba64")

    def placed(scale: float, dx: float) -> list:
        pts = (framing * 64 - 32) * scale + 32 + np.array([dx, 0.0])
        marks = np.zeros((68, 2))
        marks[36:42], marks[42:48], marks[48], marks[54] = pts[0], pts[1], pts[2], pts[2]
        return [align.Face((0, 0, 64, 64), marks)]

    for scale, dx in [(1.0, 0.0), (1.05, 2.0), (0.8, 0.0), (1.3, 0.0), (1.0, 7.5)]:
        assert align.off_framing(placed(scale, dx), framing, 64) is None, (scale, dx)
    assert align.off_framing(placed(1 / 0.6, 0.0), framing, 64) == "scaled 0.60x, 0 px off"
    assert align.off_framing(placed(1.0, 15.0), framing, 64) == "scaled 1.00x, 15 px off"
    assert align.off_framing([], framing, 64) is None  # no face: taken as it is
