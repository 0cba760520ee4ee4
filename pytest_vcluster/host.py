"""The host cluster that runs the vclusters: a kind cluster, or an existing cluster.

:class:`KindHost` creates (or reuses) one kind cluster; :class:`HostLease` makes sure that
under pytest-xdist exactly one process creates it, using a ``FileLock`` and a small JSON state
file in a directory every worker shares, and that only a host the plugin created is deleted, by
its last user or by the xdist controller. :func:`connect_existing_host` checks a cluster given
by kubeconfig and context. This module does not import pytest.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import docker
import filelock
from kubernetes import client, config

from pytest_vcluster.config import Settings
from pytest_vcluster.errors import CommandError, HostError, ToolNotFoundError, VClusterError
from pytest_vcluster.runner import INSTALL_HINTS, CommandRunner, find_tool

__all__ = [
    "HostInfo",
    "HostLease",
    "KindHost",
    "check_docker",
    "connect_existing_host",
    "host_api_client",
    "kind_config",
    "write_private",
]

log = logging.getLogger(__name__)

HostMode = Literal["kind", "existing"]


@dataclass(frozen=True)
class HostInfo:
    """Where the host cluster is and whether this run created it."""

    mode: HostMode
    name: str
    kubeconfig: Path
    context: str | None
    created: bool

    def describe(self) -> str:
        """One line for the report header and logs."""
        if self.mode == "existing":
            return f"existing cluster, kubeconfig {self.kubeconfig}, context {self.context}"
        origin = "created by this run" if self.created else "reused"
        return f"kind cluster {self.name!r} ({origin})"


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by the owner only (credentials live there)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    return path


def check_docker(ping: Callable[[], object] | None = None) -> None:
    """Raise :class:`HostError` when the Docker daemon kind needs is not reachable."""
    try:
        if ping is None:
            docker_client = docker.from_env(timeout=15)
            try:
                docker_client.ping()
            finally:
                docker_client.close()
        else:
            ping()
    except Exception as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise HostError(
            f"Docker is not reachable at {where} ({type(exc).__name__}: {exc}). "
            f"{INSTALL_HINTS['docker']} Or use an existing host with --vcluster-host-kubeconfig."
        ) from exc


def kind_config() -> str:
    """The kind cluster configuration the plugin creates its host with."""
    return (
        "kind: Cluster\n"
        "apiVersion: kind.x-k8s.io/v1alpha4\n"
        "networking:\n"
        "  apiServerAddress: 127.0.0.1\n"
        "nodes:\n"
        "  - role: control-plane\n"
    )


class KindHost:
    """One kind cluster, created on demand, with its kubeconfig in a private file."""

    def __init__(
        self,
        runner: CommandRunner,
        kind_binary: str,
        name: str,
        workdir: Path,
        *,
        node_image: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        self.runner = runner
        self.kind = kind_binary
        self.name = name
        self.workdir = workdir
        self.node_image = node_image
        self.timeout = timeout
        self.kubeconfig = workdir / f"kind-{name}.kubeconfig"

    @property
    def context(self) -> str:
        """The kubeconfig context kind names after the cluster."""
        return f"kind-{self.name}"

    def exists(self) -> bool:
        """True when ``kind get clusters`` lists this cluster."""
        result = self.runner.run([self.kind, "get", "clusters"], timeout=60)
        return self.name in result.stdout.split()

    def create(self) -> None:
        """``kind create cluster`` with our config; the kubeconfig goes to a private file."""
        config_file = write_private(self.workdir / f"kind-{self.name}.yaml", kind_config())
        args = [
            self.kind,
            "create",
            "cluster",
            "--name",
            self.name,
            "--config",
            str(config_file),
            # Keep the user's ~/.kube/config untouched: kind writes its context here instead.
            "--kubeconfig",
            str(self.kubeconfig),
            "--wait",
            f"{int(self.timeout)}s",
        ]
        if self.node_image:
            args += ["--image", self.node_image]
        log.info("creating kind cluster %s", self.name)
        self.runner.run(args, timeout=self.timeout + 60)

    def export_kubeconfig(self) -> Path:
        """Write ``kind get kubeconfig`` to the private kubeconfig file and return its path."""
        result = self.runner.run([self.kind, "get", "kubeconfig", "--name", self.name], timeout=60)
        return write_private(self.kubeconfig, result.stdout)

    def ensure(self) -> bool:
        """Create the cluster unless it exists; return True when this call created it."""
        created = False
        if not self.exists():
            self.create()
            created = True
        self.export_kubeconfig()
        return created

    def delete(self) -> None:
        """``kind delete cluster``; the private kubeconfig is removed too."""
        log.info("deleting kind cluster %s", self.name)
        self.runner.run(
            [
                self.kind,
                "delete",
                "cluster",
                "--name",
                self.name,
                "--kubeconfig",
                str(self.kubeconfig),
            ],
            timeout=self.timeout,
        )
        self.kubeconfig.unlink(missing_ok=True)

    def info(self, created: bool) -> HostInfo:
        """The :class:`HostInfo` of this cluster."""
        return HostInfo("kind", self.name, self.kubeconfig, self.context, created)


def host_api_client(kubeconfig: Path, context: str | None) -> client.ApiClient:
    """An API client for the host built from a fresh configuration (never the global one)."""
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig),
        context=context,
        client_configuration=configuration,
        persist_config=False,
    )
    return client.ApiClient(configuration)


def connect_existing_host(kubeconfig: Path, context: str | None, timeout: float = 15) -> HostInfo:
    """Check that the cluster given by kubeconfig/context answers; raise :class:`HostError`."""
    try:
        api = host_api_client(kubeconfig, context)
    except Exception as exc:
        raise HostError(
            f"cannot load host kubeconfig {kubeconfig} (context {context or 'current'}): {exc}"
        ) from exc
    try:
        with api:
            version = client.VersionApi(api).get_code(_request_timeout=timeout)
    except Exception as exc:
        raise HostError(
            f"host cluster from {kubeconfig} (context {context or 'current'}) is unreachable: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    log.info("existing host answers, Kubernetes %s", version.git_version)
    return HostInfo("existing", context or "current-context", kubeconfig, context, False)


@dataclass
class _LeaseState:
    users: int = 0
    created: bool = False
    deleted: bool = False
    error: str | None = None
    # vclusters left paused or kept on the host: deleting it would throw them away.
    preserved: int = 0
    created_by: str | None = None
    create_seconds: float | None = None


class HostLease:
    """Shared ownership of the kind host among pytest processes (xdist workers).

    ``state_dir`` must be the same directory for every process of a run: the base temp of the
    xdist controller (which is the parent of each worker's base temp). The first process to
    acquire creates the host if needed; a failure is recorded so that other workers fail fast
    with the same message. ``release`` deletes the host when the last user leaves, but only
    with ``may_delete`` (single process) and only if this run created it and it is not kept;
    under xdist the controller calls :meth:`finalize` instead, after every worker is done.
    """

    def __init__(
        self,
        settings: Settings,
        state_dir: Path,
        runner_factory: Callable[[], CommandRunner] = CommandRunner,
        docker_check: Callable[[], None] = check_docker,
        *,
        owner: str = "master",
    ) -> None:
        self.settings = settings
        self.owner = owner
        self.state_dir = state_dir
        self.runner_factory = runner_factory
        self.docker_check = docker_check
        stem = f"pytest-vcluster-host-{settings.host_name}"
        self.state_file = state_dir / f"{stem}.json"
        self.lock = filelock.FileLock(str(state_dir / f"{stem}.lock"))

    def _read(self) -> _LeaseState | None:
        try:
            data: dict[str, Any] = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        return _LeaseState(**data)

    def _write(self, state: _LeaseState) -> None:
        write_private(self.state_file, json.dumps(asdict(state)))

    def _kind_host(self) -> KindHost:
        settings = self.settings
        return KindHost(
            self.runner_factory(),
            find_tool("kind", settings.kind_binary),
            settings.host_name,
            self.state_dir,
            node_image=settings.node_image,
            timeout=settings.host_timeout,
        )

    def acquire(self) -> HostInfo:
        """Make sure the host exists and count this process as a user of it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.lock.acquire(timeout=self.settings.host_timeout + 120):
            state = self._read()
            host = self._kind_host()
            if state is not None and state.error:
                raise HostError(f"the kind host could not be created earlier: {state.error}")
            if state is None or state.deleted:
                state = _LeaseState()
                try:
                    self.docker_check()
                    started = time.monotonic()
                    state.created = host.ensure()
                    if state.created:
                        state.created_by = self.owner
                        state.create_seconds = round(time.monotonic() - started, 1)
                except (HostError, CommandError, ToolNotFoundError) as exc:
                    self._write(_LeaseState(error=str(exc)))
                    raise
            elif not host.kubeconfig.exists():
                host.export_kubeconfig()
            state.users += 1
            self._write(state)
            return host.info(state.created)

    def release(self, *, may_delete: bool, preserved: int = 0) -> bool:
        """Stop using the host; delete it if this was the last user and it may go.

        ``preserved`` counts the vclusters this process left paused or kept: a host holding
        any is never deleted, or a later run could not resume them.
        Returns True when the host was deleted.
        """
        with self.lock.acquire(timeout=self.settings.host_timeout + 120):
            state = self._read()
            if state is None:
                return False
            state.users = max(0, state.users - 1)
            state.preserved += preserved
            deleted = False
            if may_delete and state.users == 0:
                deleted = self._delete_if_ours(state)
            self._write(state)
            return deleted

    def finalize(self) -> bool:
        """Called once by the xdist controller at the end: delete the host if it is ours."""
        if not self.state_file.exists():
            return False
        with self.lock.acquire(timeout=self.settings.host_timeout + 120):
            state = self._read()
            if state is None:
                return False
            deleted = self._delete_if_ours(state)
            self._write(state)
            return deleted

    def outcome(self) -> str | None:
        """One line on what this run did with the host, for the terminal summary."""
        state = self._read()
        if state is None:
            return None
        name = self.settings.host_name
        if state.error:
            return f"kind host {name!r}: could not be created: {state.error}"
        if not state.created:
            return f"kind host {name!r}: existed before the run; reused and left in place"
        if state.deleted:
            fate = "deleted at the end"
        elif self.settings.keep_host:
            fate = "kept (--vcluster-keep-host)"
        elif state.preserved:
            fate = f"kept: it holds {state.preserved} paused or kept vcluster(s)"
        else:
            fate = "not deleted yet"
        return (
            f"kind host {name!r}: created by {state.created_by} in {state.create_seconds}s, {fate}"
        )

    def _delete_if_ours(self, state: _LeaseState) -> bool:
        if not state.created or state.deleted or self.settings.keep_host:
            return False
        if state.preserved:
            log.warning(
                "keeping kind host %s: it holds %d paused or kept vcluster(s); "
                "remove it with `kind delete cluster --name %s`",
                self.settings.host_name,
                state.preserved,
                self.settings.host_name,
            )
            return False
        try:
            self._kind_host().delete()
        except VClusterError as exc:
            log.warning("could not delete kind host %s: %s", self.settings.host_name, exc)
            return False
        state.deleted = True
        return True
