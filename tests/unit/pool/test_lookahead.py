"""The lookahead pool's scheduling: what is made when, for which test, and what happens on
failure, on an early stop (``-x``), on a test that no longer needs its cluster, and at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client

from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.cluster.lifecycle import TeardownAction
from pytest_vcluster.cluster.recycling import RecycleResult
from pytest_vcluster.core.errors import VClusterError
from pytest_vcluster.pool.lookahead import ClusterPool, Upcoming
from pytest_vcluster.settings.config import Settings, TeardownMode
from pytest_vcluster.settings.request import VClusterSpec, make_spec

SETTINGS = Settings()


def spec_of(values: dict[str, object] | None = None, *, recycle: bool = False) -> VClusterSpec:
    return make_spec(
        SETTINGS, slot="s", test="t", label="x", values=values, persistent=False, recycle=recycle
    )


A = spec_of()
B = spec_of({"other": True})
#: Spec A, for tests that may take and leave recycled clusters.
R = spec_of(recycle=True)


@dataclass
class FakeManager:
    gate: threading.Event = field(default_factory=threading.Event)
    fail: set[str] = field(default_factory=set)
    created: list[tuple[str, bool]] = field(default_factory=list)
    finished: list[tuple[str, TeardownAction, str]] = field(default_factory=list)
    handed: list[tuple[str, str]] = field(default_factory=list)
    on_error: list[TeardownMode] = field(default_factory=list)
    running: int = 0
    most_running: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    recyclable: bool = False
    reset_clean: bool = True
    reset_gate: threading.Event = field(default_factory=threading.Event)
    resets: list[str] = field(default_factory=list)
    #: Clusters of every spec go to the warm pool (--vcluster-warm-pool above 0).
    warm: bool = False
    parked: list[tuple[str, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gate.set()
        self.reset_gate.set()

    def create(
        self, spec: VClusterSpec, *, teardown_on_error: TeardownMode, prepared: bool = False
    ) -> VCluster:
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            name = f"vc{len(self.created) + 1}"
            self.created.append((spec.spec_hash, prepared))
            self.on_error.append(teardown_on_error)
        try:
            assert self.gate.wait(10)
            if spec.spec_hash in self.fail:
                raise VClusterError("control plane CrashLoopBackOff")
            return VCluster(
                name, name, "v1.34.4", None, Path("/dev/null"),
                cast(client.ApiClient, None), spec.spec_hash,
            )  # fmt: skip
        finally:
            with self.lock:
                self.running -= 1

    def finish(self, handle: VCluster, action: TeardownAction) -> None:
        self.finished.append((handle.name, action, threading.current_thread().name))

    def hand_over(self, handle: VCluster, test: str) -> None:
        self.handed.append((handle.name, test))

    def can_recycle(self, handle: VCluster) -> bool:
        return self.recyclable

    def recycle(self, handle: VCluster, spec: VClusterSpec) -> RecycleResult:
        assert self.reset_gate.wait(10)
        self.resets.append(handle.name)
        if not self.reset_clean:
            return RecycleResult(False, ("changed: ServiceAccount default/default",), 0.1)
        handle.recycled = True
        handle.tests_before += 1
        return RecycleResult(True, (), 0.1)

    def parks(self, spec: VClusterSpec) -> bool:
        return self.warm and spec.recycle

    def park(self, handle: VCluster, *, used: bool) -> None:
        self.parked.append((handle.name, used))


@dataclass
class Schedule:
    """What the plugin would report as this process's upcoming tests."""

    entries: list[Upcoming] = field(default_factory=list)

    def __call__(self) -> list[Upcoming]:
        return list(self.entries)

    def at(self, *entries: Upcoming) -> None:
        self.entries = list(entries)


def pool_with(manager: FakeManager, schedule: Schedule, **kwargs: int) -> ClusterPool:
    return ClusterPool(manager, schedule, **kwargs)


def test_plan_prepares_the_next_tests_not_the_current_one_nor_beyond_lookahead() -> None:
    manager, schedule = FakeManager(), Schedule()
    pool = pool_with(manager, schedule, lookahead=2, parallel=2)
    schedule.at(("t0", A), ("t1", A), ("t2", None), ("t3", B), ("t4", A))
    pool.plan()
    pool.plan()  # planning again makes nothing twice
    assert pool.pending == 2  # t1 and t3: t2 needs no predicted cluster, t4 is too far
    schedule.at(("t1", A), ("t2", None), ("t3", B))
    assert pool.take("t1", A, TeardownMode.DELETE).source == "prepared"
    pool.close()
    assert (A.spec_hash, True) in manager.created
    assert set(manager.created) <= {(A.spec_hash, True), (B.spec_hash, True)}
    # t3's cluster, which nobody took, was cancelled before it started or deleted at the end.
    assert len(manager.finished) == len(manager.created) - 1


def test_take_gets_the_prepared_cluster_and_setup_does_not_create() -> None:
    manager, schedule = FakeManager(), Schedule()
    pool = pool_with(manager, schedule, lookahead=1)
    schedule.at(("t0", None), ("t1", A))
    pool.plan()
    schedule.at(("t1", A))
    taken = pool.take("t1", A, TeardownMode.DELETE)
    assert taken.source == "prepared"
    assert manager.created == [(A.spec_hash, True)]
    first = pool.take("t0", A, TeardownMode.DELETE)  # nothing prepared: made on the spot
    assert first.source == "created"
    assert manager.created[-1] == (A.spec_hash, False)
    pool.close()
    assert manager.finished == []  # both were taken: nothing left to delete


def test_concurrent_creates_are_bounded() -> None:
    manager, schedule = FakeManager(), Schedule()
    manager.gate.clear()
    pool = pool_with(manager, schedule, lookahead=4, parallel=1)
    schedule.at(("t0", None), ("t1", A), ("t2", A), ("t3", A), ("t4", A))
    pool.plan()
    manager.gate.set()
    for nodeid in ("t1", "t2", "t3", "t4"):
        assert pool.take(nodeid, A, TeardownMode.DELETE).source == "prepared"
    pool.close()
    assert manager.most_running == 1
    assert len(manager.created) == 4


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


@pytest.mark.parametrize("parallel", [1, 2])
def test_a_test_creating_its_own_cluster_goes_first_and_the_lookahead_follows(
    parallel: int,
) -> None:
    manager, schedule = FakeManager(), Schedule()
    manager.gate.clear()
    pool = pool_with(manager, schedule, lookahead=2, parallel=parallel)
    # The run's first test: nothing was prepared for it, so its setup creates its cluster.
    schedule.at(("t0", A), ("t1", A), ("t2", A))
    pool.plan()
    assert pool.pending == parallel - 1  # its create takes one of the parallel slots
    taking = threading.Thread(target=pool.take, args=("t0", A, TeardownMode.DELETE))
    taking.start()
    wait_until(lambda: manager.running == parallel)
    assert manager.created[0] == (A.spec_hash, parallel > 1)
    manager.gate.set()
    taking.join(5)
    assert pool.pending == 2  # once it has its cluster, both later tests are prepared for
    wait_until(lambda: len(manager.created) == 3)
    schedule.at(("t1", A), ("t2", A))
    assert pool.take("t1", A, TeardownMode.DELETE).source == "prepared"
    assert pool.take("t2", A, TeardownMode.DELETE).source == "prepared"
    pool.close()
    assert manager.most_running == parallel
    assert [prepared for _, prepared in manager.created].count(False) == 1


def test_what_a_failed_create_of_the_current_test_held_back_is_still_prepared() -> None:
    manager, schedule = FakeManager(fail={A.spec_hash}), Schedule()
    pool = pool_with(manager, schedule, lookahead=1, parallel=1)
    schedule.at(("t0", A), ("t1", B))
    pool.plan()
    assert pool.pending == 0
    with pytest.raises(VClusterError, match="CrashLoop"):
        pool.take("t0", A, TeardownMode.DELETE)
    assert pool.pending == 1
    schedule.at(("t1", B))
    assert pool.take("t1", B, TeardownMode.DELETE).source == "prepared"
    pool.close()


def test_nothing_is_held_back_when_the_current_test_has_a_cluster_coming() -> None:
    manager, schedule = FakeManager(), Schedule()
    pool = pool_with(manager, schedule, lookahead=1, parallel=1)
    schedule.at(("t0", None), ("t1", A))
    pool.plan()
    # t1 now runs and waits for the cluster prepared for it: t2's is prepared meanwhile.
    schedule.at(("t1", A), ("t2", A))
    pool.plan()
    assert pool.pending == 2
    pool.close()


def test_a_failed_preparation_fails_its_test_and_stops_preparing_that_spec() -> None:
    manager, schedule = FakeManager(fail={A.spec_hash}), Schedule()
    pool = pool_with(manager, schedule, lookahead=2, parallel=1)
    schedule.at(("t0", None), ("t1", A), ("t2", A))
    pool.plan()
    schedule.at(("t1", A), ("t2", A))
    with pytest.raises(VClusterError, match=r"prepared ahead for this test failed: .*CrashLoop"):
        pool.take("t1", A, TeardownMode.DELETE)
    with pytest.raises(VClusterError):
        pool.take("t2", A, TeardownMode.DELETE)
    schedule.at(("t2", None), ("t3", A), ("t4", A))
    pool.plan()
    assert pool.pending == 0  # two failures of spec A: its tests now create their own
    pool.close()


def test_a_cluster_made_for_a_test_that_will_not_run_serves_the_next_of_its_spec() -> None:
    manager, schedule = FakeManager(), Schedule()
    pool = pool_with(manager, schedule, lookahead=1)
    schedule.at(("t0", None), ("t1", A))
    pool.plan()
    # t1 was deselected, skipped or stolen by another worker: t2 is next.
    schedule.at(("t0", None), ("t2", A))
    pool.plan()
    schedule.at(("t2", A))
    assert pool.take("t2", A, TeardownMode.DELETE).source == "prepared"
    pool.close()
    assert len(manager.created) == 1


def test_a_spec_that_changed_at_setup_gets_a_new_cluster_and_the_spare_is_deleted() -> None:
    manager, schedule = FakeManager(), Schedule()
    pool = pool_with(manager, schedule, lookahead=1)
    schedule.at(("t0", None), ("t1", A))
    pool.plan()
    schedule.at(("t1", A))
    # The test's vcluster_values fixture gave other values than predicted.
    assert pool.take("t1", B, TeardownMode.DELETE).source == "created"
    pool.close()
    assert [action for _, action, _ in manager.finished] == [TeardownAction.DELETE]


def test_an_early_stop_cancels_what_has_not_started() -> None:
    manager, schedule = FakeManager(), Schedule()
    manager.gate.clear()
    pool = pool_with(manager, schedule, lookahead=3, parallel=1)
    schedule.at(("t0", None), ("t1", A), ("t2", A), ("t3", A))
    pool.plan()
    threading.Timer(0.2, manager.gate.set).start()
    pool.close()  # as after -x: only the create already running finishes, and is deleted
    assert len(manager.created) == 1
    assert len(manager.finished) == 1


def test_teardown_runs_in_the_background_and_close_waits_for_it() -> None:
    manager, schedule = FakeManager(), Schedule()
    pool = pool_with(manager, schedule, lookahead=0)
    taken = pool.take("t0", A, TeardownMode.DELETE)
    pool.release(taken.handle, TeardownAction.DELETE)
    pool.close()
    [(name, action, thread)] = manager.finished
    assert (name, action) == (taken.handle.name, TeardownAction.DELETE)
    assert thread.startswith("pytest-vcluster-teardown")
    pool.release(taken.handle, TeardownAction.KEEP)  # after close: done at once
    assert manager.finished[-1][2] == threading.current_thread().name


def test_lookahead_zero_prepares_nothing() -> None:
    manager, schedule = FakeManager(), Schedule()
    pool = pool_with(manager, schedule, lookahead=0)
    schedule.at(("t0", A), ("t1", A))
    pool.plan()
    assert pool.pending == 0
    pool.close()
    assert manager.created == []


def test_ctrl_c_while_a_test_waits_for_its_prepared_cluster_still_deletes_it() -> None:
    manager, schedule = FakeManager(), Schedule()
    manager.gate.clear()  # the preparation is still starting when the test asks for it
    pool = pool_with(manager, schedule, lookahead=1)
    schedule.at(("t0", None), ("t1", A))
    pool.plan()
    future = pool._preparations["t1"].future

    def interrupted(timeout: float | None = None) -> VCluster:
        raise KeyboardInterrupt

    future.result = interrupted  # type: ignore[method-assign]
    schedule.at(("t1", A))
    with pytest.raises(KeyboardInterrupt):
        pool.take("t1", A, TeardownMode.DELETE)
    manager.gate.set()
    del future.result  # the pool reads the cluster the normal way at close
    pool.close()
    assert [(name, action) for name, action, _ in manager.finished] == [
        ("vc1", TeardownAction.DELETE)
    ]


def for_test(spec: VClusterSpec, nodeid: str) -> VClusterSpec:
    return spec.for_test(f"test:{nodeid}:0", nodeid)


def test_a_spare_taken_by_another_test_is_annotated_with_that_test() -> None:
    manager, schedule = FakeManager(), Schedule()
    pool = pool_with(manager, schedule, lookahead=1)
    schedule.at(("t0", None), ("t1", for_test(A, "t1")))
    pool.plan()
    # t1 will not run here after all (xdist gave it to another worker): t2 takes its cluster.
    schedule.at(("t2", for_test(A, "t2")))
    taken = pool.take("t2", for_test(A, "t2"), TeardownMode.DELETE)
    assert taken.source == "prepared"
    assert manager.handed == [(taken.handle.name, "t2")]
    pool.close()


def test_a_cluster_taken_by_the_test_it_was_made_for_is_not_annotated_again() -> None:
    manager, schedule = FakeManager(), Schedule()
    pool = pool_with(manager, schedule, lookahead=1)
    schedule.at(("t0", None), ("t1", for_test(A, "t1")))
    pool.plan()
    schedule.at(("t1", for_test(A, "t1")))
    assert pool.take("t1", for_test(A, "t1"), TeardownMode.DELETE).source == "prepared"
    assert manager.handed == []
    pool.close()


def test_a_prepared_cluster_fails_by_its_tests_teardown_mode() -> None:
    # keep-on-failure applies to a cluster prepared ahead that fails to start, too.
    manager, schedule = FakeManager(), Schedule()
    modes = {"t1": TeardownMode.KEEP_ON_FAILURE}
    pool = ClusterPool(
        manager,
        schedule,
        lookahead=1,
        teardown_of=lambda nodeid: modes.get(nodeid, TeardownMode.DELETE),
    )
    schedule.at(("t0", None), ("t1", A))
    pool.plan()
    pool.close()
    assert manager.on_error == [TeardownMode.KEEP_ON_FAILURE]


# -- recycling -----------------------------------------------------------------------------


def test_a_released_cluster_is_recycled_for_a_later_test_of_its_spec() -> None:
    manager, schedule = FakeManager(recyclable=True), Schedule()
    pool = pool_with(manager, schedule, lookahead=0)
    schedule.at(("t0", R), ("t1", R))
    first = pool.take("t0", R, TeardownMode.DELETE)
    pool.release(first.handle, TeardownAction.DELETE)
    schedule.at(("t1", R))
    second = pool.take("t1", R, TeardownMode.DELETE)
    assert second.source == "recycled"
    assert second.handle is first.handle
    assert (second.handle.recycled, second.handle.tests_before) == (True, 1)
    assert len(manager.created) == 1
    assert manager.handed == [(first.handle.name, "t")] or manager.handed == []
    pool.release(second.handle, TeardownAction.DELETE)  # nobody wants it next: deleted
    pool.close()
    assert manager.resets == [first.handle.name]
    assert [action for _, action, _ in manager.finished] == [TeardownAction.DELETE]


def test_a_reset_not_proven_clean_deletes_the_cluster_and_the_next_test_gets_a_new_one() -> None:
    manager, schedule = FakeManager(recyclable=True, reset_clean=False), Schedule()
    pool = pool_with(manager, schedule, lookahead=0)
    schedule.at(("t0", R), ("t1", R))
    first = pool.take("t0", R, TeardownMode.DELETE)
    pool.release(first.handle, TeardownAction.DELETE)
    schedule.at(("t1", R))
    second = pool.take("t1", R, TeardownMode.DELETE)
    assert second.source == "created"
    assert second.handle is not first.handle
    pool.close()
    assert (first.handle.name, TeardownAction.DELETE) in [(n, a) for n, a, _ in manager.finished]
    assert first.handle.recycled is False


def test_no_recycling_when_nobody_wants_the_spec_or_a_test_turns_it_off() -> None:
    manager, schedule = FakeManager(recyclable=True), Schedule()
    pool = pool_with(manager, schedule, lookahead=0)
    # The next test asks for other values: no reset nobody would take.
    schedule.at(("t0", R), ("t1", B))
    first = pool.take("t0", R, TeardownMode.DELETE)
    pool.release(first.handle, TeardownAction.DELETE)
    # A test that says recycle=False leaves its cluster to be deleted...
    schedule.at(("t1", A), ("t2", R))
    second = pool.take("t1", A, TeardownMode.DELETE)
    pool.release(second.handle, TeardownAction.DELETE)
    # ... and never takes a recycled one.
    schedule.at(("t2", R), ("t3", A), ("t4", R))
    third = pool.take("t2", R, TeardownMode.DELETE)
    pool.release(third.handle, TeardownAction.DELETE)
    schedule.at(("t3", A), ("t4", R))
    assert pool.take("t3", A, TeardownMode.DELETE).source == "created"
    pool.close()
    assert manager.resets == [third.handle.name]
    assert len(manager.created) == 4


@pytest.mark.parametrize("warm", [False, True], ids=["", "warm-pool"])
def test_kept_paused_and_unrecyclable_clusters_are_not_reset(warm: bool) -> None:
    manager, schedule = FakeManager(recyclable=True, warm=warm), Schedule()
    pool = pool_with(manager, schedule, lookahead=0)
    schedule.at(("t0", R), ("t1", R))
    wanted: dict[str, TeardownAction] = {}
    for action in (TeardownAction.KEEP, TeardownAction.PAUSE):
        taken = pool.take("t0", R, TeardownMode.DELETE)
        wanted[taken.handle.name] = action
        pool.release(taken.handle, action)
    manager.recyclable = False  # e.g. the test paused it, or it has no baseline
    taken = pool.take("t0", R, TeardownMode.DELETE)
    wanted[taken.handle.name] = TeardownAction.DELETE
    pool.release(taken.handle, TeardownAction.DELETE)
    pool.close()
    assert manager.resets == []
    assert manager.parked == []  # nor parked warm
    # Teardowns run in background threads, so they may finish in any order: each cluster got
    # its own action, once.
    assert len(manager.finished) == 3
    assert {name: action for name, action, _ in manager.finished} == wanted


def test_a_cluster_being_recycled_replaces_a_create_that_has_not_started() -> None:
    manager, schedule = FakeManager(recyclable=True), Schedule()
    pool = pool_with(manager, schedule, lookahead=2, parallel=1)
    schedule.at(("t0", None), ("t1", R), ("t2", R))
    current = pool.take("t0", R, TeardownMode.DELETE)
    manager.gate.clear()  # the create for t1 blocks the only creator
    pool.plan()  # t1 starts creating, t2 is queued behind it
    pool.release(current.handle, TeardownAction.DELETE)
    schedule.at(("t1", R), ("t2", R), ("t3", R))
    pool.plan()  # t2's queued create is cancelled: the recycled cluster is its now
    with pool._lock:
        assert pool._preparations["t2"].recycling is current.handle
    with pool._lock:
        recycled = pool._preparations["t2"].future
    recycled.result(timeout=10)
    # t1's own create is still starting: the recycled cluster, ready, goes to it instead,
    # and t2 gets t1's once ready.
    assert pool.take("t1", R, TeardownMode.DELETE).source == "recycled"
    manager.gate.set()
    schedule.at(("t2", R), ("t3", R))
    assert pool.take("t2", R, TeardownMode.DELETE).source == "prepared"
    pool.close()
    # t0 on the spot, t1 and t3 ahead; never one for t2.
    assert len(manager.created) == 3


def test_the_recycled_cluster_goes_to_the_planned_test_and_no_create_is_made() -> None:
    manager, schedule = FakeManager(recyclable=True), Schedule()
    manager.reset_gate.clear()
    pool = pool_with(manager, schedule, lookahead=1, parallel=1)
    schedule.at(("t0", R), ("t1", R))
    first = pool.take("t0", R, TeardownMode.DELETE)
    pool.release(first.handle, TeardownAction.DELETE)  # reset starts, held by the gate
    schedule.at(("t1", R), ("t2", R))
    pool.plan()  # t2 is wanted: the cluster being reset is its spare
    assert len(manager.created) == 1
    manager.reset_gate.set()
    with pool._lock:
        recycled = pool._preparations["t2"].future
    recycled.result(timeout=10)
    # t1 had nothing prepared: it takes the recycled cluster even though it was meant for t2.
    taken = pool.take("t1", R, TeardownMode.DELETE)
    assert taken.source == "recycled"
    pool.close()


def test_close_deletes_a_recycled_cluster_nobody_took() -> None:
    manager, schedule = FakeManager(recyclable=True), Schedule()
    pool = pool_with(manager, schedule, lookahead=0)
    schedule.at(("t0", R), ("t1", R))
    first = pool.take("t0", R, TeardownMode.DELETE)
    pool.release(first.handle, TeardownAction.DELETE)
    pool.close()  # t1 never ran (-x)
    assert manager.resets == [first.handle.name]
    assert [(n, a) for n, a, _ in manager.finished] == [(first.handle.name, TeardownAction.DELETE)]


def test_with_the_warm_pool_the_last_cluster_of_a_spec_parks_instead_of_being_deleted() -> None:
    manager, schedule = FakeManager(recyclable=True, warm=True), Schedule()
    pool = pool_with(manager, schedule, lookahead=0)
    schedule.at(("t0", R))
    taken = pool.take("t0", R, TeardownMode.DELETE)
    pool.release(taken.handle, TeardownAction.DELETE)  # no later test of its spec here
    pool.close()
    assert manager.parked == [(taken.handle.name, True)]
    assert manager.finished == []
    assert manager.resets == []  # parking resets it itself, without the token-cache hold


def test_with_the_warm_pool_clusters_nobody_took_park_as_unused() -> None:
    manager, schedule = FakeManager(recyclable=True, warm=True), Schedule()
    pool = pool_with(manager, schedule, lookahead=2)
    schedule.at(("t0", None), ("t1", R), ("t2", R))
    first = pool.take("t0", R, TeardownMode.DELETE)
    pool.plan()  # t1 and t2 prepared ahead
    pool.release(first.handle, TeardownAction.DELETE)  # recycled for t1 or t2
    pool.close()  # -x: neither ran
    parked = dict(manager.parked)
    # Every cluster made parks: the first, recycled, and those prepared for t1 and t2 (one
    # fewer when the recycled cluster took the place of a create not started yet).
    assert first.handle.name in parked
    assert len(parked) == len(manager.created) >= 2
    # The recycled one's reset already counted its test; the prepared ones never had one.
    assert set(parked.values()) == {False}
    assert manager.finished == []


def test_an_adopted_warm_cluster_is_reported_as_warm() -> None:
    manager, schedule = FakeManager(), Schedule()
    pool = pool_with(manager, schedule, lookahead=0)
    original = manager.create

    def adopt(spec: VClusterSpec, **kwargs: Any) -> VCluster:
        handle = original(spec, **kwargs)
        handle.warm = handle.recycled = True
        return handle

    manager.create = adopt  # type: ignore[method-assign]
    schedule.at(("t0", R))
    assert pool.take("t0", R, TeardownMode.DELETE).source == "warm"
    pool.close()
