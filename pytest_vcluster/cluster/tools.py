"""kubectl and helm against one vcluster: its kubeconfig, argument lists, timeouts.

Each command runs through :class:`~pytest_vcluster.core.commands.CommandRunner` (never a
shell) with ``--kubeconfig`` on the command line *and* ``KUBECONFIG`` in the environment, so
neither the user's current context nor a tool's plugin can reach another cluster. A tool that
is not installed raises :class:`~pytest_vcluster.core.errors.ToolNotFoundError` with an
install hint; a failing command raises :class:`~pytest_vcluster.core.errors.CommandError`
with its stderr. This module does not import pytest.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import yaml

from pytest_vcluster.core.commands import CommandRunner, find_tool
from pytest_vcluster.core.errors import ConfigError, ToolNotFoundError
from pytest_vcluster.core.files import write_private

__all__ = [
    "HELM_GRACE",
    "KUBECTL_HINT",
    "Arg",
    "ClusterTools",
    "find_kubectl",
    "helm_argv",
    "helm_install_argv",
    "kubectl_argv",
    "release_name",
]

#: A command-line argument: text, or a path.
Arg: TypeAlias = str | os.PathLike[str]

KUBECTL_HINT = (
    "Install kubectl (https://kubernetes.io/docs/tasks/tools/) and put it on PATH; the "
    "vcluster's kubeconfig is vcluster.kubeconfig, and vcluster.api_client needs no kubectl."
)
#: Seconds ``helm install --wait`` may run past its own ``--timeout``, so that helm reports
#: what it waited for instead of being killed without a word.
HELM_GRACE = 30.0
_RELEASE_CHARS = re.compile(r"[^a-z0-9-]+")
_CHART_VERSION = re.compile(r"-v?\d+\.\d+\.\d+[^/]*$")
#: helm's limit for release names.
_RELEASE_MAX = 53


def find_kubectl(configured: str | None = None) -> str:
    """The kubectl to run: ``configured`` (a path or a name), else ``kubectl`` on PATH."""
    candidate = configured or "kubectl"
    if os.sep in candidate:
        path = Path(candidate).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.resolve())
        raise ToolNotFoundError("kubectl", f"{candidate} is not an executable file", KUBECTL_HINT)
    found = shutil.which(candidate)
    if found is None:
        raise ToolNotFoundError(
            "kubectl", f"'{candidate}' is not on PATH={os.environ.get('PATH', '')}", KUBECTL_HINT
        )
    return found


def kubectl_argv(kubectl: str, kubeconfig: Path, args: tuple[Arg, ...]) -> list[str]:
    """``kubectl --kubeconfig=PATH ARGS...``: the flag first, so it precedes any ``--``."""
    return [kubectl, f"--kubeconfig={kubeconfig}", *(os.fspath(arg) for arg in args)]


def helm_argv(helm: str, kubeconfig: Path, args: tuple[Arg, ...]) -> list[str]:
    """``helm --kubeconfig=PATH ARGS...``."""
    return [helm, f"--kubeconfig={kubeconfig}", *(os.fspath(arg) for arg in args)]


def release_name(chart: str) -> str:
    """A release name from a chart: its ``Chart.yaml`` name for a directory, the file name
    without version for a ``.tgz``, the last part of a repository reference."""
    path = Path(chart)
    name = ""
    if path.is_dir():
        try:
            meta = yaml.safe_load((path / "Chart.yaml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            meta = None
        if isinstance(meta, Mapping) and isinstance(meta.get("name"), str):
            name = meta["name"]
        name = name or path.resolve().name
    else:
        base = chart.rstrip("/").rsplit("/", 1)[-1]
        if base.endswith(".tgz"):
            base = base.removesuffix(".tgz")
            base = _CHART_VERSION.sub("", base)
        name = base
    cleaned = _RELEASE_CHARS.sub("-", name.lower()).strip("-")[:_RELEASE_MAX].strip("-")
    if not cleaned:
        raise ConfigError(
            "helm_install(release=...)", f"cannot make a release name from chart {chart!r}"
        )
    return cleaned


def _chart_argument(chart: Arg) -> str:
    """The chart as helm takes it; a local one must exist."""
    text = os.fspath(chart)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "Chart.yaml").is_file():
            raise ConfigError(
                "helm_install(chart=...)",
                f"{path} has no Chart.yaml",
                "a chart directory (with Chart.yaml), a packaged chart (.tgz) or a reference "
                "helm resolves (repo/name, oci://...)",
            )
        return str(path.resolve())
    if path.is_file():
        return str(path.resolve())
    local = (
        not isinstance(chart, str)
        or text.startswith((".", "/", "~"))
        or text.endswith((".tgz", ".tar.gz"))
    )
    if local:
        raise ConfigError(
            "helm_install(chart=...)",
            f"no chart at {text} (relative paths start at {Path.cwd()})",
            "an existing chart directory or .tgz file",
        )
    # repo/name or oci://...: helm resolves it (and needs the network for it).
    return text


def helm_install_argv(
    helm: str,
    kubeconfig: Path,
    chart: str,
    release: str,
    *,
    namespace: str,
    values_file: Path | None,
    wait: bool,
    timeout: float,
) -> list[str]:
    """The ``helm install`` command line."""
    args: list[Arg] = ["install", release, chart, "--namespace", namespace, "--create-namespace"]
    if values_file is not None:
        args += ["--values", str(values_file)]
    if wait:
        args += ["--wait", "--timeout", f"{math.ceil(timeout)}s"]
    return helm_argv(helm, kubeconfig, tuple(args))


@dataclass
class ClusterTools:
    """kubectl and helm bound to one cluster's kubeconfig.

    ``helm_binary`` and ``kubectl_binary`` are paths or names on PATH; None means ``helm``
    and ``kubectl`` on PATH. Each is looked up on its first use.
    """

    kubeconfig: Path
    helm_binary: str | None = None
    kubectl_binary: str | None = None
    runner: CommandRunner | None = None
    _found: dict[str, str] = field(default_factory=dict, repr=False)

    def env(self) -> dict[str, str]:
        """A copy of the current environment with ``KUBECONFIG`` set to this cluster's."""
        merged = dict(os.environ)
        merged["KUBECONFIG"] = str(self.kubeconfig)
        return merged

    def _runner(self) -> CommandRunner:
        # A context chosen in the environment would be looked for in this kubeconfig and
        # not found; the kubeconfig's own current context is the one.
        env = {"KUBECONFIG": str(self.kubeconfig), "HELM_KUBECONTEXT": ""}
        if self.runner is None:
            return CommandRunner(env=env)
        return CommandRunner(
            env={**self.runner.env, **env},
            default_timeout=self.runner.default_timeout,
            cwd=self.runner.cwd,
        )

    def _tool(self, name: str) -> str:
        if name not in self._found:
            if name == "kubectl":
                self._found[name] = find_kubectl(self.kubectl_binary)
            else:
                self._found[name] = find_tool(name, self.helm_binary)
        return self._found[name]

    def kubectl(self, *args: Arg, input: str | None = None, timeout: float = 60.0) -> str:
        """Run kubectl against the cluster; return its stdout."""
        argv = kubectl_argv(self._tool("kubectl"), self.kubeconfig, args)
        return self._runner().run(argv, timeout=timeout, input_text=input).stdout

    def helm(self, *args: Arg, timeout: float = 300.0) -> str:
        """Run helm against the cluster; return its stdout."""
        argv = helm_argv(self._tool("helm"), self.kubeconfig, args)
        return self._runner().run(argv, timeout=timeout).stdout

    def helm_install(
        self,
        chart: Arg,
        *,
        release: str | None = None,
        namespace: str = "default",
        values: Mapping[str, Any] | Arg | None = None,
        wait: bool = True,
        timeout: float = 300.0,
    ) -> str:
        """``helm install`` a chart into the cluster; return the release name."""
        chart_arg = _chart_argument(chart)
        name = release or release_name(chart_arg)
        helm = self._tool("helm")
        with tempfile.TemporaryDirectory(prefix="pytest-vcluster-values-") as directory:
            values_file: Path | None = None
            if isinstance(values, Mapping):
                # Values may hold credentials: a private file, removed right after.
                values_file = write_private(
                    Path(directory) / "values.yaml", yaml.safe_dump(dict(values))
                )
            elif values is not None:
                values_file = Path(values).expanduser()
                if not values_file.is_file():
                    raise ConfigError(
                        "helm_install(values=...)",
                        f"no values file at {values_file}",
                        "a mapping of values, or the path of an existing values file",
                    )
            argv = helm_install_argv(
                helm,
                self.kubeconfig,
                chart_arg,
                name,
                namespace=namespace,
                values_file=values_file,
                wait=wait,
                timeout=timeout,
            )
            limit = timeout + HELM_GRACE if wait else timeout
            self._runner().run(argv, timeout=limit)
        return name
