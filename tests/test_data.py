import numpy as np
import pytest
from PIL import Image

from codec.data import celeba_files, load_dataset, read_idx
from codec.errors import DataError
from codec.images import CELEBA_CROP, fit_to_model, open_image, to_uint8_array
from tests.conftest import DATASETS


def test_celeba_splits_skip_corrupt_and_absent_files(fake_celeba, tmp_path) -> None:
    train = load_dataset("celeba", fake_celeba, "train", cache_dir=tmp_path / "cache")
    assert train.images.shape == (6, 3, 64, 64) and train.images.dtype == np.uint8
    assert train.skipped == 1  # the corrupt file; the absent one is simply not in the subset
    assert len(load_dataset("celeba", fake_celeba / "celeba", "valid")) == 2
    assert len(load_dataset("celeba", fake_celeba, "test")) == 2
    cached = load_dataset("celeba", fake_celeba, "train", cache_dir=tmp_path / "cache")
    assert np.array_equal(cached.images, train.images) and cached.names == train.names


def test_celeba_preprocessing_is_the_centred_140_crop(fake_celeba) -> None:
    path = celeba_files(fake_celeba, "test")[0]
    got = load_dataset("celeba", fake_celeba, "test").images[0]
    want = Image.open(path).convert("RGB").crop((19, 39, 159, 179)).resize((64, 64), Image.Resampling.BICUBIC)
    assert np.array_equal(got, to_uint8_array(want))
    assert round(178 * CELEBA_CROP) == 140


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "not a CelebA folder"),
    ],
)
def test_celeba_bad_roots(tmp_path, make, match) -> None:
    with pytest.raises(DataError, match=match):
        load_dataset("celeba", make(tmp_path), "train")


def test_unknown_split_and_dataset(fake_celeba) -> None:
    with pytest.raises(DataError, match="unknown split"):
        load_dataset("celeba", fake_celeba, "dev")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("imagenet", fake_celeba)


def test_mnist_splits_and_padding(fake_mnist) -> None:
    train = load_dataset("mnist", fake_mnist, "train")
    valid = load_dataset("mnist", fake_mnist, "valid")
    test = load_dataset("mnist", fake_mnist, "test")
    assert train.images.shape == (10, 1, 32, 32) and len(valid) == 5000 and len(test) == 7
    raw = read_idx(fake_mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz")
    assert np.array_equal(test.images[:, 0, 2:30, 2:30], raw)
    assert test.images[:, :, :2].max() == 0


def test_mnist_missing_files(tmp_path) -> None:
    with pytest.raises(DataError, match="no MNIST files"):
        load_dataset("mnist", tmp_path, "train")


def test_folder_dataset_and_empty_folder(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (100, 80), (10, 20, 30)).save(tmp_path / "a.png")
    Image.new("L", (64, 64), 200).save(tmp_path / "sub" / "b.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    s = load_dataset("folder", tmp_path, "all")
    assert s.images.shape == (2, 3, 64, 64)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        load_dataset("folder", empty, "all")


def test_fit_to_model_passes_model_sized_images_unchanged() -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert fit_to_model(img, 64, CELEBA_CROP) is img
    assert fit_to_model(Image.new("RGB", (300, 200)), 64).size == (64, 64)


@pytest.mark.skipif(not (DATASETS / "celeba").is_dir(), reason="../shared/datasets absent")
def test_real_celeba_split_sizes() -> None:
    assert len(celeba_files(DATASETS, "train")) == 16492
    assert len(celeba_files(DATASETS, "valid")) == 2044
    assert len(celeba_files(DATASETS, "test")) == 1677
    img = open_image(celeba_files(DATASETS, "test")[0])
    assert img.size == (178, 218)
