"""Inventories and their differences, against an in-memory API server.

:class:`Cluster` is a real ``ApiClient`` whose ``call_api`` answers from a store of objects:
discovery (aggregated, or the older one document per group version), metadata lists with
pages, deletes with preconditions and finalizers, JSON patches of finalizers, and a
namespace's ``finalize``. ``test_reset`` uses it too, with the controllers it scripts.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client

from pytest_vcluster.cluster.inventory import (
    EXCLUSIONS,
    Drift,
    Entry,
    Exclusion,
    Inventory,
    ObjectKey,
    Resource,
    diff,
    take_inventory,
)
from pytest_vcluster.core.errors import ApiError, VClusterError, WaitTimeoutError

# (group, version, plural, kind, namespaced, verbs); a group's versions in order of preference.
RESOURCES = [
    ("", "v1", "namespaces", "Namespace", False, "list,delete"),
    ("", "v1", "configmaps", "ConfigMap", True, "list,delete,deletecollection"),
    ("", "v1", "pods", "Pod", True, "list,delete,deletecollection"),
    ("", "v1", "services", "Service", True, "list,delete"),
    ("", "v1", "nodes", "Node", False, "list,delete"),
    ("", "v1", "events", "Event", True, "list,delete"),
    ("", "v1", "bindings", "Binding", True, "create"),
    ("", "v1", "componentstatuses", "ComponentStatus", False, "list"),
    ("apps", "v1", "deployments", "Deployment", True, "list,delete"),
    ("apps", "v1", "replicasets", "ReplicaSet", True, "list,delete"),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
     "list,delete"),
    ("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True,
     "list,delete"),
    ("coordination.k8s.io", "v1", "leases", "Lease", True, "list,delete"),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
     False, "list,delete"),
    ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
     "ValidatingWebhookConfiguration", False, "list,delete"),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False,
     "list,delete"),
    ("apiregistration.k8s.io", "v1", "apiservices", "APIService", False, "list,delete"),
    ("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False, "create"),
]  # fmt: skip

Handler = Callable[[str, str, dict[str, str], Any], tuple[int, Any] | None]


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        reasons = {200: "OK", 404: "Not Found", 409: "Conflict", 403: "Forbidden",
                   422: "Unprocessable Entity", 503: "Service Unavailable"}  # fmt: skip
        self.reason = reasons.get(status, "Error")
        self.data = body if isinstance(body, bytes) else json.dumps(body).encode()

    def read(self) -> bytes:
        return self.data


def status(code: int, message: str) -> tuple[int, dict[str, Any]]:
    return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                  "message": message}  # fmt: skip


class Cluster(client.ApiClient):
    """An ``ApiClient`` answering from an in-memory store; records every request.

    Objects are kept by (group, plural, namespace, name). ``handlers`` answer first when
    they return an answer; ``controllers`` run after every request, as the cluster's own
    controllers would between two requests.
    """

    def __init__(self, *, aggregated: bool = True, page: int | None = None) -> None:
        super().__init__(client.Configuration(host="https://fake.invalid"))
        self.aggregated = aggregated
        self.page = page
        self.resources = list(RESOURCES)
        self.store: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.handlers: list[Handler] = []
        self.controllers: list[Callable[[Cluster], None]] = []
        self.calls: list[tuple[str, str, dict[str, str], Any, dict[str, str]]] = []
        self.lock = threading.RLock()
        self.uids = itertools.count(1)
        self.versions = itertools.count(100)

    # -- scripting ----------------------------------------------------------------------

    def add(
        self,
        plural: str,
        name: str,
        namespace: str = "",
        *,
        group: str = "",
        finalizers: tuple[str, ...] = (),
        owners: tuple[str, ...] = (),
        deleting: bool = False,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "uid": f"uid-{next(self.uids)}",
            "resourceVersion": str(next(self.versions)),
        }
        if namespace:
            metadata["namespace"] = namespace
        if finalizers:
            metadata["finalizers"] = list(finalizers)
        if owners:
            metadata["ownerReferences"] = [{"uid": uid} for uid in owners]
        if deleting:
            metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        if labels:
            metadata["labels"] = dict(labels)
        obj = {"metadata": metadata}
        with self.lock:
            self.store[group, plural, namespace, name] = obj
        return obj

    def touch(self, plural: str, name: str, namespace: str = "", *, group: str = "") -> None:
        with self.lock:
            obj = self.store[group, plural, namespace, name]
            obj["metadata"]["resourceVersion"] = str(next(self.versions))

    def has(self, plural: str, name: str, namespace: str = "", *, group: str = "") -> bool:
        with self.lock:
            return (group, plural, namespace, name) in self.store

    def requests(self, method: str) -> list[str]:
        return [path for m, path, _, _, _ in self.calls if m == method]

    # -- the server ---------------------------------------------------------------------

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
        query = dict(urllib.parse.parse_qsl(parsed.query))
        headers = dict(header_params or {})
        with self.lock:
            self.calls.append((method, parsed.path, query, body, headers))
        for handler in self.handlers:
            answer = handler(method, parsed.path, query, body)
            if answer is not None:
                return FakeResponse(*answer)
        with self.lock:
            answer = self.answer(method, parsed.path, query, body, headers)
            for controller in self.controllers:
                controller(self)
        return FakeResponse(*answer)

    def answer(
        self, method: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]
    ) -> tuple[int, Any]:
        if method == "GET" and path in {"/api", "/apis"}:
            return self.discovery(path, headers.get("Accept", ""))
        if method == "GET" and (path.startswith("/apis/") or path.startswith("/api/")):
            parts = path.strip("/").split("/")
            if (parts[0] == "api" and len(parts) == 2) or (parts[0] == "apis" and len(parts) == 3):
                return self.group_version(parts)
        found = self.parse(path)
        if found is None:
            return status(404, f"no resource at {path}")
        group, plural, namespace, name, sub = found
        if method == "GET" and not name:
            return self.list(group, plural, query)
        if method == "DELETE" and not name and namespace:
            for key in [k for k in self.store if k[:3] == (group, plural, namespace)]:
                self.delete(key, self.store[key], body or {})
            return 200, {"kind": "Status", "status": "Success"}
        key = (group, plural, namespace, name)
        obj = self.store.get(key)
        if obj is None:
            return status(404, f"{plural} {name!r} not found")
        if method == "GET":
            return 200, obj
        if method == "DELETE":
            return self.delete(key, obj, body or {})
        if method == "PATCH":
            return self.patch(key, obj, body)
        if method == "PUT" and sub == "finalize":
            del self.store[key]
            return 200, obj
        return status(405, f"{method} {path} not allowed")

    def discovery(self, path: str, accept: str) -> tuple[int, Any]:
        core = path == "/api"
        if not (self.aggregated and "apidiscovery.k8s.io" in accept):
            if core:
                return 200, {"kind": "APIVersions", "versions": ["v1"]}
            groups: dict[str, list[str]] = {}
            for group, version, *_ in self.resources:
                if group and version not in groups.setdefault(group, []):
                    groups[group].append(version)
            return 200, {"kind": "APIGroupList", "groups": [
                {"name": g, "versions": [{"version": v} for v in vs],
                 "preferredVersion": {"version": vs[0]}}
                for g, vs in groups.items()
            ]}  # fmt: skip
        items: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for group, version, plural, kind, namespaced, verbs in self.resources:
            if (group == "") != core:
                continue
            items.setdefault(group, {}).setdefault(version, []).append({
                "resource": plural, "responseKind": {"group": "", "version": "", "kind": kind},
                "scope": "Namespaced" if namespaced else "Cluster",
                "verbs": verbs.split(","),
            })  # fmt: skip
        return 200, {"kind": "APIGroupDiscoveryList", "items": [
            {"metadata": {"name": group},
             "versions": [{"version": v, "resources": r} for v, r in versions.items()]}
            for group, versions in items.items()
        ]}  # fmt: skip

    def group_version(self, parts: list[str]) -> tuple[int, Any]:
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        entries = [
            {"name": plural, "kind": kind, "namespaced": namespaced, "verbs": verbs.split(",")}
            for g, v, plural, kind, namespaced, verbs in self.resources
            if (g, v) == (group, version)
        ]
        if not entries:
            return status(404, "no such group version")
        first = entries[0]
        entries.append({"name": f"{first['name']}/status", "kind": first["kind"],
                        "namespaced": first["namespaced"], "verbs": ["get", "list"]})  # fmt: skip
        return 200, {"kind": "APIResourceList", "resources": entries}

    def parse(self, path: str) -> tuple[str, str, str, str, str] | None:
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            group, rest = "", parts[2:]
        elif parts[0] == "apis":
            group, rest = parts[1], parts[3:]
        else:
            return None
        namespace = ""
        # /api/v1/namespaces/NAME/finalize is a namespace's; .../NAME/configmaps a collection.
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in {"finalize", "status"}:
            namespace, rest = rest[1], rest[2:]
        if not rest:
            return None
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else ""), "/".join(rest[2:])
        return group, plural, namespace, name, sub

    def list(self, group: str, plural: str, query: dict[str, str]) -> tuple[int, Any]:
        items = [
            obj for (g, p, _, _), obj in sorted(self.store.items()) if (g, p) == (group, plural)
        ]
        start = int(query.get("continue") or 0)
        size = self.page or len(items) or 1
        chunk = items[start : start + size]
        token = str(start + size) if start + size < len(items) else ""
        return 200, {"kind": "PartialObjectMetadataList", "metadata": {"continue": token},
                     "items": json.loads(json.dumps(chunk))}  # fmt: skip

    def delete(
        self, key: tuple[str, str, str, str], obj: dict[str, Any], options: dict[str, Any]
    ) -> tuple[int, Any]:
        wanted = (options.get("preconditions") or {}).get("uid")
        if wanted and wanted != obj["metadata"]["uid"]:
            return status(409, "Precondition failed: UID in precondition differs")
        if obj["metadata"].get("finalizers") or key[1] == "namespaces":
            obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            obj["metadata"]["resourceVersion"] = str(next(self.versions))
        else:
            del self.store[key]
        return 200, obj

    def patch(
        self, key: tuple[str, str, str, str], obj: dict[str, Any], ops: Any
    ) -> tuple[int, Any]:
        for op in ops:
            if op["op"] == "test" and obj["metadata"].get("uid") != op["value"]:
                return status(422, "the test operation failed")
            if op["op"] == "remove" and op["path"] == "/metadata/finalizers":
                obj["metadata"].pop("finalizers", None)
        metadata = obj["metadata"]
        # A namespace waits for its controller even without finalizers of its own.
        if (
            metadata.get("deletionTimestamp")
            and not metadata.get("finalizers")
            and key[1] != "namespaces"
        ):
            del self.store[key]
        return 200, obj


def fresh_cluster(**kwargs: Any) -> Cluster:
    """A cluster as a fresh vcluster looks, in miniature."""
    cluster = Cluster(**kwargs)
    for namespace in ("default", "kube-system", "kube-node-lease"):
        cluster.add("namespaces", namespace)
        cluster.add("configmaps", "kube-root-ca.crt", namespace)
    cluster.add("nodes", "kind-control-plane")
    cluster.add("leases", "kind-control-plane", "kube-node-lease", group="coordination.k8s.io")
    cluster.add("leases", "kube-scheduler", "kube-system", group="coordination.k8s.io")
    cluster.add("deployments", "coredns", "kube-system", group="apps")
    cluster.add("pods", "coredns-abc", "kube-system")
    cluster.add("services", "kubernetes", "default")
    cluster.add("horizontalpodautoscalers", "web", "default", group="autoscaling")
    cluster.add("componentstatuses", "etcd-0")
    return cluster


def entry(kind: str, name: str, namespace: str = "", *, group: str = "", uid: str = "u",
          rv: str = "1") -> Entry:  # fmt: skip
    return Entry(ObjectKey(group, kind, namespace, name), "v1", uid, rv)


def inventory(*entries: Entry, unlisted: dict[str, str] | None = None) -> Inventory:
    return Inventory(
        objects={e.key: e for e in entries},
        resources={},
        unlisted=unlisted or {},
    )


# -- take_inventory ------------------------------------------------------------------------


@pytest.mark.parametrize("aggregated", [True, False], ids=["aggregated", "per-group-version"])
def test_inventory_lists_every_listable_resource_once(aggregated: bool) -> None:
    cluster = fresh_cluster(aggregated=aggregated)
    found = take_inventory(cluster, timeout=10)

    assert found.complete
    assert len(found) == len(cluster.store)
    assert ObjectKey("apps", "Deployment", "kube-system", "coredns") in found.objects
    # Served at v2 (preferred) and v1: listed once, at v2.
    hpa = found.objects[ObjectKey("autoscaling", "HorizontalPodAutoscaler", "default", "web")]
    assert hpa.version == "v2"
    lists = [p for p in cluster.requests("GET") if p.endswith("horizontalpodautoscalers")]
    assert lists == ["/apis/autoscaling/v2/horizontalpodautoscalers"]
    # Not listable (create only) or a subresource: never asked.
    listed = cluster.requests("GET")
    assert not {"/api/v1/bindings", "/apis/authentication.k8s.io/v1/tokenreviews"} & set(listed)
    assert not any(p.endswith("/status") for p in listed)
    # Listable but not deletable: listed, and marked so.
    assert found.resources["", "ComponentStatus"].deletable is False
    assert found.resources["", "ConfigMap"].deletable is True


def test_inventory_keeps_what_a_reset_needs_of_each_object() -> None:
    cluster = fresh_cluster()
    cluster.add("configmaps", "held", "default", finalizers=("example.com/keep",),
                owners=("uid-1",), deleting=True, labels={"b": "2", "a": "1"})  # fmt: skip
    found = take_inventory(cluster, timeout=10).objects[
        ObjectKey("", "ConfigMap", "default", "held")
    ]

    assert found.deleting is True
    assert found.finalizers == ("example.com/keep",)
    assert found.owners == ("uid-1",)
    assert found.labels == (("a", "1"), ("b", "2"))
    assert found.label("b") == "2"
    assert found.label("c") is None
    assert found.uid.startswith("uid-")
    assert found.resource_version


def test_inventory_asks_for_metadata_only_and_with_a_timeout() -> None:
    cluster = fresh_cluster()
    seen: list[Any] = []
    original = cluster.call_api

    def spy(method: str, url: str, header_params: Any = None, body: Any = None,
            post_params: Any = None, _request_timeout: Any = None) -> FakeResponse:  # fmt: skip
        seen.append(_request_timeout)
        return original(method, url, header_params, body, post_params, _request_timeout)

    cluster.call_api = spy  # type: ignore[method-assign]
    take_inventory(cluster, timeout=10)

    lists = [(path, headers) for m, path, _, _, headers in cluster.calls if path.endswith("pods")]
    assert "as=PartialObjectMetadataList" in lists[0][1]["Accept"]
    assert seen
    assert all(t is not None and 0 < t <= 15 for t in seen)


def test_inventory_follows_pages() -> None:
    cluster = fresh_cluster(page=2)
    for n in range(7):
        cluster.add("configmaps", f"cm-{n}", "default")
    found = take_inventory(cluster, timeout=10)

    names = {key.name for key in found.objects if key.kind == "ConfigMap"}
    assert names == {f"cm-{n}" for n in range(7)} | {"kube-root-ca.crt"}
    continues = [q for _, p, q, _, _ in cluster.calls if p == "/api/v1/configmaps"]
    assert [q.get("continue") for q in continues] == [None, "2", "4", "6", "8"]


def test_a_resource_that_cannot_be_listed_makes_the_inventory_incomplete() -> None:
    cluster = fresh_cluster()
    cluster.handlers.append(
        lambda m, p, q, b: status(503, "the server is currently unable to handle the request")
        if p == "/apis/apps/v1/deployments" else None
    )  # fmt: skip
    found = take_inventory(cluster, timeout=10)

    assert not found.complete
    assert "deployments.apps" in found.unlisted
    assert "503" in found.unlisted["deployments.apps"]
    # An unlisted resource in either inventory: nothing can be proven.
    result = diff(found, found)
    assert not result.clean
    assert result.unlisted == ("deployments.apps",)
    assert any("not listed: deployments.apps" in line for line in result.reasons())


def test_a_partial_inventory_lists_only_what_it_is_given_and_cannot_be_diffed() -> None:
    cluster = fresh_cluster()
    full = take_inventory(cluster, timeout=10)
    cluster.calls.clear()
    partial = take_inventory(cluster, timeout=10, only=[full.resources["apps", "Deployment"]])

    assert [p for _, p, _, _, _ in cluster.calls] == ["/apis/apps/v1/deployments"]
    assert list(partial.objects) == [ObjectKey("apps", "Deployment", "kube-system", "coredns")]
    assert partial.partial
    assert not partial.complete
    with pytest.raises(VClusterError, match="not partial ones"):
        diff(full, partial)


def test_a_failing_discovery_is_an_api_error() -> None:
    cluster = fresh_cluster()
    cluster.handlers.append(lambda m, p, q, b: status(403, "forbidden") if p == "/api" else None)
    with pytest.raises(ApiError, match="discovering the resources of the virtual cluster: 403"):
        take_inventory(cluster, timeout=10)


def test_an_inventory_that_runs_past_its_deadline_names_what_it_still_lists() -> None:
    cluster = fresh_cluster()

    def slow(method: str, path: str, query: Any, body: Any) -> tuple[int, Any] | None:
        if path == "/api/v1/pods":
            time.sleep(3)
        return None

    cluster.handlers.append(slow)
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as caught:
        take_inventory(cluster, timeout=0.3)

    assert time.monotonic() - started < 2.5, "the inventory waited for the slow request"
    text = str(caught.value)
    assert "timed out after 0.3s waiting for an inventory" in text
    assert "still listing pods" in text
    assert "pass a larger timeout" in text


# -- diff ----------------------------------------------------------------------------------


def test_diff_finds_added_changed_removed_and_replaced() -> None:
    kept = entry("ConfigMap", "kept", "default", uid="a", rv="1")
    changed = entry("ConfigMap", "changed", "default", uid="b", rv="1")
    removed = entry("Secret", "removed", "default", uid="c", rv="1")
    replaced = entry("ServiceAccount", "probe", "default", uid="d", rv="1")
    baseline = inventory(kept, changed, removed, replaced)
    now = inventory(
        kept,
        replace(changed, resource_version="2"),
        replace(replaced, uid="e", resource_version="9"),
        entry("Namespace", "t1", uid="f"),
    )
    result = diff(baseline, now)

    assert not result.clean
    assert [str(e) for e in result.added] == ["ServiceAccount default/probe", "Namespace t1"]
    assert [(str(old), new.resource_version) for old, new in result.changed] == [
        ("ConfigMap default/changed", "2")
    ]
    assert sorted((str(e), e.uid) for e in result.removed) == [
        ("Secret default/removed", "c"),
        ("ServiceAccount default/probe", "d"),
    ]
    reasons = result.reasons()
    assert "changed: ConfigMap default/changed (resourceVersion 1 -> 2)" in reasons
    assert "removed: ServiceAccount default/probe (uid d)" in reasons
    assert "added: Namespace t1" in reasons
    # What decides against recycling leads: a summary shows only the first line.
    assert reasons[0] == "changed: ConfigMap default/changed (resourceVersion 1 -> 2)"
    assert [line.split(":")[0] for line in reasons] == [
        "changed", "removed", "removed", "added", "added"
    ]  # fmt: skip


def test_diff_of_equal_inventories_is_clean() -> None:
    same = inventory(entry("ConfigMap", "a", "default"), entry("Namespace", "default"))
    assert diff(same, same).clean
    assert diff(same, same).reasons() == []


def test_self_changing_objects_are_ignored_only_where_they_change_by_themselves() -> None:
    lease_system = entry("Lease", "kube-scheduler", "kube-system", group="coordination.k8s.io")
    lease_node = entry("Lease", "n1", "kube-node-lease", group="coordination.k8s.io", uid="l2")
    lease_app = entry("Lease", "leader", "default", group="coordination.k8s.io", uid="l3")
    node = entry("Node", "n1", uid="n")
    root_ca = entry("ConfigMap", "kube-root-ca.crt", "default", uid="r")
    root_ca_system = entry("ConfigMap", "kube-root-ca.crt", "kube-system", uid="r2")
    old_event = entry("Event", "e1", "default", uid="ev")
    baseline = inventory(
        lease_system, lease_node, lease_app, node, root_ca, root_ca_system, old_event
    )
    now = inventory(
        replace(lease_system, resource_version="7"),
        replace(lease_node, resource_version="7"),
        replace(lease_app, resource_version="7"),  # a test's own leader election
        replace(node, resource_version="7"),
        replace(root_ca, uid="r-new"),  # made again by its controller
        # kube-system's kube-root-ca.crt is gone: removed, which counts
        entry("Event", "e2", "default", uid="ev2"),
        entry("Event", "e3", "default", group="events.k8s.io", uid="ev3"),
        entry("Lease", "mine", "kube-system", group="coordination.k8s.io", uid="l4"),
    )
    result = diff(baseline, now)

    assert [str(old) for old, _ in result.changed] == ["Lease.coordination.k8s.io default/leader"]
    assert [str(e) for e in result.added] == ["Lease.coordination.k8s.io kube-system/mine"]
    assert [str(e) for e in result.removed] == ["ConfigMap kube-system/kube-root-ca.crt"]
    ignored = {(drift, str(e)) for drift, e in result.ignored}
    assert (Drift.CHANGED, "Lease.coordination.k8s.io kube-system/kube-scheduler") in ignored
    assert (Drift.CHANGED, "Node n1") in ignored
    assert (Drift.REPLACED, "ConfigMap default/kube-root-ca.crt") in ignored
    assert (Drift.ADDED, "Event default/e2") in ignored
    assert (Drift.REMOVED, "Event default/e1") in ignored


def test_without_exclusions_every_drift_counts() -> None:
    lease = entry("Lease", "kube-scheduler", "kube-system", group="coordination.k8s.io")
    result = diff(inventory(lease), inventory(replace(lease, resource_version="2")), exclusions=())
    assert len(result.changed) == 1


def test_an_object_whose_resource_was_not_listed_now_is_not_called_removed() -> None:
    cm = entry("ConfigMap", "a", "default")
    baseline = Inventory(
        objects={cm.key: cm},
        resources={("", "ConfigMap"): Resource("", "v1", "ConfigMap", "configmaps", True)},
    )
    now = inventory(unlisted={"configmaps": "503"})
    result = diff(baseline, now)
    assert result.removed == ()
    assert not result.clean


def test_every_exclusion_says_why_it_is_safe() -> None:
    for exclusion in EXCLUSIONS:
        assert len(exclusion.reason) > 40, exclusion
        assert exclusion.ignores, exclusion


def test_an_exclusion_matches_group_kind_namespace_name_and_drift() -> None:
    only = Exclusion("", "ConfigMap", Drift.CHANGED, "x", namespaces=frozenset({"a"}),
                     names=frozenset({"n"}))  # fmt: skip
    assert only.covers(ObjectKey("", "ConfigMap", "a", "n"), Drift.CHANGED)
    assert not only.covers(ObjectKey("", "ConfigMap", "a", "n"), Drift.ADDED)
    assert not only.covers(ObjectKey("", "ConfigMap", "b", "n"), Drift.CHANGED)
    assert not only.covers(ObjectKey("", "ConfigMap", "a", "m"), Drift.CHANGED)
    assert not only.covers(ObjectKey("x.io", "ConfigMap", "a", "n"), Drift.CHANGED)


def test_an_inventory_survives_its_json_form_and_nothing_else_passes_for_one() -> None:
    cluster = fresh_cluster()
    cluster.add("configmaps", "held", "default", finalizers=("example.com/keep",),
                owners=("uid-1",), deleting=True, labels={"b": "2", "a": "1"})  # fmt: skip
    taken = take_inventory(cluster, timeout=10)

    again = Inventory.from_dict(json.loads(json.dumps(taken.to_dict())))

    assert again.objects == taken.objects
    assert again.resources == taken.resources
    assert diff(taken, again).clean
    assert again.complete
    with pytest.raises(ValueError, match="not an inventory"):
        Inventory.from_dict({"objects": [["not", "an", "entry"]], "resources": []})
    with pytest.raises(ValueError, match="not an inventory"):
        Inventory.from_dict({})
