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
from collections.abc import Callable
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
    "Workload",
    "docker_memory",
    "wait_until",
]

T = TypeVar("T")

CONFIG_ENV = "SPEED_SUITE_CONFIG"
BACKENDS = ("vcluster", "kind")


@dataclass(frozen=True)
class SuiteConfig:
    """What the suite's tests do: written by the benchmark as JSON, defaults for a run by hand."""

    backend: str = "vcluster"  # which fixture gives ``cluster``: "vcluster" or "kind"
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


class Workload:
    """The stack's HTTP image as a one-replica Deployment and a Service in one namespace."""

    name = "web"

    def __init__(self, api: client.ApiClient, namespace: str, image: str, port: int) -> None:
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.namespace = namespace
        self.image = image
        self.port = port
        self.labels = {"app": self.name}

    def deploy(self) -> None:
        """Create the namespace, the Deployment and the Service."""
        self.core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace))
        )
        container = client.V1Container(
            name=self.name,
            image=self.image,
            image_pull_policy="IfNotPresent",  # the image is preloaded; nothing may be pulled
            ports=[client.V1ContainerPort(name="http", container_port=self.port)],
            readiness_probe=client.V1Probe(
                http_get=client.V1HTTPGetAction(path="/", port="http"), period_seconds=1
            ),
        )
        self.apps.create_namespaced_deployment(
            self.namespace,
            client.V1Deployment(
                metadata=client.V1ObjectMeta(name=self.name, labels=self.labels),
                spec=client.V1DeploymentSpec(
                    replicas=1,
                    selector=client.V1LabelSelector(match_labels=self.labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=self.labels),
                        spec=client.V1PodSpec(containers=[container]),
                    ),
                ),
            ),
        )
        self.core.create_namespaced_service(
            self.namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name=self.name, labels=self.labels),
                spec=client.V1ServiceSpec(
                    selector=self.labels,
                    ports=[client.V1ServicePort(name="http", port=80, target_port="http")],
                ),
            ),
        )

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
