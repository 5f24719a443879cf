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


def _records(codec: str, names: list[str], dlib: np.ndarray, judge: np.ndarray | None) -> list[dict]:
    return [{"image": n, "codec": codec, "family": codec, "setting": 0, "bytes": 100, "psnr": 30.0,
             "desc": verify.pack(dlib[i]), **({"judge": verify.pack(judge[i])} if judge is not None else {})}
            for i, n in enumerate(names)]  # fmt: skip


def test_the_bench_gives_every_identity_figure_by_both_recognisers(tmp_path) -> None:
    """dlib (the search's recogniser) and the held-out judge, each with its own thresholds and
    descriptor size; a row whose records lack the judge's descriptor (an older cache) gets
    no judge figures rather than figures over some of its faces."""
    from codec.bench.plots import plot_verify
    from codec.bench.tables import originals_row, summarize, verification_table

    names, dlib, ids = _people(n_people=30)
    rng = np.random.default_rng(2)
    judge = np.repeat(rng.normal(size=(30, 1024)), 4, 0) + rng.normal(scale=0.3, size=(120, 1024))
    p_dlib, p_judge = verify.build(names, names, dlib, ids), verify.build(names, names, judge, ids)
    blurred = judge.copy()  # the judge sees every other face as someone else; dlib sees each as its own
    blurred[::2] = judge[::2][::-1]
    records = _records("ours", names, dlib, blurred) + _records("old cache", names, dlib, None)
    records[-1]["judge"] = verify.pack(judge[-1])  # one face of the old row was scored since
    ours, old = summarize(records, {"dlib": p_dlib, "judge": p_judge})
    assert ours["tar_1"] > 0.95 and ours["judge_tar_1"] < ours["tar_1"]
    assert ours["judge_tar_1"] == verify.rates(p_judge, blurred)["tar_1"]
    assert "tar_1" in old and not any(k.startswith("judge_") for k in old)
    text = verification_table([ours, old], p_judge, "judge")
    assert "HSE FaceRes" in text and f"{p_judge.thresholds[0]:.3f}" in text
    assert "| ours |" in text and "| old cache |" not in text
    assert "| ours |" in verification_table([ours, old], p_dlib) and "dlib" in verification_table([ours], p_dlib)
    plot_verify([ours, old], originals_row(p_judge), tmp_path / "v.png", "judge")
    assert (tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"


def test_a_recogniser_the_search_used_is_named_as_not_held_out() -> None:
    from codec.bench.config import BenchConfig
    from codec.bench.outputs import _words

    both = ("ms-ssim=1,mse=3,identity=0.5,faceres=0.15", "mse")
    assert verify.searched_with("dlib", both) and verify.searched_with("judge", both)
    assert not verify.searched_with("mobileface", both)  # no loss searches with the second judge
    assert not verify.searched_with("judge", ("ms-ssim=1,mse=3,identity=0.5",))
    assert "not held out" in _words("judge", BenchConfig(losses=both))
    assert _words("judge", BenchConfig(losses=("ms-ssim=1,mse=3,identity=0.5",))).endswith("held out")
    assert "not held out" not in _words("mobileface", BenchConfig(losses=both))
