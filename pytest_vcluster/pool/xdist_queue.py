"""Which tests pytest-xdist has handed this worker and it has not run yet.

pytest-xdist keeps them in private state of its worker-side plugin (``WorkerInteractor``): a
``torun`` queue whose ``lock()`` yields the pending item indices, and ``nextitem_index``, the
item after the one running. That is no API, so this module is the only place that reads it,
and :func:`find_queue` checks its shape first: when it is not what this code was written
against, lookahead is turned off (the report header says why) rather than guessed.

Tested with pytest-xdist :data:`TESTED_XDIST` (the ``test`` extra pins the same range).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata
from typing import Any

__all__ = ["TESTED_XDIST", "XdistQueue", "find_queue", "xdist_note"]

#: The pytest-xdist releases whose worker state this module reads.
TESTED_XDIST = ">=3.5,<4"


class XdistQueue:
    """A read-only view of one worker's queue of item indices."""

    def __init__(self, interactor: Any) -> None:  # noqa: ANN401 - pytest-xdist's private class
        self._interactor = interactor

    def pending(self) -> list[int]:
        """Indices of the items after the running one, in the order they will run."""
        indices: list[int] = []
        next_index = self._interactor.nextitem_index
        if isinstance(next_index, int):
            indices.append(next_index)
        with self._interactor.torun.lock() as queued:
            indices += [index for index in queued if isinstance(index, int)]
        return indices


def find_queue(plugins: Iterable[object]) -> XdistQueue | str:
    """The worker's queue among pytest's plugins, or why it cannot be read."""
    found = [plugin for plugin in plugins if type(plugin).__name__ == "WorkerInteractor"]
    if not found:
        return "pytest-xdist's worker state (WorkerInteractor) was not found"
    interactor = found[0]
    torun = getattr(interactor, "torun", None)
    if not hasattr(interactor, "nextitem_index") or not callable(getattr(torun, "lock", None)):
        return "pytest-xdist's worker queue (torun.lock(), nextitem_index) changed"
    queue = XdistQueue(interactor)
    try:
        queue.pending()
    except Exception as exc:  # noqa: BLE001 - any surprise means: do not rely on it
        return f"pytest-xdist's worker queue cannot be read ({type(exc).__name__}: {exc})"
    return queue


def xdist_note() -> str | None:
    """A header line when the installed pytest-xdist is not one lookahead was tested with."""
    try:
        found = metadata.version("pytest-xdist")
    except metadata.PackageNotFoundError:
        return None
    parts = found.split(".")
    major = int(parts[0]) if parts[0].isdigit() else 0
    minor = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if major == 3 and minor >= 5:
        return None
    return (
        f"vcluster: pytest-xdist {found} is not one lookahead was tested with "
        f"({TESTED_XDIST}); a worker whose queue it cannot read runs without lookahead"
    )
