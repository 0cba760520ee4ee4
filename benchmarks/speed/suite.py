"""Inner pytest runs of ``benchmarks/suite``, each in a temporary copy, one measurement each."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .commands import run
from .records import InnerRun, read_records, read_timings
from .stack import SUITE_DIR, BenchError, Stack


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
            "recycle": "--vcluster-recycle" in done.output,
            "warm": "--vcluster-warm-pool" in done.output,
            "seeded": "--vcluster-seeded-store" in done.output,
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
        else:
            # A baseline measures kind alone: the plugin's hooks would still run in every test.
            args += ["-p", "no:vcluster"]
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
            timings=read_timings(timings),
            records=read_records(records),
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
