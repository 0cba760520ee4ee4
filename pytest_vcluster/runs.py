"""Runs say on the host that they are alive: one ``coordination.k8s.io`` Lease per process.

A process that makes vclusters first creates a Lease named after its run and worker in the
``pytest-vcluster-runs`` namespace of the host and renews it in the background. A run whose
leases all stopped being renewed has ended without cleaning up (SIGKILL, a cancelled CI job,
a machine that went away), so its vclusters may be reaped; a live run's never are. This works
across machines sharing an existing host, where process ids mean nothing.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.errors import api_error
from pytest_vcluster.labels import LABEL_RUN_ID, LABEL_WORKER, label_value

__all__ = ["RUNS_NAMESPACE", "RunLease", "live_runs", "utc_now"]

log = logging.getLogger(__name__)

RUNS_NAMESPACE = "pytest-vcluster-runs"
LABEL_ROLE = "pytest-vcluster/role"
#: A lease not renewed for this long (plus the clock-skew allowance) belongs to a dead run.
LEASE_SECONDS = 30
RENEW_EVERY = 10.0
#: Hosts shared between machines may disagree on the time by this much.
CLOCK_SKEW = 15.0
_API_TIMEOUT = 15.0


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware."""
    return datetime.datetime.now(datetime.UTC)


def _micro_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _lease_name(run_id: str, worker: str) -> str:
    return label_value(f"run-{run_id[:32]}-{worker}").lower().replace("_", "-")


def _ensure_namespace(core: client.CoreV1Api) -> None:
    body = client.V1Namespace(
        metadata=client.V1ObjectMeta(name=RUNS_NAMESPACE, labels={LABEL_ROLE: "runs"})
    )
    try:
        core.create_namespace(body, _request_timeout=_API_TIMEOUT)
    except ApiException as exc:
        if exc.status != 409:
            raise


@dataclass
class RunLease:
    """This process's Lease on the host, renewed by a daemon thread until :meth:`close`."""

    api: client.ApiClient
    run_id: str
    worker: str
    clock: Callable[[], datetime.datetime] = utc_now
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        """The Lease's name."""
        return _lease_name(self.run_id, self.worker)

    @property
    def _coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)

    def open(self) -> None:
        """Create the Lease (before any cluster of this run exists) and start renewing it."""
        now = _micro_time(self.clock())
        # A plain body: the client would write these MicroTime fields without microseconds.
        body = {
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
        try:
            _ensure_namespace(client.CoreV1Api(self.api))
            try:
                self._coordination.create_namespaced_lease(
                    RUNS_NAMESPACE,
                    body,  # type: ignore[arg-type]
                    _request_timeout=_API_TIMEOUT,
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
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
        """Move the Lease's renew time to now."""
        patch = {"spec": {"renewTime": _micro_time(self.clock())}}
        self._coordination.patch_namespaced_lease(
            self.name, RUNS_NAMESPACE, patch, _request_timeout=_API_TIMEOUT
        )

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
            self._thread.join(timeout=_API_TIMEOUT + 5)
        try:
            self._coordination.delete_namespaced_lease(
                self.name, RUNS_NAMESPACE, _request_timeout=_API_TIMEOUT
            )
        except Exception as exc:  # noqa: BLE001 - an unrenewed lease expires by itself
            log.info("cannot delete this run's lease: %s", exc)


def live_runs(api: client.ApiClient, clock: Callable[[], datetime.datetime] = utc_now) -> set[str]:
    """Run ids (as labelled) with at least one Lease renewed recently enough."""
    try:
        leases = (
            client.CoordinationV1Api(api)
            .list_namespaced_lease(
                RUNS_NAMESPACE, label_selector=f"{LABEL_ROLE}=run", _request_timeout=_API_TIMEOUT
            )
            .items
        )
    except ApiException as exc:
        if exc.status == 404:
            return set()
        raise api_error("cannot list the runs recorded on the host", exc) from exc
    except Exception as exc:
        raise api_error("cannot list the runs recorded on the host", exc) from exc
    now = clock()
    alive: set[str] = set()
    for lease in leases:
        spec = lease.spec
        labels = (lease.metadata.labels if lease.metadata else None) or {}
        run = labels.get(LABEL_RUN_ID)
        if spec is None or run is None:
            continue
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:
            continue
        duration = spec.lease_duration_seconds or LEASE_SECONDS
        if (now - renewed).total_seconds() <= duration + CLOCK_SKEW:
            alive.add(run)
    return alive
