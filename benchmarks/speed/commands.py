"""Running one command to its end, within a timeout, stopped together with what it started."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import stackkit
from .stack import BenchError


@dataclass
class Finished:
    """A command that ran to its end (whatever its exit code)."""

    args: list[str]
    returncode: int
    output: str
    seconds: float

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run(
    args: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
) -> Finished:
    """Run a command to its end, output (stdout and stderr) to ``log`` or kept in memory.

    It runs in a session of its own so that a timeout or an interrupt stops it together with
    what it started (xdist workers, kind), and only that.
    """
    args = list(args)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(
            log.open("w") if log else tempfile.TemporaryFile("w+")  # noqa: SIM115
        )
        started = time.monotonic()
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stackkit.stop_group(proc)
            raise BenchError(
                f"`{' '.join(args)}` ran past its {timeout:g}s timeout and was stopped"
                + (f" (log: {log})" if log else "")
            ) from None
        except BaseException:
            stackkit.stop_group(proc)
            raise
        seconds = time.monotonic() - started
        out.flush()
        if log:
            output = log.read_text(errors="replace")
        else:
            out.seek(0)
            output = out.read()
    return Finished(args, proc.returncode, output, seconds)
