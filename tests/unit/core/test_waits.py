"""Deadlines and waits: give up on time and say what was seen last."""

from __future__ import annotations

import pytest

from pytest_vcluster.core.errors import WaitTimeoutError
from pytest_vcluster.core.waits import Deadline, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_deadline() -> None:
    clock = FakeClock()
    deadline = Deadline(10, clock=clock)
    clock.now += 4
    assert (deadline.elapsed, deadline.remaining, deadline.expired) == (4, 6, False)
    clock.now += 7
    assert (deadline.remaining, deadline.expired) == (0, True)


def test_wait_returns_when_done() -> None:
    clock = FakeClock()
    states = iter([(False, "Pending"), (False, "ContainerCreating"), (True, "Ready")])
    seen = wait_until("pod", lambda: next(states), Deadline(60, clock=clock), sleep=clock.sleep)
    assert seen == "Ready"
    assert clock.now == 102.0


def test_wait_times_out_with_last_seen() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeoutError) as info:
        wait_until(
            "control-plane pod Ready",
            lambda: (False, f"Pending at {clock.now:g}"),
            Deadline(5, clock=clock),
            interval=2,
            sleep=clock.sleep,
        )
    error = info.value
    assert error.awaited == "control-plane pod Ready"
    assert error.last_seen == "Pending at 105"
    assert str(error) == (
        "timed out after 5s waiting for control-plane pod Ready; last seen: Pending at 105"
    )


def test_probe_exceptions_mean_not_yet() -> None:
    clock = FakeClock()
    calls = []

    def probe() -> tuple[bool, str]:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("connection refused")
        return True, "ok"

    assert wait_until("api", probe, Deadline(60, clock=clock), sleep=clock.sleep) == "ok"

    def broken() -> tuple[bool, str]:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(
        WaitTimeoutError, match="last seen: ConnectionRefusedError: connection refused"
    ):
        wait_until("api", broken, Deadline(3, clock=clock), sleep=clock.sleep)
