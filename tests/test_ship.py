"""Shipping (codec.ship, `percodec ship`): tiny training runs of each family shipped into a
temporary model folder; each shipped file's card, levels and fingerprint checked."""

from __future__ import annotations

import re

import pytest
import torch
from click.testing import CliRunner

from codec import family
from codec.cli import main
from codec.detailmodel import every_pair, load_detail, pair_table
from codec.errors import OutputExistsError
from codec.generator import fingerprint, load_generator
from codec.rdmodel import load_rd
from codec.ship import ShipOptions, add_levels, densify, pick_pairs, repick, ship
from codec.train import TrainConfig, train


def _faces(side: int) -> torch.Tensor:
    return torch.rand(12, 3, side, side, generator=torch.Generator().manual_seed(5)) * 2 - 1


def _run(tmp_path, name: str, objective: str, **kw):
    cfg = dict(dataset="celeba", out=str(tmp_path / name), dry_run=True, objective=objective, ngf=4, ndf=4, nz=8)
    cfg.update(size=16, batch_size=8, device="cpu", progress=False, sample_every=2, checkpoint_every=2)
    cfg.update(valid_images=8, steps=2, **({} if objective == "gan" else {"valid_every": 2}))
    return train(TrainConfig(**{**cfg, **kw}))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A GAN-only, a rate-distortion and a detail run (from the RD run's model), tiny."""
    tmp = tmp_path_factory.mktemp("runs")
    _run(tmp, "gan", "gan")
    rd = _run(tmp, "rd", "rd")
    _run(tmp, "detail", "detail", init_from=str(rd.model_path))
    return tmp


def _options(tmp_path, **kw) -> ShipOptions:
    (tmp_path / "models").mkdir(exist_ok=True)
    return ShipOptions(into=tmp_path / "models", faces=_faces, faces_words="12 noise images", **kw)


def _card_rows(path) -> dict[str, str]:
    rows = [r.split(" | ", 1) for r in path.with_suffix(".md").read_text().splitlines() if r.startswith("| ")]
    return {k[2:]: v[:-2] for k, v in rows if v.endswith(" |")}


def test_a_gan_run_ships_with_its_grid_and_a_card_naming_its_fingerprint(runs, tmp_path) -> None:
    out = ship(runs / "gan", "tiny-gan", _options(tmp_path, note="A note."))
    g, card = load_generator(out)
    assert family.of_file(out).name == "gan" and out.with_suffix(".png").is_file()
    assert f"fingerprint {fingerprint(g).hex()}" in _card_rows(out)["weights"]
    assert "A note." in out.with_suffix(".md").read_text() and card["images_seen"]
    w = next(g.parameters())
    assert torch.equal(w, w.half().float())  # stored in half precision


def test_an_rd_run_ships_with_levels_spaced_to_the_sizes_asked(runs, tmp_path) -> None:
    m0, _ = load_rd(runs / "rd" / "model.safetensors")
    x = _faces(16)
    sizes = [m0.ideal_bytes(m0.prior.rounded(m0.encoder(x), s), s).mean().item() for s in (m0.step_sizes[0], 0.05)]
    targets = (round(min(sizes) + 2), round(max(sizes) - 2))
    out = ship(runs / "rd", "tiny-rd", _options(tmp_path, level_bytes=targets))
    m, _ = load_rd(out)
    assert m.level_count == 2 and family.level_count(out) == 2
    got = [m.ideal_bytes(m.prior.rounded(m.encoder(x), s), s).mean().item() for s in m.step_sizes]
    assert got == pytest.approx(list(targets), rel=0.1)  # steps rounded to three figures
    rows = _card_rows(out)
    assert f"fingerprint {m.fingerprint().hex()}" in rows["weights"]
    assert rows["quality levels"].startswith(
        f"1: step {m.step_sizes[0]:g}, 2: step {m.step_sizes[1]:g} (spaced to mean"
    )
    assert "--resume" in rows["continue training"] and out.with_name("tiny-rd_curve.png").is_file()


def test_levels_added_to_a_shipped_rd_model_keep_its_old_files_and_update_its_card(runs, tmp_path) -> None:
    opts = _options(tmp_path)
    out = ship(runs / "rd", "tiny-rd", opts)
    before, _ = load_rd(out)
    add_levels(out, (20,), opts)
    after, _ = load_rd(out)
    assert after.level_count == before.level_count + 1 and after.fingerprints()[1:] == [before.fingerprint()]
    rows = _card_rows(out)
    assert f"fingerprint {after.fingerprint().hex()} (earlier: {before.fingerprint().hex()})" in rows["weights"]
    assert f"added after shipping: {after.level_count}: step" in rows["quality levels"]


def test_densify_doubles_the_detail_levels_keeping_the_trained_gains(runs) -> None:
    m, _ = load_detail(runs / "detail" / "model.safetensors")
    d = densify(m)
    g, dg = m.detail.log_gain, d.detail.log_gain
    assert len(dg) == 2 * len(g) and torch.equal(dg[::2], g)
    assert torch.allclose(dg[1], (g[0] + g[1]) / 2) and len(d.lambdas) == len(dg)
    assert len(d.pairs) == m.base.level_count * len(dg)


def test_pick_pairs_takes_the_best_psnr_within_each_size_once_in_byte_order() -> None:
    table = {(1, 1): (100.0, 20.0), (1, 2): (150.0, 22.0), (2, 1): (140.0, 23.0), (2, 2): (300.0, 30.0)}
    assert pick_pairs(table, (90, 120, 160, 170, 400)) == [((1, 1), 100.0, 20.0), ((2, 1), 140.0, 23.0),
                                                           ((2, 2), 300.0, 30.0)]  # fmt: skip


@pytest.mark.slow  # two tiny detail runs shipped: 2.6 s
def test_a_detail_run_ships_its_picked_levels_doubled_once(runs, tmp_path) -> None:
    m, _ = load_detail(runs / "detail" / "model.safetensors")
    table = pair_table(densify(m), _faces(16))
    sizes = sorted(b for b, _ in table.values())
    targets = (sizes[0] + 0.5, sizes[len(sizes) // 2] + 0.5, sizes[-1] + 0.5)
    out = ship(runs / "detail", "tiny-detail", _options(tmp_path, level_bytes=targets))
    shipped, _ = load_detail(out)
    assert shipped.detail.config.levels == 2 * m.detail.config.levels  # doubled
    measured = list(pair_table(shipped, _faces(16)).values())
    assert 1 <= len(measured) == shipped.level_count == family.level_count(out) <= len(targets)
    assert all(b <= 1.02 * targets[-1] for b, _ in measured)  # (half-precision weights move sizes a little)
    best = max(q for b, q in table.values() if b <= targets[-1])
    assert measured[-1][1] == pytest.approx(best, abs=0.1)  # the top level: the best within the top size
    assert [b for b, _ in measured] == sorted(b for b, _ in measured)  # levels in byte order
    rows = _card_rows(out)
    assert f"fingerprint {shipped.fingerprint().hex()}" in rows["weights"]
    assert len(re.findall(r"\d+: global step", rows["quality levels"])) == shipped.level_count
    assert f"the RD model {runs / 'rd' / 'model.safetensors'}" in rows["architecture"]

    tune = _run(tmp_path, "tune", "detail", init_from=str(out))  # a fine-tune of the shipped model
    again = ship(tmp_path / "tune", "tiny-detail2", _options(tmp_path, level_bytes=targets))
    assert load_detail(again)[0].detail.config.levels == shipped.detail.config.levels  # not doubled again
    assert f"the RD model {runs / 'rd' / 'model.safetensors'}" in _card_rows(again)["architecture"]
    assert tune.model_path.is_file()


@pytest.mark.slow  # a tiny detail run and two ships: 2 s
def test_a_detail_model_shipped_beside_its_base_names_it_instead_of_holding_it(runs, tmp_path) -> None:
    from codec.generator import read_metadata, read_model_file

    opts = _options(tmp_path)
    base = ship(runs / "rd", "tiny-rd", opts)
    _run(tmp_path, "on-shipped", "detail", init_from=str(base))
    out = ship(tmp_path / "on-shipped", "tiny-detail", opts)
    assert read_metadata(out)["base_model"] == '"tiny-rd"'
    assert all(k.startswith(("detail.", "scales.")) for k in read_model_file(out)[1])  # no base networks, no tables
    m, _ = load_detail(out)
    assert m.base.config == load_rd(base)[0].config
    assert f"fingerprint {m.fingerprint().hex()}" in _card_rows(out)["weights"]


def test_repick_picks_a_detail_models_levels_again_among_all_its_pairs(runs, tmp_path) -> None:
    out = ship(runs / "detail", "tiny-detail", _options(tmp_path))
    every, _ = load_detail(out)
    every.pairs = every_pair(every.base.level_count, every.detail.config.levels)
    table = pair_table(every, _faces(16))
    sizes = sorted(b for b, _ in table.values())
    targets = (sizes[0] + 0.5, sizes[len(sizes) // 2] + 0.5, sizes[-1] + 0.5)
    with pytest.raises(OutputExistsError, match="--force"):
        repick(out, "tiny-detail", _options(tmp_path, level_bytes=targets))
    repick(out, "tiny-detail", _options(tmp_path, level_bytes=targets, force=True))
    again, _ = load_detail(out)
    want = [(every.base.step_of(g), k) for (g, k), _, _ in pick_pairs(table, targets)]
    assert [(again.base.step_of(g), k) for g, k in again.pairs] == want
    rows = _card_rows(out)
    assert f"fingerprint {again.fingerprint().hex()}" in rows["weights"]
    assert len(re.findall(r"\d+: global step", rows["quality levels"])) == len(want)


def test_shipping_refuses_what_it_cannot_ship_without_writing(runs, tmp_path) -> None:
    opts = _options(tmp_path)
    ship(runs / "gan", "tiny", opts)
    with pytest.raises(OutputExistsError, match="--force"):
        ship(runs / "rd", "tiny", opts)
    with pytest.raises(FileNotFoundError, match="not a training run folder"):
        ship(tmp_path, "other", opts)
    with pytest.raises(ValueError, match="model name"):
        ship(runs / "rd", "../escape", opts)
    with pytest.raises(ValueError, match="needs faces"):
        ship(runs / "detail", "other", ShipOptions(into=tmp_path / "models"))
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny.md", "tiny.png", "tiny.safetensors"]


def test_the_ship_command_ships_a_run_and_explains_bad_sizes(runs, tmp_path) -> None:
    (tmp_path / "m").mkdir()
    r = CliRunner().invoke(main, ["ship", "run", str(runs / "gan"), "tiny", "--into", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "shipped" in r.output and (tmp_path / "m" / "tiny.md").is_file()
    r = CliRunner().invoke(main, ["ship", "run", str(runs / "gan"), "tiny", "--into", str(tmp_path / "m")])
    assert r.exit_code == 1 and "--force" in r.output
    r = CliRunner().invoke(main, ["ship", "add-levels", "x", "--level-bytes", "50,abc"])
    assert r.exit_code == 2 and "separated by commas" in r.output
    r = CliRunner().invoke(main, ["ship", "run", str(runs / "detail"), "d", "--into", str(tmp_path / "m")])
    assert r.exit_code == 2 and "--data-root" in r.output
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["tiny.md", "tiny.png", "tiny.safetensors"]


def test_a_run_started_from_unshipped_runs_names_the_shipped_model_they_started_from(runs, tmp_path) -> None:
    """celeba128 came from celeba64 through two runs that were never shipped: its card (and the
    manifest's lineage) names celeba64, counts the images and seconds of the runs between,
    and lists them."""
    from codec.generator import shipped_models
    from codec.rdmodel import save_rd
    from codec.ship import through_unshipped

    m, _ = load_rd(runs / "rd" / "model.safetensors")
    shipped = str(shipped_models()["celeba64"])
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_rd(m, a, {"images_seen": "100", "steps": "10", "init_from": shipped, "init_images_seen": "1000",
                   "init_wall_seconds": "50"})  # fmt: skip
    save_rd(m, b, {"images_seen": "200", "steps": "20", "init_from": str(a), "init_images_seen": "100",
                   "init_wall_seconds": "5"})  # fmt: skip
    card = through_unshipped({"init_from": str(b), "init_images_seen": "200", "init_wall_seconds": "7.5"})
    assert card["init_from"] == shipped and card["init_images_seen"] == "1300" and card["init_wall_seconds"] == "62"
    assert (
        card["init_via"].index(str(a)) < card["init_via"].index(str(b)) and "(200 images, 20 steps)" in card["init_via"]
    )
    assert through_unshipped({"init_from": shipped, "init_images_seen": "5"}) == {"init_from": shipped,
                                                                               "init_images_seen": "5"}  # fmt: skip
    gone = {"init_from": str(tmp_path / "gone.safetensors"), "init_images_seen": "5"}
    assert through_unshipped(gone) == gone
