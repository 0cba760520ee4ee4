"""Signals and threads: the shield belongs to the thread that tears down, and an xdist
controller waits for its workers' teardown before pytest-xdist stops them."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_vcluster import plugin
from pytest_vcluster.core.interrupts import Interrupts, interrupts
from pytest_vcluster.core.progress import Progress
from pytest_vcluster.core.waits import Deadline
from pytest_vcluster.host import acquire
from pytest_vcluster.pool.xdist_workers import finished, leftover_hint, stop_and_wait
from pytest_vcluster.settings.config import Settings


def handler_writing_to(written: list[str]) -> Interrupts:
    handler = Interrupts()
    handler._stop_run = lambda reason: None
    handler._leftovers = list
    handler._write = written.append
    return handler


def test_a_background_threads_shield_does_not_swallow_the_main_threads_signal() -> None:
    # Review: a lookahead thread cleaning up a failed start shielded the whole process, so
    # Ctrl-C raised nothing and the test went on running.
    handler = handler_writing_to([])
    inside, release = threading.Event(), threading.Event()

    def clean_up_in_background() -> None:
        with handler.shielded():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=clean_up_in_background)
    thread.start()
    try:
        assert inside.wait(10)
        with pytest.raises(KeyboardInterrupt):
            handler._handle(signal.SIGINT, None)
    finally:
        release.set()
        thread.join(10)
    assert handler.cancel.is_set()
    assert not handler.abandon.is_set()


def test_shield_depth_is_counted_per_thread_without_races() -> None:
    handler = handler_writing_to([])
    errors: list[BaseException] = []

    def nest_often() -> None:
        try:
            for _ in range(2000):
                with handler.shielded(), handler.shielded():
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=nest_often) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert not handler._shielded_now
    # After all that nesting, a first signal outside any shield still stops the test.
    with pytest.raises(KeyboardInterrupt):
        handler._handle(signal.SIGINT, None)


def test_the_main_threads_own_shield_still_holds() -> None:
    written: list[str] = []
    handler = handler_writing_to(written)
    with handler.shielded():
        handler._handle(signal.SIGINT, None)
    assert "finishing the teardown" in written[0]


def test_a_first_signal_in_deferred_work_is_raised_when_the_work_is_done() -> None:
    # CI: a Ctrl-C while the xdist controller imported the API client (at the first test's
    # report) left a half-made kubernetes.client; the controller's teardown then failed.
    stopped: list[str] = []
    handler = handler_writing_to([])
    handler._stop_run = stopped.append
    done: list[str] = []

    def nested_work() -> None:
        with handler.deferred():
            with handler.deferred():
                handler._handle(signal.SIGINT, None)
                done.append("inner")
            done.append("outer")

    with pytest.raises(KeyboardInterrupt):
        nested_work()
    assert done == ["inner", "outer"]
    assert handler.cancel.is_set()
    assert stopped == ["pytest-vcluster: SIGINT"]
    # Owed once: the next deferred work runs undisturbed.
    with handler.deferred():
        done.append("later")
    assert done[-1] == "later"


def test_deferred_work_without_a_signal_raises_nothing() -> None:
    handler = handler_writing_to([])
    with handler.deferred():
        pass
    assert not handler.cancel.is_set()


def test_the_signal_wins_over_the_deferred_works_own_error() -> None:
    handler = handler_writing_to([])

    def failing_work() -> None:
        with handler.deferred():
            handler._handle(signal.SIGINT, None)
            raise OSError("lease file gone")

    with pytest.raises(KeyboardInterrupt) as raised:
        failing_work()
    assert isinstance(raised.value.__context__, OSError)


def test_a_second_signal_cuts_deferred_work_at_once() -> None:
    written: list[str] = []
    handler = handler_writing_to(written)
    done: list[str] = []

    def work_signalled_twice() -> None:
        with handler.deferred():
            handler._handle(signal.SIGINT, None)
            handler._handle(signal.SIGINT, None)
            done.append("after the second signal")

    with pytest.raises(KeyboardInterrupt):
        work_signalled_twice()
    assert done == []
    assert handler.abandon.is_set()
    assert "SIGINT again" in written[0]


def test_a_shield_inside_deferred_work_keeps_its_meaning() -> None:
    # A teardown is never followed by a KeyboardInterrupt of its own: pytest stops after it.
    written: list[str] = []
    handler = handler_writing_to(written)
    with handler.deferred(), handler.shielded():
        handler._handle(signal.SIGINT, None)
    assert "finishing the teardown" in written[0]


def test_a_ctrl_c_while_the_plugin_loads_comes_after_the_loading(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[object] = []

    def make_host_while_signalled(*args: object, **kwargs: object) -> object:
        interrupts._handle(signal.SIGINT, None)
        made.append(object())
        return made[-1]

    monkeypatch.setattr(acquire, "make_host", make_host_while_signalled)
    monkeypatch.setattr(interrupts, "_stop_run", lambda reason: None)
    config = SimpleNamespace(stash=pytest.Stash())
    config.stash[plugin.SETTINGS_KEY] = Settings()
    config.stash[plugin.RUN_ID_KEY] = "run"
    config.stash[plugin.PROGRESS_KEY] = Progress(None)
    try:
        with pytest.raises(KeyboardInterrupt):
            plugin._host(config)  # type: ignore[arg-type]
        # The host was made: the teardown finds it and releases it, no import left to fail.
        assert plugin._host(config) is made[0]  # type: ignore[arg-type]
        assert interrupts.interrupted
    finally:
        interrupts.reset()


@dataclass
class FakeChannel:
    closed: bool = False

    def isclosed(self) -> bool:
        return self.closed


@dataclass
class FakeGateway:
    id: str


@dataclass
class FakeWorker:
    """What the controller sees of a pytest-xdist WorkerController."""

    id: str
    finish_after_shutdown: bool = True
    channel: FakeChannel = field(default_factory=FakeChannel)
    shutdowns: int = 0
    workeroutput: dict[str, object] | None = None

    @property
    def gateway(self) -> FakeGateway:
        return FakeGateway(self.id)

    def shutdown(self) -> None:
        self.shutdowns += 1
        if self.finish_after_shutdown:
            threading.Timer(0.3, self._finish).start()

    def _finish(self) -> None:
        self.workeroutput = {"exitstatus": 2}


def test_the_controller_waits_until_every_worker_finished_its_teardown() -> None:
    workers = [FakeWorker("gw0"), FakeWorker("gw1")]
    still = stop_and_wait(workers, Deadline(10, stop=threading.Event()))
    assert still == []
    assert all(finished(worker) for worker in workers)
    assert [worker.shutdowns for worker in workers] == [1, 1]


def test_a_worker_that_died_counts_as_finished() -> None:
    dead = FakeWorker("gw0", finish_after_shutdown=False, channel=FakeChannel(closed=True))
    assert stop_and_wait([dead], Deadline(10, stop=threading.Event())) == []


def test_the_wait_ends_at_its_deadline_or_at_a_second_signal() -> None:
    stuck = FakeWorker("gw1", finish_after_shutdown=False)
    assert stop_and_wait([stuck], Deadline(0.5, stop=threading.Event())) == ["gw1"]
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert stop_and_wait([stuck], Deadline(60, stop=stop)) == ["gw1"]


def test_leftover_hint_names_the_host_the_commands_need() -> None:
    kind = leftover_hint(Settings(host_name="h1"), ["gw1"])
    assert kind[0] == "xdist worker(s) gw1 were still tearing down their vclusters"
    assert kind[-1] == "remove it with: pytest-vcluster reap --host-name h1"
    existing = leftover_hint(Settings(host_kubeconfig=Path("/k/config"), host_context="ctx"), [])
    assert existing == [
        "see what is left with: pytest-vcluster ls --host-kubeconfig /k/config --host-context ctx",
        "remove it with: pytest-vcluster reap --host-kubeconfig /k/config --host-context ctx",
    ]
