"""The kind host and its lease among processes, driven by a fake ``kind`` executable."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest
from conftest import FakeTool

from pytest_vcluster.config import Settings
from pytest_vcluster.errors import CommandError, HostError
from pytest_vcluster.host import HostLease, check_docker, kind_config, write_private

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


def lease(kind: FakeKind, state_dir: Path, **settings: object) -> HostLease:
    values: dict[str, object] = {"kind_binary": str(kind.path), "host_name": "t"}
    values.update(settings)
    return HostLease(Settings(**values), state_dir, docker_check=docker_ok)  # type: ignore[arg-type]


def test_first_user_creates_with_private_kubeconfig(kind: FakeKind, tmp_path: Path) -> None:
    info = lease(kind, tmp_path / "run", node_image="kindest/node:v1.34.0").acquire()
    assert info.created
    assert info.mode == "kind"
    assert info.context == "kind-t"
    assert kind.clusters == ["t"]
    [create] = kind.calls("create")
    assert create[create.index("--image") + 1] == "kindest/node:v1.34.0"
    assert create[create.index("--kubeconfig") + 1] == str(info.kubeconfig)
    assert Path(create[create.index("--config") + 1]).read_text() == kind_config()
    assert info.kubeconfig.parent == tmp_path / "run"
    assert stat.S_IMODE(info.kubeconfig.stat().st_mode) == 0o600


def test_workers_share_one_host_and_controller_deletes(kind: FakeKind, tmp_path: Path) -> None:
    state_dir = tmp_path / "run"
    gw0, gw1 = lease(kind, state_dir), lease(kind, state_dir)
    assert gw0.acquire().created
    assert gw1.acquire().created  # created by this run, even if by another worker
    assert len(kind.calls("create")) == 1
    assert not gw0.release(may_delete=False)
    assert not gw1.release(may_delete=False)
    assert kind.clusters == ["t"]
    controller = lease(kind, state_dir)
    assert controller.finalize()
    assert kind.clusters == []
    assert not controller.finalize()  # idempotent
    assert len(kind.calls("delete")) == 1


def test_concurrent_acquire_creates_once(kind: FakeKind, tmp_path: Path) -> None:
    state_dir = tmp_path / "run"
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            lease(kind, state_dir).acquire()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(kind.calls("create")) == 1
    state = json.loads((state_dir / "pytest-vcluster-host-t.json").read_text())
    assert state["users"] == 4


def test_last_user_deletes_in_a_single_process(kind: FakeKind, tmp_path: Path) -> None:
    state_dir = tmp_path / "run"
    first, second = lease(kind, state_dir), lease(kind, state_dir)
    first.acquire()
    second.acquire()
    assert not first.release(may_delete=True)  # one user left
    assert kind.clusters == ["t"]
    assert second.release(may_delete=True)
    assert kind.clusters == []


def test_keep_host(kind: FakeKind, tmp_path: Path) -> None:
    host = lease(kind, tmp_path / "run", keep_host=True)
    host.acquire()
    assert not host.release(may_delete=True)
    assert not host.finalize()
    assert kind.clusters == ["t"]


def test_host_holding_paused_or_kept_vclusters_is_kept(kind: FakeKind, tmp_path: Path) -> None:
    host = lease(kind, tmp_path / "run")
    host.acquire()
    assert not host.release(may_delete=True, preserved=1)
    assert kind.clusters == ["t"]
    assert kind.calls("delete") == []


def test_controller_keeps_host_when_any_worker_preserved(kind: FakeKind, tmp_path: Path) -> None:
    state_dir = tmp_path / "run"
    gw0, gw1 = lease(kind, state_dir), lease(kind, state_dir)
    gw0.acquire()
    gw1.acquire()
    gw0.release(may_delete=False, preserved=0)
    gw1.release(may_delete=False, preserved=2)
    assert not lease(kind, state_dir).finalize()
    assert kind.clusters == ["t"]


def test_outcome_names_the_creator_and_the_fate(kind: FakeKind, tmp_path: Path) -> None:
    state_dir = tmp_path / "run"
    gw1 = HostLease(
        Settings(kind_binary=str(kind.path), host_name="t"),
        state_dir,
        docker_check=docker_ok,
        owner="gw1",
    )
    gw1.acquire()
    gw1.release(may_delete=False, preserved=1)
    outcome = lease(kind, state_dir).outcome()
    assert outcome is not None
    assert outcome.startswith("kind host 't': created by gw1 in ")
    assert outcome.endswith("kept: it holds 1 paused or kept vcluster(s)")


def test_outcome_of_a_preexisting_host(kind: FakeKind, tmp_path: Path) -> None:
    kind.preexisting("t")
    host = lease(kind, tmp_path / "run")
    assert host.outcome() is None  # nothing acquired yet
    host.acquire()
    host.release(may_delete=True)
    assert host.outcome() == "kind host 't': existed before the run; reused and left in place"


def test_host_not_created_by_us_is_never_deleted(kind: FakeKind, tmp_path: Path) -> None:
    kind.preexisting("t")
    host = lease(kind, tmp_path / "run")
    assert not host.acquire().created
    assert kind.calls("create") == []
    assert not host.release(may_delete=True)
    assert not host.finalize()
    assert kind.clusters == ["t"]


def test_failed_creation_is_shared_with_other_workers(
    kind: FakeKind, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_KIND_FAIL", "1")
    state_dir = tmp_path / "run"
    with pytest.raises(CommandError, match="boom"):
        lease(kind, state_dir).acquire()
    with pytest.raises(HostError, match=r"(?s)could not be created earlier.*boom"):
        lease(kind, state_dir).acquire()
    assert len(kind.calls("create")) == 1


def test_docker_unreachable_stops_before_kind(kind: FakeKind, tmp_path: Path) -> None:
    def no_docker() -> None:
        check_docker(ping=lambda: (_ for _ in ()).throw(ConnectionRefusedError("refused")))

    host = HostLease(
        Settings(kind_binary=str(kind.path), host_name="t"),
        tmp_path / "run",
        docker_check=no_docker,
    )
    with pytest.raises(HostError, match=r"Docker is not reachable .*refused.*Install Docker"):
        host.acquire()
    assert kind.calls("create") == []


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
