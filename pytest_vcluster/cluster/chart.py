"""Rendering the vcluster chart into host objects with ``helm template``.

The ``api`` way of creating a vcluster renders the chart here and creates the objects
through the Kubernetes API (:mod:`~pytest_vcluster.cluster.host_objects`), skipping the
vcluster CLI and a Helm release per cluster. The chart comes from
``--vcluster-local-chart-dir`` or is pulled once per process from ``--vcluster-chart-repo``
at ``--vcluster-chart-version`` (default: the version of the vcluster CLI on PATH, the chart
that CLI would install).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pytest_vcluster.core.commands import CommandRunner, find_tool
from pytest_vcluster.core.errors import VClusterError
from pytest_vcluster.core.files import write_private
from pytest_vcluster.settings.config import Settings

__all__ = ["DEFAULT_CHART_REPO", "ChartRenderer", "parse_manifests", "template_argv"]

log = logging.getLogger(__name__)

#: Where the vcluster CLI itself takes its chart from.
DEFAULT_CHART_REPO = "https://charts.loft.sh"
_RENDER_TIMEOUT = 120.0
_CLI_VERSION = re.compile(r"(\d+\.\d+\.\d+[\w.+-]*)")


def template_argv(
    helm: str,
    chart: Path,
    name: str,
    namespace: str,
    *,
    values_file: Path,
    kube_version: str | None,
) -> list[str]:
    """The ``helm template`` command line for one cluster."""
    argv = [helm, "template", name, str(chart), "--namespace", namespace, "-f", str(values_file)]
    if kube_version:
        # The chart branches on the host's minor; helm's built-in default may differ from it.
        argv += ["--kube-version", kube_version]
    return argv


def parse_manifests(text: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML stream, skipping empty documents."""
    objects = []
    for document in yaml.safe_load_all(text):
        if not document:
            continue
        if not isinstance(document, dict) or "kind" not in document:
            raise VClusterError(
                f"helm template printed something that is not an object: {document!r:.200}"
            )
        objects.append(document)
    return objects


class ChartRenderer:
    """Renders the chart for one cluster; finds or pulls the chart once per process."""

    def __init__(
        self,
        settings: Settings,
        workdir: Path,
        runner: CommandRunner | None = None,
        kube_version: str | None = None,
    ) -> None:
        self.settings = settings
        self.workdir = workdir
        self.runner = runner or CommandRunner()
        self.kube_version = kube_version
        self._lock = threading.Lock()
        self._chart: Path | None = settings.local_chart_dir
        self._helm: str | None = None

    @property
    def helm(self) -> str:
        """The helm binary (found on first use)."""
        if self._helm is None:
            self._helm = find_tool("helm", self.settings.helm_binary)
        return self._helm

    def chart(self) -> Path:
        """The chart directory or archive, pulled on first use when none is local."""
        with self._lock:
            if self._chart is None:
                self._chart = self._pull()
            return self._chart

    def _cli_version(self) -> str:
        vcluster = find_tool("vcluster", self.settings.vcluster_binary)
        result = self.runner.run([vcluster, "--version"], timeout=30)
        match = _CLI_VERSION.search(result.stdout)
        if match is None:
            raise VClusterError(
                f"cannot tell the vcluster CLI's version from {result.stdout.strip()!r}; "
                "pass --vcluster-chart-version or --vcluster-local-chart-dir"
            )
        return match.group(1)

    def _pull(self) -> Path:
        version = self.settings.chart_version or self._cli_version()
        destination = self.workdir / "chart"
        destination.mkdir(parents=True, exist_ok=True)
        repo = self.settings.chart_repo or DEFAULT_CHART_REPO
        self.runner.run(
            [self.helm, "pull", "vcluster", "--repo", repo, "--version", version,
             "--destination", str(destination)],
            timeout=_RENDER_TIMEOUT,
        )  # fmt: skip
        archives = sorted(destination.glob("vcluster-*.tgz"))
        if not archives:
            raise VClusterError(f"helm pull of vcluster {version} from {repo} left no archive")
        log.info("pulled vcluster chart %s from %s", version, repo)
        return archives[-1]

    def render(
        self, name: str, namespace: str, values: Mapping[str, Any], directory: Path
    ) -> list[dict[str, Any]]:
        """The host objects of cluster ``name`` in ``namespace`` with ``values``."""
        values_file = write_private(directory / "values.yaml", yaml.safe_dump(dict(values)))
        argv = template_argv(
            self.helm,
            self.chart(),
            name,
            namespace,
            values_file=values_file,
            kube_version=self.kube_version,
        )
        result = self.runner.run(argv, timeout=_RENDER_TIMEOUT)
        return parse_manifests(result.stdout)
