"""Rendering the chart (a fake helm) and creating its objects (the API call stubbed)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FakeTool
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pytest_vcluster.cluster.chart import ChartRenderer, parse_manifests, template_argv
from pytest_vcluster.cluster.host_objects import (
    ApiObjectError,
    ObjectApplier,
    Resource,
    collection_path,
)
from pytest_vcluster.core.errors import VClusterError
from pytest_vcluster.settings.config import Settings

FAKE_HELM = """
with open(os.environ["FAKE_HELM_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "template":
    print("---\\n# Source: vcluster/templates/serviceaccount.yaml\\n"
          "apiVersion: v1\\nkind: ServiceAccount\\nmetadata:\\n"
          "  name: vc-" + sys.argv[2] + "\\n---\\n")
elif sys.argv[1] == "pull":
    dest = sys.argv[sys.argv.index("--destination") + 1]
    open(os.path.join(dest, "vcluster-0.36.1.tgz"), "w").close()
"""


def test_template_argv_names_release_namespace_values_and_host_version(tmp_path: Path) -> None:
    argv = template_argv(
        "helm", tmp_path / "chart", "vc", "ns", values_file=tmp_path / "v.yaml",
        kube_version="v1.34.4",
    )  # fmt: skip
    assert argv[:4] == ["helm", "template", "vc", str(tmp_path / "chart")]
    assert argv[argv.index("--namespace") + 1] == "ns"
    assert argv[argv.index("-f") + 1] == str(tmp_path / "v.yaml")
    assert argv[argv.index("--kube-version") + 1] == "v1.34.4"
    no_version = template_argv(
        "helm", tmp_path, "vc", "ns", values_file=tmp_path / "v.yaml", kube_version=None
    )
    assert "--kube-version" not in no_version


def test_parse_manifests_skips_empty_documents_and_rejects_junk() -> None:
    objects = parse_manifests("---\n# only a comment\n---\nkind: Service\napiVersion: v1\n---\n")
    assert objects == [{"kind": "Service", "apiVersion": "v1"}]
    with pytest.raises(VClusterError, match="not an object"):
        parse_manifests("- just\n- a list\n")


@pytest.fixture
def helm(fake_tool: FakeTool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAKE_HELM_LOG", str(tmp_path / "helm.jsonl"))
    return fake_tool("helm", FAKE_HELM)


def helm_calls(tmp_path: Path) -> list[list[str]]:
    return [json.loads(line) for line in (tmp_path / "helm.jsonl").read_text().splitlines()]


def test_render_uses_the_local_chart_and_writes_private_values(helm: Path, tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    settings = Settings(helm_binary=str(helm), local_chart_dir=chart)
    renderer = ChartRenderer(settings, tmp_path / "work", kube_version="v1.34.4")
    objects = renderer.render("vc1", "ns1", {"a": {"b": 1}}, tmp_path / "work" / "vc1")
    assert objects == [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "vc-vc1"}}
    ]
    [call] = helm_calls(tmp_path)
    assert call[:3] == ["template", "vc1", str(chart)]
    values_file = Path(call[call.index("-f") + 1])
    assert yaml.safe_load(values_file.read_text()) == {"a": {"b": 1}}
    assert values_file.stat().st_mode & 0o077 == 0


def test_without_a_local_chart_it_is_pulled_once_at_the_clis_version(
    helm: Path, fake_tool: FakeTool, tmp_path: Path
) -> None:
    vcluster = fake_tool("vcluster", "print('vcluster version 0.36.1')")
    settings = Settings(helm_binary=str(helm), vcluster_binary=str(vcluster))
    renderer = ChartRenderer(settings, tmp_path / "work")
    renderer.render("a", "a", {}, tmp_path / "a")
    renderer.render("b", "b", {}, tmp_path / "b")
    pull, first, second = helm_calls(tmp_path)
    assert pull[:2] == ["pull", "vcluster"]
    assert pull[pull.index("--version") + 1] == "0.36.1"
    assert pull[pull.index("--repo") + 1] == "https://charts.loft.sh"
    assert first[2] == second[2] == str(tmp_path / "work" / "chart" / "vcluster-0.36.1.tgz")


class Recorder:
    """Stands in for ``ObjectApplier._call``: records requests, answers discovery."""

    def __init__(self, fail: ApiException | None = None) -> None:
        self.calls: list[tuple[str, str, Mapping[str, Any] | None]] = []
        self.fail = fail

    def __call__(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        self.calls.append((method, path, body))
        if self.fail is not None and method == "POST":
            raise self.fail
        if path == "/apis/networking.k8s.io/v1":
            return {"resources": [
                {"name": "ingresses", "kind": "Ingress", "namespaced": True},
                {"name": "ingresses/status", "kind": "Ingress", "namespaced": True},
            ]}  # fmt: skip
        if path.startswith("/apis/example.com"):
            raise ApiException(status=404, reason="Not Found")
        return {}


def applier(monkeypatch: pytest.MonkeyPatch, recorder: Recorder) -> ObjectApplier:
    created = ObjectApplier(client.ApiClient())
    monkeypatch.setattr(created, "_call", recorder)
    return created


def test_create_labels_the_object_and_puts_it_in_the_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder()
    obj = {"apiVersion": "apps/v1", "kind": "StatefulSet",
           "metadata": {"name": "vc", "labels": {"app": "vcluster"}}, "spec": {}}  # fmt: skip
    made = applier(monkeypatch, recorder).create(obj, "ns", {"pytest-vcluster/name": "vc"})
    [(method, path, body)] = recorder.calls
    assert (method, path) == ("POST", "/apis/apps/v1/namespaces/ns/statefulsets")
    assert body is not None
    assert body["metadata"]["labels"] == {"app": "vcluster", "pytest-vcluster/name": "vc"}
    assert body["metadata"]["namespace"] == "ns"
    assert made.namespace == "ns"
    assert obj["metadata"]["labels"] == {"app": "vcluster"}  # the rendered object is unchanged


def test_cluster_scoped_objects_get_no_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    obj = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
           "metadata": {"name": "vc-x"}}  # fmt: skip
    made = applier(monkeypatch, recorder).create(obj, "ns", {})
    assert recorder.calls[0][1] == "/apis/rbac.authorization.k8s.io/v1/clusterroles"
    assert made.namespace is None
    assert "namespace" not in recorder.calls[0][2]["metadata"]  # type: ignore[index]


def test_unknown_kinds_are_discovered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    created = applier(monkeypatch, recorder)
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}}
    created.create(ingress, "ns", {})
    created.create(ingress, "ns", {})
    paths = [path for _, path, _ in recorder.calls]
    assert paths.count("/apis/networking.k8s.io/v1") <= 1  # cached for the process
    assert paths[-1] == "/apis/networking.k8s.io/v1/namespaces/ns/ingresses"


def test_a_kind_the_host_does_not_serve_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(VClusterError, match=r"no kind Widget in example\.com/v1"):
        applier(monkeypatch, Recorder()).create(obj, "ns", {})


def test_refusals_keep_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = ApiException(status=422, reason="Unprocessable Entity")
    refusal.body = '{"message": "spec.replicas: Invalid value"}'
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "vc"}}
    with pytest.raises(ApiObjectError, match="cannot create Service vc in ns: 422") as info:
        applier(monkeypatch, Recorder(fail=refusal)).create(obj, "ns", {})
    assert info.value.status == 422
    assert "Invalid value" in str(info.value)
    assert isinstance(info.value.__cause__, ApiException)


def test_collection_path() -> None:
    assert collection_path("v1", Resource("secrets", True), "ns") == "/api/v1/namespaces/ns/secrets"
    assert collection_path("v1", Resource("namespaces", False), None) == "/api/v1/namespaces"
    with pytest.raises(VClusterError, match="no namespace"):
        collection_path("v1", Resource("secrets", True), None)
