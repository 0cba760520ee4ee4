"""Deadlines and polling: every wait says what it awaited and what it saw last.

A probe returns ``(done, seen)``: whether the condition holds and a short description of the
state it observed. :func:`wait_until` calls it until it holds or the deadline passes, then
raises :class:`~pytest_vcluster.errors.WaitTimeoutError` with the last description.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_vcluster.errors import StartFailedError, WaitTimeoutError

__all__ = ["Deadline", "Probe", "wait_until"]

Probe = Callable[[], tuple[bool, str]]


@dataclass
class Deadline:
    """A point in (monotonic) time shared by the steps of one longer operation."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
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


def wait_until(
    awaited: str,
    probe: Probe,
    deadline: Deadline,
    *,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Poll ``probe`` until it reports done; return its last description.

    Exceptions from the probe count as "not yet" (the API may not answer during start-up)
    and their text becomes the last-seen state, except :class:`StartFailedError`, which
    ends the wait at once.
    """
    seen = "nothing yet"
    while True:
        try:
            done, seen = probe()
        except StartFailedError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a probe means "not ready yet"
            done, seen = False, f"{type(exc).__name__}: {exc}"
        if done:
            return seen
        if deadline.expired:
            raise WaitTimeoutError(awaited, deadline.seconds, seen)
        sleep(min(interval, max(deadline.remaining, 0.01)))
