"""What runs left on a host, and removing what ended runs left behind.

Every vcluster namespace carries its run id and a state label (``active``, ``paused`` or
``kept``). :func:`survey` lists them with whether their run is still alive (its Lease on the
host is renewed, see :mod:`~pytest_vcluster.host.liveness`). :func:`reap` deletes the active
clusters of ended runs: they were being used when the run died and nobody will come back for them.
Clusters left paused or kept on purpose are listed and removed only when asked, and only once
older than an age limit. A live run's clusters are never touched.

Liveness and ages are both judged by the host's clock (the ``Date`` of its answer), never by
this machine's, which may disagree with the host and with the machines running the tests.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from kubernetes import client

from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.errors import VClusterError, api_error
from pytest_vcluster.core.labels import (
    ANNOTATION_TEST,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_RUN_ID,
    LABEL_STATE,
    LABEL_WORKER,
    PRESERVED_STATES,
    WARM_STATE,
)
from pytest_vcluster.host.liveness import runs_seen
from pytest_vcluster.host.namespaces import begin_delete

__all__ = ["ManagedCluster", "ReapResult", "count_preserved", "reap", "survey"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ManagedCluster:
    """A vcluster namespace on the host and what is known of its run."""

    namespace: str
    name: str
    run: str
    worker: str
    test: str
    state: str
    age_seconds: float
    terminating: bool
    run_alive: bool

    @property
    def preserved(self) -> bool:
        """Left on the host on purpose (paused or kept), or of unknown state."""
        return self.state != "active"

    @property
    def orphaned(self) -> bool:
        """In use when its run ended: nobody will tear it down."""
        return not self.run_alive and not self.preserved and not self.terminating


@dataclass
class ReapResult:
    """What :func:`reap` removed and what it left (and why)."""

    removed: list[ManagedCluster] = field(default_factory=list)
    preserved: list[ManagedCluster] = field(default_factory=list)
    live: list[ManagedCluster] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for a terminal."""
        text = f"reaped {len(self.removed)} vcluster(s) of ended runs"
        warm = sum(1 for cluster in self.preserved if cluster.state == WARM_STATE)
        if len(self.preserved) > warm:
            text += f"; {len(self.preserved) - warm} paused or kept on purpose left in place"
        if warm:
            text += f"; {warm} warm left for later runs"
        if self.errors:
            text += f"; {len(self.errors)} could not be removed: {self.errors[0]}"
        return text


def survey(
    api: client.ApiClient, clock: Callable[[], datetime.datetime] | None = None
) -> list[ManagedCluster]:
    """Every vcluster namespace the plugin made on this host, oldest first.

    ``clock`` stands in for the host's clock (tests); by default the host's answer dates it.
    """
    core = client.CoreV1Api(api)
    try:
        # Namespaces first, then leases: a run makes its lease before its first namespace,
        # so a namespace seen here has its run's lease in the later list if the run lives.
        namespaces = core.list_namespace(
            label_selector=f"{LABEL_MANAGED}=true", _request_timeout=API_TIMEOUT
        ).items
    except Exception as exc:
        raise api_error("cannot list the vcluster namespaces on the host", exc) from exc
    seen = runs_seen(api, clock)
    alive, now = seen.alive, seen.host_now
    found = []
    for ns in namespaces:
        meta = ns.metadata
        if meta is None or meta.name is None:
            continue
        labels = meta.labels or {}
        created = meta.creation_timestamp
        age = (now - created).total_seconds() if isinstance(created, datetime.datetime) else 0.0
        run = labels.get(LABEL_RUN_ID, "")
        found.append(
            ManagedCluster(
                namespace=meta.name,
                name=labels.get(LABEL_NAME, meta.name),
                run=run,
                worker=labels.get(LABEL_WORKER, ""),
                test=(meta.annotations or {}).get(ANNOTATION_TEST, ""),
                state=labels.get(LABEL_STATE, "unknown"),
                age_seconds=max(0.0, age),
                terminating=meta.deletion_timestamp is not None,
                run_alive=run in alive,
            )
        )
    found.sort(key=lambda cluster: -cluster.age_seconds)
    return found


def _old_enough(cluster: ManagedCluster, limit: float | None) -> bool:
    return limit is not None and cluster.age_seconds >= limit


def _select(clusters: Sequence[ManagedCluster], preserved_older_than: float | None) -> ReapResult:
    result = ReapResult()
    for cluster in clusters:
        if cluster.terminating:
            continue
        if cluster.run_alive:
            result.live.append(cluster)
        elif not cluster.preserved or _old_enough(cluster, preserved_older_than):
            result.removed.append(cluster)
        else:
            result.preserved.append(cluster)
    return result


def reap(
    api: client.ApiClient,
    *,
    preserved_older_than: float | None = None,
    dry_run: bool = False,
    clock: Callable[[], datetime.datetime] | None = None,
) -> ReapResult:
    """Delete the vclusters of ended runs (and old preserved ones when asked).

    ``preserved_older_than`` (seconds) also removes clusters left paused or kept on purpose
    once that old by the host's clock; ``None`` never does. Deletion is started, not awaited.
    ``clock`` is as for :func:`survey`.
    """
    result = _select(survey(api, clock), preserved_older_than)
    if dry_run:
        return result
    core = client.CoreV1Api(api)
    for cluster in list(result.removed):
        try:
            begin_delete(core, cluster.namespace)
        except VClusterError as exc:
            result.removed.remove(cluster)
            result.errors.append(str(exc))
            continue
        log.info("reaped vcluster %s of ended run %s", cluster.namespace, cluster.run)
    return result


def count_preserved(api: client.ApiClient) -> int:
    """vclusters left paused, kept or warm on the host (deleting the host would lose them)."""
    states = ",".join((*PRESERVED_STATES, WARM_STATE))
    selector = f"{LABEL_MANAGED}=true,{LABEL_STATE} in ({states})"
    try:
        items = (
            client.CoreV1Api(api)
            .list_namespace(label_selector=selector, _request_timeout=API_TIMEOUT)
            .items
        )
    except Exception as exc:
        raise api_error("cannot count the paused or kept vclusters on the host", exc) from exc
    return sum(1 for ns in items if ns.metadata and not ns.metadata.deletion_timestamp)
