"""Settings of the offline stack (written by ``.ci/stack/up``) for the end-to-end tier."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

SETTINGS_ENV = "PYTEST_VCLUSTER_STACK"
DEFAULT_SETTINGS = Path.home() / ".cache" / "pytest-vcluster-stack" / "stack.json"


class StackMissingError(RuntimeError):
    """The stack settings file is absent: the e2e tier cannot run."""


@dataclass(frozen=True)
class Stack:
    node_image: str
    chart_dir: str
    values_file: str
    version_map: dict[str, str]
    path_dir: str
    workload_image: str
    host_kubernetes_version: str

    @property
    def minors(self) -> list[str]:
        return list(self.version_map)

    def env(self) -> dict[str, str]:
        """The process environment with the stack's tools first on PATH."""
        env = dict(os.environ)
        env["PATH"] = self.path_dir + os.pathsep + env.get("PATH", "")
        return env

    def tool(self, name: str) -> str:
        found = shutil.which(name, path=self.path_dir)
        if found is None:
            raise StackMissingError(f"{name} is not in {self.path_dir}; run .ci/stack/up")
        return found

    def plugin_args(self) -> list[str]:
        """Command-line options that point pytest-vcluster at this stack."""
        return [
            f"--vcluster-node-image={self.node_image}",
            f"--vcluster-local-chart-dir={self.chart_dir}",
            f"--vcluster-values={self.values_file}",
            "--vcluster-version-map=" + ",".join(f"{k}={v}" for k, v in self.version_map.items()),
            f"--vcluster-kind-binary={self.tool('kind')}",
            f"--vcluster-vcluster-binary={self.tool('vcluster')}",
            f"--vcluster-helm-binary={self.tool('helm')}",
        ]


def load_stack() -> Stack:
    path = Path(os.environ.get(SETTINGS_ENV, DEFAULT_SETTINGS))
    if not path.is_file():
        raise StackMissingError(
            f"offline stack settings not found at {path}: run `bash .ci/stack/up` first "
            f"(or set {SETTINGS_ENV} to the stack.json it wrote)"
        )
    raw = json.loads(path.read_text())
    return Stack(
        node_image=raw["node_image"],
        chart_dir=raw["chart_dir"],
        values_file=raw["values_file"],
        version_map=dict(raw["version_map"]),
        path_dir=raw["path_dir"],
        workload_image=raw["images"]["workload"],
        host_kubernetes_version=raw["host_kubernetes_version"],
    )
