"""The detail latent: its tables, exact coding, model file, search, ladder rungs and training."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from codec import container, family
from codec.container import CodedContainer
from codec.detail import (
    SCALES,
    DetailConfig,
    DetailNet,
    MatmulTransposed,
    build_scale_tables,
    features,
    float64_generator,
    render,
    scale_index,
)
from codec.detailmodel import DetailModel, load_detail, save_detail
from codec.entropy import PRECISION, CodingError, finish, new_coder, open_payload
from codec.errors import ModelError
from codec.generator import read_model_file, write_model_file
from codec.losses import make_mix
from codec.pipeline import EncodeOptions, decode_tensor, encode_batch
from codec.rdmodel import RDModel, load_rd, save_rd
from codec.train import TrainConfig, train
from tests.conftest import tiny_config

TINY = DetailConfig(channels=4, width=16, levels=3)


def _base(seed: int = 0) -> RDModel:
    torch.manual_seed(seed)
    m = RDModel(tiny_config(nz=8)).eval()
    with torch.no_grad():
        m.prior.matrices[0].add_(2.0)
    return m


def _detail_file(path, seed: int = 0, strength: float = 0.3):
    base = _base(seed)
    torch.manual_seed(seed + 1)
    net = DetailNet(TINY, base.generator)
    with torch.no_grad():  # trained-looking: the detail changes the image
        for last in (net.to16, net.to32, net.to64):
            last.weight.normal_(0, strength)
    save_detail(base, net, path, {"dataset": "none"}, global_levels=(2, 4), lambdas=(0.3, 0.1, 0.03))
    return path


@pytest.fixture
def detail_file(tmp_path):
    return _detail_file(tmp_path / "detail.safetensors")


def _faces(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_scale_tables_are_integer_pmfs_that_widen_with_the_scale() -> None:
    t = build_scale_tables()
    assert len(t.offsets) == SCALES
    assert (t.counts.sum(1) == 1 << PRECISION).all() and (t.counts[np.arange(SCALES), 0] >= 1).all()
    assert (np.diff(t.lengths) >= 0).all() and t.lengths[0] >= 3  # every table holds 0 and its neighbours
    assert (t.offsets == -(t.lengths // 2)).all()  # centred on 0
    assert scale_index(np.array([0.0, 0.11, 64.0, 1e9])).tolist() == [0, 0, SCALES - 1, SCALES - 1]


def test_rows_of_tables_push_and_pop_in_any_order_of_rows() -> None:
    t = build_scale_tables()
    rng = np.random.default_rng(0)
    rows = rng.integers(0, SCALES, (4, 5, 5))
    sym = t.offsets[rows] + rng.integers(0, t.lengths[rows])
    coder = new_coder()
    t.push_rows(coder, sym, rows)
    back = open_payload(finish(coder))
    assert (t.pop_rows(back, rows) == sym).all() and back.is_empty()
    with pytest.raises(ValueError, match="clamp"):
        t.push_rows(new_coder(), t.offsets[rows] - 1, rows)


def test_detail_file_round_trip_fingerprint_and_kind(detail_file, tmp_path) -> None:
    m, card = load_detail(detail_file)
    assert isinstance(m, DetailModel) and card == {"dataset": "none"}
    assert family.of_file(detail_file).name == "detail" and family.level_count(detail_file) == 6
    assert m.pairs == tuple((g, k) for g in (1, 2) for k in (1, 2, 3)) and m.lambdas == (0.3, 0.1, 0.03)
    assert m.base.step_of(1) == _base().step_of(2)  # the base's level 2 is the file's global level 1
    assert load_detail(detail_file)[0].fingerprint() == m.fingerprint()
    other = _detail_file(tmp_path / "other.safetensors", strength=0.31)  # same base, other detail weights
    assert load_detail(other)[0].fingerprint() != m.fingerprint()
    with pytest.raises(ModelError, match="not a percodec rate-distortion model"):
        load_rd(detail_file)
    meta, state = read_model_file(detail_file)
    del state["scales.packed"]
    write_model_file(tmp_path / "broken.safetensors", state, meta)
    with pytest.raises(ModelError, match="detail's coding tables"):
        load_detail(tmp_path / "broken.safetensors")


def test_search_codes_exactly_and_decodes_to_what_it_reports(detail_file) -> None:
    m, _ = load_detail(detail_file)
    x = _faces()
    loss = make_mix("mse", 3)
    for level in (1, 6):
        for steps in (0, 3):
            for code in m.search(x, [level] * len(x), loss, steps):
                payload = m.pack(code, level)
                back = m.unpack(payload, level)
                assert (back.global_ == code.global_).all() and (back.detail == code.detail).all()
                assert torch.equal(m.image(back, level), m.image(code, level))
    for bad in (payload[:-1], payload + b"\x01\x02\x03\x04"):
        with pytest.raises(CodingError):
            m.unpack(bad, level)


@pytest.mark.parametrize(
    ("cin", "cout", "side", "k", "s", "p"), [(8, 5, 4, 4, 2, 1), (3, 6, 5, 3, 1, 1), (4, 2, 1, 4, 1, 0)]
)
def test_matmul_transposed_is_the_transposed_convolution(cin, cout, side, k, s, p) -> None:
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(cin, cout, k, s, p, bias=False).double()
    x = torch.randn(3, cin, side, side, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(MatmulTransposed(layer)(x), layer(x), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="bias-free"):
        MatmulTransposed(torch.nn.ConvTranspose2d(cin, cout, k, s, p))


def test_float64_features_match_the_generator() -> None:
    """The side information's float64 copy of G (its transposed convolutions as matrix
    products) draws G's own features at side/4."""
    from codec.generator import Generator

    torch.manual_seed(0)
    g = Generator(tiny_config(size=64)).eval()
    g64 = float64_generator(g)
    assert sum(isinstance(layer, MatmulTransposed) for layer in g64.main) == 2  # 4->8, 8->16
    z = torch.randn(2, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(features(g64, z), features(g.double(), z), rtol=0, atol=1e-12)


def test_a_decoded_code_carries_the_features_its_image_reuses(detail_file) -> None:
    m, _ = load_detail(detail_file)
    level = len(m.pairs)
    (code,) = m.search(_faces(1), [level], None, 0)
    back = m.unpack(m.pack(code, level), level)
    assert back.features is not None and back.features.dtype == torch.float64
    alone = m.image(dataclasses.replace(back, features=None), level)  # G's layers run again
    assert torch.allclose(m.image(back, level), alone, atol=1e-5)


def test_the_channels_last_image_is_the_networks_own(detail_file) -> None:
    """`image` draws with channels-last copies of the networks (for speed): the same image
    as the model's own layers in their default layout, and a plain contiguous tensor."""
    from codec.detail import render

    m, _ = load_detail(detail_file)
    level = len(m.pairs)
    (code,) = m.search(_faces(1), [level], None, 0)
    fast = m.image(code, level)
    gain = m.detail.gains(torch.tensor([m.pair(level)[1]]))
    y = torch.from_numpy(code.mean + code.detail).float()[None] / gain
    with torch.no_grad():
        own = render(m.base.generator, code.features.float(), m.detail.additions(y))
    assert fast.is_contiguous() and fast.shape == own.shape
    assert torch.allclose(fast, own, atol=1e-5) and not torch.equal(fast, torch.zeros_like(fast))


def test_the_detail_changes_the_image_and_finer_levels_cost_more(detail_file) -> None:
    m, _ = load_detail(detail_file)
    x = _faces(8)
    with torch.no_grad():
        own = render(
            m.base.generator, features(m.base.generator, m.base.prior.rounded(m.base.encoder(x), m.base.step_of(2)))
        )
    sizes = []
    for level in (4, 5, 6):  # global level 2, detail levels 1..3
        codes = m.search(x, [level] * len(x), None, 0)
        sizes.append(np.mean([len(m.pack(c, level)) for c in codes]))
        decoded = torch.cat([m.image(c, level) for c in codes])
        assert (decoded - own).abs().max() > 1e-3
    assert sizes[0] < sizes[1] < sizes[2]


def test_search_keeps_a_budget(detail_file) -> None:
    m, _ = load_detail(detail_file)
    x = _faces(4)
    start = m.search(x, [6] * 4, None, 0)
    start_bytes = np.array([len(m.pack(c, 6)) for c in start])
    greedy = make_mix("mse=1000", 3)  # distortion outweighs rate: unconstrained, the search would spend more
    kept = m.search(x, [6] * 4, greedy, 16, budget_bits=torch.tensor(start_bytes * 8 * 0.6), lr=0.1)
    roomy = m.search(x, [6] * 4, greedy, 16, budget_bits=torch.tensor(start_bytes * 8 * 2.0), lr=0.1)
    kept_bytes = np.array([len(m.pack(c, 6)) for c in kept])
    roomy_bytes = np.array([len(m.pack(c, 6)) for c in roomy])
    slack = 3  # the search bounds the model's ideal bits; the coded file rounds scales and means
    assert (kept_bytes <= start_bytes + slack).all()  # a budget under the start's rate allows the start's
    assert (roomy_bytes <= 2.0 * start_bytes + slack).all()
    assert roomy_bytes.mean() > kept_bytes.mean()
    assert any((c.detail != s.detail).any() for c, s in zip(roomy, start, strict=True))


@pytest.fixture
def ladder_with_detail(tmp_path):
    save_rd(_base(), tmp_path / "base.safetensors", {"dataset": "none"})
    _detail_file(tmp_path / "detail.safetensors")
    rungs = [["base.safetensors", lv] for lv in (1, 2)] + [["detail.safetensors", lv] for lv in (4, 5, 6)]
    path = tmp_path / "faces.ladder.json"
    path.write_text(json.dumps({"default": 1, "rungs": rungs}))
    return path


def test_detail_rungs_code_and_decode_through_the_ladder(ladder_with_detail, tmp_path) -> None:
    src = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(src)
    model = str(ladder_with_detail)
    sizes = []
    for q in range(1, 6):
        (r,) = encode_batch([src], EncodeOptions(model=model, quality=q, steps=2, loss="mse"))
        assert isinstance(container.from_bytes(r.data), CodedContainer)  # no new container version
        assert torch.equal(decode_tensor(r.data, model), r.decoded)
        if q >= 3:  # and the rung's own model file does
            assert torch.equal(decode_tensor(r.data, str(tmp_path / "detail.safetensors")), r.decoded)
        sizes.append(len(r.data))
    assert sizes[2] > sizes[1]  # the detail rungs spend more than the base's
    cap = sizes[3]
    (r,) = encode_batch([src], EncodeOptions(model=model, max_bytes=cap, steps=2, loss="mse"))
    assert len(r.data) <= cap and r.quality >= 3  # the cap picks a detail rung that fits


def test_detail_training_fine_tunes_a_detail_model_from_its_own_weights(tmp_path) -> None:
    """--init-from a detail model: the detail networks start as its own (not fresh), with its
    rate weights and no warm-up, on its global levels; the run exports a detail model."""
    from codec.objectives.detail import WARMUP, DetailObjective

    start_file = _detail_file(tmp_path / "start.safetensors")
    start, _ = load_detail(start_file)
    obj = DetailObjective(tiny_config(nz=8), torch.device("cpu"), lambda n: n, lr=1e-3, distortion="mse",
                          init_from=str(start_file), valid=torch.zeros(8, 3, 16, 16, dtype=torch.uint8))  # fmt: skip
    for name, w in start.detail.state_dict().items():
        assert torch.equal(obj.net.state_dict()[name], w), name
    assert obj.lambdas.tolist() == pytest.approx(list(start.lambdas)) and obj.steps_done == WARMUP
    assert obj.base.step_sizes == start.base.step_sizes
    cfg = dict(dataset="celeba", out=str(tmp_path / "ft"), dry_run=True, objective="detail", ngf=4, nz=8, size=16)
    cfg.update(batch_size=8, device="cpu", progress=False, sample_every=2, checkpoint_every=2, valid_every=2)
    result = train(TrainConfig(**cfg, valid_images=8, init_from=str(start_file), steps=2))
    tuned, card = load_detail(result.model_path)
    assert card["init_from"] == str(start_file) and tuned.lambdas == pytest.approx(start.lambdas)
    assert tuned.detail.config == start.detail.config and tuned.base.step_sizes == start.base.step_sizes
    moved = [n for n, w in tuned.detail.state_dict().items() if not torch.equal(w, start.detail.state_dict()[n])]
    assert moved  # trained from there


def test_detail_lambdas_set_a_fine_tunes_rate_weights(tmp_path) -> None:
    """--detail-lambdas respaces a fine-tune's rate weights over its own levels (the finest
    smaller: larger files), and the exported model carries them."""
    start_file = _detail_file(tmp_path / "start.safetensors")
    start, _ = load_detail(start_file)
    cfg = dict(dataset="celeba", out=str(tmp_path / "ft"), dry_run=True, objective="detail", ngf=4, nz=8, size=16)
    cfg.update(batch_size=8, device="cpu", progress=False, checkpoint_every=2, valid_every=2, valid_images=8)
    result = train(TrainConfig(**cfg, init_from=str(start_file), steps=1, detail_lambdas=(0.5, 0.001)))
    lam = result.objective.lambdas.tolist()
    assert len(lam) == start.detail.config.levels and lam[0] == pytest.approx(0.5) and lam[-1] == pytest.approx(0.001)
    assert load_detail(result.model_path)[0].lambdas == pytest.approx(lam)
    assert lam != pytest.approx(list(start.lambdas))


def test_a_new_context_width_trains_only_the_entropy_network(tmp_path) -> None:
    """--detail-context-width: a fine-tune with a narrower entropy network, trained on the
    rate alone; every other weight is the start's, and the export codes and decodes."""
    start_file = _detail_file(tmp_path / "start.safetensors")
    start, _ = load_detail(start_file)
    cfg = dict(dataset="celeba", out=str(tmp_path / "ft"), dry_run=True, objective="detail", ngf=4, nz=8, size=16)
    cfg.update(batch_size=8, device="cpu", progress=False, checkpoint_every=2, valid_every=2, valid_images=8)
    result = train(TrainConfig(**cfg, init_from=str(start_file), steps=2, detail_context_width=3))
    tuned, _ = load_detail(result.model_path)
    assert tuned.detail.config.context_width == 3 and tuned.detail.context[0].out_channels == 3
    old = start.detail.state_dict()
    for name, w in tuned.detail.state_dict().items():
        assert name.startswith("context.") or torch.equal(w, old[name]), name
    level = len(tuned.pairs)
    (code,) = tuned.search(_faces(1), [level], None, 0)
    back = tuned.unpack(tuned.pack(code, level), level)
    assert np.array_equal(back.detail, code.detail) and np.array_equal(back.rows, code.rows)


def test_the_identity_term_weighs_only_the_coarse_detail_levels(tmp_path) -> None:
    """--detail-identity W K: the identity loss at weight W on level 1, falling linearly to
    none at level K; a fine-tune with it trains, and its term is 0 for an image at level K."""
    from codec.objectives.detail import _identity_weights

    assert torch.allclose(_identity_weights((1.0, 3), 5), torch.tensor([1.0, 0.5, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="detail-identity"):
        _identity_weights((1.0, 1), 5)
    start_file = _detail_file(tmp_path / "start.safetensors")
    cfg = dict(dataset="celeba", out=str(tmp_path / "ft"), dry_run=True, objective="detail", ngf=4, nz=8, size=16)
    cfg.update(batch_size=4, device="cpu", progress=False, checkpoint_every=2, valid_every=2, valid_images=4)
    result = train(TrainConfig(**cfg, init_from=str(start_file), steps=2, detail_identity=(2.0, 2)))
    x = _faces(2)
    term = result.objective._identity_term(x.flip(0), x, torch.tensor([1, 2]))
    assert term[0] > 0 and term[1] == 0
    assert torch.equal(result.objective._identity_term(x, x, torch.tensor([2, 3])), torch.zeros(2))
    with pytest.raises(ValueError, match="detail-identity"):  # a context-only run has no distortion to add it to
        both = dict(cfg, out=str(tmp_path / "both"), detail_identity=(2.0, 2), detail_context_width=3)
        train(TrainConfig(**both, init_from=str(start_file), steps=1))


def test_detail_training_runs_resumes_and_exports_a_coding_model(tmp_path) -> None:
    base = tmp_path / "base.safetensors"
    save_rd(_base(), base, {"dataset": "none"})
    cfg = dict(dataset="celeba", out=str(tmp_path / "d"), dry_run=True, objective="detail", ngf=4, nz=8, size=16)
    cfg.update(batch_size=8, device="cpu", progress=False, sample_every=2, checkpoint_every=2, valid_every=2)
    cfg.update(valid_images=8, init_from=str(base))
    train(TrainConfig(**cfg, steps=2))
    result = train(TrainConfig(**cfg, steps=3, resume=True))
    assert result.steps == 3 and result.objective.steps_done == 3
    m, card = load_detail(result.model_path)
    assert card["objective"] == "detail" and len(m.lambdas) == m.detail.config.levels
    code = m.search(_faces(1), [len(m.pairs)], None, 0)[0]
    assert m.unpack(m.pack(code, len(m.pairs)), len(m.pairs)).detail.shape == (m.detail.config.channels, 4, 4)
    with pytest.raises(ValueError, match="needs --init-from"):
        train(TrainConfig(**{**cfg, "init_from": None, "out": str(tmp_path / "e")}, steps=1))


DETAIL_DDP_WORKER = """
import os, sys, torch
from codec.train import TrainConfig, train
out, start, width = sys.argv[1], sys.argv[2], int(sys.argv[3])
res = train(TrainConfig(dataset="celeba", out=out, dry_run=True, objective="detail", ngf=4, nz=8, size=16,
                        batch_size=8, steps=3, device="cpu", progress=False, sample_every=100, checkpoint_every=100,
                        valid_images=8, init_from=start, lr=1e-2, detail_context_width=width or None))
torch.save(res.objective.net.state_dict(), os.path.join(out, f"rank{os.environ['RANK']}.pt"))
"""


@pytest.mark.slow
@pytest.mark.parametrize("context_width", [3])
def test_two_process_detail_training_ends_with_identical_networks(tmp_path, context_width) -> None:
    """Under torchrun the detail networks' gradients are averaged over the ranks, in the
    context-only fine-tune too (the plain detail run: tests/test_train.py, every objective)."""
    from tests.conftest import run_torchrun

    start = _detail_file(tmp_path / "start.safetensors")
    worker = tmp_path / "worker.py"
    worker.write_text(DETAIL_DDP_WORKER)
    done = run_torchrun([str(worker), str(tmp_path / "run"), str(start), str(context_width)])
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / "run" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    before = load_detail(start)[0].detail.state_dict()
    moved = [k for k in r0 if r0[k].shape == before[k].shape and not torch.equal(r0[k], before[k])]
    assert moved  # the ranks trained
    for k in r0:
        assert torch.allclose(r0[k], r1[k], atol=1e-6), k


def test_the_pair_table_measures_every_pair_and_more_detail_costs_more(tmp_path) -> None:
    from codec.container import OVERHEAD_V2
    from codec.detailmodel import pair_table

    m, _ = load_detail(_detail_file(tmp_path / "d.safetensors"))
    table = pair_table(m, _faces(4))
    assert list(table) == list(m.pairs)
    for g in {g for g, _ in m.pairs}:
        sizes = [table[(g, k)][0] for k in sorted(k for gg, k in m.pairs if gg == g)]
        assert sizes == sorted(sizes) and sizes[0] > OVERHEAD_V2  # a higher detail level (gain) costs bytes


def test_a_detail_model_that_names_its_base_is_the_same_model_in_a_smaller_file(tmp_path) -> None:
    """share_base: the base's networks and tables are read from the RD model file beside it
    (by name, checked by fingerprint), so the file shrinks; fingerprint, codes and decoded
    images stay, and a base with other weights is refused with the file left as it was."""
    from codec.detailmodel import share_base
    from codec.errors import ModelError

    path = _detail_file(tmp_path / "detail.safetensors")
    save_rd(_base(), tmp_path / "base.safetensors", {"dataset": "none"})
    save_rd(_base(seed=5), tmp_path / "other.safetensors", {"dataset": "none"})
    before, data = load_detail(path)[0], path.read_bytes()
    face = Image.fromarray(np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (r,) = encode_batch([face], EncodeOptions(model=str(path), quality=5, steps=2))
    with pytest.raises(ModelError, match="base's weights are not those of other"):
        share_base(path, "other")
    with pytest.raises(ModelError, match="a model name .*, not a path"):
        share_base(path, "../base")
    assert path.read_bytes() == data
    saved = share_base(path, "base")
    after, _ = load_detail(path)
    assert saved > 0 and path.stat().st_size == len(data) - saved
    assert after.fingerprint() == before.fingerprint() and after.base.step_sizes == before.base.step_sizes
    assert torch.equal(decode_tensor(r.data, str(path)), r.decoded)
    (again,) = encode_batch([face], EncodeOptions(model=str(path), quality=5, steps=2))
    assert again.data == r.data


def test_a_detail_model_keeps_loading_after_its_named_base_gains_levels(tmp_path) -> None:
    """Levels added to the base a detail file names (`percodec ship add-levels`) change the
    base's fingerprint; it still answers to the old one, so the detail model loads unchanged."""
    from codec.detailmodel import share_base
    from codec.rdmodel import add_levels

    path = _detail_file(tmp_path / "detail.safetensors")
    save_rd(_base(), tmp_path / "base.safetensors", {"dataset": "none"})
    before = load_detail(path)[0].fingerprint()
    share_base(path, "base")
    add_levels(tmp_path / "base.safetensors", [0.3])
    assert load_detail(path)[0].fingerprint() == before
