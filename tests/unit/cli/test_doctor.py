"""``pytest-vcluster doctor``: each check's verdict and fix, with fake tools and /proc files."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FakeTool

from pytest_vcluster.cli import main as cli
from pytest_vcluster.cli.doctor import Check, check_inotify, check_tool, run_checks
from pytest_vcluster.core.commands import CommandRunner
from pytest_vcluster.core.errors import HostError
from pytest_vcluster.settings.config import Settings


def test_a_recent_tool_is_ok(fake_tool: FakeTool) -> None:
    helm = fake_tool("helm", "print('v3.19.5+g1234')")
    check = check_tool("helm", str(helm), CommandRunner())
    assert check.status == "ok"
    assert check.found == f"{helm.resolve()} (v3.19.5+g1234)"


def test_an_old_tool_fails_with_the_version_to_install(fake_tool: FakeTool) -> None:
    vcluster = fake_tool("vcluster", "print('vcluster version 0.21.0')")
    check = check_tool("vcluster", str(vcluster), CommandRunner())
    assert check.status == "FAIL"
    assert check.found.endswith("is 0.21, older than 0.36")
    assert check.fix == "install vcluster 0.36 or later"


def test_a_missing_tool_fails_naming_where_it_looked(tmp_path: Path) -> None:
    check = check_tool("kind", str(tmp_path / "nope"), CommandRunner())
    assert check.status == "FAIL"
    assert "Install kind" in check.found


def test_low_inotify_limits_warn_with_the_sysctl(tmp_path: Path) -> None:
    (tmp_path / "max_user_instances").write_text("128\n")
    (tmp_path / "max_user_watches").write_text("1048576\n")
    low, fine = check_inotify(tmp_path)
    assert (low.status, fine.status) == ("warn", "ok")
    assert low.fix.startswith("sudo sysctl fs.inotify.max_user_instances=8192")


def test_without_docker_the_host_is_not_checked(fake_tool: FakeTool, tmp_path: Path) -> None:
    def no_docker() -> None:
        raise HostError("Docker is not reachable at unix:///var/run/docker.sock (refused).")

    kind = fake_tool("kind", "print('kind v0.32.0')")
    settings = Settings(kind_binary=str(kind), state_dir=tmp_path / "state")
    checks = run_checks(settings, {}, docker_check=no_docker)
    assert checks[0].status == "FAIL"
    assert checks[0].what == "docker"
    assert "host" not in [check.what for check in checks]


def test_doctor_exit_code_and_verdict(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "run_checks", lambda settings, env: [Check("ok", "docker", "up")])
    assert cli.main(["doctor"]) == 0
    assert capsys.readouterr().out == "ok   docker: up\nready to run vclusters\n"
    monkeypatch.setattr(
        cli, "run_checks", lambda settings, env: [Check("FAIL", "helm", "missing", "install it")]
    )
    assert cli.main(["doctor"]) == 1
    assert capsys.readouterr().out == (
        "FAIL helm: missing\n     fix: install it\n1 problem(s) found\n"
    )
