"""The tests this process runs next and the spec of the cluster each needs.

Before every test the lookahead pool asks which tests come next. Over a whole run that must
cost time linear in the suite, so :class:`UpcomingItems` indexes the collected items once:
each item's position, and for every position the next item that needs a cluster. A view then
answers "the next ``n`` tests that need one" and "does this test still run here" in time
independent of the suite's size (under xdist: of the worker's queue, which xdist keeps short).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pytest_vcluster.settings.request import VClusterSpec

__all__ = ["Entry", "ListView", "UpcomingItems", "UpcomingView", "as_view"]

#: A test this process will run and the spec of the cluster it needs (``None``: none known).
Entry = tuple[str, "VClusterSpec | None"]


class UpcomingView(Protocol):
    """What the pool asks about the tests to come."""

    def current(self) -> Entry | None:
        """The test about to run (or running) and its cluster's spec, if any test is."""
        ...

    def wanted(self, limit: int) -> list[tuple[str, VClusterSpec]]:
        """The next ``limit`` tests after the current one whose cluster spec is known."""
        ...

    def will_run(self, nodeid: str) -> bool:
        """True when ``nodeid`` is the current test or one this process runs later."""
        ...


@dataclass
class ListView:
    """A view of an explicit list of entries, the current test first."""

    entries: Sequence[Entry]
    _ids: set[str] | None = field(default=None, repr=False)

    def current(self) -> Entry | None:
        return self.entries[0] if self.entries else None

    def wanted(self, limit: int) -> list[tuple[str, VClusterSpec]]:
        found = [(nodeid, spec) for nodeid, spec in self.entries[1:] if spec is not None]
        return found[:limit]

    def will_run(self, nodeid: str) -> bool:
        if self._ids is None:
            self._ids = {entry for entry, _ in self.entries}
        return nodeid in self._ids


def as_view(upcoming: UpcomingView | Sequence[Entry]) -> UpcomingView:
    """A view of either a view or an explicit list."""
    if isinstance(upcoming, Sequence):
        return ListView(upcoming)
    return upcoming


class UpcomingItems:
    """The collected items of this process, indexed once for the views."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self._entries = list(entries)
        self._position = {nodeid: index for index, (nodeid, _) in enumerate(self._entries)}
        # _next_known[i]: the first position >= i whose spec is known (len: none).
        self._next_known = [len(self._entries)] * (len(self._entries) + 1)
        for index in range(len(self._entries) - 1, -1, -1):
            known = self._entries[index][1] is not None
            self._next_known[index] = index if known else self._next_known[index + 1]

    def position(self, nodeid: str) -> int | None:
        """Where ``nodeid`` is in the collected items."""
        return self._position.get(nodeid)

    def after(self, current: str) -> UpcomingView:
        """The tests after ``current`` in collection order (no xdist)."""
        return _SequentialView(self, self._position.get(current))

    def queued(self, current: str, pending: Sequence[int]) -> UpcomingView:
        """The tests of an xdist worker's queue (item indices, in the order they run)."""
        return _QueueView(self, current, pending)

    def entry(self, position: int) -> Entry:
        """The entry at ``position``."""
        return self._entries[position]

    def next_known(self, position: int) -> int:
        """The first position at or after ``position`` whose spec is known."""
        return self._next_known[min(position, len(self._entries))]

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class _SequentialView:
    items: UpcomingItems
    at: int | None

    def current(self) -> Entry | None:
        return None if self.at is None else self.items.entry(self.at)

    def wanted(self, limit: int) -> list[tuple[str, VClusterSpec]]:
        found: list[tuple[str, VClusterSpec]] = []
        if self.at is None:
            return found
        position = self.items.next_known(self.at + 1)
        while position < len(self.items) and len(found) < limit:
            nodeid, spec = self.items.entry(position)
            if spec is not None:
                found.append((nodeid, spec))
            position = self.items.next_known(position + 1)
        return found

    def will_run(self, nodeid: str) -> bool:
        position = self.items.position(nodeid)
        return self.at is not None and position is not None and position >= self.at


@dataclass
class _QueueView:
    items: UpcomingItems
    nodeid: str
    pending: Sequence[int]
    _ids: set[str] | None = field(default=None, repr=False)

    def current(self) -> Entry | None:
        position = self.items.position(self.nodeid)
        return None if position is None else self.items.entry(position)

    def wanted(self, limit: int) -> list[tuple[str, VClusterSpec]]:
        found: list[tuple[str, VClusterSpec]] = []
        for position in self.pending:
            if len(found) >= limit:
                break
            if position < len(self.items):
                nodeid, spec = self.items.entry(position)
                if spec is not None:
                    found.append((nodeid, spec))
        return found

    def will_run(self, nodeid: str) -> bool:
        if self._ids is None:
            self._ids = {self.nodeid}
            self._ids.update(self.items.entry(p)[0] for p in self.pending if p < len(self.items))
        return nodeid in self._ids
