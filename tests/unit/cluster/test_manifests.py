"""Loading manifests and applying them, against an in-memory stand-in for the API server.

:class:`FakeApi` is a real ``ApiClient`` whose ``call_api`` answers from memory: discovery,
server-side apply (stored as sent, with a uid), GETs of stored objects and pod lists. Tests
script what changes between two reads with :meth:`FakeApi.states` and :meth:`FakeApi.on`.
``test_conditions`` and ``test_tools`` use it too.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from pytest_vcluster.cluster.manifests import (
    APPLY_CONTENT_TYPE,
    FIELD_MANAGER,
    Manifest,
    apply_manifests,
    discovery_for,
    load_manifests,
    order_for_apply,
)
from pytest_vcluster.core.errors import ManifestError, VClusterError

CORE = [
    {"name": "pods", "kind": "Pod", "namespaced": True, "singularName": "pod",
     "shortNames": ["po"]},
    {"name": "pods/log", "kind": "Pod", "namespaced": True},
    {"name": "configmaps", "kind": "ConfigMap", "namespaced": True, "shortNames": ["cm"]},
    {"name": "services", "kind": "Service", "namespaced": True, "shortNames": ["svc"]},
    {"name": "namespaces", "kind": "Namespace", "namespaced": False, "shortNames": ["ns"]},
]  # fmt: skip
GROUPS: dict[str, list[dict[str, Any]]] = {
    "apps/v1": [
        {"name": "deployments", "kind": "Deployment", "namespaced": True,
         "singularName": "deployment", "shortNames": ["deploy"]},
        {"name": "deployments/scale", "kind": "Scale", "namespaced": True},
        {"name": "statefulsets", "kind": "StatefulSet", "namespaced": True, "shortNames": ["sts"]},
        {"name": "daemonsets", "kind": "DaemonSet", "namespaced": True, "shortNames": ["ds"]},
        {"name": "replicasets", "kind": "ReplicaSet", "namespaced": True, "shortNames": ["rs"]},
    ],
    "batch/v1": [{"name": "jobs", "kind": "Job", "namespaced": True, "singularName": "job"}],
    "apiextensions.k8s.io/v1": [
        {"name": "customresourcedefinitions", "kind": "CustomResourceDefinition",
         "namespaced": False, "singularName": "customresourcedefinition",
         "shortNames": ["crd", "crds"]},
    ],
}  # fmt: skip

Answer = tuple[int, Any]
Handler = Callable[[str, str, dict[str, str], Any], Answer | None]


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.reason = {200: "OK", 201: "Created", 404: "Not Found", 422: "Unprocessable Entity",
                       500: "Internal Server Error"}.get(status, "Error")  # fmt: skip
        self.data = body if isinstance(body, bytes) else json.dumps(body).encode()

    def read(self) -> bytes:
        return self.data


def status_body(code: int, message: str, kind: str | None = None) -> dict[str, Any]:
    """A ``Status`` object as the API server answers a refused request."""
    return {
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
        "reason": "Invalid" if code == 422 else "NotFound", "code": code,
        "details": {"kind": kind} if kind else {},
    }  # fmt: skip


class FakeApi(client.ApiClient):
    """An ``ApiClient`` answering from memory; records every request."""

    def __init__(self) -> None:
        super().__init__(client.Configuration(host="https://fake.invalid"))
        self.discovery: dict[str, list[dict[str, Any]]] = {"v1": list(CORE)}
        self.discovery.update({gv: list(entries) for gv, entries in GROUPS.items()})
        self.objects: dict[str, dict[str, Any]] = {}
        self.scripted: dict[str, list[Answer]] = {}
        self.handlers: list[Handler] = []
        self.calls: list[tuple[str, str, dict[str, str], Any, str]] = []
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.replicasets: dict[str, list[dict[str, Any]]] = {}
        self.logs: dict[str, str] = {}

    # -- scripting --------------------------------------------------------------------------

    def states(self, path: str, *answers: dict[str, Any] | None) -> None:
        """Successive answers to ``GET path`` (None: 404); the last one repeats."""
        self.scripted[path] = [
            (404, status_body(404, "not found")) if obj is None else (200, obj) for obj in answers
        ]

    def on(self, handler: Handler) -> None:
        """``handler(method, path, query, body)`` answers first when it returns an answer."""
        self.handlers.append(handler)

    def requests(self, method: str) -> list[str]:
        return [path for m, path, _, _, _ in self.calls if m == method]

    # -- the server -------------------------------------------------------------------------

    def call_api(  # type: ignore[override]
        self,
        method: str,
        url: str,
        header_params: dict[str, str] | None = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> FakeResponse:
        parsed = urllib.parse.urlsplit(url)
        path = parsed.path
        query = dict(urllib.parse.parse_qsl(parsed.query))
        content_type = (header_params or {}).get("Content-Type", "")
        self.calls.append((method, path, query, body, content_type))
        for handler in self.handlers:
            answer = handler(method, path, query, body)
            if answer is not None:
                return FakeResponse(*answer)
        status, answer_body = self._answer(method, path, query, body)
        return FakeResponse(status, answer_body)

    def _answer(self, method: str, path: str, query: dict[str, str], body: Any) -> Answer:
        if method == "GET" and path == "/apis":
            groups = [gv.split("/")[0] for gv in self.discovery if "/" in gv]
            return 200, {"groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": f"{g}/v1", "version": "v1"}}
                for g in dict.fromkeys(groups)
            ]}  # fmt: skip
        if method == "GET" and (path.startswith("/apis/") or path == "/api/v1"):
            gv = path.removeprefix("/apis/").removeprefix("/api/")
            if gv in self.discovery:
                return 200, {"resources": self.discovery[gv]}
        if method == "PATCH":
            stored = json.loads(json.dumps(body))
            stored["metadata"].setdefault("uid", f"uid-{len(self.objects)}")
            stored["metadata"].setdefault("generation", 1)
            self.objects[path] = stored
            return 200, stored
        if method == "GET" and path.endswith("/log"):
            return 200, self.logs.get(path, "").encode()
        if method == "GET" and path.endswith("/pods"):
            return 200, {"kind": "PodList", "items": self.pods.get(path, [])}
        if method == "GET" and path.endswith("/replicasets"):
            return 200, {"kind": "ReplicaSetList", "items": self.replicasets.get(path, [])}
        if method == "GET" and path in self.scripted:
            answers = self.scripted[path]
            return answers.pop(0) if len(answers) > 1 else answers[0]
        if method == "GET" and path in self.objects:
            return 200, self.objects[path]
        return 404, status_body(404, "the server could not find the requested resource")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def configmap(name: str, namespace: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"k": "v"}}


CRD_YAML = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""
WIDGET = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}


# -- loading -------------------------------------------------------------------------------


def test_a_directory_is_read_by_file_name_without_subdirectories(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b1}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b2}\n"
    )
    (tmp_path / "a.yml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "c.json").write_text(json.dumps(configmap("c")))
    (tmp_path / "notes.txt").write_text("kind: nothing to see")
    (tmp_path / ".hidden.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: h}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "0.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\n"
    )

    loaded = load_manifests(tmp_path)

    assert [(m.name, Path(m.source).name, m.document) for m in loaded] == [
        ("a", "a.yml", 1), ("b1", "b.yaml", 1), ("b2", "b.yaml", 2), ("c", "c.json", 1),
    ]  # fmt: skip
    # A str path works as well as a Path.
    assert [m.name for m in load_manifests(str(tmp_path))] == ["a", "b1", "b2", "c"]


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"holds no \.yaml, \.yml, \.json files"):
        load_manifests(tmp_path)


def test_a_multi_document_string_skips_empty_documents_and_counts_them() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n"
        "---\n# only a comment\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: three}\n"
    )
    loaded = load_manifests(text)
    assert [(m.name, m.source, m.document) for m in loaded] == [
        ("one", "<string>", 1),
        ("three", "<string>", 3),
    ]
    # One line starting with apiVersion: or '{' is text too, not a path.
    assert load_manifests(json.dumps(configmap("j")))[0].name == "j"
    with pytest.raises(ManifestError, match=r"^<string>, document 1 \(ConfigMap \?\): no apiVer"):
        load_manifests("kind: ConfigMap")
    with pytest.raises(ManifestError, match=r"kind-config\.yaml: no such file"):
        load_manifests("kind-config.yaml")


def test_dicts_and_lists_of_dicts_paths_and_texts(tmp_path: Path) -> None:
    file = tmp_path / "x.yaml"
    file.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-file}\n")
    [single] = load_manifests(configmap("single"))
    assert (single.source, single.document, single.kind) == ("<dict>", 1, "ConfigMap")
    mixed = load_manifests([configmap("first"), str(file), configmap("third")])
    assert [(m.name, m.source, m.document) for m in mixed] == [
        ("first", "<dict>", 1), ("from-file", str(file), 1), ("third", "<dict>", 3),
    ]  # fmt: skip


def test_list_kinds_are_expanded_with_item_numbers() -> None:
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [configmap("a"), None, configmap("b")],
    }
    loaded = load_manifests(listing)
    assert [(m.name, m.item) for m in loaded] == [("a", 1), ("b", 3)]
    bad = {"apiVersion": "v1", "kind": "List", "items": [configmap("a"), {"kind": "ConfigMap"}]}
    with pytest.raises(ManifestError) as info:
        load_manifests(bad)
    assert str(info.value).startswith("<dict>, document 1, item 2 (ConfigMap ?): no apiVersion")


def test_a_string_that_is_no_file_names_the_path() -> None:
    with pytest.raises(ManifestError, match=r"deploy/missing\.yaml: no such file or directory"):
        load_manifests("deploy/missing.yaml")


def test_bad_objects_name_file_document_kind_and_problem(tmp_path: Path) -> None:
    file = tmp_path / "app.yaml"
    file.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {labels: {a: b}}\n"
    )
    with pytest.raises(ManifestError) as info:
        load_manifests(file)
    error = info.value
    assert (error.source, error.document, error.kind) == (str(file), 2, "Deployment")
    assert (
        str(error) == f"{file}, document 2 (Deployment ?): no metadata.name: give the object a name"
    )

    file.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n")
    with pytest.raises(ManifestError, match=r"document 1: not valid YAML at line \d+, column \d+"):
        load_manifests(file)
    with pytest.raises(ManifestError, match="generateName cannot be applied"):
        load_manifests({"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "p-"}})
    with pytest.raises(ManifestError, match="a list is not an object"):
        load_manifests("- a\n- b\n")


def test_crds_go_first_then_namespaces_then_the_rest_in_order() -> None:
    loaded = load_manifests([configmap("a"), WIDGET, NAMESPACE, CRD_YAML, configmap("b")])
    ordered = [loaded[i].name for i in order_for_apply(loaded)]
    assert ordered == ["widgets.example.com", "team", "a", "w1", "b"]


# -- applying ------------------------------------------------------------------------------


def establish_widgets(api: FakeApi, *, served_after: int = 1) -> None:
    """The CRD reads Established on its second GET; its kind shows in discovery only after
    ``served_after`` more discovery requests (the lag a real API server has)."""
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
    reads = {"crd": 0, "discovery": 0}

    def handler(method: str, path: str, query: dict[str, str], body: Any) -> Answer | None:
        if method == "GET" and path == crd_path:
            reads["crd"] += 1
            obj = dict(api.objects[crd_path])
            if reads["crd"] >= 2:
                obj["status"] = {"conditions": [{"type": "Established", "status": "True"}]}
            return 200, obj
        if method == "GET" and path == "/apis/example.com/v1":
            established = reads["crd"] >= 2
            if established:
                reads["discovery"] += 1
            if not established or reads["discovery"] <= served_after:
                return 404, status_body(404, "the server could not find the requested resource")
            return 200, {"resources": [{"name": "widgets", "kind": "Widget", "namespaced": True,
                                        "singularName": "widget"}]}  # fmt: skip
        return None

    api.on(handler)


def test_apply_orders_waits_for_the_crd_and_retries_its_kind() -> None:
    api = FakeApi()
    establish_widgets(api, served_after=2)
    clock = FakeClock()
    applied = apply_manifests(
        api, [configmap("a"), WIDGET, NAMESPACE, CRD_YAML], clock=clock, sleep=clock.sleep
    )
    # In the order given, as the API answered (with the uid it added).
    assert [obj["metadata"]["name"] for obj in applied] == [
        "a",
        "w1",
        "team",
        "widgets.example.com",
    ]
    assert all("uid" in obj["metadata"] for obj in applied)
    patches = api.requests("PATCH")
    assert patches == [
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        "/api/v1/namespaces/team",
        "/api/v1/namespaces/default/configmaps/a",
        "/apis/example.com/v1/namespaces/default/widgets/w1",
    ]
    # The CRD was read until Established before anything else was applied.
    first_other = next(i for i, call in enumerate(api.calls) if call[1] == patches[1])
    crd_reads = [
        i for i, call in enumerate(api.calls) if call[0] == "GET" and "widgets.example" in call[1]
    ]
    assert len(crd_reads) == 2
    assert max(crd_reads) < first_other
    assert clock.now - 1000.0 < 5  # a few short pauses, not a timeout


def test_apply_is_server_side_with_our_field_manager_and_namespaces() -> None:
    api = FakeApi()
    apply_manifests(
        api,
        [
            configmap("plain"),
            configmap("own", "mine"),
            {**NAMESPACE, "metadata": {"name": "x", "namespace": "junk"}},
        ],
        namespace="team",
    )
    patches = [
        (path, query, body, ctype) for m, path, query, body, ctype in api.calls if m == "PATCH"
    ]
    assert [path for path, *_ in patches] == [
        "/api/v1/namespaces/x",
        "/api/v1/namespaces/team/configmaps/plain",
        "/api/v1/namespaces/mine/configmaps/own",
    ]
    for _, query, _, content_type in patches:
        assert query == {"fieldManager": FIELD_MANAGER, "force": "true"}
        assert content_type == APPLY_CONTENT_TYPE
    namespace_body, plain_body = patches[0][2], patches[1][2]
    assert "namespace" not in namespace_body["metadata"]  # cluster-scoped: no namespace sent
    assert plain_body["metadata"]["namespace"] == "team"
    # Without namespace=, "default".
    api2 = FakeApi()
    apply_manifests(api2, configmap("plain"))
    assert api2.requests("PATCH") == ["/api/v1/namespaces/default/configmaps/plain"]


def test_a_refused_object_names_file_document_kind_name_and_the_api_message(tmp_path: Path) -> None:
    file = tmp_path / "web.yaml"
    file.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n"
    )
    api = FakeApi()
    message = 'Deployment.apps "web" is invalid: spec.selector: Required value'
    api.on(
        lambda m, path, q, b: (
            (422, status_body(422, message)) if m == "PATCH" and path.endswith("/web") else None
        )
    )
    with pytest.raises(ManifestError) as info:
        apply_manifests(api, file)
    error = info.value
    assert str(error) == (
        f"{file}, document 2 (Deployment web): the API refused it in namespace default "
        f"(422 Unprocessable Entity): {message}"
    )
    assert (error.document, error.kind, error.name, error.status) == (2, "Deployment", "web", 422)
    assert '"kind": "Status"' not in str(error)  # the message, not the raw answer
    # The object before it stays applied.
    assert api.requests("PATCH")[0] == "/api/v1/namespaces/default/configmaps/settings"


def test_a_busy_api_server_is_asked_again() -> None:
    api = FakeApi()
    answers = [(500, status_body(500, "failed calling webhook")), None]
    api.on(lambda m, p, q, b: answers.pop(0) if m == "PATCH" and answers else None)
    clock = FakeClock()
    [applied] = apply_manifests(api, configmap("a"), clock=clock, sleep=clock.sleep)
    assert applied["metadata"]["name"] == "a"
    assert len(api.requests("PATCH")) == 2


def test_an_unknown_kind_fails_after_a_short_grace_listing_the_served_kinds() -> None:
    api = FakeApi()
    clock = FakeClock()
    typo = {"apiVersion": "apps/v1", "kind": "Deploymnet", "metadata": {"name": "web"}}
    with pytest.raises(ManifestError) as info:
        apply_manifests(api, typo, clock=clock, sleep=clock.sleep)
    assert "the API serves no kind Deploymnet in apps/v1 (its kinds: DaemonSet, Deployment" in str(
        info.value
    )
    assert "apply the CustomResourceDefinition that defines it first" in str(info.value)
    assert clock.now - 1000.0 <= 6  # the grace, not the 60 s timeout
    with pytest.raises(ManifestError, match=r"serves no group version example\.com/v1"):
        apply_manifests(api, WIDGET, clock=clock, sleep=clock.sleep)


def test_a_crd_that_is_never_established_fails_with_the_apply_timeout() -> None:
    api = FakeApi()
    clock = FakeClock()
    with pytest.raises(ManifestError, match=r"not Established within the apply's 10s"):
        apply_manifests(api, [CRD_YAML, WIDGET], timeout=10, clock=clock, sleep=clock.sleep)


def test_discovery_finds_kinds_as_users_spell_them() -> None:
    api = FakeApi()
    discovery = discovery_for(api)
    assert discovery_for(api) is discovery
    for spelled, kind in [
        ("Deployment", "Deployment"), ("deployment", "Deployment"), ("deploy", "Deployment"),
        ("deployments", "Deployment"), ("deployments.apps", "Deployment"),
        ("deployment.v1.apps", "Deployment"), ("po", "Pod"), ("pod", "Pod"),
        ("crd", "CustomResourceDefinition"),
        ("customresourcedefinition", "CustomResourceDefinition"), ("job", "Job"),
        ("sts", "StatefulSet"),
    ]:  # fmt: skip
        found = discovery.find(spelled)
        assert found is not None, spelled
        assert found.kind == kind, spelled
    assert discovery.find("pods.apps") is None
    assert discovery.find("scale") is None  # a subresource, not a kind
    assert "deployment" in discovery.suggestions("deplyment")


def test_a_manifest_knows_its_place() -> None:
    [m] = load_manifests(configmap("a", "ns"))
    assert isinstance(m, Manifest)
    assert (m.api_version, m.group, m.kind, m.name, m.namespace) == (
        "v1",
        "",
        "ConfigMap",
        "a",
        "ns",
    )
    assert isinstance(m.error("x"), VClusterError)


def test_an_object_the_api_returned_can_be_applied_again() -> None:
    api = FakeApi()
    [applied] = apply_manifests(api, configmap("a"))
    # As a real API server returns it: fields it set, and a status.
    applied["metadata"] |= {
        "resourceVersion": "41", "creationTimestamp": "2026-01-01T00:00:00Z",
        "managedFields": [{"manager": "pytest-vcluster", "operation": "Apply"}],
    }  # fmt: skip
    applied["status"] = {"phase": "whatever"}
    applied["data"] = {"k": "changed"}
    apply_manifests(api, applied)
    sent = [body for method, _, _, body, _ in api.calls if method == "PATCH"][-1]
    assert sent["data"] == {"k": "changed"}
    assert sent["metadata"] == {"name": "a", "namespace": "default"}
    assert "status" not in sent
    # A status written in a manifest (a custom resource without a status subresource) stays.
    apply_manifests(api, {**configmap("b"), "status": {"x": 1}})
    assert [body for method, _, _, body, _ in api.calls if method == "PATCH"][-1]["status"] == {
        "x": 1
    }
