"""Deadlines and polling: every wait says what it awaited and what it saw last.

A check returns ``(done, seen)``: whether the condition holds and a short description of the
state it observed. :func:`wait_until` calls it until it holds or the deadline passes, then
raises :class:`~pytest_vcluster.core.errors.WaitTimeoutError` with the last description.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_vcluster.core.errors import RunInterruptedError, StartFailedError, WaitTimeoutError

__all__ = ["Check", "Deadline", "wait_until"]

#: One look at what a wait awaits: whether it is done, and what was seen, in words.
Check = Callable[[], tuple[bool, str]]


@dataclass
class Deadline:
    """A point in (monotonic) time shared by the steps of one longer operation.

    ``stop``, once set, ends every wait on this deadline early (the run was interrupted).
    """

    seconds: float
    clock: Callable[[], float] = time.monotonic
    stop: threading.Event | None = None
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.started + self.seconds - self.clock())

    @property
    def elapsed(self) -> float:
        """Seconds since the deadline was set."""
        return self.clock() - self.started

    @property
    def expired(self) -> bool:
        """True once no time is left."""
        return self.remaining <= 0

    @property
    def stopped(self) -> bool:
        """True once the run asked every wait to end."""
        return self.stop is not None and self.stop.is_set()


def wait_until(
    awaited: str,
    check: Check,
    deadline: Deadline,
    *,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    fatal: tuple[type[BaseException], ...] = (StartFailedError,),
) -> str:
    """Poll ``check`` until it reports done; return its last description.

    Exceptions from the check count as "not yet" (the API may not answer during start-up)
    and their text becomes the last-seen state, except those in ``fatal`` (by default
    :class:`StartFailedError`), which end the wait at once. A stopped deadline raises
    :class:`~pytest_vcluster.core.errors.RunInterruptedError`.
    """
    seen = "nothing yet"
    while True:
        if deadline.stopped:
            raise RunInterruptedError(
                f"stopped waiting for {awaited}: the run was interrupted; last seen: {seen}"
            )
        try:
            done, seen = check()
        except fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a check means "not ready yet"
            done, seen = False, f"{type(exc).__name__}: {exc}"
        if done:
            return seen
        if deadline.expired:
            raise WaitTimeoutError(awaited, deadline.seconds, seen)
        if deadline.stop is not None:
            deadline.stop.wait(min(interval, max(deadline.remaining, 0.01)))
        else:
            sleep(min(interval, max(deadline.remaining, 0.01)))
