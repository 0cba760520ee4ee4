"""Factory and worker pool: specs, slots, sharing, and teardown actions (fake manager)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from kubernetes import client

from pytest_vcluster import plugin
from pytest_vcluster.cluster.handle import VCluster
from pytest_vcluster.cluster.lifecycle import TeardownAction
from pytest_vcluster.core.errors import ConfigError
from pytest_vcluster.core.stats import Stats
from pytest_vcluster.pool.factory import VClusterFactory, WorkerPool
from pytest_vcluster.pool.lookahead import ClusterPool
from pytest_vcluster.settings.config import Settings, TeardownMode
from pytest_vcluster.settings.markers import MarkerArgs
from pytest_vcluster.settings.request import ClusterRequest, VClusterSpec
from pytest_vcluster.settings.versions import KubeVersion


@dataclass
class FakeManager:
    specs: list[VClusterSpec] = field(default_factory=list)
    finished: list[tuple[str, TeardownAction]] = field(default_factory=list)
    modes: list[TeardownMode] = field(default_factory=list)

    def create(
        self, spec: VClusterSpec, *, teardown_on_error: TeardownMode, prepared: bool = False
    ) -> VCluster:
        self.specs.append(spec)
        self.modes.append(teardown_on_error)
        return VCluster(
            name=f"vc{len(self.specs)}",
            namespace=f"vc{len(self.specs)}",
            version="v1.33.4",
            requested_version=spec.version,
            kubeconfig=Path("/dev/null"),
            api_client=cast(client.ApiClient, None),
            spec_hash=spec.spec_hash,
            persistent=spec.persistent,
        )

    def finish(self, handle: VCluster, action: TeardownAction) -> None:
        self.finished.append((handle.name, action))

    def hand_over(self, handle: VCluster, test: str) -> None:
        del handle, test

    def can_recycle(self, handle: VCluster) -> bool:
        return False

    def parks(self, spec: VClusterSpec) -> bool:
        return False


def make_factory(
    manager: FakeManager, marker: MarkerArgs, extra_values: dict[str, Any] | None = None
) -> VClusterFactory:
    request = ClusterRequest(
        nodeid="tests/test_x.py::test_y[k8s-1.33]",
        name="test_y[k8s-1.33]",
        marker=marker,
        version=KubeVersion(1, 33),
        extra_values=extra_values or {},
    )
    pool = ClusterPool(manager, lambda: [], lookahead=0)
    return VClusterFactory(
        pool=pool,
        settings=Settings(teardown=TeardownMode.DELETE),
        request=request,
        worker="gw0",
        stats=Stats(),
    )


def test_factory_creates_and_tears_down_all() -> None:
    manager = FakeManager()
    factory = make_factory(manager, MarkerArgs(values={"a": 1}), extra_values={"a": 0, "b": 2})
    first = factory()
    second = factory(version="1.34", values={"c": 3})
    assert first.requested_version == KubeVersion(1, 33)
    assert second.requested_version == KubeVersion(1, 34)
    spec1, spec2 = manager.specs
    assert (spec1.values["a"], spec1.values["b"]) == (1, 2)  # marker over fixture values
    assert spec2.values["c"] == 3
    assert spec1.slot != spec2.slot
    assert spec1.test == "tests/test_x.py::test_y[k8s-1.33]"
    assert not spec1.persistent  # deleted after the test: no volume claim needed
    [setup] = factory.stats.setups  # only the first cluster is the test's own setup
    assert setup["source"] == "created"
    factory.close(failed=False)
    factory.pool.close()
    assert manager.finished == [("vc2", TeardownAction.DELETE), ("vc1", TeardownAction.DELETE)]
    factory.close(failed=False)
    assert len(manager.finished) == 2  # nothing is torn down twice


def test_factory_uses_marker_teardown_and_outcome() -> None:
    manager = FakeManager()
    factory = make_factory(manager, MarkerArgs(teardown=TeardownMode.KEEP_ON_FAILURE, timeout=9))
    factory()
    assert manager.modes == [TeardownMode.KEEP_ON_FAILURE]
    assert manager.specs[0].ready_timeout == 9
    factory.close(failed=True)
    factory.pool.close()
    assert manager.finished == [("vc1", TeardownAction.KEEP)]


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"version": 1.33}, "version"),
        ({"timeout": -1}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"values": ["a"]}, "values"),
        ({"persistent": "yes"}, "persistent"),
    ],
)
def test_factory_rejects_bad_arguments_before_creating(kwargs: dict[str, Any], option: str) -> None:
    manager = FakeManager()
    factory = make_factory(manager, MarkerArgs())
    with pytest.raises(ConfigError, match=rf"vcluster_factory\({option}=\.\.\.\)"):
        factory(**kwargs)
    assert manager.specs == []


def test_factory_persistent_follows_teardown_and_argument() -> None:
    manager = FakeManager()
    factory = make_factory(manager, MarkerArgs(teardown=TeardownMode.PAUSE_ON_FAILURE))
    factory()
    factory(persistent=False)
    assert [spec.persistent for spec in manager.specs] == [True, False]
    factory.close(failed=False)
    factory.pool.close()


def worker_request(
    nodeid: str, version: KubeVersion, values: dict[str, Any] | None = None
) -> ClusterRequest:
    return ClusterRequest(nodeid=nodeid, name=nodeid, version=version, extra_values=values or {})


def test_worker_pool_shares_per_spec_through_the_pool() -> None:
    manager = FakeManager()
    stats = Stats()
    settings = Settings(teardown=TeardownMode.PAUSE_ON_FAILURE)
    cluster_pool = ClusterPool(manager, list, lookahead=0)
    pool = WorkerPool(cluster_pool, settings, "gw1", stats)
    a = pool.get(worker_request("t.py::a", KubeVersion(1, 33)))
    assert pool.get(worker_request("t.py::b", KubeVersion(1, 33))) is a
    b = pool.get(worker_request("t.py::c", KubeVersion(1, 34)))
    c = pool.get(worker_request("t.py::d", KubeVersion(1, 33), {"x": 1}))
    assert len({a.name, b.name, c.name}) == 3
    assert {spec.slot for spec in manager.specs} == {"worker:gw1"}
    # Every test that used a shared cluster is in the setup statistics, the first one of
    # each spec as the one that made it.
    assert [(s["nodeid"], s["source"]) for s in stats.setups] == [
        ("t.py::a", "created"),
        ("t.py::b", "shared"),
        ("t.py::c", "created"),
        ("t.py::d", "created"),
    ]
    pool.close(failed=True)
    cluster_pool.close()
    assert sorted(manager.finished) == [
        ("vc1", TeardownAction.PAUSE),
        ("vc2", TeardownAction.PAUSE),
        ("vc3", TeardownAction.PAUSE),
    ]


@pytest.mark.parametrize(
    ("option", "workerinput", "controller"),
    [
        ({"dist": "load", "numprocesses": 2}, None, True),
        # --dist load --tx 2*popen: no -n, still the controller (once missed: it leaked hosts)
        ({"dist": "load", "numprocesses": None}, None, True),
        ({"dist": "no"}, None, False),
        ({}, None, False),  # xdist not installed or -p no:xdist
        ({"dist": "load"}, {"workerid": "gw0"}, False),
    ],
)
def test_xdist_controller_is_detected_as_xdist_does(
    option: dict[str, object], workerinput: dict[str, str] | None, controller: bool
) -> None:
    config = SimpleNamespace(option=SimpleNamespace(**option))
    if workerinput is not None:
        config.workerinput = workerinput
    assert plugin._is_xdist_controller(config) is controller  # type: ignore[arg-type]
