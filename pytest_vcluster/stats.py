"""Counts of what the plugin did with vclusters, and how long they took to become ready.

Each pytest process records its own events; under xdist the workers send theirs to the
controller (see the plugin), which merges them for the terminal summary.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EVENTS", "Stats"]

EVENTS = ("created", "resumed", "paused", "deleted", "kept", "failed")


@dataclass
class Stats:
    """Event counts and ready times (seconds from create or resume to ready)."""

    counts: Counter[str] = field(default_factory=Counter)
    ready_seconds: list[float] = field(default_factory=list)

    def record(self, event: str, ready_seconds: float | None = None) -> None:
        """Count ``event`` (one of :data:`EVENTS`) and remember its ready time if given."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        self.counts[event] += 1
        if ready_seconds is not None:
            self.ready_seconds.append(ready_seconds)

    def preserved(self) -> int:
        """vclusters left on the host by pause or keep teardowns."""
        return self.counts["paused"] + self.counts["kept"]

    def merge(self, data: dict[str, Any]) -> None:
        """Add the counts and times of :meth:`to_dict` output from another process."""
        self.counts.update({str(k): int(v) for k, v in data.get("counts", {}).items()})
        self.ready_seconds.extend(float(s) for s in data.get("ready_seconds", []))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy (xdist sends it from workers to the controller)."""
        return {"counts": dict(self.counts), "ready_seconds": list(self.ready_seconds)}

    @property
    def empty(self) -> bool:
        """True when nothing was recorded."""
        return not self.counts

    def summary_lines(self) -> list[str]:
        """Lines for the terminal summary."""
        if self.empty:
            return []
        counts = ", ".join(f"{event} {self.counts[event]}" for event in EVENTS)
        lines = [f"vclusters: {counts}"]
        if self.ready_seconds:
            lines.append(
                "create/resume to ready: "
                f"median {statistics.median(self.ready_seconds):.1f}s, "
                f"max {max(self.ready_seconds):.1f}s over {len(self.ready_seconds)}"
            )
        return lines
