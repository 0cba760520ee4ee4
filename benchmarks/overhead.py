"""What the installed plugin costs a test suite that does not use it.

pytest-vcluster registers itself through the ``pytest11`` entry point, so every pytest run in an
environment where it is installed loads it; ``-p no:vcluster`` keeps it out. This script measures
that cost and prints it next to its targets (it judges, it asserts nothing):

* import: ``import pytest_vcluster.plugin`` in a fresh interpreter that has already imported
  pytest (which every pytest run does anyway), median of ``--import-runs`` processes; which heavy
  modules the import pulled in; and, from one ``python -X importtime`` run, where its time went;
* suites of 50 and of 5000 plain tests (``def test_i(): assert True``), each run with the plugin
  and with ``-p no:vcluster``, alternated (ABAB) ``--pairs-small`` and ``--pairs-large`` times
  after one unmeasured run of each: median wall seconds, their ratio and peak RSS of each.

Every child runs ``sys.executable`` in a temporary directory, with ``-p no:cacheprovider -q``
and without ``PYTEST_ADDOPTS``, ``PYTEST_PLUGINS``, ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` or any
``PYTEST_VCLUSTER_*`` variable, so that nothing but the plugin differs between the two arms.

    python benchmarks/overhead.py                                  # a few minutes
    python benchmarks/overhead.py --json benchmarks/results/overhead.json
    python benchmarks/overhead.py --plugin-source /tmp/head        # another tree's plugin
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "pytest_vcluster.plugin"
SMALL, LARGE = 50, 5000
#: Tests per generated module: a real suite spreads its tests over files, and the plugin's
#: per-file hooks (collection) should be paid as often as they would be there.
TESTS_PER_MODULE = 50
#: Each target's upper limit, and how many decimals its figure is shown with.
TARGETS = {f"{SMALL} tests wall": (1.15, 3), f"{LARGE} tests wall": (1.05, 3), "import ms": (60, 0)}
#: These would change what an inner run loads, or load nothing at all.
DROPPED_ENV = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
DROPPED_ENV_PREFIXES = ("PYTEST_VCLUSTER_",)
#: Imports that a plugin nobody uses in this run should not need.
HEAVY_PACKAGES = ("kubernetes", "docker", "urllib3", "yaml", "filelock")
HEAVY_SUBPACKAGES = ("pytest_vcluster.cluster", "pytest_vcluster.host")

#: Runs in a fresh interpreter: times the plugin's import after pytest's, and says what it loaded.
IMPORT_PROBE = f"""
import json, sys, time
import pytest
before = set(sys.modules)
started = time.perf_counter()
import {PLUGIN} as plugin
seconds = time.perf_counter() - started
print(json.dumps({{"seconds": seconds, "file": plugin.__file__,
                   "loaded": sorted(set(sys.modules) - before)}}))
"""
IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( +)(\S+)")


class OverheadError(RuntimeError):
    """A figure could not be taken; the message says which and why."""


def child_env(plugin_source: Path | None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in DROPPED_ENV and not k.startswith(DROPPED_ENV_PREFIXES)
    }
    if plugin_source is not None:
        # Ahead of the installed (editable) package: its finder comes after sys.path's.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(plugin_source), env.get("PYTHONPATH")) if p
        )
    return env


# -- the import --------------------------------------------------------------------------------


def measure_import(runs: int, env: dict[str, str], cwd: Path, timeout: float) -> dict[str, Any]:
    """The plugin's import time in ``runs`` fresh processes after one to warm the file cache."""
    probes = []
    for _ in range(runs + 1):
        done = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE],
            capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise OverheadError(f"import {PLUGIN} failed:\n{done.stderr.strip()[-3000:]}")
        probes.append(json.loads(done.stdout.splitlines()[-1]))
    measured = probes[1:]
    loaded: list[str] = measured[-1]["loaded"]
    heavy = {
        name: sum(1 for m in loaded if m == name or m.startswith(f"{name}."))
        for name in HEAVY_PACKAGES
    }
    return {
        "runs": runs,
        "samples_ms": [p["seconds"] * 1000 for p in measured],
        "median_ms": statistics.median(p["seconds"] * 1000 for p in measured),
        "plugin_file": measured[-1]["file"],
        "modules_loaded": len(loaded),
        "heavy_modules": {k: v for k, v in heavy.items() if v},
        "plugin_subpackages": [m for m in loaded if m.startswith(HEAVY_SUBPACKAGES)],
        "importtime_by_package_ms": importtime_by_package(env, cwd, timeout),
    }


def importtime_by_package(env: dict[str, str], cwd: Path, timeout: float) -> dict[str, float]:
    """Self time of the plugin's import per top-level package, from ``-X importtime``.

    Python reports a module after the modules it imported, so every line after pytest's own
    top-level line belongs to the plugin's import.
    """
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import pytest; import {PLUGIN}"],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise OverheadError(f"-X importtime failed:\n{done.stderr.strip()[-3000:]}")
    return parse_importtime(done.stderr)


def parse_importtime(text: str, after: str = "pytest") -> dict[str, float]:
    """Milliseconds of self time per top-level package of the imports after ``after``'s."""
    per_package: dict[str, float] = {}
    started = False
    for line in text.splitlines():
        match = IMPORTTIME_LINE.match(line)
        if not match:
            continue
        self_us, depth, name = int(match.group(1)), len(match.group(3)), match.group(4)
        if not started:
            started = depth == 1 and name == after
            continue
        package = name.split(".")[0]
        per_package[package] = per_package.get(package, 0.0) + self_us / 1000
    return dict(sorted(per_package.items(), key=lambda kv: -kv[1]))


# -- the suites --------------------------------------------------------------------------------


@dataclass
class Timed:
    """One pytest run: wall seconds and the peak resident memory of its process."""

    arm: str
    seconds: float
    peak_rss_mib: float


def write_suite(directory: Path, tests: int) -> None:
    directory.mkdir(parents=True)
    # An ini file of its own pins rootdir here: no settings of an enclosing project apply.
    (directory / "pytest.ini").write_text("[pytest]\n")
    for first in range(0, tests, TESTS_PER_MODULE):
        numbers = range(first, min(first + TESTS_PER_MODULE, tests))
        body = "".join(f"def test_{i}():\n    assert True\n\n\n" for i in numbers)
        (directory / f"test_plain_{first // TESTS_PER_MODULE:03d}.py").write_text(body)


def run_pytest(directory: Path, arm: str, tests: int, env: dict[str, str], timeout: float) -> Timed:
    """Run the suite in ``directory`` once, with (``plugin``) or without the plugin."""
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    if arm == "no:vcluster":
        args += ["-p", "no:vcluster"]
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, cwd=directory
        )
        # wait4 gives this child's own peak RSS; RUSAGE_CHILDREN only keeps the largest child
        # waited for so far, which hides a smaller run after a larger one.
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        output = out.read()
    if seconds >= timeout:
        raise OverheadError(f"pytest ({arm}, {tests} tests) ran past its {timeout:g}s timeout")
    if proc.returncode != 0 or f"{tests} passed" not in output:
        tail = "\n".join(output.splitlines()[-30:])
        raise OverheadError(f"pytest ({arm}, {tests} tests) exited {proc.returncode}:\n{tail}")
    return Timed(arm, seconds, usage.ru_maxrss / 1024)  # ru_maxrss is KiB on Linux


def plugin_listed(directory: Path, arm: str, env: dict[str, str], timeout: float) -> bool:
    """Whether pytest names pytest-vcluster among the plugins it loaded in this arm."""
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--version", "--version"]
    if arm == "no:vcluster":
        args += ["-p", "no:vcluster"]
    done = subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=directory, timeout=timeout, check=False
    )
    return "pytest-vcluster" in done.stdout + done.stderr


def measure_suite(
    work: Path, tests: int, pairs: int, env: dict[str, str], timeout: float
) -> dict[str, Any]:
    directory = work / f"suite-{tests}"
    write_suite(directory, tests)
    loaded = {arm: plugin_listed(directory, arm, env, timeout) for arm in ("plugin", "no:vcluster")}
    if not loaded["plugin"] or loaded["no:vcluster"]:
        raise OverheadError(f"the two arms do not differ by the plugin (loaded: {loaded})")
    # The first run of each arm writes the test modules' bytecode; it is not measured.
    for arm in ("plugin", "no:vcluster"):
        run_pytest(directory, arm, tests, env, timeout)
    runs: list[Timed] = []
    for i in range(1, pairs + 1):
        for arm in ("plugin", "no:vcluster"):
            runs.append(run_pytest(directory, arm, tests, env, timeout))
        a, b = runs[-2], runs[-1]
        print(f"  {tests} tests, pair {i}/{pairs}: {a.seconds:.2f}s / {b.seconds:.2f}s", flush=True)
    arms = {
        arm: {
            "median_seconds": statistics.median(r.seconds for r in runs if r.arm == arm),
            "median_peak_rss_mib": statistics.median(r.peak_rss_mib for r in runs if r.arm == arm),
        }
        for arm in ("plugin", "no:vcluster")
    }
    pair_ratios = [a.seconds / b.seconds for a, b in zip(runs[::2], runs[1::2], strict=True)]
    return {
        "tests": tests,
        "modules": -(-tests // TESTS_PER_MODULE),
        "pairs": pairs,
        **arms,
        "ratio": arms["plugin"]["median_seconds"] / arms["no:vcluster"]["median_seconds"],
        "pair_ratios": pair_ratios,
        "rss_delta_mib": arms["plugin"]["median_peak_rss_mib"]
        - arms["no:vcluster"]["median_peak_rss_mib"],
        "runs": [asdict(r) for r in runs],
    }


# -- the report --------------------------------------------------------------------------------


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    found = {
        f"{SMALL} tests wall": (results.get("suites", {}).get(str(SMALL)) or {}).get("ratio"),
        f"{LARGE} tests wall": (results.get("suites", {}).get(str(LARGE)) or {}).get("ratio"),
        "import ms": (results.get("import") or {}).get("median_ms"),
    }
    return [
        {
            "name": name,
            "value": value,
            "target": f"<= {TARGETS[name][0]:g}",
            "met": None if value is None else value <= TARGETS[name][0],
        }
        for name, value in found.items()
    ]


def report(data: dict[str, Any]) -> str:
    lines = []
    imp = data["results"].get("import")
    if imp:
        lines += [
            f"import {PLUGIN} (after pytest), median of {imp['runs']}: "
            f"{imp['median_ms']:.0f} ms  (from {imp['plugin_file']})",
            f"  modules it loaded: {imp['modules_loaded']}; heavy: "
            + (", ".join(f"{k} ({v})" for k, v in imp["heavy_modules"].items()) or "none"),
            "  of pytest_vcluster's: "
            + ", ".join(
                f"{sub}.* ({sum(1 for m in imp['plugin_subpackages'] if m.startswith(sub))})"
                for sub in HEAVY_SUBPACKAGES
            ),
            "  -X importtime self ms by package: "
            + ", ".join(
                f"{k} {v:.0f}" for k, v in list(imp["importtime_by_package_ms"].items())[:8]
            ),
        ]
    for suite in data["results"].get("suites", {}).values():
        a, b = suite["plugin"], suite["no:vcluster"]
        lines += [
            f"{suite['tests']} plain tests in {suite['modules']} modules, {suite['pairs']} pairs:",
            f"  wall median: plugin {a['median_seconds']:.2f}s, -p no:vcluster "
            f"{b['median_seconds']:.2f}s, ratio {suite['ratio']:.3f} (pairs "
            f"{min(suite['pair_ratios']):.3f}-{max(suite['pair_ratios']):.3f})",
            f"  peak RSS median: plugin {a['median_peak_rss_mib']:.0f} MiB, -p no:vcluster "
            f"{b['median_peak_rss_mib']:.0f} MiB (+{suite['rss_delta_mib']:.0f} MiB)",
        ]
    lines.append("")
    lines.append(f"  {'figure':<20} {'value':>8}  {'target':<8} verdict")
    for v in data["verdicts"]:
        value = "-" if v["value"] is None else f"{v['value']:.{TARGETS[v['name']][1]}f}"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[v["met"]]
        lines.append(f"  {v['name']:<20} {value:>8}  {v['target']:<8} {verdict}")
    for name, message in data["errors"].items():
        lines.append(f"  error in {name}: {message.splitlines()[0]}")
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--import-runs", type=_count, default=7, help="fresh imports timed")
    parser.add_argument(
        "--pairs-small", type=_count, default=7, help=f"plugin/no-plugin pairs of {SMALL} tests"
    )
    parser.add_argument(
        "--pairs-large", type=_count, default=3, help=f"plugin/no-plugin pairs of {LARGE} tests"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed for each child process"
    )
    parser.add_argument(
        "--plugin-source",
        type=Path,
        default=None,
        help="a directory holding the pytest_vcluster package to measure instead of the "
        "installed one (e.g. `git archive HEAD pytest_vcluster | tar -x -C DIR`)",
    )
    parser.add_argument(
        "--label", default="", help="what was measured, kept in the JSON (e.g. a commit)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


def _git(*args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run(
            [git, "-C", str(REPO), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    source = options.plugin_source.resolve() if options.plugin_source else None
    env = child_env(source)
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {"suites": {}}
    errors: dict[str, str] = {}
    print(f"pytest-vcluster overhead on {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="pytest-vcluster-overhead-") as tmp:
        work = Path(tmp)
        try:
            results["import"] = measure_import(options.import_runs, env, work, options.timeout)
        except OverheadError as exc:
            errors["import"] = str(exc)
        for tests, pairs in ((SMALL, options.pairs_small), (LARGE, options.pairs_large)):
            try:
                results["suites"][str(tests)] = measure_suite(
                    work, tests, pairs, env, options.timeout
                )
            except OverheadError as exc:
                errors[f"{tests} tests"] = str(exc)
    data = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_at_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "pytest": importlib.metadata.version("pytest"),
        },
        "plugin": {
            "version": importlib.metadata.version("pytest-vcluster"),
            "label": options.label,
            "source": str(source) if source else "installed",
            # The repository's state says what was measured only when the installed tree was.
            "commit": None if source else _git("rev-parse", "HEAD"),
            "changed": None if source else bool(_git("status", "--porcelain", "pytest_vcluster")),
        },
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "results": results,
        "verdicts": verdicts(results),
        "errors": errors,
    }
    print()
    print(report(data))
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"\nwrote {options.json}")
    return 2 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
