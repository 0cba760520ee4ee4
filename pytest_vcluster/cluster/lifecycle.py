"""Creating, pausing, resuming and deleting the vclusters of one pytest process.

:class:`VClusterManager` puts the pieces together: a labelled namespace
(:mod:`~pytest_vcluster.host.namespaces`), the chart's objects
(:mod:`~pytest_vcluster.cluster.drivers`), readiness as timed phases
(:mod:`~pytest_vcluster.cluster.probes`) and the connection
(:mod:`~pytest_vcluster.cluster.connection`). It is thread-safe: the lookahead pool creates
and tears down clusters in background threads. This module does not import pytest.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client

from pytest_vcluster.cluster.chart import ChartRenderer
from pytest_vcluster.cluster.connection import Connection
from pytest_vcluster.cluster.drivers import ApiDriver, CliDriver, ObjectDriver
from pytest_vcluster.cluster.evidence import (
    ContainerLog,
    attach,
    attached,
    is_transient,
    read_restarted_logs,
)
from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.cluster.pki import KeyStock
from pytest_vcluster.cluster.probes import (
    PhaseTimer,
    Probe,
    coredns_ready,
    kubeconfig_secret,
    pod_initialized,
    pod_scheduled,
    readyz,
    service_account,
    wait_for,
)
from pytest_vcluster.cluster.recycling import (
    AUTH_CACHE_SECONDS,
    Baseline,
    RecycleResult,
    reset_to_baseline,
    take_baseline,
)
from pytest_vcluster.cluster.seed import (
    SEED_FORMAT,
    SeedStore,
    capture_store,
    make_seed,
    seed_applies,
)
from pytest_vcluster.cluster.warm import WarmClaim, WarmClusters
from pytest_vcluster.core.api import API_TIMEOUT
from pytest_vcluster.core.commands import CommandRunner
from pytest_vcluster.core.errors import (
    RunInterruptedError,
    VClusterError,
    WaitTimeoutError,
    api_error,
)
from pytest_vcluster.core.interrupts import interrupts
from pytest_vcluster.core.labels import (
    LABEL_STATE,
    WARM_STATE,
    control_plane_selector,
    short_hash,
    vcluster_name,
)
from pytest_vcluster.core.stats import Stats
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.host import pausing
from pytest_vcluster.host.kind import HostInfo, host_api_client
from pytest_vcluster.host.liveness import RunLease
from pytest_vcluster.host.namespaces import HostNamespaces
from pytest_vcluster.host.reaper import ReapResult, reap
from pytest_vcluster.settings.config import CreateWith, Settings, TeardownMode
from pytest_vcluster.settings.request import VClusterSpec

__all__ = ["Connection", "TeardownAction", "VClusterManager", "decide_teardown"]

log = logging.getLogger(__name__)


#: Starts of one cluster at most: a second one only after a transient crash of the first.
START_ATTEMPTS = 2
#: Warm clusters one create tries to adopt before it creates one: each that fails its proof
#: is deleted, and the next may have been parked by the same run for the same reason.
WARM_CLAIMS = 2


class _TransientStartError(Exception):
    """A start failed for a reason a new start can get past (carried to :meth:`create`)."""

    def __init__(self, error: VClusterError) -> None:
        super().__init__(str(error))
        self.error = error


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class TeardownAction(enum.Enum):
    """What teardown does to one vcluster."""

    DELETE = "delete"
    PAUSE = "pause"
    KEEP = "keep"


def _apply_spec_manifests(handle: VCluster, spec: VClusterSpec) -> None:
    """Apply the marker's manifests inside ``handle``, in order."""
    from pytest_vcluster.cluster.manifests import apply_manifests  # noqa: PLC0415 - once used

    for path in spec.manifests:
        apply_manifests(handle.api_client, path, timeout=spec.ready_timeout)


def decide_teardown(mode: TeardownMode, failed: bool) -> TeardownAction:
    """Map a teardown mode and the test outcome to an action."""
    match mode:
        case TeardownMode.DELETE:
            return TeardownAction.DELETE
        case TeardownMode.PAUSE:
            return TeardownAction.PAUSE
        case TeardownMode.KEEP:
            return TeardownAction.KEEP
        case TeardownMode.KEEP_ON_FAILURE:
            return TeardownAction.KEEP if failed else TeardownAction.DELETE
        case TeardownMode.PAUSE_ON_FAILURE:
            return TeardownAction.PAUSE if failed else TeardownAction.DELETE


@dataclass
class VClusterManager:
    """Lifecycle of the vclusters of one pytest process on one host.

    ``workdir`` is a private directory (kubeconfigs and values files are written there);
    ``run_id`` and ``worker`` end up as namespace labels.
    """

    settings: Settings
    host: HostInfo
    run_id: str
    worker: str
    workdir: Path
    stats: Stats = field(default_factory=Stats)
    runner: CommandRunner | None = None
    driver: ObjectDriver | None = None
    _counter: itertools.count[int] = field(default_factory=itertools.count)
    # Reentrant: making the driver asks for the host client, which takes the lock too.
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _connections: dict[str, Connection] = field(default_factory=dict)
    _host_api: client.ApiClient | None = None
    #: Every cluster this process made and has not finished with: name -> (namespace, state).
    _made: dict[str, tuple[str, str]] = field(default_factory=dict)
    _run_lease: RunLease | None = None
    #: Seeds for new clusters (``--vcluster-seeded-store``): where they are kept.
    seeds: SeedStore | None = None
    #: Key sets for premade certificates (fast start with the API driver only).
    _keys: KeyStock | None = None
    #: Held from counting the warm clusters of a spec until one more is parked: this
    #: process's parks never fill the pool past ``--vcluster-warm-pool`` between themselves.
    _park_lock: threading.Lock = field(default_factory=threading.Lock)

    # -- plumbing -------------------------------------------------------------------------

    @property
    def host_api(self) -> client.ApiClient:
        """The host API client (made on first use)."""
        with self._lock:
            if self._host_api is None:
                self._host_api = self._new_host_api()
            return self._host_api

    @property
    def namespaces(self) -> HostNamespaces:
        """Namespace operations for this run and worker."""
        return HostNamespaces(self.host_api, self.run_id, self.worker)

    @property
    def warm(self) -> WarmClusters:
        """Parking and claiming warm clusters for this run and worker."""
        return WarmClusters(self.host_api, self.run_id, self.worker)

    def _driver(self) -> ObjectDriver:
        with self._lock:
            if self.driver is not None:
                return self.driver
            if self.settings.create_with is CreateWith.CLI:
                self.driver = CliDriver(self.settings, self.host, self.workdir, self.runner)
                return self.driver
        # Asked outside the lock: the /version call may take up to its timeout, and the lock
        # also guards what teardown threads and leftovers() need meanwhile.
        host_version = self._host_version()
        with self._lock:
            if self.driver is None:
                renderer = ChartRenderer(self.settings, self.workdir, self.runner, host_version)
                self.driver = ApiDriver(renderer, self.host_api, keys=self._keys)
            return self.driver

    def _host_version(self) -> str | None:
        try:
            info = client.VersionApi(self.host_api).get_code(_request_timeout=API_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - helm's default version is a fine fallback
            log.info("cannot read the host's version: %s", exc)
            return None
        return str(info.git_version)

    def _new_host_api(self) -> client.ApiClient:
        # Each port forward needs a client of its own (see PodPortForwarder).
        return host_api_client(self.host.kubeconfig, self.host.context)

    def _next_name(self, spec: VClusterSpec) -> str:
        key = f"{self.run_id}/{self.worker}/{spec.slot}/{next(self._counter)}/{time.time_ns()}"
        return vcluster_name(spec.label, key)

    def _directory(self, name: str) -> Path:
        directory = self.workdir / name
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return directory

    def _track(self, name: str, namespace: str, state: str) -> None:
        with self._lock:
            self._made[name] = (namespace, state)

    def _untrack(self, name: str) -> None:
        with self._lock:
            self._made.pop(name, None)

    # -- public API -----------------------------------------------------------------------

    def start(self, *, reap_leftovers: bool) -> ReapResult | None:
        """Record this run on the host (a renewed Lease) before it makes anything there;
        with ``reap_leftovers``, delete what ended runs left behind first."""
        lease = RunLease(self.host_api, self.run_id, self.worker)
        lease.open()
        self._run_lease = lease
        if self.settings.fast_start and self.settings.create_with is CreateWith.API:
            # Started before the first create so that its keys are ready when it needs them.
            self._keys = KeyStock()
            self._keys.start()
        if not reap_leftovers:
            return None
        try:
            result = reap(self.host_api, preserved_older_than=self.settings.reap_preserved_after)
        except VClusterError as exc:
            log.warning("cannot reap the vclusters of ended runs: %s", exc)
            return None
        left_on_purpose = [c for c in result.preserved if c.state != WARM_STATE]
        if result.removed or left_on_purpose:
            log.warning("%s", result.summary())
        elif result.preserved:
            # Warm clusters waiting for a run are the pool working, not something to fix.
            log.info("%s", result.summary())
        return result

    def leftovers(self) -> list[str]:
        """What this process made and has not removed yet, and how to remove it."""
        with self._lock:
            made = dict(self._made)
        if not made:
            return []
        lines = [f"namespace {namespace} ({state})" for namespace, state in made.values()]
        names = " ".join(namespace for namespace, _ in made.values())
        lines.append(f"remove them with: pytest-vcluster reap {self.host.cli_flags()}")
        lines.append(f"or: kubectl --kubeconfig {self.host.kubeconfig} delete namespace {names}")
        return lines

    def create(
        self, spec: VClusterSpec, *, teardown_on_error: TeardownMode, prepared: bool = False
    ) -> VCluster:
        """Resume a matching paused vcluster or create a new one, and wait until it is ready.

        When setup fails after something was made on the host, ``teardown_on_error`` decides
        (as for a failed test) whether it is kept for inspection or removed. A new cluster
        whose control plane crashed because it could not reach the host's API for a moment
        (:func:`~pytest_vcluster.cluster.evidence.is_transient`) is deleted and started once more;
        the records and the summary list each such retry. ``prepared`` only marks the record
        of a cluster made ahead of its test.
        """
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                handle = self._create_once(
                    spec,
                    teardown_on_error=teardown_on_error,
                    prepared=prepared,
                    may_retry=attempt < START_ATTEMPTS,
                )
            except _TransientStartError as transient:
                self.stats.record_retry(
                    {
                        "test": spec.test,
                        "worker": self.worker,
                        "attempt": attempt,
                        "reason": _first_line(transient.error),
                        "logs": [entry.to_dict() for entry in attached(transient.error)],
                    }
                )
                log.warning(
                    "vcluster start %d of %d failed for a transient reason, starting a new one: "
                    "%s", attempt, START_ATTEMPTS, transient.error,
                )  # fmt: skip
                continue
            if spec.recycle and not handle.reused and handle._baseline is None:
                self._take_baseline(handle)
            if spec.manifests:
                self._apply_manifests(handle, spec, teardown_on_error)
            return handle
        raise AssertionError("unreachable: the last attempt never retries")  # pragma: no cover

    def _take_baseline(self, handle: VCluster) -> None:
        """Record what a fresh cluster holds, so that it can be recycled after its test.

        Before the marker's manifests: a recycled cluster gets them applied again. A cluster
        without a baseline is simply deleted after its test, so a failure here is no error.
        """
        try:
            handle._baseline = take_baseline(
                handle.api_client,
                self.host_api,
                handle.namespace,
                timeout=self.settings.reset_timeout,
                stop=interrupts.cancel,
            )
        except RunInterruptedError:
            raise
        except Exception as exc:  # noqa: BLE001 - not recyclable, nothing worse
            log.warning("vcluster %s cannot be recycled: %s", handle.name, exc)
            return
        log.info(
            "vcluster %s baseline: %d objects in %.2fs",
            handle.name, len(handle._baseline.inventory), handle._baseline.seconds,
        )  # fmt: skip

    def _seeds_for(self, spec: VClusterSpec) -> SeedStore | None:
        """Where seeds of ``spec`` are kept, if its clusters may start from one."""
        if self.seeds is None or self.settings.create_with is not CreateWith.API:
            return None
        return self.seeds if seed_applies(spec.values) else None

    def _seed_key(self, spec: VClusterSpec) -> str:
        # The host too: a seed holds nothing of it, but another host may serve other images.
        return f"{spec.spec_hash}-{short_hash(self.host.cli_flags(), 8)}-v{SEED_FORMAT}"

    def _seed_for(self, spec: VClusterSpec) -> bytes | None:
        seeds = self._seeds_for(spec)
        return seeds.get(self._seed_key(spec)) if seeds is not None else None

    def _capture_seed(self, handle: VCluster, spec: VClusterSpec, timer: PhaseTimer) -> None:
        """Make the seed of ``spec`` from ``handle``, a fresh cluster nobody used yet, when
        there is none: once per spec and machine, before its test gets it. A failure only
        means that later clusters start without a seed, as before."""
        seeds, key = self._seeds_for(spec), self._seed_key(spec)
        if seeds is None or seeds.get(key) is not None:
            return
        started = time.monotonic()
        try:
            store, wal = capture_store(self._host_core, handle.name, handle.namespace)
            seed = make_seed(store, wal)
            seeds.put(key, seed)
        except Exception as exc:  # noqa: BLE001 - no seed, no harm: the next fresh one tries
            log.warning("cannot make a seed from vcluster %s: %s", handle.name, exc)
            return
        # Its own phase: this create took longer than the ones it speeds up.
        timer.mark("seed")
        log.info(
            "vcluster %s: seed %s made (%d kB) in %.2fs",
            handle.name, key, len(seed) // 1024, time.monotonic() - started,
        )  # fmt: skip

    def can_recycle(self, handle: VCluster) -> bool:
        """True if ``handle`` may be reset and handed on: it has a baseline, it was never
        paused (its control plane restarted), and this manager still holds its connection."""
        with self._lock:
            connected = handle.name in self._connections
        return connected and handle._baseline is not None and not handle._was_paused

    def recycle(self, handle: VCluster, spec: VClusterSpec) -> RecycleResult:
        """Reset ``handle`` to its baseline and prove it; on success it is ready for the next
        test of ``spec`` (the marker's manifests applied again). On failure nothing is torn
        down: the caller deletes it (:meth:`finish`)."""
        baseline = handle._baseline
        if baseline is None or not self.can_recycle(handle):
            return RecycleResult(False, ("no baseline, paused, or not connected",), 0.0)
        self._track(handle.name, handle.namespace, "resetting")
        result = self._reset(handle, baseline)
        if result.recycled and spec.manifests:
            try:
                _apply_spec_manifests(handle, spec)
            except VClusterError as exc:
                result = RecycleResult(
                    False, (f"applying the manifests again: {exc}",), result.seconds
                )
        self.stats.record_reset(
            {
                "name": handle.name,
                "test": spec.test,
                "seconds": round(result.seconds, 3),
                "clean": result.recycled,
                "reasons": list(result.reasons[:10]),
                "hold_seconds": result.auth_cache_seconds,
                "phases": result.phases(),
                # What the baseline cost its cluster's setup, once, when it was new.
                "baseline_seconds": round(baseline.seconds, 3),
            }
        )
        if result.recycled:
            handle.recycled = True
            # Adopted warm for an earlier test: for the next one, recycled within this run.
            handle.warm = False
            handle.tests_before += 1
            self._track(handle.name, handle.namespace, "in use")
            self.stats.record("recycled")
            log.info("vcluster %s recycled in %.2fs", handle.name, result.seconds)
        else:
            log.info(
                "vcluster %s not recycled (deleted instead): %s",
                handle.name, "; ".join(result.reasons[:3]),
            )  # fmt: skip
        return result

    def _reset(
        self,
        handle: VCluster,
        baseline: Baseline,
        *,
        auth_cache: float = AUTH_CACHE_SECONDS,
        idle_since: float | None = None,
    ) -> RecycleResult:
        """:func:`~pytest_vcluster.cluster.recycling.reset_to_baseline` on ``handle``, within
        ``--vcluster-reset-timeout``, stopped by an interrupt."""
        return reset_to_baseline(
            handle.api_client,
            self.host_api,
            handle.namespace,
            baseline,
            timeout=self.settings.reset_timeout,
            stop=interrupts.cancel,
            auth_cache=auth_cache,
            idle_since=idle_since,
        )

    # -- the warm pool ---------------------------------------------------------------------

    def parks(self, spec: VClusterSpec) -> bool:
        """True if clusters of ``spec`` go to the warm pool when no test wants them, and come
        from it: the pool is on, the spec may be recycled, and its store is an emptyDir (a
        persistent cluster may be paused, and paused ones are resumed, not adopted)."""
        return self.settings.warm_pool > 0 and spec.recycle and not spec.persistent

    def park(self, handle: VCluster, *, used: bool) -> None:
        """Reset ``handle`` to its baseline, prove it, and leave it running on the host, warm,
        for a later run (or another worker) to adopt; ``used`` says a test had it since its
        last reset. The cluster is deleted instead when the warm pool of its spec is full or
        the reset is not proven. Errors are recorded, not raised."""
        started = time.monotonic()
        baseline = handle._baseline
        if (
            baseline is None
            or not self.can_recycle(handle)
            # Cluster-scoped objects only this process knows of would outlive a later delete.
            or not self._driver().deletable_elsewhere(handle.name)
            or self._warm_pool_full(handle)
        ):
            self.finish(handle, TeardownAction.DELETE)
            return
        self._track(handle.name, handle.namespace, "parking")
        try:
            # A later run waits out the token caches itself, from the parking time on.
            result = self._reset(handle, baseline, auth_cache=0.0)
        except RunInterruptedError:
            result = RecycleResult(False, ("the run was interrupted",), 0.0)
        if not result.recycled:
            log.info(
                "vcluster %s not parked warm (deleted instead): %s",
                handle.name, "; ".join(result.reasons[:3]),
            )  # fmt: skip
            self.finish(handle, TeardownAction.DELETE)
            return
        with self._park_lock:
            if self._warm_pool_full(handle):
                self.finish(handle, TeardownAction.DELETE)
                return
            with self._lock:
                connection = self._connections.pop(handle.name, None)
            if connection is not None:
                connection.close()
            error: str | None = None
            try:
                idle = time.monotonic() - (result.last_use or time.monotonic())
                self.warm.park(
                    handle.namespace, baseline, handle.tests_before + int(used), idle_for=idle
                )
            except VClusterError as exc:
                error = str(exc)
                log.warning("cannot park vcluster %s warm, deleting it: %s", handle.name, exc)
                with contextlib.suppress(Exception):
                    self.delete(handle.name, handle.namespace)
            else:
                self._untrack(handle.name)
                self.stats.record("parked")
                log.info("vcluster %s parked warm in %.2fs", handle.name, result.seconds)
        self.stats.record_teardown(handle.name, "park", time.monotonic() - started, error)

    def _warm_pool_full(self, handle: VCluster) -> bool:
        try:
            return self.warm.count(handle.spec_hash) >= self.settings.warm_pool
        except VClusterError as exc:
            log.warning("%s; deleting vcluster %s instead of parking it", exc, handle.name)
            return True

    def _adopt_warm(
        self, spec: VClusterSpec, deadline: Deadline, timer: PhaseTimer, *, prepared: bool
    ) -> VCluster | None:
        """A warm cluster of ``spec``, claimed and proven against its stored baseline, or
        None (none there, or none proven: those are deleted)."""
        for _ in range(WARM_CLAIMS):
            if interrupts.interrupted:
                raise RunInterruptedError("not adopting a warm vcluster: the run was interrupted")
            claim = self.warm.claim(spec.spec_hash, spec.test)
            if claim is None:
                return None
            handle = self._prove_warm(claim, spec, deadline, timer)
            if handle is not None:
                self._track(handle.name, handle.namespace, "in use")
                self._record_ready(handle, "adopted", timer, prepared=prepared)
                log.info(
                    "vcluster %s/%s adopted warm, ready in %.1fs",
                    handle.namespace, handle.name, timer.elapsed,
                )  # fmt: skip
                return handle
        return None

    def _prove_warm(
        self, claim: WarmClaim, spec: VClusterSpec, deadline: Deadline, timer: PhaseTimer
    ) -> VCluster | None:
        # Counted from the claim: the caches forget the last test hold_seconds from now.
        idle_since = time.monotonic() + claim.hold_seconds - AUTH_CACHE_SECONDS
        self._track(claim.name, claim.namespace, "starting")
        reasons = [claim.problem] if claim.problem else []
        handle: VCluster | None = None
        if claim.baseline is not None and not reasons:
            try:
                handle = self._connect(
                    claim.name, claim.namespace, spec, deadline, timer, reused=False
                )
                result = self._reset(handle, claim.baseline, idle_since=idle_since)
                reasons = list(result.reasons)
                timer.mark("proven")
            except Exception as exc:  # any failure: deleted, a new one made
                if isinstance(exc, RunInterruptedError):
                    self._cleanup_failed(claim.name, claim.namespace, TeardownMode.DELETE,
                                         resumed=False)  # fmt: skip
                    raise
                reasons = [str(exc) if isinstance(exc, VClusterError) else repr(exc)]
            except BaseException:
                self._cleanup_failed(claim.name, claim.namespace, TeardownMode.DELETE,
                                     resumed=False)  # fmt: skip
                raise
        if handle is not None and not reasons:
            handle.recycled = True
            handle.warm = True
            handle.tests_before = claim.tests_before
            handle._baseline = claim.baseline
            return handle
        log.warning(
            "warm vcluster %s not adopted (deleted instead): %s",
            claim.name, (reasons or ["?"])[0],
        )  # fmt: skip
        self._cleanup_failed(claim.name, claim.namespace, TeardownMode.DELETE, resumed=False)
        return None

    def _apply_manifests(
        self, handle: VCluster, spec: VClusterSpec, teardown_on_error: TeardownMode
    ) -> None:
        """Apply the marker's manifests inside a ready cluster, as part of its setup.

        Here, not in the test: a cluster prepared ahead carries them when its test starts. A
        manifest the API refuses fails the setup, and the cluster goes as a failed test's would.
        """
        try:
            _apply_spec_manifests(handle, spec)
        except BaseException:
            with interrupts.shielded():
                self.finish(handle, decide_teardown(teardown_on_error, failed=True))
            raise

    def _create_once(
        self,
        spec: VClusterSpec,
        *,
        teardown_on_error: TeardownMode,
        prepared: bool,
        may_retry: bool,
    ) -> VCluster:
        if interrupts.interrupted:
            raise RunInterruptedError("not creating a vcluster: the run was interrupted")
        deadline = Deadline(spec.ready_timeout, stop=interrupts.cancel)
        timer = PhaseTimer()
        if self.parks(spec):
            adopted = self._adopt_warm(spec, deadline, timer, prepared=prepared)
            if adopted is not None:
                return adopted
            timer = PhaseTimer()
        reused = self.namespaces.claim_paused(spec.spec_hash, spec.slot, spec.test)
        if reused is not None:
            name, namespace = reused
            event = "resumed"
        else:
            name = self._next_name(spec)
            namespace = name
            event = "created"
        self._track(name, namespace, "starting")
        try:
            if reused is not None:
                pausing.resume(self.host_api, name, namespace)
                timer.mark("scaled")
                handle = self._connect(name, namespace, spec, deadline, timer, reused=True)
            else:
                handle = self._start_new(name, spec, deadline, timer)
        except VClusterError as exc:
            # Before anything is deleted: a crashed container's own words go with the error.
            attach(exc, self._restarted_logs(name, namespace))
            retry = may_retry and reused is None and is_transient(exc, attached(exc))
            if not retry:
                self.stats.record("failed")
            # The first line: the error itself, with the crashed logs, goes to the report.
            log.warning("vcluster %s/%s failed to start: %s", namespace, name, _first_line(exc))
            mode = TeardownMode.DELETE if retry else teardown_on_error
            self._cleanup_failed(name, namespace, mode, resumed=reused is not None)
            if retry:
                raise _TransientStartError(exc) from exc
            raise
        except Exception as exc:
            self.stats.record("failed")
            self._cleanup_failed(name, namespace, teardown_on_error, resumed=reused is not None)
            raise api_error(f"vcluster {name} in {namespace} failed to start", exc) from exc
        except BaseException:
            # Ctrl-C while this thread waited: what it made goes before the run ends.
            self._cleanup_failed(name, namespace, TeardownMode.DELETE, resumed=reused is not None)
            raise
        self._track(name, namespace, "in use")
        self._record_ready(
            handle, event, timer, prepared=prepared, restarts=self._restarted_logs(name, namespace)
        )
        log.info("vcluster %s/%s %s, ready in %.1fs", namespace, name, event, timer.elapsed)
        return handle

    def _start_new(
        self, name: str, spec: VClusterSpec, deadline: Deadline, timer: PhaseTimer
    ) -> VCluster:
        """Make the namespace and objects of a new cluster (from a seed when there is one) and
        connect to it; the first unseeded cluster of a spec leaves its seed."""
        namespace = name
        labels = self.namespaces.labels(name, spec.spec_hash, spec.slot)
        self.namespaces.create(namespace, labels, spec.test)
        seeded = self._driver().create_objects(
            name,
            namespace,
            spec,
            labels=labels,
            directory=self._directory(name),
            deadline=deadline,
            seed=self._seed_for(spec),
        )
        timer.mark("objects")
        handle = self._connect(name, namespace, spec, deadline, timer, reused=False)
        handle.seeded = seeded
        if not seeded:
            self._capture_seed(handle, spec, timer)
        return handle

    def _restarted_logs(self, name: str, namespace: str) -> list[ContainerLog]:
        """The logs of this cluster's control-plane containers that restarted or exited."""
        try:
            core = self._host_core
        except Exception as exc:  # noqa: BLE001 - no host client, no evidence: the error stands
            log.info("cannot read the control plane's logs: %s", exc)
            return []
        return read_restarted_logs(core, namespace, control_plane_selector(name))

    def hand_over(self, handle: VCluster, test: str) -> None:
        """Record on the host that ``test`` now holds a cluster prepared for another one."""
        try:
            self.namespaces.annotate_test(handle.namespace, test)
        except VClusterError as exc:
            # Only diagnostics and `pytest-vcluster ls` read it: not worth failing a test for.
            log.warning("%s", exc)

    def finish(self, handle: VCluster, action: TeardownAction) -> None:
        """Tear a vcluster down: delete, pause or keep it. Errors are recorded, not raised."""
        with self._lock:
            connection = self._connections.pop(handle.name, None)
        if connection is None:
            return
        connection.close()
        started = time.monotonic()
        error: str | None = None
        self._track(handle.name, handle.namespace, {
            TeardownAction.DELETE: "deleting", TeardownAction.PAUSE: "pausing",
            TeardownAction.KEEP: "in use",
        }[action])  # fmt: skip
        try:
            if action is TeardownAction.DELETE:
                self.delete(handle.name, handle.namespace)
            elif action is TeardownAction.PAUSE:
                pausing.pause(self.host_api, handle.name, handle.namespace)
                self.namespaces.mark(handle.namespace, "paused")
                self._untrack(handle.name)
                self.stats.record("paused")
            else:
                # Decided: this cluster stays. Untracked first, so that a failed label below
                # never makes close() delete it as stranded.
                self._untrack(handle.name)
                self.stats.record("kept")
                self._mark_kept(handle.namespace)
                log.warning(
                    "kept vcluster %s in namespace %s; connect with "
                    "'vcluster connect %s -n %s --driver helm'",
                    handle.name, handle.namespace, handle.name, handle.namespace,
                )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - teardown never hides the test's own outcome
            error = f"{type(exc).__name__}: {exc}"
            log.warning("teardown (%s) of vcluster %s failed: %s", action.value, handle.name, exc)
        self.stats.record_teardown(handle.name, action.value, time.monotonic() - started, error)

    def delete(self, name: str, namespace: str) -> None:
        """Delete the cluster's objects and namespace, and wait until the namespace is gone."""
        deadline = Deadline(self.settings.delete_timeout, stop=interrupts.abandon)
        self._driver().delete_objects(name, namespace, deadline)
        self.namespaces.begin_delete(namespace)
        self.namespaces.wait_gone(namespace, deadline)
        self._untrack(name)
        self.stats.record("deleted")

    def pause(self, handle: VCluster) -> None:
        """Pause a vcluster that stays connected (the forward reconnects on resume)."""
        if not handle.persistent:
            raise VClusterError(
                f"vcluster {handle.name} keeps its store in an emptyDir, so pausing would lose "
                "its state: ask for a persistent cluster with "
                "@pytest.mark.vcluster(persistent=True) or vcluster_factory(persistent=True)"
            )
        handle._was_paused = True
        pausing.pause(self.host_api, handle.name, handle.namespace)
        self.namespaces.mark(handle.namespace, "paused")
        self.stats.record("paused")

    def resume(self, handle: VCluster, timeout: float | None = None) -> None:
        """Resume a paused vcluster and wait until it is ready again."""
        deadline = Deadline(timeout or self.settings.ready_timeout, stop=interrupts.cancel)
        timer = PhaseTimer()
        pausing.resume(self.host_api, handle.name, handle.namespace)
        self.namespaces.mark(handle.namespace, "active")
        timer.mark("scaled")
        wait_for(self._pod_probes(handle.name, handle.namespace), deadline, timer)
        wait_for(
            self._inside_probes(handle.api_client, handle.name, handle.namespace), deadline, timer
        )
        self._record_ready(handle, "resumed", timer, prepared=False)

    def _record_ready(
        self,
        handle: VCluster,
        event: str,
        timer: PhaseTimer,
        *,
        prepared: bool,
        restarts: list[ContainerLog] | None = None,
    ) -> None:
        """Note on the handle and in the stats how a cluster became ready."""
        handle.ready_seconds = round(timer.elapsed, 3)
        handle.phases = tuple(timer.phases)
        # An adoption is no start: its time would only blur the create and resume figures.
        self.stats.record(event, None if event == "adopted" else timer.elapsed)
        self.stats.record_cluster(
            {
                "name": handle.name,
                "namespace": handle.namespace,
                "event": event,
                "prepared": prepared,
                "spec_hash": handle.spec_hash,
                "version": handle.version,
                "worker": self.worker,
                "ready_seconds": handle.ready_seconds,
                "seeded": handle.seeded,
                "phases": [list(phase) for phase in timer.phases],
                # A start that survived a crash: what the container said before it exited.
                "restarts": [entry.to_dict() for entry in restarts or []],
            }
        )
        if restarts:
            log.warning(
                "vcluster %s became ready after a crash: %s",
                handle.name, "; ".join(f"{entry.title}: {entry.tail(3)}" for entry in restarts),
            )  # fmt: skip

    def close(self) -> None:
        """Delete what no teardown took care of, close every connection, end the run lease.

        Every cluster handed out is finished by its fixture before this runs; a cluster
        still here was cut off from its owner (an interrupt between its creation and its
        hand-over), so it is deleted.
        """
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
            stranded = [
                (name, namespace)
                for name, (namespace, state) in self._made.items()
                if state in ("starting", "in use")
            ]
        for connection in connections:
            connection.close()
        for name, namespace in stranded:
            if interrupts.abandon.is_set():
                break
            try:
                self.delete(name, namespace)
            except Exception as exc:  # noqa: BLE001 - listed as left over below
                log.warning("cannot delete stranded vcluster %s: %s", name, exc)
        if self._run_lease is not None:
            self._run_lease.close()
            self._run_lease = None
        if self._keys is not None:
            self._keys.stop()
        if self._host_api is not None:
            self._host_api.close()  # type: ignore[no-untyped-call]
            self._host_api = None

    # -- readiness and connection -----------------------------------------------------------

    @property
    def _host_core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.host_api)

    def _pod_probes(self, name: str, namespace: str) -> list[Probe]:
        """Phases seen on the host: the control-plane pod scheduled, then initialized."""
        selector = control_plane_selector(name)
        return [
            pod_scheduled(self._host_core, namespace, selector),
            pod_initialized(self._host_core, namespace, selector),
        ]

    def _inside_probes(self, api: client.ApiClient, name: str, namespace: str) -> list[Probe]:
        """Phases seen through the cluster's own API (CoreDNS also by its pod on the host)."""
        return [
            readyz(api),
            service_account(api),
            coredns_ready(api, self._host_core, namespace, name),
        ]

    def _connect(
        self,
        name: str,
        namespace: str,
        spec: VClusterSpec,
        deadline: Deadline,
        timer: PhaseTimer,
        *,
        reused: bool,
    ) -> VCluster:
        selector = control_plane_selector(name)
        found: dict[str, str] = {}
        secret = kubeconfig_secret(self._host_core, namespace, name, found, selector)
        wait_for([*self._pod_probes(name, namespace), secret], deadline, timer)
        connection = Connection(self._new_host_api, namespace, selector, self._directory(name))
        with self._lock:
            self._connections[name] = connection
        connection.open(found["config"])
        api = connection.api_client
        try:
            wait_for(self._inside_probes(api, name, namespace), deadline, timer)
            version = client.VersionApi(api).get_code(_request_timeout=API_TIMEOUT)
        except WaitTimeoutError as exc:
            forward_error = connection.forward_error()
            if forward_error:
                exc.args = (f"{exc.args[0]}; port forward: {forward_error}",)
            raise
        handle = VCluster(
            name=name,
            namespace=namespace,
            version=str(version.git_version),
            requested_version=spec.version,
            kubeconfig=connection.kubeconfig,
            api_client=api,
            spec_hash=spec.spec_hash,
            reused=reused,
            # Only persistent clusters are ever paused, so a resumed one is persistent.
            persistent=spec.persistent or reused,
            helm_binary=self.settings.helm_binary,
        )
        handle._pause = lambda: self.pause(handle)
        handle._resume = lambda: self.resume(handle)
        return handle

    # -- removal --------------------------------------------------------------------------

    def _cleanup_failed(
        self, name: str, namespace: str, mode: TeardownMode, *, resumed: bool
    ) -> None:
        with self._lock:
            connection = self._connections.pop(name, None)
        if connection is not None:
            connection.close()
        with interrupts.shielded():
            if resumed:
                self._restore_paused(name, namespace)
            else:
                self._remove_failed(name, namespace, mode)

    def _restore_paused(self, name: str, namespace: str) -> None:
        # A paused cluster was left by someone on purpose: a failed resume puts it back as
        # it was (paused) for a person to inspect, instead of deleting it.
        try:
            pausing.pause(self.host_api, name, namespace)
            self.namespaces.mark(namespace, "paused")
            self._untrack(name)
            log.warning("resuming vcluster %s failed; paused again in %s", name, namespace)
        except Exception as exc:  # noqa: BLE001 - the resume error is the one to report
            log.warning("cannot pause vcluster %s again after its failed resume: %s", name, exc)

    def _remove_failed(self, name: str, namespace: str, mode: TeardownMode) -> None:
        if decide_teardown(mode, failed=True) is TeardownAction.DELETE:
            try:
                self.delete(name, namespace)
            except Exception as exc:  # noqa: BLE001 - the start error is the one to report
                log.warning("cannot delete vcluster %s after its failed start: %s", name, exc)
        else:
            self._untrack(name)
            try:
                self._mark_kept(namespace)
            except Exception as exc:  # noqa: BLE001 - the start error is the one to report
                log.info("cannot label vcluster %s kept: %s", name, exc)
            self.stats.record("kept")
            log.warning("setup of vcluster %s failed; kept in namespace %s", name, namespace)

    def _mark_kept(self, namespace: str, attempts: int = 3) -> None:
        """Label a kept cluster's namespace (the reaper spares it); a few tries, as the label
        is all that tells a later reaper to spare it."""
        for attempt in range(attempts):
            try:
                self.namespaces.mark(namespace, "kept")
            except Exception as exc:
                if attempt + 1 == attempts:
                    raise VClusterError(
                        f"kept namespace {namespace} but could not label it kept ({exc}); "
                        f"a later reap may remove it: label it with `kubectl label namespace "
                        f"{namespace} {LABEL_STATE}=kept --overwrite`"
                    ) from exc
                time.sleep(0.5 * (attempt + 1))
            else:
                return
