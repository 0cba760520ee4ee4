"""Resetting a cluster to its baseline, against the in-memory API server of ``test_inventory``.

The cluster's controllers are scripted (namespace deletion, garbage collection, CRD cleanup);
a fake clock makes the grace periods and timeouts instant, so when something happens shows
in the clock.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from test_inventory import RESOURCES, Cluster, fresh_cluster, status

from pytest_vcluster.cluster.inventory import ObjectKey, take_inventory
from pytest_vcluster.cluster.reset import (
    FINALIZER_GRACE,
    HostBaseline,
    host_baseline,
    host_namespace_clean,
    reset,
)
from pytest_vcluster.core.errors import RunInterruptedError, VClusterError, WaitTimeoutError

ADMISSION = "admissionregistration.k8s.io"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def run_reset(cluster: Cluster, baseline: Any, clock: FakeClock, **kwargs: Any) -> Any:
    kwargs.setdefault("timeout", 120)
    return reset(cluster, baseline, clock=clock, sleep=clock.sleep, **kwargs)


def namespace_controller(cluster: Cluster) -> None:
    """Deletes the content of terminating namespaces, then the namespaces once empty."""
    for (group, plural, _, name), obj in list(cluster.store.items()):
        if plural != "namespaces" or not obj["metadata"].get("deletionTimestamp"):
            continue
        content = [key for key in cluster.store if key[2] == name]
        for key in content:
            if not cluster.store[key]["metadata"].get("deletionTimestamp"):
                cluster.delete(key, cluster.store[key], {})
        if not any(key[2] == name for key in cluster.store):
            del cluster.store[group, plural, "", name]


def garbage_collector(cluster: Cluster) -> None:
    """Deletes objects whose owners are all gone (as a background deletion does)."""
    uids = {obj["metadata"]["uid"] for obj in cluster.store.values()}
    for key, obj in list(cluster.store.items()):
        owners = [ref["uid"] for ref in obj["metadata"].get("ownerReferences") or []]
        if owners and not set(owners) & uids and not obj["metadata"].get("deletionTimestamp"):
            cluster.delete(key, obj, {})


def delete_calls(cluster: Cluster) -> list[str]:
    return cluster.requests("DELETE")


# -- order ---------------------------------------------------------------------------------


def test_webhooks_are_deleted_first_and_gone_before_anything_else() -> None:
    cluster = fresh_cluster()
    cluster.controllers.append(namespace_controller)
    baseline = take_inventory(cluster, timeout=10)
    cluster.add("validatingwebhookconfigurations", "deny", group=ADMISSION)
    cluster.add("namespaces", "t1")
    cluster.add("configmaps", "a", "t1")
    cluster.add("configmaps", "mine", "default")
    cluster.add("clusterrolebindings", "crb", group="rbac.authorization.k8s.io")

    def webhook(method: str, path: str, query: Any, body: Any) -> tuple[int, Any] | None:
        # The test's webhook, with failurePolicy Fail and no service behind it.
        gated = method == "DELETE" and ADMISSION not in path
        if gated and cluster.has("validatingwebhookconfigurations", "deny", group=ADMISSION):
            return status(500, 'failed calling webhook "deny.example.com": service not found')
        return None

    cluster.handlers.append(webhook)
    clock = FakeClock()
    result = run_reset(cluster, baseline, clock)

    deletes = delete_calls(cluster)
    assert deletes[0] == f"/apis/{ADMISSION}/v1/validatingwebhookconfigurations/deny"
    # Each once: none was refused by the webhook. An added namespace is emptied a collection
    # at a time.
    assert sorted(deletes[1:]) == [
        "/api/v1/namespaces/default/configmaps/mine",
        "/api/v1/namespaces/t1",
        "/api/v1/namespaces/t1/configmaps",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/crb",
    ]
    assert result.clean, result.reasons
    assert result.reasons == ()
    assert ObjectKey("", "ConfigMap", "t1", "a") in result.deleted
    assert result.seconds == pytest.approx(
        result.delete_seconds + result.wait_seconds + result.verify_seconds
    )


def test_an_untouched_cluster_costs_one_look() -> None:
    cluster = fresh_cluster()
    baseline = take_inventory(cluster, timeout=10)
    cluster.touch("leases", "kube-scheduler", "kube-system", group="coordination.k8s.io")
    result = run_reset(cluster, baseline, FakeClock())

    assert result.clean
    assert result.inventories == 1
    assert delete_calls(cluster) == []
    assert result.delete_seconds == result.wait_seconds == 0.0


def test_deletes_name_the_uid_they_saw() -> None:
    cluster = fresh_cluster()
    baseline = take_inventory(cluster, timeout=10)
    made = cluster.add("configmaps", "mine", "default")
    run_reset(cluster, baseline, FakeClock())

    bodies = [body for m, _, _, body, _ in cluster.calls if m == "DELETE"]
    assert bodies[0]["preconditions"] == {"uid": made["metadata"]["uid"]}
    assert bodies[0]["propagationPolicy"] == "Background"


def test_pods_are_deleted_without_grace_but_only_once_their_owner_is_going() -> None:
    cluster = fresh_cluster()
    cluster.controllers.append(garbage_collector)
    baseline = take_inventory(cluster, timeout=10)
    deployment = cluster.add("deployments", "web", "default", group="apps")
    rs = cluster.add(
        "replicasets", "web-1", "default", group="apps", owners=(deployment["metadata"]["uid"],)
    )
    cluster.add("pods", "web-1-x", "default", owners=(rs["metadata"]["uid"],))
    original = cluster.delete
    owner_alive_at_pod_delete: list[bool] = []

    def kubelet_delete(key: Any, obj: Any, options: dict[str, Any]) -> tuple[int, Any]:
        if key[1] == "pods":
            owner_alive_at_pod_delete.append(cluster.has("replicasets", "web-1", "default",
                                                         group="apps"))  # fmt: skip
            if options.get("gracePeriodSeconds", 30) != 0:
                # A graceful delete: the kubelet takes its time.
                obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
                return 200, obj
        return original(key, obj, options)

    cluster.delete = kubelet_delete  # type: ignore[method-assign]
    result = run_reset(cluster, baseline, FakeClock())

    assert result.clean, result.reasons
    pod_deletes = [b for m, p, _, b, _ in cluster.calls if m == "DELETE" and "/pods/" in p]
    assert pod_deletes, "the pod was never deleted by the reset"
    assert all(body["gracePeriodSeconds"] == 0 for body in pod_deletes)
    # The garbage collector's graceful delete came first (with the RS); the reset's after.
    assert owner_alive_at_pod_delete[-1] is False


def test_what_appears_during_the_wait_elsewhere_is_found_by_the_last_look() -> None:
    cluster = fresh_cluster()
    baseline = take_inventory(cluster, timeout=10)
    cluster.add("deployments", "web", "default", group="apps")
    made: list[str] = []

    def controller(cluster: Cluster) -> None:
        # Once the deployment is gone, something of the test leaves a config map behind.
        if not cluster.has("deployments", "web", "default", group="apps") and not made:
            made.append("late")
            cluster.add("configmaps", "late", "default")

    cluster.controllers.append(controller)
    result = run_reset(cluster, baseline, FakeClock())

    assert "/api/v1/namespaces/default/configmaps/late" in delete_calls(cluster)
    assert result.clean, result.reasons
    # Looks between rounds list only what is left; the first and the last list everything.
    assert result.inventories >= 3
    assert result.inventory.complete


def test_events_added_are_deleted_but_do_not_keep_the_reset_going() -> None:
    cluster = fresh_cluster()
    baseline = take_inventory(cluster, timeout=10)
    cluster.add("events", "old", "default")
    made = iter(range(1000))

    def chatty(cluster: Cluster) -> None:
        # Something writes events all the time.
        cluster.add("events", f"new-{next(made)}", "default")

    cluster.controllers.append(chatty)
    result = run_reset(cluster, baseline, FakeClock())

    assert "/api/v1/namespaces/default/events/old" in delete_calls(cluster)
    assert result.clean, result.reasons


def test_crds_go_before_namespaces_are_deleted() -> None:
    # The namespace controller backs off while discovery changes under it (a CRD going).
    cluster = fresh_cluster()
    cluster.controllers.append(namespace_controller)
    baseline = take_inventory(cluster, timeout=10)
    widgets = ("example.com", "v1", "widgets", "Widget", True, "list,delete")
    cluster.resources.append(widgets)
    cluster.add("customresourcedefinitions", "widgets.example.com", group="apiextensions.k8s.io")
    cluster.add("namespaces", "t1")
    cluster.add("widgets", "w1", "t1", group="example.com")

    def crd_gone(cluster: Cluster) -> None:
        crd = cluster.has(
            "customresourcedefinitions", "widgets.example.com", group="apiextensions.k8s.io"
        )
        if not crd and widgets in cluster.resources:
            cluster.resources.remove(widgets)
            for key in [k for k in cluster.store if k[0] == "example.com"]:
                del cluster.store[key]

    cluster.controllers.append(crd_gone)
    result = run_reset(cluster, baseline, FakeClock())

    deletes = delete_calls(cluster)
    assert deletes.index(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
    ) < deletes.index("/api/v1/namespaces/t1")
    assert result.clean, result.reasons


def test_apiservices_the_server_manages_are_left_to_it() -> None:
    cluster = fresh_cluster()
    baseline = take_inventory(cluster, timeout=10)
    group = "apiregistration.k8s.io"
    cluster.add("apiservices", "v1.example.com", group=group,
                labels={"kube-aggregator.kubernetes.io/automanaged": "true"})  # fmt: skip
    cluster.add("apiservices", "v1beta1.metrics.example.com", group=group)  # a test's own
    looks = iter(range(1000))

    def autoregister(cluster: Cluster) -> None:
        # The API server removes its own APIService a few requests later (its CRD went).
        if next(looks) == 80:
            cluster.store.pop((group, "apiservices", "", "v1.example.com"))

    cluster.controllers.append(autoregister)
    result = run_reset(cluster, baseline, FakeClock())

    assert delete_calls(cluster) == [f"/apis/{group}/v1/apiservices/v1beta1.metrics.example.com"]
    assert result.clean, result.reasons
    assert not cluster.has("apiservices", "v1.example.com", group=group)


# -- finalizers ----------------------------------------------------------------------------


def test_the_control_planes_finalizers_are_removed_only_after_the_grace_period() -> None:
    cluster = fresh_cluster()
    cluster.controllers.append(namespace_controller)
    baseline = take_inventory(cluster, timeout=10)
    cluster.add("namespaces", "t1")
    # The garbage collector's: it removes it itself, unless it is stuck.
    cluster.add("configmaps", "held", "t1", finalizers=("foregroundDeletion",))
    clock = FakeClock()
    times: dict[str, float] = {}

    def when(method: str, path: str, query: Any, body: Any) -> None:
        times.setdefault(f"{method} {path}", clock.now)

    cluster.handlers.append(when)  # type: ignore[arg-type]
    result = run_reset(cluster, baseline, clock, grace=5.0)

    deleted = times["DELETE /api/v1/namespaces/t1"]
    stripped = times["PATCH /api/v1/namespaces/t1/configmaps/held"]
    assert 5.0 <= stripped - deleted < 7.0
    patch = next(body for m, _, _, body, _ in cluster.calls if m == "PATCH")
    assert patch[0]["op"] == "test"
    assert patch[0]["path"] == "/metadata/uid"
    assert patch[1] == {"op": "remove", "path": "/metadata/finalizers"}
    assert result.finalizers_removed == (ObjectKey("", "ConfigMap", "t1", "held"),)
    assert result.clean, result.reasons
    assert not cluster.has("namespaces", "t1")


def test_a_namespace_is_finalized_once_its_content_is_gone() -> None:
    cluster = fresh_cluster()  # no namespace controller: t1 would terminate forever
    baseline = take_inventory(cluster, timeout=10)
    cluster.add("namespaces", "t1")
    cluster.add("configmaps", "held", "t1", finalizers=("example.com/keep",))
    clock = FakeClock()
    times: dict[str, float] = {}

    def when(method: str, path: str, query: Any, body: Any) -> None:
        times.setdefault(f"{method} {path}", clock.now)
        if method == "PUT":
            assert not cluster.has("configmaps", "held", "t1"), "finalized with content left"

    cluster.handlers.append(when)  # type: ignore[arg-type]
    result = run_reset(cluster, baseline, clock, grace=3.0)

    assert times["DELETE /api/v1/namespaces/t1/configmaps"] == times["DELETE /api/v1/namespaces/t1"]
    stripped = times["PATCH /api/v1/namespaces/t1/configmaps/held"]
    # The test's own finalizer: its controller is gone with the test, nobody else removes it.
    assert stripped - times["DELETE /api/v1/namespaces/t1"] < 1.0
    # Next look (partial: the namespace looks empty), then one of every resource to be sure.
    assert times["PUT /api/v1/namespaces/t1/finalize"] - stripped <= 1.0
    put = next(body for m, p, _, body, _ in cluster.calls if m == "PUT")
    assert put["spec"]["finalizers"] == []
    assert result.namespaces_finalized == ("t1",)
    assert result.clean, result.reasons
    # The namespace terminates before it is emptied: an active one would get some objects
    # made again by their controllers (kube-root-ca.crt) as soon as they are gone.
    deletes = cluster.requests("DELETE")
    assert deletes.index("/api/v1/namespaces/t1") < deletes.index(
        "/api/v1/namespaces/t1/configmaps"
    )
    # Finalized from a partial look: only the first look and the proof list every resource.
    assert cluster.requests("GET").count("/apis") == 1 + 2  # and the baseline's


def test_a_namespace_is_not_finalized_while_a_resource_cannot_be_listed() -> None:
    cluster = fresh_cluster()
    baseline = take_inventory(cluster, timeout=10)
    cluster.add("namespaces", "t1")
    cluster.handlers.append(
        lambda m, p, q, b: status(503, "unavailable") if p == "/apis/apps/v1/deployments" else None
    )
    with pytest.raises(WaitTimeoutError, match=r"1 left: Namespace t1 \(terminating"):
        run_reset(cluster, baseline, FakeClock(), timeout=20)
    assert cluster.requests("PUT") == []


def test_a_crds_own_finalizer_is_left_to_it_and_its_objects_go_first() -> None:
    cluster = fresh_cluster()
    widgets = ("example.com", "v1", "widgets", "Widget", True, "list,delete")
    crd_key = ("apiextensions.k8s.io", "customresourcedefinitions", "", "widgets.example.com")

    def crd_controller(cluster: Cluster) -> None:
        crd = cluster.store.get(crd_key)
        if crd is None:
            if widgets in cluster.resources:
                cluster.resources.remove(widgets)
            return
        if not crd["metadata"].get("deletionTimestamp"):
            return
        for key in [k for k in cluster.store if k[:2] == ("example.com", "widgets")]:
            if not cluster.store[key]["metadata"].get("deletionTimestamp"):
                cluster.delete(key, cluster.store[key], {})
        if not any(k[:2] == ("example.com", "widgets") for k in cluster.store):
            del cluster.store[crd_key]

    baseline = take_inventory(cluster, timeout=10)
    cluster.resources.append(widgets)
    cluster.add("customresourcedefinitions", "widgets.example.com", group="apiextensions.k8s.io",
                finalizers=("customresourcecleanup.apiextensions.k8s.io",))  # fmt: skip
    cluster.add("widgets", "w1", "default", group="example.com", finalizers=("example.com/x",))
    cluster.controllers.append(crd_controller)
    result = run_reset(cluster, baseline, FakeClock())

    patched = cluster.requests("PATCH")
    assert patched == ["/apis/example.com/v1/namespaces/default/widgets/w1"]
    assert "/apis/example.com/v1/namespaces/default/widgets/w1" not in delete_calls(cluster)
    assert result.clean, result.reasons
    assert widgets not in cluster.resources


# -- what cannot be reset --------------------------------------------------------------------


def test_a_changed_baseline_object_is_reported_and_nothing_is_deleted() -> None:
    cluster = fresh_cluster()
    baseline = take_inventory(cluster, timeout=10)
    cluster.add("namespaces", "t1")
    cluster.touch("deployments", "coredns", "kube-system", group="apps")
    cluster.store.pop(("", "services", "default", "kubernetes"))
    result = run_reset(cluster, baseline, FakeClock())

    assert not result.clean
    assert delete_calls(cluster) == []
    text = "\n".join(result.reasons)
    assert "changed: Deployment.apps kube-system/coredns" in text
    assert "removed: Service default/kubernetes" in text
    assert "cannot be recycled" in text


def test_a_delete_refused_until_the_deadline_names_the_object_and_the_refusal() -> None:
    cluster = fresh_cluster()
    baseline = take_inventory(cluster, timeout=10)
    cluster.add("configmaps", "stubborn", "default")
    cluster.handlers.append(
        lambda m, p, q, b: status(403, 'admission webhook "guard.example.com" denied the request')
        if m == "DELETE" and p.endswith("/stubborn") else None
    )  # fmt: skip
    clock = FakeClock()
    with pytest.raises(WaitTimeoutError) as caught:
        run_reset(cluster, baseline, clock, timeout=20)

    text = str(caught.value)
    assert "timed out after 20s waiting for the objects added since the baseline deleted" in text
    assert "1 left: ConfigMap default/stubborn" in text
    assert 'admission webhook "guard.example.com" denied the request' in text
    assert "delete the cluster instead of recycling it" in text
    assert 20 <= clock.now - 1000 < 22
    retries = [p for p in delete_calls(cluster) if p.endswith("/stubborn")]
    assert len(retries) > 3, "a refused delete is sent again"


def test_an_object_whose_finalizers_cannot_be_removed_shows_in_the_error() -> None:
    cluster = fresh_cluster()
    baseline = take_inventory(cluster, timeout=10)
    cluster.add("configmaps", "held", "default", finalizers=("example.com/keep",))
    cluster.handlers.append(
        lambda m, p, q, b: status(403, "updates are denied by policy guard")
        if m == "PATCH" else None
    )  # fmt: skip
    with pytest.raises(WaitTimeoutError) as caught:
        run_reset(cluster, baseline, FakeClock(), timeout=30)

    text = str(caught.value)
    assert "ConfigMap default/held (terminating, finalizers ['example.com/keep'])" in text
    assert "removing the finalizers of ConfigMap default/held: 403" in text
    assert len(cluster.requests("PATCH")) > 1, "a refused finalizer removal is tried again"


def test_an_incomplete_baseline_is_refused() -> None:
    cluster = fresh_cluster()
    cluster.handlers.append(
        lambda m, p, q, b: status(503, "unavailable") if p == "/api/v1/pods" else None
    )
    baseline = take_inventory(cluster, timeout=10)
    with pytest.raises(
        VClusterError, match=r"baseline inventory is incomplete \(could not list pods"
    ):
        run_reset(cluster, baseline, FakeClock())


def test_the_resources_of_the_fake_match_a_real_clusters_shape() -> None:
    # The tests above rely on these; a change to RESOURCES must not silently drop them.
    kinds = {(group, kind) for group, _, _, kind, _, _ in RESOURCES}
    assert {("", "Namespace"), (ADMISSION, "ValidatingWebhookConfiguration")} <= kinds
    assert FINALIZER_GRACE > 0


# -- the host namespace --------------------------------------------------------------------


def host_with_synced_pod() -> Cluster:
    host = Cluster()
    host.add("pods", "vc-0", "vcluster-a")
    host.add("pods", "coredns-1-x-kube-system-x-vc", "vcluster-a")
    host.add("services", "vc", "vcluster-a")
    host.add("persistentvolumeclaims", "data-vc-0", "vcluster-a")
    return host


def test_host_namespace_is_clean_once_synced_pods_are_gone() -> None:
    host = host_with_synced_pod()
    baseline = host_baseline(host, "vcluster-a")
    assert baseline == HostBaseline(
        "vcluster-a",
        {
            "pods": frozenset({"vc-0", "coredns-1-x-kube-system-x-vc"}),
            "services": frozenset({"vc"}),
            "persistentvolumeclaims": frozenset({"data-vc-0"}),
        },
    )
    host.add("pods", "web-x-t1-x-vc", "vcluster-a")
    host.add("services", "web-x-t1-x-vc", "vcluster-a")
    looks = iter(range(100))

    def syncer(host: Cluster) -> None:
        if next(looks) == 6:  # a few looks later, vcluster has deleted them
            host.store.pop(("", "pods", "vcluster-a", "web-x-t1-x-vc"))
            host.store.pop(("", "services", "vcluster-a", "web-x-t1-x-vc"))

    host.controllers.append(syncer)
    clock = FakeClock()
    check = host_namespace_clean(
        host, "vcluster-a", baseline, timeout=30, clock=clock, sleep=clock.sleep
    )
    assert check.clean
    assert check.reasons == ()
    assert clock.now > 1000  # it did wait


def test_host_namespace_with_leftovers_is_unclean_and_says_what() -> None:
    host = host_with_synced_pod()
    baseline = {"pods": ["vc-0", "coredns-1-x-kube-system-x-vc"], "services": ["vc"],
                "persistentvolumeclaims": ["data-vc-0", "data-other"]}  # fmt: skip
    host.add("pods", "web-x-t1-x-vc", "vcluster-a")
    clock = FakeClock()
    check = host_namespace_clean(
        host, "vcluster-a", baseline, timeout=10, clock=clock, sleep=clock.sleep
    )
    assert not check.clean
    assert check.extra == {"pods": ("web-x-t1-x-vc",)}
    assert check.missing == {"persistentvolumeclaims": ("data-other",)}
    assert "extra Pods: web-x-t1-x-vc" in check.reasons[0]
    assert "missing PersistentVolumeClaims: data-other" in check.reasons[0]
    assert "delete the cluster instead of recycling it" in check.reasons[0]


def test_host_pods_still_terminating_are_forced_only_when_asked() -> None:
    host = host_with_synced_pod()
    baseline = host_baseline(host, "vcluster-a")
    host.add("pods", "web-x-t1-x-vc", "vcluster-a", deleting=True)  # vcluster deletes it
    host.add("pods", "db-x-t1-x-vc", "vcluster-a")  # still synced: never forced
    clock = FakeClock()
    check = host_namespace_clean(
        host, "vcluster-a", baseline, timeout=10, clock=clock, sleep=clock.sleep
    )
    assert host.requests("DELETE") == []
    assert check.extra == {"pods": ("db-x-t1-x-vc", "web-x-t1-x-vc")}

    clock = FakeClock()
    check = host_namespace_clean(
        host, "vcluster-a", baseline, timeout=10, force_after=3, clock=clock, sleep=clock.sleep
    )
    forced = [(p, b) for m, p, _, b, _ in host.calls if m == "DELETE"]
    assert forced == [
        ("/api/v1/namespaces/vcluster-a/pods/web-x-t1-x-vc", {
            "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0})
    ]  # fmt: skip
    assert check.extra == {"pods": ("db-x-t1-x-vc",)}
    assert not check.clean


def test_an_interrupted_run_stops_the_reset() -> None:
    cluster = fresh_cluster()
    baseline = take_inventory(cluster, timeout=10)
    cluster.add("configmaps", "held", "default", finalizers=("example.com/keep",))
    stop = threading.Event()
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        stop.set()  # Ctrl-C while the reset waits

    with pytest.raises(RunInterruptedError, match="interrupted"):
        reset(cluster, baseline, timeout=60, clock=clock, sleep=sleep, stop=stop)
