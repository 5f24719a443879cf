"""Files made by earlier versions (tests/data/stored, written by tests/data/make_stored.py)
still decode with today's model files, to the image they decoded to then."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.generator import shipped_models
from codec.pipeline import decode_tensor

STORED = Path(__file__).resolve().parent / "data" / "stored"
FILES = sorted(STORED.glob("*.pgz"))


def test_every_shipped_model_has_stored_files() -> None:
    names = {f.stem.split("-level")[0] for f in FILES}
    assert set(shipped_models()) <= names, "new model: run python tests/data/make_stored.py"


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_a_stored_file_decodes_to_the_image_it_did(path: Path) -> None:
    got = decode_tensor(path.read_bytes()).permute(1, 2, 0).numpy().astype(int)
    want = np.asarray(Image.open(path.with_suffix(".png"))).astype(int)
    want = want[..., None] if want.ndim == 2 else want
    assert got.shape == want.shape
    diff = np.abs(got - want)
    assert diff.max() <= 2 and diff.mean() < 0.05  # float kernels differ a little between CPUs
