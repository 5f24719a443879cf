"""Quality ladders: one --quality scale over several rate-distortion models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from codec import container
from codec.errors import ModelError
from codec.ladder import Rung, ladder_for, read_ladder
from codec.pipeline import EncodeOptions, decode_tensor, encode_batch, reusable
from codec.rdmodel import RDModel, load_rd, save_rd
from tests.conftest import tiny_config


def _rd_file(path, nz: int, seed: int, widen: float):
    torch.manual_seed(seed)
    m = RDModel(tiny_config(nz=nz)).eval()
    with torch.no_grad():
        m.prior.matrices[0].add_(widen)  # the prior's spread sets how many bytes a latent costs
    save_rd(m, path, {"dataset": "none"})
    return path


@pytest.fixture
def two_model_ladder(tmp_path):
    """A 'low' model (nz 8) and a 'high' one (nz 24), and a ladder: low 1-3, then high 2-4."""
    _rd_file(tmp_path / "low.safetensors", 8, 0, 2.0)
    _rd_file(tmp_path / "high.safetensors", 24, 1, 2.0)
    rungs = [["low.safetensors", lv] for lv in (1, 2, 3)] + [["high.safetensors", lv] for lv in (2, 3, 4)]
    path = tmp_path / "faces.ladder.json"
    path.write_text(json.dumps({"default": 2, "rungs": rungs}))
    return path


@pytest.fixture
def image(tmp_path):
    src = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src)
    return src


def test_each_quality_is_coded_by_its_rung_and_decodes(two_model_ladder, image) -> None:
    ladder = read_ladder(two_model_ladder)
    assert len(ladder) == 6 and ladder.default == 2 and ladder.name == "faces"
    for q in range(1, 7):
        (r,) = encode_batch([image], EncodeOptions(model=str(two_model_ladder), quality=q, steps=1, loss="mse"))
        rung = ladder.rung(q)
        c = container.from_bytes(r.data)
        m, _ = load_rd(rung.model)
        assert r.quality == q and r.model == rung.model
        assert c.level == rung.level and c.fingerprint == m.fingerprint()[:4]  # the header names the rung
        # the ladder decodes it, and so does the rung's own model file
        assert torch.equal(decode_tensor(r.data, str(two_model_ladder)), r.decoded)
        assert torch.equal(decode_tensor(r.data, rung.model), r.decoded)


def test_max_bytes_walks_the_whole_ladder(two_model_ladder, image) -> None:
    opts = dict(model=str(two_model_ladder), steps=0)
    sizes = {q: encode_batch([image], EncodeOptions(quality=q, **opts))[0].num_bytes for q in range(1, 7)}
    assert sizes[6] > sizes[3]  # the wide model's rungs cost more
    for budget in sorted(set(sizes.values())):
        (r,) = encode_batch([image], EncodeOptions(max_bytes=budget, **opts))
        assert r.num_bytes <= budget and r.quality == max(q for q, n in sizes.items() if n <= budget)
    with pytest.raises(ValueError, match="over --max-bytes"):
        encode_batch([image], EncodeOptions(max_bytes=min(sizes.values()) - 1, **opts))


def test_the_ladder_default_and_range(two_model_ladder, image, monkeypatch) -> None:
    from codec.backends import rd as pipeline  # the backend that applies the default cap

    opts = dict(model=str(two_model_ladder), steps=0)
    sizes = {q: encode_batch([image], EncodeOptions(quality=q, **opts))[0].num_bytes for q in range(1, 7)}
    (r,) = encode_batch([image], EncodeOptions(**opts))
    assert r.quality == max(q for q, n in sizes.items() if n <= pipeline.DEFAULT_MAX_BYTES)  # across both models
    monkeypatch.setattr(pipeline, "DEFAULT_MAX_BYTES", min(sizes.values()) - 1)
    (r,) = encode_batch([image], EncodeOptions(**opts))
    assert r.quality == 2  # nothing fits the default cap: the ladder's default, not a single model's 4
    with pytest.raises(ValueError, match="quality 7 is out of range: faces has qualities 1..6"):
        encode_batch([image], EncodeOptions(model=str(two_model_ladder), quality=7))


def test_skip_existing_knows_the_quality_of_a_file_on_the_ladder(two_model_ladder, image) -> None:
    model = str(two_model_ladder)
    (r,) = encode_batch([image], EncodeOptions(model=model, quality=5, steps=0))
    assert reusable(r.data, EncodeOptions(model=model, quality=5)) is None
    assert reusable(r.data, EncodeOptions(model=model, quality=4)) == "has quality 5, not 4"
    assert reusable(r.data, EncodeOptions(model=model, max_bytes=len(r.data) - 1)) == f"is over {len(r.data) - 1} bytes"
    (off,) = encode_batch([image], EncodeOptions(model=ladder_for(model).rung(4).model, quality=1, steps=0))
    assert "level 1 of" in reusable(off.data, EncodeOptions(model=model, quality=4))  # high's level 1: no rung


def test_a_single_model_is_a_ladder_of_its_own_levels(two_model_ladder) -> None:
    low = str(two_model_ladder.parent / "low.safetensors")
    ladder = ladder_for(low)
    assert len(ladder) == 8 and ladder.default == 4 and ladder.rung(3) == Rung(low, 3)
    assert ladder_for("celeba64-gan") is None  # GAN-only models take --bits


def test_bad_ladder_files_are_refused_in_one_line(two_model_ladder, tmp_path) -> None:
    bad = tmp_path / "bad.ladder.json"
    for spec, why in (
        ({"default": 1, "rungs": [["low.safetensors", 9]]}, "has no level 9"),
        ({"default": 3, "rungs": [["low.safetensors", 1]]}, "default quality 3"),
        ({"rungs": []}, "not a ladder file"),
    ):
        bad.write_text(json.dumps(spec))
        with pytest.raises(ModelError, match=why):
            read_ladder(bad)
    with pytest.raises(ModelError, match="no such ladder file"):
        ladder_for(tmp_path / "absent.ladder.json")


def test_progress_of_a_batch_spread_over_both_models_adds_up(two_model_ladder, image, monkeypatch) -> None:
    from codec.backends import rd as pipeline  # the backend that applies the default cap

    def mixed(ladder, models, x, candidates, max_bytes, first, strict=True):  # untrained models code alike
        return [1 + 5 * (i % 2) for i in range(len(x))], [None] * len(x)

    monkeypatch.setattr(pipeline, "_pick_levels", mixed)
    seen: list[float] = []
    results = encode_batch([image] * 5, EncodeOptions(model=str(two_model_ladder), steps=3, loss="mse"), seen.append)
    assert [r.quality for r in results] == [1, 6, 1, 6, 1]  # one batch, two searches
    running = np.cumsum(seen)
    assert len(seen) == 6 and running[-1] == pytest.approx(5) and running.max() <= 5 + 1e-9
