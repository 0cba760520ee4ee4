"""What the benchmark scripts share about the offline stack: its stack.json, kind and processes.

``python -m benchmarks.speed`` and ``benchmarks/stress.py`` both run against the stack that
``bash .ci/stack/up`` builds. This module holds what they do alike:

* :func:`add_stack_option` and :func:`stack_path`: ``--stack``, else ``$PYTEST_VCLUSTER_STACK``,
  else :data:`DEFAULT_STACK`;
* :class:`Stack`: stack.json loaded and checked, the stack's tools and an environment with them
  first on PATH (each script subclasses it for what only it needs);
* :class:`KindClusters`: the ``kind create/delete cluster`` command lines, each cluster with a
  kubeconfig of its own (each script runs them its own way and decides what it may delete);
* :func:`stop_group`: interrupt a command's process group, then kill it;
* :class:`StackError`: the base of each script's error.

stress.py runs as a script, so its directory is first on ``sys.path`` and it imports this module
as ``stackkit`` (tests that load it by path put ``benchmarks/`` on ``sys.path``); the speed
package, run with ``-m`` from the repository root, imports it as ``benchmarks.stackkit``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

DEFAULT_STACK = Path.home() / ".cache" / "pytest-vcluster-stack" / "stack.json"
KIND_CREATE_TIMEOUT = 420.0  # kind's own --wait is 5m; this bounds the whole command
KIND_DELETE_TIMEOUT = 180.0
STOP_GRACE = 90.0  # seconds an interrupted command gets to tear its clusters down


class StackError(RuntimeError):
    """Something a benchmark script needs could not be done; the message says what and why.

    Each script raises a subclass of its own (``BenchError``, ``StressError``)."""


# -- where the stack is ------------------------------------------------------------------------


def add_stack_option(parser: argparse.ArgumentParser) -> None:
    """``--stack PATH``, None when not given (:func:`stack_path` then finds it)."""
    parser.add_argument(
        "--stack",
        type=Path,
        default=None,
        help=f"stack.json (default: $PYTEST_VCLUSTER_STACK, else {DEFAULT_STACK})",
    )


def stack_path(given: Path | None) -> Path:
    """``given`` (``--stack``), else ``$PYTEST_VCLUSTER_STACK``, else :data:`DEFAULT_STACK`."""
    if given is not None:
        return given
    return Path(os.environ.get("PYTEST_VCLUSTER_STACK") or DEFAULT_STACK)


# -- the stack ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """The settings ``.ci/stack/up`` wrote to stack.json.

    A subclass names the keys it needs (:attr:`required`), the error it raises (:attr:`error`)
    and whether a tool missing from the stack may come from PATH (:attr:`tools_from_path`).
    """

    required: ClassVar[tuple[str, ...]] = ("node_image", "path_dir")
    error: ClassVar[type[StackError]] = StackError
    tools_from_path: ClassVar[bool] = False

    path: Path
    raw: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Self:
        if not path.is_file():
            raise cls.error(
                f"offline stack settings not found at {path}: run `bash .ci/stack/up` first, "
                "or pass --stack (or set PYTEST_VCLUSTER_STACK) to the stack.json it wrote"
            )
        raw = json.loads(path.read_text())
        missing = [k for k in cls.required if k not in raw]
        if missing:
            raise cls.error(f"{path} lacks {missing}; rerun `bash .ci/stack/up`")
        return cls(path, raw)

    @property
    def node_image(self) -> str:
        return str(self.raw["node_image"])

    @property
    def path_dir(self) -> str:
        return str(self.raw["path_dir"])

    def tool(self, name: str) -> str:
        """The stack's ``name`` binary (or, with :attr:`tools_from_path`, the one on PATH)."""
        found = shutil.which(name, path=self.path_dir)
        if found is None and self.tools_from_path:
            found = shutil.which(name)
        if found is None:
            where = (
                f"neither in the stack's {self.path_dir} nor on PATH"
                if self.tools_from_path
                else f"not in the stack's path_dir {self.path_dir}"
            )
            raise self.error(f"{name} is {where}")
        return found

    def env(self) -> dict[str, str]:
        """This process's environment with the stack's tools first on PATH."""
        env = dict(os.environ)
        env["PATH"] = self.path_dir + os.pathsep + env.get("PATH", "")
        return env


# -- kind and processes ------------------------------------------------------------------------


class KindClusters:
    """kind through one binary and node image, each cluster with a kubeconfig in ``work``."""

    def __init__(self, binary: str, node_image: str, env: dict[str, str], work: Path) -> None:
        self.binary = binary
        self.node_image = node_image
        self.env = env
        self.work = work

    def kubeconfig(self, name: str) -> Path:
        # Never ~/.kube/config: kind writes and removes its context in this file instead.
        return self.work / f"{name}.kubeconfig"

    def create_args(self, name: str) -> list[str]:
        """``kind create cluster`` that returns once the node is Ready."""
        return [
            self.binary, "create", "cluster", "--name", name, "--image", self.node_image,
            "--wait", "5m", "--kubeconfig", str(self.kubeconfig(name)),
        ]  # fmt: skip

    def delete_args(self, name: str) -> list[str]:
        """``kind delete cluster`` (a no-op for a cluster that does not exist)."""
        return [
            self.binary, "delete", "cluster", "--name", name,
            "--kubeconfig", str(self.kubeconfig(name)),
        ]  # fmt: skip


def stop_group(proc: subprocess.Popen[Any], grace: float = STOP_GRACE) -> None:
    """Interrupt a command's process group (pytest tears down on SIGINT), then kill it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
