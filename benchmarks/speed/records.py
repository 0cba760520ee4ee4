"""What an inner pytest run leaves, read back: its output, the suite's timing log and the
plugin's records file (``--vcluster-records``)."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .stats import median, spread

DURATION_LINE = re.compile(r"^\s*([\d.]+)s\s+(setup|call|teardown)\s+(\S+)")
SUMMARY_LINE = re.compile(r"create/resume to ready: median ([\d.]+)s")


@dataclass
class InnerRun:
    """What one inner pytest run left: exit code, wall time, its log, timings and records."""

    tag: str
    returncode: int
    wall: float
    log: Path
    output: str
    timings: list[dict[str, Any]]
    records: dict[str, Any] | None

    def timed(self, kind: str) -> list[dict[str, Any]]:
        return [t for t in self.timings if t.get("kind") == kind]

    def seconds(self, kind: str, **match: object) -> list[float]:
        return [
            float(t["seconds"])
            for t in self.timed(kind)
            if "seconds" in t and all(t.get(k) == v for k, v in match.items())
        ]

    def listed(self, key: str) -> list[dict[str, Any]]:
        """The records file's entries under ``key``; none when this plugin version writes none."""
        found = (self.records or {}).get(key)
        return [e for e in found if isinstance(e, dict)] if isinstance(found, list) else []

    def clusters(self, event: str) -> list[dict[str, Any]]:
        """The records file's clusters of one event (``created`` or ``resumed``)."""
        return [c for c in self.listed("clusters") if c.get("event") == event]

    def setup_waits(self, fixtures: Collection[str]) -> list[float]:
        """Per test, in the order the tests ran, the seconds its timed ``fixtures`` took to set
        up, summed (from the suite's log)."""
        per_test: dict[str, float] = {}
        for t in self.timed("fixture_setup"):
            if t.get("fixture") in fixtures and isinstance(t.get("seconds"), int | float):
                nodeid = str(t.get("nodeid"))
                per_test[nodeid] = per_test.get(nodeid, 0.0) + float(t["seconds"])
        return list(per_test.values())

    def durations(self, when: str) -> list[float]:
        """Seconds per test of one phase (setup, call, teardown) from ``--durations``."""
        return [
            float(m.group(1))
            for line in self.output.splitlines()
            if (m := DURATION_LINE.match(line)) and m.group(2) == when
        ]

    def summary_median(self) -> float | None:
        """The plugin's terminal summary median, the figure every plugin version prints."""
        found = SUMMARY_LINE.search(self.output)
        return float(found.group(1)) if found else None

    def summary(self) -> list[str]:
        return [
            line
            for line in self.output.splitlines()
            if line.startswith(
                (
                    "vclusters:",
                    "create/resume to ready:",
                    "kind host",
                    "tests waited for",
                    "resets for recycling:",
                )
            )
        ]


def read_timings(directory: Path) -> list[dict[str, Any]]:
    """The suite's timing log: every JSON object line of the ``*.jsonl`` files in it."""
    found: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            # A worker killed mid-write leaves a partial last line; the rest still counts.
            with contextlib.suppress(json.JSONDecodeError):
                item = json.loads(line)
                if isinstance(item, dict):
                    found.append(item)
    return found


def read_records(path: Path) -> dict[str, Any] | None:
    """The plugin's records file, or None when this plugin version writes none."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        print(f"warning: unreadable records file {path}: {exc}", file=sys.stderr)
        return None
    return data if isinstance(data, dict) else None


def setup_sources(setups: list[dict[str, Any]]) -> dict[str, int]:
    """How many tests got their vcluster from each source (prepared, created, recycled...)."""
    return dict(Counter(str(s.get("source")) for s in setups))


def reset_figures(resets: list[dict[str, Any]]) -> dict[str, Any]:
    """The spread of the resets' work (deletes, waits, proof) and of the hold after it, how
    many were proven clean, and the most common reasons of those that were not."""
    seconds = [float(r["seconds"]) for r in resets if isinstance(r.get("seconds"), int | float)]
    # A reason names the object left over; the first words are what repeats across resets.
    reasons = Counter(str(why)[:120] for r in resets for why in r.get("reasons") or [])
    # The hold until no token of the last test is cached any more comes after the proof.
    held = [
        float(r["hold_seconds"])
        for r in resets
        if r.get("clean") is True and isinstance(r.get("hold_seconds"), int | float)
    ]
    return {
        **spread(seconds, "records"),
        "clean": sum(1 for r in resets if r.get("clean") is True),
        "reasons": dict(reasons.most_common(5)),
        "hold": spread(held, "records") if held else None,
    }


def ready_seconds(clusters: list[dict[str, Any]]) -> list[float]:
    return [
        float(c["ready_seconds"])
        for c in clusters
        if isinstance(c.get("ready_seconds"), int | float)
    ]


def phase_breakdown(clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median seconds per create phase, cumulative and as deltas, in the order they come.

    A last ``ready`` row covers the time from the last phase to the ready handle.
    """
    order: list[str] = []
    at: dict[str, list[float]] = {}
    step: dict[str, list[float]] = {}

    def add(name: str, seconds: float, previous: float) -> None:
        if name not in at:
            order.append(name)
            at[name], step[name] = [], []
        at[name].append(seconds)
        step[name].append(seconds - previous)

    for cluster in clusters:
        previous = 0.0
        for phase in cluster.get("phases") or []:
            if isinstance(phase, list | tuple) and len(phase) == 2:
                name, seconds = str(phase[0]), float(phase[1])
            elif isinstance(phase, dict) and "name" in phase and "seconds" in phase:
                name, seconds = str(phase["name"]), float(phase["seconds"])
            else:
                continue
            add(name, seconds, previous)
            previous = seconds
        if previous and isinstance(cluster.get("ready_seconds"), int | float):
            add("ready", float(cluster["ready_seconds"]), previous)
    return [
        {"phase": n, "cumulative": median(at[n]), "delta": median(step[n]), "n": len(at[n])}
        for n in order
    ]
