"""Machine-wide leases on a kind host: which live processes use it, and who created it.

Every pytest process on this machine that uses the kind host called ``NAME`` (an xdist
worker, a single-process run, an xdist controller holding the host for its workers) has a
lease in ``<state root>/hosts/NAME/state.json``, guarded by a file lock next to it. A lease
names its process by pid and start time, so leases of processes that died (SIGKILL, a crashed
CI job) are pruned the next time anyone looks. The host is deleted only when the last live
lease leaves, and only if a pytest-vcluster run created it.

The state root is ``--vcluster-state-dir``, else ``$XDG_STATE_HOME/pytest-vcluster``, else
``~/.local/state/pytest-vcluster``: one place for every run of the user, whatever its
temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import filelock

from pytest_vcluster.core.errors import HostError
from pytest_vcluster.core.processes import ProcessId
from pytest_vcluster.core.progress import Progress

__all__ = ["HostLeases", "HostRecord", "Lease", "default_state_root"]


def default_state_root(env: Mapping[str, str]) -> Path:
    """Where machine-wide state lives when ``--vcluster-state-dir`` is not given."""
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "pytest-vcluster"


@dataclass
class Lease:
    """One process using (or holding, for its xdist workers) the host."""

    pid: int
    started: str | None
    run: str
    worker: str
    since: float = field(default_factory=time.time)

    @property
    def process(self) -> ProcessId:
        """The process that holds the lease."""
        return ProcessId(self.pid, self.started)


@dataclass
class HostRecord:
    """What is known of the host: who created it, why creating it failed, who uses it."""

    created: bool = False
    created_by_run: str | None = None
    create_seconds: float | None = None
    error: str | None = None
    error_run: str | None = None
    leases: dict[str, Lease] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostRecord:
        """Read what :meth:`to_json` wrote (unknown keys from newer versions are ignored)."""
        leases = {key: Lease(**value) for key, value in dict(data.get("leases", {})).items()}
        names = {f.name for f in fields(cls)} - {"leases"}
        return cls(**{k: v for k, v in data.items() if k in names}, leases=leases)

    def to_json(self) -> dict[str, Any]:
        """A JSON-friendly copy."""
        return asdict(self)  # the leases too: asdict recurses into dict values

    def prune(self) -> list[Lease]:
        """Drop the leases of processes that are gone; return them."""
        dead = [key for key, lease in self.leases.items() if not lease.process.alive()]
        return [self.leases.pop(key) for key in dead]

    def runs(self) -> set[str]:
        """Run ids holding a live lease."""
        return {lease.run for lease in self.leases.values()}


class HostLeases:
    """The lease file of one host name; :meth:`locked` reads, prunes and writes it."""

    def __init__(self, state_root: Path, host_name: str, *, lock_timeout: float) -> None:
        self.directory = state_root / "hosts" / host_name
        self.state_file = self.directory / "state.json"
        self.lock_timeout = lock_timeout
        self._lock = filelock.FileLock(str(self.directory / "state.lock"))

    @contextlib.contextmanager
    def locked(self, progress: Progress | None = None) -> Iterator[HostRecord]:
        """The record, under the machine-wide lock; written back (atomically) however the
        block ends. ``progress`` tells the user when another process keeps the lock long."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        waiting = (progress or Progress()).waiting(
            f"another pytest process using the lock of host {self.directory.name!r}"
        )
        try:
            with waiting:
                self._lock.acquire(timeout=self.lock_timeout)
        except filelock.Timeout as exc:
            raise HostError(
                f"another pytest process has held the host lock {self._lock.lock_file} for "
                f"{self.lock_timeout:g}s (it may be creating the host). Wait for it, or if no "
                "pytest-vcluster run is active on this machine, delete that file."
            ) from exc
        try:
            record = self.read()
            record.prune()
            try:
                yield record
            finally:
                # Also after an error: a failed creation is recorded for the run's other
                # processes, and the pruning stands.
                self._write(record)
        finally:
            self._lock.release()

    def read(self) -> HostRecord:
        """The record as last written (no lock: for reports)."""
        try:
            text = self.state_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return HostRecord()
        try:
            return HostRecord.from_json(json.loads(text))
        except (ValueError, TypeError, KeyError):
            # A record from an incompatible version is dropped rather than trusted.
            return HostRecord()

    def save(self, record: HostRecord) -> None:
        """Write the record now, inside :meth:`locked` (before a step that may be killed)."""
        self._write(record)

    def _write(self, record: HostRecord) -> None:
        # Written to a temporary file and renamed: a reader never sees half a record.
        temporary = self.state_file.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record.to_json(), handle, indent=1)
        os.replace(temporary, self.state_file)
