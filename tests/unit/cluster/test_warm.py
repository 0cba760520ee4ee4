"""Parking and claiming warm clusters on the host (the API side is a stand-in that keeps
namespaces and ConfigMaps, with resourceVersions and a ``Date`` header as the host sends)."""

from __future__ import annotations

import datetime
import email.utils
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.cluster import warm
from pytest_vcluster.cluster.inventory import Entry, Inventory, ObjectKey
from pytest_vcluster.cluster.recycling import AUTH_CACHE_SECONDS, Baseline
from pytest_vcluster.cluster.reset import HostBaseline
from pytest_vcluster.cluster.warm import BASELINE_CONFIGMAP, WarmClusters
from pytest_vcluster.core.labels import (
    ANNOTATION_PARKED_AT,
    ANNOTATION_TEST,
    ANNOTATION_TESTS_BEFORE,
    LABEL_MANAGED,
    LABEL_NAME,
    LABEL_RUN_ID,
    LABEL_SPEC_HASH,
    LABEL_STATE,
)
from pytest_vcluster.host.namespaces import HostNamespaces

KEY = ObjectKey("", "ConfigMap", "kube-system", "coredns")
BASELINE = Baseline(
    Inventory({KEY: Entry(KEY, "v1", "uid-1", "7")}, {}),
    HostBaseline("pv-a", {"pods": frozenset({"pv-a-0"})}),
    0.4,
)
T0 = datetime.datetime(2026, 12, 3, 12, 0, 0, tzinfo=datetime.UTC)


@dataclass
class Host:
    """Namespaces and ConfigMaps as the host keeps them, and the host's clock."""

    now: datetime.datetime = T0
    namespaces: dict[str, client.V1Namespace] = field(default_factory=dict)
    config_maps: dict[tuple[str, str], client.V1ConfigMap] = field(default_factory=dict)
    version: int = 0
    #: Namespaces another run claims just before this one patches them (a lost race).
    stolen: set[str] = field(default_factory=set)

    def _headers(self) -> dict[str, str]:
        return {"Date": email.utils.format_datetime(self.now, usegmt=True)}

    def _bump(self, ns: client.V1Namespace) -> None:
        self.version += 1
        ns.metadata.resource_version = str(self.version)

    def add(self, name: str, spec_hash: str = "h1", state: str = "active") -> None:
        ns = client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=name,
                labels={LABEL_MANAGED: "true", LABEL_SPEC_HASH: spec_hash, LABEL_NAME: name,
                        LABEL_STATE: state, LABEL_RUN_ID: "run0"},
                annotations={ANNOTATION_TEST: "t.py::test_a"},
            )
        )  # fmt: skip
        self._bump(ns)
        self.namespaces[name] = ns

    # -- the CoreV1Api calls WarmClusters makes --

    def list_namespace_with_http_info(
        self, *, label_selector: str, **_: Any
    ) -> tuple[Any, int, Any]:
        wanted = dict(part.split("=", 1) for part in label_selector.split(","))
        items = [
            ns
            for ns in self.namespaces.values()
            if all(ns.metadata.labels.get(k) == v for k, v in wanted.items())
        ]
        return client.V1NamespaceList(items=items), 200, self._headers()

    def read_namespace_with_http_info(self, name: str, **_: Any) -> tuple[Any, int, Any]:
        return self.namespaces[name], 200, self._headers()

    def _patch(self, name: str, body: dict[str, Any]) -> client.V1Namespace:
        ns = self.namespaces[name]
        meta = body["metadata"]
        if name in self.stolen or meta.get("resourceVersion") not in (
            None,
            ns.metadata.resource_version,
        ):
            raise ApiException(status=409, reason="Conflict")
        ns.metadata.labels.update(meta.get("labels", {}))
        ns.metadata.annotations.update(meta.get("annotations", {}))
        self._bump(ns)
        return ns

    def patch_namespace(self, name: str, body: dict[str, Any], **_: Any) -> client.V1Namespace:
        return self._patch(name, body)

    def patch_namespace_with_http_info(
        self, name: str, body: dict[str, Any], **_: Any
    ) -> tuple[Any, int, Any]:
        return self._patch(name, body), 200, self._headers()

    def create_namespaced_config_map(
        self, namespace: str, body: client.V1ConfigMap, **_: Any
    ) -> None:
        if (namespace, body.metadata.name) in self.config_maps:
            raise ApiException(status=409, reason="AlreadyExists")
        self.config_maps[namespace, body.metadata.name] = body

    def replace_namespaced_config_map(
        self, name: str, namespace: str, body: client.V1ConfigMap, **_: Any
    ) -> None:
        self.config_maps[namespace, name] = body

    def read_namespaced_config_map(self, name: str, namespace: str, **_: Any) -> client.V1ConfigMap:
        if (namespace, name) not in self.config_maps:
            raise ApiException(status=404, reason="NotFound")
        return self.config_maps[namespace, name]


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Host:
    found = Host()
    monkeypatch.setattr(HostNamespaces, "core", property(lambda self: found))
    return found


def clusters(run: str = "run1") -> WarmClusters:
    return WarmClusters(cast(client.ApiClient, None), run, "gw0")


def test_a_parked_cluster_is_claimed_with_its_baseline_by_a_later_run(host: Host) -> None:
    host.add("pv-a")
    clusters("run0").park("pv-a", BASELINE, tests_before=3)
    labels = host.namespaces["pv-a"].metadata.labels
    assert labels[LABEL_STATE] == "warm"
    assert host.namespaces["pv-a"].metadata.annotations[ANNOTATION_TESTS_BEFORE] == "3"
    assert clusters().count("h1") == 1
    assert clusters().count("h2") == 0

    host.now = T0 + datetime.timedelta(minutes=5)
    claim = clusters("run1").claim("h1", "t.py::test_b")

    assert claim is not None
    assert (claim.name, claim.namespace, claim.tests_before) == ("pv-a", "pv-a", 3)
    assert claim.baseline == BASELINE
    assert claim.problem == ""
    assert claim.hold_seconds == 0.0  # parked minutes ago: the token caches forgot it
    meta = host.namespaces["pv-a"].metadata
    assert (meta.labels[LABEL_STATE], meta.labels[LABEL_RUN_ID]) == ("active", "run1")
    assert meta.annotations[ANNOTATION_TEST] == "t.py::test_b"
    assert clusters().claim("h1", "t.py::test_c") is None  # claimed once only


def test_a_cluster_claimed_right_after_it_was_parked_waits_out_the_token_caches(
    host: Host,
) -> None:
    host.add("pv-a")
    clusters("run0").park("pv-a", BASELINE, tests_before=1)
    host.now = T0 + datetime.timedelta(seconds=2)
    # 14.5 s still to wait: longer than a claimer waits by default, so it is left for later.
    assert clusters().claim("h1", "t.py::test_b") is None
    host.now = T0 + datetime.timedelta(seconds=8)
    claim = clusters().claim("h1", "t.py::test_b")
    assert claim is not None
    # Whole seconds on both readings: one more second than the caches need.
    assert claim.hold_seconds == pytest.approx(AUTH_CACHE_SECONDS + 1.0 - 8.0)


def test_a_lost_race_moves_on_to_the_next_warm_cluster(host: Host) -> None:
    for name in ("pv-a", "pv-b"):
        host.add(name)
        clusters("run0").park(name, BASELINE, tests_before=1)
        host.now += datetime.timedelta(seconds=1)
    host.stolen.add("pv-a")  # the longest parked, claimed by another run first
    host.now += datetime.timedelta(minutes=1)
    claim = clusters().claim("h1", "t.py::test_b")
    assert claim is not None
    assert claim.name == "pv-b"


def test_only_warm_clusters_of_the_spec_are_claimed(host: Host) -> None:
    host.add("pv-active")
    host.add("pv-other", spec_hash="h2", state="warm")
    assert clusters().claim("h1", "t.py::test_b") is None
    assert host.namespaces["pv-active"].metadata.labels[LABEL_STATE] == "active"


def test_a_warm_cluster_whose_baseline_cannot_be_read_is_claimed_to_be_deleted(
    host: Host,
) -> None:
    host.add("pv-a")
    clusters("run0").park("pv-a", BASELINE, tests_before=1)
    host.config_maps.clear()
    host.now += datetime.timedelta(minutes=1)
    claim = clusters().claim("h1", "t.py::test_b")
    assert claim is not None
    assert claim.baseline is None
    assert "stored baseline cannot be read" in claim.problem


def test_parking_again_replaces_the_stored_baseline(host: Host) -> None:
    host.add("pv-a")
    clusters("run0").park("pv-a", BASELINE, tests_before=1)
    host.now += datetime.timedelta(minutes=1)
    assert clusters("run1").claim("h1", "t.py::test_b") is not None
    clusters("run1").park("pv-a", BASELINE, tests_before=2)
    assert ("pv-a", BASELINE_CONFIGMAP) in host.config_maps
    assert host.namespaces["pv-a"].metadata.annotations[ANNOTATION_TESTS_BEFORE] == "2"


@pytest.mark.parametrize(
    ("parked_at", "host_now", "hold"),
    [
        (None, T0, AUTH_CACHE_SECONDS + 1.0),
        ("not a time", T0, AUTH_CACHE_SECONDS + 1.0),
        (T0.isoformat(), None, AUTH_CACHE_SECONDS + 1.0),
        (T0.isoformat(), T0 + datetime.timedelta(hours=1), 0.0),
        # A host clock that went back: never more than the full hold.
        (T0.isoformat(), T0 - datetime.timedelta(hours=1), AUTH_CACHE_SECONDS + 1.0),
    ],
)
def test_the_hold_is_full_whenever_a_time_is_unknown(
    parked_at: str | None, host_now: datetime.datetime | None, hold: float
) -> None:
    assert warm._hold(parked_at, host_now) == pytest.approx(hold)


def test_the_parking_time_is_the_last_use_by_the_hosts_clock(host: Host) -> None:
    host.add("pv-a")
    clusters("run0").park("pv-a", BASELINE, tests_before=1, idle_for=2.5)
    stamp = host.namespaces["pv-a"].metadata.annotations[ANNOTATION_PARKED_AT]
    assert datetime.datetime.fromisoformat(stamp) == T0 - datetime.timedelta(seconds=2.5)
