"""VClusterManager's flow (namespace, objects, connect, teardown) and the CLI driver's calls.

The Kubernetes API side is stubbed; what is checked is the order of steps, what happens when
a step fails, the records kept, and the CLI driver's command lines, files and environment
(a fake ``vcluster`` executable).
"""

from __future__ import annotations

import dataclasses
import json
import stat
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FakeTool

from pytest_vcluster.cluster import lifecycle, recycling
from pytest_vcluster.cluster.drivers import CliDriver
from pytest_vcluster.cluster.evidence import ContainerLog, attached
from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.cluster.inventory import Inventory
from pytest_vcluster.cluster.lifecycle import TeardownAction, VClusterManager
from pytest_vcluster.cluster.recycling import Baseline, RecycleResult
from pytest_vcluster.cluster.reset import HostBaseline
from pytest_vcluster.cluster.seed import SeedError, SeedStore
from pytest_vcluster.cluster.warm import WarmClaim
from pytest_vcluster.core.commands import CommandRunner
from pytest_vcluster.core.errors import (
    CommandError,
    RunInterruptedError,
    StartFailedError,
    VClusterError,
)
from pytest_vcluster.core.interrupts import interrupts
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.host import pausing
from pytest_vcluster.host.kind import HostInfo
from pytest_vcluster.host.namespaces import HostNamespaces
from pytest_vcluster.settings.config import Settings, TeardownMode
from pytest_vcluster.settings.request import VClusterSpec, make_spec
from pytest_vcluster.settings.versions import KubeVersion

FAKE_VCLUSTER = """
log = os.environ["FAKE_VCLUSTER_LOG"]
with open(log, "a") as f:
    f.write(json.dumps({
        "argv": sys.argv[1:],
        "kubeconfig": os.environ.get("KUBECONFIG"),
        "skip": os.environ.get("VCLUSTER_SKIP_VERSION_CHECK"),
        "path0": os.environ["PATH"].split(os.pathsep)[0],
        "extra": os.environ.get("EXTRA"),
    }) + "\\n")
if sys.argv[1] in os.environ.get("FAKE_VCLUSTER_FAIL", "").split(","):
    print("fatal: helm install failed: chart not found", file=sys.stderr)
    sys.exit(1)
"""


class FakeDriver:
    def __init__(self, done: list[str], fail: bool = False) -> None:
        self.done = done
        self.fail = fail
        self.cluster_scoped = False

    def create_objects(
        self,
        name: str,
        namespace: str,
        spec: VClusterSpec,
        *,
        labels: Mapping[str, str],
        directory: Path,
        deadline: Deadline,
        seed: bytes | None = None,
    ) -> bool:
        self.done.append(f"objects {name}" + (" seeded" if seed is not None else ""))
        if self.fail:
            raise VClusterError("cannot create StatefulSet: 422 Invalid")
        return seed is not None

    def delete_objects(self, name: str, namespace: str, deadline: Deadline) -> None:
        self.done.append(f"delete objects {name}")

    def deletable_elsewhere(self, name: str) -> bool:
        return not self.cluster_scoped


def spec(settings: Settings, persistent: bool = True) -> VClusterSpec:
    return make_spec(
        settings,
        slot="test:t.py::test_a:0",
        test="t.py::test_a",
        label="test_a",
        version=KubeVersion(1, 33),
        persistent=persistent,
    )


@pytest.fixture
def done() -> list[str]:
    return []


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, done: list[str]) -> VClusterManager:
    settings = Settings(ready_timeout=30, delete_timeout=30)
    host = HostInfo("kind", "t", tmp_path / "host.kubeconfig", "kind-t", True)
    workdir = tmp_path / "work"
    workdir.mkdir()
    manager = VClusterManager(
        settings, host, run_id="run1", worker="gw0", workdir=workdir, driver=FakeDriver(done)
    )
    monkeypatch.setattr(VClusterManager, "host_api", property(lambda self: object()))
    monkeypatch.setattr(HostNamespaces, "claim_paused", lambda self, *args: None)
    monkeypatch.setattr(
        HostNamespaces, "create", lambda self, ns, labels, test: done.append(f"namespace {ns}")
    )
    monkeypatch.setattr(
        HostNamespaces, "begin_delete", lambda self, ns: done.append(f"delete namespace {ns}")
    )
    monkeypatch.setattr(HostNamespaces, "wait_gone", lambda self, ns, deadline: None)
    monkeypatch.setattr(
        HostNamespaces, "mark", lambda self, ns, state: done.append(f"mark {ns} {state}")
    )
    monkeypatch.setattr(pausing, "pause", lambda api, name, ns: done.append(f"pause {name}"))

    def connect(
        name: str, namespace: str, spec: VClusterSpec, deadline: object, timer: object, *,
        reused: bool,
    ) -> VCluster:  # fmt: skip
        done.append(f"connect {name}")
        manager._connections[name] = lifecycle.Connection(  # as the real one does
            lambda: None,  # type: ignore[arg-type,return-value]
            namespace,
            "app=vcluster",
            manager.workdir,
        )
        return VCluster(
            name, namespace, "v1.33.4", spec.version, Path("/dev/null"), None,  # type: ignore[arg-type]
            spec.spec_hash, persistent=spec.persistent,
        )  # fmt: skip

    monkeypatch.setattr(manager, "_connect", connect)
    monkeypatch.setattr(lifecycle.Connection, "close", lambda self: None)
    return manager


def test_create_makes_namespace_then_objects_then_connects(
    manager: VClusterManager, done: list[str]
) -> None:
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    assert done == [
        f"namespace {handle.namespace}",
        f"objects {handle.name}",
        f"connect {handle.name}",
    ]
    assert manager.stats.counts["created"] == 1
    [record] = manager.stats.clusters
    assert record["name"] == handle.name
    assert record["event"] == "created"
    assert [phase for phase, _ in record["phases"]] == ["objects"]
    assert handle.ready_seconds >= 0


def seeding(manager: VClusterManager, monkeypatch: pytest.MonkeyPatch, done: list[str]) -> None:
    """Turn on the seeded store; copying a store out of a cluster is recorded in ``done``."""
    manager.seeds = SeedStore(manager.workdir / "seeds")

    def capture(core: object, name: str, namespace: str) -> tuple[bytes, bytes | None]:
        done.append(f"capture {name}")
        return b"store of " + name.encode(), None

    monkeypatch.setattr(VClusterManager, "_host_core", property(lambda self: object()))
    monkeypatch.setattr(lifecycle, "capture_store", capture)
    monkeypatch.setattr(lifecycle, "make_seed", lambda store, wal: b"seed from " + store)


def test_the_first_new_cluster_of_a_spec_leaves_the_seed_the_next_start_from(
    manager: VClusterManager, monkeypatch: pytest.MonkeyPatch, done: list[str]
) -> None:
    seeding(manager, monkeypatch, done)
    ephemeral = spec(manager.settings, persistent=False)
    first = manager.create(ephemeral, teardown_on_error=TeardownMode.DELETE)
    second = manager.create(ephemeral, teardown_on_error=TeardownMode.DELETE)
    assert done == [
        f"namespace {first.name}", f"objects {first.name}", f"connect {first.name}",
        f"capture {first.name}",
        f"namespace {second.name}", f"objects {second.name} seeded", f"connect {second.name}",
    ]  # fmt: skip
    assert (first.seeded, second.seeded) == (False, True)
    records = manager.stats.clusters
    assert [record["seeded"] for record in records] == [False, True]
    # The copy is a phase of the first create: its wait was longer than the others'.
    assert [phase for phase, _ in records[0]["phases"]] == ["objects", "seed"]
    [seed] = (manager.workdir / "seeds").iterdir()
    assert seed.read_bytes() == f"seed from store of {first.name}".encode()
    assert seed.name.startswith(ephemeral.spec_hash)


def test_no_seed_for_a_persistent_store_or_when_the_copy_fails(
    manager: VClusterManager,
    monkeypatch: pytest.MonkeyPatch,
    done: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    seeding(manager, monkeypatch, done)
    persistent = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    assert f"capture {persistent.name}" not in done

    def torn(store: bytes, wal: bytes | None) -> bytes:
        raise SeedError("the copied store failed SQLite's integrity check")

    monkeypatch.setattr(lifecycle, "make_seed", torn)
    ephemeral = spec(manager.settings, persistent=False)
    first = manager.create(ephemeral, teardown_on_error=TeardownMode.DELETE)
    second = manager.create(ephemeral, teardown_on_error=TeardownMode.DELETE)
    assert "integrity check" in caplog.text
    assert (first.seeded, second.seeded) == (False, False)
    assert f"capture {second.name}" in done  # the next fresh cluster tries again


@pytest.mark.parametrize(
    ("mode", "deleted"),
    [(TeardownMode.DELETE, True), (TeardownMode.KEEP_ON_FAILURE, False)],
)
def test_failed_create_is_deleted_or_kept(
    manager: VClusterManager, done: list[str], mode: TeardownMode, deleted: bool
) -> None:
    manager.driver = FakeDriver(done, fail=True)
    with pytest.raises(VClusterError, match="422 Invalid"):
        manager.create(spec(manager.settings), teardown_on_error=mode)
    assert any(step.startswith("delete namespace pv-test-a-") for step in done) is deleted
    assert manager.stats.counts["failed"] == 1


@pytest.mark.parametrize(
    ("action", "last", "event"),
    [
        (TeardownAction.DELETE, "delete namespace", "deleted"),
        (TeardownAction.PAUSE, "mark", "paused"),
        (TeardownAction.KEEP, "mark", "kept"),
    ],
)
def test_finish(
    manager: VClusterManager, done: list[str], action: TeardownAction, last: str, event: str
) -> None:
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    manager.finish(handle, action)
    manager.finish(handle, action)  # a second teardown does nothing
    assert done[-1].startswith(last)
    if action is not TeardownAction.DELETE:
        # What a later host cleanup goes by: the namespace says it was left on purpose.
        assert done[-1].endswith(f" {event}")
    assert manager.stats.counts[event] == 1
    assert manager.leftovers() == []
    assert [entry["action"] for entry in manager.stats.teardowns] == [action.value]
    assert not manager._connections  # nothing is kept for a finished cluster


def test_failing_teardown_is_recorded_not_raised(
    manager: VClusterManager, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)

    def broken(api: object, name: str, namespace: str) -> None:
        raise OSError("connection reset by peer")  # not a VClusterError: still contained

    monkeypatch.setattr(pausing, "pause", broken)
    manager.finish(handle, TeardownAction.PAUSE)
    assert "teardown (pause) of vcluster" in caplog.text
    assert manager.stats.counts["paused"] == 0
    [entry] = manager.stats.teardowns
    assert entry["error"] == "OSError: connection reset by peer"


def test_an_ephemeral_cluster_refuses_to_pause(manager: VClusterManager) -> None:
    handle = manager.create(
        spec(manager.settings, persistent=False), teardown_on_error=TeardownMode.DELETE
    )
    with pytest.raises(VClusterError, match="persistent=True"):
        manager.pause(handle)


# -- the CLI driver ----------------------------------------------------------------------------


@pytest.fixture
def cli(fake_tool: FakeTool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliDriver:
    vcluster = fake_tool("vcluster", FAKE_VCLUSTER)
    helm_dir = tmp_path / "helm-bin"
    helm_dir.mkdir()
    helm = helm_dir / "helm"
    helm.write_text("#!/bin/sh\n")
    helm.chmod(helm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_VCLUSTER_LOG", str(tmp_path / "calls.jsonl"))
    chart = tmp_path / "chart"
    chart.mkdir()
    settings = Settings(vcluster_binary=str(vcluster), helm_binary=str(helm), local_chart_dir=chart)
    host = HostInfo("kind", "t", tmp_path / "host.kubeconfig", "kind-t", True)
    workdir = tmp_path / "work"
    workdir.mkdir()
    # An injected runner keeps its own environment and still gets the host's kubeconfig.
    return CliDriver(settings, host, workdir, CommandRunner(env={"EXTRA": "kept"}))


def calls(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_cli_create_uses_helm_driver_private_files_and_the_host(
    cli: CliDriver, tmp_path: Path
) -> None:
    directory = tmp_path / "work" / "vc"
    cli.create_objects(
        "vc", "ns", spec(cli.settings), labels={}, directory=directory, deadline=Deadline(30)
    )
    [call] = calls(tmp_path)
    argv = call["argv"]
    assert isinstance(argv, list)
    assert argv[:2] == ["create", "vc"]
    for flag in ("--connect=false", "--create-namespace=false", "--add=false"):
        assert flag in argv
    assert argv[argv.index("--driver") + 1] == "helm"
    assert argv[argv.index("--namespace") + 1] == "ns"
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
    assert call["extra"] == "kept"
    assert call["path0"] == str(tmp_path / "helm-bin")  # the CLI finds our helm first


def test_cli_create_failure_carries_stderr(
    cli: CliDriver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_VCLUSTER_FAIL", "create")
    with pytest.raises(CommandError, match="chart not found") as info:
        cli.create_objects(
            "vc", "ns", spec(cli.settings), labels={}, directory=tmp_path, deadline=Deadline(30)
        )
    assert info.value.exit_code == 1


def test_cli_delete_failure_is_logged_and_the_namespace_still_goes(
    cli: CliDriver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("FAKE_VCLUSTER_FAIL", "delete")
    cli.delete_objects("vc", "ns", Deadline(30))
    argv = calls(tmp_path)[-1]["argv"]
    assert isinstance(argv, list)
    assert "--ignore-not-found" in argv
    assert "--auto-delete-namespace=false" in argv
    assert "deleting its namespace" in caplog.text


def test_pause_resume_delete_leaves_no_preserved_mark(
    manager: VClusterManager, done: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once counted "paused" for good, which kept a host this run created; now the
    # namespace's label says what it is, and it goes with the namespace.
    monkeypatch.setattr(pausing, "resume", lambda api, name, ns: done.append(f"resume {name}"))
    monkeypatch.setattr(manager, "_pod_probes", lambda name, ns: [])
    monkeypatch.setattr(manager, "_inside_probes", lambda api, name, ns: [])
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    manager.pause(handle)
    manager.resume(handle)
    manager.finish(handle, TeardownAction.DELETE)
    marks = [step for step in done if step.startswith("mark")]
    assert marks == [f"mark {handle.namespace} paused", f"mark {handle.namespace} active"]
    assert done[-1] == f"delete namespace {handle.namespace}"


def test_a_failed_resume_pauses_the_cluster_again_and_keeps_it(
    manager: VClusterManager, done: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HostNamespaces, "claim_paused", lambda self, *args: ("pv-old", "pv-old"))

    def broken_resume(api: object, name: str, namespace: str) -> None:
        raise VClusterError("cannot scale statefulset pv-old: 403 Forbidden")

    monkeypatch.setattr(pausing, "resume", broken_resume)
    with pytest.raises(VClusterError, match="403 Forbidden"):
        manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    assert done == ["pause pv-old", "mark pv-old paused"]
    assert manager.leftovers() == []


def test_ctrl_c_during_create_deletes_what_it_made(
    manager: VClusterManager, done: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> VCluster:
        raise KeyboardInterrupt

    monkeypatch.setattr(manager, "_connect", interrupted)
    with pytest.raises(KeyboardInterrupt):
        manager.create(spec(manager.settings), teardown_on_error=TeardownMode.KEEP_ON_FAILURE)
    assert done[-1].startswith("delete namespace pv-test-a-")
    assert manager.leftovers() == []


def test_close_deletes_a_cluster_nobody_finished(manager: VClusterManager, done: list[str]) -> None:
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    assert manager.leftovers()[0] == f"namespace {handle.namespace} (in use)"
    assert manager.leftovers()[-1].endswith(f"delete namespace {handle.namespace}")
    manager.close()
    assert done[-1] == f"delete namespace {handle.namespace}"
    assert manager.leftovers() == []


def test_no_create_after_an_interrupt(manager: VClusterManager, done: list[str]) -> None:
    interrupts.cancel.set()
    try:
        with pytest.raises(RunInterruptedError):
            manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    finally:
        interrupts.reset()
    assert done == []


def test_a_kept_cluster_whose_label_fails_is_never_deleted_as_stranded(
    manager: VClusterManager, done: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review: a failed "kept" label left the cluster tracked as in use, and close() then
    # deleted the one cluster keep-on-failure was meant to save.
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)

    def refuse(self: HostNamespaces, namespace: str, state: str) -> None:
        raise VClusterError("cannot label namespace: 503 Service Unavailable")

    monkeypatch.setattr(HostNamespaces, "mark", refuse)
    monkeypatch.setattr(lifecycle.time, "sleep", lambda seconds: None)
    manager.finish(handle, TeardownAction.KEEP)
    manager.close()
    assert not any(step.startswith("delete") for step in done)
    assert manager.leftovers() == []
    [entry] = manager.stats.teardowns
    assert "label it with `kubectl label namespace" in str(entry["error"])


def test_a_failed_start_kept_for_inspection_is_untracked_even_if_its_label_fails(
    manager: VClusterManager, done: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    manager.driver = FakeDriver(done, fail=True)

    def refuse(self: HostNamespaces, namespace: str, state: str) -> None:
        raise VClusterError("cannot label namespace: 503 Service Unavailable")

    monkeypatch.setattr(HostNamespaces, "mark", refuse)
    monkeypatch.setattr(lifecycle.time, "sleep", lambda seconds: None)
    with pytest.raises(VClusterError, match="422 Invalid"):
        manager.create(spec(manager.settings), teardown_on_error=TeardownMode.KEEP_ON_FAILURE)
    manager.close()
    assert not any(step.startswith("delete") for step in done)


def test_hand_over_names_the_test_that_now_holds_the_cluster(
    manager: VClusterManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    annotated: list[tuple[str, str]] = []
    monkeypatch.setattr(
        HostNamespaces, "annotate_test", lambda self, ns, test: annotated.append((ns, test))
    )
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    manager.hand_over(handle, "tests/test_b.py::test_b")
    assert annotated == [(handle.namespace, "tests/test_b.py::test_b")]


SYNCER_REFUSED = ContainerLog(
    "vc-0",
    "syncer",
    1,
    True,
    'using secret annotations: get secret: Get "https://10.96.0.1:443/api/v1/namespaces/x/'
    'secrets/vc-config-x": dial tcp 10.96.0.1:443: connect: connection refused',
)
SYNCER_BAD_FLAG = ContainerLog("vc-0", "syncer", 1, True, "Error: unknown flag: --no-such-flag")


def crash_first_start(
    manager: VClusterManager, monkeypatch: pytest.MonkeyPatch, done: list[str], log: ContainerLog
) -> None:
    connect = manager._connect
    attempts: list[str] = []

    def crash_once(name: str, namespace: str, *args: object, **kwargs: object) -> VCluster:
        attempts.append(name)
        if len(attempts) == 1:
            raise StartFailedError(
                f"control plane in namespace {namespace}: pod vc-0 container syncer exited: "
                "Error, exit code 1 (2 times)"
            )
        return connect(name, namespace, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(manager, "_connect", crash_once)
    monkeypatch.setattr(
        manager, "_restarted_logs", lambda name, ns: [log] if len(attempts) == 1 else []
    )


def test_a_crash_for_want_of_the_hosts_api_is_started_again_and_recorded(
    manager: VClusterManager, monkeypatch: pytest.MonkeyPatch, done: list[str]
) -> None:
    crash_first_start(manager, monkeypatch, done, SYNCER_REFUSED)
    handle = manager.create(spec(manager.settings), teardown_on_error=TeardownMode.KEEP_ON_FAILURE)
    # The crashed one went (even under keep-on-failure: the test did not fail), a new one came.
    deleted = [step for step in done if step.startswith("delete namespace")]
    assert len(deleted) == 1
    assert handle.namespace not in deleted[0]
    assert manager.stats.counts["failed"] == 0
    [retry] = manager.stats.retries
    assert retry["reason"].endswith("exited: Error, exit code 1 (2 times)")
    assert "connection refused" in retry["logs"][0]["tail"]
    assert "retried after a transient crash: 1" in "\n".join(manager.stats.summary_lines())


def test_a_deterministic_crash_fails_at_once_with_the_containers_own_words(
    manager: VClusterManager, monkeypatch: pytest.MonkeyPatch, done: list[str]
) -> None:
    crash_first_start(manager, monkeypatch, done, SYNCER_BAD_FLAG)
    with pytest.raises(StartFailedError) as raised:
        manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    message = str(raised.value)
    assert "--- pod vc-0 container syncer, previous run (restarted 1x), last lines ---" in message
    assert message.endswith("Error: unknown flag: --no-such-flag")
    assert attached(raised.value) == [SYNCER_BAD_FLAG]
    assert manager.stats.counts["failed"] == 1
    assert manager.stats.retries == []


def test_a_second_transient_crash_is_not_retried_forever(
    manager: VClusterManager, monkeypatch: pytest.MonkeyPatch, done: list[str]
) -> None:
    def always_crash(name: str, namespace: str, *args: object, **kwargs: object) -> VCluster:
        raise StartFailedError(f"control plane in namespace {namespace}: container exited: Error")

    monkeypatch.setattr(manager, "_connect", always_crash)
    monkeypatch.setattr(manager, "_restarted_logs", lambda name, ns: [SYNCER_REFUSED])
    with pytest.raises(StartFailedError, match="connection refused"):
        manager.create(spec(manager.settings), teardown_on_error=TeardownMode.DELETE)
    assert len(manager.stats.retries) == lifecycle.START_ATTEMPTS - 1
    assert manager.stats.counts["failed"] == 1


def test_the_host_version_is_asked_without_holding_the_managers_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Review: _driver() held the lock across a /version call of up to 15 s, blocking every
    # teardown thread and leftovers() meanwhile.
    settings = Settings()
    host = HostInfo("kind", "t", tmp_path / "host.kubeconfig", "kind-t", True)
    manager = VClusterManager(settings, host, run_id="r", worker="gw0", workdir=tmp_path)
    monkeypatch.setattr(VClusterManager, "host_api", property(lambda self: object()))
    held: list[bool] = []

    def version(self: VClusterManager) -> str:
        def try_lock() -> None:  # what a teardown thread would do meanwhile
            acquired = self._lock.acquire(timeout=0.1)
            held.append(not acquired)
            if acquired:
                self._lock.release()

        other = threading.Thread(target=try_lock)
        other.start()
        other.join(5)
        return "v1.34.4"

    monkeypatch.setattr(VClusterManager, "_host_version", version)
    assert manager._driver() is manager._driver()
    assert held == [False]


# -- the warm pool ------------------------------------------------------------------------

WARM_BASELINE = Baseline(Inventory({}, {}), HostBaseline("ns", {}), 0.3)


@dataclass
class FakeWarm:
    """The host's warm clusters as the manager sees them through WarmClusters."""

    warm: int = 0
    parked: list[tuple[str, int]] = field(default_factory=list)
    idle_for: list[float] = field(default_factory=list)
    claims: list[WarmClaim] = field(default_factory=list)

    def count(self, spec_hash: str) -> int:
        return self.warm + len(self.parked)

    def park(
        self, namespace: str, baseline: Baseline, tests_before: int, *, idle_for: float = 0.0
    ) -> None:
        self.parked.append((namespace, tests_before))
        self.idle_for.append(idle_for)

    def claim(self, spec_hash: str, test: str) -> WarmClaim | None:
        return self.claims.pop(0) if self.claims else None


@pytest.fixture
def warm_host(
    manager: VClusterManager, monkeypatch: pytest.MonkeyPatch
) -> tuple[FakeWarm, list[dict[str, Any]]]:
    """Warm pool of 1 on; what reset_to_baseline was asked, and its answers (clean unless
    a test says otherwise)."""
    fake = FakeWarm()
    resets: list[dict[str, Any]] = []
    manager.settings = dataclasses.replace(manager.settings, warm_pool=1)
    monkeypatch.setattr(VClusterManager, "warm", property(lambda self: fake))

    def reset(api: object, host: object, namespace: str, baseline: Baseline, **kwargs: Any) -> Any:
        resets.append({"namespace": namespace, **kwargs})
        reasons = tuple(kwargs.pop("_reasons", ()))
        # The last test's last use: 2 s before the reset ended.
        return RecycleResult(not reasons, reasons, 0.2, last_use=time.monotonic() - 2.0)

    monkeypatch.setattr(lifecycle, "reset_to_baseline", reset)
    return fake, resets


def ephemeral(manager: VClusterManager) -> VClusterSpec:
    return dataclasses.replace(spec(manager.settings, persistent=False), recycle=True)


def test_a_cluster_parks_warm_after_a_reset_without_waiting_for_the_token_caches(
    manager: VClusterManager, done: list[str], warm_host: tuple[FakeWarm, list[dict[str, Any]]]
) -> None:
    fake, resets = warm_host
    handle = manager.create(ephemeral(manager), teardown_on_error=TeardownMode.DELETE)
    handle._baseline = WARM_BASELINE
    handle.tests_before = 2

    manager.park(handle, used=True)

    assert resets[0]["auth_cache"] == 0.0  # the adopting run waits them out itself
    assert fake.parked == [(handle.namespace, 3)]
    # The parking time is the last test's last use: what the token caches count from.
    assert fake.idle_for[0] == pytest.approx(2.0, abs=0.5)
    assert not any(step.startswith("delete") for step in done)
    assert manager.stats.counts["parked"] == 1
    assert manager.leftovers() == []  # no longer this run's
    assert not manager._connections
    assert [entry["action"] for entry in manager.stats.teardowns] == ["park"]


def test_a_full_pool_or_an_unproven_reset_deletes_the_cluster_instead(
    manager: VClusterManager,
    done: list[str],
    warm_host: tuple[FakeWarm, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, resets = warm_host
    fake.warm = 1
    full = manager.create(ephemeral(manager), teardown_on_error=TeardownMode.DELETE)
    full._baseline = WARM_BASELINE
    manager.park(full, used=True)
    assert resets == []  # no reset for a cluster that cannot be parked
    assert f"delete namespace {full.namespace}" in done

    fake.warm = 0
    assert isinstance(manager.driver, FakeDriver)
    manager.driver.cluster_scoped = True  # e.g. a ClusterRole only this process knows of
    scoped = manager.create(ephemeral(manager), teardown_on_error=TeardownMode.DELETE)
    scoped._baseline = WARM_BASELINE
    manager.park(scoped, used=True)
    assert f"delete namespace {scoped.namespace}" in done
    manager.driver.cluster_scoped = False

    fake.warm = 0
    monkeypatch.setattr(
        lifecycle, "reset_to_baseline",
        lambda *a, **k: RecycleResult(False, ("changed: ServiceAccount default/default",), 0.2),
    )  # fmt: skip
    unproven = manager.create(ephemeral(manager), teardown_on_error=TeardownMode.DELETE)
    unproven._baseline = WARM_BASELINE
    manager.park(unproven, used=True)
    assert f"delete namespace {unproven.namespace}" in done
    assert fake.parked == []
    assert manager.stats.counts["parked"] == 0


def test_a_create_adopts_a_proven_warm_cluster_instead(
    manager: VClusterManager, done: list[str], warm_host: tuple[FakeWarm, list[dict[str, Any]]]
) -> None:
    fake, resets = warm_host
    fake.claims.append(WarmClaim("pv-w", "pv-w", WARM_BASELINE, tests_before=4, hold_seconds=3.0))

    handle = manager.create(ephemeral(manager), teardown_on_error=TeardownMode.DELETE)

    assert done == ["connect pv-w"]  # no namespace, no objects: nothing was created
    assert (handle.warm, handle.recycled, handle.tests_before) == (True, True, 4)
    assert handle._baseline is WARM_BASELINE
    # The caches forget the last test 3 s after the claim: the reset holds until then.
    idle_since = resets[0]["idle_since"]
    assert idle_since + recycling.AUTH_CACHE_SECONDS - time.monotonic() == pytest.approx(3.0, abs=1)
    assert manager.stats.counts["adopted"] == 1
    assert manager.stats.ready_seconds == []  # an adoption is no start
    assert manager.stats.clusters[0]["event"] == "adopted"


def test_an_adopted_cluster_recycled_for_a_later_test_is_no_longer_warm(
    manager: VClusterManager, warm_host: tuple[FakeWarm, list[dict[str, Any]]]
) -> None:
    fake, _ = warm_host
    fake.claims.append(WarmClaim("pv-w", "pv-w", WARM_BASELINE, tests_before=4, hold_seconds=0.0))
    handle = manager.create(ephemeral(manager), teardown_on_error=TeardownMode.DELETE)
    assert handle.warm is True
    assert manager.recycle(handle, ephemeral(manager)).recycled
    assert (handle.warm, handle.recycled, handle.tests_before) == (False, True, 5)


def test_a_warm_cluster_that_fails_its_proof_is_deleted_and_a_new_one_created(
    manager: VClusterManager,
    done: list[str],
    warm_host: tuple[FakeWarm, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, _ = warm_host
    fake.claims += [
        WarmClaim("pv-u", "pv-u", None, 1, 0.0, problem="its stored baseline cannot be read"),
        WarmClaim("pv-c", "pv-c", WARM_BASELINE, 1, 0.0),
    ]
    monkeypatch.setattr(
        lifecycle, "reset_to_baseline",
        lambda *a, **k: RecycleResult(False, ("added: Namespace poked",), 0.2),
    )  # fmt: skip

    handle = manager.create(ephemeral(manager), teardown_on_error=TeardownMode.DELETE)

    assert "delete namespace pv-u" in done
    assert "delete namespace pv-c" in done
    assert handle.warm is False
    assert f"namespace {handle.namespace}" in done  # created after all
    assert manager.stats.counts["adopted"] == 0


def test_without_the_warm_pool_nothing_is_claimed_or_parked(
    manager: VClusterManager, done: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: object) -> object:
        raise AssertionError("the warm pool is off")

    monkeypatch.setattr(VClusterManager, "warm", property(refuse))
    handle = manager.create(ephemeral(manager), teardown_on_error=TeardownMode.DELETE)
    assert manager.parks(ephemeral(manager)) is False
    manager.settings = dataclasses.replace(manager.settings, warm_pool=2)
    assert manager.parks(ephemeral(manager)) is True
    # A persistent cluster may be paused and resumed, and a test may ask for a fresh one:
    # neither is ever warm.
    assert manager.parks(dataclasses.replace(ephemeral(manager), persistent=True)) is False
    assert manager.parks(dataclasses.replace(ephemeral(manager), recycle=False)) is False
    manager.finish(handle, TeardownAction.DELETE)
