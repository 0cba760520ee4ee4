"""Reaper selection, run leases, interrupt handling, the API error contract and the CLI.

The Kubernetes API is replaced by small fakes that return what a host would list.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.cli import main as cli
from pytest_vcluster.core.errors import ApiError, ConfigError, RunInterruptedError, api_error
from pytest_vcluster.core.interrupts import Interrupts
from pytest_vcluster.core.waits import Deadline, wait_until
from pytest_vcluster.host import liveness as runs
from pytest_vcluster.host import reaper
from pytest_vcluster.host.kind import HostInfo
from pytest_vcluster.host.reaper import ManagedCluster, _select
from pytest_vcluster.settings.config import parse_age

NOW = datetime.datetime(2026, 11, 29, 12, 0, tzinfo=datetime.UTC)


def cluster(
    name: str, *, state: str = "active", alive: bool = False, age: float = 60, terminating=False
) -> ManagedCluster:
    return ManagedCluster(
        namespace=name, name=name, run="r", worker="gw0", test="t.py::test",
        state=state, age_seconds=age, terminating=terminating, run_alive=alive,
    )  # fmt: skip


def test_reaper_removes_only_active_clusters_of_ended_runs() -> None:
    result = _select(
        [
            cluster("orphan"),
            cluster("live", alive=True),
            cluster("paused", state="paused"),
            cluster("kept", state="kept"),
            cluster("unknown", state="unknown"),
            cluster("going", terminating=True),
            cluster("live-paused", state="paused", alive=True),
        ],
        preserved_older_than=None,
    )
    assert [c.name for c in result.removed] == ["orphan"]
    assert [c.name for c in result.preserved] == ["paused", "kept", "unknown"]
    assert [c.name for c in result.live] == ["live", "live-paused"]
    assert result.summary() == (
        "reaped 1 vcluster(s) of ended runs; 3 paused or kept on purpose left in place"
    )


def test_warm_clusters_of_ended_runs_wait_for_a_later_run_and_are_counted_apart() -> None:
    result = _select(
        [cluster("orphan"), cluster("warm", state="warm"), cluster("kept", state="kept"),
         cluster("old-warm", state="warm", age=7200)],
        preserved_older_than=3600,
    )  # fmt: skip
    assert [c.name for c in result.removed] == ["orphan", "old-warm"]
    assert [c.name for c in result.preserved] == ["warm", "kept"]
    assert result.summary() == (
        "reaped 2 vcluster(s) of ended runs; 1 paused or kept on purpose left in place; "
        "1 warm left for later runs"
    )


def test_reaper_removes_preserved_clusters_only_past_the_age_limit() -> None:
    result = _select(
        [cluster("old", state="kept", age=7200), cluster("young", state="paused", age=60)],
        preserved_older_than=3600,
    )
    assert [c.name for c in result.removed] == ["old"]
    assert [c.name for c in result.preserved] == ["young"]


def lease(run: str, renewed: datetime.datetime | None, duration: int = 30) -> Any:
    return SimpleNamespace(
        metadata=SimpleNamespace(labels={"pytest-vcluster/run-id": run}),
        spec=SimpleNamespace(
            renew_time=renewed, acquire_time=renewed, lease_duration_seconds=duration
        ),
    )


def test_a_run_is_alive_while_its_lease_is_renewed(monkeypatch: pytest.MonkeyPatch) -> None:
    leases = [
        lease("fresh", NOW - datetime.timedelta(seconds=5)),
        lease("late-but-within-skew", NOW - datetime.timedelta(seconds=40)),
        lease("expired", NOW - datetime.timedelta(seconds=46)),
        lease("never", None),
    ]

    class Coordination:
        def __init__(self, api: object) -> None:
            pass

        def list_namespaced_lease(self, namespace: str, **kwargs: object) -> Any:
            assert namespace == runs.RUNS_NAMESPACE
            return SimpleNamespace(items=leases)

    monkeypatch.setattr(runs.client, "CoordinationV1Api", Coordination)
    assert runs.live_runs(object(), clock=lambda: NOW) == {"fresh", "late-but-within-skew"}


def test_no_runs_namespace_means_no_live_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    class Coordination:
        def __init__(self, api: object) -> None:
            pass

        def list_namespaced_lease(self, namespace: str, **kwargs: object) -> Any:
            raise ApiException(status=404, reason="Not Found")

    monkeypatch.setattr(runs.client, "CoordinationV1Api", Coordination)
    assert runs.live_runs(object(), clock=lambda: NOW) == set()


def test_api_error_keeps_the_status_and_the_server_message() -> None:
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps({"kind": "Status", "message": 'namespaces is forbidden: User "ci"'})
    error = api_error("cannot create host namespace pv-a", exc)
    assert isinstance(error, ApiError)
    assert (error.status, error.reason) == (403, "Forbidden")
    assert error.message == 'namespaces is forbidden: User "ci"'
    assert str(error) == (
        'cannot create host namespace pv-a: 403 Forbidden: namespaces is forbidden: User "ci"'
    )


def test_api_error_from_a_transport_error_has_no_status() -> None:
    error = api_error("cannot list namespaces", ConnectionResetError("reset by peer"))
    assert error.status is None
    assert str(error) == "cannot list namespaces: ConnectionResetError: reset by peer"


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)]
)
def test_parse_age(text: str, seconds: float) -> None:
    assert parse_age(text, "--vcluster-reap-preserved-after") == seconds


def test_parse_age_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"--vcluster-reap-preserved-after: 'soon' is not an age"):
        parse_age("soon", "--vcluster-reap-preserved-after")


@dataclass
class Signals:
    written: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)

    def handler(self, leftovers: list[str]) -> Interrupts:
        handler = Interrupts()
        handler._stop_run = self.stops.append
        handler._leftovers = lambda: leftovers
        handler._write = self.written.append
        return handler


def test_first_signal_interrupts_the_test_and_cancels_creates() -> None:
    signals = Signals()
    handler = signals.handler([])
    with pytest.raises(KeyboardInterrupt):
        handler._handle(signal.SIGTERM, None)
    assert handler.cancel.is_set()
    assert not handler.abandon.is_set()
    assert handler.signal_name == "SIGTERM"
    assert signals.stops == ["pytest-vcluster: SIGTERM"]


def test_first_signal_during_teardown_lets_it_finish() -> None:
    signals = Signals()
    handler = signals.handler([])
    with handler.shielded():
        handler._handle(signal.SIGINT, None)  # no KeyboardInterrupt: the teardown goes on
    assert handler.cancel.is_set()
    assert "finishing the teardown" in signals.written[0]
    assert signals.stops == ["pytest-vcluster: SIGINT"]


def test_second_signal_stops_waiting_and_lists_what_is_left() -> None:
    signals = Signals()
    handler = signals.handler(
        ["namespace pv-a (deleting)", "remove them with: pytest-vcluster reap --host-name h"]
    )
    with handler.shielded():
        handler._handle(signal.SIGINT, None)
        handler._handle(signal.SIGINT, None)
    assert handler.abandon.is_set()
    assert signals.written[-1] == (
        "\npytest-vcluster: SIGINT again: stopped waiting; left on the host:\n"
        "  namespace pv-a (deleting)\n"
        "  remove them with: pytest-vcluster reap --host-name h\n"
    )


def test_a_stopped_deadline_ends_a_wait_at_once() -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(RunInterruptedError, match="stopped waiting for the namespace to go"):
        wait_until("the namespace to go", lambda: (False, "Terminating"), Deadline(60, stop=stop))


def test_cli_lists_the_clusters_of_a_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_host_api", fake_host_api)
    monkeypatch.setattr(
        cli, "survey", lambda api: [cluster("pv-a-1", age=7200), cluster("pv-b-2", state="kept")]
    )
    assert cli.main(["--host-name", "h", "ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "NAMESPACE", "RUN", "WORKER", "AGE", "STATE", "TEST"]
    assert lines[1].split() == [
        "pv-a-1",
        "pv-a-1",
        "r",
        "(ended)",
        "gw0",
        "2h",
        "active",
        "t.py::test",
    ]
    assert lines[2].split()[6] == "kept"


def test_cli_reap_dry_run_says_what_would_go(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "_host_api", fake_host_api)
    calls: list[dict[str, object]] = []

    def fake_reap(api: object, **kwargs: object) -> reaper.ReapResult:
        calls.append(kwargs)
        return reaper.ReapResult(
            removed=[cluster("pv-a-1")], preserved=[cluster("pv-k", state="kept")]
        )

    monkeypatch.setattr(cli, "reap", fake_reap)
    assert cli.main(["reap", "--dry-run", "--preserved-older-than", "2h"]) == 0
    assert calls == [{"preserved_older_than": 7200.0, "dry_run": True}]
    out = capsys.readouterr().out
    assert "would delete pv-a-1 (its run ended; test t.py::test)" in out
    assert "left pv-k: kept on purpose, 1m old (remove with --preserved-older-than AGE)" in out


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reap", "--preserved-older-than", "soon"]) == 1
    assert capsys.readouterr().err == (
        "pytest-vcluster: --preserved-older-than: 'soon' is not an age (allowed: e.g. 3600, "
        "90m, 12h, 7d)\n"
    )


@contextlib.contextmanager
def fake_host_api(settings: object) -> Iterator[tuple[HostInfo, object]]:
    yield HostInfo("kind", "h", Path("/dev/null"), "kind-h", False), object()
