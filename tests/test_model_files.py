"""Model files and ladders that lie (issue #37): each refused in one line naming the file and
what is wrong, before any network is built from it; never a traceback, an allocation the
config asks for, or a model of NaNs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from codec.align import read_framing, write_framing
from codec.cli import main
from codec.errors import ModelError
from codec.family import level_count
from codec.generator import read_model_file, resolve_model, write_model_file
from codec.ladder import read_ladder
from codec.zoo import load_model
from tests import fuzz_models
from tests.conftest import SAMPLES


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Path]:
    return fuzz_models.seed_files(tmp_path_factory.mktemp("seeds"))


def _variant(seeds, tmp_path: Path, kind: str, meta: dict | None = None, drop: tuple[str, ...] = (),
             tensors: dict | None = None) -> Path:  # fmt: skip
    m, state = read_model_file(seeds[kind])
    m.update(meta or {})
    for key in drop:
        m.pop(key, None)
    state.update(tensors or {})
    path = tmp_path / f"{kind}-variant.safetensors"
    write_model_file(path, state, m)
    return path


def _refused(path: Path, kind: str, says: str) -> None:
    with pytest.raises(ModelError, match=says) as err:
        fuzz_models.LOADERS[kind](path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


CASES = [
    ("generator", {"config": json.dumps({"nz": 8, "ngf": 4, "ndf": 4, "nc": 3, "size": 16, "colour": 1})}, (),
     "not a valid config"),
    ("generator", {"config": "[8, 4]"}, (), "'config' must be a JSON object"),
    ("generator", {"config": "{"}, (), "'config' is not valid JSON"),
    ("generator", {"config": json.dumps({"nz": 1e8, "ngf": 4, "ndf": 4, "nc": 3, "size": 16})}, (),
     "nz must be an integer"),
    # configs that would allocate 8.6 GB to 1.6 TB if built: refused from the shapes alone
    ("generator", {"config": json.dumps({"nz": 8, "ngf": 4, "ndf": 4, "nc": 3, "size": 4096})}, (),
     "weights do not match its config"),
    ("generator", {"config": json.dumps({"nz": 10**8, "ngf": 4, "ndf": 4, "nc": 3, "size": 16})}, (),
     "wrong shape main.0.weight"),
    ("generator", {"config": json.dumps({"nz": 8, "ngf": 10**6, "ndf": 4, "nc": 3, "size": 16})}, (),
     "weights do not match"),
    ("rd", {}, ("config",), "has no 'config'"),
    ("rd", {"steps": "[]"}, (), "'steps' must be a list of 1..255"),
    ("rd", {"steps": '"abc"'}, (), "'steps' must be"),
    ("rd", {"steps": "[2.0, 0, 1.0]"}, (), "'steps' must be"),
    ("rd", {"steps": "[2.0, NaN]"}, (), "'steps' must be"),
    ("rd", {"released": "[true]"}, (), "'released' must be"),
    ("rd", {"card": "not json"}, (), "'card' is not valid JSON"),
    ("detail", {"pairs": "[[1, 1], [9, 1]]"}, (), "'pairs' must be"),
    ("detail", {"pairs": "[[1, 4]]"}, (), "'pairs' must be"),
    ("detail", {"detail_config": json.dumps({"channels": 4, "width": 16, "levels": 0})}, (), "levels must be"),
    ("detail", {"lambdas": "[-1]"}, (), "'lambdas' must be"),
]  # fmt: skip


@pytest.mark.parametrize("kind, meta, drop, says", CASES)
def test_lying_metadata_is_one_line_naming_the_file(seeds, tmp_path, kind, meta, drop, says) -> None:
    _refused(_variant(seeds, tmp_path, kind, meta, drop), kind, says)


SHARED_CASES = [
    ({"base_model": '"celeba64"'}, "and the celeba64 found is another"),
    ({"base_model": '"../rd"'}, "'base_model' must be a model name"),
    ({"base_model": '"generator"'}, "builds on the RD model generator, which cannot be loaded"),
    ({"base_model": '"nothere"'}, "no nothere.safetensors beside it, and no shipped model nothere"),
    ({"base_fingerprint": '"0000000000000000"'}, "and the rd found is another"),
    ({"base_levels": "[2, 9]"}, r"its base levels \[2, 9\] are not all levels of rd"),
    ({"base_levels": "[1, 2]"}, "do not match its base rd's levels"),
]


@pytest.mark.parametrize("meta, says", SHARED_CASES)
def test_a_detail_model_naming_a_base_it_was_not_made_on_is_refused(seeds, meta, says) -> None:
    """A detail file that names its base (detailmodel.share_base) loads only on that very
    base, looked up beside it (or shipped), never by a path."""
    path = _variant(seeds, seeds["shared"].parent, "shared", meta)  # beside rd.safetensors
    try:
        _refused(path, "shared", says)
    finally:
        path.unlink()


def test_an_rd_file_that_calls_itself_a_detail_model_is_one_line(seeds, tmp_path) -> None:
    path = _variant(seeds, tmp_path, "rd", {"percodec_model": "rd-detail"})
    with pytest.raises(ModelError, match="has no 'detail_config'"):
        load_model(path)


@pytest.mark.parametrize("kind", ["generator", "rd", "detail"])
def test_weights_that_do_not_fit_the_config_or_are_not_finite_are_refused(seeds, tmp_path, kind) -> None:
    _, state = read_model_file(seeds[kind])
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 4)
    bad = state[name].clone()
    bad.view(-1)[0] = float("nan")
    _refused(_variant(seeds, tmp_path, kind, tensors={name: bad}), kind, f"weight {name} holds NaN")
    _refused(_variant(seeds, tmp_path, kind, tensors={name: state[name][:1]}), kind, f"wrong shape {name}")
    _refused(_variant(seeds, tmp_path, kind, tensors={"extra.weight": torch.zeros(2)}), kind, "unexpected extra")


def test_a_framing_must_be_key_points_inside_the_crop(seeds, tmp_path) -> None:
    path = _variant(seeds, tmp_path, "rd")
    for spec in ({"faces": 3}, {"landmarks": [[0.3, 0.5], [0.7, 0.5]]},
                 {"landmarks": [[0.3, 0.5], [30, 0.5], [0.5, 0.8]]},
                 {"landmarks": [[0.5, 0.5], [0.5, 0.5], [0.5, 0.8]]}, [1, 2]):  # fmt: skip
        m, state = read_model_file(path)
        m["framing"] = json.dumps(spec)
        write_model_file(path, state, m)
        with pytest.raises(ModelError, match="its framing must be"):
            read_framing(path)
    write_framing(path, torch.tensor([[0.35, 0.5], [0.65, 0.5], [0.5, 0.8]]).numpy(), 10)
    assert read_framing(path).shape == (3, 2)


@pytest.mark.parametrize(
    "text, says",
    [
        ('{"default": Infinity, "rungs": [["rd.safetensors", 1]]}', "whole-number levels"),
        ('{"default": 1, "rungs": [["rd.safetensors", 3.7]]}', "whole-number levels"),
        ('{"default": 1, "rungs": [["rd.safetensors", true]]}', "whole-number levels"),
        ('{"default": 1, "rungs": [["rd.safetensors", 1e999]]}', "whole-number levels"),
        ('{"default": 1, "rungs": ' + "[" * 100_000 + "]" * 100_000 + "}", "is not valid JSON"),
        ('{"default": 1, "rungs": [["rd\\u0000.safetensors", 1]]}', "whole-number levels"),
        ("\xff\xfe", "not UTF-8"),
    ],
)
def test_ladders_that_lie_are_one_line(seeds, text, says) -> None:
    bad = seeds["ladder"].with_name(f"bad{abs(hash(text))}.ladder.json")
    bad.write_bytes(text.encode("utf-8", "surrogateescape") if "\xff" not in text else b"\xff\xfe")
    with pytest.raises(ModelError, match=says) as err:
        read_ladder(bad)
    assert "\n" not in str(err.value)


def test_a_ladder_rung_naming_a_lying_model_file_is_one_line(seeds, tmp_path) -> None:
    _variant(seeds, tmp_path, "rd", {"steps": "[]"})
    ladder = tmp_path / "x.ladder.json"
    ladder.write_text(json.dumps({"default": 1, "rungs": [["rd-variant.safetensors", 1]]}))
    with pytest.raises(ModelError, match="'steps' must be"):
        read_ladder(ladder)
    with pytest.raises(ModelError, match="'steps' must be"):
        level_count(tmp_path / "rd-variant.safetensors")


def test_encode_and_decode_with_a_lying_model_print_one_line(seeds, tmp_path) -> None:
    bad = _variant(seeds, tmp_path, "rd", {"config": json.dumps({"nz": 8, "ngf": 4, "ndf": 4, "nc": 3, "size": 4096})})
    face = tmp_path / "face.png"
    Image.open(SAMPLES / "astronaut.png").resize((16, 16)).save(face)
    r = CliRunner().invoke(main, ["encode", str(face), str(tmp_path / "x.pgz"), "--model", str(bad)])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "weights do not match its config" in r.output, r.output
    assert not (tmp_path / "x.pgz").exists()


def test_a_fifo_as_a_model_says_what_it_is(tmp_path) -> None:
    import os

    fifo = tmp_path / "m.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="not a regular file"):
        resolve_model(fifo)


def test_the_model_fuzzer_finds_nothing(tmp_path) -> None:
    counts = fuzz_models.fuzz(400, seed=7, folder=tmp_path)
    assert counts["refused"] > counts["ok"] > 0  # both outcomes reached, nothing else


def test_checking_a_model_before_building_it_costs_no_heavy_imports() -> None:
    """The meta-device build draws nothing and computes nothing: an op there with a Python
    meta kernel imports torch._dynamo or sympy (0.4-1.5 s on every cold encode)."""
    import subprocess
    import sys

    code = ("import sys\nfrom codec.generator import shipped_models\nfrom codec import zoo\n"
            "[zoo.load_model(n) for n in shipped_models()]\n"
            "print(','.join(m for m in ('sympy', 'torch._dynamo') if m in sys.modules))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


@pytest.mark.parametrize("kind", ["generator", "rd", "detail", "shared"])
def test_a_loaded_model_holds_its_files_tensors_and_nothing_on_the_meta_device(seeds, kind) -> None:
    """A model is built once, on the meta device, and takes the file's tensors (no random
    weights drawn only to be overwritten): each tensor the file holds comes back exactly,
    none is left without storage, BatchNorm's step counters are zero."""
    model, _ = fuzz_models.LOADERS[kind](seeds[kind])
    _, state = read_model_file(seeds[kind])
    mine = model.state_dict()
    for name, t in mine.items():
        assert not t.is_meta, name
        if name.endswith("num_batches_tracked"):
            assert int(t) == 0
    if kind == "shared":  # its base's tensors are in rd.safetensors
        state |= {f"base.{k}": v for k, v in read_model_file(seeds["rd"])[1].items()}
    held = state | {f"base.{k}": v for k, v in state.items()}  # a detail file holds its base unprefixed
    compared = [k for k in mine if not k.endswith("num_batches_tracked")]
    assert set(compared) <= held.keys()
    assert all(torch.equal(mine[k], held[k].float()) for k in compared)


def test_a_detail_models_base_is_its_own_copy_of_the_cached_rd_model(seeds) -> None:
    """A detail model naming its base reads it through the model cache: changing the detail
    model's base (as training does) must not change the RD model every other caller gets."""
    detail, _ = fuzz_models.LOADERS["shared"](seeds["shared"])
    rd, _ = load_model(seeds["rd"])
    before = {k: v.clone() for k, v in rd.state_dict().items()}
    with torch.no_grad():
        for p in detail.base.parameters():
            p.add_(1.0)
    assert all(torch.equal(v, before[k]) for k, v in rd.state_dict().items())
