"""Naming, chart values, spec hash, teardown decisions, kubeconfig rewriting, pod summaries."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from pytest_vcluster.cluster.connection import rewrite_kubeconfig
from pytest_vcluster.cluster.lifecycle import TeardownAction, decide_teardown
from pytest_vcluster.cluster.probes import describe_pods, pod_scheduled, raise_if_stuck
from pytest_vcluster.core.errors import ConfigError, StartFailedError, VClusterError
from pytest_vcluster.core.labels import label_value, vcluster_name
from pytest_vcluster.settings.config import Settings, TeardownMode
from pytest_vcluster.settings.request import chart_identity, make_spec
from pytest_vcluster.settings.values import (
    EPHEMERAL_VALUES,
    FAST_START_VALUES,
    build_values,
    deep_merge,
    spec_hash,
)
from pytest_vcluster.settings.versions import KubeVersion

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize(
    "label",
    [
        "test_simple",
        "test_matrix[k8s-1.33]",
        "TEST_with_UPPER_and__many___underscores_and_a_very_long_name_indeed",
        "----",
        "",
        "ünïcödé",
    ],
)
def test_names_are_dns_labels_of_at_most_40_chars(label: str) -> None:
    name = vcluster_name(label, "run/gw0/slot/1")
    assert DNS1123_LABEL.match(name), name
    assert len(name) <= 40
    assert name.startswith("pv-")


def test_names_are_readable_deterministic_and_unique_per_key() -> None:
    assert vcluster_name("test_matrix[k8s-1.33]", "k1").startswith("pv-test-matrix-k8s-1-33-")
    assert vcluster_name("t", "k1") == vcluster_name("t", "k1")
    assert vcluster_name("t", "k1") != vcluster_name("t", "k2")


def test_label_value() -> None:
    assert label_value("gw0") == "gw0"
    assert label_value("a b/c") == "a-b-c"
    assert len(label_value("x" * 100)) == 63
    assert label_value("///") == "none"


@pytest.mark.parametrize(
    ("mode", "failed", "action"),
    [
        (TeardownMode.DELETE, False, TeardownAction.DELETE),
        (TeardownMode.DELETE, True, TeardownAction.DELETE),
        (TeardownMode.PAUSE, False, TeardownAction.PAUSE),
        (TeardownMode.PAUSE, True, TeardownAction.PAUSE),
        (TeardownMode.KEEP, False, TeardownAction.KEEP),
        (TeardownMode.KEEP, True, TeardownAction.KEEP),
        (TeardownMode.KEEP_ON_FAILURE, False, TeardownAction.DELETE),
        (TeardownMode.KEEP_ON_FAILURE, True, TeardownAction.KEEP),
        (TeardownMode.PAUSE_ON_FAILURE, False, TeardownAction.DELETE),
        (TeardownMode.PAUSE_ON_FAILURE, True, TeardownAction.PAUSE),
    ],
)
def test_decide_teardown(mode: TeardownMode, failed: bool, action: TeardownAction) -> None:
    assert decide_teardown(mode, failed) is action


def test_deep_merge() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    merged = deep_merge(base, {"a": {"c": [3], "e": 2}, "f": 3})
    assert merged == {"a": {"b": 1, "c": [3], "e": 2}, "d": 1, "f": 3}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # inputs are not changed


def test_build_values_precedence(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text("x: settings\ny: settings\nz: settings\ntelemetry: {enabled: true}\n")
    marker_file = tmp_path / "marker.yaml"
    marker_file.write_text("y: marker-file\nz: marker-file\n")
    values = build_values(
        values_files=(settings_file,),
        tag="v1.33.4",
        values_file=marker_file,
        values={"z": "marker-dict"},
    )
    assert (values["x"], values["y"], values["z"]) == ("settings", "marker-file", "marker-dict")
    assert values["telemetry"] == {"enabled": False}
    assert values["controlPlane"]["distro"]["k8s"]["image"]["tag"] == "v1.33.4"


def test_build_values_without_version_leaves_chart_default() -> None:
    assert build_values(fast_start=False) == {"telemetry": {"enabled": False}}


def test_speed_layers_sit_below_the_users_values() -> None:
    values = build_values(
        ephemeral=True,
        values={
            "controlPlane": {"statefulSet": {"persistence": {"volumeClaim": {"enabled": True}}}}
        },
    )
    probes = values["controlPlane"]["statefulSet"]["probes"]
    assert probes == FAST_START_VALUES["controlPlane"]["statefulSet"]["probes"]
    assert values["controlPlane"]["statefulSet"]["persistence"]["volumeClaim"]["enabled"] is True
    ephemeral = build_values(ephemeral=True)["controlPlane"]["statefulSet"]["persistence"]
    assert ephemeral == EPHEMERAL_VALUES["controlPlane"]["statefulSet"]["persistence"]
    assert "persistence" not in build_values()["controlPlane"]["statefulSet"]


def test_specs_are_persistent_only_when_asked() -> None:
    settings = Settings()
    persistent = make_spec(settings, slot="s", test="t", label="x")
    ephemeral = make_spec(settings, slot="s", test="t", label="x", persistent=False)
    assert persistent.persistent
    assert not ephemeral.persistent
    # A paused (persistent) cluster may serve a test that would get an emptyDir one.
    assert persistent.spec_hash == ephemeral.spec_hash
    assert persistent.values != ephemeral.values


def test_bad_values_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        build_values(values_file=path)
    path.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_values(values_files=(path,))


def test_spec_hash() -> None:
    chart = chart_identity(Settings())
    a = spec_hash({"a": 1, "b": {"c": 2}}, chart)
    assert a == spec_hash({"b": {"c": 2}, "a": 1}, chart)  # key order does not matter
    assert a != spec_hash({"a": 2, "b": {"c": 2}}, chart)
    assert a != spec_hash({"a": 1, "b": {"c": 2}}, chart_identity(Settings(chart_version="1")))
    assert re.fullmatch(r"[0-9a-f]{16}", a)


def test_make_spec_uses_map_and_timeouts() -> None:
    settings = Settings(version_map={"1.33": "v1.33.13"}, ready_timeout=77)
    spec = make_spec(settings, slot="s", test="t::x", label="x", version=KubeVersion(1, 33))
    assert spec.values["controlPlane"]["distro"]["k8s"]["version"] == "v1.33.13"
    assert spec.ready_timeout == 77
    other = make_spec(
        settings, slot="s", test="t", label="x", version=KubeVersion(1, 34), ready_timeout=5
    )
    assert other.ready_timeout == 5
    assert other.spec_hash != spec.spec_hash


SECRET_KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: my-vcluster
  cluster:
    server: https://localhost:8443
    certificate-authority-data: Q0E=
contexts:
- name: my-vcluster
  context: {cluster: my-vcluster, user: my-vcluster}
current-context: my-vcluster
users:
- name: my-vcluster
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
"""


def test_rewrite_kubeconfig() -> None:
    data = yaml.safe_load(rewrite_kubeconfig(SECRET_KUBECONFIG, "https://127.0.0.1:4321"))
    cluster = data["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:4321"
    assert cluster["tls-server-name"] == "localhost"
    assert cluster["certificate-authority-data"] == "Q0E="  # TLS verification stays on
    assert data["users"][0]["user"]["client-key-data"] == "S0VZ"


def test_rewrite_kubeconfig_without_clusters() -> None:
    with pytest.raises(VClusterError, match="no clusters"):
        rewrite_kubeconfig("apiVersion: v1\n", "https://127.0.0.1:1")


def _pod(name: str, phase: str, ready: bool, waiting: str | None = None) -> client.V1Pod:
    statuses = []
    if waiting:
        statuses.append(
            client.V1ContainerStatus(
                name="syncer",
                image="img",
                image_id="",
                ready=False,
                restart_count=0,
                state=client.V1ContainerState(
                    waiting=client.V1ContainerStateWaiting(reason=waiting)
                ),
            )
        )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        status=client.V1PodStatus(
            phase=phase,
            conditions=[client.V1PodCondition(type="Ready", status="True" if ready else "False")],
            container_statuses=statuses,
        ),
    )


def test_describe_pods() -> None:
    assert describe_pods([]) == "no pod yet"
    text = describe_pods(
        [_pod("vc-0", "Pending", False, waiting="ErrImageNeverPull"), _pod("vc-1", "Running", True)]
    )
    assert text == "vc-0 Pending not ready (syncer:ErrImageNeverPull); vc-1 Running ready"


def _pending(message: str) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="vc-0"),
        status=client.V1PodStatus(
            phase="Pending",
            conditions=[
                client.V1PodCondition(
                    type="PodScheduled", status="False", reason="Unschedulable", message=message
                )
            ],
        ),
    )


def test_a_pod_that_stays_unschedulable_fails_after_the_grace() -> None:
    class Pods:
        def list_namespaced_pod(self, *args: object, **kwargs: object) -> client.V1PodList:
            return client.V1PodList(items=[_pending("0/1 nodes: Insufficient cpu")])

    now = [0.0]
    probe = pod_scheduled(
        Pods(),  # type: ignore[arg-type]
        "ns",
        "app=vcluster",
        grace=60,
        clock=lambda: now[0],
    )
    done, seen = probe.check()
    assert not done
    assert "unschedulable: 0/1 nodes: Insufficient cpu" in seen
    now[0] = 59
    assert probe.check()[0] is False  # a teardown may still free room
    now[0] = 61
    with pytest.raises(StartFailedError, match="cannot be scheduled on the host for 60s"):
        probe.check()


def test_image_errors_fail_at_once() -> None:
    with pytest.raises(StartFailedError, match="container syncer is ErrImageNeverPull"):
        raise_if_stuck([_pod("vc-0", "Pending", False, waiting="ErrImageNeverPull")], "cp")
    raise_if_stuck([_pod("vc-0", "Pending", False, waiting="ContainerCreating")], "cp")
