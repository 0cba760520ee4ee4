"""Lookahead provisioning and background teardown of the clusters of one pytest process.

After collection the plugin knows which tests need a fresh cluster and of which spec. At the
start of each test, :meth:`ClusterPool.plan` gets the tests this process will run next (under
xdist: the ones the controller has already handed to this worker) and starts creating
clusters for the first ``lookahead`` of them that have none yet, at most ``parallel`` at a
time, in background threads. :meth:`ClusterPool.take` gives a test the cluster made for it:
ready already, still starting (then it waits), or, when nothing was prepared, one created on
the spot. Each prepared cluster goes to one test only; clusters nobody took are deleted at
the end. :meth:`ClusterPool.release` tears a cluster down in the background while the next
test runs, and :meth:`ClusterPool.close` waits for every teardown and reports failures.

Recycling: a cluster that would be deleted after its test, while a later test of this
process wants one of the same spec, is reset to its baseline in the background instead
(:meth:`Manager.recycle`). Until the reset is proven it is a spare like any other preparation,
so the lookahead assigns it to an upcoming test rather than creating one, and a create still
queued for that test is cancelled. A reset that fails deletes the cluster, and whoever waited
for it gets a new one.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.cluster.lifecycle import TeardownAction
from pytest_vcluster.cluster.recycling import RecycleResult
from pytest_vcluster.core.errors import VClusterError
from pytest_vcluster.core.interrupts import interrupts
from pytest_vcluster.core.progress import Progress
from pytest_vcluster.pool.upcoming import Entry, UpcomingView, as_view
from pytest_vcluster.settings.config import TeardownMode
from pytest_vcluster.settings.request import VClusterSpec

__all__ = ["ClusterPool", "Manager", "Taken", "Upcoming"]

log = logging.getLogger(__name__)

#: A test this process will run and the spec of the cluster it needs (``None``: none known).
Upcoming = Entry

#: After this many failed preparations of one spec, its tests create their own clusters.
_MAX_FAILED_PREPARATIONS = 2


class Manager(Protocol):
    """What the pool needs from :class:`~pytest_vcluster.cluster.lifecycle.VClusterManager`."""

    def create(
        self, spec: VClusterSpec, *, teardown_on_error: TeardownMode, prepared: bool = False
    ) -> VCluster: ...

    def finish(self, handle: VCluster, action: TeardownAction) -> None: ...

    def hand_over(self, handle: VCluster, test: str) -> None: ...

    def can_recycle(self, handle: VCluster) -> bool: ...

    def recycle(self, handle: VCluster, spec: VClusterSpec) -> RecycleResult: ...

    def parks(self, spec: VClusterSpec) -> bool: ...

    def park(self, handle: VCluster, *, used: bool) -> None: ...


class _NotRecycled(Exception):
    """A reset that did not prove the cluster clean: it is deleted, a new one takes its place."""


def _interchangeable(made: VClusterSpec, wanted: VClusterSpec) -> bool:
    # The spec hash leaves the volume choice out (for resuming paused clusters); a prepared
    # emptyDir cluster must still not go to a test that may pause it.
    return made.spec_hash == wanted.spec_hash and made.persistent == wanted.persistent


@dataclass
class _Preparation:
    nodeid: str
    spec: VClusterSpec
    future: concurrent.futures.Future[VCluster]
    #: The cluster being reset for recycling (None: a create). A reset is never cancelled,
    #: or nobody would delete its cluster.
    recycling: VCluster | None = None

    @property
    def ready(self) -> bool:
        """Done, with a cluster to hand over."""
        return self.future.done() and not self.future.cancelled() and not self.future.exception()

    def fits(self, spec: VClusterSpec) -> bool:
        """True if this preparation may serve a test of ``spec``."""
        return _interchangeable(self.spec, spec) and (spec.recycle or self.recycling is None)


@dataclass(frozen=True)
class Taken:
    """A cluster handed to a test, and where it came from (``prepared`` or ``created``)."""

    handle: VCluster
    source: str
    wait_seconds: float


@dataclass
class ClusterPool:
    """Prepares clusters ahead of the tests that need them; tears clusters down behind them."""

    manager: Manager
    #: The tests to come, the current one first: a view, or an explicit list of entries.
    upcoming: Callable[[], UpcomingView | Sequence[Upcoming]]
    lookahead: int = 2
    parallel: int = 1
    teardown_workers: int = 4
    progress: Progress = field(default_factory=Progress)
    #: The teardown mode of a test by node id: a prepared cluster that fails to start is kept
    #: when its test's mode keeps failed clusters (``keep-on-failure``).
    teardown_of: Callable[[str], TeardownMode] = lambda nodeid: TeardownMode.DELETE
    _preparations: dict[str, _Preparation] = field(default_factory=dict)
    _failures: dict[str, int] = field(default_factory=dict)
    _teardowns: list[concurrent.futures.Future[None]] = field(default_factory=list)
    # Preparations a test stopped waiting for (Ctrl-C): nobody else owns their clusters.
    _stranded: list[_Preparation] = field(default_factory=list)
    # Reentrant: a future that is done already runs its callback (which locks) at once.
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _closed: bool = False
    #: The spec each handed-out cluster was taken for (what :meth:`release` recycles it as).
    _specs: dict[VCluster, VClusterSpec] = field(default_factory=dict)
    _recycles: int = 0
    #: Preparations :meth:`plan` left for later: the current test was creating its own.
    _held_back: bool = False

    def __post_init__(self) -> None:
        self._creators = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, self.parallel), thread_name_prefix="pytest-vcluster-prepare"
        )
        self._reapers = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, self.teardown_workers), thread_name_prefix="pytest-vcluster-teardown"
        )

    # -- lookahead ------------------------------------------------------------------------

    def plan(self) -> None:
        """Start preparing clusters for the next ``lookahead`` tests after the current one.

        The first entry of :attr:`upcoming` is the test about to run: it takes its cluster
        with :meth:`take`, so only the entries after it are prepared here.
        """
        self._plan(current_served=False)

    def _plan(self, *, current_served: bool) -> None:
        if self.lookahead <= 0 or self._closed or interrupts.interrupted:
            return
        view = as_view(self.upcoming())
        wanted = view.wanted(self.lookahead)
        with self._lock:
            # A test that must create its own cluster now is waiting, and creates share the
            # host's CPU: it takes one of the ``parallel`` slots, and goes first. What it
            # holds back is planned once it has its cluster (see take).
            self._held_back = False
            slots = None
            if not current_served and self._creates_own(view):
                slots = self.parallel - 1
            for nodeid, spec in wanted:
                existing = self._preparations.get(nodeid)
                if existing is not None:
                    self._prefer_recycled(existing, spec, view.will_run)
                    continue
                if self._failures.get(spec.spec_hash, 0) >= _MAX_FAILED_PREPARATIONS:
                    continue
                spare = self._spare_for(spec, view.will_run)
                if spare is not None:
                    # A cluster made for a test that will not run here serves this one.
                    self._reassign(spare, nodeid)
                    continue
                if slots is not None and self._creating() >= slots:
                    self._held_back = True
                    continue
                self._submit(nodeid, spec)

    def _creates_own(self, view: UpcomingView) -> bool:
        """True if the current test needs a cluster that nothing here is preparing: its
        setup creates one (or adopts a warm one) while it waits."""
        nodeid, spec = view.current() or ("", None)
        return spec is not None and self._cluster_for(nodeid, spec, view.will_run) is None

    def _cluster_for(
        self, nodeid: str, spec: VClusterSpec, will_run: Callable[[str], bool]
    ) -> _Preparation | None:
        """The preparation :meth:`take` hands to ``nodeid``: its own if ready, else a ready
        spare (a recycled one), else its own still starting, else a pending spare."""
        preparation = self._preparations.get(nodeid)
        if preparation is not None and not preparation.fits(spec):
            preparation = None
        if preparation is None or not preparation.ready:
            # A cluster ready now beats one still starting, even a recycled one planned for a
            # later test: that test is planned again. Its own preparation, if any, stays as a
            # spare for a later test.
            ready = self._ready_for(spec, will_run, taker=nodeid)
            spare = self._spare_for(spec, will_run, taker=nodeid)
            preparation = ready or preparation or spare
        return preparation

    def _creating(self) -> int:
        """Creates submitted and not finished (a reset is not one)."""
        return sum(
            1
            for preparation in self._preparations.values()
            if preparation.recycling is None and not preparation.future.done()
        )

    def _prefer_recycled(
        self, existing: _Preparation, spec: VClusterSpec, will_run: Callable[[str], bool]
    ) -> None:
        """Give a test whose create has not started a cluster being recycled instead."""
        if existing.recycling is not None or not spec.recycle or existing.future.running():
            return
        spare = self._spare_for(spec, will_run, recycled_only=True)
        if spare is not None and existing.future.cancel():
            del self._preparations[existing.nodeid]
            self._reassign(spare, existing.nodeid)

    def _reassign(self, preparation: _Preparation, nodeid: str) -> None:
        del self._preparations[preparation.nodeid]
        preparation.nodeid = nodeid
        self._preparations[nodeid] = preparation

    def _spare_for(
        self,
        spec: VClusterSpec,
        will_run: Callable[[str], bool],
        taker: str | None = None,
        *,
        recycled_only: bool = False,
    ) -> _Preparation | None:
        """A cluster prepared for a test that will not run here (any more) or being recycled,
        that fits ``spec``: one ready first, then one being recycled, then any."""
        found = [
            preparation
            for preparation in self._preparations.values()
            if preparation.nodeid != taker
            and not will_run(preparation.nodeid)
            and preparation.fits(spec)
            and (preparation.recycling is not None or not recycled_only)
        ]
        found.sort(key=lambda p: (not p.ready, p.recycling is None))
        return found[0] if found else None

    def _ready_for(
        self, spec: VClusterSpec, will_run: Callable[[str], bool], taker: str
    ) -> _Preparation | None:
        """A ready cluster that fits ``spec``: a spare first, else a recycled one planned for a
        later test (a new one starting for that test is as good for it, and not ready yet)."""
        found = [
            preparation
            for preparation in self._preparations.values()
            if preparation.nodeid != taker
            and preparation.ready
            and preparation.fits(spec)
            and (preparation.recycling is not None or not will_run(preparation.nodeid))
        ]
        found.sort(key=lambda p: (will_run(p.nodeid), p.recycling is None))
        return found[0] if found else None

    def _submit(self, nodeid: str, spec: VClusterSpec) -> None:
        teardown_on_error = self.teardown_of(nodeid)

        def prepare() -> VCluster:
            return self.manager.create(spec, teardown_on_error=teardown_on_error, prepared=True)

        future = self._creators.submit(prepare)
        self._preparations[nodeid] = _Preparation(nodeid, spec, future)
        future.add_done_callback(lambda done: self._note_failure(spec, done))

    def _note_failure(self, spec: VClusterSpec, done: concurrent.futures.Future[VCluster]) -> None:
        if not done.cancelled() and done.exception() is not None:
            self._count_failure(spec)

    def _count_failure(self, spec: VClusterSpec) -> None:
        with self._lock:
            self._failures[spec.spec_hash] = self._failures.get(spec.spec_hash, 0) + 1

    # -- taking and giving back -----------------------------------------------------------

    def take(self, nodeid: str, spec: VClusterSpec, teardown_on_error: TeardownMode) -> Taken:
        """The cluster for this test: prepared for it, a ready spare (a recycled one), a
        pending spare, or a new one."""
        started = time.monotonic()
        with self._lock:
            preparation = self._cluster_for(nodeid, spec, as_view(self.upcoming()).will_run)
            if preparation is not None:
                del self._preparations[preparation.nodeid]
        what = f"the vcluster of {nodeid}"
        got: list[VCluster] = []
        # A create that has not started yet is cancelled: creating here is as fast. A reset
        # is never cancelled (its cluster would be left), only waited for.
        if preparation is not None and (
            preparation.recycling is not None or not preparation.future.cancel()
        ):
            try:
                with self.progress.waiting(what, lambda: _phases(got)):
                    handle = preparation.future.result()
                    got.append(handle)
            except _NotRecycled:
                pass  # deleted; a new one below
            except BaseException as exc:
                if not isinstance(exc, VClusterError):
                    with self._lock:
                        self._stranded.append(preparation)
                    raise
                raise VClusterError(
                    f"the vcluster prepared ahead for this test failed: {exc}"
                ) from exc
            else:
                if preparation.spec.test != spec.test:
                    self.manager.hand_over(handle, spec.test)
                source = "prepared" if preparation.recycling is None else "recycled"
                return self._taken(handle, spec, "warm" if handle.warm else source, started)
        try:
            with self.progress.waiting(what, lambda: _phases(got)):
                handle = self.manager.create(spec, teardown_on_error=teardown_on_error)
                got.append(handle)
        except Exception:
            self._count_failure(spec)
            raise
        finally:
            self._plan_held_back()
        source = "warm" if handle.warm else "resumed" if handle.reused else "created"
        return self._taken(handle, spec, source, started)

    def _plan_held_back(self) -> None:
        """Plan what :meth:`plan` held back while this test created its own cluster."""
        with self._lock:
            held_back, self._held_back = self._held_back, False
        if held_back:
            self._plan(current_served=True)

    def _taken(self, handle: VCluster, spec: VClusterSpec, source: str, started: float) -> Taken:
        with self._lock:
            self._specs[handle] = spec
        return Taken(handle, source, time.monotonic() - started)

    def release(self, handle: VCluster, action: TeardownAction) -> None:
        """Tear ``handle`` down in the background (synchronously once closed), or recycle it
        when it would be deleted and a later test wants a cluster of its spec."""
        with self._lock:
            spec = self._specs.pop(handle, None)
            if (
                action is TeardownAction.DELETE
                and spec is not None
                and self._recyclable(handle, spec)
            ):
                self._start_recycling(handle, spec)
                return
            if (
                action is TeardownAction.DELETE
                and spec is not None
                and self._parkable(handle, spec)
            ):
                self._park(handle, used=True)
                return
        self._finish(handle, action)

    def _parkable(self, handle: VCluster, spec: VClusterSpec) -> bool:
        """True if ``handle`` goes to the warm pool rather than being deleted."""
        return (
            not interrupts.interrupted
            and self.manager.parks(spec)
            and self.manager.can_recycle(handle)
        )

    def _park(self, handle: VCluster, *, used: bool) -> None:
        """Park ``handle`` warm in the background (here once the pool is closing)."""
        with self._lock:
            if not self._closed:
                self._teardowns.append(self._reapers.submit(self.manager.park, handle, used=used))
                return
        self.manager.park(handle, used=used)

    def _recyclable(self, handle: VCluster, spec: VClusterSpec) -> bool:
        if not spec.recycle or self._closed or interrupts.interrupted:
            return False
        if not self.manager.can_recycle(handle):
            return False
        # Only when a later test of this process wants the same spec: a reset nobody takes
        # is a wasted one before the delete. Past the lookahead too: a recycled cluster is
        # cheaper than any create.
        view = as_view(self.upcoming())
        wanted = view.wanted(max(self.lookahead, 1) + 4)
        return any(other.recycle and _interchangeable(spec, other) for _, other in wanted)

    def _start_recycling(self, handle: VCluster, spec: VClusterSpec) -> None:
        """Reset ``handle`` in the background; meanwhile it is a spare for ``spec``."""

        def recycle() -> VCluster:
            try:
                result = self.manager.recycle(handle, spec)
            except BaseException:
                self._finish(handle, TeardownAction.DELETE)
                raise
            if result.recycled:
                return handle
            self._finish(handle, TeardownAction.DELETE)
            raise _NotRecycled("; ".join(result.reasons[:3]))

        self._recycles += 1
        key = f"recycled:{self._recycles}:{handle.name}"
        future = self._reapers.submit(recycle)
        self._preparations[key] = _Preparation(key, spec, future, recycling=handle)

    def _finish(self, handle: VCluster, action: TeardownAction) -> None:
        """Tear ``handle`` down in the background, or here once the pool is closing."""
        with self._lock:
            if not self._closed:
                self._teardowns.append(self._reapers.submit(self.manager.finish, handle, action))
                return
        self.manager.finish(handle, action)

    def _set_aside(self, handle: VCluster, spec: VClusterSpec, *, used: bool) -> None:
        """A cluster no test of this run will take: parked warm, or deleted."""
        if self._parkable(handle, spec):
            self.manager.park(handle, used=used)
        else:
            self.manager.finish(handle, TeardownAction.DELETE)

    def close(self) -> None:
        """Delete (or park warm) the clusters nobody took and wait for every teardown to end."""
        with self._lock:
            self._closed = True
            preparations = [*self._preparations.values(), *self._stranded]
            self._preparations.clear()
            self._stranded.clear()
        with interrupts.shielded():
            # Cancel everything not started first, or the executor starts it once a slot frees.
            started = [p for p in preparations if not p.future.cancel()]
            for preparation in preparations:
                if preparation.recycling is not None and preparation.future.cancelled():
                    # Never reset: deleted as it is, or reset and parked warm.
                    self._teardowns.append(
                        self._reapers.submit(
                            self._set_aside, preparation.recycling, preparation.spec, used=True
                        )
                    )
            _wait_all([p.future for p in started])
            for preparation in started:
                if not preparation.future.done():
                    continue  # the run stopped waiting: reported as left over
                error = preparation.future.exception()
                if error is not None:
                    log.info("a cluster prepared for %s failed: %s", preparation.nodeid, error)
                    continue
                self._teardowns.append(
                    self._reapers.submit(
                        self._set_aside,
                        preparation.future.result(),
                        preparation.spec,
                        # A recycled cluster nobody took: its reset already counted its test.
                        used=False,
                    )
                )
            _wait_all(self._teardowns)
            for teardown in self._teardowns:
                error = teardown.exception() if teardown.done() else None
                if error is not None:
                    log.warning("a background teardown failed: %s", error)
        abandoned = interrupts.abandon.is_set()
        self._creators.shutdown(wait=not abandoned, cancel_futures=abandoned)
        self._reapers.shutdown(wait=not abandoned, cancel_futures=abandoned)

    @property
    def pending(self) -> int:
        """Clusters prepared (or being prepared) and not taken yet."""
        with self._lock:
            return len(self._preparations)


def _wait_all(futures: Iterable[concurrent.futures.Future[Any]]) -> None:
    """Wait for every future, polling so that a second Ctrl-C can stop the wait."""
    pending = {future for future in futures if not future.done()}
    while pending and not interrupts.abandon.is_set():
        _, pending = concurrent.futures.wait(pending, timeout=0.25)


def _phases(handles: list[VCluster]) -> str:
    """`` (objects 0.4s, scheduled 1.1s, ...)``: when each readiness phase completed."""
    if not handles or not handles[0].phases:
        return ""
    return " (" + ", ".join(f"{phase} {seconds:.1f}s" for phase, seconds in handles[0].phases) + ")"
