"""Settings, timing log and workload helpers shared by the speed suite's conftest and tests.

``python -m benchmarks.speed`` copies this directory into a temporary directory and runs pytest
in it, once per measurement. It passes its settings as a JSON file named by ``SPEED_SUITE_CONFIG``;
without that variable the defaults below apply, so the suite can also be run by hand with the
plugin's options. Every process appends what it measured, one JSON object a line, to a file of
its own in ``timings_dir`` (xdist workers never share a file, so no locking is needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

__all__ = [
    "CONFIG",
    "CONFIG_ENV",
    "Recorder",
    "SuiteConfig",
    "TimingLog",
    "TypedCreator",
    "WorkCluster",
    "Workload",
    "crd_and_binding",
    "docker_memory",
    "wait_until",
]

T = TypeVar("T")

CONFIG_ENV = "SPEED_SUITE_CONFIG"
BACKENDS = ("vcluster", "kind", "namespace")
Manifest = dict[str, Any]


@dataclass(frozen=True)
class SuiteConfig:
    """What the suite's tests do: written by the benchmark as JSON, defaults for a run by hand."""

    backend: str = "vcluster"  # which fixture gives ``cluster``: one of BACKENDS
    timings_dir: str = ""  # where each process appends its JSON lines; empty: nowhere
    repeat: int = 5  # test_create instances
    resumes: int = 5  # pause/resume rounds in test_resume
    tests: int = 24  # test_work instances
    work_seconds: float = 10.0  # how long each test_work keeps working
    density_max: int = 16  # most vclusters test_density creates
    density_limit: float = 0.0  # a create slower than this stops test_density; 0: no limit
    settle_seconds: float = 30.0  # idle time before test_density's last memory sample
    workload_image: str = "pytest-vcluster/workload:1"
    workload_port: int = 8080
    kind_binary: str = "kind"
    node_image: str = ""  # kind node image of the baseline clusters; empty: kind's default
    kind_prefix: str = "speed-sk"  # baseline cluster names start with this (for cleanup)
    docker_binary: str = "docker"
    premade_certs: bool = True  # false: every create's syncer makes its own certificates (L)

    @classmethod
    def load(cls) -> SuiteConfig:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            return cls()
        raw: dict[str, Any] = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown suite settings {unknown} (known: {sorted(known)})")
        config = cls(**raw)
        if config.backend not in BACKENDS:
            raise ValueError(f"{path}: backend {config.backend!r} is not one of {BACKENDS}")
        return config


CONFIG = SuiteConfig.load()


class Recorder:
    """Appends timing records of this process to ``<timings_dir>/<worker>.jsonl``."""

    def __init__(self, directory: str) -> None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.path = Path(directory) / f"{worker}.jsonl" if directory else None
        self.worker = worker

    def write(self, kind: str, **fields: object) -> None:
        if self.path is None:
            return
        line = json.dumps({"kind": kind, "worker": self.worker, **fields})
        # One short append per record: a crash later in the run keeps what was measured so far.
        with self.path.open("a") as out:
            out.write(line + "\n")


class TimingLog:
    """A recorder bound to one test: every record names the test it came from."""

    def __init__(self, recorder: Recorder, nodeid: str) -> None:
        self.recorder = recorder
        self.nodeid = nodeid

    def write(self, kind: str, **fields: object) -> None:
        self.recorder.write(kind, nodeid=self.nodeid, **fields)


def wait_until(
    what: str, check: Callable[[], tuple[T, object]], timeout: float, interval: float = 0.5
) -> T:
    """Call ``check()`` until it returns something truthy; fail with its last answer at the end.

    ``check`` returns ``(value, seen)``: ``value`` ends the wait when truthy, ``seen`` says what
    it saw for the failure message.
    """
    deadline = time.monotonic() + timeout
    seen: object = "nothing yet"
    while True:
        value, seen = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; saw: {seen}")
        time.sleep(interval)


def docker_memory(docker: str, container: str) -> str:
    """The container's memory as ``docker stats`` prints it (``1.2GiB / 23GiB``).

    benchmarks.speed parses it, so the suite and the script never disagree about units.
    """
    proc = subprocess.run(
        [docker, "stats", "--no-stream", "--format", "{{.MemUsage}}", container],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"docker stats {container} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout.strip()


@dataclass(frozen=True)
class WorkCluster:
    """What ``cluster`` gives test_work: a client, the namespace to work in, and how to make
    objects.

    ``apply`` is the vcluster handle's own helper in S and :meth:`TypedCreator.create` in the
    baselines, so that the test body is the same everywhere. ``namespace_made`` is True where
    the namespace-per-test fixture made the namespace already (Sn): the body then does not.
    ``suffix`` makes the names of what the test creates outside its namespace unique, since in
    Sn the cluster is shared by every test of a worker.
    """

    api: client.ApiClient
    namespace: str
    suffix: str
    apply: Callable[[list[Manifest]], object]
    namespace_made: bool = False

    @classmethod
    def fresh(
        cls,
        api: client.ApiClient,
        apply: Callable[[list[Manifest]], object],
        *,
        namespace_made: bool = False,
    ) -> WorkCluster:
        suffix = uuid.uuid4().hex[:8]
        return cls(api, f"work-{suffix}", suffix, apply, namespace_made)


def namespace_manifest(name: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def crd_and_binding(namespace: str, suffix: str) -> list[Manifest]:
    """A CRD of a group of this test's own, one object of it, and a ClusterRoleBinding.

    With the test's namespace, Deployment and Service these are what the benchmark's reset
    figure is about: a new API kind changes discovery, and cluster-scoped objects outlive the
    namespace.
    """
    group = f"t{suffix}.speed.example.com"
    crd: Manifest = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer"}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    widget: Manifest = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "one", "namespace": namespace},
        "spec": {"size": 1},
    }
    binding: Manifest = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"speed-work-{suffix}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }
    return [crd, widget, binding]


class TypedCreator:
    """Creates manifests with the client's typed APIs, in the order ``vcluster.apply`` uses.

    The baselines create with it what S applies through its handle: CRDs first, waited for
    until Established, then Namespaces, then the rest as given. It knows only the kinds the
    suite makes. It remembers what it made outside any namespace, because in a shared cluster
    (Sn) that outlives the test's namespace and has to be deleted by the fixture.
    """

    def __init__(self, api: client.ApiClient, timeout: float = 60.0) -> None:
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.extensions = client.ApiextensionsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.timeout = timeout
        self.cluster_scoped: list[tuple[str, str]] = []  # (kind, name), in creation order
        self.plurals: dict[tuple[str, str], str] = {}  # (group, kind) -> plural of a new CRD

    def create(self, manifests: Sequence[Mapping[str, Any]]) -> None:
        rank = {"CustomResourceDefinition": 0, "Namespace": 1}
        for manifest in sorted(manifests, key=lambda m: rank.get(str(m["kind"]), 2)):
            self._create(dict(manifest))

    def _create(self, manifest: Manifest) -> None:
        kind, name = str(manifest["kind"]), str(manifest["metadata"]["name"])
        namespace = str(manifest["metadata"].get("namespace", "default"))
        if kind == "CustomResourceDefinition":
            self.extensions.create_custom_resource_definition(manifest)
            self.cluster_scoped.append((kind, name))
            self._wait_established(name)
            spec = manifest["spec"]
            self.plurals[(spec["group"], spec["names"]["kind"])] = spec["names"]["plural"]
        elif kind == "Namespace":
            self.core.create_namespace(manifest)
            self.cluster_scoped.append((kind, name))
        elif kind == "ClusterRoleBinding":
            self.rbac.create_cluster_role_binding(manifest)
            self.cluster_scoped.append((kind, name))
        elif kind == "Deployment":
            self.apps.create_namespaced_deployment(namespace, manifest)
        elif kind == "Service":
            self.core.create_namespaced_service(namespace, manifest)
        else:
            self._create_custom(manifest, kind, namespace)

    def _wait_established(self, name: str) -> None:
        def established() -> tuple[bool, object]:
            status = self.extensions.read_custom_resource_definition(name).status
            conditions = (status.conditions if status else None) or []
            seen = [(c.type, c.status) for c in conditions]
            return ("Established", "True") in seen, seen

        # The same poll interval as the handle's apply, so neither side waits longer.
        wait_until(f"CRD {name} Established", established, self.timeout, interval=0.25)

    def _create_custom(self, manifest: Manifest, kind: str, namespace: str) -> None:
        group, _, version = str(manifest["apiVersion"]).rpartition("/")
        plural = self.plurals.get((group, kind))
        if plural is None:
            raise ValueError(f"{kind} of {group}: no CRD of this call defines it")

        def created() -> tuple[bool, str]:
            try:
                self.custom.create_namespaced_custom_object(
                    group, version, namespace, plural, manifest
                )
            except ApiException as exc:
                # An Established CRD's resource may not be routed for a moment (the handle's
                # apply retries the same way).
                if exc.status != 404:
                    raise
                return False, f"{exc.status} {exc.reason}"
            return True, "created"

        wait_until(f"{kind} {manifest['metadata']['name']} created", created, self.timeout)

    def delete_cluster_scoped(self) -> None:
        """Delete, newest first and without waiting, what this creator made outside any
        namespace; a namespace takes its content with it, a CRD its objects."""
        deleters: dict[str, Callable[[str], object]] = {
            "CustomResourceDefinition": self.extensions.delete_custom_resource_definition,
            "ClusterRoleBinding": self.rbac.delete_cluster_role_binding,
            "Namespace": lambda name: self.core.delete_namespace(
                name, propagation_policy="Background"
            ),
        }
        for kind, name in reversed(self.cluster_scoped):
            try:
                deleters[kind](name)
            except ApiException as exc:
                if exc.status != 404:  # gone already is as good as deleted
                    raise
        self.cluster_scoped.clear()


class Workload:
    """The stack's HTTP image as a one-replica Deployment and a Service in one namespace.

    :meth:`manifests` describes them; ``cluster.apply`` makes them, so that S does it through
    the vcluster handle and the baselines through the typed client.
    """

    name = "web"

    def __init__(self, api: client.ApiClient, namespace: str, image: str, port: int) -> None:
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.namespace = namespace
        self.image = image
        self.port = port
        self.labels = {"app": self.name}

    def manifests(self, *, with_namespace: bool) -> list[Manifest]:
        """The namespace (unless it is made elsewhere), the Deployment and the Service."""
        container = {
            "name": self.name,
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",  # the image is preloaded; nothing may be pulled
            "ports": [{"name": "http", "containerPort": self.port}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        }
        metadata = {"name": self.name, "namespace": self.namespace, "labels": self.labels}
        deployment: Manifest = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**metadata},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": self.labels},
                "template": {
                    "metadata": {"labels": self.labels},
                    "spec": {"containers": [container]},
                },
            },
        }
        service: Manifest = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**metadata},
            "spec": {
                "selector": self.labels,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        }
        namespace = [namespace_manifest(self.namespace)] if with_namespace else []
        return [*namespace, deployment, service]

    def wait_ready(self, timeout: float = 180) -> None:
        """Wait until the Deployment's replica is available (its readiness probe passed)."""

        def available() -> tuple[bool, str]:
            status = self.apps.read_namespaced_deployment_status(self.name, self.namespace).status
            if status is None:
                return False, "no status"
            return bool(status.available_replicas), self._pods()

        wait_until(f"deployment {self.namespace}/{self.name} available", available, timeout)

    def get(self, path: str = "", timeout: float = 60) -> str:
        """GET ``/<path>`` of the Service through the API server's service proxy.

        Endpoints follow pod readiness after a moment: 502/503 answers are retried.
        """

        def answer() -> tuple[str, str]:
            try:
                text = self.core.connect_get_namespaced_service_proxy_with_path(
                    f"{self.name}:http", self.namespace, path, _request_timeout=10
                )
            except ApiException as exc:
                if exc.status not in (502, 503):
                    raise
                return "", f"{exc.status} {exc.reason}"
            return str(text) or "(empty page)", "answered"

        return wait_until(f"service {self.namespace}/{self.name} to answer", answer, timeout)

    def touch_config(self, round_: int) -> None:
        """Write a ConfigMap and read it back: a small round trip through the API and storage."""
        name = "rounds"
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name), data={"round": str(round_)}
        )
        if round_ == 0:
            self.core.create_namespaced_config_map(self.namespace, body)
        else:
            self.core.replace_namespaced_config_map(name, self.namespace, body)
        stored = self.core.read_namespaced_config_map(name, self.namespace).data or {}
        assert stored.get("round") == str(round_), f"config map {name} reads back {stored}"

    def _pods(self) -> str:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector="app=web").items
        seen = []
        for pod in pods:
            statuses = (pod.status.container_statuses or []) if pod.status else []
            waiting = [
                f"{cs.state.waiting.reason}" for cs in statuses if cs.state and cs.state.waiting
            ]
            phase = pod.status.phase if pod.status else "?"
            seen.append(f"{pod.metadata.name if pod.metadata else '?'} {phase} {waiting}")
        return "; ".join(seen) or "no pods"
