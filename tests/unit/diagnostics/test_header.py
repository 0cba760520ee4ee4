"""Report header lines and tool versions, tolerant of missing tools."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FakeTool

from pytest_vcluster.diagnostics.header import header_lines, tool_version, tools_line
from pytest_vcluster.host.acquire import make_host
from pytest_vcluster.settings.config import Settings


def test_tool_version(fake_tool: FakeTool) -> None:
    kind = fake_tool("kind", "print('kind v0.32.0 go1.26 linux/amd64')")
    helm = fake_tool("helm", "assert sys.argv[1:] == ['version', '--short']\nprint('v3.19.0+g1')")
    assert tool_version("kind", str(kind)) == "kind: kind v0.32.0 go1.26 linux/amd64"
    assert tool_version("helm", str(helm)) == "helm: v3.19.0+g1"


def test_missing_and_broken_tools_do_not_raise(
    fake_tool: FakeTool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert tool_version("vcluster", None) == "vcluster: not found on PATH"
    broken = fake_tool("vcluster", "sys.exit(2)")
    assert tool_version("vcluster", str(broken)).startswith(
        "vcluster: unavailable (command failed with exit code 2"
    )


def test_header_kind_host_runs_no_tool(fake_tool: FakeTool, tmp_path: Path) -> None:
    called = tmp_path / "called"
    kind = fake_tool("kind", f"open({str(called)!r}, 'w').close()\nprint('kind v0.32.0')")
    settings = Settings(node_image="node:1", kind_binary=str(kind), keep_host=True)
    host = make_host(settings, state_root=Path("unused"), run_id="r", worker="master")
    lines = header_lines(settings)
    assert lines[0] == "vcluster: kind host 'pytest-vcluster' (node image: node:1, kept at exit)"
    assert lines[0] == f"vcluster: {host.header_line()}"
    assert lines[1].startswith("vcluster settings: teardown=delete, create_with=api, lookahead=2")
    assert not called.exists()  # the header costs a run that uses no vcluster nothing


def test_tools_line_names_the_tools_the_host_needs(fake_tool: FakeTool, tmp_path: Path) -> None:
    kind = fake_tool("kind", "print('kind v0.32.0')")
    line = tools_line(Settings(kind_binary=str(kind)))
    assert line.startswith("vcluster tools: kind: kind v0.32.0; vcluster: ")
    existing = tools_line(Settings(host_kubeconfig=tmp_path / "kc"))
    assert existing.startswith("vcluster tools: vcluster: ")
    assert "kind:" not in existing


def test_header_existing_host(tmp_path: Path) -> None:
    settings = Settings(host_kubeconfig=tmp_path / "kc", host_context="prod")
    host = make_host(settings, state_root=tmp_path, run_id="r", worker="master")
    lines = header_lines(settings)
    assert lines[0] == f"vcluster: existing host, kubeconfig {tmp_path / 'kc'}, context prod"
    assert lines[0] == f"vcluster: {host.header_line()}"
