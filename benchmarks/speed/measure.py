"""The measurements K, C0, C, Cs, R, S, S0, Sk, Sn and D of one benchmark run, and their figures."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .commands import run
from .kind import Kind
from .memory import MemorySampler, parse_mib
from .records import InnerRun, phase_breakdown, ready_seconds, reset_figures, setup_sources
from .report import num, sec
from .stack import HOST, BenchError, Stack, version_key
from .stats import first_with_samples, listed, median, pick, spread
from .suite import Suite

#: Seconds between the two warm-pool runs of Sw.
WARM_GAP = 17.0
#: Clusters one worker holds at once in S: its current test's and the lookahead's two.
WARM_PER_WORKER = 3


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
    def _creates(
        self,
        tag: str,
        version: str,
        extra: Sequence[str] = (),
        *,
        first_left_out: bool = False,
        **suite_settings: object,
    ) -> dict[str, Any]:
        """Fresh vclusters made one at a time (lookahead off), and their figures; with
        ``first_left_out``, from the second create on."""
        inner = self.suite.run(
            tag,
            "test_create",
            self.settings(repeat=self.options.repeat_c, **suite_settings),
            version=version,
            lookahead=0,
            extra=extra,
        )
        skipped = 1 if first_left_out else 0
        created = inner.clusters("created")[skipped:]
        wall = inner.seconds("create")[skipped:]
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

    def measure_l(self) -> None:
        """The fast-start levers of the last sessions, each switched off alone, next to C with
        all of them (same version, same number of creates, measured right after each other)."""
        version = self.primary
        values = self.work / "lever-service-account-controllers.yaml"
        # A list replaces the plugin's: the controller-manager keeps only leader election off.
        values.write_text(
            "controlPlane:\n  distro:\n    k8s:\n      controllerManager:\n"
            '        extraArgs: ["--leader-elect=false"]\n'
        )
        variants: dict[str, tuple[dict[str, Any], list[str]]] = {
            "all levers": ({}, []),
            "without admin controllers": ({}, [f"--vcluster-values-files={values}"]),
            "without premade certificates": ({"premade_certs": False}, []),
        }
        # The first create of a run may come before the first premade key set.
        figures = {
            label: self._creates(
                "L-" + label.replace(" ", "-"), version, extra, first_left_out=True, **settings
            )
            for label, (settings, extra) in variants.items()
        }
        base = figures["all levers"]["median"]
        for figure in figures.values():
            if base is not None and figure["median"] is not None:
                figure["saves"] = round(figure["median"] - base, 3)
        self.results["L"] = {"version": version, "variants": figures}

    def measure_cs(self) -> None:
        """C with ``--vcluster-seeded-store``: creates that start from the seed the run's first
        create leaves (that first one is left out: it makes the seed)."""
        if not self.suite.features["seeded"]:
            raise BenchError("this plugin version has no --vcluster-seeded-store")
        seeded = [
            "--vcluster-seeded-store=true",
            # Seeds of its own: never one an earlier version of the plugin left.
            f"--vcluster-state-dir={self.work / 'seeded-state'}",
        ]
        figures = self._creates(f"Cs-{self.primary}", self.primary, seeded, first_left_out=True)
        self.results["Cs"] = {"version": self.primary, **figures}

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

    # S, S0, Sk and Sn ---------------------------------------------------------------------
    def _work_settings(self, backend: str, **overrides: object) -> dict[str, Any]:
        """Suite settings of test_work: the same tests and work for every backend."""
        return self.settings(
            backend=backend,
            tests=self.options.tests,
            work_seconds=self.options.work_seconds,
            **overrides,
        )

    def measure_s(self) -> None:
        self._vcluster_work("S")

    def measure_s0(self) -> None:
        """S with every cluster deleted after its test, none reset for another."""
        if not self.suite.features["recycle"]:
            raise BenchError("this plugin version has no --vcluster-recycle: S0 would be S")
        self._vcluster_work("S0", recycle=False, extra=["--vcluster-recycle=false"])

    def measure_sw(self) -> None:
        """S run twice with a warm pool as large as what a run holds at once (the current test
        and the lookahead's two, per worker): the first run parks its clusters (its figures
        are kept as Sw1), the second, measured, adopts them. The warm clusters are deleted
        after, so that they load nothing measured later."""
        if not self.suite.features["warm"]:
            raise BenchError("this plugin version has no --vcluster-warm-pool")
        extra = [f"--vcluster-warm-pool={WARM_PER_WORKER * self.options.workers}"]
        try:
            self._vcluster_work("Sw1", extra=extra)
            # As a person re-running the tests: past the 16.5 s a warm cluster waits after
            # parking for the token caches to forget its last test.
            time.sleep(WARM_GAP)
            self._vcluster_work("Sw", extra=extra)
        finally:
            self.remove_warm()

    def remove_warm(self) -> None:
        """Delete the warm clusters on the shared host and wait until they are gone."""
        done = run(
            [
                self.stack.tool("kubectl"), "--kubeconfig", str(self.kind.kubeconfig(HOST)),
                "delete", "namespace", "-l", "pytest-vcluster/state=warm", "--timeout=180s",
            ],
            timeout=240,
            env=self.stack.env(),
        )  # fmt: skip
        if done.returncode != 0:
            print(f"warning: deleting the warm clusters failed:\n{done.tail()}", file=sys.stderr)

    def _vcluster_work(self, key: str, *, recycle: bool = True, extra: Sequence[str] = ()) -> None:
        sampler = MemorySampler(f"{HOST}-control-plane")
        sampler.start()
        try:
            inner = self.suite.run(
                key,
                "test_work",
                self._work_settings("vcluster"),
                version=self.primary,
                workers=self.options.workers,
                # S names nothing: it runs with the plugin's defaults, whatever they become.
                extra=extra,
            )
        finally:
            sampler.stop()
        setups = inner.listed("setups")
        waits = [float(s["wait_seconds"]) for s in setups if "wait_seconds" in s]
        fixture = inner.seconds("fixture_setup", fixture="vcluster")
        values, source = first_with_samples(("records", waits), ("fixture", fixture))
        sources = setup_sources(setups)
        teardowns = [
            float(t["seconds"])
            for t in inner.listed("teardowns")
            if isinstance(t.get("seconds"), int | float)
        ]
        records = inner.records or {}
        self.results[key] = {
            **self._suite_result(inner, "vcluster"),
            "version": self.primary,
            "recycle": recycle,
            "setup": spread(values, source),
            "setup_fixture": spread(fixture, "fixture"),
            "teardown": spread(teardowns, "records"),
            "setup_sources": sources,
            # None, not 0, when the records say nothing: "not measured" is not "none recycled".
            "recycled_setups": sources.get("recycled", 0) if setups else None,
            "resets": reset_figures(inner.listed("resets")) if "resets" in records else None,
            "counts": records.get("counts"),
            "prepared_clusters": sum(1 for c in inner.clusters("created") if c.get("prepared")),
            "host_memory_mib": sampler.summary(),
        }
        self._print_suite(key)

    def _run_baseline(self, key: str, backend: str) -> InnerRun:
        """The work suite with the plugin off on kind clusters of its own, reaped after."""
        prefix = f"speed-{key.lower()}-{self.token}"
        try:
            return self.suite.run(
                key,
                "test_work",
                self._work_settings(backend, kind_prefix=prefix),
                vcluster=False,
                workers=self.options.workers,
            )
        finally:
            self.reap_baseline(prefix)

    def measure_sk(self) -> None:
        inner = self._run_baseline("Sk", "kind")
        self.results["Sk"] = {
            **self._suite_result(inner, "kind"),
            "setup": spread(inner.seconds("fixture_setup", fixture="kind_cluster"), "fixture"),
        }
        self._print_suite("Sk")

    def measure_sn(self) -> None:
        """The same tests, a fresh namespace each in one kind cluster per xdist worker."""
        inner = self._run_baseline("Sn", "namespace")
        # A worker's first test waits for its kind cluster too; the others only for a namespace.
        waits = inner.setup_waits({"kind_worker_cluster", "kind_namespace"})
        self.results["Sn"] = {
            **self._suite_result(inner, "namespace"),
            "setup": spread(waits, "fixture"),
            "worker_clusters": spread(
                inner.seconds("fixture_setup", fixture="kind_worker_cluster"), "fixture"
            ),
            "namespace_setup": spread(
                inner.seconds("fixture_setup", fixture="kind_namespace"), "fixture"
            ),
        }
        self._print_suite("Sn")

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
        line = (
            f"  {key}: wall {sec(r['wall'])}, setup p50 {sec(r['setup']['p50'])} "
            f"p95 {sec(r['setup']['p95'])} ({r['setup']['source']}), "
            f"--durations setup p50 {sec(r['setup_durations']['p50'])}"
        )
        if (r.get("resets") or {}).get("n"):
            line += f", reset p50 {sec(r['resets']['p50'])} p95 {sec(r['resets']['p95'])}"
        print(line)

    def reap_baseline(self, prefix: str) -> None:
        """Delete kind clusters a baseline of this run left (a crashed or stopped test)."""
        for name in self.kind.clusters():
            if name.startswith(f"{prefix}-"):
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
