"""``pytest-vcluster doctor``: is this machine ready to run vclusters, and if not, what to do.

Each check says ``ok``, ``warn`` or ``FAIL`` with what it found, and for anything not ok the fix.
The checks are those a first run would otherwise fail on, one at a time: Docker, the tools and
their versions, the inotify limits many control planes need, and the host.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_vcluster.core.commands import CommandRunner, find_tool
from pytest_vcluster.core.errors import VClusterError
from pytest_vcluster.diagnostics.header import run_version
from pytest_vcluster.host.kind import check_docker, connect_existing_host
from pytest_vcluster.host.locks import default_state_root
from pytest_vcluster.settings.config import Settings

__all__ = ["MINIMUM_VERSIONS", "Check", "run_checks"]

#: The oldest tool versions the plugin works with.
MINIMUM_VERSIONS = {"kind": (0, 20), "vcluster": (0, 36), "helm": (3, 10)}
#: kind's own advice for a few clusters; every vcluster adds watches of its own.
INOTIFY_MINIMUM = {"max_user_instances": 512, "max_user_watches": 524288}


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    status: str  # "ok", "warn" or "FAIL"
    what: str
    found: str
    fix: str = ""

    def line(self) -> str:
        """``STATUS what: found`` and the fix on the next line."""
        text = f"{self.status:<4} {self.what}: {self.found}"
        return text + (f"\n     fix: {self.fix}" if self.fix else "")


def _version(text: str) -> tuple[int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def check_tool(tool: str, configured: str | None, runner: CommandRunner) -> Check:
    """The tool is found, runs, and is recent enough."""
    try:
        path, text = run_version(tool, configured, runner, timeout=15)
    except VClusterError as exc:
        return Check("FAIL", tool, str(exc).splitlines()[0])
    found = _version(text)
    minimum = MINIMUM_VERSIONS[tool]
    wanted = ".".join(map(str, minimum))
    if found is None:
        return Check("warn", tool, f"{path}: cannot read its version from {text[:80]!r}")
    if found < minimum:
        return Check(
            "FAIL",
            tool,
            f"{path} is {'.'.join(map(str, found))}, older than {wanted}",
            f"install {tool} {wanted} or later",
        )
    return Check("ok", tool, f"{path} ({text.splitlines()[0][:80]})")


def check_inotify(proc: Path = Path("/proc/sys/fs/inotify")) -> Iterator[Check]:
    """inotify limits: each control plane and kubelet watches many files."""
    for name, minimum in INOTIFY_MINIMUM.items():
        try:
            value = int((proc / name).read_text().strip())
        except (OSError, ValueError):
            yield Check("warn", f"inotify {name}", "cannot be read (not Linux?)")
            continue
        if value < minimum:
            yield Check(
                "warn",
                f"inotify {name}",
                f"{value}, below {minimum}: control planes may fail with 'too many open files'",
                "sudo sysctl fs.inotify.max_user_instances=8192 "
                "fs.inotify.max_user_watches=1048576",
            )
        else:
            yield Check("ok", f"inotify {name}", str(value))


def check_state_dir(settings: Settings, env: dict[str, str]) -> Check:
    """The machine-wide state directory can be written."""
    root = settings.state_dir or default_state_root(env)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".doctor"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return Check(
            "FAIL", "state directory", f"{root}: {exc}", "pass --vcluster-state-dir=A_WRITABLE_DIR"
        )
    return Check("ok", "state directory", str(root))


def check_host(settings: Settings, runner: CommandRunner) -> Check:
    """The host answers (an existing one), or the kind host exists or can be made."""
    if settings.host_kubeconfig is not None:
        try:
            connect_existing_host(settings.host_kubeconfig, settings.host_context)
        except VClusterError as exc:
            return Check(
                "FAIL", "host", str(exc), "check the kubeconfig, its context and the network"
            )
        return Check("ok", "host", f"existing cluster from {settings.host_kubeconfig} answers")
    try:
        kind = find_tool("kind", settings.kind_binary)
        clusters = runner.run([kind, "get", "clusters"], timeout=30).stdout.split()
    except VClusterError as exc:
        return Check("FAIL", "host", f"cannot list kind clusters: {str(exc).splitlines()[0]}")
    if settings.host_name in clusters:
        return Check("ok", "host", f"kind cluster {settings.host_name!r} exists")
    return Check("ok", "host", f"kind cluster {settings.host_name!r} will be created on first use")


def run_checks(
    settings: Settings,
    env: dict[str, str],
    runner: CommandRunner | None = None,
    docker_check: Callable[[], None] = check_docker,
) -> list[Check]:
    """Every check, in the order a first run would meet them."""
    runner = runner or CommandRunner()
    checks: list[Check] = []
    kind_host = settings.host_kubeconfig is None
    if kind_host:
        try:
            docker_check()
            checks.append(Check("ok", "docker", "the daemon answers"))
        except VClusterError as exc:
            checks.append(Check("FAIL", "docker", str(exc)))
    tools = ["kind", "vcluster", "helm"] if kind_host else ["vcluster", "helm"]
    configured = {
        "kind": settings.kind_binary,
        "vcluster": settings.vcluster_binary,
        "helm": settings.helm_binary,
    }
    checks += [check_tool(tool, configured[tool], runner) for tool in tools]
    if kind_host:
        checks += list(check_inotify())
    checks.append(check_state_dir(settings, env))
    if not any(check.status == "FAIL" for check in checks):
        checks.append(check_host(settings, runner))
    return checks
