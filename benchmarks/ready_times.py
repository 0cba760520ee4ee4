"""Measure vcluster create-to-ready times and host memory on the offline stack.

Runs a throwaway pytest suite (N tests per version, each with a fresh ``vcluster``) against a
kind host the run creates, samples the host node's memory with ``docker stats`` while it runs,
and prints the figures. Speed and memory targets are checked here, not by timed asserts.

    python benchmarks/ready_times.py --count 3 --versions 1.33,1.34 [-n 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DEFAULT_STACK = Path.home() / ".cache" / "pytest-vcluster-stack" / "stack.json"
HOST = "pvc-bench"

SUITE = """
import pytest

@pytest.mark.parametrize("i", range({count}))
def test_ready(vcluster, i):
    assert vcluster.core_v1().list_namespace().items
"""


def parse_memory(text: str) -> float:
    """MiB from docker's ``1.234GiB`` / ``512.3MiB`` notation."""
    match = re.match(r"([\d.]+)\s*([KMG]i?B)", text)
    if not match:
        return 0.0
    value, unit = float(match.group(1)), match.group(2)
    return (
        value * {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024, "KB": 1 / 1024, "MB": 1, "GB": 1024}[unit]
    )


class MemorySampler(threading.Thread):
    """Polls ``docker stats`` for the host node until stopped; keeps every sample in MiB."""

    def __init__(self, container: str, interval: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.container = container
        self.interval = interval
        self.samples: list[float] = []
        self.docker = shutil.which("docker") or "docker"
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            proc = subprocess.run(
                [self.docker, "stats", "--no-stream", "--format", "{{.MemUsage}}", self.container],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if proc.returncode == 0 and proc.stdout.strip():
                self.samples.append(parse_memory(proc.stdout.split("/")[0].strip()))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--stack", type=Path, default=Path(os.environ.get("PYTEST_VCLUSTER_STACK", DEFAULT_STACK))
    )
    parser.add_argument("--count", type=int, default=3, help="tests (fresh vclusters) per version")
    parser.add_argument(
        "--versions", default="", help="comma-separated minors (default: all in the stack)"
    )
    parser.add_argument("-n", dest="workers", default="", help="pytest-xdist workers")
    args = parser.parse_args()

    stack = json.loads(args.stack.read_text())
    versions = args.versions or ",".join(stack["version_map"])
    env = dict(os.environ)
    env["PATH"] = stack["path_dir"] + os.pathsep + env.get("PATH", "")
    kind = shutil.which("kind", path=stack["path_dir"]) or "kind"
    subprocess.run(
        [kind, "delete", "cluster", "--name", HOST],
        env=env,
        capture_output=True,
        timeout=180,
        check=False,
    )

    with tempfile.TemporaryDirectory(prefix="pytest-vcluster-bench-") as tmp:
        Path(tmp, "test_bench.py").write_text(SUITE.format(count=args.count))
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            tmp,
            f"--vcluster-host-name={HOST}",
            f"--vcluster-node-image={stack['node_image']}",
            f"--vcluster-local-chart-dir={stack['chart_dir']}",
            f"--vcluster-values={stack['values_file']}",
            "--vcluster-version-map="
            + ",".join(f"{k}={v}" for k, v in stack["version_map"].items()),
            f"--vcluster-versions={versions}",
        ]
        if args.workers:
            command += ["-n", args.workers]
        sampler = MemorySampler(f"{HOST}-control-plane")
        sampler.start()
        started = time.monotonic()
        proc = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=3600, check=False
        )
        wall = time.monotonic() - started
        sampler.stop()

    summary = [
        line
        for line in proc.stdout.splitlines()
        if line.startswith(("vclusters:", "create/resume"))
    ]
    print(
        f"suite: {args.count} fresh vcluster(s) x versions {versions}, workers {args.workers or 1}"
    )
    print(
        f"pytest exit code {proc.returncode}, wall time {wall:.1f}s"
        " (includes kind host create and delete)"
    )
    for line in summary:
        print(line)
    if sampler.samples:
        first, median = sampler.samples[0], statistics.median(sampler.samples)
        print(
            f"host node memory: first {first:.0f} MiB, median {median:.0f} MiB, "
            f"peak {max(sampler.samples):.0f} MiB over {len(sampler.samples)} samples"
        )
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
