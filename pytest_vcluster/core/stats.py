"""What the plugin did with vclusters: counts, ready times, and the run's records.

Each pytest process records its own events; under xdist the workers send theirs to the
controller (see the plugin), which merges them for the terminal summary and the records file
(``--vcluster-records``). Recording is thread-safe: clusters are prepared and torn down in
background threads.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EVENTS", "WARM_EVENTS", "Stats", "percentile"]

EVENTS = ("created", "resumed", "recycled", "paused", "deleted", "kept", "failed")
#: Events of the warm pool (``--vcluster-warm-pool``): named in the summary only when they
#: happened, since most runs have the pool off.
WARM_EVENTS = ("adopted", "parked")


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile by linear interpolation (``values`` must not be empty)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Stats:
    """Event counts, ready times and per-cluster, per-test and per-teardown records."""

    counts: Counter[str] = field(default_factory=Counter)
    ready_seconds: list[float] = field(default_factory=list)
    clusters: list[dict[str, Any]] = field(default_factory=list)
    setups: list[dict[str, Any]] = field(default_factory=list)
    teardowns: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Starts retried after a transient crash: the test, the reason and the crashed logs.
    retries: list[dict[str, Any]] = field(default_factory=list)
    #: Recycling resets: the cluster, the test it served, seconds, clean or not and why not.
    resets: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, event: str, ready_seconds: float | None = None) -> None:
        """Count ``event`` (one of :data:`EVENTS`) and remember its ready time if given."""
        if event not in EVENTS and event not in WARM_EVENTS:
            raise ValueError(f"unknown event {event!r}")
        with self._lock:
            self.counts[event] += 1
            if ready_seconds is not None:
                self.ready_seconds.append(ready_seconds)

    def record_cluster(self, entry: dict[str, Any]) -> None:
        """One cluster made ready: name, event, phases, ready seconds, prepared or not."""
        with self._lock:
            self.clusters.append(entry)

    def record_setup(self, nodeid: str, worker: str, wait_seconds: float, source: str) -> None:
        """How long a test waited for its cluster and where the cluster came from."""
        with self._lock:
            self.setups.append(
                {
                    "nodeid": nodeid,
                    "worker": worker,
                    "wait_seconds": round(wait_seconds, 3),
                    "source": source,
                }
            )

    def record_teardown(self, name: str, action: str, seconds: float, error: str | None) -> None:
        """One teardown: what was done, how long it took, and its error if it failed."""
        with self._lock:
            self.teardowns.append(
                {"name": name, "action": action, "seconds": round(seconds, 3), "error": error}
            )

    def record_retry(self, entry: dict[str, Any]) -> None:
        """A start that failed for a transient reason and was started again."""
        with self._lock:
            self.retries.append(entry)

    def record_reset(self, entry: dict[str, Any]) -> None:
        """One reset of a cluster to its baseline, proven clean (recycled) or not (deleted)."""
        with self._lock:
            self.resets.append(entry)

    def note(self, line: str) -> None:
        """A line for the terminal summary (e.g. what the reaper removed)."""
        with self._lock:
            self.notes.append(line)

    def merge(self, data: dict[str, Any]) -> None:
        """Add the output of :meth:`to_dict` from another process."""
        with self._lock:
            self.counts.update({str(k): int(v) for k, v in data.get("counts", {}).items()})
            self.ready_seconds.extend(float(s) for s in data.get("ready_seconds", []))
            self.clusters.extend(data.get("clusters", []))
            self.setups.extend(data.get("setups", []))
            self.teardowns.extend(data.get("teardowns", []))
            self.notes.extend(str(line) for line in data.get("notes", []))
            self.retries.extend(data.get("retries", []))
            self.resets.extend(data.get("resets", []))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly copy (xdist sends it from workers to the controller)."""
        with self._lock:
            return {
                "counts": dict(self.counts),
                "ready_seconds": list(self.ready_seconds),
                "clusters": list(self.clusters),
                "setups": list(self.setups),
                "teardowns": list(self.teardowns),
                "notes": list(self.notes),
                "retries": list(self.retries),
                "resets": list(self.resets),
            }

    def write(self, path: Path) -> None:
        """Write the records (clusters, setups, teardowns, counts) as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")

    @property
    def empty(self) -> bool:
        """True when nothing was recorded."""
        return not (self.counts or self.setups or self.notes or self.retries or self.resets)

    def summary_lines(self) -> list[str]:
        """Lines for the terminal summary."""
        if self.empty:
            return []
        counts = ", ".join(
            f"{event} {self.counts[event]}"
            for event in EVENTS + WARM_EVENTS
            if event in EVENTS or self.counts[event]
        )
        lines = [*self.notes, f"vclusters: {counts}"]
        if self.ready_seconds:
            lines.append(
                "create/resume to ready: "
                f"median {percentile(self.ready_seconds, 0.5):.1f}s, "
                f"max {max(self.ready_seconds):.1f}s over {len(self.ready_seconds)}"
            )
        waits = [float(entry["wait_seconds"]) for entry in self.setups]
        if waits:
            prepared = sum(1 for entry in self.setups if entry["source"] == "prepared")
            recycled = sum(1 for entry in self.setups if entry["source"] == "recycled")
            warm = sum(1 for entry in self.setups if entry["source"] == "warm")
            lines.append(
                f"tests waited for their vcluster: p50 {percentile(waits, 0.5):.1f}s, "
                f"p95 {percentile(waits, 0.95):.1f}s over {len(waits)} "
                f"({prepared} prepared ahead, {recycled} recycled"
                + (f", {warm} adopted warm)" if warm else ")")
            )
        if self.resets:
            seconds = [float(entry["seconds"]) for entry in self.resets]
            unclean = [entry for entry in self.resets if not entry["clean"]]
            held = [float(e.get("hold_seconds") or 0.0) for e in self.resets if e["clean"]]
            hold = f", then held p50 {percentile(held, 0.5):.1f}s for token caches" if held else ""
            lines.append(
                f"resets for recycling: p50 {percentile(seconds, 0.5):.1f}s, "
                f"p95 {percentile(seconds, 0.95):.1f}s over {len(seconds)}{hold}; "
                f"{len(unclean)} not proven clean (those clusters were deleted)"
            )
            lines += [
                f"  {entry['name']} after {entry['test']}: {(entry['reasons'] or ['?'])[0]}"
                for entry in unclean[:3]
            ]
        if self.retries:
            lines.append(
                f"vcluster starts retried after a transient crash: {len(self.retries)} "
                "(details in --vcluster-records)"
            )
            lines += [f"  {entry['test']}: {entry['reason']}" for entry in self.retries[:5]]
        failed = [entry for entry in self.teardowns if entry["error"]]
        for entry in failed:
            lines.append(
                f"teardown ({entry['action']}) of {entry['name']} failed: {entry['error']}"
            )
        return lines
