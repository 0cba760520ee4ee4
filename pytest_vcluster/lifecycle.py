"""Creating, connecting, pausing, resuming and deleting vclusters on the host.

:class:`VClusterManager` drives the vcluster CLI (``--driver helm``) for lifecycle changes and
the Kubernetes API for everything it must observe. Each vcluster gets a namespace of its own,
made here beforehand and labelled with the run id, worker, slot and spec hash so that leftovers
can be found, and paused clusters reused. The connection never uses the CLI's proxy: the
kubeconfig comes from secret ``vc-NAME`` and the API is reached through a local port forward.
This module does not import pytest.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.config import Settings, TeardownMode
from pytest_vcluster.errors import ConfigError, VClusterError, WaitTimeoutError
from pytest_vcluster.forward import PodPortForwarder
from pytest_vcluster.handle import VCluster
from pytest_vcluster.host import HostInfo, host_api_client, write_private
from pytest_vcluster.runner import CommandRunner, find_tool
from pytest_vcluster.stats import Stats
from pytest_vcluster.versions import KubeVersion, resolve_tag, version_values
from pytest_vcluster.waits import Deadline, wait_until

__all__ = [
    "ANNOTATION_TEST",
    "LABEL_MANAGED",
    "LABEL_NAME",
    "LABEL_RUN_ID",
    "LABEL_SLOT",
    "LABEL_SPEC_HASH",
    "LABEL_WORKER",
    "TeardownAction",
    "VClusterManager",
    "VClusterSpec",
    "build_values",
    "decide_teardown",
    "deep_merge",
    "label_value",
    "load_values_file",
    "make_spec",
    "rewrite_kubeconfig",
    "spec_hash",
    "vcluster_name",
]

log = logging.getLogger(__name__)

LABEL_MANAGED = "pytest-vcluster/managed"
LABEL_RUN_ID = "pytest-vcluster/run-id"
LABEL_WORKER = "pytest-vcluster/worker"
LABEL_SPEC_HASH = "pytest-vcluster/spec-hash"
LABEL_SLOT = "pytest-vcluster/slot"
LABEL_NAME = "pytest-vcluster/name"
ANNOTATION_TEST = "pytest-vcluster/test"

#: Values every vcluster gets before the user's: the plugin never sends telemetry.
BASE_VALUES: Mapping[str, Any] = {"telemetry": {"enabled": False}}

_MAX_NAME = 40
_API_TIMEOUT = 15.0
# vcluster labels its CoreDNS "vcluster-kube-dns"; plain clusters use "kube-dns".
COREDNS_SELECTOR = "k8s-app in (vcluster-kube-dns,kube-dns)"


class TeardownAction(enum.Enum):
    """What teardown does to one vcluster."""

    DELETE = "delete"
    PAUSE = "pause"
    KEEP = "keep"


def decide_teardown(mode: TeardownMode, failed: bool) -> TeardownAction:
    """Map a teardown mode and the test outcome to an action."""
    match mode:
        case TeardownMode.DELETE:
            return TeardownAction.DELETE
        case TeardownMode.PAUSE:
            return TeardownAction.PAUSE
        case TeardownMode.KEEP:
            return TeardownAction.KEEP
        case TeardownMode.KEEP_ON_FAILURE:
            return TeardownAction.KEEP if failed else TeardownAction.DELETE
        case TeardownMode.PAUSE_ON_FAILURE:
            return TeardownAction.PAUSE if failed else TeardownAction.DELETE


def _short_hash(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def vcluster_name(label: str, key: str) -> str:
    """A DNS-1123 label of at most 40 characters: ``pv-<readable part>-<hash of key>``.

    ``label`` is for people (the test name); ``key`` makes it unique (run, worker, slot).
    """
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    suffix = _short_hash(key)
    room = _MAX_NAME - len("pv-") - len(suffix) - 1
    slug = slug[:room].strip("-")
    return f"pv-{slug}-{suffix}" if slug else f"pv-{suffix}"


def label_value(text: str) -> str:
    """``text`` made valid as a label value (63 characters, alphanumeric at both ends)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value or "none"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge mappings recursively; ``override`` wins, lists are replaced as Helm does."""
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def load_values_file(path: Path, *, option: str) -> dict[str, Any]:
    """Read a chart values file; an empty file is an empty mapping."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(option, f"cannot read values file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(option, f"values file {path} is not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(option, f"values file {path} must hold a mapping")
    return loaded


def build_values(
    settings: Settings,
    *,
    tag: str | None,
    values_file: Path | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge, in rising precedence: base, ``--vcluster-values`` files, marker file and dict,
    then the version (so a marker's version always wins over a values file)."""
    merged = deep_merge({}, BASE_VALUES)
    for path in settings.values_files:
        merged = deep_merge(merged, load_values_file(path, option="--vcluster-values"))
    if values_file is not None:
        merged = deep_merge(merged, load_values_file(values_file, option="vcluster(values_file)"))
    if values:
        merged = deep_merge(merged, values)
    if tag is not None:
        merged = deep_merge(merged, version_values(tag))
    # Telemetry stays off even if a values file turned it on.
    return deep_merge(merged, BASE_VALUES)


def spec_hash(values: Mapping[str, Any], settings: Settings) -> str:
    """Hash of what makes two vclusters interchangeable: values and chart."""
    chart = {
        "repo": settings.chart_repo,
        "version": settings.chart_version,
        "local": str(settings.local_chart_dir) if settings.local_chart_dir else None,
    }
    text = json.dumps({"values": values, "chart": chart}, sort_keys=True, default=str)
    return _short_hash(text, 16)


@dataclass(frozen=True)
class VClusterSpec:
    """What to create: the final chart values and where the vcluster belongs.

    ``slot`` says who may reuse it later (``worker:gw0`` or ``test:<nodeid>``); ``test`` is
    the node id recorded as annotation; ``label`` is the readable part of the name.
    """

    values: Mapping[str, Any]
    spec_hash: str
    slot: str
    test: str
    label: str
    version: KubeVersion | None = None
    ready_timeout: float = 300.0


def make_spec(
    settings: Settings,
    *,
    slot: str,
    test: str,
    label: str,
    version: KubeVersion | None = None,
    values: Mapping[str, Any] | None = None,
    values_file: Path | None = None,
    ready_timeout: float | None = None,
) -> VClusterSpec:
    """Build a :class:`VClusterSpec` from settings and per-test (marker) choices."""
    tag = resolve_tag(version, settings.version_map) if version is not None else None
    merged = build_values(settings, tag=tag, values_file=values_file, values=values)
    return VClusterSpec(
        values=merged,
        spec_hash=spec_hash(merged, settings),
        slot=slot,
        test=test,
        label=label,
        version=version,
        ready_timeout=ready_timeout if ready_timeout is not None else settings.ready_timeout,
    )


def rewrite_kubeconfig(text: str, server: str, tls_server_name: str = "localhost") -> str:
    """Point every cluster of a kubeconfig at ``server``, verifying TLS as ``tls_server_name``.

    The vcluster certificate is issued for ``localhost``; the forward listens on 127.0.0.1 so
    the name to verify is given separately (kubectl, helm and the Python client honour it).
    """
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not data.get("clusters"):
        raise VClusterError("the vcluster kubeconfig secret holds no clusters")
    for entry in data["clusters"]:
        cluster = entry.setdefault("cluster", {})
        cluster["server"] = server
        cluster["tls-server-name"] = tls_server_name
    return yaml.safe_dump(data, sort_keys=False)


def _pod_ready(pod: client.V1Pod) -> bool:
    conditions = pod.status.conditions if pod.status else None
    return any(c.type == "Ready" and c.status == "True" for c in conditions or [])


def describe_pods(pods: list[client.V1Pod]) -> str:
    """A one-line summary of pods: phase, readiness, waiting/terminated reasons."""
    if not pods:
        return "no pod yet"
    parts = []
    for pod in pods:
        name = pod.metadata.name if pod.metadata else "?"
        status = pod.status
        phase = status.phase if status else "?"
        reasons = []
        for cs in (
            (status.container_statuses or []) + (status.init_container_statuses or [])
            if (status)
            else []
        ):
            state = cs.state
            if state and state.waiting and state.waiting.reason:
                reasons.append(f"{cs.name}:{state.waiting.reason}")
            elif state and state.terminated and state.terminated.reason not in (None, "Completed"):
                reasons.append(f"{cs.name}:{state.terminated.reason}")
        ready = "ready" if _pod_ready(pod) else "not ready"
        extra = f" ({', '.join(reasons)})" if reasons else ""
        parts.append(f"{name} {phase} {ready}{extra}")
    return "; ".join(parts)


@dataclass
class _Live:
    """What the manager keeps for a vcluster it connected to."""

    name: str
    namespace: str
    directory: Path
    forwarder: PodPortForwarder | None = None
    api_client: client.ApiClient | None = None
    closed: bool = False


@dataclass
class VClusterManager:
    """Lifecycle of the vclusters of one pytest process on one host.

    ``workdir`` is a private directory (kubeconfigs and values files are written there);
    ``run_id`` and ``worker`` end up as namespace labels.
    """

    settings: Settings
    host: HostInfo
    run_id: str
    worker: str
    workdir: Path
    stats: Stats = field(default_factory=Stats)
    runner: CommandRunner | None = None
    sleep: Callable[[float], None] = time.sleep
    _counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _live: dict[str, _Live] = field(default_factory=dict)
    _host_api: client.ApiClient | None = None
    _vcluster_bin: str | None = None

    # -- plumbing -------------------------------------------------------------------------

    @property
    def host_api(self) -> client.ApiClient:
        """The host API client (made on first use)."""
        if self._host_api is None:
            self._host_api = host_api_client(self.host.kubeconfig, self.host.context)
        return self._host_api

    @property
    def core(self) -> client.CoreV1Api:
        """``CoreV1Api`` on the host."""
        return client.CoreV1Api(self.host_api)

    @property
    def _cli_config(self) -> Path:
        return self.workdir / "vcluster-cli.json"

    def _cli(self) -> tuple[CommandRunner, list[str]]:
        """The runner and the common prefix of every vcluster CLI call."""
        if self._vcluster_bin is None:
            self._vcluster_bin = find_tool("vcluster", self.settings.vcluster_binary)
            helm = find_tool("helm", self.settings.helm_binary)
            path = os.pathsep.join([str(Path(helm).parent), os.environ.get("PATH", "")])
            env = {"KUBECONFIG": str(self.host.kubeconfig), "PATH": path}
            # The CLI's own config, private to this process: helm driver, no CLI telemetry,
            # and no saved platform login or driver of the user's can change what it does.
            write_private(
                self._cli_config,
                json.dumps({"driver": {"type": "helm"}, "telemetryDisabled": True}),
            )
            self.runner = self.runner or CommandRunner(env=env)
        if self.runner is None:  # pragma: no cover - set just above
            raise VClusterError("no command runner")
        return self.runner, [self._vcluster_bin]

    def _global_flags(self, namespace: str) -> list[str]:
        flags = [
            "--namespace",
            namespace,
            "--driver",
            "helm",
            # A private CLI config: a user's saved driver or platform login must not apply.
            "--config",
            str(self._cli_config),
            "--log-output",
            "plain",
        ]
        if self.host.context:
            flags += ["--context", self.host.context]
        return flags

    def _run_cli(self, args: list[str], namespace: str, timeout: float) -> str:
        runner, prefix = self._cli()
        result = runner.run(prefix + args + self._global_flags(namespace), timeout=timeout)
        return result.stdout

    def _next_name(self, spec: VClusterSpec) -> str:
        with self._lock:
            self._counter += 1
            counter = self._counter
        key = f"{self.run_id}/{self.worker}/{spec.slot}/{counter}/{time.time_ns()}"
        return vcluster_name(spec.label, key)

    # -- public API -----------------------------------------------------------------------

    def create(self, spec: VClusterSpec, *, teardown_on_error: TeardownMode) -> VCluster:
        """Resume a matching paused vcluster or create a new one, and wait until it is ready.

        When setup fails after something was made on the host, ``teardown_on_error`` decides
        (as for a failed test) whether it is kept for inspection or removed.
        """
        deadline = Deadline(spec.ready_timeout)
        reused = self._claim_paused(spec)
        if reused is not None:
            name, namespace = reused
            event = "resumed"
            try:
                self._run_cli(["resume", name], namespace, timeout=max(deadline.remaining, 60))
            except VClusterError:
                self.stats.record("failed")
                raise
        else:
            name = self._next_name(spec)
            namespace = name
            event = "created"
            self._create_namespace(namespace, name, spec)
            try:
                self._helm_create(name, namespace, spec, deadline)
            except VClusterError:
                self.stats.record("failed")
                self._cleanup_failed(name, namespace, teardown_on_error)
                raise
        try:
            handle = self._connect(name, namespace, spec, deadline, reused=reused is not None)
        except VClusterError:
            self.stats.record("failed")
            self._cleanup_failed(name, namespace, teardown_on_error)
            raise
        self.stats.record(event, deadline.elapsed)
        log.info("vcluster %s/%s %s, ready in %.1fs", namespace, name, event, deadline.elapsed)
        return handle

    def finish(self, handle: VCluster, action: TeardownAction) -> None:
        """Tear a vcluster down: delete, pause or keep it. Errors are logged, not raised."""
        live = self._live.get(handle.name)
        if live is None or live.closed:
            return
        self._disconnect(live)
        try:
            if action is TeardownAction.DELETE:
                self.delete(handle.name, handle.namespace)
            elif action is TeardownAction.PAUSE:
                self._run_cli(
                    ["pause", handle.name], handle.namespace, self.settings.delete_timeout
                )
                self.stats.record("paused")
            else:
                self.stats.record("kept")
                log.warning(
                    "kept vcluster %s in namespace %s; connect with "
                    "'vcluster connect %s -n %s --driver helm'",
                    handle.name,
                    handle.namespace,
                    handle.name,
                    handle.namespace,
                )
        except VClusterError as exc:
            log.warning("teardown (%s) of vcluster %s failed: %s", action.value, handle.name, exc)

    def delete(self, name: str, namespace: str) -> None:
        """``vcluster delete``, then delete the namespace and wait until it is gone."""
        deadline = Deadline(self.settings.delete_timeout)
        try:
            self._run_cli(
                [
                    "delete",
                    name,
                    "--wait=false",
                    "--delete-context=false",
                    "--delete-configmap",
                    "--auto-delete-namespace=false",
                    "--ignore-not-found",
                ],
                namespace,
                timeout=max(deadline.remaining, 30),
            )
        except VClusterError as exc:
            # Deleting the namespace below removes the release and everything synced anyway.
            log.warning("vcluster delete %s failed, deleting its namespace: %s", name, exc)
        self._delete_namespace(namespace, deadline)
        self.stats.record("deleted")

    def pause(self, handle: VCluster) -> None:
        """Pause a vcluster that stays connected (the forward reconnects on resume)."""
        self._run_cli(["pause", handle.name], handle.namespace, self.settings.delete_timeout)
        self.stats.record("paused")

    def resume(self, handle: VCluster, timeout: float | None = None) -> None:
        """Resume a paused vcluster and wait until it is ready again."""
        deadline = Deadline(timeout or self.settings.ready_timeout)
        self._run_cli(["resume", handle.name], handle.namespace, max(deadline.remaining, 60))
        self._wait_control_plane(handle.name, handle.namespace, deadline)
        self._wait_inside(handle.api_client, deadline)
        self.stats.record("resumed", deadline.elapsed)

    def close(self) -> None:
        """Close every connection this manager opened (does not delete anything)."""
        for live in list(self._live.values()):
            self._disconnect(live)
        if self._host_api is not None:
            self._host_api.close()  # type: ignore[no-untyped-call]
            self._host_api = None

    # -- creation -------------------------------------------------------------------------

    def _labels(self, name: str, spec: VClusterSpec) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_RUN_ID: label_value(self.run_id),
            LABEL_WORKER: label_value(self.worker),
            LABEL_SPEC_HASH: spec.spec_hash,
            LABEL_SLOT: _short_hash(spec.slot, 16),
            LABEL_NAME: name,
        }

    def _create_namespace(self, namespace: str, name: str, spec: VClusterSpec) -> None:
        body = client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=namespace,
                labels=self._labels(name, spec),
                annotations={ANNOTATION_TEST: spec.test},
            )
        )
        try:
            self.core.create_namespace(body, _request_timeout=_API_TIMEOUT)
        except ApiException as exc:
            raise VClusterError(
                f"cannot create host namespace {namespace}: {exc.status} {exc.reason}"
            ) from exc

    def _helm_create(
        self, name: str, namespace: str, spec: VClusterSpec, deadline: Deadline
    ) -> None:
        directory = self._directory(name)
        values_file = write_private(directory / "values.yaml", yaml.safe_dump(dict(spec.values)))
        args = [
            "create",
            name,
            "--connect=false",
            "--create-namespace=false",
            "--add=false",
            "--background-proxy=false",
            # Reached through a port forward: no NodePort needed even on a local cluster.
            "--expose-local=false",
            "-f",
            str(values_file),
        ]
        if self.settings.local_chart_dir is not None:
            args += ["--local-chart-dir", str(self.settings.local_chart_dir)]
        if self.settings.chart_repo:
            args += ["--chart-repo", self.settings.chart_repo]
        if self.settings.chart_version:
            args += ["--chart-version", self.settings.chart_version]
        self._run_cli(args, namespace, timeout=max(deadline.remaining, 60))

    def _claim_paused(self, spec: VClusterSpec) -> tuple[str, str] | None:
        """Find a paused vcluster of the same slot and spec and claim it for this run."""
        selector = (
            f"{LABEL_MANAGED}=true,{LABEL_SPEC_HASH}={spec.spec_hash},"
            f"{LABEL_SLOT}={_short_hash(spec.slot, 16)}"
        )
        try:
            namespaces = self.core.list_namespace(
                label_selector=selector, _request_timeout=_API_TIMEOUT
            ).items
        except ApiException as exc:
            log.warning("cannot look for paused vclusters: %s", exc.reason)
            return None
        for ns in namespaces:
            meta = ns.metadata
            if meta is None or meta.name is None or meta.deletion_timestamp is not None:
                continue
            name = (meta.labels or {}).get(LABEL_NAME)
            if not name or not self._is_paused(name, meta.name):
                continue
            patch = {
                "metadata": {
                    # The resource version makes the claim atomic: a concurrent claim fails.
                    "resourceVersion": meta.resource_version,
                    "labels": {
                        LABEL_RUN_ID: label_value(self.run_id),
                        LABEL_WORKER: label_value(self.worker),
                    },
                    "annotations": {ANNOTATION_TEST: spec.test},
                }
            }
            try:
                self.core.patch_namespace(meta.name, patch, _request_timeout=_API_TIMEOUT)
            except ApiException as exc:
                log.info("paused vcluster %s taken by someone else: %s", name, exc.reason)
                continue
            return name, meta.name
        return None

    def _is_paused(self, name: str, namespace: str) -> bool:
        apps = client.AppsV1Api(self.host_api)
        selector = f"app=vcluster,release={name}"
        workloads: list[Any] = list(
            apps.list_namespaced_stateful_set(
                namespace, label_selector=selector, _request_timeout=_API_TIMEOUT
            ).items
        )
        workloads += apps.list_namespaced_deployment(
            namespace, label_selector=selector, _request_timeout=_API_TIMEOUT
        ).items
        if not workloads:
            return False
        for workload in workloads:
            annotations = (workload.metadata.annotations if workload.metadata else None) or {}
            replicas = workload.spec.replicas if workload.spec else None
            if "loft.sh/paused" not in annotations and replicas != 0:
                return False
        return True

    # -- readiness and connection -----------------------------------------------------------

    def _directory(self, name: str) -> Path:
        directory = self.workdir / name
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return directory

    def _events(self, namespace: str, limit: int = 3) -> str:
        try:
            events = self.core.list_namespaced_event(namespace, _request_timeout=_API_TIMEOUT).items
        except ApiException:
            return ""
        events = [e for e in events if e.type == "Warning"] or events
        events.sort(key=lambda e: str(e.last_timestamp or e.event_time or ""))
        tail = [f"{e.reason}: {e.message}" for e in events[-limit:]]
        return (" | events: " + " / ".join(tail)) if tail else ""

    def _wait_control_plane(self, name: str, namespace: str, deadline: Deadline) -> None:
        selector = f"app=vcluster,release={name}"

        def probe() -> tuple[bool, str]:
            pods = self.core.list_namespaced_pod(
                namespace, label_selector=selector, _request_timeout=_API_TIMEOUT
            ).items
            pods = [p for p in pods if not (p.metadata and p.metadata.deletion_timestamp)]
            ready = any(_pod_ready(p) for p in pods)
            return ready, describe_pods(list(pods)) + ("" if ready else self._events(namespace))

        wait_until(
            f"control-plane pod ({selector}) Ready in namespace {namespace}",
            probe,
            deadline,
            interval=2.0,
            sleep=self.sleep,
        )

    def _read_kubeconfig(self, name: str, namespace: str, deadline: Deadline) -> str:
        found: dict[str, str] = {}

        def probe() -> tuple[bool, str]:
            try:
                secret = self.core.read_namespaced_secret(
                    f"vc-{name}", namespace, _request_timeout=_API_TIMEOUT
                )
            except ApiException as exc:
                return False, f"secret vc-{name}: {exc.status} {exc.reason}"
            data = secret.data or {}
            if "config" not in data:
                return False, f"secret vc-{name} has no key 'config' (keys: {sorted(data)})"
            found["config"] = base64.b64decode(data["config"]).decode()
            return True, "found"

        wait_until(
            f"kubeconfig secret vc-{name} in namespace {namespace}",
            probe,
            deadline,
            sleep=self.sleep,
        )
        return found["config"]

    def _wait_inside(self, api: client.ApiClient, deadline: Deadline) -> str:
        """Wait for /readyz, the default ServiceAccount and CoreDNS; return the server version."""
        core = client.CoreV1Api(api)

        def readyz() -> tuple[bool, str]:
            cfg = api.configuration
            # Client certificates are in the pool already; add header credentials if any.
            headers = {
                str(auth["key"]): str(auth["value"])
                for auth in cfg.auth_settings().values()
                if auth.get("in") == "header" and auth.get("value")
            }
            response = api.rest_client.pool_manager.request(
                "GET",
                f"{cfg.host}/readyz",
                headers=headers,
                timeout=urllib3.Timeout(total=_API_TIMEOUT),
                retries=False,
            )
            body = response.data.decode(errors="replace").strip()
            return response.status == 200 and body == "ok", f"HTTP {response.status} {body[:200]}"

        def service_account() -> tuple[bool, str]:
            try:
                core.read_namespaced_service_account(
                    "default", "default", _request_timeout=_API_TIMEOUT
                )
            except ApiException as exc:
                return False, f"{exc.status} {exc.reason}"
            return True, "present"

        def coredns() -> tuple[bool, str]:
            pods = core.list_namespaced_pod(
                "kube-system", label_selector=COREDNS_SELECTOR, _request_timeout=_API_TIMEOUT
            ).items
            return any(_pod_ready(p) for p in pods), describe_pods(list(pods))

        wait_until("virtual API /readyz to answer ok", readyz, deadline, sleep=self.sleep)
        wait_until(
            "ServiceAccount default/default in the virtual cluster",
            service_account,
            deadline,
            sleep=self.sleep,
        )
        wait_until(
            f"CoreDNS (kube-system, {COREDNS_SELECTOR}) Ready in the virtual cluster",
            coredns,
            deadline,
            interval=2.0,
            sleep=self.sleep,
        )
        version = client.VersionApi(api).get_code(_request_timeout=_API_TIMEOUT)
        return str(version.git_version)

    def _connect(
        self, name: str, namespace: str, spec: VClusterSpec, deadline: Deadline, *, reused: bool
    ) -> VCluster:
        live = _Live(name, namespace, self._directory(name))
        self._live[name] = live
        self._wait_control_plane(name, namespace, deadline)
        raw = self._read_kubeconfig(name, namespace, deadline)
        live.forwarder = PodPortForwarder(
            lambda: host_api_client(self.host.kubeconfig, self.host.context),
            namespace,
            f"app=vcluster,release={name}",
            8443,
        )
        port = live.forwarder.start()
        kubeconfig = write_private(
            live.directory / "kubeconfig", rewrite_kubeconfig(raw, f"https://127.0.0.1:{port}")
        )
        configuration = client.Configuration()
        certs = live.directory / "certs"
        certs.mkdir(mode=0o700, exist_ok=True)
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig),
            client_configuration=configuration,
            persist_config=False,
            temp_file_path=str(certs),
        )
        live.api_client = client.ApiClient(configuration)
        try:
            server_version = self._wait_inside(live.api_client, deadline)
        except WaitTimeoutError as exc:
            if live.forwarder.last_error:
                exc.args = (f"{exc.args[0]}; port forward: {live.forwarder.last_error}",)
            raise
        handle = VCluster(
            name=name,
            namespace=namespace,
            version=server_version,
            requested_version=spec.version,
            kubeconfig=kubeconfig,
            api_client=live.api_client,
            spec_hash=spec.spec_hash,
            reused=reused,
        )
        handle._pause = lambda: self.pause(handle)
        handle._resume = lambda: self.resume(handle)
        return handle

    # -- removal --------------------------------------------------------------------------

    def _disconnect(self, live: _Live) -> None:
        if live.closed:
            return
        live.closed = True
        if live.forwarder is not None:
            live.forwarder.stop()
        if live.api_client is not None:
            live.api_client.close()  # type: ignore[no-untyped-call]

    def _cleanup_failed(self, name: str, namespace: str, mode: TeardownMode) -> None:
        live = self._live.get(name)
        if live is not None:
            self._disconnect(live)
        action = decide_teardown(mode, failed=True)
        if action is TeardownAction.DELETE:
            with contextlib.suppress(VClusterError):
                self.delete(name, namespace)
        else:
            log.warning("setup of vcluster %s failed; kept in namespace %s", name, namespace)

    def _delete_namespace(self, namespace: str, deadline: Deadline) -> None:
        try:
            self.core.delete_namespace(namespace, _request_timeout=_API_TIMEOUT)
        except ApiException as exc:
            if exc.status != 404:
                raise VClusterError(f"cannot delete namespace {namespace}: {exc.reason}") from exc

        def gone() -> tuple[bool, str]:
            try:
                ns = self.core.read_namespace(namespace, _request_timeout=_API_TIMEOUT)
            except ApiException as exc:
                if exc.status == 404:
                    return True, "gone"
                raise
            phase = ns.status.phase if ns.status else "?"
            return False, f"namespace {namespace} is {phase}" + self._events(namespace)

        wait_until(f"namespace {namespace} to be deleted", gone, deadline, sleep=self.sleep)

    def leftovers(self) -> Iterator[str]:
        """Names of namespaces this run and worker labelled (for reports and reapers)."""
        selector = (
            f"{LABEL_MANAGED}=true,{LABEL_RUN_ID}={label_value(self.run_id)},"
            f"{LABEL_WORKER}={label_value(self.worker)}"
        )
        for ns in self.core.list_namespace(
            label_selector=selector, _request_timeout=_API_TIMEOUT
        ).items:
            if ns.metadata and ns.metadata.name:
                yield ns.metadata.name
