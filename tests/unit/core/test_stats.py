"""Counting what the plugin did and summarising ready times."""

from __future__ import annotations

import pytest

from pytest_vcluster.core.stats import Stats


def test_summary() -> None:
    stats = Stats()
    assert stats.empty
    assert stats.summary_lines() == []
    stats.record("created", 30.0)
    stats.record("created", 50.0)
    stats.record("resumed", 10.0)
    stats.record("deleted")
    stats.record("paused")
    assert stats.summary_lines() == [
        "vclusters: created 2, resumed 1, recycled 0, paused 1, deleted 1, kept 0, failed 0",
        "create/resume to ready: median 30.0s, max 50.0s over 3",
    ]


def test_merge_from_workers() -> None:
    controller, worker = Stats(), Stats()
    worker.record("created", 12.0)
    worker.record("kept")
    controller.merge(worker.to_dict())
    controller.merge(worker.to_dict())
    assert controller.counts["created"] == 2
    assert controller.counts["kept"] == 2
    assert controller.ready_seconds == [12.0, 12.0]


def test_unknown_event() -> None:
    with pytest.raises(ValueError, match="unknown event"):
        Stats().record("exploded")


def test_the_warm_pool_is_named_only_in_runs_that_used_it() -> None:
    stats = Stats()
    stats.record("created", 12.0)
    stats.record("adopted")
    stats.record("parked")
    stats.record("parked")
    stats.record_setup("t.py::test_a", "gw0", 0.4, "warm")
    stats.record_setup("t.py::test_b", "gw0", 0.0, "recycled")
    assert stats.summary_lines() == [
        "vclusters: created 1, resumed 0, recycled 0, paused 0, deleted 0, kept 0, failed 0, "
        "adopted 1, parked 2",
        # An adoption is no start: only the create's time.
        "create/resume to ready: median 12.0s, max 12.0s over 1",
        "tests waited for their vcluster: p50 0.2s, p95 0.4s over 2 "
        "(0 prepared ahead, 1 recycled, 1 adopted warm)",
    ]
