"""Which process holds a lease, and whether it still runs.

A pid alone is not enough: once a process ends its pid can be given to another one, which
would keep a dead run's lease alive. So a lease names the pid and the process's start time
(``/proc/<pid>/stat`` on Linux); a pid whose start time differs is another process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessId", "start_time"]


def start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks after boot, or ``None`` where not known."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


@dataclass(frozen=True)
class ProcessId:
    """A process as pid and start time."""

    pid: int
    started: str | None

    @classmethod
    def current(cls) -> ProcessId:
        """This process."""
        pid = os.getpid()
        return cls(pid, start_time(pid))

    @property
    def key(self) -> str:
        """A string naming this process uniquely on this machine."""
        return f"{self.pid}@{self.started or '?'}"

    def alive(self) -> bool:
        """True while this very process runs (a reused pid does not count)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: it exists
        if self.started is None:
            return True
        return start_time(self.pid) in (self.started, None)
