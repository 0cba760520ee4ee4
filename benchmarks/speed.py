"""How fast pytest-vcluster is next to a kind cluster per test, measured on the offline stack.

One command measures, in one run and on the same machine:

* K: ``kind create cluster --wait 5m`` to a Ready node (median of ``--repeat-k``);
* C: a fresh vcluster, from create to a ready handle, per Kubernetes version, with the plugin's
  phase breakdown (median of ``--repeat-c``, lookahead off so each create is alone);
* R: resume of a paused vcluster to ready (median of ``--repeat-r``);
* S: ``--tests`` tests of about ``--work-seconds`` real work each in their own ``vcluster``, at
  ``-n --workers`` with the plugin's defaults (lookahead on): wall time and setup waits;
* Sk: the same test bodies with a kind cluster per test (the pytest-kind way), same workers;
* D: how many idle Ready vclusters the host holds, and host memory per idle vcluster;

then prints a table with the ratios C/K, R/C and S/Sk next to their targets, and writes it as
``speed.json`` and ``speed.png`` (the chart needs matplotlib: ``pip install -e '.[bench]'``).

The tests it runs live in ``benchmarks/suite/``; each measurement is one inner pytest run in a
temporary copy of that directory. C, R, S and D share one kind host, ``speed-host``, which this
script creates first (so its creation counts in none of them) and deletes at the end. Figures
are judged here, never by timed asserts.

    python benchmarks/speed.py                        # everything, about 25 minutes
    python benchmarks/speed.py --only K,C --versions 1.34 --repeat-k 1 --repeat-c 1
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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import stackkit

if TYPE_CHECKING:
    from matplotlib.axes import Axes

HERE = Path(__file__).resolve().parent
SUITE_DIR = HERE / "suite"
REPO = HERE.parent
HOST = "speed-host"  # every cluster this script creates is named speed-*
PHASES = ("K", "C0", "C", "R", "S", "Sk", "D")
STATS_INTERVAL = 10.0  # seconds between host memory samples during S: rare, to disturb little


class BenchError(stackkit.StackError):
    """A measurement could not be taken; the message says which and why."""


# -- the offline stack -------------------------------------------------------------------------


class Stack(stackkit.Stack):
    """The settings ``.ci/stack/up`` wrote to stack.json, with the chart, values and versions."""

    required = ("node_image", "chart_dir", "values_file", "version_map", "path_dir")
    error = BenchError

    @property
    def version_map(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.raw["version_map"].items()}

    @property
    def workload_image(self) -> str:
        return str(self.raw.get("images", {}).get("workload", "pytest-vcluster/workload:1"))

    def plugin_args(self) -> list[str]:
        """Options pointing pytest-vcluster at the stack and at the shared host."""
        return [
            f"--vcluster-node-image={self.node_image}",
            f"--vcluster-local-chart-dir={self.raw['chart_dir']}",
            f"--vcluster-values={self.raw['values_file']}",
            "--vcluster-version-map=" + ",".join(f"{k}={v}" for k, v in self.version_map.items()),
            f"--vcluster-kind-binary={self.tool('kind')}",
            f"--vcluster-vcluster-binary={self.tool('vcluster')}",
            f"--vcluster-helm-binary={self.tool('helm')}",
            f"--vcluster-host-name={HOST}",
            "--vcluster-keep-host",  # the host is this script's; it outlives every inner run
        ]


# -- commands ----------------------------------------------------------------------------------


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


class Kind(stackkit.KindClusters):
    """The kind clusters this script makes: created with a private kubeconfig, always deleted."""

    def create(self, name: str) -> float:
        """``kind create cluster`` to a Ready node; returns the seconds it took."""
        done = run(self.create_args(name), timeout=stackkit.KIND_CREATE_TIMEOUT, env=self.env)
        if done.returncode != 0:
            raise BenchError(
                f"kind create cluster --name {name} exited {done.returncode}:\n{done.tail()}"
            )
        return done.seconds

    def delete(self, name: str) -> None:
        """``kind delete cluster`` (a no-op when it does not exist); complains, never raises."""
        if not name.startswith("speed-"):
            raise ValueError(f"refusing to delete {name}: this script only deletes speed-*")
        try:
            done = run(self.delete_args(name), timeout=stackkit.KIND_DELETE_TIMEOUT, env=self.env)
        except BenchError as exc:
            print(f"warning: {exc}", file=sys.stderr)
            return
        if done.returncode != 0:
            print(f"warning: kind delete cluster {name} failed:\n{done.tail()}", file=sys.stderr)

    def clusters(self) -> list[str]:
        done = run([self.binary, "get", "clusters"], timeout=60, env=self.env)
        return [line.strip() for line in done.output.splitlines() if line.strip()]


# -- small statistics and parsing --------------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], pct: int) -> float | None:
    """The ``pct``-th percentile (inclusive method: stays within the samples)."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def parse_mib(text: str) -> float | None:
    """MiB from the used part of docker's ``MemUsage`` (``1.2GiB / 23.4GiB``, ``512MiB``)."""
    match = re.match(r"\s*([\d.]+)\s*([KMGT]?i?B)", text)
    if not match:
        return None
    scale = {"B": 2**-20, "KiB": 2**-10, "MiB": 1, "GiB": 2**10, "TiB": 2**20}
    scale |= {"kB": 1e3 / 2**20, "KB": 1e3 / 2**20, "MB": 1e6 / 2**20, "GB": 1e9 / 2**20}
    unit = match.group(2)
    return float(match.group(1)) * scale[unit] if unit in scale else None


DURATION_LINE = re.compile(r"^\s*([\d.]+)s\s+(setup|call|teardown)\s+(\S+)")
SUMMARY_LINE = re.compile(r"create/resume to ready: median ([\d.]+)s")


def version_key(minor: str) -> tuple[int, ...]:
    return tuple(int(part) for part in minor.split(".") if part.isdigit())


# -- inner pytest runs -------------------------------------------------------------------------


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

    def clusters(self, event: str) -> list[dict[str, Any]]:
        """The records file's clusters of one event (``created`` or ``resumed``)."""
        found = (self.records or {}).get("clusters") or []
        return [c for c in found if isinstance(c, dict) and c.get("event") == event]

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
                ("vclusters:", "create/resume to ready:", "kind host", "tests waited for")
            )
        ]


class Suite:
    """Runs ``benchmarks/suite`` with pytest in a temporary copy, one measurement at a time."""

    def __init__(self, stack: Stack, work: Path, timeout: float) -> None:
        self.stack = stack
        self.work = work
        self.timeout = timeout
        self.dir = work / "suite"
        shutil.copytree(SUITE_DIR, self.dir, ignore=shutil.ignore_patterns("__pycache__"))
        # An ini file of its own: the repository's pytest settings (warnings as errors, strict
        # config) are for the project's tests, and rootdir must not climb out of the copy.
        (self.dir / "pytest.ini").write_text("[pytest]\n")
        self.features = self._features()

    def _features(self) -> dict[str, bool]:
        """Which of the newer plugin options exist (an unknown option is a usage error)."""
        done = run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--help"],
            timeout=120,
            env=self.stack.env(),
            cwd=self.dir,
        )
        if done.returncode != 0:
            raise BenchError(f"pytest --help failed in the suite:\n{done.tail()}")
        return {
            "records": "--vcluster-records" in done.output,
            "lookahead": "--vcluster-lookahead" in done.output,
        }

    def run(
        self,
        tag: str,
        test: str,
        settings: dict[str, Any],
        *,
        vcluster: bool = True,
        version: str | None = None,
        lookahead: int | None = None,
        workers: int = 0,
        extra: Sequence[str] = (),
    ) -> InnerRun:
        """Run ``test_speed.py::<test>`` with suite ``settings``; raise when pytest fails."""
        run_dir = self.work / tag
        timings = run_dir / "timings"
        timings.mkdir(parents=True)
        config = run_dir / "suite.json"
        config.write_text(json.dumps({**settings, "timings_dir": str(timings)}, indent=2))
        records = run_dir / "records.json"
        args = [
            sys.executable, "-m", "pytest", f"test_speed.py::{test}",
            "-p", "no:cacheprovider", "-q", "-rfE",
            "--durations=0", "--durations-min=0",
            f"--basetemp={run_dir / 'basetemp'}",
        ]  # fmt: skip
        if workers:
            args += ["-n", str(workers)]
        if vcluster:
            args += self.stack.plugin_args()
            if version:
                args.append(f"--vcluster-versions={version}")
            if self.features["records"]:
                args.append(f"--vcluster-records={records}")
            if lookahead is not None and self.features["lookahead"]:
                args.append(f"--vcluster-lookahead={lookahead}")
            args += extra
        env = self.stack.env()
        env["SPEED_SUITE_CONFIG"] = str(config)
        log = run_dir / "pytest.log"
        done = run(args, timeout=self.timeout, env=env, cwd=self.dir, log=log)
        inner = InnerRun(
            tag=tag,
            returncode=done.returncode,
            wall=done.seconds,
            log=log,
            output=done.output,
            timings=_read_timings(timings),
            records=_read_records(records),
        )
        if done.returncode != 0:
            failed = [
                line for line in done.output.splitlines() if line.startswith(("FAILED", "ERROR"))
            ]
            raise BenchError(
                f"inner pytest run {tag} exited {done.returncode}: "
                f"{failed[0] if failed else 'see its log'} (log: {log})\n{done.tail(40)}"
            )
        return inner


def _read_timings(directory: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                item = json.loads(line)
                if isinstance(item, dict):
                    found.append(item)
    return found


def _read_records(path: Path) -> dict[str, Any] | None:
    """The plugin's records file, or None when this plugin version writes none."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        print(f"warning: unreadable records file {path}: {exc}", file=sys.stderr)
        return None
    return data if isinstance(data, dict) else None


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


# -- the measurements --------------------------------------------------------------------------


@dataclass
class Bench:
    """One benchmark run: options, stack, work directory and what was measured so far."""

    options: argparse.Namespace
    stack: Stack
    work: Path
    kind: Kind
    versions: list[str]
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    results: dict[str, Any] = field(default_factory=dict)
    suite_: Suite | None = None

    @property
    def primary(self) -> str:
        """The version R, S and D run on: the newest one selected."""
        return max(self.versions, key=version_key)

    @property
    def suite(self) -> Suite:
        if self.suite_ is None:
            self.suite_ = Suite(self.stack, self.work, self.options.run_timeout)
        return self.suite_

    def settings(self, **overrides: object) -> dict[str, Any]:
        """Suite settings shared by every inner run, with ``overrides``."""
        return {
            "workload_image": self.stack.workload_image,
            "kind_binary": self.stack.tool("kind"),
            "node_image": self.stack.node_image,
            "kind_prefix": f"speed-sk-{self.token}",
            "docker_binary": shutil.which("docker") or "docker",
            **overrides,
        }

    def c_median(self, version: str) -> float | None:
        value = self.results.get("C", {}).get(version, {}).get("median")
        return float(value) if value is not None else None

    # K ----------------------------------------------------------------------------------------
    def measure_k(self) -> None:
        samples: list[float] = []
        for i in range(1, self.options.repeat_k + 1):
            name = f"speed-kind-{i}"
            self.kind.delete(name)  # a leftover of an interrupted run would make create fail
            try:
                samples.append(self.kind.create(name))
            finally:
                self.kind.delete(name)
            print(f"  K {i}/{self.options.repeat_k}: {samples[-1]:.1f}s", flush=True)
        self.results["K"] = {"samples": samples, "median": median(samples)}

    # C and C0 ---------------------------------------------------------------------------------
    def _creates(self, tag: str, version: str, extra: Sequence[str] = ()) -> dict[str, Any]:
        """Fresh vclusters made one at a time (lookahead off), and their figures."""
        inner = self.suite.run(
            tag,
            "test_create",
            self.settings(repeat=self.options.repeat_c),
            version=version,
            lookahead=0,
            extra=extra,
        )
        created = inner.clusters("created")
        wall = inner.seconds("create")
        records = ready_seconds(created)
        value, source = pick(
            ("records", records), ("wall", wall), ("summary", _listed(inner.summary_median()))
        )
        print(f"  {tag}: median {_s(value)} ({source}), wall {_s(median(wall))}")
        return {
            "median": value,
            "source": source,
            "samples": records or wall,
            "wall_samples": wall,
            "wall_median": median(wall),
            "phases": phase_breakdown(created),
            "summary": inner.summary(),
            "inner_wall": inner.wall,
        }

    def measure_c(self) -> None:
        per_version: dict[str, Any] = self.results.setdefault("C", {})
        for version in sorted(self.versions, key=version_key):
            per_version[version] = self._creates(f"C-{version}", version)

    def measure_c0(self) -> None:
        """C as it was before the speed work: the vcluster CLI and the chart's own values."""
        before = ["--vcluster-create-with=cli", "--vcluster-fast-start=false"]
        figures = self._creates(f"C0-{self.primary}", self.primary, before)
        self.results["C0"] = {"version": self.primary, **figures}

    # R ----------------------------------------------------------------------------------------
    def measure_r(self) -> None:
        inner = self.suite.run(
            "R",
            "test_resume",
            self.settings(resumes=self.options.repeat_r),
            version=self.primary,
            lookahead=0,
        )
        records = ready_seconds(inner.clusters("resumed"))
        wall = inner.seconds("resume")
        value, source = pick(("records", records), ("wall", wall))
        self.results["R"] = {
            "version": self.primary,
            "phases": phase_breakdown(inner.clusters("resumed")),
            "median": value,
            "source": source,
            "samples": records or wall,
            "wall_samples": wall,
            "wall_median": median(wall),
            "summary": inner.summary(),
        }
        print(f"  R {self.primary}: median {_s(value)} ({source}), wall {_s(median(wall))}")

    # S and Sk ---------------------------------------------------------------------------------
    def measure_s(self) -> None:
        sampler = MemorySampler(f"{HOST}-control-plane")
        sampler.start()
        try:
            inner = self.suite.run(
                "S",
                "test_work",
                self.settings(
                    backend="vcluster",
                    tests=self.options.tests,
                    work_seconds=self.options.work_seconds,
                ),
                version=self.primary,
                workers=self.options.workers,
            )
        finally:
            sampler.stop()
        setups = [s for s in (inner.records or {}).get("setups") or [] if isinstance(s, dict)]
        waits = [float(s["wait_seconds"]) for s in setups if "wait_seconds" in s]
        fixture = inner.seconds("fixture_setup", fixture="vcluster")
        values, source = first_with_samples(("records", waits), ("fixture", fixture))
        sources: dict[str, int] = {}
        for s in setups:
            sources[str(s.get("source"))] = sources.get(str(s.get("source")), 0) + 1
        self.results["S"] = {
            **self._suite_result(inner, "vcluster"),
            "version": self.primary,
            "setup": _spread(values, source),
            "setup_fixture": _spread(fixture, "fixture"),
            "teardown": _spread(
                [
                    float(t["seconds"])
                    for t in (inner.records or {}).get("teardowns") or []
                    if isinstance(t, dict) and isinstance(t.get("seconds"), int | float)
                ],
                "records",
            ),
            "setup_sources": sources,
            "prepared_clusters": sum(1 for c in inner.clusters("created") if c.get("prepared")),
            "host_memory_mib": sampler.summary(),
        }
        self._print_suite("S")

    def measure_sk(self) -> None:
        try:
            inner = self.suite.run(
                "Sk",
                "test_work",
                self.settings(
                    backend="kind",
                    tests=self.options.tests,
                    work_seconds=self.options.work_seconds,
                ),
                vcluster=False,
                workers=self.options.workers,
            )
        finally:
            self.reap_baseline()
        self.results["Sk"] = {
            **self._suite_result(inner, "kind"),
            "setup": _spread(inner.seconds("fixture_setup", fixture="kind_cluster"), "fixture"),
        }
        self._print_suite("Sk")

    def _suite_result(self, inner: InnerRun, backend: str) -> dict[str, Any]:
        work = inner.seconds("work", backend=backend)
        return {
            "wall": inner.wall,
            "tests": self.options.tests,
            "workers": self.options.workers,
            "work_seconds": self.options.work_seconds,
            "test_body": _spread(work, "timings"),
            "setup_durations": _spread(inner.durations("setup"), "--durations"),
            "teardown_durations": _spread(inner.durations("teardown"), "--durations"),
            "summary": inner.summary(),
        }

    def _print_suite(self, key: str) -> None:
        r = self.results[key]
        print(
            f"  {key}: wall {_s(r['wall'])}, setup p50 {_s(r['setup']['p50'])} "
            f"p95 {_s(r['setup']['p95'])} ({r['setup']['source']}), "
            f"--durations setup p50 {_s(r['setup_durations']['p50'])}"
        )

    def reap_baseline(self) -> None:
        """Delete kind clusters this run's baseline left (a crashed or stopped test)."""
        prefix = f"speed-sk-{self.token}-"
        for name in self.kind.clusters():
            if name.startswith(prefix):
                print(f"  removing leftover baseline cluster {name}")
                self.kind.delete(name)

    # D ----------------------------------------------------------------------------------------
    def measure_d(self) -> None:
        c = self.c_median(self.primary)
        # Without C from this run, the test takes twice its own first create as the limit.
        limit = 2 * c if c else 0.0
        inner = self.suite.run(
            "D",
            "test_density",
            self.settings(
                density_max=self.options.density_max,
                density_limit=limit,
                settle_seconds=self.options.density_settle,
            ),
            version=self.primary,
            lookahead=0,
        )
        final = inner.timed("density")
        if not final:
            raise BenchError(f"test_density wrote no result (log: {inner.log})")
        last = final[-1]
        before, after = parse_mib(str(last["memory_before"])), parse_mib(str(last["memory_after"]))
        created, ready = int(last["created"]), int(last["ready"])
        per = (after - before) / created if created and before is not None and after else None
        creates = [
            {
                "index": t["index"],
                "seconds": t.get("seconds"),
                "memory_mib": parse_mib(str(t.get("memory", ""))),
                "ok": t.get("ok"),
            }
            for t in inner.timed("density_create")
        ]
        self.results["D"] = {
            "version": self.primary,
            "count": ready,
            "created": created,
            "stop": last.get("stop"),
            "limit_seconds": last.get("limit_seconds"),
            "cap": self.options.density_max,
            "memory_before_mib": before,
            "memory_after_mib": after,
            "settle_seconds": last.get("settle_seconds"),
            "mib_per_vcluster": per,
            "creates": creates,
            "teardowns": len((inner.records or {}).get("teardowns") or []),
        }
        print(f"  D: {ready} Ready of {created} created ({last.get('stop')}), {_f(per)} MiB each")


def first_with_samples(*candidates: tuple[str, list[float]]) -> tuple[list[float], str]:
    """The samples of the first source that has any, and its name; ([], "none") otherwise."""
    for name, samples in candidates:
        if samples:
            return samples, name
    return [], "none"


def pick(*candidates: tuple[str, list[float]]) -> tuple[float | None, str]:
    """The median of the first source that has samples, and its name."""
    samples, name = first_with_samples(*candidates)
    return median(samples), name


def _listed(value: float | None) -> list[float]:
    return [value] if value is not None else []


def _spread(values: list[float], source: str) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
        "source": source if values else "none",
        "samples": values,
    }


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class MemorySampler(threading.Thread):
    """Reads the host node's memory with ``docker stats`` every few seconds until stopped."""

    def __init__(self, container: str) -> None:
        super().__init__(daemon=True)
        self.container = container
        self.docker = shutil.which("docker")
        self.samples: list[float] = []
        self._stopped = threading.Event()

    def run(self) -> None:
        if self.docker is None:
            return
        while not self._stopped.wait(STATS_INTERVAL):
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                proc = subprocess.run(
                    [self.docker, "stats", "--no-stream", "--format", "{{.MemUsage}}",
                     self.container],
                    capture_output=True, text=True, timeout=30, check=False,
                )  # fmt: skip
                mib = parse_mib(proc.stdout) if proc.returncode == 0 else None
                if mib is not None:
                    self.samples.append(mib)

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=60)

    def summary(self) -> dict[str, Any]:
        return {
            "n": len(self.samples),
            "first": self.samples[0] if self.samples else None,
            "median": median(self.samples),
            "peak": max(self.samples) if self.samples else None,
        }


# -- the report --------------------------------------------------------------------------------

TARGETS: dict[str, tuple[str, float]] = {
    "C/K": ("<=", 0.75),
    "R/C": ("<=", 0.4),
    "S/Sk": ("<=", 0.5),
    "setup p50": ("<=", 1.0),
    "D count": (">=", 12),
    "MiB per vcluster": ("<=", 300),
}


def _portable(value: object) -> object:
    """Paths as the results should show them: relative to here, or under ``~``, never a
    machine's absolute path."""
    if not isinstance(value, Path):
        return value
    if value.is_relative_to(Path.cwd()):
        return str(value.relative_to(Path.cwd()))
    return str(value).replace(str(Path.home()), "~", 1)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def verdicts(results: dict[str, Any], primary: str) -> list[dict[str, Any]]:
    """Ratios and figures that have targets, each with its target and whether it is met."""
    k = (results.get("K") or {}).get("median")
    c = results.get("C") or {}
    rows: list[tuple[str, str, float | None]] = [
        (f"C/K {v}", "C/K", _ratio(c[v].get("median"), k)) for v in sorted(c, key=version_key)
    ]
    r = results.get("R") or {}
    rows.append(
        (
            f"R/C {r.get('version', primary)}",
            "R/C",
            _ratio(r.get("median"), (c.get(r.get("version", primary)) or {}).get("median")),
        )
    )
    s, sk = results.get("S") or {}, results.get("Sk") or {}
    rows.append(("S/Sk", "S/Sk", _ratio(s.get("wall"), sk.get("wall"))))
    rows.append(("setup p50 (S)", "setup p50", (s.get("setup") or {}).get("p50")))
    d = results.get("D") or {}
    rows.append(("D idle Ready vclusters", "D count", d.get("count")))
    rows.append(("D MiB per vcluster", "MiB per vcluster", d.get("mib_per_vcluster")))
    out = []
    for label, target_name, value in rows:
        op, target = TARGETS[target_name]
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        out.append({"name": label, "value": value, "target": f"{op} {target:g}", "met": met})
    return out


def _figure_lines(res: dict[str, Any]) -> list[str]:
    lines: list[str] = []

    def row(name: str, value: str, note: str = "") -> None:
        lines.append(f"  {name:<44} {value:>12}  {note}".rstrip())

    k = res.get("K") or {}
    if k:
        row(f"K   kind create -> Ready node (n={len(k['samples'])})", _s(k["median"]))
    for version, c in sorted((res.get("C") or {}).items(), key=lambda kv: version_key(kv[0])):
        row(
            f"C   vcluster create -> ready, {version} (n={len(c['samples'])})",
            _s(c["median"]),
            f"{c['source']}; wall {_s(c['wall_median'])}",
        )
    c0 = res.get("C0") or {}
    if c0:
        row(
            f"C0  the same before: CLI, chart values, {c0['version']} (n={len(c0['samples'])})",
            _s(c0["median"]),
            f"{c0['source']}; wall {_s(c0['wall_median'])}",
        )
    r = res.get("R") or {}
    if r:
        row(
            f"R   resume -> ready, {r['version']} (n={len(r['samples'])})",
            _s(r["median"]),
            f"{r['source']}; wall {_s(r['wall_median'])}",
        )
    for key, what in (("S", "vcluster"), ("Sk", "kind per test")):
        suite = res.get(key) or {}
        if not suite:
            continue
        row(f"{key:<3} {suite['tests']} tests, -n {suite['workers']}, {what}", _s(suite["wall"]))
        setup, durations = suite["setup"], suite["setup_durations"]
        row(
            "    setup wait p50 / p95",
            f"{_s(setup['p50'])} / {_s(setup['p95'])}",
            f"{setup['source']}; --durations {_s(durations['p50'])} / {_s(durations['p95'])}",
        )
        teardown = suite["teardown_durations"]
        row(
            "    teardown p50 / p95",
            f"{_s(teardown['p50'])} / {_s(teardown['p95'])}",
            "--durations",
        )
    if res.get("S") and k:
        row("S + K (S with its host created, cold)", _s(res["S"]["wall"] + k["median"]))
    d = res.get("D") or {}
    if d:
        row(f"D   idle Ready vclusters ({d['created']} created)", str(d["count"]), d["stop"])
        row("    host MiB per idle vcluster", _f(d["mib_per_vcluster"]))
    return lines


def _verdict_lines(data: dict[str, Any]) -> list[str]:
    lines = [f"  {'ratio / figure':<44} {'value':>12}  {'target':<8} verdict"]
    for v in data["verdicts"]:
        value = v["value"]
        value = "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
        verdict = {True: "met", False: "MISSED", None: "not measured"}[v["met"]]
        lines.append(f"  {v['name']:<44} {value:>12}  {v['target']:<8} {verdict}")
    res = data["results"]
    s, sk, k = res.get("S") or {}, res.get("Sk") or {}, res.get("K") or {}
    if s and sk and k.get("median") and sk.get("wall"):
        cold = (s["wall"] + k["median"]) / sk["wall"]
        lines.append(f"  {'(S + K)/Sk, for information':<44} {cold:>12.2f}")
    return lines


def _phase_lines(res: dict[str, Any]) -> list[str]:
    tables = [
        (f"C phases, {version} (median seconds since create started)", c["phases"])
        for version, c in sorted((res.get("C") or {}).items(), key=lambda kv: version_key(kv[0]))
    ]
    if res.get("R"):
        r = res["R"]
        tables.append(
            (f"R phases, {r['version']} (median seconds since resume started)", r["phases"])
        )
    lines: list[str] = []
    for title, phases in tables:
        if not phases:
            continue
        lines += ["", f"  {title}", f"    {'phase':<20} {'cumulative':>10} {'delta':>8}"]
        lines += [
            f"    {p['phase']:<20} {_f(p['cumulative'], 2):>10} {_f(p['delta'], 2):>8}"
            for p in phases
        ]
    return lines


def table(data: dict[str, Any]) -> str:
    """The printed report: figures, ratios against targets, and the C phase breakdown."""
    lines = [*_figure_lines(data["results"]), "", *_verdict_lines(data)]
    lines += _phase_lines(data["results"])
    if data["errors"]:
        lines.append("")
        lines += [
            f"  error in {name}: {msg.splitlines()[0]}" for name, msg in data["errors"].items()
        ]
    return "\n".join(lines)


def _panel_times(ax: Axes, data: dict[str, Any]) -> str | None:
    res = data["results"]
    bars: list[tuple[str, float]] = []
    if (res.get("K") or {}).get("median") is not None:
        bars.append(("K kind", res["K"]["median"]))
    for version, c in sorted((res.get("C") or {}).items(), key=lambda kv: version_key(kv[0])):
        if c["median"] is not None:
            bars.append((f"C {version}", c["median"]))
    if (res.get("R") or {}).get("median") is not None:
        bars.append((f"R {res['R']['version']}", res["R"]["median"]))
    if not bars:
        return None
    ax.bar([b[0] for b in bars], [b[1] for b in bars], color="tab:blue")
    ax.set_ylabel("seconds")
    return "to a ready cluster (median s)"


def _panel_walls(ax: Axes, data: dict[str, Any]) -> str | None:
    res = data["results"]
    walls = [(n, res[n]["wall"]) for n in ("S", "Sk") if (res.get(n) or {}).get("wall")]
    if not walls:
        return None
    colors = {"S": "tab:green", "Sk": "tab:red"}
    ax.bar([n for n, _ in walls], [w for _, w in walls], color=[colors[n] for n, _ in walls])
    ax.set_ylabel("seconds")
    first = res.get("S") or res["Sk"]
    return f"{first['tests']} tests at -n {first['workers']}: wall (s)"


def _panel_ratios(ax: Axes, data: dict[str, Any]) -> str | None:
    ratios = [v for v in data["verdicts"] if "/" in v["name"] and v["value"] is not None]
    if not ratios:
        return None
    colors = ["tab:green" if v["met"] else "tab:red" for v in ratios]
    ax.bar([v["name"] for v in ratios], [v["value"] for v in ratios], color=colors)
    for i, v in enumerate(ratios):
        ax.hlines(float(v["target"].split()[1]), i - 0.4, i + 0.4, colors="black", linestyles="--")
    ax.tick_params(axis="x", labelrotation=20)
    return "ratios (dashed: target)"


def _panel_phases(ax: Axes, data: dict[str, Any]) -> str | None:
    phased = {v: c["phases"] for v, c in (data["results"].get("C") or {}).items() if c["phases"]}
    if not phased:
        return None
    versions = sorted(phased, key=version_key)
    # One colour per phase name ("C0".."C9" of the default cycle), the same in every row.
    colors: dict[str, str] = {}
    for y, version in enumerate(versions):
        left = 0.0
        for p in phased[version]:
            width = p["delta"] or 0.0
            new = p["phase"] not in colors
            color = colors.setdefault(p["phase"], f"C{len(colors) % 10}")
            ax.barh(y, width, left=left, height=0.5, color=color, label=p["phase"] if new else None)
            left += width
    ax.set_yticks(range(len(versions)), versions)
    ax.set_ylim(-0.5, len(versions) + 0.5)  # room above the bars for the legend
    ax.set_xlabel("seconds (median per phase)")
    ax.legend(fontsize="small", loc="upper center", ncol=4)
    return "C phases"


def _panel_density(ax: Axes, data: dict[str, Any]) -> str | None:
    d = data["results"].get("D") or {}
    creates = [c for c in d.get("creates", []) if c.get("ok")]
    if not creates:
        return None
    xs = [c["index"] + 1 for c in creates]
    ax.plot(xs, [c["memory_mib"] for c in creates], marker="o", color="tab:purple")
    ax.set_xlabel("idle vclusters")
    ax.set_xticks(xs)
    ax.set_ylabel("host node MiB", color="tab:purple")
    twin = ax.twinx()
    twin.plot(xs, [c["seconds"] for c in creates], marker="x", color="tab:orange")
    twin.set_ylabel("create s", color="tab:orange")
    return f"D: {d['count']} Ready, {_f(d['mib_per_vcluster'])} MiB each"


def _panel_setups(ax: Axes, data: dict[str, Any]) -> str | None:
    res = data["results"]
    waits = {n: res[n]["setup"]["samples"] for n in ("S", "Sk") if n in res}
    waits = {n: w for n, w in waits.items() if w}
    if not waits:
        return None
    ax.boxplot(list(waits.values()), tick_labels=list(waits))
    ax.set_yscale("log")
    return "fixture setup wait per test (s)"


PANELS: list[tuple[str, Callable[[Axes, dict[str, Any]], str | None]]] = [
    ("to a ready cluster", _panel_times),
    ("suite wall time", _panel_walls),
    ("ratios", _panel_ratios),
    ("C phases", _panel_phases),
    ("density", _panel_density),
    ("setup waits", _panel_setups),
]


def chart(data: dict[str, Any], path: Path) -> bool:
    """Draw the figures as a PNG; False (with a message) when matplotlib is not installed."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional: only the chart needs it

        mpl.use("Agg")  # no display: draw to a file
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print(f"matplotlib is not installed, so no {path}: pip install -e '.[bench]'")
        return False
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    fig.suptitle(f"pytest-vcluster speed ({data['machine']['cpus']} CPUs, {data['started']})")
    for ax, (name, draw) in zip(axes.flat, PANELS, strict=True):
        title = draw(ax, data)
        if title is None:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
        ax.set_title(title or name)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# -- main --------------------------------------------------------------------------------------


def _phase_list(text: str) -> list[str]:
    by_lower = {p.lower(): p for p in PHASES}
    chosen = [by_lower.get(p.strip().lower(), p.strip()) for p in text.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in PHASES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {','.join(PHASES)}")
    return [p for p in PHASES if p in chosen]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        type=_phase_list,
        default=list(PHASES),
        help=f"measurements to take, comma-separated (default: all of {','.join(PHASES)})",
    )
    stackkit.add_stack_option(parser)
    parser.add_argument(
        "--versions",
        default="",
        help="Kubernetes minors for C, comma-separated (default: all in the "
        "stack's version_map); R, S and D use the newest",
    )
    parser.add_argument("--tests", type=_positive_int, default=24, help="tests in S and Sk")
    parser.add_argument(
        "--work-seconds",
        type=_positive_float,
        default=10.0,
        help="seconds of work per test in S and Sk",
    )
    parser.add_argument("--workers", type=_positive_int, default=2, help="-n for S and Sk")
    parser.add_argument("--repeat-k", type=_positive_int, default=3, help="kind creates for K")
    parser.add_argument(
        "--repeat-c", type=_positive_int, default=5, help="vcluster creates per version for C"
    )
    parser.add_argument("--repeat-r", type=_positive_int, default=5, help="resumes for R")
    parser.add_argument(
        "--density-max", type=_positive_int, default=16, help="most idle vclusters D creates"
    )
    parser.add_argument(
        "--density-settle",
        type=float,
        default=30.0,
        help="seconds D idles after the last create before reading memory",
    )
    parser.add_argument(
        "--run-timeout",
        type=_positive_float,
        default=3600.0,
        help="seconds allowed for each inner pytest run",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results",
        help="where speed.json and speed.png go (default: %(default)s)",
    )
    parser.add_argument(
        "--keep-going", action="store_true", help="after a failed measurement, take the others"
    )
    options = parser.parse_args(argv)
    options.stack = stackkit.stack_path(options.stack)
    return options


def _git(*args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    with contextlib.suppress(BenchError, OSError):
        done = run([git, "-C", str(REPO), *args], timeout=30)
        if done.returncode == 0:
            return done.output.strip()
    return None


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM becomes an exception so that the finally blocks delete what this run created.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        stack = Stack.load(options.stack)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    versions = [v.strip() for v in options.versions.split(",") if v.strip()] or list(
        stack.version_map
    )
    unknown = [v for v in versions if v not in stack.version_map]
    if unknown:
        print(f"error: --versions {unknown} not in the stack's {list(stack.version_map)}")
        return 2
    work = Path(tempfile.mkdtemp(prefix="pytest-vcluster-speed-"))
    bench = Bench(
        options,
        stack,
        work,
        Kind(stack.tool("kind"), stack.node_image, stack.env(), work),
        versions,
    )
    started = dt.datetime.now(dt.UTC)
    errors: dict[str, str] = {}
    needs_host = any(p in options.only for p in ("C0", "C", "R", "S", "D"))
    steps: list[tuple[str, Callable[[], None]]] = [
        ("K", bench.measure_k),
        ("Sk", bench.measure_sk),
        ("C0", bench.measure_c0),
        ("C", bench.measure_c),
        ("R", bench.measure_r),
        ("S", bench.measure_s),
        ("D", bench.measure_d),
    ]
    print(f"pytest-vcluster speed: {','.join(options.only)}; inner logs in {work}", flush=True)
    host_created = False
    try:
        for name, measure in steps:
            if name not in options.only:
                continue
            if name in ("C0", "C", "R", "S", "D") and needs_host and not host_created:
                # K and Sk run before the host exists, so it costs them nothing.
                print(f"creating the shared host {HOST}", flush=True)
                bench.kind.delete(HOST)  # a leftover of an interrupted run
                host_created = True
                bench.results["host_create_seconds"] = bench.kind.create(HOST)
            print(f"{name}:", flush=True)
            try:
                measure()
            except BenchError as exc:
                errors[name] = str(exc)
                print(f"  {name} failed: {exc}", file=sys.stderr, flush=True)
                if not options.keep_going:
                    break
    except BenchError as exc:  # the host could not be created
        errors["host"] = str(exc)
        print(f"error: {exc}", file=sys.stderr)
    finally:
        if host_created:
            print(f"deleting the shared host {HOST}", flush=True)
            bench.kind.delete(HOST)

    data = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
            ),
        },
        "plugin": {
            "version": importlib.metadata.version("pytest-vcluster"),
            "commit": _git("rev-parse", "HEAD"),
            "changed": bool(_git("status", "--porcelain", "--", "pytest_vcluster")),
            "features": bench.suite_.features if bench.suite_ else None,
        },
        "stack": {
            k: stack.raw.get(k)
            for k in (
                "kind_version",
                "vcluster_version",
                "helm_version",
                "host_kubernetes_version",
                "node_image",
                "version_map",
            )
        },
        "options": {k: _portable(v) for k, v in vars(options).items()},
        "results": bench.results,
        "verdicts": verdicts(bench.results, bench.primary),
        "errors": errors,
        "targets": {k: f"{op} {v:g}" for k, (op, v) in TARGETS.items()},
    }
    print()
    print(table(data))
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "speed.json").write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {options.out / 'speed.json'}")
    if chart(data, options.out / "speed.png"):
        print(f"wrote {options.out / 'speed.png'}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
