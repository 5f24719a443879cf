import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from codec.cli import main
from codec.generator import load_generator, read_metadata, save_generator
from codec.objectives import OBJECTIVES
from codec.train import SampleStream, TrainConfig, train
from tests.conftest import ROOT, run_torchrun

# A tiny generator for CLI runs: fractions of a second per step on any CPU.
TINY_ARGS = ["--width", "4", "--nz", "8", "--size", "16", "--batch-size", "8"]


def _cfg(out, **kw) -> TrainConfig:
    base = dict(
        dataset="celeba",
        out=str(out),
        dry_run=True,
        ngf=4,
        ndf=4,
        nz=8,
        size=16,
        batch_size=8,
        steps=4,
        device="cpu",
        progress=False,
        sample_every=2,
        checkpoint_every=2,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_sample_stream_shards_are_disjoint_and_cover_the_batch() -> None:
    single = SampleStream(50, 8, seed=3)
    shards = [SampleStream(50, 8, seed=3, rank=r, world=2) for r in range(2)]
    for step in range(20):  # crosses several epoch boundaries
        parts = [s.indices(step) for s in shards]
        assert np.array_equal(np.concatenate(parts), single.indices(step))
    seen = np.concatenate([single.indices(s) for s in range(25)])  # 200 = 4 epochs of 50
    assert all(np.sort(seen[i * 50 : (i + 1) * 50]).tolist() == list(range(50)) for i in range(4))


def test_dry_run_writes_model_samples_and_log(tmp_path) -> None:
    res = train(_cfg(tmp_path))
    assert res.steps == 4 and res.images_seen == 32
    assert (tmp_path / "checkpoint.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    g, card = load_generator(tmp_path / "generator.safetensors")
    assert card["images_seen"] == "32" and card["steps"] == "4" and "command" in card
    assert g.config.size == 16


def test_resume_continues_exactly(tmp_path) -> None:
    straight = train(_cfg(tmp_path / "a", steps=4))
    train(_cfg(tmp_path / "b", steps=2))
    resumed = train(_cfg(tmp_path / "b", steps=4, resume=True))
    for a, b in zip(
        straight.objective.netG.state_dict().values(), resumed.objective.netG.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    for a, b in zip(straight.objective.netD.parameters(), resumed.objective.netD.parameters(), strict=True):
        assert torch.equal(a, b)


def test_lr_drop_lowers_every_rate_from_its_step_and_resumes_exactly(tmp_path) -> None:
    straight = train(_cfg(tmp_path / "a", steps=4, lr_drop=3, objective="rd"))
    train(_cfg(tmp_path / "b", steps=2, lr_drop=3, objective="rd"))
    resumed = train(_cfg(tmp_path / "b", steps=4, lr_drop=3, objective="rd", resume=True))
    a, b = straight.objective.model.state_dict(), resumed.objective.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rates = [g["lr"] for opt in resumed.objective.optimizers() for g in opt.param_groups]
    assert rates == pytest.approx([2e-5, 1e-4])  # 0.1 x --lr and 0.1 x the prior's own rate
    plain = train(_cfg(tmp_path / "c", steps=4, objective="rd"))
    weight = "generator.main.0.weight"
    assert not torch.equal(plain.objective.model.state_dict()[weight], a[weight])


def test_existing_run_is_not_overwritten(tmp_path) -> None:
    train(_cfg(tmp_path, steps=1))
    with pytest.raises(FileExistsError):
        train(_cfg(tmp_path, steps=1))
    with pytest.raises(FileExistsError):  # refused before any data is read
        train(_cfg(tmp_path, dry_run=False, data_root=str(tmp_path / "nowhere"), steps=1))


def test_cli_bad_data_root_is_one_line(tmp_path) -> None:
    r = CliRunner().invoke(
        main, ["train-generator", "--data-root", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 1
    assert r.output.strip().count("\n") == 0 and "does not exist" in r.output


def test_cli_dry_run(tmp_path) -> None:
    r = CliRunner().invoke(
        main,
        [
            "train-generator",
            "--dry-run",
            "--out",
            str(tmp_path),
            *TINY_ARGS,
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "trained to step 3" in r.output


def test_mnist_training_on_fake_files(fake_mnist, tmp_path) -> None:
    res = train(
        _cfg(
            tmp_path / "run", dataset="mnist", dry_run=False, data_root=str(fake_mnist), size=32, batch_size=4, steps=2
        )
    )
    assert res.objective.netG.config.nc == 1 and res.objective.netG.config.size == 32


DDP_WORKER = """
import os, sys, torch
from codec.train import TrainConfig, train
out, objective, start = sys.argv[1], sys.argv[2], sys.argv[3] or None
more = {} if objective == "gan" else {"valid_images": 8, "init_from": start}
res = train(TrainConfig(dataset="celeba", out=out, dry_run=True, objective=objective, ngf=4, ndf=4, nz=8, size=16,
                        batch_size=8, steps=3, device="cpu", progress=False, sample_every=100, checkpoint_every=100,
                        lr=1e-2, **more))
state = {f"{name}.{k}": v for name, m in res.objective.modules().items() for k, v in m.state_dict().items()}
torch.save(state, os.path.join(out, f"rank{os.environ['RANK']}.pt"))
"""


@pytest.mark.slow
@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_two_process_training_ends_with_the_same_weights_on_both_ranks(tmp_path, objective) -> None:
    """Every registered objective, data-parallel under torchrun (gloo): each rank sees its own
    half of the batch, and after a few steps every network's weights agree (a network trained
    outside its DDP wrapper would drift apart); they moved from where they started."""
    start = ""
    if objective == "detail":  # its start: a tiny RD model
        start = str(train(_cfg(tmp_path / "rd", objective="rd", steps=1, valid_images=8)).model_path)
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    done = run_torchrun([str(worker), str(tmp_path / "run"), objective, start])
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / "run" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0.keys() == r1.keys() and r0
    for k in r0:
        assert torch.allclose(r0[k].float(), r1[k].float(), atol=1e-6), k
    more = {} if objective == "gan" else {"valid_images": 8, "init_from": start or None}
    init = train(_cfg(tmp_path / "init", objective=objective, steps=1, lr=1e-12, **more)).objective.modules()
    fresh = {f"{name}.{k}": v for name, m in init.items() for k, v in m.state_dict().items()}
    assert any(not torch.allclose(r0[k].float(), fresh[k].float()) for k in r0 if k.endswith("weight"))
    assert (tmp_path / "run" / OBJECTIVES[objective].load().model_file).is_file()


def test_init_generator_warm_starts_from_a_model_file(tmp_path, tiny_model_file, tiny_generator) -> None:
    with torch.no_grad():  # weights no fresh initialisation can give, whatever its seed
        for p in tiny_generator.parameters():
            p.add_(0.5)
    warm = tmp_path / "warm.safetensors"
    save_generator(tiny_generator, warm, {"dataset": "none"})
    cfg = _cfg(tmp_path / "run", ngf=4, nz=8, size=16, steps=1, lr=0.0, init_generator=str(warm))
    res = train(cfg)
    for a, b in zip(res.objective.netG.parameters(), tiny_generator.parameters(), strict=True):
        assert torch.equal(a, b)  # lr 0: the loaded weights are untouched by the one step
    with pytest.raises(ValueError, match="was made with"):
        train(_cfg(tmp_path / "other", ngf=8, steps=1, init_generator=str(tiny_model_file)))


@pytest.mark.slow
def test_sigint_stops_after_a_checkpoint(tmp_path) -> None:
    import signal
    import time

    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "codec.cli",
        "train-generator",
        "--dry-run",
        "--out",
        str(out),
        *TINY_ARGS,
        "--steps",
        "100000",
        "--no-progress",
        "--checkpoint-every",
        "100000",
        "--sample-every",
        "100000",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    log = out / "train.log.jsonl"
    deadline = time.time() + 120
    while not log.is_file() and time.time() < deadline:  # opened just before the loop starts
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "continue with --resume" in err
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 1 <= ck["step"] < 100000


def test_mix_draws_give_each_source_its_share_and_every_image_a_turn() -> None:
    from codec.train import mix_draws

    drawn = mix_draws([100, 10, 500], [0.5, 0.3, 0.2])
    source = np.searchsorted([100, 110], drawn, side="right")  # 0, 1 or 2 by offset
    shares = np.bincount(source, minlength=3) / len(drawn)
    assert np.allclose(shares, [0.5, 0.3, 0.2], atol=0.01)
    assert set(drawn) == set(range(610))  # the largest source relative to its share sets the epoch's length
    assert len(drawn) == 2500


def test_train_generator_mixes_sources_by_their_shares(tmp_path, fake_celeba) -> None:
    folder = tmp_path / "more"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((40, 40, 3), 20 * i, np.uint8)).save(folder / f"m{i}.png")
    args = ["train-generator", "--data-root", str(fake_celeba), "--out", str(tmp_path / "run"), *TINY_ARGS,
            "--batch-size", "4", "--steps", "2", "--no-progress", "--mix", f"folder:{folder}=0.25"]  # fmt: skip
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    card = json.loads(read_metadata(tmp_path / "run" / "generator.safetensors")["card"])
    assert card["mix"] == f"celeba 0.75, folder:{folder} 0.25" and card["train_images"] == str(6 + 12)
    r = CliRunner().invoke(main, [*args[:4], str(tmp_path / "run2"), *args[5:-1], f"folder:{folder}=1.5"])
    assert r.exit_code == 2 and "must lie between 0 and 1" in r.output
    r = CliRunner().invoke(main, [*args[:4], str(tmp_path / "run3"), *args[5:], "--mix", f"folder:{folder}=0.8"])
    assert r.exit_code == 2 and "add up to 1 or more" in r.output
