"""Text for pytest's report header: host in effect and versions of the tools found."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_vcluster.core.commands import CommandRunner, find_tool
from pytest_vcluster.core.errors import ToolNotFoundError, VClusterError
from pytest_vcluster.settings.config import Settings, describe

__all__ = ["header_lines", "run_version", "tool_version"]

_VERSION_ARGS = {
    "kind": ["version"],
    "vcluster": ["version"],
    "helm": ["version", "--short"],
}


def run_version(
    tool: str, configured: str | None, runner: CommandRunner | None = None, timeout: float = 10
) -> tuple[str, str]:
    """The tool's path and what its version command prints; raises :class:`VClusterError`."""
    path = find_tool(tool, configured)
    result = (runner or CommandRunner()).run([path, *_VERSION_ARGS[tool]], timeout=timeout)
    return path, (result.stdout or result.stderr).strip()


def tool_version(tool: str, configured: str | None, runner: CommandRunner | None = None) -> str:
    """``TOOL VERSION`` or a short reason why it is unavailable; never raises."""
    try:
        _, output = run_version(tool, configured, runner)
    except ToolNotFoundError:
        return f"{tool}: not found" + (f" at {configured}" if configured else " on PATH")
    except VClusterError as exc:
        first = str(exc).splitlines()[0]
        return f"{tool}: unavailable ({first[:120]})"
    text = output.splitlines()
    return f"{tool}: {text[0] if text else 'unknown version'}"


def header_lines(settings: Settings, host_line: str, tools: Sequence[str]) -> list[str]:
    """Lines for ``pytest_report_header``: the host, the ``tools`` it needs, the settings."""
    configured = {
        "kind": settings.kind_binary,
        "vcluster": settings.vcluster_binary,
        "helm": settings.helm_binary,
    }
    lines = [f"vcluster: {host_line}"]
    lines.append("vcluster tools: " + "; ".join(tool_version(t, configured[t]) for t in tools))
    summary = describe(settings)
    if settings.settings_file is not None:
        summary += f"{', ' if summary else ''}from {settings.settings_file}"
    if summary:
        lines.append(f"vcluster settings: {summary}")
    return lines
