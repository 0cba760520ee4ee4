"""The example suite from README.md, run as a user would, on the offline stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .stack import Stack

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_example_suite_passes_on_the_offline_stack(stack: Stack, tmp_path: Path) -> None:
    env = stack.env()
    env["EXAMPLE_HTTP_IMAGE"] = stack.workload_image
    env["EXAMPLE_HTTP_PORT"] = "8080"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(EXAMPLES),
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            "--vcluster-host-name=pvc-examples",
            *stack.plugin_args(),
            # One version keeps the tier short; test_matrix.py still runs both through its marker.
            f"--vcluster-versions={stack.minors[0]}",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        env=env,
        check=False,
        cwd=EXAMPLES.parent,
    )
    (tmp_path / "examples.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout.splitlines()[-1]
    assert "kind host 'pvc-examples': created by this run in " in proc.stdout
