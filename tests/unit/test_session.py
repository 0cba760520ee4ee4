"""Factory and worker pool: specs, slots, sharing, and teardown actions (fake manager)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kubernetes import client

from pytest_vcluster.config import Settings, TeardownMode
from pytest_vcluster.handle import VCluster
from pytest_vcluster.lifecycle import TeardownAction, VClusterManager, VClusterSpec
from pytest_vcluster.markers import MarkerArgs
from pytest_vcluster.session import VClusterFactory, WorkerPool, host_state_dir
from pytest_vcluster.versions import KubeVersion


@dataclass
class FakeManager:
    specs: list[VClusterSpec] = field(default_factory=list)
    finished: list[tuple[str, TeardownAction]] = field(default_factory=list)
    modes: list[TeardownMode] = field(default_factory=list)

    def create(self, spec: VClusterSpec, *, teardown_on_error: TeardownMode) -> VCluster:
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
        )

    def finish(self, handle: VCluster, action: TeardownAction) -> None:
        self.finished.append((handle.name, action))


def make_factory(manager: FakeManager, marker: MarkerArgs, **kwargs: Any) -> VClusterFactory:
    return VClusterFactory(
        manager=cast(VClusterManager, manager),
        settings=Settings(teardown=TeardownMode.DELETE),
        nodeid="tests/test_x.py::test_y[k8s-1.33]",
        test_name="test_y[k8s-1.33]",
        marker=marker,
        default_version=KubeVersion(1, 33),
        **kwargs,
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
    factory.close(failed=False)
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
    assert manager.finished == [("vc1", TeardownAction.KEEP)]


def test_worker_pool_shares_per_spec() -> None:
    manager = FakeManager()
    pool = WorkerPool(
        cast(VClusterManager, manager), Settings(teardown=TeardownMode.PAUSE_ON_FAILURE), "gw1"
    )
    a = pool.get(KubeVersion(1, 33))
    assert pool.get(KubeVersion(1, 33)) is a
    b = pool.get(KubeVersion(1, 34))
    c = pool.get(KubeVersion(1, 33), values={"x": 1})
    assert len({a.name, b.name, c.name}) == 3
    assert {spec.slot for spec in manager.specs} == {"worker:gw1"}
    pool.close(failed=True)
    assert sorted(manager.finished) == [
        ("vc1", TeardownAction.PAUSE),
        ("vc2", TeardownAction.PAUSE),
        ("vc3", TeardownAction.PAUSE),
    ]


def test_host_state_dir_is_shared_by_workers_and_controller(tmp_path: Path) -> None:
    controller = tmp_path / "pytest-7"
    assert host_state_dir(controller, is_xdist_worker=False) == controller
    assert host_state_dir(controller / "gw0", is_xdist_worker=True) == controller
