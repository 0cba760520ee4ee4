"""The seeded store: what a seed keeps of a copied kine store, and how a control plane gets it.

The stores here are made with kine's own schema (the statements its SQLite driver runs), so
the cleaning runs on the same tables and indexes a real ``/data/state.db`` has.
"""

from __future__ import annotations

import copy
import io
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pytest_vcluster.cluster.drivers import ApiDriver
from pytest_vcluster.cluster.seed import (
    SeedError,
    SeedStore,
    make_seed,
    seed_applies,
    seed_secret,
    seeded_objects,
    store_copy,
)
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.settings.request import VClusterSpec
from pytest_vcluster.settings.values import EPHEMERAL_VALUES

KINE_SCHEMA = (
    """CREATE TABLE kine (
        id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, created INTEGER, deleted INTEGER,
        create_revision INTEGER, prev_revision INTEGER, lease INTEGER, value BLOB,
        old_value BLOB)""",
    "CREATE INDEX kine_name_index ON kine (name)",
    "CREATE INDEX kine_name_id_index ON kine (name,id)",
    "CREATE INDEX kine_id_deleted_index ON kine (id,deleted)",
    "CREATE INDEX kine_prev_revision_index ON kine (prev_revision)",
    "CREATE UNIQUE INDEX kine_name_prev_revision_uindex ON kine (name, prev_revision)",
)

REQUIRED = (
    "/registry/namespaces/default",
    "/registry/namespaces/kube-system",
    "/registry/serviceaccounts/default/default",
    "/registry/clusterroles/cluster-admin",
)

INSTANCE = (
    "/registry/leases/kube-system/apiserver-abc",
    "/registry/pods/kube-system/coredns-1",
    "/registry/minions/node-1",
    "/registry/events/default/e1",
    "/registry/configmaps/default/kube-root-ca.crt",
    "/registry/configmaps/kube-system/extension-apiserver-authentication",
    "/registry/services/specs/default/kubernetes",
    "/registry/ranges/serviceips",
    "/registry/servicecidrs/kubernetes",
    "/registry/deployments/kube-system/coredns",
    "/registry/replicasets/kube-system/coredns-5d9",
    "/vcluster/mappings/x",
)


class Kine:
    """A kine store being written: each write is a new row, as kine does."""

    def __init__(self, path: Path, *, wal: bool = False) -> None:
        self.connection = sqlite3.connect(path)
        if wal:
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA wal_autocheckpoint=0")
        for statement in KINE_SCHEMA:
            self.connection.execute(statement)
        self.latest: dict[str, int] = {}

    def write(self, name: str, value: bytes, *, deleted: bool = False) -> None:
        previous = self.latest.get(name, 0)
        cursor = self.connection.execute(
            "INSERT INTO kine (name, created, deleted, create_revision, prev_revision, lease,"
            " value, old_value) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
            (name, int(not previous), int(deleted), previous, previous, value, b"old"),
        )
        self.latest[name] = int(cursor.lastrowid or 0)
        self.connection.commit()


def rows(seed: bytes, tmp_path: Path) -> list[tuple[Any, ...]]:
    path = tmp_path / "seed.db"
    path.write_bytes(seed)
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return connection.execute(
            "SELECT id, name, created, deleted, create_revision, prev_revision, value, old_value"
            " FROM kine ORDER BY id"
        ).fetchall()
    finally:
        connection.close()


def ready_store(path: Path, *, wal: bool = False) -> Kine:
    kine = Kine(path, wal=wal)
    for name in REQUIRED:
        kine.write(name, b"v1 " + name.encode())
    for name in INSTANCE:
        kine.write(name, b"instance")
    kine.write("/registry/clusterroles/cluster-admin", b"v2")
    kine.write("/registry/priorityclasses/gone", b"x")
    kine.write("/registry/priorityclasses/gone", b"", deleted=True)
    return kine


def test_a_seed_keeps_the_newest_value_of_each_shared_object_numbered_from_one(
    tmp_path: Path,
) -> None:
    ready_store(tmp_path / "state.db").connection.close()
    seed = make_seed((tmp_path / "state.db").read_bytes())
    found = rows(seed, tmp_path)
    names = [row[1] for row in found]
    assert sorted(names[:-1]) == sorted(REQUIRED)
    assert [row[0] for row in found] == list(range(1, len(REQUIRED) + 2))
    by_name = {row[1]: row for row in found}
    assert by_name["/registry/clusterroles/cluster-admin"][6] == b"v2"
    for revision, row in enumerate(found[:-1], 1):
        # Each a create at its own revision, no history behind it.
        assert row[2:6] == (1, 0, revision, 0), row
        assert row[7] == b""
    assert found[-1][1:6] == ("compact_rev_key", 0, 0, 0, len(REQUIRED))


def test_a_seed_holds_nothing_of_its_cluster(tmp_path: Path) -> None:
    ready_store(tmp_path / "state.db").connection.close()
    names = {row[1] for row in rows(make_seed((tmp_path / "state.db").read_bytes()), tmp_path)}
    assert names.isdisjoint(INSTANCE)
    assert "/registry/priorityclasses/gone" not in names  # deleted before the copy


def test_writes_still_in_the_write_ahead_log_are_in_the_seed(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    kine = ready_store(live / "state.db", wal=True)
    kine.write("/registry/clusterroles/cluster-admin", b"v3")
    # Copied while kine still holds the store open, as the capture does.
    store = (live / "state.db").read_bytes()
    wal = (live / "state.db-wal").read_bytes()
    kine.connection.close()
    found = {row[1]: row[6] for row in rows(make_seed(store, wal), tmp_path)}
    assert found["/registry/clusterroles/cluster-admin"] == b"v3"
    # Nothing was checkpointed: without its log the store file has not even the table.
    with pytest.raises(SeedError, match="no such table"):
        make_seed(store)


def test_a_store_copied_before_the_cluster_was_ready_is_no_seed(tmp_path: Path) -> None:
    kine = Kine(tmp_path / "state.db")
    kine.write("/registry/namespaces/default", b"x")
    kine.connection.close()
    with pytest.raises(SeedError, match="serviceaccounts/default/default"):
        make_seed((tmp_path / "state.db").read_bytes())


def test_a_torn_copy_is_no_seed(tmp_path: Path) -> None:
    ready_store(tmp_path / "state.db").connection.close()
    store = (tmp_path / "state.db").read_bytes()
    with pytest.raises(SeedError):
        make_seed(store[: len(store) // 2] + b"\0" * (len(store) - len(store) // 2))


def test_seeds_are_shared_whole_by_spec(tmp_path: Path) -> None:
    store = SeedStore(tmp_path / "seeds")
    assert store.get("h1") is None
    store.put("h1", b"seed one")
    store.put("h1", b"seed two")
    assert store.get("h1") == b"seed two"
    assert store.get("h2") is None
    assert [path.name for path in (tmp_path / "seeds").iterdir()] == ["h1.db"]


def test_only_an_emptydir_store_of_the_k8s_distro_takes_a_seed() -> None:
    assert seed_applies(EPHEMERAL_VALUES)
    assert not seed_applies({})  # a volume claim: a persistent store is never overwritten
    k3s = {**EPHEMERAL_VALUES, "controlPlane": {
        **EPHEMERAL_VALUES["controlPlane"], "distro": {"k3s": {"enabled": True}}}}  # fmt: skip
    assert not seed_applies(k3s)
    etcd = copy.deepcopy(dict(EPHEMERAL_VALUES))
    etcd["controlPlane"]["backingStore"] = {"etcd": {"deploy": {"enabled": True}}}
    assert not seed_applies(etcd)


def control_plane(name: str = "vc-a") -> dict[str, Any]:
    """The chart's control plane for an emptyDir store, as ``helm template`` renders it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": "vcluster", "release": name}},
        "spec": {"template": {"spec": {
            "initContainers": [{
                "name": "kubernetes", "image": "k8s:1", "command": ["cp"],
                "args": ["-r", "/kubernetes/.", "/binaries/"],
                "volumeMounts": [{"name": "binaries", "mountPath": "/binaries"}],
            }],
            "containers": [{"name": "syncer", "volumeMounts": [
                {"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "binaries", "emptyDir": {}}, {"name": "data", "emptyDir": {}}],
        }}},
    }  # fmt: skip


def test_the_init_container_copies_the_seed_into_the_store_with_the_binaries() -> None:
    service = {"kind": "Service", "metadata": {"name": "vc-a"}}
    original = control_plane()
    patched = seeded_objects("vc-a", [service, original])
    assert patched[0] is service
    assert original == control_plane()  # the rendered objects are not changed in place
    pod = patched[1]["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["command"] == ["cp"]
    # One copy, one destination: the seed directory holds data/state.db, and the store's
    # volume is mounted at /binaries/data.
    assert init["args"] == ["-r", "/kubernetes/.", "/pytest-vcluster-seed/seed/.", "/binaries/"]
    assert {"name": "data", "mountPath": "/binaries/data"} in init["volumeMounts"]
    seed_volume = next(v for v in pod["volumes"] if v["name"] == "pytest-vcluster-seed")
    assert seed_volume["secret"] == {
        "secretName": "vc-a-seed",
        "items": [{"key": "state.db", "path": "seed/data/state.db"}],
    }
    assert pod["containers"] == control_plane()["spec"]["template"]["spec"]["containers"]


def test_a_control_plane_it_does_not_know_gets_no_seed() -> None:
    with pytest.raises(SeedError, match="rendered no control plane"):
        seeded_objects("vc-a", [control_plane("other")])
    shelled = control_plane()
    shelled["spec"]["template"]["spec"]["initContainers"][0]["command"] = ["sh", "-c"]
    with pytest.raises(SeedError, match="running cp"):
        seeded_objects("vc-a", [shelled])
    claimed = control_plane()
    claimed["spec"]["template"]["spec"]["volumes"].pop()
    with pytest.raises(SeedError, match="emptyDir"):
        seeded_objects("vc-a", [claimed])


class _Renderer:
    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects

    def render(self, *args: object) -> list[dict[str, Any]]:
        return copy.deepcopy(self.objects)


class _Applier:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def create(self, obj: dict[str, Any], namespace: str, labels: object) -> Any:
        self.created.append(obj)
        return type("Created", (), {"namespace": namespace})()


def _create(objects: list[dict[str, Any]], seed: bytes | None, tmp_path: Path) -> Any:
    driver = ApiDriver(_Renderer(objects), object())  # type: ignore[arg-type]
    applier = _Applier()
    driver.applier = applier  # type: ignore[assignment]
    spec = VClusterSpec(values={}, spec_hash="h", slot="s", test="t", label="l")
    seeded = driver.create_objects(
        "vc-a", "vc-a", spec, labels={}, directory=tmp_path, deadline=Deadline(5.0), seed=seed
    )
    return seeded, applier.created


def test_the_driver_creates_the_seed_secret_before_the_control_plane(tmp_path: Path) -> None:
    seeded, created = _create([control_plane()], b"seed", tmp_path)
    assert seeded is True
    assert created[0] == seed_secret("vc-a", b"seed")
    assert created[0]["data"] == {"state.db": "c2VlZA=="}
    assert "/pytest-vcluster-seed/seed/." in str(created[1])


def test_a_chart_the_seed_does_not_fit_starts_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seeded, created = _create([control_plane("other")], b"seed", tmp_path)
    assert seeded is False
    assert [obj["kind"] for obj in created] == ["Deployment"]
    assert "starts without its seed" in caplog.text


def test_without_a_seed_the_chart_is_created_as_rendered(tmp_path: Path) -> None:
    seeded, created = _create([control_plane()], None, tmp_path)
    assert (seeded, created) == (False, [control_plane()])


def archive(*members: tuple[str, bytes]) -> bytes:
    """What ``tar -c`` writes for these files, in this order (a name may come twice)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_a_copy_is_taken_when_the_store_did_not_change_while_its_log_was_read() -> None:
    copied = archive(("state.db", b"db"), ("state.db-wal", b"log"), ("state.db", b"db"))
    assert store_copy(copied, "vc-a", "") == (b"db", b"log")


def test_a_copy_during_a_checkpoint_is_taken_again() -> None:
    # kine wrote the log back into the store between the two reads: the pair may not match.
    moved = archive(("state.db", b"db"), ("state.db-wal", b"log"), ("state.db", b"db+log"))
    assert store_copy(moved, "vc-a", "") is None


def test_a_store_without_a_log_is_a_copy_and_no_store_is_an_error() -> None:
    assert store_copy(archive(("state.db", b"db"), ("state.db", b"db")), "vc-a", "") == (
        b"db",
        None,
    )
    with pytest.raises(SeedError, match=r"no /data/state.db.*No such file"):
        store_copy(archive(), "vc-a", "tar: state.db: No such file or directory")
    with pytest.raises(SeedError, match="cannot read the copy"):
        store_copy(b"not a tar archive" * 64, "vc-a", "")


def test_a_seed_too_big_for_a_secret_is_no_seed(tmp_path: Path) -> None:
    kine = ready_store(tmp_path / "state.db")
    kine.write("/registry/configmaps/default/big", bytes(range(256)) * 4096)
    kine.connection.close()
    with pytest.raises(SeedError, match="more than a Secret"):
        make_seed((tmp_path / "state.db").read_bytes())
