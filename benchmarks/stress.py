"""Does pytest-vcluster ever fail a test falsely? A stress run on the offline stack.

Every test this script runs is trivial (``benchmarks/stress_suite/``: take a fresh ``vcluster``,
list its namespaces, idle 0-1 s), so every failed or errored test, every hung run and every
namespace left behind is the plugin's fault. Four phases, each skippable with 0:

* ``fresh``: one inner ``pytest -n 2`` run of ``--fresh N`` tests with the plugin's defaults
  (the inner runs get the stack's settings file through ``PYTEST_VCLUSTER_SETTINGS_FILE``,
  ``--vcluster-host-name`` and ``--vcluster-records``, nothing else; lookahead is on);
* ``warm``: ``--warm N`` inner runs of the fresh suite (``WARM_TESTS`` tests at ``-n 2``), one
  after another, ``WARM_GAP`` seconds apart, with ``--vcluster-warm-pool=WARM_POOL``: every run
  after the first must adopt a warm cluster parked by the one before it (a run that adopts none
  is a failure), and what is left at the end must be warm clusters only, at most the pool's
  size (they are then deleted, so the next phase starts from an empty host). Off by default;
* ``cycles``: one inner run without xdist of ``--cycles N`` tests, one create, API call and
  delete each, in a single process (``vcluster_factory`` has no public way to tear a cluster
  down before its test ends, so a cycle is a test);
* ``races``: ``--races M`` times, two independent pytest processes started together against a
  kind host that does not exist yet (the same new ``--vcluster-host-name``), one test each: both
  must pass, and after both end the host must be gone (the last user deletes the host its run
  created).

``fresh``, ``warm`` and ``cycles`` share the kind host ``--host`` (default ``stress-host``),
which this script creates first (so creating it costs no phase) and deletes at the end, after
counting the namespaces labelled ``pytest-vcluster/managed`` still on it. For each phase it
reports runs, failures (with their error texts), fixture setup p50/p95 (``--durations``),
create-to-ready p50/p95 (the records file), the ready p95/p50 ratio, namespaces left and wall
time, prints them as a table and writes them as JSON. It exits 1 when anything failed or was
left behind, 2 when it could not start. Every inner run's output, junit XML and records stay in
a work directory whose path it prints first.

    python benchmarks/stress.py                                  # 200 / 200 / 20: hours
    python benchmarks/stress.py --fresh 4 --cycles 2 --races 1   # a smoke run, minutes
    python benchmarks/stress.py --fresh 0 --cycles 0 --races 5   # only the host races
    python benchmarks/stress.py --fresh 0 --warm 3 --cycles 0 --races 0   # only the warm pool

It needs the offline stack (``bash .ci/stack/up``; ``--stack`` or ``PYTEST_VCLUSTER_STACK``
name its stack.json) and pytest-xdist.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

import stackkit

HERE = Path(__file__).resolve().parent
SUITE_DIR = HERE / "stress_suite"
DEFAULT_OUT = HERE / "results" / "stress.json"
DEFAULT_HOST = "stress-host"
RACE_PREFIX = "stress-race-"  # race hosts are named stress-race-<token>-<repeat>
#: The plugin's label on every namespace it makes (pytest_vcluster.core.labels.LABEL_MANAGED; a unit
#: test keeps the two equal, so this script need not import the plugin).
MANAGED_LABEL = "pytest-vcluster/managed"
WORKERS = 2  # -n of the fresh phase
FRESH_WORK_SECONDS = 1.0  # the fresh tests idle 0 to this many seconds
WARM_TESTS = 6  # tests of each run of the warm phase
WARM_POOL = 4  # --vcluster-warm-pool of the warm phase: two clusters per worker
#: Seconds between two warm runs: the next run's claim then waits a few seconds for the token
#: hold (16.5 s after the park), within the plugin's 10 s limit, as a person re-running would.
WARM_GAP = 8.0
WARM_STATE = "warm"  # pytest_vcluster.core.labels.WARM_STATE
STATE_LABEL = "pytest-vcluster/state"
TOOL_TIMEOUT = 60.0  # kind get, kubectl get
PROGRESS_INTERVAL = 30.0  # seconds between progress lines during a long inner run
PROBLEMS_SHOWN = 5  # error texts printed per phase (the JSON has them all)
#: Inner runs take their settings from the stack's file only: these would change them.
DROPPED_ENV_PREFIXES = ("PYTEST_VCLUSTER_",)
DROPPED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")


class StressError(stackkit.StackError):
    """Something this script needs could not be done; the message says what and why."""


# -- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct``-th percentile by linear interpolation between the closest samples (as the
    plugin's summary computes it); None without samples."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * pct / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Count, p50, p95 and max of ``values`` (None without samples)."""
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
    }


# -- parsing what an inner run left ----------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing that went wrong: the test (or run, or host), what kind, and a short text."""

    test: str
    kind: str  # failed, error, teardown, run, host, leftover
    text: str

    def line(self) -> str:
        return f"{self.kind} {self.test}: {self.text}"


@dataclass
class TestCounts:
    """Outcomes of the tests of one or more runs, and the problems behind the bad ones."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped


def short(text: str, limit: int = 300) -> str:
    """``text`` on one line, whitespace collapsed, cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def _problem_text(element: ET.Element) -> str:
    message = element.get("message") or ""
    if message.strip():
        return short(message)
    lines = [line for line in (element.text or "").splitlines() if line.strip()]
    # The end of a traceback says what was raised; its start is only where.
    return short(lines[-1]) if lines else element.tag


def parse_junit(text: str) -> TestCounts:
    """Test outcomes and failure texts from pytest's ``--junitxml`` output.

    A test is failed if any of its entries has a ``failure``, else errored if any has an
    ``error`` (setup or teardown), else skipped, else passed; pytest may write a test twice (a
    failed call and a failed teardown), so entries are merged by class name and name.
    """
    root = ET.fromstring(text)  # noqa: S314 - the XML is our own inner pytest run's
    kinds: dict[str, set[str]] = {}
    counts = TestCounts()
    for case in root.iter("testcase"):
        classname, name = case.get("classname") or "", case.get("name") or ""
        test = f"{classname}::{name}" if classname else name
        seen = kinds.setdefault(test, set())
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                seen.add(child.tag)
                if child.tag != "skipped":
                    kind = "failed" if child.tag == "failure" else "error"
                    counts.problems.append(Problem(test, kind, _problem_text(child)))
    for seen in kinds.values():
        if "failure" in seen:
            counts.failed += 1
        elif "error" in seen:
            counts.errors += 1
        elif "skipped" in seen:
            counts.skipped += 1
        else:
            counts.passed += 1
    return counts


SUMMARY_COUNT = re.compile(
    r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|warnings?|deselected|rerun)\b"
)


def parse_summary_counts(output: str) -> dict[str, int]:
    """The counts of pytest's last summary line (``3 passed, 1 error in 9.1s``), with ``error``
    and ``warning`` spelt in the plural; empty when there is no such line."""
    for line in reversed(output.splitlines()):
        found = SUMMARY_COUNT.findall(line)
        if found and re.search(r"\bin [\d.]+s\b", line):
            counts: dict[str, int] = {}
            for number, word in found:
                key = {"error": "errors", "warning": "warnings"}.get(word, word)
                counts[key] = counts.get(key, 0) + int(number)
            return counts
    return {}


SHORT_SUMMARY = re.compile(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$")


def parse_short_summary(output: str) -> list[Problem]:
    """The ``FAILED``/``ERROR`` lines of pytest's short test summary (``-rfE``)."""
    problems = []
    for line in output.splitlines():
        match = SHORT_SUMMARY.match(line.strip())
        if match:
            kind = "failed" if match.group(1) == "FAILED" else "error"
            problems.append(Problem(match.group(2), kind, short(match.group(3) or "")))
    return problems


def counts_from_output(output: str) -> TestCounts:
    """Test outcomes from the terminal output, for a run that wrote no junit XML."""
    summary = parse_summary_counts(output)
    return TestCounts(
        passed=summary.get("passed", 0),
        failed=summary.get("failed", 0),
        errors=summary.get("errors", 0),
        skipped=summary.get("skipped", 0),
        problems=parse_short_summary(output),
    )


DURATION_LINE = re.compile(r"^\s*([\d.]+)s\s+(setup|call|teardown)\s+(\S+)")


def parse_durations(output: str, when: str = "setup") -> list[float]:
    """Seconds of each test's ``when`` phase from ``--durations=0 --durations-min=0`` lines."""
    found = []
    for line in output.splitlines():
        match = DURATION_LINE.match(line)
        if match and match.group(2) == when:
            found.append(float(match.group(1)))
    return found


def load_records(path: Path) -> dict[str, Any] | None:
    """The plugin's ``--vcluster-records`` file, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _entries(records: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    return [e for e in (records or {}).get(key) or [] if isinstance(e, dict)]


def records_ready(records: dict[str, Any] | None) -> list[float]:
    """Each cluster's create (or resume) to ready seconds."""
    return [
        float(c["ready_seconds"])
        for c in _entries(records, "clusters")
        if isinstance(c.get("ready_seconds"), int | float)
    ]


def records_waits(records: dict[str, Any] | None) -> list[float]:
    """How long each test waited for its cluster, as the plugin measured it."""
    return [
        float(s["wait_seconds"])
        for s in _entries(records, "setups")
        if isinstance(s.get("wait_seconds"), int | float)
    ]


def records_teardown_errors(records: dict[str, Any] | None) -> list[Problem]:
    """Teardowns that failed (the plugin logs them as warnings; the test still passes)."""
    return [
        Problem(str(t.get("name")), "teardown", short(f"{t.get('action')}: {t['error']}"))
        for t in _entries(records, "teardowns")
        if t.get("error")
    ]


def records_counts(records: dict[str, Any] | None) -> dict[str, int]:
    """The plugin's event counts (created, deleted, failed, ...)."""
    raw = (records or {}).get("counts") or {}
    return {str(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


@dataclass
class Progress:
    """How far an inner run got, from the suite's progress file."""

    done: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0

    def line(self, expected: int) -> str:
        return (
            f"{self.done}/{expected} done: {self.passed} passed, {self.failed} failed, "
            f"{self.errors} errors"
        )


def parse_progress(text: str) -> Progress:
    """Count the lines ``<when> <outcome> <node id>`` the suite's conftest appends."""
    progress = Progress()
    for line in text.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) < 2:
            continue
        when, outcome = parts[0], parts[1]
        if when == "call" or (when == "setup" and outcome != "passed"):
            progress.done += 1
            if outcome == "passed":
                progress.passed += 1
            elif outcome == "failed" and when == "call":
                progress.failed += 1
        if outcome == "failed" and when in ("setup", "teardown"):
            progress.errors += 1
    return progress


def parse_kind_clusters(output: str) -> list[str]:
    """Cluster names from ``kind get clusters`` (its "No kind clusters found." is on stderr)."""
    return [
        line.strip()
        for line in output.splitlines()
        if line.strip() and not line.startswith("No kind clusters")
    ]


def parse_namespaces(text: str) -> list[dict[str, str]]:
    """Name, phase and plugin state of each namespace in ``kubectl get namespaces -o json``."""
    data = json.loads(text)
    found = []
    for item in data.get("items") or []:
        metadata = item.get("metadata") or {}
        labels = metadata.get("labels") or {}
        found.append(
            {
                "name": str(metadata.get("name")),
                "phase": str((item.get("status") or {}).get("phase", "")),
                "state": str(labels.get("pytest-vcluster/state", "")),
            }
        )
    return found


# -- the report ----------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _pair(data: dict[str, Any]) -> str:
    return f"{_s(data.get('p50'))} / {_s(data.get('p95'))}"


TABLE_COLUMNS = (
    ("phase", 7, "<"),
    ("runs", 5, ">"),
    ("failures", 8, ">"),
    ("setup p50 / p95", 17, ">"),
    ("ready p50 / p95", 17, ">"),
    ("p95/p50", 7, ">"),
    ("ns left", 7, ">"),
    ("wall", 8, ">"),
)


def table(phases: Sequence[dict[str, Any]]) -> str:
    """The printed report: one row per phase as :meth:`PhaseResult.to_json` gives it."""

    def row(cells: Sequence[str]) -> str:
        return "  ".join(
            f"{cell:{align}{width}}"
            for cell, (_, width, align) in zip(cells, TABLE_COLUMNS, strict=True)
        ).rstrip()

    lines = [row([name for name, _, _ in TABLE_COLUMNS])]
    for p in phases:
        left = p.get("namespaces_left")
        ready_ratio = p.get("ready_ratio")
        lines.append(
            row(
                [
                    p["phase"],
                    str(p["runs"]),
                    str(p["failures"]),
                    _pair(p["setup"]),
                    _pair(p["ready"]),
                    "-" if ready_ratio is None else f"{ready_ratio:.2f}",
                    "-" if left is None else str(left),
                    _s(p.get("wall")),
                ]
            )
        )
    return "\n".join(lines)


def problem_lines(phases: Sequence[dict[str, Any]], shown: int = PROBLEMS_SHOWN) -> list[str]:
    """The first ``shown`` problems of each phase, and where its logs are."""
    lines: list[str] = []
    for p in phases:
        problems = p.get("problems") or []
        if not problems:
            continue
        lines.append(f"{p['phase']}: {len(problems)} problem(s); logs: {', '.join(p['logs'])}")
        lines += [f"  {text}" for text in problems[:shown]]
        if len(problems) > shown:
            lines.append(f"  ... and {len(problems) - shown} more in the JSON")
    return lines


def exit_code(phases: Sequence[dict[str, Any]], errors: dict[str, str]) -> int:
    """1 when a phase failed or left something, or a step of the script itself failed."""
    bad = any(p["failures"] or p.get("namespaces_left") for p in phases)
    return 1 if bad or errors else 0


# -- the offline stack ---------------------------------------------------------------------------


class Stack(stackkit.Stack):
    """What ``.ci/stack/up`` wrote: stack.json and the plugin's settings file next to it."""

    error = StressError
    tools_from_path = True

    @classmethod
    def load(cls, path: Path) -> Self:
        stack = super().load(path)
        if not stack.settings_file.is_file():
            raise StressError(f"{stack.settings_file} is missing; rerun `bash .ci/stack/up`")
        return stack

    @property
    def settings_file(self) -> Path:
        """The plugin's settings (PYTEST_VCLUSTER_SETTINGS_FILE), next to stack.json."""
        return self.path.parent / "pytest-vcluster.yaml"


def inner_env(base: dict[str, str], settings_file: Path, **suite: str) -> dict[str, str]:
    """``base`` without settings that would change the plugin's defaults, with the stack's
    settings file and the suite's variables (``STRESS_<NAME>``)."""
    env = {
        k: v
        for k, v in base.items()
        if not k.startswith(DROPPED_ENV_PREFIXES) and k not in DROPPED_ENV
    }
    env["PYTEST_VCLUSTER_SETTINGS_FILE"] = str(settings_file)
    env |= {f"STRESS_{name.upper()}": value for name, value in suite.items()}
    return env


def dropped_env(base: dict[str, str]) -> list[str]:
    """The names :func:`inner_env` leaves out of ``base``."""
    return sorted(k for k in base if k.startswith(DROPPED_ENV_PREFIXES) or k in DROPPED_ENV)


# -- commands ------------------------------------------------------------------------------------


def tool_run(
    args: Sequence[str], *, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """A short tool command (kind, kubectl); a timeout becomes :class:`StressError`."""
    try:
        return subprocess.run(
            list(args), capture_output=True, text=True, env=env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise StressError(f"`{' '.join(args)}` ran past its {timeout:g}s timeout") from None


class Kind(stackkit.KindClusters):
    """kind through the stack's binary; deletes only the clusters this script names."""

    def __init__(
        self, binary: str, node_image: str, env: dict[str, str], work: Path, own_host: str
    ) -> None:
        super().__init__(binary, node_image, env, work)
        self.own_host = own_host  # with the race hosts, the only clusters it deletes

    def clusters(self) -> list[str]:
        done = tool_run([self.binary, "get", "clusters"], env=self.env, timeout=TOOL_TIMEOUT)
        if done.returncode != 0:
            raise StressError(f"kind get clusters exited {done.returncode}: {done.stderr[-500:]}")
        return parse_kind_clusters(done.stdout)

    def exists(self, name: str) -> bool:
        return name in self.clusters()

    def create(self, name: str) -> float:
        """``kind create cluster`` to a Ready node; returns the seconds it took."""
        started = time.monotonic()
        done = tool_run(self.create_args(name), env=self.env, timeout=stackkit.KIND_CREATE_TIMEOUT)
        if done.returncode != 0:
            raise StressError(f"kind create cluster {name} exited {done.returncode}: "
                              f"{done.stderr[-1500:]}")  # fmt: skip
        return time.monotonic() - started

    def write_kubeconfig(self, name: str) -> Path:
        """The kubeconfig of a cluster this script did not create (a race host)."""
        done = tool_run(
            [self.binary, "get", "kubeconfig", "--name", name], env=self.env, timeout=TOOL_TIMEOUT
        )
        if done.returncode != 0:
            raise StressError(f"kind get kubeconfig {name} exited {done.returncode}")
        path = self.kubeconfig(name)
        path.write_text(done.stdout)
        path.chmod(0o600)
        return path

    def delete(self, name: str) -> None:
        """``kind delete cluster``; complains on stderr, never raises."""
        if name != self.own_host and not name.startswith(RACE_PREFIX):
            raise ValueError(f"refusing to delete {name}: not a cluster of this script")
        try:
            done = tool_run(
                self.delete_args(name), env=self.env, timeout=stackkit.KIND_DELETE_TIMEOUT
            )
        except StressError as exc:
            print(f"warning: {exc}", file=sys.stderr, flush=True)
            return
        if done.returncode != 0:
            print(f"warning: kind delete cluster {name} failed: {done.stderr[-500:]}",
                  file=sys.stderr, flush=True)  # fmt: skip


def managed_namespaces(kubectl: str, kubeconfig: Path, env: dict[str, str]) -> list[dict[str, str]]:
    """The namespaces the plugin made that are still on a host (whatever their state)."""
    done = tool_run(
        [
            kubectl, "--kubeconfig", str(kubeconfig), "get", "namespaces",
            "-l", f"{MANAGED_LABEL}=true", "-o", "json",
        ],
        env=env,
        timeout=TOOL_TIMEOUT,
    )  # fmt: skip
    if done.returncode != 0:
        raise StressError(f"kubectl get namespaces exited {done.returncode}: {done.stderr[-500:]}")
    return parse_namespaces(done.stdout)


# -- inner pytest runs ---------------------------------------------------------------------------


def pytest_args(run_dir: Path, host: str, extra: Sequence[str] = ()) -> list[str]:
    """The inner pytest command: the suite, its outputs in ``run_dir``, the host's name."""
    return [
        sys.executable, "-m", "pytest", "test_stress.py",
        "-p", "no:cacheprovider", "-q", "-rfE",
        "--durations=0", "--durations-min=0",
        f"--basetemp={run_dir / 'basetemp'}",
        f"--junitxml={run_dir / 'junit.xml'}",
        f"--vcluster-records={run_dir / 'records.json'}",
        f"--vcluster-host-name={host}",
        *extra,
    ]  # fmt: skip


@dataclass
class Launched:
    """An inner pytest process that is running, in a session of its own."""

    tag: str
    run_dir: Path
    expected: int  # tests it should run
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float

    @property
    def log_path(self) -> Path:
        return self.run_dir / "pytest.log"

    @property
    def progress_path(self) -> Path:
        return self.run_dir / "progress.txt"

    def progress(self) -> Progress:
        try:
            return parse_progress(self.progress_path.read_text(encoding="utf-8"))
        except OSError:
            return Progress()


@dataclass
class Outcome:
    """What an inner pytest run left: exit code (None: stopped at its timeout), wall time,
    test outcomes, setup and ready seconds, teardown errors, and where its log is."""

    tag: str
    returncode: int | None
    wall: float
    expected: int
    counts: TestCounts
    setup: list[float]
    ready: list[float]
    waits: list[float]
    teardown_errors: list[Problem]
    plugin_counts: dict[str, int]
    log: Path

    @property
    def clean(self) -> bool:
        """Every expected test passed, nothing else went wrong, and pytest exited 0."""
        return not self.problems()

    def problems(self) -> list[Problem]:
        """What went wrong in this run, one entry per cause, test problems first."""
        found = list(self.counts.problems) + list(self.teardown_errors)
        if self.returncode is None:
            found.append(Problem(self.tag, "run", f"stopped at its timeout (log: {self.log})"))
        missing = self.expected - self.counts.passed - self.counts.failed - self.counts.errors
        if missing > 0:
            found.append(Problem(self.tag, "run", f"{missing} test(s) did not run or pass"))
        if self.returncode not in (0, None) and not found:
            found.append(Problem(self.tag, "run", f"pytest exited {self.returncode}"))
        return found

    def failures(self) -> int:
        """Tests that did not pass, plus teardown errors, plus a bad exit nothing explains."""
        bad_tests = max(self.expected - self.counts.passed, self.counts.failed + self.counts.errors)
        failures = bad_tests + len(self.teardown_errors)
        if failures == 0 and self.returncode != 0:
            failures = 1
        return failures


class Runner:
    """Starts inner pytest runs in copies of the suite and keeps track of the live ones."""

    def __init__(self, stack: Stack, work: Path) -> None:
        self.stack = stack
        self.work = work
        self.live: list[Launched] = []

    def launch(
        self,
        tag: str,
        host: str,
        count: int,
        work_seconds: float,
        extra: Sequence[str] = (),
    ) -> Launched:
        run_dir = self.work / tag
        suite = run_dir / "suite"
        shutil.copytree(SUITE_DIR, suite, ignore=shutil.ignore_patterns("__pycache__"))
        env = inner_env(
            self.stack.env(),
            self.stack.settings_file,
            count=str(count),
            work_seconds=str(work_seconds),
            progress_file=str(run_dir / "progress.txt"),
        )
        args = pytest_args(run_dir, host, extra)
        (run_dir / "command.txt").write_text(" ".join(args) + "\n")
        log = (run_dir / "pytest.log").open("wb")
        try:
            proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=suite,
                start_new_session=True,
            )  # fmt: skip
        except BaseException:
            log.close()
            raise
        launched = Launched(tag, run_dir, count, proc, log, time.monotonic())
        self.live.append(launched)
        return launched

    def wait(
        self,
        launched: Launched,
        deadline: float,
        tick: Callable[[Launched], None] | None = None,
    ) -> Outcome:
        """Wait for a run until ``deadline`` (then stop it), calling ``tick`` now and then."""
        finished = False
        while not finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                launched.proc.wait(timeout=min(PROGRESS_INTERVAL, remaining))
                finished = True
            except subprocess.TimeoutExpired:
                if tick is not None:
                    tick(launched)
        if not finished:
            print(f"  {launched.tag}: past its timeout, stopping it", flush=True)
            stackkit.stop_group(launched.proc)
        wall = time.monotonic() - launched.started
        self.live.remove(launched)
        launched.log.close()
        return self.outcome(launched, launched.proc.returncode if finished else None, wall)

    def outcome(self, launched: Launched, returncode: int | None, wall: float) -> Outcome:
        output = launched.log_path.read_text(errors="replace")
        junit = launched.run_dir / "junit.xml"
        counts: TestCounts | None = None
        if junit.is_file():
            with contextlib.suppress(ET.ParseError, OSError):
                counts = parse_junit(junit.read_text(errors="replace"))
        if counts is None:
            counts = counts_from_output(output)
        records = load_records(launched.run_dir / "records.json")
        return Outcome(
            tag=launched.tag,
            returncode=returncode,
            wall=wall,
            expected=launched.expected,
            counts=counts,
            setup=parse_durations(output, "setup"),
            ready=records_ready(records),
            waits=records_waits(records),
            teardown_errors=records_teardown_errors(records),
            plugin_counts=records_counts(records),
            log=launched.log_path,
        )

    def stop_all(self) -> None:
        """Interrupt every run still going (the script is being interrupted)."""
        for launched in list(self.live):
            print(f"stopping inner run {launched.tag}", file=sys.stderr, flush=True)
            stackkit.stop_group(launched.proc)
            launched.log.close()
            self.live.remove(launched)


# -- phases --------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    """One phase's figures, as the table and the JSON show them."""

    phase: str
    runs: int
    failures: int = 0
    problems: list[Problem] = field(default_factory=list)
    setup: list[float] = field(default_factory=list)
    ready: list[float] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    namespaces_left: int | None = None
    wall: float | None = None
    logs: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        ready = spread(self.ready)
        return {
            "phase": self.phase,
            "runs": self.runs,
            "failures": self.failures,
            "setup": spread(self.setup),
            "ready": ready,
            "ready_ratio": ratio(ready["p95"], ready["p50"]),
            "wait": spread(self.waits),
            "namespaces_left": self.namespaces_left,
            "wall": self.wall,
            "problems": [p.line() for p in self.problems],
            "logs": self.logs,
            "details": self.details,
            "samples": {"setup": self.setup, "ready": self.ready, "wait": self.waits},
        }


def outcome_parked(result: PhaseResult, index: int) -> int:
    """How many clusters run ``index`` of the warm phase parked, by its records."""
    run = result.details.get(f"run_{index}") or {}
    return int((run.get("plugin_counts") or {}).get("parked", 0))


def split_warm(namespaces: Sequence[dict[str, str]]) -> tuple[list[str], list[dict[str, str]]]:
    """The warm namespaces' names, and every other namespace."""
    warm = [ns["name"] for ns in namespaces if ns["state"] == WARM_STATE]
    return warm, [ns for ns in namespaces if ns["state"] != WARM_STATE]


def from_outcome(phase: str, outcome: Outcome) -> PhaseResult:
    """A phase of one inner run."""
    return PhaseResult(
        phase=phase,
        runs=outcome.expected,
        failures=outcome.failures(),
        problems=outcome.problems(),
        setup=outcome.setup,
        ready=outcome.ready,
        waits=outcome.waits,
        wall=outcome.wall,
        logs=[str(outcome.log)],
        details={
            "returncode": outcome.returncode,
            "passed": outcome.counts.passed,
            "failed": outcome.counts.failed,
            "errors": outcome.counts.errors,
            "skipped": outcome.counts.skipped,
            "plugin_counts": outcome.plugin_counts,
        },
    )


def _ticker(phase: str) -> Callable[[Launched], None]:
    def tick(launched: Launched) -> None:
        seconds = time.monotonic() - launched.started
        print(f"  {phase}: {seconds:.0f}s, {launched.progress().line(launched.expected)}",
              flush=True)  # fmt: skip

    return tick


@dataclass
class Stress:
    """One stress run: options, stack, work directory, and the hosts it made."""

    options: argparse.Namespace
    stack: Stack
    work: Path
    kind: Kind
    runner: Runner
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    races_started: list[str] = field(default_factory=list)

    def run_timeout(self, count: int) -> float:
        return float(self.options.run_timeout or 600 + 60 * count)

    def count_namespaces(self, kubeconfig: Path) -> list[dict[str, str]]:
        return managed_namespaces(self.stack.tool("kubectl"), kubeconfig, self.kind.env)

    def settle_warm(
        self, kubeconfig: Path, found: list[dict[str, str]], result: PhaseResult
    ) -> list[dict[str, str]]:
        """Check and delete the warm clusters the warm phase left; the rest, to be counted."""
        warm, others = split_warm(found)
        result.details["warm_left"] = len(warm)
        print(f"  warm: {len(warm)} warm cluster(s) parked at the end, deleting them", flush=True)
        if len(warm) > WARM_POOL:
            result.failures += 1
            result.problems.append(
                Problem("warm", "leftover", f"{len(warm)} warm clusters, more than the pool's "
                        f"{WARM_POOL}: {', '.join(warm)}")
            )  # fmt: skip
        if warm:
            done = tool_run(
                [
                    self.stack.tool("kubectl"), "--kubeconfig", str(kubeconfig),
                    "delete", "namespaces", "-l", f"{STATE_LABEL}={WARM_STATE}",
                    "--wait=true", "--timeout=120s",
                ],
                env=self.kind.env,
                timeout=150.0,
            )  # fmt: skip
            if done.returncode != 0:
                raise StressError(f"deleting the warm namespaces failed: {done.stderr[-500:]}")
        return others

    def suite_phase(self, phase: str, count: int, work_seconds: float, extra: list[str]) -> Outcome:
        host = self.options.host
        launched = self.runner.launch(phase, host, count, work_seconds, extra)
        print(f"{phase}: {count} tests on {host}, log {launched.log_path}", flush=True)
        outcome = self.runner.wait(
            launched, time.monotonic() + self.run_timeout(count), _ticker(phase)
        )
        print(f"  {phase}: done in {outcome.wall:.0f}s, exit {outcome.returncode}, "
              f"{outcome.counts.passed}/{count} passed", flush=True)  # fmt: skip
        return outcome

    def fresh(self) -> Outcome:
        """N tests at -n 2 with the plugin's defaults (lookahead on)."""
        return self.suite_phase(
            "fresh", self.options.fresh, FRESH_WORK_SECONDS,
            ["-n", str(WORKERS)],
        )  # fmt: skip

    def warm(self) -> PhaseResult:
        """Runs that park warm clusters and adopt the ones the run before them parked."""
        result = PhaseResult("warm", 0)
        started = time.monotonic()
        extra = ["-n", str(WORKERS), f"--vcluster-warm-pool={WARM_POOL}"]
        adopted: list[int] = []
        for index in range(1, self.options.warm + 1):
            if index > 1:
                time.sleep(WARM_GAP)
            outcome = self.suite_phase(f"warm-{index}", WARM_TESTS, FRESH_WORK_SECONDS, extra)
            run = from_outcome("warm", outcome)
            result.runs += run.runs
            result.failures += run.failures
            result.problems += run.problems
            result.setup += run.setup
            result.ready += run.ready
            result.waits += run.waits
            result.logs += run.logs
            adopted.append(outcome.plugin_counts.get("adopted", 0))
            if index > 1 and not adopted[-1]:
                result.failures += 1
                result.problems.append(
                    Problem(f"warm-{index}", "run", "adopted no warm cluster (log: "
                            f"{outcome.log}); the run before it parked "
                            f"{outcome_parked(result, index - 1)}")
                )  # fmt: skip
            result.details[f"run_{index}"] = {
                "returncode": outcome.returncode,
                "passed": outcome.counts.passed,
                "plugin_counts": outcome.plugin_counts,
            }
        result.wall = time.monotonic() - started
        result.details["adopted"] = adopted
        return result

    def cycles(self) -> Outcome:
        """N create, call, delete cycles in one process: a test each (lookahead at default)."""
        return self.suite_phase("cycles", self.options.cycles, 0.0, ["-p", "no:xdist"])

    def race(self, index: int) -> tuple[bool, list[Outcome], list[Problem], int]:
        """Two processes at once on a new host; (clean, outcomes, problems, namespaces left)."""
        host = f"{RACE_PREFIX}{self.token}-{index}"
        if self.kind.exists(host):
            return False, [], [Problem(host, "host", "existed before the race")], 0
        self.races_started.append(host)
        deadline = time.monotonic() + self.options.race_timeout
        pair = [
            self.runner.launch(f"race-{index}-{side}", host, 1, 0.0, ["-p", "no:xdist"])
            for side in ("a", "b")
        ]
        outcomes = [self.runner.wait(launched, deadline) for launched in pair]
        problems = [p for o in outcomes for p in o.problems()]
        left = 0
        if self.kind.exists(host):
            with contextlib.suppress(StressError):
                kubeconfig = self.kind.write_kubeconfig(host)
                left = len(self.count_namespaces(kubeconfig))
            problems.append(
                Problem(host, "leftover", f"host still exists after both runs ended "
                        f"({left} managed namespace(s) on it); deleted by this script")
            )  # fmt: skip
            self.kind.delete(host)
        clean = not problems
        states = ", ".join(
            f"{o.tag[-1]} {'passed' if o.clean else 'FAILED'} {o.wall:.0f}s" for o in outcomes
        )
        gone = "host left behind" if any(p.kind == "leftover" for p in problems) else "host gone"
        print(f"  race {index}/{self.options.races} ({host}): {states}, {gone}", flush=True)
        return clean, outcomes, problems, left

    def races(self) -> PhaseResult:
        started = time.monotonic()
        result = PhaseResult("races", self.options.races, namespaces_left=0)
        print(f"races: {self.options.races} pairs of runs on new hosts "
              f"{RACE_PREFIX}{self.token}-N, logs in {self.work}/race-*", flush=True)  # fmt: skip
        clean_repeats = 0
        hosts_left = 0
        for index in range(1, self.options.races + 1):
            clean, outcomes, problems, left = self.race(index)
            clean_repeats += clean
            hosts_left += any(p.kind == "leftover" for p in problems)
            result.problems += problems
            result.namespaces_left = (result.namespaces_left or 0) + left
            for o in outcomes:
                result.setup += o.setup
                result.ready += o.ready
                result.waits += o.waits
                result.logs.append(str(o.log))
        result.failures = self.options.races - clean_repeats
        result.wall = time.monotonic() - started
        result.details = {"clean_repeats": clean_repeats, "hosts_left": hosts_left}
        return result


# -- main ----------------------------------------------------------------------------------------


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number of seconds")
    return value


def _host_name(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", text) or text.startswith(RACE_PREFIX):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a kind cluster name (lower case letters, digits, '-'), "
            f"not starting with {RACE_PREFIX}"
        )
    return text


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fresh", type=_count, default=200, help="tests of the fresh phase")
    parser.add_argument(
        "--warm", type=_count, default=0, help="runs of the warm phase (default: %(default)s)"
    )
    parser.add_argument("--cycles", type=_count, default=200, help="cycles of the cycles phase")
    parser.add_argument("--races", type=_count, default=20, help="repeats of the races phase")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="JSON results (default: %(default)s)"
    )
    stackkit.add_stack_option(parser)
    parser.add_argument(
        "--host",
        type=_host_name,
        default=DEFAULT_HOST,
        help="kind host of fresh and cycles; must not exist (default: %(default)s)",
    )
    parser.add_argument(
        "--run-timeout",
        type=_seconds,
        default=None,
        help="seconds allowed for the fresh and for the cycles run (default: 600 + 60 per test)",
    )
    parser.add_argument(
        "--race-timeout",
        type=_seconds,
        default=900.0,
        help="seconds allowed for each pair of race runs (default: %(default)s)",
    )
    options = parser.parse_args(argv)
    options.stack = stackkit.stack_path(options.stack)
    return options


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM becomes an exception so that the finally blocks stop runs and delete hosts.
    raise SystemExit(128 + signum)


def _host_phases(
    stress: Stress, results: list[PhaseResult], errors: dict[str, str]
) -> dict[str, Any]:
    """fresh and cycles on the script's own host, then its namespaces counted and it deleted.

    Each phase is charged the managed namespaces that appeared on the host during it; the
    count after both is the host's ``namespaces_final``.
    """
    options, kind = stress.options, stress.kind
    host: dict[str, Any] = {"name": options.host}
    if kind.exists(options.host):
        raise StressError(
            f"kind cluster {options.host} exists already (another stress run, or a leftover: "
            f"`kind delete cluster --name {options.host}`); or pass --host NAME"
        )
    print(f"creating the host {options.host}", flush=True)
    try:
        host["create_seconds"] = kind.create(options.host)
        print(f"  host {options.host} ready in {host['create_seconds']:.0f}s", flush=True)
        seen: set[str] = set()
        kubeconfig = kind.kubeconfig(options.host)
        phases: list[tuple[str, Callable[[], PhaseResult]]] = [
            ("fresh", lambda: from_outcome("fresh", stress.fresh())),
            ("warm", stress.warm),
            ("cycles", lambda: from_outcome("cycles", stress.cycles())),
        ]
        for name, phase in phases:
            if not getattr(options, name):
                continue
            result = phase()
            results.append(result)
            if not kind.exists(options.host):
                # The plugin must never delete a host it did not create.
                result.failures += 1
                raise StressError(f"the host {options.host} is gone after the {name} phase")
            found = stress.count_namespaces(kubeconfig)
            if name == "warm":
                found = stress.settle_warm(kubeconfig, found, result)
            new = [ns for ns in found if ns["name"] not in seen]
            seen |= {ns["name"] for ns in found}
            result.namespaces_left = len(new)
            result.problems += [
                Problem(ns["name"], "leftover", f"managed namespace, {ns['phase']}, "
                        f"state {ns['state'] or '-'}")
                for ns in new
            ]  # fmt: skip
            print(f"  {name}: {len(new)} managed namespace(s) left on the host", flush=True)
        final = stress.count_namespaces(kubeconfig)
        host["namespaces_final"] = len(final)
        print(f"{len(final)} managed namespace(s) on {options.host} at the end", flush=True)
        if final and not any(r.namespaces_left for r in results):
            errors["host"] = f"{len(final)} managed namespace(s) left on {options.host}"
    finally:
        print(f"deleting the host {options.host}", flush=True)
        kind.delete(options.host)
    return host


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        stack = Stack.load(options.stack)
        kind_binary = stack.tool("kind")
        stack.tool("kubectl")
    except StressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pytest-vcluster-stress-"))
    kind = Kind(kind_binary, stack.node_image, stack.env(), work, options.host)
    stress = Stress(options, stack, work, kind, Runner(stack, work))
    print(f"pytest-vcluster stress: fresh {options.fresh}, warm {options.warm}, "
          f"cycles {options.cycles}, races {options.races}; work dir (inner logs) {work}",
          flush=True)  # fmt: skip
    dropped = dropped_env(dict(os.environ))
    if dropped:
        print(f"inner runs leave out {', '.join(dropped)}: they get the stack's settings only")
    started = dt.datetime.now(dt.UTC)
    results: list[PhaseResult] = []
    errors: dict[str, str] = {}
    host: dict[str, Any] = {}
    try:
        if options.fresh or options.warm or options.cycles:
            try:
                host = _host_phases(stress, results, errors)
            except StressError as exc:
                errors["host"] = str(exc)
                print(f"error: {exc}", file=sys.stderr, flush=True)
        if options.races:
            try:
                results.append(stress.races())
            except StressError as exc:
                errors["races"] = str(exc)
                print(f"error: {exc}", file=sys.stderr, flush=True)
    finally:
        stress.runner.stop_all()
        with contextlib.suppress(StressError):
            for race_host in set(stress.races_started) & set(kind.clusters()):
                kind.delete(race_host)

    phases = [r.to_json() for r in results]
    code = exit_code(phases, errors)
    data = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "ok": code == 0,
        "machine": {"cpus": os.cpu_count()},
        "plugin": {"version": importlib.metadata.version("pytest-vcluster")},
        "stack": {k: stack.raw.get(k) for k in ("kind_version", "vcluster_version",
                                                 "host_kubernetes_version", "node_image")},
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "work_dir": str(work),
        "host": host,
        "phases": phases,
        "errors": errors,
    }  # fmt: skip
    print()
    print(table(phases))
    lines = problem_lines(phases) + [f"error in {k}: {short(v)}" for k, v in errors.items()]
    if lines:
        print()
        print("\n".join(lines))
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(data, indent=2) + "\n")
    verdict = "no false failures, nothing left behind" if code == 0 else "FAILURES or LEFTOVERS"
    print(f"\n{verdict}; wrote {options.out}; inner logs in {work}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
