"""Runs say on the host that they are alive: one ``coordination.k8s.io`` Lease per process.

A process that makes vclusters first creates a Lease named after its run and worker in the
``pytest-vcluster-runs`` namespace of the host and renews it in the background, creating it
again should it be deleted meanwhile. A run whose leases all stopped being renewed has ended
without cleaning up (SIGKILL, a cancelled CI job, a machine that went away), so its vclusters
may be reaped; a live run's never are. This works across machines sharing an existing host,
where process ids mean nothing.

Every time here is the host's: a renewer writes ``renewTime`` by the host API server's clock
(the ``Date`` of its last answer, carried forward on this machine's monotonic clock) and an
observer compares it with the ``Date`` of the host's answer to its listing. No machine's own
clock is compared with another's, so a live run on a machine whose clock is off still looks
alive from every other machine.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import api_error
from pytest_vcluster.core.labels import LABEL_RUN_ID, LABEL_WORKER, label_value

__all__ = [
    "RUNS_NAMESPACE",
    "HostClock",
    "RunLease",
    "RunsSeen",
    "host_date",
    "live_runs",
    "runs_seen",
    "utc_now",
]

log = logging.getLogger(__name__)

RUNS_NAMESPACE = "pytest-vcluster-runs"
LABEL_ROLE = "pytest-vcluster/role"
#: A lease not renewed for this long (plus :data:`SLACK`) by the host's clock belongs to a
#: dead run.
LEASE_SECONDS = 30
RENEW_EVERY = 10.0
#: Covers what still separates a renewer's idea of the host's time from the host's: ``Date``
#: has whole seconds and arrives after a request's latency; also a renewal held up by a slow
#: API call, and leases written by older versions, which used the renewer's own clock.
SLACK = 15.0


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware."""
    return datetime.datetime.now(datetime.UTC)


def _micro_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _lease_name(run_id: str, worker: str) -> str:
    return label_value(f"run-{run_id[:32]}-{worker}").lower().replace("_", "-")


def host_date(headers: Mapping[str, str] | None) -> datetime.datetime | None:
    """The host's time by an answer's ``Date`` header (whole seconds), if it sent one."""
    value = headers.get("Date") if headers is not None else None
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    # HTTP dates are GMT; parsedate_to_datetime leaves "-0000" zones naive.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


@dataclass
class HostClock:
    """The host API server's time, as its last answer gave it, moved on by this machine's
    monotonic clock (which a wrong or stepped wall clock does not disturb).

    ``fallback`` (this machine's clock) stands in only until the host has answered with a
    ``Date``.
    """

    fallback: Callable[[], datetime.datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    _anchor: tuple[datetime.datetime, float] | None = None

    def observe(self, headers: Mapping[str, str] | None) -> None:
        """Take the host's time from an answer's headers (no ``Date``: nothing changes)."""
        moment = host_date(headers)
        if moment is not None:
            self._anchor = (moment, self.monotonic())

    def now(self) -> datetime.datetime:
        """The host's current time, as well as this machine knows it."""
        anchor = self._anchor
        if anchor is None:
            return self.fallback()
        moment, seen_at = anchor
        return moment + datetime.timedelta(seconds=self.monotonic() - seen_at)


@dataclass
class RunLease:
    """This process's Lease on the host, renewed by a daemon thread until :meth:`close`.

    ``clock`` is this machine's clock; it dates the Lease only if the host never sends a
    ``Date`` header, otherwise every time written is the host's (see :class:`HostClock`).
    """

    api: client.ApiClient
    run_id: str
    worker: str
    clock: Callable[[], datetime.datetime] = utc_now
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _host_clock: HostClock = field(init=False)

    def __post_init__(self) -> None:
        self._host_clock = HostClock(fallback=self.clock)

    @property
    def name(self) -> str:
        """The Lease's name."""
        return _lease_name(self.run_id, self.worker)

    @property
    def _coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)

    def _ensure_namespace(self) -> None:
        body = client.V1Namespace(
            metadata=client.V1ObjectMeta(name=RUNS_NAMESPACE, labels={LABEL_ROLE: "runs"})
        )
        try:
            _, _, headers = client.CoreV1Api(self.api).create_namespace_with_http_info(
                body, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            self._host_clock.observe(exc.headers)
            if exc.status != 409:
                raise
            return
        self._host_clock.observe(headers)

    def _body(self) -> dict[str, Any]:
        now = _micro_time(self._host_clock.now())
        # A plain body: the client would write these MicroTime fields without microseconds.
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "labels": {
                    LABEL_ROLE: "run",
                    LABEL_RUN_ID: label_value(self.run_id),
                    LABEL_WORKER: label_value(self.worker),
                },
            },
            "spec": {
                "holderIdentity": f"{socket.gethostname()}/{os.getpid()}",
                "leaseDurationSeconds": LEASE_SECONDS,
                "acquireTime": now,
                "renewTime": now,
            },
        }

    def _create(self) -> bool:
        """Create the Lease; False if it exists already."""
        try:
            _, _, headers = self._coordination.create_namespaced_lease_with_http_info(
                RUNS_NAMESPACE,
                self._body(),  # type: ignore[arg-type]
                _request_timeout=API_TIMEOUT,
            )
        except ApiException as exc:
            self._host_clock.observe(exc.headers)
            if exc.status != 409:
                raise
            return False
        self._host_clock.observe(headers)
        return True

    def open(self) -> None:
        """Create the Lease (before any cluster of this run exists) and start renewing it."""
        try:
            # First, as its answer also gives the host's time to date the Lease by.
            self._ensure_namespace()
            if not self._create():
                self.renew()
        except Exception as exc:
            raise api_error(
                f"cannot record this run on the host (Lease {RUNS_NAMESPACE}/{self.name})", exc
            ) from exc
        self._thread = threading.Thread(
            target=self._renew_loop, name="pytest-vcluster run lease", daemon=True
        )
        self._thread.start()

    def renew(self) -> None:
        """Move the Lease's renew time to the host's now; create the Lease again if it is gone.

        A deleted Lease must come back at once: without it the run looks ended and a reaper
        would delete the clusters this run is using.
        """
        patch = {"spec": {"renewTime": _micro_time(self._host_clock.now())}}
        try:
            _, _, headers = self._coordination.patch_namespaced_lease_with_http_info(
                self.name, RUNS_NAMESPACE, patch, _request_timeout=API_TIMEOUT
            )
        except ApiException as exc:
            self._host_clock.observe(exc.headers)
            if exc.status != 404:
                raise
            log.warning(
                "this run's lease %s/%s was deleted from the host; creating it again",
                RUNS_NAMESPACE,
                self.name,
            )
            # The namespace may have gone with it. A conflict means the Lease is back already.
            self._ensure_namespace()
            self._create()
            return
        self._host_clock.observe(headers)

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - the next renewal may get through
                log.warning("cannot renew this run's lease on the host: %s", exc)

    def close(self) -> None:
        """Stop renewing and delete the Lease: the run has ended."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=API_TIMEOUT + 5)
        try:
            self._coordination.delete_namespaced_lease(
                self.name, RUNS_NAMESPACE, _request_timeout=API_TIMEOUT
            )
        except Exception as exc:  # noqa: BLE001 - an unrenewed lease expires by itself
            log.info("cannot delete this run's lease: %s", exc)


@dataclass(frozen=True)
class RunsSeen:
    """The runs alive on a host, and the host's time when its leases were listed."""

    alive: set[str]
    host_now: datetime.datetime


def runs_seen(
    api: client.ApiClient, clock: Callable[[], datetime.datetime] | None = None
) -> RunsSeen:
    """Run ids (as labelled) with at least one Lease renewed recently enough, by the host's clock.

    A Lease is alive while the host's time is within its ``leaseDurationSeconds`` plus
    :data:`SLACK` of its ``renewTime``. The host's time is the ``Date`` of its answer to the
    listing (this machine's clock only if it sent none); ``clock`` stands in for the host's
    clock instead (tests).
    """
    coordination = client.CoordinationV1Api(api)
    selector = f"{LABEL_ROLE}=run"
    try:
        if clock is None:
            listed, _, headers = coordination.list_namespaced_lease_with_http_info(
                RUNS_NAMESPACE, label_selector=selector, _request_timeout=API_TIMEOUT
            )
            host_now = host_date(headers)
            if host_now is None:
                log.debug("the host sent no Date header; judging run leases by this clock")
                host_now = utc_now()
        else:
            listed = coordination.list_namespaced_lease(
                RUNS_NAMESPACE, label_selector=selector, _request_timeout=API_TIMEOUT
            )
            host_now = clock()
    except ApiException as exc:
        if exc.status == 404:
            # No runs namespace: no run ever recorded itself on this host.
            when = clock() if clock is not None else host_date(exc.headers) or utc_now()
            return RunsSeen(set(), when)
        raise api_error("cannot list the runs recorded on the host", exc) from exc
    except Exception as exc:
        raise api_error("cannot list the runs recorded on the host", exc) from exc
    alive: set[str] = set()
    for lease in listed.items:
        spec = lease.spec
        labels = (lease.metadata.labels if lease.metadata else None) or {}
        run = labels.get(LABEL_RUN_ID)
        if spec is None or run is None:
            continue
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:
            continue
        duration = spec.lease_duration_seconds or LEASE_SECONDS
        if (host_now - renewed).total_seconds() <= duration + SLACK:
            alive.add(run)
    return RunsSeen(alive, host_now)


def live_runs(
    api: client.ApiClient, clock: Callable[[], datetime.datetime] | None = None
) -> set[str]:
    """Run ids (as labelled) with at least one Lease renewed recently enough (see
    :func:`runs_seen`)."""
    return runs_seen(api, clock).alive
