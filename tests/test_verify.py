"""Cross-photo verification (codec.verify) on synthetic descriptors, and identity files."""

from __future__ import annotations

import numpy as np
import pytest

from codec import verify
from codec.data import DataError, read_identities


def _people(n_people: int = 60, photos: int = 4, spread: float = 0.25, seed: int = 0):
    """Descriptors of `photos` photos each of `n_people` people: a centre per person plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 128))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    desc = np.repeat(centres, photos, 0) + rng.normal(scale=spread / np.sqrt(128), size=(n_people * photos, 128))
    names = [f"{i:04d}.jpg" for i in range(len(desc))]
    ids = {n: f"p{i // photos}" for i, n in enumerate(names)}
    return names, desc, ids


def test_pairs_and_thresholds_follow_the_protocol() -> None:
    names, desc, ids = _people()
    coded = names[::2]  # the coded faces are a subset of the pool
    p = verify.build(coded, names, desc, ids, impostors=20)
    # genuine: each coded face with every *other* photo of its person (4 photos -> 3 partners)
    assert len(p.genuine) == 3 * len(coded)
    assert all(ids[coded[k]] == ids[names[j]] and coded[k] != names[j] for k, j in p.genuine)
    # impostors: 20 photos of other people per face
    assert p.impostor.shape == (len(coded), 20)
    assert all(ids[names[j]] != ids[coded[k]] for k in range(len(coded)) for j in p.impostor[k])
    # the thresholds accept the originals' impostors at (about) 1% and 0.1% of the time
    d_imp = np.linalg.norm(p.originals[:, None] - desc[p.impostor], axis=2).ravel()
    assert abs((d_imp < p.thresholds[0]).mean() - 0.01) < 0.005
    assert p.thresholds[1] <= p.thresholds[0]


def test_originals_keep_every_pair_and_noise_keeps_almost_none() -> None:
    names, desc, ids = _people()
    p = verify.build(names, names, desc, ids)
    top = verify.rates(p, p.originals)
    assert top["tar_1"] > 0.95 and top["tar_1_lo"] <= top["tar_1"] <= top["tar_1_hi"]
    assert abs(top["far_1"] - 0.01) < 0.005  # the originals set the threshold
    noise = np.random.default_rng(1).normal(size=desc.shape) / np.sqrt(128)
    bad = verify.rates(p, noise)
    assert bad["tar_1"] < 0.1
    # a decoded face moved part of the way off its person loses some pairs
    worse = verify.rates(p, p.originals + 1.2 * noise)
    assert bad["tar_1"] < worse["tar_1"] < top["tar_1"]


def test_unlabelled_and_unscored_faces_take_no_part() -> None:
    names, desc, ids = _people(n_people=20)
    del ids[names[0]]
    p = verify.build(names, names, desc, ids)
    assert 0 not in p.genuine[:, 0] and (p.impostor[0] == -1).all()
    assert not np.isin(0, p.genuine[:, 1])  # nor as anyone's partner
    partial = p.originals.copy()
    partial[1] = np.nan
    r = verify.rates(p, partial)
    assert r["pairs"] == len(p.genuine) - 2  # face 1 and its two labelled partners


def test_descriptors_pack_into_short_text() -> None:
    d = np.random.default_rng(0).normal(size=128)
    text = verify.pack(d)
    assert len(text) == 344 and np.allclose(verify.unpack(text), d, atol=2e-3)


def test_identity_files_in_celebas_format(tmp_path) -> None:
    f = tmp_path / "ids.txt"
    f.write_text("000001.jpg 2880\n\nsub dir/a photo.jpg 7\n")
    assert read_identities(f) == {"000001.jpg": "2880", "sub dir/a photo.jpg": "7"}
    f.write_text("000001.jpg\n")
    with pytest.raises(DataError, match="line 1"):
        read_identities(f)
    with pytest.raises(DataError, match="does not exist"):
        read_identities(tmp_path / "none.txt")
