"""Shared test configuration: pytester for plugin tests, helpers for fake command-line tools."""

from __future__ import annotations

import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

FakeTool = Callable[[str, str], Path]


@pytest.fixture
def fake_tool(tmp_path: Path) -> FakeTool:
    """Write an executable Python script named ``name`` into ``tmp_path/bin`` and return it."""

    def make(name: str, body: str) -> Path:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        path = bindir / name
        path.write_text(f"#!{sys.executable}\nimport os, sys, json, time\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path

    return make


@pytest.fixture(autouse=True)
def _private_state_dir(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Machine-wide host leases of the fast tiers go to a temporary directory; the e2e tier
    uses the real default, as users do."""
    if request.node.get_closest_marker("e2e") is None:
        monkeypatch.setenv("PYTEST_VCLUSTER_STATE_DIR", str(tmp_path_factory.mktemp("state")))
