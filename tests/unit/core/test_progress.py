"""Progress lines: silent for short waits, two lines for long ones, none when quiet."""

from __future__ import annotations

import time

import pytest

from pytest_vcluster.core.progress import Progress


def test_a_short_wait_says_nothing() -> None:
    lines: list[str] = []
    with Progress(lines.append, delay=0.5).waiting("the host"):
        pass
    assert lines == []


def test_a_long_wait_says_what_it_waits_for_and_how_it_ended() -> None:
    lines: list[str] = []
    with Progress(lines.append, delay=0.05).waiting("the vcluster of t", lambda: " (ready 1.0s)"):
        time.sleep(0.3)
    assert lines[0] == "vcluster: waiting for the vcluster of t ..."
    assert lines[1].startswith("vcluster: the vcluster of t: done after 0.")
    assert lines[1].endswith("s (ready 1.0s)")


def test_a_long_wait_that_fails_says_so() -> None:
    lines: list[str] = []

    def slow_failure() -> None:
        with Progress(lines.append, delay=0.05).waiting("the host", lambda: " (never)"):
            time.sleep(0.2)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        slow_failure()
    assert lines[1].startswith("vcluster: the host: failed after 0.")
    assert "never" not in lines[1]


def test_without_a_writer_nothing_is_started() -> None:
    with Progress(None, delay=0).waiting("the host"):
        time.sleep(0.05)
