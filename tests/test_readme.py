"""The README's Use block runs as it is, top to bottom, on the shipped samples."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def use_block() -> list[str]:
    """The commands of the first sh block under '## Use', comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Use\n") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [" ".join(shlex.split(line, comments=True)) for line in block.splitlines() if line.strip()]


@pytest.mark.slow
def test_the_use_block_runs_top_to_bottom(tmp_path) -> None:
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    commands = use_block()
    assert len(commands) >= 10 and all(c.startswith("percodec ") for c in commands)
    for command in commands:
        done = subprocess.run(shlex.split(command), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}\n{done.stderr}"
    assert (tmp_path / "decoded").is_dir() and (tmp_path / "coded.csv").is_file()
