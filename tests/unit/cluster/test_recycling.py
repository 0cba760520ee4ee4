"""The baseline a recycled cluster is proven against, and what makes a reset not recyclable.

The reset and the inventory have tests of their own (``test_reset``, ``test_inventory``); here
they are stand-ins, so only the decisions of :mod:`pytest_vcluster.cluster.recycling` are
under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

import pytest
from kubernetes import client

from pytest_vcluster.cluster import recycling
from pytest_vcluster.cluster.inventory import Entry, Inventory, InventoryDiff, ObjectKey
from pytest_vcluster.cluster.reset import HostBaseline, HostCheck, ResetResult
from pytest_vcluster.core.errors import RunInterruptedError, VClusterError, WaitTimeoutError

API = cast(client.ApiClient, None)
HOST = HostBaseline("ns", {"pods": frozenset({"vc-0"})})


def inventory(resource_version: str, *, unlisted: bool = False) -> Inventory:
    key = ObjectKey("", "ConfigMap", "kube-system", "coredns")
    entry = Entry(key, "v1", "uid-1", resource_version)
    return Inventory({key: entry}, {}, unlisted={"pods": "503"} if unlisted else {})


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Inventory]]:
    """The inventories take_inventory returns, in order."""
    queue: list[Inventory] = []
    monkeypatch.setattr(recycling, "take_inventory", lambda *a, **k: queue.pop(0))
    monkeypatch.setattr(recycling, "host_baseline", lambda *a, **k: HOST)
    monkeypatch.setattr(recycling.time, "sleep", lambda seconds: None)
    yield queue
    assert queue == []  # every inventory given was taken


def test_the_baseline_is_the_first_inventory_that_agrees_with_the_one_before(
    looks: list[Inventory],
) -> None:
    looks += [inventory("1"), inventory("2"), inventory("2")]  # CoreDNS still settling at first
    baseline = recycling.take_baseline(API, API, "ns", timeout=30)
    assert (
        baseline.inventory.objects[next(iter(baseline.inventory.objects))].resource_version == "2"
    )
    assert baseline.host is HOST


def test_a_cluster_that_keeps_changing_or_cannot_be_listed_has_no_baseline(
    looks: list[Inventory],
) -> None:
    looks += [inventory("1"), inventory("2"), inventory("3", unlisted=True), inventory("3")]
    with pytest.raises(VClusterError, match="kept changing by itself after Ready"):
        recycling.take_baseline(API, API, "ns", timeout=30, settle_checks=3)


BASELINE = recycling.Baseline(inventory("1"), HOST, 0.5)
CLEAN_RESET = ResetResult(clean=True, reasons=(), diff=InventoryDiff(), inventory=inventory("1"))


def recycle(
    monkeypatch: pytest.MonkeyPatch,
    reset: Any,
    host: Any,
    timeout: float = 30,
    auth_cache: float = 0.0,
) -> recycling.RecycleResult:
    monkeypatch.setattr(recycling, "reset", reset)
    monkeypatch.setattr(recycling, "host_namespace_clean", host)
    return recycling.reset_to_baseline(
        API, API, "ns", BASELINE, timeout=timeout, auth_cache=auth_cache
    )


def test_a_clean_reset_and_a_clean_host_namespace_recycle(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def host(*args: Any, **kwargs: Any) -> HostCheck:
        seen.update(kwargs)
        return HostCheck(clean=True)

    result = recycle(monkeypatch, lambda *a, **k: CLEAN_RESET, host)
    assert (result.recycled, result.reasons) == (True, ())
    assert seen["force_after"] == 0  # only pods vcluster already deletes are forced


@pytest.mark.parametrize(
    ("reset", "host", "reason"),
    [
        (
            lambda *a, **k: ResetResult(
                clean=False, reasons=("changed: ServiceAccount default/default",),
                diff=InventoryDiff(), inventory=inventory("1"),
            ),
            None,
            "changed: ServiceAccount default/default",
        ),
        (
            lambda *a, **k: CLEAN_RESET,
            lambda *a, **k: HostCheck(clean=False, reasons=("host namespace ns: extra Pods",)),
            "extra Pods",
        ),
        (
            lambda *a, **k: (_ for _ in ()).throw(
                WaitTimeoutError("the objects added since the baseline deleted", 30, "1 left")
            ),
            None,
            "objects added since the baseline deleted",
        ),
        (lambda *a, **k: (_ for _ in ()).throw(OSError("connection reset")), None, "OSError"),
    ],
    ids=["baseline-changed", "host-not-clean", "reset-timed-out", "any-error"],
)  # fmt: skip
def test_anything_short_of_the_proof_is_not_recyclable(
    monkeypatch: pytest.MonkeyPatch, reset: Any, host: Any, reason: str
) -> None:
    result = recycle(monkeypatch, reset, host or (lambda *a, **k: HostCheck(clean=True)))
    assert result.recycled is False
    assert reason in " ".join(result.reasons)


def test_a_reset_past_its_budget_is_not_recyclable(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]

    def slow_reset(*args: Any, **kwargs: Any) -> ResetResult:
        now[0] += 45.0
        return CLEAN_RESET

    clock = type("Clock", (), {"monotonic": staticmethod(lambda: now[0])})
    monkeypatch.setattr(recycling, "time", clock)
    result = recycle(monkeypatch, slow_reset, lambda *a, **k: HostCheck(clean=True), 30)
    assert result.recycled is False
    assert "past its budget of 30s (--vcluster-reset-timeout)" in result.reasons[0]


def test_an_interrupt_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> ResetResult:
        raise RunInterruptedError("stopped resetting the virtual cluster: run interrupted")

    with pytest.raises(RunInterruptedError):
        recycle(monkeypatch, interrupted, lambda *a, **k: HostCheck(clean=True))


def test_the_cluster_is_handed_over_only_once_vclusters_auth_cache_forgot_the_last_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = ObjectKey("", "Pod", "t1", "web-1")
    with_pods = ResetResult(
        clean=True, reasons=(), diff=InventoryDiff(), inventory=inventory("1"), deleted=(pod,)
    )
    result = recycle(
        monkeypatch, lambda *a, **k: with_pods, lambda *a, **k: HostCheck(clean=True),
        auth_cache=0.3,
    )  # fmt: skip
    assert result.recycled
    # Counted from when the pods were gone (the end of the host check), not from the start.
    assert 0.25 <= result.auth_cache_seconds <= 1.0
    assert result.phases()["auth_cache"] == result.auth_cache_seconds
    # kube-apiserver caches a token for 10 s, vcluster's proxy for 5 s more.
    assert recycling.AUTH_CACHE_SECONDS > 15.0


def test_a_cluster_idle_since_before_the_reset_is_held_only_for_what_is_left_of_the_caches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recycling, "reset", lambda *a, **k: CLEAN_RESET)
    monkeypatch.setattr(recycling, "host_namespace_clean", lambda *a, **k: HostCheck(clean=True))
    now = recycling.time.monotonic()

    idle_long = recycling.reset_to_baseline(
        API, API, "ns", BASELINE, timeout=30, auth_cache=5.0, idle_since=now - 10
    )
    idle_briefly = recycling.reset_to_baseline(
        API, API, "ns", BASELINE, timeout=30, auth_cache=5.0, idle_since=now - 4.7
    )

    assert idle_long.recycled
    assert idle_long.auth_cache_seconds == 0.0
    assert 0.0 < idle_briefly.auth_cache_seconds <= 0.4


def test_an_idle_time_does_not_count_when_the_reset_deleted_something(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Someone used the cluster after it went idle: the caches may know them from just now.
    used = ResetResult(
        clean=True, reasons=(), diff=InventoryDiff(), inventory=inventory("1"),
        deleted=(ObjectKey("", "ConfigMap", "default", "left"),),
    )  # fmt: skip
    monkeypatch.setattr(recycling, "reset", lambda *a, **k: used)
    monkeypatch.setattr(recycling, "host_namespace_clean", lambda *a, **k: HostCheck(clean=True))
    result = recycling.reset_to_baseline(
        API, API, "ns", BASELINE, timeout=30, auth_cache=0.3,
        idle_since=recycling.time.monotonic() - 60,
    )  # fmt: skip
    assert result.auth_cache_seconds >= 0.25


def test_a_baseline_survives_its_json_form() -> None:
    again = recycling.Baseline.from_dict(json.loads(json.dumps(BASELINE.to_dict())))
    assert again == BASELINE
    with pytest.raises(ValueError, match="not a baseline"):
        recycling.Baseline.from_dict({"inventory": BASELINE.inventory.to_dict()})
