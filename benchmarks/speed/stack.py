"""The offline stack as this benchmark uses it, and the one kind host its phases share."""

from __future__ import annotations

from pathlib import Path

from .. import stackkit

BENCHMARKS = Path(__file__).resolve().parents[1]
SUITE_DIR = BENCHMARKS / "suite"
REPO = BENCHMARKS.parent
HOST = "speed-host"  # every cluster this benchmark creates is named speed-*


class BenchError(stackkit.StackError):
    """A measurement could not be taken; the message says which and why."""


class Stack(stackkit.Stack):
    """The settings ``.ci/stack/up`` wrote to stack.json, with the chart, values and versions."""

    required = ("node_image", "chart_dir", "values_file", "version_map", "path_dir")
    error = BenchError

    @property
    def version_map(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.raw["version_map"].items()}

    @property
    def workload_image(self) -> str:
        return str(self.raw.get("images", {}).get("workload", "pytest-vcluster/workload:1"))

    def plugin_args(self) -> list[str]:
        """Options pointing pytest-vcluster at the stack and at the shared host."""
        return [
            f"--vcluster-node-image={self.node_image}",
            f"--vcluster-local-chart-dir={self.raw['chart_dir']}",
            f"--vcluster-values-files={self.raw['values_file']}",
            "--vcluster-version-map=" + ",".join(f"{k}={v}" for k, v in self.version_map.items()),
            f"--vcluster-kind-binary={self.tool('kind')}",
            f"--vcluster-cli-binary={self.tool('vcluster')}",
            f"--vcluster-helm-binary={self.tool('helm')}",
            f"--vcluster-host-name={HOST}",
            "--vcluster-keep-host",  # the host is this benchmark's; it outlives every inner run
        ]


def version_key(minor: str) -> tuple[int, ...]:
    """Sort key of a Kubernetes minor such as ``1.34`` (numeric: 1.9 before 1.10)."""
    return tuple(int(part) for part in minor.split(".") if part.isdigit())
