"""VClusterManager's use of the vcluster CLI (a fake executable) and its error handling.

The Kubernetes API side (namespace, readiness) is stubbed; what is checked is the command
lines, the files handed to the CLI, the environment, and what happens when the CLI fails.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml
from conftest import FakeTool

from pytest_vcluster.config import Settings, TeardownMode
from pytest_vcluster.errors import CommandError
from pytest_vcluster.handle import VCluster
from pytest_vcluster.host import HostInfo
from pytest_vcluster.lifecycle import (
    TeardownAction,
    VClusterManager,
    VClusterSpec,
    _Live,
    make_spec,
)
from pytest_vcluster.versions import KubeVersion

FAKE_VCLUSTER = """
log = os.environ["FAKE_VCLUSTER_LOG"]
with open(log, "a") as f:
    f.write(json.dumps({
        "argv": sys.argv[1:],
        "kubeconfig": os.environ.get("KUBECONFIG"),
        "skip": os.environ.get("VCLUSTER_SKIP_VERSION_CHECK"),
        "path0": os.environ["PATH"].split(os.pathsep)[0],
    }) + "\\n")
if sys.argv[1] in os.environ.get("FAKE_VCLUSTER_FAIL", "").split(","):
    print("fatal: helm install failed: chart not found", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def manager(
    fake_tool: FakeTool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> VClusterManager:
    vcluster = fake_tool("vcluster", FAKE_VCLUSTER)
    helm_dir = tmp_path / "helm-bin"
    helm_dir.mkdir()
    helm = helm_dir / "helm"
    helm.write_text("#!/bin/sh\n")
    helm.chmod(helm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_VCLUSTER_LOG", str(tmp_path / "calls.jsonl"))
    chart = tmp_path / "chart"
    chart.mkdir()
    settings = Settings(
        vcluster_binary=str(vcluster),
        helm_binary=str(helm),
        local_chart_dir=chart,
        ready_timeout=30,
        delete_timeout=30,
    )
    host = HostInfo("kind", "t", tmp_path / "host.kubeconfig", "kind-t", True)
    workdir = tmp_path / "work"
    workdir.mkdir()
    return VClusterManager(settings, host, run_id="run1", worker="gw0", workdir=workdir)


def calls(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def spec(settings: Settings) -> VClusterSpec:
    return make_spec(
        settings,
        slot="test:t.py::test_a",
        test="t.py::test_a",
        label="test_a",
        version=KubeVersion(1, 33),
    )


def stub_api(manager: VClusterManager, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the API-side steps; returns the list the stubs append what they did to."""
    done: list[str] = []
    monkeypatch.setattr(manager, "_claim_paused", lambda spec: None)
    monkeypatch.setattr(
        manager, "_create_namespace", lambda ns, name, spec: done.append(f"namespace {ns}")
    )
    monkeypatch.setattr(
        manager, "_delete_namespace", lambda ns, deadline: done.append(f"delete namespace {ns}")
    )

    def connect(
        name: str, namespace: str, spec: VClusterSpec, deadline: object, *, reused: bool
    ) -> VCluster:
        done.append(f"connect {name}")
        manager._live[name] = _Live(name, namespace, manager.workdir)  # as the real one does
        return VCluster(
            name, namespace, "v1.33.4", spec.version, Path("/dev/null"), None, spec.spec_hash
        )  # type: ignore[arg-type]

    monkeypatch.setattr(manager, "_connect", connect)
    return done


def test_create_runs_the_cli_with_helm_driver_and_private_files(
    manager: VClusterManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = stub_api(manager, monkeypatch)
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    [call] = calls(tmp_path)
    argv = call["argv"]
    assert isinstance(argv, list)
    assert argv[:2] == ["create", handle.name]
    for flag in (
        "--connect=false",
        "--create-namespace=false",
        "--add=false",
        "--background-proxy=false",
    ):
        assert flag in argv
    assert argv[argv.index("--driver") + 1] == "helm"
    assert argv[argv.index("--namespace") + 1] == handle.namespace
    assert argv[argv.index("--context") + 1] == "kind-t"
    assert argv[argv.index("--local-chart-dir") + 1] == str(tmp_path / "chart")
    values = yaml.safe_load(Path(argv[argv.index("-f") + 1]).read_text())
    assert values["telemetry"] == {"enabled": False}
    assert values["controlPlane"]["distro"]["k8s"]["image"]["tag"] == "v1.33.4"
    cli_config = Path(argv[argv.index("--config") + 1])
    assert json.loads(cli_config.read_text())["telemetryDisabled"] is True
    assert stat.S_IMODE(cli_config.stat().st_mode) == 0o600
    assert call["kubeconfig"] == str(tmp_path / "host.kubeconfig")
    assert call["skip"] == "true"
    assert call["path0"] == str(tmp_path / "helm-bin")  # the CLI finds our helm first
    assert done == [f"namespace {handle.namespace}", f"connect {handle.name}"]
    assert manager.stats.counts["created"] == 1


def test_failed_create_is_deleted_and_reports_stderr(
    manager: VClusterManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = stub_api(manager, monkeypatch)
    monkeypatch.setenv("FAKE_VCLUSTER_FAIL", "create")
    with pytest.raises(CommandError, match="chart not found") as info:
        manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    assert info.value.exit_code == 1
    verbs = [c["argv"][0] for c in calls(tmp_path)]  # type: ignore[index]
    assert verbs == ["create", "delete"]
    assert done[-1].startswith("delete namespace pv-test-a-")
    assert manager.stats.counts["failed"] == 1


def test_failed_create_is_kept_with_keep_on_failure(
    manager: VClusterManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = stub_api(manager, monkeypatch)
    monkeypatch.setenv("FAKE_VCLUSTER_FAIL", "create")
    with pytest.raises(CommandError):
        manager.create(spec(manager.settings), teardown_on_error=TeardownMode.KEEP_ON_FAILURE)
    assert [c["argv"][0] for c in calls(tmp_path)] == ["create"]  # type: ignore[index]
    assert not any(step.startswith("delete") for step in done)


@pytest.mark.parametrize(
    ("action", "verbs", "event"),
    [
        (TeardownAction.DELETE, ["create", "delete"], "deleted"),
        (TeardownAction.PAUSE, ["create", "pause"], "paused"),
        (TeardownAction.KEEP, ["create"], "kept"),
    ],
)
def test_finish(
    manager: VClusterManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    action: TeardownAction,
    verbs: list[str],
    event: str,
) -> None:
    stub_api(manager, monkeypatch)
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    manager.finish(handle, action)
    manager.finish(handle, action)  # a second teardown does nothing
    assert [c["argv"][0] for c in calls(tmp_path)] == verbs  # type: ignore[index]
    assert manager.stats.counts[event] == 1
    if action is TeardownAction.DELETE:
        argv = calls(tmp_path)[-1]["argv"]
        assert isinstance(argv, list)
        assert "--ignore-not-found" in argv
        assert "--auto-delete-namespace=false" in argv


def test_failing_teardown_is_logged_not_raised(
    manager: VClusterManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub_api(manager, monkeypatch)
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    monkeypatch.setenv("FAKE_VCLUSTER_FAIL", "pause")
    manager.finish(handle, TeardownAction.PAUSE)
    assert "teardown (pause) of vcluster" in caplog.text
    assert manager.stats.counts["paused"] == 0
