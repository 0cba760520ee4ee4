"""Ctrl-C and SIGTERM: tear down what the run made, then, if asked again, stop waiting.

The first SIGINT or SIGTERM stops the run: pytest gets a ``KeyboardInterrupt`` (SIGTERM is
turned into one, so a CI runner cancelling the job gets the same cleanup as Ctrl-C), creates
in progress end at their next poll (:attr:`Interrupts.cancel`) and pytest tears the fixtures
down, which deletes, pauses or keeps each cluster by its teardown mode. While the plugin's own
teardown runs it is *shielded*: a first signal then only asks pytest to stop after it, so a
deletion is never cut in half. A second signal stops every wait (:attr:`Interrupts.abandon`)
and prints what is left on the host and the command that removes it.

Some work must not be cut in half although it is no teardown: loading the plugin's heavy
modules on first use (a ``KeyboardInterrupt`` in the middle of ``import kubernetes`` leaves a
half-made module behind, and the teardown's own import of it then fails). Such work runs
*deferred*: a first signal there stops the run as usual, but its ``KeyboardInterrupt`` is
raised when the work is done.

Signal handlers belong to the process, so there is one :data:`interrupts` object per process.
The plugin installs it only once a run sets up its first vcluster fixture, and gives the
previous handlers back at the end; installs nest (a pytester run inside a run), each uninstall
restoring what its install replaced. Python runs signal handlers
in the main thread only, so only the main thread's teardown is shielded: a background thread
(a lookahead start cleaning up after itself) is never cut by a signal, and its shield must not
swallow the signal meant for the test the main thread runs.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["Interrupts", "interrupts"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Nesting(threading.local):
    """How deep the current thread is in blocks of one kind; each thread counts its own, so no
    two threads race on one count (the class attributes are every thread's start)."""

    depth = 0
    #: A deferred block's interrupt still to raise.
    owed = False

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1


class Interrupts:
    """The process's interrupt state and signal handlers."""

    def __init__(self) -> None:
        #: Set by the first signal: creates stop waiting and clean up what they made.
        self.cancel = threading.Event()
        #: Set by the second signal: teardown stops waiting too.
        self.abandon = threading.Event()
        self.signal_name: str | None = None
        # Per thread: each thread counts its own nesting, so no two threads race on one count.
        self._shield = _Nesting()
        self._defer = _Nesting()
        # One entry per install still in effect: the handlers and callbacks it replaced.
        self._installs: list[
            tuple[dict[int, object], Callable[[str], None], Callable[[], list[str]]]
        ] = []
        self._stop_run: Callable[[str], None] = lambda reason: None
        self._leftovers: Callable[[], list[str]] = list
        self._write: Callable[[str], object] = sys.stderr.write

    def reset(self) -> None:
        """Forget an earlier interrupt (a new session in the same process, e.g. pytester)."""
        self.cancel.clear()
        self.abandon.clear()
        self.signal_name = None
        self._shield = _Nesting()
        self._defer = _Nesting()

    def install(
        self,
        *,
        stop_run: Callable[[str], None],
        leftovers: Callable[[], list[str]],
        write: Callable[[str], object] | None = None,
    ) -> bool:
        """Take over SIGINT and SIGTERM (main thread only); return whether it did.

        ``stop_run`` asks pytest to stop after the current test; ``leftovers`` lists what
        would be left on the host if the run stopped waiting now, as lines of text.
        """
        if threading.current_thread() is not threading.main_thread():
            return False
        if not self._installs:
            self.reset()
        previous: dict[int, object] = {
            signum: signal.signal(signum, self._handle) for signum in _SIGNALS
        }
        self._installs.append((previous, self._stop_run, self._leftovers))
        self._stop_run = stop_run
        self._leftovers = leftovers
        if write is not None:
            self._write = write
        return True

    def uninstall(self) -> None:
        """Give the signals back to whatever the matching :meth:`install` replaced."""
        if threading.current_thread() is not threading.main_thread() or not self._installs:
            return
        previous, self._stop_run, self._leftovers = self._installs.pop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    @property
    def installed(self) -> bool:
        """True while an install is in effect."""
        return bool(self._installs)

    @property
    def interrupted(self) -> bool:
        """True once a first signal came."""
        return self.cancel.is_set()

    def shielded(self) -> contextlib.AbstractContextManager[None]:
        """Run teardown so that a first signal does not cut it in half (main thread only:
        signals only ever interrupt the main thread)."""
        return self._shield.entered()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Run work that a first signal must not cut in half, then raise its
        ``KeyboardInterrupt`` (main thread only, like :meth:`shielded`)."""
        defer = self._defer
        try:
            with defer.entered():
                yield
        finally:
            if not defer.depth and defer.owed:
                defer.owed = False
                raise KeyboardInterrupt  # also in place of the work's own error: Ctrl-C wins

    @property
    def _shielded_now(self) -> bool:
        # The handler runs in the main thread, so this reads the main thread's own depth.
        return bool(self._shield.depth)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        name = signal.Signals(signum).name
        if not self.cancel.is_set():
            self.signal_name = name
            self.cancel.set()
            self._stop_run(f"pytest-vcluster: {name}")
            if self._shielded_now:
                self._write(
                    f"\npytest-vcluster: {name}: finishing the teardown of this run's vclusters "
                    f"(send {name} again to stop waiting)\n"
                )
                return
            if self._defer.depth:
                self._defer.owed = True
                return
            raise KeyboardInterrupt
        if not self.abandon.is_set():
            self.abandon.set()
            self._write(self.leftover_report(name))
            if self._shielded_now:
                return
        raise KeyboardInterrupt

    def leftover_report(self, name: str) -> str:
        """What stopping now leaves on the host, and how to remove it."""
        lines = self._leftovers()
        head = f"\npytest-vcluster: {name} again: stopped waiting"
        if not lines:
            return f"{head}; nothing is left on the host\n"
        return f"{head}; left on the host:\n" + "".join(f"  {line}\n" for line in lines)


#: The interrupt state of this process.
interrupts = Interrupts()
