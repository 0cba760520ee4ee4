"""Running command-line tools: discovery on PATH and a subprocess wrapper with timeouts.

Commands are argument lists (never a shell string), always have a timeout, run in a private
working directory (the vcluster CLI refuses to run where a ``vcluster`` file or folder exists)
and raise :class:`~pytest_vcluster.core.errors.CommandError` with the stderr tail when they fail.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_vcluster.core.errors import CommandError, ToolNotFoundError

__all__ = ["INSTALL_HINTS", "CommandResult", "CommandRunner", "find_tool", "kill_group"]

log = logging.getLogger(__name__)

INSTALL_HINTS: Mapping[str, str] = {
    "kind": "Install kind (https://kind.sigs.k8s.io, e.g. 'go install sigs.k8s.io/kind@v0.32.0') "
    "or pass --vcluster-kind-binary.",
    "vcluster": "Install the vcluster CLI (v0.36 or later) or pass --vcluster-cli-binary.",
    "helm": "Install helm 3.10 or later (the vcluster CLI runs it) or pass --vcluster-helm-binary.",
    "docker": "Install Docker and start the daemon (kind runs the host cluster in containers).",
}


@functools.cache
def _private_cwd() -> Path:
    """An empty directory to run tools in, removed when the process exits."""
    path = Path(tempfile.mkdtemp(prefix="pytest-vcluster-cwd-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def find_tool(name: str, configured: str | None = None) -> str:
    """Return the absolute path of tool ``name``; ``configured`` is a path or a name on PATH."""
    candidate = configured or name
    if os.sep in candidate:
        path = Path(candidate).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.resolve())
        raise ToolNotFoundError(name, f"{candidate} is not an executable file", INSTALL_HINTS[name])
    found = shutil.which(candidate)
    if found is None:
        raise ToolNotFoundError(
            name, f"'{candidate}' is not on PATH={os.environ.get('PATH', '')}", INSTALL_HINTS[name]
        )
    return found


@dataclass(frozen=True)
class CommandResult:
    """Exit code and output of a finished command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@dataclass
class CommandRunner:
    """Runs commands with argument lists, a timeout, a fixed environment and a private cwd.

    ``env`` entries are added to (and override) the current environment. ``KUBECONFIG`` is
    usually set here so every tool talks to the same host cluster.
    """

    env: Mapping[str, str] = field(default_factory=dict)
    default_timeout: float = 120.0
    cwd: Path = field(default_factory=_private_cwd)

    def environment(self) -> dict[str, str]:
        """The full environment a command runs with."""
        merged = dict(os.environ)
        # Skip the CLI's update check: it needs the network and slows every call.
        merged["VCLUSTER_SKIP_VERSION_CHECK"] = "true"
        merged.update(self.env)
        return merged

    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float | None = None,
        check: bool = True,
        input_text: str | None = None,
    ) -> CommandResult:
        """Run ``args``; raise :class:`CommandError` on timeout or (with ``check``) failure."""
        argv = [str(arg) for arg in args]
        limit = self.default_timeout if timeout is None else timeout
        log.debug("running %s (timeout %ss)", argv, limit)
        try:
            # A new session lets a timeout kill the whole tree (kind runs docker, the vcluster
            # CLI runs helm), not only the direct child.
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self.environment(),
                cwd=self.cwd,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise CommandError(argv, 127, f"executable not found: {argv[0]}") from None
        except PermissionError:
            raise CommandError(argv, 126, f"permission denied: {argv[0]}") from None
        try:
            stdout, stderr = process.communicate(input=input_text, timeout=limit)
        except subprocess.TimeoutExpired:
            kill_group(process)
            stdout, stderr = process.communicate()
            raise CommandError(argv, None, stderr or stdout or "", timeout=limit) from None
        except BaseException:
            # Ctrl-C: the tool runs in its own session, so the terminal's signal never reached
            # it; it must not go on (kind creating a node) after this process stopped waiting.
            kill_group(process)
            process.communicate()  # reaps it and closes its pipes
            raise
        completed = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
        result = CommandResult(
            tuple(argv), completed.returncode, completed.stdout, completed.stderr
        )
        if check and completed.returncode != 0:
            raise CommandError(argv, completed.returncode, completed.stderr or completed.stdout)
        return result


def kill_group(process: subprocess.Popen[Any]) -> None:
    """Kill a process started with ``start_new_session=True`` and everything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
