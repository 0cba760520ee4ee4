"""What the e2e modules that start one inner pytest run share: the conftest part that records
facts and outcomes, the inner run's results, and the removal of the kind host it made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .stack import Stack

#: The inner run's conftest: ``record(**fields)`` writes a JSON line to ``{facts}`` (to fill in
#: with ``str.format``), and every test's outcome is recorded as an ``event="report"`` fact.
#: A module adds its own hooks after it (braces there doubled, as here).
RECORDING_CONFTEST = """
import json, pathlib

import pytest

FACTS = pathlib.Path({facts!r})


def record(**fields):
    with FACTS.open("a") as f:
        f.write(json.dumps(fields) + "\\n")


def pytest_runtest_logreport(report):
    if report.when == "call" or report.failed or report.skipped:
        longrepr = str(report.longrepr)[-4000:] if report.failed else ""
        record(event="report", test=report.nodeid.split("::")[-1], when=report.when,
               outcome=report.outcome, longrepr=longrepr)
"""


def read_facts(path: Path) -> list[dict[str, Any]]:
    """The facts an inner run recorded (none if it recorded nothing)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@dataclass
class InnerRun:
    """What the inner run left: its exit code, output, time and recorded facts."""

    returncode: int
    output: str
    seconds: float
    facts: list[dict[str, Any]]

    def outcomes(self) -> dict[str, str]:
        """Test name -> its outcome (a failed setup counts as the test's)."""
        seen: dict[str, str] = {}
        for fact in self.facts:
            if fact.get("event") == "report" and seen.get(fact["test"]) != "failed":
                seen[fact["test"]] = fact["outcome"]
        return seen

    def failure(self, test: str) -> str:
        """The failure report of ``test``, else the output's end, for an assertion message."""
        for fact in self.facts:
            if fact.get("event") == "report" and fact["test"] == test and fact["longrepr"]:
                return str(fact["longrepr"])
        return self.output[-6000:]

    def clusters(self) -> dict[str, dict[str, Any]]:
        """Test name -> the ``event="cluster"`` fact its conftest recorded."""
        return {fact["test"]: fact for fact in self.facts if fact.get("event") == "cluster"}

    def cases(self, case: str) -> list[dict[str, Any]]:
        return [fact for fact in self.facts if fact.get("case") == case]

    def assert_passed(self, test: str) -> None:
        assert self.outcomes().get(test) == "passed", self.failure(test)


def removed_kind_host(stack: Stack, name: str) -> Iterator[str]:
    """For a module fixture: ``name``, then the kind host of that name is deleted, whether the
    inner run made it or not (``yield from removed_kind_host(stack, HOST)``)."""
    kind = stack.tool("kind")
    yield name
    if name in stack.run(kind, "get", "clusters", check=False).stdout.split():
        stack.run(kind, "delete", "cluster", "--name", name, timeout=180, check=False)
