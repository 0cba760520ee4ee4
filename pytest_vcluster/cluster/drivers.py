"""The two ways a vcluster's objects reach the host (``--vcluster-create-with``).

:class:`ApiDriver` renders the chart with ``helm template`` and creates the objects through
the Kubernetes API: no CLI process, no Helm release, objects labelled like the namespace.
:class:`CliDriver` runs ``vcluster create --driver helm`` as a user would. Both leave the same
workload (``app=vcluster,release=NAME``) in the namespace; everything after that is shared.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml
from kubernetes import client

from pytest_vcluster.cluster.chart import ChartRenderer
from pytest_vcluster.cluster.host_objects import CreatedObject, ObjectApplier
from pytest_vcluster.cluster.pki import KeyStock, certs_secret, premade_certs_apply
from pytest_vcluster.cluster.seed import SeedError, seed_secret, seeded_objects
from pytest_vcluster.core.commands import CommandRunner, find_tool
from pytest_vcluster.core.errors import VClusterError
from pytest_vcluster.core.files import write_private
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.host.kind import HostInfo
from pytest_vcluster.settings.config import Settings
from pytest_vcluster.settings.request import VClusterSpec

__all__ = ["ApiDriver", "CliDriver", "ObjectDriver"]

log = logging.getLogger(__name__)


class ObjectDriver(Protocol):
    """Puts a vcluster's objects into its (existing, empty) namespace and takes them out."""

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
        """Create the cluster's objects; True if its control plane starts from ``seed``."""
        ...

    def delete_objects(self, name: str, namespace: str, deadline: Deadline) -> None: ...

    def deletable_elsewhere(self, name: str) -> bool:
        """True if another process can delete the cluster completely by its namespace and
        name (a warm cluster is deleted by whichever run holds it last)."""
        ...


class ApiDriver:
    """``helm template`` plus object creation through the host API."""

    def __init__(
        self, renderer: ChartRenderer, api: client.ApiClient, *, keys: KeyStock | None = None
    ) -> None:
        self.renderer = renderer
        self.applier = ObjectApplier(api)
        self.keys = keys
        self._lock = threading.Lock()
        # Cluster-scoped objects (a ClusterRole when values sync host resources) outlive
        # the namespace and are deleted by name.
        self._cluster_scoped: dict[str, list[CreatedObject]] = {}

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
        """Render and create every object of the chart for this cluster; with ``seed``, its
        control plane starts from that store (:mod:`~pytest_vcluster.cluster.seed`)."""
        del deadline  # rendering and creating are bounded by their own timeouts
        objects = self.renderer.render(name, namespace, spec.values, directory)
        if seed is not None:
            try:
                objects = seeded_objects(name, objects)
            except SeedError as exc:
                log.warning("vcluster %s starts without its seed: %s", name, exc)
                seed = None
        premade = self._premade_certs(name, spec)
        if premade is not None:
            # Before the control plane's pod exists: its syncer reads the secret at start.
            self.applier.create(premade, namespace, labels)
        if seed is not None:
            self.applier.create(seed_secret(name, seed), namespace, labels)
        for obj in objects:
            created = self.applier.create(obj, namespace, labels)
            if created.namespace is None:
                with self._lock:
                    self._cluster_scoped.setdefault(name, []).append(created)
        return seed is not None

    def _premade_certs(self, name: str, spec: VClusterSpec) -> dict[str, Any] | None:
        """Secret ``NAME-certs`` signed with a key set nobody else got, when one is ready and
        vcluster would make kubeadm's certificates for these values."""
        if self.keys is None or not premade_certs_apply(spec.values):
            return None
        keys = self.keys.take()
        if keys is None:
            log.debug("no premade keys ready for %s: its syncer makes its certificates", name)
            return None
        return certs_secret(name, keys)

    def delete_objects(self, name: str, namespace: str, deadline: Deadline) -> None:
        """Delete the cluster-scoped objects; the namespace's deletion takes the rest."""
        del namespace, deadline
        with self._lock:
            created = self._cluster_scoped.pop(name, [])
        for obj in created:
            self.applier.delete(obj)

    def deletable_elsewhere(self, name: str) -> bool:
        """Only this process knows the cluster-scoped objects it created for ``name``."""
        with self._lock:
            return not self._cluster_scoped.get(name)


class CliDriver:
    """``vcluster create`` and ``vcluster delete`` with the helm driver and a private config."""

    def __init__(
        self, settings: Settings, host: HostInfo, workdir: Path, runner: CommandRunner | None
    ) -> None:
        self.settings = settings
        self.host = host
        self.workdir = workdir
        self._runner = runner
        self._binary: str | None = None
        self._lock = threading.Lock()

    @property
    def cli_config(self) -> Path:
        """The CLI's own config file, private to this process."""
        return self.workdir / "vcluster-cli.json"

    def _cli(self) -> tuple[CommandRunner, str]:
        with self._lock:
            if self._binary is None:
                self._binary = find_tool("vcluster", self.settings.vcluster_binary)
                helm = find_tool("helm", self.settings.helm_binary)
                path = os.pathsep.join([str(Path(helm).parent), os.environ.get("PATH", "")])
                env = {"KUBECONFIG": str(self.host.kubeconfig), "PATH": path}
                # Helm driver, no CLI telemetry, and no saved platform login or driver of the
                # user's can change what it does.
                write_private(
                    self.cli_config,
                    json.dumps({"driver": {"type": "helm"}, "telemetryDisabled": True}),
                )
                if self._runner is None:
                    self._runner = CommandRunner(env=env)
                else:
                    # An injected runner still gets the host's kubeconfig and our helm.
                    self._runner = CommandRunner(
                        env={**self._runner.env, **env},
                        default_timeout=self._runner.default_timeout,
                        cwd=self._runner.cwd,
                    )
            if self._runner is None:  # pragma: no cover - set just above
                raise VClusterError("no command runner")
            return self._runner, self._binary

    def global_flags(self, namespace: str) -> list[str]:
        """Flags every CLI call gets."""
        flags = [
            "--namespace", namespace, "--driver", "helm",
            "--config", str(self.cli_config), "--log-output", "plain",
        ]  # fmt: skip
        if self.host.context:
            flags += ["--context", self.host.context]
        return flags

    def run(self, args: list[str], namespace: str, timeout: float) -> str:
        """Run one CLI command and return its stdout."""
        runner, binary = self._cli()
        result = runner.run([binary, *args, *self.global_flags(namespace)], timeout=timeout)
        return result.stdout

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
        """``vcluster create`` into the namespace (returns before the cluster is ready)."""
        # The CLI labels its own objects (the namespace carries ours) and renders the chart
        # itself, so it has no control plane to give a seed to.
        del labels, seed
        values_file = write_private(directory / "values.yaml", yaml.safe_dump(dict(spec.values)))
        args = [
            "create", name, "--connect=false", "--create-namespace=false", "--add=false",
            "--background-proxy=false",
            # Reached through a port forward: no NodePort needed even on a local cluster.
            "--expose-local=false",
            "-f", str(values_file),
        ]  # fmt: skip
        if self.settings.local_chart_dir is not None:
            args += ["--local-chart-dir", str(self.settings.local_chart_dir)]
        if self.settings.chart_repo:
            args += ["--chart-repo", self.settings.chart_repo]
        if self.settings.chart_version:
            args += ["--chart-version", self.settings.chart_version]
        self.run(args, namespace, timeout=max(deadline.remaining, 60))
        return False

    def deletable_elsewhere(self, name: str) -> bool:
        """``vcluster delete`` finds what the release made by its name."""
        del name
        return True

    def delete_objects(self, name: str, namespace: str, deadline: Deadline) -> None:
        """``vcluster delete`` (the Helm release and what it made outside the namespace)."""
        try:
            self.run(
                [
                    "delete", name, "--wait=false", "--delete-context=false",
                    "--delete-configmap", "--auto-delete-namespace=false", "--ignore-not-found",
                ],
                namespace,
                timeout=max(deadline.remaining, 30),
            )  # fmt: skip
        except VClusterError as exc:
            # Deleting the namespace removes the release and everything synced anyway.
            log.warning("vcluster delete %s failed, deleting its namespace: %s", name, exc)
