"""The rate-distortion model: prior, coding tables, model file, encode/decode, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from codec import container
from codec.augment import diff_augment
from codec.container import CodedContainer, ContainerError
from codec.entropy import PRECISION, CodingError, _integer_pmf, build_tables
from codec.errors import ModelError
from codec.family import level_count
from codec.generator import read_model_file
from codec.inversion import refine
from codec.losses import make_mix, parse_mix
from codec.pipeline import EncodeOptions, decode_tensor, encode_batch
from codec.prior import FactorizedPrior
from codec.rdmodel import RDModel, load_rd, save_rd, steps_for_bytes, warm_start
from codec.train import TrainConfig, train
from tests.conftest import seed_rounding_depends_on_batch, tiny_config


@pytest.fixture
def tiny_rd_file(tmp_path):
    torch.manual_seed(0)
    m = RDModel(tiny_config(nz=8)).eval()
    with torch.no_grad():  # a narrower prior than the initial one: tables of a few symbols
        m.prior.matrices[0].add_(2.0)
    path = tmp_path / "rd.safetensors"
    save_rd(m, path, {"dataset": "none"})
    return path


def test_prior_bins_are_probabilities_summing_to_one() -> None:
    torch.manual_seed(0)
    p = FactorizedPrior(3)
    k = torch.arange(-2000, 2000, dtype=torch.float32)[:, None].expand(-1, 3)
    for step in (0.5, 1.0, 2.0):
        mass = p.likelihood(p.dequantize(k.long(), step), step).sum(0)
        assert torch.allclose(mass, torch.ones(3), atol=1e-3)


def test_integer_pmf_keeps_every_symbol_and_sums_exactly() -> None:
    c = _integer_pmf(np.array([0.5, 1e-12, 0.3, 0.2]))
    assert c.sum() == 1 << PRECISION and c.min() >= 1 and c[0] > c[2] > c[3]


def test_tables_code_and_decode_exactly_and_refuse_corrupt_payloads() -> None:
    torch.manual_seed(1)
    t = build_tables(FactorizedPrior(12), 1.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = t.offsets + rng.integers(0, t.lengths)
        payload = t.encode(s)
        assert (t.decode(payload) == s).all()
        ideal = t.bits(torch.from_numpy(s)[None]).item()
        assert ideal - 32 <= len(payload) * 8 <= ideal + 64  # ANS: about one 32-bit state word of overhead
    for bad in (payload[:-4], payload + payload[:4], b"\0\0\0\0", payload[:3]):
        with pytest.raises(CodingError):
            t.decode(bad)
    with pytest.raises(ValueError, match="clamp"):
        t.encode(t.offsets - 1)
    assert (t.clamp(torch.from_numpy(t.offsets - 5)).numpy() == t.offsets).all()


def test_model_file_round_trip_and_fingerprint(tiny_rd_file) -> None:
    m, card = load_rd(tiny_rd_file)
    m2, _ = load_rd(tiny_rd_file)
    assert card["dataset"] == "none" and m.fingerprint() == m2.fingerprint()
    t = m.tables[4]
    m2.tables[4] = type(t)(t.step, t.offsets, t.lengths, np.roll(t.counts, 1, axis=1))
    assert m.fingerprint() != m2.fingerprint()  # the tables are part of what decoding needs


def test_tables_are_stored_packed_and_older_padded_files_still_load(tiny_rd_file, tmp_path) -> None:
    from codec.generator import write_model_file

    m, _ = load_rd(tiny_rd_file)
    meta, state = read_model_file(tiny_rd_file)
    assert state["tables.4.packed"].dtype == torch.int16 and "tables.4.counts" not in state
    assert int(state["tables.4.packed"].numel()) == int(m.tables[4].lengths.sum())  # no padding
    for lv, t in m.tables.items():  # rewrite as files were before packing: padded int32 counts
        del state[f"tables.{lv}.packed"]
        state[f"tables.{lv}.counts"] = torch.from_numpy(t.counts)
    write_model_file(tmp_path / "old.safetensors", state, meta)
    old, _ = load_rd(tmp_path / "old.safetensors")
    assert old.fingerprint() == m.fingerprint()
    for lv, t in m.tables.items():
        assert (old.tables[lv].counts == t.counts).all() and (old.tables[lv].offsets == t.offsets).all()
    state = read_model_file(tiny_rd_file)[1]
    state["tables.2.packed"] = state["tables.2.packed"][:-1]
    write_model_file(tmp_path / "bad.safetensors", state, meta)
    with pytest.raises(ModelError, match="coding tables of level 2 are damaged"):
        load_rd(tmp_path / "bad.safetensors")


def test_encode_decode_through_the_v2_container(tiny_rd_file, tmp_path) -> None:
    rng = np.random.default_rng(0)
    img = torch.from_numpy(rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)).permute(1, 2, 0).numpy()
    from PIL import Image

    src = tmp_path / "x.png"
    Image.fromarray(img).save(src)
    for steps, quality in ((0, 4), (3, 4), (0, 1), (2, 8)):
        (r,) = encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=steps, quality=quality, loss="mse"))
        c = container.from_bytes(r.data)
        assert isinstance(c, CodedContainer) and c.level == quality and len(r.data) == c.total_bytes
        assert torch.equal(decode_tensor(r.data, tiny_rd_file), r.decoded)  # decode reproduces what encode reports
    flipped = bytearray(r.data)
    flipped[9] ^= 0x40
    with pytest.raises(ContainerError):
        decode_tensor(bytes(flipped), tiny_rd_file)
    with pytest.raises(ValueError, match="quality 9 is out of range"):
        encode_batch([src], EncodeOptions(model=tiny_rd_file, quality=9))
    with pytest.raises(ValueError, match="--bits"):
        encode_batch([src], EncodeOptions(model=tiny_rd_file, bits=7))


def test_v2_file_with_a_gan_model_is_refused(tiny_rd_file, tiny_model_file, tmp_path) -> None:
    m, _ = load_rd(tiny_rd_file)
    data = container.to_bytes(CodedContainer(m.fingerprint()[:4], 4, m.tables[4].encode(m.tables[4].offsets)))
    with pytest.raises(ContainerError):
        decode_tensor(data, tiny_model_file)
    assert decode_tensor(data, tiny_rd_file).shape == (3, 16, 16)


def test_distortion_mix_parses_and_weighs() -> None:
    assert parse_mix("ms-ssim=1,mse=0.1") == {"ms-ssim": 1.0, "mse": 0.1}
    assert parse_mix("mse") == {"mse": 1.0}
    bad_specs = (
        ("nope", "unknown loss"), ("mse=x", "not a number"), ("mse,mse", "twice"), ("mse=0", "positive"),
        ("mse=inf", "finite"), ("mse=1e400", "finite"), ("mse=nan", "finite"), ("ms-ssim=", "no weight"),
    )  # fmt: skip
    for bad, msg in bad_specs:
        with pytest.raises(ValueError, match=msg):
            parse_mix(bad)
    x, y = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    mixed = make_mix("mse=2,l1=0.5")(x, y)
    assert torch.allclose(mixed, 2 * (x - y).square().flatten(1).mean(1) + 0.5 * (x - y).abs().flatten(1).mean(1))


def test_diff_augment_is_seeded_and_differentiable() -> None:
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    a = diff_augment(x, torch.Generator().manual_seed(0))
    b = diff_augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    a.sum().backward()
    assert x.grad is not None and (x.grad == 0).any() and (x.grad == 1).any()  # cut out / kept pixels


def _rd_cfg(out, **kw) -> TrainConfig:
    base = dict(dataset="celeba", out=str(out), dry_run=True, objective="rd", ngf=4, nz=8, size=16, batch_size=8)
    base.update(device="cpu", progress=False, sample_every=2, checkpoint_every=2, valid_every=2, valid_images=8)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("adv", [0.0, 0.1])
def test_rd_training_resumes_exactly(tmp_path, adv) -> None:
    straight = train(_rd_cfg(tmp_path / "a", steps=4, adv_weight=adv))
    train(_rd_cfg(tmp_path / "b", steps=2, adv_weight=adv))
    resumed = train(_rd_cfg(tmp_path / "b", steps=4, adv_weight=adv, resume=True))
    pairs = zip(
        straight.objective.model.state_dict().values(), resumed.objective.model.state_dict().values(), strict=True
    )
    for a, b in pairs:
        assert torch.equal(a, b)
    assert (tmp_path / "b" / "model.safetensors").is_file() and any((tmp_path / "b" / "samples").iterdir())
    log = (tmp_path / "b" / "train.log.jsonl").read_text()
    assert "val_psnr" in log
    with pytest.raises(ValueError, match="adversarial"):
        train(_rd_cfg(tmp_path / "b", steps=6, adv_weight=0.2 if adv == 0 else 0.0, resume=True))


def test_warm_start_grows_the_latent_and_decodes_as_before(tiny_rd_file, tmp_path) -> None:
    src, _ = load_rd(tiny_rd_file)
    grown = RDModel(tiny_config(nz=12)).eval()
    warm_start(grown, src)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        y = grown.encoder(x)
        assert torch.equal(y[:, :8], src.encoder(x)) and y[:, 8:].std(0).min() > 0  # new dimensions vary
        assert torch.allclose(grown.generator(y), src.generator(y[:, :8]), atol=1e-6)  # ... and are unused yet
        assert torch.allclose(grown.prior.likelihood(y)[:, :8], src.prior.likelihood(y[:, :8]))
    with pytest.raises(ValueError, match="only the latent, or the image side, may grow"):
        warm_start(RDModel(tiny_config(nz=4)), src)
    cfg = _rd_cfg(tmp_path / "w", steps=2, nz=12, init_from=str(tiny_rd_file))
    assert train(cfg).steps == 2
    resumed = train(_rd_cfg(tmp_path / "w", steps=4, nz=12, init_from=str(tiny_rd_file), resume=True))
    _, card = load_rd(resumed.model_path)
    assert card["init_from"] == str(tiny_rd_file) and card["steps"] == "4"  # the card names the warm start
    with pytest.raises(ValueError, match="--init-from applies to --objective rd or detail, not gan"):
        train(TrainConfig(objective="gan", init_from=str(tiny_rd_file), out=str(tmp_path / "g"), dry_run=True))


def test_levels_spaced_by_bytes_code_to_about_those_bytes(tiny_rd_file) -> None:
    m, _ = load_rd(tiny_rd_file)
    x = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    steps = steps_for_bytes(m, x, [15.0, 16.0, 18.0])
    assert steps[0] > steps[1] > steps[2]  # more bytes, finer steps
    m.step_sizes = steps
    m.build_tables()
    with torch.no_grad():
        y = m.encoder(x)
    for lv, target in enumerate([15.0, 16.0, 18.0], start=1):
        t = m.tables[lv]
        coded = np.mean([len(t.encode(s.numpy())) for s in t.clamp(m.prior.quantize(y, t.step))])
        assert target - 1 <= container.OVERHEAD_V2 + coded <= target + 4  # ANS: up to a 32-bit state over ideal


def test_max_bytes_picks_the_highest_level_that_fits(tiny_rd_file, tmp_path) -> None:
    from PIL import Image

    src = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src)
    sizes = {
        q: len(encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=0, quality=q))[0].data) for q in range(1, 9)
    }
    budget = sorted(set(sizes.values()))[len(set(sizes.values())) // 2]
    (r,) = encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=2, max_bytes=budget, loss="mse"))
    assert r.num_bytes <= budget and r.quality == max(q for q, n in sizes.items() if n <= budget)
    with pytest.raises(ValueError, match="over --max-bytes"):
        encode_batch([src], EncodeOptions(model=tiny_rd_file, max_bytes=min(sizes.values()) - 1))


def test_default_files_never_exceed_the_default_cap(tiny_rd_file, tmp_path, monkeypatch) -> None:
    from PIL import Image

    from codec.backends import rd as pipeline  # the backend that applies the default cap

    src = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src)
    top = level_count(tiny_rd_file)
    one = lambda q: encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=0, quality=q))[0]  # noqa: E731
    sizes = {q: one(q).num_bytes for q in range(1, top + 1)}
    assert sizes[2] < sizes[4] < sizes[top] <= pipeline.DEFAULT_MAX_BYTES
    (r,) = encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=2, loss="mse"))
    assert r.quality == top  # every level fits the real cap: the highest
    monkeypatch.setattr(pipeline, "DEFAULT_MAX_BYTES", sizes[4])
    (r,) = encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=2, loss="mse"))
    assert r.num_bytes <= sizes[4] and r.quality == max(q for q, n in sizes.items() if n <= sizes[4])  # as --max-bytes
    (capped,) = encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=2, loss="mse", max_bytes=sizes[4]))
    assert capped.data == r.data
    (r,) = encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=2, loss="mse", quality=4))
    assert r.quality == 4  # asked for explicitly: no cap
    monkeypatch.setattr(pipeline, "DEFAULT_MAX_BYTES", 11)  # no level fits: a model for more bytes
    (r,) = encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=2, loss="mse"))
    (asked,) = encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=2, loss="mse", quality=4))
    assert r.quality == 4 and r.data == asked.data  # keeps its default level, refined, instead of failing
    with pytest.raises(ValueError, match="over --max-bytes 11"):
        encode_batch([src], EncodeOptions(model=tiny_rd_file, steps=2, loss="mse", max_bytes=11))


@pytest.mark.slow  # 5 s
def test_bench_rows_of_a_rate_distortion_model(tiny_rd_file, tiny_model_file, tmp_path) -> None:
    from codec.bench import BenchConfig, run, summarize

    cfg = BenchConfig(dataset="samples", model=str(tiny_rd_file), losses=("mse", "l1"), steps=1,
                      out=str(tmp_path / "b"), reference=str(tiny_model_file), max_bytes=(16,))  # fmt: skip
    rows = {r["codec"]: r for r in summarize(run(cfg, progress=False))}
    capped = rows["percodec mse max 16 B"]  # a --max-bytes row, the first loss only, in the main table
    assert capped["bytes"] <= 16 and not capped["sweep"] and "percodec l1 max 16 B" not in rows
    assert rows["percodec-gan ssim"]["bytes"] == 19 and len([r for r in rows if "-gan" in r]) == 1  # 8 x 7 bits + 12
    default = rows["percodec mse default"]  # encode's defaults, every loss: the highest quality under 112 B
    assert not default["sweep"] and not rows["percodec l1 default"]["sweep"] and "percodec l1 q=4" not in rows
    assert rows["percodec mse q=4"]["sweep"] and rows["percodec mse q=8"]["sweep"]  # every quality, for the plot
    assert rows["percodec mse q=1"]["bytes"] <= rows["percodec mse q=8"]["bytes"] <= default["bytes"] <= 112
    assert rows["webp @ percodec bytes"]["n"] == default["n"]


@pytest.mark.slow  # 5 s
def test_a_smaller_model_is_benched_upscaled_to_the_benchs_side(tiny_rd_file, tmp_path) -> None:
    from codec.bench import BenchConfig, run, summarize
    from codec.bench.runs import reconstruct

    torch.manual_seed(1)
    big = RDModel(tiny_config(nz=8, size=32)).eval()
    with torch.no_grad():
        big.prior.matrices[0].add_(2.0)
    save_rd(big, tmp_path / "big.safetensors", {"dataset": "none"})
    cfg = BenchConfig(dataset="samples", model=str(tmp_path / "big.safetensors"), losses=("mse",), steps=1,
                      out=str(tmp_path / "b"), reference=None, upscaled=(str(tiny_rd_file),), max_bytes=(16,),
                      sweep=False)  # fmt: skip
    records = run(cfg, progress=False)
    rows = {r["codec"]: r for r in summarize(records)}
    up, capped = rows["percodec-rd-upscaled mse default"], rows["percodec-rd-upscaled mse max 16 B"]
    assert up["n"] == rows["percodec mse default"]["n"] and capped["bytes"] <= 16
    rec = next(r for r in records if r["codec"] == up["codec"])
    assert rec["upscaled_from"] == 16  # coded at its own side ...
    original = np.zeros((32, 32, 3), np.uint8)
    assert reconstruct(rec, original, cfg.model).shape == (32, 32, 3)  # ... and scored at the bench's
    with pytest.raises(ValueError, match="not a rate-distortion"):
        run(BenchConfig(dataset="samples", model=str(tiny_rd_file), upscaled=("celeba64-gan",), out=str(tmp_path)))


def test_cli_trains_encodes_shows_and_decodes_with_an_rd_model(tmp_path) -> None:
    from click.testing import CliRunner
    from PIL import Image

    from codec.cli import main

    run = CliRunner()
    args = ["train-generator", "--objective", "rd", "--dry-run", "--out", str(tmp_path / "run"), "--width", "4"]
    args += ["--nz", "8", "--size", "16", "--batch-size", "8", "--distortion", "mse=1,l1=0.5"]
    r = run.invoke(main, args)
    assert r.exit_code == 0, r.output
    model = tmp_path / "run" / "model.safetensors"
    Image.fromarray(np.full((16, 16, 3), 120, dtype=np.uint8)).save(tmp_path / "x.png")
    r = run.invoke(main, ["encode", str(tmp_path / "x.png"), str(tmp_path / "x.pgz"), "--model", str(model)])
    assert r.exit_code == 0 and "quality 8" in r.output, r.output  # a flat image: the top level fits 112 B
    r = run.invoke(main, ["info", str(tmp_path / "x.pgz")])
    assert r.exit_code == 0 and "version 2" in r.output and "quality: level 8 of its model" in r.output
    r = run.invoke(main, ["decode", str(tmp_path / "x.pgz"), str(tmp_path / "y.png"), "--model", str(model)])
    assert r.exit_code == 0 and Image.open(tmp_path / "y.png").size == (16, 16)
    r = run.invoke(
        main, ["encode", str(tmp_path / "x.png"), str(tmp_path / "z.pgz"), "--model", str(model), "--bits", "7"]
    )
    assert r.exit_code != 0 and "--quality" in r.output and not (tmp_path / "z.pgz").exists()
    r = run.invoke(main, ["encode", str(tmp_path / "x.png"), str(tmp_path / "z.pgz"), "--quality", "3",
                          "--model", "celeba64-gan"])  # fmt: skip
    assert r.exit_code != 0 and "--bits" in r.output  # the shipped GAN-only model takes --bits


def test_levels_added_to_a_model_keep_its_old_files_decoding(tiny_rd_file, tmp_path) -> None:
    from PIL import Image

    from codec.pipeline import reusable
    from codec.rdmodel import add_levels

    src = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src)
    model = tmp_path / "m.safetensors"
    model.write_bytes(tiny_rd_file.read_bytes())
    old_fp = load_rd(model)[0].fingerprint()
    (old,) = encode_batch([src], EncodeOptions(model=model, quality=3, steps=2, loss="mse"))
    weights = {k: v for k, v in read_model_file(model)[1].items() if not k.startswith("tables.")}
    grown = add_levels(model, [3.0])
    assert len(grown.step_sizes) == 9 and grown.step_sizes[-1] == 3.0 and grown.fingerprint() != old_fp
    assert grown.fingerprints() == [grown.fingerprint(), old_fp]
    after = read_model_file(model)[1]
    assert all(torch.equal(after[k], v) for k, v in weights.items())  # the weights untouched, bit for bit
    assert torch.equal(decode_tensor(old.data, model), old.decoded)  # an old file decodes exactly as before
    assert reusable(old.data, EncodeOptions(model=model, quality=3)) is None
    (new,) = encode_batch([src], EncodeOptions(model=model, quality=9, steps=0))
    (fine,) = encode_batch([src], EncodeOptions(model=model, quality=8, steps=0))
    assert container.from_bytes(new.data).fingerprint == grown.fingerprint()[:4] and new.num_bytes < fine.num_bytes
    assert torch.equal(decode_tensor(new.data, model), new.decoded)
    add_levels(model, [4.0])  # twice: files of both earlier versions still decode
    assert load_rd(model)[0].released == (8, 9)
    assert torch.equal(decode_tensor(old.data, model), old.decoded)
    assert torch.equal(decode_tensor(new.data, model), new.decoded)


def test_a_real_payload_is_never_smaller_than_its_ideal_code_length(tiny_rd_file) -> None:
    """What lets --max-bytes skip the coder where the ideal size is already over the cap."""
    m, _ = load_rd(tiny_rd_file)
    y = torch.randn(200, m.config.nz, generator=torch.Generator().manual_seed(0)) * 3
    for lv, t in m.tables.items():
        sym = t.clamp(m.prior.quantize(y, t.step))
        ideal = t.bits(sym).numpy() / 8
        real = np.array([len(t.encode(s.numpy())) for s in sym])
        assert (real >= ideal).all(), lv


def _lively(m: RDModel) -> RDModel:
    """The untrained tiny model decodes every latent near the prior's centre (0) to exactly 0
    (ReLU at 0), where a search has no gradient; a random centre and BN shifts wake it up."""
    with torch.no_grad():
        m.prior.centre.copy_(torch.randn(m.config.nz, generator=torch.Generator().manual_seed(3)))
        for bn in (mod for mod in m.generator.modules() if isinstance(mod, torch.nn.BatchNorm2d)):
            bn.bias.fill_(0.1)
    return m


@pytest.mark.parametrize("jitter", [False, True], ids=["this-cpu", "batch-dependent-rounding"])
def test_one_search_over_several_levels_equals_a_search_per_level(tiny_rd_file, monkeypatch, jitter) -> None:
    """Encode searches every image of one model in one batch, whatever their levels: rows
    are independent, so each gets what a search at its own level alone gives."""
    if jitter:
        seed_rounding_depends_on_batch(monkeypatch)
    m = _lively(load_rd(tiny_rd_file)[0])
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    levels = [1, 3, 1, 8, 3, 5]
    loss = make_mix("mse")
    together = refine(m, x, loss, levels, steps=5)
    for i, lv in enumerate(levels):
        alone = refine(m, x[i : i + 1], loss, lv, steps=5)
        assert torch.equal(together[i], alone[0]), i
        t = m.tables[lv]
        assert torch.equal(t.clamp(together[i]), together[i])  # inside its own level's tables
    assert (together != refine(m, x, loss, levels, steps=0)).any()  # the search moved


def test_under_a_byte_budget_the_refinement_may_grow_a_file_up_to_it(tiny_rd_file) -> None:
    m = _lively(load_rd(tiny_rd_file)[0])
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    loss, step = make_mix("mse"), m.step_of(8)
    start = m.tables[8].clamp(m.prior.quantize(m.encoder(x).detach(), step))

    def ideal_bits(sym: torch.Tensor) -> torch.Tensor:
        return m.prior.bits(m.prior.dequantize(sym, step), step).detach()

    kept = refine(m, x, loss, 8, steps=30)
    assert (ideal_bits(kept) <= ideal_bits(start) + 1e-3).all()  # no budget: never above the start
    room = ideal_bits(start) + 40
    grown = refine(m, x, loss, 8, steps=30, budget_bits=room)
    assert (ideal_bits(grown) <= room + 1e-3).all() and (ideal_bits(grown) > ideal_bits(start) + 1e-3).any()
    assert (loss(m.decode_symbols(grown, [8] * 8), x) <= loss(m.decode_symbols(kept, [8] * 8), x) + 1e-6).all()


def test_a_cap_on_a_model_with_coarser_added_levels_takes_the_finest_level_that_fits(tiny_rd_file, tmp_path) -> None:
    """A single model's levels are numbered as they were added: a cap must not pick an added,
    coarser level because its number is higher (celeba64 --max-bytes 112 coded level 11, 61 B)."""
    from PIL import Image

    from codec.rdmodel import add_levels

    src = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src)
    model = tmp_path / "m.safetensors"
    model.write_bytes(tiny_rd_file.read_bytes())
    add_levels(model, [4.0])  # level 9: coarser than all eight
    sizes = {q: encode_batch([src], EncodeOptions(model=model, quality=q, steps=0))[0].num_bytes for q in range(1, 10)}
    cap = max(sizes.values())
    (r,) = encode_batch([src], EncodeOptions(model=model, max_bytes=cap, steps=0))
    assert r.level != 9 and r.num_bytes == max(b for q, b in sizes.items() if b <= cap)


def test_a_larger_side_warm_starts_from_a_smaller_model_keeping_what_it_computed(tmp_path) -> None:
    """--init-from a model for half the side: the generator's stages up to the source's last
    hidden side and the encoder's from a quarter of it down take the source's weights in
    their first channels, the new channels feeding none of those; so those channels compute
    what the source's did. The run trains and exports a model for the larger side."""
    torch.manual_seed(0)
    small = RDModel(tiny_config(nz=8)).eval()
    for m in small.modules():  # trained-looking BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    big = RDModel(tiny_config(nz=8, size=32)).eval()
    warm_start(big, small)
    z = torch.randn(5, 8)
    for side in (4, 8):
        theirs = small.generator.features(z, side)
        assert torch.allclose(big.generator.features(z, side)[:, : theirs.shape[1]], theirs, atol=1e-6)
    last, last_small = big.encoder.main[-1].weight, small.encoder.main[-1].weight
    assert torch.equal(last[:, : last_small.shape[1]], last_small) and not last[:, last_small.shape[1] :].any()
    assert torch.equal(big.prior.matrices[0], small.prior.matrices[0])
    with pytest.raises(ValueError, match="only the latent, or the image side, may grow"):
        warm_start(RDModel(tiny_config(nz=16, size=32)), small)
    save_rd(small, tmp_path / "small.safetensors", {"dataset": "none", "beta": "0.5"})
    res = train(_rd_cfg(tmp_path / "run", size=32, steps=2, init_from=str(tmp_path / "small.safetensors")))
    assert load_rd(res.model_path)[0].config.size == 32
