"""The upcoming-tests view: linear to build, constant per question, and the xdist queue guard."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator

from pytest_vcluster.pool.upcoming import ListView, UpcomingItems
from pytest_vcluster.pool.xdist_queue import XdistQueue, find_queue
from pytest_vcluster.settings.config import Settings
from pytest_vcluster.settings.request import ClusterRequest, VClusterSpec


def spec(name: str) -> VClusterSpec:
    return ClusterRequest(nodeid=name, name=name).spec(Settings())


def test_sequential_view_skips_tests_without_a_cluster() -> None:
    entries = [("a", spec("a")), ("b", None), ("c", None), ("d", spec("d")), ("e", spec("e"))]
    items = UpcomingItems(entries)
    view = items.after("a")
    assert [nodeid for nodeid, _ in view.wanted(5)] == ["d", "e"]
    assert [nodeid for nodeid, _ in view.wanted(1)] == ["d"]
    assert view.will_run("a")
    assert view.will_run("e")
    later = items.after("d")
    assert not later.will_run("a")
    assert [nodeid for nodeid, _ in later.wanted(5)] == ["e"]
    assert items.after("unknown").wanted(3) == []
    assert view.current() == entries[0]
    assert items.after("b").current() == ("b", None)
    assert items.after("unknown").current() is None


def test_a_long_plain_stretch_costs_one_step() -> None:
    # 100k tests without a cluster between two that have one: wanted() jumps over them.
    entries = [("first", spec("first"))] + [(f"p{i}", None) for i in range(100_000)]
    entries.append(("last", spec("last")))
    items = UpcomingItems(entries)
    assert items.next_known(1) == len(entries) - 1
    assert [nodeid for nodeid, _ in items.after("first").wanted(2)] == ["last"]


def test_queue_view_follows_the_workers_queue() -> None:
    entries = [("a", spec("a")), ("b", None), ("c", spec("c")), ("d", spec("d"))]
    items = UpcomingItems(entries)
    view = items.queued("a", [3, 1, 2])
    assert [nodeid for nodeid, _ in view.wanted(5)] == ["d", "c"]
    assert view.will_run("a")
    assert view.will_run("b")
    assert not items.queued("a", [3]).will_run("c")
    assert view.current() == entries[0]
    assert items.queued("unknown", [3]).current() is None


def test_list_view_keeps_the_pools_old_contract() -> None:
    view = ListView([("a", spec("a")), ("b", None), ("c", spec("c"))])
    assert [nodeid for nodeid, _ in view.wanted(5)] == ["c"]
    assert view.will_run("b")
    assert not view.will_run("z")
    assert view.current() == ("a", spec("a"))
    assert ListView([]).current() is None


class _Queue:
    def __init__(self, items: list[int]) -> None:
        self.items = deque(items)

    @contextlib.contextmanager
    def lock(self) -> Iterator[deque[int]]:
        yield self.items


class WorkerInteractor:  # the name pytest-xdist's class has
    def __init__(self, items: list[int], next_index: object) -> None:
        self.torun = _Queue(items)
        self.nextitem_index = next_index


def test_the_queue_is_read_when_its_shape_is_known() -> None:
    found = find_queue([object(), WorkerInteractor([4, 5], 3)])
    assert isinstance(found, XdistQueue)
    assert found.pending() == [3, 4, 5]


def test_an_unknown_queue_shape_turns_lookahead_off_with_a_reason() -> None:
    assert "not found" in str(find_queue([object()]))
    changed = WorkerInteractor([1], None)
    del changed.nextitem_index
    assert "changed" in str(find_queue([changed]))
    broken = WorkerInteractor([1], None)
    broken.torun = type("Q", (), {"lock": lambda self: 1 / 0})()  # type: ignore[assignment]
    assert "cannot be read" in str(find_queue([broken]))
