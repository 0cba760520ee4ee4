"""Text for pytest's report header (host and settings) and the tools line of the summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_vcluster.core.errors import ToolNotFoundError, VClusterError
from pytest_vcluster.settings.config import Settings, describe, describe_host

if TYPE_CHECKING:
    from pytest_vcluster.core.commands import CommandRunner

__all__ = ["header_lines", "run_version", "tool_version", "tools_line"]

_VERSION_ARGS = {
    "kind": ["version"],
    "vcluster": ["version"],
    "helm": ["version", "--short"],
}


def run_version(
    tool: str, configured: str | None, runner: CommandRunner | None = None, timeout: float = 10
) -> tuple[str, str]:
    """The tool's path and what its version command prints; raises :class:`VClusterError`."""
    # Imported here: the header of every pytest run loads this module, the tools only a summary.
    from pytest_vcluster.core.commands import CommandRunner, find_tool  # noqa: PLC0415

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


def tools_line(settings: Settings) -> str:
    """``vcluster tools: kind: ...; vcluster: ...; helm: ...``: the tools the host needs.

    It runs each tool's version command, so it is shown at the end of a run that used
    vclusters, not in the header of every run.
    """
    configured = {
        "kind": settings.kind_binary,
        "vcluster": settings.vcluster_binary,
        "helm": settings.helm_binary,
    }
    tools = ("vcluster", "helm") if settings.existing_host else ("kind", "vcluster", "helm")
    return "vcluster tools: " + "; ".join(tool_version(t, configured[t]) for t in tools)


def header_lines(settings: Settings) -> list[str]:
    """Lines for ``pytest_report_header``: the host and the settings (no subprocess)."""
    lines = [f"vcluster: {describe_host(settings)}"]
    summary = describe(settings)
    if settings.settings_file is not None:
        summary += f"{', ' if summary else ''}from {settings.settings_file}"
    if summary:
        lines.append(f"vcluster settings: {summary}")
    return lines
