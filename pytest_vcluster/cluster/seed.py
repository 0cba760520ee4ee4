"""A seeded store: new clusters start from the cleaned store of an earlier one of their spec.

A fresh control plane spends most of its start creating what every cluster of a version has:
kube-apiserver's bootstrap RBAC, priority classes, flow-control settings and APIServices, the
controller-manager's ``default`` ServiceAccounts (docs/speed.md, "Where a create's 10 s go").
With ``--vcluster-seeded-store`` the plugin copies the embedded SQLite store (kine's
``/data/state.db``) out of the first cluster of a spec once it is Ready, removes everything
that belongs to that one cluster, and starts later clusters of the spec on the result: their
API server finds its bootstrap objects present and the chain from the binaries copied to the
admin kubeconfig is about 3 s shorter.

What the seed leaves out (:data:`INSTANCE_KEYS`), each because it belongs to one cluster and
the new one makes its own: the syncer's name mappings, leases (API server identity, leader
election), Pods, Nodes, Events, Endpoints and EndpointSlices, IPAddress objects, peer leases,
every ``kube-root-ca.crt`` and the ``extension-apiserver-authentication`` ConfigMap (both carry
the cluster's CA), Services, their IP ranges and ServiceCIDRs (the API server makes
``default/kubernetes`` with its own IP as in a fresh cluster, and the syncer gives it the
host's: from a seed the old cluster's IP made the syncer replace the Service while the API
server's own reconciler made it again, and the syncer crashed on "already exists"), and
CoreDNS's Deployment and ReplicaSets (the syncer applies its own manifest). A
seed holds no key and no certificate: each cluster still has its own (``NAME-certs``), so a
token or certificate of one cluster is never valid in another. Only the newest row of each
key is kept, renumbered from 1 without gaps (kine's watch waits for every missing revision),
and the store is compacted at its last row.

Seeds are files in the plugin's state directory, one per spec hash (the values and chart), so
every run and worker of a machine shares them; a cluster carries its seed as secret
``NAME-seed``, which the chart's ``kubernetes`` init container copies into the store's volume
with the binaries (it runs ``cp -r``: the seed is one more source of that copy, no shell
needed). Only clusters whose store is an emptyDir get a seed (a persistent store is never
overwritten), of the ``k8s`` distro with the embedded database (:func:`seed_applies`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.stream import stream

from pytest_vcluster.cluster.pki import premade_certs_apply
from pytest_vcluster.core.errors import VClusterError
from pytest_vcluster.core.labels import control_plane_selector, is_control_plane
from pytest_vcluster.settings.values import value_at

__all__ = [
    "INSTANCE_KEYS",
    "MAX_SEED_BYTES",
    "SEED_FORMAT",
    "SeedError",
    "SeedStore",
    "capture_store",
    "make_seed",
    "seed_applies",
    "seed_secret",
    "seeded_objects",
    "store_copy",
]

log = logging.getLogger(__name__)

#: Part of every seed's name: a plugin that cleans stores differently never uses older seeds.
SEED_FORMAT = 1

#: kine keys (SQL ``LIKE`` patterns) of objects that belong to one cluster (module docstring).
INSTANCE_KEYS: tuple[str, ...] = (
    "/vcluster/mappings/%",
    "/vcluster/snapshot/%",
    "/registry/leases/%",
    "/registry/pods/%",
    "/registry/minions/%",
    "/registry/events/%",
    "/registry/services/endpoints/%",
    "/registry/endpointslices/%",
    "/registry/ipaddresses/%",
    "/registry/peerserverleases/%",
    "/registry/configmaps/%/kube-root-ca.crt",
    "/registry/configmaps/kube-system/extension-apiserver-authentication",
    "/registry/services/specs/%",
    "/registry/ranges/%",
    "/registry/servicecidrs/%",
    "/registry/deployments/kube-system/coredns",
    "/registry/replicasets/kube-system/coredns-%",
)

#: Keys a usable seed has: a store without them was copied before the cluster was Ready.
_REQUIRED_KEYS = (
    "/registry/namespaces/default",
    "/registry/namespaces/kube-system",
    "/registry/serviceaccounts/default/default",
    "/registry/clusterroles/cluster-admin",
)

#: Where the store lives in the control-plane container (vcluster's embedded kine default).
STORE_DIR = "/data"
STORE_FILE = "state.db"
SECRET_KEY = "state.db"  # noqa: S105 - a file name, not a password
_SEED_VOLUME = "pytest-vcluster-seed"
_SEED_MOUNT = "/pytest-vcluster-seed"
_INIT_CONTAINER = "kubernetes"
_DATA_VOLUME = "data"
_CAPTURE_TIMEOUT = 30.0
_CAPTURE_ATTEMPTS = 3
#: A seed travels in a Secret (at most 1 MiB), base64-encoded: 4 bytes for every 3.
MAX_SEED_BYTES = 700 * 1024


class SeedError(VClusterError):
    """A store could not be made into a seed (the clusters start without one)."""


def seed_applies(values: Mapping[str, Any]) -> bool:
    """True for chart values whose store a seed can start: the ``k8s`` distro with the
    embedded database (as for premade certificates) in an emptyDir, not a volume claim."""
    claim = value_at(values, "controlPlane", "statefulSet", "persistence", "volumeClaim", "enabled")
    return claim is False and premade_certs_apply(values)


class SeedStore:
    """Seeds on disk, one file per key (a spec hash, the host, the seed format), shared by
    every process of the machine."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.db"

    def get(self, key: str) -> bytes | None:
        """The seed of ``key``, or ``None`` when there is none yet."""
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, seed: bytes) -> None:
        """Store ``seed`` whole: another process reads either no file or this one."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=self.directory, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(seed)
            os.replace(temporary, self.path(key))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def make_seed(store: bytes, wal: bytes | None = None) -> bytes:
    """Turn a copied kine store (and its write-ahead log) into a seed (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="pytest-vcluster-seed-") as scratch:
        path = Path(scratch) / STORE_FILE
        path.write_bytes(store)
        if wal:
            Path(f"{path}-wal").write_bytes(wal)
        connection = sqlite3.connect(path)
        try:
            _clean(connection)
        except sqlite3.DatabaseError as exc:
            raise SeedError(f"the copied store is not a usable kine database: {exc}") from exc
        finally:
            connection.close()
        seed = path.read_bytes()
    if len(seed) > MAX_SEED_BYTES:
        raise SeedError(
            f"the seed would be {len(seed) // 1024} kB, more than a Secret holds "
            f"({MAX_SEED_BYTES // 1024} kB before encoding): these values deploy too much"
        )
    return seed


def _clean(connection: sqlite3.Connection) -> None:
    (check,) = connection.execute("PRAGMA integrity_check").fetchone()
    if check != "ok":
        raise SeedError(f"the copied store failed SQLite's integrity check: {check}")
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for pattern in INSTANCE_KEYS:
        connection.execute("DELETE FROM kine WHERE name LIKE ?", (pattern,))
    connection.execute("DELETE FROM kine WHERE id NOT IN (SELECT MAX(id) FROM kine GROUP BY name)")
    connection.execute(
        "DELETE FROM kine WHERE deleted = 1 OR name = 'compact_rev_key' OR name LIKE 'gap-%'"
    )
    present = {name for (name,) in connection.execute("SELECT name FROM kine")}
    missing = [key for key in _REQUIRED_KEYS if key not in present]
    if missing:
        raise SeedError(f"the copied store lacks {', '.join(missing)}: it was not Ready yet")
    columns = [row[1] for row in connection.execute("PRAGMA table_info(kine)")]
    selected = connection.execute("SELECT * FROM kine ORDER BY id").fetchall()
    rows: list[dict[str, Any]] = [dict(zip(columns, row, strict=True)) for row in selected]
    connection.execute("DELETE FROM kine")
    # The column names come from the table itself, the values are parameters.
    placeholders = ", ".join("?" * len(columns))
    insert = f"INSERT INTO kine ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608
    # Each kept object is a create at its own revision, 1..N: no gap for kine to fill.
    for revision, row in enumerate(rows, 1):
        row.update(id=revision, created=1, create_revision=revision, prev_revision=0, old_value=b"")
        connection.execute(insert, [row[column] for column in columns])
    compact: dict[str, Any] = dict.fromkeys(columns, 0)
    compact.update(
        id=len(rows) + 1, name="compact_rev_key", prev_revision=len(rows), value=b"", old_value=b""
    )
    connection.execute(insert, [compact[column] for column in columns])
    connection.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'kine'", (len(rows) + 1,))
    connection.commit()
    # One file, no log beside it: the copy in the new cluster is the whole store.
    connection.execute("PRAGMA journal_mode=DELETE")
    connection.execute("VACUUM")


def capture_store(
    core: client.CoreV1Api, name: str, namespace: str, timeout: float = _CAPTURE_TIMEOUT
) -> tuple[bytes, bytes | None]:
    """The store and write-ahead log of cluster ``name``, read from its running control plane.

    One ``tar`` reads the store, its log, and the store again: kine writes the log back into
    the store now and then (a checkpoint), and a store read before that with a log read after
    it is no consistent copy. When both reads of the store match, the pair is one; else the
    copy is taken again (at most :data:`_CAPTURE_ATTEMPTS` times).
    """
    pods = core.list_namespaced_pod(namespace, label_selector=control_plane_selector(name)).items
    running = [pod for pod in pods if pod.status and pod.status.phase == "Running"]
    if not running:
        raise SeedError(f"no running control-plane pod of {name} in {namespace} to copy from")
    first: Any = running[0]  # a running pod has its name and containers
    pod, container = first.metadata.name, first.spec.containers[0].name
    deadline = time.monotonic() + timeout
    for _ in range(_CAPTURE_ATTEMPTS):
        copied, said = _tar(core, pod, namespace, container, deadline=deadline, name=name)
        found = store_copy(copied, name, said)
        if found is not None:
            return found
    raise SeedError(
        f"the store of {name} was written back {_CAPTURE_ATTEMPTS} times while it was copied"
    )


def _tar(
    core: client.CoreV1Api, pod: str, namespace: str, container: str, *, deadline: float, name: str
) -> tuple[bytes, str]:
    """``tar`` of the store, its log and the store again: the archive and what tar said."""
    response = stream(
        core.connect_get_namespaced_pod_exec,
        pod,
        namespace,
        container=container,
        command=["tar", "-c", "-C", STORE_DIR, STORE_FILE, f"{STORE_FILE}-wal", STORE_FILE],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
        binary=True,
        _preload_content=False,
    )
    output = io.BytesIO()
    errors = io.BytesIO()
    try:
        while response.is_open():
            if time.monotonic() > deadline:
                raise SeedError(f"copying the store of {name} took over {_CAPTURE_TIMEOUT:.0f}s")
            response.update(timeout=1)
            output.write(response.read_stdout())
            errors.write(response.read_stderr())
        output.write(response.read_stdout())
    finally:
        response.close()
    return output.getvalue(), errors.getvalue().decode(errors="replace").strip()


def store_copy(copied: bytes, name: str, said: str) -> tuple[bytes, bytes | None] | None:
    """The store and its log from ``copied`` (see :func:`capture_store`), or ``None`` when the
    store changed between its two reads; ``said`` is what tar wrote to stderr."""
    stores: list[bytes] = []
    log_file: bytes | None = None
    try:
        with tarfile.open(fileobj=io.BytesIO(copied), mode="r:") as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member) if member.isfile() else None
                if extracted is None:
                    continue
                named = member.name.lstrip("./")
                if named == STORE_FILE:
                    stores.append(extracted.read())
                elif named == f"{STORE_FILE}-wal":
                    log_file = extracted.read()
    except tarfile.TarError as exc:
        raise SeedError(f"cannot read the copy of {name}'s store: {exc} {said}".strip()) from exc
    if not stores:
        raise SeedError(f"the control plane of {name} has no {STORE_DIR}/{STORE_FILE}: {said}")
    if stores[0] != stores[-1]:
        return None
    return stores[0], log_file


def seed_secret(name: str, seed: bytes) -> dict[str, Any]:
    """Secret ``NAME-seed`` holding ``seed``, for the cluster ``name``."""
    import base64  # noqa: PLC0415 - only here

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-seed"},
        "type": "Opaque",
        "data": {SECRET_KEY: base64.b64encode(seed).decode("ascii")},
    }


def seeded_objects(name: str, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The chart's objects with the control plane starting from secret ``NAME-seed``.

    The ``kubernetes`` init container already runs ``cp -r /kubernetes/. /binaries/``; it gets
    the seed as one more source (a directory holding ``data/state.db``) and the store's volume
    mounted at ``/binaries/data``, so the same copy puts the seed where kine opens its store.
    Raises :class:`SeedError` when the chart's control plane does not look like that.
    """
    patched: list[dict[str, Any]] = []
    found = False
    for obj in objects:
        labels = obj.get("metadata", {}).get("labels") or {}
        if obj.get("kind") in ("Deployment", "StatefulSet") and is_control_plane(labels, name):
            patched.append(_with_seed(name, obj))
            found = True
        else:
            patched.append(obj)
    if not found:
        raise SeedError(f"the chart rendered no control plane for {name} to seed")
    return patched


def _with_seed(name: str, workload: dict[str, Any]) -> dict[str, Any]:
    import copy  # noqa: PLC0415 - only here

    workload = copy.deepcopy(workload)
    pod = workload["spec"]["template"]["spec"]
    volumes = pod.setdefault("volumes", [])
    if not any(volume.get("name") == _DATA_VOLUME and "emptyDir" in volume for volume in volumes):
        raise SeedError(f"the control plane of {name} keeps its store in no emptyDir 'data'")
    init = next(
        (c for c in pod.get("initContainers") or [] if c.get("name") == _INIT_CONTAINER), None
    )
    args = (init or {}).get("args") or []
    if init is None or init.get("command") != ["cp"] or len(args) < 2:
        raise SeedError(
            f"the control plane of {name} has no init container '{_INIT_CONTAINER}' running cp"
        )
    volumes.append(
        {
            "name": _SEED_VOLUME,
            "secret": {
                "secretName": f"{name}-seed",
                "items": [{"key": SECRET_KEY, "path": f"seed/data/{STORE_FILE}"}],
            },
        }
    )
    mounts = init.setdefault("volumeMounts", [])
    destination = str(args[-1]).rstrip("/")
    mounts.append({"name": _SEED_VOLUME, "mountPath": _SEED_MOUNT, "readOnly": True})
    mounts.append({"name": _DATA_VOLUME, "mountPath": f"{destination}/data"})
    # "seed" is the kubelet's link to the secret's current files; "/." copies what it holds.
    init["args"] = [*args[:-1], f"{_SEED_MOUNT}/seed/.", args[-1]]
    return workload
