"""Run leases against a fake host: re-creating a deleted Lease, and liveness by the host's clock.

The fake host keeps Leases as the bodies written to it and answers with a ``Date`` header from
its own clock, which is set apart from this machine's to show which clock a judgement used.
"""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.host import liveness as runs
from pytest_vcluster.host import reaper

RUN_LABEL = "pytest-vcluster/run-id"


def _micro(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)


@dataclass
class FakeHost:
    """Leases by name (as written), the host's clock offset from this machine's, and a log."""

    offset: datetime.timedelta = datetime.timedelta(0)
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)
    namespaces: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def now(self) -> datetime.datetime:
        return runs.utc_now() + self.offset

    def headers(self) -> dict[str, str]:
        return {"Date": email.utils.format_datetime(self.now(), usegmt=True)}

    def error(self, status: int) -> ApiException:
        exc = ApiException(status=status, reason="Not Found" if status == 404 else "Conflict")
        exc.headers = self.headers()  # type: ignore[assignment]
        return exc

    def lease_list(self) -> Any:
        return SimpleNamespace(
            items=[
                SimpleNamespace(
                    metadata=SimpleNamespace(labels=body["metadata"]["labels"]),
                    spec=SimpleNamespace(
                        renew_time=_parse(body["spec"]["renewTime"]),
                        acquire_time=_parse(body["spec"]["acquireTime"]),
                        lease_duration_seconds=body["spec"]["leaseDurationSeconds"],
                    ),
                )
                for body in self.leases.values()
            ]
        )

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        host = self

        class Core:
            def __init__(self, api: object) -> None:
                pass

            def create_namespace_with_http_info(self, body: object, **kwargs: object) -> Any:
                host.calls.append("create_namespace")
                raise host.error(409)

            def create_namespace(self, body: object, **kwargs: object) -> Any:
                return self.create_namespace_with_http_info(body, **kwargs)[0]

            def list_namespace(self, **kwargs: object) -> Any:
                return SimpleNamespace(
                    items=[
                        SimpleNamespace(
                            metadata=SimpleNamespace(
                                name=ns["name"],
                                labels=ns["labels"],
                                annotations={},
                                creation_timestamp=ns["created"],
                                deletion_timestamp=None,
                            )
                        )
                        for ns in host.namespaces
                    ]
                )

        class Coordination:
            def __init__(self, api: object) -> None:
                pass

            def create_namespaced_lease_with_http_info(
                self, namespace: str, body: dict[str, Any], **kwargs: object
            ) -> Any:
                host.calls.append("create_lease")
                name = body["metadata"]["name"]
                if name in host.leases:
                    raise host.error(409)
                host.leases[name] = body
                return body, 201, host.headers()

            def create_namespaced_lease(self, namespace: str, body: Any, **kwargs: object) -> Any:
                return self.create_namespaced_lease_with_http_info(namespace, body, **kwargs)[0]

            def patch_namespaced_lease_with_http_info(
                self, name: str, namespace: str, patch: dict[str, Any], **kwargs: object
            ) -> Any:
                host.calls.append("patch_lease")
                if name not in host.leases:
                    raise host.error(404)
                host.leases[name]["spec"].update(patch["spec"])
                return host.leases[name], 200, host.headers()

            def patch_namespaced_lease(
                self, name: str, namespace: str, patch: Any, **kwargs: object
            ) -> Any:
                return self.patch_namespaced_lease_with_http_info(name, namespace, patch)[0]

            def replace_namespaced_lease(self, name: str, *args: object, **kwargs: object) -> Any:
                host.calls.append("replace_lease")
                raise host.error(404)

            def delete_namespaced_lease(self, name: str, namespace: str, **kwargs: object) -> None:
                host.calls.append("delete_lease")
                host.leases.pop(name, None)

            def list_namespaced_lease_with_http_info(self, namespace: str, **kwargs: object) -> Any:
                return self.list_namespaced_lease(namespace), 200, host.headers()

            def list_namespaced_lease(self, namespace: str, **kwargs: object) -> Any:
                assert namespace == runs.RUNS_NAMESPACE
                return host.lease_list()

        monkeypatch.setattr(runs.client, "CoreV1Api", Core)
        monkeypatch.setattr(runs.client, "CoordinationV1Api", Coordination)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    fake = FakeHost()
    fake.install(monkeypatch)
    return fake


@pytest.fixture
def opened(host: FakeHost) -> Iterator[runs.RunLease]:
    lease = runs.RunLease(object(), "run-1", "gw0")  # type: ignore[arg-type]
    lease.open()
    yield lease
    lease.close()


def test_renew_recreates_a_deleted_lease(host: FakeHost, opened: runs.RunLease) -> None:
    first = host.leases[opened.name]
    host.leases.clear()  # deleted behind the run's back (kubectl delete, a namespace cleanup)
    opened.renew()
    again = host.leases[opened.name]
    assert again["metadata"]["labels"] == first["metadata"]["labels"]
    assert again["spec"]["holderIdentity"] == first["spec"]["holderIdentity"]
    assert opened.run_id in runs.live_runs(object())  # type: ignore[arg-type]


def test_a_fresh_lease_is_alive_though_this_clock_says_it_is_60s_old(host: FakeHost) -> None:
    # This machine's clock runs 60 s ahead of the host's: by it the lease was renewed 62 s ago.
    host.offset = datetime.timedelta(seconds=-60)
    renewed = _micro(host.now() - datetime.timedelta(seconds=2))
    host.leases["l"] = {
        "metadata": {"name": "l", "labels": {RUN_LABEL: "live-run"}},
        "spec": {"renewTime": renewed, "acquireTime": renewed, "leaseDurationSeconds": 30},
    }
    assert runs.live_runs(object()) == {"live-run"}  # type: ignore[arg-type]


def test_a_stale_lease_is_ended_though_this_clock_says_it_is_fresh(host: FakeHost) -> None:
    # This machine's clock runs 60 s behind the host's: by it the lease looks renewed just now.
    host.offset = datetime.timedelta(seconds=60)
    renewed = _micro(host.now() - datetime.timedelta(seconds=50))
    host.leases["l"] = {
        "metadata": {"name": "l", "labels": {RUN_LABEL: "dead-run"}},
        "spec": {"renewTime": renewed, "acquireTime": renewed, "leaseDurationSeconds": 30},
    }
    assert runs.live_runs(object()) == set()  # type: ignore[arg-type]


def test_a_renewer_with_a_wrong_clock_writes_the_hosts_time(host: FakeHost) -> None:
    behind = datetime.timedelta(hours=1)
    lease = runs.RunLease(object(), "run-2", "gw0", clock=lambda: runs.utc_now() - behind)  # type: ignore[arg-type]
    lease.open()
    try:
        lease.renew()
        written = _parse(host.leases[lease.name]["spec"]["renewTime"])
        assert abs((written - host.now()).total_seconds()) < 5
        assert runs.live_runs(object()) == {"run-2"}  # type: ignore[arg-type]
    finally:
        lease.close()


def test_survey_judges_runs_and_ages_by_the_hosts_clock(host: FakeHost) -> None:
    host.offset = datetime.timedelta(seconds=-60)
    renewed = _micro(host.now() - datetime.timedelta(seconds=2))
    host.leases["l"] = {
        "metadata": {"name": "l", "labels": {RUN_LABEL: "r"}},
        "spec": {"renewTime": renewed, "acquireTime": renewed, "leaseDurationSeconds": 30},
    }
    host.namespaces.append(
        {
            "name": "pv-a",
            "labels": {RUN_LABEL: "r", "pytest-vcluster/state": "active"},
            "created": host.now() - datetime.timedelta(seconds=120),
        }
    )
    (found,) = reaper.survey(object())  # type: ignore[arg-type]
    assert found.run_alive
    assert 115 < found.age_seconds < 130
