"""Training runs that must not go wrong silently (issue #37): NaN stops the run at its step
with nothing exported, networks that cannot fit are refused before they are built, a run
folder is held by one run at a time, odd files in it are refused up front, and unreadable
training images are named as they are skipped."""

from __future__ import annotations

import contextlib
import fcntl
import io

import pytest
from click.testing import CliRunner

from codec.cli import main
from codec.train import TrainConfig, train
from tests.test_train import TINY_ARGS


def _train(*args: object):
    return CliRunner().invoke(main, ["train-generator", *(str(a) for a in args)], catch_exceptions=False)


def _one_line(r, says: str) -> None:
    assert r.exit_code == 1, r.output
    assert says in r.output and "Traceback" not in r.output
    assert r.output.count("\n") == 1, r.output


@pytest.mark.parametrize("objective, steps", [("gan", 6), ("gan", 1), ("rd", 6)])
def test_a_loss_or_weight_that_becomes_nan_stops_the_run_and_nothing_is_exported(tmp_path, objective, steps) -> None:
    out = tmp_path / "run"
    r = _train("--dry-run", "--objective", objective, *TINY_ARGS, "--steps", steps, "--lr", "1e30", "--out", out,
               "--no-progress")  # fmt: skip
    _one_line(r, "training stopped at step")
    assert not out.exists()  # a fresh run that failed before its first checkpoint leaves nothing (dry run: no cache)


@pytest.mark.parametrize("option", [["--width", "100000"], ["--nz", "100000000"], ["--size", "65536"]])
def test_networks_too_big_for_memory_are_refused_before_they_are_built(tmp_path, option) -> None:
    out = tmp_path / "run"
    r = _train("--dry-run", "--width", "4", "--nz", "8", "--batch-size", "8", *option, "--steps", "2", "--out", out,
               "--no-progress")  # fmt: skip
    _one_line(r, "GiB available: lower --width, --nz, --size or --batch-size")
    assert not out.exists()


def test_a_run_folder_in_use_by_another_run_is_refused(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "a") as held:  # another run holds the folder
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = _train("--dry-run", *TINY_ARGS, "--steps", "2", "--out", out, "--no-progress")
        _one_line(r, "is in use by another train-generator run")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]
    r = _train("--dry-run", *TINY_ARGS, "--steps", "2", "--out", out, "--no-progress")  # free again
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("name", ["checkpoint.pt", "generator.safetensors", "train.log.jsonl"])
def test_a_folder_where_a_run_file_goes_is_refused_up_front(tmp_path, name) -> None:
    out = tmp_path / "run"
    (out / name).mkdir(parents=True)
    r = _train("--dry-run", *TINY_ARGS, "--steps", "2", "--out", out, "--resume", "--no-progress")
    _one_line(r, f"{name}: not a regular file")


def test_a_data_cache_that_is_a_file_is_refused_up_front(tmp_path) -> None:
    (tmp_path / "cache").write_text("not a folder")
    r = _train("--dry-run", *TINY_ARGS, "--steps", "2", "--out", tmp_path / "run", "--data-cache", tmp_path / "cache")
    assert r.exit_code == 2 and "is a file" in r.output and not (tmp_path / "run").exists()
    with pytest.raises(FileExistsError, match="--data-cache .*: not a folder"):
        train(TrainConfig(dry_run=True, steps=2, out=str(tmp_path / "api"), data_cache=str(tmp_path / "cache")))
    assert not (tmp_path / "api").exists()  # a failed start leaves no run folder behind


def test_unreadable_training_images_are_named_as_they_are_skipped(tmp_path, fake_celeba) -> None:
    cfg = TrainConfig(dataset="celeba", data_root=str(fake_celeba), out=str(tmp_path / "run"), batch_size=4, steps=1,
                      ngf=4, nz=8, size=16, progress=False)  # fmt: skip
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        train(cfg)
    assert "percodec: skipped: " in err.getvalue() and "000011.jpg" in err.getvalue()
    # a damaged cache is made again, with a note
    cache = next((tmp_path / "run" / "cache").glob("celeba-train-*.npz"))
    cache.write_bytes(b"PK\x03\x04 damaged")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        train(TrainConfig(**{**cfg.__dict__, "steps": 2, "resume": True}))
    assert "damaged data cache" in err.getvalue()


@pytest.mark.parametrize(
    "objective, option",
    [("gan", ["--target-bytes", "90"]), ("rd", ["--detail-lambdas", "1", "2"]), ("gan", ["--distortion", "mse"]),
     ("rd", ["--init-generator", "models/celeba64-gan.safetensors"]), ("detail", ["--adv-weight", "0.1"])],
)  # fmt: skip
def test_options_of_another_objective_are_refused_not_ignored(tmp_path, objective, option) -> None:
    from tests.conftest import ROOT

    option = [str(ROOT / o) if o.startswith("models/") else o for o in option]
    r = _train("--dry-run", "--objective", objective, *TINY_ARGS, *option, "--out", tmp_path / "run")
    assert r.exit_code == 2 and f"{option[0]} applies to --objective" in r.output and f"not {objective}" in r.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "objective, option",
    [("gan", {"target_bytes": 90.0}), ("rd", {"detail_identity": (1.0, 3)}), ("detail", {"init_generator": "x"}),
     ("gan", {"distortion": "ssim"}), ("detail", {"step_range": (0.4, 2.0)})],
)  # fmt: skip
def test_the_library_refuses_options_of_another_objective_before_writing(tmp_path, objective, option) -> None:
    """train() as the command: an option only other objectives take is an error, not ignored."""
    flag = "--" + next(iter(option)).replace("_", "-")
    cfg = TrainConfig(objective=objective, out=str(tmp_path / "run"), dry_run=True, steps=1, **option)
    with pytest.raises(ValueError, match=f"{flag} applies to --objective .*, not {objective}"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="unknown objective 'vae': gan, rd, detail"):
        train(TrainConfig(objective="vae", out=str(tmp_path / "run"), dry_run=True, steps=1))
