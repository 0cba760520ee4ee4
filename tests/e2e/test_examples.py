"""First contact: README's first command block, exactly as written, on a clean environment.

The block is read from README.md, so the README and this check cannot drift apart. It runs with
none of the stack's settings in the environment and the stack's tools off PATH, as for a user who
just cloned the repository: the block must set up what is missing and run the example suite.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .stack import Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def first_command_block(readme: str) -> str:
    match = re.search(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    assert match, "README.md has no ```sh block"
    return match.group(1)


def test_readme_first_block_runs_the_example_suite(stack: Stack, tmp_path: Path) -> None:
    block = first_command_block((ROOT / "README.md").read_text())
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_VCLUSTER", "EXAMPLE_", "VIRTUAL_ENV", "PYTEST_ADDOPTS"))
    }
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if part != stack.path_dir
    )
    proc = subprocess.run(
        [shutil.which("bash") or "/bin/bash", "-euo", "pipefail", "-c", block],
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
        check=False,
        cwd=ROOT,
    )
    (tmp_path / "first-contact.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", last), last
    assert "failed" not in last, last
    assert "error" not in last, last
    assert "settings from " in proc.stdout  # the offline stack's one settings file was used
