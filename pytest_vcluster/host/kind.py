"""The host cluster that runs the vclusters: a kind cluster, or an existing cluster.

:class:`KindHost` runs the ``kind`` commands for one kind cluster; who may create or delete it
is decided in :mod:`~pytest_vcluster.host.acquire`. :func:`connect_existing_host` checks a cluster
given by kubeconfig and context. This module does not import pytest.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import docker
from kubernetes import client, config

from pytest_vcluster.core.commands import INSTALL_HINTS, CommandRunner
from pytest_vcluster.core.errors import HostError
from pytest_vcluster.core.files import write_private
from pytest_vcluster.host.images import ImageLoader, LoadResult

__all__ = [
    "HostInfo",
    "KindHost",
    "check_docker",
    "connect_existing_host",
    "host_api_client",
    "kind_config",
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

    def cli_flags(self) -> str:
        """The ``pytest-vcluster`` command's options that name this host."""
        if self.mode == "existing":
            context = f" --host-context {self.context}" if self.context else ""
            return f"--host-kubeconfig {self.kubeconfig}{context}"
        return f"--host-name {self.name}"

    def load_image(self, ref: str, *, timeout: float = 600.0) -> LoadResult:
        """Make local Docker image ``ref`` (``repo:tag``) usable by pods in every vcluster.

        The image is imported into each kind node's containerd unless the node already holds
        that name with the same image ID; pods use it with ``imagePullPolicy: Never``.
        Raises :class:`HostError` on an existing host (no node to import into) and
        :class:`~pytest_vcluster.host.images.ImageLoadError` when the image is not in Docker.
        """
        if self.mode != "kind":
            raise HostError(
                f"cannot load image {ref!r}: loading local images needs a kind host, and this "
                f"host is an existing cluster ({self.kubeconfig}); push the image to a registry "
                f"that cluster can pull from, or drop --vcluster-host-kubeconfig"
            )
        return ImageLoader(self.name, timeout=timeout).load(ref)


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
