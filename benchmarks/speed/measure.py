"""The measurements K, C0, C, R, S, Sk and D of one benchmark run, and what each found."""

from __future__ import annotations

import argparse
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kind import Kind
from .memory import MemorySampler, parse_mib
from .records import InnerRun, phase_breakdown, ready_seconds
from .report import num, sec
from .stack import HOST, BenchError, Stack, version_key
from .stats import first_with_samples, listed, median, pick, spread
from .suite import Suite


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
            ("records", records), ("wall", wall), ("summary", listed(inner.summary_median()))
        )
        print(f"  {tag}: median {sec(value)} ({source}), wall {sec(median(wall))}")
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
        print(f"  R {self.primary}: median {sec(value)} ({source}), wall {sec(median(wall))}")

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
            "setup": spread(values, source),
            "setup_fixture": spread(fixture, "fixture"),
            "teardown": spread(
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
            "setup": spread(inner.seconds("fixture_setup", fixture="kind_cluster"), "fixture"),
        }
        self._print_suite("Sk")

    def _suite_result(self, inner: InnerRun, backend: str) -> dict[str, Any]:
        work = inner.seconds("work", backend=backend)
        return {
            "wall": inner.wall,
            "tests": self.options.tests,
            "workers": self.options.workers,
            "work_seconds": self.options.work_seconds,
            "test_body": spread(work, "timings"),
            "setup_durations": spread(inner.durations("setup"), "--durations"),
            "teardown_durations": spread(inner.durations("teardown"), "--durations"),
            "summary": inner.summary(),
        }

    def _print_suite(self, key: str) -> None:
        r = self.results[key]
        print(
            f"  {key}: wall {sec(r['wall'])}, setup p50 {sec(r['setup']['p50'])} "
            f"p95 {sec(r['setup']['p95'])} ({r['setup']['source']}), "
            f"--durations setup p50 {sec(r['setup_durations']['p50'])}"
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
        print(f"  D: {ready} Ready of {created} created ({last.get('stop')}), {num(per)} MiB each")
