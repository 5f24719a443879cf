"""Sharded encode and decode under torchrun (gloo-free: torchrun's store): every file made
once, byte-identical to one process's, one merged report; a run killed half-way finishes
with --skip-existing."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.container import from_bytes
from codec.errors import PercodecError
from codec.shard import Board, Shard
from tests.conftest import ROOT

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
CLI = ["-m", "codec.cli"]


def test_shard_reads_torchrun_variables_and_refuses_inconsistent_ones(monkeypatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert Shard.from_env() == Shard(0, 1, 0, 1) and Shard.from_env().main
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert Shard.from_env() == Shard(3, 4, 1, 2) and Shard.from_env().sharded
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(PercodecError, match="do not fit together"):
        Shard.from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(PercodecError, match="whole numbers"):
        Shard.from_env()


def test_one_process_claims_every_batch_in_order() -> None:
    board = Board(Shard(), "test")
    assert list(board.batches(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert board.done(2) == 2 and board.done() == 2
    assert board.gather([{"a": 1}]) == [[{"a": 1}]]


def _faces(folder: Path, n: int) -> Path:
    """n model-sized colour images (no face search: fast and deterministic)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.integers(60, 200, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(base).resize((64, 64), Image.Resampling.BICUBIC).save(folder / f"f{i:02d}.png")
    return folder


def _alone(faces: Path, out: Path) -> None:
    cmd = [sys.executable, *CLI, "encode", str(faces), "-o", str(out), "--steps", "0", "--batch-size", "2", "-q"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [2, 4])
def test_a_sharded_encode_makes_each_file_once_as_one_process_does(tmp_path, nproc) -> None:
    faces = _faces(tmp_path / "faces", 10)
    _alone(faces, tmp_path / "alone")
    args = ["--standalone", "--nproc-per-node", str(nproc), *CLI, "encode", str(faces), "-o", str(tmp_path / "out"),
            "--steps", "0", "--batch-size", "2", "--report", str(tmp_path / "r.csv")]  # fmt: skip
    done = subprocess.run([*TORCHRUN, *args], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _same_files(tmp_path / "alone", tmp_path / "out")
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [Path(r["input"]).name for r in rows] == sorted(p.name for p in faces.iterdir())  # merged, in input order
    summary = [line for line in done.stderr.splitlines() if line.startswith("encoded ")]
    assert len(summary) == 1 and "encoded 10 file(s)" in summary[0] and f"rank {nproc - 1}:" in summary[0]
    counts = [int(c.split(": ")[1]) for c in summary[0].rsplit("(", 1)[1].rstrip(")").split(", ")]
    assert sum(counts) == 10
    decoded = subprocess.run([*TORCHRUN, "--standalone", "--nproc-per-node", str(nproc), *CLI, "decode",
                              str(tmp_path / "out"), "-o", str(tmp_path / "dec")],
                             env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert decoded.returncode == 0, decoded.stderr[-3000:]
    assert len(list((tmp_path / "dec").iterdir())) == 10


@pytest.mark.slow
def test_two_nodes_on_one_machine_share_the_inputs(tmp_path) -> None:
    faces = _faces(tmp_path / "faces", 6)
    _alone(faces, tmp_path / "alone")
    port = str(29400 + os.getpid() % 500)
    nodes = [
        subprocess.Popen(
            [
                *TORCHRUN,
                "--nnodes",
                "2",
                "--node-rank",
                str(rank),
                "--nproc-per-node",
                "1",
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                port,
                *CLI,
                "encode",
                str(faces),
                "-o",
                str(tmp_path / "out"),
                "--steps",
                "0",
                "--batch-size",
                "1",
                "-q",
            ],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err[-3000:]
    _same_files(tmp_path / "alone", tmp_path / "out")


@pytest.mark.slow
def test_a_sharded_run_killed_half_way_finishes_with_skip_existing(tmp_path) -> None:
    faces = _faces(tmp_path / "faces", 24)
    _alone(faces, tmp_path / "alone")
    out = tmp_path / "out"
    cmd = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", *CLI, "encode", str(faces), "-o", str(out),
           "--batch-size", "1", "-q"]  # fmt: skip
    run = subprocess.Popen([*cmd, "--steps", "0"], env=ENV, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None and len(list(out.glob("*.pgz"))) < 4:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the whole run, mid-batch
    run.wait()
    made = len(list(out.glob("*.pgz")))
    assert 0 < made < 24, made
    for p in out.glob("*.pgz"):  # files appear whole or not at all (a SIGKILL may leave a hidden temporary)
        from_bytes(p.read_bytes())
    done = subprocess.run([*cmd, "--steps", "0", "--skip-existing"], env=ENV, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    _same_files(tmp_path / "alone", out)


def test_an_interrupted_processs_rows_go_to_a_part_beside_the_report_never_over_one(tmp_path) -> None:
    from codec.batch import Row, write_part

    rows = [Row("a.png", "a.pgz", 90, 0.18, 25.0, 0.8, 12, 0.1)]
    first = write_part(tmp_path / "r.csv", 1, rows)
    second = write_part(tmp_path / "r.csv", 1, rows[:0])
    assert (first.name, second.name) == ("r.rank1.csv", "r.rank1-2.csv")
    assert [r["input"] for r in csv.DictReader(open(first))] == ["a.png"] and second.read_text().count("\n") == 1


@pytest.mark.slow
def test_a_sharded_run_stopped_leaves_each_processs_rows_beside_the_report(tmp_path) -> None:
    faces = _faces(tmp_path / "faces", 24)
    out, report = tmp_path / "out", tmp_path / "r.csv"
    cmd = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", *CLI, "encode", str(faces), "-o", str(out),
           "--batch-size", "1", "--steps", "0", "--report", str(report)]  # fmt: skip
    run = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None and len(list(out.glob("*.pgz"))) < 4:
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)  # to torchrun, which stops its processes
    err = run.communicate(timeout=120)[1]
    assert run.returncode != 0 and not report.exists()
    parts = sorted(tmp_path.glob("r.rank*.csv"))
    assert [p.name for p in parts] == ["r.rank0.csv", "r.rank1.csv"], err[-3000:]
    rows = [r for p in parts for r in csv.DictReader(open(p))]
    named, made = {Path(r["output"]).name for r in rows}, {p.name for p in out.glob("*.pgz")}
    assert named <= made and len(named) >= len(made) - 2  # a process may be stopped between a file and its row
    assert "this process's rows in" in err
