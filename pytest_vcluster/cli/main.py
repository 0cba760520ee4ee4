"""``pytest-vcluster``: check a machine, and see and clean what runs left on a host.

``pytest-vcluster doctor`` checks what a first run needs (Docker, the tools and their versions,
inotify limits, the host) and says how to fix each problem. ``pytest-vcluster ls`` lists the
vclusters the plugin made on the host (name, namespace, run, worker, test, age, state, whether
the run still lives); ``pytest-vcluster reap`` removes the ones ended runs left in use, the
same selection the plugin's reaper makes at start. The host
is picked like the plugin picks it: ``--host-name`` (a kind cluster) or ``--host-kubeconfig``
and ``--host-context``, else the ``PYTEST_VCLUSTER_*`` environment, else the default kind host.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from kubernetes import client

from pytest_vcluster.cli.doctor import run_checks
from pytest_vcluster.core.commands import CommandRunner, find_tool
from pytest_vcluster.core.errors import VClusterError
from pytest_vcluster.host.kind import HostInfo, KindHost, connect_existing_host, host_api_client
from pytest_vcluster.host.reaper import ManagedCluster, reap, survey
from pytest_vcluster.settings.config import Settings, parse_age, resolve_settings

__all__ = ["main"]


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _settings(args: argparse.Namespace) -> Settings:
    cli = {
        "vcluster_host_name": args.host_name,
        "vcluster_host_kubeconfig": args.host_kubeconfig,
        "vcluster_host_context": args.host_context,
        "vcluster_kind_binary": args.kind_binary,
    }
    cwd = Path.cwd()
    return resolve_settings(cli, {}, os.environ, cli_dir=cwd, ini_dir=cwd)


@contextlib.contextmanager
def _host_api(settings: Settings) -> Iterator[tuple[HostInfo, client.ApiClient]]:
    with tempfile.TemporaryDirectory(prefix="pytest-vcluster-") as workdir:
        if settings.host_kubeconfig is not None:
            info = connect_existing_host(settings.host_kubeconfig, settings.host_context)
        else:
            kind = KindHost(
                CommandRunner(),
                find_tool("kind", settings.kind_binary),
                settings.host_name,
                Path(workdir),
            )
            if not kind.exists():
                raise VClusterError(f"there is no kind cluster named {settings.host_name!r}")
            kind.export_kubeconfig()
            info = kind.info(created=False)
        api = host_api_client(info.kubeconfig, info.context)
        try:
            yield info, api
        finally:
            api.close()  # type: ignore[no-untyped-call]


def _row(cluster: ManagedCluster) -> list[str]:
    state = cluster.state + (" (deleting)" if cluster.terminating else "")
    run = cluster.run[:12] + ("" if cluster.run_alive else " (ended)")
    return [
        cluster.name,
        cluster.namespace,
        run,
        cluster.worker,
        _age(cluster.age_seconds),
        state,
        cluster.test,
    ]


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _ls(api: client.ApiClient, host: HostInfo) -> int:
    clusters = survey(api)
    if not clusters:
        print(f"no vclusters of pytest-vcluster on {host.describe()}")
        return 0
    header = ["NAME", "NAMESPACE", "RUN", "WORKER", "AGE", "STATE", "TEST"]
    print(_table([header, *(_row(cluster) for cluster in clusters)]))
    return 0


def _reap(api: client.ApiClient, host: HostInfo, *, dry_run: bool, older_than: float | None) -> int:
    result = reap(api, preserved_older_than=older_than, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleting"
    for cluster in result.removed:
        why = "its run ended" if not cluster.preserved else f"{cluster.state} for too long"
        print(f"{verb} {cluster.namespace} ({why}; test {cluster.test or '?'})")
    for cluster in result.preserved:
        print(
            f"left {cluster.namespace}: {cluster.state} on purpose, {_age(cluster.age_seconds)} "
            "old (remove with --preserved-older-than AGE)"
        )
    for cluster in result.live:
        print(f"left {cluster.namespace}: its run is still alive")
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    print(("dry run: " if dry_run else "") + result.summary() + f" on {host.describe()}")
    return 1 if result.errors else 0


def _doctor(settings: Settings) -> int:
    checks = run_checks(settings, dict(os.environ))
    for check in checks:
        print(check.line())
    failed = [check for check in checks if check.status == "FAIL"]
    print(f"{len(failed)} problem(s) found" if failed else "ready to run vclusters")
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pytest-vcluster",
        description="See and clean the vclusters pytest runs left on a host.",
    )
    parser.add_argument("--host-name", help="kind cluster hosting the vclusters")
    parser.add_argument("--host-kubeconfig", help="kubeconfig of an existing host cluster")
    parser.add_argument("--host-context", help="context in --host-kubeconfig")
    parser.add_argument("--kind-binary", help="path of kind (default: kind on PATH)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("doctor", help="check Docker, the tools, inotify limits and the host")
    commands.add_parser("ls", help="list the vclusters runs made on the host")
    reaper = commands.add_parser(
        "reap", help="delete the vclusters of ended runs (as the plugin does at start)"
    )
    reaper.add_argument("--dry-run", action="store_true", help="only say what would go")
    reaper.add_argument(
        "--preserved-older-than",
        metavar="AGE",
        help="also delete clusters left paused or kept on purpose once this old (e.g. 12h, 7d)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        older_than = (
            parse_age(args.preserved_older_than, "--preserved-older-than")
            if getattr(args, "preserved_older_than", None)
            else None
        )
        if args.command == "doctor":
            return _doctor(settings)
        with _host_api(settings) as (host, api):
            if args.command == "ls":
                return _ls(api, host)
            return _reap(api, host, dry_run=args.dry_run, older_than=older_than)
    except VClusterError as exc:
        print(f"pytest-vcluster: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
