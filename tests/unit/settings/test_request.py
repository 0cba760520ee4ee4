"""Request resolution (marker, matrix version, fixture values → spec) and the phase timer."""

from __future__ import annotations

from pathlib import Path

from pytest_vcluster.cluster.probes import PhaseTimer
from pytest_vcluster.settings.config import Settings, TeardownMode
from pytest_vcluster.settings.markers import MarkerArgs
from pytest_vcluster.settings.request import ClusterRequest
from pytest_vcluster.settings.versions import KubeVersion

SETTINGS = Settings(version_map={"1.33": "v1.33.13"})


def test_the_same_request_gives_the_same_spec_at_collection_and_at_setup() -> None:
    marker = MarkerArgs(values={"a": 1}, timeout=30)
    at_collection = ClusterRequest("t.py::test_x", "test_x", marker, KubeVersion(1, 33), {"b": 2})
    at_setup = ClusterRequest("t.py::test_x", "test_x", marker, KubeVersion(1, 33), {"b": 2})
    first, second = at_collection.spec(SETTINGS), at_setup.spec(SETTINGS)
    assert first == second
    assert first.slot == "test:t.py::test_x:0"
    assert first.ready_timeout == 30
    assert (first.values["a"], first.values["b"]) == (1, 2)
    assert first.values["controlPlane"]["distro"]["k8s"]["version"] == "v1.33.13"


def test_layers_and_overrides() -> None:
    request = ClusterRequest(
        "t.py::test_x", "test_x", MarkerArgs(values={"a": "marker"}), None, {"a": "fixture"}
    )
    assert request.spec(SETTINGS).values["a"] == "marker"  # the marker wins over the fixture
    other = request.spec(SETTINGS, index=1, values={"a": "call"}, version=KubeVersion(1, 33))
    assert other.values["a"] == "call"
    assert other.slot == "test:t.py::test_x:1"
    assert other.version == KubeVersion(1, 33)


def test_persistence_follows_the_teardown_mode_unless_asked() -> None:
    def persistent(marker: MarkerArgs, settings: Settings = SETTINGS) -> bool:
        return ClusterRequest("t", "t", marker).spec(settings).persistent

    assert not persistent(MarkerArgs())
    assert persistent(MarkerArgs(teardown=TeardownMode.PAUSE_ON_FAILURE))
    assert persistent(MarkerArgs(), Settings(teardown=TeardownMode.PAUSE))
    assert persistent(MarkerArgs(persistent=True))
    assert not persistent(MarkerArgs(teardown=TeardownMode.PAUSE, persistent=False))


def test_values_file_of_the_marker_is_used_unless_the_call_gives_one(tmp_path: Path) -> None:
    marker_file = tmp_path / "m.yaml"
    marker_file.write_text("m: 1\n")
    call_file = tmp_path / "c.yaml"
    call_file.write_text("c: 1\n")
    request = ClusterRequest("t", "t", MarkerArgs(values_file=marker_file))
    assert request.spec(SETTINGS).values["m"] == 1
    assert "m" not in request.spec(SETTINGS, values_file=call_file).values


def test_phase_timer_marks_seconds_from_its_start() -> None:
    now = [100.0]
    timer = PhaseTimer(clock=lambda: now[0])
    now[0] = 100.5
    assert timer.mark("objects") == 0.5
    now[0] = 103.25
    timer.mark("readyz")
    assert timer.phases == [("objects", 0.5), ("readyz", 3.25)]
    assert timer.elapsed == 3.25


def test_the_first_spec_is_built_once_and_travels_unchanged() -> None:
    settings = Settings(version_map={"1.33": "v1.33.13"})
    request = ClusterRequest(nodeid="t.py::a", name="a").resolved(settings)
    assert request.first is not None
    assert request.spec(settings) is request.first
    same = request.at_setup(None, {})
    assert same is request
    changed = request.at_setup(None, {"x": 1})
    assert changed.first is None
    assert changed.spec(settings).spec_hash != request.first.spec_hash
    # An override at the factory builds a new spec; without one the first is reused.
    assert request.spec(settings, values={"y": 2}) is not request.first


def test_manifests_are_part_of_what_makes_clusters_interchangeable(tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("kind: ConfigMap\n")
    plain = ClusterRequest(nodeid="t.py::a", name="a").spec(SETTINGS)
    marked = ClusterRequest(
        nodeid="t.py::a", name="a", marker=MarkerArgs(manifests=(manifest,))
    ).spec(SETTINGS)
    assert marked.manifests == (manifest,)
    assert marked.spec_hash != plain.spec_hash
    manifest.write_text("kind: Secret\n")
    again = ClusterRequest(
        nodeid="t.py::a", name="a", marker=MarkerArgs(manifests=(manifest,))
    ).spec(SETTINGS)
    assert again.spec_hash != marked.spec_hash


def test_recycling_follows_the_marker_else_the_setting_and_leaves_the_hash_alone() -> None:
    def spec(marker: MarkerArgs, settings: Settings = SETTINGS) -> tuple[bool, str]:
        made = ClusterRequest("t", "t", marker).spec(settings)
        return made.recycle, made.spec_hash

    on, off = spec(MarkerArgs()), spec(MarkerArgs(recycle=False))
    assert (on[0], off[0]) == (True, False)
    assert on[1] == off[1]  # the same cluster either way: only its teardown differs
    assert spec(MarkerArgs(), Settings(recycle=False))[0] is False
    assert spec(MarkerArgs(recycle=True), Settings(recycle=False))[0] is True
    worker = ClusterRequest("t", "t", MarkerArgs(recycle=True)).worker_spec(SETTINGS, "gw0")
    assert worker.recycle is False  # shared clusters are never reset under their tests
