"""Say in the terminal what a long wait is waiting for, and only when it is long.

A test that takes a prepared cluster never waits, and saying nothing keeps pytest's output as
it is. A wait that lasts longer than a few seconds (the kind host being created, a cluster that
was not ready yet, another process holding the host lock) gets one line when it passes that
mark and one when it ends, so a first-time user sees why nothing moves.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["Progress"]


class Progress:
    """Lines for waits longer than ``delay`` seconds; silent when ``write`` is ``None``."""

    def __init__(self, write: Callable[[str], None] | None = None, delay: float = 3.0) -> None:
        self.write = write
        self.delay = delay
        self._lock = threading.Lock()

    def _say(self, line: str) -> None:
        if self.write is not None:
            with self._lock:
                self.write(f"vcluster: {line}")

    def note(self, line: str) -> None:
        """Say ``line`` now."""
        self._say(line)

    @contextlib.contextmanager
    def waiting(self, what: str, done: Callable[[], str] | None = None) -> Iterator[None]:
        """Around a wait for ``what``: a line once it has lasted ``delay``, one when it ends.

        ``done`` adds to the closing line (e.g. the phases a cluster went through).
        """
        if self.write is None:
            yield
            return
        started = time.monotonic()
        announced = threading.Event()
        finished = threading.Event()

        def announce() -> None:
            if not finished.wait(self.delay):
                announced.set()
                self._say(f"waiting for {what} ...")

        timer = threading.Thread(target=announce, name="pytest-vcluster progress", daemon=True)
        timer.start()
        outcome = "failed"
        try:
            yield
            outcome = "done"
        finally:
            finished.set()
            timer.join(timeout=1)
            if announced.is_set():
                extra = done() if done is not None and outcome == "done" else ""
                self._say(f"{what}: {outcome} after {time.monotonic() - started:.1f}s{extra}")
