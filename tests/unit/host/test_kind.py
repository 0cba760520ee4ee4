"""The kind host shared by processes through machine-wide leases, driven by a fake ``kind``."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeTool

from pytest_vcluster.core.commands import CommandRunner
from pytest_vcluster.core.errors import CommandError, HostError
from pytest_vcluster.core.files import write_private
from pytest_vcluster.core.processes import ProcessId, start_time
from pytest_vcluster.host.acquire import ExistingHost, SharedKindHost, make_host
from pytest_vcluster.host.kind import HostInfo, check_docker, kind_config
from pytest_vcluster.settings.config import Settings

FAKE_KIND = """
state_path = os.environ["FAKE_KIND_STATE"]
try:
    with open(state_path) as f:
        state = json.load(f)
except FileNotFoundError:
    state = {"clusters": [], "calls": []}
args = sys.argv[1:]
state["calls"].append(args)
code = 0
if args[:2] == ["get", "clusters"]:
    print("\\n".join(state["clusters"]))
elif args[:2] == ["create", "cluster"]:
    time.sleep(0.2)
    if os.environ.get("FAKE_KIND_FAIL"):
        print("ERROR: failed to create cluster: boom", file=sys.stderr)
        code = 1
    else:
        state["clusters"].append(args[args.index("--name") + 1])
elif args[:2] == ["get", "kubeconfig"]:
    print("apiVersion: v1\\nkind: Config\\n")
elif args[:2] == ["delete", "cluster"]:
    state["clusters"].remove(args[args.index("--name") + 1])
with open(state_path, "w") as f:
    json.dump(state, f)
sys.exit(code)
"""


class FakeKind:
    def __init__(self, fake_tool: FakeTool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.path = fake_tool("kind", FAKE_KIND)
        self.state = tmp_path / "kind-state.json"
        monkeypatch.setenv("FAKE_KIND_STATE", str(self.state))

    def calls(self, verb: str) -> list[list[str]]:
        if not self.state.exists():
            return []
        calls: list[list[str]] = json.loads(self.state.read_text())["calls"]
        return [call for call in calls if call[0] == verb]

    @property
    def clusters(self) -> list[str]:
        return list(json.loads(self.state.read_text())["clusters"]) if self.state.exists() else []

    def preexisting(self, name: str) -> None:
        self.state.write_text(json.dumps({"clusters": [name], "calls": []}))


@pytest.fixture
def kind(fake_tool: FakeTool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKind:
    return FakeKind(fake_tool, tmp_path, monkeypatch)


def docker_ok() -> None:
    pass


@pytest.fixture
def other_process() -> Iterator[ProcessId]:
    """A live process other than this one (another pytest run on the machine)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield ProcessId(child.pid, start_time(child.pid))
    finally:
        child.kill()
        child.wait(timeout=10)


def dead_process() -> ProcessId:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = start_time(child.pid)
    child.wait(timeout=10)
    return ProcessId(child.pid, started)


def shared(
    kind: FakeKind,
    root: Path,
    *,
    run: str = "run1",
    worker: str = "master",
    process: ProcessId | None = None,
    preserved: int = 0,
    ready_check: Callable[[HostInfo], list[str]] | None = None,
    **settings: object,
) -> SharedKindHost:
    values: dict[str, object] = {"kind_binary": str(kind.path), "host_name": "t"}
    values.update(settings)
    host = SharedKindHost(
        Settings(**values),  # type: ignore[arg-type]
        state_root=root,
        run_id=run,
        worker=worker,
        docker_check=docker_ok,
        preserved=lambda info: preserved,
        ready_check=ready_check or (lambda info: ["ready"]),
    )
    if process is not None:
        host.process = process
    return host


def leases(root: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((root / "hosts" / "t" / "state.json").read_text())
    return data


def test_first_user_creates_with_private_kubeconfig(kind: FakeKind, tmp_path: Path) -> None:
    info = shared(kind, tmp_path, node_image="kindest/node:v1.34.0").acquire()
    assert info.created
    assert info.mode == "kind"
    assert info.context == "kind-t"
    assert kind.clusters == ["t"]
    [create] = kind.calls("create")
    assert create[create.index("--image") + 1] == "kindest/node:v1.34.0"
    assert create[create.index("--kubeconfig") + 1] == str(info.kubeconfig)
    assert Path(create[create.index("--config") + 1]).read_text() == kind_config()
    assert info.kubeconfig.parent == tmp_path / "hosts" / "t"
    assert stat.S_IMODE(info.kubeconfig.stat().st_mode) == 0o600
    assert stat.S_IMODE(info.kubeconfig.parent.stat().st_mode) == 0o700


def test_last_live_process_deletes_the_host(
    kind: FakeKind, tmp_path: Path, other_process: ProcessId
) -> None:
    mine = shared(kind, tmp_path)
    theirs = shared(kind, tmp_path, run="run2", process=other_process)
    assert mine.acquire().created
    assert not theirs.acquire().created  # another run's host: used, not ours
    assert len(kind.calls("create")) == 1
    mine.release()
    assert kind.clusters == ["t"]
    assert mine.summary_line() == (
        "kind host 't': created by this run in "
        f"{leases(tmp_path)['create_seconds']}s; "
        "left in place for 1 other live process(es) using it"
    )
    theirs.release()
    assert kind.clusters == []
    assert theirs.summary_line() == "kind host 't': created by an earlier run; deleted (last user)"


def test_leases_of_dead_processes_are_pruned(kind: FakeKind, tmp_path: Path) -> None:
    crashed = shared(kind, tmp_path, run="crashed", process=dead_process())
    crashed.acquire()  # then SIGKILLed: it never releases
    mine = shared(kind, tmp_path)
    mine.acquire()
    assert list(leases(tmp_path)["leases"]) == [mine.process.key]  # type: ignore[arg-type]
    mine.release()
    assert kind.clusters == []


def test_a_reused_pid_is_not_the_process_that_held_the_lease(tmp_path: Path) -> None:
    me = ProcessId.current()
    assert me.alive()
    assert not ProcessId(me.pid, "1").alive()  # same pid, other start time
    assert not dead_process().alive()


def test_xdist_controller_holds_the_host_for_its_workers(kind: FakeKind, tmp_path: Path) -> None:
    controller = shared(kind, tmp_path, worker="master")
    controller.hold()
    worker = shared(kind, tmp_path, worker="gw0")
    # Workers are other processes; in this test they share the pid, so give them a key.
    worker.process = ProcessId(ProcessId.current().pid, None)
    assert worker.acquire().created
    worker.release()
    assert kind.clusters == ["t"]  # the controller still holds it
    controller.release()
    assert kind.clusters == []


def test_concurrent_acquire_creates_once(kind: FakeKind, tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            shared(kind, tmp_path).acquire()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(kind.calls("create")) == 1


def test_keep_host(kind: FakeKind, tmp_path: Path) -> None:
    host = shared(kind, tmp_path, keep_host=True)
    host.acquire()
    host.release()
    assert kind.clusters == ["t"]
    assert host.summary_line() == (
        f"kind host 't': created by this run in {leases(tmp_path)['create_seconds']}s; "
        "kept (--vcluster-keep-host)"
    )


def test_host_holding_paused_or_kept_vclusters_is_kept(kind: FakeKind, tmp_path: Path) -> None:
    host = shared(kind, tmp_path, preserved=2)
    host.acquire()
    host.release()
    assert kind.clusters == ["t"]
    assert kind.calls("delete") == []
    assert "kept: it holds 2 paused, kept or warm vcluster(s)" in (host.summary_line() or "")


def test_host_not_created_by_us_is_never_deleted(kind: FakeKind, tmp_path: Path) -> None:
    kind.preexisting("t")
    host = shared(kind, tmp_path)
    assert not host.acquire().created
    assert kind.calls("create") == []
    host.release()
    assert kind.clusters == ["t"]
    assert host.summary_line() == (
        "kind host 't': existed before pytest-vcluster used it; left in place"
    )


def test_failed_creation_fails_the_run_once_and_a_new_run_retries(
    kind: FakeKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_KIND_FAIL", "1")
    with pytest.raises(CommandError, match="boom") as first:
        shared(kind, tmp_path).acquire()
    with pytest.raises(HostError) as second:
        shared(kind, tmp_path, worker="gw1").acquire()
    assert str(second.value) == str(first.value)  # the same message, without retrying
    assert len(kind.calls("create")) == 1
    monkeypatch.delenv("FAKE_KIND_FAIL")
    assert shared(kind, tmp_path, run="run2").acquire().created


def test_interrupted_creation_removes_the_half_made_host(kind: FakeKind, tmp_path: Path) -> None:
    class InterruptedRunner(CommandRunner):
        def run(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
            result = super().run(args, **kwargs)
            if list(args[1:3]) == ["create", "cluster"]:
                raise KeyboardInterrupt  # Ctrl-C while kind was still waiting for the node
            return result

    host = shared(kind, tmp_path)
    host.runner_factory = InterruptedRunner
    with pytest.raises(KeyboardInterrupt):
        host.acquire()
    assert kind.clusters == []
    assert len(kind.calls("delete")) == 1
    assert leases(tmp_path)["leases"] == {}


def test_docker_unreachable_stops_before_kind(kind: FakeKind, tmp_path: Path) -> None:
    def no_docker() -> None:
        check_docker(ping=lambda: (_ for _ in ()).throw(ConnectionRefusedError("refused")))

    host = shared(kind, tmp_path)
    host.docker_check = no_docker
    with pytest.raises(HostError, match=r"Docker is not reachable .*refused.*Install Docker"):
        host.acquire()
    assert kind.calls("create") == []


def test_existing_host_is_never_created_or_deleted(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    host = make_host(
        Settings(host_kubeconfig=kubeconfig, host_context="ctx"),
        state_root=tmp_path,
        run_id="r",
        worker="master",
    )
    assert isinstance(host, ExistingHost)
    assert host.tools == ("vcluster", "helm")
    assert host.header_line() == f"existing host, kubeconfig {kubeconfig}, context ctx"
    host.hold()
    host.release()
    assert host.summary_line() is None
    assert not (tmp_path / "hosts").exists()


def test_check_docker_passes_when_ping_works() -> None:
    check_docker(ping=lambda: True)


def test_write_private_tightens_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "secret"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_new_host_is_handed_out_only_once_it_is_ready(kind: FakeKind, tmp_path: Path) -> None:
    # The syncer exits when it starts before pods can reach the host's API: the host is
    # checked ready (kube-proxy, CoreDNS, storage) before anyone gets it.
    checked: list[str] = []

    def ready(info: HostInfo) -> list[str]:
        checked.append(info.name)
        return ["ok"]

    host = shared(kind, tmp_path, ready_check=ready)
    host.acquire()
    assert checked == ["t"]
    assert host.readiness == ["ok"]


def test_a_host_this_run_made_that_never_gets_ready_is_removed(
    kind: FakeKind, tmp_path: Path
) -> None:
    def never(info: HostInfo) -> list[str]:
        raise HostError("the host is not ready to run vclusters: CoreDNS not Ready")

    host = shared(kind, tmp_path, ready_check=never)
    with pytest.raises(HostError, match="not ready to run vclusters"):
        host.acquire()
    assert kind.calls("delete")
    assert kind.clusters == []
    assert not host.leases.read().created
    assert host.leases.read().leases == {}
