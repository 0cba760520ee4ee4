"""``python -m benchmarks.speed``: the options, the order of the measurements, and speed.json."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import stackkit
from . import __doc__ as overview
from .chart import chart
from .commands import run
from .kind import Kind
from .measure import Bench
from .report import TARGETS, table, verdicts
from .stack import BENCHMARKS, HOST, REPO, BenchError, Stack

PHASES = ("K", "C0", "C", "Cs", "L", "R", "S", "S0", "Sw", "Sk", "Sn", "D")
NEEDS_HOST = ("C0", "C", "Cs", "L", "R", "S", "S0", "Sw", "D")


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
        prog="python -m benchmarks.speed",  # else argparse names it __main__.py
        description=overview,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    parser.add_argument("--tests", type=_positive_int, default=24, help="tests in S, S0, Sk and Sn")
    parser.add_argument(
        "--work-seconds",
        type=_positive_float,
        default=10.0,
        help="seconds of work per test in S, S0, Sk and Sn",
    )
    parser.add_argument("--workers", type=_positive_int, default=2, help="-n for S, S0, Sk and Sn")
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
        default=BENCHMARKS / "results",
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


def _portable(value: object) -> object:
    """Paths as the results should show them: relative to here, or under ``~``, never a
    machine's absolute path."""
    if not isinstance(value, Path):
        return value
    if value.is_relative_to(Path.cwd()):
        return str(value.relative_to(Path.cwd()))
    return str(value).replace(str(Path.home()), "~", 1)


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
    needs_host = any(p in options.only for p in NEEDS_HOST)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("K", bench.measure_k),
        ("Sk", bench.measure_sk),
        ("Sn", bench.measure_sn),
        ("C0", bench.measure_c0),
        ("C", bench.measure_c),
        ("Cs", bench.measure_cs),
        ("L", bench.measure_l),
        ("R", bench.measure_r),
        ("S", bench.measure_s),
        ("S0", bench.measure_s0),
        ("Sw", bench.measure_sw),
        ("D", bench.measure_d),
    ]
    print(f"pytest-vcluster speed: {','.join(options.only)}; inner logs in {work}", flush=True)
    host_created = False
    try:
        for name, measure in steps:
            if name not in options.only:
                continue
            if name in NEEDS_HOST and needs_host and not host_created:
                # K and the baselines run before the host exists, so it costs them nothing.
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
